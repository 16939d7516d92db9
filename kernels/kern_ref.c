/*
 * kern_ref.c - scalar reference kernels for the float types and the
 * 32-element block formats: the specification every ISA version is tested
 * against.
 *
 * Semantics are ggml's: the same dequantization formulas, the same scale
 * choice in the quantizers (quantize_row_*_ref) and the same per-block
 * integer dot product scaled by d_w * d_a (plus m_w * s_a for the formats
 * with a min). Blocks are copied into a local struct before use, so any
 * pointer alignment is fine; the ISA files use unaligned loads likewise.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "kernels/kern_impl.h"

/* ---- float types ------------------------------------------------------- */

static void dequant_f32(const void *src, float *dst, int64_t n)
{
	memcpy(dst, src, (size_t)n * sizeof(float));
}

static void dequant_f16(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;

	for (int64_t i = 0; i < n; i++) {
		kern_f16 h;

		memcpy(&h, p + 2 * i, sizeof(h));
		dst[i] = kern_f16_to_f32(h);
	}
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;

	for (int64_t i = 0; i < n; i++) {
		kern_bf16 h;

		memcpy(&h, p + 2 * i, sizeof(h));
		dst[i] = kern_bf16_to_f32(h);
	}
}

/* Float weights take the f32 activation itself. The reference sums in
 * double, so it is at least as accurate as any ISA version. */
static void matvec_f32(const void *w, size_t row_bytes, const void *act,
		       float *y, int64_t n, int64_t r0, int64_t r1)
{
	const float *x = act;

	for (int64_t r = r0; r < r1; r++) {
		const uint8_t *wr = (const uint8_t *)w + r * row_bytes;
		double s = 0;

		for (int64_t i = 0; i < n; i++) {
			float v;

			memcpy(&v, wr + 4 * i, sizeof(v));
			s += (double)v * x[i];
		}
		y[r] = (float)s;
	}
}

static void matvec_f16(const void *w, size_t row_bytes, const void *act,
		       float *y, int64_t n, int64_t r0, int64_t r1)
{
	const float *x = act;

	for (int64_t r = r0; r < r1; r++) {
		const uint8_t *wr = (const uint8_t *)w + r * row_bytes;
		double s = 0;

		for (int64_t i = 0; i < n; i++) {
			kern_f16 h;

			memcpy(&h, wr + 2 * i, sizeof(h));
			s += (double)kern_f16_to_f32(h) * x[i];
		}
		y[r] = (float)s;
	}
}

static void matvec_bf16(const void *w, size_t row_bytes, const void *act,
			float *y, int64_t n, int64_t r0, int64_t r1)
{
	const float *x = act;

	for (int64_t r = r0; r < r1; r++) {
		const uint8_t *wr = (const uint8_t *)w + r * row_bytes;
		double s = 0;

		for (int64_t i = 0; i < n; i++) {
			kern_bf16 h;

			memcpy(&h, wr + 2 * i, sizeof(h));
			s += (double)kern_bf16_to_f32(h) * x[i];
		}
		y[r] = (float)s;
	}
}

/* ---- 32-element blocks: one block in, 32 values or one dot out ---------- */

/* The 32 unsigned quants of a block (before offset, scale and min):
 * element j < 16 is the low nibble of qs[j], j + 16 its high nibble; the
 * Q5 formats add bit j of the little-endian qh as bit 4. */
static void unpack_nibbles(const uint8_t qs[16], uint32_t qh, int q[32])
{
	for (int j = 0; j < 16; j++) {
		q[j] = (qs[j] & 0xf) | ((qh >> j) & 1) << 4;
		q[j + 16] = (qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
	}
}

static uint32_t load_le32(const uint8_t b[4])
{
	return b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

/* Decode one block of a 32-element weight type into its integer quants
 * q[32] (already offset, so x = d * q + m) and d, m. */
static void decode_block(uint32_t type, const uint8_t *p, int q[32],
			 float *d, float *m)
{
	*m = 0;
	switch (type) {
	case KT_Q4_0: {
		struct block_q4_0 b;

		memcpy(&b, p, sizeof(b));
		unpack_nibbles(b.qs, 0, q);
		for (int j = 0; j < 32; j++)
			q[j] -= 8;
		*d = kern_f16_to_f32(b.d);
		break;
	}
	case KT_Q4_1: {
		struct block_q4_1 b;

		memcpy(&b, p, sizeof(b));
		unpack_nibbles(b.qs, 0, q);
		*d = kern_f16_to_f32(b.d);
		*m = kern_f16_to_f32(b.m);
		break;
	}
	case KT_Q5_0: {
		struct block_q5_0 b;

		memcpy(&b, p, sizeof(b));
		unpack_nibbles(b.qs, load_le32(b.qh), q);
		for (int j = 0; j < 32; j++)
			q[j] -= 16;
		*d = kern_f16_to_f32(b.d);
		break;
	}
	case KT_Q5_1: {
		struct block_q5_1 b;

		memcpy(&b, p, sizeof(b));
		unpack_nibbles(b.qs, load_le32(b.qh), q);
		*d = kern_f16_to_f32(b.d);
		*m = kern_f16_to_f32(b.m);
		break;
	}
	default: { /* KT_Q8_0 */
		struct block_q8_0 b;

		memcpy(&b, p, sizeof(b));
		for (int j = 0; j < 32; j++)
			q[j] = b.qs[j];
		*d = kern_f16_to_f32(b.d);
		break;
	}
	}
}

static void dequant_q32(uint32_t type, const void *src, float *dst,
			int64_t n)
{
	const struct kern_type_info *ti = kern_type_info(type);
	const uint8_t *p = src;

	for (int64_t b = 0; b < n / 32; b++) {
		int q[32];
		float d, m;

		decode_block(type, p + b * ti->type_size, q, &d, &m);
		for (int j = 0; j < 32; j++)
			dst[32 * b + j] = d * (float)q[j] + m;
	}
}

/* y[r] = sum over blocks of d_w * d_a * sum(q_w * q_a) + m_w * s_a,
 * accumulated in float block by block, as ggml's vec_dot does. */
static void matvec_q32(uint32_t type, const void *w, size_t row_bytes,
		       const void *act, float *y, int64_t n, int64_t r0,
		       int64_t r1)
{
	const struct kern_type_info *ti = kern_type_info(type);
	const uint8_t *a = act;

	for (int64_t r = r0; r < r1; r++) {
		const uint8_t *wr = (const uint8_t *)w + r * row_bytes;
		float sum = 0;

		for (int64_t b = 0; b < n / 32; b++) {
			struct block_q8_a ab;
			int q[32], sumi = 0;
			float d, m;

			decode_block(type, wr + b * ti->type_size, q, &d, &m);
			memcpy(&ab, a + b * sizeof(ab), sizeof(ab));
			for (int j = 0; j < 32; j++)
				sumi += q[j] * ab.qs[j];
			sum += d * ab.d * (float)sumi + m * ab.s;
		}
		y[r] = sum;
	}
}

/* The table wants one function per type; these bind the type. */
static void dequant_q4_0(const void *src, float *dst, int64_t n)
{
	dequant_q32(KT_Q4_0, src, dst, n);
}

static void matvec_q4_0(const void *w, size_t row_bytes, const void *act,
			 float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_q32(KT_Q4_0, w, row_bytes, act, y, n, r0, r1);
}

static void dequant_q4_1(const void *src, float *dst, int64_t n)
{
	dequant_q32(KT_Q4_1, src, dst, n);
}

static void matvec_q4_1(const void *w, size_t row_bytes, const void *act,
			 float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_q32(KT_Q4_1, w, row_bytes, act, y, n, r0, r1);
}

static void dequant_q5_0(const void *src, float *dst, int64_t n)
{
	dequant_q32(KT_Q5_0, src, dst, n);
}

static void matvec_q5_0(const void *w, size_t row_bytes, const void *act,
			 float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_q32(KT_Q5_0, w, row_bytes, act, y, n, r0, r1);
}

static void dequant_q5_1(const void *src, float *dst, int64_t n)
{
	dequant_q32(KT_Q5_1, src, dst, n);
}

static void matvec_q5_1(const void *w, size_t row_bytes, const void *act,
			 float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_q32(KT_Q5_1, w, row_bytes, act, y, n, r0, r1);
}

static void dequant_q8_0(const void *src, float *dst, int64_t n)
{
	dequant_q32(KT_Q8_0, src, dst, n);
}

static void matvec_q8_0(const void *w, size_t row_bytes, const void *act,
			 float *y, int64_t n, int64_t r0, int64_t r1)
{
	matvec_q32(KT_Q8_0, w, row_bytes, act, y, n, r0, r1);
}

/* ---- activation quantizer (ggml's quantize_row_q8_0/q8_1) ------------- */

/* d = amax / 127, q = round(x / d) half away from zero, s = d * sum(q) */
static void quantize_q8_a(const float *x, void *dst, int64_t n)
{
	uint8_t *out = dst;

	for (int64_t b = 0; b < n / QK8_A; b++, x += QK8_A) {
		struct block_q8_a blk;
		float amax = 0, id;
		int sum = 0;

		for (int j = 0; j < QK8_A; j++)
			amax = fmaxf(amax, fabsf(x[j]));
		blk.d = amax / 127;
		id = blk.d != 0 ? 1.0f / blk.d : 0.0f;
		for (int j = 0; j < QK8_A; j++) {
			blk.qs[j] = (int8_t)roundf(x[j] * id);
			sum += blk.qs[j];
		}
		blk.s = blk.d * (float)sum;
		memcpy(out + b * sizeof(blk), &blk, sizeof(blk));
	}
}

/* ---- reference quantizers f32 -> weight type ---------------------------- */

/* The signed value of largest magnitude (the first one on ties). */
static float signed_amax(const float *x, int n)
{
	float amax = 0, max = 0;

	for (int j = 0; j < n; j++) {
		if (amax < fabsf(x[j])) {
			amax = fabsf(x[j]);
			max = x[j];
		}
	}
	return max;
}

static void min_max(const float *x, int n, float *min, float *max)
{
	*min = x[0];
	*max = x[0];
	for (int j = 1; j < n; j++) {
		*min = fminf(*min, x[j]);
		*max = fmaxf(*max, x[j]);
	}
}

/* Pack 32 quants (0..31) the way unpack_nibbles reads them. */
static void pack_nibbles(const int q[32], uint8_t qs[16], uint8_t qh[4])
{
	uint32_t h = 0;

	for (int j = 0; j < 16; j++) {
		qs[j] = (uint8_t)((q[j] & 0xf) | (q[j + 16] & 0xf) << 4);
		h |= (uint32_t)(q[j] >> 4 & 1) << j;
		h |= (uint32_t)(q[j + 16] >> 4 & 1) << (j + 16);
	}
	if (qh)
		for (int i = 0; i < 4; i++)
			qh[i] = (uint8_t)(h >> 8 * i);
}

/* q = min(qmax, (int)((x - sub) * id + bias)): ggml's truncating round
 * after adding the offset plus one half. (ggml's q5_1 leaves out the min;
 * it only matters if rounding pushes (x - min) * id past 31.5.) */
static void quantize_ints(const float *x, float sub, float id, float bias,
			  int qmax, int q[32])
{
	for (int j = 0; j < 32; j++) {
		int v = (int)((x[j] - sub) * id + bias);

		q[j] = v < qmax ? v : qmax;
	}
}

/* Quantize one 32-block of x to the type's block at p. */
static void quantize_block(uint32_t type, const float *x, uint8_t *p)
{
	int q[32];

	switch (type) {
	case KT_Q4_0:
	case KT_Q5_0: {
		/* symmetric: the largest-magnitude value maps to -8 (-16) */
		int half = type == KT_Q4_0 ? 8 : 16;
		float d = signed_amax(x, 32) / -half;
		float id = d != 0 ? 1.0f / d : 0.0f;

		quantize_ints(x, 0, id, half + 0.5f, 2 * half - 1, q);
		if (type == KT_Q4_0) {
			struct block_q4_0 b = { .d = kern_f32_to_f16(d) };

			pack_nibbles(q, b.qs, NULL);
			memcpy(p, &b, sizeof(b));
		} else {
			struct block_q5_0 b = { .d = kern_f32_to_f16(d) };

			pack_nibbles(q, b.qs, b.qh);
			memcpy(p, &b, sizeof(b));
		}
		break;
	}
	case KT_Q4_1:
	case KT_Q5_1: {
		/* asymmetric: [min, max] onto 0..15 (0..31) */
		int qmax = type == KT_Q4_1 ? 15 : 31;
		float min, max, d, id;

		min_max(x, 32, &min, &max);
		d = (max - min) / qmax;
		id = d != 0 ? 1.0f / d : 0.0f;
		quantize_ints(x, min, id, 0.5f, qmax, q);
		if (type == KT_Q4_1) {
			struct block_q4_1 b = { .d = kern_f32_to_f16(d),
						.m = kern_f32_to_f16(min) };

			pack_nibbles(q, b.qs, NULL);
			memcpy(p, &b, sizeof(b));
		} else {
			struct block_q5_1 b = { .d = kern_f32_to_f16(d),
						.m = kern_f32_to_f16(min) };

			pack_nibbles(q, b.qs, b.qh);
			memcpy(p, &b, sizeof(b));
		}
		break;
	}
	default: { /* KT_Q8_0: d = amax / 127, round half away from zero */
		float amax = fabsf(signed_amax(x, 32));
		float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
		struct block_q8_0 b = { .d = kern_f32_to_f16(d) };

		for (int j = 0; j < 32; j++)
			b.qs[j] = (int8_t)roundf(x[j] * id);
		memcpy(p, &b, sizeof(b));
		break;
	}
	}
}

int kern_quantize_row_ref(uint32_t type, const float *src, void *dst,
			  int64_t n)
{
	const struct kern_type_info *ti = kern_type_info(type);
	uint8_t *p = dst;

	if (!ti || n < 0 || n % ti->blck)
		return -EINVAL;
	switch (type) {
	case KT_F32:
		memcpy(dst, src, (size_t)n * sizeof(float));
		return 0;
	case KT_F16:
	case KT_BF16:
		for (int64_t i = 0; i < n; i++) {
			uint16_t h = type == KT_F16 ? kern_f32_to_f16(src[i])
						    : kern_f32_to_bf16(src[i]);

			memcpy(p + 2 * i, &h, sizeof(h));
		}
		return 0;
	case KT_Q4_0:
	case KT_Q4_1:
	case KT_Q5_0:
	case KT_Q5_1:
	case KT_Q8_0:
		for (int64_t b = 0; b < n / 32; b++)
			quantize_block(type, src + 32 * b,
				       p + b * ti->type_size);
		return 0;
	default:
		return -EINVAL;
	}
}

/* the specification of kern_dot_f32_fn: float products are exact in
 * double, so this is the dot to within n double roundings */
static double dot_f32(const float *a, const float *b, int64_t n)
{
	double s = 0;

	for (int64_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

void kern_fill_ref(struct kern_table *t)
{
	t->dot_f32 = dot_f32;
	t->ops[KT_F32] = (struct kern_ops){ .dequant = dequant_f32,
					     .matvec = matvec_f32 };
	t->ops[KT_F16] = (struct kern_ops){ .dequant = dequant_f16,
					     .matvec = matvec_f16 };
	t->ops[KT_BF16] = (struct kern_ops){ .dequant = dequant_bf16,
					     .matvec = matvec_bf16 };
	t->ops[KT_Q4_0] = (struct kern_ops){ .dequant = dequant_q4_0,
					     .matvec = matvec_q4_0 };
	t->ops[KT_Q4_1] = (struct kern_ops){ .dequant = dequant_q4_1,
					     .matvec = matvec_q4_1 };
	t->ops[KT_Q5_0] = (struct kern_ops){ .dequant = dequant_q5_0,
					     .matvec = matvec_q5_0 };
	t->ops[KT_Q5_1] = (struct kern_ops){ .dequant = dequant_q5_1,
					     .matvec = matvec_q5_1 };
	t->ops[KT_Q8_0] = (struct kern_ops){ .dequant = dequant_q8_0,
					     .matvec = matvec_q8_0 };
	t->quantize_act[KT_Q8_A] = quantize_q8_a;
	kern_fill_ref_k(t);
}
