/* tests/unit/test_qp.c - quoted-printable encoding (RFC 2045 6.7) */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "qp.h"

#define A5  "aaaaa"
#define A10 A5 A5
#define A70 A10 A10 A10 A10 A10 A10 A10
#define A72 A70 "aa"
#define A73 A70 "aaa"
#define A74 A70 "aaaa"
#define A75 A70 A5
#define A76 A75 "a"

/* Expected values written by hand from RFC 2045 6.7. */
static const struct qp_case {
	const char *in;
	const char *want;
} qp_cases[] = {
	{ "", "" },
	{ "hello", "hello" },
	{ "hello\n", "hello\r\n" },
	{ "hello\r\n", "hello\r\n" },
	{ "a\nb\r\nc", "a\r\nb\r\nc" },
	{ "\n\n", "\r\n\r\n" },
	{ "\r\n\r\n", "\r\n\r\n" },
	{ "a=b\n", "a=3Db\r\n" },
	{ "=_x", "=3D_x" },
	{ "tab\there\n", "tab\there\r\n" },
	/* rule (3): white space before a line end */
	{ "trail \n", "trail=20\r\n" },
	{ "trail\t\r\n", "trail=09\r\n" },
	{ "trail ", "trail=20" },
	{ "two  \n", "two =20\r\n" },
	{ " \n", "=20\r\n" },
	/* "From " and "." at the start of a line */
	{ "From me\n", "=46rom me\r\n" },
	{ "From", "From" },
	{ "From\n", "From\r\n" },
	{ "from me\n", "from me\r\n" },
	{ ">From me\n", ">From me\r\n" },
	{ "x\nFrom y\n", "x\r\n=46rom y\r\n" },
	{ "say From me\n", "say From me\r\n" },
	{ ".\n", "=2E\r\n" },
	{ "..x\r\n", "=2E.x\r\n" },
	{ "a.b\n.", "a.b\r\n=2E" },
	/* bytes >= 0x80, controls, lone CR */
	{ "Gr\xc3\xbc\xc3\x9f"
	  "e\n",
	  "Gr=C3=BC=C3=9Fe\r\n" },
	{ "\x01\x7f\xff\n", "=01=7F=FF\r\n" },
	{ "a\rb\n", "a=0Db\r\n" },
	{ "a\r\r\n", "a=0D\r\n" },
	{ "a\r", "a=0D" },
	/* line length: 76 fit, 77 get a soft break after 75 */
	{ A76 "\n", A76 "\r\n" },
	{ A76, A76 },
	{ A76 "a", A75 "=\r\naa" },
	{ A75 A75 "a", A75 "=\r\n" A76 },
	{ A75 A75 "aa\n", A75 "=\r\n" A75 "=\r\naa\r\n" },
	/* an escape is never split across a soft break */
	{ A75 "=", A75 "=\r\n=3D" },
	{ A73 "=", A73 "=3D" },
	{ A72 "\xc3\xa9", A72 "=C3=\r\n=A9" },
	{ A73 "\xc3\xa9", A73 "=\r\n=C3=A9" },
	{ A74 "\xc3\xa9\n", A74 "=\r\n=C3=A9\r\n" },
	/* trailing white space at the edge */
	{ A73 " \n", A73 "=20\r\n" },
	{ A74 " \n", A74 "=\r\n=20\r\n" },
	{ A75 " x", A75 "=\r\n x" },
	/* the start of a line after a soft break is protected as well */
	{ A75 "From x\n", A75 "=\r\n=46rom x\r\n" },
	{ A75 ".x", A75 "=\r\n=2Ex" },
};

static void test_qp_table(void **state)
{
	for (size_t i = 0; i < sizeof(qp_cases) / sizeof(qp_cases[0]); i++) {
		const struct qp_case *c = &qp_cases[i];
		struct mg_buf out = MG_BUF_INIT(4096);

		print_message("case %zu: '%s'\n", i, c->in);
		assert_int_equal(mg_qp_encode(&out, c->in, strlen(c->in)), MG_OK);
		assert_string_equal(mg_buf_str(&out), c->want);
		mg_buf_release(&out);
	}
}

static void test_qp_nul(void **state)
{
	struct mg_buf out = MG_BUF_INIT(100);

	assert_int_equal(mg_qp_encode(&out, "a\0b", 3), MG_OK);
	assert_string_equal(mg_buf_str(&out), "a=00b");
	mg_buf_release(&out);
}

static void test_qp_appends(void **state)
{
	struct mg_buf out = MG_BUF_INIT(100);

	assert_int_equal(mg_buf_adds(&out, "x:"), MG_OK);
	assert_int_equal(mg_qp_encode(&out, "=\n", 2), MG_OK);
	assert_string_equal(mg_buf_str(&out), "x:=3D\r\n");
	mg_buf_release(&out);
}

static void test_qp_cap(void **state)
{
	struct mg_buf out = MG_BUF_INIT(10);

	/* refused before any work: longer than the cap already */
	assert_int_equal(mg_qp_encode(&out, "0123456789a", 11), MG_EINPUT);
	assert_int_equal(out.len, 0);
	/* 4 bytes become 12 */
	assert_int_equal(mg_qp_encode(&out, "\xff\xff\xff\xff", 4), MG_EINPUT);
	assert_true(out.len <= out.max);
	mg_buf_reset(&out);
	assert_int_equal(mg_qp_encode(&out, "0123456789", 10), MG_OK);
	assert_int_equal(out.len, 10);
	mg_buf_release(&out);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Check the transport rules on encoded text and decode it again; returns
 * the decoded length (line ends as LF) in dec.
 */
static size_t check_and_decode(const char *q, size_t n, char *dec)
{
	size_t o = 0, col = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)q[i];

		if (col == 0) {
			assert_false(c == '.');
			assert_false(n - i >= 5 && memcmp(q + i, "From ", 5) == 0);
		}
		if (c == '\r') {
			assert_true(i + 1 < n && q[i + 1] == '\n');
			assert_true(col <= 76);
			assert_false(i > 0 && (q[i - 1] == ' ' || q[i - 1] == '\t'));
			dec[o++] = '\n';
			i++;
			col = 0;
			continue;
		}
		assert_true(c == '\t' || (c >= 0x20 && c <= 0x7e));
		if (c == '=') {
			assert_true(i + 2 < n);
			if (q[i + 1] == '\r') {
				assert_int_equal(q[i + 2], '\n');
				assert_true(col + 1 <= 76);
				i += 2;
				col = 0;
				continue;
			}
			assert_true(hexval(q[i + 1]) >= 0 && hexval(q[i + 2]) >= 0);
			dec[o++] = (char)(hexval(q[i + 1]) * 16 + hexval(q[i + 2]));
			i += 2;
			col += 3;
			continue;
		}
		dec[o++] = (char)c;
		col++;
	}
	assert_true(col <= 76);
	if (n > 0)
		assert_false(q[n - 1] == ' ' || q[n - 1] == '\t');
	return o;
}

/* Round trip over pseudo-random text made of the troublesome bytes. */
static void test_qp_roundtrip(void **state)
{
	static const char alphabet[] = "aaaaaF.rom  \t=\r\n\n\xc3\xa9\x01";
	uint32_t seed = 12345;
	char in[600], norm[600], dec[2000];

	for (int round = 0; round < 3000; round++) {
		struct mg_buf out = MG_BUF_INIT(1 << 20);
		size_t len, nn = 0, dn;

		seed = seed * 1103515245u + 12345u;
		len = (seed >> 16) % sizeof(in);
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
			/* sometimes a "From " to hit the line starts */
			if ((seed >> 8) % 97 == 0 && i + 5 < len) {
				memcpy(in + i, "From ", 5);
				i += 4;
			}
		}
		for (size_t i = 0; i < len; i++) {
			if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
				continue;
			norm[nn++] = in[i];
		}
		assert_int_equal(mg_qp_encode(&out, in, len), MG_OK);
		assert_null(strstr(mg_buf_str(&out), "=_"));
		dn = check_and_decode(mg_buf_str(&out), out.len, dec);
		assert_int_equal(dn, nn);
		assert_memory_equal(dec, norm, nn);
		mg_buf_release(&out);
	}
}

static void test_qp_torture(void **state)
{
	char in[1000];
	bool done = false;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = "ab\xc3\xa9 =\n"[i % 7];
	for (long n = 0; !done; n++) {
		struct mg_buf out = MG_BUF_INIT(1 << 20);
		int r;

		mg_alloc_fail_after(n);
		r = mg_qp_encode(&out, in, sizeof(in));
		mg_alloc_fail_after(-1);
		if (r == MG_OK)
			done = true;
		else
			assert_int_equal(r, MG_ENOMEM);
		mg_buf_release(&out);
		assert_true(n < 100);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qp_table),     cmocka_unit_test(test_qp_nul),
		cmocka_unit_test(test_qp_appends),   cmocka_unit_test(test_qp_cap),
		cmocka_unit_test(test_qp_roundtrip), cmocka_unit_test(test_qp_torture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
