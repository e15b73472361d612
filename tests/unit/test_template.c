/* tests/unit/test_template.c - string.Template expansion, template files, template names */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "template.h"

#define LONG_NAME_LEN 300 /* longer than the expander's stack copy of a name */

static char long_name[LONG_NAME_LEN + 1];

static const struct {
	const char *name;
	const char *value;
} vars[] = {
	{ "ticket_number", "20261126-00000001" },
	{ "source.asn", "64496" },
	{ "source.asn.", "DOT" },
	{ "a", "A" },
	{ "A", "upper" },
	{ "_x", "underscore" },
	{ "x1", "X1" },
	{ "empty", "" },
	{ "\xc5\xbf", "long s" }, /* U+017F, an identifier letter for Python's re.IGNORECASE */
	{ "dollar", "$a ${a} $$" },
};

static char long_value[] = "LONG";
static char short_value[] = "L";

static const char *lookup(void *arg, const char *name)
{
	if (arg != NULL && strcmp(name, long_name) == 0)
		return (const char *)arg;
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (strcmp(vars[i].name, name) == 0)
			return vars[i].value;
	return NULL;
}

/* Expected values checked against Python 3's string.Template by hand. */
static const struct expand_case {
	const char *tmpl;
	int want_rc;
	const char *want; /* output, or a substring of err.msg */
} expand_cases[] = {
	{ "", MG_OK, "" },
	{ "plain text, no placeholder", MG_OK, "plain text, no placeholder" },
	{ "Ticket $ticket_number", MG_OK, "Ticket 20261126-00000001" },
	{ "AS${source.asn}!", MG_OK, "AS64496!" },
	{ "costs $$5", MG_OK, "costs $5" },
	{ "$$$$", MG_OK, "$$" },
	{ "$$a", MG_OK, "$a" },
	{ "$$$a", MG_OK, "$A" },
	{ "$${a}", MG_OK, "${a}" },
	/* the longest identifier, trailing dot included */
	{ "$source.asn.", MG_OK, "DOT" },
	{ "${source.asn}.", MG_OK, "64496." },
	{ "$a-b", MG_OK, "A-b" },
	{ "$A", MG_OK, "upper" },
	{ "$_x", MG_OK, "underscore" },
	{ "${x1}", MG_OK, "X1" },
	{ "${a}b", MG_OK, "Ab" },
	{ "$a$a", MG_OK, "AA" },
	{ "$empty|", MG_OK, "|" },
	{ "{$a}", MG_OK, "{A}" },
	{ "$a}", MG_OK, "A}" },
	{ "${a}}", MG_OK, "A}" },
	{ "\r\n$a\n", MG_OK, "\r\nA\n" },
	{ "\xc3\xa4 $a \xe2\x82\xac", MG_OK, "\xc3\xa4 A \xe2\x82\xac" },
	{ "$\xc5\xbf!", MG_OK, "long s!" },
	/* values are not expanded again */
	{ "[$dollar]", MG_OK, "[$a ${a} $$]" },
	/* unknown names: reported as written, at the '$' */
	{ "$x1y", MG_EINPUT, "unknown name 'x1y' at line 1, col 1" },
	{ "$x1.", MG_EINPUT, "unknown name 'x1.' at line 1, col 1" },
	{ "$ab", MG_EINPUT, "unknown name 'ab' at line 1, col 1" },
	{ "hi ${nope}", MG_EINPUT, "unknown name 'nope' at line 1, col 4" },
	{ "$source.asn.x", MG_EINPUT, "unknown name 'source.asn.x' at line 1, col 1" },
	{ "a\nb\nc $a $z", MG_EINPUT, "unknown name 'z' at line 3, col 6" },
	{ "$TICKET_NUMBER", MG_EINPUT, "unknown name 'TICKET_NUMBER'" },
	/* U+0131 and U+212A are identifier letters too, as in Python */
	{ "$asn\xc4\xb1", MG_EINPUT, "unknown name 'asn\xc4\xb1' at line 1, col 1" },
	{ "${\xe2\x84\xaa}", MG_EINPUT, "unknown name '\xe2\x84\xaa' at line 1, col 1" },
	/* everything else after a '$' */
	{ "a\n$ 5", MG_EINPUT, "invalid placeholder at line 2, col 1" },
	{ "${source.asn", MG_EINPUT, "invalid placeholder at line 1, col 1" },
	{ "$", MG_EINPUT, "invalid placeholder at line 1, col 1" },
	{ "x$", MG_EINPUT, "invalid placeholder at line 1, col 2" },
	{ "$1", MG_EINPUT, "invalid placeholder at line 1, col 1" },
	{ "${", MG_EINPUT, "invalid placeholder at line 1, col 1" },
	{ "${bad name}", MG_EINPUT, "invalid placeholder at line 1, col 1" },
	{ "${}", MG_EINPUT, "invalid placeholder at line 1, col 1" },
	{ "${1a}", MG_EINPUT, "invalid placeholder at line 1, col 1" },
	{ "${.a}", MG_EINPUT, "invalid placeholder at line 1, col 1" },
	{ "$.a", MG_EINPUT, "invalid placeholder at line 1, col 1" },
	{ "$ {a}", MG_EINPUT, "invalid placeholder at line 1, col 1" },
	{ "line1\nline2\n  $?", MG_EINPUT, "invalid placeholder at line 3, col 3" },
	/* columns count characters, as Python does */
	{ "\xc3\xa4 $?", MG_EINPUT, "invalid placeholder at line 1, col 3" },
	/* the first problem from the left wins */
	{ "$nope $", MG_EINPUT, "unknown name 'nope' at line 1, col 1" },
	{ "$ $nope", MG_EINPUT, "invalid placeholder at line 1, col 1" },
};

static void test_expand_table(void **state)
{
	for (size_t i = 0; i < sizeof(expand_cases) / sizeof(expand_cases[0]); i++) {
		const struct expand_case *c = &expand_cases[i];
		struct mg_buf out = MG_BUF_INIT(4096);
		struct mg_err err = { 0 };
		int rc;

		print_message("case %zu: '%s'\n", i, c->tmpl);
		rc = mg_template_expand(c->tmpl, strlen(c->tmpl), lookup, NULL, &out, &err);
		assert_int_equal(rc, c->want_rc);
		if (rc == MG_OK) {
			assert_string_equal(mg_buf_str(&out), c->want);
		} else {
			assert_int_equal(err.rc, c->want_rc);
			if (strstr(err.msg, c->want) == NULL)
				fail_msg("case %zu: '%s' does not contain '%s'", i, err.msg,
					 c->want);
		}
		mg_buf_release(&out);
	}
}

/* len, not a NUL, ends the template; a NUL inside it is an error. */
static void test_expand_len(void **state)
{
	struct mg_buf out = MG_BUF_INIT(4096);
	struct mg_err err = { 0 };

	assert_int_equal(mg_template_expand("$a$a", 2, lookup, NULL, &out, &err), MG_OK);
	assert_string_equal(mg_buf_str(&out), "A");
	mg_buf_reset(&out);
	assert_int_equal(mg_template_expand("${a}", 3, lookup, NULL, &out, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "invalid placeholder at line 1, col 1"));
	mg_buf_reset(&out);
	assert_int_equal(mg_template_expand(NULL, 0, lookup, NULL, &out, &err), MG_OK);
	assert_string_equal(mg_buf_str(&out), "");
	mg_buf_reset(&out);
	assert_int_equal(mg_template_expand("ab\n\0$a", 6, lookup, NULL, &out, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "NUL byte at line 2, col 1"));
	mg_buf_release(&out);
}

/* err may be NULL; the return code still says what happened. */
static void test_expand_null_err(void **state)
{
	struct mg_buf out = MG_BUF_INIT(4096);

	assert_int_equal(mg_template_expand("$nope", 5, lookup, NULL, &out, NULL), MG_EINPUT);
	assert_int_equal(mg_template_expand("$", 1, lookup, NULL, &out, NULL), MG_EINPUT);
	mg_buf_release(&out);
}

/* A name longer than the stack copy goes to the heap; arg reaches lookup. */
static void test_expand_long_name(void **state)
{
	struct mg_buf out = MG_BUF_INIT(4096);
	struct mg_buf tmpl = MG_BUF_INIT(1024);
	struct mg_err err = { 0 };

	assert_int_equal(mg_buf_addf(&tmpl, "<$%s>${%s}", long_name, long_name), MG_OK);
	assert_int_equal(mg_template_expand(tmpl.data, tmpl.len, lookup, long_value, &out, &err),
			 MG_OK);
	assert_string_equal(mg_buf_str(&out), "<LONG>LONG");
	mg_buf_reset(&out);
	assert_int_equal(mg_template_expand(tmpl.data, tmpl.len, lookup, NULL, &out, &err),
			 MG_EINPUT);
	assert_non_null(strstr(err.msg, "unknown name 'nnnnnnnn"));
	mg_buf_release(&out);
	mg_buf_release(&tmpl);
}

/* Output caps: out->max is enforced for literal text and for values. */
static const struct cap_case {
	const char *tmpl;
	size_t max;
	int want_rc;
	const char *want;
} cap_cases[] = {
	{ "0123456789", 10, MG_OK, "0123456789" },
	{ "0123456789X", 10, MG_EINPUT, "expanded text exceeds 10 bytes at line 1, col 1" },
	{ "$ticket_number", 17, MG_OK, "20261126-00000001" },
	{ "$ticket_number", 16, MG_EINPUT, "exceeds 16 bytes at line 1, col 1" },
	{ "ab\n $ticket_number", 16, MG_EINPUT, "exceeds 16 bytes at line 2, col 2" },
	{ "$$$$", 1, MG_EINPUT, "exceeds 1 bytes at line 1, col 3" },
	{ "", 0, MG_OK, "" },
	{ "$empty", 0, MG_OK, "" },
};

static void test_expand_cap(void **state)
{
	for (size_t i = 0; i < sizeof(cap_cases) / sizeof(cap_cases[0]); i++) {
		const struct cap_case *c = &cap_cases[i];
		struct mg_buf out = MG_BUF_INIT(c->max);
		struct mg_err err = { 0 };
		int rc;

		print_message("case %zu: '%s' max %zu\n", i, c->tmpl, c->max);
		rc = mg_template_expand(c->tmpl, strlen(c->tmpl), lookup, NULL, &out, &err);
		assert_int_equal(rc, c->want_rc);
		if (rc == MG_OK)
			assert_string_equal(mg_buf_str(&out), c->want);
		else if (strstr(err.msg, c->want) == NULL)
			fail_msg("case %zu: '%s' does not contain '%s'", i, err.msg, c->want);
		assert_true(out.len <= c->max);
		mg_buf_release(&out);
	}
}

/* 1 MB of template, or 1 MB of value, against a small cap: an error, no crash. */
static void test_expand_huge(void **state)
{
	size_t big = 1024 * 1024;
	char *text = malloc(big + 1);
	struct mg_buf out = MG_BUF_INIT(4096);
	struct mg_buf tmpl = MG_BUF_INIT(1024);
	struct mg_err err = { 0 };

	assert_non_null(text);
	memset(text, 'x', big);
	text[big] = '\0';
	assert_int_equal(mg_template_expand(text, big, lookup, NULL, &out, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "expanded text exceeds 4096 bytes at line 1, col 1"));
	assert_true(out.len <= 4096);

	/* "$$" after "$$": the 4097th one no longer fits */
	mg_buf_reset(&out);
	memset(text, '$', big);
	assert_int_equal(mg_template_expand(text, big, lookup, NULL, &out, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "exceeds 4096 bytes at line 1, col 8193"));
	assert_int_equal(out.len, 4096);

	/* the same with room for it */
	mg_buf_release(&out);
	out = MG_BUF_INIT(big);
	assert_int_equal(mg_template_expand(text, big, lookup, NULL, &out, &err), MG_OK);
	assert_int_equal(out.len, big / 2);

	/* a 1 MB value (lookup returns arg for the long name) */
	mg_buf_release(&out);
	out = MG_BUF_INIT(4096);
	memset(text, 'v', big);
	assert_int_equal(mg_buf_addf(&tmpl, "ok ${%s}", long_name), MG_OK);
	assert_int_equal(mg_template_expand(tmpl.data, tmpl.len, lookup, text, &out, &err),
			 MG_EINPUT);
	assert_non_null(strstr(err.msg, "exceeds 4096 bytes at line 1, col 4"));
	assert_string_equal(mg_buf_str(&out), "ok ");

	mg_buf_release(&tmpl);
	mg_buf_release(&out);
	free(text);
}

static const struct split_case {
	const char *text;
	int want_rc;
	const char *subject; /* or a substring of err.msg */
	const char *body;
} split_cases[] = {
	{ "Subject\nBody\n", MG_OK, "Subject", "Body\n" },
	{ "\n\n  Subject  \n\n  Body line 1\nline 2  \n\n", MG_OK, "Subject",
	  "Body line 1\nline 2\n" },
	{ "Subject only", MG_OK, "Subject only", "\n" },
	{ "Subject\n", MG_OK, "Subject", "\n" },
	{ "S\n\n\n", MG_OK, "S", "\n" },
	{ "\t Sub $x \t\nB", MG_OK, "Sub $x", "B\n" },
	{ "S\n  indented\n\tkept  \n", MG_OK, "S", "indented\n\tkept\n" },
	{ " \v\f\n Subject\v\nB", MG_OK, "Subject", "B\n" },
	/* universal newlines: CRLF and a lone CR are read as LF */
	{ "Subj\r\n\r\nBody\r\nmore\r\n", MG_OK, "Subj", "Body\nmore\n" },
	{ "Subj\rBody\rmore", MG_OK, "Subj", "Body\nmore\n" },
	{ "S\nA\r\nB\rC\n\rD", MG_OK, "S", "A\nB\nC\n\nD\n" },
	{ "\r\r\nS\r", MG_OK, "S", "\n" },
	/* the body keeps placeholders and non-ASCII text as they are */
	{ "Ticket $ticket_number\n\nGr\xc3\xbc\xc3\x9f"
	  "e,\n${events_as_csv}\n",
	  MG_OK, "Ticket $ticket_number",
	  "Gr\xc3\xbc\xc3\x9f"
	  "e,\n${events_as_csv}\n" },
	{ "", MG_EINPUT, "template has no subject line", NULL },
	{ "\n", MG_EINPUT, "template has no subject line", NULL },
	{ " \t\v\f\r\n \r\n", MG_EINPUT, "template has no subject line", NULL },
};

static void test_split_table(void **state)
{
	for (size_t i = 0; i < sizeof(split_cases) / sizeof(split_cases[0]); i++) {
		const struct split_case *c = &split_cases[i];
		char *subject = (char *)"untouched", *body = (char *)"untouched";
		struct mg_err err = { 0 };
		int rc;

		print_message("case %zu: '%s'\n", i, c->text);
		rc = mg_template_split(c->text, strlen(c->text), &subject, &body, &err);
		assert_int_equal(rc, c->want_rc);
		if (rc == MG_OK) {
			assert_string_equal(subject, c->subject);
			assert_string_equal(body, c->body);
			free(subject);
			free(body);
		} else {
			assert_string_equal(subject, "untouched");
			assert_string_equal(body, "untouched");
			if (strstr(err.msg, c->subject) == NULL)
				fail_msg("case %zu: '%s' does not contain '%s'", i, err.msg,
					 c->subject);
		}
	}
}

static void test_split_nul(void **state)
{
	char *subject = NULL, *body = NULL;
	struct mg_err err = { 0 };

	assert_int_equal(mg_template_split("S\nab\0c", 6, &subject, &body, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "NUL byte at line 2, col 3"));
	assert_null(subject);
	assert_null(body);
	/* len bounds the text */
	assert_int_equal(mg_template_split("S\nB\0junk", 3, &subject, &body, &err), MG_OK);
	assert_string_equal(subject, "S");
	assert_string_equal(body, "B\n");
	free(subject);
	free(body);
	assert_int_equal(mg_template_split(NULL, 0, &subject, &body, NULL), MG_EINPUT);
}

static const struct name_case {
	const char *name;
	int want_rc;
	const char *want;
} name_cases[] = {
	{ "dns.txt", MG_OK, NULL },
	{ "opendns-resolver_en", MG_OK, NULL },
	{ "...", MG_OK, NULL },
	{ "..a", MG_OK, NULL },
	{ ".hidden", MG_OK, NULL },
	{ "gr\xc3\xbc\xc3\x9f"
	  "e.txt",
	  MG_OK, NULL },
	{ "a b", MG_OK, NULL },
	{ "", MG_EINPUT, "template name is empty" },
	{ ".", MG_EINPUT, "template name '.' is not a file name" },
	{ "..", MG_EINPUT, "template name '..' is not a file name" },
	{ "a/b", MG_EINPUT, "template name 'a/b' contains '/'" },
	{ "/etc/passwd", MG_EINPUT, "contains '/'" },
	{ "../x", MG_EINPUT, "contains '/'" },
	{ "x/", MG_EINPUT, "contains '/'" },
	{ "a\nb", MG_EINPUT, "control character 0x0a at offset 1" },
	{ "\tb", MG_EINPUT, "control character 0x09 at offset 0" },
	{ "ab\x7f", MG_EINPUT, "control character 0x7f at offset 2" },
	{ "a\x1b[31m", MG_EINPUT, "control character 0x1b at offset 1" },
};

static void test_check_name_table(void **state)
{
	char name[300];

	for (size_t i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
		const struct name_case *c = &name_cases[i];
		struct mg_err err = { 0 };
		int rc;

		print_message("case %zu\n", i);
		rc = mg_template_check_name(c->name, &err);
		assert_int_equal(rc, c->want_rc);
		if (rc != MG_OK && strstr(err.msg, c->want) == NULL)
			fail_msg("case %zu: '%s' does not contain '%s'", i, err.msg, c->want);
	}
	assert_int_equal(mg_template_check_name(NULL, NULL), MG_EINPUT);

	/* 255 bytes are fine, 256 are not */
	memset(name, 'a', 255);
	name[255] = '\0';
	assert_int_equal(mg_template_check_name(name, NULL), MG_OK);
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	for (size_t n = 256; n < sizeof(name); n += 40) {
		struct mg_err err = { 0 };

		name[n] = '\0';
		assert_int_equal(mg_template_check_name(name, &err), MG_EINPUT);
		assert_non_null(strstr(err.msg, "longer than 255 bytes"));
		name[n] = 'a';
	}
}

/* Fail every allocation in turn: MG_ENOMEM or success, nothing leaks. */
static void test_torture(void **state)
{
	static const char file[] = "\r\n  Ticket $ticket_number for AS${source.asn}  \r\n\r\n"
				   "Dear $a,\r\n\r\n$$ ${x1} ${empty}.\r\n";
	struct mg_buf tmpl = MG_BUF_INIT(4096);
	bool done = false;

	assert_int_equal(mg_buf_addf(&tmpl, "%s ${%s} $%s", file, long_name, long_name), MG_OK);
	for (long n = 0; n < 64 && !done; n++) {
		struct mg_buf subject = MG_BUF_INIT(4096), body = MG_BUF_INIT(4096);
		char *s = NULL, *b = NULL;
		struct mg_err err = { 0 };
		int r;

		mg_alloc_fail_after(n);
		r = mg_template_split(tmpl.data, tmpl.len, &s, &b, &err);
		if (r == MG_OK)
			r = mg_template_expand(s, strlen(s), lookup, short_value, &subject, &err);
		if (r == MG_OK)
			r = mg_template_expand(b, strlen(b), lookup, short_value, &body, &err);
		mg_alloc_fail_after(-1);
		if (r == MG_OK) {
			assert_string_equal(mg_buf_str(&subject),
					    "Ticket 20261126-00000001 for AS64496");
			assert_string_equal(mg_buf_str(&body), "Dear A,\n\n$ X1 .\n L L\n");
			done = true;
		} else {
			assert_int_equal(r, MG_ENOMEM);
			assert_int_equal(err.rc, MG_ENOMEM);
		}
		free(s);
		free(b);
		mg_buf_release(&subject);
		mg_buf_release(&body);
	}
	assert_true(done);
	mg_buf_release(&tmpl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expand_table),	 cmocka_unit_test(test_expand_len),
		cmocka_unit_test(test_expand_null_err),	 cmocka_unit_test(test_expand_long_name),
		cmocka_unit_test(test_expand_cap),	 cmocka_unit_test(test_expand_huge),
		cmocka_unit_test(test_split_table),	 cmocka_unit_test(test_split_nul),
		cmocka_unit_test(test_check_name_table), cmocka_unit_test(test_torture),
	};

	memset(long_name, 'n', LONG_NAME_LEN);
	long_name[LONG_NAME_LEN] = '\0';
	return cmocka_run_group_tests(tests, NULL, NULL);
}
