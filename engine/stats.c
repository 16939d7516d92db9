/* stats.c - run report as a table and as JSON, see stats.h */
#include "engine/stats.h"

#include "engine/fabric.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

void stats_tier_delta(struct memtier_tier_stats *out,
		      const struct memtier_tier_stats *a,
		      const struct memtier_tier_stats *b)
{
	out->bytes_read = a->bytes_read - b->bytes_read;
	out->bytes_loaded = a->bytes_loaded - b->bytes_loaded;
	out->bytes_written = a->bytes_written - b->bytes_written;
	out->load_ns = a->load_ns - b->load_ns;
	out->stall_ns = a->stall_ns - b->stall_ns;
	out->n_acquire = a->n_acquire - b->n_acquire;
	out->n_hit = a->n_hit - b->n_hit;
	out->n_miss = a->n_miss - b->n_miss;
	out->n_requests = a->n_requests - b->n_requests;
	out->req_ns = a->req_ns - b->req_ns;
	out->qd_sum = a->qd_sum - b->qd_sum;
	out->qd_max = a->qd_max;
}

/* the transfers of b added to a: bytes_read (handed to compute), load
 * time and acquires stay a's */
static void tier_add(struct memtier_tier_stats *a,
		     const struct memtier_tier_stats *b)
{
	struct memtier_tier_stats t = *b;

	t.bytes_read = 0;
	t.load_ns = 0;
	t.n_acquire = 0;
	memtier_stats_add(a, &t);
}

double stats_median(double *v, int64_t n)
{
	if (n <= 0)
		return 0.0;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

uint64_t stats_peak_rss(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (uint64_t)ru.ru_maxrss * 1024;
}

static double per_s(double n, double s)
{
	return s > 0 ? n / s : 0.0;
}

/* KV bytes written per second of decode in steady state: every position's
 * K and V rows are written once (in whole blocks), so per token it is a
 * constant; a run's own count is quantized by the blocks it completed.
 * 0 unless the KV cache is on flash. */
static double kv_steady_write_rate(const struct run_stats *r)
{
	if (!r->kv_tier || strcmp(r->kv_tier, "flash"))
		return 0.0;
	return per_s((double)r->kv_write_bytes_per_token *
		     (double)r->decode_tokens, r->decode_s);
}

/* busy time of the slowest unit over the mean: 1 = perfectly balanced */
static double unit_imbalance(const struct run_stats *r)
{
	double mx = 0, sum = 0;

	for (int i = 0; i < r->n_units; i++) {
		sum += r->units[i].busy_s;
		mx = r->units[i].busy_s > mx ? r->units[i].busy_s : mx;
	}
	return sum > 0 ? mx / (sum / r->n_units) : 0.0;
}

/* mean time a unit waited at barriers, as a fraction of decode time */
static double barrier_fraction(const struct run_stats *r)
{
	double sum = 0;

	for (int i = 0; i < r->n_units; i++)
		sum += r->units[i].barrier_s;
	return r->n_units && r->decode_s > 0 ? sum / r->n_units / r->decode_s : 0;
}

/* activation and result bytes that crossed between units, per token */
static double moved_per_token(const struct run_stats *r)
{
	double sum = 0;

	for (int i = 0; i < r->n_units; i++)
		sum += (double)(r->units[i].act_bytes_in + r->units[i].result_bytes_out);
	return per_s(sum, (double)r->decode_tokens);
}

/* ---- the fabric --------------------------------------------------------- */

static void json_str(FILE *f, const char *s);

/* chip 0's fabric seconds per decode token (its calls' time) */
static double fabric_per_token(const struct run_stats *r)
{
	double s = 0;

	for (int o = 0; o < FABRIC_OP_COUNT; o++)
		s += r->chips[0].op[o].seconds;
	return per_s(s, (double)r->decode_tokens);
}

static void print_fabric(FILE *f, const struct run_stats *r)
{
	double n = (double)r->decode_tokens;

	if (r->n_chips <= 1 || !r->chips || r->decode_tokens <= 0)
		return;
	bool mpi = r->fabric_backend && !strcmp(r->fabric_backend, "mpi");
	fprintf(f, "fabric          %d chips, --tp %s, %s", r->n_chips, r->tp,
		mpi ? r->fabric_library : "shared memory");
	for (int c = 0; mpi && c < r->n_chips; c++)
		fprintf(f, "%s%s", c ? ", " : " on hosts ", r->chips[c].host);
	if (r->fabric_latency_us > 0)
		fprintf(f, " + %.2f us/hop emulated", r->fabric_latency_us);
	if (r->fabric_gbps > 0)
		fprintf(f, ", links capped at %.2f GB/s", r->fabric_gbps);
	fprintf(f, "; %.3f ms/token in collectives (%.1f%% of decode)\n",
		fabric_per_token(r) * 1e3,
		r->decode_s > 0 ? 100 * fabric_per_token(r) * n / r->decode_s : 0);
	fprintf(f, "  chip op         calls/tok  KiB/tok   p50 us   p99 us   max us"
		"  wait ms/tok   GB/s%s\n", mpi ? "   (wait: MPI does not say)" : "");
	for (int c = 0; c < r->n_chips; c++)
		for (int o = 0; o < FABRIC_OP_COUNT; o++) {
			const struct engine_fabric_op *op = &r->chips[c].op[o];
			if (!op->count)
				continue;
			char wait[32] = "           -";
			if (op->wait_s >= 0)
				snprintf(wait, sizeof(wait), "%12.3f",
					 op->wait_s / n * 1e3);
			fprintf(f, "  %4d %-10s %9.1f %8.1f %8.2f %8.2f %8.1f %s "
				"%6.2f\n", c, fabric_op_name((enum fabric_op)o),
				(double)op->count / n, (double)op->bytes / n / 1024,
				op->p50_us, op->p99_us, op->max_us, wait,
				op->seconds > 0 ? (double)op->bytes / op->seconds / 1e9 : 0);
		}
}

/* "fabric": {chips, tp, ops (chip 0's), seconds_per_token, per_chip} */
static void json_fabric_ops(FILE *f, const struct engine_chip_report *c)
{
	fputc('{', f);
	for (int o = 0, k = 0; o < FABRIC_OP_COUNT; o++) {
		const struct engine_fabric_op *op = &c->op[o];
		char wait[32] = "null"; /* MPI: not measured */
		if (op->wait_s >= 0)
			snprintf(wait, sizeof(wait), "%.6f", op->wait_s);
		fprintf(f, "%s\"%s\":{\"count\":%llu,\"bytes\":%llu,"
			"\"seconds\":%.6f,\"p50_us\":%.3f,\"p99_us\":%.3f,"
			"\"max_us\":%.3f,\"wait_seconds\":%s,\"gbps\":%.4f,"
			"\"hist_log2_ns\":[", k++ ? "," : "",
			fabric_op_name((enum fabric_op)o),
			(unsigned long long)op->count, (unsigned long long)op->bytes,
			op->seconds, op->p50_us, op->p99_us, op->max_us, wait,
			op->seconds > 0 ? (double)op->bytes / op->seconds / 1e9 : 0);
		for (int b = 0; b < 40; b++)
			fprintf(f, "%s%llu", b ? "," : "", (unsigned long long)op->hist[b]);
		fprintf(f, "]}");
	}
	fputc('}', f);
}

static void json_fabric(FILE *f, const struct run_stats *r)
{
	if (!r->chips)
		return;
	fprintf(f, ",\"fabric\":{\"chips\":%d,\"tp\":\"%s\",\"backend\":"
		"\"%s\",\"library\":", r->n_chips, r->tp ? r->tp : "rows",
		r->fabric_backend ? r->fabric_backend : "shm");
	json_str(f, r->fabric_library ? r->fabric_library : "");
	fprintf(f, ",\"latency_us\":%.3f,\"gbps\":%.3f,\"ops\":",
		r->fabric_latency_us, r->fabric_gbps);
	json_fabric_ops(f, &r->chips[0]);
	fprintf(f, ",\"seconds_per_token\":%.9f,\"per_chip\":[",
		r->n_chips > 1 ? fabric_per_token(r) : 0.0);
	for (int c = 0; c < r->n_chips; c++) {
		fprintf(f, "%s{\"chip\":%d,\"host\":", c ? "," : "", c);
		json_str(f, r->chips[c].host);
		fprintf(f, ",\"pid\":%d,\"units\":%d,"
			"\"peak_rss_bytes\":%llu,\"ops\":",
			r->chips[c].pid, r->chips[c].n_units,
			(unsigned long long)r->chips[c].peak_rss_bytes);
		json_fabric_ops(f, &r->chips[c]);
		fputc('}', f);
	}
	fprintf(f, "]}");
}

static void print_units(FILE *f, const struct run_stats *r)
{
	double n = (double)r->decode_tokens;

	if (!r->n_units || !r->units || r->decode_tokens <= 0)
		return;
	fprintf(f, "units           %d %s on %d node(s); per decode token: "
		"imbalance %.3f (max/mean busy), barriers %.1f%% of decode time, "
		"%.1f KiB moved between units\n", r->n_units,
		r->nmu_on ? "near-memory units (pinned, own shards)"
			  : "threads (--nmu off: unpinned, shared memory)",
		r->n_nodes, unit_imbalance(r), 100.0 * barrier_fraction(r),
		moved_per_token(r) / 1024);
	fprintf(f, "  %sunit  cpu node  weights MiB  act-in KiB  out KiB  "
		"compute ms  stall ms  barrier ms (n, p50/p99 us)\n",
		r->n_chips > 1 ? "chip " : "");
	for (int i = 0; i < r->n_units; i++) {
		const struct engine_unit_report *u = &r->units[i];
		if (r->n_chips > 1)
			fprintf(f, "  %4d", u->chip);
		fprintf(f, "  %4d %4d %4d  %11.2f %11.1f %8.1f %11.3f %9.3f %10.3f "
			"(%.0f, %.1f/%.1f)\n", u->unit, u->cpu, u->node,
			(double)u->weight_bytes / n / (1 << 20),
			(double)u->act_bytes_in / n / 1024,
			(double)u->result_bytes_out / n / 1024,
			(u->busy_s - u->stall_s) / n * 1e3, u->stall_s / n * 1e3,
			u->barrier_s / n * 1e3, (double)u->n_barriers / n,
			u->barrier_p50_us, u->barrier_p99_us);
	}
}

void stats_print_table(FILE *f, const struct run_stats *r)
{
	fprintf(f, "\n--- strata stats (measured in this run) ---\n");
	fprintf(f, "model           %s (%s, %.1f MiB of weights)\n", r->model_name,
		r->ftype, (double)r->weight_bytes / (1 << 20));
	fprintf(f, "tier            %s (weights), %s (KV)   kernels %s%s   "
		"threads %d   ctx %d\n", r->tier, r->kv_tier, r->isa,
		r->act_f32 ? " (--act f32)" : "", r->n_threads, r->n_ctx);
	fprintf(f, "load            %8.3f s\n", r->load_s);
	fprintf(f, "prefill         %8lld tokens  %8.3f s  %8.2f tok/s\n",
		(long long)r->prefill_tokens, r->prefill_s,
		per_s((double)r->prefill_tokens, r->prefill_s));
	fprintf(f, "decode          %8lld tokens  %8.3f s  %8.2f tok/s  "
		"(median step %.2f ms = %.2f tok/s)\n",
		(long long)r->decode_tokens, r->decode_s,
		per_s((double)r->decode_tokens, r->decode_s), r->median_step_ms,
		r->median_step_ms > 0 ? 1000.0 / r->median_step_ms : 0.0);
	for (int k = 0; k < MEMTIER_KIND_COUNT; k++) {
		const struct memtier_tier_stats *t = &r->tiers[k];
		if (!t->bytes_read)
			continue;
		double bpt = per_s((double)t->bytes_read, (double)r->decode_tokens);
		fprintf(f, "%-5s weights   %8.1f MiB/token  %8.2f GB/s achieved\n",
			memtier_kind_name((enum memtier_kind)k), bpt / (1 << 20),
			per_s((double)t->bytes_read, r->decode_s) / 1e9);
		if (t->bytes_loaded)
			fprintf(f, "%-5s I/O       %8.1f MiB/token  %8.2f GB/s, "
				"stalled %.3f s of %.3f s, prefetch hit %llu / "
				"miss %llu, queue depth mean %.1f max %llu, request "
				"submit-to-reap mean %.0f us%s\n",
				memtier_kind_name((enum memtier_kind)k),
				per_s((double)t->bytes_loaded,
				      (double)r->decode_tokens) / (1 << 20),
				per_s((double)t->bytes_loaded, r->decode_s) / 1e9,
				(double)t->stall_ns / 1e9, r->decode_s,
				(unsigned long long)t->n_hit,
				(unsigned long long)t->n_miss,
				per_s((double)t->qd_sum, (double)t->n_requests),
				(unsigned long long)t->qd_max,
				per_s((double)t->req_ns / 1e3, (double)t->n_requests),
				r->direct ? "" : " (buffered: --no-direct)");
	}
	if (r->decode_kv_bytes)
		fprintf(f, "kv cache read   %8.1f MiB/token  (%s, blocks of %d "
			"tokens)\n",
			per_s((double)r->decode_kv_bytes, (double)r->decode_tokens) /
				(1 << 20), r->kv_tier, r->kv_block);
	if (r->kv_tier && !strcmp(r->kv_tier, "flash")) {
		const struct memtier_tier_stats *t = &r->kv;
		double wps = kv_steady_write_rate(r);
		fprintf(f, "kv flash I/O    read %.1f KiB/token %.2f GB/s, stalled "
			"%.3f s, prefetch hit %llu / miss %llu\n",
			per_s((double)t->bytes_loaded, (double)r->decode_tokens) / 1024,
			per_s((double)t->bytes_loaded, r->decode_s) / 1e9,
			(double)t->stall_ns / 1e9, (unsigned long long)t->n_hit,
			(unsigned long long)t->n_miss);
		fprintf(f, "kv flash writes %8.1f KiB/token in this run (whole "
			"blocks); steady state %.1f KiB/token = %.2f MB/s at this "
			"tok/s", per_s((double)t->bytes_written,
				       (double)r->decode_tokens) / 1024,
			(double)r->kv_write_bytes_per_token / 1024, wps / 1e6);
		if (r->kv_drive_bytes)
			fprintf(f, " = %.2f drive writes/day of this %.0f GB "
				"drive, decoding all day",
				wps * 86400.0 / (double)r->kv_drive_bytes,
				(double)r->kv_drive_bytes / 1e9);
		fprintf(f, "\n");
	}
	print_units(f, r);
	print_fabric(f, r);
	fprintf(f, "peak RSS        %8.1f MiB   (KV cache reserved %.1f MiB)\n",
		(double)r->peak_rss_bytes / (1 << 20),
		(double)r->kv_bytes_alloc / (1 << 20));
	if (r->perplexity >= 0)
		fprintf(f, "perplexity      %8.4f\n", r->perplexity);
}

/* JSON string with the escapes JSON needs */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

static void json_ids(FILE *f, const int32_t *ids, int32_t n)
{
	fputc('[', f);
	for (int32_t i = 0; i < n; i++)
		fprintf(f, "%s%d", i ? "," : "", ids[i]);
	fputc(']', f);
}

/* "nmu": one object per unit over the decode window; "nmu_summary" */
static void json_units(FILE *f, const struct run_stats *r)
{
	fprintf(f, ",\"nmu\":[");
	for (int i = 0; i < r->n_units && r->units; i++) {
		const struct engine_unit_report *u = &r->units[i];
		fprintf(f, "%s{\"chip\":%d,\"unit\":%d,\"cpu\":%d,\"node\":%d,"
			"\"weight_bytes\":%llu,\"act_bytes_in\":%llu,"
			"\"result_bytes_out\":%llu,\"foreign_rows\":%llu,"
			"\"compute_seconds\":%.6f,\"barrier_seconds\":%.6f,"
			"\"stall_seconds\":%.6f,\"barriers\":%llu,"
			"\"barrier_wait_p50_us\":%.3f,\"barrier_wait_p99_us\":%.3f}",
			i ? "," : "", u->chip, u->unit, u->cpu, u->node,
			(unsigned long long)u->weight_bytes,
			(unsigned long long)u->act_bytes_in,
			(unsigned long long)u->result_bytes_out,
			(unsigned long long)u->foreign_rows,
			u->busy_s - u->stall_s, u->barrier_s, u->stall_s,
			(unsigned long long)u->n_barriers, u->barrier_p50_us,
			u->barrier_p99_us);
	}
	fprintf(f, "],\"nmu_summary\":{\"mode\":\"%s\",\"units\":%d,"
		"\"nodes\":%d,\"imbalance\":%.4f,\"barrier_fraction\":%.4f,"
		"\"moved_bytes_per_token\":%.1f}", r->nmu_on ? "on" : "off",
		r->n_units, r->n_nodes, unit_imbalance(r), barrier_fraction(r),
		moved_per_token(r));
}

int stats_write_json(const char *path, const struct run_stats *r)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "{\"model\":");
	json_str(f, r->model_path);
	fprintf(f, ",\"model_name\":");
	json_str(f, r->model_name);
	fprintf(f, ",\"ftype\":");
	json_str(f, r->ftype);
	fprintf(f, ",\"tier\":");
	json_str(f, r->tier);
	fprintf(f, ",\"kernels\":");
	json_str(f, r->isa);
	fprintf(f, ",\"threads\":%d,\"n_ctx\":%d,\"load_seconds\":%.6f",
		r->n_threads, r->n_ctx, r->load_s);
	fprintf(f, ",\"weight_bytes\":%llu,\"peak_rss_bytes\":%llu",
		(unsigned long long)r->weight_bytes,
		(unsigned long long)r->peak_rss_bytes);
	if (r->dram_budget != UINT64_MAX)
		fprintf(f, ",\"dram_budget_bytes\":%llu",
			(unsigned long long)r->dram_budget);
	else
		fprintf(f, ",\"dram_budget_bytes\":null");
	fprintf(f, ",\"resident_bytes\":%llu,\"prefetch\":%d,"
		"\"kv_dram_bytes\":%llu", (unsigned long long)r->resident_bytes,
		r->prefetch, (unsigned long long)r->kv_bytes_alloc);
	fprintf(f, ",\"prefill\":{\"tokens\":%lld,\"seconds\":%.6f,"
		"\"tok_per_s\":%.4f}",
		(long long)r->prefill_tokens, r->prefill_s,
		per_s((double)r->prefill_tokens, r->prefill_s));
	fprintf(f, ",\"decode\":{\"tokens\":%lld,\"seconds\":%.6f,"
		"\"tok_per_s\":%.4f,\"median_step_ms\":%.4f}",
		(long long)r->decode_tokens, r->decode_s,
		per_s((double)r->decode_tokens, r->decode_s), r->median_step_ms);
	fprintf(f, ",\"act\":\"%s\"", r->act_f32 ? "f32" : "q8");
	fprintf(f, ",\"direct_io\":%s,\"tiers\":{", r->direct ? "true" : "false");
	int first = 1;
	bool kv_flash = r->kv_tier && !strcmp(r->kv_tier, "flash");
	for (int k = 0; k < MEMTIER_KIND_COUNT; k++) {
		/* bytes_read: weights handed to compute; the transfers (loaded,
		 * written, stall, requests) are the whole device's, the KV
		 * cache's included when it lives there (kv.* has its part) */
		struct memtier_tier_stats tt = r->tiers[k], *t = &tt;
		if (k == MEMTIER_FLASH && kv_flash)
			tier_add(t, &r->kv);
		uint64_t written = t->bytes_written;
		if (!t->bytes_read && !t->bytes_loaded && !t->bytes_written &&
		    !t->n_requests && k != MEMTIER_DRAM)
			continue;
		fprintf(f, "%s\"%s\":{\"bytes_read\":%llu,\"bytes_per_token\":%.1f,"
			"\"gbps\":%.4f,\"bytes_loaded\":%llu,\"io_gbps\":%.4f,"
			"\"bytes_written\":%llu,\"stall_seconds\":%.6f,"
			"\"prefetch_hits\":%llu,\"prefetch_misses\":%llu,"
			"\"requests\":%llu,\"submit_to_reap_us_mean\":%.1f,"
			"\"queue_depth_mean\":%.2f,\"queue_depth_max\":%llu}",
			first ? "" : ",",
			memtier_kind_name((enum memtier_kind)k),
			(unsigned long long)t->bytes_read,
			per_s((double)t->bytes_read, (double)r->decode_tokens),
			per_s((double)t->bytes_read, r->decode_s) / 1e9,
			(unsigned long long)t->bytes_loaded,
			per_s((double)t->bytes_loaded, r->decode_s) / 1e9,
			(unsigned long long)written, (double)t->stall_ns / 1e9,
			(unsigned long long)t->n_hit, (unsigned long long)t->n_miss,
			(unsigned long long)t->n_requests,
			per_s((double)t->req_ns / 1e3, (double)t->n_requests),
			per_s((double)t->qd_sum, (double)t->n_requests),
			(unsigned long long)t->qd_max);
		first = 0;
	}
	const struct memtier_tier_stats *kv = &r->kv;
	double wps = kv_steady_write_rate(r);
	fprintf(f, "},\"kv\":{\"tier\":");
	json_str(f, r->kv_tier);
	fprintf(f, ",\"block_tokens\":%d,\"bytes_read\":%llu,"
		"\"bytes_per_token\":%.1f,\"bytes_loaded\":%llu,"
		"\"io_gbps\":%.4f,\"bytes_written\":%llu,"
		"\"bytes_written_per_token\":%.1f,"
		"\"steady_bytes_written_per_token\":%llu,"
		"\"steady_write_bytes_per_s\":%.1f,\"stall_seconds\":%.6f,"
		"\"prefetch_hits\":%llu,\"prefetch_misses\":%llu,"
		"\"drive_bytes\":%llu,\"drive_writes_per_day\":%.6f}",
		r->kv_block, (unsigned long long)r->decode_kv_bytes,
		per_s((double)r->decode_kv_bytes, (double)r->decode_tokens),
		(unsigned long long)kv->bytes_loaded,
		per_s((double)kv->bytes_loaded, r->decode_s) / 1e9,
		(unsigned long long)kv->bytes_written,
		per_s((double)kv->bytes_written, (double)r->decode_tokens),
		(unsigned long long)r->kv_write_bytes_per_token, wps,
		(double)kv->stall_ns / 1e9, (unsigned long long)kv->n_hit,
		(unsigned long long)kv->n_miss,
		(unsigned long long)r->kv_drive_bytes,
		r->kv_drive_bytes ? wps * 86400.0 / (double)r->kv_drive_bytes : 0.0);
	if (r->perplexity >= 0 && isfinite(r->perplexity))
		fprintf(f, ",\"perplexity\":%.6f", r->perplexity);
	else if (r->perplexity >= 0)
		fprintf(f, ",\"perplexity\":null"); /* inf: JSON has none */
	json_units(f, r);
	json_fabric(f, r);
	fprintf(f, ",\"tokens\":{\"prompt\":");
	json_ids(f, r->prompt, r->n_prompt);
	fprintf(f, ",\"generated\":");
	json_ids(f, r->generated, r->n_generated);
	fprintf(f, "}}\n");
	if (ferror(f)) {
		fclose(f);
		return -EIO;
	}
	return fclose(f) ? -errno : 0;
}
