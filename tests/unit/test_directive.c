/* tests/unit/test_directive.c - PostgreSQL array literals and the interval rule */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "directive.h"
#include "mg-alloc.h"

static void test_pairs(void **state)
{
	static const struct {
		const char *lit;
		size_t n;
		const char *k0, *v0, *k1, *v1;
	} cases[] = {
		{ "{}", 0, NULL, NULL, NULL, NULL },
		{ "{{source.asn,64496}}", 1, "source.asn", "64496", NULL, NULL },
		{ "{{source.asn,64496},{time.observation,\"2026-11-26 06:00:00+00\"}}", 2,
		  "source.asn", "64496", "time.observation", "2026-11-26 06:00:00+00" },
		{ "{{\"a,b\",\"x \\\"q\\\" \\\\ y\"}}", 1, "a,b", "x \"q\" \\ y", NULL, NULL },
		{ "{{k,\"\"}}", 1, "k", "", NULL, NULL },
		{ "{{k,\"NULL\"}}", 1, "k", "NULL", NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_kv *kv = NULL;
		size_t n = 99;
		struct mg_err err = { 0 };

		print_message("case %zu: %s\n", i, cases[i].lit);
		assert_int_equal(mg_pgarray_parse_pairs(cases[i].lit, &kv, &n, &err), MG_OK);
		assert_int_equal(n, cases[i].n);
		if (n > 0) {
			assert_string_equal(kv[0].key, cases[i].k0);
			assert_string_equal(kv[0].value, cases[i].v0);
		}
		if (n > 1) {
			assert_string_equal(kv[1].key, cases[i].k1);
			assert_string_equal(kv[1].value, cases[i].v1);
		}
		mg_kv_free(kv, n);
	}
}

static void test_pairs_bad(void **state)
{
	static const char *const cases[] = {
		"",	      "{",	   "{{a}}",	"{{a,b,c}}", "{a,b}",
		"{{a,NULL}}", "{{a,b}} x", "{{\"a,b}}", "{{a,b},}",  "{{a,b}{c,d}}",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_kv *kv = NULL;
		size_t n = 0;
		struct mg_err err = { 0 };

		print_message("case %zu: %s\n", i, cases[i]);
		assert_int_equal(mg_pgarray_parse_pairs(cases[i], &kv, &n, &err), MG_EINPUT);
		assert_non_null(strstr(err.msg, "aggregate identifier"));
		assert_null(kv);
	}
}

static void test_ids(void **state)
{
	int64_t *ids = NULL;
	size_t n = 0;
	struct mg_err err = { 0 };

	assert_int_equal(mg_pgarray_parse_ids("{1,22,9223372036854775807}", &ids, &n, &err), MG_OK);
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 22);
	assert_int_equal(ids[2], INT64_MAX);
	free(ids);
	ids = NULL;
	assert_int_equal(mg_pgarray_parse_ids("{}", &ids, &n, &err), MG_OK);
	assert_int_equal(n, 0);
	free(ids);
	ids = NULL;
	assert_int_equal(mg_pgarray_parse_ids("{1,x}", &ids, &n, &err), MG_EINPUT);
	assert_int_equal(mg_pgarray_parse_ids("{1,2", &ids, &n, &err), MG_EINPUT);
	assert_int_equal(mg_pgarray_parse_ids("{1}2", &ids, &n, &err), MG_EINPUT);
	assert_null(ids);
}

/* The original sends when last_sent + interval < now (strictly). */
static void test_due(void **state)
{
	struct mg_group g = { 0 };
	const int64_t s = 1000000;

	assert_true(mg_group_is_due(&g, 0)); /* never sent */
	g.has_last_sent = true;
	g.last_sent = 1000 * s;
	g.interval_sec = 3600;
	assert_false(mg_group_is_due(&g, 1000 * s + 3600 * s));
	assert_true(mg_group_is_due(&g, 1000 * s + 3600 * s + 1));
	assert_int_equal(mg_group_due_at(&g), 1000 * s + 3600 * s + 1);
	g.interval_sec = 0;
	assert_true(mg_group_is_due(&g, 1000 * s + 1));
	g.interval_sec = INT64_MAX / 2; /* no overflow */
	assert_false(mg_group_is_due(&g, INT64_MAX - 1));
}

/* A mail in the outbox goes out at once; a deferral holds until retry_at. */
static void test_due_outbox_deferred(void **state)
{
	const int64_t s = 1000000;
	static const struct {
		bool has_last_sent, has_outbox;
		int64_t last_sent, interval_sec, retry_at, want;
	} cases[] = {
		/* sent at 1000 s, interval 1 h: due at 4600 s + 1 tick */
		{ true, false, 1000 * s, 3600, 0, 4600 * s + 1 },
		/* the same with its mail in the outbox: due now */
		{ true, true, 1000 * s, 3600, 0, INT64_MIN },
		/* outbox, deferred until 2000 s: the deferral wins */
		{ true, true, 1000 * s, 3600, 2000 * s, 2000 * s },
		/* no outbox, deferral before the interval: the interval wins */
		{ true, false, 1000 * s, 3600, 2000 * s, 4600 * s + 1 },
		/* no outbox, deferral after the interval: the deferral wins */
		{ true, false, 1000 * s, 3600, 9000 * s, 9000 * s },
		/* never sent, deferred */
		{ false, false, 0, 3600, 50 * s, 50 * s },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_group g = { 0 };

		g.has_last_sent = cases[i].has_last_sent;
		g.has_outbox = cases[i].has_outbox;
		g.last_sent = cases[i].last_sent;
		g.interval_sec = cases[i].interval_sec;
		g.retry_at = cases[i].retry_at;
		if (mg_group_due_at(&g) != cases[i].want)
			fail_msg("case %zu: got %lld want %lld", i, (long long)mg_group_due_at(&g),
				 (long long)cases[i].want);
	}
}

static void test_torture(void **state)
{
	static const char lit[] = "{{source.asn,64496},{time.observation,\"2026-11-26\"},{c,d}}";

	for (long n = 0; n < 100; n++) {
		struct mg_kv *kv = NULL;
		size_t cnt = 0;
		struct mg_err err = { 0 };
		int r;

		mg_alloc_fail_after(n);
		r = mg_pgarray_parse_pairs(lit, &kv, &cnt, &err);
		mg_alloc_fail_after(-1);
		if (r == MG_OK) {
			assert_int_equal(cnt, 3);
			mg_kv_free(kv, cnt);
			return;
		}
		assert_int_equal(r, MG_ENOMEM);
	}
	fail_msg("never succeeded");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pairs),
		cmocka_unit_test(test_pairs_bad),
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_due),
		cmocka_unit_test(test_due_outbox_deferred),
		cmocka_unit_test(test_torture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
