#!/usr/bin/env bash
# sim_check.sh - bench/simulate end to end: decode's command lines with
# --profile give a prediction (every figure labelled predicted, the JSON
# with decode --stats-json's keys), the bytes it predicts are the bytes a
# real decode run reads (SmolLM2, a few tokens: bytes, not time, so no
# lock is needed), and bad input gets exit status 2 (usage) or 1.
#
#   tests/sim_check.sh [SIMULATE [DECODE]]   env STRATA_MODEL (SmolLM2)
set -u
sim=${1:-bench/simulate}
dec=${2:-./decode}
prof=tests/fixtures/profile-test.json
model=${STRATA_MODEL:-}
[ -x "$sim" ] || { echo "FAIL: $sim is not built (run make)"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/strata_sim.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }

# status want, message want (a substring of stderr), arguments
refused() {
	local want=$1 msg=$2
	shift 2
	"$sim" "$@" >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	if [ $rc -eq "$want" ] && grep -qF -- "$msg" "$tmp/err"; then
		ok "$* -> status $want"
	else
		bad "$* -> status $rc, want $want with '$msg': $(cat "$tmp/err")"
	fi
}

if "$sim" --help >"$tmp/out" && grep -q -- "--profile FILE" "$tmp/out" &&
	grep -q -- "--kv-tier dram|flash" "$tmp/out" && grep -q -- "--chips N" "$tmp/out"
then ok "--help lists simulate's flags and decode's"
else bad "--help"; fi

S=(--shape tinyllama-1.1b --type q4_0)
refused 2 "no --profile FILE" "${S[@]}"
refused 2 "give -m FILE.gguf or --shape NAME" --profile $prof
refused 2 "give -m FILE.gguf or --shape NAME" --profile $prof "${S[@]}" -m x.gguf
refused 2 "--shape needs --type" --profile $prof --shape tinyllama-1.1b
refused 2 "unknown shape" --profile $prof --shape nope --type q4_0
refused 2 "unknown type mix" --profile $prof --shape tinyllama-1.1b --type q9
refused 2 "--dram-budget applies to --tier flash" --profile $prof "${S[@]}" --dram-budget 1G
refused 2 "--tier: unknown tier 'disk'" --profile $prof "${S[@]}" --tier disk
refused 2 "--chips: '0' is not an integer" --profile $prof "${S[@]}" --chips 0
refused 2 "unknown option '--bogus'" --profile $prof "${S[@]}" --bogus
refused 2 "not predicted" --profile $prof "${S[@]}" --perplexity x.txt
refused 2 "--act f32 (the check mode) is not predicted" --profile $prof "${S[@]}" --act f32
refused 1 "$tmp/none.json: No such file" --profile "$tmp/none.json" "${S[@]}"
echo '{"machine": {}, "dram": {"read_gbps_by_threads": {"1": 5}}}' >"$tmp/bad.json"
refused 1 "$tmp/bad.json: barrier: missing" --profile "$tmp/bad.json" "${S[@]}"
refused 1 "has no fabric" --profile $prof "${S[@]}" --chips 2
refused 1 "do not fit the context" --profile $prof "${S[@]}" -c 64 --prompt-tokens 60 -n 10
refused 1 "no head to attend with" --profile $prof "${S[@]}" -t 64
refused 1 "x.gguf" --profile $prof -m "$tmp/x.gguf"

# a prediction: every figure line says predicted; the JSON's keys
if "$sim" --profile $prof "${S[@]}" -t 2 --tier flash --dram-budget 200M \
	--kv-tier flash --prompt-tokens 128 -n 16 --temp 0 --seed 3 \
	--flash-dir /nonexistent --stats --trace "$tmp/t.json" \
	--json "$tmp/p.json" >"$tmp/out" 2>"$tmp/err" &&
	grep -q '^PREDICTED' "$tmp/out" &&
	grep -q '^predicted decode ' "$tmp/out" && grep -q '^predicted prefill ' "$tmp/out" &&
	python3 - "$tmp/p.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
assert p["predicted"] is True
assert p["prefill"]["tok_per_s"] > 0 and p["decode"]["tok_per_s"] > 0, p
assert p["decode"]["tokens"] == 15 and p["decode"]["median_step_ms"] > 0
t = p["tiers"]
assert t["flash"]["bytes_per_token"] > 0 and t["dram"]["bytes_per_token"] > 0, t
assert p["kv"]["tier"] == "flash" and p["kv"]["bytes_per_token"] > 0, p["kv"]
assert len(p["nmu"]) == 2 and p["nmu_summary"]["units"] == 2
assert p["fabric"]["chips"] == 1
b = p["breakdown"]
for k in ("matvec", "attention_seconds", "barrier_seconds", "flash_busy_seconds",
          "flash_stall_seconds", "kv_read_bytes", "sample_seconds", "step_seconds"):
    assert k in b, k
assert b["barriers"] == 4 * 22 + 1
assert abs(b["step_seconds"] * 1e3 - p["decode"]["median_step_ms"]) < 1e-6
PY
then ok "flash + budget + KV on flash: a labelled table and the JSON keys"
else bad "prediction: $(cat "$tmp/err")"; fi

# chips; what-if flags
if "$sim" --profile $prof "${S[@]}" --chips 4 --tp allreduce --fabric-gbps 50 \
	--fabric-latency-us 2 --json "$tmp/c.json" >"$tmp/out" 2>&1 &&
	python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
f = p["fabric"]
assert f["chips"] == 4 and f["tp"] == "allreduce" and f["seconds_per_token"] > 0, f
# per layer 2 all-reduces; the command, the embedding row, the logits
assert f["collectives_per_token"] == 2 * 22 + 3, f' "$tmp/c.json"
then ok "--chips 4 --tp allreduce: fabric predicted"
else bad "chips: $(cat "$tmp/out")"; fi

# the bytes a run reads are the bytes predicted (SmolLM2, 2 units: a
# replicated KV head), with decode's flags as they are
if [ -n "$model" ] && [ -f "$model" ] && [ -x "$dec" ]; then
	args=(-m "$model" -t 2 --tier flash --dram-budget 30M --prompt-tokens 16
		-n 4 --temp 0)
	if "$dec" "${args[@]}" --stats-json "$tmp/m.json" >/dev/null 2>"$tmp/err" &&
		"$sim" --profile $prof "${args[@]}" --json "$tmp/s.json" >/dev/null 2>>"$tmp/err" &&
		python3 - "$tmp/m.json" "$tmp/s.json" <<'PY'
import json, sys
m, s = (json.load(open(f)) for f in sys.argv[1:])
for tier in ("dram", "flash"):
    a, b = m["tiers"][tier]["bytes_per_token"], s["tiers"][tier]["bytes_per_token"]
    assert abs(a - b) <= 0.01 * a + 4096, (tier, a, b)
assert m["kv"]["steady_bytes_written_per_token"] == s["kv"]["steady_bytes_written_per_token"], (m["kv"], s["kv"])
assert m["decode"]["tokens"] == s["decode"]["tokens"]
PY
	then ok "SmolLM2 flash + budget, 2 units: predicted bytes per token = measured"
	else bad "bytes vs decode: $(tail -n 3 "$tmp/err")"; fi
	# two chips (SmolLM2: 3 KV heads split 1 / 2): the collectives a token
	# and the bytes chip 0 copies are decode's own
	args=(-m "$model" -t 1 --chips 2 --prompt-tokens 8 -n 5 --temp 0)
	if "$dec" "${args[@]}" --stats-json "$tmp/m2.json" >/dev/null 2>"$tmp/err" &&
		"$sim" --profile $prof "${args[@]}" --fabric-latency-us 1 \
			--fabric-gbps 10 --json "$tmp/s2.json" >/dev/null 2>>"$tmp/err" &&
		python3 - "$tmp/m2.json" "$tmp/s2.json" <<'PY'
import json, sys
m, s = (json.load(open(f)) for f in sys.argv[1:])
n = m["decode"]["tokens"]
ops = m["fabric"]["ops"].values()
count = sum(o["count"] for o in ops) / n
nbytes = sum(o["bytes"] for o in ops) / n
f = s["fabric"]
assert f["chips"] == 2 and f["collectives_per_token"] == count, (f, count)
assert f["bytes_per_token"] == nbytes, (f, nbytes)
PY
	then ok "SmolLM2 on 2 chips: predicted collectives and fabric bytes a token = measured"
	else bad "chips vs decode: $(tail -n 3 "$tmp/err")"; fi
else
	echo "# skipping the decode comparison: no STRATA_MODEL"
fi

echo "$((n - failed))/$n passed"
[ "$failed" -eq 0 ]
