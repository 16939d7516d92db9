/*
 * flash.h - private to memtier/: the flash tier (io_uring, O_DIRECT,
 * registered buffers, a ring of segment slots with prefetch). memtier.c
 * dispatches to it when cfg.kind == MEMTIER_FLASH.
 */
#ifndef STRATA_FLASH_H
#define STRATA_FLASH_H

#include <stdbool.h>

#include "memtier/memtier.h"

/* Set up m->flash for m's segments (m->fd, tensors, segs already set).
 * Returns 0 or -errno with a message in err; on failure m->flash may be
 * half built, memtier_flash_close accepts that. */
int memtier_flash_open(struct memtier *m, const char *path, char *err,
		       size_t errlen);
void memtier_flash_close(struct memtier_flash *f);
int memtier_flash_acquire(struct memtier *m, uint32_t seg, const void **ptrs);
void memtier_flash_release(struct memtier *m, uint32_t seg);
/* segment kept resident under the DRAM budget */
bool memtier_flash_pinned(const struct memtier *m, uint32_t seg);
/* bytes of the resident (pinned) copy */
size_t memtier_flash_resident_bytes(const struct memtier *m);

#endif
