/* daemon/control-test-main.c - mg-control-test: the control server over a stub daemon, for tests */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "control.h"
#include "daemon.h"
#include "log.h"
#include "util.h"

/*
 * The stub behind the control server.  Its status is fixed except for the
 * state (which follows pause/resume), the clock, and last_error, which
 * counts the calls so a test can see that a request reached the daemon:
 * "stub: flush=1 pause=0 resume=0 reload=0".
 *
 * Environment: MG_STUB_RELOAD_FAIL=MESSAGE makes every reload fail with
 * MESSAGE.
 */
struct daemon {
	int64_t started_at;
	bool paused;
	unsigned flushes, pauses, resumes, reloads;
};

void daemon_get_status(struct daemon *d, struct mg_ctl_status *st)
{
	int64_t now = (int64_t)time(NULL);

	(void)snprintf(st->state, sizeof(st->state), "%s", d->paused ? "paused" : "idle");
	st->started_at = d->started_at;
	st->now = now;
	st->workers_busy = 1;
	st->workers_total = 4;
	st->pending_groups = 12;
	st->pending_directives = 40;
	st->next_due = now + 300;
	st->last_scan = now - 12;
	st->sent = 10;
	st->postponed = 2;
	st->failed = 1;
	st->paused = d->paused;
	st->db_connected = true;
	(void)snprintf(st->last_error, sizeof(st->last_error),
		       "stub: flush=%u pause=%u resume=%u reload=%u", d->flushes, d->pauses,
		       d->resumes, d->reloads);
}

void daemon_flush(struct daemon *d)
{
	d->flushes++;
}

void daemon_set_paused(struct daemon *d, bool paused)
{
	if (paused)
		d->pauses++;
	else
		d->resumes++;
	d->paused = paused;
}

int daemon_reload(struct daemon *d, char *msg, size_t msg_size)
{
	const char *fail = getenv("MG_STUB_RELOAD_FAIL");

	d->reloads++;
	if (fail != NULL && fail[0] != '\0') {
		(void)snprintf(msg, msg_size, "%s", fail);
		mg_log(LOG_ERR, NULL, "reload failed: %s", fail);
		return MG_ECONFIG;
	}
	mg_log(LOG_INFO, NULL, "configuration reloaded");
	return MG_OK;
}

/* The stub knows failed groups 7 and 8 and answers at once. */
int daemon_failed_request(struct daemon *d, enum mg_ctl_cmd cmd, int64_t id, unsigned uid,
			  uint64_t token, char *msg, size_t msg_size)
{
	if (cmd == MG_CTL_FAILED) {
		(void)snprintf(msg, msg_size,
			       "1 failed, 1 deferred\n\n7  failed  stub@example.org\n"
			       "8  deferred  stub@example.org\n");
		return 1;
	}
	if (id != 0 && id != 7 && id != 8) {
		(void)snprintf(msg, msg_size, "no failed group with id %lld", (long long)id);
		return MG_EINPUT;
	}
	(void)snprintf(msg, msg_size, "stub: %s %lld by uid %u", mg_ctl_cmd_name(cmd),
		       (long long)id, uid);
	return 1;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)event_base_loopbreak(arg);
}

static void usage(FILE *f)
{
	(void)fprintf(f, "usage: mg-control-test [-u UID] [-g GID] SOCKET\n"
			 "\n"
			 "Serve the control socket at SOCKET over a stub daemon until SIGTERM or\n"
			 "SIGINT.  UID and GID are the daemon's user and group for the access\n"
			 "check (default: this process's).  MG_STUB_RELOAD_FAIL=MESSAGE makes\n"
			 "reload fail.\n");
}

int main(int argc, char **argv)
{
	struct daemon d = { .started_at = (int64_t)time(NULL) - 3723 };
	struct event_base *base = NULL;
	struct event *ev_term = NULL, *ev_int = NULL;
	struct control *c = NULL;
	struct mg_err err = { 0 };
	uid_t uid = getuid();
	gid_t gid = getgid();
	int64_t v;
	int opt, status = EX_SOFTWARE;

	while ((opt = getopt(argc, argv, "u:g:h")) != -1) {
		switch (opt) {
		case 'u':
		case 'g':
			if (!mg_parse_int64(optarg, 0, UINT32_MAX - 1, &v)) {
				(void)fprintf(stderr, "mg-control-test: -%c: bad id '%s'\n", opt,
					      optarg);
				return EX_USAGE;
			}
			if (opt == 'u')
				uid = (uid_t)v;
			else
				gid = (gid_t)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return EX_USAGE;
	}

	mg_log_init("mg-control-test", LOG_DEBUG);
	/* as mailgend does: a client that goes away must not kill us */
	(void)signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	if (base == NULL)
		goto out;
	ev_term = evsignal_new(base, SIGTERM, on_signal, base);
	ev_int = evsignal_new(base, SIGINT, on_signal, base);
	if (ev_term == NULL || ev_int == NULL || event_add(ev_term, NULL) < 0 ||
	    event_add(ev_int, NULL) < 0)
		goto out;
	c = control_new(base, argv[optind], uid, gid, &d, &err);
	if (c == NULL) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		status = err.rc == MG_ECONFIG ? EX_CONFIG : EX_OSERR;
		goto out;
	}
	mg_log(LOG_INFO, NULL, "listening on '%s'", argv[optind]);
	if (event_base_dispatch(base) < 0)
		goto out;
	mg_log(LOG_INFO, NULL, "stopping");
	status = 0;
out:
	control_free(c);
	if (ev_term != NULL)
		event_free(ev_term);
	if (ev_int != NULL)
		event_free(ev_int);
	if (base != NULL)
		event_base_free(base);
	return status;
}
