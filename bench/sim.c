/* sim.c - the analytical model of a decode run; the equations are in
 * sim.h's comment block, in the order this file evaluates them. */
#include "bench/sim.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/plan.h"
#include "models/gguf.h"
#include "models/util.h"

/* the engine's constants these equations replay (memtier/flash.c,
 * memtier/kvcache.h, engine/forward.c) */
#define SIM_FLASH_ALIGN 4096.0
#define SIM_FLASH_REQ (1024.0 * 1024.0)
#define SIM_RING_QD 64.0
#define SIM_KV_BLOCK 64
#define SIM_BATCH 128
#define SIM_PHASES 4

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* ---- profile look-ups ------------------------------------------------ */

/* a figure measured at 1 and `all` threads, for n threads: linear
 * between, flat beyond (units past the CPUs share them) */
static double at_threads(const double v[2], int all, int n)
{
	if (n <= 1 || all <= 1)
		return n <= 1 ? v[0] : v[1];
	if (n >= all)
		return v[1];
	return v[0] + (v[1] - v[0]) * (double)(n - 1) / (double)(all - 1);
}

double sim_kern_gbps(const struct sim_profile *p, uint32_t type, int n,
		     bool dram)
{
	const struct sim_kern_rate *r = type < KT_COUNT ? &p->kern[type] : NULL;

	if (!r || !r->have)
		return 0;
	return at_threads(dram ? r->dram_gbps : r->l2_gbps, p->n_threads, n);
}

static double dram_gbps(const struct sim_profile *p, int n)
{
	n = n < 1 ? 1 : n > p->n_dram ? p->n_dram : n;
	return p->dram_gbps[n - 1];
}

double sim_barrier_us(const struct sim_profile *p, int n)
{
	n = n < 1 ? 1 : n > p->n_bar ? p->n_bar : n;
	return p->barrier_us[n - 1];
}

/* index i and weight w so that x lies between v[i] and v[i + 1] in log2 */
static void bracket(const double *v, int n, double x, int *i, double *w)
{
	if (n == 1 || x <= v[0]) {
		*i = 0;
		*w = 0;
		return;
	}
	if (x >= v[n - 1]) {
		*i = n - 2;
		*w = 1;
		return;
	}
	int k = 0;
	while (k < n - 2 && x > v[k + 1])
		k++;
	*i = k;
	*w = (log2(x) - log2(v[k])) / (log2(v[k + 1]) - log2(v[k]));
}

double sim_flash_gbps(const struct sim_profile *p, double bs, double qd)
{
	int b, q;
	double wb, wq;

	if (!p->have_flash)
		return 0;
	bracket(p->bs, p->n_bs, bs, &b, &wb);
	bracket(p->qd, p->n_qd, qd, &q, &wq);
	int b1 = p->n_bs > 1 ? b + 1 : b, q1 = p->n_qd > 1 ? q + 1 : q;
	double g0 = p->flash_gbps[b][q] * (1 - wq) + p->flash_gbps[b][q1] * wq;
	double g1 = p->flash_gbps[b1][q] * (1 - wq) + p->flash_gbps[b1][q1] * wq;
	return g0 * (1 - wb) + g1 * wb;
}

/* ---- the tensors ------------------------------------------------------ */

static uint32_t n_tensors(const struct llama_hparams *hp)
{
	return (uint32_t)hp->n_layer * LT_COUNT + GT_COUNT;
}

int sim_tensors_from_shape(const struct shapes_model *s,
			   const struct shapes_ftype *f,
			   struct llama_hparams *hp, struct sim_tensor *t)
{
	struct shapes_bytes mb;
	int rc;

	if ((rc = shapes_model_bytes(s, f, &mb)))
		return rc;
	*hp = (struct llama_hparams){
		.n_layer = s->n_layer, .n_embd = s->n_embd, .n_head = s->n_head,
		.n_head_kv = s->n_head_kv, .head_dim = s->n_embd / s->n_head,
		.n_ff = s->n_ff, .n_vocab = s->n_vocab, .n_ctx_train = s->n_ctx,
		.rope_dim = s->n_embd / s->n_head, .rope_base = s->rope_base,
		.rms_eps = 1e-5f, .tied_output = false,
	};
	for (int32_t l = 0; l < s->n_layer; l++) {
		struct shapes_layer_bytes lb;
		if ((rc = shapes_layer_bytes(s, f, l, &lb)))
			return rc;
		for (int i = 0; i < LT_COUNT; i++) {
			int64_t ne[2];
			shapes_layer_tensor_ne(s, (enum llama_layer_tensor)i, ne);
			t[l * LT_COUNT + i] = (struct sim_tensor){
				lb.type[i], ne[1], ne[0], (uint64_t)lb.bytes[i], 0 };
		}
	}
	struct sim_tensor *g = &t[s->n_layer * LT_COUNT];
	g[GT_TOK_EMBD] = (struct sim_tensor){ mb.type[GT_TOK_EMBD], s->n_vocab,
		s->n_embd, (uint64_t)mb.bytes[GT_TOK_EMBD], 0 };
	g[GT_OUTPUT_NORM] = (struct sim_tensor){ mb.type[GT_OUTPUT_NORM], 1,
		s->n_embd, (uint64_t)mb.bytes[GT_OUTPUT_NORM], 0 };
	g[GT_OUTPUT] = (struct sim_tensor){ mb.type[GT_OUTPUT], s->n_vocab,
		s->n_embd, (uint64_t)mb.bytes[GT_OUTPUT], 0 };
	return 0;
}

void sim_tensors_from_model(const struct llama_model *m, struct sim_tensor *t)
{
	const uint32_t n = n_tensors(&m->hp);

	for (uint32_t i = 0; i < n; i++) {
		const struct gguf_tensor *g = i < (uint32_t)m->hp.n_layer * LT_COUNT
			? m->layer[i] : m->global[i - (uint32_t)m->hp.n_layer * LT_COUNT];
		t[i] = (struct sim_tensor){ g->type, g->n_rows, g->ne[0], g->n_bytes,
					    g->file_offset };
	}
}

/* ---- the state of one prediction -------------------------------------- */

/* one unit's rows (floating: a chip holds 1/chips of them) */
struct share {
	double rows[LT_COUNT]; /* of each layer matrix */
	int64_t row0[LT_COUNT]; /* the first of them (one chip) */
	double vocab;
	int64_t vocab0;
	double q_heads, kv_heads;
};

struct disk {
	double free_t; /* when the last queued read lands */
	double busy_s; /* serving reads */
	double lat_s;  /* first byte, disk idle */
};

struct ctx {
	const struct sim_input *in;
	const struct sim_profile *p;
	struct plan plan;
	int n;            /* units */
	int rings;        /* flash rings: n (owner), 1 (shared) */
	int L, n_segs, P; /* layers, segments (L + head), effective prefetch */
	double bar_s;
	int bars_layer;
	struct share u[SIM_MAX_UNITS];
	uint8_t *pinned;  /* [n_segs] */
	/* per segment: flash bytes (all rings), requests, rate */
	double *seg_bytes, *seg_gbps;
	/* per layer: the unit-max time of phases 1-3 and the weight part of
	 * phase 0, per unit */
	double *w_phase;  /* [L][SIM_PHASES] slowest unit */
	double *w0;       /* [L][n] phase 0 weights, per unit */
	double head_s, embed_s, sample_s, fabric_layer_s, fabric_head_s;
	int n_coll_layer;
	double fabric_bytes_layer;
	/* KV */
	int32_t kv_B[SIM_MAX_UNITS];
	double kv_row_bytes[SIM_MAX_UNITS]; /* one position, K or V */
	/* replay */
	struct disk disk;
	int64_t *seg_tok;  /* [n_segs] token (cycle) each was issued for */
	double *seg_done;
	int64_t *kv_tok;   /* [L] */
	double *kv_done;
	double stall_s;
	double pinned_share_bytes; /* the units' shares of pinned segments */
	double streamed_share_bytes; /* ... of streamed ones (not widened) */
};

static double rate_bps(const struct ctx *c, uint32_t type, bool dram)
{
	/* per unit: the aggregate figure at n threads, shared by n */
	return sim_kern_gbps(c->p, type, c->n, dram) * 1e9 / c->n;
}

static double row_bytes(const struct sim_tensor *t)
{
	return t->rows > 0 ? (double)t->bytes / (double)t->rows : 0;
}

static const struct sim_tensor *lt(const struct ctx *c, int l, int i)
{
	return &c->in->t[l * LT_COUNT + i];
}

static const struct sim_tensor *gt(const struct ctx *c, int i)
{
	return &c->in->t[c->L * LT_COUNT + i];
}

/* the units' rows, from the plan */
static void shares(struct ctx *c)
{
	const struct llama_hparams *hp = &c->in->hp;
	const double hd = hp->head_dim, ch = c->in->chips;

	for (int i = 0; i < c->n; i++) {
		const struct plan_unit *pu = &c->plan.unit[i];
		struct plan_range q = c->in->nmu_on ? pu->q_heads : pu->q_part;
		struct plan_range kv = c->in->nmu_on ? pu->kv_heads : pu->kv_part;
		struct share *s = &c->u[i];

		memset(s, 0, sizeof(*s));
		s->q_heads = (double)plan_len(q) / ch;
		s->kv_heads = (double)plan_len(kv) / ch;
		s->rows[LT_WQ] = s->q_heads * hd;
		s->rows[LT_WK] = s->rows[LT_WV] = s->kv_heads * hd;
		s->rows[LT_WO] = s->rows[LT_W_DOWN] = (double)plan_len(pu->embd) / ch;
		s->rows[LT_W_GATE] = s->rows[LT_W_UP] = (double)plan_len(pu->ff) / ch;
		s->vocab = (double)plan_len(pu->vocab) / ch;
		s->row0[LT_WQ] = q.r0 * (int64_t)hd;
		s->row0[LT_WK] = s->row0[LT_WV] = kv.r0 * (int64_t)hd;
		s->row0[LT_WO] = s->row0[LT_W_DOWN] = pu->embd.r0;
		s->row0[LT_W_GATE] = s->row0[LT_W_UP] = pu->ff.r0;
		s->vocab0 = pu->vocab.r0;
	}
}

/* --dram-budget: the engine's own rule on whole tensors */
static void pin(struct ctx *c, struct sim_result *r)
{
	uint32_t nt = n_tensors(&c->in->hp), *ids = xcalloc(nt, sizeof(*ids));
	struct memtier_tensor *t = xcalloc(nt, sizeof(*t));
	struct memtier_segment *segs = xcalloc((size_t)c->n_segs, sizeof(*segs));

	for (uint32_t i = 0; i < nt; i++) {
		t[i].n_bytes = (uint64_t)((double)c->in->t[i].bytes / c->in->chips);
		ids[i] = i;
	}
	for (int l = 0; l < c->L; l++)
		segs[l] = (struct memtier_segment){ LT_COUNT, &ids[l * LT_COUNT] };
	segs[c->L] = (struct memtier_segment){ 2, &ids[c->L * LT_COUNT + GT_OUTPUT_NORM] };
	r->n_pinned = 0;
	r->pinned_bytes = 0;
	if (c->in->tier == MEMTIER_FLASH && c->in->dram_budget != UINT64_MAX)
		r->n_pinned = memtier_budget_fit(t, segs, (uint32_t)c->n_segs,
						 c->in->dram_budget, &r->pinned_bytes);
	for (int s = 0; s < c->n_segs; s++)
		c->pinned[s] = c->in->tier != MEMTIER_FLASH || (uint32_t)s < r->n_pinned;
	free(t);
	free(segs);
	free(ids);
}

/* flash bytes, requests and the grid rate of every streamed segment */
static void segments(struct ctx *c, struct sim_result *r)
{
	int streamed = 0;

	for (int s = 0; s < c->n_segs; s++) {
		double bytes = 0, reqs = 0;
		int nt = s < c->L ? LT_COUNT : 2;

		for (int k = 0; k < nt; k++) {
			int id = s < c->L ? s * LT_COUNT + k
					  : c->L * LT_COUNT + GT_OUTPUT_NORM + k;
			const struct sim_tensor *t = &c->in->t[id];
			double rb = row_bytes(t);
			for (int ring = 0; ring < c->rings; ring++) {
				double rows;
				int64_t r0 = 0;
				bool norm = s < c->L ? k == LT_ATTN_NORM || k == LT_FFN_NORM
						     : k == 0;
				if (!c->in->nmu_on || norm)
					rows = norm ? 1 : (double)t->rows / c->in->chips;
				else if (s < c->L)
					rows = c->u[ring].rows[k], r0 = c->u[ring].row0[k];
				else
					rows = c->u[ring].vocab, r0 = c->u[ring].vocab0;
				/* the range widened to 4 KiB: exact for a file's
				 * tensor on one chip, + 4 KiB on average else */
				double b = rows * rb + SIM_FLASH_ALIGN;
				if (t->file_offset && c->in->chips == 1) {
					double a = (double)t->file_offset + (double)r0 * rb;
					b = ceil((a + rows * rb) / SIM_FLASH_ALIGN) *
						    SIM_FLASH_ALIGN -
					    floor(a / SIM_FLASH_ALIGN) * SIM_FLASH_ALIGN;
				}
				bytes += b;
				if (c->pinned[s] && c->in->tier == MEMTIER_FLASH)
					c->pinned_share_bytes += rows * rb;
				else if (c->in->tier == MEMTIER_FLASH)
					c->streamed_share_bytes += rows * rb;
				reqs += ceil(b / SIM_FLASH_REQ);
			}
		}
		c->seg_bytes[s] = c->pinned[s] ? 0 : bytes;
		if (!c->pinned[s]) {
			double per_ring = reqs / c->rings;
			double qd = c->rings * fmin(SIM_RING_QD,
						    per_ring * (c->P > 1 ? c->P : 1));
			c->seg_gbps[s] = sim_flash_gbps(c->p, bytes / reqs, qd);
			r->tok.flash_req_bytes = bytes / reqs;
			r->tok.flash_qd = qd;
			streamed++;
		}
	}
	/* the engine's prefetch_after never reaches past a whole cycle */
	c->P = c->in->prefetch;
	if (c->P > streamed - 1)
		c->P = streamed > 1 ? streamed - 1 : 0;
}

/* decode weights of layer l: per-unit phase 0 and the slowest unit of
 * phases 1-3; the per-type attribution into the breakdown */
static void layer_weights(struct ctx *c, struct sim_breakdown *b,
			  uint64_t *bytes_u)
{
	static const int phase_of[LT_COUNT] = {
		[LT_WQ] = 0, [LT_WK] = 0, [LT_WV] = 0, [LT_WO] = 1,
		[LT_W_GATE] = 2, [LT_W_UP] = 2, [LT_W_DOWN] = 3,
		[LT_ATTN_NORM] = -1, [LT_FFN_NORM] = -1 };
	const double dram_bps = dram_gbps(c->p, c->n) * 1e9 / c->n;

	for (int l = 0; l < c->L; l++) {
		double ph[SIM_MAX_UNITS][SIM_PHASES];
		memset(ph, 0, sizeof(ph[0]) * (size_t)c->n);
		for (int k = 0; k < LT_COUNT; k++) {
			const struct sim_tensor *t = lt(c, l, k);
			double slowest = 0;
			if (phase_of[k] < 0)
				continue;
			for (int i = 0; i < c->n; i++) {
				double by = c->u[i].rows[k] * row_bytes(t);
				double s = by / rate_bps(c, t->type, true);
				ph[i][phase_of[k]] += s;
				bytes_u[i] += (uint64_t)by;
				b->matvec_bytes[t->type] += (uint64_t)by;
				if (s > slowest) {
					slowest = s;
				}
			}
			/* the roofline's two sides, for the slowest unit's bytes */
			double by = slowest * rate_bps(c, t->type, true);
			b->matvec_s[t->type] += slowest;
			b->matvec_compute_s[t->type] += by / rate_bps(c, t->type, false);
			b->matvec_memory_s[t->type] += by / dram_bps;
		}
		for (int q = 1; q < SIM_PHASES; q++) {
			double m = 0;
			for (int i = 0; i < c->n; i++)
				m = fmax(m, ph[i][q]);
			c->w_phase[l * SIM_PHASES + q] = m;
		}
		for (int i = 0; i < c->n; i++)
			c->w0[l * c->n + i] = ph[i][0];
	}
}

/* attention of unit i over pos + 1 positions, one token */
static double attention_s(const struct ctx *c, int i, int32_t pos)
{
	const double hd = c->in->hp.head_dim, np = (double)pos + 1;
	double uniq = c->u[i].kv_heads * 2 * np * hd * 4;
	double bytes = c->u[i].q_heads * 2 * np * hd * 4;

	return bytes / rate_bps(c, KT_F32, uniq > (double)c->p->l2_bytes);
}

/* the head, the embedding, the sampler, the fabric: per token */
static void token_parts(struct ctx *c, struct sim_breakdown *b,
			uint64_t *bytes_u)
{
	const struct sim_tensor *out = gt(c, GT_OUTPUT), *emb = gt(c, GT_TOK_EMBD);
	const struct llama_hparams *hp = &c->in->hp;
	double m = 0;

	for (int i = 0; i < c->n; i++) {
		double by = c->u[i].vocab * row_bytes(out);
		m = fmax(m, by / rate_bps(c, out->type, true));
		bytes_u[i] += (uint64_t)by;
		b->matvec_bytes[out->type] += (uint64_t)by;
	}
	b->matvec_s[out->type] += m;
	b->matvec_compute_s[out->type] += m * rate_bps(c, out->type, true) /
					  rate_bps(c, out->type, false);
	b->matvec_memory_s[out->type] += m * rate_bps(c, out->type, true) /
					 (dram_gbps(c->p, c->n) * 1e9 / c->n);
	c->head_s = m;
	/* the embedding row: one unit reads it */
	double rb = row_bytes(emb);
	c->embed_s = c->in->tier == MEMTIER_FLASH
		? c->p->flash_lat_us * 1e-6 + rb / (sim_flash_gbps(c->p, 4096, 1) * 1e9)
		: rb / (dram_gbps(c->p, 1) * 1e9);
	bytes_u[0] += (uint64_t)rb;
	c->sample_s = hp->n_vocab * (c->in->greedy ? c->p->greedy_ns
						   : c->p->sampler_ns) * 1e-9;
	/* collectives between chips: ring all-gather / all-reduce */
	c->fabric_layer_s = c->fabric_head_s = 0;
	c->n_coll_layer = 0;
	c->fabric_bytes_layer = 0;
	if (c->in->chips > 1) {
		const double N = c->in->chips;
		double lat = (c->p->have_fabric ? c->p->fabric_lat_us : 0) * 1e-6 +
			     c->in->fabric_latency_us * 1e-6;
		double bw = (c->in->fabric_gbps > 0 ? c->in->fabric_gbps
						    : c->p->fabric_gbps) * 1e9;
		double sizes[4] = { hp->n_embd, hp->n_embd, hp->n_ff, hp->n_embd };
		int ncoll = c->in->tp == SIM_TP_ROWS ? 4 : 2;
		double mult = c->in->tp == SIM_TP_ROWS ? 1 : 2;
		for (int k = 0; k < ncoll; k++) {
			double S = sizes[c->in->tp == SIM_TP_ROWS ? k : 0] * 4;
			c->fabric_layer_s += mult * (N - 1) * (lat + S / N / bw);
			c->fabric_bytes_layer += mult * (N - 1) / N * S * N;
		}
		c->n_coll_layer = ncoll;
		double S = (double)hp->n_vocab * 4;
		c->fabric_head_s = (N - 1) * (lat + S / N / bw);
	}
}

/* ---- the flash replay ------------------------------------------------- */

static double disk_read(struct disk *d, double t, double bytes, double gbps)
{
	if (bytes <= 0 || gbps <= 0)
		return t;
	double start = t >= d->free_t ? t + d->lat_s : d->free_t;
	double svc = bytes / (gbps * 1e9);

	d->free_t = start + svc;
	d->busy_s += svc;
	return d->free_t;
}

static void issue_seg(struct ctx *c, int s, int64_t tok, double t)
{
	if (c->pinned[s] || c->seg_tok[s] >= tok)
		return;
	c->seg_tok[s] = tok;
	c->seg_done[s] = disk_read(&c->disk, t, c->seg_bytes[s], c->seg_gbps[s]);
}

/* memtier_acquire(s) at time t of cycle tok: when its data is there */
static double acquire(struct ctx *c, int s, int64_t tok, double t)
{
	issue_seg(c, s, tok, t);
	for (int k = 1, queued = 0; k < c->n_segs && queued < c->P; k++) {
		int s2 = (s + k) % c->n_segs;
		if (c->pinned[s2])
			continue;
		queued++;
		issue_seg(c, s2, tok + (s + k >= c->n_segs), t);
	}
	return c->pinned[s] ? t : fmax(t, c->seg_done[s]);
}

/* K/V from flash for layer l of a token whose cached positions are
 * [0, pos): the full blocks, all units */
static void kv_flash(const struct ctx *c, int32_t pos, double *bytes,
		     double *gbps)
{
	double by = 0, blocks = 0, bb = 0;

	for (int i = 0; i < c->n; i++) {
		double full = floor((double)pos / c->kv_B[i]);
		bb = c->kv_B[i] * c->kv_row_bytes[i];
		by += 2 * full * bb;
		blocks += 2 * full;
	}
	*bytes = by;
	*gbps = by > 0 ? sim_flash_gbps(c->p, bb, fmin(SIM_RING_QD * c->rings,
				blocks * (c->P > 1 ? c->P : 1))) : 0;
}

static void issue_kv(struct ctx *c, int l, int64_t tok, int32_t pos, double t)
{
	if (c->in->kv_tier != MEMTIER_FLASH)
		return;
	for (int j = l; j < c->L && j <= l + c->in->prefetch; j++) {
		if (c->kv_tok[j] >= tok)
			continue;
		double by, g;
		kv_flash(c, pos, &by, &g);
		c->kv_tok[j] = tok;
		c->kv_done[j] = disk_read(&c->disk, t, by, g);
	}
}

/* the K/V blocks written per token and layer (all units), on the disk */
static double kv_write_bytes_layer(const struct ctx *c)
{
	double by = 0;

	for (int i = 0; i < c->n; i++)
		by += 2 * c->kv_row_bytes[i]; /* B rows a block, every B tokens */
	return by;
}

/* one pass (a decode token or a prefill batch) through the layers:
 * compute[l] is layer l's compute, from time t; returns its end */
static double replay(struct ctx *c, int64_t tok, int32_t pos, double t,
		     const double *compute, double embed_s, double head_s)
{
	double R = acquire(c, 0, tok, t);

	c->stall_s += R - t;
	t = R + embed_s;
	for (int l = 0; l < c->L; l++) {
		issue_kv(c, l, tok, pos, t);
		if (c->in->kv_tier == MEMTIER_FLASH) {
			/* the blocks written, spread over the tokens */
			double w = kv_write_bytes_layer(c) / (c->p->kv_write_gbps * 1e9);
			c->disk.busy_s += w;
			c->disk.free_t = fmax(c->disk.free_t, t) + w;
		}
		R = acquire(c, l + 1, tok, t);
		if (c->in->kv_tier == MEMTIER_FLASH)
			R = fmax(R, c->kv_done[l]);
		c->stall_s += R - t;
		t = R + compute[l];
	}
	return t + head_s;
}

/* decode compute of every layer at position pos into comp[L]; the
 * attention and imbalance figures into b when b is not NULL */
static void decode_compute(struct ctx *c, int32_t pos, double *comp,
			   struct sim_breakdown *b)
{
	for (int l = 0; l < c->L; l++) {
		double p0 = 0, att_max = 0;
		for (int i = 0; i < c->n; i++) {
			double a = attention_s(c, i, pos);
			double w = c->w0[l * c->n + i] + a;
			p0 = fmax(p0, w);
			att_max = fmax(att_max, a);
		}
		double rest = 0;
		for (int q = 1; q < SIM_PHASES; q++)
			rest += c->w_phase[l * SIM_PHASES + q];
		comp[l] = p0 + rest + c->bars_layer * c->bar_s + c->fabric_layer_s;
		if (b) {
			b->attention_s += att_max;
			b->compute_s += p0 + rest;
		}
	}
}

/* prefill compute of every layer for a batch of nb tokens from p0 */
static double prefill_compute(struct ctx *c, int32_t p0, int32_t nb,
			      double *comp)
{
	const double hd = c->in->hp.head_dim;
	double f32_macs = sim_kern_gbps(c->p, KT_F32, c->n, false) * 1e9 / 4 / c->n;
	double pos_sum = (double)nb * p0 + (double)nb * (nb + 1) / 2;
	double total = 0;

	for (int l = 0; l < c->L; l++) {
		static const int phase_of[LT_COUNT] = {
			[LT_WQ] = 0, [LT_WK] = 0, [LT_WV] = 0, [LT_WO] = 1,
			[LT_W_GATE] = 2, [LT_W_UP] = 2, [LT_W_DOWN] = 3,
			[LT_ATTN_NORM] = -1, [LT_FFN_NORM] = -1 };
		double ph[SIM_PHASES] = { 0 };
		for (int i = 0; i < c->n; i++) {
			double u[SIM_PHASES] = { 0 };
			for (int k = 0; k < LT_COUNT; k++) {
				const struct sim_tensor *t = lt(c, l, k);
				const struct sim_kern_rate *kr = &c->p->kern[t->type];
				if (phase_of[k] < 0)
					continue;
				double macs = c->u[i].rows[k] * (double)t->cols * nb;
				double rate = kr->have_mm
					? at_threads(kr->mm_gmacs, c->p->n_threads, c->n) * 1e9 / c->n
					: f32_macs;
				u[phase_of[k]] += macs / rate;
			}
			u[0] += c->u[i].q_heads * hd * 2 * pos_sum / f32_macs;
			for (int q = 0; q < SIM_PHASES; q++)
				ph[q] = fmax(ph[q], u[q]);
		}
		comp[l] = ph[0] + ph[1] + ph[2] + ph[3] + c->bars_layer * c->bar_s +
			  c->fabric_layer_s;
		total += comp[l];
	}
	return total;
}

/* ---- sim_predict ------------------------------------------------------ */

static int check(const struct sim_input *in, const struct sim_profile *p,
		 char *err, size_t errlen)
{
	const struct llama_hparams *hp = &in->hp;

	if (in->n_units < 1 || in->n_units > SIM_MAX_UNITS)
		return fail(err, errlen, "%d units: want 1 .. %d", in->n_units,
			    SIM_MAX_UNITS);
	if (in->chips < 1)
		return fail(err, errlen, "--chips %d: want >= 1", in->chips);
	if (in->n_prompt < 1 || in->n_predict < 1)
		return fail(err, errlen, "want a prompt and at least one token");
	if (in->n_ctx > 0 && in->n_prompt + in->n_predict - 1 > in->n_ctx)
		return fail(err, errlen, "%d prompt + %d generated tokens do not fit "
			    "the context of %d", in->n_prompt, in->n_predict,
			    in->n_ctx);
	for (uint32_t i = 0; i < n_tensors(hp); i++) {
		uint32_t ty = in->t[i].type;
		if ((i % LT_COUNT == LT_ATTN_NORM || i % LT_COUNT == LT_FFN_NORM) &&
		    i < (uint32_t)hp->n_layer * LT_COUNT)
			continue;
		if (i == (uint32_t)hp->n_layer * LT_COUNT + GT_OUTPUT_NORM)
			continue;
		if (ty >= KT_COUNT || !p->kern[ty].have)
			return fail(err, errlen, "%s: kernels.types.%s: missing (the "
				    "model has %s weights)", p->path,
				    kern_type_info(ty) ? kern_type_info(ty)->name : "?",
				    kern_type_info(ty) ? kern_type_info(ty)->name : "?");
	}
	if ((in->tier == MEMTIER_FLASH || in->kv_tier == MEMTIER_FLASH) &&
	    !p->have_flash)
		return fail(err, errlen, "%s: flash: missing (the run reads flash; "
			    "probe without --no-flash)", p->path);
	if (in->kv_tier == MEMTIER_FLASH && !p->have_kv_write)
		return fail(err, errlen, "%s: kv_write: missing (--kv-tier flash "
			    "writes KV blocks; probe without --no-kv)", p->path);
	if (in->chips > 1 && !p->have_fabric && in->fabric_gbps <= 0)
		return fail(err, errlen, "--chips %d: %s has no fabric (latency_us, "
			    "gbps); give --fabric-gbps and --fabric-latency-us",
			    in->chips, p->path);
	return 0;
}

/* the KV blocks of every unit: B rounded up to whole 4 KiB pages */
static void kv_blocks(struct ctx *c)
{
	const double hd = c->in->hp.head_dim;
	int32_t B = c->in->kv_block > 0 ? c->in->kv_block : SIM_KV_BLOCK;

	for (int i = 0; i < c->n; i++) {
		double rb = (c->in->nmu_on ? c->u[i].kv_heads
					   : (double)c->in->hp.n_head_kv / c->in->chips) * hd * 4;
		int64_t row = (int64_t)rb, g = 4096;
		for (int64_t a = row, b = 4096; b; ) { /* gcd */
			int64_t tmp = a % b;
			a = b;
			b = tmp;
			g = a;
		}
		int64_t step = row > 0 ? 4096 / g : 1;
		c->kv_B[i] = (int32_t)((B + step - 1) / step * step);
		c->kv_row_bytes[i] = rb;
		if (!c->in->nmu_on) { /* one cache for all units: unit 0's */
			c->kv_row_bytes[i] = i == 0 ? rb : 0;
		}
	}
}

static void ctx_free(struct ctx *c)
{
	free(c->pinned);
	free(c->seg_bytes);
	free(c->seg_gbps);
	free(c->w_phase);
	free(c->w0);
	free(c->seg_tok);
	free(c->seg_done);
	free(c->kv_tok);
	free(c->kv_done);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* everything per token that does not depend on the position */
static void fill_static(struct ctx *c, struct sim_result *r)
{
	const struct llama_hparams *hp = &c->in->hp;
	uint64_t bytes_u[SIM_MAX_UNITS] = { 0 };
	struct sim_breakdown *b = &r->tok;

	pin(c, r);
	c->P = c->in->prefetch;
	segments(c, r);
	layer_weights(c, b, bytes_u);
	token_parts(c, b, bytes_u);
	kv_blocks(c);
	r->n_units = c->n;
	r->kv_replicated = c->in->nmu_on ? c->plan.kv_replicated : 0;
	r->weight_bytes_per_token = 0;
	for (int i = 0; i < c->n; i++) {
		r->unit[i].weight_bytes = bytes_u[i];
		r->unit[i].q_heads = (int64_t)c->u[i].q_heads;
		r->unit[i].kv_heads = (int64_t)c->u[i].kv_heads;
		r->weight_bytes_per_token += bytes_u[i] * (uint64_t)c->in->chips;
	}
	/* flash bytes as memtier counts them: the tensors' bytes asked for
	 * (the disk's time above is for the widened copies) */
	b->flash_weight_bytes = (uint64_t)(c->streamed_share_bytes * c->in->chips);
	b->dram_weight_bytes = c->in->tier == MEMTIER_FLASH
		? (uint64_t)(c->pinned_share_bytes * c->in->chips)
		: r->weight_bytes_per_token;
	r->tier_bytes_per_token[c->in->tier] = c->in->tier == MEMTIER_FLASH
		? b->flash_weight_bytes : r->weight_bytes_per_token;
	if (c->in->tier == MEMTIER_FLASH)
		r->tier_bytes_per_token[MEMTIER_DRAM] = b->dram_weight_bytes;
	r->kv_block_tokens = c->kv_B[0];
	r->kv_position_bytes = 0;
	for (int i = 0; i < c->n; i++)
		r->kv_position_bytes += (uint64_t)(2 * c->kv_row_bytes[i] * hp->n_layer);
	r->kv_bytes_written_per_token = (double)r->kv_position_bytes * c->in->chips;
	uint64_t total = 0;
	for (uint32_t i = 0; i < n_tensors(hp); i++)
		total += c->in->t[i].bytes;
	r->weights_gb = (double)total / 1e9;
	r->kv_gb = (double)r->kv_position_bytes * c->in->chips *
		   (c->in->n_ctx > 0 ? c->in->n_ctx : c->in->n_prompt + c->in->n_predict) / 1e9;
}

int sim_predict(const struct sim_input *in, const struct sim_profile *prof,
		struct sim_result *out, char *err, size_t errlen)
{
	struct plan_config pc;
	struct ctx *c;
	struct sim_result *r;
	int rc;

	if ((rc = check(in, prof, err, errlen)))
		return rc;
	c = xcalloc(1, sizeof(*c));
	r = xcalloc(1, sizeof(*r));
	c->in = in;
	c->p = prof;
	c->n = in->n_units;
	pc = (struct plan_config){ .n_units = c->n };
	if ((rc = plan_init(&c->plan, &in->hp, &pc, err, errlen)))
		goto out;
	c->L = in->hp.n_layer;
	c->n_segs = c->L + 1;
	c->rings = in->nmu_on ? c->n : 1;
	c->bar_s = c->n > 1 ? sim_barrier_us(prof, c->n) * 1e-6 : 0;
	c->bars_layer = 4 + (in->nmu_on ? 0 : 1);
	c->pinned = xcalloc((size_t)c->n_segs, 1);
	c->seg_bytes = xcalloc((size_t)c->n_segs, sizeof(double));
	c->seg_gbps = xcalloc((size_t)c->n_segs, sizeof(double));
	c->w_phase = xcalloc((size_t)c->L * SIM_PHASES, sizeof(double));
	c->w0 = xcalloc((size_t)c->L * c->n, sizeof(double));
	c->seg_tok = xcalloc((size_t)c->n_segs, sizeof(int64_t));
	c->seg_done = xcalloc((size_t)c->n_segs, sizeof(double));
	c->kv_tok = xcalloc((size_t)c->L, sizeof(int64_t));
	c->kv_done = xcalloc((size_t)c->L, sizeof(double));
	for (int s = 0; s < c->n_segs; s++)
		c->seg_tok[s] = -1;
	for (int l = 0; l < c->L; l++)
		c->kv_tok[l] = -1;
	c->disk.lat_s = prof->have_flash ? prof->flash_lat_us * 1e-6 : 0;
	shares(c);
	fill_static(c, r);

	/* prefill: batches through the same replay, cycles 0 .. */
	double *comp = xcalloc((size_t)c->L, sizeof(double));
	int32_t nb_max = in->n_batch > 0 ? in->n_batch : SIM_BATCH;
	double t = 0, pre_comp = 0;
	int64_t tok = 0;
	int n_bar_tok = c->bars_layer * c->L + 1;
	for (int32_t p0 = 0; p0 < in->n_prompt; p0 += nb_max, tok++) {
		int32_t nb = in->n_prompt - p0 < nb_max ? in->n_prompt - p0 : nb_max;
		pre_comp += prefill_compute(c, p0, nb, comp);
		t = replay(c, tok, p0, t, comp, c->embed_s * nb + c->bar_s,
			   c->head_s + c->fabric_head_s + c->sample_s);
	}
	r->prefill_s = t;
	r->prefill_tok_per_s = in->n_prompt / t;
	r->prefill_compute_s = pre_comp;
	r->prefill_barrier_s = (double)tok * n_bar_tok * c->bar_s;
	r->prefill_flash_s = c->disk.busy_s;

	/* decode: tokens at positions n_prompt .. n_prompt + n_predict - 2 */
	int32_t nd = in->n_predict - 1, pos_med = in->n_prompt + (nd > 0 ? nd / 2 : 0);
	double *steps = xcalloc((size_t)(nd > 0 ? nd : 1), sizeof(double));
	double busy0 = c->disk.busy_s, stall0 = c->stall_s;
	double med_busy = 0, med_stall = 0;
	for (int32_t k = 0; k < nd; k++, tok++) {
		int32_t pos = in->n_prompt + k;
		double b0 = c->disk.busy_s, s0 = c->stall_s, t0 = t;
		decode_compute(c, pos, comp, NULL);
		t = replay(c, tok, pos, t, comp, c->embed_s + c->bar_s,
			   c->head_s + c->fabric_head_s + c->sample_s);
		steps[k] = t - t0;
		if (pos == pos_med) {
			med_busy = c->disk.busy_s - b0;
			med_stall = c->stall_s - s0;
		}
	}
	r->decode_tokens = nd;
	r->decode_s = t - r->prefill_s;
	r->decode_tok_per_s = nd > 0 ? nd / r->decode_s : 0;
	(void)busy0;
	(void)stall0;

	/* the breakdown of the median token */
	struct sim_breakdown *b = &r->tok;
	b->pos = pos_med;
	decode_compute(c, pos_med, comp, b);
	b->embed_s = c->embed_s;
	b->head_s = c->head_s;
	b->sample_s = c->sample_s;
	b->n_barriers = n_bar_tok;
	b->barrier_s = n_bar_tok * c->bar_s;
	b->n_collectives = in->chips > 1 ? c->n_coll_layer * c->L + 1 : 0;
	b->fabric_s = c->fabric_layer_s * c->L + c->fabric_head_s;
	b->fabric_bytes = in->chips > 1 ? c->fabric_bytes_layer * c->L +
		(double)in->hp.n_vocab * 4 * (in->chips - 1) : 0;
	b->flash_busy_s = med_busy;
	b->flash_stall_s = med_stall;
	b->flash_overlap_s = fmax(0, med_busy - med_stall);
	b->flash_gbps = b->flash_req_bytes > 0
		? sim_flash_gbps(prof, b->flash_req_bytes, b->flash_qd) : 0;
	for (int i = 0; i < c->n; i++) {
		b->kv_read_bytes += (uint64_t)(2 * c->kv_row_bytes[i] *
					       (pos_med + 1) * c->L);
		double fb, g;
		kv_flash(c, pos_med, &fb, &g);
		(void)g;
		if (i == 0 && in->kv_tier == MEMTIER_FLASH)
			b->kv_flash_read_bytes = (uint64_t)(fb * c->L);
	}
	b->kv_read_bytes *= (uint64_t)in->chips;
	b->kv_write_bytes = r->kv_bytes_written_per_token;
	r->kv_bytes_per_token_read = b->kv_read_bytes;
	if (nd > 0) {
		qsort(steps, (size_t)nd, sizeof(double), cmp_d);
		r->median_step_ms = (nd % 2 ? steps[nd / 2]
				     : 0.5 * (steps[nd / 2 - 1] + steps[nd / 2])) * 1e3;
		b->total_s = r->median_step_ms * 1e-3;
	}
	for (int i = 0; i < c->n; i++) {
		double s = 0;
		for (int l = 0; l < c->L; l++)
			s += c->w0[l * c->n + i] + attention_s(c, i, pos_med);
		r->unit[i].compute_s = s; /* phase 0; phases 1-3 below */
	}
	for (int i = 0; i < c->n; i++) {
		double s = 0;
		for (int l = 0; l < c->L; l++)
			for (int k = LT_WO; k < LT_COUNT; k++) {
				const struct sim_tensor *tt = lt(c, l, k);
				if (k == LT_FFN_NORM)
					continue;
				s += c->u[i].rows[k] * row_bytes(tt) /
				     rate_bps(c, tt->type, true);
			}
		r->unit[i].compute_s += s;
	}
	double mx = 0, mean = 0;
	for (int i = 0; i < c->n; i++) {
		mx = fmax(mx, r->unit[i].compute_s);
		mean += r->unit[i].compute_s / c->n;
	}
	b->imbalance = mean > 0 ? mx / mean : 1;
	*out = *r;
	free(steps);
	free(comp);
out:
	ctx_free(c);
	free(c);
	free(r);
	return rc;
}
