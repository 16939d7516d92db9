/*
 * probe.h - private to bench/probe: the options and helpers probe.c (main,
 * DRAM, flash, KV-cache writes, the profile) shares with probe_kern.c
 * (kernel throughput).
 */
#ifndef STRATA_PROBE_H
#define STRATA_PROBE_H

#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/kern.h"
#include "memtier/arena.h"

#define MIB ((size_t)1 << 20)

struct probe_opts {
	const char *flash_dir;
	const char *out_path;  /* NULL: stdout */
	uint64_t file_bytes;   /* test file; a multiple of 4 MiB */
	uint64_t dram_bytes;   /* DRAM sum buffer */
	uint64_t seq_bytes;    /* per pass of one (block, QD) point ... */
	double seq_max_s;      /* ... or fewer once this much time is spent */
	int passes;            /* median of this many (DRAM and flash) */
	int lat_ops;           /* QD1 4 KiB reads for p50/p99 ... */
	double rand_max_s;     /* ... and the time cap of each random phase */
	int quick, no_flash, no_dram, no_kern, no_kv, no_sys, no_fabric;
	int no_small_pages;    /* skip the kernels on 4 KiB pages */
	int fabric_cpu[2];     /* --fabric-cpus A,B; -1: the first two allowed */
	int fabric_mpi;        /* --fabric mpi: the collectives over MPI, under
				* mpirun -np 2 (no floor, no pinning) */
	uint64_t kern_mask;    /* --kern-types: bit t = measure type t's matvec
				* and matmul; 0: every type */
	int n_shapes;          /* --kern-shapes T:RxC,..: a model's own */
	struct probe_shape { uint32_t type; int64_t rows, cols; } shapes[16];
	int n_shape_ws;        /* --kern-shape-ws MIB,..: their working sets */
	uint64_t shape_ws[4];  /* (0 given: the DRAM class's arena alone) */
	int shape_small_pages; /* --kern-shape-pages small: on 4 KiB pages */
};

/* true when --kern-types lets type t be measured */
static inline int probe_kern_wanted(const struct probe_opts *o, uint32_t t)
{
	return !o->kern_mask || (t < 64 && (o->kern_mask >> t & 1));
}

/*
 * A huge-page-backed arena of `bytes` (memtier/arena.h: rounded up to and
 * aligned on 2 MiB), every page first touched with `threads` threads, so no
 * page fault lands inside a timed region. Returns 0 or -errno; give it
 * back with arena_unmap.
 */
int probe_huge_alloc(struct arena *a, size_t bytes, int threads);

/* an arena of bytes on 4 KiB pages (MADV_NOHUGEPAGE whatever the THP
 * setting: as the page cache maps a file), every page touched once;
 * 0 or -errno. Give it back with arena_unmap. */
int probe_small_alloc(struct arena *a, size_t bytes);

/* AnonHugePages bytes of the mapping that holds p (/proc/self/smaps); 0
 * when it cannot be read */
uint64_t probe_thp_bytes(const void *p);

/* Pin each thread of an OpenMP team of n to its own CPU of `allowed`
 * (the pool keeps its threads, so the pinning holds for later regions of
 * n threads). The caller restores its own affinity afterwards. */
void probe_pin_team(const cpu_set_t *allowed, int n);

#define KERN_COLS 2048 /* elements a row: TinyLlama's n_embd */
#define KERN_MAX_TYPES 16
#define KERN_MAX_WS 6

/* one matrix size class of one type */
struct kern_point {
	int64_t rows;
	uint64_t bytes;       /* weights one call reads */
	double gbps[2];       /* [0]: one thread, [1]: all threads */
	double rows_per_s[2];
};

/* kernel throughput of every weight type on the active ISA */
struct probe_kern {
	enum kern_isa isa;
	int n_threads;              /* "all threads": the CPUs allowed */
	uint64_t l2_bytes, llc_bytes;
	const char *l2_src, *llc_src; /* "sysfs", "sysconf" or "assumed" */
	int n_types;
	uint32_t types[KERN_MAX_TYPES];
	uint64_t row_bytes[KERN_MAX_TYPES];
	uint64_t arena_bytes;       /* the DRAM class's copies: 4 x LLC */
	struct kern_point dram[KERN_MAX_TYPES]; /* from DRAM */
	struct kern_point l2[KERN_MAX_TYPES];   /* in L2, read again */
	/* the dram class with the copies in a smaller working set: what
	 * a model that (partly) fits the last-level cache gets */
	int n_ws;
	uint64_t ws_bytes[KERN_MAX_WS];
	struct kern_point ws[KERN_MAX_TYPES][KERN_MAX_WS];
	/* the same series, the arena's own size last, on 4 KiB pages
	 * (MADV_NOHUGEPAGE, as the page cache maps a file): what the mmap
	 * tier's weights get. small_pages: measured (--no-small-pages: not) */
	int small_pages;
	uint64_t thp_small_bytes;   /* of that arena in huge pages: 0 wanted */
	struct kern_point sp[KERN_MAX_TYPES][KERN_MAX_WS + 1];
	/* --kern-shapes: the matvec at a model's own matrix shapes, the
	 * copies rotating through each of the --kern-shape-ws working sets
	 * (ascending; an arena of the largest, on huge pages or with
	 * --kern-shape-pages small on 4 KiB ones): short rows and small
	 * matrices stream slower per byte than the 2048-column class above,
	 * and working sets past the TLB's reach slower than 512 MiB */
	int n_shapes, n_shape_ws, shape_small_pages;
	uint64_t shape_ws[4];
	struct kern_point shape[16][4];
	uint64_t shape_ws_bytes[16][4]; /* what the copies spanned */
	uint32_t shape_type[16];
	int64_t shape_cols[16];
};

/* Measure into *k (zeroed by the caller); restores the CPU affinity.
 * Returns 0 or -errno (-ENOMEM). Call after kern_init(). */
int probe_kern(const struct probe_opts *o, struct probe_kern *k);
/* the human table, to stderr */
void probe_kern_print(const struct probe_kern *k);
/* the profile's "kernels" member and its trailing ",\n"; null for NULL */
void probe_kern_json(FILE *f, const struct probe_kern *k);

/* ---- probe_sys.c: prefill matmul, the unit pool's barrier, sampler ---- */

#define PROBE_MM_TOKENS 64
#define PROBE_MAX_UNITS 64

/* the "mem" series: a 5632 x 2048 matrix (TinyLlama's gate/up), copies
 * rotating through PROBE_MM_MEM_MIB so each product streams its weights
 * from memory as prefill does, at batches of 16 .. 128 tokens */
#define PROBE_MM_NTOK 4
#define PROBE_MM_MEM_ROWS 5632
#define PROBE_MM_MEM_MIB 256
static const int probe_mm_tokens[PROBE_MM_NTOK] = { 16, 32, 64, 128 };

struct probe_mm {
	uint32_t type;
	double gmacs[2]; /* weight elements x tokens per second / 1e9:
			  * [0] one thread, [1] all threads */
	double mem_gmacs[PROBE_MM_NTOK][2]; /* the same, weights from memory,
					     * by probe_mm_tokens */
	double sp_gmacs[PROBE_MM_NTOK][2];  /* ... on 4 KiB pages */
};

/* the O(n) float ops of a layer and attention (kernels/ops.h), one
 * thread, data in cache as decode has it */
#define PROBE_ATT_HD 2   /* head_dim 64, 128 */
#define PROBE_ATT_POS 6  /* positions 16 .. 4096 */
enum probe_op { PROBE_OP_RMSNORM, PROBE_OP_ROPE, PROBE_OP_SILU, PROBE_OP_ADD,
		PROBE_OP_COPY, PROBE_OP_Q8A, PROBE_OP_Q8K, PROBE_OP_COUNT };
struct probe_ops {
	double ns_per_elem[PROBE_OP_COUNT]; /* at PROBE_OPS_N elements */
	int att_hd[PROBE_ATT_HD];
	int att_pos[PROBE_ATT_POS];
	double att_ns[PROBE_ATT_HD][PROBE_ATT_POS]; /* one ops_attn_head call,
						     * K/V in cache */
	double att_cold_ns[PROBE_ATT_HD][PROBE_ATT_POS]; /* K/V from memory */
};
#define PROBE_OPS_N 4096

struct probe_sys {
	struct probe_ops ops;
	int n_threads;
	int n_mm;
	int small_pages;                   /* sp_gmacs measured */
	struct probe_mm mm[KERN_MAX_TYPES];
	int n_bar;                         /* units 1 .. n_bar */
	double barrier_us[PROBE_MAX_UNITS]; /* mean per barrier, by units */
	double sampler_ns, greedy_ns;      /* per vocabulary entry */
};

/* Measure into *r (zeroed by the caller). Returns 0 or -errno with a
 * message in msg. Restores the CPU affinity. Call after kern_init(). */
int probe_sys(const struct probe_opts *o, struct probe_sys *r, char *msg,
	      size_t msglen);
void probe_sys_print(const struct probe_sys *r);
/* the profile's "matmul", "barrier" and "sampler" members, each with a
 * trailing ",\n"; null for NULL */
void probe_sys_json(FILE *f, const struct probe_sys *r);

/* ---- probe_fabric.c: the chip fabric between two processes ---------- */

#include "engine/fabric.h"

#define PROBE_FAB_MIN ((size_t)64)
#define PROBE_FAB_MAX ((size_t)4 << 20)
#define PROBE_FAB_SIZES 17 /* 64 B .. 4 MiB, powers of 2 */

/* one message size of one series */
struct probe_fab_point {
	uint64_t bytes;   /* S: the message (the allgather's whole row) */
	int iters;        /* timed samples */
	double p50_us, p99_us;
	double gbps;      /* bytes one process publishes / median */
};

struct probe_fabric {
	int cpu[2];       /* the two processes' CPUs */
	int n;            /* sizes */
	struct probe_fab_point floor[PROBE_FAB_SIZES]; /* one handoff */
	struct probe_fab_point coll[FABRIC_OP_COUNT][PROBE_FAB_SIZES];
	char skipped[160]; /* why not measured (one CPU), or "" */
	char backend[80];  /* "shm", or MPI's library ("Open MPI v4.1.4") */
	char host[2][64];  /* the two processes' hosts */
};

/* Measure into *r (zeroed by the caller): forks, so call it before any
 * thread exists. Returns 0 (r->skipped says when there was nothing to
 * measure on) or -errno with a message in msg. Restores the affinity. */
int probe_fabric(const struct probe_opts *o, struct probe_fabric *r, char *msg,
		 size_t msglen);
/* op's median at 8 KiB / the floor's; 0 when either is missing */
double probe_fabric_ratio(const struct probe_fabric *r, enum fabric_op op);
void probe_fabric_print(const struct probe_fabric *r);
/* the profile's "fabric" member and its trailing ",\n"; null for NULL */
void probe_fabric_json(FILE *f, const struct probe_fabric *r);

#endif
