/*
 * replay.c - main() for a harness without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on each file named, or on each regular file
 * in each directory named, so `make test` replays the committed corpus
 * (and every crash turned regression case) under plain gcc.
 *   build/fuzz/replay_NAME FILE|DIR ...     exit 0, or 1 if none was read
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz/fuzz.h"
#include "models/util.h"

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	long n;

	if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "replay: cannot read %s\n", path);
		if (f)
			fclose(f);
		return 0;
	}
	uint8_t *buf = xmalloc((size_t)n + 1);
	size_t got = fread(buf, 1, (size_t)n, f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, got);
	free(buf);
	return 1;
}

int main(int argc, char **argv)
{
	int n = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st)) {
			fprintf(stderr, "replay: %s: no such file\n", argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			n += run_file(argv[i]);
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *e;
		char p[4096];
		while (d && (e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", argv[i], e->d_name);
			n += run_file(p);
		}
		if (d)
			closedir(d);
	}
	printf("replay: %d input(s), no crash\n", n);
	return n > 0 ? 0 : 1;
}
