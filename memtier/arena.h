/*
 * arena.h - the one place that makes model-sized memory mappings.
 *
 * Every buffer sized from the model (the dram tier's weights, the flash
 * tier's pinned segments and slot buffers, the KV cache) and the bench
 * buffers is an anonymous private mapping with the same properties:
 *
 *   - base aligned to ARENA_ALIGN (2 MiB) and length rounded up to it, so
 *     that transparent huge pages can back the whole of it;
 *   - MADV_HUGEPAGE when asked (a hint: a kernel without THP, or with THP
 *     off, is not an error);
 *   - bound to one NUMA node with mbind(MPOL_BIND) when node >= 0: the
 *     near-memory units each allocate their shard on their own node;
 *   - touched once when asked (one write per 4 KiB page), so the first-
 *     touch cost (~15 us per page here, MACHINE.md) is paid at start-up
 *     and never per token. A touched arena reads as zeros.
 *
 * Small bookkeeping stays on xmalloc (models/util.h); these can fail and
 * say so with -ENOMEM.
 */
#ifndef STRATA_ARENA_H
#define STRATA_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#define ARENA_ALIGN ((size_t)2 << 20)  /* one x86-64 huge page */
#define ARENA_TOUCH_STRIDE 4096u       /* one write per base page */
#define ARENA_MAX_NODES 1024           /* node numbers 0 .. this - 1 */
#define ARENA_INTERLEAVE (-2)          /* node: interleave over every node */

struct arena_config {
	size_t bytes;    /* wanted; the mapping is this rounded up to ARENA_ALIGN */
	bool huge_pages; /* MADV_HUGEPAGE */
	int node;        /* NUMA node to bind the pages to; -1: no binding;
			  * ARENA_INTERLEAVE: pages spread over all nodes */
	bool touch;      /* write every page once before returning */
	bool no_reserve; /* MAP_NORESERVE: no commit charge up front, for
			  * memory that may never be touched whole (a KV
			  * cache sized for the full context) */
};

struct arena {
	void *base;   /* ARENA_ALIGN aligned; NULL when not mapped */
	size_t bytes; /* mapped length, a multiple of ARENA_ALIGN */
	int node;     /* bound node, -1: none */
};

/*
 * Map an arena as cfg says into *a. Returns 0, or -errno with a message in
 * err: -ENOMEM when bytes is 0 or more than can be mapped (or mmap says
 * so), -EINVAL for a node out of range or not present, -EPERM when the
 * kernel refuses mbind. *a is written only on success; the caller owns the
 * mapping and gives it back with arena_unmap. Thread-safe (no shared
 * state); the touch runs on the calling thread.
 */
int arena_map(struct arena *a, const struct arena_config *cfg, char *err,
	      size_t errlen);

/* Write a zero to every 4 KiB page of [offset, offset + bytes), clamped
 * to the arena: for callers that touch only part of a fresh arena up
 * front. Call it before the range holds data. */
void arena_touch(struct arena *a, size_t offset, size_t bytes);

/* Unmap and zero *a; accepts a zeroed or never-mapped object. */
void arena_unmap(struct arena *a);

#endif
