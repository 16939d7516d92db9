#!/usr/bin/env bash
# test_cli.sh - ./decode on bad input: every case must end with exit status
# 2 (bad usage) or 1 (runtime failure), never a signal (status >= 128),
# with "error:" and the expected reason on stderr and no sanitizer report.
# Also the files a user can get wrong: metadata lying about valid tensors,
# a vocabulary-only GGUF, a read-only or shared --flash-dir, the model
# truncated or replaced while the flash tier streams it.
#
#   STRATA_MODEL=model.gguf tests/test_cli.sh [DECODE ...]
#
# Without arguments it checks ./decode, and build-asan/decode as well when
# that exists. Exits 77 (skip) when STRATA_MODEL is unset or missing, since
# the runtime cases need a real model to get past loading.
set -u

model=${STRATA_MODEL:-}
if [ -z "$model" ] || [ ! -f "$model" ]; then
	echo "SKIP: STRATA_MODEL is not set or not a file ('$model')"
	exit 77
fi
if [ $# -gt 0 ]; then
	bins=("$@")
else
	bins=(./decode)
	[ -x build-asan/decode ] && bins+=(build-asan/decode)
fi
for b in "${bins[@]}"; do
	if [ ! -x "$b" ]; then
		echo "FAIL: $b is not built (run make first)"
		exit 1
	fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/strata_test_cli.XXXXXX") || exit 1
trap 'umount -l "$tmp/small" 2>/dev/null; umount -l "$tmp/ro" 2>/dev/null; rm -rf "$tmp"' EXIT

# malformed copies of the model
size=$(stat -c %s "$model")
head -c 1048576 "$model" >"$tmp/trunc-header.gguf"
head -c $((size - 4096)) "$model" >"$tmp/trunc-data.gguf"
{ printf 'GGUX'; tail -c +5 "$tmp/trunc-header.gguf"; } >"$tmp/bad-magic.gguf"
{ head -c 4 "$model"; printf '\001\000\000\000'; tail -c +9 "$tmp/trunc-header.gguf"; } \
	>"$tmp/version1.gguf"
: >"$tmp/empty.gguf"
echo "this is not a model" >"$tmp/text.gguf"
mkdir "$tmp/dir.gguf"
tests/gguf_patch.py --vocab-only "$model" "$tmp/vocab-only.gguf" || exit 1
echo "Once upon a time" >"$tmp/prompt.txt"

n=0
failed=0

# check NAME WANT_STATUS WANT_TEXT [ENV=VAL ...] -- ARGS...
check() {
	local name=$1 want=$2 text=$3
	shift 3
	local envs=()
	while [ "$1" != "--" ]; do
		envs+=("$1")
		shift
	done
	shift
	n=$((n + 1))
	local err="$tmp/stderr" rc why=""
	env "${envs[@]}" timeout 300 "$bin" "$@" </dev/null >"$tmp/stdout" 2>"$err"
	rc=$?
	if [ "$rc" -ge 124 ]; then
		why="status $rc (crash, signal or timeout)"
	elif [ "$rc" -ne "$want" ]; then
		why="status $rc, want $want"
	elif ! grep -q "error:" "$err"; then
		why="no 'error:' on stderr"
	elif ! grep -qF -- "$text" "$err"; then
		why="stderr lacks '$text'"
	elif grep -qE "Sanitizer|runtime error:" "$err"; then
		why="sanitizer report"
	fi
	if [ -n "$why" ]; then
		echo "not ok $n - $bin: $name: $why"
		sed 's/^/#   /' "$err" | head -20
		failed=$((failed + 1))
	else
		echo "ok $n - $bin: $name ($(grep -m1 'error:' "$err"))"
	fi
}

m=(-m "$model")
gen=(-p "Hello" -n 1 --temp 0 -t 2)

# works: status 0 and stdout containing want
works() {
	local name=$1 want=$2
	shift 2
	n=$((n + 1))
	if timeout 300 "$bin" "$@" </dev/null >"$tmp/stdout" 2>"$tmp/stderr" &&
		grep -qF -- "$want" "$tmp/stdout"; then
		echo "ok $n - $bin: $name"
	else
		echo "not ok $n - $bin: $name: stdout lacks '$want'"
		sed 's/^/#   /' "$tmp/stdout" "$tmp/stderr" | head -20
		failed=$((failed + 1))
	fi
}

# same seed, same text; the text differs under another seed
same_seed() {
	n=$((n + 1))
	local s=(-p "Once upon a time" -n 16 --temp 0.9 -t 2)
	"$bin" "${m[@]}" "${s[@]}" -s 7 >"$tmp/a" 2>/dev/null
	"$bin" "${m[@]}" "${s[@]}" -s 7 >"$tmp/b" 2>/dev/null
	"$bin" "${m[@]}" "${s[@]}" -s 8 >"$tmp/c" 2>/dev/null
	if cmp -s "$tmp/a" "$tmp/b" && ! cmp -s "$tmp/a" "$tmp/c"; then
		echo "ok $n - $bin: --seed reproduces sampled text"
	else
		echo "not ok $n - $bin: --seed: same seed differs or seeds agree"
		failed=$((failed + 1))
	fi
}

# empty_dir NAME DIR: DIR exists and holds nothing
empty_dir() {
	n=$((n + 1))
	if [ -d "$2" ] && [ -z "$(ls -A "$2")" ]; then
		echo "ok $n - $bin: $1"
	else
		echo "not ok $n - $bin: $1: $(ls -A "$2" 2>&1 | head -3)"
		failed=$((failed + 1))
	fi
}

# SIGTERM and SIGINT in the middle of a run with the KV cache on flash:
# the run stops, reports, exits 128 + signal, and leaves no file
stop_signal() {
	local sig st
	for sig in TERM INT; do
		n=$((n + 1))
		mkdir -p "$tmp/kvsig"
		"$bin" "${m[@]}" --kv-tier flash --flash-dir "$tmp/kvsig" \
			--tier flash --prompt-tokens 8 -n 4000 --ignore-eos -t 2 \
			--stats </dev/null >"$tmp/stdout" 2>"$tmp/stderr" &
		local pid=$!
		sleep 2
		kill -s "$sig" "$pid"
		wait "$pid"
		st=$?
		local want=$((128 + $(kill -l "$sig")))
		if [ "$st" -eq "$want" ] && grep -q "interrupted" "$tmp/stderr" &&
			grep -q "strata stats" "$tmp/stderr" &&
			[ -z "$(ls -A "$tmp/kvsig")" ]; then
			echo "ok $n - $bin: SIG$sig mid-run: status $st, stats, no file left"
		else
			echo "not ok $n - $bin: SIG$sig mid-run: status $st (want $want)"
			sed 's/^/#   /' "$tmp/stderr" | tail -5
			ls -A "$tmp/kvsig" | sed 's/^/#   left: /'
			failed=$((failed + 1))
		fi
	done
}

# --stats-json counts the KV blocks decode completed, exactly: prompt 57,
# 8 tokens: block 0 (positions 0-63) fills during decode, 30 layers x K
# and V x 64 rows x 768 bytes (3 KV heads) with one unit; with two units
# the KV head whose query heads straddle them (9 query heads: 0-3 and
# 4-8, KV head 1 serves 3-5) is kept by both, 1024-byte rows;
# prompt 100: no block fills during decode
kv_accounting() {
	local p want got
	for p in "57 2949120 1" "57 3932160 2" "100 0 2"; do
		set -- $p
		n=$((n + 1))
		"$bin" "${m[@]}" --prompt-tokens "$1" -n 8 --ignore-eos --temp 0 \
			--kv-tier flash --flash-dir "$tmp/kv" --kv-block 64 -t "$3" \
			--stats-json "$tmp/kv.json" </dev/null >/dev/null 2>&1
		want=$2
		got=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["kv"]["bytes_written"], d["tiers"]["flash"]["bytes_written"])' "$tmp/kv.json" 2>&1)
		if [ "$got" = "$want $want" ]; then
			echo "ok $n - $bin: KV bytes written in decode, prompt $1, $3 unit(s): $want"
		else
			echo "not ok $n - $bin: KV bytes written, prompt $1, $3 unit(s): got '$got', want $want"
			failed=$((failed + 1))
		fi
	done
}

# near-memory units: --nmu off, other unit counts and an emulated
# two-node topology give the text of the default two units; --stats-json
# has one nmu object per unit with its figures
nmu_units() {
	local g=(-p "The capital of France is" -n 16 --temp 0)
	"$bin" "${m[@]}" "${g[@]}" -t 2 >"$tmp/u-ref" 2>/dev/null
	for a in "--nmu off" "--nmu off -t 1" "--nmus 1" "--nmus 3" "-t 2 TOPO"; do
		n=$((n + 1))
		local env=() args=(${a/TOPO/})
		[[ $a == *TOPO* ]] && env=(STRATA_TOPOLOGY=2x1)
		if env "${env[@]}" "$bin" "${m[@]}" "${g[@]}" "${args[@]}" \
			--stats-json "$tmp/u.json" >"$tmp/u-out" 2>"$tmp/u-err" &&
			cmp -s "$tmp/u-ref" "$tmp/u-out" &&
			python3 - "$tmp/u.json" "$a" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); a = sys.argv[2]
units = d["nmu"]; s = d["nmu_summary"]
want = 1 if "-t 1" in a or "--nmus 1" in a else 3 if "3" in a else 2
assert len(units) == want == s["units"] == d["threads"], (len(units), want)
assert s["mode"] == ("off" if "off" in a else "on")
if "TOPO" in a:
    assert [u["node"] for u in units] == [0, 1] and s["nodes"] == 2
keys = {"unit", "cpu", "node", "weight_bytes", "act_bytes_in",
        "result_bytes_out", "compute_seconds", "barrier_seconds",
        "stall_seconds", "barrier_wait_p50_us", "barrier_wait_p99_us"}
for u in units:
    assert keys <= set(u), keys - set(u)
    assert u["weight_bytes"] > 0 and u["compute_seconds"] > 0
    assert u["foreign_rows"] == 0
    assert (u["cpu"] >= 0) == (s["mode"] == "on")
    assert (u["act_bytes_in"] > 0) == (want > 1)
assert s["imbalance"] >= 1.0 or want == 1
PY
		then
			echo "ok $n - $bin: ${a/TOPO/STRATA_TOPOLOGY=2x1}: same text, nmu stats"
		else
			echo "not ok $n - $bin: ${a/TOPO/STRATA_TOPOLOGY=2x1}: text or nmu stats differ"
			sed 's/^/#   /' "$tmp/u-err" | tail -5
			failed=$((failed + 1))
		fi
	done
}

# a real full disk: a 512 KiB tmpfs as --flash-dir (root only; skipped
# where mount is not allowed)
full_disk() {
	mkdir -p "$tmp/small"
	if ! mount -t tmpfs -o size=512k strata-test "$tmp/small" 2>/dev/null; then
		echo "ok $((n + 1)) - $bin: # SKIP real disk full: cannot mount a tmpfs"
		n=$((n + 1))
		return
	fi
	check "KV disk full (512 KiB tmpfs)" 1 "No space left on device" -- \
		"${m[@]}" --kv-tier flash --flash-dir "$tmp/small" --kv-block 16 \
		-p hi -n 100 --ignore-eos --temp 0
	empty_dir "disk full leaves nothing behind" "$tmp/small"
	# io_uring drops its file references asynchronously after exit
	local i
	for i in 1 2 3 4 5 6 7 8 9 10; do
		umount "$tmp/small" 2>/dev/null && break
		sleep 0.5
	done
}

# metadata that lies about the shapes of valid tensors (tests/gguf_patch.py
# changes one value in place): refused at load with the value named
lying_metadata() {
	local lie key val want
	for lie in "llama.block_count 31|needs 279 block tensors" \
		"llama.block_count 29|but the file has tensor 'blk.29." \
		"llama.embedding_length 512|embedding 512, heads 9, kv heads 3 do not divide" \
		"llama.feed_forward_length 1024|'blk.0.ffn_gate.weight' has shape [576, 1536, 1, 1], want [576, 1024]" \
		"llama.attention.head_count_kv 1|'blk.0.attn_k.weight' has shape [576, 192, 1, 1], want [576, 64]" \
		"llama.vocab_size 50000|llama.vocab_size 50000 but token_embd.weight has 49152 rows" \
		"llama.rope.dimension_count 1000|rope dimension 1000 invalid" \
		"llama.context_length 0|'llama.context_length' is not a positive integer"; do
		key=${lie%% *} want=${lie#*|} val=${lie#* }
		val=${val%%|*}
		tests/gguf_patch.py "$model" "$tmp/lie.gguf" "$key" "$val" || exit 1
		check "metadata lies: $key $val" 1 "$want" -- -m "$tmp/lie.gguf" -p hi -n 1
	done
}

# a read-only --flash-dir (a read-only tmpfs: root only; skipped where
# mount is not allowed - DAC permissions do not stop root)
ro_flash_dir() {
	mkdir -p "$tmp/ro"
	if ! mount -t tmpfs -o ro,size=1m strata-ro "$tmp/ro" 2>/dev/null; then
		echo "ok $((n + 1)) - $bin: # SKIP read-only --flash-dir: cannot mount a tmpfs"
		n=$((n + 1))
		return
	fi
	check "read-only --flash-dir" 1 "Read-only file system" -- \
		"${m[@]}" "${gen[@]}" --kv-tier flash --flash-dir "$tmp/ro"
	umount "$tmp/ro"
}

# the model file changed under a run streaming it from the flash tier:
# truncated, the run stops with an I/O error (exit 1); replaced by rename
# (how tools update files), the run keeps its open file and prints the
# text of an undisturbed run. ACTION runs 1 s in, while decode still runs.
mid_run() {
	local name=$1 want=$2 action=$3 st
	local g=(--tier flash --dram-budget 16M -p "Once upon a time" -n 64
		--ignore-eos --temp 0 -t 2)
	n=$((n + 1))
	cp "$model" "$tmp/live.gguf"
	"$bin" -m "$tmp/live.gguf" "${g[@]}" </dev/null >"$tmp/stdout" 2>"$tmp/stderr" &
	local pid=$!
	sleep 1
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid"
		echo "not ok $n - $bin: $name: the run ended before the file changed"
		failed=$((failed + 1))
		return
	fi
	eval "$action"
	wait "$pid"
	st=$?
	if [ "$want" = same ]; then
		"$bin" "${m[@]}" "${g[@]}" </dev/null >"$tmp/ref" 2>/dev/null
		if [ "$st" -eq 0 ] && [ -s "$tmp/ref" ] && cmp -s "$tmp/ref" "$tmp/stdout"; then
			echo "ok $n - $bin: $name: status 0, the text of an undisturbed run"
			return
		fi
	elif [ "$st" -eq 1 ] && grep -q "error:.*Input/output error" "$tmp/stderr" &&
		! grep -qE "Sanitizer|runtime error:" "$tmp/stderr"; then
		echo "ok $n - $bin: $name: status 1, $(grep -m1 'error:' "$tmp/stderr")"
		return
	fi
	echo "not ok $n - $bin: $name: status $st"
	sed 's/^/#   /' "$tmp/stderr" | tail -5
	failed=$((failed + 1))
}

# two runs at once with their KV caches in one --flash-dir: both succeed,
# with the same text, and leave nothing behind
shared_flash_dir() {
	local g=(--kv-tier flash --flash-dir "$tmp/shared" --kv-block 16 -n 40
		--ignore-eos --temp 0 -t 1 -p "The capital of France is")
	n=$((n + 1))
	mkdir -p "$tmp/shared"
	"$bin" "${m[@]}" "${g[@]}" </dev/null >"$tmp/a" 2>"$tmp/a.err" &
	local pa=$!
	"$bin" "${m[@]}" "${g[@]}" </dev/null >"$tmp/b" 2>"$tmp/b.err" &
	local pb=$! sa sb
	wait "$pa"
	sa=$?
	wait "$pb"
	sb=$?
	if [ "$sa" -eq 0 ] && [ "$sb" -eq 0 ] && grep -q Paris "$tmp/a" &&
		cmp -s "$tmp/a" "$tmp/b"; then
		echo "ok $n - $bin: two runs sharing --flash-dir: same text"
	else
		echo "not ok $n - $bin: two runs sharing --flash-dir: status $sa/$sb"
		sed 's/^/#   /' "$tmp/a.err" "$tmp/b.err" | tail -6
		failed=$((failed + 1))
	fi
	empty_dir "two runs sharing --flash-dir leave nothing" "$tmp/shared"
}

for bin in "${bins[@]}"; do
	# the model itself is fine: the failures below are the input's
	n=$((n + 1))
	if timeout 300 "$bin" "${m[@]}" -p "Hello" --tokenize </dev/null \
		>"$tmp/stdout" 2>"$tmp/stderr"; then
		echo "ok $n - $bin: control run with a valid model"
	else
		echo "not ok $n - $bin: control run with a valid model failed"
		sed 's/^/#   /' "$tmp/stderr" | head -20
		failed=$((failed + 1))
	fi

	# the flags that do work, end to end
	printf 'The capital of France is' >"$tmp/prompt.txt"
	works "-f FILE" "Paris" "${m[@]}" -f "$tmp/prompt.txt" -n 4 --temp 0
	works "--chat (ChatML)" "Paris" "${m[@]}" --chat --temp 0 -n 12 \
		-p "What is the capital of France? Answer in one word."
	works "--tokenize" "[504, 3575, 282, 4649, 314]" "${m[@]}" \
		-p "The capital of France is" --tokenize
	works "--tier flash" "Paris" "${m[@]}" --tier flash -n 4 --temp 0 \
		-p "The capital of France is"
	same_seed
	mkdir -p "$tmp/kv"
	works "--kv-tier flash" "Paris" "${m[@]}" --kv-tier flash --flash-dir \
		"$tmp/kv" --kv-block 16 -n 40 --ignore-eos --temp 0 \
		-p "The capital of France is"
	empty_dir "--kv-tier flash leaves nothing in --flash-dir" "$tmp/kv"
	works "--no-direct" "Paris" "${m[@]}" --tier flash --kv-tier flash \
		--flash-dir "$tmp/kv" --no-direct -n 4 --temp 0 \
		-p "The capital of France is"
	stop_signal
	kv_accounting
	nmu_units

	# usage errors: status 2, before anything is loaded
	check "no arguments" 2 "no model given" --
	check "-t 0" 2 "--threads" -- "${m[@]}" -t 0 -p hi
	check "-t abc" 2 "'abc'" -- "${m[@]}" -t abc -p hi
	check "-t 2x" 2 "--threads" -- "${m[@]}" -t 2x -p hi
	check "--nmu maybe" 2 "unknown NMU mode 'maybe'" -- "${m[@]}" --nmu maybe -p hi
	check "-t 2 --nmus 3" 2 "disagree" -- "${m[@]}" -t 2 --nmus 3 -p hi
	check "--nmus 10 (9 heads)" 1 "a unit would have no head" -- "${m[@]}" --nmus 10 -p hi
	check "STRATA_TOPOLOGY bogus" 1 "STRATA_TOPOLOGY='2y1'" STRATA_TOPOLOGY=2y1 -- "${m[@]}" -p hi
	check "-n x" 2 "--n-predict" -- "${m[@]}" -n x -p hi
	check "-n -2" 2 "--n-predict" -- "${m[@]}" -n -2 -p hi
	check "-c 0" 2 "--ctx-size" -- "${m[@]}" -c 0 -p hi
	check "-s -1" 2 "--seed" -- "${m[@]}" -s -1 -p hi
	check "--temp -1" 2 "--temp" -- "${m[@]}" --temp -1 -p hi
	check "--temp nan" 2 "--temp" -- "${m[@]}" --temp nan -p hi
	check "--top-p 2" 2 "--top-p" -- "${m[@]}" --top-p 2 -p hi
	check "--min-p 1.5" 2 "--min-p" -- "${m[@]}" --min-p 1.5 -p hi
	check "--repeat-penalty 0" 2 "--repeat-penalty" -- "${m[@]}" --repeat-penalty 0 -p hi
	check "--top-k -1" 2 "--top-k" -- "${m[@]}" --top-k -1 -p hi
	check "--tier bogus" 2 "unknown tier 'bogus'" -- "${m[@]}" --tier bogus -p hi
	check "--prefetch -1" 2 "--prefetch: '-1'" -- "${m[@]}" --tier flash --prefetch -1 -p hi
	check "--dram-budget 12Q" 2 "--dram-budget: '12Q'" -- "${m[@]}" --tier flash --dram-budget 12Q -p hi
	check "--dram-budget on dram" 2 "applies to --tier flash" -- "${m[@]}" --dram-budget 1G -p hi
	check "STRATA_FAULT bogus" 2 "STRATA_FAULT" STRATA_FAULT=bogus -- "${m[@]}" --tier flash -p hi
	check "flash read EIO" 1 "Input/output error" STRATA_FAULT=eio:20 -- "${m[@]}" --tier flash -p hi -n 8
	check "--kv-tier mmap" 2 "unknown KV tier 'mmap'" -- "${m[@]}" --kv-tier mmap -p hi
	check "--flash-dir without --kv-tier flash" 2 "apply to --kv-tier flash" -- \
		"${m[@]}" --flash-dir /tmp -p hi
	check "--kv-block 0" 2 "--kv-block" -- "${m[@]}" --kv-tier flash --kv-block 0 -p hi
	check "--no-direct on dram" 2 "--no-direct applies" -- "${m[@]}" --no-direct -p hi
	check "unknown flag" 2 "unknown option '--bogus'" -- "${m[@]}" --bogus -p hi
	check "unknown short flag" 2 "unknown option" -- "${m[@]}" -Z -p hi
	check "missing value (short)" 2 "needs a value" -- "${m[@]}" -p
	check "missing value (long)" 2 "needs a value" -- "${m[@]}" -p hi --temp
	check "-p and -f" 2 "not both" -- "${m[@]}" -p hi -f "$tmp/prompt.txt"
	check "stray argument" 2 "unexpected argument" -- "${m[@]}" -p hi extra
	check "STRATA_KERNELS bogus" 2 "STRATA_KERNELS" STRATA_KERNELS=bogus -- \
		"${m[@]}" -p hi

	# runtime errors: status 1 with the reason
	check "missing model" 1 "$tmp/none.gguf" -- -m "$tmp/none.gguf" -p hi
	check "model is a directory" 1 "not a regular file" -- -m "$tmp/dir.gguf" -p hi
	check "empty model file" 1 "empty.gguf" -- -m "$tmp/empty.gguf" -p hi
	check "text file as model" 1 "bad magic" -- -m "$tmp/text.gguf" -p hi
	check "bad magic" 1 "bad magic" -- -m "$tmp/bad-magic.gguf" -p hi
	check "GGUF version 1" 1 "version 1" -- -m "$tmp/version1.gguf" -p hi
	check "truncated in the header" 1 "trunc-header.gguf: offset 0x" -- \
		-m "$tmp/trunc-header.gguf" -p hi
	check "truncated in the data" 1 "extends past end of file" -- \
		-m "$tmp/trunc-data.gguf" -p hi
	check "empty prompt" 1 "empty prompt" -- "${m[@]}" -p ""
	check "no prompt" 1 "empty prompt" -- "${m[@]}"
	check "empty prompt file" 1 "empty prompt" -- "${m[@]}" -f "$tmp/empty.gguf"
	check "missing prompt file" 1 "$tmp/none.txt" -- "${m[@]}" -f "$tmp/none.txt"
	check "--perplexity missing file" 1 "$tmp/none.txt" -- \
		"${m[@]}" --perplexity "$tmp/none.txt"
	check "--stats-json in a missing dir" 1 "$tmp/no/such/s.json" -- \
		"${m[@]}" "${gen[@]}" --stats-json "$tmp/no/such/s.json"
	check "--stats-json is a directory" 1 "$tmp/dir.gguf" -- \
		"${m[@]}" "${gen[@]}" --stats-json "$tmp/dir.gguf"
	check "--dump-logits in a missing dir" 1 "$tmp/no/such/l.bin" -- \
		"${m[@]}" "${gen[@]}" --dump-logits "$tmp/no/such/l.bin"
	check "--flash-dir missing" 1 "cannot create the KV file" -- \
		"${m[@]}" "${gen[@]}" --kv-tier flash --flash-dir "$tmp/no/such"
	check "--flash-dir is a file" 1 "cannot create the KV file" -- \
		"${m[@]}" "${gen[@]}" --kv-tier flash --flash-dir "$tmp/prompt.txt"
	check "O_DIRECT refused (weights)" 1 "--no-direct" STRATA_FAULT=nodirect:1 \
		-- "${m[@]}" "${gen[@]}" --tier flash
	check "O_DIRECT refused (KV file)" 1 "--no-direct" STRATA_FAULT=nodirect:1 \
		-- "${m[@]}" "${gen[@]}" --kv-tier flash --flash-dir "$tmp/kv"
	check "KV disk full (injected)" 1 "No space left on device" \
		STRATA_FAULT=enospc:4 -- "${m[@]}" --kv-tier flash --flash-dir \
		"$tmp/kv" --kv-block 16 -p hi -n 60 --ignore-eos --temp 0
	check "KV read EIO (injected)" 1 "Input/output error" STRATA_FAULT=eio:50 \
		-- "${m[@]}" --kv-tier flash --flash-dir "$tmp/kv" --kv-block 16 \
		-p hi -n 60 --ignore-eos --temp 0
	empty_dir "KV faults leave nothing in --flash-dir" "$tmp/kv"
	full_disk

	# bad input a user meets (issue 11)
	long=$(python3 -c 'print("word " * 300)')
	check "prompt longer than the context" 1 \
		"prompt of 301 tokens does not fit the context of 64" -- \
		"${m[@]}" -c 64 -p "$long" -n 4
	check "-c above 2^24" 2 "--ctx-size: '16777217' is not an integer in [1, 16777216]" \
		-- "${m[@]}" -c 16777217 -p hi
	check "-c negative" 2 "--ctx-size: '-5'" -- "${m[@]}" -c -5 -p hi
	check "vocabulary-only GGUF" 1 "no tensors (a vocabulary-only GGUF?)" -- \
		-m "$tmp/vocab-only.gguf" -p hi
	lying_metadata
	ro_flash_dir
	mid_run "model truncated mid-run (flash tier)" eio \
		'truncate -s 1M "$tmp/live.gguf"'
	mid_run "model replaced by rename mid-run (flash tier)" same \
		'head -c 1048576 "$model" >"$tmp/new.gguf"; mv "$tmp/new.gguf" "$tmp/live.gguf"'
	shared_flash_dir
done

echo "$((n - failed))/$n passed"
[ "$failed" -eq 0 ]
