/*
 * layer.c - one unit's share of one layer, decode and prefill. See layer.h.
 */
#include "engine/layer.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "engine/fabric.h"
#include "engine/forward.h"
#include "models/util.h"
#include "kernels/kern.h"
#include "kernels/ops.h"
#include "memtier/trace.h"

enum { ACT_Q8A = 0, ACT_Q8K = 1 };

#define TENSOR(e, l, i) ((e)->model.layer[(size_t)(l) * LT_COUNT + (i)])

/* ---- weights ----------------------------------------------------------- */

static int unit_acquire(struct engine_unit *eu, uint32_t seg)
{
	int rc = memtier_acquire(eu->mtp, seg, eu->w[seg & 1]);

	if (!rc)
		eu->held[seg] = 1;
	return rc;
}

static void unit_release(struct engine_unit *eu, uint32_t seg)
{
	if (eu->held[seg]) {
		memtier_release(eu->mtp, seg);
		eu->held[seg] = 0;
	}
}

void layer_release_all(struct engine_unit *eu)
{
	if (!eu->mem_owner)
		return;
	if (eu->kv_held >= 0) {
		kvcache_release(eu->kvp, eu->kv_held);
		eu->kv_held = -1;
	}
	for (uint32_t s = 0; s <= (uint32_t)eu->e->model.hp.n_layer; s++)
		unit_release(eu, s);
}

/* the first row of this unit's share of layer tensor `which` */
static int64_t share_row0(const struct engine_unit *eu, int which)
{
	const int64_t hd = eu->e->model.hp.head_dim;

	switch (which) {
	case LT_WQ: return eu->qh.r0 * hd;
	case LT_WK:
	case LT_WV: return eu->kvh.r0 * hd;
	case LT_WO:
	case LT_W_DOWN: return eu->pu->embd.r0;
	case LT_W_GATE:
	case LT_W_UP: return eu->pu->ff.r0;
	default: return 0; /* norms: whole vectors */
	}
}

/* address of row `row0` of tensor id whose acquired pointer is p: in
 * owner mode the unit's memtier holds only its share, starting at its
 * first row; in shared mode p is the chip's view of the tensor */
static const void *share_ptr(const struct engine_unit *eu, uint32_t id,
			     const void *p, int64_t row0)
{
	const struct engine_view *v = &eu->e->view[id];

	return eu->e->shared ? (const char *)p + (row0 - v->row0) * v->row_bytes
			     : p;
}

/* ---- inputs and projections ------------------------------------------- */

/* xn[i] = rmsnorm(src[i]) with w (or a copy when w is NULL), nb rows of n
 * floats, src rows ld floats apart */
static void unit_input(struct engine_unit *eu, const float *src, int64_t ld,
		       const float *w, int64_t n, int32_t nb)
{
	if (w)
		eu->c.weight_bytes += (uint64_t)n * sizeof(float);
	for (int32_t i = 0; i < nb; i++) {
		if (w)
			ops_rmsnorm(eu->xn + (int64_t)i * n, src + i * ld, w, n,
				    eu->e->model.hp.rms_eps);
		else
			memcpy(eu->xn + (int64_t)i * n, src + i * ld,
			       (size_t)n * sizeof(float));
	}
	eu->act_valid[ACT_Q8A] = eu->act_valid[ACT_Q8K] = false;
}

/* xn quantized into the activation format of `type`, once per input */
static const void *unit_act(struct engine_unit *eu, uint32_t type, int64_t k,
			    int32_t nb)
{
	uint32_t at = kern_type_info(type)->act_type;
	int slot = at == KT_Q8_A ? ACT_Q8A : ACT_Q8K;

	if (at != KT_Q8_A && at != KT_Q8_K)
		return NULL;
	if (!eu->act_valid[slot]) {
		kern_quantize_act_fn q = kern_quantize_act(at);
		for (int32_t i = 0; i < nb; i++)
			q(eu->xn + (int64_t)i * k,
			  (char *)eu->act[slot] + (size_t)i * eu->act_stride, k);
		eu->act_valid[slot] = true;
	}
	return eu->act[slot];
}

/* Y[i][0..n_rows) = W[0..n_rows) . xn[i] for i < nb (W: n_rows rows of k
 * weights, row_bytes each; Y rows ldy floats apart). Decode: the matvec
 * kernel; prefill: the batched int8 kernel over tiles of rows, or
 * dequantized tiles x SGEMM (float weights, --prefill-blas, all_float);
 * --act f32: kern_matmul_f32 for all of them. */
static void project(struct engine_unit *eu, uint32_t type, const void *w,
		    size_t row_bytes, int64_t n_rows, int64_t k, int32_t nb,
		    float *y, int64_t ldy, bool force_float)
{
	const struct kern_ops *ops = kern_ops(type);
	const void *act = NULL;

	if (n_rows <= 0)
		return;
	eu->c.weight_bytes += (uint64_t)n_rows * row_bytes;
	if (eu->e->cfg.act_f32) { /* the check mode: float activations,
				   * prefill and decode, every type */
		kern_matmul_f32(type, w, row_bytes, eu->xn, k, y, ldy, k, 0,
				n_rows, nb);
		return;
	}
	if (!force_float && (nb == 1 || !eu->e->cfg.prefill_blas))
		act = unit_act(eu, type, k, nb);
	if (nb == 1 && !force_float) {
		ops->matvec(w, row_bytes, act ? act : eu->xn, y, k, 0, n_rows);
		return;
	}
	if (act) { /* int8 batched path: tiles of <= 512 rows (ops->matmul
		    * repacks per call) or ~24 KiB of rows for matvec */
		int64_t tile = ops->matmul ? 512 : (int64_t)(24576 / row_bytes) / 4 * 4;
		if (tile < 4)
			tile = 4;
		for (int64_t r0 = 0; r0 < n_rows; r0 += tile) {
			int64_t r1 = r0 + tile < n_rows ? r0 + tile : n_rows;
			if (ops->matmul)
				ops->matmul(w, row_bytes, act, eu->act_stride, y, ldy,
					    k, r0, r1, nb);
			else
				for (int32_t i = 0; i < nb; i++)
					ops->matvec(w, row_bytes,
						    (const char *)act + (size_t)i * eu->act_stride,
						    y + i * ldy, k, r0, r1);
		}
		return;
	}
	for (int64_t r0 = 0; r0 < n_rows; r0 += LAYER_TILE_ROWS) {
		int64_t nr = n_rows - r0 < LAYER_TILE_ROWS ? n_rows - r0 : LAYER_TILE_ROWS;
		const float *wt;
		if (type == KT_F32) {
			wt = (const float *)((const char *)w + r0 * row_bytes);
		} else {
			for (int64_t r = 0; r < nr; r++)
				ops->dequant((const char *)w + (r0 + r) * row_bytes,
					     eu->tile + r * k, k);
			wt = eu->tile;
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, (int)nr,
			    (int)k, 1.0f, eu->xn, (int)k, wt, (int)k, 0.0f, y + r0,
			    (int)ldy);
	}
}

/* Owner mode: rows [row0, row0 + n_rows) of tensor g (memtier id) that
 * lie outside the file range this unit's memtier instance holds of it,
 * counted in foreign_rows (the plan the layer computes with and the one
 * the memory was placed with must agree; a test asserts 0). */
static void check_share(struct engine_unit *eu, uint32_t id, int64_t row0,
			int64_t n_rows)
{
	if (eu->e->shared || n_rows <= 0)
		return; /* shared mode: no ownership, any unit reads any row */
	const struct memtier_tensor *mt = &eu->mt.tensors[id];
	const struct engine_view *v = &eu->e->view[id];
	int64_t have0 = v->row0 + (int64_t)((mt->file_offset - v->off) / v->row_bytes);
	int64_t have1 = have0 + (int64_t)(mt->n_bytes / v->row_bytes);
	int64_t in0 = row0 > have0 ? row0 : have0;
	int64_t in1 = row0 + n_rows < have1 ? row0 + n_rows : have1;
	eu->c.foreign_rows += (uint64_t)(n_rows - (in1 > in0 ? in1 - in0 : 0));
}

/* project with this unit's share of layer l's tensor `which` */
static void project_layer(struct engine_unit *eu, int32_t l, int which,
			  int64_t n_rows, int32_t nb, float *y, int64_t ldy)
{
	const struct gguf_tensor *t = TENSOR(eu->e, l, which);
	const uint32_t id = (uint32_t)l * LT_COUNT + (uint32_t)which;
	const struct engine_view *v = &eu->e->view[id];
	const void *w = share_ptr(eu, id, eu->w[l & 1][which],
				  share_row0(eu, which));

	check_share(eu, id, share_row0(eu, which), n_rows);
	project(eu, t->type, w, v->row_bytes, n_rows, v->k, nb, y, ldy, false);
}

/* activation bytes of n floats of which `own` are this unit's: what other
 * units wrote and it reads */
static void count_in(struct engine_unit *eu, int64_t n, int64_t own, int32_t nb)
{
	eu->c.act_bytes_in += (uint64_t)((n - own) * nb) * sizeof(float);
}

static void count_out(struct engine_unit *eu, int64_t own, int32_t nb)
{
	eu->c.result_bytes_out += (uint64_t)(own * nb) * sizeof(float);
}

/* ---- chips ---------------------------------------------------------------- */

/* a unit's failure: its chip's barriers and every chip's collectives
 * stop */
static int unit_fail(struct engine_unit *eu, int rc)
{
	nmu_fail(eu->nu, rc);
	if (eu->e->n_chips > 1)
		fabric_abort(eu->e->fab, rc, eu->err[0] ? eu->err : NULL);
	return rc;
}

/* unit 0 exchanges buf with the other chips (l: its layout) */
static int chips_exchange(struct engine_unit *eu, void *buf,
			  const struct fabric_layout *l, const char *what)
{
	struct engine *e = eu->e;
	int64_t t0 = now_ns();
	int rc;

	if (eu->nu->id != 0)
		return 0;
	if ((rc = fabric_allgather(e->fab, buf, l)))
		return unit_fail(eu, rc);
	trace_span(e->cfg.mt.trace, TRACE_FABRIC, what, -1, t0, now_ns());
	return 0;
}

/* Every unit's rows of buf written: with chips, the chips' parts of it
 * (nb rows, ld floats apart, chip c's columns cols[c]..cols[c+1]) are
 * exchanged (the first half: units meet, unit 0 exchanges). */
static int sync_begin(struct engine_unit *eu, float *buf, int32_t nb,
		      int64_t ld, const int64_t *cols, const char *what)
{
	int rc;

	if (eu->e->n_chips == 1 || !cols)
		return 0;
	if ((rc = nmu_barrier(eu->nu)))
		return rc;
	struct fabric_layout l = {.elem = sizeof(float), .nb = nb, .ld = ld,
				  .cols = cols, .root = -1};
	return chips_exchange(eu, buf, &l, what);
}

/* the whole step: rows exchanged, units meet */
static int sync_rows(struct engine_unit *eu, float *buf, int32_t nb,
		     int64_t ld, const int64_t *cols, const char *what)
{
	int rc = sync_begin(eu, buf, nb, ld, cols, what);

	return rc ? rc : nmu_barrier(eu->nu);
}

/* --tp allreduce: every unit's rows of the partial sums in tmp written,
 * unit 0 all-reduces them over the chips (summed in chip order: every
 * chip gets the same bits) and adds them to the residual stream */
static int reduce_begin(struct engine_unit *eu, int32_t nb, const char *what)
{
	struct engine *e = eu->e;
	const int64_t d = e->model.hp.n_embd;
	int64_t t0 = now_ns();
	int rc;

	if ((rc = nmu_barrier(eu->nu)))
		return rc;
	if (eu->nu->id != 0)
		return 0;
	if ((rc = fabric_allreduce(e->fab, e->st.tmp, (int64_t)nb * d)))
		return unit_fail(eu, rc);
	trace_span(e->cfg.mt.trace, TRACE_FABRIC, what, -1, t0, now_ns());
	for (int32_t i = 0; i < nb; i++)
		ops_add(e->st.x + i * d, e->st.tmp + i * d, 0, d);
	return 0;
}

/* ---- steps -------------------------------------------------------------- */

/* mem_owner at the start of layer l: release l-1, read the KV blocks of
 * the next layers ahead */
static int layer_ahead(struct engine_unit *eu, int32_t l, int32_t pos_end,
		       int32_t nb)
{
	if (!eu->mem_owner)
		return 0;
	if (l > 0)
		unit_release(eu, (uint32_t)l - 1);
	return kvcache_ahead(eu->kvp, l, pos_end - nb, pos_end);
}

/* mem_owner once its share of layer l is computed: acquire l+1 (the head
 * after the last layer). Its reads were queued by earlier acquires
 * (--prefetch segments ahead), so this waits only for what has not landed
 * while layer l was computed; acquiring it before computing l would make
 * every unit wait for l+1's reads before starting on l. */
static int layer_next(struct engine_unit *eu, int32_t l)
{
	return eu->mem_owner ? unit_acquire(eu, (uint32_t)l + 1) : 0;
}

int layer_embed(struct engine_unit *eu, const int32_t *tokens, int32_t nb)
{
	struct engine *e = eu->e;
	const struct gguf_tensor *te = e->model.global[GT_TOK_EMBD];
	const int64_t d = e->model.hp.n_embd;
	/* shared mode: unit 0 embeds every token of the chip's vocabulary */
	const struct engine_view *ve = &e->view[e->id_tok_embd];
	const int64_t v0 = e->shared ? ve->row0 : eu->pu->vocab.r0;
	const int64_t v1 = e->shared ? ve->row0 + ve->rows : eu->pu->vocab.r1;
	int rc = 0;

	if (eu->mem_owner && (rc = unit_acquire(eu, 0)))
		goto fail;
	for (int32_t i = 0; i < nb && (eu->mem_owner || !e->shared); i++) {
		if (tokens[i] < 0 || tokens[i] >= e->model.hp.n_vocab) {
			rc = -EINVAL;
			goto fail;
		}
		if (tokens[i] < v0 || tokens[i] >= v1)
			continue;
		/* the row into the unit's tile scratch, dequantized into x */
		void *row = eu->tile;
		if ((rc = memtier_read_row(eu->mtp, e->id_tok_embd,
					   tokens[i] - v0, row)))
			goto fail;
		kern_ops(te->type)->dequant(row, e->st.x + (int64_t)i * d, d);
		eu->c.weight_bytes += te->row_bytes;
		count_out(eu, d, 1);
	}
	if (e->n_chips > 1) { /* each token's row from the chip that has it */
		if ((rc = nmu_barrier(eu->nu)))
			return rc;
		for (int32_t i = 0; i < nb && eu->nu->id == 0; i++) {
			int c = 0;
			while (c + 1 < e->n_chips && tokens[i] >= e->plan.chips[c].vocab.r1)
				c++;
			e->tok_owner[i] = c;
		}
		struct fabric_layout l = {.elem = sizeof(float), .nb = nb, .ld = d,
					  .owner = e->tok_owner, .row_len = d,
					  .root = -1};
		if ((rc = chips_exchange(eu, e->st.x, &l, "embedding")))
			return rc;
	}
	return nmu_barrier(eu->nu);
fail:
	unit_fail(eu, rc);
	return rc;
}

/* RoPE, K/V rows into the view at positions pos0.., attention of the
 * unit's query heads into att */
static void attend(struct engine_unit *eu, float *kc, float *vc,
		   int32_t pos0, int32_t nb)
{
	const struct llama_hparams *hp = &eu->e->model.hp;
	const int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
	const int64_t d = hp->n_embd, nq = plan_len(eu->qh) * hd;
	const int64_t nkv = plan_len(eu->kvh) * hd;
	const float scale = 1.0f / sqrtf((float)hd);
	float *att = eu->e->st.att;

	for (int32_t i = 0; i < nb; i++) {
		int64_t p = pos0 + i;
		float *q = eu->q + i * nq, *k = eu->k + i * nkv, *v = eu->v + i * nkv;
		ops_rope(q, (int)plan_len(eu->qh), hd, hp->rope_dim, p,
			 hp->rope_base);
		ops_rope(k, (int)plan_len(eu->kvh), hd, hp->rope_dim, p,
			 hp->rope_base);
		int64_t at = p * eu->kv_stride + (eu->kvh.r0 - eu->kv_head0) * hd;
		memcpy(kc + at, k, (size_t)nkv * sizeof(float));
		memcpy(vc + at, v, (size_t)nkv * sizeof(float));
	}
	for (int32_t i = 0; i < nb; i++) {
		for (int64_t h = eu->qh.r0; h < eu->qh.r1; h++) {
			int64_t kvh = h / group - eu->kv_head0;
			ops_attn_head(att + i * d + h * hd,
				      eu->q + i * nq + (h - eu->qh.r0) * hd,
				      kc + kvh * hd, vc + kvh * hd, eu->kv_stride,
				      pos0 + i + 1, hd, scale, eu->scores);
		}
	}
	count_out(eu, nq, nb);
}

int layer_forward(struct engine_unit *eu, int32_t l, int32_t pos0, int32_t nb)
{
	struct engine *e = eu->e;
	struct engine_state *s = &e->st;
	const struct llama_hparams *hp = &e->model.hp;
	const int64_t d = hp->n_embd, ff = hp->n_ff, hd = hp->head_dim;
	const int64_t nq = plan_len(eu->qh) * hd, nkv = plan_len(eu->kvh) * hd;
	const struct plan_range er = eu->pu->embd, fr = eu->pu->ff;
	const void *const *wl = eu->w[l & 1];
	const struct engine_view *vo = &e->view[(uint32_t)l * LT_COUNT + LT_WO];
	const struct engine_view *vd = &e->view[(uint32_t)l * LT_COUNT + LT_W_DOWN];
	const bool ar = e->n_chips > 1 && e->plan.tp == PLAN_TP_ALLREDUCE;
	int64_t t0 = now_ns();
	float *kc, *vc;
	int rc;

	if ((rc = layer_ahead(eu, l, pos0 + nb, nb)))
		goto fail;
	/* attention: own q, k, v rows */
	unit_input(eu, s->x, d, wl[LT_ATTN_NORM], d, nb);
	count_in(eu, d, plan_len(er), nb);
	project_layer(eu, l, LT_WQ, nq, nb, eu->q, nq);
	project_layer(eu, l, LT_WK, nkv, nb, eu->k, nkv);
	project_layer(eu, l, LT_WV, nkv, nb, eu->v, nkv);
	if (eu->mem_owner) {
		if ((rc = kvcache_layer(eu->kvp, l, pos0, &kc, &vc)))
			goto fail;
		eu->kv_held = l;
		if (e->shared)
			s->kc = kc, s->vc = vc;
	}
	if (e->shared) { /* publish unit 0's view */
		if ((rc = nmu_barrier(eu->nu)))
			return rc;
		kc = s->kc, vc = s->vc;
	}
	attend(eu, kc, vc, pos0, nb);
	if (eu->mem_owner && !e->shared) {
		rc = kvcache_commit(eu->kvp, l, pos0, pos0 + nb);
		kvcache_release(eu->kvp, l);
		eu->kv_held = -1;
		if (rc)
			goto fail;
	}
	if ((rc = sync_rows(eu, s->att, nb, d, ar ? NULL : e->cols_att,
			    "attention")))
		return rc;
	if (eu->mem_owner && e->shared) {
		rc = kvcache_commit(eu->kvp, l, pos0, pos0 + nb);
		kvcache_release(eu->kvp, l);
		eu->kv_held = -1;
		if (rc)
			goto fail;
	}
	/* output projection and residual, own rows (allreduce: of the
	 * chip's columns, the partial sums all-reduced) */
	unit_input(eu, s->att + vo->col0, d, NULL, vo->k, nb);
	count_in(eu, vo->k, nq, nb);
	project_layer(eu, l, LT_WO, plan_len(er), nb, s->tmp + er.r0, d);
	count_out(eu, plan_len(er), nb);
	if (ar) {
		if ((rc = reduce_begin(eu, nb, "attn_output allreduce")) ||
		    (rc = nmu_barrier(eu->nu)))
			return rc;
	} else {
		for (int32_t i = 0; i < nb; i++)
			ops_add(s->x + i * d, s->tmp + i * d, er.r0, er.r1);
		if ((rc = sync_rows(eu, s->x, nb, d, e->cols_embd, "attn_output")))
			return rc;
	}
	/* FFN: own gate and up rows, silu * up on them */
	unit_input(eu, s->x, d, wl[LT_FFN_NORM], d, nb);
	count_in(eu, d, plan_len(er), nb);
	project_layer(eu, l, LT_W_GATE, plan_len(fr), nb, s->hb + fr.r0, ff);
	project_layer(eu, l, LT_W_UP, plan_len(fr), nb, s->up + fr.r0, ff);
	for (int32_t i = 0; i < nb; i++)
		ops_silu_mul(s->hb + i * ff, s->hb + i * ff, s->up + i * ff, fr.r0,
			     fr.r1);
	count_out(eu, plan_len(fr), nb);
	if ((rc = sync_rows(eu, s->hb, nb, ff, ar ? NULL : e->cols_ff, "ffn_up")))
		return rc;
	unit_input(eu, s->hb + vd->col0, ff, NULL, vd->k, nb);
	count_in(eu, vd->k, plan_len(fr), nb);
	project_layer(eu, l, LT_W_DOWN, plan_len(er), nb, s->tmp + er.r0, d);
	if (!ar)
		for (int32_t i = 0; i < nb; i++)
			ops_add(s->x + i * d, s->tmp + i * d, er.r0, er.r1);
	count_out(eu, plan_len(er), nb);
	if (eu->nu->id == 0)
		trace_span(e->cfg.mt.trace, TRACE_COMPUTE,
			   nb == 1 ? "layer" : "prefill layer", l, t0, now_ns());
	/* the other chips get this chip's rows before it waits for l+1 */
	if ((rc = ar ? reduce_begin(eu, nb, "ffn_down allreduce")
		     : sync_begin(eu, s->x, nb, d, e->cols_embd, "ffn_down")))
		return rc;
	if ((rc = layer_next(eu, l)))
		goto fail;
	return nmu_barrier(eu->nu);
fail:
	unit_fail(eu, rc);
	return rc;
}

int layer_head(struct engine_unit *eu, int32_t nb, int32_t first, float *out,
	       int64_t ldo, bool all_float)
{
	struct engine *e = eu->e;
	const struct llama_hparams *hp = &e->model.hp;
	const struct gguf_tensor *to = e->model.global[GT_OUTPUT];
	const uint32_t seg = (uint32_t)hp->n_layer;
	const struct plan_range vr = eu->pu->vocab;
	const int64_t d = hp->n_embd;
	const void *const *wo = eu->w[seg & 1];
	int32_t n_out = nb - first;

	if (out) {
		check_share(eu, e->id_output, vr.r0, plan_len(vr));
		unit_input(eu, e->st.x + (int64_t)first * d, d, wo[0], d, n_out);
		count_in(eu, d, plan_len(eu->pu->embd), n_out);
		project(eu, to->type, share_ptr(eu, e->id_output, wo[1], vr.r0),
			to->row_bytes, plan_len(vr), d, n_out, out + vr.r0, ldo,
			all_float);
		count_out(eu, plan_len(vr), n_out);
		int rc;
		if (e->n_chips > 1) { /* the logits to chip 0, which samples */
			if ((rc = nmu_barrier(eu->nu)))
				return rc;
			struct fabric_layout l = {.elem = sizeof(float), .nb = n_out,
						  .ld = ldo, .cols = e->cols_vocab,
						  .root = 0};
			if ((rc = chips_exchange(eu, out, &l, "logits")))
				return rc;
		}
	}
	/* every unit is done with the shared pointers before unit 0 of the
	 * shared mode lets them go */
	int rc = e->shared ? nmu_barrier(eu->nu) : 0;
	if (eu->mem_owner) {
		if (hp->n_layer > 0)
			unit_release(eu, seg - 1);
		unit_release(eu, seg);
	}
	return rc;
}
