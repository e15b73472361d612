/* lib/util.h - safe number parsing and small helpers shared by the modules */
#ifndef MG_UTIL_H
#define MG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mg-buf.h"

/*
 * Parse a whole decimal integer (optional sign, no white space, no
 * trailing garbage) within [min, max].  Returns true and sets *ret on
 * success.  Pure.
 */
bool mg_parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret);

/*
 * Append "1,2,3" for ids, writing at most max_ids of them followed by
 * ",...(+N more)" so that a log line stays bounded.  Pure.
 */
int mg_ids_join(struct mg_buf *out, const int64_t *ids, size_t n, size_t max_ids);

/* Append a PostgreSQL array literal "{1,2,3}" of all ids.  Pure. */
int mg_ids_pgarray(struct mg_buf *out, const int64_t *ids, size_t n);

#endif /* MG_UTIL_H */
