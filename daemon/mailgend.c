/* daemon/mailgend.c - the NOTIFY-driven mailgen daemon: main loop, scheduling, signals */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <systemd/sd-daemon.h>

#include "config.h"
#include "control.h"
#include "daemon.h"
#include "listen.h"
#include "log.h"
#include "pool.h"
#include "sign.h"
#include "plugin.h"
#include "smtp.h"
#include "timing.h"

static const char *arg_config;
static const char *arg_socket;
static bool arg_check_config;

struct daemon {
	struct event_base *base;
	struct cfg_ref *cfg; /* current config */
	/* format plugins, loaded once at start and shared by every config */
	struct mg_plugins *plugins;
	char *plugin_dir; /* format_plugin_dir at start, NULL: none */
	unsigned generation;
	struct pool *pool;
	struct listener *listener;
	struct control *control;
	struct event *ev_debounce, *ev_due, *ev_rescan, *ev_retry, *ev_watchdog;
	struct event *ev_term, *ev_int, *ev_hup;
	/* debounce: first notification of the current burst, in usec */
	bool debouncing;
	uint64_t debounce_first;
	/* due timer: the earliest postponed group (usec since the epoch) */
	int64_t next_due;
	/* back-off after SMTP or database failures */
	unsigned failures;
	bool retry_pending;
	bool smtp_down, db_down;
	bool paused;
	bool ready_sent;
	bool stopping;
	/* for status */
	int64_t started_at, last_scan;
	uint64_t pending_groups, pending_directives;
	uint64_t sent, postponed, failed;
	size_t failed_groups, deferred_groups; /* as of the last scan */
	char last_error[512];
	char status_line[200];
};

static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct timeval usec_to_tv(uint64_t usec)
{
	struct timeval tv = { (time_t)(usec / 1000000u), (suseconds_t)(usec % 1000000u) };

	return tv;
}

static const struct mg_config *cfg_of(struct daemon *d)
{
	return &d->cfg->cfg;
}

/* Tell systemd what we are doing, when it changed. */
static void notify_status(struct daemon *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void notify_status(struct daemon *d, const char *fmt, ...)
{
	char line[200];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (strcmp(line, d->status_line) == 0)
		return;
	memcpy(d->status_line, line, sizeof(line));
	(void)sd_notifyf(0, "STATUS=%s", line);
}

static const char *state_word(struct daemon *d)
{
	if (d->stopping)
		return "stopping";
	if (d->paused)
		return "paused";
	if (!listener_connected(d->listener) || d->db_down)
		return "db-unavailable";
	if (d->smtp_down)
		return "smtp-unavailable";
	if (pool_busy(d->pool) > 0)
		return "sending";
	if (pool_scanning(d->pool))
		return "scanning";
	return "idle";
}

static void update_status(struct daemon *d)
{
	notify_status(d, "%s; %llu sent, %llu failed since start; %llu groups pending",
		      state_word(d), (unsigned long long)d->sent, (unsigned long long)d->failed,
		      (unsigned long long)d->pending_groups);
}

static void request_scan(struct daemon *d, const char *why)
{
	if (d->stopping)
		return;
	if (d->retry_pending) {
		mg_log(LOG_DEBUG, NULL, "scan (%s) deferred: waiting out a failure back-off", why);
		return;
	}
	mg_log(LOG_DEBUG, NULL, "scan requested: %s", why);
	pool_request_scan(d->pool);
	update_status(d);
}

/* ---------------------------------------------------------------- timers */

static void on_debounce(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	d->debouncing = false;
	request_scan(d, "notification");
}

/* A notification arrived: (re)arm the debounce timer, capped by the max delay. */
static void on_notify(void *arg, unsigned count, bool reconnected)
{
	struct daemon *d = arg;
	const struct mg_config *cfg = cfg_of(d);
	uint64_t now = now_usec(), at;
	struct timeval tv;

	if (!d->ready_sent) {
		(void)sd_notify(0, "READY=1");
		d->ready_sent = true;
		mg_log(LOG_INFO, NULL, "listening for notifications on channel '%s'",
		       cfg->notify_channel);
	}
	if (reconnected) {
		d->db_down = false;
		request_scan(d, "catching up after (re)connecting");
		return;
	}
	if (!d->debouncing) {
		d->debouncing = true;
		d->debounce_first = now;
	}
	at = mg_debounce_deadline(d->debounce_first, now, (uint64_t)cfg->debounce_quiet_ms * 1000u,
				  (uint64_t)cfg->debounce_max_ms * 1000u);
	tv = usec_to_tv(at > now ? at - now : 0);
	/* adding a pending timer again replaces its timeout: that is the debounce */
	if (evtimer_add(d->ev_debounce, &tv) < 0)
		mg_log(LOG_ERR, NULL,
		       "cannot arm the debounce timer; the safety rescan will "
		       "pick this up");
}

static void on_due(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	d->next_due = INT64_MAX;
	request_scan(d, "a postponed group is due");
}

/* Arm the single due timer at the earliest postponed group (OpenSMTPD's runq). */
static void arm_due(struct daemon *d, int64_t due)
{
	uint64_t now = now_usec();
	struct timeval tv;

	if (due == INT64_MAX || due >= d->next_due)
		return;
	d->next_due = due;
	tv = usec_to_tv(due > (int64_t)now ? (uint64_t)due - now : 0);
	if (evtimer_add(d->ev_due, &tv) < 0)
		mg_log(LOG_ERR, NULL,
		       "cannot arm the due timer; the safety rescan will pick "
		       "postponed groups up");
}

static void on_rescan(evutil_socket_t fd, short what, void *arg)
{
	request_scan(arg, "periodic safety rescan");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	d->retry_pending = false;
	if (!d->paused)
		pool_hold(d->pool, false);
	request_scan(d, "retrying after a failure");
}

/* Something failed for everybody: hold the work and try again after a back-off. */
static void back_off(struct daemon *d, const char *what)
{
	struct timeval tv = { 0, 0 };
	unsigned dropped;

	d->failures++;
	tv.tv_sec = (time_t)mg_backoff_sec(d->failures, (uint64_t)cfg_of(d)->retry_min_sec,
					   (uint64_t)cfg_of(d)->retry_max_sec);
	pool_hold(d->pool, true);
	pool_probe(d->pool, true);
	dropped = pool_discard(d->pool);
	d->retry_pending = true;
	evtimer_add(d->ev_retry, &tv);
	if (d->failures == 1)
		mg_log(LOG_ERR, NULL, "%s; groups stay pending, retrying in %ld s", what,
		       (long)tv.tv_sec);
	else
		mg_log(LOG_WARNING, NULL, "%s (attempt %u); retrying in %ld s", what, d->failures,
		       (long)tv.tv_sec);
	if (dropped > 0)
		mg_log(LOG_DEBUG, NULL, "%u queued batches dropped until then", dropped);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)sd_notify(0, "WATCHDOG=1");
}

/* ----------------------------------------------------------- completions */

static void on_completion(struct completion *c, void *arg)
{
	struct daemon *d = arg;

	if (c->kind == DONE_ACTIONS) {
		bool changed = false;

		for (size_t i = 0; i < c->n_answers; i++) {
			control_answer(d->control, c->answers[i].token, c->answers[i].ok,
				       c->answers[i].text);
			changed |= c->answers[i].changed;
		}
		if (changed)
			request_scan(d, "failed groups released or dropped");
	} else if (c->kind == DONE_SCAN) {
		d->last_scan = (int64_t)time(NULL);
		if (c->db_failed || c->error[0] != '\0') {
			(void)snprintf(d->last_error, sizeof(d->last_error), "%s", c->error);
			if (c->db_failed) {
				d->db_down = true;
				back_off(d, c->error);
			} else {
				mg_log(LOG_ERR, NULL, "scan failed: %s", c->error);
			}
		} else {
			d->db_down = false;
			if (!d->smtp_down)
				d->failures =
					0; /* the database is back; SMTP was not the trouble */
			d->pending_groups = c->groups;
			d->pending_directives = c->directives;
			mg_log(LOG_DEBUG, NULL, "scan: %llu groups pending, %llu due",
			       (unsigned long long)c->groups, (unsigned long long)c->due_groups);
		}
		if (c->failed_listed) {
			d->failed_groups = c->failed.n_failed;
			d->deferred_groups = c->failed.n_deferred;
		}
		arm_due(d, c->next_due);
	} else {
		d->sent += c->stats.sent;
		/* until the next scan, what was sent is no longer pending */
		d->pending_groups -=
			c->stats.sent < d->pending_groups ? c->stats.sent : d->pending_groups;
		d->pending_directives -= c->stats.directives_sent < d->pending_directives
						 ? c->stats.directives_sent
						 : d->pending_directives;
		d->postponed += c->stats.postponed;
		d->failed += c->stats.errors + c->stats.deferred + c->stats.failed;
		arm_due(d, c->next_due);
		if (c->error[0] != '\0')
			(void)snprintf(d->last_error, sizeof(d->last_error), "%s", c->error);
		if (c->smtp_failed || c->db_failed) {
			d->smtp_down = c->smtp_failed;
			d->db_down = c->db_failed;
			if (!d->retry_pending)
				back_off(d, c->error);
		} else {
			if (c->stats.sent > 0) {
				if (d->failures > 0)
					mg_log(LOG_INFO, NULL, "mails are going out again");
				d->failures = 0;
				d->smtp_down = false;
				d->db_down = false;
			}
			/*
			 * The probe got through (or had nothing to try): all workers
			 * again.  Not a batch that was running before the failure.
			 */
			if (c->probe && pool_end_probe(d->pool))
				request_scan(d, "the probe after a failure went through");
		}
	}
	completion_free(c);
	update_status(d);
}

/* ------------------------------------------------------- control requests */

void daemon_get_status(struct daemon *d, struct mg_ctl_status *st)
{
	memset(st, 0, sizeof(*st));
	(void)snprintf(st->state, sizeof(st->state), "%s", state_word(d));
	st->started_at = d->started_at;
	st->now = (int64_t)time(NULL);
	st->workers_busy = pool_busy(d->pool);
	st->workers_total = pool_size(d->pool);
	st->pending_groups = d->pending_groups;
	st->pending_directives = d->pending_directives;
	st->next_due = d->next_due == INT64_MAX ? 0 : d->next_due / 1000000;
	st->last_scan = d->last_scan;
	st->sent = d->sent;
	st->postponed = d->postponed;
	st->failed = d->failed;
	st->failed_groups = d->failed_groups;
	st->deferred_groups = d->deferred_groups;
	st->paused = d->paused;
	st->db_connected = listener_connected(d->listener) && !d->db_down;
	(void)snprintf(st->last_error, sizeof(st->last_error), "%s", d->last_error);
}

int daemon_failed_request(struct daemon *d, enum mg_ctl_cmd cmd, int64_t id, unsigned uid,
			  uint64_t token, char *msg, size_t msg_size)
{
	enum pool_action_kind kind = cmd == MG_CTL_FAILED  ? POOL_LIST
				     : cmd == MG_CTL_RETRY ? POOL_RETRY
							   : POOL_DROP;

	if (kind == POOL_DROP && id == 0) {
		(void)snprintf(msg, msg_size, "drop: give the id of a failed group");
		return MG_EINPUT;
	}
	if (!pool_request_action(d->pool, kind, id, uid, token)) {
		(void)snprintf(msg, msg_size, "too many requests waiting; try again shortly");
		return MG_ETEMP;
	}
	return 0;
}

void daemon_flush(struct daemon *d)
{
	if (d->retry_pending) { /* an operator asking to try now overrides the back-off */
		evtimer_del(d->ev_retry);
		d->retry_pending = false;
		if (!d->paused)
			pool_hold(d->pool, false);
	}
	evtimer_del(d->ev_debounce);
	d->debouncing = false;
	request_scan(d, "flush requested");
}

void daemon_set_paused(struct daemon *d, bool paused)
{
	if (d->paused == paused)
		return;
	d->paused = paused;
	if (paused) {
		pool_hold(d->pool, true);
		mg_log(LOG_INFO, NULL, "paused: no new groups are taken");
	} else {
		if (!d->retry_pending)
			pool_hold(d->pool, false);
		mg_log(LOG_INFO, NULL, "resumed");
		request_scan(d, "resumed");
	}
	update_status(d);
}

/* The CA file and the SMTP password must be usable now, not at the first mail. */
static int smtp_client_check(const struct mg_config *cfg, struct mg_err *err)
{
	struct mg_smtp_client *c = NULL;
	int r = mg_smtp_client_new(cfg, &c, err);

	mg_smtp_client_free(c);
	return r;
}

/* Parse and check a new config completely; swap it in only when all is well. */
int daemon_reload(struct daemon *d, char *msg, size_t msg_size)
{
	struct mg_config fresh = { 0 };
	struct mg_signer *signer = NULL;
	struct cfg_ref *ref;
	struct mg_err err = { 0 };
	struct timeval tv;
	int r;

	(void)sd_notify(0, "RELOADING=1");
	r = mg_config_load(&fresh, arg_config, &err);
	if (r == MG_OK) {
		/* plugins are loaded at start only: keep the same set */
		fresh.plugins = mg_plugins_active(d->plugins);
		if ((fresh.format_plugin_dir == NULL) != (d->plugin_dir == NULL) ||
		    (d->plugin_dir != NULL && strcmp(fresh.format_plugin_dir, d->plugin_dir) != 0))
			mg_log(LOG_WARNING, NULL,
			       "format_plugin_dir changed; plugins are loaded at start only: "
			       "restart mailgend to use it");
	}
	if (r == MG_OK && fresh.always_sign)
		r = mg_sign_new(fresh.gnupg_home, fresh.signing_key, fresh.sign_via_agent, &signer,
				&err);
	if (signer != NULL)
		mg_log(LOG_INFO, NULL, "signing through %s", mg_sign_method(signer));
	mg_sign_free(signer);
	if (r == MG_OK)
		r = smtp_client_check(&fresh, &err);
	if (r < 0) {
		mg_config_release(&fresh);
		(void)snprintf(msg, msg_size, "%s", err.msg);
		mg_log(LOG_ERR, NULL, "reload failed, keeping the old configuration: %s", err.msg);
		(void)sd_notify(0, "READY=1");
		return r;
	}
	for (size_t i = 0; i < fresh.n_warnings; i++)
		mg_log(LOG_WARNING, NULL, "%s", fresh.warnings[i]);
	ref = cfg_ref_new(&fresh, ++d->generation);
	if (ref == NULL) {
		mg_config_release(&fresh);
		(void)snprintf(msg, msg_size, "out of memory");
		(void)sd_notify(0, "READY=1");
		return MG_ENOMEM;
	}
	pool_set_config(d->pool, ref);
	(void)listener_reconfigure(d->listener, &ref->cfg);
	cfg_ref_put(d->cfg);
	d->cfg = ref;
	mg_log_set_level(cfg_of(d)->log_level);
	tv.tv_sec = cfg_of(d)->rescan_interval_sec;
	tv.tv_usec = 0;
	event_add(d->ev_rescan, &tv); /* re-adding replaces the interval */
	mg_log(LOG_INFO, NULL, "configuration reloaded");
	(void)sd_notify(0, "READY=1");
	(void)snprintf(msg, msg_size, "configuration reloaded");
	request_scan(d, "configuration reloaded");
	return MG_OK;
}

/* ---------------------------------------------------------------- signals */

static void on_sighup(evutil_socket_t fd, short what, void *arg)
{
	char msg[512];

	(void)daemon_reload(arg, msg, sizeof(msg));
}

static void on_sigterm(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;

	if (d->stopping)
		return;
	d->stopping = true;
	(void)sd_notify(0, "STOPPING=1");
	mg_log(LOG_INFO, NULL, "stopping: no new groups are taken, mails in flight are finished");
	event_base_loopbreak(d->base);
}

/* ------------------------------------------------------------------- main */

static void usage(FILE *f)
{
	(void)fprintf(
		f, "usage: mailgend [-c FILE] [-s SOCKET] [--check-config]\n"
		   "\n"
		   "The mailgen daemon: sends the notification mails for new directives as\n"
		   "soon as IntelMQ stores them.  Runs in the foreground (systemd Type=notify).\n"
		   "\n"
		   "  -c, --config FILE    read only this config file\n"
		   "  -s, --socket PATH    control socket (default: daemon.control_socket)\n"
		   "      --check-config   check the configuration and the signing key, and exit\n"
		   "  -h, --help           show this help\n"
		   "\n"
		   "See mailgend(8), mailgenctl(8), mailgen.conf(5).\n");
}

static int parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			arg_config = optarg;
			break;
		case 's':
			arg_socket = optarg;
			break;
		case 'C':
			arg_check_config = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind < argc) {
		(void)fprintf(stderr, "mailgend: unexpected argument '%s'\n", argv[optind]);
		return EX_USAGE;
	}
	return 0;
}

static unsigned worker_count(const struct mg_config *cfg)
{
	long n;

	if (cfg->workers > 0)
		return (unsigned)cfg->workers;
	/*
	 * Two per CPU: a worker spends part of each mail waiting for
	 * PostgreSQL and the SMTP server, and another one signs meanwhile
	 * (docs/performance.md: signed mails/s +20-30% over one per CPU).
	 */
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 0)
		return 4; /* the CPUs cannot be counted */
	return n < 32 ? 2 * (unsigned)n : 64;
}

static void daemon_release(struct daemon *d)
{
	struct event *evs[] = { d->ev_debounce, d->ev_due,  d->ev_rescan, d->ev_retry,
				d->ev_watchdog, d->ev_term, d->ev_int,	  d->ev_hup };

	control_free(d->control);
	listener_free(d->listener);
	if (d->pool != NULL && !pool_stop(d->pool, 5))
		_exit(1); /* threads still running: nothing may be freed under them */
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i] != NULL)
			event_free(evs[i]);
	pool_free(d->pool);
	cfg_ref_put(d->cfg);
	if (d->base != NULL)
		event_base_free(d->base);
}

int main(int argc, char **argv)
{
	struct daemon d = { 0 };
	struct mg_config cfg = { 0 };
	struct mg_signer *signer = NULL;
	struct mg_err err = { 0 };
	struct timeval tv;
	uint64_t wd_usec = 0;
	int r, status = 1;

	r = parse_args(argc, argv);
	if (r != 0)
		return r;
	/* before anything else: libevent's locks, then gpgme (before any thread) */
	if (evthread_use_pthreads() < 0) {
		(void)fprintf(stderr, "mailgend: libevent has no pthreads support\n");
		return 1;
	}
	mg_log_init("mailgend", LOG_INFO);
	if (mg_sign_global_init(&err) < 0) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		return EX_CONFIG;
	}
	(void)signal(SIGPIPE, SIG_IGN); /* libESMTP never ignores it */

	r = mg_config_load(&cfg, arg_config, &err);
	if (r == MG_OK && cfg.format_plugin_dir != NULL) {
		r = mg_plugins_load(cfg.format_plugin_dir, &d.plugins, &err);
		if (r == MG_OK && (d.plugin_dir = strdup(cfg.format_plugin_dir)) == NULL)
			r = mg_err_set(&err, MG_ENOMEM, "out of memory");
		cfg.plugins = mg_plugins_active(d.plugins);
		if (r == MG_OK && cfg.plugins == NULL)
			mg_log(LOG_WARNING, NULL,
			       "format_plugin_dir '%s' holds no plugins (*.so), ignoring",
			       cfg.format_plugin_dir);
	}
	if (r == MG_OK && cfg.always_sign)
		r = mg_sign_new(cfg.gnupg_home, cfg.signing_key, cfg.sign_via_agent, &signer, &err);
	if (signer != NULL)
		mg_log(LOG_INFO, NULL, "signing through %s", mg_sign_method(signer));
	mg_sign_free(signer);
	if (r == MG_OK)
		r = smtp_client_check(&cfg, &err);
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		status = EX_CONFIG;
		goto out;
	}
	mg_log_set_level(cfg.log_level);
	for (size_t i = 0; i < cfg.n_warnings; i++)
		mg_log(LOG_WARNING, NULL, "%s", cfg.warnings[i]);
	for (size_t i = 0; i < mg_plugins_count(d.plugins); i++)
		mg_log(LOG_INFO, NULL, "format plugin %s loaded from '%s'",
		       mg_plugins_name(d.plugins, i), d.plugin_dir);
	if (arg_check_config) {
		(void)printf("mailgend: configuration OK\n");
		status = 0;
		goto out;
	}

	d.started_at = (int64_t)time(NULL);
	d.next_due = INT64_MAX;
	d.cfg = cfg_ref_new(&cfg, ++d.generation);
	d.base = event_base_new();
	if (d.cfg == NULL || d.base == NULL) {
		mg_log(LOG_ERR, NULL, "out of memory at start");
		goto out;
	}
	d.ev_debounce = evtimer_new(d.base, on_debounce, &d);
	d.ev_due = evtimer_new(d.base, on_due, &d);
	d.ev_rescan = event_new(d.base, -1, EV_PERSIST, on_rescan, &d);
	d.ev_retry = evtimer_new(d.base, on_retry, &d);
	d.ev_term = evsignal_new(d.base, SIGTERM, on_sigterm, &d);
	d.ev_int = evsignal_new(d.base, SIGINT, on_sigterm, &d);
	d.ev_hup = evsignal_new(d.base, SIGHUP, on_sighup, &d);
	if (d.ev_debounce == NULL || d.ev_due == NULL || d.ev_rescan == NULL ||
	    d.ev_retry == NULL || d.ev_term == NULL || d.ev_int == NULL || d.ev_hup == NULL ||
	    event_add(d.ev_term, NULL) < 0 || event_add(d.ev_int, NULL) < 0 ||
	    event_add(d.ev_hup, NULL) < 0) {
		mg_log(LOG_ERR, NULL, "cannot set up the event loop");
		goto out;
	}
	d.control =
		control_new(d.base, arg_socket != NULL ? arg_socket : cfg_of(&d)->control_socket,
			    getuid(), getgid(), &d, &err);
	if (d.control == NULL) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		status = EX_CONFIG;
		goto out;
	}
	d.pool = pool_new(d.base, d.cfg, worker_count(cfg_of(&d)), on_completion, &d);
	if (d.pool == NULL) {
		mg_log(LOG_ERR, NULL, "cannot start the worker threads");
		goto out;
	}
	d.listener = listener_new(d.base, cfg_of(&d), on_notify, &d);
	if (d.listener == NULL) {
		mg_log(LOG_ERR, NULL, "cannot set up the notification listener");
		goto out;
	}
	tv.tv_sec = cfg_of(&d)->rescan_interval_sec;
	tv.tv_usec = 0;
	event_add(d.ev_rescan, &tv);
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
		d.ev_watchdog = event_new(d.base, -1, EV_PERSIST, on_watchdog, &d);
		tv = usec_to_tv(wd_usec / 2);
		if (d.ev_watchdog != NULL)
			event_add(d.ev_watchdog, &tv);
	}
	if (geteuid() == 0)
		mg_log(LOG_WARNING, NULL,
		       "running as root; mailgend needs no privileges (the "
		       "systemd unit runs it as user 'mailgen')");
	mg_log(LOG_INFO, NULL, "mailgend started with %u workers", pool_size(d.pool));
	update_status(&d);

	if (event_base_dispatch(d.base) < 0)
		mg_log(LOG_ERR, NULL, "event loop failed");

	/* SIGTERM: finish or abandon what is in flight, within a bound */
	control_free(d.control);
	d.control = NULL;
	listener_free(d.listener);
	d.listener = NULL;
	if (!pool_stop(d.pool, cfg_of(&d)->shutdown_timeout_sec)) {
		mg_log(LOG_ERR, NULL,
		       "workers did not finish within %d s; exiting anyway (a mail being sent "
		       "right now may not be recorded)",
		       cfg_of(&d)->shutdown_timeout_sec);
		_exit(1);
	}
	/* the results of the batches finished after SIGTERM are still queued for the loop */
	(void)event_base_loop(d.base, EVLOOP_NONBLOCK);
	mg_log(LOG_INFO, NULL, "stopped: %llu mails sent since start", (unsigned long long)d.sent);
	status = 0;
out:
	daemon_release(&d);
	mg_config_release(&cfg);
	/* after the workers are gone: nothing decides with them any more */
	mg_plugins_free(d.plugins);
	free(d.plugin_dir);
	return status;
}
