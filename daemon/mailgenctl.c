/* daemon/mailgenctl.c - control the running mailgend over its unix socket */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "ctl-proto.h"
#include "mg-buf.h"
#include "mg-err.h"
#include "util.h"

/* Exit codes besides 0 and EX_USAGE; 3 is what "systemctl status" uses for "not running". */
#define EXIT_FAILED	 1
#define EXIT_NOT_RUNNING 3
#define EXIT_DENIED	 4

#define DEFAULT_TIMEOUT_SEC 10

static const char *arg_socket = MG_CTL_DEFAULT_SOCKET;
static bool arg_json;
static int64_t arg_id; /* retry, drop: the failed group; 0 for "retry all" */
static int arg_timeout = DEFAULT_TIMEOUT_SEC;

static const struct command {
	const char *name;
	enum mg_ctl_cmd cmd;
	const char *done; /* printed on success; NULL: print the status or message */
	bool takes_id;	  /* needs a failed group's id (retry also takes "all") */
} commands[] = {
	{ "status", MG_CTL_STATUS, NULL, false },
	{ "flush", MG_CTL_FLUSH, "mailgend: flush requested", false },
	{ "pause", MG_CTL_PAUSE, "mailgend: paused", false },
	{ "resume", MG_CTL_RESUME, "mailgend: resumed", false },
	{ "reload", MG_CTL_RELOAD, "mailgend: configuration reloaded", false },
	{ "failed", MG_CTL_FAILED, NULL, false },
	{ "retry", MG_CTL_RETRY, NULL, true },
	{ "drop", MG_CTL_DROP, NULL, true },
};

static void usage(FILE *f)
{
	(void)fprintf(
		f,
		"usage: mailgenctl [-s|--socket PATH] [--json] [-t|--timeout SEC] COMMAND [ID]\n"
		"\n"
		"Control the running mailgend.  Commands:\n"
		"\n"
		"  status    state, uptime, workers, pending groups, next due time, last\n"
		"            scan, mails sent/postponed/failed since start, last error\n"
		"  flush     scan for pending directives now, skipping the debounce delay\n"
		"  pause     stop handing new groups to the workers (until resume or restart)\n"
		"  resume    hand new groups to the workers again\n"
		"  reload    re-read the configuration and templates; on an error the old\n"
		"            ones stay in force and the error is shown\n"
		"  failed    list the failed groups (not retried until released) and the\n"
		"            deferred ones (waiting for their next attempt), with their ids\n"
		"  retry ID|all\n"
		"            release failed group ID (or all of them): sent at the next scan\n"
		"  drop ID   give up on failed group ID: its pending directives are never\n"
		"            mailed (kept in mailgen_dropped_directives)\n"
		"\n"
		"  -s, --socket PATH   control socket (default %s)\n"
		"      --json          print the daemon's answer as one JSON line\n"
		"  -t, --timeout SEC   give up after SEC seconds, 1..3600 (default %d)\n"
		"  -h, --help          show this help\n"
		"\n"
		"Exit status:\n"
		"  0   done\n"
		"  1   mailgend refused the request, did not answer in time, or answered\n"
		"      something unreadable\n"
		"  3   mailgend is not running (no socket, or nobody listening on it)\n"
		"  4   permission denied: run as root or as a member of the daemon's group\n"
		"  64  usage error\n",
		MG_CTL_DEFAULT_SOCKET, DEFAULT_TIMEOUT_SEC);
}

static int parse_args(int argc, char **argv, const struct command **ret_cmd)
{
	enum { OPT_JSON = 0x100 };
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "s:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			arg_socket = optarg;
			break;
		case OPT_JSON:
			arg_json = true;
			break;
		case 't':
			if (!mg_parse_int64(optarg, 1, 3600, &v)) {
				(void)fprintf(stderr,
					      "mailgenctl: --timeout: expected an integer 1..3600, "
					      "got '%s'\n",
					      optarg);
				return EX_USAGE;
			}
			arg_timeout = (int)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind >= argc) {
		(void)fprintf(stderr, "mailgenctl: no command given\n");
		usage(stderr);
		return EX_USAGE;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[optind], commands[i].name) != 0)
			continue;
		if (commands[i].takes_id && optind + 1 >= argc) {
			(void)fprintf(stderr, "mailgenctl: %s: give the id of a failed group\n",
				      commands[i].name);
			return EX_USAGE;
		}
		if (commands[i].takes_id) {
			const char *id = argv[optind + 1];

			if (commands[i].cmd == MG_CTL_RETRY && strcmp(id, "all") == 0)
				arg_id = 0;
			else if (mg_parse_int64(id, 1, INT64_MAX - 1, &v))
				arg_id = v;
			else {
				(void)fprintf(
					stderr,
					"mailgenctl: %s: expected the id of a failed group%s, "
					"got '%s'\n",
					commands[i].name,
					commands[i].cmd == MG_CTL_RETRY ? " or 'all'" : "", id);
				return EX_USAGE;
			}
			optind++;
		}
		if (optind + 1 < argc) {
			(void)fprintf(stderr, "mailgenctl: unexpected argument '%s'\n",
				      argv[optind + 1]);
			usage(stderr);
			return EX_USAGE;
		}
		*ret_cmd = &commands[i];
		return 0;
	}
	(void)fprintf(stderr, "mailgenctl: unknown command '%s'\n", argv[optind]);
	usage(stderr);
	return EX_USAGE;
}

static int64_t now_msec(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int not_running(const char *why)
{
	(void)fprintf(stderr, "mailgenctl: mailgend is not running (%s %s)\n", why, arg_socket);
	return EXIT_NOT_RUNNING;
}

static int denied(void)
{
	(void)fprintf(stderr,
		      "mailgenctl: permission denied on %s (run as root or as a member of the "
		      "daemon's group)\n",
		      arg_socket);
	return EXIT_DENIED;
}

/* Connect to the daemon; on failure print why and return a negative exit code. */
static int connect_daemon(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = arg_timeout };
	int fd, e;

	if (strlen(arg_socket) >= sizeof(sun.sun_path)) {
		(void)fprintf(stderr, "mailgenctl: socket path '%s' is too long\n", arg_socket);
		return -EX_USAGE;
	}
	memcpy(sun.sun_path, arg_socket, strlen(arg_socket) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		(void)fprintf(stderr, "mailgenctl: cannot create a socket: %s\n", strerror(errno));
		return -EXIT_FAILED;
	}
	/* Linux: a connect to a full backlog waits with the send timeout, as send does */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)(const void *)&sun, sizeof(sun)) == 0)
		return fd;
	e = errno;
	(void)close(fd);
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return -not_running("no socket at");
	case ECONNREFUSED:
		return -not_running("nobody is listening on");
	case EACCES:
	case EPERM:
		return -denied();
	case EAGAIN:
	case EINPROGRESS:
		(void)fprintf(
			stderr,
			"mailgenctl: mailgend on %s did not take the connection within %d s\n",
			arg_socket, arg_timeout);
		return -EXIT_FAILED;
	default:
		(void)fprintf(stderr, "mailgenctl: cannot connect to %s: %s\n", arg_socket,
			      strerror(e));
		return -EXIT_FAILED;
	}
}

/*
 * Send the request.  A daemon that refuses us (access denied, too many
 * connections) writes its answer and closes at once, so a failed send is
 * not an error yet: the answer may be waiting to be read.
 */
static void send_request(int fd, const struct mg_buf *req)
{
	size_t off = 0;
	ssize_t n;

	while (off < req->len) {
		n = send(fd, req->data + off, req->len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return;
		off += (size_t)n;
	}
}

/* Read one response line into resp (without the "\n"); returns 0 or an exit code. */
static int read_response(int fd, struct mg_buf *resp, int64_t deadline)
{
	char chunk[4096];
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;
	char *nl;
	int rc;

	for (;;) {
		int64_t left = deadline - now_msec();

		if (left <= 0) {
			(void)fprintf(stderr,
				      "mailgenctl: no answer from mailgend on %s within %d s\n",
				      arg_socket, arg_timeout);
			return EXIT_FAILED;
		}
		rc = poll(&pfd, 1, (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0) {
			(void)fprintf(stderr, "mailgenctl: poll: %s\n", strerror(errno));
			return EXIT_FAILED;
		}
		if (rc == 0)
			continue; /* the deadline check above reports it */
		n = recv(fd, chunk, sizeof(chunk), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* ECONNRESET comes after the data the daemon sent before closing */
			(void)fprintf(
				stderr,
				"mailgenctl: mailgend closed the connection without an answer%s%s\n",
				n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
			return EXIT_FAILED;
		}
		nl = memchr(chunk, '\n', (size_t)n);
		if (mg_buf_add(resp, chunk, nl != NULL ? (size_t)(nl - chunk) : (size_t)n) < 0) {
			(void)fprintf(stderr, "mailgenctl: answer from mailgend is too long\n");
			return EXIT_FAILED;
		}
		if (nl != NULL)
			return 0;
	}
}

static int run(const struct command *cmd)
{
	struct mg_buf req = MG_BUF_INIT(MG_CTL_LINE_MAX + 1);
	struct mg_buf resp = MG_BUF_INIT(MG_CTL_RESPONSE_MAX);
	struct mg_buf text = MG_BUF_INIT(8192);
	struct mg_ctl_status st;
	struct mg_err err = { 0 };
	int64_t deadline = now_msec() + (int64_t)arg_timeout * 1000;
	bool ok = false;
	int fd, r, status;

	fd = connect_daemon();
	if (fd < 0) {
		status = -fd;
		goto out;
	}
	if (mg_ctl_format_request_id(&req, cmd->cmd, arg_id) < 0) {
		(void)fprintf(stderr, "mailgenctl: out of memory\n");
		status = EXIT_FAILED;
		goto out;
	}
	send_request(fd, &req);
	status = read_response(fd, &resp, deadline);
	if (status != 0)
		goto out;

	r = mg_ctl_parse_response(resp.data, resp.len, &ok, cmd->cmd == MG_CTL_STATUS ? &st : NULL,
				  &err);
	if (r < 0 && r != MG_EREJECT) {
		(void)fprintf(stderr, "mailgenctl: bad answer from mailgend: %s\n", err.msg);
		status = EXIT_FAILED;
		goto out;
	}
	if (arg_json)
		(void)printf("%s\n", mg_buf_str(&resp));
	if (r == MG_EREJECT) {
		if (strcmp(err.msg, "access denied") == 0)
			status = denied();
		else {
			(void)fprintf(stderr, "mailgenctl: mailgend refused: %s\n", err.msg);
			status = EXIT_FAILED;
		}
		goto out;
	}
	if (!arg_json) {
		if (cmd->done != NULL) {
			(void)printf("%s\n", cmd->done);
		} else if (cmd->cmd != MG_CTL_STATUS) {
			char msg[MG_CTL_RESPONSE_MAX];

			mg_ctl_response_message(resp.data, resp.len, msg, sizeof(msg));
			(void)printf("%s%s", msg,
				     msg[0] != '\0' && msg[strlen(msg) - 1] == '\n' ? "" : "\n");
		} else if (mg_ctl_format_status_text(&text, &st) == MG_OK) {
			(void)fputs(mg_buf_str(&text), stdout);
		} else {
			(void)fprintf(stderr, "mailgenctl: cannot format the status\n");
			status = EXIT_FAILED;
			goto out;
		}
	}
	status = 0;
out:
	if (fd >= 0)
		(void)close(fd);
	mg_buf_release(&req);
	mg_buf_release(&resp);
	mg_buf_release(&text);
	return status;
}

int main(int argc, char **argv)
{
	const struct command *cmd = NULL;
	int status;

	status = parse_args(argc, argv, &cmd);
	if (status != 0)
		return status;
	status = run(cmd);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		(void)fprintf(stderr, "mailgenctl: cannot write the output: %s\n", strerror(errno));
		if (status == 0)
			status = EXIT_FAILED;
	}
	return status;
}
