/*
 * decode.c - the `decode` command: llama.cpp-style flags, text generation,
 * perplexity, tokenization, logits dumps and measured statistics.
 * Generated text goes to stdout as it is produced; everything else to
 * stderr. Exit status: 0 ok, 1 runtime failure, 2 bad usage.
 */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/fabric.h"
#include "engine/flags.h"
#include "engine/forward.h"
#include "engine/sampler.h"
#include "engine/stats.h"
#include "kernels/kern.h"
#include "memtier/trace.h"
#include "models/chat.h"
#include "models/tokenizer.h"
#include "models/util.h"

/* SIGINT / SIGTERM: stop after the token in progress, report, exit
 * 128 + signal (the KV file has no name, so nothing is left either way).
 * With chips, a signal to any chip reaches chip 0 through the fabric,
 * and chip 0 stops them all at the same token. */
static volatile sig_atomic_t stop_signal;
static struct fabric *g_fab;
static int g_chip;

static void on_signal(int sig)
{
	if (g_chip == 0)
		stop_signal = sig;
	else
		fabric_request_stop(g_fab, sig);
}

/* the signal that stops the run, or 0 */
static int stopped(void)
{
	return stop_signal ? (int)stop_signal : fabric_stop_requested(g_fab);
}

static void catch_signals(void)
{
	/* a second signal gets the default action: Ctrl-C twice always ends */
	struct sigaction sa = {.sa_handler = on_signal,
			       .sa_flags = SA_RESTART | SA_RESETHAND};

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* whole file into a NUL-terminated buffer; NULL with a message on error */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f) {
		fprintf(stderr, "error: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (n + 65536 + 1 > cap) {
			cap = cap ? 2 * cap : 131072;
			buf = xrealloc(buf, cap);
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "error: %s: read error\n", path);
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/*
 * Streams token pieces to stdout as valid UTF-8: the bytes of a sequence
 * that is not complete yet are held back until the next piece completes
 * it; a byte that cannot start or continue a sequence, and a sequence cut
 * off at the end of generation, become U+FFFD.
 */
struct utf8_out {
	unsigned char pend[4];
	int n_pend, need;
};

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

/* bytes in a sequence led by c; 0 if c cannot lead one */
static int utf8_len(unsigned char c)
{
	if (c < 0x80) return 1;
	if (c >= 0xC2 && c <= 0xDF) return 2;
	if ((c & 0xF0) == 0xE0) return 3;
	if (c >= 0xF0 && c <= 0xF4) return 4;
	return 0;
}

static void utf8_byte(struct utf8_out *u, unsigned char c)
{
	if (u->n_pend > 0 && (c & 0xC0) != 0x80) {
		/* sequence broken off: replace it, then treat c afresh */
		fputs(replacement, stdout);
		u->n_pend = 0;
	}
	if (u->n_pend == 0) {
		u->need = utf8_len(c);
		if (u->need == 0) {
			fputs(replacement, stdout);
			return;
		}
	}
	u->pend[u->n_pend++] = c;
	if (u->n_pend == u->need) {
		fwrite(u->pend, 1, (size_t)u->n_pend, stdout);
		u->n_pend = 0;
	}
}

static void utf8_put(struct utf8_out *u, const char *s, int n)
{
	for (int i = 0; i < n; i++)
		utf8_byte(u, (unsigned char)s[i]);
	fflush(stdout);
}

static void utf8_flush(struct utf8_out *u)
{
	if (u->n_pend > 0)
		fputs(replacement, stdout);
	u->n_pend = 0;
	fflush(stdout);
}

/* the prompt text, through the chat template if asked */
static char *build_prompt(const struct decode_options *o, const struct engine *e,
			  const struct tokenizer *tok, size_t *len)
{
	char *text;

	if (o->prompt_file) {
		text = read_file(o->prompt_file, len);
		if (!text)
			return NULL;
	} else {
		text = xstrdup(o->prompt ? o->prompt : "");
		*len = strlen(text);
	}
	if (*len == 0) {
		fprintf(stderr, "error: empty prompt (give -p TEXT, -f FILE or "
			"--prompt-tokens N)\n");
		free(text);
		return NULL;
	}
	if (!o->chat)
		return text;

	const struct gguf_str *tmpl = NULL;
	struct chat_template ct;
	char err[256];
	gguf_get_str(&e->gguf, "tokenizer.chat_template", &tmpl);
	int r = chat_template_init(&ct, tmpl ? tmpl->s : "chatml",
				   tokenizer_token_text(tok, tok->eos_id), err,
				   sizeof(err));
	if (r) {
		fprintf(stderr, "error: --chat: %s\n", err);
		free(text);
		return NULL;
	}
	struct chat_msg msgs[2];
	size_t n = 0;
	if (o->system)
		msgs[n++] = (struct chat_msg){"system", o->system};
	msgs[n++] = (struct chat_msg){"user", text};
	size_t cap = *len + 2 * CHAT_MAX_SYSTEM + 256 +
		     (o->system ? strlen(o->system) : 0);
	char *out = xmalloc(cap);
	r = chat_apply(&ct, msgs, n, true, out, cap);
	free(text);
	if (r < 0) {
		fprintf(stderr, "error: --chat: %s\n", strerror(-r));
		free(out);
		return NULL;
	}
	*len = (size_t)r;
	return out;
}

static int write_logits(FILE *f, const float *logits, int64_t n)
{
	return fwrite(logits, sizeof(float), (size_t)n, f) == (size_t)n ? 0 : -EIO;
}

/* llama.cpp's perplexity: chunks of n_ctx tokens, BOS replacing the first
 * token of each chunk if the vocab adds BOS, scoring the second half */
/* What a tokenizer_encode_alloc failure means to a user: its errno values
 * name tokenizer conditions, not the system's ("No space left on device"
 * for a full id buffer would send them looking at their disk). */
static const char *encode_error(int rc)
{
	switch (rc) {
	case -EINVAL:
		return "not valid UTF-8";
	case -EOVERFLOW:
		return "more than 2^31 tokens";
	case -ENOMEM:
		return "out of memory";
	default:
		return "internal tokenizer error";
	}
}

static int run_perplexity(struct engine *e, const struct tokenizer *tok,
			  const struct decode_options *o, struct run_stats *rs)
{
	size_t len;
	char *text = read_file(o->perplexity_file, &len);
	int32_t n_ctx = e->st.n_ctx, n_vocab = e->model.hp.n_vocab;
	int rc = 0;

	if (!text)
		return -ENOENT;
	int32_t *ids = NULL;
	int32_t n = tokenizer_encode_alloc(tok, text, len, tok->add_bos, false,
					   &ids);
	free(text);
	if (n < 0) {
		fprintf(stderr, "error: %s: cannot tokenize: %s\n",
			o->perplexity_file, encode_error(n));
		return n;
	}
	if (n_ctx < 4) {
		fprintf(stderr, "error: --perplexity needs -c of at least 4\n");
		free(ids);
		return -EINVAL;
	}
	if (n < 2 * n_ctx) {
		fprintf(stderr, "error: %s: %d tokens, need at least 2 * ctx = %d\n",
			o->perplexity_file, n, 2 * n_ctx);
		free(ids);
		return -EINVAL;
	}
	int32_t n_chunk = n / n_ctx, first = n_ctx / 2;
	float *logits = xmalloc((size_t)n_ctx * (size_t)n_vocab * sizeof(float));
	int32_t *chunk = xmalloc((size_t)n_ctx * sizeof(*chunk));
	double nll = 0.0;
	int64_t count = 0;

	fprintf(stderr, "perplexity: %d tokens, %d chunks of %d\n", n, n_chunk, n_ctx);
	for (int32_t c = 0; c < n_chunk && !rc; c++) {
		memcpy(chunk, ids + (int64_t)c * n_ctx, (size_t)n_ctx * sizeof(*chunk));
		if (tok->add_bos && tok->bos_id >= 0)
			chunk[0] = tok->bos_id;
		rc = engine_prefill(e, chunk, n_ctx, 0, logits, true);
		if (rc)
			break;
		for (int32_t j = first; j < n_ctx - 1; j++) {
			const float *lg = logits + (int64_t)j * n_vocab;
			float mx = lg[0];
			double sum = 0.0;
			for (int32_t v = 1; v < n_vocab; v++)
				mx = lg[v] > mx ? lg[v] : mx;
			for (int32_t v = 0; v < n_vocab; v++)
				sum += exp((double)(lg[v] - mx));
			int32_t next = ids[(int64_t)c * n_ctx + j + 1];
			nll += -((double)(lg[next] - mx) - log(sum));
			count++;
		}
		fprintf(stderr, "[%d]%.4f,", c + 1, exp(nll / (double)count));
	}
	fprintf(stderr, "\n");
	if (!rc) {
		rs->perplexity = exp(nll / (double)count);
		printf("perplexity: %.4f\n", rs->perplexity);
	}
	free(chunk);
	free(logits);
	free(ids);
	return rc;
}

static int run_generate(struct engine *e, const struct tokenizer *tok,
			const struct decode_options *o, const int32_t *prompt,
			int32_t n_prompt, struct run_stats *rs,
			int32_t **gen_out, int32_t *n_gen_out)
{
	const int64_t n_vocab = e->model.hp.n_vocab;
	int32_t n_ctx = e->st.n_ctx;
	int64_t want = o->n_predict < 0 ? (int64_t)n_ctx - n_prompt : o->n_predict;
	int32_t budget;
	bool all = o->dump_logits != NULL;
	FILE *dump = NULL;
	struct sampler smp;
	struct utf8_out u8 = {0};
	int rc;

	if (n_prompt >= n_ctx) {
		fprintf(stderr, "error: prompt of %d tokens does not fit the "
			"context of %d\n", n_prompt, n_ctx);
		return -ENOSPC;
	}
	if (n_prompt + want > n_ctx) {
		if (o->n_predict >= 0)
			fprintf(stderr, "warning: generation stops at the context "
				"size %d\n", n_ctx);
		want = (int64_t)n_ctx - n_prompt;
	}
	budget = (int32_t)want;
	if ((rc = sampler_init(&smp, &o->samp, (int32_t)n_vocab))) {
		fprintf(stderr, "error: bad sampler settings\n");
		return rc;
	}
	if (all && !(dump = fopen(o->dump_logits, "wb"))) {
		rc = -errno;
		fprintf(stderr, "error: %s: %s\n", o->dump_logits, strerror(-rc));
		sampler_destroy(&smp);
		return rc;
	}
	float *logits = xmalloc((size_t)(all ? n_prompt : 1) * n_vocab * sizeof(float));
	int32_t *gen = xmalloc((size_t)(budget + 1) * sizeof(*gen));
	double *step_ms = xmalloc((size_t)(budget + 1) * sizeof(*step_ms));
	int32_t n_gen = 0;

	int32_t *eog = xmalloc(64 * sizeof(*eog)), n_eog = 0;
	for (int32_t i = 0; i < (int32_t)n_vocab && n_eog < 64; i++)
		if (tokenizer_is_eog(tok, i))
			eog[n_eog++] = i;
	for (int32_t i = 0; i < n_prompt; i++)
		sampler_accept(&smp, prompt[i]);
	rc = engine_prefill(e, prompt, n_prompt, 0, logits, all);
	if (rc)
		goto out;
	if (dump && (rc = write_logits(dump, logits, (int64_t)n_prompt * n_vocab)))
		goto out;
	float *last = logits + (all ? (int64_t)(n_prompt - 1) * n_vocab : 0);
	/* the decode window starts with prefill's block writes landed */
	if ((rc = engine_flush(e)))
		goto out;
	struct engine_counters c0, c1;
	engine_counters(e, &c0);
	engine_units_reset(e);
	uint64_t position_bytes = c0.kv_info.position_bytes;
	int32_t pos = n_prompt;
	char piece[4096]; /* longer than any token of the vocabularies we load */
	while (n_gen < budget && !stopped()) {
		/* --ignore-eos as llama.cpp: end-of-generation tokens are
		 * never sampled */
		for (int32_t i = 0; o->ignore_eos && i < n_eog; i++)
			last[eog[i]] = -INFINITY;
		int32_t next = sampler_sample(&smp, last);
		if (!o->ignore_eos && tokenizer_is_eog(tok, next))
			break;
		gen[n_gen++] = next;
		sampler_accept(&smp, next);
		int pn = tokenizer_piece(tok, next, false, piece, sizeof(piece));
		if (pn > 0)
			utf8_put(&u8, piece, pn);
		if (n_gen == budget)
			break;
		int64_t t0 = now_ns();
		rc = engine_decode(e, next, pos++, logits);
		if (rc)
			break;
		step_ms[n_gen - 1] = (double)(now_ns() - t0) / 1e6;
		/* attention read K and V of every position so far, all layers */
		rs->decode_kv_bytes += (uint64_t)pos * position_bytes;
		last = logits;
		if (dump && (rc = write_logits(dump, logits, n_vocab)))
			break;
	}
	utf8_flush(&u8);
	printf("\n");
	/* decode figures: only the engine_decode steps, not sampling */
	rs->decode_tokens = e->stats.n_decode_tokens;
	rs->decode_s = (double)e->stats.decode_ns / 1e9;
	rs->median_step_ms = stats_median(step_ms, e->stats.n_decode_tokens);
	/* ... and ends with decode's landed */
	int fr = engine_flush(e);
	if (fr && !rc)
		rc = fr;
	engine_counters(e, &c1);
	for (int k = 0; k < MEMTIER_KIND_COUNT; k++)
		stats_tier_delta(&rs->tiers[k], &c1.tiers[k], &c0.tiers[k]);
	stats_tier_delta(&rs->kv, &c1.kv, &c0.kv);
	if (stopped() && !rc) {
		fprintf(stderr, "interrupted by signal %d after %d tokens\n",
			stopped(), n_gen);
		rc = -EINTR;
	}
out:
	if (dump && fclose(dump) && !rc)
		rc = -EIO;
	if (rc && rc != -EINTR && fabric_error(g_fab)[0])
		fprintf(stderr, "error: evaluation failed: %s\n",
			fabric_error(g_fab));
	else if (rc && rc != -EINTR)
		fprintf(stderr, "error: evaluation failed (weights: %s tier, "
			"%s; KV cache: %s%s%s): %s\n",
			memtier_kind_name(e->cfg.mt.kind), e->gguf.path,
			memtier_kind_name(e->cfg.kv_kind),
			e->cfg.kv_kind == MEMTIER_FLASH ? " in " : "",
			e->cfg.kv_kind == MEMTIER_FLASH ? e->cfg.kv_dir : "",
			strerror(-rc));
	free(eog);
	free(step_ms);
	free(logits);
	sampler_destroy(&smp);
	*gen_out = gen;
	*n_gen_out = n_gen;
	return rc;
}

/* the engine's settings from the command line */
static void config_of(const struct decode_options *o, struct memtier_config fault,
		      struct trace *tr, char *model_dir, struct engine_config *cfg)
{
	*cfg = (struct engine_config){
		.n_threads = o->n_nmus ? o->n_nmus : o->n_threads,
		.nmu_off = !o->nmu_on, .topology = getenv("STRATA_TOPOLOGY"),
		.n_ctx = o->n_ctx, .n_batch = o->n_batch,
		.prefill_blas = o->prefill_blas, .act_f32 = o->act_f32 != 0,
		.mt = {.kind = o->tier, .dram_budget_bytes = o->dram_budget,
		       .huge_pages = true, .prefetch = o->prefetch,
		       .no_direct = o->no_direct,
		       .fault = fault.fault, .fault_every = fault.fault_every,
		       .trace = o->trace ? tr : NULL},
		.kv_kind = o->kv_tier,
		.kv_dir = o->flash_dir ? o->flash_dir : dirname(model_dir),
		.kv_block = o->kv_block,
		.cancel = &stop_signal,
		.fab = g_fab, .tp = (enum plan_tp)o->tp,
	};
}

/* A chip other than 0: its slice of every call chip 0 makes. Chip 0
 * reports every failure (its own, and another chip's through the
 * fabric's abort message), so this chip prints its failure only when
 * chip 0 is gone. */
static int chip_main(const struct decode_options *o, struct memtier_config fault)
{
	char err[512] = "", *model_dir = xstrdup(o->model);
	struct engine_config cfg;
	struct engine e;

	config_of(o, fault, NULL, model_dir, &cfg);
	catch_signals();
	int rc = engine_init(&e, o->model, &cfg, err, sizeof(err));
	if (!rc) {
		rc = engine_serve(&e, err, sizeof(err));
		engine_destroy(&e);
	}
	/* (MPI: this chip's own failure was printed by fabric_abort, which
	 * ended the job; a verdict every chip reached, by chip 0) */
	if (rc && !fabric_is_mpi(g_fab) &&
	    getppid() != fabric_pid(g_fab, 0)) /* chip 0 has exited */
		fprintf(stderr, "error: chip %d: %s\n", g_chip, err);
	fabric_finish(g_fab, err, sizeof(err));
	free(model_dir);
	return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct decode_options o;
	struct engine e;
	struct tokenizer tok = {0};
	struct run_stats rs = {.perplexity = -1};
	struct trace tr;
	struct engine_unit_report *units = NULL;
	struct engine_chip_report *chips = NULL;
	char err[512];
	int32_t *prompt = NULL, *gen = NULL;
	int32_t n_prompt = 0, n_gen = 0;
	char *text = NULL;
	size_t len = 0;
	int rc, isa;

	rc = flags_parse(argc, argv, &o, err, sizeof(err));
	if (rc == FLAGS_HELP_GIVEN) {
		flags_usage(stdout, "decode");
		return 0;
	}
	if (rc) {
		fprintf(stderr, "error: %s\n", err);
		return 2;
	}
	const char *fault = getenv("STRATA_FAULT");
	struct memtier_config fault_cfg = {0};
	if (fault && memtier_fault_parse(fault, &fault_cfg)) {
		fprintf(stderr, "error: STRATA_FAULT='%s' is not eio:N, short:N, "
			"enospc:N or nodirect:1\n", fault);
		return 2;
	}
	if ((isa = kern_init()) < 0) {
		fprintf(stderr, "error: STRATA_KERNELS='%s' is not an ISA this "
			"CPU runs (ref, avx2, avx512)\n", getenv("STRATA_KERNELS"));
		return 2;
	}
	/* (MPI: each rank's own file, checked once it has a name) */
	if (o.fabric != FABRIC_MPI && access(o.model, R_OK) != 0) {
		fprintf(stderr, "error: %s: %s\n", o.model, strerror(errno));
		return 1;
	}
	/* chips: processes forked now, before any thread exists */
	struct fabric_config fc = {
		.backend = (enum fabric_backend)o.fabric, .n_chips = o.n_chips, .latency_us = o.fabric_latency_us,
		.gbps = o.fabric_gbps, .timeout_s = o.fabric_timeout_s,
		.spin_us = -1, .units_per_chip = o.n_nmus ? o.n_nmus : o.n_threads,
	};
	const char *stall = getenv("STRATA_FABRIC_STALL");
	if (stall && sscanf(stall, "%d:%d:%lf", &fc.stall_chip, &fc.stall_op,
			    &fc.stall_s) != 3) {
		fprintf(stderr, "error: STRATA_FABRIC_STALL='%s' is not "
			"CHIP:OP:SECONDS\n", stall);
		return 2;
	}
	if (fc.units_per_chip <= 0 && fc.backend == FABRIC_SHM) {
		/* the default: CPUs split over chips (MPI: over a host's) */
		cpu_set_t cs;
		int n = sched_getaffinity(0, sizeof(cs), &cs) ? 1 : CPU_COUNT(&cs);
		fc.units_per_chip = n / o.n_chips > 0 ? n / o.n_chips : 1;
	}
	if ((o.n_chips > 1 || fc.backend == FABRIC_MPI) &&
	    (rc = fabric_start(&g_fab, &fc, &g_chip, err, sizeof(err)))) {
		/* MPI: every rank has the same verdict; chip 0 says it and
		 * fails the job. The others leave with 0 (MPI finalized): one
		 * exiting non-zero first would have mpirun kill chip 0 before
		 * it wrote the message */
		if (g_chip == 0)
			fprintf(stderr, "error: %s\n", err);
		return g_chip == 0 ? 1 : 0;
	}
	if (o.fabric == FABRIC_MPI && access(o.model, R_OK) != 0) {
		snprintf(err, sizeof(err), "%s: %s", o.model, strerror(errno));
		if (g_chip == 0)
			fprintf(stderr, "error: chip 0 (%s): %s\n",
				fabric_host(g_fab), err);
		fabric_abort(g_fab, -ENOENT, err); /* chip != 0: says it, ends */
		fabric_finish(g_fab, err, sizeof(err));
		return 1;
	}
	if (g_chip != 0)
		return chip_main(&o, fault_cfg);
	char *model_dir = xstrdup(o.model);
	struct engine_config cfg;
	config_of(&o, fault_cfg, &tr, model_dir, &cfg);
	trace_init(&tr);
	if ((rc = engine_init(&e, o.model, &cfg, err, sizeof(err)))) {
		fprintf(stderr, "error: %s\n", err);
		free(model_dir);
		fabric_finish(g_fab, err, sizeof(err));
		return 1;
	}
	catch_signals();
	if ((rc = tokenizer_init(&tok, &e.gguf, err, sizeof(err)))) {
		fprintf(stderr, "error: %s\n", err);
		goto out;
	}
	/* ids index token_embd and the logits: a vocabulary of another size
	 * would print the wrong text or index past the token table */
	if (tok.n_vocab != e.model.hp.n_vocab) {
		fprintf(stderr, "error: %s: the vocabulary has %d tokens, "
			"token_embd.weight %d rows\n", o.model, tok.n_vocab,
			e.model.hp.n_vocab);
		rc = -EINVAL;
		goto out;
	}

	if (o.perplexity_file) {
		rc = run_perplexity(&e, &tok, &o, &rs);
		goto report;
	}
	if (o.prompt_tokens > 0) {
		n_prompt = o.prompt_tokens;
		prompt = xmalloc((size_t)n_prompt * sizeof(*prompt));
		for (int32_t i = 0; i < n_prompt; i++) /* arbitrary valid ids */
			prompt[i] = (int32_t)(((int64_t)i * 7919 + 13) %
					      e.model.hp.n_vocab);
	} else {
		if (!(text = build_prompt(&o, &e, &tok, &len))) {
			rc = -EINVAL;
			goto out;
		}
		/* special-token text in a prompt is parsed, as llama.cpp does */
		n_prompt = tokenizer_encode_alloc(&tok, text, len, tok.add_bos,
						  true, &prompt);
		if (n_prompt < 0) {
			fprintf(stderr, "error: cannot tokenize the prompt: %s\n",
				encode_error(n_prompt));
			rc = n_prompt;
			goto out;
		}
	}
	if (o.tokenize_only) {
		printf("[");
		for (int32_t i = 0; i < n_prompt; i++)
			printf("%s%d", i ? ", " : "", prompt[i]);
		printf("]\n");
		rc = 0;
		goto out;
	}
	rc = run_generate(&e, &tok, &o, prompt, n_prompt, &rs, &gen, &n_gen);

report:
	rs.model_path = o.model;
	rs.model_name = e.model.name;
	rs.ftype = e.model.ftype_name;
	rs.tier = memtier_kind_name(o.tier);
	rs.isa = kern_isa_name((enum kern_isa)isa);
	rs.n_threads = e.n_threads;
	rs.n_ctx = e.st.n_ctx;
	rs.load_s = (double)e.load_ns / 1e9;
	rs.prefill_tokens = e.stats.n_prefill_tokens;
	rs.prefill_s = (double)e.stats.prefill_ns / 1e9;
	rs.weight_bytes = e.model.weight_bytes;
	struct engine_counters ec;
	engine_counters(&e, &ec);
	struct kvcache_info kvi = ec.kv_info;
	rs.kv_bytes_alloc = kvi.dram_bytes;
	rs.kv_tier = memtier_kind_name(kvi.kind);
	rs.kv_block = kvi.block_tokens;
	rs.kv_drive_bytes = kvi.drive_bytes;
	/* every position's K and V rows go to flash once */
	rs.kv_write_bytes_per_token = kvi.kind == MEMTIER_FLASH ?
				      kvi.position_bytes : 0;
	rs.direct = !o.no_direct;
	rs.act_f32 = o.act_f32 != 0;
	rs.dram_budget = o.dram_budget;
	rs.resident_bytes = ec.resident_bytes;
	rs.prefetch = o.prefetch;
	rs.peak_rss_bytes = stats_peak_rss();
	rs.nmu_on = !e.shared;
	rs.n_nodes = e.pool.n_nodes;
	rs.n_chips = e.n_chips;
	rs.tp = o.tp == PLAN_TP_ALLREDUCE ? "allreduce" : "rows";
	rs.fabric_latency_us = o.fabric_latency_us;
	rs.fabric_gbps = o.fabric_gbps;
	rs.fabric_backend = fabric_backend_name(g_fab);
	rs.fabric_library = fabric_library(g_fab);
	chips = xcalloc((size_t)e.n_chips, sizeof(*chips));
	if (!engine_chip_reports(&e, chips)) {
		rs.n_units = 0;
		for (int c = 0; c < e.n_chips; c++)
			rs.n_units += chips[c].n_units;
		units = xcalloc((size_t)rs.n_units, sizeof(*units));
		for (int c = 0, k = 0; c < e.n_chips; c++)
			for (int i = 0; i < chips[c].n_units; i++)
				units[k++] = chips[c].u[i];
		if (e.n_chips > 1) { /* every chip's process */
			rs.peak_rss_bytes = 0;
			for (int c = 0; c < e.n_chips; c++)
				rs.peak_rss_bytes += chips[c].peak_rss_bytes;
		}
		rs.chips = chips;
	}
	rs.units = units;
	rs.prompt = prompt;
	rs.n_prompt = n_prompt;
	rs.generated = gen;
	rs.n_generated = n_gen;
	if (o.stats)
		stats_print_table(stderr, &rs);
	if (o.stats_json) {
		int r = stats_write_json(o.stats_json, &rs);
		if (r) {
			fprintf(stderr, "error: %s: %s\n", o.stats_json, strerror(-r));
			if (!rc)
				rc = r;
		}
	}
	if (o.trace && (rc == 0 || rc == -EIO)) {
		int r = trace_write(&tr, o.trace);
		if (r) {
			fprintf(stderr, "error: %s: %s\n", o.trace, strerror(-r));
			if (!rc)
				rc = r;
		}
	}
out:
	engine_stop(&e); /* the other chips leave engine_serve */
	engine_destroy(&e); /* drains I/O in flight first */
	int sig = stopped();
	int fr = fabric_finish(g_fab, err, sizeof(err));
	g_fab = NULL;
	if (fr) {
		fprintf(stderr, "error: %s\n", err);
		if (!rc)
			rc = -EPIPE;
	}
	trace_destroy(&tr);
	free(text);
	free(prompt);
	free(gen);
	tokenizer_destroy(&tok);
	free(model_dir);
	free(units);
	free(chips);
	if (sig)
		return 128 + sig;
	return rc ? 1 : 0;
}
