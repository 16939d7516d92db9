/*
 * kern_impl.h - private to kernels/: how the ISA files plug into dispatch.
 *
 * kern.c builds one table per ISA: it starts as a copy of the reference
 * table and each ISA file's fill function overwrites the slots it
 * implements. A slot an ISA file leaves alone stays the reference kernel.
 */
#ifndef STRATA_KERN_IMPL_H
#define STRATA_KERN_IMPL_H

#include "kern.h"

/* sum a[i] * b[i] over n floats (any n >= 0, any alignment): the float
 * dot behind kern_matmul_f32 (ISA versions: float lanes, summed at the
 * end; the reference: in double, products exact) */
typedef double (*kern_dot_f32_fn)(const float *a, const float *b, int64_t n);

struct kern_table {
	struct kern_ops ops[KT_COUNT];              /* by weight type */
	kern_quantize_act_fn quantize_act[KT_COUNT]; /* by act type */
	kern_dot_f32_fn dot_f32;
};

/* kern_ref.c: the specification (32-element formats, float types);
 * kern_ref_k.c: the K-quants. kern_fill_ref calls kern_fill_ref_k. */
void kern_fill_ref(struct kern_table *t);
void kern_fill_ref_k(struct kern_table *t);

/* Reference quantizers f32 -> weight type behind kern_quantize_row():
 * kern_ref.c handles the float types and the 32-element formats,
 * kern_ref_k.c the K-quants. n is a multiple of the block size. Each
 * returns 0, or -EINVAL for a type it does not produce. */
int kern_quantize_row_ref(uint32_t type, const float *src, void *dst,
			  int64_t n);
int kern_quantize_row_k(uint32_t type, const float *src, void *dst,
			int64_t n);

/* kern_avx2.c / kern_avx512.c: 32-element formats and float types */
void kern_fill_avx2(struct kern_table *t);
void kern_fill_avx512(struct kern_table *t);

/* kern_avx2_k.c / kern_avx512_k.c: K-quants (Q4_K, Q5_K, Q6_K, Q8_K) */
void kern_fill_avx2_k(struct kern_table *t);
void kern_fill_avx512_k(struct kern_table *t);

/*
 * The passes of a matvec over rows [r0, r1), R rows a pass: pass i takes
 * rows r0 + i + k q (k < R) for q = (r1 - r0) / R, one row from each of R
 * equal parts of the range, so that a pass reads R sequential streams far
 * apart (in separate pages) rather than R neighbouring rows. The rows past
 * R q (fewer than R) come one a pass. Each row's arithmetic is the same
 * whichever pass holds it: a row's bits do not depend on [r0, r1).
 * Measured with bench/kbench from DRAM, 2026-12-08, Xeon model 167 (2
 * vCPU), forced avx2: q4_0 on 2048 x 5632 went 25.8 -> 30.6 GB/s at two
 * threads and 13.0 -> 15.6 at one, on 5632 x 2048 23.4 -> 30.4, q8_0
 * 29.2 -> 31.8 and 26.7 -> 31.3, against neighbouring rows (4 a pass, or
 * 2 for rows under 3 KiB); the one-stream DRAM sum reads 15.7 and 31.5.
 *
 *	struct kern_passes ps = kern_passes(r0, r1, R);
 *	int64_t r, q;
 *	for (int n; (n = kern_pass_next(&ps, &r, &q));)
 *		n rows r, r + q, ... (y + r with stride q)
 */
struct kern_passes {
	int64_t r0, q, i, tail, r1;
	int R;
};

static inline struct kern_passes kern_passes(int64_t r0, int64_t r1, int R)
{
	int64_t q = r1 > r0 ? (r1 - r0) / R : 0;

	return (struct kern_passes){ r0, q, 0, r0 + q * R, r1, R };
}

/* The next pass: its first row in *row, the rows between its rows in
 * *pitch; returns its row count (R, or 1 past R q), 0 when done. */
static inline int kern_pass_next(struct kern_passes *ps, int64_t *row,
				 int64_t *pitch)
{
	if (ps->i < ps->q) {
		*row = ps->r0 + ps->i++;
		*pitch = ps->q;
		return ps->R;
	}
	if (ps->tail < ps->r1) {
		*row = ps->tail++;
		*pitch = 1;
		return 1;
	}
	return 0;
}

/* How far ahead a matvec that works on `rows` rows at a time prefetches,
 * in bytes: whole passes of rows, so the target is the same offset in a
 * later row, and at least KERN_PREFETCH_MIN bytes, so that short rows are
 * still fetched in time. The rows of a pass are separate short streams,
 * which the hardware prefetcher alone follows poorly. */
#ifndef KERN_PREFETCH_MIN
#define KERN_PREFETCH_MIN 8192
#endif
static inline size_t kern_prefetch_ahead(int rows, size_t row_bytes)
{
	size_t pass = (size_t)rows * row_bytes;

	return pass ? (KERN_PREFETCH_MIN + pass - 1) / pass * pass : 0;
}

/* Unpack the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K
 * block's scales[12] (shared by all ISA files). */
static inline void kern_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d,
					 uint8_t *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
	}
}

#endif
