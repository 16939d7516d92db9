/*
 * fuzz_flags.c - the command line: the input split at NULs into up to 32
 * arguments after "decode", through flags_parse (every size, number and
 * enum parser, getopt_long, flags_check), and each argument through
 * parse_size on its own.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/flags.h"
#include "fuzz/fuzz.h"
#include "models/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[34], err[512];
	int argc = 0;
	struct decode_options o;
	uint64_t v;
	char *buf = malloc(size + 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = 0;
	argv[argc++] = (char *)"decode";
	for (char *p = buf; argc < 33 && p < buf + size; p += strlen(p) + 1)
		argv[argc++] = p;
	argv[argc] = NULL;
	for (int i = 1; i < argc; i++)
		parse_size(argv[i], &v);
	flags_parse(argc, argv, &o, err, sizeof(err));
	free(buf);
	return 0;
}
