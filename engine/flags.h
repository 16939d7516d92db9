/*
 * flags.h - the `decode` command line as one table of option descriptors.
 *
 * Each row names a flag once: long name, short letter, kind, the field of
 * struct decode_options it fills, its range or choices, its default and
 * its help text. The getopt_long table, --help, range checks, error
 * messages and defaults are all derived from it, so a program that takes
 * decode's flags (decode itself, bench/simulate) gets exactly the same
 * ones by calling flags_parse.
 *
 * Adding a flag: one field in struct decode_options, one row in the table
 * in flags.c. A rule between flags goes in flags_check.
 *
 * A second program (bench/simulate) takes decode's table plus rows of its
 * own, which fill a struct of its own: flags_parse_ext with a struct
 * flags_ext. Nothing of decode's table is copied.
 */
#ifndef STRATA_FLAGS_H
#define STRATA_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/sampler.h"
#include "memtier/memtier.h"

/* Everything the decode command line says. Strings point into argv. */
struct decode_options {
	const char *model;
	const char *prompt;
	const char *prompt_file;
	int32_t n_predict;     /* -1: until EOS or the context is full */
	int32_t n_ctx;         /* 0: min(model, 4096) */
	int32_t n_batch;       /* 0: the engine's default */
	int n_threads;         /* -t; 0: one per allowed CPU */
	int n_nmus;            /* --nmus, the same setting; 0: not given */
	int nmu_on;            /* --nmu on (1) | off (0) */
	struct sampler_config samp;
	bool chat;
	const char *system;
	bool ignore_eos;
	int32_t prompt_tokens; /* > 0: synthetic prompt of this many ids */
	bool stats;
	const char *stats_json;
	const char *perplexity_file;
	const char *dump_logits;
	bool tokenize_only;
	enum memtier_kind tier;
	bool prefill_blas;
	int act_f32;           /* --act q8 (0) | f32 (1) */
	int prefetch;
	uint64_t dram_budget;  /* UINT64_MAX: not given */
	const char *trace;
	enum memtier_kind kv_tier;
	const char *flash_dir;
	int32_t kv_block;      /* 0: the KV cache's default */
	bool no_direct;
	int n_chips;           /* --chips */
	int tp;                /* --tp: enum plan_tp */
	int fabric;            /* --fabric: enum fabric_backend */
	float fabric_latency_us;
	float fabric_gbps;     /* 0: no cap */
	float fabric_timeout_s;
};

enum flags_kind {
	FLAGS_BOOL,  /* a switch without value: sets a bool field true */
	FLAGS_INT,   /* integer in [lo.i, hi.i] into an int32_t / int / int64_t
		      * / uint64_t field (4 or 8 bytes; lo.i >= 0 for unsigned) */
	FLAGS_FLOAT, /* number in [lo.f, hi.f] (NaN refused) into a float */
	FLAGS_STR,   /* the argument itself, into a const char * */
	FLAGS_SIZE,  /* "512M", "2G" ... (parse_size) into a uint64_t */
	FLAGS_ENUM,  /* one of choices[] by name, its value into an enum field */
	FLAGS_HELP,  /* -h: no field; flags_parse returns FLAGS_HELP */
};

/* one accepted name of a FLAGS_ENUM and the value it stands for */
struct flags_choice {
	const char *name;
	int value;
};

/* a bound or default of whichever type the row's kind uses */
union flags_value {
	int64_t i;    /* FLAGS_INT, FLAGS_ENUM (the value) */
	double f;     /* FLAGS_FLOAT */
	uint64_t u;   /* FLAGS_SIZE */
	const char *s; /* FLAGS_STR */
};

struct flags_opt {
	const char *name;       /* long name without "--"; unique */
	char short_name;        /* 0: none */
	enum flags_kind kind;
	size_t offset, size;    /* of the field in struct decode_options */
	union flags_value lo, hi; /* FLAGS_INT / FLAGS_FLOAT: inclusive range */
	union flags_value def;  /* FLAGS_BOOL fields default to false */
	/* FLAGS_ENUM: the names, ending with {NULL}, in the order the error
	 * message lists them; noun names the thing in that message */
	const struct flags_choice *choices;
	const char *noun;
	/* FLAGS_ENUM writes the choices joined by '|' when metavar is NULL;
	 * "{default}" in help is replaced by the default value */
	const char *metavar;
	const char *help;
};

/* a row's offset and size in a struct of type T, for a program's table */
#define FLAGS_FIELD_OF(T, f) \
	.offset = offsetof(T, f), .size = sizeof(((T *)0)->f)

/* A program's extra flags: rows whose offsets are into *dst (a struct of
 * dst_size bytes, the caller's). Names must differ from decode's. */
struct flags_ext {
	const struct flags_opt *rows;
	size_t n_rows;
	void *dst;
	size_t dst_size;
	/* the program names a model another way (--shape): -m not required */
	bool model_optional;
	/* rules between decode's and the program's flags, after decode's
	 * own; 0 or -EINVAL with a message in err. NULL: none */
	int (*check)(const struct decode_options *o, const void *dst,
		     char *err, size_t errlen);
	const char *usage;       /* after "usage: PROG "; NULL: decode's */
	const char *decode_note; /* after "decode's options" in --help */
};

/* flags_parse's result when -h / --help was given */
#define FLAGS_HELP_GIVEN 1

/* The table, *n rows. Read-only, static storage, thread-safe. */
const struct flags_opt *flags_table(size_t *n);

/* Every field of *o set to its row's default. */
void flags_defaults(struct decode_options *o);

/*
 * Parse argv into *o: defaults first, then every flag in argv, then
 * flags_check. Returns 0, FLAGS_HELP_GIVEN as soon as -h / --help is met
 * (the caller prints flags_usage and exits 0), or -EINVAL with a one-line
 * message in err (no "error: " prefix, no newline), the first problem
 * met: a value out of range, an unknown option, a missing value, a stray
 * argument, or a rule of flags_check. *o is written only when 0 is
 * returned. Uses getopt_long (resets optind, may permute argv): not
 * thread-safe.
 */
int flags_parse(int argc, char **argv, struct decode_options *o, char *err,
		size_t errlen);

/*
 * flags_parse with x's rows too: x->dst gets their defaults, then their
 * values; the model rule is skipped when x->model_optional; x->check runs
 * last. *o and x->dst are written only when 0 is returned. x may be NULL
 * (flags_parse). -EINVAL also when x names a flag twice.
 */
int flags_parse_ext(int argc, char **argv, struct decode_options *o,
		    const struct flags_ext *x, char *err, size_t errlen);

/* Every field rows[0..n) fill in the struct at dst set to its default
 * (other bytes untouched). */
void flags_defaults_rows(const struct flags_opt *rows, size_t n, void *dst);

/*
 * The rules between flags: a model is given, -p or -f but not both,
 * --dram-budget needs --tier flash, --flash-dir / --kv-block need
 * --kv-tier flash, --no-direct needs a flash tier. Returns 0 or -EINVAL
 * with the message in err as flags_parse. Thread-safe.
 */
int flags_check(const struct decode_options *o, char *err, size_t errlen);

/* "usage: PROG -m MODEL.gguf [options]" and one entry per row, aligned
 * and wrapped to 80 columns. */
void flags_usage(FILE *f, const char *prog);

/* x's usage line, x's rows, then decode's (flags_usage when x is NULL) */
void flags_usage_ext(FILE *f, const char *prog, const struct flags_ext *x);

#endif
