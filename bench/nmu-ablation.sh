#!/usr/bin/env bash
# Near-memory units against the engine before them and against themselves
# switched off, side by side in one run.
#
#   bench/nmu-ablation.sh [-r ROUNDS] [-t UNITS] [-n TOKENS] [-b BASE] [TYPE ...]
#       TYPE: q4_0 q8_0 q4_k_m (default: all three)
#
# Engines, alternated in a rotating order every round (this VM drifts;
# MACHINE.md), on TinyLlama-1.1B-shaped files from models/mkmodel:
#   base   : ./decode of commit BASE (default 983d7a6, the OpenMP engine
#            before the unit pool), built once into $STRATA_CACHE/base-BASE
#   nmu-on : ./decode (pinned units, each with its own shard and KV cache)
#   nmu-off: ./decode --nmu off (unpinned threads, one shared arena and KV
#            cache, any thread reads any row)
# each as ./decode -m F -t UNITS --prompt-tokens 128 -n TOKENS --ignore-eos
# --temp 0 --stats-json J, on the dram tier, and for q4_0 also on the flash
# tier with --dram-budget 0. Reported: medians over ROUNDS of decode tok/s
# (wall), median step tok/s, prefill tok/s, and for the unit engines the
# barrier wait per token, the imbalance and the bytes moved between units
# per token (their --stats-json nmu_summary). Ratios are nmu-on over base
# and over nmu-off. Results: bench/results/nmu-ablation-DATE.{md,csv};
# the .md names the machine (CPU, CPUs used, the kernels' ISA path, the
# DRAM read GB/s at UNITS threads measured at the start of the run,
# bench/lib.sh; DRAM_GBPS, if given, is taken instead and labelled so).
set -euo pipefail

BENCH=nmu-ablation
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. bench/lib.sh

rounds=3 units=2 tokens=64 base=983d7a6
while getopts "r:t:n:b:h" opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	t) units=$OPTARG ;;
	n) tokens=$OPTARG ;;
	b) base=$OPTARG ;;
	*) sed -n '2,26p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
types=("$@")
((${#types[@]})) || types=(q4_0 q8_0 q4_k_m)
bench_types "${types[@]}"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || bad "bad -r '$rounds'"
[[ $units =~ ^[1-9][0-9]*$ ]] || bad "bad -t '$units'"
[[ $tokens =~ ^[1-9][0-9]*$ ]] || bad "bad -n '$tokens'"
bench_dram_check
[[ -x ./decode && -x models/mkmodel ]] || die "run make first"

cache=${STRATA_CACHE:-$HOME/.cache/strata}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/base" 2>/dev/null || true; rm -rf "$work"' EXIT

# 1. the base engine, built once per commit (a detached worktree, removed)
sha=$(git rev-parse --short=12 "$base^{commit}") || die "no commit '$base'"
base_bin=$cache/base-$sha/decode
if [[ ! -x $base_bin ]]; then
	echo "$BENCH: building $sha into $cache/base-$sha" >&2
	git worktree add -q --detach "$work/base" "$sha"
	make -C "$work/base" -j"$(nproc)" decode >/dev/null
	mkdir -p "$cache/base-$sha"
	cp "$work/base/decode" "$base_bin.tmp" && mv "$base_bin.tmp" "$base_bin"
fi

# 2. the model files
files=()
for t in "${types[@]}"; do
	f=$cache/bench/tinyllama-1.1b-$t.gguf
	if [[ ! -s $f ]]; then
		mkdir -p "$cache/bench"
		models/mkmodel --shape tinyllama-1.1b --type "$t" -o "$f" >&2 ||
			die "mkmodel $t failed"
	fi
	files+=("$f")
done

# 3. the runs: config = engine:tier:type
bench_dram "$units"
./decode -m "${files[0]}" --prompt-tokens 4 -n 1 --temp 0 \
	--stats-json "$work/isa.json" >/dev/null 2>&1 || die "./decode failed on ${files[0]}"
machine=$(bench_machine_md "$work/isa.json")
out=$(bench_out "$BENCH")
csv=$out.csv
echo "round,engine,tier,type,decode_tok_s,step_tok_s,prefill_tok_s,barrier_ms_per_token,imbalance,moved_bytes_per_token" >"$csv"

run() { # engine tier type file round
	local eng=$1 tier=$2 type=$3 f=$4 r=$5 bin=./decode extra=()
	[[ $eng == base ]] && bin=$base_bin
	[[ $eng == nmu-off ]] && extra+=(--nmu off)
	[[ $tier == flash ]] && extra+=(--tier flash --dram-budget 0)
	"$bin" -m "$f" -t "$units" --prompt-tokens 128 -n "$tokens" --ignore-eos \
		--temp 0 "${extra[@]}" --stats-json "$work/r.json" </dev/null \
		>/dev/null 2>"$work/err" || { cat "$work/err" >&2; die "$eng $tier $type failed"; }
	python3 - "$work/r.json" "$r,$eng,$tier,$type" "$units" >>"$csv" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
dec, pre = d["decode"], d["prefill"]
step = 1000.0 / dec["median_step_ms"] if dec["median_step_ms"] else 0
s = d.get("nmu_summary")
units = d.get("nmu", [])
bar = sum(u["barrier_seconds"] for u in units) / max(len(units), 1)
bar_ms = 1e3 * bar / dec["tokens"] if units and dec["tokens"] else float("nan")
imb = s["imbalance"] if s else float("nan")
moved = s["moved_bytes_per_token"] if s else float("nan")
print(f'{sys.argv[2]},{dec["tok_per_s"]:.3f},{step:.3f},{pre["tok_per_s"]:.3f},'
      f'{bar_ms:.4f},{imb:.4f},{moved:.1f}')
EOF
}

configs=()
for i in "${!types[@]}"; do
	for e in base nmu-on nmu-off; do
		configs+=("$e:dram:${types[$i]}:${files[$i]}")
		[[ ${types[$i]} == q4_0 ]] && configs+=("$e:flash:${types[$i]}:${files[$i]}")
	done
done
n=${#configs[@]}
for ((r = 1; r <= rounds; r++)); do
	echo "$BENCH: round $r/$rounds ($n runs)" >&2
	for ((k = 0; k < n; k++)); do
		IFS=: read -r e tier type f <<<"${configs[$(((k + r) % n))]}"
		run "$e" "$tier" "$type" "$f" "$r"
	done
done

# 4. medians and ratios
python3 - "$csv" "$out.md" "$machine" "${DRAM_GBPS:+DRAM_GBPS=$DRAM_GBPS }" "$units" "$rounds" "$tokens" "$sha" <<'EOF'
import csv, statistics, sys, datetime
rows = list(csv.DictReader(open(sys.argv[1])))
md, machine, dg, units, rounds, tokens, sha = sys.argv[2:9]
med = {}
for r in rows:
    k = (r["tier"], r["type"], r["engine"])
    med.setdefault(k, []).append(r)
def m(k, f):
    v = [float(r[f]) for r in med.get(k, [])]
    v = [x for x in v if x == x]
    return statistics.median(v) if v else float("nan")
with open(md, "w") as o:
    o.write(f"# Near-memory units: ablation and the engine before them\n\n")
    o.write(f"- date: {datetime.date.today()}\n{machine}\n")
    o.write(f"- {units} units, "
            f"TinyLlama-1.1B-shaped files, prompt 128, {tokens} tokens, "
            f"medians of {rounds} rounds, engines alternated. base = {sha} "
            f"(OpenMP). Command: `{dg}bench/nmu-ablation.sh -r {rounds} -t {units} "
            f"-n {tokens}`\n\n")
    o.write("| tier | type | engine | decode tok/s | median-step tok/s | prefill tok/s | barrier ms/token | imbalance | moved KiB/token |\n|---|---|---|---:|---:|---:|---:|---:|---:|\n")
    keys = sorted({(k[0], k[1]) for k in med})
    for t, ty in keys:
        for e in ("base", "nmu-on", "nmu-off"):
            k = (t, ty, e)
            if k not in med: continue
            o.write(f"| {t} | {ty} | {e} | {m(k,'decode_tok_s'):.2f} | {m(k,'step_tok_s'):.2f} | "
                    f"{m(k,'prefill_tok_s'):.2f} | {m(k,'barrier_ms_per_token'):.3f} | "
                    f"{m(k,'imbalance'):.3f} | {m(k,'moved_bytes_per_token')/1024:.1f} |\n")
    o.write("\n| tier | type | decode on/base | step on/base | prefill on/base | decode on/off | prefill on/off |\n|---|---|---:|---:|---:|---:|---:|\n")
    for t, ty in keys:
        on, b, off = (t, ty, "nmu-on"), (t, ty, "base"), (t, ty, "nmu-off")
        r = lambda a, c, f: m(a, f) / m(c, f) if m(c, f) else float("nan")
        o.write(f"| {t} | {ty} | {r(on,b,'decode_tok_s'):.3f} | {r(on,b,'step_tok_s'):.3f} | "
                f"{r(on,b,'prefill_tok_s'):.3f} | {r(on,off,'decode_tok_s'):.3f} | "
                f"{r(on,off,'prefill_tok_s'):.3f} |\n")
print(open(md).read())
EOF
echo "$BENCH: wrote $out.md and $csv" >&2
