/*
 * gguf_write.c - GGUF v3 writer for mkmodel, requantization and tests.
 *
 * Metadata and tensors are collected in memory, then written in one pass
 * to "<path>.tmp.XXXXXX" in the same directory and renamed into place, so a
 * failed write (disk full, I/O error) never leaves a partial file at path.
 */
#include "models/gguf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/kern.h"
#include "models/util.h"

void gguf_writer_init(struct gguf_writer *w)
{
	memset(w, 0, sizeof(*w));
	w->version = 3;
	w->alignment = GGUF_DEFAULT_ALIGNMENT;
}

static void free_val(struct gguf_value *v)
{
	if (v->type == GGUF_T_STRING) {
		free(v->v.str.s);
	} else if (v->type == GGUF_T_ARRAY) {
		if (v->v.arr.type == GGUF_T_STRING) {
			struct gguf_str *s = v->v.arr.data;
			for (uint64_t i = 0; i < v->v.arr.n; i++)
				free(s[i].s);
		}
		free(v->v.arr.data);
	}
}

void gguf_writer_destroy(struct gguf_writer *w)
{
	for (uint64_t i = 0; i < w->n_kv; i++) {
		free(w->kv[i].key.s);
		free_val(&w->kv[i].val);
	}
	for (uint64_t i = 0; i < w->n_tensors; i++) {
		free(w->tensors[i].name.s);
		free(w->tensor_data[i]);
	}
	free(w->kv);
	free(w->tensors);
	free(w->tensor_data);
	memset(w, 0, sizeof(*w));
}

static struct gguf_str dup_str(const char *s)
{
	struct gguf_str r = {strlen(s), xstrdup(s)};
	return r;
}

/* slot for key: replaces an existing key of that name */
static struct gguf_value *new_kv(struct gguf_writer *w, const char *key)
{
	for (uint64_t i = 0; i < w->n_kv; i++)
		if (!strcmp(w->kv[i].key.s, key)) {
			free_val(&w->kv[i].val);
			memset(&w->kv[i].val, 0, sizeof(w->kv[i].val));
			return &w->kv[i].val;
		}
	if (w->n_kv == w->cap_kv) {
		w->cap_kv = w->cap_kv ? 2 * w->cap_kv : 32;
		w->kv = xrealloc(w->kv, w->cap_kv * sizeof(*w->kv));
	}
	struct gguf_kv *kv = &w->kv[w->n_kv++];
	memset(kv, 0, sizeof(*kv));
	kv->key = dup_str(key);
	return &kv->val;
}

void gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
	struct gguf_value *x = new_kv(w, key);
	x->type = GGUF_T_UINT32;
	x->v.u64 = v;
}

void gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
	struct gguf_value *x = new_kv(w, key);
	x->type = GGUF_T_INT32;
	x->v.i64 = v;
}

void gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
	struct gguf_value *x = new_kv(w, key);
	x->type = GGUF_T_FLOAT32;
	x->v.f64 = v;
}

void gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
	struct gguf_value *x = new_kv(w, key);
	x->type = GGUF_T_BOOL;
	x->v.u64 = v;
}

void gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v)
{
	struct gguf_value *x = new_kv(w, key);
	x->type = GGUF_T_STRING;
	x->v.str = dup_str(v);
}

static size_t el_size(enum gguf_vtype t)
{
	switch (t) {
	case GGUF_T_UINT8: case GGUF_T_INT8: case GGUF_T_BOOL: return 1;
	case GGUF_T_UINT16: case GGUF_T_INT16: return 2;
	case GGUF_T_UINT32: case GGUF_T_INT32: case GGUF_T_FLOAT32: return 4;
	case GGUF_T_UINT64: case GGUF_T_INT64: case GGUF_T_FLOAT64: return 8;
	default: return 0;
	}
}

void gguf_writer_set_arr(struct gguf_writer *w, const char *key,
			 enum gguf_vtype etype, const void *data, uint64_t n)
{
	struct gguf_value *x = new_kv(w, key);
	size_t bytes = el_size(etype) * n;

	x->type = GGUF_T_ARRAY;
	x->v.arr.type = etype;
	x->v.arr.n = n;
	x->v.arr.data = xmalloc(bytes ? bytes : 1);
	memcpy(x->v.arr.data, data, bytes);
}

void gguf_writer_set_str_arr(struct gguf_writer *w, const char *key,
			     const char *const *strs, uint64_t n)
{
	struct gguf_value *x = new_kv(w, key);
	struct gguf_str *s = xmalloc((n ? n : 1) * sizeof(*s));

	for (uint64_t i = 0; i < n; i++)
		s[i] = dup_str(strs[i]);
	x->type = GGUF_T_ARRAY;
	x->v.arr.type = GGUF_T_STRING;
	x->v.arr.n = n;
	x->v.arr.data = s;
}

static int add_tensor(struct gguf_writer *w, const char *name, uint32_t type,
		      uint32_t n_dims, const int64_t *ne, const void *data)
{
	struct gguf_tensor t = {0};
	int64_t rb = kern_row_bytes(type, ne[0]);

	if (n_dims == 0 || n_dims > GGUF_MAX_DIMS || rb < 0)
		return -EINVAL;
	t.n_dims = n_dims;
	t.type = type;
	t.n_rows = 1;
	for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
		t.ne[d] = d < n_dims ? ne[d] : 1;
		if (t.ne[d] <= 0)
			return -EINVAL;
		if (d > 0)
			t.n_rows *= t.ne[d];
	}
	t.row_bytes = (uint64_t)rb;
	t.n_bytes = t.row_bytes * (uint64_t)t.n_rows;
	void *copy = NULL;
	if (data) {
		copy = malloc(t.n_bytes);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, data, t.n_bytes);
	}
	if (w->n_tensors == w->cap_tensors) {
		w->cap_tensors = w->cap_tensors ? 2 * w->cap_tensors : 64;
		w->tensors = xrealloc(w->tensors, w->cap_tensors * sizeof(*w->tensors));
		w->tensor_data = xrealloc(w->tensor_data,
					  w->cap_tensors * sizeof(*w->tensor_data));
	}
	t.name = dup_str(name);
	w->tensors[w->n_tensors] = t;
	w->tensor_data[w->n_tensors] = copy;
	w->n_tensors++;
	return 0;
}

void gguf_writer_set_value(struct gguf_writer *w, const char *key,
			   const struct gguf_value *v)
{
	if (v->type == GGUF_T_STRING) {
		gguf_writer_set_str(w, key, v->v.str.s);
	} else if (v->type == GGUF_T_ARRAY && v->v.arr.type == GGUF_T_STRING) {
		const struct gguf_str *s = v->v.arr.data;
		const char **p = xmalloc((v->v.arr.n ? v->v.arr.n : 1) * sizeof(*p));
		for (uint64_t i = 0; i < v->v.arr.n; i++)
			p[i] = s[i].s;
		gguf_writer_set_str_arr(w, key, p, v->v.arr.n);
		free(p);
	} else if (v->type == GGUF_T_ARRAY) {
		gguf_writer_set_arr(w, key, v->v.arr.type, v->v.arr.data, v->v.arr.n);
	} else {
		struct gguf_value *x = new_kv(w, key);
		*x = *v;
	}
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name,
			   uint32_t type, uint32_t n_dims, const int64_t *ne,
			   const void *data)
{
	return data ? add_tensor(w, name, type, n_dims, ne, data) : -EINVAL;
}

int gguf_writer_add_tensor_lazy(struct gguf_writer *w, const char *name,
				uint32_t type, uint32_t n_dims,
				const int64_t *ne)
{
	return add_tensor(w, name, type, n_dims, ne, NULL);
}

/* buffered output with sticky error */
struct out {
	FILE *f;
	uint64_t pos;
	int err;
};

static void put(struct out *o, const void *p, size_t n)
{
	if (o->err || n == 0)
		return;
	if (fwrite(p, 1, n, o->f) != n)
		o->err = errno ? -errno : -EIO;
	o->pos += n;
}

static void put_u32(struct out *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(struct out *o, uint64_t v) { put(o, &v, 8); }

static void put_str(struct out *o, const struct gguf_str *s)
{
	put_u64(o, s->len);
	put(o, s->s, s->len);
}

static void put_scalar(struct out *o, enum gguf_vtype t, const struct gguf_value *v)
{
	switch (t) {
	case GGUF_T_UINT8: case GGUF_T_INT8: case GGUF_T_BOOL:
		{ uint8_t x = (uint8_t)v->v.u64; put(o, &x, 1); } break;
	case GGUF_T_UINT16: case GGUF_T_INT16:
		{ uint16_t x = (uint16_t)v->v.u64; put(o, &x, 2); } break;
	case GGUF_T_UINT32: case GGUF_T_INT32:
		put_u32(o, (uint32_t)v->v.u64); break;
	case GGUF_T_FLOAT32: { float x = (float)v->v.f64; put(o, &x, 4); } break;
	case GGUF_T_UINT64: case GGUF_T_INT64: put_u64(o, v->v.u64); break;
	case GGUF_T_FLOAT64: put(o, &v->v.f64, 8); break;
	default: break;
	}
}

static void put_value(struct out *o, const struct gguf_value *v)
{
	put_u32(o, v->type);
	if (v->type == GGUF_T_STRING) {
		put_str(o, &v->v.str);
	} else if (v->type == GGUF_T_ARRAY) {
		put_u32(o, v->v.arr.type);
		put_u64(o, v->v.arr.n);
		if (v->v.arr.type == GGUF_T_STRING) {
			const struct gguf_str *s = v->v.arr.data;
			for (uint64_t i = 0; i < v->v.arr.n; i++)
				put_str(o, &s[i]);
		} else {
			put(o, v->v.arr.data, el_size(v->v.arr.type) * v->v.arr.n);
		}
	} else {
		put_scalar(o, v->type, v);
	}
}

static void pad_to(struct out *o, uint64_t align)
{
	static const char zeros[64];
	while (!o->err && o->pos % align) {
		size_t n = (size_t)(align - o->pos % align);
		put(o, zeros, n < sizeof(zeros) ? n : sizeof(zeros));
	}
}

int gguf_writer_write(const struct gguf_writer *w, const char *path, char *err,
		      size_t errlen)
{
	size_t plen = strlen(path);
	char *tmp = xmalloc(plen + 16);
	struct out o = {0};
	int fd, rc;

	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp.XXXXXX", 12);
	fd = mkstemp(tmp);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(-rc));
		free(tmp);
		return rc;
	}
	/* mkstemp makes 0600; give the file the mode open(2) would */
	mode_t um = umask(0);
	umask(um);
	fchmod(fd, 0666 & ~um);
	o.f = fdopen(fd, "wb");
	if (!o.f) {
		rc = -errno;
		close(fd);
		goto err_unlink;
	}
	put_u32(&o, 0x46554747u);
	put_u32(&o, w->version);
	put_u64(&o, w->n_tensors);
	put_u64(&o, w->n_kv);
	for (uint64_t i = 0; i < w->n_kv; i++) {
		put_str(&o, &w->kv[i].key);
		put_value(&o, &w->kv[i].val);
	}
	uint64_t off = 0;
	for (uint64_t i = 0; i < w->n_tensors; i++) {
		const struct gguf_tensor *t = &w->tensors[i];
		put_str(&o, &t->name);
		put_u32(&o, t->n_dims);
		for (uint32_t d = 0; d < t->n_dims; d++)
			put_u64(&o, (uint64_t)t->ne[d]);
		put_u32(&o, t->type);
		put_u64(&o, off);
		off += (t->n_bytes + w->alignment - 1) / w->alignment * w->alignment;
	}
	pad_to(&o, w->alignment);
	for (uint64_t i = 0; i < w->n_tensors && !o.err; i++) {
		const void *data = w->tensor_data[i];
		void *lazy = NULL;
		if (!data) {
			lazy = malloc(w->tensors[i].n_bytes);
			if (!lazy || !w->fill) {
				free(lazy);
				o.err = -ENOMEM;
				break;
			}
			rc = w->fill(w->fill_ctx, i, lazy, w->tensors[i].n_bytes);
			if (rc) {
				free(lazy);
				o.err = rc;
				break;
			}
			data = lazy;
		}
		put(&o, data, w->tensors[i].n_bytes);
		free(lazy);
		pad_to(&o, w->alignment);
	}
	rc = o.err;
	if (fflush(o.f) != 0 && !rc)
		rc = -errno;
	if (fsync(fileno(o.f)) != 0 && !rc)
		rc = -errno;
	if (fclose(o.f) != 0 && !rc)
		rc = -errno;
	if (rc)
		goto err_unlink;
	if (rename(tmp, path) != 0) {
		rc = -errno;
		goto err_unlink;
	}
	free(tmp);
	return 0;

err_unlink:
	snprintf(err, errlen, "%s: write failed: %s", path, strerror(-rc));
	unlink(tmp);
	free(tmp);
	return rc;
}
