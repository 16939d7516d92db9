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

struct plan_config {
	int n_units;
	const int *unit_cpu;  /* [n_units], or NULL: -1 each */
	const int *unit_node; /* [n_units], or NULL: node 0 each */
};

struct plan {
	int n_units;
	int n_nodes;       /* distinct nodes among the units */
	int kv_replicated; /* extra KV-head copies: over the KV heads, units
			    * keeping it minus one (TinyLlama on 16 units:
			    * each of 4 heads on 4 units, 12) */
	struct plan_unit unit[PLAN_MAX_UNITS];
};

/* Split hp over cfg->n_units units. Returns 0, or -EINVAL with a message
 * in err when the shape cannot be split so (more units than query heads,
 * a unit left without rows of some matrix). */
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
