/*
 * plan.h - who owns what: the near-memory units' shares of a model.
 *
 * Pure arithmetic from the model's shape and the unit topology; no memory,
 * no threads. Every weight matrix is split by output rows. A unit owns:
 *   - query heads [q_heads): the rows of Wq for them, their RoPE and their
 *     attention, so that attention needs nothing from another unit;
 *   - the KV heads those query heads read [kv_heads): the rows of Wk/Wv
 *     for them and their K/V rows in its own KV cache. Query heads are
 *     split evenly, not KV-head groups, so that no unit idles when there
 *     are fewer KV heads than units (SmolLM2: 3 KV heads); a KV head whose
 *     group straddles units is kept by each of them (computed and cached
 *     once per unit: `kv_replicated` counts the extra copies, one per
 *     unit boundary inside a group);
 *   - rows [embd) of Wo and ffn_down (and of the residual stream), rows
 *     [ff) of ffn_gate/up, rows [vocab) of the output head and of the
 *     token embedding (the owner of a token's row embeds it).
 * Row boundaries fall on multiples of PLAN_ALIGN_ROWS, so no two units
 * write the same 64-byte line of a float vector.
 *
 * Chips (`--chips N`, engine/fabric.h) come first: chip c holds whole KV
 * heads [plan_split(n_head_kv, c, N)] and their query heads, and a slice
 * of every other dimension; the units of a chip split the chip's slice
 * as above. Two tensor-parallel schemes:
 *   rows:      chip slices of n_embd, n_ff and vocab rows, all-gathered
 *              after each projection (same arithmetic as one chip);
 *   allreduce: Wo and ffn_down split by input columns (the chip's heads,
 *              its n_ff slice, on quantization-block boundaries), every
 *              chip computes all n_embd rows of its partial sums, summed
 *              by an all-reduce; the chip's embd range is all of n_embd.
 *
 * The shared alternative (`--nmu off`: no ownership) partitions KV heads
 * by whole groups instead ([kv_part)), and each unit attends with the query
 * heads of its groups ([q_part)); see engine.c.
 */
#ifndef STRATA_PLAN_H
#define STRATA_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "models/llama_model.h"

#define PLAN_ALIGN_ROWS 16 /* floats per 64-byte cache line */
#define PLAN_MAX_UNITS 256
#define PLAN_MAX_CHIPS 64

enum plan_tp { PLAN_TP_ROWS = 0, PLAN_TP_ALLREDUCE = 1 };

struct plan_range {
	int64_t r0, r1; /* [r0, r1) */
};

struct plan_unit {
	int cpu;  /* CPU it runs on (-1: unpinned) */
	int node; /* NUMA node its memory is on */
	struct plan_range q_heads, kv_heads;
	struct plan_range q_part, kv_part; /* shared mode: whole KV groups */
	struct plan_range embd, ff, vocab;
};

/* a chip's slice: what its units split among them */
struct plan_chip {
	struct plan_range q_heads, kv_heads, embd, ff, vocab;
};

struct plan_config {
	int n_chips;          /* 0 or 1: one chip */
	int chip;             /* this chip */
	enum plan_tp tp;
	/* allreduce: quantization block of Wo and ffn_down (columns of a
	 * slice start on multiples of it); 0: 1 */
	int64_t wo_block, down_block;
	int n_units;          /* of this chip */
	const int *unit_cpu;  /* [n_units], or NULL: -1 each */
	const int *unit_node; /* [n_units], or NULL: node 0 each */
};

struct plan {
	int n_chips, chip;
	enum plan_tp tp;
	struct plan_chip chips[PLAN_MAX_CHIPS];
	int n_units;        /* this chip's */
	int n_nodes;       /* distinct nodes among the units */
	int kv_replicated; /* extra KV-head copies: over the KV heads, units
			    * keeping it minus one (TinyLlama on 16 units:
			    * each of 4 heads on 4 units, 12) */
	struct plan_unit unit[PLAN_MAX_UNITS];
};

/* Split hp over cfg->n_chips chips and this chip's slice over its
 * cfg->n_units units. Returns 0, or -EINVAL with a message in err when
 * the shape cannot be split so (more chips than KV heads, more units than
 * the chip's query heads, a unit left without rows of some matrix, an
 * allreduce slice off a quantization block). Every chip computes every
 * chip's slice the same way. */
int plan_init(struct plan *p, const struct llama_hparams *hp,
	      const struct plan_config *cfg, char *err, size_t errlen);

/* n items over n_units, unit i's share [r0, r1): even, and boundaries on
 * multiples of align (the last boundary is n). */
struct plan_range plan_split(int64_t n, int i, int n_units, int64_t align);

static inline int64_t plan_len(struct plan_range r)
{
	return r.r1 - r.r0;
}

#endif
