/*
 * stats.h - what a run measured, as a table on stderr and as JSON.
 * Every figure here is measured in the run that prints it.
 */
#ifndef STRATA_STATS_H
#define STRATA_STATS_H

#include <stdint.h>
#include <stdio.h>

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
	uint64_t decode_bytes[MEMTIER_KIND_COUNT]; /* weights read in decode */
	uint64_t decode_kv_bytes; /* KV-cache bytes attention read in decode */
	uint64_t decode_loaded[MEMTIER_KIND_COUNT]; /* moved from the file */
	double decode_stall_s[MEMTIER_KIND_COUNT]; /* acquire waited */
	uint64_t weight_bytes;
	uint64_t kv_bytes_alloc;
	uint64_t peak_rss_bytes;
	const int32_t *prompt;
	int32_t n_prompt;
	const int32_t *generated;
	int32_t n_generated;
	double perplexity; /* < 0: not computed */
};

/* median of n values (reorders v); 0 for n == 0 */
double stats_median(double *v, int64_t n);

/* peak resident set of this process in bytes (getrusage) */
uint64_t stats_peak_rss(void);

void stats_print_table(FILE *f, const struct run_stats *r);

/* Write JSON to path; returns 0 or -errno */
int stats_write_json(const char *path, const struct run_stats *r);

#endif
