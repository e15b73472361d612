/* lib/mg-alloc.h - allocation wrappers with a test-only failure hook (curl "torture") */
#ifndef MG_ALLOC_H
#define MG_ALLOC_H

#include <stddef.h>

/*
 * Pure modules allocate through these, so that the torture test can fail
 * the Nth allocation and check that every path returns MG_ENOMEM without
 * leaking.  Outside tests they are malloc/realloc/strdup.
 */
void *mg_malloc(size_t n);
void *mg_calloc(size_t n, size_t size);
void *mg_realloc(void *p, size_t n);
char *mg_strdup(const char *s);
char *mg_strndup(const char *s, size_t n);

/*
 * Test hook: after this many more successful allocations, every further
 * one fails (negative: never fail).  Not thread-safe; tests only.
 */
void mg_alloc_fail_after(long n);

#endif /* MG_ALLOC_H */
