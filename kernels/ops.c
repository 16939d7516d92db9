/*
 * ops.c - float32 ops, written so gcc vectorizes the inner loops (the file
 * is built with -O3); accumulation in float like llama.cpp's, except the
 * RMSNorm sum of squares, which is double as in ggml.
 */
#include "kernels/ops.h"

#include <math.h>

/* The hot loops are cloned per ISA by gcc (resolved once at load through
 * an ifunc), so this file needs no ISA flags of its own; `omp simd`
 * reductions let gcc reassociate the float sums into vector lanes.
 * clang 14 emits the clones but no symbol for the resolver, so a clang
 * build (the fuzzers) keeps the default code; TSan instruments the ifunc
 * resolver too, which then runs at load time before TSan is up and
 * crashes, so `make tsan` gets the default clone only. */
#if defined(__clang__) || defined(__SANITIZE_THREAD__)
#define OPS_CLONES
#else
#define OPS_CLONES \
	__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", \
				     "default")))
#endif

OPS_CLONES
void ops_rmsnorm(float *out, const float *x, const float *w, int64_t n,
		 float eps)
{
	double ss = 0.0;

	for (int64_t i = 0; i < n; i++)
		ss += (double)x[i] * x[i];
	float scale = (float)(1.0 / sqrt(ss / (double)n + eps));
	for (int64_t i = 0; i < n; i++)
		out[i] = x[i] * scale * w[i];
}

void ops_rope(float *x, int n_heads, int head_dim, int rot_dim, int64_t pos,
	      float base)
{
	/* theta_i = pos * base^(-2i/rot_dim), computed as ggml does: by
	 * repeated multiplication with theta_scale, in float */
	float theta_scale = powf(base, -2.0f / (float)rot_dim);
	float cs[512], sn[512];
	int half = rot_dim / 2;
	float theta = (float)pos;

	for (int i = 0; i < half && i < 512; i++) {
		cs[i] = cosf(theta);
		sn[i] = sinf(theta);
		theta *= theta_scale;
	}
	for (int h = 0; h < n_heads; h++) {
		float *v = x + (int64_t)h * head_dim;
		for (int i = 0; i < half; i++) {
			float a = v[2 * i], b = v[2 * i + 1];
			v[2 * i] = a * cs[i] - b * sn[i];
			v[2 * i + 1] = a * sn[i] + b * cs[i];
		}
	}
}

OPS_CLONES
void ops_softmax(float *x, int64_t n)
{
	float mx = -INFINITY;
	double sum = 0.0;

	for (int64_t i = 0; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	for (int64_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - mx);
		sum += x[i];
	}
	float inv = (float)(1.0 / sum);
	for (int64_t i = 0; i < n; i++)
		x[i] *= inv;
}

OPS_CLONES
void ops_silu_mul(float *out, const float *g, const float *u, int64_t i0,
		  int64_t i1)
{
	for (int64_t i = i0; i < i1; i++)
		out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

OPS_CLONES
void ops_add(float *y, const float *x, int64_t i0, int64_t i1)
{
	for (int64_t i = i0; i < i1; i++)
		y[i] += x[i];
}

OPS_CLONES
void ops_attn_head(float *out, const float *q, const float *k, const float *v,
		   int64_t stride, int64_t n_pos, int head_dim, float scale,
		   float *scores)
{
	for (int64_t p = 0; p < n_pos; p++) {
		const float *kp = k + p * stride;
		float s = 0.0f;
#pragma omp simd reduction(+ : s)
		for (int d = 0; d < head_dim; d++)
			s += q[d] * kp[d];
		scores[p] = s * scale;
	}
	ops_softmax(scores, n_pos);
	for (int d = 0; d < head_dim; d++)
		out[d] = 0.0f;
	for (int64_t p = 0; p < n_pos; p++) {
		const float *vp = v + p * stride;
		float w = scores[p];
		for (int d = 0; d < head_dim; d++)
			out[d] += w * vp[d];
	}
}

int64_t ops_argmax(const float *x, int64_t n)
{
	int64_t best = 0;

	for (int64_t i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}
