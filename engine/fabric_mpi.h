/*
 * fabric_mpi.h - the fabric's second backend, Open MPI (private to
 * engine/fabric.c; the engine sees only fabric.h).
 *
 * Chips are the ranks of MPI_COMM_WORLD, started by mpirun; the transport
 * (shared memory, TCP, RDMA) is MPI's choice. Every collective is MPI's
 * own, non-blocking, completed by a test loop that spins, then sleeps in
 * short steps, and gives up after the timeout; a failed call (a peer gone:
 * MPI's error handler returns) ends with a message. Byte buffers only: the
 * layouts are packed and unpacked by fabric.c.
 *
 * Built with STRATA_MPI (make MPI=1, the default where mpicc exists);
 * without it fmpi_start says how to get it and the rest is never called.
 */
#ifndef STRATA_FABRIC_MPI_H
#define STRATA_FABRIC_MPI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fmpi;

/* How a call waits: spin_ns, then sleeps; timeout_ns unless idle. op, n:
 * the call, for messages. */
struct fmpi_wait {
	int64_t spin_ns, timeout_ns;
	bool idle;
	const char *op;
	uint64_t n;
};

/* MPI_Init (once per process); *chip, *n_chips: rank and size; *local,
 * *n_local: this rank among the ranks on its host. stop: this process's
 * stop word (a signal number), forwarded to rank 0 by any wait. */
int fmpi_start(struct fmpi **m, int *chip, int *n_chips, int *local,
	       int *n_local, volatile sig_atomic_t *stop, char *err,
	       size_t errlen);

/* buf holds every chip's part, contiguous: chip c's len[c] bytes at
 * disp[c]. root >= 0: only the root receives (a gather). */
int fmpi_allgatherv(struct fmpi *m, void *buf, const int *len, const int *disp,
		    int root, const struct fmpi_wait *w, char *err, size_t errlen);
/* float sum of n elements, in place (two chips: MPI_Allreduce, a + b is
 * b + a; more: every chip's vector gathered into all, n_chips x n floats,
 * and added in chip order by the caller) */
int fmpi_allreduce2(struct fmpi *m, float *buf, int64_t n,
		    const struct fmpi_wait *w, char *err, size_t errlen);
int fmpi_allgather_f(struct fmpi *m, const float *mine, float *all, int64_t n,
		     const struct fmpi_wait *w, char *err, size_t errlen);
int fmpi_bcast(struct fmpi *m, void *buf, size_t n, int root,
	       const struct fmpi_wait *w, char *err, size_t errlen);

/* rank 0: a stop a peer forwarded (a signal number), or 0 */
int fmpi_stop_from_peer(struct fmpi *m);

/* this rank's host name */
const char *fmpi_host(const struct fmpi *m);
/* the library's version line, e.g. "Open MPI v4.1.4" */
const char *fmpi_library(const struct fmpi *m);

/* end the whole job now (MPI_Abort); does not return */
void fmpi_abort_job(struct fmpi *m, int code) __attribute__((noreturn));
/* MPI_Finalize (a clean end: every rank gets here) */
void fmpi_finish(struct fmpi *m);

#endif
