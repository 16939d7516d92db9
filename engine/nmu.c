/*
 * nmu.c - the near-memory unit pool: pinned pthreads, a spin-then-futex
 * barrier and job dispatch. See nmu.h.
 */
#include "engine/nmu.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <numa.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "models/util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

static void futex_wait(atomic_uint *addr, unsigned val)
{
	syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, val, NULL,
		NULL, 0);
}

static void futex_wake_all(atomic_uint *addr)
{
	syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL,
		NULL, 0);
}

/* Wait while *w == val: spin up to spin_ns, then sleep. `sleepers` counts
 * the threads that may be asleep on w, so a waker can skip the syscall;
 * seq_cst on both sides (waiter: sleepers++ then load w; waker: store w
 * then load sleepers) makes a missed wake impossible. stop: also return
 * once *stop is non-zero (may be NULL). */
static void wait_change(atomic_uint *w, unsigned val, atomic_int *sleepers,
			int64_t spin_ns, atomic_int *stop)
{
	if (spin_ns > 0) {
		int64_t t_end = now_ns() + spin_ns;
		for (unsigned i = 1;; i++) {
			if (atomic_load_explicit(w, memory_order_acquire) != val ||
			    (stop && atomic_load_explicit(stop, memory_order_relaxed)))
				return;
			cpu_relax();
			if ((i & 63) == 0 && now_ns() > t_end)
				break;
		}
	}
	atomic_fetch_add(sleepers, 1);
	while (atomic_load(w) == val && !(stop && atomic_load(stop)))
		futex_wait(w, val);
	atomic_fetch_sub(sleepers, 1);
}

static void bump_and_wake(atomic_uint *w, atomic_int *sleepers)
{
	atomic_fetch_add(w, 1);
	if (atomic_load(sleepers))
		futex_wake_all(w);
}

/* ---- barrier ----------------------------------------------------------- */

static void record_wait(struct nmu_unit *u, int64_t ns)
{
	uint32_t v = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
	uint64_t i = u->n_wait++;

	u->st.barrier_ns += ns;
	u->st.n_barriers++;
	if (i < NMU_WAIT_SAMPLES) {
		u->wait_ns[i] = v;
	} else { /* keep a uniform sample: reservoir, fixed hash */
		uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull;
		h ^= h >> 29;
		if (h % (i + 1) < NMU_WAIT_SAMPLES)
			u->wait_ns[h % NMU_WAIT_SAMPLES] = v;
	}
}

int nmu_barrier(struct nmu_unit *u)
{
	struct nmu_pool *p = u->pool;
	int64_t t0 = now_ns();

	if (atomic_load_explicit(&p->failed, memory_order_relaxed))
		return -ECANCELED;
	if (p->n_units > 1) {
		unsigned gen = atomic_load_explicit(&p->bar_gen, memory_order_acquire);
		if (atomic_fetch_add_explicit(&p->bar_count, 1, memory_order_acq_rel) ==
		    (unsigned)p->n_units - 1) {
			atomic_store_explicit(&p->bar_count, 0, memory_order_relaxed);
			bump_and_wake(&p->bar_gen, &p->bar_sleepers);
		} else {
			wait_change(&p->bar_gen, gen, &p->bar_sleepers, p->spin_ns,
				    &p->failed);
		}
	}
	record_wait(u, now_ns() - t0);
	return atomic_load(&p->failed) ? -ECANCELED : 0;
}

void nmu_fail(struct nmu_unit *u, int rc)
{
	struct nmu_pool *p = u->pool;
	int zero = 0;

	if (!rc)
		rc = -ECANCELED;
	atomic_compare_exchange_strong(&p->failed, &zero, rc);
	/* wake every barrier sleeper; they see `failed` and leave */
	bump_and_wake(&p->bar_gen, &p->bar_sleepers);
}

/* ---- jobs -------------------------------------------------------------- */

static int run_one(struct nmu_unit *u)
{
	struct nmu_pool *p = u->pool;
	int64_t t0 = now_ns(), wait0 = u->st.barrier_ns;
	int rc = p->job(u, p->arg);

	if (rc)
		nmu_fail(u, rc);
	u->st.busy_ns += (now_ns() - t0) - (u->st.barrier_ns - wait0);
	u->st.n_jobs++;
	return rc;
}

static void *worker(void *arg)
{
	struct nmu_unit *u = arg;
	struct nmu_pool *p = u->pool;
	unsigned seen = 0;

	if (p->pinned && u->cpu >= 0) {
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(u->cpu, &one);
		pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
	}
	for (;;) {
		/* between tokens (sampling, I/O of the caller): spin a while
		 * longer than at a barrier, then sleep */
		wait_change(&p->run_gen, seen, &p->run_sleepers, 2 * p->spin_ns,
			    NULL);
		seen = atomic_load_explicit(&p->run_gen, memory_order_acquire);
		if (p->quit)
			break;
		run_one(u);
		if (atomic_fetch_add(&p->done, 1) + 1 == (unsigned)p->n_units - 1 &&
		    atomic_load(&p->done_sleeper))
			futex_wake_all(&p->done);
	}
	return NULL;
}

int nmu_run(struct nmu_pool *p, nmu_job_fn job, void *arg)
{
	p->job = job;
	p->arg = arg;
	atomic_store(&p->failed, 0);
	atomic_store(&p->bar_count, 0);
	atomic_store(&p->done, 0);
	bump_and_wake(&p->run_gen, &p->run_sleepers);
	run_one(&p->units[0]);
	atomic_int no_sleepers; /* the done counter has its own flag */
	atomic_init(&no_sleepers, 0);
	for (;;) { /* wait for the workers */
		unsigned d = atomic_load(&p->done);
		if (d == (unsigned)p->n_units - 1)
			break;
		atomic_store(&p->done_sleeper, 1);
		wait_change(&p->done, d, &no_sleepers, p->spin_ns, NULL);
		atomic_store(&p->done_sleeper, 0);
	}
	return atomic_load(&p->failed);
}

/* ---- setup ------------------------------------------------------------- */

int nmu_topology_parse(const char *s, int *n_nodes, int *cpus_per_node)
{
	char *end;
	long a, b;

	/* digits only: strtol alone would take " 2x+1" */
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	a = strtol(s, &end, 10);
	if (*end != 'x' || a < 1 || a > 1024)
		return -EINVAL;
	s = end + 1;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	b = strtol(s, &end, 10);
	if (*end || b < 1 || b > 1024)
		return -EINVAL;
	*n_nodes = (int)a;
	*cpus_per_node = (int)b;
	return 0;
}

int nmu_init(struct nmu_pool *p, const struct nmu_config *cfg, char *err,
	     size_t errlen)
{
	cpu_set_t allowed;
	int cpus[CPU_SETSIZE], n_cpus = 0, emu_nodes = 0, emu_per = 0;
	bool numa = numa_available() >= 0;
	int rc;

	memset(p, 0, sizeof(*p));
	if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &allowed))
				cpus[n_cpus++] = c;
	}
	if (n_cpus == 0) {
		n_cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
		for (int c = 0; c < n_cpus && c < CPU_SETSIZE; c++)
			cpus[c] = c;
	}
	if (cfg->topology &&
	    nmu_topology_parse(cfg->topology, &emu_nodes, &emu_per)) {
		snprintf(err, errlen, "STRATA_TOPOLOGY='%s' is not NODESxCPUS "
			 "(e.g. 2x1)", cfg->topology);
		return -EINVAL;
	}
	p->n_cpus = n_cpus;
	p->n_units = cfg->n_units > 0 ? cfg->n_units
		     : emu_nodes ? emu_nodes * emu_per : n_cpus;
	p->pinned = cfg->pin;
	p->spin_ns = cfg->spin_ns > 0 ? cfg->spin_ns : 1000000;
	if (p->n_units > n_cpus)
		p->spin_ns = 0; /* spinning on a shared core only delays the
				 * unit it waits for */
	p->units = xcalloc((size_t)p->n_units, sizeof(*p->units));
	p->threads = xcalloc((size_t)p->n_units, sizeof(*p->threads));
	for (int i = 0; i < p->n_units; i++) {
		struct nmu_unit *u = &p->units[i];
		int cpu = cpus[i % n_cpus];
		u->id = i;
		u->pool = p;
		u->cpu = cfg->pin ? cpu : -1;
		u->mem_node = numa ? numa_node_of_cpu(cpu) : 0;
		if (u->mem_node < 0)
			u->mem_node = 0;
		u->node = emu_nodes ? (i / emu_per) % emu_nodes : u->mem_node;
		u->wait_ns = xmalloc(NMU_WAIT_SAMPLES * sizeof(*u->wait_ns));
		bool seen = false;
		for (int j = 0; j < i; j++)
			seen |= p->units[j].node == u->node;
		p->n_nodes += !seen;
	}
	if (cfg->pin) { /* unit 0 is the calling thread: pinned until destroy */
		cpu_set_t one;
		p->caller_pinned = pthread_getaffinity_np(pthread_self(),
				sizeof(p->caller_cpus), &p->caller_cpus) == 0;
		CPU_ZERO(&one);
		CPU_SET(p->units[0].cpu, &one);
		pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
	}
	for (int i = 1; i < p->n_units; i++) {
		if ((rc = pthread_create(&p->threads[i], NULL, worker,
					 &p->units[i]))) {
			snprintf(err, errlen, "cannot start unit %d: %s", i,
				 strerror(rc));
			nmu_destroy(p);
			return -rc;
		}
		p->n_started = i;
	}
	return 0;
}

void nmu_destroy(struct nmu_pool *p)
{
	if (!p->units)
		return;
	p->quit = true;
	bump_and_wake(&p->run_gen, &p->run_sleepers);
	for (int i = 1; i <= p->n_started; i++)
		pthread_join(p->threads[i], NULL);
	for (int i = 0; i < p->n_units; i++)
		free(p->units[i].wait_ns);
	/* else the caller stays on one CPU, and so does every thread it
	 * starts and every later pool's view of the allowed CPUs */
	if (p->caller_pinned)
		pthread_setaffinity_np(pthread_self(), sizeof(p->caller_cpus),
				       &p->caller_cpus);
	free(p->units);
	free(p->threads);
	memset(p, 0, sizeof(*p));
}

void nmu_stats_reset(struct nmu_pool *p)
{
	for (int i = 0; i < p->n_units; i++) {
		memset(&p->units[i].st, 0, sizeof(p->units[i].st));
		p->units[i].n_wait = 0;
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

void nmu_wait_percentiles(struct nmu_unit *u, double *p50_ns, double *p99_ns)
{
	uint64_t n = u->n_wait < NMU_WAIT_SAMPLES ? u->n_wait : NMU_WAIT_SAMPLES;

	*p50_ns = *p99_ns = 0;
	if (!n)
		return;
	qsort(u->wait_ns, (size_t)n, sizeof(*u->wait_ns), cmp_u32);
	*p50_ns = u->wait_ns[(n - 1) / 2];
	*p99_ns = u->wait_ns[(size_t)((double)(n - 1) * 0.99)];
}
