/*
 * nmu.h - near-memory units: a pool of worker threads, one per unit, each
 * pinned to one CPU and grouped by the NUMA node of that CPU.
 *
 * A unit is where compute sits next to the bytes it owns (engine/plan.h
 * says which): the engine gives each unit its own memtier instance and KV
 * cache on its node, and runs every token as one job on every unit
 * (nmu_run). Units meet at nmu_barrier, which spins briefly and then
 * sleeps on a futex; every barrier wait is timed per unit. A unit that
 * fails calls nmu_fail: every barrier then returns -ECANCELED at once, so
 * the others leave the job instead of waiting forever.
 *
 * The calling thread is unit 0 (as OpenMP's master thread is), so a pool of
 * n units starts n - 1 threads. With pin = false (`--nmu off`) the threads
 * are not pinned and the OS places them.
 *
 * Topology: the CPUs this process may run on (sched_getaffinity), each
 * CPU's node from libnuma. STRATA_TOPOLOGY=NxM emulates N nodes of M CPUs
 * (unit i on logical node i / M) for testing placement logic on a one-node
 * machine; memory is then bound to the real node of the unit's CPU
 * (`mem_node`), since emulated nodes have no memory of their own.
 */
#ifndef STRATA_NMU_H
#define STRATA_NMU_H

#include <pthread.h>
#include <sched.h> /* cpu_set_t (_GNU_SOURCE) */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nmu_config {
	int n_units;          /* <= 0: one per allowed CPU */
	bool pin;             /* pin unit i to the i-th allowed CPU */
	const char *topology; /* "NxM" (STRATA_TOPOLOGY) or NULL: real */
	int64_t spin_ns;      /* barrier spin before sleeping; <= 0: 1 ms
			       * (0 spin when units outnumber CPUs) */
};

struct nmu_pool;

/* per-unit figures; barrier waits also as samples for percentiles */
struct nmu_unit_stats {
	int64_t busy_ns;    /* inside jobs, barrier waits excluded */
	int64_t barrier_ns; /* waiting at barriers */
	uint64_t n_barriers;
	uint64_t n_jobs;
};

struct nmu_unit {
	int id;
	int cpu;      /* pinned CPU, -1 if not pinned */
	int node;     /* NUMA node (logical, under an emulated topology) */
	int mem_node; /* node its memory is bound to (real) */
	struct nmu_pool *pool;
	void *user;   /* the engine's per-unit state */
	struct nmu_unit_stats st;
	int64_t job_t0;
	uint32_t *wait_ns; /* [NMU_WAIT_SAMPLES] barrier waits, this window */
	uint64_t n_wait;   /* barriers seen this window (may exceed cap) */
	char pad[64];
};

#define NMU_WAIT_SAMPLES (1u << 16)

typedef int (*nmu_job_fn)(struct nmu_unit *u, void *arg);

struct nmu_pool {
	int n_units;
	int n_nodes;
	int n_cpus;      /* CPUs allowed */
	bool pinned;
	int64_t spin_ns;
	struct nmu_unit *units;   /* [n_units] */
	pthread_t *threads;       /* [n_units], [0] unused */
	int n_started;
	/* the calling thread's CPUs before nmu_init pinned it to unit 0's */
	cpu_set_t caller_cpus;
	bool caller_pinned;
	/* job dispatch */
	nmu_job_fn job;
	void *arg;
	_Alignas(64) atomic_uint run_gen;  /* bumped per job (and at exit) */
	atomic_int run_sleepers;
	_Alignas(64) atomic_uint done;     /* workers finished this job */
	atomic_int done_sleeper;
	_Alignas(64) atomic_int failed;    /* first error, 0 if none */
	atomic_int job_rc;
	bool quit;
	/* barrier */
	_Alignas(64) atomic_uint bar_count;
	_Alignas(64) atomic_uint bar_gen;
	atomic_int bar_sleepers;
};

/* Start the pool. Returns 0 or -errno with a message in err (a bad
 * STRATA_TOPOLOGY, more pinned units than allowed CPUs is allowed but not
 * pinned one-to-one: units share CPUs round-robin). With pin, the calling
 * thread (unit 0) is pinned until nmu_destroy, which gives it back the
 * CPUs it had, so destroy on the thread that called init. Destroy accepts
 * a zeroed or half-built pool. */
int nmu_init(struct nmu_pool *p, const struct nmu_config *cfg, char *err,
	     size_t errlen);
void nmu_destroy(struct nmu_pool *p);

/* Run job(u, arg) on every unit (unit 0 on the calling thread) and wait
 * for all. Returns 0, or the first non-zero value a job returned or gave
 * nmu_fail. Not reentrant; one caller thread. */
int nmu_run(struct nmu_pool *p, nmu_job_fn job, void *arg);

/* Wait until every unit has reached this barrier. Returns 0, or
 * -ECANCELED once any unit has failed in this job. Timed. */
int nmu_barrier(struct nmu_unit *u);

/* Record rc as the job's error and release every barrier. */
void nmu_fail(struct nmu_unit *u, int rc);

/* Clear every unit's figures (start of a measuring window). Call between
 * jobs. */
void nmu_stats_reset(struct nmu_pool *p);

/* Median and 99th percentile of unit u's barrier waits this window, in
 * ns (sorts the samples: call between jobs). 0 with no samples. */
void nmu_wait_percentiles(struct nmu_unit *u, double *p50_ns, double *p99_ns);

/* "NxM" (decimal digits only, each 1..1024) -> nodes, cpus per node;
 * 0 or -EINVAL (outputs untouched) */
int nmu_topology_parse(const char *s, int *n_nodes, int *cpus_per_node);

#endif
