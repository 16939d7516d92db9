/*
 * forward.h - the llama forward pass over memtier-held weights.
 *
 * Three parts, kept apart: the model description (struct llama_model, read
 * only), the weights (struct memtier, acquired per layer) and the mutable
 * per-sequence state (struct engine_state: activations, KV cache).
 *
 * Every token (decode) and every prompt batch (prefill) runs as one job on
 * the near-memory unit pool (engine/nmu.h): each unit owns its share of
 * every weight matrix and of the KV heads (engine/plan.h), in its own
 * memtier instance and KV cache, and runs the one per-layer step function
 * (engine/layer.h) on it; units meet at four barriers per layer.
 */
#ifndef STRATA_FORWARD_H
#define STRATA_FORWARD_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/fabric.h"
#include "engine/nmu.h"
#include "engine/plan.h"
#include "memtier/kvcache.h"
#include "memtier/memtier.h"
#include "models/gguf.h"
#include "models/llama_model.h"

struct engine_config {
	int n_threads;   /* near-memory units (-t / --nmus); <= 0: one per
			  * allowed CPU */
	bool nmu_off;    /* --nmu off: unpinned threads over one shared
			  * memtier and KV cache, no ownership */
	const char *topology; /* STRATA_TOPOLOGY "NxM" or NULL */
	int32_t n_ctx;   /* <= 0: min(training context, 4096) */
	int32_t n_batch; /* prompt tokens per prefill step; <= 0: 128 */
	/* prefill products of quantized weights: false = int8 path (the
	 * decode kernels swept over row tiles x all batch tokens, activations
	 * quantized like llama.cpp's); true = dequantized tiles x OpenBLAS
	 * SGEMM. Float weights always use SGEMM. */
	bool prefill_blas;
	/* --act f32: every product keeps its activations in float
	 * (kern_matmul_f32, decode and prefill, the head included) instead
	 * of rounding them to 8 bits; a check mode, see kern.h */
	bool act_f32;
	struct memtier_config mt;
	/* KV cache: MEMTIER_DRAM (default) or MEMTIER_FLASH in kv_dir */
	enum memtier_kind kv_kind;
	const char *kv_dir;
	int32_t kv_block; /* tokens per KV block; <= 0: 64 */
	/* non-zero *cancel stops a prefill between batches (-EINTR) */
	const volatile sig_atomic_t *cancel;
	/* chips: this process's fabric (NULL: one chip) and the scheme */
	struct fabric *fab;
	enum plan_tp tp;
};

/* activations shared between units, each vector 64-byte aligned; a unit
 * writes only its own rows (plan.h) */
struct engine_state {
	int32_t n_ctx;
	float *x;   /* [n_batch][n_embd] residual stream */
	float *att; /* [n_batch][n_embd] attention output */
	float *hb;  /* [n_batch][n_ff] silu(gate) * up */
	float *up;  /* [n_batch][n_ff] */
	float *tmp; /* [n_batch][n_embd] projection outputs */
	/* shared mode: layer views published by unit 0 */
	float *kc, *vc;
};

struct engine_stats {
	int64_t prefill_ns, decode_ns;
	int64_t n_prefill_tokens, n_decode_tokens;
};

struct engine_unit;

/* A chip's view of a tensor: the rows (and columns) of it the chip holds
 * and where they are in the file its memtier instances read (the GGUF,
 * or with --tp allreduce the chip's packed image). One chip: the whole
 * tensor. */
struct engine_view {
	uint64_t off;       /* file offset of row row0 */
	uint64_t row_bytes; /* bytes of a row of k columns */
	int64_t row0, rows; /* rows [row0, row0 + rows) */
	int64_t col0, k;    /* columns [col0, col0 + k) of each row */
};

struct engine {
	struct engine_config cfg;
	int n_threads;  /* units */
	int32_t n_batch;
	struct gguf_file gguf;
	struct llama_model model;
	struct plan plan;
	struct nmu_pool pool;
	struct engine_unit *units; /* [n_threads] */
	bool shared;               /* --nmu off */
	struct memtier mt;         /* shared mode: the one instance */
	struct kvcache *kv;        /* shared mode: the one KV cache */
	const void *sw[2][LT_COUNT]; /* shared mode: acquired pointers */
	struct engine_state st;
	uint32_t id_tok_embd, id_output_norm, id_output; /* memtier ids */
	struct engine_view *view;  /* [memtier id]: this chip's */
	int image_fd;              /* --tp allreduce: the packed image, or -1 */
	char image_path[64];       /* /proc/self/fd/N of it */
	/* chips: this one and every chip's slice bounds, [n_chips + 1] */
	struct fabric *fab;
	int chip, n_chips;
	int64_t *cols_att, *cols_embd, *cols_ff, *cols_vocab;
	int *tok_owner;            /* [n_batch] chip embedding token i */
	float *chip_logits;        /* other chips: their logits rows */
	int64_t load_ns;
	struct engine_stats stats;
};

/* What the engine measured, summed over its units (the run report
 * takes differences of two of these). */
struct engine_counters {
	struct memtier_tier_stats tiers[MEMTIER_KIND_COUNT]; /* weights */
	struct memtier_tier_stats kv;  /* the KV caches' transfers */
	struct kvcache_info kv_info;   /* dram_bytes summed over units */
	uint64_t resident_bytes;       /* weights kept in DRAM */
	uint64_t n_segments;
};

/* per-unit figures for the report */
struct engine_unit_report {
	int chip, unit, cpu, node;
	uint64_t weight_bytes, act_bytes_in, result_bytes_out, foreign_rows;
	double busy_s, barrier_s, stall_s;
	uint64_t n_barriers;
	double barrier_p50_us, barrier_p99_us;
};

/* One chip's figures for the report (engine_chip_reports). */
struct engine_fabric_op {
	uint64_t count, bytes;
	double seconds, wait_s, p50_us, p99_us, max_us;
	uint64_t hist[40]; /* calls by floor(log2(ns)) */
};

struct engine_chip_report {
	int chip, pid, n_units;
	char host[64];
	struct engine_counters c;
	uint64_t peak_rss_bytes;
	struct engine_fabric_op op[FABRIC_OP_COUNT];
	struct engine_unit_report u[PLAN_MAX_UNITS];
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

/* Chips other than 0: carry out chip 0's calls (each engine_prefill,
 * engine_decode, engine_flush, engine_units_reset, engine_chip_reports
 * chip 0 makes is sent to every chip) until engine_stop. Returns 0, or
 * -errno with fabric_error() / the unit's message in err. */
int engine_serve(struct engine *e, char *err, size_t errlen);

/* Chip 0: tell the other chips to leave engine_serve. */
void engine_stop(struct engine *e);

/* Every chip's figures since engine_units_reset into out[n_chips] (chip
 * 0; a collective). Returns 0 or -errno. */
int engine_chip_reports(struct engine *e, struct engine_chip_report *out);

/* Wait for every KV block write in flight. Returns 0 or the first error. */
int engine_flush(struct engine *e);

/* The engine's transfer counters, summed over units (and chips: on chip
 * 0 a collective). */
void engine_counters(struct engine *e, struct engine_counters *c);

/* Start a measuring window for the per-unit figures (between calls). */
void engine_units_reset(struct engine *e);

/* Unit i's figures since engine_units_reset (sorts its samples). */
void engine_unit_report(struct engine *e, int i, struct engine_unit_report *r);

#endif
