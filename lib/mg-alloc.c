/* lib/mg-alloc.c - allocation wrappers with a test-only failure hook */
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"

static long fail_after = -1;

static int alloc_allowed(void)
{
	if (fail_after < 0)
		return 1;
	if (fail_after == 0)
		return 0;
	fail_after--;
	return 1;
}

void mg_alloc_fail_after(long n)
{
	fail_after = n;
}

void *mg_malloc(size_t n)
{
	return alloc_allowed() ? malloc(n == 0 ? 1 : n) : NULL;
}

void *mg_calloc(size_t n, size_t size)
{
	return alloc_allowed() ? calloc(n == 0 ? 1 : n, size == 0 ? 1 : size) : NULL;
}

void *mg_realloc(void *p, size_t n)
{
	return alloc_allowed() ? realloc(p, n == 0 ? 1 : n) : NULL;
}

char *mg_strndup(const char *s, size_t n)
{
	char *p = mg_malloc(n + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *mg_strdup(const char *s)
{
	return mg_strndup(s, strlen(s));
}
