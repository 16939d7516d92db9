#!/usr/bin/env bash
# Same model, same memory limit: Strata's flash tier against llama.cpp's mmap
# (its default) inside a cgroup v1 memory limit that page cache is charged to.
#
#   bench/memcap.sh [options] [MODEL.gguf]
#     -l, --limits "L ..."   memory limits (default "512M 640M 768M"; sizes
#                            in bytes or with K/M/G/T, binary units)
#     -r, --rounds R         rounds per limit (default 3; engine order flips
#                            every round)
#     -n, --tokens N         tokens to generate per run (default 32)
#     -T, --timeout S        seconds per run before it is killed (default 120)
#     -t, --threads T        threads for both engines (default 2)
#         --headroom SIZE    Strata's --dram-budget = limit - SIZE (default
#                            220M: stream slots, KV cache, scratch; the budget
#                            is never below 0)
#         --llama-bin DIR    where llama-bench is (default: the one that
#                            bench/build-llamacpp.sh built)
#         --cgroup-root DIR  cgroup v1 memory hierarchy (default
#                            /sys/fs/cgroup/memory)
#     -h, --help             this text
#   MODEL default: $STRATA_CACHE/bench/tinyllama-1.1b-q4_0.gguf (made with
#   models/mkmodel if missing; STRATA_CACHE defaults to ~/.cache/strata).
#
# Every run: sync and drop the page cache, make a fresh cgroup
# CGROUP_ROOT/strata-memcap-PID with memory.limit_in_bytes (and
# memory.memsw.limit_in_bytes where present) = the limit, then run, under
# `timeout S`, `bash -c 'echo $$ > CG/tasks; exec CMD'` with CMD one of
#   Strata:    ./decode -m MODEL -t T --tier flash --dram-budget B
#              --prompt-tokens 8 -n N --ignore-eos --temp 0 --stats-json J
#   llama.cpp: llama-bench -m MODEL -t T -p 0 -n N -r 1 -o json --progress
# and read the cgroup's memory.max_usage_in_bytes (page cache included)
# before removing it.  A llama.cpp run that times out gives an upper bound:
# it had not finished its warm-up token and N tokens, so its rate was below
# (N + 1) / (S - t), t = when it started generating (from --progress; 0 if
# it never got there); the ratio ours/theirs is then a lower bound (">").
# Needs root and the cgroup v1 memory controller.
#
# Output: bench/results/memcap-DATE.{csv,md} (-HHMMSS added if taken);
# the .md names the machine (CPU, CPUs used, the kernels' ISA path, the
# DRAM read GB/s measured at the start of the run, bench/lib.sh; DRAM_GBPS,
# if given, is taken instead and labelled so).
# CSV columns: limit, limit_bytes, round, engine, budget_bytes, tok_s,
# peak_rss_bytes (Strata's own, from its stats), cgroup_max_usage_bytes,
# status (ok | timeout: tok_s is an upper bound | oom: the cgroup's OOM
# killer ended it | error), wall_s, gen_start_s.
# Exit status: 0 done (runs that failed are in the results), 1 runtime
# error, 2 usage error.
set -euo pipefail
export LC_ALL=C

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }
BENCH=memcap
# shellcheck source=bench/lib.sh
. bench/lib.sh

# size_bytes SIZE: 123, 512K, 640M, 1G, 2T (binary units) -> bytes on stdout
size_bytes() {
	local n u
	[[ $1 =~ ^([0-9]+)([KMGTkmgt]?)$ ]] || return 1
	n=$((10#${BASH_REMATCH[1]})) u=${BASH_REMATCH[2]^^}
	case $u in
	K) n=$((n << 10)) ;;
	M) n=$((n << 20)) ;;
	G) n=$((n << 30)) ;;
	T) n=$((n << 40)) ;;
	esac
	echo "$n"
}

limits="512M 640M 768M" rounds=3 tokens=32 tmo=120 threads=2 headroom=220M
llama_bin="" cg_root=/sys/fs/cgroup/memory
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	-l | --limits | -r | --rounds | -n | --tokens | -T | --timeout | -t | --threads | \
		--headroom | --llama-bin | --cgroup-root)
		(($# >= 2)) || bad "$1 needs a value"
		case $1 in
		-l | --limits) limits=$2 ;;
		-r | --rounds) rounds=$2 ;;
		-n | --tokens) tokens=$2 ;;
		-T | --timeout) tmo=$2 ;;
		-t | --threads) threads=$2 ;;
		--headroom) headroom=$2 ;;
		--llama-bin) llama_bin=$2 ;;
		--cgroup-root) cg_root=$2 ;;
		esac
		shift 2 ;;
	--) shift; break ;;
	-*) bad "unknown option '$1'" ;;
	*) break ;;
	esac
done
(($# <= 1)) || bad "one model at most (got: $*)"

[[ $rounds =~ ^[1-9][0-9]*$ ]] || bad "bad --rounds '$rounds' (want a positive integer)"
[[ $tokens =~ ^[1-9][0-9]*$ ]] || bad "bad --tokens '$tokens' (want a positive integer)"
[[ $tmo =~ ^[1-9][0-9]*$ ]] || bad "bad --timeout '$tmo' (want whole seconds > 0)"
[[ $threads =~ ^[1-9][0-9]*$ ]] || bad "bad --threads '$threads' (want a positive integer)"
headroom_b=$(size_bytes "$headroom") || bad "bad --headroom '$headroom' (want e.g. 220M)"
read -r -a lim_list <<<"$limits"
((${#lim_list[@]})) || bad "--limits is empty"
lim_bytes=()
for l in "${lim_list[@]}"; do
	b=$(size_bytes "$l") || bad "bad limit '$l' in --limits (want e.g. 512M or 1G)"
	((b >= 64 << 20)) || bad "limit '$l' is below 64M: nothing would run"
	lim_bytes+=("$b")
done
bench_dram_check

# the peer: a missing build is a usage error, before the machine checks
if [[ -z $llama_bin ]]; then
	llama_bin=$(bench_llamacpp_bin)
fi
[[ -x $llama_bin/llama-bench ]] ||
	bad "no llama-bench in $llama_bin; run bench/build-llamacpp.sh first (or pass --llama-bin DIR)"

# the model: the default one is made once; a given one must exist
model=$(bench_model "${1:-}")

# the environment: root, cgroup v1 memory, built binaries
((EUID == 0)) || die "needs root (cgroup limits and drop_caches)"
[[ -f $cg_root/tasks && -f $cg_root/memory.limit_in_bytes ]] ||
	die "$cg_root is not a cgroup v1 memory hierarchy (try --cgroup-root)"
[[ -w /proc/sys/vm/drop_caches ]] || die "/proc/sys/vm/drop_caches is not writable"
for tool in timeout python3; do
	command -v "$tool" >/dev/null || die "'$tool' is missing"
done
[[ -x ./decode ]] || die "./decode is not built (run make)"
llama_bin=$(cd "$llama_bin" && pwd)
bench_dram "$threads" # outside the cgroups, before the first run

work=$(mktemp -d)
cg=$cg_root/strata-memcap-$$
child=""

# cg_remove: the per-run cgroup goes; anything still in it is ours (the run
# we started), so it is killed by pid first
cg_remove() {
	local i pid
	[[ -d $cg ]] || return 0
	for ((i = 0; i < 50; i++)); do
		rmdir "$cg" 2>/dev/null && return 0
		while read -r pid; do
			kill -KILL "$pid" 2>/dev/null || true
		done <"$cg/tasks"
		sleep 0.1
	done
	echo "memcap: could not remove $cg; remove it with: rmdir $cg" >&2
	return 1
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
		kill -TERM "$child" 2>/dev/null || true # timeout passes it on
		wait "$child" 2>/dev/null || true
	fi
	cg_remove || rc=1
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "memcap: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

# seconds since $1 ($EPOCHREALTIME) with millisecond resolution
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }

# run_capped LIMIT_BYTES TAG CMD...: CMD in a fresh cgroup of LIMIT_BYTES
# under the timeout, stdout/stderr in $work/TAG.{out,err}.  Sets R_RC,
# R_STATUS (ok|timeout|oom|error), R_WALL, R_MAXUSE and R_GEN (seconds to
# llama-bench's first "generation" progress line, empty if none).
run_capped() {
	local limit=$1 tag=$2 t0 oom
	shift 2
	[[ ! -d $cg ]] || cg_remove || die "stale cgroup $cg"
	mkdir "$cg" || die "cannot create cgroup $cg"
	echo "$limit" >"$cg/memory.limit_in_bytes" || die "cannot set $cg/memory.limit_in_bytes"
	if [[ -f $cg/memory.memsw.limit_in_bytes ]]; then
		echo "$limit" >"$cg/memory.memsw.limit_in_bytes" 2>/dev/null ||
			echo "memcap: warning: memory.memsw.limit_in_bytes not set" >&2
	fi
	sync
	echo 3 >/proc/sys/vm/drop_caches
	: >"$work/$tag.out"
	: >"$work/$tag.err"
	t0=$EPOCHREALTIME
	# shellcheck disable=SC2016 # $$ and $1 belong to the inner bash
	timeout -k 10 "$tmo" bash -c 'echo $$ >"$1/tasks" && exec "${@:2}"' \
		memcap-run "$cg" "$@" >"$work/$tag.out" 2>"$work/$tag.err" &
	child=$!
	R_GEN=""
	# poll rather than wait: a signal to this script is then handled at once
	while kill -0 "$child" 2>/dev/null; do
		if [[ -z $R_GEN ]] && grep -qF 'generation run' "$work/$tag.err"; then
			R_GEN=$(since "$t0")
		fi
		sleep 0.2
	done
	R_RC=0
	wait "$child" || R_RC=$?
	child=""
	R_WALL=$(since "$t0")
	R_MAXUSE=$(cat "$cg/memory.max_usage_in_bytes")
	oom=$(awk '$1 == "oom_kill" { print $2 }' "$cg/memory.oom_control")
	cg_remove || die "cannot go on with $cg in place"
	if ((R_RC == 0)); then
		R_STATUS=ok
	elif ((${oom:-0} > 0)); then
		R_STATUS=oom
	elif ((R_RC == 124 || R_RC == 137)); then
		R_STATUS=timeout
	else
		R_STATUS=error
	fi
}

n_runs=$((${#lim_list[@]} * rounds * 2))
echo "memcap: $n_runs runs (${#lim_list[@]} limits x $rounds rounds x 2 engines)," \
	"up to $tmo s each; model $model" >&2
csv=$work/raw.csv
echo "limit,limit_bytes,round,engine,budget_bytes,tok_s,peak_rss_bytes,cgroup_max_usage_bytes,status,wall_s,gen_start_s" >"$csv"
for i in "${!lim_list[@]}"; do
	lim=${lim_list[i]} limb=${lim_bytes[i]}
	budget=$((limb - headroom_b))
	if ((budget < 0)); then
		echo "memcap: limit $lim is below the headroom $headroom: --dram-budget 0" >&2
		budget=0
	fi
	for ((r = 1; r <= rounds; r++)); do
		order=(strata llama.cpp)
		((r % 2)) || order=(llama.cpp strata)
		for who in "${order[@]}"; do
			tag=$who-$i-$r
			if [[ $who == strata ]]; then
				run_capped "$limb" "$tag" "$root/decode" -m "$model" -t "$threads" \
					--tier flash --dram-budget "$budget" --prompt-tokens 8 \
					-n "$tokens" --ignore-eos --temp 0 --stats-json "$work/$tag.json"
			else
				run_capped "$limb" "$tag" "$llama_bin/llama-bench" -m "$model" \
					-t "$threads" -p 0 -n "$tokens" -r 1 -o json --progress
			fi
			if [[ $R_STATUS == error || $R_STATUS == oom ]]; then
				echo "memcap: $who under $lim, round $r: $R_STATUS (exit $R_RC); its last lines:" >&2
				tail -n 5 "$work/$tag.err" >&2
			fi
			python3 - "$who" "$work/$tag" "$R_STATUS" "$tokens" "$tmo" "${R_GEN:-}" >"$work/row" <<'PY' ||
import json, math, sys
who, base, status, n, tmo, gen = sys.argv[1:]
n, tmo = int(n), float(tmo)
tps, rss = "", ""
if status == "ok" and who == "strata":
    d = json.load(open(base + ".json"))
    tps, rss = f'{d["decode"]["tok_per_s"]:.4f}', str(d["peak_rss_bytes"])
elif status == "ok":
    e = [e for e in json.load(open(base + ".out")) if e["n_gen"] > 0][0]
    tps = f'{e["avg_ts"]:.4f}'
elif status == "timeout" and who == "llama.cpp":
    # not done with warm-up (1 token) + n tokens in what was left of the
    # timeout after it began generating: an upper bound on its rate
    t = float(gen) if gen else 0.0
    tps = f"{(n + 1) / (tmo - t) if t < tmo else math.inf:.4f}"
print(f"{tps},{rss}")
PY
				die "could not read the result of $who (see $work/$tag.*)"
			IFS=, read -r tps rss <"$work/row"
			echo "$lim,$limb,$r,$who,$budget,$tps,$rss,$R_MAXUSE,$R_STATUS,$R_WALL,${R_GEN:-}" >>"$csv"
			echo "memcap: $lim round $r/$rounds $who: $R_STATUS, ${tps:-?} tok/s," \
				"cgroup peak $((R_MAXUSE >> 20)) MiB, ${R_WALL} s" >&2
		done
	done
done

# medians and the ratio; markdown + csv under bench/results
out=$(bench_out memcap)
cp "$csv" "$out.csv"
first=$(compgen -G "$work/strata-*.json" | head -n 1 || true)
machine=$(bench_machine_md "$first")
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
disk=$(df --output=source,fstype "$model" | tail -n 1 | tr -s ' ')
ver=$("$llama_bin/llama-bench" --version 2>&1 | grep -m1 -i 'version' || true)
cmd="${DRAM_GBPS:+DRAM_GBPS=$DRAM_GBPS }bench/memcap.sh -l \"$limits\" -r $rounds -n $tokens -T $tmo -t $threads --headroom $headroom $model"

CSV=$out.csv OUT=$out.md MACHINE=$machine MEM=$mem \
	DISK=$disk VER=${ver:-unknown} CMD=$cmd MODEL=$model TOKENS=$tokens TMO=$tmo \
	THREADS=$threads HEADROOM=$headroom LLAMA=$llama_bin/llama-bench ROOT=$cg_root \
	DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" python3 - <<'PY'
import csv, math, os, statistics as st

E = os.environ
rows = list(csv.DictReader(open(E["CSV"])))
limits = []
for r in rows:
    if r["limit"] not in limits:
        limits.append(r["limit"])


def summary(rs):
    """(median, kind, n_used, n_failed): kind '=' exact, '<' all rounds timed
    out, '<=' some did (their bounds enter the median, so it is a bound)"""
    used = [r for r in rs if r["status"] in ("ok", "timeout") and r["tok_s"]]
    if not used:
        return math.nan, "n/a", 0, len(rs)
    med = st.median(float(r["tok_s"]) for r in used)
    n_to = sum(r["status"] == "timeout" for r in used)
    kind = "=" if n_to == 0 else "<" if n_to == len(used) else "<="
    return med, kind, len(used), len(rs) - len(used)


def fmt(v, kind):
    if kind == "n/a":
        return "n/a"
    p = {"=": "", "<": "< ", "<=": "≤ "}[kind]
    return f"{p}{v:.3g}" if v < 10 else f"{p}{v:.1f}"


def mib(xs):
    xs = [int(x) for x in xs if x]
    return f"{st.median(xs) / 2**20:.0f}" if xs else "-"


def ratio(o, ok, t, tk):
    if "n/a" in (ok, tk) or t == 0:
        return "n/a"
    v = o / t
    if ok == "=" and tk == "=":
        return f"{v:.2f}"
    if ok == "=":  # theirs is an upper bound
        return f"{'>' if tk == '<' else '≥'} {v:.3g}"
    if tk == "=":  # ours is an upper bound
        return f"{'<' if ok == '<' else '≤'} {v:.3g}"
    return "?"


L = ["# Same memory for both: Strata flash tier vs llama.cpp mmap under a "
     "cgroup memory limit", ""]
L.append(f"- date: {E['DATE']}")
L.append(E["MACHINE"])
L.append(f"- memory {E['MEM']}; model on {E['DISK']}")
L.append(f"- model: `{E['MODEL']}`")
L.append(f"- llama.cpp: {E['VER']} (`{E['LLAMA']}`)")
L.append(f"- command: `{E['CMD']}`")
L.append(f"- per run: `sync; echo 3 > /proc/sys/vm/drop_caches`, a fresh cgroup "
         f"`{E['ROOT']}/strata-memcap-PID` (memory.limit_in_bytes = limit, page "
         f"cache charged to it), `timeout {E['TMO']} bash -c 'echo $$ > CG/tasks; "
         "exec CMD'`, engines alternated, order flipped each round")
L.append(f"- Strata: `./decode -m MODEL -t {E['THREADS']} --tier flash "
         f"--dram-budget B --prompt-tokens 8 -n {E['TOKENS']} --ignore-eos "
         f"--temp 0 --stats-json J`, B = limit - {E['HEADROOM']}; tok/s = "
         "`decode.tok_per_s`, peak RSS = `peak_rss_bytes`")
L.append(f"- llama.cpp: `llama-bench -m MODEL -t {E['THREADS']} -p 0 -n "
         f"{E['TOKENS']} -r 1 -o json --progress` (mmap, its default; tok/s = "
         "`avg_ts` of tg)")
L.append("- cgroup peak = memory.max_usage_in_bytes (anonymous memory and page "
         "cache); medians over rounds")
L.append("")
L.append("| limit | Strata budget MiB | Strata tok/s | Strata peak RSS MiB | "
         "Strata cgroup peak MiB | llama.cpp tok/s | llama.cpp cgroup peak MiB "
         "| ratio Strata / llama.cpp |")
L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
notes = []
for lim in limits:
    o = [r for r in rows if r["limit"] == lim and r["engine"] == "strata"]
    t = [r for r in rows if r["limit"] == lim and r["engine"] == "llama.cpp"]
    om, ok, _, of = summary(o)
    tm, tk, _, tf = summary(t)
    budget = int(o[0]["budget_bytes"]) / 2**20 if o else math.nan
    L.append(f"| {lim} | {budget:.0f} | {fmt(om, ok)} | "
             f"{mib(r['peak_rss_bytes'] for r in o)} | "
             f"{mib(r['cgroup_max_usage_bytes'] for r in o)} | {fmt(tm, tk)} | "
             f"{mib(r['cgroup_max_usage_bytes'] for r in t)} | "
             f"{ratio(om, ok, tm, tk)} |")
    for who, f in (("Strata", of), ("llama.cpp", tf)):
        if f:
            notes.append(f"{who} under {lim}: {f} run(s) failed (oom or error), "
                         "left out of the medians")
L.append("")
L.append("`<` : every round timed out; the figure is the median upper bound "
         "(warm-up + N tokens not done in the time left after generation "
         "began, `gen_start_s` in the CSV; 0 when it never began, then the "
         "bound includes load time).  `≤`: some rounds timed out.  A bound on "
         "llama.cpp turns the ratio into a lower bound (`>`, `≥`).")
if notes:
    L.append("")
    L.extend("- " + n for n in notes)
L.append("")
L.append("## Every run")
for lim in limits:
    L.append("")
    L.append(f"### {lim}")
    L.append("")
    L.append("| round | engine | status | tok/s | peak RSS MiB | cgroup peak MiB "
             "| wall s | generation began s |")
    L.append("|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["limit"] != lim:
            continue
        tps = r["tok_s"] or "-"
        if r["status"] == "timeout" and r["tok_s"]:
            tps = "< " + tps
        L.append(f"| {r['round']} | {r['engine']} | {r['status']} | {tps} | "
                 f"{mib([r['peak_rss_bytes']])} | "
                 f"{mib([r['cgroup_max_usage_bytes']])} | {r['wall_s']} | "
                 f"{r['gen_start_s'] or '-'} |")
open(E["OUT"], "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
echo "memcap: wrote $out.md and $out.csv" >&2
