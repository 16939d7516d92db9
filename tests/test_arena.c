/*
 * test_arena.c - memtier/arena.h's contract: a 2 MiB aligned base and a
 * length rounded up to 2 MiB over odd sizes; touched means every page
 * resident (mincore) and untouched means none; a partial touch stays in
 * its range and keeps the bytes before it; zero, huge and bad-node
 * requests are refused with -ENOMEM / -EINVAL, a message and *a left
 * alone; binding to each node this process may use is verified with
 * get_mempolicy(2) and move_pages(2) (every page on that node after the
 * touch, none present before it); unmap accepts a zeroed object. The
 * binding test is skipped, saying why, where the kernel refuses mbind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <numaif.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "memtier/arena.h"

#define PAGE 4096u
#define MASK_WORDS (ARENA_MAX_NODES / (8 * sizeof(unsigned long)))

static const struct arena sentinel = {.base = (void *)0x1234, .bytes = 77,
				      .node = 5};

/* a refused arena_map writes nothing to *a */
static void assert_sentinel(const struct arena *a)
{
	assert_ptr_equal(a->base, sentinel.base);
	assert_int_equal(a->bytes, sentinel.bytes);
	assert_int_equal(a->node, sentinel.node);
}

/* pages of [p, p + n) resident, by mincore */
static size_t resident_pages(const void *p, size_t n)
{
	size_t np = (n + PAGE - 1) / PAGE, r = 0;
	unsigned char *vec = calloc(np, 1);

	assert_non_null(vec);
	assert_int_equal(mincore((void *)p, n, vec), 0);
	for (size_t i = 0; i < np; i++)
		r += vec[i] & 1;
	free(vec);
	return r;
}

static void test_align_and_round(void **state)
{
	static const size_t mib2 = ARENA_ALIGN;
	static const size_t sizes[] = {
		1, 2, 3, 7, 4095, 4096, 4097, mib2 - 1, mib2, mib2 + 1,
		3 * mib2 + 17, 7 * mib2, 17 * mib2 - 33,
	};
	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (int huge = 0; huge < 2; huge++) {
			struct arena a;
			struct arena_config c = {.bytes = sizes[i],
						 .huge_pages = huge, .node = -1};
			char err[160] = "";
			assert_int_equal(arena_map(&a, &c, err, sizeof(err)), 0);
			assert_non_null(a.base);
			assert_int_equal((uintptr_t)a.base % ARENA_ALIGN, 0);
			assert_int_equal(a.bytes % ARENA_ALIGN, 0);
			assert_true(a.bytes >= sizes[i]);
			assert_true(a.bytes - sizes[i] < ARENA_ALIGN);
			assert_int_equal(a.node, -1);
			/* the whole rounded length is ours, and reads as zero */
			volatile char *p = a.base;
			assert_int_equal(p[0], 0);
			assert_int_equal(p[a.bytes - 1], 0);
			p[0] = 1;
			p[a.bytes - 1] = 1;
			arena_unmap(&a);
			assert_null(a.base);
			assert_int_equal(a.bytes, 0);
		}
	}
}

static void test_touch(void **state)
{
	(void)state;
	for (int huge = 0; huge < 2; huge++) {
		struct arena a;
		struct arena_config c = {.bytes = 5 * ARENA_ALIGN + 123,
					 .huge_pages = huge, .node = -1};
		char err[160];

		assert_int_equal(arena_map(&a, &c, err, sizeof(err)), 0);
		assert_int_equal(resident_pages(a.base, a.bytes), 0);
		arena_unmap(&a);

		c.touch = true;
		assert_int_equal(arena_map(&a, &c, err, sizeof(err)), 0);
		assert_int_equal(resident_pages(a.base, a.bytes),
				 a.bytes / PAGE);
		for (size_t off = 0; off < a.bytes; off += PAGE / 2)
			assert_int_equal(((char *)a.base)[off], 0);
		arena_unmap(&a);
	}
}

/* arena_touch of part of an arena: only its pages, the bytes before it in
 * its first page kept, clamped at the end, nothing past a short arena */
static void test_touch_part(void **state)
{
	struct arena a;
	struct arena_config c = {.bytes = ARENA_ALIGN, .node = -1};
	char err[160];
	(void)state;

	assert_int_equal(arena_map(&a, &c, err, sizeof(err)), 0);
	/* 4 KiB pages even where THP is "always", so residency is per page */
	madvise(a.base, a.bytes, MADV_NOHUGEPAGE);
	char *p = a.base;
	p[3 * PAGE + 10] = (char)0xab; /* page 3 now resident */
	arena_touch(&a, 3 * PAGE + 100, 2 * PAGE); /* pages 3, 4, 5 */
	assert_int_equal((unsigned char)p[3 * PAGE + 10], 0xab);
	assert_int_equal(resident_pages(p, 3 * PAGE), 0);
	assert_int_equal(resident_pages(p + 3 * PAGE, 3 * PAGE), 3);
	assert_int_equal(resident_pages(p + 6 * PAGE, a.bytes - 6 * PAGE), 0);
	/* clamped: the last two pages, and nothing for offsets past the end */
	arena_touch(&a, a.bytes - 2 * PAGE, SIZE_MAX);
	arena_touch(&a, a.bytes, 1);
	arena_touch(&a, SIZE_MAX, SIZE_MAX);
	assert_int_equal(resident_pages(p + 6 * PAGE, a.bytes - 6 * PAGE), 2);
	arena_unmap(&a);

	struct arena z = {0};
	arena_touch(&z, 0, SIZE_MAX); /* not mapped: nothing */
}

static void refused(const struct arena_config *c, int want)
{
	struct arena a = sentinel;
	char err[160] = "";

	assert_int_equal(arena_map(&a, c, err, sizeof(err)), want);
	assert_true(strlen(err) > 0);
	assert_sentinel(&a);
}

/* ARENA_INTERLEAVE: the pages' policy is MPOL_INTERLEAVE over every node
 * with memory (here: node 0) */
static void test_interleave(void **state)
{
	struct arena a;
	char err[160];
	int mode = -1;
	unsigned long mask[ARENA_MAX_NODES / (8 * sizeof(unsigned long))] = {0};

	(void)state;
	assert_int_equal(arena_map(&a, &(struct arena_config){.bytes = 4 << 20,
			 .node = ARENA_INTERLEAVE, .touch = true}, err,
			 sizeof(err)), 0);
	assert_int_equal(get_mempolicy(&mode, mask, ARENA_MAX_NODES + 1, a.base,
				       MPOL_F_ADDR), 0);
	assert_int_equal(mode, MPOL_INTERLEAVE);
	assert_true(mask[0] & 1ul); /* node 0 is among them */
	arena_unmap(&a);
}

static void test_refusals(void **state)
{
	(void)state;
	refused(&(struct arena_config){.bytes = 0, .node = -1}, -ENOMEM);
	refused(&(struct arena_config){.bytes = 0, .node = -1, .touch = true},
		-ENOMEM);
	/* rounding these up would wrap */
	refused(&(struct arena_config){.bytes = SIZE_MAX, .node = -1}, -ENOMEM);
	refused(&(struct arena_config){.bytes = SIZE_MAX - ARENA_ALIGN + 2,
				       .node = -1, .touch = true}, -ENOMEM);
	refused(&(struct arena_config){.bytes = SIZE_MAX / 2 + 1, .node = -1},
		-ENOMEM);
	/* past any address space: mmap's own -ENOMEM, even unreserved */
	refused(&(struct arena_config){.bytes = (size_t)1 << 62, .node = -1,
				       .no_reserve = true}, -ENOMEM);
	refused(&(struct arena_config){.bytes = SIZE_MAX / 2, .node = -1,
				       .huge_pages = true}, -ENOMEM);
	/* node numbers out of range */
	refused(&(struct arena_config){.bytes = 1, .node = -3}, -EINVAL);
	refused(&(struct arena_config){.bytes = 1, .node = ARENA_MAX_NODES},
		-EINVAL);

	/* a tiny message buffer is still a terminated string, no overrun */
	struct arena a = sentinel;
	char err[8];
	memset(err, 'x', sizeof(err));
	assert_int_equal(arena_map(&a, &(struct arena_config){.bytes = 0,
			 .node = -1}, err, 4), -ENOMEM);
	assert_int_equal(err[3], '\0');
	assert_int_equal(err[4], 'x');
}

/* The kernel's heuristic overcommit (vm.overcommit_memory = 0) refuses one
 * mapping larger than RAM + swap: without no_reserve that is a clean
 * -ENOMEM at map time, with it the address space is had. */
static void test_overcommit(void **state)
{
	FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
	int mode = -1;
	(void)state;

	if (f) {
		if (fscanf(f, "%d", &mode) != 1)
			mode = -1;
		fclose(f);
	}
	if (mode != 0) {
		printf("skipped: vm.overcommit_memory is %d, not 0\n", mode);
		skip();
	}
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	assert_true(pages > 0 && psz > 0);
	/* 4 x RAM: over RAM + swap unless swap is over 3 x RAM */
	size_t big = 4 * (size_t)pages * (size_t)psz;
	struct arena a;
	char err[160] = "";

	refused(&(struct arena_config){.bytes = big, .node = -1}, -ENOMEM);
	assert_int_equal(arena_map(&a, &(struct arena_config){.bytes = big,
			 .node = -1, .no_reserve = true}, err, sizeof(err)), 0);
	assert_int_equal(a.bytes % ARENA_ALIGN, 0);
	arena_unmap(&a);
}

/* nodes this process may allocate on; false if the kernel has no NUMA
 * policy calls for us (then *why says so) */
static bool allowed_nodes(unsigned long *mask, const char **why)
{
	memset(mask, 0, MASK_WORDS * sizeof(*mask));
	if (get_mempolicy(NULL, mask, ARENA_MAX_NODES + 1, NULL,
			  MPOL_F_MEMS_ALLOWED) < 0) {
		*why = strerror(errno);
		return false;
	}
	return true;
}

static bool has_node(const unsigned long *mask, int n)
{
	const size_t bits = 8 * sizeof(unsigned long);
	return mask[n / bits] >> (n % bits) & 1;
}

/* every 4 KiB page of a has status `want` (a node, or -ENOENT: not
 * present) by move_pages(2) without moving anything */
static void assert_pages_on(const struct arena *a, int want)
{
	size_t np = a->bytes / PAGE;
	void **pages = calloc(np, sizeof(*pages));
	int *status = calloc(np, sizeof(*status));

	assert_non_null(pages);
	assert_non_null(status);
	for (size_t i = 0; i < np; i++) {
		pages[i] = (char *)a->base + i * PAGE;
		status[i] = 12345;
	}
	assert_int_equal(move_pages(0, np, pages, NULL, status, 0), 0);
	for (size_t i = 0; i < np; i++)
		if (status[i] != want) {
			printf("page %zu of %zu: status %d, want %d\n", i, np,
			       status[i], want);
			fail();
		}
	free(pages);
	free(status);
}

static void test_node_binding(void **state)
{
	unsigned long allowed[MASK_WORDS];
	const char *why = NULL;
	int n_tested = 0;
	(void)state;

	if (!allowed_nodes(allowed, &why)) {
		printf("skipped: get_mempolicy(MPOL_F_MEMS_ALLOWED): %s\n", why);
		skip();
	}
	for (int node = 0; node < ARENA_MAX_NODES; node++) {
		if (!has_node(allowed, node))
			continue;
		for (int huge = 0; huge < 2; huge++) {
			struct arena a;
			struct arena_config c = {.bytes = 4 * ARENA_ALIGN + 4097,
						 .huge_pages = huge,
						 .node = node};
			char err[160] = "";
			int rc = arena_map(&a, &c, err, sizeof(err));
			if (rc == -EPERM || rc == -ENOSYS) {
				printf("skipped: mbind refused here: %s\n", err);
				skip();
			}
			assert_int_equal(rc, 0);
			assert_int_equal(a.node, node);
			assert_int_equal(a.bytes, 5 * ARENA_ALIGN);

			/* the policy on the range is a bind to node alone */
			unsigned long mask[MASK_WORDS] = {0};
			int mode = -1;
			assert_int_equal(get_mempolicy(&mode, mask,
						       ARENA_MAX_NODES + 1,
						       a.base, MPOL_F_ADDR), 0);
			assert_int_equal(mode, MPOL_BIND);
			for (int n = 0; n < ARENA_MAX_NODES; n++)
				assert_int_equal(has_node(mask, n), n == node);
			/* nothing present until touched, then all on node */
			assert_pages_on(&a, -ENOENT);
			arena_touch(&a, 0, a.bytes);
			assert_pages_on(&a, node);
			arena_unmap(&a);

			c.touch = true;
			assert_int_equal(arena_map(&a, &c, err, sizeof(err)), 0);
			assert_pages_on(&a, node);
			arena_unmap(&a);
			n_tested++;
		}
	}
	assert_true(n_tested > 0);
	printf("bound and verified on %d node(s)\n", n_tested / 2);

	/* unbound arenas keep the default policy */
	struct arena a;
	char err[160];
	int mode = -1;
	assert_int_equal(arena_map(&a, &(struct arena_config){.bytes = 1,
			 .node = -1, .touch = true}, err, sizeof(err)), 0);
	assert_int_equal(get_mempolicy(&mode, NULL, 0, a.base, MPOL_F_ADDR), 0);
	assert_int_equal(mode, MPOL_DEFAULT);
	arena_unmap(&a);
}

/* a node we may not use (absent on a one-node machine) is refused */
static void test_absent_node(void **state)
{
	unsigned long allowed[MASK_WORDS];
	const char *why = NULL;
	int node = 0;
	(void)state;

	if (!allowed_nodes(allowed, &why)) {
		printf("skipped: get_mempolicy(MPOL_F_MEMS_ALLOWED): %s\n", why);
		skip();
	}
	while (node < ARENA_MAX_NODES && has_node(allowed, node))
		node++;
	if (node == ARENA_MAX_NODES) {
		printf("skipped: every node number is allowed\n");
		skip();
	}
	struct arena a = sentinel;
	char err[160] = "";
	int rc = arena_map(&a, &(struct arena_config){.bytes = ARENA_ALIGN,
			   .node = node, .touch = true}, err, sizeof(err));
	if (rc == -EPERM || rc == -ENOSYS) {
		printf("skipped: mbind refused here: %s\n", err);
		skip();
	}
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(err, "node"));
	assert_sentinel(&a);
}

static void test_unmap_zeroed(void **state)
{
	struct arena a = {0};
	struct arena b;
	char err[160];
	(void)state;

	arena_unmap(&a); /* never mapped */
	assert_null(a.base);
	assert_int_equal(a.bytes, 0);
	assert_int_equal(arena_map(&b, &(struct arena_config){.bytes = 3,
			 .node = -1}, err, sizeof(err)), 0);
	arena_unmap(&b);
	arena_unmap(&b); /* twice: the second sees a zeroed object */
	assert_null(b.base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_align_and_round),
		cmocka_unit_test(test_touch),
		cmocka_unit_test(test_touch_part),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_interleave),
		cmocka_unit_test(test_overcommit),
		cmocka_unit_test(test_node_binding),
		cmocka_unit_test(test_absent_node),
		cmocka_unit_test(test_unmap_zeroed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
