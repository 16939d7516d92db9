/*
 * forward.h - the llama forward pass over memtier-held weights.
 *
 * Three parts, kept apart: the model description (struct llama_model, read
 * only), the weights (struct memtier, acquired per layer) and the mutable
 * per-sequence state (struct engine_state: activations, KV cache).
 *
 * Decode (one token) runs the whole layer stack inside one OpenMP parallel
 * region: each thread owns a fixed row range of every matrix (the shape of
 * a near-memory unit) and threads meet at a handful of barriers per layer.
 * Prefill (a batch of prompt tokens) dequantizes row tiles of each weight
 * matrix and multiplies them with OpenBLAS SGEMM, tiles split over threads.
 */
#ifndef STRATA_FORWARD_H
#define STRATA_FORWARD_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memtier/kvcache.h"
#include "memtier/memtier.h"
#include "models/gguf.h"
#include "models/llama_model.h"

struct engine_config {
	int n_threads;   /* <= 0: all online CPUs */
	int32_t n_ctx;   /* <= 0: min(training context, 4096) */
	int32_t n_batch; /* prompt tokens per prefill step; <= 0: 128 */
	/* prefill products of quantized weights: false = int8 path (the
	 * decode kernels swept over row tiles x all batch tokens, activations
	 * quantized like llama.cpp's); true = dequantized tiles x OpenBLAS
	 * SGEMM. Float weights always use SGEMM. */
	bool prefill_blas;
	struct memtier_config mt;
	/* KV cache: MEMTIER_DRAM (default) or MEMTIER_FLASH in kv_dir */
	enum memtier_kind kv_kind;
	const char *kv_dir;
	int32_t kv_block; /* tokens per KV block; <= 0: 64 */
	/* non-zero *cancel stops a prefill between batches (-EINTR) */
	const volatile sig_atomic_t *cancel;
};

struct engine_thread; /* private per-thread scratch */

struct engine_state {
	int32_t n_ctx;
	struct kvcache *kv; /* paged K/V, [n_ctx][n_embd_kv] per layer view */
	/* decode activations, shared between threads */
	float *x;   /* [n_embd] residual stream */
	float *q;   /* [n_embd] */
	float *k;   /* [n_embd_kv] */
	float *v;   /* [n_embd_kv] */
	float *att; /* [n_embd] attention output */
	float *hb;  /* [n_ff] silu(gate) * up */
	float *g;   /* [n_ff] */
	float *u;   /* [n_ff] */
	float *tmp; /* [max(n_embd, n_vocab)] */
	/* prefill activations, [n_batch][...] */
	float *bx, *bxn, *bq, *bk, *bv, *batt, *bg, *bu, *btmp;
	void *bact;          /* [n_batch] quantized activations */
	size_t bact_stride;  /* bytes per token in bact */
};

struct engine_stats {
	int64_t prefill_ns, decode_ns;
	int64_t n_prefill_tokens, n_decode_tokens;
};

struct engine {
	struct engine_config cfg;
	int n_threads;
	int32_t n_batch;
	struct gguf_file gguf;
	struct llama_model model;
	struct memtier mt;
	struct engine_state st;
	struct engine_thread *thr; /* [n_threads] */
	uint32_t id_tok_embd, id_output_norm, id_output; /* memtier ids */
	int64_t load_ns;
	struct engine_stats stats;
};

/* Open a GGUF, validate it as a llama model, place its weights with memtier
 * and allocate the state for cfg->n_ctx positions. Returns 0 or -errno with
 * a message in err; on failure e is left destroyable. */
int engine_init(struct engine *e, const char *path,
		const struct engine_config *cfg, char *err, size_t errlen);
void engine_destroy(struct engine *e);

/* Evaluate n tokens at positions pos0 .. pos0+n-1 (prefill path; n may
 * exceed n_batch, it is split). logits: if all_logits, [n][n_vocab], else
 * [n_vocab] for the last token; NULL for none. Returns 0 or -errno
 * (-ENOSPC when the context is full). */
int engine_prefill(struct engine *e, const int32_t *tokens, int32_t n,
		   int32_t pos0, float *logits, bool all_logits);

/* Evaluate one token at pos (decode path), logits [n_vocab]. */
int engine_decode(struct engine *e, int32_t token, int32_t pos, float *logits);

#endif
