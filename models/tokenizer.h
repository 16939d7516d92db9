/*
 * tokenizer.h - the two tokenizer kinds the llama-architecture GGUFs use,
 * built from a GGUF file's tokenizer.ggml.* metadata:
 *   "llama": SentencePiece-style. Score-driven bigram merges, byte fallback
 *            (<0xNN> tokens), spaces as U+2581, optional leading space.
 *   "gpt2":  byte-level BPE. Pre-tokenizer split by the regex set that
 *            tokenizer.ggml.pre names (PCRE2), bytes mapped to unicode
 *            code points, merges applied by rank.
 * Both: special/control tokens matched verbatim in the text when
 * parse_special is set, BOS/EOS ids and the file's add_bos flag.
 * Ids and splits follow llama.cpp's tokenizer exactly.
 */
#ifndef STRATA_TOKENIZER_H
#define STRATA_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf_file;

enum tok_kind {
	TOK_SPM = 1,
	TOK_BPE = 2,
};

struct tok_impl; /* private */

struct tokenizer {
	enum tok_kind kind;
	int32_t n_vocab;
	int32_t bos_id, eos_id, eot_id; /* -1 if absent */
	bool add_bos;                   /* prepend BOS when encoding a prompt */
	struct tok_impl *impl;
};

/* Build from the GGUF metadata of g (which must stay open only during the
 * call: everything needed is copied). Returns 0, or -EINVAL with a message
 * in err for a missing/unsupported tokenizer (unknown model or pre-tokenizer
 * type is refused by name), -ENOMEM. */
int tokenizer_init(struct tokenizer *t, const struct gguf_file *g, char *err,
		   size_t errlen);
/* Free; accepts a zeroed or half-built object */
void tokenizer_destroy(struct tokenizer *t);

/* Encode len bytes of text into at most n_max ids. add_bos prepends BOS
 * (if the vocab has one); parse_special matches special-token strings such
 * as "<|im_start|>" in the text. Returns the number of ids, -ENOSPC if
 * more than n_max would be needed, -EINVAL for text that is not valid
 * UTF-8. Thread-safe (the tokenizer is read-only after init). */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len,
		     bool add_bos, bool parse_special, int32_t *out,
		     int32_t n_max);

/* tokenizer_encode into an array it allocates, as long as the text needs:
 * the id count is not bounded by the byte count (SPM byte fallback gives
 * one id per byte, and a 1-byte space can become the 3-byte U+2581 marker
 * before that). Returns the number of ids and sets *out (the caller
 * frees it, also when the count is 0), or -EINVAL (not valid UTF-8),
 * -EOVERFLOW (more than INT32_MAX ids); *out is untouched on failure.
 * Thread-safe. */
int tokenizer_encode_alloc(const struct tokenizer *t, const char *text,
			   size_t len, bool add_bos, bool parse_special,
			   int32_t **out);

/* The bytes token id stands for in output text (U+2581 -> ' ', <0xNN> ->
 * the byte, byte-level BPE unmapped to raw bytes). Control tokens give ""
 * unless render_special. The bytes may be part of a UTF-8 sequence.
 * Returns the number of bytes written (not NUL-terminated), -ENOSPC if
 * buf is too small, -EINVAL for an id out of range. */
int tokenizer_piece(const struct tokenizer *t, int32_t id, bool render_special,
		    char *buf, size_t buflen);

/* Raw token text as stored in the vocabulary (NUL-terminated), NULL if out
 * of range. */
const char *tokenizer_token_text(const struct tokenizer *t, int32_t id);
/* Id of an exact token text, or -1 */
int32_t tokenizer_find(const struct tokenizer *t, const char *text);
/* true for EOS/EOT and other end-of-generation tokens */
bool tokenizer_is_eog(const struct tokenizer *t, int32_t id);

#endif
