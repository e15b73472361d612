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

/* A heap group with n directives 10, 20, ... whose events are events[i]. */
static struct mg_group make_group(const int64_t *events, size_t n)
{
	struct mg_group g = { 0 };

	g.recipient_address = strdup("abuse@as64496.example");
	g.template_name = strdup("t.txt");
	g.notification_format = strdup("fmt");
	g.event_data_format = strdup("csv");
	g.aggregate_literal = strdup("{{source.asn,64496}}");
	g.agg = calloc(1, sizeof(*g.agg));
	g.agg[0].key = strdup("source.asn");
	g.agg[0].value = strdup("64496");
	g.n_agg = 1;
	g.directive_ids = calloc(n + 1, sizeof(int64_t));
	g.directive_events = calloc(n + 1, sizeof(int64_t));
	for (size_t i = 0; i < n; i++) {
		g.directive_ids[i] = 10 * (int64_t)(i + 1);
		g.directive_events[i] = events[i];
	}
	g.n_directives = n;
	g.inserted_at = 111;
	g.interval_sec = 3600;
	g.last_sent = 222;
	g.has_last_sent = true;
	g.has_outbox = true;
	g.retry_at = 333;
	g.attempts = 2;
	assert_int_equal(mg_group_collect_events(&g, NULL), MG_OK);
	return g;
}

static void test_collect_events(void **state)
{
	static const int64_t ev[] = { 7, 3, 7, 1, 3, 9 };
	struct mg_group g = make_group(ev, 6);

	assert_int_equal(g.n_events, 4);
	assert_int_equal(g.event_ids[0], 1);
	assert_int_equal(g.event_ids[1], 3);
	assert_int_equal(g.event_ids[2], 7);
	assert_int_equal(g.event_ids[3], 9);
	mg_group_release(&g);

	g = make_group(ev, 0);
	assert_int_equal(g.n_events, 0);
	mg_group_release(&g);
}

/* Every directive in exactly one part, in id order, with the events of its part. */
static void test_split(void **state)
{
	static const int64_t ev7[] = { 5, 4, 3, 2, 1, 1, 9 };
	static const struct {
		size_t n, max;
		const int64_t *events;
		size_t want_parts;
		size_t want_sizes[4];	     /* directives per part */
		size_t want_n_events[4];     /* distinct events per part */
		int64_t want_first_event[4]; /* smallest event id of each part */
	} cases[] = {
		{ 7, 3, ev7, 3, { 3, 3, 1 }, { 3, 2, 1 }, { 3, 1, 9 } },
		{ 7, 7, ev7, 1, { 7 }, { 6 }, { 1 } },
		{ 7, 100, ev7, 1, { 7 }, { 6 }, { 1 } },
		{ 7, 0, ev7, 1, { 7 }, { 6 }, { 1 } }, /* 0: no cap */
		{ 7, 1, ev7, 7, { 1, 1, 1, 1 }, { 1, 1, 1, 1 }, { 5, 4, 3, 2 } },
		{ 7, 2, ev7, 4, { 2, 2, 2, 1 }, { 2, 2, 1, 1 }, { 4, 2, 1, 9 } },
		{ 6, 3, ev7, 2, { 3, 3 }, { 3, 2 }, { 3, 1 } },
		{ 0, 3, ev7, 1, { 0 }, { 0 }, { 0 } },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_group g = make_group(cases[i].events, cases[i].n);
		struct mg_group *parts = NULL;
		struct mg_err err = { 0 };
		size_t n_parts = 0, seen = 0;

		print_message("case %zu: %zu directives, max %zu\n", i, cases[i].n, cases[i].max);
		assert_int_equal(mg_group_split(&g, cases[i].max, &parts, &n_parts, &err), MG_OK);
		assert_int_equal(n_parts, cases[i].want_parts);
		for (size_t k = 0; k < n_parts; k++) {
			struct mg_group *p = &parts[k];

			assert_int_equal(p->part, k + 1);
			assert_int_equal(p->n_parts, n_parts);
			assert_string_equal(p->recipient_address, g.recipient_address);
			assert_string_equal(p->template_name, g.template_name);
			assert_string_equal(p->notification_format, g.notification_format);
			assert_string_equal(p->event_data_format, g.event_data_format);
			assert_string_equal(p->aggregate_literal, g.aggregate_literal);
			assert_int_equal(p->n_agg, 1);
			assert_string_equal(mg_group_agg(p, "source.asn"), "64496");
			assert_int_equal(p->inserted_at, 111);
			assert_int_equal(p->interval_sec, 3600);
			assert_int_equal(p->last_sent, 222);
			assert_true(p->has_last_sent);
			/* the outbox and deferral state decide when each part is due */
			assert_true(p->has_outbox);
			assert_int_equal(p->retry_at, 333);
			assert_int_equal(p->attempts, 2);
			for (size_t d = 0; d < p->n_directives; d++) {
				assert_int_equal(p->directive_ids[d], g.directive_ids[seen]);
				assert_int_equal(p->directive_events[d], g.directive_events[seen]);
				seen++;
			}
			for (size_t e = 1; e < p->n_events; e++)
				assert_true(p->event_ids[e - 1] < p->event_ids[e]);
			if (k < 4) {
				assert_int_equal(p->n_directives, cases[i].want_sizes[k]);
				assert_int_equal(p->n_events, cases[i].want_n_events[k]);
				if (p->n_events > 0)
					assert_int_equal(p->event_ids[0],
							 cases[i].want_first_event[k]);
			}
		}
		assert_int_equal(seen, g.n_directives); /* nothing dropped */
		/* the group itself is unchanged */
		assert_int_equal(g.part, 0);
		assert_int_equal(g.n_parts, 0);
		for (size_t k = 0; k < n_parts; k++)
			mg_group_release(&parts[k]);
		free(parts);
		mg_group_release(&g);
	}
}

static void test_split_bad(void **state)
{
	static const int64_t ev[] = { 1, 2, 3 };
	struct mg_group g = make_group(ev, 3);
	struct mg_group *parts = NULL;
	struct mg_err err = { 0 };
	size_t n = 0;

	g.directive_ids[2] = g.directive_ids[1]; /* not ascending */
	assert_int_equal(mg_group_split(&g, 1, &parts, &n, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "not ascending"));
	assert_null(parts);
	g.directive_ids[2] = 5;
	assert_int_equal(mg_group_split(&g, 1, &parts, &n, &err), MG_EINPUT);
	free(g.directive_events);
	g.directive_events = NULL; /* as after a claim */
	assert_int_equal(mg_group_split(&g, 1, &parts, &n, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "event of each directive"));
	assert_null(parts);
	mg_group_release(&g);
}

/* Big groups become consecutive parts; small ones are moved as they are. */
static void test_groups_split(void **state)
{
	static const int64_t ev[] = { 1, 2, 3, 4, 5, 6, 7 };
	struct mg_group *in = calloc(3, sizeof(*in)), *out = NULL;
	struct mg_err err = { 0 };
	size_t n = 0;

	in[0] = make_group(ev, 2);
	in[1] = make_group(ev, 7);
	in[2] = make_group(ev, 3);
	assert_int_equal(mg_groups_split(in, 3, 3, &out, &n, &err), MG_OK);
	assert_int_equal(n, 5);
	assert_int_equal(out[0].n_directives, 2);
	assert_int_equal(out[0].n_parts, 0);
	assert_int_equal(out[1].n_directives, 3);
	assert_int_equal(out[1].part, 1);
	assert_int_equal(out[2].part, 2);
	assert_int_equal(out[3].part, 3);
	assert_int_equal(out[3].n_parts, 3);
	assert_int_equal(out[3].n_directives, 1);
	assert_int_equal(out[3].directive_ids[0], 70);
	assert_int_equal(out[4].n_directives, 3); /* at the cap: not split */
	assert_int_equal(out[4].n_parts, 0);
	assert_int_equal(mg_group_span(out, n), 1);
	assert_int_equal(mg_group_span(out + 1, n - 1), 3);
	assert_int_equal(mg_group_span(out + 2, n - 2), 2);
	assert_int_equal(mg_group_span(out + 1, 2), 2);
	assert_int_equal(mg_group_span(out + 4, 1), 1);
	assert_int_equal(mg_group_span(out, 0), 0);
	for (size_t k = 0; k < n; k++)
		mg_group_release(&out[k]);
	free(out);
	free(in);

	assert_int_equal(mg_groups_split(NULL, 0, 3, &out, &n, &err), MG_OK);
	assert_null(out);
	assert_int_equal(n, 0);
}

/* Every allocation failing in turn: MG_ENOMEM and nothing leaked, or success. */
static void test_split_torture(void **state)
{
	static const int64_t ev[] = { 3, 1, 2, 3, 1, 2, 9 };

	for (long n = 0; n < 500; n++) {
		struct mg_group *in = calloc(3, sizeof(*in)), *out = NULL;
		struct mg_err err = { 0 };
		size_t cnt = 0;
		int r;

		in[0] = make_group(ev, 7);
		in[1] = make_group(ev, 1);
		in[2] = make_group(ev, 5);
		mg_alloc_fail_after(n);
		r = mg_groups_split(in, 3, 2, &out, &cnt, &err);
		mg_alloc_fail_after(-1);
		free(in);
		if (r == MG_OK) {
			assert_int_equal(cnt, 4 + 1 + 3);
			for (size_t k = 0; k < cnt; k++)
				mg_group_release(&out[k]);
			free(out);
			return;
		}
		assert_int_equal(r, MG_ENOMEM);
		assert_null(out);
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
		cmocka_unit_test(test_torture),
		cmocka_unit_test(test_collect_events),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_split_bad),
		cmocka_unit_test(test_groups_split),
		cmocka_unit_test(test_split_torture),
		cmocka_unit_test(test_due_outbox_deferred),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
