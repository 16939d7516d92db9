#!/usr/bin/env bash
# bench_check.sh - every bench/ script refuses what a user gets wrong
# before measuring anything: an unknown flag, a model or weight type that
# does not exist, no llama.cpp build where it needs one, a DRAM_GBPS that
# is not a bandwidth. Each must exit 2 with the reason on stderr (never 0,
# 1 or a signal). Run from the repository root after make (the scripts
# check for ./decode first).
set -u

tmp=$(mktemp -d "${TMPDIR:-/tmp}/strata_bench_check.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/empty-cache" "$tmp/fakebin"
# a stand-in llama-bench, so memcap gets past the peer check to the model
printf '#!/bin/sh\nexit 0\n' >"$tmp/fakebin/llama-bench"
chmod +x "$tmp/fakebin/llama-bench"
none=$tmp/no-such-model.gguf
n=0 failed=0

# refuse NAME WANT_TEXT [ENV=VAL ...] -- SCRIPT ARGS...
refuse() {
	local name=$1 text=$2 rc
	shift 2
	local envs=()
	while [ "$1" != "--" ]; do
		envs+=("$1")
		shift
	done
	shift
	n=$((n + 1))
	env "${envs[@]}" timeout 60 "$@" </dev/null >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" -eq 2 ] && grep -qF -- "$text" "$tmp/err"; then
		echo "ok $n - $name ($(grep -m1 -F -- "$text" "$tmp/err"))"
	else
		echo "not ok $n - $name: status $rc, want 2 with '$text' on stderr"
		sed 's/^/#   /' "$tmp/err" | head -5
		failed=$((failed + 1))
	fi
}

nollama=(STRATA_CACHE="$tmp/empty-cache")

for s in budget-sweep kv-sweep; do
	refuse "$s: bad flag" "illegal option -- Z" -- bench/$s.sh -Z
	refuse "$s: missing model" "$none" -- bench/$s.sh "$none"
done
for s in flash-bound memcap; do
	refuse "$s: bad flag" "unknown option '--bogus'" -- bench/$s.sh --bogus
done
refuse "flash-bound: missing model" "$none" -- bench/flash-bound.sh "$none"
refuse "memcap: missing model" "$none" -- bench/memcap.sh \
	--llama-bin "$tmp/fakebin" "$none"
refuse "memcap: no llama.cpp build" "llama.cpp is not built" "${nollama[@]}" \
	-- bench/memcap.sh "$none"
for s in nmu-ablation vs-llamacpp; do
	refuse "$s: bad flag" "illegal option -- Z" -- bench/$s.sh -Z
	refuse "$s: unknown weight type" "unknown TYPE 'q3_x'" -- bench/$s.sh q3_x
done
refuse "vs-llamacpp: no llama.cpp build" "llama.cpp is not built" \
	"${nollama[@]}" -- bench/vs-llamacpp.sh q4_0
# DRAM_GBPS overrides the DRAM read every script measures (bench/lib.sh);
# a figure that is not GB/s > 0 is refused before the probe runs
for s in budget-sweep kv-sweep flash-bound memcap nmu-ablation vs-llamacpp \
	chips-scaling fabric-sweep fabric-curve fabric-mpi; do
	refuse "$s: bad DRAM_GBPS" "bad DRAM_GBPS 'fast'" DRAM_GBPS=fast -- \
		bench/$s.sh
done
refuse "vs-llamacpp: DRAM_GBPS 0" "bad DRAM_GBPS '0'" DRAM_GBPS=0 -- \
	bench/vs-llamacpp.sh q4_0
refuse "fabric-mpi: bad flag" "illegal option -- Z" -- bench/fabric-mpi.sh -Z
refuse "fabric-mpi: missing model" "$none" -- bench/fabric-mpi.sh "$none"
refuse "build-llamacpp: bad flag" "unknown argument '--bogus'" -- \
	bench/build-llamacpp.sh --bogus
refuse "build-llamacpp --print-bin: no build" "llama.cpp is not built" \
	"${nollama[@]}" -- bench/build-llamacpp.sh --print-bin

# kbench's own refusals (the C program: exit 2 before any arena is mapped)
refuse "kbench: -H with -M" "-H and -M are two different tables" -- \
	bench/kbench -H -M
refuse "kbench: arena too small" "need -n >= 1, -m >= 64" -- bench/kbench -m 8
refuse "kbench: unknown type" "unknown weight type 'q3_x'" -- \
	bench/kbench -t q3_x
refuse "build-llamacpp: bad LLAMA_ISA" "LLAMA_ISA=sse9: native or avx2" \
	LLAMA_ISA=sse9 -- bench/build-llamacpp.sh --print-bin
refuse "experiments: bad flag" "unrecognized arguments: --bogus" -- \
	python3 bench/experiments --bogus

# kbench -H runs: a q4_0 row on the scalar kernels with four positive
# GB/s figures (the in-L2 table; the only run here, it takes about 1 s)
n=$((n + 1))
if timeout 60 bench/kbench -H -t q4_0 -i ref -n 2 >"$tmp/out" 2>"$tmp/err" &&
	awk '$1 == "q4_0" && $2 == "ref" && $3 > 0 && $5 > 0 && $7 > 0 && $9 > 0 { ok = 1 }
		END { exit !ok }' "$tmp/out"; then
	echo "ok $n - kbench -H: q4_0 ref row ($(grep -m1 '^q4_0' "$tmp/out" | tr -s ' '))"
else
	echo "not ok $n - kbench -H: no q4_0 ref row with four positive GB/s"
	sed 's/^/#   /' "$tmp/out" "$tmp/err" | head -8
	failed=$((failed + 1))
fi
echo "$((n - failed))/$n passed"
[ "$failed" -eq 0 ]
