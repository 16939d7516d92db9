/*
 * kern.c - type traits, ISA selection and dispatch, scalar half/bfloat16
 * conversions.
 *
 * Global state: one dispatch table per ISA this CPU runs (kern_tables,
 * kern_built) and the index of the active one (kern_active). They are
 * written only by kern_init(), which the program calls once from main
 * before any thread uses a kernel; after that they are read-only, so every
 * lookup below is thread-safe.
 */
#include <cpuid.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern.h"
#include "kernels/kern_impl.h"

/* Traits by GGUF type number; names as ggml spells them. Block sizes of
 * types we never compute on (q8_1, q2_K, q3_K) are ggml's, so a GGUF file
 * holding them can still be sized and rejected with a clear message. */
static const struct kern_type_info kern_types[KT_COUNT] = {
	[KT_F32] = { "f32", 1, 4, KT_F32, 1 },
	[KT_F16] = { "f16", 1, 2, KT_F32, 1 },
	[KT_Q4_0] = { "q4_0", QK4_0, sizeof(struct block_q4_0), KT_Q8_A, 1 },
	[KT_Q4_1] = { "q4_1", QK4_1, sizeof(struct block_q4_1), KT_Q8_A, 1 },
	[KT_Q5_0] = { "q5_0", QK5_0, sizeof(struct block_q5_0), KT_Q8_A, 1 },
	[KT_Q5_1] = { "q5_1", QK5_1, sizeof(struct block_q5_1), KT_Q8_A, 1 },
	[KT_Q8_0] = { "q8_0", QK8_0, sizeof(struct block_q8_0), KT_Q8_A, 1 },
	/* ggml's block_q8_1: half d, half s, int8 qs[32] */
	[KT_Q8_1] = { "q8_1", 32, 36, KT_Q8_A, 0 },
	/* ggml's block_q2_K: scales[16], qs[64], half d, half dmin */
	[KT_Q2_K] = { "q2_K", QK_K, 84, KT_Q8_K, 0 },
	/* ggml's block_q3_K: hmask[32], qs[64], scales[12], half d */
	[KT_Q3_K] = { "q3_K", QK_K, 110, KT_Q8_K, 0 },
	[KT_Q4_K] = { "q4_K", QK_K, sizeof(struct block_q4_k), KT_Q8_K, 1 },
	[KT_Q5_K] = { "q5_K", QK_K, sizeof(struct block_q5_k), KT_Q8_K, 1 },
	[KT_Q6_K] = { "q6_K", QK_K, sizeof(struct block_q6_k), KT_Q8_K, 1 },
	[KT_Q8_K] = { "q8_K", QK_K, sizeof(struct block_q8_k), KT_Q8_K, 0 },
	[KT_BF16] = { "bf16", 1, 2, KT_F32, 1 },
	[KT_Q8_A] = { "q8_a", QK8_A, sizeof(struct block_q8_a), KT_Q8_A, 0 },
};

static struct kern_table kern_tables[KERN_ISA_COUNT];
static int kern_built[KERN_ISA_COUNT]; /* 1: the CPU runs it, table built */
static int kern_active = -1; /* enum kern_isa once kern_init succeeded */

const struct kern_type_info *kern_type_info(uint32_t type)
{
	if (type >= KT_COUNT || !kern_types[type].name)
		return NULL;
	return &kern_types[type];
}

int64_t kern_row_bytes(uint32_t type, int64_t n)
{
	const struct kern_type_info *ti = kern_type_info(type);

	if (!ti || n < 0 || n % ti->blck)
		return -EINVAL;
	if (n / ti->blck > INT64_MAX / (int64_t)ti->type_size)
		return -EINVAL;
	return n / ti->blck * (int64_t)ti->type_size;
}

size_t kern_act_bytes(uint32_t act_type, int64_t n)
{
	const struct kern_type_info *ti = kern_type_info(act_type);

	if (!ti || n < 0 || (act_type != KT_F32 && act_type != KT_Q8_A &&
			     act_type != KT_Q8_K))
		return 0;
	/* a partial block still takes a whole one */
	return (size_t)((n + ti->blck - 1) / ti->blck) * ti->type_size;
}

/* ---- ISA selection ---------------------------------------------------- */

static const char *const kern_isa_names[KERN_ISA_COUNT] = {
	[KERN_ISA_REF] = "ref",
	[KERN_ISA_AVX2] = "avx2",
	[KERN_ISA_AVX512] = "avx512",
};

const char *kern_isa_name(enum kern_isa isa)
{
	if ((unsigned)isa >= KERN_ISA_COUNT)
		return "?";
	return kern_isa_names[isa];
}

/* F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports
 * does not know "f16c", gcc's does; one test serves both compilers */
static int has_f16c(void)
{
	unsigned a, b, c, d;

	return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

int kern_isa_supported(enum kern_isa isa)
{
	__builtin_cpu_init();
	switch (isa) {
	case KERN_ISA_REF:
		return 1;
	case KERN_ISA_AVX2:
		return __builtin_cpu_supports("avx2") &&
		       __builtin_cpu_supports("fma") &&
		       has_f16c();
	case KERN_ISA_AVX512:
		/* kern_avx512.c is built with DQ too; every VNNI part has it */
		return kern_isa_supported(KERN_ISA_AVX2) &&
		       __builtin_cpu_supports("avx512f") &&
		       __builtin_cpu_supports("avx512bw") &&
		       __builtin_cpu_supports("avx512vl") &&
		       __builtin_cpu_supports("avx512dq") &&
		       __builtin_cpu_supports("avx512vnni");
	default:
		return 0;
	}
}

/* Each table starts as the reference and every ISA at or below the target
 * overwrites the slots it implements, so a table is always complete. */
static void kern_build_table(enum kern_isa isa, struct kern_table *t)
{
	memset(t, 0, sizeof(*t));
	kern_fill_ref(t);
	if (isa >= KERN_ISA_AVX2) {
		kern_fill_avx2(t);
		kern_fill_avx2_k(t);
	}
	if (isa >= KERN_ISA_AVX512) {
		kern_fill_avx512(t);
		kern_fill_avx512_k(t);
	}
}

int kern_init(void)
{
	const char *env = getenv("STRATA_KERNELS");
	int isa;

	if (env && *env) {
		for (isa = 0; isa < KERN_ISA_COUNT; isa++)
			if (!strcmp(env, kern_isa_names[isa]))
				break;
		if (isa == KERN_ISA_COUNT || !kern_isa_supported(isa))
			return -EINVAL;
	} else {
		isa = KERN_ISA_AVX512;
		while (isa > KERN_ISA_REF && !kern_isa_supported(isa))
			isa--;
	}
	/* tables of every ISA this CPU runs, so tests can compare them */
	for (int i = 0; i < KERN_ISA_COUNT; i++) {
		kern_built[i] = kern_isa_supported(i);
		if (kern_built[i])
			kern_build_table(i, &kern_tables[i]);
	}
	kern_active = isa;
	return isa;
}

enum kern_isa kern_isa_active(void)
{
	return kern_active < 0 ? KERN_ISA_REF : (enum kern_isa)kern_active;
}

/* The table of an ISA, or NULL before kern_init or if the CPU lacks it. */
static const struct kern_table *kern_table_of(enum kern_isa isa)
{
	if ((unsigned)isa >= KERN_ISA_COUNT || !kern_built[isa])
		return NULL;
	return &kern_tables[isa];
}

const struct kern_ops *kern_ops_isa(enum kern_isa isa, uint32_t type)
{
	const struct kern_table *t = kern_table_of(isa);
	const struct kern_type_info *ti = kern_type_info(type);

	if (!t || !ti || !ti->is_weight)
		return NULL;
	/* a weight type whose kernels are not linked in (yet) */
	if (!t->ops[type].dequant || !t->ops[type].matvec)
		return NULL;
	return &t->ops[type];
}

const struct kern_ops *kern_ops(uint32_t type)
{
	return kern_ops_isa(kern_isa_active(), type);
}

kern_quantize_act_fn kern_quantize_act_isa(enum kern_isa isa,
					   uint32_t act_type)
{
	const struct kern_table *t = kern_table_of(isa);

	if (!t || (act_type != KT_Q8_A && act_type != KT_Q8_K))
		return NULL;
	return t->quantize_act[act_type];
}

kern_quantize_act_fn kern_quantize_act(uint32_t act_type)
{
	return kern_quantize_act_isa(kern_isa_active(), act_type);
}

/* ---- float activations (--act f32) ---------------------------------------- */

/* tokens whose partial sums are kept at once: the row's chunk is
 * dequantized once for each group of them */
#define F32_TOK_GROUP 8

int kern_matmul_f32_isa(enum kern_isa isa, uint32_t type, const void *w,
			size_t row_bytes, const float *x, int64_t ldx, float *y,
			int64_t ldy, int64_t n, int64_t r0, int64_t r1,
			int64_t n_tok)
{
	const struct kern_table *t = kern_table_of(isa);
	const struct kern_ops *ops = kern_ops_isa(isa, type);
	const struct kern_type_info *ti = kern_type_info(type);
	float buf[KERN_F32_CHUNK] __attribute__((aligned(64)));

	if (!t || !ops || !t->dot_f32 || n % ti->blck)
		return -EINVAL;
	_Static_assert(KERN_F32_CHUNK % QK_K == 0 && KERN_F32_CHUNK % QK8_0 == 0,
		       "a chunk is whole blocks of every type");
	for (int64_t r = r0; r < r1; r++) {
		const char *row = (const char *)w + r * row_bytes;
		for (int64_t t0 = 0; t0 < n_tok; t0 += F32_TOK_GROUP) {
			int64_t g = n_tok - t0 < F32_TOK_GROUP ? n_tok - t0 : F32_TOK_GROUP;
			double acc[F32_TOK_GROUP] = { 0 };
			for (int64_t c = 0; c < n; c += KERN_F32_CHUNK) {
				int64_t len = n - c < KERN_F32_CHUNK ? n - c : KERN_F32_CHUNK;
				ops->dequant(row + c / ti->blck * (int64_t)ti->type_size,
					     buf, len);
				for (int64_t j = 0; j < g; j++)
					acc[j] += t->dot_f32(buf, x + (t0 + j) * ldx + c, len);
			}
			for (int64_t j = 0; j < g; j++)
				y[(t0 + j) * ldy + r] = (float)acc[j];
		}
	}
	return 0;
}

int kern_matmul_f32(uint32_t type, const void *w, size_t row_bytes,
		    const float *x, int64_t ldx, float *y, int64_t ldy,
		    int64_t n, int64_t r0, int64_t r1, int64_t n_tok)
{
	return kern_matmul_f32_isa(kern_isa_active(), type, w, row_bytes, x, ldx,
				   y, ldy, n, r0, r1, n_tok);
}

/* ---- reference quantizers ----------------------------------------------- */

int kern_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
	const struct kern_type_info *ti = kern_type_info(type);

	if (!ti || !ti->is_weight || n < 0 || n % ti->blck)
		return -EINVAL;
	if (ti->act_type == KT_Q8_K)
		return kern_quantize_row_k(type, src, dst, n);
	return kern_quantize_row_ref(type, src, dst, n);
}

/* ---- half and bfloat16 ------------------------------------------------- */

static uint32_t f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float bits_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

float kern_f16_to_f32(kern_f16 h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t mant = h & 0x3ff;

	if (exp == 0x1f) /* inf, nan (payload kept) */
		return bits_f32(sign | 0x7f800000 | mant << 13);
	if (exp == 0) { /* zero, subnormal: mant * 2^-24, exact in float */
		float f = (float)mant * 0x1p-24f;
		return sign ? -f : f;
	}
	return bits_f32(sign | (exp + 112) << 23 | mant << 13);
}

/* Round the integer m right by s bits, to nearest, ties to even. */
static uint32_t rshift_rne(uint32_t m, int s)
{
	uint32_t rem = m & ((1u << s) - 1), half = 1u << (s - 1);
	uint32_t q = m >> s;

	return q + (rem > half || (rem == half && (q & 1)));
}

kern_f16 kern_f32_to_f16(float f)
{
	uint32_t u = f32_bits(f);
	uint16_t sign = (u >> 16) & 0x8000;
	uint32_t a = u & 0x7fffffff;

	if (a > 0x7f800000) /* nan: keep the top payload bits, make it quiet */
		return sign | 0x7e00 | (a >> 13 & 0x3ff);
	if (a >= 0x477ff000) /* >= 65520 rounds to inf */
		return sign | 0x7c00;
	if (a >= 0x38800000) /* normal half: rebias, round 13 bits away */
		return sign | (uint16_t)(rshift_rne(a, 13) - (112u << 10));
	if (a <= 0x33000000) /* <= 2^-25 (the tie goes to even 0) */
		return sign;
	/* subnormal half: value / 2^-24 = (mant | 2^23) >> (126 - exp) */
	return sign | (uint16_t)rshift_rne((a & 0x7fffff) | 0x800000,
					   126 - (int)(a >> 23));
}

float kern_bf16_to_f32(kern_bf16 h)
{
	return bits_f32((uint32_t)h << 16);
}

kern_bf16 kern_f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);

	if ((u & 0x7fffffff) > 0x7f800000) /* nan: truncate, make it quiet */
		return (u >> 16) | 0x40;
	return (kern_bf16)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
