#!/usr/bin/env bash
# Install what building and testing Strata needs, only where it is missing
# (`make deps`; `make test` and `make demo` call it first).  Debian packages
# through apt-get (apt-get update runs only when something is missing), and
# the PyPI packages gguf and numpy for the numpy reference (tests/ref_check.py)
# when the python that runs the tests cannot import them.
#   tests/deps.sh [--fuzz]   --fuzz: clang and its OpenMP runtime too
#                            (`make fuzz`: libFuzzer comes with clang)
#   env PYTHON (default python3)
set -euo pipefail

PKGS=(gcc make liburing-dev libopenblas-dev libcmocka-dev libnuma-dev
	libpcre2-dev libjansson-dev pkg-config gnuplot-nox python3 python3-pip unzip
	openmpi-bin libopenmpi-dev iproute2 util-linux)
[[ ${1:-} == --fuzz ]] && PKGS+=(clang libomp-dev)
PYTHON=${PYTHON:-python3}

say() { echo "deps: $*" >&2; }

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	say "installing ${missing[*]}"
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		command -v sudo >/dev/null ||
			{ say "need root (or sudo) to install ${missing[*]}"; exit 1; }
		sudo=(sudo)
	fi
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! "$PYTHON" -c 'import gguf, numpy' 2>/dev/null; then
	say "installing the python packages gguf and numpy for $PYTHON"
	# Debian's python refuses pip installs outside a venv (PEP 668) unless
	# told otherwise; these two packages do not conflict with Debian's.
	"$PYTHON" -m pip install --quiet gguf numpy 2>/dev/null ||
		"$PYTHON" -m pip install --quiet --break-system-packages gguf numpy
	"$PYTHON" -c 'import gguf, numpy' ||
		{ say "gguf/numpy still not importable by $PYTHON"; exit 1; }
fi
