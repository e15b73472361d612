/* lib/db.h - PostgreSQL access for workers and CLIs (blocking libpq) */
#ifndef MG_DB_H
#define MG_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "config.h"
#include "directive.h"
#include "mg-buf.h"
#include "mg-err.h"
#include "table.h"
#include "ticket.h"

/*
 * The libpq connection parameters of cfg as NULL-terminated keyword and
 * value arrays for PQconnectdbParams() (expand_dbname 0): the original's
 * database.event keys (name, username, password, host, port) under their
 * libpq names, every further keyword of database.event, then
 * client_encoding UTF8.  application_name (may be NULL) is passed as
 * fallback_application_name, so an application_name of the operator wins.
 * Keys not set are left out, so libpq's defaults and the PG* environment
 * variables (PGPASSFILE, PGSERVICEFILE, PGSSLMODE, ...) apply.
 *
 * *ret_keys and *ret_vals are malloc'd arrays (free() both) of strings
 * borrowed from cfg.  Values may be secret: never log them.
 */
int mg_db_conn_params(const struct mg_config *cfg, const char *application_name,
		      const char ***ret_keys, const char ***ret_vals);

/*
 * Connect with the settings of database.event.* (mg_db_conn_params).  The connection is in autocommit
 * mode with client_encoding UTF8.  Returns MG_ETEMP when the server
 * cannot be reached or refuses us (libpq does not tell authentication
 * failures apart from an unreachable server reliably), MG_ECONFIG when the
 * database lacks mailgen-c's tables (sql/notifications.sql not run).
 */
int mg_db_connect(const struct mg_config *cfg, const char *application_name, PGconn **ret_conn,
		  struct mg_err *err);

/*
 * Start a scan of the pending groups: directives with sent_id IS NULL,
 * medium 'email', endpoint 'source' and the operator's
 * additional_directive_where (the events table is joined only when it
 * mentions "events."), grouped by the five keys, oldest group first.  The
 * result is held by the server in a WITH HOLD cursor, so the client reads
 * it in bounded chunks with mg_db_scan_fetch() and may run other statements
 * on the same connection meanwhile.
 */
int mg_db_scan_open(PGconn *conn, const char *additional_where, struct mg_err *err);

/*
 * Fetch up to max groups of the open scan into a malloc'd array (*ret_n is
 * 0 and *ret_groups NULL at the end).  Each group carries directive_events
 * (the event of each directive), so it can be split by mg_group_split().  Release each with mg_group_release() and free() the
 * array.  A group the parser rejects (corrupt aggregate identifier) is
 * MG_EINPUT for the whole fetch: the caller should close the scan.
 */
int mg_db_scan_fetch(PGconn *conn, size_t max, struct mg_group **ret_groups, size_t *ret_n,
		     struct mg_err *err);

/* Close the scan (NULL-safe in spirit: closing a closed scan is fine). */
void mg_db_scan_close(PGconn *conn);

/*
 * Claim a group for this session: take a session-level advisory lock on
 * its keys (so that every mailgen process, on any host, skips a group
 * another one is working on, across the commits it makes), then keep the
 * directives of g that are still pending and not row-locked by anybody
 * (FOR UPDATE SKIP LOCKED), and refresh last_sent.  g's directive and
 * event ids are replaced by the claimed ones.
 *
 * *ret_claimed is false when another process holds the group or nothing
 * of it is pending any more (then no lock is held).  When true, the caller
 * must call mg_db_unclaim() when done.
 */
int mg_db_claim(PGconn *conn, struct mg_group *g, bool *ret_claimed, struct mg_err *err);

/* Release the advisory lock of a claimed group. */
void mg_db_unclaim(PGconn *conn, const struct mg_group *g);

/*
 * The end of a batch, in one round trip: release every claim of this
 * session (the session must hold no advisory locks but claims; also a lock
 * a failed claim statement may have left) and discard the session's
 * cached plans (see db.c).
 */
void mg_db_end_batch(PGconn *conn);

/*
 * Draw a ticket number race-free: the drawing processes serialise on the
 * ticket_day row, which restarts intelmq_ticket_seq at the first draw of
 * a new day (day in the server's time zone, as the original).  A clock
 * that went backwards behind ticket_day is MG_ETEMP with a clear message,
 * and nothing is drawn.  out holds MG_TICKET_LEN + 1 bytes.  On the usual
 * day (ticket_day is today) this is one autocommitted statement.
 */
int mg_db_new_ticket(PGconn *conn, char *out, struct mg_err *err);

/*
 * Load the events of g (all its event ids, ascending) as text cells for
 * cols: time.source as "YYYY-MM-DD HH:MM:SS" in UTC, "extra.<key>" from
 * the extra JSON (objects and arrays as JSON text), other fields as the
 * server prints them.  *ret_res owns the memory the cells point into:
 * PQclear() it after free()ing *ret_cells.  Unknown columns are MG_EINPUT.
 */
int mg_db_load_events(PGconn *conn, const struct mg_group *g, const struct mg_column *cols,
		      size_t n_cols, PGresult **ret_res, const char ***ret_cells, size_t *ret_rows,
		      struct mg_err *err);

/*
 * Record a mail the SMTP server accepted: insert the sent row (ticket,
 * sent_at = the Date header), link every directive of g still pending to
 * it, delete the mail's outbox row and the group's deferral, in one
 * statement, committed when it returns.  *ret_n_marked says how many
 * directives were linked: fewer than g names when some were deleted (or
 * sent) meanwhile.
 */
int mg_db_mark_sent(PGconn *conn, const struct mg_group *g, const char *ticket, int64_t sent_at,
		    size_t *ret_n_marked, struct mg_err *err);

/* Delete the outbox mail with this ticket (it was refused for good). */
int mg_db_outbox_delete(PGconn *conn, const char *ticket, struct mg_err *err);

/*
 * A mail as stored in mailgen_outbox: built, signed, ticket drawn, not yet
 * recorded as sent (docs/database.md "The outbox").
 */
struct mg_outbox_mail {
	char ticket[MG_TICKET_LEN + 1];
	char message_id[320];
	char *envelope_from; /* owned */
	char *message;	     /* owned; the exact bytes, CRLF line ends */
	size_t len;
	char *envelope_to; /* owned; the recipients, one per line (no address holds one) */
	/* a copy for the other placement of the CSV (format rules), or NULLs */
	char *copy_message;
	size_t copy_len;
	char *copy_envelope_to; /* one per line */
};

/* Free what ob owns and zero it.  NULL members are fine. */
void mg_outbox_mail_release(struct mg_outbox_mail *ob);

/*
 * Store ob, the mail for the (claimed) group g covering g's directives,
 * before it is handed to the SMTP server; committed when it returns.
 */
int mg_db_outbox_put(PGconn *conn, const struct mg_group *g, const struct mg_outbox_mail *ob,
		     struct mg_err *err);

/*
 * Look for a mail of the claimed group g in the outbox (the oldest one that
 * covers any of g's directives) and count this as an attempt.  When one is
 * found, *ret_found is true, *ret_ob gets it (release it with
 * mg_outbox_mail_release) and g's directive and event ids are replaced by
 * those of the mail that are still pending (which may include directives of
 * other parts of a split group: the caller holds the group's lock).  *ret_more says that further outbox mails of
 * the group wait (or a stale one was skipped), so the caller should come
 * back soon.
 */
int mg_db_outbox_take(PGconn *conn, struct mg_group *g, struct mg_outbox_mail *ret_ob,
		      bool *ret_found, bool *ret_more, struct mg_err *err);

/*
 * Record that group g failed: permanently ('failed': not retried until an
 * operator says so), or temporarily ('deferred': retried retry_delay_sec
 * from now; 'failed' once it has failed for give_up_sec, unless that is 0).
 * reason is the one-line error.  *ret_failed says which state the group is
 * in now, *ret_retry_at (usec, 0: none) when it is retried.
 */
int mg_db_group_failed(PGconn *conn, const struct mg_group *g, bool permanent, const char *reason,
		       int64_t retry_delay_sec, int give_up_sec, bool *ret_failed,
		       int64_t *ret_retry_at, struct mg_err *err);

/* One row of mailgen_failed_groups, for operators. */
struct mg_failed_group {
	int64_t id;
	bool permanent; /* 'failed'; else 'deferred' */
	int attempts;
	char *recipient_address, *template_name, *reason;
	int64_t first_failed, last_failed, retry_at; /* usec; retry_at 0: none */
	size_t n_directives;			     /* of the last attempt */
};

struct mg_failed_list {
	struct mg_failed_group *items;
	size_t n;
	size_t n_failed, n_deferred; /* totals, also beyond the items listed */
};

void mg_failed_list_release(struct mg_failed_list *l);

/* The first max failed or deferred groups (by id) and the totals. */
int mg_db_failed_list(PGconn *conn, size_t max, struct mg_failed_list *ret, struct mg_err *err);

/*
 * Release the failed (or deferred) group id, or every one when id is 0, so
 * that the next scan sends it.  *ret_n: how many were released.
 */
int mg_db_failed_retry(PGconn *conn, int64_t id, size_t *ret_n, struct mg_err *err);

/*
 * Give up on failed group id (state 'failed'; a deferred one is still being
 * tried): its pending directives are never mailed (listed in
 * mailgen_dropped_directives with who and the reason), its outbox mails
 * are deleted.  *ret_n: how many directives were dropped.  An unknown id
 * is MG_EINPUT.
 */
int mg_db_failed_drop(PGconn *conn, int64_t id, const char *who, size_t *ret_n, struct mg_err *err);

/*
 * A libpq notice processor that logs notices and warnings as one mg_log
 * line (LOG_WARNING for WARNING, else LOG_DEBUG) instead of libpq's raw
 * stderr output.  arg is a const char * naming the connection.
 */
void mg_db_notice(void *arg, const char *message);

/*
 * How many mails went to recipient within the last window_sec seconds, up to
 * max; when that reaches max, *ret_free_at is the moment (usec since the
 * epoch) the oldest of the last max mails leaves the window.
 */
int mg_db_recipient_recent(PGconn *conn, const char *recipient, int window_sec, int max,
			   int *ret_count, int64_t *ret_free_at, struct mg_err *err);

/*
 * The pending group of directive id as the scan would see it (the pending
 * directives sharing its five keys, under additional_where), also when the
 * group is in the failed state.  *ret_found is false when the directive does
 * not exist or no pending directive with its keys passes the scan's
 * conditions.  Read-only: no lock is taken.  Release *ret_group with
 * mg_group_release().
 */
int mg_db_group_of_directive(PGconn *conn, const char *additional_where, int64_t id,
			     struct mg_group *ret_group, bool *ret_found, struct mg_err *err);

/*
 * The outbox mail mg_db_outbox_take() would take for g, without taking it
 * (no attempt is counted, nothing is written).  Release *ret_ob with
 * mg_outbox_mail_release().
 */
int mg_db_outbox_peek(PGconn *conn, const struct mg_group *g, struct mg_outbox_mail *ret_ob,
		      bool *ret_found, struct mg_err *err);

/* What the database knows about one directive, for "why was this not sent yet?". */
struct mg_directive_state {
	int64_t id;
	bool found;
	char *recipient_address, *template_name, *notification_format, *event_data_format;
	char *aggregate_literal; /* NULL when the column is NULL */
	char *medium, *endpoint;
	int64_t event_id, inserted_at; /* usec */
	bool sent;
	char ticket[MG_TICKET_LEN + 1]; /* of the mail that carried it, "" */
	int64_t sent_at;
	bool dropped; /* by an operator (mailgenctl drop) */
	int64_t dropped_at;
	char *drop_reason;
	bool has_failed_row; /* its keys are in mailgen_failed_groups */
	bool permanent;	     /* 'failed'; else 'deferred' */
	int64_t failed_id, retry_at;
	int attempts;
	char *fail_reason;
	char *outbox_tickets; /* of outbox mails carrying it, space-separated; NULL: none */
};

void mg_directive_state_release(struct mg_directive_state *s);

/* Read the state of directive id (*ret->found false: no such directive).  Read-only. */
int mg_db_directive_state(PGconn *conn, int64_t id, struct mg_directive_state *ret,
			  struct mg_err *err);

/* True when the connection is unusable and must be made anew. */
bool mg_db_broken(PGconn *conn);

#endif /* MG_DB_H */
