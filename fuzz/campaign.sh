#!/usr/bin/env bash
# fuzz/campaign.sh - a long libFuzzer campaign on a shared machine: runs
# build-fuzz/fuzz/bin_NAME (from `make fuzz`) in chunks of CHUNK seconds
# under `nice -n 10` and the shared bench lock, a pause between chunks so
# timed benchmarks can take the lock, until EXECS executions in all.
# Every chunk grows build-fuzz/corpus/NAME (the committed fuzz/corpus/NAME
# is read only); a crash stops the campaign and leaves
# build-fuzz/crash-NAME-*.
#   fuzz/campaign.sh NAME [EXECS (1000000)] [CHUNK (540)]
# Prints one line a chunk and a summary: executions, cov/ft of the last
# chunk, crashes. Logs: build-fuzz/campaign-NAME-<chunk>.log.
set -uo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: fuzz/campaign.sh NAME [EXECS] [CHUNK]}
want=${2:-1000000}
chunk=${3:-540}
bin=build-fuzz/fuzz/bin_$name
lock=${STRATA_BENCH_LOCK:-/tmp/strata-bench.lock}
[[ -x $bin ]] || { echo "campaign: $bin not built (make fuzz)" >&2; exit 2; }
[[ -d fuzz/corpus/$name ]] || { echo "campaign: no fuzz/corpus/$name" >&2; exit 2; }
mkdir -p "build-fuzz/corpus/$name"
# the vocabularies the harnesses load, where make test puts them
cache=${STRATA_CACHE:-$HOME/.cache/strata}
: "${STRATA_MODEL:=$cache/SmolLM2-135M-Instruct.Q4_1.gguf}"
: "${STRATA_VOCAB_DIR:=$cache/llama-vocab-$(sed -n 's/^SDIST_VERSION=//p' bench/llamacpp-sdist.sh)}"
export STRATA_MODEL STRATA_VOCAB_DIR
total=0 i=0 t0=$(date +%s)
echo "campaign $name: $(date -u +%FT%TZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), model $(grep -m1 '^model' /proc/cpuinfo | cut -d: -f2 | xargs)"
while ((total < want)); do
	log=build-fuzz/campaign-$name-$i.log
	flock -s "$lock" nice -n 10 "$bin" -max_total_time="$chunk" \
		-print_final_stats=1 -artifact_prefix="build-fuzz/crash-$name-" \
		${FUZZ_ARGS:-} "build-fuzz/corpus/$name" "fuzz/corpus/$name" >"$log" 2>&1
	rc=$?
	n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	last=$(grep -E '^#[0-9]+' "$log" | tail -n1)
	total=$((total + ${n:-0}))
	echo "chunk $i: rc $rc, $n executions (total $total): $last"
	if ((rc != 0)); then
		echo "campaign $name: chunk $i failed (rc $rc), see $log" >&2
		grep -E "ERROR|SUMMARY|crash-" "$log" | head -n 5 >&2
		exit 1
	fi
	i=$((i + 1))
	sleep 10
done
echo "campaign $name: $total executions in $i chunks, $(( $(date +%s) - t0 )) s, no crash"
