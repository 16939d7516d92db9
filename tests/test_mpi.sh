#!/usr/bin/env bash
# test_mpi.sh - `mpirun -np N ./decode ... --fabric mpi` end to end, on
# this host (Open MPI's shared-memory transport) and across hosts built
# as network namespaces (tests/netns.sh: each its own address, host name
# and CPU, joined by veth pairs; MPI's TCP transport only), with tc netem
# delay on the links: the same logits as one chip, the fabric's figures,
# refusals, and faults (a rank killed, a stalled rank, a host that is not
# there, a model that differs, a signal): a bounded end, a clear message,
# a non-zero status, and no process or namespace left.
#
#   STRATA_MODEL=model.gguf tests/test_mpi.sh [DECODE]
#
# Exits 77 (skip) when STRATA_MODEL is unset, Open MPI is not installed,
# decode was built without it, or namespaces cannot be made (not root).
set -u

model=${STRATA_MODEL:-}
if [ -z "$model" ] || [ ! -f "$model" ]; then
	echo "SKIP: STRATA_MODEL is not set or not a file ('$model')"
	exit 77
fi
bin=${1:-./decode}
if [ ! -x "$bin" ]; then
	echo "FAIL: $bin is not built (run make first)"
	exit 1
fi
if ! command -v mpirun >/dev/null; then
	echo "SKIP: no mpirun (Open MPI: tests/deps.sh installs it)"
	exit 77
fi
if "$bin" -m "$model" -p hi -n 1 --fabric mpi 2>&1 | grep -q "built without MPI"; then
	echo "SKIP: $bin was built without MPI (make MPI=1)"
	exit 77
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# one host: no daemons to start; --oversubscribe: 3 ranks on 2 CPUs
MPI1=(mpirun --oversubscribe --bind-to none --mca orte_base_help_aggregate 0)

. "$(dirname "$0")/netns.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/strata_test_mpi.XXXXXX") || exit 1
cleanup() {
	netns_down
	pkill -KILL -f "strata_test_mpi" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
if ! netns_up 2 2>"$tmp/err"; then
	echo "SKIP: cannot make network namespaces here: $(head -1 "$tmp/err")"
	exit 77
fi

m=(-m "$model")
n=0
failed=0

ok() {
	n=$((n + 1))
	echo "ok $n - $1"
}

not_ok() {
	n=$((n + 1))
	echo "not ok $n - $1"
	[ -f "$tmp/err" ] && grep -v '^-*$' "$tmp/err" | sed 's/^/#   /' | tail -8
	failed=$((failed + 1))
}

# no decode of this test runs any more, in any namespace
nothing_left() {
	local what=$1 i left=""
	sleep 0.2
	for ((i = 0; i < NETNS_N; i++)); do
		left+=$(netns_pids "$i")
	done
	if pgrep -f "$bin -m $model" >/dev/null || [ -n "$left" ]; then
		not_ok "$what: a process is left"
	else
		ok "$what: nothing left"
	fi
}

# ---- same logits as one chip --------------------------------------------
g=(-p "The capital of France is" -n 12 --temp 0)
"$bin" "${m[@]}" "${g[@]}" --dump-logits "$tmp/ref.bin" >"$tmp/ref.txt" \
	2>"$tmp/err" || not_ok "reference run failed"
for np in 1 2 3; do
	if timeout 120 "${MPI1[@]}" -np $np "$bin" "${m[@]}" "${g[@]}" --fabric mpi \
		--dump-logits "$tmp/l.bin" >"$tmp/out.txt" 2>"$tmp/err" &&
		cmp -s "$tmp/ref.bin" "$tmp/l.bin" && cmp -s "$tmp/ref.txt" "$tmp/out.txt"; then
		ok "mpirun -np $np on one host: logits bit-identical to one chip"
	else
		not_ok "mpirun -np $np on one host: logits differ (or the run failed)"
	fi
done
# --tp allreduce: the shm fabric's bits (2: MPI_Allreduce, a + b = b + a;
# 3: gathered and added in chip order)
for np in 2 3; do
	"$bin" "${m[@]}" "${g[@]}" --tp allreduce --chips $np \
		--dump-logits "$tmp/a.bin" >/dev/null 2>&1
	if timeout 120 "${MPI1[@]}" -np $np "$bin" "${m[@]}" "${g[@]}" --fabric mpi \
		--tp allreduce --dump-logits "$tmp/l.bin" >/dev/null 2>"$tmp/err" &&
		cmp -s "$tmp/a.bin" "$tmp/l.bin"; then
		ok "--tp allreduce, mpirun -np $np: logits bit-identical to --chips $np"
	else
		not_ok "--tp allreduce, mpirun -np $np: logits differ from --chips $np"
	fi
done
if netns_mpirun -np 2 --map-by node "$bin" "${m[@]}" "${g[@]}" \
	--fabric mpi --tier flash --kv-tier flash --flash-dir "$tmp" \
	--dump-logits "$tmp/l.bin" >"$tmp/out.txt" 2>"$tmp/err" &&
	cmp -s "$tmp/ref.bin" "$tmp/l.bin" && cmp -s "$tmp/ref.txt" "$tmp/out.txt"; then
	ok "2 namespace hosts over TCP (flash tier, KV on flash): logits bit-identical to one chip"
else
	not_ok "2 namespace hosts over TCP: logits differ (or the run failed)"
fi
nothing_left "the runs across hosts"

# ---- the fabric's figures -----------------------------------------------
# the same collectives and bytes as the shm fabric at 2 chips; each rank's
# host; over the namespaces with 2 ms of netem delay a link (where the
# kernel has netem), every all-gather waits at least for it (the bytes
# did cross the veth links)
"$bin" "${m[@]}" "${g[@]}" --chips 2 --stats-json "$tmp/shm.json" \
	>/dev/null 2>&1
delay=0
if netns_has_netem; then
	delay=2000
	netns_delay 2ms
else
	echo "# no sch_netem in this kernel ($(uname -r)): the links are not delayed"
fi
if timeout 120 "${MPI1[@]}" -np 2 "$bin" "${m[@]}" "${g[@]}" --fabric mpi \
	--stats --stats-json "$tmp/one.json" >/dev/null 2>"$tmp/err" &&
	grep -q "^fabric  *2 chips, --tp rows, Open MPI" "$tmp/err" &&
	netns_mpirun -np 2 --map-by node "$bin" "${m[@]}" "${g[@]}" \
		--fabric mpi --stats-json "$tmp/ns.json" >/dev/null 2>"$tmp/err" &&
	python3 - "$tmp/shm.json" "$tmp/one.json" "$tmp/ns.json" $delay <<'PY'
import json, sys
shm, one, ns = (json.load(open(p)) for p in sys.argv[1:4])
delay_us = float(sys.argv[4])
for d in (one, ns):
    f = d["fabric"]
    assert f["backend"] == "mpi" and f["library"].startswith("Open MPI"), f
    assert f["chips"] == 2 and d["decode"]["tokens"] == shm["decode"]["tokens"]
    for op in ("allgather", "allreduce", "bcast"):
        a, b = f["ops"][op], shm["fabric"]["ops"][op]
        assert (a["count"], a["bytes"]) == (b["count"], b["bytes"]), (op, a, b)
        assert a["wait_seconds"] is None  # MPI does not say
        assert sum(a["hist_log2_ns"]) == a["count"]
    assert [c["chip"] for c in f["per_chip"]] == [0, 1]
assert shm["fabric"]["backend"] == "shm"
assert [c["host"] for c in ns["fabric"]["per_chip"]] == ["strata-h0", "strata-h1"]
h = one["fabric"]["per_chip"]
assert h[0]["host"] == h[1]["host"]
ag = ns["fabric"]["ops"]["allgather"]
if delay_us:
    assert ag["p50_us"] >= delay_us, ag   # a one-way hop at least
    assert one["fabric"]["ops"]["allgather"]["p50_us"] < delay_us
PY
then
	ok "--stats-json: collectives and bytes as the shm fabric's, hosts named$([ $delay = 0 ] || echo ", netem delay seen")"
else
	not_ok "--stats-json fabric figures under MPI"
fi
netns_delay 0

# ---- refusals -----------------------------------------------------------
expect_fail() { # what, expected message (ERE), command...
	local what=$1 re=$2
	shift 2
	local t=(timeout 120)
	[ "$(type -t "$1")" = function ] && t=()
	if "${t[@]}" "$@" >/dev/null 2>"$tmp/err"; then
		not_ok "$what: exit 0"
	elif grep -Eq -- "$re" "$tmp/err"; then
		ok "$what: refused ($(grep -Em1 -- "$re" "$tmp/err" | cut -c1-90))"
	else
		not_ok "$what: no message matching '$re'"
	fi
}
expect_fail "--chips 3 with 2 ranks" "--chips 3, but mpirun started 2 ranks" \
	"${MPI1[@]}" -np 2 "$bin" "${m[@]}" -p hi -n 2 --fabric mpi --chips 3
expect_fail "--fabric-latency-us with MPI" "emulate links of the shm fabric" \
	"${MPI1[@]}" -np 2 "$bin" "${m[@]}" -p hi -n 2 --fabric mpi \
	--fabric-latency-us 5
# ranks of one job with other flags: every rank's verdict reaches chip 0
expect_fail "a link flag on chip 1 only" "chip 1: --fabric-latency-us" \
	"${MPI1[@]}" -np 1 "$bin" "${m[@]}" -p hi -n 2 --fabric mpi : \
	-np 1 "$bin" "${m[@]}" -p hi -n 2 --fabric mpi --fabric-gbps 3
# a model file that differs on one host (one byte of metadata): refused
# before any work, by rank and host
cp "$model" "$tmp/other.gguf"
python3 - "$tmp/other.gguf" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
i = b.find(b"general.name") + len("general.name") + 4 + 8
b[i] ^= 1
open(p, "wb").write(b)
PY
expect_fail "a model that differs on host 1" \
	"chip 1 on host strata-h1: .*other.gguf is not chip 0's model on host strata-h0" \
	netns_mpirun -np 1 --host "$NETNS_NET.1" "$bin" "${m[@]}" -p hi -n 2 \
	--fabric mpi : -np 1 --host "$NETNS_NET.2" "$bin" -m "$tmp/other.gguf" \
	-p hi -n 2 --fabric mpi
expect_fail "a model missing on host 1" "chip 1 \(strata-h1\): .*nothere.gguf" \
	netns_mpirun -np 1 --host "$NETNS_NET.1" "$bin" "${m[@]}" -p hi -n 2 \
	--fabric mpi : -np 1 --host "$NETNS_NET.2" "$bin" -m "$tmp/nothere.gguf" \
	-p hi -n 2 --fabric mpi
# a host that is not there: mpirun cannot start its daemon, in seconds
printf '%s slots=1\n%s.9 slots=1\n' "$NETNS_NET.1" "$NETNS_NET" >"$tmp/hosts"
t0=$(date +%s)
HOSTFILE="$tmp/hosts" expect_fail "an unreachable host at start" \
	"$NETNS_NET.9|unable to reliably start" \
	netns_mpirun -np 2 --map-by node "$bin" "${m[@]}" -p hi -n 2 --fabric mpi
if (($(date +%s) - t0 <= 60)); then
	ok "the unreachable host failed in $(($(date +%s) - t0)) s"
else
	not_ok "the unreachable host took $(($(date +%s) - t0)) s"
fi
nothing_left "the refusals"

# ---- faults -------------------------------------------------------------
long=(-p "Once upon a time" -n 100000 -c 4096 --ignore-eos --temp 0 --fabric mpi)
# rank 1 (on host 1) killed mid-decode: the job ends, mpirun names it
netns_mpirun -np 2 --map-by node "$bin" "${m[@]}" "${long[@]}" \
	>/dev/null 2>"$tmp/err" &
job=$!
for _ in $(seq 100); do # until rank 1 decodes
	r1=$(for p in $(netns_pids 1); do
		[ "$(cat /proc/$p/comm 2>/dev/null)" = decode ] && echo $p
	done)
	[ -n "$r1" ] && grep -q . /proc/$job/status 2>/dev/null && break
	sleep 0.1
done
sleep 1.5
kill -KILL $r1 2>/dev/null
t0=$(date +%s%N)
( sleep 30; kill -KILL $job 2>/dev/null ) &
watchdog=$!
wait $job
rc=$?
kill $watchdog 2>/dev/null
dt=$((($(date +%s%N) - t0) / 1000000))
if [ -n "$r1" ] && [ $rc -ne 0 ] && [ $dt -lt 20000 ] &&
	grep -Eq "rank 1 .*(signal 9|Killed)" "$tmp/err"; then
	ok "rank 1 killed across hosts: exit $rc in $dt ms, '$(grep -Em1 "rank 1" "$tmp/err" | cut -c1-80)'"
else
	not_ok "rank 1 killed across hosts: rc $rc after $dt ms"
fi
nothing_left "the killed rank"

# a rank that stalls (alive, not arriving): --fabric-timeout-s ends it
t0=$(date +%s%N)
STRATA_FABRIC_STALL=1:40:60 expect_fail "a stalled rank" \
	"allgather #40 did not complete within 2.0 s" \
	"${MPI1[@]}" -np 2 "$bin" "${m[@]}" -p hi -n 50 --temp 0 --fabric mpi \
	--fabric-timeout-s 2
dt=$((($(date +%s%N) - t0) / 1000000))
if [ $dt -lt 15000 ]; then
	ok "the stall ended the job in $dt ms"
else
	not_ok "the stall took $dt ms"
fi
nothing_left "the stalled rank"

# SIGTERM to rank 1 only: it reaches chip 0 over MPI, every rank stops at
# the same token, the stats are printed, exit 128 + 15 from chip 0
"${MPI1[@]}" -np 2 "$bin" "${m[@]}" "${long[@]}" --stats >"$tmp/out.txt" \
	2>"$tmp/err" &
job=$!
r1=""
for _ in $(seq 100); do
	r1=$(pgrep -f "$bin -m $model" | sort -n | tail -1)
	[ "$(pgrep -f "$bin -m $model" | wc -l)" -ge 2 ] && break
	sleep 0.1
done
sleep 1.5
kill -TERM $r1
( sleep 30; kill -KILL $job 2>/dev/null ) &
watchdog=$!
wait $job
rc=$?
kill $watchdog 2>/dev/null
if [ $rc -ne 0 ] && grep -q "interrupted by signal 15 after" "$tmp/err" &&
	grep -q "^fabric  *2 chips" "$tmp/err" && [ -s "$tmp/out.txt" ]; then
	ok "SIGTERM to rank 1: $(grep -m1 interrupted "$tmp/err"), stats printed"
else
	not_ok "SIGTERM to rank 1: rc $rc"
fi
nothing_left "SIGTERM to a rank"

echo "1..$n"
if [ $failed -ne 0 ]; then
	echo "FAIL: $failed of $n"
	exit 1
fi
echo "PASS: $n"
