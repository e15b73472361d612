/* lib/log.h - logging: journald fields under systemd, one plain line on stderr otherwise */
#ifndef MG_LOG_H
#define MG_LOG_H

#include <syslog.h>

/*
 * Context an operator needs to find the directives and events behind a
 * log line.  Every member may be NULL.  Borrowed for the call.
 */
struct mg_log_ctx {
	const char *directive_ids; /* "17,18" */
	const char *event_ids;	   /* "4711" */
	const char *ticket;
	const char *recipient;
};

/*
 * Set the program name and the most verbose priority written (LOG_INFO by
 * default).  Decides once whether stderr is the journal ($JOURNAL_STREAM
 * names our stderr): then records go to journald with the fields
 * MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, MAILGEN_DIRECTIVE_IDS,
 * MAILGEN_EVENT_IDS, MAILGEN_TICKET, MAILGEN_RECIPIENT.  Call before threads
 * start.
 */
void mg_log_init(const char *ident, int max_prio);

/* Change the most verbose priority written.  Thread-safe. */
void mg_log_set_level(int max_prio);

/*
 * Write one record.  Control characters in the message are masked so a
 * record is always one line.  Plain form:
 *   "intelmqcbmail: ERROR: <message> directive_ids=1,2 event_ids=3"
 * Thread-safe; never fails visibly (logging must not take the program down).
 */
void mg_log(int prio, const struct mg_log_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif /* MG_LOG_H */
