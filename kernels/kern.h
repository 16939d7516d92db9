/*
 * kern.h - quantized tensor kernels: type traits, dequantization,
 * activation quantization and matrix-vector products over a row range.
 *
 * Pure compute: no allocation, no I/O, no threads. Every kernel exists as a
 * scalar reference (kern_ref.c, the specification) and as ISA versions
 * (kern_avx2.c, kern_avx512.c) picked once by kern_init() from cpuid. The
 * environment variable STRATA_KERNELS=ref|avx2|avx512 forces one.
 *
 * How a matvec works: the activation x (f32, length n) is first quantized
 * once into the weight type's act_type (KT_F32 for float weights, KT_Q8_A
 * for the 32-element formats, KT_Q8_K for the K-quants); then for each row r
 * in [r0, r1) y[r] = dot(W[r, :], act). Rows are row_bytes apart, so a
 * caller can hand any sub-matrix. y is indexed by absolute row number.
 */
#ifndef STRATA_KERN_H
#define STRATA_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

struct kern_type_info {
	const char *name;       /* GGUF/ggml spelling: "q4_0", "q6_K", ... */
	int64_t blck;           /* elements per block */
	size_t type_size;       /* bytes per block */
	enum kern_type act_type; /* activation format its matvec consumes */
	int is_weight;          /* 1 if supported as a weight type */
};

/* Traits of a type, or NULL if the number is not a type we know.
 * Thread-safe (static data). */
const struct kern_type_info *kern_type_info(uint32_t type);

/* Bytes of a row of n elements, or -EINVAL if the type is unknown or n is
 * not a multiple of its block size. */
int64_t kern_row_bytes(uint32_t type, int64_t n);

enum kern_isa {
	KERN_ISA_REF = 0,
	KERN_ISA_AVX2 = 1,
	KERN_ISA_AVX512 = 2, /* F, BW, VL, VNNI */
	KERN_ISA_COUNT = 3,
};

/* dequantize n elements (n a multiple of blck) of src into dst */
typedef void (*kern_dequant_fn)(const void *src, float *dst, int64_t n);

/* y[r] = dot(row r of w, act) for r in [r0, r1); each row has n elements */
typedef void (*kern_matvec_fn)(const void *w, size_t row_bytes,
			       const void *act, float *y, int64_t n,
			       int64_t r0, int64_t r1);

/* quantize n floats (n a multiple of the act block) into an activation */
typedef void (*kern_quantize_act_fn)(const float *x, void *dst, int64_t n);

/*
 * Batched product for prefill: for t < n_tok and r in [r0, r1)
 *   y[t * ldy + r] = dot(row r of w, activation t)
 * where activation t starts at (const char *)act + t * act_stride. The
 * result equals n_tok matvec calls up to float summation order; the point
 * is that each weight block is loaded and unpacked once for several
 * tokens (register tiles of rows x tokens), so prefill is bound by int8
 * arithmetic, not by re-unpacking weights. Callers pass row tiles small
 * enough to stay in L1/L2 and a whole batch of tokens.
 */
typedef void (*kern_matmul_fn)(const void *w, size_t row_bytes,
			       const void *act, size_t act_stride, float *y,
			       int64_t ldy, int64_t n, int64_t r0, int64_t r1,
			       int64_t n_tok);

struct kern_ops {
	kern_dequant_fn dequant;
	kern_matvec_fn matvec;
	kern_matmul_fn matmul; /* NULL: callers loop matvec over tokens */
};

/* Pick the ISA once (cpuid, or STRATA_KERNELS). Returns the chosen ISA, or
 * -EINVAL if STRATA_KERNELS names an unknown ISA or one this CPU lacks.
 * Call before any kern_* below; not thread-safe, call from main. */
int kern_init(void);

/* ISA chosen by kern_init */
enum kern_isa kern_isa_active(void);
const char *kern_isa_name(enum kern_isa isa);
/* 1 if this CPU can run the ISA */
int kern_isa_supported(enum kern_isa isa);

/* Ops of a weight type for an explicit ISA (tests compare ISAs with this),
 * or NULL if the type is not a weight type, its kernels are not linked
 * in, the CPU cannot run the ISA, or kern_init() has not run. ISA versions
 * may leave a slot to the reference; the table returned is always
 * complete. */
const struct kern_ops *kern_ops_isa(enum kern_isa isa, uint32_t type);
/* Ops for the active ISA */
const struct kern_ops *kern_ops(uint32_t type);

/*
 * Float-activation product, the `--act f32` check path: for t < n_tok and
 * r in [r0, r1)
 *   y[t * ldy + r] = sum_i dequant(row r of w)[i] * x[t * ldx + i]
 * with x never rounded to 8 bits. Each row is dequantized KERN_F32_CHUNK
 * elements at a time (the ISA's dequant, into a stack buffer), each chunk
 * dotted with the ISA's float dot, chunk sums added in double. A row's
 * result depends only on its bytes and x - not on r0, r1, n_tok or other
 * rows - so every split of rows over units or chips gives the same bits
 * and a batch gives what n_tok single calls give. n a multiple of the
 * type's block size; w, x, y any alignment. Returns 0, or -EINVAL if the
 * type has no kernels for the ISA (see kern_ops_isa). Thread-safe after
 * kern_init; no allocation.
 */
#define KERN_F32_CHUNK 256
int kern_matmul_f32_isa(enum kern_isa isa, uint32_t type, const void *w,
			size_t row_bytes, const float *x, int64_t ldx, float *y,
			int64_t ldy, int64_t n, int64_t r0, int64_t r1,
			int64_t n_tok);
int kern_matmul_f32(uint32_t type, const void *w, size_t row_bytes,
		    const float *x, int64_t ldx, float *y, int64_t ldy,
		    int64_t n, int64_t r0, int64_t r1, int64_t n_tok);

/* Activation quantizer for act type KT_Q8_A or KT_Q8_K (for KT_F32 the
 * activation is the float vector itself), or NULL for any other type and
 * in the cases kern_ops_isa() gives NULL. */
kern_quantize_act_fn kern_quantize_act_isa(enum kern_isa isa, uint32_t act_type);
kern_quantize_act_fn kern_quantize_act(uint32_t act_type);

/* Bytes of the activation buffer for n elements of act_type (a partial
 * block counts whole), or 0 if act_type is not KT_F32, KT_Q8_A, KT_Q8_K */
size_t kern_act_bytes(uint32_t act_type, int64_t n);

/* Reference quantizer f32 -> weight type (round to nearest, same scale
 * choice as ggml's reference quantizers). n a multiple of blck. Used by the
 * GGUF writer, mkmodel and tests. Returns 0, or -EINVAL for a type it
 * cannot produce. */
int kern_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* half <-> float, scalar, exact (round to nearest even) */
float kern_f16_to_f32(kern_f16 h);
kern_f16 kern_f32_to_f16(float f);
float kern_bf16_to_f32(kern_bf16 h);
kern_bf16 kern_f32_to_bf16(float f);

#endif
