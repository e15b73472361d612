/* daemon/intelmqcbmail.c - the one-shot command of intelmq-mailgen, in C */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "explain.h"
#include "log.h"
#include "mailer.h"
#include "plugin.h"
#include "sign.h"
#include "util.h"

#define DEFAULT_BATCH_SIZE 10

static bool arg_all;
static bool arg_dry_run;
static bool arg_verbose;
static const char *arg_config;
static long arg_batch_size = DEFAULT_BATCH_SIZE;
static int64_t arg_preview;    /* directive id, 0: none */
static int64_t arg_explain;    /* directive id, 0: none */
static const char *arg_output; /* --output FILE of --preview */

static void usage(FILE *f)
{
	(void)fprintf(
		f,
		"usage: intelmqcbmail [-a|--all] [-c FILE] [-n|--dry-run] [-N|--batch-size N] "
		"[-v|--verbose]\n"
		"       intelmqcbmail [-c FILE] --preview DIRECTIVE_ID [-o|--output FILE]\n"
		"       intelmqcbmail [-c FILE] --explain DIRECTIVE_ID\n"
		"\n"
		"Send the notification mails for the pending directives in the IntelMQ\n"
		"event database.  Without --all, show the pending groups in batches and\n"
		"ask what to do with each batch.\n"
		"\n"
		"  -a, --all             process all pending groups without asking\n"
		"  -c, --config FILE     read only this config file\n"
		"                        (default: /etc/intelmq/intelmq-mailgen.conf and\n"
		"                        ~/.intelmq/intelmq-mailgen.conf)\n"
		"  -n, --dry-run         render and sign, but send nothing and change\n"
		"                        nothing in the database\n"
		"  -N, --batch-size N    groups shown per batch when asking (default %d)\n"
		"      --preview ID      write the mail of the group of directive ID as it\n"
		"                        would be sent, changing nothing (ticket\n"
		"                        YYYYMMDD-00000000)\n"
		"  -o, --output FILE     write the preview to FILE instead of stdout\n"
		"      --explain ID      say why directive ID was not sent yet\n"
		"  -v, --verbose         log debug messages\n"
		"  -h, --help            show this help\n"
		"\n"
		"See intelmqcbmail(1).\n",
		DEFAULT_BATCH_SIZE);
}

static int parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "config", required_argument, NULL, 'c' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "batch-size", required_argument, NULL, 'N' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "preview", required_argument, NULL, 'P' },
		{ "explain", required_argument, NULL, 'E' },
		{ "output", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	int64_t v;
	int c;

	while ((c = getopt_long(argc, argv, "ac:nN:o:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			arg_all = true;
			break;
		case 'c':
			arg_config = optarg;
			break;
		case 'n':
			arg_dry_run = true;
			break;
		case 'N':
			if (!mg_parse_int64(optarg, 1, 100000, &v)) {
				(void)fprintf(stderr,
					      "intelmqcbmail: --batch-size: expected an integer "
					      "1..100000, got '%s'\n",
					      optarg);
				return EX_USAGE;
			}
			arg_batch_size = (long)v;
			break;
		case 'v':
			arg_verbose = true;
			break;
		case 'P':
		case 'E':
			if (!mg_parse_int64(optarg, 1, INT64_MAX, &v)) {
				(void)fprintf(stderr,
					      "intelmqcbmail: --%s: expected a directive id, got "
					      "'%s'\n",
					      c == 'P' ? "preview" : "explain", optarg);
				return EX_USAGE;
			}
			*(c == 'P' ? &arg_preview : &arg_explain) = v;
			break;
		case 'o':
			arg_output = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (arg_preview != 0 && arg_explain != 0) {
		(void)fprintf(stderr,
			      "intelmqcbmail: --preview and --explain exclude each other\n");
		return EX_USAGE;
	}
	if (arg_output != NULL && arg_preview == 0) {
		(void)fprintf(stderr, "intelmqcbmail: --output goes with --preview\n");
		return EX_USAGE;
	}
	if (optind < argc) {
		(void)fprintf(stderr, "intelmqcbmail: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return EX_USAGE;
	}
	return 0;
}

enum answer { ANSWER_SKIP, ANSWER_SEND, ANSWER_ALL, ANSWER_QUIT };

/* Ask what to do with the batch just shown; end of input means quit. */
static enum answer ask(void)
{
	char line[64];

	for (;;) {
		(void)printf("[c]ontinue (skip), [s]end this batch, send [a]ll, [q]uit? ");
		(void)fflush(stdout);
		if (fgets(line, sizeof(line), stdin) == NULL) {
			(void)printf("\n");
			return ANSWER_QUIT;
		}
		switch (line[0]) {
		case 'c':
		case 'C':
			return ANSWER_SKIP;
		case 's':
		case 'S':
			return ANSWER_SEND;
		case 'a':
		case 'A':
			return ANSWER_ALL;
		case 'q':
		case 'Q':
			return ANSWER_QUIT;
		default:
			break;
		}
	}
}

static void show_batch(const struct mg_group *groups, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		(void)printf("%s %s (%s/%s): %zu events", groups[i].recipient_address,
			     groups[i].template_name, groups[i].notification_format,
			     groups[i].event_data_format, groups[i].n_events);
		if (groups[i].n_parts > 1)
			(void)printf(", mail %zu of %zu", groups[i].part, groups[i].n_parts);
		(void)printf("\n");
	}
}

/*
 * Hand groups to the mailer in pieces of about one SMTP session each.  The
 * first session of a run carries one group only: if the SMTP server is
 * down, that costs one drawn ticket number instead of a session's worth.
 * The parts of a split group always go in one piece (mg_group_span), even
 * beyond a session, so that all of them are claimed while the group is due.
 */
static int send_groups(struct mg_mailer *m, struct mg_group *groups, size_t n, size_t per_session,
		       bool *smtp_proven)
{
	size_t off = 0;

	while (off < n) {
		size_t limit = *smtp_proven ? per_session : 1;
		size_t k = 0;
		int r;

		while (off + k < n && k < limit)
			k += mg_group_span(groups + off + k, n - off - k);
		r = mg_mailer_process(m, groups + off, k);

		if (r < 0)
			return r;
		if (mg_mailer_stats(m)->sent > 0)
			*smtp_proven = true;
		off += k;
	}
	return MG_OK;
}

static void free_groups(struct mg_group *groups, size_t n)
{
	if (groups == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		mg_group_release(&groups[i]);
	free(groups);
}

static int64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *fmt_time(int64_t usec, char *buf, size_t size)
{
	time_t t = (time_t)(usec / 1000000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		(void)snprintf(buf, size, "?");
	return buf;
}

/* --explain ID: the answer on stdout; 0, or 1 when there is no such directive. */
static int do_explain(const struct mg_config *cfg, PGconn *conn)
{
	struct mg_buf out = MG_BUF_INIT(64 * 1024);
	struct mg_err err = { 0 };
	int r;

	r = mg_explain_directive(cfg, conn, arg_explain, now_usec(), &out, &err);
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		mg_buf_release(&out);
		return r == MG_ETEMP ? EX_TEMPFAIL : 1;
	}
	(void)fwrite(mg_buf_str(&out), 1, out.len, stdout);
	mg_buf_release(&out);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int write_preview(const struct mg_preview *p)
{
	FILE *f = stdout;
	bool ok;

	if (arg_output != NULL) {
		f = fopen(arg_output, "wbe");
		if (f == NULL) {
			mg_log(LOG_ERR, NULL, "cannot open '%s': %s", arg_output, strerror(errno));
			return 1;
		}
	}
	ok = fwrite(p->message, 1, p->len, f) == p->len;
	ok = (f == stdout ? fflush(f) : fclose(f)) == 0 && ok;
	if (!ok)
		mg_log(LOG_ERR, NULL, "cannot write the preview to '%s': %s",
		       arg_output != NULL ? arg_output : "stdout", strerror(errno));
	return ok ? 0 : 1;
}

/*
 * --preview ID: the mail of the group (of the part of a split group) that
 * directive ID belongs to, as it would be sent; notes on stderr.  0, or 1
 * when the directive is not pending or its mail cannot be built.
 */
static int do_preview(const struct mg_config *cfg, PGconn *conn)
{
	struct mg_mailer *mailer = NULL;
	struct mg_group g = { 0 }, *parts = NULL, *part = NULL;
	struct mg_preview p = { 0 };
	struct mg_err err = { 0 };
	size_t n_parts = 0;
	int64_t now = now_usec();
	bool found = false;
	char when[32];
	int r, status = 1;

	r = mg_db_group_of_directive(conn, cfg->additional_directive_where, arg_preview, &g, &found,
				     &err);
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		status = r == MG_ETEMP ? EX_TEMPFAIL : 1;
		goto out;
	}
	if (!found) {
		mg_log(LOG_ERR, NULL,
		       "directive %lld is not pending (sent, dropped, unknown, or not selected "
		       "by the scan): see 'intelmqcbmail --explain %lld'",
		       (long long)arg_preview, (long long)arg_preview);
		goto out;
	}
	r = mg_group_split(&g, (size_t)cfg->max_events_per_mail, &parts, &n_parts, &err);
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "splitting the group: %s", err.msg);
		goto out;
	}
	for (size_t i = 0; i < n_parts && part == NULL; i++)
		for (size_t k = 0; k < parts[i].n_directives; k++)
			if (parts[i].directive_ids[k] == arg_preview)
				part = &parts[i];
	if (part == NULL) {
		mg_log(LOG_ERR, NULL, "directive %lld: not pending any more",
		       (long long)arg_preview);
		goto out;
	}
	r = mg_mailer_new(cfg, conn, true, &mailer, &err);
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		status = EX_CONFIG;
		goto out;
	}
	r = mg_mailer_preview(mailer, part, now, &p, &err);
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "cannot preview the group for '%s': %s",
		       part->recipient_address, err.msg);
		status = r == MG_ETEMP ? EX_TEMPFAIL : 1;
		goto out;
	}
	(void)fprintf(stderr, "intelmqcbmail: group of directive %lld: %zu directives, %zu events",
		      (long long)arg_preview, part->n_directives, part->n_events);
	if (part->n_parts > 1)
		(void)fprintf(stderr, ", mail %zu of %zu", part->part, part->n_parts);
	(void)fprintf(stderr, "\n");
	if (p.from_outbox)
		(void)fprintf(stderr,
			      "intelmqcbmail: this mail (ticket %s) waits in the outbox and is "
			      "sent again as it is\n",
			      p.ticket);
	else if (p.rule[0] != '\0')
		(void)fprintf(stderr, "intelmqcbmail: decided by rule %s\n", p.rule);
	else
		(void)fprintf(stderr, "intelmqcbmail: decided by the built-in interval rule (no "
				      "format_rules_dir)\n");
	if (p.postponed)
		(void)fprintf(stderr,
			      "intelmqcbmail: postponed until %s (%s); this is the mail it gets "
			      "then\n",
			      fmt_time(p.due_at, when, sizeof(when)), p.postponed_by);
	else
		(void)fprintf(stderr, "intelmqcbmail: due now\n");
	status = write_preview(&p);
out:
	mg_preview_release(&p);
	mg_mailer_free(mailer);
	for (size_t i = 0; i < n_parts; i++)
		mg_group_release(&parts[i]);
	free(parts);
	mg_group_release(&g);
	return status;
}

int main(int argc, char **argv)
{
	struct mg_config cfg = { 0 };
	struct mg_mailer *mailer = NULL;
	struct mg_group *groups = NULL, *fetched = NULL;
	struct mg_err err = { 0 };
	const struct mg_mailer_stats *st;
	PGconn *conn = NULL;
	struct mg_plugins *plugins = NULL;
	size_t n = 0, n_fetched = 0, per_session;
	bool stopped = false, scan_failed = false, smtp_proven = false;
	int r, status = 1;

	r = parse_args(argc, argv);
	if (r != 0)
		return r;
	mg_log_init("intelmqcbmail", LOG_INFO);
	(void)signal(SIGPIPE, SIG_IGN); /* libESMTP never ignores it */

	r = mg_config_load(&cfg, arg_config, &err);
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		return EX_CONFIG;
	}
	if (cfg.format_plugin_dir != NULL) {
		r = mg_plugins_load(cfg.format_plugin_dir, &plugins, &err);
		if (r < 0) {
			mg_log(LOG_ERR, NULL, "%s", err.msg);
			status = EX_CONFIG;
			goto out;
		}
		cfg.plugins = mg_plugins_active(plugins);
		if (cfg.plugins == NULL)
			mg_log(LOG_WARNING, NULL,
			       "format_plugin_dir '%s' holds no plugins (*.so), ignoring",
			       cfg.format_plugin_dir);
	}
	mg_log_set_level(arg_verbose ? LOG_DEBUG : cfg.log_level);
	for (size_t i = 0; i < cfg.n_warnings; i++)
		mg_log(LOG_WARNING, NULL, "%s", cfg.warnings[i]);
	if (mg_sign_global_init(&err) < 0) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		status = EX_CONFIG;
		goto out;
	}
	r = mg_db_connect(&cfg, "intelmqcbmail", &conn, &err);
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		status = r == MG_ECONFIG ? EX_CONFIG : EX_TEMPFAIL;
		goto out;
	}
	if (arg_explain != 0) {
		status = do_explain(&cfg, conn);
		goto out;
	}
	if (arg_preview != 0) {
		status = do_preview(&cfg, conn);
		goto out;
	}
	r = mg_mailer_new(&cfg, conn, arg_dry_run, &mailer, &err);
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		status = EX_CONFIG;
		goto out;
	}
	if (mg_mailer_sign_method(mailer) != NULL)
		mg_log(LOG_INFO, NULL, "signing through %s", mg_mailer_sign_method(mailer));
	r = mg_db_scan_open(conn, cfg.additional_directive_where, &err);
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "%s", err.msg);
		status = r == MG_EINPUT ? EX_CONFIG : EX_TEMPFAIL;
		goto out;
	}
	per_session = (size_t)cfg.mails_per_session;
	while (!stopped) {
		size_t chunk = arg_all ? per_session : (size_t)arg_batch_size;

		r = mg_db_scan_fetch(conn, chunk, &fetched, &n_fetched, &err);
		if (r < 0) {
			mg_log(LOG_ERR, NULL, "%s", err.msg);
			scan_failed = true;
			break;
		}
		if (n_fetched == 0)
			break;
		/* a group over delivery.max_events_per_mail becomes several mails */
		r = mg_groups_split(fetched, n_fetched, (size_t)cfg.max_events_per_mail, &groups,
				    &n, &err);
		free(fetched);
		fetched = NULL;
		if (r < 0) {
			mg_log(LOG_ERR, NULL, "splitting large groups: %s", err.msg);
			scan_failed = true;
			break;
		}
		if (!arg_all) {
			show_batch(groups, n);
			switch (ask()) {
			case ANSWER_SKIP:
				free_groups(groups, n);
				groups = NULL;
				n = 0;
				continue;
			case ANSWER_QUIT:
				stopped = true;
				free_groups(groups, n);
				groups = NULL;
				n = 0;
				continue;
			case ANSWER_ALL:
				arg_all = true;
				break;
			case ANSWER_SEND:
				break;
			}
		}
		r = send_groups(mailer, groups, n, per_session, &smtp_proven);
		free_groups(groups, n);
		groups = NULL;
		n = 0;
		if (r < 0) {
			mg_log(LOG_ERR, NULL,
			       "stopping: the SMTP server or the database is not usable; the "
			       "remaining groups stay pending");
			stopped = true;
			scan_failed = true;
		}
	}
	mg_db_scan_close(conn);
	st = mg_mailer_stats(mailer);
	/* the original's summary stays the last line: scripts read it */
	if (st->deferred + st->failed > 0)
		(void)printf("%lu groups deferred (retried later), %lu groups failed "
			     "(not retried until released, see mailgenctl(8)).\n",
			     st->deferred, st->failed);
	(void)printf("%s%lu mails sent, %lu postponed, %lu errors.\n",
		     arg_dry_run ? "Simulation: " : "", st->sent, st->postponed,
		     st->errors + st->deferred + st->failed);
	status = st->errors + st->deferred + st->failed == 0 && !scan_failed ? 0 : 1;
out:
	free_groups(groups, n);
	mg_mailer_free(mailer);
	PQfinish(conn);
	mg_config_release(&cfg);
	mg_plugins_free(plugins);
	return status;
}
