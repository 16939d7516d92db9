#!/usr/bin/env bash
# The fabric's latency and bandwidth by message size: bench/probe
# --fabric-only (a hand-written shared-memory handoff between two pinned
# processes, the floor, and engine/fabric.h's allgather, allreduce and
# bcast at 2 chips, 64 B .. 4 MiB) as CSV, a log-log plot and a note with
# the issue's yardstick: 8 KiB collectives, median <= 2x the floor.
#
#   bench/fabric-curve.sh [-q] [-c A,B]
#       -q      probe --quick (fewer round trips; ~1 s instead of ~15 s)
#       -c A,B  the two CPUs (probe --fabric-cpus; default: the first two)
# Output: bench/results/fabric-curve-DATE.{csv,png,md,json} (-HHMMSS if
# taken); CSV columns: series, bytes, median us, p99 us, link GB/s (bytes
# one process publishes / median), samples; the .md names the machine
# (CPU, the kernels' ISA path, the DRAM read GB/s at 2 threads measured in
# the same run, bench/lib.sh; DRAM_GBPS, if given, is taken instead and
# labelled so). Wrap timed runs in `flock /tmp/strata-bench.lock` on a
# shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=() cpus=()
while getopts "qc:h" opt; do
	case $opt in
	q) quick=(--quick) ;;
	c) cpus=(--fabric-cpus "$OPTARG") ;;
	*) sed -n '2,17p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
BENCH=fabric-curve
# shellcheck source=bench/lib.sh
. bench/lib.sh
(($# == 0)) || bad "no arguments expected: $*"
bench_dram_check
[[ -x bench/probe ]] || die "bench/probe is not built (run make)"
if ! python3 -c 'import matplotlib' 2>/dev/null; then
	echo "$BENCH: installing matplotlib for the plot" >&2
	python3 -m pip install --quiet matplotlib 2>/dev/null ||
		python3 -m pip install --quiet --break-system-packages matplotlib ||
		die "cannot install matplotlib (pip)"
fi
out=$(bench_out fabric-curve)
bench_dram 2 # the fabric's two processes
cmd=(bench/probe --fabric-only "${quick[@]}" "${cpus[@]}" -o "$out.json")
"${cmd[@]}" 2>"$out.log" || { cat "$out.log" >&2; rm -f "$out.json"; die "probe failed"; }
MACHINE=$(bench_machine_md "$out.json") python3 - "$out" "${cmd[*]}" <<'PY'
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

out, cmd = sys.argv[1], sys.argv[2]
p = json.load(open(out + ".json"))
m, f = p["machine"], p["fabric"]
if "skipped" in f:
    sys.exit("fabric-curve: the probe skipped the fabric: " + f["skipped"])
series = ("floor", "allgather", "allreduce", "bcast")
with open(out + ".csv", "w") as c:
    c.write("series,bytes,median_us,p99_us,link_gbps,samples\n")
    for s in series:
        for q in f[s]:
            c.write(f'{s},{q["bytes"]},{q["us"]:.3f},{q["p99_us"]:.3f},'
                    f'{q["gbps"]:.3f},{q["iters"]}\n')

fig, ax = plt.subplots(figsize=(7, 4.5))
for s, style in zip(series, ("k--", "o-", "s-", "^-")):
    ax.plot([q["bytes"] for q in f[s]], [q["us"] for q in f[s]], style,
            label=s, markersize=4)
ax.axvline(8192, color="grey", lw=0.6)
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("message bytes (allgather: the whole row, half from each chip)")
ax.set_ylabel("median us")
ax.set_title(f'Strata fabric, 2 processes on CPUs {f["cpus"][0]} and '
             f'{f["cpus"][1]}\n{m["cpu"]} ({m["kern_isa"]})', fontsize=9)
ax.grid(True, which="both", lw=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(out + ".png", dpi=120)

def at(s, n):
    return next(q for q in f[s] if q["bytes"] == n)

fl = at("floor", 8192)["us"]
name = out.rsplit("/", 1)[-1]
with open(out + ".md", "w") as md:
    md.write(f"# Fabric latency and bandwidth by message size\n\n"
             f"- date: {m['date']}\n- command: `{cmd}` (via bench/fabric-curve.sh,"
             f" under `flock /tmp/strata-bench.lock`)\n"
             f"{os.environ['MACHINE']}\n- the CPU's avx512f:"
             f" {str(m['avx512f']).lower()}\n"
             f"- the two processes on CPUs {f['cpus'][0]} and {f['cpus'][1]};"
             f" fabric slots of {f['slot_bytes'] >> 10} KiB\n"
             f"- files: {name}.csv, {name}.png, {name}.json (the profile)\n\n"
             "floor = a hand-written handoff (copy in, set a cache-line flag, the"
             " other process spins and copies out), round trip / 2; allgather ="
             " a row of S bytes, half from each chip; allreduce = S/4 floats;"
             " bcast = S bytes, timed as pairs of roots / 2. Link GB/s = bytes"
             " one process publishes / median. The floor is one block in one"
             " buffer each way; above a slot (1 MiB) the fabric pipelines"
             " chunks through two slots, so its large messages can beat it.\n\n"
             "## The issue's yardstick: 8 KiB between 2 chips, median <= 2x the floor\n\n"
             "| op | median us | p99 us | / floor | goal <= 2x |\n|---|---|---|---|---|\n"
             f"| floor | {fl:.2f} | {at('floor', 8192)['p99_us']:.2f} | 1.00 | |\n")
    for s in series[1:]:
        q = at(s, 8192)
        md.write(f"| {s} | {q['us']:.2f} | {q['p99_us']:.2f} | "
                 f"{q['us'] / fl:.2f} | {'met' if q['us'] <= 2 * fl else 'NOT met'} |\n")
    q = at("allgather", 16384)
    md.write(f"\nRead as 8 KiB from each chip (a 16 KiB row), the allgather takes"
             f" {q['us']:.2f} us, {q['us'] / fl:.2f}x the 8 KiB floor.\n")
    md.write("\n## Every size (median us)\n\n| bytes | " + " | ".join(series) +
             " |\n|---|" + "---|" * len(series) + "\n")
    for k, q in enumerate(f["floor"]):
        md.write(f"| {q['bytes']} | " +
                 " | ".join(f"{f[s][k]['us']:.2f}" for s in series) + " |\n")
    md.write(f"\nProfile summary for the simulator: latency_us {f['latency_us']:.3f}"
             f" (the smallest allgather), gbps {f['gbps']:.2f} (the largest"
             f" allgather's link rate).\n")
PY
rm -f "$out.log"
echo "$BENCH: wrote $out.{csv,png,md,json}"
