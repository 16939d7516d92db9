/*
 * llama_model.h - the llama architecture as a GGUF file describes it:
 * hyper-parameters and which tensor is which, validated before any work.
 * This module reads no weights; memtier owns the bytes.
 */
#ifndef STRATA_LLAMA_MODEL_H
#define STRATA_LLAMA_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf_file;
struct gguf_tensor;

struct llama_hparams {
	int32_t n_layer;
	int32_t n_embd;
	int32_t n_head;
	int32_t n_head_kv; /* GQA: n_head is a multiple of it */
	int32_t head_dim;  /* n_embd / n_head */
	int32_t n_ff;
	int32_t n_vocab;
	int32_t n_ctx_train;
	int32_t rope_dim; /* rotated dims per head (<= head_dim) */
	float rope_base;
	float rms_eps;
	bool tied_output; /* no output.weight: token_embd is reused */
};

/* Tensors of one transformer block, in the order memtier lays them out */
enum llama_layer_tensor {
	LT_ATTN_NORM, /* f32 [n_embd] */
	LT_WQ,        /* [n_embd rows of n_embd] */
	LT_WK,        /* [n_embd_kv rows of n_embd] */
	LT_WV,        /* [n_embd_kv rows of n_embd] */
	LT_WO,        /* [n_embd rows of n_embd] */
	LT_FFN_NORM,  /* f32 [n_embd] */
	LT_W_GATE,    /* [n_ff rows of n_embd] */
	LT_W_UP,      /* [n_ff rows of n_embd] */
	LT_W_DOWN,    /* [n_embd rows of n_ff] */
	LT_COUNT,
};

/* Tensors outside the blocks */
enum llama_global_tensor {
	GT_TOK_EMBD,    /* [n_vocab rows of n_embd] */
	GT_OUTPUT_NORM, /* f32 [n_embd] */
	GT_OUTPUT,      /* [n_vocab rows of n_embd]; == tok_embd if tied */
	GT_COUNT,
};

struct llama_model {
	struct llama_hparams hp;
	const struct gguf_tensor *global[GT_COUNT];
	const struct gguf_tensor **layer; /* [n_layer][LT_COUNT] */
	char name[128];                   /* general.name or file name */
	const char *ftype_name;           /* most common weight type */
	uint64_t weight_bytes;            /* all tensors the model uses */
};

/* Read the hyper-parameters and bind every tensor of a llama-architecture
 * file, checking names, types (norms must be f32), shapes against the
 * hyper-parameters. A file of another architecture, a missing tensor or an
 * unsupported type is refused by name. Returns 0, -EINVAL/-ENOTSUP with a
 * message in err. The model points into g, which must outlive it. */
int llama_model_init(struct llama_model *m, const struct gguf_file *g,
		     char *err, size_t errlen);
void llama_model_destroy(struct llama_model *m);

#endif
