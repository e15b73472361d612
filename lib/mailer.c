/* lib/mailer.c - one group to one mail: claim, render, sign, send, record */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "hdr.h"
#include "log.h"
#include "mailer.h"
#include "mg-buf.h"
#include "mime.h"
#include "plugin.h"
#include "render.h"
#include "rules.h"
#include "sign.h"
#include "smtp.h"
#include "table.h"
#include "template.h"
#include "ticket.h"
#include "timing.h"
#include "util.h"

#define LOG_IDS_MAX	50 /* ids written into one log line */
#define MEMO_SLOTS	512
#define MEMO_QUIET_USEC (3600LL * 1000000) /* repeats of a failure logged once an hour */

/* A mail on its way: owned by the mailer until the batch ends. */
struct job {
	struct mg_group *group; /* borrowed from the caller */
	char ticket[MG_TICKET_LEN + 1];
	char message_id[320];
	int64_t date;
	char *message;
	size_t len;
	const char *from;  /* envelope sender */
	char *outbox_from; /* owned: the envelope sender of a mail from the outbox */
	bool from_outbox;  /* built earlier, sent again as it was */
	bool in_outbox;	   /* its mail is stored in mailgen_outbox */
	/* what the format rules decided (cfg->rules set), for build_mail() */
	struct mg_rule_decision decision;
	bool has_decision;
	/*
	 * Envelope recipients, one per line (owned): the recipient and the
	 * copies with the same placement; the copy for the other placement
	 * and its recipients, NULL when there is none.  rcpts and copy_rcpts
	 * point into split copies of them while the mails are queued.
	 */
	char *rcpt_list;
	char *copy_message;
	size_t copy_len;
	char *copy_list;
	char *rcpt_buf, *copy_buf;
	const char **rcpts, **copy_rcpts;
	size_t n_rcpts, n_copy_rcpts;
	struct mg_buf dids, eids; /* for log lines */
};

/*
 * A failure seen before, so that a group failing at every scan logs one
 * ERROR an hour with a count instead of one per attempt.
 */
struct memo {
	uint64_t key; /* hash of the group's keys and the message; 0: free */
	int64_t logged_at;
	unsigned repeats; /* since logged_at */
};

struct mg_mailer {
	const struct mg_config *cfg;
	PGconn *conn;
	struct mg_signer *signer;	    /* NULL: mails go out unsigned */
	struct mg_smtp_client *smtp_client; /* TLS context and AUTH credentials */
	bool dry_run;
	char *sender_display;
	char *sender_addr;
	struct mg_mailer_stats stats;
	bool db_broken;
	struct memo memo[MEMO_SLOTS];
};

const char *mg_mailer_sign_method(const struct mg_mailer *m)
{
	return m->signer != NULL ? mg_sign_method(m->signer) : NULL;
}

const struct mg_mailer_stats *mg_mailer_stats(const struct mg_mailer *m)
{
	return &m->stats;
}

void mg_mailer_free(struct mg_mailer *m)
{
	if (m == NULL)
		return;
	mg_sign_free(m->signer);
	mg_smtp_client_free(m->smtp_client);
	free(m->sender_display);
	free(m->sender_addr);
	free(m);
}

int mg_mailer_new(const struct mg_config *cfg, PGconn *conn, bool dry_run, struct mg_mailer **ret,
		  struct mg_err *err)
{
	struct mg_mailer *m = calloc(1, sizeof(*m));
	int r;

	if (m == NULL)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	m->cfg = cfg;
	m->conn = conn;
	m->stats.next_due = INT64_MAX;
	m->dry_run = dry_run;
	r = mg_addr_parse_mailbox(cfg->sender, &m->sender_display, &m->sender_addr, err);
	if (r < 0) {
		mg_err_prefix(err, "'sender': ");
		r = MG_ECONFIG;
		goto fail;
	}
	if (cfg->always_sign) {
		r = mg_sign_new(cfg->gnupg_home, cfg->signing_key, cfg->sign_via_agent, &m->signer,
				err);
		if (r < 0)
			goto fail;
	}
	if (!dry_run) {
		r = mg_smtp_client_new(cfg, &m->smtp_client, err);
		if (r < 0)
			goto fail;
	}
	*ret = m;
	return MG_OK;
fail:
	if (err != NULL)
		err->rc = (enum mg_rc)r;
	mg_mailer_free(m);
	return r;
}

static void job_release(struct job *j)
{
	free(j->message);
	free(j->outbox_from);
	free(j->rcpt_list);
	free(j->copy_message);
	free(j->copy_list);
	free(j->rcpt_buf);
	free(j->copy_buf);
	free(j->rcpts);
	free(j->copy_rcpts);
	if (j->has_decision)
		mg_rule_decision_release(&j->decision);
	mg_buf_release(&j->dids);
	mg_buf_release(&j->eids);
}

static struct mg_log_ctx job_log_ctx(const struct job *j)
{
	struct mg_log_ctx c = {
		.directive_ids = mg_buf_str(&j->dids),
		.event_ids = mg_buf_str(&j->eids),
		.ticket = j->ticket[0] != '\0' ? j->ticket : NULL,
		.recipient = j->group->recipient_address,
	};
	return c;
}

/* The time in microseconds: the interval rule compares with sub-second precision. */
static int64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211u;
	}
	return h ^ 0xff; /* separates "ab","c" from "a","bc" */
}

/*
 * Whether a failure with this key was logged within the last hour.  If so,
 * count the repeat and return true (log it at DEBUG only); otherwise note
 * that it is being logged now and return false, with *ret_repeats the
 * repeats counted since the last time.
 */
static bool memo_quiet(struct mg_mailer *m, uint64_t key, unsigned *ret_repeats)
{
	struct memo *slot = NULL, *oldest = &m->memo[0];
	int64_t now = now_usec();

	key |= 1; /* never 0, the mark of a free slot */
	for (size_t i = 0; i < MEMO_SLOTS; i++) {
		if (m->memo[i].key == key) {
			slot = &m->memo[i];
			break;
		}
		if (m->memo[i].logged_at < oldest->logged_at)
			oldest = &m->memo[i];
	}
	if (slot != NULL && now - slot->logged_at < MEMO_QUIET_USEC) {
		slot->repeats++;
		return true;
	}
	*ret_repeats = slot != NULL ? slot->repeats : 0;
	if (slot == NULL)
		slot = oldest;
	slot->key = key;
	slot->logged_at = now;
	slot->repeats = 0;
	return false;
}

/*
 * Log a group's failure at ERROR, unless the same failure (key_text) of the
 * same group was logged within the last hour: then count it (and log at
 * DEBUG).  The next ERROR line says how often it repeated.
 */
static void log_failure_msg(struct mg_mailer *m, const struct job *j, const char *key_text,
			    const char *msg)
{
	const struct mg_group *g = j->group;
	struct mg_log_ctx ctx = job_log_ctx(j);
	uint64_t key = 14695981039346656037u;
	unsigned repeats;

	(void)snprintf(m->stats.last_error, sizeof(m->stats.last_error), "%.255s", msg);
	key = fnv1a(key, g->recipient_address);
	key = fnv1a(key, g->template_name);
	key = fnv1a(key, g->notification_format);
	key = fnv1a(key, g->event_data_format);
	key = fnv1a(key, g->aggregate_literal != NULL ? g->aggregate_literal : "");
	key = fnv1a(key, key_text);
	if (memo_quiet(m, key, &repeats))
		mg_log(LOG_DEBUG, &ctx, "%s (repeated, ERROR logged once an hour)", msg);
	else if (repeats > 0)
		mg_log(LOG_ERR, &ctx, "%s (failed %u more times in the last hour)", msg, repeats);
	else
		mg_log(LOG_ERR, &ctx, "%s", msg);
}

/* log_failure_msg() with the message as its own key. */
static void log_failure(struct mg_mailer *m, const struct job *j, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void log_failure(struct mg_mailer *m, const struct job *j, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_failure_msg(m, j, msg, msg);
}

/*
 * The SMTP server could not be used at all: ERROR once, then (while it
 * stays the same failure) at most once an hour, like log_failure().
 */
static void log_session_failure(struct mg_mailer *m, const char *msg)
{
	unsigned repeats;

	if (memo_quiet(m, fnv1a(14695981039346656037u, msg), &repeats))
		mg_log(LOG_DEBUG, NULL, "%s; the mails not sent stay pending (repeated)", msg);
	else
		mg_log(LOG_ERR, NULL, "%s; the mails not sent stay pending", msg);
}

static void job_describe(struct job *j)
{
	mg_buf_reset(&j->dids);
	mg_buf_reset(&j->eids);
	(void)mg_ids_join(&j->dids, j->group->directive_ids, j->group->n_directives, LOG_IDS_MAX);
	(void)mg_ids_join(&j->eids, j->group->event_ids, j->group->n_events, LOG_IDS_MAX);
}

/* " (part 2 of 3)" for a part of a split group, "" otherwise; for messages. */
static const char *part_note(const struct mg_group *g, char *buf, size_t size)
{
	if (g->n_parts <= 1)
		return "";
	(void)snprintf(buf, size, " (part %zu of %zu)", g->part, g->n_parts);
	return buf;
}

/*
 * A mail over delivery.max_mail_bytes fails its group (its part, for a split
 * group), never truncated.  The capped buffers of the table, template and
 * MIME writers report it with the cap they hit ("exceeds 65536 bytes", "its
 * limit of 65536 bytes"); name the key, the limit and the events, so the
 * operator knows which setting to change.
 */
static void explain_too_large(const struct mg_config *cfg, const struct mg_group *g, int r,
			      struct mg_err *err)
{
	char cap[48];

	if (r != MG_EINPUT || err == NULL)
		return;
	(void)snprintf(cap, sizeof(cap), " %ld bytes", cfg->max_mail_bytes);
	if (strstr(err->msg, cap) == NULL)
		return; /* another limit, such as the subject's */
	mg_err_prefix(err,
		      "the mail of %zu events would exceed 'delivery.max_mail_bytes' (%ld bytes; "
		      "'delivery.max_events_per_mail' is %d): ",
		      g->n_events, cfg->max_mail_bytes, cfg->max_events_per_mail);
}

static int random_token(char *out, size_t n_hex)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[32];
	size_t n = (n_hex + 1) / 2;

	if (n > sizeof(raw))
		return MG_ESYS;
	if (getrandom(raw, n, 0) != (ssize_t)n)
		return MG_ESYS;
	for (size_t i = 0; i < n_hex; i++)
		out[i] = hex[(raw[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
	out[n_hex] = '\0';
	return MG_OK;
}

/* Read template_dir/name; the name was checked by mg_template_check_name(). */
static int read_template(const char *dir, const char *name, struct mg_buf *out, struct mg_err *err)
{
	struct mg_buf path = MG_BUF_INIT(8192);
	char chunk[8192];
	ssize_t n;
	int fd = -1, r;

	r = mg_template_check_name(name, err);
	if (r < 0)
		goto out;
	r = mg_buf_addf(&path, "%s/%s", dir, name);
	if (r < 0) {
		r = mg_err_set(err, MG_EINPUT, "template '%s': path too long", name);
		goto out;
	}
	fd = open(mg_buf_str(&path), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		r = mg_err_set(err, MG_EINPUT, "template '%s': cannot open '%s': %s", name,
			       mg_buf_str(&path), strerror(errno));
		goto out;
	}
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = mg_err_set(err, MG_EINPUT, "template '%s': cannot read: %s", name,
				       strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (mg_buf_add(out, chunk, (size_t)n) < 0) {
			r = mg_err_set(err, MG_EINPUT, "template '%s': larger than %d bytes", name,
				       MG_TEMPLATE_MAX_BYTES);
			goto out;
		}
	}
	r = MG_OK;
out:
	if (fd >= 0)
		close(fd);
	mg_buf_release(&path);
	return r;
}

static int take_ticket(struct mg_mailer *m, struct job *j, struct mg_err *err)
{
	struct tm tm;
	time_t now;
	int r;

	if (m->dry_run) {
		now = time(NULL);
		if (gmtime_r(&now, &tm) == NULL)
			return mg_err_set(err, MG_ESYS, "cannot read the clock");
		if (strftime(j->ticket, sizeof(j->ticket), "%Y%m%d-00000000", &tm) == 0)
			return mg_err_set(err, MG_ESYS, "cannot format the date");
		return MG_OK;
	}
	r = mg_db_new_ticket(m->conn, j->ticket, err);
	if (r < 0)
		j->ticket[0] = '\0';
	return r;
}

/* The substitutions of a format rule, for the placement of the mail. */
static const char *decision_lookup(const void *arg, bool attach_csv, const char *name)
{
	return mg_rule_decision_lookup(arg, attach_csv, name);
}

/*
 * Render, build and sign one variant of a group's mail into *ret (owned):
 * in says what (template, cells, placement); msgid and date are the
 * message's.  The copy of a format rule with the other placement is the
 * same call with the other attach_csv and its own Message-Id.
 */
static int compose(struct mg_mailer *m, const struct job *j, const struct mg_render_in *in,
		   const char *msgid, char **ret, size_t *ret_len, struct mg_err *err)
{
	const struct mg_config *cfg = m->cfg;
	struct mg_buf content = MG_BUF_INIT((size_t)cfg->max_mail_bytes);
	struct mg_buf message = MG_BUF_INIT((size_t)cfg->max_mail_bytes);
	struct mg_buf sig = MG_BUF_INIT(64 * 1024);
	struct mg_rendered out = { 0 };
	char boundary[40], micalg[MG_MICALG_MAX];
	struct mg_mail mail = { 0 };
	int r;

	r = mg_render(in, &out, err);
	if (r < 0) {
		explain_too_large(cfg, j->group, r, err);
		goto out;
	}
	if (random_token(boundary, 32) < 0) {
		r = mg_err_set(err, MG_ESYS, "cannot get random bytes: %s", strerror(errno));
		goto out;
	}
	mail.from_display = m->sender_display;
	mail.from_addr = m->sender_addr;
	mail.to_addr = j->group->recipient_address; /* for copies too */
	mail.subject = out.subject;
	mail.body = out.body;
	mail.attachment = out.csv;
	mail.attachment_len = out.csv_len;
	mail.attachment_name = "events.csv";
	mail.attachment_type = "text/csv";
	mail.date = j->date;
	mail.message_id = msgid;
	mail.boundary = boundary;
	r = mg_mime_content(&content, &mail, err);
	if (r < 0) {
		explain_too_large(cfg, j->group, r, err);
		goto out;
	}
	if (m->signer != NULL) {
		const char *fallback;

		r = mg_sign_detached(m->signer, mg_buf_str(&content), content.len, &sig, micalg,
				     err);
		fallback = mg_sign_take_fallback(m->signer);
		if (fallback != NULL) {
			struct mg_log_ctx ctx = job_log_ctx(j);

			mg_log(LOG_WARNING, &ctx, "signed through gpg: %s", fallback);
		}
		if (r < 0)
			goto out;
	}
	r = mg_mime_message(&message, &mail, mg_buf_str(&content), content.len,
			    m->signer != NULL ? mg_buf_str(&sig) : NULL,
			    m->signer != NULL ? micalg : NULL, err);
	if (r < 0) {
		explain_too_large(cfg, j->group, r, err);
		goto out;
	}
	*ret = mg_buf_detach(&message, ret_len);
	if (*ret == NULL)
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
out:
	mg_rendered_release(&out);
	mg_buf_release(&content);
	mg_buf_release(&message);
	mg_buf_release(&sig);
	return r;
}

/* Append addr to a list of lines unless it is there already. */
static int list_add(struct mg_buf *list, const char *addr)
{
	const char *p = mg_buf_str(list);
	size_t n = strlen(addr);

	for (; *p != '\0'; p += strcspn(p, "\n") + (p[strcspn(p, "\n")] != '\0'))
		if (strncmp(p, addr, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return MG_OK;
	if (list->len > 0 && mg_buf_addc(list, '\n') < 0)
		return MG_ENOMEM;
	return mg_buf_adds(list, addr);
}

/*
 * The envelope recipients of a group's mail: the recipient, then the copies
 * a format rule asks for with the same placement; the copies with the other
 * placement go to *copies ("" when none).  Copy addresses come from the
 * rule files, which were checked at load; check them again like any
 * address that ends up in an SMTP command.
 */
static int recipient_lists(const struct job *j, bool attach, struct mg_buf *main,
			   struct mg_buf *copies, struct mg_err *err)
{
	const struct mg_rule_decision *d = j->has_decision ? &j->decision : NULL;
	int r;

	r = list_add(main, j->group->recipient_address);
	for (size_t i = 0; d != NULL && r == MG_OK && i < d->n_copies; i++) {
		for (size_t k = 0; r == MG_OK && k < d->copies[i].n_to; k++) {
			const char *to = d->copies[i].to[k];

			r = mg_addr_check("copy address", to, err);
			if (r < 0)
				return r;
			if (strcmp(to, j->group->recipient_address) == 0)
				continue;
			r = list_add(d->copies[i].attach_csv == attach ? main : copies, to);
		}
	}
	return r < 0 ? mg_err_set(err, MG_ENOMEM, "out of memory") : MG_OK;
}

/* Render, build and sign the mail of a claimed, due group (and its copy). */
static int build_mail(struct mg_mailer *m, struct job *j, struct mg_err *err)
{
	const struct mg_config *cfg = m->cfg;
	struct mg_group *g = j->group;
	struct mg_buf tmpl = MG_BUF_INIT(MG_TEMPLATE_MAX_BYTES);
	struct mg_buf main_list = MG_BUF_INIT(64 * 1024), copy_list = MG_BUF_INIT(64 * 1024);
	struct mg_render_in in = { 0 };
	const char **cells = NULL;
	PGresult *events = NULL;
	char msgid[MG_TICKET_LEN + 300], token[33];
	const struct mg_rule_decision *d = j->has_decision ? &j->decision : NULL;
	const struct mg_column *cols = d != NULL ? d->cols : mg_table_fallback_columns;
	size_t n_cols = d != NULL ? d->n_cols : mg_table_fallback_n_columns;
	size_t rows = 0;
	int r;

	r = mg_addr_check("recipient address", g->recipient_address, err);
	if (r < 0)
		goto out;
	if (d != NULL && d->template_inline)
		r = mg_buf_add(&tmpl, d->template_text, d->template_len) < 0
			    ? mg_err_set(err, MG_EINPUT, "%s: template too large", d->template_name)
			    : MG_OK;
	else
		r = read_template(cfg->template_dir,
				  d != NULL ? d->template_name : g->template_name, &tmpl, err);
	if (r < 0)
		goto out;
	in.attach_csv =
		d != NULL ? d->attach_csv : mg_render_wants_attachment(g->event_data_format);
	r = recipient_lists(j, in.attach_csv, &main_list, &copy_list, err);
	if (r < 0)
		goto out;
	r = mg_db_load_events(m->conn, g, cols, n_cols, &events, &cells, &rows, err);
	if (r < 0)
		goto out;
	r = take_ticket(m, j, err);
	if (r < 0)
		goto out;

	in.group = g;
	in.template_name = d != NULL ? d->template_name : g->template_name;
	in.template_text = mg_buf_str(&tmpl);
	in.template_len = tmpl.len;
	in.ticket = j->ticket;
	in.cols = cols;
	in.n_cols = n_cols;
	in.cells = cells;
	in.n_rows = rows;
	if (d != NULL) {
		in.lookup = decision_lookup;
		in.lookup_arg = d;
	}
	in.max_bytes = (size_t)cfg->max_mail_bytes;
	in.table_flags = cfg->csv_spreadsheet_safe ? MG_TABLE_SPREADSHEET_SAFE : 0;
	j->date = (int64_t)time(NULL);
	if (random_token(token, 16) < 0) {
		r = mg_err_set(err, MG_ESYS, "cannot get random bytes: %s", strerror(errno));
		goto out;
	}
	(void)snprintf(msgid, sizeof(msgid), "<%s.%s@%s>", j->ticket, token,
		       mg_addr_domain(m->sender_addr));
	(void)snprintf(j->message_id, sizeof(j->message_id), "%s", msgid);
	r = compose(m, j, &in, msgid, &j->message, &j->len, err);
	if (r < 0)
		goto out;
	if (copy_list.len > 0) {
		/* the same mail for the other placement: same ticket, its own Message-Id */
		in.attach_csv = !in.attach_csv;
		if (random_token(token, 16) < 0) {
			r = mg_err_set(err, MG_ESYS, "cannot get random bytes: %s",
				       strerror(errno));
			goto out;
		}
		(void)snprintf(msgid, sizeof(msgid), "<%s.%s.copy@%s>", j->ticket, token,
			       mg_addr_domain(m->sender_addr));
		r = compose(m, j, &in, msgid, &j->copy_message, &j->copy_len, err);
		if (r < 0)
			goto out;
		j->copy_list = mg_buf_detach(&copy_list, NULL);
	}
	j->rcpt_list = mg_buf_detach(&main_list, NULL);
	if (j->rcpt_list == NULL || (j->copy_message != NULL && j->copy_list == NULL))
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
out:
	free(cells);
	PQclear(events);
	mg_buf_release(&tmpl);
	mg_buf_release(&main_list);
	mg_buf_release(&copy_list);
	return r;
}

/*
 * The per-recipient limit (docs/security.md): at most
 * delivery.recipient_max_mails mails to one address within
 * delivery.recipient_window_seconds, counting the mails recorded in the
 * database and those already queued in this session.  A group over the
 * limit is postponed until the oldest of those mails leaves the window.
 */
static bool recipient_over_limit(struct mg_mailer *m, struct job *j, struct job **queued,
				 size_t n_queued, int64_t now)
{
	const struct mg_config *cfg = m->cfg;
	struct mg_log_ctx ctx = job_log_ctx(j);
	struct mg_err err = { 0 };
	int64_t free_at = 0;
	int count = 0;

	for (size_t i = 0; i < n_queued; i++)
		if (strcmp(queued[i]->group->recipient_address, j->group->recipient_address) == 0)
			count++;
	if (count >= cfg->recipient_max_mails) {
		/* the queued ones are not recorded yet: retry once the window has moved */
		free_at = now + (int64_t)cfg->recipient_window_sec * 1000000;
	} else {
		int recent = 0;

		if (mg_db_recipient_recent(m->conn, j->group->recipient_address,
					   cfg->recipient_window_sec, cfg->recipient_max_mails,
					   &recent, &free_at, &err) < 0) {
			/* cannot tell: do not send, the next scan asks again */
			log_failure(m, j, "%s", err.msg);
			return true;
		}
		count += recent;
		if (count < cfg->recipient_max_mails)
			return false;
	}
	if (free_at < m->stats.next_due)
		m->stats.next_due = free_at;
	mg_log(LOG_INFO, &ctx,
	       "group for '%s' postponed: %d mails to it in the last %d s (limit "
	       "delivery.recipient_max_mails)",
	       j->group->recipient_address, count, cfg->recipient_window_sec);
	return true;
}

/*
 * Put a group that failed into mailgen_failed_groups: permanently (not
 * retried until an operator says so), or deferred with the group's own
 * back-off.  Logs one line (ERROR, at most once an hour for the same
 * failure) saying which.
 */
static void record_failure(struct mg_mailer *m, struct job *j, bool permanent, const char *what,
			   const char *reason)
{
	const struct mg_config *cfg = m->cfg;
	int64_t delay = (int64_t)mg_backoff_sec((unsigned)j->group->attempts + 1,
						(uint64_t)cfg->group_retry_min_sec,
						(uint64_t)cfg->group_retry_max_sec);
	struct mg_err err = { 0 };
	int64_t retry_at = 0;
	bool failed = permanent;
	char when[32] = "", key_text[1024], msg[1024];
	time_t t;
	struct tm tm;

	if (m->dry_run) {
		m->stats.errors++;
		log_failure(m, j, "%s: %s", what, reason);
		return;
	}
	if (mg_db_group_failed(m->conn, j->group, permanent, reason, delay, cfg->group_give_up_sec,
			       &failed, &retry_at, &err) < 0) {
		m->stats.errors++;
		log_failure(m, j, "%s, will retry: %s (and %s)", what, reason, err.msg);
		return;
	}
	if (failed) {
		m->stats.failed++;
		/*
		 * Refused for good: no copy of it went out, so it need not be
		 * repeated as it was; a retry builds it anew with what the
		 * operator fixed (its number stays unused).
		 */
		if (j->in_outbox && mg_db_outbox_delete(m->conn, j->ticket, &err) < 0)
			mg_log(LOG_WARNING, NULL, "%s", err.msg);
		log_failure(m, j,
			    "%s, group failed (not retried until 'mailgenctl retry'; %d attempts): "
			    "%s",
			    what, j->group->attempts + 1, reason);
		return;
	}
	m->stats.deferred++;
	if (retry_at < m->stats.next_due)
		m->stats.next_due = retry_at;
	t = (time_t)(retry_at / 1000000);
	if (gmtime_r(&t, &tm) != NULL)
		(void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	/* keyed without the time and attempt, so retries count as repeats */
	(void)snprintf(key_text, sizeof(key_text), "%s: %s", what, reason);
	(void)snprintf(msg, sizeof(msg), "%s, will retry at %s (attempt %d): %s", what, when,
		       j->group->attempts + 1, reason);
	log_failure_msg(m, j, key_text, msg);
}

/* Called by the SMTP layer as soon as a mail's fate is known. */
static void on_mail_done(struct mg_smtp_msg *msg, void *arg)
{
	struct mg_mailer *m = arg;
	struct job *j = msg->arg;
	struct mg_log_ctx ctx = job_log_ctx(j);
	struct mg_err err = { 0 };
	char what[300], note[64];
	size_t n_marked = 0;
	int r;

	if (msg->data == j->copy_message && j->copy_message != NULL) {
		/* a copy for the other placement: reported, never recorded */
		if (msg->result == MG_OK)
			mg_log(LOG_INFO, &ctx, "sent the copy with ticket %s to %zu recipients",
			       j->ticket, msg->n_rcpts);
		else
			mg_log(LOG_WARNING, &ctx, "copy with ticket %s not sent (%s): %s",
			       j->ticket, mg_rc_name(msg->result), msg->err.msg);
		return;
	}
	if (msg->result == MG_OK && msg->others_refused > 0)
		mg_log(LOG_WARNING, &ctx, "%u copies with ticket %s refused: %s",
		       msg->others_refused, j->ticket, msg->others_text);
	if (msg->result != MG_OK) {
		(void)snprintf(what, sizeof(what), "mail to '%.200s' not sent (%s)",
			       j->group->recipient_address, mg_rc_name(msg->result));
		if (msg->about_message) {
			/* the server's word about this mail: the group's own failure */
			record_failure(m, j, msg->result == MG_EREJECT, what, msg->err.msg);
			return;
		}
		/*
		 * The connection or the server as a whole: the mail stays in the
		 * outbox and goes out, the same, when the server is back.
		 */
		m->stats.errors++;
		log_failure(m, j, "%s, will retry: %s", what, msg->err.msg);
		return;
	}
	r = mg_db_mark_sent(m->conn, j->group, j->ticket, j->date, &n_marked, &err);
	if (r < 0) {
		m->stats.errors++;
		if (mg_db_broken(m->conn)) {
			/*
			 * Our claims went with the connection: another process may take
			 * the groups still queued in this session, so send no more.
			 */
			m->db_broken = true;
			mg_smtp_abort();
		}
		mg_log(LOG_ERR, &ctx,
		       "mail to '%s' was accepted by the SMTP server but recording it failed, "
		       "so it will be sent again with the same ticket and Message-Id: %s",
		       j->group->recipient_address, err.msg);
		return;
	}
	if (n_marked < j->group->n_directives)
		mg_log(LOG_WARNING, &ctx,
		       "ticket %s: only %zu of the mail's %zu directives were still pending "
		       "(deleted meanwhile?)",
		       j->ticket, n_marked, j->group->n_directives);
	m->stats.sent++;
	m->stats.directives_sent += n_marked;
	mg_log(LOG_INFO, &ctx, "sent mail to '%s' with ticket %s (%zu events%s%s)",
	       j->group->recipient_address, j->ticket, j->group->n_events,
	       part_note(j->group, note, sizeof(note)),
	       j->from_outbox ? ", sent again from the outbox" : "");
}

/*
 * A claimed group with a mail in the outbox: that mail is sent again as it
 * is (same ticket, Message-Id, signature), covering the directives it was
 * built for.  Returns MG_OK with *ret_found false when there is none.
 */
static int take_from_outbox(struct mg_mailer *m, struct job *j, bool *ret_found, struct mg_err *err)
{
	struct mg_outbox_mail ob = { 0 };
	bool more = false;
	int r;

	r = mg_db_outbox_take(m->conn, j->group, &ob, ret_found, &more, err);
	if (r < 0 || !*ret_found)
		goto out;
	if (more)
		m->stats.next_due = now_usec(); /* come back at once for the others */
	memcpy(j->ticket, ob.ticket, sizeof(j->ticket));
	memcpy(j->message_id, ob.message_id, sizeof(j->message_id));
	j->message = ob.message;
	j->len = ob.len;
	j->outbox_from = ob.envelope_from;
	j->from = j->outbox_from;
	j->rcpt_list = ob.envelope_to;
	j->copy_message = ob.copy_message;
	j->copy_len = ob.copy_len;
	j->copy_list = ob.copy_envelope_to;
	ob.envelope_to = NULL;
	ob.copy_message = NULL;
	ob.copy_envelope_to = NULL;
	j->from_outbox = true;
	j->in_outbox = true;
	j->date = (int64_t)time(NULL);
	ob.message = NULL;
	ob.envelope_from = NULL;
out:
	mg_outbox_mail_release(&ob);
	return r;
}

/* Keep a built mail in the outbox before it goes to the SMTP server. */
static int put_in_outbox(struct mg_mailer *m, struct job *j, struct mg_err *err)
{
	struct mg_outbox_mail ob = { 0 };

	memcpy(ob.ticket, j->ticket, sizeof(ob.ticket));
	memcpy(ob.message_id, j->message_id, sizeof(ob.message_id));
	ob.envelope_from = m->sender_addr;
	ob.message = j->message;
	ob.len = j->len;
	ob.envelope_to = j->rcpt_list;
	ob.copy_message = j->copy_message;
	ob.copy_len = j->copy_len;
	ob.copy_envelope_to = j->copy_list;
	return mg_db_outbox_put(m->conn, j->group, &ob, err);
}

/*
 * A group failed in a way that may pass (the database, gpg, memory): log it,
 * leave it pending for the next scan.  Returns MG_ETEMP when the database
 * connection broke (the caller stops: its claims went with it), else MG_OK.
 */
static int fail_for_now(struct mg_mailer *m, struct job *j, const char *msg)
{
	char note[64];

	m->stats.errors++;
	log_failure(m, j, "group for '%s'%s failed, will retry: %s", j->group->recipient_address,
		    part_note(j->group, note, sizeof(note)), msg);
	if (mg_db_broken(m->conn)) {
		m->db_broken = true;
		return MG_ETEMP;
	}
	return MG_OK;
}

/*
 * Ask the format plugins and rules about a claimed group: *ret_due when it is to be
 * mailed now (the decision is kept in the job for build_mail()).  No
 * matching rule is the group's failure (failed state, so it is not retried
 * in a loop); a postponed group counts and names its condition and time.
 */
static int decide(struct mg_mailer *m, struct job *j, int64_t now, bool *ret_due)
{
	struct mg_log_ctx ctx = job_log_ctx(j);
	struct mg_err err = { 0 };
	char what[300], note[64], when[32] = "?";
	time_t t;
	struct tm tm;
	int r;

	*ret_due = false;
	r = mg_format_decide(m->cfg, j->group, now, &j->decision, &err);
	if (r == MG_ENOMEM)
		return fail_for_now(m, j, err.msg);
	(void)snprintf(what, sizeof(what), "group for '%.200s'%s cannot be mailed",
		       j->group->recipient_address, part_note(j->group, note, sizeof(note)));
	if (r < 0) {
		record_failure(m, j, true, what, err.msg);
		return MG_OK;
	}
	j->has_decision = true;
	switch (j->decision.verdict) {
	case MG_RULE_SEND:
		*ret_due = true;
		return MG_OK;
	case MG_RULE_POSTPONED:
		m->stats.postponed++;
		if (j->decision.due_at < m->stats.next_due)
			m->stats.next_due = j->decision.due_at;
		t = (time_t)(j->decision.due_at / 1000000);
		if (gmtime_r(&t, &tm) != NULL)
			(void)strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		mg_log(LOG_DEBUG, &ctx, "group for '%s'%s postponed by rule %s until %s (%s)",
		       j->group->recipient_address, part_note(j->group, note, sizeof(note)),
		       j->decision.rule, when,
		       j->decision.postponed_by != NULL ? j->decision.postponed_by : "?");
		return MG_OK;
	default:
		record_failure(m, j, true, what,
			       "no format rule matches it (add a rule, then 'mailgenctl retry')");
		return MG_OK;
	}
}

/*
 * Claim groups[i], and say whether it is to be mailed now: false when it
 * failed, another process has it, or it is not due (each counted and
 * logged).  A group whose mail waits in the outbox gets that mail
 * (j->from_outbox).  Returns MG_ETEMP only when the database connection
 * broke.
 */
static int claim_one(struct mg_mailer *m, struct job *j, bool *ret_claimed, bool *ret_ready)
{
	struct mg_err err = { 0 };
	struct mg_log_ctx ctx;
	bool found = false;
	char note[64];
	int64_t now;
	int r;

	*ret_ready = false;
	r = mg_db_claim(m->conn, j->group, ret_claimed, &err);
	job_describe(j);
	ctx = job_log_ctx(j);
	if (r < 0) {
		m->stats.errors++;
		mg_log(LOG_ERR, &ctx, "%s", err.msg);
		if (mg_db_broken(m->conn)) {
			m->db_broken = true;
			return MG_ETEMP;
		}
		return MG_OK;
	}
	if (!*ret_claimed) {
		m->stats.skipped++;
		mg_log(LOG_INFO, &ctx,
		       "group for '%s'%s is being handled by another process or was sent, "
		       "skipping",
		       j->group->recipient_address, part_note(j->group, note, sizeof(note)));
		return MG_OK;
	}
	now = now_usec();
	if (mg_config_has_formats(m->cfg)) {
		bool due;

		r = decide(m, j, now, &due);
		if (r < 0 || !due)
			return r;
	} else if (!mg_group_is_due(j->group, now)) {
		m->stats.postponed++;
		if (mg_group_due_at(j->group) < m->stats.next_due)
			m->stats.next_due = mg_group_due_at(j->group);
		mg_log(LOG_DEBUG, &ctx,
		       "group for '%s'%s postponed: last mail %lld s ago, interval %lld s",
		       j->group->recipient_address, part_note(j->group, note, sizeof(note)),
		       (long long)((now - j->group->last_sent) / 1000000),
		       (long long)j->group->interval_sec);
		return MG_OK;
	}
	if (m->dry_run) {
		if (j->group->has_outbox) {
			m->stats.sent++;
			mg_log(LOG_INFO, &ctx,
			       "dry run: a mail to '%s' waits in the outbox and would be sent again",
			       j->group->recipient_address);
			return MG_OK;
		}
		*ret_ready = true;
		return MG_OK;
	}
	if (!j->group->has_outbox) { /* as the claim saw it: no outbox look-up */
		*ret_ready = true;
		return MG_OK;
	}
	r = take_from_outbox(m, j, &found, &err);
	job_describe(j);
	if (r < 0) {
		return fail_for_now(m, j, err.msg);
	}
	if (!found) {
		/* the outbox mail went meanwhile: the interval rule again */
		j->group->has_outbox = false;
		if (!mg_group_is_due(j->group, now)) {
			m->stats.postponed++;
			if (mg_group_due_at(j->group) < m->stats.next_due)
				m->stats.next_due = mg_group_due_at(j->group);
			return MG_OK;
		}
	}
	*ret_ready = true;
	return MG_OK;
}

/*
 * Render and sign the mail of a claimed, due group, and say whether it is
 * to be queued: false when it failed or the recipient limit postpones it.
 * Returns MG_ETEMP only when the database connection broke.
 */
static int build_one(struct mg_mailer *m, struct job *j, struct job **queued, size_t n_queued,
		     bool *ret_queue)
{
	struct mg_err err = { 0 };
	struct mg_log_ctx ctx;
	char note[64];
	int r;

	*ret_queue = false;
	if (j->from_outbox) {
		*ret_queue = true; /* built before, sent again as it is */
		return MG_OK;
	}
	if (m->cfg->recipient_max_mails > 0 &&
	    recipient_over_limit(m, j, queued, n_queued, now_usec())) {
		m->stats.postponed++;
		return MG_OK;
	}
	r = build_mail(m, j, &err);
	ctx = job_log_ctx(j);
	if (r < 0)
		j->ticket[0] = '\0'; /* no mail carries the number drawn for it */
	if (r == MG_EINPUT) {
		char what[300];

		/* bad data or a bad template: retrying the same will not help */
		(void)snprintf(what, sizeof(what), "group for '%.200s'%s cannot be mailed",
			       j->group->recipient_address,
			       part_note(j->group, note, sizeof(note)));
		record_failure(m, j, true, what, err.msg);
		return MG_OK;
	}
	if (r < 0) {
		return fail_for_now(m, j, err.msg);
	}
	if (m->dry_run) {
		m->stats.sent++;
		mg_log(LOG_INFO, &ctx, "dry run: would send mail to '%s' (%zu bytes, %zu events%s)",
		       j->group->recipient_address, j->len, j->group->n_events,
		       part_note(j->group, note, sizeof(note)));
		free(j->message);
		j->message = NULL;
		return MG_OK;
	}
	j->from = m->sender_addr;
	r = put_in_outbox(m, j, &err);
	if (r < 0) {
		free(j->message);
		j->message = NULL;
		return fail_for_now(m, j, err.msg);
	}
	j->in_outbox = true;
	*ret_queue = true;
	return MG_OK;
}

/* Split a list of lines into *ret_v (pointing into *ret_buf, both owned). */
static int split_list(const char *list, char **ret_buf, const char ***ret_v, size_t *ret_n)
{
	size_t n = 1;
	char *buf, *p;

	for (const char *q = list; *q != '\0'; q++)
		n += *q == '\n';
	buf = strdup(list);
	*ret_v = calloc(n, sizeof(**ret_v));
	if (buf == NULL || *ret_v == NULL) {
		free(buf);
		free(*ret_v);
		*ret_v = NULL;
		return MG_ENOMEM;
	}
	n = 0;
	for (p = buf; p != NULL;) {
		char *nl = strchr(p, '\n');

		if (nl != NULL)
			*nl++ = '\0';
		if (*p != '\0')
			(*ret_v)[n++] = p;
		p = nl;
	}
	*ret_buf = buf;
	*ret_n = n;
	return MG_OK;
}

/* Whether a job of ready[0..n_ready) sends the same outbox mail as j. */
static bool outbox_taken(const struct job *jobs, const size_t *ready, size_t n_ready,
			 const struct job *j)
{
	for (size_t k = 0; k < n_ready; k++)
		if (jobs[ready[k]].from_outbox && strcmp(jobs[ready[k]].ticket, j->ticket) == 0)
			return true;
	return false;
}

int mg_mailer_process(struct mg_mailer *m, struct mg_group *groups, size_t n)
{
	struct mg_smtp_opts opts = {
		.host = m->cfg->smtp_host,
		.port = m->cfg->smtp_port,
		.timeout_sec = m->cfg->smtp_timeout_sec,
		.client = m->smtp_client,
	};
	size_t per_session = (size_t)m->cfg->mails_per_session;
	struct mg_smtp_msg *msgs = NULL;
	struct job *jobs = NULL, **queued = NULL;
	struct mg_err err = { 0 };
	size_t n_queued = 0, n_ready = 0, next = 0;
	size_t *ready = NULL;
	bool claims_tried = false;
	int r = MG_OK;

	m->stats.next_due = INT64_MAX;
	jobs = calloc(n, sizeof(*jobs));
	ready = calloc(n, sizeof(*ready));
	queued = calloc(per_session, sizeof(*queued));
	msgs = calloc(2 * per_session, sizeof(*msgs)); /* a mail and its copy each */
	if ((jobs == NULL || ready == NULL || queued == NULL || msgs == NULL) && n > 0) {
		mg_log(LOG_ERR, NULL, "out of memory; %zu groups stay pending", n);
		m->stats.errors += n;
		r = MG_ETEMP;
		goto out;
	}
	/*
	 * Claim every group before any mail goes out.  The parts of a split
	 * group share its keys, so they must all be claimed (and found due)
	 * while last_sent is still that of the last run: once part 1 is
	 * recorded, the others would be postponed by the interval.  The
	 * advisory lock is re-entrant within our session; the end of the
	 * batch releases every level at once.
	 */
	for (size_t i = 0; i < n; i++) {
		bool claimed, is_ready;

		jobs[i].group = &groups[i];
		jobs[i].dids = MG_BUF_INIT(4096);
		jobs[i].eids = MG_BUF_INIT(4096);
		claims_tried = true;
		r = claim_one(m, &jobs[i], &claimed, &is_ready);
		if (r < 0)
			goto out;
		if (is_ready && jobs[i].from_outbox &&
		    outbox_taken(jobs, ready, n_ready, &jobs[i])) {
			/*
			 * Another part of this split group took the same outbox mail,
			 * with every directive of it still pending: nothing is left for
			 * this part now (what it has beyond that mail comes back as a
			 * group of its own).
			 */
			m->stats.skipped++;
			free(jobs[i].message);
			jobs[i].message = NULL;
			continue;
		}
		if (is_ready)
			ready[n_ready++] = i;
	}
	/*
	 * Then build and send in SMTP sessions of at most mails_per_session
	 * mails, so that memory holds one session's mails, however many parts
	 * a group was split into.
	 */
	while (next < n_ready) {
		size_t n_msgs = 0;

		n_queued = 0;
		memset(msgs, 0, 2 * per_session * sizeof(*msgs));
		for (; next < n_ready && n_queued < per_session; next++) {
			struct job *j = &jobs[ready[next]];
			bool queue;

			r = build_one(m, j, queued, n_queued, &queue);
			if (r < 0)
				goto out;
			if (!queue)
				continue;
			if (split_list(j->rcpt_list, &j->rcpt_buf, &j->rcpts, &j->n_rcpts) < 0 ||
			    (j->copy_message != NULL &&
			     split_list(j->copy_list, &j->copy_buf, &j->copy_rcpts,
					&j->n_copy_rcpts) < 0)) {
				if (fail_for_now(m, j, "out of memory") < 0)
					goto out;
				continue;
			}
			/*
			 * A copy for the other placement goes first: once the mail
			 * is recorded, its outbox row (holding the copy) is gone.
			 */
			if (j->copy_message != NULL) {
				msgs[n_msgs].from = j->from;
				msgs[n_msgs].rcpts = j->copy_rcpts;
				msgs[n_msgs].n_rcpts = j->n_copy_rcpts;
				msgs[n_msgs].data = j->copy_message;
				msgs[n_msgs].len = j->copy_len;
				msgs[n_msgs].arg = j;
				n_msgs++;
			}
			msgs[n_msgs].from = j->from;
			msgs[n_msgs].rcpts = j->rcpts;
			msgs[n_msgs].n_rcpts = j->n_rcpts;
			msgs[n_msgs].first_rcpt_decides =
				j->n_rcpts > 1; /* the others are copies */
			msgs[n_msgs].data = j->message;
			msgs[n_msgs].len = j->len;
			msgs[n_msgs].arg = j;
			n_msgs++;
			queued[n_queued++] = j;
		}
		if (n_queued == 0)
			continue;
		memset(&err, 0, sizeof(err));
		r = mg_smtp_send(&opts, msgs, n_msgs, on_mail_done, m, &err);
		for (size_t k = 0; k < n_queued; k++) {
			free(queued[k]->message);
			queued[k]->message = NULL;
			free(queued[k]->copy_message);
			queued[k]->copy_message = NULL;
		}
		if (r < 0) {
			log_session_failure(m, err.msg);
			/* the groups not built yet stay pending, as the ones just tried */
			m->stats.errors += n_ready - next;
			goto out;
		}
		if (m->db_broken)
			break;
	}
	r = m->db_broken ? MG_ETEMP : MG_OK;
out:
	/*
	 * Also after a claim statement that failed: its lock survives a
	 * statement error (a time-out, a cancel) that leaves the session up.
	 */
	if (claims_tried)
		mg_db_end_batch(m->conn);
	for (size_t i = 0; jobs != NULL && i < n; i++)
		job_release(&jobs[i]);
	free(msgs);
	free(queued);
	free(ready);
	free(jobs);
	return r;
}

void mg_preview_release(struct mg_preview *p)
{
	if (p == NULL)
		return;
	free(p->message);
	memset(p, 0, sizeof(*p));
}

int mg_mailer_preview(struct mg_mailer *m, struct mg_group *g, int64_t now, struct mg_preview *ret,
		      struct mg_err *err)
{
	struct mg_preview p = { 0 };
	struct mg_outbox_mail ob = { 0 };
	struct job j = { .group = g };
	bool found = false;
	int r;

	if (!m->dry_run)
		return mg_err_set(err, MG_ESYS, "preview needs a mailer made for a dry run");
	p.due_at = now;
	if (g->has_outbox) {
		r = mg_db_outbox_peek(m->conn, g, &ob, &found, err);
		if (r < 0)
			goto out;
	}
	if (found) {
		/* sent again as it was built, whatever the rules say now */
		p.from_outbox = true;
		memcpy(p.ticket, ob.ticket, sizeof(p.ticket));
		p.message = ob.message;
		p.len = ob.len;
		ob.message = NULL;
		goto done;
	}
	g->has_outbox = false; /* the outbox mail went meanwhile: the rules again */
	if (mg_config_has_formats(m->cfg)) {
		r = mg_format_decide(m->cfg, g, now, &j.decision, err);
		if (r < 0)
			goto out;
		j.has_decision = true;
		if (j.decision.verdict == MG_RULE_NONE) {
			r = mg_err_set(err, MG_EINPUT,
				       "no format rule matches the group (add a rule)");
			goto out;
		}
		(void)snprintf(p.rule, sizeof(p.rule), "%s", j.decision.rule);
		if (j.decision.verdict == MG_RULE_POSTPONED) {
			int64_t due = j.decision.due_at;

			p.postponed = true;
			p.due_at = due;
			(void)snprintf(p.postponed_by, sizeof(p.postponed_by), "%s",
				       j.decision.postponed_by != NULL ? j.decision.postponed_by
								       : "");
			/* the mail it gets when due: the rule decided at that moment */
			mg_rule_decision_release(&j.decision);
			j.has_decision = false;
			r = mg_format_decide(m->cfg, g, due, &j.decision, err);
			if (r < 0)
				goto out;
			j.has_decision = true;
			if (j.decision.verdict != MG_RULE_SEND) {
				r = mg_err_set(err, MG_EINPUT,
					       "rule %s does not send the group at "
					       "its due time",
					       p.rule);
				goto out;
			}
		}
	} else if (!mg_group_is_due(g, now)) {
		p.postponed = true;
		p.due_at = mg_group_due_at(g);
		(void)snprintf(p.postponed_by, sizeof(p.postponed_by), "%s",
			       g->retry_at == p.due_at ? "retry after a temporary failure"
						       : "notification interval");
	}
	r = build_mail(m, &j, err);
	if (r < 0)
		goto out;
	memcpy(p.ticket, j.ticket, sizeof(p.ticket));
	p.message = j.message;
	p.len = j.len;
	j.message = NULL;
done:
	*ret = p;
	memset(&p, 0, sizeof(p));
	r = MG_OK;
out:
	mg_outbox_mail_release(&ob);
	mg_preview_release(&p);
	job_release(&j);
	return r;
}
