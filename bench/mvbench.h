/*
 * mvbench.h - timing of the decode matvec kernels, shared by bench/kbench
 * (a table of every type and ISA) and bench/probe (the hardware profile's
 * kernel figures).
 *
 * A matrix is laid out as several copies in a caller's arena so that each
 * call can read a copy the previous calls did not leave in cache (weights
 * streamed from DRAM, as decode reads them), or as one copy read again
 * and again (weights already in cache: the kernel's compute rate).
 * Timing runs inside one OpenMP region per sample, threads splitting the
 * rows evenly as the engine's units do, between two barriers, so that a
 * sample of short calls is not a measure of fork and join.
 */
#ifndef STRATA_MVBENCH_H
#define STRATA_MVBENCH_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kern.h"

/* rows x n elements of one weight type, copies x stride bytes at base */
struct mvbench_mat {
	uint32_t type;
	int64_t rows, n;
	size_t row_bytes;
	size_t bytes;   /* of one copy: rows x row_bytes */
	size_t stride;  /* between copies: bytes rounded up to 4 KiB */
	int64_t copies; /* >= 1 */
	uint8_t *base;
};

/*
 * Fill arena with as many copies of a rows x n random matrix of type as
 * fit (16 distinct random rows repeated: speed does not depend on the
 * values), describing it in *m. Returns 0, -EINVAL if the type cannot
 * hold rows of n elements or one copy does not fit, -ENOMEM. Not
 * thread-safe (rand()).
 */
int mvbench_fill(struct mvbench_mat *m, void *arena, size_t arena_bytes,
		 uint32_t type, int64_t rows, int64_t n);

/* A random activation of n elements for type's matvec on isa (quantized
 * as decode does, once), malloc'd: the caller frees it. NULL if the
 * type, the ISA or memory is missing. */
void *mvbench_act(uint32_t type, enum kern_isa isa, int64_t n);

struct mvbench_run {
	int nth;       /* threads splitting the rows */
	int reps;      /* calls per sample, each on the next copy (>= 1) */
	int warm;      /* untimed samples first */
	int iters;     /* samples at most ... */
	int min_iters; /* ... and at least, ... */
	double max_s;  /* ... stopping once this much time is spent */
};

/* Median seconds of one call of ops->matvec over all rows of m, with
 * y[rows]; -1 if out of memory. The caller pins threads if it wants. */
double mvbench_time(const struct mvbench_mat *m, const struct kern_ops *ops,
		    const void *act, float *y, const struct mvbench_run *r);

/* median of v[0..n), n >= 1 (sorts v in place) */
double mvbench_median(double *v, int n);

/* weight type by its ggml name ("q4_0", "q6_K"); KT_COUNT if unknown */
uint32_t mvbench_type_by_name(const char *name);

/*
 * DRAM read: a sum of n uint64 at p (n a multiple of 32, p 64-byte
 * aligned) with four independent accumulators, so loads are the limit;
 * streams > 1 reads n as that many far-apart parts in turn, each
 * prefetched ahead, the way the matvecs read a pass of rows.
 * mvbench_pick_sum gives the widest one this CPU runs (cpuid), no wider
 * than STRATA_KERNELS allows ("avx2": AVX2, "ref": scalar), and its name
 * ("avx512", "avx2", "scalar") in *name.
 */
typedef uint64_t (*mvbench_sum_fn)(const uint64_t *p, size_t n, int streams);
mvbench_sum_fn mvbench_pick_sum(const char **name);

/* GB/s of nth threads each summing its own slice of buf (n uint64, the
 * slices rounded down to 32) in `streams` streams, median of `passes`,
 * after one warm pass. The caller pins the threads if it wants and
 * touches buf first. -1 on bad arguments or no memory. */
double mvbench_dram_gbps(const uint64_t *buf, size_t n, int nth, int passes,
			 mvbench_sum_fn sum, int streams);

/* The faster of one stream and four a thread (which in *streams): the
 * DRAM read rate the rooflines divide by. -1 as above. */
double mvbench_dram_best(const uint64_t *buf, size_t n, int nth, int passes,
			 mvbench_sum_fn sum, int *streams);

#endif
