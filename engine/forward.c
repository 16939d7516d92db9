/*
 * forward.c - llama forward pass: decode (matvec, one parallel region per
 * token) and prefill (dequantized tiles x OpenBLAS SGEMM). See forward.h.
 */
#include "engine/forward.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/kern.h"
#include "kernels/ops.h"
#include "memtier/trace.h"
#include "models/util.h"

/* rows of a weight matrix dequantized at once for a prefill GEMM: a tile
 * of TILE_ROWS x n_embd floats stays in the 1 MiB L2 for n_embd <= 2048 */
#define TILE_ROWS 64

/* Per-thread scratch, each on its own cache lines. The activation caches
 * hold the current input vector quantized for each act type; `valid`
 * flags are cleared whenever the input changes. */
struct engine_thread {
	float *xn;         /* [max(n_embd, n_ff)] normalized input */
	void *act[2];      /* [ACT_Q8A], [ACT_Q8K] */
	bool act_valid[2];
	float *scores;     /* [n_ctx] attention scratch */
	float *tile;       /* [TILE_ROWS][max(n_embd, n_ff)] prefill */
	char pad[64];
};

enum { ACT_Q8A = 0, ACT_Q8K = 1 };

/* ---- tensor bookkeeping ------------------------------------------------ */

static uint32_t layer_id(int32_t l, int i)
{
	return (uint32_t)l * LT_COUNT + (uint32_t)i;
}

/* Describe every tensor to memtier: ids 0 .. n_layer*LT_COUNT-1 are the
 * layers' tensors, then token_embd, output_norm, output. Segments: one
 * per layer, then one for the output head. */
static int place_weights(struct engine *e, char *err, size_t errlen)
{
	const struct llama_model *m = &e->model;
	int32_t L = m->hp.n_layer;
	uint32_t n = (uint32_t)L * LT_COUNT + GT_COUNT;
	struct memtier_tensor *t = xcalloc(n, sizeof(*t));
	uint32_t *ids = xcalloc(n, sizeof(*ids));
	struct memtier_segment *segs = xcalloc((size_t)L + 1, sizeof(*segs));
	int rc;

	for (uint32_t i = 0; i < n; i++) {
		const struct gguf_tensor *g =
			i < (uint32_t)L * LT_COUNT ? m->layer[i]
						   : m->global[i - (uint32_t)L * LT_COUNT];
		t[i].file_offset = g->file_offset;
		t[i].n_bytes = g->n_bytes;
		t[i].row_bytes = g->row_bytes;
		ids[i] = i;
	}
	e->id_tok_embd = (uint32_t)L * LT_COUNT + GT_TOK_EMBD;
	e->id_output_norm = (uint32_t)L * LT_COUNT + GT_OUTPUT_NORM;
	e->id_output = (uint32_t)L * LT_COUNT + GT_OUTPUT;
	for (int32_t l = 0; l < L; l++) {
		segs[l].n = LT_COUNT;
		segs[l].ids = &ids[layer_id(l, 0)];
	}
	segs[L].n = 2;
	segs[L].ids = &ids[e->id_output_norm];
	rc = memtier_open(&e->mt, &e->cfg.mt, e->gguf.path, t, n, segs,
			  (uint32_t)L + 1, err, errlen);
	free(t);
	free(ids);
	free(segs);
	return rc;
}

/* ---- state ------------------------------------------------------------- */

static int state_init(struct engine *e, char *err, size_t errlen)
{
	const struct llama_hparams *hp = &e->model.hp;
	struct engine_state *s = &e->st;
	int64_t dkv = (int64_t)hp->n_head_kv * hp->head_dim;
	int64_t nb = e->n_batch;
	int64_t big = hp->n_embd > hp->n_ff ? hp->n_embd : hp->n_ff;

	s->n_ctx = e->cfg.n_ctx;
	struct kvcache_config kc = {
		.kind = e->cfg.kv_kind, .dir = e->cfg.kv_dir,
		.n_layer = hp->n_layer, .n_ctx = s->n_ctx,
		.n_embd_kv = (int32_t)dkv, .block_tokens = e->cfg.kv_block,
		.prefetch = e->cfg.mt.prefetch > 0 ? e->cfg.mt.prefetch : 0,
		.mt = &e->cfg.mt};
	int rc = kvcache_open(&s->kv, &kc, err, errlen);
	if (rc)
		return rc;
	s->x = xcalloc((size_t)hp->n_embd, sizeof(float));
	s->q = xcalloc((size_t)hp->n_embd, sizeof(float));
	s->k = xcalloc((size_t)dkv, sizeof(float));
	s->v = xcalloc((size_t)dkv, sizeof(float));
	s->att = xcalloc((size_t)hp->n_embd, sizeof(float));
	s->hb = xcalloc((size_t)hp->n_ff, sizeof(float));
	s->g = xcalloc((size_t)hp->n_ff, sizeof(float));
	s->u = xcalloc((size_t)hp->n_ff, sizeof(float));
	s->tmp = xcalloc((size_t)(hp->n_vocab > big ? hp->n_vocab : big),
			 sizeof(float));
	s->bx = xcalloc((size_t)(nb * hp->n_embd), sizeof(float));
	s->bxn = xcalloc((size_t)(nb * big), sizeof(float));
	s->bq = xcalloc((size_t)(nb * hp->n_embd), sizeof(float));
	s->bk = xcalloc((size_t)(nb * dkv), sizeof(float));
	s->bv = xcalloc((size_t)(nb * dkv), sizeof(float));
	s->batt = xcalloc((size_t)(nb * hp->n_embd), sizeof(float));
	s->bg = xcalloc((size_t)(nb * hp->n_ff), sizeof(float));
	s->bu = xcalloc((size_t)(nb * hp->n_ff), sizeof(float));
	s->btmp = xcalloc((size_t)(nb * hp->n_embd), sizeof(float));
	s->bact_stride = kern_act_bytes(KT_Q8_K, big);
	if (kern_act_bytes(KT_Q8_A, big) > s->bact_stride)
		s->bact_stride = kern_act_bytes(KT_Q8_A, big);
	s->bact_stride = (s->bact_stride + 63) / 64 * 64;
	s->bact = xcalloc((size_t)nb, s->bact_stride);

	e->thr = xcalloc((size_t)e->n_threads, sizeof(*e->thr));
	for (int i = 0; i < e->n_threads; i++) {
		struct engine_thread *t = &e->thr[i];
		t->xn = xcalloc((size_t)big, sizeof(float));
		t->act[ACT_Q8A] = xcalloc(kern_act_bytes(KT_Q8_A, big), 1);
		t->act[ACT_Q8K] = xcalloc(kern_act_bytes(KT_Q8_K, big), 1);
		t->scores = xcalloc((size_t)s->n_ctx, sizeof(float));
		t->tile = xcalloc((size_t)(TILE_ROWS * big), sizeof(float));
	}
	return 0;
}

static void state_destroy(struct engine *e)
{
	struct engine_state *s = &e->st;

	kvcache_close(s->kv);
	s->kv = NULL;
	free(s->x); free(s->q); free(s->k); free(s->v); free(s->att);
	free(s->hb); free(s->g); free(s->u); free(s->tmp);
	free(s->bx); free(s->bxn); free(s->bq); free(s->bk); free(s->bv);
	free(s->batt); free(s->bg); free(s->bu); free(s->btmp);
	free(s->bact);
	for (int i = 0; e->thr && i < e->n_threads; i++) {
		free(e->thr[i].xn);
		free(e->thr[i].act[ACT_Q8A]);
		free(e->thr[i].act[ACT_Q8K]);
		free(e->thr[i].scores);
		free(e->thr[i].tile);
	}
	free(e->thr);
	e->thr = NULL;
	memset(s, 0, sizeof(*s));
}

/* Pin OpenMP thread i to the i-th CPU this process may run on, once, so a
 * thread keeps its row shard's cache lines and the OS does not stack two
 * workers on one core. */
static void pin_threads(int n)
{
	cpu_set_t allowed;
	int cpus[CPU_SETSIZE], n_cpus = 0;

	if (sched_getaffinity(0, sizeof(allowed), &allowed))
		return;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &allowed))
			cpus[n_cpus++] = c;
	if (n_cpus < n)
		return; /* oversubscribed: let the OS place them */
#pragma omp parallel num_threads(n)
	{
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(cpus[omp_get_thread_num()], &one);
		pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
	}
}

int engine_init(struct engine *e, const char *path,
		const struct engine_config *cfg, char *err, size_t errlen)
{
	int64_t t0 = now_ns();
	int rc;

	memset(e, 0, sizeof(*e));
	e->mt.fd = -1; /* destroy must not close(0) after an early failure */
	e->cfg = *cfg;
	e->n_threads = cfg->n_threads;
	if (e->n_threads <= 0) { /* the CPUs this process may run on */
		cpu_set_t allowed;
		e->n_threads = sched_getaffinity(0, sizeof(allowed), &allowed) == 0
				       ? CPU_COUNT(&allowed)
				       : (int)sysconf(_SC_NPROCESSORS_ONLN);
	}
	if (e->n_threads < 1)
		e->n_threads = 1;
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
	if ((rc = place_weights(e, err, errlen)))
		goto err_destroy;
	if ((rc = state_init(e, err, errlen)))
		goto err_destroy;
	openblas_set_num_threads(1);
	omp_set_dynamic(0);
	pin_threads(e->n_threads);
	e->load_ns = now_ns() - t0;
	return 0;

err_destroy:
	engine_destroy(e);
	return rc;
}

void engine_destroy(struct engine *e)
{
	state_destroy(e);
	memtier_close(&e->mt);
	llama_model_destroy(&e->model);
	gguf_close(&e->gguf);
}

/* ---- decode ------------------------------------------------------------ */

/* the row range [*r0, *r1) of n rows that thread ith of nth owns */
static void my_rows(int64_t n, int ith, int nth, int64_t *r0, int64_t *r1)
{
	*r0 = n * ith / nth;
	*r1 = n * (ith + 1) / nth;
}

/* y[r0..r1) = W[r0..r1) . xn, quantizing xn into the thread's act cache
 * for W's type if not done yet for this input */
static void matvec_rows(struct engine_thread *t, uint32_t type, const void *w,
			size_t row_bytes, float *y, int64_t n, int64_t r0,
			int64_t r1)
{
	const struct kern_type_info *ti = kern_type_info(type);
	const void *act = t->xn;

	if (ti->act_type == KT_Q8_A || ti->act_type == KT_Q8_K) {
		int slot = ti->act_type == KT_Q8_A ? ACT_Q8A : ACT_Q8K;
		if (!t->act_valid[slot]) {
			kern_quantize_act(ti->act_type)(t->xn, t->act[slot], n);
			t->act_valid[slot] = true;
		}
		act = t->act[slot];
	}
	if (r1 > r0)
		kern_ops(type)->matvec(w, row_bytes, act, y, n, r0, r1);
}

/* the thread's private input: xn = src (or rmsnorm(src) with w) */
static void set_input(struct engine_thread *t, const float *src, const float *w,
		      int64_t n, float eps)
{
	if (w)
		ops_rmsnorm(t->xn, src, w, n, eps);
	else
		memcpy(t->xn, src, (size_t)n * sizeof(float));
	t->act_valid[ACT_Q8A] = t->act_valid[ACT_Q8K] = false;
}

#define TENSOR(l, i) (e->model.layer[(size_t)(l) * LT_COUNT + (i)])

/* Embedding row of token into out[n_embd] (dequantized) */
static int embed(struct engine *e, int32_t token, float *out)
{
	const struct gguf_tensor *te = e->model.global[GT_TOK_EMBD];
	unsigned char buf[65536];
	void *row = te->row_bytes <= sizeof(buf) ? buf : xmalloc(te->row_bytes);
	int rc;

	if (token < 0 || token >= e->model.hp.n_vocab)
		return -EINVAL;
	rc = memtier_read_row(&e->mt, e->id_tok_embd, token, row);
	if (!rc)
		kern_ops(te->type)->dequant(row, out, te->ne[0]);
	if (row != buf)
		free(row);
	return rc;
}

/*
 * One token through the stack. Threads meet at five barriers per layer:
 * after Q/K/V, after attention, after the output projection (+residual),
 * after gate/up, after down (+residual). Between the first two, each
 * thread owns whole KV-head groups: it ropes its K heads, writes them to
 * the cache and attends with the query heads that read them, so no
 * barrier is needed between RoPE and attention.
 *
 * Weights: thread 0 acquires layer l+1 at the start of layer l (one
 * segment ahead, into the other half of a double-buffered pointer table)
 * and releases layer l-1, which every thread has finished with once
 * thread 0 is past layer l-1's last barrier.
 *
 * KV cache: thread 0 starts reading layer l+1's blocks (on the last
 * layer: layer 0's, for the next token) before it acquires the weights,
 * takes layer l's view before the first barrier (waiting for its blocks
 * there, while the others finish Q/K/V), and commits row pos and
 * releases the view after the attention barrier.
 */
/* start reading the KV blocks of the layers after l (on the last ones:
 * the next token's first layers, one position longer) */
static int kv_ahead(struct engine *e, int32_t l, int32_t pos)
{
	const int32_t L = e->model.hp.n_layer;
	int depth = e->cfg.mt.prefetch > 0 ? e->cfg.mt.prefetch : 0;
	int rc = 0; /* --prefetch 0: every layer's blocks read on demand */

	if (depth > L)
		depth = L;
	for (int k = 1; k <= depth && !rc; k++)
		rc = l + k < L ? kvcache_prefetch(e->st.kv, l + k, pos)
			       : kvcache_prefetch(e->st.kv, l + k - L, pos + 1);
	return rc;
}

int engine_decode(struct engine *e, int32_t token, int32_t pos, float *logits)
{
	const struct llama_hparams *hp = &e->model.hp;
	struct engine_state *s = &e->st;
	const int64_t d = hp->n_embd, dkv = (int64_t)hp->n_head_kv * hp->head_dim;
	const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
	const float scale = 1.0f / sqrtf((float)hd);
	const uint32_t out_seg = (uint32_t)hp->n_layer;
	const void *w[2][LT_COUNT];
	float *kcs = NULL, *vcs = NULL; /* layer l's KV view, from thread 0 */
	int rc, shared_rc = 0;
	int32_t fail_l = -1; /* layer at the first error: it and l+1 may be held */
	int64_t t0 = now_ns();

	if (pos < 0 || pos >= s->n_ctx)
		return -ENOSPC;
	if ((rc = embed(e, token, s->x)))
		return rc;
	if ((rc = memtier_acquire(&e->mt, 0, w[0])))
		return rc;

#pragma omp parallel num_threads(e->n_threads)
	{
		const int ith = omp_get_thread_num(), nth = omp_get_num_threads();
		struct engine_thread *t = &e->thr[ith];
		int64_t r0, r1;

		for (int32_t l = 0; l < hp->n_layer; l++) {
			const void *const *wl = w[l & 1];
			int64_t t_layer = ith == 0 ? now_ns() : 0;

			if (ith == 0 && !shared_rc) {
				if (l > 0)
					memtier_release(&e->mt, (uint32_t)l - 1);
				int r = kv_ahead(e, l, pos);
				int r2 = memtier_acquire(&e->mt, (uint32_t)l + 1,
							 w[(l + 1) & 1]);
				if (r2 || r) {
					shared_rc = r2 ? r2 : r;
					fail_l = l;
				}
			}
			/* attention: q, k, v rows of this thread */
			set_input(t, s->x, wl[LT_ATTN_NORM], d, hp->rms_eps);
			my_rows(d, ith, nth, &r0, &r1);
			matvec_rows(t, TENSOR(l, LT_WQ)->type, wl[LT_WQ],
				    TENSOR(l, LT_WQ)->row_bytes, s->q, d, r0, r1);
			my_rows(dkv, ith, nth, &r0, &r1);
			matvec_rows(t, TENSOR(l, LT_WK)->type, wl[LT_WK],
				    TENSOR(l, LT_WK)->row_bytes, s->k, d, r0, r1);
			matvec_rows(t, TENSOR(l, LT_WV)->type, wl[LT_WV],
				    TENSOR(l, LT_WV)->row_bytes, s->v, d, r0, r1);
			if (ith == 0 && !shared_rc) {
				int r = kvcache_layer(s->kv, l, pos, &kcs, &vcs);
				if (r) {
					shared_rc = r;
					fail_l = l;
				}
			}
#pragma omp barrier
			if (shared_rc)
				break;
			float *kc = kcs, *vc = vcs;
			/* this thread's KV heads: RoPE, cache, attention */
			my_rows(hp->n_head_kv, ith, nth, &r0, &r1);
			ops_rope(s->q + r0 * group * hd, (int)((r1 - r0) * group),
				 hd, hp->rope_dim, pos, hp->rope_base);
			ops_rope(s->k + r0 * hd, (int)(r1 - r0), hd, hp->rope_dim,
				 pos, hp->rope_base);
			memcpy(kc + (size_t)pos * dkv + r0 * hd, s->k + r0 * hd,
			       (size_t)((r1 - r0) * hd) * sizeof(float));
			memcpy(vc + (size_t)pos * dkv + r0 * hd, s->v + r0 * hd,
			       (size_t)((r1 - r0) * hd) * sizeof(float));
			for (int64_t h = r0 * group; h < r1 * group; h++) {
				int64_t kvh = h / group;
				ops_attn_head(s->att + h * hd, s->q + h * hd,
					      kc + kvh * hd, vc + kvh * hd, dkv,
					      pos + 1, hd, scale, t->scores);
			}
#pragma omp barrier
			if (ith == 0) {
				int r = kvcache_commit(s->kv, l, pos, pos + 1);
				kvcache_release(s->kv, l);
				if (r) {
					shared_rc = r;
					fail_l = l;
				}
			}
			/* output projection and residual, own rows */
			set_input(t, s->att, NULL, d, 0);
			my_rows(d, ith, nth, &r0, &r1);
			matvec_rows(t, TENSOR(l, LT_WO)->type, wl[LT_WO],
				    TENSOR(l, LT_WO)->row_bytes, s->tmp, d, r0, r1);
			ops_add(s->x, s->tmp, r0, r1);
#pragma omp barrier
			/* FFN: gate and up rows, silu * up on the same rows */
			set_input(t, s->x, wl[LT_FFN_NORM], d, hp->rms_eps);
			my_rows(hp->n_ff, ith, nth, &r0, &r1);
			matvec_rows(t, TENSOR(l, LT_W_GATE)->type, wl[LT_W_GATE],
				    TENSOR(l, LT_W_GATE)->row_bytes, s->g, d, r0, r1);
			matvec_rows(t, TENSOR(l, LT_W_UP)->type, wl[LT_W_UP],
				    TENSOR(l, LT_W_UP)->row_bytes, s->u, d, r0, r1);
			ops_silu_mul(s->hb, s->g, s->u, r0, r1);
#pragma omp barrier
			set_input(t, s->hb, NULL, hp->n_ff, 0);
			my_rows(d, ith, nth, &r0, &r1);
			matvec_rows(t, TENSOR(l, LT_W_DOWN)->type, wl[LT_W_DOWN],
				    TENSOR(l, LT_W_DOWN)->row_bytes, s->tmp,
				    hp->n_ff, r0, r1);
			ops_add(s->x, s->tmp, r0, r1);
#pragma omp barrier
			if (ith == 0)
				trace_span(e->cfg.mt.trace, TRACE_COMPUTE, "layer", l,
					   t_layer, now_ns());
		}
		/* output head: {output_norm, output} */
		if (!shared_rc) {
			const void *const *wo = w[out_seg & 1];
			const struct gguf_tensor *to = e->model.global[GT_OUTPUT];
			set_input(t, s->x, wo[0], d, hp->rms_eps);
			my_rows(hp->n_vocab, ith, nth, &r0, &r1);
			matvec_rows(t, to->type, wo[1], to->row_bytes, logits, d,
				    r0, r1);
		}
	}
	if (shared_rc) {
		/* a commit failure is seen one layer later, at its barrier */
		for (int32_t l = fail_l; l <= fail_l + 2 && l <= hp->n_layer; l++)
			memtier_release(&e->mt, (uint32_t)l);
		return shared_rc;
	}
	if (hp->n_layer > 0)
		memtier_release(&e->mt, out_seg - 1);
	memtier_release(&e->mt, out_seg);
	e->stats.decode_ns += now_ns() - t0;
	e->stats.n_decode_tokens++;
	return 0;
}

/* ---- prefill ----------------------------------------------------------- */

/*
 * Y[i][r] = sum_k X[i][k] * W[r][k] for i < nb, r < n_rows: W's rows are
 * dequantized TILE_ROWS at a time into the thread's tile and multiplied by
 * SGEMM; tiles are spread over the threads. ldy is Y's row stride.
 */
static void gemm_w(struct engine *e, uint32_t type, const void *w,
		   size_t row_bytes, int64_t n_rows, int64_t k, const float *x,
		   int64_t nb, float *y, int64_t ldy)
{
	const kern_dequant_fn dq = kern_ops(type)->dequant;
	const int64_t n_tiles = (n_rows + TILE_ROWS - 1) / TILE_ROWS;

#pragma omp parallel for num_threads(e->n_threads) schedule(static)
	for (int64_t tl = 0; tl < n_tiles; tl++) {
		struct engine_thread *t = &e->thr[omp_get_thread_num()];
		int64_t r0 = tl * TILE_ROWS;
		int64_t nr = n_rows - r0 < TILE_ROWS ? n_rows - r0 : TILE_ROWS;
		const float *wt;

		if (type == KT_F32) {
			wt = (const float *)((const char *)w + r0 * row_bytes);
		} else {
			for (int64_t r = 0; r < nr; r++)
				dq((const char *)w + (r0 + r) * row_bytes,
				   t->tile + r * k, k);
			wt = t->tile;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb,
			    (int)nr, (int)k, 1.0f, x, (int)k, wt, (int)k, 0.0f,
			    y + r0, (int)ldy);
	}
}

/*
 * The int8 path for quantized W: every token's row of X is quantized once
 * into the weight type's activation format, then W is swept in tiles of
 * rows small enough to stay in L1 (~24 KiB) while every token of the batch
 * is multiplied with the tile by the decode matvec kernel. Weights are
 * read from memory once per batch, arithmetic is VNNI int8 as in decode.
 */
static void matmul_q8(struct engine *e, uint32_t type, const void *w,
		      size_t row_bytes, int64_t n_rows, int64_t k,
		      const float *x, int64_t nb, float *y, int64_t ldy)
{
	const struct kern_type_info *ti = kern_type_info(type);
	const kern_quantize_act_fn quant = kern_quantize_act(ti->act_type);
	const kern_matvec_fn mv = kern_ops(type)->matvec;
	const kern_matmul_fn mm = kern_ops(type)->matmul;
	struct engine_state *s = &e->st;
	/* matmul: the fewest tiles of about <= 512 rows (n_split, a
	 * multiple of the threads: the schedule is static), rounded up to
	 * 32 rows, the kernels' register tiles; the kernels repack weights
	 * and sum activations per call, so bigger calls amortize more.
	 * matvec loop: ~24 KiB of rows. */
	const int64_t n_split = (n_rows + 512LL * e->n_threads - 1) /
				(512LL * e->n_threads) * e->n_threads;
	int64_t tile = mm ? ((n_rows + n_split - 1) / n_split + 31) / 32 * 32
			  : (int64_t)(24576 / row_bytes) / 4 * 4;

	if (tile < 4)
		tile = 4;
	const int64_t n_tiles = (n_rows + tile - 1) / tile;
#pragma omp parallel num_threads(e->n_threads)
	{
#pragma omp for schedule(static)
		for (int64_t i = 0; i < nb; i++)
			quant(x + i * k, (char *)s->bact + i * s->bact_stride, k);
#pragma omp for schedule(static)
		for (int64_t tl = 0; tl < n_tiles; tl++) {
			int64_t r0 = tl * tile;
			int64_t r1 = r0 + tile < n_rows ? r0 + tile : n_rows;
			if (mm)
				mm(w, row_bytes, s->bact, s->bact_stride, y, ldy, k,
				   r0, r1, nb);
			else
				for (int64_t i = 0; i < nb; i++)
					mv(w, row_bytes,
					   (char *)s->bact + i * s->bact_stride,
					   y + i * ldy, k, r0, r1);
		}
	}
}

/* Y[nb][ldy] = X[nb][k] . W^T by the configured path */
static void matmul(struct engine *e, uint32_t type, const void *w,
		   size_t row_bytes, int64_t n_rows, int64_t k, const float *x,
		   int64_t nb, float *y, int64_t ldy)
{
	uint32_t act = kern_type_info(type)->act_type;

	if (!e->cfg.prefill_blas && (act == KT_Q8_A || act == KT_Q8_K))
		matmul_q8(e, type, w, row_bytes, n_rows, k, x, nb, y, ldy);
	else
		gemm_w(e, type, w, row_bytes, n_rows, k, x, nb, y, ldy);
}

/* rows of X normalized with w into XN, all [nb][n] */
static void rmsnorm_rows(struct engine *e, float *xn, const float *x,
			 const float *w, int64_t nb, int64_t n)
{
#pragma omp parallel for num_threads(e->n_threads) schedule(static)
	for (int64_t i = 0; i < nb; i++)
		ops_rmsnorm(xn + i * n, x + i * n, w, n, e->model.hp.rms_eps);
}

/* matmul with layer l's tensor `which` (w: the layer's acquired pointers) */
static void gemm_layer(struct engine *e, int32_t l, int which,
		       const void *const *w, const float *x, int64_t nb,
		       float *y, int64_t ldy)
{
	const struct gguf_tensor *t = TENSOR(l, which);
	matmul(e, t->type, w[which], t->row_bytes, t->n_rows, t->ne[0], x, nb,
	       y, ldy);
}

/* one batch of nb <= n_batch tokens at pos0 */
static int prefill_batch(struct engine *e, const int32_t *tokens, int32_t nb,
			 int32_t pos0, float *logits, bool all_logits)
{
	const struct llama_hparams *hp = &e->model.hp;
	struct engine_state *s = &e->st;
	const int64_t d = hp->n_embd, dkv = (int64_t)hp->n_head_kv * hp->head_dim;
	const int64_t ff = hp->n_ff;
	const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
	const float scale = 1.0f / sqrtf((float)hd);
	const void *w[LT_COUNT];
	int rc;

	for (int32_t i = 0; i < nb; i++)
		if ((rc = embed(e, tokens[i], s->bx + (int64_t)i * d)))
			return rc;
	for (int32_t l = 0; l < hp->n_layer; l++) {
		float *kc, *vc;

		if ((rc = kvcache_layer(s->kv, l, pos0, &kc, &vc)))
			return rc;
		if ((rc = kvcache_prefetch(s->kv, l + 1, pos0)) ||
		    (rc = memtier_acquire(&e->mt, (uint32_t)l, w))) {
			kvcache_release(s->kv, l);
			return rc;
		}
		int64_t t_layer = now_ns();
		/* QKV for every token; K/V straight into the cache rows */
		rmsnorm_rows(e, s->bxn, s->bx, w[LT_ATTN_NORM], nb, d);
		gemm_layer(e, l, LT_WQ, w, s->bxn, nb, s->bq, d);
		gemm_layer(e, l, LT_WK, w, s->bxn, nb, s->bk, dkv);
		gemm_layer(e, l, LT_WV, w, s->bxn, nb, s->bv, dkv);
#pragma omp parallel for num_threads(e->n_threads) schedule(static)
		for (int32_t i = 0; i < nb; i++) {
			int64_t p = pos0 + i;
			ops_rope(s->bq + i * d, hp->n_head, hd, hp->rope_dim, p,
				 hp->rope_base);
			ops_rope(s->bk + i * dkv, hp->n_head_kv, hd, hp->rope_dim,
				 p, hp->rope_base);
			memcpy(kc + p * dkv, s->bk + i * dkv, (size_t)dkv * sizeof(float));
			memcpy(vc + p * dkv, s->bv + i * dkv, (size_t)dkv * sizeof(float));
		}
		/* causal attention, (token, head) pairs over threads */
#pragma omp parallel for num_threads(e->n_threads) schedule(dynamic, 4)
		for (int64_t ih = 0; ih < (int64_t)nb * hp->n_head; ih++) {
			int64_t i = ih / hp->n_head, h = ih % hp->n_head;
			struct engine_thread *t = &e->thr[omp_get_thread_num()];
			ops_attn_head(s->batt + i * d + h * hd, s->bq + i * d + h * hd,
				      kc + (h / group) * hd, vc + (h / group) * hd,
				      dkv, pos0 + i + 1, hd, scale, t->scores);
		}
		rc = kvcache_commit(s->kv, l, pos0, pos0 + nb);
		kvcache_release(s->kv, l);
		if (rc) {
			memtier_release(&e->mt, (uint32_t)l);
			return rc;
		}
		gemm_layer(e, l, LT_WO, w, s->batt, nb, s->btmp, d);
		ops_add(s->bx, s->btmp, 0, (int64_t)nb * d);
		/* FFN */
		rmsnorm_rows(e, s->bxn, s->bx, w[LT_FFN_NORM], nb, d);
		gemm_layer(e, l, LT_W_GATE, w, s->bxn, nb, s->bg, ff);
		gemm_layer(e, l, LT_W_UP, w, s->bxn, nb, s->bu, ff);
		ops_silu_mul(s->bg, s->bg, s->bu, 0, (int64_t)nb * ff);
		gemm_layer(e, l, LT_W_DOWN, w, s->bg, nb, s->btmp, d);
		ops_add(s->bx, s->btmp, 0, (int64_t)nb * d);
		memtier_release(&e->mt, (uint32_t)l);
		trace_span(e->cfg.mt.trace, TRACE_COMPUTE, "prefill layer", l,
			   t_layer, now_ns());
	}
	if (!logits)
		return 0;
	if ((rc = memtier_acquire(&e->mt, (uint32_t)hp->n_layer, w)))
		return rc;
	const struct gguf_tensor *to = e->model.global[GT_OUTPUT];
	int32_t first = all_logits ? 0 : nb - 1;
	int32_t n_out = nb - first;
	rmsnorm_rows(e, s->bxn, s->bx + (int64_t)first * d, w[0], n_out, d);
	/* Every position's logits (perplexity, dumps): the head in float
	 * (dequantized tiles x SGEMM), which keeps perplexity closest to the
	 * float reference (SmolLM2 ppl.txt: 17.83 vs 17.89 with 8-bit
	 * activations); the last position alone: the int8 path. */
	if (all_logits)
		gemm_w(e, to->type, w[1], to->row_bytes, hp->n_vocab, d, s->bxn,
		       n_out, logits, hp->n_vocab);
	else
		matmul(e, to->type, w[1], to->row_bytes, hp->n_vocab, d, s->bxn,
		       n_out, logits, hp->n_vocab);
	memtier_release(&e->mt, (uint32_t)hp->n_layer);
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
	for (int32_t i = 0; i < n && !rc; i += e->n_batch) {
		if (e->cfg.cancel && *e->cfg.cancel) {
			rc = -EINTR;
			break;
		}
		int32_t nb = n - i < e->n_batch ? n - i : e->n_batch;
		bool last = i + nb == n;
		float *out = NULL;
		if (logits && all_logits)
			out = logits + (int64_t)i * n_vocab;
		else if (logits && last)
			out = logits;
		rc = prefill_batch(e, tokens + i, nb, pos0 + i, out, all_logits);
	}
	e->stats.prefill_ns += now_ns() - t0;
	e->stats.n_prefill_tokens += n;
	return rc;
}
