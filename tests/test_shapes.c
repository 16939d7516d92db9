/*
 * test_shapes.c - models/shapes.h: byte counts computed without a file
 * equal those of the files mkmodel writes (tiny-test in every type mix,
 * tensor by tensor; TinyLlama-1.1B Q4_0 at full size), hand-computed
 * values for tiny-test, the K-mix layer choice, parameter counts of the
 * published shapes, and unknown names and bad shapes refused.
 *
 * The file checks run models/mkmodel (STRATA_MKMODEL overrides the path)
 * and are skipped, saying so, when it is not built. The TinyLlama file is
 * the benchmarks' default model, $STRATA_CACHE/bench/tinyllama-1.1b-q4_0.gguf
 * (bench/lib.sh); it is made there (~600 MB, ~30 s) when missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kern.h"
#include "models/gguf.h"
#include "models/shapes.h"

static const char *mkmodel_path(void)
{
	const char *p = getenv("STRATA_MKMODEL");

	return p && *p ? p : "models/mkmodel";
}

/* models/mkmodel --shape shape --type type -o out; its exit status */
static int run_mkmodel(const char *shape, const char *type, const char *out)
{
	const char *mk = mkmodel_path();
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execl(mk, mk, "--shape", shape, "--type", type, "-o", out,
		      (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/*
 * Every tensor of the GGUF at path has the type and bytes shapes gives it
 * under (s, f), there are exactly the tensors shapes sizes, and they add
 * up to shapes' total.
 */
static void check_file(const char *path, const struct shapes_model *s,
		       const struct shapes_ftype *f)
{
	struct gguf_file g;
	struct shapes_bytes mb;
	struct shapes_layer_bytes lb;
	char err[512];
	uint64_t sum = 0;
	int rc = gguf_open(&g, path, err, sizeof(err));

	if (rc)
		fail_msg("%s", err);
	assert_int_equal(shapes_model_bytes(s, f, &mb), 0);
	assert_int_equal(g.n_tensors, 3 + (uint64_t)LT_COUNT * s->n_layer);
	for (uint64_t i = 0; i < g.n_tensors; i++) {
		const struct gguf_tensor *t = &g.tensors[i];
		const char *n = t->name.s;
		uint32_t want_type;
		int64_t want_bytes;
		char part[64];
		int l, k;

		if (!strcmp(n, "token_embd.weight") ||
		    !strcmp(n, "output_norm.weight") || !strcmp(n, "output.weight")) {
			k = !strcmp(n, "token_embd.weight") ? GT_TOK_EMBD
			    : !strcmp(n, "output.weight") ? GT_OUTPUT
							  : GT_OUTPUT_NORM;
			want_type = mb.type[k];
			want_bytes = mb.bytes[k];
		} else {
			if (sscanf(n, "blk.%d.%63[^.].weight", &l, part) != 2)
				fail_msg("unexpected tensor '%s'", n);
			for (k = 0; k < LT_COUNT; k++)
				if (!strcmp(part, shapes_layer_tensor_name(k)))
					break;
			if (k == LT_COUNT)
				fail_msg("unexpected tensor '%s'", n);
			assert_int_equal(shapes_layer_bytes(s, f, l, &lb), 0);
			want_type = lb.type[k];
			want_bytes = lb.bytes[k];
		}
		if (t->type != want_type || t->n_bytes != (uint64_t)want_bytes)
			fail_msg("%s %s: tensor '%s' is %s, %llu bytes; shapes "
				 "says %s, %lld", s->name, f->name, n,
				 kern_type_info(t->type)->name,
				 (unsigned long long)t->n_bytes,
				 kern_type_info(want_type)->name,
				 (long long)want_bytes);
		sum += t->n_bytes;
	}
	assert_int_equal(sum, (uint64_t)mb.total);
	gguf_close(&g);
}

static void test_unknown_refused(void **state)
{
	const struct shapes_model *s = shapes_find("tiny-test");
	const struct shapes_ftype *f = shapes_find_ftype("q4_0");
	struct shapes_model bad;
	struct shapes_layer_bytes lb;
	struct shapes_bytes mb;
	int64_t ne[2];
	(void)state;

	assert_non_null(s);
	assert_non_null(f);
	assert_null(shapes_find("nope"));
	assert_null(shapes_find(NULL));
	assert_null(shapes_find(""));
	assert_null(shapes_find("TinyLlama-1.1B")); /* shapes: exact names */
	assert_null(shapes_find_ftype("q3_k"));
	assert_null(shapes_find_ftype(NULL));
	assert_ptr_equal(shapes_find_ftype("Q4_K_M"), shapes_find_ftype("q4_k_m"));
	assert_null(shapes_model_at(-1));
	assert_null(shapes_ftype_at(-1));
	assert_null(shapes_layer_tensor_name(LT_COUNT));
	assert_int_equal(shapes_layer_tensor_ne(s, LT_COUNT, ne), -EINVAL);
	assert_int_equal(shapes_layer_bytes(s, f, -1, &lb), -EINVAL);
	assert_int_equal(shapes_layer_bytes(s, f, s->n_layer, &lb), -EINVAL);
	assert_int_equal(shapes_layer_bytes(s, NULL, 0, &lb), -EINVAL);
	assert_int_equal(shapes_model_bytes(NULL, f, &mb), -EINVAL);
	bad = *s;
	bad.n_head = 3; /* 64 is no multiple of it */
	assert_int_equal(shapes_model_bytes(&bad, f, &mb), -EINVAL);
	bad = *s;
	bad.n_layer = 0;
	assert_int_equal(shapes_model_bytes(&bad, f, &mb), -EINVAL);
	/* every listed shape and mix can be found by its name and sized */
	for (int i = 0; shapes_model_at(i); i++) {
		assert_ptr_equal(shapes_find(shapes_model_at(i)->name),
				 shapes_model_at(i));
		for (int j = 0; shapes_ftype_at(j); j++) {
			assert_ptr_equal(shapes_find_ftype(shapes_ftype_at(j)->name),
					 shapes_ftype_at(j));
			assert_int_equal(shapes_model_bytes(shapes_model_at(i),
							    shapes_ftype_at(j), &mb), 0);
			assert_true(mb.per_token > 0 && mb.per_token < mb.total);
		}
	}
}

/*
 * tiny-test: n_embd 64, n_ff 128, 4 heads, 2 KV heads (n_embd_kv 32),
 * vocab 512. Q4_0 rows: 64 elements = 2 blocks of 18 bytes = 36, 128 = 72;
 * the output head (Q6_K) falls back to Q8_0: 2 blocks of 34 = 68.
 */
static void test_tiny_test_by_hand(void **state)
{
	const struct shapes_model *s = shapes_find("tiny-test");
	struct shapes_layer_bytes lb;
	struct shapes_bytes mb;
	static const int64_t q4_0[LT_COUNT] = {
		[LT_ATTN_NORM] = 64 * 4, [LT_WQ] = 64 * 36, [LT_WK] = 32 * 36,
		[LT_WV] = 32 * 36,       [LT_WO] = 64 * 36, [LT_FFN_NORM] = 64 * 4,
		[LT_W_GATE] = 128 * 36,  [LT_W_UP] = 128 * 36,
		[LT_W_DOWN] = 64 * 72,
	};
	(void)state;

	assert_int_equal(shapes_layer_bytes(s, shapes_find_ftype("q4_0"), 1, &lb), 0);
	for (int t = 0; t < LT_COUNT; t++)
		assert_int_equal(lb.bytes[t], q4_0[t]);
	assert_int_equal(lb.type[LT_ATTN_NORM], KT_F32);
	assert_int_equal(lb.type[LT_WQ], KT_Q4_0);
	assert_int_equal(lb.total, 21248);
	assert_int_equal(shapes_model_bytes(s, shapes_find_ftype("q4_0"), &mb), 0);
	assert_int_equal(mb.type[GT_TOK_EMBD], KT_Q4_0);
	assert_int_equal(mb.type[GT_OUTPUT], KT_Q8_0);
	assert_int_equal(mb.bytes[GT_TOK_EMBD], 512 * 36);
	assert_int_equal(mb.bytes[GT_OUTPUT_NORM], 64 * 4);
	assert_int_equal(mb.bytes[GT_OUTPUT], 512 * 68);
	assert_int_equal(mb.embd_row_bytes, 36);
	assert_int_equal(mb.layers, 2 * 21248);
	assert_int_equal(mb.total, 2 * 21248 + 18432 + 256 + 34816);
	assert_int_equal(mb.per_token, 2 * 21248 + 256 + 34816 + 36);

	/* q4_k_m: no row here is a multiple of 256, so all of it is Q8_0
	 * (68 bytes per 64 elements, 136 per 128) */
	assert_int_equal(shapes_model_bytes(s, shapes_find_ftype("q4_k_m"), &mb), 0);
	assert_int_equal(mb.layers, 2 * (256 + 64 * 68 + 2 * 32 * 68 + 64 * 68 +
					 256 + 2 * 128 * 68 + 64 * 136));
	assert_int_equal(mb.total, mb.layers + 2 * 512 * 68 + 256);
	/* f32 */
	assert_int_equal(shapes_model_bytes(s, shapes_find_ftype("f32"), &mb), 0);
	assert_int_equal(mb.total, 4 * (2 * (64 + 64 * 64 * 2 + 64 * 32 * 2 + 64 +
					     3 * 64 * 128) + 2 * 512 * 64 + 64));
}

/* llama.cpp's K-mix on TinyLlama (22 layers): Q6_K for attn_v and
 * ffn_down in layers 0, 1, 4, 7, 10, 13, 16, 19, 20, 21 */
static void test_k_mix_layers(void **state)
{
	const struct shapes_model *s = shapes_find("tinyllama-1.1b");
	const struct shapes_ftype *f = shapes_find_ftype("q4_k_m");
	static const int more[] = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
	struct shapes_layer_bytes lb;
	int m = 0;
	(void)state;

	for (int32_t l = 0; l < s->n_layer; l++) {
		bool want = m < 10 && more[m] == l;

		m += want;
		assert_int_equal(shapes_use_more_bits(l, s->n_layer), want);
		assert_int_equal(shapes_layer_bytes(s, f, l, &lb), 0);
		assert_int_equal(lb.type[LT_WQ], KT_Q4_K);
		assert_int_equal(lb.type[LT_WV], want ? KT_Q6_K : KT_Q4_K);
		assert_int_equal(lb.type[LT_W_DOWN], want ? KT_Q6_K : KT_Q4_K);
		/* attn_v: 256 rows of 2048 = 8 blocks of 210 (Q6_K) or 144;
		 * ffn_down: 2048 rows of 5632 = 22 blocks */
		assert_int_equal(lb.bytes[LT_WV], 256 * 8 * (want ? 210 : 144));
		assert_int_equal(lb.bytes[LT_W_DOWN], 2048 * 22 * (want ? 210 : 144));
	}
}

/* f32 bytes / 4 = parameters, against the published counts */
static void test_parameter_counts(void **state)
{
	static const struct { const char *name; double lo, hi; } want[] = {
		{"tinyllama-1.1b", 1.09e9, 1.11e9},
		{"llama-7b", 6.73e9, 6.74e9},
		{"llama-13b", 13.01e9, 13.02e9},
		{"llama-3-8b", 8.02e9, 8.04e9},
		{"llama-405b", 405.8e9, 405.9e9},
	};
	struct shapes_bytes mb;
	(void)state;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct shapes_model *s = shapes_find(want[i].name);

		assert_non_null(s);
		assert_int_equal(shapes_model_bytes(s, shapes_find_ftype("f32"), &mb), 0);
		if (mb.total / 4.0 < want[i].lo || mb.total / 4.0 > want[i].hi)
			fail_msg("%s: %.4g parameters", s->name, mb.total / 4.0);
	}
	/* 405B in q4_0: past 2^32 bytes, sized without overflow */
	assert_int_equal(shapes_model_bytes(shapes_find("llama-405b"),
					    shapes_find_ftype("q4_0"), &mb), 0);
	assert_true(mb.total > 200e9 && mb.total < 240e9);
}

/* tiny-test files of every mix, tensor by tensor */
static void test_mkmodel_tiny_every_mix(void **state)
{
	char dir[] = "/tmp/strata_shapes.XXXXXX", path[64];
	(void)state;

	if (access(mkmodel_path(), X_OK))
		skip(); /* main() said why */
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/m.gguf", dir);
	for (int i = 0; shapes_ftype_at(i); i++) {
		const struct shapes_ftype *f = shapes_ftype_at(i);

		assert_int_equal(run_mkmodel("tiny-test", f->name, path), 0);
		check_file(path, shapes_find("tiny-test"), f);
		unlink(path);
	}
	rmdir(dir);
}

/* TinyLlama-1.1B Q4_0 at full size: the benchmarks' default model */
static void test_mkmodel_tinyllama_q4_0(void **state)
{
	const char *cache = getenv("STRATA_CACHE"), *home = getenv("HOME");
	char dir[4096], path[4200];
	struct stat st;
	(void)state;

	if (cache && *cache)
		snprintf(dir, sizeof(dir), "%s/bench", cache);
	else
		snprintf(dir, sizeof(dir), "%s/.cache/strata/bench",
			 home ? home : ".");
	snprintf(path, sizeof(path), "%s/tinyllama-1.1b-q4_0.gguf", dir);
	if (stat(path, &st) || st.st_size == 0) {
		if (access(mkmodel_path(), X_OK))
			skip();
		fprintf(stderr, "test_shapes: making %s\n", path);
		mkdir(dir, 0755); /* the cache exists: make test fetched into it */
		assert_int_equal(run_mkmodel("tinyllama-1.1b", "q4_0", path), 0);
	}
	check_file(path, shapes_find("tinyllama-1.1b"), shapes_find_ftype("q4_0"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unknown_refused),
		cmocka_unit_test(test_tiny_test_by_hand),
		cmocka_unit_test(test_k_mix_layers),
		cmocka_unit_test(test_parameter_counts),
		cmocka_unit_test(test_mkmodel_tiny_every_mix),
		cmocka_unit_test(test_mkmodel_tinyllama_q4_0),
	};

	kern_init();
	if (access(mkmodel_path(), X_OK))
		fprintf(stderr, "test_shapes: %s is not built (make): the file "
			"checks are skipped\n", mkmodel_path());
	return cmocka_run_group_tests(tests, NULL, NULL);
}
