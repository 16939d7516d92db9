/*
 * fabric.c - chips as processes, collectives over one shared-memory
 * segment. See fabric.h.
 */
#include "engine/fabric.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/fabric_mpi.h"
#include "models/util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define FAB_MAGIC 0x53464142u /* "SFAB" */

/* one chip's words, each on its own cache line */
struct fab_chip {
	_Alignas(64) atomic_uint pub;   /* chunks published */
	_Atomic int64_t vis_ns[2];      /* slot b's chunk visible from (emul.) */
	_Alignas(64) atomic_uint consumed; /* chunks it finished reading */
	_Alignas(64) atomic_int pid;
	atomic_int cma;                 /* start: 1 could read chip 0, 2 not */
};

struct fab_shm {
	uint32_t magic, n_chips;
	uint64_t slot_bytes, slots_off;
	_Alignas(64) atomic_uint bell;  /* futex word: bumped when one sleeps */
	_Alignas(64) atomic_int sleepers;
	_Alignas(64) atomic_int abort_rc;  /* published last (seq_cst) */
	atomic_int abort_claim;           /* the chip writing the message */
	atomic_int abort_chip;
	char abort_msg[256];
	_Alignas(64) atomic_int stop_sig;
	atomic_int cma_on;              /* chip 0's verdict: 1 on, 2 off */
	struct fab_chip chip[FABRIC_MAX_CHIPS];
};

struct fabric {
	int n_chips, chip;
	struct fabric_config cfg;
	struct fab_shm *shm;
	size_t map_bytes;
	uint32_t seq;          /* chunks so far (same on every chip) */
	uint64_t n_ops;        /* collectives so far */
	int64_t spin_ns, lat_ns, timeout_ns;
	int64_t link_free_ns;  /* emulated outbound link busy until */
	int pidfd[FABRIC_MAX_CHIPS];
	struct fabric_stats st;
	uint32_t *samples[FABRIC_OP_COUNT]; /* [FABRIC_SAMPLES] */
	uint64_t n_samples[FABRIC_OP_COUNT];
	bool quiet;            /* control traffic: not recorded */
	/* the op in progress, for messages */
	enum fabric_op cur_op;
	char err[320];
	/* FABRIC_MPI */
	struct fmpi *m;
	int local, n_local;
	volatile sig_atomic_t stop;  /* a signal this chip was sent */
	atomic_int mpi_abort_rc;     /* fabric_abort was called here */
	char mpi_abort_msg[256];
	pthread_t main_thread;
	size_t cma_min;              /* single-copy all-gathers from; 0: off */
	char *stage;                 /* packed parts / gathered vectors */
	size_t stage_bytes;
	char host[256];
};

static const char *const op_names[FABRIC_OP_COUNT] = {"allgather",
						      "allreduce", "bcast"};

const char *fabric_op_name(enum fabric_op op)
{
	return op < FABRIC_OP_COUNT ? op_names[op] : "?";
}

int fabric_chip(const struct fabric *f) { return f ? f->chip : 0; }
int fabric_chips(const struct fabric *f) { return f ? f->n_chips : 1; }

int fabric_pid(const struct fabric *f, int chip)
{
	if (f && f->m)
		return chip == f->chip ? (int)getpid() : 0;
	if (!f || !f->shm)
		return (int)getpid();
	return atomic_load(&f->shm->chip[chip].pid);
}

void fabric_local(const struct fabric *f, int *index, int *count)
{
	*index = f ? (f->m ? f->local : f->chip) : 0;
	*count = f ? (f->m ? f->n_local : f->n_chips) : 1;
}

const char *fabric_host(const struct fabric *f)
{
	return f ? f->host : "";
}

const char *fabric_backend_name(const struct fabric *f)
{
	return f && f->m ? "mpi" : "shm";
}

bool fabric_is_mpi(const struct fabric *f)
{
	return f && f->m;
}

const char *fabric_library(const struct fabric *f)
{
	return f && f->m ? fmpi_library(f->m) : "";
}

const char *fabric_error(const struct fabric *f)
{
	return f ? f->err : "";
}

/* ---- waiting ------------------------------------------------------------ */

static long futex(atomic_uint *w, int op, unsigned val,
		  const struct timespec *ts)
{
	/* shared (not _PRIVATE): the word is in a mapping of several processes */
	return syscall(SYS_futex, (unsigned *)w, op, val, ts, NULL, 0);
}

/* After a change a waiter may sleep on: ring the bell only when someone
 * may sleep. The fence orders the change before the load of sleepers; a
 * waiter bumps sleepers (seq_cst) before it looks at the change again,
 * so either it sees the change or this sees it (and a missed wake would
 * still end at the FABRIC_CHECK_MS timeout). */
static void ring(struct fab_shm *s)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load(&s->sleepers)) {
		atomic_fetch_add(&s->bell, 1);
		futex(&s->bell, FUTEX_WAKE, INT_MAX, NULL);
	}
}

static int seq_ge(unsigned a, unsigned b)
{
	return (int)(a - b) >= 0;
}

/* peer chip p has exited (pidfd readable), as far as one can tell */
static bool peer_gone(struct fabric *f, int p)
{
	if (f->pidfd[p] < 0) {
		int pid = atomic_load(&f->shm->chip[p].pid);
		if (pid <= 0)
			return false; /* not forked yet */
		f->pidfd[p] = (int)syscall(SYS_pidfd_open, pid, 0);
		if (f->pidfd[p] < 0) /* ESRCH: already gone */
			return errno == ESRCH;
	}
	struct pollfd pf = {.fd = f->pidfd[p], .events = POLLIN};
	return poll(&pf, 1, 0) == 1;
}

static int fail(struct fabric *f, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct fabric *f, int rc, const char *fmt, ...)
{
	va_list ap;

	if (!f->err[0]) {
		va_start(ap, fmt);
		vsnprintf(f->err, sizeof(f->err), fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* an abort raised by another chip, as this chip's error */
static int aborted(struct fabric *f)
{
	int rc = atomic_load(&f->shm->abort_rc);

	if (!rc)
		return 0;
	return fail(f, -ECONNABORTED, "chip %d stopped the fabric: %s",
		    atomic_load(&f->shm->abort_chip), f->shm->abort_msg);
}

/* Wait until *w >= target (w: peer `who`'s counter). idle: no timeout. */
static int wait_ge(struct fabric *f, atomic_uint *w, unsigned target, int who,
		   bool idle)
{
	struct fab_shm *s = f->shm;
	int64_t t0 = now_ns(), spin_end = t0 + f->spin_ns;
	int rc;

	for (unsigned i = 1;; i++) {
		if (seq_ge(atomic_load_explicit(w, memory_order_acquire), target))
			return 0;
		if (atomic_load_explicit(&s->abort_rc, memory_order_relaxed))
			return aborted(f);
		if ((i & 63) == 0 && now_ns() > spin_end)
			break;
		cpu_relax();
	}
	for (;;) {
		unsigned b = atomic_load(&s->bell);
		atomic_fetch_add(&s->sleepers, 1);
		if (!seq_ge(atomic_load(w), target) && !atomic_load(&s->abort_rc)) {
			struct timespec ts = {0, FABRIC_CHECK_MS * 1000000L};
			futex(&s->bell, FUTEX_WAIT, b, &ts);
		}
		atomic_fetch_sub(&s->sleepers, 1);
		if (seq_ge(atomic_load_explicit(w, memory_order_acquire), target))
			return 0;
		if ((rc = aborted(f)))
			return rc;
		/* only the chip waited for: one that has done its part and
		 * left is no failure; a chip waiting on a dead third one
		 * notices it itself and aborts */
		if (peer_gone(f, who))
			return fail(f, -ECONNABORTED,
				    "chip %d (pid %d) exited during %s #%llu",
				    who, atomic_load(&s->chip[who].pid),
				    op_names[f->cur_op], (unsigned long long)f->n_ops);
		if (!idle && now_ns() - t0 > f->timeout_ns)
			return fail(f, -ETIMEDOUT,
				    "chip %d did not reach %s #%llu within %.1f s "
				    "(--fabric-timeout-s)", who, op_names[f->cur_op],
				    (unsigned long long)f->n_ops,
				    (double)f->timeout_ns / 1e9);
	}
}

/* a calibrated spin until now_ns() >= t (emulated link delay) */
static void spin_until(int64_t t)
{
	while (now_ns() < t)
		cpu_relax();
}

/* ---- layouts -------------------------------------------------------------- */

static size_t part_bytes(const struct fabric_layout *l, int c)
{
	if (l->cols)
		return (size_t)(l->cols[c + 1] - l->cols[c]) * l->elem * (size_t)l->nb;
	size_t n = 0;
	for (int64_t i = 0; i < l->nb; i++)
		n += l->owner[i] == c;
	return n * (size_t)l->row_len * l->elem;
}

/* Copy bytes [lo, hi) of chip c's part of buf to (to_slot) or from slot. */
static void part_copy(const struct fabric_layout *l, char *buf, int c,
		      size_t lo, size_t hi, char *slot, bool to_slot)
{
	size_t seg, pos = 0;

	if (lo >= hi)
		return;
	if (l->cols)
		seg = (size_t)(l->cols[c + 1] - l->cols[c]) * l->elem;
	else
		seg = (size_t)l->row_len * l->elem;
	for (int64_t i = 0; i < l->nb && pos < hi; i++) {
		if (!l->cols && l->owner[i] != c)
			continue;
		size_t a = pos > lo ? pos : lo, b = pos + seg < hi ? pos + seg : hi;
		if (a < b) {
			char *p = buf + (size_t)i * (size_t)l->ld * l->elem +
				  (l->cols ? (size_t)l->cols[c] * l->elem : 0) + (a - pos);
			if (to_slot)
				memcpy(slot + (a - lo), p, b - a);
			else
				memcpy(p, slot + (a - lo), b - a);
		}
		pos += seg;
	}
}

/* ---- chunks ----------------------------------------------------------------- */

static char *slot(const struct fabric *f, int c, unsigned n)
{
	return (char *)f->shm + f->shm->slots_off +
	       ((size_t)c * 2 + (n & 1)) * f->shm->slot_bytes;
}

/* Before writing chunk n: everybody has consumed chunk n - 2 (the last
 * one in this slot). */
static int chunk_begin(struct fabric *f, unsigned n, int64_t *wait)
{
	int64_t t0 = now_ns();
	int rc = 0;

	/* no shortcut for n < 2: seq_ge(0, n - 1) already holds for the
	 * first two chunks, and a shortcut on n would skip the wait again
	 * when the 32-bit count wraps */
	for (int p = 0; p < f->n_chips && !rc; p++)
		if (p != f->chip)
			rc = wait_ge(f, &f->shm->chip[p].consumed, n - 1, p, false);
	*wait += now_ns() - t0;
	return rc;
}

static void chunk_publish(struct fabric *f, unsigned n, size_t bytes)
{
	struct fab_chip *me = &f->shm->chip[f->chip];
	int64_t vis = 0;

	if (f->lat_ns > 0 || f->cfg.gbps > 0) {
		int64_t t = now_ns();
		if (t < f->link_free_ns)
			t = f->link_free_ns;
		if (f->cfg.gbps > 0) /* 1 GB/s moves a byte per ns */
			t += (int64_t)((double)bytes / f->cfg.gbps);
		f->link_free_ns = t;
		vis = t + f->lat_ns;
	}
	atomic_store_explicit(&me->vis_ns[n & 1], vis, memory_order_relaxed);
	atomic_store_explicit(&me->pub, n + 1, memory_order_release);
	ring(f->shm);
}

/* wait for peer p's chunk n and for it to become visible */
static int chunk_wait(struct fabric *f, int p, unsigned n, bool idle,
		      int64_t *wait)
{
	int64_t t0 = now_ns();
	int rc = wait_ge(f, &f->shm->chip[p].pub, n + 1, p, idle);

	*wait += now_ns() - t0;
	if (!rc) {
		int64_t vis = atomic_load_explicit(&f->shm->chip[p].vis_ns[n & 1],
						   memory_order_relaxed);
		if (vis)
			spin_until(vis);
	}
	return rc;
}

static void chunk_done(struct fabric *f, unsigned n)
{
	atomic_store_explicit(&f->shm->chip[f->chip].consumed, n + 1,
			      memory_order_release);
	ring(f->shm);
}

/* ---- stats -------------------------------------------------------------- */

static void record(struct fabric *f, enum fabric_op op, int64_t t0,
		   uint64_t bytes, int64_t wait)
{
	struct fabric_op_stats *s = &f->st.op[op];
	int64_t ns = now_ns() - t0;

	if (f->quiet)
		return;
	uint32_t v = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
	uint64_t i = f->n_samples[op]++;
	int b = 0;

	s->count++;
	s->bytes += bytes;
	s->ns += ns;
	s->wait_ns = wait < 0 || s->wait_ns < 0 ? -1 : s->wait_ns + wait;
	if (ns > s->max_ns)
		s->max_ns = ns;
	while (b < 39 && (1ll << (b + 1)) <= ns)
		b++;
	s->hist[b]++;
	if (i < FABRIC_SAMPLES) {
		f->samples[op][i] = v;
	} else { /* a uniform sample: reservoir with a fixed hash */
		uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull;
		h ^= h >> 29;
		if (h % (i + 1) < FABRIC_SAMPLES)
			f->samples[op][h % FABRIC_SAMPLES] = v;
	}
}

void fabric_quiet(struct fabric *f, bool quiet)
{
	if (f)
		f->quiet = quiet;
}

const struct fabric_stats *fabric_get_stats(const struct fabric *f)
{
	return &f->st;
}

void fabric_stats_reset(struct fabric *f)
{
	memset(&f->st, 0, sizeof(f->st));
	memset(f->n_samples, 0, sizeof(f->n_samples));
	for (int o = 0; o < FABRIC_OP_COUNT && f->m; o++)
		f->st.op[o].wait_ns = -1; /* MPI's calls do not say */
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

void fabric_percentiles(struct fabric *f, enum fabric_op op, double *p50,
			double *p99)
{
	uint64_t n = f->n_samples[op] < FABRIC_SAMPLES ? f->n_samples[op]
						       : FABRIC_SAMPLES;

	*p50 = *p99 = 0;
	if (!n)
		return;
	qsort(f->samples[op], n, sizeof(uint32_t), cmp_u32);
	*p50 = f->samples[op][(n - 1) / 2];
	*p99 = f->samples[op][(n - 1) * 99 / 100];
}

/* ---- collectives -------------------------------------------------------- */

static int mpi_aborted(struct fabric *f)
{
	if (!atomic_load(&f->mpi_abort_rc))
		return 0;
	return fail(f, -ECONNABORTED, "chip %d stopped the fabric: %s", f->chip,
		    f->mpi_abort_msg);
}

static int op_enter(struct fabric *f, enum fabric_op op)
{
	f->cur_op = op;
	f->n_ops++;
	if (f->cfg.stall_op > 0 && f->chip == f->cfg.stall_chip &&
	    f->n_ops == (uint64_t)f->cfg.stall_op) {
		/* a stalled chip, not a dead one: it wakes when aborted */
		int64_t end = now_ns() + (int64_t)(f->cfg.stall_s * 1e9);
		while (now_ns() < end &&
		       !(f->m ? atomic_load(&f->mpi_abort_rc)
			      : atomic_load(&f->shm->abort_rc))) {
			struct timespec ts = {0, 10000000};
			nanosleep(&ts, NULL);
		}
	}
	if (f->err[0] && f->m) /* a failed MPI call: nothing after it works */
		return -ECONNABORTED;
	return f->m ? mpi_aborted(f) : aborted(f);
}

/* the MPI call's wait: as the shm fabric's */
static struct fmpi_wait mpi_wait(const struct fabric *f, bool idle)
{
	return (struct fmpi_wait){.spin_ns = f->spin_ns,
				  .timeout_ns = f->timeout_ns, .idle = idle,
				  .op = op_names[f->cur_op], .n = f->n_ops};
}

static char *stage(struct fabric *f, size_t bytes)
{
	if (bytes > f->stage_bytes) {
		free(f->stage);
		f->stage = xmalloc(bytes);
		f->stage_bytes = bytes;
	}
	return f->stage;
}

/* y = ((s0 + s1) + s2) ... element by element, in chip order */
static void sum_in_order(float *y, const float *const *src, int n, int64_t m)
{
	const float *a = src[0], *b = src[1];

	/* simd: y may be a (element-wise, no carried dependence) */
#pragma omp simd
	for (int64_t j = 0; j < m; j++)
		y[j] = a[j] + b[j];
	for (int p = 2; p < n; p++) {
		const float *x = src[p];
#pragma omp simd
		for (int64_t j = 0; j < m; j++)
			y[j] += x[j];
	}
}

/* MPI: the parts packed into one byte buffer (or buf itself: a row of
 * columns is contiguous already), MPI_(I)allgatherv / gatherv, unpacked */
static int mpi_allgather(struct fabric *f, void *buf,
			 const struct fabric_layout *l, const size_t *len,
			 uint64_t *bytes)
{
	int cnt[FABRIC_MAX_CHIPS], disp[FABRIC_MAX_CHIPS];
	const bool direct = l->cols && l->nb == 1;
	const bool reader = l->root < 0 || l->root == f->chip;
	size_t tot = 0;

	for (int c = 0; c < f->n_chips; c++) {
		if (len[c] > INT_MAX || tot > INT_MAX - len[c])
			return fail(f, -EMSGSIZE, "%s #%llu: %zu bytes: over MPI's "
				    "int counts", op_names[f->cur_op],
				    (unsigned long long)f->n_ops, tot + len[c]);
		cnt[c] = (int)len[c];
		disp[c] = direct ? (int)((size_t)l->cols[c] * l->elem) : (int)tot;
		tot += len[c];
	}
	char *b = direct ? buf : stage(f, tot ? tot : 1);
	if (!direct)
		part_copy(l, buf, f->chip, 0, len[f->chip], b + disp[f->chip], true);
	struct fmpi_wait w = mpi_wait(f, false);
	int rc = fmpi_allgatherv(f->m, b, cnt, disp, l->root, &w, f->err,
				 sizeof(f->err));
	if (rc)
		return rc;
	*bytes = len[f->chip];
	for (int c = 0; c < f->n_chips && reader; c++) {
		if (c == f->chip)
			continue;
		if (!direct)
			part_copy(l, buf, c, 0, len[c], b + disp[c], false);
		*bytes += len[c];
	}
	return 0;
}

/* MPI: two chips, MPI's own all-reduce (a + b is b + a: the shm fabric's
 * bits); more, every vector gathered and added here in chip order */
static int mpi_allreduce(struct fabric *f, float *buf, int64_t n,
			 uint64_t *bytes)
{
	struct fmpi_wait w = mpi_wait(f, false);
	int rc;

	if (f->n_chips == 2) {
		rc = fmpi_allreduce2(f->m, buf, n, &w, f->err, sizeof(f->err));
	} else {
		float *all = (float *)stage(f, (size_t)f->n_chips * (size_t)n *
					    sizeof(float) + 1);
		const float *src[FABRIC_MAX_CHIPS];
		rc = fmpi_allgather_f(f->m, buf, all, n, &w, f->err, sizeof(f->err));
		for (int p = 0; p < f->n_chips; p++)
			src[p] = all + (size_t)p * (size_t)n;
		if (!rc)
			sum_in_order(buf, src, f->n_chips, n);
	}
	*bytes = (uint64_t)f->n_chips * (uint64_t)n * sizeof(float);
	return rc;
}

/* Read chip p's part of buf (remote: p's address of its buf) into the
 * same place of this chip's buf, IOV_MAX rows a call. */
static int cma_read(struct fabric *f, const struct fabric_layout *l, char *buf,
		    uint64_t remote, int p, size_t want)
{
	enum { BATCH = 512 };
	struct iovec lv[BATCH], rv[BATCH];
	size_t seg = l->cols ? (size_t)(l->cols[p + 1] - l->cols[p]) * l->elem
			     : (size_t)l->row_len * l->elem;
	size_t got = 0;
	int k = 0;
	pid_t pid = atomic_load(&f->shm->chip[p].pid);

	for (int64_t i = 0; i <= l->nb; i++) {
		if (i < l->nb && (l->cols || l->owner[i] == p) && seg) {
			size_t off = (size_t)i * (size_t)l->ld * l->elem +
				     (l->cols ? (size_t)l->cols[p] * l->elem : 0);
			lv[k] = (struct iovec){buf + off, seg};
			rv[k] = (struct iovec){(void *)(uintptr_t)(remote + off), seg};
			k++;
		}
		if (k == BATCH || (i == l->nb && k)) {
			size_t n = (size_t)k * seg;
			ssize_t r = process_vm_readv(pid, lv, (unsigned long)k, rv,
						     (unsigned long)k, 0);
			if (r != (ssize_t)n)
				return fail(f, -EIO, "allgather #%llu: reading chip %d's "
					    "part (pid %d): %s",
					    (unsigned long long)f->n_ops, p, (int)pid,
					    r < 0 ? strerror(errno) : "short read");
			got += n;
			k = 0;
		}
	}
	return got == want ? 0 : fail(f, -EIO, "allgather #%llu: %zu of %zu bytes "
				      "of chip %d's part", (unsigned long long)f->n_ops,
				      got, want, p);
}

/* Single-copy: one chunk carries this chip's buffer address; readers copy
 * the parts straight from their owners; an owner returns when every peer
 * has finished the chunk (its part may be read until then). */
static int cma_allgather(struct fabric *f, void *buf, const struct fabric_layout *l,
			 const size_t *len, uint64_t *bytes, int64_t *wait)
{
	const bool reader = l->root < 0 || l->root == f->chip;
	unsigned n = f->seq++;
	int rc;

	if ((rc = chunk_begin(f, n, wait)))
		return rc;
	memcpy(slot(f, f->chip, n), &(uint64_t){(uintptr_t)buf}, sizeof(uint64_t));
	*bytes += len[f->chip];
	chunk_publish(f, n, len[f->chip]);
	for (int p = 0; p < f->n_chips && reader && !rc; p++) {
		uint64_t remote;
		if (p == f->chip || !len[p])
			continue;
		if ((rc = chunk_wait(f, p, n, false, wait)))
			break;
		memcpy(&remote, slot(f, p, n), sizeof(remote));
		if (!(rc = cma_read(f, l, buf, remote, p, len[p])))
			*bytes += len[p];
	}
	chunk_done(f, n);
	int64_t t0 = now_ns();
	for (int p = 0; p < f->n_chips && !rc && len[f->chip]; p++)
		if (p != f->chip)
			rc = wait_ge(f, &f->shm->chip[p].consumed, n + 1, p, false);
	*wait += now_ns() - t0;
	return rc;
}

int fabric_allgather(struct fabric *f, void *buf, const struct fabric_layout *l)
{
	size_t S, len[FABRIC_MAX_CHIPS], most = 0;
	uint64_t bytes = 0;
	int64_t t0 = now_ns(), wait = 0;
	int rc;

	if (!f || f->n_chips == 1)
		return 0;
	if ((rc = op_enter(f, FABRIC_ALLGATHER)))
		return rc;
	S = f->m ? 0 : f->shm->slot_bytes;
	for (int c = 0; c < f->n_chips; c++) {
		len[c] = part_bytes(l, c);
		most = len[c] > most ? len[c] : most;
	}
	if (f->m) {
		rc = mpi_allgather(f, buf, l, len, &bytes);
		record(f, FABRIC_ALLGATHER, t0, bytes, -1);
		return rc;
	}
	if (f->cma_min && most >= f->cma_min) {
		rc = cma_allgather(f, buf, l, len, &bytes, &wait);
		record(f, FABRIC_ALLGATHER, t0, bytes, wait);
		return rc;
	}
	size_t n_chunks = most ? (most + S - 1) / S : 1;
	bool reader = l->root < 0 || l->root == f->chip;
	for (size_t k = 0; k < n_chunks && !rc; k++) {
		unsigned n = f->seq++;
		size_t lo = k * S;
		if ((rc = chunk_begin(f, n, &wait)))
			break;
		size_t hi = lo + S < len[f->chip] ? lo + S : len[f->chip];
		part_copy(l, buf, f->chip, lo, hi, slot(f, f->chip, n), true);
		bytes += hi > lo ? hi - lo : 0;
		chunk_publish(f, n, hi > lo ? hi - lo : 0);
		for (int p = 0; p < f->n_chips && reader && !rc; p++) {
			size_t phi = lo + S < len[p] ? lo + S : len[p];
			if (p == f->chip || phi <= lo)
				continue;
			if ((rc = chunk_wait(f, p, n, false, &wait)))
				break;
			part_copy(l, buf, p, lo, phi, slot(f, p, n), false);
			bytes += phi - lo;
		}
		chunk_done(f, n);
	}
	record(f, FABRIC_ALLGATHER, t0, bytes, wait);
	return rc;
}

int fabric_allreduce(struct fabric *f, float *buf, int64_t n_el)
{
	uint64_t bytes = 0;
	int64_t t0 = now_ns(), wait = 0;
	int rc;

	if (!f || f->n_chips == 1)
		return 0;
	if ((rc = op_enter(f, FABRIC_ALLREDUCE)))
		return rc;
	if (f->m) {
		rc = mpi_allreduce(f, buf, n_el, &bytes);
		record(f, FABRIC_ALLREDUCE, t0, bytes, -1);
		return rc;
	}
	const int64_t per = (int64_t)(f->shm->slot_bytes / sizeof(float));
	const float *src[FABRIC_MAX_CHIPS];
	for (int64_t j0 = 0; (j0 < n_el || j0 == 0) && !rc; j0 += per) {
		int64_t m = n_el - j0 < per ? n_el - j0 : per;
		unsigned n = f->seq++;
		if ((rc = chunk_begin(f, n, &wait)))
			break;
		memcpy(slot(f, f->chip, n), buf + j0, (size_t)m * sizeof(float));
		chunk_publish(f, n, (size_t)m * sizeof(float));
		bytes += (uint64_t)m * sizeof(float);
		for (int p = 0; p < f->n_chips && !rc; p++) {
			/* own part from buf (its bits are the slot's) where
			 * only the first pass reads it, before it is written */
			src[p] = p == f->chip && p < 2 ? buf + j0
						       : (const float *)slot(f, p, n);
			if (p != f->chip) {
				rc = chunk_wait(f, p, n, false, &wait);
				bytes += (uint64_t)m * sizeof(float);
			}
		}
		if (!rc) /* every chip adds the same slots in the same order */
			sum_in_order(buf + j0, src, f->n_chips, m);
		chunk_done(f, n);
		if (m == 0)
			break;
	}
	record(f, FABRIC_ALLREDUCE, t0, bytes, wait);
	return rc;
}

int fabric_bcast(struct fabric *f, void *buf, size_t n_bytes, int root, bool idle)
{
	uint64_t bytes = 0;
	int64_t t0 = now_ns(), wait = 0;
	int rc;

	if (!f || f->n_chips == 1)
		return 0;
	if ((rc = op_enter(f, FABRIC_BCAST)))
		return rc;
	if (f->m) {
		struct fmpi_wait w = mpi_wait(f, idle && f->chip != root);
		rc = fmpi_bcast(f->m, buf, n_bytes, root, &w, f->err,
				sizeof(f->err));
		if (!(idle && f->chip != root))
			record(f, FABRIC_BCAST, t0, n_bytes, -1);
		return rc;
	}
	const size_t S = f->shm->slot_bytes;
	for (size_t lo = 0; (lo < n_bytes || lo == 0) && !rc; lo += S) {
		size_t m = n_bytes - lo < S ? n_bytes - lo : S;
		unsigned n = f->seq++;
		if ((rc = chunk_begin(f, n, &wait)))
			break;
		if (f->chip == root)
			memcpy(slot(f, root, n), (char *)buf + lo, m);
		chunk_publish(f, n, f->chip == root ? m : 0);
		bytes += m;
		/* the first chunk of an idle wait may take any time */
		if (f->chip != root &&
		    !(rc = chunk_wait(f, root, n, idle && lo == 0, &wait)))
			memcpy((char *)buf + lo, slot(f, root, n), m);
		chunk_done(f, n);
		if (m == 0)
			break;
	}
	/* a chip waiting for its next command is idle, not in the fabric:
	 * the root's side of the broadcast is what is measured */
	if (!(idle && f->chip != root))
		record(f, FABRIC_BCAST, t0, bytes, wait);
	return rc;
}

static void mpi_abort(struct fabric *f, int rc, const char *msg)
{
	int zero = 0;

	if (atomic_compare_exchange_strong(&f->mpi_abort_rc, &zero,
					   rc ? rc : -ECONNABORTED))
		snprintf(f->mpi_abort_msg, sizeof(f->mpi_abort_msg), "%s",
			 msg && msg[0] ? msg : strerror(rc < 0 ? -rc : rc));
	/* only the main thread may call MPI; a unit's failure comes back to
	 * it (and here again) through the pool */
	if (f->chip == 0 || !pthread_equal(pthread_self(), f->main_thread))
		return;
	fprintf(stderr, "error: chip %d (%s): %s\n", f->chip, f->host,
		f->mpi_abort_msg);
	fmpi_abort_job(f->m, 1);
}

void fabric_abort(struct fabric *f, int rc, const char *msg)
{
	int zero = 0;

	if (f && f->m) {
		mpi_abort(f, rc, msg);
		return;
	}
	if (!f || !f->shm)
		return;
	/* the first chip claims the abort, writes who and why, then
	 * publishes abort_rc: whoever sees abort_rc sees the message (a
	 * chip that aborts and exits at once is named for its reason, not
	 * for its exit) */
	if (atomic_compare_exchange_strong(&f->shm->abort_claim, &zero, 1)) {
		atomic_store(&f->shm->abort_chip, f->chip);
		snprintf(f->shm->abort_msg, sizeof(f->shm->abort_msg), "%s",
			 msg && msg[0] ? msg : strerror(rc < 0 ? -rc : rc));
		atomic_store(&f->shm->abort_rc, rc ? rc : -ECONNABORTED);
	} else {
		while (!atomic_load(&f->shm->abort_rc)) /* the winner is writing */
			cpu_relax();
	}
	ring(f->shm);
}

int fabric_abort_chip(const struct fabric *f)
{
	if (f && f->m)
		return atomic_load(&f->mpi_abort_rc) ? f->chip : -1;
	if (!f || !f->shm || !atomic_load(&f->shm->abort_rc))
		return -1;
	return atomic_load(&f->shm->abort_chip);
}

void fabric_request_stop(struct fabric *f, int sig)
{
	if (f && f->m) /* the next wait forwards it to chip 0 */
		f->stop = sig;
	else if (f && f->shm)
		atomic_store(&f->shm->stop_sig, sig);
}

int fabric_stop_requested(struct fabric *f)
{
	if (f && f->m)
		return f->stop ? (int)f->stop : fmpi_stop_from_peer(f->m);
	return f && f->shm ? atomic_load(&f->shm->stop_sig) : 0;
}

/* ---- processes ------------------------------------------------------------ */

static void fabric_free(struct fabric *f)
{
	if (!f)
		return;
	for (int p = 0; p < FABRIC_MAX_CHIPS; p++)
		if (f->pidfd[p] >= 0)
			close(f->pidfd[p]);
	if (f->shm)
		munmap(f->shm, f->map_bytes);
	for (int o = 0; o < FABRIC_OP_COUNT; o++)
		free(f->samples[o]);
	free(f->stage);
	free(f);
}

/* Single-copy all-gathers need every chip to read another's memory: each
 * chip lets any process of its user attach (Yama's scope 1 needs it for
 * siblings), and each child reads a word of chip 0's; chip 0 turns them
 * on only if every child could. */
static volatile uint64_t cma_probe = 0x53464142434d4121ull;

static bool cma_can_read(pid_t pid)
{
	uint64_t v = 0;
	struct iovec lv = {&v, sizeof(v)};
	struct iovec rv = {(void *)&cma_probe, sizeof(v)};

	return process_vm_readv(pid, &lv, 1, &rv, 1, 0) == (ssize_t)sizeof(v) &&
	       v == cma_probe;
}

/* wait (at most 5 s) until *w != 0; its value, or 2 (off) */
static int cma_wait(atomic_int *w)
{
	for (int i = 0; i < 50000; i++) {
		int v = atomic_load(w);
		if (v)
			return v;
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
	return 2;
}

/* A wait's spin (both backends): cfg's, or 1 ms unless the chips on this
 * host (n_here) x their units exceed its CPUs, where spinning on a shared
 * core only delays the chip it waits for */
static int64_t spin_of(const struct fabric_config *cfg, int n_here)
{
	long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
	int units = cfg->units_per_chip > 0 ? cfg->units_per_chip : 1;

	if (cfg->spin_us >= 0)
		return (int64_t)(cfg->spin_us * 1e3);
	return (long)n_here * units > n_cpu ? 0 : 1000000;
}

/* the checks a rank makes of its own flags against the job; "" if none */
static void mpi_verdict(const struct fabric_config *cfg, int n, char *v,
			size_t vlen)
{
	v[0] = '\0';
	if (cfg->n_chips > 1 && cfg->n_chips != n)
		snprintf(v, vlen, "--chips %d, but mpirun started %d rank%s "
			 "(with --fabric mpi the ranks are the chips: leave "
			 "--chips out, or give mpirun -np %d)", cfg->n_chips, n,
			 n == 1 ? "" : "s", cfg->n_chips);
	else if (n > FABRIC_MAX_CHIPS)
		snprintf(v, vlen, "--fabric mpi: %d ranks; at most %d chips", n,
			 FABRIC_MAX_CHIPS);
	else if (cfg->latency_us > 0 || cfg->gbps > 0)
		snprintf(v, vlen, "--fabric-latency-us and --fabric-gbps "
			 "emulate links of the shm fabric; with --fabric mpi the "
			 "links are real (add delay with tc netem)");
}

static int mpi_start(struct fabric *f, const struct fabric_config *cfg,
		     int *chip, char *err, size_t errlen)
{
	enum { V = 240 };
	int n = 0, rc;

	if ((rc = fmpi_start(&f->m, &f->chip, &n, &f->local, &f->n_local,
			     &f->stop, err, errlen)))
		return rc;
	snprintf(f->host, sizeof(f->host), "%s", fmpi_host(f->m));
	*chip = f->chip;
	fabric_stats_reset(f);
	f->spin_ns = spin_of(cfg, f->n_local);
	/* every rank's verdict to every rank (ranks of an MPMD job may have
	 * other flags), so that all of them agree whether to go on */
	char *v = xcalloc((size_t)n, V);
	int *len = xcalloc((size_t)n, sizeof(int)), *disp = xcalloc((size_t)n, sizeof(int));
	for (int c = 0; c < n; c++)
		len[c] = V, disp[c] = c * V;
	mpi_verdict(cfg, n, v + (size_t)f->chip * V, V);
	struct fmpi_wait w = mpi_wait(f, false);
	rc = fmpi_allgatherv(f->m, v, len, disp, -1, &w, err, errlen);
	for (int c = 0; !rc && c < n; c++)
		if (v[(size_t)c * V]) {
			if (c == f->chip)
				snprintf(err, errlen, "%s", v + (size_t)c * V);
			else
				snprintf(err, errlen, "chip %d: %.*s", c, V,
					 v + (size_t)c * V);
			rc = -EINVAL;
			break;
		}
	free(v);
	free(len);
	free(disp);
	if (rc)
		return rc;
	f->n_chips = n;
	return 0;
}

int fabric_start(struct fabric **out, const struct fabric_config *cfg, int *chip,
		 char *err, size_t errlen)
{
	struct fabric *f;
	int fd;

	*out = NULL;
	*chip = 0;
	if (cfg->n_chips < 1 || cfg->n_chips > FABRIC_MAX_CHIPS) {
		snprintf(err, errlen, "--chips %d: from 1 to %d", cfg->n_chips,
			 FABRIC_MAX_CHIPS);
		return -EINVAL;
	}
	f = xcalloc(1, sizeof(*f));
	f->cfg = *cfg;
	f->n_chips = cfg->n_chips;
	f->main_thread = pthread_self();
	for (int p = 0; p < FABRIC_MAX_CHIPS; p++)
		f->pidfd[p] = -1;
	for (int o = 0; o < FABRIC_OP_COUNT; o++)
		f->samples[o] = xcalloc(FABRIC_SAMPLES, sizeof(uint32_t));
	f->timeout_ns = (int64_t)((cfg->timeout_s > 0 ? cfg->timeout_s : 30) * 1e9);
	if (gethostname(f->host, sizeof(f->host) - 1))
		snprintf(f->host, sizeof(f->host), "?");
	*out = f;
	if (cfg->backend == FABRIC_MPI) {
		int rc = mpi_start(f, cfg, chip, err, errlen);
		if (rc) { /* every rank gets the same verdict */
			if (f->m)
				fmpi_finish(f->m);
			f->m = NULL;
			fabric_free(f);
			*out = NULL;
		}
		return rc;
	}
	if (f->n_chips == 1)
		return 0;

	size_t S = cfg->slot_bytes ? (cfg->slot_bytes + 63) / 64 * 64 : 1u << 20;
	size_t off = (sizeof(struct fab_shm) + 4095) / 4096 * 4096;
	f->map_bytes = off + (size_t)f->n_chips * 2 * S;
	f->spin_ns = spin_of(cfg, f->n_chips);
	f->lat_ns = (int64_t)(cfg->latency_us * 1e3);
	f->timeout_ns = (int64_t)((cfg->timeout_s > 0 ? cfg->timeout_s : 30) * 1e9);

	if ((fd = memfd_create("strata-fabric", MFD_CLOEXEC)) < 0 ||
	    ftruncate(fd, (off_t)f->map_bytes)) {
		snprintf(err, errlen, "fabric: memfd of %zu bytes: %s", f->map_bytes,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	f->shm = mmap(NULL, f->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd); /* the mapping keeps it; no name anywhere */
	if (f->shm == MAP_FAILED) {
		f->shm = NULL;
		snprintf(err, errlen, "fabric: mmap: %s", strerror(errno));
		goto fail;
	}
	f->shm->magic = FAB_MAGIC;
	f->shm->n_chips = (uint32_t)f->n_chips;
	f->shm->slot_bytes = S;
	f->shm->slots_off = off;
	const char *cma_env = getenv("STRATA_FABRIC_CMA");
	size_t cma_min = cfg->cma_min ? cfg->cma_min : 8 << 10;
	if (cma_env && atoll(cma_env) > 0) /* bytes: a threshold to try */
		cma_min = (size_t)atoll(cma_env);
	bool cma = cfg->cma_min != SIZE_MAX && !(cma_env && !strcmp(cma_env, "0"));
	if (cma)
		prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0); /* EINVAL: no Yama */
	else
		atomic_store(&f->shm->cma_on, 2);
	f->seq = cfg->first_chunk;
	for (int c = 0; c < f->n_chips; c++) { /* none published or read */
		atomic_store(&f->shm->chip[c].pub, cfg->first_chunk);
		atomic_store(&f->shm->chip[c].consumed, cfg->first_chunk);
	}
	atomic_store(&f->shm->chip[0].pid, (int)getpid());
	fflush(NULL); /* no buffered output is written twice */
	for (int c = 1; c < f->n_chips; c++) {
		pid_t pid = fork();
		if (pid == 0) {
			f->chip = c;
			*chip = c;
			atomic_store(&f->shm->chip[c].pid, (int)getpid());
			if (cma) {
				prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
				atomic_store(&f->shm->chip[c].cma,
					     cma_can_read(getppid()) ? 1 : 2);
			}
			f->cma_min = cma_wait(&f->shm->cma_on) == 1 ? cma_min : 0;
			return 0;
		}
		if (pid < 0) {
			snprintf(err, errlen, "fabric: fork of chip %d: %s", c,
				 strerror(errno));
			for (int p = 1; p < c; p++) {
				pid_t q = atomic_load(&f->shm->chip[p].pid);
				kill(q, SIGKILL);
				waitpid(q, NULL, 0);
			}
			goto fail;
		}
		atomic_store(&f->shm->chip[c].pid, (int)pid);
	}
	if (cma) {
		int on = 1;
		for (int c = 1; c < f->n_chips; c++)
			on = cma_wait(&f->shm->chip[c].cma) == 1 ? on : 2;
		atomic_store(&f->shm->cma_on, on);
		f->cma_min = on == 1 ? cma_min : 0;
	}
	return 0;
fail:
	fabric_free(f);
	*out = NULL;
	return -EIO;
}

static void describe_status(int st, char *buf, size_t n)
{
	if (WIFEXITED(st))
		snprintf(buf, n, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, n, "was killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(buf, n, "ended (status %#x)", st);
}

int fabric_finish(struct fabric *f, char *err, size_t errlen)
{
	int rc = 0;

	if (!f)
		return 0;
	if (f->m) { /* a peer may wait in a collective that will not end */
		if (atomic_load(&f->mpi_abort_rc) || f->err[0])
			fmpi_abort_job(f->m, 1);
		fmpi_finish(f->m);
		f->m = NULL;
		fabric_free(f);
		return 0;
	}
	if (f->chip == 0 && f->shm) {
		int64_t deadline = now_ns() + 5 * 1000000000ll;
		for (int c = 1; c < f->n_chips; c++) {
			pid_t pid = atomic_load(&f->shm->chip[c].pid);
			int st = 0;
			pid_t r;
			while ((r = waitpid(pid, &st, WNOHANG)) == 0 &&
			       now_ns() < deadline) {
				struct timespec ts = {0, 5000000};
				nanosleep(&ts, NULL);
			}
			if (r == 0) { /* still running: it will not end by itself */
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				if (!rc)
					snprintf(err, errlen, "fabric: chip %d (pid %d) "
						 "did not exit; killed", c, (int)pid);
				rc = -EPIPE;
			} else if (r > 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0) &&
				   !(WIFEXITED(st) && atomic_load(&f->shm->abort_rc))) {
				/* (a chip that exited after an abort has been
				 * reported through its message) */
				char how[96];
				describe_status(st, how, sizeof(how));
				if (!rc)
					snprintf(err, errlen, "fabric: chip %d (pid %d) %s",
						 c, (int)pid, how);
				rc = -EPIPE;
			}
		}
	}
	fabric_free(f);
	return rc;
}
