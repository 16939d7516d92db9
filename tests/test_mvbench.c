/*
 * test_mvbench.c - the DRAM read sums behind every roofline in bench/
 * (bench/mvbench.h): each ISA's sum, in one stream and in several, must
 * read every uint64 of the buffer exactly once, so its total equals a plain
 * loop's. A sum that skipped a part would report a bandwidth higher than
 * the machine's, and every fraction divided by it would be too low.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/mvbench.h"

/* n of the cases, in uint64 (multiples of 32): one step; a part of one
 * step in each of 4 streams and a rest; parts of odd steps and a rest */
static const size_t lens[] = { 32, 64, 96, 128, 160, 32 * 7, 32 * 129,
			       32 * 1000 + 32 * 3 };

static uint64_t *random_buf(size_t n)
{
	uint64_t *p = aligned_alloc(64, n * sizeof(uint64_t));
	uint64_t x = 0x9e3779b97f4a7c15ull;

	assert_non_null(p);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = x;
	}
	return p;
}

static void check_sum(const char *cap)
{
	const char *name;
	mvbench_sum_fn sum;
	size_t max = lens[sizeof(lens) / sizeof(lens[0]) - 1];
	uint64_t *p = random_buf(max);

	setenv("STRATA_KERNELS", cap, 1);
	sum = mvbench_pick_sum(&name);
	for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
		uint64_t want = 0;

		for (size_t i = 0; i < lens[l]; i++)
			want += p[i];
		for (int s = 1; s <= 5; s++) {
			uint64_t got = sum(p, lens[l], s);

			if (got != want)
				fail_msg("%s sum, n %zu, %d streams: %llu, a plain loop %llu",
					 name, lens[l], s, (unsigned long long)got,
					 (unsigned long long)want);
		}
	}
	printf("%s sum: %zu lengths x 1..5 streams equal a plain loop\n", name,
	       sizeof(lens) / sizeof(lens[0]));
	unsetenv("STRATA_KERNELS");
	free(p);
}

/* the widest this CPU has, then capped at AVX2, then the scalar one */
static void test_sum_native(void **state) { (void)state; check_sum(""); }
static void test_sum_avx2(void **state) { (void)state; check_sum("avx2"); }
static void test_sum_scalar(void **state) { (void)state; check_sum("ref"); }

static void test_dram_best(void **state)
{
	const char *name;
	mvbench_sum_fn sum = mvbench_pick_sum(&name);
	size_t n = (size_t)4 << 20; /* 32 MiB */
	uint64_t *p = random_buf(n);
	int streams = 0;
	double g = mvbench_dram_best(p, n, 1, 3, sum, &streams);

	(void)state;
	assert_true(g > 0);
	assert_true(streams == 1 || streams == 4);
	/* bad arguments are refused, not timed */
	assert_true(mvbench_dram_gbps(p, 16, 1, 3, sum, 1) < 0);
	assert_true(mvbench_dram_gbps(p, n, 1, 0, sum, 4) < 0);
	assert_true(mvbench_dram_best(p, 16, 1, 3, sum, &streams) < 0);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sum_native),
		cmocka_unit_test(test_sum_avx2),
		cmocka_unit_test(test_sum_scalar),
		cmocka_unit_test(test_dram_best),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
