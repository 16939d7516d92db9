/*
 * plan.c - the chips' slices and the units' shares of a model. See plan.h.
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

/* share i of n of range r (its start is a multiple of align) */
static struct plan_range sub(struct plan_range r, int i, int n, int64_t align)
{
	struct plan_range s = plan_split(plan_len(r), i, n, align);

	return (struct plan_range){r.r0 + s.r0, r.r0 + s.r1};
}

static int64_t lcm16(int64_t b)
{
	b = b > 1 ? b : 1;
	return b % PLAN_ALIGN_ROWS == 0 ? b : b * PLAN_ALIGN_ROWS;
}

static int chips_init(struct plan *p, const struct llama_hparams *hp,
		      const struct plan_config *cfg, char *err, size_t errlen)
{
	const int N = p->n_chips;
	const int64_t group = hp->n_head / hp->n_head_kv, hd = hp->head_dim;
	const struct plan_range all_e = {0, hp->n_embd}, all_f = {0, hp->n_ff},
				all_v = {0, hp->n_vocab};

	if (N > PLAN_MAX_CHIPS || N > hp->n_head_kv) {
		snprintf(err, errlen, "--chips %d but the model has %d KV heads: a "
			 "chip holds whole KV heads and their query heads, so at "
			 "most %d chips", N, hp->n_head_kv,
			 hp->n_head_kv < PLAN_MAX_CHIPS ? hp->n_head_kv
							: PLAN_MAX_CHIPS);
		return -EINVAL;
	}
	const int64_t ff_align = p->tp == PLAN_TP_ALLREDUCE ? lcm16(cfg->down_block)
							    : PLAN_ALIGN_ROWS;
	for (int c = 0; c < N; c++) {
		struct plan_chip *ch = &p->chips[c];
		ch->kv_heads = plan_split(hp->n_head_kv, c, N, 1);
		ch->q_heads = (struct plan_range){ch->kv_heads.r0 * group,
						  ch->kv_heads.r1 * group};
		ch->ff = sub(all_f, c, N, ff_align);
		ch->vocab = sub(all_v, c, N, PLAN_ALIGN_ROWS);
		ch->embd = p->tp == PLAN_TP_ALLREDUCE ? all_e
						      : sub(all_e, c, N, PLAN_ALIGN_ROWS);
		if (!plan_len(ch->ff) || !plan_len(ch->vocab) || !plan_len(ch->embd)) {
			snprintf(err, errlen, "--chips %d: chip %d would hold no rows "
				 "of a %s of %d rows (slices are multiples of %lld)",
				 N, c, !plan_len(ch->embd) ? "n_embd matrix" :
				 !plan_len(ch->ff) ? "FFN matrix" : "vocabulary",
				 !plan_len(ch->embd) ? hp->n_embd :
				 !plan_len(ch->ff) ? hp->n_ff : hp->n_vocab,
				 (long long)(!plan_len(ch->ff) ? ff_align
							       : PLAN_ALIGN_ROWS));
			return -EINVAL;
		}
		if (p->tp == PLAN_TP_ALLREDUCE) {
			int64_t wb = cfg->wo_block > 1 ? cfg->wo_block : 1;
			int64_t c0 = ch->q_heads.r0 * hd, c1 = ch->q_heads.r1 * hd;
			if (c0 % wb || (c1 % wb && c1 != hp->n_embd)) {
				snprintf(err, errlen, "--tp allreduce --chips %d: chip "
					 "%d's columns %lld..%lld of attn_output "
					 "are off its quantization blocks of %lld",
					 N, c, (long long)c0, (long long)c1,
					 (long long)wb);
				return -EINVAL;
			}
		}
	}
	return 0;
}

int plan_init(struct plan *p, const struct llama_hparams *hp,
	      const struct plan_config *cfg, char *err, size_t errlen)
{
	const int n = cfg->n_units;
	const int64_t group = hp->n_head / hp->n_head_kv;
	int rc;

	memset(p, 0, sizeof(*p));
	p->n_chips = cfg->n_chips > 1 ? cfg->n_chips : 1;
	p->chip = p->n_chips > 1 ? cfg->chip : 0;
	p->tp = cfg->tp;
	if ((rc = chips_init(p, hp, cfg, err, errlen)))
		return rc;
	const struct plan_chip *ch = &p->chips[p->chip];
	if (n < 1 || n > PLAN_MAX_UNITS) {
		snprintf(err, errlen, "%d units: between 1 and %d", n,
			 PLAN_MAX_UNITS);
		return -EINVAL;
	}
	if (n > plan_len(ch->q_heads)) {
		if (p->n_chips > 1)
			snprintf(err, errlen, "%d units but chip %d has %lld "
				 "attention heads: a unit would have no head to "
				 "attend with", n, p->chip,
				 (long long)plan_len(ch->q_heads));
		else
			snprintf(err, errlen, "%d units but the model has %d "
				 "attention heads: a unit would have no head to "
				 "attend with", n, hp->n_head);
		return -EINVAL;
	}
	p->n_units = n;
	for (int i = 0; i < n; i++) {
		struct plan_unit *u = &p->unit[i];
		u->cpu = cfg->unit_cpu ? cfg->unit_cpu[i] : -1;
		u->node = cfg->unit_node ? cfg->unit_node[i] : 0;
		u->q_heads = sub(ch->q_heads, i, n, 1);
		u->kv_heads.r0 = u->q_heads.r0 / group;
		u->kv_heads.r1 = (u->q_heads.r1 - 1) / group + 1;
		if (i > 0 && u->kv_heads.r0 < p->unit[i - 1].kv_heads.r1)
			p->kv_replicated++;
		u->embd = sub(ch->embd, i, n, PLAN_ALIGN_ROWS);
		/* allreduce: inside a chip down is split by output rows
		 * (embd), so a unit's ff share needs no block alignment */
		u->ff = sub(ch->ff, i, n, PLAN_ALIGN_ROWS);
		u->vocab = sub(ch->vocab, i, n, PLAN_ALIGN_ROWS);
		/* shared mode: whole groups; a unit may get none */
		u->kv_part = sub(ch->kv_heads, i, n, 1);
		u->q_part.r0 = u->kv_part.r0 * group;
		u->q_part.r1 = u->kv_part.r1 * group;
		if (!plan_len(u->embd) || !plan_len(u->ff) || !plan_len(u->vocab)) {
			snprintf(err, errlen, "%d units: unit %d would own no rows "
				 "of a %s of %lld rows (shares are multiples of %d "
				 "rows)", n, i,
				 !plan_len(u->embd) ? "n_embd matrix" :
				 !plan_len(u->ff) ? "FFN matrix" : "vocabulary",
				 (long long)(!plan_len(u->embd) ? plan_len(ch->embd) :
				 !plan_len(u->ff) ? plan_len(ch->ff) : plan_len(ch->vocab)),
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
