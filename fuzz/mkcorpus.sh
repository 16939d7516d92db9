#!/usr/bin/env bash
# fuzz/mkcorpus.sh - write the seed corpus fuzz/corpus/NAME/ for each
# harness, from synthetic files only (models/mkmodel's tiny-test shape, no
# model weights): `make fuzz-corpus`. Run from the repository root after
# make. Files are named by content, so a rerun adds nothing twice.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x models/mkmodel ]] || { echo "mkcorpus: run make first" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# seed NAME: stdin into fuzz/corpus/NAME/<sha1 of the bytes>
seed() {
	mkdir -p "fuzz/corpus/$1"
	cat >"$tmp/s"
	mv "$tmp/s" "fuzz/corpus/$1/$(sha1sum "$tmp/s" | cut -c1-16)"
}

# GGUF: a whole tiny model, its header alone (vocabulary-only), and a copy
# whose metadata lies about the block count
models/mkmodel --shape tiny-test --type q4_0 -o "$tmp/tiny.gguf" >/dev/null
seed fuzz_gguf <"$tmp/tiny.gguf"
tests/gguf_patch.py --vocab-only "$tmp/tiny.gguf" "$tmp/vocab.gguf"
seed fuzz_gguf <"$tmp/vocab.gguf"
tests/gguf_patch.py "$tmp/tiny.gguf" "$tmp/lie.gguf" llama.block_count 3
seed fuzz_gguf <"$tmp/lie.gguf"

# header: SmolLM2-135M-Instruct's header (all metadata keys, all 273
# tensor infos, the vocabulary arrays cut short; no weights) from the
# model in the cache, which make test fetches; a copy with 16 vocabulary
# entries, one whose metadata lies about the head count
smollm2=${STRATA_MODEL:-${STRATA_CACHE:-$HOME/.cache/strata}/SmolLM2-135M-Instruct.Q4_1.gguf}
[[ -f $smollm2 ]] || { echo "mkcorpus: $smollm2 missing (make models)" >&2; exit 1; }
fuzz/mkheader.py "$smollm2" "$tmp/h.gguf"
seed fuzz_header <"$tmp/h.gguf"
fuzz/mkheader.py "$smollm2" "$tmp/h16.gguf" 16
seed fuzz_header <"$tmp/h16.gguf"
tests/gguf_patch.py "$tmp/h.gguf" "$tmp/hlie.gguf" llama.attention.head_count 6
seed fuzz_header <"$tmp/hlie.gguf"

# tokenizer: byte 0 = vocabulary (bit 0: Llama SPM), encode (bit 1),
# parse_special (bit 2); else ids
for b in 2 3 6 7; do
	for text in "Hello world" " leading space" "<|im_start|>user<|im_end|>" \
		"<s> [INST] hi [/INST]" $'tabs\tand\nnewlines' "ünïcödé 日本語 🦙" \
		"1234567 + 89 = ?" "   "; do
		printf "\\x$(printf %02x $b)%s" "$text" | seed fuzz_tokenizer
	done
done
for b in 0 1 4 5; do
	python3 -c 'import struct,sys; sys.stdout.buffer.write(bytes([int(sys.argv[1])]) + struct.pack("<8i", 0, 1, 2, 3, 100, 30000, -1, 2**31-1))' "$b" |
		seed fuzz_tokenizer
done

# chat: template NUL role NUL content ...
chatml="{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
printf '%s\0system\0Be brief.\0user\0Hi\0' "$chatml" | seed fuzz_chat
printf '%s\0user\0What is 2+2?\0' chatml | seed fuzz_chat
printf '%s\0user\0Hello\0assistant\0Hi!\0user\0Bye\0' zephyr | seed fuzz_chat

# flags: arguments NUL-separated
for line in "-m x.gguf -p hi -n 4 --temp 0" \
	"-m x.gguf --tier flash --dram-budget 512M --prefetch 2 -p a" \
	"-m x.gguf --kv-tier flash --flash-dir /tmp --kv-block 16 -f p.txt" \
	"-m x.gguf -c 4096 -t 2 --nmu off --top-p 0.9 --min-p 0.05 -s 7" \
	"-m x.gguf --dram-budget 1.5G --tier flash -p x" \
	"-m x.gguf --act f32 --chips 2 --tp allreduce -p x" "--help"; do
	printf '%s\0' $line | seed fuzz_flags
done
du -sh fuzz/corpus/* >&2
