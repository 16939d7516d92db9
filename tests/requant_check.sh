#!/usr/bin/env bash
# Requantize the real SmolLM2 model into every supported weight type with
# models/mkmodel --requant (through f32, reference quantizers) and check
# each still decodes coherent text: greedy continuation of two prompts must
# name the expected fact, as the original Q4_1 model does.
#   tests/requant_check.sh            env STRATA_MODEL (SmolLM2 GGUF)
# SmolLM2's rows are 576 long, not a multiple of 256: for the K-types only
# ffn_down (1536) takes the K format and the rest falls back to q8_0, as
# llama.cpp's quantizer does; every layer still runs the K kernels.
set -uo pipefail
cd "$(dirname "$0")/.."

model=${STRATA_MODEL:-}
if [[ -z $model || ! -r $model ]]; then
	echo "SKIP: STRATA_MODEL (SmolLM2 GGUF) not set or not readable"
	exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/strata-requant.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# prompt -> a word greedy decoding must produce
prompts=("The capital of France is" "Water is made of hydrogen and")
expect=("Paris" "oxygen")
fail=0
for type in f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k; do
	out=$dir/smollm2-$type.gguf
	if ! models/mkmodel --requant "$model" --type "$type" -o "$out" 2>"$dir/err"; then
		echo "FAIL requant $type: $(cat "$dir/err")"
		fail=1
		continue
	fi
	line="$type:"
	for i in "${!prompts[@]}"; do
		text=$(./decode -m "$out" -p "${prompts[$i]}" -n 16 --temp 0 -t 2 2>"$dir/err")
		if [[ $? -ne 0 || $text != *"${expect[$i]}"* ]]; then
			echo "FAIL $type: '${prompts[$i]}' -> '$text' (want '${expect[$i]}')"
			fail=1
		fi
		line+=" [${prompts[$i]}]${text//$'\n'/ }"
	done
	echo "${line:0:160}"
	rm -f "$out"
done
exit $fail
