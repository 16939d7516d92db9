#!/usr/bin/env bash
# bench/chips-scaling.sh - decode tok/s at --chips 1, 2 (and more where
# there are cores) for TinyLlama-1.1B, llama-7B and llama-13B shapes (Q4_0,
# made by models/mkmodel; 13B on the flash tier), with the fabric's share
# of token time and --tp rows vs --tp allreduce.
#
#   bench/chips-scaling.sh [-r RUNS] [-n TOKENS] [-c "1 2"] [-s "SHAPES"]
#
# Every configuration uses all the CPUs: --chips 1 runs one unit per CPU,
# --chips N one unit per CPU per chip (CPUs / N each). Runs are
# interleaved, the median of RUNS kept. Writes
# bench/results/chips-scaling-DATE.{csv,md}; the .md names the machine
# (CPU, CPUs used, the kernels' ISA path, the DRAM read GB/s measured at
# the start of the run, bench/lib.sh; DRAM_GBPS, if given, is taken
# instead and labelled so). Take `flock /tmp/strata-bench.lock` around it
# on a shared machine.
set -euo pipefail
BENCH=chips-scaling
source bench/lib.sh

runs=3 ntok=16 chips_list="1 2" shapes="tinyllama-1.1b llama-7b llama-13b"
while getopts "r:n:c:s:h" o; do
	case $o in
	r) runs=$OPTARG ;;
	n) ntok=$OPTARG ;;
	c) chips_list=$OPTARG ;;
	s) shapes=$OPTARG ;;
	h) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) bad "unknown option" ;;
	esac
done
bench_dram_check
[[ -x ./decode && -x models/mkmodel ]] || die "run make first"
cache=${STRATA_CACHE:-$HOME/.cache/strata}/bench
mkdir -p "$cache"
out=$(bench_out "$BENCH")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ncpu=$(nproc)
bench_dram "$ncpu" # every configuration uses all the CPUs

for s in $shapes; do
	m=$cache/$s-q4_0.gguf
	if [[ ! -s $m ]]; then
		echo "$BENCH: making $m" >&2
		models/mkmodel --shape "$s" --type q4_0 -o "$m" >&2 || die "mkmodel $s"
	fi
done

configs=()
for s in $shapes; do
	tier=dram
	[[ $s == llama-13b ]] && tier=flash
	for c in $chips_list; do
		configs+=("$s $tier $c rows")
		[[ $c -gt 1 ]] && configs+=("$s $tier $c allreduce")
	done
done
for ((r = 0; r < runs; r++)); do
	for cf in "${configs[@]}"; do
		set -- $cf
		units=$((ncpu / $3 > 0 ? ncpu / $3 : 1))
		n=$ntok
		[[ $2 == flash ]] && n=$((ntok / 4 > 2 ? ntok / 4 : 3))
		./decode -m "$cache/$1-q4_0.gguf" --tier "$2" --prompt-tokens 8 -n "$n" \
			--ignore-eos --temp 0 --chips "$3" --tp "$4" --nmus "$units" \
			--stats-json "$tmp/${cf// /_}-$r.json" >/dev/null 2>"$tmp/err" ||
			die "decode failed ($cf): $(tail -2 "$tmp/err")"
	done
done

MACHINE=$(bench_machine_md "$tmp/${configs[0]// /_}-0.json") \
	python3 - "$tmp" "$out" "$runs" "${configs[@]}" <<'PY'
import json, os, statistics, sys, datetime
tmp, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
configs = sys.argv[4:]
rows, base = [], {}
for cf in configs:
    shape, tier, chips, tp = cf.split()
    ms, fab = [], []
    for r in range(runs):
        d = json.load(open(f"{tmp}/{cf.replace(' ', '_')}-{r}.json"))
        ms.append(d["decode"]["median_step_ms"])
        f = d.get("fabric")
        fab.append(f["seconds_per_token"] * 1e3 if f and f["chips"] > 1 else 0)
        units = d["nmu_summary"]["units"]
    m = statistics.median(ms)
    if chips == "1":
        base[shape] = m
    rows.append((shape, tier, int(chips), tp, units, m, 1e3 / m,
                 base.get(shape, m) / m, statistics.median(fab),
                 100 * statistics.median(fab) / m))
date = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%MZ")
with open(out + ".csv", "w") as f:
    f.write("shape,tier,chips,tp,units,median_step_ms,tok_s,vs_1_chip,fabric_ms_per_token,fabric_pct\n")
    for r in rows:
        f.write("%s,%s,%d,%s,%d,%.3f,%.3f,%.3f,%.4f,%.1f\n" % r)
with open(out + ".md", "w") as f:
    f.write("# Decode tok/s by chips (Q4_0 shapes from models/mkmodel)\n\n")
    dg = f"DRAM_GBPS={os.environ['DRAM_GBPS']} " if os.environ.get("DRAM_GBPS") else ""
    f.write(f"- date: {date}\n{os.environ['MACHINE']}\n")
    f.write(f"- command: `{dg}bench/chips-scaling.sh -r {runs}`; median of {runs} interleaved runs of the median decode step; all CPUs in every row\n\n")
    f.write("| shape | tier | chips | tp | units (all chips) | ms/token | tok/s | vs 1 chip | fabric ms/token | fabric % |\n|---|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        f.write("| %s | %s | %d | %s | %d | %.2f | %.2f | %.3f | %.3f | %.1f |\n" % r)
print(open(out + ".md").read())
PY
