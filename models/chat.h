/*
 * chat.h - render a conversation into a prompt string with the chat
 * template a model ships (GGUF tokenizer.chat_template).
 *
 * Jinja is not interpreted: the template is recognised and its output
 * reproduced for the two styles the shipped models use:
 *   ChatML (SmolLM2, Qwen2): "<|im_start|>{role}\n{content}<|im_end|>\n"
 *       per message, "<|im_start|>assistant\n" as the generation prompt.
 *       A template that inserts a default system message when the first
 *       message is not "system" (SmolLM2's "You are a helpful AI assistant
 *       named SmolLM, trained by Hugging Face") has that text extracted
 *       and inserted the same way.
 *   Zephyr (TinyLlama-1.1B-Chat): "<|{role}|>\n{content}{eos}\n" per
 *       message, "<|assistant|>\n" as the generation prompt (after at
 *       least one message, as the template's loop.last test implies).
 *       {eos} is the template's eos_token (the vocabulary's EOS text, "</s>"
 *       for TinyLlama), or a literal "</s>" / "<|endoftext|>" in it.
 * The output is the text to tokenize with parse_special set; BOS is the
 * tokenizer's business (add_bos), not the template's.
 */
#ifndef STRATA_CHAT_H
#define STRATA_CHAT_H

#include <stdbool.h>
#include <stddef.h>

enum chat_style {
	CHAT_CHATML = 1,
	CHAT_ZEPHYR = 2,
};

struct chat_msg {
	const char *role; /* "system", "user", "assistant" */
	const char *content;
};

#define CHAT_MAX_SYSTEM 1024
#define CHAT_MAX_EOS 64

struct chat_template {
	enum chat_style style;
	char eos[CHAT_MAX_EOS]; /* Zephyr: end of each message */
	/* ChatML: system message inserted when the first message is not a
	 * system one; "" when the template inserts none */
	char default_system[CHAT_MAX_SYSTEM];
};

/* Recognise tmpl, either a GGUF tokenizer.chat_template string or the
 * name "chatml" / "zephyr". eos_text is the vocabulary's EOS token text
 * (tokenizer_token_text(t, t->eos_id)); it may be NULL when the template
 * does not use eos_token. Returns 0, or -ENOTSUP for a template of another
 * style and -EINVAL for one that needs eos_text without it or carries an
 * over-long default system prompt, with a message in err. Thread-safe. */
int chat_template_init(struct chat_template *ct, const char *tmpl,
		       const char *eos_text, char *err, size_t errlen);

/* Render n messages (add_generation_prompt: end with the assistant's turn
 * opening) into out as a NUL-terminated string. Returns its length, or
 * -ENOSPC if it needs more than outlen - 1 bytes (out untouched),
 * -EINVAL for a message without role or content.
 * Thread-safe. */
int chat_apply(const struct chat_template *ct, const struct chat_msg *msgs,
	       size_t n, bool add_generation_prompt, char *out, size_t outlen);

#endif
