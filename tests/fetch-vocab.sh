#!/usr/bin/env bash
# tests/fetch-vocab.sh - make llama.cpp's vocabulary test files (the
# ggml-vocab-*.gguf with their .inp/.out vectors that test_tokenizer checks
# against) present in the cache, and print the directory that holds them.
#
# They come from the same pinned, sha256-checked llama-cpp-python sdist as
# the llama.cpp peer (bench/llamacpp-sdist.sh). Only those files are
# unpacked, into $STRATA_CACHE/llama-vocab-VERSION: extracted into a
# temporary directory and renamed into place, so a concurrent run (or
# bench/build-llamacpp.sh unpacking the whole tree beside it) never sees
# half a directory. A second run finds the directory and does nothing.
# env: STRATA_CACHE (default ~/.cache/strata). Exits 1 with a message when
# the sdist cannot be had.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/bench/llamacpp-sdist.sh"

cache=${STRATA_CACHE:-$HOME/.cache/strata}
dir=$cache/llama-vocab-$SDIST_VERSION
inner=llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp/models

if [[ ! -f $dir/.complete ]]; then
	sdist=$(sdist_fetch "$cache") || exit 1
	echo "fetch-vocab: unpacking the vocabulary files into $dir" >&2
	tmp=$(mktemp -d "$cache/.vocab.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	tar -xzf "$sdist" -C "$tmp" --wildcards "$inner/ggml-vocab-*"
	n=$(find "$tmp/$inner" -name 'ggml-vocab-*.gguf' | wc -l)
	if ((n == 0)); then
		echo "fetch-vocab: $sdist has no $inner/ggml-vocab-*.gguf" >&2
		exit 1
	fi
	: >"$tmp/$inner/.complete"
	# -T: fail rather than move into a directory another run just made
	mv -T "$tmp/$inner" "$dir" 2>/dev/null || [[ -f $dir/.complete ]] || {
		echo "fetch-vocab: cannot rename into $dir" >&2
		exit 1
	}
fi
echo "$dir"
