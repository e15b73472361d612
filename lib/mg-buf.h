/* lib/mg-buf.h - growable text buffer with a mandatory size cap */
#ifndef MG_BUF_H
#define MG_BUF_H

#include <stddef.h>

/*
 * Invariants (as git's strbuf): data is NUL-terminated once anything was
 * added (NULL before); len never exceeds max.  Touch the fields only
 * through this API, except for reading data/len.
 */
struct mg_buf {
	char *data;
	size_t len;   /* bytes used, excluding the NUL */
	size_t alloc; /* bytes allocated */
	size_t max;   /* hard cap on len; an append past it fails with MG_EINPUT */
};

#define MG_BUF_INIT(maxlen) ((struct mg_buf){ .max = (maxlen) })

/*
 * Append n bytes.  Returns MG_OK, MG_ENOMEM, or MG_EINPUT when the result
 * would exceed max (the buffer is then unchanged).  Pure.
 */
int mg_buf_add(struct mg_buf *b, const void *mem, size_t n);
/* Append a NUL-terminated string. */
int mg_buf_adds(struct mg_buf *b, const char *s);
/* Append one byte. */
int mg_buf_addc(struct mg_buf *b, char c);
/* Append printf-formatted text. */
int mg_buf_addf(struct mg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The contents as a string: "" (static) while nothing was added.  Borrowed. */
const char *mg_buf_str(const struct mg_buf *b);
/* Keep only the first len bytes (len <= b->len; a larger len does nothing). */
void mg_buf_truncate(struct mg_buf *b, size_t len);
/* Forget the contents but keep the memory and the cap. */
void mg_buf_reset(struct mg_buf *b);
/* Free the memory; the buffer can be used again (same cap).  NULL-safe. */
void mg_buf_release(struct mg_buf *b);
/*
 * Hand the contents over to the caller (free() it) and reset the buffer.
 * Returns a malloc'd empty string when nothing was added, NULL on ENOMEM.
 */
char *mg_buf_detach(struct mg_buf *b, size_t *ret_len);

#endif /* MG_BUF_H */
