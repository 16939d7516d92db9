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
