/*
 * test_sim.c - the simulator's arithmetic on hand-computed cases (bench/
 * sim.h): a tiny all-f32 model on a profile of round numbers, so every
 * expected time below is bytes / bandwidth worked out by hand in the
 * comments. Also: the profile reader refuses bad profiles naming the
 * field, and sim_predict refuses what the profile cannot answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sim.h"
#include "engine/plan.h"

/*
 * The model: 2 layers, n_embd 64, 4 heads of 16 (2 KV heads), n_ff 128,
 * vocab 256, every tensor f32. Bytes of one layer's matrices:
 *   Wq 64x64x4 = 16384, Wk = Wv = 32x64x4 = 8192, Wo 16384,
 *   gate = up = 128x64x4 = 32768, down 64x128x4 = 32768: 147456;
 * norms 256 each; the head 256x64x4 = 65536; an embedding row 256.
 */
#define L 2
#define NT (L * LT_COUNT + GT_COUNT)
static struct sim_tensor T[NT];

static void tiny(struct sim_input *in, int n_head, int n_head_kv)
{
	const int64_t d = 16 * n_head, kv = 16 * n_head_kv, ff = 128, V = 256;
	const int64_t shape[LT_COUNT][2] = {
		[LT_ATTN_NORM] = { 1, d }, [LT_WQ] = { d, d }, [LT_WK] = { kv, d },
		[LT_WV] = { kv, d }, [LT_WO] = { d, d }, [LT_FFN_NORM] = { 1, d },
		[LT_W_GATE] = { ff, d }, [LT_W_UP] = { ff, d }, [LT_W_DOWN] = { d, ff },
	};
	for (int l = 0; l < L; l++)
		for (int i = 0; i < LT_COUNT; i++)
			T[l * LT_COUNT + i] = (struct sim_tensor){ KT_F32, shape[i][0],
				shape[i][1], (uint64_t)(shape[i][0] * shape[i][1] * 4), 0 };
	T[L * LT_COUNT + GT_TOK_EMBD] = (struct sim_tensor){ KT_F32, V, d, (uint64_t)(V * d * 4), 0 };
	T[L * LT_COUNT + GT_OUTPUT_NORM] = (struct sim_tensor){ KT_F32, 1, d, (uint64_t)d * 4, 0 };
	T[L * LT_COUNT + GT_OUTPUT] = (struct sim_tensor){ KT_F32, V, d, (uint64_t)(V * d * 4), 0 };
	*in = (struct sim_input){
		.hp = { .n_layer = L, .n_embd = (int32_t)d, .n_head = n_head,
			.n_head_kv = n_head_kv, .head_dim = 16, .n_ff = 128,
			.n_vocab = 256, .n_ctx_train = 4096, .rope_dim = 16 },
		.t = T, .tier = MEMTIER_DRAM, .kv_tier = MEMTIER_DRAM, .n_units = 1,
		.nmu_on = true, .prefetch = 2, .dram_budget = UINT64_MAX,
		.n_prompt = 1, .n_predict = 2, .n_ctx = 4096, .greedy = true,
		.chips = 1,
	};
}

/* f32 matvec 1 GB/s a thread from DRAM, 10 from L2; DRAM read 1 GB/s a
 * thread; barriers 0 / 10 us; free sampler; flash FLASH_GBPS, no latency
 * unless LAT; KV writes at 1 GB/s */
static const char *PROFILE_FMT =
	"{\"machine\": {\"cpu\": \"test\", \"kern_isa\": \"ref\"},"
	" \"dram\": {\"read_gbps_by_threads\": {\"1\": %g, \"2\": %g}},"
	" \"kernels\": {\"threads\": 2, \"l2_bytes\": 1048576, \"types\": {"
	"   \"f32\": {\"dram\": {\"gbps\": {\"1\": 1, \"2\": 2}},"
	"            \"l2\": {\"gbps\": {\"1\": 10, \"2\": 20}}}}},"
	" \"barrier\": {\"us_by_units\": {\"1\": 0, \"2\": 10}},"
	" \"sampler\": {\"ns_per_vocab\": 0, \"greedy_ns_per_vocab\": 0},"
	" \"flash\": {\"read_gbps\": {\"4096\": {\"1\": %g}}, \"rand4k_p50_us\": %g},"
	" \"kv_write\": {\"write_gbps\": 1},"
	" \"fabric\": {\"latency_us\": 1, \"gbps\": 1}}";

static void profile(struct sim_profile *p, double dram, double flash, double lat)
{
	char text[2048], err[256];

	snprintf(text, sizeof(text), PROFILE_FMT, dram, 2 * dram, flash, lat);
	assert_int_equal(sim_profile_parse(p, text, "t.json", err, sizeof(err)), 0);
}

static void predict(const struct sim_input *in, const struct sim_profile *p,
		    struct sim_result *r)
{
	char err[256] = "";
	int rc = sim_predict(in, p, r, err, sizeof(err));
	if (rc)
		fail_msg("sim_predict: %s", err);
}

#define NEAR(a, b) near((double)(a), (double)(b), #a)

static void near(double a, double b, const char *what)
{
	if (!(fabs(a - b) <= 1e-12 + 1e-6 * fabs(b)))
		fail_msg("%s = %.9g, want %.9g", what, a, b);
}

/* weights 294912 + 65536 = 360448 B at 1 GB/s = 360.448 us; attention
 * at position 1: 2 layers x 4 heads x 2 x 2 positions x 16 x 4 B = 2048
 * B at the L2 rate 10 GB/s = 0.2048 us; the embedding row 256 B at 1
 * GB/s = 0.256 us; one unit: no barrier cost. */
static void test_known_layer(void **state)
{
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r;

	(void)state;
	tiny(&in, 4, 2);
	profile(&p, 1, 1, 0);
	predict(&in, &p, &r);
	assert_int_equal(r.decode_tokens, 1);
	assert_int_equal(r.tok.pos, 1);
	NEAR(r.tok.matvec_s[KT_F32], 360.448e-6);
	NEAR(r.tok.attention_s, 0.2048e-6);
	NEAR(r.tok.embed_s, 0.256e-6);
	NEAR(r.median_step_ms, (360.448 + 0.2048 + 0.256) * 1e-3);
	NEAR(r.decode_tok_per_s, 1 / ((360.448 + 0.2048 + 0.256) * 1e-6));
	assert_int_equal(r.weight_bytes_per_token, 360448 + 256);
	assert_int_equal(r.tier_bytes_per_token[MEMTIER_DRAM], 360448 + 256);
	/* bytes / DRAM read 1 GB/s = 360.448 us >= bytes / L2 10 GB/s: memory */
	NEAR(r.tok.matvec_memory_s[KT_F32], 360.448e-6);
	NEAR(r.tok.matvec_compute_s[KT_F32], 36.0448e-6);
	/* two units: each half the rows at 2 GB/s shared = 1 GB/s each */
	in.n_units = 2;
	predict(&in, &p, &r);
	NEAR(r.tok.matvec_s[KT_F32], 180.224e-6);
}

/* kernels.shapes: gate and up (both 128x64 f32, 32768 B a layer each) at
 * their own rate. One point at 0.5 GB/s: 4 x 32768 B take 262.144 us, not
 * 131.072, so the matvecs 360.448 + 131.072 us. Two points a factor 4 apart around the
 * token's working set, 0.5 and 1.5 GB/s: at the middle in log2, 1 GB/s,
 * the type's own rate again. A shape measured on huge pages is not the
 * mmap tier's. Bad entries are refused by name. */
static void test_shapes(void **state)
{
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r;
	char text[4096], err[256], shapes[512];
	const char *cut = "}}}},";

	(void)state;
	tiny(&in, 4, 2);
	profile(&p, 1, 1, 0);
	predict(&in, &p, &r);
	const double ws = r.tok.ws_bytes;
	for (int k = 0; k < 5; k++) {
		static const char *bad[] = {
			"[{\"type\": \"q9_9\", \"rows\": 128, \"cols\": 64, \"ws\": "
			"[{\"ws_bytes\": 1, \"gbps\": {\"1\": 1, \"2\": 1}}]}]",
			"[{\"type\": \"f32\", \"rows\": 128, \"cols\": 64}]",
			"[{\"type\": \"f32\", \"rows\": 128, \"cols\": 64, \"pages\": "
			"\"big\", \"ws\": [{\"ws_bytes\": 1, \"gbps\": {\"1\": 1, \"2\": 1}}]}]",
		};
		char base[2048];
		if (k == 0)
			snprintf(shapes, sizeof(shapes), "[{\"type\": \"f32\", \"rows\": "
				 "128, \"cols\": 64, \"ws\": [{\"ws_bytes\": 4096, "
				 "\"gbps\": {\"1\": 0.5, \"2\": 1}}]}]");
		else if (k == 1)
			snprintf(shapes, sizeof(shapes), "[{\"type\": \"f32\", \"rows\": "
				 "128, \"cols\": 64, \"ws\": [{\"ws_bytes\": %.17g, "
				 "\"gbps\": {\"1\": 0.5, \"2\": 1}}, {\"ws_bytes\": %.17g, "
				 "\"gbps\": {\"1\": 1.5, \"2\": 3}}]}]", ws / 2, ws * 2);
		else
			snprintf(shapes, sizeof(shapes), "%s", bad[k - 2]);
		snprintf(base, sizeof(base), PROFILE_FMT, 1.0, 2.0, 1.0, 0.0);
		char *at = strstr(base, cut);
		assert_non_null(at);
		snprintf(text, sizeof(text), "%.*s}}}, \"shapes\": %s},%s",
			 (int)(at - base), base, shapes, at + strlen(cut));
		int rc = sim_profile_parse(&p, text, "s.json", err, sizeof(err));
		if (k >= 2) {
			assert_int_equal(rc, -EINVAL);
			static const char *want[] = { "kernels.shapes[0].type",
				"kernels.shapes[0].ws", "kernels.shapes[0].pages" };
			if (!strstr(err, want[k - 2]))
				fail_msg("bad shape %d: '%s', want '%s'", k, err, want[k - 2]);
			continue;
		}
		if (rc)
			fail_msg("%s", err);
		assert_int_equal(p.n_shapes, 1);
		predict(&in, &p, &r);
		NEAR(r.tok.matvec_s[KT_F32], (k == 0 ? 360.448 + 131.072 : 360.448) * 1e-6);
		NEAR(sim_shape_gbps(&p, KT_F32, 128, 64, false, 1, ws), k == 0 ? 0.5 : 1.0);
		assert_true(sim_shape_gbps(&p, KT_F32, 64, 128, false, 1, ws) == 0);
		/* measured on huge pages: not the mmap tier's */
		assert_true(sim_shape_gbps(&p, KT_F32, 128, 64, true, 1, ws) == 0);
	}
}

/* the bound switches where DRAM outruns the kernel's compute rate */
static void test_bound_switch(void **state)
{
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r;

	(void)state;
	tiny(&in, 4, 2);
	profile(&p, 100, 1, 0); /* DRAM 100 GB/s > L2 kernel 10 GB/s */
	predict(&in, &p, &r);
	assert_true(r.tok.matvec_compute_s[KT_F32] > r.tok.matvec_memory_s[KT_F32]);
	NEAR(r.tok.matvec_compute_s[KT_F32], 36.0448e-6);
	/* flash: the token is max(compute, flash) once prefetch hides it */
	in.tier = MEMTIER_FLASH;
	in.n_predict = 9;
	profile(&p, 1, 100, 0); /* flash far faster: compute-bound */
	predict(&in, &p, &r);
	assert_true(r.median_step_ms < 0.3612 && r.median_step_ms > 0.3609);
	assert_true(r.tok.flash_stall_s < 1e-6);
	profile(&p, 1, 0.1, 0); /* flash 10x slower than the kernels */
	predict(&in, &p, &r);
	/* flash bytes: each tensor's range + 4 KiB: a layer 147456 + 512 +
	 * 9 x 4096 = 184832, the head 256 + 65536 + 2 x 4096 = 73984; all
	 * 443648 B at 0.1 GB/s = 4436.48 us, the disk never idle */
	/* memtier counts the bytes asked for: 2 x 147968 + 65792 */
	assert_int_equal(r.tok.flash_weight_bytes, 361728);
	assert_true(fabs(r.median_step_ms - 4.43648) < 4.43648 * 1e-4);
}

/* prefetch 0: every read waited for; each read of an idle disk also pays
 * the latency (100 us): 3 segments */
static void test_prefetch_stall(void **state)
{
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r0, r2;

	(void)state;
	tiny(&in, 4, 2);
	in.tier = MEMTIER_FLASH;
	in.n_predict = 9;
	profile(&p, 1, 1, 100);
	in.prefetch = 0;
	predict(&in, &p, &r0);
	/* 443.648 us of reads + 3 x 100 us latency + weights 360.448 us +
	 * the embedding row from flash (100 us + 256 B at 1 GB/s) +
	 * attention: the median of 8 steps at positions 1..8 is the mean of
	 * those at 4 and 5, (5 + 6) / 2 x 2 layers x 4 heads x 2 x 16 x 4 B
	 * at 10 GB/s = 0.5632 us */
	NEAR(r0.median_step_ms, (443.648 + 300 + 360.448 + 0.5632 + 100.256) * 1e-3);
	NEAR(r0.tok.flash_stall_s, (443.648 + 300) * 1e-6);
	in.prefetch = 2;
	predict(&in, &p, &r2);
	assert_true(r2.median_step_ms < r0.median_step_ms * 0.75);
	assert_true(r2.tok.flash_stall_s < r0.tok.flash_stall_s / 2);
	assert_true(r2.tok.flash_overlap_s > 0);
}

/* K/V read per token: 2 units' rows x 2 (K, V) x (pos + 1) x layers */
static void test_kv_linear(void **state)
{
	struct sim_input in;
	struct sim_profile p;
	struct sim_result a, b;

	(void)state;
	tiny(&in, 4, 2);
	profile(&p, 1, 1, 0);
	in.n_predict = 1;
	in.n_prompt = 100;
	predict(&in, &p, &a);
	in.n_prompt = 200;
	predict(&in, &p, &b);
	/* one position: 2 KV heads x 16 x 4 B = 128 B, K and V, 2 layers */
	assert_int_equal(a.kv_position_bytes, 512);
	assert_int_equal(a.kv_bytes_per_token_read, 512 * 101);
	assert_int_equal(b.kv_bytes_per_token_read, 512 * 201);
	/* on flash: full blocks of 64 tokens (128 B rows: 64 rows = 2 pages)
	 * read back: at position 200, 3 full blocks x 8 KiB x 2 x 2 layers */
	in.kv_tier = MEMTIER_FLASH;
	in.n_predict = 2;
	predict(&in, &p, &b);
	assert_int_equal(b.kv_block_tokens, 64);
	assert_int_equal(b.tok.kv_flash_read_bytes, 3 * 8192 * 2 * 2);
}

/* barriers: 4 a layer + 1 a token, x the profile's 10 us at 2 units;
 * --nmu off adds one a layer */
static void test_barriers(void **state)
{
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r;

	(void)state;
	tiny(&in, 4, 2);
	profile(&p, 1, 1, 0);
	in.n_units = 2;
	predict(&in, &p, &r);
	assert_int_equal(r.tok.n_barriers, 4 * L + 1);
	NEAR(r.tok.barrier_s, 9 * 10e-6);
	in.nmu_on = false;
	predict(&in, &p, &r);
	assert_int_equal(r.tok.n_barriers, 5 * L + 1);
	NEAR(r.tok.barrier_s, 11 * 10e-6);
	in.n_units = 1;
	predict(&in, &p, &r);
	NEAR(r.tok.barrier_s, 0);
}

/* The per-layer float ops and attention from the probe's "ops": every op
 * 1 ns an element, attention of one head 100 ns at 16 positions and 400
 * at 64 (head_dim 16). One unit, f32 weights (nothing to quantize), per
 * layer: phase 0 rmsnorm 64 + RoPE (4 + 2 heads) x 16 = 96 + K/V copy
 * 2 x 2 x 16 = 64 -> 224 ns; phases 1-3: copy 64 + add 64 + rmsnorm 64
 * + silu 128 + copy 128 + add 64 -> 512 ns; 2 layers and the head's
 * rmsnorm 64: 1536 ns. Attention at position 1 (2 positions, below the
 * first point: 100 x 2 / 16 = 12.5 ns a head) x 4 heads x 2 layers =
 * 100 ns; 2 x 2 x 2 x 16 x 4 = 512 B of K/V fit L2: no memory term. */
static void test_ops(void **state)
{
	static const char *fmt =
		"{\"machine\": {\"cpu\": \"test\", \"kern_isa\": \"ref\"},"
		" \"dram\": {\"read_gbps_by_threads\": {\"1\": 1, \"2\": 2}},"
		" \"kernels\": {\"threads\": 2, \"l2_bytes\": 1048576, \"types\": {"
		"   \"f32\": {\"dram\": {\"gbps\": {\"1\": 1, \"2\": 2}},"
		"            \"l2\": {\"gbps\": {\"1\": 10, \"2\": 20}}%s}}},"
		" \"barrier\": {\"us_by_units\": {\"1\": 0, \"2\": 10}},"
		" \"sampler\": {\"ns_per_vocab\": 0, \"greedy_ns_per_vocab\": 0},"
		" \"ops\": {\"ns_per_elem\": {\"rmsnorm\": 1, \"rope\": 1, \"silu_mul\": 1,"
		"   \"add\": 1, \"copy\": 1, \"quant_q8_0\": 1, \"quant_q8_K\": 1},"
		"   \"attention\": {\"positions\": [16, 64], \"ns_by_head_dim\": "
		"{\"16\": [100, 400]}}}}";
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r;
	char text[4096], err[256];

	(void)state;
	snprintf(text, sizeof(text), fmt, "");
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), 0);
	/* attention: linear between points, the last segment's line beyond,
	 * scaled by head_dim from the nearest measured one */
	NEAR(sim_attn_ns(&p, 16, 40), 100 + 300.0 / 48 * 24);
	NEAR(sim_attn_ns(&p, 16, 128), 400 + 300.0 / 48 * 64);
	NEAR(sim_attn_ns(&p, 32, 64), 800);
	NEAR(sim_attn_ns(&p, 16, 8), 50);
	tiny(&in, 4, 2);
	predict(&in, &p, &r);
	NEAR(r.tok.ops_s, 1536e-9);
	NEAR(r.tok.attention_s, 100e-9);
	NEAR(r.median_step_ms, (360.448 + 0.1 + 1.536 + 0.256) * 1e-3);
	/* prefill of 2 tokens runs each token's float ops (1536 ns less the
	 * head's 64: 1472 ns a token, both layers) and attention per token
	 * (1 and 2 positions: 100 / 16 x 1 + 100 / 16 x 2 = 18.75 ns a head,
	 * x 4 heads x 2 layers = 150 ns) beside the f32 products: 36864 MACs
	 * a layer and token x 2 x 2 at 10 GB/s / 4 B = 58.9824 us */
	in.n_prompt = 2;
	predict(&in, &p, &r);
	NEAR(r.prefill_compute_s, 58.9824e-6 + 150e-9 + 2 * 1472e-9);
	in.n_prompt = 1;

	/* the dram class by working set: 4 GB/s (1 thread) at 1 MB, 2 at
	 * 4 MB, linear in log2: 3 at 2 MB; flat outside */
	snprintf(text, sizeof(text), fmt,
		 ", \"ws\": [{\"ws_bytes\": 1000000, \"gbps\": {\"1\": 4, \"2\": 8}},"
		 " {\"ws_bytes\": 4000000, \"gbps\": {\"1\": 2, \"2\": 4}}]");
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), 0);
	NEAR(sim_kern_ws_gbps(&p, KT_F32, 1, 2e6), 3);
	NEAR(sim_kern_ws_gbps(&p, KT_F32, 2, 2e6), 6);
	NEAR(sim_kern_ws_gbps(&p, KT_F32, 1, 1e5), 4);
	NEAR(sim_kern_ws_gbps(&p, KT_F32, 1, 1e9), 2);
	/* the tiny model's working set: 2 x 147968 B of layers (norms too)
	 * + 65792 B of head segment and 512 B of K/V a position at the
	 * median position 1 (n_prompt 1, one decode token): 362240 B < 1 MB,
	 * so 4 GB/s: weights 360448 B in 90.112 us */
	predict(&in, &p, &r);
	NEAR(r.tok.ws_bytes, 2 * 147968 + 65792 + 512 * 1);
	NEAR(r.tok.matvec_s[KT_F32], 360448 / 4e9);
	/* the mmap tier: the series on 4 KiB pages (2 GB/s at 1 MB, 1 at 4
	 * MB: 1.5 at 2 MB); the tiny model's 362240 B working set is below
	 * the first point, so 2 GB/s: 180.224 us. The dram tier keeps ws. */
	snprintf(text, sizeof(text), fmt,
		 ", \"ws\": [{\"ws_bytes\": 1000000, \"gbps\": {\"1\": 4, \"2\": 8}},"
		 " {\"ws_bytes\": 4000000, \"gbps\": {\"1\": 2, \"2\": 4}}],"
		 " \"small_pages\": [{\"ws_bytes\": 1000000, \"gbps\": {\"1\": 2, \"2\": 4}},"
		 " {\"ws_bytes\": 4000000, \"gbps\": {\"1\": 1, \"2\": 2}}]");
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), 0);
	NEAR(sim_kern_mmap_gbps(&p, KT_F32, 1, 2e6), 1.5);
	NEAR(sim_kern_mmap_gbps(&p, KT_F32, 2, 2e6), 3);
	NEAR(sim_kern_ws_gbps(&p, KT_F32, 1, 2e6), 3);
	in.tier = MEMTIER_MMAP;
	predict(&in, &p, &r);
	NEAR(r.tok.matvec_s[KT_F32], 360448 / 2e9);
	in.tier = MEMTIER_DRAM;
	predict(&in, &p, &r);
	NEAR(r.tok.matvec_s[KT_F32], 360448 / 4e9);
	/* a bad point is refused, naming it */
	snprintf(text, sizeof(text), fmt,
		 ", \"ws\": [{\"ws_bytes\": 4000000, \"gbps\": {\"1\": 4, \"2\": 8}},"
		 " {\"ws_bytes\": 1000000, \"gbps\": {\"1\": 2, \"2\": 4}}]");
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "t.json: kernels.types.f32.ws[1].ws_bytes: not ascending");
}

/*
 * Prefill of q8_0 matrices at the probe's batched rate from memory: the
 * tiny model's layer matrices in q8_0 (34 B a block of 32), 32 prompt
 * tokens in one batch, one unit, a profile without "ops". MACs: (4096 +
 * 2048 + 2048 + 4096 + 3 x 8192) = 36864 a layer and token, x 2 layers
 * x 32 = 2359296. matmul.types.q8_0.mem: 0.5 GMAC/s at 16 tokens, 2 at
 * 64 (1 thread), so 1.25 at 32 (half way in log2): 1887.4368 us.
 * Attention: 4 heads x 16 x 2 x (1 + ... + 32 = 528) x 2 layers = 135168
 * MACs at the f32 L2 rate 10 GB/s / 4 B: 54.0672 us. Then the embedding
 * rows 32 x 256 B at 1 GB/s = 8.192 us and the head once (the last
 * position): 65536 B at 1 GB/s = 65.536 us.
 */
static void test_prefill_mm(void **state)
{
	static const char *fmt =
		"{\"machine\": {\"cpu\": \"test\", \"kern_isa\": \"ref\"},"
		" \"dram\": {\"read_gbps_by_threads\": {\"1\": 1, \"2\": 2}},"
		" \"kernels\": {\"threads\": 2, \"l2_bytes\": 1048576, \"types\": {"
		"   \"f32\": {\"dram\": {\"gbps\": {\"1\": 1, \"2\": 2}},"
		"            \"l2\": {\"gbps\": {\"1\": 10, \"2\": 20}}},"
		"   \"q8_0\": {\"dram\": {\"gbps\": {\"1\": 1, \"2\": 2}},"
		"            \"l2\": {\"gbps\": {\"1\": 10, \"2\": 20}}}}},"
		" \"matmul\": {\"types\": {\"q8_0\": {\"gmacs\": {\"1\": 1, \"2\": 2}%s}}},"
		" \"barrier\": {\"us_by_units\": {\"1\": 0, \"2\": 10}},"
		" \"sampler\": {\"ns_per_vocab\": 0, \"greedy_ns_per_vocab\": 0}}";
	static const char *mem =
		", \"mem\": {\"tokens\": [16, 64], \"gmacs\": {\"1\": [0.5, 2], \"2\": [1, 4]}}";
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r;
	char text[4096], err[256];

	(void)state;
	snprintf(text, sizeof(text), fmt, mem);
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), 0);
	/* linear in log2 of tokens between the points, flat outside */
	NEAR(sim_mm_gmacs(&p, KT_Q8_0, 1, 32, false), 1.25);
	NEAR(sim_mm_gmacs(&p, KT_Q8_0, 2, 32, false), 2.5);
	NEAR(sim_mm_gmacs(&p, KT_Q8_0, 1, 8, false), 0.5);
	NEAR(sim_mm_gmacs(&p, KT_Q8_0, 1, 128, false), 2);
	tiny(&in, 4, 2);
	for (int l = 0; l < L; l++)
		for (int i = 0; i < LT_COUNT; i++) {
			struct sim_tensor *t = &T[l * LT_COUNT + i];
			if (i == LT_ATTN_NORM || i == LT_FFN_NORM)
				continue;
			t->type = KT_Q8_0;
			t->bytes = (uint64_t)(t->rows * t->cols / 32 * 34);
		}
	in.n_prompt = 32;
	predict(&in, &p, &r);
	NEAR(r.prefill_compute_s, (1887.4368 + 54.0672) * 1e-6);
	NEAR(r.prefill_s, (1887.4368 + 54.0672 + 8.192 + 65.536) * 1e-6);
	NEAR(r.prefill_tok_per_s, 32 / ((1887.4368 + 54.0672 + 8.192 + 65.536) * 1e-6));
	/* two batches of 16: the head only after the second; batch 2 from
	 * position 16: 4 x 16 x 2 x (17 + ... + 32 = 392) x 2 = 100352 MACs
	 * of attention, batch 1 (136): 34816, at 2.5 GMAC/s; products at
	 * 0.5 GMAC/s */
	in.n_batch = 16;
	predict(&in, &p, &r);
	NEAR(r.prefill_s, (2359296 / 0.5e9 + (100352 + 34816) / 2.5e9) +
			  (8.192 + 65.536) * 1e-6);
	in.n_batch = 0;
	/* the mmap tier: the first batch maps every weight page, at the
	 * probe's 0.5 ns a byte: the layer matrices' 2 x 39168 B (q8_0:
	 * 34 B a block of 32) = 39.168 us; the profile has no small-page
	 * matmul series, so the products keep the mem series */
	snprintf(text, sizeof(text), fmt, mem);
	text[strlen(text) - 1] = '\0';
	strcat(text, ", \"page_cache\": {\"fault_ns_per_byte\": 0.5}}");
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), 0);
	in.tier = MEMTIER_MMAP;
	predict(&in, &p, &r);
	NEAR(r.prefill_compute_s, (1887.4368 + 54.0672 + 39.168) * 1e-6);
	/* ... and the series on 4 KiB pages where it has one: 0.25 / 1
	 * GMAC/s at 16 / 64 tokens, 0.625 at 32 */
	snprintf(text, sizeof(text), fmt,
		 ", \"mem\": {\"tokens\": [16, 64], \"gmacs\": {\"1\": [0.5, 2], \"2\": [1, 4]},"
		 " \"small_pages_gmacs\": {\"1\": [0.25, 1], \"2\": [0.5, 2]}}");
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), 0);
	NEAR(sim_mm_gmacs(&p, KT_Q8_0, 1, 32, true), 0.625);
	NEAR(sim_mm_gmacs(&p, KT_Q8_0, 1, 32, false), 1.25);
	predict(&in, &p, &r);
	NEAR(r.prefill_compute_s, 2359296 / 0.625e9 + 54.0672e-6);
	in.tier = MEMTIER_DRAM;
	/* without "mem": the in-cache figure, 1 GMAC/s at any batch */
	snprintf(text, sizeof(text), fmt, "");
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), 0);
	NEAR(sim_mm_gmacs(&p, KT_Q8_0, 1, 32, false), 1);
	predict(&in, &p, &r);
	NEAR(r.prefill_compute_s, 2359296 / 1e9 + 54.0672e-6);
	/* bad series are refused, naming the field */
	snprintf(text, sizeof(text), fmt,
		 ", \"mem\": {\"tokens\": [64, 16], \"gmacs\": {\"1\": [1, 2], \"2\": [1, 4]}}");
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "t.json: matmul.types.q8_0.mem.tokens[1]: want ascending "
			    "batch sizes >= 1");
	snprintf(text, sizeof(text), fmt,
		 ", \"mem\": {\"tokens\": [16, 64], \"gmacs\": {\"1\": [1], \"2\": [1, 4]}}");
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "t.json: matmul.types.q8_0.mem.gmacs.1: want an array of 2 "
			    "numbers");
	snprintf(text, sizeof(text), fmt,
		 ", \"mem\": {\"tokens\": [16, 64], \"gmacs\": {\"1\": [1, 0], \"2\": [1, 4]}}");
	assert_int_equal(sim_profile_parse(&p, text, "t.json", err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "t.json: matmul.types.q8_0.mem.gmacs.1[1]: want a number > 0");
}

/* --dram-budget pins what memtier_budget_fit pins, and is not read */
static void test_budget(void **state)
{
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r;
	struct memtier_tensor mt[NT];
	uint32_t ids[NT];
	struct memtier_segment segs[L + 1];
	uint64_t fit_bytes;

	(void)state;
	tiny(&in, 4, 2);
	profile(&p, 1, 1, 0);
	for (int i = 0; i < NT; i++) {
		mt[i] = (struct memtier_tensor){ .n_bytes = T[i].bytes };
		ids[i] = (uint32_t)i;
	}
	for (int l = 0; l < L; l++)
		segs[l] = (struct memtier_segment){ LT_COUNT, &ids[l * LT_COUNT] };
	segs[L] = (struct memtier_segment){ 2, &ids[L * LT_COUNT + GT_OUTPUT_NORM] };
	in.tier = MEMTIER_FLASH;
	for (uint64_t budget = 0; budget < 400000; budget += 50000) {
		in.dram_budget = budget;
		predict(&in, &p, &r);
		uint32_t n = memtier_budget_fit(mt, segs, L + 1, budget, &fit_bytes);
		assert_int_equal(r.n_pinned, n);
		assert_int_equal(r.pinned_bytes, fit_bytes);
		/* read from DRAM: the pinned tensors' bytes (before rounding) */
		uint64_t pinned = 0;
		for (uint32_t sg = 0; sg < n; sg++)
			for (uint32_t k = 0; k < segs[sg].n; k++)
				pinned += mt[segs[sg].ids[k]].n_bytes;
		assert_int_equal(r.tier_bytes_per_token[MEMTIER_DRAM], pinned);
	}
	in.dram_budget = 147968; /* one layer exactly (norms rounded to 64) */
	predict(&in, &p, &r);
	assert_int_equal(r.n_pinned, 1);
	assert_int_equal(r.tok.flash_weight_bytes, 147968 + 65792);
}

/* 9 query heads over 3 KV heads on 2 units (SmolLM2's split): unit 0
 * has query heads 0-4 (KV 0, 1), unit 1 5-8 (KV 1, 2): KV head 1 kept
 * twice - its Wk/Wv rows read twice, its K/V cached twice */
static void test_replicated_kv(void **state)
{
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r;
	struct plan pl;
	struct plan_config pc = { .n_units = 2 };
	char err[128];

	(void)state;
	tiny(&in, 9, 3);
	profile(&p, 1, 1, 0);
	in.n_units = 2;
	predict(&in, &p, &r);
	assert_int_equal(plan_init(&pl, &in.hp, &pc, err, sizeof(err)), 0);
	assert_int_equal(r.kv_replicated, pl.kv_replicated);
	assert_int_equal(r.kv_replicated, 1);
	assert_int_equal(r.unit[0].kv_heads + r.unit[1].kv_heads, 4);
	/* K and V of a position: 4 heads x 16 x 4 B x 2 x 2 layers */
	assert_int_equal(r.kv_position_bytes, 4 * 16 * 4 * 2 * L);
	/* Wk + Wv rows read per token: 4 heads x 16 rows x 144 x 4 B x 2 x L
	 * beside Wq 144 rows: all f32 weights = the file's + 1 head's rows */
	uint64_t file = 0;
	for (int l = 0; l < L; l++)
		for (int i = 0; i < LT_COUNT; i++)
			if (i != LT_ATTN_NORM && i != LT_FFN_NORM)
				file += T[l * LT_COUNT + i].bytes;
	file += T[L * LT_COUNT + GT_OUTPUT].bytes + 144 * 4; /* + a row */
	assert_int_equal(r.weight_bytes_per_token, file + 16 * 144 * 4 * 2 * L);
}

/* the profile with its "fabric" member replaced by fab (JSON) */
static void profile_fab(struct sim_profile *p, const char *fab)
{
	char text[4096], out[4096], err[256];
	const char *from = "\"fabric\": {\"latency_us\": 1, \"gbps\": 1}";

	snprintf(text, sizeof(text), PROFILE_FMT, 1.0, 2.0, 1.0, 0.0);
	char *at = strstr(text, from);
	assert_non_null(at);
	snprintf(out, sizeof(out), "%.*s\"fabric\": %s%s", (int)(at - text), text,
		 fab, at + strlen(from));
	if (sim_profile_parse(p, out, "f.json", err, sizeof(err)))
		fail_msg("%s", err);
}

/*
 * chips: 2, rows mode, the profile's two numbers (1 us a hop, links of 1
 * GB/s): every collective is one hop, 1 us + the most bytes one chip
 * publishes / 1 GB/s. 2 KV heads: a head, 2 query heads, 32 of 64 n_embd
 * rows, 64 of 128 n_ff rows, 128 of 256 vocabulary rows each. A token:
 *   the command (88 B) and the embedding row (256 B, one sender): 2 hops
 *   per layer: attention 128 B, x 128 B, hb 256 B, x 128 B a chip: 4 hops
 *   the logits to chip 0: 512 B a chip
 * = 3 + 4 L = 11 hops, 11 us + (88 + 256 + 2 x 640 + 512) ns.
 */
static void test_chips(void **state)
{
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r;

	(void)state;
	tiny(&in, 4, 2);
	profile(&p, 1, 1, 0);
	in.chips = 2;
	predict(&in, &p, &r);
	const double fab = 11e-6 + 2136e-9;
	NEAR(r.tok.fabric_s, fab);
	assert_int_equal(r.tok.n_collectives, 4 * L + 3);
	/* chip 0 copies in its part and out the others': every whole row */
	NEAR(r.tok.fabric_bytes, 88 + 256 + L * (256 + 256 + 512 + 256) + 1024);
	/* half the rows each chip */
	NEAR(r.tok.matvec_s[KT_F32], 180.224e-6);
	/* the step: weights, attention of 2 heads (1024 B at 10 GB/s), the
	 * embedding row, the fabric */
	NEAR(r.median_step_ms, (180.224 + 0.1024 + 0.256) * 1e-3 + fab * 1e3);
	/* emulated: 9 us more a collective, links of 2 GB/s besides */
	in.fabric_latency_us = 9;
	in.fabric_gbps = 2;
	predict(&in, &p, &r);
	NEAR(r.tok.fabric_s, fab + 11 * 9e-6 + 2136e-9 / 2);
	/* allreduce: 2 a layer of 64 floats, chip 0 reads both slots: 1 us
	 * + 256 B a hop; the command, the embedding, the logits as above */
	in.tp = SIM_TP_ALLREDUCE;
	in.fabric_latency_us = 0;
	in.fabric_gbps = 0;
	predict(&in, &p, &r);
	assert_int_equal(r.tok.n_collectives, 2 * L + 3);
	NEAR(r.tok.fabric_s, 3e-6 + (88 + 256 + 512) * 1e-9 + L * 2 * (1e-6 + 256e-9));
	NEAR(r.tok.fabric_bytes, 88 + 256 + L * 2 * 512 + 1024);
	/* one chip: no fabric */
	in.chips = 1;
	predict(&in, &p, &r);
	assert_int_equal(r.tok.n_collectives, 0);
	NEAR(r.tok.fabric_s, 0);
}

/* the probe's curves (median us by bytes, taken at 2 chips), linear
 * between points, flat below, the last slope beyond */
static const char *CURVES =
	"{\"latency_us\": 1, \"gbps\": 1,"
	" \"allgather\": [{\"bytes\": 256, \"us\": 2}, {\"bytes\": 1024, \"us\": 4}],"
	" \"allreduce\": [{\"bytes\": 256, \"us\": 5}, {\"bytes\": 1024, \"us\": 8}],"
	" \"bcast\": [{\"bytes\": 64, \"us\": 1}, {\"bytes\": 1024, \"us\": 3}]}";

static void test_fabric_curve(void **state)
{
	struct sim_input in;
	struct sim_profile p;
	struct sim_result r;

	(void)state;
	profile_fab(&p, CURVES);
	NEAR(sim_fabric_us(&p, FABRIC_ALLGATHER, 640, 1e9), 3);
	NEAR(sim_fabric_us(&p, FABRIC_ALLGATHER, 100, 0), 2);
	NEAR(sim_fabric_us(&p, FABRIC_ALLGATHER, 2048, 0), 4 + 1024 * 2.0 / 768);
	NEAR(sim_fabric_us(&p, FABRIC_BCAST, 88, 0), 1.05);
	/*
	 * 9 query heads over 3 KV heads on 2 chips: chip 0 KV head 0 (query
	 * heads 0-2), chip 1 KV heads 1-2 (3-8), so the slices differ; n_embd
	 * 144 splits 80 / 64 on 16-row boundaries, n_ff 64 / 64, vocab 128 /
	 * 128. Each collective reads its curve at the 2-chip message that
	 * copies as many bytes, 2 x the largest part:
	 *   command 88 B, bcast: 1.05 us; embedding 576 B, bcast: 1 + 2 x
	 *   512 / 960 us; attention 2 x 384 B: 2 + 2 x 512 / 768; x 2 x 320:
	 *   3; hb 2 x 256: 2 + 2 x 256 / 768; x 3; logits 2 x 512: 4
	 */
	tiny(&in, 9, 3);
	in.chips = 2;
	predict(&in, &p, &r);
	const double pre = 1.05 + 1 + 1024.0 / 960, layer = 12.0;
	NEAR(r.tok.fabric_s, (pre + L * layer + 4) * 1e-6);
	assert_int_equal(r.tok.n_collectives, 4 * L + 3);
	/* the slowest chip sets every phase's pace: Wq 96 rows (chip 1), Wk
	 * and Wv 32 rows each (chip 1), Wo 80 rows (chip 0) of 576 B; gate
	 * and up 64 rows each; down 80 rows of 512 B (chip 0); the head 128
	 * rows of 576 B: 2 x 252928 + 73728 B at 1 GB/s */
	NEAR(r.tok.matvec_s[KT_F32], 579.584e-6);
	/* every chip's bytes: the file's matrices once, an embedding row */
	assert_int_equal(r.weight_bytes_per_token, 2 * 442368 + 147456 + 576);
	/* over both chips' units: chip 0 reads 206848 B a layer, chip 1
	 * 235520, each beside attention of 3 or 6 heads (256 B a head at 10
	 * GB/s) */
	NEAR(r.tok.imbalance, (471.04 + 0.3072) / ((413.696 + 0.1536 + 471.04 +
						     0.3072) / 2));
	/* allreduce of 576 B: 5 + 3 x 320 / 768 us, twice a layer */
	in.tp = SIM_TP_ALLREDUCE;
	predict(&in, &p, &r);
	NEAR(r.tok.fabric_s, (pre + L * 2 * 6.25 + 4) * 1e-6);
	assert_int_equal(r.tok.n_collectives, 2 * L + 3);
}

/* the flash grid: log2 interpolation, clamped at the edges */
static void test_grid(void **state)
{
	struct sim_profile p;
	char err[256];
	const char *txt =
		"{\"machine\": {}, \"dram\": {\"read_gbps_by_threads\": {\"1\": 1}},"
		" \"kernels\": {\"threads\": 1, \"l2_bytes\": 1, \"types\": {\"f32\":"
		" {\"dram\": {\"gbps\": {\"1\": 1}}, \"l2\": {\"gbps\": {\"1\": 1}}}}},"
		" \"barrier\": {\"us_by_units\": {\"1\": 0}},"
		" \"sampler\": {\"ns_per_vocab\": 1, \"greedy_ns_per_vocab\": 1},"
		" \"flash\": {\"rand4k_p50_us\": 50, \"read_gbps\": {"
		"  \"65536\": {\"1\": 1, \"4\": 2}, \"262144\": {\"1\": 3, \"4\": 4}}}}";

	(void)state;
	assert_int_equal(sim_profile_parse(&p, txt, "g.json", err, sizeof(err)), 0);
	NEAR(sim_flash_gbps(&p, 65536, 1), 1);
	NEAR(sim_flash_gbps(&p, 262144, 4), 4);
	NEAR(sim_flash_gbps(&p, 131072, 1), 2);   /* halfway in log2 */
	NEAR(sim_flash_gbps(&p, 65536, 2), 1.5);
	NEAR(sim_flash_gbps(&p, 1 << 30, 64), 4); /* clamped */
	NEAR(sim_flash_gbps(&p, 512, 1), 1);
	/* the sustained rate caps the grid: 2.5 GB/s */
	char txt2[1024];
	snprintf(txt2, sizeof(txt2), "%.*s\"sustained_read_gbps\": 2.5, %s",
		 (int)(strstr(txt, "\"rand4k") - txt), txt, strstr(txt, "\"rand4k"));
	assert_int_equal(sim_profile_parse(&p, txt2, "g.json", err, sizeof(err)), 0);
	NEAR(sim_flash_gbps(&p, 262144, 4), 2.5);
	NEAR(sim_flash_gbps(&p, 131072, 1), 2);
}

/* a profile with field f replaced by v must be refused naming want */
static void refused(const char *from, const char *to, const char *want)
{
	char text[2048], bad[2048], err[256] = "";
	struct sim_profile p;

	snprintf(text, sizeof(text), PROFILE_FMT, 1.0, 2.0, 1.0, 0.0);
	char *at = strstr(text, from);
	assert_non_null(at);
	snprintf(bad, sizeof(bad), "%.*s%s%s", (int)(at - text), text, to,
		 at + strlen(from));
	assert_int_equal(sim_profile_parse(&p, bad, "bad.json", err, sizeof(err)),
			 -EINVAL);
	if (!strstr(err, want))
		fail_msg("got '%s', want '%s'", err, want);
}

static void test_bad_profiles(void **state)
{
	struct sim_profile p;
	char err[256];

	(void)state;
	refused("\"dram\": {\"read", "\"dram\": null, \"x\": {\"read",
		"bad.json: dram: missing");
	refused("\"gbps\": {\"1\": 1, \"2\": 2}", "\"gbps\": {\"2\": 2}",
		"bad.json: kernels.types.f32.dram.gbps.1: missing");
	refused("\"1\": 10, \"2\": 20", "\"1\": 10, \"2\": \"fast\"",
		"bad.json: kernels.types.f32.l2.gbps.2: not a number");
	refused("\"1\": 0, \"2\": 10", "\"1\": 0, \"2\": -1",
		"bad.json: barrier.us_by_units.2: -1 is out of range");
	refused("\"ns_per_vocab\": 0,", "",
		"bad.json: sampler.ns_per_vocab: missing");
	refused("\"f32\":", "\"q4_0\":",
		"bad.json: kernels.types.f32: missing");
	refused("\"4096\": {\"1\"", "\"big\": {\"1\"",
		"bad.json: flash.read_gbps.big: not a block size");
	refused("\"l2_bytes\": 1048576", "\"l2_bytes\": 0",
		"bad.json: kernels.l2_bytes: 0 is out of range");
	refused("{\"machine\"", "[{\"machine\"", "bad.json: line 1");
	refused("\"gbps\": 1}}", "\"gbps\": 1, \"bcast\": [{\"bytes\": 64, \"us\": 1},"
		" {\"bytes\": 64, \"us\": 2}]}}", "bad.json: fabric.bcast[1].bytes: not ascending");
	refused("\"gbps\": 1}}", "\"gbps\": 1, \"allreduce\": [{\"bytes\": 64}]}}",
		"bad.json: fabric.allreduce[0].us: missing");
	refused("\"gbps\": 1}}", "\"gbps\": 1, \"allgather\": 3}}",
		"bad.json: fabric.allgather: not an array");
	assert_int_equal(sim_profile_load(&p, "/nonexistent/p.json", err,
					  sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/p.json: "));

	/* what the profile cannot answer for a placement */
	struct sim_input in;
	struct sim_result r;
	const char *nof = "{\"machine\": {}, \"dram\": {\"read_gbps_by_threads\":"
		" {\"1\": 1}}, \"kernels\": {\"threads\": 1, \"l2_bytes\": 1,"
		" \"types\": {\"f32\": {\"dram\": {\"gbps\": {\"1\": 1}}, \"l2\":"
		" {\"gbps\": {\"1\": 1}}}}}, \"barrier\": {\"us_by_units\": {\"1\": 0}},"
		" \"sampler\": {\"ns_per_vocab\": 1, \"greedy_ns_per_vocab\": 1}}";
	assert_int_equal(sim_profile_parse(&p, nof, "nof.json", err, sizeof(err)), 0);
	tiny(&in, 4, 2);
	in.tier = MEMTIER_FLASH;
	assert_int_equal(sim_predict(&in, &p, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "nof.json: flash: missing"));
	in.tier = MEMTIER_DRAM;
	in.chips = 2;
	assert_int_equal(sim_predict(&in, &p, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "has no fabric"));
	profile_fab(&p, "{\"skipped\": \"one CPU\"}"); /* probe could not */
	assert_int_equal(sim_predict(&in, &p, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "has no fabric"));
	assert_int_equal(sim_profile_parse(&p, nof, "nof.json", err, sizeof(err)), 0);
	in.chips = 3; /* more chips than KV heads: the plan says no */
	in.fabric_gbps = 1;
	assert_int_equal(sim_predict(&in, &p, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "KV heads"));
	in.fabric_gbps = 0;
	in.chips = 1;
	T[0 * LT_COUNT + LT_WQ].type = KT_Q4_0;
	assert_int_equal(sim_predict(&in, &p, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "kernels.types.q4_0: missing"));
	T[0 * LT_COUNT + LT_WQ].type = KT_F32;
	in.n_units = 5; /* more units than query heads: the plan says no */
	assert_int_equal(sim_predict(&in, &p, &r, err, sizeof(err)), -EINVAL);
	in.n_units = 1;
	in.n_ctx = 10;
	in.n_prompt = 10;
	in.n_predict = 5;
	assert_int_equal(sim_predict(&in, &p, &r, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "do not fit the context of 10"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_layer),
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_bound_switch),
		cmocka_unit_test(test_prefetch_stall),
		cmocka_unit_test(test_kv_linear),
		cmocka_unit_test(test_barriers),
		cmocka_unit_test(test_ops),
		cmocka_unit_test(test_prefill_mm),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_replicated_kv),
		cmocka_unit_test(test_chips),
		cmocka_unit_test(test_fabric_curve),
		cmocka_unit_test(test_grid),
		cmocka_unit_test(test_bad_profiles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
