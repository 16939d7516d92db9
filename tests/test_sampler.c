/*
 * test_sampler.c - the sampler's contract: greedy is argmax, a seed fixes
 * the sequence, top-k / top-p / min-p keep what they should, temperature
 * towards 0 becomes greedy, the repetition penalty is llama.cpp's, draws
 * follow the softmax (a chi-square bound on a fixed seed, so the test is
 * deterministic), and bad settings are refused with -EINVAL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"

/* everything off: plain softmax sampling at temperature 1 */
static struct sampler_config plain(float temp, uint64_t seed)
{
	return (struct sampler_config){
		.temp = temp, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
		.repeat_penalty = 1.0f, .repeat_last_n = 0, .seed = seed,
	};
}

/* reproducible pseudo-random logits in [-scale, scale) */
static void rand_logits(float *l, int32_t n, uint64_t seed, float scale)
{
	uint64_t st = seed * 2654435761u + 1;

	for (int32_t i = 0; i < n; i++) {
		st = st * 6364136223846793005ull + 1442695040888963407ull;
		l[i] = scale * ((float)(st >> 40) / (float)(1u << 24) * 2.0f - 1.0f);
	}
}

static int32_t argmax(const float *l, int32_t n)
{
	int32_t b = 0;
	for (int32_t i = 1; i < n; i++)
		if (l[i] > l[b])
			b = i;
	return b;
}

/* draw n_draws tokens from fixed logits; counts[n_vocab] */
static void draw(const struct sampler_config *cfg, const float *logits,
		 int32_t n_vocab, int n_draws, int *counts)
{
	struct sampler s;
	float *l = malloc((size_t)n_vocab * sizeof(*l));

	assert_non_null(l);
	assert_int_equal(sampler_init(&s, cfg, n_vocab), 0);
	memset(counts, 0, (size_t)n_vocab * sizeof(*counts));
	for (int i = 0; i < n_draws; i++) {
		memcpy(l, logits, (size_t)n_vocab * sizeof(*l));
		int32_t t = sampler_sample(&s, l);
		assert_in_range(t, 0, n_vocab - 1);
		counts[t]++;
	}
	sampler_destroy(&s);
	free(l);
}

/* softmax of logits[0..n) / temp, in double */
static void softmax(const float *logits, int32_t n, double temp, double *p)
{
	double mx = logits[0], sum = 0.0;
	for (int32_t i = 1; i < n; i++)
		mx = logits[i] > mx ? logits[i] : mx;
	for (int32_t i = 0; i < n; i++)
		sum += p[i] = exp((logits[i] - mx) / temp);
	for (int32_t i = 0; i < n; i++)
		p[i] /= sum;
}

/* Pearson chi-square of counts against probabilities p; cells with p == 0
 * must be empty */
static double chi_square(const int *counts, const double *p, int32_t n,
			 int n_draws)
{
	double x2 = 0.0;
	for (int32_t i = 0; i < n; i++) {
		if (p[i] == 0.0) {
			assert_int_equal(counts[i], 0);
			continue;
		}
		double e = p[i] * n_draws;
		x2 += (counts[i] - e) * (counts[i] - e) / e;
	}
	return x2;
}

static void test_greedy_is_argmax(void **state)
{
	static const int32_t sizes[] = {1, 2, 3, 7, 15, 17, 31, 33, 1000, 49152};
	(void)state;

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		int32_t n = sizes[k];
		float *l = malloc((size_t)n * sizeof(*l));
		float *copy = malloc((size_t)n * sizeof(*l));
		for (uint64_t seed = 0; seed < 5; seed++) {
			/* temp 0 and negative temp are both greedy */
			for (int neg = 0; neg < 2; neg++) {
				struct sampler s;
				struct sampler_config cfg = plain(neg ? -1.0f : 0.0f, seed);
				cfg.top_k = 3; /* ignored by greedy */
				rand_logits(l, n, seed + 100 * k, 10.0f);
				memcpy(copy, l, (size_t)n * sizeof(*l));
				assert_int_equal(sampler_init(&s, &cfg, n), 0);
				assert_int_equal(sampler_sample(&s, l), argmax(copy, n));
				/* no penalty: logits untouched */
				assert_memory_equal(l, copy, (size_t)n * sizeof(*l));
				sampler_destroy(&s);
			}
		}
		free(l);
		free(copy);
	}

	/* ties go to the lowest id; -inf is never chosen over a finite one */
	float t[5] = {-INFINITY, 1.0f, 3.0f, 3.0f, -INFINITY};
	struct sampler s;
	struct sampler_config cfg = plain(0.0f, 1);
	assert_int_equal(sampler_init(&s, &cfg, 5), 0);
	assert_int_equal(sampler_sample(&s, t), 2);
	sampler_destroy(&s);
}

static void test_seed_fixes_sequence(void **state)
{
	enum { N = 50, STEPS = 300 };
	struct sampler a, b, c;
	struct sampler_config ca = plain(1.0f, 1234), cc;
	float l[N], la[N], lb[N], lc[N];
	int same_ac = 0;
	(void)state;

	ca.top_k = 40;
	ca.top_p = 0.95f;
	ca.min_p = 0.01f;
	ca.repeat_penalty = 1.1f;
	ca.repeat_last_n = 8;
	cc = ca;
	cc.seed = 1235;
	assert_int_equal(sampler_init(&a, &ca, N), 0);
	assert_int_equal(sampler_init(&b, &ca, N), 0);
	assert_int_equal(sampler_init(&c, &cc, N), 0);
	for (int i = 0; i < STEPS; i++) {
		rand_logits(l, N, (uint64_t)i, 1.0f); /* flat-ish: many candidates */
		memcpy(la, l, sizeof(l));
		memcpy(lb, l, sizeof(l));
		memcpy(lc, l, sizeof(l));
		int32_t ta = sampler_sample(&a, la);
		int32_t tb = sampler_sample(&b, lb);
		int32_t tc = sampler_sample(&c, lc);
		assert_int_equal(ta, tb);
		same_ac += ta == tc;
		sampler_accept(&a, ta);
		sampler_accept(&b, tb);
		sampler_accept(&c, tc);
	}
	/* another seed: a different sequence (identical by chance has
	 * probability far below 1e-100 here) */
	assert_true(same_ac < STEPS);
	assert_true(same_ac < STEPS / 2);
	sampler_destroy(&a);
	sampler_destroy(&b);
	sampler_destroy(&c);
}

static void test_top_k_1_is_greedy(void **state)
{
	enum { N = 100 };
	float l[N], copy[N];
	(void)state;

	for (uint64_t seed = 0; seed < 50; seed++) {
		struct sampler s;
		struct sampler_config cfg = plain(1.5f, seed);
		cfg.top_k = 1;
		rand_logits(l, N, seed, 3.0f);
		memcpy(copy, l, sizeof(l));
		assert_int_equal(sampler_init(&s, &cfg, N), 0);
		for (int k = 0; k < 20; k++) {
			memcpy(l, copy, sizeof(l));
			assert_int_equal(sampler_sample(&s, l), argmax(copy, N));
		}
		sampler_destroy(&s);
	}
}

/* top-p: tiny keeps only the top token; 0.7 over p = .5/.3/.2 keeps two */
static void test_top_p(void **state)
{
	enum { N = 3, DRAWS = 20000 };
	const float l[N] = {logf(0.2f), logf(0.5f), logf(0.3f)}; /* top is id 1 */
	int counts[N];
	double p[N];
	(void)state;

	struct sampler_config cfg = plain(1.0f, 7);
	cfg.top_p = 1e-6f;
	draw(&cfg, l, N, 2000, counts);
	assert_int_equal(counts[1], 2000);
	cfg.top_p = 0.0f;
	draw(&cfg, l, N, 2000, counts);
	assert_int_equal(counts[1], 2000);

	cfg.top_p = 0.7f;
	draw(&cfg, l, N, DRAWS, counts);
	assert_int_equal(counts[0], 0);
	p[0] = 0.0;
	p[1] = 0.5 / 0.8;
	p[2] = 0.3 / 0.8;
	/* df 1: P(chi2 > 15.1) = 1e-4 */
	assert_true(chi_square(counts, p, N, DRAWS) < 15.1);

	/* top_p 1 is off: all three appear */
	cfg.top_p = 1.0f;
	draw(&cfg, l, N, DRAWS, counts);
	assert_true(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
}

/* min-p: tokens below min_p * p(top) are dropped */
static void test_min_p(void **state)
{
	enum { N = 4, DRAWS = 20000 };
	const float l[N] = {logf(0.05f), logf(0.5f), logf(0.3f), logf(0.15f)};
	int counts[N];
	double p[N];
	(void)state;

	struct sampler_config cfg = plain(1.0f, 11);
	cfg.min_p = 0.2f; /* floor 0.1: keeps .5 .3 .15 */
	draw(&cfg, l, N, DRAWS, counts);
	assert_int_equal(counts[0], 0);
	p[0] = 0.0;
	p[1] = 0.5 / 0.95;
	p[2] = 0.3 / 0.95;
	p[3] = 0.15 / 0.95;
	/* df 2: P(chi2 > 18.4) = 1e-4 */
	assert_true(chi_square(counts, p, N, DRAWS) < 18.4);

	cfg.min_p = 0.5f; /* floor 0.25: keeps .5 .3 */
	draw(&cfg, l, N, DRAWS, counts);
	assert_int_equal(counts[0] + counts[3], 0);
	assert_true(counts[2] > 0);

	cfg.min_p = 1.0f; /* only the top */
	draw(&cfg, l, N, 1000, counts);
	assert_int_equal(counts[1], 1000);
}

/* temperature towards 0 approaches greedy; a huge one approaches uniform */
static void test_temperature_limits(void **state)
{
	enum { N = 10, DRAWS = 20000 };
	float l[N];
	int counts[N];
	double p[N];
	(void)state;

	for (int32_t i = 0; i < N; i++)
		l[i] = 0.1f * (float)((i * 7) % N); /* distinct, 0.1 apart */
	int32_t top = argmax(l, N);
	static const float tiny[] = {1e-3f, 1e-6f, 1e-20f, 1e-38f};
	for (size_t k = 0; k < sizeof(tiny) / sizeof(tiny[0]); k++) {
		struct sampler_config cfg = plain(tiny[k], k);
		draw(&cfg, l, N, 1000, counts);
		assert_int_equal(counts[top], 1000);
	}

	struct sampler_config cfg = plain(1e4f, 3);
	draw(&cfg, l, N, DRAWS, counts);
	for (int32_t i = 0; i < N; i++)
		p[i] = 1.0 / N;
	/* df 9: P(chi2 > 33.7) = 1e-4 */
	assert_true(chi_square(counts, p, N, DRAWS) < 33.7);
}

/* llama.cpp's repetition penalty: over the last repeat_last_n accepted
 * tokens, each distinct token once, positive logits divided, negative
 * multiplied; applied in place before everything else */
static void test_repeat_penalty(void **state)
{
	struct sampler s;
	struct sampler_config cfg = plain(0.0f, 1);
	(void)state;

	cfg.repeat_penalty = 2.0f;
	cfg.repeat_last_n = 8;
	assert_int_equal(sampler_init(&s, &cfg, 6), 0);
	sampler_accept(&s, 0);
	sampler_accept(&s, 1);
	sampler_accept(&s, 0); /* a repeat: penalized once, not twice */
	sampler_accept(&s, 0);
	sampler_accept(&s, 4);
	sampler_accept(&s, -1); /* out of range: ignored */
	sampler_accept(&s, 6);
	float l[6] = {2.0f, -2.0f, 1.5f, 0.5f, 0.0f, -1.0f};
	/* greedy would pick 0; after the penalty 2 (1.5) beats 0 (1.0) */
	assert_int_equal(sampler_sample(&s, l), 2);
	assert_true(l[0] == 1.0f);
	assert_true(l[1] == -4.0f);
	assert_true(l[2] == 1.5f);
	assert_true(l[3] == 0.5f);
	assert_true(l[4] == 0.0f);
	assert_true(l[5] == -1.0f);
	sampler_destroy(&s);

	/* the window: only the last repeat_last_n tokens count */
	cfg.repeat_last_n = 2;
	assert_int_equal(sampler_init(&s, &cfg, 4), 0);
	sampler_accept(&s, 0);
	sampler_accept(&s, 1);
	sampler_accept(&s, 2); /* 0 drops out */
	sampler_accept(&s, 3); /* 1 drops out */
	float w[4] = {4.0f, 4.0f, 4.0f, -4.0f};
	assert_int_equal(sampler_sample(&s, w), 0);
	assert_true(w[0] == 4.0f && w[1] == 4.0f);
	assert_true(w[2] == 2.0f && w[3] == -8.0f);
	sampler_destroy(&s);

	/* last_n 0 or penalty 1: off */
	cfg.repeat_last_n = 0;
	assert_int_equal(sampler_init(&s, &cfg, 2), 0);
	sampler_accept(&s, 0);
	float z[2] = {3.0f, 2.0f};
	assert_int_equal(sampler_sample(&s, z), 0);
	assert_true(z[0] == 3.0f);
	sampler_destroy(&s);
	cfg.repeat_last_n = 4;
	cfg.repeat_penalty = 1.0f;
	assert_int_equal(sampler_init(&s, &cfg, 2), 0);
	sampler_accept(&s, 0);
	assert_int_equal(sampler_sample(&s, z), 0);
	assert_true(z[0] == 3.0f);
	sampler_destroy(&s);

	/* a penalty below 1 favours repeats */
	cfg.repeat_penalty = 0.5f;
	assert_int_equal(sampler_init(&s, &cfg, 2), 0);
	sampler_accept(&s, 1);
	float u[2] = {3.0f, 2.0f};
	assert_int_equal(sampler_sample(&s, u), 1);
	assert_true(u[1] == 4.0f);
	sampler_destroy(&s);
}

/* sampled frequencies match the softmax probabilities */
static void test_frequencies_match_softmax(void **state)
{
	enum { N = 6, DRAWS = 200000 };
	const float l[N] = {1.0f, 0.5f, 0.0f, -0.5f, -1.0f, 2.0f};
	int counts[N];
	double p[N];
	(void)state;

	/* temperature 1, nothing else: df 5, P(chi2 > 25.7) = 1e-4 */
	struct sampler_config cfg = plain(1.0f, 42);
	draw(&cfg, l, N, DRAWS, counts);
	softmax(l, N, 1.0, p);
	double x2 = chi_square(counts, p, N, DRAWS);
	print_message("chi2 temp 1: %.2f (df 5)\n", x2);
	assert_true(x2 < 25.7);

	/* temperature 0.5 and top-k 3: softmax(l / 0.5) over ids 5, 0, 1 */
	cfg = plain(0.5f, 43);
	cfg.top_k = 3;
	draw(&cfg, l, N, DRAWS, counts);
	const float top3[3] = {l[5], l[0], l[1]};
	double p3[3];
	softmax(top3, 3, 0.5, p3);
	for (int32_t i = 0; i < N; i++)
		p[i] = 0.0;
	p[5] = p3[0];
	p[0] = p3[1];
	p[1] = p3[2];
	x2 = chi_square(counts, p, N, DRAWS);
	print_message("chi2 temp 0.5 top-k 3: %.2f (df 2)\n", x2);
	assert_true(x2 < 18.4);

	/* -inf logits (what --ignore-eos sets) are never drawn */
	float m[N];
	memcpy(m, l, sizeof(m));
	m[5] = -INFINITY;
	m[2] = -INFINITY;
	cfg = plain(1.0f, 44);
	draw(&cfg, m, N, 20000, counts);
	assert_int_equal(counts[5] + counts[2], 0);
}

static void test_invalid_config(void **state)
{
	struct sampler s;
	struct sampler_config ok = plain(0.8f, 1), c;
	(void)state;

	ok.top_k = 40;
	ok.top_p = 0.95f;
	ok.min_p = 0.05f;
	ok.repeat_penalty = 1.1f;
	ok.repeat_last_n = 64;
	assert_int_equal(sampler_init(&s, &ok, 10), 0);
	sampler_destroy(&s);

#define BAD(field, value)                                                   \
	do {                                                                 \
		c = ok;                                                      \
		c.field = (value);                                           \
		memset(&s, 0xa5, sizeof(s));                                 \
		if (sampler_init(&s, &c, 10) != -EINVAL)                     \
			fail_msg("%s = %s accepted", #field, #value);        \
		sampler_destroy(&s); /* left zeroed: safe */                 \
	} while (0)
	BAD(top_p, -0.1f);
	BAD(top_p, 1.5f);
	BAD(top_p, NAN);
	BAD(min_p, -0.1f);
	BAD(min_p, 1.01f);
	BAD(min_p, NAN);
	BAD(repeat_penalty, 0.0f);
	BAD(repeat_penalty, -1.0f);
	BAD(repeat_penalty, NAN);
	BAD(repeat_last_n, -1);
	BAD(temp, NAN);
#undef BAD
	memset(&s, 0xa5, sizeof(s));
	assert_int_equal(sampler_init(&s, &ok, 0), -EINVAL);
	sampler_destroy(&s);
	assert_int_equal(sampler_init(&s, &ok, -5), -EINVAL);
	sampler_destroy(&s);

	/* edges that are valid */
	static const struct {
		float temp, top_p, min_p;
		int32_t top_k;
	} edges[] = {
		{0.0f, 0.0f, 0.0f, 0}, {-1.0f, 1.0f, 1.0f, -1},
		{100.0f, 1.0f, 0.0f, 1000000},
	};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		c = ok;
		c.temp = edges[i].temp;
		c.top_p = edges[i].top_p;
		c.min_p = edges[i].min_p;
		c.top_k = edges[i].top_k;
		assert_int_equal(sampler_init(&s, &c, 10), 0);
		float l[10];
		rand_logits(l, 10, i, 2.0f);
		assert_in_range(sampler_sample(&s, l), 0, 9);
		sampler_destroy(&s);
	}
	sampler_destroy(&s); /* twice: fine */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greedy_is_argmax),
		cmocka_unit_test(test_seed_fixes_sequence),
		cmocka_unit_test(test_top_k_1_is_greedy),
		cmocka_unit_test(test_top_p),
		cmocka_unit_test(test_min_p),
		cmocka_unit_test(test_temperature_limits),
		cmocka_unit_test(test_repeat_penalty),
		cmocka_unit_test(test_frequencies_match_softmax),
		cmocka_unit_test(test_invalid_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
