/*
 * forward.c - the engine: model, placement and the near-memory unit pool;
 * decode and prefill as jobs of the per-layer step (engine/layer.h) on
 * every unit. See forward.h.
 */
#include "engine/forward.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <numa.h>

#include "engine/layer.h"
#include "models/util.h"
#include "kernels/kern.h"

/* ---- tensor bookkeeping ------------------------------------------------ */

static uint32_t layer_id(int32_t l, int i)
{
	return (uint32_t)l * LT_COUNT + (uint32_t)i;
}

/* rows [r0, r1) of tensor g: the whole tensor for a NULL share */
static struct memtier_tensor tensor_rows(const struct gguf_tensor *g,
					 const struct plan_range *rows)
{
	struct memtier_tensor t = {g->file_offset, g->n_bytes, g->row_bytes};

	if (rows) {
		t.file_offset += (uint64_t)rows->r0 * g->row_bytes;
		t.n_bytes = (uint64_t)plan_len(*rows) * g->row_bytes;
	}
	return t;
}

/* the tensors and segments one memtier instance is given */
struct tensor_list {
	struct memtier_tensor *t; /* [n] */
	uint32_t *ids;            /* [n] */
	struct memtier_segment *segs; /* [n_segs] */
	uint32_t n, n_segs;
};

/*
 * Describe the tensors to a memtier instance: ids 0 .. n_layer*LT_COUNT-1
 * are the layers' tensors, then token_embd, output_norm, output; segments:
 * one per layer, then the output head. eu == NULL: whole tensors (shared
 * mode), else the unit's share of each (its rows; norms whole).
 */
static void describe(const struct engine *e, const struct engine_unit *eu,
		     struct tensor_list *tl)
{
	const struct llama_model *m = &e->model;
	const int64_t hd = m->hp.head_dim;
	int32_t L = m->hp.n_layer;
	uint32_t n = (uint32_t)L * LT_COUNT + GT_COUNT;
	struct plan_range q, kv;

	tl->n = n;
	tl->n_segs = (uint32_t)L + 1;
	tl->t = xcalloc(n, sizeof(*tl->t));
	tl->ids = xcalloc(n, sizeof(*tl->ids));
	tl->segs = xcalloc(tl->n_segs, sizeof(*tl->segs));
	if (eu) {
		q = (struct plan_range){eu->qh.r0 * hd, eu->qh.r1 * hd};
		kv = (struct plan_range){eu->kvh.r0 * hd, eu->kvh.r1 * hd};
	}
	for (int32_t l = 0; l < L; l++) {
		const struct plan_range *share[LT_COUNT] = {
			[LT_WQ] = &q, [LT_WK] = &kv, [LT_WV] = &kv,
			[LT_WO] = eu ? &eu->pu->embd : NULL,
			[LT_W_GATE] = eu ? &eu->pu->ff : NULL,
			[LT_W_UP] = eu ? &eu->pu->ff : NULL,
			[LT_W_DOWN] = eu ? &eu->pu->embd : NULL,
		};
		for (int i = 0; i < LT_COUNT; i++)
			tl->t[layer_id(l, i)] = tensor_rows(m->layer[layer_id(l, i)],
							    eu ? share[i] : NULL);
	}
	for (int i = 0; i < GT_COUNT; i++)
		tl->t[(uint32_t)L * LT_COUNT + i] =
			tensor_rows(m->global[i], eu && i != GT_OUTPUT_NORM
							  ? &eu->pu->vocab : NULL);
	for (uint32_t i = 0; i < n; i++)
		tl->ids[i] = i;
	for (int32_t l = 0; l < L; l++) {
		tl->segs[l].n = LT_COUNT;
		tl->segs[l].ids = &tl->ids[layer_id(l, 0)];
	}
	tl->segs[L].n = 2;
	tl->segs[L].ids = &tl->ids[e->id_output_norm];
}

static void tensor_list_free(struct tensor_list *tl)
{
	free(tl->t);
	free(tl->ids);
	free(tl->segs);
}

/* memtier settings of a unit's instances (eu NULL: the shared one): its
 * memory bound to its node, or the shared copy interleaved over nodes */
static struct memtier_config unit_mt_config(const struct engine *e,
					    const struct engine_unit *eu)
{
	struct memtier_config mc = e->cfg.mt;

	/* a kernel without NUMA support has no policy to set (mbind would
	 * fail with ENOSYS): first touch on the unit's own thread it is */
	if (numa_available() < 0)
		return mc;
	mc.numa = eu ? MEMTIER_NUMA_BIND : MEMTIER_NUMA_INTERLEAVE;
	mc.numa_node = eu ? eu->nu->mem_node : -1;
	return mc;
}

static int place_weights(struct engine *e, struct engine_unit *eu,
			 struct memtier *mt, uint64_t budget, char *err,
			 size_t errlen)
{
	struct memtier_config mc = unit_mt_config(e, eu);
	struct tensor_list tl;

	mc.dram_budget_bytes = budget;
	describe(e, eu, &tl);
	int rc = memtier_open(mt, &mc, e->gguf.path, tl.t, tl.n, tl.segs,
			      tl.n_segs, err, errlen);
	tensor_list_free(&tl);
	return rc;
}

/*
 * --dram-budget is decided once, for the whole model: the first n
 * segments that fit. Each unit's instance then gets the bytes of its
 * share of those n segments as its budget, so every unit pins the same
 * layers (the greedy fit of its own shares stops at the same place).
 */
static void share_budget(struct engine *e)
{
	uint64_t budget = e->cfg.mt.dram_budget_bytes;
	struct tensor_list tl;

	for (int i = 0; i < e->pool.n_units; i++)
		e->units[i].dram_budget = budget;
	if (budget == UINT64_MAX || e->shared)
		return;
	describe(e, NULL, &tl);
	uint32_t n = memtier_budget_fit(tl.t, tl.segs, tl.n_segs, budget, NULL);
	tensor_list_free(&tl);
	for (int i = 0; i < e->pool.n_units; i++) {
		describe(e, &e->units[i], &tl);
		memtier_budget_fit(tl.t, tl.segs, n, UINT64_MAX,
				   &e->units[i].dram_budget);
		tensor_list_free(&tl);
	}
}

/* ---- state ------------------------------------------------------------- */

static void *xalign(size_t n)
{
	size_t sz = n ? (n + 63) / 64 * 64 : 64;
	void *p = aligned_alloc(64, sz);

	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		abort();
	}
	memset(p, 0, n);
	return p;
}

static int64_t big_dim(const struct llama_hparams *hp)
{
	return hp->n_embd > hp->n_ff ? hp->n_embd : hp->n_ff;
}

static int open_kv(struct engine *e, const struct engine_unit *eu,
		   int32_t n_embd_kv, struct kvcache **kv, char *err,
		   size_t errlen)
{
	struct memtier_config mc = unit_mt_config(e, eu);
	struct kvcache_config kc = {
		.kind = e->cfg.kv_kind, .dir = e->cfg.kv_dir,
		.n_layer = e->model.hp.n_layer, .n_ctx = e->st.n_ctx,
		.n_embd_kv = n_embd_kv, .block_tokens = e->cfg.kv_block,
		.prefetch = e->cfg.mt.prefetch > 0 ? e->cfg.mt.prefetch : 0,
		.mt = &mc};
	return kvcache_open(kv, &kc, err, errlen);
}

/*
 * A unit's own state, made on its own thread (so that first touch puts
 * its pages on its node): its memtier share, its KV cache, its scratch.
 */
static int unit_init_job(struct nmu_unit *nu, void *arg)
{
	struct engine *e = arg;
	struct engine_unit *eu = &e->units[nu->id];
	const struct llama_hparams *hp = &e->model.hp;
	const int64_t hd = hp->head_dim, big = big_dim(hp), nb = e->n_batch;
	int rc;

	if (eu->mem_owner && !e->shared) {
		if ((rc = place_weights(e, eu, &eu->mt, eu->dram_budget, eu->err,
					sizeof(eu->err))))
			return rc;
		if ((rc = open_kv(e, eu, (int32_t)(plan_len(eu->kvh) * hd), &eu->kv,
				  eu->err, sizeof(eu->err))))
			return rc;
	}
	eu->act_stride = kern_act_bytes(KT_Q8_K, big);
	if (kern_act_bytes(KT_Q8_A, big) > eu->act_stride)
		eu->act_stride = kern_act_bytes(KT_Q8_A, big);
	eu->act_stride = (eu->act_stride + 63) / 64 * 64;
	eu->xn = xalign((size_t)(nb * big) * sizeof(float));
	eu->act[0] = xalign((size_t)nb * eu->act_stride);
	eu->act[1] = xalign((size_t)nb * eu->act_stride);
	eu->q = xalign((size_t)(nb * plan_len(eu->qh) * hd) * sizeof(float));
	eu->k = xalign((size_t)(nb * plan_len(eu->kvh) * hd) * sizeof(float));
	eu->v = xalign((size_t)(nb * plan_len(eu->kvh) * hd) * sizeof(float));
	eu->scores = xalign((size_t)e->st.n_ctx * sizeof(float));
	eu->tile = xalign((size_t)(LAYER_TILE_ROWS * big) * sizeof(float));
	return 0;
}

static void unit_destroy(struct engine_unit *eu)
{
	kvcache_close(eu->kv);
	memtier_close(&eu->mt);
	free(eu->held);
	free(eu->xn); free(eu->act[0]); free(eu->act[1]);
	free(eu->q); free(eu->k); free(eu->v);
	free(eu->scores); free(eu->tile);
}

static int units_init(struct engine *e, char *err, size_t errlen)
{
	const struct llama_hparams *hp = &e->model.hp;
	int cpus[PLAN_MAX_UNITS], nodes[PLAN_MAX_UNITS];
	int n = e->pool.n_units, rc;

	for (int i = 0; i < n && i < PLAN_MAX_UNITS; i++) {
		cpus[i] = e->pool.units[i].cpu;
		nodes[i] = e->pool.units[i].node;
	}
	struct plan_config pc = {.n_units = n, .unit_cpu = cpus, .unit_node = nodes};
	if ((rc = plan_init(&e->plan, hp, &pc, err, errlen)))
		return rc;
	e->units = xcalloc((size_t)n, sizeof(*e->units));
	for (int i = 0; i < n; i++) {
		struct engine_unit *eu = &e->units[i];
		eu->e = e;
		eu->nu = &e->pool.units[i];
		eu->nu->user = eu;
		eu->pu = &e->plan.unit[i];
		eu->mt.fd = -1;
		eu->kv_held = -1;
		eu->held = xcalloc((size_t)hp->n_layer + 1, 1);
		eu->mem_owner = !e->shared || i == 0;
		if (e->shared) { /* whole KV groups, one shared view */
			eu->qh = eu->pu->q_part;
			eu->kvh = eu->pu->kv_part;
			eu->kv_head0 = 0;
			eu->kv_stride = (int64_t)hp->n_head_kv * hp->head_dim;
			eu->mtp = &e->mt;
			eu->w = e->sw;
		} else {
			eu->qh = eu->pu->q_heads;
			eu->kvh = eu->pu->kv_heads;
			eu->kv_head0 = eu->kvh.r0;
			eu->kv_stride = plan_len(eu->kvh) * hp->head_dim;
			eu->mtp = &eu->mt;
			eu->w = eu->own_w;
		}
	}
	if (e->shared) {
		if ((rc = place_weights(e, NULL, &e->mt,
					e->cfg.mt.dram_budget_bytes, err, errlen)))
			return rc;
		if ((rc = open_kv(e, NULL, hp->n_head_kv * hp->head_dim, &e->kv, err,
				  errlen)))
			return rc;
		for (int i = 0; i < n; i++)
			e->units[i].kvp = e->kv;
	}
	share_budget(e);
	rc = nmu_run(&e->pool, unit_init_job, e);
	for (int i = 0; i < n && rc; i++) {
		if (e->units[i].err[0]) {
			snprintf(err, errlen, "%s", e->units[i].err);
			break;
		}
	}
	for (int i = 0; i < n && !e->shared; i++)
		e->units[i].kvp = e->units[i].kv;
	return rc;
}

static void state_init(struct engine *e)
{
	const struct llama_hparams *hp = &e->model.hp;
	struct engine_state *s = &e->st;
	const size_t nb = (size_t)e->n_batch;

	s->x = xalign(nb * (size_t)hp->n_embd * sizeof(float));
	s->att = xalign(nb * (size_t)hp->n_embd * sizeof(float));
	s->tmp = xalign(nb * (size_t)hp->n_embd * sizeof(float));
	s->hb = xalign(nb * (size_t)hp->n_ff * sizeof(float));
	s->up = xalign(nb * (size_t)hp->n_ff * sizeof(float));
}

int engine_init(struct engine *e, const char *path,
		const struct engine_config *cfg, char *err, size_t errlen)
{
	int64_t t0 = now_ns();
	int rc;

	memset(e, 0, sizeof(*e));
	e->mt.fd = -1; /* destroy must not close(0) after an early failure */
	e->cfg = *cfg;
	e->shared = cfg->nmu_off;
	e->n_batch = cfg->n_batch > 0 ? cfg->n_batch : 128;
	if ((rc = gguf_open(&e->gguf, path, err, errlen)))
		return rc;
	if ((rc = llama_model_init(&e->model, &e->gguf, err, errlen)))
		goto err_destroy;
	const struct llama_hparams *hp = &e->model.hp;
	if (e->cfg.n_ctx <= 0)
		e->cfg.n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
	if (e->cfg.n_ctx > hp->n_ctx_train) {
		fprintf(stderr, "warning: context %d exceeds the model's training "
			"context %d\n", e->cfg.n_ctx, hp->n_ctx_train);
	}
	e->st.n_ctx = e->cfg.n_ctx;
	e->id_tok_embd = (uint32_t)hp->n_layer * LT_COUNT + GT_TOK_EMBD;
	e->id_output_norm = (uint32_t)hp->n_layer * LT_COUNT + GT_OUTPUT_NORM;
	e->id_output = (uint32_t)hp->n_layer * LT_COUNT + GT_OUTPUT;
	openblas_set_num_threads(1); /* units are the threads */
	struct nmu_config nc = {.n_units = cfg->n_threads, .pin = !cfg->nmu_off,
				.topology = cfg->topology};
	if ((rc = nmu_init(&e->pool, &nc, err, errlen)))
		goto err_destroy;
	e->n_threads = e->pool.n_units;
	state_init(e);
	if ((rc = units_init(e, err, errlen)))
		goto err_destroy;
	e->load_ns = now_ns() - t0;
	return 0;

err_destroy:
	engine_destroy(e);
	return rc;
}

void engine_destroy(struct engine *e)
{
	struct engine_state *s = &e->st;

	for (int i = 0; e->units && i < e->pool.n_units; i++)
		unit_destroy(&e->units[i]);
	free(e->units);
	e->units = NULL;
	nmu_destroy(&e->pool);
	kvcache_close(e->kv);
	e->kv = NULL;
	memtier_close(&e->mt);
	free(s->x); free(s->att); free(s->tmp); free(s->hb); free(s->up);
	memset(s, 0, sizeof(*s));
	llama_model_destroy(&e->model);
	gguf_close(&e->gguf);
}

/* ---- decode and prefill: one job per token or batch ------------------- */

struct tokens_job {
	const int32_t *tokens;
	int32_t nb, pos0;
	float *out;      /* logits rows, or NULL */
	int32_t first;   /* first token whose logits are wanted */
	bool all_float;  /* every position's logits: the float head */
};

static int tokens_job(struct nmu_unit *nu, void *arg)
{
	struct engine_unit *eu = nu->user;
	const struct tokens_job *j = arg;
	int rc;

	if ((rc = layer_embed(eu, j->tokens, j->nb)))
		return rc;
	for (int32_t l = 0; l < eu->e->model.hp.n_layer; l++)
		if ((rc = layer_forward(eu, l, j->pos0, j->nb)))
			return rc;
	return layer_head(eu, j->nb, j->first, j->out, eu->e->model.hp.n_vocab,
			  j->all_float);
}

static int run_tokens(struct engine *e, const struct tokens_job *j)
{
	int rc = nmu_run(&e->pool, tokens_job, (void *)j);

	if (rc)
		for (int i = 0; i < e->pool.n_units; i++)
			layer_release_all(&e->units[i]);
	return rc;
}

int engine_decode(struct engine *e, int32_t token, int32_t pos, float *logits)
{
	int64_t t0 = now_ns();
	int rc;

	if (pos < 0 || pos >= e->st.n_ctx)
		return -ENOSPC;
	if (token < 0 || token >= e->model.hp.n_vocab)
		return -EINVAL;
	struct tokens_job j = {.tokens = &token, .nb = 1, .pos0 = pos,
			       .out = logits};
	if ((rc = run_tokens(e, &j)))
		return rc;
	e->stats.decode_ns += now_ns() - t0;
	e->stats.n_decode_tokens++;
	return 0;
}

int engine_prefill(struct engine *e, const int32_t *tokens, int32_t n,
		   int32_t pos0, float *logits, bool all_logits)
{
	const int64_t n_vocab = e->model.hp.n_vocab;
	int64_t t0 = now_ns();
	int rc = 0;

	if (n <= 0)
		return -EINVAL;
	if (pos0 < 0 || (int64_t)pos0 + n > e->st.n_ctx)
		return -ENOSPC;
	for (int32_t i = 0; i < n; i++)
		if (tokens[i] < 0 || tokens[i] >= n_vocab)
			return -EINVAL;
	for (int32_t i = 0; i < n && !rc; i += e->n_batch) {
		if (e->cfg.cancel && *e->cfg.cancel) {
			rc = -EINTR;
			break;
		}
		int32_t nb = n - i < e->n_batch ? n - i : e->n_batch;
		struct tokens_job j = {.tokens = tokens + i, .nb = nb,
				       .pos0 = pos0 + i, .first = nb - 1};
		/* every position's logits (perplexity, dumps): the head in
		 * float (dequantized tiles x SGEMM), which keeps perplexity
		 * closest to the float reference (SmolLM2 ppl.txt: 17.83 vs
		 * 17.89 with 8-bit activations); the last position alone:
		 * the int8 path */
		if (logits && all_logits) {
			j.out = logits + (int64_t)i * n_vocab;
			j.first = 0;
			j.all_float = true;
		} else if (logits && i + nb == n) {
			j.out = logits;
		}
		rc = run_tokens(e, &j);
	}
	e->stats.prefill_ns += now_ns() - t0;
	e->stats.n_prefill_tokens += n;
	return rc;
}

/* ---- counters ----------------------------------------------------------- */

int engine_flush(struct engine *e)
{
	int rc = e->kv ? kvcache_flush(e->kv) : 0;

	for (int i = 0; i < e->pool.n_units; i++) {
		int r = e->units[i].kv ? kvcache_flush(e->units[i].kv) : 0;
		if (r && !rc)
			rc = r;
	}
	return rc;
}

static void add_mt_kv(struct engine_counters *c, const struct memtier *mt,
		      const struct kvcache *kv)
{
	struct kvcache_info ki;

	for (int k = 0; k < MEMTIER_KIND_COUNT; k++)
		memtier_stats_add(&c->tiers[k], &mt->stats[k]);
	c->resident_bytes += memtier_resident_bytes(mt);
	memtier_stats_add(&c->kv, kvcache_stats(kv));
	kvcache_get_info(kv, &ki);
	uint64_t dram = c->kv_info.dram_bytes + ki.dram_bytes;
	uint64_t pos = c->kv_info.position_bytes + ki.position_bytes;
	c->kv_info = ki;
	c->kv_info.dram_bytes = dram;
	c->kv_info.position_bytes = pos;
}

void engine_counters(const struct engine *e, struct engine_counters *c)
{
	memset(c, 0, sizeof(*c));
	if (e->shared) {
		add_mt_kv(c, &e->mt, e->kv);
		return;
	}
	for (int i = 0; i < e->pool.n_units; i++)
		add_mt_kv(c, &e->units[i].mt, e->units[i].kv);
}

/* time the unit waited on its tiers so far */
static int64_t unit_stall_ns(const struct engine_unit *eu)
{
	int64_t ns = kvcache_stats(eu->kvp)->stall_ns;

	for (int k = 0; k < MEMTIER_KIND_COUNT; k++)
		ns += eu->mtp->stats[k].stall_ns;
	return ns;
}

void engine_units_reset(struct engine *e)
{
	nmu_stats_reset(&e->pool);
	for (int i = 0; i < e->pool.n_units; i++) {
		struct engine_unit *eu = &e->units[i];
		memset(&eu->c, 0, sizeof(eu->c));
		eu->stall0_ns = eu->mem_owner ? unit_stall_ns(eu) : 0;
	}
}

void engine_unit_report(struct engine *e, int i, struct engine_unit_report *r)
{
	struct engine_unit *eu = &e->units[i];
	struct nmu_unit *nu = eu->nu;
	double p50, p99;
	int64_t stall = 0;

	if (eu->mem_owner)
		stall = unit_stall_ns(eu) - eu->stall0_ns;
	nmu_wait_percentiles(nu, &p50, &p99);
	*r = (struct engine_unit_report){
		.unit = i, .cpu = nu->cpu, .node = nu->node,
		.weight_bytes = eu->c.weight_bytes,
		.act_bytes_in = eu->c.act_bytes_in,
		.result_bytes_out = eu->c.result_bytes_out,
		.foreign_rows = eu->c.foreign_rows,
		.busy_s = (double)nu->st.busy_ns / 1e9,
		.barrier_s = (double)nu->st.barrier_ns / 1e9,
		.stall_s = (double)stall / 1e9,
		.n_barriers = nu->st.n_barriers,
		.barrier_p50_us = p50 / 1e3, .barrier_p99_us = p99 / 1e3,
	};
}
