/* tests/unit/test_table.c - events as CSV (csv.writer, QUOTE_ALL) */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "table.h"

#define MAX_CELLS 12

static const struct mg_column two_cols[] = {
	{ "source.ip", "ip" },
	{ "extra.note", "say \"x\"" },
};

static const struct mg_column six_cols[] = {
	{ "source.asn", "asn" }, { "source.ip", "ip" }, { "extra.a", "a" },
	{ "extra.b", "b" },	 { "extra.c", "c" },	{ "extra.d", "d" },
};

/* Expected values checked against Python 3's csv.writer(quoting=csv.QUOTE_ALL) by hand. */
static const struct table_case {
	const struct mg_column *cols;
	size_t n_cols;
	size_t n_rows;
	const char *cells[MAX_CELLS];
	unsigned flags;
	const char *want;
} table_cases[] = {
	{ two_cols, 2, 0, { NULL }, 0, "\"ip\",\"say \"\"x\"\"\"\r\n" },
	{ two_cols,
	  2,
	  2,
	  { "192.0.2.1", "", NULL, "n" },
	  0,
	  "\"ip\",\"say \"\"x\"\"\"\r\n\"192.0.2.1\",\"\"\r\n\"\",\"n\"\r\n" },
	/* quotes doubled, separators and line ends kept inside the quotes */
	{ six_cols,
	  6,
	  1,
	  { "64496", NULL, "say \"hi\"", "a,b", "x\ny", "\r\n" },
	  0,
	  "\"asn\",\"ip\",\"a\",\"b\",\"c\",\"d\"\r\n"
	  "\"64496\",\"\",\"say \"\"hi\"\"\",\"a,b\",\"x\ny\",\"\r\n\"\r\n" },
	{ six_cols,
	  6,
	  1,
	  { "\"", "\"\"", " lead", "trail ", "\xc3\xbc", "" },
	  0,
	  "\"asn\",\"ip\",\"a\",\"b\",\"c\",\"d\"\r\n"
	  "\"\"\"\",\"\"\"\"\"\",\" lead\",\"trail \",\"\xc3\xbc\",\"\"\r\n" },
	/* formula triggers: written as they are without the flag ... */
	{ six_cols,
	  6,
	  2,
	  { "=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "a=b", "", NULL, "'x", " =1", "=\"" },
	  0,
	  "\"asn\",\"ip\",\"a\",\"b\",\"c\",\"d\"\r\n"
	  "\"=1+1\",\"+1\",\"-1\",\"@SUM(A1)\",\"\tx\",\"\rx\"\r\n"
	  "\"a=b\",\"\",\"\",\"'x\",\" =1\",\"=\"\"\"\r\n" },
	/* ... and behind a "'" with it; titles are never changed */
	{ six_cols,
	  6,
	  2,
	  { "=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "a=b", "", NULL, "'x", " =1", "=\"" },
	  MG_TABLE_SPREADSHEET_SAFE,
	  "\"asn\",\"ip\",\"a\",\"b\",\"c\",\"d\"\r\n"
	  "\"'=1+1\",\"'+1\",\"'-1\",\"'@SUM(A1)\",\"'\tx\",\"'\rx\"\r\n"
	  "\"a=b\",\"\",\"\",\"'x\",\" =1\",\"'=\"\"\"\r\n" },
	{ (const struct mg_column[]){ { "f", "=title" } },
	  1,
	  1,
	  { "-5" },
	  MG_TABLE_SPREADSHEET_SAFE,
	  "\"=title\"\r\n\"'-5\"\r\n" },
	/* no columns: csv.writer writes empty rows as a bare line end */
	{ NULL, 0, 2, { NULL }, 0, "\r\n\r\n\r\n" },
	{ two_cols, 1, 3, { "a", "b", "c" }, 0, "\"ip\"\r\n\"a\"\r\n\"b\"\r\n\"c\"\r\n" },
};

static void test_csv_table(void **state)
{
	for (size_t i = 0; i < sizeof(table_cases) / sizeof(table_cases[0]); i++) {
		const struct table_case *c = &table_cases[i];
		struct mg_buf out = MG_BUF_INIT(4096);
		struct mg_err err = { 0 };

		print_message("case %zu\n", i);
		assert_int_equal(
			mg_table_csv(&out, c->cols, c->n_cols, c->cells, c->n_rows, c->flags, &err),
			MG_OK);
		assert_string_equal(mg_buf_str(&out), c->want);
		mg_buf_release(&out);
	}
}

/*
 * Cells come from the database: control characters are kept inside the
 * quoted field (the MIME layer encodes them), bytes that are not UTF-8
 * fail the table with the row and the field.
 */
static void test_csv_hostile_cells(void **state)
{
	static const char *const ctrl[] = { "a\r\nb", "\x01\x1b[31m\"\n" };
	static const struct {
		const char *cell;
		const char *want; /* NULL: accepted */
	} utf8[] = {
		{ "m\xc3\xbcller", NULL },
		{ "bad\xff", "event row 2 of 2, field 'source.ip': not valid UTF-8" },
		{ "\xc3", "not valid UTF-8" },	       /* cut sequence */
		{ "\xc0\xaf", "not valid UTF-8" },     /* overlong '/' */
		{ "\xed\xa0\x80", "not valid UTF-8" }, /* surrogate */
	};
	struct mg_buf out = MG_BUF_INIT(4096);

	assert_int_equal(mg_table_csv(&out, two_cols, 2, ctrl, 1, 0, NULL), MG_OK);
	assert_string_equal(mg_buf_str(&out),
			    "\"ip\",\"say \"\"x\"\"\"\r\n\"a\r\nb\",\"\x01\x1b[31m\"\"\n\"\r\n");
	mg_buf_release(&out);
	for (size_t i = 0; i < sizeof(utf8) / sizeof(utf8[0]); i++) {
		const char *cells[] = { "192.0.2.1", "ok", utf8[i].cell, "53" };
		struct mg_err err = { 0 };
		int r;

		print_message("case %zu\n", i);
		r = mg_table_csv(&out, two_cols, 2, cells, 2, 0, &err);
		if (utf8[i].want == NULL) {
			assert_int_equal(r, MG_OK);
		} else {
			assert_int_equal(r, MG_EINPUT);
			if (strstr(err.msg, utf8[i].want) == NULL)
				fail_msg("got \"%s\", want \"%s\"", err.msg, utf8[i].want);
		}
		mg_buf_release(&out);
	}
}

/* The table is appended to what out already holds. */
static void test_csv_appends(void **state)
{
	static const char *const cells[] = { "1" };
	struct mg_buf out = MG_BUF_INIT(4096);

	assert_int_equal(mg_buf_adds(&out, "before\n"), MG_OK);
	assert_int_equal(mg_table_csv(&out, two_cols, 1, cells, 1, 0, NULL), MG_OK);
	assert_string_equal(mg_buf_str(&out), "before\n\"ip\"\r\n\"1\"\r\n");
	mg_buf_release(&out);
}

static void test_fallback_columns(void **state)
{
	static const char want[] = "\"asn\",\"ip\",\"timestamp\",\"src_port\",\"dst_ip\","
				   "\"dst_port\",\"dst_host\",\"proto\"\r\n"
				   "\"64496\",\"192.0.2.1\",\"2026-11-26 10:00:00+00\",\"1234\","
				   "\"198.51.100.7\",\"53\",\"\",\"udp\"\r\n";
	static const char *const fields[] = { "source.asn",	  "source.ip",
					      "time.source",	  "source.port",
					      "destination.ip",	  "destination.port",
					      "destination.fqdn", "protocol.transport" };
	static const char *const cells[] = { "64496", "192.0.2.1",    "2026-11-26 10:00:00+00",
					     "1234",  "198.51.100.7", "53",
					     NULL,    "udp" };
	struct mg_buf out = MG_BUF_INIT(4096);

	assert_int_equal(mg_table_fallback_n_columns, 8);
	for (size_t i = 0; i < 8; i++)
		assert_string_equal(mg_table_fallback_columns[i].field, fields[i]);
	assert_int_equal(mg_table_csv(&out, mg_table_fallback_columns, mg_table_fallback_n_columns,
				      cells, 1, MG_TABLE_SPREADSHEET_SAFE, NULL),
			 MG_OK);
	assert_string_equal(mg_buf_str(&out), want);
	mg_buf_release(&out);
}

static const struct cap_case {
	size_t max;
	size_t n_rows;
	int want_rc;
	const char *want;
} cap_cases[] = {
	/* header "ip","say ""x"""\r\n is 18 bytes, each row "aaa","b"\r\n 11 */
	{ 18 + 3 * 11, 3, MG_OK, NULL },
	{ 18 + 3 * 11 - 1, 3, MG_EINPUT, "table exceeds 50 bytes at event row 3 of 3" },
	{ 18 + 11, 3, MG_EINPUT, "table exceeds 29 bytes at event row 2 of 3" },
	{ 18, 3, MG_EINPUT, "table exceeds 18 bytes at event row 1 of 3" },
	{ 17, 3, MG_EINPUT, "table exceeds 17 bytes at the header row" },
	{ 0, 0, MG_EINPUT, "table exceeds 0 bytes at the header row" },
};

static void test_csv_cap(void **state)
{
	static const char *const cells[] = { "aaa", "b", "aaa", "b", "aaa", "b" };

	for (size_t i = 0; i < sizeof(cap_cases) / sizeof(cap_cases[0]); i++) {
		const struct cap_case *c = &cap_cases[i];
		struct mg_buf out = MG_BUF_INIT(c->max);
		struct mg_err err = { 0 };
		int rc;

		print_message("case %zu: max %zu\n", i, c->max);
		rc = mg_table_csv(&out, two_cols, 2, cells, c->n_rows, 0, &err);
		assert_int_equal(rc, c->want_rc);
		assert_true(out.len <= c->max);
		if (rc != MG_OK) {
			assert_int_equal(err.rc, c->want_rc);
			if (strstr(err.msg, c->want) == NULL)
				fail_msg("case %zu: '%s' does not contain '%s'", i, err.msg,
					 c->want);
		}
		mg_buf_release(&out);
	}
}

/* A 1 MB cell (all quotes, so doubling makes it 2 MB) against a small cap. */
static void test_csv_huge(void **state)
{
	size_t big = 1024 * 1024;
	char *cell = malloc(big + 1);
	const char *cells[2];
	struct mg_buf out = MG_BUF_INIT(4096);
	struct mg_err err = { 0 };

	assert_non_null(cell);
	memset(cell, '"', big);
	cell[big] = '\0';
	cells[0] = "x";
	cells[1] = cell;
	assert_int_equal(mg_table_csv(&out, two_cols, 2, cells, 1, 0, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "table exceeds 4096 bytes at event row 1 of 1"));
	assert_true(out.len <= 4096);

	/* with room for it: every quote doubled */
	mg_buf_release(&out);
	out = MG_BUF_INIT(3 * big);
	assert_int_equal(mg_table_csv(&out, two_cols, 2, cells, 1, 0, &err), MG_OK);
	assert_int_equal(out.len, 18 + 3 + 1 + 1 + 2 * big + 1 + 2);
	mg_buf_release(&out);
	free(cell);
}

/* Fail every allocation in turn: MG_ENOMEM or success, nothing leaks. */
static void test_torture(void **state)
{
	static const char *const cells[] = { "=\"quoted\"", NULL, "plain", "a\"b\"c" };
	static const char want[] = "\"ip\",\"say \"\"x\"\"\"\r\n\"'=\"\"quoted\"\"\",\"\"\r\n"
				   "\"plain\",\"a\"\"b\"\"c\"\r\n";
	bool done = false;

	for (long n = 0; n < 16 && !done; n++) {
		struct mg_buf out = MG_BUF_INIT(4096);
		struct mg_err err = { 0 };
		int r;

		mg_alloc_fail_after(n);
		r = mg_table_csv(&out, two_cols, 2, cells, 2, MG_TABLE_SPREADSHEET_SAFE, &err);
		mg_alloc_fail_after(-1);
		if (r == MG_OK) {
			assert_string_equal(mg_buf_str(&out), want);
			done = true;
		} else {
			assert_int_equal(r, MG_ENOMEM);
			assert_int_equal(err.rc, MG_ENOMEM);
		}
		mg_buf_release(&out);
	}
	assert_true(done);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csv_table),	 cmocka_unit_test(test_csv_appends),
		cmocka_unit_test(test_fallback_columns), cmocka_unit_test(test_csv_cap),
		cmocka_unit_test(test_csv_huge),	 cmocka_unit_test(test_csv_hostile_cells),
		cmocka_unit_test(test_torture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
