/* lib/qp.h - quoted-printable encoding for text parts (RFC 2045, 6.7) */
#ifndef MG_QP_H
#define MG_QP_H

#include <stddef.h>

#include "mg-buf.h"
#include "mg-err.h"

/*
 * Append the quoted-printable form of text[0..len) to out.
 *
 * Input lines may end in LF or CRLF; output lines end in CRLF and are at
 * most 76 characters long (soft breaks "=" CRLF).  Tabs and spaces before
 * a line end are encoded.  A line that starts with "From " or "." gets its
 * first character encoded, so no transport line can be mangled by mbox
 * writers or SMTP dot handling.  A lone CR is encoded as =0D.
 *
 * The output ends in CRLF exactly when text ends in a newline (LF or
 * CRLF); the last line of text without one gets none, and its trailing
 * white space is encoded too.  The "From "/"." rule applies to every
 * output line, also to one that starts after a soft break.  The output
 * never contains "=_" (RFC 2045 5.1 suggests it for boundaries).  On
 * failure out may hold part of the output.
 *
 * Returns MG_OK, MG_ENOMEM, or MG_EINPUT when out would exceed out->max.
 * Pure: no I/O, no logging, no global state.
 */
int mg_qp_encode(struct mg_buf *out, const char *text, size_t len);

#endif /* MG_QP_H */
