#!/usr/bin/env bash
# The KV cache on flash against context length: KV bytes read and written
# per token, their GB/s and stall, decode tok/s with the cache in DRAM and
# on flash, side by side (weights resident in both, so what differs is the
# KV cache's tier).
#
#   bench/kv-sweep.sh [-r ROUNDS] [-n TOKENS] [-c "P ..."] [-d DIR] [MODEL]
#       default model: $STRATA_CACHE/bench/tinyllama-1.1b-q4_0.gguf (made
#       with models/mkmodel if missing); -c: prompt lengths (default
#       "64 512 1024 1900", context 2048); -n: tokens decoded after the
#       prompt (default 32); -r: rounds, the two tiers alternated and the
#       order flipped every round (default 3); -d: --flash-dir (default:
#       the model's directory, the disk bench/probe measures).
# Output: bench/results/kv-sweep-DATE.{csv,md} (-HHMMSS added if taken);
# the .md names the machine: CPU, CPUs used, the kernels' ISA path, the
# DRAM read GB/s measured at the start of the run (bench/lib.sh; DRAM_GBPS,
# if given, is taken instead and labelled so).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=kv-sweep
# shellcheck source=bench/lib.sh
. bench/lib.sh
rounds=3 tokens=32 ctxs="64 512 1024 1900" dir=""
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while getopts "r:n:c:d:h" opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	n) tokens=$OPTARG ;;
	c) ctxs=$OPTARG ;;
	d) dir=$OPTARG ;;
	h) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[[ $rounds =~ ^[1-9][0-9]*$ && $tokens =~ ^[1-9][0-9]*$ ]] ||
	bad "-r and -n take positive integers"
for p in $ctxs; do
	if ! [[ $p =~ ^[1-9][0-9]*$ ]] || ((p + tokens > 2048)); then
		bad "-c: '$p' + $tokens tokens must fit 2048"
	fi
done
bench_dram_check
[[ -x ./decode ]] || die "./decode is not built (run make)"
model=$(bench_model "${1:-}")
dir=${dir:-$(dirname "$model")}
[[ -d $dir && -w $dir ]] || die "-d '$dir' is not a writable directory"
bench_dram "$(nproc)" # decode's default: one thread per CPU it may run on
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$(bench_out kv-sweep)

run() { # run PROMPT TIER ROUND
	local extra=()
	[[ $2 == flash ]] && extra=(--kv-tier flash --flash-dir "$dir")
	./decode -m "$model" -c 2048 --prompt-tokens "$1" -n "$tokens" \
		--ignore-eos --temp 0 "${extra[@]}" --stats-json "$work/r.json" \
		>/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
	python3 - "$work/r.json" "$1" "$2" "$3" >>"$out.csv" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
dec, kv = d["decode"], d["kv"]
print(f'{sys.argv[2]},{sys.argv[3]},{sys.argv[4]},{dec["tok_per_s"]:.3f},'
      f'{kv["bytes_per_token"]:.0f},{kv["bytes_loaded"] / max(dec["tokens"], 1):.0f},'
      f'{kv["io_gbps"]:.4f},{kv["stall_seconds"]:.5f},{dec["seconds"]:.5f},'
      f'{kv["steady_bytes_written_per_token"]},{kv["drive_writes_per_day"]:.4f},'
      f'{kv["drive_bytes"]},{d["peak_rss_bytes"]},{d["kv_dram_bytes"]}')
PY
	tail -n 1 "$out.csv" >&2
}

echo "prompt_tokens,kv_tier,round,tok_per_s,kv_read_bytes_per_token,kv_flash_bytes_per_token,kv_io_gbps,kv_stall_s,decode_s,kv_steady_written_bytes_per_token,drive_writes_per_day,drive_bytes,peak_rss_bytes,kv_dram_bytes" >"$out.csv"
for ((r = 1; r <= rounds; r++)); do
	for p in $ctxs; do
		if ((r % 2)); then run "$p" dram "$r"; run "$p" flash "$r"
		else run "$p" flash "$r"; run "$p" dram "$r"; fi
	done
done

MACHINE=$(bench_machine_md "$work/r.json") \
	python3 - "$out.csv" "$model" "$dir" "$rounds $tokens" >"$out.md" <<'PY'
import csv, statistics as st, sys, time, os
rows = list(csv.DictReader(open(sys.argv[1])))
model, kvdir, (rounds, tokens) = sys.argv[2], sys.argv[3], sys.argv[4].split()
med = lambda p, t, k: st.median(float(r[k]) for r in rows
                                if r["prompt_tokens"] == p and r["kv_tier"] == t)
print("# KV cache on flash against context length\n")
print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
      f"host {os.uname().nodename}")
print(os.environ["MACHINE"])
print(f"- model: `{model}`, weights resident (`--tier dram`), 2048 context")
dg = f"DRAM_GBPS={os.environ['DRAM_GBPS']} " if os.environ.get("DRAM_GBPS") else ""
print(f"- command: `{dg}bench/kv-sweep.sh -r {rounds} -n {tokens}`; each point "
      f"`./decode -m MODEL -c 2048 --prompt-tokens P -n {tokens} --ignore-eos "
      f"--temp 0 [--kv-tier flash --flash-dir {kvdir}] --stats-json J`, "
      "tiers alternated, medians of the rounds\n")
print("| context P | tok/s KV dram | tok/s KV flash | ratio | KV read/token "
      "| from flash/token | KV flash GB/s | KV stall % | written/token "
      "| drive writes/day | peak RSS KV dram / flash |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for p in dict.fromkeys(r["prompt_tokens"] for r in rows):
    d, f = med(p, "dram", "tok_per_s"), med(p, "flash", "tok_per_s")
    stall = 100 * med(p, "flash", "kv_stall_s") / med(p, "flash", "decode_s")
    print(f"| {p} | {d:.2f} | {f:.2f} | {f / d:.2f} | "
          f"{med(p, 'flash', 'kv_read_bytes_per_token') / 2**20:.1f} MiB | "
          f"{med(p, 'flash', 'kv_flash_bytes_per_token') / 2**20:.1f} MiB | "
          f"{med(p, 'flash', 'kv_io_gbps'):.2f} | {stall:.0f}% | "
          f"{med(p, 'flash', 'kv_steady_written_bytes_per_token') / 1024:.1f} KiB | "
          f"{med(p, 'flash', 'drive_writes_per_day'):.2f} | "
          f"{med(p, 'dram', 'peak_rss_bytes') / 2**20:.0f} / "
          f"{med(p, 'flash', 'peak_rss_bytes') / 2**20:.0f} MiB |")
drive = max(int(r["drive_bytes"]) for r in rows) / 1e9
print(f"\nWritten/token: every position's K and V rows are written once, in "
      "whole blocks (`kv.steady_bytes_written_per_token`; a short run's own "
      "count depends on which blocks it happened to fill). Drive "
      "writes/day: that rate x decode tok/s x 86400 / the size of the "
      f"--flash-dir file system ({drive:.0f} GB), i.e. if this decode ran "
      "all day. Reads from flash are the full blocks; the partial block's "
      "rows come from DRAM.")
PY
cat "$out.md"
echo "kv-sweep: wrote $out.md and $out.csv" >&2
