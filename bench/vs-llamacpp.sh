#!/usr/bin/env bash
# Side-by-side decode and prefill speed: Strata's ./decode against llama.cpp's
# llama-bench on the same TinyLlama-1.1B-shaped files, same threads, same run.
#
#   bench/vs-llamacpp.sh [-r ROUNDS] [-t THREADS] [TYPE ...]
#       TYPE: q4_0 q8_0 q4_k_m (default: all three)
#
# For each file it alternates the two engines ROUNDS times (default 3; the
# order flips every round, because this VM's speed drifts by 25% and more -
# see MACHINE.md) and reports medians:
#   llama.cpp: llama-bench -t T -p 0 -n 128 (tg128) and -p 128 -n 0 (pp128),
#              -r LB_REPS each (default 3; llama-bench adds its own warm-up
#              run; every repetition is one sample for the median);
#   Strata:    ./decode -m F -t T --prompt-tokens 128 -n 128 --ignore-eos
#              --temp 0 --stats-json J  (its prefill and decode figures).
# DRAM roofline fraction = weight bytes read per token x tok/s / DRAM
# bandwidth; the bandwidth is measured at the start of the run, at THREADS
# threads, by bench/probe --quick (its DRAM read only; STRATA_KERNELS=avx2
# caps its sum at AVX2 like the kernels) - or DRAM_GBPS (GB/s), if given,
# which the results then label as given, not measured.
#
# Files: models/mkmodel --shape tinyllama-1.1b --type TYPE, made once into
# $STRATA_CACHE/bench/.  Results: bench/results/vs-llamacpp-DATE.{md,csv};
# the .md names the machine (CPU, threads, the kernels' ISA path, the DRAM
# figure and where it came from).
# Needs: make (./decode, models/mkmodel) and bench/build-llamacpp.sh.
set -euo pipefail

BENCH=vs-llamacpp
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=bench/lib.sh
. bench/lib.sh

rounds=${ROUNDS:-3}
threads=${THREADS:-2}
while getopts "r:t:h" opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	t) threads=$OPTARG ;;
	*) sed -n '2,26p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
types=("$@")
((${#types[@]})) || types=(q4_0 q8_0 q4_k_m)
bench_types "${types[@]}"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "vs-llamacpp: bad -r '$rounds'" >&2; exit 2; }
[[ $threads =~ ^[1-9][0-9]*$ ]] || { echo "vs-llamacpp: bad -t '$threads'" >&2; exit 2; }
lb_reps=${LB_REPS:-3}
[[ $lb_reps =~ ^[1-9][0-9]*$ ]] || { echo "vs-llamacpp: bad LB_REPS '$lb_reps'" >&2; exit 2; }
bench_dram_check

[[ -x ./decode && -x models/mkmodel ]] ||
	die "./decode or models/mkmodel is not built (run make)"
bin=$(bench_llamacpp_bin)

cache=${STRATA_CACHE:-$HOME/.cache/strata}
mkdir -p "$cache/bench" bench/results
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. the model files (made once; atomic so a killed run leaves none half made)
for ty in "${types[@]}"; do
	f=$cache/bench/tinyllama-1.1b-$ty.gguf
	if [[ ! -s $f ]]; then
		echo "vs-llamacpp: making $f" >&2
		models/mkmodel --shape tinyllama-1.1b --type "$ty" -o "$f.tmp" >&2 ||
			{ rm -f "$f.tmp"; die "mkmodel failed for type $ty"; }
		mv -f "$f.tmp" "$f"
	fi
done

# 2. the DRAM read bandwidth of this run, at its thread count (bench/lib.sh)
bench_dram "$threads"
dram=$BENCH_DRAM_GBPS

# 3. alternate the engines, one JSON line per measurement
raw=$work/raw.jsonl
for ((r = 1; r <= rounds; r++)); do
	for ty in "${types[@]}"; do
		f=$cache/bench/tinyllama-1.1b-$ty.gguf
		order=(ours theirs)
		((r % 2)) || order=(theirs ours)
		for who in "${order[@]}"; do
			echo "vs-llamacpp: round $r/$rounds $ty $who" >&2
			if [[ $who == ours ]]; then
				j=$work/ours-$ty-$r.json
				./decode -m "$f" -t "$threads" --prompt-tokens 128 -n 128 \
					--ignore-eos --temp 0 --stats-json "$j" >/dev/null 2>"$work/err" ||
					{ tail -5 "$work/err" >&2; die "./decode failed on $f"; }
				python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({"who":"ours","type":sys.argv[2],"round":int(sys.argv[3]),"stats":d}))' \
					"$j" "$ty" "$r" >>"$raw"
			else
				for test in "-p 0 -n 128" "-p 128 -n 0"; do
					# shellcheck disable=SC2086
					"$bin/llama-bench" -m "$f" -t "$threads" $test -r "$lb_reps" -o json \
						>"$work/lb.json" 2>"$work/err" ||
						{ tail -5 "$work/err" >&2; die "llama-bench failed on $f"; }
					python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [print(json.dumps({"who":"theirs","type":sys.argv[2],"round":int(sys.argv[3]),"bench":e})) for e in d]' \
						"$work/lb.json" "$ty" "$r" >>"$raw"
				done
			fi
		done
	done
done

# 4. medians, ratios, roofline; markdown + csv
stamp=$(date +%Y-%m-%d)
out=bench/results/vs-llamacpp-$stamp
[[ -e $out.md ]] && out=$out-$(date +%H%M%S)
machine=$(bench_machine_md "$work/ours-${types[0]}-1.json")
ver=$("$bin/llama-bench" --version 2>&1 | head -n 1 || true)
[[ -n $ver ]] || ver=$(strings "$bin/llama-bench" 2>/dev/null | grep -m1 -o 'build: [0-9a-f]*' || true)
cmd="${STRATA_KERNELS:+STRATA_KERNELS=$STRATA_KERNELS }${LLAMA_ISA:+LLAMA_ISA=$LLAMA_ISA }LB_REPS=$lb_reps ${DRAM_GBPS:+DRAM_GBPS=$DRAM_GBPS }bench/vs-llamacpp.sh -r $rounds -t $threads ${types[*]}"

RAW=$raw BIN=$bin OUT=$out MACHINE=$machine VER=${ver:-unknown} CMD=$cmd DRAM=$dram \
	ROUNDS=$rounds THREADS=$threads DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" \
	python3 - <<'EOF'
import json, os, statistics as st

rows = [json.loads(l) for l in open(os.environ["RAW"])]
types = []
for r in rows:
    if r["type"] not in types:
        types.append(r["type"])
dram = float(os.environ["DRAM"])


def med(xs):
    return st.median(xs) if xs else float("nan")


res = []
for ty in types:
    ours = [r["stats"] for r in rows if r["who"] == "ours" and r["type"] == ty]
    th = [r["bench"] for r in rows if r["who"] == "theirs" and r["type"] == ty]
    tg = [t for e in th if e["n_gen"] > 0 for t in e.get("samples_ts", [e["avg_ts"]])]
    pp = [t for e in th if e["n_prompt"] > 0 for t in e.get("samples_ts", [e["avg_ts"]])]
    o_tg = med([s["decode"]["tok_per_s"] for s in ours])
    o_pp = med([s["prefill"]["tok_per_s"] for s in ours])
    o_step = med([s["decode"].get("median_step_ms", float("nan")) for s in ours])
    bpt = med([s["tiers"]["dram"].get("bytes_per_token", float("nan")) for s in ours])
    t_tg, t_pp = med(tg), med(pp)
    roof = lambda tps: bpt * tps / (dram * 1e9)
    res.append(dict(
        type=ty, rounds=len(ours),
        ours_tg=o_tg, theirs_tg=t_tg, ratio_tg=o_tg / t_tg,
        ours_step_ms=o_step, ours_tg_by_step=1000.0 / o_step,
        ours_pp=o_pp, theirs_pp=t_pp, ratio_pp=o_pp / t_pp,
        bytes_per_token=bpt, roof_ours=roof(o_tg), roof_theirs=roof(t_tg),
        dram_gbps=dram,
        ours_tg_all=[round(s["decode"]["tok_per_s"], 2) for s in ours],
        theirs_tg_all=[round(x, 2) for x in tg]))

out = os.environ["OUT"]
cols = ["type", "ours_tg", "theirs_tg", "ratio_tg", "ours_step_ms",
        "ours_tg_by_step", "ours_pp", "theirs_pp", "ratio_pp",
        "bytes_per_token", "roof_ours", "roof_theirs", "dram_gbps"]
with open(out + ".csv", "w") as f:
    f.write(",".join(cols) + "\n")
    for r in res:
        f.write(",".join(str(r[c]) if isinstance(r[c], str) else f"{r[c]:.6g}"
                         for c in cols) + "\n")

L = []
L.append(f"# Strata vs llama.cpp - decode (tg128) and prefill (pp128)\n")
L.append(f"- date: {os.environ['DATE']}")
L.append(os.environ["MACHINE"])
L.append(f"- llama.cpp: {os.environ['VER']} (vendor/llama.cpp of the "
         "llama-cpp-python 0.3.36 sdist, bench/build-llamacpp.sh: Release, "
         f"LLAMA_ISA={os.environ.get('LLAMA_ISA') or 'native'}, built in "
         f"{os.path.basename(os.path.dirname(os.environ['BIN']))}/"
         + (": AMX left out, its matmul crashes on this CPU"
            if os.environ['BIN'].rstrip('/').endswith('build-noamx/bin') else "")
         + ")")
L.append(f"- command: `{os.environ['CMD']}`; {os.environ['ROUNDS']} rounds, "
         "engines alternated (order flipped each round), medians over all "
         "samples (ours: one run per round; llama-bench: LB_REPS "
         "repetitions per round)")
L.append("- files: `models/mkmodel --shape tinyllama-1.1b --type TYPE` "
         "(synthetic weights, real shape)")
L.append(f"- DRAM roofline: fraction = bytes/token x tok/s / {dram:g} GB/s, "
         "the DRAM read above (csv: roof_ours, roof_theirs, dram_gbps)")
L.append("")
L.append("| type | ours tg tok/s | llama.cpp tg tok/s | ratio | ours median "
         "step ms (tok/s) | ours pp tok/s | llama.cpp pp tok/s | ratio | "
         "MB/token | roofline ours | roofline llama.cpp |")
L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in res:
    L.append(f"| {r['type']} | {r['ours_tg']:.1f} | {r['theirs_tg']:.1f} | "
             f"{r['ratio_tg']:.2f} | {r['ours_step_ms']:.2f} "
             f"({r['ours_tg_by_step']:.1f}) | {r['ours_pp']:.1f} | "
             f"{r['theirs_pp']:.1f} | {r['ratio_pp']:.2f} | "
             f"{r['bytes_per_token'] / 1e6:.0f} | {100 * r['roof_ours']:.0f}% | "
             f"{100 * r['roof_theirs']:.0f}% |")
L.append("")
L.append("tok/s are wall-clock (llama-bench: 128 tokens / run time; ours: "
         "the decode phase of --stats-json).  Every round's tg tok/s:")
for r in res:
    L.append(f"- {r['type']}: ours {r['ours_tg_all']}, llama.cpp "
             f"{r['theirs_tg_all']}")
noisy = []
for r in res:
    for who, xs in (("ours", r["ours_tg_all"]), ("llama.cpp", r["theirs_tg_all"])):
        if xs and min(xs) > 0 and max(xs) / min(xs) > 1.5:
            noisy.append(f"{r['type']} {who} {max(xs) / min(xs):.1f}x")
if noisy:
    L.append("")
    L.append("**Disturbed run**: samples of one engine on one file differ by "
             "more than 1.5x (" + ", ".join(noisy) + "); this VM has host "
             "stalls (MACHINE.md) - rerun on a quiet machine, or with more "
             "rounds, before quoting these numbers.")
L.append("")
L.append("The llama.cpp roofline column uses our bytes/token (same file, same "
         "weights read per token).")
with open(out + ".md", "w") as f:
    f.write("\n".join(L) + "\n")
print("\n".join(L))
print(f"\nwrote {out}.md and {out}.csv")
EOF
