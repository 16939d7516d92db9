#!/usr/bin/env bash
# Run test programs one after another, each under `timeout`, and summarize.
#   tests/run.sh CMD [CMD ...]
# Each CMD is a program with its arguments in one word ("tests/test_cli.sh
# ./decode"), split on blanks; it is named after its first word with a '/'.
# env: TEST_TIMEOUT (seconds, default 1200); STRATA_ALLOWED_SKIPS, a file of
# extended regular expressions, one a line ('#' comments): when set, a skip
# whose reason matches none of them is a failure (.ci/run sets it, so a
# suite that could have run here never passes as a skip).
#
# Exit status 0 = pass, 77 = skip, 124 = timed out, anything else = fail.
# A skip's reason is every line of the program's output that starts with
# "SKIP"; a passing program's partial skips (cmocka's "skipped: ..." lines
# before skip(), TAP "# SKIP" lines) are listed under it and checked the
# same way. Exits non-zero if any program failed or timed out, or a skip
# was not allowed.
set -uo pipefail

limit=${TEST_TIMEOUT:-1200}
allowed=${STRATA_ALLOWED_SKIPS:-}
pass=0 fail=0 skip=0
failed=() skipped=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [[ -n $allowed && ! -r $allowed ]]; then
	echo "FAIL: STRATA_ALLOWED_SKIPS='$allowed' is not readable"
	exit 1
fi

# skip_ok REASON: true unless an allow-list is set and REASON matches none
skip_ok() {
	[[ -z $allowed ]] && return 0
	grep -qE -f <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$allowed") \
		<<<"$1"
}

# check_skips NAME: each reason in "$log" (one a line on stdin) allowed?
check_skips() {
	local name=$1 why bad=0
	while IFS= read -r why; do
		if skip_ok "$why"; then
			echo "    skip: $why"
		else
			echo "    skip NOT ALLOWED here: $why"
			bad=1
		fi
	done
	return $bad
}

for cmd in "$@"; do
	read -ra argv <<<"$cmd"
	name=
	for w in "${argv[@]}"; do
		[[ $w == */* ]] && { name=$(basename "$w"); break; }
	done
	name=${name:-${argv[0]}}
	if [[ ${argv[0]} == */* && ! -x ${argv[0]} ]]; then
		echo "FAIL $name: not built (${argv[0]})"
		fail=$((fail + 1)) failed+=("$name")
		continue
	fi
	start=$(date +%s.%N)
	timeout --kill-after=10 "$limit" "${argv[@]}" >"$log" 2>&1
	rc=$?
	secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	case $rc in
	0)
		echo "PASS $name (${secs}s)"
		{ grep -E '^skipped: |# SKIP ' "$log" || true; } |
			sed -E 's/^.*# SKIP //' | check_skips "$name" || {
			fail=$((fail + 1)) failed+=("$name")
			continue
		}
		pass=$((pass + 1))
		;;
	77)
		echo "SKIP $name (${secs}s)"
		reasons=$(grep -E '^SKIP' "$log")
		[[ -n $reasons ]] || reasons="SKIP without a reason (no line starting with SKIP)"
		if check_skips "$name" <<<"$reasons"; then
			skip=$((skip + 1)) skipped+=("$name")
		else
			fail=$((fail + 1)) failed+=("$name")
		fi
		;;
	124 | 137)
		echo "FAIL $name: timed out after ${limit}s"
		tail -n 20 "$log" | sed 's/^/    /'
		fail=$((fail + 1)) failed+=("$name")
		;;
	*)
		echo "FAIL $name: exit status $rc (${secs}s)"
		tail -n 40 "$log" | sed 's/^/    /'
		fail=$((fail + 1)) failed+=("$name")
		;;
	esac
done

echo "tests: $pass passed, $fail failed, $skip skipped${failed:+ (failed: ${failed[*]})}${skipped:+ (skipped: ${skipped[*]})}"
((fail == 0))
