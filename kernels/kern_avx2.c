/*
 * kern_avx2.c - AVX2/FMA/F16C matvec for the float types and the
 * 32-element formats, the batched product of the 32-element formats for
 * prefill (matmul, see its section), f16/bf16 dequantization, and the
 * Q8_A activation quantizer.
 *
 * The fallback below AVX-512, same plan as kern_avx512.c in ymm registers.
 * The weights of a block become unsigned bytes u in element order;
 * pmaddubsw multiplies them by the activation quants (signed) and pmaddwd
 * sums pairs into int32 lanes:
 *   q4_0, q5_0: u = q + 8 (+ 16), the nibble as stored; off * a (one
 *               pmaddubsw, shared by the rows) is taken off the int16
 *               pair sums, so the dot is ggml's exact sum(q a);
 *   q4_1, q5_1: u = q, plus m_w * s_a eight blocks at a time;
 *   q8_0:       |q| times the activation with q's sign (pmaddubsw would
 *               saturate on q + 128).
 * q4_0 and q4_1 take two blocks a ymm, a whole group of 8 blocks reduced
 * to one int32 a block before the scales (q4_group8; q32_pairs for a
 * row's last < 8 blocks), the others one (q32_singles). Block scales are read 8 at a time per row with scalar
 * loads (AVX2 gathers are slow on Zen), multiplied by the activation
 * scales into a small stack array and broadcast from there, which costs a
 * load rather than an ALU op. Four rows share each activation load, one
 * from each quarter of the row range (kern_passes: four streams far
 * apart); the next rows are prefetched while a pass runs
 * (kern_prefetch_ahead).
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/kern_impl.h"

#define MV_ROWS 4 /* rows a pass, one from each quarter (kern_passes) */

/* ---- float types ------------------------------------------------------- */

/* 8 weights at p as floats */
static inline __attribute__((always_inline)) __m256
load_w8(uint32_t type, const uint8_t *p)
{
	switch (type) {
	case KT_F32:
		return _mm256_loadu_ps((const float *)p);
	case KT_F16:
		return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
	default: /* KT_BF16 */
		return _mm256_castsi256_ps(_mm256_slli_epi32(
			_mm256_cvtepu16_epi32(
				_mm_loadu_si128((const __m128i *)p)), 16));
	}
}

static inline __attribute__((always_inline)) float hsum8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) void
mv_float_rows(uint32_t type, int R, const uint8_t *w, size_t pitch,
	      const float *x, float *y, int64_t ys, int64_t n, size_t ahead)
{
	const size_t es = type == KT_F32 ? 4 : 2;
	__m256 acc[MV_ROWS][2];
	int64_t i = 0;

	#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		acc[r][0] = acc[r][1] = _mm256_setzero_ps();
	for (; i + 16 <= n; i += 16) {
		__m256 x0 = _mm256_loadu_ps(x + i);
		__m256 x1 = _mm256_loadu_ps(x + i + 8);

		#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			const uint8_t *p = w + r * pitch + i * es;

			/* the same bytes of a later pass's rows */
			_mm_prefetch((const char *)p + ahead, _MM_HINT_T0);
			acc[r][0] = _mm256_fmadd_ps(load_w8(type, p), x0,
						    acc[r][0]);
			acc[r][1] = _mm256_fmadd_ps(load_w8(type, p + 8 * es),
						    x1, acc[r][1]);
		}
	}
	for (; i < n; i += 8) {
		/* the tail through zero-padded copies: no read past the row */
		int m = n - i >= 8 ? 8 : (int)(n - i);
		float xt[8] = { 0 };
		uint8_t wt[32] = { 0 };

		memcpy(xt, x + i, m * sizeof(float));
		#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			memcpy(wt, w + r * pitch + i * es, m * es);
			acc[r][0] = _mm256_fmadd_ps(load_w8(type, wt),
						    _mm256_loadu_ps(xt),
						    acc[r][0]);
		}
	}
	#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		y[r * ys] = hsum8(_mm256_add_ps(acc[r][0], acc[r][1]));
}

static inline __attribute__((always_inline)) void
matvec_float(uint32_t type, const void *w, size_t row_bytes, const void *act,
	     float *y, int64_t n, int64_t r0, int64_t r1)
{
	const uint8_t *wb = w;
	const size_t ahead = kern_prefetch_ahead(1, row_bytes);
	struct kern_passes ps = kern_passes(r0, r1, MV_ROWS);
	int64_t r, q;

	for (int k; (k = kern_pass_next(&ps, &r, &q));)
		if (k == MV_ROWS)
			mv_float_rows(type, MV_ROWS, wb + r * row_bytes,
				      q * row_bytes, act, y + r, q, n, ahead);
		else
			mv_float_rows(type, 1, wb + r * row_bytes, row_bytes,
				      act, y + r, 1, n, ahead);
}

static void matvec_f32(const void *w, size_t row_bytes, const void *act,
		       float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_float(KT_F32, w, row_bytes, act, y, n, r0, r1);
}

static void matvec_f16(const void *w, size_t row_bytes, const void *act,
		       float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_float(KT_F16, w, row_bytes, act, y, n, r0, r1);
}

static void matvec_bf16(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_float(KT_BF16, w, row_bytes, act, y, n, r0, r1);
}

/* f16 and bf16 rows to floats, 8 at a time, the tail scalar */
static void dequant_f16(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	int64_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, load_w8(KT_F16, p + 2 * i));
	for (; i < n; i++) {
		kern_f16 h;

		memcpy(&h, p + 2 * i, sizeof(h));
		dst[i] = kern_f16_to_f32(h);
	}
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;
	int64_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i, load_w8(KT_BF16, p + 2 * i));
	for (; i < n; i++) {
		kern_bf16 h;

		memcpy(&h, p + 2 * i, sizeof(h));
		dst[i] = kern_bf16_to_f32(h);
	}
}

/* ---- 32-element formats ------------------------------------------------ */

static inline __attribute__((always_inline)) int qs_off(uint32_t type)
{
	switch (type) {
	case KT_Q4_1: return 4;
	case KT_Q5_0: return 6;
	case KT_Q5_1: return 8;
	default: return 2; /* q4_0, q8_0 */
	}
}

static inline __attribute__((always_inline)) size_t type_size(uint32_t type)
{
	switch (type) {
	case KT_Q4_0: return sizeof(struct block_q4_0);
	case KT_Q4_1: return sizeof(struct block_q4_1);
	case KT_Q5_0: return sizeof(struct block_q5_0);
	case KT_Q5_1: return sizeof(struct block_q5_1);
	default: return sizeof(struct block_q8_0);
	}
}

static inline __attribute__((always_inline)) int quant_off(uint32_t type)
{
	return type == KT_Q4_0 ? 8 : type == KT_Q5_0 ? 16 : 0;
}

static inline __attribute__((always_inline)) int has_min(uint32_t type)
{
	return type == KT_Q4_1 || type == KT_Q5_1;
}

static inline __attribute__((always_inline)) int has_qh(uint32_t type)
{
	return type == KT_Q5_0 || type == KT_Q5_1;
}

/* 0x10 in byte j where bit j of the little-endian qh at p is set */
static inline __attribute__((always_inline)) __m256i
qh_bytes(const uint8_t *p)
{
	const __m256i shuf = _mm256_set_epi64x(
		0x0303030303030303, 0x0202020202020202,
		0x0101010101010101, 0x0000000000000000);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201);
	uint32_t h;
	__m256i v;

	memcpy(&h, p, sizeof(h));
	v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
	v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
	return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* Dot of one block's 32 quants with the activation quants A: eight int32
 * partial sums of q * a; corr holds the int16 pair sums of off * a. */
static inline __attribute__((always_inline)) __m256i
block_dot(uint32_t type, const uint8_t *p, __m256i A, __m256i corr)
{
	const __m256i ones = _mm256_set1_epi16(1);
	__m256i P;

	if (type == KT_Q8_0) {
		__m256i q = _mm256_loadu_si256((const __m256i *)(p + 2));

		P = _mm256_maddubs_epi16(_mm256_abs_epi8(q),
					 _mm256_sign_epi8(A, q));
	} else {
		__m128i x = _mm_loadu_si128((const __m128i *)(p + qs_off(type)));
		__m256i u = _mm256_and_si256(
			_mm256_set_m128i(_mm_srli_epi16(x, 4), x),
			_mm256_set1_epi8(0x0f));

		if (has_qh(type))
			u = _mm256_or_si256(u, qh_bytes(p + (type == KT_Q5_1 ? 4 : 2)));
		P = _mm256_maddubs_epi16(u, A);
		if (quant_off(type))
			P = _mm256_sub_epi16(P, corr);
	}
	return _mm256_madd_epi16(P, ones);
}

/* The first four bytes of each of the nblk <= 8 blocks of stride bytes
 * at p, one block a dword, zero past nblk. Scalar loads: AVX2 gathers are
 * slower on Zen, and the integer ports are idle here anyway. */
static inline __attribute__((always_inline)) __m256i
load_heads(const uint8_t *p, int stride, int nblk)
{
	uint64_t q[4];

	#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		uint32_t lo = 0, hi = 0;

		if (2 * i < nblk)
			memcpy(&lo, p + 2 * i * stride, 4);
		if (2 * i + 1 < nblk)
			memcpy(&hi, p + (2 * i + 1) * stride, 4);
		q[i] = lo | (uint64_t)hi << 32;
	}
	return _mm256_set_epi64x((long long)q[3], (long long)q[2],
				 (long long)q[1], (long long)q[0]);
}

/* The qs of activation block i of ag */
static inline const __m256i *act_qs(const uint8_t *ag, int i)
{
	return (const __m256i *)(ag + i * sizeof(struct block_q8_a) +
				 offsetof(struct block_q8_a, qs));
}

/* One block a step: acc[r] += d_w d_a sum(q a), sc[r][j] = d_w d_a */
static inline __attribute__((always_inline)) void
q32_singles(uint32_t type, int R, const uint8_t *w, size_t pitch,
	    const uint8_t *ag, int64_t b0, int nblk, float sc[][8],
	    __m256 *acc)
{
	const size_t ts = type_size(type);

	for (int j = 0; j < nblk; j++) {
		__m256i A = _mm256_loadu_si256(act_qs(ag, j));
		__m256i corr = _mm256_maddubs_epi16(
			_mm256_set1_epi8((char)quant_off(type)), A);

		#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			__m256i D = block_dot(type,
					      w + r * pitch + (b0 + j) * ts,
					      A, corr);

			acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(D),
						 _mm256_broadcast_ss(&sc[r][j]),
						 acc[r]);
		}
	}
}

/* q4_0 and q4_1, two blocks a step: one ymm holds the qs of both, its low
 * nibbles (elements 0..15 of each) and high nibbles (16..31) meet the two
 * activations rearranged the same way; four lanes a block. */
static inline __attribute__((always_inline)) void
q32_pairs(uint32_t type, int R, const uint8_t *w, size_t pitch,
	  const uint8_t *ag, int64_t b0, int nblk, float sc[][8],
	  __m256 *acc)
{
	const size_t ts = type_size(type);
	const int qo = qs_off(type);
	const __m256i nib = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
	const __m256i off = _mm256_set1_epi8((char)quant_off(type));

	for (int j = 0; j < nblk; j += 2) {
		/* an odd tail repeats the block */
		const int j1 = j + 1 < nblk ? j + 1 : j;
		__m256i a0 = _mm256_loadu_si256(act_qs(ag, j));
		__m256i a1 = _mm256_loadu_si256(act_qs(ag, j1));
		__m256i alo = _mm256_permute2x128_si256(a0, a1, 0x20);
		__m256i ahi = _mm256_permute2x128_si256(a0, a1, 0x31);
		/* off * a in int16 pairs, both halves summed */
		__m256i corr = _mm256_add_epi16(_mm256_maddubs_epi16(off, alo),
						_mm256_maddubs_epi16(off, ahi));

		#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			const uint8_t *wq = w + r * pitch + b0 * ts + qo;
			__m256i v, P;
			__m256 S;

			v = _mm256_loadu2_m128i((const __m128i *)(wq + j1 * ts),
						(const __m128i *)(wq + j * ts));
			/* |sum of 4 (u - off) a| <= 4 * 15 * 127: no overflow */
			P = _mm256_add_epi16(
				_mm256_maddubs_epi16(_mm256_and_si256(v, nib), alo),
				_mm256_maddubs_epi16(
					_mm256_and_si256(_mm256_srli_epi16(v, 4), nib),
					ahi));
			/* past nblk, sc is 0: an odd tail's copy counts 0 */
			S = _mm256_set_m128(_mm_broadcast_ss(&sc[r][j + 1]),
					    _mm_broadcast_ss(&sc[r][j]));

			if (quant_off(type))
				P = _mm256_sub_epi16(P, corr);
			acc[r] = _mm256_fmadd_ps(
				_mm256_cvtepi32_ps(_mm256_madd_epi16(P, ones)),
				S, acc[r]);
		}
	}
}

/* One group of nblk <= 8 blocks from block b0 for R rows into acc[r]. */
static inline __attribute__((always_inline)) void
q32_group(uint32_t type, int R, const uint8_t *w, size_t pitch,
	  const uint8_t *act, int64_t b0, int nblk, size_t ahead, __m256 *acc)
{
	const size_t ts = type_size(type);
	const int as = sizeof(struct block_q8_a);
	const uint8_t *ag = act + b0 * as;
	__m256 da, sa = _mm256_setzero_ps();
	float sc[MV_ROWS][8] __attribute__((aligned(32)));

	da = _mm256_castsi256_ps(load_heads(ag, as, nblk));
	if (has_min(type))
		sa = _mm256_castsi256_ps(load_heads(
			ag + offsetof(struct block_q8_a, s), as, nblk));
	#pragma GCC unroll 4
	for (int r = 0; r < R; r++) {
		const uint8_t *wr = w + r * pitch + b0 * ts;
		/* the group's lines in a later pass's rows (a prefetch never
		 * faults) */
		uintptr_t pf = (uintptr_t)wr + ahead;
		/* d (and m beside it) of 8 blocks; lanes past nblk are 0 */
		__m256i g = load_heads(wr, (int)ts, nblk);
		__m128i lo = _mm256_castsi256_si128(g);
		__m128i hi = _mm256_extracti128_si256(g, 1);
		const __m128i low16 = _mm_set1_epi32(0xffff);
		__m256 dw = _mm256_cvtph_ps(_mm_packus_epi32(
			_mm_and_si128(lo, low16), _mm_and_si128(hi, low16)));

		for (size_t o = 0; o < nblk * ts; o += 64)
			_mm_prefetch((const char *)(pf + o), _MM_HINT_T0);
		_mm_prefetch((const char *)(pf + nblk * ts - 1), _MM_HINT_T0);

		if (has_min(type))
			acc[r] = _mm256_fmadd_ps(
				_mm256_cvtph_ps(_mm_packus_epi32(
					_mm_srli_epi32(lo, 16),
					_mm_srli_epi32(hi, 16))),
				sa, acc[r]);
		_mm256_store_ps(sc[r], _mm256_mul_ps(dw, da));
	}
	if (type == KT_Q4_0 || type == KT_Q4_1)
		q32_pairs(type, R, w, pitch, ag, b0, nblk, sc, acc);
	else
		q32_singles(type, R, w, pitch, ag, b0, nblk, sc, acc);
}

/* The order 0 2 4 6 1 3 5 7 in which q4_group8's phaddw tree leaves the
 * sums of a group's 8 blocks */
static const int ord8[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };

/* The float at p + j * stride for the 8 blocks j of a group, in ord8 */
static inline __attribute__((always_inline)) __m256
load_f32_8p(const uint8_t *p, int stride)
{
	uint64_t q[4];

	#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		uint32_t lo, hi;

		memcpy(&lo, p + ord8[2 * i] * stride, 4);
		memcpy(&hi, p + ord8[2 * i + 1] * stride, 4);
		q[i] = lo | (uint64_t)hi << 32;
	}
	return _mm256_castsi256_ps(_mm256_set_epi64x(
		(long long)q[3], (long long)q[2], (long long)q[1],
		(long long)q[0]));
}

/* The f16 at p + j * stride for the 8 blocks j of a group, in ord8, as
 * floats: put together in two 64-bit integers (the integer units have
 * time here; the vector ones do not), so one vmovq each and a cvtph. */
static inline __attribute__((always_inline)) __m256
load_f16_8p(const uint8_t *p, int stride)
{
	uint64_t q[2];

	#pragma GCC unroll 2
	for (int i = 0; i < 2; i++) {
		uint64_t v = 0;

		#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			uint16_t h;

			memcpy(&h, p + ord8[4 * i + j] * stride, 2);
			v |= (uint64_t)h << (16 * j);
		}
		q[i] = v;
	}
	return _mm256_cvtph_ps(_mm_set_epi64x((long long)q[1],
					      (long long)q[0]));
}

/*
 * q4_0 and q4_1, a full group of 8 blocks for R rows. The int16 pair sums
 * of the four block pairs (as q32_pairs makes them) meet in two phaddw
 * rounds, 16 products a lane (at most 16 * 15 * 127 = 30480, no wrap),
 * and one pmaddwd: one int32 per block, in lane order 0 2 4 6 1 3 5 7.
 * Then one cvt and one fmadd by d_w d_a a row per group, where q32_pairs
 * takes four of each plus the scale broadcasts. q4_0's offset goes the way
 * of q4_1's min (and of the matmul): u = q + 8, so
 *   d_w d_a sum(q a) = d_w d_a sum(u a) - 8 d_w s_a,   s_a = d_a sum(a).
 */
static inline __attribute__((always_inline)) void
q4_group8(uint32_t type, int R, const uint8_t *w, size_t pitch,
	  const uint8_t *act, int64_t b0, size_t ahead, __m256 *acc)
{
	const size_t ts = type_size(type);
	const int qo = qs_off(type), as = sizeof(struct block_q8_a);
	const uint8_t *ag = act + b0 * as;
	const __m256i nib = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
	__m256i alo[4], ahi[4];
	__m256 da, sa;

	da = load_f32_8p(ag, as);
	sa = load_f32_8p(ag + offsetof(struct block_q8_a, s), as);
	if (type == KT_Q4_0)
		sa = _mm256_mul_ps(sa, _mm256_set1_ps(-8.0f));
	#pragma GCC unroll 4
	for (int k = 0; k < 4; k++) {
		__m256i a0 = _mm256_loadu_si256(act_qs(ag, 2 * k));
		__m256i a1 = _mm256_loadu_si256(act_qs(ag, 2 * k + 1));

		alo[k] = _mm256_permute2x128_si256(a0, a1, 0x20);
		ahi[k] = _mm256_permute2x128_si256(a0, a1, 0x31);
	}
	#pragma GCC unroll 4
	for (int r = 0; r < R; r++) {
		const uint8_t *wr = w + r * pitch + b0 * ts;
		const uint8_t *wq = wr + qo;
		uintptr_t pf = (uintptr_t)wr + ahead;
		__m256 dw, mw;
		__m256i P[4], D;

		if (type == KT_Q4_1) {
			/* d and m side by side: one dword a block */
			__m256 g = load_f32_8p(wr, (int)ts);
			__m128i lo = _mm256_castsi256_si128(_mm256_castps_si256(g));
			__m128i hi = _mm256_extracti128_si256(_mm256_castps_si256(g), 1);
			const __m128i low16 = _mm_set1_epi32(0xffff);

			dw = _mm256_cvtph_ps(_mm_packus_epi32(
				_mm_and_si128(lo, low16), _mm_and_si128(hi, low16)));
			mw = _mm256_cvtph_ps(_mm_packus_epi32(
				_mm_srli_epi32(lo, 16), _mm_srli_epi32(hi, 16)));
		} else {
			dw = mw = load_f16_8p(wr, (int)ts);
		}
		for (size_t o = 0; o < 8 * ts; o += 64)
			_mm_prefetch((const char *)(pf + o), _MM_HINT_T0);
		_mm_prefetch((const char *)(pf + 8 * ts - 1), _MM_HINT_T0);

		#pragma GCC unroll 4
		for (int k = 0; k < 4; k++) {
			__m256i v = _mm256_loadu2_m128i(
				(const __m128i *)(wq + (2 * k + 1) * ts),
				(const __m128i *)(wq + 2 * k * ts));

			P[k] = _mm256_add_epi16(
				_mm256_maddubs_epi16(_mm256_and_si256(v, nib),
						     alo[k]),
				_mm256_maddubs_epi16(
					_mm256_and_si256(_mm256_srli_epi16(v, 4),
							 nib),
					ahi[k]));
		}
		D = _mm256_madd_epi16(
			_mm256_hadd_epi16(_mm256_hadd_epi16(P[0], P[1]),
					  _mm256_hadd_epi16(P[2], P[3])),
			ones);

		acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(D),
					 _mm256_mul_ps(dw, da), acc[r]);
		acc[r] = _mm256_fmadd_ps(mw, sa, acc[r]);
	}
}

/* R rows, pitch bytes apart, into y[0], y[ys], ...; prefetching ahead */
static inline __attribute__((always_inline)) void
mv_q32_rows(uint32_t type, int R, const uint8_t *w, size_t pitch,
	    const uint8_t *act, float *y, int64_t ys, int64_t nb, size_t ahead)
{
	__m256 acc[MV_ROWS];
	int64_t b0 = 0;

	#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		acc[r] = _mm256_setzero_ps();
	if (type == KT_Q4_0 || type == KT_Q4_1)
		for (; b0 + 8 <= nb; b0 += 8)
			q4_group8(type, R, w, pitch, act, b0, ahead, acc);
	for (; b0 + 8 <= nb; b0 += 8)
		q32_group(type, R, w, pitch, act, b0, 8, ahead, acc);
	if (b0 < nb)
		q32_group(type, R, w, pitch, act, b0, (int)(nb - b0), ahead,
			  acc);
	#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		y[r * ys] = hsum8(acc[r]);
}

static inline __attribute__((always_inline)) void
matvec_q32(uint32_t type, const void *w, size_t row_bytes, const void *act,
	   float *y, int64_t n, int64_t r0, int64_t r1)
{
	const uint8_t *wb = w;
	const size_t ahead = kern_prefetch_ahead(1, row_bytes);
	struct kern_passes ps = kern_passes(r0, r1, MV_ROWS);
	int64_t r, q;

	for (int k; (k = kern_pass_next(&ps, &r, &q));)
		if (k == MV_ROWS)
			mv_q32_rows(type, MV_ROWS, wb + r * row_bytes,
				    q * row_bytes, act, y + r, q, n / 32, ahead);
		else
			mv_q32_rows(type, 1, wb + r * row_bytes, row_bytes, act,
				    y + r, 1, n / 32, ahead);
}

static void matvec_q4_0(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_q32(KT_Q4_0, w, row_bytes, act, y, n, r0, r1);
}

static void matvec_q4_1(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_q32(KT_Q4_1, w, row_bytes, act, y, n, r0, r1);
}

static void matvec_q5_0(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_q32(KT_Q5_0, w, row_bytes, act, y, n, r0, r1);
}

static void matvec_q5_1(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_q32(KT_Q5_1, w, row_bytes, act, y, n, r0, r1);
}

static void matvec_q8_0(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_q32(KT_Q8_0, w, row_bytes, act, y, n, r0, r1);
}

/* ---- 32-element formats: batched product (prefill) --------------------- */

/*
 * matmul: kern_avx512.c's plan in ymm registers. A register tile is 8
 * rows (one int32 lane each) by MM_T tokens over a panel repacked once
 * per call and K chunk: lane i of q[b][k] holds the quants 4k .. 4k + 3
 * of block b of row i, unsigned as the matvec takes them (u = q + off,
 * or q itself for q8_0, which the tile turns into |q| against sign(a, q):
 * pmaddubsw would saturate on q + 128). pmaddubsw of that with a token's
 * activation dword, broadcast, gives int16 pair sums; those add up in
 * int16 over mm_steps() steps before pmaddwd widens them. Then per block
 * and (rows, token)
 *   acc += float(D) * (d_w d_a) + m_w s_a,
 * m_w being the min, or -off d_w for q4_0/q5_0 (absent for q8_0).
 * Chunks of MM_KB blocks run in order, the sums going through y.
 */
#define MM_T 4    /* tokens in a register tile */
#define MM_KB 32  /* blocks in a K chunk */
/* below this many tokens the per-token matvec is faster than repacking */
#define MM_MIN_TOK 2

struct mm_panel {
	__m256i q[MM_KB][8]; /* quants, see above */
	__m256 d[MM_KB];     /* d_w */
	__m256 m[MM_KB];     /* m_w, or -off d_w; unused for q8_0 */
};

/* Steps whose int16 pair sums add up before pmaddwd: four keep q5 under
 * 32767 (4 * 2 * 31 * 127) and ran ~20% faster for q4 than eight (fewer
 * live registers); q8_0's pairs reach 2 * 128 * 127 already. */
static inline __attribute__((always_inline)) int mm_steps(uint32_t type)
{
	return type == KT_Q8_0 ? 1 : 4;
}

/* Block boff (byte offset) of rows[0..8) into q[0..8), d and m: each
 * row's 32 quants in element order, then an 8x8 dword transpose. */
static inline __attribute__((always_inline)) void
mm_pack_block(uint32_t type, const uint8_t *const *rows, size_t boff,
	      __m256i *q, __m256 *d, __m256 *m)
{
	uint16_t dh[8], mh[8];
	__m256i x[8], t[8], u[8];

	#pragma GCC unroll 8
	for (int r = 0; r < 8; r++) {
		const uint8_t *p = rows[r] + boff;

		memcpy(&dh[r], p, sizeof(dh[r]));
		if (has_min(type))
			memcpy(&mh[r], p + 2, sizeof(mh[r]));
		if (type == KT_Q8_0) {
			x[r] = _mm256_loadu_si256((const __m256i *)(p + 2));
		} else {
			const int qh = type == KT_Q5_1 ? 4 : 2;
			__m128i s = _mm_loadu_si128(
				(const __m128i *)(p + qs_off(type)));

			x[r] = _mm256_and_si256(
				_mm256_set_m128i(_mm_srli_epi16(s, 4), s),
				_mm256_set1_epi8(0x0f));
			if (has_qh(type))
				x[r] = _mm256_or_si256(x[r], qh_bytes(p + qh));
		}
	}
	#pragma GCC unroll 4
	for (int i = 0; i < 8; i += 2) {
		t[i] = _mm256_unpacklo_epi32(x[i], x[i + 1]);
		t[i + 1] = _mm256_unpackhi_epi32(x[i], x[i + 1]);
	}
	/* u[4h + j]: rows 4h .. 4h + 3 of dwords j (low lane), j + 4 */
	#pragma GCC unroll 2
	for (int h = 0; h < 2; h++) {
		u[4 * h] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
		u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
		u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
		u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
	}
	#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {
		_mm256_store_si256(q + j, _mm256_permute2x128_si256(
						  u[j], u[4 + j], 0x20));
		_mm256_store_si256(q + 4 + j, _mm256_permute2x128_si256(
						      u[j], u[4 + j], 0x31));
	}
	*d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dh));
	if (has_min(type))
		*m = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)mh));
	else
		*m = _mm256_mul_ps(*d, _mm256_set1_ps(-(float)quant_off(type)));
}

/* Blocks [c0, c0 + nblk) of rows p .. p + 7 (rows >= r1 repeat row
 * r1 - 1) into pk. */
static inline __attribute__((always_inline)) void
mm_pack(uint32_t type, const uint8_t *w, size_t row_bytes, int64_t p,
	int64_t r1, int64_t c0, int nblk, struct mm_panel *pk)
{
	const size_t ts = type_size(type);
	const uint8_t *rows[8];

	for (int i = 0; i < 8; i++)
		rows[i] = w + (p + i < r1 ? p + i : r1 - 1) * row_bytes +
			  c0 * ts;
	for (int b = 0; b < nblk; b++)
		mm_pack_block(type, rows, b * ts, pk->q[b], &pk->d[b],
			      &pk->m[b]);
}

static inline float act_float(const uint8_t *p)
{
	float x;

	memcpy(&x, p, sizeof(x));
	return x;
}

static inline __m256i act_dword(const uint8_t *p)
{
	int32_t x;

	memcpy(&x, p, sizeof(x));
	return _mm256_set1_epi32(x);
}

/* The register tile: the panel's 8 rows by T tokens, token t's blocks at
 * act + t * act_stride (the chunk's first), nblk blocks, into
 * y + t * ldy under the row mask vm. first: the chunk starts the row,
 * else y holds the sum so far. */
static inline __attribute__((always_inline)) void
mm_tile(uint32_t type, int T, const struct mm_panel *pk, int nblk,
	const uint8_t *act, size_t act_stride, float *y, int64_t ldy,
	__m256i vm, int first)
{
	const int as = sizeof(struct block_q8_a), G = mm_steps(type);
	const __m256i ones = _mm256_set1_epi16(1);
	__m256 acc[MM_T];

	#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
		acc[t] = first ? _mm256_setzero_ps()
			       : _mm256_maskload_ps(y + t * ldy, vm);
	for (int b = 0; b < nblk; b++) {
		const uint8_t *ab = act + b * as;
		__m256i P[MM_T], D[MM_T];

		#pragma GCC unroll 8
		for (int k = 0; k < 8; k++) {
			__m256i W = _mm256_load_si256(&pk->q[b][k]);
			__m256i Wa = _mm256_abs_epi8(W);

			#pragma GCC unroll 4
			for (int t = 0; t < T; t++) {
				const uint8_t *qs = ab + t * act_stride +
					offsetof(struct block_q8_a, qs);
				__m256i A = act_dword(qs + 4 * k), pr, w32;

				if (type == KT_Q8_0)
					pr = _mm256_maddubs_epi16(
						Wa, _mm256_sign_epi8(A, W));
				else
					pr = _mm256_maddubs_epi16(W, A);
				P[t] = k % G ? _mm256_add_epi16(P[t], pr) : pr;
				if (k % G != G - 1)
					continue;
				w32 = _mm256_madd_epi16(P[t], ones);
				D[t] = k < G ? w32 : _mm256_add_epi32(D[t], w32);
			}
		}
		#pragma GCC unroll 4
		for (int t = 0; t < T; t++) {
			const uint8_t *at = ab + t * act_stride;
			__m256 da = _mm256_set1_ps(act_float(
				at + offsetof(struct block_q8_a, d)));

			__m256 sa = _mm256_set1_ps(act_float(
				at + offsetof(struct block_q8_a, s)));

			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(D[t]),
						 _mm256_mul_ps(pk->d[b], da),
						 acc[t]);
			if (type != KT_Q8_0)
				acc[t] = _mm256_fmadd_ps(pk->m[b], sa, acc[t]);
		}
	}
	#pragma GCC unroll 4
	for (int t = 0; t < T; t++)
		_mm256_maskstore_ps(y + t * ldy, vm, acc[t]);
}

/* Every token through the panel: whole tiles of MM_T, then the rest */
static inline __attribute__((always_inline)) void
mm_tokens(uint32_t type, const struct mm_panel *pk, int nblk,
	  const uint8_t *act, size_t act_stride, float *y, int64_t ldy,
	  int64_t n_tok, __m256i vm, int first)
{
	int64_t t = 0;

	for (; t + MM_T <= n_tok; t += MM_T)
		mm_tile(type, MM_T, pk, nblk, act + t * act_stride, act_stride,
			y + t * ldy, ldy, vm, first);
	act += t * act_stride;
	y += t * ldy;
	switch (n_tok - t) {
	case 1:
		mm_tile(type, 1, pk, nblk, act, act_stride, y, ldy, vm, first);
		break;
	case 2:
		mm_tile(type, 2, pk, nblk, act, act_stride, y, ldy, vm, first);
		break;
	case 3:
		mm_tile(type, 3, pk, nblk, act, act_stride, y, ldy, vm, first);
		break;
	default:
		break;
	}
}
_Static_assert(MM_T == 4, "mm_tokens handles leftovers up to 3 tokens");

static inline __attribute__((always_inline)) void
matmul_q32(uint32_t type, const void *w, size_t row_bytes, const void *act,
	   size_t act_stride, float *y, int64_t ldy, int64_t n, int64_t r0,
	   int64_t r1, int64_t n_tok)
{
	const int as = sizeof(struct block_q8_a);
	const int64_t nb = n / 32;
	const uint8_t *a = act;
	struct mm_panel pk __attribute__((aligned(32)));

	if (n_tok < MM_MIN_TOK || r0 >= r1) {
		for (int64_t t = 0; t < n_tok; t++)
			matvec_q32(type, w, row_bytes, a + t * act_stride,
				   y + t * ldy, n, r0, r1);
		return;
	}
	for (int64_t c0 = 0; c0 < nb; c0 += MM_KB) {
		int nblk = nb - c0 < MM_KB ? (int)(nb - c0) : MM_KB;

		for (int64_t p = r0; p < r1; p += 8) {
			/* lanes of the rows before r1 */
			const int left = (int)(r1 - p < 8 ? r1 - p : 8);
			__m256i vm = _mm256_cmpgt_epi32(
				_mm256_set1_epi32(left),
				_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));

			mm_pack(type, w, row_bytes, p, r1, c0, nblk, &pk);
			mm_tokens(type, &pk, nblk, a + c0 * as, act_stride,
				  y + p, ldy, n_tok, vm, c0 == 0);
		}
	}
}

static void matmul_q4_0(const void *w, size_t row_bytes, const void *act,
			size_t act_stride, float *y, int64_t ldy, int64_t n,
			int64_t r0, int64_t r1, int64_t n_tok)
{
	matmul_q32(KT_Q4_0, w, row_bytes, act, act_stride, y, ldy, n, r0, r1,
		   n_tok);
}

static void matmul_q4_1(const void *w, size_t row_bytes, const void *act,
			size_t act_stride, float *y, int64_t ldy, int64_t n,
			int64_t r0, int64_t r1, int64_t n_tok)
{
	matmul_q32(KT_Q4_1, w, row_bytes, act, act_stride, y, ldy, n, r0, r1,
		   n_tok);
}

static void matmul_q5_0(const void *w, size_t row_bytes, const void *act,
			size_t act_stride, float *y, int64_t ldy, int64_t n,
			int64_t r0, int64_t r1, int64_t n_tok)
{
	matmul_q32(KT_Q5_0, w, row_bytes, act, act_stride, y, ldy, n, r0, r1,
		   n_tok);
}

static void matmul_q5_1(const void *w, size_t row_bytes, const void *act,
			size_t act_stride, float *y, int64_t ldy, int64_t n,
			int64_t r0, int64_t r1, int64_t n_tok)
{
	matmul_q32(KT_Q5_1, w, row_bytes, act, act_stride, y, ldy, n, r0, r1,
		   n_tok);
}

static void matmul_q8_0(const void *w, size_t row_bytes, const void *act,
			size_t act_stride, float *y, int64_t ldy, int64_t n,
			int64_t r0, int64_t r1, int64_t n_tok)
{
	matmul_q32(KT_Q8_0, w, row_bytes, act, act_stride, y, ldy, n, r0, r1,
		   n_tok);
}

/* ---- Q8_A activation quantizer ------------------------------------------ */

/* roundf(): halfway cases away from zero, as the reference does */
static inline __m256 round_away(__m256 v)
{
	__m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	__m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
	__m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f),
				  _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
	__m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);

	return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

static void quantize_q8_a(const float *x, void *dst, int64_t n)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	uint8_t *out = dst;

	for (int64_t b = 0; b < n / QK8_A; b++, x += QK8_A) {
		__m256 v[4], m;
		__m256i q[4], p;
		__m128 m4;
		float amax, d, id, s;
		uint8_t *o = out + b * sizeof(struct block_q8_a);

		for (int i = 0; i < 4; i++)
			v[i] = _mm256_loadu_ps(x + 8 * i);
		m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]),
						_mm256_andnot_ps(sign, v[1])),
				  _mm256_max_ps(_mm256_andnot_ps(sign, v[2]),
						_mm256_andnot_ps(sign, v[3])));
		m4 = _mm_max_ps(_mm256_castps256_ps128(m),
				_mm256_extractf128_ps(m, 1));
		m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
		m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
		amax = _mm_cvtss_f32(m4);
		d = amax / 127;
		id = d != 0 ? 1.0f / d : 0.0f;
		for (int i = 0; i < 4; i++)
			q[i] = _mm256_cvtps_epi32(round_away(
				_mm256_mul_ps(v[i], _mm256_set1_ps(id))));
		s = d * hsum8(_mm256_cvtepi32_ps(_mm256_add_epi32(
			    _mm256_add_epi32(q[0], q[1]),
			    _mm256_add_epi32(q[2], q[3]))));
		/* int32 -> int8 through two packs, then undo their lane
		 * interleave */
		p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]),
				       _mm256_packs_epi32(q[2], q[3]));
		p = _mm256_permutevar8x32_epi32(
			p, _mm256_set_epi32(7, 3, 6, 2, 5, 1, 4, 0));
		memcpy(o + offsetof(struct block_q8_a, d), &d, sizeof(d));
		memcpy(o + offsetof(struct block_q8_a, s), &s, sizeof(s));
		_mm256_storeu_si256(
			(__m256i *)(o + offsetof(struct block_q8_a, qs)), p);
	}
}

/* kern_dot_f32_fn: four ymm accumulators, a scalar tail, one reduction */
static double dot_f32(const float *a, const float *b, int64_t n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	int64_t i = 0;
	float tail = 0;

	for (; i + 32 <= n; i += 32) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8),
				     _mm256_loadu_ps(b + i + 8), s1);
		s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16),
				     _mm256_loadu_ps(b + i + 16), s2);
		s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24),
				     _mm256_loadu_ps(b + i + 24), s3);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	for (; i < n; i++)
		tail += a[i] * b[i];
	return hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))) +
	       tail;
}

void kern_fill_avx2(struct kern_table *t)
{
	t->dot_f32 = dot_f32;
	t->ops[KT_F32].matvec = matvec_f32;
	t->ops[KT_F16] = (struct kern_ops){ .dequant = dequant_f16,
					     .matvec = matvec_f16 };
	t->ops[KT_BF16] = (struct kern_ops){ .dequant = dequant_bf16,
					     .matvec = matvec_bf16 };
	t->ops[KT_Q4_0].matvec = matvec_q4_0;
	t->ops[KT_Q4_1].matvec = matvec_q4_1;
	t->ops[KT_Q5_0].matvec = matvec_q5_0;
	t->ops[KT_Q5_1].matvec = matvec_q5_1;
	t->ops[KT_Q8_0].matvec = matvec_q8_0;
	t->ops[KT_Q4_0].matmul = matmul_q4_0;
	t->ops[KT_Q4_1].matmul = matmul_q4_1;
	t->ops[KT_Q5_0].matmul = matmul_q5_0;
	t->ops[KT_Q5_1].matmul = matmul_q5_1;
	t->ops[KT_Q8_0].matmul = matmul_q8_0;
	t->quantize_act[KT_Q8_A] = quantize_q8_a;
}
