#!/usr/bin/env bash
# Flash at device speed: how close the flash tier, streaming every weight
# every token (--dram-budget 0), comes to the bound that the device and the
# compute set together.
#
#   bench/flash-bound.sh [options] [MODEL.gguf]
#     -r, --rounds R          rounds (default 3; the two runs of a round
#                             swap order every round)
#     -n, --tokens N          tokens to generate per run (default 32)
#         --prompt-tokens P   fixed prompt tokens (default 8)
#     -t, --threads T         decode threads (default: decode's, all CPUs)
#         --prefetch K        flash tier --prefetch (default: decode's)
#         --probe-gbps X      flash read GB/s to use; skips bench/probe
#         --probe-json FILE   take it from an existing bench/probe profile
#         --no-fio            no fio runs
#     -h, --help              this text
#   MODEL default: $STRATA_CACHE/bench/tinyllama-1.1b-q4_0.gguf (made with
#   models/mkmodel if missing; STRATA_CACHE defaults to ~/.cache/strata).
#
# 1. Device speed: `bench/probe --no-dram --flash-dir DIR` with DIR the
#    model's directory (so it reads the disk the model is on); the figure
#    used is the best sequential read GB/s at blocks of 1 MiB (the flash
#    tier's request size) and larger, any queue depth.
# 2. Each round: a compute-only run, weights resident,
#      ./decode -m MODEL --tier dram --prompt-tokens P -n N --ignore-eos
#               --temp 0 --stats-json J
#    and a streaming run, the same with --tier flash --dram-budget 0.
#    and fio reading the same model file as the tier does (O_DIRECT,
#    io_uring, huge-page buffers: --iomem=shmhuge with 2 MiB pages reserved
#    for the run and given back; 4 KiB-page buffers, labelled so, where
#    they cannot be had), sequential for 3 s, 512 KiB at QD16 and 1 MiB at
#    QD32, the better of the two; achieved / fio is the per-round ratio.
#    --no-fio skips it.
# Bound = min(compute tok/s, device GB/s x 1e9 / flash bytes per token);
# percent of bound = flash tok/s / bound (goal: >= 90%).  Achieved GB/s is
# the flash I/O of the decode phase over its time (tiers.flash.io_gbps).
# Medians are taken over rounds, of each figure and of the per-round
# percentages.
#
# Output: bench/results/flash-bound-DATE.{csv,md} (-HHMMSS added if taken);
# the .md names the machine (CPU, CPUs used, the kernels' ISA path, the
# DRAM read GB/s measured at the start of the run by bench/probe --quick,
# bench/lib.sh; DRAM_GBPS, if given, is taken instead and labelled so).
# Exit status: 0 done, 1 runtime error, 2 usage error.
set -euo pipefail
export LC_ALL=C

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }
BENCH=flash-bound
# shellcheck source=bench/lib.sh
. bench/lib.sh

rounds=3 tokens=32 prompt=8 threads="" prefetch="" probe_gbps="" probe_json=""
use_fio=1
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--no-fio) use_fio=0; shift; continue ;;
	-r | --rounds | -n | --tokens | --prompt-tokens | -t | --threads | --prefetch | \
		--probe-gbps | --probe-json)
		(($# >= 2)) || bad "$1 needs a value"
		case $1 in
		-r | --rounds) rounds=$2 ;;
		-n | --tokens) tokens=$2 ;;
		--prompt-tokens) prompt=$2 ;;
		-t | --threads) threads=$2 ;;
		--prefetch) prefetch=$2 ;;
		--probe-gbps) probe_gbps=$2 ;;
		--probe-json) probe_json=$2 ;;
		esac
		shift 2 ;;
	--) shift; break ;;
	-*) bad "unknown option '$1'" ;;
	*) break ;;
	esac
done
(($# <= 1)) || bad "one model at most (got: $*)"

posint='^[1-9][0-9]*$'
[[ $rounds =~ $posint ]] || bad "bad --rounds '$rounds' (want a positive integer)"
{ [[ $tokens =~ $posint ]] && ((tokens >= 2)); } ||
	bad "bad --tokens '$tokens' (want an integer >= 2: the first token comes from the prompt)"
[[ $prompt =~ $posint ]] || bad "bad --prompt-tokens '$prompt' (want a positive integer)"
[[ -z $threads || $threads =~ $posint ]] || bad "bad --threads '$threads' (want a positive integer)"
[[ -z $prefetch || $prefetch =~ ^[0-9]+$ ]] || bad "bad --prefetch '$prefetch' (want an integer >= 0)"
probe_given=""
[[ -z $probe_gbps ]] || probe_given="--probe-gbps $probe_gbps"
[[ -z $probe_json ]] || probe_given="--probe-json $probe_json"
if [[ -n $probe_gbps ]]; then
	{ [[ $probe_gbps =~ ^[0-9]*[.]?[0-9]+$ ]] &&
		awk -v x="$probe_gbps" 'BEGIN { exit !(x > 0) }'; } ||
		bad "bad --probe-gbps '$probe_gbps' (want GB/s > 0, e.g. 3.8)"
	[[ -z $probe_json ]] || bad "--probe-gbps and --probe-json: give one"
fi
[[ -z $probe_json || -r $probe_json ]] || bad "--probe-json '$probe_json' is not readable"
bench_dram_check

command -v python3 >/dev/null || die "'python3' is missing"
[[ -x ./decode ]] || die "./decode is not built (run make)"
model=$(bench_model "${1:-}")
model_dir=$(dirname "$model")

work=$(mktemp -d)
hp_file=/proc/sys/vm/nr_hugepages
hp_old=$(cat "$hp_file" 2>/dev/null || echo "")
trap 'rm -rf "$work"; [[ -z $hp_old ]] || echo "$hp_old" >"$hp_file" 2>/dev/null || true' EXIT

# fio as the tier reads: O_DIRECT, io_uring, huge-page buffers when 2 MiB
# pages can be reserved (32 MiB at 1 MiB x QD32); prints GB/s
fio_mem=malloc
if ((use_fio)); then
	command -v fio >/dev/null || die "'fio' is missing (apt-get install fio, or --no-fio)"
	if [[ -n $hp_old ]] && ((hp_old < 32)) && echo 32 >"$hp_file" 2>/dev/null &&
		(($(cat "$hp_file") >= 32)); then
		fio_mem=shmhuge
	elif [[ -n $hp_old ]] && ((hp_old >= 32)); then
		fio_mem=shmhuge
	fi
fi
fio_read() { # BS QD
	fio --name=r --filename="$model" --readonly --direct=1 --ioengine=io_uring \
		--rw=read --bs="$1" --iodepth="$2" --iomem="$fio_mem" --time_based \
		--runtime=3 --output-format=json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"] / 1e9)'
}

# 0. the DRAM read bandwidth at the run's threads, for the machine lines
bench_dram "${threads:-$(nproc)}"

# 1. the device's read bandwidth, measured on the model's own filesystem
probe_src=""
if [[ -z $probe_gbps ]]; then
	if [[ -z $probe_json ]]; then
		[[ -x bench/probe ]] || die "bench/probe is not built (run make)"
		echo "flash-bound: bench/probe --no-dram --flash-dir $model_dir" >&2
		bench/probe --no-dram --flash-dir "$model_dir" -o "$work/probe.json" ||
			die "bench/probe failed (see above); pass --probe-gbps X to skip it"
		probe_json=$work/probe.json
		probe_src="bench/probe --no-dram --flash-dir $model_dir"
	else
		probe_src="profile $probe_json"
	fi
	read -r probe_gbps cell pdir < <(python3 - "$probe_json" <<'PY'
import json, sys
fl = json.load(open(sys.argv[1])).get("flash")
if not fl:
    sys.exit("the profile has no flash measurements")
best = max((g, int(b), int(q)) for b, row in fl["read_gbps"].items()
           for q, g in row.items() if int(b) >= 1 << 20)
print(f"{best[0]} {best[1] >> 10}KiB@QD{best[2]} {fl['dir']}")
PY
	) || die "cannot read the flash read GB/s from $probe_json"
	if [[ $(stat -c %d "$pdir" 2>/dev/null) != "$(stat -c %d "$model_dir")" ]]; then
		echo "flash-bound: warning: the profile measured $pdir, not the filesystem of $model" >&2
	fi
	probe_src="$probe_src: $probe_gbps GB/s ($cell)"
else
	probe_src="--probe-gbps $probe_gbps (given)"
fi
echo "flash-bound: device read $probe_src" >&2

# 2. rounds: compute-only (dram) and streaming (flash, budget 0), alternated
common=(-m "$model" --prompt-tokens "$prompt" -n "$tokens" --ignore-eos --temp 0)
[[ -z $threads ]] || common+=(-t "$threads")
flash_opts=(--tier flash --dram-budget 0)
[[ -z $prefetch ]] || flash_opts+=(--prefetch "$prefetch")
for ((r = 1; r <= rounds; r++)); do
	order=(dram flash)
	((r % 2)) || order=(flash dram)
	for tier in "${order[@]}"; do
		opts=(--tier dram)
		[[ $tier == dram ]] || opts=("${flash_opts[@]}")
		echo "flash-bound: round $r/$rounds $tier" >&2
		./decode "${common[@]}" "${opts[@]}" --stats-json "$work/$tier-$r.json" \
			>/dev/null 2>"$work/err" ||
			{ tail -n 5 "$work/err" >&2; die "./decode --tier $tier failed (round $r)"; }
		# fio right after the streaming run, alternated with it
		if ((use_fio)) && [[ $tier == flash ]]; then
			a=$(fio_read 512k 16) && b=$(fio_read 1m 32) ||
				die "fio failed (round $r); --no-fio skips it"
			echo "$a $b" >"$work/fio-$r"
			echo "flash-bound: round $r fio 512KiB QD16 $a GB/s, 1MiB QD32 $b GB/s ($fio_mem buffers)" >&2
		fi
	done
done

# 3. per round and medians; csv + markdown under bench/results
out=$(bench_out flash-bound)
machine=$(bench_machine_md "$work/dram-1.json")
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
disk=$(df --output=source,fstype "$model" | tail -n 1 | tr -s ' ')
cmd="${DRAM_GBPS:+DRAM_GBPS=$DRAM_GBPS }bench/flash-bound.sh -r $rounds -n $tokens --prompt-tokens $prompt"
[[ -z $threads ]] || cmd+=" -t $threads"
[[ -z $prefetch ]] || cmd+=" --prefetch $prefetch"
if [[ -n $probe_given ]]; then
	cmd+=" $probe_given"
fi
cmd+=" $model"

WORK=$work OUT=$out ROUNDS=$rounds GBPS=$probe_gbps PSRC=$probe_src \
	PROFILE=$probe_json CMD=$cmd MODEL=$model DISK=$disk \
	MACHINE=$machine MEM=$mem \
	RUN="./decode ${common[*]}" FLASH="${flash_opts[*]}" FIO=$use_fio \
	FIO_MEM=$fio_mem \
	DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" python3 - <<'PY'
import json, os, statistics as st, sys

E = os.environ
gbps = float(E["GBPS"])
rows = []
for r in range(1, int(E["ROUNDS"]) + 1):
    c = json.load(open(f"{E['WORK']}/dram-{r}.json"))
    f = json.load(open(f"{E['WORK']}/flash-{r}.json"))
    fl = f["tiers"].get("flash")
    if not fl or not fl.get("bytes_read"):
        raise SystemExit(f"flash-bound: round {r}: the flash run streamed "
                         "nothing (no tiers.flash in its stats)")
    resident = f["tiers"].get("dram", {}).get("bytes_read", 0)
    if resident:
        print(f"flash-bound: warning: round {r}: {resident} bytes came from "
              "DRAM in the --dram-budget 0 run", file=sys.stderr)
    bpt = fl["bytes_per_token"]
    compute = c["decode"]["tok_per_s"]
    io_bound = gbps * 1e9 / bpt
    bound = min(compute, io_bound)
    tps = f["decode"]["tok_per_s"]
    fio = float("nan")
    if E["FIO"] == "1":
        fio = max(float(x) for x in open(f"{E['WORK']}/fio-{r}").read().split())
    rows.append(dict(
        round=r, compute_tok_s=compute, flash_tok_s=tps,
        flash_bytes_per_token=bpt, io_bound_tok_s=io_bound, bound_tok_s=bound,
        limited_by="compute" if compute < io_bound else "flash",
        pct_of_bound=100 * tps / bound, achieved_io_gbps=fl["io_gbps"],
        achieved_weight_gbps=fl["gbps"], probe_gbps=gbps,
        pct_of_probe=100 * fl["io_gbps"] / gbps,
        fio_gbps=fio, pct_of_fio=100 * fl["io_gbps"] / fio,
        # every unit's instance waits on its own ring: the mean per unit
        stall_pct=100 * fl["stall_seconds"] / f["decode"]["seconds"] /
                  max(1, f.get("nmu_summary", {}).get("units", 1)),
        median_step_ms=f["decode"]["median_step_ms"],
        queue_depth_mean=fl.get("queue_depth_mean", float("nan")),
        decode_tokens=f["decode"]["tokens"], peak_rss_bytes=f["peak_rss_bytes"]))
cols = list(rows[0])
with open(E["OUT"] + ".csv", "w") as fo:
    fo.write(",".join(cols) + "\n")
    for r in rows:
        fo.write(",".join(str(r[k]) if isinstance(r[k], (int, str))
                          else f"{r[k]:.6g}" for k in cols) + "\n")

med = {k: st.median(r[k] for r in rows) for k in cols
       if not isinstance(rows[0][k], str)}
L = ["# Flash at device speed: the flash tier against its bound", ""]
L.append(f"- date: {E['DATE']}")
L.append(E["MACHINE"])
L.append(f"- memory {E['MEM']}; model on {E['DISK']}")
L.append(f"- model: `{E['MODEL']}`")
L.append(f"- command: `{E['CMD']}`")
L.append(f"- device read: {E['PSRC']}")
L.append(f"- compute-only run: `{E['RUN']} --tier dram --stats-json J`")
L.append(f"- streaming run: `{E['RUN']} {E['FLASH']} --stats-json J`")
L.append("- bound = min(compute tok/s, device GB/s x 1e9 / "
         "`tiers.flash.bytes_per_token`); tok/s = `decode.tok_per_s`; achieved "
         "= `tiers.flash.io_gbps` (bytes read from the file during decode / "
         "decode time); the two runs of a round alternate, order flipped "
         "each round; mean QD = `tiers.flash.queue_depth_mean` (reads in "
         "flight at each submit; nan where decode does not report it)")
L.append("")
L.append("| round | compute tok/s | flash tok/s | MiB/token streamed | I/O bound "
         "tok/s | bound tok/s | % of bound | achieved GB/s | % of device | "
         "stalled | mean QD |")
L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def line(name, r):
    return (f"| {name} | {r['compute_tok_s']:.2f} | {r['flash_tok_s']:.2f} | "
            f"{r['flash_bytes_per_token'] / 2**20:.1f} | "
            f"{r['io_bound_tok_s']:.2f} | {r['bound_tok_s']:.2f} | "
            f"{r['pct_of_bound']:.1f}% | {r['achieved_io_gbps']:.2f} | "
            f"{r['pct_of_probe']:.1f}% | {r['stall_pct']:.0f}% | "
            f"{r['queue_depth_mean']:.1f} |")
for r in rows:
    L.append(line(str(r["round"]), r))
L.append(line("**median**", med))
L.append("")
verdict = "met" if med["pct_of_bound"] >= 90 else "NOT met"
lim = st.mode(r["limited_by"] for r in rows)
L.append(f"Median {med['pct_of_bound']:.1f}% of the bound (goal >= 90%: "
         f"{verdict}); the bound is set by {lim}; flash read at "
         f"{med['achieved_io_gbps']:.2f} GB/s against the device's {gbps:g} "
         f"GB/s ({med['pct_of_probe']:.0f}%).  Medians are per column (the "
         "% columns: medians of the per-round figures).")
if E["FIO"] == "1":
    bufs = ("huge-page (2 MiB) buffers" if E["FIO_MEM"] == "shmhuge"
            else "4 KiB-page buffers (no huge pages could be reserved)")
    L.append("")
    L.append(f"Against fio on the same file, alternated with the streaming "
             f"run (O_DIRECT, io_uring, {bufs}, the better of 512 KiB QD16 "
             f"and 1 MiB QD32, 3 s each): fio "
             + ", ".join(f"{r['fio_gbps']:.2f}" for r in rows)
             + f" GB/s; the tier read {med['pct_of_fio']:.1f}% of it (median "
             f"of the per-round ratios; goal >= 90%: "
             f"{'met' if med['pct_of_fio'] >= 90 else 'NOT met'}).")
if E.get("PROFILE"):
    p = json.load(open(E["PROFILE"]))["flash"]
    qds = list(next(iter(p["read_gbps"].values())))
    # the same bound with the probe's cells at the tier's own request size
    # (1 MiB) and the depths it runs at (up to 64 in flight)
    op = p["read_gbps"].get(str(1 << 20), {})
    cells = [("QD" + q, op[q]) for q in ("16", "64") if q in op]
    if "sustained_read_gbps" in p:
        cells.append((f"sustained QD32 for {p['sustained_seconds']:.0f} s",
                      p["sustained_read_gbps"]))
    if cells:
        parts = []
        for q, g in cells:
            b = min(med["compute_tok_s"],
                    g * 1e9 / med["flash_bytes_per_token"])
            parts.append(f"{q} {g:.2f} GB/s: {100 * med['flash_tok_s'] / b:.1f}%")
        L.append("")
        L.append("Against the probe at the flash tier's own operating point "
                 "(1 MiB requests, " + "; ".join(parts) + " of that bound). "
                 "The headline uses the best cell of the whole profile.")
    L.append("")
    L.append(f"Device profile (bench/probe, {p['dir']} on {p['fs']}, file "
             f"{p['file_bytes'] >> 20} MiB), sequential read GB/s:")
    L.append("")
    L.append("| block | " + " | ".join("QD" + q for q in qds) + " |")
    L.append("|---:|" + "---:|" * len(qds))
    for b, row in p["read_gbps"].items():
        L.append(f"| {int(b) >> 10} KiB | " +
                 " | ".join(f"{row[q]:.2f}" for q in qds) + " |")
open(E["OUT"] + ".md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
echo "flash-bound: wrote $out.md and $out.csv" >&2
