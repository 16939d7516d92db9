/* llama_model.c - hyper-parameters and tensor binding, see llama_model.h */
#include "models/llama_model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern.h"
#include "models/gguf.h"
#include "models/util.h"

static const char *const layer_names[LT_COUNT] = {
	"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
	"ffn_norm", "ffn_gate", "ffn_up", "ffn_down",
};

/* required u32 key "llama.<suffix>" */
static int get_req_u32(const struct gguf_file *g, const char *suffix,
		       int32_t *out, char *err, size_t errlen)
{
	char key[96];
	uint32_t v;
	int rc;

	snprintf(key, sizeof(key), "llama.%s", suffix);
	rc = gguf_get_u32(g, key, &v);
	if (rc == -ENOENT) {
		snprintf(err, errlen, "%s: missing metadata key '%s'", g->path, key);
		return -EINVAL;
	}
	if (rc || v == 0 || v > (1u << 30)) {
		snprintf(err, errlen, "%s: metadata '%s' is not a positive integer "
			 "below 2^30", g->path, key);
		return -EINVAL;
	}
	*out = (int32_t)v;
	return 0;
}

static int read_hparams(struct llama_hparams *hp, const struct gguf_file *g,
			char *err, size_t errlen)
{
	const struct gguf_str *arch;
	int rc;

	if (gguf_get_str(g, "general.architecture", &arch)) {
		snprintf(err, errlen, "%s: no general.architecture string", g->path);
		return -EINVAL;
	}
	if (strcmp(arch->s, "llama")) {
		snprintf(err, errlen, "%s: architecture '%s' is not supported "
			 "(only 'llama')", g->path, arch->s);
		return -ENOTSUP;
	}
	if ((rc = get_req_u32(g, "block_count", &hp->n_layer, err, errlen)) ||
	    (rc = get_req_u32(g, "embedding_length", &hp->n_embd, err, errlen)) ||
	    (rc = get_req_u32(g, "feed_forward_length", &hp->n_ff, err, errlen)) ||
	    (rc = get_req_u32(g, "attention.head_count", &hp->n_head, err, errlen)) ||
	    (rc = get_req_u32(g, "context_length", &hp->n_ctx_train, err, errlen)))
		return rc;
	hp->n_head_kv = hp->n_head;
	if (gguf_find_kv(g, "llama.attention.head_count_kv") &&
	    (rc = get_req_u32(g, "attention.head_count_kv", &hp->n_head_kv, err,
			      errlen)))
		return rc;
	if (hp->n_embd % hp->n_head || hp->n_head % hp->n_head_kv) {
		snprintf(err, errlen, "%s: embedding %d, heads %d, kv heads %d do "
			 "not divide", g->path, hp->n_embd, hp->n_head,
			 hp->n_head_kv);
		return -EINVAL;
	}
	hp->head_dim = hp->n_embd / hp->n_head;
	hp->rope_dim = hp->head_dim;
	if (gguf_find_kv(g, "llama.rope.dimension_count") &&
	    (rc = get_req_u32(g, "rope.dimension_count", &hp->rope_dim, err, errlen)))
		return rc;
	if (hp->rope_dim > hp->head_dim || hp->rope_dim % 2 || hp->head_dim % 2 ||
	    hp->rope_dim > 1024) {
		snprintf(err, errlen, "%s: rope dimension %d invalid for head dim %d",
			 g->path, hp->rope_dim, hp->head_dim);
		return -EINVAL;
	}
	hp->rope_base = 10000.0f;
	hp->rms_eps = 1e-5f;
	/* Llama-3.1-style frequency factors and RoPE scaling change the
	 * rotation; refuse them rather than decode wrong logits silently */
	const struct gguf_str *scaling;
	if (gguf_find_tensor(g, "rope_freqs.weight") ||
	    (!gguf_get_str(g, "llama.rope.scaling.type", &scaling) &&
	     strcmp(scaling->s, "none"))) {
		snprintf(err, errlen, "%s: RoPE scaling / frequency factors "
			 "(rope_freqs.weight, llama.rope.scaling.type) are not "
			 "supported", g->path);
		return -ENOTSUP;
	}
	rc = gguf_get_f32(g, "llama.rope.freq_base", &hp->rope_base);
	if (rc == -EINVAL || !(hp->rope_base > 1.0f)) {
		snprintf(err, errlen, "%s: bad llama.rope.freq_base", g->path);
		return -EINVAL;
	}
	rc = gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &hp->rms_eps);
	if (rc == -EINVAL || !(hp->rms_eps > 0.0f && hp->rms_eps < 1.0f)) {
		snprintf(err, errlen, "%s: bad llama.attention.layer_norm_rms_epsilon",
			 g->path);
		return -EINVAL;
	}
	return 0;
}

/* shape check: ne[0] == cols, rows == rows (rows 1 for vectors) */
static int bind(const struct gguf_file *g, const char *name, int64_t cols,
		int64_t rows, bool must_f32, const struct gguf_tensor **out,
		char *err, size_t errlen)
{
	const struct gguf_tensor *t = gguf_find_tensor(g, name);

	if (!t) {
		snprintf(err, errlen, "%s: missing tensor '%s'", g->path, name);
		return -EINVAL;
	}
	if (t->ne[0] != cols || t->n_rows != rows || t->ne[2] != 1 || t->ne[3] != 1) {
		snprintf(err, errlen, "%s: tensor '%s' has shape [%" PRId64 ", %"
			 PRId64 ", %" PRId64 ", %" PRId64 "], want [%" PRId64
			 ", %" PRId64 "]", g->path, name, t->ne[0], t->ne[1],
			 t->ne[2], t->ne[3], cols, rows);
		return -EINVAL;
	}
	if (must_f32 && t->type != KT_F32) {
		snprintf(err, errlen, "%s: tensor '%s' has type %s, want f32",
			 g->path, name, kern_type_info(t->type)->name);
		return -ENOTSUP;
	}
	*out = t;
	return 0;
}

/* -EINVAL with a message if the file has a "blk.N." tensor with N at or
 * past n_layer (metadata claiming fewer blocks than the file holds) */
static int check_no_extra_blocks(const struct gguf_file *g, int32_t n_layer,
				 char *err, size_t errlen)
{
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_str *nm = &g->tensors[i].name;
		char buf[32];
		long l;

		if (nm->len < 5 || memcmp(nm->s, "blk.", 4))
			continue;
		size_t k = nm->len < sizeof(buf) - 1 ? nm->len : sizeof(buf) - 1;
		memcpy(buf, nm->s, k);
		buf[k] = 0;
		l = strtol(buf + 4, NULL, 10);
		if (l >= n_layer) {
			snprintf(err, errlen, "%s: llama.block_count %d but the "
				 "file has tensor '%.*s'", g->path, n_layer,
				 (int)nm->len, nm->s);
			return -EINVAL;
		}
	}
	return 0;
}

int llama_model_init(struct llama_model *m, const struct gguf_file *g,
		     char *err, size_t errlen)
{
	struct llama_hparams *hp = &m->hp;
	char name[96];
	int rc;

	memset(m, 0, sizeof(*m));
	if (g->n_tensors == 0) {
		snprintf(err, errlen, "%s: no tensors (a vocabulary-only GGUF?), "
			 "not a model", g->path);
		return -EINVAL;
	}
	if ((rc = read_hparams(hp, g, err, errlen)))
		return rc;

	const struct gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
	if (!te) {
		snprintf(err, errlen, "%s: missing tensor 'token_embd.weight'", g->path);
		return -EINVAL;
	}
	hp->n_vocab = (int32_t)te->n_rows;
	uint32_t vocab_kv;
	if (!gguf_get_u32(g, "llama.vocab_size", &vocab_kv) &&
	    vocab_kv != (uint64_t)te->n_rows) {
		snprintf(err, errlen, "%s: llama.vocab_size %" PRIu32 " but "
			 "token_embd.weight has %" PRId64 " rows", g->path,
			 vocab_kv, te->n_rows);
		return -EINVAL;
	}
	if ((rc = bind(g, "token_embd.weight", hp->n_embd, hp->n_vocab, false,
		       &m->global[GT_TOK_EMBD], err, errlen)) ||
	    (rc = bind(g, "output_norm.weight", hp->n_embd, 1, true,
		       &m->global[GT_OUTPUT_NORM], err, errlen)))
		return rc;
	hp->tied_output = gguf_find_tensor(g, "output.weight") == NULL;
	if (hp->tied_output)
		m->global[GT_OUTPUT] = m->global[GT_TOK_EMBD];
	else if ((rc = bind(g, "output.weight", hp->n_embd, hp->n_vocab, false,
			    &m->global[GT_OUTPUT], err, errlen)))
		return rc;

	/* refuse a block count the file cannot back before allocating for
	 * it (2^30 blocks would be a 77 GB table, and xcalloc aborts) */
	if ((uint64_t)hp->n_layer * LT_COUNT > g->n_tensors) {
		snprintf(err, errlen, "%s: llama.block_count %d needs %" PRIu64
			 " block tensors, the file has %" PRIu64 " tensors",
			 g->path, hp->n_layer, (uint64_t)hp->n_layer * LT_COUNT,
			 g->n_tensors);
		return -EINVAL;
	}
	int64_t d = hp->n_embd, dkv = (int64_t)hp->n_head_kv * hp->head_dim;
	const int64_t cols[LT_COUNT] = {d, d, d, d, d, d, d, d, hp->n_ff};
	const int64_t rows[LT_COUNT] = {1, d, dkv, dkv, d, 1, hp->n_ff, hp->n_ff, d};
	m->layer = xcalloc((size_t)hp->n_layer * LT_COUNT, sizeof(*m->layer));
	for (int32_t l = 0; l < hp->n_layer; l++)
		for (int i = 0; i < LT_COUNT; i++) {
			snprintf(name, sizeof(name), "blk.%d.%s.weight", l,
				 layer_names[i]);
			rc = bind(g, name, cols[i], rows[i],
				  i == LT_ATTN_NORM || i == LT_FFN_NORM,
				  &m->layer[(size_t)l * LT_COUNT + i], err, errlen);
			if (rc)
				goto err_layers;
		}

	/* a block count below the file's would drop layers silently */
	if ((rc = check_no_extra_blocks(g, hp->n_layer, err, errlen)))
		goto err_layers;

	/* weight bytes and the dominant type, for reports */
	uint64_t by_type[KT_COUNT] = {0};
	for (int i = 0; i < GT_COUNT; i++)
		if (i != GT_OUTPUT || !hp->tied_output)
			by_type[m->global[i]->type] += m->global[i]->n_bytes;
	for (size_t i = 0; i < (size_t)hp->n_layer * LT_COUNT; i++)
		by_type[m->layer[i]->type] += m->layer[i]->n_bytes;
	uint32_t best = KT_F32;
	for (uint32_t t = 0; t < KT_COUNT; t++) {
		m->weight_bytes += by_type[t];
		if (t != KT_F32 && by_type[t] > by_type[best])
			best = t;
	}
	m->ftype_name = kern_type_info(best)->name;
	const struct gguf_str *gn;
	if (!gguf_get_str(g, "general.name", &gn))
		snprintf(m->name, sizeof(m->name), "%s", gn->s);
	else
		snprintf(m->name, sizeof(m->name), "%s", g->path);
	return 0;

err_layers:
	llama_model_destroy(m);
	return rc;
}

void llama_model_destroy(struct llama_model *m)
{
	free(m->layer);
	memset(m, 0, sizeof(*m));
}
