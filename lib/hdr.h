/* lib/hdr.h - header fields: checks, RFC 2047 encoding, folding, addresses */
#ifndef MG_HDR_H
#define MG_HDR_H

#include <stdbool.h>
#include <stddef.h>

#include "mg-buf.h"
#include "mg-err.h"

#define MG_ADDR_MAX 254 /* RFC 5321 4.5.3.1.3 path limit less the brackets */

/*
 * Refuse a header value that could end the header early or smuggle in a
 * second one: CR, LF, NUL or another control character except TAB, or
 * bytes that are not valid UTF-8.  Values come from the database, so this
 * is input validation: the caller fails the group.  Pure.
 * "Control" includes DEL and the C1 range U+0080..U+009F.  The message
 * names the field and the byte offset of the first bad character.
 */
int mg_hdr_check_value(const char *name, const char *value, struct mg_err *err);

/*
 * Validate a bare e-mail address (as used on the envelope and in To):
 * 1..254 bytes, printable ASCII only (no space, control, or any of
 * "<>()[],;:\\\""), exactly one '@' with a non-empty local part and a
 * non-empty domain without empty labels.  what names the address in the
 * message ("recipient address").  Pure.
 */
int mg_addr_check(const char *what, const char *addr, struct mg_err *err);

/*
 * Parse a mailbox as written in the config's "sender": either "a@b.example"
 * or "Display Name <a@b.example>" (the name may be a quoted string).  On
 * success *ret_display (NULL when there is none) and *ret_addr are
 * malloc'd and owned by the caller.  The address is checked with
 * mg_addr_check().  Pure.
 * A quoted name is unescaped; an unquoted one is taken as it is (trimmed),
 * specials included.  An empty name gives NULL.  ret_* are set only on
 * success.
 */
int mg_addr_parse_mailbox(const char *mailbox, char **ret_display, char **ret_addr,
			  struct mg_err *err);

/* The domain of a checked address (the part after '@').  Borrowed.  Pure. */
const char *mg_addr_domain(const char *addr);

/*
 * Append "Name: value" CRLF for an unstructured field (Subject).  value is
 * checked with mg_hdr_check_value().  ASCII values are folded at white
 * space to keep lines under 78 characters; a value with non-ASCII bytes
 * becomes RFC 2047 encoded-words ("=?UTF-8?B?...?=", each at most 75
 * characters, never splitting a UTF-8 sequence) separated by CRLF SP.
 * Pure.
 * ASCII holding "=?" or a word too long to fold is encoded as well; an
 * empty value gives "Name:" CRLF.  Nothing is written when value is bad;
 * after MG_ENOMEM or the cap of out, out may hold part of the field.
 */
int mg_hdr_add_text(struct mg_buf *out, const char *name, const char *value, struct mg_err *err);

/*
 * Append "Name: mailbox" CRLF: "addr" alone, or "display <addr>" where the
 * display name is written as an atom phrase, a quoted string, or RFC 2047
 * encoded-words as needed.  Pure.
 */
int mg_hdr_add_mailbox(struct mg_buf *out, const char *name, const char *display, const char *addr,
		       struct mg_err *err);

/* True when s[0..len) is valid UTF-8 (no overlongs, no surrogates).  Pure. */
bool mg_utf8_valid(const char *s, size_t len);

#endif /* MG_HDR_H */
