/* lib/explain.c - "why was this not sent yet?" for one directive */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "directive.h"
#include "explain.h"
#include "plugin.h"
#include "rules.h"

/* usec since the epoch as "2026-11-27T10:15:00Z" */
static const char *fmt_time(int64_t usec, char *buf, size_t size)
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		(void)snprintf(buf, size, "?");
	return buf;
}

static void add_keys(struct mg_buf *out, const struct mg_directive_state *s)
{
	(void)mg_buf_addf(out,
			  "recipient_address: %s\ntemplate_name: %s\nnotification_format: %s\n"
			  "event_data_format: %s\naggregate_identifier: %s\n",
			  s->recipient_address, s->template_name, s->notification_format,
			  s->event_data_format,
			  s->aggregate_literal != NULL ? s->aggregate_literal : "(NULL)");
}

/*
 * The decision for a pending group: the rule (or the built-in interval
 * rule) and when it is due.  *ret_verdict gets the word for the verdict
 * line unless something else decides it.
 */
static void add_decision(const struct mg_config *cfg, const struct mg_group *g, int64_t now,
			 struct mg_buf *out, const char **ret_verdict)
{
	struct mg_rule_decision d = { 0 };
	struct mg_err err = { 0 };
	const char *by = NULL;
	int64_t due_at;
	char when[32];

	if (!mg_config_has_formats(cfg)) {
		(void)mg_buf_adds(out, "rule: built-in (no format_rules_dir: interval rule, "
				       "fallback columns)\n");
		due_at = mg_group_due_at(g);
		if (due_at > now)
			by = g->retry_at == due_at ? "retry after a temporary failure"
						   : "notification interval";
	} else {
		if (mg_format_decide(cfg, g, now, &d, &err) < 0) {
			(void)mg_buf_addf(out, "rule: error: %s\n", err.msg);
			*ret_verdict = "error";
			return;
		}
		if (d.verdict == MG_RULE_NONE) {
			(void)mg_buf_adds(out, "rule: none (no format rule matches the group: it "
					       "fails when it is tried)\n");
			*ret_verdict = "no-rule";
			mg_rule_decision_release(&d);
			return;
		}
		(void)mg_buf_addf(out, "rule: %s\n", d.rule);
		(void)mg_buf_addf(out, "template: %s%s\ntable: %s\nplacement: %s\n",
				  d.template_name, d.template_inline ? " (inline)" : "", d.table,
				  d.attach_csv ? "attachment" : "inline");
		due_at = d.due_at;
		by = d.verdict == MG_RULE_POSTPONED ? d.postponed_by : NULL;
		mg_rule_decision_release(&d);
	}
	if (due_at > now) {
		(void)mg_buf_addf(out, "due: %s (postponed by %s)\n",
				  fmt_time(due_at, when, sizeof(when)), by != NULL ? by : "?");
		*ret_verdict = "postponed";
	} else {
		(void)mg_buf_adds(out, "due: now\n");
		*ret_verdict = "due";
	}
}

/* delivery.recipient_max_mails, when it applies */
static int add_recipient_limit(const struct mg_config *cfg, PGconn *conn, const char *rcpt,
			       int64_t now, struct mg_buf *out, const char **ret_verdict,
			       struct mg_err *err)
{
	int64_t free_at = 0;
	char when[32];
	int count = 0, r;

	if (cfg->recipient_max_mails <= 0)
		return MG_OK;
	r = mg_db_recipient_recent(conn, rcpt, cfg->recipient_window_sec, cfg->recipient_max_mails,
				   &count, &free_at, err);
	if (r < 0)
		return r;
	if (count < cfg->recipient_max_mails) {
		(void)mg_buf_addf(out, "recipient limit: %d of %d mails in the last %d s\n", count,
				  cfg->recipient_max_mails, cfg->recipient_window_sec);
		return MG_OK;
	}
	(void)mg_buf_addf(out,
			  "recipient limit: reached (%d mails in the last %d s, "
			  "delivery.recipient_max_mails); postponed until %s\n",
			  count, cfg->recipient_window_sec,
			  fmt_time(free_at > now ? free_at : now, when, sizeof(when)));
	if (strcmp(*ret_verdict, "due") == 0)
		*ret_verdict = "limited";
	return MG_OK;
}

int mg_explain_directive(const struct mg_config *cfg, PGconn *conn, int64_t id, int64_t now,
			 struct mg_buf *out, struct mg_err *err)
{
	struct mg_directive_state s = { 0 };
	struct mg_group g = { 0 };
	const char *verdict = "due";
	bool found = false;
	char when[32];
	int r;

	r = mg_db_directive_state(conn, id, &s, err);
	if (r < 0)
		goto out;
	if (!s.found) {
		r = mg_err_set(err, MG_EINPUT, "no directive with id %lld", (long long)id);
		goto out;
	}
	(void)mg_buf_addf(out, "directive: %lld\n", (long long)id);
	add_keys(out, &s);
	(void)mg_buf_addf(out, "event: %lld\ninserted_at: %s\n", (long long)s.event_id,
			  fmt_time(s.inserted_at, when, sizeof(when)));
	if (s.sent) {
		(void)mg_buf_addf(out, "state: sent with ticket %s at %s\n",
				  s.ticket[0] != '\0' ? s.ticket : "?",
				  s.sent_at != 0 ? fmt_time(s.sent_at, when, sizeof(when)) : "?");
		verdict = "sent";
		goto verdict;
	}
	if (s.dropped) {
		(void)mg_buf_addf(out, "state: dropped at %s: %s\n",
				  fmt_time(s.dropped_at, when, sizeof(when)),
				  s.drop_reason != NULL ? s.drop_reason : "");
		verdict = "dropped";
		goto verdict;
	}
	if (strcmp(s.medium, "email") != 0 || strcmp(s.endpoint, "source") != 0) {
		(void)mg_buf_addf(out,
				  "state: not mailed by mailgen (medium '%s', endpoint '%s'; only "
				  "'email' and 'source' are)\n",
				  s.medium, s.endpoint);
		verdict = "ignored";
		goto verdict;
	}
	(void)mg_buf_adds(out, "state: pending\n");
	r = mg_db_group_of_directive(conn, cfg->additional_directive_where, id, &g, &found, err);
	if (r < 0)
		goto out;
	if (!found) {
		(void)mg_buf_adds(out, "group: not selected by the scan (see "
				       "'database.additional_directive_where')\n");
		verdict = "excluded";
		goto verdict;
	}
	(void)mg_buf_addf(out, "group: %zu pending directives, %zu events", g.n_directives,
			  g.n_events);
	if (cfg->max_events_per_mail > 0 && g.n_directives > (size_t)cfg->max_events_per_mail)
		(void)mg_buf_addf(out, ", in %zu mails (delivery.max_events_per_mail %d)",
				  (g.n_directives + (size_t)cfg->max_events_per_mail - 1) /
					  (size_t)cfg->max_events_per_mail,
				  cfg->max_events_per_mail);
	(void)mg_buf_adds(out, "\n");
	if (g.has_last_sent)
		(void)mg_buf_addf(
			out, "last mail for these keys: %s; notification interval %lld s\n",
			fmt_time(g.last_sent, when, sizeof(when)), (long long)g.interval_sec);
	else
		(void)mg_buf_addf(out,
				  "last mail for these keys: none; notification interval %lld s\n",
				  (long long)g.interval_sec);
	if (s.has_failed_row && s.permanent)
		(void)mg_buf_addf(out,
				  "failed group: failed (id %lld, %d attempts), not retried until "
				  "'mailgenctl retry %lld': %s\n",
				  (long long)s.failed_id, s.attempts, (long long)s.failed_id,
				  s.fail_reason != NULL ? s.fail_reason : "");
	else if (s.has_failed_row)
		(void)mg_buf_addf(
			out, "failed group: deferred (id %lld, %d attempts), retried at %s: %s\n",
			(long long)s.failed_id, s.attempts,
			s.retry_at != 0 ? fmt_time(s.retry_at, when, sizeof(when)) : "?",
			s.fail_reason != NULL ? s.fail_reason : "");
	if (s.outbox_tickets != NULL)
		(void)mg_buf_addf(
			out,
			"outbox: mail %s waits in mailgen_outbox; it is sent again as it is "
			"at the next attempt\n",
			s.outbox_tickets);
	else if (g.has_outbox)
		(void)mg_buf_adds(out, "outbox: a mail of the group waits in mailgen_outbox\n");
	add_decision(cfg, &g, now, out, &verdict);
	if (s.has_failed_row && s.permanent) {
		verdict = "failed";
		goto verdict;
	}
	if (g.has_outbox) {
		verdict = "outbox";
		goto verdict;
	}
	if (s.has_failed_row && strcmp(verdict, "postponed") == 0 && g.retry_at > now)
		verdict = "deferred";
	r = add_recipient_limit(cfg, conn, g.recipient_address, now, out, &verdict, err);
	if (r < 0)
		goto out;
verdict:
	(void)mg_buf_addf(out, "verdict: %s\n", verdict);
	r = MG_OK;
out:
	mg_group_release(&g);
	mg_directive_state_release(&s);
	return r;
}
