/*
 * tokenizer.c - SentencePiece-style ("llama") and GPT-2 byte-level BPE
 * ("gpt2") tokenizers built from a GGUF's tokenizer.ggml.* metadata.
 *
 * The contract is llama.cpp's token ids (llama_tokenize with the same
 * add_special/parse_special), so the behaviour below follows its vocab
 * loader and tokenizer sessions, quirks included; each quirk is named where
 * it is reproduced. Checked against llama.cpp's ggml-vocab-*.gguf test
 * vectors and a recorded SmolLM2 fixture (tests/test_tokenizer.c).
 *
 * Layout: one string pool holds every token text; an open-addressing hash
 * table maps text -> id, a second one maps a merge "left right" -> rank.
 * Encoding is read-only on the tokenizer and keeps its working arrays in a
 * per-call struct scratch, so concurrent encodes are safe.
 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "models/tokenizer.h"

#include <ctype.h>
#include <errno.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gguf.h"
#include "models/util.h"

/* Token attributes: llama.cpp's LLAMA_TOKEN_ATTR_* subset, plus TA_EOG. */
enum {
	TA_UNDEFINED = 0,
	TA_UNKNOWN = 1 << 0,
	TA_UNUSED = 1 << 1,
	TA_NORMAL = 1 << 2,
	TA_CONTROL = 1 << 3,
	TA_USER_DEFINED = 1 << 4,
	TA_BYTE = 1 << 5,
	TA_LSTRIP = 1 << 6, /* strip whitespace left of the special token */
	TA_RSTRIP = 1 << 7, /* ... and right of it */
	TA_EOG = 1 << 8,
};

/* GGUF tokenizer.ggml.token_type values */
enum {
	TT_NORMAL = 1,
	TT_UNKNOWN = 2,
	TT_CONTROL = 3,
	TT_USER_DEFINED = 4,
	TT_UNUSED = 5,
	TT_BYTE = 6,
};

#define MAX_RE 5

/* ------------------------------------------------------------------ */
/* String -> int32 hash table (open addressing, linear probing)        */
/* ------------------------------------------------------------------ */

struct strtab_slot {
	uint32_t hash;
	int32_t val; /* -1: empty */
	uint32_t off; /* key bytes at pool + off */
	uint32_t len;
};

struct strtab {
	struct strtab_slot *slots;
	uint32_t mask; /* n_slots - 1 */
	const char *pool;
};

static uint32_t fnv1a(uint32_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

/* murmur3 finaliser: FNV's low bits alone probe poorly */
static uint32_t fmix32(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

/* hash of a, or of a + " " + b when b is given (a merge key) */
static uint32_t key_hash(const char *a, size_t la, const char *b, size_t lb)
{
	uint32_t h = fnv1a(2166136261u, a, la);

	if (b) {
		h = fnv1a(h, " ", 1);
		h = fnv1a(h, b, lb);
	}
	return fmix32(h);
}

static int strtab_init(struct strtab *t, size_t n_keys, const char *pool)
{
	size_t n = 16;

	while (n < n_keys + n_keys / 2 + 1) /* load factor <= 2/3 */
		n <<= 1;
	t->slots = malloc(n * sizeof(*t->slots));
	if (!t->slots)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		t->slots[i].val = -1;
	t->mask = (uint32_t)(n - 1);
	t->pool = pool;
	return 0;
}

static bool slot_eq(const struct strtab *t, const struct strtab_slot *s,
		    uint32_t h, const char *a, size_t la, const char *b,
		    size_t lb)
{
	const char *k = t->pool + s->off;

	if (s->hash != h)
		return false;
	if (!b)
		return s->len == la && !memcmp(k, a, la);
	return s->len == la + 1 + lb && !memcmp(k, a, la) && k[la] == ' ' &&
	       !memcmp(k + la + 1, b, lb);
}

/* Insert pool[off, off+len) -> val. An existing key is overwritten only if
 * replace (token_to_id[] keeps the last id, bpe_ranks.emplace the first). */
static void strtab_put(struct strtab *t, uint32_t off, uint32_t len,
		       int32_t val, bool replace)
{
	const char *k = t->pool + off;
	uint32_t h = key_hash(k, len, NULL, 0);

	for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
		struct strtab_slot *s = &t->slots[i];

		if (s->val < 0) {
			*s = (struct strtab_slot){h, val, off, len};
			return;
		}
		if (slot_eq(t, s, h, k, len, NULL, 0)) {
			if (replace)
				s->val = val;
			return;
		}
	}
}

/* value for key a (b NULL) or a + " " + b; -1 if absent */
static int32_t strtab_get(const struct strtab *t, const char *a, size_t la,
			  const char *b, size_t lb)
{
	uint32_t h;

	if (!t->slots)
		return -1;
	h = key_hash(a, la, b, lb);
	for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
		const struct strtab_slot *s = &t->slots[i];

		if (s->val < 0)
			return -1;
		if (slot_eq(t, s, h, a, la, b, lb))
			return s->val;
	}
}

/* ------------------------------------------------------------------ */
/* UTF-8                                                               */
/* ------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at s (n bytes left), or 0 if
 * it is not one (overlong, surrogate, > U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c = s[0];
	size_t len;
	uint32_t min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if ((c & 0xe0) == 0xc0) {
		len = 2, min = 0x80, c &= 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3, min = 0x800, c &= 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4, min = 0x10000, c &= 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

static bool utf8_valid(const char *s, size_t n)
{
	uint32_t cp;

	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq((const unsigned char *)s + i, n - i, &cp);

		if (!l)
			return false;
		i += l;
	}
	return true;
}

/* llama.cpp's unicode_len_utf8: sequence length from the lead byte only */
static size_t utf8_lead_len(char c)
{
	static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1,
					   1, 1, 1, 1, 2, 2, 3, 4};
	return lookup[(uint8_t)c >> 4];
}

static size_t utf8_put(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* ------------------------------------------------------------------ */
/* Pre-tokenizers (gpt2 kind)                                          */
/* ------------------------------------------------------------------ */

/*
 * llama.cpp splits with hand-written matchers for the GPT-2, Llama-3 and
 * Qwen2 expressions and std::regex over category-collapsed text for the
 * rest; both use its own Unicode tables. Here every expression runs in
 * PCRE2 (UTF + UCP). \s is spelled out as llama.cpp's whitespace set (the
 * Unicode White_Space property: it includes U+0085, excludes U+180E and
 * U+200B) so it cannot drift with PCRE2's notion of \s. Each expression
 * refines the pieces the previous one produced, and the text between
 * matches is a piece of its own (unicode_regex_split).
 */
#define WS "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}" \
	   "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define RS "[" WS "]"                   /* \s */
#define RNS "[^" WS "]"                 /* \S */
#define ROTHER "[^" WS "\\p{L}\\p{N}]"  /* [^\s\p{L}\p{N}] */
#define RCONTR "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|
 *        \s+(?!\S)|\s+ */
#define RX_GPT2                                                          \
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?" ROTHER "+|" RS \
	"+(?!" RNS ")|" RS "+"
/* Llama-3 / Qwen2: contractions in either case, a letter run with one
 * optional non-letter/digit/newline prefix, digits (3 or 1 at a time),
 * punctuation runs taking trailing newlines, newline runs, whitespace. */
#define RX_LLAMA3_LIKE(DIGITS)                                            \
	RCONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" DIGITS "| ?" ROTHER \
	       "+[\\r\\n]*|" RS "*[\\r\\n]+|" RS "+(?!" RNS ")|" RS "+"

struct pre_def {
	const char *names; /* tokenizer.ggml.pre values, '|'-separated */
	const char *re[MAX_RE];
	bool ignore_merges; /* a word that is a whole token skips merging */
};

static const struct pre_def pre_defs[] = {
	{"default",
	 {"[\\p{P}\\$\\+<=>\\^~\\|]+", RX_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
	 false},
	{"gpt-2|phi-2|mpt|olmo|jais", {RX_GPT2}, false},
	{"llama3|llama-v3|llama-bpe|falcon3", {RX_LLAMA3_LIKE("{1,3}")}, true},
	{"dbrx|smaug-bpe", {RX_LLAMA3_LIKE("{1,3}")}, false},
	{"qwen2|deepseek-r1-qwen|stablelm2", {RX_LLAMA3_LIKE("")}, false},
	{"starcoder|refact|command-r|smollm|codeshell", {"\\p{N}", RX_GPT2},
	 false},
	{"falcon",
	 {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RX_GPT2, "[0-9][0-9][0-9]"},
	 false},
	{"deepseek-coder",
	 {"[\\r\\n]", RS "?\\p{L}+", RS "?\\p{P}+",
	  "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
	  "\\p{N}"},
	 false},
};

static bool name_in_list(const char *list, const char *name, size_t len)
{
	for (const char *p = list; *p;) {
		const char *e = strchr(p, '|');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n == len && !memcmp(p, name, len))
			return true;
		p += n + (e != NULL);
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Private state                                                       */
/* ------------------------------------------------------------------ */

struct tok_impl {
	/* vocabulary: texts in one pool, NUL-terminated */
	char *pool;
	uint32_t *text_off; /* [n_vocab] */
	uint32_t *text_len; /* [n_vocab] */
	float *scores;      /* [n_vocab] */
	uint16_t *attr;     /* [n_vocab] TA_* */
	struct strtab vocab; /* text -> id */
	int32_t unk_id;
	/* SPM: id for each byte (<0xNN>, else the raw byte); BPE: id of the
	 * one-byte string, which the merge fallback looks up */
	int32_t byte_tok[256];
	bool add_space_prefix;

	/* special-token texts, longest first: matched before tokenizing */
	int32_t *special;
	int32_t n_special;

	/* BPE */
	char *merge_pool;
	struct strtab merges; /* "left right" -> rank */
	bool ignore_merges;
	uint8_t enc_len[256];  /* GPT-2 byte -> code point, as UTF-8 */
	char enc[256][2];
	int16_t dec[324];      /* code point -> byte; -1 if none */
	pcre2_code *re[MAX_RE];
	int n_re;
};

static const char *tok_text(const struct tok_impl *v, int32_t id,
			    uint32_t *len)
{
	*len = v->text_len[id];
	return v->pool + v->text_off[id];
}

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Init                                                                */
/* ------------------------------------------------------------------ */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves,
 * the other 68 to U+0100.. in byte order. */
static void init_byte_map(struct tok_impl *v)
{
	int n = 0;

	memset(v->dec, 0xff, sizeof(v->dec));
	for (int b = 0; b < 256; b++) {
		bool keep = (b >= 0x21 && b <= 0x7e) ||
			    (b >= 0xa1 && b <= 0xac) || b >= 0xae;
		uint32_t cp = keep ? (uint32_t)b : 256u + (uint32_t)n++;

		v->enc_len[b] = (uint8_t)utf8_put(v->enc[b], cp);
		v->dec[cp] = (int16_t)b;
	}
}

/* Copy token texts, scores and types; build the text -> id table. */
static int load_vocab(struct tokenizer *t, struct tok_impl *v,
		      const struct gguf_file *g, char *err, size_t errlen)
{
	const struct gguf_str *toks;
	const void *scores = NULL, *types = NULL;
	uint64_t n, n_sc = 0, n_ty = 0;
	enum gguf_vtype sc_type = GGUF_T_FLOAT32;
	size_t bytes = 0;
	char empty[32];
	int rc;

	rc = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_T_STRING,
			  (const void **)&toks, &n);
	if (rc)
		return fail(err, errlen, -EINVAL,
			    "%s: tokenizer.ggml.tokens is %s", g->path,
			    rc == -ENOENT ? "missing" : "not a string array");
	if (n == 0 || n > INT32_MAX)
		return fail(err, errlen, -EINVAL,
			    "%s: tokenizer.ggml.tokens has %llu entries",
			    g->path, (unsigned long long)n);
	if (gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_T_FLOAT32, &scores,
			 &n_sc) &&
	    !gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_T_INT32, &scores,
			  &n_sc))
		sc_type = GGUF_T_INT32;
	if (scores && n_sc < n)
		return fail(err, errlen, -EINVAL,
			    "%s: %llu scores for %llu tokens", g->path,
			    (unsigned long long)n_sc, (unsigned long long)n);
	rc = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_T_INT32, &types,
			  &n_ty);
	if (rc == -EINVAL || (types && n_ty < n))
		return fail(err, errlen, -EINVAL,
			    "%s: tokenizer.ggml.token_type is not an int32 "
			    "array of %llu entries", g->path,
			    (unsigned long long)n);

	/* empty texts become "[EMPTY_<id>]" as in llama.cpp */
	for (uint64_t i = 0; i < n; i++)
		bytes += (toks[i].len ? toks[i].len : 32) + 1;
	if (bytes > UINT32_MAX)
		return fail(err, errlen, -EINVAL, "%s: vocabulary too large",
			    g->path);
	t->n_vocab = (int32_t)n;
	v->pool = malloc(bytes);
	v->text_off = malloc(n * sizeof(*v->text_off));
	v->text_len = malloc(n * sizeof(*v->text_len));
	v->scores = malloc(n * sizeof(*v->scores));
	v->attr = malloc(n * sizeof(*v->attr));
	if (!v->pool || !v->text_off || !v->text_len || !v->scores ||
	    !v->attr || strtab_init(&v->vocab, n, v->pool))
		return -ENOMEM;

	size_t off = 0;
	for (uint64_t i = 0; i < n; i++) {
		const char *s = toks[i].s;
		size_t len = toks[i].len;

		if (!len) {
			len = (size_t)snprintf(empty, sizeof(empty),
					       "[EMPTY_%llu]",
					       (unsigned long long)i);
			s = empty;
		}
		memcpy(v->pool + off, s, len);
		v->pool[off + len] = '\0';
		v->text_off[i] = (uint32_t)off;
		v->text_len[i] = (uint32_t)len;
		strtab_put(&v->vocab, (uint32_t)off, (uint32_t)len,
			   (int32_t)i, true);
		off += len + 1;

		if (!scores)
			v->scores[i] = 0.0f;
		else if (sc_type == GGUF_T_FLOAT32)
			memcpy(&v->scores[i], (const char *)scores + 4 * i, 4);
		else {
			int32_t s32;
			memcpy(&s32, (const char *)scores + 4 * i, 4);
			v->scores[i] = (float)s32;
		}

		int32_t ty = TT_NORMAL;
		if (types)
			memcpy(&ty, (const char *)types + 4 * i, 4);
		switch (ty) {
		case TT_NORMAL: v->attr[i] = TA_NORMAL; break;
		case TT_UNKNOWN: v->attr[i] = TA_UNKNOWN; break;
		case TT_CONTROL: v->attr[i] = TA_CONTROL; break;
		case TT_USER_DEFINED: v->attr[i] = TA_USER_DEFINED; break;
		case TT_UNUSED: v->attr[i] = TA_UNUSED; break;
		case TT_BYTE: v->attr[i] = TA_BYTE; break;
		default: v->attr[i] = TA_UNDEFINED; break;
		}
	}
	return 0;
}

/* Merges "left right" -> rank; the first of duplicate pairs wins. */
static int load_merges(struct tok_impl *v, const struct gguf_file *g,
		       char *err, size_t errlen)
{
	const struct gguf_str *m;
	uint64_t n;
	size_t bytes = 0, off = 0;
	int rc;

	rc = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_T_STRING,
			  (const void **)&m, &n);
	if (rc)
		return fail(err, errlen, -EINVAL,
			    "%s: tokenizer.ggml.merges is %s", g->path,
			    rc == -ENOENT ? "missing" : "not a string array");
	if (n > INT32_MAX)
		return fail(err, errlen, -EINVAL, "%s: too many merges",
			    g->path);
	for (uint64_t i = 0; i < n; i++)
		bytes += m[i].len + 1;
	if (bytes > UINT32_MAX)
		return fail(err, errlen, -EINVAL, "%s: merges too large",
			    g->path);
	v->merge_pool = malloc(bytes ? bytes : 1);
	if (!v->merge_pool || strtab_init(&v->merges, n, v->merge_pool))
		return -ENOMEM;
	for (uint64_t i = 0; i < n; i++) {
		/* llama.cpp splits at the first space after position 0; a
		 * merge without one becomes ("", "") and never matches */
		if (m[i].len < 2 || !memchr(m[i].s + 1, ' ', m[i].len - 1))
			continue;
		memcpy(v->merge_pool + off, m[i].s, m[i].len);
		v->merge_pool[off + m[i].len] = '\0';
		strtab_put(&v->merges, (uint32_t)off, (uint32_t)m[i].len,
			   (int32_t)i, false);
		off += m[i].len + 1;
	}
	return 0;
}

static int setup_pre(struct tok_impl *v, const struct gguf_file *g,
		     char *err, size_t errlen)
{
	const struct gguf_str *pre = NULL;
	const struct pre_def *d = NULL;
	const char *name = "default";
	size_t name_len = 7;

	if (!gguf_get_str(g, "tokenizer.ggml.pre", &pre)) {
		name = pre->s;
		name_len = pre->len;
	}
	for (size_t i = 0; i < sizeof(pre_defs) / sizeof(pre_defs[0]); i++)
		if (name_in_list(pre_defs[i].names, name, name_len))
			d = &pre_defs[i];
	if (!d)
		return fail(err, errlen, -EINVAL,
			    "%s: unsupported pre-tokenizer type '%.*s' "
			    "(tokenizer.ggml.pre)", g->path, (int)name_len,
			    name);
	v->ignore_merges = d->ignore_merges;
	for (int i = 0; i < MAX_RE && d->re[i]; i++) {
		int ecode;
		PCRE2_SIZE eoff;

		v->re[i] = pcre2_compile((PCRE2_SPTR)d->re[i],
					 PCRE2_ZERO_TERMINATED,
					 PCRE2_UTF | PCRE2_UCP |
						 PCRE2_DOLLAR_ENDONLY,
					 &ecode, &eoff, NULL);
		if (!v->re[i]) {
			PCRE2_UCHAR msg[128];

			pcre2_get_error_message(ecode, msg, sizeof(msg));
			return fail(err, errlen, -EINVAL,
				    "pre-tokenizer '%.*s' regex %d at %zu: %s",
				    (int)name_len, name, i, (size_t)eoff,
				    (const char *)msg);
		}
		/* JIT is an optimisation: without it pcre2_match interprets */
		pcre2_jit_compile(v->re[i], PCRE2_JIT_COMPLETE);
		v->n_re = i + 1;
	}
	return 0;
}

/* id from key (if present and in range), else the default (if in range) */
static int32_t special_id(const struct gguf_file *g, const char *key,
			  int32_t def, int32_t n_vocab)
{
	uint32_t u;

	if (def >= n_vocab)
		def = -1;
	if (!gguf_get_u32(g, key, &u) && u < (uint32_t)n_vocab)
		return (int32_t)u;
	return def;
}

/* first id among texts (in list order), or -1 */
static int32_t find_any(const struct tokenizer *t,
			const char *const *texts)
{
	for (; *texts; texts++) {
		int32_t id = tokenizer_find(t, *texts);

		if (id >= 0)
			return id;
	}
	return -1;
}

#define FW "\xef\xbd\x9c" /* U+FF5C FULLWIDTH VERTICAL LINE */
#define SP "\xe2\x96\x81" /* U+2581 */

/* Texts llama.cpp takes for EOT when no eot_token_id is stored. It keeps
 * whichever its hash map yields first; we take list order. */
static const char *const eot_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
	"<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
	"<" FW "end" SP "of" SP "sentence" FW ">", "<end_of_utterance>", NULL};
static const char *const eom_texts[] = {"<|eom_id|>", NULL};
/* FIM tokens: found only to mark them control; pad/rep/sep end generation */
static const char *const fim_pre_texts[] = {
	"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
	"<" FW "fim" SP "begin" FW ">", "<PRE>", SP "<PRE>",
	"<|code_prefix|>", "<|prefix|>", NULL};
static const char *const fim_suf_texts[] = {
	"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
	"<" FW "fim" SP "hole" FW ">", "<SUF>", SP "<SUF>",
	"<|code_suffix|>", "<|suffix|>", NULL};
static const char *const fim_mid_texts[] = {
	"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
	"<" FW "fim" SP "end" FW ">", "<MID>", SP "<MID>",
	"<|code_middle|>", "<|middle|>", NULL};
static const char *const fim_pad_texts[] = {
	"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
static const char *const fim_rep_texts[] = {
	"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
	NULL};
static const char *const fim_sep_texts[] = {"<|file_sep|>", NULL};
/* every token with one of these texts ends generation */
static const char *const eog_texts[] = {
	"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
	"<|flush|>", "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>",
	"<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
	"<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
	"<" FW "end" SP "of" SP "sentence" FW ">", NULL};

/* Special ids, the control flag llama.cpp forces on tokens it recognises
 * by text, and the end-of-generation set. */
static void setup_specials(struct tokenizer *t, struct tok_impl *v,
			   const struct gguf_file *g, bool spm)
{
	struct {
		const char *key;
		const char *const *texts;
		int32_t id;
	} auto_ids[] = {
		{"tokenizer.ggml.eot_token_id", eot_texts, -1},
		{"tokenizer.ggml.eom_token_id", eom_texts, -1},
		{"tokenizer.ggml.fim_pre_token_id", fim_pre_texts, -1},
		{"tokenizer.ggml.fim_suf_token_id", fim_suf_texts, -1},
		{"tokenizer.ggml.fim_mid_token_id", fim_mid_texts, -1},
		{"tokenizer.ggml.fim_pad_token_id", fim_pad_texts, -1},
		{"tokenizer.ggml.fim_rep_token_id", fim_rep_texts, -1},
		{"tokenizer.ggml.fim_sep_token_id", fim_sep_texts, -1},
	};
	int32_t n = t->n_vocab;

	t->bos_id = special_id(g, "tokenizer.ggml.bos_token_id", spm ? 1 : 11,
			       n);
	t->eos_id = special_id(g, "tokenizer.ggml.eos_token_id", spm ? 2 : 11,
			       n);
	v->unk_id = special_id(g, "tokenizer.ggml.unknown_token_id",
			       spm ? 0 : -1, n);
	for (size_t i = 0; i < sizeof(auto_ids) / sizeof(auto_ids[0]); i++) {
		int32_t id = special_id(g, auto_ids[i].key, -1, n);

		if (id < 0) {
			id = find_any(t, auto_ids[i].texts);
			if (id >= 0)
				v->attr[id] |= TA_CONTROL;
		}
		auto_ids[i].id = id;
	}
	t->eot_id = auto_ids[0].id;

	for (const char *const *e = eog_texts; *e; e++) {
		int32_t id = tokenizer_find(t, *e);

		if (id >= 0)
			v->attr[id] |= TA_EOG | TA_CONTROL;
	}
	/* eos, eot, eom, fim pad/rep/sep */
	int32_t eog[] = {t->eos_id, t->eot_id, auto_ids[1].id, auto_ids[5].id,
			 auto_ids[6].id, auto_ids[7].id};
	for (size_t i = 0; i < sizeof(eog) / sizeof(eog[0]); i++)
		if (eog[i] >= 0)
			v->attr[eog[i]] |= TA_EOG;
}

/* Phi-3 GGUFs: llama.cpp strips whitespace right of special tokens,
 * chosen by general.name. */
static void setup_strip_attrs(const struct tokenizer *t, struct tok_impl *v,
			      const struct gguf_file *g)
{
	const struct gguf_str *name;
	char low[256];
	size_t n;

	if (gguf_get_str(g, "general.name", &name))
		return;
	n = name->len < sizeof(low) - 1 ? name->len : sizeof(low) - 1;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)name->s[i]);
	low[n] = '\0';
	if (!strstr(low, "phi-3") && !strstr(low, "phi3"))
		return;
	for (int32_t i = 0; i < v->n_special; i++)
		v->attr[v->special[i]] |= TA_RSTRIP;
	int32_t id = tokenizer_find(t, "</s>");
	if (id >= 0)
		v->attr[id] |= TA_RSTRIP;
	static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
	for (size_t i = 0; i < 3; i++)
		if ((id = tokenizer_find(t, keep[i])) >= 0)
			v->attr[id] &= (uint16_t)~TA_RSTRIP;
}

/* longer text first, then lower id */
static int cmp_special(const void *a, const void *b, void *ctx)
{
	const struct tok_impl *v = ctx;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	if (v->text_len[x] != v->text_len[y])
		return v->text_len[x] > v->text_len[y] ? -1 : 1;
	return (x > y) - (x < y);
}

/* Tokens matched verbatim before tokenizing: control, user-defined and
 * unknown, longest first (ties by id; llama.cpp's sort is unstable). */
static int setup_special_cache(struct tokenizer *t, struct tok_impl *v)
{
	const uint16_t want = TA_CONTROL | TA_USER_DEFINED | TA_UNKNOWN;
	int32_t n = 0;

	for (int32_t i = 0; i < t->n_vocab; i++)
		n += !!(v->attr[i] & want);
	v->special = malloc((n ? (size_t)n : 1) * sizeof(*v->special));
	if (!v->special)
		return -ENOMEM;
	n = 0;
	for (int32_t i = 0; i < t->n_vocab; i++)
		if (v->attr[i] & want)
			v->special[n++] = i;
	v->n_special = n;
	qsort_r(v->special, (size_t)n, sizeof(*v->special), cmp_special, v);
	return 0;
}

static void setup_byte_tokens(struct tokenizer *t, struct tok_impl *v,
			      bool spm)
{
	for (int b = 0; b < 256; b++) {
		char s[8];

		v->byte_tok[b] = -1;
		if (spm) {
			snprintf(s, sizeof(s), "<0x%02X>", b);
			v->byte_tok[b] = tokenizer_find(t, s);
			if (v->byte_tok[b] >= 0)
				continue;
		}
		s[0] = (char)b;
		v->byte_tok[b] = strtab_get(&v->vocab, s, 1, NULL, 0);
	}
}

int tokenizer_init(struct tokenizer *t, const struct gguf_file *g, char *err,
		   size_t errlen)
{
	const struct gguf_str *model;
	struct tok_impl *v;
	bool spm, flag;
	int rc;

	memset(t, 0, sizeof(*t));
	t->bos_id = t->eos_id = t->eot_id = -1;
	if (gguf_get_str(g, "tokenizer.ggml.model", &model))
		return fail(err, errlen, -EINVAL,
			    "%s: no tokenizer (tokenizer.ggml.model missing)",
			    g->path);
	if (!strcmp(model->s, "llama"))
		spm = true;
	else if (!strcmp(model->s, "gpt2"))
		spm = false;
	else
		return fail(err, errlen, -EINVAL,
			    "%s: unsupported tokenizer model '%s' (want "
			    "'llama' or 'gpt2')", g->path, model->s);

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->impl = v;
	t->kind = spm ? TOK_SPM : TOK_BPE;
	rc = load_vocab(t, v, g, err, errlen);
	if (rc)
		goto err_free;
	if (!spm) {
		init_byte_map(v);
		rc = load_merges(v, g, err, errlen);
		if (!rc)
			rc = setup_pre(v, g, err, errlen);
		if (rc)
			goto err_free;
	}

	v->add_space_prefix = spm;
	if (!gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &flag))
		v->add_space_prefix = flag;
	t->add_bos = spm;
	if (!gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &flag))
		t->add_bos = flag;

	setup_specials(t, v, g, spm);
	setup_byte_tokens(t, v, spm);
	rc = setup_special_cache(t, v);
	if (rc)
		goto err_free;
	setup_strip_attrs(t, v, g);
	return 0;

err_free:
	if (rc == -ENOMEM)
		fail(err, errlen, rc, "%s: out of memory building tokenizer",
		     g->path);
	tokenizer_destroy(t);
	return rc;
}

void tokenizer_destroy(struct tokenizer *t)
{
	struct tok_impl *v = t->impl;

	if (v) {
		free(v->pool);
		free(v->text_off);
		free(v->text_len);
		free(v->scores);
		free(v->attr);
		free(v->vocab.slots);
		free(v->special);
		free(v->merge_pool);
		free(v->merges.slots);
		for (int i = 0; i < MAX_RE; i++)
			pcre2_code_free(v->re[i]);
		free(v);
	}
	memset(t, 0, sizeof(*t));
	t->bos_id = t->eos_id = t->eot_id = -1;
}

/* ------------------------------------------------------------------ */
/* Encoding scratch                                                    */
/* ------------------------------------------------------------------ */

struct sym {
	int32_t prev, next;
	uint32_t off, n; /* bytes in the session's text */
};

/* a candidate merge of symbols left and right; higher key first, then
 * the leftmost (SPM: key = score; BPE: key = -rank, exact below 2^24) */
struct bigram {
	float key;
	int32_t left, right;
	uint32_t ln, rn; /* symbol lengths when proposed */
};

struct frag {
	int32_t tok; /* -1: raw text */
	size_t off, len;
};

struct scratch {
	int32_t *ids;
	size_t n_ids, cap_ids;
	struct frag *frags, *frags2;
	size_t n_frags, cap_frags, cap_frags2;
	size_t *cuts, *cuts2; /* pre-tokenizer piece ends */
	size_t n_cuts, cap_cuts, cap_cuts2;
	char *buf; /* session text */
	size_t cap_buf;
	struct sym *syms;
	size_t cap_syms;
	struct bigram *heap;
	size_t n_heap, cap_heap;
	pcre2_match_data *md;
};

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap : 64;
	while (n < need)
		n *= 2;
	*cap = n;
	return xrealloc(p, n * elem);
}

static void push_id(struct scratch *s, int32_t id)
{
	s->ids = grow(s->ids, &s->cap_ids, s->n_ids + 1, sizeof(*s->ids));
	s->ids[s->n_ids++] = id;
}

static bool bigram_before(const struct bigram *a, const struct bigram *b)
{
	return a->key > b->key || (a->key == b->key && a->left < b->left);
}

static void heap_push(struct scratch *s, struct bigram b)
{
	size_t i;

	s->heap = grow(s->heap, &s->cap_heap, s->n_heap + 1, sizeof(b));
	for (i = s->n_heap++; i > 0; i = (i - 1) / 2) {
		struct bigram *p = &s->heap[(i - 1) / 2];

		if (!bigram_before(&b, p))
			break;
		s->heap[i] = *p;
	}
	s->heap[i] = b;
}

static struct bigram heap_pop(struct scratch *s)
{
	struct bigram top = s->heap[0], last = s->heap[--s->n_heap];
	size_t i = 0, n = s->n_heap;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && bigram_before(&s->heap[c + 1], &s->heap[c]))
			c++;
		if (!bigram_before(&s->heap[c], &last))
			break;
		s->heap[i] = s->heap[c];
		i = c;
	}
	if (n)
		s->heap[i] = last;
	return top;
}

/* symbols for each UTF-8 character of s->buf[0, len) */
static size_t split_chars(struct scratch *s, size_t len)
{
	size_t n = 0;

	s->syms = grow(s->syms, &s->cap_syms, len, sizeof(*s->syms));
	for (size_t off = 0; off < len; n++) {
		size_t l = utf8_lead_len(s->buf[off]);

		if (l > len - off)
			l = len - off;
		s->syms[n] = (struct sym){(int32_t)n - 1, (int32_t)n + 1,
					  (uint32_t)off, (uint32_t)l};
		off += l;
	}
	if (n)
		s->syms[n - 1].next = -1;
	return n;
}

/* merge right into left and unlink it */
static void merge_syms(struct scratch *s, int32_t left, int32_t right)
{
	struct sym *l = &s->syms[left], *r = &s->syms[right];

	l->n += r->n;
	r->n = 0;
	l->next = r->next;
	if (r->next >= 0)
		s->syms[r->next].prev = left;
}

/* ------------------------------------------------------------------ */
/* SentencePiece (llm_tokenizer_spm_session)                           */
/* ------------------------------------------------------------------ */

static void spm_try_bigram(const struct tok_impl *v, struct scratch *s,
			   int32_t left, int32_t right)
{
	if (left < 0 || right < 0)
		return;
	const struct sym *l = &s->syms[left], *r = &s->syms[right];
	int32_t id = strtab_get(&v->vocab, s->buf + l->off, l->n + r->n,
				NULL, 0);

	if (id < 0)
		return;
	heap_push(s, (struct bigram){v->scores[id], left, right, l->n, r->n});
}

/* Tokenize s->buf[0, len) (spaces already U+2581). Every merge creates a
 * vocabulary token, so a final symbol is a token or a single character;
 * llama.cpp's rev_merge resegmentation therefore always ends in a token
 * or the byte fallback, which is what is done here. */
static void spm_session(const struct tok_impl *v, struct scratch *s,
			size_t len)
{
	size_t n = split_chars(s, len);

	if (!n)
		return;
	s->n_heap = 0;
	for (size_t i = 1; i < n; i++)
		spm_try_bigram(v, s, (int32_t)i - 1, (int32_t)i);
	while (s->n_heap) {
		struct bigram b = heap_pop(s);
		struct sym *l = &s->syms[b.left], *r = &s->syms[b.right];

		if (!l->n || !r->n || l->n + r->n != b.ln + b.rn)
			continue; /* stale */
		merge_syms(s, b.left, b.right);
		spm_try_bigram(v, s, l->prev, b.left);
		spm_try_bigram(v, s, b.left, l->next);
	}
	for (int32_t i = 0; i != -1; i = s->syms[i].next) {
		const struct sym *y = &s->syms[i];
		int32_t id = strtab_get(&v->vocab, s->buf + y->off, y->n, NULL,
					0);

		if (id >= 0) {
			push_id(s, id);
			continue;
		}
		for (uint32_t j = 0; j < y->n; j++) {
			id = v->byte_tok[(uint8_t)s->buf[y->off + j]];
			if (id < 0)
				id = v->unk_id; /* llama.cpp would throw */
			if (id >= 0)
				push_id(s, id);
		}
	}
}

/* One raw fragment: optional leading space, spaces -> U+2581. */
static void spm_fragment(const struct tok_impl *v, struct scratch *s,
			 const char *text, size_t len, bool space_prefix)
{
	size_t n = 0;

	s->buf = grow(s->buf, &s->cap_buf, 3 * (len + 1), 1);
	if (space_prefix) {
		memcpy(s->buf, SP, 3);
		n = 3;
	}
	for (size_t i = 0; i < len; i++) {
		if (text[i] == ' ') {
			memcpy(s->buf + n, SP, 3);
			n += 3;
		} else {
			s->buf[n++] = text[i];
		}
	}
	spm_session(v, s, n);
}

/* ------------------------------------------------------------------ */
/* Byte-level BPE (llm_tokenizer_bpe_session)                          */
/* ------------------------------------------------------------------ */

static void bpe_try_bigram(const struct tok_impl *v, struct scratch *s,
			   int32_t left, int32_t right)
{
	if (left < 0 || right < 0)
		return;
	const struct sym *l = &s->syms[left], *r = &s->syms[right];
	int32_t rank = strtab_get(&v->merges, s->buf + l->off, l->n,
				  s->buf + r->off, r->n);

	if (rank < 0)
		return;
	heap_push(s, (struct bigram){-(float)rank, left, right, l->n, r->n});
}

/* One pre-tokenized word: map bytes to GPT-2 code points, merge by rank,
 * look the symbols up. A symbol that is not a token falls back to its
 * bytes looked up as one-byte strings, dropping those that are not
 * tokens, as llama.cpp does. */
static void bpe_word(const struct tok_impl *v, struct scratch *s,
		     const char *word, size_t len)
{
	size_t n = 0;
	int32_t id;

	s->buf = grow(s->buf, &s->cap_buf, 2 * len, 1);
	s->syms = grow(s->syms, &s->cap_syms, len, sizeof(*s->syms));
	for (size_t i = 0; i < len; i++) {
		uint8_t b = (uint8_t)word[i];

		s->syms[i] = (struct sym){(int32_t)i - 1, (int32_t)i + 1,
					  (uint32_t)n, v->enc_len[b]};
		memcpy(s->buf + n, v->enc[b], v->enc_len[b]);
		n += v->enc_len[b];
	}
	if (!len)
		return;
	s->syms[len - 1].next = -1;
	if (v->ignore_merges &&
	    (id = strtab_get(&v->vocab, s->buf, n, NULL, 0)) >= 0) {
		push_id(s, id);
		return;
	}

	s->n_heap = 0;
	for (size_t i = 1; i < len; i++)
		bpe_try_bigram(v, s, (int32_t)i - 1, (int32_t)i);
	while (s->n_heap) {
		struct bigram b = heap_pop(s);
		struct sym *l = &s->syms[b.left], *r = &s->syms[b.right];

		/* llama.cpp compares the texts; the spans only ever grow
		 * to the right, so equal lengths mean equal texts */
		if (!l->n || !r->n || l->n != b.ln || r->n != b.rn)
			continue;
		merge_syms(s, b.left, b.right);
		bpe_try_bigram(v, s, l->prev, b.left);
		bpe_try_bigram(v, s, b.left, l->next);
	}
	for (int32_t i = 0; i != -1; i = s->syms[i].next) {
		const struct sym *y = &s->syms[i];

		id = strtab_get(&v->vocab, s->buf + y->off, y->n, NULL, 0);
		if (id >= 0) {
			push_id(s, id);
			continue;
		}
		for (uint32_t j = 0; j < y->n; j++) {
			id = v->byte_tok[(uint8_t)s->buf[y->off + j]];
			if (id >= 0)
				push_id(s, id);
		}
	}
}

/* Refine the pieces [cuts[i-1], cuts[i]) of text with expression re:
 * every match and every gap between matches becomes a piece. */
static int regex_refine(pcre2_code *re, struct scratch *s, const char *text)
{
	const uint32_t opt = PCRE2_NO_UTF_CHECK | PCRE2_NOTEMPTY;
	size_t start = 0, n2 = 0;

	for (size_t i = 0; i < s->n_cuts; i++) {
		size_t end = s->cuts[i], pos = start, prev = start;

		/* at most one gap and one match per byte */
		s->cuts2 = grow(s->cuts2, &s->cap_cuts2,
				n2 + 2 * (end - start) + 1, sizeof(*s->cuts2));
		while (pos < end) {
			int rc = pcre2_match(re, (PCRE2_SPTR)(text + start),
					     end - start, pos - start, opt,
					     s->md, NULL);
			/* the JIT's 32 KiB stack has not run out even on
			 * megabyte inputs; should it, the interpreter can
			 * use the heap */
			if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
				rc = pcre2_match(re, (PCRE2_SPTR)(text + start),
						 end - start, pos - start,
						 opt | PCRE2_NO_JIT, s->md,
						 NULL);
			if (rc == PCRE2_ERROR_NOMATCH)
				break;
			if (rc < 0) /* a PCRE2 resource limit */
				return -ENOMEM;
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
			size_t ms = start + ov[0], me = start + ov[1];

			if (ms > prev)
				s->cuts2[n2++] = ms;
			s->cuts2[n2++] = me;
			prev = pos = me;
		}
		if (end > prev)
			s->cuts2[n2++] = end;
		start = end;
	}
	size_t *tmp = s->cuts, tcap = s->cap_cuts;
	s->cuts = s->cuts2;
	s->cap_cuts = s->cap_cuts2;
	s->cuts2 = tmp;
	s->cap_cuts2 = tcap;
	s->n_cuts = n2;
	return 0;
}

static int bpe_fragment(const struct tok_impl *v, struct scratch *s,
			const char *text, size_t len)
{
	size_t start = 0;

	s->cuts = grow(s->cuts, &s->cap_cuts, 1, sizeof(*s->cuts));
	s->cuts[0] = len;
	s->n_cuts = 1;
	for (int i = 0; i < v->n_re; i++) {
		int rc = regex_refine(v->re[i], s, text);

		if (rc)
			return rc;
	}
	for (size_t i = 0; i < s->n_cuts; i++) {
		bpe_word(v, s, text + start, s->cuts[i] - start);
		start = s->cuts[i];
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Special tokens (tokenizer_st_partition) and the encode entry point  */
/* ------------------------------------------------------------------ */

static void add_frag(struct scratch *s, int32_t tok, size_t off, size_t len)
{
	s->frags2 = grow(s->frags2, &s->cap_frags2, s->n_frags + 1,
			 sizeof(*s->frags2));
	s->frags2[s->n_frags++] = (struct frag){tok, off, len};
}

/* Split every raw fragment at each occurrence of special token id, in
 * place of llama.cpp's forward list. */
static void split_special(const struct tok_impl *v, struct scratch *s,
			  const char *text, int32_t id)
{
	uint32_t tl;
	const char *tt = tok_text(v, id, &tl);
	struct frag *old = s->frags;
	size_t n_old = s->n_frags;
	bool found = false;

	for (size_t i = 0; i < n_old && !found; i++)
		found = old[i].tok < 0 &&
			memmem(text + old[i].off, old[i].len, tt, tl);
	if (!found)
		return;

	s->n_frags = 0;
	for (size_t i = 0; i < n_old; i++) {
		size_t off = old[i].off, len = old[i].len;
		const char *m;

		if (old[i].tok >= 0) {
			add_frag(s, old[i].tok, off, len);
			continue;
		}
		while (len && (m = memmem(text + off, len, tt, tl))) {
			size_t ll = (size_t)(m - (text + off));
			size_t roff = off + ll + tl, rlen = len - ll - tl;

			if (v->attr[id] & TA_LSTRIP)
				while (ll &&
				       isspace((uint8_t)text[off + ll - 1]))
					ll--;
			if (ll)
				add_frag(s, -1, off, ll);
			add_frag(s, id, 0, 0);
			if (v->attr[id] & TA_RSTRIP)
				while (rlen && isspace((uint8_t)text[roff]))
					roff++, rlen--;
			off = roff;
			len = rlen;
		}
		if (len)
			add_frag(s, -1, off, len);
	}
	s->frags = s->frags2;
	s->frags2 = old;
	size_t c = s->cap_frags;
	s->cap_frags = s->cap_frags2;
	s->cap_frags2 = c;
}

static void scratch_free(struct scratch *s)
{
	free(s->ids);
	free(s->frags);
	free(s->frags2);
	free(s->cuts);
	free(s->cuts2);
	free(s->buf);
	free(s->syms);
	free(s->heap);
	pcre2_match_data_free(s->md);
}

/* The ids of text into s->ids (grown as needed); 0 or -errno. The caller
 * frees s with scratch_free either way. */
static int encode_scratch(const struct tokenizer *t, struct scratch *s,
			  const char *text, size_t len, bool add_bos,
			  bool parse_special)
{
	const struct tok_impl *v = t->impl;
	bool prev_special = true; /* SPM: a leading space goes first */
	int rc;

	if (!v || (len && !text))
		return -EINVAL;
	if (!utf8_valid(text, len))
		return -EINVAL;
	if (add_bos && t->bos_id >= 0)
		push_id(s, t->bos_id);
	if (len) {
		s->frags = grow(NULL, &s->cap_frags, 1, sizeof(*s->frags));
		s->frags[0] = (struct frag){-1, 0, len};
		s->n_frags = 1;
	}
	for (int32_t i = 0; i < v->n_special; i++) {
		int32_t id = v->special[i];

		/* control/unknown only when asked; user-defined always */
		if (!parse_special && (v->attr[id] & (TA_CONTROL | TA_UNKNOWN)))
			continue;
		split_special(v, s, text, id);
	}
	if (t->kind == TOK_BPE) {
		s->md = pcre2_match_data_create(1, NULL);
		if (!s->md)
			return -ENOMEM;
	}
	for (size_t i = 0; i < s->n_frags; i++) {
		const struct frag *f = &s->frags[i];

		if (f->tok >= 0) {
			push_id(s, f->tok);
			prev_special = true;
		} else if (t->kind == TOK_SPM) {
			spm_fragment(v, s, text + f->off, f->len,
				     v->add_space_prefix && prev_special);
			prev_special = false;
		} else if ((rc = bpe_fragment(v, s, text + f->off, f->len))) {
			return rc;
		}
	}
	if (s->n_ids > INT32_MAX)
		return -EOVERFLOW;
	return 0;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len,
		     bool add_bos, bool parse_special, int32_t *out,
		     int32_t n_max)
{
	struct scratch s = {0};
	int rc = encode_scratch(t, &s, text, len, add_bos, parse_special);

	if (rc == 0 && s.n_ids > (size_t)(n_max > 0 ? n_max : 0))
		rc = -ENOSPC;
	if (rc == 0) {
		if (s.n_ids)
			memcpy(out, s.ids, s.n_ids * sizeof(*out));
		rc = (int)s.n_ids;
	}
	scratch_free(&s);
	return rc;
}

int tokenizer_encode_alloc(const struct tokenizer *t, const char *text,
			   size_t len, bool add_bos, bool parse_special,
			   int32_t **out)
{
	struct scratch s = {0};
	int rc = encode_scratch(t, &s, text, len, add_bos, parse_special);

	if (rc == 0) {
		/* a zero-length result still gets a buffer the caller frees */
		if (!s.ids)
			s.ids = xmalloc(sizeof(*s.ids));
		*out = s.ids;
		rc = (int)s.n_ids;
		s.ids = NULL;
	}
	scratch_free(&s);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Decoding and lookups                                                */
/* ------------------------------------------------------------------ */

static void put_byte(char *out, size_t cap, size_t *n, char c)
{
	if (*n < cap)
		out[*n] = c;
	(*n)++;
}

/* llama_decode_text: GPT-2 code points back to bytes; a code point
 * outside the map is written as "[UNK_BYTE_0x<utf8 hex><text>]". Writes
 * at most cap bytes, returns the full length. */
static size_t bpe_decode(const struct tok_impl *v, const char *s,
			 uint32_t len, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	for (uint32_t i = 0; i < len;) {
		uint32_t cp;
		size_t l = utf8_seq((const unsigned char *)s + i, len - i, &cp);

		if (!l) {
			cp = 0xfffd;
			l = 1;
		}
		i += (uint32_t)l;
		if (cp < 324 && v->dec[cp] >= 0) {
			put_byte(out, cap, &n, (char)v->dec[cp]);
			continue;
		}
		char u[4];
		size_t ul = utf8_put(u, cp);

		for (const char *p = "[UNK_BYTE_0x"; *p; p++)
			put_byte(out, cap, &n, *p);
		for (size_t k = 0; k < ul; k++) {
			put_byte(out, cap, &n, hex[(uint8_t)u[k] >> 4]);
			put_byte(out, cap, &n, hex[(uint8_t)u[k] & 15]);
		}
		for (uint32_t k = 0; k < len; k++)
			put_byte(out, cap, &n, s[k]);
		put_byte(out, cap, &n, ']');
	}
	return n;
}

/* SentencePiece text: U+2581 -> ' '. Same contract as bpe_decode. */
static size_t spm_decode(const char *s, uint32_t len, char *out, size_t cap)
{
	size_t n = 0;

	for (uint32_t i = 0; i < len; i++) {
		if (i + 2 < len && !memcmp(s + i, SP, 3)) {
			put_byte(out, cap, &n, ' ');
			i += 2;
		} else {
			put_byte(out, cap, &n, s[i]);
		}
	}
	return n;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)toupper((unsigned char)c);
	return c >= 'A' && c <= 'F' ? c - 'A' + 10 : 0;
}

int tokenizer_piece(const struct tokenizer *t, int32_t id, bool render_special,
		    char *buf, size_t buflen)
{
	const struct tok_impl *v = t->impl;
	uint32_t len;
	const char *s;
	uint16_t a;

	if (!v || id < 0 || id >= t->n_vocab)
		return -EINVAL;
	a = v->attr[id];
	s = tok_text(v, id, &len);
	if (!render_special && (a & (TA_UNKNOWN | TA_CONTROL)))
		return 0;
	if (a & (TA_UNKNOWN | TA_CONTROL | TA_USER_DEFINED)) {
		if (len > buflen)
			return -ENOSPC;
		memcpy(buf, s, len);
		return (int)len;
	}
	if (a & TA_NORMAL) {
		size_t n = t->kind == TOK_BPE ? bpe_decode(v, s, len, NULL, 0)
					      : spm_decode(s, len, NULL, 0);

		if (n > buflen)
			return -ENOSPC;
		if (t->kind == TOK_BPE)
			bpe_decode(v, s, len, buf, buflen);
		else
			spm_decode(s, len, buf, buflen);
		return (int)n;
	}
	if (a & TA_BYTE) {
		/* "<0xNN>" */
		if (len < 5)
			return 0;
		if (buflen < 1)
			return -ENOSPC;
		buf[0] = (char)(hexval(s[3]) << 4 | hexval(s[4]));
		return 1;
	}
	return 0; /* unused / undefined tokens render as nothing */
}

const char *tokenizer_token_text(const struct tokenizer *t, int32_t id)
{
	uint32_t len;

	if (!t->impl || id < 0 || id >= t->n_vocab)
		return NULL;
	return tok_text(t->impl, id, &len);
}

int32_t tokenizer_find(const struct tokenizer *t, const char *text)
{
	if (!t->impl)
		return -1;
	return strtab_get(&t->impl->vocab, text, strlen(text), NULL, 0);
}

bool tokenizer_is_eog(const struct tokenizer *t, int32_t id)
{
	if (!t->impl || id < 0 || id >= t->n_vocab)
		return false;
	return t->impl->attr[id] & TA_EOG;
}
