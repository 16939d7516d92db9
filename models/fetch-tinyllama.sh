#!/usr/bin/env bash
# Download TinyLlama-1.1B-Chat-v1.0 as GGUF (TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF
# on Hugging Face) into the cache.  For users with network access: the
# project's own machines cannot reach Hugging Face, which is why benchmarks
# there use shape-identical synthetic files from models/mkmodel instead.
#
#   models/fetch-tinyllama.sh [QUANT]     QUANT: Q4_K_M (default), Q4_0,
#                                          Q8_0, Q5_K_M, Q6_K, Q2_K, ...
# prints the .gguf path on stdout.  Idempotent and atomic (download to a
# temporary file, verify, rename).  env: STRATA_CACHE (default
# ~/.cache/strata), HF_ENDPOINT (default https://huggingface.co), HF_REVISION
# (default main).
#
# Checksums: Hugging Face publishes each LFS file's sha256 on its page.  Only
# the Q4_K_M one is recorded here (668788096 bytes,
# 9fecc3b3...d2776a0, as listed by several independent projects and by the
# x-linked-etag Hugging Face returns for the file); other quants are
# downloaded unverified and their sha256 is printed for you to compare with
# the file page.
set -euo pipefail

quant=${1:-Q4_K_M}
[[ $quant =~ ^[A-Za-z0-9_]+$ ]] || { echo "fetch-tinyllama: bad quant '$quant'" >&2; exit 2; }
repo=TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF
file=tinyllama-1.1b-chat-v1.0.$quant.gguf
url=${HF_ENDPOINT:-https://huggingface.co}/$repo/resolve/${HF_REVISION:-main}/$file

declare -A SHA256=(
	[Q4_K_M]=9fecc3b3cd76bba89d504f29b616eedf7da85b96540e490ca5824d3f7d2776a0
)
want=${SHA256[$quant]:-}

cache=${STRATA_CACHE:-$HOME/.cache/strata}
out=$cache/$file

say() { echo "fetch-tinyllama: $*" >&2; }
die() { say "$*"; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f $out ]]; then
	if [[ -n $want && $(sha "$out") != "$want" ]]; then
		die "$out exists but its sha256 is wrong; remove it and rerun"
	fi
	echo "$out"
	exit 0
fi

command -v curl >/dev/null || die "curl is not installed (apt-get install curl)"
mkdir -p "$cache"
tmp=$(mktemp "$cache/.tinyllama.XXXXXX")
trap 'rm -f "$tmp"' EXIT

say "downloading $url"
if ! curl -fL --retry 3 --connect-timeout 20 -o "$tmp" "$url"; then
	die "download failed: $url
  This needs network access to Hugging Face (the project's build machines
  have none).  Check the quant name on https://huggingface.co/$repo, or
  download $file by hand and place it at $out"
fi
[[ $(head -c 4 "$tmp") == GGUF ]] || die "$url did not return a GGUF file"

got=$(sha "$tmp")
if [[ -n $want ]]; then
	[[ $got == "$want" ]] || die "sha256 mismatch for $file: got $got, expected $want"
	say "sha256 verified: $got"
else
	say "sha256 $got - UNVERIFIED (no published hash recorded here for $quant;"
	say "compare it with https://huggingface.co/$repo/blob/main/$file)"
fi
chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
say "installed $out"
echo "$out"
