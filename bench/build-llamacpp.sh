#!/usr/bin/env bash
# Build the llama.cpp peer that bench/vs-llamacpp.sh and
# tests/fixtures/record_llamacpp.sh compare against, from the source
# distribution of the PyPI package llama-cpp-python (its vendor/llama.cpp),
# in the cache - never in this tree; none of its code is committed here.
#
#   bench/build-llamacpp.sh            fetch (pip), verify, unpack, build;
#                                      skips each step already done
#   bench/build-llamacpp.sh --print-bin  only print the bin dir; exit 2 with
#                                      a message if it is not built
#
# The last line on stdout is the directory holding llama-bench etc.; all
# progress goes to stderr.  env: STRATA_CACHE (default ~/.cache/strata),
# JOBS (default nproc), LLAMA_ISA: native (default, -DGGML_NATIVE=ON, in
# build/; on a CPU with AMX every other extension it lists, in build-noamx/,
# unless LLAMA_AMX=1, see below) or avx2 (AVX2/FMA/F16C and no AVX-512, the fair peer for
# STRATA_KERNELS=avx2 on an AVX-512 machine, in build-avx2/).
set -euo pipefail

# the pinned sdist (version, sha256) and its fetch: shared with
# tests/fetch-vocab.sh
source "$(dirname "$0")/llamacpp-sdist.sh"
VERSION=$SDIST_VERSION
# llama-cli and llama-server need LLAMA_BUILD_SERVER; llama-completion is
# the plain text-completion tool, llama-debug dumps logits (fixtures).
TARGETS=(llama-bench llama-perplexity llama-tokenize llama-quantize
	llama-completion llama-debug)

cache=${STRATA_CACHE:-$HOME/.cache/strata}
top=$cache/llama_cpp_python-$VERSION
src=$top/vendor/llama.cpp
# ggml's AMX matmul (compiled in by -march=native where the CPU lists AMX)
# crashed llama-bench's prefill with SIGSEGV in ggml_backend_amx_mul_mat on
# a KVM Xeon (family 6 model 167, 2026-12-08): on such a CPU "native" is
# every vector extension /proc/cpuinfo lists, AMX left out, in build-noamx/.
# The kernel granted AMX there (arch_prctl ARCH_REQ_XCOMP_PERM succeeded),
# so the fault is ggml's, not the guest's. LLAMA_AMX=1 keeps -march=native
# (build/) on such a CPU, for a host where that path works.
has() { grep -qw "$1" /proc/cpuinfo 2>/dev/null; }
onoff() { has "$1" && echo ON || echo OFF; }
isa=${LLAMA_ISA:-native}
[[ $isa == native && ${LLAMA_AMX:-0} != 1 ]] && has amx_int8 && isa=noamx
case $isa in
native) bdir=build isa_flags=(-DGGML_NATIVE=ON) ;;
noamx) bdir=build-noamx isa_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=$(onoff avx)
	-DGGML_AVX2=$(onoff avx2) -DGGML_FMA=$(onoff fma) -DGGML_F16C=$(onoff f16c)
	-DGGML_BMI2=$(onoff bmi2) -DGGML_AVX_VNNI=$(onoff avx_vnni)
	-DGGML_AVX512=$(onoff avx512bw) -DGGML_AVX512_VBMI=$(onoff avx512vbmi)
	-DGGML_AVX512_VNNI=$(onoff avx512_vnni) -DGGML_AVX512_BF16=$(onoff avx512_bf16)
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF) ;;
avx2) bdir=build-avx2 isa_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON
	-DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF
	-DGGML_AVX_VNNI=OFF) ;;
*) echo "build-llamacpp: LLAMA_ISA=$isa: native or avx2" >&2; exit 2 ;;
esac
bin=$src/$bdir/bin

say() { echo "build-llamacpp: $*" >&2; }
die() { say "$*"; exit 1; }

built() {
	local t
	for t in "${TARGETS[@]}"; do
		[[ -x $bin/$t ]] || return 1
	done
}

if [[ ${1:-} == --print-bin ]]; then
	built || { say "llama.cpp is not built in $src (run bench/build-llamacpp.sh)"; exit 2; }
	echo "$bin"
	exit 0
elif [[ $# -gt 0 ]]; then
	say "unknown argument '$1'; usage: $0 [--print-bin]"
	exit 2
fi

if built; then
	say "already built: $bin"
	echo "$bin"
	exit 0
fi

for tool in cmake make g++ sha256sum tar; do
	command -v "$tool" >/dev/null || die "'$tool' is missing (apt-get install cmake g++ make)"
done

# 1. the sdist, checked against the hash it was first recorded with
sdist=$(sdist_fetch "$cache") || die "cannot get $SDIST"

# 2. unpack into a temporary directory, then rename: never a half tree
if [[ ! -f $src/CMakeLists.txt ]]; then
	say "unpacking into $top"
	tmp=$(mktemp -d "$cache/.unpack.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	tar -xzf "$sdist" -C "$tmp"
	[[ -f $tmp/llama_cpp_python-$VERSION/vendor/llama.cpp/CMakeLists.txt ]] ||
		die "$SDIST has no vendor/llama.cpp"
	rm -rf "$top"
	mv "$tmp/llama_cpp_python-$VERSION" "$top"
fi

# 3. configure and build only the tools we use
say "configuring (Release, ${isa_flags[*]})"
cmake -S "$src" -B "$src/$bdir" -DCMAKE_BUILD_TYPE=Release "${isa_flags[@]}" \
	-DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
say "building ${TARGETS[*]} (this takes a while on 2 cores)"
cmake --build "$src/$bdir" -j "${JOBS:-$(nproc)}" --target "${TARGETS[@]}" >&2
built || die "build finished but some of ${TARGETS[*]} are missing in $bin"
say "built: $bin"
echo "$bin"
