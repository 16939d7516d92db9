/*
 * fuzz_gguf.c - the GGUF reader on whole-file bytes, then what a file that
 * parses goes on to: llama_model_init (hyper-parameters and tensor shapes
 * from fuzzed metadata), tokenizer_init, and an encode / decode round on
 * the vocabulary it built. The bytes reach gguf_open through a memfd, the
 * path it is given in real use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz/fuzz.h"
#include "models/gguf.h"
#include "models/llama_model.h"
#include "models/tokenizer.h"

static void use_tokenizer(const struct gguf_file *g)
{
	struct tokenizer t;
	char err[256], piece[64];
	int32_t *ids = NULL;

	if (tokenizer_init(&t, g, err, sizeof(err)))
		return;
	int n = tokenizer_encode_alloc(&t, "Hello world <s> 12", 18, true,
				       true, &ids);
	for (int i = 0; i < n; i++)
		tokenizer_piece(&t, ids[i], true, piece, sizeof(piece));
	free(ids);
	for (int32_t id = -1; id < 8 && id <= t.n_vocab; id++)
		tokenizer_piece(&t, id, false, piece, sizeof(piece));
	tokenizer_destroy(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf_file g;
	struct llama_model m;
	char err[512], path[64];
	int fd = memfd_create("fuzz.gguf", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (gguf_open(&g, path, err, sizeof(err)) == 0) {
		if (llama_model_init(&m, &g, err, sizeof(err)) == 0)
			llama_model_destroy(&m);
		use_tokenizer(&g);
		gguf_close(&g);
	}
	close(fd);
	return 0;
}
