/* lib/db.c - PostgreSQL access for workers and CLIs (blocking libpq) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "mg-alloc.h"
#include "ticket.h"
#include "util.h"

#define SQL_MAX	       (1 << 20)
#define IDS_PARAM_MAX  ((size_t)256 << 20)
#define SCAN_CURSOR    "mailgen_pending"
#define ADVISORY_CLASS "19783" /* 0x4d47, "MG": our class of two-key advisory locks */

/*
 * The server's primary message; libpq's own messages can span lines ("...
 * This probably means the server terminated abnormally"), so keep the first.
 * The result lives in a per-thread buffer until the next call.
 */
static const char *db_message(PGconn *conn, const PGresult *res)
{
	static __thread char line[300];
	const char *m = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	if (m == NULL || m[0] == '\0')
		m = PQerrorMessage(conn);
	(void)snprintf(line, sizeof(line), "%.*s", (int)strcspn(m, "\n"), m);
	return line;
}

/*
 * What a failed statement means for the group: connection trouble
 * (SQLSTATE classes 08, 40, 53, 57) is temporary; anything else is a
 * problem with what we asked, which retrying will not fix.
 */
static int db_classify(PGconn *conn, const PGresult *res)
{
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	if (PQstatus(conn) != CONNECTION_OK || state == NULL)
		return MG_ETEMP;
	if (strncmp(state, "08", 2) == 0 || strncmp(state, "40", 2) == 0 ||
	    strncmp(state, "53", 2) == 0 || strncmp(state, "57", 2) == 0 ||
	    strcmp(state, "55P03") == 0)
		return MG_ETEMP;
	return MG_EINPUT;
}

/* Run a statement whose result rows, if any, do not matter; err says what failed. */
static int exec_cmd(PGconn *conn, const char *what, const char *sql, struct mg_err *err)
{
	PGresult *res = PQexec(conn, sql);
	int r = MG_OK;

	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		r = mg_err_set(err, db_classify(conn, res), "%s failed: %s", what,
			       db_message(conn, res));
	PQclear(res);
	return r;
}

void mg_db_notice(void *arg, const char *message)
{
	const char *what = arg;
	int prio = strncmp(message, "WARNING", 7) == 0 ? LOG_WARNING : LOG_DEBUG;

	/* one line, without libpq's trailing newline */
	mg_log(prio, NULL, "%s: server said: %.*s", what != NULL ? what : "database",
	       (int)strcspn(message, "\n"), message);
}

bool mg_db_broken(PGconn *conn)
{
	return conn == NULL || PQstatus(conn) != CONNECTION_OK;
}

int mg_db_connect(const struct mg_config *cfg, const char *application_name, PGconn **ret_conn,
		  struct mg_err *err)
{
	const char *keys[8], *vals[8];
	PGconn *conn;
	size_t n = 0;
	int r;

#define KV(k, v)                       \
	do {                           \
		if ((v) != NULL) {     \
			keys[n] = (k); \
			vals[n] = (v); \
			n++;           \
		}                      \
	} while (0)
	KV("dbname", cfg->db_name);
	KV("user", cfg->db_user);
	KV("password", cfg->db_password);
	KV("host", cfg->db_host);
	KV("port", cfg->db_port);
	KV("application_name", application_name);
	KV("client_encoding", "UTF8");
#undef KV
	keys[n] = NULL;
	vals[n] = NULL;
	conn = PQconnectdbParams(keys, vals, 0);
	if (conn == NULL)
		return mg_err_set(err, MG_ENOMEM, "database: out of memory");
	if (PQstatus(conn) != CONNECTION_OK) {
		const char *m = PQerrorMessage(conn);
		/* libpq's message may span lines; keep the first */
		size_t len = strcspn(m, "\n");

		r = mg_err_set(err, MG_ETEMP, "cannot connect to database '%s': %.*s", cfg->db_name,
			       (int)len, m);
		PQfinish(conn);
		return r;
	}
	(void)PQsetNoticeProcessor(conn, mg_db_notice, (void *)"database");
	/*
	 * As the original: the ticket day and every time we read are UTC,
	 * whatever the server, the role or PGTZ say.
	 */
	r = exec_cmd(conn, "setting the time zone", "SET TIME ZONE 'UTC'", err);
	if (r < 0) {
		PQfinish(conn);
		return r;
	}
	*ret_conn = conn;
	return MG_OK;
}

int mg_db_scan_open(PGconn *conn, const char *additional_where, struct mg_err *err)
{
	struct mg_buf sql = MG_BUF_INIT(SQL_MAX);
	bool has_where = additional_where != NULL && additional_where[0] != '\0';
	int r;

	/* keys of the original's PENDING_DIRECTIVES_QUERY; d3 is its alias too */
	r = mg_buf_addf(
		&sql,
		"DECLARE " SCAN_CURSOR " NO SCROLL CURSOR WITH HOLD FOR "
		"SELECT d.recipient_address, d.template_name, d.notification_format,"
		" d.event_data_format, d.aggregate_identifier::text,"
		" array_agg(d.id ORDER BY d.id)::text,"
		" array_agg(d.events_id ORDER BY d.id)::text," /* aligned with the ids */
		" (extract(epoch FROM max(d.inserted_at)) * 1000000)::bigint,"
		" extract(epoch FROM max(d.notification_interval))::bigint,"
		" (SELECT (extract(epoch FROM s.sent_at) * 1000000)::bigint"
		"    FROM directives AS d2 JOIN sent AS s ON d2.sent_id = s.id"
		"   WHERE d2.recipient_address = d.recipient_address"
		"     AND d2.template_name = d.template_name"
		"     AND d2.notification_format = d.notification_format"
		"     AND d2.event_data_format = d.event_data_format"
		"     AND d2.aggregate_identifier = d.aggregate_identifier"
		"   ORDER BY d2.inserted_at DESC LIMIT 1)"
		" FROM (SELECT d3.id, d3.events_id, d3.recipient_address, d3.template_name,"
		"         d3.notification_format, d3.event_data_format, d3.notification_interval,"
		"         d3.aggregate_identifier, d3.inserted_at"
		"        FROM directives AS d3 %s"
		"       WHERE d3.sent_id IS NULL AND d3.medium = 'email'"
		"         AND d3.endpoint = 'source' %s%s%s) AS d"
		" GROUP BY d.recipient_address, d.template_name, d.notification_format,"
		"          d.event_data_format, d.aggregate_identifier"
		" ORDER BY min(d.id)",
		has_where && strstr(additional_where, "events.") != NULL
			? "JOIN events ON d3.events_id = events.id"
			: "",
		has_where ? "AND (" : "", has_where ? additional_where : "", has_where ? ")" : "");
	if (r < 0) {
		r = mg_err_set(err, MG_ENOMEM, "scan: query too large");
		goto out;
	}
	mg_db_scan_close(conn);
	r = exec_cmd(conn, "scan: BEGIN", "BEGIN", err);
	if (r < 0)
		goto out;
	r = exec_cmd(conn, "scan of pending directives", mg_buf_str(&sql), err);
	if (r < 0) {
		PQclear(PQexec(conn, "ROLLBACK"));
		if (has_where && r == MG_EINPUT)
			mg_err_prefix(err, "(check 'database.additional_directive_where') ");
		goto out;
	}
	r = exec_cmd(conn, "scan: COMMIT", "COMMIT", err);
out:
	mg_buf_release(&sql);
	return r;
}

void mg_db_scan_close(PGconn *conn)
{
	PGresult *res;

	if (mg_db_broken(conn))
		return;
	res = PQexec(conn, "SELECT 1 FROM pg_cursors WHERE name = '" SCAN_CURSOR "'");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
		PQclear(PQexec(conn, "CLOSE " SCAN_CURSOR));
	PQclear(res);
}

static int dup_field(const PGresult *res, int row, int col, char **ret)
{
	*ret = mg_strdup(PQgetvalue(res, row, col));
	return *ret != NULL ? MG_OK : MG_ENOMEM;
}

static int group_from_row(const PGresult *res, int row, struct mg_group *g, struct mg_err *err)
{
	size_t n_events = 0;
	int64_t v;
	int r;

	memset(g, 0, sizeof(*g));
	if (dup_field(res, row, 0, &g->recipient_address) < 0 ||
	    dup_field(res, row, 1, &g->template_name) < 0 ||
	    dup_field(res, row, 2, &g->notification_format) < 0 ||
	    dup_field(res, row, 3, &g->event_data_format) < 0 ||
	    dup_field(res, row, 4, &g->aggregate_literal) < 0) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto fail;
	}
	/* a NULL aggregate_identifier (not written by the trigger) groups as none */
	r = mg_pgarray_parse_pairs(PQgetisnull(res, row, 4) ? "{}" : g->aggregate_literal, &g->agg,
				   &g->n_agg, err);
	if (r == MG_OK)
		r = mg_pgarray_parse_ids(PQgetvalue(res, row, 5), &g->directive_ids,
					 &g->n_directives, err);
	if (r == MG_OK)
		r = mg_pgarray_parse_ids(PQgetvalue(res, row, 6), &g->directive_events, &n_events,
					 err);
	if (r == MG_OK && n_events != g->n_directives)
		r = mg_err_set(err, MG_EINPUT, "%zu directive ids but %zu event ids",
			       g->n_directives, n_events);
	if (r == MG_OK)
		r = mg_group_collect_events(g, err);
	if (r < 0)
		goto fail;
	g->inserted_at = mg_parse_int64(PQgetvalue(res, row, 7), INT64_MIN, INT64_MAX, &v) ? v : 0;
	g->interval_sec = mg_parse_int64(PQgetvalue(res, row, 8), INT64_MIN, INT64_MAX, &v) ? v : 0;
	g->has_last_sent = !PQgetisnull(res, row, 9) &&
			   mg_parse_int64(PQgetvalue(res, row, 9), INT64_MIN, INT64_MAX, &v);
	g->last_sent = g->has_last_sent ? v : 0;
	return MG_OK;
fail:
	mg_group_release(g);
	return r;
}

int mg_db_scan_fetch(PGconn *conn, size_t max, struct mg_group **ret_groups, size_t *ret_n,
		     struct mg_err *err)
{
	struct mg_group *groups = NULL;
	PGresult *res = NULL;
	char sql[128];
	int n = 0, r;

	(void)snprintf(sql, sizeof(sql), "FETCH FORWARD %zu FROM " SCAN_CURSOR, max);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "scan: fetching groups failed: %s",
			       db_message(conn, res));
		goto out;
	}
	n = PQntuples(res);
	groups = mg_calloc((size_t)n, sizeof(*groups));
	if (groups == NULL) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		r = group_from_row(res, i, &groups[i], err);
		if (r < 0) {
			mg_err_prefix(err, "scan: group of '%.100s' template '%.100s': ",
				      PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
			for (int j = 0; j < i; j++)
				mg_group_release(&groups[j]);
			goto out;
		}
	}
	if (n == 0) { /* the end: nothing to hand over */
		free(groups);
		groups = NULL;
	}
	*ret_groups = groups;
	*ret_n = (size_t)n;
	groups = NULL;
	r = MG_OK;
out:
	free(groups);
	PQclear(res);
	return r;
}

/* The advisory lock key of a group, computed by the server from its five keys. */
#define GROUP_LOCK_KEY                                                         \
	"hashtext(concat_ws(E'\\x1f', $1::text, $2::text, $3::text, $4::text," \
	" coalesce($5::text, '')))"

static void group_key_params(const struct mg_group *g, const char *params[5])
{
	params[0] = g->recipient_address;
	params[1] = g->template_name;
	params[2] = g->notification_format;
	params[3] = g->event_data_format;
	params[4] = g->aggregate_literal;
}

void mg_db_unclaim(PGconn *conn, const struct mg_group *g)
{
	static const char sql[] =
		"SELECT pg_advisory_unlock(" ADVISORY_CLASS ", " GROUP_LOCK_KEY ")";
	const char *params[5];

	if (mg_db_broken(conn))
		return; /* the server dropped the session, and the lock with it */
	group_key_params(g, params);
	PQclear(PQexecParams(conn, sql, 5, NULL, params, NULL, NULL, 0));
}

int mg_db_claim(PGconn *conn, struct mg_group *g, bool *ret_claimed, struct mg_err *err)
{
	static const char lock_sql[] =
		"SELECT pg_try_advisory_lock(" ADVISORY_CLASS ", " GROUP_LOCK_KEY ")";
	static const char rows_sql[] = "SELECT array_agg(id ORDER BY id)::text,"
				       " array_agg(DISTINCT events_id ORDER BY events_id)::text"
				       " FROM (SELECT id, events_id FROM directives"
				       "        WHERE id = ANY ($1::bigint[]) AND sent_id IS NULL"
				       "        FOR UPDATE SKIP LOCKED) AS pending";
	static const char last_sql[] =
		"SELECT (extract(epoch FROM s.sent_at) * 1000000)::bigint"
		"  FROM directives AS d2 JOIN sent AS s ON d2.sent_id = s.id"
		" WHERE d2.recipient_address = $1 AND d2.template_name = $2"
		"   AND d2.notification_format = $3 AND d2.event_data_format = $4"
		"   AND d2.aggregate_identifier IS NOT DISTINCT FROM $5::text[]"
		" ORDER BY d2.inserted_at DESC LIMIT 1";
	struct mg_buf ids = MG_BUF_INIT(IDS_PARAM_MAX);
	PGresult *res = NULL;
	const char *params[5];
	int64_t *dids = NULL, *eids = NULL, v;
	size_t n_dids = 0, n_eids = 0;
	bool locked = false;
	int r;

	*ret_claimed = false;
	group_key_params(g, params);
	res = PQexecParams(conn, lock_sql, 5, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "claiming the group failed: %s",
			       db_message(conn, res));
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		r = MG_OK; /* another process is working on it */
		goto out;
	}
	locked = true;
	PQclear(res);

	r = mg_ids_pgarray(&ids, g->directive_ids, g->n_directives);
	if (r < 0) {
		mg_err_set(err, r, "too many directive ids (%zu)", g->n_directives);
		goto out;
	}
	params[0] = mg_buf_str(&ids);
	res = PQexecParams(conn, rows_sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "claiming the directives failed: %s",
			       db_message(conn, res));
		goto out;
	}
	if (PQgetisnull(res, 0, 0)) {
		r = MG_OK; /* all sent or locked meanwhile */
		goto out;
	}
	r = mg_pgarray_parse_ids(PQgetvalue(res, 0, 0), &dids, &n_dids, err);
	if (r == MG_OK)
		r = mg_pgarray_parse_ids(PQgetvalue(res, 0, 1), &eids, &n_eids, err);
	if (r < 0)
		goto out;
	PQclear(res);

	group_key_params(g, params);
	res = PQexecParams(conn, last_sql, 5, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "looking up the last mail failed: %s",
			       db_message(conn, res));
		goto out;
	}
	g->has_last_sent = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) &&
			   mg_parse_int64(PQgetvalue(res, 0, 0), INT64_MIN, INT64_MAX, &v);
	g->last_sent = g->has_last_sent ? v : 0;

	free(g->directive_ids);
	free(g->directive_events); /* the claimed ids may be fewer: no longer aligned */
	free(g->event_ids);
	g->directive_events = NULL;
	g->directive_ids = dids;
	g->n_directives = n_dids;
	g->event_ids = eids;
	g->n_events = n_eids;
	dids = NULL;
	eids = NULL;
	*ret_claimed = true;
	locked = false; /* kept for the caller */
	r = MG_OK;
out:
	if (locked)
		mg_db_unclaim(conn, g);
	free(dids);
	free(eids);
	PQclear(res);
	mg_buf_release(&ids);
	return r;
}

int mg_db_new_ticket(PGconn *conn, char *out, struct mg_err *err)
{
	PGresult *res = NULL;
	char today[16], day[16];
	int64_t seq;
	int r;

	r = exec_cmd(conn, "ticket: BEGIN", "BEGIN", err);
	if (r < 0)
		return r;
	/* serialise all drawers, so that a day change restarts the sequence once */
	r = exec_cmd(conn, "ticket: locking ticket_day", "SELECT 1 FROM ticket_day FOR UPDATE",
		     err);
	if (r < 0)
		goto out;
	res = PQexec(conn, "SELECT to_char(clock_timestamp(), 'YYYYMMDD'),"
			   " to_char(initialized_for_day, 'YYYYMMDD') FROM ticket_day");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "ticket: reading ticket_day failed: %s",
			       db_message(conn, res));
		goto out;
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 1)) {
		r = mg_err_set(
			err, MG_ETEMP,
			"ticket: table ticket_day must hold exactly one day, it holds %d rows",
			PQntuples(res));
		goto out;
	}
	(void)snprintf(today, sizeof(today), "%s", PQgetvalue(res, 0, 0));
	(void)snprintf(day, sizeof(day), "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	res = NULL;
	if (strcmp(today, day) < 0) {
		r = mg_err_set(err, MG_ETEMP,
			       "ticket: the database clock says %s but ticket_day is %s: the clock "
			       "went backwards; not drawing tickets, to never reuse one",
			       today, day);
		goto out;
	}
	if (strcmp(today, day) > 0) {
		const char *p[1] = { today };

		r = exec_cmd(conn, "ticket: restarting intelmq_ticket_seq",
			     "ALTER SEQUENCE intelmq_ticket_seq RESTART", err);
		if (r < 0)
			goto out;
		res = PQexecParams(conn, "UPDATE ticket_day SET initialized_for_day = $1::date", 1,
				   NULL, p, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			r = mg_err_set(err, db_classify(conn, res),
				       "ticket: updating ticket_day failed: %s",
				       db_message(conn, res));
			goto out;
		}
		PQclear(res);
		res = NULL;
	}
	res = PQexec(conn, "SELECT nextval('intelmq_ticket_seq')");
	if (PQresultStatus(res) != PGRES_TUPLES_OK ||
	    !mg_parse_int64(PQgetvalue(res, 0, 0), 0, INT64_MAX, &seq)) {
		r = mg_err_set(err, db_classify(conn, res), "ticket: nextval failed: %s",
			       db_message(conn, res));
		goto out;
	}
	r = mg_ticket_format(out, today, seq, err);
	if (r < 0)
		goto out;
	r = exec_cmd(conn, "ticket: COMMIT", "COMMIT", err);
	PQclear(res);
	return r;
out:
	PQclear(res);
	PQclear(PQexec(conn, "ROLLBACK"));
	return r;
}

/*
 * The SQL expression for one column.  Field names are checked against the
 * characters IntelMQ uses ([a-z0-9_.]), as the original's
 * escape_sql_identifier(), so nothing else can reach the query text.
 */
static int column_expr(PGconn *conn, struct mg_buf *sql, const char *field, struct mg_err *err)
{
	char *lit;
	int r;

	if (strncmp(field, "extra.", 6) == 0) {
		lit = PQescapeLiteral(conn, field + 6, strlen(field + 6));
		if (lit == NULL)
			return mg_err_set(err, MG_ENOMEM, "out of memory");
		r = mg_buf_addf(sql, "(extra ->> %s)", lit);
		PQfreemem(lit);
		return r;
	}
	if (field[0] == '\0' ||
	    strspn(field, "abcdefghijklmnopqrstuvwxyz0123456789_.") != strlen(field))
		return mg_err_set(err, MG_EINPUT, "column '%s': not an IntelMQ field name", field);
	if (strcmp(field, "time.source") == 0)
		return mg_buf_adds(sql, "to_char(\"time.source\" AT TIME ZONE 'UTC',"
					" 'YYYY-MM-DD HH24:MI:SS')");
	/* no ::text cast: the output function prints inet 192.0.2.1 without "/32" */
	return mg_buf_addf(sql, "\"%s\"", field);
}

int mg_db_load_events(PGconn *conn, const struct mg_group *g, const struct mg_column *cols,
		      size_t n_cols, PGresult **ret_res, const char ***ret_cells, size_t *ret_rows,
		      struct mg_err *err)
{
	struct mg_buf sql = MG_BUF_INIT(SQL_MAX);
	struct mg_buf ids = MG_BUF_INIT(IDS_PARAM_MAX);
	const char **cells = NULL;
	PGresult *res = NULL;
	const char *params[1];
	size_t rows;
	int r;

	r = mg_buf_adds(&sql, "SELECT ");
	for (size_t i = 0; r == MG_OK && i < n_cols; i++) {
		if (i > 0)
			r = mg_buf_adds(&sql, ", ");
		if (r == MG_OK)
			r = column_expr(conn, &sql, cols[i].field, err);
	}
	if (r == MG_OK)
		r = mg_buf_adds(&sql, " FROM events WHERE id = ANY ($1::bigint[]) ORDER BY id");
	if (r == MG_OK)
		r = mg_ids_pgarray(&ids, g->event_ids, g->n_events);
	if (r < 0) {
		if (r == MG_ENOMEM || err == NULL || err->msg[0] == '\0')
			mg_err_set(err, r, "loading events: query too large");
		goto out;
	}
	params[0] = mg_buf_str(&ids);
	res = PQexecParams(conn, mg_buf_str(&sql), 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "loading events failed: %s",
			       db_message(conn, res));
		goto out;
	}
	rows = (size_t)PQntuples(res);
	cells = mg_calloc(rows * n_cols + 1, sizeof(*cells));
	if (cells == NULL) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < rows; i++)
		for (size_t j = 0; j < n_cols; j++)
			cells[i * n_cols + j] = PQgetisnull(res, (int)i, (int)j)
							? NULL
							: PQgetvalue(res, (int)i, (int)j);
	*ret_res = res;
	*ret_cells = cells;
	*ret_rows = rows;
	res = NULL;
	cells = NULL;
	r = MG_OK;
out:
	free(cells);
	PQclear(res);
	mg_buf_release(&sql);
	mg_buf_release(&ids);
	return r;
}

int mg_db_recipient_recent(PGconn *conn, const char *recipient, int window_sec, int max,
			   int *ret_count, int64_t *ret_free_at, struct mg_err *err)
{
	static const char sql[] =
		"SELECT count(*), (extract(epoch FROM min(sent_at)) * 1000000)::bigint"
		"  FROM (SELECT DISTINCT s.id, s.sent_at"
		"          FROM sent AS s JOIN directives AS d ON d.sent_id = s.id"
		"         WHERE d.recipient_address = $1"
		"           AND s.sent_at > now() - make_interval(secs => $2::int)"
		"         ORDER BY s.sent_at DESC LIMIT $3::int) AS recent";
	const char *params[3];
	char win[16], lim[16];
	PGresult *res;
	int64_t count = 0, oldest = 0;
	int r = MG_OK;

	(void)snprintf(win, sizeof(win), "%d", window_sec);
	(void)snprintf(lim, sizeof(lim), "%d", max);
	params[0] = recipient;
	params[1] = win;
	params[2] = lim;
	res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res),
			       "counting recent mails to the recipient failed: %s",
			       db_message(conn, res));
		goto out;
	}
	(void)mg_parse_int64(PQgetvalue(res, 0, 0), 0, INT32_MAX, &count);
	if (!PQgetisnull(res, 0, 1))
		(void)mg_parse_int64(PQgetvalue(res, 0, 1), INT64_MIN, INT64_MAX, &oldest);
	*ret_count = (int)count;
	*ret_free_at = oldest + (int64_t)window_sec * 1000000 + 1;
out:
	PQclear(res);
	return r;
}

int mg_db_mark_sent(PGconn *conn, const struct mg_group *g, const char *ticket, int64_t sent_at,
		    struct mg_err *err)
{
	static const char sql[] = "WITH s AS (INSERT INTO sent (intelmq_ticket, sent_at)"
				  "           VALUES ($1, to_timestamp($2::bigint)) RETURNING id) "
				  "UPDATE directives SET sent_id = (SELECT id FROM s) "
				  "WHERE id = ANY ($3::bigint[]) AND sent_id IS NULL";
	struct mg_buf ids = MG_BUF_INIT(IDS_PARAM_MAX);
	PGresult *res = NULL;
	const char *params[3];
	char when[32];
	int r;

	r = mg_ids_pgarray(&ids, g->directive_ids, g->n_directives);
	if (r < 0) {
		mg_err_set(err, r, "ticket %s: cannot build the list of %zu directive ids", ticket,
			   g->n_directives);
		goto out;
	}
	(void)snprintf(when, sizeof(when), "%lld", (long long)sent_at);
	params[0] = ticket;
	params[1] = when;
	params[2] = mg_buf_str(&ids);
	res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		r = mg_err_set(err, db_classify(conn, res),
			       "ticket %s: recording the sent mail failed: %s", ticket,
			       db_message(conn, res));
		goto out;
	}
	if (strtoull(PQcmdTuples(res), NULL, 10) != g->n_directives) {
		r = mg_err_set(err, MG_EINPUT,
			       "ticket %s: %zu directives given, only %s were still pending",
			       ticket, g->n_directives, PQcmdTuples(res));
		goto out;
	}
	r = MG_OK;
out:
	PQclear(res);
	mg_buf_release(&ids);
	return r;
}
