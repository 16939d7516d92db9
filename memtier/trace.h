/*
 * trace.h - Chrome trace-event recorder (loads in Perfetto / about:tracing)
 * for seeing overlap: reads in flight per segment on one track, compute per
 * layer and waits on another. Events are kept in memory and written once.
 * Any thread may record (every near-memory unit's memtier does); a NULL
 * trace records nothing.
 */
#ifndef STRATA_TRACE_H
#define STRATA_TRACE_H

#include <pthread.h>
#include <stdint.h>

enum trace_track {
	TRACE_COMPUTE = 1, /* layers computed, per token */
	TRACE_WAIT = 2,    /* acquire waiting for its segment */
	TRACE_IO = 3,      /* a segment's reads, submit to last completion */
	TRACE_FABRIC = 4,  /* collectives between chips (engine/fabric.h) */
};

struct trace_event {
	const char *name; /* static string */
	int32_t arg;      /* layer / segment number, -1 for none */
	enum trace_track track;
	int64_t t0_ns, t1_ns;
};

struct trace {
	int64_t origin_ns;
	uint64_t n, cap;
	struct trace_event *ev;
	pthread_mutex_t lock;
};

void trace_init(struct trace *t);
void trace_destroy(struct trace *t);
/* record a span [t0, t1] (now_ns clock) */
void trace_span(struct trace *t, enum trace_track track, const char *name,
		int32_t arg, int64_t t0_ns, int64_t t1_ns);
/* write {"traceEvents":[...]} to path; 0 or -errno */
int trace_write(const struct trace *t, const char *path);

#endif
