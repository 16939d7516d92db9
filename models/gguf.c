/*
 * gguf.c - GGUF v2/v3 reader: parse and validate, never trust a length.
 *
 * The header is read through a small buffered cursor over pread(); every
 * read is checked against the file size first, so a count or length that
 * claims more bytes than the file has left fails before anything is
 * allocated for it. Tensor data is not read here.
 */
#include "models/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/kern.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define CUR_BUF_BYTES (1u << 20)
#define MAX_KEY_BYTES 65535u
#define MAX_STR_BYTES (1ull << 30)

struct cursor {
	int fd;
	const char *path;
	uint64_t file_size;
	uint64_t pos;      /* absolute offset of the next byte */
	uint64_t buf_off;  /* file offset of buf[0] */
	size_t buf_len;
	unsigned char *buf;
	char *err;
	size_t errlen;
};

static int fail(struct cursor *c, uint64_t off, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (c->err && c->errlen)
		snprintf(c->err, c->errlen, "%s: offset 0x%" PRIx64 ": %s",
			 c->path, off, what);
	return -EINVAL;
}

static uint64_t remaining(const struct cursor *c)
{
	return c->pos <= c->file_size ? c->file_size - c->pos : 0;
}

/* copy n bytes at the cursor into dst and advance */
static int cur_read(struct cursor *c, void *dst, uint64_t n, const char *what)
{
	unsigned char *d = dst;

	if (n > remaining(c))
		return fail(c, c->pos,
			    "%s: needs %" PRIu64 " bytes, only %" PRIu64
			    " left in the file (truncated?)",
			    what, n, remaining(c));
	while (n > 0) {
		if (c->pos >= c->buf_off && c->pos < c->buf_off + c->buf_len) {
			size_t at = (size_t)(c->pos - c->buf_off);
			size_t take = c->buf_len - at;

			if (take > n)
				take = (size_t)n;
			memcpy(d, c->buf + at, take);
			d += take;
			c->pos += take;
			n -= take;
			continue;
		}
		ssize_t r = pread(c->fd, c->buf, CUR_BUF_BYTES, (off_t)c->pos);
		if (r < 0) {
			int e = errno;
			fail(c, c->pos, "read error: %s", strerror(e));
			return -e;
		}
		if (r == 0)
			return fail(c, c->pos, "%s: unexpected end of file",
				    what);
		c->buf_off = c->pos;
		c->buf_len = (size_t)r;
	}
	return 0;
}

static int rd_u32(struct cursor *c, uint32_t *v, const char *what)
{
	return cur_read(c, v, 4, what);
}

static int rd_u64(struct cursor *c, uint64_t *v, const char *what)
{
	return cur_read(c, v, 8, what);
}

static int rd_str(struct cursor *c, struct gguf_str *s, uint64_t max,
		  const char *what)
{
	uint64_t off = c->pos;
	uint64_t n;
	int rc = rd_u64(c, &n, what);

	if (rc)
		return rc;
	if (n > max || n > remaining(c))
		return fail(c, off,
			    "%s: string length %" PRIu64
			    " exceeds the %" PRIu64 " bytes left",
			    what, n, remaining(c));
	s->s = malloc((size_t)n + 1);
	if (!s->s)
		return -ENOMEM;
	rc = cur_read(c, s->s, n, what);
	if (rc) {
		free(s->s);
		s->s = NULL;
		return rc;
	}
	s->s[n] = '\0';
	s->len = n;
	return 0;
}

static size_t vtype_size(enum gguf_vtype t)
{
	switch (t) {
	case GGUF_T_UINT8:
	case GGUF_T_INT8:
	case GGUF_T_BOOL:
		return 1;
	case GGUF_T_UINT16:
	case GGUF_T_INT16:
		return 2;
	case GGUF_T_UINT32:
	case GGUF_T_INT32:
	case GGUF_T_FLOAT32:
		return 4;
	case GGUF_T_UINT64:
	case GGUF_T_INT64:
	case GGUF_T_FLOAT64:
		return 8;
	default:
		return 0;
	}
}

const char *gguf_vtype_name(enum gguf_vtype t)
{
	static const char *const names[GGUF_T_COUNT] = {
		"uint8", "int8", "uint16", "int16", "uint32", "int32",
		"float32", "bool", "string", "array", "uint64", "int64",
		"float64",
	};
	return (unsigned)t < GGUF_T_COUNT ? names[t] : "unknown";
}

static void free_value(struct gguf_value *v)
{
	if (v->type == GGUF_T_STRING) {
		free(v->v.str.s);
	} else if (v->type == GGUF_T_ARRAY) {
		if (v->v.arr.type == GGUF_T_STRING && v->v.arr.data) {
			struct gguf_str *s = v->v.arr.data;
			for (uint64_t i = 0; i < v->v.arr.n; i++)
				free(s[i].s);
		}
		free(v->v.arr.data);
	}
	memset(v, 0, sizeof(*v));
}

/* scalar of type t into v (not string/array) */
static int rd_scalar(struct cursor *c, enum gguf_vtype t, struct gguf_value *v,
		     const char *what)
{
	unsigned char b[8] = {0};
	int rc = cur_read(c, b, vtype_size(t), what);

	if (rc)
		return rc;
	v->type = t;
	switch (t) {
	case GGUF_T_UINT8: v->v.u64 = b[0]; break;
	case GGUF_T_BOOL:
		if (b[0] > 1)
			return fail(c, c->pos - 1, "%s: bool value %u is not 0 or 1",
				    what, b[0]);
		v->v.u64 = b[0];
		break;
	case GGUF_T_INT8: v->v.i64 = (int8_t)b[0]; break;
	case GGUF_T_UINT16: { uint16_t x; memcpy(&x, b, 2); v->v.u64 = x; break; }
	case GGUF_T_INT16: { int16_t x; memcpy(&x, b, 2); v->v.i64 = x; break; }
	case GGUF_T_UINT32: { uint32_t x; memcpy(&x, b, 4); v->v.u64 = x; break; }
	case GGUF_T_INT32: { int32_t x; memcpy(&x, b, 4); v->v.i64 = x; break; }
	case GGUF_T_FLOAT32: { float x; memcpy(&x, b, 4); v->v.f64 = x; break; }
	case GGUF_T_UINT64: memcpy(&v->v.u64, b, 8); break;
	case GGUF_T_INT64: memcpy(&v->v.i64, b, 8); break;
	case GGUF_T_FLOAT64: memcpy(&v->v.f64, b, 8); break;
	default:
		return fail(c, c->pos, "%s: not a scalar type", what);
	}
	return 0;
}

static int rd_value(struct cursor *c, struct gguf_value *v, const char *key)
{
	uint64_t off = c->pos;
	uint32_t t;
	int rc = rd_u32(c, &t, "value type");

	if (rc)
		return rc;
	if (t >= GGUF_T_COUNT)
		return fail(c, off, "key '%s': unknown value type %u", key, t);
	if (t == GGUF_T_STRING) {
		v->type = GGUF_T_STRING;
		return rd_str(c, &v->v.str, MAX_STR_BYTES, "string value");
	}
	if (t != GGUF_T_ARRAY)
		return rd_scalar(c, (enum gguf_vtype)t, v, key);

	uint32_t et;
	uint64_t n;
	off = c->pos;
	if ((rc = rd_u32(c, &et, "array element type")) ||
	    (rc = rd_u64(c, &n, "array length")))
		return rc;
	if (et >= GGUF_T_COUNT || et == GGUF_T_ARRAY)
		return fail(c, off, "key '%s': bad array element type %u", key,
			    et);
	/* every element takes at least one byte (strings at least 8): a
	 * count larger than the bytes left is a lie, refuse before malloc */
	uint64_t min_el = et == GGUF_T_STRING ? 8 : vtype_size(et);
	if (n > remaining(c) / min_el)
		return fail(c, off,
			    "key '%s': array of %" PRIu64
			    " %s elements cannot fit in the %" PRIu64
			    " bytes left",
			    key, n, gguf_vtype_name(et), remaining(c));
	v->type = GGUF_T_ARRAY;
	v->v.arr.type = (enum gguf_vtype)et;
	v->v.arr.n = 0;
	if (et == GGUF_T_STRING) {
		struct gguf_str *s = calloc(n ? n : 1, sizeof(*s));
		if (!s)
			return -ENOMEM;
		v->v.arr.data = s;
		for (uint64_t i = 0; i < n; i++) {
			rc = rd_str(c, &s[i], MAX_STR_BYTES, "array string");
			if (rc)
				return rc;
			v->v.arr.n = i + 1;
		}
		return 0;
	}
	size_t es = vtype_size(et);
	v->v.arr.data = malloc(n ? n * es : 1);
	if (!v->v.arr.data)
		return -ENOMEM;
	rc = cur_read(c, v->v.arr.data, n * es, "array data");
	if (rc)
		return rc;
	if (et == GGUF_T_BOOL) {
		const uint8_t *b = v->v.arr.data;
		for (uint64_t i = 0; i < n; i++)
			if (b[i] > 1)
				return fail(c, off, "key '%s': bool element %" PRIu64
					    " is %u", key, i, b[i]);
	}
	v->v.arr.n = n;
	return 0;
}

struct key_at {
	const char *key;
	uint64_t off;
};

static int cmp_key_at(const void *a, const void *b)
{
	const struct key_at *x = a, *y = b;
	int r = strcmp(x->key, y->key);
	return r ? r : (x->off > y->off) - (x->off < y->off);
}

static int rd_kvs(struct cursor *c, struct gguf_file *g)
{
	struct key_at *ka = malloc((g->n_kv ? g->n_kv : 1) * sizeof(*ka));
	int rc = 0;

	if (!ka)
		return -ENOMEM;
	for (uint64_t i = 0; i < g->n_kv && !rc; i++) {
		struct gguf_kv *kv = &g->kv[i];
		uint64_t off = c->pos;

		rc = rd_str(c, &kv->key, MAX_KEY_BYTES, "metadata key");
		if (!rc && kv->key.len == 0)
			rc = fail(c, off, "metadata key %" PRIu64 " is empty", i);
		if (!rc)
			rc = rd_value(c, &kv->val, kv->key.s);
		ka[i] = (struct key_at){kv->key.s, off};
	}
	/* duplicates by sorting: a pairwise check is quadratic in a count
	 * the file chooses (a 10 MB file of tiny keys took minutes) */
	if (!rc) {
		qsort(ka, g->n_kv, sizeof(*ka), cmp_key_at);
		for (uint64_t i = 1; i < g->n_kv; i++)
			if (!strcmp(ka[i - 1].key, ka[i].key)) {
				rc = fail(c, ka[i].off, "duplicate metadata key '%s'",
					  ka[i].key);
				break;
			}
	}
	free(ka);
	return rc;
}

/* n * m without overflow into *out; 0 or -EOVERFLOW */
static int mul_ok(uint64_t n, uint64_t m, uint64_t *out)
{
	if (m && n > UINT64_MAX / m)
		return -EOVERFLOW;
	*out = n * m;
	return 0;
}

static int rd_tensor_info(struct cursor *c, struct gguf_tensor *t)
{
	uint64_t off = c->pos;
	int rc = rd_str(c, &t->name, MAX_KEY_BYTES, "tensor name");

	if (rc)
		return rc;
	if (t->name.len == 0)
		return fail(c, off, "tensor with an empty name");
	if ((rc = rd_u32(c, &t->n_dims, "tensor n_dims")))
		return rc;
	if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
		return fail(c, off, "tensor '%s': n_dims %u not in 1..%d",
			    t->name.s, t->n_dims, GGUF_MAX_DIMS);
	uint64_t n_el = 1;
	for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
		uint64_t ne = 1;
		if (d < t->n_dims && (rc = rd_u64(c, &ne, "tensor dim")))
			return rc;
		if (ne == 0 || ne > (uint64_t)INT64_MAX ||
		    mul_ok(n_el, ne, &n_el) || n_el > (uint64_t)INT64_MAX)
			return fail(c, off, "tensor '%s': dim %u = %" PRIu64
				    " is zero or overflows", t->name.s, d, ne);
		t->ne[d] = (int64_t)ne;
	}
	if ((rc = rd_u32(c, &t->type, "tensor type")) ||
	    (rc = rd_u64(c, &t->offset, "tensor offset")))
		return rc;
	const struct kern_type_info *ti = kern_type_info(t->type);
	if (!ti || !ti->is_weight)
		return fail(c, off, "tensor '%s': unsupported tensor type %u (%s)",
			    t->name.s, t->type, ti ? ti->name : "unknown");
	int64_t rb = kern_row_bytes(t->type, t->ne[0]);
	if (rb < 0 && t->ne[0] % ti->blck == 0)
		return fail(c, off, "tensor '%s': row length %" PRId64
			    " is too large", t->name.s, t->ne[0]);
	if (rb < 0)
		return fail(c, off, "tensor '%s': row length %" PRId64
			    " is not a multiple of the %s block size %" PRId64,
			    t->name.s, t->ne[0], ti->name, ti->blck);
	t->row_bytes = (uint64_t)rb;
	t->n_rows = t->ne[1] * t->ne[2] * t->ne[3];
	if (mul_ok(t->row_bytes, (uint64_t)t->n_rows, &t->n_bytes))
		return fail(c, off, "tensor '%s': size overflows", t->name.s);
	return 0;
}

static int cmp_by_offset(const void *a, const void *b)
{
	const struct gguf_tensor *const *x = a, *const *y = b;
	return (*x)->offset < (*y)->offset ? -1 : (*x)->offset > (*y)->offset;
}

/* alignment, data section, and every tensor inside it without overlap */
static int check_layout(struct cursor *c, struct gguf_file *g)
{
	const struct gguf_kv *kv = gguf_find_kv(g, "general.alignment");
	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (kv) {
		if (kv->val.type != GGUF_T_UINT32)
			return fail(c, 0, "general.alignment has type %s, want uint32",
				    gguf_vtype_name(kv->val.type));
		uint64_t a = kv->val.v.u64;
		if (a == 0 || (a & (a - 1)) || a > (1u << 24))
			return fail(c, 0, "general.alignment %" PRIu64
				    " is not a power of two up to 16 MiB", a);
		g->alignment = a;
	}
	uint64_t data = (c->pos + g->alignment - 1) / g->alignment * g->alignment;
	if (g->n_tensors > 0 && data > g->file_size)
		return fail(c, c->pos, "data section at 0x%" PRIx64
			    " starts past end of file (%" PRIu64 " bytes)", data,
			    g->file_size);
	g->data_offset = data;
	uint64_t avail = g->file_size > data ? g->file_size - data : 0;

	struct gguf_tensor **by_off = calloc(g->n_tensors ? g->n_tensors : 1,
					     sizeof(*by_off));
	if (!by_off)
		return -ENOMEM;
	int rc = 0;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		struct gguf_tensor *t = &g->tensors[i];
		if (t->offset % g->alignment) {
			rc = fail(c, data, "tensor '%s': offset %" PRIu64
				  " is not a multiple of the alignment %" PRIu64,
				  t->name.s, t->offset, g->alignment);
			goto out;
		}
		if (t->offset > avail || t->n_bytes > avail - t->offset) {
			rc = fail(c, data + t->offset,
				  "tensor '%s' (%" PRIu64 " bytes at data+%" PRIu64
				  ") extends past end of file",
				  t->name.s, t->n_bytes, t->offset);
			goto out;
		}
		t->file_offset = data + t->offset;
		by_off[i] = t;
	}
	qsort(by_off, g->n_tensors, sizeof(*by_off), cmp_by_offset);
	for (uint64_t i = 1; i < g->n_tensors; i++) {
		const struct gguf_tensor *a = by_off[i - 1], *b = by_off[i];
		if (a->offset + a->n_bytes > b->offset) {
			rc = fail(c, b->file_offset, "tensor '%s' overlaps tensor '%s'",
				  b->name.s, a->name.s);
			goto out;
		}
	}
out:
	free(by_off);
	return rc;
}

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_unique_names(struct cursor *c, const struct gguf_file *g)
{
	const char **names = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof(*names));
	int rc = 0;

	if (!names)
		return -ENOMEM;
	for (uint64_t i = 0; i < g->n_tensors; i++)
		names[i] = g->tensors[i].name.s;
	qsort(names, g->n_tensors, sizeof(*names), cmp_str_ptr);
	for (uint64_t i = 1; i < g->n_tensors; i++)
		if (!strcmp(names[i - 1], names[i])) {
			rc = fail(c, 0, "duplicate tensor name '%s'", names[i]);
			break;
		}
	free(names);
	return rc;
}

int gguf_open(struct gguf_file *g, const char *path, char *err, size_t errlen)
{
	struct cursor c = {.fd = -1, .path = path, .err = err, .errlen = errlen};
	struct stat st;
	uint32_t magic;
	uint64_t off;
	int rc;

	memset(g, 0, sizeof(*g));
	if (err && errlen)
		err[0] = '\0';
	c.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c.fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(c.fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(-rc));
		goto err_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		snprintf(err, errlen, "%s: not a regular file", path);
		goto err_fd;
	}
	c.file_size = (uint64_t)st.st_size;
	c.buf = malloc(CUR_BUF_BYTES);
	g->path = strdup(path);
	if (!c.buf || !g->path) {
		rc = -ENOMEM;
		goto err_parse;
	}
	g->file_size = c.file_size;

	if ((rc = rd_u32(&c, &magic, "magic")))
		goto err_parse;
	if (magic != GGUF_MAGIC) {
		rc = fail(&c, 0, "bad magic 0x%08x, not a GGUF file", magic);
		goto err_parse;
	}
	if ((rc = rd_u32(&c, &g->version, "version")))
		goto err_parse;
	if (g->version != 2 && g->version != 3) {
		rc = fail(&c, 4, "unsupported GGUF version %u (want 2 or 3)",
			  g->version);
		goto err_parse;
	}
	off = c.pos;
	if ((rc = rd_u64(&c, &g->n_tensors, "tensor count")) ||
	    (rc = rd_u64(&c, &g->n_kv, "metadata count")))
		goto err_parse;
	/* a tensor info takes >= 24 bytes of header, a kv >= 13: bound the
	 * counts by what the file can hold before allocating for them */
	if (g->n_tensors > remaining(&c) / 24 || g->n_kv > remaining(&c) / 13) {
		rc = fail(&c, off, "tensor count %" PRIu64 " / metadata count %"
			  PRIu64 " cannot fit in a %" PRIu64 "-byte file",
			  g->n_tensors, g->n_kv, c.file_size);
		g->n_tensors = g->n_kv = 0;
		goto err_parse;
	}
	g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kv));
	g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
	if (!g->kv || !g->tensors) {
		rc = -ENOMEM;
		goto err_parse;
	}
	if ((rc = rd_kvs(&c, g)))
		goto err_parse;
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if ((rc = rd_tensor_info(&c, &g->tensors[i])))
			goto err_parse;
	if ((rc = check_unique_names(&c, g)) || (rc = check_layout(&c, g)))
		goto err_parse;
	free(c.buf);
	close(c.fd);
	return 0;

err_parse:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory while parsing", path);
	free(c.buf);
	gguf_close(g);
err_fd:
	close(c.fd);
	return rc;
}

void gguf_close(struct gguf_file *g)
{
	if (g->kv)
		for (uint64_t i = 0; i < g->n_kv; i++) {
			free(g->kv[i].key.s);
			free_value(&g->kv[i].val);
		}
	if (g->tensors)
		for (uint64_t i = 0; i < g->n_tensors; i++)
			free(g->tensors[i].name.s);
	free(g->kv);
	free(g->tensors);
	free(g->path);
	memset(g, 0, sizeof(*g));
}

const struct gguf_kv *gguf_find_kv(const struct gguf_file *g, const char *key)
{
	for (uint64_t i = 0; i < g->n_kv; i++)
		if (g->kv[i].key.s && !strcmp(g->kv[i].key.s, key))
			return &g->kv[i];
	return NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *g,
					   const char *name)
{
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if (g->tensors[i].name.s && !strcmp(g->tensors[i].name.s, name))
			return &g->tensors[i];
	return NULL;
}

static bool is_unsigned(enum gguf_vtype t)
{
	return t == GGUF_T_UINT8 || t == GGUF_T_UINT16 || t == GGUF_T_UINT32 ||
	       t == GGUF_T_UINT64;
}

static bool is_signed(enum gguf_vtype t)
{
	return t == GGUF_T_INT8 || t == GGUF_T_INT16 || t == GGUF_T_INT32 ||
	       t == GGUF_T_INT64;
}

int gguf_get_u32(const struct gguf_file *g, const char *key, uint32_t *out)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (!kv)
		return -ENOENT;
	if (is_unsigned(kv->val.type) && kv->val.v.u64 <= UINT32_MAX) {
		*out = (uint32_t)kv->val.v.u64;
		return 0;
	}
	if (is_signed(kv->val.type) && kv->val.v.i64 >= 0 &&
	    kv->val.v.i64 <= (int64_t)UINT32_MAX) {
		*out = (uint32_t)kv->val.v.i64;
		return 0;
	}
	return -EINVAL;
}

int gguf_get_f32(const struct gguf_file *g, const char *key, float *out)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (!kv)
		return -ENOENT;
	if (kv->val.type == GGUF_T_FLOAT32 || kv->val.type == GGUF_T_FLOAT64)
		*out = (float)kv->val.v.f64;
	else if (is_unsigned(kv->val.type))
		*out = (float)kv->val.v.u64;
	else if (is_signed(kv->val.type))
		*out = (float)kv->val.v.i64;
	else
		return -EINVAL;
	return 0;
}

int gguf_get_bool(const struct gguf_file *g, const char *key, bool *out)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (!kv)
		return -ENOENT;
	if (kv->val.type != GGUF_T_BOOL)
		return -EINVAL;
	*out = kv->val.v.u64 != 0;
	return 0;
}

int gguf_get_str(const struct gguf_file *g, const char *key,
		 const struct gguf_str **out)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (!kv)
		return -ENOENT;
	if (kv->val.type != GGUF_T_STRING)
		return -EINVAL;
	*out = &kv->val.v.str;
	return 0;
}

int gguf_get_arr(const struct gguf_file *g, const char *key,
		 enum gguf_vtype etype, const void **data, uint64_t *n)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (!kv)
		return -ENOENT;
	if (kv->val.type != GGUF_T_ARRAY || kv->val.v.arr.type != etype)
		return -EINVAL;
	*data = kv->val.v.arr.data;
	*n = kv->val.v.arr.n;
	return 0;
}
