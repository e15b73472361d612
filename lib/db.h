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

/*
 * Connect with the settings of database.event.* (libpq defaults and PG*
 * variables fill in what is not set).  The connection is in autocommit
 * mode with client_encoding UTF8.  Returns MG_ETEMP when the server
 * cannot be reached or refuses us (libpq does not tell authentication
 * failures apart from an unreachable server reliably).
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
 * Draw a ticket number race-free: the drawing processes serialise on the
 * ticket_day row, which restarts intelmq_ticket_seq at the first draw of
 * a new day (day in the server's time zone, as the original).  A clock
 * that went backwards behind ticket_day is MG_ETEMP with a clear message,
 * and nothing is drawn.  out holds MG_TICKET_LEN + 1 bytes.
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
 * sent_at = the Date header) and link every directive of g to it, in one
 * statement, committed when it returns.  Fewer directives still pending
 * than g names is MG_EINPUT (the row is recorded anyway).
 */
int mg_db_mark_sent(PGconn *conn, const struct mg_group *g, const char *ticket, int64_t sent_at,
		    struct mg_err *err);

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

/* True when the connection is unusable and must be made anew. */
bool mg_db_broken(PGconn *conn);

#endif /* MG_DB_H */
