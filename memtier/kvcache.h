/*
 * kvcache.h - the paged KV cache, in DRAM or on flash.
 *
 * Each layer's keys and values are rows of n_embd_kv floats, one per
 * position, grouped in fixed blocks of block_tokens positions. The engine
 * sees a layer as two arrays [n_ctx][n_embd_kv] (K and V) through
 * kvcache_layer(), writes the rows of new positions into them, and calls
 * kvcache_commit() for those rows before kvcache_release().
 *
 * dram: the arrays are the cache (2 x n_layer x n_ctx rows, allocated
 * once); commit and prefetch only count.
 * flash: the cache is one file in `dir`, created without a name
 * (O_TMPFILE; else mkstemp + unlink at once), so no run can clobber
 * another's and nothing is left behind on exit, error or signal. Layer l's
 * K blocks and V blocks each have a fixed region of the file, a block at
 * region + b x block_bytes. New rows are appended to a per-layer tail
 * block in DRAM; a block that fills is written with io_uring (O_DIRECT,
 * WRITE_FIXED) and never rewritten unless positions are re-evaluated.
 * The layer view lives in one of a few DRAM slots: kvcache_prefetch()
 * reads the layer's full blocks into a slot (READ_FIXED), ahead of use;
 * kvcache_layer() waits for them (counted as stall) and copies the tail
 * rows in. DRAM held: the slots and the tails, not the context.
 *
 * One thread at a time calls these (the unit that owns the cache).
 */
#ifndef STRATA_KVCACHE_H
#define STRATA_KVCACHE_H

#include <stdint.h>

#include "memtier/memtier.h"

struct kvcache_config {
	enum memtier_kind kind; /* MEMTIER_DRAM or MEMTIER_FLASH */
	const char *dir;        /* flash: where the KV file is created */
	int32_t n_layer, n_ctx, n_embd_kv;
	int32_t block_tokens;   /* <= 0: 64; rounded up so that a block is
				 * whole 4 KiB pages */
	int prefetch;           /* flash: layers read ahead (slots - 2) */
	const struct memtier_config *mt; /* no_direct, fault, trace */
};

struct kvcache_info {
	enum memtier_kind kind;
	int32_t block_tokens;
	uint64_t position_bytes; /* K and V rows of one position, all layers */
	uint64_t dram_bytes;  /* DRAM the cache holds (arrays or slots+tails) */
	uint64_t drive_bytes; /* flash: size of dir's file system (statvfs) */
};

struct kvcache;

/* Returns 0 or -errno with a message in err (*out NULL on failure). */
int kvcache_open(struct kvcache **out, const struct kvcache_config *cfg,
		 char *err, size_t errlen);
/* Waits for writes in flight, closes (and so removes) the file. */
void kvcache_close(struct kvcache *kv);

/* Start reading layer l's rows [0, n_pos) (flash; dram: nothing). */
int kvcache_prefetch(struct kvcache *kv, int32_t l, int32_t n_pos);
/* Read ahead while layer l is computed: the blocks of the next
 * cfg.prefetch layers, rows [0, n_pos), wrapping past the last layer to
 * the first ones with rows [0, n_pos_next) (the next token or batch).
 * 0 or -errno. */
int kvcache_ahead(struct kvcache *kv, int32_t l, int32_t n_pos,
		  int32_t n_pos_next);
/* Layer l's K and V arrays with rows [0, n_pos) valid; n_pos must not
 * exceed the rows committed so far. Held until kvcache_release(l). */
int kvcache_layer(struct kvcache *kv, int32_t l, int32_t n_pos, float **k,
		  float **v);
/* Rows [p0, p1) of the held layer l were written: keep them. Rows from
 * p1 on are dropped. Returns 0 or -errno (-ENOSPC: disk full). */
int kvcache_commit(struct kvcache *kv, int32_t l, int32_t p0, int32_t p1);
void kvcache_release(struct kvcache *kv, int32_t l);

/* Wait for every block write in flight (so that counters read after it
 * hold them). Returns 0 or the first write error. */
int kvcache_flush(struct kvcache *kv);

void kvcache_get_info(const struct kvcache *kv, struct kvcache_info *info);
/* transfers so far: bytes_loaded (read from flash), bytes_written,
 * stall_ns, prefetch hits/misses, requests and queue depth */
const struct memtier_tier_stats *kvcache_stats(const struct kvcache *kv);

#endif
