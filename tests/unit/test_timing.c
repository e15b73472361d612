/* tests/unit/test_timing.c - debounce deadline and back-off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "timing.h"

static void test_debounce(void **state)
{
	static const struct {
		uint64_t first, now, quiet, max, want;
	} cases[] = {
		{ 0, 0, 2000, 30000, 2000 },	  /* a single notification */
		{ 0, 1000, 2000, 30000, 3000 },	  /* another one moves the deadline */
		{ 0, 29000, 2000, 30000, 30000 }, /* but never past first + max */
		{ 100, 100, 0, 30000, 100 },	  /* debounce 0: at once */
		{ 5000, 9000, 2000, 3000, 8000 }, /* cap already passed: at the cap */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("case %zu\n", i);
		assert_int_equal(mg_debounce_deadline(cases[i].first, cases[i].now, cases[i].quiet,
						      cases[i].max),
				 cases[i].want);
	}
}

static void test_backoff(void **state)
{
	static const struct {
		unsigned attempt;
		uint64_t min, max, want;
	} cases[] = {
		{ 1, 5, 600, 5 },   { 2, 5, 600, 10 },	   { 3, 5, 600, 20 }, { 7, 5, 600, 320 },
		{ 8, 5, 600, 600 }, { 1000, 5, 600, 600 }, { 0, 5, 600, 5 },  { 3, 7, 7, 7 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("case %zu\n", i);
		assert_int_equal(mg_backoff_sec(cases[i].attempt, cases[i].min, cases[i].max),
				 cases[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_debounce),
		cmocka_unit_test(test_backoff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
