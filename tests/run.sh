#!/usr/bin/env bash
# Run test programs one after another, each under `timeout`, and summarize.
#   tests/run.sh PROG [PROG ...]      env TEST_TIMEOUT (seconds, default 600)
# Exit status 0 = pass, 77 = skip (the program says why: its last output line
# is shown), 124 = timed out, anything else = fail.  Exits non-zero if any
# program failed or timed out; skips alone do not fail the run.
set -uo pipefail

limit=${TEST_TIMEOUT:-600}
pass=0 fail=0 skip=0
failed=() skipped=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for t in "$@"; do
	name=$(basename "$t")
	if [[ ! -x $t ]]; then
		echo "FAIL $name: not built ($t)"
		fail=$((fail + 1)) failed+=("$name")
		continue
	fi
	start=$(date +%s.%N)
	timeout --kill-after=10 "$limit" "$t" >"$log" 2>&1
	rc=$?
	secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	case $rc in
	0)
		echo "PASS $name (${secs}s)"
		pass=$((pass + 1))
		;;
	77)
		why=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1)
		echo "SKIP $name: ${why:-no reason given}"
		skip=$((skip + 1)) skipped+=("$name")
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

echo "tests: $pass passed, $fail failed, $skip skipped${failed:+ (failed: ${failed[*]})}"
((fail == 0))
