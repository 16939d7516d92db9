/*
 * kvcache.c - the paged KV cache (memtier/kvcache.h).
 */
#include "memtier/kvcache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "memtier/arena.h"
#include "memtier/trace.h"
#include "memtier/uio.h"
#include "models/util.h"

#define KV_ALIGN 4096u
#define KV_REQ_BYTES (1u << 20)
#define KV_QD 64u
#define KV_MAX_SLOTS 10

struct kv_slot {
	int32_t layer;     /* layer whose view this is, -1: none */
	int32_t n_pos;     /* rows asked for */
	int32_t n_blocks;  /* blocks read from the file */
	int in_use;
	int32_t wr_layer;  /* writes from this slot may be in flight in
			    * wr[wr_layer]; -1: none */
	struct uio_group rd;
	char *k, *v;       /* [n_blocks_max x block_bytes] each */
};

struct kvcache {
	struct kvcache_config cfg;
	struct memtier_config mt; /* copy: faults, trace, no_direct */
	int32_t B;                /* tokens per block */
	uint64_t row_bytes, block_bytes, region_bytes;
	int32_t n_blocks_max;
	uint64_t drive_bytes;
	struct memtier_tier_stats st;
	/* dram */
	struct arena k_all, v_all; /* [n_layer][n_ctx][n_embd_kv] floats each */
	/* flash */
	int fd;
	struct uio io;
	struct arena bufs;        /* the slots, then the tails */
	int n_slots;              /* prefetch depth + the held one + spare */
	struct kv_slot slots[KV_MAX_SLOTS];
	char *tail_k, *tail_v;    /* [n_layer][block_bytes]: partial blocks */
	int32_t *len;             /* [n_layer] rows committed */
	struct uio_group *wr;     /* [n_layer] block writes in flight */
};

static uint64_t gcd64(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* the KV file: no name, so nothing can clobber it or outlive the run */
static int create_file(struct kvcache *kv, char *err, size_t errlen)
{
	const char *dir = kv->cfg.dir;
	char e2[256];
	int fd = memtier_open_direct(dir, O_TMPFILE | O_RDWR, &kv->mt, e2,
				     sizeof(e2));

	if (fd == -EOPNOTSUPP || fd == -EISDIR) {
		/* no O_TMPFILE here: a unique name, unlinked at once */
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/strata-kv-XXXXXX", dir) >=
		    (int)sizeof(path)) {
			snprintf(err, errlen, "--flash-dir %s: path too long", dir);
			return -ENAMETOOLONG;
		}
		int tfd = mkstemp(path);
		if (tfd < 0) {
			int rc = -errno;
			snprintf(err, errlen, "--flash-dir %s: cannot create the "
				 "KV file: %s", dir, strerror(-rc));
			return rc;
		}
		fd = memtier_open_direct(path, O_RDWR, &kv->mt, e2, sizeof(e2));
		unlink(path);
		close(tfd);
	}
	if (fd < 0) {
		snprintf(err, errlen, "--flash-dir %s: cannot create the KV "
			 "file: %s", dir, e2);
		return fd;
	}
	kv->fd = fd;
	struct statvfs sv;
	if (fstatvfs(fd, &sv) == 0)
		kv->drive_bytes = (uint64_t)sv.f_blocks * sv.f_frsize;
	return 0;
}

static int open_flash(struct kvcache *kv, char *err, size_t errlen)
{
	const struct kvcache_config *c = &kv->cfg;
	int rc;

	if (!c->dir || !*c->dir) {
		snprintf(err, errlen, "the KV cache on flash needs --flash-dir");
		return -EINVAL;
	}
	if ((rc = create_file(kv, err, errlen)))
		return rc;
	kv->region_bytes = (uint64_t)kv->n_blocks_max * kv->block_bytes;
	/* reserve the whole context on the drive now: a disk that cannot
	 * hold it fails here, and block writes never allocate */
	uint64_t file_bytes = 2 * kv->region_bytes * (uint64_t)c->n_layer;
	rc = fallocate(kv->fd, 0, 0, (off_t)file_bytes);
	if (rc && errno != EOPNOTSUPP) {
		rc = -errno;
		snprintf(err, errlen, "--flash-dir %s: cannot reserve %" PRIu64
			 " bytes for the KV cache (%d positions): %s", c->dir,
			 file_bytes, c->n_ctx, strerror(-rc));
		return rc;
	}
	kv->n_slots = (c->prefetch > 0 ? c->prefetch : 0) + 2;
	if (kv->n_slots > KV_MAX_SLOTS)
		kv->n_slots = KV_MAX_SLOTS;
	size_t slots = 2 * kv->region_bytes * kv->n_slots;
	size_t tails = 2 * kv->block_bytes * (size_t)c->n_layer;
	/* huge pages (I/O buffers); the slots are touched once, here, the
	 * tails fill as rows come */
	struct arena_config ac = {.bytes = slots + tails, .huge_pages = true,
				  .node = memtier_arena_node(&kv->mt),
				  .no_reserve = true};
	char e2[200];
	if ((rc = arena_map(&kv->bufs, &ac, e2, sizeof(e2)))) {
		snprintf(err, errlen, "KV cache on flash: the buffers: %s", e2);
		return rc;
	}
	arena_touch(&kv->bufs, 0, slots);
	char *p = kv->bufs.base;
	for (int i = 0; i < kv->n_slots; i++) {
		struct kv_slot *s = &kv->slots[i];
		s->layer = -1;
		s->wr_layer = -1;
		s->k = p;
		s->v = p + kv->region_bytes;
		s->rd.name = "read kv";
		p += 2 * kv->region_bytes;
	}
	kv->tail_k = p;
	kv->tail_v = p + kv->block_bytes * (size_t)c->n_layer;
	kv->len = xcalloc((size_t)c->n_layer, sizeof(*kv->len));
	kv->wr = xcalloc((size_t)c->n_layer, sizeof(*kv->wr));
	for (int32_t l = 0; l < c->n_layer; l++) {
		kv->wr[l].name = "write kv";
		kv->wr[l].arg = l;
	}
	kv->io.file_size = UINT64_MAX; /* holes read as zeros, never short */
	kv->io.fault = kv->mt.fault;
	kv->io.fault_every = kv->mt.fault_every;
	kv->io.st = &kv->st;
	kv->io.trace = kv->mt.trace;
	/* the tails never take part in I/O: only the slots are registered */
	if ((rc = uio_init(&kv->io, KV_QD, kv->bufs.base, slots, kv->fd, e2,
			   sizeof(e2)))) {
		snprintf(err, errlen, "KV cache on flash: %s", e2);
		return rc;
	}
	return 0;
}

int kvcache_open(struct kvcache **out, const struct kvcache_config *cfg,
		 char *err, size_t errlen)
{
	struct kvcache *kv = xcalloc(1, sizeof(*kv));
	int rc = 0;

	*out = NULL;
	kv->cfg = *cfg;
	if (cfg->mt)
		kv->mt = *cfg->mt;
	kv->cfg.mt = NULL;
	kv->fd = -1;
	if (cfg->n_layer <= 0 || cfg->n_ctx <= 0 || cfg->n_embd_kv <= 0) {
		snprintf(err, errlen, "KV cache: bad shape");
		free(kv);
		return -EINVAL;
	}
	kv->row_bytes = (uint64_t)cfg->n_embd_kv * sizeof(float);
	uint64_t unit = KV_ALIGN / gcd64(KV_ALIGN, kv->row_bytes);
	uint64_t b = cfg->block_tokens > 0 ? (uint64_t)cfg->block_tokens : 64;
	b = (b + unit - 1) / unit * unit;
	if (b > (uint64_t)cfg->n_ctx)
		b = ((uint64_t)cfg->n_ctx + unit - 1) / unit * unit;
	kv->B = (int32_t)b;
	kv->block_bytes = b * kv->row_bytes;
	kv->n_blocks_max = (int32_t)(((uint64_t)cfg->n_ctx + b - 1) / b);

	if (cfg->kind == MEMTIER_DRAM) {
		/* no huge pages and no touch: pages come as positions
		 * advance, so resident memory follows the context used */
		struct arena_config ac = {
			.bytes = (size_t)cfg->n_layer * (size_t)cfg->n_ctx *
				 kv->row_bytes,
			.node = memtier_arena_node(&kv->mt), .no_reserve = true};
		char e2[160];
		if ((rc = arena_map(&kv->k_all, &ac, e2, sizeof(e2))) ||
		    (rc = arena_map(&kv->v_all, &ac, e2, sizeof(e2))))
			snprintf(err, errlen, "cannot allocate the KV cache (2 x "
				 "%zu bytes for %d positions): %s", ac.bytes,
				 cfg->n_ctx, e2);
	} else if (cfg->kind == MEMTIER_FLASH) {
		rc = open_flash(kv, err, errlen);
	} else {
		snprintf(err, errlen, "the KV cache lives in dram or flash, not %s",
			 memtier_kind_name(cfg->kind));
		rc = -EINVAL;
	}
	if (rc) {
		kvcache_close(kv);
		return rc;
	}
	*out = kv;
	return 0;
}

void kvcache_close(struct kvcache *kv)
{
	if (!kv)
		return;
	uio_exit(&kv->io); /* drains writes in flight */
	if (kv->fd >= 0)
		close(kv->fd);
	arena_unmap(&kv->bufs);
	arena_unmap(&kv->k_all);
	arena_unmap(&kv->v_all);
	free(kv->len);
	free(kv->wr);
	free(kv);
}

static struct kv_slot *find_slot(struct kvcache *kv, int32_t l)
{
	for (int i = 0; i < kv->n_slots; i++)
		if (kv->slots[i].layer == l)
			return &kv->slots[i];
	return NULL;
}

static int slot_idle(const struct kvcache *kv, const struct kv_slot *s)
{
	return !s->in_use && !s->rd.pending &&
	       (s->wr_layer < 0 || !kv->wr[s->wr_layer].pending);
}

/* a slot nobody holds, whose reads and writes are done (waits for them):
 * an empty one first, else (if evict) a prefetched view nobody took yet;
 * *out NULL if !evict and every slot holds or awaits a view */
static int free_slot(struct kvcache *kv, struct kv_slot **out, int evict)
{
	*out = NULL;
	for (;;) {
		struct kv_slot *best = NULL;
		int busy = 0;
		for (int i = 0; i < kv->n_slots; i++) {
			struct kv_slot *s = &kv->slots[i];
			busy += s->layer < 0 && !slot_idle(kv, s);
			if (!slot_idle(kv, s) || (s->layer >= 0 && !evict))
				continue;
			if (!best || s->layer < 0)
				best = s;
		}
		if (!best && !evict && !busy)
			return 0; /* prefetch deeper than the slots: skip */
		if (best) {
			best->layer = -1;
			best->wr_layer = -1;
			*out = best;
			return 0;
		}
		if (kv->io.in_flight == 0)
			return -EBUSY; /* every slot held */
		int rc = uio_reap(&kv->io, 1);
		if (rc)
			return rc;
	}
}

/* queue the reads of layer l's blocks [0, nb) into slot s */
static int start_reads(struct kvcache *kv, struct kv_slot *s, int32_t l,
		       int32_t n_pos)
{
	int32_t nb = (int32_t)(((int64_t)n_pos + kv->B - 1) / kv->B);
	int rc;

	if (nb > kv->len[l] / kv->B) /* only full blocks are on the file */
		nb = kv->len[l] / kv->B;
	/* a block is read only once its write has landed */
	if ((rc = uio_wait(&kv->io, &kv->wr[l])))
		return rc;
	s->layer = l;
	s->n_pos = n_pos;
	s->n_blocks = nb;
	s->rd.err = 0;
	s->rd.arg = l;
	uint64_t bytes = (uint64_t)nb * kv->block_bytes;
	uint64_t base = (uint64_t)l * 2 * kv->region_bytes;
	/* on failure rd.err is set, so the view is never taken as read */
	if (bytes && ((rc = uio_queue(&kv->io, &s->rd, 0, s->k, bytes, base,
				      KV_REQ_BYTES)) ||
		      (rc = uio_queue(&kv->io, &s->rd, 0, s->v, bytes,
				      base + kv->region_bytes, KV_REQ_BYTES))))
		return rc;
	return uio_submit(&kv->io);
}

int kvcache_prefetch(struct kvcache *kv, int32_t l, int32_t n_pos)
{
	struct kv_slot *s;
	int rc;

	if (kv->cfg.kind != MEMTIER_FLASH || l < 0 || l >= kv->cfg.n_layer ||
	    n_pos < 0)
		return 0;
	if (n_pos > kv->len[l])
		n_pos = kv->len[l];
	if ((s = find_slot(kv, l)))
		return 0; /* held, or asked for already: kvcache_layer settles
			   * a mismatch */
	if ((rc = free_slot(kv, &s, 0)) || !s)
		return rc;
	return start_reads(kv, s, l, n_pos);
}

int kvcache_layer(struct kvcache *kv, int32_t l, int32_t n_pos, float **k,
		  float **v)
{
	if (l < 0 || l >= kv->cfg.n_layer || n_pos < 0 || n_pos > kv->cfg.n_ctx)
		return -EINVAL;
	if (kv->cfg.kind == MEMTIER_DRAM) {
		size_t at = (size_t)l * (size_t)kv->cfg.n_ctx * kv->cfg.n_embd_kv;
		*k = (float *)kv->k_all.base + at;
		*v = (float *)kv->v_all.base + at;
		return 0;
	}
	if (n_pos > kv->len[l])
		return -EINVAL;
	int64_t t0 = now_ns();
	struct kv_slot *s = find_slot(kv, l);
	int rc, hit = s && s->n_pos == n_pos;

	if (s && s->in_use)
		return -EBUSY;
	if (s && (!hit || s->rd.err)) { /* asked for other rows: read again */
		if ((rc = uio_wait(&kv->io, &s->rd)) && rc != s->rd.err)
			return rc;
		s->layer = -1;
		s = NULL;
		hit = 0;
	}
	int prefetched = s != NULL;
again:
	if (!s && ((rc = free_slot(kv, &s, 1)) ||
		   (rc = start_reads(kv, s, l, n_pos)))) {
		if (s)
			s->layer = -1;
		return rc;
	}
	s->in_use = 1;
	if ((rc = uio_reap(&kv->io, 0)))
		goto fail;
	hit = hit && s->rd.pending == 0;
	rc = uio_wait(&kv->io, &s->rd);
	if (rc && prefetched) {
		/* the read ahead failed: read it again, now, once */
		s->in_use = 0;
		s->layer = -1;
		s = NULL;
		prefetched = hit = 0;
		goto again;
	}
	if (s->n_blocks > 0) { /* a view that read nothing is no prefetch */
		kv->st.n_hit += hit;
		kv->st.n_miss += !hit;
	}
	int64_t t1 = now_ns();
	kv->st.stall_ns += t1 - t0;
	kv->st.n_acquire++;
	if (t1 - t0 > 10000)
		trace_span(kv->mt.trace, TRACE_WAIT, "wait kv", l, t0, t1);
	if (rc)
		goto fail;
	/* rows of the partial block come from its DRAM tail */
	int64_t r0 = (int64_t)s->n_blocks * kv->B;
	if (n_pos > r0) {
		size_t off = (size_t)r0 * kv->row_bytes;
		size_t n = (size_t)(n_pos - r0) * kv->row_bytes;
		memcpy(s->k + off, kv->tail_k + (size_t)l * kv->block_bytes, n);
		memcpy(s->v + off, kv->tail_v + (size_t)l * kv->block_bytes, n);
	}
	*k = (float *)s->k;
	*v = (float *)s->v;
	return 0;
fail:
	s->in_use = 0;
	s->layer = -1;
	return rc;
}

int kvcache_commit(struct kvcache *kv, int32_t l, int32_t p0, int32_t p1)
{
	if (kv->cfg.kind == MEMTIER_DRAM)
		return 0;
	struct kv_slot *s = find_slot(kv, l);
	int rc;

	if (!s || !s->in_use || p0 < 0 || p0 > p1 || p1 > kv->cfg.n_ctx ||
	    p0 > kv->len[l])
		return -EINVAL;
	const int32_t B = kv->B;
	/* blocks completed by these rows go to the file, from the view */
	uint64_t base = (uint64_t)l * 2 * kv->region_bytes;
	if (p1 / B > p0 / B) {
		uint64_t o = (uint64_t)(p0 / B) * kv->block_bytes;
		uint64_t n = (uint64_t)(p1 / B - p0 / B) * kv->block_bytes;
		s->wr_layer = l;
		if ((rc = uio_queue(&kv->io, &kv->wr[l], 1, s->k + o, n,
				    base + o, KV_REQ_BYTES)) ||
		    (rc = uio_queue(&kv->io, &kv->wr[l], 1, s->v + o, n,
				    base + kv->region_bytes + o, KV_REQ_BYTES)) ||
		    (rc = uio_submit(&kv->io)))
			return rc;
	}
	/* the partial block's rows stay in its tail: on an append only the
	 * new ones are copied, else the whole block so far */
	int32_t t0 = p1 / B * B;
	int32_t from = p0 == kv->len[l] && p0 > t0 ? p0 : t0;
	if (p1 > from) {
		size_t off = (size_t)(from - t0) * kv->row_bytes;
		size_t n = (size_t)(p1 - from) * kv->row_bytes;
		size_t so = (size_t)from * kv->row_bytes;
		memcpy(kv->tail_k + (size_t)l * kv->block_bytes + off, s->k + so, n);
		memcpy(kv->tail_v + (size_t)l * kv->block_bytes + off, s->v + so, n);
	}
	kv->len[l] = p1;
	/* a failed write ends the run here, not at the next read */
	if ((rc = uio_reap(&kv->io, 0)))
		return rc;
	for (int32_t i = 0; i < kv->cfg.n_layer; i++)
		if (kv->wr[i].err)
			return kv->wr[i].err;
	return 0;
}

void kvcache_release(struct kvcache *kv, int32_t l)
{
	if (kv->cfg.kind == MEMTIER_DRAM)
		return;
	struct kv_slot *s = find_slot(kv, l);

	if (s && s->in_use) {
		s->in_use = 0;
		s->layer = -1; /* the view changed: read it again next time */
	}
}

int kvcache_flush(struct kvcache *kv)
{
	int rc = 0;

	if (kv->cfg.kind != MEMTIER_FLASH)
		return 0;
	for (int32_t l = 0; l < kv->cfg.n_layer; l++) {
		int r = uio_wait(&kv->io, &kv->wr[l]);
		if (r && !rc)
			rc = r;
	}
	return rc;
}

void kvcache_get_info(const struct kvcache *kv, struct kvcache_info *info)
{
	info->kind = kv->cfg.kind;
	info->block_tokens = kv->B;
	info->position_bytes = 2 * (uint64_t)kv->cfg.n_layer * kv->row_bytes;
	info->dram_bytes = kv->cfg.kind == MEMTIER_DRAM
				   ? 2 * (uint64_t)kv->k_all.bytes
				   : kv->bufs.bytes;
	info->drive_bytes = kv->drive_bytes;
}

const struct memtier_tier_stats *kvcache_stats(const struct kvcache *kv)
{
	return &kv->st;
}

int kvcache_ahead(struct kvcache *kv, int32_t l, int32_t n_pos,
		  int32_t n_pos_next)
{
	const int32_t L = kv->cfg.n_layer;
	int depth = kv->cfg.prefetch > 0 ? kv->cfg.prefetch : 0;
	int rc = 0; /* prefetch 0: every layer's blocks read on demand */

	if (depth > L)
		depth = L;
	for (int k = 1; k <= depth && !rc; k++)
		rc = l + k < L ? kvcache_prefetch(kv, l + k, n_pos)
			       : kvcache_prefetch(kv, l + k - L, n_pos_next);
	return rc;
}
