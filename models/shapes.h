/*
 * shapes.h - named llama-architecture model shapes and weight type mixes,
 * and the bytes their tensors take, without a file.
 *
 * One table shared by mkmodel (which writes synthetic files of these
 * shapes), the engine's plan and the simulator (which must know the weight
 * bytes a token reads for shapes too large to build). A shape lists the
 * hyper-parameters mkmodel writes; a type mix ("q4_0", "q4_k_m") says
 * which kernel type each tensor gets, as llama.cpp's quantizer would.
 *
 * The tensors of a shape are those mkmodel writes: token_embd, n_layer
 * blocks of the nine llama_layer_tensor (models/llama_model.h) in that
 * order, output_norm and an untied output head. Sizes follow the kernels'
 * block formats (kernels/kern.h: kern_row_bytes).
 *
 * Everything here reads static tables: thread-safe, no allocation.
 */
#ifndef STRATA_SHAPES_H
#define STRATA_SHAPES_H

#include <stdbool.h>
#include <stdint.h>

#include "models/llama_model.h"

/* hyper-parameters of a named shape */
struct shapes_model {
	const char *name;      /* "tinyllama-1.1b" */
	int32_t n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab, n_ctx;
	float rope_base;
};

/* a type mix: one kernel type (enum kern_type) per role */
struct shapes_ftype {
	const char *name;   /* "q4_0", "q4_k_m" */
	uint32_t base;      /* every matrix not named below */
	uint32_t more_bits; /* attn_v, ffn_down in the layers that
			     * shapes_use_more_bits() picks */
	uint32_t output;    /* output.weight */
	uint32_t embd;      /* token_embd.weight */
};

/* The i-th shape / type mix (0, 1, ...), NULL past the last: for listing. */
const struct shapes_model *shapes_model_at(int i);
const struct shapes_ftype *shapes_ftype_at(int i);

/* Lookup by exact name (shapes) or case-insensitive name (type mixes);
 * NULL if name is NULL or unknown. */
const struct shapes_model *shapes_find(const char *name);
const struct shapes_ftype *shapes_find_ftype(const char *name);

/* llama.cpp's K-mixes give attn_v and ffn_down more bits in the first and
 * last eighth of the n_layer layers and in every third one between. */
bool shapes_use_more_bits(int32_t l, int32_t n_layer);

/* The type of the tensor called `name` ("blk.3.attn_v.weight",
 * "output.weight") of layer l, rows of ne0 elements, under mix f: norms
 * are f32; a type whose blocks do not divide ne0 falls back to q8_0, then
 * f32 (llama.cpp's fallback). */
uint32_t shapes_pick_type(const struct shapes_ftype *f, const char *name,
			  int32_t l, int32_t n_layer, int64_t ne0);

/* "attn_q", "ffn_down", ...: the GGUF name of a layer tensor is
 * "blk.<l>.<this>.weight". NULL for t out of range. */
const char *shapes_layer_tensor_name(enum llama_layer_tensor t);

/* Shape of layer tensor t: ne[0] elements per row (contiguous), ne[1]
 * rows (1 for the norms, which mkmodel writes as 1-D). Returns 0, or
 * -EINVAL for t out of range or a shape whose n_embd is not a multiple of
 * n_head. */
int shapes_layer_tensor_ne(const struct shapes_model *s,
			   enum llama_layer_tensor t, int64_t ne[2]);

/* types and bytes of the tensors of one layer */
struct shapes_layer_bytes {
	uint32_t type[LT_COUNT];
	int64_t bytes[LT_COUNT];
	int64_t total;
};

/* types and bytes of a whole model */
struct shapes_bytes {
	uint32_t type[GT_COUNT];   /* tok_embd, output_norm, output */
	int64_t bytes[GT_COUNT];
	int64_t embd_row_bytes;    /* one token's embedding row */
	int64_t layers;            /* every layer */
	int64_t total;             /* every tensor: the file's data, unpadded */
	/* weights one decode token reads: every layer, output_norm, the
	 * output head and one embedding row */
	int64_t per_token;
};

/* Types and bytes of layer l's tensors under mix f into *out. Returns 0,
 * or -EINVAL (bad shape, l out of range, or a size that does not fit in
 * int64). */
int shapes_layer_bytes(const struct shapes_model *s,
		       const struct shapes_ftype *f, int32_t l,
		       struct shapes_layer_bytes *out);

/* Types and bytes of the whole model under mix f into *out. Returns 0 or
 * -EINVAL as shapes_layer_bytes. */
int shapes_model_bytes(const struct shapes_model *s,
		       const struct shapes_ftype *f, struct shapes_bytes *out);

#endif
