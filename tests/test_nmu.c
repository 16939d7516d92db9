/*
 * test_nmu.c - the near-memory unit pool (engine/nmu.h) on whatever CPUs
 * this process may use (2 on the development machine), with 1, 2 and 4
 * units (4 outnumbers the CPUs: units share them round-robin and must not
 * spin), pinned and unpinned.
 *
 *   - barrier: 20000 rounds where every unit writes its own slot, meets
 *     the others and reads every slot back for that round (double
 *     buffered, so a unit let through early reads a stale round);
 *   - dispatch: each nmu_run runs the job exactly once on every unit, and
 *     the first non-zero return (or nmu_fail code) comes back;
 *   - cancel: a unit that fails while the others wait at a barrier makes
 *     their barrier and every later one return -ECANCELED, nmu_run returns
 *     its code, nothing hangs (alarm() bounds every test), and the pool
 *     then runs clean jobs again;
 *   - waits sleep: a unit waiting 100 ms for a slow one uses almost no CPU;
 *   - stats: barriers and jobs counted exactly, the wait samples sum to
 *     barrier_ns, percentiles against the samples, reset clears;
 *   - placement: unit i on the i-th allowed CPU (sched_getcpu agrees),
 *     unpinned units on every allowed CPU, the caller's own affinity
 *     restored by nmu_destroy, NUMA nodes from libnuma or STRATA_TOPOLOGY
 *     "NxM", whose parser is strict.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/nmu.h"

#define MAX_UNITS 64
#define ROUNDS 20000
#define WATCHDOG_S 120 /* a hung barrier fails the test, not the run (the
			* slowest test takes ~4 s under TSan) */

/* the CPUs this process may use, read once before any pool pins the
 * calling thread */
static cpu_set_t allowed;
static int allowed_cpu[CPU_SETSIZE], n_allowed;

static const struct {
	int n;
	bool pin;
} configs[] = {{1, false}, {1, true}, {2, false},
	       {2, true},  {4, false}, {4, true}};
#define N_CONFIGS (sizeof(configs) / sizeof(configs[0]))

static void on_alarm(int sig)
{
	static const char msg[] = "test_nmu: watchdog: a test did not finish "
				  "(a barrier or nmu_run hangs)\n";
	(void)sig;
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void pool_start(struct nmu_pool *p, int n, bool pin, const char *topo)
{
	struct nmu_config cfg = {.n_units = n, .pin = pin, .topology = topo};
	char err[256] = "";

	if (nmu_init(p, &cfg, err, sizeof(err)))
		fail_msg("nmu_init(%d units, pin %d, topology %s): %s", n, pin,
			 topo ? topo : "-", err);
	assert_int_equal(p->n_units, n);
}

/* Every test's pool lives in its fixture, so that a failed assertion
 * (cmocka longjmps out of the test) still stops its threads: left running,
 * they would take part in the next test's jobs. */
static int pool_setup(void **state)
{
	*state = calloc(1, sizeof(struct nmu_pool));
	return *state ? 0 : -1;
}

static int pool_teardown(void **state)
{
	nmu_destroy(*state);
	free(*state);
	alarm(0);
	return 0;
}

/* ---- barrier rounds ------------------------------------------------------ */

struct rounds {
	int n_rounds;
	int slot[2][MAX_UNITS]; /* [round & 1][unit]: the round it wrote */
	atomic_int n_bad;
	atomic_int bad_round, bad_unit, bad_seen; /* the first stale read */
};

static int rounds_job(struct nmu_unit *u, void *arg)
{
	struct rounds *r = arg;
	const int n = u->pool->n_units;
	int rc;

	for (int k = 0; k < r->n_rounds; k++) {
		int *s = r->slot[k & 1];
		s[u->id] = k;
		if ((rc = nmu_barrier(u)))
			return rc;
		/* every unit wrote round k before any left the barrier; none
		 * writes this half again before all passed the next one */
		for (int j = 0; j < n; j++) {
			if (s[j] == k)
				continue;
			if (atomic_fetch_add(&r->n_bad, 1) == 0) {
				atomic_store(&r->bad_round, k);
				atomic_store(&r->bad_unit, j);
				atomic_store(&r->bad_seen, s[j]);
			}
			/* stop the job: a barrier that lets units through
			 * early soon deadlocks, which would say less */
			return -EPROTO;
		}
	}
	return 0;
}

/* n_rounds barrier rounds on p; every count checked afterwards */
static void run_rounds(struct nmu_pool *p, int n_rounds)
{
	struct rounds *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	r->n_rounds = n_rounds;
	for (int h = 0; h < 2; h++)
		for (int j = 0; j < MAX_UNITS; j++)
			r->slot[h][j] = -1;
	nmu_stats_reset(p);
	int rc = nmu_run(p, rounds_job, r);
	if (atomic_load(&r->n_bad))
		fail_msg("%d units: %d stale reads; first: round %d read unit %d's "
			 "slot as round %d", p->n_units, atomic_load(&r->n_bad),
			 atomic_load(&r->bad_round), atomic_load(&r->bad_unit),
			 atomic_load(&r->bad_seen));
	assert_int_equal(rc, 0);
	for (int i = 0; i < p->n_units; i++) {
		assert_int_equal(p->units[i].st.n_barriers, (uint64_t)n_rounds);
		assert_int_equal(p->units[i].st.n_jobs, 1);
		assert_int_equal(p->units[i].n_wait, (uint64_t)n_rounds);
	}
	free(r);
}

static void test_barrier_rounds(void **state)
{
	struct nmu_pool *p = *state;
	alarm(WATCHDOG_S);
	for (size_t c = 0; c < N_CONFIGS; c++) {
		pool_start(p, configs[c].n, configs[c].pin, NULL);
		run_rounds(p, ROUNDS);
		run_rounds(p, 3); /* and again on the same pool */
		nmu_destroy(p);
	}
	alarm(0);
}

/* more units than CPUs by far: 32 units of an emulated 4x8 topology */
static void test_many_units(void **state)
{
	struct nmu_pool *p = *state;

	alarm(WATCHDOG_S);
	pool_start(p, 32, true, "4x8");
	assert_int_equal(p->n_nodes, 4);
	if (n_allowed < 32)
		assert_int_equal(p->spin_ns, 0);
	run_rounds(p, 500);
	nmu_destroy(p);
	alarm(0);
}

/* ---- dispatch and return codes ------------------------------------------ */

struct dispatch {
	struct nmu_pool *pool;
	int calls[MAX_UNITS];
	atomic_int n_wrong; /* wrong unit pointer, pool or arg */
	int code_unit;      /* unit returning `code`, -1: none */
	int code;
	bool all_fail;      /* every unit returns -(100 + id) */
	int fail0_unit;     /* unit calling nmu_fail(u, 0), -1: none */
};

static int dispatch_job(struct nmu_unit *u, void *arg)
{
	struct dispatch *d = arg;

	if (u->pool != d->pool || u != &d->pool->units[u->id])
		atomic_fetch_add(&d->n_wrong, 1);
	d->calls[u->id]++;
	if (d->all_fail)
		return -(100 + u->id);
	if (u->id == d->fail0_unit)
		nmu_fail(u, 0);
	return u->id == d->code_unit ? d->code : 0;
}

static void test_dispatch(void **state)
{
	struct nmu_pool *p = *state;
	alarm(WATCHDOG_S);
	for (size_t c = 0; c < N_CONFIGS; c++) {
		const int n = configs[c].n, K = 2000;
		struct dispatch d = {.code_unit = -1, .fail0_unit = -1};

		pool_start(p, n, configs[c].pin, NULL);
		d.pool = p;
		nmu_stats_reset(p);
		for (int k = 0; k < K; k++)
			assert_int_equal(nmu_run(p, dispatch_job, &d), 0);
		for (int i = 0; i < n; i++) {
			assert_int_equal(d.calls[i], K);
			assert_int_equal(p->units[i].st.n_jobs, (uint64_t)K);
			assert_int_equal(p->units[i].st.n_barriers, 0);
		}
		assert_int_equal(atomic_load(&d.n_wrong), 0);

		/* one unit's code comes back, whichever unit it is */
		const int codes[2] = {-EIO, 7};
		for (int i = 0; i < n; i++) {
			for (int k = 0; k < 2; k++) {
				d.code_unit = i;
				d.code = codes[k];
				assert_int_equal(nmu_run(p, dispatch_job, &d),
						 codes[k]);
			}
		}
		d.code_unit = -1;
		/* all fail: the first of theirs, one of the n */
		d.all_fail = true;
		int rc = nmu_run(p, dispatch_job, &d);
		assert_in_range(-rc, 100, 100 + n - 1);
		d.all_fail = false;
		/* nmu_fail(u, 0) with a job that returns 0: -ECANCELED */
		d.fail0_unit = n - 1;
		assert_int_equal(nmu_run(p, dispatch_job, &d), -ECANCELED);
		d.fail0_unit = -1;
		/* and clean again */
		assert_int_equal(nmu_run(p, dispatch_job, &d), 0);
		for (int i = 0; i < n; i++)
			assert_int_equal(d.calls[i], K + 2 * n + 3);
		nmu_destroy(p);
	}
	alarm(0);
}

/* ---- cancellation -------------------------------------------------------- */

struct cancel {
	int fail_unit, fail_round;
	bool wait_for_all; /* fail only once the others are at the barrier */
	int sleep_ms;      /* then let them fall asleep on the futex */
	atomic_int arrived;
	int got_round[MAX_UNITS], got_rc[MAX_UNITS], later_rc[MAX_UNITS];
};

static int cancel_job(struct nmu_unit *u, void *arg)
{
	struct cancel *c = arg;
	const int n = u->pool->n_units;
	int rc;

	for (int k = 0; k < c->fail_round + 10; k++) {
		if (k == c->fail_round && u->id == c->fail_unit) {
			while (c->wait_for_all && atomic_load(&c->arrived) < n - 1)
				sched_yield();
			if (c->sleep_ms)
				sleep_ms(c->sleep_ms);
			nmu_fail(u, -EIO);
			return -EIO;
		}
		if (k == c->fail_round)
			atomic_fetch_add(&c->arrived, 1);
		if ((rc = nmu_barrier(u))) {
			c->got_round[u->id] = k;
			c->got_rc[u->id] = rc;
			c->later_rc[u->id] = nmu_barrier(u);
			return rc;
		}
	}
	return 0; /* never cancelled: got_round stays -1 */
}

static void run_cancel(struct nmu_pool *p, int fail_unit, bool wait_for_all,
		       int sleep)
{
	const int n = p->n_units;
	struct cancel c = {.fail_unit = fail_unit, .fail_round = 50,
			   .wait_for_all = wait_for_all, .sleep_ms = sleep};

	for (int i = 0; i < n; i++)
		c.got_round[i] = -1;
	assert_int_equal(nmu_run(p, cancel_job, &c), -EIO);
	for (int i = 0; i < n; i++) {
		if (i == fail_unit)
			continue;
		/* waiting for all makes it exact: they passed round 49 before
		 * arriving; otherwise a unit still leaving barrier 49 when the
		 * failure lands may see it there */
		if (wait_for_all)
			assert_int_equal(c.got_round[i], c.fail_round);
		else
			assert_in_range(c.got_round[i], c.fail_round - 1,
					c.fail_round);
		assert_int_equal(c.got_rc[i], -ECANCELED);
		assert_int_equal(c.later_rc[i], -ECANCELED);
	}
}

static void test_cancel(void **state)
{
	struct nmu_pool *p = *state;
	alarm(WATCHDOG_S);
	for (size_t k = 0; k < N_CONFIGS; k++) {
		const int n = configs[k].n;

		pool_start(p, n, configs[k].pin, NULL);
		/* the caller's unit and the last worker fail, with the others
		 * spinning (no sleep) or asleep (20 ms) at the barrier */
		const int fail_units[2] = {0, n - 1};
		for (int f = 0; f < 2; f++) {
			run_cancel(p, fail_units[f], true, 0);
			run_rounds(p, 200); /* reusable: a clean job passes */
			run_cancel(p, fail_units[f], true, 20);
			run_rounds(p, 200);
		}
		/* failures racing with barriers in flight */
		for (int it = 0; it < 200; it++) {
			run_cancel(p, it % n, false, 0);
			run_rounds(p, 20);
		}
		nmu_destroy(p);
	}
	alarm(0);
}

/* ---- waiting sleeps ------------------------------------------------------ */

struct slow {
	int64_t cpu_ns[MAX_UNITS], t_back[MAX_UNITS], t_call[MAX_UNITS];
	int64_t t_slow_arrives;
	int rc[MAX_UNITS];
};

/* the last unit sleeps 100 ms before the barrier; the others' CPU time
 * inside nmu_barrier is measured */
static int slow_job(struct nmu_unit *u, void *arg)
{
	struct slow *s = arg;
	const int last = u->pool->n_units - 1;

	if (u->id == last) {
		sleep_ms(100);
		s->t_slow_arrives = mono_ns();
	}
	int64_t c0 = thread_cpu_ns();
	s->t_call[u->id] = mono_ns();
	s->rc[u->id] = nmu_barrier(u);
	s->t_back[u->id] = mono_ns();
	s->cpu_ns[u->id] = thread_cpu_ns() - c0;
	return 0;
}

static void test_waits_sleep(void **state)
{
	struct nmu_pool *p = *state;
	alarm(WATCHDOG_S);
	for (size_t k = 0; k < N_CONFIGS; k++) {
		const int n = configs[k].n;
		struct slow s;

		if (n < 2)
			continue;
		pool_start(p, n, configs[k].pin, NULL);
		/* default spin 1 ms; none when units outnumber CPUs */
		assert_int_equal(p->spin_ns, n > n_allowed ? 0 : 1000000);
		nmu_stats_reset(p);
		assert_int_equal(nmu_run(p, slow_job, &s), 0);
		for (int i = 0; i < n; i++) {
			assert_int_equal(s.rc[i], 0);
			/* nobody leaves before the slow unit arrives */
			assert_true(s.t_back[i] >= s.t_slow_arrives);
			/* the recorded wait lies inside the call */
			assert_int_equal(p->units[i].st.n_barriers, 1);
			assert_true(p->units[i].st.barrier_ns <=
				    s.t_back[i] - s.t_call[i]);
			if (i == n - 1)
				continue;
			/* ~100 ms of waiting, at most a few ms of it on a CPU
			 * (the spin is 1 ms) */
			if (s.cpu_ns[i] > 20 * 1000000)
				fail_msg("%d units%s: unit %d burnt %.1f ms of CPU "
					 "waiting %.1f ms", n,
					 configs[k].pin ? " pinned" : "", i,
					 s.cpu_ns[i] / 1e6,
					 (s.t_back[i] - s.t_call[i]) / 1e6);
		}
		nmu_destroy(p);
	}
	/* a spin given by the caller is kept while units fit the CPUs */
	struct nmu_config cfg = {.n_units = 1, .spin_ns = 5000};
	char err[256];
	assert_int_equal(nmu_init(p, &cfg, err, sizeof(err)), 0);
	assert_int_equal(p->spin_ns, 5000);
	nmu_destroy(p);
	alarm(0);
}

/* ---- stats --------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* p50 and p99 of unit u against a copy of its samples: at least half of
 * the samples lie on each side of p50, at least 99% of them at or below
 * p99 and at least one at or above it; samples sum to barrier_ns */
static void check_percentiles(struct nmu_unit *u)
{
	size_t n = u->n_wait < NMU_WAIT_SAMPLES ? u->n_wait : NMU_WAIT_SAMPLES;
	uint32_t *s = malloc(n * sizeof(*s));
	double p50, p99;

	assert_true(n > 0);
	assert_non_null(s);
	memcpy(s, u->wait_ns, n * sizeof(*s));
	if (u->n_wait <= NMU_WAIT_SAMPLES) {
		int64_t sum = 0;
		for (size_t i = 0; i < n; i++)
			sum += s[i];
		assert_int_equal(sum, u->st.barrier_ns);
	}
	nmu_wait_percentiles(u, &p50, &p99);
	qsort(s, n, sizeof(*s), cmp_u32);
	size_t le50 = 0, ge50 = 0, le99 = 0, ge99 = 0;
	for (size_t i = 0; i < n; i++) {
		le50 += s[i] <= p50;
		ge50 += s[i] >= p50;
		le99 += s[i] <= p99;
		ge99 += s[i] >= p99;
	}
	assert_true(p50 <= p99);
	assert_true(p50 >= s[0] && p99 <= s[n - 1]);
	assert_true(2 * le50 >= n && 2 * ge50 >= n);
	assert_true(100 * le99 >= 99 * n && ge99 >= 1);
	free(s);
}

static void expect_clear(struct nmu_pool *p)
{
	for (int i = 0; i < p->n_units; i++) {
		struct nmu_unit *u = &p->units[i];
		double p50 = -1, p99 = -1;
		assert_int_equal(u->st.busy_ns, 0);
		assert_int_equal(u->st.barrier_ns, 0);
		assert_int_equal(u->st.n_barriers, 0);
		assert_int_equal(u->st.n_jobs, 0);
		assert_int_equal(u->n_wait, 0);
		nmu_wait_percentiles(u, &p50, &p99);
		assert_true(p50 == 0 && p99 == 0);
	}
}

static void test_stats(void **state)
{
	struct nmu_pool *p = *state;
	alarm(WATCHDOG_S);
	for (size_t k = 0; k < N_CONFIGS; k++) {
		pool_start(p, configs[k].n, configs[k].pin, NULL);
		expect_clear(p); /* a new pool */
		int64_t t0 = mono_ns();
		run_rounds(p, 2000);
		int64_t wall = mono_ns() - t0;
		for (int i = 0; i < p->n_units; i++) {
			struct nmu_unit *u = &p->units[i];
			assert_true(u->st.busy_ns >= 0 && u->st.barrier_ns >= 0);
			assert_true(u->st.busy_ns + u->st.barrier_ns <= wall);
			check_percentiles(u);
		}
		nmu_stats_reset(p);
		expect_clear(p);
		nmu_destroy(p);
	}
	/* more barriers than samples kept: counts go on, samples stay */
	const int n = NMU_WAIT_SAMPLES + 4464;
	pool_start(p, 1, false, NULL);
	run_rounds(p, n);
	assert_int_equal(p->units[0].n_wait, (uint64_t)n);
	check_percentiles(&p->units[0]);
	nmu_destroy(p);
	alarm(0);
}

/* ---- placement ----------------------------------------------------------- */

struct where {
	int cpu[MAX_UNITS];
	cpu_set_t mask[MAX_UNITS];
};

static int where_job(struct nmu_unit *u, void *arg)
{
	struct where *w = arg;

	w->cpu[u->id] = sched_getcpu();
	CPU_ZERO(&w->mask[u->id]);
	pthread_getaffinity_np(pthread_self(), sizeof(w->mask[u->id]),
			       &w->mask[u->id]);
	return 0;
}

static int real_node(int cpu)
{
	int node = numa_available() >= 0 ? numa_node_of_cpu(cpu) : 0;
	return node < 0 ? 0 : node;
}

static void expect_caller_unpinned(void)
{
	cpu_set_t now;

	CPU_ZERO(&now);
	assert_int_equal(sched_getaffinity(0, sizeof(now), &now), 0);
	if (!CPU_EQUAL(&now, &allowed))
		fail_msg("the calling thread may run on %d CPUs after "
			 "nmu_destroy, %d before nmu_init", CPU_COUNT(&now),
			 n_allowed);
}

static void test_placement(void **state)
{
	struct nmu_pool *p = *state;
	alarm(WATCHDOG_S);
	for (size_t k = 0; k < N_CONFIGS; k++) {
		const int n = configs[k].n;
		const bool pin = configs[k].pin;
		struct where w;
		int nodes_seen[MAX_UNITS], n_nodes = 0;

		pool_start(p, n, pin, NULL);
		assert_int_equal(p->n_cpus, n_allowed);
		assert_int_equal(p->pinned, pin);
		assert_int_equal(nmu_run(p, where_job, &w), 0);
		for (int i = 0; i < n; i++) {
			struct nmu_unit *u = &p->units[i];
			int cpu = allowed_cpu[i % n_allowed];
			assert_int_equal(u->id, i);
			assert_ptr_equal(u->pool, p);
			assert_int_equal(u->mem_node, real_node(cpu));
			assert_int_equal(u->node, u->mem_node);
			if (pin) {
				cpu_set_t one;
				CPU_ZERO(&one);
				CPU_SET(cpu, &one);
				assert_int_equal(u->cpu, cpu);
				assert_int_equal(w.cpu[i], cpu);
				assert_true(CPU_EQUAL(&w.mask[i], &one));
			} else {
				assert_int_equal(u->cpu, -1);
				assert_true(CPU_ISSET(w.cpu[i], &allowed));
				assert_true(CPU_EQUAL(&w.mask[i], &allowed));
			}
			bool seen = false;
			for (int j = 0; j < n_nodes; j++)
				seen |= nodes_seen[j] == u->node;
			if (!seen)
				nodes_seen[n_nodes++] = u->node;
		}
		assert_int_equal(p->n_nodes, n_nodes);
		nmu_destroy(p);
		expect_caller_unpinned();
	}
	/* n_units <= 0: one unit per allowed CPU */
	struct nmu_config cfg = {.n_units = 0, .pin = true};
	char err[256];
	assert_int_equal(nmu_init(p, &cfg, err, sizeof(err)), 0);
	assert_int_equal(p->n_units, n_allowed);
	nmu_destroy(p);
	expect_caller_unpinned();
	/* destroy takes a zeroed pool, and a destroyed one */
	struct nmu_pool z;
	memset(&z, 0, sizeof(z));
	nmu_destroy(&z);
	nmu_destroy(&z);
	alarm(0);
}

static void test_topology_parse(void **state)
{
	static const struct {
		const char *s;
		int nodes, per;
	} good[] = {{"2x1", 2, 1}, {"4x8", 4, 8}, {"1x1", 1, 1},
		    {"1024x1024", 1024, 1024}, {"16x2", 16, 2}};
	static const char *const bad[] = {
		"", "2", "x1", "0x1", "2x", "2x1x", "-1x2", "2x0", "2x-1",
		"1025x1", "1x1025", "2X1", "2*1", "2x1 ", " 2x1", "2x 1", "+2x1",
		"2x+1", "99999999999999999999x1",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int a = -1, b = -1;
		if (nmu_topology_parse(good[i].s, &a, &b))
			fail_msg("'%s' refused", good[i].s);
		assert_int_equal(a, good[i].nodes);
		assert_int_equal(b, good[i].per);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int a = -7, b = -7;
		int rc = nmu_topology_parse(bad[i], &a, &b);
		if (rc != -EINVAL)
			fail_msg("'%s': %d (%d x %d), expected -EINVAL", bad[i], rc,
				 a, b);
		assert_true(a == -7 && b == -7); /* outputs only on success */
	}
}

static void test_topology_pool(void **state)
{
	struct nmu_pool *p = *state;
	struct nmu_config cfg = {.n_units = 2, .pin = true, .topology = "2x"};
	char err[256] = "";

	alarm(WATCHDOG_S);
	assert_int_equal(nmu_init(p, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'2x'"));
	nmu_destroy(p); /* zeroed by the failed init */

	/* 2x1 on 2 units: unit i on emulated node i, memory on its CPU's */
	pool_start(p, 2, true, "2x1");
	assert_int_equal(p->n_nodes, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(p->units[i].node, i);
		assert_int_equal(p->units[i].cpu, allowed_cpu[i % n_allowed]);
		assert_int_equal(p->units[i].mem_node, real_node(p->units[i].cpu));
	}
	run_rounds(p, 100);
	nmu_destroy(p);
	expect_caller_unpinned();

	/* no unit count: N * M units, node i / M */
	cfg = (struct nmu_config){.n_units = 0, .topology = "2x2"};
	assert_int_equal(nmu_init(p, &cfg, err, sizeof(err)), 0);
	assert_int_equal(p->n_units, 4);
	assert_int_equal(p->n_nodes, 2);
	const int want[4] = {0, 0, 1, 1};
	for (int i = 0; i < 4; i++) {
		assert_int_equal(p->units[i].node, want[i]);
		assert_int_equal(p->units[i].cpu, -1);
		assert_int_equal(p->units[i].mem_node,
				 real_node(allowed_cpu[i % n_allowed]));
	}
	nmu_destroy(p);

	/* more units than the topology has: nodes wrap, (i / M) % N */
	pool_start(p, 4, false, "2x1");
	const int wrap[4] = {0, 1, 0, 1};
	for (int i = 0; i < 4; i++)
		assert_int_equal(p->units[i].node, wrap[i]);
	assert_int_equal(p->n_nodes, 2);
	nmu_destroy(p);
	alarm(0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_placement, pool_setup,
						pool_teardown),
		cmocka_unit_test_setup_teardown(test_topology_parse, pool_setup,
						pool_teardown),
		cmocka_unit_test_setup_teardown(test_topology_pool, pool_setup,
						pool_teardown),
		cmocka_unit_test_setup_teardown(test_dispatch, pool_setup,
						pool_teardown),
		cmocka_unit_test_setup_teardown(test_barrier_rounds, pool_setup,
						pool_teardown),
		cmocka_unit_test_setup_teardown(test_many_units, pool_setup,
						pool_teardown),
		cmocka_unit_test_setup_teardown(test_cancel, pool_setup,
						pool_teardown),
		cmocka_unit_test_setup_teardown(test_waits_sleep, pool_setup,
						pool_teardown),
		cmocka_unit_test_setup_teardown(test_stats, pool_setup,
						pool_teardown),
	};

	CPU_ZERO(&allowed);
	if (sched_getaffinity(0, sizeof(allowed), &allowed)) {
		perror("sched_getaffinity");
		return 1;
	}
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &allowed))
			allowed_cpu[n_allowed++] = c;
	signal(SIGALRM, on_alarm);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
