/* tests/unit/test_buf.c - the capped buffer (mg-buf.c) and the helpers in util.c */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "mg-buf.h"
#include "mg-err.h"
#include "util.h"

#define MAX_STEPS 4

/* A run of appends against one cap: each step's result, then the contents. */
static const struct add_case {
	size_t max;
	const char *adds[MAX_STEPS];
	int want_rc[MAX_STEPS];
	const char *want;
} add_cases[] = {
	{ 10, { "abc", "def" }, { MG_OK, MG_OK }, "abcdef" },
	{ 6, { "abc", "def", "" }, { MG_OK, MG_OK, MG_OK }, "abcdef" },
	/* a failing append leaves the buffer as it was */
	{ 5, { "abc", "def", "de" }, { MG_OK, MG_EINPUT, MG_OK }, "abcde" },
	{ 5, { "abcdef" }, { MG_EINPUT }, "" },
	{ 0, { "", "x", "" }, { MG_OK, MG_EINPUT, MG_OK }, "" },
	{ 1, { "x", "y" }, { MG_OK, MG_EINPUT }, "x" },
	{ SIZE_MAX, { "abc", "def" }, { MG_OK, MG_OK }, "abcdef" },
};

static void test_add_table(void **state)
{
	for (size_t i = 0; i < sizeof(add_cases) / sizeof(add_cases[0]); i++) {
		const struct add_case *c = &add_cases[i];
		struct mg_buf b = MG_BUF_INIT(c->max);

		print_message("case %zu: max %zu\n", i, c->max);
		for (size_t k = 0; k < MAX_STEPS && c->adds[k] != NULL; k++)
			assert_int_equal(mg_buf_adds(&b, c->adds[k]), c->want_rc[k]);
		assert_string_equal(mg_buf_str(&b), c->want);
		assert_int_equal(b.len, strlen(c->want));
		assert_true(b.len <= b.max);
		mg_buf_release(&b);
	}
}

static void test_add_variants(void **state)
{
	struct mg_buf b = MG_BUF_INIT(8);

	/* nothing added yet: no memory, "" as a string */
	assert_null(b.data);
	assert_string_equal(mg_buf_str(&b), "");
	assert_int_equal(mg_buf_add(&b, "a\0b", 3), MG_OK); /* binary-safe */
	assert_int_equal(b.len, 3);
	assert_memory_equal(b.data, "a\0b", 4);
	assert_int_equal(mg_buf_addc(&b, 'c'), MG_OK);
	assert_int_equal(mg_buf_addf(&b, "%d%s", 42, "!"), MG_OK);
	assert_int_equal(b.len, 7);
	assert_int_equal(mg_buf_addf(&b, "%s", "xy"), MG_EINPUT);
	assert_int_equal(mg_buf_addc(&b, 'z'), MG_OK);
	assert_int_equal(mg_buf_addc(&b, 'z'), MG_EINPUT);
	assert_int_equal(b.len, 8);
	assert_memory_equal(b.data, "a\0bc42!z", 9);
	mg_buf_release(&b);
}

/* Growth from nothing, one byte at a time, then past the 256-byte addf fast path. */
static void test_growth(void **state)
{
	struct mg_buf b = MG_BUF_INIT(100000);
	char *big = malloc(5001);

	assert_non_null(big);
	for (size_t i = 0; i < 5000; i++) {
		assert_int_equal(mg_buf_addc(&b, (char)('a' + i % 26)), MG_OK);
		assert_true(b.alloc > b.len);
		assert_int_equal(b.data[b.len], '\0');
	}
	for (size_t i = 0; i < 5000; i++)
		assert_int_equal(b.data[i], 'a' + i % 26);

	memset(big, 'q', 5000);
	big[5000] = '\0';
	mg_buf_reset(&b);
	assert_int_equal(mg_buf_addf(&b, "<%s>", big), MG_OK);
	assert_int_equal(b.len, 5002);
	assert_int_equal(b.data[0], '<');
	assert_int_equal(b.data[5001], '>');

	/* a long addf that does not fit leaves the buffer unchanged */
	b.max = 6000;
	assert_int_equal(mg_buf_addf(&b, "%s", big), MG_EINPUT);
	assert_int_equal(b.len, 5002);
	assert_int_equal(b.data[5002], '\0');
	mg_buf_release(&b);
	free(big);
}

/* reset keeps the memory and the cap; release frees, and the buffer is usable again. */
static void test_reset_release(void **state)
{
	struct mg_buf b = MG_BUF_INIT(16);
	char *data;
	size_t alloc;

	mg_buf_reset(&b); /* never used */
	assert_null(b.data);
	assert_int_equal(mg_buf_adds(&b, "hello"), MG_OK);
	data = b.data;
	alloc = b.alloc;
	mg_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_ptr_equal(b.data, data);
	assert_int_equal(b.alloc, alloc);
	assert_int_equal(b.max, 16);
	assert_string_equal(mg_buf_str(&b), "");
	assert_int_equal(mg_buf_adds(&b, "0123456789abcdef"), MG_OK);
	assert_int_equal(mg_buf_addc(&b, 'x'), MG_EINPUT);

	mg_buf_release(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.alloc, 0);
	assert_int_equal(b.max, 16);
	assert_int_equal(mg_buf_adds(&b, "again"), MG_OK);
	assert_string_equal(mg_buf_str(&b), "again");
	mg_buf_release(&b);
	mg_buf_release(&b); /* twice */
	mg_buf_release(NULL);
}

static void test_detach(void **state)
{
	struct mg_buf b = MG_BUF_INIT(32);
	size_t len = 99;
	char *p;

	/* nothing added: an allocated "" */
	p = mg_buf_detach(&b, &len);
	assert_non_null(p);
	assert_string_equal(p, "");
	assert_int_equal(len, 0);
	free(p);

	assert_int_equal(mg_buf_adds(&b, "owned"), MG_OK);
	p = mg_buf_detach(&b, &len);
	assert_string_equal(p, "owned");
	assert_int_equal(len, 5);
	/* the buffer starts over, with its cap */
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.max, 32);
	assert_string_equal(mg_buf_str(&b), "");
	assert_int_equal(mg_buf_adds(&b, "next"), MG_OK);
	free(p);
	p = mg_buf_detach(&b, NULL);
	assert_string_equal(p, "next");
	free(p);
	mg_buf_release(&b);
}

/* 1 MB against a 4 KB cap, in one piece and in a formatted one. */
static void test_huge(void **state)
{
	size_t big = 1024 * 1024;
	char *text = malloc(big + 1);
	struct mg_buf b = MG_BUF_INIT(4096);

	assert_non_null(text);
	memset(text, 'x', big);
	text[big] = '\0';
	assert_int_equal(mg_buf_add(&b, text, big), MG_EINPUT);
	assert_int_equal(mg_buf_addf(&b, "%s", text), MG_EINPUT);
	assert_int_equal(mg_buf_add(&b, text, 4096), MG_OK);
	assert_int_equal(mg_buf_add(&b, text, 1), MG_EINPUT);
	assert_int_equal(b.len, 4096);
	/* and a length that would wrap around */
	assert_int_equal(mg_buf_add(&b, text, SIZE_MAX), MG_EINPUT);
	mg_buf_release(&b);
	free(text);
}

static const struct int_case {
	const char *s;
	int64_t min, max;
	bool want_ok;
	int64_t want;
} int_cases[] = {
	{ "0", INT64_MIN, INT64_MAX, true, 0 },
	{ "-0", INT64_MIN, INT64_MAX, true, 0 },
	{ "+5", INT64_MIN, INT64_MAX, true, 5 },
	{ "42", INT64_MIN, INT64_MAX, true, 42 },
	{ "-42", INT64_MIN, INT64_MAX, true, -42 },
	{ "007", INT64_MIN, INT64_MAX, true, 7 },
	{ "9223372036854775807", INT64_MIN, INT64_MAX, true, INT64_MAX },
	{ "-9223372036854775808", INT64_MIN, INT64_MAX, true, INT64_MIN },
	{ "9223372036854775808", INT64_MIN, INT64_MAX, false, 0 },
	{ "-9223372036854775809", INT64_MIN, INT64_MAX, false, 0 },
	{ "18446744073709551616", INT64_MIN, INT64_MAX, false, 0 },
	{ "99999999999999999999999", INT64_MIN, INT64_MAX, false, 0 },
	{ "00000000000000000000000000001", INT64_MIN, INT64_MAX, true, 1 },
	{ "", INT64_MIN, INT64_MAX, false, 0 },
	{ "+", INT64_MIN, INT64_MAX, false, 0 },
	{ "-", INT64_MIN, INT64_MAX, false, 0 },
	{ "--1", INT64_MIN, INT64_MAX, false, 0 },
	{ "+-1", INT64_MIN, INT64_MAX, false, 0 },
	{ " 1", INT64_MIN, INT64_MAX, false, 0 },
	{ "1 ", INT64_MIN, INT64_MAX, false, 0 },
	{ "1\n", INT64_MIN, INT64_MAX, false, 0 },
	{ "0x10", INT64_MIN, INT64_MAX, false, 0 },
	{ "1e3", INT64_MIN, INT64_MAX, false, 0 },
	{ "1.0", INT64_MIN, INT64_MAX, false, 0 },
	{ "1_000", INT64_MIN, INT64_MAX, false, 0 },
	{ "\xd9\xa1", INT64_MIN, INT64_MAX, false, 0 }, /* ARABIC-INDIC DIGIT ONE */
	/* ranges */
	{ "1", 1, 65535, true, 1 },
	{ "65535", 1, 65535, true, 65535 },
	{ "0", 1, 65535, false, 0 },
	{ "65536", 1, 65535, false, 0 },
	{ "-1", 0, INT64_MAX, false, 0 },
	{ "-5", -10, -1, true, -5 },
	{ "0", -10, -1, false, 0 },
	{ "-9223372036854775808", INT64_MIN + 1, 0, false, 0 },
	{ "9223372036854775807", 0, INT64_MAX - 1, false, 0 },
	{ "3", 5, 1, false, 0 }, /* empty range */
};

static void test_parse_int64(void **state)
{
	for (size_t i = 0; i < sizeof(int_cases) / sizeof(int_cases[0]); i++) {
		const struct int_case *c = &int_cases[i];
		int64_t v = 12345;

		print_message("case %zu: '%s'\n", i, c->s);
		assert_int_equal(mg_parse_int64(c->s, c->min, c->max, &v), c->want_ok);
		/* set only on success */
		assert_int_equal(v, c->want_ok ? c->want : 12345);
	}
	assert_false(mg_parse_int64(NULL, INT64_MIN, INT64_MAX, &(int64_t){ 0 }));
}

static const int64_t some_ids[] = { 17, 18, -3, INT64_MAX, INT64_MIN };

static const struct ids_case {
	size_t n;
	size_t max_ids;
	const char *want_join;
	const char *want_array;
} ids_cases[] = {
	{ 0, 10, "", "{}" },
	{ 0, 0, "", "{}" },
	{ 1, 10, "17", "{17}" },
	{ 3, 10, "17,18,-3", "{17,18,-3}" },
	{ 3, 3, "17,18,-3", "{17,18,-3}" },
	{ 3, 2, "17,18,...(+1 more)", "{17,18,-3}" },
	{ 5, 1, "17,...(+4 more)", "{17,18,-3,9223372036854775807,-9223372036854775808}" },
	{ 5, 0, "...(+5 more)", "{17,18,-3,9223372036854775807,-9223372036854775808}" },
	{ 5, SIZE_MAX, "17,18,-3,9223372036854775807,-9223372036854775808",
	  "{17,18,-3,9223372036854775807,-9223372036854775808}" },
};

static void test_ids(void **state)
{
	for (size_t i = 0; i < sizeof(ids_cases) / sizeof(ids_cases[0]); i++) {
		const struct ids_case *c = &ids_cases[i];
		struct mg_buf join = MG_BUF_INIT(4096), array = MG_BUF_INIT(4096);

		print_message("case %zu: %zu ids, at most %zu\n", i, c->n, c->max_ids);
		assert_int_equal(mg_ids_join(&join, some_ids, c->n, c->max_ids), MG_OK);
		assert_string_equal(mg_buf_str(&join), c->want_join);
		assert_int_equal(mg_ids_pgarray(&array, some_ids, c->n), MG_OK);
		assert_string_equal(mg_buf_str(&array), c->want_array);
		mg_buf_release(&join);
		mg_buf_release(&array);
	}
}

/* Many ids against a small cap: MG_EINPUT, the buffer within its cap. */
static void test_ids_cap(void **state)
{
	size_t n = 1024 * 1024 / 8;
	int64_t *ids = calloc(n, sizeof(*ids));
	struct mg_buf b = MG_BUF_INIT(64);

	assert_non_null(ids);
	for (size_t i = 0; i < n; i++)
		ids[i] = (int64_t)i * 1000003;
	assert_int_equal(mg_ids_pgarray(&b, ids, n), MG_EINPUT);
	assert_true(b.len <= 64);
	mg_buf_reset(&b);
	assert_int_equal(mg_ids_join(&b, ids, n, SIZE_MAX), MG_EINPUT);
	assert_true(b.len <= 64);
	/* bounded by max_ids, the same list fits */
	mg_buf_reset(&b);
	assert_int_equal(mg_ids_join(&b, ids, n, 3), MG_OK);
	assert_string_equal(mg_buf_str(&b), "0,1000003,2000006,...(+131069 more)");
	mg_buf_release(&b);
	free(ids);
}

/* Fail every allocation in turn: MG_ENOMEM or success, nothing leaks. */
static void test_torture(void **state)
{
	char big[600];
	bool done = false;

	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (long n = 0; n < 32 && !done; n++) {
		struct mg_buf b = MG_BUF_INIT(8192);
		char *p = NULL;
		size_t len = 0;
		int r;

		mg_alloc_fail_after(n);
		r = mg_ids_pgarray(&b, some_ids, 5);
		for (int k = 0; r == MG_OK && k < 100; k++)
			r = mg_buf_adds(&b, "grow:"); /* past the first allocation */
		if (r == MG_OK)
			r = mg_buf_addf(&b, "[%s]", big); /* the addf heap path */
		if (r == MG_OK)
			r = mg_ids_join(&b, some_ids, 5, 2);
		if (r == MG_OK) {
			p = mg_buf_detach(&b, &len);
			if (p == NULL)
				r = MG_ENOMEM;
		}
		mg_alloc_fail_after(-1);
		if (r == MG_OK) {
			assert_int_equal(len, 51 + 500 + 601 + 18);
			assert_memory_equal(p, "{17,18,-3,", 10);
			assert_string_equal(p + len - 18, "17,18,...(+3 more)");
			done = true;
		} else {
			assert_int_equal(r, MG_ENOMEM);
		}
		free(p);
		mg_buf_release(&b);
	}
	assert_true(done);

	/* detach of an empty buffer allocates too */
	{
		struct mg_buf b = MG_BUF_INIT(8);

		mg_alloc_fail_after(0);
		assert_null(mg_buf_detach(&b, NULL));
		mg_alloc_fail_after(-1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_table),   cmocka_unit_test(test_add_variants),
		cmocka_unit_test(test_growth),	    cmocka_unit_test(test_reset_release),
		cmocka_unit_test(test_detach),	    cmocka_unit_test(test_huge),
		cmocka_unit_test(test_parse_int64), cmocka_unit_test(test_ids),
		cmocka_unit_test(test_ids_cap),	    cmocka_unit_test(test_torture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
