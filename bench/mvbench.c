/*
 * mvbench.c - matvec timing shared by kbench and probe (bench/mvbench.h).
 */
#include "bench/mvbench.h"

#include <errno.h>
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "models/util.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double mvbench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

uint32_t mvbench_type_by_name(const char *name)
{
	for (uint32_t t = 0; t < KT_COUNT; t++) {
		const struct kern_type_info *ti = kern_type_info(t);

		if (ti && ti->is_weight && !strcasecmp(ti->name, name))
			return t;
	}
	return KT_COUNT;
}

int mvbench_fill(struct mvbench_mat *m, void *arena, size_t arena_bytes,
		 uint32_t type, int64_t rows, int64_t n)
{
	int64_t rb = kern_row_bytes(type, n);
	uint8_t *a = arena;
	float *x;

	if (rb <= 0 || rows < 1 || (size_t)rows * (size_t)rb > arena_bytes)
		return -EINVAL;
	if (!(x = malloc((size_t)n * sizeof(float))))
		return -ENOMEM;
	*m = (struct mvbench_mat){ .type = type, .rows = rows, .n = n,
				   .row_bytes = (size_t)rb, .base = a };
	m->bytes = (size_t)rows * m->row_bytes;
	m->stride = (m->bytes + 4095) & ~(size_t)4095;
	/* the last copy needs only its bytes, not a whole stride */
	m->copies = 1 + (int64_t)((arena_bytes - m->bytes) / m->stride);
	srand(1);
	for (int64_t r = 0; r < rows; r++) {
		if (r >= 16) {
			memcpy(a + r * rb, a + (r % 16) * rb, (size_t)rb);
			continue;
		}
		for (int64_t i = 0; i < n; i++)
			x[i] = (float)rand() / RAND_MAX - 0.5f;
		if (kern_quantize_row(type, x, a + r * rb, n) < 0) {
			free(x);
			return -EINVAL;
		}
	}
	for (int64_t c = 1; c < m->copies; c++)
		memcpy(a + c * m->stride, a, m->bytes);
	free(x);
	return 0;
}

void *mvbench_act(uint32_t type, enum kern_isa isa, int64_t n)
{
	const struct kern_type_info *ti = kern_type_info(type);
	kern_quantize_act_fn qa;
	float *x;
	void *act;

	if (!ti || !ti->is_weight || !kern_ops_isa(isa, type))
		return NULL;
	qa = kern_quantize_act_isa(isa, ti->act_type);
	x = malloc((size_t)n * sizeof(float));
	act = malloc(kern_act_bytes(ti->act_type, n));
	if (!x || !act) {
		free(x);
		free(act);
		return NULL;
	}
	for (int64_t i = 0; i < n; i++)
		x[i] = (float)rand() / RAND_MAX - 0.5f;
	if (qa)
		qa(x, act, n);
	else /* float weights take the float vector itself */
		memcpy(act, x, (size_t)n * sizeof(float));
	free(x);
	return act;
}

double mvbench_time(const struct mvbench_mat *m, const struct kern_ops *ops,
		    const void *act, float *y, const struct mvbench_run *r)
{
	double *t = malloc(sizeof(double) * (size_t)r->iters), med;
	int64_t start = now_ns(), next = 0;
	int done = 0;

	if (!t)
		return -1;
	for (int it = -r->warm; it < r->iters; it++) {
		int64_t t0 = 0, t1 = 0, c0 = next;

#pragma omp parallel num_threads(r->nth)
		{
			int ith = omp_get_thread_num(), nt = omp_get_num_threads();
			int64_t r0 = m->rows * ith / nt, r1 = m->rows * (ith + 1) / nt;

			/* single ends in a barrier: nobody starts before t0 */
#pragma omp single
			t0 = now_ns();
			for (int i = 0; i < r->reps; i++) {
				const uint8_t *w = m->base +
					(size_t)((c0 + i) % m->copies) * m->stride;

				ops->matvec(w, m->row_bytes, act, y, m->n, r0, r1);
			}
#pragma omp barrier
#pragma omp single
			t1 = now_ns();
		}
		next = (c0 + r->reps) % m->copies;
		if (it < 0)
			continue; /* warm-up */
		t[done++] = (double)(t1 - t0) * 1e-9 / r->reps;
		if (done >= r->min_iters && (now_ns() - start) * 1e-9 > r->max_s)
			break;
	}
	med = mvbench_median(t, done);
	free(t);
	return med;
}

/* ---- DRAM read ---------------------------------------------------------- */

/*
 * Sum of n uint64 (n a multiple of 32, p 64-byte aligned): four independent
 * accumulators so the adds never wait on each other; loads are the limit.
 * streams > 1: the n split into that many equal parts (multiples of 32),
 * read in turn 256 bytes of each a step, each part prefetched
 * SUM_AHEAD bytes ahead, as the matvecs read the rows of a pass
 * (kern_passes); what is left past them is read as one stream after.
 */
#define SUM_AHEAD 8192
#define SUM_STEP(LOAD, ADD, W)                                               \
	do {                                                                 \
		for (int k_ = 0; k_ < 32 / (W); k_ += 4) {                   \
			a0 = ADD(a0, LOAD(q_ + k_ * (W)));                   \
			a1 = ADD(a1, LOAD(q_ + (k_ + 1) * (W)));             \
			a2 = ADD(a2, LOAD(q_ + (k_ + 2) * (W)));             \
			a3 = ADD(a3, LOAD(q_ + (k_ + 3) * (W)));             \
		}                                                            \
	} while (0)
#define SUM_BODY(LOAD, ADD, W)                                               \
	do {                                                                 \
		size_t part_ = streams > 1 ? n / streams / 32 * 32 : 0;      \
		size_t done_ = part_ * streams;                              \
		for (size_t i = 0; i < part_; i += 32)                       \
			for (int s_ = 0; s_ < streams; s_++) {               \
				const uint64_t *q_ = p + s_ * part_ + i;     \
				for (int l_ = 0; l_ < 256; l_ += 64)         \
					_mm_prefetch((const char *)q_ +      \
							     SUM_AHEAD + l_, \
						     _MM_HINT_T0);           \
				SUM_STEP(LOAD, ADD, W);                      \
			}                                                    \
		for (size_t i = done_; i < n; i += 32) {                     \
			const uint64_t *q_ = p + i;                          \
			SUM_STEP(LOAD, ADD, W);                              \
		}                                                            \
	} while (0)

__attribute__((target("avx512f")))
static uint64_t sum_avx512(const uint64_t *p, size_t n, int streams)
{
	__m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;

	SUM_BODY(_mm512_load_si512, _mm512_add_epi64, 8);
	uint64_t lanes[8] __attribute__((aligned(64)));
	uint64_t s = 0;

	/* lanes summed as unsigned: gcc's _mm512_reduce_add_epi64 adds
	 * signed long longs, which wrap here and UBSan reports */
	a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
	_mm512_store_si512(lanes, a0);
	for (int i = 0; i < 8; i++)
		s += lanes[i];
	return s;
}

#define LD256(q) _mm256_load_si256((const __m256i *)(q))
/* same contract as sum_avx512, for CPUs without AVX-512 */
__attribute__((target("avx2")))
static uint64_t sum_avx2(const uint64_t *p, size_t n, int streams)
{
	__m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;

	SUM_BODY(LD256, _mm256_add_epi64, 4);
	uint64_t lanes[4] __attribute__((aligned(32)));

	a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
	_mm256_store_si256((__m256i *)lanes, a0);
	return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

#define LD64(q) (*(q))
#define ADD64(a, b) ((a) + (b))
/* the reference: same contract as sum_avx512 */
static uint64_t sum_scalar(const uint64_t *p, size_t n, int streams)
{
	uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;

	SUM_BODY(LD64, ADD64, 1);
	return a0 + a1 + a2 + a3;
}

mvbench_sum_fn mvbench_pick_sum(const char **name)
{
	const char *env = getenv("STRATA_KERNELS");
	int cap = !env || !*env ? 2 : !strcmp(env, "ref") ? 0
				   : !strcmp(env, "avx2") ? 1 : 2;

	if (cap >= 2 && __builtin_cpu_supports("avx512f")) {
		*name = "avx512";
		return sum_avx512;
	}
	if (cap >= 1 && __builtin_cpu_supports("avx2")) {
		*name = "avx2";
		return sum_avx2;
	}
	*name = "scalar";
	return sum_scalar;
}

double mvbench_dram_gbps(const uint64_t *buf, size_t n, int nth, int passes,
			 mvbench_sum_fn sum, int streams)
{
	size_t slice = n / (size_t)nth / 32 * 32;
	double best[64], *g = passes <= 64 ? best : malloc(sizeof(double) * passes);
	volatile uint64_t sink = 0;
	double med;

	if (!g || passes < 1 || slice == 0) {
		if (g != best)
			free(g);
		return -1;
	}
	sink += sum(buf, slice, streams); /* warm: TLB, pool, clocks */
	for (int p = 0; p < passes; p++) {
		int64_t t0 = now_ns();
		uint64_t s = 0;

#pragma omp parallel num_threads(nth) reduction(+ : s)
		s += sum(buf + slice * omp_get_thread_num(), slice, streams);
		g[p] = (double)(slice * nth * 8) / (now_ns() - t0);
		sink += s;
	}
	med = mvbench_median(g, passes);
	if (g != best)
		free(g);
	(void)sink;
	return med;
}

double mvbench_dram_best(const uint64_t *buf, size_t n, int nth, int passes,
			 mvbench_sum_fn sum, int *streams)
{
	double one = mvbench_dram_gbps(buf, n, nth, passes, sum, 1);
	double four = mvbench_dram_gbps(buf, n, nth, passes, sum, 4);

	if (one < 0 || four < 0)
		return -1;
	*streams = four > one ? 4 : 1;
	return four > one ? four : one;
}
