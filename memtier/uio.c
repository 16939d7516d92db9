/*
 * uio.c - the io_uring request engine behind memtier's flash tiers.
 */
#include "memtier/uio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "memtier/trace.h"
#include "models/util.h"

#define UIO_BUF_MAX ((size_t)1 << 30)

int uio_init(struct uio *u, unsigned qd, void *buf, size_t bytes, int fd,
	     char *err, size_t errlen)
{
	int rc;

	u->qd = qd;
	u->reqs = xcalloc(qd, sizeof(*u->reqs));
	for (unsigned i = 0; i < qd; i++)
		u->reqs[i].next_free = i + 1 < qd ? &u->reqs[i + 1] : NULL;
	u->free_reqs = u->reqs;
	if ((rc = io_uring_queue_init(qd, &u->ring, 0))) {
		snprintf(err, errlen, "io_uring_queue_init: %s", strerror(-rc));
		return rc;
	}
	u->ring_ok = 1;
	struct iovec iov[UIO_MAX_BUFS];
	unsigned n = 0;
	for (size_t at = 0; at < bytes; at += UIO_BUF_MAX, n++) {
		if (n == UIO_MAX_BUFS) {
			snprintf(err, errlen, "%zu bytes of I/O buffers: more than "
				 "%d GiB", bytes, UIO_MAX_BUFS);
			return -E2BIG;
		}
		iov[n].iov_base = (char *)buf + at;
		iov[n].iov_len = bytes - at < UIO_BUF_MAX ? bytes - at : UIO_BUF_MAX;
	}
	u->base = buf;
	u->bytes = bytes;
	if ((rc = io_uring_register_buffers(&u->ring, iov, n))) {
		snprintf(err, errlen, "registering %zu bytes of buffers: %s "
			 "(as non-root, raise RLIMIT_MEMLOCK)", bytes,
			 strerror(-rc));
		return rc;
	}
	if ((rc = io_uring_register_files(&u->ring, &fd, 1))) {
		snprintf(err, errlen, "registering the file: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

void uio_exit(struct uio *u)
{
	u->trace = NULL; /* the trace may be gone already */
	if (u->ring_ok) {
		/* nothing may land in freed buffers: drain what is in flight */
		while (u->in_flight > 0 && uio_reap(u, 1) == 0)
			;
		io_uring_queue_exit(&u->ring);
	}
	u->ring_ok = 0;
	free(u->reqs);
	u->reqs = NULL;
}

static int prep(struct uio *u, struct uio_req *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {
		int rc = io_uring_submit(&u->ring);
		if (rc < 0)
			return rc;
		if (!(sqe = io_uring_get_sqe(&u->ring)))
			return -EBUSY;
	}
	int idx = (int)((size_t)(r->buf - u->base) / UIO_BUF_MAX);
	if (r->write)
		io_uring_prep_write_fixed(sqe, 0, r->buf + r->done,
					  r->len - r->done, r->off + r->done, idx);
	else
		io_uring_prep_read_fixed(sqe, 0, r->buf + r->done,
					 r->len - r->done, r->off + r->done, idx);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data(sqe, r);
	r->t_ns = now_ns();
	u->in_flight++;
	if (u->st) {
		u->st->n_requests++;
		u->st->qd_sum += u->in_flight;
		if (u->in_flight > u->st->qd_max)
			u->st->qd_max = u->in_flight;
	}
	return 0;
}

static int queue_one(struct uio *u, struct uio_group *g, int write,
		     char *buf, uint32_t len, uint64_t off)
{
	while (!u->free_reqs) {
		int rc = uio_reap(u, 1);
		if (rc)
			return rc;
	}
	struct uio_req *r = u->free_reqs;
	u->free_reqs = r->next_free;
	*r = (struct uio_req){.g = g, .off = off, .len = len, .write = write,
			      .buf = buf};
	if (g->pending++ == 0)
		g->t_submit_ns = now_ns();
	int rc = prep(u, r);
	if (rc) {
		g->pending--;
		r->next_free = u->free_reqs;
		u->free_reqs = r;
	}
	return rc;
}

int uio_queue(struct uio *u, struct uio_group *g, int write, char *buf,
	      uint64_t len, uint64_t off, uint32_t max_req)
{
	while (len > 0) {
		/* up to max_req, and not past the registered buffer's end */
		size_t in_buf = UIO_BUF_MAX - (size_t)(buf - u->base) % UIO_BUF_MAX;
		uint64_t n = len < max_req ? len : max_req;
		if (n > in_buf)
			n = in_buf;
		int rc = queue_one(u, g, write, buf, (uint32_t)n, off);
		if (rc) {
			if (!g->err)
				g->err = rc;
			return rc;
		}
		buf += n;
		off += n;
		len -= n;
	}
	return 0;
}

int uio_submit(struct uio *u)
{
	int rc = io_uring_submit(&u->ring);
	return rc < 0 ? rc : 0;
}

/* the injection hook (off by default) */
static int inject(struct uio *u, const struct uio_req *r, int res)
{
	if (u->fault == MEMTIER_FAULT_NONE || res <= 0)
		return res;
	if (u->fault == MEMTIER_FAULT_ENOSPC && !r->write)
		return res;
	if (++u->n_completions % u->fault_every)
		return res;
	switch (u->fault) {
	case MEMTIER_FAULT_EIO: return -EIO;
	case MEMTIER_FAULT_ENOSPC: return -ENOSPC;
	case MEMTIER_FAULT_SHORT:
		return res >= 8192 ? res / 2 / 4096 * 4096 : res;
	default: return res;
	}
}

int uio_reap(struct uio *u, int wait)
{
	struct io_uring_cqe *cqe;
	int rc;

	if ((rc = uio_submit(u)))
		return rc;
	while (u->in_flight > 0) {
		rc = wait ? io_uring_wait_cqe(&u->ring, &cqe)
			  : io_uring_peek_cqe(&u->ring, &cqe);
		if (rc == -EAGAIN && !wait)
			return 0;
		if (rc == -EINTR)
			continue;
		if (rc < 0)
			return rc;
		struct uio_req *r = io_uring_cqe_get_data(cqe);
		int res = inject(u, r, cqe->res);
		io_uring_cqe_seen(&u->ring, cqe);
		u->in_flight--;
		if (u->st)
			u->st->req_ns += now_ns() - r->t_ns;
		wait = 0;
		struct uio_group *g = r->g;
		if (res == 0 && !r->write && r->off + r->done >= u->file_size) {
			/* a widened read reaching end of file: complete */
		} else if (res <= 0) {
			if (!g->err)
				g->err = res < 0 ? res : -EIO;
		} else {
			r->done += (uint32_t)res;
			if (u->st) {
				if (r->write)
					u->st->bytes_written += (uint64_t)res;
				else
					u->st->bytes_loaded += (uint64_t)res;
			}
			if (r->done < r->len &&
			    (r->write || r->off + r->done < u->file_size)) {
				/* short transfer: requeue the rest */
				if ((rc = prep(u, r)) == 0) {
					if ((rc = uio_submit(u)))
						return rc; /* queued; sent next time */
					continue;
				}
				if (!g->err)
					g->err = rc; /* and complete it below */
			}
		}
		if (--g->pending == 0 && g->name)
			trace_span(u->trace, TRACE_IO, g->name, g->arg,
				   g->t_submit_ns, now_ns());
		r->next_free = u->free_reqs;
		u->free_reqs = r;
	}
	return 0;
}

int uio_wait(struct uio *u, struct uio_group *g)
{
	while (g->pending > 0) {
		if (u->in_flight == 0)
			return g->err ? g->err : -EIO; /* lost: never wait forever */
		int rc = uio_reap(u, 1);
		if (rc)
			return rc;
	}
	return g->err;
}

int memtier_open_direct(const char *path, int flags,
			const struct memtier_config *cfg, char *err,
			size_t errlen)
{
	int fd, rc;

	if (cfg->no_direct) {
		fd = open(path, flags | O_CLOEXEC, 0600);
	} else if (cfg->fault == MEMTIER_FAULT_NODIRECT) {
		fd = -1;
		errno = EINVAL;
	} else {
		fd = open(path, flags | O_DIRECT | O_CLOEXEC, 0600);
	}
	if (fd >= 0)
		return fd;
	rc = -errno;
	if (rc == -EINVAL && !cfg->no_direct)
		snprintf(err, errlen, "%s: the file system refuses direct I/O "
			 "(O_DIRECT: %s); the flash tiers read around the page "
			 "cache, use a file system that supports it or pass "
			 "--no-direct to go through the page cache", path,
			 strerror(-rc));
	else
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
	return rc;
}

int memtier_pread_full(int fd, void *dst, uint64_t n, uint64_t off)
{
	const size_t chunk = 8u << 20;
	unsigned char *d = dst;

	while (n > 0) {
		size_t want = n > chunk ? chunk : (size_t)n;
		ssize_t r = pread(fd, d, want, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO; /* file shrank under us */
		posix_fadvise(fd, (off_t)off, r, POSIX_FADV_DONTNEED);
		d += r;
		off += (uint64_t)r;
		n -= (uint64_t)r;
	}
	return 0;
}
