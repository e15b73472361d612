/* lib/mime.h - building the mail: text part, attachment, PGP/MIME (RFC 2045-2049, 3156) */
#ifndef MG_MIME_H
#define MG_MIME_H

#include <stddef.h>
#include <stdint.h>

#include "mg-buf.h"
#include "mg-err.h"

/*
 * Everything a mail is made of.  Randomness and time come in here, so the
 * output is deterministic and can be golden-tested.  All strings are UTF-8
 * and borrowed.
 */
struct mg_mail {
	const char *from_display;    /* NULL: none */
	const char *from_addr;	     /* checked address */
	const char *to_addr;	     /* checked address */
	const char *subject;	     /* unstructured, may be non-ASCII */
	const char *body;	     /* text, LF or CRLF line ends */
	const char *attachment;	     /* NULL: no attachment */
	size_t attachment_len;	     /* bytes of attachment */
	const char *attachment_name; /* "events.csv" */
	const char *attachment_type; /* "text/csv" */
	int64_t date;		     /* seconds since the epoch, written in UTC */
	const char *message_id;	     /* "<...@domain>" */
	const char *boundary;	     /* random token, [A-Za-z0-9]{16,60}; parts append suffixes */
};

/*
 * Append the content entity: the part that is signed, or the whole body of
 * an unsigned mail.  With no attachment it is a text/plain part
 * (charset=utf-8, quoted-printable); with one it is multipart/mixed of that
 * text part and the attachment (quoted-printable, Content-Disposition:
 * attachment; filename=...).  Starts with the entity's own MIME headers,
 * uses CRLF everywhere.  Returns MG_OK, MG_ENOMEM or MG_EINPUT (bad UTF-8 or
 * the cap of out).  Pure.
 * The attachment must be UTF-8 text (it is labelled charset=utf-8), its
 * name printable ASCII without '"' or '\\' (no RFC 2231), its type a plain
 * "type/subtype".  Boundaries are "=_mix_"/"=_sig_" + m->boundary: "=_"
 * never occurs in quoted-printable output.
 */
int mg_mime_content(struct mg_buf *out, const struct mg_mail *m, struct mg_err *err);

/*
 * Append the whole message: From, To, Subject, Date, Message-Id,
 * MIME-Version, then
 *  - signature == NULL: the content entity as it is;
 *  - otherwise RFC 3156 multipart/signed; micalg=<micalg>;
 *    protocol="application/pgp-signature" of the content entity (byte for
 *    byte, so the signature made over it verifies) and an
 *    application/pgp-signature part holding signature (ASCII armor).
 * content must come from mg_mime_content() for the same m.  Pure.
 * All header values are checked before the first byte is written; after
 * MG_ENOMEM or the cap of out, out may hold part of the message.  The
 * message always ends in CRLF.
 */
int mg_mime_message(struct mg_buf *out, const struct mg_mail *m, const char *content,
		    size_t content_len, const char *signature, const char *micalg,
		    struct mg_err *err);

/* Append an RFC 5322 date in UTC: "Thu, 26 Nov 2026 23:26:45 +0000".  Pure. */
int mg_mime_date(struct mg_buf *out, int64_t t);

#endif /* MG_MIME_H */
