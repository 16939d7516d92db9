/*
 * plan.c - the units' shares of a model. See plan.h.
 */
#include "engine/plan.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct plan_range plan_split(int64_t n, int i, int n_units, int64_t align)
{
	struct plan_range r;

	/* boundary b_i = n * i / n_units rounded to the nearest multiple
	 * of align; 0 and n stay exact */
	int64_t b0 = n * i / n_units, b1 = n * (i + 1) / n_units;
	if (align > 1) {
		b0 = i == 0 ? 0 : (b0 + align / 2) / align * align;
		b1 = i + 1 == n_units ? n : (b1 + align / 2) / align * align;
		if (b0 > n)
			b0 = n;
		if (b1 > n)
			b1 = n;
	}
	r.r0 = b0;
	r.r1 = b1 > b0 ? b1 : b0;
	return r;
}

int plan_init(struct plan *p, const struct llama_hparams *hp,
	      const struct plan_config *cfg, char *err, size_t errlen)
{
	const int n = cfg->n_units;
	const int64_t group = hp->n_head / hp->n_head_kv;

	memset(p, 0, sizeof(*p));
	if (n < 1 || n > PLAN_MAX_UNITS) {
		snprintf(err, errlen, "%d units: between 1 and %d", n,
			 PLAN_MAX_UNITS);
		return -EINVAL;
	}
	if (n > hp->n_head) {
		snprintf(err, errlen, "%d units but the model has %d attention "
			 "heads: a unit would have no head to attend with", n,
			 hp->n_head);
		return -EINVAL;
	}
	p->n_units = n;
	for (int i = 0; i < n; i++) {
		struct plan_unit *u = &p->unit[i];
		u->cpu = cfg->unit_cpu ? cfg->unit_cpu[i] : -1;
		u->node = cfg->unit_node ? cfg->unit_node[i] : 0;
		u->q_heads = plan_split(hp->n_head, i, n, 1);
		u->kv_heads.r0 = u->q_heads.r0 / group;
		u->kv_heads.r1 = (u->q_heads.r1 - 1) / group + 1;
		if (i > 0 && u->kv_heads.r0 < p->unit[i - 1].kv_heads.r1)
			p->kv_replicated++;
		u->embd = plan_split(hp->n_embd, i, n, PLAN_ALIGN_ROWS);
		u->ff = plan_split(hp->n_ff, i, n, PLAN_ALIGN_ROWS);
		u->vocab = plan_split(hp->n_vocab, i, n, PLAN_ALIGN_ROWS);
		/* shared mode: whole groups; a unit may get none */
		u->kv_part = plan_split(hp->n_head_kv, i, n, 1);
		u->q_part.r0 = u->kv_part.r0 * group;
		u->q_part.r1 = u->kv_part.r1 * group;
		if (!plan_len(u->embd) || !plan_len(u->ff) || !plan_len(u->vocab)) {
			snprintf(err, errlen, "%d units: unit %d would own no rows "
				 "of a %s of %d rows (shares are multiples of %d "
				 "rows)", n, i,
				 !plan_len(u->embd) ? "n_embd matrix" :
				 !plan_len(u->ff) ? "FFN matrix" : "vocabulary",
				 !plan_len(u->embd) ? hp->n_embd :
				 !plan_len(u->ff) ? hp->n_ff : hp->n_vocab,
				 PLAN_ALIGN_ROWS);
			return -EINVAL;
		}
		bool seen = false;
		for (int j = 0; j < i; j++)
			seen |= p->unit[j].node == u->node;
		p->n_nodes += !seen;
	}
	return 0;
}
