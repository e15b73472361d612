/* tests/unit/test_rules.c - format rules: parsing, matching, postponing, substitutions, copies */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "rules.h"
#include "util.h"

/* the case tables leave trailing fields of cases that do not need them zero */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define SEC	 1000000LL
#define MIN	 (60 * SEC)
#define HOUR	 (60 * MIN)
/* 2026-11-26 06:00:00 UTC */
#define T0	 1795672800LL
#define T0_USEC	 (T0 * SEC)
#define OBS_TEXT "2026-11-26 06:00:00+00"

/* ------------------------------------------------------------- helpers */

struct kv2 {
	const char *k, *v;
};

/* A group on the stack; the strings are borrowed, never released. */
static struct mg_group group(const char *nf, const char *edf, const char *tmpl, const char *rcpt,
			     const struct kv2 *agg, size_t n_agg)
{
	static struct mg_kv kv[8];
	struct mg_group g = { 0 };

	assert_true(n_agg <= 8);
	for (size_t i = 0; i < n_agg; i++) {
		kv[i].key = (char *)agg[i].k;
		kv[i].value = (char *)agg[i].v;
	}
	g.notification_format = (char *)nf;
	g.event_data_format = (char *)edf;
	g.template_name = (char *)tmpl;
	g.recipient_address = (char *)rcpt;
	g.agg = kv;
	g.n_agg = n_agg;
	g.inserted_at = T0_USEC;
	g.interval_sec = 86400;
	return g;
}

static int parse_texts(const char *const *names, const char *const *texts, size_t n,
		       const char *vars, const char *tables, struct mg_rules **ret,
		       struct mg_err *err)
{
	struct mg_rules_src files[8], v = { "variables.json", vars, vars ? strlen(vars) : 0 },
				      t = { "tables.json", tables, tables ? strlen(tables) : 0 };

	assert_true(n <= 8);
	for (size_t i = 0; i < n; i++) {
		files[i].name = names[i];
		files[i].text = texts[i];
		files[i].len = strlen(texts[i]);
	}
	return mg_rules_parse(files, n, vars ? &v : NULL, tables ? &t : NULL, ret, err);
}

static struct mg_rules *parse1(const char *text, const char *vars, const char *tables)
{
	static const char *const names[] = { "10_test.json" };
	struct mg_rules *set = NULL;
	struct mg_err err = { 0 };
	int r = parse_texts(names, &text, 1, vars, tables, &set, &err);

	if (r != MG_OK)
		fail_msg("parse failed: %s", err.msg);
	return set;
}

/* ------------------------------------------------------------- glob and timestamps */

static void test_glob(void **state)
{
	static const struct {
		const char *pat, *text;
		bool want;
	} cases[] = {
		{ "", "", true },
		{ "", "a", false },
		{ "*", "", true },
		{ "*", "anything", true },
		{ "csv_*", "csv_DNS-open-resolvers", true },
		{ "csv_*", "xcsv_a", false },
		{ "*_csv_inline", "botnet_csv_inline", true },
		{ "*_csv_inline", "botnet_csv_inline2", false },
		{ "a?c", "abc", true },
		{ "a?c", "ac", false },
		{ "*@*.example", "abuse@as64496.example", true },
		{ "*@*.example", "abuse@example", false },
		{ "[abc]x", "bx", true },
		{ "[!abc]x", "bx", false },
		{ "[^abc]x", "dx", true },
		{ "[a-c]", "b", true },
		{ "[a-c]", "d", false },
		{ "[]]", "]", true },
		{ "[a-]", "-", true },
		{ "\\*", "*", true },
		{ "\\*", "a", false },
		{ "a*b*c", "aXXbYYc", true },
		{ "a*b*c", "aXXbYY", false },
		{ "**a", "a", true },
		{ "[a", "[a", false },	 /* malformed: matches nothing */
		{ "a\\", "a\\", false }, /* malformed */
		{ "*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("case %zu: '%s' '%s'\n", i, cases[i].pat, cases[i].text);
		assert_int_equal(mg_glob_match(cases[i].pat, cases[i].text), cases[i].want);
	}
	assert_false(mg_glob_check("[a"));
	assert_false(mg_glob_check("x\\"));
	assert_true(mg_glob_check("[!]a]*\\["));
}

static void test_timestamp(void **state)
{
	static const struct {
		const char *s;
		bool ok;
		int64_t usec;
	} cases[] = {
		{ "2026-11-26 06:00:00+00", true, T0_USEC },
		{ "2026-11-26T06:00:00+00:00", true, T0_USEC },
		{ "2026-11-26T06:00:00Z", true, T0_USEC },
		{ "2026-11-26T06:00:00", true, T0_USEC },
		{ "2026-11-26 07:30:00+01:30", true, T0_USEC },
		{ "2026-11-26 05:00:00-0100", true, T0_USEC },
		{ "2026-11-26 06:00:00.25+00", true, T0_USEC + 250000 },
		{ "2026-11-26 06:00:00.1234567+00", true, T0_USEC + 123456 },
		{ "1970-01-01 00:00:00+00", true, 0 },
		{ "2024-02-29 00:00:00+00", true, 1709164800LL * SEC },
		{ "2026-02-29 00:00:00+00", false, 0 },
		{ "2026-11-26", false, 0 },
		{ "2026-11-26 06:00+00", false, 0 },
		{ "2026-11-26 24:00:00+00", false, 0 },
		{ "2026-13-01 00:00:00+00", false, 0 },
		{ "2026-11-26 06:00:00+", false, 0 },
		{ "2026-11-26 06:00:00.+00", false, 0 },
		{ " 2026-11-26 06:00:00+00", false, 0 },
		{ "2026-11-26 06:00:00+00 ", false, 0 },
		{ "", false, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t t = -1;

		print_message("case %zu: '%s'\n", i, cases[i].s);
		assert_int_equal(mg_parse_timestamp(cases[i].s, &t), cases[i].ok);
		if (cases[i].ok)
			assert_int_equal(t, cases[i].usec);
	}
}

/* ------------------------------------------------------------- parse errors */

static void test_parse_errors(void **state)
{
	static const struct {
		const char *rules, *vars, *tables;
		const char *want;
	} cases[] = {
		{ "{\"rules\": [}", NULL, NULL, "10_test.json:1:12: invalid JSON" },
		{ "{\"rules\": []}\n{}", NULL, NULL, "10_test.json:2:1: invalid JSON" },
		{ "{\"rules\": [], /* c */}", NULL, NULL, "invalid JSON" },
		{ "[]", NULL, NULL, "expected a JSON object at the top level" },
		{ "{\"rulez\": []}", NULL, NULL, "10_test.json: 'rulez': unknown key" },
		{ "{\"rules\": {}}", NULL, NULL, "'rules': expected an array, got an object" },
		{ "{\"rules\": [{\"matc\": {}}]}", NULL, NULL, "'rules[0].matc': unknown key" },
		{ "{\"rules\": [{\"match\": {\"notification_format\": 5}}]}", NULL, NULL,
		  "'rules[0].match.notification_format': expected a string or {\"glob\"" },
		{ "{\"rules\": [{\"match\": {\"event_data_format\": [\"a\", {\"glob\": \"[x\"}]}}]}",
		  NULL, NULL, "'rules[0].match.event_data_format[1].glob': malformed pattern" },
		{ "{\"rules\": [{\"match\": {\"recipient_address\": []}}]}", NULL, NULL,
		  "'rules[0].match.recipient_address': must not be empty" },
		{ "{\"rules\": [{\"match\": {\"aggregate\": {\"source.asn\": 5}}}]}", NULL, NULL,
		  "'rules[0].match.aggregate.source.asn': expected a string" },
		{ "{\"rules\": [{\"postpone\": {\"min_directive_age\": \"soon\"}}]}", NULL, NULL,
		  "'rules[0].postpone.min_directive_age': expected a duration like 900, \"15m\"" },
		{ "{\"rules\": [{\"postpone\": {\"min_observation_age\": -1}}]}", NULL, NULL,
		  "'rules[0].postpone.min_observation_age': expected a duration" },
		{ "{\"rules\": [{\"postpone\": {\"min_observation_age\": \"400d\"}}]}", NULL, NULL,
		  "at most a year" },
		{ "{\"rules\": [{\"postpone\": {\"interval\": 1}}]}", NULL, NULL,
		  "'rules[0].postpone.interval': expected true or false, got an integer" },
		{ "{\"rules\": [{\"table\": \"nope\"}]}", NULL, NULL,
		  "'rules[0].table': no table 'nope'" },
		{ "{\"rules\": [{\"table\": {\"by_event_data_format\": {\"csv_x\": \"nope\"}}}]}",
		  NULL, NULL, "'rules[0].table.by_event_data_format.csv_x': no table 'nope'" },
		{ "{\"rules\": [{\"placement\": \"below\"}]}", NULL, NULL,
		  "'rules[0].placement': expected \"inline\", \"attachment\" or \"by_suffix\"" },
		{ "{\"rules\": [{\"template\": \"../etc/passwd\"}]}", NULL, NULL,
		  "'rules[0].template':" },
		{ "{\"rules\": [{\"template\": {\"text\": \"   \\n\"}}]}", NULL, NULL,
		  "'rules[0].template.text':" },
		{ "{\"rules\": [{\"template\": {\"text\": \"S\\n\\nbad $ here\"}}]}", NULL, NULL,
		  "'rules[0].template.text': invalid placeholder" },
		{ "{\"rules\": [{\"substitutions\": {\"ticket_number\": \"x\"}}]}", NULL, NULL,
		  "'rules[0].substitutions.ticket_number': 'ticket_number' is set by mailgen" },
		{ "{\"rules\": [{\"substitutions\": {\"a-b\": \"x\"}}]}", NULL, NULL,
		  "not a name a template can use" },
		{ "{\"rules\": [{\"substitutions\": {\"a\": \"x $\"}}]}", NULL, NULL,
		  "'rules[0].substitutions.a': invalid placeholder" },
		{ "{\"rules\": [{\"substitutions\": {\"a\": {\"inline\": \"x\"}}}]}", NULL, NULL,
		  "'rules[0].substitutions.a': needs both \"inline\" and \"attachment\"" },
		{ "{\"rules\": [{\"substitutions\": {\"a\": {\"first_of\": [{\"value\": \"x\"}, "
		  "{\"if\": \"k\", \"value\": \"y\"}]}}}]}",
		  NULL, NULL,
		  "'rules[0].substitutions.a.first_of[0]': only the last entry may lack" },
		{ "{\"copies\": [{\"when\": {\"recipient_group\": \"G\"}, \"to\": \"a@b@c\"}]}",
		  NULL, NULL, "'copies[0].to': copy recipient" },
		{ "{\"copies\": [{\"to\": \"a@b.example\"}]}", NULL, NULL,
		  "'copies[0]': missing \"when\"" },
		{ "{\"rules\": [{\"copies\": [{\"when\": {\"g\": true}, \"to\": [\"a@b.example\"], "
		  "\"placement\": \"by_suffix\"}]}]}",
		  NULL, NULL,
		  "'rules[0].copies[0].placement': expected \"inline\", \"attachment\" or \"same\"" },
		{ "{\"rules\": [{\"name\": \"x\"}, {\"name\": \"x\"}]}", NULL, NULL,
		  "'rules[1]': rule name 'x' used twice" },
		{ "{\"rules\": []}", "{\"s\": {\"events_as_csv\": \"x\"}}", NULL,
		  "variables.json: 's.events_as_csv': 'events_as_csv' is set by mailgen" },
		{ "{\"rules\": []}", "{\"s\": {\"a\": \"x\"}, \"t\": {\"a\": \"y\"}}", NULL,
		  "variables.json: 't.a': variable 'a' defined twice" },
		{ "{\"rules\": []}", "{\"s\": [\"a\"]}", NULL,
		  "variables.json: 's': expected an object of variables, got an array" },
		{ "{\"rules\": []}", NULL, "{\"tables\": {\"t\": [\"source.ip\"]}}",
		  "tables.json: 'tables.t[0]': no title for 'source.ip'" },
		{ "{\"rules\": []}", NULL, "{\"tables\": {\"t\": [\"Source IP\"]}}",
		  "tables.json: 'tables.t[0]': expected an IntelMQ field" },
		{ "{\"rules\": []}", NULL, "{\"tables\": {\"fallback\": [\"source.ip\"]}}",
		  "tables.json: 'tables.fallback': table 'fallback' is built in" },
		{ "{\"rules\": []}", NULL, "{\"tables\": {\"t\": [{\"field\": \"source.ip\"}]}}",
		  "no title for 'source.ip'" },
		{ "{\"rules\": []}", NULL, "{\"tables\": {\"t\": []}}",
		  "tables.json: 'tables.t': must not be empty" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		static const char *const names[] = { "10_test.json" };
		struct mg_rules *set = NULL;
		struct mg_err err = { 0 };
		int r;

		print_message("case %zu: %s\n", i, cases[i].rules);
		r = parse_texts(names, &cases[i].rules, 1, cases[i].vars, cases[i].tables, &set,
				&err);
		print_message("  -> %s\n", err.msg);
		assert_int_equal(r, MG_ECONFIG);
		assert_null(set);
		assert_non_null(strstr(err.msg, cases[i].want));
	}
}

static void test_file_names(void **state)
{
	static const char *const ok[] = { "{\"rules\": []}", "{\"rules\": []}" };
	static const char *const unsorted[] = { "20_b.json", "10_a.json" };
	static const char *const badname[] = { "x10.json" };
	struct mg_rules *set = NULL;
	struct mg_err err = { 0 };

	assert_int_equal(parse_texts(unsorted, ok, 2, NULL, NULL, &set, &err), MG_ECONFIG);
	assert_non_null(strstr(err.msg, "10_a.json: rule files must be given in name order"));
	assert_int_equal(parse_texts(badname, ok, 1, NULL, NULL, &set, &err), MG_ECONFIG);
	assert_non_null(strstr(err.msg, "x10.json: not a rule file name"));
	assert_null(set);

	assert_true(mg_rules_is_rule_file("10_shadowserver.json"));
	assert_true(mg_rules_is_rule_file("99fallback.json"));
	assert_false(mg_rules_is_rule_file("variables.json"));
	assert_false(mg_rules_is_rule_file("tables.json"));
	assert_false(mg_rules_is_rule_file("10.json"));
	assert_false(mg_rules_is_rule_file("10_a.json~"));
	assert_false(mg_rules_is_rule_file("10_a.py"));
}

/* ------------------------------------------------------------- matching */

static const char match_rules[] =
	"{\"rules\": ["
	" {\"name\": \"by-nf\", \"match\": {\"notification_format\": \"shadowserver\"}},"
	" {\"name\": \"by-edf-glob\", \"match\": {\"event_data_format\": {\"glob\": \"csv_*\"}}},"
	" {\"name\": \"by-template\", \"match\": {\"template_name\": [\"a.txt\", \"b.txt\"]}},"
	" {\"name\": \"by-rcpt\", \"match\": {\"recipient_address\": {\"glob\": \"*@gov.example\"}}},"
	" {\"name\": \"agg-present\", \"match\": {\"aggregate\": {\"cidr\": true}}},"
	" {\"name\": \"agg-equals\", \"match\": {\"aggregate\": {\"source.asn\": \"64496\"}}},"
	" {\"name\": \"agg-glob\", \"match\": {\"aggregate\": {\"source.asn\": {\"glob\": \"6449?\"}}}},"
	" {\"name\": \"agg-absent-and\", \"match\": {\"notification_format\": \"x\","
	"   \"aggregate\": {\"source.asn\": false}}}"
	"]}";

static void test_match(void **state)
{
	static const struct kv2 asn96[] = { { "source.asn", "64496" } };
	static const struct kv2 asn97[] = { { "source.asn", "64497" } };
	static const struct kv2 asn11[] = { { "source.asn", "65511" } };
	static const struct kv2 cidr[] = { { "cidr", "192.0.2.0/24" } };
	static const struct {
		const char *nf, *edf, *tmpl, *rcpt;
		const struct kv2 *agg;
		size_t n_agg;
		const char *want; /* rule name, NULL: none */
	} cases[] = {
		{ "shadowserver", "x", "t", "a@b.example", NULL, 0, "10_test.json: by-nf" },
		{ "other", "csv_DNS", "t", "a@b.example", NULL, 0, "10_test.json: by-edf-glob" },
		{ "other", "xcsv_", "b.txt", "a@b.example", NULL, 0, "10_test.json: by-template" },
		{ "other", "x", "c.txt", "abuse@gov.example", NULL, 0, "10_test.json: by-rcpt" },
		{ "other", "x", "c.txt", "abuse@gov.example.org", NULL, 0, NULL },
		{ "other", "x", "c.txt", "a@b.example", cidr, 1, "10_test.json: agg-present" },
		{ "other", "x", "c.txt", "a@b.example", asn96, 1, "10_test.json: agg-equals" },
		{ "other", "x", "c.txt", "a@b.example", asn97, 1, "10_test.json: agg-glob" },
		{ "other", "x", "c.txt", "a@b.example", asn11, 1, NULL },
		{ "x", "x", "c.txt", "a@b.example", NULL, 0, "10_test.json: agg-absent-and" },
		{ "x", "x", "c.txt", "a@b.example", asn11, 1, NULL },
		/* the first matching rule decides */
		{ "shadowserver", "csv_x", "a.txt", "a@gov.example", asn96, 1,
		  "10_test.json: by-nf" },
	};
	struct mg_rules *set = parse1(match_rules, NULL, NULL);

	assert_int_equal(mg_rules_count(set), 8);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_group g = group(cases[i].nf, cases[i].edf, cases[i].tmpl, cases[i].rcpt,
					  cases[i].agg, cases[i].n_agg);
		struct mg_rule_decision d;
		struct mg_err err = { 0 };

		print_message("case %zu\n", i);
		assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err), MG_OK);
		if (cases[i].want == NULL) {
			assert_int_equal(d.verdict, MG_RULE_NONE);
			assert_null(d.rule);
		} else {
			assert_int_equal(d.verdict, MG_RULE_SEND);
			assert_string_equal(d.rule, cases[i].want);
			/* defaults: directive's template, fallback table, suffix placement */
			assert_string_equal(d.template_name, cases[i].tmpl);
			assert_false(d.template_inline);
			assert_string_equal(d.table, "fallback");
			assert_int_equal(d.n_cols, mg_table_fallback_n_columns);
			assert_false(d.attach_csv);
		}
		mg_rule_decision_release(&d);
	}
	mg_rules_free(set);
}

/* ------------------------------------------------------------- postponing */

static const char postpone_rules[] =
	"{\"rules\": ["
	" {\"name\": \"interval\", \"match\": {\"notification_format\": \"i\"},"
	"  \"postpone\": {\"interval\": true}},"
	" {\"name\": \"ages\", \"match\": {\"notification_format\": \"a\"},"
	"  \"postpone\": {\"min_directive_age\": \"15m\", \"min_observation_age\": 7200}},"
	" {\"name\": \"all\", \"match\": {\"notification_format\": \"all\"},"
	"  \"postpone\": {\"interval\": true, \"min_directive_age\": \"15m\","
	"   \"min_observation_age\": \"2h\"}},"
	" {\"name\": \"none\"}"
	"]}";

static void test_postpone(void **state)
{
	static const struct kv2 obs[] = { { "time.observation", OBS_TEXT } };
	static const struct kv2 obs_iso[] = { { "time.observation", "2026-11-26T07:00:00+01:00" } };
	static const struct {
		const char *nf;
		const struct kv2 *agg;
		size_t n_agg;
		bool has_last_sent;
		int64_t last_sent, inserted_at, retry_at, now;
		bool outbox;
		enum mg_rule_verdict want;
		int64_t due;
		const char *by;
	} cases[] = {
		/* never sent: the interval holds at once */
		{ "i", NULL, 0, false, 0, T0_USEC, 0, T0_USEC, false, MG_RULE_SEND, T0_USEC, NULL },
		/* sent an hour ago, interval a day: due at last_sent + 1 day + 1 usec */
		{ "i", NULL, 0, true, T0_USEC - HOUR, T0_USEC, 0, T0_USEC, false, MG_RULE_POSTPONED,
		  T0_USEC - HOUR + 24 * HOUR + 1, "notification interval" },
		{ "i", NULL, 0, true, T0_USEC - 24 * HOUR, T0_USEC, 0, T0_USEC, false,
		  MG_RULE_POSTPONED, T0_USEC + 1, "notification interval" },
		{ "i", NULL, 0, true, T0_USEC - 24 * HOUR - 1, T0_USEC, 0, T0_USEC, false,
		  MG_RULE_SEND, T0_USEC, NULL },
		/* a mail in the outbox goes at once; a deferral holds the group */
		{ "i", NULL, 0, true, T0_USEC - HOUR, T0_USEC, 0, T0_USEC, true, MG_RULE_SEND,
		  T0_USEC, NULL },
		{ "i", NULL, 0, false, 0, T0_USEC, T0_USEC + MIN, T0_USEC, false, MG_RULE_POSTPONED,
		  T0_USEC + MIN, "retry after a temporary failure" },
		/* directive 10 minutes old, observation 3 hours: 5 more minutes */
		{ "a", obs, 1, false, 0, T0_USEC + 3 * HOUR - 10 * MIN, 0, T0_USEC + 3 * HOUR,
		  false, MG_RULE_POSTPONED, T0_USEC + 3 * HOUR + 5 * MIN, "newest directive age" },
		/* directive 1 hour old, observation 1 hour: another hour */
		{ "a", obs, 1, false, 0, T0_USEC, 0, T0_USEC + HOUR, false, MG_RULE_POSTPONED,
		  T0_USEC + 2 * HOUR, "observation age" },
		{ "a", obs_iso, 1, false, 0, T0_USEC, 0, T0_USEC + HOUR, false, MG_RULE_POSTPONED,
		  T0_USEC + 2 * HOUR, "observation age" },
		/* exactly at the moment: due */
		{ "a", obs, 1, false, 0, T0_USEC, 0, T0_USEC + 2 * HOUR, false, MG_RULE_SEND,
		  T0_USEC + 2 * HOUR, NULL },
		/* no time.observation: only the directive age counts */
		{ "a", NULL, 0, false, 0, T0_USEC, 0, T0_USEC + 15 * MIN, false, MG_RULE_SEND,
		  T0_USEC + 15 * MIN, NULL },
		/* all three: the latest wins */
		{ "all", obs, 1, true, T0_USEC, T0_USEC, 0, T0_USEC + 3 * HOUR, false,
		  MG_RULE_POSTPONED, T0_USEC + 24 * HOUR + 1, "notification interval" },
		{ "all", obs, 1, true, T0_USEC - 48 * HOUR, T0_USEC + HOUR + 50 * MIN, 0,
		  T0_USEC + 2 * HOUR, false, MG_RULE_POSTPONED, T0_USEC + 2 * HOUR + 5 * MIN,
		  "newest directive age" },
		/* no conditions: sent whatever the interval says */
		{ "zzz", NULL, 0, true, T0_USEC, T0_USEC, 0, T0_USEC, false, MG_RULE_SEND, T0_USEC,
		  NULL },
	};
	struct mg_rules *set = parse1(postpone_rules, NULL, NULL);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_group g = group(cases[i].nf, "x", "t.txt", "a@b.example", cases[i].agg,
					  cases[i].n_agg);
		struct mg_rule_decision d;
		struct mg_err err = { 0 };

		print_message("case %zu\n", i);
		g.has_last_sent = cases[i].has_last_sent;
		g.last_sent = cases[i].last_sent;
		g.inserted_at = cases[i].inserted_at;
		g.retry_at = cases[i].retry_at;
		g.has_outbox = cases[i].outbox;
		assert_int_equal(mg_rules_decide(set, &g, cases[i].now, &d, &err), MG_OK);
		assert_int_equal(d.verdict, cases[i].want);
		assert_int_equal(d.due_at, cases[i].due);
		if (cases[i].by == NULL)
			assert_null(d.postponed_by);
		else
			assert_string_equal(d.postponed_by, cases[i].by);
		mg_rule_decision_release(&d);
	}

	/* a time.observation that is no timestamp fails the group */
	{
		static const struct kv2 junk[] = { { "time.observation", "yesterday" } };
		struct mg_group g = group("a", "x", "t.txt", "a@b.example", junk, 1);
		struct mg_rule_decision d;
		struct mg_err err = { 0 };

		assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err), MG_EINPUT);
		assert_non_null(strstr(err.msg, "rule '10_test.json: ages': aggregate identifier "
						"'time.observation' is not a timestamp"));
	}
	mg_rules_free(set);
}

/* ------------------------------------------------------------- tables, placement, templates */

static const char table_rules[] =
	"{\"rules\": ["
	" {\"name\": \"map\", \"match\": {\"notification_format\": \"m\"},"
	"  \"table\": {\"by_event_data_format\": {\"csv_a\": \"ta\", \"csv_b\": \"tb\"}},"
	"  \"template\": \"named.txt\", \"placement\": \"attachment\"},"
	" {\"name\": \"byname\", \"match\": {\"notification_format\": \"n\"},"
	"  \"table\": {\"by_event_data_format\": true}, \"placement\": \"inline\","
	"  \"template\": {\"text\": \"Subject ${x}\\n\\nBody\"}},"
	" {\"name\": \"suffix\", \"table\": \"tb\", \"template\": \"named.txt\"}"
	"]}";

static const char table_defs[] =
	"{\"titles\": {\"source.ip\": \"ip\", \"extra.system_desc\": \"sysdesc\"},"
	" \"tables\": {\"ta\": [\"source.ip\", \"extra.system_desc\"],"
	"  \"tb\": [{\"field\": \"source.ip\", \"title\": \"IP address\"}],"
	"  \"csv_c\": [\"source.ip\", {\"field\": \"time.source\", \"title\": \"timestamp\"}]}}";

static void test_tables_placement(void **state)
{
	static const struct {
		const char *nf, *edf;
		const char *rule, *table, *first_title, *tmpl;
		bool inline_tmpl, attach;
	} cases[] = {
		{ "m", "csv_a", "map", "ta", "ip", "named.txt", false, true },
		{ "m", "csv_b", "map", "tb", "IP address", "named.txt", false, true },
		/* not in the map: the rule does not match, the next one does */
		{ "m", "csv_c", "suffix", "tb", "IP address", "named.txt", false, false },
		{ "n", "csv_c", "byname", "csv_c", "ip", "10_test.json: byname", true, false },
		{ "n", "csv_d_csv_attachment", "suffix", "tb", "IP address", "named.txt", false,
		  true },
		{ "z", "csv_d_csv_inline", "suffix", "tb", "IP address", "named.txt", false,
		  false },
	};
	struct mg_rules *set = parse1(table_rules, NULL, table_defs);

	assert_int_equal(mg_rules_template_count(set), 1);
	assert_string_equal(mg_rules_template(set, 0), "named.txt");
	assert_null(mg_rules_template(set, 1));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_group g =
			group(cases[i].nf, cases[i].edf, "dir.txt", "a@b.example", NULL, 0);
		struct mg_rule_decision d;
		struct mg_err err = { 0 };
		char want_rule[64];

		print_message("case %zu\n", i);
		assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err), MG_OK);
		assert_int_equal(d.verdict, MG_RULE_SEND);
		(void)snprintf(want_rule, sizeof(want_rule), "10_test.json: %s", cases[i].rule);
		assert_string_equal(d.rule, want_rule);
		assert_string_equal(d.table, cases[i].table);
		assert_string_equal(d.cols[0].title, cases[i].first_title);
		assert_string_equal(d.template_name, cases[i].tmpl);
		assert_int_equal(d.template_inline, cases[i].inline_tmpl);
		if (cases[i].inline_tmpl)
			assert_memory_equal(d.template_text, "Subject ${x}\n\nBody",
					    d.template_len);
		assert_int_equal(d.attach_csv, cases[i].attach);
		mg_rule_decision_release(&d);
	}
	mg_rules_free(set);
}

/* ------------------------------------------------------------- substitutions and copies */

static const char subst_vars[] = "{\"common\": {\"loc_in\": \"below\", \"loc_at\": \"attached\"},"
				 " \"subs\": {\"sig\": \"Regards\\n\", \"sep\": \"=====\"}}";

static const char subst_rules[] =
	"{\"rules\": [{\"name\": \"s\", \"placement\": \"by_suffix\","
	" \"substitutions\": {"
	"  \"where\": {\"inline\": \"${loc_in}\", \"attachment\": \"${loc_at}\"},"
	"  \"sep\": {\"inline\": \"${sep}\", \"attachment\": \"\"},"
	"  \"dollar\": \"costs $$5 in AS$source.asn\","
	"  \"about\": {\"first_of\": ["
	"   {\"if\": \"source.asn\", \"value\": \"about AS ${source.asn}\"},"
	"   {\"if\": \"cidr\", \"value\": {\"inline\": \"about CIDR ${cidr}\","
	"                                  \"attachment\": \"CIDR ${cidr}\"}},"
	"   {\"if\": \"source.geolocation.cc\","
	"    \"value\": \"about your country ${source.geolocation.cc}\"}]}"
	" },"
	" \"copies\": [{\"when\": {\"recipient_group\": \"Energy\"}, \"to\": \"energy@cert.example\"}]"
	"}]}";

static const char copies_file[] =
	"{\"copies\": ["
	" {\"when\": {\"recipient_group\": \"Government\"},"
	"  \"to\": [\"gov1@cert.example\", \"gov2@cert.example\"], \"placement\": \"inline\"},"
	" {\"when\": {\"recipient_group\": {\"glob\": \"E*\"}}, \"to\": \"e@cert.example\","
	"  \"placement\": \"attachment\"}]}";

static void test_substitutions(void **state)
{
	static const struct kv2 asn[] = { { "source.asn", "64496" }, { "cidr", "192.0.2.0/24" } };
	static const struct kv2 cidr[] = { { "cidr", "192.0.2.0/24" } };
	static const struct kv2 cc[] = { { "source.geolocation.cc", "DE" } };
	static const struct {
		const struct kv2 *agg;
		size_t n_agg;
		bool attach;
		const char *about;
	} cases[] = {
		{ asn, 2, false, "about AS 64496" },
		{ cidr, 1, false, "about CIDR 192.0.2.0/24" },
		{ cidr, 1, true, "CIDR 192.0.2.0/24" },
		{ cc, 1, false, "about your country DE" },
		{ NULL, 0, false, "" },
	};
	static const char *const names[] = { "10_s.json" };
	const char *texts[] = { subst_rules };
	struct mg_rules *set = NULL;
	struct mg_err err = { 0 };

	assert_int_equal(parse_texts(names, texts, 1, subst_vars, NULL, &set, &err), MG_OK);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_group g = group("n", cases[i].attach ? "x_csv_attachment" : "x", "t.txt",
					  "a@b.example", cases[i].agg, cases[i].n_agg);
		struct mg_rule_decision d;
		const char *about;

		print_message("case %zu\n", i);
		err.msg[0] = '\0';
		if (cases[i].n_agg == 0 || cases[i].agg == cc || cases[i].agg == cidr) {
			/* "dollar" names source.asn, which these groups lack */
			assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err), MG_EINPUT);
			assert_non_null(strstr(err.msg,
					       "rule '10_s.json: s', substitution 'dollar': "
					       "unknown name 'source.asn'"));
			/* the same rule without "dollar" is tested below; go on with a value */
			g.agg[g.n_agg].key = (char *)"source.asn";
			g.agg[g.n_agg].value = (char *)"1";
			g.n_agg++;
			if (cases[i].agg != NULL && cases[i].agg != asn) {
				/* source.asn now present: first_of picks it */
				assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err),
						 MG_OK);
				assert_string_equal(
					mg_rule_decision_lookup(&d, cases[i].attach, "about"),
					"about AS 1");
				mg_rule_decision_release(&d);
			}
			continue;
		}
		assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err), MG_OK);
		assert_int_equal(d.attach_csv, cases[i].attach);
		about = mg_rule_decision_lookup(&d, d.attach_csv, "about");
		assert_string_equal(about, cases[i].about);
		assert_string_equal(mg_rule_decision_lookup(&d, false, "where"), "below");
		assert_string_equal(mg_rule_decision_lookup(&d, true, "where"), "attached");
		assert_string_equal(mg_rule_decision_lookup(&d, false, "sep"), "=====");
		assert_string_equal(mg_rule_decision_lookup(&d, true, "sep"), "");
		assert_string_equal(mg_rule_decision_lookup(&d, false, "dollar"),
				    "costs $5 in AS64496");
		/* shared variables, for both placements */
		assert_string_equal(mg_rule_decision_lookup(&d, false, "sig"), "Regards\n");
		assert_string_equal(mg_rule_decision_lookup(&d, true, "loc_at"), "attached");
		assert_null(mg_rule_decision_lookup(&d, false, "nope"));
		assert_null(mg_rule_decision_lookup(&d, false, "source.asn"));
		mg_rule_decision_release(&d);
	}
	mg_rules_free(set);

	/* copies: from an earlier file (for every later rule) and the rule's own */
	{
		static const char *const n2[] = { "01_copies.json", "10_s.json" };
		const char *t2[] = { copies_file, subst_rules };
		static const struct kv2 gov[] = { { "recipient_group", "Government" },
						  { "source.asn", "64496" } };
		static const struct kv2 energy[] = { { "recipient_group", "Energy" },
						     { "source.asn", "64496" } };
		static const struct kv2 other[] = { { "recipient_group", "Health" },
						    { "source.asn", "64496" } };
		struct mg_rule_decision d;
		struct mg_group g;

		assert_int_equal(parse_texts(n2, t2, 2, subst_vars, NULL, &set, &err), MG_OK);

		g = group("n", "x_csv_attachment", "t.txt", "a@b.example", gov, 2);
		assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err), MG_OK);
		assert_int_equal(d.n_copies, 1);
		assert_int_equal(d.copies[0].n_to, 2);
		assert_string_equal(d.copies[0].to[0], "gov1@cert.example");
		assert_string_equal(d.copies[0].to[1], "gov2@cert.example");
		assert_false(
			d.copies[0].attach_csv); /* inline, while the recipient gets it attached */
		assert_true(d.attach_csv);
		mg_rule_decision_release(&d);

		g = group("n", "x", "t.txt", "a@b.example", energy, 2);
		assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err), MG_OK);
		assert_int_equal(d.n_copies, 2);
		assert_string_equal(d.copies[0].to[0], "e@cert.example");
		assert_true(d.copies[0].attach_csv);
		assert_string_equal(d.copies[1].to[0], "energy@cert.example");
		assert_false(d.copies[1].attach_csv); /* "same" as the recipient's: inline */
		mg_rule_decision_release(&d);

		g = group("n", "x", "t.txt", "a@b.example", other, 2);
		assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err), MG_OK);
		assert_int_equal(d.n_copies, 0);
		assert_null(d.copies);
		mg_rule_decision_release(&d);
		mg_rules_free(set);
	}

	/* copies of a later file do not reach the rules of an earlier one */
	{
		static const char *const n2[] = { "10_s.json", "50_copies.json" };
		const char *t2[] = { "{\"rules\": [{\"name\": \"plain\"}]}", copies_file };
		static const struct kv2 gov[] = { { "recipient_group", "Government" } };
		struct mg_group g = group("n", "x", "t.txt", "a@b.example", gov, 1);
		struct mg_rule_decision d;

		assert_int_equal(parse_texts(n2, t2, 2, NULL, NULL, &set, &err), MG_OK);
		assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err), MG_OK);
		assert_int_equal(d.verdict, MG_RULE_SEND);
		assert_int_equal(d.n_copies, 0);
		mg_rule_decision_release(&d);
		mg_rules_free(set);
	}
}

/* ------------------------------------------------------------- the shipped files */

struct shipped {
	char *names[16];
	char *texts[16];
	struct mg_rules_src files[16];
	size_t n;
	struct mg_rules_src vars, tables;
	char *vars_text, *tables_text;
};

static char *slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*ret_len = (size_t)n;
	return buf;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void shipped_load(struct shipped *s)
{
	static const char dir[] = MG_TEST_DATA "/../../conf/formats";
	char path[4096];
	struct dirent *de;
	DIR *d = opendir(dir);

	memset(s, 0, sizeof(*s));
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (!mg_rules_is_rule_file(de->d_name))
			continue;
		assert_true(s->n < 16);
		s->names[s->n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(s->names, s->n, sizeof(s->names[0]), cmp_str);
	for (size_t i = 0; i < s->n; i++) {
		(void)snprintf(path, sizeof(path), "%s/%s", dir, s->names[i]);
		s->texts[i] = slurp(path, &s->files[i].len);
		s->files[i].name = s->names[i];
		s->files[i].text = s->texts[i];
	}
	(void)snprintf(path, sizeof(path), "%s/variables.json", dir);
	s->vars_text = slurp(path, &s->vars.len);
	s->vars.name = "variables.json";
	s->vars.text = s->vars_text;
	(void)snprintf(path, sizeof(path), "%s/tables.json", dir);
	s->tables_text = slurp(path, &s->tables.len);
	s->tables.name = "tables.json";
	s->tables.text = s->tables_text;
}

static void shipped_release(struct shipped *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->names[i]);
		free(s->texts[i]);
	}
	free(s->vars_text);
	free(s->tables_text);
}

static void test_shipped(void **state)
{
	static const struct kv2 ss_agg[] = { { "source.asn", "64496" },
					     { "time.observation", OBS_TEXT } };
	static const struct kv2 ss_cc[] = { { "source.geolocation.cc", "DE" },
					    { "time.observation", OBS_TEXT } };
	static const struct kv2 gov[] = { { "source.asn", "64496" },
					  { "recipient_group", "Government" } };
	static const struct kv2 energy[] = { { "source.asn", "64496" },
					     { "recipient_group", "Energy" } };
	static const struct {
		const char *nf, *edf;
		const struct kv2 *agg;
		size_t n_agg;
		bool has_last_sent;
		int64_t last_sent_ago, inserted_ago; /* relative to now */
		int64_t now;
		const char *rule;
		enum mg_rule_verdict verdict;
		int64_t due;
		const char *table;
		size_t n_cols;
		const char *title2; /* the second column's title */
		bool attach;
		size_t n_copies;
		const char *asn_or_cidr;
	} cases[] = {
		/* Shadowserver: observed at T0, directive 20 minutes old at T0 + 1 h: the
		   observation is not 2 h old until T0 + 2 h */
		{ "shadowserver", "csv_DNS-open-resolvers", ss_agg, 2, false, 0, 20 * MIN,
		  T0_USEC + HOUR, "10_shadowserver.json: shadowserver", MG_RULE_POSTPONED,
		  T0_USEC + 2 * HOUR },
		/* at T0 + 3 h, directive 5 minutes old: 10 more minutes */
		{ "shadowserver", "csv_DNS-open-resolvers", ss_agg, 2, false, 0, 5 * MIN,
		  T0_USEC + 3 * HOUR, "10_shadowserver.json: shadowserver", MG_RULE_POSTPONED,
		  T0_USEC + 3 * HOUR + 10 * MIN },
		{ "shadowserver", "csv_Open-SNMP", ss_agg, 2, false, 0, 20 * MIN,
		  T0_USEC + 3 * HOUR, "10_shadowserver.json: shadowserver", MG_RULE_SEND,
		  T0_USEC + 3 * HOUR, "csv_Open-SNMP", 4, "ip", false, 0, "about AS 64496" },
		{ "shadowserver", "csv_Open-LDAP", ss_cc, 2, false, 0, 20 * MIN, T0_USEC + 3 * HOUR,
		  "10_shadowserver.json: shadowserver", MG_RULE_SEND, T0_USEC + 3 * HOUR,
		  "csv_Open-LDAP", 4, "ip", false, 0, "about your country DE" },
		/* a shadowserver format without a table falls through to the fallback */
		{ "shadowserver", "csv_Unknown", ss_agg, 2, false, 0, 20 * MIN, T0_USEC + 3 * HOUR,
		  "99_fallback.json: fallback", MG_RULE_SEND, T0_USEC + 3 * HOUR, "fallback", 8,
		  "ip" },
		/* malware: special matters by age, with their own columns */
		{ "ebury", "botnet_csv_attachment", ss_agg, 2, true, 0, 20 * MIN,
		  T0_USEC + 3 * HOUR, "11_malware_infection.json: special-matters", MG_RULE_SEND,
		  T0_USEC + 3 * HOUR, "malware-special", 9, "IP", true },
		{ "avalanche", "botnet_csv_inline", ss_agg, 2, false, 0, 1 * MIN,
		  T0_USEC + 3 * HOUR, "11_malware_infection.json: special-matters",
		  MG_RULE_POSTPONED, T0_USEC + 3 * HOUR + 14 * MIN },
		/* malware-infection by the interval */
		{ "malware-infection", "x_csv_inline", NULL, 0, true, HOUR, 0, T0_USEC,
		  "11_malware_infection.json: malware-infection", MG_RULE_POSTPONED,
		  T0_USEC + 23 * HOUR + 1 },
		{ "malware-infection", "x_csv_inline", NULL, 0, true, 25 * HOUR, 0, T0_USEC,
		  "11_malware_infection.json: malware-infection", MG_RULE_SEND, T0_USEC,
		  "malware-infection", 9, "ip", false },
		/* no suffix: the malware rules do not match */
		{ "malware-infection", "x", NULL, 0, false, 0, 0, T0_USEC,
		  "99_fallback.json: fallback", MG_RULE_SEND, T0_USEC, "fallback", 8, "ip", false },
		/* demo: attachment, not postponed */
		{ "demo", "x", NULL, 0, true, HOUR, 0, T0_USEC, "20_demo.json: demo", MG_RULE_SEND,
		  T0_USEC, "fallback", 8, "ip", true },
		/* fallback with the interval, and the constituency copies */
		{ "other", "x", NULL, 0, true, HOUR, 0, T0_USEC, "99_fallback.json: fallback",
		  MG_RULE_POSTPONED, T0_USEC + 23 * HOUR + 1 },
		{ "other", "x", gov, 2, false, 0, 0, T0_USEC, "99_fallback.json: fallback",
		  MG_RULE_SEND, T0_USEC, "fallback", 8, "ip", false, 1 },
		{ "other", "x_csv_attachment", energy, 2, false, 0, 0, T0_USEC,
		  "99_fallback.json: fallback", MG_RULE_SEND, T0_USEC, "fallback", 8, "ip", true,
		  1 },
	};
	struct shipped s;
	struct mg_rules *set = NULL;
	struct mg_err err = { 0 };

	shipped_load(&s);
	assert_int_equal(s.n, 5);
	if (mg_rules_parse(s.files, s.n, &s.vars, &s.tables, &set, &err) != MG_OK)
		fail_msg("shipped rules: %s", err.msg);
	assert_int_equal(mg_rules_count(set), 5);
	assert_int_equal(mg_rules_template_count(set), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_group g = group(cases[i].nf, cases[i].edf, "t.txt",
					  "abuse@as64496.example", cases[i].agg, cases[i].n_agg);
		struct mg_rule_decision d;

		print_message("case %zu: %s %s\n", i, cases[i].nf, cases[i].edf);
		g.has_last_sent = cases[i].has_last_sent;
		g.last_sent = cases[i].now - cases[i].last_sent_ago;
		g.inserted_at = cases[i].now - cases[i].inserted_ago;
		assert_int_equal(mg_rules_decide(set, &g, cases[i].now, &d, &err), MG_OK);
		assert_string_equal(d.rule, cases[i].rule);
		assert_int_equal(d.verdict, cases[i].verdict);
		if (d.verdict == MG_RULE_POSTPONED)
			assert_int_equal(d.due_at, cases[i].due);
		else
			assert_true(d.due_at <= cases[i].now);
		if (d.verdict == MG_RULE_SEND) {
			assert_string_equal(d.table, cases[i].table);
			assert_int_equal(d.n_cols, cases[i].n_cols);
			assert_string_equal(d.cols[1].title, cases[i].title2);
			assert_int_equal(d.attach_csv, cases[i].attach);
			assert_int_equal(d.n_copies, cases[i].n_copies);
			assert_string_equal(d.template_name, "t.txt");
			if (cases[i].asn_or_cidr != NULL)
				assert_string_equal(
					mg_rule_decision_lookup(&d, false, "asn_or_cidr"),
					cases[i].asn_or_cidr);
			/* the shared variables reach every rule */
			assert_string_equal(mg_rule_decision_lookup(&d, false, "ticket_prefix"),
					    "IntelMQ-Mailgen#");
		}
		mg_rule_decision_release(&d);
	}

	/* the malware rules pick the data location by placement */
	{
		struct mg_group g = group("malware-infection", "x_csv_attachment", "t.txt",
					  "a@b.example", NULL, 0);
		struct mg_rule_decision d;

		assert_int_equal(mg_rules_decide(set, &g, T0_USEC, &d, &err), MG_OK);
		assert_true(d.attach_csv);
		assert_string_equal(mg_rule_decision_lookup(&d, true, "data_location_en"),
				    "attached");
		assert_string_equal(mg_rule_decision_lookup(&d, true, "data_inline_separator_en"),
				    "");
		assert_string_equal(mg_rule_decision_lookup(&d, false, "data_location_de"),
				    "Nachfolgend");
		mg_rule_decision_release(&d);
	}
	mg_rules_free(set);
	shipped_release(&s);
}

/* Every allocation failing in turn gives MG_ENOMEM or success, never a crash or leak. */
static void test_torture(void **state)
{
	static const struct kv2 agg[] = { { "source.asn", "64496" },
					  { "time.observation", OBS_TEXT },
					  { "recipient_group", "Government" } };
	struct mg_rules *set = NULL;
	struct mg_err err = { 0 };
	struct shipped s;
	long n;
	int r;

	shipped_load(&s);
	for (n = 0; n < 100000; n++) {
		mg_alloc_fail_after(n);
		r = mg_rules_parse(s.files, s.n, &s.vars, &s.tables, &set, &err);
		mg_alloc_fail_after(-1);
		if (r == MG_OK)
			break;
		assert_int_equal(r, MG_ENOMEM);
		assert_null(set);
	}
	assert_int_equal(r, MG_OK);
	for (n = 0; n < 1000; n++) {
		struct mg_group g =
			group("shadowserver", "csv_Open-SNMP", "t.txt", "a@b.example", agg, 3);
		struct mg_rule_decision d;

		mg_alloc_fail_after(n);
		r = mg_rules_decide(set, &g, T0_USEC + 3 * HOUR, &d, &err);
		mg_alloc_fail_after(-1);
		if (r == MG_OK) {
			assert_int_equal(d.verdict, MG_RULE_SEND);
			assert_int_equal(d.n_copies, 1);
			assert_string_equal(mg_rule_decision_lookup(&d, false, "asn_or_cidr"),
					    "about AS 64496");
			mg_rule_decision_release(&d);
			break;
		}
		assert_int_equal(r, MG_ENOMEM);
	}
	assert_int_equal(r, MG_OK);
	mg_rules_free(set);
	shipped_release(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_timestamp),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_file_names),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_postpone),
		cmocka_unit_test(test_tables_placement),
		cmocka_unit_test(test_substitutions),
		cmocka_unit_test(test_shipped),
		cmocka_unit_test(test_torture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
