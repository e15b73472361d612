/* tests/unit/test_render.c - a group rendered as the original's fallback format does */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "mg-alloc.h"
#include "render.h"

static const char tmpl[] = "\n  Ticket $ticket_number for AS${source.asn}  \n\n"
			   "Dear $$ friends,\n\n${events_as_csv}\nBye\n\n\n";

static struct mg_kv agg[] = {
	{ (char *)"source.asn", (char *)"64496" },
	{ (char *)"time.observation", (char *)"2026-11-26 06:00:00+00" },
};

static const char *const cells[] = {
	"64496", "192.0.2.1", "2026-11-26 05:00:00", "53", NULL, NULL, NULL,   "udp",
	"64496", "192.0.2.2", "2026-11-26 05:01:00", "53", NULL, NULL, "x\"y", "udp",
};

static void setup_in(struct mg_render_in *in, struct mg_group *g)
{
	memset(g, 0, sizeof(*g));
	g->agg = agg;
	g->n_agg = 2;
	g->event_data_format = (char *)"csv";
	memset(in, 0, sizeof(*in));
	in->group = g;
	in->template_name = "t.txt";
	in->template_text = tmpl;
	in->template_len = strlen(tmpl);
	in->ticket = "20261126-10000001";
	in->cols = mg_table_fallback_columns;
	in->n_cols = mg_table_fallback_n_columns;
	in->cells = cells;
	in->n_rows = 2;
	in->max_bytes = 1 << 20;
}

#define CSV                                                                                            \
	"\"asn\",\"ip\",\"timestamp\",\"src_port\",\"dst_ip\",\"dst_port\",\"dst_host\",\"proto\"\r\n" \
	"\"64496\",\"192.0.2.1\",\"2026-11-26 05:00:00\",\"53\",\"\",\"\",\"\",\"udp\"\r\n"            \
	"\"64496\",\"192.0.2.2\",\"2026-11-26 05:01:00\",\"53\",\"\",\"\",\"x\"\"y\",\"udp\"\r\n"

static void test_inline(void **state)
{
	struct mg_render_in in;
	struct mg_group g;
	struct mg_rendered out = { 0 };
	struct mg_err err = { 0 };

	setup_in(&in, &g);
	assert_int_equal(mg_render(&in, &out, &err), MG_OK);
	assert_string_equal(out.subject, "Ticket 20261126-10000001 for AS64496");
	assert_string_equal(out.body, "Dear $ friends,\n\n" CSV "\nBye\n");
	assert_null(out.csv);
	mg_rendered_release(&out);
}

static void test_attachment(void **state)
{
	struct mg_render_in in;
	struct mg_group g;
	struct mg_rendered out = { 0 };
	struct mg_err err = { 0 };

	setup_in(&in, &g);
	in.attach_csv = true;
	assert_int_equal(mg_render(&in, &out, &err), MG_OK);
	assert_string_equal(out.body, "Dear $ friends,\n\n\nBye\n");
	assert_string_equal(out.csv, CSV);
	assert_int_equal(out.csv_len, strlen(CSV));
	mg_rendered_release(&out);
}

/* Aggregate identifier keys are added last in the original, so they win. */
static void test_precedence(void **state)
{
	static struct mg_kv agg2[] = { { (char *)"ticket_number", (char *)"from-aggregate" } };
	static const char t[] = "S $ticket_number\nB";
	struct mg_render_in in;
	struct mg_group g;
	struct mg_rendered out = { 0 };
	struct mg_err err = { 0 };

	setup_in(&in, &g);
	g.agg = agg2;
	g.n_agg = 1;
	in.template_text = t;
	in.template_len = strlen(t);
	assert_int_equal(mg_render(&in, &out, &err), MG_OK);
	assert_string_equal(out.subject, "S from-aggregate");
	mg_rendered_release(&out);
}

/* ${mail_part} of ${mail_parts}: "1" of "1" unless the group was split. */
static void test_mail_part(void **state)
{
	static const char t[] = "Report $ticket_number (part ${mail_part} of ${mail_parts})\n"
				"Part $mail_part/$mail_parts";
	static const struct {
		size_t part, n_parts;
		const char *subject, *body;
	} cases[] = {
		{ 0, 0, "Report 20261126-10000001 (part 1 of 1)", "Part 1/1\n" },
		{ 1, 3, "Report 20261126-10000001 (part 1 of 3)", "Part 1/3\n" },
		{ 3, 3, "Report 20261126-10000001 (part 3 of 3)", "Part 3/3\n" },
		{ 12, 200, "Report 20261126-10000001 (part 12 of 200)", "Part 12/200\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_render_in in;
		struct mg_group g;
		struct mg_rendered out = { 0 };
		struct mg_err err = { 0 };

		setup_in(&in, &g);
		g.part = cases[i].part;
		g.n_parts = cases[i].n_parts;
		in.template_text = t;
		in.template_len = strlen(t);
		print_message("case %zu\n", i);
		assert_int_equal(mg_render(&in, &out, &err), MG_OK);
		assert_string_equal(out.subject, cases[i].subject);
		assert_string_equal(out.body, cases[i].body);
		mg_rendered_release(&out);
	}
}

/* An aggregate identifier key named mail_part wins, as for ticket_number. */
static void test_mail_part_precedence(void **state)
{
	static struct mg_kv agg2[] = { { (char *)"mail_part", (char *)"from-aggregate" } };
	static const char t[] = "S $mail_part $mail_parts\nB";
	struct mg_render_in in;
	struct mg_group g;
	struct mg_rendered out = { 0 };
	struct mg_err err = { 0 };

	setup_in(&in, &g);
	g.agg = agg2;
	g.n_agg = 1;
	g.part = 2;
	g.n_parts = 2;
	in.template_text = t;
	in.template_len = strlen(t);
	assert_int_equal(mg_render(&in, &out, &err), MG_OK);
	assert_string_equal(out.subject, "S from-aggregate 2");
	mg_rendered_release(&out);
}

static void test_errors(void **state)
{
	static const struct {
		const char *tmpl;
		const char *want;
	} cases[] = {
		{ "Subject ${nope}\nbody", "template 't.txt', subject: unknown name 'nope'" },
		{ "Subject\nbody $ 5", "template 't.txt', body: invalid placeholder" },
		{ "Subject\nAS ${Source.ASN}", "unknown name 'Source.ASN'" },
		{ " \n\t\n", "template 't.txt': " },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_render_in in;
		struct mg_group g;
		struct mg_rendered out = { 0 };
		struct mg_err err = { 0 };

		setup_in(&in, &g);
		in.template_text = cases[i].tmpl;
		in.template_len = strlen(cases[i].tmpl);
		print_message("case %zu\n", i);
		assert_int_equal(mg_render(&in, &out, &err), MG_EINPUT);
		if (strstr(err.msg, cases[i].want) == NULL)
			fail_msg("got \"%s\", want \"%s\"", err.msg, cases[i].want);
		assert_null(out.subject);
	}
}

/* Aggregate keys and values from a SQL_ASCII database may be any bytes. */
static void test_aggregate_not_utf8(void **state)
{
	static struct mg_kv bad_value[] = {
		{ (char *)"source.asn", (char *)"64496\xff" },
	};
	static struct mg_kv bad_key[] = {
		{ (char *)"source.\xc3", (char *)"64496" },
	};
	static const char *const bad_cells[] = {
		"64496", "192.0.2.1", "2026-11-26 05:00:00", "53", NULL, NULL, "h\xfe", "udp",
	};
	struct mg_render_in in;
	struct mg_group g;
	struct mg_rendered out = { 0 };
	struct mg_err err = { 0 };

	setup_in(&in, &g);
	g.agg = bad_value;
	g.n_agg = 1;
	assert_int_equal(mg_render(&in, &out, &err), MG_EINPUT);
	assert_string_equal(err.msg, "aggregate identifier 'source.asn': value is not valid UTF-8");
	g.agg = bad_key;
	assert_int_equal(mg_render(&in, &out, &err), MG_EINPUT);
	assert_string_equal(err.msg, "aggregate identifier: key 1 is not valid UTF-8");
	setup_in(&in, &g);
	in.cells = bad_cells;
	in.n_rows = 1;
	assert_int_equal(mg_render(&in, &out, &err), MG_EINPUT);
	assert_string_equal(
		err.msg,
		"events as CSV: event row 1 of 1, field 'destination.fqdn': not valid UTF-8");
	assert_null(out.subject);
}

static void test_placement_rule(void **state)
{
	assert_true(mg_render_wants_attachment("malware_csv_attachment"));
	assert_false(mg_render_wants_attachment("malware_csv_inline"));
	assert_false(mg_render_wants_attachment("csv_attachment_x"));
	assert_false(mg_render_wants_attachment(""));
}

static void test_torture(void **state)
{
	for (long n = 0; n < 200; n++) {
		struct mg_render_in in;
		struct mg_group g;
		struct mg_rendered out = { 0 };
		struct mg_err err = { 0 };
		int r;

		setup_in(&in, &g);
		in.attach_csv = true;
		mg_alloc_fail_after(n);
		r = mg_render(&in, &out, &err);
		mg_alloc_fail_after(-1);
		if (r == MG_OK) {
			mg_rendered_release(&out);
			return;
		}
		assert_int_equal(r, MG_ENOMEM);
	}
	fail_msg("never succeeded");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_inline),
		cmocka_unit_test(test_attachment),
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_mail_part),
		cmocka_unit_test(test_mail_part_precedence),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_aggregate_not_utf8),
		cmocka_unit_test(test_placement_rule),
		cmocka_unit_test(test_torture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
