#!/usr/bin/env bash
# bench/fabric-mpi.sh - the MPI backend against the shared-memory fabric,
# side by side in one run, 2 chips:
#   1. collectives by message size (bench/probe --fabric-only): the shm
#      fabric; Open MPI on this host (its shared-memory transport, ranks
#      bound to cores); Open MPI across 2 hosts built as network
#      namespaces (tests/netns.sh: TCP over veth, btl tcp,self), and with
#      tc netem delay on the links where the kernel has netem (-d);
#   2. decode tok/s of MODEL at 2 chips, runs interleaved: shm, MPI one
#      host, MPI across the namespaces, and shm with --fabric-latency-us X,
#      X = (the TCP all-gather's median - shm's) at the size a decode
#      all-gather moves (n_embd floats): does the emulated latency predict
#      the real one?
#
#   bench/fabric-mpi.sh [-q] [-r RUNS] [-n TOKENS] [-d "100us 1ms"] [MODEL]
#       -q  probe --quick     -r  decode rounds (3)    -n  tokens (64)
#       -d  netem delays (default "100us 1ms"; skipped without netem)
# MODEL: default the TinyLlama-1.1B-shaped Q4_0 (bench/lib.sh). Needs
# root (namespaces) and Open MPI (make deps). Writes
# bench/results/fabric-mpi-DATE.{md,csv} and the probes' JSON profiles;
# the .md names the machine (CPU, CPUs used, the kernels' ISA path, the
# DRAM read GB/s measured at the start of the run, bench/lib.sh; DRAM_GBPS,
# if given, is taken instead and labelled so).
# Take `flock /tmp/strata-bench.lock` around it on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=fabric-mpi
source bench/lib.sh

CMDLINE="${DRAM_GBPS:+DRAM_GBPS=$DRAM_GBPS }bench/fabric-mpi.sh $*"
export CMDLINE
quick=() runs=3 ntok=64 delays="100us 1ms"
while getopts "qr:n:d:h" o; do
	case $o in
	q) quick=(--quick) ;;
	r) runs=$OPTARG ;;
	n) ntok=$OPTARG ;;
	d) delays=$OPTARG ;;
	h) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) bad "unknown option" ;;
	esac
done
shift $((OPTIND - 1))
(($# <= 1)) || bad "one MODEL at most: $*"
[[ $runs =~ ^[1-9][0-9]*$ ]] || bad "-r $runs: want a count"
[[ $ntok =~ ^[1-9][0-9]*$ ]] || bad "-n $ntok: want a count"
bench_dram_check
[[ -x ./decode && -x bench/probe ]] || die "./decode and bench/probe are not built (run make)"
model=$(bench_model "${1:-}")
command -v mpirun >/dev/null || die "no mpirun: install Open MPI (make deps)"
[[ $(id -u) == 0 ]] || die "network namespaces need root"
out=$(bench_out "$BENCH")
bench_dram "$(nproc)" # the two chips share this host's CPUs
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
source tests/netns.sh
tmp=$(mktemp -d)
trap 'netns_down; rm -rf "$tmp"' EXIT
netns_up 2 || die "cannot make network namespaces"
MPI1=(mpirun -np 2 --bind-to core --mca orte_base_help_aggregate 0)

# ---- 1. collectives ---------------------------------------------------------
echo "$BENCH: collectives: shm fabric" >&2
bench/probe --fabric-only "${quick[@]}" -o "$out-shm.json" 2>"$tmp/log" ||
	die "probe (shm) failed: $(tail -3 "$tmp/log")"
echo "$BENCH: collectives: MPI on this host" >&2
"${MPI1[@]}" bench/probe --fabric-only --fabric mpi "${quick[@]}" \
	-o "$out-mpi-host.json" 2>"$tmp/log" ||
	die "probe (MPI, one host) failed: $(tail -3 "$tmp/log")"
echo "$BENCH: collectives: MPI over TCP between namespace hosts" >&2
netns_mpirun -np 2 --map-by node bench/probe --fabric-only --fabric mpi \
	"${quick[@]}" -o "$out-mpi-tcp.json" 2>"$tmp/log" ||
	die "probe (MPI, TCP) failed: $(tail -3 "$tmp/log")"
profiles=("shm:$out-shm.json" "mpi-host:$out-mpi-host.json" "mpi-tcp:$out-mpi-tcp.json")
netem=yes
if netns_has_netem; then
	for d in $delays; do
		echo "$BENCH: collectives: MPI over TCP, netem delay $d" >&2
		netns_delay "$d"
		netns_mpirun -np 2 --map-by node bench/probe --fabric-only \
			--fabric mpi "${quick[@]}" -o "$out-mpi-tcp-$d.json" \
			2>"$tmp/log" || die "probe (MPI, TCP, $d) failed"
		profiles+=("mpi-tcp+$d:$out-mpi-tcp-$d.json")
	done
	netns_delay 0
else
	netem="no (kernel $(uname -r) has no sch_netem)"
fi

# the emulated latency that matches TCP, at a decode all-gather's size
embd=$(python3 - "$model" <<'PY'
import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
print(int(r.fields[arch + ".embedding_length"].parts[-1][0]))
PY
)
x=$(python3 - "$out-shm.json" "$out-mpi-tcp.json" $((embd * 4)) <<'PY'
import json, sys
def at(p, n):
    pts = json.load(open(p))["fabric"]["allgather"]
    return min(pts, key=lambda q: abs(q["bytes"] - n))["us"]
n = int(sys.argv[3])
print(f"{max(0.0, at(sys.argv[2], n) - at(sys.argv[1], n)):.2f}")
PY
)
echo "$BENCH: emulated latency matching TCP at $((embd * 4)) B: $x us" >&2

# ---- 2. decode ---------------------------------------------------------------
g=(-m "$model" --prompt-tokens 16 -n "$ntok" --ignore-eos --temp 0)
for ((r = 0; r < runs; r++)); do
	echo "$BENCH: decode round $((r + 1))/$runs" >&2
	./decode "${g[@]}" --chips 2 --stats-json "$tmp/shm-$r.json" \
		>/dev/null 2>"$tmp/err" || die "decode (shm) failed: $(tail -2 "$tmp/err")"
	"${MPI1[@]}" ./decode "${g[@]}" --fabric mpi --stats-json "$tmp/mpi-host-$r.json" \
		>/dev/null 2>"$tmp/err" || die "decode (MPI) failed: $(tail -2 "$tmp/err")"
	netns_mpirun -np 2 --map-by node ./decode "${g[@]}" --fabric mpi \
		--stats-json "$tmp/mpi-tcp-$r.json" >/dev/null 2>"$tmp/err" ||
		die "decode (MPI, TCP) failed: $(tail -2 "$tmp/err")"
	./decode "${g[@]}" --chips 2 --fabric-latency-us "$x" \
		--stats-json "$tmp/shm-x-$r.json" >/dev/null 2>"$tmp/err" ||
		die "decode (shm + X) failed: $(tail -2 "$tmp/err")"
done

MACHINE=$(bench_machine_md "$tmp/shm-0.json") \
	python3 - "$out" "$tmp" "$runs" "$x" "$netem" "$model" "${profiles[@]}" <<'PY'
import json, os, statistics as st, sys
out, tmp, runs, x, netem, model = sys.argv[1:7]
runs = int(runs)
profiles = [a.split(":", 1) for a in sys.argv[7:]]
prof = {k: json.load(open(p)) for k, p in profiles}
m = prof["shm"]["machine"]
ops = ("allgather", "allreduce", "bcast")
csv = ["kind,series,bytes,median_us,p99_us,gbps"]
for k, p in prof.items():
    for op in ops:
        for q in p["fabric"][op]:
            csv.append(f"collective,{k}:{op},{q['bytes']},{q['us']:.3f},"
                       f"{q['p99_us']:.3f},{q['gbps']:.3f}")
md = [f"# MPI backend vs the shm fabric, 2 chips ({m['date'][:10]})", "",
      f"- host: {m['hostname']}", os.environ["MACHINE"],
      f"- library: {prof['mpi-host']['fabric']['backend']}",
      f"- netem: {netem}", "",
      f"Command: `{os.environ['CMDLINE']}` (collectives: `bench/probe --fabric-only [--fabric mpi]` under "
      "`mpirun -np 2 --bind-to core` on this host and `tests/netns.sh`'s "
      "mpirun across two namespace hosts, btl tcp,self).", "",
      "## Collectives, median us (p99)", ""]
keys = list(prof)
for op in ops:
    md += [f"### {op}", "", "| bytes | " + " | ".join(keys) + " |",
           "|---:|" + "---:|" * len(keys)]
    n = len(prof["shm"]["fabric"][op])
    for i in range(n):
        row = [prof[k]["fabric"][op][i] for k in keys]
        if row[0]["bytes"] not in (64, 1024, 8192, 65536, 1 << 20, 4 << 20):
            continue
        md.append(f"| {row[0]['bytes']} | " + " | ".join(
            f"{q['us']:.2f} ({q['p99_us']:.2f})" for q in row) + " |")
    md.append("")
def load(name):
    return [json.load(open(f"{tmp}/{name}-{r}.json")) for r in range(runs)]
runsets = [("shm", "shm fabric"), ("mpi-host", "MPI, one host"),
           ("mpi-tcp", "MPI, 2 namespace hosts, TCP"),
           ("shm-x", f"shm fabric + --fabric-latency-us {x}")]
md += ["## Decode at 2 chips", "",
       f"Model {model.split('/')[-1]}, --prompt-tokens 16, "
       f"-n {json.load(open(tmp + '/shm-0.json'))['decode']['tokens'] + 1}; "
       f"{runs} rounds interleaved; medians.", "",
       "| fabric | tok/s | median step ms | fabric ms/token | allgather p50 us |",
       "|---|---:|---:|---:|---:|"]
for k, label in runsets:
    d = load(k)
    tps = st.median(r["decode"]["tok_per_s"] for r in d)
    step = st.median(r["decode"]["median_step_ms"] for r in d)
    fab = st.median(r["fabric"]["seconds_per_token"] for r in d) * 1e3
    p50 = st.median(r["fabric"]["ops"]["allgather"]["p50_us"] for r in d)
    md.append(f"| {label} | {tps:.1f} | {step:.2f} | {fab:.3f} | {p50:.2f} |")
    for r in d:
        csv.append(f"decode,{k},0,{r['decode']['median_step_ms'] * 1e3:.1f},"
                   f"0,{r['decode']['tok_per_s']:.2f}")
md += ["", f"X = {x} us: the TCP all-gather's median minus the shm fabric's "
       "at the size nearest a decode all-gather of n_embd floats, from the "
       "probes above (same run)."]
open(out + ".md", "w").write("\n".join(md) + "\n")
open(out + ".csv", "w").write("\n".join(csv) + "\n")
print("\n".join(md))
PY
echo "$BENCH: wrote $out.md, $out.csv" >&2
