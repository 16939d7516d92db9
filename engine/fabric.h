/*
 * fabric.h - the chip-to-chip interconnect: `--chips N` processes, each a
 * chip, joined by one shared-memory segment.
 *
 * fabric_start() makes the segment (a memfd: nothing has a name, so
 * nothing is left behind even after SIGKILL) and forks the other chips
 * before any thread exists; it returns in every chip with its index.
 * Chips then meet in collectives, called in the same order by every chip:
 *
 *   fabric_allgather  each chip contributes parts of a buffer (described by
 *                     a layout: columns of every row, or whole rows by
 *                     owner); every chip (or only the root) ends with all
 *   fabric_allreduce  float sum of every chip's vector, added in chip order
 *                     0, 1, .. N-1 on every chip, so all hold the same bits
 *   fabric_bcast      the root's bytes to every chip
 *
 * The segment has two slots per chip (a message larger than a slot goes
 * in slot-sized chunks, alternating slots) and, per chip, a cache-line
 * sequence counter of chunks published and one of chunks consumed. A
 * chunk is: wait until everybody consumed the chunk that last used this
 * slot, copy in, publish; wait for every peer's publish, copy out, mark
 * consumed. Waits spin (--fabric-spin-us) and then sleep on a futex in
 * the segment. This is a full mesh: every collective is one hop.
 *
 * Large all-gathers (fabric_config.cma_min) are single-copy: a chip
 * publishes its buffer's address, every reader copies the owner's part
 * out of the owner's memory (process_vm_readv), and the owner returns
 * once every reader is done with it.
 *
 * Emulated links (--fabric-latency-us X, --fabric-gbps Y): a chunk of n
 * bytes a chip publishes at t becomes visible to its peers at
 * max(t, its link's previous chunk done) + n / Y + X; readers spin (never
 * sleep) until then. X = 0, Y = 0: the segment as it is.
 *
 * Backends (fabric_config.backend):
 *   FABRIC_SHM  the above: chips forked by fabric_start on one host
 *   FABRIC_MPI  chips are the ranks mpirun started (on any hosts), and
 *               every collective is Open MPI's (fabric_mpi.h); same calls,
 *               same bytes counted, same bits (an all-reduce of more than
 *               two chips is gathered and added here in chip order)
 *
 * Failure: a chip that fails calls fabric_abort; every wait in every chip
 * then returns -ECONNABORTED. Waits also notice a peer process that has
 * exited (pidfd) within FABRIC_CHECK_MS, and give up after the timeout
 * with -ETIMEDOUT; fabric_error() says what happened.
 */
#ifndef STRATA_FABRIC_H
#define STRATA_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FABRIC_MAX_CHIPS 64
#define FABRIC_CHECK_MS 20      /* peer liveness checked this often */
#define FABRIC_SAMPLES 65536    /* latency samples kept per op kind */

enum fabric_op { FABRIC_ALLGATHER, FABRIC_ALLREDUCE, FABRIC_BCAST,
		 FABRIC_OP_COUNT };

enum fabric_backend { FABRIC_SHM, FABRIC_MPI };

struct fabric_config {
	enum fabric_backend backend;
	int n_chips;            /* >= 1 (MPI: 1 or the number of ranks) */
	size_t slot_bytes;      /* per slot; 0: 1 MiB */
	double latency_us;      /* emulated per-hop latency, >= 0 */
	double gbps;            /* emulated link bandwidth, GB/s; 0: none */
	double timeout_s;       /* a collective's wait for a peer; <= 0: 30 */
	double spin_us;         /* spin before sleeping; < 0: 1000 (0 when
				 * chips x units_per_chip > CPUs) */
	int units_per_chip;     /* to decide the spin; 0: 1 */
	/* fault injection (tests): chip stall_chip sleeps stall_s seconds
	 * before its stall_op-th collective (counted from 1); 0: none */
	int stall_chip, stall_op;
	double stall_s;
	/* tests: the 32-bit chunk counters start here, to reach their wrap;
	 * 0: from 0 */
	uint32_t first_chunk;
	/* an all-gather whose largest part has at least this many bytes is
	 * single-copy: each reader copies the owner's part straight from the
	 * owner's buffer (process_vm_readv), not through the slots; 0: 8 KiB
	 * (bench/probe on a Xeon model 167: from parts of 8 KiB on, one copy
	 * and a syscall beat two copies);
	 * SIZE_MAX (or STRATA_FABRIC_CMA=0): never; STRATA_FABRIC_CMA=N: N. Used only where every
	 * chip could read another's memory at start (same user, no ptrace
	 * restriction beyond Yama's scope 1). */
	size_t cma_min;
};

/* What a chip measured per op kind. */
struct fabric_op_stats {
	uint64_t count;
	uint64_t bytes;      /* bytes this chip copied in and out */
	int64_t ns, max_ns;  /* time inside the calls */
	int64_t wait_ns;     /* of which waiting for peers to arrive (MPI:
			      * -1, not measured: its calls do not say) */
	uint64_t hist[40];   /* calls by floor(log2(ns)) */
};

struct fabric_stats {
	struct fabric_op_stats op[FABRIC_OP_COUNT];
};

/* A part of a buffer of nb rows, ld elements apart, elem bytes each:
 *   cols:  chip c has elements [cols[c], cols[c+1]) of every row
 *   owner: chip owner[i] has row i whole (the first row_len elements)
 * root >= 0: only the root needs the result (a gather). */
struct fabric_layout {
	size_t elem;
	int64_t nb, ld;
	const int64_t *cols;  /* [n_chips + 1], or NULL */
	const int *owner;     /* [nb], when cols is NULL */
	int64_t row_len;
	int root;             /* -1: every chip */
};

struct fabric;

/* Make the fabric and fork the other chips. Returns 0 in every chip with
 * *chip its index (0 in the calling process), or -errno with a message
 * (then no process was left running). With n_chips == 1: no segment, no
 * fork, every collective returns at once. */
int fabric_start(struct fabric **f, const struct fabric_config *cfg, int *chip,
		 char *err, size_t errlen);

int fabric_chip(const struct fabric *f);
int fabric_chips(const struct fabric *f);
/* a chip's pid (MPI: this chip's; 0 for another) */
int fabric_pid(const struct fabric *f, int chip);
/* this chip among the chips on its host, and their number */
void fabric_local(const struct fabric *f, int *index, int *count);
/* this chip's host name */
const char *fabric_host(const struct fabric *f);
/* "shm" or "mpi"; whether it is MPI */
const char *fabric_backend_name(const struct fabric *f);
bool fabric_is_mpi(const struct fabric *f);
/* the MPI library ("Open MPI v4.1.4"), or "" */
const char *fabric_library(const struct fabric *f);

/* Collectives. 0 or -errno (-ECONNABORTED: a chip aborted or died,
 * -ETIMEDOUT: a peer did not arrive in time; see fabric_error). idle: the
 * wait may be unbounded in time (a chip waiting for its next command). */
int fabric_allgather(struct fabric *f, void *buf, const struct fabric_layout *l);
int fabric_allreduce(struct fabric *f, float *buf, int64_t n);
int fabric_bcast(struct fabric *f, void *buf, size_t n, int root, bool idle);

/* Control traffic (start-up, flushes, reports) is not measured: between
 * fabric_quiet(f, true) and fabric_quiet(f, false) nothing is recorded. */
void fabric_quiet(struct fabric *f, bool quiet);

/* Make every chip's waits fail; rc and msg (may be NULL) are what the
 * others report. Async-signal-unsafe. MPI: chip 0 records it (its own
 * report follows, then fabric_finish ends the job); another chip prints
 * msg and ends the job (MPI_Abort) when called on its main thread. */
void fabric_abort(struct fabric *f, int rc, const char *msg);

/* Ask chip 0 to stop (from a signal handler in any chip: async-signal-
 * safe); fabric_stop_requested returns the signal number, or 0. */
void fabric_request_stop(struct fabric *f, int sig);
int fabric_stop_requested(struct fabric *f);

/* The chip that called fabric_abort first, or -1 */
int fabric_abort_chip(const struct fabric *f);

/* The first failure this chip saw, or "" */
const char *fabric_error(const struct fabric *f);

const struct fabric_stats *fabric_get_stats(const struct fabric *f);
void fabric_stats_reset(struct fabric *f);
/* median / p99 of op's call latencies since the reset, ns (sorts) */
void fabric_percentiles(struct fabric *f, enum fabric_op op, double *p50,
			double *p99);
const char *fabric_op_name(enum fabric_op op);

/* End: chip 0 waits for every other chip to exit and returns 0, or -EPIPE
 * with a message naming a chip that died by a signal, did not exit, or
 * exited non-zero without an abort (an aborted run has its message
 * already); another chip returns 0. Unmaps the segment and frees f (NULL is fine).
 * MPI: MPI_Finalize, or MPI_Abort of the job after an abort or a failed
 * call (peers may be blocked in a collective). */
int fabric_finish(struct fabric *f, char *err, size_t errlen);

#endif
