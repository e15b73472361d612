/* daemon/listen.c - LISTEN for the directives trigger's notifications, on the event loop */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "db.h"
#include "listen.h"
#include "log.h"
#include "mg-alloc.h"
#include "timing.h"

enum lstate {
	L_IDLE,	       /* waiting to (re)connect */
	L_CONNECTING,  /* PQconnectPoll in progress */
	L_LISTEN_SENT, /* LISTEN sent, the server's answer not yet read */
	L_LISTENING,   /* LISTEN active */
};

struct listener {
	struct event_base *base;
	PGconn *conn;
	enum lstate state;
	struct event *ev_io;	/* on PQsocket(); remade when the socket changes */
	struct event *ev_retry; /* reconnect timer */
	struct event *ev_ping;	/* liveness timer */
	bool ping_outstanding;
	unsigned failures; /* consecutive, for the back-off */
	bool was_connected;
	bool logged_down;
	listener_notify_fn *notify;
	void *arg;
	/* connection settings (copies) */
	char **keys, **vals; /* NULL-terminated, owned copies: a reload frees the config */
	char channel[64];
	int retry_min, retry_max, ping_sec;
};

static void listener_connect(struct listener *l);

static void free_params(char **keys, char **vals)
{
	for (size_t i = 0; keys != NULL && keys[i] != NULL; i++) {
		free(keys[i]);
		free(vals[i]);
	}
	free(keys);
	free(vals);
}

static void free_settings(struct listener *l)
{
	free_params(l->keys, l->vals);
	l->keys = NULL;
	l->vals = NULL;
}

/* Copy the connection settings; on failure the old ones stay. */
static int copy_settings(struct listener *l, const struct mg_config *cfg)
{
	const char **k = NULL, **v = NULL;
	char **keys = NULL, **vals = NULL;
	size_t n = 0;
	int r = MG_ENOMEM;

	if (mg_db_conn_params(cfg, "mailgend-listen", &k, &v) < 0)
		return MG_ENOMEM;
	while (k[n] != NULL)
		n++;
	keys = calloc(n + 1, sizeof(*keys));
	vals = calloc(n + 1, sizeof(*vals));
	if (keys == NULL || vals == NULL)
		goto out;
	for (size_t i = 0; i < n; i++) {
		keys[i] = mg_strdup(k[i]);
		vals[i] = mg_strdup(v[i]);
		if (keys[i] == NULL || vals[i] == NULL) {
			free(keys[i]); /* free_params stops at the first NULL key */
			free(vals[i]);
			keys[i] = NULL;
			goto out;
		}
	}
	free_settings(l);
	l->keys = keys;
	l->vals = vals;
	keys = vals = NULL;
	r = MG_OK;
out:
	free(k);
	free(v);
	free_params(keys, vals);
	if (r < 0)
		return r;
	(void)snprintf(l->channel, sizeof(l->channel), "%s", cfg->notify_channel);
	l->retry_min = cfg->retry_min_sec;
	l->retry_max = cfg->retry_max_sec;
	l->ping_sec = cfg->db_ping_sec;
	return MG_OK;
}

static void drop_io(struct listener *l)
{
	if (l->ev_io != NULL) {
		event_free(l->ev_io);
		l->ev_io = NULL;
	}
}

static void first_line(const char *m, char *out, size_t size)
{
	size_t n = strcspn(m, "\n");

	(void)snprintf(out, size, "%.*s", (int)n, m);
}

/* The connection is gone or unusable: close it and try again after a back-off. */
static void listener_lost(struct listener *l, const char *why)
{
	struct timeval tv = { 0, 0 };
	char msg[256];

	first_line(why, msg, sizeof(msg));
	drop_io(l);
	PQfinish(l->conn);
	l->conn = NULL;
	l->state = L_IDLE;
	l->ping_outstanding = false;
	evtimer_del(l->ev_ping);
	l->failures++;
	/* the first retry at once (a killed backend), then back off (a server down) */
	if (l->failures > 1)
		tv.tv_sec = (time_t)mg_backoff_sec(l->failures - 1, (uint64_t)l->retry_min,
						   (uint64_t)l->retry_max);
	if (!l->logged_down || l->failures == 1)
		mg_log(LOG_ERR, NULL,
		       "database connection for notifications lost: %s; reconnecting in %ld s", msg,
		       (long)tv.tv_sec);
	else
		mg_log(LOG_DEBUG, NULL, "database still unreachable (%u attempts): %s", l->failures,
		       msg);
	l->logged_down = true;
	evtimer_add(l->ev_retry, &tv);
}

static void set_io(struct listener *l, short what, event_callback_fn cb)
{
	drop_io(l);
	l->ev_io = event_new(l->base, PQsocket(l->conn), what, cb, l);
	if (l->ev_io == NULL || event_add(l->ev_io, NULL) < 0)
		listener_lost(l, "cannot watch the connection's socket");
}

/*
 * The server answered our LISTEN: from now on no notification is missed,
 * so this is the moment for the catch-up scan (a scan started earlier could
 * miss a commit made between its snapshot and the LISTEN).
 */
static void listening_confirmed(struct listener *l)
{
	l->state = L_LISTENING;
	if (l->was_connected || l->failures > 0)
		mg_log(LOG_INFO, NULL, "database connection for notifications re-established");
	l->failures = 0;
	l->logged_down = false;
	l->was_connected = true;
	/* whatever was notified while we were away: scan */
	l->notify(l->arg, 0, true);
}

/* Read what arrived: results of LISTEN and pings, and notifications. */
static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	unsigned count = 0;
	PGnotify *n;
	PGresult *res;

	if (PQconsumeInput(l->conn) == 0) {
		listener_lost(l, PQerrorMessage(l->conn));
		return;
	}
	while (!PQisBusy(l->conn) && (res = PQgetResult(l->conn)) != NULL) {
		ExecStatusType st = PQresultStatus(res);

		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			char msg[256];

			first_line(PQresultErrorMessage(res), msg, sizeof(msg));
			PQclear(res);
			listener_lost(l, msg);
			return;
		}
		PQclear(res);
		l->ping_outstanding = false;
		if (l->state == L_LISTEN_SENT)
			listening_confirmed(l);
	}
	/* drain every notification of this wake-up */
	while ((n = PQnotifies(l->conn)) != NULL) {
		count++;
		PQfreemem(n);
	}
	if (count > 0)
		l->notify(l->arg, count, false);
}

static void on_ping(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;
	struct timeval tv = { l->ping_sec, 0 };

	if (l->state != L_LISTENING && l->state != L_LISTEN_SENT)
		return;
	if (l->ping_outstanding) {
		listener_lost(l, "the server did not answer a ping");
		return;
	}
	/* a plain query outside any transaction: the session stays idle between */
	if (PQsendQuery(l->conn, "SELECT 1") == 0 || PQflush(l->conn) < 0) {
		listener_lost(l, PQerrorMessage(l->conn));
		return;
	}
	l->ping_outstanding = true;
	evtimer_add(l->ev_ping, &tv);
}

static void start_listening(struct listener *l)
{
	struct timeval tv = { l->ping_sec, 0 };
	char sql[128];

	if (PQsetnonblocking(l->conn, 1) != 0) {
		listener_lost(l, PQerrorMessage(l->conn));
		return;
	}
	(void)snprintf(sql, sizeof(sql), "LISTEN \"%s\"", l->channel);
	if (PQsendQuery(l->conn, sql) == 0 || PQflush(l->conn) < 0) {
		listener_lost(l, PQerrorMessage(l->conn));
		return;
	}
	l->state = L_LISTEN_SENT;
	l->ping_outstanding = true; /* the LISTEN's result counts as the first answer */
	set_io(l, EV_READ | EV_PERSIST, on_readable);
	if (l->state != L_LISTEN_SENT)
		return;
	/* no answer within a ping interval: the connection is treated as lost */
	evtimer_add(l->ev_ping, &tv);
}

static void on_connect_io(evutil_socket_t fd, short what, void *arg)
{
	struct listener *l = arg;

	switch (PQconnectPoll(l->conn)) {
	case PGRES_POLLING_READING:
		set_io(l, EV_READ, on_connect_io);
		break;
	case PGRES_POLLING_WRITING:
		set_io(l, EV_WRITE, on_connect_io);
		break;
	case PGRES_POLLING_OK:
		drop_io(l);
		start_listening(l);
		break;
	default:
		listener_lost(l, PQerrorMessage(l->conn));
		break;
	}
}

static void listener_connect(struct listener *l)
{
	l->conn =
		PQconnectStartParams((const char *const *)l->keys, (const char *const *)l->vals, 0);
	if (l->conn == NULL) {
		listener_lost(l, "out of memory");
		return;
	}
	if (PQstatus(l->conn) == CONNECTION_BAD) {
		listener_lost(l, PQerrorMessage(l->conn));
		return;
	}
	(void)PQsetNoticeProcessor(l->conn, mg_db_notice, (void *)"notification connection");
	l->state = L_CONNECTING;
	/* the first step always waits for the socket to be writable */
	set_io(l, EV_WRITE, on_connect_io);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	listener_connect(arg);
}

struct listener *listener_new(struct event_base *base, const struct mg_config *cfg,
			      listener_notify_fn *notify, void *arg)
{
	struct listener *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->base = base;
	l->notify = notify;
	l->arg = arg;
	l->ev_retry = evtimer_new(base, on_retry, l);
	l->ev_ping = evtimer_new(base, on_ping, l);
	if (l->ev_retry == NULL || l->ev_ping == NULL || copy_settings(l, cfg) < 0) {
		listener_free(l);
		return NULL;
	}
	listener_connect(l);
	return l;
}

int listener_reconfigure(struct listener *l, const struct mg_config *cfg)
{
	int r = copy_settings(l, cfg);

	if (r < 0)
		return r;
	drop_io(l);
	PQfinish(l->conn);
	l->conn = NULL;
	evtimer_del(l->ev_ping);
	evtimer_del(l->ev_retry);
	l->state = L_IDLE;
	l->ping_outstanding = false;
	listener_connect(l);
	return MG_OK;
}

bool listener_connected(const struct listener *l)
{
	return l->state == L_LISTENING;
}

void listener_free(struct listener *l)
{
	if (l == NULL)
		return;
	drop_io(l);
	if (l->ev_retry != NULL)
		event_free(l->ev_retry);
	if (l->ev_ping != NULL)
		event_free(l->ev_ping);
	PQfinish(l->conn);
	free_settings(l);
	free(l);
}
