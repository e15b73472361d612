/* tests/fuzz/fuzz_qp.c - fuzz quoted-printable encoding and decode the result back */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mg-buf.h"
#include "mg-err.h"
#include "qp.h"

#define QP_LINE_MAX 76 /* RFC 2045 6.7 (5), without the CRLF */
#define SMALL_CAP   200

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F') /* RFC 2045 6.7 (1): upper case */
		return c - 'A' + 10;
	return -1;
}

/*
 * Check the encoded lines (RFC 2045 6.7): CRLF only as line ends, at most
 * 76 characters a line, printable ASCII, SP and TAB only, no white space
 * before a line end, "=" only as "=XX" or a soft break, no line starting
 * with "From " or ".", and no "=_" anywhere.
 */
static void check_lines(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t e = i;

		while (e < n && s[e] != '\r' && s[e] != '\n') {
			unsigned char c = (unsigned char)s[e];

			FUZZ_CHECK((c >= 0x20 && c <= 0x7e) || c == '\t');
			if (c == '=') {
				bool soft = e + 1 < n && s[e + 1] == '\r';

				FUZZ_CHECK(soft || (e + 2 < n && hex_value(s[e + 1]) >= 0 &&
						    hex_value(s[e + 2]) >= 0));
			}
			e++;
		}
		FUZZ_CHECK(e - i <= QP_LINE_MAX);
		FUZZ_CHECK(e == i || (s[e - 1] != ' ' && s[e - 1] != '\t'));
		FUZZ_CHECK(!(e > i && s[i] == '.'));
		FUZZ_CHECK(!(e - i >= 5 && memcmp(s + i, "From ", 5) == 0));
		if (e == n)
			break; /* the last line of a text without a final newline */
		FUZZ_CHECK(e + 1 < n && s[e] == '\r' && s[e + 1] == '\n');
		i = e + 2;
	}
	for (size_t i = 0; i + 1 < n; i++)
		FUZZ_CHECK(!(s[i] == '=' && s[i + 1] == '_'));
}

/* A small decoder: soft breaks vanish, "=XX" is a byte, CRLF stays. */
static char *qp_decode(const char *s, size_t n, size_t *ret_len)
{
	char *d = malloc(n + 1);
	size_t o = 0;

	FUZZ_CHECK(d != NULL);
	for (size_t i = 0; i < n;) {
		if (s[i] == '=' && i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
			i += 3;
		} else if (s[i] == '=') {
			FUZZ_CHECK(i + 2 < n);
			FUZZ_CHECK(hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0);
			d[o++] = (char)(hex_value(s[i + 1]) << 4 | hex_value(s[i + 2]));
			i += 3;
		} else {
			d[o++] = s[i++];
		}
	}
	*ret_len = o;
	return d;
}

/* The input with every LF that does not end a CRLF made into CRLF. */
static char *normalise(const uint8_t *data, size_t size, size_t *ret_len)
{
	char *d = malloc(2 * size + 1);
	size_t o = 0;

	FUZZ_CHECK(d != NULL);
	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			d[o++] = '\r';
		d[o++] = (char)data[i];
	}
	*ret_len = o;
	return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mg_buf big = MG_BUF_INIT(4 * size + 64), small = MG_BUF_INIT(SMALL_CAP);
	const char *text = (const char *)data;
	char *dec, *norm;
	size_t dl, nl;
	int r;

	fuzz_dirty_stack();
	r = mg_qp_encode(&big, text, size);
	FUZZ_CHECK(r == MG_OK);
	check_lines(mg_buf_str(&big), big.len);
	/* ends in CRLF exactly when the text ends in a newline */
	FUZZ_CHECK((size > 0 && data[size - 1] == '\n') ==
		   (big.len >= 2 && memcmp(big.data + big.len - 2, "\r\n", 2) == 0));

	dec = qp_decode(mg_buf_str(&big), big.len, &dl);
	norm = normalise(data, size, &nl);
	FUZZ_CHECK(dl == nl && memcmp(dec, norm, nl) == 0);
	free(dec);
	free(norm);

	/* with a cap: what was written is a prefix of the full output */
	r = mg_qp_encode(&small, text, size);
	FUZZ_CHECK(small.len <= SMALL_CAP && small.len <= big.len);
	FUZZ_CHECK(small.len == 0 || memcmp(small.data, big.data, small.len) == 0);
	FUZZ_CHECK(r == (big.len <= SMALL_CAP ? MG_OK : MG_EINPUT));
	mg_buf_release(&big);
	mg_buf_release(&small);
	return 0;
}
