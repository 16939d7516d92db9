/* sim_profile.c - reading bench/probe's JSON profile for the simulator,
 * see sim.h. Every message names the file and the field. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/sim.h"

struct ld {
	const char *name;
	char *err;
	size_t errlen;
};

static int bad(struct ld *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int bad(struct ld *c, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->err && c->errlen)
		snprintf(c->err, c->errlen, "%s: %s", c->name, msg);
	return -EINVAL;
}

/* member key of object o (whose path is at), which must be an object */
static int obj(struct ld *c, json_t *o, const char *at, const char *key,
	       json_t **out)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return bad(c, "%s%s%s: missing", at, *at ? "." : "", key);
	if (!json_is_object(v))
		return bad(c, "%s%s%s: not an object", at, *at ? "." : "", key);
	*out = v;
	return 0;
}

/* member key of o as a number >= lo (> 0 when lo is NAN) */
static int num(struct ld *c, json_t *o, const char *at, const char *key,
	       double lo, double *out)
{
	json_t *v = json_object_get(o, key);
	const char *dot = *at ? "." : "";

	if (!v || json_is_null(v))
		return bad(c, "%s%s%s: missing", at, dot, key);
	if (!json_is_number(v))
		return bad(c, "%s%s%s: not a number", at, dot, key);
	double d = json_number_value(v);
	if (!isfinite(d) || (isnan(lo) ? !(d > 0) : d < lo))
		return bad(c, "%s%s%s: %g is out of range (want %s %g)", at, dot,
			   key, d, isnan(lo) ? ">" : ">=", isnan(lo) ? 0.0 : lo);
	*out = d;
	return 0;
}

/* {"1": x, "<all>": y} by threads into v[0], v[1] */
static int by_threads(struct ld *c, json_t *o, const char *at, int all,
		      double v[2])
{
	char k[16];
	int rc;

	if ((rc = num(c, o, at, "1", NAN, &v[0])))
		return rc;
	if (all <= 1) {
		v[1] = v[0];
		return 0;
	}
	snprintf(k, sizeof(k), "%d", all);
	return num(c, o, at, k, NAN, &v[1]);
}

/* "1".."n" keyed numbers into v[0..n), n = the count of members */
static int series(struct ld *c, json_t *o, const char *at, double lo,
		  double *v, int max, int *n)
{
	int cnt = (int)json_object_size(o);
	char k[16];
	int rc;

	if (cnt < 1)
		return bad(c, "%s: empty", at);
	if (cnt > max)
		cnt = max;
	for (int i = 0; i < cnt; i++) {
		snprintf(k, sizeof(k), "%d", i + 1);
		if ((rc = num(c, o, at, k, lo, &v[i])))
			return rc;
	}
	*n = cnt;
	return 0;
}

/* optional series key ("ws", "small_pages"): [{"ws_bytes": B, "gbps":
 * {"1": x, "<all>": y}}, ...], ws_bytes ascending, into n points of
 * bytes[] and gbps[][2] */
static int kern_series(struct ld *c, json_t *t, const char *at, const char *key,
		       int all, int *n, double *bytes, double (*gbps)[2])
{
	json_t *a = json_object_get(t, key), *pt, *g;
	char p[200];
	size_t i;
	int rc;

	*n = 0;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a) || json_array_size(a) < 1)
		return bad(c, "%s.%s: not an array of points", at, key);
	if (json_array_size(a) > SIM_MAX_WS)
		return bad(c, "%s.%s: more than %d points", at, key, SIM_MAX_WS);
	json_array_foreach(a, i, pt) {
		snprintf(p, sizeof(p), "%s.%s[%zu]", at, key, i);
		if (!json_is_object(pt))
			return bad(c, "%s: not an object", p);
		if ((rc = num(c, pt, p, "ws_bytes", NAN, &bytes[i])) ||
		    (rc = obj(c, pt, p, "gbps", &g)))
			return rc;
		if (i > 0 && bytes[i] <= bytes[i - 1])
			return bad(c, "%s.ws_bytes: not ascending", p);
		snprintf(p, sizeof(p), "%s.%s[%zu].gbps", at, key, i);
		if ((rc = by_threads(c, g, p, all, gbps[i])))
			return rc;
	}
	*n = (int)json_array_size(a);
	return 0;
}

/* the optional series of a kernel type: "ws" (huge pages) and
 * "small_pages" (4 KiB pages, the mmap tier) */
static int kern_ws(struct ld *c, json_t *t, const char *at, int all,
		   struct sim_kern_rate *r)
{
	int rc = kern_series(c, t, at, "ws", all, &r->n_ws, r->ws_bytes, r->ws_gbps);

	return rc ? rc : kern_series(c, t, at, "small_pages", all, &r->n_sp,
				     r->sp_bytes, r->sp_gbps);
}

/* optional "ops": {"ns_per_elem": {name: ns}, "attention": {"positions":
 * [..], "ns_by_head_dim": {"64": [..], ...}}} */
static int load_ops(struct ld *c, json_t *root, struct sim_profile *p)
{
	static const char *const names[SIM_OP_COUNT] = {
		"rmsnorm", "rope", "silu_mul", "add", "copy", "quant_q8_0",
		"quant_q8_K" };
	json_t *o = json_object_get(root, "ops"), *e, *a, *pos, *by, *row;
	struct sim_ops *s = &p->ops;
	const char *k;
	char at[96];
	size_t i;
	int rc;

	if (!o || json_is_null(o))
		return 0;
	if (!json_is_object(o))
		return bad(c, "ops: not an object");
	if ((rc = obj(c, o, "ops", "ns_per_elem", &e)) ||
	    (rc = obj(c, o, "ops", "attention", &a)))
		return rc;
	for (int n = 0; n < SIM_OP_COUNT; n++)
		if ((rc = num(c, e, "ops.ns_per_elem", names[n], 0, &s->ns_per_elem[n])))
			return rc;
	pos = json_object_get(a, "positions");
	if (!json_is_array(pos) || json_array_size(pos) < 2 ||
	    json_array_size(pos) > SIM_MAX_ATT)
		return bad(c, "ops.attention.positions: want an array of 2 .. %d",
			   SIM_MAX_ATT);
	json_array_foreach(pos, i, row) {
		s->pos[i] = json_is_number(row) ? json_number_value(row) : -1;
		if (!(s->pos[i] >= 1) || (i > 0 && s->pos[i] <= s->pos[i - 1]))
			return bad(c, "ops.attention.positions[%zu]: not ascending "
				   "positions >= 1", i);
	}
	s->n_pos = (int)json_array_size(pos);
	if ((rc = obj(c, a, "ops.attention", "ns_by_head_dim", &by)))
		return rc;
	json_object_foreach(by, k, row) {
		char *end;
		if (s->n_hd == SIM_MAX_ATT)
			return bad(c, "ops.attention.ns_by_head_dim: more than %d", SIM_MAX_ATT);
		s->hd[s->n_hd] = strtod(k, &end);
		snprintf(at, sizeof(at), "ops.attention.ns_by_head_dim.%s", k);
		if (*end || !(s->hd[s->n_hd] >= 1) ||
		    (s->n_hd > 0 && s->hd[s->n_hd] <= s->hd[s->n_hd - 1]))
			return bad(c, "%s: not an ascending head_dim", at);
		if (!json_is_array(row) || (int)json_array_size(row) != s->n_pos)
			return bad(c, "%s: want %d numbers", at, s->n_pos);
		for (int j = 0; j < s->n_pos; j++) {
			json_t *v = json_array_get(row, (size_t)j);
			double d = json_is_number(v) ? json_number_value(v) : -1;
			if (!(d > 0) || !isfinite(d))
				return bad(c, "%s[%d]: not a time > 0", at, j);
			s->att_ns[s->n_hd][j] = d;
		}
		s->n_hd++;
	}
	if (s->n_hd < 1)
		return bad(c, "ops.attention.ns_by_head_dim: empty");
	/* optional: the same head_dims with K/V from memory */
	by = json_object_get(a, "cold_ns_by_head_dim");
	if (by && !json_is_null(by)) {
		for (int h = 0; h < s->n_hd; h++) {
			snprintf(at, sizeof(at), "%g", s->hd[h]);
			row = json_is_object(by) ? json_object_get(by, at) : NULL;
			if (!json_is_array(row) || (int)json_array_size(row) != s->n_pos)
				return bad(c, "ops.attention.cold_ns_by_head_dim.%s: want "
					   "%d numbers", at, s->n_pos);
			for (int j = 0; j < s->n_pos; j++) {
				json_t *v = json_array_get(row, (size_t)j);
				double d = json_is_number(v) ? json_number_value(v) : -1;
				if (!(d > 0) || !isfinite(d))
					return bad(c, "ops.attention.cold_ns_by_head_dim.%s[%d]: "
						   "not a time > 0", at, j);
				s->att_cold_ns[h][j] = d;
			}
		}
		s->have_cold = true;
	}
	s->have = true;
	return 0;
}

/* one kernel type's figures at path at (an object with dram, l2) */
static int kern_rate(struct ld *c, json_t *t, const char *at, int all,
		     struct sim_kern_rate *r)
{
	char p[160];
	json_t *cls, *g;
	int rc;

	for (int i = 0; i < 2; i++) {
		const char *name = i ? "l2" : "dram";
		snprintf(p, sizeof(p), "%s.%s", at, name);
		if ((rc = obj(c, t, at, name, &cls)) ||
		    (rc = obj(c, cls, p, "gbps", &g)))
			return rc;
		snprintf(p, sizeof(p), "%s.%s.gbps", at, name);
		if ((rc = by_threads(c, g, p, all, i ? r->l2_gbps : r->dram_gbps)))
			return rc;
	}
	r->have = true;
	return kern_ws(c, t, at, all, r);
}

/* optional "kernels.shapes": [{"type": "q4_0", "rows": R, "cols": C,
 * "ws": [{"ws_bytes": B, "gbps": {..}}, ..]}, ..] */
static int load_shapes(struct ld *c, json_t *k, struct sim_profile *p)
{
	json_t *a = json_object_get(k, "shapes"), *e, *ty;
	char at[160];
	size_t i;
	int rc;

	p->n_shapes = 0;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return bad(c, "kernels.shapes: not an array");
	if (json_array_size(a) > SIM_MAX_SHAPES)
		return bad(c, "kernels.shapes: more than %d shapes", SIM_MAX_SHAPES);
	json_array_foreach(a, i, e) {
		struct sim_shape *s = &p->shape[i];
		double r, cl;
		snprintf(at, sizeof(at), "kernels.shapes[%zu]", i);
		if (!json_is_object(e))
			return bad(c, "%s: not an object", at);
		ty = json_object_get(e, "type");
		s->type = KT_COUNT;
		for (uint32_t t = 0; json_is_string(ty) && t < KT_COUNT; t++)
			if (kern_type_info(t) && kern_type_info(t)->is_weight &&
			    !strcmp(kern_type_info(t)->name, json_string_value(ty)))
				s->type = t;
		if (s->type == KT_COUNT)
			return bad(c, "%s.type: not a weight type's name", at);
		if ((rc = num(c, e, at, "rows", 1, &r)) ||
		    (rc = num(c, e, at, "cols", 1, &cl)))
			return rc;
		s->rows = (int64_t)r;
		s->cols = (int64_t)cl;
		json_t *pg = json_object_get(e, "pages");
		if (pg && !(json_is_string(pg) &&
			    (!strcmp(json_string_value(pg), "huge") ||
			     !strcmp(json_string_value(pg), "small"))))
			return bad(c, "%s.pages: \"huge\" or \"small\"", at);
		s->small_pages = pg && !strcmp(json_string_value(pg), "small");
		if ((rc = kern_series(c, e, at, "ws", p->n_threads, &s->n_ws,
				      s->ws_bytes, s->gbps)))
			return rc;
		if (s->n_ws < 1)
			return bad(c, "%s.ws: missing", at);
		p->n_shapes = (int)i + 1;
	}
	return 0;
}

static int load_kernels(struct ld *c, json_t *root, struct sim_profile *p)
{
	json_t *k, *types, *def, *t;
	double d;
	char at[160];
	int rc;

	if ((rc = obj(c, root, "", "kernels", &k)) ||
	    (rc = num(c, k, "kernels", "threads", 1, &d)))
		return rc;
	p->n_threads = (int)d;
	if ((rc = num(c, k, "kernels", "l2_bytes", NAN, &d)))
		return rc;
	p->l2_bytes = (uint64_t)d;
	if ((rc = obj(c, k, "kernels", "types", &types)))
		return rc;
	for (uint32_t ty = 0; ty < KT_COUNT; ty++) {
		const struct kern_type_info *ti = kern_type_info(ty);
		if (!ti || !ti->is_weight)
			continue;
		if (!(t = json_object_get(types, ti->name)))
			continue;
		snprintf(at, sizeof(at), "kernels.types.%s", ti->name);
		if (!json_is_object(t))
			return bad(c, "%s: not an object", at);
		if ((rc = kern_rate(c, t, at, p->n_threads, &p->kern[ty])))
			return rc;
	}
	def = json_object_get(k, "default");
	if (def && !json_is_null(def)) {
		struct sim_kern_rate r = { 0 };
		if (!json_is_object(def))
			return bad(c, "kernels.default: not an object");
		if ((rc = kern_rate(c, def, "kernels.default", p->n_threads, &r)))
			return rc;
		for (uint32_t ty = 0; ty < KT_COUNT; ty++)
			if (!p->kern[ty].have)
				p->kern[ty] = r;
	}
	if (!p->kern[KT_F32].have)
		return bad(c, "kernels.types.f32: missing (attention is timed at "
			   "the f32 rate)");
	return load_shapes(c, k, p);
}

/* one thread count's array of a "mem" series: n numbers > 0 */
static int mm_row(struct ld *c, json_t *g, const char *at, const char *key,
		  int n, double *v)
{
	json_t *a = json_object_get(g, key);

	if (!json_is_array(a) || (int)json_array_size(a) != n)
		return bad(c, "%s.gmacs.%s: want an array of %d numbers", at, key, n);
	for (int j = 0; j < n; j++) {
		json_t *x = json_array_get(a, (size_t)j);
		if (!json_is_number(x) || !(json_number_value(x) > 0) ||
		    !isfinite(json_number_value(x)))
			return bad(c, "%s.gmacs.%s[%d]: want a number > 0", at, key, j);
		v[j] = json_number_value(x);
	}
	return 0;
}

/* optional "mem": {"tokens": [16, ...], "gmacs": {"1": [..], "<all>": [..]}},
 * tokens ascending */
static int mm_mem(struct ld *c, json_t *t, const char *at0, int all,
		  struct sim_kern_rate *r)
{
	json_t *m = json_object_get(t, "mem"), *tok, *g;
	double v[2][SIM_MAX_MM_TOK];
	char at[200], k[16];
	int n, rc;

	r->n_mm_tok = 0;
	if (!m || json_is_null(m))
		return 0;
	snprintf(at, sizeof(at), "%s.mem", at0);
	if (!json_is_object(m))
		return bad(c, "%s: not an object", at);
	tok = json_object_get(m, "tokens");
	n = json_is_array(tok) ? (int)json_array_size(tok) : 0;
	if (n < 1 || n > SIM_MAX_MM_TOK)
		return bad(c, "%s.tokens: want an array of 1 .. %d batch sizes", at,
			   SIM_MAX_MM_TOK);
	for (int j = 0; j < n; j++) {
		json_t *x = json_array_get(tok, (size_t)j);
		double d = json_is_number(x) ? json_number_value(x) : 0;
		if (!(d >= 1) || (j && d <= r->mm_tok[j - 1]))
			return bad(c, "%s.tokens[%d]: want ascending batch sizes >= 1",
				   at, j);
		r->mm_tok[j] = d;
	}
	if ((rc = obj(c, m, at, "gmacs", &g)) ||
	    (rc = mm_row(c, g, at, "1", n, v[0])))
		return rc;
	snprintf(k, sizeof(k), "%d", all);
	if (all > 1 && (rc = mm_row(c, g, at, k, n, v[1])))
		return rc;
	for (int j = 0; j < n; j++) {
		r->mm_mem_gmacs[j][0] = v[0][j];
		r->mm_mem_gmacs[j][1] = all > 1 ? v[1][j] : v[0][j];
	}
	r->n_mm_tok = n;
	/* optional: the same series on 4 KiB pages */
	r->have_mm_sp = false;
	if ((g = json_object_get(m, "small_pages_gmacs")) && !json_is_null(g)) {
		char at2[220];
		snprintf(at2, sizeof(at2), "%s.small_pages", at);
		if (!json_is_object(g))
			return bad(c, "%s_gmacs: not an object", at2);
		if ((rc = mm_row(c, g, at2, "1", n, v[0])) ||
		    (all > 1 && (rc = mm_row(c, g, at2, k, n, v[1]))))
			return rc;
		for (int j = 0; j < n; j++) {
			r->mm_sp_gmacs[j][0] = v[0][j];
			r->mm_sp_gmacs[j][1] = all > 1 ? v[1][j] : v[0][j];
		}
		r->have_mm_sp = true;
	}
	return 0;
}

/* matmul: optional as a whole and per type */
static int load_matmul(struct ld *c, json_t *root, struct sim_profile *p)
{
	json_t *mm = json_object_get(root, "matmul"), *types, *t, *g;
	char at[160];
	int rc;

	if (!mm || json_is_null(mm))
		return 0;
	if ((rc = obj(c, root, "", "matmul", &mm)) ||
	    (rc = obj(c, mm, "matmul", "types", &types)))
		return rc;
	for (uint32_t ty = 0; ty < KT_COUNT; ty++) {
		const struct kern_type_info *ti = kern_type_info(ty);
		if (!ti || !(t = json_object_get(types, ti->name)))
			continue;
		snprintf(at, sizeof(at), "matmul.types.%s", ti->name);
		if (!json_is_object(t))
			return bad(c, "%s: not an object", at);
		if ((rc = obj(c, t, at, "gmacs", &g)))
			return rc;
		snprintf(at, sizeof(at), "matmul.types.%s.gmacs", ti->name);
		if ((rc = by_threads(c, g, at, p->n_threads, p->kern[ty].mm_gmacs)))
			return rc;
		p->kern[ty].have_mm = true;
		snprintf(at, sizeof(at), "matmul.types.%s", ti->name);
		if ((rc = mm_mem(c, t, at, p->n_threads, &p->kern[ty])))
			return rc;
	}
	return 0;
}

static int cmp_key(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* the burst grid: {"<bytes>": {"<qd>": GB/s}} with the same QDs a row */
static int load_flash(struct ld *c, json_t *root, struct sim_profile *p)
{
	json_t *f = json_object_get(root, "flash"), *grid, *row, *v;
	const char *bk, *qk;
	char at[160];
	int rc, b = 0;

	if (!f || json_is_null(f))
		return 0;
	if ((rc = obj(c, root, "", "flash", &f)) ||
	    (rc = obj(c, f, "flash", "read_gbps", &grid)) ||
	    (rc = num(c, f, "flash", "rand4k_p50_us", 0, &p->flash_lat_us)))
		return rc;
	if (json_object_get(f, "sustained_read_gbps") &&
	    (rc = num(c, f, "flash", "sustained_read_gbps", NAN,
		      &p->flash_sustained_gbps)))
		return rc;
	json_object_foreach(grid, bk, row) {
		char *end;
		if (b == SIM_MAX_GRID)
			return bad(c, "flash.read_gbps: more than %d block sizes",
				   SIM_MAX_GRID);
		p->bs[b] = strtod(bk, &end);
		if (*end || !(p->bs[b] > 0))
			return bad(c, "flash.read_gbps.%s: not a block size", bk);
		snprintf(at, sizeof(at), "flash.read_gbps.%s", bk);
		if (!json_is_object(row) || json_object_size(row) < 1)
			return bad(c, "%s: not an object of queue depths", at);
		int q = 0;
		json_object_foreach(row, qk, v) {
			if (q == SIM_MAX_GRID)
				return bad(c, "%s: more than %d queue depths", at,
					   SIM_MAX_GRID);
			double qd = strtod(qk, &end);
			if (*end || !(qd >= 1))
				return bad(c, "%s.%s: not a queue depth", at, qk);
			if (b == 0)
				p->qd[q] = qd;
			else if (q >= p->n_qd || p->qd[q] != qd)
				return bad(c, "%s: queue depths differ from the "
					   "first row's", at);
			if ((rc = num(c, row, at, qk, NAN, &p->flash_gbps[b][q])))
				return rc;
			q++;
		}
		if (b == 0)
			p->n_qd = q;
		else if (q != p->n_qd)
			return bad(c, "%s: queue depths differ from the first "
				   "row's", at);
		b++;
	}
	if (b < 1)
		return bad(c, "flash.read_gbps: empty");
	p->n_bs = b;
	/* rows and columns sorted ascending (JSON keeps the file's order) */
	for (int i = 1; i < p->n_bs; i++)
		if (p->bs[i] <= p->bs[i - 1])
			return bad(c, "flash.read_gbps: block sizes not ascending");
	for (int i = 1; i < p->n_qd; i++)
		if (p->qd[i] <= p->qd[i - 1])
			return bad(c, "flash.read_gbps: queue depths not ascending");
	(void)cmp_key;
	p->have_flash = true;
	return 0;
}

/* fabric.<op>: optional [{"bytes": B, "us": T, ...}], bytes ascending */
static int load_curve(struct ld *c, json_t *fab, enum fabric_op op,
		      struct sim_fab_curve *cv)
{
	const char *name = fabric_op_name(op);
	json_t *a = json_object_get(fab, name), *pt;
	char at[64];
	size_t i;
	int rc;

	cv->n = 0;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a) || json_array_size(a) < 1)
		return bad(c, "fabric.%s: not an array of points", name);
	if (json_array_size(a) > SIM_MAX_FAB)
		return bad(c, "fabric.%s: more than %d points", name, SIM_MAX_FAB);
	json_array_foreach(a, i, pt) {
		snprintf(at, sizeof(at), "fabric.%s[%zu]", name, i);
		if (!json_is_object(pt))
			return bad(c, "%s: not an object", at);
		if ((rc = num(c, pt, at, "bytes", NAN, &cv->bytes[i])) ||
		    (rc = num(c, pt, at, "us", NAN, &cv->us[i])))
			return rc;
		if (i > 0 && cv->bytes[i] <= cv->bytes[i - 1])
			return bad(c, "%s.bytes: not ascending", at);
	}
	cv->n = (int)json_array_size(a);
	return 0;
}

/* fabric: latency_us and gbps, and the curves where probe measured them;
 * "skipped" (probe had one CPU): no fabric */
static int load_fabric(struct ld *c, json_t *root, struct sim_profile *p)
{
	json_t *fab = json_object_get(root, "fabric");
	int rc;

	if (!fab || json_is_null(fab))
		return 0;
	if (!json_is_object(fab))
		return bad(c, "fabric: not an object");
	if (json_object_get(fab, "skipped"))
		return 0;
	if ((rc = num(c, fab, "fabric", "latency_us", 0, &p->fabric_lat_us)) ||
	    (rc = num(c, fab, "fabric", "gbps", NAN, &p->fabric_gbps)))
		return rc;
	for (int op = 0; op < FABRIC_OP_COUNT; op++)
		if ((rc = load_curve(c, fab, (enum fabric_op)op, &p->fab[op])))
			return rc;
	p->have_fabric = true;
	return 0;
}

static int load_rest(struct ld *c, json_t *root, struct sim_profile *p)
{
	json_t *m, *d, *g, *b, *s, *kv, *pw;
	int rc;

	if ((rc = obj(c, root, "", "machine", &m)))
		return rc;
	snprintf(p->cpu, sizeof(p->cpu), "%s",
		 json_is_string(json_object_get(m, "cpu"))
			 ? json_string_value(json_object_get(m, "cpu")) : "unknown");
	snprintf(p->isa, sizeof(p->isa), "%s",
		 json_is_string(json_object_get(m, "kern_isa"))
			 ? json_string_value(json_object_get(m, "kern_isa")) : "?");
	if ((rc = obj(c, root, "", "dram", &d)) ||
	    (rc = obj(c, d, "dram", "read_gbps_by_threads", &g)) ||
	    (rc = series(c, g, "dram.read_gbps_by_threads", NAN, p->dram_gbps,
			 SIM_MAX_UNITS, &p->n_dram)))
		return rc;
	if ((rc = obj(c, root, "", "barrier", &b)) ||
	    (rc = obj(c, b, "barrier", "us_by_units", &g)) ||
	    (rc = series(c, g, "barrier.us_by_units", 0, p->barrier_us,
			 SIM_MAX_UNITS, &p->n_bar)))
		return rc;
	if ((rc = obj(c, root, "", "sampler", &s)) ||
	    (rc = num(c, s, "sampler", "ns_per_vocab", 0, &p->sampler_ns)) ||
	    (rc = num(c, s, "sampler", "greedy_ns_per_vocab", 0, &p->greedy_ns)))
		return rc;
	kv = json_object_get(root, "kv_write");
	if (kv && json_is_object(kv) && !json_object_get(kv, "skipped")) {
		if ((rc = num(c, kv, "kv_write", "write_gbps", NAN,
			      &p->kv_write_gbps)))
			return rc;
		p->have_kv_write = true;
	}
	if ((rc = load_fabric(c, root, p)))
		return rc;
	pw = json_object_get(root, "power");
	if (pw && !json_is_null(pw)) {
		if (!json_is_object(pw))
			return bad(c, "power: not an object");
		if ((rc = num(c, pw, "power", "watts", NAN, &p->watts)))
			return rc;
	}
	pw = json_object_get(root, "page_cache");
	if (pw && !json_is_null(pw)) {
		if (!json_is_object(pw))
			return bad(c, "page_cache: not an object");
		if ((rc = num(c, pw, "page_cache", "fault_ns_per_byte", 0,
			      &p->pc_fault_ns_per_byte)))
			return rc;
	}
	return 0;
}

int sim_profile_parse(struct sim_profile *out, const char *text,
		      const char *name, char *err, size_t errlen)
{
	struct ld c = { name, err, errlen };
	struct sim_profile *p = calloc(1, sizeof(*p));
	json_error_t je;
	json_t *root;
	int rc;

	if (!p)
		return -ENOMEM;
	root = json_loads(text, 0, &je);
	if (!root) {
		free(p);
		return bad(&c, "line %d column %d: %s", je.line, je.column, je.text);
	}
	if (!json_is_object(root))
		rc = bad(&c, "not a JSON object");
	else if (!(rc = load_rest(&c, root, p)) && !(rc = load_ops(&c, root, p)) &&
		 !(rc = load_kernels(&c, root, p)) &&
		 !(rc = load_matmul(&c, root, p)))
		rc = load_flash(&c, root, p);
	json_decref(root);
	if (!rc) {
		snprintf(p->path, sizeof(p->path), "%s", name);
		*out = *p;
	}
	free(p);
	return rc;
}

int sim_profile_load(struct sim_profile *p, const char *path, char *err,
		     size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *text;
	long n;
	int rc;

	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fclose(f);
		snprintf(err, errlen, "%s: cannot read", path);
		return -EIO;
	}
	if (n > 64 << 20) {
		fclose(f);
		snprintf(err, errlen, "%s: %ld bytes is too large for a profile",
			 path, n);
		return -EINVAL;
	}
	text = malloc((size_t)n + 1);
	if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
		free(text);
		fclose(f);
		snprintf(err, errlen, "%s: cannot read", path);
		return -EIO;
	}
	fclose(f);
	text[n] = '\0';
	rc = sim_profile_parse(p, text, path, err, errlen);
	free(text);
	return rc;
}
