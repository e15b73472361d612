/* tests/fuzz/replay-main.c - run a fuzz target over corpus files without libFuzzer */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/*
 * Usage: fuzz_<name>_replay PATH...
 *
 * Each PATH is a file or a directory; the regular files of a directory are
 * replayed in name order (not recursively).  Every input is copied into a
 * buffer of exactly its size, as libFuzzer does, so AddressSanitizer sees
 * a read past the end.  Exit status: 0 when at least one input was
 * replayed, 1 when a path cannot be read or no input was found (an empty
 * corpus is a mistake in the build, not a pass).  A broken invariant
 * aborts.
 */

static int replay_file(const char *path)
{
	uint8_t *data = NULL;
	FILE *f = NULL;
	struct stat st;
	size_t n;
	int r = -1;

	f = fopen(path, "rb");
	if (f == NULL || fstat(fileno(f), &st) < 0) {
		(void)fprintf(stderr, "replay: cannot open '%s': %s\n", path, strerror(errno));
		goto out;
	}
	/* malloc(0) may return NULL; keep a valid pointer for empty inputs */
	data = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (data == NULL) {
		(void)fprintf(stderr, "replay: '%s': out of memory\n", path);
		goto out;
	}
	n = fread(data, 1, (size_t)st.st_size, f);
	if (n != (size_t)st.st_size || ferror(f)) {
		(void)fprintf(stderr, "replay: cannot read '%s'\n", path);
		goto out;
	}
	(void)LLVMFuzzerTestOneInput(data, n);
	r = 0;
out:
	free(data);
	if (f != NULL)
		(void)fclose(f);
	return r;
}

static int is_regular(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Replay path; add the number of inputs to *count.  Returns 0 or -1. */
static int replay_path(const char *path, size_t *count)
{
	struct dirent **names = NULL;
	char *file = NULL;
	struct stat st;
	int n = 0, r = -1;

	if (stat(path, &st) < 0) {
		(void)fprintf(stderr, "replay: cannot stat '%s': %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		if (replay_file(path) < 0)
			return -1;
		(*count)++;
		return 0;
	}
	n = scandir(path, &names, NULL, alphasort);
	if (n < 0) {
		(void)fprintf(stderr, "replay: cannot read '%s': %s\n", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		size_t len = strlen(path) + strlen(names[i]->d_name) + 2;

		free(file);
		file = malloc(len);
		if (file == NULL) {
			(void)fprintf(stderr, "replay: out of memory\n");
			goto out;
		}
		(void)snprintf(file, len, "%s/%s", path, names[i]->d_name);
		if (!is_regular(file))
			continue; /* ".", "..", sub-directories */
		if (replay_file(file) < 0)
			goto out;
		(*count)++;
	}
	r = 0;
out:
	free(file);
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

int main(int argc, char **argv)
{
	size_t count = 0;

	if (argc < 2) {
		(void)fprintf(stderr, "usage: %s CORPUS-DIR-OR-FILE...\n", argv[0]);
		return 1;
	}
	for (int i = 1; i < argc; i++)
		if (replay_path(argv[i], &count) < 0)
			return 1;
	if (count == 0) {
		(void)fprintf(stderr, "replay: no inputs found\n");
		return 1;
	}
	(void)printf("replayed %zu inputs\n", count);
	return 0;
}
