#!/usr/bin/env bash
# probe_check.sh - bench/probe end to end: a quick profile into a scratch
# directory is valid JSON with every figure present and plausible, the
# test file is gone afterwards, and bad input gets exit status 2 or 1.
#
#   tests/probe_check.sh [PROBE]     (default bench/probe)
set -u
probe=${1:-bench/probe}
[ -x "$probe" ] || { echo "FAIL: $probe is not built (run make)"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/strata_probe.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }

mkdir "$tmp/dir"
: >"$tmp/file"
if timeout 300 "$probe" --quick --flash-dir "$tmp/dir" -o "$tmp/p.json" 2>"$tmp/err"; then
	if python3 - "$tmp/p.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
d, f = p["dram"], p["flash"]
assert d["read_gbps_by_threads"] and all(g > 0.5 for g in d["read_gbps_by_threads"].values()), d
grid = f["read_gbps"]
assert set(grid) == {"65536", "262144", "1048576", "4194304"}, grid
for row in grid.values():
    assert set(row) == {"1", "4", "16", "64"} and all(g > 0.01 for g in row.values())
assert 0.01 < f["sustained_read_gbps"] < 1000 and f["sustained_seconds"] >= 0.9
assert 0 < f["rand4k_p50_us"] <= f["rand4k_p99_us"] and f["rand4k_iops_qd64"] > 0
PY
	then ok "quick profile: every figure present and plausible"
	else bad "quick profile: bad JSON"; fi
elif grep -qE "io_uring unavailable|O_DIRECT is not supported" "$tmp/err"; then
	echo "SKIP: this machine cannot run the flash probe: $(tail -n 1 "$tmp/err")"
	exit 77
else
	bad "quick profile failed: $(tail -n 2 "$tmp/err")"
fi
if [ -z "$(ls -A "$tmp/dir")" ]; then ok "no test file left in --flash-dir"
else bad "left in --flash-dir: $(ls -A "$tmp/dir")"; fi

expect() { # expect STATUS TEXT ARGS...
	local want=$1 text=$2 st
	shift 2
	timeout 60 "$probe" "$@" >/dev/null 2>"$tmp/err"
	st=$?
	if [ "$st" -eq "$want" ] && grep -qF -- "$text" "$tmp/err"; then
		ok "$* -> status $st"
	else
		bad "$* -> status $st (want $want and '$text'): $(head -n 2 "$tmp/err")"
	fi
}
expect 2 "usage" --bogus
expect 2 "--file-size" --file-size 1K --no-dram
expect 1 "No such file" --no-dram --flash-dir "$tmp/none"
expect 1 "not a directory" --no-dram --flash-dir "$tmp/file"
echo "$((n - failed))/$n passed"
[ "$failed" -eq 0 ]
