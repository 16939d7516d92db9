/*
 * uio.h - private to memtier/: one io_uring over one registered file and
 * one registered buffer, shared by the flash weight tier (reads) and the
 * flash KV-cache (reads and writes).
 *
 * Requests are grouped: a group is whatever the caller waits for as one
 * (a segment, a layer's KV blocks, a block's write). Short transfers
 * inside the file are requeued for the rest; a read that ends at end of
 * file is complete. Every request counts bytes and the queue depth it
 * was submitted at into the tier's stats; the fault hook (tests) turns
 * chosen completions into errors or short transfers.
 */
#ifndef STRATA_UIO_H
#define STRATA_UIO_H

#include <liburing.h>
#include <stdint.h>

#include "memtier/memtier.h"

struct uio_group {
	int pending;         /* requests not completed yet */
	int err;             /* first error (-errno), 0 if none */
	int64_t t_submit_ns; /* for the trace */
	const char *name;    /* trace span name (static), NULL: none */
	int32_t arg;         /* trace argument */
};

struct uio_req {
	struct uio_group *g;
	uint64_t off;
	uint32_t len, done;
	int write;
	int64_t t_ns; /* when (re)submitted */
	char *buf;
	struct uio_req *next_free;
};

#define UIO_MAX_BUFS 64 /* x 1 GiB, io_uring's limit per registered buffer */

struct uio {
	struct io_uring ring;
	int ring_ok;
	char *base;         /* the registered range, in <= 1 GiB buffers */
	size_t bytes;
	unsigned qd;
	struct uio_req *reqs, *free_reqs;
	unsigned in_flight; /* submitted, not reaped */
	uint64_t file_size; /* reads reaching it may end short */
	enum memtier_fault fault;
	uint64_t fault_every, n_completions;
	struct memtier_tier_stats *st;
	struct trace *trace;
};

/* Ring of qd entries with [buf, buf + bytes) registered (as buffers of at
 * most 1 GiB each) and fd registered as file 0. Returns 0 or -errno with a
 * message in err; uio_exit accepts a half initialised u. */
int uio_init(struct uio *u, unsigned qd, void *buf, size_t bytes, int fd,
	     char *err, size_t errlen);
void uio_exit(struct uio *u);

/* Queue a transfer of len bytes between buf (inside the registered
 * range) and file offset off, counted in g, as requests of at most
 * max_req bytes that never straddle two registered buffers. Waits for
 * free requests if all are in flight. Returns 0 or -errno; on failure the
 * part not queued is recorded as g->err. */
int uio_queue(struct uio *u, struct uio_group *g, int write, char *buf,
	      uint64_t len, uint64_t off, uint32_t max_req);
/* Hand queued requests to the kernel. */
int uio_submit(struct uio *u);
/* Reap completions; if wait, block for at least one. 0 or -errno. */
int uio_reap(struct uio *u, int wait);
/* Reap until g has nothing pending; returns g->err (or a ring error). */
int uio_wait(struct uio *u, struct uio_group *g);

/* pread n bytes at off into dst, in large chunks, dropping each chunk
 * from the page cache once copied (a resident copy must not count twice
 * against a memory limit). 0, -errno, or -EIO if the file ends early. */
int memtier_pread_full(int fd, void *dst, uint64_t n, uint64_t off);

/* open(path, flags | O_DIRECT | O_CLOEXEC, 0600), or without O_DIRECT when
 * cfg->no_direct. A file system that refuses O_DIRECT (or the NODIRECT
 * fault) gets a message that says so and names --no-direct. Returns the
 * fd or -errno with a message in err. */
int memtier_open_direct(const char *path, int flags,
			const struct memtier_config *cfg, char *err,
			size_t errlen);

#endif
