/* arena.c - model-sized mappings: aligned, huge pages, NUMA node, touched
 * once (memtier/arena.h) */
#include "memtier/arena.h"

#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define MASK_BITS (8 * sizeof(unsigned long))

/* mbind(MPOL_BIND) [p, p + len) to node; 0 or -errno */
static int bind_node(void *p, size_t len, int node)
{
	unsigned long mask[ARENA_MAX_NODES / MASK_BITS] = {0};

	mask[node / MASK_BITS] = 1ul << (node % MASK_BITS);
	/* maxnode counts one past the last bit: the kernel reads maxnode - 1
	 * bits (libnuma passes the same +1) */
	if (mbind(p, len, MPOL_BIND, mask, ARENA_MAX_NODES + 1, 0) < 0)
		return -errno;
	return 0;
}

/* mbind(MPOL_INTERLEAVE) [p, p + len) over every node with memory; 0 or
 * -errno (a machine without NUMA support: nothing to do) */
static int interleave_nodes(void *p, size_t len)
{
	unsigned long mask[ARENA_MAX_NODES / MASK_BITS] = {0};

	if (numa_available() < 0)
		return 0;
	for (int n = 0; n <= numa_max_node() && n < ARENA_MAX_NODES; n++)
		if (numa_bitmask_isbitset(numa_nodes_ptr, (unsigned)n))
			mask[n / MASK_BITS] |= 1ul << (n % MASK_BITS);
	if (mbind(p, len, MPOL_INTERLEAVE, mask, ARENA_MAX_NODES + 1, 0) < 0)
		return -errno;
	return 0;
}

int arena_map(struct arena *a, const struct arena_config *cfg, char *err,
	      size_t errlen)
{
	size_t len;
	int rc;

	/* the mapping asks for len + ARENA_ALIGN to trim to an aligned
	 * window, so refuse what would overflow that before rounding */
	if (cfg->bytes == 0 || cfg->bytes > SIZE_MAX / 2) {
		snprintf(err, errlen, "cannot map %zu bytes: %s", cfg->bytes,
			 cfg->bytes ? "more than the address space" : "empty");
		return -ENOMEM;
	}
	if (cfg->node >= ARENA_MAX_NODES ||
	    (cfg->node < -1 && cfg->node != ARENA_INTERLEAVE)) {
		snprintf(err, errlen, "NUMA node %d out of range (-1 .. %d)",
			 cfg->node, ARENA_MAX_NODES - 1);
		return -EINVAL;
	}
	len = (cfg->bytes + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
	char *raw = mmap(NULL, len + ARENA_ALIGN, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS |
			 (cfg->no_reserve ? MAP_NORESERVE : 0), -1, 0);
	if (raw == MAP_FAILED) {
		rc = -errno;
		snprintf(err, errlen, "cannot map %zu bytes: %s", len,
			 strerror(-rc));
		return rc;
	}
	/* keep exactly [p, p + len), 2 MiB aligned, so that huge pages can
	 * back all of it and unmap needs no other bookkeeping */
	uintptr_t at = ((uintptr_t)raw + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
	char *p = (char *)at;
	size_t head = (size_t)(p - raw);
	if (head)
		munmap(raw, head);
	munmap(p + len, ARENA_ALIGN - head);

	if (cfg->huge_pages)
		madvise(p, len, MADV_HUGEPAGE); /* a hint: refusal is no error */
	if (cfg->node >= 0 && (rc = bind_node(p, len, cfg->node))) {
		snprintf(err, errlen, "cannot bind %zu bytes to NUMA node %d: %s",
			 len, cfg->node, strerror(-rc));
		munmap(p, len);
		return rc;
	}
	if (cfg->node == ARENA_INTERLEAVE && (rc = interleave_nodes(p, len))) {
		snprintf(err, errlen, "cannot interleave %zu bytes over the NUMA "
			 "nodes: %s", len, strerror(-rc));
		munmap(p, len);
		return rc;
	}
	*a = (struct arena){.base = p, .bytes = len, .node = cfg->node};
	if (cfg->touch)
		arena_touch(a, 0, len);
	return 0;
}

void arena_touch(struct arena *a, size_t offset, size_t bytes)
{
	if (!a->base || offset >= a->bytes)
		return;
	if (bytes > a->bytes - offset)
		bytes = a->bytes - offset;
	/* a write, not a read: a read fault maps the shared zero page and
	 * the real fault would come later, inside a token. The write is a
	 * zero, so this is for memory that holds no data yet. */
	volatile char *p = (volatile char *)a->base;
	size_t end = offset + bytes;
	/* the first byte of the range, then each page start inside it */
	for (size_t off = offset; off < end;
	     off = (off / ARENA_TOUCH_STRIDE + 1) * ARENA_TOUCH_STRIDE)
		p[off] = 0;
}

void arena_unmap(struct arena *a)
{
	if (a->base)
		munmap(a->base, a->bytes);
	*a = (struct arena){.base = NULL, .bytes = 0, .node = -1};
}
