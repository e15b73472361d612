/* tests/fuzz/fuzz_rules.c - fuzz rule-set parsing and the decision for a few groups */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mg-err.h"
#include "rules.h"

/*
 * The input is split at NUL or 0xff bytes into up to three parts: a rule
 * file, tables.json and variables.json (missing parts are left out).
 */
static size_t cut(const uint8_t *data, size_t size, size_t from)
{
	size_t i;

	for (i = from; i < size; i++)
		if (data[i] == 0x00 || data[i] == 0xff)
			break;
	return i;
}

static void decide(const struct mg_rules *set, const char *nf, const char *edf, struct mg_kv *agg,
		   size_t n_agg, int64_t now)
{
	struct mg_group g = { 0 };
	struct mg_rule_decision d;
	struct mg_err err = { 0 };
	int r;

	g.recipient_address = (char *)"abuse@as64496.example";
	g.template_name = (char *)"t.txt";
	g.notification_format = (char *)nf;
	g.event_data_format = (char *)edf;
	g.agg = agg;
	g.n_agg = n_agg;
	g.inserted_at = now - 600000000;
	g.interval_sec = 86400;
	g.has_last_sent = true;
	g.last_sent = now - 3600000000;
	fuzz_dirty_stack();
	r = mg_rules_decide(set, &g, now, &d, &err);
	FUZZ_CHECK(r == MG_OK || r == MG_EINPUT);
	if (r != MG_OK) {
		FUZZ_CHECK(err.msg[0] != '\0');
		return;
	}
	switch (d.verdict) {
	case MG_RULE_NONE:
		FUZZ_CHECK(d.rule == NULL);
		break;
	case MG_RULE_POSTPONED:
		FUZZ_CHECK(d.rule != NULL && d.due_at > now && d.postponed_by != NULL);
		break;
	case MG_RULE_SEND:
		FUZZ_CHECK(d.rule != NULL && d.due_at <= now && d.template_name != NULL);
		FUZZ_CHECK(d.n_cols > 0 && d.cols != NULL && d.table != NULL);
		for (size_t i = 0; i < d.n_cols; i++)
			FUZZ_CHECK(d.cols[i].field != NULL && d.cols[i].title != NULL);
		FUZZ_CHECK(!d.template_inline || d.template_len == strlen(d.template_text));
		for (size_t i = 0; i < d.n_subst; i++) {
			FUZZ_CHECK(d.subst[i].inline_value != NULL &&
				   d.subst[i].attach_value != NULL);
			FUZZ_CHECK(mg_rule_decision_lookup(&d, false, d.subst[i].name) != NULL);
		}
		for (size_t i = 0; i < d.n_copies; i++)
			FUZZ_CHECK(d.copies[i].n_to > 0 && d.copies[i].to[0] != NULL);
		break;
	}
	mg_rule_decision_release(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mg_kv agg[] = {
		{ (char *)"source.asn", (char *)"64496" },
		{ (char *)"time.observation", (char *)"2026-11-26 06:00:00+00" },
		{ (char *)"recipient_group", (char *)"Government" },
	};
	const char *text = (const char *)data;
	struct mg_rules_src file = { "10_fuzz.json", text, 0 }, tables = { "tables.json", NULL, 0 },
			    vars = { "variables.json", NULL, 0 };
	struct mg_rules *set = NULL;
	struct mg_err err = { 0 };
	size_t a, b;
	int r;

	a = cut(data, size, 0);
	file.len = a;
	if (a < size) {
		b = cut(data, size, a + 1);
		tables.text = text + a + 1;
		tables.len = b - a - 1;
		if (b < size) {
			vars.text = text + b + 1;
			vars.len = size - b - 1;
		}
	}
	fuzz_dirty_stack();
	r = mg_rules_parse(&file, 1, vars.text != NULL ? &vars : NULL,
			   tables.text != NULL ? &tables : NULL, &set, &err);
	/* no allocation fails here: anything but ECONFIG is a bug */
	FUZZ_CHECK(r == MG_OK || r == MG_ECONFIG);
	if (r != MG_OK) {
		FUZZ_CHECK(set == NULL && err.msg[0] != '\0');
		return 0;
	}
	for (size_t i = 0; i < mg_rules_template_count(set); i++)
		FUZZ_CHECK(mg_rules_template(set, i) != NULL);
	decide(set, "shadowserver", "csv_Open-SNMP", agg, 3, 1795683600000000LL);
	decide(set, "malware-infection", "x_csv_attachment", agg, 1, 1795683600000000LL);
	decide(set, "demo", "x", NULL, 0, 0);
	decide(set, "other", "", agg + 2, 1, 1795672800000000LL);
	mg_rules_free(set);
	return 0;
}
