/*
 * probe - measure this machine into a hardware profile: the yardstick for
 * the flash tier and the input of the simulator to come.
 *
 *   machine  host name, CPU model (/proc/cpuinfo), CPUs online, the
 *          kernel ISA kern_init() picks, cache sizes, date.
 *   DRAM   read bandwidth by thread count (1 .. the CPUs this process may
 *          run on): a streaming sum with the widest vector the CPU has
 *          (AVX-512, else AVX2, scalar as the last resort; cpuid at run
 *          time, capped by STRATA_KERNELS=avx2|ref) over a buffer far
 *          above L3, allocated with huge pages and touched once before
 *          timing; OpenMP threads pinned one per CPU; median of passes.
 *   kernels  the decode matvec of every weight type from DRAM and from
 *          L2, one thread and all: bench/probe_kern.c.
 *   matmul, barrier, sampler  prefill's batched kernel per type, the
 *          barrier of the engine's unit pool by unit count, and the
 *          sampler per vocabulary entry: bench/probe_sys.c (the
 *          simulator's inputs, bench/sim.h).
 *   fabric the chip fabric (engine/fabric.h) between two processes pinned
 *          to two CPUs: a hand-written shared-memory handoff (the floor)
 *          and the fabric's allgather, allreduce and bcast, median and
 *          p99 by message size 64 B .. 4 MiB: bench/probe_fabric.c. It
 *          forks, so it runs first, before any OpenMP thread exists.
 *   flash  io_uring + O_DIRECT reads of a test file in --flash-dir, into
 *          one registered huge-page-backed buffer through a registered
 *          file: sequential GB/s by block size (64 KiB .. 4 MiB) and queue
 *          depth (1, 4, 16, 64), then 4 KiB random reads: latency p50/p99
 *          at QD1 (submit to completion, so it includes the submit
 *          syscall) and IOPS at QD64.
 *   KV     the KV cache's block writes (memtier/kvcache.h on the flash
 *          tier, in --flash-dir): a TinyLlama-shaped cache (22 layers, 256
 *          floats a row, blocks of 64 positions) filled a block per layer
 *          at a time; bytes/s and mean submit-to-reap per block write.
 *          Where O_DIRECT (or the cache) is refused the profile says why
 *          and carries on. STRATA_FAULT (memtier's fault hook, e.g.
 *          nodirect:1) applies to it, for tests. The KV file has no name
 *          (kvcache.c: O_TMPFILE, or mkstemp and unlink), like the test
 *          file below.
 *
 * The test file is made with mkstemp (never clobbers another run's file)
 * and unlinked at once, with SIGINT/SIGTERM blocked between the two, so the
 * open descriptor is its only name: nothing is left behind on normal exit,
 * on error, on a signal, or even on SIGKILL.
 *
 * A human table goes to stderr; the profile, JSON, to stdout or -o FILE.
 * GB/s is 1e9 bytes per second. Exit 0 on success, 1 on any failure, with
 * a message saying what is missing (no io_uring, no O_DIRECT, memlock ...).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <omp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench/mvbench.h"
#include "bench/probe.h"
#include "kernels/kern.h"
#include "memtier/arena.h"
#include "memtier/kvcache.h"
#include "models/util.h"

#define GIB ((size_t)1 << 30)
#define N_BS 4
#define N_QD 4
#define QD_MAX 64
#define RAND_BS 4096

static const size_t bs_list[N_BS] = { 64 * 1024, 256 * 1024, MIB, 4 * MIB };
static const int qd_list[N_QD] = { 1, 4, 16, 64 };

struct dram_result {
	int n_threads;            /* measured 1 .. n_threads */
	double gbps[CPU_SETSIZE]; /* [t-1]: median GB/s with t threads */
	int streams[CPU_SETSIZE]; /* [t-1]: streams a thread that gave it */
	const char *method;       /* "avx512", "avx2" or "scalar" */
	uint64_t thp_bytes;       /* of the buffer, backed by huge pages */
};

struct flash_result {
	double gbps[N_BS][N_QD]; /* median sequential GB/s */
	double p50_us, p99_us;   /* 4 KiB random, QD1 */
	double iops_qd64;        /* 4 KiB random, QD64 */
	double sustained_gbps;   /* 1 MiB, QD32, for sustained_s: a stream */
	double sustained_s;
	char fs[32];             /* file system of --flash-dir */
	uint64_t buf_bytes;      /* registered buffer ... */
	uint64_t thp_bytes;      /* ... and how much of it is huge pages */
};

/* ---- small helpers ---------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* median of v[0..n) (sorts v in place) */
static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/*
 * A huge-page-backed arena of `bytes` (memtier/arena.h: rounded up to and
 * aligned on 2 MiB), every page first touched here with `threads` threads
 * (each writes the part it will read, which on a many-node machine puts
 * those pages near it), so no page fault lands inside a timed region
 * (first touch costs ~15 us per 4 KiB page: MACHINE.md). Returns 0 or
 * -errno; give it back with arena_unmap.
 */
int probe_huge_alloc(struct arena *a, size_t bytes, int threads)
{
	struct arena_config ac = {.bytes = bytes, .huge_pages = true,
				  .node = -1};
	char msg[160];
	int err = arena_map(a, &ac, msg, sizeof(msg));

	if (err)
		return err;
	uint8_t *p = a->base;
#pragma omp parallel for num_threads(threads) schedule(static)
	for (size_t off = 0; off < a->bytes; off += ARENA_ALIGN)
		memset(p + off, 1, ARENA_ALIGN);
	return 0;
}

/* AnonHugePages of the mapping that holds p, from /proc/self/smaps;
 * 0 when it cannot be read. */
uint64_t probe_thp_bytes(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int in = 0;
	unsigned long lo, hi, kb;
	uint64_t r = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		/* a mapping's header "lo-hi perms ..."; no field line
		 * ("Size:", "AnonHugePages:") parses as two hex numbers */
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (in && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1) {
			r = (uint64_t)kb * 1024;
			break;
		}
	}
	fclose(f);
	return r;
}

/* Name of the file system that holds dir ("ext4", "tmpfs" ... or its
 * magic in hex); *ram set when it lives in memory, not on a disk. */
static void fs_name(const char *dir, char *out, size_t len, int *ram)
{
	static const struct { unsigned long magic; const char *name; int ram; } fs[] = {
		{ 0xef53, "ext4", 0 },      { 0x58465342, "xfs", 0 },
		{ 0x9123683e, "btrfs", 0 }, { 0x2fc12fc1, "zfs", 0 },
		{ 0xf2f52010, "f2fs", 0 },  { 0x01021994, "tmpfs", 1 },
		{ 0x858458f6, "ramfs", 1 }, { 0x794c7630, "overlayfs", 0 },
		{ 0x6969, "nfs", 0 },       { 0x65735546, "fuse", 0 },
	};
	struct statfs sf;

	*ram = 0;
	snprintf(out, len, "unknown");
	if (statfs(dir, &sf) < 0)
		return;
	snprintf(out, len, "0x%lx", (unsigned long)sf.f_type);
	for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++)
		if ((unsigned long)sf.f_type == fs[i].magic) {
			snprintf(out, len, "%s", fs[i].name);
			*ram = fs[i].ram;
		}
}

/* ---- DRAM ------------------------------------------------------------- */

/* the i-th CPU (0-based) of the set, or -1 */
static int nth_cpu(const cpu_set_t *set, int i)
{
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, set) && i-- == 0)
			return c;
	return -1;
}

/* Pin each thread of a team of n to its own CPU of `allowed`. The libgomp
 * pool keeps its threads between regions of the same size, so the pinning
 * holds for the timed regions that follow. */
void probe_pin_team(const cpu_set_t *allowed, int n)
{
#pragma omp parallel num_threads(n)
	{
		cpu_set_t one;
		int c = nth_cpu(allowed, omp_get_thread_num());

		CPU_ZERO(&one);
		if (c >= 0) {
			CPU_SET(c, &one);
			sched_setaffinity(0, sizeof(one), &one);
		}
	}
}

/*
 * DRAM read bandwidth with 1 .. CPU-count threads into *r. Each pass, the
 * threads sum disjoint equal slices of the whole buffer; a pass is timed
 * from before the region to after its join (fork/join is microseconds
 * against tens of milliseconds). Restores the caller's CPU affinity.
 * Returns 0 or -ENOMEM.
 */
static int probe_dram(const struct probe_opts *o, struct dram_result *r)
{
	cpu_set_t allowed;
	const char *method;
	mvbench_sum_fn sum = mvbench_pick_sum(&method);
	size_t n = (o->dram_bytes / 8) & ~(size_t)(32 * CPU_SETSIZE - 1);
	struct arena mem = {0};
	int n_cpu, err;

	sched_getaffinity(0, sizeof(allowed), &allowed);
	n_cpu = CPU_COUNT(&allowed);
	err = probe_huge_alloc(&mem, n * 8, n_cpu);
	if (err)
		return err;
	r->method = method;
	r->n_threads = n_cpu;
	r->thp_bytes = probe_thp_bytes(mem.base);
	for (int t = 1; t <= n_cpu; t++) {
		probe_pin_team(&allowed, t);
		/* slices of n / t: n is a multiple of 32 * CPU_SETSIZE */
		r->gbps[t - 1] = mvbench_dram_best(mem.base, n, t, o->passes,
						   sum, &r->streams[t - 1]);
		if (r->gbps[t - 1] < 0)
			err = -ENOMEM;
	}
	sched_setaffinity(0, sizeof(allowed), &allowed);
	arena_unmap(&mem);
	return err;
}

/* ---- flash ------------------------------------------------------------ */

/* one request slot: its part of the buffer and what it still has to read */
struct req {
	uint8_t *buf;
	uint64_t off;
	uint32_t len, done;
	int64_t t_submit_ns;
};

struct flash_ctx {
	struct io_uring ring;
	int ring_ok;
	int fd;
	uint64_t file_bytes;
	struct arena mem; /* holds buf */
	uint8_t *buf; /* QD_MAX * 4 MiB, registered as fixed buffer 0 */
	size_t buf_bytes;
	uint64_t cursor; /* next sequential offset; persists across points */
	uint64_t rng;
	struct req reqs[QD_MAX];
};

/* one run of reads: what to do ... */
struct io_run {
	size_t bs;
	int qd;
	int random;
	uint64_t max_bytes; /* stop issuing after this many ... */
	double max_s;       /* ... or after this long */
	int64_t *lat_ns;    /* if set: per-request latency, up to lat_cap */
	int lat_cap;
	/* ... and what it did */
	uint64_t bytes;
	int64_t ops;
	int64_t elapsed_ns;
	int n_lat;
};

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t next_offset(struct flash_ctx *c, size_t bs, int random)
{
	uint64_t off;

	if (random)
		return (xorshift(&c->rng) % (c->file_bytes / bs)) * bs;
	if (c->cursor + bs > c->file_bytes)
		c->cursor = 0;
	off = c->cursor;
	c->cursor += bs;
	return off;
}

/* queue a READ_FIXED of what slot r still lacks, via fixed file 0 */
static int queue_req(struct flash_ctx *c, struct req *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);

	if (!sqe)
		return -EBUSY; /* cannot happen: in flight <= QD <= SQ size */
	io_uring_prep_read_fixed(sqe, 0, r->buf + r->done, r->len - r->done,
				 r->off + r->done, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, r);
	r->t_submit_ns = now_ns();
	return 0;
}

/*
 * Run one batch of reads as `run` describes: fill the queue to run->qd,
 * submit, reap every completion, requeue short reads, refill each finished
 * slot until the byte or time cap. On an error it stops issuing, drains
 * every read in flight (the buffer is reused) and returns the first
 * cqe->res < 0, or -EIO for a read that returned 0 bytes. Returns 0 and
 * fills run->bytes, ops, elapsed_ns, n_lat on success.
 */
static int run_reads(struct flash_ctx *c, struct io_run *run)
{
	int64_t t0 = now_ns(), deadline = t0 + (int64_t)(run->max_s * 1e9);
	uint64_t issued = 0;
	int inflight = 0, err = 0;

	run->bytes = 0;
	run->ops = 0;
	run->n_lat = 0;
	for (int s = 0; s < run->qd && issued < run->max_bytes; s++) {
		struct req *r = &c->reqs[s];

		r->buf = c->buf + (size_t)s * run->bs;
		r->off = next_offset(c, run->bs, run->random);
		r->len = run->bs;
		r->done = 0;
		if ((err = queue_req(c, r)))
			return err;
		issued += run->bs;
		inflight++;
	}
	while (inflight > 0) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int ret = io_uring_submit_and_wait(&c->ring, 1);

		if (ret < 0 && ret != -EINTR) {
			/* nothing can be reaped safely if submit fails: give up
			 * on the ring; the caller tears it down */
			return ret;
		}
		io_uring_for_each_cqe(&c->ring, head, cqe) {
			struct req *r = io_uring_cqe_get_data(cqe);
			int res = cqe->res;

			seen++;
			inflight--;
			if (res <= 0) {
				if (!err)
					err = res < 0 ? res : -EIO;
				continue;
			}
			r->done += res;
			run->bytes += res;
			if (r->done < r->len) { /* short read: ask for the rest */
				if (!err && !(err = queue_req(c, r)))
					inflight++;
				continue;
			}
			run->ops++;
			if (run->lat_ns && run->n_lat < run->lat_cap)
				run->lat_ns[run->n_lat++] = now_ns() - r->t_submit_ns;
			if (err || issued >= run->max_bytes || now_ns() >= deadline)
				continue;
			r->off = next_offset(c, run->bs, run->random);
			r->done = 0;
			if (!(err = queue_req(c, r))) {
				issued += run->bs;
				inflight++;
			}
		}
		io_uring_cq_advance(&c->ring, seen);
	}
	run->elapsed_ns = now_ns() - t0;
	return err;
}

/* Describe an io_uring setup failure the way a user can act on it. */
static const char *uring_hint(int err)
{
	switch (err) {
	case -ENOSYS: return "this kernel has no io_uring";
	case -EPERM: return "io_uring is disabled (sysctl kernel.io_uring_disabled, or a seccomp/container policy)";
	case -ENOMEM: return "locked-memory limit too low for registered buffers (ulimit -l; run as root or raise RLIMIT_MEMLOCK)";
	default: return strerror(-err);
	}
}

/*
 * Make the test file in `dir`: mkstemp, unlink at once (signals blocked in
 * between, so no signal can leave it behind), switch to O_DIRECT, reserve
 * the space, fill it from c->buf with O_DIRECT writes, fdatasync and drop
 * it from the page cache. Sets c->fd. Returns 0 or -errno with a message.
 */
static int make_test_file(struct flash_ctx *c, const char *dir, char *msg,
			  size_t msg_len)
{
	char path[4096];
	sigset_t block, old;
	int fd, err, fl;

	if (snprintf(path, sizeof(path), "%s/strata-probe-XXXXXX", dir) >=
	    (int)sizeof(path)) {
		snprintf(msg, msg_len, "--flash-dir path too long");
		return -ENAMETOOLONG;
	}
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &old);
	fd = mkstemp(path);
	err = fd < 0 ? -errno : 0;
	if (fd >= 0 && unlink(path) < 0)
		err = -errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (err) {
		snprintf(msg, msg_len, "cannot create a test file in %s: %s",
			 dir, strerror(-err));
		goto err_fd;
	}
	c->fd = fd;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) < 0) {
		err = -errno;
		snprintf(msg, msg_len, "O_DIRECT is not supported on the file "
			 "system of %s (%s)", dir, strerror(-err));
		goto err_fd;
	}
	err = posix_fallocate(fd, 0, c->file_bytes);
	if (err && err != EOPNOTSUPP && err != EINVAL) {
		err = -err;
		snprintf(msg, msg_len, "cannot reserve %llu MiB in %s: %s",
			 (unsigned long long)(c->file_bytes / MIB), dir,
			 strerror(-err));
		goto err_fd;
	}
	for (uint64_t off = 0; off < c->file_bytes;) {
		size_t n = c->file_bytes - off < c->buf_bytes ?
				   c->file_bytes - off : c->buf_bytes;
		ssize_t w = pwrite(fd, c->buf, n, off);

		if (w <= 0) {
			err = w < 0 ? -errno : -EIO;
			snprintf(msg, msg_len, "writing the test file in %s: %s%s",
				 dir, strerror(-err), err == -EINVAL ?
				 " (O_DIRECT alignment refused)" : "");
			goto err_fd;
		}
		off += w;
	}
	if (fdatasync(fd) < 0) {
		err = -errno;
		snprintf(msg, msg_len, "fdatasync of the test file: %s",
			 strerror(-err));
		goto err_fd;
	}
	/* O_DIRECT bypasses the page cache; this evicts anything that a
	 * file system might have cached anyway */
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return 0;

err_fd:
	if (fd >= 0)
		close(fd);
	c->fd = -1;
	return err;
}

static void flash_destroy(struct flash_ctx *c)
{
	if (c->ring_ok)
		io_uring_queue_exit(&c->ring); /* also unregisters buffer, file */
	if (c->fd >= 0)
		close(c->fd);
	arena_unmap(&c->mem);
}

/*
 * Set up the ring (probing READ_FIXED), the registered huge-page buffer,
 * the test file and its registration. Returns 0 or -errno with a message
 * in msg; flash_destroy undoes a partial set-up.
 */
static int flash_init(struct flash_ctx *c, const struct probe_opts *o,
		      char *msg, size_t msg_len)
{
	struct io_uring_probe *pr;
	struct iovec iov;
	int err;

	c->fd = -1;
	c->file_bytes = o->file_bytes;
	c->rng = 0x9e3779b97f4a7c15ull;
	err = io_uring_queue_init(QD_MAX, &c->ring, 0);
	if (err) {
		snprintf(msg, msg_len, "io_uring unavailable: %s", uring_hint(err));
		return err;
	}
	c->ring_ok = 1;
	pr = io_uring_get_probe_ring(&c->ring);
	if (!pr || !io_uring_opcode_supported(pr, IORING_OP_READ_FIXED)) {
		io_uring_free_probe(pr);
		snprintf(msg, msg_len, "io_uring unavailable: this kernel lacks "
			 "IORING_OP_READ_FIXED");
		return -EOPNOTSUPP;
	}
	io_uring_free_probe(pr);
	c->buf_bytes = QD_MAX * bs_list[N_BS - 1];
	err = probe_huge_alloc(&c->mem, c->buf_bytes, 1);
	if (err) {
		snprintf(msg, msg_len, "cannot allocate %zu MiB of I/O buffers",
			 c->buf_bytes / MIB);
		return err;
	}
	c->buf = c->mem.base;
	/* non-constant contents, so nothing below can shortcut a zero page */
	for (size_t i = 0; i < c->buf_bytes / 8; i++)
		((uint64_t *)c->buf)[i] = xorshift(&c->rng);
	iov.iov_base = c->buf;
	iov.iov_len = c->buf_bytes;
	err = io_uring_register_buffers(&c->ring, &iov, 1);
	if (err) {
		snprintf(msg, msg_len, "registering %zu MiB of I/O buffers: %s",
			 c->buf_bytes / MIB, uring_hint(err));
		return err;
	}
	err = make_test_file(c, o->flash_dir, msg, msg_len);
	if (err)
		return err;
	err = io_uring_register_files(&c->ring, &c->fd, 1);
	if (err) {
		snprintf(msg, msg_len, "registering the test file: %s",
			 uring_hint(err));
		return err;
	}
	return 0;
}

/* print the failing point and pass err through */
static int io_fail(int err, const char *what, size_t bs, int qd, char *msg,
		   size_t msg_len)
{
	snprintf(msg, msg_len, "%s (block %zu, QD %d): %s%s", what, bs, qd,
		 strerror(-err), err == -EINVAL ?
		 " (O_DIRECT refused this alignment or size)" : "");
	return err;
}

/*
 * The flash measurements into *r. Returns 0 or -errno with msg set.
 */
static int probe_flash(const struct probe_opts *o, struct flash_result *r,
		       char *msg, size_t msg_len)
{
	struct flash_ctx *c = xcalloc(1, sizeof(*c));
	double *pass = xcalloc(o->passes, sizeof(double));
	int64_t *lat = xcalloc(o->lat_ops, sizeof(int64_t));
	double *lat_us = xcalloc(o->lat_ops, sizeof(double));
	struct io_run run;
	int err, ram;

	fs_name(o->flash_dir, r->fs, sizeof(r->fs), &ram);
	fprintf(stderr, "flash: writing a %llu MiB test file in %s (%s) ...\n",
		(unsigned long long)(o->file_bytes / MIB), o->flash_dir, r->fs);
	if (ram)
		fprintf(stderr, "probe: warning: %s is %s, in memory: these are "
			"not flash figures\n", o->flash_dir, r->fs);
	err = flash_init(c, o, msg, msg_len);
	if (err)
		goto out;
	r->buf_bytes = c->buf_bytes;
	r->thp_bytes = probe_thp_bytes(c->buf);

	/* sequential: every block size at every queue depth */
	for (int b = 0; b < N_BS; b++)
		for (int q = 0; q < N_QD; q++) {
			for (int p = 0; p < o->passes; p++) {
				run = (struct io_run){ .bs = bs_list[b], .qd = qd_list[q],
					.max_bytes = o->seq_bytes, .max_s = o->seq_max_s };
				err = run_reads(c, &run);
				if (err) {
					io_fail(err, "sequential read", run.bs, run.qd, msg, msg_len);
					goto out;
				}
				pass[p] = (double)run.bytes / run.elapsed_ns;
			}
			r->gbps[b][q] = median(pass, o->passes);
		}

	/* sustained: 1 MiB at QD32 for seconds, wrapping around the file
	 * (the grid's points are short bursts; a decode streams for minutes) */
	run = (struct io_run){ .bs = MIB, .qd = 32, .max_bytes = UINT64_MAX,
		.max_s = o->quick ? 1.0 : 3.0 };
	err = run_reads(c, &run);
	if (err) {
		io_fail(err, "sustained read", run.bs, run.qd, msg, msg_len);
		goto out;
	}
	r->sustained_gbps = (double)run.bytes / run.elapsed_ns;
	r->sustained_s = run.elapsed_ns * 1e-9;

	/* 4 KiB random, QD1: latency percentiles */
	run = (struct io_run){ .bs = RAND_BS, .qd = 1, .random = 1,
		.max_bytes = (uint64_t)o->lat_ops * RAND_BS,
		.max_s = o->rand_max_s, .lat_ns = lat, .lat_cap = o->lat_ops };
	err = run_reads(c, &run);
	if (err || run.n_lat == 0) {
		io_fail(err ? err : -EIO, "random read", RAND_BS, 1, msg, msg_len);
		err = err ? err : -EIO;
		goto out;
	}
	for (int i = 0; i < run.n_lat; i++)
		lat_us[i] = lat[i] * 1e-3;
	qsort(lat_us, run.n_lat, sizeof(double), cmp_double);
	r->p50_us = lat_us[run.n_lat / 2];
	r->p99_us = lat_us[(int)(run.n_lat * 0.99)];

	/* 4 KiB random, QD64: IOPS, capped by time only */
	run = (struct io_run){ .bs = RAND_BS, .qd = QD_MAX, .random = 1,
		.max_bytes = UINT64_MAX, .max_s = o->rand_max_s };
	err = run_reads(c, &run);
	if (err) {
		io_fail(err, "random read", RAND_BS, QD_MAX, msg, msg_len);
		goto out;
	}
	r->iops_qd64 = run.ops / (run.elapsed_ns * 1e-9);
out:
	flash_destroy(c);
	free(c);
	free(pass);
	free(lat);
	free(lat_us);
	return err;
}

/* ---- KV-cache writes ---------------------------------------------------- */

/* TinyLlama's KV shape: 22 layers, 4 KV heads of 64 floats */
#define KV_LAYERS 22
#define KV_EMBD 256
#define KV_BLOCK 64

struct kv_result {
	char skipped[320];     /* why not measured; "" if it was */
	int32_t n_layer, n_embd_kv, block_tokens, n_pos;
	uint64_t block_bytes;  /* one layer's K (or V) block */
	uint64_t n_blocks;     /* K and V blocks written */
	uint64_t bytes_written;
	uint64_t n_requests;
	double seconds;        /* first commit to the last write landed */
	double gbps;
	double block_us;       /* mean submit-to-reap of a request */
	double qd_mean;
};

/* Fill positions [p0, p0 + B) of layer l in a view with no rows read
 * back (n_pos 0) and commit them: one K and one V block write. */
static int kv_write_block(struct kvcache *kv, int32_t l, int32_t p0, int32_t B)
{
	float *k, *v;
	int err = kvcache_layer(kv, l, 0, &k, &v);

	if (err)
		return err;
	for (int64_t i = (int64_t)p0 * KV_EMBD; i < (int64_t)(p0 + B) * KV_EMBD; i++)
		k[i] = v[i] = (float)(i & 1023);
	err = kvcache_commit(kv, l, p0, p0 + B);
	kvcache_release(kv, l);
	return err;
}

/*
 * Write a whole KV cache on the flash tier a block per layer at a time,
 * as prefill does, and time it into *r. An open that fails (O_DIRECT
 * refused, no space) is no error: r->skipped says why. Returns 0, or
 * -errno with msg set when a write fails.
 */
static int probe_kv(const struct probe_opts *o, struct kv_result *r,
		    char *msg, size_t msg_len)
{
	struct memtier_config mt = { .kind = MEMTIER_FLASH };
	struct kvcache_config cfg = {
		.kind = MEMTIER_FLASH, .dir = o->flash_dir,
		.n_layer = KV_LAYERS, .n_ctx = o->quick ? 1024 : 4096,
		.n_embd_kv = KV_EMBD, .block_tokens = KV_BLOCK,
		.prefetch = 2, /* decode's default: four layer views */
		.mt = &mt,
	};
	const char *fault = getenv("STRATA_FAULT");
	struct kvcache *kv;
	struct kvcache_info info;
	const struct memtier_tier_stats *st;
	char err_msg[256];
	int64_t t0;
	int err;

	if (fault && *fault && memtier_fault_parse(fault, &mt)) {
		snprintf(msg, msg_len, "STRATA_FAULT=%s: want eio:N, short:N, "
			 "enospc:N or nodirect:1", fault);
		return -EINVAL;
	}
	r->n_layer = cfg.n_layer;
	r->n_embd_kv = cfg.n_embd_kv;
	r->n_pos = cfg.n_ctx;
	err = kvcache_open(&kv, &cfg, err_msg, sizeof(err_msg));
	if (err) {
		snprintf(r->skipped, sizeof(r->skipped), "%s", err_msg);
		return 0;
	}
	kvcache_get_info(kv, &info);
	r->block_tokens = info.block_tokens;
	r->block_bytes = (uint64_t)info.block_tokens * KV_EMBD * sizeof(float);
	t0 = now_ns();
	for (int32_t p0 = 0; p0 + r->block_tokens <= r->n_pos && !err;
	     p0 += r->block_tokens)
		for (int32_t l = 0; l < r->n_layer && !err; l++)
			err = kv_write_block(kv, l, p0, r->block_tokens);
	if (!err)
		err = kvcache_flush(kv);
	r->seconds = (now_ns() - t0) * 1e-9;
	st = kvcache_stats(kv);
	r->bytes_written = st->bytes_written;
	r->n_requests = st->n_requests;
	r->n_blocks = r->bytes_written / r->block_bytes;
	r->gbps = r->bytes_written / r->seconds * 1e-9;
	r->block_us = st->n_requests ? st->req_ns * 1e-3 / st->n_requests : 0;
	r->qd_mean = st->n_requests ? (double)st->qd_sum / st->n_requests : 0;
	kvcache_close(kv);
	if (err)
		snprintf(msg, msg_len, "KV block writes in %s: %s", o->flash_dir,
			 strerror(-err));
	return err;
}

/* ---- page cache: the mmap tier's first touch ----------------------------- */

struct pc_result {
	uint64_t bytes;      /* of the mapped file */
	double ns_per_byte;  /* median pass: map, read a byte a 4 KiB page, unmap */
	double faults;       /* minor faults a pass */
	double cold_ns_per_byte; /* the first pass, the file out of the cache */
};

/*
 * What the mmap tier pays the first time it reads a weight: the page
 * fault that maps a page-cache page (with the kernel's fault-around). A
 * file of `bytes` in --flash-dir (mkstemp and unlinked at once, as the
 * flash test file), written through the page cache, then mapped
 * MAP_SHARED read-only and read one byte every 4 KiB, in order, by one
 * thread, o->passes times on a fresh mapping, after one untimed pass
 * with the file dropped from the cache (so the pages are those a
 * mapping's own faults and readahead brought in, as a model's are after
 * its first mmap run). Returns 0 or -errno with a message.
 */
static int probe_page_cache(const struct probe_opts *o, struct pc_result *r,
			    char *msg, size_t msg_len)
{
	const size_t bytes = o->quick ? 16 * MIB : 64 * MIB, chunk = MIB;
	char path[4096], *buf = NULL;
	double ns[16];
	sigset_t block, old;
	int fd, err = 0, n = o->passes < 16 ? o->passes : 16;

	snprintf(path, sizeof(path), "%s/strata-pc-XXXXXX", o->flash_dir);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &old);
	fd = mkstemp(path);
	if (fd >= 0 && unlink(path) < 0)
		err = -errno;
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (fd < 0 || err) {
		err = fd < 0 ? -errno : err;
		snprintf(msg, msg_len, "page cache: cannot create a file in %s: %s",
			 o->flash_dir, strerror(-err));
		goto out;
	}
	if (!(buf = malloc(chunk))) {
		err = -ENOMEM;
		snprintf(msg, msg_len, "page cache: out of memory");
		goto out;
	}
	memset(buf, 7, chunk);
	for (size_t off = 0; off < bytes; off += chunk)
		if (pwrite(fd, buf, chunk, (off_t)off) != (ssize_t)chunk) {
			err = -EIO;
			snprintf(msg, msg_len, "page cache: writing %zu MiB in %s: %s",
				 bytes / MIB, o->flash_dir, strerror(errno ? errno : EIO));
			goto out;
		}
	/* out of the cache, then mapped once cold (the disk, readahead): the
	 * page cache then holds the file as a mapping's faults bring in a
	 * model; the timed passes map those pages again (a warm mmap run) */
	if (fdatasync(fd) < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)) {
		err = -EIO;
		snprintf(msg, msg_len, "page cache: cannot drop the file from the cache");
		goto out;
	}
	r->bytes = bytes;
	for (int p = -1; p < n; p++) {
		struct rusage u0, u1;
		getrusage(RUSAGE_SELF, &u0);
		int64_t t0 = now_ns();
		volatile const uint8_t *m = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
		if (m == MAP_FAILED) {
			err = -errno;
			snprintf(msg, msg_len, "page cache: mmap: %s", strerror(-err));
			goto out;
		}
		unsigned sum = 0;
		for (size_t off = 0; off < bytes; off += 4096)
			sum += m[off];
		munmap((void *)m, bytes);
		double v = (double)(now_ns() - t0) / (double)bytes;
		getrusage(RUSAGE_SELF, &u1);
		(void)sum;
		if (p < 0) {
			r->cold_ns_per_byte = v;
			continue;
		}
		ns[p] = v;
		r->faults = (double)(u1.ru_minflt - u0.ru_minflt);
	}
	r->ns_per_byte = median(ns, n);
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return err;
}

/* ---- output ----------------------------------------------------------- */

/* what was measured; NULL for a part that was skipped */
struct probe_results {
	const struct dram_result *dram;
	const struct probe_kern *kern;
	const struct probe_sys *sys;
	const struct flash_result *flash;
	const struct kv_result *kv;
	const struct probe_fabric *fabric;
	const struct pc_result *pc;
};

struct cpu_id {
	char model[256]; /* "model name", "unknown" if absent */
	int family, model_id, stepping; /* -1 if absent */
};

static void cpu_model(struct cpu_id *id)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512], *v;

	snprintf(id->model, sizeof(id->model), "unknown");
	id->family = id->model_id = id->stepping = -1;
	if (!f)
		return;
	/* the first CPU's block: up to its blank line */
	while (fgets(line, sizeof(line), f) && line[0] != '\n') {
		if (!(v = strchr(line, ':')))
			continue;
		v += strspn(v + 1, " \t") + 1;
		v[strcspn(v, "\n")] = '\0';
		if (!strncmp(line, "model name", 10))
			snprintf(id->model, sizeof(id->model), "%s", v);
		else if (!strncmp(line, "cpu family", 10))
			id->family = atoi(v);
		else if (!strncmp(line, "model", 5) && isspace((unsigned char)line[5]))
			id->model_id = atoi(v);
		else if (!strncmp(line, "stepping", 8))
			id->stepping = atoi(v);
	}
	fclose(f);
}

/* s as a JSON string body: escape quotes, backslashes and controls */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void print_table(const struct probe_opts *o,
			const struct probe_results *pr)
{
	const struct dram_result *d = pr->dram;
	const struct flash_result *fl = pr->flash;
	const struct kv_result *kv = pr->kv;

	if (d) {
		fprintf(stderr, "\nDRAM read (%s sum, %llu MiB buffer, %llu MiB "
			"in huge pages, median of %d, the faster of 1 and 4 "
			"streams a thread)\n", d->method,
			(unsigned long long)(o->dram_bytes / MIB),
			(unsigned long long)(d->thp_bytes / MIB), o->passes);
		fprintf(stderr, "  threads   GB/s  streams\n");
		for (int t = 1; t <= d->n_threads; t++)
			fprintf(stderr, "  %7d %6.1f  %7d\n", t, d->gbps[t - 1],
				d->streams[t - 1]);
	}
	if (pr->kern)
		probe_kern_print(pr->kern);
	if (pr->sys)
		probe_sys_print(pr->sys);
	if (fl) {
		fprintf(stderr, "\nflash read GB/s (io_uring, O_DIRECT, %s on %s, "
			"file %llu MiB, buffer %llu MiB with %llu MiB in huge pages, "
			"median of %d)\n", o->flash_dir, fl->fs,
			(unsigned long long)(o->file_bytes / MIB),
			(unsigned long long)(fl->buf_bytes / MIB),
			(unsigned long long)(fl->thp_bytes / MIB), o->passes);
		fprintf(stderr, "  block   ");
		for (int q = 0; q < N_QD; q++)
			fprintf(stderr, "  QD%-4d", qd_list[q]);
		fputc('\n', stderr);
		for (int b = 0; b < N_BS; b++) {
			fprintf(stderr, "  %4zu KiB", bs_list[b] / 1024);
			for (int q = 0; q < N_QD; q++)
				fprintf(stderr, " %6.2f ", fl->gbps[b][q]);
			fputc('\n', stderr);
		}
		fprintf(stderr, "  sustained: 1024 KiB QD32 for %.1f s: %.2f GB/s\n",
			fl->sustained_s, fl->sustained_gbps);
		fprintf(stderr, "  4 KiB random: p50 %.1f us, p99 %.1f us at QD1; "
			"%.0f IOPS at QD64\n", fl->p50_us, fl->p99_us, fl->iops_qd64);
	}
	if (pr->fabric)
		probe_fabric_print(pr->fabric);
	if (kv && kv->skipped[0])
		fprintf(stderr, "\nKV-cache writes: skipped: %s\n", kv->skipped);
	else if (kv)
		fprintf(stderr, "\nKV-cache writes (%d layers, %llu KiB blocks, %d "
			"positions): %.2f GB/s, %.0f us per block write (mean "
			"submit to reap, QD %.1f)\n", kv->n_layer,
			(unsigned long long)(kv->block_bytes / 1024), kv->n_pos,
			kv->gbps, kv->block_us, kv->qd_mean);
}

static void json_machine(FILE *f, const char *date)
{
	char host[256] = "unknown";
	struct cpu_id id;
	struct utsname u;
	cpu_set_t allowed;

	cpu_model(&id);
	gethostname(host, sizeof(host) - 1);
	sched_getaffinity(0, sizeof(allowed), &allowed);
	if (uname(&u) < 0)
		snprintf(u.release, sizeof(u.release), "unknown");
	fprintf(f, "  \"machine\": {\"cpu\": ");
	json_str(f, id.model);
	fprintf(f, ", \"cpu_family\": %d, \"cpu_model\": %d, \"cpu_stepping\": %d,"
		"\n    \"cores\": %d, \"online_cpus\": %ld, \"hostname\": ",
		id.family, id.model_id, id.stepping, CPU_COUNT(&allowed),
		sysconf(_SC_NPROCESSORS_ONLN));
	json_str(f, host);
	fprintf(f, ", \"kernel\": ");
	json_str(f, u.release);
	fprintf(f, ",\n    \"avx512f\": %s, \"avx2\": %s, \"kern_isa\": \"%s\", "
		"\"date\": \"%s\"},\n",
		__builtin_cpu_supports("avx512f") ? "true" : "false",
		__builtin_cpu_supports("avx2") ? "true" : "false",
		kern_isa_name(kern_isa_active()), date);
}

static void json_kv(FILE *f, const struct probe_opts *o,
		    const struct kv_result *kv)
{
	if (!kv) {
		fprintf(f, "  \"kv_write\": null,\n");
		return;
	}
	fprintf(f, "  \"kv_write\": {\"dir\": ");
	json_str(f, o->flash_dir);
	if (kv->skipped[0]) {
		fprintf(f, ", \"skipped\": ");
		json_str(f, kv->skipped);
		fprintf(f, "},\n");
		return;
	}
	fprintf(f, ", \"n_layer\": %d, \"n_embd_kv\": %d, \"block_tokens\": %d, "
		"\"block_bytes\": %llu, \"positions\": %d,\n    \"blocks\": %llu, "
		"\"bytes_written\": %llu, \"requests\": %llu, \"seconds\": %.4f, "
		"\"write_gbps\": %.3f, \"block_write_us\": %.1f, "
		"\"queue_depth_mean\": %.1f},\n", kv->n_layer, kv->n_embd_kv,
		kv->block_tokens, (unsigned long long)kv->block_bytes, kv->n_pos,
		(unsigned long long)kv->n_blocks,
		(unsigned long long)kv->bytes_written,
		(unsigned long long)kv->n_requests, kv->seconds, kv->gbps,
		kv->block_us, kv->qd_mean);
}

/* Write the profile to f. Returns 0 or -EIO if the stream failed. */
static int write_json(FILE *f, const struct probe_opts *o,
		      const struct probe_results *pr)
{
	const struct dram_result *d = pr->dram;
	const struct flash_result *fl = pr->flash;
	time_t now = time(NULL);
	char date[64];

	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	fprintf(f, "{\n");
	json_machine(f, date);
	if (d) {
		fprintf(f, "  \"dram\": {\"method\": \"%s\", \"buffer_bytes\": %llu, "
			"\"thp_bytes\": %llu, \"passes\": %d, \"read_gbps_by_threads\": {",
			d->method, (unsigned long long)o->dram_bytes,
			(unsigned long long)d->thp_bytes, o->passes);
		for (int t = 1; t <= d->n_threads; t++)
			fprintf(f, "%s\"%d\": %.2f", t > 1 ? ", " : "", t, d->gbps[t - 1]);
		fprintf(f, "}, \"streams_by_threads\": {");
		for (int t = 1; t <= d->n_threads; t++)
			fprintf(f, "%s\"%d\": %d", t > 1 ? ", " : "", t,
				d->streams[t - 1]);
		fprintf(f, "}},\n");
	} else {
		fprintf(f, "  \"dram\": null,\n");
	}
	probe_kern_json(f, pr->kern);
	probe_sys_json(f, pr->sys);
	if (fl) {
		fprintf(f, "  \"flash\": {\"dir\": ");
		json_str(f, o->flash_dir);
		fprintf(f, ", \"fs\": ");
		json_str(f, fl->fs);
		fprintf(f, ", \"file_bytes\": %llu, \"buffer_bytes\": %llu, "
			"\"buffer_thp_bytes\": %llu, \"passes\": %d,\n    \"read_gbps\": {",
			(unsigned long long)o->file_bytes,
			(unsigned long long)fl->buf_bytes,
			(unsigned long long)fl->thp_bytes, o->passes);
		for (int b = 0; b < N_BS; b++) {
			fprintf(f, "%s\n      \"%zu\": {", b ? "," : "", bs_list[b]);
			for (int q = 0; q < N_QD; q++)
				fprintf(f, "%s\"%d\": %.3f", q ? ", " : "", qd_list[q],
					fl->gbps[b][q]);
			fputc('}', f);
		}
		fprintf(f, "},\n    \"sustained_read_gbps\": %.3f, "
			"\"sustained_seconds\": %.2f,", fl->sustained_gbps,
			fl->sustained_s);
		fprintf(f, "\n    \"rand4k_p50_us\": %.1f, \"rand4k_p99_us\": %.1f, "
			"\"rand4k_iops_qd64\": %.0f},\n", fl->p50_us, fl->p99_us,
			fl->iops_qd64);
	} else {
		fprintf(f, "  \"flash\": null,\n");
	}
	json_kv(f, o, pr->kv);
	if (pr->pc)
		fprintf(f, "  \"page_cache\": {\"bytes\": %llu, \"fault_ns_per_byte\": "
			"%.5f, \"minor_faults\": %.0f, \"cold_ns_per_byte\": %.5f},\n",
			(unsigned long long)pr->pc->bytes, pr->pc->ns_per_byte,
			pr->pc->faults, pr->pc->cold_ns_per_byte);
	else
		fprintf(f, "  \"page_cache\": null,\n");
	probe_fabric_json(f, pr->fabric);
	fprintf(f, "  \"quick\": %s,\n  \"date\": \"%s\"\n}\n",
		o->quick ? "true" : "false", date);
	return fflush(f) || ferror(f) ? -EIO : 0;
}

/* ---- main ------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench/probe [options]\n"
		"  measures DRAM bandwidth, kernel throughput, flash bandwidth and\n"
		"  KV-cache write cost into a JSON hardware profile\n"
		"  -o FILE           write the profile to FILE (default: stdout)\n"
		"  --flash-dir DIR   where the flash test file and the KV cache go\n"
		"                    (default: $STRATA_CACHE or ~/.cache/strata)\n"
		"  --file-size SIZE  test file size (default 1G, --quick 256M)\n"
		"  --quick           smaller buffers, fewer passes (~10 s)\n"
		"  --no-flash        skip the flash read measurements (and the\n"
		"                    page cache's first-touch cost)\n"
		"  --no-kv           skip the KV-cache writes (with --no-flash: no\n"
		"                    disk is touched)\n"
		"  --no-dram         skip the DRAM measurements\n"
		"  --no-kern         skip the kernel measurements\n"
		"  --no-small-pages  skip the kernels on 4 KiB pages (the mmap\n"
		"                    tier's figures)\n"
		"  --no-sys          skip prefill matmul, barrier and sampler\n"
		"  --no-fabric       skip the fabric (floor and collectives)\n"
		"  --fabric-only     only the fabric (machine identity and it)\n"
		"  --fabric mpi      its collectives over MPI, under mpirun -np 2\n"
		"                    (default shm: two processes it forks)\n"
		"  --fabric-cpus A,B the fabric's two CPUs (default: the first\n"
		"                    two this process may run on)\n"
		"  --kern-types LIST only these weight types' matvec and matmul\n"
		"                    (comma list of names: q4_0,q6_K,f32); the\n"
		"                    short probe bench/validate runs before each\n"
		"                    configuration\n"
		"  --kern-shapes LIST the matvec at these shapes too (comma list\n"
		"                    of TYPE:ROWSxCOLS, a model's own: q4_0:256x2048)\n"
		"  --kern-shape-ws LIST  the working sets (MiB, comma list) their\n"
		"                    copies rotate through (default: the DRAM\n"
		"                    class's arena, 4 x LLC)\n"
		"  --kern-shape-pages huge|small  their arena on 2 MiB pages (the\n"
		"                    dram tier's, default) or 4 KiB (the mmap tier's)\n"
		"  -h, --help        this text\n"
		"  STRATA_KERNELS=ref|avx2 caps the ISA of the kernels and of the\n"
		"  DRAM sum; STRATA_FAULT (nodirect:1, eio:N ...) breaks the KV\n"
		"  writes, for tests.\n");
}

/* item(tok, ctx) on each item of the comma list, in order (empty items
 * skipped, as strtok does): -1 for an empty or over-long list, else the
 * first non-zero item() result, else 0 */
static int each_item(const char *list, int (*item)(char *tok, void *ctx),
		     void *ctx)
{
	char buf[1024], *save = NULL;

	if (!*list || strlen(list) >= sizeof(buf))
		return -1;
	strcpy(buf, list);
	for (char *tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		int rc = item(tok, ctx);

		if (rc)
			return rc;
	}
	return 0;
}

static int kern_type_item(char *tok, void *ctx)
{
	uint32_t t = mvbench_type_by_name(tok);

	if (t >= 64 || kern_row_bytes(t, KERN_COLS) <= 0) { /* the mask */
		fprintf(stderr, "probe: --kern-types: '%s' is not a weight "
			"type this probe measures (f32, f16, bf16, q4_0, "
			"q4_1, q5_0, q5_1, q8_0, q4_K, q5_K, q6_K)\n", tok);
		return 2;
	}
	*(uint64_t *)ctx |= (uint64_t)1 << t;
	return 0;
}

/* the verdict on each_item's rc for the list given to flag: 0; 2 where an
 * item said why (rc 2); 2 with "want ..." for an empty, over-long or
 * malformed list (rc -1 or 1) or one that kept nothing */
static int list_verdict(int rc, int kept, const char *flag, const char *list,
			const char *want)
{
	if (rc == 2)
		return 2;
	if (rc || !kept) {
		fprintf(stderr, "probe: %s '%s': want %s\n", flag, list, want);
		return 2;
	}
	return 0;
}

/* --kern-types LIST: comma-separated weight type names (as kbench's -t,
 * mvbench_type_by_name) into a mask; 0 or 2 with a message */
static int parse_kern_types(const char *list, uint64_t *mask)
{
	int rc;

	*mask = 0;
	rc = each_item(list, kern_type_item, mask);
	return list_verdict(rc, *mask != 0, "--kern-types", list,
			    "a comma list of weight types (q4_0,q6_K,f32 ...)");
}

/* one TYPE:ROWSxCOLS: 0, 1 for a malformed item, 2 with a message */
static int kern_shape_item(char *tok, void *ctx)
{
	struct probe_opts *o = ctx;
	int max = (int)(sizeof(o->shapes) / sizeof(o->shapes[0]));
	char *colon = strchr(tok, ':'), tail;
	long long r, c;
	uint32_t t;

	if (!colon)
		return 1;
	*colon = '\0';
	t = mvbench_type_by_name(tok);
	if (t >= KT_COUNT || sscanf(colon + 1, "%lldx%lld%c", &r, &c, &tail) != 2 ||
	    r < 1 || c < 1 || r > (1 << 20) || c > (1 << 20) ||
	    kern_row_bytes(t, c) <= 0) {
		fprintf(stderr, "probe: --kern-shapes: '%s:%s' is not a "
			"weight type and a shape it can hold (q4_0:256x2048; "
			"columns a multiple of the type's block)\n", tok,
			colon + 1);
		return 2;
	}
	if (o->n_shapes == max) {
		fprintf(stderr, "probe: --kern-shapes: at most %d shapes\n", max);
		return 2;
	}
	o->shapes[o->n_shapes++] = (struct probe_shape){t, r, c};
	return 0;
}

/* --kern-shapes T:RxC,..: weight type and matrix shape; 0 or 2 with a
 * message */
static int parse_kern_shapes(const char *list, struct probe_opts *o)
{
	int rc;

	o->n_shapes = 0;
	rc = each_item(list, kern_shape_item, o);
	return list_verdict(rc, o->n_shapes, "--kern-shapes", list,
			    "a comma list of TYPE:ROWSxCOLS "
			    "(q4_0:2048x2048,q4_0:256x2048)");
}

/* one working set in MiB, above the last: 0, or 1 */
static int shape_ws_item(char *tok, void *ctx)
{
	struct probe_opts *o = ctx;
	int max = (int)(sizeof(o->shape_ws) / sizeof(o->shape_ws[0]));
	char *end;
	double mib = strtod(tok, &end);

	if (end == tok || *end || !(mib >= 1 && mib <= 65536) ||
	    o->n_shape_ws == max ||
	    (o->n_shape_ws && mib * MIB <= o->shape_ws[o->n_shape_ws - 1]))
		return 1;
	o->shape_ws[o->n_shape_ws++] = (uint64_t)(mib * MIB);
	return 0;
}

/* --kern-shape-ws MIB,..: ascending working sets; 0 or 2 with a message */
static int parse_shape_ws(const char *list, struct probe_opts *o)
{
	int rc;

	o->n_shape_ws = 0;
	rc = each_item(list, shape_ws_item, o);
	return list_verdict(rc, o->n_shape_ws, "--kern-shape-ws", list,
			    "up to 4 ascending working sets in MiB, 1 to "
			    "65536 (96,512)");
}

/* --flash-dir must be a directory; 0 or 1 with a message */
static int check_dir(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) < 0) {
		fprintf(stderr, "probe: --flash-dir %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "probe: --flash-dir %s: not a directory\n", dir);
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "flash-dir", required_argument, NULL, 'd' },
		{ "file-size", required_argument, NULL, 's' },
		{ "quick", no_argument, NULL, 'q' },
		{ "no-flash", no_argument, NULL, 'F' },
		{ "no-dram", no_argument, NULL, 'D' },
		{ "no-kern", no_argument, NULL, 'K' },
		{ "no-kv", no_argument, NULL, 'V' },
		{ "no-sys", no_argument, NULL, 'S' },
		{ "no-fabric", no_argument, NULL, 'N' },
		{ "fabric-only", no_argument, NULL, 'O' },
		{ "fabric", required_argument, NULL, 'B' },
		{ "fabric-cpus", required_argument, NULL, 'C' },
		{ "kern-types", required_argument, NULL, 'T' },
		{ "no-small-pages", no_argument, NULL, 'P' },
		{ "kern-shapes", required_argument, NULL, 'H' },
		{ "kern-shape-ws", required_argument, NULL, 'W' },
		{ "kern-shape-pages", required_argument, NULL, 'G' },
		{ NULL, 0, NULL, 0 },
	};
	struct probe_opts o = { 0 };
	struct dram_result dram = { 0 };
	struct probe_kern kern = { 0 };
	struct probe_sys sys = { 0 };
	struct flash_result flash = { 0 };
	struct kv_result kv = { 0 };
	struct probe_fabric fab = { 0 };
	struct pc_result pc = { 0 };
	struct probe_results pr = { 0 };
	const char *file_size = NULL;
	char default_dir[4096], msg[512] = "";
	FILE *out = stdout;
	int c, err, rc = 1;
	char tail;

	o.fabric_cpu[0] = o.fabric_cpu[1] = -1;
	while ((c = getopt_long(argc, argv, "ho:", longs, NULL)) != -1) {
		switch (c) {
		case 'h': usage(stdout); return 0;
		case 'o': o.out_path = optarg; break;
		case 'd': o.flash_dir = optarg; break;
		case 's': file_size = optarg; break;
		case 'q': o.quick = 1; break;
		case 'F': o.no_flash = 1; break;
		case 'D': o.no_dram = 1; break;
		case 'K': o.no_kern = 1; break;
		case 'V': o.no_kv = 1; break;
		case 'S': o.no_sys = 1; break;
		case 'N': o.no_fabric = 1; break;
		case 'B':
			if (strcmp(optarg, "shm") && strcmp(optarg, "mpi")) {
				fprintf(stderr, "probe: --fabric %s: shm or mpi\n",
					optarg);
				return 2;
			}
			o.fabric_mpi = !strcmp(optarg, "mpi");
			break;
		case 'O':
			o.no_dram = o.no_kern = o.no_sys = o.no_flash = o.no_kv = 1;
			break;
		case 'C':
			if (sscanf(optarg, "%d,%d%c", &o.fabric_cpu[0], &o.fabric_cpu[1],
				   &tail) != 2 || o.fabric_cpu[0] < 0 ||
			    o.fabric_cpu[1] < 0 || o.fabric_cpu[0] == o.fabric_cpu[1] ||
			    o.fabric_cpu[0] >= CPU_SETSIZE ||
			    o.fabric_cpu[1] >= CPU_SETSIZE) {
				fprintf(stderr, "probe: --fabric-cpus %s: want two "
					"different CPU numbers, A,B\n", optarg);
				return 2;
			}
			break;
		case 'P': o.no_small_pages = 1; break;
		case 'T':
			if (parse_kern_types(optarg, &o.kern_mask))
				return 2;
			break;
		case 'H':
			if (parse_kern_shapes(optarg, &o))
				return 2;
			break;
		case 'W':
			if (parse_shape_ws(optarg, &o))
				return 2;
			break;
		case 'G':
			if (strcmp(optarg, "huge") && strcmp(optarg, "small")) {
				fprintf(stderr, "probe: --kern-shape-pages %s: huge or "
					"small\n", optarg);
				return 2;
			}
			o.shape_small_pages = !strcmp(optarg, "small");
			break;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return 2;
	}
	if ((o.n_shape_ws || o.shape_small_pages) && !o.n_shapes) {
		fprintf(stderr, "probe: --kern-shape-ws and --kern-shape-pages "
			"without --kern-shapes\n");
		return 2;
	}
	/* sizes chosen so the default run stays under a minute (flash at
	 * ~0.5-7 GB/s, DRAM first touch ~0.25 GB/s without huge pages) */
	o.dram_bytes = o.quick ? 256 * MIB : GIB;
	o.file_bytes = o.quick ? 256 * MIB : GIB;
	o.seq_bytes = o.quick ? 64 * MIB : 256 * MIB;
	o.seq_max_s = o.quick ? 0.15 : 0.5;
	o.passes = o.quick ? 3 : 5;
	o.lat_ops = o.quick ? 2000 : 10000;
	o.rand_max_s = o.quick ? 0.3 : 1.0;
	if (file_size && (parse_size(file_size, &o.file_bytes) ||
			  o.file_bytes < 4 * MIB)) {
		fprintf(stderr, "probe: --file-size %s: want a size of at least 4M\n",
			file_size);
		return 2;
	}
	o.file_bytes &= ~(uint64_t)(4 * MIB - 1); /* whole largest blocks */
	if (!o.flash_dir) {
		const char *env = getenv("STRATA_CACHE"), *home = getenv("HOME");

		if (env && *env)
			snprintf(default_dir, sizeof(default_dir), "%s", env);
		else
			snprintf(default_dir, sizeof(default_dir), "%s/.cache/strata",
				 home ? home : ".");
		o.flash_dir = default_dir;
	}

	if (kern_init() < 0) {
		fprintf(stderr, "probe: STRATA_KERNELS=%s names an ISA this CPU "
			"cannot run (ref, avx2, avx512)\n", getenv("STRATA_KERNELS"));
		return 1;
	}
	if ((!o.no_flash || !o.no_kv) && check_dir(o.flash_dir))
		return 1;

	/* first: it forks, and no thread may exist yet */
	if (!o.no_fabric) {
		err = probe_fabric(&o, &fab, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "probe: %s\n", msg);
			return 1;
		}
		pr.fabric = &fab;
	}
	if (!o.no_dram) {
		fprintf(stderr, "dram: touching a %llu MiB buffer ...\n",
			(unsigned long long)(o.dram_bytes / MIB));
		err = probe_dram(&o, &dram);
		if (err) {
			fprintf(stderr, "probe: DRAM buffer of %llu MiB: %s\n",
				(unsigned long long)(o.dram_bytes / MIB), strerror(-err));
			return 1;
		}
		pr.dram = &dram;
	}
	if (!o.no_kern) {
		err = probe_kern(&o, &kern);
		if (err) {
			fprintf(stderr, "probe: kernels: %s\n", strerror(-err));
			return 1;
		}
		pr.kern = &kern;
	}
	if (!o.no_sys) {
		err = probe_sys(&o, &sys, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "probe: %s\n", msg);
			return 1;
		}
		pr.sys = &sys;
	}
	if (!o.no_flash) {
		err = probe_flash(&o, &flash, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "probe: flash: %s\n", msg);
			return 1;
		}
		pr.flash = &flash;
	}
	if (!o.no_kv) {
		fprintf(stderr, "kv: writing a KV cache in %s ...\n", o.flash_dir);
		err = probe_kv(&o, &kv, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "probe: %s\n", msg);
			return 1;
		}
		pr.kv = &kv;
	}
	if (!o.no_flash) {
		err = probe_page_cache(&o, &pc, msg, sizeof(msg));
		if (err) {
			fprintf(stderr, "probe: %s\n", msg);
			return 1;
		}
		pr.pc = &pc;
		fprintf(stderr, "\npage cache: %.3f ns a byte mapped on first touch "
			"(%.0f minor faults for %llu MiB)\n", pc.ns_per_byte, pc.faults,
			(unsigned long long)(pc.bytes / MIB));
	}
	print_table(&o, &pr);

	if (o.out_path && !(out = fopen(o.out_path, "w"))) {
		fprintf(stderr, "probe: -o %s: %s\n", o.out_path, strerror(errno));
		return 1;
	}
	err = write_json(out, &o, &pr);
	if (out != stdout && fclose(out) && !err)
		err = -EIO;
	if (err) {
		fprintf(stderr, "probe: writing the profile: %s\n", strerror(-err));
		if (o.out_path)
			unlink(o.out_path); /* no partial profile left behind */
	} else {
		rc = 0;
	}
	return rc;
}
