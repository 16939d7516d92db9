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
#define SIM_CMD_BYTES 88  /* engine/forward.c's struct chip_cmd */
#define SIM_CMD_TOKENS 16 /* tokens it carries; more: a second bcast */

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

/* a series of (bytes, GB/s by threads) points at ws: linear in log2,
 * flat outside */
static double series_gbps(const struct sim_profile *p, int n_pts,
			  const double *bytes, const double (*gbps)[2], int n,
			  double ws)
{
	double g[2];
	int i;

	for (i = 0; i + 1 < n_pts && ws > bytes[i + 1]; i++)
		;
	if (ws <= bytes[0] || i + 1 >= n_pts) {
		const double *v = ws <= bytes[0] ? gbps[0] : gbps[n_pts - 1];
		return at_threads(v, p->n_threads, n);
	}
	double w = log2(ws / bytes[i]) / log2(bytes[i + 1] / bytes[i]);
	for (int k = 0; k < 2; k++)
		g[k] = gbps[i][k] + w * (gbps[i + 1][k] - gbps[i][k]);
	return at_threads(g, p->n_threads, n);
}

double sim_kern_ws_gbps(const struct sim_profile *p, uint32_t type, int n,
			double ws)
{
	const struct sim_kern_rate *r = type < KT_COUNT ? &p->kern[type] : NULL;

	if (!r || !r->have)
		return 0;
	if (r->n_ws < 1 || !(ws > 0))
		return sim_kern_gbps(p, type, n, true);
	return series_gbps(p, r->n_ws, r->ws_bytes,
			   (const double (*)[2])r->ws_gbps, n, ws);
}

double sim_kern_mmap_gbps(const struct sim_profile *p, uint32_t type, int n,
			  double ws)
{
	const struct sim_kern_rate *r = type < KT_COUNT ? &p->kern[type] : NULL;

	if (!r || !r->have || r->n_sp < 1 || !(ws > 0))
		return sim_kern_ws_gbps(p, type, n, ws);
	return series_gbps(p, r->n_sp, r->sp_bytes,
			   (const double (*)[2])r->sp_gbps, n, ws);
}

double sim_shape_gbps(const struct sim_profile *p, uint32_t type, int64_t rows,
		      int64_t cols, bool small_pages, int n, double ws)
{
	for (int i = 0; i < p->n_shapes; i++) {
		const struct sim_shape *s = &p->shape[i];
		if (s->type == type && s->rows == rows && s->cols == cols &&
		    s->small_pages == small_pages)
			return series_gbps(p, s->n_ws, s->ws_bytes,
					   (const double (*)[2])s->gbps, n,
					   ws > 0 ? ws : s->ws_bytes[s->n_ws - 1]);
	}
	return 0;
}

double sim_mm_gmacs(const struct sim_profile *p, uint32_t type, int n, int nb,
		    bool small_pages)
{
	const struct sim_kern_rate *r = type < KT_COUNT ? &p->kern[type] : NULL;
	double g[2];
	int i;

	if (!r || !r->have_mm)
		return 0;
	if (r->n_mm_tok < 1)
		return at_threads(r->mm_gmacs, p->n_threads, n);
	const double (*v)[2] = small_pages && r->have_mm_sp
		? (const double (*)[2])r->mm_sp_gmacs
		: (const double (*)[2])r->mm_mem_gmacs;
	for (i = 0; i + 1 < r->n_mm_tok && nb > r->mm_tok[i + 1]; i++)
		;
	if (nb <= r->mm_tok[0] || i + 1 >= r->n_mm_tok)
		return at_threads(v[nb <= r->mm_tok[0] ? 0 : r->n_mm_tok - 1],
				  p->n_threads, n);
	double w = log2(nb / r->mm_tok[i]) / log2(r->mm_tok[i + 1] / r->mm_tok[i]);
	for (int k = 0; k < 2; k++)
		g[k] = v[i][k] + w * (v[i + 1][k] - v[i][k]);
	return at_threads(g, p->n_threads, n);
}

/* one head's time at n_pos from a row of the probe's [hd][pos] table */
static double attn_table(const struct sim_ops *o, const double (*tab)[SIM_MAX_ATT],
			 int head_dim, double n_pos)
{
	int h = 0, i;

	if (n_pos <= 0)
		return 0;
	for (int k = 1; k < o->n_hd; k++) /* the nearest measured head_dim */
		if (fabs(o->hd[k] - head_dim) < fabs(o->hd[h] - head_dim))
			h = k;
	const double *v = tab[h];
	for (i = 0; i + 2 < o->n_pos && n_pos > o->pos[i + 1]; i++)
		;
	/* linear between points, the last segment's line beyond, in
	 * proportion to positions below the first */
	double slope = (v[i + 1] - v[i]) / (o->pos[i + 1] - o->pos[i]);
	double ns = v[i] + slope * (n_pos - o->pos[i]);
	if (n_pos < o->pos[0])
		ns = v[0] * n_pos / o->pos[0];
	return fmax(ns, 0) * head_dim / o->hd[h];
}

double sim_attn_ns(const struct sim_profile *p, int head_dim, double n_pos)
{
	return p->ops.have ? attn_table(&p->ops, p->ops.att_ns, head_dim, n_pos) : 0;
}

double sim_attn_cold_ns(const struct sim_profile *p, int head_dim, double n_pos)
{
	return p->ops.have_cold
		? attn_table(&p->ops, p->ops.att_cold_ns, head_dim, n_pos) : 0;
}

static double dram_gbps(const struct sim_profile *p, int n)
{
	n = n < 1 ? 1 : n > p->n_dram ? p->n_dram : n;
	return p->dram_gbps[n - 1];
}

/* the probe's ns per element of op times n (0 without "ops") */
static double op_s(const struct sim_profile *p, enum sim_op op, double n)
{
	return p->ops.have ? p->ops.ns_per_elem[op] * n * 1e-9 : 0;
}

/* quantizing n activations for a matvec of weight type */
static double quant_s(const struct sim_profile *p, uint32_t type, double n)
{
	const struct kern_type_info *ti = kern_type_info(type);
	uint32_t at = ti ? ti->act_type : KT_F32;

	return at == KT_Q8_A ? op_s(p, SIM_OP_Q8A, n)
	       : at == KT_Q8_K ? op_s(p, SIM_OP_Q8K, n) : 0;
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

double sim_fabric_us(const struct sim_profile *p, enum fabric_op op,
		     double msg_bytes, double link_bytes)
{
	const struct sim_fab_curve *cv = op < FABRIC_OP_COUNT ? &p->fab[op] : NULL;

	if (!p->have_fabric)
		return 0;
	if (!cv || cv->n == 0) /* two numbers: a hop and a link */
		return p->fabric_lat_us + link_bytes / (p->fabric_gbps * 1e3);
	int n = cv->n, k = 0;
	if (msg_bytes <= cv->bytes[0]) /* never below the smallest */
		return cv->us[0];
	if (n == 1)
		return cv->us[0] * msg_bytes / cv->bytes[0];
	if (msg_bytes >= cv->bytes[n - 1]) { /* the last slope onwards */
		double sl = (cv->us[n - 1] - cv->us[n - 2]) /
			    (cv->bytes[n - 1] - cv->bytes[n - 2]);
		if (!(sl > 0))
			sl = cv->us[n - 1] / cv->bytes[n - 1];
		return cv->us[n - 1] + (msg_bytes - cv->bytes[n - 1]) * sl;
	}
	while (msg_bytes > cv->bytes[k + 1])
		k++;
	double w = (msg_bytes - cv->bytes[k]) / (cv->bytes[k + 1] - cv->bytes[k]);
	return cv->us[k] + (cv->us[k + 1] - cv->us[k]) * w;
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
	double g = g0 * (1 - wb) + g1 * wb;

	/* decode streams every token without a pause: the grid's short
	 * bursts above what the disk sustains for seconds do not last */
	return p->flash_sustained_gbps > 0 ? fmin(g, p->flash_sustained_gbps) : g;
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

/* one unit's rows, of one chip */
struct share {
	double rows[LT_COUNT]; /* of each layer matrix */
	double colfrac[LT_COUNT]; /* of its columns (--tp allreduce: Wo, down) */
	int64_t row0[LT_COUNT]; /* the first of them */
	double vocab;
	int64_t vocab0;
	double q_heads, kv_heads;
};

/* collectives: their time, count and the bytes chip 0 copies */
struct fab_sum {
	double s, bytes;
	int n;
};

struct disk {
	double free_t; /* when the last queued read lands */
	double busy_s; /* serving reads */
	double lat_s;  /* first byte, disk idle */
};

struct ctx {
	const struct sim_input *in;
	const struct sim_profile *p;
	struct plan_config pc;
	struct plan plan; /* chip 0's */
	struct plan_chip chip[PLAN_MAX_CHIPS]; /* every chip's slice */
	int n;            /* units a chip */
	int N;            /* chips */
	int nu;           /* every chip's units: N x n; unit j is chip j / n's
			   * unit j % n */
	int rings;        /* flash rings a chip: n (owner), 1 (shared) */
	int L, n_segs, P; /* layers, segments (L + head), effective prefetch */
	double bar_s;
	int bars_layer;
	struct share *u;  /* [nu] */
	uint8_t *pinned;  /* [n_segs] */
	/* per segment: flash bytes (all rings), requests, rate */
	double *seg_bytes, *seg_gbps;
	/* per layer: the unit-max time of phases 1-3 and the weight part of
	 * phase 0, per unit */
	double *w_phase;  /* [L][SIM_PHASES] slowest unit */
	double *w0;       /* [L][nu] phase 0 weights, per unit */
	double head_s, embed_s, sample_s;
	/* a decode token's collectives: before the layers, each layer, the
	 * head's */
	struct fab_sum fab_pre, fab_layer, fab_head;
	/* KV */
	int32_t *kv_B;        /* [nu] */
	double *kv_row_bytes; /* [nu] one position, K or V */
	/* replay */
	struct disk disk;
	int64_t *seg_tok;  /* [n_segs] token (cycle) each was issued for */
	double *seg_done;
	int64_t *kv_tok;   /* [L] */
	double *kv_done;
	double stall_s;
	double ws_bytes;  /* bytes a decode token reads from memory (every chip):
			   * the working set the kernels' rate is taken at */
	double *ops0;     /* [nu] a unit's float ops of phase 0 (no attention) */
	double ops_rest;  /* slowest unit's float ops of phases 1-3 */
	double ops_head;
	double pinned_share_bytes; /* every unit's shares of pinned segments */
	double streamed_share_bytes; /* ... of streamed ones (not widened) */
};

/* unit j's bytes of tensor t, layer matrix k */
static double unit_bytes(const struct ctx *c, int j, const struct sim_tensor *t,
			 int k)
{
	double rb = t->rows > 0 ? (double)t->bytes / (double)t->rows : 0;

	return c->u[j].rows[k] * rb * c->u[j].colfrac[k];
}

static double rate_bps(const struct ctx *c, uint32_t type, bool dram)
{
	/* per unit: the aggregate figure at n threads, shared by n; from
	 * memory at the token's working set */
	double g = !dram ? sim_kern_gbps(c->p, type, c->n, false)
		   : c->in->tier == MEMTIER_MMAP
		   ? sim_kern_mmap_gbps(c->p, type, c->n, c->ws_bytes)
		   : sim_kern_ws_gbps(c->p, type, c->n, c->ws_bytes);

	return g * 1e9 / c->n;
}

/* rate_bps from memory for tensor t: at its own shape where the profile
 * measured it on the tier's pages (4 KiB for mmap), else the type's */
static double tensor_bps(const struct ctx *c, const struct sim_tensor *t)
{
	double g = sim_shape_gbps(c->p, t->type, t->rows, t->cols,
				  c->in->tier == MEMTIER_MMAP, c->n, c->ws_bytes);

	return g > 0 ? g * 1e9 / c->n : rate_bps(c, t->type, true);
}

/* per unit: the f32 kernel's rate on the K/V cache (DRAM arenas on every
 * tier) at the token's working set, or in L2 */
static double kv_rate_bps(const struct ctx *c, bool dram)
{
	double g = dram ? sim_kern_ws_gbps(c->p, KT_F32, c->n, c->ws_bytes)
			: sim_kern_gbps(c->p, KT_F32, c->n, false);

	return g * 1e9 / c->n;
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

/* every chip's units' rows, from the plan each chip makes; 0 or -EINVAL */
static int shares(struct ctx *c, char *err, size_t errlen)
{
	const struct llama_hparams *hp = &c->in->hp;
	const double hd = hp->head_dim;
	struct plan *pl = xcalloc(1, sizeof(*pl));
	int rc = 0;

	for (int k = 0; k < c->N && !rc; k++) {
		struct plan_config pc = c->pc;
		pc.chip = k;
		if ((rc = plan_init(pl, hp, &pc, err, errlen)))
			break;
		if (k == 0)
			c->plan = *pl;
		const struct plan_chip *ch = &pl->chips[k];
		c->chip[k] = *ch;
		for (int i = 0; i < c->n; i++) {
			const struct plan_unit *pu = &pl->unit[i];
			struct plan_range q = c->in->nmu_on ? pu->q_heads : pu->q_part;
			struct plan_range kv = c->in->nmu_on ? pu->kv_heads : pu->kv_part;
			struct share *s = &c->u[k * c->n + i];

			memset(s, 0, sizeof(*s));
			for (int t = 0; t < LT_COUNT; t++)
				s->colfrac[t] = 1;
			s->q_heads = (double)plan_len(q);
			s->kv_heads = (double)plan_len(kv);
			s->rows[LT_WQ] = s->q_heads * hd;
			s->rows[LT_WK] = s->rows[LT_WV] = s->kv_heads * hd;
			s->rows[LT_WO] = s->rows[LT_W_DOWN] = (double)plan_len(pu->embd);
			s->rows[LT_W_GATE] = s->rows[LT_W_UP] = (double)plan_len(pu->ff);
			s->vocab = (double)plan_len(pu->vocab);
			s->row0[LT_WQ] = q.r0 * (int64_t)hd;
			s->row0[LT_WK] = s->row0[LT_WV] = kv.r0 * (int64_t)hd;
			s->row0[LT_WO] = s->row0[LT_W_DOWN] = pu->embd.r0;
			s->row0[LT_W_GATE] = s->row0[LT_W_UP] = pu->ff.r0;
			s->vocab0 = pu->vocab.r0;
			if (pl->tp == PLAN_TP_ALLREDUCE) { /* the chip's input columns */
				s->colfrac[LT_WO] = (double)plan_len(ch->q_heads) * hd /
						    hp->n_embd;
				s->colfrac[LT_W_DOWN] = (double)plan_len(ch->ff) / hp->n_ff;
			}
		}
	}
	free(pl);
	return rc;
}

/* chip k's slice of layer matrix t's rows (t == LT_COUNT: the head) */
static double chip_rows(const struct ctx *c, int k, int t)
{
	const struct plan_chip *ch = &c->chip[k];
	const double hd = c->in->hp.head_dim;

	switch (t) {
	case LT_WQ: return (double)plan_len(ch->q_heads) * hd;
	case LT_WK: case LT_WV: return (double)plan_len(ch->kv_heads) * hd;
	case LT_WO: case LT_W_DOWN: return (double)plan_len(ch->embd);
	case LT_W_GATE: case LT_W_UP: return (double)plan_len(ch->ff);
	case LT_COUNT: return (double)plan_len(ch->vocab);
	default: return 1; /* norms */
	}
}

/* --dram-budget: the engine's own rule on whole tensors */
static void pin(struct ctx *c, struct sim_result *r)
{
	uint32_t nt = n_tensors(&c->in->hp), *ids = xcalloc(nt, sizeof(*ids));
	struct memtier_tensor *t = xcalloc(nt, sizeof(*t));
	struct memtier_segment *segs = xcalloc((size_t)c->n_segs, sizeof(*segs));

	/* decided on the whole model, as share_budget (engine/forward.c)
	 * does on every chip: each pins the same first segments */
	for (uint32_t i = 0; i < nt; i++) {
		t[i].n_bytes = c->in->t[i].bytes;
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

/* chip k's flash bytes of segment s (its rings' widened ranges) and
 * their requests; the units' shares into *share */
static double seg_chip(const struct ctx *c, int s, int k, double *reqs,
		       double *share)
{
	double bytes = 0;
	int nt = s < c->L ? LT_COUNT : 2;

	*reqs = *share = 0;
	for (int kk = 0; kk < nt; kk++) {
		int id = s < c->L ? s * LT_COUNT + kk
				  : c->L * LT_COUNT + GT_OUTPUT_NORM + kk;
		const struct sim_tensor *t = &c->in->t[id];
		bool norm = s < c->L ? kk == LT_ATTN_NORM || kk == LT_FFN_NORM
				     : kk == 0;
		int mat = s < c->L ? kk : LT_COUNT;
		double rb = row_bytes(t);
		for (int ring = 0; ring < c->rings; ring++) {
			const struct share *u = &c->u[k * c->n + ring];
			double rows, frac = norm || mat == LT_COUNT ? 1 : u->colfrac[mat];
			int64_t r0 = 0;
			if (norm)
				rows = 1;
			else if (!c->in->nmu_on) /* one ring reads the chip's slice */
				rows = chip_rows(c, k, mat);
			else if (s < c->L)
				rows = u->rows[kk], r0 = u->row0[kk];
			else
				rows = u->vocab, r0 = u->vocab0;
			/* the range widened to 4 KiB: exact for a file's tensor on
			 * one chip, + 4 KiB on average else */
			double b = rows * rb * frac + SIM_FLASH_ALIGN;
			if (t->file_offset && c->N == 1) {
				double a = (double)t->file_offset + (double)r0 * rb;
				b = ceil((a + rows * rb) / SIM_FLASH_ALIGN) * SIM_FLASH_ALIGN -
				    floor(a / SIM_FLASH_ALIGN) * SIM_FLASH_ALIGN;
			}
			bytes += b;
			*share += rows * rb * frac;
			*reqs += ceil(b / SIM_FLASH_REQ);
		}
	}
	return bytes;
}

/* flash bytes, requests and the grid rate of every streamed segment: each
 * chip has its own disk, and the chip with the most bytes sets the pace */
static void segments(struct ctx *c, struct sim_result *r)
{
	int streamed = 0;

	for (int s = 0; s < c->n_segs; s++) {
		double bytes = -1, reqs = 0;
		for (int k = 0; k < c->N; k++) {
			double rq, share, b = seg_chip(c, s, k, &rq, &share);
			if (c->in->tier == MEMTIER_FLASH && c->pinned[s])
				c->pinned_share_bytes += share;
			else if (c->in->tier == MEMTIER_FLASH)
				c->streamed_share_bytes += share;
			if (b > bytes)
				bytes = b, reqs = rq;
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

/* decode weights of layer l: per-unit phase 0 and the slowest unit (of
 * any chip) of phases 1-3; the per-type attribution into the breakdown */
static void layer_weights(struct ctx *c, struct sim_breakdown *b,
			  uint64_t *bytes_u)
{
	static const int phase_of[LT_COUNT] = {
		[LT_WQ] = 0, [LT_WK] = 0, [LT_WV] = 0, [LT_WO] = 1,
		[LT_W_GATE] = 2, [LT_W_UP] = 2, [LT_W_DOWN] = 3,
		[LT_ATTN_NORM] = -1, [LT_FFN_NORM] = -1 };
	const double dram_bps = dram_gbps(c->p, c->n) * 1e9 / c->n;

	double (*ph)[SIM_PHASES] = xcalloc((size_t)c->nu, sizeof(*ph));

	for (int l = 0; l < c->L; l++) {
		memset(ph, 0, sizeof(*ph) * (size_t)c->nu);
		for (int k = 0; k < LT_COUNT; k++) {
			const struct sim_tensor *t = lt(c, l, k);
			double slowest = 0;
			if (phase_of[k] < 0)
				continue;
			for (int i = 0; i < c->nu; i++) {
				double by = unit_bytes(c, i, t, k);
				double s = by / tensor_bps(c, t);
				ph[i][phase_of[k]] += s;
				bytes_u[i] += (uint64_t)by;
				b->matvec_bytes[t->type] += (uint64_t)by;
				if (s > slowest) {
					slowest = s;
				}
			}
			/* the roofline's two sides, for the slowest unit's bytes */
			double by = slowest * tensor_bps(c, t);
			b->matvec_s[t->type] += slowest;
			b->matvec_compute_s[t->type] += by / rate_bps(c, t->type, false);
			b->matvec_memory_s[t->type] += by / dram_bps;
		}
		for (int q = 1; q < SIM_PHASES; q++) {
			double m = 0;
			for (int i = 0; i < c->nu; i++)
				m = fmax(m, ph[i][q]);
			c->w_phase[l * SIM_PHASES + q] = m;
		}
		for (int i = 0; i < c->nu; i++)
			c->w0[l * c->nu + i] = ph[i][0];
	}
	free(ph);
}

/* attention of unit i over pos + 1 positions, one token: per KV head of
 * the unit the probe's time of one head's ops_attn_head with K/V from
 * memory, per other query head (of the same group) with them in cache;
 * a profile without the cold figures: every query head in cache plus the
 * unit's unique K/V bytes at the f32 kernel's memory rate beyond L2;
 * without "ops": the bytes of every head at the f32 kernel rate */
static double attention_s(const struct ctx *c, int i, int32_t pos)
{
	const double hd = c->in->hp.head_dim, np = (double)pos + 1;
	double uniq = c->u[i].kv_heads * 2 * np * hd * 4;
	double bytes = c->u[i].q_heads * 2 * np * hd * 4;

	if (c->p->ops.have_cold) { /* a group's first head reads K/V from
				    * memory, the others find them cached */
		double kv = fmin(c->u[i].kv_heads, c->u[i].q_heads);
		return (kv * sim_attn_cold_ns(c->p, (int)hd, np) +
			(c->u[i].q_heads - kv) * sim_attn_ns(c->p, (int)hd, np)) * 1e-9;
	}
	if (c->p->ops.have) {
		double s = c->u[i].q_heads * sim_attn_ns(c->p, (int)hd, np) * 1e-9;
		if (uniq > (double)c->p->l2_bytes)
			s += uniq / kv_rate_bps(c, true);
		return s;
	}
	return bytes / kv_rate_bps(c, uniq > (double)c->p->l2_bytes);
}

/* The float ops of a decode layer besides matvecs and attention, per
 * unit, as engine/layer.c runs them: every unit norms and quantizes the
 * whole input of each phase, copies the inputs it reads whole (the
 * attention output, hb), and RoPE / SiLU / the residual add cover its
 * own rows. Phase 0 per unit into c->ops0, the slowest unit's phases 1-3
 * into c->ops_rest, the head's norm and quantize into c->ops_head. */
static void layer_ops(struct ctx *c)
{
	const struct llama_hparams *hp = &c->in->hp;
	const struct sim_profile *p = c->p;
	const double d = hp->n_embd, ff = hp->n_ff, hd = hp->head_dim;
	const uint32_t tq = lt(c, 0, LT_WQ)->type, to = lt(c, 0, LT_WO)->type;
	const uint32_t tg = lt(c, 0, LT_W_GATE)->type, td = lt(c, 0, LT_W_DOWN)->type;

	c->ops_rest = 0;
	for (int i = 0; i < c->nu; i++) {
		const struct share *u = &c->u[i];
		c->ops0[i] = op_s(p, SIM_OP_RMSNORM, d) + quant_s(p, tq, d) +
			     op_s(p, SIM_OP_ROPE, (u->q_heads + u->kv_heads) * hd) +
			     op_s(p, SIM_OP_COPY, 2 * u->kv_heads * hd);
		double rest = op_s(p, SIM_OP_COPY, d) + quant_s(p, to, d) +
			      op_s(p, SIM_OP_ADD, u->rows[LT_WO]) +
			      op_s(p, SIM_OP_RMSNORM, d) + quant_s(p, tg, d) +
			      op_s(p, SIM_OP_SILU, u->rows[LT_W_GATE]) +
			      op_s(p, SIM_OP_COPY, ff) + quant_s(p, td, ff) +
			      op_s(p, SIM_OP_ADD, u->rows[LT_W_DOWN]);
		c->ops_rest = fmax(c->ops_rest, rest);
	}
	c->ops_head = op_s(p, SIM_OP_RMSNORM, d) +
		      quant_s(p, gt(c, GT_OUTPUT)->type, d);
}

/* the head, the embedding, the sampler: per token */
static void token_parts(struct ctx *c, struct sim_breakdown *b,
			uint64_t *bytes_u)
{
	const struct sim_tensor *out = gt(c, GT_OUTPUT), *emb = gt(c, GT_TOK_EMBD);
	const struct llama_hparams *hp = &c->in->hp;
	double m = 0;

	for (int i = 0; i < c->nu; i++) {
		double by = c->u[i].vocab * row_bytes(out);
		m = fmax(m, by / tensor_bps(c, out));
		bytes_u[i] += (uint64_t)by;
		b->matvec_bytes[out->type] += (uint64_t)by;
	}
	b->matvec_s[out->type] += m;
	b->matvec_compute_s[out->type] += m * tensor_bps(c, out) /
					  rate_bps(c, out->type, false);
	b->matvec_memory_s[out->type] += m * tensor_bps(c, out) /
					 (dram_gbps(c->p, c->n) * 1e9 / c->n);
	c->head_s = m + c->ops_head;
	/* the embedding row: one unit reads it */
	double rb = row_bytes(emb);
	c->embed_s = c->in->tier == MEMTIER_FLASH
		? c->p->flash_lat_us * 1e-6 + rb / (sim_flash_gbps(c->p, 4096, 1) * 1e9)
		: rb / (dram_gbps(c->p, 1) * 1e9);
	bytes_u[0] += (uint64_t)rb;
	c->sample_s = hp->n_vocab * (c->in->greedy ? c->p->greedy_ns
						   : c->p->sampler_ns) * 1e-9;
}

/* ---- the fabric ------------------------------------------------------- */

/* one collective, one hop: the profile's figure for `like` at the 2-chip
 * message msg, the emulated hop and link; bytes0: what chip 0 copies */
static void coll(const struct ctx *c, struct fab_sum *f, enum fabric_op like,
		 double msg, double link, double bytes0)
{
	double s = sim_fabric_us(c->p, like, msg, link) * 1e-6 +
		   c->in->fabric_latency_us * 1e-6;

	if (c->in->fabric_gbps > 0) /* each chip's outbound link */
		s += link / (c->in->fabric_gbps * 1e9);
	f->s += s;
	f->bytes += bytes0;
	f->n++;
}

/* an all-gather (or gather) of nb rows, chip k holding part[k] bytes of
 * each: a 2-chip message of N x the largest part; chip 0 copies its part
 * in and the others' out (the root of a gather: the same) */
static void allgather(const struct ctx *c, struct fab_sum *f,
		      const double *part, int32_t nb)
{
	double m = 0, S = 0;

	for (int k = 0; k < c->N; k++) {
		m = fmax(m, part[k]);
		S += part[k];
	}
	coll(c, f, FABRIC_ALLGATHER, c->N * m * nb, m * nb, S * nb);
}

/* a pass of nb tokens: the collectives before the layers, in each layer,
 * and the head's (the logits of one token) */
static void fabric_costs(const struct ctx *c, int32_t nb, struct fab_sum *pre,
			 struct fab_sum *layer, struct fab_sum *head)
{
	const struct llama_hparams *hp = &c->in->hp;
	const double hd = hp->head_dim, S = (double)hp->n_embd * 4 * nb;
	double att[PLAN_MAX_CHIPS], embd[PLAN_MAX_CHIPS], ff[PLAN_MAX_CHIPS],
		voc[PLAN_MAX_CHIPS];

	memset(pre, 0, sizeof(*pre));
	memset(layer, 0, sizeof(*layer));
	memset(head, 0, sizeof(*head));
	if (c->N == 1)
		return;
	for (int k = 0; k < c->N; k++) {
		att[k] = (double)plan_len(c->chip[k].q_heads) * hd * 4;
		embd[k] = (double)plan_len(c->chip[k].embd) * 4;
		ff[k] = (double)plan_len(c->chip[k].ff) * 4;
		voc[k] = (double)plan_len(c->chip[k].vocab) * 4;
	}
	/* the command (and its tokens past 16), the embedding rows: one
	 * sender each, so the bcast's figure */
	coll(c, pre, FABRIC_BCAST, SIM_CMD_BYTES, SIM_CMD_BYTES, SIM_CMD_BYTES);
	if (nb > SIM_CMD_TOKENS)
		coll(c, pre, FABRIC_BCAST, nb * 4.0, nb * 4.0, nb * 4.0);
	coll(c, pre, FABRIC_BCAST, S, S, S);
	if (c->in->tp == SIM_TP_ROWS) {
		allgather(c, layer, att, nb);  /* attention, by query heads */
		allgather(c, layer, embd, nb); /* x after Wo */
		allgather(c, layer, ff, nb);   /* hb */
		allgather(c, layer, embd, nb); /* x after ffn_down */
	} else { /* after Wo and after ffn_down; chip 0 reads every slot */
		for (int i = 0; i < 2; i++)
			coll(c, layer, FABRIC_ALLREDUCE, S * (c->N + 1) / 3, S, S * c->N);
	}
	allgather(c, head, voc, 1); /* the logits to chip 0 */
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
 * [0, pos): the full blocks of a chip's units; *bytes and *gbps for the
 * chip with the most (its disk sets the pace), *total for every chip */
static void kv_flash(const struct ctx *c, int32_t pos, double *bytes,
		     double *gbps, double *total)
{
	*bytes = *gbps = *total = 0;
	for (int k = 0; k < c->N; k++) {
		double by = 0, blocks = 0, bb = 0;
		for (int i = k * c->n; i < (k + 1) * c->n; i++) {
			double full = floor((double)pos / c->kv_B[i]);
			bb = c->kv_B[i] * c->kv_row_bytes[i];
			by += 2 * full * bb;
			blocks += 2 * full;
		}
		*total += by;
		if (by > *bytes) {
			*bytes = by;
			*gbps = sim_flash_gbps(c->p, bb, fmin(SIM_RING_QD * c->rings,
					       blocks * (c->P > 1 ? c->P : 1)));
		}
	}
}

static void issue_kv(struct ctx *c, int l, int64_t tok, int32_t pos, double t)
{
	if (c->in->kv_tier != MEMTIER_FLASH)
		return;
	for (int j = l; j < c->L && j <= l + c->in->prefetch; j++) {
		if (c->kv_tok[j] >= tok)
			continue;
		double by, g, all;
		kv_flash(c, pos, &by, &g, &all);
		c->kv_tok[j] = tok;
		c->kv_done[j] = disk_read(&c->disk, t, by, g);
	}
}

/* the K/V blocks written per token and layer (a chip's units, the chip
 * that writes most), on its disk */
static double kv_write_bytes_layer(const struct ctx *c)
{
	double most = 0;

	for (int k = 0; k < c->N; k++) {
		double by = 0;
		for (int i = k * c->n; i < (k + 1) * c->n; i++)
			by += 2 * c->kv_row_bytes[i]; /* B rows a block, every B tokens */
		most = fmax(most, by);
	}
	return most;
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
		for (int i = 0; i < c->nu; i++) {
			double a = attention_s(c, i, pos);
			double w = c->w0[l * c->nu + i] + c->ops0[i] + a;
			p0 = fmax(p0, w);
			att_max = fmax(att_max, a);
		}
		double rest = c->ops_rest;
		for (int q = 1; q < SIM_PHASES; q++)
			rest += c->w_phase[l * SIM_PHASES + q];
		comp[l] = p0 + rest + c->bars_layer * c->bar_s + c->fab_layer.s;
		if (b) {
			double o = 0;
			for (int i = 0; i < c->nu; i++)
				o = fmax(o, c->ops0[i]);
			b->ops_s += o + c->ops_rest;
			b->attention_s += att_max;
			b->compute_s += p0 + rest;
		}
	}
}

/* prefill attention of unit i for a batch of nb tokens from p0: token j
 * attends p0 + j + 1 positions, each query head at the probe's in-cache
 * time (the batch's K/V rows were just written, and every head of a
 * group reads them again); without "ops": the old flop count at the f32
 * L2 kernel rate */
static double prefill_attention_s(const struct ctx *c, int i, int32_t p0,
				  int32_t nb)
{
	const double hd = c->in->hp.head_dim;
	double s = 0;

	if (!c->p->ops.have) {
		double f32_macs = sim_kern_gbps(c->p, KT_F32, c->n, false) * 1e9 / 4 / c->n;
		double pos_sum = (double)nb * p0 + (double)nb * (nb + 1) / 2;
		return c->u[i].q_heads * hd * 2 * pos_sum / f32_macs;
	}
	for (int32_t j = 0; j < nb; j++)
		s += sim_attn_ns(c->p, (int)hd, (double)p0 + j + 1);
	return c->u[i].q_heads * s * 1e-9;
}

/* prefill compute of every layer for a batch of nb tokens from p0, each
 * layer's collectives fab_s: the matmuls at the probe's batched rate
 * with weights from memory at nb tokens (sim_mm_gmacs),
 * attention per token (prefill_attention_s) and, per token, the same
 * float ops a decode token runs (norms, quantizing, RoPE, K/V copies,
 * SiLU, adds: layer_ops), since engine/layer.c runs them token by token */
static double prefill_compute(struct ctx *c, int32_t p0, int32_t nb,
			      double fab_s, double *comp)
{
	double f32_macs = sim_kern_gbps(c->p, KT_F32, c->n, false) * 1e9 / 4 / c->n;
	double *att = xcalloc((size_t)c->nu, sizeof(double));
	const bool mmap = c->in->tier == MEMTIER_MMAP;
	double total = 0;

	for (int i = 0; i < c->nu; i++)
		att[i] = prefill_attention_s(c, i, p0, nb);
	for (int l = 0; l < c->L; l++) {
		static const int phase_of[LT_COUNT] = {
			[LT_WQ] = 0, [LT_WK] = 0, [LT_WV] = 0, [LT_WO] = 1,
			[LT_W_GATE] = 2, [LT_W_UP] = 2, [LT_W_DOWN] = 3,
			[LT_ATTN_NORM] = -1, [LT_FFN_NORM] = -1 };
		double ph[SIM_PHASES] = { 0 };
		for (int i = 0; i < c->nu; i++) {
			double u[SIM_PHASES] = { 0 };
			for (int k = 0; k < LT_COUNT; k++) {
				const struct sim_tensor *t = lt(c, l, k);
				const struct sim_kern_rate *kr = &c->p->kern[t->type];
				if (phase_of[k] < 0)
					continue;
				double macs = c->u[i].rows[k] * c->u[i].colfrac[k] *
					      (double)t->cols * nb;
				double rate = kr->have_mm
					? sim_mm_gmacs(c->p, t->type, c->n, nb, mmap) *
					  1e9 / c->n
					: f32_macs;
				u[phase_of[k]] += macs / rate;
				/* the first pass maps the page cache's pages */
				if (mmap && p0 == 0)
					u[phase_of[k]] += unit_bytes(c, i, t, k) *
							  c->p->pc_fault_ns_per_byte * 1e-9;
			}
			u[0] += att[i] + nb * c->ops0[i];
			for (int q = 0; q < SIM_PHASES; q++)
				ph[q] = fmax(ph[q], u[q]);
		}
		comp[l] = ph[0] + ph[1] + ph[2] + ph[3] + nb * c->ops_rest +
			  c->bars_layer * c->bar_s + fab_s;
		total += comp[l];
	}
	free(att);
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

	for (int i = 0; i < c->nu; i++) {
		int k = i / c->n;
		double rb = (c->in->nmu_on ? c->u[i].kv_heads
					   : (double)plan_len(c->chip[k].kv_heads)) * hd * 4;
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
		if (!c->in->nmu_on) /* one cache a chip: its unit 0's */
			c->kv_row_bytes[i] = i % c->n == 0 ? rb : 0;
	}
}

static void ctx_free(struct ctx *c)
{
	free(c->u);
	free(c->pinned);
	free(c->seg_bytes);
	free(c->seg_gbps);
	free(c->w_phase);
	free(c->w0);
	free(c->ops0);
	free(c->kv_B);
	free(c->kv_row_bytes);
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

/* The bytes a decode token reads from memory, every chip together (they
 * share the caches): the weights held in DRAM (all of them on the dram
 * and mmap tiers; on flash the pinned segments and the ring's buffers
 * the streamed ones land in) and the K/V of the median position. */
static double working_set(const struct ctx *c, const struct sim_result *r)
{
	const struct sim_input *in = c->in;
	double w = 0, kv = 0, streamed = 0;
	int n_streamed = 0;

	for (int s = 0; s < c->n_segs; s++) {
		double b = 0;
		int nt = s < c->L ? LT_COUNT : 2;
		for (int k = 0; k < nt; k++)
			b += (double)in->t[s < c->L ? s * LT_COUNT + k
					  : c->L * LT_COUNT + GT_OUTPUT_NORM + k].bytes;
		if (c->pinned[s])
			w += b;
		else
			streamed += b, n_streamed++;
	}
	if (n_streamed) /* --prefetch + 2 buffers in the ring */
		w += streamed / n_streamed * fmin(n_streamed, c->in->prefetch + 2);
	for (int i = 0; i < c->nu; i++)
		kv += 2 * c->kv_row_bytes[i] * c->L;
	(void)r;
	return w + kv * (in->n_prompt + (in->n_predict > 1 ? (in->n_predict - 1) / 2 : 0));
}

/* everything per token that does not depend on the position */
static void fill_static(struct ctx *c, struct sim_result *r)
{
	const struct llama_hparams *hp = &c->in->hp;
	uint64_t *bytes_u = xcalloc((size_t)c->nu, sizeof(*bytes_u));
	struct sim_breakdown *b = &r->tok;

	pin(c, r);
	c->P = c->in->prefetch;
	segments(c, r);
	kv_blocks(c);
	c->ws_bytes = working_set(c, r);
	layer_ops(c);
	layer_weights(c, b, bytes_u);
	token_parts(c, b, bytes_u);
	fabric_costs(c, 1, &c->fab_pre, &c->fab_layer, &c->fab_head);
	r->n_units = c->n;
	r->kv_replicated = c->in->nmu_on ? c->plan.kv_replicated : 0;
	r->weight_bytes_per_token = 0;
	for (int i = 0; i < c->nu; i++) {
		if (i < c->n) { /* chip 0's units */
			r->unit[i].weight_bytes = bytes_u[i];
			r->unit[i].q_heads = (int64_t)c->u[i].q_heads;
			r->unit[i].kv_heads = (int64_t)c->u[i].kv_heads;
		}
		r->weight_bytes_per_token += bytes_u[i];
	}
	free(bytes_u);
	/* flash bytes as memtier counts them: the tensors' bytes asked for
	 * (the disk's time above is for the widened copies) */
	b->flash_weight_bytes = (uint64_t)c->streamed_share_bytes;
	b->dram_weight_bytes = c->in->tier == MEMTIER_FLASH
		? (uint64_t)c->pinned_share_bytes : r->weight_bytes_per_token;
	r->tier_bytes_per_token[c->in->tier] = c->in->tier == MEMTIER_FLASH
		? b->flash_weight_bytes : r->weight_bytes_per_token;
	if (c->in->tier == MEMTIER_FLASH)
		r->tier_bytes_per_token[MEMTIER_DRAM] = b->dram_weight_bytes;
	r->kv_block_tokens = c->kv_B[0];
	r->kv_position_bytes = 0;
	for (int i = 0; i < c->nu; i++)
		r->kv_position_bytes += (uint64_t)(2 * c->kv_row_bytes[i] * hp->n_layer);
	r->kv_bytes_written_per_token = (double)r->kv_position_bytes;
	uint64_t total = 0;
	for (uint32_t i = 0; i < n_tensors(hp); i++)
		total += c->in->t[i].bytes;
	r->weights_gb = (double)total / 1e9;
	r->kv_gb = (double)r->kv_position_bytes *
		   (c->in->n_ctx > 0 ? c->in->n_ctx : c->in->n_prompt + c->in->n_predict) / 1e9;
}

/* the plan's configuration: chips, TP, the column blocks allreduce needs */
static struct plan_config plan_cfg(const struct sim_input *in)
{
	struct plan_config pc = { .n_chips = in->chips, .n_units = in->n_units,
				  .tp = in->chips > 1 && in->tp == SIM_TP_ALLREDUCE
					? PLAN_TP_ALLREDUCE : PLAN_TP_ROWS };

	for (int32_t l = 0; l < in->hp.n_layer; l++) {
		const struct kern_type_info *o = kern_type_info(in->t[l * LT_COUNT + LT_WO].type);
		const struct kern_type_info *d = kern_type_info(in->t[l * LT_COUNT + LT_W_DOWN].type);
		if (o && o->blck > pc.wo_block)
			pc.wo_block = o->blck;
		if (d && d->blck > pc.down_block)
			pc.down_block = d->blck;
	}
	return pc;
}

/* the state of one prediction; 0 or -EINVAL (the plan refuses) */
static int ctx_init(struct ctx *c, const struct sim_input *in,
		    const struct sim_profile *prof, char *err, size_t errlen)
{
	c->in = in;
	c->p = prof;
	c->n = in->n_units;
	c->N = in->chips;
	c->nu = c->N * c->n;
	c->pc = plan_cfg(in);
	c->L = in->hp.n_layer;
	c->n_segs = c->L + 1;
	c->rings = in->nmu_on ? c->n : 1;
	c->bar_s = c->n > 1 ? sim_barrier_us(prof, c->n) * 1e-6 : 0;
	c->bars_layer = 4 + (in->nmu_on ? 0 : 1);
	c->u = xcalloc((size_t)c->nu, sizeof(*c->u));
	c->pinned = xcalloc((size_t)c->n_segs, 1);
	c->seg_bytes = xcalloc((size_t)c->n_segs, sizeof(double));
	c->seg_gbps = xcalloc((size_t)c->n_segs, sizeof(double));
	c->w_phase = xcalloc((size_t)c->L * SIM_PHASES, sizeof(double));
	c->w0 = xcalloc((size_t)c->L * c->nu, sizeof(double));
	c->ops0 = xcalloc((size_t)c->nu, sizeof(double));
	c->kv_B = xcalloc((size_t)c->nu, sizeof(*c->kv_B));
	c->kv_row_bytes = xcalloc((size_t)c->nu, sizeof(double));
	c->seg_tok = xcalloc((size_t)c->n_segs, sizeof(int64_t));
	c->seg_done = xcalloc((size_t)c->n_segs, sizeof(double));
	c->kv_tok = xcalloc((size_t)c->L, sizeof(int64_t));
	c->kv_done = xcalloc((size_t)c->L, sizeof(double));
	for (int s = 0; s < c->n_segs; s++)
		c->seg_tok[s] = -1;
	for (int l = 0; l < c->L; l++)
		c->kv_tok[l] = -1;
	c->disk.lat_s = prof->have_flash ? prof->flash_lat_us * 1e-6 : 0;
	return shares(c, err, errlen);
}

/* unit i's (of any chip) compute of a decode token at pos */
static double unit_compute_s(const struct ctx *c, int i, int32_t pos)
{
	double s = 0;

	for (int l = 0; l < c->L; l++) {
		s += c->w0[l * c->nu + i] + attention_s(c, i, pos);
		for (int k = LT_WO; k < LT_COUNT; k++) {
			const struct sim_tensor *tt = lt(c, l, k);
			if (k != LT_FFN_NORM)
				s += unit_bytes(c, i, tt, k) / rate_bps(c, tt->type, true);
		}
	}
	return s;
}

/* the median token's breakdown beside what the replay gave */
static void breakdown(struct ctx *c, struct sim_result *r, int32_t pos_med,
		      double *comp)
{
	struct sim_breakdown *b = &r->tok;
	int n_bar_tok = c->bars_layer * c->L + 1;

	b->pos = pos_med;
	decode_compute(c, pos_med, comp, b);
	b->embed_s = c->embed_s;
	b->head_s = c->head_s;
	b->ops_s += c->ops_head;
	b->ws_bytes = c->ws_bytes;
	b->sample_s = c->sample_s;
	b->n_barriers = n_bar_tok;
	b->barrier_s = n_bar_tok * c->bar_s;
	b->n_collectives = c->fab_pre.n + c->fab_layer.n * c->L + c->fab_head.n;
	b->fabric_s = c->fab_pre.s + c->fab_layer.s * c->L + c->fab_head.s;
	b->fabric_bytes = c->fab_pre.bytes + c->fab_layer.bytes * c->L +
			  c->fab_head.bytes;
	b->flash_overlap_s = fmax(0, b->flash_busy_s - b->flash_stall_s);
	b->flash_gbps = b->flash_req_bytes > 0
		? sim_flash_gbps(c->p, b->flash_req_bytes, b->flash_qd) : 0;
	for (int i = 0; i < c->nu; i++)
		b->kv_read_bytes += (uint64_t)(2 * c->kv_row_bytes[i] *
					       (pos_med + 1) * c->L);
	double fb, g, all;
	kv_flash(c, pos_med, &fb, &g, &all);
	if (c->in->kv_tier == MEMTIER_FLASH)
		b->kv_flash_read_bytes = (uint64_t)(all * c->L);
	b->kv_write_bytes = r->kv_bytes_written_per_token;
	r->kv_bytes_per_token_read = b->kv_read_bytes;
	/* imbalance over every unit of every chip; chip 0's units reported */
	double mx = 0, mean = 0;
	for (int i = 0; i < c->nu; i++) {
		double s = unit_compute_s(c, i, pos_med);
		if (i < c->n)
			r->unit[i].compute_s = s;
		mx = fmax(mx, s);
		mean += s / c->nu;
	}
	b->imbalance = mean > 0 ? mx / mean : 1;
}

int sim_predict(const struct sim_input *in, const struct sim_profile *prof,
		struct sim_result *out, char *err, size_t errlen)
{
	struct ctx *c;
	struct sim_result *r;
	int rc;

	if ((rc = check(in, prof, err, errlen)))
		return rc;
	c = xcalloc(1, sizeof(*c));
	r = xcalloc(1, sizeof(*r));
	if ((rc = ctx_init(c, in, prof, err, errlen)))
		goto out;
	fill_static(c, r);

	/* prefill: batches through the same replay, cycles 0 .. */
	double *comp = xcalloc((size_t)c->L, sizeof(double));
	int32_t nb_max = in->n_batch > 0 ? in->n_batch : SIM_BATCH;
	double t = 0, pre_comp = 0;
	int64_t tok = 0;
	int n_bar_tok = c->bars_layer * c->L + 1;
	for (int32_t p0 = 0; p0 < in->n_prompt; p0 += nb_max, tok++) {
		int32_t nb = in->n_prompt - p0 < nb_max ? in->n_prompt - p0 : nb_max;
		struct fab_sum fp, fl, fh;
		fabric_costs(c, nb, &fp, &fl, &fh);
		pre_comp += prefill_compute(c, p0, nb, fl.s, comp);
		/* the head runs for the last batch only, on its last token
		 * (engine_prefill: logits of the last position) */
		bool last = p0 + nb >= in->n_prompt;
		t = replay(c, tok, p0, t, comp, c->embed_s * nb + c->bar_s + fp.s,
			   last ? c->head_s + fh.s : 0);
	}
	r->prefill_s = t;
	r->prefill_tok_per_s = in->n_prompt / t;
	r->prefill_compute_s = pre_comp;
	r->prefill_barrier_s = (double)tok * n_bar_tok * c->bar_s;
	r->prefill_flash_s = c->disk.busy_s;

	/* decode: tokens at positions n_prompt .. n_prompt + n_predict - 2 */
	int32_t nd = in->n_predict - 1, pos_med = in->n_prompt + (nd > 0 ? nd / 2 : 0);
	double *steps = xcalloc((size_t)(nd > 0 ? nd : 1), sizeof(double));
	for (int32_t k = 0; k < nd; k++, tok++) {
		int32_t pos = in->n_prompt + k;
		double b0 = c->disk.busy_s, s0 = c->stall_s, t0 = t;
		decode_compute(c, pos, comp, NULL);
		t = replay(c, tok, pos, t, comp, c->embed_s + c->bar_s + c->fab_pre.s,
			   c->head_s + c->fab_head.s);
		steps[k] = t - t0;
		if (pos == pos_med) {
			r->tok.flash_busy_s = c->disk.busy_s - b0;
			r->tok.flash_stall_s = c->stall_s - s0;
		}
	}
	r->decode_tokens = nd;
	r->decode_s = t - r->prefill_s;
	r->decode_tok_per_s = nd > 0 ? nd / r->decode_s : 0;
	if (nd > 0) {
		qsort(steps, (size_t)nd, sizeof(double), cmp_d);
		r->median_step_ms = (nd % 2 ? steps[nd / 2]
				     : 0.5 * (steps[nd / 2 - 1] + steps[nd / 2])) * 1e3;
		r->tok.total_s = r->median_step_ms * 1e-3;
	}
	breakdown(c, r, pos_med, comp);
	*out = *r;
	free(steps);
	free(comp);
out:
	ctx_free(c);
	free(c);
	free(r);
	return rc;
}
