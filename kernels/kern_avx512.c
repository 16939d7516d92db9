/*
 * kern_avx512.c - AVX-512 (F/BW/VL/DQ/VNNI) matvec for f32 and the
 * 32-element formats, their batched product for prefill (matmul, see
 * its section), dequantization of f16/bf16 and the 32-element formats
 * (bit-identical to the reference), and the Q8_A activation quantizer.
 * (f16/bf16 matvec is kern_avx2.c's; see kern_fill_avx512.)
 *
 * Decode streams every weight once per token, so these kernels are built
 * to keep up with DRAM (~37 GB/s a core, ~11 bytes a cycle): a Q4_0 block
 * (18 bytes) has to cost under two cycles, and does about one.
 *
 * 32-element formats. vpdpbusd multiplies unsigned weight bytes u by the
 * signed activation quants, four products into each int32 lane:
 *   q4_0, q5_0: u = q + 8 (+ 16), the nibble as stored;
 *   q8_0:       u = q + 128, the byte with its top bit flipped;
 *   q4_1, q5_1: u = q, with the min added as m_w * s_a.
 * The offset is taken out in integers, exactly: the accumulator starts at
 * -off * sum(a) per lane (vpdpbusd on the activation, shared by the
 * rows), so the int32 sums are ggml's sum(q a).
 * Layouts: q4_0/q4_1 put four blocks in a zmm (q32_quads: the 16 qs bytes
 * of each, low and high nibbles in turn); q5 puts two blocks in a zmm as
 * [b lo, b hi, b+1 lo, b+1 hi] 128-bit lanes, lo holding elements 0..15
 * and hi 16..31, the order of the activation's qs (q32_pairs); q8_0 takes
 * one block a ymm (q32_singles), which streams best.
 * Block scales are read 16 at a time (d, and m beside it; load_heads) and
 * multiplied by the activation scales once; each step's int32 lanes are
 * converted and scaled (vpermps picks each lane's block scale) into one
 * float accumulator per row. Four rows run together so each activation
 * load is shared, one from each quarter of the row range (kern_passes:
 * four streams far apart), and are reduced once at the end; each row is
 * prefetched kern_prefetch_ahead(1, row_bytes) ahead.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/kern_impl.h"

#define MV_ROWS 4 /* rows computed together */

/* ---- float types: f32 matvec, f16/bf16 dequant ------------------------ */

/* 16 weights at p as floats; k selects the elements to load (the rest
 * are zero and never touched, so a tail cannot fault). */
static inline __attribute__((always_inline)) __m512
load_w16(uint32_t type, const uint8_t *p, __mmask16 k)
{
	switch (type) {
	case KT_F32:
		return _mm512_maskz_loadu_ps(k, p);
	case KT_F16:
		return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
	default: /* KT_BF16: the high half of a float */
		return _mm512_castsi512_ps(_mm512_slli_epi32(
			_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p)),
			16));
	}
}

/* y[0..R) for R rows of a float type starting at w (used for f32); two
 * accumulators a row hide the FMA latency. */
static inline __attribute__((always_inline)) void
mv_float_rows(uint32_t type, int R, const uint8_t *w, size_t pitch,
	      const float *x, float *y, int64_t ys, int64_t n, size_t ahead)
{
	const size_t es = type == KT_F32 ? 4 : 2;
	__m512 acc[MV_ROWS][2];
	int64_t i = 0;

	#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		acc[r][0] = acc[r][1] = _mm512_setzero_ps();
	for (; i + 32 <= n; i += 32) {
		#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			const uint8_t *p = w + r * pitch + i * es;

			/* the same lines of a later row */
			#pragma GCC unroll 2
			for (size_t o = 0; o < 32 * es; o += 64)
				_mm_prefetch((const char *)p + ahead + o,
					     _MM_HINT_T0);
			#pragma GCC unroll 2
			for (int j = 0; j < 2; j++)
				acc[r][j] = _mm512_fmadd_ps(
					load_w16(type, p + 16 * j * es, 0xffff),
					_mm512_loadu_ps(x + i + 16 * j), acc[r][j]);
		}
	}
	for (; i < n; i += 16) {
		__mmask16 k = n - i >= 16 ? 0xffff : (1u << (n - i)) - 1;
		__m512 x0 = _mm512_maskz_loadu_ps(k, x + i);

		#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
			acc[r][0] = _mm512_fmadd_ps(
				load_w16(type, w + r * pitch + i * es, k),
				x0, acc[r][0]);
	}
	#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		y[r * ys] = _mm512_reduce_add_ps(
			_mm512_add_ps(acc[r][0], acc[r][1]));
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


/* f16 and bf16 rows to floats, 16 at a time, the tail masked */
static inline __attribute__((always_inline)) void
dequant_half(uint32_t type, const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;

	for (int64_t i = 0; i < n; i += 16) {
		__mmask16 k = n - i >= 16 ? 0xffff : (1u << (n - i)) - 1;

		_mm512_mask_storeu_ps(dst + i, k, load_w16(type, p + 2 * i, k));
	}
}

static void dequant_f16(const void *src, float *dst, int64_t n)
{
	dequant_half(KT_F16, src, dst, n);
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
	dequant_half(KT_BF16, src, dst, n);
}

/* ---- 32-element formats ------------------------------------------------ */

/* Where a block keeps its quants (qs), its fifth bits (qh), the offset
 * its unsigned quants carry, and whether it has a min. */
static inline __attribute__((always_inline)) int qs_off(uint32_t type)
{
	switch (type) {
	case KT_Q4_1: return 4;
	case KT_Q5_0: return 6;
	case KT_Q5_1: return 8;
	default: return 2; /* q4_0, q8_0 */
	}
}

static inline __attribute__((always_inline)) int qh_off(uint32_t type)
{
	return type == KT_Q5_1 ? 4 : 2;
}

static inline __attribute__((always_inline)) int quant_off(uint32_t type)
{
	switch (type) {
	case KT_Q4_0: return 8;
	case KT_Q5_0: return 16;
	case KT_Q8_0: return 128;
	default: return 0;
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

static inline __attribute__((always_inline)) int has_min(uint32_t type)
{
	return type == KT_Q4_1 || type == KT_Q5_1;
}

static inline __attribute__((always_inline)) int has_qh(uint32_t type)
{
	return type == KT_Q5_0 || type == KT_Q5_1;
}

/* The 64 unsigned quants of q5 blocks p0, p1 in [p0 lo, p0 hi, p1 lo,
 * p1 hi] order (see the file comment). */
static inline __attribute__((always_inline)) __m512i
load_pair(uint32_t type, const uint8_t *p0, const uint8_t *p1)
{
	const long long four = 0x0004000400040004; /* 16-bit shift counts */
	const int qo = qs_off(type);
	__m512i v;

	/* [qs0, qs0, qs1, qs1], then the high nibble in lanes 1 and 3 */
	v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p0 + qo)));
	v = _mm512_mask_broadcast_i32x4(
		v, 0xff00, _mm_loadu_si128((const __m128i *)(p1 + qo)));
	v = _mm512_srlv_epi16(v, _mm512_set_epi64(four, four, 0, 0, four, four,
						  0, 0));
	v = _mm512_and_si512(v, _mm512_set1_epi8(0x0f));
	if (has_qh(type)) {
		/* bit j of qh is element j: the same order, 32 bits a block */
		uint32_t h0, h1;

		memcpy(&h0, p0 + qh_off(type), sizeof(h0));
		memcpy(&h1, p1 + qh_off(type), sizeof(h1));
		v = _mm512_mask_add_epi8(v, _cvtu64_mask64(h0 | (uint64_t)h1 << 32),
					 v, _mm512_set1_epi8(16));
	}
	return v;
}

/* All-ones for the first bytes (<= 64) of a load that may end at a row's
 * end; a masked load does not fault on the bytes it leaves out. */
static inline __mmask64 bytes_mask(int64_t bytes)
{
	if (bytes <= 0)
		return 0;
	return bytes >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << bytes) - 1;
}

/* Four bytes at byte offset off (even) of each of the nblk <= 16 blocks
 * of stride (16..40) bytes at p, one block a dword: a weight block's d
 * (and m or qh beside it), an activation block's d or s. Gathers are slow
 * on Zen, so: 128-byte windows of four blocks each, every one picked
 * apart by one vpermt2w. A full group (nblk a multiple of 4, nblk * stride
 * >= 128) reads only its own nblk * stride bytes: a window that would run
 * past them starts earlier. Otherwise loads stop at the avail bytes from
 * p, and dwords past nblk are zero. */
static inline __attribute__((always_inline)) __m512i
load_heads(const uint8_t *p, int stride, int off, int nblk, int full,
	   int64_t avail)
{
	const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8,
					      7, 6, 5, 4, 3, 2, 1, 0);
	/* dword i = words w, w + 1 of block i % 4 of its window */
	const __m512i word = _mm512_add_epi32(
		_mm512_mullo_epi32(_mm512_and_si512(lane, _mm512_set1_epi32(3)),
				   _mm512_set1_epi32(stride / 2)),
		_mm512_set1_epi32(off / 2));
	const __m512i idx = _mm512_or_si512(
		word, _mm512_slli_epi32(_mm512_add_epi32(word, _mm512_set1_epi32(1)), 16));
	__m512i h = _mm512_setzero_si512();

	#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {
		int start = 4 * j * stride, back = 0;
		__m512i t0, t1, ix = idx;

		if (4 * j >= nblk)
			continue;
		if (full) {
			/* stay inside the group, indices shifted to match */
			back = start + 128 - nblk * stride;
			back = back > 0 ? back : 0;
			ix = _mm512_add_epi32(idx, _mm512_set1_epi32(back / 2 * 0x10001));
			t0 = _mm512_loadu_si512(p + start - back);
			t1 = _mm512_loadu_si512(p + start - back + 64);
		} else {
			t0 = _mm512_maskz_loadu_epi8(bytes_mask(avail - start),
						     p + start);
			t1 = _mm512_maskz_loadu_epi8(
				bytes_mask(avail - start - 64), p + start + 64);
		}
		h = _mm512_or_si512(h, _mm512_maskz_permutex2var_epi16(
					       (__mmask32)0xff << (8 * j), t0,
					       ix, t1));
	}
	if (!full && nblk < 16)
		h = _mm512_maskz_mov_epi32((__mmask16)((1u << nblk) - 1), h);
	return h;
}

/* The qs of activation block i of ag */
static inline const __m256i *act_qs(const uint8_t *ag, int i)
{
	return (const __m256i *)(ag + i * sizeof(struct block_q8_a) +
				 offsetof(struct block_q8_a, qs));
}

/* Blocks b0 + p, b0 + p + 1 of R rows a zmm (see the file comment), for
 * nblk blocks: acc[r] += d_w d_a sum(q a), with sc[r] holding d_w d_a of
 * the group's blocks by lane. */
static inline __attribute__((always_inline)) void
q32_pairs(uint32_t type, int R, const uint8_t *w, size_t row_bytes,
	  const uint8_t *ag, int64_t b0, int nblk, const __m512 *sc,
	  __m512 *acc)
{
	const size_t ts = type_size(type);
	/* scale index of a pair: lanes 0-7 block 0, lanes 8-15 block 1 */
	__m512i sidx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1,
					0, 0, 0, 0, 0, 0, 0, 0);

	#pragma GCC unroll 8
	for (int p = 0; p < nblk; p += 2) {
		/* an odd tail pairs the last block with itself; its second
		 * half meets a zero scale */
		const int p1 = p + 1 < nblk ? p + 1 : p;
		__m512i A = _mm512_inserti64x4(
			_mm512_castsi256_si512(_mm256_loadu_si256(act_qs(ag, p))),
			_mm256_loadu_si256(act_qs(ag, p1)), 1);
		__m512i base = _mm512_setzero_si512();

		/* -off * sum(a) per lane, so the dot comes out exact */
		if (quant_off(type))
			base = _mm512_sub_epi32(
				base, _mm512_dpbusd_epi32(
					      base,
					      _mm512_set1_epi8((char)quant_off(type)),
					      A));
		#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			const uint8_t *wr = w + r * row_bytes;
			__m512i D;

			D = _mm512_dpbusd_epi32(
				base,
				load_pair(type, wr + (b0 + p) * ts, wr + (b0 + p1) * ts),
				A);
			acc[r] = _mm512_fmadd_ps(
				_mm512_cvtepi32_ps(D),
				_mm512_permutexvar_ps(sidx, sc[r]), acc[r]);
		}
		sidx = _mm512_add_epi32(sidx, _mm512_set1_epi32(2));
	}
}

/* q8_0, one block a ymm: u = q ^ 0x80 against the activation's 32
 * quants, eight int32 lanes a block, scaled by d_w d_a broadcast from a
 * stack copy of sc. Measured to stream from DRAM ~20% faster than two
 * blocks a zmm, though it computes slower from cache. */
static inline __attribute__((always_inline)) void
q32_singles(uint32_t type, int R, const uint8_t *w, size_t pitch,
	    const uint8_t *ag, int64_t b0, int nblk, const __m512 *scv,
	    __m512 *acc)
{
	const size_t ts = type_size(type);
	const __m256i flip = _mm256_set1_epi8((char)0x80);
	float sc[MV_ROWS][16] __attribute__((aligned(64)));
	__m256 acc8[MV_ROWS];

	#pragma GCC unroll 4
	for (int r = 0; r < R; r++) {
		_mm512_store_ps(sc[r], scv[r]);
		acc8[r] = _mm256_setzero_ps();
	}
	#pragma GCC unroll 8
	for (int j = 0; j < nblk; j++) {
		__m256i A = _mm256_loadu_si256(act_qs(ag, j));
		/* -128 * sum(a) per lane, so the dot comes out exact */
		__m256i base = _mm256_sub_epi32(
			_mm256_setzero_si256(),
			_mm256_dpbusd_epi32(_mm256_setzero_si256(), flip, A));

		#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			const uint8_t *q = w + r * pitch + (b0 + j) * ts +
					   offsetof(struct block_q8_0, qs);
			__m256i u = _mm256_xor_si256(
				_mm256_loadu_si256((const __m256i *)q), flip);

			acc8[r] = _mm256_fmadd_ps(
				_mm256_cvtepi32_ps(_mm256_dpbusd_epi32(base, u, A)),
				_mm256_broadcast_ss(&sc[r][j]), acc8[r]);
		}
	}
	#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		acc[r] = _mm512_add_ps(acc[r], _mm512_castps256_ps512(acc8[r]));
}

/* 16 bytes at p */
static inline __m128i qs16(const uint8_t *p)
{
	return _mm_loadu_si128((const __m128i *)p);
}

/* q4_0 and q4_1, four blocks a step: the qs of blocks p..p+3 fill one zmm
 * [qs0, qs1, qs2, qs3]; its low nibbles (elements 0..15 of each) and high
 * nibbles (16..31) meet the activation rearranged the same way, and two
 * vpdpbusd leave four int32 lanes a block. Fewer ops a block than pairs,
 * which need a variable shift and a masked load each. */
static inline __attribute__((always_inline)) void
q32_quads(uint32_t type, int R, const uint8_t *w, size_t pitch,
	  const uint8_t *ag, int64_t b0, int nblk, const __m512 *sc,
	  __m512 *acc)
{
	const size_t ts = type_size(type);
	const int qo = qs_off(type);
	const __m512i nib = _mm512_set1_epi8(0x0f);
	/* scale index: lanes 4i..4i+3 are block i of the quad */
	__m512i sidx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2,
					1, 1, 1, 1, 0, 0, 0, 0);

	#pragma GCC unroll 4
	for (int p = 0; p < nblk; p += 4) {
		/* a short tail repeats the quad's first block; the copies
		 * meet zero scales */
		int q[4];
		__m512i x01, x23, alo, ahi, base = _mm512_setzero_si512();

		#pragma GCC unroll 4
		for (int i = 0; i < 4; i++)
			q[i] = p + i < nblk ? p + i : p;
		/* [a0 lo, a0 hi, a1 lo, a1 hi] -> lo halves, hi halves */
		x01 = _mm512_inserti64x4(
			_mm512_castsi256_si512(_mm256_loadu_si256(act_qs(ag, q[0]))),
			_mm256_loadu_si256(act_qs(ag, q[1])), 1);
		x23 = _mm512_inserti64x4(
			_mm512_castsi256_si512(_mm256_loadu_si256(act_qs(ag, q[2]))),
			_mm256_loadu_si256(act_qs(ag, q[3])), 1);
		alo = _mm512_shuffle_i64x2(x01, x23, 0x88);
		ahi = _mm512_shuffle_i64x2(x01, x23, 0xdd);
		if (quant_off(type)) {
			const __m512i off = _mm512_set1_epi8((char)quant_off(type));

			base = _mm512_sub_epi32(
				base, _mm512_dpbusd_epi32(
					      _mm512_dpbusd_epi32(base, off, alo),
					      off, ahi));
		}
		#pragma GCC unroll 4
		for (int r = 0; r < R; r++) {
			const uint8_t *wq = w + r * pitch + b0 * ts + qo;
			__m512i v, D;

			__m512i lo, hi;

			v = _mm512_castsi128_si512(qs16(wq + q[0] * ts));
			v = _mm512_inserti32x4(v, qs16(wq + q[1] * ts), 1);
			v = _mm512_inserti32x4(v, qs16(wq + q[2] * ts), 2);
			v = _mm512_inserti32x4(v, qs16(wq + q[3] * ts), 3);
			lo = _mm512_and_si512(v, nib);
			hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
			D = _mm512_dpbusd_epi32(base, lo, alo);
			D = _mm512_dpbusd_epi32(D, hi, ahi);
			acc[r] = _mm512_fmadd_ps(
				_mm512_cvtepi32_ps(D),
				_mm512_permutexvar_ps(sidx, sc[r]), acc[r]);
		}
		sidx = _mm512_add_epi32(sidx, _mm512_set1_epi32(4));
	}
}

/* Blocks a group: at most ~300 bytes of a row between scale reads. Q8_0
 * at 16 blocks (544 bytes) streamed ~30% slower from DRAM than at 8, q5
 * (352 bytes) ~5%. */
static inline __attribute__((always_inline)) int group_blocks(uint32_t type)
{
	return type == KT_Q4_0 || type == KT_Q4_1 ? 16 : 8;
}

/* One group of nblk <= group_blocks() blocks starting at block b0 of nb
 * for R rows, accumulated into acc[r]. */
static inline __attribute__((always_inline)) void
q32_group(uint32_t type, int R, const uint8_t *w, size_t pitch,
	  const uint8_t *act, int64_t b0, int nblk, int64_t nb, size_t ahead,
	  __m512 *acc)
{
	const int full = nblk == group_blocks(type);
	const size_t ts = type_size(type);
	const int as = sizeof(struct block_q8_a);
	const uint8_t *ag = act + b0 * as;
	__m512 da, sa = _mm512_setzero_ps(), sc[MV_ROWS];

	/* activation scales once for all R rows */
	da = _mm512_castsi512_ps(load_heads(ag, as, offsetof(struct block_q8_a, d),
					    nblk, full, (nb - b0) * as));
	if (has_min(type))
		sa = _mm512_castsi512_ps(load_heads(
			ag, as, offsetof(struct block_q8_a, s), nblk, full,
			(nb - b0) * as));
	#pragma GCC unroll 4
	for (int r = 0; r < R; r++) {
		const uint8_t *wr = w + r * pitch;
		/* the group's lines in a later pass's rows (an address past
		 * the matrix end is formed as an integer; a prefetch never
		 * faults) */
		uintptr_t pf = (uintptr_t)wr + ahead + b0 * ts;
		__m512i g;
		__m512 dw;

		for (size_t o = 0; o < nblk * ts; o += 64)
			_mm_prefetch((const char *)(pf + o), _MM_HINT_T0);
		_mm_prefetch((const char *)(pf + nblk * ts - 1), _MM_HINT_T0);
		g = load_heads(wr + b0 * ts, (int)ts, 0, nblk, full,
			       (nb - b0) * (int64_t)ts);
		dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));

		if (has_min(type))
			acc[r] = _mm512_fmadd_ps(
				_mm512_cvtph_ps(_mm512_cvtepi32_epi16(
					_mm512_srli_epi32(g, 16))),
				sa, acc[r]);
		sc[r] = _mm512_mul_ps(dw, da);
	}
	if (type == KT_Q4_0 || type == KT_Q4_1)
		q32_quads(type, R, w, pitch, ag, b0, nblk, sc, acc);
	else if (type == KT_Q8_0)
		q32_singles(type, R, w, pitch, ag, b0, nblk, sc, acc);
	else
		q32_pairs(type, R, w, pitch, ag, b0, nblk, sc, acc);
}

static inline __attribute__((always_inline)) void
mv_q32_rows(uint32_t type, int R, const uint8_t *w, size_t pitch,
	    const uint8_t *act, float *y, int64_t ys, int64_t nb, size_t ahead)
{
	__m512 acc[MV_ROWS];
	int64_t b0 = 0;

	#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		acc[r] = _mm512_setzero_ps();
	for (; b0 + group_blocks(type) <= nb; b0 += group_blocks(type))
		q32_group(type, R, w, pitch, act, b0, group_blocks(type),
			  nb, ahead, acc);
	if (b0 < nb)
		q32_group(type, R, w, pitch, act, b0, (int)(nb - b0), nb,
			  ahead, acc);
	#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
		y[r * ys] = _mm512_reduce_add_ps(acc[r]);
}

/*
 * Decode for Q4_0 and Q4_1: the activation work (loads, shuffles, offset
 * sums) is done once a call into a stack buffer that stays in L1
 * (prep_group), rather than once a pass, and each row then reads it with
 * its own accumulator chain (so results stay bit-identical to the 4-row
 * passes), four rows a pass from the four quarters of the range
 * (kern_passes). Rows whose prepared activation does not fit MV_PREP_BYTES
 * take the 4-row passes. History: this path began as one row at a time,
 * one stream, when four neighbouring rows streamed worse (+6% of TinyLlama
 * Q4_0 decode then); four far-apart rows read 30.3 GB/s where that one
 * stream read 23.8 (kbench 2048 x 5632, two threads, Xeon model 167,
 * 2026-12-08). Q8_0 and Q5 were latency-bound from one row and never
 * took it.
 *
 * A group's prepared bytes: d_a (and s_a) of its blocks as 16 floats,
 * then per four blocks the zmm alo, ahi [, base].
 */
#define MV_PREP_BYTES 24576

static inline __attribute__((always_inline)) size_t
prep_group_bytes(uint32_t type)
{
	const int hasb = quant_off(type) != 0;

	return 64 * (1 + has_min(type)) + group_blocks(type) / 4 * 64 * (2 + hasb);
}

static inline __attribute__((always_inline)) void
prep_group(uint32_t type, const uint8_t *act, int64_t b0, int nblk,
	   int64_t nb, uint8_t *out)
{
	const int full = nblk == group_blocks(type);
	const int as = sizeof(struct block_q8_a);
	const uint8_t *ag = act + b0 * as;
	const int off = quant_off(type);
	uint8_t *o = out;

	_mm512_store_si512(o, load_heads(ag, as, offsetof(struct block_q8_a, d),
					 nblk, full, (nb - b0) * as));
	o += 64;
	if (has_min(type)) {
		_mm512_store_si512(o, load_heads(ag, as,
						 offsetof(struct block_q8_a, s),
						 nblk, full, (nb - b0) * as));
		o += 64;
	}
	for (int p = 0; p < nblk; p += 4) {
		int q[4];
		__m512i x01, x23, alo, ahi;

		for (int i = 0; i < 4; i++)
			q[i] = p + i < nblk ? p + i : p;
		x01 = _mm512_inserti64x4(
			_mm512_castsi256_si512(_mm256_loadu_si256(act_qs(ag, q[0]))),
			_mm256_loadu_si256(act_qs(ag, q[1])), 1);
		x23 = _mm512_inserti64x4(
			_mm512_castsi256_si512(_mm256_loadu_si256(act_qs(ag, q[2]))),
			_mm256_loadu_si256(act_qs(ag, q[3])), 1);
		alo = _mm512_shuffle_i64x2(x01, x23, 0x88);
		ahi = _mm512_shuffle_i64x2(x01, x23, 0xdd);
		_mm512_store_si512(o, alo);
		_mm512_store_si512(o + 64, ahi);
		o += 128;
		if (off) {
			const __m512i ov = _mm512_set1_epi8((char)off);
			__m512i z = _mm512_setzero_si512();

			_mm512_store_si512(o, _mm512_sub_epi32(
				z, _mm512_dpbusd_epi32(
					   _mm512_dpbusd_epi32(z, ov, alo),
					   ov, ahi)));
			o += 64;
		}
	}
}

/* One group of one row against its prepared activation pa. */
static inline __attribute__((always_inline)) __m512
row_group(uint32_t type, const uint8_t *wr, int64_t b0,
	  int nblk, int64_t nb, size_t ahead, const uint8_t *pa, __m512 acc)
{
	const int full = nblk == group_blocks(type);
	const size_t ts = type_size(type);
	const int hasb = quant_off(type) != 0;
	const uint8_t *wg = wr + b0 * ts;
	uintptr_t pf = (uintptr_t)wg + ahead;
	__m512i g;
	__m512 sc;

	for (size_t o = 0; o < nblk * ts; o += 64)
		_mm_prefetch((const char *)(pf + o), _MM_HINT_T0);
	_mm_prefetch((const char *)(pf + nblk * ts - 1), _MM_HINT_T0);
	g = load_heads(wg, (int)ts, 0, nblk, full, (nb - b0) * (int64_t)ts);
	sc = _mm512_mul_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(g)),
			   _mm512_load_ps(pa));
	pa += 64;
	if (has_min(type)) {
		acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(
					      _mm512_srli_epi32(g, 16))),
				      _mm512_load_ps(pa), acc);
		pa += 64;
	}
	const __m512i nib = _mm512_set1_epi8(0x0f);
	__m512i sidx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2,
					1, 1, 1, 1, 0, 0, 0, 0);

	#pragma GCC unroll 4
	for (int p = 0; p < nblk; p += 4) {
		const uint8_t *wq = wg + qs_off(type);
		int q[4];
		__m512i v, lo, hi, D;

		#pragma GCC unroll 4
		for (int i = 0; i < 4; i++)
			q[i] = p + i < nblk ? p + i : p;
		v = _mm512_castsi128_si512(qs16(wq + q[0] * ts));
		v = _mm512_inserti32x4(v, qs16(wq + q[1] * ts), 1);
		v = _mm512_inserti32x4(v, qs16(wq + q[2] * ts), 2);
		v = _mm512_inserti32x4(v, qs16(wq + q[3] * ts), 3);
		lo = _mm512_and_si512(v, nib);
		hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
		D = hasb ? _mm512_load_si512(pa + 128) :
			   _mm512_setzero_si512();
		D = _mm512_dpbusd_epi32(D, lo, _mm512_load_si512(pa));
		D = _mm512_dpbusd_epi32(D, hi, _mm512_load_si512(pa + 64));
		acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(D),
				      _mm512_permutexvar_ps(sidx, sc), acc);
		sidx = _mm512_add_epi32(sidx, _mm512_set1_epi32(4));
		pa += 64 * (2 + hasb);
	}
	return acc;
}
/* R rows pitch bytes apart into y[0], y[ys], ... against the prepared
 * activation, each with its own accumulator chain */
static inline __attribute__((always_inline)) void
single_rows(uint32_t type, int R, const uint8_t *w, size_t pitch, float *y,
	    int64_t ys, int64_t nb, size_t ahead, const uint8_t *prep)
{
	const int G = group_blocks(type);
	const size_t gb = prep_group_bytes(type);
	const int64_t ng = (nb + G - 1) / G;
	__m512 acc[MV_ROWS];
	int64_t g = 0;

	#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		acc[i] = _mm512_setzero_ps();
	for (; g + 1 <= nb / G; g++)
		#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
			acc[i] = row_group(type, w + i * pitch, g * G, G, nb,
					   ahead, prep + g * gb, acc[i]);
	if (g < ng)
		#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
			acc[i] = row_group(type, w + i * pitch, g * G,
					   (int)(nb - g * G), nb, ahead,
					   prep + g * gb, acc[i]);
	#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		y[i * ys] = _mm512_reduce_add_ps(acc[i]);
}

/* Rows r0..r1 against a prepared activation, MV_ROWS a pass from
 * separate parts of the range (kern_passes); 0 (nothing done) when that
 * does not fit MV_PREP_BYTES. */
static inline __attribute__((always_inline)) int
mv_q32_single_body(uint32_t type, const uint8_t *wb, size_t row_bytes,
		   const uint8_t *act, float *y, int64_t n, int64_t r0,
		   int64_t r1)
{
	const int G = group_blocks(type);
	const size_t gb = prep_group_bytes(type);
	const int64_t nb = n / 32, ng = (nb + G - 1) / G;
	const size_t ahead = kern_prefetch_ahead(1, row_bytes);
	uint8_t prep[MV_PREP_BYTES] __attribute__((aligned(64)));

	if ((size_t)ng * gb > sizeof(prep))
		return 0;
	for (int64_t g = 0; g < ng; g++)
		prep_group(type, act, g * G,
			   nb - g * G < G ? (int)(nb - g * G) : G, nb,
			   prep + g * gb);
	struct kern_passes ps = kern_passes(r0, r1, MV_ROWS);
	int64_t r, q;

	for (int k; (k = kern_pass_next(&ps, &r, &q));)
		if (k == MV_ROWS)
			single_rows(type, MV_ROWS, wb + r * row_bytes,
				    q * row_bytes, y + r, q, nb, ahead, prep);
		else
			single_rows(type, 1, wb + r * row_bytes, row_bytes,
				    y + r, 1, nb, ahead, prep);
	return 1;
}

static int __attribute__((noinline))
mv1_q4_0(const uint8_t *wb, size_t row_bytes, const uint8_t *act, float *y,
	 int64_t n, int64_t r0, int64_t r1)
{
	return mv_q32_single_body(KT_Q4_0, wb, row_bytes, act, y, n, r0, r1);
}

static int __attribute__((noinline))
mv1_q4_1(const uint8_t *wb, size_t row_bytes, const uint8_t *act, float *y,
	 int64_t n, int64_t r0, int64_t r1)
{
	return mv_q32_single_body(KT_Q4_1, wb, row_bytes, act, y, n, r0, r1);
}

/* the single-row path where it is taken (Q4_0, Q4_1); 0: not taken */
static inline __attribute__((always_inline)) int
mv_q32_single(uint32_t type, const uint8_t *wb, size_t row_bytes,
	      const uint8_t *act, float *y, int64_t n, int64_t r0, int64_t r1)
{
	if (type == KT_Q4_0)
		return mv1_q4_0(wb, row_bytes, act, y, n, r0, r1);
	if (type == KT_Q4_1)
		return mv1_q4_1(wb, row_bytes, act, y, n, r0, r1);
	return 0;
}

static inline __attribute__((always_inline)) void
matvec_q32(uint32_t type, const void *w, size_t row_bytes, const void *act,
	   float *y, int64_t n, int64_t r0, int64_t r1)
{
	const uint8_t *wb = w;
	const size_t ahead = kern_prefetch_ahead(1, row_bytes);
	struct kern_passes ps = kern_passes(r0, r1, MV_ROWS);
	int64_t r, q;

	if (r0 < r1 && mv_q32_single(type, wb, row_bytes, act, y, n, r0, r1))
		return;
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
 * matmul: a register tile of 16 * V rows by T tokens. The rows' blocks
 * are first repacked (mm_pack) into a panel where one zmm holds four
 * quants of 16 rows: lane i of q[b][k][v] is u[4k .. 4k + 3] of block b
 * of row 16 v + i, u the unsigned quants as the matvec takes them. Then
 * vpdpbusd of that zmm with a token's activation dword k, broadcast from
 * memory, adds four products to each row's lane; eight such steps give
 * each lane its block's int32 sum, which is converted and scaled into
 * the tile's float accumulator for that (rows, token):
 *   acc += float(D) * (d_w d_a) + m_w s_a,
 * m_w being the min (q4_1, q5_1) or -off d_w, which takes the unsigned
 * offset back out (s_a = d_a sum(a), so -off d_w s_a = d_w d_a (-off
 * sum(a))). Each lane sums its blocks in order, as the reference does.
 * Unpacking (nibbles, fifth bits, scales) is done once per panel instead
 * of once per token. What is left per block and (row vector, token) is
 * 8 vpdpbusd and a convert, a mul and one or two FMAs; on Zen 5 the mul
 * and the FMAs take the two pipes vpdpbusd runs on, so they bound the
 * kernel (8 of 10 slots doing int8 work, 8 of 11 with a min). Hence the
 * formats with an offset take it out in integers instead: D starts at
 * -off sum(a) of its token and block (mm_act_corr, once per call, K
 * chunk and MM_TS tokens), and only q4_1/q5_1 pay the second FMA.
 *
 * The panel covers MM_KB blocks (a K chunk: 32 KiB of quants, in L1
 * while every token passes over it); chunks run in order and the
 * accumulators go through y between them. Rows past r1 in the last
 * panel repeat row r1 - 1 and are not stored.
 */
#define MM_V 2    /* 16-row vectors in a panel */
#define MM_T 4    /* tokens in a register tile */
#define MM_KB 32  /* blocks in a K chunk */
#define MM_TS 256 /* tokens whose offset sums are kept at a time */
/* below this many tokens the per-token matvec is faster than repacking */
#define MM_MIN_TOK 2

struct mm_panel {
	__m512i q[MM_KB][8][MM_V]; /* quants, see above */
	__m512 d[MM_KB][MM_V];     /* d_w */
	__m512 m[MM_KB][MM_V];     /* m_w (q4_1, q5_1) */
};

/* Dword j of the 16 bytes at rows[i] + off as lane i of x[j], i < 16:
 * z[g] holds rows g, g + 4, g + 8, g + 12 in its 128-bit lanes, so the
 * in-lane 4x4 transpose leaves the rows in order. */
static inline __attribute__((always_inline)) void
load_t16(const uint8_t *const *rows, size_t off, __m512i *x)
{
	__m512i z[4], t[4];

	#pragma GCC unroll 4
	for (int g = 0; g < 4; g++) {
		z[g] = _mm512_castsi128_si512(qs16(rows[g] + off));
		z[g] = _mm512_inserti32x4(z[g], qs16(rows[g + 4] + off), 1);
		z[g] = _mm512_inserti32x4(z[g], qs16(rows[g + 8] + off), 2);
		z[g] = _mm512_inserti32x4(z[g], qs16(rows[g + 12] + off), 3);
	}
	t[0] = _mm512_unpacklo_epi32(z[0], z[1]);
	t[1] = _mm512_unpackhi_epi32(z[0], z[1]);
	t[2] = _mm512_unpacklo_epi32(z[2], z[3]);
	t[3] = _mm512_unpackhi_epi32(z[2], z[3]);
	x[0] = _mm512_unpacklo_epi64(t[0], t[2]);
	x[1] = _mm512_unpackhi_epi64(t[0], t[2]);
	x[2] = _mm512_unpacklo_epi64(t[1], t[3]);
	x[3] = _mm512_unpackhi_epi64(t[1], t[3]);
}

/* Block boff (byte offset) of 16 rows into step vectors q[k * MM_V]
 * and the scale vectors d, m. Every load stays inside the block. */
static inline __attribute__((always_inline)) void
mm_pack_block(uint32_t type, const uint8_t *const *rows, size_t boff,
	      __m512i *q, __m512 *d, __m512 *m)
{
	__m512i h[4], x[8], s[8];

	/* the first 16 bytes: d, then m or qh or quants */
	load_t16(rows, boff, h);
	*d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h[0]));
	if (has_min(type))
		*m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(
			_mm512_srli_epi32(h[0], 16)));
	if (type == KT_Q8_0) {
		load_t16(rows, boff + 2, x);
		load_t16(rows, boff + 18, x + 4);
		#pragma GCC unroll 8
		for (int k = 0; k < 8; k++)
			s[k] = _mm512_xor_si512(x[k],
						_mm512_set1_epi8((char)0x80));
	} else {
		const __m512i nib = _mm512_set1_epi8(0x0f);

		/* dword j: elements 4j.. in the low nibbles, 16 + 4j.. in
		 * the high ones */
		load_t16(rows, boff + qs_off(type), x);
		#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			s[j] = _mm512_and_si512(x[j], nib);
			s[j + 4] = _mm512_and_si512(_mm512_srli_epi16(x[j], 4),
						    nib);
		}
	}
	if (has_qh(type)) {
		/* qh of each row as a lane (bytes 2..5 or 4..7 of the
		 * block); step k takes bits 4k..4k+3: byte k / 2 of the
		 * lane spread over its four bytes, one bit tested each */
		__m512i qh = type == KT_Q5_1
			? h[1]
			: _mm512_or_si512(_mm512_srli_epi32(h[0], 16),
					  _mm512_slli_epi32(h[1], 16));

		#pragma GCC unroll 8
		for (int k = 0; k < 8; k++) {
			const char b = (char)(k / 2);
			const __m512i sel = _mm512_set4_epi32(
				0x0c0c0c0c + b * 0x01010101,
				0x08080808 + b * 0x01010101,
				0x04040404 + b * 0x01010101,
				b * 0x01010101);
			const __m512i bit = _mm512_set1_epi32(
				k % 2 ? (int)0x80402010 : 0x08040201);
			__mmask64 on = _mm512_test_epi8_mask(
				_mm512_shuffle_epi8(qh, sel), bit);

			s[k] = _mm512_mask_add_epi8(s[k], on, s[k],
						    _mm512_set1_epi8(16));
		}
	}
	#pragma GCC unroll 8
	for (int k = 0; k < 8; k++)
		_mm512_store_si512(q + k * MM_V, s[k]);
}

/* Blocks [c0, c0 + nblk) of the nv (<= MM_V) row vectors from row p
 * (rows >= r1 repeat row r1 - 1) into pk. */
static inline __attribute__((always_inline)) void
mm_pack(uint32_t type, const uint8_t *w, size_t row_bytes, int64_t p,
	int64_t r1, int nv, int64_t c0, int nblk, struct mm_panel *pk)
{
	const size_t ts = type_size(type);

	for (int v = 0; v < nv; v++) {
		const uint8_t *rows[16];

		for (int i = 0; i < 16; i++) {
			int64_t r = p + 16 * v + i;

			rows[i] = w + (r < r1 ? r : r1 - 1) * row_bytes +
				  c0 * ts;
		}
		for (int b = 0; b < nblk; b++)
			mm_pack_block(type, rows, b * ts, &pk->q[b][0][v],
				      &pk->d[b][v], &pk->m[b][v]);
	}
}

/* -off * sum(qs) of activation blocks [0, nblk) at ab into c[0, nblk):
 * 16 blocks at a time, eight partial sums of each from vpdpbusd with
 * ones, added up by three rounds of interleaving (the last leaves the
 * blocks in the order 0 4 2 6 1 5 3 7 and the same plus 8, which one
 * permute puts back). */
static void mm_act_corr(const uint8_t *ab, int nblk, int off, int32_t *c)
{
	const __m512i ones = _mm512_set1_epi8(1);
	const __m512i order = _mm512_set_epi32(15, 11, 13, 9, 14, 10, 12, 8,
					       7, 3, 5, 1, 6, 2, 4, 0);
	const int shift = __builtin_ctz((unsigned)off);

	for (int g = 0; g < nblk; g += 16) {
		int n = nblk - g < 16 ? nblk - g : 16;
		__m512i s[8], u[4], v[2], r;

		for (int i = 0; i < 8; i++) {
			/* blocks past nblk repeat the last; not stored */
			int b0 = 2 * i < n ? 2 * i : n - 1;
			int b1 = 2 * i + 1 < n ? 2 * i + 1 : n - 1;
			__m512i x = _mm512_inserti64x4(
				_mm512_castsi256_si512(_mm256_loadu_si256(
					act_qs(ab, g + b0))),
				_mm256_loadu_si256(act_qs(ab, g + b1)), 1);

			s[i] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones,
						   x);
		}
		for (int i = 0; i < 4; i++)
			u[i] = _mm512_add_epi32(
				_mm512_unpacklo_epi32(s[2 * i], s[2 * i + 1]),
				_mm512_unpackhi_epi32(s[2 * i], s[2 * i + 1]));
		for (int i = 0; i < 2; i++)
			v[i] = _mm512_add_epi32(
				_mm512_unpacklo_epi32(u[2 * i], u[2 * i + 1]),
				_mm512_unpackhi_epi32(u[2 * i], u[2 * i + 1]));
		r = _mm512_add_epi32(_mm512_shuffle_i32x4(v[0], v[1], 0x88),
				     _mm512_shuffle_i32x4(v[0], v[1], 0xdd));
		r = _mm512_permutexvar_epi32(order, r);
		r = _mm512_sub_epi32(_mm512_setzero_si512(),
				     _mm512_slli_epi32(r, (unsigned)shift));
		_mm512_mask_storeu_epi32(c + g, (__mmask16)((1u << n) - 1), r);
	}
}

/* A token's activation dword at p, broadcast */
static inline __m512i act_dword(const uint8_t *p)
{
	int32_t x;

	memcpy(&x, p, sizeof(x));
	return _mm512_set1_epi32(x);
}

static inline float act_float(const uint8_t *p)
{
	float x;

	memcpy(&x, p, sizeof(x));
	return x;
}

/* The register tile: V row vectors of pk by T tokens, activation blocks
 * of token t at act + t * act_stride (the chunk's first block), nblk
 * blocks; y + t * ldy + 16 v is the vector's output, vm[v] its rows.
 * first: the chunk starts the row, else y holds the sum so far. MIN: the
 * format has a min (pk->m); else corr + t * MM_KB holds each block's
 * offset term. */
static inline __attribute__((always_inline)) void
mm_tile(int V, int T, int MIN, const struct mm_panel *pk, int nblk,
	const uint8_t *act, size_t act_stride, const int32_t *corr,
	float *y, int64_t ldy, const __mmask16 *vm, int first)
{
	const int as = sizeof(struct block_q8_a);
	__m512 acc[MM_V][MM_T];

	#pragma GCC unroll 8
	for (int t = 0; t < T; t++)
		#pragma GCC unroll 4
		for (int v = 0; v < V; v++)
			acc[v][t] = first ? _mm512_setzero_ps()
					  : _mm512_maskz_loadu_ps(
						    vm[v], y + t * ldy + 16 * v);
	for (int b = 0; b < nblk; b++) {
		const uint8_t *ab = act + b * as;
		__m512i D[MM_V][MM_T];

		#pragma GCC unroll 8
		for (int k = 0; k < 8; k++) {
			__m512i W[MM_V];

			#pragma GCC unroll 4
			for (int v = 0; v < V; v++)
				W[v] = _mm512_load_si512(&pk->q[b][k][v]);
			#pragma GCC unroll 8
			for (int t = 0; t < T; t++) {
				const uint8_t *qs = ab + t * act_stride +
					offsetof(struct block_q8_a, qs);
				__m512i A = act_dword(qs + 4 * k);
				__m512i D0 = MIN ? _mm512_setzero_si512()
					: _mm512_set1_epi32(corr[t * MM_KB + b]);

				#pragma GCC unroll 4
				for (int v = 0; v < V; v++)
					D[v][t] = _mm512_dpbusd_epi32(
						k ? D[v][t] : D0, W[v], A);
			}
		}
		#pragma GCC unroll 8
		for (int t = 0; t < T; t++) {
			const uint8_t *at = ab + t * act_stride;
			__m512 da = _mm512_set1_ps(act_float(
				at + offsetof(struct block_q8_a, d)));
			__m512 sa = _mm512_set1_ps(act_float(
				at + offsetof(struct block_q8_a, s)));

			#pragma GCC unroll 4
			for (int v = 0; v < V; v++) {
				__m512 sc = _mm512_mul_ps(pk->d[b][v], da);

				acc[v][t] = _mm512_fmadd_ps(
					_mm512_cvtepi32_ps(D[v][t]), sc,
					acc[v][t]);
				if (MIN)
					acc[v][t] = _mm512_fmadd_ps(
						pk->m[b][v], sa, acc[v][t]);
			}
		}
	}
	#pragma GCC unroll 8
	for (int t = 0; t < T; t++)
		#pragma GCC unroll 4
		for (int v = 0; v < V; v++)
			_mm512_mask_storeu_ps(y + t * ldy + 16 * v, vm[v],
					      acc[v][t]);
}

/* Every token through V row vectors of pk: whole tiles of MM_T tokens,
 * then one tile of the rest. */
static inline __attribute__((always_inline)) void
mm_tokens(int V, int MIN, const struct mm_panel *pk, int nblk,
	  const uint8_t *act, size_t act_stride, const int32_t *corr,
	  float *y, int64_t ldy, int64_t n_tok, const __mmask16 *vm,
	  int first)
{
	int64_t t = 0;

	for (; t + MM_T <= n_tok; t += MM_T)
		mm_tile(V, MM_T, MIN, pk, nblk, act + t * act_stride, act_stride,
			corr + t * MM_KB, y + t * ldy, ldy, vm, first);
	act += t * act_stride;
	corr += t * MM_KB;
	y += t * ldy;
	switch (n_tok - t) {
	case 1:
		mm_tile(V, 1, MIN, pk, nblk, act, act_stride, corr, y, ldy, vm,
			first);
		break;
	case 2:
		mm_tile(V, 2, MIN, pk, nblk, act, act_stride, corr, y, ldy, vm,
			first);
		break;
	case 3:
		mm_tile(V, 3, MIN, pk, nblk, act, act_stride, corr, y, ldy, vm,
			first);
		break;
	default:
		break;
	}
}
_Static_assert(MM_T == 4, "mm_tokens handles leftovers up to 3 tokens");

/* Every token (n_tok <= MM_TS) through the nv vectors of pk; corr is
 * NULL for the formats with a min. Not inlined: it does not depend on
 * the weight type, so the five types share it. */
static void __attribute__((noinline))
mm_panel_tokens(int nv, const struct mm_panel *pk, int nblk,
		const uint8_t *act, size_t act_stride, const int32_t *corr,
		float *y, int64_t ldy, int64_t n_tok, const __mmask16 *vm,
		int first)
{
	if (nv == MM_V && !corr)
		mm_tokens(MM_V, 1, pk, nblk, act, act_stride, corr, y, ldy,
			  n_tok, vm, first);
	else if (nv == MM_V)
		mm_tokens(MM_V, 0, pk, nblk, act, act_stride, corr, y, ldy,
			  n_tok, vm, first);
	else if (!corr)
		mm_tokens(1, 1, pk, nblk, act, act_stride, corr, y, ldy, n_tok,
			  vm, first);
	else
		mm_tokens(1, 0, pk, nblk, act, act_stride, corr, y, ldy, n_tok,
			  vm, first);
}
_Static_assert(MM_V <= 2, "mm_panel_tokens handles 1 or MM_V vectors");

/* kern_matmul_fn for a 32-element format. Loops, outer to inner: MM_TS
 * tokens (one offset-sum buffer), K chunks (their activations stay in
 * L2 for every panel), panels of 16 * MM_V rows (repacked once), tiles
 * of MM_T tokens. Fewer than MM_MIN_TOK tokens go to the matvec. Stack:
 * ~72 KiB (panel and offset sums). */
static inline __attribute__((always_inline)) void
matmul_q32(uint32_t type, const void *w, size_t row_bytes, const void *act,
	   size_t act_stride, float *y, int64_t ldy, int64_t n, int64_t r0,
	   int64_t r1, int64_t n_tok)
{
	const int as = sizeof(struct block_q8_a);
	const int64_t nb = n / 32;
	const uint8_t *a = act;
	struct mm_panel pk __attribute__((aligned(64)));
	int32_t corr[MM_TS * MM_KB]; /* offset terms, unused with a min */

	if (n_tok < MM_MIN_TOK || r0 >= r1) {
		for (int64_t t = 0; t < n_tok; t++)
			matvec_q32(type, w, row_bytes, a + t * act_stride,
				   y + t * ldy, n, r0, r1);
		return;
	}
	for (int64_t t0 = 0; t0 < n_tok; t0 += MM_TS) {
		int64_t nt = n_tok - t0 < MM_TS ? n_tok - t0 : MM_TS;
		const uint8_t *at = a + t0 * act_stride;

		for (int64_t c0 = 0; c0 < nb; c0 += MM_KB) {
			int nblk = nb - c0 < MM_KB ? (int)(nb - c0) : MM_KB;

			for (int64_t t = 0; !has_min(type) && t < nt; t++)
				mm_act_corr(at + t * act_stride + c0 * as, nblk,
					    quant_off(type), corr + t * MM_KB);
			for (int64_t p = r0; p < r1; p += 16 * MM_V) {
				int nv = (int)((r1 - p + 15) / 16);
				__mmask16 vm[MM_V];

				nv = nv < MM_V ? nv : MM_V;
				for (int v = 0; v < nv; v++) {
					int64_t left = r1 - p - 16 * v;

					vm[v] = left >= 16
						? 0xffff
						: (__mmask16)((1u << left) - 1);
				}
				mm_pack(type, w, row_bytes, p, r1, nv, c0, nblk,
					&pk);
				mm_panel_tokens(nv, &pk, nblk, at + c0 * as,
						act_stride,
						has_min(type) ? NULL : corr,
						y + t0 * ldy + p, ldy, nt, vm,
						c0 == 0);
			}
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

/* ---- 32-element formats: dequantization -------------------------------- */

/* One block's 32 values, in the reference's order of operations
 * (d * (float)q + m, q already offset), so the result is bit-identical. */
static inline __attribute__((always_inline)) void
dequant_block(uint32_t type, const uint8_t *p, float *dst)
{
	kern_f16 dh, mh = 0;
	__m512i q0, q1;
	__m512 d, m;

	memcpy(&dh, p, sizeof(dh));
	if (has_min(type))
		memcpy(&mh, p + 2, sizeof(mh));
	d = _mm512_set1_ps(_cvtsh_ss(dh));
	m = _mm512_set1_ps(_cvtsh_ss(mh));
	if (type == KT_Q8_0) {
		q0 = _mm512_cvtepi8_epi32(qs16(p + 2));
		q1 = _mm512_cvtepi8_epi32(qs16(p + 18));
	} else {
		__m128i x = qs16(p + qs_off(type));
		const __m128i nib = _mm_set1_epi8(0x0f);

		q0 = _mm512_cvtepu8_epi32(_mm_and_si128(x, nib));
		q1 = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(x, 4), nib));
		if (has_qh(type)) {
			uint32_t h;

			memcpy(&h, p + qh_off(type), sizeof(h));
			q0 = _mm512_mask_add_epi32(q0, (__mmask16)h, q0,
						   _mm512_set1_epi32(16));
			q1 = _mm512_mask_add_epi32(q1, (__mmask16)(h >> 16), q1,
						   _mm512_set1_epi32(16));
		}
		if (quant_off(type)) {
			q0 = _mm512_sub_epi32(q0, _mm512_set1_epi32(quant_off(type)));
			q1 = _mm512_sub_epi32(q1, _mm512_set1_epi32(quant_off(type)));
		}
	}
	_mm512_storeu_ps(dst, _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(q0)), m));
	_mm512_storeu_ps(dst + 16,
			 _mm512_add_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(q1)), m));
}

static void dequant_q4_0(const void *src, float *dst, int64_t n)
{
	for (int64_t b = 0; b < n / 32; b++)
		dequant_block(KT_Q4_0, (const uint8_t *)src + b * type_size(KT_Q4_0),
			      dst + 32 * b);
}

static void dequant_q4_1(const void *src, float *dst, int64_t n)
{
	for (int64_t b = 0; b < n / 32; b++)
		dequant_block(KT_Q4_1, (const uint8_t *)src + b * type_size(KT_Q4_1),
			      dst + 32 * b);
}

static void dequant_q5_0(const void *src, float *dst, int64_t n)
{
	for (int64_t b = 0; b < n / 32; b++)
		dequant_block(KT_Q5_0, (const uint8_t *)src + b * type_size(KT_Q5_0),
			      dst + 32 * b);
}

static void dequant_q5_1(const void *src, float *dst, int64_t n)
{
	for (int64_t b = 0; b < n / 32; b++)
		dequant_block(KT_Q5_1, (const uint8_t *)src + b * type_size(KT_Q5_1),
			      dst + 32 * b);
}

static void dequant_q8_0(const void *src, float *dst, int64_t n)
{
	for (int64_t b = 0; b < n / 32; b++)
		dequant_block(KT_Q8_0, (const uint8_t *)src + b * type_size(KT_Q8_0),
			      dst + 32 * b);
}

/* ---- Q8_A activation quantizer ------------------------------------------ */

/* roundf(): to nearest, halfway cases away from zero (not the even
 * rounding of vroundps), so the result matches the reference bit for bit. */
static inline __m512 round_away(__m512 v)
{
	__m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	__m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
	__m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f),
				  _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
	__mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);

	return _mm512_mask_add_ps(t, up, t, one);
}

static void quantize_q8_a(const float *x, void *dst, int64_t n)
{
	uint8_t *out = dst;

	for (int64_t b = 0; b < n / QK8_A; b++, x += QK8_A) {
		__m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
		float amax = _mm512_reduce_max_ps(
			_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
		float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
		__m512i q0 = _mm512_cvtps_epi32(
			round_away(_mm512_mul_ps(v0, _mm512_set1_ps(id))));
		__m512i q1 = _mm512_cvtps_epi32(
			round_away(_mm512_mul_ps(v1, _mm512_set1_ps(id))));
		float s = d * (float)_mm512_reduce_add_epi32(
				      _mm512_add_epi32(q0, q1));
		uint8_t *o = out + b * sizeof(struct block_q8_a);

		memcpy(o + offsetof(struct block_q8_a, d), &d, sizeof(d));
		memcpy(o + offsetof(struct block_q8_a, s), &s, sizeof(s));
		_mm_storeu_si128((__m128i *)(o + offsetof(struct block_q8_a, qs)),
				 _mm512_cvtepi32_epi8(q0));
		_mm_storeu_si128(
			(__m128i *)(o + offsetof(struct block_q8_a, qs) + 16),
			_mm512_cvtepi32_epi8(q1));
	}
}

/* kern_dot_f32_fn: four zmm accumulators, a masked tail, one reduction */
static double dot_f32(const float *a, const float *b, int64_t n)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	int64_t i = 0;

	for (; i + 64 <= n; i += 64) {
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
		s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16),
				     _mm512_loadu_ps(b + i + 16), s1);
		s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32),
				     _mm512_loadu_ps(b + i + 32), s2);
		s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48),
				     _mm512_loadu_ps(b + i + 48), s3);
	}
	for (; i + 16 <= n; i += 16)
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
	if (i < n) {
		__mmask16 m = (__mmask16)((1u << (n - i)) - 1);
		s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i),
				     _mm512_maskz_loadu_ps(m, b + i), s1);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1),
						  _mm512_add_ps(s2, s3)));
}

void kern_fill_avx512(struct kern_table *t)
{
	t->dot_f32 = dot_f32;
	t->ops[KT_F32].matvec = matvec_f32;
	/* f16/bf16 matvec stays kern_avx2.c's: its ymm loop streamed from
	 * DRAM as fast as the zmm loops tried here, ~10% faster in most
	 * single-thread runs of bench/kbench */
	t->ops[KT_F16].dequant = dequant_f16;
	t->ops[KT_BF16].dequant = dequant_bf16;
	t->ops[KT_Q4_0] = (struct kern_ops){ .dequant = dequant_q4_0,
					     .matvec = matvec_q4_0,
					     .matmul = matmul_q4_0 };
	t->ops[KT_Q4_1] = (struct kern_ops){ .dequant = dequant_q4_1,
					     .matvec = matvec_q4_1,
					     .matmul = matmul_q4_1 };
	t->ops[KT_Q5_0] = (struct kern_ops){ .dequant = dequant_q5_0,
					     .matvec = matvec_q5_0,
					     .matmul = matmul_q5_0 };
	t->ops[KT_Q5_1] = (struct kern_ops){ .dequant = dequant_q5_1,
					     .matvec = matvec_q5_1,
					     .matmul = matmul_q5_1 };
	t->ops[KT_Q8_0] = (struct kern_ops){ .dequant = dequant_q8_0,
					     .matvec = matvec_q8_0,
					     .matmul = matmul_q8_0 };
	t->quantize_act[KT_Q8_A] = quantize_q8_a;
}
