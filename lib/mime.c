/* lib/mime.c - building the mail: text part, attachment, PGP/MIME (RFC 2045-2049, 3156) */
#define _GNU_SOURCE /* memmem */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hdr.h"
#include "mime.h"
#include "qp.h"

/*
 * Boundaries start with "=_": quoted-printable output never holds that
 * pair ("=" is always followed by a hex digit or CRLF), so no part body
 * can contain a delimiter line (RFC 2045 5.1 and 6.7).  The two suffixes
 * differ in their first byte, so neither delimiter is a prefix of the
 * other.
 */
#define MIX_PREFIX	 "=_mix_"
#define SIG_PREFIX	 "=_sig_"
#define BOUNDARY_MIN	 16
#define BOUNDARY_MAX	 60
#define MEDIA_TYPE_MAX	 100
#define FILENAME_MAX_LEN 200		 /* keeps Content-Disposition far below 998 */
#define DATE_MIN	 (-2208988800LL) /* 1900-01-01T00:00:00Z: RFC 5322 3.3 year >= 1900 */
#define DATE_MAX	 253402300799LL	 /* 9999-12-31T23:59:59Z: four digits */

static const char text_part_headers[] = "Content-Type: text/plain; charset=utf-8\r\n"
					"Content-Transfer-Encoding: quoted-printable\r\n"
					"\r\n";

/*
 * A writer that keeps the first buffer failure, so a run of appends is
 * checked once (like git's strbuf users that check at the end).
 */
struct mw {
	struct mg_buf *out;
	int rc;
};

static void mw_add(struct mw *w, const char *s, size_t n)
{
	if (w->rc == MG_OK)
		w->rc = mg_buf_add(w->out, s, n);
}

static void mw_adds(struct mw *w, const char *s)
{
	mw_add(w, s, strlen(s));
}

static void mw_qp(struct mw *w, const char *s, size_t n)
{
	if (w->rc == MG_OK)
		w->rc = mg_qp_encode(w->out, s, n);
}

static int mw_finish(struct mw *w, struct mg_err *err)
{
	if (w->rc == MG_ENOMEM)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	if (w->rc < 0)
		return mg_err_set(err, w->rc, "the mail exceeds its limit of %zu bytes",
				  w->out->max);
	return MG_OK;
}

static bool is_token_char(char c)
{
	/* RFC 2045 5.1 token: printable ASCII but space and tspecials */
	return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

static int check_boundary(const char *b, struct mg_err *err)
{
	size_t n = 0;

	if (b == NULL)
		return mg_err_set(err, MG_EINPUT, "mail: no MIME boundary");
	for (; b[n] != '\0'; n++)
		if (!((b[n] >= 'a' && b[n] <= 'z') || (b[n] >= 'A' && b[n] <= 'Z') ||
		      (b[n] >= '0' && b[n] <= '9')))
			return mg_err_set(
				err, MG_EINPUT,
				"mail: MIME boundary holds a character other than A-Z, a-z, 0-9");
	if (n < BOUNDARY_MIN || n > BOUNDARY_MAX)
		return mg_err_set(err, MG_EINPUT,
				  "mail: MIME boundary of %zu characters, not %d..%d", n,
				  BOUNDARY_MIN, BOUNDARY_MAX);
	return MG_OK;
}

/* "type/subtype", both RFC 2045 tokens. */
static int check_media_type(const char *t, struct mg_err *err)
{
	const char *slash = t != NULL ? strchr(t, '/') : NULL;
	size_t i;

	if (slash == NULL || slash == t || slash[1] == '\0' || strlen(t) > MEDIA_TYPE_MAX)
		goto bad;
	for (i = 0; t[i] != '\0'; i++)
		if (t + i != slash && !is_token_char(t[i]))
			goto bad;
	return MG_OK;
bad:
	return mg_err_set(err, MG_EINPUT, "attachment: invalid media type '%s'",
			  t != NULL ? t : "(none)");
}

/*
 * The file name goes into a quoted-string parameter.  We do not do RFC 2231
 * encoding, so only printable ASCII without '"' and '\\' is accepted.
 */
static int check_filename(const char *f, struct mg_err *err)
{
	size_t i;

	if (f == NULL || f[0] == '\0')
		return mg_err_set(err, MG_EINPUT, "attachment: no file name");
	for (i = 0; f[i] != '\0'; i++)
		if ((unsigned char)f[i] < 0x20 || (unsigned char)f[i] > 0x7e || f[i] == '"' ||
		    f[i] == '\\')
			return mg_err_set(
				err, MG_EINPUT,
				"attachment: file name byte 0x%02x at offset %zu is not supported",
				(unsigned char)f[i], i);
	if (i > FILENAME_MAX_LEN)
		return mg_err_set(err, MG_EINPUT, "attachment: file name longer than %d bytes",
				  FILENAME_MAX_LEN);
	return MG_OK;
}

int mg_mime_content(struct mg_buf *out, const struct mg_mail *m, struct mg_err *err)
{
	struct mw w = { .out = out };
	size_t body_len;
	int r;

	if (m->body == NULL)
		return mg_err_set(err, MG_EINPUT, "mail: no body");
	body_len = strlen(m->body);
	if (!mg_utf8_valid(m->body, body_len))
		return mg_err_set(err, MG_EINPUT, "mail body: invalid UTF-8");
	if (m->attachment == NULL) {
		mw_adds(&w, text_part_headers);
		mw_qp(&w, m->body, body_len);
		return mw_finish(&w, err);
	}

	r = check_boundary(m->boundary, err);
	if (r < 0)
		return r;
	r = check_media_type(m->attachment_type, err);
	if (r < 0)
		return r;
	r = check_filename(m->attachment_name, err);
	if (r < 0)
		return r;
	/* quoted-printable never shrinks text: refuse a too big one before encoding it */
	if (m->attachment_len > out->max - out->len)
		return mg_err_set(
			err, MG_EINPUT,
			"attachment of %zu bytes: the mail exceeds its limit of %zu bytes",
			m->attachment_len, out->max);
	if (!mg_utf8_valid(m->attachment, m->attachment_len))
		return mg_err_set(err, MG_EINPUT, "attachment '%s': invalid UTF-8",
				  m->attachment_name);

	/* RFC 2046 5.1.1; no preamble, no epilogue */
	mw_adds(&w, "Content-Type: multipart/mixed;\r\n boundary=\"" MIX_PREFIX);
	mw_adds(&w, m->boundary);
	mw_adds(&w, "\"\r\n\r\n--" MIX_PREFIX);
	mw_adds(&w, m->boundary);
	mw_adds(&w, "\r\n");
	mw_adds(&w, text_part_headers);
	mw_qp(&w, m->body, body_len);

	mw_adds(&w, "\r\n--" MIX_PREFIX);
	mw_adds(&w, m->boundary);
	mw_adds(&w, "\r\nContent-Type: ");
	mw_adds(&w, m->attachment_type);
	mw_adds(&w, "; charset=utf-8\r\n"
		    "Content-Transfer-Encoding: quoted-printable\r\n"
		    "Content-Disposition: attachment;");
	/* fold before the file name when the line would pass 78 columns */
	mw_adds(&w, strlen(m->attachment_name) + 44 > 78 ? "\r\n filename=\"" : " filename=\"");
	mw_adds(&w, m->attachment_name);
	mw_adds(&w, "\"\r\n\r\n");
	mw_qp(&w, m->attachment, m->attachment_len);

	mw_adds(&w, "\r\n--" MIX_PREFIX);
	mw_adds(&w, m->boundary);
	mw_adds(&w, "--\r\n");
	return mw_finish(&w, err);
}

/* Format t as an RFC 5322 3.3 date-time in UTC; returns the length or -1. */
static int date_format(char buf[40], int64_t t)
{
	static const char wdays[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;

	if (t < DATE_MIN || t > DATE_MAX || (int64_t)tt != t)
		return -1;
	if (gmtime_r(&tt, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
	    tm.tm_mon > 11)
		return -1;
	/* English names from tables, not strftime(): no locale in a pure module */
	return snprintf(buf, 40, "%s, %02d %s %04d %02d:%02d:%02d +0000", wdays[tm.tm_wday],
			tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
			tm.tm_sec);
}

int mg_mime_date(struct mg_buf *out, int64_t t)
{
	char buf[40];
	int n = date_format(buf, t);

	if (n < 0)
		return MG_EINPUT;
	return mg_buf_add(out, buf, (size_t)n);
}

/* "<left@right>", printable ASCII without space, checked for header use. */
static int check_message_id(const char *id, struct mg_err *err)
{
	size_t n;
	int r;

	if (id == NULL)
		return mg_err_set(err, MG_EINPUT, "mail: no Message-Id");
	r = mg_hdr_check_value("Message-Id", id, err);
	if (r < 0)
		return r;
	n = strlen(id);
	if (n < 5 || id[0] != '<' || id[n - 1] != '>' || strchr(id, '@') == NULL)
		return mg_err_set(err, MG_EINPUT, "header 'Message-Id': '%s' is not <left@right>",
				  id);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)id[i] <= 0x20 || (unsigned char)id[i] >= 0x7f ||
		    ((id[i] == '<' || id[i] == '>') && i > 0 && i < n - 1))
			return mg_err_set(err, MG_EINPUT,
					  "header 'Message-Id': byte 0x%02x at offset %zu",
					  (unsigned char)id[i], i);
	return MG_OK;
}

/* "pgp-" and a lower-case hash name (RFC 3156 5). */
static int check_micalg(const char *micalg, struct mg_err *err)
{
	if (micalg == NULL || strncmp(micalg, "pgp-", 4) != 0 || micalg[4] == '\0')
		goto bad;
	for (const char *p = micalg + 4; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			goto bad;
	return MG_OK;
bad:
	return mg_err_set(err, MG_EINPUT, "signature: invalid micalg '%s'",
			  micalg != NULL ? micalg : "(none)");
}

/* An ASCII-armored signature: printable ASCII, TAB, CR and LF only. */
static int check_signature(const char *sig, struct mg_err *err)
{
	static const char begin[] = "-----BEGIN PGP SIGNATURE-----";

	if (strncmp(sig, begin, sizeof(begin) - 1) != 0)
		return mg_err_set(err, MG_EINPUT, "signature: not an ASCII-armored signature");
	for (size_t i = 0; sig[i] != '\0'; i++) {
		unsigned char c = (unsigned char)sig[i];

		if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c > 0x7e)
			return mg_err_set(err, MG_EINPUT, "signature: byte 0x%02x at offset %zu", c,
					  i);
	}
	return MG_OK;
}

/*
 * Write the checked signature with CRLF line ends and without trailing
 * line breaks: the CRLF before the closing delimiter belongs to the
 * delimiter (RFC 2046 5.1.1).
 */
static void add_signature(struct mw *w, const char *sig)
{
	size_t n = strlen(sig), start = 0;

	while (n > 0 && (sig[n - 1] == '\n' || sig[n - 1] == '\r'))
		n--;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && sig[i] != '\n' && sig[i] != '\r')
			continue;
		mw_add(w, sig + start, i - start);
		if (i == n)
			break;
		mw_adds(w, "\r\n");
		if (sig[i] == '\r' && i + 1 < n && sig[i + 1] == '\n')
			i++;
		start = i + 1;
	}
}

int mg_mime_message(struct mg_buf *out, const struct mg_mail *m, const char *content,
		    size_t content_len, const char *signature, const char *micalg,
		    struct mg_err *err)
{
	struct mw w = { .out = out };
	char date[40];
	int r, n;

	if (m->from_addr == NULL || m->to_addr == NULL || m->subject == NULL)
		return mg_err_set(err, MG_EINPUT, "mail: no From, To or Subject");
	if (content == NULL || content_len == 0)
		return mg_err_set(err, MG_EINPUT, "mail: no content");
	n = date_format(date, m->date);
	if (n < 0)
		return mg_err_set(err, MG_EINPUT, "header 'Date': time %lld is out of range",
				  (long long)m->date);
	r = check_message_id(m->message_id, err);
	if (r < 0)
		return r;
	/* check every header value before the first byte is written */
	r = mg_addr_check("header 'From': address", m->from_addr, err);
	if (r < 0)
		return r;
	if (m->from_display != NULL) {
		r = mg_hdr_check_value("From", m->from_display, err);
		if (r < 0)
			return r;
	}
	r = mg_addr_check("header 'To': address", m->to_addr, err);
	if (r < 0)
		return r;
	r = mg_hdr_check_value("Subject", m->subject, err);
	if (r < 0)
		return r;
	if (signature != NULL) {
		char delim[sizeof(SIG_PREFIX) + BOUNDARY_MAX + 2];

		r = check_boundary(m->boundary, err);
		if (r < 0)
			return r;
		r = check_micalg(micalg, err);
		if (r < 0)
			return r;
		r = check_signature(signature, err);
		if (r < 0)
			return r;
		/* cannot happen for content from mg_mime_content(); cheap to make sure */
		(void)snprintf(delim, sizeof(delim), "--%s%s", SIG_PREFIX, m->boundary);
		if (memmem(content, content_len, delim, strlen(delim)) != NULL)
			return mg_err_set(err, MG_EINPUT, "mail: content holds the MIME boundary");
	}

	r = mg_hdr_add_mailbox(out, "From", m->from_display, m->from_addr, err);
	if (r < 0)
		return r;
	r = mg_hdr_add_mailbox(out, "To", NULL, m->to_addr, err);
	if (r < 0)
		return r;
	r = mg_hdr_add_text(out, "Subject", m->subject, err);
	if (r < 0)
		return r;
	mw_adds(&w, "Date: ");
	mw_add(&w, date, (size_t)n);
	mw_adds(&w, "\r\nMessage-Id: ");
	mw_adds(&w, m->message_id);
	mw_adds(&w, "\r\nMIME-Version: 1.0\r\n");

	if (signature == NULL) {
		mw_add(&w, content, content_len);
		/* SMTP wants the message to end in CRLF */
		if (content_len < 2 || memcmp(content + content_len - 2, "\r\n", 2) != 0)
			mw_adds(&w, "\r\n");
		return mw_finish(&w, err);
	}

	/* RFC 3156 5: the first part is the signed content entity, byte for byte */
	mw_adds(&w, "Content-Type: multipart/signed; micalg=\"");
	mw_adds(&w, micalg);
	mw_adds(&w, "\";\r\n protocol=\"application/pgp-signature\";\r\n boundary=\"" SIG_PREFIX);
	mw_adds(&w, m->boundary);
	mw_adds(&w, "\"\r\n\r\n--" SIG_PREFIX);
	mw_adds(&w, m->boundary);
	mw_adds(&w, "\r\n");
	mw_add(&w, content, content_len);
	mw_adds(&w, "\r\n--" SIG_PREFIX);
	mw_adds(&w, m->boundary);
	mw_adds(&w, "\r\nContent-Type: application/pgp-signature; name=\"signature.asc\"\r\n"
		    "Content-Description: OpenPGP digital signature\r\n"
		    "\r\n");
	add_signature(&w, signature);
	mw_adds(&w, "\r\n--" SIG_PREFIX);
	mw_adds(&w, m->boundary);
	mw_adds(&w, "--\r\n");
	return mw_finish(&w, err);
}
