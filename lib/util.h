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
 * ",...(+N more)" so that a log line stays bounded ("...(+N more)" when
 * max_ids is 0; "" when n is 0).  Returns MG_OK, MG_ENOMEM or MG_EINPUT
 * (out->max reached); on error out may hold part of the list.  Pure.
 */
int mg_ids_join(struct mg_buf *out, const int64_t *ids, size_t n, size_t max_ids);

/*
 * Append a PostgreSQL array literal "{1,2,3}" of all ids ("{}" for none).
 * Errors as for mg_ids_join().  Pure.
 */
int mg_ids_pgarray(struct mg_buf *out, const int64_t *ids, size_t n);

/*
 * Parse a timestamp as PostgreSQL prints a timestamptz ("2026-11-26
 * 06:00:00+00", "2026-11-26 06:00:00.25+05:30") or as ISO 8601 writes it
 * ("2026-11-26T06:00:00+00:00", "2026-11-26T06:00:00Z",
 * "2026-11-26T06:00:00.123456-0100"): date, 'T' or one space, hh:mm:ss,
 * an optional fraction (digits beyond microseconds are cut off), and an
 * optional UTC offset ("Z", +hh, +hhmm, +hh:mm; none means UTC).  Years
 * 1..9999.  Sets *ret_usec to microseconds since the epoch and returns
 * true; false for anything else (no white space around it).  Pure.
 */
bool mg_parse_timestamp(const char *s, int64_t *ret_usec);

/*
 * Base64 (RFC 4648 4, with padding) of src[0..n) into dst, which must hold
 * 4 * ((n + 2) / 3) bytes; no NUL is added.  Returns the bytes written.
 * Pure.
 */
size_t mg_base64(char *dst, const unsigned char *src, size_t n);

#endif /* MG_UTIL_H */
