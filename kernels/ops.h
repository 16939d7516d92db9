/*
 * ops.h - float32 ops of the llama forward pass. Pure, no threads: callers
 * split work (rows, heads) themselves.
 */
#ifndef STRATA_OPS_H
#define STRATA_OPS_H

#include <stdint.h>

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], i < n; out may alias x */
void ops_rmsnorm(float *out, const float *x, const float *w, int64_t n,
		 float eps);

/* Rotate pairs (x[2i], x[2i+1]) of each of n_heads heads of head_dim at
 * position pos by pos * base^(-2i / rot_dim), i < rot_dim / 2 (llama
 * "normal" RoPE; GGUF's Q/K weights are already permuted for it). */
void ops_rope(float *x, int n_heads, int head_dim, int rot_dim, int64_t pos,
	      float base);

/* in-place softmax of x[0..n) */
void ops_softmax(float *x, int64_t n);

/* out[i] = silu(g[i]) * u[i] for i in [i0, i1) */
void ops_silu_mul(float *out, const float *g, const float *u, int64_t i0,
		  int64_t i1);

/* y[i] += x[i] for i in [i0, i1) */
void ops_add(float *y, const float *x, int64_t i0, int64_t i1);

/*
 * One query head attending over n_pos cached positions:
 *   q[head_dim]; k, v: position p's vector for this KV head at
 *   k + p * stride (floats); scores[n_pos] is scratch; out[head_dim].
 *   out = softmax(q . k_p * scale) weighted sum of v_p.
 */
void ops_attn_head(float *out, const float *q, const float *k, const float *v,
		   int64_t stride, int64_t n_pos, int head_dim, float scale,
		   float *scores);

/* index of the max of x[0..n), first on ties */
int64_t ops_argmax(const float *x, int64_t n);

#endif
