/*
 * fabric_mpi.c - the fabric over Open MPI. See fabric_mpi.h.
 */
#include "engine/fabric_mpi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef STRATA_MPI

int fmpi_start(struct fmpi **m, int *chip, int *n_chips, int *local,
	       int *n_local, volatile sig_atomic_t *stop, char *err,
	       size_t errlen)
{
	*m = NULL;
	snprintf(err, errlen, "--fabric mpi: this decode was built without MPI "
		 "(install Open MPI: `make deps`, then rebuild: `make MPI=1`)");
	return -ENOSYS;
}

int fmpi_allgatherv(struct fmpi *m, void *buf, const int *len, const int *disp,
		    int root, const struct fmpi_wait *w, char *err, size_t errlen)
{
	return -ENOSYS;
}

int fmpi_allreduce2(struct fmpi *m, float *buf, int64_t n,
		    const struct fmpi_wait *w, char *err, size_t errlen)
{
	return -ENOSYS;
}

int fmpi_allgather_f(struct fmpi *m, const float *mine, float *all, int64_t n,
		     const struct fmpi_wait *w, char *err, size_t errlen)
{
	return -ENOSYS;
}

int fmpi_bcast(struct fmpi *m, void *buf, size_t n, int root,
	       const struct fmpi_wait *w, char *err, size_t errlen)
{
	return -ENOSYS;
}

int fmpi_stop_from_peer(struct fmpi *m) { return 0; }
const char *fmpi_host(const struct fmpi *m) { return ""; }
const char *fmpi_library(const struct fmpi *m) { return ""; }
void fmpi_abort_job(struct fmpi *m, int code) { _exit(code); }
void fmpi_finish(struct fmpi *m) {}

#else /* STRATA_MPI */

#include <limits.h>
#include <mpi.h>
#include <time.h>

#include "models/util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define TAG_STOP 1

struct fmpi {
	MPI_Comm comm;  /* the collectives */
	MPI_Comm ctl;   /* stop requests, point to point */
	int rank, size;
	volatile sig_atomic_t *stop;
	int stop_buf, peer_stop;
	bool stop_sent;
	MPI_Request stop_rq;
	char host[MPI_MAX_PROCESSOR_NAME];
	char library[MPI_MAX_LIBRARY_VERSION_STRING];
};

static int mpi_error(struct fmpi *m, int code, const struct fmpi_wait *w,
		     char *err, size_t errlen)
{
	char s[MPI_MAX_ERROR_STRING];
	int n = 0;

	if (MPI_Error_string(code, s, &n) != MPI_SUCCESS)
		snprintf(s, sizeof(s), "error %d", code);
	snprintf(err, errlen, "chip %d (%s): %s #%llu: MPI: %s (a peer may "
		 "have died)", m->rank, m->host, w->op, (unsigned long long)w->n, s);
	return -ECONNABORTED;
}

/* a stop this rank was asked for goes to rank 0 (once) */
static void forward_stop(struct fmpi *m)
{
	if (m->rank == 0 || m->stop_sent || !m->stop || !*m->stop)
		return;
	m->stop_buf = (int)*m->stop;
	if (MPI_Isend(&m->stop_buf, 1, MPI_INT, 0, TAG_STOP, m->ctl,
		      &m->stop_rq) == MPI_SUCCESS)
		m->stop_sent = true;
}

/* Complete rq: spin w->spin_ns, then sleep in steps doubling from 20 us
 * (to 200 us in a call, 1 ms while idle); -ETIMEDOUT after the timeout. */
static int wait_req(struct fmpi *m, MPI_Request *rq, int code,
		    const struct fmpi_wait *w, char *err, size_t errlen)
{
	const long cap = w->idle ? 1000000 : 200000;
	int64_t t0 = now_ns(), spin_end = t0 + w->spin_ns;
	long nap = 20000;

	if (code != MPI_SUCCESS)
		return mpi_error(m, code, w, err, errlen);
	for (unsigned i = 1;; i++) {
		int done = 0;
		if ((code = MPI_Test(rq, &done, MPI_STATUS_IGNORE)) != MPI_SUCCESS)
			return mpi_error(m, code, w, err, errlen);
		if (done)
			return 0;
		if ((i & 63) && now_ns() < spin_end) {
			cpu_relax();
			continue;
		}
		forward_stop(m);
		int64_t t = now_ns();
		if (!w->idle && t - t0 > w->timeout_ns) {
			snprintf(err, errlen, "chip %d (%s): %s #%llu did not complete "
				 "within %.1f s (--fabric-timeout-s): a chip is "
				 "stalled or unreachable", m->rank, m->host, w->op,
				 (unsigned long long)w->n, (double)w->timeout_ns / 1e9);
			return -ETIMEDOUT;
		}
		if (t >= spin_end) {
			struct timespec ts = {0, nap};
			nanosleep(&ts, NULL);
			nap = nap * 2 < cap ? nap * 2 : cap;
		}
	}
}

int fmpi_start(struct fmpi **out, int *chip, int *n_chips, int *local,
	       int *n_local, volatile sig_atomic_t *stop, char *err,
	       size_t errlen)
{
	struct fmpi *m;
	int init = 0, provided = 0, n = 0;
	MPI_Comm node;

	*out = NULL;
	MPI_Initialized(&init);
	if (!init && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED,
				     &provided) != MPI_SUCCESS) {
		snprintf(err, errlen, "--fabric mpi: MPI_Init_thread failed");
		return -EIO;
	}
	m = xcalloc(1, sizeof(*m));
	m->stop = stop;
	/* a failed call returns its error (and we say what happened), rather
	 * than MPI's default of aborting the job with no word of ours */
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	MPI_Comm_rank(MPI_COMM_WORLD, &m->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &m->size);
	MPI_Get_processor_name(m->host, &n);
	MPI_Get_library_version(m->library, &n);
	char *nl = strchr(m->library, ','); /* "Open MPI v4.1.4, package..." */
	if (nl)
		*nl = 0;
	if (MPI_Comm_dup(MPI_COMM_WORLD, &m->comm) != MPI_SUCCESS ||
	    MPI_Comm_dup(MPI_COMM_WORLD, &m->ctl) != MPI_SUCCESS ||
	    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, m->rank,
				MPI_INFO_NULL, &node) != MPI_SUCCESS) {
		snprintf(err, errlen, "--fabric mpi: rank %d (%s): communicators "
			 "could not be made", m->rank, m->host);
		free(m);
		return -EIO;
	}
	MPI_Comm_rank(node, local);
	MPI_Comm_size(node, n_local);
	MPI_Comm_free(&node);
	if (provided < MPI_THREAD_FUNNELED && !init && m->rank == 0)
		fprintf(stderr, "warning: %s gives thread level %d, under "
			"MPI_THREAD_FUNNELED\n", m->library, provided);
	*chip = m->rank;
	*n_chips = m->size;
	*out = m;
	return 0;
}

int fmpi_allgatherv(struct fmpi *m, void *buf, const int *len, const int *disp,
		    int root, const struct fmpi_wait *w, char *err, size_t errlen)
{
	MPI_Request rq;
	int code;

	if (root < 0)
		code = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf,
				       len, disp, MPI_BYTE, m->comm, &rq);
	else if (root == m->rank)
		code = MPI_Igatherv(MPI_IN_PLACE, 0, MPI_BYTE, buf, len, disp,
				    MPI_BYTE, root, m->comm, &rq);
	else
		code = MPI_Igatherv((char *)buf + disp[m->rank], len[m->rank],
				    MPI_BYTE, NULL, NULL, NULL, MPI_BYTE, root,
				    m->comm, &rq);
	return wait_req(m, &rq, code, w, err, errlen);
}

int fmpi_allreduce2(struct fmpi *m, float *buf, int64_t n,
		    const struct fmpi_wait *w, char *err, size_t errlen)
{
	MPI_Request rq;
	int code = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM,
				  m->comm, &rq);

	return wait_req(m, &rq, code, w, err, errlen);
}

int fmpi_allgather_f(struct fmpi *m, const float *mine, float *all, int64_t n,
		     const struct fmpi_wait *w, char *err, size_t errlen)
{
	MPI_Request rq;
	int code = MPI_Iallgather(mine, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT,
				  m->comm, &rq);

	return wait_req(m, &rq, code, w, err, errlen);
}

int fmpi_bcast(struct fmpi *m, void *buf, size_t n, int root,
	       const struct fmpi_wait *w, char *err, size_t errlen)
{
	MPI_Request rq;
	int code = MPI_Ibcast(buf, (int)n, MPI_BYTE, root, m->comm, &rq);

	return wait_req(m, &rq, code, w, err, errlen);
}

int fmpi_stop_from_peer(struct fmpi *m)
{
	int flag = 0;
	MPI_Status st;

	if (!m || m->rank != 0 || m->peer_stop)
		return m ? m->peer_stop : 0;
	if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_STOP, m->ctl, &flag, &st) ==
	    MPI_SUCCESS && flag) {
		int sig = 0;
		MPI_Recv(&sig, 1, MPI_INT, st.MPI_SOURCE, TAG_STOP, m->ctl,
			 MPI_STATUS_IGNORE);
		m->peer_stop = sig ? sig : SIGTERM;
	}
	return m->peer_stop;
}

const char *fmpi_host(const struct fmpi *m)
{
	return m ? m->host : "";
}

const char *fmpi_library(const struct fmpi *m)
{
	return m ? m->library : "";
}

void fmpi_abort_job(struct fmpi *m, int code)
{
	fflush(NULL);
	MPI_Abort(MPI_COMM_WORLD, code);
	_exit(code); /* MPI_Abort does not return; should it, end anyway */
}

void fmpi_finish(struct fmpi *m)
{
	if (!m)
		return;
	if (m->stop_sent) { /* rank 0 may have ended without reading it */
		MPI_Cancel(&m->stop_rq);
		MPI_Request_free(&m->stop_rq);
	}
	for (int flag = 1; m->rank == 0 && flag;) { /* stops not read */
		MPI_Status st;
		int sig;
		flag = 0;
		if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_STOP, m->ctl, &flag, &st) !=
		    MPI_SUCCESS)
			break;
		if (flag)
			MPI_Recv(&sig, 1, MPI_INT, st.MPI_SOURCE, TAG_STOP, m->ctl,
				 MPI_STATUS_IGNORE);
	}
	MPI_Comm_free(&m->ctl);
	MPI_Comm_free(&m->comm);
	MPI_Finalize();
	free(m);
}

#endif
