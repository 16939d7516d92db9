/*
 * memtier.h - where model bytes live and how they move.
 *
 * The engine never holds a pointer to weights it did not acquire here. A
 * model is described to memtier as tensors (file ranges) grouped into
 * segments: one per transformer layer plus the global ones. The engine
 * calls memtier_acquire(seg) before computing with a segment and
 * memtier_release(seg) after; a tier that streams (flash, next) uses the
 * pair to keep reads of later segments in flight while one is computed.
 * The dram tier copies every byte into one resident arena at open; the
 * mmap tier maps the file and lets the page cache decide (the baseline
 * llama.cpp uses); in both acquire only accounts. The flash tier keeps
 * the weights in the file and streams each segment through io_uring on
 * acquire, with the next cfg.prefetch segments already in flight.
 *
 * Every acquire counts the bytes the compute will read from the tier that
 * holds them; single rows (an embedding lookup) are read with
 * memtier_read_row and counted as the row's bytes.
 */
#ifndef STRATA_MEMTIER_H
#define STRATA_MEMTIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memtier/arena.h"

enum memtier_kind {
	MEMTIER_DRAM = 0,
	MEMTIER_FLASH = 1, /* the file, streamed per acquire (io_uring) */
	MEMTIER_MMAP = 2,  /* the file mapped read-only: page cache, as llama.cpp */
	MEMTIER_KIND_COUNT,
};

struct memtier_tensor {
	uint64_t file_offset;
	uint64_t n_bytes;
	uint64_t row_bytes;
};

/* a segment lists tensor ids (indices into the tensor array) */
struct memtier_segment {
	uint32_t n;
	const uint32_t *ids;
};

/* Fault injection into the flash tiers' io_uring completions (weights
 * and KV cache; tests; off = NONE): every `fault_every`-th completion is
 * turned into the fault. */
enum memtier_fault {
	MEMTIER_FAULT_NONE = 0,
	MEMTIER_FAULT_EIO,      /* the transfer fails with -EIO */
	MEMTIER_FAULT_SHORT,    /* it moves half its bytes (requeued) */
	MEMTIER_FAULT_ENOSPC,   /* a write fails with -ENOSPC (disk full) */
	MEMTIER_FAULT_NODIRECT, /* opening with O_DIRECT fails (-EINVAL), as
				 * on a file system without direct I/O */
};

struct memtier_config {
	enum memtier_kind kind;
	/* flash tier: bytes of weights kept resident (whole segments, in
	 * read order); UINT64_MAX = none given, stream everything */
	uint64_t dram_budget_bytes;
	int prefetch;               /* segments in flight (streaming tiers) */
	bool huge_pages;            /* back DRAM copies with huge pages */
	bool no_direct;             /* flash: buffered I/O (page cache) when
				     * the file system refuses O_DIRECT */
	enum memtier_fault fault;
	uint64_t fault_every;       /* 1 = every read */
	struct trace *trace;        /* NULL: no trace (memtier/trace.h) */
	/* NUMA placement of every DRAM mapping (weights, pinned segments,
	 * flash slots, KV cache): the OS's default (first touch), bound to
	 * numa_node (a near-memory unit's own), or interleaved over all nodes
	 * (--nmu off's shared copy) */
	enum memtier_numa {
		MEMTIER_NUMA_DEFAULT = 0,
		MEMTIER_NUMA_BIND,
		MEMTIER_NUMA_INTERLEAVE,
	} numa;
	int numa_node;
};

/* the arena node (memtier/arena.h) for cfg's NUMA placement */
int memtier_arena_node(const struct memtier_config *cfg);

/* Parse "eio:N" / "short:N" / "enospc:N" / "nodirect:1" (STRATA_FAULT)
 * into cfg; 0 or -EINVAL */
int memtier_fault_parse(const char *s, struct memtier_config *cfg);

struct memtier_tier_stats {
	uint64_t bytes_read;    /* bytes handed to compute (acquire/read_row) */
	uint64_t bytes_loaded;  /* bytes moved from the file into the tier */
	uint64_t bytes_written;
	int64_t load_ns;        /* time spent moving them */
	int64_t stall_ns;       /* time acquire waited */
	uint64_t n_acquire;
	uint64_t n_hit;         /* acquires that found their bytes landed */
	uint64_t n_miss;        /* acquires that had to wait for reads */
	uint64_t n_requests;    /* I/O requests submitted */
	int64_t req_ns;         /* sum of their submit-to-completion times */
	uint64_t qd_sum;        /* sum of queue depth at each submit */
	uint64_t qd_max;
};

/* a += b, counter by counter (qd_max: the larger); for summing the
 * instances of several units */
void memtier_stats_add(struct memtier_tier_stats *a,
		       const struct memtier_tier_stats *b);

struct memtier_flash; /* private: memtier/flash.c */
struct trace;

struct memtier {
	struct memtier_config cfg;
	int fd;
	uint32_t n_tensors;
	struct memtier_tensor *tensors;
	uint32_t n_segs;
	struct memtier_segment *segs; /* copies of the id lists */
	void **ptr;                   /* [n_tensors] resident address */
	struct arena arena;           /* dram: one mapping for all tensors */
	void *map;                    /* mmap: the whole file */
	size_t map_bytes;
	uint64_t *seg_bytes;          /* [n_segs] */
	struct memtier_flash *flash;  /* flash tier state */
	struct memtier_tier_stats stats[MEMTIER_KIND_COUNT];
};

/* Open path and place the tensors. Returns 0, or -errno with a message in
 * err (-ENOMEM when the arena cannot be had, -EIO / -errno on read
 * errors, -ENOTSUP for a tier not built yet). Tensors that share a file
 * range (a tied output) are stored once. Not thread-safe. */
int memtier_open(struct memtier *m, const struct memtier_config *cfg,
		 const char *path, const struct memtier_tensor *tensors,
		 uint32_t n_tensors, const struct memtier_segment *segs,
		 uint32_t n_segs, char *err, size_t errlen);
void memtier_close(struct memtier *m);

/* Make segment seg's tensors available: ptrs[i] for the segment's i-th
 * tensor, valid until memtier_release(seg). Returns 0 or -errno. Call from
 * one thread at a time. */
int memtier_acquire(struct memtier *m, uint32_t seg, const void **ptrs);
void memtier_release(struct memtier *m, uint32_t seg);

/* Copy row `row` of tensor id into dst (row_bytes bytes). Returns 0 or
 * -errno. Call from one thread at a time. */
int memtier_read_row(struct memtier *m, uint32_t id, int64_t row, void *dst);

/* Direct resident pointer to a whole tensor for bulk use (prefill), counted
 * as reading it. Returns NULL if the tier does not keep it resident. */
const void *memtier_tensor_ptr(struct memtier *m, uint32_t id);

/* The --dram-budget policy, pure: whole segments are kept resident in the
 * order a token reads them while they fit. Returns how many of the first
 * segments fit in budget; *bytes (may be NULL) their DRAM footprint. The
 * engine decides once for the whole model and gives every unit's instance
 * the budget of its share of those segments, so all units pin the same
 * layers. */
uint32_t memtier_budget_fit(const struct memtier_tensor *t,
			    const struct memtier_segment *segs, uint32_t n_segs,
			    uint64_t budget, uint64_t *bytes);

/* weight bytes this tier keeps in DRAM: the dram arena, the flash tier's
 * pinned segments, 0 for mmap (the page cache's, not ours) */
uint64_t memtier_resident_bytes(const struct memtier *m);

const char *memtier_kind_name(enum memtier_kind k);
/* "dram" / "flash" / "mmap" -> kind; -EINVAL if unknown */
int memtier_kind_parse(const char *s, enum memtier_kind *out);

#endif
