/* lib/smtp.c - handing mails to an SMTP server through libESMTP */
#define _GNU_SOURCE 1

#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <libesmtp.h>

#include "smtp.h"

/*
 * libESMTP 1.1.0 writes the message body in 2 KB pieces and never sets
 * TCP_NODELAY, and offers no hook to reach its socket.  With Nagle's
 * algorithm and delayed ACKs every mail larger than ~2 KB (all signed
 * mails) stalls for 40 ms: 22 mails/s per connection instead of thousands
 * (docs/smtp.md).  So this program defines connect() itself: it sets
 * TCP_NODELAY on every TCP stream socket and calls the C library's
 * connect().  The definition in the executable takes precedence over
 * libc's for libESMTP too (ordinary ELF symbol interposition).  libpq
 * sets TCP_NODELAY on its sockets anyway; other sockets are untouched.
 */
typedef int connect_fn(int, const struct sockaddr *, socklen_t);

/*
 * While mg_smtp_send() runs on this thread, the first TCP socket connected
 * is libESMTP's: remembered so that mg_smtp_abort() can cut the session.
 */
static __thread bool session_capturing;
static __thread int session_fd = -1;

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	static _Atomic(connect_fn *) real;
	connect_fn *fn = atomic_load(&real);
	int type = 0, one = 1, saved;
	socklen_t tlen = sizeof(type);

	if (fn == NULL) {
		fn = (connect_fn *)dlsym(RTLD_NEXT, "connect");
		if (fn == NULL) {
			errno = ENOSYS;
			return -1;
		}
		atomic_store(&real, fn);
	}
	if (addr != NULL && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
		saved = errno;
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_STREAM) {
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			if (session_capturing && session_fd < 0)
				session_fd = fd;
		}
		errno = saved;
	}
	return fn(fd, addr, len);
}

/* State of one mail inside the session: the message callback's cursor. */
struct msg_ctx {
	struct mg_smtp_msg *msg;
	bool served;
};

struct session_ctx {
	mg_smtp_done_fn *done;
	void *arg;
};

/* libESMTP reads the message through this: whole message in one piece. */
static const char *message_cb(void **ctx, int *len, void *arg)
{
	struct msg_ctx *mc = arg;

	(void)ctx;
	if (len == NULL) { /* rewind */
		mc->served = false;
		return NULL;
	}
	if (mc->served) {
		*len = 0;
		return NULL;
	}
	mc->served = true;
	*len = (int)mc->msg->len;
	return mc->msg->data;
}

static void finish(struct session_ctx *sc, struct mg_smtp_msg *m, int result)
{
	if (m->done)
		return;
	m->done = true;
	m->result = result;
	if (sc->done != NULL)
		sc->done(m, sc->arg);
}

static int status_class(int code)
{
	if (code >= 200 && code < 300)
		return MG_OK;
	if (code >= 500 && code < 600)
		return MG_EREJECT;
	return MG_ETEMP; /* 4xx, or 0: never got that far */
}

/* The server's reply text without its line end (one per thread, until the next call). */
static const char *status_text(const smtp_status_t *st)
{
	static __thread char text[256];

	if (st == NULL || st->text == NULL)
		return "";
	(void)snprintf(text, sizeof(text), "%.*s", (int)strcspn(st->text, "\r\n"), st->text);
	return text;
}

struct rcpt_walk {
	int n_ok, n_temp, n_reject;
	int code;
	const char *mailbox;
	const char *text;
};

static void rcpt_cb(smtp_recipient_t r, const char *mailbox, void *arg)
{
	struct rcpt_walk *w = arg;
	const smtp_status_t *st = smtp_recipient_status(r);
	int code = st != NULL ? st->code : 0;

	switch (status_class(code)) {
	case MG_OK:
		w->n_ok++;
		return;
	case MG_EREJECT:
		w->n_reject++;
		break;
	default:
		w->n_temp++;
		break;
	}
	w->code = code;
	w->mailbox = mailbox;
	w->text = status_text(st);
}

/*
 * Decide the outcome of one message from the statuses libESMTP collected.
 * libESMTP is optimistic (LIBRARY-NOTES trap 4): it reports the session as
 * successful after MAIL FROM was refused, and sends DATA even when every
 * recipient was refused; so look at each status in protocol order.
 */
static int classify(smtp_message_t message, struct mg_smtp_msg *m)
{
	const smtp_status_t *st = smtp_reverse_path_status(message);
	struct rcpt_walk w = { 0 };
	int code = st != NULL ? st->code : 0;
	int c;

	if (status_class(code) != MG_OK)
		return mg_err_set(&m->err, status_class(code), "MAIL FROM refused: %d %s", code,
				  status_text(st));
	(void)smtp_enumerate_recipients(message, rcpt_cb, &w);
	if (w.n_ok == 0 || w.n_ok < (int)m->n_rcpts) {
		c = w.n_temp > 0 ? MG_ETEMP : MG_EREJECT;
		m->about_message = w.code != 0; /* 0: never asked (connection trouble) */
		return mg_err_set(&m->err, c, "RCPT TO <%s> refused: %d %s",
				  w.mailbox != NULL ? w.mailbox : "?", w.code,
				  w.text != NULL ? w.text : "");
	}
	st = smtp_message_transfer_status(message);
	code = st != NULL ? st->code : 0;
	if (code == 0) {
		m->maybe_delivered = true;
		return mg_err_set(&m->err, MG_ETEMP,
				  "the connection ended before the server confirmed the mail; it "
				  "may have been delivered");
	}
	if (status_class(code) != MG_OK) {
		m->about_message = true;
		return mg_err_set(&m->err, status_class(code), "message refused: %d %s", code,
				  status_text(st));
	}
	return MG_OK;
}

static void event_cb(smtp_session_t session, int event_no, void *arg, ...)
{
	struct session_ctx *sc = arg;
	smtp_message_t message;
	struct msg_ctx *mc;
	va_list ap;

	(void)session;
	if (event_no != SMTP_EV_MESSAGESENT)
		return;
	va_start(ap, arg);
	message = va_arg(ap, smtp_message_t);
	va_end(ap);
	mc = smtp_message_get_application_data(message);
	if (mc != NULL)
		finish(sc, mc->msg, classify(message, mc->msg));
}

void mg_smtp_abort(void)
{
	if (session_capturing && session_fd >= 0)
		(void)shutdown(session_fd, SHUT_RDWR);
}

int mg_smtp_send(const struct mg_smtp_opts *o, struct mg_smtp_msg *msgs, size_t n,
		 mg_smtp_done_fn *done, void *arg, struct mg_err *err)
{
	struct session_ctx sc = { .done = done, .arg = arg };
	struct msg_ctx *ctxs = NULL;
	smtp_session_t session = NULL;
	char server[300], ebuf[256];
	long ms = (long)o->timeout_sec * 1000;
	int r, started;

	for (size_t i = 0; i < n; i++) {
		msgs[i].done = false;
		msgs[i].maybe_delivered = false;
		msgs[i].about_message = false;
		msgs[i].result = MG_ETEMP;
		memset(&msgs[i].err, 0, sizeof(msgs[i].err));
	}
	if (n == 0)
		return MG_OK;
	ctxs = calloc(n, sizeof(*ctxs));
	session = smtp_create_session();
	if (ctxs == NULL || session == NULL) {
		r = mg_err_set(err, MG_ETEMP, "SMTP: out of memory");
		goto out;
	}
	(void)snprintf(server, sizeof(server), "%s:%d", o->host, o->port);
	if (!smtp_set_server(session, server) || !smtp_set_eventcb(session, event_cb, &sc)) {
		r = mg_err_set(err, MG_ETEMP, "SMTP: cannot set up a session for '%s'", server);
		goto out;
	}
	for (int w = Timeout_GREETING; w <= Timeout_DATA2; w++)
		(void)smtp_set_timeout(session, w | Timeout_OVERRIDE_RFC2822_MINIMUM, ms);
	for (size_t i = 0; i < n; i++) {
		smtp_message_t message = smtp_add_message(session);

		ctxs[i].msg = &msgs[i];
		if (message == NULL || !smtp_set_reverse_path(message, msgs[i].from) ||
		    !smtp_set_messagecb(message, message_cb, &ctxs[i])) {
			r = mg_err_set(err, MG_ETEMP, "SMTP: cannot add a message");
			goto out;
		}
		smtp_message_set_application_data_release(message, &ctxs[i], NULL);
		for (size_t j = 0; j < msgs[i].n_rcpts; j++) {
			if (smtp_add_recipient(message, msgs[i].rcpts[j]) == NULL) {
				r = mg_err_set(err, MG_ETEMP, "SMTP: cannot add a recipient");
				goto out;
			}
		}
	}
	session_capturing = true;
	session_fd = -1;
	started = smtp_start_session(session);
	session_capturing = false;
	session_fd = -1;
	if (!started) {
		r = mg_err_set(err, MG_ETEMP, "SMTP: session with %s failed: %s", server,
			       smtp_strerror(smtp_errno(), ebuf, sizeof(ebuf)));
		goto out;
	}
	/* messages never reached (connection lost before them) are temporary failures */
	r = MG_OK;
	for (size_t i = 0; i < n; i++) {
		if (!msgs[i].done) {
			r = mg_err_set(err, MG_ETEMP, "SMTP: connection to %s ended early", server);
			break;
		}
	}
out:
	for (size_t i = 0; i < n; i++) {
		if (!msgs[i].done) {
			mg_err_set(&msgs[i].err, MG_ETEMP, "%s",
				   err != NULL && err->msg[0] != '\0' ? err->msg
								      : "SMTP: not attempted");
			finish(&sc, &msgs[i], MG_ETEMP);
		}
	}
	if (session != NULL)
		smtp_destroy_session(session);
	free(ctxs);
	return r;
}
