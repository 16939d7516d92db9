/*
 * flash.c - the flash tier: weights stay in the file and are streamed
 * through io_uring every time a segment is acquired.
 *
 * Reads are O_DIRECT (the page cache never holds the weights), READ_FIXED
 * into registered buffers on a registered file. Buffers form a ring of
 * slots, each big enough for a layer (and one more for an output head
 * larger than every layer), one arena (memtier/arena.h) backed by huge
 * pages and touched once at open (first touch is slow here, MACHINE.md).
 * Segments are consumed in a cycle (layers 0..L-1, output head, layer 0
 * of the next token...), so every acquire also queues reads for the next
 * `prefetch` segments; acquire waits only for what has not landed yet,
 * and counts that wait as stall time.
 *
 * Each tensor is read as its range widened to 4 KiB boundaries (O_DIRECT
 * alignment), in requests of at most 1 MiB; the tensor's pointer is its
 * offset inside that widened copy.
 */
#include "memtier/flash.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memtier/arena.h"
#include "memtier/trace.h"
#include "memtier/uio.h"
#include "models/util.h"

#define FLASH_ALIGN 4096u
#define FLASH_REQ_BYTES (1u << 20)
#define FLASH_QD 64u

struct flash_slot {
	int64_t seg;       /* segment held or in flight, -1 if none */
	int in_use;        /* acquired and not released */
	size_t bytes;      /* capacity */
	struct uio_group io; /* its reads: pending count, first error */
	char *buf;
};

struct memtier_flash {
	struct uio io;
	int fd_direct;
	int n_slots;
	struct flash_slot *slots;
	size_t slot_bytes;   /* regular slots: every streamed segment but ... */
	size_t big_bytes;    /* ... the largest, if it is larger: its own slot */
	uint64_t *need;      /* [n_segs] bytes a segment's slot copy takes */
	struct arena bufs;   /* the slots, registered with io_uring */
	uint64_t *span_off;  /* [n_tensors] offset of the tensor in its slot */
	/* --dram-budget: segments copied into DRAM once, never streamed */
	uint8_t *pinned;     /* [n_segs] */
	struct arena pin;    /* their copies */
	const void **pin_ptr; /* [n_tensors] resident address of pinned ones */
	uint32_t n_streamed; /* segments not pinned */
};

static uint64_t align_down(uint64_t x) { return x / FLASH_ALIGN * FLASH_ALIGN; }
static uint64_t align_up(uint64_t x) { return (x + FLASH_ALIGN - 1) / FLASH_ALIGN * FLASH_ALIGN; }

/* bytes the slot copy of segment s needs, and each tensor's place in it */
static uint64_t layout_segment(struct memtier *m, struct memtier_flash *f,
			       uint32_t s)
{
	uint64_t at = 0;

	for (uint32_t i = 0; i < m->segs[s].n; i++) {
		const struct memtier_tensor *t = &m->tensors[m->segs[s].ids[i]];
		uint64_t a = align_down(t->file_offset);
		f->span_off[m->segs[s].ids[i]] = at + (t->file_offset - a);
		at += align_up(t->file_offset + t->n_bytes) - a;
	}
	return at;
}

void memtier_flash_close(struct memtier_flash *f)
{
	if (!f)
		return;
	uio_exit(&f->io);
	if (f->fd_direct >= 0)
		close(f->fd_direct);
	arena_unmap(&f->bufs);
	arena_unmap(&f->pin);
	free(f->pinned);
	free(f->pin_ptr);
	free(f->slots);
	free(f->span_off);
	free(f->need);
	free(f);
}

/*
 * DRAM budget policy: every segment is read once per token, so any byte
 * kept resident saves one byte of I/O per token, wherever it sits. Pin
 * whole segments greedily in the order the cycle reads them (layer 0, 1,
 * ..., then the output head) while they fit: a run of resident layers at
 * the start of the token gives the prefetch ring time to fill for the
 * streamed ones. Stream buffers are the fixed overhead, not in the budget.
 */
static int pin_segments(struct memtier *m, struct memtier_flash *f,
			const char *path, char *err, size_t errlen)
{
	uint64_t budget = m->cfg.dram_budget_bytes, used = 0;

	f->pinned = xcalloc(m->n_segs, 1);
	f->pin_ptr = xcalloc(m->n_tensors, sizeof(*f->pin_ptr));
	if (budget != UINT64_MAX) { /* none given: stream everything */
		uint32_t n = memtier_budget_fit(m->tensors, m->segs, m->n_segs,
						budget, &used);
		memset(f->pinned, 1, n);
	}
	f->n_streamed = m->n_segs;
	if (used == 0)
		return 0;
	/* DRAM copies of weights, as the dram tier's arena: huge pages as
	 * configured, first touched by the preads below (load time) */
	struct arena_config ac = {.bytes = used,
				  .huge_pages = m->cfg.huge_pages,
				  .node = memtier_arena_node(&m->cfg)};
	char e2[160];
	int rc = arena_map(&f->pin, &ac, e2, sizeof(e2));
	if (rc) {
		snprintf(err, errlen, "flash tier: the DRAM budget: %s", e2);
		return rc;
	}
	uint64_t at = 0;
	for (uint32_t s = 0; s < m->n_segs; s++) {
		if (!f->pinned[s])
			continue;
		f->n_streamed--;
		for (uint32_t i = 0; i < m->segs[s].n; i++) {
			uint32_t id = m->segs[s].ids[i];
			const struct memtier_tensor *t = &m->tensors[id];
			char *dst = (char *)f->pin.base + at;
			rc = memtier_pread_full(m->fd, dst, t->n_bytes,
						t->file_offset);
			if (rc) {
				snprintf(err, errlen, "%s: reading pinned tensor "
					 "at %" PRIu64 ": %s", path,
					 t->file_offset, strerror(-rc));
				return rc;
			}
			m->stats[MEMTIER_DRAM].bytes_loaded += t->n_bytes;
			f->pin_ptr[id] = dst;
			at += (t->n_bytes + 63) / 64 * 64;
		}
	}
	return 0;
}

bool memtier_flash_pinned(const struct memtier *m, uint32_t seg)
{
	return m->flash && m->flash->pinned && seg < m->n_segs &&
	       m->flash->pinned[seg];
}

size_t memtier_flash_resident_bytes(const struct memtier *m)
{
	return m->flash ? m->flash->pin.bytes : 0;
}

int memtier_flash_open(struct memtier *m, const char *path, char *err,
		       size_t errlen)
{
	struct memtier_flash *f = xcalloc(1, sizeof(*f));
	int rc;

	f->fd_direct = -1;
	m->flash = f;
	f->span_off = xcalloc(m->n_tensors, sizeof(*f->span_off));
	f->need = xcalloc(m->n_segs, sizeof(*f->need));
	/* every tensor id belongs to one segment (the embedding, read by
	 * row, to none), so span_off is fixed from here on */
	for (uint32_t s = 0; s < m->n_segs; s++)
		f->need[s] = layout_segment(m, f, s);
	if ((rc = pin_segments(m, f, path, err, errlen)))
		return rc;
	if (f->n_streamed == 0)
		return 0; /* the budget holds everything: nothing to stream */
	/*
	 * Slots: prefetch + 2 (the segment computed, the one acquired ahead,
	 * the read-ahead) sized for the streamed segments; when the largest
	 * is bigger than all the others (an output head over a large vocab)
	 * it gets one slot of its own instead of making every slot its size.
	 */
	uint64_t big = 0, second = 0;
	uint32_t n_big = 0;
	for (uint32_t s = 0; s < m->n_segs; s++) {
		if (f->pinned[s])
			continue;
		if (f->need[s] > big) {
			second = big;
			big = f->need[s];
			n_big = 1;
		} else if (f->need[s] == big) {
			n_big++;
		} else if (f->need[s] > second) {
			second = f->need[s];
		}
	}
	const uint64_t huge = 2u << 20;
	f->slot_bytes = (n_big == 1 && second ? second : big);
	f->slot_bytes = (f->slot_bytes + huge - 1) / huge * huge;
	f->big_bytes = (big + huge - 1) / huge * huge;
	if (f->big_bytes <= f->slot_bytes)
		f->big_bytes = 0;
	uint32_t n_regular = f->n_streamed - (f->big_bytes ? 1 : 0);
	f->n_slots = (m->cfg.prefetch > 0 ? m->cfg.prefetch : 1) + 2;
	if ((uint32_t)f->n_slots > n_regular)
		f->n_slots = (int)n_regular;
	f->fd_direct = memtier_open_direct(path, O_RDONLY, &m->cfg, err, errlen);
	if (f->fd_direct < 0)
		return f->fd_direct;
	off_t size = lseek(f->fd_direct, 0, SEEK_END);
	if (size < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot size: %s", path, strerror(-rc));
		return rc;
	}
	/* I/O buffers: always huge pages (a 1 MiB O_DIRECT read into 4 KiB
	 * pages is split in two, MACHINE.md), touched once, here, not per
	 * token; slot sizes are multiples of 2 MiB, so nothing is rounded */
	struct arena_config ac = {
		.bytes = f->slot_bytes * (size_t)f->n_slots + f->big_bytes,
		.huge_pages = true, .node = memtier_arena_node(&m->cfg),
		.touch = true};
	char e2[200];
	if ((rc = arena_map(&f->bufs, &ac, e2, sizeof(e2)))) {
		snprintf(err, errlen, "flash tier: the slot buffers: %s", e2);
		return rc;
	}
	char *p = f->bufs.base;
	int n_regular_slots = f->n_slots;
	if (f->big_bytes)
		f->n_slots++;
	f->slots = xcalloc((size_t)f->n_slots, sizeof(*f->slots));
	for (int i = 0; i < f->n_slots; i++) {
		f->slots[i].seg = -1;
		f->slots[i].buf = p + (size_t)i * f->slot_bytes;
		f->slots[i].bytes = i < n_regular_slots ? f->slot_bytes
							: f->big_bytes;
		f->slots[i].io.name = "read seg";
	}
	f->io.file_size = (uint64_t)size;
	f->io.fault = m->cfg.fault;
	f->io.fault_every = m->cfg.fault_every;
	f->io.st = &m->stats[MEMTIER_FLASH];
	f->io.trace = m->cfg.trace;
	if ((rc = uio_init(&f->io, FLASH_QD, p, f->bufs.bytes, f->fd_direct,
			   e2, sizeof(e2)))) {
		snprintf(err, errlen, "flash tier: %s", e2);
		return rc;
	}
	return 0;
}

/* queue the reads of segment seg into slot */
static int start_segment(struct memtier *m, struct memtier_flash *f,
			 struct flash_slot *slot, uint32_t seg)
{
	slot->seg = seg;
	slot->io.err = 0;
	slot->io.arg = (int32_t)seg;
	uint64_t at = 0;
	for (uint32_t i = 0; i < m->segs[seg].n; i++) {
		const struct memtier_tensor *t = &m->tensors[m->segs[seg].ids[i]];
		uint64_t a = align_down(t->file_offset);
		uint64_t end = align_up(t->file_offset + t->n_bytes);
		/* on failure the slot's io.err is set: nobody takes it as read */
		int rc = uio_queue(&f->io, &slot->io, 0, slot->buf + at, end - a,
				   a, FLASH_REQ_BYTES);
		if (rc)
			return rc;
		at += end - a;
	}
	return uio_submit(&f->io);
}

static struct flash_slot *find_slot(struct memtier_flash *f, int64_t seg)
{
	for (int i = 0; i < f->n_slots; i++)
		if (f->slots[i].seg == seg)
			return &f->slots[i];
	return NULL;
}

/* a slot for a segment of `need` bytes (the large one only for the
 * segment too big for the others): an empty one; failing that, a landed
 * prefetch nobody holds (the cycle can skip a segment, e.g. the output
 * head of a prefill that wants no logits); NULL if every such slot is
 * held or still being read */
static struct flash_slot *free_slot(struct memtier_flash *f, uint64_t need)
{
	struct flash_slot *landed = NULL;

	for (int i = 0; i < f->n_slots; i++) {
		struct flash_slot *s = &f->slots[i];
		if (s->in_use || s->io.pending || s->bytes < need ||
		    (s->bytes > f->slot_bytes && need <= f->slot_bytes))
			continue;
		if (s->seg < 0)
			return s;
		landed = s;
	}
	return landed;
}

/* queue reads for the segments after seg in the cycle, while slots last */
static int prefetch_after(struct memtier *m, struct memtier_flash *f,
			  uint32_t seg)
{
	int want = m->cfg.prefetch > 0 ? m->cfg.prefetch : 0;

	for (uint32_t k = 1, queued = 0; k < m->n_segs && queued < (uint32_t)want; k++) {
		uint32_t s = (seg + k) % m->n_segs;
		if (f->pinned[s])
			continue;
		queued++;
		if (find_slot(f, s))
			continue;
		struct flash_slot *slot = free_slot(f, f->need[s]);
		if (!slot)
			break;
		int rc = start_segment(m, f, slot, s);
		if (rc)
			return rc;
	}
	return 0;
}

int memtier_flash_acquire(struct memtier *m, uint32_t seg, const void **ptrs)
{
	struct memtier_flash *f = m->flash;
	int64_t t0 = now_ns();
	int rc;

	if (f->pinned[seg]) { /* resident: keep the stream going meanwhile */
		for (uint32_t i = 0; i < m->segs[seg].n; i++)
			ptrs[i] = f->pin_ptr[m->segs[seg].ids[i]];
		return f->n_streamed ? prefetch_after(m, f, seg) : 0;
	}
	/* landed completions first, so that a hit means: the segment was
	 * already read when the engine asked for it */
	if ((rc = uio_reap(&f->io, 0)))
		return rc;
	struct flash_slot *slot = find_slot(f, seg);

	if (slot && slot->io.err) {
		/* an earlier read of it failed: read it again elsewhere (the
		 * failed slot is not reused while reads into it are pending) */
		slot->seg = -1;
		slot = NULL;
	}
	while (!slot) {
		slot = free_slot(f, f->need[seg]);
		if (slot)
			break;
		if (f->io.in_flight == 0)
			return -EBUSY; /* more segments held than slots */
		if ((rc = uio_reap(&f->io, 1)))
			return rc;
	}
	int started = slot->seg == seg;
	int hit = started && slot->io.pending == 0;
	m->stats[MEMTIER_FLASH].n_hit += hit;
	m->stats[MEMTIER_FLASH].n_miss += !hit;
	if (!started && (rc = start_segment(m, f, slot, seg)))
		return rc;
	slot->in_use = 1;
	if ((rc = prefetch_after(m, f, seg)))
		goto err_slot;
	while (slot->io.pending > 0)
		if ((rc = uio_reap(&f->io, 1)))
			goto err_slot;
	int64_t t1 = now_ns();
	m->stats[MEMTIER_FLASH].stall_ns += t1 - t0;
	if (t1 - t0 > 10000) /* waits under 10 us would only clutter the trace */
		trace_span(m->cfg.trace, TRACE_WAIT, "wait seg", (int32_t)seg, t0, t1);
	if ((rc = slot->io.err))
		goto err_slot;
	for (uint32_t i = 0; i < m->segs[seg].n; i++)
		ptrs[i] = slot->buf + f->span_off[m->segs[seg].ids[i]];
	return 0;

err_slot:
	/* not held; if reads are still in flight into it, it stays claimed
	 * (seg set, pending > 0) until they are reaped */
	slot->in_use = 0;
	if (slot->io.pending == 0)
		slot->seg = -1;
	return rc;
}

void memtier_flash_release(struct memtier *m, uint32_t seg)
{
	if (m->flash->pinned[seg])
		return;
	struct flash_slot *slot = find_slot(m->flash, seg);

	if (slot && slot->in_use) {
		slot->in_use = 0;
		slot->seg = -1;
	}
}
