/*
 * kern_avx512_k.c - AVX-512 (F, BW, VL, DQ, VNNI) K-quant kernels: matvec
 * of Q4_K, Q5_K and Q6_K weights against a Q8_K activation, and the Q8_K
 * activation quantizer, plus dequantization (bit-identical to the
 * reference) for the prefill path. Compiled with the AVX512 flags of the
 * Makefile; only called when kern_init found the CPU able to run it.
 *
 * Decode is memory-bound, so the loops are shaped to stream weights:
 *  - KROWS rows a pass, one from each of KROWS parts of the row range
 *    (kern_passes), each prefetched kern_prefetch_ahead(1, row_bytes)
 *    ahead: KROWS streams far apart. An earlier shape interleaved KROWS
 *    neighbouring rows, which the prefetchers followed poorly (Q6_K ~30
 *    GB/s one core and ~37 two, against ~40 and ~50 as one stream, on a
 *    faster host), so it went to one row at a time; four far-apart rows
 *    beat that one stream on a Xeon model 167 (2026-12-08, two threads,
 *    DRAM: Q4_K 25.4 -> 32.7 GB/s, Q6_K 27.0 -> 33.2). Q4_K/Q5_K prepare
 *    the activation blocks (loads and shuffles) once a call into a stack
 *    buffer that stays in L1; rows longer than that buffer prepare them
 *    once a pass;
 *  - one float accumulator per row, reduced once at the end;
 *  - per 64 weight bytes: vpmaddubsw (u8 weight x s8 activation -> s16
 *    pairs) then vpdpwssd against the sub-block scales, so each block ends
 *    as one int32 vector per row, converted and scaled by d once;
 *  - the integer sums are exactly those of kern_ref_k.c; only the order
 *    of the float additions differs.
 *
 * Prefill (several tokens against the same weights) has its own batched
 * product, matmul_q*_k, at the end of the file: compute-bound instead of
 * memory-bound, with its own layout (see there).
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "kernels/kern_impl.h"

/* rows per pass: they share the activation loads and shuffles */
#define KROWS 4

/* Prefetch every line of the bsz bytes at address at, which may lie past
 * the end of the matrix (a prefetch never faults; the address is formed
 * as an integer so that no out-of-range pointer exists). */
static inline __attribute__((always_inline)) void
prefetch_block(uintptr_t at, size_t bsz)
{
	for (size_t o = 0; o < bsz; o += 64)
		_mm_prefetch((const char *)(at + o), _MM_HINT_T0);
	_mm_prefetch((const char *)(at + bsz - 1), _MM_HINT_T0);
}

/* Blocks are addressed as bytes plus offsetof, never through a struct
 * pointer, and scalars are read with memcpy: any alignment is fine. */
static inline uint32_t load_u32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline float load_f32(const void *p)
{
	float v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline float load_f16(const void *p)
{
	kern_f16 v;
	memcpy(&v, p, sizeof(v));
	return _cvtsh_ss(v);
}

/*
 * Decode the 12 packed scale bytes of a Q4_K/Q5_K block (all j of
 * kern_get_scale_min_k4 at once): sc[0..7] into the bytes of *sc, m[0..7]
 * into *mn. Done in general registers, which the vector loop leaves idle.
 */
static inline __attribute__((always_inline)) void
unpack_scales_k4(const uint8_t *s, uint64_t *sc, uint64_t *mn)
{
	uint32_t u0 = load_u32(s), u1 = load_u32(s + 4), u2 = load_u32(s + 8);

	*sc = (u0 & 0x3f3f3f3f) |
	      (uint64_t)((u2 & 0x0f0f0f0f) | ((u0 >> 2) & 0x30303030)) << 32;
	*mn = (u1 & 0x3f3f3f3f) |
	      (uint64_t)(((u2 >> 4) & 0x0f0f0f0f) | ((u1 >> 2) & 0x30303030))
		      << 32;
}

/* vpshufb control that turns 8 bytes (repeated in each 64-bit half of a
 * 128-bit lane) into int16 lanes: byte lo in 32-bit lanes 0-7 of the
 * vector, byte hi in lanes 8-15, both halves of each 32-bit lane alike */
#define SEL2(lo, hi)                                                        \
	_mm512_set_epi32(SEL1(hi), SEL1(hi), SEL1(hi), SEL1(hi), SEL1(hi),  \
			 SEL1(hi), SEL1(hi), SEL1(hi), SEL1(lo), SEL1(lo),  \
			 SEL1(lo), SEL1(lo), SEL1(lo), SEL1(lo), SEL1(lo),  \
			 SEL1(lo))
#define SEL1(j) ((int)(0x80008000u | (j) | (j) << 16))

/*
 * One Q8_K block prepared once for all rows of a pass.
 * q[k]: a 64-byte load of Q4_K qs holds sub-blocks (2c, 2c+2) in its low
 *   nibbles and (2c+1, 2c+3) in its high nibbles, so q[k] pairs the
 *   matching 32-byte halves of the activation;
 * bs: (bsums[2j], bsums[2j+1]) in int32 lane 2j+1, zero in even lanes;
 * ad: a.d in even lanes, -a.d in odd lanes (see step_k4).
 */
struct act_k4 {
	__m512i q[4];
	__m512i bs;
	__m512 ad;
};

static inline __attribute__((always_inline)) void
prep_act_k4(const uint8_t *a, struct act_k4 *p)
{
	const __m512i bs_idx = _mm512_set_epi32(7, 0, 6, 0, 5, 0, 4, 0,
						3, 0, 2, 0, 1, 0, 0, 0);
	const uint8_t *qs = a + offsetof(struct block_q8_k, qs);
	__m512i l0 = _mm512_loadu_si512(qs);
	__m512i l1 = _mm512_loadu_si512(qs + 64);
	__m512i l2 = _mm512_loadu_si512(qs + 128);
	__m512i l3 = _mm512_loadu_si512(qs + 192);

	p->q[0] = _mm512_shuffle_i64x2(l0, l1, 0x44); /* a[0:32] a[64:96] */
	p->q[1] = _mm512_shuffle_i64x2(l0, l1, 0xEE); /* a[32:64] a[96:128] */
	p->q[2] = _mm512_shuffle_i64x2(l2, l3, 0x44);
	p->q[3] = _mm512_shuffle_i64x2(l2, l3, 0xEE);
	p->bs = _mm512_maskz_permutexvar_epi32(
		0xAAAA, bs_idx,
		_mm512_castsi256_si512(
			_mm256_loadu_si256((const __m256i *)(
				a + offsetof(struct block_q8_k, bsums)))));
	p->ad = _mm512_castsi512_ps(_mm512_xor_si512(
		_mm512_castps_si512(_mm512_set1_ps(
			load_f32(a + offsetof(struct block_q8_k, d)))),
		_mm512_set1_epi64((long long)0x8000000000000000ull)));
}

/*
 * One Q4_K/Q5_K block of one row, w[k] its u8 values laid out as act.q[k].
 * Integer part: vpmaddubsw (q x a -> s16 pairs) then vpmaddwd/vpdpwssd
 * against the lane's sub-block scale as an (s, s) int16 pair, made by
 * vpshufb straight from the scale bytes; the 16 lanes are folded pairwise
 * into the even lanes, and the min terms m[j] * (bsums[2j] + bsums[2j+1])
 * land in the odd lanes. One conversion and one FMA against
 * [d, dmin] * [a.d, -a.d] then finish the block.
 */
static inline __attribute__((always_inline)) __m512
dot_k4(const __m512i w[4], const struct act_k4 *act, const uint8_t *scales,
       const uint8_t *d, __m512 acc)
{
	/* m[j] as an int16 pair into 32-bit lane 2j + 1, zero elsewhere */
	const __m512i sel_m = _mm512_set_epi32(
		SEL1(7), -1, SEL1(6), -1, SEL1(5), -1, SEL1(4), -1, SEL1(3), -1,
		SEL1(2), -1, SEL1(1), -1, SEL1(0), -1);
	uint64_t sc8, mn8;

	unpack_scales_k4(scales, &sc8, &mn8);
	__m512i sc = _mm512_set1_epi64((long long)sc8);
	__m512i mn = _mm512_set1_epi64((long long)mn8);

	/* products k hold sub-blocks (0, 2), (1, 3), (4, 6), (5, 7) */
	__m512i s = _mm512_madd_epi16(_mm512_maddubs_epi16(w[0], act->q[0]),
				      _mm512_shuffle_epi8(sc, SEL2(0, 2)));
	s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(w[1], act->q[1]),
				_mm512_shuffle_epi8(sc, SEL2(1, 3)));
	s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(w[2], act->q[2]),
				_mm512_shuffle_epi8(sc, SEL2(4, 6)));
	s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(w[3], act->q[3]),
				_mm512_shuffle_epi8(sc, SEL2(5, 7)));

	/* even lanes: s[2i] + s[2i+1]; odd lanes: 0, then the min terms */
	s = _mm512_maskz_add_epi32(0x5555, s, _mm512_srli_epi64(s, 32));
	s = _mm512_dpwssd_epi32(s, act->bs, _mm512_shuffle_epi8(mn, sel_m));

	/* [d, dmin] in every lane pair, straight from a broadcast load */
	__m512 dm = _mm512_cvtph_ps(_mm256_set1_epi32((int)load_u32(d)));
	return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s),
			       _mm512_mul_ps(dm, act->ad), acc);
}

/* Unpack the 4-bit values of a Q4_K block into four u8 vectors */
static inline __attribute__((always_inline)) void
unpack_q4(const uint8_t *qs, __m512i w[4])
{
	const __m512i m4 = _mm512_set1_epi8(0x0F);
	__m512i q0 = _mm512_loadu_si512(qs);
	__m512i q1 = _mm512_loadu_si512(qs + 64);

	w[0] = _mm512_and_si512(q0, m4);
	w[1] = _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4);
	w[2] = _mm512_and_si512(q1, m4);
	w[3] = _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4);
}

/* the byte-mask of qh bits lo (first 256 bits) and hi (last 256 bits) */
static inline __attribute__((always_inline)) __m512i bits2(char lo, char hi)
{
	return _mm512_inserti64x4(_mm512_set1_epi8(lo), _mm256_set1_epi8(hi),
				  1);
}

/* Q5_K: add the fifth bit. Sub-block j's bit of element l is bit j of
 * qh[l]; the 32 qh bytes are broadcast to both halves of a vector and
 * tested against the bit of the sub-block each half holds (w[k] holds
 * sub-blocks (k & 1) + 4 (k >> 1) + {0, 2}). */
static inline __attribute__((always_inline)) void
unpack_q5(const uint8_t *qs, const uint8_t *qh, __m512i w[4])
{
	const __m512i b16 = _mm512_set1_epi8(0x10);
	const __m512i h = _mm512_broadcast_i64x4(
		_mm256_loadu_si256((const __m256i *)qh));
	__mmask64 k0 = _mm512_test_epi8_mask(h, bits2(0x01, 0x04));
	__mmask64 k1 = _mm512_test_epi8_mask(h, bits2(0x02, 0x08));
	__mmask64 k2 = _mm512_test_epi8_mask(h, bits2(0x10, 0x40));
	__mmask64 k3 = _mm512_test_epi8_mask(h, bits2(0x20, (char)0x80));

	unpack_q4(qs, w);
	w[0] = _mm512_mask_add_epi8(w[0], k0, w[0], b16);
	w[1] = _mm512_mask_add_epi8(w[1], k1, w[1], b16);
	w[2] = _mm512_mask_add_epi8(w[2], k2, w[2], b16);
	w[3] = _mm512_mask_add_epi8(w[3], k3, w[3], b16);
}

/*
 * One Q4_K (q5 = 0) or Q5_K (q5 = 1) block of one row against the shared
 * activation block; returns acc + its contribution.
 */
static inline __attribute__((always_inline)) __m512
step_k4(const uint8_t *blk, const struct act_k4 *act, const int q5,
	__m512 acc)
{
	__m512i q[4];

	if (q5)
		unpack_q5(blk + offsetof(struct block_q5_k, qs),
			  blk + offsetof(struct block_q5_k, qh), q);
	else
		unpack_q4(blk + offsetof(struct block_q4_k, qs), q);
	/* d, dmin and scales sit at the same offsets in both block types */
	return dot_k4(q, act, blk + offsetof(struct block_q4_k, scales),
		      blk + offsetof(struct block_q4_k, d), acc);
}

/*
 * nr (1..KROWS) rows of Q4_K or Q5_K starting at w, pitch bytes apart, nb
 * blocks each, into y[0], y[ys], ... Always inlined with constant nr and
 * q5 so that the per-row accumulators stay in registers. The activation
 * block is prepared here (pa == NULL) or comes prepared from pa[]. Each
 * row's lines ahead bytes on are prefetched.
 */
static inline __attribute__((always_inline)) void
rows_k4(const uint8_t *w, size_t pitch, size_t ahead, const uint8_t *a,
	const struct act_k4 *pa, int64_t nb, float *y, int64_t ys,
	const int nr, const int q5)
{
	const size_t bsz = q5 ? sizeof(struct block_q5_k) :
				sizeof(struct block_q4_k);
	__m512 acc[KROWS];

	#pragma GCC unroll 4
	for (int r = 0; r < nr; r++)
		acc[r] = _mm512_setzero_ps();
	for (int64_t i = 0; i < nb; i++, w += bsz) {
		struct act_k4 act;
		const struct act_k4 *ai = pa ? &pa[i] : &act;

		if (!pa)
			prep_act_k4(a + i * sizeof(struct block_q8_k), &act);
		#pragma GCC unroll 4
		for (int r = 0; r < nr; r++) {
			prefetch_block((uintptr_t)w + r * pitch + ahead, bsz);
			acc[r] = step_k4(w + r * pitch, ai, q5, acc[r]);
		}
	}
	#pragma GCC unroll 4
	for (int r = 0; r < nr; r++)
		y[r * ys] = _mm512_reduce_add_ps(acc[r]);
}

/* blocks of activation matvec_k4 prepares up front (24 KiB of stack,
 * half of L1d): rows of up to 16384 elements */
#define K4_PREP_MAX 64

/*
 * Rows r0..r1 of Q4_K (q5 = 0) or Q5_K (q5 = 1), KROWS a pass from
 * separate parts of the range (kern_passes), each row prefetched
 * kern_prefetch_ahead(1, row_bytes) ahead. The activation blocks are
 * prepared once a call where they fit K4_PREP_MAX, else once a pass.
 */
static inline __attribute__((always_inline)) void
matvec_k4(const void *w, size_t row_bytes, const void *act, float *y,
	  int64_t n, int64_t r0, int64_t r1, const int q5)
{
	const uint8_t *base = w;
	const int64_t nb = n / QK_K;
	const size_t ahead = kern_prefetch_ahead(1, row_bytes);
	struct act_k4 prep[K4_PREP_MAX];
	const struct act_k4 *pa = NULL;
	struct kern_passes ps = kern_passes(r0, r1, KROWS);
	int64_t r, q;

	if (nb <= K4_PREP_MAX && r0 < r1) {
		for (int64_t i = 0; i < nb; i++)
			prep_act_k4((const uint8_t *)act +
					    i * sizeof(struct block_q8_k),
				    &prep[i]);
		pa = prep;
	}
	for (int k; (k = kern_pass_next(&ps, &r, &q));)
		if (k == KROWS)
			rows_k4(base + r * row_bytes, q * row_bytes, ahead, act,
				pa, nb, y + r, q, KROWS, q5);
		else
			rows_k4(base + r * row_bytes, row_bytes, ahead, act,
				pa, nb, y + r, 1, 1, q5);
}

static void matvec_q4_k(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_k4(w, row_bytes, act, y, n, r0, r1, 0);
}

static void matvec_q5_k(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_k4(w, row_bytes, act, y, n, r0, r1, 1);
}

/*
 * Q6_K. A 64-byte load of ql (half h of the block) holds elements
 * 128h + 0..63 in its low nibbles and 128h + 64..127 in its high nibbles,
 * so the activation is read contiguously. The two high bits come from the
 * 32 qh bytes of the half, broadcast to both 256-bit halves and shifted
 * per 64-bit lane so that the right pair lands in bits 4-5.
 */
static inline __attribute__((always_inline)) void
unpack_q6_half(const uint8_t *ql, const uint8_t *qh, __m512i *lo, __m512i *hi)
{
	const __m512i m4 = _mm512_set1_epi8(0x0F);
	const __m512i m30 = _mm512_set1_epi8(0x30);
	/* lo nibbles: bits 0-1 (first 32 bytes) / 2-3 (last 32) -> 4-5 */
	const __m512i shl = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
	/* hi nibbles: bits 4-5 / 6-7 -> 4-5 */
	const __m512i shr = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
	__m512i l = _mm512_loadu_si512(ql);
	__m512i h = _mm512_broadcast_i64x4(
		_mm256_loadu_si256((const __m256i *)qh));
	__m512i hl = _mm512_and_si512(_mm512_sllv_epi64(h, shl), m30);
	__m512i hh = _mm512_and_si512(_mm512_srlv_epi64(h, shr), m30);

	/* bit select: m4 ? nibble : high bits */
	*lo = _mm512_ternarylogic_epi32(m4, l, hl, 0xCA);
	*hi = _mm512_ternarylogic_epi32(m4, _mm512_srli_epi16(l, 4), hh, 0xCA);
}

/*
 * One Q6_K block of one row: acc += a.d * d * sum_j s_j sum((q - 32) a).
 * The "- 32" is applied once per block as sum_j (2 s_j) (-16 bsums_j);
 * bs16 = -16 * bsums fits int16 since |bsums| <= 16 * 127.
 */
static inline __attribute__((always_inline)) void
step_q6(const uint8_t *b, const __m512i act[4], __m256i bs16,
	float ad, __m512 *acc)
{
	/* scale of int32 lane i of the product of vector k: 4k + i / 4 */
	const __m512i idx0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2,
					      1, 1, 1, 1, 0, 0, 0, 0);
	const __m512i four = _mm512_set1_epi32(4);
	const uint8_t *ql = b + offsetof(struct block_q6_k, ql);
	const uint8_t *qh = b + offsetof(struct block_q6_k, qh);
	__m128i sc8 = _mm_loadu_si128(
		(const __m128i *)(b + offsetof(struct block_q6_k, scales)));
	__m512i q0, q1, q2, q3;

	/* q0..q3 hold sub-blocks 0-3, 4-7, 8-11, 12-15 */
	unpack_q6_half(ql, qh, &q0, &q1);
	unpack_q6_half(ql + 64, qh + 32, &q2, &q3);

	/* scales as (s, s) int16 pairs per int32 lane */
	__m512i s = _mm512_cvtepi8_epi32(sc8);
	__m512i p = _mm512_ternarylogic_epi32(_mm512_slli_epi32(s, 16), s,
					      _mm512_set1_epi32(0xFFFF), 0xF8);
	__m256i s2 = _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 1);
	__m512i sumi = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
					   _mm512_zextsi256_si512(bs16),
					   _mm512_zextsi256_si512(s2));
	__m512i i1 = _mm512_add_epi32(idx0, four);
	__m512i i2 = _mm512_add_epi32(i1, four);
	__m512i i3 = _mm512_add_epi32(i2, four);

	sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q0, act[0]),
				   _mm512_permutexvar_epi32(idx0, p));
	sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q1, act[1]),
				   _mm512_permutexvar_epi32(i1, p));
	sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q2, act[2]),
				   _mm512_permutexvar_epi32(i2, p));
	sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q3, act[3]),
				   _mm512_permutexvar_epi32(i3, p));
	float d = load_f16(b + offsetof(struct block_q6_k, d));
	*acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), _mm512_set1_ps(ad * d),
			       *acc);
}

/*
 * nr (1..KROWS) rows of Q6_K pitch bytes apart into y[0], y[ys], ...,
 * sharing the activation loads; each row prefetched ahead bytes on.
 */
static inline __attribute__((always_inline)) void
rows_q6(const uint8_t *w, size_t pitch, size_t ahead, const uint8_t *a,
	int64_t nb, float *y, int64_t ys, const int nr)
{
	const size_t bsz = sizeof(struct block_q6_k);
	__m512 acc[KROWS];

	#pragma GCC unroll 4
	for (int r = 0; r < nr; r++)
		acc[r] = _mm512_setzero_ps();
	for (int64_t i = 0; i < nb; i++, w += bsz) {
		const uint8_t *ab = a + i * sizeof(struct block_q8_k);
		const uint8_t *aq = ab + offsetof(struct block_q8_k, qs);
		__m512i act[4];
		for (int k = 0; k < 4; k++)
			act[k] = _mm512_loadu_si512(aq + 64 * k);
		/* -16 * bsums: fits int16 (|bsums| <= 2032) */
		__m256i bs16 = _mm256_sub_epi16(
			_mm256_setzero_si256(),
			_mm256_slli_epi16(_mm256_loadu_si256((const __m256i *)(
				ab + offsetof(struct block_q8_k, bsums))), 4));
		float ad = load_f32(ab + offsetof(struct block_q8_k, d));

		#pragma GCC unroll 4
		for (int r = 0; r < nr; r++) {
			prefetch_block((uintptr_t)w + r * pitch + ahead, bsz);
			step_q6(w + r * pitch, act, bs16, ad, &acc[r]);
		}
	}
	#pragma GCC unroll 4
	for (int r = 0; r < nr; r++)
		y[r * ys] = _mm512_reduce_add_ps(acc[r]);
}

static void matvec_q6_k(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	const uint8_t *base = w;
	const size_t ahead = kern_prefetch_ahead(1, row_bytes);
	struct kern_passes ps = kern_passes(r0, r1, KROWS);
	int64_t r, q;

	for (int k; (k = kern_pass_next(&ps, &r, &q));)
		if (k == KROWS)
			rows_q6(base + r * row_bytes, q * row_bytes, ahead, act,
				n / QK_K, y + r, q, KROWS);
		else
			rows_q6(base + r * row_bytes, row_bytes, ahead, act,
				n / QK_K, y + r, 1, 1);
}

/* ---- dequantization (prefill feeds GEMM with it) ------------------------ */

/* dst[0..32) = dl * q - ml for 32 u8 values q, rounded as the reference
 * (product, then difference: no FMA) */
static inline void store_dequant32(__m256i q, float dl, float ml, float *dst)
{
	__m512 vd = _mm512_set1_ps(dl), vm = _mm512_set1_ps(ml);
	__m512 f0 = _mm512_cvtepi32_ps(
		_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q)));
	__m512 f1 = _mm512_cvtepi32_ps(
		_mm512_cvtepu8_epi32(_mm256_extracti128_si256(q, 1)));

	_mm512_storeu_ps(dst, _mm512_sub_ps(_mm512_mul_ps(f0, vd), vm));
	_mm512_storeu_ps(dst + 16, _mm512_sub_ps(_mm512_mul_ps(f1, vd), vm));
}

/* the 32 u8 values of sub-block j of a Q4_K (q5 = 0) or Q5_K block */
static inline __attribute__((always_inline)) __m256i
values_k4(const uint8_t *qs, __m256i qh, int j, const int q5)
{
	__m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (j / 2)));

	q = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(q, 4) : q,
			     _mm256_set1_epi8(0x0F));
	if (q5) { /* bit j of qh[l] is the fifth bit */
		__mmask32 hb = _mm256_test_epi8_mask(
			qh, _mm256_set1_epi8((char)(1 << j)));
		q = _mm256_mask_add_epi8(q, hb, q, _mm256_set1_epi8(0x10));
	}
	return q;
}

static inline __attribute__((always_inline)) void
dequant_k4(const void *src, float *dst, int64_t n, const int q5)
{
	const size_t bsz = q5 ? sizeof(struct block_q5_k) :
				sizeof(struct block_q4_k);
	const size_t qs_at = q5 ? offsetof(struct block_q5_k, qs) :
				  offsetof(struct block_q4_k, qs);

	for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
		/* d, dmin and scales sit at the same offsets in both */
		const uint8_t *blk = (const uint8_t *)src + i * bsz;
		float d = load_f16(blk + offsetof(struct block_q4_k, d));
		float dmin = load_f16(blk + offsetof(struct block_q4_k, dmin));
		__m256i qh = _mm256_setzero_si256();
		uint8_t sc[8], mn[8];
		uint64_t sc8, mn8;

		if (q5)
			qh = _mm256_loadu_si256((const __m256i *)(
				blk + offsetof(struct block_q5_k, qh)));
		unpack_scales_k4(blk + offsetof(struct block_q4_k, scales),
				 &sc8, &mn8);
		memcpy(sc, &sc8, 8);
		memcpy(mn, &mn8, 8);
		for (int j = 0; j < QK_K / 32; j++)
			store_dequant32(values_k4(blk + qs_at, qh, j, q5),
					d * sc[j], dmin * mn[j], dst + 32 * j);
	}
}

static void dequant_q4_k(const void *src, float *dst, int64_t n)
{
	dequant_k4(src, dst, n, 0);
}

static void dequant_q5_k(const void *src, float *dst, int64_t n)
{
	dequant_k4(src, dst, n, 1);
}

/* Q6_K: x = (d * scales[e / 16]) * (q - 32), as the reference rounds it */
static void dequant_q6_k(const void *src, float *dst, int64_t n)
{
	const size_t ql_at = offsetof(struct block_q6_k, ql);
	const size_t qh_at = offsetof(struct block_q6_k, qh);

	for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
		const uint8_t *b =
			(const uint8_t *)src + i * sizeof(struct block_q6_k);
		const size_t sc_at = offsetof(struct block_q6_k, scales);
		const int8_t *sc = (const int8_t *)(b + sc_at);
		float d = load_f16(b + offsetof(struct block_q6_k, d));

		for (int h = 0; h < 2; h++) {
			uint8_t q[128]; /* the 6-bit values of half h */
			__m512i lo, hi;

			unpack_q6_half(b + ql_at + 64 * h, b + qh_at + 32 * h,
				       &lo, &hi);
			_mm512_storeu_si512(q, lo);
			_mm512_storeu_si512(q + 64, hi);
			for (int k = 0; k < 8; k++) {
				/* 16 elements of sub-block 8h + k */
				__m512i v = _mm512_sub_epi32(
					_mm512_cvtepu8_epi32(_mm_loadu_si128(
						(const __m128i *)(q + 16 * k))),
					_mm512_set1_epi32(32));
				__m512 f = _mm512_cvtepi32_ps(v);
				__m512 dl = _mm512_set1_ps(d * sc[8 * h + k]);
				_mm512_storeu_ps(dst + 128 * h + 16 * k,
						 _mm512_mul_ps(dl, f));
			}
		}
	}
}

/*
 * Q8_K activation, bit-identical to the reference: the first element of
 * largest magnitude maps to -127; round to nearest even (the MXCSR
 * default), at most 127.
 */
static void quantize_q8_k(const float *x, void *dst, int64_t n)
{
	const __m512i q_max = _mm512_set1_epi32(127);

	for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
		uint8_t *b = (uint8_t *)dst + i * sizeof(struct block_q8_k);
		uint8_t *qs = b + offsetof(struct block_q8_k, qs);
		int16_t bsums[QK_K / 16];
		__m512 vmax = _mm512_setzero_ps();

		for (int v = 0; v < QK_K / 16; v++) {
			__m512 ax = _mm512_abs_ps(_mm512_loadu_ps(x + 16 * v));
			vmax = _mm512_max_ps(vmax, ax);
		}
		float amax = _mm512_reduce_max_ps(vmax);
		if (amax == 0) {
			memset(b, 0, sizeof(struct block_q8_k));
			continue;
		}
		float max = 0;
		__m512 vamax = _mm512_set1_ps(amax);
		for (int v = 0; v < QK_K / 16; v++) {
			__m512 ax = _mm512_abs_ps(_mm512_loadu_ps(x + 16 * v));
			__mmask16 m = _mm512_cmp_ps_mask(ax, vamax, _CMP_EQ_OQ);
			if (m) {
				max = x[16 * v + __builtin_ctz(m)];
				break;
			}
		}
		float iscale = -127.f / max, d = 1 / iscale;
		__m512 vs = _mm512_set1_ps(iscale);
		for (int v = 0; v < QK_K / 16; v++) {
			__m512i q = _mm512_cvtps_epi32(
				_mm512_mul_ps(_mm512_loadu_ps(x + 16 * v), vs));
			q = _mm512_min_epi32(q, q_max);
			_mm_storeu_si128((__m128i *)(qs + 16 * v),
					 _mm512_cvtsepi32_epi8(q));
			bsums[v] = (int16_t)_mm512_reduce_add_epi32(q);
		}
		memcpy(b + offsetof(struct block_q8_k, bsums), bsums,
		       sizeof(bsums));
		memcpy(b + offsetof(struct block_q8_k, d), &d, sizeof(d));
	}
}

/* ---- batched product for prefill (kern_matmul_fn) ------------------------
 *
 * A register tile of MM_ROWS rows x MM_TOK tokens. The weights are
 * repacked so that int32 lane r of a vector belongs to row r: q[v] holds
 * the four u8 values of elements 4v .. 4v+3 of each of 16 rows, so one
 * vpdpbusd against the broadcast dword v of a token's Q8_K qs adds 64
 * products into 16 row sums, and each repacked vector serves every token.
 * The sub-block scales are then per-lane vectors as well: one vpmulld per
 * (token, sub-block) for 16 rows, amortized over the 8 (Q4_K/Q5_K) or 4
 * (Q6_K) vpdpbusd of the sub-block. The min terms (Q4_K/Q5_K) and the
 * "- 32" of Q6_K come from the activation's bsums by vpdpwssd, and each
 * super-block ends in one conversion and FMA per (token, term). The
 * integer sums per super-block are exactly those of kern_ref_k.c; only the
 * float rounding order differs (and it is the same as kern_avx2_k.c's).
 *
 * Repacking is a dword transpose of 16 rows (loads and shuffles), done
 * once per call for every MM_CHUNK super-blocks of a row group (23 KiB,
 * kept in L1 while every token passes over it); at n_tok = 128 it is
 * under a tenth of the time. A short row group repeats its last row in
 * the missing lanes, which are never stored, so callers should pass row
 * ranges in multiples of MM_ROWS: a 4-row range runs at a quarter of the
 * speed. Measured (one Zen 5 core, 2048 x 2048, 128 tokens, weights in
 * cache): Q4_K ~650 GOP/s, 3.6x the matvec loop; about 80% of the time is
 * the vpdpbusd loop, 10% min terms and block ends, 10% repacking.
 */

#define MM_ROWS 16 /* rows per group: one int32 lane each */
#define MM_TOK 8   /* tokens per tile: 3 accumulators each (of 32 zmm) */
#define MM_CHUNK 4 /* super-blocks repacked at a time */

/* One super-block of a group of MM_ROWS rows, one row per int32 lane */
struct mm_blk {
	__m512i q[QK_K / 4]; /* u8 values of elements 4v .. 4v+3 */
	__m512i sc[16];      /* Q4_K/Q5_K: sc of 8 sub-blocks of 32;
				Q6_K: scales of 16 sub-blocks of 16 */
	__m512i mb[8];       /* int16 pairs: Q4_K/Q5_K (m_2p, m_2p+1)
				against sub-block sums (B_2p, B_2p+1)
				(p < 4); Q6_K (-32 s_2p, -32 s_2p+1)
				against bsums (2p, 2p+1) */
	__m512 d, dmin;      /* dmin: Q4_K/Q5_K only */
};

/*
 * Dword transposes. tr16x16: x[r] holds 16 dwords of row r; afterwards
 * x[c] holds dword c of every row, row r in lane r.
 */
static inline __attribute__((always_inline)) void tr16x16(__m512i x[16])
{
	__m512i t[16], u[16];

	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_epi32(x[i], x[i + 1]);
		t[i + 1] = _mm512_unpackhi_epi32(x[i], x[i + 1]);
	}
	/* u[4g + j], 128-bit lane L: rows 4g .. 4g+3 of column 4L + j */
	for (int i = 0; i < 16; i += 4) {
		u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
		u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
		u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
		u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
	}
	for (int j = 0; j < 4; j++) {
		__m512i a = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88);
		__m512i b = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);
		__m512i c = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
		__m512i d = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);

		x[j] = _mm512_shuffle_i32x4(a, c, 0x88);
		x[4 + j] = _mm512_shuffle_i32x4(b, d, 0x88);
		x[8 + j] = _mm512_shuffle_i32x4(a, c, 0xDD);
		x[12 + j] = _mm512_shuffle_i32x4(b, d, 0xDD);
	}
}

/* tr16x8: x[i] (i < 8) holds 8 dwords of row i, then 8 of row i + 8;
 * afterwards x[m] holds dword m of every row, row r in lane r. */
static inline __attribute__((always_inline)) void tr16x8(__m512i x[8])
{
	const __m512i lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
	const __m512i hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
	__m512i t[8], u[8];

	for (int i = 0; i < 8; i += 2) {
		t[i] = _mm512_unpacklo_epi32(x[i], x[i + 1]);
		t[i + 1] = _mm512_unpackhi_epi32(x[i], x[i + 1]);
	}
	/* u[4g + j], 128-bit lane L: rows 4g .. 4g+3 (+ 8 for L >= 2) of
	 * column 4 (L & 1) + j */
	for (int i = 0; i < 8; i += 4) {
		u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
		u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
		u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
		u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
	}
	for (int j = 0; j < 4; j++) {
		x[j] = _mm512_permutex2var_epi64(u[j], lo, u[4 + j]);
		x[4 + j] = _mm512_permutex2var_epi64(u[j], hi, u[4 + j]);
	}
}

/* the 64 bytes at row[r] + at of 16 rows, x[c] lane r = dword c */
static inline __attribute__((always_inline)) void
load_t16(const uint8_t *const row[MM_ROWS], size_t at, __m512i x[16])
{
	for (int r = 0; r < 16; r++)
		x[r] = _mm512_loadu_si512(row[r] + at);
	tr16x16(x);
}

/* the 32 bytes at row[r] + at of 16 rows, x[m] lane r = dword m */
static inline __attribute__((always_inline)) void
load_t8(const uint8_t *const row[MM_ROWS], size_t at, __m512i x[8])
{
	for (int i = 0; i < 8; i++)
		x[i] = _mm512_inserti64x4(
			_mm512_castsi256_si512(_mm256_loadu_si256(
				(const __m256i *)(row[i] + at))),
			_mm256_loadu_si256((const __m256i *)(row[i + 8] + at)),
			1);
	tr16x8(x);
}

/* x shifted left by s bits (right by -s) in each 32-bit lane */
static inline __attribute__((always_inline)) __m512i shl32(__m512i x, int s)
{
	return s >= 0 ? _mm512_slli_epi32(x, (unsigned)s) :
			_mm512_srli_epi32(x, (unsigned)-s);
}

/* a | (b & c) */
static inline __attribute__((always_inline)) __m512i
or_and(__m512i a, __m512i b, __m512i c)
{
	return _mm512_ternarylogic_epi32(a, b, c, 0xF8);
}

/*
 * Repack the super-blocks at row[r] + at of Q4_K (q5 = 0) or Q5_K. Dword
 * c = 8h + m of qs holds elements 64h + 4m + {0..3} (sub-block 2h) in its
 * low nibbles and 32 further on (sub-block 2h + 1) in its high ones; the
 * fifth bit of sub-block j is bit j of qh dword m.
 */
static inline __attribute__((always_inline)) void
repack_k4(const uint8_t *const row[MM_ROWS], size_t at, struct mm_blk *o,
	  const int q5)
{
	const __m512i m4 = _mm512_set1_epi8(0x0F);
	const __m512i b4 = _mm512_set1_epi8(0x10);
	const size_t qs_at = q5 ? offsetof(struct block_q5_k, qs) :
				  offsetof(struct block_q4_k, qs);
	__m512i h[8], x[16];

	if (q5)
		load_t8(row, at + offsetof(struct block_q5_k, qh), h);
	for (int half = 0; half < 2; half++) {
		load_t16(row, at + qs_at + 64 * half, x);
		for (int i = 0; i < 16; i++) {
			const int hh = 2 * half + i / 8, m = i % 8;
			__m512i lo = _mm512_and_si512(x[i], m4);
			__m512i hi = _mm512_and_si512(
				_mm512_srli_epi32(x[i], 4), m4);

			if (q5) { /* sub-blocks 2hh, 2hh + 1: bit -> bit 4 */
				lo = or_and(lo, shl32(h[m], 4 - 2 * hh), b4);
				hi = or_and(hi, shl32(h[m], 3 - 2 * hh), b4);
			}
			o->q[16 * hh + m] = lo;
			o->q[16 * hh + 8 + m] = hi;
		}
	}

	/* header dwords: d | dmin << 16, then scales[0..12) as u0, u1, u2;
	 * kern_get_scale_min_k4 for all j, 16 rows at once */
	const __m512i m6 = _mm512_set1_epi32(63);
	const __m512i lo4 = _mm512_set1_epi32(0x0F);
	const __m512i m30 = _mm512_set1_epi32(0x30);
	__m512i hd[8];

	__m512i mn[8];

	load_t8(row, at, hd);
	for (int j = 0; j < 4; j++) {
		__m512i u0 = hd[1], u1 = hd[2], u2 = hd[3];

		o->sc[j] = _mm512_and_si512(_mm512_srli_epi32(u0, 8 * j), m6);
		o->sc[j + 4] = or_and(
			_mm512_and_si512(_mm512_srli_epi32(u2, 8 * j), lo4),
			_mm512_srli_epi32(u0, 8 * j + 2), m30);
		mn[j] = _mm512_and_si512(_mm512_srli_epi32(u1, 8 * j), m6);
		mn[j + 4] = or_and(
			_mm512_and_si512(_mm512_srli_epi32(u2, 8 * j + 4), lo4),
			_mm512_srli_epi32(u1, 8 * j + 2), m30);
	}
	for (int p = 0; p < 4; p++)
		o->mb[p] = _mm512_or_si512(mn[2 * p],
					   _mm512_slli_epi32(mn[2 * p + 1], 16));
	o->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hd[0]));
	o->dmin = _mm512_cvtph_ps(
		_mm512_cvtepi32_epi16(_mm512_srli_epi32(hd[0], 16)));
}

/*
 * Repack Q6_K super-blocks. Within half hf, element 32k + 4m + b takes
 * the low (k < 2) or high nibble of ql dword 16hf + 8(k & 1) + m and bits
 * 2k, 2k + 1 of qh dword 8hf + m (the layout of q6k_value).
 */
static inline __attribute__((always_inline)) void
repack_q6(const uint8_t *const row[MM_ROWS], size_t at, struct mm_blk *o)
{
	const __m512i m4 = _mm512_set1_epi8(0x0F);
	const __m512i m30 = _mm512_set1_epi8(0x30);
	__m512i h[8], l[16];

	for (int hf = 0; hf < 2; hf++) {
		load_t8(row, at + offsetof(struct block_q6_k, qh) + 32 * hf, h);
		load_t16(row, at + offsetof(struct block_q6_k, ql) + 64 * hf, l);
		for (int m = 0; m < 8; m++) {
			__m512i *q = &o->q[32 * hf + m];
			__m512i l0 = l[m], l1 = l[8 + m];

			q[0] = or_and(_mm512_and_si512(l0, m4),
				      _mm512_slli_epi32(h[m], 4), m30);
			q[8] = or_and(_mm512_and_si512(l1, m4),
				      _mm512_slli_epi32(h[m], 2), m30);
			q[16] = or_and(_mm512_and_si512(
					       _mm512_srli_epi32(l0, 4), m4),
				       h[m], m30);
			q[24] = or_and(_mm512_and_si512(
					       _mm512_srli_epi32(l1, 4), m4),
				       _mm512_srli_epi32(h[m], 2), m30);
		}
	}

	/* the block's last 32 bytes: qh[50..64), scales[16], d; scale j is
	 * byte 14 + j of them. int8 scales sign-extended, and (-32 s,
	 * -32 s') int16 pairs for the bsums. */
	const __m512i lo16 = _mm512_set1_epi32(0xFFFF);
	const size_t tail = sizeof(struct block_q6_k) - 32;
	__m512i s8[8];

	_Static_assert(offsetof(struct block_q6_k, scales) - 14 ==
			       sizeof(struct block_q6_k) - 32,
		       "q6_K tail layout");
	load_t8(row, at + tail, s8);
	for (int j = 0; j < 16; j++) {
		const int e = 14 + j;
		o->sc[j] = _mm512_srai_epi32(
			_mm512_slli_epi32(s8[e / 4], 24 - 8 * (e % 4)), 24);
	}
	for (int p = 0; p < 8; p++) {
		__m512i e = _mm512_sub_epi32(_mm512_setzero_si512(),
					     _mm512_slli_epi32(o->sc[2 * p], 5));
		__m512i f = _mm512_sub_epi32(
			_mm512_setzero_si512(),
			_mm512_slli_epi32(o->sc[2 * p + 1], 5));
		o->mb[p] = _mm512_or_si512(_mm512_and_si512(e, lo16),
					   _mm512_slli_epi32(f, 16));
	}
	o->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(s8[7], 16)));
	o->dmin = _mm512_setzero_ps();
}

/* dword v (4 bytes) of an activation block's qs, broadcast */
static inline __attribute__((always_inline)) __m512i
act_dword(const uint8_t *a, size_t at)
{
	return _mm512_set1_epi32((int)load_u32(a + at));
}

/*
 * One repacked super-block against nt (<= MM_TOK) tokens' Q8_K blocks
 * a[t] (bp[t]: their sub-block sum pairs, Q4_K/Q5_K): acc[t] (lane r:
 * row r) += the block's part of the dot products. The #pragma unrolls
 * keep the per-token arrays in registers (-O2 leaves them in memory).
 * type: 4 (Q4_K and Q5_K, which differ only in the repacking) or 6.
 * Per sub-block j the vpdpbusd sums go to is[t], then into bi[t] scaled
 * by sc[j]; at most 256 x 63 x 127 x 128 in all, well inside int32.
 */
static inline __attribute__((always_inline)) void
mm_block(const struct mm_blk *b, const uint8_t *const a[],
	 const uint32_t bp[][4], const int nt, __m512 acc[], const int type)
{
	const size_t qs_at = offsetof(struct block_q8_k, qs);
	const size_t bs_at = offsetof(struct block_q8_k, bsums);
	const int nsub = type == 6 ? 16 : 8, vps = QK_K / 4 / nsub;
	__m512i bi[MM_TOK], is[MM_TOK];

	/* Q6_K: start from -32 sum_j s_j bsums_j */
	#pragma GCC unroll 16
	for (int t = 0; t < nt; t++) {
		bi[t] = _mm512_setzero_si512();
		if (type == 6)
			#pragma GCC unroll 16
			for (int p = 0; p < 8; p++)
				bi[t] = _mm512_dpwssd_epi32(
					bi[t], b->mb[p],
					act_dword(a[t], bs_at + 4 * p));
	}
	for (int j = 0; j < nsub; j++) {
		#pragma GCC unroll 16
		for (int t = 0; t < nt; t++)
			is[t] = _mm512_setzero_si512();
		#pragma GCC unroll 16
		for (int m = 0; m < vps; m++) {
			const int v = vps * j + m;
			const __m512i w = b->q[v];

			#pragma GCC unroll 16
			for (int t = 0; t < nt; t++)
				is[t] = _mm512_dpbusd_epi32(
					is[t], w, act_dword(a[t], qs_at + 4 * v));
		}
		#pragma GCC unroll 16
		for (int t = 0; t < nt; t++)
			bi[t] = _mm512_add_epi32(
				bi[t], _mm512_mullo_epi32(is[t], b->sc[j]));
	}
	/* Q4_K/Q5_K: min terms sum_j m_j B_j */
	if (type != 6)
		#pragma GCC unroll 16
		for (int t = 0; t < nt; t++) {
			is[t] = _mm512_setzero_si512();
			#pragma GCC unroll 16
			for (int p = 0; p < 4; p++)
				is[t] = _mm512_dpwssd_epi32(
					is[t], b->mb[p],
					_mm512_set1_epi32((int)bp[t][p]));
		}
	#pragma GCC unroll 16
	for (int t = 0; t < nt; t++) {
		__m512 ad = _mm512_set1_ps(
			load_f32(a[t] + offsetof(struct block_q8_k, d)));

		acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(bi[t]),
					 _mm512_mul_ps(b->d, ad), acc[t]);
		if (type != 6)
			acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(is[t]),
						  _mm512_mul_ps(b->dmin, ad),
						  acc[t]);
	}
}

/*
 * nc repacked super-blocks against nt tokens: activation t's first block
 * at a0 + t * as, results for the rows in mask k at y + t * ldy (added to
 * what is there unless first).
 */
static inline __attribute__((always_inline)) void
mm_tile(const struct mm_blk *blk, int nc, const uint8_t *a0, size_t as,
	float *y, int64_t ldy, __mmask16 k, int first, const int nt,
	const int type)
{
	const uint8_t *a[MM_TOK];
	__m512 acc[MM_TOK];

	#pragma GCC unroll 16
	for (int t = 0; t < nt; t++) {
		a[t] = a0 + t * as;
		acc[t] = first ? _mm512_setzero_ps() :
				 _mm512_maskz_loadu_ps(k, y + t * ldy);
	}
	/* Q4_K/Q5_K: sub-block sums B_j = bsums[2j] + bsums[2j+1] as
	 * int16 (|B_j| <= 32 * 127), pairs (B_2p, B_2p+1) in dword p */
	uint32_t bp[MM_CHUNK][MM_TOK][4];

	if (type != 6)
		for (int c = 0; c < nc; c++)
			#pragma GCC unroll 16
			for (int t = 0; t < nt; t++) {
				__m256i bs = _mm256_loadu_si256((const __m256i *)(
					a[t] + c * sizeof(struct block_q8_k) +
					offsetof(struct block_q8_k, bsums)));
				bs = _mm256_madd_epi16(bs, _mm256_set1_epi16(1));
				_mm_storeu_si128((__m128i *)bp[c][t],
						 _mm256_cvtepi32_epi16(bs));
			}
	for (int c = 0; c < nc; c++) {
		mm_block(&blk[c], a, (const uint32_t(*)[4])bp[c], nt, acc,
			 type);
		#pragma GCC unroll 16
		for (int t = 0; t < nt; t++)
			a[t] += sizeof(struct block_q8_k);
	}
	#pragma GCC unroll 16
	for (int t = 0; t < nt; t++)
		_mm512_mask_storeu_ps(y + t * ldy, k, acc[t]);
}

/* mm_tile with nt a constant (1 .. MM_TOK), so that the tile stays in
 * registers */
static inline __attribute__((always_inline)) void
mm_tile_n(const struct mm_blk *blk, int nc, const uint8_t *a0, size_t as,
	  float *y, int64_t ldy, __mmask16 k, int first, int nt,
	  const int type)
{
	switch (nt) {
	case 1: mm_tile(blk, nc, a0, as, y, ldy, k, first, 1, type); break;
	case 2: mm_tile(blk, nc, a0, as, y, ldy, k, first, 2, type); break;
	case 3: mm_tile(blk, nc, a0, as, y, ldy, k, first, 3, type); break;
	case 4: mm_tile(blk, nc, a0, as, y, ldy, k, first, 4, type); break;
	case 5: mm_tile(blk, nc, a0, as, y, ldy, k, first, 5, type); break;
	case 6: mm_tile(blk, nc, a0, as, y, ldy, k, first, 6, type); break;
	case 7: mm_tile(blk, nc, a0, as, y, ldy, k, first, 7, type); break;
	default: mm_tile(blk, nc, a0, as, y, ldy, k, first, 8, type); break;
	}
}

_Static_assert(MM_TOK == 8, "mm_tile_n instantiates 1 .. 8 tokens");

/*
 * The batched product for type 4 (Q4_K), 5 (Q5_K) or 6 (Q6_K): row groups
 * of MM_ROWS, and per group chunks of MM_CHUNK super-blocks repacked once,
 * then swept by every token, MM_TOK at a time. The lanes of a short group
 * repeat its last row (never stored). The next chunk's weights are
 * prefetched while the tokens run over the current one.
 */
static inline __attribute__((always_inline)) void
matmul_k(const void *w, size_t rb, const void *act, size_t as, float *y,
	 int64_t ldy, int64_t n, int64_t r0, int64_t r1, int64_t n_tok,
	 const int type)
{
	const size_t bsz = type == 4 ? sizeof(struct block_q4_k) :
			   type == 5 ? sizeof(struct block_q5_k) :
				       sizeof(struct block_q6_k);
	const int64_t nb = n / QK_K;
	struct mm_blk blk[MM_CHUNK];

	if (nb == 0) { /* empty rows: zero, as matvec gives */
		for (int64_t t = 0; t < n_tok; t++)
			for (int64_t r = r0; r < r1; r++)
				y[t * ldy + r] = 0;
		return;
	}
	for (int64_t rg = r0; rg < r1; rg += MM_ROWS) {
		const int nr = r1 - rg < MM_ROWS ? (int)(r1 - rg) : MM_ROWS;
		const __mmask16 k = (__mmask16)((1u << nr) - 1);
		const uint8_t *row[MM_ROWS];

		for (int r = 0; r < MM_ROWS; r++)
			row[r] = (const uint8_t *)w +
				 (rg + (r < nr ? r : nr - 1)) * rb;
		for (int64_t i0 = 0; i0 < nb; i0 += MM_CHUNK) {
			const int nc = nb - i0 < MM_CHUNK ? (int)(nb - i0) :
							    MM_CHUNK;
			/* next chunk: this group's, or the next group's first */
			uintptr_t next = i0 + nc < nb ?
				(uintptr_t)row[0] + (i0 + nc) * bsz :
				(uintptr_t)row[0] + MM_ROWS * rb;

			for (int c = 0; c < nc; c++) {
				size_t at = (size_t)(i0 + c) * bsz;
				if (type == 6)
					repack_q6(row, at, &blk[c]);
				else
					repack_k4(row, at, &blk[c], type == 5);
			}
			for (int r = 0; r < MM_ROWS; r++)
				prefetch_block(next + r * rb, MM_CHUNK * bsz);
			for (int64_t t0 = 0; t0 < n_tok; t0 += MM_TOK) {
				int nt = n_tok - t0 < MM_TOK ?
						 (int)(n_tok - t0) : MM_TOK;
				mm_tile_n(blk, nc,
					  (const uint8_t *)act + t0 * as +
						  i0 * sizeof(struct block_q8_k),
					  as, y + t0 * ldy + rg, ldy, k, i0 == 0,
					  nt, type == 6 ? 6 : 4);
			}
		}
	}
}

static void matmul_q4_k(const void *w, size_t rb, const void *act, size_t as,
			float *y, int64_t ldy, int64_t n, int64_t r0,
			int64_t r1, int64_t n_tok)
{
	matmul_k(w, rb, act, as, y, ldy, n, r0, r1, n_tok, 4);
}

static void matmul_q5_k(const void *w, size_t rb, const void *act, size_t as,
			float *y, int64_t ldy, int64_t n, int64_t r0,
			int64_t r1, int64_t n_tok)
{
	matmul_k(w, rb, act, as, y, ldy, n, r0, r1, n_tok, 5);
}

static void matmul_q6_k(const void *w, size_t rb, const void *act, size_t as,
			float *y, int64_t ldy, int64_t n, int64_t r0,
			int64_t r1, int64_t n_tok)
{
	matmul_k(w, rb, act, as, y, ldy, n, r0, r1, n_tok, 6);
}

void kern_fill_avx512_k(struct kern_table *t)
{
	t->ops[KT_Q4_K] = (struct kern_ops){ .dequant = dequant_q4_k,
					      .matvec = matvec_q4_k,
					      .matmul = matmul_q4_k };
	t->ops[KT_Q5_K] = (struct kern_ops){ .dequant = dequant_q5_k,
					      .matvec = matvec_q5_k,
					      .matmul = matmul_q5_k };
	t->ops[KT_Q6_K] = (struct kern_ops){ .dequant = dequant_q6_k,
					      .matvec = matvec_q6_k,
					      .matmul = matmul_q6_k };
	t->quantize_act[KT_Q8_K] = quantize_q8_k;
}
