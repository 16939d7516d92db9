/*
 * test_flags.c - decode's option table: the defaults, every kind parsed
 * into its field, out-of-range and malformed values refused with
 * decode's messages, unknown options, missing values and stray
 * arguments, the rules between flags, -h, that *o is left alone on
 * error, and that the table itself is sound (help text, unique names and
 * letters, field sizes that fit the kind, defaults inside their ranges,
 * --help aligned and within 80 columns).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/flags.h"
#include "engine/fabric.h"

#define MAX_ARGS 80

/* flags_parse on "decode" followed by the NULL-terminated arguments */
static int parse_v(struct decode_options *o, char *err, size_t errlen,
		   va_list ap)
{
	char *argv[MAX_ARGS + 1];
	int argc = 0;
	const char *a;

	argv[argc++] = "decode";
	while ((a = va_arg(ap, const char *)) != NULL) {
		assert_true(argc < MAX_ARGS);
		argv[argc++] = (char *)a; /* getopt permutes, never writes */
	}
	argv[argc] = NULL;
	err[0] = '\0';
	return flags_parse(argc, argv, o, err, errlen);
}

static int parse(struct decode_options *o, char *err, size_t errlen, ...)
{
	va_list ap;
	int rc;

	va_start(ap, errlen);
	rc = parse_v(o, err, errlen, ap);
	va_end(ap);
	return rc;
}

/* the arguments must be refused with exactly the message want */
static void refused(const char *want, ...)
{
	struct decode_options o, before;
	char err[256];
	va_list ap;

	memset(&o, 0xa5, sizeof(o));
	before = o;
	va_start(ap, want);
	int rc = parse_v(&o, err, sizeof(err), ap);
	va_end(ap);
	assert_int_equal(rc, -EINVAL);
	assert_string_equal(err, want);
	/* outputs only on success */
	assert_memory_equal(&o, &before, sizeof(o));
}

static void check_defaults(const struct decode_options *o)
{
	assert_int_equal(o->n_predict, 128);
	assert_int_equal(o->n_ctx, 0);
	assert_int_equal(o->n_batch, 0);
	assert_int_equal(o->n_threads, 0);
	assert_int_equal(o->n_nmus, 0);
	assert_int_equal(o->nmu_on, 1);
	assert_int_equal(o->act_f32, 0);
	assert_true(o->samp.temp == 0.8f);
	assert_int_equal(o->samp.top_k, 40);
	assert_true(o->samp.top_p == 0.95f);
	assert_true(o->samp.min_p == 0.05f);
	assert_true(o->samp.repeat_penalty == 1.0f);
	assert_int_equal(o->samp.repeat_last_n, 64);
	assert_true(o->samp.seed == 42);
	assert_int_equal(o->tier, MEMTIER_DRAM);
	assert_int_equal(o->kv_tier, MEMTIER_DRAM);
	assert_int_equal(o->prefetch, 2);
	assert_true(o->dram_budget == UINT64_MAX);
	assert_int_equal(o->prompt_tokens, 0);
	assert_int_equal(o->kv_block, 0);
	assert_null(o->prompt);
	assert_null(o->prompt_file);
	assert_null(o->system);
	assert_null(o->stats_json);
	assert_null(o->perplexity_file);
	assert_null(o->dump_logits);
	assert_null(o->trace);
	assert_null(o->flash_dir);
	assert_false(o->chat || o->ignore_eos || o->stats || o->tokenize_only ||
		     o->prefill_blas || o->no_direct);
}

static void test_defaults(void **state)
{
	struct decode_options o;
	char err[256];

	memset(&o, 0xa5, sizeof(o));
	flags_defaults(&o);
	check_defaults(&o);
	assert_null(o.model);

	memset(&o, 0xa5, sizeof(o));
	assert_int_equal(parse(&o, err, sizeof(err), "-m", "x.gguf", NULL), 0);
	assert_string_equal(o.model, "x.gguf");
	check_defaults(&o);
}

static void test_each_kind(void **state)
{
	struct decode_options o;
	char err[256];

	/* short and long spellings, "--name=value" and "--name value" */
	int rc = parse(&o, err, sizeof(err), "-m", "m.gguf", "-p", "hi",
		       "-n", "-1", "--ctx-size=512", "-b", "7", "-t", "3",
		       "-s", "9223372036854775807", "--temp", "0.25",
		       "--top-k=0", "--top-p", "1", "--min-p", "0",
		       "--repeat-penalty", "1.5", "--repeat-last-n", "1048576",
		       "--chat", "--system", "be brief", "--ignore-eos",
		       "--prompt-tokens", "17", "--tier", "flash",
		       "--prefetch", "64", "--trace", "t.json",
		       "--dram-budget", "512M", "--kv-tier", "flash",
		       "--flash-dir", "/tmp", "--kv-block", "65536",
		       "--no-direct", "--prefill-blas", "--stats",
		       "--stats-json", "s.json", "--perplexity", "w.txt",
		       "--dump-logits", "l.bin", "--tokenize", NULL);
	assert_int_equal(rc, 0);
	assert_string_equal(o.model, "m.gguf");
	assert_string_equal(o.prompt, "hi");
	assert_int_equal(o.n_predict, -1);
	assert_int_equal(o.n_ctx, 512);
	assert_int_equal(o.n_batch, 7);
	assert_int_equal(o.n_threads, 3);
	assert_true(o.samp.seed == 9223372036854775807ull);
	assert_true(o.samp.temp == 0.25f);
	assert_int_equal(o.samp.top_k, 0);
	assert_true(o.samp.top_p == 1.0f);
	assert_true(o.samp.min_p == 0.0f);
	assert_true(o.samp.repeat_penalty == 1.5f);
	assert_int_equal(o.samp.repeat_last_n, 1 << 20);
	assert_true(o.chat);
	assert_string_equal(o.system, "be brief");
	assert_true(o.ignore_eos);
	assert_int_equal(o.prompt_tokens, 17);
	assert_int_equal(o.tier, MEMTIER_FLASH);
	assert_int_equal(o.prefetch, 64);
	assert_string_equal(o.trace, "t.json");
	assert_true(o.dram_budget == 512ull << 20);
	assert_int_equal(o.kv_tier, MEMTIER_FLASH);
	assert_string_equal(o.flash_dir, "/tmp");
	assert_int_equal(o.kv_block, 65536);
	assert_true(o.no_direct && o.prefill_blas && o.stats && o.tokenize_only);
	assert_string_equal(o.stats_json, "s.json");
	assert_string_equal(o.perplexity_file, "w.txt");
	assert_string_equal(o.dump_logits, "l.bin");

	/* the other ends of the ranges, the last choice, a size of 0, -f */
	rc = parse(&o, err, sizeof(err), "-m", "m", "-f", "p.txt", "-n",
		   "2147483647", "-c", "16777216", "-t", "1024", "-s", "0",
		   "--temp", "100", "--repeat-penalty", "0.001", "--tier",
		   "mmap", "--prefetch", "0", NULL);
	assert_int_equal(rc, 0);
	assert_string_equal(o.prompt_file, "p.txt");
	assert_int_equal(o.n_predict, 2147483647);
	assert_int_equal(o.n_ctx, 1 << 24);
	assert_int_equal(o.n_threads, 1024);
	assert_true(o.samp.seed == 0);
	assert_true(o.samp.temp == 100.0f);
	assert_true(o.samp.repeat_penalty == 0.001f);
	assert_int_equal(o.tier, MEMTIER_MMAP);
	assert_int_equal(o.prefetch, 0);

	rc = parse(&o, err, sizeof(err), "-m", "m", "--tier", "flash",
		   "--dram-budget", "0", NULL);
	assert_int_equal(rc, 0);
	assert_true(o.dram_budget == 0);

	/* the last of a repeated flag wins */
	rc = parse(&o, err, sizeof(err), "-m", "a", "-m", "b", "-t", "2", "-t",
		   "5", NULL);
	assert_int_equal(rc, 0);
	assert_string_equal(o.model, "b");
	assert_int_equal(o.n_threads, 5);
}

static void test_bad_values(void **state)
{
	refused("--threads: '0' is not an integer in [1, 1024]",
		"-m", "m", "-t", "0", "-p", "hi", NULL);
	refused("--threads: 'abc' is not an integer in [1, 1024]",
		"-m", "m", "-t", "abc", NULL);
	refused("--threads: '2x' is not an integer in [1, 1024]",
		"-m", "m", "-t", "2x", NULL);
	refused("--threads: '' is not an integer in [1, 1024]",
		"-m", "m", "--threads=", NULL);
	refused("--n-predict: '-2' is not an integer in [-1, 2147483647]",
		"-m", "m", "-n", "-2", NULL);
	refused("--n-predict: '2147483648' is not an integer in [-1, 2147483647]",
		"-m", "m", "-n", "2147483648", NULL);
	refused("--ctx-size: '0' is not an integer in [1, 16777216]",
		"-m", "m", "-c", "0", NULL);
	refused("--seed: '-1' is not an integer in [0, 9223372036854775807]",
		"-m", "m", "-s", "-1", NULL);
	refused("--seed: '9223372036854775808' is not an integer in "
		"[0, 9223372036854775807]", "-m", "m", "-s",
		"9223372036854775808", NULL);
	refused("--top-k: '-1' is not an integer in [0, 2147483647]",
		"-m", "m", "--top-k", "-1", NULL);
	refused("--kv-block: '0' is not an integer in [1, 65536]",
		"-m", "m", "--kv-tier", "flash", "--kv-block", "0", NULL);
	refused("--prefetch: '-1' is not an integer in [0, 64]",
		"-m", "m", "--tier", "flash", "--prefetch", "-1", NULL);
	refused("--temp: '-1' is not a number in [0, 100]",
		"-m", "m", "--temp", "-1", NULL);
	refused("--temp: 'nan' is not a number in [0, 100]",
		"-m", "m", "--temp", "nan", NULL);
	refused("--temp: '0.5x' is not a number in [0, 100]",
		"-m", "m", "--temp", "0.5x", NULL);
	refused("--top-p: '2' is not a number in [0, 1]",
		"-m", "m", "--top-p", "2", NULL);
	refused("--min-p: '1.5' is not a number in [0, 1]",
		"-m", "m", "--min-p", "1.5", NULL);
	refused("--repeat-penalty: '0' is not a number in [0.001, 100]",
		"-m", "m", "--repeat-penalty", "0", NULL);
	refused("--dram-budget: '12Q' is not a size (e.g. 0, 512M, 2G)",
		"-m", "m", "--tier", "flash", "--dram-budget", "12Q", NULL);
	refused("--dram-budget: '-1G' is not a size (e.g. 0, 512M, 2G)",
		"-m", "m", "--tier", "flash", "--dram-budget", "-1G", NULL);
	refused("--tier: unknown tier 'bogus' (dram, flash, mmap)",
		"-m", "m", "--tier", "bogus", NULL);
	refused("--tier: unknown tier 'DRAM' (dram, flash, mmap)",
		"-m", "m", "--tier", "DRAM", NULL);
	refused("--kv-tier: unknown KV tier 'mmap' (dram, flash)",
		"-m", "m", "--kv-tier", "mmap", NULL);
	refused("--nmu: unknown NMU mode 'maybe' (on, off)",
		"-m", "m", "--nmu", "maybe", NULL);
	refused("--nmus: '0' is not an integer in [1, 1024]",
		"-m", "m", "--nmus", "0", NULL);
}

/* --nmus and -t are one setting; --nmu off is the ablation */
static void test_nmu_flags(void **state)
{
	struct decode_options o;
	char err[256];

	assert_int_equal(parse(&o, err, sizeof(err), "-m", "m", "--nmus", "3",
			       "--nmu", "off", NULL), 0);
	assert_int_equal(o.n_nmus, 3);
	assert_int_equal(o.n_threads, 0);
	assert_int_equal(o.nmu_on, 0);
	assert_int_equal(parse(&o, err, sizeof(err), "-m", "m", "-t", "2",
			       "--nmus", "2", "--nmu=on", NULL), 0);
	assert_int_equal(o.nmu_on, 1);
	refused("-t 2 and --nmus 3 disagree (they are the same setting)",
		"-m", "m", "-t", "2", "--nmus", "3", NULL);
}

/* --act f32 is the float-activation check mode, q8 the default */
static void test_act_flag(void **state)
{
	struct decode_options o;
	char err[256];

	assert_int_equal(parse(&o, err, sizeof(err), "-m", "m", "--act", "f32",
			       NULL), 0);
	assert_int_equal(o.act_f32, 1);
	assert_int_equal(parse(&o, err, sizeof(err), "-m", "m", "--act=q8",
			       NULL), 0);
	assert_int_equal(o.act_f32, 0);
	refused("--act: unknown activation format 'f16' (q8, f32)",
		"-m", "m", "--act", "f16", NULL);
}

/* --fabric shm (default) | mpi */
static void test_fabric_flag(void **state)
{
	struct decode_options o;
	char err[256];

	assert_int_equal(parse(&o, err, sizeof(err), "-m", "m", NULL), 0);
	assert_int_equal(o.fabric, FABRIC_SHM);
	assert_int_equal(parse(&o, err, sizeof(err), "-m", "m", "--fabric",
			       "mpi", NULL), 0);
	assert_int_equal(o.fabric, FABRIC_MPI);
	refused("--fabric: unknown fabric 'tcp' (shm, mpi)",
		"-m", "m", "--fabric", "tcp", NULL);
}

static void test_bad_usage(void **state)
{
	refused("unknown option '--bogus' (see --help)",
		"-m", "m", "--bogus", "-p", "hi", NULL);
	refused("unknown option '-Z' (see --help)", "-m", "m", "-Z", NULL);
	/* a prefix of two long names is no name */
	refused("unknown option '--pre' (see --help)", "-m", "m", "--pre", "1",
		NULL);
	/* a switch takes no value */
	refused("unknown option '--chat=yes' (see --help)", "-m", "m",
		"--chat=yes", NULL);
	refused("-p needs a value", "-m", "m", "-p", NULL);
	refused("--temp needs a value", "-m", "m", "-p", "hi", "--temp", NULL);
	refused("unexpected argument 'extra'", "-m", "m", "-p", "hi", "extra",
		NULL);
	/* the first problem met is the one reported */
	refused("--threads: '0' is not an integer in [1, 1024]",
		"-t", "0", "--bogus", NULL);
}

static void test_help(void **state)
{
	struct decode_options o;
	char err[256];

	assert_int_equal(parse(&o, err, sizeof(err), "-h", NULL),
			 FLAGS_HELP_GIVEN);
	assert_int_equal(parse(&o, err, sizeof(err), "--help", NULL),
			 FLAGS_HELP_GIVEN);
	/* as soon as it is met: what follows is not looked at */
	assert_int_equal(parse(&o, err, sizeof(err), "-m", "m", "--help",
			       "--bogus", NULL), FLAGS_HELP_GIVEN);
	/* ... but what came before is */
	refused("--threads: '0' is not an integer in [1, 1024]",
		"-t", "0", "-h", NULL);
}

/* the rules between flags, on a struct and through flags_parse */
static void test_cross_checks(void **state)
{
	struct decode_options o;
	char err[256];

	flags_defaults(&o);
	assert_int_equal(flags_check(&o, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "no model given (-m FILE.gguf)");
	o.model = "m";
	assert_int_equal(flags_check(&o, err, sizeof(err)), 0);

	o.dram_budget = 1 << 30;
	assert_int_equal(flags_check(&o, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "--dram-budget applies to --tier flash");
	o.tier = MEMTIER_MMAP;
	assert_int_equal(flags_check(&o, err, sizeof(err)), -EINVAL);
	o.tier = MEMTIER_FLASH;
	assert_int_equal(flags_check(&o, err, sizeof(err)), 0);

	o.no_direct = true; /* --tier flash is enough */
	assert_int_equal(flags_check(&o, err, sizeof(err)), 0);
	o.tier = MEMTIER_DRAM;
	o.dram_budget = UINT64_MAX;
	assert_int_equal(flags_check(&o, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "--no-direct applies to --tier flash or "
			    "--kv-tier flash");
	o.kv_tier = MEMTIER_FLASH; /* ... and so is --kv-tier flash */
	assert_int_equal(flags_check(&o, err, sizeof(err)), 0);
	o.no_direct = false;
	o.kv_tier = MEMTIER_DRAM;

	refused("no model given (-m FILE.gguf)", NULL);
	refused("no model given (-m FILE.gguf)", "-p", "hi", NULL);
	refused("--dram-budget applies to --tier flash",
		"-m", "m", "--dram-budget", "1G", "-p", "hi", NULL);
	refused("give -p or -f, not both", "-m", "m", "-p", "hi", "-f", "p.txt",
		NULL);
	refused("--flash-dir and --kv-block apply to --kv-tier flash",
		"-m", "m", "--flash-dir", "/tmp", NULL);
	refused("--flash-dir and --kv-block apply to --kv-tier flash",
		"-m", "m", "--kv-block", "16", "--kv-tier", "dram", NULL);
	refused("--no-direct applies to --tier flash or --kv-tier flash",
		"-m", "m", "--no-direct", NULL);
	refused("--no-direct applies to --tier flash or --kv-tier flash",
		"-m", "m", "--no-direct", "--tier", "mmap", NULL);
	/* an unknown option is reported before any rule */
	refused("unknown option '--bogus' (see --help)", "--bogus", NULL);

	assert_int_equal(parse(&o, err, sizeof(err), "-m", "m", "--no-direct",
			       "--kv-tier", "flash", "--kv-block", "16",
			       "--flash-dir", "/tmp", NULL), 0);
	assert_int_equal(parse(&o, err, sizeof(err), "-m", "m", "--no-direct",
			       "--tier", "flash", NULL), 0);
}

static size_t field_size_for(enum flags_kind k, size_t size)
{
	switch (k) {
	case FLAGS_BOOL: return sizeof(bool);
	case FLAGS_INT: return size == 4 || size == 8 ? size : 0;
	case FLAGS_FLOAT: return sizeof(float);
	case FLAGS_STR: return sizeof(const char *);
	case FLAGS_SIZE: return sizeof(uint64_t);
	case FLAGS_ENUM: return sizeof(int);
	case FLAGS_HELP: return 0;
	}
	return (size_t)-1;
}

static void test_table(void **state)
{
	size_t n;
	const struct flags_opt *t = flags_table(&n);
	bool seen_help = false;

	assert_true(n > 30);
	for (size_t i = 0; i < n; i++) {
		const struct flags_opt *r = &t[i];
		bool takes_value = r->kind != FLAGS_BOOL && r->kind != FLAGS_HELP;

		assert_non_null(r->name);
		assert_true(strlen(r->name) > 1);
		assert_null(strchr(r->name, '='));
		assert_non_null(r->help);
		assert_true(strlen(r->help) > 3);
		/* a metavar for a value, none for a switch; enums name theirs */
		if (r->kind == FLAGS_ENUM)
			assert_null(r->metavar);
		else if (takes_value)
			assert_non_null(r->metavar);
		else
			assert_null(r->metavar);
		assert_true(r->short_name != '?' && r->short_name != ':');
		for (size_t j = 0; j < i; j++) {
			assert_string_not_equal(r->name, t[j].name);
			if (r->short_name)
				assert_int_not_equal(r->short_name, t[j].short_name);
			/* no field filled by two rows */
			if (r->kind != FLAGS_HELP && t[j].kind != FLAGS_HELP)
				assert_false(r->offset == t[j].offset);
		}
		if (r->kind == FLAGS_HELP) {
			seen_help = true;
			assert_int_equal(r->short_name, 'h');
			continue;
		}
		assert_int_equal(r->size, field_size_for(r->kind, r->size));
		assert_true(r->offset + r->size <= sizeof(struct decode_options));
		if (r->kind == FLAGS_INT) {
			assert_true(r->lo.i <= r->hi.i);
			if (r->size == 4)
				assert_true(r->lo.i >= INT32_MIN &&
					    r->hi.i <= INT32_MAX);
			/* 0 is "not given" where it is out of range */
			if (r->def.i != 0)
				assert_true(r->def.i >= r->lo.i &&
					    r->def.i <= r->hi.i);
		}
		if (r->kind == FLAGS_FLOAT) {
			assert_true(r->lo.f <= r->hi.f);
			assert_true(r->def.f >= r->lo.f && r->def.f <= r->hi.f);
		}
		if (r->kind == FLAGS_ENUM) {
			bool def_named = false;
			assert_non_null(r->choices);
			assert_non_null(r->noun);
			for (const struct flags_choice *c = r->choices; c->name; c++) {
				/* tiers: the names are memtier's own */
				enum memtier_kind k;
				if (strstr(r->noun, "tier")) {
					assert_int_equal(memtier_kind_parse(c->name, &k), 0);
					assert_int_equal((int)k, c->value);
				}
				def_named |= c->value == r->def.i;
			}
			assert_true(def_named);
		}
	}
	assert_true(seen_help);
}

static void test_usage(void **state)
{
	char *buf = NULL, line[256];
	size_t len = 0, n;
	const struct flags_opt *t = flags_table(&n);
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	flags_usage(f, "simulate");
	assert_int_equal(fclose(f), 0);
	assert_non_null(strstr(buf, "usage: simulate -m MODEL.gguf [options]\n"));
	assert_non_null(strstr(buf, "\n  -m, --model FILE         GGUF model "
			       "(arch llama)\n"));
	assert_non_null(strstr(buf, "\n      --temp X             temperature "
			       "(default 0.8; 0 = greedy)\n"));
	assert_non_null(strstr(buf, "\n  -n, --n-predict N        tokens to "
			       "generate (default 128;"));
	assert_non_null(strstr(buf, "\n      --tier dram|flash|mmap  where"));
	assert_non_null(strstr(buf, "\n      --kv-tier dram|flash where"));
	assert_non_null(strstr(buf, "\n  -h, --help               this text\n"));
	assert_null(strstr(buf, "{default}"));
	for (size_t i = 0; i < n; i++) {
		snprintf(line, sizeof(line), "--%s", t[i].name);
		assert_non_null(strstr(buf, line));
	}
	/* within 80 columns; flag lines start with two spaces, every
	 * continuation under the text column */
	f = fmemopen(buf, len, "r");
	assert_non_null(f);
	int lines = 0;
	while (fgets(line, sizeof(line), f)) {
		size_t l = strlen(line);
		assert_true(l <= 80); /* 79 and the newline */
		if (lines++ < 2)
			continue;
		assert_memory_equal(line, "  ", 2);
		if (line[2] == ' ' && line[6] != '-')
			assert_true(strspn(line, " ") == 27);
	}
	fclose(f);
	free(buf);
}

/* getopt's state is reset: a second parse sees the whole of argv */
static void test_parse_twice(void **state)
{
	struct decode_options o;
	char err[256];

	assert_int_equal(parse(&o, err, sizeof(err), "-m", "a", "-t", "2", NULL), 0);
	assert_int_equal(parse(&o, err, sizeof(err), "-m", "b", "-t", "4", NULL), 0);
	assert_string_equal(o.model, "b");
	assert_int_equal(o.n_threads, 4);
	/* short message buffers are cut, not overrun */
	char tiny[8];
	assert_int_equal(parse(&o, tiny, sizeof(tiny), "-t", "0", NULL), -EINVAL);
	assert_string_equal(tiny, "--threa");
}

/* ---- a second program's table: flags_parse_ext ---------------------- */

struct ext_opts {
	const char *profile;
	int32_t chips;
	float lat_us;
	int magic; /* no row: must survive the parse */
};


static const struct flags_opt ext_rows[] = {
	{"profile", 0, FLAGS_STR, FLAGS_FIELD_OF(struct ext_opts, profile),
	 .metavar = "FILE", .help = "a profile"},
	{"boards", 0, FLAGS_INT, FLAGS_FIELD_OF(struct ext_opts, chips),
	 .lo.i = 1, .hi.i = 64, .def.i = 1, .metavar = "N", .help = "boards"},
	{"wire-latency-us", 0, FLAGS_FLOAT,
	 FLAGS_FIELD_OF(struct ext_opts, lat_us), .lo.f = 0, .hi.f = 1e6,
	 .def.f = 0.5, .metavar = "X", .help = "latency (default {default})"},
};

static int ext_check(const struct decode_options *o, const void *dst,
		     char *err, size_t errlen)
{
	const struct ext_opts *e = dst;
	if (!e->profile) {
		snprintf(err, errlen, "no --profile");
		return -EINVAL;
	}
	if (!o->model && e->chips == 7) {
		snprintf(err, errlen, "seven boards need a model");
		return -EINVAL;
	}
	return 0;
}

static int parse_ext(struct decode_options *o, struct ext_opts *e,
		     bool model_optional, char *err, size_t errlen, ...)
{
	struct flags_ext x = {ext_rows, 3, e, sizeof(*e), model_optional,
			      ext_check, NULL, NULL};
	char *argv[MAX_ARGS + 1];
	int argc = 0;
	const char *a;
	va_list ap;

	argv[argc++] = "simulate";
	va_start(ap, errlen);
	while ((a = va_arg(ap, const char *)) != NULL)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;
	err[0] = '\0';
	return flags_parse_ext(argc, argv, o, &x, err, errlen);
}

static void test_ext(void **state)
{
	struct decode_options o, d;
	struct ext_opts e = {.magic = 1234};
	char err[256];

	(void)state;
	/* decode's flags and the program's, mixed, into their own structs */
	assert_int_equal(parse_ext(&o, &e, false, err, sizeof(err), "-m", "x.gguf",
				   "--boards", "4", "--tier", "flash", "--profile",
				   "p.json", "--temp", "0", "-t", "2", NULL), 0);
	assert_string_equal(o.model, "x.gguf");
	assert_int_equal(o.tier, MEMTIER_FLASH);
	assert_int_equal(o.n_threads, 2);
	assert_true(o.samp.temp == 0.0f);
	assert_string_equal(e.profile, "p.json");
	assert_int_equal(e.chips, 4);
	assert_true(e.lat_us == 0.5f); /* default filled */
	assert_int_equal(e.magic, 1234);
	/* decode's defaults are decode's */
	flags_defaults(&d);
	assert_int_equal(o.n_predict, d.n_predict);

	/* the model rule skipped only when the program says so */
	assert_int_equal(parse_ext(&o, &e, false, err, sizeof(err), "--profile",
				   "p", NULL), -EINVAL);
	assert_string_equal(err, "no model given (-m FILE.gguf)");
	assert_int_equal(parse_ext(&o, &e, true, err, sizeof(err), "--profile",
				   "p", NULL), 0);
	assert_null(o.model);

	/* the program's range messages, its check, decode's rules; nothing
	 * written on error */
	e.chips = 9;
	assert_int_equal(parse_ext(&o, &e, true, err, sizeof(err), "--profile",
				   "p", "--boards", "0", NULL), -EINVAL);
	assert_string_equal(err, "--boards: '0' is not an integer in [1, 64]");
	assert_int_equal(e.chips, 9);
	assert_int_equal(parse_ext(&o, &e, true, err, sizeof(err), NULL), -EINVAL);
	assert_string_equal(err, "no --profile");
	assert_int_equal(parse_ext(&o, &e, true, err, sizeof(err), "--profile",
				   "p", "--boards", "7", NULL), -EINVAL);
	assert_string_equal(err, "seven boards need a model");
	assert_int_equal(parse_ext(&o, &e, true, err, sizeof(err), "--profile",
				   "p", "--dram-budget", "1G", NULL), -EINVAL);
	assert_string_equal(err, "--dram-budget applies to --tier flash");
	assert_int_equal(parse_ext(&o, &e, true, err, sizeof(err), "--bogus", NULL),
			 -EINVAL);
	assert_string_equal(err, "unknown option '--bogus' (see --help)");
	assert_int_equal(parse_ext(&o, &e, true, err, sizeof(err), "-h", NULL),
			 FLAGS_HELP_GIVEN);

	/* a row that repeats one of decode's names is refused */
	static const struct flags_opt dup[] = {
		{"tier", 0, FLAGS_STR, FLAGS_FIELD_OF(struct ext_opts, profile),
		 .help = "x"},
	};
	struct flags_ext x = {dup, 1, &e, sizeof(e), true, NULL, NULL, NULL};
	char *argv[] = {"simulate", NULL};
	assert_int_equal(flags_parse_ext(1, argv, &o, &x, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "flag table: --tier defined twice");

	/* --help: the program's rows, then decode's, same layout */
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct flags_ext xu = {ext_rows, 3, &e, sizeof(e), true, NULL,
			       "--profile FILE [options]", NULL};
	flags_usage_ext(f, "simulate", &xu);
	fclose(f);
	assert_non_null(strstr(buf, "usage: simulate --profile FILE [options]"));
	assert_non_null(strstr(buf, "      --wire-latency-us X  latency (default 0.5)"));
	assert_true(strstr(buf, "--boards") < strstr(buf, "--tier"));
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_each_kind),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_bad_usage),
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_cross_checks),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_nmu_flags),
		cmocka_unit_test(test_act_flag),
		cmocka_unit_test(test_fabric_flag),
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_parse_twice),
		cmocka_unit_test(test_ext),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
