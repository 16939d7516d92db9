# shellcheck shell=bash
# bench/llamacpp-sdist.sh - sourced (not run) by bench/build-llamacpp.sh and
# tests/fetch-vocab.sh: the one pinned source distribution of the PyPI
# package llama-cpp-python that the llama.cpp peer and the tokenizer test
# vectors come from, and the code that fetches and checks it.
#
# sdist_fetch CACHE: prints the path of $CACHE/dl/$SDIST once its sha256 is
#   the pinned one; downloads it with pip first when it is missing. The
#   download goes to a temporary directory and is renamed into place only
#   after the hash matched, under a lock on $CACHE/dl, so a concurrent run
#   never sees half a file. Returns 1 with a message on stderr on failure.

SDIST_VERSION=0.3.36
SDIST=llama_cpp_python-$SDIST_VERSION.tar.gz
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

sdist_fetch() {
	local dl=$1/dl got tmp
	mkdir -p "$dl" || return 1
	(
		flock 9 || exit 1
		if [[ ! -f $dl/$SDIST ]]; then
			echo "sdist: downloading $SDIST with pip" >&2
			tmp=$(mktemp -d "$dl/.pip.XXXXXX") || exit 1
			trap 'rm -rf "$tmp"' EXIT
			python3 -m pip download --no-deps --no-binary :all: \
				"llama-cpp-python==$SDIST_VERSION" -d "$tmp" >&2 || {
				echo "sdist: pip download failed (network?); put $SDIST in $dl by hand" >&2
				exit 1
			}
			got=$(sha256sum "$tmp/$SDIST" | cut -d' ' -f1)
			[[ $got == "$SDIST_SHA256" ]] || {
				echo "sdist: downloaded $SDIST has sha256 $got, expected $SDIST_SHA256" >&2
				exit 1
			}
			mv "$tmp/$SDIST" "$dl/$SDIST" || exit 1
		fi
	) 9>"$dl/.lock" || return 1
	got=$(sha256sum "$dl/$SDIST" | cut -d' ' -f1)
	if [[ $got != "$SDIST_SHA256" ]]; then
		echo "sdist: $dl/$SDIST: sha256 $got, expected $SDIST_SHA256 (remove it and retry)" >&2
		return 1
	fi
	echo "$dl/$SDIST"
}
