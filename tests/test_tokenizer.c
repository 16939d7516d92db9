/*
 * test_tokenizer.c - tokenizers and chat templates against llama.cpp.
 *
 * Oracles:
 *  - llama.cpp's vocab-only test GGUFs with their .inp/.out vectors
 *    (STRATA_VOCAB_DIR, which `make test` fills with tests/fetch-vocab.sh
 *    from the pinned llama-cpp-python sdist), encoded as
 *    test-tokenizer-0 does: no BOS, parse_special off;
 *  - tests/fixtures/tokenize_smollm2.txt, ids recorded from llama-tokenize
 *    for SmolLM2 (STRATA_MODEL) by tests/fixtures/record_tokenize.sh.
 * Run from the repository root. A missing file skips the tests that need
 * it; the program then exits 77 after the others ran, never passing
 * silently.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "models/chat.h"
#include "models/gguf.h"
#include "models/tokenizer.h"
#include "models/util.h"

#define FIXTURE "tests/fixtures/tokenize_smollm2.txt"
#define SEP "\n__ggml_vocab_test__\n"

static const char *vocab_dir;
static const char *model_path;

static bool file_exists(const char *p)
{
	struct stat st;

	return p && !stat(p, &st) && S_ISREG(st.st_mode);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = xmalloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Open path and build its tokenizer; fails the test on error. */
static void open_tok(const char *path, struct gguf_file *g,
		     struct tokenizer *t)
{
	char err[512] = "";
	int rc = gguf_open(g, path, err, sizeof(err));

	if (rc)
		fail_msg("gguf_open %s: %s", path, err);
	rc = tokenizer_init(t, g, err, sizeof(err));
	if (rc)
		fail_msg("tokenizer_init %s: %s", path, err);
}

static void print_ids(const char *what, const int32_t *ids, int n)
{
	fprintf(stderr, "    %s:", what);
	for (int i = 0; i < n; i++)
		fprintf(stderr, " %d", ids[i]);
	fprintf(stderr, "\n");
}

/* Parse space-separated ids; returns the count */
static int parse_ids(const char *s, const char *end, int32_t *ids, int max)
{
	int n = 0;

	while (s < end) {
		char *e;
		long v = strtol(s, &e, 10);

		if (e == s) {
			s++;
			continue;
		}
		assert_true(n < max);
		ids[n++] = (int32_t)v;
		s = e;
	}
	return n;
}

/* Concatenated pieces of ids into out (NUL-terminated); returns length */
static size_t detok(const struct tokenizer *t, const int32_t *ids, int n,
		    bool special, char *out, size_t cap)
{
	size_t len = 0;

	for (int i = 0; i < n; i++) {
		int r = tokenizer_piece(t, ids[i], special, out + len,
					cap - len - 1);
		assert_true(r >= 0);
		len += (size_t)r;
	}
	out[len] = '\0';
	return len;
}

/* Encode text and compare with want; prints the difference. Also checks
 * that the pieces give the text back (BPE: the text; SPM: a leading space
 * plus the text). Returns true on an exact id match. */
static bool check_case(const struct tokenizer *t, const char *label,
		       const char *text, size_t len, bool parse_special,
		       const int32_t *want, int n_want, int *roundtrip_bad)
{
	int32_t got[4096];
	static char dec[65536], exp[65536];
	int n = tokenizer_encode(t, text, len, false, parse_special, got, 4096);
	bool ok = n == n_want && !memcmp(got, want, (size_t)n * sizeof(*got));

	if (!ok) {
		fprintf(stderr, "  %s: mismatch on \"%.*s\"\n", label,
			(int)len, text);
		print_ids("want", want, n_want);
		print_ids("got ", got, n < 0 ? 0 : n);
	}
	if (n < 0)
		return false;
	size_t dl = detok(t, got, n, parse_special, dec, sizeof(dec));
	size_t el = 0;
	if (t->kind == TOK_SPM && len)
		exp[el++] = ' ';
	memcpy(exp + el, text, len);
	el += len;
	if (dl != el || memcmp(dec, exp, el)) {
		(*roundtrip_bad)++;
		fprintf(stderr, "  %s: round trip of \"%.*s\" gave \"%s\"\n",
			label, (int)len, text, dec);
	}
	return ok;
}

/* ------------------------------------------------------------------ */
/* llama.cpp vocab test vectors                                        */
/* ------------------------------------------------------------------ */

struct vocab_case {
	const char *name; /* ggml-vocab-<name>.gguf */
	enum tok_kind kind;
};

static const struct vocab_case vocab_cases[] = {
	{"llama-spm", TOK_SPM},  {"phi-3", TOK_SPM},
	{"gpt-2", TOK_BPE},      {"llama-bpe", TOK_BPE},
	{"qwen2", TOK_BPE},      {"starcoder", TOK_BPE},
	{"refact", TOK_BPE},     {"command-r", TOK_BPE},
	{"mpt", TOK_BPE},        {"falcon", TOK_BPE},
	{"deepseek-coder", TOK_BPE},
};
#define N_VOCAB_CASES (sizeof(vocab_cases) / sizeof(vocab_cases[0]))

static void vocab_path(char *buf, size_t n, const struct vocab_case *c,
		       const char *ext)
{
	snprintf(buf, n, "%s/ggml-vocab-%s.gguf%s", vocab_dir, c->name, ext);
}

static void test_vocab(void **state)
{
	const struct vocab_case *c = *state;
	char path[1024], pin[1024], pout[1024];
	struct gguf_file g;
	struct tokenizer t;
	size_t lin, lout;
	int pass = 0, total = 0, rt_bad = 0;

	vocab_path(path, sizeof(path), c, "");
	vocab_path(pin, sizeof(pin), c, ".inp");
	vocab_path(pout, sizeof(pout), c, ".out");
	open_tok(path, &g, &t);
	assert_int_equal(t.kind, c->kind);
	gguf_close(&g);

	char *inp = read_all(pin, &lin), *out = read_all(pout, &lout);
	const char *ip = inp, *op = out;
	while (ip < inp + lin) {
		const char *sep = strstr(ip, SEP);
		const char *iend = sep ? sep : inp + lin;
		const char *oend = strchr(op, '\n');
		int32_t want[4096];

		assert_non_null(oend);
		int nw = parse_ids(op, oend, want, 4096);
		total++;
		pass += check_case(&t, c->name, ip, (size_t)(iend - ip), false,
				   want, nw, &rt_bad);
		op = oend + 1;
		ip = sep ? sep + strlen(SEP) : inp + lin;
	}
	printf("  vocab %-15s %2d/%2d match llama.cpp, %d round-trip "
	       "differences\n", c->name, pass, total, rt_bad);
	free(inp);
	free(out);
	tokenizer_destroy(&t);
	assert_true(total > 0);
	assert_int_equal(pass, total);
	assert_int_equal(rt_bad, 0);
}

/* ------------------------------------------------------------------ */
/* SmolLM2 fixture                                                     */
/* ------------------------------------------------------------------ */

/* \\ \n \t \r \xHH, in place; returns the new length */
static size_t unescape(char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] != '\\' || i + 1 >= n) {
			s[o++] = s[i];
			continue;
		}
		char c = s[++i];
		if (c == 'n')
			s[o++] = '\n';
		else if (c == 't')
			s[o++] = '\t';
		else if (c == 'r')
			s[o++] = '\r';
		else if (c == 'x' && i + 2 < n) {
			char hex[3] = {s[i + 1], s[i + 2], 0};
			s[o++] = (char)strtol(hex, NULL, 16);
			i += 2;
		} else
			s[o++] = c;
	}
	return o;
}

static struct gguf_file smol_g;
static struct tokenizer smol;
static int64_t smol_init_ns;

static int smol_setup(void **state)
{
	char err[512] = "";
	int64_t t0;

	(void)state;
	if (gguf_open(&smol_g, model_path, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	t0 = now_ns();
	if (tokenizer_init(&smol, &smol_g, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	smol_init_ns = now_ns() - t0;
	return 0;
}

static int smol_teardown(void **state)
{
	(void)state;
	tokenizer_destroy(&smol);
	gguf_close(&smol_g);
	return 0;
}

static void test_smollm2_fixture(void **state)
{
	size_t len;
	char *data = read_all(FIXTURE, &len);
	int pass = 0, total = 0, rt_bad = 0;

	(void)state;
	for (char *line = data, *next; line < data + len; line = next) {
		char *nl = strchr(line, '\n');
		char *tab1, *tab2;
		int32_t want[4096];

		next = nl ? nl + 1 : data + len;
		if (nl)
			*nl = '\0';
		if (line[0] == '#' || !line[0])
			continue;
		tab1 = strchr(line, '\t');
		assert_non_null(tab1);
		tab2 = strchr(tab1 + 1, '\t');
		assert_non_null(tab2);
		size_t tl = unescape(tab1 + 1, (size_t)(tab2 - tab1 - 1));
		int nw = parse_ids(tab2 + 1, tab2 + strlen(tab2), want, 4096);
		total++;
		pass += check_case(&smol, "smollm2", tab1 + 1, tl,
				   line[0] == '1', want, nw, &rt_bad);
	}
	printf("  SmolLM2 fixture  %2d/%2d match llama.cpp, %d round-trip "
	       "differences\n", pass, total, rt_bad);
	free(data);
	assert_true(total >= 60);
	assert_int_equal(pass, total);
	assert_int_equal(rt_bad, 0);
}

static void test_smollm2_specials(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(smol.kind, TOK_BPE);
	assert_int_equal(smol.n_vocab, 49152);
	assert_false(smol.add_bos);
	assert_int_equal(smol.bos_id, 1);
	assert_int_equal(smol.eos_id, 2);
	assert_int_equal(smol.eot_id, 2); /* <|im_end|> */
	assert_int_equal(tokenizer_find(&smol, "<|im_end|>"), 2);
	assert_int_equal(tokenizer_find(&smol, "no such token"), -1);
	assert_string_equal(tokenizer_token_text(&smol, 1), "<|im_start|>");
	assert_null(tokenizer_token_text(&smol, 49152));
	assert_null(tokenizer_token_text(&smol, -1));
	assert_true(tokenizer_is_eog(&smol, 2));
	assert_true(tokenizer_is_eog(&smol, 0)); /* <|endoftext|> */
	assert_false(tokenizer_is_eog(&smol, 1));
	assert_false(tokenizer_is_eog(&smol, 905));
	assert_false(tokenizer_is_eog(&smol, -1));

	/* control pieces render only when asked */
	assert_int_equal(tokenizer_piece(&smol, 2, false, buf, sizeof(buf)), 0);
	assert_int_equal(tokenizer_piece(&smol, 2, true, buf, sizeof(buf)), 10);
	assert_memory_equal(buf, "<|im_end|>", 10);
	/* " Hello" is "ĠHello" in the vocabulary */
	assert_int_equal(tokenizer_piece(&smol, 38699, false, buf, 64), 6);
	assert_memory_equal(buf, " Hello", 6);
	assert_int_equal(tokenizer_piece(&smol, 38699, false, buf, 5), -ENOSPC);
	assert_int_equal(tokenizer_piece(&smol, 49152, false, buf, 64),
			 -EINVAL);
	assert_int_equal(tokenizer_piece(&smol, -1, false, buf, 64), -EINVAL);
}

static void test_errors(void **state)
{
	static const char *const bad[] = {
		"\x80",             /* lone continuation */
		"abc\xc3",          /* truncated */
		"\xc0\xaf",         /* overlong '/' */
		"\xed\xa0\x80",     /* surrogate */
		"\xf4\x90\x80\x80", /* > U+10FFFF */
		"ok \xff",
	};
	int32_t ids[8];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tokenizer_encode(&smol, bad[i], strlen(bad[i]),
						  false, false, ids, 8),
				 -EINVAL);
	/* "Hello world" is two ids: -ENOSPC below that, out untouched */
	ids[0] = -7;
	assert_int_equal(tokenizer_encode(&smol, "Hello world", 11, false,
					  false, ids, 1),
			 -ENOSPC);
	assert_int_equal(ids[0], -7);
	assert_int_equal(tokenizer_encode(&smol, "Hello world", 11, false,
					  false, ids, 2),
			 2);
	assert_int_equal(tokenizer_encode(&smol, "", 0, false, false, ids, 0),
			 0);
	/* BOS when asked, whatever the vocabulary's add_bos says */
	assert_int_equal(tokenizer_encode(&smol, "Hello", 5, true, false, ids,
					  8),
			 2);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 19556);
}

/* Round trip on a larger mixed text, and how fast encode runs */
static void test_smollm2_speed(void **state)
{
	static const char unit[] =
		"The quick brown fox jumps over the lazy dog. 1234567 "
		"café 日本語 🙂 don't\n\tint x = 42;  <|im_start|>\n";
	size_t n_unit = sizeof(unit) - 1, reps = 2000, len = n_unit * reps;
	char *text = xmalloc(len + 1), *dec = xmalloc(len + 1);
	int32_t *ids = xmalloc(len * sizeof(*ids));
	int64_t t0;
	int n;

	(void)state;
	for (size_t i = 0; i < reps; i++)
		memcpy(text + i * n_unit, unit, n_unit);
	text[len] = '\0';
	t0 = now_ns();
	n = tokenizer_encode(&smol, text, len, false, false, ids, (int32_t)len);
	double enc_s = (double)(now_ns() - t0) / 1e9;
	assert_true(n > 0);
	assert_int_equal(detok(&smol, ids, n, false, dec, len + 1), len);
	assert_memory_equal(dec, text, len);
	printf("  SmolLM2 init %.1f ms; encode %zu KiB -> %d ids in %.1f ms "
	       "(%.1f MB/s)\n", (double)smol_init_ns / 1e6, len / 1024, n,
	       enc_s * 1e3, (double)len / enc_s / 1e6);
	free(text);
	free(dec);
	free(ids);
}

/* ------------------------------------------------------------------ */
/* Synthetic vocabularies: refusal of what is not supported            */
/* ------------------------------------------------------------------ */

/* A gguf_file view of a writer's key/values (the reader's lookups only
 * walk kv[]). */
static struct gguf_file writer_view(struct gguf_writer *w)
{
	struct gguf_file g = {0};

	g.path = (char *)"synthetic.gguf";
	g.n_kv = w->n_kv;
	g.kv = w->kv;
	return g;
}

static void test_refuse_unknown(void **state)
{
	static const char *const toks[] = {"a", "b", "ab"};
	static const char *const merges[] = {"a b"};
	struct gguf_writer w;
	struct gguf_file g;
	struct tokenizer t;
	char err[256];
	int32_t ids[4];

	(void)state;
	gguf_writer_init(&w);
	gguf_writer_set_str(&w, "tokenizer.ggml.model", "gpt2");
	gguf_writer_set_str(&w, "tokenizer.ggml.pre", "no-such-pre");
	gguf_writer_set_str_arr(&w, "tokenizer.ggml.tokens", toks, 3);
	gguf_writer_set_str_arr(&w, "tokenizer.ggml.merges", merges, 1);
	g = writer_view(&w);
	assert_int_equal(tokenizer_init(&t, &g, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'no-such-pre'"));
	assert_null(t.impl);
	tokenizer_destroy(&t); /* zeroed object is fine */
	gguf_writer_destroy(&w);

	/* unknown model */
	gguf_writer_init(&w);
	gguf_writer_set_str(&w, "tokenizer.ggml.model", "bert");
	gguf_writer_set_str_arr(&w, "tokenizer.ggml.tokens", toks, 3);
	g = writer_view(&w);
	assert_int_equal(tokenizer_init(&t, &g, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'bert'"));
	gguf_writer_destroy(&w);

	/* no tokenizer at all */
	gguf_writer_init(&w);
	g = writer_view(&w);
	assert_int_equal(tokenizer_init(&t, &g, err, sizeof(err)), -EINVAL);
	gguf_writer_destroy(&w);

	/* gpt2 without merges */
	gguf_writer_init(&w);
	gguf_writer_set_str(&w, "tokenizer.ggml.model", "gpt2");
	gguf_writer_set_str_arr(&w, "tokenizer.ggml.tokens", toks, 3);
	g = writer_view(&w);
	assert_int_equal(tokenizer_init(&t, &g, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "merges"));
	gguf_writer_destroy(&w);

	/* a minimal gpt2 vocabulary that works: "ab" merges, pre "gpt-2" */
	gguf_writer_init(&w);
	gguf_writer_set_str(&w, "tokenizer.ggml.model", "gpt2");
	gguf_writer_set_str(&w, "tokenizer.ggml.pre", "gpt-2");
	gguf_writer_set_str_arr(&w, "tokenizer.ggml.tokens", toks, 3);
	gguf_writer_set_str_arr(&w, "tokenizer.ggml.merges", merges, 1);
	g = writer_view(&w);
	assert_int_equal(tokenizer_init(&t, &g, err, sizeof(err)), 0);
	assert_int_equal(tokenizer_encode(&t, "abba", 4, false, false, ids, 4),
			 3);
	assert_int_equal(ids[0], 2);
	assert_int_equal(ids[1], 1);
	assert_int_equal(ids[2], 0);
	tokenizer_destroy(&t);
	gguf_writer_destroy(&w);
}

/* An SPM vocabulary of the 256 byte tokens, "a" and "\xe2\x96\x81a"
 * only: every space but the one before "a" becomes the 3 bytes of U+2581
 * by byte fallback, so "1 2 3" (5 bytes) needs 1 + 3 + 1 + 3 + 1 + 3
 * ids (the leading space prefix included) - more ids than bytes. */
static void test_spm_more_ids_than_bytes(void **state)
{
	enum { N = 3 + 256 + 2 };
	static char names[N][16];
	const char *toks[N];
	int32_t types[N];
	float scores[N];
	struct gguf_writer w;
	struct gguf_file g;
	struct tokenizer t;
	char err[256];
	int32_t small[16], *ids = NULL;
	const char *text = "1 2 3 a";

	(void)state;
	strcpy(names[0], "<unk>");
	strcpy(names[1], "<s>");
	strcpy(names[2], "</s>");
	for (int b = 0; b < 256; b++)
		snprintf(names[3 + b], sizeof(names[0]), "<0x%02X>", b);
	strcpy(names[N - 2], "a");
	strcpy(names[N - 1], "\xe2\x96\x81" "a");
	for (int i = 0; i < N; i++) {
		toks[i] = names[i];
		types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 3 + 256 ? 6 : 1;
		scores[i] = i < 3 + 256 ? 0.0f : -1.0f;
	}
	gguf_writer_init(&w);
	gguf_writer_set_str(&w, "tokenizer.ggml.model", "llama");
	gguf_writer_set_str_arr(&w, "tokenizer.ggml.tokens", toks, N);
	gguf_writer_set_arr(&w, "tokenizer.ggml.token_type", GGUF_T_INT32,
			    types, N);
	gguf_writer_set_arr(&w, "tokenizer.ggml.scores", GGUF_T_FLOAT32,
			    scores, N);
	g = writer_view(&w);
	assert_int_equal(tokenizer_init(&t, &g, err, sizeof(err)), 0);

	/* "▁1▁2▁3▁a": 3 + 1, 3 + 1, 3 + 1, then the one "▁a" token; BOS */
	const int32_t want[] = {1,   3 + 0xe2, 3 + 0x96, 3 + 0x81, 3 + '1',
				3 + 0xe2, 3 + 0x96, 3 + 0x81, 3 + '2',
				3 + 0xe2, 3 + 0x96, 3 + 0x81, 3 + '3', N - 1};
	const int nw = (int)(sizeof(want) / sizeof(want[0]));
	int n = tokenizer_encode_alloc(&t, text, strlen(text), true, false,
				       &ids);
	assert_int_equal(n, nw);
	assert_true((size_t)n > strlen(text));
	assert_memory_equal(ids, want, sizeof(want));
	free(ids);

	/* the bounded call: exactly enough, and one short of it */
	assert_int_equal(tokenizer_encode(&t, text, strlen(text), true, false,
					  small, nw), nw);
	assert_memory_equal(small, want, sizeof(want));
	assert_int_equal(tokenizer_encode(&t, text, strlen(text), true, false,
					  small, nw - 1), -ENOSPC);

	/* empty text: a zero count and a buffer to free; bad UTF-8 refused
	 * with *out untouched */
	ids = NULL;
	assert_int_equal(tokenizer_encode_alloc(&t, "", 0, false, false, &ids),
			 0);
	assert_non_null(ids);
	free(ids);
	ids = NULL;
	assert_int_equal(tokenizer_encode_alloc(&t, "\xff", 1, false, false,
						&ids), -EINVAL);
	assert_null(ids);
	tokenizer_destroy(&t);
	gguf_writer_destroy(&w);
}

/* ------------------------------------------------------------------ */
/* Chat templates                                                      */
/* ------------------------------------------------------------------ */

/* TinyLlama-1.1B-Chat-v1.0's tokenizer.chat_template */
static const char tinyllama_tmpl[] =
	"{% for message in messages %}\n"
	"{% if message['role'] == 'user' %}\n"
	"{{ '<|user|>\n' + message['content'] + eos_token }}\n"
	"{% elif message['role'] == 'system' %}\n"
	"{{ '<|system|>\n' + message['content'] + eos_token }}\n"
	"{% elif message['role'] == 'assistant' %}\n"
	"{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
	"{% endif %}\n"
	"{% if loop.last and add_generation_prompt %}\n"
	"{{ '<|assistant|>' }}\n"
	"{% endif %}\n"
	"{% endfor %}";

/* SmolLM2-135M-Instruct's, as in its GGUF */
static const char smollm2_tmpl[] =
	"{% for message in messages %}{% if loop.first and messages[0]['role'] "
	"!= 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant "
	"named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|"
	"im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end"
	"|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|"
	">assistant\n' }}{% endif %}";

/* Qwen2's: the same shape, another default system prompt */
static const char qwen2_tmpl[] =
	"{% for message in messages %}{% if loop.first and messages[0]['role'] "
	"!= 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant<|"
	"im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' "
	"+ message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";

static void test_chat_chatml(void **state)
{
	const struct chat_msg conv[] = {
		{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}};
	const struct chat_msg sys[] = {{"system", "Be brief."},
				       {"user", "Hi"}};
	const struct gguf_str *gt = NULL;
	struct chat_template ct;
	char out[1024], err[256];

	(void)state;
	/* the template stored in the model file, when we have it */
	if (smol.impl)
		assert_int_equal(gguf_get_str(&smol_g,
					      "tokenizer.chat_template", &gt),
				 0);
	assert_int_equal(chat_template_init(&ct, gt ? gt->s : smollm2_tmpl,
					    NULL, err, sizeof(err)),
			 0);
	assert_int_equal(ct.style, CHAT_CHATML);
	assert_string_equal(ct.default_system,
			    "You are a helpful AI assistant named SmolLM, "
			    "trained by Hugging Face");
	int n = chat_apply(&ct, conv, 3, true, out, sizeof(out));
	const char *want =
		"<|im_start|>system\nYou are a helpful AI assistant named "
		"SmolLM, trained by Hugging Face<|im_end|>\n"
		"<|im_start|>user\nHi<|im_end|>\n"
		"<|im_start|>assistant\nHello!<|im_end|>\n"
		"<|im_start|>user\n2+2?<|im_end|>\n"
		"<|im_start|>assistant\n";
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));

	/* own system message: no default one; no generation prompt */
	n = chat_apply(&ct, sys, 2, false, out, sizeof(out));
	assert_string_equal(out, "<|im_start|>system\nBe brief.<|im_end|>\n"
				 "<|im_start|>user\nHi<|im_end|>\n");

	/* -ENOSPC leaves out alone; exactly len + 1 fits */
	strcpy(out, "untouched");
	assert_int_equal(chat_apply(&ct, sys, 2, false, out, (size_t)n),
			 -ENOSPC);
	assert_string_equal(out, "untouched");
	assert_int_equal(chat_apply(&ct, sys, 2, false, out, (size_t)n + 1),
			 n);

	/* Qwen2's wording of the same default */
	assert_int_equal(chat_template_init(&ct, qwen2_tmpl, NULL, err,
					    sizeof(err)),
			 0);
	assert_string_equal(ct.default_system, "You are a helpful assistant");

	/* the named template has no default system prompt */
	assert_int_equal(chat_template_init(&ct, "chatml", NULL, err,
					    sizeof(err)),
			 0);
	chat_apply(&ct, conv, 1, true, out, sizeof(out));
	assert_string_equal(out, "<|im_start|>user\nHi<|im_end|>\n"
				 "<|im_start|>assistant\n");

	/* the rendered prompt tokenizes into the ChatML control tokens */
	if (smol.impl) {
		int32_t ids[64];
		int k = tokenizer_encode(&smol, out, strlen(out), false, true,
					 ids, 64);
		/* <|im_start|> user \n Hi <|im_end|> \n <|im_start|> ... */
		assert_true(k > 6);
		assert_int_equal(ids[0], 1);
		assert_int_equal(ids[4], 2);
		assert_int_equal(ids[6], 1);
	}
}

static void test_chat_zephyr(void **state)
{
	const struct chat_msg conv[] = {{"system", "You are a pirate."},
					{"user", "Hi"},
					{"assistant", "Arr."},
					{"user", "Where?"}};
	struct chat_template ct;
	char out[1024], err[256];

	(void)state;
	assert_int_equal(chat_template_init(&ct, tinyllama_tmpl, "</s>", err,
					    sizeof(err)),
			 0);
	assert_int_equal(ct.style, CHAT_ZEPHYR);
	chat_apply(&ct, conv, 4, true, out, sizeof(out));
	assert_string_equal(out, "<|system|>\nYou are a pirate.</s>\n"
				 "<|user|>\nHi</s>\n"
				 "<|assistant|>\nArr.</s>\n"
				 "<|user|>\nWhere?</s>\n"
				 "<|assistant|>\n");
	chat_apply(&ct, conv + 1, 1, false, out, sizeof(out));
	assert_string_equal(out, "<|user|>\nHi</s>\n");
	/* no messages, no generation prompt (loop.last never true) */
	assert_int_equal(chat_apply(&ct, conv, 0, true, out, sizeof(out)), 0);
	assert_string_equal(out, "");

	/* eos_token needs the vocabulary's EOS text */
	assert_int_equal(chat_template_init(&ct, tinyllama_tmpl, NULL, err,
					    sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "eos_token"));
}

static const char phi3_tmpl[] =
	"{{'<|user|>' + '\n' + c + '<|end|>' + '\n' + '<|assistant|>'}}";

static void test_chat_unknown(void **state)
{
	struct chat_template ct;
	char err[256] = "";
	const struct chat_msg bad[] = {{"user", NULL}};
	char out[64];

	(void)state;
	assert_int_equal(chat_template_init(&ct,
					    "{{ bos_token }}[INST] {{ m }} "
					    "[/INST]",
					    "</s>", err, sizeof(err)),
			 -ENOTSUP);
	assert_non_null(strstr(err, "not supported"));
	/* Phi-3 mentions <|user|> but is not Zephyr */
	assert_int_equal(chat_template_init(&ct, phi3_tmpl, "</s>", err,
					    sizeof(err)),
			 -ENOTSUP);
	assert_int_equal(chat_template_init(&ct, "", NULL, err, sizeof(err)),
			 -ENOTSUP);
	assert_int_equal(chat_template_init(&ct, NULL, NULL, err, sizeof(err)),
			 -ENOTSUP);
	assert_int_equal(chat_template_init(&ct, "chatml", NULL, err,
					    sizeof(err)),
			 0);
	assert_int_equal(chat_apply(&ct, bad, 1, false, out, sizeof(out)),
			 -EINVAL);
}

/* ------------------------------------------------------------------ */

int main(void)
{
	struct CMUnitTest tests[N_VOCAB_CASES + 16];
	size_t n = 0;
	int missing = 0, failed;
	char p[1024];

	vocab_dir = getenv("STRATA_VOCAB_DIR");
	if (!vocab_dir || !*vocab_dir)
		vocab_dir = "(STRATA_VOCAB_DIR unset)";
	model_path = getenv("STRATA_MODEL");

	for (size_t i = 0; i < N_VOCAB_CASES; i++) {
		const struct vocab_case *c = &vocab_cases[i];
		bool ok = true;

		for (int k = 0; k < 3 && ok; k++) {
			vocab_path(p, sizeof(p), c,
				   k == 0 ? "" : k == 1 ? ".inp" : ".out");
			ok = file_exists(p);
		}
		if (!ok) {
			printf("SKIP vocab %s: %s missing (STRATA_VOCAB_DIR; "
			       "tests/fetch-vocab.sh fetches them)\n", c->name, p);
			missing++;
			continue;
		}
		tests[n++] = (struct CMUnitTest){
			.name = c->name, .test_func = test_vocab,
			.initial_state = (void *)c};
	}
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_refuse_unknown);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(
		test_spm_more_ids_than_bytes);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_chat_zephyr);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_chat_unknown);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_chat_chatml);
	if (!file_exists(model_path) || !file_exists(FIXTURE)) {
		if (!model_path || !*model_path)
			printf("SKIP SmolLM2 tests: STRATA_MODEL is not set\n");
		else if (!file_exists(model_path))
			printf("SKIP SmolLM2 tests: no model at %s "
			       "(STRATA_MODEL)\n", model_path);
		else
			printf("SKIP SmolLM2 tests: no %s (run from the repo "
			       "root)\n", FIXTURE);
		missing++;
		failed = _cmocka_run_group_tests("tokenizer", tests, n, NULL,
						 NULL);
	} else {
		tests[n++] = (struct CMUnitTest)cmocka_unit_test(
			test_smollm2_fixture);
		tests[n++] = (struct CMUnitTest)cmocka_unit_test(
			test_smollm2_specials);
		tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_errors);
		tests[n++] = (struct CMUnitTest)cmocka_unit_test(
			test_smollm2_speed);
		failed = _cmocka_run_group_tests("tokenizer", tests, n,
						 smol_setup, smol_teardown);
	}
	if (failed)
		return 1;
	return missing ? 77 : 0;
}
