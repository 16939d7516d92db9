/*
 * test_plan.c - the units' shares of a model (engine/plan.h).
 *
 * Hand-computed plans of two real shapes, SmolLM2-135M and TinyLlama-1.1B,
 * at the unit counts the engine uses, checked field by field; then, for
 * every plan made here, the invariants recomputed independently: shares
 * cover [0, n) with no gap or overlap, row boundaries on multiples of
 * PLAN_ALIGN_ROWS (16) except the final n, each unit's KV heads are exactly
 * those its query heads read (h / group), kv_replicated is the number of
 * extra KV-head copies, and the balance bound the rounding guarantees.
 * plan_split is swept over n and unit counts for that bound, and its edge
 * cases are pinned; refusals must be -EINVAL with a message naming why.
 *
 * Balance, derived from plan_split (boundary i = floor(n*i/N) rounded to
 * the nearest multiple of 16, half up; 0 and n exact): an interior
 * boundary lies in (n*i/N - 8, n*i/N + 8], so every share is within less
 * than 16 rows (one line) of n/N, the first and the last within 8. Two
 * shares can thus differ by up to 23 rows, not 16: n = 153 over 9 units is
 * seven shares of 16, one of 32 and the last of 9.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/plan.h"

/* ---- shapes ------------------------------------------------------------ */

static const struct llama_hparams smollm2 = {
	.n_layer = 30, .n_embd = 576, .n_head = 9, .n_head_kv = 3,
	.head_dim = 64, .n_ff = 1536, .n_vocab = 49152, .n_ctx_train = 8192,
	.rope_dim = 64, .rope_base = 100000.0f, .rms_eps = 1e-5f,
	.tied_output = true,
};

static const struct llama_hparams tinyllama = {
	.n_layer = 22, .n_embd = 2048, .n_head = 32, .n_head_kv = 4,
	.head_dim = 64, .n_ff = 5632, .n_vocab = 32000, .n_ctx_train = 2048,
	.rope_dim = 64, .rope_base = 10000.0f, .rms_eps = 1e-5f,
};

#define R(a, b) {(a), (b)}

/* one unit's expected plan */
struct want_unit {
	struct plan_range q, kv, embd, ff, vocab, kv_part;
};

/* ---- independent checks ------------------------------------------------ */

/* the ranges of one field over all units tile [0, n): first r0 = 0, each
 * r0 = previous r1, r0 <= r1, last r1 = n; non_empty: every share has a
 * row; align: every boundary but n is a multiple of align */
static void check_cover(const struct plan *p, size_t off, int64_t n,
			bool non_empty, int64_t align, const char *what)
{
	int64_t at = 0;

	for (int i = 0; i < p->n_units; i++) {
		const struct plan_range *r =
			(const void *)((const char *)&p->unit[i] + off);
		if (r->r0 != at || r->r1 < r->r0 || (non_empty && r->r1 == r->r0))
			fail_msg("%s: unit %d of %d has [%lld, %lld), expected to "
				 "start at %lld%s", what, i, p->n_units,
				 (long long)r->r0, (long long)r->r1, (long long)at,
				 non_empty ? " and be non-empty" : "");
		if (r->r1 != n && r->r1 % align)
			fail_msg("%s: unit %d boundary %lld is not a multiple of "
				 "%lld", what, i, (long long)r->r1,
				 (long long)align);
		at = r->r1;
	}
	if (at != n)
		fail_msg("%s: shares end at %lld, not %lld", what, (long long)at,
			 (long long)n);
}

/* every share within one line of n/N, the first and last within half a
 * line (see the top of the file); shares as lengths[n_units] */
static void check_row_balance(const int64_t *len, int n_units, int64_t n,
			      const char *what)
{
	const int64_t a = PLAN_ALIGN_ROWS, N = n_units;
	int64_t lo = len[0], hi = len[0];

	for (int i = 0; i < n_units; i++) {
		int64_t dev = len[i] * N - n; /* N * (len - n/N) */
		if (!(dev > -a * N && dev < a * N))
			fail_msg("%s: share %d of %d is %lld rows, n/N = %.2f",
				 what, i, n_units, (long long)len[i], (double)n / N);
		lo = len[i] < lo ? len[i] : lo;
		hi = len[i] > hi ? len[i] : hi;
	}
	/* first: boundary 1 in (n/N - 8, n/N + 8]; last: n minus boundary
	 * N-1, so in [n/N - 8, n/N + 8) */
	int64_t d0 = len[0] * N - n, dl = len[n_units - 1] * N - n;
	if (n_units > 1 && !(d0 > -a / 2 * N && d0 <= a / 2 * N))
		fail_msg("%s: first share %lld rows, n/N = %.2f", what,
			 (long long)len[0], (double)n / N);
	if (n_units > 1 && !(dl >= -a / 2 * N && dl < a / 2 * N))
		fail_msg("%s: last share %lld rows, n/N = %.2f", what,
			 (long long)len[n_units - 1], (double)n / N);
	assert_true(hi - lo <= a + a / 2 - 1);
}

static void check_plan_rows(const struct plan *p, size_t off, int64_t n,
			    const char *what)
{
	int64_t len[PLAN_MAX_UNITS];

	check_cover(p, off, n, true, PLAN_ALIGN_ROWS, what);
	for (int i = 0; i < p->n_units; i++)
		len[i] = plan_len(*(const struct plan_range *)
				  ((const char *)&p->unit[i] + off));
	check_row_balance(len, p->n_units, n, what);
}

/* Every invariant of a plan of hp, recomputed from the definitions. */
static void check_invariants(const struct plan *p,
			     const struct llama_hparams *hp)
{
	const int group = hp->n_head / hp->n_head_kv;
	int holders[1024] = {0}; /* units keeping each KV head */
	int qmin = hp->n_head, qmax = 0, copies = 0;

	assert_true(hp->n_head_kv <= 1024);
	check_cover(p, offsetof(struct plan_unit, q_heads), hp->n_head, true, 1,
		    "q_heads");
	check_cover(p, offsetof(struct plan_unit, kv_part), hp->n_head_kv, false,
		    1, "kv_part");
	check_plan_rows(p, offsetof(struct plan_unit, embd), hp->n_embd, "embd");
	check_plan_rows(p, offsetof(struct plan_unit, ff), hp->n_ff, "ff");
	check_plan_rows(p, offsetof(struct plan_unit, vocab), hp->n_vocab,
			"vocab");
	for (int i = 0; i < p->n_units; i++) {
		const struct plan_unit *u = &p->unit[i];
		bool reads[1024] = {false};

		/* the KV heads its query heads read, as a set */
		for (int64_t h = u->q_heads.r0; h < u->q_heads.r1; h++)
			reads[h / group] = true;
		for (int k = 0; k < hp->n_head_kv; k++) {
			bool kept = k >= u->kv_heads.r0 && k < u->kv_heads.r1;
			if (kept != reads[k])
				fail_msg("unit %d: query heads [%lld, %lld) %s KV "
					 "head %d but kv_heads is [%lld, %lld)", i,
					 (long long)u->q_heads.r0,
					 (long long)u->q_heads.r1,
					 reads[k] ? "read" : "do not read", k,
					 (long long)u->kv_heads.r0,
					 (long long)u->kv_heads.r1);
			holders[k] += kept;
		}
		/* shared mode: the query heads of its whole KV groups */
		assert_int_equal(u->q_part.r0, u->kv_part.r0 * group);
		assert_int_equal(u->q_part.r1, u->kv_part.r1 * group);
		int64_t nq = plan_len(u->q_heads);
		qmin = nq < qmin ? (int)nq : qmin;
		qmax = nq > qmax ? (int)nq : qmax;
	}
	/* query heads: floor split, shares differ by at most one head */
	assert_true(qmax - qmin <= 1);
	for (int k = 0; k < hp->n_head_kv; k++) {
		assert_true(holders[k] >= 1);
		copies += holders[k] - 1;
	}
	assert_int_equal(p->kv_replicated, copies);
}

/* plan_init must succeed and match want[n_units] field by field */
static void check_plan(const struct llama_hparams *hp, int n_units,
		       const struct want_unit *want, int kv_replicated)
{
	struct plan *p = malloc(sizeof(*p));
	char err[256] = "";

	assert_non_null(p);
	struct plan_config cfg = {.n_units = n_units};
	assert_int_equal(plan_init(p, hp, &cfg, err, sizeof(err)), 0);
	assert_string_equal(err, "");
	assert_int_equal(p->n_units, n_units);
	assert_int_equal(p->n_nodes, 1);
	assert_int_equal(p->kv_replicated, kv_replicated);
	for (int i = 0; i < n_units; i++) {
		const struct plan_unit *u = &p->unit[i];
		const struct want_unit *w = &want[i];
		const struct plan_range got[6] = {u->q_heads, u->kv_heads, u->embd,
						  u->ff, u->vocab, u->kv_part};
		const struct plan_range exp[6] = {w->q, w->kv, w->embd, w->ff,
						  w->vocab, w->kv_part};
		static const char *name[6] = {"q_heads", "kv_heads", "embd", "ff",
					      "vocab", "kv_part"};
		for (int f = 0; f < 6; f++)
			if (got[f].r0 != exp[f].r0 || got[f].r1 != exp[f].r1)
				fail_msg("%d units, unit %d %s: [%lld, %lld), "
					 "expected [%lld, %lld)", n_units, i, name[f],
					 (long long)got[f].r0, (long long)got[f].r1,
					 (long long)exp[f].r0, (long long)exp[f].r1);
		assert_int_equal(u->cpu, -1);
		assert_int_equal(u->node, 0);
	}
	check_invariants(p, hp);
	free(p);
}

/* ---- SmolLM2-135M: 9 heads, 3 KV heads (group 3) ----------------------- */

static void test_smollm2_1(void **state)
{
	static const struct want_unit w[] = {
		{R(0, 9), R(0, 3), R(0, 576), R(0, 1536), R(0, 49152), R(0, 3)},
	};
	check_plan(&smollm2, 1, w, 0);
}

/* heads 9/2 = 4: [0,4) reads KV 0 (heads 0-2) and 1 (head 3), [4,9)
 * reads 1 (4, 5) and 2: KV head 1 is kept twice. Rows halve exactly
 * (288 = 18 lines, 768 = 48, 24576 = 1536). KV groups 3/2 = 1. */
static void test_smollm2_2(void **state)
{
	static const struct want_unit w[] = {
		{R(0, 4), R(0, 2), R(0, 288), R(0, 768), R(0, 24576), R(0, 1)},
		{R(4, 9), R(1, 3), R(288, 576), R(768, 1536), R(24576, 49152),
		 R(1, 3)},
	};
	check_plan(&smollm2, 2, w, 1);
}

/* one KV group per unit, nothing replicated; rows 192, 512, 16384 */
static void test_smollm2_3(void **state)
{
	static const struct want_unit w[] = {
		{R(0, 3), R(0, 1), R(0, 192), R(0, 512), R(0, 16384), R(0, 1)},
		{R(3, 6), R(1, 2), R(192, 384), R(512, 1024), R(16384, 32768),
		 R(1, 2)},
		{R(6, 9), R(2, 3), R(384, 576), R(1024, 1536), R(32768, 49152),
		 R(2, 3)},
	};
	check_plan(&smollm2, 3, w, 0);
}

/* heads at 9i/4 = 0, 2, 4, 6: [0,2) reads KV 0; [2,4) KV 0 and 1; [4,6)
 * KV 1; [6,9) KV 2: KV heads 0 and 1 are kept twice. Rows 144 (9
 * lines), 384, 12288. KV groups 3i/4 = 0, 0, 1, 2: unit 0 has none. */
static void test_smollm2_4(void **state)
{
	static const struct want_unit w[] = {
		{R(0, 2), R(0, 1), R(0, 144), R(0, 384), R(0, 12288), R(0, 0)},
		{R(2, 4), R(0, 2), R(144, 288), R(384, 768), R(12288, 24576),
		 R(0, 1)},
		{R(4, 6), R(1, 2), R(288, 432), R(768, 1152), R(24576, 36864),
		 R(1, 2)},
		{R(6, 9), R(2, 3), R(432, 576), R(1152, 1536), R(36864, 49152),
		 R(2, 3)},
	};
	check_plan(&smollm2, 4, w, 2);
}

/* ---- TinyLlama-1.1B: 32 heads, 4 KV heads (group 8) -------------------- */

static void test_tinyllama_1(void **state)
{
	static const struct want_unit w[] = {
		{R(0, 32), R(0, 4), R(0, 2048), R(0, 5632), R(0, 32000), R(0, 4)},
	};
	check_plan(&tinyllama, 1, w, 0);
}

/* 16 heads = two whole groups each; 1024, 2816 (176 lines), 16000 (1000) */
static void test_tinyllama_2(void **state)
{
	static const struct want_unit w[] = {
		{R(0, 16), R(0, 2), R(0, 1024), R(0, 2816), R(0, 16000), R(0, 2)},
		{R(16, 32), R(2, 4), R(1024, 2048), R(2816, 5632), R(16000, 32000),
		 R(2, 4)},
	};
	check_plan(&tinyllama, 2, w, 0);
}

/*
 * heads at 32i/3 = 0, 10, 21: [0,10) reads KV 0-1, [10,21) KV 1-2 (heads
 * 10..20 / 8), [21,32) KV 2-3: KV heads 1 and 2 kept twice.
 * Rows are not divisible by 3, so boundaries round to the nearest line:
 *   n_embd 2048: 682 -> 688 (690/16 = 43), 1365 -> 1360 (1373/16 = 85):
 *                shares 688, 672, 688;
 *   n_ff 5632:   1877 -> 1872 (117), 3754 -> 3760 (235): 1872, 1888, 1872;
 *   vocab 32000: 10666 -> 10672 (667), 21333 -> 21328 (1333):
 *                10672, 10656, 10672.
 * KV groups 4i/3 = 0, 1, 2: 1, 1 and 2 groups.
 */
static void test_tinyllama_3(void **state)
{
	static const struct want_unit w[] = {
		{R(0, 10), R(0, 2), R(0, 688), R(0, 1872), R(0, 10672), R(0, 1)},
		{R(10, 21), R(1, 3), R(688, 1360), R(1872, 3760), R(10672, 21328),
		 R(1, 2)},
		{R(21, 32), R(2, 4), R(1360, 2048), R(3760, 5632), R(21328, 32000),
		 R(2, 4)},
	};
	check_plan(&tinyllama, 3, w, 2);
}

/*
 * 2 heads a unit: unit i reads KV head i/4 only, so each KV head is kept
 * by 4 units: 4 * 3 = 12 extra copies. Rows split exactly: 128 (8 lines),
 * 352 (22), 2000 (125). KV groups 4i/16: units 3, 7, 11, 15 get one group
 * each, the others none.
 */
static void test_tinyllama_16(void **state)
{
	struct want_unit w[16];

	for (int i = 0; i < 16; i++) {
		int g = (i + 1) / 4; /* groups 4i/16 .. 4(i+1)/16 */
		w[i] = (struct want_unit){
			R(2 * i, 2 * i + 2), R(i / 4, i / 4 + 1),
			R(128 * i, 128 * i + 128), R(352 * i, 352 * i + 352),
			R(2000 * i, 2000 * i + 2000), R(i / 4, g),
		};
	}
	check_plan(&tinyllama, 16, w, 12);

	/* two units spelled out, so the loop is not the only statement */
	struct plan *p = malloc(sizeof(*p));
	char err[256];
	assert_non_null(p);
	struct plan_config cfg = {.n_units = 16};
	assert_int_equal(plan_init(p, &tinyllama, &cfg, err, sizeof(err)), 0);
	const struct plan_unit *u3 = &p->unit[3], *u5 = &p->unit[5];
	assert_true(u3->q_heads.r0 == 6 && u3->q_heads.r1 == 8);
	assert_true(u3->kv_heads.r0 == 0 && u3->kv_heads.r1 == 1);
	assert_true(u3->kv_part.r0 == 0 && u3->kv_part.r1 == 1);
	assert_true(u3->q_part.r0 == 0 && u3->q_part.r1 == 8);
	assert_true(u5->q_heads.r0 == 10 && u5->q_heads.r1 == 12);
	assert_true(u5->kv_heads.r0 == 1 && u5->kv_heads.r1 == 2);
	assert_true(u5->embd.r0 == 640 && u5->embd.r1 == 768);
	assert_true(u5->ff.r0 == 1760 && u5->ff.r1 == 2112);
	assert_true(u5->vocab.r0 == 10000 && u5->vocab.r1 == 12000);
	assert_true(u5->kv_part.r0 == 1 && u5->kv_part.r1 == 1);
	free(p);
}

/* every unit count the engine allows, for both shapes: invariants only */
static void test_all_unit_counts(void **state)
{
	const struct llama_hparams *hps[] = {&smollm2, &tinyllama};
	struct plan *p = malloc(sizeof(*p));
	char err[256];

	assert_non_null(p);
	for (size_t s = 0; s < 2; s++) {
		for (int n = 1; n <= hps[s]->n_head; n++) {
			struct plan_config cfg = {.n_units = n};
			int rc = plan_init(p, hps[s], &cfg, err, sizeof(err));
			if (rc)
				fail_msg("%d units: %d (%s)", n, rc, err);
			check_invariants(p, hps[s]);
		}
	}
	free(p);
}

/* cpu and node are copied; n_nodes counts distinct nodes */
static void test_cpus_and_nodes(void **state)
{
	struct plan *p = malloc(sizeof(*p));
	const int cpus[4] = {3, 1, 7, 5}, nodes[4] = {1, 0, 1, 2};
	char err[256];

	assert_non_null(p);
	struct plan_config cfg = {.n_units = 4, .unit_cpu = cpus,
				  .unit_node = nodes};
	assert_int_equal(plan_init(p, &smollm2, &cfg, err, sizeof(err)), 0);
	assert_int_equal(p->n_nodes, 3);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(p->unit[i].cpu, cpus[i]);
		assert_int_equal(p->unit[i].node, nodes[i]);
	}
	const int same[2] = {4, 4};
	cfg = (struct plan_config){.n_units = 2, .unit_node = same};
	assert_int_equal(plan_init(p, &smollm2, &cfg, err, sizeof(err)), 0);
	assert_int_equal(p->n_nodes, 1);
	assert_int_equal(p->unit[1].cpu, -1);
	free(p);
}

/* ---- refusals ------------------------------------------------------------ */

static void expect_refused(const struct llama_hparams *hp, int n_units,
			   const char *const *needles)
{
	struct plan *p = malloc(sizeof(*p));
	char err[256] = "";

	assert_non_null(p);
	struct plan_config cfg = {.n_units = n_units};
	assert_int_equal(plan_init(p, hp, &cfg, err, sizeof(err)), -EINVAL);
	for (; *needles; needles++)
		if (!strstr(err, *needles))
			fail_msg("%d units: message '%s' lacks '%s'", n_units, err,
				 *needles);
	free(p);
}

static void test_refusals(void **state)
{
	/* unit counts outside [1, PLAN_MAX_UNITS] */
	expect_refused(&smollm2, 0, (const char *[]){"0 units", "256", NULL});
	expect_refused(&smollm2, -3, (const char *[]){"-3 units", NULL});
	expect_refused(&smollm2, PLAN_MAX_UNITS + 1,
		       (const char *[]){"257 units", NULL});
	/* more units than query heads */
	expect_refused(&smollm2, 10,
		       (const char *[]){"10 units", "9 attention heads", NULL});
	expect_refused(&tinyllama, 33,
		       (const char *[]){"33 units", "32 attention heads", NULL});

	/* A unit left without rows: 8 units over n_embd 64 put boundaries at
	 * 8i rounded to 16: 0, 16, 16, ... so unit 1 has none. */
	struct llama_hparams small = {
		.n_layer = 1, .n_embd = 64, .n_head = 8, .n_head_kv = 8,
		.head_dim = 8, .n_ff = 4096, .n_vocab = 4096,
	};
	expect_refused(&small, 8, (const char *[]){"unit 1", "n_embd",
						  "64 rows", "16", NULL});
	/* n_ff 160 over 16 units: 10i rounds to 0, 16, 16: unit 1 again */
	small = (struct llama_hparams){
		.n_layer = 1, .n_embd = 4096, .n_head = 32, .n_head_kv = 8,
		.head_dim = 128, .n_ff = 160, .n_vocab = 32000,
	};
	expect_refused(&small, 16, (const char *[]){"unit 1", "FFN",
						   "160 rows", NULL});
	/* vocab 100 over 8 units: 12, 25, 37 round to 16, 32, 32: unit 2 */
	small = (struct llama_hparams){
		.n_layer = 1, .n_embd = 4096, .n_head = 32, .n_head_kv = 8,
		.head_dim = 128, .n_ff = 8192, .n_vocab = 100,
	};
	expect_refused(&small, 8, (const char *[]){"unit 2", "vocabulary",
						  "100 rows", NULL});
	/* the same shape at 6 units fits (100/6: 16, 33->32, 50->48, ...) */
	struct plan *p = malloc(sizeof(*p));
	char err[256];
	assert_non_null(p);
	struct plan_config cfg = {.n_units = 6};
	assert_int_equal(plan_init(p, &small, &cfg, err, sizeof(err)), 0);
	check_invariants(p, &small);
	free(p);
}

/* ---- chips ---------------------------------------------------------------- */

#define RR(a, b) ((struct plan_range){(a), (b)})

static void expect_range(const char *what, struct plan_range got,
			 struct plan_range want)
{
	if (got.r0 != want.r0 || got.r1 != want.r1)
		fail_msg("%s: [%lld, %lld), expected [%lld, %lld)", what,
			 (long long)got.r0, (long long)got.r1, (long long)want.r0,
			 (long long)want.r1);
}

static struct plan *chip_plan(const struct llama_hparams *hp, int chips,
			      int chip, int units, enum plan_tp tp, int64_t wo,
			      int64_t down, int want_rc, char *err)
{
	struct plan *p = malloc(sizeof(*p));
	assert_non_null(p);
	struct plan_config cfg = {.n_chips = chips, .chip = chip, .tp = tp,
				  .wo_block = wo, .down_block = down,
				  .n_units = units};
	err[0] = '\0';
	int rc = plan_init(p, hp, &cfg, err, 256);
	if (rc != want_rc)
		fail_msg("chips %d chip %d units %d: rc %d (%s), want %d", chips,
			 chip, units, rc, err, want_rc);
	return p;
}

/* chips hold whole KV heads and their query heads, then 16-row slices;
 * a chip's units split the chip's slice (hand-computed) */
static void test_chips_rows(void **state)
{
	char err[256];
	(void)state;

	/* TinyLlama, 2 chips: 4 KV heads -> 2 each, 16 query heads each */
	struct plan *p = chip_plan(&tinyllama, 2, 1, 2, PLAN_TP_ROWS, 0, 0, 0, err);
	expect_range("chip 0 kv", p->chips[0].kv_heads, RR(0, 2));
	expect_range("chip 1 q", p->chips[1].q_heads, RR(16, 32));
	expect_range("chip 0 embd", p->chips[0].embd, RR(0, 1024));
	expect_range("chip 1 ff", p->chips[1].ff, RR(2816, 5632));
	expect_range("chip 1 vocab", p->chips[1].vocab, RR(16000, 32000));
	/* chip 1's two units */
	expect_range("unit 0 q", p->unit[0].q_heads, RR(16, 24));
	expect_range("unit 1 q", p->unit[1].q_heads, RR(24, 32));
	expect_range("unit 0 kv", p->unit[0].kv_heads, RR(2, 3));
	expect_range("unit 1 embd", p->unit[1].embd, RR(1536, 2048));
	expect_range("unit 0 ff", p->unit[0].ff, RR(2816, 4224));
	expect_range("unit 1 vocab", p->unit[1].vocab, RR(24000, 32000));
	assert_int_equal(p->kv_replicated, 0);
	free(p);

	/* SmolLM2, 2 chips: 3 KV heads split 1 / 2, so 3 and 6 query heads;
	 * chip 1's 2 units: 3 + 3 heads, KV heads 1 and 2 */
	p = chip_plan(&smollm2, 2, 1, 2, PLAN_TP_ROWS, 0, 0, 0, err);
	expect_range("smol chip 0 q", p->chips[0].q_heads, RR(0, 3));
	expect_range("smol chip 1 kv", p->chips[1].kv_heads, RR(1, 3));
	expect_range("smol chip 0 embd", p->chips[0].embd, RR(0, 288));
	expect_range("smol unit 1 kv", p->unit[1].kv_heads, RR(2, 3));
	expect_range("smol unit 0 embd", p->unit[0].embd, RR(288, 432));
	free(p);

	/* 3 chips of SmolLM2: one KV head each */
	p = chip_plan(&smollm2, 3, 2, 1, PLAN_TP_ROWS, 0, 0, 0, err);
	expect_range("smol3 chip 2 q", p->chips[2].q_heads, RR(6, 9));
	expect_range("smol3 chip 1 embd", p->chips[1].embd, RR(192, 384));
	free(p);

	/* refusals: more chips than KV heads; more units than the chip's
	 * query heads */
	p = chip_plan(&tinyllama, 5, 0, 1, PLAN_TP_ROWS, 0, 0, -EINVAL, err);
	assert_non_null(strstr(err, "4 KV heads"));
	assert_non_null(strstr(err, "at most 4 chips"));
	free(p);
	p = chip_plan(&smollm2, 3, 1, 4, PLAN_TP_ROWS, 0, 0, -EINVAL, err);
	assert_non_null(strstr(err, "chip 1 has 3 attention heads"));
	free(p);
}

/* --tp allreduce: every chip's units split all of n_embd; the chip's
 * n_ff slice on down's block; Wo columns (the chip's heads) on Wo's */
static void test_chips_allreduce(void **state)
{
	char err[256];
	(void)state;

	struct plan *p = chip_plan(&tinyllama, 2, 0, 2, PLAN_TP_ALLREDUCE, 256,
				   256, 0, err);
	expect_range("ar chip 1 embd", p->chips[1].embd, RR(0, 2048));
	/* 5632 = 22 blocks of 256: 2816 is 11 blocks */
	expect_range("ar chip 0 ff", p->chips[0].ff, RR(0, 2816));
	expect_range("ar unit 1 embd", p->unit[1].embd, RR(1024, 2048));
	free(p);
	/* 3 chips, Q4_K blocks: ff 5632 / 3 = 1877 rounds to 1792 (7 blocks) */
	p = chip_plan(&tinyllama, 3, 1, 1, PLAN_TP_ALLREDUCE, 256, 256, 0, err);
	expect_range("ar3 chip 0 ff", p->chips[0].ff, RR(0, 1792));
	expect_range("ar3 chip 1 ff", p->chips[1].ff, RR(1792, 3840));
	free(p);
	/* SmolLM2's 3-head chip 0 has Wo columns 0..192: fine for 32-blocks,
	 * off a 256-block */
	p = chip_plan(&smollm2, 2, 0, 1, PLAN_TP_ALLREDUCE, 32, 32, 0, err);
	free(p);
	p = chip_plan(&smollm2, 2, 0, 1, PLAN_TP_ALLREDUCE, 256, 32, -EINVAL, err);
	assert_non_null(strstr(err, "quantization blocks of 256"));
	assert_non_null(strstr(err, "0..192"));
	free(p);
	/* rows mode ignores the blocks */
	p = chip_plan(&smollm2, 2, 0, 1, PLAN_TP_ROWS, 256, 256, 0, err);
	free(p);
}

/* ---- plan_split ---------------------------------------------------------- */

static void expect_split(int64_t n, int n_units, int64_t align,
			 const int64_t *bounds /* [n_units + 1] */)
{
	for (int i = 0; i < n_units; i++) {
		struct plan_range r = plan_split(n, i, n_units, align);
		if (r.r0 != bounds[i] || r.r1 != bounds[i + 1])
			fail_msg("split(%lld, %d of %d, align %lld) = [%lld, %lld), "
				 "expected [%lld, %lld)", (long long)n, i, n_units,
				 (long long)align, (long long)r.r0, (long long)r.r1,
				 (long long)bounds[i], (long long)bounds[i + 1]);
	}
}

#define B(...) ((const int64_t[]){__VA_ARGS__})

static void test_split_edges(void **state)
{
	/* nothing to split */
	expect_split(0, 1, 1, B(0, 0));
	expect_split(0, 3, 16, B(0, 0, 0, 0));
	/* one unit takes everything, aligned or not */
	expect_split(17, 1, 16, B(0, 17));
	expect_split(5, 1, 16, B(0, 5));
	/* align 1 (and 0, treated alike): floor(n*i/N) */
	expect_split(10, 3, 1, B(0, 3, 6, 10));
	expect_split(10, 3, 0, B(0, 3, 6, 10));
	expect_split(2, 3, 1, B(0, 0, 1, 2));
	/* fewer rows than a line: the first share is empty */
	expect_split(10, 2, 16, B(0, 0, 10));
	expect_split(15, 2, 16, B(0, 0, 15));
	/* 8 rounds half up to 16: the last share of 16 rows is empty */
	expect_split(16, 2, 16, B(0, 16, 16));
	expect_split(17, 2, 16, B(0, 16, 17));
	expect_split(23, 2, 16, B(0, 16, 23));
	expect_split(24, 2, 16, B(0, 16, 24));
	expect_split(48, 2, 16, B(0, 32, 48));
	/* the widest spread the rounding allows: 32 next to 9 */
	expect_split(153, 9, 16,
		     B(0, 16, 32, 48, 64, 80, 96, 112, 144, 153));
	/* an align that is not a power of two: 5 -> (5+1)/3*3 = 6 */
	expect_split(10, 2, 3, B(0, 6, 10));
	/* int64 rows: 2^40/3 = 366503875925.3 -> 366503875920 (the +8 is
	 * below the next line), 2^41/3 = 733007751850.7 -> 733007751856 */
	expect_split(INT64_C(1) << 40, 3, 16,
		     B(0, INT64_C(366503875920), INT64_C(733007751856),
		       INT64_C(1) << 40));
}

/* cover, alignment and balance for every n up to 3000 and N up to 40 */
static void test_split_sweep(void **state)
{
	int64_t len[64];

	for (int N = 1; N <= 40; N++) {
		for (int64_t n = 0; n <= 3000; n++) {
			int64_t at = 0;
			for (int i = 0; i < N; i++) {
				struct plan_range r = plan_split(n, i, N,
								 PLAN_ALIGN_ROWS);
				if (r.r0 != at || r.r1 < r.r0 ||
				    (r.r1 != n && r.r1 % PLAN_ALIGN_ROWS))
					fail_msg("split(%lld, %d of %d) = [%lld, "
						 "%lld) after %lld", (long long)n, i,
						 N, (long long)r.r0, (long long)r.r1,
						 (long long)at);
				len[i] = plan_len(r);
				at = r.r1;
			}
			assert_int_equal(at, n);
			char what[64];
			snprintf(what, sizeof(what), "split(%lld, %d)",
				 (long long)n, N);
			check_row_balance(len, N, n, what);
			/* unaligned: a floor split, shares differ by <= 1 */
			int64_t lo = n, hi = 0;
			for (int i = 0; i < N; i++) {
				int64_t l = plan_len(plan_split(n, i, N, 1));
				lo = l < lo ? l : lo;
				hi = l > hi ? l : hi;
			}
			assert_true(hi - lo <= 1);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_smollm2_1),
		cmocka_unit_test(test_smollm2_2),
		cmocka_unit_test(test_smollm2_3),
		cmocka_unit_test(test_smollm2_4),
		cmocka_unit_test(test_tinyllama_1),
		cmocka_unit_test(test_tinyllama_2),
		cmocka_unit_test(test_tinyllama_3),
		cmocka_unit_test(test_tinyllama_16),
		cmocka_unit_test(test_all_unit_counts),
		cmocka_unit_test(test_cpus_and_nodes),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_chips_rows),
		cmocka_unit_test(test_chips_allreduce),
		cmocka_unit_test(test_split_edges),
		cmocka_unit_test(test_split_sweep),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
