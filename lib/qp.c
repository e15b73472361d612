/* lib/qp.c - quoted-printable encoding for text parts (RFC 2045, 6.7) */
#include <stdbool.h>
#include <string.h>

#include "qp.h"

#define QP_LINE_MAX 76 /* RFC 2045 6.7 (5): encoded lines, soft break included */

static const char hex_digits[] = "0123456789ABCDEF";

/*
 * Encode the byte at s[0] of an input line that has rem bytes left, into
 * tok.  at_start: it would be the first character of an output line.
 * Returns the length of the token, 1 or 3.
 */
static size_t qp_token(const unsigned char *s, size_t rem, bool at_start, char tok[3])
{
	unsigned char c = s[0];
	bool literal;

	if (c == ' ' || c == '\t')
		literal = rem > 1; /* rule (3): white space at a line end is encoded */
	else
		literal = c >= 0x21 && c <= 0x7e && c != '=';
	/*
	 * Protect the first character of every output line, hard or soft:
	 * mbox writers quote "From " and SMTP treats a leading dot specially.
	 */
	if (literal && at_start && (c == '.' || (rem >= 5 && memcmp(s, "From ", 5) == 0)))
		literal = false;
	if (literal) {
		tok[0] = (char)c;
		return 1;
	}
	tok[0] = '=';
	tok[1] = hex_digits[c >> 4];
	tok[2] = hex_digits[c & 0x0f];
	return 3;
}

/* Encode one input line s[0..n) without its line end; hard: add CRLF. */
static int qp_line(struct mg_buf *out, const unsigned char *s, size_t n, bool hard)
{
	char line[QP_LINE_MAX + 4];
	size_t col = 0;
	int r;

	for (size_t i = 0; i < n; i++) {
		char tok[3];
		size_t t = qp_token(s + i, n - i, col == 0, tok);
		/* all but the last token of a line must leave room for the soft break */
		size_t room = i + 1 == n ? QP_LINE_MAX : QP_LINE_MAX - 1;

		if (col + t > room) {
			memcpy(line + col, "=\r\n", 3);
			r = mg_buf_add(out, line, col + 3);
			if (r < 0)
				return r;
			col = 0;
			t = qp_token(s + i, n - i, true, tok);
		}
		memcpy(line + col, tok, t);
		col += t;
	}
	if (hard) {
		memcpy(line + col, "\r\n", 2);
		col += 2;
	}
	return col > 0 ? mg_buf_add(out, line, col) : MG_OK;
}

int mg_qp_encode(struct mg_buf *out, const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;
	int r;

	/* Every input byte yields at least one output byte: fail early. */
	if (len > out->max - out->len)
		return MG_EINPUT;
	while (i < len) {
		const unsigned char *nl = memchr(s + i, '\n', len - i);
		size_t eol = nl != NULL ? (size_t)(nl - s) : len;
		size_t end = eol;

		/* CRLF and LF both end a line; any other CR is data (=0D) */
		if (nl != NULL && end > i && s[end - 1] == '\r')
			end--;
		r = qp_line(out, s + i, end - i, nl != NULL);
		if (r < 0)
			return r;
		i = nl != NULL ? eol + 1 : eol;
	}
	return MG_OK;
}
