/*
 * sim.h - the analytical model of a Strata decode run: from a model's
 * tensors, a placement (tier, --dram-budget, --prefetch, KV tier, units,
 * chips) and a hardware profile written by bench/probe, the time of every
 * part of a prefill and of each decode token. bench/simulate is its
 * command line; bench/validate checks it against real runs.
 *
 * THE MODEL (every rate and latency below is a profile figure; nothing is
 * fitted to runs). n = units (-t), p = the token's position, L = layers.
 *
 * Who owns what: engine/plan.h splits every matrix by rows over the units
 * (query heads, KV heads, n_embd / n_ff / vocab rows); a KV head whose
 * query group straddles two units is kept by both, so its Wk/Wv rows are
 * read twice and its K/V cached twice. --nmu off: the plan's whole-group
 * KV split for attention, one more barrier per layer, one memtier (one
 * flash ring) for all units.
 *
 * Compute of unit u (decode, one token): for each weight matrix,
 *   t = bytes_u / (G_mem(type, n, W) / n)
 * where G_mem is the probe's matvec throughput with the weights streamed
 * from memory (kernels.types.T.ws: the dram class with its copies
 * spanning 16 MiB .. the arena), for n threads together (interpolated
 * between 1 and all CPUs; flat beyond), at the token's working set W =
 * the weights it reads from DRAM (on flash: the pinned segments and the
 * ring's --prefetch + 2 buffers) + the K/V of the median position, every
 * chip together, linear in log2 W between the probe's points. On the
 * mmap tier the weights are the page cache's, mapped in 4 KiB pages: G
 * is then the same series measured on 4 KiB pages (kernels.types.T.
 * small_pages; TLB misses and prefetches stopped at page boundaries cost
 * TinyLlama ~20% here), when the profile has it. A model
 * that fits the last-level cache (SmolLM2, 97 MB) so gets the cached
 * rate the probe measured at that size, a larger one the DRAM class.
 * That figure is already max(compute, bytes / bandwidth) as this CPU does
 * it; the breakdown also shows both sides of the roofline, bytes / G_l2
 * (the kernel on cached data: compute) and bytes / DRAM read GB/s at n
 * threads, and names the bound. Attention of the unit's query heads over
 * p + 1 positions: per KV head the unit holds, the probe's time of one
 * ops_attn_head call with K/V from memory (ops.attention.cold_ns_by_
 * head_dim, linear in positions, scaled by head_dim from the nearest
 * measured one), per other query head of its group the time with K/V in
 * cache (ns_by_head_dim). The float ops of every phase, at the probe's
 * ns per element (ops.ns_per_elem), as engine/layer.c runs them per
 * unit: phase 0 rmsnorm (n_embd) + quantize (n_embd, the weight type's
 * activation format) + RoPE ((q + kv heads) head_dim) + K/V copy; Wo:
 * copy and quantize n_embd, add own rows; gate/up: rmsnorm, quantize,
 * SiLU x up of own rows; down: copy and quantize n_ff, add own rows;
 * the head: rmsnorm and quantize n_embd. A profile without "ops" (what-if
 * profiles): no float ops, attention bytes at the f32 kernel rate.
 *
 * A layer is four phases, each ended by a barrier: {Wq, Wk, Wv, RoPE, KV
 * append, attention}, {Wo}, {gate, up}, {down}. A phase takes the slowest
 * unit's time (imbalance), plus barrier.us_by_units[n]. The token adds
 * the embedding (one row; a 4 KiB read at rand4k_p50_us from flash) and
 * a barrier and the output head (vocab rows, a phase). The sampler
 * (n_vocab x sampler ns per entry, greedy or not) is shown but not in the
 * step: decode's tok/s and steps time engine_decode, not the sampling
 * between calls.
 *
 * Flash (--tier flash): segments are the L layers and the head. A unit's
 * share of a tensor is read as its range widened to 4 KiB (+4 KiB on
 * average) in requests of at most 1 MiB. The disk is one FIFO server
 * whose rate is the probe's burst grid read_gbps[request size][queue
 * depth] (interpolated in log2 of both; at most the probe's sustained
 * read rate, which a token-after-token stream gets), queue depth = the rings'
 * requests of max(1, --prefetch) segments (64 at most per ring); a read
 * issued to an idle disk waits rand4k_p50_us first. The engine's schedule
 * is replayed exactly: at the start of layer l it acquires segment l + 1
 * (waiting for it) and queues the next --prefetch streamed segments; the
 * embedding acquires segment 0. So
 *   issue(s) = acquire time of the segment --prefetch before it (or its
 *              own acquire), done(s) = max(issue, disk free) [+ latency]
 *              + bytes(s) / rate,
 *   start of layer l = max(end of layer l - 1, done(l + 1)).
 * With --prefetch 0 every read is waited for (no overlap); with enough
 * prefetch the token is max(compute, flash) plus the pipeline's fill.
 * Segments pinned by --dram-budget (memtier_budget_fit, the engine's own
 * rule: whole segments in read order) are not read and their compute
 * hides the reads queued behind them. The replay runs one warm-up token,
 * then every decode token.
 *
 * KV cache on flash (--kv-tier flash): per layer and unit, the full
 * blocks of B tokens (B rounded up to whole 4 KiB pages) are read back
 * every token, K and V, queued --prefetch layers ahead in the same disk
 * FIFO (request = one block), and waited for before the layer's compute;
 * the blocks written (2 L blocks every B tokens) cost their bytes at
 * kv_write.write_gbps on the disk, spread over the B tokens.
 *
 * Prefill (batches of -b tokens, default 128): every matrix is
 *   rows_u x cols x nb / (G_mm(type, n, nb) / n)
 * with G_mm the probe's batched kernel with the weights streamed from
 * memory (matmul.types.T.mem: a 5632 x 2048 matrix, copies rotating
 * through 256 MiB, at 16 .. 128 tokens; linear in log2 nb between them;
 * a profile without it: the in-cache figure at 64 tokens, gmacs; float
 * matrices: the f32 L2 kernel rate). Per token of the batch, the float
 * ops of a decode token (engine/layer.c runs them token by token:
 * norms, quantizing, RoPE, K/V copies, SiLU, adds, at ops.ns_per_elem),
 * and attention: token j attends p0 + j + 1 positions, each query head
 * at the probe's in-cache time (ops.attention.ns_by_head_dim; the
 * batch's K/V were just written). Four barriers a layer, weights
 * streamed once per batch through the same flash replay, the head only
 * in the last batch (the last position's logits). On the mmap tier the
 * products take the series measured on 4 KiB pages (mem.small_pages_
 * gmacs), and the first batch maps every weight page: + the unit's bytes
 * x page_cache.fault_ns_per_byte (the probe maps a cached file afresh).
 *
 * Chips (--chips N, engine/fabric.h): engine/plan.h splits the model over
 * the chips first (whole KV heads and their query heads; n_embd, n_ff and
 * vocab rows on 16-row boundaries, so slices can differ: SmolLM2's 3 KV
 * heads on 2 chips give 6 and 3 query heads), then each chip's slice over
 * its units as above. Every phase ends in a collective, so a phase takes
 * the slowest unit of any chip. --tp allreduce: Wo and ffn_down split by
 * input columns (the chip's heads, its n_ff slice), all n_embd rows.
 * Per decode token, in the engine's order (chip 0's view): a bcast of the
 * token's command (88 bytes), an all-gather of the embedding row (n_embd
 * floats, all from the chip that owns the token's vocabulary row), per
 * layer four all-gathers (--tp rows: the attention output by query heads,
 * x after Wo by n_embd slice, hb by n_ff slice, x after ffn_down) or two
 * all-reduces of n_embd floats (--tp allreduce), and the gather of the
 * logits to chip 0: 4 L + 3 (2 L + 3) collectives. The fabric is a full
 * mesh, so each is one hop:
 *   t = measured(op, x) + --fabric-latency-us + link / --fabric-gbps
 * link = the most bytes one chip publishes (the largest part; the whole
 * vector for an all-reduce or a bcast). measured(op, x) is the profile's
 * curve of op (fabric.allgather|allreduce|bcast: median us by bytes,
 * taken at 2 chips; linear between points, flat below the first, the
 * last slope beyond the last) at the 2-chip message that copies as many
 * bytes: x = N x the largest part for an all-gather (or gather), (N + 1)
 * S / 3 for an all-reduce of S bytes, S for a bcast; the embedding row,
 * one sender, reads the bcast curve. A profile without curves (what-if
 * profiles, older probes): latency_us + link / gbps. A prefill batch of
 * nb tokens moves nb rows (logits: one), and a second bcast of its tokens
 * past 16. Fabric bytes are what chip 0 copies in and out (decode
 * --stats-json's fabric.ops.*.bytes).
 *
 * Not modelled: the page cache's faults (mmap weights are taken as
 * mapped; the first pass maps them),
 * NUMA distance, the host's stalls (MACHINE.md), prefill's matmul at
 * other shapes than the probe's 5632 x 2048.
 */
#ifndef STRATA_SIM_H
#define STRATA_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/fabric.h"
#include "kernels/kern.h"
#include "memtier/memtier.h"
#include "models/llama_model.h"
#include "models/shapes.h"

#define SIM_MAX_UNITS 256
#define SIM_MAX_GRID 8
#define SIM_MAX_FAB 32 /* points of a fabric curve */
#define SIM_MAX_WS 8   /* working-set points of a kernel rate */
#define SIM_MAX_MM_TOK 8 /* batch sizes of the prefill matmul from memory */

/* one collective's median by message size (probe's fabric curves) */
struct sim_fab_curve {
	int n;                     /* 0: the profile has none */
	double bytes[SIM_MAX_FAB]; /* ascending */
	double us[SIM_MAX_FAB];
};

/* ---- the hardware profile (bench/probe's JSON) ---------------------- */

struct sim_kern_rate {
	bool have;
	double dram_gbps[2]; /* matvec, weights from DRAM: 1 thread, all */
	double l2_gbps[2];   /* matvec, weights in L2 */
	bool have_mm;
	double mm_gmacs[2];  /* prefill matmul, weights in cache: 1 thread, all */
	int n_mm_tok;        /* prefill matmul with weights from memory
			      * (matmul.types.T.mem), by batch tokens,
			      * ascending; 0: none */
	double mm_tok[SIM_MAX_MM_TOK];
	double mm_mem_gmacs[SIM_MAX_MM_TOK][2];
	bool have_mm_sp;     /* the same on 4 KiB pages (the mmap tier) */
	double mm_sp_gmacs[SIM_MAX_MM_TOK][2];
	int n_ws;            /* the dram class by working set, ascending */
	double ws_bytes[SIM_MAX_WS];
	double ws_gbps[SIM_MAX_WS][2];
	int n_sp;            /* the same on 4 KiB pages (small_pages): the
			      * mmap tier's; 0: none */
	double sp_bytes[SIM_MAX_WS];
	double sp_gbps[SIM_MAX_WS][2];
};

/* the matvec at one matrix shape (probe's kernels.shapes), by working
 * set: a model's own shapes, where short rows and small matrices stream
 * slower per byte than the 2048-column class */
#define SIM_MAX_SHAPES 16
struct sim_shape {
	uint32_t type;
	int64_t rows, cols;
	bool small_pages;  /* "pages": "small" (4 KiB: the mmap tier's) */
	int n_ws;
	double ws_bytes[SIM_MAX_WS];
	double gbps[SIM_MAX_WS][2];
};

/* the per-layer float ops and attention (probe's "ops"), one thread */
enum sim_op { SIM_OP_RMSNORM, SIM_OP_ROPE, SIM_OP_SILU, SIM_OP_ADD,
	      SIM_OP_COPY, SIM_OP_Q8A, SIM_OP_Q8K, SIM_OP_COUNT };
#define SIM_MAX_ATT 8
struct sim_ops {
	bool have;
	double ns_per_elem[SIM_OP_COUNT];
	int n_pos, n_hd;
	double pos[SIM_MAX_ATT], hd[SIM_MAX_ATT];
	double att_ns[SIM_MAX_ATT][SIM_MAX_ATT]; /* [hd][pos]: one head */
	bool have_cold;
	double att_cold_ns[SIM_MAX_ATT][SIM_MAX_ATT]; /* K/V from memory */
};

struct sim_profile {
	char path[512];
	char cpu[128];
	char isa[16];
	int n_threads;            /* "all threads" of the kernel figures */
	int n_dram;
	double dram_gbps[SIM_MAX_UNITS];   /* read GB/s by threads 1..n_dram */
	uint64_t l2_bytes;
	struct sim_kern_rate kern[KT_COUNT];
	int n_shapes;
	struct sim_shape shape[SIM_MAX_SHAPES];
	struct sim_ops ops;
	int n_bar;
	double barrier_us[SIM_MAX_UNITS];  /* by units 1..n_bar */
	double sampler_ns, greedy_ns;      /* per vocabulary entry */
	bool have_flash;
	int n_bs, n_qd;
	double bs[SIM_MAX_GRID], qd[SIM_MAX_GRID];
	double flash_gbps[SIM_MAX_GRID][SIM_MAX_GRID]; /* [bs][qd] */
	double flash_lat_us;               /* rand4k_p50_us */
	double flash_sustained_gbps;       /* sustained_read_gbps; 0: none */
	bool have_kv_write;
	double kv_write_gbps;
	bool have_fabric;
	double fabric_lat_us, fabric_gbps; /* a hop; a link's GB/s */
	struct sim_fab_curve fab[FABRIC_OP_COUNT]; /* by enum fabric_op */
	double watts;                      /* 0: the profile gives no power */
	double pc_fault_ns_per_byte;       /* page_cache: mapping a cached
					    * page on first touch; 0: none */
};

/* Read the profile at path (JSON) into *p. Returns 0, or -errno / -EINVAL
 * with a message naming the file and the field ("p.json: kernels.types.
 * q4_0.dram.gbps.1: missing") in err. Members the model needs: machine,
 * dram, kernels, barrier, sampler; flash (for --tier/--kv-tier flash),
 * kv_write (--kv-tier flash), matmul (prefill: missing types fall back
 * to the L2 matvec rate), fabric (--chips > 1; "skipped": none; the curves
 * are optional) are checked when used. A
 * kernel type missing from kernels.types takes kernels.default if the
 * profile has one (what-if profiles). */
int sim_profile_load(struct sim_profile *p, const char *path, char *err,
		     size_t errlen);
/* the same from JSON text; name stands for the file in messages */
int sim_profile_parse(struct sim_profile *p, const char *text,
		      const char *name, char *err, size_t errlen);

/* ---- the run to predict --------------------------------------------- */

/* one tensor: its type, rows of cols elements, bytes */
struct sim_tensor {
	uint32_t type;
	int64_t rows, cols;
	uint64_t bytes;
	uint64_t file_offset; /* a file's tensor: widened reads are exact;
			       * 0 (a shape): + 4 KiB on average */
};

enum sim_tp { SIM_TP_ROWS = 0, SIM_TP_ALLREDUCE = 1 };

struct sim_input {
	struct llama_hparams hp;
	/* [n_layer * LT_COUNT + GT_COUNT]: layer l's tensor i at l * LT_COUNT
	 * + i, then token_embd, output_norm, output (the engine's ids) */
	const struct sim_tensor *t;
	enum memtier_kind tier, kv_tier;
	int n_units;          /* -t / --nmus, >= 1 */
	bool nmu_on;
	int prefetch;
	uint64_t dram_budget; /* UINT64_MAX: none */
	int32_t kv_block;     /* 0: 64 */
	int32_t n_prompt;     /* >= 1 */
	int32_t n_predict;    /* >= 1: tokens generated (the first by prefill) */
	int32_t n_ctx;        /* for the check pos < n_ctx */
	int32_t n_batch;      /* 0: 128 */
	bool greedy;          /* --temp 0 */
	int chips;            /* >= 1 */
	enum sim_tp tp;
	double fabric_latency_us; /* emulated: added to every collective */
	double fabric_gbps;       /* > 0: emulated links, added */
};

/* the tensors of a named shape under a type mix, into t[n_layer * LT_COUNT
 * + GT_COUNT] (caller's) and *hp. Returns 0 or -EINVAL. */
int sim_tensors_from_shape(const struct shapes_model *s,
			   const struct shapes_ftype *f,
			   struct llama_hparams *hp, struct sim_tensor *t);
/* the same from a GGUF file's bound model (real types and bytes) */
void sim_tensors_from_model(const struct llama_model *m, struct sim_tensor *t);

/* ---- the prediction -------------------------------------------------- */

/* where one decode token's time goes (seconds; bytes per token) */
struct sim_breakdown {
	int32_t pos;                       /* the position it is for */
	double matvec_s[KT_COUNT];         /* slowest unit, per weight type */
	uint64_t matvec_bytes[KT_COUNT];   /* every unit of every chip */
	double matvec_compute_s[KT_COUNT]; /* roofline sides: bytes / L2 rate */
	double matvec_memory_s[KT_COUNT];  /* bytes / DRAM read GB/s */
	double attention_s;
	double ops_s;                      /* norms, RoPE, SiLU, adds, copies,
					    * activation quantizing */
	double ws_bytes;                   /* working set the rates are at */
	double compute_s;                  /* every phase's slowest unit */
	double embed_s, head_s;
	double sample_s;                   /* not in the step: decode times
					    * engine_decode, not the sampler */
	double barrier_s;
	int n_barriers;
	uint64_t dram_weight_bytes;        /* weights read from DRAM */
	uint64_t flash_weight_bytes;       /* weights read from flash */
	double flash_busy_s;               /* the disk serving this token */
	double flash_stall_s;              /* waits not hidden by compute */
	double flash_overlap_s;            /* busy - stall: hidden */
	double flash_gbps;                 /* the grid rate used */
	double flash_req_bytes, flash_qd;
	uint64_t kv_read_bytes;            /* K/V rows attention reads */
	uint64_t kv_flash_read_bytes;      /* of which full blocks from flash */
	double kv_write_bytes;             /* K/V written, per token */
	double fabric_s;
	int n_collectives;
	double fabric_bytes;               /* chip 0 copies in and out */
	double imbalance;                  /* slowest / mean unit compute */
	double total_s;
};

struct sim_unit {
	uint64_t weight_bytes;             /* per decode token */
	int64_t q_heads, kv_heads;
	double compute_s;                  /* per decode token (median pos) */
};

struct sim_result {
	struct sim_breakdown tok;          /* the median decode token */
	double prefill_s, prefill_tok_per_s;
	double prefill_compute_s, prefill_flash_s, prefill_barrier_s;
	int32_t decode_tokens;             /* n_predict - 1 */
	double decode_s, decode_tok_per_s, median_step_ms;
	uint64_t weight_bytes_per_token;   /* every unit, every chip */
	uint64_t tier_bytes_per_token[MEMTIER_KIND_COUNT];
	uint32_t n_pinned;                 /* segments under --dram-budget */
	uint64_t pinned_bytes;
	int32_t kv_block_tokens;
	uint64_t kv_bytes_per_token_read;  /* median token */
	double kv_bytes_written_per_token;
	uint64_t kv_position_bytes;        /* K and V of a position, all layers,
					    * every chip */
	int n_units;                       /* a chip's; unit[]: chip 0's */
	int kv_replicated;
	struct sim_unit unit[SIM_MAX_UNITS];
	double weights_gb, kv_gb;          /* capacity: weights, KV at n_ctx */
};

/* Predict in->... on prof into *out (written only on success). Returns 0
 * or -EINVAL with a message in err (a split the plan refuses, a figure
 * the profile lacks for this placement, positions past n_ctx).
 * Thread-safe. */
int sim_predict(const struct sim_input *in, const struct sim_profile *prof,
		struct sim_result *out, char *err, size_t errlen);

/* The pieces, exported for the tests. */
/* the grid rate for requests of bs bytes at qd in flight (GB/s) */
double sim_flash_gbps(const struct sim_profile *p, double bs, double qd);
/* aggregate kernel GB/s of type from DRAM (dram = true) or L2 at n threads */
double sim_kern_gbps(const struct sim_profile *p, uint32_t type, int n,
		     bool dram);
/* the same from memory with a working set of ws bytes (the probe's "ws"
 * points, linear in log2 of ws, flat beyond; none: the dram class) */
double sim_kern_ws_gbps(const struct sim_profile *p, uint32_t type, int n,
			double ws);
/* ns of one query head's attention over n_pos positions (probe's "ops";
 * 0 without) */
double sim_attn_ns(const struct sim_profile *p, int head_dim, double n_pos);
/* the same with the weights on 4 KiB pages (the mmap tier: the page
 * cache maps a file so): the probe's small_pages series, else ws */
double sim_kern_mmap_gbps(const struct sim_profile *p, uint32_t type, int n,
			  double ws);
/* the matvec of a rows x cols matrix of type from memory at working set
 * ws on huge or (small_pages) 4 KiB pages (kernels.shapes, linear in log2
 * of ws, flat beyond); 0: the profile did not measure that shape so */
double sim_shape_gbps(const struct sim_profile *p, uint32_t type, int64_t rows,
		      int64_t cols, bool small_pages, int n, double ws);
/* aggregate prefill matmul GMAC/s of type at n threads for a batch of nb
 * tokens: the probe's rate with weights from memory at the batch size
 * (matmul.types.T.mem, linear in log2 of tokens between its points, flat
 * outside; small_pages: the series on 4 KiB pages when the profile has
 * it, the mmap tier's), else its in-cache figure; 0 without either */
double sim_mm_gmacs(const struct sim_profile *p, uint32_t type, int n, int nb,
		    bool small_pages);
/* the same with K/V from memory (the probe's cold figures; 0 without) */
double sim_attn_cold_ns(const struct sim_profile *p, int head_dim, double n_pos);
/* barrier microseconds for n units */
double sim_barrier_us(const struct sim_profile *p, int n);
/* the profile's microseconds for one collective op: its curve at msg
 * bytes (a 2-chip message), else latency_us + link_bytes / gbps; 0 when
 * the profile has no fabric */
double sim_fabric_us(const struct sim_profile *p, enum fabric_op op,
		     double msg_bytes, double link_bytes);

#endif
