/* tests/unit/test_plugin_api.c - format plugins: the answer builder and its decisions */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "plugin-api.h"

#define SEC 1000000LL
#define T0  (1795672800LL * SEC) /* 2026-11-26 06:00:00 UTC */
#define WHO "demo.so: demo"

static struct mg_kv agg_kv[] = {
	{ (char *)"source.asn", (char *)"64496" },
	{ (char *)"time.observation", (char *)"2026-11-26 06:00:00+00" },
};

static struct mg_group group(const char *edf)
{
	struct mg_group g = { 0 };

	g.recipient_address = (char *)"abuse@example.net";
	g.template_name = (char *)"dir-template.txt";
	g.notification_format = (char *)"plugin-demo";
	g.event_data_format = (char *)edf;
	g.agg = agg_kv;
	g.n_agg = 2;
	g.n_directives = 3;
	g.inserted_at = T0 - 10 * SEC;
	g.interval_sec = 3600;
	return g;
}

/* Decide with a fresh answer built by build(); returns the rc, fills *d, *mine, err. */
typedef int build_fn(struct mg_plugin_answer *a);

static int decide(build_fn *build, const struct mg_group *g, struct mg_rule_decision *d, bool *mine,
		  struct mg_err *err)
{
	struct mg_plugin_answer *a = mg_plugin_answer_new(WHO, T0);

	assert_non_null(a);
	return mg_plugin_answer_decide(a, build(a), g, T0, NULL, d, mine, err);
}

/* --------------------------------------------------- the view of a group */

static void test_group_view(void **state)
{
	struct mg_group g = group("x");
	struct mg_plugin_group v;
	struct mg_plugin_kv *kv = NULL;

	assert_int_equal(mg_plugin_group_view(&g, T0, &v, &kv, NULL), MG_OK);
	assert_string_equal(v.recipient_address, "abuse@example.net");
	assert_string_equal(v.template_name, "dir-template.txt");
	assert_string_equal(v.notification_format, "plugin-demo");
	assert_string_equal(v.event_data_format, "x");
	assert_int_equal(v.n_aggregate, 2);
	assert_string_equal(mg_plugin_group_get(&v, "source.asn"), "64496");
	assert_null(mg_plugin_group_get(&v, "cidr"));
	assert_int_equal(v.n_directives, 3);
	assert_int_equal(v.inserted_at, T0 - 10 * SEC);
	assert_false(v.has_last_sent);
	assert_int_equal(v.last_sent, 0);
	assert_int_equal(v.interval_sec, 3600);
	assert_int_equal(v.now, T0);
	free(kv);
}

/* ---------------------------------------------- builder validation table */

static int b_bad_field(struct mg_plugin_answer *a)
{
	mg_plugin_add_column(a, "Source.IP", "ip");
	mg_plugin_add_column(a, "source.ip", "ip"); /* fine, but the first error stays */
	return MG_PLUGIN_SEND;
}
static int b_empty_extra(struct mg_plugin_answer *a)
{
	return mg_plugin_add_column(a, "extra.", "x") == -1 ? MG_PLUGIN_SEND : 99;
}
static int b_bad_title(struct mg_plugin_answer *a)
{
	mg_plugin_add_column(a, "source.ip", "a\nb");
	return MG_PLUGIN_SEND;
}
static int b_empty_title(struct mg_plugin_answer *a)
{
	mg_plugin_add_column(a, "source.ip", "");
	return MG_PLUGIN_SEND;
}
static int b_bad_template(struct mg_plugin_answer *a)
{
	mg_plugin_set_template(a, "../etc/passwd");
	return MG_PLUGIN_SEND;
}
static int b_reserved_subst(struct mg_plugin_answer *a)
{
	mg_plugin_set_subst(a, "ticket_number", "1", NULL);
	return MG_PLUGIN_SEND;
}
static int b_bad_subst_name(struct mg_plugin_answer *a)
{
	mg_plugin_set_subst(a, "1abc", "1", NULL);
	return MG_PLUGIN_SEND;
}
static int b_null_value(struct mg_plugin_answer *a)
{
	mg_plugin_set_subst(a, "x", NULL, "y");
	return MG_PLUGIN_SEND;
}
static int b_bad_placement(struct mg_plugin_answer *a)
{
	mg_plugin_set_placement(a, (enum mg_plugin_placement)7);
	return MG_PLUGIN_SEND;
}
static int b_postpone_past(struct mg_plugin_answer *a)
{
	return mg_plugin_postpone(a, T0, "too late");
}
static int b_postpone_no_reason(struct mg_plugin_answer *a)
{
	return mg_plugin_postpone(a, T0 + SEC, "");
}
static int b_postpone_without_call(struct mg_plugin_answer *a)
{
	return MG_PLUGIN_POSTPONE;
}
static int b_fail(struct mg_plugin_answer *a)
{
	return mg_plugin_fail(a, "no contact for %s", "AS 64496");
}
static int b_fail_silently(struct mg_plugin_answer *a)
{
	return MG_PLUGIN_FAIL;
}
static int b_unknown_verdict(struct mg_plugin_answer *a)
{
	return 42;
}
static int b_broken_but_not_mine(struct mg_plugin_answer *a)
{
	mg_plugin_add_column(a, "BAD", "x");
	return MG_PLUGIN_NOT_MINE;
}
static int b_too_many_columns(struct mg_plugin_answer *a)
{
	for (int i = 0; i < 201; i++)
		if (mg_plugin_add_column(a, "source.ip", "ip") < 0)
			return i == 200 ? MG_PLUGIN_SEND : 99;
	return 99;
}

static const struct bcase {
	const char *what;
	build_fn *build;
	int want_rc;
	bool want_mine;
	const char *want_msg; /* in err.msg */
} bcases[] = {
	{ "bad field", b_bad_field, MG_EINPUT, true,
	  "plugin " WHO ": mg_plugin_add_column: 'Source.IP'" },
	{ "empty extra key", b_empty_extra, MG_EINPUT, true, "'extra.' is not an IntelMQ field" },
	{ "control char in title", b_bad_title, MG_EINPUT, true, "without control characters" },
	{ "empty title", b_empty_title, MG_EINPUT, true, "the title of 'source.ip' must be" },
	{ "template name", b_bad_template, MG_EINPUT, true, "mg_plugin_set_template: " },
	{ "reserved name", b_reserved_subst, MG_EINPUT, true, "'ticket_number' is not a name" },
	{ "bad name", b_bad_subst_name, MG_EINPUT, true, "'1abc' is not a name" },
	{ "no value", b_null_value, MG_EINPUT, true, "no value for 'x'" },
	{ "placement", b_bad_placement, MG_EINPUT, true, "unknown placement 7" },
	{ "postpone into the past", b_postpone_past, MG_EINPUT, true, "is not after now" },
	{ "postpone without reason", b_postpone_no_reason, MG_EINPUT, true, "the reason must be" },
	{ "POSTPONE without the call", b_postpone_without_call, MG_EINPUT, true,
	  "without mg_plugin_postpone()" },
	{ "fail", b_fail, MG_EINPUT, true, "plugin " WHO ": no contact for AS 64496" },
	{ "fail silently", b_fail_silently, MG_EINPUT, true, "failed without saying why" },
	{ "unknown verdict", b_unknown_verdict, MG_EINPUT, true, "unknown verdict 42" },
	{ "broken, not mine", b_broken_but_not_mine, MG_OK, false, NULL },
	{ "201 columns", b_too_many_columns, MG_EINPUT, true, "more than 200 columns" },
};

static void test_builder_errors(void **state)
{
	struct mg_group g = group("x");

	for (size_t i = 0; i < sizeof(bcases) / sizeof(bcases[0]); i++) {
		const struct bcase *c = &bcases[i];
		struct mg_rule_decision d = { .verdict = MG_RULE_NONE };
		struct mg_err err = { 0 };
		bool mine = !c->want_mine;
		int rc;

		print_message("case %zu: %s\n", i, c->what);
		rc = decide(c->build, &g, &d, &mine, &err);
		assert_int_equal(rc, c->want_rc);
		assert_int_equal(mine, c->want_mine);
		assert_int_equal(d.verdict, MG_RULE_NONE); /* untouched */
		if (c->want_msg != NULL) {
			if (strstr(err.msg, c->want_msg) == NULL)
				fail_msg("got '%s', want '%s'", err.msg, c->want_msg);
		}
	}
}

/* ------------------------------------------------------------ decisions */

static int b_send_full(struct mg_plugin_answer *a)
{
	assert_int_equal(mg_plugin_set_template(a, "first.txt"), 0);
	assert_int_equal(mg_plugin_set_template_text(a, "Subject ${demo}\n\n${events_as_csv}"), 0);
	assert_int_equal(mg_plugin_add_column(a, "source.ip", "address"), 0);
	assert_int_equal(mg_plugin_add_column(a, "extra.system_desc", "system"), 0);
	assert_int_equal(mg_plugin_set_placement(a, MG_PLUGIN_ATTACHMENT), 0);
	assert_int_equal(mg_plugin_set_subst(a, "demo", "old", NULL), 0);
	assert_int_equal(mg_plugin_set_subst(a, "demo", "in the text", "attached"), 0);
	assert_int_equal(mg_plugin_set_subst(a, "same", "both", NULL), 0);
	return MG_PLUGIN_SEND;
}

static void test_send(void **state)
{
	struct mg_group g = group("x");
	struct mg_rule_decision d;
	struct mg_err err = { 0 };
	bool mine = false;

	assert_int_equal(decide(b_send_full, &g, &d, &mine, &err), MG_OK);
	assert_true(mine);
	assert_int_equal(d.verdict, MG_RULE_SEND);
	assert_string_equal(d.rule, WHO);
	assert_int_equal(d.due_at, T0);
	assert_true(d.template_inline);
	assert_string_equal(d.template_name, WHO);
	assert_string_equal(d.template_text, "Subject ${demo}\n\n${events_as_csv}");
	assert_int_equal(d.template_len, strlen(d.template_text));
	assert_int_equal(d.n_cols, 2);
	assert_string_equal(d.cols[0].field, "source.ip");
	assert_string_equal(d.cols[0].title, "address");
	assert_string_equal(d.cols[1].field, "extra.system_desc");
	assert_string_equal(d.cols[1].title, "system");
	assert_true(d.attach_csv);
	assert_int_equal(d.n_subst, 2);
	assert_string_equal(mg_rule_decision_lookup(&d, false, "demo"), "in the text");
	assert_string_equal(mg_rule_decision_lookup(&d, true, "demo"), "attached");
	assert_string_equal(mg_rule_decision_lookup(&d, false, "same"), "both");
	assert_string_equal(mg_rule_decision_lookup(&d, true, "same"), "both");
	assert_null(mg_rule_decision_lookup(&d, true, "nope"));
	assert_int_equal(d.n_copies, 0);
	mg_rule_decision_release(&d);
}

static int b_send_defaults(struct mg_plugin_answer *a)
{
	return MG_PLUGIN_SEND;
}

static int b_send_file(struct mg_plugin_answer *a)
{
	mg_plugin_set_template_text(a, "inline");
	mg_plugin_set_template(a, "file.txt"); /* the last call wins */
	mg_plugin_set_placement(a, MG_PLUGIN_INLINE);
	return MG_PLUGIN_SEND;
}

static void test_send_defaults(void **state)
{
	struct mg_group g = group("csv_x_csv_attachment");
	struct mg_rule_decision d;
	bool mine;

	/* the directive's template, the fallback columns, placement by suffix */
	assert_int_equal(decide(b_send_defaults, &g, &d, &mine, NULL), MG_OK);
	assert_int_equal(d.verdict, MG_RULE_SEND);
	assert_false(d.template_inline);
	assert_string_equal(d.template_name, "dir-template.txt");
	assert_ptr_equal(d.cols, mg_table_fallback_columns);
	assert_int_equal(d.n_cols, mg_table_fallback_n_columns);
	assert_true(d.attach_csv);
	assert_int_equal(d.n_subst, 0);
	mg_rule_decision_release(&d);

	assert_int_equal(decide(b_send_file, &g, &d, &mine, NULL), MG_OK);
	assert_false(d.template_inline);
	assert_string_equal(d.template_name, "file.txt");
	assert_false(d.attach_csv);
	mg_rule_decision_release(&d);
}

static int b_postpone(struct mg_plugin_answer *a)
{
	mg_plugin_set_template(a, "t.txt");
	return mg_plugin_postpone(a, T0 + 50 * SEC, "demo: newest directive age");
}

static void test_postpone_retry_outbox(void **state)
{
	struct mg_group g = group("x");
	struct mg_rule_decision d;
	bool mine;

	assert_int_equal(decide(b_postpone, &g, &d, &mine, NULL), MG_OK);
	assert_true(mine);
	assert_int_equal(d.verdict, MG_RULE_POSTPONED);
	assert_int_equal(d.due_at, T0 + 50 * SEC);
	assert_string_equal(d.postponed_by, "demo: newest directive age");
	assert_string_equal(d.rule, WHO);
	mg_rule_decision_release(&d);

	/* a later retry_at wins, for a postponed and a sending plugin alike */
	g.retry_at = T0 + 90 * SEC;
	assert_int_equal(decide(b_postpone, &g, &d, &mine, NULL), MG_OK);
	assert_int_equal(d.verdict, MG_RULE_POSTPONED);
	assert_int_equal(d.due_at, T0 + 90 * SEC);
	assert_string_equal(d.postponed_by, "retry after a temporary failure");
	mg_rule_decision_release(&d);
	assert_int_equal(decide(b_send_defaults, &g, &d, &mine, NULL), MG_OK);
	assert_int_equal(d.verdict, MG_RULE_POSTPONED);
	assert_int_equal(d.due_at, T0 + 90 * SEC);
	mg_rule_decision_release(&d);

	/* a mail in the outbox goes at once */
	g.has_outbox = true;
	assert_int_equal(decide(b_postpone, &g, &d, &mine, NULL), MG_OK);
	assert_int_equal(d.verdict, MG_RULE_SEND);
	assert_int_equal(d.due_at, T0);
	mg_rule_decision_release(&d);
}

static void test_fallback_decision(void **state)
{
	struct mg_group g = group("x_csv_attachment");
	struct mg_rule_decision d;

	mg_rules_decide_fallback(&g, T0, &d);
	assert_int_equal(d.verdict, MG_RULE_SEND);
	assert_int_equal(d.due_at, T0);
	assert_string_equal(d.rule, "built-in fallback");
	assert_string_equal(d.template_name, "dir-template.txt");
	assert_true(d.attach_csv);
	assert_int_equal(d.n_cols, mg_table_fallback_n_columns);
	mg_rule_decision_release(&d);

	g.has_last_sent = true;
	g.last_sent = T0 - 10 * SEC;
	mg_rules_decide_fallback(&g, T0, &d);
	assert_int_equal(d.verdict, MG_RULE_POSTPONED);
	assert_int_equal(d.due_at, T0 - 10 * SEC + 3600 * SEC + 1);
	assert_string_equal(d.postponed_by, "notification interval");
	mg_rule_decision_release(&d);

	g.retry_at = T0 + 7200 * SEC;
	mg_rules_decide_fallback(&g, T0, &d);
	assert_int_equal(d.due_at, T0 + 7200 * SEC);
	assert_string_equal(d.postponed_by, "retry after a temporary failure");
	mg_rule_decision_release(&d);
}

static int b_send_full_nocheck(struct mg_plugin_answer *a)
{
	mg_plugin_set_template_text(a, "Subject ${demo}\n\n${events_as_csv}");
	mg_plugin_add_column(a, "source.ip", "address");
	mg_plugin_add_column(a, "extra.system_desc", "system");
	mg_plugin_set_subst(a, "demo", "in the text", "attached");
	mg_plugin_set_subst(a, "same", "both", NULL);
	return MG_PLUGIN_SEND;
}

/*
 * Every allocation failing in turn: MG_ENOMEM (the group is retried, not
 * put into the failed state), never a leak.  The builder's calls are all
 * valid, so any refusal is for want of memory.
 */
static void test_torture(void **state)
{
	struct mg_group g = group("x");

	for (long n = 0; n < 60; n++) {
		struct mg_plugin_answer *a;
		struct mg_rule_decision d;
		struct mg_err err = { 0 };
		bool mine;
		int rc;

		mg_alloc_fail_after(n);
		a = mg_plugin_answer_new(WHO, T0);
		if (a == NULL) {
			mg_alloc_fail_after(-1);
			continue;
		}
		rc = mg_plugin_answer_decide(a, b_send_full_nocheck(a), &g, T0, NULL, &d, &mine,
					     &err);
		mg_alloc_fail_after(-1);
		if (rc == MG_OK)
			mg_rule_decision_release(&d);
		else
			assert_int_equal(rc, MG_ENOMEM);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_group_view),
		cmocka_unit_test(test_builder_errors),
		cmocka_unit_test(test_send),
		cmocka_unit_test(test_send_defaults),
		cmocka_unit_test(test_postpone_retry_outbox),
		cmocka_unit_test(test_fallback_decision),
		cmocka_unit_test(test_torture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
