/*
 * gguf.h - GGUF v2/v3 reader and writer.
 *
 * The reader parses the header, every metadata key/value (arrays too) and
 * the tensor infos into memory and validates all of it: lengths and counts
 * against the bytes left in the file, sizes without overflow, tensor types
 * and shapes, alignment, every tensor's data range inside the file and not
 * overlapping another. It does not read tensor data: memtier does that.
 * On failure it writes a message naming the file, the offset and what was
 * wrong into the caller's buffer.
 */
#ifndef STRATA_GGUF_H
#define STRATA_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum gguf_vtype {
	GGUF_T_UINT8 = 0,
	GGUF_T_INT8 = 1,
	GGUF_T_UINT16 = 2,
	GGUF_T_INT16 = 3,
	GGUF_T_UINT32 = 4,
	GGUF_T_INT32 = 5,
	GGUF_T_FLOAT32 = 6,
	GGUF_T_BOOL = 7,
	GGUF_T_STRING = 8,
	GGUF_T_ARRAY = 9,
	GGUF_T_UINT64 = 10,
	GGUF_T_INT64 = 11,
	GGUF_T_FLOAT64 = 12,
	GGUF_T_COUNT = 13,
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

/* a string: len bytes at s, plus a terminating NUL the reader adds */
struct gguf_str {
	uint64_t len;
	char *s;
};

struct gguf_value {
	enum gguf_vtype type;
	union {
		uint64_t u64; /* all unsigned integer types, and bool */
		int64_t i64;  /* all signed integer types */
		double f64;   /* float32 and float64 */
		struct gguf_str str;
		struct {
			enum gguf_vtype type; /* element type (never ARRAY) */
			uint64_t n;
			/* elements in their file encoding (little-endian,
			 * packed); for strings an array of struct gguf_str */
			void *data;
		} arr;
	} v;
};

struct gguf_kv {
	struct gguf_str key;
	struct gguf_value val;
};

struct gguf_tensor {
	struct gguf_str name;
	uint32_t n_dims;
	int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) length;
				      unused dims are 1 */
	uint32_t type;             /* enum kern_type */
	uint64_t offset;           /* relative to data_offset */
	uint64_t file_offset;      /* absolute */
	uint64_t n_bytes;
	int64_t n_rows;            /* product of ne[1..] */
	uint64_t row_bytes;
};

struct gguf_file {
	char *path;
	uint32_t version;
	uint64_t file_size;
	uint64_t alignment;
	uint64_t data_offset; /* start of the tensor data section */
	uint64_t n_kv;
	struct gguf_kv *kv;
	uint64_t n_tensors;
	struct gguf_tensor *tensors;
};

/* Parse and validate the GGUF file at path. Returns 0, or -errno
 * (-ENOENT, -EINVAL for malformed input, -ENOMEM, -EIO) with a message in
 * err. On failure g is left zeroed. Not thread-safe on the same g. */
int gguf_open(struct gguf_file *g, const char *path, char *err, size_t errlen);

/* Free everything gguf_open allocated; accepts a zeroed object. */
void gguf_close(struct gguf_file *g);

/* Lookup by name; NULL if absent */
const struct gguf_kv *gguf_find_kv(const struct gguf_file *g, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *g,
					   const char *name);

/* Typed getters. Return 0 and write *out, -ENOENT if the key is absent,
 * -EINVAL if it has an incompatible type or does not fit. Integers of any
 * width convert when the value fits. */
int gguf_get_u32(const struct gguf_file *g, const char *key, uint32_t *out);
int gguf_get_f32(const struct gguf_file *g, const char *key, float *out);
int gguf_get_bool(const struct gguf_file *g, const char *key, bool *out);
int gguf_get_str(const struct gguf_file *g, const char *key,
		 const struct gguf_str **out);
/* array of element type etype; *n elements at *data */
int gguf_get_arr(const struct gguf_file *g, const char *key,
		 enum gguf_vtype etype, const void **data, uint64_t *n);

const char *gguf_vtype_name(enum gguf_vtype t);

/*
 * Writer: collect metadata and tensors, then write the file in one go.
 * Used by mkmodel, requantization and tests. The writer copies what it is
 * given. Tensor data is written aligned to `alignment`.
 */
/* fills a lazily-added tensor's n_bytes at write time */
typedef int (*gguf_fill_fn)(void *ctx, uint64_t index, void *dst,
			    uint64_t n_bytes);

struct gguf_writer {
	uint32_t version;   /* 3 unless set */
	uint64_t alignment; /* GGUF_DEFAULT_ALIGNMENT unless set */
	uint64_t n_kv, cap_kv;
	struct gguf_kv *kv;
	uint64_t n_tensors, cap_tensors;
	struct gguf_tensor *tensors;
	void **tensor_data; /* owned copies; NULL for lazy tensors */
	gguf_fill_fn fill;  /* for lazy tensors */
	void *fill_ctx;
};

void gguf_writer_init(struct gguf_writer *w);
void gguf_writer_destroy(struct gguf_writer *w);
void gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
void gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
void gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
void gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);
/* array of fixed-size elements (not strings) */
void gguf_writer_set_arr(struct gguf_writer *w, const char *key,
			 enum gguf_vtype etype, const void *data, uint64_t n);
void gguf_writer_set_str_arr(struct gguf_writer *w, const char *key,
			     const char *const *strs, uint64_t n);
/* copy any value (e.g. from a gguf_file's kv) */
void gguf_writer_set_value(struct gguf_writer *w, const char *key,
			   const struct gguf_value *v);
/* Copy a tensor of the given type and shape (ne[0] contiguous). data holds
 * kern_row_bytes(type, ne[0]) * rows bytes. Returns 0 or -EINVAL for a bad
 * type/shape, -ENOMEM. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name,
			   uint32_t type, uint32_t n_dims, const int64_t *ne,
			   const void *data);
/* Add a tensor whose bytes w->fill(w->fill_ctx, index, dst, n) produces
 * at write time (index: the order of addition), so a model larger than
 * memory can be written. Set w->fill / w->fill_ctx before writing. */
int gguf_writer_add_tensor_lazy(struct gguf_writer *w, const char *name,
				uint32_t type, uint32_t n_dims,
				const int64_t *ne);
/* Write the file: to a temporary name in the same directory, then rename,
 * so a failure never leaves a partial file at path. Returns 0 or -errno
 * with a message in err. */
int gguf_writer_write(const struct gguf_writer *w, const char *path, char *err,
		      size_t errlen);

#endif
