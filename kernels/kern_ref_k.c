/*
 * kern_ref_k.c - scalar reference kernels for the K-quants: the
 * specification that the AVX2 and AVX-512 versions are tested against.
 *
 * Weight types Q4_K, Q5_K, Q6_K (256-element super-blocks) and their
 * activation format Q8_K. Semantics follow ggml's reference code for these
 * types (dequantize_row_q*_K, quantize_row_q*_K_ref, quantize_row_q8_K_ref
 * and the integer structure of vec_dot_q*_K_q8_K):
 *
 *   Q4_K/Q5_K: x = d * sc[j] * q - dmin * m[j] over 8 sub-blocks of 32, so
 *     dot(x, a) = a.d * (d * sum_j sc[j] * sum(q * a.qs)
 *                        - dmin * sum_j m[j] * (bsums[2j] + bsums[2j+1]))
 *   Q6_K: x = d * scales[j] * (q - 32) over 16 sub-blocks of 16, so
 *     dot(x, a) = a.d * d * sum_j scales[j] * sum((q - 32) * a.qs)
 *
 * The integer sums are exact (they fit int32 with room to spare); the ISA
 * versions compute the same integers and may only differ from these in the
 * order of the float operations. Blocks are copied into locals before use,
 * so any pointer alignment is fine.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "kernels/kern_impl.h"

/* Round to nearest, ties to even (as ggml's nearest_int in its valid
 * range), clamped to [lo, hi] in float first so that huge or NaN inputs
 * cannot overflow the conversion. */
static int round_clamp(float f, int lo, int hi)
{
	f = fminf(fmaxf(f, (float)lo), (float)hi);
	return (int)rintf(f);
}

/* Element q of a Q4_K/Q5_K block: qs holds 64 elements per 32 bytes, the
 * first 32 in the low nibbles, the next 32 in the high nibbles. */
static inline int q4k_nibble(const uint8_t *qs, int e)
{
	uint8_t b = qs[(e / 64) * 32 + e % 32];
	return (e % 64) < 32 ? (b & 0xF) : (b >> 4);
}

/* fifth bit of element e of a Q5_K block: bit (e / 32) of qh[e % 32] */
static inline int q5k_high(const uint8_t *qh, int e)
{
	return (qh[e % 32] >> (e / 32)) & 1;
}

/* 6-bit element e (0..63) of a Q6_K block. Each 128-element half has 64
 * bytes of ql and 32 of qh; within a half, element 32 k + l takes the low
 * (k = 0, 1) or high (k = 2, 3) nibble of ql[l + 32 (k & 1)] and bits
 * 2k, 2k+1 of qh[l]. */
static inline int q6k_value(const uint8_t *ql, const uint8_t *qh, int e)
{
	int half = e / 128, k = (e % 128) / 32, l = e % 32;
	uint8_t lo = ql[half * 64 + l + 32 * (k & 1)];
	int nib = k < 2 ? (lo & 0xF) : (lo >> 4);
	return nib | (((qh[half * 32 + l] >> (2 * k)) & 3) << 4);
}

/* ---- dequantization ---------------------------------------------------- */

static void dequant_q4_k(const void *src, float *dst, int64_t n)
{
	for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
		struct block_q4_k b;
		memcpy(&b, (const uint8_t *)src + i * sizeof(b), sizeof(b));
		float d = kern_f16_to_f32(b.d);
		float dmin = kern_f16_to_f32(b.dmin);
		for (int j = 0; j < QK_K / 32; j++) {
			uint8_t sc, m;
			kern_get_scale_min_k4(j, b.scales, &sc, &m);
			float dl = d * sc, ml = dmin * m;
			for (int l = 0; l < 32; l++)
				dst[32 * j + l] =
					dl * q4k_nibble(b.qs, 32 * j + l) - ml;
		}
	}
}

static void dequant_q5_k(const void *src, float *dst, int64_t n)
{
	for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
		struct block_q5_k b;
		memcpy(&b, (const uint8_t *)src + i * sizeof(b), sizeof(b));
		float d = kern_f16_to_f32(b.d);
		float dmin = kern_f16_to_f32(b.dmin);
		for (int j = 0; j < QK_K / 32; j++) {
			uint8_t sc, m;
			kern_get_scale_min_k4(j, b.scales, &sc, &m);
			float dl = d * sc, ml = dmin * m;
			for (int l = 0; l < 32; l++) {
				int e = 32 * j + l;
				int q = q4k_nibble(b.qs, e) |
					q5k_high(b.qh, e) << 4;
				dst[e] = dl * q - ml;
			}
		}
	}
}

static void dequant_q6_k(const void *src, float *dst, int64_t n)
{
	for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
		struct block_q6_k b;
		memcpy(&b, (const uint8_t *)src + i * sizeof(b), sizeof(b));
		float d = kern_f16_to_f32(b.d);
		for (int e = 0; e < QK_K; e++)
			dst[e] = d * b.scales[e / 16] *
				 (q6k_value(b.ql, b.qh, e) - 32);
	}
}

/* ---- dot products of one block against a Q8_K block ------------------- */

static float dot_q4_k(const struct block_q4_k *x, const struct block_q8_k *a)
{
	int32_t sumi = 0, summ = 0;

	for (int j = 0; j < QK_K / 32; j++) {
		uint8_t sc, m;
		int32_t s = 0;
		kern_get_scale_min_k4(j, x->scales, &sc, &m);
		for (int l = 0; l < 32; l++)
			s += q4k_nibble(x->qs, 32 * j + l) * a->qs[32 * j + l];
		sumi += sc * s;
		summ += m * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
	}
	return a->d * kern_f16_to_f32(x->d) * (float)sumi -
	       a->d * kern_f16_to_f32(x->dmin) * (float)summ;
}

static float dot_q5_k(const struct block_q5_k *x, const struct block_q8_k *a)
{
	int32_t sumi = 0, summ = 0;

	for (int j = 0; j < QK_K / 32; j++) {
		uint8_t sc, m;
		int32_t s = 0;
		kern_get_scale_min_k4(j, x->scales, &sc, &m);
		for (int l = 0; l < 32; l++) {
			int e = 32 * j + l;
			int q = q4k_nibble(x->qs, e) | q5k_high(x->qh, e) << 4;
			s += q * a->qs[e];
		}
		sumi += sc * s;
		summ += m * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
	}
	return a->d * kern_f16_to_f32(x->d) * (float)sumi -
	       a->d * kern_f16_to_f32(x->dmin) * (float)summ;
}

static float dot_q6_k(const struct block_q6_k *x, const struct block_q8_k *a)
{
	int32_t sumi = 0;

	for (int j = 0; j < QK_K / 16; j++) {
		int32_t s = 0;
		for (int l = 0; l < 16; l++) {
			int e = 16 * j + l;
			s += (q6k_value(x->ql, x->qh, e) - 32) * a->qs[e];
		}
		sumi += x->scales[j] * s;
	}
	return a->d * kern_f16_to_f32(x->d) * (float)sumi;
}

/* ---- matvec: w is [r1 rows][n] with rows row_bytes apart, act is n/256
 * Q8_K blocks, y[r] for r in [r0, r1). Blocks are copied into locals, so
 * any pointer alignment is fine. ------------------------------------------ */

static void matvec_q4_k(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	for (int64_t r = r0; r < r1; r++) {
		const uint8_t *row = (const uint8_t *)w + r * row_bytes;
		float acc = 0;
		for (int64_t i = 0; i < n / QK_K; i++) {
			struct block_q4_k x;
			struct block_q8_k a;
			memcpy(&x, row + i * sizeof(x), sizeof(x));
			memcpy(&a, (const uint8_t *)act + i * sizeof(a),
			       sizeof(a));
			acc += dot_q4_k(&x, &a);
		}
		y[r] = acc;
	}
}

static void matvec_q5_k(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	for (int64_t r = r0; r < r1; r++) {
		const uint8_t *row = (const uint8_t *)w + r * row_bytes;
		float acc = 0;
		for (int64_t i = 0; i < n / QK_K; i++) {
			struct block_q5_k x;
			struct block_q8_k a;
			memcpy(&x, row + i * sizeof(x), sizeof(x));
			memcpy(&a, (const uint8_t *)act + i * sizeof(a),
			       sizeof(a));
			acc += dot_q5_k(&x, &a);
		}
		y[r] = acc;
	}
}

static void matvec_q6_k(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	for (int64_t r = r0; r < r1; r++) {
		const uint8_t *row = (const uint8_t *)w + r * row_bytes;
		float acc = 0;
		for (int64_t i = 0; i < n / QK_K; i++) {
			struct block_q6_k x;
			struct block_q8_k a;
			memcpy(&x, row + i * sizeof(x), sizeof(x));
			memcpy(&a, (const uint8_t *)act + i * sizeof(a),
			       sizeof(a));
			acc += dot_q6_k(&x, &a);
		}
		y[r] = acc;
	}
}

/* ---- Q8_K activation ----------------------------------------------------- */

/* Per block: the element of largest magnitude (the first one on ties) maps
 * to -127, so d = max / -127 carries the opposite sign of that element;
 * qs = round_even(x * (-127 / max)), at most 127. An all-zero block gets
 * d = 0 and zero qs and bsums. */
static void quantize_q8_k(const float *x, void *dst, int64_t n)
{
	for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
		struct block_q8_k b;
		float amax = 0, max = 0;

		memset(&b, 0, sizeof(b));
		for (int j = 0; j < QK_K; j++) {
			if (fabsf(x[j]) > amax) {
				amax = fabsf(x[j]);
				max = x[j];
			}
		}
		if (amax != 0) {
			float iscale = -127.f / max;
			for (int j = 0; j < QK_K; j++)
				b.qs[j] = (int8_t)round_clamp(iscale * x[j],
							      -128, 127);
			for (int j = 0; j < QK_K / 16; j++) {
				int sum = 0;
				for (int l = 0; l < 16; l++)
					sum += b.qs[16 * j + l];
				b.bsums[j] = (int16_t)sum;
			}
			b.d = 1 / iscale;
		}
		memcpy((uint8_t *)dst + i * sizeof(b), &b, sizeof(b));
	}
}

/* ---- weight quantizers --------------------------------------------------- */

/*
 * Asymmetric fit of n values to x ~= scale * L - min_out, L in [0, nmax]
 * (the_min >= 0 is returned positive, as ggml's make_qkx2_quants): start
 * from the min/max grid, then try nstep + 1 grids with nmax stretched by
 * rmin + rdelta * is and keep the weighted least-squares (scale, min) of
 * whichever rounding gives the smallest weighted squared error. The
 * minimum is never allowed above zero. Returns the scale. The order of
 * every float operation is ggml's (w * (diff * diff), not (w * diff) *
 * diff): the search compares errors, so a different rounding picks a
 * different grid now and then and the bytes stop matching ggml's.
 */
static float fit_scale_min(int n, int nmax, const float *x, const float *w,
			   uint8_t *L, float *the_min, float rmin, float rdelta,
			   int nstep)
{
	float lo = x[0], hi = x[0], sum_w = 0, sum_x = 0;
	uint8_t Lt[32];

	for (int i = 0; i < n; i++) {
		lo = fminf(lo, x[i]);
		hi = fmaxf(hi, x[i]);
		sum_w += w[i];
		sum_x += w[i] * x[i];
	}
	if (lo > 0)
		lo = 0;
	if (hi == lo) {
		memset(L, 0, n);
		*the_min = -lo;
		return 0;
	}

	float iscale = nmax / (hi - lo), scale = 1 / iscale, best = 0;
	for (int i = 0; i < n; i++) {
		L[i] = round_clamp(iscale * (x[i] - lo), 0, nmax);
		float diff = scale * L[i] + lo - x[i];
		best += w[i] * (diff * diff);
	}
	for (int is = 0; is <= nstep; is++) {
		float sum_l = 0, sum_l2 = 0, sum_xl = 0;
		iscale = (rmin + rdelta * is + nmax) / (hi - lo);
		for (int i = 0; i < n; i++) {
			int l = round_clamp(iscale * (x[i] - lo), 0, nmax);
			Lt[i] = l;
			sum_l += w[i] * l;
			sum_l2 += w[i] * l * l;
			sum_xl += w[i] * l * x[i];
		}
		float det = sum_w * sum_l2 - sum_l * sum_l;
		if (!(det > 0))
			continue;
		float s = (sum_w * sum_xl - sum_x * sum_l) / det;
		float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
		if (m > 0) {
			m = 0;
			s = sum_xl / sum_l2;
		}
		float err = 0;
		for (int i = 0; i < n; i++) {
			float diff = s * Lt[i] + m - x[i];
			err += w[i] * (diff * diff);
		}
		if (err < best) {
			memcpy(L, Lt, n);
			best = err;
			scale = s;
			lo = m;
		}
	}
	*the_min = -lo;
	return scale;
}

/*
 * Symmetric fit of n values to x ~= scale * (L - nmax), L - nmax in
 * [-nmax, nmax - 1], weights x^2 (ggml's make_qx_quants, rmse_type 1): the
 * largest-magnitude value maps to -nmax, then 18 neighbouring grids
 * (nmax +- 0.1 k) are tried and the least-squares scale of the best one is
 * kept. Returns the scale (0 for an all-zero group).
 */
static float fit_scale_sym(int n, int nmax, const float *x, int8_t *L)
{
	float amax = 0, max = 0;

	for (int i = 0; i < n; i++) {
		if (fabsf(x[i]) > amax) {
			amax = fabsf(x[i]);
			max = x[i];
		}
	}
	if (amax < 1e-15f) {
		memset(L, 0, n);
		return 0;
	}

	float scale = 0, best = 0;
	for (int is = 0; is <= 18; is++) {
		/* is == 0 is the plain grid; then -9..-1, 1..9 */
		int k = is == 0 ? 0 : is <= 9 ? is - 10 : is - 9;
		float iscale = -(nmax + 0.1f * k) / max;
		float sumlx = 0, suml2 = 0;
		for (int i = 0; i < n; i++) {
			int l = round_clamp(iscale * x[i], -nmax, nmax - 1);
			float w = x[i] * x[i];
			sumlx += w * x[i] * l;
			suml2 += w * l * l;
		}
		if (is == 0 ? 1 : (suml2 > 0 && sumlx * sumlx > best * suml2)) {
			for (int i = 0; i < n; i++)
				L[i] = nmax + round_clamp(iscale * x[i], -nmax,
							  nmax - 1);
			scale = suml2 > 0 ? sumlx / suml2 : 0;
			best = scale * sumlx;
		}
	}
	return scale;
}

/* Pack 6-bit scale ls and min lm of sub-block j into a Q4_K/Q5_K
 * scales[12] (the inverse of kern_get_scale_min_k4); scales must start
 * zeroed. */
static void pack_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t *q)
{
	if (j < 4) {
		q[j] |= ls;
		q[j + 4] |= lm;
	} else {
		q[j + 4] = (ls & 0xF) | (lm & 0xF) << 4;
		q[j - 4] |= (ls >> 4) << 6;
		q[j] |= (lm >> 4) << 6;
	}
}

/*
 * One Q4_K (nmax 15) or Q5_K (nmax 31) super-block: fit each sub-block of
 * 32 with weights rms(sub-block) + |x|, quantize the 8 scales and 8 mins to
 * 6 bits against their maxima, then requantize every element with the
 * scale and min it will actually be decoded with. L receives 256 levels.
 */
static void quantize_k4_block(const float *x, int nmax, float rmin, int nstep,
			      kern_f16 *d_out, kern_f16 *dmin_out,
			      uint8_t *scales, uint8_t *L)
{
	float sc[QK_K / 32], mn[QK_K / 32], w[32];
	float max_sc = 0, max_mn = 0;

	for (int j = 0; j < QK_K / 32; j++) {
		const float *xs = x + 32 * j;
		float sum_x2 = 0;
		for (int l = 0; l < 32; l++)
			sum_x2 += xs[l] * xs[l];
		float av = sqrtf(sum_x2 / 32);
		for (int l = 0; l < 32; l++)
			w[l] = av + fabsf(xs[l]);
		sc[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mn[j],
				      rmin, 0.1f, nstep);
		/* not fmaxf: a -0 min must not make dmin -0 */
		if (sc[j] > max_sc)
			max_sc = sc[j];
		if (mn[j] > max_mn)
			max_mn = mn[j];
	}

	float inv_sc = max_sc > 0 ? 63.f / max_sc : 0;
	float inv_mn = max_mn > 0 ? 63.f / max_mn : 0;
	memset(scales, 0, K_SCALE_SIZE);
	for (int j = 0; j < QK_K / 32; j++)
		pack_scale_min_k4(j, round_clamp(inv_sc * sc[j], 0, 63),
				  round_clamp(inv_mn * mn[j], 0, 63), scales);
	*d_out = kern_f32_to_f16(max_sc / 63.f);
	*dmin_out = kern_f32_to_f16(max_mn / 63.f);

	float d = kern_f16_to_f32(*d_out), dmin = kern_f16_to_f32(*dmin_out);
	for (int j = 0; j < QK_K / 32; j++) {
		uint8_t s, m;
		kern_get_scale_min_k4(j, scales, &s, &m);
		float dl = d * s, ml = dmin * m;
		if (dl == 0) /* keep the fit's levels: they decode to -ml */
			continue;
		for (int l = 0; l < 32; l++)
			L[32 * j + l] =
				round_clamp((x[32 * j + l] + ml) / dl, 0, nmax);
	}
}

static void quantize_q4_k(const float *x, uint8_t *dst, int64_t nb)
{
	uint8_t L[QK_K];

	for (int64_t i = 0; i < nb; i++, x += QK_K) {
		struct block_q4_k b;
		quantize_k4_block(x, 15, -1.f, 20, &b.d, &b.dmin, b.scales, L);
		for (int e = 0; e < QK_K; e++) {
			uint8_t *p = &b.qs[(e / 64) * 32 + e % 32];
			if (e % 64 < 32)
				*p = L[e];
			else
				*p |= L[e] << 4;
		}
		memcpy(dst + i * sizeof(b), &b, sizeof(b));
	}
}

static void quantize_q5_k(const float *x, uint8_t *dst, int64_t nb)
{
	uint8_t L[QK_K];

	for (int64_t i = 0; i < nb; i++, x += QK_K) {
		struct block_q5_k b;
		quantize_k4_block(x, 31, -0.5f, 15, &b.d, &b.dmin, b.scales, L);
		memset(b.qh, 0, sizeof(b.qh));
		for (int e = 0; e < QK_K; e++) {
			uint8_t *p = &b.qs[(e / 64) * 32 + e % 32];
			uint8_t lo = L[e] & 0xF;
			if (e % 64 < 32)
				*p = lo;
			else
				*p |= lo << 4;
			b.qh[e % 32] |= (L[e] >> 4) << (e / 32);
		}
		memcpy(dst + i * sizeof(b), &b, sizeof(b));
	}
}

/*
 * Q6_K: fit each sub-block of 16 symmetrically with 6 bits (fit_scale_sym,
 * levels L), quantize the 16 scales to int8 so that the largest-magnitude
 * one, max_sc, maps to -128 (clamped at 127), then requantize each element
 * with its decoded scale and pack into b (zeroed by the caller).
 */
static void quantize_q6_block(const float *x, float max_sc, const float *sc,
			      int8_t *L, struct block_q6_k *b)
{
	float iscale = -128.f / max_sc;

	b->d = kern_f32_to_f16(1 / iscale);
	for (int j = 0; j < QK_K / 16; j++)
		b->scales[j] = round_clamp(iscale * sc[j], -128, 127);

	float d = kern_f16_to_f32(b->d);
	for (int j = 0; j < QK_K / 16; j++) {
		float dl = d * b->scales[j];
		if (dl == 0)
			continue; /* keep the fit's levels; they decode to 0 */
		for (int l = 0; l < 16; l++)
			L[16 * j + l] = 32 + round_clamp(x[16 * j + l] / dl,
							 -32, 31);
	}

	/* the inverse of q6k_value */
	for (int e = 0; e < QK_K; e++) {
		int half = e / 128, k = (e % 128) / 32, l = e % 32;
		uint8_t *lo = &b->ql[half * 64 + l + 32 * (k & 1)];
		*lo |= k < 2 ? (L[e] & 0xF) : (L[e] & 0xF) << 4;
		b->qh[half * 32 + l] |= (L[e] >> 4) << (2 * k);
	}
}

static void quantize_q6_k(const float *x, uint8_t *dst, int64_t nb)
{
	int8_t L[QK_K];
	float sc[QK_K / 16];

	for (int64_t i = 0; i < nb; i++, x += QK_K) {
		struct block_q6_k b;
		float max_abs = 0, max_sc = 0;

		for (int j = 0; j < QK_K / 16; j++) {
			sc[j] = fit_scale_sym(16, 32, x + 16 * j, L + 16 * j);
			if (fabsf(sc[j]) > max_abs) {
				max_abs = fabsf(sc[j]);
				max_sc = sc[j];
			}
		}
		memset(&b, 0, sizeof(b)); /* an all-zero group stays zero */
		if (max_abs >= 1e-15f)
			quantize_q6_block(x, max_sc, sc, L, &b);
		memcpy(dst + i * sizeof(b), &b, sizeof(b));
	}
}

int kern_quantize_row_k(uint32_t type, const float *src, void *dst, int64_t n)
{
	if (n < 0 || n % QK_K)
		return -EINVAL;
	switch (type) {
	case KT_Q4_K:
		quantize_q4_k(src, dst, n / QK_K);
		return 0;
	case KT_Q5_K:
		quantize_q5_k(src, dst, n / QK_K);
		return 0;
	case KT_Q6_K:
		quantize_q6_k(src, dst, n / QK_K);
		return 0;
	default:
		return -EINVAL;
	}
}

void kern_fill_ref_k(struct kern_table *t)
{
	t->ops[KT_Q4_K] = (struct kern_ops){ .dequant = dequant_q4_k,
					      .matvec = matvec_q4_k };
	t->ops[KT_Q5_K] = (struct kern_ops){ .dequant = dequant_q5_k,
					      .matvec = matvec_q5_k };
	t->ops[KT_Q6_K] = (struct kern_ops){ .dequant = dequant_q6_k,
					      .matvec = matvec_q6_k };
	t->quantize_act[KT_Q8_K] = quantize_q8_k;
}
