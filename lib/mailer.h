/* lib/mailer.h - one group to one mail: claim, render, sign, send, record */
#ifndef MG_MAILER_H
#define MG_MAILER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "directive.h"
#include "mg-err.h"
#include "ticket.h"

/* What happened to the groups handed to a mailer so far. */
struct mg_mailer_stats {
	unsigned long sent;	 /* accepted by the SMTP server (would be, in a dry run) */
	unsigned long postponed; /* not due yet */
	unsigned long errors;	 /* failed; the group stays pending, retried at the next scan */
	unsigned long deferred;	 /* failed temporarily: retried after the group's back-off */
	unsigned long failed;	 /* failed permanently: not retried until an operator says so */
	unsigned long skipped;	 /* another process had it, or it was sent meanwhile */
	unsigned long directives_sent; /* directives of the mails sent */
	/*
	 * Earliest moment a group postponed by the last mg_mailer_process()
	 * call becomes due (usec since the epoch; INT64_MAX: none).
	 */
	int64_t next_due;
	char last_error[256]; /* the latest failure of a group, "" when none */
};

struct mg_mailer;

/*
 * A mailer works on the groups it is given with the connection conn (borrowed,
 * autocommit), signing with its own gpgme context when openpgp.always_sign
 * is set.  In a dry run it renders and signs but sends nothing and changes
 * nothing in the database (no ticket is drawn: "YYYYMMDD-00000000" stands
 * in for it).  Returns MG_ECONFIG for an unusable sender or signing key.
 * Not thread-safe: one mailer per thread.
 */
int mg_mailer_new(const struct mg_config *cfg, PGconn *conn, bool dry_run, struct mg_mailer **ret,
		  struct mg_err *err);

/* NULL-safe. */
void mg_mailer_free(struct mg_mailer *m);

/*
 * Process groups[0..n): claim each and postpone it if it is not due; a
 * group whose mail waits in the outbox gets that mail again, as it was;
 * for the others render, sign and queue the mails, storing each in the
 * outbox, and hand them to the SMTP server over one connection per
 * delivery.mails_per_session mails, recording each accepted mail in the
 * database before the next one is sent.  Every failure is logged once with
 * the group's directive and event ids.  A group the server refuses (5xx),
 * or whose mail cannot be built from its data, is put into the failed
 * state; one the server defers (4xx) is retried after its own back-off;
 * after connection trouble it simply stays pending.
 *
 * All parts of a group split by mg_group_split() must come in the same
 * call (see mg_group_span()): every group is claimed before any mail is
 * sent, so the later parts are not postponed by the notification interval
 * that the first part's mail starts.  n may therefore exceed
 * delivery.mails_per_session.
 *
 * Returns MG_OK, or MG_ETEMP when the SMTP server could not be reached or
 * the database connection broke (the caller should stop for now: the
 * remaining groups stay pending).
 */
int mg_mailer_process(struct mg_mailer *m, struct mg_group *groups, size_t n);

/* What mg_mailer_preview() found besides the mail. */
struct mg_preview {
	char *message; /* owned: the complete message as it would be sent (CRLF) */
	size_t len;
	char rule[256];			/* the format rule that decided; "" without format rules */
	bool postponed;			/* not due at now: this is the mail it gets once due */
	int64_t due_at;			/* when it is due (usec; <= now: due now) */
	char postponed_by[64];		/* the condition holding it back longest, "" */
	bool from_outbox;		/* the mail waiting in the outbox, to be sent again as is */
	char ticket[MG_TICKET_LEN + 1]; /* "YYYYMMDD-00000000", or the outbox mail's */
};

/* Free what p owns and zero it.  NULL-safe. */
void mg_preview_release(struct mg_preview *p);

/*
 * Render group g (from mg_db_group_of_directive(), split as the scan does)
 * exactly as it would be sent, with a mailer made for a dry run: the same
 * rule decision, template, table, placement, substitutions and signature,
 * with the ticket "YYYYMMDD-00000000".  Nothing is claimed, drawn, sent or
 * written.  A group not due at now is rendered as it will be when due (the
 * rule decided at its due time), with ret->postponed set; a group whose
 * mail waits in the outbox gives that mail.  Returns MG_EINPUT when no rule
 * matches or the mail cannot be built from the group's data (err says why),
 * other errors as mg_mailer_process() would meet them.
 */
int mg_mailer_preview(struct mg_mailer *m, struct mg_group *g, int64_t now, struct mg_preview *ret,
		      struct mg_err *err);

/* How the mailer signs (mg_sign_method()), NULL when it does not.  Borrowed. */
const char *mg_mailer_sign_method(const struct mg_mailer *m);

/* The counters so far.  Borrowed. */
const struct mg_mailer_stats *mg_mailer_stats(const struct mg_mailer *m);

#endif /* MG_MAILER_H */
