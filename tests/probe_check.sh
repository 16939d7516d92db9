#!/usr/bin/env bash
# probe_check.sh - bench/probe end to end: a quick profile into a scratch
# directory is valid JSON with every figure present and plausible (machine
# identity, DRAM, kernels of every weight type, prefill matmul, barrier
# latency by unit count, sampler, flash, KV-cache writes, the fabric's
# floor and collectives by message size),
# the test file and the KV file are gone afterwards, a refused O_DIRECT
# skips the KV writes with the reason in the profile, and bad input gets
# exit status 2 or 1.
#
#   tests/probe_check.sh [PROBE]     (default bench/probe)
set -u
probe=${1:-bench/probe}
[ -x "$probe" ] || { echo "FAIL: $probe is not built (run make)"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/strata_probe.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
bad() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; }

mkdir "$tmp/dir"
: >"$tmp/file"
if timeout 300 "$probe" --quick --flash-dir "$tmp/dir" -o "$tmp/p.json" 2>"$tmp/err"; then
	if python3 - "$tmp/p.json" <<'PY'
import json, os, re, sys
p = json.load(open(sys.argv[1]))
m, d, k, f, kv = p["machine"], p["dram"], p["kernels"], p["flash"], p["kv_write"]
assert m["cpu"].strip() and m["hostname"].strip(), m
assert m["cores"] >= 1 and m["online_cpus"] >= m["cores"] >= 1, m
assert m["kern_isa"] in ("ref", "avx2", "avx512"), m
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m["date"]), m
assert d["read_gbps_by_threads"] and all(g > 0.5 for g in d["read_gbps_by_threads"].values()), d
# the widest vector the CPU has, unless STRATA_KERNELS caps it
want = {"ref": "scalar", "avx2": "avx2" if m["avx2"] else "scalar"}.get(
    os.environ.get("STRATA_KERNELS", ""),
    "avx512" if m["avx512f"] else "avx2" if m["avx2"] else "scalar")
assert d["method"] == want, (d["method"], want)
assert k["isa"] == m["kern_isa"] and k["threads"] == m["cores"], k
assert k["l2_bytes"] > 0 and k["llc_bytes"] > 0 and k["dram_arena_bytes"] > k["llc_bytes"], k
threads = {"1", str(k["threads"])}
assert set(k["types"]) == {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0",
                           "q5_1", "q4_K", "q5_K", "q6_K"}, sorted(k["types"])
for name, t in k["types"].items():
    for cls in ("dram", "l2"):
        c = t[cls]
        assert c["rows"] > 0 and c["bytes"] == c["rows"] * t["row_bytes"], (name, cls, c)
        assert set(c["gbps"]) == threads and set(c["rows_per_s"]) == threads, (name, c)
        assert all(0.01 < g < 10000 for g in c["gbps"].values()), (name, cls, c)
        assert all(r > 0 for r in c["rows_per_s"].values()), (name, cls, c)
    # the dram class by working set: 16 MiB doubling below the arena, the
    # arena's own point (the dram class) last
    ws = t["ws"]
    assert [w["ws_bytes"] for w in ws[:-1]] == [16 << (20 + i) for i in range(len(ws) - 1)], (name, ws)
    assert ws[-1]["ws_bytes"] == k["dram_arena_bytes"] and ws[-1]["gbps"] == t["dram"]["gbps"], (name, ws)
    assert all(set(w["gbps"]) == threads and all(0.01 < g < 10000 for g in w["gbps"].values())
               for w in ws), (name, ws)
    # the same series on 4 KiB pages (the mmap tier), the arena last
    sp = t["small_pages"]
    assert [w["ws_bytes"] for w in sp] == [w["ws_bytes"] for w in ws], (name, sp)
    assert all(set(w["gbps"]) == threads and all(0.01 < g < 10000 for g in w["gbps"].values())
               for w in sp), (name, sp)
    # a quarter of L2 (half at most), unless one row a thread is more
    assert t["l2"]["bytes"] <= max(k["l2_bytes"] // 2,
                                   k["threads"] * t["row_bytes"]), (name, t)
if "skipped" in kv:
    assert kv["skipped"].strip(), kv
else:
    blocks = 2 * kv["n_layer"] * (kv["positions"] // kv["block_tokens"])
    assert kv["blocks"] == blocks > 0, kv
    assert kv["bytes_written"] == blocks * kv["block_bytes"] > 0, kv
    assert kv["write_gbps"] > 0 and kv["block_write_us"] > 0 and kv["seconds"] > 0, kv
    assert kv["requests"] >= blocks, kv
grid = f["read_gbps"]
assert set(grid) == {"65536", "262144", "1048576", "4194304"}, grid
for row in grid.values():
    assert set(row) == {"1", "4", "16", "64"} and all(g > 0.01 for g in row.values())
assert 0.01 < f["sustained_read_gbps"] < 1000 and f["sustained_seconds"] >= 0.9
assert 0 < f["rand4k_p50_us"] <= f["rand4k_p99_us"] and f["rand4k_iops_qd64"] > 0
# the simulator's inputs: prefill matmul per quantized type, the unit
# pool's barrier for 1 .. CPUs units, the sampler
mm = p["matmul"]
assert mm["tokens"] > 1 and mm["threads"] == m["cores"], mm
assert {"q4_0", "q8_0", "q4_K", "q6_K"} <= set(mm["types"]), sorted(mm["types"])
for name, t in mm["types"].items():
    assert set(t["gmacs"]) == threads and all(0.1 < g < 1e5 for g in t["gmacs"].values()), (name, t)
    # weights from memory, by batch tokens
    mem = t["mem"]
    assert mem["rows"] > 0 and mem["tokens"] == [16, 32, 64, 128], (name, mem)
    assert set(mem["gmacs"]) == threads, (name, mem)
    assert all(len(v) == 4 and all(0.1 < g < 1e5 for g in v) for v in mem["gmacs"].values()), (name, mem)
    assert set(mem["small_pages_gmacs"]) == threads, (name, mem)
    assert all(len(v) == 4 and all(0.1 < g < 1e5 for g in v)
               for v in mem["small_pages_gmacs"].values()), (name, mem)
pc = p["page_cache"]
assert pc["bytes"] > 0 and pc["fault_ns_per_byte"] > 0 and pc["cold_ns_per_byte"] > 0, pc
bar = p["barrier"]["us_by_units"]
assert set(bar) == {str(n) for n in range(1, m["cores"] + 1)}, bar
assert all(0 <= v < 10000 for v in bar.values()), bar
s = p["sampler"]
assert s["vocab"] > 0 and 0 < s["ns_per_vocab"] < 1e4 and 0 < s["greedy_ns_per_vocab"] < 1e4, s
# the per-layer float ops and attention: every op, a time per element;
# attention grows with positions, from memory no faster than in cache
o = p["ops"]
assert set(o["ns_per_elem"]) == {"rmsnorm", "rope", "silu_mul", "add", "copy",
                                 "quant_q8_0", "quant_q8_K"}, o
assert all(0 < v < 1000 for v in o["ns_per_elem"].values()), o
a = o["attention"]
assert a["positions"] == [16, 64, 256, 1024, 2048, 4096], a
for tab in ("ns_by_head_dim", "cold_ns_by_head_dim"):
    assert set(a[tab]) == {"64", "128"}, a
    for v in a[tab].values():
        assert len(v) == 6 and all(x > 0 for x in v) and v[-1] > v[0], (tab, v)
for hd in ("64", "128"):
    assert a["cold_ns_by_head_dim"][hd][-1] >= 0.8 * a["ns_by_head_dim"][hd][-1], a
# the fabric: the simulator's two numbers, then the curves 64 B .. 4 MiB
fab = p["fabric"]
if "skipped" in fab:
    assert m["cores"] < 2 and fab["skipped"].strip(), fab
else:
    assert fab["chips"] == 2 and len(set(fab["cpus"])) == 2, fab
    assert 0 < fab["latency_us"] < 1e4 and 0 < fab["gbps"] < 1e4, fab
    sizes = [64 << k for k in range(17)]
    for name in ("floor", "allgather", "allreduce", "bcast"):
        c = fab[name]
        assert [q["bytes"] for q in c] == sizes, (name, c)
        for q in c:
            assert 0 < q["us"] <= q["p99_us"] < 1e6 and q["gbps"] > 0, (name, q)
            assert q["iters"] >= 8, (name, q)
    assert fab["latency_us"] == fab["allgather"][0]["us"], fab
    for name in ("allgather", "allreduce", "bcast"):
        r = fab["ratio_8k"][name]
        want = fab[name][7]["us"] / fab["floor"][7]["us"]
        assert fab[name][7]["bytes"] == 8192 and abs(r - want) < 0.01 * want + 1e-3, (name, r, want)
PY
	then ok "quick profile: every figure present and plausible"
	else bad "quick profile: bad JSON"; fi
elif grep -qE "io_uring unavailable|O_DIRECT is not supported" "$tmp/err"; then
	echo "SKIP: this machine cannot run the flash probe: $(tail -n 1 "$tmp/err")"
	exit 77
else
	bad "quick profile failed: $(tail -n 2 "$tmp/err")"
fi
if [ -z "$(ls -A "$tmp/dir")" ]; then ok "no test file left in --flash-dir"
else bad "left in --flash-dir: $(ls -A "$tmp/dir")"; fi

# O_DIRECT refused (memtier's fault hook): the KV writes are skipped, and
# the profile says why
if STRATA_FAULT=nodirect:1 timeout 60 "$probe" --quick --no-dram --no-kern \
	--no-flash --no-fabric --flash-dir "$tmp/dir" -o "$tmp/nd.json" 2>"$tmp/err" &&
	python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
assert "direct I/O" in p["kv_write"]["skipped"], p["kv_write"]
assert p["dram"] is None and p["kernels"] is None and p["flash"] is None, p
assert p["fabric"] is None, p
' "$tmp/nd.json" && [ -z "$(ls -A "$tmp/dir")" ]
then ok "O_DIRECT refused: KV writes skipped with the reason"
else bad "O_DIRECT refused: $(tail -n 2 "$tmp/err")"; fi
# nothing measured: no directory needed
if timeout 60 "$probe" --no-dram --no-kern --no-flash --no-kv --no-fabric \
	--flash-dir "$tmp/none" -o "$tmp/none.json" 2>"$tmp/err" &&
	python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
assert p["machine"]["cpu"] and p["kv_write"] is None and p["fabric"] is None, p
' "$tmp/none.json"
then ok "everything skipped: machine identity only"
else bad "everything skipped: $(tail -n 2 "$tmp/err")"; fi
# --fabric-only: the fabric and nothing else, no directory needed
if timeout 60 "$probe" --quick --fabric-only --flash-dir "$tmp/none" \
	-o "$tmp/fab.json" 2>"$tmp/err" &&
	python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
assert p["dram"] is None and p["flash"] is None and p["kv_write"] is None, p
assert "skipped" in p["fabric"] or p["fabric"]["allreduce"][0]["us"] > 0, p["fabric"]
' "$tmp/fab.json"
then ok "--fabric-only: the fabric alone"
else bad "--fabric-only: $(tail -n 2 "$tmp/err")"; fi

# --kern-types: the named types' matvec and matmul only (the short
# probe bench/validate runs before each configuration)
if timeout 60 "$probe" --quick --no-dram --no-flash --no-kv --no-fabric \
	--kern-types q4_0,q6_K -o "$tmp/kt.json" 2>"$tmp/err" &&
	python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
assert set(p["kernels"]["types"]) == {"q4_0", "q6_K"}, sorted(p["kernels"]["types"])
assert set(p["matmul"]["types"]) == {"q4_0", "q6_K"}, sorted(p["matmul"]["types"])
assert p["barrier"]["us_by_units"] and p["ops"]["ns_per_elem"], p
' "$tmp/kt.json"
then ok "--kern-types q4_0,q6_K: those two types only"
else bad "--kern-types: $(tail -n 2 "$tmp/err")"; fi
# --kern-shapes: a model's own matvec shapes at each working set given
if timeout 60 "$probe" --quick --no-dram --no-flash --no-kv --no-fabric --no-sys \
	--no-small-pages --kern-types q4_1 --kern-shapes q4_1:576x576,q8_0:192x576 \
	--kern-shape-ws 2,64 --kern-shape-pages small -o "$tmp/sh.json" 2>"$tmp/err" &&
	python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["kernels"]["shapes"]
assert [(x["type"], x["rows"], x["cols"]) for x in s] == [("q4_1", 576, 576), ("q8_0", 192, 576)], s
assert s[0]["bytes"] == 576 * 576 // 32 * 20 and s[1]["bytes"] == 192 * 576 // 32 * 34, s
assert all(x["pages"] == "small" for x in s), s
for x in s:
    w = x["ws"]
    assert len(w) == 2 and w[0]["ws_bytes"] <= 2 << 20 < w[1]["ws_bytes"] <= 64 << 20, w
    for p in w:
        for n, g in p["gbps"].items():
            us = x["bytes"] / g * 1e-3
            assert g > 0 and abs(p["us"][n] - us) <= 0.01 + 1e-3 * us, (p, us)
' "$tmp/sh.json"
then ok "--kern-shapes q4_1:576x576,q8_0:192x576 at 2 and 64 MiB, 4 KiB pages"
else bad "--kern-shapes: $(tail -n 2 "$tmp/err")"; fi
# --no-small-pages: no series on 4 KiB pages
if timeout 60 "$probe" --quick --no-dram --no-flash --no-kv --no-fabric \
	--kern-types q8_0 --no-small-pages -o "$tmp/ns.json" 2>"$tmp/err" &&
	python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
t = p["kernels"]["types"]["q8_0"]
assert "small_pages" not in t and t["ws"], t
assert "small_pages_gmacs" not in p["matmul"]["types"]["q8_0"]["mem"], p["matmul"]
assert p["page_cache"] is None, p["page_cache"]
' "$tmp/ns.json"
then ok "--no-small-pages: no 4 KiB-page series"
else bad "--no-small-pages: $(tail -n 2 "$tmp/err")"; fi

expect() { # expect STATUS TEXT ARGS...
	local want=$1 text=$2 st
	shift 2
	timeout 60 "$probe" "$@" >/dev/null 2>"$tmp/err"
	st=$?
	if [ "$st" -eq "$want" ] && grep -qF -- "$text" "$tmp/err"; then
		ok "$* -> status $st"
	else
		bad "$* -> status $st (want $want and '$text'): $(head -n 2 "$tmp/err")"
	fi
}
expect 2 "usage" --bogus
expect 2 "--file-size" --file-size 1K --no-dram
expect 2 "--fabric-cpus" --fabric-cpus 1 --fabric-only
expect 2 "--fabric-cpus" --fabric-cpus 0,0 --fabric-only
expect 1 "cannot run on CPU" --fabric-cpus 1000,1 --fabric-only
expect 1 "CPU 1000" --fabric-cpus 0,1000 --fabric-only
expect 2 "'q9' is not a weight type" --kern-types q4_0,q9 --fabric-only
expect 2 "--kern-types" --kern-types "" --fabric-only
expect 2 "--kern-types" --kern-types , --fabric-only
expect 2 "'q4_0:100x20' is not" --kern-shapes q4_0:100x2048,q4_0:100x20 --fabric-only
expect 2 "TYPE:ROWSxCOLS" --kern-shapes 2048x2048 --fabric-only
expect 2 "'q9:1x32' is not" --kern-shapes q9:1x32 --fabric-only
expect 2 "ascending" --kern-shapes q4_0:1x32 --kern-shape-ws 64,32 --fabric-only
expect 2 "ascending" --kern-shapes q4_0:1x32 --kern-shape-ws 0 --fabric-only
expect 2 "without --kern-shapes" --kern-shape-ws 64 --fabric-only
expect 2 "huge or small" --kern-shapes q4_0:1x32 --kern-shape-pages big --fabric-only
expect 1 "No such file" --no-dram --flash-dir "$tmp/none"
expect 1 "not a directory" --no-dram --flash-dir "$tmp/file"
expect 1 "not a directory" --no-dram --no-kern --no-flash --flash-dir "$tmp/file"
STRATA_FAULT=bogus expect 1 "STRATA_FAULT" --no-dram --no-kern --no-flash \
	--flash-dir "$tmp/dir"
STRATA_KERNELS=bogus expect 1 "STRATA_KERNELS" --no-dram --no-flash
echo "$((n - failed))/$n passed"
[ "$failed" -eq 0 ]
