/* sampler.c - see sampler.h */
#include "engine/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "models/util.h"

/* splitmix64: small, fast, and the same stream on every platform */
static uint64_t next_u64(uint64_t *st)
{
	uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* uniform in [0, 1) with 53 bits */
static double next_unit(uint64_t *st)
{
	return (double)(next_u64(st) >> 11) * (1.0 / 9007199254740992.0);
}

int sampler_init(struct sampler *s, const struct sampler_config *cfg,
		 int32_t n_vocab)
{
	memset(s, 0, sizeof(*s));
	if (n_vocab <= 0 || !(cfg->top_p >= 0.0f) || cfg->top_p > 1.0f ||
	    !(cfg->min_p >= 0.0f) || cfg->min_p > 1.0f ||
	    !(cfg->repeat_penalty > 0.0f) || cfg->repeat_last_n < 0 ||
	    isnan(cfg->temp))
		return -EINVAL;
	s->cfg = *cfg;
	s->n_vocab = n_vocab;
	s->rng = cfg->seed;
	s->recent = xcalloc((size_t)cfg->repeat_last_n + 1, sizeof(*s->recent));
	s->cand = xcalloc((size_t)n_vocab, sizeof(*s->cand));
	return 0;
}

void sampler_destroy(struct sampler *s)
{
	free(s->recent);
	free(s->cand);
	memset(s, 0, sizeof(*s));
}

void sampler_accept(struct sampler *s, int32_t token)
{
	int32_t n = s->cfg.repeat_last_n;

	if (n == 0)
		return;
	s->recent[s->recent_at] = token;
	s->recent_at = (s->recent_at + 1) % n;
	if (s->n_recent < n)
		s->n_recent++;
}

/* llama.cpp's repetition penalty: each distinct recent token once */
static void apply_penalty(struct sampler *s, float *logits)
{
	float pen = s->cfg.repeat_penalty;

	if (pen == 1.0f)
		return;
	for (int32_t i = 0; i < s->n_recent; i++) {
		int32_t t = s->recent[i];
		bool seen = false;
		for (int32_t j = 0; j < i; j++)
			seen |= s->recent[j] == t;
		if (seen || t < 0 || t >= s->n_vocab)
			continue;
		logits[t] = logits[t] > 0 ? logits[t] / pen : logits[t] * pen;
	}
}

static int cmp_cand(const void *a, const void *b)
{
	const struct sampler_cand *x = a, *y = b;
	if (x->logit != y->logit)
		return x->logit > y->logit ? -1 : 1;
	return x->id - y->id;
}

/* heap order: the worst candidate (lowest logit, then highest id) on top */
static bool worse(const struct sampler_cand *a, const struct sampler_cand *b)
{
	return a->logit < b->logit || (a->logit == b->logit && a->id > b->id);
}

static void sift_down(struct sampler_cand *h, int32_t k, int32_t i)
{
	for (;;) {
		int32_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < k && worse(&h[l], &h[m]))
			m = l;
		if (r < k && worse(&h[r], &h[m]))
			m = r;
		if (m == i)
			return;
		struct sampler_cand t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

/* the k best of logits[0..n) into c[0..k), unordered; returns k */
static int32_t select_top_k(struct sampler_cand *c, const float *logits,
			    int32_t n, int32_t k)
{
	for (int32_t i = 0; i < k; i++)
		c[i] = (struct sampler_cand){i, logits[i], 0.0f};
	for (int32_t i = k / 2 - 1; i >= 0; i--)
		sift_down(c, k, i);
	for (int32_t i = k; i < n; i++) {
		struct sampler_cand x = {i, logits[i], 0.0f};
		if (worse(&c[0], &x)) {
			c[0] = x;
			sift_down(c, k, 0);
		}
	}
	return k;
}

/* softmax over cand[0..n) by logit, with temperature */
static void softmax_cand(struct sampler_cand *c, int32_t n, float temp)
{
	double sum = 0.0;
	float mx = c[0].logit;

	for (int32_t i = 1; i < n; i++)
		mx = c[i].logit > mx ? c[i].logit : mx;
	for (int32_t i = 0; i < n; i++) {
		c[i].p = expf((c[i].logit - mx) / temp);
		sum += c[i].p;
	}
	for (int32_t i = 0; i < n; i++)
		c[i].p = (float)(c[i].p / sum);
}

int32_t sampler_sample(struct sampler *s, float *logits)
{
	struct sampler_cand *c = s->cand;
	int32_t n = s->n_vocab;

	apply_penalty(s, logits);
	if (s->cfg.temp <= 0.0f) {
		int32_t best = 0;
		for (int32_t i = 1; i < n; i++)
			if (logits[i] > logits[best])
				best = i;
		return best;
	}
	if (s->cfg.top_k > 0 && s->cfg.top_k < n) {
		/* the top k by a min-heap in O(n log k), then sort those k:
		 * a full sort of a 50k vocabulary costs milliseconds a token */
		n = select_top_k(c, logits, n, s->cfg.top_k);
	} else {
		for (int32_t i = 0; i < n; i++)
			c[i] = (struct sampler_cand){i, logits[i], 0.0f};
	}
	qsort(c, (size_t)n, sizeof(*c), cmp_cand);
	/* top-p and min-p on the untempered distribution, as llama.cpp */
	softmax_cand(c, n, 1.0f);
	if (s->cfg.top_p < 1.0f) {
		double cum = 0.0;
		for (int32_t i = 0; i < n; i++) {
			cum += c[i].p;
			if (cum >= s->cfg.top_p) {
				n = i + 1;
				break;
			}
		}
	}
	if (s->cfg.min_p > 0.0f) {
		float floor_p = c[0].p * s->cfg.min_p;
		int32_t keep = 1;
		while (keep < n && c[keep].p >= floor_p)
			keep++;
		n = keep;
	}
	softmax_cand(c, n, s->cfg.temp);
	double r = next_unit(&s->rng), cum = 0.0;
	for (int32_t i = 0; i < n; i++) {
		cum += c[i].p;
		if (r < cum)
			return c[i].id;
	}
	return c[n - 1].id;
}
