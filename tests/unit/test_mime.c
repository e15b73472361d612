/* tests/unit/test_mime.c - whole messages against golden files, PGP/MIME structure, torture */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "mime.h"

#define REF_DIR	 MG_TEST_DATA "/mime/"
#define MAIL_MAX (1 << 20)

/*
 * The text has the lines quoted-printable must take care of: "From ",
 * a lone dot, trailing white space, '=', non-ASCII and a long line.
 */
static const char body[] =
	"Dear abuse team of AS64496,\n"
	"\n"
	"our sensors saw open DNS resolvers in your network on 2026-11-26; the list of affected hosts is attached.\n"
	"From now on we will send these reports daily.\n"
	".\n"
	"Ratio = 3/4 \n"
	"Gr\xc3\xbc\xc3\x9f"
	"e aus Bonn\n"
	"-- \n"
	"CERT Reports\n";

static const char csv[] =
	"\"source.ip\",\"source.port\",\"time.observation\",\"source.geolocation.city\"\n"
	"\"192.0.2.1\",\"53\",\"2026-11-26 06:00:00\",\"M\xc3\xbcnchen\"\n"
	"\"198.51.100.7\",\"53\",\"2026-11-26 06:00:00\",\"Bonn\"\n";

static const char signature[] = "-----BEGIN PGP SIGNATURE-----\n"
				"\n"
				"iHUEARYIAB0WIQQAAAAAAAAAAAAAAAAAAAAAAAAAAAUCZ0AAAAAACgkQAAAAAAAA\n"
				"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
				"AAAAAAAAAAAAAAAAAAAA\n"
				"=AAAA\n"
				"-----END PGP SIGNATURE-----\n";

static struct mg_mail test_mail(bool attach, bool ascii_subject)
{
	struct mg_mail m = {
		.from_display = "CERT Reports",
		.from_addr = "reports@cert.example",
		.to_addr = "abuse@as64496.example",
		.subject = ascii_subject
				   ? "[CERT#20261126-00000001] Open DNS resolvers in AS64496"
				   : "[CERT#20261126-00000001] Offene DNS-Resolver in AS64496 "
				     "\xe2\x80\x93 Gr\xc3\xbc\xc3\x9f"
				     "e aus Bonn",
		.body = body,
		.date = 1795735605, /* Thu, 26 Nov 2026 23:26:45 +0000 */
		.message_id = "<20261126-00000001.0123456789abcdef@cert.example>",
		.boundary = "Q3vL9kTz0pWmX1aB7cD2eF4gH6jK8nR5",
	};

	if (attach) {
		m.attachment = csv;
		m.attachment_len = sizeof(csv) - 1;
		m.attachment_name = "events.csv";
		m.attachment_type = "text/csv";
	}
	return m;
}

static char *read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	p = malloc((size_t)n + 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
	p[n] = '\0';
	fclose(f);
	*ret_len = (size_t)n;
	return p;
}

/*
 * Compare with the golden file byte for byte.  MG_TEST_UPDATE_REF=1
 * rewrites it instead; review the diff before committing such a change.
 */
static void check_ref(const char *name, const struct mg_buf *got)
{
	char path[512];
	size_t len;
	char *want;

	(void)snprintf(path, sizeof(path), "%s%s", REF_DIR, name);
	if (getenv("MG_TEST_UPDATE_REF") != NULL) {
		FILE *f = fopen(path, "wb");

		assert_non_null(f);
		assert_int_equal(fwrite(got->data, 1, got->len, f), got->len);
		assert_int_equal(fclose(f), 0);
	}
	want = read_file(path, &len);
	print_message("%s: %zu bytes, want %zu\n", name, got->len, len);
	assert_int_equal(got->len, len);
	assert_memory_equal(got->data, want, len);
	free(want);
}

/* Every line ends in CRLF, is at most 998 bytes and 7-bit. */
static void check_transport(const struct mg_buf *b)
{
	size_t col = 0;

	assert_true(b->len >= 2);
	assert_memory_equal(b->data + b->len - 2, "\r\n", 2);
	for (size_t i = 0; i < b->len; i++) {
		unsigned char c = (unsigned char)b->data[i];

		assert_true(c < 0x80 && c != '\0');
		if (c == '\r') {
			assert_int_equal(b->data[i + 1], '\n');
			i++;
			col = 0;
			continue;
		}
		assert_true(c != '\n');
		assert_true(++col <= 998);
	}
}

static void build(const struct mg_mail *m, bool sign, struct mg_buf *content, struct mg_buf *msg)
{
	struct mg_err err = { 0 };

	assert_int_equal(mg_mime_content(content, m, &err), MG_OK);
	assert_int_equal(mg_mime_message(msg, m, content->data, content->len,
					 sign ? signature : NULL, sign ? "pgp-sha256" : NULL, &err),
			 MG_OK);
	check_transport(msg);
}

static const struct golden {
	const char *ref;
	bool attach;
	bool sign;
	bool ascii_subject;
} goldens[] = {
	{ "plain.ref", false, false, true },
	{ "attachment.ref", true, false, false },
	{ "signed.ref", false, true, true },
	{ "signed-attachment.ref", true, true, false },
};

static void test_golden(void **state)
{
	for (size_t i = 0; i < sizeof(goldens) / sizeof(goldens[0]); i++) {
		struct mg_mail m = test_mail(goldens[i].attach, goldens[i].ascii_subject);
		struct mg_buf content = MG_BUF_INIT(MAIL_MAX);
		struct mg_buf msg = MG_BUF_INIT(MAIL_MAX);

		build(&m, goldens[i].sign, &content, &msg);
		check_ref(goldens[i].ref, &msg);
		mg_buf_release(&content);
		mg_buf_release(&msg);
	}
}

/*
 * RFC 3156 5: the signed data is the first part exactly as it appears
 * between "--boundary" CRLF and the CRLF that starts the next delimiter.
 */
static void test_signed_part_is_content(void **state)
{
	for (int attach = 0; attach < 2; attach++) {
		struct mg_mail m = test_mail(attach, true);
		struct mg_buf content = MG_BUF_INIT(MAIL_MAX);
		struct mg_buf msg = MG_BUF_INIT(MAIL_MAX);
		char delim[100];
		const char *start, *end;

		build(&m, true, &content, &msg);
		(void)snprintf(delim, sizeof(delim), "\r\n--=_sig_%s\r\n", m.boundary);
		start = strstr(msg.data, delim);
		assert_non_null(start);
		start += strlen(delim);
		end = strstr(start, delim);
		assert_non_null(end);
		assert_int_equal((size_t)(end - start), content.len);
		assert_memory_equal(start, content.data, content.len);
		/* exactly one signed part, then the signature and the close delimiter */
		assert_null(strstr(end + 1, delim));
		(void)snprintf(delim, sizeof(delim), "\r\n--=_sig_%s--\r\n", m.boundary);
		assert_non_null(strstr(end, delim));
		assert_memory_equal(msg.data + msg.len - strlen(delim), delim, strlen(delim));
		mg_buf_release(&content);
		mg_buf_release(&msg);
	}
}

/* The content entity of an unsigned mail is the message after its headers. */
static void test_unsigned_body_is_content(void **state)
{
	struct mg_mail m = test_mail(true, true);
	struct mg_buf content = MG_BUF_INIT(MAIL_MAX);
	struct mg_buf msg = MG_BUF_INIT(MAIL_MAX);
	const char *p;

	build(&m, false, &content, &msg);
	p = strstr(msg.data, "MIME-Version: 1.0\r\n");
	assert_non_null(p);
	p += strlen("MIME-Version: 1.0\r\n");
	assert_int_equal(msg.len - (size_t)(p - msg.data), content.len);
	assert_memory_equal(p, content.data, content.len);
	mg_buf_release(&content);
	mg_buf_release(&msg);
}

/* A body without a final newline still gives a message ending in CRLF. */
static void test_no_final_newline(void **state)
{
	struct mg_mail m = test_mail(false, true);
	struct mg_buf content = MG_BUF_INIT(MAIL_MAX);
	struct mg_buf msg = MG_BUF_INIT(MAIL_MAX);
	const char *want = "Content-Type: text/plain; charset=utf-8\r\n"
			   "Content-Transfer-Encoding: quoted-printable\r\n"
			   "\r\n"
			   "no newline=20";

	m.body = "no newline ";
	build(&m, false, &content, &msg);
	assert_string_equal(content.data, want);
	assert_memory_equal(msg.data + msg.len - 15, "no newline=20\r\n", 15);
	mg_buf_release(&content);
	mg_buf_release(&msg);
}

static const struct date_case {
	int64_t t;
	int rc;
	const char *want;
} date_cases[] = {
	{ 1795735605, MG_OK, "Thu, 26 Nov 2026 23:26:45 +0000" },
	{ 0, MG_OK, "Thu, 01 Jan 1970 00:00:00 +0000" },
	{ -1, MG_OK, "Wed, 31 Dec 1969 23:59:59 +0000" },
	{ 951782400, MG_OK, "Tue, 29 Feb 2000 00:00:00 +0000" },
	{ 2147483648, MG_OK, "Tue, 19 Jan 2038 03:14:08 +0000" },
	{ -2208988800, MG_OK, "Mon, 01 Jan 1900 00:00:00 +0000" },
	{ 253402300799, MG_OK, "Fri, 31 Dec 9999 23:59:59 +0000" },
	{ -2208988801, MG_EINPUT, NULL },
	{ 253402300800, MG_EINPUT, NULL },
	{ INT64_MAX, MG_EINPUT, NULL },
	{ INT64_MIN, MG_EINPUT, NULL },
};

static void test_date_table(void **state)
{
	for (size_t i = 0; i < sizeof(date_cases) / sizeof(date_cases[0]); i++) {
		struct mg_buf out = MG_BUF_INIT(100);

		print_message("case %zu\n", i);
		assert_int_equal(mg_mime_date(&out, date_cases[i].t), date_cases[i].rc);
		if (date_cases[i].want != NULL)
			assert_string_equal(mg_buf_str(&out), date_cases[i].want);
		else
			assert_int_equal(out.len, 0);
		mg_buf_release(&out);
	}
}

enum field {
	F_NONE,
	F_SUBJECT,
	F_TO,
	F_FROM,
	F_DISPLAY,
	F_MSGID,
	F_BOUNDARY,
	F_BODY,
	F_NAME,
	F_TYPE,
	F_ATTACH,
	F_MICALG,
	F_SIG,
	F_DATE
};

/* Bad data anywhere fails the mail with MG_EINPUT and a message saying what. */
static const struct bad_case {
	enum field field;
	const char *value;
	bool sign;
	const char *msg;
} bad_cases[] = {
	{ F_SUBJECT, "Report\r\nBcc: evil@example.org", false,
	  "header 'Subject': value contains CR or LF at offset 6" },
	{ F_SUBJECT, "Report\nBcc: evil@example.org", false, "CR or LF at offset 6" },
	{ F_SUBJECT, "bad \xff", false, "header 'Subject': invalid UTF-8 at offset 4" },
	{ F_TO, "abuse@example.org\r\nBcc: evil@example.org", false, "header 'To': address" },
	{ F_TO, "abuse@example.org, evil@example.org", false, "character ','" },
	{ F_TO, "abuse", false, "no '@'" },
	{ F_FROM, "reports@@cert.example", false, "header 'From': address" },
	{ F_DISPLAY, "CERT\nBcc: x@y", false, "header 'From': value contains CR or LF" },
	{ F_MSGID, "<a@b>\r\nBcc: evil@example.org", false,
	  "header 'Message-Id': value contains CR or LF" },
	{ F_MSGID, "no-brackets@cert.example", false, "is not <left@right>" },
	{ F_MSGID, "<a b@cert.example>", false, "header 'Message-Id': byte 0x20 at offset 2" },
	{ F_BODY, "caf\xc3", false, "mail body: invalid UTF-8" },
	{ F_ATTACH, "a,b\n\xc3\x28\n", false, "attachment 'events.csv': invalid UTF-8" },
	{ F_NAME, "ev\"ents.csv", false, "file name byte 0x22 at offset 2" },
	{ F_NAME, "\xc3\xa9vents.csv", false, "file name byte 0xc3 at offset 0" },
	{ F_NAME, "events\r\n.csv", false, "file name byte 0x0d" },
	{ F_NAME, "", false, "attachment: no file name" },
	{ F_TYPE, "text/csv\r\nX: y", false, "invalid media type" },
	{ F_TYPE, "textcsv", false, "invalid media type" },
	{ F_TYPE, "text/csv; charset=latin1", false, "invalid media type" },
	{ F_BOUNDARY, "short", false, "MIME boundary of 5 characters" },
	{ F_BOUNDARY, "abcdefghijklmnop--qrstuvwxyz", false, "MIME boundary holds a character" },
	{ F_MICALG, "sha256", true, "invalid micalg 'sha256'" },
	{ F_MICALG, "pgp-sha256\"; x=\"", true, "invalid micalg" },
	{ F_SIG, "not armor", true, "not an ASCII-armored signature" },
	{ F_SIG, "-----BEGIN PGP SIGNATURE-----\n\x01\n", true,
	  "signature: byte 0x01 at offset 30" },
	{ F_DATE, NULL, false, "header 'Date': time 253402300800 is out of range" },
};

static void test_bad_input_table(void **state)
{
	for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct mg_mail m = test_mail(true, true);
		struct mg_buf content = MG_BUF_INIT(MAIL_MAX);
		struct mg_buf msg = MG_BUF_INIT(MAIL_MAX);
		struct mg_err err = { 0 };
		const char *micalg = c->sign ? "pgp-sha256" : NULL;
		const char *sig = c->sign ? signature : NULL;
		int r;

		print_message("case %zu\n", i);
		switch (c->field) {
		case F_SUBJECT:
			m.subject = c->value;
			break;
		case F_TO:
			m.to_addr = c->value;
			break;
		case F_FROM:
			m.from_addr = c->value;
			break;
		case F_DISPLAY:
			m.from_display = c->value;
			break;
		case F_MSGID:
			m.message_id = c->value;
			break;
		case F_BOUNDARY:
			m.boundary = c->value;
			break;
		case F_BODY:
			m.body = c->value;
			break;
		case F_NAME:
			m.attachment_name = c->value;
			break;
		case F_TYPE:
			m.attachment_type = c->value;
			break;
		case F_ATTACH:
			m.attachment = c->value;
			m.attachment_len = strlen(c->value);
			break;
		case F_MICALG:
			micalg = c->value;
			break;
		case F_SIG:
			sig = c->value;
			break;
		case F_DATE:
			m.date = 253402300800;
			break;
		case F_NONE:
			break;
		}
		r = mg_mime_content(&content, &m, &err);
		if (r == MG_OK)
			r = mg_mime_message(&msg, &m, content.data, content.len, sig, micalg, &err);
		print_message("  %s\n", err.msg);
		assert_int_equal(r, MG_EINPUT);
		assert_int_equal(err.rc, MG_EINPUT);
		assert_non_null(strstr(err.msg, c->msg));
		/* nothing half-written: data checks come before the first byte */
		assert_int_equal(msg.len, 0);
		mg_buf_release(&content);
		mg_buf_release(&msg);
	}
}

/* A big attachment against the mail cap: refused with a message, not truncated. */
static void test_cap(void **state)
{
	size_t big = 4u << 20;
	char *att = malloc(big);
	struct mg_mail m = test_mail(true, true);
	struct mg_buf content = MG_BUF_INIT(1 << 20);
	struct mg_buf msg = MG_BUF_INIT(1 << 20);
	struct mg_err err = { 0 };

	assert_non_null(att);
	for (size_t i = 0; i < big; i++)
		att[i] = "1,2,3\n"[i % 6];
	m.attachment = att;
	m.attachment_len = big;
	/* larger than the cap already */
	assert_int_equal(mg_mime_content(&content, &m, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "exceeds its limit of 1048576 bytes"));

	/* fits as text, but not once encoded: '=' becomes "=3D" */
	memset(att, '=', 500000);
	m.attachment_len = 500000;
	mg_buf_reset(&content);
	memset(&err, 0, sizeof(err));
	assert_int_equal(mg_mime_content(&content, &m, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "exceeds its limit of 1048576 bytes"));
	assert_true(content.len <= content.max);

	/* the content fits, the whole message does not */
	m.attachment_len = 300000;
	mg_buf_reset(&content);
	assert_int_equal(mg_mime_content(&content, &m, &err), MG_OK);
	msg.max = content.len + 100;
	memset(&err, 0, sizeof(err));
	assert_int_equal(
		mg_mime_message(&msg, &m, content.data, content.len, signature, "pgp-sha256", &err),
		MG_EINPUT);
	assert_non_null(strstr(err.msg, "exceeds its limit"));
	mg_buf_release(&content);
	mg_buf_release(&msg);
	free(att);
}

/* curl-style torture: fail each allocation in turn; MG_ENOMEM, no leak. */
static void test_torture(void **state)
{
	struct mg_mail m = test_mail(true, false);
	bool done = false;
	long n;

	for (n = 0; !done; n++) {
		struct mg_buf content = MG_BUF_INIT(MAIL_MAX);
		struct mg_buf msg = MG_BUF_INIT(MAIL_MAX);
		struct mg_err err = { 0 };
		int r;

		mg_alloc_fail_after(n);
		r = mg_mime_content(&content, &m, &err);
		if (r == MG_OK)
			r = mg_mime_message(&msg, &m, content.data, content.len, signature,
					    "pgp-sha256", &err);
		mg_alloc_fail_after(-1);
		if (r == MG_OK) {
			done = true;
		} else {
			assert_int_equal(r, MG_ENOMEM);
			assert_int_equal(err.rc, MG_ENOMEM);
		}
		mg_buf_release(&content);
		mg_buf_release(&msg);
		assert_true(n < 200);
	}
	print_message("torture: %ld allocations\n", n - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden),
		cmocka_unit_test(test_signed_part_is_content),
		cmocka_unit_test(test_unsigned_body_is_content),
		cmocka_unit_test(test_no_final_newline),
		cmocka_unit_test(test_date_table),
		cmocka_unit_test(test_bad_input_table),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_torture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
