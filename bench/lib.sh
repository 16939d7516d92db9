# shellcheck shell=bash
# bench/lib.sh - sourced by the bench scripts (not run): messages, the
# default benchmark model, and where results go. Set BENCH (the script's
# name, e.g. "memcap") before sourcing; run from the repository root.

# die MSG: a runtime failure (exit 1); bad MSG: a usage error (exit 2)
die() { echo "$BENCH: $*" >&2; exit 1; }
bad() { echo "$BENCH: $*" >&2; echo "(bench/$BENCH.sh --help for usage)" >&2; exit 2; }

# bench_model [MODEL]: the absolute path of MODEL, or of the default
# TinyLlama-1.1B-shaped Q4_0 in $STRATA_CACHE/bench (~/.cache/strata),
# which models/mkmodel makes the first time (it writes a temporary file and
# renames it, so a killed run leaves no half model). A given MODEL that
# does not exist is a usage error (exit 2).
bench_model() {
	local cache=${STRATA_CACHE:-$HOME/.cache/strata}
	local default=$cache/bench/tinyllama-1.1b-q4_0.gguf m=${1:-}
	m=${m:-$default}
	if [[ ! -s $m ]]; then
		[[ $m == "$default" ]] || bad "model '$m' does not exist or is empty"
		[[ -x models/mkmodel ]] || die "models/mkmodel is not built (run make)"
		echo "$BENCH: making $m" >&2
		mkdir -p "$(dirname "$m")"
		models/mkmodel --shape tinyllama-1.1b --type q4_0 -o "$m" >&2 ||
			die "mkmodel failed"
	fi
	[[ -r $m ]] || bad "cannot read model '$m'"
	echo "$(cd "$(dirname "$m")" && pwd)/$(basename "$m")"
}

# bench_out NAME: bench/results/NAME-DATE, with -HHMMSS added when a file
# of that stem exists (earlier results are never overwritten)
bench_out() {
	local out
	mkdir -p bench/results
	out=bench/results/$1-$(date +%Y-%m-%d)
	if compgen -G "$out.*" >/dev/null; then
		out=$out-$(date +%H%M%S)
	fi
	echo "$out"
}

# bench_llamacpp_bin: the directory holding llama.cpp's llama-bench, built
# by bench/build-llamacpp.sh; exit 2 saying how to build it when it is not
bench_llamacpp_bin() {
	local bin
	bin=$(bench/build-llamacpp.sh --print-bin 2>/dev/null) && [[ -x $bin/llama-bench ]] || {
		echo "$BENCH: llama.cpp is not built; run bench/build-llamacpp.sh first (needs pip access to PyPI, ~15 min on 2 cores)" >&2
		exit 2
	}
	echo "$bin"
}

# bench_types TYPE...: exit 2 unless each is a weight type the bench makes
bench_types() {
	local t
	for t in "$@"; do
		[[ $t == q4_0 || $t == q8_0 || $t == q4_k_m ]] ||
			bad "unknown TYPE '$t' (want q4_0, q8_0 or q4_k_m)"
	done
}

# ---- the machine a result was measured on -----------------------------------
# Every results file names its machine: the CPU, the CPUs the run used, the
# ISA path the kernels took and the DRAM read bandwidth measured in the same
# run (roofline fractions divide by that figure, never by a constant: the
# CPU behind this machine changes from day to day, MACHINE.md).

# bench_dram_check: exit 2 unless DRAM_GBPS is unset or a number > 0 (call
# it with the usage checks, before anything is measured)
bench_dram_check() {
	[[ -z ${DRAM_GBPS:-} ]] && return 0
	[[ $DRAM_GBPS =~ ^[0-9]*[.]?[0-9]+$ ]] &&
		awk -v x="$DRAM_GBPS" 'BEGIN { exit !(x > 0) }' ||
		bad "bad DRAM_GBPS '$DRAM_GBPS' (want GB/s > 0, e.g. 30.5; unset, it is measured)"
}

BENCH_PROBE_DRAM="bench/probe --quick --no-flash --no-kv --no-kern --no-sys --no-fabric"

# bench_dram [THREADS]: the DRAM read GB/s of this run at THREADS threads
# (default: every CPU this process may run on), set once into globals, so
# call it in the script's own shell, not in $(...):
#   BENCH_DRAM_GBPS     the figure (GB/s)
#   BENCH_DRAM_THREADS  THREADS, as asked
#   BENCH_DRAM_NOTE     one line saying where the figure came from
#   BENCH_PROBE_ISA     the probe's kern_isa (the dispatch decode uses; empty
#                       when DRAM_GBPS was given and nothing was probed)
# DRAM_GBPS, when set, is taken as given (labelled so). Otherwise it runs
# $BENCH_PROBE_DRAM (~2 s; STRATA_KERNELS=avx2 caps its sum at AVX2 like the
# kernels) and takes read_gbps_by_threads at THREADS, or at the most threads
# the probe measured (the CPUs it may run on) when THREADS is more; the
# note calls the figure disturbed when fewer threads read more (something
# else ran: MACHINE.md's host stalls, or an unlocked build). Exit 2 for a
# bad DRAM_GBPS, 1 when the probe is not built or fails.
bench_dram() {
	local want=${1:-$(nproc)} json line
	[[ -n ${BENCH_DRAM_GBPS:-} ]] && return 0
	bench_dram_check
	BENCH_DRAM_THREADS=$want BENCH_PROBE_ISA=""
	if [[ -n ${DRAM_GBPS:-} ]]; then
		BENCH_DRAM_GBPS=$DRAM_GBPS
		BENCH_DRAM_NOTE="$DRAM_GBPS GB/s, given (DRAM_GBPS=$DRAM_GBPS), not measured in this run"
		echo "$BENCH: DRAM read $BENCH_DRAM_NOTE" >&2
		return 0
	fi
	[[ -x bench/probe ]] || die "bench/probe is not built (run make), or give DRAM_GBPS"
	json=$(mktemp "${TMPDIR:-/tmp}/strata-$BENCH-dram.XXXXXX") || die "mktemp failed"
	# shellcheck disable=SC2086 # the probe's flags, split on purpose
	if ! $BENCH_PROBE_DRAM -o "$json" 2>"$json.log"; then
		tail -n 5 "$json.log" >&2
		rm -f "$json" "$json.log"
		die "$BENCH_PROBE_DRAM failed (give DRAM_GBPS to skip it)"
	fi
	line=$(python3 - "$json" "$want" "$BENCH_PROBE_DRAM" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
d, want = p.get("dram"), int(sys.argv[2])
if not d:
    sys.exit("the profile has no dram member")
by = {int(k): v for k, v in d["read_gbps_by_threads"].items()}
t = want if want in by else max(by)
at = f"{t} threads" + ("" if t == want else
                       f" (the most the probe measured; the run uses {want})")
every = ", ".join(f"{k}: {v:g}" for k, v in sorted(by.items()))
# more threads never read less on a quiet machine: a dip is a disturbance
dip = [k for k in by if k < t and by[k] > by[t]]
if dip:
    every += (f"; **disturbed**: below the {max(dip)}-thread figure, "
              "something else ran; rerun on a quiet machine")
print(f"{by[t]:g}\t{p['machine'].get('kern_isa', '')}\t{by[t]:g} GB/s at {at}, "
      f"measured in this run by `{sys.argv[3]}` "
      f"({d['method']} sum, {d['buffer_bytes'] >> 20} MiB, median of "
      f"{d['passes']} passes; GB/s by threads {every})")
PY
	) || { rm -f "$json" "$json.log"; die "cannot read the DRAM figure from the probe"; }
	rm -f "$json" "$json.log"
	IFS=$'\t' read -r BENCH_DRAM_GBPS BENCH_PROBE_ISA BENCH_DRAM_NOTE <<<"$line"
	echo "$BENCH: DRAM read $BENCH_DRAM_NOTE" >&2
}

# bench_machine_md [JSON]: Markdown list lines naming the machine: lscpu's
# model name with CPU family / model / stepping (and hypervisor), the CPUs
# online and used (bench_dram's THREADS), the kernels' ISA path and the
# DRAM read figure of bench_dram (measured here if the script has not yet).
# JSON: a ./decode --stats-json of this run (its "kernels") or a probe
# profile (its machine.kern_isa); without one, the DRAM probe's kern_isa.
bench_machine_md() {
	local j=${1:-} isa="" src="" cpu fam mod step hyp
	bench_dram "${BENCH_DRAM_THREADS:-$(nproc)}"
	if [[ -n $j && -r $j ]]; then
		# decode's stats name the path as a string; a probe profile's
		# "kernels" is its kernel measurements (or null)
		IFS=$'\t' read -r isa src < <(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
if isinstance(d.get("kernels"), str):
    print(d["kernels"] + "\tdecode --stats-json \"kernels\"")
elif (d.get("machine") or {}).get("kern_isa"):
    print(d["machine"]["kern_isa"] + "\tbench/probe'"'"'s kern_isa, the dispatch decode uses")' \
			"$j" 2>/dev/null) || isa="" src=""
	fi
	if [[ -z $isa && -n ${BENCH_PROBE_ISA:-} ]]; then
		isa=$BENCH_PROBE_ISA src="bench/probe's kern_isa, the dispatch decode uses"
	fi
	cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
	fam=$(lscpu | sed -n 's/^CPU family:[[:space:]]*//p' | head -n 1)
	mod=$(lscpu | sed -n 's/^Model:[[:space:]]*//p' | head -n 1)
	step=$(lscpu | sed -n 's/^Stepping:[[:space:]]*//p' | head -n 1)
	hyp=$(lscpu | sed -n 's/^Hypervisor vendor:[[:space:]]*//p' | head -n 1)
	echo "- machine: ${cpu:-unknown CPU} (CPU family ${fam:-?}, model ${mod:-?}," \
		"stepping ${step:-?}${hyp:+; $hyp guest}), $(nproc --all) CPUs online" \
		"($(nproc) this run may use), the run on $BENCH_DRAM_THREADS threads;" \
		"kernel $(uname -r)"
	echo "- kernels' ISA path: ${isa:-not recorded}${src:+ ($src)};" \
		"STRATA_KERNELS=${STRATA_KERNELS:-(unset: the widest the CPU has)}"
	echo "- DRAM read: $BENCH_DRAM_NOTE"
}
