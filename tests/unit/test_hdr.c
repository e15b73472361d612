/* tests/unit/test_hdr.c - header checks, RFC 2047 encoded-words, folding, addresses */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hdr.h"
#include "mg-alloc.h"

#define EURO   "\xe2\x82\xac" /* U+20AC, 3 bytes */
#define EURO3  EURO EURO EURO
#define EURO12 EURO3 EURO3 EURO3 EURO3
#define EURO15 EURO12 EURO3

static const struct utf8_case {
	const char *s;
	size_t len;
	bool valid;
} utf8_cases[] = {
	{ "", 0, true },
	{ "plain", 5, true },
	{ "a\0b", 3, true },
	{ "Gr\xc3\xbc\xc3\x9f"
	  "e",
	  7, true },
	{ "\xe2\x82\xac", 3, true },
	{ "\xf0\x9f\x8e\x89", 4, true },  /* U+1F389 */
	{ "\xf4\x8f\xbf\xbf", 4, true },  /* U+10FFFF */
	{ "\xed\x9f\xbf", 3, true },	  /* U+D7FF */
	{ "\xee\x80\x80", 3, true },	  /* U+E000 */
	{ "\xc2\x80", 2, true },	  /* U+0080: well-formed (a C1 control) */
	{ "\x80", 1, false },		  /* stray continuation */
	{ "\xc3", 1, false },		  /* truncated */
	{ "\xe2\x82", 2, false },	  /* truncated */
	{ "\xe2\x82\xac", 2, false },	  /* cut by len */
	{ "\xc3\x28", 2, false },	  /* bad continuation */
	{ "\xc0\xaf", 2, false },	  /* overlong '/' */
	{ "\xc1\xbf", 2, false },	  /* overlong */
	{ "\xe0\x80\xaf", 3, false },	  /* overlong */
	{ "\xe0\x9f\xbf", 3, false },	  /* overlong U+07FF */
	{ "\xf0\x80\x80\xaf", 4, false }, /* overlong */
	{ "\xf0\x8f\xbf\xbf", 4, false }, /* overlong U+FFFF */
	{ "\xed\xa0\x80", 3, false },	  /* U+D800 */
	{ "\xed\xbf\xbf", 3, false },	  /* U+DFFF */
	{ "\xf4\x90\x80\x80", 4, false }, /* U+110000 */
	{ "\xf5\x80\x80\x80", 4, false }, /* lead F5 */
	{ "\xff", 1, false },
	{ "ok\xfe", 3, false },
};

static void test_utf8_table(void **state)
{
	for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
		print_message("case %zu\n", i);
		assert_int_equal(mg_utf8_valid(utf8_cases[i].s, utf8_cases[i].len),
				 utf8_cases[i].valid);
	}
}

static const struct check_case {
	const char *value;
	int rc;
	const char *msg; /* substring of err.msg */
} check_cases[] = {
	{ "", MG_OK, NULL },
	{ "Hello world", MG_OK, NULL },
	{ "tab\tok", MG_OK, NULL },
	{ "Gr\xc3\xbc\xc3\x9f"
	  "e \xf0\x9f\x8e\x89",
	  MG_OK, NULL },
	{ "Hi\r\nBcc: evil@example.org", MG_EINPUT,
	  "header 'Subject': value contains CR or LF at offset 2" },
	{ "Hi\nBcc: evil@example.org", MG_EINPUT, "CR or LF at offset 2" },
	{ "Hi\r", MG_EINPUT, "CR or LF at offset 2" },
	{ "bell\x07", MG_EINPUT, "control character U+0007 at offset 4" },
	{ "\x1b[31m", MG_EINPUT, "control character U+001B at offset 0" },
	{ "del\x7f", MG_EINPUT, "control character U+007F at offset 3" },
	{ "nel\xc2\x85", MG_EINPUT, "control character U+0085 at offset 3" },
	{ "bad\xff", MG_EINPUT, "invalid UTF-8 at offset 3" },
	{ "\xc3\xa9\xc0\xaf", MG_EINPUT, "invalid UTF-8 at offset 2" },
	{ "x\xed\xa0\x80", MG_EINPUT, "invalid UTF-8 at offset 1" },
	{ "\xf4\x90\x80\x80", MG_EINPUT, "invalid UTF-8 at offset 0" },
};

static void test_check_value_table(void **state)
{
	for (size_t i = 0; i < sizeof(check_cases) / sizeof(check_cases[0]); i++) {
		const struct check_case *c = &check_cases[i];
		struct mg_err err = { 0 };

		print_message("case %zu\n", i);
		assert_int_equal(mg_hdr_check_value("Subject", c->value, &err), c->rc);
		if (c->msg != NULL) {
			print_message("  %s\n", err.msg);
			assert_non_null(strstr(err.msg, c->msg));
			assert_int_equal(err.rc, c->rc);
		}
	}
	assert_int_equal(mg_hdr_check_value("Subject", "a\nb", NULL), MG_EINPUT);
}

static char addr254[255], addr255[256];

static const struct addr_case {
	const char *addr;
	int rc;
	const char *msg;
} addr_cases[] = {
	{ "abuse@example.org", MG_OK, NULL },
	{ "a@b", MG_OK, NULL },
	{ "first.last+tag@sub.example.org", MG_OK, NULL },
	{ "o'hara@example.org", MG_OK, NULL },
	{ addr254, MG_OK, NULL },
	{ addr255, MG_EINPUT, "is too long (255 bytes, at most 254)" },
	{ "", MG_EINPUT, "recipient address is empty" },
	{ "abuse", MG_EINPUT, "no '@'" },
	{ "a@b@example.org", MG_EINPUT, "more than one '@'" },
	{ "a b@example.org", MG_EINPUT, "space at offset 1" },
	{ " a@example.org", MG_EINPUT, "space at offset 0" },
	{ "a@example.org\r\nBcc: x@y", MG_EINPUT, "CR or LF at offset 13" },
	{ "a@example.org\n", MG_EINPUT, "CR or LF at offset 13" },
	{ "a\t@example.org", MG_EINPUT, "control character 0x09 at offset 1" },
	{ "a\x7f@example.org", MG_EINPUT, "control character 0x7f" },
	{ "j\xc3\xb6rg@example.org", MG_EINPUT, "non-ASCII byte at offset 1" },
	{ "a@b\xc3\xa4r.example", MG_EINPUT, "non-ASCII byte at offset 3" },
	{ "@example.org", MG_EINPUT, "empty local part" },
	{ "a@", MG_EINPUT, "empty domain" },
	{ "a@b..c", MG_EINPUT, "empty label in the domain" },
	{ "a@.b", MG_EINPUT, "empty label" },
	{ "a@b.", MG_EINPUT, "empty label" },
	{ "<a@b.example>", MG_EINPUT, "character '<' at offset 0" },
	{ "a,b@example.org", MG_EINPUT, "character ','" },
	{ "a;b@example.org", MG_EINPUT, "character ';'" },
	{ "\"a\"@example.org", MG_EINPUT, "character '\"'" },
	{ "a(b)@example.org", MG_EINPUT, "character '('" },
	{ "a@[192.0.2.1]", MG_EINPUT, "character '['" },
	{ "a\\b@example.org", MG_EINPUT, "character '\\'" },
	{ "a:b@example.org", MG_EINPUT, "character ':'" },
};

static void test_addr_check_table(void **state)
{
	for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
		const struct addr_case *c = &addr_cases[i];
		struct mg_err err = { 0 };

		print_message("case %zu: '%s'\n", i, c->addr);
		assert_int_equal(mg_addr_check("recipient address", c->addr, &err), c->rc);
		if (c->msg != NULL) {
			print_message("  %s\n", err.msg);
			assert_non_null(strstr(err.msg, c->msg));
			assert_non_null(strstr(err.msg, "recipient address"));
			/* the message is one printable line whatever the address held */
			for (const char *p = err.msg; *p != '\0'; p++)
				assert_true(*p >= 0x20 && *p < 0x7f);
		}
	}
}

static void test_addr_domain(void **state)
{
	assert_string_equal(mg_addr_domain("abuse@cert.example"), "cert.example");
	assert_string_equal(mg_addr_domain("a@b"), "b");
	assert_string_equal(mg_addr_domain("nodomain"), "");
}

static const struct mailbox_case {
	const char *in;
	int rc;
	const char *display; /* NULL: none */
	const char *addr;    /* or a substring of err.msg */
} mailbox_cases[] = {
	{ "mailgen@cert.example", MG_OK, NULL, "mailgen@cert.example" },
	{ "  mailgen@cert.example\t", MG_OK, NULL, "mailgen@cert.example" },
	{ "Name <a@b.example>", MG_OK, "Name", "a@b.example" },
	{ "CERT Reports <a@b.example>", MG_OK, "CERT Reports", "a@b.example" },
	{ "  Spaced  Name   <a@b.example>  ", MG_OK, "Spaced  Name", "a@b.example" },
	{ "<a@b.example>", MG_OK, NULL, "a@b.example" },
	{ "\"Quoted, Name\" <a@b.example>", MG_OK, "Quoted, Name", "a@b.example" },
	{ "\"Quoted, Name\"<a@b.example>", MG_OK, "Quoted, Name", "a@b.example" },
	{ "\"Esc \\\"q\\\" \\\\\" <a@b.example>", MG_OK, "Esc \"q\" \\", "a@b.example" },
	{ "\"\" <a@b.example>", MG_OK, NULL, "a@b.example" },
	{ "Unquoted, Comma <a@b.example>", MG_OK, "Unquoted, Comma", "a@b.example" },
	{ "Gr\xc3\xbc\xc3\x9f"
	  "e <a@b.example>",
	  MG_OK,
	  "Gr\xc3\xbc\xc3\x9f"
	  "e",
	  "a@b.example" },
	{ "", MG_EINPUT, NULL, "sender address is empty" },
	{ "Name", MG_EINPUT, NULL, "no '@'" },
	{ "Name <a@b.example", MG_EINPUT, NULL, "space at offset 4" },
	{ "Name a@b.example>", MG_EINPUT, NULL, "'>' without '<'" },
	{ "\"unterminated <a@b.example>", MG_EINPUT, NULL, "unterminated quoted string" },
	{ "\"Quoted\" x <a@b.example>", MG_EINPUT, NULL,
	  "expected '<' after the quoted display name" },
	{ "Name <a@@b.example>", MG_EINPUT, NULL, "more than one '@'" },
	{ "Name <a b@b.example>", MG_EINPUT, NULL, "space at offset 1" },
	{ "Name <a@b.example> x", MG_EINPUT, NULL, "space at offset 4" },
	{ "Name\r\n <a@b.example>", MG_EINPUT, NULL, "CR or LF at offset 4" },
	{ "Name <a@b.example>\nBcc: x@y", MG_EINPUT, NULL, "CR or LF at offset 18" },
	{ "N\xff <a@b.example>", MG_EINPUT, NULL, "invalid UTF-8 at offset 1" },
};

static char untouched[] = "untouched";

static void test_parse_mailbox_table(void **state)
{
	for (size_t i = 0; i < sizeof(mailbox_cases) / sizeof(mailbox_cases[0]); i++) {
		const struct mailbox_case *c = &mailbox_cases[i];
		struct mg_err err = { 0 };
		char *display = untouched, *addr = untouched;
		int r;

		print_message("case %zu: '%s'\n", i, c->in);
		r = mg_addr_parse_mailbox(c->in, &display, &addr, &err);
		assert_int_equal(r, c->rc);
		if (r < 0) {
			print_message("  %s\n", err.msg);
			assert_non_null(strstr(err.msg, c->addr));
			/* out-parameters are set only on success */
			assert_ptr_equal(display, untouched);
			assert_ptr_equal(addr, untouched);
			continue;
		}
		if (c->display == NULL)
			assert_null(display);
		else
			assert_string_equal(display, c->display);
		assert_string_equal(addr, c->addr);
		free(display);
		free(addr);
	}
}

static void test_parse_mailbox_torture(void **state)
{
	bool done = false;

	for (long n = 0; !done; n++) {
		struct mg_err err = { 0 };
		char *display = NULL, *addr = NULL;
		int r;

		mg_alloc_fail_after(n);
		r = mg_addr_parse_mailbox("\"A, B\" <a@b.example>", &display, &addr, &err);
		mg_alloc_fail_after(-1);
		if (r == MG_OK) {
			assert_string_equal(display, "A, B");
			assert_string_equal(addr, "a@b.example");
			free(display);
			free(addr);
			done = true;
		} else {
			assert_int_equal(r, MG_ENOMEM);
			assert_int_equal(err.rc, MG_ENOMEM);
			assert_null(display);
			assert_null(addr);
		}
		assert_true(n < 10);
	}
}

static const struct text_case {
	const char *name;
	const char *value;
	int rc;
	const char *want; /* the header, or a substring of err.msg */
} text_cases[] = {
	{ "Subject", "Hello", MG_OK, "Subject: Hello\r\n" },
	{ "Subject", "", MG_OK, "Subject:\r\n" },
	{ "Subject", "  two  spaces  ", MG_OK, "Subject:   two  spaces  \r\n" },
	{ "Subject", "tab\there", MG_OK, "Subject: tab\there\r\n" },
	/* folded before white space, lines under 78 */
	{ "Subject",
	  "Notification about open DNS resolvers in your network AS64496 on 2026-11-26, ticket 20261126-00000001",
	  MG_OK,
	  "Subject: Notification about open DNS resolvers in your network AS64496 on\r\n"
	  " 2026-11-26, ticket 20261126-00000001\r\n" },
	/* a 77-column line stays, a 78-column one is folded */
	{ "Subject", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", MG_OK,
	  "Subject: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n" },
	{ "Subject", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", MG_OK,
	  "Subject: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
	  " bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n" },
	/* one long word: folding right after the colon is all that can be done */
	{ "Subject",
	  "https://example.org/a/very/long/path/that/does/not/fit/on/the/first/line/at/all", MG_OK,
	  "Subject:\r\n"
	  " https://example.org/a/very/long/path/that/does/not/fit/on/the/first/line/at/all\r\n" },
	/* trailing white space stays on its line */
	{ "Subject", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa     ",
	  MG_OK,
	  "Subject: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa     \r\n" },
	/* non-ASCII: RFC 2047 B encoded-words */
	{ "Subject",
	  "Gr\xc3\xbc\xc3\x9f"
	  "e aus K\xc3\xb6ln",
	  MG_OK, "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n" },
	/* ASCII that a decoder would take for an encoded-word is encoded */
	{ "Subject", "=?x?=", MG_OK, "Subject: =?UTF-8?B?PT94Pz0=?=\r\n" },
	/*
	 * 39 bytes fit behind "Subject:" (76 - 9 - 12 = 55 base64 characters),
	 * 45 in a word of its own: 'a' and 12 euro signs, then 15, then 3.
	 */
	{ "Subject", "a" EURO15 EURO15, MG_OK,
	  "Subject: =?UTF-8?B?YeKCrOKCrOKCrOKCrOKCrOKCrOKCrOKCrOKCrOKCrOKCrOKCrA==?=\r\n"
	  " =?UTF-8?B?4oKs4oKs4oKs4oKs4oKs4oKs4oKs4oKs4oKs4oKs4oKs4oKs4oKs4oKs4oKs?=\r\n"
	  " =?UTF-8?B?4oKs4oKs4oKs?=\r\n" },
	/* header injection */
	{ "Subject", "Hi\r\nBcc: evil@example.org", MG_EINPUT,
	  "header 'Subject': value contains CR or LF at offset 2" },
	{ "Subject", "Hi\nBcc: evil@example.org", MG_EINPUT, "CR or LF at offset 2" },
	{ "Subject", "Hi\rBcc: evil@example.org", MG_EINPUT, "CR or LF at offset 2" },
	{ "Subject", "Hi\x0b", MG_EINPUT, "control character U+000B" },
	{ "Subject", "\xc3(", MG_EINPUT, "invalid UTF-8 at offset 0" },
};

static void test_add_text_table(void **state)
{
	for (size_t i = 0; i < sizeof(text_cases) / sizeof(text_cases[0]); i++) {
		const struct text_case *c = &text_cases[i];
		struct mg_buf out = MG_BUF_INIT(4096);
		struct mg_err err = { 0 };
		int r;

		print_message("case %zu: '%s'\n", i, c->value);
		r = mg_hdr_add_text(&out, c->name, c->value, &err);
		assert_int_equal(r, c->rc);
		if (r == MG_OK) {
			assert_string_equal(mg_buf_str(&out), c->want);
		} else {
			print_message("  %s\n", err.msg);
			assert_non_null(strstr(err.msg, c->want));
			assert_int_equal(out.len, 0);
		}
		mg_buf_release(&out);
	}
}

static int b64val(char c)
{
	const char *d = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = strchr(d, c);

	return c != '\0' && p != NULL ? (int)(p - d) : -1;
}

static size_t b64dec(const char *s, size_t n, char *dst)
{
	size_t o = 0;

	assert_int_equal(n % 4, 0);
	for (size_t i = 0; i < n; i += 4) {
		int v[4];

		for (int k = 0; k < 4; k++)
			v[k] = s[i + k] == '=' ? 0 : b64val(s[i + k]);
		for (int k = 0; k < 4; k++)
			assert_true(v[k] >= 0);
		dst[o++] = (char)(v[0] << 2 | v[1] >> 4);
		if (s[i + 2] != '=')
			dst[o++] = (char)((v[1] & 0xf) << 4 | v[2] >> 2);
		if (s[i + 3] != '=')
			dst[o++] = (char)((v[2] & 0x3) << 6 | v[3]);
	}
	return o;
}

/*
 * Check an encoded header "Name: =?UTF-8?B?...?=" CRLF (SP word CRLF)*:
 * line and word lengths, each word whole UTF-8 by itself; returns the
 * decoded text in dec.
 */
static size_t check_encoded(const char *h, const char *name, char *dec)
{
	const char *p = h + strlen(name) + 1;
	size_t o = 0, lines = 0;

	assert_memory_equal(h, name, strlen(name));
	assert_int_equal(h[strlen(name)], ':');
	for (const char *l = h; *l != '\0'; lines++) {
		const char *e = strstr(l, "\r\n");

		assert_non_null(e);
		assert_true(e - l <= 76);
		l = e + 2;
	}
	while (*p != '\0') {
		const char *w, *end;
		size_t n;

		if (p[0] == '\r') {
			assert_int_equal(p[1], '\n');
			p += 2;
			continue;
		}
		assert_int_equal(*p, ' ');
		w = p + 1;
		assert_memory_equal(w, "=?UTF-8?B?", 10);
		end = strstr(w + 10, "?=");
		assert_non_null(end);
		assert_true(end + 2 - w <= 75);
		n = b64dec(w + 10, (size_t)(end - w - 10), dec + o);
		assert_true(mg_utf8_valid(dec + o, n));
		o += n;
		p = end + 2;
	}
	assert_true(lines >= 1);
	return o;
}

/* A long subject of 1- to 4-byte characters: no word splits a sequence. */
static void test_add_text_long_utf8(void **state)
{
	static const char *pieces[] = { "\xc3\xbc",	    "x", "\xe2\x98\x83",
					"\xf0\x9f\x8e\x89", " ", "\xc3\x9f" };
	char value[2000], dec[2000];
	size_t len = 0;

	for (int k = 0; k < 3; k++) {
		for (size_t i = 0; len + 4 < 600; i++) {
			const char *s = pieces[(i * 7 + (size_t)k) % 6];

			memcpy(value + len, s, strlen(s));
			len += strlen(s);
		}
		value[len] = '\0';
		for (size_t cut = len - 5; cut <= len; cut++) {
			struct mg_buf out = MG_BUF_INIT(1 << 16);
			struct mg_err err = { 0 };
			char save = value[cut];
			size_t n;

			/* cut at a sequence start only; the value must stay valid */
			if (((unsigned char)save & 0xc0) == 0x80)
				continue;
			value[cut] = '\0';
			assert_int_equal(mg_hdr_add_text(&out, "Subject", value, &err), MG_OK);
			n = check_encoded(mg_buf_str(&out), "Subject", dec);
			assert_int_equal(n, cut);
			assert_memory_equal(dec, value, cut);
			value[cut] = save;
			mg_buf_release(&out);
		}
		len = 0;
	}
}

/* An ASCII word too long for any line (998) is encoded instead. */
static void test_add_text_huge_word(void **state)
{
	struct mg_buf out = MG_BUF_INIT(1 << 16);
	struct mg_err err = { 0 };
	char value[1200], dec[1200];

	memset(value, 'x', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	assert_int_equal(mg_hdr_add_text(&out, "Subject", value, &err), MG_OK);
	assert_int_equal(check_encoded(mg_buf_str(&out), "Subject", dec), sizeof(value) - 1);
	assert_memory_equal(dec, value, sizeof(value) - 1);
	mg_buf_release(&out);

	/* 900 bytes still fit on a line of their own */
	value[900] = '\0';
	assert_int_equal(mg_hdr_add_text(&out, "Subject", value, &err), MG_OK);
	assert_memory_equal(mg_buf_str(&out), "Subject:\r\n xxx", 14);
	assert_int_equal(out.len, strlen("Subject:\r\n ") + 900 + 2);
	mg_buf_release(&out);

	/* trailing white space stays on the last line, which must stay within 998 */
	memset(value, ' ', 950);
	memcpy(value, "short", 5);
	value[950] = '\0';
	assert_int_equal(mg_hdr_add_text(&out, "Subject", value, &err), MG_OK);
	assert_int_equal(check_encoded(mg_buf_str(&out), "Subject", dec), 950);
	assert_memory_equal(dec, value, 950);
	mg_buf_release(&out);
}

/* A field name too long for a first encoded-word puts it on the next line. */
static void test_add_text_long_name(void **state)
{
	struct mg_buf out = MG_BUF_INIT(4096);
	struct mg_err err = { 0 };
	const char *name = "X-A-Very-Long-Header-Field-Name-That-Leaves-No-Room-For-A-Word-Here";

	assert_int_equal(mg_hdr_add_text(&out, name, "\xc3\xa4", &err), MG_OK);
	assert_string_equal(
		mg_buf_str(&out),
		"X-A-Very-Long-Header-Field-Name-That-Leaves-No-Room-For-A-Word-Here:\r\n =?UTF-8?B?w6Q=?=\r\n");
	mg_buf_release(&out);
}

static void test_add_text_cap(void **state)
{
	struct mg_buf out = MG_BUF_INIT(20);
	struct mg_err err = { 0 };

	assert_int_equal(mg_hdr_add_text(&out, "Subject", "a somewhat longer subject", &err),
			 MG_EINPUT);
	assert_non_null(strstr(err.msg, "limit of 20 bytes"));
	assert_true(out.len <= 20);
	mg_buf_release(&out);
}

static const struct mailbox_hdr_case {
	const char *display;
	const char *addr;
	int rc;
	const char *want;
} mailbox_hdr_cases[] = {
	{ NULL, "a@b.example", MG_OK, "From: a@b.example\r\n" },
	{ "", "a@b.example", MG_OK, "From: a@b.example\r\n" },
	{ "Mailgen", "mailgen@cert.example", MG_OK, "From: Mailgen <mailgen@cert.example>\r\n" },
	{ "CERT-Bund Reports", "a@b.example", MG_OK, "From: CERT-Bund Reports <a@b.example>\r\n" },
	{ "o'Hara & Co!", "a@b.example", MG_OK, "From: o'Hara & Co! <a@b.example>\r\n" },
	{ "J. Smith", "a@b.example", MG_OK, "From: \"J. Smith\" <a@b.example>\r\n" },
	{ "Quoted, Name", "a@b.example", MG_OK, "From: \"Quoted, Name\" <a@b.example>\r\n" },
	{ "Say \"hi\" \\o/", "a@b.example", MG_OK,
	  "From: \"Say \\\"hi\\\" \\\\o/\" <a@b.example>\r\n" },
	{ " lead", "a@b.example", MG_OK, "From: \" lead\" <a@b.example>\r\n" },
	{ "Gr\xc3\xbc\xc3\x9f"
	  "e",
	  "a@b.example", MG_OK, "From: =?UTF-8?B?R3LDvMOfZQ==?= <a@b.example>\r\n" },
	{ "Abuse Team \xc3\x84\xc3\x96\xc3\x9c", "abuse-team-with-a-long-name@reports.cert.example",
	  MG_OK,
	  "From: =?UTF-8?B?QWJ1c2UgVGVhbSDDhMOWw5w=?=\r\n"
	  " <abuse-team-with-a-long-name@reports.cert.example>\r\n" },
	{ "=?x?=", "a@b.example", MG_OK, "From: =?UTF-8?B?PT94Pz0=?= <a@b.example>\r\n" },
	{ "A Rather Long Display Name For The Computer Emergency Response Team", "a@b.example",
	  MG_OK,
	  "From: A Rather Long Display Name For The Computer Emergency Response Team\r\n"
	  " <a@b.example>\r\n" },
	{ "Name", "a@b.example\r\nBcc: evil@example.org", MG_EINPUT,
	  "header 'From': address 'a@b.example??Bcc:" },
	{ "Name\r\nBcc: evil@example.org", "a@b.example", MG_EINPUT,
	  "header 'From': value contains CR or LF at offset 4" },
	{ "N\xc3", "a@b.example", MG_EINPUT, "invalid UTF-8 at offset 1" },
	{ NULL, "a@@b.example", MG_EINPUT, "more than one '@'" },
};

static void test_add_mailbox_table(void **state)
{
	for (size_t i = 0; i < sizeof(mailbox_hdr_cases) / sizeof(mailbox_hdr_cases[0]); i++) {
		const struct mailbox_hdr_case *c = &mailbox_hdr_cases[i];
		struct mg_buf out = MG_BUF_INIT(4096);
		struct mg_err err = { 0 };
		int r;

		print_message("case %zu\n", i);
		r = mg_hdr_add_mailbox(&out, "From", c->display, c->addr, &err);
		assert_int_equal(r, c->rc);
		if (r == MG_OK) {
			assert_string_equal(mg_buf_str(&out), c->want);
		} else {
			print_message("  %s\n", err.msg);
			assert_non_null(strstr(err.msg, c->want));
			assert_int_equal(out.len, 0);
		}
		mg_buf_release(&out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_table),
		cmocka_unit_test(test_check_value_table),
		cmocka_unit_test(test_addr_check_table),
		cmocka_unit_test(test_addr_domain),
		cmocka_unit_test(test_parse_mailbox_table),
		cmocka_unit_test(test_parse_mailbox_torture),
		cmocka_unit_test(test_add_text_table),
		cmocka_unit_test(test_add_text_long_utf8),
		cmocka_unit_test(test_add_text_huge_word),
		cmocka_unit_test(test_add_text_long_name),
		cmocka_unit_test(test_add_text_cap),
		cmocka_unit_test(test_add_mailbox_table),
	};

	/* 242 + 12 = 254 bytes, the longest allowed; one more is too long */
	memset(addr254, 'a', 242);
	memcpy(addr254 + 242, "@example.org", 13);
	memset(addr255, 'a', 243);
	memcpy(addr255 + 243, "@example.org", 13);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
