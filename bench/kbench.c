/*
 * kbench - matvec throughput of every weight type on every ISA this CPU
 * runs, on the two matrix shapes of a TinyLlama FFN (2048 rows of 5632 and
 * 5632 rows of 2048), with 1 and 2 OpenMP threads splitting the rows.
 *
 * Decode reads each weight once per token, so the figure that matters is
 * weights streamed from DRAM: each call reads the next of several copies
 * of the matrix laid out in an arena far larger than L3 (32 MiB), so no
 * call finds its matrix in cache. Reported: the median of N calls in
 * microseconds, and the weight bytes of one call over that time in GB/s.
 * The activation is quantized once, outside the timing; a call is timed
 * between two barriers inside the OpenMP region, so fork and join are
 * not in it (bench/mvbench.c, shared with bench/probe).
 *
 * -H measures the kernels' compute rate instead: the same shapes cut to
 * the rows that fit HOT_BYTES (well inside L2), one copy read again and
 * again, reported as GB/s of weights and GOP/s (2 rows cols / time), and
 * the one-thread rate over the one-thread DRAM read: under about 1.5 the
 * kernel, not memory, sets decode's speed.
 *
 * Both tables start with the DRAM read bandwidth measured in the same
 * run (bench/mvbench.h: a streaming sum with the widest vector the CPU
 * runs, capped by STRATA_KERNELS), 1 and 2 threads, so a GB/s figure can
 * be read against it.
 *
 * -M measures the batched product of prefill instead: n_tok (default 128)
 * activations times a 2048x2048, 2048x5632 and 5632x2048 matrix, swept in
 * row tiles over the threads as engine/forward.c does, once as a loop of
 * matvec calls per token (tiles of 24576 / row_bytes rows, the engine's
 * choice when a type has no matmul) and once by the type's matmul (tiles
 * as the engine sizes them, or of -R rows). Reported: us per product,
 * GOP/s (2 rows cols n_tok / time) and tokens per second through that one
 * matrix.
 */
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/mvbench.h"
#include "kernels/kern.h"
#include "memtier/arena.h"

struct bench_opts {
	int iters;          /* calls timed per measurement */
	double max_s;       /* ... or fewer once this much time is spent */
	size_t arena_bytes; /* where the copies of a matrix live */
	uint32_t types[KT_COUNT];
	int n_types;
	int isa_on[KERN_ISA_COUNT];
	int matmul;     /* -M: batched product instead of matvec */
	int64_t n_tok;  /* tokens of a batched product */
	int64_t mm_tile; /* rows per matmul call; 0: as engine/forward.c */
	int hot;        /* -H: the matrix in L2, read again (compute rate) */
	double dram_gbps[2]; /* DRAM read, 1 and 2 threads, this run */
};

#define HOT_BYTES (512 << 10) /* -H: a matrix at most this big */

static const int64_t shapes[][2] = { { 2048, 5632 }, { 5632, 2048 } };
static const int64_t mm_shapes[][2] = { { 2048, 2048 },
					{ 2048, 5632 },
					{ 5632, 2048 } };

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kbench [-H | -M [-T NTOK] [-R ROWS]] [-t TYPES] [-i ISAS] [-n ITERS]\n"
		"              [-m MIB] [-h]\n"
		"  matvec GB/s and us/call of each weight type and ISA, 1 and 2 threads,\n"
		"  on 2048x5632 and 5632x2048 (rows x columns) random matrices\n"
		"  -t TYPES  comma list of types (default: every weight type), e.g. q4_0,q8_0\n"
		"  -i ISAS   comma list of ref,avx2,avx512 (default: all this CPU runs)\n"
		"  -n ITERS  timed calls per figure, median reported (default 30; ref\n"
		"            stops early after 0.25 s)\n"
		"  -m MIB    arena the matrix copies rotate through (default 256, >> L3)\n"
		"  -H        in L2: the matrix cut to <= 512 KiB, read again and again\n"
		"            (the kernels' compute rate: GB/s, GOP/s, rate / DRAM read)\n"
		"  -M        batched product (prefill): matmul vs a matvec loop per token\n"
		"            on 2048x2048, 2048x5632, 5632x2048 (default ISAs avx2,avx512)\n"
		"  -T NTOK   tokens of the batched product (default 128)\n"
		"  -R ROWS   rows per matmul call (default: as the engine, the fewest\n"
		"            tiles of <= 512 rows, a multiple of 32, split evenly)\n");
}

static int parse_args(int argc, char **argv, struct bench_opts *o)
{
	char *list = NULL, *isas = NULL, *tok, *save;
	int c;

	*o = (struct bench_opts){ .iters = 30, .max_s = 0.25,
				  .arena_bytes = 256u << 20, .n_tok = 128 };
	while ((c = getopt(argc, argv, "t:i:n:m:MHT:R:h")) != -1) {
		switch (c) {
		case 'M': o->matmul = 1; break;
		case 'H': o->hot = 1; break;
		case 'T': o->n_tok = atol(optarg); break;
		case 'R': o->mm_tile = atol(optarg); break;
		case 't': list = optarg; break;
		case 'i': isas = optarg; break;
		case 'n': o->iters = atoi(optarg); break;
		case 'm': o->arena_bytes = (size_t)atoi(optarg) << 20; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -EINVAL;
		}
	}
	if (o->iters < 1 || o->arena_bytes < (64u << 20) || o->n_tok < 1 ||
	    o->mm_tile < 0) {
		fprintf(stderr, "kbench: need -n >= 1, -m >= 64, -T >= 1, -R >= 0\n");
		return -EINVAL;
	}
	if (o->hot && o->matmul) {
		fprintf(stderr, "kbench: -H and -M are two different tables; "
				"pick one\n");
		return -EINVAL;
	}
	for (uint32_t t = 0; !list && t < KT_COUNT; t++)
		if (kern_type_info(t) && kern_type_info(t)->is_weight)
			o->types[o->n_types++] = t;
	for (tok = list ? strtok_r(list, ",", &save) : NULL; tok;
	     tok = strtok_r(NULL, ",", &save)) {
		uint32_t t = mvbench_type_by_name(tok);

		if (t == KT_COUNT) {
			fprintf(stderr, "kbench: unknown weight type '%s'\n", tok);
			return -EINVAL;
		}
		o->types[o->n_types++] = t;
	}
	for (int i = 0; i < KERN_ISA_COUNT; i++)
		o->isa_on[i] = !isas && (!o->matmul || i != KERN_ISA_REF);
	for (tok = isas ? strtok_r(isas, ",", &save) : NULL; tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int i = 0;

		while (i < KERN_ISA_COUNT && strcmp(kern_isa_name(i), tok))
			i++;
		if (i == KERN_ISA_COUNT) {
			fprintf(stderr, "kbench: unknown ISA '%s'\n", tok);
			return -EINVAL;
		}
		o->isa_on[i] = 1;
	}
	return 0;
}

/* One type on every ISA: one output line per ISA. */
static int bench_type(uint32_t type, uint8_t *arena, const struct bench_opts *o)
{
	const struct kern_type_info *ti = kern_type_info(type);
	double us[KERN_ISA_COUNT][2][2] = { { { 0 } } };
	size_t rb[2];

	int64_t rows[2];

	for (int s = 0; s < 2; s++) {
		struct mvbench_mat m;
		int64_t rbs = kern_row_bytes(type, shapes[s][1]);
		/* -H: the rows that fit HOT_BYTES, a multiple of 8, one copy */
		int64_t hr = rbs > 0 ? HOT_BYTES / rbs / 8 * 8 : 0;
		float *y = malloc((size_t)shapes[s][0] * sizeof(float));
		int rc;

		rows[s] = !o->hot ? shapes[s][0] : hr < 8 ? 8 : hr;
		rc = mvbench_fill(&m, arena,
				  o->hot ? (size_t)(rows[s] * rbs) : o->arena_bytes,
				  type, rows[s], shapes[s][1]);

		if (!y || rc) {
			free(y);
			return rc ? rc : -ENOMEM;
		}
		rb[s] = m.row_bytes;
		for (int isa = 0; isa < KERN_ISA_COUNT; isa++) {
			const struct kern_ops *ops = kern_ops_isa(isa, type);
			void *act;

			if (!o->isa_on[isa] || !ops)
				continue;
			if (!(act = mvbench_act(type, isa, m.n))) {
				free(y);
				return -ENOMEM;
			}
			for (int th = 0; th < 2; th++) {
				struct mvbench_run run = {
					.nth = th + 1, .reps = 1, .warm = 2,
					.iters = o->iters, .min_iters = 5,
					.max_s = o->max_s,
				};
				us[isa][s][th] = 1e6 * mvbench_time(&m, ops, act,
								    y, &run);
			}
			free(act);
		}
		free(y);
	}
	for (int isa = 0; isa < KERN_ISA_COUNT; isa++) {
		if (!us[isa][0][0]) {
			if (o->isa_on[isa] && kern_isa_supported(isa))
				printf("%-5s %-6s  no kernels linked\n", ti->name,
				       kern_isa_name(isa));
			continue;
		}
		printf("%-5s %-6s", ti->name, kern_isa_name(isa));
		for (int s = 0; s < 2; s++)
			for (int th = 0; th < 2; th++) {
				double gbps = (double)rows[s] * rb[s] /
					      (us[isa][s][th] * 1e3);

				if (o->hot)
					printf(" %6.1f %6.1f", gbps,
					       2.0 * rows[s] * shapes[s][1] /
						       (us[isa][s][th] * 1e3));
				else
					printf(" %8.1f %6.1f", us[isa][s][th],
					       gbps);
			}
		if (o->hot) /* the larger shape's one-thread rate */
			printf("  %5.2f", (double)rows[0] * rb[0] /
						  (us[isa][0][0] * 1e3) /
						  o->dram_gbps[0]);
		printf("\n");
	}
	fflush(stdout);
	return 0;
}

/* Median seconds of one batched product over all rows with nth threads
 * (row tiles split statically, as the engine does): by ops->matmul in
 * tiles of o->mm_tile rows if use_mm, else by a matvec per token in tiles
 * of 24576 / rb rows. y is n_tok rows of ldy floats. */
static double time_matmul(const struct kern_ops *ops, int use_mm,
			  const struct mvbench_mat *m, const uint8_t *act,
			  size_t act_stride, float *y, int64_t ldy, int nth,
			  const struct bench_opts *o)
{
	int64_t rows = m->rows, n = m->n;
	size_t rb = m->row_bytes;
	double *t = malloc(sizeof(double) * (size_t)o->iters), start, med;
	/* the engine's tiles (engine/forward.c, matmul_q8) */
	int64_t n_split = (rows + 512LL * nth - 1) / (512LL * nth) * nth;
	int64_t tile = ((rows + n_split - 1) / n_split + 31) / 32 * 32;

	tile = !use_mm ? (int64_t)(24576 / rb) / 4 * 4
		       : o->mm_tile ? o->mm_tile : tile;
	int64_t n_tiles;
	int done = 0;

	if (!t)
		return -1;
	tile = tile < 4 ? 4 : tile;
	n_tiles = (rows + tile - 1) / tile;
	start = now_s();
	for (int it = -1; it < o->iters; it++) {
		const uint8_t *w = m->base + (size_t)((it + 1) % m->copies) *
						     m->stride;
		double t0 = now_s();

#pragma omp parallel for num_threads(nth) schedule(static)
		for (int64_t tl = 0; tl < n_tiles; tl++) {
			int64_t r0 = tl * tile;
			int64_t r1 = r0 + tile < rows ? r0 + tile : rows;

			if (use_mm)
				ops->matmul(w, rb, act, act_stride, y, ldy, n,
					    r0, r1, o->n_tok);
			else
				for (int64_t i = 0; i < o->n_tok; i++)
					ops->matvec(w, rb, act + i * act_stride,
						    y + i * ldy, n, r0, r1);
		}
		if (it < 0)
			continue; /* warm-up */
		t[done++] = now_s() - t0;
		if (done >= 3 && now_s() - start > o->max_s)
			break;
	}
	med = mvbench_median(t, done);
	free(t);
	return med;
}

/* -M: one type on every ISA with a matmul and every shape, 1 and 2
 * threads, one line each. */
static int bench_matmul_type(uint32_t type, uint8_t *arena,
			     const struct bench_opts *o)
{
	const struct kern_type_info *ti = kern_type_info(type);
	int rc = 0;

	for (int s = 0; s < 3 && !rc; s++) {
		int64_t rows = mm_shapes[s][0], n = mm_shapes[s][1];
		struct mvbench_mat m;
		size_t as = (kern_act_bytes(ti->act_type, n) + 63) / 64 * 64;
		float *x = malloc((size_t)n * sizeof(float));
		float *y = malloc((size_t)o->n_tok * rows * sizeof(float));
		uint8_t *act = malloc(as * (size_t)o->n_tok);

		rc = mvbench_fill(&m, arena, o->arena_bytes, type, rows, n);
		if (!rc && (!x || !y || !act))
			rc = -ENOMEM;
		for (int isa = 0; isa < KERN_ISA_COUNT && !rc; isa++) {
			const struct kern_ops *ops = kern_ops_isa(isa, type);
			kern_quantize_act_fn qa =
				kern_quantize_act_isa(isa, ti->act_type);

			if (!o->isa_on[isa] || !ops || !qa)
				continue;
			for (int64_t i = 0; i < o->n_tok; i++) {
				for (int64_t j = 0; j < n; j++)
					x[j] = (float)rand() / RAND_MAX - 0.5f;
				qa(x, act + i * as, n);
			}
			for (int th = 1; th <= 2; th++) {
				double gop = 2.0 * rows * n * o->n_tok * 1e-9;
				double tl = time_matmul(ops, 0, &m, act, as, y,
							rows, th, o);
				double tm = ops->matmul
					? time_matmul(ops, 1, &m, act, as, y,
						      rows, th, o)
					: 0;

				printf("%-5s %-6s %5lldx%-5lld %d  %9.0f %6.1f "
				       "%7.0f", ti->name, kern_isa_name(isa),
				       (long long)rows, (long long)n, th,
				       tl * 1e6, gop / tl, o->n_tok / tl);
				if (tm > 0)
					printf("  %9.0f %6.1f %7.0f  %5.2fx\n",
					       tm * 1e6, gop / tm, o->n_tok / tm,
					       tl / tm);
				else
					printf("  no matmul\n");
				fflush(stdout);
			}
		}
		free(x);
		free(y);
		free(act);
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct bench_opts o;
	struct arena mem;
	uint8_t *arena;
	char msg[160];
	int rc = kern_init();

	if (rc < 0) {
		fprintf(stderr, "kbench: kern_init: STRATA_KERNELS names an ISA "
				"this CPU cannot run\n");
		return 1;
	}
	if (parse_args(argc, argv, &o) < 0)
		return 2;
	for (int i = 0; i < KERN_ISA_COUNT; i++) {
		if (o.isa_on[i] && !kern_isa_supported(i)) {
			printf("skipping %s: not supported by this CPU\n",
			       kern_isa_name(i));
			o.isa_on[i] = 0;
		}
	}
	/* huge pages, first touch here, outside timing */
	struct arena_config ac = {.bytes = o.arena_bytes, .huge_pages = true,
				  .node = -1, .touch = true};
	if (arena_map(&mem, &ac, msg, sizeof(msg)) < 0) {
		fprintf(stderr, "kbench: arena of %zu MiB: %s\n",
			o.arena_bytes >> 20, msg);
		return 1;
	}
	arena = mem.base;
	{
		const char *sum_name;
		mvbench_sum_fn sum = mvbench_pick_sum(&sum_name);
		int st[2];

		for (int th = 0; th < 2; th++)
			o.dram_gbps[th] = mvbench_dram_best(
				(const uint64_t *)arena, o.arena_bytes / 8,
				th + 1, 5, sum, &st[th]);
		printf("DRAM read (%s sum over %zu MiB, the faster of 1 and 4 "
		       "streams a thread, median of 5): 1 thread %.1f GB/s "
		       "(%d), 2 threads %.1f GB/s (%d)\n", sum_name,
		       o.arena_bytes >> 20, o.dram_gbps[0], st[0],
		       o.dram_gbps[1], st[1]);
	}

	if (o.matmul) {
		printf("kbench -M: %lld tokens, median of <= %d products (>= 3, "
		       "<= %.2f s); matvec loop in tiles of 24576 / row_bytes "
		       "rows, matmul in tiles of %s\n",
		       (long long)o.n_tok, o.iters, o.max_s,
		       o.mm_tile ? "-R rows" : "the engine's size");
		printf("%-12s %-11s %-2s  %-24s  %-24s\n", "type  isa",
		       "rows x cols", "th", "   matvec loop", "   matmul");
		printf("%-12s %-11s %-2s  %9s %6s %7s  %9s %6s %7s  %s\n", "",
		       "", "", "us", "GOP/s", "tok/s", "us", "GOP/s", "tok/s",
		       "speedup");
		for (int i = 0; i < o.n_types && rc >= 0; i++) {
			rc = bench_matmul_type(o.types[i], arena, &o);
			if (rc < 0)
				fprintf(stderr, "kbench: %s: %s\n",
					kern_type_info(o.types[i])->name,
					strerror(-rc));
		}
		arena_unmap(&mem);
		return rc < 0;
	}
	if (o.hot) {
		printf("kbench -H: median of %d calls, each matrix one copy of "
		       "<= %d KiB read again (in L2)\n", o.iters, HOT_BYTES >> 10);
		printf("%-12s %-27s %-27s\n", "", "<= 2048 rows x 5632",
		       "<= 5632 rows x 2048");
		printf("%-12s %-13s %-13s %-13s %-13s %s\n", "type  isa",
		       "  1 thread", "  2 threads", "  1 thread", "  2 threads",
		       "L2 1t /");
		printf("%-12s", "");
		for (int i = 0; i < 4; i++)
			printf(" %6s %6s", "GB/s", "GOP/s");
		printf("  DRAM 1t\n");
	} else {
		printf("kbench: median of %d calls (ref: >= 5, <= %.2f s), "
		       "matrix copies rotating through %zu MiB\n",
		       o.iters, o.max_s, o.arena_bytes >> 20);
		printf("%-12s %-31s %-31s\n", "", "2048 rows x 5632",
		       "5632 rows x 2048");
		printf("%-12s %-15s %-15s %-15s %-15s\n", "type  isa",
		       "  1 thread", "  2 threads", "  1 thread", "  2 threads");
		printf("%-12s", "");
		for (int i = 0; i < 4; i++)
			printf(" %8s %6s", "us", "GB/s");
		printf("\n");
	}
	for (int i = 0; i < o.n_types; i++) {
		rc = bench_type(o.types[i], arena, &o);
		if (rc < 0) {
			fprintf(stderr, "kbench: %s: %s\n",
				kern_type_info(o.types[i])->name, strerror(-rc));
			break;
		}
	}
	arena_unmap(&mem);
	return rc < 0;
}
