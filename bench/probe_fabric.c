/*
 * probe_fabric.c - the chip fabric's figures for the hardware profile,
 * by message size S = 64 B .. 4 MiB (powers of 2), between two processes
 * pinned to two CPUs:
 *
 *   floor        the least it can take to hand S bytes from one process
 *                to another through shared memory, written here by hand:
 *                copy in, set a cache-line flag; the other spins on the
 *                flag and copies out. A ping-pong (A hands S to B, B hands
 *                S back); one handoff = a round trip / 2.
 *   allgather    engine/fabric.h itself at 2 chips: a row of S bytes, each
 *                chip holds half (the cols layout the layers use);
 *   allreduce    S / 4 floats summed;
 *   bcast        S bytes from a root. A root returns as soon as it has
 *                published, so bcasts are timed in pairs (root 0, then root
 *                1: each waits for the other's bytes) and a pair / 2 is one.
 *                allgather and allreduce pace the two chips themselves: one
 *                call timed on chip 0 is one exchange.
 *
 * Per size: median and p99 in microseconds, and the link's GB/s: the bytes
 * one process publishes (S; S / 2 for the allgather) / the median, the
 * load --fabric-gbps caps. Every process copies from and to private
 * buffers it reuses (cache-hot, as the engine's activations are). The
 * collectives' results are checked after each size.
 *
 * fabric_start() forks, and a fork must come before any thread: probe runs
 * this section before anything that starts OpenMP.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/probe.h"
#include "engine/fabric.h"
#include "models/util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define FAB_TIMEOUT_NS (10 * 1000000000ll) /* a peer that never answers */

/* round trips (or calls) of size S: about budget bytes, within [lo, hi] */
static int iters_of(const struct probe_opts *o, size_t S)
{
	const uint64_t budget = o->quick ? 32 * MIB : 256 * MIB;
	const int lo = o->quick ? 8 : 32, hi = o->quick ? 2000 : 20000;
	uint64_t n = budget / S;

	return n < (uint64_t)lo ? lo : n > (uint64_t)hi ? hi : (int)n;
}

static int warm_of(int iters)
{
	return iters / 8 + 2;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* median and p99 of v[0..n) ns, into pt in us; link GB/s from link_bytes */
static void summarise(double *v, int n, size_t S, size_t link_bytes,
		      struct probe_fab_point *pt)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	pt->bytes = S;
	pt->iters = n;
	pt->p50_us = (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) * 1e-3;
	pt->p99_us = v[(n - 1) * 99 / 100] * 1e-3;
	pt->gbps = (double)link_bytes / (pt->p50_us * 1e3);
}

static int pin_to(int cpu)
{
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	return sched_setaffinity(0, sizeof(one), &one) ? -errno : 0;
}

static void *touched(size_t bytes, int v)
{
	void *p = aligned_alloc(64, bytes);

	if (p)
		memset(p, v, bytes);
	return p;
}

/* ---- the floor: a hand-written handoff ---------------------------------- */

/* the shared page: a flag a cache line each way, then the two buffers */
struct pp_shm {
	_Alignas(64) atomic_uint to_b; /* round trips A has handed to B */
	_Alignas(64) atomic_uint to_a; /* ... and B back to A */
};

#define PP_BUF_OFF 4096

/* spin until *w == v; -ETIMEDOUT after FAB_TIMEOUT_NS */
static int spin_eq(atomic_uint *w, unsigned v)
{
	int64_t end = now_ns() + FAB_TIMEOUT_NS;

	for (unsigned i = 1; atomic_load_explicit(w, memory_order_acquire) != v; i++) {
		if ((i & 4095) == 0 && now_ns() > end)
			return -ETIMEDOUT;
		cpu_relax();
	}
	return 0;
}

/* B: hand every block back; the same schedule of sizes as A */
static int floor_b(const struct probe_opts *o, struct pp_shm *s, char *ab,
		   char *ba, char *src, char *dst)
{
	unsigned seq = 0;

	for (size_t S = PROBE_FAB_MIN; S <= PROBE_FAB_MAX; S *= 2) {
		int n = iters_of(o, S);
		for (int i = 0; i < warm_of(n) + n; i++) {
			if (spin_eq(&s->to_b, ++seq))
				return -ETIMEDOUT;
			memcpy(dst, ab, S);
			memcpy(ba, src, S);
			atomic_store_explicit(&s->to_a, seq, memory_order_release);
		}
	}
	return 0;
}

/* A: time each round trip; the floor of size S is its median / 2 */
static int floor_a(const struct probe_opts *o, struct probe_fabric *r,
		   struct pp_shm *s, char *ab, char *ba, char *src, char *dst)
{
	double *v = xcalloc((size_t)iters_of(o, PROBE_FAB_MIN), sizeof(double));
	unsigned seq = 0;
	int k = 0, rc = 0;

	for (size_t S = PROBE_FAB_MIN; S <= PROBE_FAB_MAX && !rc; S *= 2, k++) {
		int n = iters_of(o, S), w = warm_of(n);
		for (int i = 0; i < w + n && !rc; i++) {
			int64_t t0 = now_ns();
			memcpy(ab, src, S);
			atomic_store_explicit(&s->to_b, ++seq, memory_order_release);
			rc = spin_eq(&s->to_a, seq);
			memcpy(dst, ba, S);
			if (i >= w)
				v[i - w] = (double)(now_ns() - t0) / 2;
		}
		if (!rc)
			summarise(v, n, S, S, &r->floor[k]);
	}
	free(v);
	return rc;
}

static int probe_floor(const struct probe_opts *o, struct probe_fabric *r,
		       char *msg, size_t msglen)
{
	const size_t map = PP_BUF_OFF + 2 * PROBE_FAB_MAX;
	char *src = touched(PROBE_FAB_MAX, 1), *dst = touched(PROBE_FAB_MAX, 0);
	struct pp_shm *s = mmap(NULL, map, PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int rc = 0, st = 0;
	pid_t pid;

	if (!src || !dst || s == MAP_FAILED) {
		snprintf(msg, msglen, "fabric floor: out of memory");
		rc = -ENOMEM;
		goto out;
	}
	char *ab = (char *)s + PP_BUF_OFF, *ba = ab + PROBE_FAB_MAX;
	memset(ab, 0, 2 * PROBE_FAB_MAX); /* no page fault while timing */
	fflush(NULL);
	if ((pid = fork()) < 0) {
		rc = -errno;
		snprintf(msg, msglen, "fabric floor: fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0)
		_exit(pin_to(r->cpu[1]) || floor_b(o, s, ab, ba, src, dst) ? 1 : 0);
	rc = floor_a(o, r, s, ab, ba, src, dst);
	if (rc)
		kill(pid, SIGKILL);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		rc = rc ? rc : -EIO;
	if (rc)
		snprintf(msg, msglen, "fabric floor: the second process (CPU %d) %s",
			 r->cpu[1], rc == -ETIMEDOUT ? "did not answer in 10 s"
						     : "failed");
out:
	if (s != MAP_FAILED)
		munmap(s, map);
	free(src);
	free(dst);
	return rc;
}

/* ---- the engine's collectives ------------------------------------------- */

/* S bytes of op: every call (bcast: every pair / 2) into v[] on chip 0;
 * then the result checked: 0, -EIO (wrong bytes) or the fabric's -errno */
static int coll_size(struct fabric *f, int chip, enum fabric_op op, size_t S,
		     int n, char *buf, double *v)
{
	const int64_t nf = (int64_t)(S / sizeof(float));
	const int64_t cols[3] = {0, nf / 2, nf};
	const struct fabric_layout l = {.elem = sizeof(float), .nb = 1, .ld = nf,
					.cols = cols, .root = -1};
	float *x = (float *)buf;
	int w = warm_of(n), rc = 0;

	for (int64_t j = 0; j < nf; j++) /* chip c: c + 1; bcast: 1 on chip 0 */
		x[j] = op == FABRIC_BCAST ? (float)(chip == 0) : (float)(chip + 1);
	for (int i = 0; i < w + n && !rc; i++) {
		int64_t t0 = now_ns();
		if (op == FABRIC_ALLGATHER)
			rc = fabric_allgather(f, buf, &l);
		else if (op == FABRIC_ALLREDUCE)
			rc = fabric_allreduce(f, x, nf);
		else if (!(rc = fabric_bcast(f, buf, S, 0, false)))
			rc = fabric_bcast(f, buf, S, 1, false);
		double ns = (double)(now_ns() - t0);
		if (i >= w)
			v[i - w] = op == FABRIC_BCAST ? ns / 2 : ns;
	}
	if (rc)
		return rc;
	if (op == FABRIC_ALLREDUCE) { /* the timed sums grew: once more */
		for (int64_t j = 0; j < nf; j++)
			x[j] = (float)(chip + 1);
		if ((rc = fabric_allreduce(f, x, nf)))
			return rc;
	}
	for (int64_t j = 0; j < nf; j++) {
		float want = op == FABRIC_ALLREDUCE ? 3.0f : op == FABRIC_BCAST ? 1.0f
			   : j < nf / 2 ? 1.0f : 2.0f;
		if (x[j] != want) {
			fabric_abort(f, -EIO, "probe: a collective's result is wrong");
			return -EIO;
		}
	}
	return 0;
}

/* every op at every size, the same order on both chips */
static int coll_all(const struct probe_opts *o, struct probe_fabric *r,
		    struct fabric *f, int chip, char *buf)
{
	double *v = xcalloc((size_t)iters_of(o, PROBE_FAB_MIN), sizeof(double));
	int rc = 0;

	for (int op = 0; op < FABRIC_OP_COUNT && !rc; op++) {
		int k = 0;
		for (size_t S = PROBE_FAB_MIN; S <= PROBE_FAB_MAX && !rc; S *= 2, k++) {
			int n = iters_of(o, S);
			rc = coll_size(f, chip, (enum fabric_op)op, S, n, buf, v);
			if (!rc && chip == 0)
				summarise(v, n, S, op == FABRIC_ALLGATHER ? S / 2 : S,
					  &r->coll[op][k]);
		}
	}
	free(v);
	return rc;
}

static int probe_collectives(const struct probe_opts *o, struct probe_fabric *r,
			     char *msg, size_t msglen)
{
	const struct fabric_config cfg = {
		.backend = o->fabric_mpi ? FABRIC_MPI : FABRIC_SHM,
		.n_chips = o->fabric_mpi ? 1 : 2, .timeout_s = 10, .spin_us = -1,
		.units_per_chip = 1};
	struct fabric *f = NULL;
	char err[320] = "";
	int chip = 0, rc, fr;

	if ((rc = fabric_start(&f, &cfg, &chip, err, sizeof(err)))) {
		snprintf(msg, msglen, "fabric: %s", err);
		return rc;
	}
	if (fabric_chips(f) != 2) {
		snprintf(msg, msglen, "fabric: --fabric mpi measures 2 ranks; run "
			 "it as mpirun -np 2 bench/probe --fabric mpi (got %d)",
			 fabric_chips(f));
		fabric_finish(f, err, sizeof(err));
		if (chip != 0)
			_exit(1);
		return -EINVAL;
	}
	snprintf(r->backend, sizeof(r->backend), "%s", o->fabric_mpi ?
		 fabric_library(f) : "shm");
	snprintf(r->host[chip], sizeof(r->host[chip]), "%s", fabric_host(f));
	char *buf = touched(PROBE_FAB_MAX, 0);
	fabric_quiet(f, true);
	rc = fabric_bcast(f, r->host[1], sizeof(r->host[1]), 1, false);
	fabric_quiet(f, false);
	if (rc) {
		;
	} else if (!buf) {
		fabric_abort(f, -ENOMEM, "probe: out of memory");
		rc = -ENOMEM;
	} else if (o->fabric_mpi) { /* mpirun's placement: not pinned here */
		rc = coll_all(o, r, f, chip, buf);
	} else if ((rc = pin_to(r->cpu[chip]))) {
		fabric_abort(f, rc, "probe: cannot pin a chip to its CPU");
	} else {
		rc = coll_all(o, r, f, chip, buf);
	}
	free(buf);
	if (rc && chip == 0)
		snprintf(msg, msglen, "fabric: %s", fabric_error(f)[0]
			 ? fabric_error(f) : strerror(-rc));
	fr = fabric_finish(f, err, sizeof(err));
	if (chip != 0) /* chip 1 ends here: nothing of probe runs twice */
		_exit(rc || fr ? 1 : 0);
	if (!rc && fr) {
		snprintf(msg, msglen, "%s", err);
		rc = fr;
	}
	return rc;
}

int probe_fabric(const struct probe_opts *o, struct probe_fabric *r, char *msg,
		 size_t msglen)
{
	cpu_set_t allowed;
	int rc;

	sched_getaffinity(0, sizeof(allowed), &allowed);
	r->n = 0;
	for (size_t S = PROBE_FAB_MIN; S <= PROBE_FAB_MAX; S *= 2)
		r->n++;
	if (o->fabric_mpi) { /* the ranks' CPUs are mpirun's to place */
		r->cpu[0] = r->cpu[1] = -1;
		fprintf(stderr, "fabric: collectives over MPI ...\n");
		return probe_collectives(o, r, msg, msglen);
	}
	if (o->fabric_cpu[0] >= 0) {
		r->cpu[0] = o->fabric_cpu[0];
		r->cpu[1] = o->fabric_cpu[1];
	} else if (CPU_COUNT(&allowed) < 2) {
		snprintf(r->skipped, sizeof(r->skipped), "needs two CPUs for its two "
			 "processes; this process may run on %d",
			 CPU_COUNT(&allowed));
		return 0;
	} else {
		for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; c++)
			if (CPU_ISSET(c, &allowed))
				r->cpu[k++] = c;
	}
	if ((rc = pin_to(r->cpu[0]))) {
		snprintf(msg, msglen, "fabric: cannot run on CPU %d: %s", r->cpu[0],
			 strerror(-rc));
		return rc;
	}
	fprintf(stderr, "fabric: floor and collectives on CPUs %d, %d ...\n",
		r->cpu[0], r->cpu[1]);
	rc = probe_floor(o, r, msg, msglen);
	if (!rc)
		rc = probe_collectives(o, r, msg, msglen);
	sched_setaffinity(0, sizeof(allowed), &allowed);
	return rc;
}

/* the point of size S, or NULL */
static const struct probe_fab_point *at(const struct probe_fab_point *v, int n,
					size_t S)
{
	for (int k = 0; k < n; k++)
		if (v[k].bytes == S)
			return &v[k];
	return NULL;
}

/* the yardstick: a collective's median at 8 KiB / the floor's */
double probe_fabric_ratio(const struct probe_fabric *r, enum fabric_op op)
{
	const struct probe_fab_point *a = at(r->coll[op], r->n, 8192);
	const struct probe_fab_point *b = at(r->floor, r->n, 8192);

	return a && b && b->p50_us > 0 ? a->p50_us / b->p50_us : 0;
}

void probe_fabric_print(const struct probe_fabric *r)
{
	if (r->skipped[0]) {
		fprintf(stderr, "\nfabric: skipped: %s\n", r->skipped);
		return;
	}
	if (strcmp(r->backend, "shm"))
		fprintf(stderr, "\nfabric over %s, ranks on %s and %s: median us "
			"(p99 us) and link GB/s (no floor: it is shared memory's)",
			r->backend, r->host[0], r->host[1]);
	else
		fprintf(stderr, "\nfabric, 2 processes on CPUs %d and %d: median "
			"us (p99 us) and link GB/s", r->cpu[0], r->cpu[1]);
	fprintf(stderr, "\n       bytes  %-22s %-22s %-22s %-22s\n", "floor",
		"allgather", "allreduce", "bcast");
	for (int k = 0; k < r->n; k++) {
		const struct probe_fab_point *row[4] = {
			&r->floor[k], &r->coll[FABRIC_ALLGATHER][k],
			&r->coll[FABRIC_ALLREDUCE][k], &r->coll[FABRIC_BCAST][k]};
		fprintf(stderr, "  %10llu", (unsigned long long)row[1]->bytes);
		for (int i = 0; i < 4; i++)
			if (row[i]->iters)
				fprintf(stderr, "  %7.2f (%7.2f) %5.2f", row[i]->p50_us,
					row[i]->p99_us, row[i]->gbps);
			else
				fprintf(stderr, "  %-21s", "        -");
		fputc('\n', stderr);
	}
	if (strcmp(r->backend, "shm"))
		return;
	fprintf(stderr, "  8 KiB / floor: allgather %.2fx, allreduce %.2fx, "
		"bcast %.2fx (goal: <= 2x)\n",
		probe_fabric_ratio(r, FABRIC_ALLGATHER),
		probe_fabric_ratio(r, FABRIC_ALLREDUCE),
		probe_fabric_ratio(r, FABRIC_BCAST));
}

static void json_curve(FILE *f, const char *name, const struct probe_fab_point *v,
		       int n)
{
	fprintf(f, ",\n    \"%s\": [", name);
	for (int k = 0; k < n; k++)
		fprintf(f, "%s\n      {\"bytes\": %llu, \"us\": %.3f, \"p99_us\": %.3f, "
			"\"gbps\": %.3f, \"iters\": %d}", k ? "," : "",
			(unsigned long long)v[k].bytes, v[k].p50_us, v[k].p99_us,
			v[k].gbps, v[k].iters);
	fprintf(f, "]");
}

void probe_fabric_json(FILE *f, const struct probe_fabric *r)
{
	if (!r) {
		fprintf(f, "  \"fabric\": null,\n");
		return;
	}
	if (r->skipped[0]) {
		fprintf(f, "  \"fabric\": {\"skipped\": \"%s\"},\n", r->skipped);
		return;
	}
	/* the simulator's two-number summary: the smallest allgather is the
	 * latency of a hop, the largest one's link rate its bandwidth */
	const struct probe_fab_point *ag = r->coll[FABRIC_ALLGATHER];
	fprintf(f, "  \"fabric\": {\"chips\": 2, \"backend\": \"%s\", "
		"\"hosts\": [\"%s\", \"%s\"],\n    ", r->backend, r->host[0],
		r->host[1]);
	fprintf(f, "\"cpus\": [%d, %d], "
		"\"slot_bytes\": %d,\n    \"latency_us\": %.3f, \"gbps\": %.3f,\n"
		"    \"ratio_8k\": {\"allgather\": %.3f, \"allreduce\": %.3f, "
		"\"bcast\": %.3f}", r->cpu[0], r->cpu[1], 1 << 20, ag[0].p50_us,
		ag[r->n - 1].gbps, probe_fabric_ratio(r, FABRIC_ALLGATHER),
		probe_fabric_ratio(r, FABRIC_ALLREDUCE),
		probe_fabric_ratio(r, FABRIC_BCAST));
	json_curve(f, "floor", r->floor, r->n);
	for (int op = 0; op < FABRIC_OP_COUNT; op++)
		json_curve(f, fabric_op_name((enum fabric_op)op), r->coll[op], r->n);
	fprintf(f, "},\n");
}
