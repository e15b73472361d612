/* tests/unit/test_ticket.c - ticket numbers YYYYMMDD-NNNNNNNN */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "mg-alloc.h"
#include "ticket.h"

static const struct format_case {
	const char *day;
	int64_t seq;
	int want_rc;
	const char *want; /* ticket, or a substring of err.msg */
} format_cases[] = {
	{ "20261126", 10000001, MG_OK, "20261126-10000001" },
	{ "20261126", 5, MG_OK, "20261126-00000005" },
	{ "20261126", 0, MG_OK, "20261126-00000000" },
	{ "20261126", 99999999, MG_OK, "20261126-99999999" },
	/* only the last 8 digits are kept, as the original does */
	{ "20261126", 100000000, MG_OK, "20261126-00000000" },
	{ "20261126", 123456789, MG_OK, "20261126-23456789" },
	{ "20261126", INT64_MAX, MG_OK, "20261126-54775807" },
	{ "19700101", 1, MG_OK, "19700101-00000001" },
	{ "20261126", -1, MG_EINPUT, "negative sequence number -1" },
	{ "20261126", INT64_MIN, MG_EINPUT, "negative sequence number" },
	{ "2026112", 1, MG_EINPUT, "day '2026112' is not 8 digits" },
	{ "202611260", 1, MG_EINPUT, "is not 8 digits" },
	{ "2026-11-", 1, MG_EINPUT, "is not 8 digits" },
	{ "2026112a", 1, MG_EINPUT, "is not 8 digits" },
	{ " 2026112", 1, MG_EINPUT, "is not 8 digits" },
	{ "", 1, MG_EINPUT, "day '' is not 8 digits" },
	{ NULL, 1, MG_EINPUT, "is not 8 digits" },
};

static void test_format_table(void **state)
{
	for (size_t i = 0; i < sizeof(format_cases) / sizeof(format_cases[0]); i++) {
		const struct format_case *c = &format_cases[i];
		char out[MG_TICKET_LEN + 2];
		struct mg_err err = { 0 };
		int rc;

		print_message("case %zu: '%s' %lld\n", i, c->day ? c->day : "(null)",
			      (long long)c->seq);
		memset(out, '#', sizeof(out));
		rc = mg_ticket_format(out, c->day, c->seq, &err);
		assert_int_equal(rc, c->want_rc);
		if (rc == MG_OK) {
			assert_string_equal(out, c->want);
			assert_true(mg_ticket_valid(out));
		} else {
			assert_int_equal(err.rc, c->want_rc);
			assert_int_equal(out[0], '#'); /* untouched */
			if (strstr(err.msg, c->want) == NULL)
				fail_msg("case %zu: '%s' does not contain '%s'", i, err.msg,
					 c->want);
		}
		/* never a byte past MG_TICKET_LEN + 1 */
		assert_int_equal(out[MG_TICKET_LEN + 1], '#');
	}
	assert_int_equal(mg_ticket_format((char[MG_TICKET_LEN + 1]){ 0 }, "x", 1, NULL), MG_EINPUT);
}

static const struct valid_case {
	const char *s;
	bool want;
} valid_cases[] = {
	{ "20261126-10000001", true },
	{ "00000000-00000000", true },
	{ "99999999-99999999", true },
	{ "20261126-1000000", false },
	{ "20261126-100000011", false },
	{ "2026112-610000001", false },
	{ "20261126_10000001", false },
	{ "20261126-1000000a", false },
	{ "2026112a-10000001", false },
	{ " 20261126-10000001", false },
	{ "20261126-10000001\n", false },
	{ "20261126--0000001", false },
	{ "20261126-+0000001", false },
	{ "", false },
	{ NULL, false },
};

static void test_valid_table(void **state)
{
	for (size_t i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
		const struct valid_case *c = &valid_cases[i];

		print_message("case %zu: '%s'\n", i, c->s ? c->s : "(null)");
		assert_int_equal(mg_ticket_valid(c->s), c->want);
	}
}

/* Formatting allocates nothing, so failing allocations changes nothing. */
static void test_torture(void **state)
{
	for (long n = 0; n < 4; n++) {
		char out[MG_TICKET_LEN + 1];
		struct mg_err err = { 0 };
		int r;

		mg_alloc_fail_after(n);
		r = mg_ticket_format(out, "20261126", 42, &err);
		mg_alloc_fail_after(-1);
		assert_int_equal(r, MG_OK);
		assert_string_equal(out, "20261126-00000042");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_table),
		cmocka_unit_test(test_valid_table),
		cmocka_unit_test(test_torture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
