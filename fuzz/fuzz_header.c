/*
 * fuzz_header.c - a real model's header with mutated metadata and tensor
 * table: the GGUF reader, then llama_model_init (the binding of
 * hyper-parameters and tensor shapes) and plan_init over the
 * hyper-parameters it accepted. (The tokenizer is fuzz_tokenizer's, on the
 * whole SmolLM2 vocabulary: here it cost a third of every execution.) The
 * seed (fuzz/mkheader.py, from
 * SmolLM2-135M-Instruct's file: every metadata key and all 273 tensor
 * infos, the vocabulary arrays cut to their first entries, no weights) is
 * a file that binds; libFuzzer mutates its bytes.
 *
 * The input is the header alone. Its data section is supplied as a hole:
 * the memfd is extended by HOLE_BYTES past the input (no pages are
 * touched), so the real tensor table lies inside the file, and binding -
 * not the reader's range check - meets what the mutations did to names,
 * types, shapes and hyper-parameters. What llama_model_init accepts must
 * then be a model the engine can index: checked below, a violation aborts
 * (a finding like a crash).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/plan.h"
#include "fuzz/fuzz.h"
#include "kernels/kern.h"
#include "models/gguf.h"
#include "models/llama_model.h"

/* past SmolLM2-135M's 92.1 MiB of tensor data. The hole also bounds
 * what a lying array count may make the reader allocate and read (it
 * checks counts against the file size), which such inputs pay for in
 * first touches: the smaller the faster. */
#define HOLE_BYTES (93ull << 20)

static void need(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_header: llama_model_init accepted a model "
				"with %s\n", what);
		abort();
	}
}

/* the binding's promise: shapes agree with the hyper-parameters and every
 * tensor the engine reads lies inside the file */
static void check_tensor(const struct gguf_file *g, const struct gguf_tensor *t,
			 int64_t k, int64_t rows)
{
	need(t != NULL, "a NULL tensor");
	need(t->ne[0] == k && t->n_rows == rows, "a tensor of the wrong shape");
	need(kern_type_info(t->type) != NULL, "an unknown tensor type");
	need(kern_row_bytes(t->type, k) == (int64_t)t->row_bytes,
	     "a tensor whose row bytes disagree with its type");
	need(t->row_bytes * (uint64_t)rows == t->n_bytes, "a tensor size that lies");
	need(t->file_offset >= g->data_offset &&
	     t->file_offset <= g->file_size &&
	     t->n_bytes <= g->file_size - t->file_offset,
	     "a tensor outside the file");
}

static void check_model(const struct gguf_file *g, const struct llama_model *m)
{
	const struct llama_hparams *hp = &m->hp;
	const int64_t d = hp->n_embd, kv = (int64_t)hp->n_head_kv * hp->head_dim;

	need(hp->n_layer > 0 && hp->n_embd > 0 && hp->n_head > 0 &&
	     hp->n_head_kv > 0 && hp->n_ff > 0 && hp->n_vocab > 0,
	     "a dimension <= 0");
	need(hp->n_head % hp->n_head_kv == 0, "n_head not a multiple of n_head_kv");
	need((int64_t)hp->head_dim * hp->n_head == d, "head_dim * n_head != n_embd");
	need(hp->rope_dim >= 0 && hp->rope_dim <= hp->head_dim &&
	     hp->rope_dim % 2 == 0, "a bad RoPE dimension");
	need(hp->rms_eps > 0 && hp->rope_base > 0, "eps or RoPE base <= 0");
	check_tensor(g, m->global[GT_TOK_EMBD], d, hp->n_vocab);
	check_tensor(g, m->global[GT_OUTPUT_NORM], d, 1);
	check_tensor(g, m->global[GT_OUTPUT], d, hp->n_vocab);
	for (int32_t l = 0; l < hp->n_layer; l++) {
		const struct gguf_tensor *const *t = m->layer + (size_t)l * LT_COUNT;
		check_tensor(g, t[LT_ATTN_NORM], d, 1);
		check_tensor(g, t[LT_WQ], d, d);
		check_tensor(g, t[LT_WK], d, kv);
		check_tensor(g, t[LT_WV], d, kv);
		check_tensor(g, t[LT_WO], d, d);
		check_tensor(g, t[LT_FFN_NORM], d, 1);
		check_tensor(g, t[LT_W_GATE], d, hp->n_ff);
		check_tensor(g, t[LT_W_UP], d, hp->n_ff);
		check_tensor(g, t[LT_W_DOWN], hp->n_ff, d);
	}
}

/* the plan the engine would make from these hyper-parameters: 1-3 units,
 * and 2 chips by rows and by all-reduce */
static void use_plan(const struct llama_hparams *hp)
{
	static const struct plan_config cfgs[] = {
		{.n_units = 1}, {.n_units = 3},
		{.n_chips = 2, .chip = 1, .tp = PLAN_TP_ROWS, .n_units = 2},
		{.n_chips = 2, .chip = 0, .tp = PLAN_TP_ALLREDUCE, .wo_block = 32,
		 .down_block = 32, .n_units = 1},
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
		struct plan p; /* plain data: nothing to destroy */
		plan_init(&p, hp, &cfgs[i], err, sizeof(err));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf_file g;
	struct llama_model m;
	char err[512], path[64];
	int fd = memfd_create("fuzz-header.gguf", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size ||
	    ftruncate(fd, (off_t)(size + HOLE_BYTES))) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (gguf_open(&g, path, err, sizeof(err)) == 0) {
		if (llama_model_init(&m, &g, err, sizeof(err)) == 0) {
			check_model(&g, &m);
			use_plan(&m.hp);
			llama_model_destroy(&m);
		}
		gguf_close(&g);
	}
	close(fd);
	return 0;
}
