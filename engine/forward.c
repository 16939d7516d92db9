/*
 * forward.c - the engine: model, placement and the near-memory unit pool;
 * decode and prefill as jobs of the per-layer step (engine/layer.h) on
 * every unit. See forward.h.
 */
#include "engine/forward.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#include <numa.h>

#include "engine/layer.h"
#include "engine/stats.h"
#include "models/util.h"
#include "kernels/kern.h"

/* ---- tensor bookkeeping ------------------------------------------------ */

static uint32_t layer_id(int32_t l, int i)
{
	return (uint32_t)l * LT_COUNT + (uint32_t)i;
}

/* rows [r0, r1) of a tensor in its chip view v: all it holds for a NULL
 * share */
static struct memtier_tensor tensor_rows(const struct engine_view *v,
					 const struct plan_range *rows)
{
	struct memtier_tensor t = {v->off, (uint64_t)v->rows * v->row_bytes,
				   v->row_bytes};

	if (rows) {
		t.file_offset += (uint64_t)(rows->r0 - v->row0) * v->row_bytes;
		t.n_bytes = (uint64_t)plan_len(*rows) * v->row_bytes;
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
 * one per layer, then the output head. eu == NULL: the chip's view of
 * each (shared mode; the whole tensors with one chip), else the unit's
 * share of each (its rows; norms whole).
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
			tl->t[layer_id(l, i)] = tensor_rows(&e->view[layer_id(l, i)],
							    eu ? share[i] : NULL);
	}
	for (int i = 0; i < GT_COUNT; i++)
		tl->t[(uint32_t)L * LT_COUNT + i] =
			tensor_rows(&e->view[(uint32_t)L * LT_COUNT + i],
				    eu && i != GT_OUTPUT_NORM ? &eu->pu->vocab : NULL);
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
	int rc = memtier_open(mt, &mc, e->image_fd >= 0 ? e->image_path
							: e->gguf.path, tl.t, tl.n, tl.segs,
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

/* ---- chips -------------------------------------------------------------- */

/* every chip's slice bounds, for the fabric's layouts */
static void chips_bounds(struct engine *e)
{
	const int N = e->n_chips;
	const int64_t hd = e->model.hp.head_dim;

	e->cols_att = xcalloc((size_t)N + 1, sizeof(int64_t));
	e->cols_embd = xcalloc((size_t)N + 1, sizeof(int64_t));
	e->cols_ff = xcalloc((size_t)N + 1, sizeof(int64_t));
	e->cols_vocab = xcalloc((size_t)N + 1, sizeof(int64_t));
	for (int c = 0; c < N; c++) {
		const struct plan_chip *ch = &e->plan.chips[c];
		e->cols_att[c + 1] = ch->q_heads.r1 * hd;
		e->cols_embd[c + 1] = ch->embd.r1;
		e->cols_ff[c + 1] = ch->ff.r1;
		e->cols_vocab[c + 1] = ch->vocab.r1;
	}
}

/* This chip's view of every tensor (engine_view): --tp rows, the rows
 * of its slice in the GGUF; --tp allreduce, Wo and ffn_down by its
 * columns, in its packed image (views_pack). */
static void views_init(struct engine *e)
{
	const struct llama_model *m = &e->model;
	const struct plan_chip *ch = &e->plan.chips[e->chip];
	const int64_t hd = m->hp.head_dim;
	const int32_t L = m->hp.n_layer;
	const bool ar = e->n_chips > 1 && e->plan.tp == PLAN_TP_ALLREDUCE;
	const uint32_t n = (uint32_t)L * LT_COUNT + GT_COUNT;

	e->view = xcalloc(n, sizeof(*e->view));
	for (uint32_t id = 0; id < n; id++) {
		const struct gguf_tensor *g = id < (uint32_t)L * LT_COUNT
			? m->layer[id] : m->global[id - (uint32_t)L * LT_COUNT];
		struct plan_range rows = {0, g->n_rows}, cols = {0, g->ne[0]};
		if (id < (uint32_t)L * LT_COUNT) {
			switch (id % LT_COUNT) {
			case LT_WQ: rows = (struct plan_range){ch->q_heads.r0 * hd,
							      ch->q_heads.r1 * hd}; break;
			case LT_WK:
			case LT_WV: rows = (struct plan_range){ch->kv_heads.r0 * hd,
							      ch->kv_heads.r1 * hd}; break;
			case LT_WO:
				if (ar)
					cols = (struct plan_range){ch->q_heads.r0 * hd,
								   ch->q_heads.r1 * hd};
				else
					rows = ch->embd;
				break;
			case LT_W_DOWN:
				if (ar)
					cols = ch->ff;
				else
					rows = ch->embd;
				break;
			case LT_W_GATE:
			case LT_W_UP: rows = ch->ff; break;
			default: break; /* norms */
			}
		} else if (id != e->id_output_norm) {
			rows = ch->vocab;
		}
		const struct kern_type_info *ti = kern_type_info(g->type);
		uint64_t rb = g->row_bytes;
		if (plan_len(cols) != g->ne[0])
			rb = (uint64_t)(plan_len(cols) / ti->blck) * ti->type_size;
		e->view[id] = (struct engine_view){
			.off = g->file_offset + (uint64_t)rows.r0 * g->row_bytes,
			.row_bytes = rb, .row0 = rows.r0, .rows = plan_len(rows),
			.col0 = cols.r0, .k = plan_len(cols)};
	}
}

/* the packed image's file: no name (O_TMPFILE, or a name unlinked at
 * once), so it is gone when the chip ends, however it ends */
static int image_create(const char *dir, char *err, size_t errlen)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/strata-image-XXXXXX", dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0) {
		int rc = -errno;
		snprintf(err, errlen, "--tp allreduce: cannot create the chip's "
			 "packed weights in %s (--flash-dir): %s", dir, strerror(-rc));
		return rc;
	}
	return fd;
}

/*
 * --tp allreduce: the chip's columns of Wo and ffn_down are strided in the
 * GGUF (a piece of every row), so the chip writes every tensor of its
 * slice, packed (rows of its columns back to back), into one image in
 * --flash-dir, once at start, and its memtier instances read that file
 * on every tier. The views then point into the image.
 */
static int views_pack(struct engine *e, char *err, size_t errlen)
{
	const int32_t L = e->model.hp.n_layer;
	const uint32_t n = (uint32_t)L * LT_COUNT + GT_COUNT;
	uint64_t *src_off = xcalloc(n, sizeof(*src_off));
	uint64_t at = 0;
	char *buf = NULL, *out = NULL;
	size_t cap = 0;
	int rc = 0, fd;

	int src = open(e->gguf.path, O_RDONLY | O_CLOEXEC);
	if (src < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", e->gguf.path, strerror(-rc));
		free(src_off);
		return rc;
	}
	if ((fd = image_create(e->cfg.kv_dir, err, errlen)) < 0) {
		close(src);
		free(src_off);
		return fd;
	}
	e->image_fd = fd;
	for (uint32_t id = 0; id < n && !rc; id++) {
		const struct gguf_tensor *g = id < (uint32_t)L * LT_COUNT
			? e->model.layer[id] : e->model.global[id - (uint32_t)L * LT_COUNT];
		struct engine_view *v = &e->view[id];
		src_off[id] = v->off;
		uint32_t dup = 0; /* a tied output: stored once, as memtier does */
		while (dup < id && !(src_off[dup] == v->off &&
				     e->view[dup].rows == v->rows &&
				     e->view[dup].row_bytes == v->row_bytes))
			dup++;
		if (dup < id) {
			v->off = e->view[dup].off;
			continue;
		}
		const struct kern_type_info *ti = kern_type_info(g->type);
		const uint64_t c0 = (uint64_t)(v->col0 / ti->blck) * ti->type_size;
		const int64_t chunk_rows = 1 + (int64_t)((8u << 20) / g->row_bytes);
		at = (at + 4095) / 4096 * 4096;
		for (int64_t r = 0; r < v->rows && !rc; r += chunk_rows) {
			int64_t nr = v->rows - r < chunk_rows ? v->rows - r : chunk_rows;
			size_t in = (size_t)nr * g->row_bytes;
			if (in > cap) {
				cap = in;
				buf = xrealloc(buf, cap);
				out = xrealloc(out, cap);
			}
			if (pread(src, buf, in, (off_t)(v->off + (uint64_t)r * g->row_bytes)) !=
			    (ssize_t)in) {
				rc = -EIO;
				snprintf(err, errlen, "%s: reading %s for the packed "
					 "image: %s", e->gguf.path, g->name.s,
					 strerror(errno ? errno : EIO));
				break;
			}
			for (int64_t i = 0; i < nr; i++)
				memcpy(out + (size_t)i * v->row_bytes,
				       buf + (size_t)i * g->row_bytes + c0, v->row_bytes);
			size_t nout = (size_t)nr * v->row_bytes;
			if (pwrite(fd, out, nout, (off_t)(at + (uint64_t)r * v->row_bytes)) !=
			    (ssize_t)nout) {
				rc = errno ? -errno : -ENOSPC;
				snprintf(err, errlen, "--tp allreduce: writing the chip's "
					 "packed weights in %s: %s", e->cfg.kv_dir,
					 strerror(-rc));
			}
		}
		v->off = at;
		at += (uint64_t)v->rows * v->row_bytes;
	}
	close(src);
	free(buf);
	free(out);
	free(src_off);
	snprintf(e->image_path, sizeof(e->image_path), "/proc/self/fd/%d", fd);
	return rc;
}

/* every chip's rc: the first non-zero one (0 with one chip: rc) */
static int chips_rc(struct engine *e, int rc, char *err, size_t errlen)
{
	int all[FABRIC_MAX_CHIPS] = {0}, owner[FABRIC_MAX_CHIPS];

	if (e->n_chips == 1)
		return rc;
	if (rc) /* the others stop at this collective with its message */
		fabric_abort(e->fab, rc, err && err[0] ? err : NULL);
	for (int c = 0; c < e->n_chips; c++)
		owner[c] = c;
	all[e->chip] = rc;
	struct fabric_layout l = {.elem = sizeof(int), .nb = e->n_chips, .ld = 1,
				  .owner = owner, .row_len = 1, .root = -1};
	fabric_quiet(e->fab, true); /* control traffic */
	int r = fabric_allgather(e->fab, all, &l);
	fabric_quiet(e->fab, false);
	if (r && !rc) {
		if (err)
			snprintf(err, errlen, "%s", fabric_error(e->fab));
		return r;
	}
	for (int c = 0; c < e->n_chips && !rc; c++)
		rc = all[c];
	return rc;
}

/* Before the pool starts: this chip's CPUs, `units` of the allowed ones
 * from chip * units on (wrapping round when chips x units exceed them) */
static int chip_cpus(struct engine *e, int *units, char *err, size_t errlen)
{
	cpu_set_t all, mine;
	int cpu[CPU_SETSIZE], m = 0, local, n_local;

	if (sched_getaffinity(0, sizeof(all), &all)) {
		snprintf(err, errlen, "sched_getaffinity: %s", strerror(errno));
		return -errno;
	}
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &all))
			cpu[m++] = i;
	/* the chips on this host share its CPUs; but an MPI rank whose
	 * affinity is less than the host's was bound by mpirun: those CPUs
	 * are its own */
	fabric_local(e->fab, &local, &n_local);
	if (fabric_is_mpi(e->fab) &&
	    m < sysconf(_SC_NPROCESSORS_ONLN))
		local = 0, n_local = 1;
	if (*units <= 0)
		*units = m / n_local > 0 ? m / n_local : 1;
	if (local == 0 && n_local * *units > m)
		fprintf(stderr, "warning: chip %d: %d chips x %d units on %d CPUs "
			"of %s: units share CPUs, and a unit spinning on a shared "
			"CPU delays the one it waits for; figures are distorted\n",
			e->chip, n_local, *units, m, fabric_host(e->fab));
	CPU_ZERO(&mine);
	for (int j = 0; j < *units; j++)
		CPU_SET(cpu[(local * *units + j) % m], &mine);
	if (sched_setaffinity(0, sizeof(mine), &mine)) {
		snprintf(err, errlen, "sched_setaffinity: %s", strerror(errno));
		return -errno;
	}
	return 0;
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
	struct plan_config pc = {.n_chips = e->n_chips, .chip = e->chip,
				 .tp = e->cfg.tp, .n_units = n, .unit_cpu = cpus,
				 .unit_node = nodes};
	for (int32_t l = 0; l < hp->n_layer; l++) { /* column slices' blocks */
		int64_t bo = kern_type_info(e->model.layer[layer_id(l, LT_WO)]->type)->blck;
		int64_t bd = kern_type_info(e->model.layer[layer_id(l, LT_W_DOWN)]->type)->blck;
		pc.wo_block = bo > pc.wo_block ? bo : pc.wo_block;
		pc.down_block = bd > pc.down_block ? bd : pc.down_block;
	}
	if ((rc = plan_init(&e->plan, hp, &pc, err, errlen)))
		return rc;
	chips_bounds(e);
	views_init(e);
	if (e->n_chips > 1 && e->plan.tp == PLAN_TP_ALLREDUCE &&
	    (rc = views_pack(e, err, errlen)))
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
	e->tok_owner = xcalloc(nb, sizeof(int));
}

/* What a chip's model file is: its size and a checksum (FNV-1a, 64 bits)
 * of everything before the tensor data (header, metadata, tensor table). */
struct model_id {
	uint64_t size, sum;
	char host[64], path[192];
};

static int model_id_of(struct engine *e, const char *path, struct model_id *id,
		       char *err, size_t errlen)
{
	const uint64_t n = e->gguf.data_offset;
	unsigned char *buf = xmalloc(n ? n : 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	uint64_t got = 0, h = 0xcbf29ce484222325ull;

	while (fd >= 0 && got < n) {
		ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
		if (r <= 0)
			break;
		got += (uint64_t)r;
	}
	if (fd < 0 || got < n) {
		rc = fd < 0 ? -errno : -EIO;
		snprintf(err, errlen, "%s: reading its header: %s", path,
			 strerror(-rc));
	}
	for (uint64_t i = 0; i < got; i++)
		h = (h ^ buf[i]) * 0x100000001b3ull;
	memset(id, 0, sizeof(*id));
	id->size = e->gguf.file_size;
	id->sum = h;
	snprintf(id->host, sizeof(id->host), "%s", fabric_host(e->fab));
	snprintf(id->path, sizeof(id->path), "%s", path);
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

/* Every chip opens the model at the same path on its own host: a chip
 * whose file is not chip 0's is refused before any work, every chip
 * reaching the same verdict (chip 0 says it). */
static int model_check(struct engine *e, const char *path, char *err,
		       size_t errlen)
{
	struct model_id all[FABRIC_MAX_CHIPS];
	int owner[FABRIC_MAX_CHIPS], rc, bad = -1;

	for (int c = 0; c < e->n_chips; c++)
		owner[c] = c;
	rc = model_id_of(e, path, &all[e->chip], err, errlen);
	if (rc)
		all[e->chip].size = UINT64_MAX; /* unreadable: differs */
	struct fabric_layout l = {.elem = sizeof(*all), .nb = e->n_chips, .ld = 1,
				  .owner = owner, .row_len = 1, .root = -1};
	fabric_quiet(e->fab, true);
	int r = fabric_allgather(e->fab, all, &l);
	fabric_quiet(e->fab, false);
	if (r) {
		snprintf(err, errlen, "%s", fabric_error(e->fab));
		return r;
	}
	for (int c = 1; c < e->n_chips && bad < 0; c++)
		if (all[c].size != all[0].size || all[c].sum != all[0].sum)
			bad = c;
	if (bad < 0)
		return rc;
	if (all[bad].size == UINT64_MAX)
		snprintf(err, errlen, "chip %d on host %s cannot read %s; every "
			 "chip opens the model at the same path on its own host",
			 bad, all[bad].host, all[bad].path);
	else
		snprintf(err, errlen, "chip %d on host %s: %s is not chip 0's "
			 "model on host %s (%llu vs %llu bytes, header and tensor "
			 "table checksum %016llx vs %016llx); every chip needs the "
			 "same file at the same path", bad, all[bad].host,
			 all[bad].path, all[0].host,
			 (unsigned long long)all[bad].size,
			 (unsigned long long)all[0].size,
			 (unsigned long long)all[bad].sum,
			 (unsigned long long)all[0].sum);
	/* the others exit without a word (shm: marked, so that chip 0 does
	 * not report their exit again; MPI: every rank ends cleanly) */
	if (e->chip == 0 && !fabric_is_mpi(e->fab))
		fabric_abort(e->fab, -EINVAL, err);
	return -EINVAL;
}

int engine_init(struct engine *e, const char *path,
		const struct engine_config *cfg, char *err, size_t errlen)
{
	int64_t t0 = now_ns();
	int rc;

	memset(e, 0, sizeof(*e));
	e->mt.fd = -1; /* destroy must not close(0) after an early failure */
	e->image_fd = -1;
	e->cfg = *cfg;
	e->fab = cfg->fab;
	e->chip = fabric_chip(cfg->fab);
	e->n_chips = fabric_chips(cfg->fab);
	e->shared = cfg->nmu_off;
	e->n_batch = cfg->n_batch > 0 ? cfg->n_batch : 128;
	if ((rc = gguf_open(&e->gguf, path, err, errlen))) {
		if (e->n_chips > 1)
			chips_rc(e, rc, err, errlen);
		return rc;
	}
	if (e->n_chips > 1 && (rc = model_check(e, path, err, errlen))) {
		gguf_close(&e->gguf);
		return rc;
	}
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
	int units = cfg->n_threads;
	if (e->n_chips > 1 && (rc = chip_cpus(e, &units, err, errlen)))
		goto err_destroy;
	struct nmu_config nc = {.n_units = units, .pin = !cfg->nmu_off,
				.topology = cfg->topology};
	if ((rc = nmu_init(&e->pool, &nc, err, errlen)))
		goto err_destroy;
	e->n_threads = e->pool.n_units;
	state_init(e);
	if ((rc = units_init(e, err, errlen)))
		goto err_destroy;
	if ((rc = chips_rc(e, 0, err, errlen))) {
		engine_destroy(e);
		return rc;
	}
	e->load_ns = now_ns() - t0;
	return 0;

err_destroy:
	/* the other chips wait at the start-up collective: stop them */
	if (e->n_chips > 1)
		chips_rc(e, rc, err, errlen);
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
	free(e->cols_att); free(e->cols_embd); free(e->cols_ff);
	free(e->cols_vocab); free(e->tok_owner); free(e->chip_logits);
	free(e->view);
	e->view = NULL;
	if (e->image_fd >= 0)
		close(e->image_fd);
	e->image_fd = -1;
	e->cols_att = e->cols_embd = e->cols_ff = e->cols_vocab = NULL;
	e->tok_owner = NULL;
	e->chip_logits = NULL;
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

/* What chip 0 sends the others before each call they must join. */
enum chip_op { CHIP_TOKENS = 1, CHIP_FLUSH, CHIP_RESET, CHIP_REPORT, CHIP_STOP };

#define CHIP_CMD_TOKENS 16 /* tokens sent with the command itself */

struct chip_cmd {
	int32_t op, nb, pos0, first;
	int32_t want_out, all_float;
	int32_t tokens[CHIP_CMD_TOKENS];
};

static int send_cmd(struct engine *e, struct chip_cmd *c, const int32_t *tokens)
{
	int rc;

	if (e->n_chips == 1 || e->chip != 0)
		return 0;
	if (tokens && c->nb <= CHIP_CMD_TOKENS)
		memcpy(c->tokens, tokens, (size_t)c->nb * sizeof(*tokens));
	/* the tokens are a cost of the model (the sampled token reaches
	 * every chip), the other commands control traffic */
	fabric_quiet(e->fab, c->op != CHIP_TOKENS);
	rc = fabric_bcast(e->fab, c, sizeof(*c), 0, false);
	fabric_quiet(e->fab, false);
	if (rc)
		return rc;
	if (tokens && c->nb > CHIP_CMD_TOKENS)
		rc = fabric_bcast(e->fab, (void *)tokens,
				  (size_t)c->nb * sizeof(*tokens), 0, false);
	return rc;
}

/* the first unit's message after a failed job, or NULL */
static const char *unit_error(const struct engine *e)
{
	for (int i = 0; i < e->pool.n_units; i++)
		if (e->units[i].err[0])
			return e->units[i].err;
	return NULL;
}

/* a unit's failure ends the job on every chip */
static int run_tokens(struct engine *e, const struct tokens_job *j)
{
	struct chip_cmd c = {.op = CHIP_TOKENS, .nb = j->nb, .pos0 = j->pos0,
			     .first = j->first, .want_out = j->out != NULL,
			     .all_float = j->all_float};
	int rc = send_cmd(e, &c, j->tokens);

	if (!rc)
		rc = nmu_run(&e->pool, tokens_job, (void *)j);
	if (rc) {
		for (int i = 0; i < e->pool.n_units; i++)
			layer_release_all(&e->units[i]);
		if (e->n_chips > 1)
			fabric_abort(e->fab, rc, unit_error(e));
	}
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
		if ((e->cfg.cancel && *e->cfg.cancel) || fabric_stop_requested(e->fab)) {
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

/* ---- the other chips ----------------------------------------------------- */

static int local_flush(struct engine *e);
static void local_reset(struct engine *e);
static void local_report(struct engine *e, struct engine_chip_report *r);

static int gather_reports(struct engine *e, struct engine_chip_report *out)
{
	int owner[FABRIC_MAX_CHIPS];

	for (int c = 0; c < e->n_chips; c++)
		owner[c] = c;
	local_report(e, &out[e->chip]);
	struct fabric_layout l = {.elem = sizeof(*out), .nb = e->n_chips, .ld = 1,
				  .owner = owner, .row_len = 1, .root = 0};
	fabric_quiet(e->fab, true);
	int rc = fabric_allgather(e->fab, out, &l);
	fabric_quiet(e->fab, false);
	return rc;
}

int engine_serve(struct engine *e, char *err, size_t errlen)
{
	const int64_t n_vocab = e->model.hp.n_vocab;
	int32_t *tokens = xmalloc((size_t)e->n_batch * sizeof(*tokens));
	struct engine_chip_report *rep = NULL;
	struct chip_cmd c;
	int rc = 0;

	while (!rc) {
		/* waiting for chip 0 (sampling, printing, its user) is idle */
		if ((rc = fabric_bcast(e->fab, &c, sizeof(c), 0, true)))
			break;
		switch (c.op) {
		case CHIP_TOKENS: {
			if (c.nb < 1 || c.nb > e->n_batch) {
				rc = -EPROTO;
				break;
			}
			if (c.nb <= CHIP_CMD_TOKENS)
				memcpy(tokens, c.tokens, (size_t)c.nb * sizeof(*tokens));
			else if ((rc = fabric_bcast(e->fab, tokens,
						    (size_t)c.nb * sizeof(*tokens),
						    0, false)))
				break;
			float *out = NULL;
			if (c.want_out) {
				if (!e->chip_logits)
					e->chip_logits = xalign((size_t)e->n_batch *
								(size_t)n_vocab *
								sizeof(float));
				out = e->chip_logits;
			}
			struct tokens_job j = {.tokens = tokens, .nb = c.nb,
					       .pos0 = c.pos0, .out = out,
					       .first = c.first,
					       .all_float = c.all_float != 0};
			rc = run_tokens(e, &j);
			break;
		}
		case CHIP_FLUSH:
			rc = chips_rc(e, local_flush(e), NULL, 0);
			break;
		case CHIP_RESET:
			local_reset(e);
			break;
		case CHIP_REPORT:
			if (!rep)
				rep = xcalloc((size_t)e->n_chips, sizeof(*rep));
			rc = gather_reports(e, rep);
			break;
		case CHIP_STOP:
			free(tokens);
			free(rep);
			return 0;
		default:
			rc = -EPROTO;
		}
	}
	const char *msg = unit_error(e);
	if (!msg)
		msg = fabric_error(e->fab)[0] ? fabric_error(e->fab) : strerror(-rc);
	snprintf(err, errlen, "%s", msg);
	fabric_abort(e->fab, rc, msg);
	free(tokens);
	free(rep);
	return rc;
}

void engine_stop(struct engine *e)
{
	struct chip_cmd c = {.op = CHIP_STOP};

	send_cmd(e, &c, NULL);
}

int engine_chip_reports(struct engine *e, struct engine_chip_report *out)
{
	struct chip_cmd c = {.op = CHIP_REPORT};
	int rc;

	if (e->n_chips == 1) {
		local_report(e, out);
		return 0;
	}
	if ((rc = send_cmd(e, &c, NULL)))
		return rc;
	return gather_reports(e, out);
}

/* ---- counters ----------------------------------------------------------- */

static int local_flush(struct engine *e)
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

int engine_flush(struct engine *e)
{
	struct chip_cmd c = {.op = CHIP_FLUSH};
	int rc = send_cmd(e, &c, NULL);

	return rc ? rc : chips_rc(e, local_flush(e), NULL, 0);
}

static void local_counters(const struct engine *e, struct engine_counters *c)
{
	memset(c, 0, sizeof(*c));
	if (e->shared) {
		add_mt_kv(c, &e->mt, e->kv);
		return;
	}
	for (int i = 0; i < e->pool.n_units; i++)
		add_mt_kv(c, &e->units[i].mt, e->units[i].kv);
}

void engine_counters(struct engine *e, struct engine_counters *c)
{
	if (e->n_chips == 1) {
		local_counters(e, c);
		return;
	}
	struct engine_chip_report *r = xcalloc((size_t)e->n_chips, sizeof(*r));
	memset(c, 0, sizeof(*c));
	if (!engine_chip_reports(e, r)) {
		for (int ch = 0; ch < e->n_chips; ch++) {
			const struct engine_counters *x = &r[ch].c;
			for (int k = 0; k < MEMTIER_KIND_COUNT; k++)
				memtier_stats_add(&c->tiers[k], &x->tiers[k]);
			memtier_stats_add(&c->kv, &x->kv);
			c->resident_bytes += x->resident_bytes;
			c->n_segments += x->n_segments;
			uint64_t dram = c->kv_info.dram_bytes + x->kv_info.dram_bytes;
			uint64_t pos = c->kv_info.position_bytes + x->kv_info.position_bytes;
			c->kv_info = x->kv_info;
			c->kv_info.dram_bytes = dram;
			c->kv_info.position_bytes = pos;
		}
	}
	free(r);
}

/* time the unit waited on its tiers so far */
static int64_t unit_stall_ns(const struct engine_unit *eu)
{
	int64_t ns = kvcache_stats(eu->kvp)->stall_ns;

	for (int k = 0; k < MEMTIER_KIND_COUNT; k++)
		ns += eu->mtp->stats[k].stall_ns;
	return ns;
}

static void local_reset(struct engine *e)
{
	nmu_stats_reset(&e->pool);
	if (e->fab)
		fabric_stats_reset(e->fab);
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
		.chip = e->chip, .unit = i, .cpu = nu->cpu, .node = nu->node,
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

void engine_units_reset(struct engine *e)
{
	struct chip_cmd c = {.op = CHIP_RESET};

	send_cmd(e, &c, NULL);
	local_reset(e);
}

static void local_report(struct engine *e, struct engine_chip_report *r)
{
	memset(r, 0, sizeof(*r));
	r->chip = e->chip;
	r->pid = (int)getpid();
	snprintf(r->host, sizeof(r->host), "%s", fabric_host(e->fab));
	r->n_units = e->pool.n_units;
	local_counters(e, &r->c);
	r->peak_rss_bytes = stats_peak_rss();
	for (int i = 0; i < e->pool.n_units && i < PLAN_MAX_UNITS; i++)
		engine_unit_report(e, i, &r->u[i]);
	if (!e->fab)
		return;
	const struct fabric_stats *fs = fabric_get_stats(e->fab);
	for (int o = 0; o < FABRIC_OP_COUNT; o++) {
		struct engine_fabric_op *op = &r->op[o];
		double p50, p99;
		fabric_percentiles(e->fab, (enum fabric_op)o, &p50, &p99);
		op->count = fs->op[o].count;
		op->bytes = fs->op[o].bytes;
		op->seconds = (double)fs->op[o].ns / 1e9;
		op->wait_s = (double)fs->op[o].wait_ns / 1e9;
		op->p50_us = p50 / 1e3;
		op->p99_us = p99 / 1e3;
		op->max_us = (double)fs->op[o].max_ns / 1e3;
		memcpy(op->hist, fs->op[o].hist, sizeof(op->hist));
	}
}
