/* flags.c - decode's option table and what is derived from it, see flags.h */
#include "engine/flags.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "engine/plan.h"
#include "engine/fabric.h"
#include "models/util.h"

/* offset and size of a field of struct decode_options, for a table row */
#define FLAGS_FIELD(f) \
	.offset = offsetof(struct decode_options, f), \
	.size = sizeof(((struct decode_options *)0)->f)

/* in the order the "unknown tier" messages list them (the enum's order) */
static const struct flags_choice tier_choices[] = {
	{"dram", MEMTIER_DRAM},
	{"flash", MEMTIER_FLASH},
	{"mmap", MEMTIER_MMAP},
	{NULL, 0},
};

/* the KV cache has no page-cache mapping */
static const struct flags_choice kv_tier_choices[] = {
	{"dram", MEMTIER_DRAM},
	{"flash", MEMTIER_FLASH},
	{NULL, 0},
};

static const struct flags_choice tp_choices[] = {
	{"rows", PLAN_TP_ROWS},
	{"allreduce", PLAN_TP_ALLREDUCE},
	{NULL, 0},
};

static const struct flags_choice fabric_choices[] = {
	{"shm", FABRIC_SHM},
	{"mpi", FABRIC_MPI},
	{NULL, 0},
};

static const struct flags_choice act_choices[] = {
	{"q8", 0},
	{"f32", 1},
	{NULL, 0},
};

static const struct flags_choice nmu_choices[] = {
	{"on", 1},
	{"off", 0},
	{NULL, 0},
};

/* The one place a flag is written. --help lists the rows in this order. */
static const struct flags_opt table[] = {
	{"model", 'm', FLAGS_STR, FLAGS_FIELD(model), .metavar = "FILE",
	 .help = "GGUF model (arch llama)"},
	{"prompt", 'p', FLAGS_STR, FLAGS_FIELD(prompt), .metavar = "TEXT",
	 .help = "prompt"},
	{"file", 'f', FLAGS_STR, FLAGS_FIELD(prompt_file), .metavar = "FILE",
	 .help = "read the prompt from FILE"},
	{"n-predict", 'n', FLAGS_INT, FLAGS_FIELD(n_predict),
	 .lo.i = -1, .hi.i = INT32_MAX, .def.i = 128, .metavar = "N",
	 .help = "tokens to generate (default {default}; -1: until EOS or the "
		 "context is full)"},
	{"ctx-size", 'c', FLAGS_INT, FLAGS_FIELD(n_ctx),
	 .lo.i = 1, .hi.i = 1 << 24, .metavar = "N",
	 .help = "context size (default min(model, 4096))"},
	{"batch-size", 'b', FLAGS_INT, FLAGS_FIELD(n_batch),
	 .lo.i = 1, .hi.i = 4096, .metavar = "N",
	 .help = "prompt tokens per prefill step (default 128)"},
	{"threads", 't', FLAGS_INT, FLAGS_FIELD(n_threads),
	 .lo.i = 1, .hi.i = 1024, .metavar = "N",
	 .help = "threads = near-memory units (default: one per CPU this "
		 "process may run on)"},
	{"nmus", 0, FLAGS_INT, FLAGS_FIELD(n_nmus),
	 .lo.i = 1, .hi.i = 1024, .metavar = "N",
	 .help = "near-memory units, each a thread pinned to one CPU that owns "
		 "its share of every weight matrix and of the KV heads (same as "
		 "-t; default: one per CPU)"},
	{"chips", 0, FLAGS_INT, FLAGS_FIELD(n_chips), .lo.i = 1, .hi.i = 64,
	 .def.i = 1, .metavar = "N",
	 .help = "chips: processes holding a tensor-parallel slice of every "
		 "layer each (with their own NMUs, tiers and KV cache), joined "
		 "by the fabric (default {default}; --fabric mpi: the ranks)"},
	{"tp", 0, FLAGS_ENUM, FLAGS_FIELD(tp), .def.i = PLAN_TP_ROWS,
	 .choices = tp_choices, .noun = "tensor-parallel scheme",
	 .help = "rows: each chip owns whole output rows, all-gathered after "
		 "each projection (same logits as one chip); allreduce: "
		 "Megatron's split, Wo and ffn_down by input columns, two "
		 "all-reduces a layer (default {default})"},
	{"fabric", 0, FLAGS_ENUM, FLAGS_FIELD(fabric), .def.i = FABRIC_SHM,
	 .choices = fabric_choices, .noun = "fabric",
	 .help = "shm: --chips processes on this host, joined by shared memory; "
		 "mpi: the chips are the ranks of `mpirun -np N ./decode ...` "
		 "on any hosts, joined by Open MPI's collectives (default "
		 "{default})"},
	{"fabric-latency-us", 0, FLAGS_FLOAT, FLAGS_FIELD(fabric_latency_us),
	 .lo.f = 0, .hi.f = 1e6, .def.f = 0, .metavar = "X",
	 .help = "emulated latency added to every hop of every collective, a "
		 "calibrated spin (default {default})"},
	{"fabric-gbps", 0, FLAGS_FLOAT, FLAGS_FIELD(fabric_gbps), .lo.f = 0,
	 .hi.f = 1e6, .def.f = 0, .metavar = "Y",
	 .help = "emulated bandwidth of each chip's link in GB/s (default: "
		 "0, the shared memory as it is)"},
	{"fabric-timeout-s", 0, FLAGS_FLOAT, FLAGS_FIELD(fabric_timeout_s),
	 .lo.f = 0.01, .hi.f = 1e6, .def.f = 30, .metavar = "S",
	 .help = "a chip that has not reached a collective after S seconds "
		 "ends the run (default {default})"},
	{"nmu", 0, FLAGS_ENUM, FLAGS_FIELD(nmu_on), .def.i = 1,
	 .choices = nmu_choices, .noun = "NMU mode",
	 .help = "off: the same code as a plain thread pool (unpinned, one "
		 "shared copy of the weights and KV cache, no ownership), the "
		 "ablation of near-memory placement (default on)"},
	{"seed", 's', FLAGS_INT, FLAGS_FIELD(samp.seed),
	 .lo.i = 0, .hi.i = INT64_MAX, .def.i = 42, .metavar = "N",
	 .help = "sampling seed (default {default})"},
	{"temp", 0, FLAGS_FLOAT, FLAGS_FIELD(samp.temp),
	 .lo.f = 0, .hi.f = 100, .def.f = 0.8, .metavar = "X",
	 .help = "temperature (default {default}; 0 = greedy)"},
	{"top-k", 0, FLAGS_INT, FLAGS_FIELD(samp.top_k),
	 .lo.i = 0, .hi.i = INT32_MAX, .def.i = 40, .metavar = "N",
	 .help = "top-k (default {default}; 0 = off)"},
	{"top-p", 0, FLAGS_FLOAT, FLAGS_FIELD(samp.top_p),
	 .lo.f = 0, .hi.f = 1, .def.f = 0.95, .metavar = "X",
	 .help = "top-p (default {default}; 1 = off)"},
	{"min-p", 0, FLAGS_FLOAT, FLAGS_FIELD(samp.min_p),
	 .lo.f = 0, .hi.f = 1, .def.f = 0.05, .metavar = "X",
	 .help = "min-p (default {default}; 0 = off)"},
	{"repeat-penalty", 0, FLAGS_FLOAT, FLAGS_FIELD(samp.repeat_penalty),
	 .lo.f = 1e-3, .hi.f = 100, .def.f = 1.0, .metavar = "X",
	 .help = "repetition penalty (default {default} = off)"},
	{"repeat-last-n", 0, FLAGS_INT, FLAGS_FIELD(samp.repeat_last_n),
	 .lo.i = 0, .hi.i = 1 << 20, .def.i = 64, .metavar = "N",
	 .help = "tokens the penalty looks back (default {default})"},
	{"chat", 0, FLAGS_BOOL, FLAGS_FIELD(chat),
	 .help = "wrap the prompt in the model's chat template"},
	{"system", 0, FLAGS_STR, FLAGS_FIELD(system), .metavar = "TEXT",
	 .help = "system message for --chat"},
	{"ignore-eos", 0, FLAGS_BOOL, FLAGS_FIELD(ignore_eos),
	 .help = "keep generating past end-of-sequence"},
	{"prompt-tokens", 0, FLAGS_INT, FLAGS_FIELD(prompt_tokens),
	 .lo.i = 1, .hi.i = 1 << 20, .metavar = "N",
	 .help = "use N fixed token ids as the prompt (benchmarks)"},
	{"tier", 0, FLAGS_ENUM, FLAGS_FIELD(tier), .def.i = MEMTIER_DRAM,
	 .choices = tier_choices, .noun = "tier",
	 .help = "where the weights live (default {default}): a resident "
		 "copy, the file streamed with io_uring + O_DIRECT every "
		 "token, or the page-cache mapping"},
	{"prefetch", 0, FLAGS_INT, FLAGS_FIELD(prefetch),
	 .lo.i = 0, .hi.i = 64, .def.i = 2, .metavar = "N",
	 .help = "flash tier: segments (layers) read ahead (default "
		 "{default})"},
	{"trace", 0, FLAGS_STR, FLAGS_FIELD(trace), .metavar = "FILE",
	 .help = "Chrome trace-event JSON of compute per layer, waits and "
		 "flash reads in flight (open in Perfetto)"},
	{"dram-budget", 0, FLAGS_SIZE, FLAGS_FIELD(dram_budget),
	 .def.u = UINT64_MAX, .metavar = "SIZE",
	 .help = "flash tier: weights kept resident (e.g. 512M, 2G; whole "
		 "layers in read order), the rest streamed"},
	{"kv-tier", 0, FLAGS_ENUM, FLAGS_FIELD(kv_tier), .def.i = MEMTIER_DRAM,
	 .choices = kv_tier_choices, .noun = "KV tier",
	 .help = "where the KV cache lives (default {default}); flash: a file "
		 "in --flash-dir, full blocks written and read back with "
		 "io_uring, --prefetch layers ahead"},
	{"flash-dir", 0, FLAGS_STR, FLAGS_FIELD(flash_dir), .metavar = "DIR",
	 .help = "directory of the KV file (default: the model's); the file "
		 "has no name and leaves nothing behind"},
	{"kv-block", 0, FLAGS_INT, FLAGS_FIELD(kv_block),
	 .lo.i = 1, .hi.i = 1 << 16, .metavar = "N",
	 .help = "tokens per KV block (default 64, rounded up to whole 4 KiB "
		 "pages)"},
	{"no-direct", 0, FLAGS_BOOL, FLAGS_FIELD(no_direct),
	 .help = "flash tiers: buffered I/O through the page cache, for file "
		 "systems that refuse O_DIRECT"},
	{"prefill-blas", 0, FLAGS_BOOL, FLAGS_FIELD(prefill_blas),
	 .help = "prefill quantized weights as dequantized tiles x OpenBLAS "
		 "SGEMM instead of the int8 kernels"},
	{"act", 0, FLAGS_ENUM, FLAGS_FIELD(act_f32), .def.i = 0,
	 .choices = act_choices, .noun = "activation format",
	 .help = "matmul inputs (default {default}): q8 rounds them to 8-bit "
		 "blocks as llama.cpp does; f32 keeps them float for every "
		 "weight type (a check mode: logits within float rounding of "
		 "a float64 reference, slower)"},
	{"stats", 0, FLAGS_BOOL, FLAGS_FIELD(stats),
	 .help = "print measured statistics to stderr"},
	{"stats-json", 0, FLAGS_STR, FLAGS_FIELD(stats_json), .metavar = "FILE",
	 .help = "write them as JSON"},
	{"perplexity", 0, FLAGS_STR, FLAGS_FIELD(perplexity_file),
	 .metavar = "FILE",
	 .help = "perplexity of FILE over chunks of -c tokens"},
	{"dump-logits", 0, FLAGS_STR, FLAGS_FIELD(dump_logits), .metavar = "FILE",
	 .help = "write float32 logits of every evaluated position"},
	{"tokenize", 0, FLAGS_BOOL, FLAGS_FIELD(tokenize_only),
	 .help = "print the prompt's token ids and exit"},
	{"help", 'h', FLAGS_HELP, .help = "this text"},
};

#define N_ROWS (sizeof(table) / sizeof(table[0]))

/* getopt_long's value for row i: its letter, or past every char */
#define LONG_ONLY_BASE 256

const struct flags_opt *flags_table(size_t *n)
{
	*n = N_ROWS;
	return table;
}

/* -EINVAL with the message in err */
static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* the field row r fills in the struct at base */
static void *field(void *base, const struct flags_opt *r)
{
	return (char *)base + r->offset;
}

/* store an integer already in the row's range, at the field's width */
static void store_int(void *o, const struct flags_opt *r, int64_t v)
{
	if (r->size == sizeof(int32_t)) {
		int32_t v32 = (int32_t)v;
		memcpy(field(o, r), &v32, sizeof(v32));
	} else {
		memcpy(field(o, r), &v, sizeof(v));
	}
}

void flags_defaults_rows(const struct flags_opt *rows, size_t n, void *o)
{
	for (size_t i = 0; i < n; i++) {
		const struct flags_opt *r = &rows[i];
		int e = (int)r->def.i;
		float f = (float)r->def.f;

		switch (r->kind) {
		case FLAGS_INT: store_int(o, r, r->def.i); break;
		case FLAGS_FLOAT: memcpy(field(o, r), &f, sizeof(f)); break;
		case FLAGS_STR: memcpy(field(o, r), &r->def.s, sizeof(r->def.s)); break;
		case FLAGS_SIZE: memcpy(field(o, r), &r->def.u, sizeof(r->def.u)); break;
		case FLAGS_ENUM: memcpy(field(o, r), &e, sizeof(e)); break;
		case FLAGS_BOOL: /* false, as memset left it */
		case FLAGS_HELP: break;
		}
	}
}

void flags_defaults(struct decode_options *o)
{
	memset(o, 0, sizeof(*o));
	flags_defaults_rows(table, N_ROWS, o);
}

/* the choices of an enum row joined by sep: "dram, flash, mmap" */
static void join_choices(const struct flags_opt *r, const char *sep,
			 char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (const struct flags_choice *c = r->choices; c->name; c++) {
		int w = snprintf(buf + at, len - at, "%s%s",
				 c == r->choices ? "" : sep, c->name);
		if (w < 0 || (size_t)w >= len - at)
			return;
		at += (size_t)w;
	}
}

/* one value for row r into *o; 0 or -EINVAL with the message */
static int parse_value(const struct flags_opt *r, const char *s, void *o,
		       char *err, size_t errlen)
{
	char *end;

	switch (r->kind) {
	case FLAGS_INT: {
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (errno || end == s || *end || v < r->lo.i || v > r->hi.i)
			return fail(err, errlen, "--%s: '%s' is not an integer "
				    "in [%lld, %lld]", r->name, s,
				    (long long)r->lo.i, (long long)r->hi.i);
		store_int(o, r, v);
		return 0;
	}
	case FLAGS_FLOAT: {
		errno = 0;
		double v = strtod(s, &end);
		if (errno || end == s || *end || !(v >= r->lo.f && v <= r->hi.f))
			return fail(err, errlen, "--%s: '%s' is not a number in "
				    "[%g, %g]", r->name, s, r->lo.f, r->hi.f);
		float f = (float)v;
		memcpy(field(o, r), &f, sizeof(f));
		return 0;
	}
	case FLAGS_SIZE: {
		uint64_t v;
		if (parse_size(s, &v))
			return fail(err, errlen, "--%s: '%s' is not a size (e.g. "
				    "0, 512M, 2G)", r->name, s);
		memcpy(field(o, r), &v, sizeof(v));
		return 0;
	}
	case FLAGS_ENUM: {
		char names[256];
		for (const struct flags_choice *c = r->choices; c->name; c++) {
			if (strcmp(c->name, s) == 0) {
				memcpy(field(o, r), &c->value, sizeof(c->value));
				return 0;
			}
		}
		join_choices(r, ", ", names, sizeof(names));
		return fail(err, errlen, "--%s: unknown %s '%s' (%s)", r->name,
			    r->noun, s, names);
	}
	case FLAGS_STR:
		memcpy(field(o, r), &s, sizeof(s));
		return 0;
	case FLAGS_BOOL: {
		bool t = true;
		memcpy(field(o, r), &t, sizeof(t));
		return 0;
	}
	case FLAGS_HELP:
		break;
	}
	return 0;
}

/* The rows a parse knows: decode's table, then the extra program's (may
 * be empty). Row i of the whole is table[i] or ext->rows[i - N_ROWS]. */
struct rowset {
	const struct flags_ext *ext; /* NULL: decode's alone */
	size_t n;
};

static struct rowset rowset_of(const struct flags_ext *x)
{
	return (struct rowset){ x, N_ROWS + (x ? x->n_rows : 0) };
}

static const struct flags_opt *row_at(const struct rowset *rs, size_t i)
{
	return i < N_ROWS ? &table[i] : &rs->ext->rows[i - N_ROWS];
}

/* getopt_long's tables from the rows; *shorts and the result are the
 * caller's to free */
static struct option *getopt_tables(const struct rowset *rs, char **shorts)
{
	struct option *longs = xcalloc(rs->n + 1, sizeof(*longs));
	char *s = xmalloc(2 * rs->n + 2);
	size_t at = 0;

	s[at++] = ':'; /* a missing value is ':', not '?' */
	for (size_t i = 0; i < rs->n; i++) {
		const struct flags_opt *r = row_at(rs, i);
		bool arg = r->kind != FLAGS_BOOL && r->kind != FLAGS_HELP;

		longs[i] = (struct option){
			.name = r->name,
			.has_arg = arg ? required_argument : no_argument,
			.val = r->short_name ? r->short_name
					     : LONG_ONLY_BASE + (int)i,
		};
		if (r->short_name) {
			s[at++] = r->short_name;
			if (arg)
				s[at++] = ':';
		}
	}
	s[at] = '\0';
	*shorts = s;
	return longs;
}

/* the index of the row getopt_long's value c stands for; -1 if none */
static long row_of(const struct rowset *rs, int c)
{
	if (c >= LONG_ONLY_BASE && c < LONG_ONLY_BASE + (int)rs->n)
		return c - LONG_ONLY_BASE;
	for (size_t i = 0; i < rs->n && c > 0; i++)
		if (row_at(rs, i)->short_name == c)
			return (long)i;
	return -1;
}

/* an extra table must not name a flag decode's table (or itself) names */
static int check_names(const struct rowset *rs, char *err, size_t errlen)
{
	for (size_t i = N_ROWS; i < rs->n; i++) {
		const struct flags_opt *r = row_at(rs, i);
		for (size_t j = 0; j < i; j++) {
			const struct flags_opt *q = row_at(rs, j);
			if (strcmp(q->name, r->name) == 0 ||
			    (r->short_name && r->short_name == q->short_name))
				return fail(err, errlen, "flag table: --%s defined "
					    "twice", r->name);
		}
	}
	return 0;
}

/* the rules of flags_check; the model rule only when need_model */
static int check_rules(const struct decode_options *o, bool need_model,
		       char *err, size_t errlen);

int flags_parse_ext(int argc, char **argv, struct decode_options *o,
		    const struct flags_ext *x, char *err, size_t errlen)
{
	struct rowset rs = rowset_of(x);
	struct decode_options t;
	void *xt = NULL;
	char *shorts;
	struct option *longs;
	int c, rc;

	if ((rc = check_names(&rs, err, errlen)))
		return rc;
	flags_defaults(&t);
	if (x) {
		xt = xcalloc(1, x->dst_size);
		memcpy(xt, x->dst, x->dst_size);
		flags_defaults_rows(x->rows, x->n_rows, xt);
	}
	longs = getopt_tables(&rs, &shorts);
	optind = 0; /* glibc: start afresh, a second parse included */
	opterr = 0;
	while (!rc && (c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		long i = row_of(&rs, c);
		const struct flags_opt *r = i < 0 ? NULL : row_at(&rs, (size_t)i);

		if (c == ':')
			rc = fail(err, errlen, "%s needs a value", argv[optind - 1]);
		else if (!r)
			rc = fail(err, errlen, "unknown option '%s' (see --help)",
				  argv[optind - 1]);
		else if (r->kind == FLAGS_HELP)
			rc = FLAGS_HELP_GIVEN;
		else
			rc = parse_value(r, optarg, (size_t)i < N_ROWS ? (void *)&t : xt,
					 err, errlen);
	}
	free(longs);
	free(shorts);
	if (!rc && optind < argc)
		rc = fail(err, errlen, "unexpected argument '%s'", argv[optind]);
	if (!rc)
		rc = check_rules(&t, !(x && x->model_optional), err, errlen);
	if (!rc && x && x->check)
		rc = x->check(&t, xt, err, errlen);
	if (!rc) {
		*o = t;
		if (x)
			memcpy(x->dst, xt, x->dst_size);
	}
	free(xt);
	return rc;
}

int flags_parse(int argc, char **argv, struct decode_options *o, char *err,
		size_t errlen)
{
	return flags_parse_ext(argc, argv, o, NULL, err, errlen);
}

int flags_check(const struct decode_options *o, char *err, size_t errlen)
{
	return check_rules(o, true, err, errlen);
}

static int check_rules(const struct decode_options *o, bool need_model,
		       char *err, size_t errlen)
{
	if (need_model && !o->model)
		return fail(err, errlen, "no model given (-m FILE.gguf)");
	if (o->dram_budget != UINT64_MAX && o->tier != MEMTIER_FLASH)
		return fail(err, errlen, "--dram-budget applies to --tier flash");
	if (o->prompt && o->prompt_file)
		return fail(err, errlen, "give -p or -f, not both");
	if ((o->flash_dir || o->kv_block) && o->kv_tier != MEMTIER_FLASH)
		return fail(err, errlen, "--flash-dir and --kv-block apply to "
			    "--kv-tier flash");
	if (o->n_threads && o->n_nmus && o->n_threads != o->n_nmus)
		return fail(err, errlen, "-t %d and --nmus %d disagree (they "
			    "are the same setting)", o->n_threads, o->n_nmus);
	if (o->no_direct && o->tier != MEMTIER_FLASH &&
	    o->kv_tier != MEMTIER_FLASH)
		return fail(err, errlen, "--no-direct applies to --tier flash or "
			    "--kv-tier flash");
	return 0;
}

/* the row's default as --help shows it */
static void format_default(const struct flags_opt *r, char *buf, size_t len)
{
	snprintf(buf, len, "?");
	switch (r->kind) {
	case FLAGS_INT: snprintf(buf, len, "%lld", (long long)r->def.i); break;
	case FLAGS_FLOAT: snprintf(buf, len, "%g", r->def.f); break;
	case FLAGS_SIZE: snprintf(buf, len, "%llu", (unsigned long long)r->def.u); break;
	case FLAGS_STR: snprintf(buf, len, "%s", r->def.s ? r->def.s : "none"); break;
	case FLAGS_ENUM:
		for (const struct flags_choice *c = r->choices; c->name; c++)
			if (c->value == r->def.i)
				snprintf(buf, len, "%s", c->name);
		break;
	case FLAGS_BOOL: snprintf(buf, len, "off"); break;
	case FLAGS_HELP: break;
	}
}

/* r's help with "{default}" replaced */
static void expand_help(const struct flags_opt *r, char *buf, size_t len)
{
	static const char key[] = "{default}";
	const char *s = r->help, *k = strstr(s, key);
	char def[64];

	if (!k) {
		snprintf(buf, len, "%s", s);
		return;
	}
	format_default(r, def, sizeof(def));
	snprintf(buf, len, "%.*s%s%s", (int)(k - s), s, def, k + sizeof(key) - 1);
}

/* help text starts in this column; lines end before HELP_WIDTH */
#define HELP_COL 27
#define HELP_WIDTH 80

/* one entry per row of rows[n], aligned and wrapped */
static void usage_rows(FILE *f, const struct flags_opt *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct flags_opt *r = &rows[i];
		char left[128], meta[128], help[1024];
		int n;

		meta[0] = '\0';
		if (r->metavar)
			snprintf(meta, sizeof(meta), " %s", r->metavar);
		else if (r->kind == FLAGS_ENUM) {
			meta[0] = ' ';
			join_choices(r, "|", meta + 1, sizeof(meta) - 1);
		}
		if (r->short_name)
			n = snprintf(left, sizeof(left), "  -%c, --%s%s",
				     r->short_name, r->name, meta);
		else
			n = snprintf(left, sizeof(left), "      --%s%s", r->name,
				     meta);
		/* a long left part pushes the first line's text two spaces on */
		fprintf(f, "%s%*s", left, n < HELP_COL ? HELP_COL - n : 2, "");
		int col = n < HELP_COL ? HELP_COL : n + 2;

		/* words, wrapped under the text column */
		expand_help(r, help, sizeof(help));
		bool first = true;
		char *save;
		for (char *w = strtok_r(help, " ", &save); w;
		     w = strtok_r(NULL, " ", &save)) {
			int wl = (int)strlen(w);
			if (!first && col + 1 + wl >= HELP_WIDTH) {
				fprintf(f, "\n%*s", HELP_COL, "");
				col = HELP_COL;
				first = true;
			}
			col += fprintf(f, "%s%s", first ? "" : " ", w);
			first = false;
		}
		fputc('\n', f);
	}
}

void flags_usage(FILE *f, const char *prog)
{
	flags_usage_ext(f, prog, NULL);
}

void flags_usage_ext(FILE *f, const char *prog, const struct flags_ext *x)
{
	if (x && x->usage)
		fprintf(f, "usage: %s %s\n\n", prog, x->usage);
	else
		fprintf(f, "usage: %s -m MODEL.gguf [options]\n\n", prog);
	if (x && x->n_rows) {
		fprintf(f, "%s's own options:\n", prog);
		usage_rows(f, x->rows, x->n_rows);
		fprintf(f, "\ndecode's options%s:\n", x->decode_note ? x->decode_note : "");
	}
	usage_rows(f, table, N_ROWS);
}
