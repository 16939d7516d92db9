/*
 * test_kernels.c - kernels/ against their specification.
 *
 * The scalar reference is the specification; it is pinned down by
 * known-answer blocks (layouts and quantizer rounding as ggml has them), by
 * round-trip error bounds of its quantizers, and by its matvec agreeing with
 * a double-precision dot of its own dequantized values. Every ISA this CPU
 * runs is then compared with the reference, type by type from one table,
 * over odd lengths, odd row counts, sub-ranges, misaligned buffers and
 * random data with extreme scales; the float-activation products
 * (kern_matmul_f32) of every ISA against a double dot of the reference's
 * dequantized values. An ISA the CPU lacks is skipped with a
 * printed reason. A weight type without kernels fails
 * test_weight_types_complete and is skipped (with a message) elsewhere.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/kern.h"

/* ---- the table every per-type test walks ------------------------------- */

struct type_case {
	uint32_t type;
	/* ISA matvec vs reference: |y - y_ref| <= mv_tol * sum |w_i x_i| */
	double mv_tol;
	/* quantize -> dequantize: float types: |x' - x| <= rt_max * |x|
	 * (+ the smallest subnormal step); block types: |x' - x| <=
	 * rt_max * amax of the block, and rms(x' - x) <= rt_rms * rms(x) */
	double rt_max;
	double rt_rms;
	/* byte offsets of the f16 scales in a block, made finite when a
	 * block is filled with random bytes; 0 entries after the first
	 * are unused; -1: no raw random blocks (float types) */
	int f16_at[2];
};

static const struct type_case type_cases[] = {
	{ KT_F32, 2e-6, 0, 0, { -1, 0 } },
	{ KT_F16, 2e-6, 0x1p-11, 0, { -1, 0 } },
	{ KT_BF16, 2e-6, 0x1p-8, 0, { -1, 0 } },
	/* rt_max from the format: symmetric 4/5 bits put the extreme value
	 * of the short side up to one step d = amax / 8 (16) off; min/max
	 * half a step of range / 15 (31) <= 2 amax / 15 (31); q8_0 half a
	 * step of amax / 127 plus d rounded to f16. rt_rms: about 1.3x what
	 * the reference measures on this data (step / sqrt(12)); rounding
	 * by truncation would double it. */
	{ KT_Q4_0, 1e-5, 0.126, 0.11, { 0, 0 } },
	{ KT_Q5_0, 1e-5, 0.0631, 0.055, { 0, 0 } },
	{ KT_Q4_1, 1e-5, 0.0675, 0.1, { 0, 2 } },
	{ KT_Q5_1, 1e-5, 0.033, 0.05, { 0, 2 } },
	{ KT_Q8_0, 1e-5, 0.0045, 0.0065, { 0, 0 } },
	/* K-quants: about 1.3x the reference quantizer's measured errors */
	{ KT_Q4_K, 1e-5, 0.1, 0.09, { 0, 2 } },
	{ KT_Q5_K, 1e-5, 0.065, 0.048, { 0, 2 } },
	{ KT_Q6_K, 1e-5, 0.021, 0.022, { 208, 208 } },
};

#define N_CASES (sizeof(type_cases) / sizeof(type_cases[0]))

/* lengths in blocks for block types, in elements for float types */
static const int64_t block_lens[] = { 1,  2,  3,  7,  15, 16,
				      17, 31, 32, 33, 64, 176 };
static const int64_t float_lens[] = { 1,  2,  3,   7,   15,   17,  31,
				      33, 63, 100, 255, 1057, 5632 };
#define N_ROWS 11
/* [r0, r1) sub-ranges the ISA matvecs are run over */
static const int64_t ranges[][2] = { { 0, N_ROWS }, { 1, N_ROWS - 2 },
				     { 5, 6 },      { 3, N_ROWS },
				     { 4, 4 } };
static const int misaligns[] = { 0, 1, 3 };

/* ---- helpers ----------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static float rng_unit(void)
{
	return (float)((double)(rng_next() >> 11) * 0x1p-52 - 1.0);
}

/* Roughly normal values in blocks of 32 whose scales span 1e-4 .. 1e4,
 * with a block of zeros now and then. */
static void fill_random(float *x, int64_t n, int extreme)
{
	static const float scales[] = { 1e-4f, 1e-2f, 1.0f, 1e2f, 1e4f, 0 };

	for (int64_t b = 0; b < n; b += 32) {
		float s = extreme ? scales[rng_next() % 6] : 1.0f;

		for (int64_t i = b; i < n && i < b + 32; i++)
			x[i] = s * (rng_unit() + rng_unit() + rng_unit());
	}
}

/* a random finite half: any sign, 2^-24 .. 2^15, subnormals included */
static uint16_t random_f16(void)
{
	uint16_t h = (uint16_t)(rng_next() & 0xffff);

	while (((h >> 10) & 0x1f) == 0x1f)
		h = (uint16_t)(rng_next() & 0xffff);
	return h;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	assert_non_null(p);
	return p;
}

static const struct type_case *case_of(uint32_t type)
{
	for (size_t i = 0; i < N_CASES; i++)
		if (type_cases[i].type == type)
			return &type_cases[i];
	return NULL;
}

static const char *tname(uint32_t type)
{
	return kern_type_info(type)->name;
}

/* The activation as floats: for q8 formats d * qs. */
static void act_dequant(uint32_t act_type, const void *act, float *out,
			int64_t n)
{
	const uint8_t *p = act;

	if (act_type == KT_F32) {
		memcpy(out, act, (size_t)n * sizeof(float));
	} else if (act_type == KT_Q8_A) {
		for (int64_t b = 0; b < n / QK8_A; b++) {
			struct block_q8_a a;

			memcpy(&a, p + b * sizeof(a), sizeof(a));
			for (int j = 0; j < QK8_A; j++)
				out[b * QK8_A + j] = a.d * a.qs[j];
		}
	} else {
		for (int64_t b = 0; b < n / QK_K; b++) {
			struct block_q8_k a;

			memcpy(&a, p + b * sizeof(a), sizeof(a));
			for (int j = 0; j < QK_K; j++)
				out[b * QK_K + j] = a.d * a.qs[j];
		}
	}
}

/* A weight row of n elements at w: quantized from random floats with
 * extreme scales, or (raw) random bytes with finite f16 scales. */
static void fill_row(const struct type_case *tc, uint8_t *w, int64_t n,
		     int raw)
{
	const struct kern_type_info *ti = kern_type_info(tc->type);

	if (raw && tc->f16_at[0] >= 0) {
		int64_t nb = n / ti->blck;

		for (int64_t i = 0; i < nb * (int64_t)ti->type_size; i++)
			w[i] = (uint8_t)rng_next();
		for (int64_t b = 0; b < nb; b++) {
			for (int f = 0; f < 2; f++) {
				uint16_t h = random_f16();

				memcpy(w + b * ti->type_size + tc->f16_at[f],
				       &h, 2);
			}
		}
	} else {
		float *x = xmalloc((size_t)n * sizeof(float));

		fill_random(x, n, 1);
		assert_int_equal(kern_quantize_row(tc->type, x, w, n), 0);
		free(x);
	}
}

/* ---- type traits, sizes, init -------------------------------------------- */

static void test_type_info(void **state)
{
	static const struct {
		uint32_t type;
		const char *name;
		int64_t blck;
		size_t size;
		uint32_t act;
		int weight;
	} want[] = {
		{ KT_F32, "f32", 1, 4, KT_F32, 1 },
		{ KT_F16, "f16", 1, 2, KT_F32, 1 },
		{ KT_Q4_0, "q4_0", 32, 18, KT_Q8_A, 1 },
		{ KT_Q4_1, "q4_1", 32, 20, KT_Q8_A, 1 },
		{ KT_Q5_0, "q5_0", 32, 22, KT_Q8_A, 1 },
		{ KT_Q5_1, "q5_1", 32, 24, KT_Q8_A, 1 },
		{ KT_Q8_0, "q8_0", 32, 34, KT_Q8_A, 1 },
		{ KT_Q8_1, "q8_1", 32, 36, KT_Q8_A, 0 },
		{ KT_Q2_K, "q2_K", 256, 84, KT_Q8_K, 0 },
		{ KT_Q3_K, "q3_K", 256, 110, KT_Q8_K, 0 },
		{ KT_Q4_K, "q4_K", 256, 144, KT_Q8_K, 1 },
		{ KT_Q5_K, "q5_K", 256, 176, KT_Q8_K, 1 },
		{ KT_Q6_K, "q6_K", 256, 210, KT_Q8_K, 1 },
		{ KT_Q8_K, "q8_K", 256, 292, KT_Q8_K, 0 },
		{ KT_BF16, "bf16", 1, 2, KT_F32, 1 },
		{ KT_Q8_A, "q8_a", 32, 40, KT_Q8_A, 0 },
	};
	int known = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct kern_type_info *ti = kern_type_info(want[i].type);

		assert_non_null(ti);
		assert_string_equal(ti->name, want[i].name);
		assert_int_equal(ti->blck, want[i].blck);
		assert_int_equal(ti->type_size, want[i].size);
		assert_int_equal(ti->act_type, want[i].act);
		assert_int_equal(ti->is_weight, want[i].weight);
	}
	/* nothing else is a type: 4, 5 (removed from GGUF), 16.., 200+ */
	for (uint32_t t = 0; t < 1000; t++)
		known += kern_type_info(t) != NULL;
	assert_int_equal(known, sizeof(want) / sizeof(want[0]));
	assert_null(kern_type_info(4));
	assert_null(kern_type_info(KT_COUNT));
	assert_null(kern_type_info(UINT32_MAX));
}

static void test_row_bytes(void **state)
{
	(void)state;
	assert_int_equal(kern_row_bytes(KT_F32, 3), 12);
	assert_int_equal(kern_row_bytes(KT_F16, 5), 10);
	assert_int_equal(kern_row_bytes(KT_BF16, 0), 0);
	assert_int_equal(kern_row_bytes(KT_Q4_0, 64), 36);
	assert_int_equal(kern_row_bytes(KT_Q8_0, 5632), 176 * 34);
	assert_int_equal(kern_row_bytes(KT_Q4_K, 512), 288);
	assert_int_equal(kern_row_bytes(KT_Q6_K, 256), 210);
	assert_int_equal(kern_row_bytes(KT_Q8_A, 32), 40);
	/* a tensor over 2 GiB is sized in 64 bits */
	assert_int_equal(kern_row_bytes(KT_Q4_0, (int64_t)1 << 33),
			 ((int64_t)1 << 28) * 18);
	assert_int_equal(kern_row_bytes(KT_Q4_0, 33), -EINVAL);
	assert_int_equal(kern_row_bytes(KT_Q4_K, 32), -EINVAL);
	assert_int_equal(kern_row_bytes(KT_F32, -1), -EINVAL);
	assert_int_equal(kern_row_bytes(4, 32), -EINVAL);
	assert_int_equal(kern_row_bytes(KT_COUNT, 32), -EINVAL);
	assert_int_equal(kern_row_bytes(KT_F32, INT64_MAX), -EINVAL);

	assert_int_equal(kern_act_bytes(KT_F32, 7), 28);
	assert_int_equal(kern_act_bytes(KT_Q8_A, 64), 80);
	assert_int_equal(kern_act_bytes(KT_Q8_K, 512), 584);
	assert_int_equal(kern_act_bytes(KT_Q4_0, 64), 0);
}

static void test_init(void **state)
{
	int best;

	(void)state;
	assert_int_equal(setenv("STRATA_KERNELS", "bogus", 1), 0);
	assert_int_equal(kern_init(), -EINVAL);
	assert_int_equal(setenv("STRATA_KERNELS", "ref", 1), 0);
	assert_int_equal(kern_init(), KERN_ISA_REF);
	assert_int_equal(kern_isa_active(), KERN_ISA_REF);
	assert_ptr_equal(kern_ops(KT_Q4_0), kern_ops_isa(KERN_ISA_REF, KT_Q4_0));
	/* a failed init leaves the previous choice alone */
	assert_int_equal(setenv("STRATA_KERNELS", "AVX2", 1), 0);
	assert_int_equal(kern_init(), -EINVAL);
	assert_int_equal(kern_isa_active(), KERN_ISA_REF);
	for (int isa = 0; isa < KERN_ISA_COUNT; isa++) {
		const char *name = kern_isa_name(isa);

		assert_int_equal(setenv("STRATA_KERNELS", name, 1), 0);
		assert_int_equal(kern_init(),
				 kern_isa_supported(isa) ? isa : -EINVAL);
	}
	assert_int_equal(kern_isa_supported(KERN_ISA_REF), 1);
	assert_string_equal(kern_isa_name(KERN_ISA_AVX512), "avx512");

	/* unset (or empty): the best ISA this CPU runs */
	assert_int_equal(unsetenv("STRATA_KERNELS"), 0);
	best = kern_init();
	assert_true(best >= 0 && kern_isa_supported(best));
	for (int isa = best + 1; isa < KERN_ISA_COUNT; isa++)
		assert_false(kern_isa_supported(isa));
	assert_int_equal(setenv("STRATA_KERNELS", "", 1), 0);
	assert_int_equal(kern_init(), best);
	assert_int_equal(unsetenv("STRATA_KERNELS"), 0);
	printf("kern_init picks %s\n", kern_isa_name(best));
}

/* Non-weight types have no ops; activation quantizers exist for the two
 * q8 formats only. */
static void test_lookup(void **state)
{
	static const uint32_t not_weights[] = { KT_Q8_1, KT_Q2_K, KT_Q3_K,
						KT_Q8_K, KT_Q8_A, 4, 5000 };

	(void)state;
	for (size_t i = 0; i < sizeof(not_weights) / sizeof(not_weights[0]); i++)
		for (int isa = 0; isa < KERN_ISA_COUNT; isa++)
			assert_null(kern_ops_isa(isa, not_weights[i]));
	assert_null(kern_ops_isa(KERN_ISA_COUNT, KT_F32));
	assert_null(kern_quantize_act(KT_F32));
	assert_null(kern_quantize_act(KT_Q4_0));
	assert_non_null(kern_quantize_act(KT_Q8_A));
	assert_non_null(kern_ops(KT_F32));
}

/* Every weight type has kernels in every table (the table is complete:
 * slots an ISA leaves alone are the reference). */
static void test_weight_types_complete(void **state)
{
	int missing = 0;

	(void)state;
	for (uint32_t t = 0; t < KT_COUNT; t++) {
		const struct kern_type_info *ti = kern_type_info(t);

		if (!ti || !ti->is_weight)
			continue;
		if (!case_of(t)) {
			printf("weight type %s is missing from type_cases\n",
			       ti->name);
			missing++;
		}
		for (int isa = 0; isa < KERN_ISA_COUNT; isa++) {
			if (kern_isa_supported(isa) && !kern_ops_isa(isa, t)) {
				printf("%s: no %s kernels linked\n", ti->name,
				       kern_isa_name(isa));
				missing++;
			}
		}
		if (!kern_quantize_act_isa(KERN_ISA_REF, ti->act_type) &&
		    ti->act_type != KT_F32) {
			printf("%s: no quantizer for its activation %s\n",
			       ti->name, tname(ti->act_type));
			missing++;
		}
	}
	assert_int_equal(missing, 0);
}

/* ---- half and bfloat16 -------------------------------------------------- */

static float f32_of(uint32_t u)
{
	float f;

	memcpy(&f, &u, 4);
	return f;
}

static uint32_t bits_of(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return u;
}

/* h is a nearest representable value to x (ties: the even one) among the
 * finite neighbours h - 1, h + 1 of the same sign; conv decodes. */
static void check_nearest(float x, uint16_t h, float (*conv)(uint16_t),
			  uint16_t max_finite)
{
	double v = conv(h), err = fabs(v - (double)x);
	uint16_t mag = h & 0x7fff;

	if (isinf(v)) {
		/* only past the midpoint between max and the next power */
		double mx = conv(max_finite);
		double next = mx + (mx - conv(max_finite - 1));

		assert_true(fabs((double)x) >= (mx + next) / 2);
		return;
	}
	if (mag > 0) {
		double lo = conv(h - 1);

		assert_true(err < fabs(lo - x) ||
			    (err == fabs(lo - x) && !(h & 1)));
	}
	if (mag < max_finite) {
		double hi = conv(h + 1);

		assert_true(err < fabs(hi - x) ||
			    (err == fabs(hi - x) && !(h & 1)));
	}
}

static float f16_dec(uint16_t h)
{
	return kern_f16_to_f32(h);
}

static float bf16_dec(uint16_t h)
{
	return kern_bf16_to_f32(h);
}

static void test_f16(void **state)
{
	static const struct {
		uint32_t f; /* f32 bits */
		uint16_t h;
	} exact[] = {
		{ 0x3f800000, 0x3c00 }, /* 1 */
		{ 0xc0000000, 0xc000 }, /* -2 */
		{ 0x477fe000, 0x7bff }, /* 65504, the largest half */
		{ 0x33800000, 0x0001 }, /* 2^-24, the smallest subnormal */
		{ 0x387fc000, 0x03ff }, /* the largest subnormal */
		{ 0x38800000, 0x0400 }, /* 2^-14, the smallest normal */
		{ 0x7f800000, 0x7c00 }, /* inf */
		{ 0xff800000, 0xfc00 }, /* -inf */
		{ 0x80000000, 0x8000 }, /* -0 */
	};
	static const struct {
		uint32_t f;
		uint16_t h;
	} rounded[] = {
		{ 0x477fefff, 0x7bff }, /* just under 65520 */
		{ 0x477ff000, 0x7c00 }, /* 65520: tie, to even = inf */
		{ 0x501502f9, 0x7c00 }, /* 1e10 */
		{ 0x33000000, 0x0000 }, /* 2^-25: tie, to even 0 */
		{ 0xb3000001, 0x8001 }, /* just over -2^-25 */
		{ 0x33c00000, 0x0002 }, /* 1.5 * 2^-24: tie, to even 2 */
		{ 0x387fe000, 0x0400 }, /* 1023.5 * 2^-24: up to normal */
		{ 0x3f801000, 0x3c00 }, /* 1 + 2^-11: tie, to even */
		{ 0x3f803000, 0x3c02 }, /* 1 + 3 * 2^-11: tie, to even */
		{ 0x3f801001, 0x3c01 }, /* just over the tie */
		{ 0x00000001, 0x0000 }, /* f32 subnormal */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
		assert_int_equal(kern_f32_to_f16(f32_of(exact[i].f)), exact[i].h);
		assert_int_equal(bits_of(kern_f16_to_f32(exact[i].h)), exact[i].f);
	}
	for (size_t i = 0; i < sizeof(rounded) / sizeof(rounded[0]); i++)
		assert_int_equal(kern_f32_to_f16(f32_of(rounded[i].f)),
				 rounded[i].h);
	/* nan stays nan, quiet, sign kept; signalling payloads too */
	assert_true(isnan(kern_f16_to_f32(0x7e00)));
	assert_true(isnan(kern_f16_to_f32(0xfc01)));
	assert_int_equal(kern_f32_to_f16(f32_of(0x7fc00000)) & 0x7e00, 0x7e00);
	assert_int_equal(kern_f32_to_f16(f32_of(0xff800001)) & 0xfe00, 0xfe00);
	/* every half survives a trip through float */
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = kern_f16_to_f32((uint16_t)h);

		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
			assert_true(isnan(f));
		else
			assert_int_equal(kern_f32_to_f16(f), h);
	}
	/* random floats of every exponent land on a nearest half */
	rng_state = 16;
	for (int i = 0; i < 200000; i++) {
		uint32_t u = (uint32_t)rng_next();
		float x = f32_of(u);

		if (isnan(x))
			continue;
		check_nearest(x, kern_f32_to_f16(x), f16_dec, 0x7bff);
	}
}

static void test_bf16(void **state)
{
	static const struct {
		uint32_t f;
		uint16_t h;
	} rounded[] = {
		{ 0x3f800000, 0x3f80 }, /* 1 */
		{ 0x3f808000, 0x3f80 }, /* 1 + 2^-8: tie, to even */
		{ 0x3f818000, 0x3f82 }, /* 1 + 3 * 2^-8: tie, to even */
		{ 0x3f808001, 0x3f81 }, /* just over the tie */
		{ 0x7f7fffff, 0x7f80 }, /* FLT_MAX rounds to inf */
		{ 0xff800000, 0xff80 }, /* -inf */
		{ 0x00010000, 0x0001 }, /* subnormal, exact */
		{ 0x00008000, 0x0000 }, /* subnormal tie, to even */
		{ 0x80000000, 0x8000 }, /* -0 */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rounded) / sizeof(rounded[0]); i++)
		assert_int_equal(kern_f32_to_bf16(f32_of(rounded[i].f)),
				 rounded[i].h);
	/* a nan whose payload sits in the low 16 bits must not become inf */
	assert_int_equal(kern_f32_to_bf16(f32_of(0x7f800001)) & 0x7fc0, 0x7fc0);
	assert_true(isnan(kern_bf16_to_f32(kern_f32_to_bf16(f32_of(0xffc00000)))));
	assert_int_equal(bits_of(kern_bf16_to_f32(0x3f80)), 0x3f800000);
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = kern_bf16_to_f32((uint16_t)h);

		if ((h & 0x7f80) == 0x7f80 && (h & 0x7f))
			assert_true(isnan(f));
		else
			assert_int_equal(kern_f32_to_bf16(f), h);
	}
	rng_state = 17;
	for (int i = 0; i < 200000; i++) {
		float x = f32_of((uint32_t)rng_next());

		if (isnan(x))
			continue;
		check_nearest(x, kern_f32_to_bf16(x), bf16_dec, 0x7f7f);
	}
}

/* ---- the reference: known answers -------------------------------------- */

static uint16_t h16(float f)
{
	return kern_f32_to_f16(f);
}

/* Hand-built blocks decode to the values the layout in quant.h says. */
static void test_dequant_known(void **state)
{
	float out[32];
	const struct kern_ops *ops;

	(void)state;
	{ /* q4_0: element j low nibble of qs[j], j + 16 high nibble */
		struct block_q4_0 b = { .d = h16(2.0f) };

		b.qs[0] = 0x1f;
		b.qs[15] = 0x80;
		ops = kern_ops_isa(KERN_ISA_REF, KT_Q4_0);
		ops->dequant(&b, out, 32);
		assert_true(out[0] == 14 && out[16] == -14);
		assert_true(out[15] == -16 && out[31] == 0);
		assert_true(out[1] == -16 && out[17] == -16);
	}
	{ /* q4_1: d * nibble + m */
		struct block_q4_1 b = { .d = h16(0.5f), .m = h16(-1.0f) };

		b.qs[3] = 0xa2;
		kern_ops_isa(KERN_ISA_REF, KT_Q4_1)->dequant(&b, out, 32);
		assert_true(out[3] == 0.0f && out[19] == 4.0f);
		assert_true(out[0] == -1.0f);
	}
	{ /* q5_0: bit j of qh (little-endian) is bit 4 of element j */
		struct block_q5_0 b = { .d = h16(1.0f),
					.qh = { 0x01, 0x00, 0x00, 0x80 } };

		b.qs[0] = 0x0f;
		b.qs[15] = 0xf0;
		kern_ops_isa(KERN_ISA_REF, KT_Q5_0)->dequant(&b, out, 32);
		assert_true(out[0] == 15 && out[16] == -16);
		assert_true(out[15] == -16 && out[31] == 15);
	}
	{ /* q5_1 */
		struct block_q5_1 b = { .d = h16(2.0f), .m = h16(1.0f),
					.qh = { 0x00, 0x01, 0x01, 0x00 } };

		b.qs[8] = 0x31;
		kern_ops_isa(KERN_ISA_REF, KT_Q5_1)->dequant(&b, out, 32);
		assert_true(out[8] == 35 && out[24] == 7 && out[0] == 1);
		assert_true(out[16] == 33);
	}
	{ /* q8_0 */
		struct block_q8_0 b = { .d = h16(-0.25f) };

		b.qs[0] = -128;
		b.qs[31] = 127;
		kern_ops_isa(KERN_ISA_REF, KT_Q8_0)->dequant(&b, out, 32);
		assert_true(out[0] == 32 && out[31] == -31.75f && out[5] == 0);
	}
}

/* The quantizers pick ggml's scale and rounding: exact expected bytes. */
static void test_quantize_known(void **state)
{
	float x[32];

	(void)state;
	{ /* q4_0: the signed max-abs value maps to -8, d = max / -8 */
		struct block_q4_0 b;

		for (int j = 0; j < 16; j++) {
			x[j] = (float)(j - 8);
			x[j + 16] = (float)(7 - j);
		}
		assert_int_equal(kern_quantize_row(KT_Q4_0, x, &b, 32), 0);
		assert_int_equal(b.d, 0x3c00);
		for (int j = 0; j < 16; j++)
			assert_int_equal(b.qs[j], j | (15 - j) << 4);
		x[5] = 16; /* now positive: d = -2 */
		assert_int_equal(kern_quantize_row(KT_Q4_0, x, &b, 32), 0);
		assert_int_equal(b.d, 0xc000);
		assert_int_equal(b.qs[5] & 0xf, 0);
		assert_int_equal(b.qs[0] & 0xf, 12); /* -8 / -2 + 8 */
	}
	{ /* q4_1: d = (max - min) / 15, m = min */
		struct block_q4_1 b;

		for (int j = 0; j < 32; j++)
			x[j] = 1.0f + (float)(j % 16);
		assert_int_equal(kern_quantize_row(KT_Q4_1, x, &b, 32), 0);
		assert_true(b.d == 0x3c00 && b.m == 0x3c00);
		for (int j = 0; j < 16; j++)
			assert_int_equal(b.qs[j], j | j << 4);
	}
	{ /* q5_0: d = max / -16, fifth bits in qh */
		struct block_q5_0 b;

		for (int j = 0; j < 32; j++)
			x[j] = (float)(j - 16);
		assert_int_equal(kern_quantize_row(KT_Q5_0, x, &b, 32), 0);
		assert_int_equal(b.d, 0x3c00);
		for (int j = 0; j < 16; j++)
			assert_int_equal(b.qs[j], j | j << 4);
		assert_true(b.qh[0] == 0 && b.qh[1] == 0 && b.qh[2] == 0xff &&
			    b.qh[3] == 0xff);
	}
	{ /* q5_1 */
		struct block_q5_1 b;

		for (int j = 0; j < 32; j++)
			x[j] = (float)(31 - j) * 0.5f;
		assert_int_equal(kern_quantize_row(KT_Q5_1, x, &b, 32), 0);
		assert_true(b.d == h16(0.5f) && b.m == 0);
		assert_int_equal(b.qs[0], 15 | 15 << 4);
		assert_true(b.qh[0] == 0xff && b.qh[1] == 0xff && b.qh[2] == 0 &&
			    b.qh[3] == 0);
	}
	{ /* q8_0: d = amax / 127, round half away from zero */
		struct block_q8_0 b;

		memset(x, 0, sizeof(x));
		x[0] = -127;
		x[1] = 2.5f;
		x[2] = -2.5f;
		x[3] = 0.49f;
		assert_int_equal(kern_quantize_row(KT_Q8_0, x, &b, 32), 0);
		assert_int_equal(b.d, 0x3c00);
		assert_true(b.qs[0] == -127 && b.qs[1] == 3 && b.qs[2] == -3 &&
			    b.qs[3] == 0);
	}
	{ /* the activation format: the same, plus s = d * sum(qs) */
		struct block_q8_a a;

		memset(x, 0, sizeof(x));
		x[0] = 127;
		x[1] = 2.5f;
		x[2] = 1.5f;
		kern_quantize_act_isa(KERN_ISA_REF, KT_Q8_A)(x, &a, 32);
		assert_true(a.d == 1.0f && a.s == 127 + 3 + 2);
		assert_true(a.qs[0] == 127 && a.qs[1] == 3 && a.qs[2] == 2);
	}
	{ /* all zeros: d = 0 / -8 = -0 as in ggml, no division by zero */
		struct block_q4_0 b;

		memset(x, 0, sizeof(x));
		assert_int_equal(kern_quantize_row(KT_Q4_0, x, &b, 32), 0);
		assert_int_equal(b.d, 0x8000);
		for (int j = 0; j < 16; j++)
			assert_int_equal(b.qs[j], 0x88);
	}
	/* bad arguments */
	assert_int_equal(kern_quantize_row(KT_Q4_0, x, x, 31), -EINVAL);
	assert_int_equal(kern_quantize_row(KT_Q4_0, x, x, -32), -EINVAL);
	assert_int_equal(kern_quantize_row(KT_Q8_1, x, x, 32), -EINVAL);
	assert_int_equal(kern_quantize_row(KT_Q8_A, x, x, 32), -EINVAL);
	assert_int_equal(kern_quantize_row(4, x, x, 32), -EINVAL);
	assert_int_equal(kern_quantize_row(KT_Q4_K, x, x, 32), -EINVAL);
}

/* quantize -> dequantize stays within each type's error bound */
static void test_round_trip(void **state)
{
	(void)state;
	rng_state = 1;
	for (size_t c = 0; c < N_CASES; c++) {
		const struct type_case *tc = &type_cases[c];
		const struct kern_type_info *ti = kern_type_info(tc->type);
		const struct kern_ops *ops = kern_ops_isa(KERN_ISA_REF, tc->type);
		int64_t blk = ti->blck > 1 ? ti->blck : 32;
		double worst_max = 0, worst_rms = 0;

		if (!ops) {
			printf("round trip %s: no reference kernels, skipped\n",
			       ti->name);
			continue;
		}
		for (size_t l = 0; l < sizeof(block_lens) / sizeof(block_lens[0]); l++) {
			int64_t n = block_lens[l] * blk;
			float *x = xmalloc((size_t)n * sizeof(float));
			float *y = xmalloc((size_t)n * sizeof(float));
			uint8_t *q = xmalloc((size_t)kern_row_bytes(tc->type, n));
			double se = 0, sx = 0;

			/* one scale per row, so rms relates to the row; none
			 * so small that the f16 scales go subnormal (that
			 * precision loss is the format's, tested elsewhere) */
			fill_random(x, n, 0);
			for (int64_t i = 0; i < n; i++)
				x[i] *= l % 2 ? 1.0f : 1e3f;
			assert_int_equal(kern_quantize_row(tc->type, x, q, n), 0);
			ops->dequant(q, y, n);
			for (int64_t b = 0; b < n; b += blk) {
				double amax = 0;

				for (int64_t i = b; i < b + blk; i++)
					amax = fmax(amax, fabs(x[i]));
				for (int64_t i = b; i < b + blk; i++) {
					double e = fabs((double)y[i] - x[i]);
					double bound = ti->blck == 1
						? tc->rt_max * fabs(x[i]) + 0x1p-25
						: tc->rt_max * amax;

					if (!(e <= bound))
						fail_msg("%s: x[%lld] = %g comes back as %g (bound %g)",
							 ti->name, (long long)i, x[i], y[i], bound);
					se += e * e;
					sx += (double)x[i] * x[i];
					if (amax > 0)
						worst_max = fmax(worst_max, e / amax);
				}
			}
			if (ti->blck > 1) {
				double rel = sqrt(se / sx);

				worst_rms = fmax(worst_rms, rel);
				if (!(rel <= tc->rt_rms))
					fail_msg("%s n=%lld: rms error %g of rms(x) (bound %g)",
						 ti->name, (long long)n, rel, tc->rt_rms);
			}
			free(x);
			free(y);
			free(q);
		}
		printf("round trip %-5s max err %.3g of block amax, rms %.3g of rms(x)\n",
		       ti->name, worst_max, worst_rms);
	}
}

/* The reference matvec equals a double dot of the reference dequantized
 * weights and activation, over odd lengths and rows; q8 activations
 * dequantize to within half a step of x. */
static void test_ref_matvec(void **state)
{
	(void)state;
	rng_state = 2;
	for (size_t c = 0; c < N_CASES; c++) {
		const struct type_case *tc = &type_cases[c];
		const struct kern_type_info *ti = kern_type_info(tc->type);
		const struct kern_ops *ops = kern_ops_isa(KERN_ISA_REF, tc->type);
		kern_quantize_act_fn qa =
			kern_quantize_act_isa(KERN_ISA_REF, ti->act_type);
		int64_t blk = ti->blck > 1 ? ti->blck : 32;
		int64_t ab = kern_type_info(ti->act_type)->blck;

		if (!ops || (ti->act_type != KT_F32 && !qa)) {
			printf("ref matvec %s: no reference kernels, skipped\n",
			       ti->name);
			continue;
		}
		for (size_t l = 0; l < sizeof(block_lens) / sizeof(block_lens[0]); l++) {
			int64_t n = block_lens[l] * blk;
			size_t rb = (size_t)kern_row_bytes(tc->type, n);
			uint8_t *w = xmalloc(rb * 3);
			float *x = xmalloc((size_t)n * sizeof(float));
			float *xd = xmalloc((size_t)n * sizeof(float));
			float *wd = xmalloc((size_t)n * sizeof(float));
			void *act = xmalloc(kern_act_bytes(ti->act_type, n));
			float y[3];

			for (int r = 0; r < 3; r++)
				fill_row(tc, w + r * rb, n, r == 2);
			fill_random(x, n, 1);
			if (qa)
				qa(x, act, n);
			else
				memcpy(act, x, (size_t)n * sizeof(float));
			act_dequant(ti->act_type, act, xd, n);
			for (int64_t i = 0; qa && i < n; i += ab) {
				/* the act's own d: |x - d q| <= d / 2 */
				double amax = 0;

				for (int64_t j = i; j < i + ab; j++)
					amax = fmax(amax, fabs(x[j]));
				for (int64_t j = i; j < i + ab; j++)
					assert_true(fabs(xd[j] - x[j]) <=
						    amax / 127 * 0.5001 + 1e-30);
			}
			ops->matvec(w, rb, act, y, n, 0, 3);
			for (int r = 0; r < 3; r++) {
				double dot = 0, mag = 0;

				ops->dequant(w + r * rb, wd, n);
				for (int64_t i = 0; i < n; i++) {
					dot += (double)wd[i] * xd[i];
					mag += fabs((double)wd[i] * xd[i]);
				}
				if (!(fabs(y[r] - dot) <= 1e-5 * mag + 1e-30))
					fail_msg("ref %s n=%lld row %d: %g, dot of dequantized %g",
						 ti->name, (long long)n, r, y[r], dot);
			}
			free(w);
			free(x);
			free(xd);
			free(wd);
			free(act);
		}
	}
}

/* ---- every ISA against the reference ------------------------------------ */

static int isa_or_skip(void **state)
{
	int isa = (int)(intptr_t)*state;

	if (!kern_isa_supported(isa)) {
		printf("skipped: this CPU cannot run %s kernels\n",
		       kern_isa_name(isa));
		skip();
	}
	return isa;
}

/* One type, one ISA, one length, one misalignment: dequant and matvec
 * over every range against the reference. Returns the largest error seen
 * as a fraction of sum |w x|. */
static double check_matvec(const struct type_case *tc, int isa, int64_t n,
			   int mis)
{
	const struct kern_type_info *ti = kern_type_info(tc->type);
	const struct kern_ops *ref = kern_ops_isa(KERN_ISA_REF, tc->type);
	const struct kern_ops *ops = kern_ops_isa(isa, tc->type);
	kern_quantize_act_fn qa = kern_quantize_act_isa(KERN_ISA_REF,
							ti->act_type);
	size_t rb = (size_t)kern_row_bytes(tc->type, n);
	/* f32 activations are float pointers and stay aligned */
	int amis = ti->act_type == KT_F32 ? 0 : mis;
	uint8_t *wbuf = xmalloc(rb * N_ROWS + 8), *w = wbuf + mis;
	uint8_t *abuf = xmalloc(kern_act_bytes(ti->act_type, n) + 8);
	void *act = abuf + amis;
	float *x = xmalloc((size_t)n * sizeof(float));
	float *xd = xmalloc((size_t)n * sizeof(float));
	float *d0 = xmalloc((size_t)n * sizeof(float));
	float *d1 = xmalloc((size_t)n * sizeof(float));
	float yref[N_ROWS], y[N_ROWS], yall[N_ROWS];
	double mag[N_ROWS], worst = 0;
	const float untouched = -1.2345e30f;

	for (int r = 0; r < N_ROWS; r++)
		fill_row(tc, w + r * rb, n, r % 2);
	fill_random(x, n, 1);
	if (qa)
		qa(x, act, n);
	else
		memcpy(act, x, (size_t)n * sizeof(float));
	act_dequant(ti->act_type, act, xd, n);
	ref->matvec(w, rb, act, yref, n, 0, N_ROWS);

	for (int r = 0; r < N_ROWS; r++) {
		int64_t chunk = ti->blck > 1 ? ti->blck : n;

		ref->dequant(w + r * rb, d0, n);
		ops->dequant(w + r * rb, d1, n);
		mag[r] = 0;
		for (int64_t i = 0; i < n; i++)
			mag[r] += fabs((double)d0[i] * xd[i]);
		for (int64_t b = 0; b < n; b += chunk) {
			double amax = 0;

			for (int64_t i = b; i < b + chunk; i++)
				amax = fmax(amax, fabs(d0[i]));
			/* float types convert exactly; blocks may round
			 * d * q + m differently (fma) */
			for (int64_t i = b; i < b + chunk; i++)
				if (!(fabs(d1[i] - d0[i]) <=
				      (ti->blck == 1 ? 0 : 1e-6 * amax)))
					fail_msg("%s %s dequant n=%lld mis=%d [%lld]: %g, ref %g",
						 ti->name, kern_isa_name(isa),
						 (long long)n, mis, (long long)i,
						 d1[i], d0[i]);
		}
	}
	for (size_t g = 0; g < sizeof(ranges) / sizeof(ranges[0]); g++) {
		int64_t r0 = ranges[g][0], r1 = ranges[g][1];

		for (int r = 0; r < N_ROWS; r++)
			y[r] = untouched;
		ops->matvec(w, rb, act, y, n, r0, r1);
		for (int r = 0; r < N_ROWS; r++) {
			double err = fabs((double)y[r] - yref[r]);

			if (r < r0 || r >= r1) {
				if (y[r] != untouched)
					fail_msg("%s %s: [%lld, %lld) wrote y[%d]",
						 ti->name, kern_isa_name(isa),
						 (long long)r0, (long long)r1, r);
				continue;
			}
			if (!(err <= tc->mv_tol * mag[r] + FLT_MIN))
				fail_msg("%s %s n=%lld mis=%d rows [%lld, %lld) y[%d] = %.9g, ref %.9g (sum|wx| %g)",
					 ti->name, kern_isa_name(isa), (long long)n,
					 mis, (long long)r0, (long long)r1, r,
					 y[r], yref[r], mag[r]);
			/* a row's bits do not depend on the range (ranges[0]
			 * is the whole matrix): units and chips split rows */
			if (g == 0)
				yall[r] = y[r];
			else if (memcmp(&y[r], &yall[r], sizeof(float)))
				fail_msg("%s %s n=%lld mis=%d rows [%lld, %lld) y[%d] = %.9g, over all rows %.9g: not the same bits",
					 ti->name, kern_isa_name(isa), (long long)n,
					 mis, (long long)r0, (long long)r1, r,
					 y[r], yall[r]);
			if (mag[r] > 0)
				worst = fmax(worst, err / mag[r]);
		}
	}
	free(wbuf);
	free(abuf);
	free(x);
	free(xd);
	free(d0);
	free(d1);
	return worst;
}

static void test_isa_matvec(void **state)
{
	int isa = isa_or_skip(state);

	rng_state = 3;
	for (size_t c = 0; c < N_CASES; c++) {
		const struct type_case *tc = &type_cases[c];
		const struct kern_type_info *ti = kern_type_info(tc->type);
		int fl = ti->blck == 1;
		const int64_t *lens = fl ? float_lens : block_lens;
		size_t n_lens = fl ? sizeof(float_lens) / sizeof(float_lens[0])
				   : sizeof(block_lens) / sizeof(block_lens[0]);
		double worst = 0;

		if (!kern_ops_isa(KERN_ISA_REF, tc->type) ||
		    !kern_ops_isa(isa, tc->type) ||
		    (ti->act_type != KT_F32 &&
		     !kern_quantize_act_isa(KERN_ISA_REF, ti->act_type))) {
			printf("%s %s: no kernels linked, skipped\n", ti->name,
			       kern_isa_name(isa));
			continue;
		}
		for (size_t l = 0; l < n_lens; l++)
			for (size_t m = 0; m < sizeof(misaligns) / sizeof(misaligns[0]); m++)
				worst = fmax(worst, check_matvec(tc, isa,
								 lens[l] * ti->blck,
								 misaligns[m]));
		printf("%-6s %-5s matvec max err %.3g of sum|wx| (tol %g)\n",
		       kern_isa_name(isa), ti->name, worst, tc->mv_tol);
	}
}

/* Activation quantizers of an ISA against the reference: q8_a bit for
 * bit; q8_K to within one step with bsums that match its qs. */
static void test_isa_quantize_act(void **state)
{
	static const uint32_t acts[] = { KT_Q8_A, KT_Q8_K };
	int isa = isa_or_skip(state);

	rng_state = 4;
	for (size_t a = 0; a < 2; a++) {
		const struct kern_type_info *ti = kern_type_info(acts[a]);
		kern_quantize_act_fn ref = kern_quantize_act_isa(KERN_ISA_REF, acts[a]);
		kern_quantize_act_fn fn = kern_quantize_act_isa(isa, acts[a]);

		if (!ref || !fn) {
			printf("%s %s quantizer not linked, skipped\n",
			       kern_isa_name(isa), ti->name);
			assert_true(acts[a] != KT_Q8_A);
			continue;
		}
		for (size_t l = 0; l < sizeof(block_lens) / sizeof(block_lens[0]); l++) {
			int64_t n = block_lens[l] * ti->blck;
			size_t nb = kern_act_bytes(acts[a], n);
			float *x = xmalloc((size_t)n * sizeof(float));
			uint8_t *q0 = xmalloc(nb), *q1buf = xmalloc(nb + 8);
			uint8_t *q1 = q1buf + 1 + 2 * (l % 2);

			fill_random(x, n, 1);
			/* ties at .5 exercise the rounding rule */
			for (int64_t i = 0; i < n; i += 7)
				x[i] = (float)(int)(x[i] * 4) / 4;
			ref(x, q0, n);
			fn(x, q1, n);
			if (acts[a] == KT_Q8_A) {
				if (memcmp(q0, q1, nb))
					fail_msg("%s q8_a n=%lld differs from the reference",
						 kern_isa_name(isa), (long long)n);
			} else {
				for (int64_t b = 0; b < n / QK_K; b++) {
					struct block_q8_k k0, k1;

					memcpy(&k0, q0 + b * sizeof(k0), sizeof(k0));
					memcpy(&k1, q1 + b * sizeof(k1), sizeof(k1));
					assert_true(fabsf(k0.d - k1.d) <= 1e-6f * fabsf(k0.d));
					for (int j = 0; j < QK_K; j++)
						assert_true(abs(k0.qs[j] - k1.qs[j]) <= 1);
					for (int j = 0; j < QK_K / 16; j++) {
						int s = 0;

						for (int i = 0; i < 16; i++)
							s += k1.qs[16 * j + i];
						assert_int_equal(k1.bsums[j], s);
					}
				}
			}
			free(x);
			free(q0);
			free(q1buf);
		}
	}
}

/* ---- K-quants: known answers and bit-exact activations ------------------ */

/* Hand-built Q4_K/Q5_K/Q6_K blocks decode to the values ggml's layout
 * gives: 6-bit scales and mins packed in scales[12] (sub-blocks 4..7 split
 * over three bytes), 64 elements per 32 qs bytes (low nibbles first),
 * Q5_K's fifth bit j of qh[l] for sub-block j, Q6_K's ql/qh interleave and
 * signed int8 scales. */
static void test_dequant_known_k(void **state)
{
	float out[QK_K];

	(void)state;
	{ /* q4_K: sub 0 (sc 3, m 5), sub 6 (sc 45, m 50), sub 7 (sc 16) */
		struct block_q4_k b;

		memset(&b, 0, sizeof(b));
		b.d = h16(0.5f);
		b.dmin = h16(0.25f);
		b.scales[0] = 3;
		b.scales[4] = 5;
		b.scales[10] = 0x2d;  /* low nibbles of sc6 = 45, m6 = 50 */
		b.scales[2] |= 2 << 6; /* sc6 >> 4 */
		b.scales[6] |= 3 << 6; /* m6 >> 4 */
		b.scales[3] |= 1 << 6; /* sc7 = 16 */
		b.qs[0] = 0xf7;	       /* e0 = 7; e32 = 15 in sub 1 (sc 0) */
		b.qs[99] = 0xa9;       /* e195 = 9 (sub 6), e227 = 10 (sub 7) */
		kern_ops_isa(KERN_ISA_REF, KT_Q4_K)->dequant(&b, out, QK_K);
		assert_true(out[0] == 0.5f * 3 * 7 - 0.25f * 5);
		assert_true(out[1] == -0.25f * 5 && out[32] == 0);
		assert_true(out[195] == 0.5f * 45 * 9 - 0.25f * 50);
		assert_true(out[194] == -0.25f * 50);
		assert_true(out[227] == 0.5f * 16 * 10 && out[64] == 0);
	}
	{ /* q5_K: the same scales, fifth bits for e0 and e195 */
		struct block_q5_k b;

		memset(&b, 0, sizeof(b));
		b.d = h16(0.5f);
		b.dmin = h16(0.25f);
		b.scales[0] = 3;
		b.scales[4] = 5;
		b.scales[10] = 0x2d;
		b.scales[2] |= 2 << 6;
		b.scales[6] |= 3 << 6;
		b.scales[3] |= 1 << 6;
		b.qs[0] = 0xf7;
		b.qs[99] = 0xa9;
		b.qh[0] = 0x01;	 /* bit 0: sub 0, element 0 */
		b.qh[3] = 0x40;	 /* bit 6: sub 6, element 195 */
		kern_ops_isa(KERN_ISA_REF, KT_Q5_K)->dequant(&b, out, QK_K);
		assert_true(out[0] == 0.5f * 3 * 23 - 0.25f * 5);
		assert_true(out[195] == 0.5f * 45 * 25 - 0.25f * 50);
		assert_true(out[227] == 0.5f * 16 * 10);
		assert_true(out[3] == 0.5f * 3 * 0 - 0.25f * 5);
	}
	{ /* q6_K: x = d * scales[e / 16] * (q - 32) */
		struct block_q6_k b;

		memset(&b, 0, sizeof(b));
		b.d = h16(0.25f);
		b.scales[0] = -3;
		b.scales[5] = 7;
		b.scales[12] = -128;
		b.scales[15] = 127;
		b.ql[0] = 0x05;	 /* e0: low nibble 5 */
		b.qh[0] = 0x02;	 /* e0: bits 0-1 = 2 -> q 37 */
		b.ql[18] = 0xc0; /* e82 (k 2, l 18): high nibble 12 */
		b.qh[18] = 0x10; /* e82: bits 4-5 = 1 -> q 28 */
		b.ql[127] = 0xf0; /* e255 (half 1, k 3, l 31) */
		b.qh[63] = 0xc0;  /* e255 -> q 63 */
		kern_ops_isa(KERN_ISA_REF, KT_Q6_K)->dequant(&b, out, QK_K);
		assert_true(out[0] == 0.25f * -3 * 5);
		assert_true(out[1] == 0.25f * -3 * -32);
		assert_true(out[82] == 0.25f * 7 * -4);
		assert_true(out[255] == 0.25f * 127 * 31);
		assert_true(out[193] == 0.25f * -128 * -32);
		assert_true(out[100] == 0); /* sub-block 6: scale 0 */
	}
}

static uint64_t fnv1a(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

/* Blocks 0-5: plain, small, zero, all positive, one outlier, large; then
 * pseudo-random blocks over nine decades with -30x outliers: enough
 * blocks that a change in the order of the float operations of the scale
 * search shows (one did, first at block 872). Exact in float, so the same
 * on every IEEE machine. */
#define KNOWN_K_BLOCKS 1024
static void known_input_k(float *x, int n)
{
	static const float scale[] = { 1.0f, 0.01f, 0.0f, 1.0f, 1.0f, 1000.0f };
	static const float decade[] = { 1e-4f, 1e-3f, 1e-2f, 0.1f, 1.0f,
					10.0f, 100.0f, 1e3f, 1e4f };
	uint32_t s = 12345;

	for (int i = 0; i < n; i++) {
		int b = i / QK_K;
		float v = (float)((int)((i * 7919u) % 2001u) - 1000) / 256.0f;

		if (b < 6) {
			if (b == 3)
				v = 1.0f + (float)(i % 97) / 64.0f;
			if (b == 4 && i % QK_K == 77)
				v = -300.0f;
			x[i] = v * scale[b];
			continue;
		}
		s = s * 1664525u + 1013904223u;
		v = (float)((int)(s >> 21) - 1024) / 256.0f;
		if ((s >> 8) % 61 == 0)
			v *= -30.0f;
		x[i] = v * decade[b % 9];
	}
}

/* The K quantizers (and the Q8_K activation) are byte-for-byte ggml's
 * quantize_row_q*_K_ref: FNV-1a of their output on known_input_k, taken
 * from the libggml-base that llama-cpp-python 0.3.36 vendors (x86-64
 * build). Plus the Q8_K sign and rounding rules spelled out. */
static void test_quantize_known_k(void **state)
{
	static const struct {
		uint32_t type;
		uint64_t fnv;
	} want[] = {
		{ KT_Q4_K, 0xaa8aeb336923f7d9ull },
		{ KT_Q5_K, 0x1af05311f14ad408ull },
		{ KT_Q6_K, 0xf011a8d9c28464cdull },
		{ KT_Q8_K, 0x1e382885118f5217ull },
	};
	enum { N = KNOWN_K_BLOCKS * QK_K };
	float *x = xmalloc(N * sizeof(float));
	uint8_t *q = xmalloc(KNOWN_K_BLOCKS * sizeof(struct block_q8_k));

	(void)state;
	known_input_k(x, N);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		size_t nb = (size_t)kern_row_bytes(want[i].type, N);

		memset(q, 0xa5, nb);
		if (want[i].type == KT_Q8_K)
			kern_quantize_act_isa(KERN_ISA_REF, KT_Q8_K)(x, q, N);
		else
			assert_int_equal(kern_quantize_row(want[i].type, x, q, N), 0);
		if (fnv1a(q, nb) != want[i].fnv)
			fail_msg("%s: output differs from ggml's reference quantizer",
				 tname(want[i].type));
	}
	/* an all-zero block is all zero bytes */
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct kern_type_info *ti = kern_type_info(want[i].type);

		memset(q, 0xa5, ti->type_size);
		if (want[i].type == KT_Q8_K)
			kern_quantize_act_isa(KERN_ISA_REF, KT_Q8_K)(x + 2 * QK_K,
								     q, QK_K);
		else
			assert_int_equal(kern_quantize_row(want[i].type,
							   x + 2 * QK_K, q, QK_K), 0);
		for (size_t j = 0; j < ti->type_size; j++)
			assert_int_equal(q[j], 0);
	}
	{ /* q8_K: the first largest-magnitude element maps to -127, so
	   * d = max / -127; round half to even; bsums of 16 */
		struct block_q8_k a;

		memset(x, 0, QK_K * sizeof(float));
		x[0] = 127;
		x[1] = 2.5f;
		x[2] = -3.5f;
		x[3] = -127; /* ties with x[0]: x[0] decides the sign */
		x[16] = 0.5f;
		kern_quantize_act_isa(KERN_ISA_REF, KT_Q8_K)(x, &a, QK_K);
		assert_true(a.d == -1.0f);
		assert_true(a.qs[0] == -127 && a.qs[1] == -2 && a.qs[2] == 4 &&
			    a.qs[3] == 127 && a.qs[16] == 0);
		assert_true(a.bsums[0] == 2 && a.bsums[1] == 0);
	}
	assert_int_equal(kern_quantize_row(KT_Q5_K, x, q, 255), -EINVAL);
	assert_int_equal(kern_quantize_row(KT_Q6_K, x, q, -256), -EINVAL);
	free(x);
	free(q);
}

/* Q8_K activations of every ISA are bit-identical to the reference
 * (stricter than test_isa_quantize_act): ties, extreme scales, zero
 * blocks, a misaligned destination. */
static void test_isa_quantize_q8_k_exact(void **state)
{
	int isa = isa_or_skip(state);
	kern_quantize_act_fn ref = kern_quantize_act_isa(KERN_ISA_REF, KT_Q8_K);
	kern_quantize_act_fn fn = kern_quantize_act_isa(isa, KT_Q8_K);

	rng_state = 5;
	for (size_t l = 0; l < sizeof(block_lens) / sizeof(block_lens[0]); l++) {
		int64_t n = block_lens[l] * QK_K;
		size_t nb = kern_act_bytes(KT_Q8_K, n);
		float *x = xmalloc((size_t)n * sizeof(float));
		uint8_t *q0 = xmalloc(nb), *q1buf = xmalloc(nb + 8);
		uint8_t *q1 = q1buf + misaligns[l % 3];

		fill_random(x, n, 1);
		for (int64_t i = 0; i < n; i += 5)
			x[i] = (float)(int)(x[i] * 2) / 2;
		if (l % 2)	/* equal magnitudes of both signs */
			x[n - 1] = -x[n - 2];
		ref(x, q0, n);
		fn(x, q1, n);
		if (memcmp(q0, q1, nb))
			fail_msg("%s q8_K n=%lld differs from the reference",
				 kern_isa_name(isa), (long long)n);
		free(x);
		free(q0);
		free(q1buf);
	}
}

/* K-quant dequantization of every ISA rounds exactly as the reference
 * (product, then difference), on quantized rows and raw random blocks,
 * misaligned. */
static void test_isa_dequant_k_exact(void **state)
{
	static const uint32_t types[] = { KT_Q4_K, KT_Q5_K, KT_Q6_K };
	int isa = isa_or_skip(state);

	rng_state = 6;
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		const struct kern_ops *ref = kern_ops_isa(KERN_ISA_REF, types[t]);
		const struct kern_ops *ops = kern_ops_isa(isa, types[t]);

		for (size_t l = 0; l < sizeof(block_lens) / sizeof(block_lens[0]); l++) {
			int64_t n = block_lens[l] * QK_K;
			size_t rb = (size_t)kern_row_bytes(types[t], n);
			uint8_t *wbuf = xmalloc(rb + 8), *w = wbuf + misaligns[l % 3];
			float *d0 = xmalloc((size_t)n * sizeof(float));
			float *d1 = xmalloc((size_t)n * sizeof(float));

			fill_row(case_of(types[t]), w, n, l % 2);
			ref->dequant(w, d0, n);
			ops->dequant(w, d1, n);
			if (memcmp(d0, d1, (size_t)n * sizeof(float)))
				fail_msg("%s %s dequant n=%lld differs from the reference",
					 kern_isa_name(isa), tname(types[t]),
					 (long long)n);
			free(wbuf);
			free(d0);
			free(d1);
		}
	}
}

/* ---- batched products (kern_matmul_fn), every quantized type ------------ */

#define MM32_NROWS 37 /* two 16-row vectors or groups, a panel, 5 rows more */
#define MM32_MAXTOK 33
/* [r0, r1) ranges: whole, both ends cut, one row, r0 > 0 with a short
 * tail, vector and panel boundaries, empty */
static const int64_t mm32_ranges[][2] = {
	{ 0, MM32_NROWS }, { 1, MM32_NROWS - 1 }, { 5, 6 },
	{ 3, MM32_NROWS }, { 16, 33 },		  { 17, 35 },
	{ 0, 32 },	   { 32, MM32_NROWS },	  { 4, 4 }
};
static const int64_t mm32_toks[] = { 1, 2, 3, 5, 7, 8, 9, 17, 33 };
/* 32-element formats: odd counts, and ones that cross the kernels' K
 * chunks; K-quants: odd counts of 256-element super-blocks */
static const int64_t mm32_blocks[] = { 1, 3, 7, 33, 65 };
static const int64_t mmk_blocks[] = { 1, 2, 3, 7 };

/* One type, ISA, length and misalignment: matmul against the reference
 * matvec of every token. Weights and activations are misaligned by mis,
 * activations lie an odd act_stride apart (larger than one), y has
 * ldy > rows, and nothing outside the range's rows and the tokens asked
 * for may be written. Every third row holds only maximal values and every
 * third token only +-127, so partial sums kept in narrow integers reach
 * their largest size. Returns the worst error as a fraction of
 * sum |w x|. */
static double check_matmul(const struct type_case *tc, int isa,
			       int64_t n, int mis)
{
	const struct kern_type_info *ti = kern_type_info(tc->type);
	const struct kern_ops *ref = kern_ops_isa(KERN_ISA_REF, tc->type);
	const struct kern_ops *ops = kern_ops_isa(isa, tc->type);
	kern_quantize_act_fn qa = kern_quantize_act_isa(KERN_ISA_REF,
							ti->act_type);
	size_t rb = (size_t)kern_row_bytes(tc->type, n);
	size_t as = kern_act_bytes(ti->act_type, n) + 37;
	const int64_t ldy = MM32_NROWS + 5;
	uint8_t *wbuf = xmalloc(rb * MM32_NROWS + 8), *w = wbuf + mis;
	uint8_t *abuf = xmalloc(as * MM32_MAXTOK + 8), *act = abuf + mis;
	float *x = xmalloc((size_t)n * sizeof(float));
	float *wd = xmalloc((size_t)n * MM32_NROWS * sizeof(float));
	float *xd = xmalloc((size_t)n * sizeof(float));
	float *yref = xmalloc(sizeof(float) * MM32_MAXTOK * MM32_NROWS);
	double *mag = xmalloc(sizeof(double) * MM32_MAXTOK * MM32_NROWS);
	float *y = xmalloc(sizeof(float) * (MM32_MAXTOK + 1) * ldy);
	const float untouched = -1.2345e30f;
	double worst = 0;

	for (int r = 0; r < MM32_NROWS; r++) {
		uint8_t *row = w + r * rb;

		if (r % 3 == 2) {
			/* every quant at its maximum, unit f16 scales */
			const uint16_t one = 0x3C00;

			memset(row, 0xFF, rb);
			for (int64_t b = 0; b < n / ti->blck; b++)
				for (int f = 0; f < 2; f++)
					memcpy(row + b * ti->type_size + tc->f16_at[f],
					       &one, 2);
		} else {
			fill_row(tc, row, n, r % 2);
		}
		ref->dequant(row, wd + r * n, n);
	}
	for (int t = 0; t < MM32_MAXTOK; t++) {
		fill_random(x, n, 1);
		if (t % 3 == 2) /* qs -127, then +127 to the block's end */
			for (int64_t i = 0; i < n; i++)
				x[i] = i % ti->blck ? -1.0f : 1.0f;
		qa(x, act + t * as, n);
		act_dequant(ti->act_type, act + t * as, xd, n);
		ref->matvec(w, rb, act + t * as, yref + t * MM32_NROWS, n, 0,
			    MM32_NROWS);
		for (int r = 0; r < MM32_NROWS; r++) {
			double s = 0;

			for (int64_t i = 0; i < n; i++)
				s += fabs((double)wd[r * n + i] * xd[i]);
			mag[t * MM32_NROWS + r] = s;
		}
	}
	for (size_t k = 0; k < sizeof(mm32_toks) / sizeof(mm32_toks[0]); k++) {
		for (size_t g = 0; g < sizeof(mm32_ranges) / sizeof(mm32_ranges[0]); g++) {
			int64_t nt = mm32_toks[k];
			int64_t r0 = mm32_ranges[g][0], r1 = mm32_ranges[g][1];

			for (int64_t i = 0; i < (MM32_MAXTOK + 1) * ldy; i++)
				y[i] = untouched;
			ops->matmul(w, rb, act, as, y, ldy, n, r0, r1, nt);
			for (int64_t t = 0; t <= nt; t++) {
				for (int64_t r = 0; r < ldy; r++) {
					float v = y[t * ldy + r];
					double ref_v, err, m;

					if (t == nt || r < r0 || r >= r1) {
						if (v != untouched)
							fail_msg("%s %s matmul rows [%lld, %lld) n_tok %lld wrote y[%lld][%lld]",
								 ti->name, kern_isa_name(isa),
								 (long long)r0, (long long)r1,
								 (long long)nt, (long long)t,
								 (long long)r);
						continue;
					}
					ref_v = yref[t * MM32_NROWS + r];
					m = mag[t * MM32_NROWS + r];
					err = fabs((double)v - ref_v);
					if (!(err <= tc->mv_tol * m + FLT_MIN))
						fail_msg("%s %s matmul n=%lld mis=%d rows [%lld, %lld) n_tok %lld y[%lld][%lld] = %.9g, ref %.9g (sum|wx| %g)",
							 ti->name, kern_isa_name(isa),
							 (long long)n, mis, (long long)r0,
							 (long long)r1, (long long)nt,
							 (long long)t, (long long)r, v,
							 ref_v, m);
					if (m > 0)
						worst = fmax(worst, err / m);
				}
			}
		}
	}
	free(wbuf);
	free(abuf);
	free(x);
	free(wd);
	free(xd);
	free(yref);
	free(mag);
	free(y);
	return worst;
}

/* Batched K-quant products of an ISA against the reference matvec; a type
 * whose ISA table has no matmul (callers loop matvec) says so. */
static void test_isa_matmul_k(void **state)
{
	static const uint32_t types[] = { KT_Q4_K, KT_Q5_K, KT_Q6_K };
	int isa = isa_or_skip(state);

	rng_state = 7;
	for (size_t c = 0; c < sizeof(types) / sizeof(types[0]); c++) {
		const struct type_case *tc = case_of(types[c]);
		const struct kern_ops *ops = kern_ops_isa(isa, types[c]);
		double worst = 0;

		if (!ops || !ops->matmul) {
			printf("%s %s: no matmul (matvec per token), skipped\n",
			       kern_isa_name(isa), tname(types[c]));
			continue;
		}
		for (size_t b = 0; b < sizeof(mmk_blocks) / sizeof(mmk_blocks[0]); b++)
			for (size_t m = 0; m < sizeof(misaligns) / sizeof(misaligns[0]); m++)
				worst = fmax(worst, check_matmul(tc, isa,
								 mmk_blocks[b] * QK_K,
								 misaligns[m]));
		printf("%-6s %-5s matmul max err %.3g of sum|wx| (tol %g)\n",
		       kern_isa_name(isa), tname(types[c]), worst, tc->mv_tol);
	}
}

/* Batched products of the 32-element formats of an ISA against the
 * reference matvec; a type whose ISA table has no matmul (callers loop
 * matvec) says so. */
static void test_isa_matmul_q32(void **state)
{
	static const uint32_t types[] = { KT_Q4_0, KT_Q4_1, KT_Q5_0, KT_Q5_1,
					  KT_Q8_0 };
	int isa = isa_or_skip(state);

	rng_state = 11;
	for (size_t c = 0; c < sizeof(types) / sizeof(types[0]); c++) {
		const struct type_case *tc = case_of(types[c]);
		const struct kern_ops *ops = kern_ops_isa(isa, types[c]);
		double worst = 0;

		if (!ops || !ops->matmul) {
			printf("%s %s: no matmul (matvec per token), skipped\n",
			       kern_isa_name(isa), tname(types[c]));
			continue;
		}
		for (size_t b = 0; b < sizeof(mm32_blocks) / sizeof(mm32_blocks[0]); b++)
			for (size_t m = 0; m < sizeof(misaligns) / sizeof(misaligns[0]); m++)
				worst = fmax(worst, check_matmul(
							    tc, isa, mm32_blocks[b] * 32,
							    misaligns[m]));
		printf("%-6s %-5s matmul max err %.3g of sum|wx| (tol %g)\n",
		       kern_isa_name(isa), tname(types[c]), worst, tc->mv_tol);
	}
}

/* ---- float activations (kern_matmul_f32, --act f32), every type -------- */

#define F32_NROWS 13
#define F32_LDX_PAD 3 /* activations lie n + 3 floats apart */
static const int64_t f32_toks[] = { 1, 3, 9 }; /* 9: past a group of 8 */

/*
 * One type, ISA, length and misalignment: kern_matmul_f32_isa against a
 * double dot of the reference dequantization (the specification, pinned
 * by the known-answer tests above) with float activations that are never
 * rounded. Weights are misaligned by mis bytes, activations and y by one
 * float; rows outside [r0, r1) and tokens past n_tok are left alone; a
 * sub-range and a batch give the bits of the whole range and of single
 * tokens (the contract that makes any split of rows give the same
 * logits). Returns the worst error as a fraction of sum |w x|.
 */
static double check_matmul_f32(const struct type_case *tc, int isa,
			       int64_t n, int mis, double tol)
{
	const struct kern_type_info *ti = kern_type_info(tc->type);
	const struct kern_ops *ref = kern_ops_isa(KERN_ISA_REF, tc->type);
	const int64_t ldx = n + F32_LDX_PAD, ldy = F32_NROWS + 2, maxt = 9;
	size_t rb = (size_t)kern_row_bytes(tc->type, n);
	uint8_t *wbuf = xmalloc(rb * F32_NROWS + 8), *w = wbuf + mis;
	float *xbuf = xmalloc(sizeof(float) * (size_t)(ldx * maxt + 1));
	float *x = xbuf + 1;
	float *ybuf = xmalloc(sizeof(float) * (size_t)(ldy * maxt + 1));
	float *y = ybuf + 1, *yall = xmalloc(sizeof(float) * (size_t)(ldy * maxt));
	float *d0 = xmalloc((size_t)n * sizeof(float));
	double *yref = xmalloc(sizeof(double) * F32_NROWS * (size_t)maxt);
	double *mag = xmalloc(sizeof(double) * F32_NROWS * (size_t)maxt);
	const float untouched = -1.2345e30f;
	double worst = 0;

	for (int r = 0; r < F32_NROWS; r++)
		fill_row(tc, w + r * rb, n, r % 2);
	for (int64_t t = 0; t < maxt; t++)
		fill_random(x + t * ldx, n, 1);
	for (int r = 0; r < F32_NROWS; r++) {
		ref->dequant(w + r * rb, d0, n);
		for (int64_t t = 0; t < maxt; t++) {
			double s = 0, m = 0;

			for (int64_t i = 0; i < n; i++) {
				s += (double)d0[i] * x[t * ldx + i];
				m += fabs((double)d0[i] * x[t * ldx + i]);
			}
			yref[t * F32_NROWS + r] = s;
			mag[t * F32_NROWS + r] = m;
		}
	}
	/* the whole range with every token: the bits the others must give */
	assert_int_equal(kern_matmul_f32_isa(isa, tc->type, w, rb, x, ldx, yall,
					     ldy, n, 0, F32_NROWS, maxt), 0);
	for (size_t k = 0; k < sizeof(f32_toks) / sizeof(f32_toks[0]); k++) {
		int64_t nt = f32_toks[k];

		for (size_t g = 0; g < sizeof(ranges) / sizeof(ranges[0]); g++) {
			int64_t r0 = ranges[g][0], r1 = ranges[g][1];

			for (int64_t i = 0; i < ldy * maxt; i++)
				y[i] = untouched;
			assert_int_equal(kern_matmul_f32_isa(isa, tc->type, w, rb, x,
							     ldx, y, ldy, n, r0, r1,
							     nt), 0);
			for (int64_t t = 0; t < maxt; t++) {
				for (int64_t r = 0; r < ldy; r++) {
					float v = y[t * ldy + r];
					double err;

					if (t >= nt || r < r0 || r >= r1) {
						if (v != untouched)
							fail_msg("%s %s f32: [%lld, %lld) x %lld wrote y[%lld][%lld]",
								 ti->name, kern_isa_name(isa),
								 (long long)r0, (long long)r1,
								 (long long)nt, (long long)t,
								 (long long)r);
						continue;
					}
					if (memcmp(&v, &yall[t * ldy + r], sizeof(v)))
						fail_msg("%s %s f32 n=%lld: rows [%lld, %lld) x %lld tokens: y[%lld][%lld] = %.9g, whole range %.9g",
							 ti->name, kern_isa_name(isa), (long long)n,
							 (long long)r0, (long long)r1, (long long)nt,
							 (long long)t, (long long)r, v,
							 yall[t * ldy + r]);
					err = fabs((double)v - yref[t * F32_NROWS + r]);
					if (!(err <= tol * mag[t * F32_NROWS + r] + FLT_MIN))
						fail_msg("%s %s f32 n=%lld mis=%d y[%lld][%lld] = %.9g, double ref %.12g (sum|wx| %g, tol %g)",
							 ti->name, kern_isa_name(isa), (long long)n,
							 mis, (long long)t, (long long)r, v,
							 yref[t * F32_NROWS + r],
							 mag[t * F32_NROWS + r], tol);
					if (mag[t * F32_NROWS + r] > 0)
						worst = fmax(worst, err / mag[t * F32_NROWS + r]);
				}
			}
		}
	}
	free(wbuf);
	free(xbuf);
	free(ybuf);
	free(yall);
	free(d0);
	free(yref);
	free(mag);
	return worst;
}

/* Every weight type of one ISA. Tolerance: the reference (double sums of
 * the same dequantized values) only rounds its result to float, at most
 * 2^-24 of |y| <= sum |w x|; an ISA sums 256-element chunks in float
 * lanes (and may dequantize with an fma): 1e-6, about 7x the worst seen
 * (1.4e-7, f32 rows on AVX2 and AVX-512). */
static void test_isa_matmul_f32(void **state)
{
	int isa = isa_or_skip(state);

	rng_state = 11;
	for (size_t c = 0; c < N_CASES; c++) {
		const struct type_case *tc = &type_cases[c];
		const struct kern_type_info *ti = kern_type_info(tc->type);
		int fl = ti->blck == 1;
		const int64_t *lens = fl ? float_lens : block_lens;
		size_t n_lens = fl ? sizeof(float_lens) / sizeof(float_lens[0])
				   : sizeof(block_lens) / sizeof(block_lens[0]);
		double tol = isa == KERN_ISA_REF ? 1e-7 : 1e-6, worst = 0;

		for (size_t l = 0; l < n_lens; l++) {
			/* K-quant rows past 16 super-blocks add nothing new */
			if (ti->blck == QK_K && lens[l] > 17)
				continue;
			for (size_t m = 0; m < sizeof(misaligns) / sizeof(misaligns[0]); m++)
				worst = fmax(worst,
					     check_matmul_f32(tc, isa, lens[l] * ti->blck,
							      misaligns[m], tol));
		}
		printf("%-6s %-5s matmul_f32 max err %.3g of sum|wx| (tol %g)\n",
		       kern_isa_name(isa), ti->name, worst, tol);
	}
}

/* Refusals: a type without kernels, a length that is not whole blocks. */
static void test_matmul_f32_refuses(void **state)
{
	float x[64] = { 0 }, y[2];
	uint8_t w[256] = { 0 };

	(void)state;
	assert_int_equal(kern_matmul_f32(KT_Q2_K, w, 84, x, 0, y, 0, 256, 0, 1, 1),
			 -EINVAL);
	assert_int_equal(kern_matmul_f32(KT_Q8_A, w, 36, x, 0, y, 0, 32, 0, 1, 1),
			 -EINVAL);
	assert_int_equal(kern_matmul_f32(KT_Q4_0, w, 18, x, 0, y, 0, 31, 0, 1, 1),
			 -EINVAL);
	assert_int_equal(kern_matmul_f32(KT_Q4_0, w, 18, x, 0, y, 0, 32, 0, 1, 1), 0);
	assert_true(y[0] == 0.0f);
}

static int setup(void **state)
{
	(void)state;
	unsetenv("STRATA_KERNELS");
	return kern_init() < 0 ? -1 : 0;
}

#define ISA_TEST(f, isa) cmocka_unit_test_prestate(f, (void *)(intptr_t)(isa))

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_type_info),
		cmocka_unit_test(test_row_bytes),
		cmocka_unit_test(test_lookup),
		cmocka_unit_test(test_weight_types_complete),
		cmocka_unit_test(test_f16),
		cmocka_unit_test(test_bf16),
		cmocka_unit_test(test_dequant_known),
		cmocka_unit_test(test_quantize_known),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_ref_matvec),
		ISA_TEST(test_isa_matvec, KERN_ISA_REF),
		ISA_TEST(test_isa_matvec, KERN_ISA_AVX2),
		ISA_TEST(test_isa_matvec, KERN_ISA_AVX512),
		ISA_TEST(test_isa_quantize_act, KERN_ISA_AVX2),
		ISA_TEST(test_isa_quantize_act, KERN_ISA_AVX512),
		cmocka_unit_test(test_dequant_known_k),
		cmocka_unit_test(test_quantize_known_k),
		ISA_TEST(test_isa_quantize_q8_k_exact, KERN_ISA_AVX2),
		ISA_TEST(test_isa_quantize_q8_k_exact, KERN_ISA_AVX512),
		ISA_TEST(test_isa_dequant_k_exact, KERN_ISA_AVX2),
		ISA_TEST(test_isa_dequant_k_exact, KERN_ISA_AVX512),
		cmocka_unit_test(test_init),
		ISA_TEST(test_isa_matmul_k, KERN_ISA_AVX2),
		ISA_TEST(test_isa_matmul_k, KERN_ISA_AVX512),
		ISA_TEST(test_isa_matmul_q32, KERN_ISA_AVX2),
		ISA_TEST(test_isa_matmul_q32, KERN_ISA_AVX512),
		ISA_TEST(test_isa_matmul_f32, KERN_ISA_REF),
		ISA_TEST(test_isa_matmul_f32, KERN_ISA_AVX2),
		ISA_TEST(test_isa_matmul_f32, KERN_ISA_AVX512),
		cmocka_unit_test(test_matmul_f32_refuses),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
