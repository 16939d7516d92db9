/*
 * kern_avx512_k.c - AVX-512 (F, BW, VL, DQ, VNNI) K-quant kernels: matvec
 * of Q4_K, Q5_K and Q6_K weights against a Q8_K activation, and the Q8_K
 * activation quantizer, plus dequantization (bit-identical to the
 * reference) for the prefill path. Compiled with the AVX512 flags of the
 * Makefile; only called when kern_init found the CPU able to run it.
 *
 * Decode is memory-bound, so the loops are shaped to stream weights:
 *  - KROWS rows per pass share the activation loads and shuffles of each
 *    block; one float accumulator per row, reduced once at the end; the
 *    rows of the next pass are prefetched (the hardware prefetcher alone
 *    follows KROWS interleaved streams poorly: ~20 instead of ~35 GB/s);
 *  - per 64 weight bytes: vpmaddubsw (u8 weight x s8 activation -> s16
 *    pairs) then vpdpwssd against the sub-block scales, so each block ends
 *    as one int32 vector per row, converted and scaled by d once;
 *  - the integer sums are exactly those of kern_ref_k.c; only the order
 *    of the float additions differs.
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
 * nr (1..KROWS) rows of Q4_K or Q5_K starting at w, rows rb bytes apart,
 * nb blocks each, into y[0..nr). Always inlined with constant nr and q5 so
 * that the per-row accumulators stay in registers. Each block's lines in
 * the rows of the next pass (nr rows further) are prefetched: the rows of
 * a pass are separate streams, which the hardware prefetcher alone
 * follows poorly.
 */
static inline __attribute__((always_inline)) void
rows_k4(const uint8_t *w, size_t rb, const uint8_t *a, int64_t nb,
	float *y, const int nr, const int q5)
{
	const size_t bsz = q5 ? sizeof(struct block_q5_k) :
				sizeof(struct block_q4_k);
	__m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0,
	       acc3 = acc0;

	for (int64_t i = 0; i < nb; i++, w += bsz) {
		struct act_k4 act;
		prep_act_k4(a + i * sizeof(struct block_q8_k), &act);
		for (int r = 0; r < nr; r++)
			prefetch_block((uintptr_t)w + (r + nr) * rb, bsz);

		acc0 = step_k4(w, &act, q5, acc0);
		if (nr > 1)
			acc1 = step_k4(w + rb, &act, q5, acc1);
		if (nr > 2)
			acc2 = step_k4(w + 2 * rb, &act, q5, acc2);
		if (nr > 3)
			acc3 = step_k4(w + 3 * rb, &act, q5, acc3);
	}
	y[0] = _mm512_reduce_add_ps(acc0);
	if (nr > 1)
		y[1] = _mm512_reduce_add_ps(acc1);
	if (nr > 2)
		y[2] = _mm512_reduce_add_ps(acc2);
	if (nr > 3)
		y[3] = _mm512_reduce_add_ps(acc3);
}

static void matvec_q4_k(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	const uint8_t *base = w;
	int64_t r = r0;

	for (; r + KROWS <= r1; r += KROWS)
		rows_k4(base + r * row_bytes, row_bytes, act, n / QK_K, y + r,
			KROWS, 0);
	for (; r < r1; r++)
		rows_k4(base + r * row_bytes, row_bytes, act, n / QK_K, y + r,
			1, 0);
}

static void matvec_q5_k(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	const uint8_t *base = w;
	int64_t r = r0;

	for (; r + KROWS <= r1; r += KROWS)
		rows_k4(base + r * row_bytes, row_bytes, act, n / QK_K, y + r,
			KROWS, 1);
	for (; r < r1; r++)
		rows_k4(base + r * row_bytes, row_bytes, act, n / QK_K, y + r,
			1, 1);
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

static inline __attribute__((always_inline)) void
rows_q6(const uint8_t *w, size_t rb, const uint8_t *a, int64_t nb,
	float *y, const int nr)
{
	const size_t bsz = sizeof(struct block_q6_k);
	__m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0,
	       acc3 = acc0;

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
		for (int r = 0; r < nr; r++)
			prefetch_block((uintptr_t)w + (r + nr) * rb, bsz);

		step_q6(w, act, bs16, ad, &acc0);
		if (nr > 1)
			step_q6(w + rb, act, bs16, ad, &acc1);
		if (nr > 2)
			step_q6(w + 2 * rb, act, bs16, ad, &acc2);
		if (nr > 3)
			step_q6(w + 3 * rb, act, bs16, ad, &acc3);
	}
	y[0] = _mm512_reduce_add_ps(acc0);
	if (nr > 1)
		y[1] = _mm512_reduce_add_ps(acc1);
	if (nr > 2)
		y[2] = _mm512_reduce_add_ps(acc2);
	if (nr > 3)
		y[3] = _mm512_reduce_add_ps(acc3);
}

static void matvec_q6_k(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	const uint8_t *base = w;
	int64_t r = r0;

	for (; r + KROWS <= r1; r += KROWS)
		rows_q6(base + r * row_bytes, row_bytes, act, n / QK_K, y + r,
			KROWS);
	for (; r < r1; r++)
		rows_q6(base + r * row_bytes, row_bytes, act, n / QK_K, y + r,
			1);
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

void kern_fill_avx512_k(struct kern_table *t)
{
	t->ops[KT_Q4_K] = (struct kern_ops){ dequant_q4_k, matvec_q4_k };
	t->ops[KT_Q5_K] = (struct kern_ops){ dequant_q5_k, matvec_q5_k };
	t->ops[KT_Q6_K] = (struct kern_ops){ dequant_q6_k, matvec_q6_k };
	t->quantize_act[KT_Q8_K] = quantize_q8_k;
}
