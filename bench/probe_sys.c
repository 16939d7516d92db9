/*
 * probe_sys.c - the parts of the hardware profile the simulator needs
 * beyond DRAM, kernels and flash (bench/sim.h reads them):
 *
 *   matmul   prefill's batched kernel (kern_ops.matmul, or matvec looped
 *            over the tokens where a type has none) on a 2048-row matrix
 *            of 2048 columns x PROBE_MM_TOKENS activations, rows split
 *            evenly over the threads and walked in tiles of 512 rows as
 *            engine/layer.c does: multiply-accumulates of weight elements
 *            x tokens per second, one thread and all. Float types take
 *            OpenBLAS in the engine and are not measured here.
 *   barrier  the engine's own unit pool (engine/nmu.h): nmu_run of a job
 *            that crosses nmu_barrier back to back, for 1 .. CPUs units
 *            (pinned, as --nmu on): mean microseconds per barrier.
 *   sampler  sampler_sample with decode's default settings and greedy over
 *            a 32000-entry vocabulary: nanoseconds per vocabulary entry.
 *   ops      the float ops every unit runs in every layer besides its
 *            matvecs (kernels/ops.h: rmsnorm, RoPE, SiLU x up, add, the
 *            copy of an input, the activation quantizers of kern.h) on
 *            PROBE_OPS_N elements, and one query head's attention
 *            (ops_attn_head) over 16 .. 4096 positions for head_dim 64
 *            and 128, one thread: with K/V in cache (the later heads of
 *            a GQA group) and from memory (the first: copies rotating
 *            through 256 MiB, rows 2 KV heads apart as a unit's cache
 *            has them): nanoseconds per element and per call.
 */
#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/mvbench.h"
#include "bench/probe.h"
#include "engine/nmu.h"
#include "engine/sampler.h"
#include "kernels/ops.h"

#define MM_ROWS 2048

/* the profile's names of enum probe_op */
static const char *const probe_op_names[PROBE_OP_COUNT] = {
	[PROBE_OP_RMSNORM] = "rmsnorm", [PROBE_OP_ROPE] = "rope",
	[PROBE_OP_SILU] = "silu_mul", [PROBE_OP_ADD] = "add",
	[PROBE_OP_COPY] = "copy", [PROBE_OP_Q8A] = "quant_q8_0",
	[PROBE_OP_Q8K] = "quant_q8_K" };
#define MM_TILE 512

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* one sample of nt tokens on copy `copy` of m: nth threads, each its
 * share of rows in tiles */
static double mm_sample(const struct mvbench_mat *m, const struct kern_ops *ops,
			const void *act, size_t stride, float *y, int nth,
			int nt, int64_t copy)
{
	const uint8_t *base = m->base + (size_t)(copy % m->copies) * m->stride;
	double t0 = 0, t1 = 0;

#pragma omp parallel num_threads(nth)
	{
		int ith = omp_get_thread_num();
		int64_t r0 = m->rows * ith / nth, r1 = m->rows * (ith + 1) / nth;
#pragma omp barrier
#pragma omp master
		t0 = now_s();
		for (int64_t a = r0; a < r1; a += MM_TILE) {
			int64_t b = a + MM_TILE < r1 ? a + MM_TILE : r1;
			if (ops->matmul)
				ops->matmul(base, m->row_bytes, act, stride, y,
					    m->rows, m->n, a, b, nt);
			else
				for (int t = 0; t < nt; t++)
					ops->matvec(base, m->row_bytes,
						    (const char *)act + (size_t)t * stride,
						    y + (int64_t)t * m->rows, m->n, a, b);
		}
#pragma omp barrier
#pragma omp master
		t1 = now_s();
	}
	return t1 - t0;
}

/* one type into *pt; 0, 1 (not measured: a float type) or -ENOMEM */
static int mm_type(const struct probe_opts *o, struct probe_sys *r,
		   const cpu_set_t *allowed, uint32_t type, void *arena,
		   void *small, size_t arena_bytes, struct probe_mm *pt)
{
	const struct kern_type_info *ti = kern_type_info(type);
	const struct kern_ops *ops = kern_ops(type);
	struct mvbench_mat m;
	size_t ab, stride;
	char *acts;
	float *y;
	int err = 0;

	if (!ti || ti->act_type == KT_F32)
		return 1;
	const int nt_max = probe_mm_tokens[PROBE_MM_NTOK - 1];

	/* in cache: one 2048 x 2048 matrix read again and again */
	size_t one_bytes = MM_ROWS * (size_t)kern_row_bytes(type, KERN_COLS);
	if (mvbench_fill(&m, arena, (one_bytes + 4095) / 4096 * 4096, type,
			 MM_ROWS, KERN_COLS))
		return -ENOMEM;
	ab = kern_act_bytes(ti->act_type, KERN_COLS);
	stride = (ab + 63) / 64 * 64;
	acts = aligned_alloc(64, stride * (size_t)nt_max);
	y = malloc(sizeof(float) * PROBE_MM_MEM_ROWS * (size_t)nt_max);
	void *one = mvbench_act(type, kern_isa_active(), KERN_COLS);
	if (!acts || !y || !one) {
		err = -ENOMEM;
		goto out;
	}
	for (int t = 0; t < nt_max; t++)
		memcpy(acts + (size_t)t * stride, one, ab);
	pt->type = type;
	for (int i = 0; i < (r->n_threads > 1 ? 2 : 1); i++) {
		int nth = i ? r->n_threads : 1, n = o->quick ? 5 : 9;
		double s[9];

		probe_pin_team(allowed, nth);
		mm_sample(&m, ops, acts, stride, y, nth, PROBE_MM_TOKENS, 0); /* warm */
		for (int k = 0; k < n; k++)
			s[k] = mm_sample(&m, ops, acts, stride, y, nth,
					 PROBE_MM_TOKENS, 0);
		qsort(s, (size_t)n, sizeof(double), cmp_d);
		pt->gmacs[i] = (double)MM_ROWS * KERN_COLS * PROBE_MM_TOKENS /
			       s[n / 2] * 1e-9;
	}
	/* from memory: 5632 x 2048 copies filling the arena, each product
	 * on the next copy, by batch size; then the same on 4 KiB pages */
	for (int sp = 0; sp < (small ? 2 : 1); sp++) {
		if (mvbench_fill(&m, sp ? small : arena, arena_bytes, type,
				 PROBE_MM_MEM_ROWS, KERN_COLS)) {
			err = -ENOMEM;
			goto out;
		}
		int64_t copy = 0;
		for (int i = 0; i < (r->n_threads > 1 ? 2 : 1); i++) {
			int nth = i ? r->n_threads : 1, n = o->quick ? 5 : 9;

			probe_pin_team(allowed, nth);
			for (int j = 0; j < PROBE_MM_NTOK; j++) {
				int nt = probe_mm_tokens[j];
				double s[9];
				mm_sample(&m, ops, acts, stride, y, nth, nt, copy++); /* warm */
				for (int k = 0; k < n; k++)
					s[k] = mm_sample(&m, ops, acts, stride, y, nth, nt,
							 copy++);
				qsort(s, (size_t)n, sizeof(double), cmp_d);
				(sp ? pt->sp_gmacs : pt->mem_gmacs)[j][i] =
					(double)PROBE_MM_MEM_ROWS * KERN_COLS * nt /
					s[n / 2] * 1e-9;
			}
		}
	}
out:
	free(one);
	free(acts);
	free(y);
	return err;
}

static int barrier_job(struct nmu_unit *u, void *arg)
{
	int n = *(const int *)arg;

	for (int i = 0; i < n; i++) {
		int rc = nmu_barrier(u);
		if (rc)
			return rc;
	}
	return 0;
}

/* mean us per barrier of a pool of n units; < 0 on error */
static double barrier_us(int n_units, int quick, char *err, size_t errlen)
{
	struct nmu_pool p = { 0 };
	struct nmu_config cfg = { .n_units = n_units, .pin = true };
	int iters = quick ? 2000 : 20000;
	double best = -1;

	if (nmu_init(&p, &cfg, err, errlen))
		return -1;
	nmu_run(&p, barrier_job, &iters); /* warm: threads awake */
	for (int k = 0; k < 3; k++) {
		double t0 = now_s();
		if (nmu_run(&p, barrier_job, &iters)) {
			snprintf(err, errlen, "a barrier failed");
			best = -1;
			break;
		}
		double us = (now_s() - t0) * 1e6 / iters;
		if (best < 0 || us < best)
			best = us;
	}
	nmu_destroy(&p);
	return best;
}

/* ns per vocabulary entry of one sampler_sample; < 0 on error */
static double sampler_ns(float temp, int quick)
{
	enum { V = 32000 };
	struct sampler_config c = { .temp = temp, .top_k = 40, .top_p = 0.95f,
				    .min_p = 0.05f, .repeat_penalty = 1.0f,
				    .repeat_last_n = 64, .seed = 42 };
	struct sampler s;
	float *logits = malloc(sizeof(float) * V), *work = malloc(sizeof(float) * V);
	int n = quick ? 50 : 300;
	double t0, t;

	if (!logits || !work || sampler_init(&s, &c, V)) {
		free(logits);
		free(work);
		return -1;
	}
	srand(7);
	for (int i = 0; i < V; i++)
		logits[i] = (float)rand() / RAND_MAX * 20.0f - 10.0f;
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		memcpy(work, logits, sizeof(float) * V);
		sampler_accept(&s, sampler_sample(&s, work));
	}
	t = now_s() - t0;
	sampler_destroy(&s);
	free(logits);
	free(work);
	return t / n / V * 1e9;
}

struct probe_ops_buf {
	int64_t n;
	float *x, *y, *w, *k, *v, *scores;
	void *q8;
	int hd;
	/* cold attention: copies of [K | V] (positions x stride floats each)
	 * rotating through an arena far larger than the caches */
	float *arena;
	size_t arena_floats;
	int64_t copy;
};

/* K/V rows of a unit's cache are 2 KV heads apart (engine/layer.c's
 * kv_stride for the usual 2+ heads a unit) */
#define ATT_STRIDE_HEADS 2

/* one call of op (PROBE_OP_COUNT: attention over arg positions) */
static void op_call(struct probe_ops_buf *b, int op, int64_t arg)
{
	switch (op) {
	case PROBE_OP_RMSNORM: ops_rmsnorm(b->y, b->x, b->w, b->n, 1e-5f); break;
	case PROBE_OP_ROPE: ops_rope(b->y, (int)(b->n / 64), 64, 64, 77, 10000.0f); break;
	case PROBE_OP_SILU: ops_silu_mul(b->y, b->x, b->w, 0, b->n); break;
	case PROBE_OP_ADD: ops_add(b->y, b->x, 0, b->n); break;
	case PROBE_OP_COPY: memcpy(b->y, b->x, sizeof(float) * (size_t)b->n); break;
	case PROBE_OP_Q8A: kern_quantize_act(KT_Q8_A)(b->x, b->q8, b->n); break;
	case PROBE_OP_Q8K: kern_quantize_act(KT_Q8_K)(b->x, b->q8, b->n); break;
	default: {
		const float *k = b->k, *v = b->v;
		int64_t st = b->hd;
		if (b->arena) {
			size_t one = (size_t)arg * ATT_STRIDE_HEADS * (size_t)b->hd;
			size_t n = b->arena_floats / (2 * one);
			k = b->arena + (size_t)(b->copy++ % (int64_t)n) * 2 * one;
			v = k + one;
			st = ATT_STRIDE_HEADS * b->hd;
		}
		ops_attn_head(b->y, b->x, k, v, st, arg, b->hd, 0.125f, b->scores);
	}
	}
	__asm__ volatile("" ::: "memory");
}

/* median ns of one call of op on hot data: samples of reps calls */
static double op_ns(struct probe_ops_buf *b, int op, int64_t arg, int quick)
{
	int reps = 1, n = quick ? 5 : 11;
	double s[11];

	/* calls per sample: about 200 us of work */
	for (;;) {
		double t0 = now_s();
		for (int i = 0; i < reps; i++)
			op_call(b, op, arg);
		if (now_s() - t0 > 200e-6 || reps >= 1 << 20)
			break;
		reps *= 2;
	}
	for (int k = 0; k < n; k++) {
		double t0 = now_s();
		for (int i = 0; i < reps; i++)
			op_call(b, op, arg);
		s[k] = (now_s() - t0) / reps * 1e9;
	}
	qsort(s, (size_t)n, sizeof(double), cmp_d);
	return s[n / 2];
}

/* the ops and attention into *r on the calling thread; 0 or -ENOMEM */
static int probe_ops_run(struct probe_ops *r, int quick)
{
	static const int hd[PROBE_ATT_HD] = { 64, 128 };
	static const int pos[PROBE_ATT_POS] = { 16, 64, 256, 1024, 2048, 4096 };
	struct probe_ops_buf b = { 0 };
	int err = 0;

	b.n = PROBE_OPS_N;
	b.x = aligned_alloc(64, sizeof(float) * PROBE_OPS_N);
	b.y = aligned_alloc(64, sizeof(float) * PROBE_OPS_N);
	b.w = aligned_alloc(64, sizeof(float) * PROBE_OPS_N);
	size_t qa = kern_act_bytes(KT_Q8_A, PROBE_OPS_N), qk = kern_act_bytes(KT_Q8_K, PROBE_OPS_N);
	b.q8 = aligned_alloc(64, ((qa > qk ? qa : qk) + 63) / 64 * 64);
	b.k = aligned_alloc(64, sizeof(float) * 4096 * 128);
	b.v = aligned_alloc(64, sizeof(float) * 4096 * 128);
	b.scores = aligned_alloc(64, sizeof(float) * 4096);
	if (!b.x || !b.y || !b.w || !b.q8 || !b.k || !b.v || !b.scores) {
		err = -ENOMEM;
		goto out;
	}
	srand(11);
	for (int i = 0; i < PROBE_OPS_N; i++) {
		b.x[i] = (float)rand() / RAND_MAX - 0.5f;
		b.y[i] = (float)rand() / RAND_MAX - 0.5f;
		b.w[i] = 1.0f;
	}
	for (int i = 0; i < 4096 * 128; i++) {
		b.k[i] = (float)rand() / RAND_MAX - 0.5f;
		b.v[i] = (float)rand() / RAND_MAX - 0.5f;
	}
	for (int op = 0; op < PROBE_OP_COUNT; op++)
		r->ns_per_elem[op] = op_ns(&b, op, 0, quick) / PROBE_OPS_N;
	for (int h = 0; h < PROBE_ATT_HD; h++) {
		r->att_hd[h] = hd[h];
		for (int p = 0; p < PROBE_ATT_POS; p++) {
			r->att_pos[p] = pos[p];
			b.hd = hd[h];
			r->att_ns[h][p] = op_ns(&b, PROBE_OP_COUNT, pos[p], quick);
		}
	}
	/* cold: 256 MiB of K/V copies, written once */
	b.arena_floats = (256 * MIB) / sizeof(float);
	struct arena mem = { 0 };
	if (probe_huge_alloc(&mem, b.arena_floats * sizeof(float), 1)) {
		err = -ENOMEM;
		goto out;
	}
	b.arena = mem.base;
	for (size_t i = 0; i < b.arena_floats; i++)
		b.arena[i] = (float)(i % 97) * 0.01f - 0.5f;
	for (int h = 0; h < PROBE_ATT_HD; h++)
		for (int p = 0; p < PROBE_ATT_POS; p++) {
			b.hd = hd[h];
			r->att_cold_ns[h][p] = op_ns(&b, PROBE_OP_COUNT, pos[p], quick);
		}
	arena_unmap(&mem);
	b.arena = NULL;
out:
	free(b.x); free(b.y); free(b.w); free(b.q8);
	free(b.k); free(b.v); free(b.scores);
	return err;
}

int probe_sys(const struct probe_opts *o, struct probe_sys *r, char *msg,
	      size_t msglen)
{
	cpu_set_t allowed;
	size_t arena_bytes = PROBE_MM_MEM_MIB * MIB;
	struct arena mem = {0}, small = {0};
	void *arena = NULL;
	int err;

	sched_getaffinity(0, sizeof(allowed), &allowed);
	r->n_threads = CPU_COUNT(&allowed);
	/* matmul: the weight types the engine quantizes activations for */
	if ((err = probe_huge_alloc(&mem, arena_bytes, r->n_threads))) {
		snprintf(msg, msglen, "matmul arena: %s", strerror(-err));
		return err;
	}
	arena = mem.base;
	if (!o->no_small_pages) {
		if ((err = probe_small_alloc(&small, arena_bytes))) {
			arena_unmap(&mem);
			snprintf(msg, msglen, "matmul arena on 4 KiB pages: %s",
				 strerror(-err));
			return err;
		}
		r->small_pages = 1;
	}
	for (uint32_t t = 0; t < KT_COUNT && r->n_mm < KERN_MAX_TYPES; t++) {
		if (!kern_ops(t) || kern_row_bytes(t, KERN_COLS) <= 0 ||
		    !probe_kern_wanted(o, t))
			continue;
		fprintf(stderr, "\rmatmul: %-5s ...", kern_type_info(t)->name);
		err = mm_type(o, r, &allowed, t, arena, small.base, arena_bytes,
			      &r->mm[r->n_mm]);
		if (err < 0) {
			snprintf(msg, msglen, "matmul: out of memory");
			break;
		}
		if (err == 0)
			r->n_mm++;
		err = 0;
	}
	fprintf(stderr, "\n");
	sched_setaffinity(0, sizeof(allowed), &allowed);
	arena_unmap(&small);
	arena_unmap(&mem);
	if (err)
		return err;
	/* barriers of the engine's pool, 1 .. CPUs units */
	r->n_bar = r->n_threads < PROBE_MAX_UNITS ? r->n_threads : PROBE_MAX_UNITS;
	for (int n = 1; n <= r->n_bar; n++) {
		fprintf(stderr, "\rbarrier: %d units ...", n);
		r->barrier_us[n - 1] = barrier_us(n, o->quick, msg, msglen);
		if (r->barrier_us[n - 1] < 0)
			return -EIO;
	}
	fprintf(stderr, "\n");
	sched_setaffinity(0, sizeof(allowed), &allowed);
	if (probe_ops_run(&r->ops, o->quick)) {
		snprintf(msg, msglen, "ops: out of memory");
		return -ENOMEM;
	}
	r->sampler_ns = sampler_ns(0.8f, o->quick);
	r->greedy_ns = sampler_ns(0.0f, o->quick);
	if (r->sampler_ns < 0 || r->greedy_ns < 0) {
		snprintf(msg, msglen, "sampler: out of memory");
		return -ENOMEM;
	}
	return 0;
}

void probe_sys_print(const struct probe_sys *r)
{
	fprintf(stderr, "\nprefill matmul (GMAC/s; in cache: 2048x2048, %d tokens; "
		"from memory: %dx2048 by tokens)\n  type     cache 1t  %dt", PROBE_MM_TOKENS,
		PROBE_MM_MEM_ROWS, r->n_threads);
	for (int j = 0; j < PROBE_MM_NTOK; j++)
		fprintf(stderr, "  mem %3d: 1t  %dt", probe_mm_tokens[j], r->n_threads);
	fputc('\n', stderr);
	for (int i = 0; i < r->n_mm; i++) {
		int a = r->n_threads > 1 ? 1 : 0;
		fprintf(stderr, "  %-6s %9.1f %6.1f", kern_type_info(r->mm[i].type)->name,
			r->mm[i].gmacs[0], r->mm[i].gmacs[a]);
		for (int j = 0; j < PROBE_MM_NTOK; j++)
			fprintf(stderr, "  %11.1f %5.1f", r->mm[i].mem_gmacs[j][0],
				r->mm[i].mem_gmacs[j][a]);
		fputc('\n', stderr);
	}
	fprintf(stderr, "barrier (engine/nmu, us):");
	for (int n = 1; n <= r->n_bar; n++)
		fprintf(stderr, " %d units %.2f", n, r->barrier_us[n - 1]);
	fprintf(stderr, "\nsampler: %.2f ns per vocab entry (greedy %.2f)\n",
		r->sampler_ns, r->greedy_ns);
	fprintf(stderr, "ops (ns per element, %d elements):", PROBE_OPS_N);
	for (int i = 0; i < PROBE_OP_COUNT; i++)
		fprintf(stderr, " %s %.3f", probe_op_names[i], r->ops.ns_per_elem[i]);
	fprintf(stderr, "\nattention, one head (us) by positions:");
	for (int p = 0; p < PROBE_ATT_POS; p++)
		fprintf(stderr, " %6d", r->ops.att_pos[p]);
	for (int h = 0; h < PROBE_ATT_HD; h++) {
		fprintf(stderr, "\n  head_dim %3d                    ", r->ops.att_hd[h]);
		for (int p = 0; p < PROBE_ATT_POS; p++)
			fprintf(stderr, " %6.2f", r->ops.att_ns[h][p] * 1e-3);
		fprintf(stderr, "\n  head_dim %3d, K/V from memory ", r->ops.att_hd[h]);
		for (int p = 0; p < PROBE_ATT_POS; p++)
			fprintf(stderr, " %6.2f", r->ops.att_cold_ns[h][p] * 1e-3);
	}
	fputc('\n', stderr);
}

void probe_sys_json(FILE *f, const struct probe_sys *r)
{
	if (!r) {
		fprintf(f, "  \"matmul\": null,\n  \"barrier\": null,\n"
			"  \"sampler\": null,\n");
		return;
	}
	fprintf(f, "  \"matmul\": {\"tokens\": %d, \"cols\": %d, \"rows\": %d, "
		"\"threads\": %d, \"types\": {", PROBE_MM_TOKENS, KERN_COLS, MM_ROWS,
		r->n_threads);
	for (int i = 0; i < r->n_mm; i++) {
		fprintf(f, "%s\n    \"%s\": {\"gmacs\": {\"1\": %.3f", i ? "," : "",
			kern_type_info(r->mm[i].type)->name, r->mm[i].gmacs[0]);
		if (r->n_threads > 1)
			fprintf(f, ", \"%d\": %.3f", r->n_threads, r->mm[i].gmacs[1]);
		/* "mem": weights from memory, by batch tokens */
		fprintf(f, "},\n      \"mem\": {\"rows\": %d, \"tokens\": [",
			PROBE_MM_MEM_ROWS);
		for (int j = 0; j < PROBE_MM_NTOK; j++)
			fprintf(f, "%s%d", j ? ", " : "", probe_mm_tokens[j]);
		fprintf(f, "], \"gmacs\": {");
		for (int k = 0; k < (r->n_threads > 1 ? 2 : 1); k++) {
			fprintf(f, "%s\"%d\": [", k ? ", " : "", k ? r->n_threads : 1);
			for (int j = 0; j < PROBE_MM_NTOK; j++)
				fprintf(f, "%s%.3f", j ? ", " : "", r->mm[i].mem_gmacs[j][k]);
			fputc(']', f);
		}
		fputc('}', f);
		if (r->small_pages) { /* the same on 4 KiB pages */
			fprintf(f, ", \"small_pages_gmacs\": {");
			for (int k = 0; k < (r->n_threads > 1 ? 2 : 1); k++) {
				fprintf(f, "%s\"%d\": [", k ? ", " : "",
					k ? r->n_threads : 1);
				for (int j = 0; j < PROBE_MM_NTOK; j++)
					fprintf(f, "%s%.3f", j ? ", " : "",
						r->mm[i].sp_gmacs[j][k]);
				fputc(']', f);
			}
			fputc('}', f);
		}
		fprintf(f, "}}");
	}
	fprintf(f, "}},\n  \"barrier\": {\"us_by_units\": {");
	for (int n = 1; n <= r->n_bar; n++)
		fprintf(f, "%s\"%d\": %.3f", n > 1 ? ", " : "", n, r->barrier_us[n - 1]);
	fprintf(f, "}},\n  \"sampler\": {\"vocab\": 32000, \"ns_per_vocab\": %.3f, "
		"\"greedy_ns_per_vocab\": %.3f},\n", r->sampler_ns, r->greedy_ns);
	fprintf(f, "  \"ops\": {\"elements\": %d, \"ns_per_elem\": {", PROBE_OPS_N);
	for (int i = 0; i < PROBE_OP_COUNT; i++)
		fprintf(f, "%s\"%s\": %.4f", i ? ", " : "", probe_op_names[i],
			r->ops.ns_per_elem[i]);
	fprintf(f, "},\n    \"attention\": {\"positions\": [");
	for (int p = 0; p < PROBE_ATT_POS; p++)
		fprintf(f, "%s%d", p ? ", " : "", r->ops.att_pos[p]);
	fprintf(f, "], \"ns_by_head_dim\": {");
	for (int h = 0; h < PROBE_ATT_HD; h++) {
		fprintf(f, "%s\"%d\": [", h ? ", " : "", r->ops.att_hd[h]);
		for (int p = 0; p < PROBE_ATT_POS; p++)
			fprintf(f, "%s%.1f", p ? ", " : "", r->ops.att_ns[h][p]);
		fputc(']', f);
	}
	fprintf(f, "}, \"cold_stride_heads\": %d, \"cold_ns_by_head_dim\": {",
		ATT_STRIDE_HEADS);
	for (int h = 0; h < PROBE_ATT_HD; h++) {
		fprintf(f, "%s\"%d\": [", h ? ", " : "", r->ops.att_hd[h]);
		for (int p = 0; p < PROBE_ATT_POS; p++)
			fprintf(f, "%s%.1f", p ? ", " : "", r->ops.att_cold_ns[h][p]);
		fputc(']', f);
	}
	fprintf(f, "}}},\n");
}
