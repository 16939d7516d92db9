/*
 * mkmodel - write a synthetic llama-architecture GGUF of a real model's
 * shape, in any supported type, for benchmarks at true size when the real
 * weights are not at hand. Weights are random (fixed seed, N(0, 0.02)-like
 * uniform), quantized with the reference quantizers; norms are 1. The
 * tokenizer is a valid SentencePiece-style vocabulary (byte fallback, so
 * any text encodes), or the tokenizer of another GGUF with --vocab.
 *
 *   models/mkmodel --shape tinyllama-1.1b --type q4_0 -o FILE
 *   models/mkmodel --requant SRC.gguf --type q8_0 -o FILE
 *
 * --requant rewrites a real model's weights into another type (through
 * f32), keeping its metadata and tokenizer.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kern.h"
#include "models/gguf.h"
#include "models/shapes.h"
#include "models/util.h"

/* splitmix64 per (tensor, row): reproducible whatever the thread count */
static uint64_t mix(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct gen_ctx {
	struct gguf_writer *w;
	uint64_t seed;
	const struct gguf_file *src; /* --requant source, else NULL */
	FILE *src_f;
};

/* random rows, quantized */
static int fill_random(struct gen_ctx *g, uint64_t index, void *dst)
{
	const struct gguf_tensor *t = &g->w->tensors[index];
	bool norm = strstr(t->name.s, "_norm") != NULL;
	int rc = 0;

#pragma omp parallel for schedule(dynamic, 16)
	for (int64_t r = 0; r < t->n_rows; r++) {
		float *row = xmalloc((size_t)t->ne[0] * sizeof(float));
		uint64_t st = mix(g->seed ^ (index << 40) ^ (uint64_t)r);
		for (int64_t i = 0; i < t->ne[0]; i++) {
			st = mix(st);
			/* uniform in [-0.035, 0.035]: std 0.02 */
			float u = (float)((st >> 40) * (1.0 / 16777216.0)) - 0.5f;
			row[i] = norm ? 1.0f : u * 0.0693f;
		}
		int r2 = kern_quantize_row(t->type, row,
					   (char *)dst + (uint64_t)r * t->row_bytes,
					   t->ne[0]);
		if (r2)
#pragma omp atomic write
			rc = r2;
		free(row);
	}
	return rc;
}

/* the source tensor of the same name, dequantized and requantized */
static int fill_requant(struct gen_ctx *g, uint64_t index, void *dst)
{
	const struct gguf_tensor *t = &g->w->tensors[index];
	const struct gguf_tensor *s = gguf_find_tensor(g->src, t->name.s);
	void *raw = malloc(s->n_bytes);
	int rc = 0;

	if (!raw)
		return -ENOMEM;
	if (fseeko(g->src_f, (off_t)s->file_offset, SEEK_SET) ||
	    fread(raw, 1, s->n_bytes, g->src_f) != s->n_bytes) {
		free(raw);
		return -EIO;
	}
#pragma omp parallel for schedule(dynamic, 16)
	for (int64_t r = 0; r < t->n_rows; r++) {
		float *row = xmalloc((size_t)t->ne[0] * sizeof(float));
		kern_ops(s->type)->dequant((char *)raw + (uint64_t)r * s->row_bytes,
					   row, s->ne[0]);
		int r2 = kern_quantize_row(t->type, row,
					   (char *)dst + (uint64_t)r * t->row_bytes,
					   t->ne[0]);
		if (r2)
#pragma omp atomic write
			rc = r2;
		free(row);
	}
	free(raw);
	return rc;
}

static int fill(void *ctx, uint64_t index, void *dst, uint64_t n_bytes)
{
	struct gen_ctx *g = ctx;
	(void)n_bytes;
	return g->src ? fill_requant(g, index, dst) : fill_random(g, index, dst);
}

/* a valid SentencePiece vocabulary of n tokens: unk, bos, eos, the 256
 * byte tokens, then "▁" + letters and filler pieces */
static void synth_vocab(struct gguf_writer *w, int32_t n)
{
	char **toks = xcalloc((size_t)n, sizeof(*toks));
	float *scores = xcalloc((size_t)n, sizeof(*scores));
	int32_t *types = xcalloc((size_t)n, sizeof(*types));
	char buf[64];

	for (int32_t i = 0; i < n; i++) {
		if (i == 0)
			snprintf(buf, sizeof(buf), "<unk>");
		else if (i == 1)
			snprintf(buf, sizeof(buf), "<s>");
		else if (i == 2)
			snprintf(buf, sizeof(buf), "</s>");
		else if (i < 259)
			snprintf(buf, sizeof(buf), "<0x%02X>", i - 3);
		else if (i < 259 + 26)
			snprintf(buf, sizeof(buf), "\xe2\x96\x81%c", 'a' + (i - 259));
		else if (i < 259 + 52)
			snprintf(buf, sizeof(buf), "%c", 'a' + (i - 285));
		else
			snprintf(buf, sizeof(buf), "\xe2\x96\x81w%d", i);
		toks[i] = xstrdup(buf);
		types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
		scores[i] = i < 259 ? 0.0f : -(float)i;
	}
	gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
	gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens",
				(const char *const *)toks, (uint64_t)n);
	gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_T_FLOAT32, scores,
			    (uint64_t)n);
	gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, types,
			    (uint64_t)n);
	gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
	gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
	gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
	for (int32_t i = 0; i < n; i++)
		free(toks[i]);
	free(toks);
	free(scores);
	free(types);
}

static void add_hparams(struct gguf_writer *w, const struct shapes_model *s,
			const char *type_name)
{
	char name[128];

	snprintf(name, sizeof(name), "synthetic %s %s", s->name, type_name);
	gguf_writer_set_str(w, "general.architecture", "llama");
	gguf_writer_set_str(w, "general.name", name);
	gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->n_layer);
	gguf_writer_set_u32(w, "llama.context_length", (uint32_t)s->n_ctx);
	gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->n_embd);
	gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff);
	gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->n_head);
	gguf_writer_set_u32(w, "llama.attention.head_count_kv",
			    (uint32_t)s->n_head_kv);
	gguf_writer_set_u32(w, "llama.rope.dimension_count",
			    (uint32_t)(s->n_embd / s->n_head));
	gguf_writer_set_f32(w, "llama.rope.freq_base", s->rope_base);
	gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)s->n_vocab);
	gguf_writer_set_u32(w, "general.quantization_version", 2);
}

/* token_embd, the blocks, output_norm, output: the tensors and order
 * shapes_model_bytes() sizes */
static int add_tensors_synth(struct gguf_writer *w, const struct shapes_model *s,
			     const struct shapes_ftype *f)
{
	int64_t ne[2] = {s->n_embd, s->n_vocab}, nn[1] = {s->n_embd};
	char name[96];
	int rc;

	rc = gguf_writer_add_tensor_lazy(w, "token_embd.weight",
		shapes_pick_type(f, "token_embd.weight", 0, s->n_layer, ne[0]),
		2, ne);
	for (int l = 0; l < s->n_layer && !rc; l++)
		for (int i = 0; i < LT_COUNT && !rc; i++) {
			int64_t shp[2];

			if ((rc = shapes_layer_tensor_ne(s, i, shp)))
				break;
			snprintf(name, sizeof(name), "blk.%d.%s.weight", l,
				 shapes_layer_tensor_name(i));
			rc = gguf_writer_add_tensor_lazy(w, name,
				shapes_pick_type(f, name, l, s->n_layer, shp[0]),
				shp[1] == 1 ? 1 : 2, shp);
		}
	if (!rc)
		rc = gguf_writer_add_tensor_lazy(w, "output_norm.weight", KT_F32, 1, nn);
	if (!rc)
		rc = gguf_writer_add_tensor_lazy(w, "output.weight",
			shapes_pick_type(f, "output.weight", 0, s->n_layer, ne[0]),
			2, ne);
	return rc;
}

/* every tensor of src under ftype f; every metadata key copied */
static int add_requant(struct gguf_writer *w, const struct gguf_file *src,
		       const struct shapes_ftype *f)
{
	uint32_t n_layer = 0;
	gguf_get_u32(src, "llama.block_count", &n_layer);
	/* everything but what would now be false: the writer's own
	 * alignment, and the source's file type */
	for (uint64_t i = 0; i < src->n_kv; i++)
		if (strcmp(src->kv[i].key.s, "general.alignment") &&
		    strcmp(src->kv[i].key.s, "general.file_type"))
			gguf_writer_set_value(w, src->kv[i].key.s, &src->kv[i].val);
	for (uint64_t i = 0; i < src->n_tensors; i++) {
		const struct gguf_tensor *t = &src->tensors[i];
		int l = 0;
		sscanf(t->name.s, "blk.%d.", &l);
		uint32_t type = t->n_dims == 1 ? KT_F32 /* norms, rope_freqs */
			: shapes_pick_type(f, t->name.s, l, (int32_t)n_layer, t->ne[0]);
		int rc = gguf_writer_add_tensor_lazy(w, t->name.s, type,
						     t->n_dims, t->ne);
		if (rc)
			return rc;
	}
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: mkmodel --shape NAME --type TYPE -o FILE [--seed N] "
		"[--vocab FILE.gguf]\n"
		"       mkmodel --requant SRC.gguf --type TYPE -o FILE\n"
		"shapes:");
	for (int i = 0; shapes_model_at(i); i++)
		fprintf(out, " %s", shapes_model_at(i)->name);
	fprintf(out, "\ntypes:");
	for (int i = 0; shapes_ftype_at(i); i++)
		fprintf(out, " %s", shapes_ftype_at(i)->name);
	fprintf(out, "\n");
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{"shape", required_argument, 0, 'S'},
		{"type", required_argument, 0, 'T'},
		{"output", required_argument, 0, 'o'},
		{"seed", required_argument, 0, 's'},
		{"vocab", required_argument, 0, 'V'},
		{"requant", required_argument, 0, 'R'},
		{"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	const char *shape_name = NULL, *type_name = NULL, *out = NULL;
	const char *vocab = NULL, *requant = NULL;
	uint64_t seed = 1234;
	const struct shapes_model *s = NULL;
	struct shapes_model sh;
	const struct shapes_ftype *f = NULL;
	struct gguf_file vf = {0}, src = {0};
	struct gguf_writer w;
	char err[512];
	int c, rc;

	while ((c = getopt_long(argc, argv, "o:s:h", longs, NULL)) != -1) {
		switch (c) {
		case 'S': shape_name = optarg; break;
		case 'T': type_name = optarg; break;
		case 'o': out = optarg; break;
		case 's': seed = strtoull(optarg, NULL, 10); break;
		case 'V': vocab = optarg; break;
		case 'R': requant = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	s = shapes_find(shape_name);
	f = shapes_find_ftype(type_name);
	if (!out || !f || (!s && !requant) || (s && requant)) {
		if (type_name && !f)
			fprintf(stderr, "error: unknown type '%s'\n", type_name);
		if (shape_name && !s)
			fprintf(stderr, "error: unknown shape '%s'\n", shape_name);
		usage(stderr);
		return 2;
	}
	/* past a file-size limit, fail the write (EFBIG) and clean up rather
	 * than die by SIGXFSZ with a temporary file left behind */
	signal(SIGXFSZ, SIG_IGN);
	kern_init();
	gguf_writer_init(&w);
	struct gen_ctx g = {.w = &w, .seed = seed};
	if (requant) {
		if ((rc = gguf_open(&src, requant, err, sizeof(err))))
			goto err_msg;
		g.src = &src;
		g.src_f = fopen(requant, "rb");
		if (!g.src_f) {
			rc = -errno;
			snprintf(err, sizeof(err), "%s: %s", requant, strerror(-rc));
			goto err_msg;
		}
		rc = add_requant(&w, &src, f);
	} else {
		sh = *s;
		if (vocab) {
			const void *d;
			uint64_t n;
			if ((rc = gguf_open(&vf, vocab, err, sizeof(err))))
				goto err_msg;
			if (gguf_get_arr(&vf, "tokenizer.ggml.tokens", GGUF_T_STRING,
					 &d, &n) || n == 0 || n > INT32_MAX) {
				snprintf(err, sizeof(err), "%s: no tokenizer.ggml.tokens",
					 vocab);
				rc = -EINVAL;
				goto err_msg;
			}
			sh.n_vocab = (int32_t)n;
			s = &sh;
			for (uint64_t i = 0; i < vf.n_kv; i++)
				if (!strncmp(vf.kv[i].key.s, "tokenizer.", 10))
					gguf_writer_set_value(&w, vf.kv[i].key.s,
							      &vf.kv[i].val);
		} else {
			synth_vocab(&w, s->n_vocab);
		}
		add_hparams(&w, s, f->name);
		rc = add_tensors_synth(&w, s, f);
	}
	if (rc) {
		snprintf(err, sizeof(err), "cannot describe the tensors: %s",
			 strerror(-rc));
		goto err_msg;
	}
	w.fill = fill;
	w.fill_ctx = &g;
	if ((rc = gguf_writer_write(&w, out, err, sizeof(err))))
		goto err_msg;
	fprintf(stderr, "mkmodel: wrote %s (%" PRIu64 " tensors)\n", out, w.n_tensors);
	gguf_writer_destroy(&w);
	gguf_close(&vf);
	gguf_close(&src);
	if (g.src_f)
		fclose(g.src_f);
	return 0;

err_msg:
	fprintf(stderr, "error: %s\n", err);
	gguf_writer_destroy(&w);
	gguf_close(&vf);
	gguf_close(&src);
	if (g.src_f)
		fclose(g.src_f);
	return 1;
}
