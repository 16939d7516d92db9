/*
 * layer.h - one unit's share of one transformer layer: THE forward pass.
 *
 * layer_forward() is called by every near-memory unit (engine/nmu.h) for
 * every layer, for decode (nb = 1: the matvec kernels) and for prefill
 * (nb > 1: batched kernels over the same row shares). Its steps, with the
 * synchronisation points between units:
 *
 *   xn = rmsnorm(x)                       every unit, whole vector
 *   q, k, v = own rows of Wq, Wk, Wv      own query heads, own KV heads
 *   RoPE, append K/V to own KV cache, attention of own query heads
 *                                         -> att rows       | barrier
 *   x[own rows] += Wo[own rows] . att                       | barrier
 *   xn = rmsnorm(x); hb[own] = silu(gate) * up              | barrier
 *   x[own rows] += down[own rows] . hb                      | barrier
 *
 * In shared mode (`--nmu off`: one memtier and one KV cache, no ownership)
 * unit 0 does every memtier and KV-cache call for all, and one more barrier
 * per layer publishes the KV view before attention.
 *
 * Weights: a unit that owns its memory releases layer l-1 at the start of
 * layer l and acquires l+1 from its own memtier instance once its share of
 * l is computed; its flash ring has l+1 .. l+prefetch in flight meanwhile.
 */
#ifndef STRATA_LAYER_H
#define STRATA_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/nmu.h"
#include "engine/plan.h"
#include "memtier/kvcache.h"
#include "memtier/memtier.h"
#include "models/llama_model.h"

struct engine;

/* rows of a weight matrix dequantized at once for a prefill SGEMM: a tile
 * of 64 x n_embd floats stays in a 1 MiB L2 for n_embd <= 2048 */
#define LAYER_TILE_ROWS 64

/* per-unit figures over the engine's life (the report takes differences) */
struct engine_unit_counters {
	uint64_t weight_bytes;     /* weight rows this unit's kernels read */
	uint64_t act_bytes_in;     /* activation rows other units wrote, read */
	uint64_t result_bytes_out; /* own rows written for other units */
	uint64_t foreign_rows;     /* rows read outside its share: must be 0 */
	uint64_t kv_replica_rows;  /* K/V rows also kept by another unit */
};

struct engine_unit {
	struct engine *e;
	struct nmu_unit *nu;
	const struct plan_unit *pu;
	bool mem_owner;     /* makes memtier / KV calls (all in owner mode,
			     * unit 0 in shared mode) */
	struct memtier mt;  /* owner mode: its shard of every tensor */
	uint64_t dram_budget; /* its share of --dram-budget (UINT64_MAX: none) */
	struct kvcache *kv; /* owner mode: its KV heads */
	struct memtier *mtp;
	struct kvcache *kvp;
	/* what it computes: query heads attended, KV heads computed and
	 * written; the KV view holds heads from kv_head0 on, kv_stride
	 * floats per position */
	struct plan_range qh, kvh;
	int64_t kv_head0, kv_stride;
	/* acquired pointers, [segment & 1]; shared mode: the engine's */
	const void *(*w)[LT_COUNT];
	const void *own_w[2][LT_COUNT];
	uint8_t *held;       /* [n_layer + 1] segments it holds */
	int32_t kv_held;     /* layer whose KV view it holds, -1 if none */
	/* private scratch */
	float *xn;           /* [n_batch][max(n_embd, n_ff)] */
	void *act[2];        /* [n_batch][act_stride] quantized xn per act type */
	bool act_valid[2];
	size_t act_stride;
	float *q, *k, *v;    /* [n_batch][own q / KV rows] */
	float *scores;       /* [n_ctx] */
	float *tile;         /* [LAYER_TILE_ROWS][max(n_embd, n_ff)] */
	struct engine_unit_counters c;
	int64_t stall0_ns;   /* tier stall at the window's start */
	char err[512];
};

/* Layer l for tokens at positions pos0 .. pos0+nb-1 (their rows of the
 * engine's residual stream, x for nb = 1, bx otherwise). Returns 0 or
 * -errno (-ECANCELED: another unit failed). */
int layer_forward(struct engine_unit *eu, int32_t l, int32_t pos0, int32_t nb);

/* Before layer 0: acquire layer 0, embed the nb tokens whose vocabulary
 * rows this unit owns into the residual stream, and meet the others. */
int layer_embed(struct engine_unit *eu, const int32_t *tokens, int32_t nb);

/* After the last layer: own rows of the logits of tokens first..nb-1
 * (rows of out, ldo floats apart); all_float: the float (SGEMM) head.
 * Releases the last layer and the head. */
int layer_head(struct engine_unit *eu, int32_t nb, int32_t first, float *out,
	       int64_t ldo, bool all_float);

/* Release whatever the unit still holds (after a failed job). */
void layer_release_all(struct engine_unit *eu);

#endif
