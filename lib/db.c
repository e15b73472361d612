/* lib/db.c - PostgreSQL access for workers and CLIs (blocking libpq) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-events.h>

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
 * Our fixed per-mail statements run as named prepared statements: parsed and
 * planned once per session instead of once per mail (mg_db_end_batch()
 * has the session's plans made anew after every batch).  Which ones a
 * connection has prepared is kept with the connection itself, as libpq
 * instance data (libpq-events), so a new connection starts with none.
 */
enum stmt { STMT_CLAIM, STMT_TICKET, STMT_OUTBOX_PUT, STMT_MARK_SENT, STMT_COUNT };

static const char *const stmt_names[STMT_COUNT] = { "mg_claim", "mg_ticket", "mg_outbox_put",
						    "mg_mark_sent" };

struct conn_state {
	bool prepared[STMT_COUNT];
};

static int conn_event(PGEventId id, void *info, void *pass_through)
{
	(void)pass_through;
	if (id == PGEVT_REGISTER) {
		PGEventRegister *e = info;
		struct conn_state *st = calloc(1, sizeof(*st));

		if (st != NULL && PQsetInstanceData(e->conn, conn_event, st))
			return 1;
		free(st);
		return 0;
	}
	if (id == PGEVT_CONNRESET) {
		PGEventConnReset *e = info;
		struct conn_state *st = PQinstanceData(e->conn, conn_event);

		if (st != NULL)
			memset(st, 0, sizeof(*st)); /* a new session: nothing prepared */
	} else if (id == PGEVT_CONNDESTROY) {
		PGEventConnDestroy *e = info;

		free(PQinstanceData(e->conn, conn_event));
	}
	return 1;
}

static bool sqlstate_is(const PGresult *res, const char *state)
{
	const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return s != NULL && strcmp(s, state) == 0;
}

/*
 * PQexecParams for statement which (text sql), prepared at its first use
 * on conn; a connection made elsewhere (no instance data) runs it unnamed.
 * A statement the server session lost (DEALLOCATE; a pooler's reset) is
 * prepared again and run once more (26000), one already there (42P05) is
 * used.  Only outside a transaction block.
 */
static PGresult *exec_stmt(PGconn *conn, enum stmt which, const char *sql, int n,
			   const char *const *params)
{
	struct conn_state *st = PQinstanceData(conn, conn_event);
	PGresult *res;

	if (st == NULL)
		return PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	for (int attempt = 0;; attempt++) {
		if (!st->prepared[which]) {
			res = PQprepare(conn, stmt_names[which], sql, n, NULL);
			if (PQresultStatus(res) != PGRES_COMMAND_OK && !sqlstate_is(res, "42P05"))
				return res;
			PQclear(res);
			st->prepared[which] = true;
		}
		res = PQexecPrepared(conn, stmt_names[which], n, params, NULL, NULL, 0);
		if (attempt > 0 || PQresultStatus(res) != PGRES_FATAL_ERROR ||
		    !sqlstate_is(res, "26000") || PQtransactionStatus(conn) != PQTRANS_IDLE)
			return res;
		PQclear(res);
		st->prepared[which] = false;
	}
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

/*
 * mailgen-c's own tables (docs/database.md) come with sql/notifications.sql;
 * a database set up for the original lacks them until that file is run.
 */
static int check_schema(PGconn *conn, const char *db_name, struct mg_err *err)
{
	PGresult *res = PQexec(conn, "SELECT to_regclass('mailgen_outbox') IS NOT NULL"
				     " AND to_regclass('mailgen_failed_groups') IS NOT NULL"
				     " AND to_regclass('mailgen_dropped_directives') IS NOT NULL");
	int r = MG_OK;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		r = mg_err_set(err, db_classify(conn, res), "checking the schema failed: %s",
			       db_message(conn, res));
	else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		r = mg_err_set(err, MG_ECONFIG,
			       "database '%s' lacks mailgen-c's tables (mailgen_outbox, "
			       "mailgen_failed_groups, mailgen_dropped_directives): run "
			       "sql/notifications.sql on it (safe to run again)",
			       db_name != NULL ? db_name : "");
	PQclear(res);
	return r;
}

int mg_db_conn_params(const struct mg_config *cfg, const char *application_name,
		      const char ***ret_keys, const char ***ret_vals)
{
	size_t max = cfg->n_db_params + 8, n = 0;
	const char **keys = calloc(max, sizeof(*keys));
	const char **vals = calloc(max, sizeof(*vals));

	if (keys == NULL || vals == NULL) {
		free(keys);
		free(vals);
		return MG_ENOMEM;
	}
#define KV(k, v)                       \
	do {                           \
		if ((v) != NULL) {     \
			keys[n] = (k); \
			vals[n] = (v); \
			n++;           \
		}                      \
	} while (0)
	KV("fallback_application_name", application_name);
	KV("dbname", cfg->db_name);
	KV("user", cfg->db_user);
	KV("password", cfg->db_password);
	KV("host", cfg->db_host);
	KV("port", cfg->db_port);
	for (size_t i = 0; i < cfg->n_db_params; i++)
		KV(cfg->db_params[i].keyword, cfg->db_params[i].value);
	/* last: with expand_dbname 0 a later keyword wins (config.c refuses it anyway) */
	KV("client_encoding", "UTF8");
#undef KV
	*ret_keys = keys;
	*ret_vals = vals;
	return MG_OK;
}

/* How messages name the database: its name, else the service, else libpq's default. */
static void db_what(const struct mg_config *cfg, char *buf, size_t size)
{
	const char *service = mg_config_db_param(cfg, "service");

	if (cfg->db_name != NULL)
		(void)snprintf(buf, size, "database '%.100s'", cfg->db_name);
	else if (service != NULL)
		(void)snprintf(buf, size, "database of service '%.100s'", service);
	else
		(void)snprintf(buf, size, "database");
}

int mg_db_connect(const struct mg_config *cfg, const char *application_name, PGconn **ret_conn,
		  struct mg_err *err)
{
	const char **keys = NULL, **vals = NULL;
	char what[160];
	PGconn *conn;
	int r;

	if (mg_db_conn_params(cfg, application_name, &keys, &vals) < 0)
		return mg_err_set(err, MG_ENOMEM, "database: out of memory");
	conn = PQconnectdbParams(keys, vals, 0);
	free(keys);
	free(vals);
	if (conn == NULL)
		return mg_err_set(err, MG_ENOMEM, "database: out of memory");
	if (PQstatus(conn) != CONNECTION_OK) {
		const char *m = PQerrorMessage(conn);
		/* libpq's message may span lines; keep the first */
		size_t len = strcspn(m, "\n");

		db_what(cfg, what, sizeof(what));
		r = mg_err_set(err, MG_ETEMP, "cannot connect to %s: %.*s", what, (int)len, m);
		PQfinish(conn);
		return r;
	}
	(void)PQsetNoticeProcessor(conn, mg_db_notice, (void *)"database");
	if (!PQregisterEventProc(conn, conn_event, "mailgen", NULL)) {
		PQfinish(conn);
		return mg_err_set(err, MG_ENOMEM, "database: out of memory");
	}
	/*
	 * As the original: the ticket day and every time we read are UTC,
	 * whatever the server, the role or PGTZ say.
	 */
	r = exec_cmd(conn, "setting the time zone", "SET TIME ZONE 'UTC'", err);
	if (r == MG_OK)
		r = check_schema(conn, cfg->db_name, err);
	if (r < 0) {
		PQfinish(conn);
		return r;
	}
	*ret_conn = conn;
	return MG_OK;
}

/*
 * The query of the pending groups.  With one_group, only the group of the
 * directive whose id is $1 (the pending directives sharing its five keys),
 * whatever its failed state; otherwise every group not in the failed state.
 */
static int scan_sql(struct mg_buf *sql, const char *additional_where, bool one_group)
{
	bool has_where = additional_where != NULL && additional_where[0] != '\0';

	/*
	 * The keys of the original's PENDING_DIRECTIVES_QUERY (d3 is its alias
	 * too), minus the directives an operator dropped and the groups in the
	 * failed state; plus, per group, whether a mail of it waits in the
	 * outbox and its deferral after a temporary failure.
	 */
	return mg_buf_addf(
		sql,
		"SELECT q.recipient_address, q.template_name, q.notification_format,"
		" q.event_data_format, q.aggregate_identifier::text, q.ids, q.eids,"
		" q.inserted_us, q.interval_s, q.last_sent_us,"
		" EXISTS (SELECT 1 FROM mailgen_outbox AS o"
		"          WHERE o.recipient_address = q.recipient_address"
		"            AND o.template_name = q.template_name"
		"            AND o.notification_format = q.notification_format"
		"            AND o.event_data_format = q.event_data_format"
		"            AND o.aggregate_identifier IS NOT DISTINCT FROM q.aggregate_identifier"
		"            AND o.directive_ids && q.id_arr),"
		" (extract(epoch FROM f.retry_at) * 1000000)::bigint, f.attempts"
		" FROM (SELECT d.recipient_address, d.template_name, d.notification_format,"
		"        d.event_data_format, d.aggregate_identifier,"
		"        array_agg(d.id ORDER BY d.id)::text AS ids, array_agg(d.id) AS id_arr,"
		"        array_agg(d.events_id ORDER BY d.id)::text AS eids," /* aligned with ids */
		"        (extract(epoch FROM max(d.inserted_at)) * 1000000)::bigint AS inserted_us,"
		"        extract(epoch FROM max(d.notification_interval))::bigint AS interval_s,"
		"        (SELECT (extract(epoch FROM s.sent_at) * 1000000)::bigint"
		"           FROM directives AS d2 JOIN sent AS s ON d2.sent_id = s.id"
		"          WHERE d2.recipient_address = d.recipient_address"
		"            AND d2.template_name = d.template_name"
		"            AND d2.notification_format = d.notification_format"
		"            AND d2.event_data_format = d.event_data_format"
		"            AND d2.aggregate_identifier IS NOT DISTINCT FROM d.aggregate_identifier"
		"          ORDER BY d2.inserted_at DESC LIMIT 1) AS last_sent_us,"
		"        min(d.id) AS first_id"
		"   FROM (SELECT d3.id, d3.events_id, d3.recipient_address, d3.template_name,"
		"           d3.notification_format, d3.event_data_format, d3.notification_interval,"
		"           d3.aggregate_identifier, d3.inserted_at"
		"          FROM directives AS d3 %s"
		"         WHERE d3.sent_id IS NULL AND d3.medium = 'email'"
		"           AND d3.endpoint = 'source' %s%s%s%s"
		"           AND NOT EXISTS (SELECT 1 FROM mailgen_dropped_directives AS x"
		"                            WHERE x.directive_id = d3.id)) AS d"
		"  GROUP BY d.recipient_address, d.template_name, d.notification_format,"
		"           d.event_data_format, d.aggregate_identifier) AS q"
		" LEFT JOIN mailgen_failed_groups AS f"
		"   ON f.recipient_address = q.recipient_address"
		"  AND f.template_name = q.template_name"
		"  AND f.notification_format = q.notification_format"
		"  AND f.event_data_format = q.event_data_format"
		"  AND coalesce(f.aggregate_identifier, '{}') = coalesce(q.aggregate_identifier, '{}')"
		" WHERE %s"
		/*
		 * Mails waiting in the outbox first: after a failure each worker
		 * probes with one group, and one whose mail is built already
		 * costs no new ticket number.
		 */
		" ORDER BY 11 DESC, q.first_id",
		has_where && strstr(additional_where, "events.") != NULL
			? "JOIN events ON d3.events_id = events.id"
			: "",
		has_where ? "AND (" : "", has_where ? additional_where : "", has_where ? ")" : "",
		one_group ? " AND (d3.recipient_address, d3.template_name, d3.notification_format,"
			    " d3.event_data_format) = (SELECT k.recipient_address, k.template_name,"
			    " k.notification_format, k.event_data_format FROM directives AS k"
			    " WHERE k.id = $1::bigint)"
			    " AND d3.aggregate_identifier IS NOT DISTINCT FROM"
			    " (SELECT k.aggregate_identifier FROM directives AS k"
			    " WHERE k.id = $1::bigint)"
			  : "",
		one_group ? "true" : "f.state IS DISTINCT FROM 'failed'");
}

int mg_db_scan_open(PGconn *conn, const char *additional_where, struct mg_err *err)
{
	struct mg_buf sql = MG_BUF_INIT(SQL_MAX);
	bool has_where = additional_where != NULL && additional_where[0] != '\0';
	int r;

	r = mg_buf_adds(&sql, "DECLARE " SCAN_CURSOR " NO SCROLL CURSOR WITH HOLD FOR ");
	if (r == MG_OK)
		r = scan_sql(&sql, additional_where, false);
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
	g->has_outbox = strcmp(PQgetvalue(res, row, 10), "t") == 0;
	g->retry_at = !PQgetisnull(res, row, 11) &&
				      mg_parse_int64(PQgetvalue(res, row, 11), 1, INT64_MAX, &v)
			      ? v
			      : 0;
	g->attempts = !PQgetisnull(res, row, 12) &&
				      mg_parse_int64(PQgetvalue(res, row, 12), 0, INT32_MAX, &v)
			      ? (int)v
			      : 0;
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

/* The five keys of g as $1..$5 (group_key_params()) of a statement. */
#define KEYS_MATCH(t)                                                                  \
	t ".recipient_address = $1 AND " t ".template_name = $2 AND " t                \
	  ".notification_format = $3 AND " t ".event_data_format = $4 AND coalesce(" t \
	  ".aggregate_identifier, '{}') = coalesce($5::text[], '{}')"

static void group_key_params(const struct mg_group *g, const char *params[5])
{
	params[0] = g->recipient_address;
	params[1] = g->template_name;
	params[2] = g->notification_format;
	params[3] = g->event_data_format;
	/* "" is how a NULL column was read: pass NULL, not a malformed text[] */
	params[4] = g->aggregate_literal != NULL && g->aggregate_literal[0] != '\0'
			    ? g->aggregate_literal
			    : NULL;
}

void mg_db_end_batch(PGconn *conn)
{
	if (mg_db_broken(conn))
		return;
	/*
	 * And forget the session's cached plans.  The foreign-key check behind
	 * "UPDATE directives SET sent_id" is one: on a young "sent" table
	 * PostgreSQL settles on a generic plan with a sequential scan of
	 * "sent", kept for the life of the session, and every mail gets slower
	 * as "sent" grows (docs/performance.md, "The foreign-key trap").  Made anew
	 * after every batch, the plan fits the table's size at that time,
	 * without planning the check ten times a mail as custom plans would.
	 */
	PQclear(PQexec(conn, "SELECT pg_advisory_unlock_all(); DISCARD PLANS"));
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

/* The group's last mail (usec), of the keys $1..$5. */
#define LAST_SENT_SQL                                                       \
	"(SELECT (extract(epoch FROM s.sent_at) * 1000000)::bigint"         \
	"   FROM directives AS d2 JOIN sent AS s ON d2.sent_id = s.id"      \
	"  WHERE d2.recipient_address = $1 AND d2.template_name = $2"       \
	"    AND d2.notification_format = $3 AND d2.event_data_format = $4" \
	"    AND d2.aggregate_identifier IS NOT DISTINCT FROM $5::text[]"   \
	"  ORDER BY d2.inserted_at DESC LIMIT 1)"

/* Whether a mail in the outbox covers one of the directives ids (text). */
#define OUTBOX_EXISTS_SQL(ids)                                         \
	"EXISTS (SELECT 1 FROM mailgen_outbox AS o WHERE " KEYS_MATCH( \
		"o") " AND o.directive_ids && " ids ")"

/* The group's last mail and outbox state, from a fresh snapshot (under the lock). */
static int claim_refresh(PGconn *conn, struct mg_group *g, const int64_t *dids, size_t n_dids,
			 struct mg_err *err)
{
	static const char sql[] = "SELECT " LAST_SENT_SQL ", " OUTBOX_EXISTS_SQL("$6::bigint[]");
	struct mg_buf ids = MG_BUF_INIT(IDS_PARAM_MAX);
	PGresult *res = NULL;
	const char *params[6];
	int64_t v;
	int r;

	r = mg_ids_pgarray(&ids, dids, n_dids);
	if (r < 0) {
		r = mg_err_set(err, r, "too many directive ids (%zu)", n_dids);
		goto out;
	}
	group_key_params(g, params);
	params[5] = mg_buf_str(&ids);
	res = PQexecParams(conn, sql, 6, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		r = mg_err_set(err, db_classify(conn, res), "claiming the group failed: %s",
			       db_message(conn, res));
		goto out;
	}
	g->has_last_sent = !PQgetisnull(res, 0, 0) &&
			   mg_parse_int64(PQgetvalue(res, 0, 0), INT64_MIN, INT64_MAX, &v);
	g->last_sent = g->has_last_sent ? v : 0;
	g->has_outbox = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	r = MG_OK;
out:
	PQclear(res);
	mg_buf_release(&ids);
	return r;
}

int mg_db_claim(PGconn *conn, struct mg_group *g, bool *ret_claimed, struct mg_err *err)
{
	/*
	 * One round trip: the lock (l, a CTE read twice, so run once, before
	 * any row is locked: p joins it and LockRows sits above that join),
	 * the pending directives, the group's last mail and whether a mail of
	 * these directives waits in the outbox.  The statement's snapshot is
	 * older than the lock: see claim_refresh() below.
	 */
	static const char sql[] =
		"WITH l AS (SELECT pg_try_advisory_lock(" ADVISORY_CLASS ", " GROUP_LOCK_KEY
		") AS ok),"
		" p AS (SELECT d.id, d.events_id FROM directives AS d, l"
		"        WHERE l.ok AND d.id = ANY ($6::bigint[]) AND d.sent_id IS NULL"
		"        FOR UPDATE OF d SKIP LOCKED)"
		"SELECT l.ok, (SELECT array_agg(id ORDER BY id) FROM p)::text,"
		" (SELECT array_agg(DISTINCT events_id ORDER BY events_id) FROM p)::text, " LAST_SENT_SQL
		", " OUTBOX_EXISTS_SQL("(SELECT array_agg(id) FROM p)") " FROM l";
	struct mg_buf ids = MG_BUF_INIT(IDS_PARAM_MAX);
	PGresult *res = NULL;
	const char *params[6];
	int64_t *dids = NULL, *eids = NULL, v;
	size_t n_dids = 0, n_eids = 0;
	bool locked = false;
	int r;

	*ret_claimed = false;
	r = mg_ids_pgarray(&ids, g->directive_ids, g->n_directives);
	if (r < 0) {
		mg_err_set(err, r, "too many directive ids (%zu)", g->n_directives);
		goto out;
	}
	group_key_params(g, params);
	params[5] = mg_buf_str(&ids);
	res = exec_stmt(conn, STMT_CLAIM, sql, 6, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		r = mg_err_set(err, db_classify(conn, res), "claiming the group failed: %s",
			       db_message(conn, res));
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		r = MG_OK; /* another process is working on it */
		goto out;
	}
	locked = true;
	if (PQgetisnull(res, 0, 1)) {
		r = MG_OK; /* all sent or locked meanwhile */
		goto out;
	}
	r = mg_pgarray_parse_ids(PQgetvalue(res, 0, 1), &dids, &n_dids, err);
	if (r == MG_OK)
		r = mg_pgarray_parse_ids(PQgetvalue(res, 0, 2), &eids, &n_eids, err);
	if (r < 0)
		goto out;
	g->has_last_sent = !PQgetisnull(res, 0, 3) &&
			   mg_parse_int64(PQgetvalue(res, 0, 3), INT64_MIN, INT64_MAX, &v);
	g->last_sent = g->has_last_sent ? v : 0;
	/* fresher than the scan's: an outbox mail makes the group due (directive.c) */
	g->has_outbox = strcmp(PQgetvalue(res, 0, 4), "t") == 0;
	/*
	 * Fewer directives than asked for: another process sent some of them
	 * (FOR UPDATE saw their new version), and it may have committed
	 * between the statement's snapshot and our lock, so its mail is not in
	 * last_sent above.  Read it again, under the lock.  (Without such a
	 * send, nothing of this group can have changed in that gap: whoever
	 * sends it sends all of its directives that were pending then.)
	 */
	if (n_dids < g->n_directives) {
		r = claim_refresh(conn, g, dids, n_dids, err);
		if (r < 0)
			goto out;
	}

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

/*
 * The usual case in one autocommitted statement: ticket_day is today's.
 * It takes the row lock the slow path takes, so it waits for a drawer
 * that is restarting the sequence; PostgreSQL then checks the row again
 * (new day) and computes the result again, so the number comes from the
 * restarted sequence.  (The number computed before the wait is lost: a
 * gap, once a day at most per waiting drawer.)  Not an UPDATE of the
 * row: under a long transaction elsewhere (a backup) every draw would
 * leave a row version behind.  Returns MG_OK with out empty when
 * ticket_day is not today's (a new day, a clock gone backwards, not
 * exactly one row): the slow path decides.
 */
static int new_ticket_today(PGconn *conn, char *out, struct mg_err *err)
{
	static const char sql[] =
		"SELECT to_char(initialized_for_day, 'YYYYMMDD'), nextval('intelmq_ticket_seq')"
		"  FROM ticket_day"
		" WHERE to_char(initialized_for_day, 'YYYYMMDD') ="
		"       to_char(clock_timestamp(), 'YYYYMMDD')"
		"   AND (SELECT count(*) FROM ticket_day) = 1"
		"   FOR UPDATE";
	PGresult *res = exec_stmt(conn, STMT_TICKET, sql, 0, NULL);
	int64_t seq;
	int r = MG_OK;

	out[0] = '\0';
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "ticket: drawing a number failed: %s",
			       db_message(conn, res));
		goto out;
	}
	if (PQntuples(res) != 1)
		goto out;
	if (!mg_parse_int64(PQgetvalue(res, 0, 1), 0, INT64_MAX, &seq)) {
		r = mg_err_set(err, MG_ETEMP, "ticket: nextval returned '%s'",
			       PQgetvalue(res, 0, 1));
		goto out;
	}
	r = mg_ticket_format(out, PQgetvalue(res, 0, 0), seq, err);
out:
	PQclear(res);
	return r;
}

int mg_db_new_ticket(PGconn *conn, char *out, struct mg_err *err)
{
	PGresult *res = NULL;
	char today[16], day[16];
	int64_t seq;
	int r;

	r = new_ticket_today(conn, out, err);
	if (r < 0 || out[0] != '\0')
		return r;
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
		    size_t *ret_n_marked, struct mg_err *err)
{
	/*
	 * One statement, so one commit: the sent row, the directives, the
	 * outbox row of the mail and the group's deferral go together.
	 */
	static const char sql[] =
		"WITH s AS (INSERT INTO sent (intelmq_ticket, sent_at)"
		"           VALUES ($6, to_timestamp($7::bigint)) RETURNING id),"
		" o AS (DELETE FROM mailgen_outbox WHERE intelmq_ticket = $6),"
		/* a deferral is over; a part of a split group that failed for good is not */
		" f AS (DELETE FROM mailgen_failed_groups AS f"
		"        WHERE f.state = 'deferred' AND " KEYS_MATCH(
			"f") ") "
			     "UPDATE directives SET sent_id = (SELECT id FROM s) "
			     "WHERE id = ANY ($8::bigint[]) AND sent_id IS NULL";
	struct mg_buf ids = MG_BUF_INIT(IDS_PARAM_MAX);
	PGresult *res = NULL;
	const char *params[8];
	char when[32];
	int r;

	r = mg_ids_pgarray(&ids, g->directive_ids, g->n_directives);
	if (r < 0) {
		mg_err_set(err, r, "ticket %s: cannot build the list of %zu directive ids", ticket,
			   g->n_directives);
		goto out;
	}
	(void)snprintf(when, sizeof(when), "%lld", (long long)sent_at);
	group_key_params(g, params);
	params[5] = ticket;
	params[6] = when;
	params[7] = mg_buf_str(&ids);
	res = exec_stmt(conn, STMT_MARK_SENT, sql, 8, params);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		r = mg_err_set(err, db_classify(conn, res),
			       "ticket %s: recording the sent mail failed: %s", ticket,
			       db_message(conn, res));
		goto out;
	}
	/* committed: fewer rows (directives deleted meanwhile) is for the caller to tell */
	*ret_n_marked = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
	r = MG_OK;
out:
	PQclear(res);
	mg_buf_release(&ids);
	return r;
}

void mg_outbox_mail_release(struct mg_outbox_mail *ob)
{
	free(ob->message);
	free(ob->envelope_from);
	free(ob->envelope_to);
	free(ob->copy_message);
	free(ob->copy_envelope_to);
	memset(ob, 0, sizeof(*ob));
}

int mg_db_outbox_put(PGconn *conn, const struct mg_group *g, const struct mg_outbox_mail *ob,
		     struct mg_err *err)
{
	static const char sql[] =
		"INSERT INTO mailgen_outbox (recipient_address, template_name,"
		" notification_format, event_data_format, aggregate_identifier, intelmq_ticket,"
		" message_id, directive_ids, envelope_from, envelope_to, message, copy_message,"
		" copy_envelope_to)"
		" VALUES ($1::text, $2, $3, $4, $5::text[], $6, $7, $8::bigint[], $9,"
		"         string_to_array($11, E'\\n'), $10, $12, string_to_array($13, E'\\n'))";
	struct mg_buf ids = MG_BUF_INIT(IDS_PARAM_MAX);
	PGresult *res = NULL;
	const char *params[13];
	int r;

	r = mg_ids_pgarray(&ids, g->directive_ids, g->n_directives);
	if (r < 0) {
		r = mg_err_set(err, r, "ticket %s: cannot build the list of %zu directive ids",
			       ob->ticket, g->n_directives);
		goto out;
	}
	group_key_params(g, params);
	params[5] = ob->ticket;
	params[6] = ob->message_id;
	params[7] = mg_buf_str(&ids);
	params[8] = ob->envelope_from;
	params[9] = ob->message;
	params[10] = ob->envelope_to;
	params[11] = ob->copy_message;
	params[12] = ob->copy_envelope_to;
	res = exec_stmt(conn, STMT_OUTBOX_PUT, sql, 13, params);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		r = mg_err_set(err, db_classify(conn, res),
			       "ticket %s: storing the mail in mailgen_outbox failed: %s",
			       ob->ticket, db_message(conn, res));
		goto out;
	}
	r = MG_OK;
out:
	PQclear(res);
	mg_buf_release(&ids);
	return r;
}

/*
 * The first four columns of an outbox row (ticket, Message-Id, envelope
 * sender, message) into ob, whose release frees them on any return.
 */
static int outbox_row(const PGresult *res, struct mg_outbox_mail *ob, struct mg_err *err)
{
	const char *ticket = PQgetvalue(res, 0, 0), *msgid = PQgetvalue(res, 0, 1);

	if (strlen(ticket) > MG_TICKET_LEN || strlen(msgid) >= sizeof(ob->message_id))
		return mg_err_set(err, MG_EINPUT,
				  "mailgen_outbox: malformed row for ticket '%.30s'", ticket);
	memcpy(ob->ticket, ticket, strlen(ticket) + 1);
	memcpy(ob->message_id, msgid, strlen(msgid) + 1);
	ob->envelope_from = mg_strdup(PQgetvalue(res, 0, 2));
	ob->len = (size_t)PQgetlength(res, 0, 3);
	ob->message = malloc(ob->len + 1);
	if (ob->envelope_from == NULL || ob->message == NULL)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	memcpy(ob->message, PQgetvalue(res, 0, 3), ob->len + 1);
	return MG_OK;
}

int mg_db_outbox_take(PGconn *conn, struct mg_group *g, struct mg_outbox_mail *ret_ob,
		      bool *ret_found, bool *ret_more, struct mg_err *err)
{
	/*
	 * The oldest outbox mail covering any claimed directive; its directives
	 * that are still claimed (a directive deleted meanwhile drops out) and
	 * their events; and whether more outbox mails of the group wait.
	 */
	static const char sql[] =
		"WITH o AS (UPDATE mailgen_outbox SET attempts = attempts + 1"
		"            WHERE intelmq_ticket = (SELECT intelmq_ticket FROM mailgen_outbox AS o2"
		"                                     WHERE " KEYS_MATCH(
			"o2") ""
			      "                                       AND o2.directive_ids && $6::bigint[]"
			      "                                     ORDER BY o2.created_at, o2.intelmq_ticket"
			      "                                     LIMIT 1)"
			      "            RETURNING *),"
			      /* all of its directives still pending: ours too, under the group lock */
			      " ids AS (SELECT d.id FROM directives AS d"
			      "          WHERE d.id IN (SELECT unnest(o.directive_ids) FROM o)"
			      "            AND d.sent_id IS NULL)"
			      "SELECT o.intelmq_ticket, o.message_id, o.envelope_from, o.message,"
			      " (SELECT array_agg(id ORDER BY id) FROM ids)::text,"
			      " (SELECT array_agg(DISTINCT d.events_id ORDER BY d.events_id)"
			      "    FROM directives AS d WHERE d.id IN (SELECT id FROM ids))::text,"
			      " (SELECT count(*) FROM mailgen_outbox AS o3"
			      "   WHERE " KEYS_MATCH(
				      "o3") " AND o3.directive_ids && $6::bigint[]) > 1"
					    ", array_to_string(o.envelope_to, E'\\n'), o.copy_message,"
					    " array_to_string(o.copy_envelope_to, E'\\n') FROM o";
	struct mg_buf ids = MG_BUF_INIT(IDS_PARAM_MAX);
	struct mg_outbox_mail ob = { 0 };
	int64_t *dids = NULL, *eids = NULL;
	size_t n_dids = 0, n_eids = 0;
	PGresult *res = NULL;
	const char *params[6];
	int r;

	*ret_found = false;
	*ret_more = false;
	r = mg_ids_pgarray(&ids, g->directive_ids, g->n_directives);
	if (r < 0) {
		r = mg_err_set(err, r, "too many directive ids (%zu)", g->n_directives);
		goto out;
	}
	group_key_params(g, params);
	params[5] = mg_buf_str(&ids);
	res = PQexecParams(conn, sql, 6, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "reading mailgen_outbox failed: %s",
			       db_message(conn, res));
		goto out;
	}
	if (PQntuples(res) == 0) {
		r = MG_OK;
		goto out;
	}
	if (PQgetisnull(res, 0, 4)) {
		/* its directives went away (events deleted): nothing to send for them */
		r = MG_OK;
		*ret_more = true;
		goto out;
	}
	r = outbox_row(res, &ob, err);
	if (r < 0)
		goto out;
	ob.envelope_to = mg_strdup(PQgetvalue(res, 0, 7));
	if (!PQgetisnull(res, 0, 8) && !PQgetisnull(res, 0, 9)) {
		ob.copy_len = (size_t)PQgetlength(res, 0, 8);
		ob.copy_message = mg_strdup(PQgetvalue(res, 0, 8));
		ob.copy_envelope_to = mg_strdup(PQgetvalue(res, 0, 9));
		if (ob.copy_message == NULL || ob.copy_envelope_to == NULL) {
			r = mg_err_set(err, MG_ENOMEM, "out of memory");
			goto out;
		}
	}
	if (ob.envelope_to == NULL) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	r = mg_pgarray_parse_ids(PQgetvalue(res, 0, 4), &dids, &n_dids, err);
	if (r == MG_OK)
		r = mg_pgarray_parse_ids(PQgetisnull(res, 0, 5) ? "{}" : PQgetvalue(res, 0, 5),
					 &eids, &n_eids, err);
	if (r < 0)
		goto out;
	free(g->directive_ids);
	free(g->event_ids);
	free(g->directive_events); /* no longer aligned */
	g->directive_events = NULL;
	g->directive_ids = dids;
	g->n_directives = n_dids;
	g->event_ids = eids;
	g->n_events = n_eids;
	dids = NULL;
	eids = NULL;
	*ret_more = strcmp(PQgetvalue(res, 0, 6), "t") == 0;
	*ret_ob = ob;
	memset(&ob, 0, sizeof(ob));
	*ret_found = true;
	r = MG_OK;
out:
	mg_outbox_mail_release(&ob);
	free(dids);
	free(eids);
	PQclear(res);
	mg_buf_release(&ids);
	return r;
}

int mg_db_group_failed(PGconn *conn, const struct mg_group *g, bool permanent, const char *reason,
		       int64_t retry_delay_sec, int give_up_sec, bool *ret_failed,
		       int64_t *ret_retry_at, struct mg_err *err)
{
	/*
	 * One row per group key.  A temporary failure defers the group by the
	 * delay the caller computed from the attempts so far (mg_backoff_sec);
	 * it becomes 'failed' when it keeps failing for give_up_sec.
	 */
	static const char sql[] =
		"INSERT INTO mailgen_failed_groups AS f (recipient_address, template_name,"
		" notification_format, event_data_format, aggregate_identifier, state, reason,"
		" retry_at, directive_ids)"
		" VALUES ($1, $2, $3, $4, $5::text[],"
		"  CASE WHEN $6::boolean THEN 'failed' ELSE 'deferred' END, $7,"
		"  CASE WHEN $6::boolean THEN NULL"
		"       ELSE clock_timestamp() + $8::bigint * interval '1 second' END,"
		"  $9::bigint[])"
		" ON CONFLICT (recipient_address, template_name, notification_format,"
		"              event_data_format, coalesce(aggregate_identifier, '{}'))"
		" DO UPDATE SET attempts = f.attempts + 1, reason = EXCLUDED.reason,"
		"  last_failed_at = clock_timestamp(), directive_ids = EXCLUDED.directive_ids,"
		"  state = CASE WHEN EXCLUDED.state = 'failed' OR ($10::integer > 0 AND"
		"               clock_timestamp() - f.first_failed_at >= $10::integer * interval '1 second')"
		"          THEN 'failed' ELSE 'deferred' END,"
		"  retry_at = CASE WHEN EXCLUDED.state = 'failed' OR ($10::integer > 0 AND"
		"               clock_timestamp() - f.first_failed_at >= $10::integer * interval '1 second')"
		"          THEN NULL ELSE EXCLUDED.retry_at END"
		" RETURNING state = 'failed', (extract(epoch FROM retry_at) * 1000000)::bigint";
	struct mg_buf ids = MG_BUF_INIT(IDS_PARAM_MAX);
	PGresult *res = NULL;
	const char *params[10];
	char delay[32], give_up[32];
	int64_t v;
	int r;

	r = mg_ids_pgarray(&ids, g->directive_ids, g->n_directives);
	if (r < 0) {
		r = mg_err_set(err, r, "too many directive ids (%zu)", g->n_directives);
		goto out;
	}
	(void)snprintf(delay, sizeof(delay), "%lld", (long long)retry_delay_sec);
	(void)snprintf(give_up, sizeof(give_up), "%d", give_up_sec);
	group_key_params(g, params);
	params[5] = permanent ? "true" : "false";
	params[6] = reason;
	params[7] = delay;
	params[8] = mg_buf_str(&ids);
	params[9] = give_up;
	res = PQexecParams(conn, sql, 10, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		r = mg_err_set(err, db_classify(conn, res),
			       "recording the failure in mailgen_failed_groups failed: %s",
			       db_message(conn, res));
		goto out;
	}
	*ret_failed = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	*ret_retry_at =
		!PQgetisnull(res, 0, 1) && mg_parse_int64(PQgetvalue(res, 0, 1), 1, INT64_MAX, &v)
			? v
			: 0;
	r = MG_OK;
out:
	PQclear(res);
	mg_buf_release(&ids);
	return r;
}

void mg_failed_list_release(struct mg_failed_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].recipient_address);
		free(l->items[i].template_name);
		free(l->items[i].reason);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

int mg_db_failed_list(PGconn *conn, size_t max, struct mg_failed_list *ret, struct mg_err *err)
{
	static const char sql[] =
		"SELECT id, state, attempts, recipient_address, template_name, reason,"
		" (extract(epoch FROM first_failed_at) * 1000000)::bigint,"
		" (extract(epoch FROM last_failed_at) * 1000000)::bigint,"
		" (extract(epoch FROM retry_at) * 1000000)::bigint,"
		" cardinality(directive_ids),"
		" count(*) FILTER (WHERE state = 'failed') OVER (),"
		" count(*) FILTER (WHERE state = 'deferred') OVER ()"
		" FROM mailgen_failed_groups ORDER BY id LIMIT $1::bigint";
	struct mg_failed_list l = { 0 };
	PGresult *res = NULL;
	const char *params[1];
	char limit[32];
	int64_t v;
	int n, r;

	/* one row at least, for the totals */
	(void)snprintf(limit, sizeof(limit), "%zu", max > 0 ? max : 1);
	params[0] = limit;
	res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res),
			       "reading mailgen_failed_groups failed: %s", db_message(conn, res));
		goto out;
	}
	n = PQntuples(res);
	if (n > 0) {
		l.n_failed =
			mg_parse_int64(PQgetvalue(res, 0, 10), 0, INT64_MAX, &v) ? (size_t)v : 0;
		l.n_deferred =
			mg_parse_int64(PQgetvalue(res, 0, 11), 0, INT64_MAX, &v) ? (size_t)v : 0;
	}
	l.items = mg_calloc((size_t)n < max ? (size_t)n : max, sizeof(*l.items));
	if (l.items == NULL && n > 0 && max > 0) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < n && (size_t)i < max; i++) {
		struct mg_failed_group *f = &l.items[l.n++];

		f->id = mg_parse_int64(PQgetvalue(res, i, 0), 0, INT64_MAX, &v) ? v : 0;
		f->permanent = strcmp(PQgetvalue(res, i, 1), "failed") == 0;
		f->attempts = mg_parse_int64(PQgetvalue(res, i, 2), 0, INT32_MAX, &v) ? (int)v : 0;
		f->recipient_address = mg_strdup(PQgetvalue(res, i, 3));
		f->template_name = mg_strdup(PQgetvalue(res, i, 4));
		f->reason = mg_strdup(PQgetvalue(res, i, 5));
		f->first_failed = mg_parse_int64(PQgetvalue(res, i, 6), 0, INT64_MAX, &v) ? v : 0;
		f->last_failed = mg_parse_int64(PQgetvalue(res, i, 7), 0, INT64_MAX, &v) ? v : 0;
		f->retry_at = !PQgetisnull(res, i, 8) && mg_parse_int64(PQgetvalue(res, i, 8), 0,
									INT64_MAX, &v)
				      ? v
				      : 0;
		f->n_directives =
			mg_parse_int64(PQgetvalue(res, i, 9), 0, INT64_MAX, &v) ? (size_t)v : 0;
		if (f->recipient_address == NULL || f->template_name == NULL || f->reason == NULL) {
			r = mg_err_set(err, MG_ENOMEM, "out of memory");
			goto out;
		}
	}
	*ret = l;
	memset(&l, 0, sizeof(l));
	r = MG_OK;
out:
	mg_failed_list_release(&l);
	PQclear(res);
	return r;
}

int mg_db_failed_retry(PGconn *conn, int64_t id, size_t *ret_n, struct mg_err *err)
{
	const char *params[1];
	PGresult *res;
	char idbuf[32];
	int r = MG_OK;

	(void)snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	params[0] = idbuf;
	res = PQexecParams(
		conn, "DELETE FROM mailgen_failed_groups WHERE id = $1::bigint OR $1::bigint = 0",
		1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		r = mg_err_set(err, db_classify(conn, res), "retry: %s", db_message(conn, res));
	else
		*ret_n = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return r;
}

int mg_db_failed_drop(PGconn *conn, int64_t id, const char *who, size_t *ret_n, struct mg_err *err)
{
	/*
	 * One statement: the failure row goes, its pending directives are
	 * listed as dropped (so no scan returns them again), and its mails
	 * waiting in the outbox are deleted (their tickets are never used).
	 */
	static const char sql[] =
		"WITH f AS (DELETE FROM mailgen_failed_groups"
		"            WHERE id = $1::bigint AND state = 'failed' RETURNING *),"
		" o AS (DELETE FROM mailgen_outbox AS o USING f"
		"        WHERE o.recipient_address = f.recipient_address"
		"          AND o.template_name = f.template_name"
		"          AND o.notification_format = f.notification_format"
		"          AND o.event_data_format = f.event_data_format"
		"          AND o.aggregate_identifier IS NOT DISTINCT FROM f.aggregate_identifier),"
		" x AS (INSERT INTO mailgen_dropped_directives (directive_id, reason)"
		"        SELECT d.id, 'dropped by ' || $2 || ' after: ' || f.reason"
		"          FROM directives AS d, f"
		"         WHERE d.sent_id IS NULL"
		"           AND d.recipient_address = f.recipient_address"
		"           AND d.template_name = f.template_name"
		"           AND d.notification_format = f.notification_format"
		"           AND d.event_data_format = f.event_data_format"
		"           AND coalesce(d.aggregate_identifier, '{}')"
		"               = coalesce(f.aggregate_identifier, '{}')"
		"        ON CONFLICT DO NOTHING RETURNING 1)"
		"SELECT (SELECT count(*) FROM f), (SELECT count(*) FROM x)";
	const char *params[2];
	PGresult *res;
	char idbuf[32];
	int64_t n_groups = 0, n_dirs = 0;
	int r = MG_OK;

	(void)snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	params[0] = idbuf;
	params[1] = who;
	res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "drop: %s", db_message(conn, res));
		goto out;
	}
	(void)mg_parse_int64(PQgetvalue(res, 0, 0), 0, INT64_MAX, &n_groups);
	(void)mg_parse_int64(PQgetvalue(res, 0, 1), 0, INT64_MAX, &n_dirs);
	if (n_groups == 0)
		r = mg_err_set(err, MG_EINPUT, "no failed group with id %lld", (long long)id);
	else
		*ret_n = (size_t)n_dirs;
out:
	PQclear(res);
	return r;
}

int mg_db_outbox_delete(PGconn *conn, const char *ticket, struct mg_err *err)
{
	const char *params[1] = { ticket };
	PGresult *res;
	int r = MG_OK;

	res = PQexecParams(conn, "DELETE FROM mailgen_outbox WHERE intelmq_ticket = $1", 1, NULL,
			   params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		r = mg_err_set(err, db_classify(conn, res),
			       "ticket %s: deleting the mail from mailgen_outbox failed: %s",
			       ticket, db_message(conn, res));
	PQclear(res);
	return r;
}

int mg_db_group_of_directive(PGconn *conn, const char *additional_where, int64_t id,
			     struct mg_group *ret_group, bool *ret_found, struct mg_err *err)
{
	struct mg_buf sql = MG_BUF_INIT(SQL_MAX);
	PGresult *res = NULL;
	const char *params[1];
	char idbuf[32];
	int r;

	*ret_found = false;
	r = scan_sql(&sql, additional_where, true);
	if (r < 0) {
		r = mg_err_set(err, MG_ENOMEM, "group of directive %lld: query too large",
			       (long long)id);
		goto out;
	}
	(void)snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	params[0] = idbuf;
	res = PQexecParams(conn, mg_buf_str(&sql), 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res),
			       "reading the group of directive %lld failed: %s", (long long)id,
			       db_message(conn, res));
		goto out;
	}
	r = MG_OK;
	if (PQntuples(res) == 0)
		goto out;
	r = group_from_row(res, 0, ret_group, err);
	if (r < 0) {
		mg_err_prefix(err, "group of directive %lld: ", (long long)id);
		goto out;
	}
	*ret_found = true;
out:
	PQclear(res);
	mg_buf_release(&sql);
	return r;
}

int mg_db_outbox_peek(PGconn *conn, const struct mg_group *g, struct mg_outbox_mail *ret_ob,
		      bool *ret_found, struct mg_err *err)
{
	/* mg_db_outbox_take()'s choice, without counting an attempt */
	static const char sql[] =
		"SELECT o.intelmq_ticket, o.message_id, o.envelope_from, o.message"
		"  FROM mailgen_outbox AS o"
		" WHERE " KEYS_MATCH("o") " AND o.directive_ids && $6::bigint[]"
					  " ORDER BY o.created_at, o.intelmq_ticket LIMIT 1";
	struct mg_buf ids = MG_BUF_INIT(IDS_PARAM_MAX);
	struct mg_outbox_mail ob = { 0 };
	PGresult *res = NULL;
	const char *params[6];
	int r;

	*ret_found = false;
	r = mg_ids_pgarray(&ids, g->directive_ids, g->n_directives);
	if (r < 0) {
		r = mg_err_set(err, r, "too many directive ids (%zu)", g->n_directives);
		goto out;
	}
	group_key_params(g, params);
	params[5] = mg_buf_str(&ids);
	res = PQexecParams(conn, sql, 6, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "reading mailgen_outbox failed: %s",
			       db_message(conn, res));
		goto out;
	}
	r = MG_OK;
	if (PQntuples(res) == 0)
		goto out;
	r = outbox_row(res, &ob, err);
	if (r < 0)
		goto out;
	*ret_ob = ob;
	memset(&ob, 0, sizeof(ob));
	*ret_found = true;
out:
	mg_outbox_mail_release(&ob);
	PQclear(res);
	mg_buf_release(&ids);
	return r;
}

void mg_directive_state_release(struct mg_directive_state *s)
{
	if (s == NULL)
		return;
	free(s->recipient_address);
	free(s->template_name);
	free(s->notification_format);
	free(s->event_data_format);
	free(s->aggregate_literal);
	free(s->medium);
	free(s->endpoint);
	free(s->drop_reason);
	free(s->fail_reason);
	free(s->outbox_tickets);
	memset(s, 0, sizeof(*s));
}

/* A copy of a column that may be NULL (NULL stays NULL); false when out of memory. */
static bool dup_nullable(const PGresult *res, int col, char **ret)
{
	*ret = NULL;
	if (PQgetisnull(res, 0, col))
		return true;
	*ret = mg_strdup(PQgetvalue(res, 0, col));
	return *ret != NULL;
}

static int64_t usec_or_0(const PGresult *res, int col)
{
	int64_t v;

	return !PQgetisnull(res, 0, col) &&
			       mg_parse_int64(PQgetvalue(res, 0, col), INT64_MIN, INT64_MAX, &v)
		       ? v
		       : 0;
}

int mg_db_directive_state(PGconn *conn, int64_t id, struct mg_directive_state *ret,
			  struct mg_err *err)
{
	static const char sql[] =
		"SELECT d.recipient_address, d.template_name, d.notification_format,"
		" d.event_data_format, d.aggregate_identifier::text, d.medium, d.endpoint::text,"
		" d.events_id, s.intelmq_ticket, (extract(epoch FROM s.sent_at) * 1000000)::bigint,"
		" x.directive_id IS NOT NULL, (extract(epoch FROM x.dropped_at) * 1000000)::bigint,"
		" x.reason, f.id, f.state, f.reason, f.attempts,"
		" (extract(epoch FROM f.retry_at) * 1000000)::bigint,"
		" (SELECT string_agg(o.intelmq_ticket, ' ' ORDER BY o.created_at, o.intelmq_ticket)"
		"    FROM mailgen_outbox AS o WHERE d.id = ANY (o.directive_ids)),"
		" (extract(epoch FROM d.inserted_at) * 1000000)::bigint, d.sent_id IS NOT NULL"
		" FROM directives AS d"
		" LEFT JOIN sent AS s ON s.id = d.sent_id"
		" LEFT JOIN mailgen_dropped_directives AS x ON x.directive_id = d.id"
		" LEFT JOIN mailgen_failed_groups AS f"
		"   ON f.recipient_address = d.recipient_address"
		"  AND f.template_name = d.template_name"
		"  AND f.notification_format = d.notification_format"
		"  AND f.event_data_format = d.event_data_format"
		"  AND coalesce(f.aggregate_identifier, '{}') = coalesce(d.aggregate_identifier, '{}')"
		" WHERE d.id = $1::bigint";
	struct mg_directive_state s = { 0 };
	PGresult *res = NULL;
	const char *params[1];
	char idbuf[32];
	int64_t v;
	int r;

	(void)snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	params[0] = idbuf;
	res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		r = mg_err_set(err, db_classify(conn, res), "reading directive %lld failed: %s",
			       (long long)id, db_message(conn, res));
		goto out;
	}
	s.id = id;
	r = MG_OK;
	if (PQntuples(res) == 0)
		goto done;
	s.found = true;
	if (!dup_nullable(res, 0, &s.recipient_address) ||
	    !dup_nullable(res, 1, &s.template_name) ||
	    !dup_nullable(res, 2, &s.notification_format) ||
	    !dup_nullable(res, 3, &s.event_data_format) ||
	    !dup_nullable(res, 4, &s.aggregate_literal) || !dup_nullable(res, 5, &s.medium) ||
	    !dup_nullable(res, 6, &s.endpoint) || !dup_nullable(res, 12, &s.drop_reason) ||
	    !dup_nullable(res, 15, &s.fail_reason) || !dup_nullable(res, 18, &s.outbox_tickets)) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	s.event_id = usec_or_0(res, 7);
	s.sent = strcmp(PQgetvalue(res, 0, 20), "t") == 0;
	if (!PQgetisnull(res, 0, 8))
		(void)snprintf(s.ticket, sizeof(s.ticket), "%.*s", MG_TICKET_LEN,
			       PQgetvalue(res, 0, 8));
	s.sent_at = usec_or_0(res, 9);
	s.dropped = strcmp(PQgetvalue(res, 0, 10), "t") == 0;
	s.dropped_at = usec_or_0(res, 11);
	s.failed_id = usec_or_0(res, 13);
	s.has_failed_row = !PQgetisnull(res, 0, 13);
	s.permanent = strcmp(PQgetvalue(res, 0, 14), "failed") == 0;
	s.attempts = mg_parse_int64(PQgetvalue(res, 0, 16), 0, INT32_MAX, &v) ? (int)v : 0;
	s.retry_at = usec_or_0(res, 17);
	s.inserted_at = usec_or_0(res, 19);
done:
	*ret = s;
	memset(&s, 0, sizeof(s));
out:
	mg_directive_state_release(&s);
	PQclear(res);
	return r;
}
