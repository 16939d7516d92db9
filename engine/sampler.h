/*
 * sampler.h - next-token choice from logits, in llama.cpp's order:
 * repetition penalty over the last repeat_last_n tokens, top-k, top-p,
 * min-p, temperature, then a draw from a seeded generator. temp <= 0 is
 * greedy (argmax after the penalty). Same seed, same logits: same token.
 */
#ifndef STRATA_SAMPLER_H
#define STRATA_SAMPLER_H

#include <stdint.h>

struct sampler_config {
	float temp;           /* <= 0: greedy */
	int32_t top_k;        /* <= 0: off */
	float top_p;          /* >= 1: off */
	float min_p;          /* <= 0: off */
	float repeat_penalty; /* 1: off */
	int32_t repeat_last_n;
	uint64_t seed;
};

struct sampler_cand {
	int32_t id;
	float logit;
	float p;
};

struct sampler {
	struct sampler_config cfg;
	int32_t n_vocab;
	uint64_t rng;
	int32_t *recent; /* ring of the last repeat_last_n accepted tokens */
	int32_t n_recent, recent_at;
	struct sampler_cand *cand; /* [n_vocab] */
};

/* Returns 0 or -EINVAL for out-of-range settings (top_p/min_p not in
 * [0, 1], penalty <= 0, negative last_n). */
int sampler_init(struct sampler *s, const struct sampler_config *cfg,
		 int32_t n_vocab);
void sampler_destroy(struct sampler *s);

/* Pick a token from logits[n_vocab] (logits are modified by the penalty).
 * Not thread-safe on one sampler. */
int32_t sampler_sample(struct sampler *s, float *logits);

/* Record a token of the sequence (prompt and generated) for the penalty */
void sampler_accept(struct sampler *s, int32_t token);

#endif
