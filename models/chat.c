/*
 * chat.c - ChatML and Zephyr-style chat prompts (see chat.h).
 *
 * Detection follows llama.cpp's llm_chat_detect_template for ChatML (the
 * template mentions "<|im_start|>"). For Zephyr-style templates llama.cpp's
 * built-in renderer differs from the Jinja it stands in for (it detects
 * TinyLlama's template as "glmedge" and drops the EOS and newlines), so
 * here the output is what the Jinja template itself renders with
 * trim_blocks, as transformers' apply_chat_template does.
 */
#include "models/chat.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Copy the system prompt a ChatML template inserts for a conversation
 * that does not start with one:
 *   {% if loop.first and messages[0]['role'] != 'system' %}
 *   {{ '<|im_start|>system\n<TEXT><|im_end|>\n' }}{% endif %}
 * Returns 0 (dst "" if there is none) or -EINVAL if it does not fit. */
static int default_system(const char *tmpl, char *dst, size_t cap)
{
	static const char open[] = "<|im_start|>system\n";
	const char *cond = strstr(tmpl, "!= 'system'");
	const char *endif, *p, *e;

	if (!cond)
		cond = strstr(tmpl, "!= \"system\"");
	dst[0] = '\0';
	if (!cond)
		return 0;
	endif = strstr(cond, "{% endif");
	p = strstr(cond, open);
	if (!p || (endif && p > endif))
		return 0;
	p += sizeof(open) - 1;
	e = strstr(p, "<|im_end|>");
	if (!e || (endif && e > endif))
		return 0;
	if ((size_t)(e - p) >= cap)
		return -EINVAL;
	memcpy(dst, p, (size_t)(e - p));
	dst[e - p] = '\0';
	return 0;
}

int chat_template_init(struct chat_template *ct, const char *tmpl,
		       const char *eos_text, char *err, size_t errlen)
{
	memset(ct, 0, sizeof(*ct));
	if (!tmpl || !*tmpl)
		return fail(err, errlen, -ENOTSUP,
			    "no chat template (tokenizer.chat_template is "
			    "missing)");

	if (!strcmp(tmpl, "chatml")) {
		ct->style = CHAT_CHATML;
		return 0;
	}
	if (!strcmp(tmpl, "zephyr")) {
		ct->style = CHAT_ZEPHYR;
		snprintf(ct->eos, sizeof(ct->eos), "%s",
			 eos_text ? eos_text : "</s>");
		return 0;
	}
	if (strstr(tmpl, "<|im_start|>")) {
		/* Phi-4 (<|im_sep|>) and SmolVLM (<end_of_utterance>) use
		 * the marker without being ChatML */
		if (strstr(tmpl, "<|im_sep|>") ||
		    strstr(tmpl, "<end_of_utterance>"))
			goto unknown;
		ct->style = CHAT_CHATML;
		if (default_system(tmpl, ct->default_system,
				   sizeof(ct->default_system)))
			return fail(err, errlen, -EINVAL,
				    "chat template: default system prompt "
				    "longer than %d bytes",
				    CHAT_MAX_SYSTEM - 1);
		return 0;
	}
	if (strstr(tmpl, "<|user|>") && strstr(tmpl, "<|assistant|>") &&
	    !strstr(tmpl, "<|end|>")) {
		ct->style = CHAT_ZEPHYR;
		if (strstr(tmpl, "eos_token")) {
			if (!eos_text || !*eos_text)
				return fail(err, errlen, -EINVAL,
					    "chat template uses eos_token but "
					    "the vocabulary has no EOS text");
			if (strlen(eos_text) >= sizeof(ct->eos))
				return fail(err, errlen, -EINVAL,
					    "chat template: EOS text longer "
					    "than %d bytes", CHAT_MAX_EOS - 1);
			strcpy(ct->eos, eos_text);
		} else if (strstr(tmpl, "<|endoftext|>")) {
			strcpy(ct->eos, "<|endoftext|>");
		} else if (strstr(tmpl, "</s>")) {
			strcpy(ct->eos, "</s>");
		} else {
			goto unknown;
		}
		return 0;
	}
unknown:
	return fail(err, errlen, -ENOTSUP,
		    "chat template not supported (only ChatML and "
		    "Zephyr/TinyLlama styles are): \"%.60s%s\"", tmpl,
		    strlen(tmpl) > 60 ? "..." : "");
}

/* appends that count past the end, so a first pass can size the output */
struct sink {
	char *out;
	size_t cap, n;
};

static void emit(struct sink *k, const char *s)
{
	size_t l = strlen(s);

	if (k->n + l < k->cap)
		memcpy(k->out + k->n, s, l);
	k->n += l;
}

static void render(const struct chat_template *ct, const struct chat_msg *msgs,
		   size_t n, bool add_gen, struct sink *k)
{
	if (ct->style == CHAT_CHATML) {
		if (n && ct->default_system[0] &&
		    strcmp(msgs[0].role, "system")) {
			emit(k, "<|im_start|>system\n");
			emit(k, ct->default_system);
			emit(k, "<|im_end|>\n");
		}
		for (size_t i = 0; i < n; i++) {
			emit(k, "<|im_start|>");
			emit(k, msgs[i].role);
			emit(k, "\n");
			emit(k, msgs[i].content);
			emit(k, "<|im_end|>\n");
		}
		if (add_gen)
			emit(k, "<|im_start|>assistant\n");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		emit(k, "<|");
		emit(k, msgs[i].role);
		emit(k, "|>\n");
		emit(k, msgs[i].content);
		emit(k, ct->eos);
		emit(k, "\n");
	}
	if (add_gen && n)
		emit(k, "<|assistant|>\n");
}

int chat_apply(const struct chat_template *ct, const struct chat_msg *msgs,
	       size_t n, bool add_generation_prompt, char *out, size_t outlen)
{
	struct sink k = {NULL, 0, 0};

	for (size_t i = 0; i < n; i++)
		if (!msgs[i].role || !msgs[i].content)
			return -EINVAL;
	if (ct->style != CHAT_CHATML && ct->style != CHAT_ZEPHYR)
		return -EINVAL;
	render(ct, msgs, n, add_generation_prompt, &k);
	if (k.n >= outlen || k.n > (size_t)INT32_MAX)
		return -ENOSPC;
	k = (struct sink){out, outlen, 0};
	render(ct, msgs, n, add_generation_prompt, &k);
	out[k.n] = '\0';
	return (int)k.n;
}
