/* lib/dir.c - the names in a directory, filtered and sorted */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dir.h"
#include "mg-alloc.h"

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void mg_dir_names_free(char **names, size_t n)
{
	for (size_t i = 0; names != NULL && i < n; i++)
		free(names[i]);
	free(names);
}

int mg_dir_names(DIR *d, mg_dir_want_fn *want, void *arg, size_t max, char ***ret_names,
		 size_t *ret_n)
{
	char **names = NULL;
	size_t n = 0;
	struct dirent *de;
	int r;

	for (errno = 0; (de = readdir(d)) != NULL; errno = 0) {
		char **more;

		if (!want(de->d_name, arg))
			continue;
		if (n == max) {
			r = MG_EINPUT;
			goto fail;
		}
		more = mg_realloc(names, (n + 1) * sizeof(*names));
		if (more == NULL) {
			r = MG_ENOMEM;
			goto fail;
		}
		names = more;
		names[n] = mg_strdup(de->d_name);
		if (names[n] == NULL) {
			r = MG_ENOMEM;
			goto fail;
		}
		n++;
	}
	if (errno != 0) {
		r = MG_ESYS;
		goto fail;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_names);
	*ret_names = names;
	*ret_n = n;
	return MG_OK;
fail : {
	int saved = errno;

	mg_dir_names_free(names, n);
	errno = saved;
}
	return r;
}
