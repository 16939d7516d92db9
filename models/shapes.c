/*
 * shapes.c - named model shapes, type mixes and their tensor bytes
 * (models/shapes.h).
 */
#include "models/shapes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "kernels/kern.h"

/* Published hyper-parameters. llama-70b is Llama-2-70B's vocabulary and
 * context with Llama-3's RoPE base, as mkmodel has always written it;
 * llama-3-8b and llama-405b are Llama 3 / 3.1. */
static const struct shapes_model shapes_models[] = {
	{"smollm2-135m", 30, 576, 1536, 9, 3, 49152, 8192, 100000.0f},
	{"tinyllama-1.1b", 22, 2048, 5632, 32, 4, 32000, 2048, 10000.0f},
	{"llama-7b", 32, 4096, 11008, 32, 32, 32000, 4096, 10000.0f},
	{"llama-13b", 40, 5120, 13824, 40, 40, 32000, 4096, 10000.0f},
	{"llama-3-8b", 32, 4096, 14336, 32, 8, 128256, 8192, 500000.0f},
	{"llama-70b", 80, 8192, 28672, 64, 8, 32000, 4096, 500000.0f},
	{"llama-405b", 126, 16384, 53248, 128, 8, 128256, 131072, 500000.0f},
	{"tiny-test", 2, 64, 128, 4, 2, 512, 256, 10000.0f},
};

#define N_MODELS (int)(sizeof(shapes_models) / sizeof(shapes_models[0]))

static const struct shapes_ftype shapes_ftypes[] = {
	{"f32", KT_F32, KT_F32, KT_F32, KT_F32},
	{"f16", KT_F16, KT_F16, KT_F16, KT_F16},
	{"bf16", KT_BF16, KT_BF16, KT_BF16, KT_BF16},
	{"q8_0", KT_Q8_0, KT_Q8_0, KT_Q8_0, KT_Q8_0},
	{"q4_0", KT_Q4_0, KT_Q4_0, KT_Q6_K, KT_Q4_0},
	{"q4_1", KT_Q4_1, KT_Q4_1, KT_Q6_K, KT_Q4_1},
	{"q5_0", KT_Q5_0, KT_Q5_0, KT_Q6_K, KT_Q5_0},
	{"q5_1", KT_Q5_1, KT_Q5_1, KT_Q6_K, KT_Q5_1},
	{"q4_k", KT_Q4_K, KT_Q4_K, KT_Q6_K, KT_Q4_K},
	{"q5_k", KT_Q5_K, KT_Q5_K, KT_Q6_K, KT_Q5_K},
	{"q6_k", KT_Q6_K, KT_Q6_K, KT_Q6_K, KT_Q6_K},
	/* llama.cpp's K-mixes: attn_v and ffn_down get Q6_K in the layers
	 * shapes_use_more_bits() picks */
	{"q4_k_m", KT_Q4_K, KT_Q6_K, KT_Q6_K, KT_Q4_K},
	{"q5_k_m", KT_Q5_K, KT_Q6_K, KT_Q6_K, KT_Q5_K},
};

#define N_FTYPES (int)(sizeof(shapes_ftypes) / sizeof(shapes_ftypes[0]))

/* GGUF names of the layer tensors, in enum llama_layer_tensor order */
static const char *const layer_names[LT_COUNT] = {
	[LT_ATTN_NORM] = "attn_norm", [LT_WQ] = "attn_q",
	[LT_WK] = "attn_k",           [LT_WV] = "attn_v",
	[LT_WO] = "attn_output",      [LT_FFN_NORM] = "ffn_norm",
	[LT_W_GATE] = "ffn_gate",     [LT_W_UP] = "ffn_up",
	[LT_W_DOWN] = "ffn_down",
};

const struct shapes_model *shapes_model_at(int i)
{
	return i >= 0 && i < N_MODELS ? &shapes_models[i] : NULL;
}

const struct shapes_ftype *shapes_ftype_at(int i)
{
	return i >= 0 && i < N_FTYPES ? &shapes_ftypes[i] : NULL;
}

const struct shapes_model *shapes_find(const char *name)
{
	for (int i = 0; name && i < N_MODELS; i++)
		if (!strcmp(shapes_models[i].name, name))
			return &shapes_models[i];
	return NULL;
}

const struct shapes_ftype *shapes_find_ftype(const char *name)
{
	for (int i = 0; name && i < N_FTYPES; i++)
		if (!strcasecmp(shapes_ftypes[i].name, name))
			return &shapes_ftypes[i];
	return NULL;
}

bool shapes_use_more_bits(int32_t l, int32_t n)
{
	return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2;
}

uint32_t shapes_pick_type(const struct shapes_ftype *f, const char *name,
			  int32_t l, int32_t n_layer, int64_t ne0)
{
	uint32_t t = f->base;

	if (strstr(name, "_norm"))
		return KT_F32;
	if (!strcmp(name, "output.weight"))
		t = f->output;
	else if (!strcmp(name, "token_embd.weight"))
		t = f->embd;
	else if ((strstr(name, "attn_v") || strstr(name, "ffn_down")) &&
		 shapes_use_more_bits(l, n_layer))
		t = f->more_bits;
	if (kern_row_bytes(t, ne0) < 0) /* row not a multiple of 256 */
		t = kern_row_bytes(KT_Q8_0, ne0) >= 0 ? KT_Q8_0 : KT_F32;
	return t;
}

const char *shapes_layer_tensor_name(enum llama_layer_tensor t)
{
	return (unsigned)t < LT_COUNT ? layer_names[t] : NULL;
}

/* a shape the formulas below can size */
static bool shape_ok(const struct shapes_model *s)
{
	return s && s->n_layer > 0 && s->n_embd > 0 && s->n_ff > 0 &&
	       s->n_head > 0 && s->n_head_kv > 0 && s->n_vocab > 0 &&
	       s->n_embd % s->n_head == 0;
}

int shapes_layer_tensor_ne(const struct shapes_model *s,
			   enum llama_layer_tensor t, int64_t ne[2])
{
	int64_t d, dkv;

	if (!shape_ok(s) || (unsigned)t >= LT_COUNT)
		return -EINVAL;
	d = s->n_embd;
	dkv = d / s->n_head * s->n_head_kv;
	switch (t) {
	case LT_ATTN_NORM:
	case LT_FFN_NORM: ne[0] = d; ne[1] = 1; break;
	case LT_WQ:
	case LT_WO: ne[0] = d; ne[1] = d; break;
	case LT_WK:
	case LT_WV: ne[0] = d; ne[1] = dkv; break;
	case LT_W_GATE:
	case LT_W_UP: ne[0] = d; ne[1] = s->n_ff; break;
	case LT_W_DOWN: ne[0] = s->n_ff; ne[1] = d; break;
	default: return -EINVAL;
	}
	return 0;
}

/* bytes of rows rows of type t, ne0 elements each, or -EINVAL */
static int64_t tensor_bytes(uint32_t t, int64_t ne0, int64_t rows)
{
	int64_t rb = kern_row_bytes(t, ne0);

	if (rb < 0 || rows < 0 || (rb > 0 && rows > INT64_MAX / rb))
		return -EINVAL;
	return rb * rows;
}

int shapes_layer_bytes(const struct shapes_model *s,
		       const struct shapes_ftype *f, int32_t l,
		       struct shapes_layer_bytes *out)
{
	struct shapes_layer_bytes r = {0};
	char name[96];
	int64_t ne[2];

	if (!shape_ok(s) || !f || l < 0 || l >= s->n_layer)
		return -EINVAL;
	for (int t = 0; t < LT_COUNT; t++) {
		shapes_layer_tensor_ne(s, t, ne);
		/* the same name-driven choice mkmodel makes for the file */
		snprintf(name, sizeof(name), "blk.%d.%s.weight", (int)l,
			 layer_names[t]);
		r.type[t] = shapes_pick_type(f, name, l, s->n_layer, ne[0]);
		r.bytes[t] = tensor_bytes(r.type[t], ne[0], ne[1]);
		if (r.bytes[t] < 0 || r.total > INT64_MAX - r.bytes[t])
			return -EINVAL;
		r.total += r.bytes[t];
	}
	*out = r;
	return 0;
}

int shapes_model_bytes(const struct shapes_model *s,
		       const struct shapes_ftype *f, struct shapes_bytes *out)
{
	static const char *const global_names[GT_COUNT] = {
		[GT_TOK_EMBD] = "token_embd.weight",
		[GT_OUTPUT_NORM] = "output_norm.weight",
		[GT_OUTPUT] = "output.weight",
	};
	struct shapes_bytes r = {0};
	struct shapes_layer_bytes lb;
	int rc;

	if (!shape_ok(s) || !f)
		return -EINVAL;
	for (int g = 0; g < GT_COUNT; g++) {
		int64_t rows = g == GT_OUTPUT_NORM ? 1 : s->n_vocab;

		r.type[g] = shapes_pick_type(f, global_names[g], 0, s->n_layer,
					     s->n_embd);
		r.bytes[g] = tensor_bytes(r.type[g], s->n_embd, rows);
		if (r.bytes[g] < 0)
			return -EINVAL;
	}
	r.embd_row_bytes = kern_row_bytes(r.type[GT_TOK_EMBD], s->n_embd);
	for (int32_t l = 0; l < s->n_layer; l++) {
		if ((rc = shapes_layer_bytes(s, f, l, &lb)))
			return rc;
		if (r.layers > INT64_MAX - lb.total)
			return -EINVAL;
		r.layers += lb.total;
	}
	/* each term is far below INT64_MAX / 4: no overflow past here */
	if (r.layers > INT64_MAX / 4 || r.bytes[GT_TOK_EMBD] > INT64_MAX / 4 ||
	    r.bytes[GT_OUTPUT] > INT64_MAX / 4)
		return -EINVAL;
	r.total = r.layers + r.bytes[GT_TOK_EMBD] + r.bytes[GT_OUTPUT_NORM] +
		  r.bytes[GT_OUTPUT];
	r.per_token = r.layers + r.bytes[GT_OUTPUT_NORM] + r.bytes[GT_OUTPUT] +
		      r.embd_row_bytes;
	*out = r;
	return 0;
}
