/*
 * test_decode.c - engine invariants on the real SmolLM2 model
 * ($STRATA_MODEL; skipped with exit 77 when it is missing).
 *
 * The token-level comparison against independent references (numpy,
 * llama.cpp) lives in tests/ref_check.py; here: what must hold inside the
 * engine whatever the reference says.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>
#include <numaif.h>

#include "engine/forward.h"
#include "engine/layer.h"
#include "kernels/kern.h"
#include "kernels/ops.h"
#include "memtier/trace.h"

static const char *model_path;
static char kv_dir[] = "/tmp/strata-test-kv-XXXXXX";
static int dir_entries(void);

/* SmolLM2 ids of "The capital of France is" (checked in test_tokenizer) */
static const int32_t prompt[] = {504, 3575, 282, 4649, 314};
#define N_PROMPT ((int32_t)(sizeof(prompt) / sizeof(prompt[0])))

static void open_engine_tier(struct engine *e, int threads, int32_t n_ctx,
			     bool blas, enum memtier_kind kind)
{
	struct engine_config cfg = {
		.n_threads = threads,
		.n_ctx = n_ctx,
		.prefill_blas = blas,
		.mt = {.kind = kind, .huge_pages = true},
	};
	char err[512];
	int rc = engine_init(e, model_path, &cfg, err, sizeof(err));
	if (rc)
		fprintf(stderr, "engine_init: %s\n", err);
	assert_int_equal(rc, 0);
}

static void open_engine_cfg(struct engine *e, int threads, int32_t n_ctx,
			    bool blas)
{
	open_engine_tier(e, threads, n_ctx, blas, MEMTIER_DRAM);
}

static void open_engine(struct engine *e, int threads, int32_t n_ctx)
{
	open_engine_cfg(e, threads, n_ctx, false);
}

/* greedy n tokens after the prompt; logits of every step into lg_all */
static void greedy(struct engine *e, int32_t n, int32_t *out, float *lg_all)
{
	int64_t nv = e->model.hp.n_vocab;
	float *lg = malloc((size_t)nv * sizeof(float));

	assert_int_equal(engine_prefill(e, prompt, N_PROMPT, 0, lg, false), 0);
	for (int32_t i = 0; i < n; i++) {
		if (lg_all)
			memcpy(lg_all + i * nv, lg, (size_t)nv * sizeof(float));
		out[i] = (int32_t)ops_argmax(lg, nv);
		assert_int_equal(engine_decode(e, out[i], N_PROMPT + i, lg), 0);
	}
	free(lg);
}

/* Row shards change which thread computes a row, never its arithmetic:
 * 1, 2 and 3 threads give bit-identical logits. */
/* Logits are bit-identical whatever the units: 1, 2, 3 and 4 (more than
 * CPUs) near-memory units, --nmu off with 1 and 2 threads, and an
 * emulated two-node topology; on the dram and the flash tier (a budget
 * that pins some layers and streams the rest), KV cache on flash too. */
struct unit_cfg {
	int units;
	bool off;
	const char *topology;
	enum memtier_kind tier, kv;
};

static void test_threads_bit_identical(void **state)
{
	enum { N = 24, K = 10 };
	static const struct unit_cfg cfgs[K] = {
		{1, false, NULL, MEMTIER_DRAM, MEMTIER_DRAM},
		{2, false, NULL, MEMTIER_DRAM, MEMTIER_DRAM},
		{3, false, NULL, MEMTIER_DRAM, MEMTIER_DRAM},
		{4, false, NULL, MEMTIER_DRAM, MEMTIER_DRAM},
		{1, true, NULL, MEMTIER_DRAM, MEMTIER_DRAM},
		{2, true, NULL, MEMTIER_DRAM, MEMTIER_DRAM},
		{2, false, "2x1", MEMTIER_DRAM, MEMTIER_DRAM},
		{2, false, NULL, MEMTIER_FLASH, MEMTIER_FLASH},
		{2, true, NULL, MEMTIER_FLASH, MEMTIER_FLASH},
		{3, false, "3x1", MEMTIER_FLASH, MEMTIER_DRAM},
	};
	int32_t ids[K][N];
	float *lg[K];
	int64_t nv = 0;
	char err[512];

	(void)state;
	for (int k = 0; k < K; k++) {
		struct engine e;
		struct engine_config cfg = {
			.n_threads = cfgs[k].units, .nmu_off = cfgs[k].off,
			.topology = cfgs[k].topology, .n_ctx = 256,
			.mt = {.kind = cfgs[k].tier, .huge_pages = true,
			       .prefetch = 2,
			       .dram_budget_bytes = cfgs[k].tier == MEMTIER_FLASH
							    ? 24ull << 20 : UINT64_MAX},
			.kv_kind = cfgs[k].kv, .kv_dir = kv_dir, .kv_block = 16,
		};
		int rc = engine_init(&e, model_path, &cfg, err, sizeof(err));
		if (rc)
			fprintf(stderr, "engine_init (config %d): %s\n", k, err);
		assert_int_equal(rc, 0);
		assert_int_equal(e.n_threads, cfgs[k].units);
		if (cfgs[k].topology) /* emulated nodes: unit i on node i */
			for (int i = 0; i < e.n_threads; i++)
				assert_int_equal(e.pool.units[i].node, i);
		nv = e.model.hp.n_vocab;
		lg[k] = malloc((size_t)(N * nv) * sizeof(float));
		greedy(&e, N, ids[k], lg[k]);
		engine_destroy(&e);
		assert_int_equal(dir_entries(), 0);
	}
	for (int k = 1; k < K; k++) {
		assert_memory_equal(ids[0], ids[k], sizeof(ids[0]));
		assert_memory_equal(lg[0], lg[k], (size_t)(N * nv) * sizeof(float));
	}
	for (int k = 0; k < K; k++)
		free(lg[k]);
}

/* Each unit's weights are its share, on the node the pool gave it (every
 * page of its dram arena, by move_pages(2)); its kernels read only rows
 * of its share, as many bytes as its own memtier handed out; what crosses
 * between units is the activations, counted exactly. */
static void test_units_own_their_shards(void **state)
{
	enum { N = 8 };
	struct engine e;
	int32_t ids[N];
	char err[512];

	(void)state;
	struct engine_config cfg = {
		.n_threads = 2, .topology = "2x1", .n_ctx = 64,
		.mt = {.kind = MEMTIER_DRAM, .huge_pages = true},
	};
	assert_int_equal(engine_init(&e, model_path, &cfg, err, sizeof(err)), 0);
	const struct llama_hparams *hp = &e.model.hp;
	uint64_t shard_sum = 0;
	for (int i = 0; i < e.n_threads; i++) {
		struct engine_unit *eu = &e.units[i];
		const size_t page = 4096;
		size_t n_pages = eu->mt.arena.bytes / page;
		void **pages = malloc(n_pages * sizeof(*pages));
		int *status = malloc(n_pages * sizeof(*status));
		for (size_t p = 0; p < n_pages; p++)
			pages[p] = (char *)eu->mt.arena.base + p * page;
		assert_int_equal(move_pages(0, n_pages, pages, NULL, status, 0), 0);
		size_t on_node = 0;
		for (size_t p = 0; p < n_pages; p++)
			on_node += status[p] == e.pool.units[i].mem_node;
		assert_int_equal(on_node, n_pages);
		/* and bound there, not merely first touched there */
		int mode = -1;
		unsigned long mask[16] = {0};
		assert_int_equal(get_mempolicy(&mode, mask, 16 * 64 + 1,
					       eu->mt.arena.base, MPOL_F_ADDR), 0);
		assert_int_equal(mode, MPOL_BIND);
		assert_true(mask[0] == 1ul << e.pool.units[i].mem_node);
		free(pages);
		free(status);
		shard_sum += eu->mt.arena.bytes;
	}
	/* two shares together hold about the model once (norms and one
	 * straddling KV head twice, 2 MiB rounding), not twice */
	assert_true(shard_sum < e.model.weight_bytes * 11 / 10 + (8u << 20));

	engine_units_reset(&e);
	uint64_t read0[2];
	for (int i = 0; i < 2; i++)
		read0[i] = e.units[i].mt.stats[MEMTIER_DRAM].bytes_read;
	greedy(&e, N, ids, NULL);
	for (int i = 0; i < e.n_threads; i++) {
		struct engine_unit_report r;
		struct engine_unit *eu = &e.units[i];
		engine_unit_report(&e, i, &r);
		assert_int_equal(r.foreign_rows, 0);
		/* the prompt's prefill and N decode steps */
		assert_int_equal(r.weight_bytes,
				 eu->mt.stats[MEMTIER_DRAM].bytes_read - read0[i]);
		assert_true(r.n_barriers > 0);
		/* per token and layer: x (read by both norms), att and hb, of
		 * which the other unit wrote its rows; and the head's x */
		const struct plan_unit *pu = eu->pu;
		int64_t d = hp->n_embd, ff = hp->n_ff, hd = hp->head_dim;
		int64_t per_tok = hp->n_layer * (2 * (d - plan_len(pu->embd)) +
						 (d - plan_len(pu->q_heads) * hd) +
						 (ff - plan_len(pu->ff))) +
				  (d - plan_len(pu->embd));
		uint64_t toks = (uint64_t)N + N_PROMPT;
		assert_int_equal(r.act_bytes_in, (uint64_t)per_tok * toks * 4 -
				 /* prefill's head reads only the last row */
				 (uint64_t)(N_PROMPT - 1) * (d - plan_len(pu->embd)) * 4);
	}
	engine_destroy(&e);

	/* --nmu off: one shared copy, interleaved over the nodes */
	cfg.nmu_off = true;
	assert_int_equal(engine_init(&e, model_path, &cfg, err, sizeof(err)), 0);
	int mode = -1;
	unsigned long mask[16] = {0};
	assert_int_equal(get_mempolicy(&mode, mask, 16 * 64 + 1, e.mt.arena.base,
				       MPOL_F_ADDR), 0);
	assert_int_equal(mode, MPOL_INTERLEAVE);
	engine_destroy(&e);
}

/* The prompt evaluated as a batch (batched int8 matmul kernels) and token
 * by token (matvec) must agree on every position's logits. Both quantize
 * activations to 8 bits; the kernels differ only in float summation order
 * (~2e-7 relative), but a last-bit change can flip an 8-bit rounding, and
 * over 30 layers the two paths end up as far apart as 8-bit activations
 * are from float: measured max 0.5-1.2, RMS ~0.1 on logits of magnitude
 * ~20. A real bug (wrong RoPE position, KV slot, head) moves the RMS past
 * 1. With the reference kernels (no batched kernel) the two paths are
 * bit-identical, which STRATA_KERNELS=ref checks. */
static void test_prefill_matches_decode(void **state)
{
	struct engine b;
	(void)state;
	open_engine(&b, 2, 256);
	int64_t nv = b.model.hp.n_vocab;
	float *all = malloc((size_t)nv * sizeof(float));
	float *one = malloc((size_t)nv * sizeof(float));
	bool ref = kern_isa_active() == KERN_ISA_REF;

	/* prefill of the first n tokens (last position's logits, int8 head)
	 * against decode of token n-1 after the n-1 before it */
	for (int32_t n = 1; n <= N_PROMPT; n++) {
		struct engine c;
		open_engine(&c, 2, 256);
		assert_int_equal(engine_prefill(&c, prompt, n, 0, all, false), 0);
		engine_destroy(&c);
		assert_int_equal(engine_decode(&b, prompt[n - 1], n - 1, one), 0);
		double max_diff = 0, ss = 0, max_abs = 0;
		for (int64_t v = 0; v < nv; v++) {
			double dlt = fabs((double)all[v] - one[v]);
			max_diff = fmax(max_diff, dlt);
			ss += dlt * dlt;
			max_abs = fmax(max_abs, fabs((double)all[v]));
		}
		double rms = sqrt(ss / (double)nv);
		if (getenv("STRATA_TEST_VERBOSE"))
			fprintf(stderr, "position %d: max logit diff %.4f rms %.4f\n",
				n - 1, max_diff, rms);
		if (ref)
			assert_true(max_diff == 0.0);
		assert_true(rms < 0.6);
		assert_true(max_diff < 4.0);
		assert_true(max_abs > 1.0); /* logits are not all ~0 */
	}
	free(all);
	free(one);
	engine_destroy(&b);
}

/* "The capital of France is" -> " Paris" (id 7042) under greedy */
static void test_known_continuation(void **state)
{
	struct engine e;
	int32_t out[1];
	(void)state;
	open_engine(&e, 2, 64);
	greedy(&e, 1, out, NULL);
	assert_int_equal(out[0], 7042);
	engine_destroy(&e);
}

/* The OpenBLAS prefill (dequantized tiles x SGEMM, float activations)
 * against token-by-token decode: same bounds as the int8 path, and the
 * same greedy continuation. */
static void test_prefill_blas(void **state)
{
	struct engine a, b;
	(void)state;
	open_engine_cfg(&a, 2, 64, true);
	open_engine(&b, 2, 64);
	int64_t nv = a.model.hp.n_vocab;
	float *p = malloc((size_t)nv * sizeof(float));
	float *one = malloc((size_t)nv * sizeof(float));
	double ss = 0;

	assert_int_equal(engine_prefill(&a, prompt, N_PROMPT, 0, p, false), 0);
	for (int32_t i = 0; i < N_PROMPT; i++)
		assert_int_equal(engine_decode(&b, prompt[i], i, one), 0);
	for (int64_t v = 0; v < nv; v++)
		ss += ((double)p[v] - one[v]) * ((double)p[v] - one[v]);
	assert_true(sqrt(ss / (double)nv) < 0.6);
	assert_int_equal(ops_argmax(p, nv), 7042); /* " Paris" */
	free(p);
	free(one);
	engine_destroy(&a);
	engine_destroy(&b);
}

/* Same bytes, same arithmetic: the mmap and flash tiers (flash with 0, 1
 * and 3 segments prefetched, and with DRAM budgets of none, a quarter of
 * the model and all of it) give logits bit-identical to the dram tier's,
 * and count the same weight bytes per token in total. */
static void test_tiers_identical(void **state)
{
	const int32_t n = 16;
	enum { N_RUNS = 7 };
	int32_t ids[N_RUNS][16];
	float *lg[N_RUNS];
	uint64_t bytes[N_RUNS];
	const enum memtier_kind kinds[N_RUNS] = {MEMTIER_DRAM, MEMTIER_MMAP,
		MEMTIER_FLASH, MEMTIER_FLASH, MEMTIER_FLASH, MEMTIER_FLASH,
		MEMTIER_FLASH};
	const int prefetch[N_RUNS] = {0, 0, 0, 1, 3, 2, 2};
	/* SmolLM2 holds ~97 MB of weights: a quarter, and all of it */
	const uint64_t budget[N_RUNS] = {UINT64_MAX, UINT64_MAX, UINT64_MAX,
		UINT64_MAX, UINT64_MAX, 24ull << 20, 1ull << 30};
	char err[512];
	int64_t nv = 0;

	(void)state;
	for (int k = 0; k < N_RUNS; k++) {
		struct engine e;
		struct engine_config cfg = {
			.n_threads = 2, .n_ctx = 128,
			.mt = {.kind = kinds[k], .huge_pages = true,
			       .prefetch = prefetch[k],
			       .dram_budget_bytes = budget[k]},
		};
		int rc = engine_init(&e, model_path, &cfg, err, sizeof(err));
		if (rc)
			fprintf(stderr, "engine_init: %s\n", err);
		assert_int_equal(rc, 0);
		nv = e.model.hp.n_vocab;
		lg[k] = malloc((size_t)(n * nv) * sizeof(float));
		greedy(&e, n, ids[k], lg[k]);
		bytes[k] = 0;
		struct engine_counters ec;
		engine_counters(&e, &ec);
		const struct memtier_tier_stats *mts = ec.tiers;
		for (int o = 0; o < MEMTIER_KIND_COUNT; o++)
			bytes[k] += mts[o].bytes_read;
		if (kinds[k] == MEMTIER_MMAP)
			assert_int_equal(mts[MEMTIER_DRAM].bytes_read, 0);
		if (kinds[k] == MEMTIER_FLASH && budget[k] == UINT64_MAX)
			/* every streamed byte came from the file */
			assert_true(mts[MEMTIER_FLASH].bytes_loaded >=
				    mts[MEMTIER_FLASH].bytes_read);
		if (kinds[k] == MEMTIER_FLASH && budget[k] != UINT64_MAX) {
			/* part (quarter) or all (1 GiB) resident */
			assert_true(mts[MEMTIER_DRAM].bytes_read > 0);
			if (budget[k] == (1ull << 30))
				assert_true(mts[MEMTIER_FLASH].bytes_loaded <
					    (1u << 20)); /* embedding rows only */
			else
				assert_true(mts[MEMTIER_FLASH].bytes_read > 0);
		}
		engine_destroy(&e);
	}
	for (int k = 1; k < N_RUNS; k++) {
		assert_memory_equal(ids[0], ids[k], sizeof(ids[0]));
		assert_memory_equal(lg[0], lg[k], (size_t)(n * nv) * sizeof(float));
		assert_int_equal(bytes[0], bytes[k]);
	}
	assert_true(bytes[0] > 0);
	for (int k = 0; k < N_RUNS; k++)
		free(lg[k]);
}

/* The injection hook in the flash tier: every read cut short (requeued
 * for the rest) still gives the dram tier's tokens and logits; a read
 * failing with EIO ends prefill or decode with -EIO, and the engine is
 * still destroyable (no leak under ASan). */
static void test_flash_faults(void **state)
{
	const int32_t n = 8;
	int32_t ids[2][8];
	float *lg[2];
	struct engine e;
	char err[512];
	int64_t nv;

	(void)state;
	open_engine(&e, 2, 64);
	nv = e.model.hp.n_vocab;
	lg[0] = malloc((size_t)(n * nv) * sizeof(float));
	lg[1] = malloc((size_t)(n * nv) * sizeof(float));
	greedy(&e, n, ids[0], lg[0]);
	engine_destroy(&e);

	struct engine_config cfg = {
		.n_threads = 2, .n_ctx = 64,
		.mt = {.kind = MEMTIER_FLASH, .prefetch = 2,
		       .dram_budget_bytes = UINT64_MAX,
		       .fault = MEMTIER_FAULT_SHORT, .fault_every = 1},
	};
	assert_int_equal(engine_init(&e, model_path, &cfg, err, sizeof(err)), 0);
	greedy(&e, n, ids[1], lg[1]);
	engine_destroy(&e);
	assert_memory_equal(ids[0], ids[1], sizeof(ids[0]));
	assert_memory_equal(lg[0], lg[1], (size_t)(n * nv) * sizeof(float));

	/* EIO on the 40th read: inside the prompt's layers */
	cfg.mt.fault = MEMTIER_FAULT_EIO;
	cfg.mt.fault_every = 40;
	assert_int_equal(engine_init(&e, model_path, &cfg, err, sizeof(err)), 0);
	float *one = malloc((size_t)nv * sizeof(float));
	int rc = engine_prefill(&e, prompt, N_PROMPT, 0, one, false);
	for (int32_t i = 0; rc == 0 && i < 64; i++)
		rc = engine_decode(&e, 1, N_PROMPT + i, one);
	assert_int_equal(rc, -EIO);
	engine_destroy(&e);
	free(one);
	free(lg[0]);
	free(lg[1]);
}


/* ---- KV cache on flash --------------------------------------------------- */


/* entries in kv_dir besides . and .. */
static int dir_entries(void)
{
	DIR *d = opendir(kv_dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

/* a longer prompt: the 5 prompt ids and 35 more from the vocabulary */
static void long_prompt(int32_t *t, int32_t n)
{
	for (int32_t i = 0; i < n; i++)
		t[i] = i < N_PROMPT ? prompt[i] : 300 + 37 * i;
}

static void open_kv(struct engine *e, enum memtier_kind weights,
		    enum memtier_kind kv, int32_t block, int32_t n_batch,
		    enum memtier_fault fault, uint64_t every)
{
	struct engine_config cfg = {
		.n_threads = 2, .n_ctx = 256, .n_batch = n_batch,
		.mt = {.kind = weights, .huge_pages = true, .prefetch = 2,
		       .dram_budget_bytes = UINT64_MAX, .fault = fault,
		       .fault_every = every},
		.kv_kind = kv, .kv_dir = kv_dir, .kv_block = block,
	};
	char err[512];
	int rc = engine_init(e, model_path, &cfg, err, sizeof(err));
	if (rc)
		fprintf(stderr, "engine_init: %s\n", err);
	assert_int_equal(rc, 0);
}

/* Greedy decode with the KV cache on flash (blocks of 16 and 64 tokens,
 * weights in DRAM or streamed too) gives the DRAM cache's logits bit for
 * bit over 80 tokens; exactly the full blocks are written; the file has
 * no name while the run lasts and nothing is left after it. Prefill in
 * batches of 7 that straddle blocks, and re-evaluating from position 0,
 * agree too. */
static void test_kv_flash(void **state)
{
	enum { N = 80, NP = 40, N_RUNS = 3 };
	static int32_t ids[N_RUNS][N];
	float *lg[N_RUNS];
	const enum memtier_kind weights[N_RUNS] = {MEMTIER_DRAM, MEMTIER_DRAM,
						   MEMTIER_FLASH};
	const enum memtier_kind kvk[N_RUNS] = {MEMTIER_DRAM, MEMTIER_FLASH,
					       MEMTIER_FLASH};
	const int32_t block[N_RUNS] = {0, 16, 0};
	int64_t nv = 0;

	(void)state;
	for (int k = 0; k < N_RUNS; k++) {
		struct engine e;
		open_kv(&e, weights[k], kvk[k], block[k], 0, MEMTIER_FAULT_NONE, 0);
		nv = e.model.hp.n_vocab;
		lg[k] = malloc((size_t)(N * nv) * sizeof(float));
		greedy(&e, N, ids[k], lg[k]);
		assert_int_equal(dir_entries(), 0);
		struct engine_counters ec;
		engine_counters(&e, &ec);
		struct kvcache_info info = ec.kv_info;
		const struct memtier_tier_stats *st = &ec.kv;
		/* KV heads over all units' caches (a head whose query group
		 * straddles two units is kept by both) */
		int64_t kv_heads = 0;
		for (int i = 0; i < e.plan.n_units; i++)
			kv_heads += plan_len(e.plan.unit[i].kv_heads);
		if (kvk[k] == MEMTIER_FLASH) {
			/* positions 0 .. N_PROMPT+N-1 hold rows; the last
			 * token's row is committed too */
			int64_t rows = N_PROMPT + N;
			int64_t full = rows / info.block_tokens;
			uint64_t row_bytes = (uint64_t)kv_heads * 64 * sizeof(float);
			assert_int_equal(info.block_tokens, block[k] ? block[k] : 64);
			assert_int_equal(st->bytes_written,
					 2ull * 30 * (uint64_t)full *
					 (uint64_t)info.block_tokens * row_bytes);
			assert_true(st->bytes_loaded > 0);
			/* a view reads blocks once a position >= B is decoded:
			 * positions N_PROMPT .. N_PROMPT+N-1, 30 layers each */
			int64_t reading = N_PROMPT + N - info.block_tokens;
			assert_int_equal(st->n_hit + st->n_miss, 30ull * (uint64_t)reading *
					 (uint64_t)e.plan.n_units);
			assert_true(info.drive_bytes > 0);
			/* slots and tails, far below the 2 x 30 x 256 rows */
			assert_true(info.dram_bytes < 2ull * 30 * 256 * row_bytes);
		} else {
			assert_int_equal(st->bytes_written, 0);
		}
		engine_destroy(&e);
		assert_int_equal(dir_entries(), 0);
	}
	for (int k = 1; k < N_RUNS; k++) {
		assert_memory_equal(ids[0], ids[k], sizeof(ids[0]));
		assert_memory_equal(lg[0], lg[k], (size_t)(N * nv) * sizeof(float));
	}
	for (int k = 0; k < N_RUNS; k++)
		free(lg[k]);

	/* batched prefill across blocks, then again from position 0 */
	int32_t t[NP];
	float *pl[2];
	long_prompt(t, NP);
	for (int k = 0; k < 2; k++) {
		struct engine e;
		open_kv(&e, MEMTIER_DRAM, k ? MEMTIER_FLASH : MEMTIER_DRAM, 16, 7,
			MEMTIER_FAULT_NONE, 0);
		pl[k] = malloc((size_t)(2 * NP * nv) * sizeof(float));
		assert_int_equal(engine_prefill(&e, t, NP, 0, pl[k], true), 0);
		t[3] = 1234; /* re-evaluate with one token changed */
		assert_int_equal(engine_prefill(&e, t, NP - 9, 0,
						pl[k] + NP * nv, true), 0);
		assert_int_equal(engine_prefill(&e, t + NP - 9, 9, NP - 9,
						pl[k] + (2 * NP - 9) * nv, true), 0);
		t[3] = prompt[3];
		engine_destroy(&e);
	}
	assert_memory_equal(pl[0], pl[1], (size_t)(2 * NP * nv) * sizeof(float));
	free(pl[0]);
	free(pl[1]);
	assert_int_equal(dir_entries(), 0);
}

/* Faults in the KV file's I/O: short transfers change nothing; a full
 * disk on a block write and an EIO on a read end the run with that
 * error; no file is left behind. */
static void test_kv_flash_faults(void **state)
{
	enum { N = 40 };
	int32_t ids[2][N];
	struct engine e;

	(void)state;
	open_kv(&e, MEMTIER_DRAM, MEMTIER_DRAM, 0, 0, MEMTIER_FAULT_NONE, 0);
	greedy(&e, N, ids[0], NULL);
	engine_destroy(&e);
	open_kv(&e, MEMTIER_DRAM, MEMTIER_FLASH, 16, 0, MEMTIER_FAULT_SHORT, 1);
	greedy(&e, N, ids[1], NULL);
	struct engine_counters ec;
	engine_counters(&e, &ec);
	assert_true(ec.kv.bytes_written > 0);
	engine_destroy(&e);
	assert_memory_equal(ids[0], ids[1], sizeof(ids[0]));

	const enum memtier_fault f[2] = {MEMTIER_FAULT_ENOSPC, MEMTIER_FAULT_EIO};
	const int want[2] = {-ENOSPC, -EIO};
	for (int k = 0; k < 2; k++) {
		open_kv(&e, MEMTIER_DRAM, MEMTIER_FLASH, 16, 0, f[k], 5);
		float *one = malloc((size_t)e.model.hp.n_vocab * sizeof(float));
		int rc = engine_prefill(&e, prompt, N_PROMPT, 0, one, false);
		for (int32_t i = 0; rc == 0 && i < 100; i++)
			rc = engine_decode(&e, 1, N_PROMPT + i, one);
		assert_int_equal(rc, want[k]);
		/* the engine stays usable for teardown after the error */
		engine_destroy(&e);
		free(one);
		assert_int_equal(dir_entries(), 0);
	}
}

/* --trace: a flash run with part of the model resident records compute
 * spans for every layer of every token, reads of every streamed segment,
 * and writes them as trace-event JSON */
static void test_trace(void **state)
{
	enum { N = 16 };
	struct trace tr;
	struct engine e;
	char err[512], path[] = "/tmp/strata-trace-XXXXXX";
	int32_t ids[N];

	(void)state;
	trace_init(&tr);
	struct engine_config cfg = {
		.n_threads = 2, .n_ctx = 64,
		.mt = {.kind = MEMTIER_FLASH, .prefetch = 2,
		       .dram_budget_bytes = 24ull << 20, .trace = &tr},
		.kv_kind = MEMTIER_FLASH, .kv_dir = kv_dir, .kv_block = 16,
	};
	assert_int_equal(engine_init(&e, model_path, &cfg, err, sizeof(err)), 0);
	greedy(&e, N, ids, NULL);
	int n_layer = e.model.hp.n_layer, n_units = e.plan.n_units;
	engine_destroy(&e);
	uint64_t n_compute = 0, n_io = 0, n_kv_write = 0, n_kv_read = 0;
	for (uint64_t i = 0; i < tr.n; i++) {
		n_compute += tr.ev[i].track == TRACE_COMPUTE;
		n_io += tr.ev[i].track == TRACE_IO;
		n_kv_write += !strcmp(tr.ev[i].name, "write kv");
		n_kv_read += !strcmp(tr.ev[i].name, "read kv");
		assert_true(tr.ev[i].t1_ns >= tr.ev[i].t0_ns);
	}
	/* prefill + N decode steps, every layer; reads for the streamed ones */
	assert_int_equal(n_compute, (uint64_t)((1 + N) * n_layer));
	assert_true(n_io >= 4);
	/* KV: positions 0..15 fill block 0 of every layer once, during decode,
	 * in every unit's cache; views of positions 16.. read it back */
	assert_int_equal(n_kv_write, (uint64_t)(n_layer * n_units));
	assert_true(n_kv_read >= (uint64_t)n_layer);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(trace_write(&tr, path), 0);
	FILE *f = fopen(path, "r");
	char head[64] = "";
	assert_non_null(fgets(head, sizeof(head), f));
	assert_non_null(strstr(head, "traceEvents"));
	fclose(f);
	unlink(path);
	trace_destroy(&tr);
}

static void test_context_limits(void **state)
{
	struct engine e;
	(void)state;
	open_engine(&e, 2, 8);
	float *lg = malloc((size_t)e.model.hp.n_vocab * sizeof(float));
	int32_t many[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

	assert_int_equal(engine_prefill(&e, many, 9, 0, lg, false), -ENOSPC);
	assert_int_equal(engine_prefill(&e, many, 4, 5, lg, false), -ENOSPC);
	assert_int_equal(engine_decode(&e, 1, 8, lg), -ENOSPC);
	assert_int_equal(engine_decode(&e, 1, -1, lg), -ENOSPC);
	assert_int_equal(engine_decode(&e, -5, 0, lg), -EINVAL);
	assert_int_equal(engine_decode(&e, e.model.hp.n_vocab, 0, lg), -EINVAL);
	assert_int_equal(engine_prefill(&e, many, 0, 0, lg, false), -EINVAL);
	assert_int_equal(engine_prefill(&e, many, 8, 0, lg, false), 0);
	free(lg);
	engine_destroy(&e);
}

static void test_missing_file(void **state)
{
	struct engine e;
	struct engine_config cfg = {.n_threads = 1};
	char err[512] = "";
	(void)state;
	assert_int_equal(engine_init(&e, "/nonexistent/model.gguf", &cfg, err,
				     sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/model.gguf"));
	engine_destroy(&e); /* a failed init leaves e destroyable */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_context_limits),
		cmocka_unit_test(test_known_continuation),
		cmocka_unit_test(test_prefill_matches_decode),
		cmocka_unit_test(test_prefill_blas),
		cmocka_unit_test(test_tiers_identical),
		cmocka_unit_test(test_flash_faults),
		cmocka_unit_test(test_kv_flash),
		cmocka_unit_test(test_kv_flash_faults),
		cmocka_unit_test(test_trace),
		cmocka_unit_test(test_threads_bit_identical),
		cmocka_unit_test(test_units_own_their_shards),
	};

	model_path = getenv("STRATA_MODEL");
	if (!model_path || access(model_path, R_OK)) {
		printf("SKIP: STRATA_MODEL (SmolLM2 GGUF) not set or not readable; "
		       "run `make models`\n");
		return 77;
	}
	if (kern_init() < 0) {
		printf("SKIP: STRATA_KERNELS names an ISA this CPU lacks\n");
		return 77;
	}
	if (!mkdtemp(kv_dir)) {
		perror("mkdtemp");
		return 1;
	}
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(kv_dir);
	return rc;
}
