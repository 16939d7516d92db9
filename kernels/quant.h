/*
 * quant.h - tensor element types and their exact on-disk block layouts.
 *
 * The numbers of enum kern_type are GGUF's (ggml_type) and are never
 * renumbered: a tensor's type field in a GGUF file is cast straight to it.
 * Every block struct is byte-identical to ggml's, checked by _Static_assert.
 *
 * Two extra block types exist only in memory, as the quantized form of an
 * activation vector that a matvec consumes:
 *   KT_Q8_K   (GGUF number 15, ggml's block_q8_K) for the K-quants;
 *   KT_Q8_A   (not a GGUF type) for the 32-element formats; it keeps a float
 *             scale and the float sum d*sum(qs) that Q4_1/Q5_1 need for their
 *             min term.
 */
#ifndef STRATA_QUANT_H
#define STRATA_QUANT_H

#include <stdint.h>

enum kern_type {
	KT_F32 = 0,
	KT_F16 = 1,
	KT_Q4_0 = 2,
	KT_Q4_1 = 3,
	KT_Q5_0 = 6,
	KT_Q5_1 = 7,
	KT_Q8_0 = 8,
	KT_Q8_1 = 9, /* known to GGUF, not supported for weights */
	KT_Q2_K = 10,
	KT_Q3_K = 11,
	KT_Q4_K = 12,
	KT_Q5_K = 13,
	KT_Q6_K = 14,
	KT_Q8_K = 15, /* activation format for the K-quants */
	KT_BF16 = 30,
	KT_Q8_A = 200, /* in-memory only: activation format for 32-blocks */
	KT_COUNT = 201,
};

typedef uint16_t kern_f16;  /* IEEE half, raw bits */
typedef uint16_t kern_bf16; /* bfloat16, raw bits */

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_A 32
#define QK_K 256
#define K_SCALE_SIZE 12

/* x[i] = d * ((qs nibble) - 8); element j < 16 in the low nibble of qs[j],
 * element j + 16 in its high nibble. */
struct block_q4_0 {
	kern_f16 d;
	uint8_t qs[QK4_0 / 2];
};
_Static_assert(sizeof(struct block_q4_0) == 18, "block_q4_0 size");

/* x[i] = d * nibble + m; nibble order as q4_0. */
struct block_q4_1 {
	kern_f16 d;
	kern_f16 m;
	uint8_t qs[QK4_1 / 2];
};
_Static_assert(sizeof(struct block_q4_1) == 20, "block_q4_1 size");

/* x[i] = d * ((nibble | bit5 << 4) - 16); bit j of qh (little-endian
 * uint32) is the fifth bit of element j. */
struct block_q5_0 {
	kern_f16 d;
	uint8_t qh[4];
	uint8_t qs[QK5_0 / 2];
};
_Static_assert(sizeof(struct block_q5_0) == 22, "block_q5_0 size");

/* x[i] = d * (nibble | bit5 << 4) + m */
struct block_q5_1 {
	kern_f16 d;
	kern_f16 m;
	uint8_t qh[4];
	uint8_t qs[QK5_1 / 2];
};
_Static_assert(sizeof(struct block_q5_1) == 24, "block_q5_1 size");

/* x[i] = d * qs[i] */
struct block_q8_0 {
	kern_f16 d;
	int8_t qs[QK8_0];
};
_Static_assert(sizeof(struct block_q8_0) == 34, "block_q8_0 size");

/* Activation block for the 32-element formats (in memory only).
 * x[i] ~= d * qs[i]; s = d * sum(qs). */
struct block_q8_a {
	float d;
	float s;
	int8_t qs[QK8_A];
};
_Static_assert(sizeof(struct block_q8_a) == 40, "block_q8_a size");

/* 8 sub-blocks of 32 with 6-bit scales and mins packed in scales[12]:
 * x = d * sc * q - dmin * m, q a 4-bit value. */
struct block_q4_k {
	kern_f16 d;
	kern_f16 dmin;
	uint8_t scales[K_SCALE_SIZE];
	uint8_t qs[QK_K / 2];
};
_Static_assert(sizeof(struct block_q4_k) == 144, "block_q4_k size");

/* as q4_k with a fifth bit per element in qh */
struct block_q5_k {
	kern_f16 d;
	kern_f16 dmin;
	uint8_t scales[K_SCALE_SIZE];
	uint8_t qh[QK_K / 8];
	uint8_t qs[QK_K / 2];
};
_Static_assert(sizeof(struct block_q5_k) == 176, "block_q5_k size");

/* 16 sub-blocks of 16, 8-bit scales: x = d * scales[j] * (q6 - 32);
 * low 4 bits in ql, high 2 bits in qh. */
struct block_q6_k {
	uint8_t ql[QK_K / 2];
	uint8_t qh[QK_K / 4];
	int8_t scales[QK_K / 16];
	kern_f16 d;
};
_Static_assert(sizeof(struct block_q6_k) == 210, "block_q6_k size");

/* Activation block for the K-quants: x ~= d * qs; bsums[j] is the sum of
 * qs[16 j .. 16 j + 15]. */
struct block_q8_k {
	float d;
	int8_t qs[QK_K];
	int16_t bsums[QK_K / 16];
};
_Static_assert(sizeof(struct block_q8_k) == 292, "block_q8_k size");

#endif
