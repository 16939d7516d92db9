/*
 * util.h - small shared helpers: the out-of-memory policy and a clock.
 *
 * Small bookkeeping allocations go through xmalloc & co, which abort with
 * the size they wanted: a process that cannot get a few hundred bytes has
 * nothing sensible left to do. Model-sized allocations (weights, KV,
 * buffers) never use these; they return -ENOMEM to the caller.
 *
 * It lives in models/, the lowest layer that uses it, so that memtier/,
 * engine/, bench/ and tests/ include it downwards; kernels/ are pure and
 * must not need it.
 */
#ifndef STRATA_UTIL_H
#define STRATA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* monotonic clock in nanoseconds */
static inline int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Parse a size like "512M", "2G", "1.5G", "4096", "0" (K/M/G/T binary
 * multiples, optional trailing B/iB). Returns 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out);

#endif
