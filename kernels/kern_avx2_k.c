/*
 * kern_avx2_k.c - AVX2 K-quant kernels: matvec of Q4_K, Q5_K and Q6_K
 * weights against a Q8_K activation, and the Q8_K activation quantizer.
 * Compiled with -mavx2 -mfma -mf16c; the fallback for x86 CPUs without
 * AVX-512. Dequantization stays the reference one.
 *
 * Same plan as kern_avx512_k.c with 256-bit vectors and no VNNI: a 32-byte
 * load of Q4_K/Q5_K qs holds one sub-block in its low nibbles and the next
 * in its high nibbles, so the activation is read contiguously and every
 * product vector has a single sub-block scale; vpmaddubsw (u8 x s8 -> s16
 * pairs) then vpmaddwd against that scale. KROWS rows per pass share the
 * activation block, and the rows of the next pass are prefetched. The
 * integer sums equal kern_ref_k.c's; only float rounding order differs.
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "kernels/kern_impl.h"

#define KROWS 2 /* rows per pass; more spills the 16 ymm registers */

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

static inline __m256i load256(const uint8_t *p)
{
	return _mm256_loadu_si256((const __m256i *)p);
}

static inline float load_f16(const void *p)
{
	kern_f16 v;
	memcpy(&v, p, sizeof(v));
	return _cvtsh_ss(v);
}

static inline float hsum8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* vpshufb control giving every int16 lane the zero-extended byte j */
static inline __m256i sel16(int j)
{
	return _mm256_set1_epi16((short)(0x8000 | j));
}

/*
 * Decode the 12 packed scale bytes of a Q4_K/Q5_K block (all j of
 * kern_get_scale_min_k4 at once): sc[0..7] into the bytes of *sc, m[0..7]
 * into *mn, in general registers.
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

/*
 * One Q8_K block prepared once for the rows of a pass (Q4_K/Q5_K):
 * bs: int16 pairs (bsums[4i] + bsums[4i+1], bsums[4i+2] + bsums[4i+3]) in
 *   32-bit lane 2i + 1, zero in even lanes;
 * ad: a.d in even lanes, -a.d in odd lanes.
 */
struct act_k4 {
	const uint8_t *q;
	__m256i bs;
	__m256 ad;
};

static inline __attribute__((always_inline)) void
prep_act_k4(const uint8_t *a, struct act_k4 *p)
{
	/* adjacent bsums summed: 8 int32 -> 8 int16 in lanes 2i + 1 */
	__m256i s = _mm256_madd_epi16(
		load256(a + offsetof(struct block_q8_k, bsums)),
		_mm256_set1_epi16(1));
	__m256i s16 = _mm256_packs_epi32(s, s); /* exact: |sum| <= 4064 */

	/* s16 halves: [p0 p1 p2 p3 | p0 p1 p2 p3] as dwords in each half,
	 * where half h has pairs 4h..4h+3; spread to odd lanes */
	p->bs = _mm256_blend_epi32(_mm256_setzero_si256(),
				   _mm256_shuffle_epi32(s16, 0x50 + 0x0),
				   0xAA);
	p->q = a + offsetof(struct block_q8_k, qs);
	p->ad = _mm256_castsi256_ps(_mm256_xor_si256(
		_mm256_castps_si256(_mm256_set1_ps(
			load_f32(a + offsetof(struct block_q8_k, d)))),
		_mm256_set1_epi64x((long long)0x8000000000000000ull)));
}

/*
 * One Q4_K (q5 = 0) or Q5_K (q5 = 1) block of one row; returns acc plus
 * its contribution. Integer sums fold pairwise into the even lanes and the
 * min terms land in the odd lanes, so one conversion and one FMA against
 * [d, dmin] * [a.d, -a.d] finish the block.
 */
static inline __attribute__((always_inline)) __m256
step_k4(const uint8_t *blk, const struct act_k4 *act, const int q5,
	__m256 acc)
{
	const uint8_t *qs = blk + (q5 ? offsetof(struct block_q5_k, qs) :
					offsetof(struct block_q4_k, qs));
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	const __m256i b16 = _mm256_set1_epi8(0x10);
	__m256i h = _mm256_setzero_si256();
	uint64_t sc8, mn8;

	if (q5)
		h = load256(blk + offsetof(struct block_q5_k, qh));
	/* d, dmin and scales sit at the same offsets in both block types */
	unpack_scales_k4(blk + offsetof(struct block_q4_k, scales), &sc8, &mn8);
	__m256i sc = _mm256_set1_epi64x((long long)sc8);
	__m256i s = _mm256_setzero_si256();

#pragma GCC unroll 4
	for (int c = 0; c < 4; c++) {
		__m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
		__m256i lo = _mm256_and_si256(q, m4);
		__m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
		if (q5) {
			/* bit 2c (2c+1) of qh[l] is the fifth bit of element
			 * l of sub-block 2c (2c+1): move it to bit 4 */
			__m256i hl = c == 0 ? _mm256_slli_epi16(h, 4) :
				     c == 1 ? _mm256_slli_epi16(h, 2) :
				     c == 2 ? h : _mm256_srli_epi16(h, 2);
			__m256i hh = c == 0 ? _mm256_slli_epi16(h, 3) :
				     c == 1 ? _mm256_slli_epi16(h, 1) :
				     c == 2 ? _mm256_srli_epi16(h, 1) :
					      _mm256_srli_epi16(h, 3);
			lo = _mm256_or_si256(lo, _mm256_and_si256(hl, b16));
			hi = _mm256_or_si256(hi, _mm256_and_si256(hh, b16));
		}
		__m256i slo = _mm256_shuffle_epi8(sc, sel16(2 * c));
		__m256i shi = _mm256_shuffle_epi8(sc, sel16(2 * c + 1));
		__m256i plo = _mm256_madd_epi16(
			_mm256_maddubs_epi16(lo, load256(act->q + 64 * c)),
			slo);
		__m256i phi = _mm256_madd_epi16(
			_mm256_maddubs_epi16(hi, load256(act->q + 64 * c + 32)),
			shi);
		s = _mm256_add_epi32(s, _mm256_add_epi32(plo, phi));
	}

	/* min pairs (m[4i'+k], m[4i'+k+1])... in the odd lanes, matching bs:
	 * odd lane 2i+1 of half h pairs m[4h+2i], m[4h+2i+1] */
	const __m256i sel_m = _mm256_setr_epi32(
		-1, (int)0x80018000, -1, (int)0x80038002, -1,
		(int)0x80058004, -1, (int)0x80078006);
	__m256i mz = _mm256_madd_epi16(
		act->bs, _mm256_shuffle_epi8(_mm256_set1_epi64x((long long)mn8),
					     sel_m));
	s = _mm256_add_epi32(s, _mm256_srli_epi64(s, 32));
	s = _mm256_blend_epi32(s, mz, 0xAA);

	uint32_t d_dmin = load_u32(blk + offsetof(struct block_q4_k, d));
	__m256 dm = _mm256_cvtph_ps(_mm_set1_epi32((int)d_dmin));
	return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s),
			       _mm256_mul_ps(dm, act->ad), acc);
}

/* nr (1..KROWS) rows of Q4_K/Q5_K at w, rb bytes apart, into y[0..nr) */
static inline __attribute__((always_inline)) void
rows_k4(const uint8_t *w, size_t rb, const uint8_t *a, int64_t nb,
	float *y, const int nr, const int q5)
{
	const size_t bsz = q5 ? sizeof(struct block_q5_k) :
				sizeof(struct block_q4_k);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;

	for (int64_t i = 0; i < nb; i++, w += bsz) {
		struct act_k4 act;
		prep_act_k4(a + i * sizeof(struct block_q8_k), &act);
		for (int r = 0; r < nr; r++)
			prefetch_block((uintptr_t)w + (r + nr) * rb, bsz);
		acc0 = step_k4(w, &act, q5, acc0);
		if (nr > 1)
			acc1 = step_k4(w + rb, &act, q5, acc1);
	}
	y[0] = hsum8(acc0);
	if (nr > 1)
		y[1] = hsum8(acc1);
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

/* vpshufb control picking int16 lane j of each 128-bit half: lo in the
 * low half, hi in the high half */
static inline __m256i sel_pair(int lo, int hi)
{
	return _mm256_setr_epi32(
		0x01000100 + 0x02020202 * lo, 0x01000100 + 0x02020202 * lo,
		0x01000100 + 0x02020202 * lo, 0x01000100 + 0x02020202 * lo,
		0x01000100 + 0x02020202 * hi, 0x01000100 + 0x02020202 * hi,
		0x01000100 + 0x02020202 * hi, 0x01000100 + 0x02020202 * hi);
}

/* sum over 32 elements of q * a * (s_a | s_b), q u8, x the int16 scales
 * of the half, k the pair of sub-blocks (2k, 2k+1) */
static inline __attribute__((always_inline)) __m256i
q6_dot32(__m256i q, const uint8_t *a, __m256i x, int k)
{
	return _mm256_madd_epi16(
		_mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)a)),
		_mm256_shuffle_epi8(x, sel_pair(2 * k, 2 * k + 1)));
}

/*
 * Half h (128 elements) of a Q6_K block: ql[0:32] and ql[32:64] give
 * elements 0-31 and 32-63 in their low nibbles, 64-95 and 96-127 in their
 * high nibbles; bits 2k, 2k+1 of qh[l] complete element 32k + l. Each
 * 32-element vector holds two sub-blocks of 16, one per 128-bit half,
 * whose int16 scales x picks by vpshufb.
 */
static inline __attribute__((always_inline)) __m256i
q6_half(const uint8_t *ql, const uint8_t *qhp, const uint8_t *a, __m256i x)
{
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	const __m256i m30 = _mm256_set1_epi8(0x30);
	__m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
	__m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
	__m256i qh = _mm256_loadu_si256((const __m256i *)qhp);
	__m256i q0 = _mm256_or_si256(
		_mm256_and_si256(l0, m4),
		_mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
	__m256i q1 = _mm256_or_si256(
		_mm256_and_si256(l1, m4),
		_mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
	__m256i q2 = _mm256_or_si256(
		_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
		_mm256_and_si256(qh, m30));
	__m256i q3 = _mm256_or_si256(
		_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
		_mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));

	__m256i s = _mm256_add_epi32(q6_dot32(q0, a, x, 0),
				     q6_dot32(q1, a + 32, x, 1));
	s = _mm256_add_epi32(s, q6_dot32(q2, a + 64, x, 2));
	return _mm256_add_epi32(s, q6_dot32(q3, a + 96, x, 3));
}

/*
 * One Q6_K block of one row: acc += a.d * d * sum_j s_j sum((q - 32) a),
 * the "- 32" applied once per block through the activation's bsums.
 */
static inline __attribute__((always_inline)) __m256
step_q6(const uint8_t *b, const uint8_t *aq, __m256i bsums,
	float ad, __m256 acc)
{
	__m256i sc16 = _mm256_cvtepi8_epi16(
		_mm_loadu_si128((const __m128i *)(
			b + offsetof(struct block_q6_k, scales))));
	const uint8_t *ql = b + offsetof(struct block_q6_k, ql);
	const uint8_t *qh = b + offsetof(struct block_q6_k, qh);
	/* -32 * sum_j s_j * bsums_j */
	__m256i s = _mm256_sub_epi32(
		_mm256_setzero_si256(),
		_mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5));

	/* scales 8h..8h+7 as int16 in both 128-bit halves, h = 0, 1 */
	__m256i x0 = _mm256_permute2x128_si256(sc16, sc16, 0x00);
	__m256i x1 = _mm256_permute2x128_si256(sc16, sc16, 0x11);
	s = _mm256_add_epi32(s, q6_half(ql, qh, aq, x0));
	s = _mm256_add_epi32(s, q6_half(ql + 64, qh + 32, aq + 128, x1));
	float d = load_f16(b + offsetof(struct block_q6_k, d));
	return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s),
			       _mm256_set1_ps(ad * d), acc);
}

static inline __attribute__((always_inline)) void
rows_q6(const uint8_t *w, size_t rb, const uint8_t *a, int64_t nb,
	float *y, const int nr)
{
	const size_t bsz = sizeof(struct block_q6_k);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;

	for (int64_t i = 0; i < nb; i++, w += bsz) {
		const uint8_t *ab = a + i * sizeof(struct block_q8_k);
		const uint8_t *aq = ab + offsetof(struct block_q8_k, qs);
		float ad = load_f32(ab + offsetof(struct block_q8_k, d));
		__m256i bsums =
			load256(ab + offsetof(struct block_q8_k, bsums));
		for (int r = 0; r < nr; r++)
			prefetch_block((uintptr_t)w + (r + nr) * rb, bsz);
		acc0 = step_q6(w, aq, bsums, ad, acc0);
		if (nr > 1)
			acc1 = step_q6(w + rb, aq, bsums, ad, acc1);
	}
	y[0] = hsum8(acc0);
	if (nr > 1)
		y[1] = hsum8(acc1);
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

/* sum of the 8 int32 lanes */
static inline int hsum8_epi32(__m256i v)
{
	__m128i s = _mm_add_epi32(_mm256_castsi256_si128(v),
				  _mm256_extracti128_si256(v, 1));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
	return _mm_cvtsi128_si32(s);
}

/* |x| of 8 floats */
static inline __m256 abs8(const float *x)
{
	return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x));
}

/*
 * 32 floats times iscale, rounded to nearest even (the MXCSR default),
 * at most 127, stored as bytes; returns the two bsums of 16.
 */
static inline void quantize32(const float *x, __m256 vs, uint8_t *qs,
			      int16_t bsums[2])
{
	const __m256i q_max = _mm256_set1_epi32(127);
	/* packs interleaves 128-bit halves; this puts the bytes back */
	const __m256i unzip = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	__m256i q[4];

	for (int k = 0; k < 4; k++)
		q[k] = _mm256_min_epi32(
			_mm256_cvtps_epi32(
				_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vs)),
			q_max);
	bsums[0] = (int16_t)hsum8_epi32(_mm256_add_epi32(q[0], q[1]));
	bsums[1] = (int16_t)hsum8_epi32(_mm256_add_epi32(q[2], q[3]));
	__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]),
				       _mm256_packs_epi32(q[2], q[3]));
	_mm256_storeu_si256((__m256i *)qs,
			    _mm256_permutevar8x32_epi32(p, unzip));
}

/*
 * Q8_K activation, bit-identical to the reference: the first element of
 * largest magnitude maps to -127, qs = round_even(x * -127 / max) <= 127.
 */
static void quantize_q8_k(const float *x, void *dst, int64_t n)
{
	for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
		uint8_t *b = (uint8_t *)dst + i * sizeof(struct block_q8_k);
		uint8_t *qs = b + offsetof(struct block_q8_k, qs);
		int16_t bsums[QK_K / 16];
		__m256 vmax = _mm256_setzero_ps();

		for (int v = 0; v < QK_K / 8; v++)
			vmax = _mm256_max_ps(vmax, abs8(x + 8 * v));
		__m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax),
				       _mm256_extractf128_ps(vmax, 1));
		m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
		m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
		float amax = _mm_cvtss_f32(m4);
		if (amax == 0) {
			memset(b, 0, sizeof(struct block_q8_k));
			continue;
		}
		float max = 0;
		__m256 vamax = _mm256_set1_ps(amax);
		for (int v = 0; v < QK_K / 8; v++) {
			__m256 eq = _mm256_cmp_ps(abs8(x + 8 * v), vamax,
						  _CMP_EQ_OQ);
			int m = _mm256_movemask_ps(eq);
			if (m) {
				max = x[8 * v + __builtin_ctz((unsigned)m)];
				break;
			}
		}
		float iscale = -127.f / max, d = 1 / iscale;
		for (int g = 0; g < QK_K / 32; g++)
			quantize32(x + 32 * g, _mm256_set1_ps(iscale),
				   qs + 32 * g, bsums + 2 * g);
		memcpy(b + offsetof(struct block_q8_k, bsums), bsums,
		       sizeof(bsums));
		memcpy(b + offsetof(struct block_q8_k, d), &d, sizeof(d));
	}
}

void kern_fill_avx2_k(struct kern_table *t)
{
	t->ops[KT_Q4_K].matvec = matvec_q4_k;
	t->ops[KT_Q5_K].matvec = matvec_q5_k;
	t->ops[KT_Q6_K].matvec = matvec_q6_k;
	t->quantize_act[KT_Q8_K] = quantize_q8_k;
}
