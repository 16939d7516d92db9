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
 * activation block, each from its own part of the row range (kern_passes),
 * and every row is prefetched kern_prefetch_ahead(1, row_bytes) ahead. The
 * integer sums equal kern_ref_k.c's; only float rounding order differs.
 *
 * Prefill has a batched product, matmul_q*_k, at the end of the file.
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

/* nr (1..KROWS) rows of Q4_K/Q5_K at w, pitch bytes apart, into y[0],
 * y[ys]; each row's lines prefetched ahead bytes on */
static inline __attribute__((always_inline)) void
rows_k4(const uint8_t *w, size_t pitch, size_t ahead, const uint8_t *a,
	int64_t nb, float *y, int64_t ys, const int nr, const int q5)
{
	const size_t bsz = q5 ? sizeof(struct block_q5_k) :
				sizeof(struct block_q4_k);
	__m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;

	for (int64_t i = 0; i < nb; i++, w += bsz) {
		struct act_k4 act;
		prep_act_k4(a + i * sizeof(struct block_q8_k), &act);
		for (int r = 0; r < nr; r++)
			prefetch_block((uintptr_t)w + r * pitch + ahead, bsz);
		acc0 = step_k4(w, &act, q5, acc0);
		if (nr > 1)
			acc1 = step_k4(w + pitch, &act, q5, acc1);
	}
	y[0] = hsum8(acc0);
	if (nr > 1)
		y[ys] = hsum8(acc1);
}

/* Rows [r0, r1), KROWS a pass from separate parts of the range
 * (kern_passes) */
static inline __attribute__((always_inline)) void
matvec_k4(const void *w, size_t row_bytes, const void *act, float *y,
	  int64_t n, int64_t r0, int64_t r1, const int q5)
{
	const uint8_t *base = w;
	const size_t ahead = kern_prefetch_ahead(1, row_bytes);
	struct kern_passes ps = kern_passes(r0, r1, KROWS);
	int64_t r, q;

	for (int k; (k = kern_pass_next(&ps, &r, &q));)
		if (k == KROWS)
			rows_k4(base + r * row_bytes, q * row_bytes, ahead, act,
				n / QK_K, y + r, q, KROWS, q5);
		else
			rows_k4(base + r * row_bytes, row_bytes, ahead, act,
				n / QK_K, y + r, 1, 1, q5);
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

/* as rows_k4, for Q6_K */
static inline __attribute__((always_inline)) void
rows_q6(const uint8_t *w, size_t pitch, size_t ahead, const uint8_t *a,
	int64_t nb, float *y, int64_t ys, const int nr)
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
			prefetch_block((uintptr_t)w + r * pitch + ahead, bsz);
		acc0 = step_q6(w, aq, bsums, ad, acc0);
		if (nr > 1)
			acc1 = step_q6(w + pitch, aq, bsums, ad, acc1);
	}
	y[0] = hsum8(acc0);
	if (nr > 1)
		y[ys] = hsum8(acc1);
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

/* ---- batched product for prefill (kern_matmul_fn) ------------------------
 *
 * The plan of kern_avx512_k.c's matmul with 8 rows per vector and no VNNI:
 * weights repacked so that int32 lane r of q[v] holds the four u8 values
 * of elements 4v .. 4v+3 of row r; per token, vpmaddubsw against the
 * broadcast activation dword v gives int16 pair sums that are added up in
 * int16 for as many vectors as cannot overflow (MM_FLUSH: 8 for Q4_K,
 * 4 for Q5_K, 2 for Q6_K: 2 x 63 x 127 x 2 <= 32767), then one vpmaddwd
 * against the sub-block scale as an (s, s) int16 pair per row gives int32.
 * The min terms (Q4_K/Q5_K) and Q6_K's "- 32" come from the bsums by
 * vpmaddwd; a super-block ends in one conversion and FMA per term. The
 * integer sums per super-block are exactly those of kern_ref_k.c.
 */

#define MM_ROWS 8  /* rows per group: one int32 lane each */
#define MM_TOK 4   /* tokens per tile: 3 accumulators each (of 16 ymm) */
#define MM_CHUNK 4 /* super-blocks repacked at a time (~11 KiB) */

/* One super-block of a group of MM_ROWS rows, one row per int32 lane */
struct mm_blk {
	__m256i q[QK_K / 4]; /* u8 values of elements 4v .. 4v+3 */
	__m256i sc[16];      /* (s, s) int16 pairs: Q4_K/Q5_K sc of 8
				sub-blocks of 32; Q6_K scales of 16 of 16 */
	__m256i mb[8];       /* int16 pairs: Q4_K/Q5_K (m_2p, m_2p+1)
				against sub-block sums (B_2p, B_2p+1)
				(p < 4); Q6_K (-32 s_2p, -32 s_2p+1)
				against bsums (2p, 2p+1) */
	__m256 d, dmin;      /* dmin: Q4_K/Q5_K only */
};

/* x[r] (r < 8) holds 8 dwords of row r; afterwards x[c] holds dword c of
 * every row, row r in lane r */
static inline __attribute__((always_inline)) void tr8x8(__m256i x[8])
{
	__m256i t[8], u[8];

	for (int i = 0; i < 8; i += 2) {
		t[i] = _mm256_unpacklo_epi32(x[i], x[i + 1]);
		t[i + 1] = _mm256_unpackhi_epi32(x[i], x[i + 1]);
	}
	/* u[4g + j], 128-bit lane L: rows 4g .. 4g+3 of column 4L + j */
	for (int i = 0; i < 8; i += 4) {
		u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
		u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
		u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
		u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
	}
	for (int j = 0; j < 4; j++) {
		x[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
		x[4 + j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
	}
}

/* the 32 bytes at row[r] + at of 8 rows, x[c] lane r = dword c */
static inline __attribute__((always_inline)) void
load_t8(const uint8_t *const row[MM_ROWS], size_t at, __m256i x[8])
{
	for (int r = 0; r < 8; r++)
		x[r] = load256(row[r] + at);
	tr8x8(x);
}

/* a | (b & c) */
static inline __attribute__((always_inline)) __m256i
or_and(__m256i a, __m256i b, __m256i c)
{
	return _mm256_or_si256(a, _mm256_and_si256(b, c));
}

/* x shifted left by s bits (right by -s) in each 32-bit lane */
static inline __attribute__((always_inline)) __m256i shl32(__m256i x, int s)
{
	return s >= 0 ? _mm256_slli_epi32(x, s) : _mm256_srli_epi32(x, -s);
}

/* int32 lanes (each of which fits int16) -> (v, v) int16 pairs */
static inline __attribute__((always_inline)) __m256i pair16(__m256i v)
{
	return _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)),
			       _mm256_slli_epi32(v, 16));
}

/* (lo, hi) int16 pairs from two int32 vectors whose lanes fit int16 */
static inline __attribute__((always_inline)) __m256i
pair16x2(__m256i lo, __m256i hi)
{
	return _mm256_or_si256(_mm256_and_si256(lo, _mm256_set1_epi32(0xFFFF)),
			       _mm256_slli_epi32(hi, 16));
}

/* the f16 in the low 16 bits of each int32 lane, as float */
static inline __attribute__((always_inline)) __m256 f16_lanes(__m256i v)
{
	v = _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF));
	return _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(v),
						_mm256_extracti128_si256(v, 1)));
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
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	const __m256i b4 = _mm256_set1_epi8(0x10);
	const size_t qs_at = q5 ? offsetof(struct block_q5_k, qs) :
				  offsetof(struct block_q4_k, qs);
	__m256i h[8], x[8];

	if (q5)
		load_t8(row, at + offsetof(struct block_q5_k, qh), h);
	for (int hh = 0; hh < 4; hh++) {
		load_t8(row, at + qs_at + 32 * hh, x);
		for (int m = 0; m < 8; m++) {
			__m256i lo = _mm256_and_si256(x[m], m4);
			__m256i hi = _mm256_and_si256(
				_mm256_srli_epi32(x[m], 4), m4);

			if (q5) { /* sub-blocks 2hh, 2hh + 1: bit -> bit 4 */
				lo = or_and(lo, shl32(h[m], 4 - 2 * hh), b4);
				hi = or_and(hi, shl32(h[m], 3 - 2 * hh), b4);
			}
			o->q[16 * hh + m] = lo;
			o->q[16 * hh + 8 + m] = hi;
		}
	}

	/* header dwords: d | dmin << 16, then scales[0..12) as u0, u1, u2;
	 * kern_get_scale_min_k4 for all j, 8 rows at once */
	const __m256i m6 = _mm256_set1_epi32(63);
	const __m256i lo4 = _mm256_set1_epi32(0x0F);
	const __m256i m30 = _mm256_set1_epi32(0x30);
	__m256i mn[8];

	load_t8(row, at, x);
	for (int j = 0; j < 4; j++) {
		__m256i u0 = x[1], u1 = x[2], u2 = x[3];

		o->sc[j] = pair16(
			_mm256_and_si256(_mm256_srli_epi32(u0, 8 * j), m6));
		o->sc[j + 4] = pair16(or_and(
			_mm256_and_si256(_mm256_srli_epi32(u2, 8 * j), lo4),
			_mm256_srli_epi32(u0, 8 * j + 2), m30));
		mn[j] = _mm256_and_si256(_mm256_srli_epi32(u1, 8 * j), m6);
		mn[j + 4] = or_and(
			_mm256_and_si256(_mm256_srli_epi32(u2, 8 * j + 4), lo4),
			_mm256_srli_epi32(u1, 8 * j + 2), m30);
	}
	for (int p = 0; p < 4; p++)
		o->mb[p] = pair16x2(mn[2 * p], mn[2 * p + 1]);
	o->d = f16_lanes(x[0]);
	o->dmin = f16_lanes(_mm256_srli_epi32(x[0], 16));
}

/*
 * Repack Q6_K super-blocks. Within half hf, element 32k + 4m + b takes
 * the low (k < 2) or high nibble of ql dword 16hf + 8(k & 1) + m and bits
 * 2k, 2k + 1 of qh dword 8hf + m (the layout of q6k_value).
 */
static inline __attribute__((always_inline)) void
repack_q6(const uint8_t *const row[MM_ROWS], size_t at, struct mm_blk *o)
{
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	const __m256i m30 = _mm256_set1_epi8(0x30);
	__m256i h[8], l[8];

	for (int hf = 0; hf < 2; hf++) {
		load_t8(row, at + offsetof(struct block_q6_k, qh) + 32 * hf, h);
		for (int k1 = 0; k1 < 2; k1++) { /* k = k1 and k1 + 2 */
			load_t8(row, at + offsetof(struct block_q6_k, ql) +
					     64 * hf + 32 * k1, l);
			for (int m = 0; m < 8; m++) {
				__m256i *q = &o->q[32 * hf + 8 * k1 + m];

				q[0] = or_and(_mm256_and_si256(l[m], m4),
					      shl32(h[m], 4 - 2 * k1), m30);
				q[16] = or_and(_mm256_and_si256(
						       _mm256_srli_epi32(l[m], 4),
						       m4),
					       shl32(h[m], -2 * k1), m30);
			}
		}
	}

	/* the block's last 32 bytes: qh[50..64), scales[16], d; scale j is
	 * byte 14 + j of them */
	__m256i s8[8], s[16];

	_Static_assert(offsetof(struct block_q6_k, scales) - 14 ==
			       sizeof(struct block_q6_k) - 32,
		       "q6_K tail layout");
	load_t8(row, at + sizeof(struct block_q6_k) - 32, s8);
	for (int j = 0; j < 16; j++) {
		const int e = 14 + j;

		s[j] = _mm256_srai_epi32(
			_mm256_slli_epi32(s8[e / 4], 24 - 8 * (e % 4)), 24);
		o->sc[j] = pair16(s[j]);
	}
	for (int p = 0; p < 8; p++)
		o->mb[p] = pair16x2(
			_mm256_sub_epi32(_mm256_setzero_si256(),
					 _mm256_slli_epi32(s[2 * p], 5)),
			_mm256_sub_epi32(_mm256_setzero_si256(),
					 _mm256_slli_epi32(s[2 * p + 1], 5)));
	o->d = f16_lanes(_mm256_srli_epi32(s8[7], 16));
	o->dmin = _mm256_setzero_ps();
}

/* dword at byte `at` of an activation block, broadcast */
static inline __attribute__((always_inline)) __m256i
act_dword(const uint8_t *a, size_t at)
{
	return _mm256_set1_epi32((int)load_u32(a + at));
}

/*
 * One repacked super-block against nt (<= MM_TOK) tokens' Q8_K blocks
 * a[t] (bp[t]: their sub-block sum pairs, Q4_K/Q5_K): acc[t] (lane r:
 * row r) += the block's part of the dot products. type: 4, 5 or 6. The
 * #pragma unrolls keep the per-token arrays in registers.
 */
static inline __attribute__((always_inline)) void
mm_block(const struct mm_blk *b, const uint8_t *const a[],
	 const uint32_t bp[][4], const int nt, __m256 acc[], const int type)
{
	const size_t qs_at = offsetof(struct block_q8_k, qs);
	const size_t bs_at = offsetof(struct block_q8_k, bsums);
	/* vectors per int16 flush, and per sub-block */
	const int flush = type == 4 ? 8 : type == 5 ? 4 : 2;
	const int vps = type == 6 ? 4 : 8;
	__m256i bi[MM_TOK], is[MM_TOK];

	/* Q6_K: start from -32 sum_j s_j bsums_j */
	#pragma GCC unroll 16
	for (int t = 0; t < nt; t++) {
		bi[t] = _mm256_setzero_si256();
		if (type == 6)
			#pragma GCC unroll 16
			for (int p = 0; p < 8; p++)
				bi[t] = _mm256_add_epi32(
					bi[t], _mm256_madd_epi16(
						       b->mb[p],
						       act_dword(a[t], bs_at + 4 * p)));
	}
	for (int v0 = 0; v0 < QK_K / 4; v0 += flush) {
		#pragma GCC unroll 16
		for (int m = 0; m < flush; m++) {
			const int v = v0 + m;
			const __m256i w = b->q[v];

			#pragma GCC unroll 16
			for (int t = 0; t < nt; t++) {
				__m256i p = _mm256_maddubs_epi16(
					w, act_dword(a[t], qs_at + 4 * v));
				is[t] = m ? _mm256_add_epi16(is[t], p) : p;
				/* keep the sum a chain: reassociated, the
				 * products all live at once and spill */
				__asm__("" : "+x"(is[t]));
			}
		}
		#pragma GCC unroll 16
		for (int t = 0; t < nt; t++)
			bi[t] = _mm256_add_epi32(
				bi[t], _mm256_madd_epi16(is[t], b->sc[v0 / vps]));
	}
	/* Q4_K/Q5_K: min terms sum_j m_j B_j */
	if (type != 6)
		#pragma GCC unroll 16
		for (int t = 0; t < nt; t++) {
			is[t] = _mm256_setzero_si256();
			#pragma GCC unroll 16
			for (int p = 0; p < 4; p++)
				is[t] = _mm256_add_epi32(
					is[t], _mm256_madd_epi16(
						       b->mb[p],
						       _mm256_set1_epi32((int)bp[t][p])));
		}
	#pragma GCC unroll 16
	for (int t = 0; t < nt; t++) {
		__m256 ad = _mm256_set1_ps(
			load_f32(a[t] + offsetof(struct block_q8_k, d)));

		acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(bi[t]),
					 _mm256_mul_ps(b->d, ad), acc[t]);
		if (type != 6)
			acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(is[t]),
						  _mm256_mul_ps(b->dmin, ad),
						  acc[t]);
	}
}

/*
 * nc repacked super-blocks against nt tokens: activation t's first block
 * at a0 + t * as, results for the rows in mask k (all ones in the lanes
 * to store) at y + t * ldy (added to what is there unless first).
 */
static inline __attribute__((always_inline)) void
mm_tile(const struct mm_blk *blk, int nc, const uint8_t *a0, size_t as,
	float *y, int64_t ldy, __m256i k, int first, const int nt,
	const int type)
{
	const uint8_t *a[MM_TOK];
	__m256 acc[MM_TOK];
	/* Q4_K/Q5_K: sub-block sums B_j = bsums[2j] + bsums[2j+1] as
	 * int16 (|B_j| <= 32 * 127), pairs (B_2p, B_2p+1) in dword p */
	uint32_t bp[MM_CHUNK][MM_TOK][4];

	#pragma GCC unroll 16
	for (int t = 0; t < nt; t++) {
		a[t] = a0 + t * as;
		acc[t] = first ? _mm256_setzero_ps() :
				 _mm256_maskload_ps(y + t * ldy, k);
	}
	if (type != 6)
		for (int c = 0; c < nc; c++)
			#pragma GCC unroll 16
			for (int t = 0; t < nt; t++) {
				__m256i s = _mm256_madd_epi16(
					load256(a[t] + c * sizeof(struct block_q8_k) +
						offsetof(struct block_q8_k, bsums)),
					_mm256_set1_epi16(1));
				__m128i s16 = _mm_packs_epi32(
					_mm256_castsi256_si128(s),
					_mm256_extracti128_si256(s, 1));
				_mm_storeu_si128((__m128i *)bp[c][t], s16);
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
		_mm256_maskstore_ps(y + t * ldy, k, acc[t]);
}

/* mm_tile with nt a constant (1 .. MM_TOK) */
static inline __attribute__((always_inline)) void
mm_tile_n(const struct mm_blk *blk, int nc, const uint8_t *a0, size_t as,
	  float *y, int64_t ldy, __m256i k, int first, int nt,
	  const int type)
{
	switch (nt) {
	case 1: mm_tile(blk, nc, a0, as, y, ldy, k, first, 1, type); break;
	case 2: mm_tile(blk, nc, a0, as, y, ldy, k, first, 2, type); break;
	case 3: mm_tile(blk, nc, a0, as, y, ldy, k, first, 3, type); break;
	default: mm_tile(blk, nc, a0, as, y, ldy, k, first, 4, type); break;
	}
}

_Static_assert(MM_TOK == 4, "mm_tile_n instantiates 1 .. 4 tokens");

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
		const __m256i k = _mm256_cmpgt_epi32(
			_mm256_set1_epi32(nr),
			_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
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
					  nt, type);
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

void kern_fill_avx2_k(struct kern_table *t)
{
	t->ops[KT_Q4_K].matvec = matvec_q4_k;
	t->ops[KT_Q5_K].matvec = matvec_q5_k;
	t->ops[KT_Q6_K].matvec = matvec_q6_k;
	t->ops[KT_Q4_K].matmul = matmul_q4_k;
	t->ops[KT_Q5_K].matmul = matmul_q5_k;
	t->ops[KT_Q6_K].matmul = matmul_q6_k;
	t->quantize_act[KT_Q8_K] = quantize_q8_k;
}
