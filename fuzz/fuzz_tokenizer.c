/*
 * fuzz_tokenizer.c - both tokenizers on the real vocabularies: SmolLM2's
 * byte-level BPE ($STRATA_MODEL) and llama.cpp's Llama SentencePiece
 * vocabulary ($STRATA_VOCAB_DIR/ggml-vocab-llama-spm.gguf, which
 * tests/fetch-vocab.sh fetches). Input byte 0 picks the vocabulary (bit 0)
 * and what to do (bit 1: encode the rest as text, with parse_special from
 * bit 2; else decode the rest as little-endian int32 ids, any value).
 * The vocabularies load once; a missing one stops the run (exit 1), so a
 * replay never passes without having tokenized anything.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "models/gguf.h"
#include "models/tokenizer.h"

struct vocab {
	struct gguf_file g;
	struct tokenizer t;
	int loaded;
};

static struct vocab vocabs[2];

static const struct tokenizer *vocab(int which)
{
	struct vocab *v = &vocabs[which];
	char path[4096], err[512];
	const char *env;

	if (v->loaded)
		return &v->t;
	if (which == 0) {
		env = getenv("STRATA_MODEL");
		snprintf(path, sizeof(path), "%s", env ? env : "");
	} else {
		env = getenv("STRATA_VOCAB_DIR");
		snprintf(path, sizeof(path), "%s/ggml-vocab-llama-spm.gguf",
			 env ? env : "");
	}
	if (!env || gguf_open(&v->g, path, err, sizeof(err)) ||
	    tokenizer_init(&v->t, &v->g, err, sizeof(err))) {
		fprintf(stderr, "fuzz_tokenizer: cannot load %s (%s): set "
			"STRATA_MODEL and STRATA_VOCAB_DIR\n", path,
			env ? err : "unset");
		exit(1);
	}
	v->loaded = 1;
	return &v->t;
}

static void encode(const struct tokenizer *t, const char *s, size_t n,
		   bool special)
{
	int32_t *ids = NULL, small[8];
	char piece[256];
	int k = tokenizer_encode_alloc(t, s, n, true, special, &ids);

	for (int i = 0; i < k; i++)
		if (ids[i] < 0 || ids[i] >= t->n_vocab ||
		    tokenizer_piece(t, ids[i], true, piece, sizeof(piece)) < 0)
			abort(); /* an id out of the vocabulary or unprintable */
	/* the bounded call agrees: the count, or -ENOSPC when short */
	int b = tokenizer_encode(t, s, n, true, special, small, 8);
	if (k >= 0 && (k <= 8 ? b != k : b != -ENOSPC))
		abort();
	free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char piece[16];

	if (size < 1)
		return 0;
	const struct tokenizer *t = vocab(data[0] & 1);
	if (data[0] & 2) {
		encode(t, (const char *)data + 1, size - 1, data[0] & 4);
		return 0;
	}
	for (size_t i = 1; i + 4 <= size; i += 4) {
		int32_t id;
		memcpy(&id, data + i, 4);
		/* a small buffer: -ENOSPC paths too */
		tokenizer_piece(t, id, data[0] & 4, piece, sizeof(piece));
	}
	return 0;
}
