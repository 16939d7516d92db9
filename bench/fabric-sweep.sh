#!/usr/bin/env bash
# bench/fabric-sweep.sh - the paper's argument as a curve: decode tok/s at
# --chips 2 as the fabric's hop latency grows (--fabric-latency-us X), and
# the slope of token time against X compared with the collectives a token
# makes (every collective is one hop, so the slope should be their count).
#
#   bench/fabric-sweep.sh [-r RUNS] [-n TOKENS] [-x "0 1 2 5 10 20 50"] [MODEL]
#
# MODEL: default the TinyLlama-1.1B-shaped Q4_0 (bench/lib.sh). Runs are
# interleaved (every X once, then again) and the median of RUNS kept.
# Writes bench/results/fabric-sweep-DATE.{csv,md,png}; the .md names the
# machine (CPU, CPUs used, the kernels' ISA path, the DRAM read GB/s
# measured at the start of the run, bench/lib.sh; DRAM_GBPS, if given, is
# taken instead and labelled so). Take `flock /tmp/strata-bench.lock`
# around it on a shared machine.
set -euo pipefail
BENCH=fabric-sweep
source bench/lib.sh

runs=3 ntok=32 xs="0 1 2 5 10 20 50" chips=2
while getopts "r:n:x:c:h" o; do
	case $o in
	r) runs=$OPTARG ;;
	n) ntok=$OPTARG ;;
	x) xs=$OPTARG ;;
	c) chips=$OPTARG ;;
	h) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) bad "unknown option" ;;
	esac
done
shift $((OPTIND - 1))
bench_dram_check
[[ -x ./decode ]] || die "./decode is not built (run make)"
model=$(bench_model "${1:-}")
out=$(bench_out "$BENCH")
bench_dram "$(nproc)" # the chips share the CPUs, decode's default
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for ((r = 0; r < runs; r++)); do
	for x in $xs; do
		./decode -m "$model" --prompt-tokens 16 -n "$ntok" --ignore-eos \
			--temp 0 --chips "$chips" --fabric-latency-us "$x" \
			--stats-json "$tmp/$x-$r.json" >/dev/null 2>"$tmp/err" ||
			die "decode failed at X=$x: $(tail -2 "$tmp/err")"
	done
done

read -r x0 _ <<<"$xs"
MACHINE=$(bench_machine_md "$tmp/$x0-0.json") \
	python3 - "$tmp" "$out" "$model" "$runs" "$chips" "$xs" <<'PY'
import json, os, statistics, subprocess, sys, datetime
tmp, out, model, runs, chips, xs = sys.argv[1:7]
runs, xs = int(runs), [float(x) for x in xs.split()]
cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
                     capture_output=True, text=True).stdout.strip()
rows = []
for x in xs:
    ms, fab, coll = [], [], []
    for r in range(runs):
        d = json.load(open(f"{tmp}/{x:g}-{r}.json"))
        t = d["decode"]["tokens"]
        ms.append(d["decode"]["median_step_ms"])
        f = d["fabric"]
        fab.append(f["seconds_per_token"] * 1e3)
        coll.append(sum(o["count"] for o in f["ops"].values()) / t)
    m = statistics.median(ms)
    rows.append((x, m, 1e3 / m, statistics.median(fab), statistics.median(coll)))
# least-squares slope of ms/token against X (us): ms per us of hop latency
n = len(rows)
mx = sum(r[0] for r in rows) / n
my = sum(r[1] for r in rows) / n
slope = sum((r[0] - mx) * (r[1] - my) for r in rows) / sum((r[0] - mx) ** 2 for r in rows)
coll = rows[0][4]
with open(out + ".csv", "w") as f:
    f.write("latency_us,median_step_ms,tok_s,fabric_ms_per_token,collectives_per_token\n")
    for r in rows:
        f.write("%g,%.4f,%.3f,%.4f,%.1f\n" % r)
date = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%MZ")
with open(out + ".md", "w") as f:
    f.write(f"# Decode vs fabric hop latency, --chips {chips}\n\n")
    f.write(f"- date: {date}\n{os.environ['MACHINE']}\n")
    f.write(f"- model: {model}\n")
    dg = f"DRAM_GBPS={os.environ['DRAM_GBPS']} " if os.environ.get("DRAM_GBPS") else ""
    f.write(f"- command: `{dg}bench/fabric-sweep.sh -r {runs}` (decode --prompt-tokens 16 "
            f"-n N --ignore-eos --temp 0 --chips {chips} --fabric-latency-us X; "
            f"median of {runs} interleaved runs of the median step)\n\n")
    f.write("| X us | ms/token | tok/s | fabric ms/token | collectives/token |\n|---|---|---|---|---|\n")
    for r in rows:
        f.write("| %g | %.3f | %.2f | %.3f | %.1f |\n" % r)
    f.write(f"\nSlope of token time against X: {slope * 1e3:.1f} us per us of hop "
            f"latency; collectives per token (chip 0): {coll:.0f}; ratio "
            f"{slope * 1e3 / coll:.3f} (1 = every collective adds exactly X to "
            f"the token).\n")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r[0] for r in rows], [r[2] for r in rows], "o-", label="measured")
    base = rows[0][1]
    ax.plot([r[0] for r in rows], [1e3 / (base + coll * r[0] / 1e3) for r in rows],
            "--", label=f"t0 + {coll:.0f} collectives x X")
    ax.set_xlabel("--fabric-latency-us X (per hop)")
    ax.set_ylabel("decode tok/s")
    ax.set_title(f"--chips {chips}, {cpu[:40]}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out + ".png", dpi=110)
except ImportError:
    print("fabric-sweep: no matplotlib, no plot", file=sys.stderr)
print(open(out + ".md").read())
PY
