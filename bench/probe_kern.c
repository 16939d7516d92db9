/*
 * probe_kern.c - bench/probe's kernel figures (bench/probe.h).
 *
 * The decode matvec of every weight type on the active ISA, rows of 2048
 * elements, with one thread and with all (pinned one per CPU): GB/s of
 * weights and rows/s, in two classes:
 *   dram  8 MiB matrices (a layer tensor's size), each call on the next
 *         of the copies that fill an arena of four times the last-level
 *         cache, so no call finds its matrix in any cache;
 *   l2    one matrix of a quarter of L2, read again and again: the
 *         kernel's compute rate.
 *   ws    the dram class again with the copies spanning 16 .. 256 MiB
 *         only: on a machine whose last-level cache holds part of
 *         that, the rate a model of that many bytes a token gets.
 * Where dram is close to l2, the type is compute-bound; where dram is
 * near the DRAM read figure, memory-bound. Calls of 8 MiB rather than one
 * matrix larger than the LLC: a call of several milliseconds is often cut
 * by the host on a shared VM, and the median of short calls is steadier.
 *
 * Cache sizes come from sysfs, else sysconf (cpuid), else an assumption;
 * the profile says which.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench/mvbench.h"
#include "bench/probe.h"
#include "kernels/kern.h"

/* first line of a small file into buf, newline cut; 0 or -1 */
static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	int ok = f && fgets(buf, (int)len, f);

	if (f)
		fclose(f);
	if (!ok)
		return -1;
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/*
 * Bytes of CPU 0's level-2 or level-3 data cache: sysfs, else sysconf
 * (cpuid), else an assumption; *src names which. CPUID's L3 figure is
 * ignored above 256 MiB: VMs misreport it (508 MiB and 320 MiB for a 32
 * MiB L3 on the project's machines, MACHINE.md).
 */
static void cache_size(int level, uint64_t *bytes, const char **src)
{
	char path[96], buf[64], unit = 0;
	unsigned long long v;
	long sc;

	for (int i = 0; i < 8; i++) {
		snprintf(path, sizeof(path),
			 "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
		if (read_line(path, buf, sizeof(buf)) || atoi(buf) != level)
			continue;
		snprintf(path, sizeof(path),
			 "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
		if (read_line(path, buf, sizeof(buf)) || !strcmp(buf, "Instruction"))
			continue;
		snprintf(path, sizeof(path),
			 "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
		if (read_line(path, buf, sizeof(buf)) ||
		    sscanf(buf, "%llu%c", &v, &unit) < 1 || v == 0)
			continue;
		*bytes = v << (unit == 'K' ? 10 : unit == 'M' ? 20 : 0);
		*src = "sysfs";
		return;
	}
	sc = sysconf(level == 2 ? _SC_LEVEL2_CACHE_SIZE : _SC_LEVEL3_CACHE_SIZE);
	if (sc > 0 && (uint64_t)sc <= (level == 2 ? 16 : 256) * MIB) {
		*bytes = (uint64_t)sc;
		*src = "sysconf";
		return;
	}
	*bytes = level == 2 ? 512 * 1024 : 32 * MIB;
	*src = "assumed";
}

/* the two thread counts: 1 and every CPU allowed (once if that is 1) */
static int kern_nth(const struct probe_kern *r, int i)
{
	return i == 0 ? 1 : r->n_threads;
}

/*
 * Time one matrix class of one type: the matrix m, with one thread and
 * with all (pinned one per CPU), into *pt. Returns 0 or -ENOMEM.
 */
static int kern_point_run(const struct probe_kern *r, const cpu_set_t *allowed,
			  const struct mvbench_mat *m, const struct kern_ops *ops,
			  const void *act, struct mvbench_run run,
			  struct kern_point *pt)
{
	float *y = malloc((size_t)m->rows * sizeof(float));

	if (!y)
		return -ENOMEM;
	pt->rows = m->rows;
	pt->bytes = m->bytes;
	for (int i = 0; i < (r->n_threads > 1 ? 2 : 1); i++) {
		double s;

		run.nth = kern_nth(r, i);
		probe_pin_team(allowed, run.nth);
		s = mvbench_time(m, ops, act, y, &run);
		if (s <= 0) {
			free(y);
			return -ENOMEM;
		}
		pt->gbps[i] = (double)m->bytes / s * 1e-9;
		pt->rows_per_s[i] = (double)m->rows / s;
	}
	free(y);
	return 0;
}

/* One type: fill and time the DRAM class's copies, then the L2-sized
 * matrix at the start of the same arena. Returns 0 or -errno. */
static int kern_type_run(const struct probe_opts *o, struct probe_kern *r,
			 const cpu_set_t *allowed, int i, uint8_t *arena,
			 uint8_t *small, uint64_t dram_target, uint64_t l2_target)
{
	uint32_t t = r->types[i];
	const struct kern_ops *ops = kern_ops_isa(r->isa, t);
	int64_t rb = kern_row_bytes(t, KERN_COLS);
	int64_t min_rows = r->n_threads; /* a row for every thread */
	int64_t l2_rows = (int64_t)l2_target / rb;
	struct mvbench_mat m;
	void *act = mvbench_act(t, r->isa, KERN_COLS);
	struct mvbench_run run = { .warm = 1, .min_iters = 3,
				   .max_s = o->quick ? 0.2 : 0.5 };
	int err;

	if (!act)
		return -ENOMEM;
	r->row_bytes[i] = (uint64_t)rb;
	/* each call on the next copy: all the others (an arena of 4 x LLC,
	 * 128-512 MiB) have been read since this one was */
	err = mvbench_fill(&m, arena, r->arena_bytes, t,
			   (int64_t)(dram_target / (uint64_t)rb), KERN_COLS);
	if (!err) {
		run.reps = 1;
		run.iters = o->quick ? 9 : 21;
		err = kern_point_run(r, allowed, &m, ops, act, run, &r->dram[i]);
	}
	/* the same calls with the copies in working sets of 16 .. 256 MiB */
	for (int w = 0; w < r->n_ws && !err; w++) {
		err = mvbench_fill(&m, arena, r->ws_bytes[w], t,
				   (int64_t)(dram_target / (uint64_t)rb), KERN_COLS);
		if (!err) {
			run.reps = 1;
			run.iters = o->quick ? 9 : 21;
			run.max_s = o->quick ? 0.1 : 0.25;
			err = kern_point_run(r, allowed, &m, ops, act, run, &r->ws[i][w]);
		}
	}
	/* the series again on 4 KiB pages (the mmap tier), the whole small
	 * arena last */
	for (int w = 0; r->small_pages && w <= r->n_ws && !err; w++) {
		err = mvbench_fill(&m, small, w < r->n_ws ? r->ws_bytes[w] : r->arena_bytes,
				   t, (int64_t)(dram_target / (uint64_t)rb), KERN_COLS);
		if (!err) {
			run.reps = 1;
			run.iters = o->quick ? 9 : 21;
			run.max_s = o->quick ? 0.1 : 0.25;
			err = kern_point_run(r, allowed, &m, ops, act, run, &r->sp[i][w]);
		}
	}
	run.max_s = o->quick ? 0.2 : 0.5;
	/* one copy, read again and again: samples of many calls, so a
	 * sample is far longer than the barriers around it */
	if (l2_rows < min_rows)
		l2_rows = min_rows;
	if (!err)
		err = mvbench_fill(&m, arena, (size_t)(l2_rows * rb), t, l2_rows,
				   KERN_COLS);
	if (!err) {
		uint64_t per_sample = (o->quick ? 16 : 64) * MIB;

		run.reps = (int)(per_sample / m.bytes > 1 ? per_sample / m.bytes : 1);
		run.iters = o->quick ? 5 : 9;
		err = kern_point_run(r, allowed, &m, ops, act, run, &r->l2[i]);
	}
	free(act);
	return err;
}

/* one copy of a --kern-shapes matrix, rounded up to a 4 KiB page */
static size_t shape_copy_bytes(const struct probe_shape *sh)
{
	return ((size_t)kern_row_bytes(sh->type, sh->cols) * (size_t)sh->rows +
		4095) / 4096 * 4096;
}

/* The --kern-shapes matvecs: each shape with its copies rotating through
 * each working set (at least one copy), in an arena of the largest of
 * them mapped for these alone. Returns 0 or -errno. */
static int kern_shapes_run(const struct probe_opts *o, struct probe_kern *r,
			   const cpu_set_t *allowed)
{
	struct mvbench_run run = { .warm = 2, .reps = 1, .min_iters = 31,
				   .iters = o->quick ? 101 : 301,
				   .max_s = o->quick ? 0.06 : 0.12 };
	struct arena mem = { 0 };
	size_t most = 0;
	int err = 0;

	r->n_shapes = o->n_shapes;
	r->shape_small_pages = o->shape_small_pages;
	r->n_shape_ws = o->n_shape_ws ? o->n_shape_ws : 1;
	for (int w = 0; w < r->n_shape_ws; w++)
		r->shape_ws[w] = o->n_shape_ws ? o->shape_ws[w] : r->arena_bytes;
	for (int s = 0; s < o->n_shapes; s++) {
		size_t one = shape_copy_bytes(&o->shapes[s]);
		r->shape_type[s] = o->shapes[s].type;
		r->shape_cols[s] = o->shapes[s].cols;
		most = one > most ? one : most;
	}
	if (r->shape_ws[r->n_shape_ws - 1] > most)
		most = r->shape_ws[r->n_shape_ws - 1];
	err = r->shape_small_pages ? probe_small_alloc(&mem, most)
				   : probe_huge_alloc(&mem, most, r->n_threads);
	if (err)
		return err;
	for (int s = 0; s < o->n_shapes && !err; s++) {
		const struct probe_shape *sh = &o->shapes[s];
		const struct kern_ops *ops = kern_ops_isa(r->isa, sh->type);
		void *act = ops ? mvbench_act(sh->type, r->isa, sh->cols) : NULL;
		struct mvbench_mat m;

		if (!act) {
			err = ops ? -ENOMEM : -EINVAL;
			break;
		}
		fprintf(stderr, "\rkernels: %s %lldx%lld ...",
			kern_type_info(sh->type)->name, (long long)sh->rows,
			(long long)sh->cols);
		for (int w = 0; w < r->n_shape_ws && !err; w++) {
			size_t ws = r->shape_ws[w] < mem.bytes ? r->shape_ws[w] : mem.bytes;
			size_t one = shape_copy_bytes(sh);
			if (ws < one)
				ws = one;
			err = mvbench_fill(&m, mem.base, ws, sh->type, sh->rows, sh->cols);
			/* calls back to back on the next copies, ~2 MiB a sample,
			 * as a phase's matvecs run between the engine's barriers
			 * (which the simulator counts on their own): the
			 * barriers around one short call are not its time */
			run.reps = err ? 1 : (int)((2 * MIB) / m.bytes);
			run.reps = run.reps < 1 ? 1 : run.reps > m.copies ? (int)m.copies
				   : run.reps;
			if (!err)
				err = kern_point_run(r, allowed, &m, ops, act, run,
						     &r->shape[s][w]);
			r->shape_ws_bytes[s][w] = err ? 0 : (uint64_t)m.copies * m.stride;
		}
		free(act);
	}
	arena_unmap(&mem);
	return err;
}

int probe_small_alloc(struct arena *a, size_t bytes)
{
	struct arena_config ac = {.bytes = bytes, .huge_pages = false, .node = -1};
	char msg[160];
	int err = arena_map(a, &ac, msg, sizeof(msg));

	if (err)
		return err;
	madvise(a->base, a->bytes, MADV_NOHUGEPAGE);
	for (size_t off = 0; off < a->bytes; off += 4096)
		((volatile uint8_t *)a->base)[off] = 1;
	return 0;
}

/*
 * Kernel throughput of every weight type on the active ISA into *r.
 * Restores the caller's CPU affinity. Returns 0 or -errno.
 */
int probe_kern(const struct probe_opts *o, struct probe_kern *r)
{
	cpu_set_t allowed;
	uint64_t dram_target = 8 * MIB, l2_target;
	struct arena mem = {0}, small = {0};
	uint8_t *arena = NULL;
	int err;

	sched_getaffinity(0, sizeof(allowed), &allowed);
	r->isa = kern_isa_active();
	r->n_threads = CPU_COUNT(&allowed);
	cache_size(2, &r->l2_bytes, &r->l2_src);
	cache_size(3, &r->llc_bytes, &r->llc_src);
	r->arena_bytes = 4 * r->llc_bytes;
	r->arena_bytes = r->arena_bytes < 128 * MIB ? 128 * MIB
			 : r->arena_bytes > 512 * MIB ? 512 * MIB : r->arena_bytes;
	l2_target = r->l2_bytes / 4;
	l2_target = l2_target < 32 * 1024 ? 32 * 1024
		    : l2_target > 512 * 1024 ? 512 * 1024 : l2_target;
	for (uint64_t ws = 16 * MIB; ws < r->arena_bytes && r->n_ws < KERN_MAX_WS; ws *= 2)
		r->ws_bytes[r->n_ws++] = ws;
	for (uint32_t t = 0; t < KT_COUNT && r->n_types < KERN_MAX_TYPES; t++)
		if (kern_ops_isa(r->isa, t) && kern_row_bytes(t, KERN_COLS) > 0 &&
		    probe_kern_wanted(o, t))
			r->types[r->n_types++] = t;
	err = probe_huge_alloc(&mem, r->arena_bytes, r->n_threads);
	arena = mem.base;
	if (err)
		return err;
	if (!o->no_small_pages) {
		err = probe_small_alloc(&small, r->arena_bytes);
		if (err) {
			arena_unmap(&mem);
			return err;
		}
		r->small_pages = 1;
		r->thp_small_bytes = probe_thp_bytes(small.base);
	}
	for (int i = 0; i < r->n_types && !err; i++) {
		fprintf(stderr, "\rkernels: %-5s ...",
			kern_type_info(r->types[i])->name);
		err = kern_type_run(o, r, &allowed, i, arena, small.base, dram_target,
				    l2_target);
	}
	arena_unmap(&small);
	arena_unmap(&mem);
	if (!err && o->n_shapes)
		err = kern_shapes_run(o, r, &allowed);
	fprintf(stderr, "\n");
	sched_setaffinity(0, sizeof(allowed), &allowed);
	return err;
}

void probe_kern_print(const struct probe_kern *k)
{
	int two = k->n_threads > 1;

	fprintf(stderr, "\nmatvec (%s kernels, rows of %d; from DRAM: ~%llu MiB "
		"matrices rotating through %llu MiB, LLC %llu MiB (%s); in L2: "
		"~%llu KiB, L2 %llu KiB (%s))\n", kern_isa_name(k->isa), KERN_COLS,
		(unsigned long long)(k->dram[0].bytes / MIB),
		(unsigned long long)(k->arena_bytes / MIB),
		(unsigned long long)(k->llc_bytes / MIB), k->llc_src,
		(unsigned long long)(k->l2[0].bytes / 1024),
		(unsigned long long)(k->l2_bytes / 1024), k->l2_src);
	fprintf(stderr, "  type    DRAM GB/s 1t%s   L2 GB/s 1t%s\n",
		two ? "   all" : "", two ? "   all" : "");
	for (int i = 0; i < k->n_types; i++) {
		fprintf(stderr, "  %-5s %10.1f", kern_type_info(k->types[i])->name,
			k->dram[i].gbps[0]);
		if (two)
			fprintf(stderr, " %6.1f", k->dram[i].gbps[1]);
		fprintf(stderr, " %13.1f", k->l2[i].gbps[0]);
		if (two)
			fprintf(stderr, " %6.1f", k->l2[i].gbps[1]);
		fputc('\n', stderr);
	}
	for (int s = 0; s < k->n_shapes; s++)
		for (int w = 0; w < k->n_shape_ws; w++) {
			fprintf(stderr, "  %-5s %6lldx%-6lld in %4llu MiB %6.1f",
				kern_type_info(k->shape_type[s])->name,
				(long long)k->shape[s][w].rows,
				(long long)k->shape_cols[s],
				(unsigned long long)(k->shape_ws_bytes[s][w] / MIB),
				k->shape[s][w].gbps[0]);
			if (two)
				fprintf(stderr, " %6.1f", k->shape[s][w].gbps[1]);
			fputs(" GB/s\n", stderr);
		}
}

/* {"1": a, "N": b}: a figure by thread count */
static void json_by_threads(FILE *f, const struct probe_kern *k,
			    const double v[2], const char *fmt)
{
	fputc('{', f);
	for (int i = 0; i < (k->n_threads > 1 ? 2 : 1); i++) {
		fprintf(f, "%s\"%d\": ", i ? ", " : "", kern_nth(k, i));
		fprintf(f, fmt, v[i]);
	}
	fputc('}', f);
}

static void json_kern_point(FILE *f, const struct probe_kern *k,
			    const char *name, const struct kern_point *p)
{
	fprintf(f, "\"%s\": {\"rows\": %lld, \"bytes\": %llu, \"gbps\": ", name,
		(long long)p->rows, (unsigned long long)p->bytes);
	json_by_threads(f, k, p->gbps, "%.2f");
	fprintf(f, ", \"rows_per_s\": ");
	json_by_threads(f, k, p->rows_per_s, "%.0f");
	fputc('}', f);
}

void probe_kern_json(FILE *f, const struct probe_kern *k)
{
	if (!k) {
		fprintf(f, "  \"kernels\": null,\n");
		return;
	}
	fprintf(f, "  \"kernels\": {\"isa\": \"%s\", \"cols\": %d, \"threads\": "
		"%d, \"l2_bytes\": %llu, \"l2_source\": \"%s\", \"llc_bytes\": "
		"%llu, \"llc_source\": \"%s\", \"dram_arena_bytes\": %llu,"
		" \"small_pages_thp_bytes\": %llu,\n    \"types\": {",
		kern_isa_name(k->isa), KERN_COLS, k->n_threads,
		(unsigned long long)k->l2_bytes, k->l2_src,
		(unsigned long long)k->llc_bytes, k->llc_src,
		(unsigned long long)k->arena_bytes,
		(unsigned long long)k->thp_small_bytes);
	for (int i = 0; i < k->n_types; i++) {
		fprintf(f, "%s\n      \"%s\": {\"row_bytes\": %llu, ", i ? "," : "",
			kern_type_info(k->types[i])->name,
			(unsigned long long)k->row_bytes[i]);
		json_kern_point(f, k, "dram", &k->dram[i]);
		fprintf(f, ",\n        ");
		json_kern_point(f, k, "l2", &k->l2[i]);
		/* "ws": the dram class by working set (bytes the copies span) */
		fprintf(f, ",\n        \"ws\": [");
		for (int w = 0; w < k->n_ws; w++) {
			fprintf(f, "%s{\"ws_bytes\": %llu, \"gbps\": ", w ? ", " : "",
				(unsigned long long)k->ws_bytes[w]);
			json_by_threads(f, k, k->ws[i][w].gbps, "%.2f");
			fputc('}', f);
		}
		fprintf(f, ", {\"ws_bytes\": %llu, \"gbps\": ",
			(unsigned long long)k->arena_bytes);
		json_by_threads(f, k, k->dram[i].gbps, "%.2f");
		fprintf(f, "}]");
		/* "small_pages": the same on 4 KiB pages (the mmap tier) */
		if (k->small_pages) {
			fprintf(f, ",\n        \"small_pages\": [");
			for (int w = 0; w <= k->n_ws; w++) {
				fprintf(f, "%s{\"ws_bytes\": %llu, \"gbps\": ", w ? ", " : "",
					(unsigned long long)(w < k->n_ws ? k->ws_bytes[w]
									 : k->arena_bytes));
				json_by_threads(f, k, k->sp[i][w].gbps, "%.2f");
				fputc('}', f);
			}
			fputc(']', f);
		}
		fputc('}', f);
	}
	fputc('}', f);
	/* "shapes": the matvec at a model's own shapes, by working set */
	if (k->n_shapes) {
		fprintf(f, ",\n    \"shapes\": [");
		for (int s = 0; s < k->n_shapes; s++) {
			const struct kern_point *p = &k->shape[s][0];
			fprintf(f, "%s\n      {\"type\": \"%s\", \"rows\": %lld, "
				"\"cols\": %lld, \"bytes\": %llu, \"pages\": \"%s\", "
				"\"ws\": [",
				s ? "," : "", kern_type_info(k->shape_type[s])->name,
				(long long)p->rows, (long long)k->shape_cols[s],
				(unsigned long long)p->bytes,
				k->shape_small_pages ? "small" : "huge");
			for (int w = 0; w < k->n_shape_ws; w++) {
				fprintf(f, "%s{\"ws_bytes\": %llu, \"gbps\": ",
					w ? ", " : "",
					(unsigned long long)k->shape_ws_bytes[s][w]);
				json_by_threads(f, k, k->shape[s][w].gbps, "%.2f");
				fprintf(f, ", \"us\": ");
				double us[2];
				for (int i = 0; i < 2; i++)
					us[i] = k->shape[s][w].gbps[i] > 0
						? (double)p->bytes / k->shape[s][w].gbps[i] * 1e-3 : 0;
				json_by_threads(f, k, us, "%.2f");
				fputc('}', f);
			}
			fprintf(f, "]}");
		}
		fputc(']', f);
	}
	fprintf(f, "},\n");
}
