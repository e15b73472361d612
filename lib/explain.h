/* lib/explain.h - "why was this not sent yet?" for one directive */
#ifndef MG_EXPLAIN_H
#define MG_EXPLAIN_H

#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "mg-buf.h"
#include "mg-err.h"

/*
 * Explain directive id at now (usec since the epoch) into out, as lines
 * "key: value" (docs/format-rules.md "Explain"): its group keys; whether it
 * was sent (ticket, sent_at), dropped or is pending; the group's row in
 * mailgen_failed_groups and its mails in mailgen_outbox; the format rule
 * that matches (or none, or the built-in interval rule without a rule
 * directory), the condition that postpones it and when it becomes due; the
 * per-recipient limit.  The line "verdict: WORD" says it in one word:
 * sent, dropped, ignored, excluded, failed, deferred, outbox, no-rule,
 * error, postponed, limited or due.
 *
 * Read-only: nothing is written and no lock is taken.  Returns MG_OK,
 * MG_EINPUT when there is no directive with that id, or the error of a
 * query.
 */
int mg_explain_directive(const struct mg_config *cfg, PGconn *conn, int64_t id, int64_t now,
			 struct mg_buf *out, struct mg_err *err);

#endif /* MG_EXPLAIN_H */
