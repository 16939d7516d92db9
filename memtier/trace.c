/* trace.c - Chrome trace-event recorder, see trace.h */
#include "memtier/trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/util.h"

void trace_init(struct trace *t)
{
	memset(t, 0, sizeof(*t));
	t->origin_ns = now_ns();
	pthread_mutex_init(&t->lock, NULL);
}

void trace_destroy(struct trace *t)
{
	free(t->ev);
	pthread_mutex_destroy(&t->lock);
	memset(t, 0, sizeof(*t));
}

void trace_span(struct trace *t, enum trace_track track, const char *name,
		int32_t arg, int64_t t0_ns, int64_t t1_ns)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 4096;
		t->ev = xrealloc(t->ev, t->cap * sizeof(*t->ev));
	}
	t->ev[t->n++] = (struct trace_event){name, arg, track, t0_ns, t1_ns};
	pthread_mutex_unlock(&t->lock);
}

int trace_write(const struct trace *t, const char *path)
{
	static const char *const tracks[] = {"", "compute", "wait", "flash I/O",
					     "fabric"};
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
	for (int k = 1; k <= 4; k++)
		fprintf(f, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,"
			"\"tid\":%d,\"args\":{\"name\":\"%s\"}},\n", k, tracks[k]);
	for (uint64_t i = 0; i < t->n; i++) {
		const struct trace_event *e = &t->ev[i];
		fprintf(f, "{\"name\":\"%s %d\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,"
			"\"ts\":%.3f,\"dur\":%.3f}%s\n", e->name, e->arg,
			(int)e->track, (double)(e->t0_ns - t->origin_ns) / 1e3,
			(double)(e->t1_ns - e->t0_ns) / 1e3,
			i + 1 < t->n ? "," : "");
	}
	fprintf(f, "]}\n");
	if (ferror(f)) {
		fclose(f);
		return -EIO;
	}
	return fclose(f) ? -errno : 0;
}
