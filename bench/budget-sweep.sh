#!/usr/bin/env bash
# Decode speed against --dram-budget on the flash tier: the model's weights
# from all streamed (0) to all resident, as CSV and a gnuplot PNG.
#
#   bench/budget-sweep.sh [-n TOKENS] [-s STEPS] [MODEL.gguf]
#       default model: $STRATA_CACHE/bench/tinyllama-1.1b-q4_0.gguf
#       (made with models/mkmodel if missing); STEPS budgets evenly spaced
#       from 0 to the model's weight size (default 8), TOKENS decoded per
#       point (default 32).
# Output: bench/results/budget-sweep-DATE.{csv,png} (-HHMMSS if taken); columns: budget bytes,
# decode tok/s (wall), median step tok/s, flash GB/s, weights streamed per
# token, stall seconds, peak RSS; after them, '#' lines with the date, the
# command and the machine (CPU, CPUs used, the kernels' ISA path, the DRAM
# read GB/s measured at the start of the run, bench/lib.sh; DRAM_GBPS, if
# given, is taken instead and labelled so).
set -euo pipefail
cd "$(dirname "$0")/.."

tokens=32 steps=8
while getopts "n:s:h" opt; do
	case $opt in
	n) tokens=$OPTARG ;;
	s) steps=$OPTARG ;;
	*) sed -n '2,16p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
BENCH=budget-sweep
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_dram_check
[[ -x ./decode ]] || die "./decode is not built (run make)"
model=$(bench_model "${1:-}")
bench_dram "$(nproc)" # decode's default: one thread per CPU it may run on
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$(bench_out budget-sweep)

# the model's weight bytes, from a dram run's stats
./decode -m "$model" --prompt-tokens 4 -n 2 --ignore-eos --temp 0 \
	--stats-json "$work/w.json" >/dev/null 2>&1
total=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["weight_bytes"])' "$work/w.json")

echo "budget_bytes,tok_per_s,median_step_tok_per_s,flash_gbps,flash_bytes_per_token,stall_seconds,peak_rss_bytes" >"$out.csv"
for ((i = 0; i <= steps; i++)); do
	b=$((total * i / steps + (i == steps ? 64 << 20 : 0)))
	./decode -m "$model" --tier flash --dram-budget "$b" --prompt-tokens 8 \
		-n "$tokens" --ignore-eos --temp 0 --stats-json "$work/r.json" \
		>/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
	python3 - "$work/r.json" "$b" >>"$out.csv" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
dec, fl = d["decode"], d["tiers"].get("flash", {})
step = dec.get("median_step_ms", 0)
print(f'{sys.argv[2]},{dec["tok_per_s"]:.3f},{1000 / step if step else 0:.3f},'
      f'{fl.get("gbps", 0):.3f},{fl.get("bytes_per_token", 0):.0f},'
      f'{fl.get("stall_seconds", 0):.4f},{d["peak_rss_bytes"]}')
PY
	tail -n 1 "$out.csv" >&2
done
{
	echo "# $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "# ${DRAM_GBPS:+DRAM_GBPS=$DRAM_GBPS }bench/budget-sweep.sh -n $tokens -s $steps $model"
	bench_machine_md "$work/w.json" | sed 's/^- /# /'
} >>"$out.csv"
if command -v gnuplot >/dev/null; then
	gnuplot <<GP
set terminal png size 900,540 noenhanced
set output "$out.png"
set datafile separator ","
set key top left
set xlabel "--dram-budget (MiB)"
set ylabel "decode tok/s"
set y2label "flash GB/s"
set y2tics
set grid
set title "Strata flash tier: decode speed vs DRAM budget ($(basename "$model"))"
plot "$out.csv" every ::1 using (\$1/1048576):2 with linespoints title "tok/s (wall)", \
     "" every ::1 using (\$1/1048576):3 with linespoints title "tok/s (median step)", \
     "" every ::1 using (\$1/1048576):4 axes x1y2 with linespoints title "flash GB/s"
GP
fi
echo "wrote $out.csv${out:+ and $out.png}" >&2
