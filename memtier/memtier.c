/*
 * memtier.c - the dram and mmap tiers.
 *
 * dram: every tensor resident in one arena (memtier/arena.h: 2 MiB
 * aligned, advised for huge pages), filled with large pread()s at open
 * (so the first-touch cost that MACHINE.md measures is paid once, at load,
 * and counted as load time).
 * mmap: the file mapped read-only and shared; pages come from the page
 * cache on first use (llama.cpp's default), so a cold first token pays the
 * faults and a memory limit that evicts page cache makes every token pay.
 */
#include "memtier/memtier.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "memtier/flash.h"
#include "memtier/uio.h"
#include "models/util.h"

#define TENSOR_ALIGN 64u

static const char *const kind_names[MEMTIER_KIND_COUNT] = {"dram", "flash",
							    "mmap"};

const char *memtier_kind_name(enum memtier_kind k)
{
	return (unsigned)k < MEMTIER_KIND_COUNT ? kind_names[k] : "?";
}

int memtier_fault_parse(const char *s, struct memtier_config *cfg)
{
	char kind[16];
	unsigned long long every;
	char extra;

	if (sscanf(s, "%15[a-z]:%llu%c", kind, &every, &extra) != 2 || every == 0)
		return -EINVAL;
	if (!strcmp(kind, "eio"))
		cfg->fault = MEMTIER_FAULT_EIO;
	else if (!strcmp(kind, "short"))
		cfg->fault = MEMTIER_FAULT_SHORT;
	else if (!strcmp(kind, "enospc"))
		cfg->fault = MEMTIER_FAULT_ENOSPC;
	else if (!strcmp(kind, "nodirect"))
		cfg->fault = MEMTIER_FAULT_NODIRECT;
	else
		return -EINVAL;
	cfg->fault_every = every;
	return 0;
}

void memtier_stats_add(struct memtier_tier_stats *a,
		       const struct memtier_tier_stats *b)
{
	a->bytes_read += b->bytes_read;
	a->bytes_loaded += b->bytes_loaded;
	a->bytes_written += b->bytes_written;
	a->load_ns += b->load_ns;
	a->stall_ns += b->stall_ns;
	a->n_acquire += b->n_acquire;
	a->n_hit += b->n_hit;
	a->n_miss += b->n_miss;
	a->n_requests += b->n_requests;
	a->req_ns += b->req_ns;
	a->qd_sum += b->qd_sum;
	if (b->qd_max > a->qd_max)
		a->qd_max = b->qd_max;
}

int memtier_arena_node(const struct memtier_config *cfg)
{
	switch (cfg->numa) {
	case MEMTIER_NUMA_BIND: return cfg->numa_node;
	case MEMTIER_NUMA_INTERLEAVE: return ARENA_INTERLEAVE;
	default: return -1;
	}
}

uint32_t memtier_budget_fit(const struct memtier_tensor *t,
			    const struct memtier_segment *segs, uint32_t n_segs,
			    uint64_t budget, uint64_t *bytes)
{
	uint64_t used = 0;
	uint32_t s;

	for (s = 0; s < n_segs; s++) {
		uint64_t b = 0;
		for (uint32_t i = 0; i < segs[s].n; i++)
			b += (t[segs[s].ids[i]].n_bytes + 63) / 64 * 64;
		if (used + b > budget)
			break;
		used += b;
	}
	if (bytes)
		*bytes = used;
	return s;
}

uint64_t memtier_resident_bytes(const struct memtier *m)
{
	if (m->cfg.kind == MEMTIER_DRAM)
		return m->arena.bytes;
	if (m->cfg.kind == MEMTIER_FLASH)
		return memtier_flash_resident_bytes(m);
	return 0;
}

int memtier_kind_parse(const char *s, enum memtier_kind *out)
{
	for (int k = 0; k < MEMTIER_KIND_COUNT; k++)
		if (!strcmp(s, kind_names[k])) {
			*out = (enum memtier_kind)k;
			return 0;
		}
	return -EINVAL;
}

/* index of an earlier tensor with the same file range, or -1 */
static int64_t find_shared(const struct memtier *m, uint32_t i)
{
	for (uint32_t j = 0; j < i; j++)
		if (m->tensors[j].file_offset == m->tensors[i].file_offset &&
		    m->tensors[j].n_bytes == m->tensors[i].n_bytes)
			return j;
	return -1;
}

static int dram_load(struct memtier *m, const char *path, char *err,
		     size_t errlen)
{
	uint64_t total = 0;
	uint64_t *at = xcalloc(m->n_tensors, sizeof(*at));
	int64_t t0 = now_ns();
	int rc = 0;

	for (uint32_t i = 0; i < m->n_tensors; i++) {
		if (find_shared(m, i) >= 0)
			continue;
		at[i] = total;
		total += (m->tensors[i].n_bytes + TENSOR_ALIGN - 1) /
			 TENSOR_ALIGN * TENSOR_ALIGN;
	}
	/* not touched here: the preads below are the first touch, counted
	 * as load time; an empty model still gets one 2 MiB unit */
	struct arena_config ac = {.bytes = total ? total : 1,
				  .huge_pages = m->cfg.huge_pages,
				  .node = memtier_arena_node(&m->cfg),
				  .no_reserve = true};
	char e2[160];
	if ((rc = arena_map(&m->arena, &ac, e2, sizeof(e2)))) {
		snprintf(err, errlen, "dram tier: the weights: %s", e2);
		free(at);
		return rc;
	}

	for (uint32_t i = 0; i < m->n_tensors; i++) {
		int64_t s = find_shared(m, i);
		if (s >= 0) {
			m->ptr[i] = m->ptr[s];
			continue;
		}
		m->ptr[i] = (char *)m->arena.base + at[i];
		rc = memtier_pread_full(m->fd, m->ptr[i], m->tensors[i].n_bytes,
			       m->tensors[i].file_offset);
		if (rc) {
			snprintf(err, errlen, "%s: reading %" PRIu64 " bytes at "
				 "offset %" PRIu64 ": %s", path,
				 m->tensors[i].n_bytes, m->tensors[i].file_offset,
				 strerror(-rc));
			break;
		}
		m->stats[MEMTIER_DRAM].bytes_loaded += m->tensors[i].n_bytes;
	}
	m->stats[MEMTIER_DRAM].load_ns += now_ns() - t0;
	free(at);
	return rc;
}

static int mmap_load(struct memtier *m, const char *path, char *err,
		     size_t errlen)
{
	struct stat st;
	int rc;

	if (fstat(m->fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(-rc));
		return rc;
	}
	m->map_bytes = (size_t)st.st_size;
	for (uint32_t i = 0; i < m->n_tensors; i++)
		if (m->tensors[i].file_offset + m->tensors[i].n_bytes > m->map_bytes) {
			snprintf(err, errlen, "%s: tensor %u lies past the end of "
				 "the file (%zu bytes)", path, i, m->map_bytes);
			return -EINVAL;
		}
	void *p = mmap(NULL, m->map_bytes ? m->map_bytes : 1, PROT_READ,
		       MAP_SHARED, m->fd, 0);
	if (p == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "%s: mmap failed: %s", path, strerror(-rc));
		return rc;
	}
	m->map = p;
	for (uint32_t i = 0; i < m->n_tensors; i++)
		m->ptr[i] = (char *)p + m->tensors[i].file_offset;
	return 0;
}

int memtier_open(struct memtier *m, const struct memtier_config *cfg,
		 const char *path, const struct memtier_tensor *tensors,
		 uint32_t n_tensors, const struct memtier_segment *segs,
		 uint32_t n_segs, char *err, size_t errlen)
{
	int rc;

	memset(m, 0, sizeof(*m));
	m->fd = -1;
	m->cfg = *cfg;
	if ((unsigned)cfg->kind >= MEMTIER_KIND_COUNT) {
		snprintf(err, errlen, "unknown tier %d", (int)cfg->kind);
		return -EINVAL;
	}
	m->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (m->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	/* no readahead: the dram/flash loads read in large chunks and drop
	 * them from the page cache, embedding rows are single pages; the
	 * 8 MiB readahead windows of this disk would otherwise stay cached
	 * and count against a memory limit (the mmap tier is llama.cpp's
	 * baseline and keeps the kernel's default behaviour) */
	if (cfg->kind != MEMTIER_MMAP)
		posix_fadvise(m->fd, 0, 0, POSIX_FADV_RANDOM);
	m->n_tensors = n_tensors;
	m->tensors = xmalloc(n_tensors * sizeof(*tensors));
	memcpy(m->tensors, tensors, n_tensors * sizeof(*tensors));
	m->ptr = xcalloc(n_tensors, sizeof(*m->ptr));
	m->n_segs = n_segs;
	m->segs = xcalloc(n_segs, sizeof(*m->segs));
	m->seg_bytes = xcalloc(n_segs, sizeof(*m->seg_bytes));
	for (uint32_t s = 0; s < n_segs; s++) {
		uint32_t *ids = xmalloc((segs[s].n ? segs[s].n : 1) * sizeof(*ids));
		for (uint32_t i = 0; i < segs[s].n; i++) {
			if (segs[s].ids[i] >= n_tensors) {
				free(ids);
				snprintf(err, errlen, "memtier: segment %u names "
					 "tensor %u of %u", s, segs[s].ids[i],
					 n_tensors);
				rc = -EINVAL;
				goto err_close;
			}
			ids[i] = segs[s].ids[i];
			m->seg_bytes[s] += tensors[ids[i]].n_bytes;
		}
		m->segs[s].n = segs[s].n;
		m->segs[s].ids = ids;
	}
	if (cfg->kind == MEMTIER_FLASH)
		rc = memtier_flash_open(m, path, err, errlen);
	else if (cfg->kind == MEMTIER_MMAP)
		rc = mmap_load(m, path, err, errlen);
	else
		rc = dram_load(m, path, err, errlen);
	if (rc)
		goto err_close;
	return 0;

err_close:
	memtier_close(m);
	return rc;
}

void memtier_close(struct memtier *m)
{
	arena_unmap(&m->arena);
	if (m->map)
		munmap(m->map, m->map_bytes ? m->map_bytes : 1);
	memtier_flash_close(m->flash);
	if (m->fd >= 0)
		close(m->fd);
	for (uint32_t s = 0; m->segs && s < m->n_segs; s++)
		free((void *)m->segs[s].ids);
	free(m->segs);
	free(m->seg_bytes);
	free(m->tensors);
	free(m->ptr);
	memset(m, 0, sizeof(*m));
	m->fd = -1;
}

int memtier_acquire(struct memtier *m, uint32_t seg, const void **ptrs)
{
	if (seg >= m->n_segs)
		return -EINVAL;
	if (m->cfg.kind == MEMTIER_FLASH) {
		int rc = memtier_flash_acquire(m, seg, ptrs);
		if (rc)
			return rc;
		/* bytes are counted where they came from */
		enum memtier_kind k = memtier_flash_pinned(m, seg) ? MEMTIER_DRAM
								   : MEMTIER_FLASH;
		m->stats[k].bytes_read += m->seg_bytes[seg];
		m->stats[k].n_acquire++;
		return 0;
	}
	for (uint32_t i = 0; i < m->segs[seg].n; i++)
		ptrs[i] = m->ptr[m->segs[seg].ids[i]];
	m->stats[m->cfg.kind].bytes_read += m->seg_bytes[seg];
	m->stats[m->cfg.kind].n_acquire++;
	return 0;
}

void memtier_release(struct memtier *m, uint32_t seg)
{
	if (m->cfg.kind == MEMTIER_FLASH && seg < m->n_segs)
		memtier_flash_release(m, seg);
}

int memtier_read_row(struct memtier *m, uint32_t id, int64_t row, void *dst)
{
	const struct memtier_tensor *t;

	if (id >= m->n_tensors)
		return -EINVAL;
	t = &m->tensors[id];
	if (row < 0 || (uint64_t)(row + 1) * t->row_bytes > t->n_bytes)
		return -ERANGE;
	if (m->cfg.kind == MEMTIER_FLASH) {
		/* one row: a small buffered read, not worth a slot */
		ssize_t r = pread(m->fd, dst, t->row_bytes,
				  (off_t)(t->file_offset + (uint64_t)row * t->row_bytes));
		if (r < 0)
			return -errno;
		if ((uint64_t)r != t->row_bytes)
			return -EIO;
		m->stats[MEMTIER_FLASH].bytes_loaded += t->row_bytes;
	} else {
		memcpy(dst, (const char *)m->ptr[id] + (uint64_t)row * t->row_bytes,
		       t->row_bytes);
	}
	m->stats[m->cfg.kind].bytes_read += t->row_bytes;
	return 0;
}

const void *memtier_tensor_ptr(struct memtier *m, uint32_t id)
{
	if (id >= m->n_tensors || m->cfg.kind == MEMTIER_FLASH)
		return NULL;
	m->stats[m->cfg.kind].bytes_read += m->tensors[id].n_bytes;
	return m->ptr[id];
}
