/*
 * stats.h - what a run measured, as a table on stderr and as JSON.
 * Every figure here is measured in the run that prints it.
 */
#ifndef STRATA_STATS_H
#define STRATA_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/forward.h"
#include "memtier/memtier.h"

struct run_stats {
	const char *model_path;
	const char *model_name;
	const char *ftype;
	const char *tier;
	const char *isa;
	int n_threads;
	int32_t n_ctx;
	double load_s;
	int64_t prefill_tokens;
	double prefill_s;
	int64_t decode_tokens;
	double decode_s;
	double median_step_ms; /* median of per-token decode step times */
	/* weight traffic per tier during decode (differences of memtier's
	 * counters over the decode steps) */
	struct memtier_tier_stats tiers[MEMTIER_KIND_COUNT];
	uint64_t decode_kv_bytes; /* KV-cache bytes attention read in decode */
	/* the KV cache: where it lives and its transfers during decode */
	const char *kv_tier;
	int32_t kv_block;
	struct memtier_tier_stats kv;
	uint64_t kv_drive_bytes; /* size of the --flash-dir file system */
	uint64_t kv_write_bytes_per_token; /* K+V rows of one position, all
					    * layers: what flash takes per token */
	bool direct;             /* O_DIRECT (false: --no-direct) */
	bool act_f32;            /* --act f32: float activations */
	uint64_t weight_bytes;
	uint64_t dram_budget;    /* --dram-budget, UINT64_MAX: none */
	uint64_t resident_bytes; /* weights kept in DRAM under the budget */
	int prefetch;
	uint64_t kv_bytes_alloc;
	uint64_t peak_rss_bytes;
	const int32_t *prompt;
	int32_t n_prompt;
	const int32_t *generated;
	int32_t n_generated;
	double perplexity; /* < 0: not computed */
	/* near-memory units over the decode window */
	bool nmu_on;       /* false: --nmu off (unpinned, shared memory) */
	int n_nodes;
	int n_units;
	const struct engine_unit_report *units; /* [n_units], chip by chip */
	/* chips (--chips): the scheme, the emulated links and every chip's
	 * figures over the decode window; NULL chips: none gathered */
	int n_chips;
	const char *tp;
	double fabric_latency_us, fabric_gbps;
	const char *fabric_backend;  /* "shm" | "mpi" (NULL: shm) */
	const char *fabric_library;  /* MPI's version line, or "" */
	const struct engine_chip_report *chips; /* [n_chips] */
};

/* out = a - b, counter by counter (qd_max: a's) */
void stats_tier_delta(struct memtier_tier_stats *out,
		      const struct memtier_tier_stats *a,
		      const struct memtier_tier_stats *b);

/* median of n values (reorders v); 0 for n == 0 */
double stats_median(double *v, int64_t n);

/* peak resident set of this process in bytes (getrusage) */
uint64_t stats_peak_rss(void);

void stats_print_table(FILE *f, const struct run_stats *r);

/* Write JSON to path; returns 0 or -errno */
int stats_write_json(const char *path, const struct run_stats *r);

#endif
