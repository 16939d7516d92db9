/*
 * fuzz_chat.c - chat templates: the input up to its first NUL is the
 * template text (as a GGUF tokenizer.chat_template would carry), the rest
 * NUL-separated role / content pairs to render, into a buffer that may be
 * too small. A rendered length must fit the buffer it was given.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"
#include "models/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct chat_template ct;
	struct chat_msg msgs[8];
	const char *parts[17] = {0};
	size_t n_parts = 0, n = 0;
	char err[256], out[512];
	char *buf = malloc(size + 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = 0;
	for (char *p = buf; n_parts < 17 && p <= buf + size; p += strlen(p) + 1)
		parts[n_parts++] = p;
	if (chat_template_init(&ct, parts[0], "</s>", err, sizeof(err)) == 0) {
		for (size_t i = 1; i + 1 < n_parts && n < 8; i += 2)
			msgs[n++] = (struct chat_msg){parts[i], parts[i + 1]};
		for (size_t cap = 1; cap <= sizeof(out); cap *= 8) {
			int r = chat_apply(&ct, msgs, n, size & 1, out, cap);
			if (r >= 0 && ((size_t)r >= cap || strlen(out) != (size_t)r))
				abort();
		}
	}
	free(buf);
	return 0;
}
