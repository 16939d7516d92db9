/*
 * simulate - predict a decode run: put `bench/simulate` where `./decode`
 * stands in any command line and add --profile FILE (bench/probe's
 * output). Every decode flag is accepted (engine/flags.h, the same
 * table); those that cannot change the prediction (sampling settings
 * other than --temp 0, --flash-dir, --stats, --trace, ...) are ignored.
 * The model is a GGUF file (-m: its real tensor types and bytes) or a
 * named shape and type mix (--shape, --type: models/shapes.h). Chips
 * (--chips, --tp, --fabric-*) are decode's own flags.
 *
 * Prints a table to stdout, every figure labelled predicted; --json FILE
 * writes it with decode --stats-json's keys where they mean the same.
 * Exit 0, 2 for a bad command line, 1 for a model, profile or prediction
 * that fails (with a message).
 */
#include <errno.h>
#include <jansson.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sim.h"
#include "engine/flags.h"
#include "models/util.h"
#include "models/gguf.h"
#include "models/llama_model.h"
#include "models/tokenizer.h"

struct sim_opts {
	const char *profile;
	const char *shape;
	const char *type;
	const char *json;
};


#define F(f) FLAGS_FIELD_OF(struct sim_opts, f)

static const struct flags_opt sim_rows[] = {
	{"profile", 0, FLAGS_STR, F(profile), .metavar = "FILE",
	 .help = "hardware profile written by bench/probe (required)"},
	{"shape", 0, FLAGS_STR, F(shape), .metavar = "NAME",
	 .help = "a named model shape instead of -m (tinyllama-1.1b, "
		 "llama-7b, ...; models/mkmodel --list)"},
	{"type", 0, FLAGS_STR, F(type), .metavar = "T",
	 .help = "with --shape: the type mix (q4_0, q8_0, q4_k_m, ...)"},
	{"json", 0, FLAGS_STR, F(json), .metavar = "FILE",
	 .help = "write the prediction as JSON (decode --stats-json's keys)"},
};

static int sim_check(const struct decode_options *o, const void *dst,
		     char *err, size_t errlen)
{
	const struct sim_opts *s = dst;

	if (!s->profile)
		snprintf(err, errlen, "no --profile FILE (bench/probe -o FILE "
			 "writes one)");
	else if (!o->model == !s->shape)
		snprintf(err, errlen, "give -m FILE.gguf or --shape NAME, one of "
			 "them");
	else if (s->shape && !s->type)
		snprintf(err, errlen, "--shape needs --type (q4_0, q8_0, "
			 "q4_k_m, ...)");
	else if (s->type && !s->shape)
		snprintf(err, errlen, "--type applies to --shape (a file has "
			 "its own types)");
	else if (o->n_chips > 1 && o->nmu_on == 0)
		snprintf(err, errlen, "--chips needs --nmu on");
	else if (o->perplexity_file || o->tokenize_only)
		snprintf(err, errlen, "--perplexity and --tokenize runs are not "
			 "predicted");
	else if (o->act_f32) /* the profile measures the int8 kernels */
		snprintf(err, errlen, "--act f32 (the check mode) is not "
			 "predicted");
	else
		return 0;
	return -EINVAL;
}

static const struct flags_ext sim_ext_tmpl = {
	.rows = sim_rows,
	.n_rows = sizeof(sim_rows) / sizeof(sim_rows[0]),
	.dst_size = sizeof(struct sim_opts),
	.model_optional = true,
	.check = sim_check,
	.usage = "(-m MODEL.gguf | --shape NAME --type T) --profile FILE "
		 "[decode's options]",
	.decode_note = " (the same as ./decode; those that cannot change "
		       "the prediction are ignored)",
};

/* the model's tensors: a file's or a shape's; 0 or 1 with a message */
struct model_in {
	struct gguf_file g;
	struct llama_model m;
	bool have_file;
	struct llama_hparams hp;
	struct sim_tensor *t;
	char name[160];
	const char *ftype;
};

static int load_model(const struct decode_options *o, const struct sim_opts *s,
		      struct model_in *mi)
{
	char err[512];
	int rc;

	if (s->shape) {
		const struct shapes_model *sh = shapes_find(s->shape);
		const struct shapes_ftype *ft = shapes_find_ftype(s->type);
		if (!sh) {
			fprintf(stderr, "simulate: --shape %s: unknown shape (", s->shape);
			for (int i = 0; shapes_model_at(i); i++)
				fprintf(stderr, "%s%s", i ? ", " : "", shapes_model_at(i)->name);
			fprintf(stderr, ")\n");
			return 2;
		}
		if (!ft) {
			fprintf(stderr, "simulate: --type %s: unknown type mix (", s->type);
			for (int i = 0; shapes_ftype_at(i); i++)
				fprintf(stderr, "%s%s", i ? ", " : "", shapes_ftype_at(i)->name);
			fprintf(stderr, ")\n");
			return 2;
		}
		mi->t = xcalloc((size_t)sh->n_layer * LT_COUNT + GT_COUNT,
				sizeof(*mi->t));
		if (sim_tensors_from_shape(sh, ft, &mi->hp, mi->t)) {
			fprintf(stderr, "simulate: shape %s: bad shape\n", sh->name);
			return 1;
		}
		snprintf(mi->name, sizeof(mi->name), "%s", sh->name);
		mi->ftype = ft->name;
		return 0;
	}
	if ((rc = gguf_open(&mi->g, o->model, err, sizeof(err)))) {
		fprintf(stderr, "simulate: %s\n", err);
		return 1;
	}
	if ((rc = llama_model_init(&mi->m, &mi->g, err, sizeof(err)))) {
		fprintf(stderr, "simulate: %s: %s\n", o->model, err);
		gguf_close(&mi->g);
		return 1;
	}
	mi->have_file = true;
	mi->hp = mi->m.hp;
	mi->t = xcalloc((size_t)mi->hp.n_layer * LT_COUNT + GT_COUNT, sizeof(*mi->t));
	sim_tensors_from_model(&mi->m, mi->t);
	snprintf(mi->name, sizeof(mi->name), "%s", mi->m.name);
	mi->ftype = mi->m.ftype_name;
	return 0;
}

static void model_free(struct model_in *mi)
{
	if (mi->have_file) {
		llama_model_destroy(&mi->m);
		gguf_close(&mi->g);
	}
	free(mi->t);
}

/* prompt length in tokens: --prompt-tokens, the file's tokenizer on -p /
 * -f, or (a shape has no vocabulary) 1 token per 4 bytes; < 0 on error */
static int32_t prompt_len(const struct decode_options *o, struct model_in *mi,
			  bool *estimated)
{
	char *text = NULL;
	size_t len = 0;
	int32_t n;

	*estimated = false;
	if (o->prompt_tokens > 0)
		return o->prompt_tokens;
	if (o->prompt_file) {
		FILE *f = fopen(o->prompt_file, "rb");
		if (!f) {
			fprintf(stderr, "simulate: -f %s: %s\n", o->prompt_file,
				strerror(errno));
			return -1;
		}
		fseek(f, 0, SEEK_END);
		len = (size_t)ftell(f);
		fseek(f, 0, SEEK_SET);
		text = xmalloc(len + 1);
		len = fread(text, 1, len, f);
		fclose(f);
	} else {
		const char *p = o->prompt ? o->prompt : "";
		len = strlen(p);
		text = xmalloc(len + 1);
		memcpy(text, p, len);
	}
	text[len] = '\0';
	if (mi->have_file) {
		struct tokenizer tok;
		char err[256];
		if (tokenizer_init(&tok, &mi->g, err, sizeof(err))) {
			fprintf(stderr, "simulate: %s: %s\n", o->model, err);
			free(text);
			return -1;
		}
		int32_t cap = (int32_t)len + 8, *ids = xmalloc(sizeof(int32_t) * (size_t)cap);
		n = tokenizer_encode(&tok, text, len, tok.add_bos, true, ids, cap);
		free(ids);
		tokenizer_destroy(&tok);
		if (n < 0) {
			fprintf(stderr, "simulate: cannot tokenize the prompt\n");
			free(text);
			return -1;
		}
	} else {
		n = (int32_t)(len / 4) + 1;
		*estimated = true;
	}
	free(text);
	return n > 0 ? n : 1;
}

/* ---- output ------------------------------------------------------------ */

static double ms(double s) { return s * 1e3; }

static void print_table(const struct sim_input *in, const struct sim_profile *p,
			const struct sim_result *r, const struct model_in *mi,
			bool est)
{
	const struct sim_breakdown *b = &r->tok;
	const double tot = b->total_s > 0 ? b->total_s : 1;

	printf("PREDICTED by bench/simulate (analytical model, bench/sim.h) - "
	       "nothing here was measured\n");
	printf("model    %s (%s), %d layers, %.2f GB of weights\n", mi->name,
	       mi->ftype ? mi->ftype : "?", in->hp.n_layer, r->weights_gb);
	printf("profile  %s (%s, %s)\n", p->path, p->cpu, p->isa);
	printf("place    weights %s%s, KV %s (block %d), %d unit%s (nmu %s), "
	       "prefetch %d, %d chip%s\n", memtier_kind_name(in->tier),
	       r->n_pinned ? " + pinned layers" : "", memtier_kind_name(in->kv_tier),
	       r->kv_block_tokens, in->n_units, in->n_units > 1 ? "s" : "",
	       in->nmu_on ? "on" : "off", in->prefetch, in->chips,
	       in->chips > 1 ? "s" : "");
	if (r->n_pinned)
		printf("         --dram-budget pins %u segment(s), %.1f MB\n",
		       r->n_pinned, r->pinned_bytes / 1e6);
	printf("run      %d prompt tokens%s, %d generated, median decode token at "
	       "position %d\n\n", in->n_prompt, est ? " (estimated: 4 bytes a "
	       "token)" : "", in->n_predict, b->pos);
	printf("predicted decode token (median)          ms     share\n");
	for (uint32_t t = 0; t < KT_COUNT; t++) {
		if (!b->matvec_bytes[t])
			continue;
		bool mem = b->matvec_memory_s[t] >= b->matvec_compute_s[t];
		printf("  matvec %-6s %8.1f MB  %-7s %9.3f   %5.1f%%\n",
		       kern_type_info(t)->name, b->matvec_bytes[t] / 1e6,
		       mem ? "mem" : "compute", ms(b->matvec_s[t]),
		       100 * b->matvec_s[t] / tot);
	}
	printf("  attention (%6.1f MB K/V)        %9.3f   %5.1f%%\n",
	       b->kv_read_bytes / 1e6, ms(b->attention_s), 100 * b->attention_s / tot);
	printf("  float ops (norm, rope, quantize)  %9.3f   %5.1f%%\n",
	       ms(b->ops_s), 100 * b->ops_s / tot);
	printf("  compute, slowest unit per phase   %9.3f   %5.1f%%  (imbalance %.3f)\n",
	       ms(b->compute_s), 100 * b->compute_s / tot, b->imbalance);
	printf("  barriers (%d x %.2f us)          %9.3f   %5.1f%%\n",
	       b->n_barriers, b->n_barriers ? b->barrier_s * 1e6 / b->n_barriers : 0,
	       ms(b->barrier_s), 100 * b->barrier_s / tot);
	printf("  embedding row                     %9.3f\n", ms(b->embed_s));
	printf("  output head (in compute above)    %9.3f\n", ms(b->head_s));
	printf("  sampling (between steps, not in them) %5.3f\n", ms(b->sample_s));
	if (in->chips > 1)
		printf("  fabric (%d collectives, %.1f KB) %9.3f   %5.1f%%\n",
		       b->n_collectives, b->fabric_bytes / 1e3, ms(b->fabric_s),
		       100 * b->fabric_s / tot);
	printf("  DRAM weight reads  %10.1f MB (kernel rates at a %.0f MB working set)\n",
	       b->dram_weight_bytes / 1e6, b->ws_bytes / 1e6);
	if (in->tier == MEMTIER_FLASH || in->kv_tier == MEMTIER_FLASH) {
		printf("  flash weight reads %10.1f MB at %.2f GB/s (%.0f KiB "
		       "requests, QD %.0f)\n", b->flash_weight_bytes / 1e6,
		       b->flash_gbps, b->flash_req_bytes / 1024, b->flash_qd);
		printf("  flash busy         %9.3f ms, hidden under compute %.3f ms, "
		       "stall %.3f ms\n", ms(b->flash_busy_s), ms(b->flash_overlap_s),
		       ms(b->flash_stall_s));
	}
	if (in->kv_tier == MEMTIER_FLASH)
		printf("  KV from flash      %10.1f MB, written %.1f KB per token\n",
		       b->kv_flash_read_bytes / 1e6, b->kv_write_bytes / 1e3);
	printf("  step (median)                     %9.3f  100.0%%\n\n", ms(tot));
	printf("predicted prefill  %8.1f tok/s  (%.3f s: compute %.3f s, flash "
	       "busy %.3f s)\n", r->prefill_tok_per_s, r->prefill_s,
	       r->prefill_compute_s, r->prefill_flash_s);
	printf("predicted decode   %8.1f tok/s  (%d tokens in %.3f s; median "
	       "step %.3f ms)\n", r->decode_tok_per_s, r->decode_tokens,
	       r->decode_s, r->median_step_ms);
	printf("predicted capacity %8.2f GB weights + %.2f GB KV at the context\n",
	       r->weights_gb, r->kv_gb);
	if (p->watts > 0 && r->decode_tok_per_s > 0)
		printf("predicted energy   %8.3f tokens per joule at %.0f W\n",
		       r->decode_tok_per_s / p->watts, p->watts);
}

static json_t *tier_obj(const struct sim_result *r, int k)
{
	return json_pack("{s:f}", "bytes_per_token",
			 (double)r->tier_bytes_per_token[k]);
}

static int write_json(const char *path, const struct sim_input *in,
		      const struct sim_profile *p, const struct sim_result *r,
		      const struct model_in *mi)
{
	const struct sim_breakdown *b = &r->tok;
	json_t *root = json_object(), *tiers = json_object(), *nmu = json_array();
	json_t *mv = json_object();

	json_object_set_new(root, "predicted", json_true());
	json_object_set_new(root, "profile", json_string(p->path));
	json_object_set_new(root, "model_name", json_string(mi->name));
	json_object_set_new(root, "ftype", json_string(mi->ftype ? mi->ftype : "?"));
	json_object_set_new(root, "tier", json_string(memtier_kind_name(in->tier)));
	json_object_set_new(root, "threads", json_integer(in->n_units));
	json_object_set_new(root, "n_ctx", json_integer(in->n_ctx));
	json_object_set_new(root, "prefetch", json_integer(in->prefetch));
	json_object_set_new(root, "weight_bytes", json_real(r->weights_gb * 1e9));
	json_object_set_new(root, "resident_bytes", json_integer((json_int_t)
		(in->tier == MEMTIER_FLASH ? r->pinned_bytes : 0)));
	json_object_set_new(root, "prefill", json_pack("{s:i,s:f,s:f}", "tokens",
		in->n_prompt, "seconds", r->prefill_s, "tok_per_s", r->prefill_tok_per_s));
	json_object_set_new(root, "decode", json_pack("{s:i,s:f,s:f,s:f}", "tokens",
		r->decode_tokens, "seconds", r->decode_s, "tok_per_s",
		r->decode_tok_per_s, "median_step_ms", r->median_step_ms));
	for (int k = 0; k < MEMTIER_KIND_COUNT; k++)
		json_object_set_new(tiers, memtier_kind_name((enum memtier_kind)k),
				    tier_obj(r, k));
	json_object_set_new(root, "tiers", tiers);
	json_object_set_new(root, "kv", json_pack("{s:s,s:i,s:f,s:f,s:f}", "tier",
		memtier_kind_name(in->kv_tier), "block_tokens", r->kv_block_tokens,
		"bytes_per_token", (double)r->kv_bytes_per_token_read,
		"bytes_loaded_per_token", (double)b->kv_flash_read_bytes,
		"steady_bytes_written_per_token",
		in->kv_tier == MEMTIER_FLASH ? r->kv_bytes_written_per_token : 0.0));
	for (int i = 0; i < r->n_units; i++)
		json_array_append_new(nmu, json_pack("{s:i,s:f,s:I,s:I,s:f}", "unit", i,
			"weight_bytes_per_token", (double)r->unit[i].weight_bytes,
			"q_heads", (json_int_t)r->unit[i].q_heads,
			"kv_heads", (json_int_t)r->unit[i].kv_heads,
			"compute_seconds_per_token", r->unit[i].compute_s));
	json_object_set_new(root, "nmu", nmu);
	json_object_set_new(root, "nmu_summary", json_pack("{s:s,s:i,s:f,s:i}",
		"mode", in->nmu_on ? "on" : "off", "units", in->n_units,
		"imbalance", b->imbalance, "kv_replicated", r->kv_replicated));
	json_object_set_new(root, "fabric", json_pack("{s:i,s:s,s:i,s:f,s:f}",
		"chips", in->chips, "tp", in->tp == SIM_TP_ROWS ? "rows" : "allreduce",
		"collectives_per_token", b->n_collectives, "bytes_per_token",
		b->fabric_bytes, "seconds_per_token", b->fabric_s));
	for (uint32_t t = 0; t < KT_COUNT; t++)
		if (b->matvec_bytes[t])
			json_object_set_new(mv, kern_type_info(t)->name,
				json_pack("{s:f,s:f,s:f,s:f,s:s}", "bytes",
					  (double)b->matvec_bytes[t], "seconds",
					  b->matvec_s[t], "compute_seconds",
					  b->matvec_compute_s[t], "memory_seconds",
					  b->matvec_memory_s[t], "bound",
					  b->matvec_memory_s[t] >= b->matvec_compute_s[t]
						  ? "memory" : "compute"));
	json_t *bd = json_pack("{s:i,s:o,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:i,s:f,s:f,s:f,"
			       "s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}",
		"position", b->pos, "matvec", mv,
		"attention_seconds", b->attention_s, "ops_seconds", b->ops_s,
		"working_set_bytes", b->ws_bytes, "compute_seconds", b->compute_s,
		"embed_seconds", b->embed_s, "head_seconds", b->head_s,
		"sample_seconds", b->sample_s, "barrier_seconds", b->barrier_s,
		"barriers", b->n_barriers,
		"dram_weight_bytes", (double)b->dram_weight_bytes,
		"flash_weight_bytes", (double)b->flash_weight_bytes,
		"flash_busy_seconds", b->flash_busy_s,
		"flash_stall_seconds", b->flash_stall_s,
		"flash_overlap_seconds", b->flash_overlap_s,
		"flash_gbps", b->flash_gbps,
		"kv_read_bytes", (double)b->kv_read_bytes,
		"kv_flash_read_bytes", (double)b->kv_flash_read_bytes,
		"kv_write_bytes", b->kv_write_bytes,
		"fabric_seconds", b->fabric_s,
		"imbalance", b->imbalance, "step_seconds", b->total_s);
	/* the matvecs' distinct shapes, and whether the profile measured
	 * each (kernels.shapes): what bench/validate probes before a run */
	json_t *shp = json_array();
	for (int l = 0; l <= in->hp.n_layer; l++)
		for (int k = 0; k < LT_COUNT; k++) {
			const struct sim_tensor *t =
				l < in->hp.n_layer ? &in->t[l * LT_COUNT + k]
				: k ? NULL : &in->t[in->hp.n_layer * LT_COUNT + GT_OUTPUT];
			bool dup = false;
			size_t i;
			json_t *e;
			if (!t || (l < in->hp.n_layer && (k == LT_ATTN_NORM ||
							 k == LT_FFN_NORM)) ||
			    t->rows < 1 || !kern_type_info(t->type))
				continue;
			json_array_foreach(shp, i, e)
				dup |= json_integer_value(json_object_get(e, "rows")) == t->rows &&
				       json_integer_value(json_object_get(e, "cols")) == t->cols &&
				       !strcmp(json_string_value(json_object_get(e, "type")),
					       kern_type_info(t->type)->name);
			if (!dup)
				json_array_append_new(shp, json_pack("{s:s,s:I,s:I,s:b}",
					"type", kern_type_info(t->type)->name,
					"rows", (json_int_t)t->rows, "cols", (json_int_t)t->cols,
					"measured", sim_shape_gbps(p, t->type, t->rows, t->cols,
								   in->tier == MEMTIER_MMAP,
								   1, 0) > 0));
		}
	json_object_set_new(bd, "shapes", shp);
	json_object_set_new(root, "breakdown", bd);
	json_object_set_new(root, "capacity", json_pack("{s:f,s:f}", "weights_gb",
		r->weights_gb, "kv_gb", r->kv_gb));
	if (p->watts > 0)
		json_object_set_new(root, "energy", json_pack("{s:f,s:f}", "watts",
			p->watts, "tokens_per_joule", r->decode_tok_per_s / p->watts));
	int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	return rc;
}

int main(int argc, char **argv)
{
	struct decode_options o;
	struct sim_opts so = { 0 };
	struct flags_ext x = sim_ext_tmpl;
	struct sim_profile *prof = xcalloc(1, sizeof(*prof));
	struct sim_result *r = xcalloc(1, sizeof(*r));
	struct model_in mi = { 0 };
	struct sim_input in;
	char err[600];
	bool est;
	int rc;

	x.dst = &so;
	rc = flags_parse_ext(argc, argv, &o, &x, err, sizeof(err));
	if (rc == FLAGS_HELP_GIVEN) {
		flags_usage_ext(stdout, "bench/simulate", &x);
		return 0;
	}
	if (rc) {
		fprintf(stderr, "simulate: %s\n", err);
		return 2;
	}
	if (sim_profile_load(prof, so.profile, err, sizeof(err))) {
		fprintf(stderr, "simulate: %s\n", err);
		return 1;
	}
	if ((rc = load_model(&o, &so, &mi)))
		return rc;
	int32_t np = prompt_len(&o, &mi, &est);
	if (np < 0)
		return 1;
	cpu_set_t cs;
	int cpus = sched_getaffinity(0, sizeof(cs), &cs) == 0 ? CPU_COUNT(&cs) : 1;
	int32_t n_ctx = o.n_ctx > 0 ? o.n_ctx
		: mi.hp.n_ctx_train < 4096 ? mi.hp.n_ctx_train : 4096;
	if (n_ctx > mi.hp.n_ctx_train) {
		fprintf(stderr, "simulate: -c %d: larger than the model's context %d\n",
			n_ctx, mi.hp.n_ctx_train);
		return 1;
	}
	in = (struct sim_input){
		.hp = mi.hp, .t = mi.t, .tier = o.tier, .kv_tier = o.kv_tier,
		.n_units = o.n_threads ? o.n_threads : o.n_nmus ? o.n_nmus : cpus,
		.nmu_on = o.nmu_on != 0, .prefetch = o.prefetch,
		.dram_budget = o.dram_budget, .kv_block = o.kv_block,
		.n_prompt = np,
		.n_predict = o.n_predict > 0 ? o.n_predict : n_ctx - np + 1,
		.n_ctx = n_ctx, .n_batch = o.n_batch, .greedy = o.samp.temp <= 0,
		.chips = o.n_chips, .tp = (enum sim_tp)o.tp,
		.fabric_latency_us = o.fabric_latency_us,
		.fabric_gbps = o.fabric_gbps,
	};
	if (in.n_predict < 1) {
		fprintf(stderr, "simulate: the prompt (%d tokens) fills the context "
			"(%d)\n", np, n_ctx);
		return 1;
	}
	if ((rc = sim_predict(&in, prof, r, err, sizeof(err)))) {
		fprintf(stderr, "simulate: %s\n", err);
		model_free(&mi);
		return 1;
	}
	print_table(&in, prof, r, &mi, est);
	if (so.json && write_json(so.json, &in, prof, r, &mi)) {
		fprintf(stderr, "simulate: --json %s: cannot write\n", so.json);
		model_free(&mi);
		return 1;
	}
	model_free(&mi);
	free(prof);
	free(r);
	return 0;
}
