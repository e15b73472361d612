/* lib/smtp.h - handing mails to an SMTP server through libESMTP */
#ifndef MG_SMTP_H
#define MG_SMTP_H

#include <stdbool.h>
#include <stddef.h>

#include "mg-err.h"

struct mg_config;

/*
 * What a sender needs for TLS and AUTH: an OpenSSL context built from
 * smtp.tls* (trusted CAs, TLS 1.2 cap for STARTTLS, the name to verify) and
 * the AUTH credentials (the password read from its file or systemd
 * credential).  Opaque; see docs/smtp.md "TLS and AUTH".
 */
struct mg_smtp_client;

/*
 * Build the client for cfg's smtp.* keys: load the CAs, read the password.
 * Errors name the config file and key (MG_ECONFIG), never the password.
 * *ret may be used by one thread at a time for any number of sessions
 * (each mailer has its own).  Does I/O; does not log.
 */
int mg_smtp_client_new(const struct mg_config *cfg, struct mg_smtp_client **ret,
		       struct mg_err *err);

/* Free it, wiping the password.  NULL-safe. */
void mg_smtp_client_free(struct mg_smtp_client *c);

/* Where and how to connect. */
struct mg_smtp_opts {
	const char *host;
	int port;
	int timeout_sec; /* per reply and per data block; libESMTP's RFC minimums overridden */
	const struct mg_smtp_client *client; /* NULL: plain SMTP without AUTH */
};

/*
 * One mail.  The caller fills the first block; mg_smtp_send() fills the
 * outcome: result is MG_OK (accepted by the server for every recipient),
 * MG_ETEMP (4xx, connection trouble, timeout, or an unknown outcome) or
 * MG_EREJECT (5xx), with err saying what the server said.
 */
struct mg_smtp_msg {
	const char *from;	  /* envelope sender */
	const char *const *rcpts; /* envelope recipients */
	size_t n_rcpts;
	const char *data; /* the whole message, CRLF line ends */
	size_t len;
	void *arg; /* for the caller's done callback */

	int result;
	bool done;
	bool maybe_delivered; /* result is MG_ETEMP but the server may have it */
	/*
	 * The result is the server's answer about this mail (a recipient or
	 * its data refused), not trouble with the connection or the sender
	 * that would hit any mail alike.
	 */
	bool about_message;
	/*
	 * Set by the caller: only rcpts[0] decides the outcome (the others are
	 * copies); their refusals are counted here, with the last one's reply.
	 */
	bool first_rcpt_decides;
	unsigned others_refused;
	char others_text[300];
	struct mg_err err;
};

/*
 * Called once per mail, as soon as its outcome is known: for accepted mails
 * right after the server's reply to the end of data and before the next
 * mail is started, so the caller can record it first.
 */
typedef void mg_smtp_done_fn(struct mg_smtp_msg *msg, void *arg);

/*
 * Send msgs[0..n) over one SMTP connection (libESMTP cannot keep a
 * connection across sessions, so mails share one by being sent in one
 * session).  done is called exactly once for every mail.  Returns MG_OK
 * when the session ran (see each msg->result), or MG_ETEMP when the server
 * could not be reached or the connection failed; then err says why and
 * every mail not yet done was reported as MG_ETEMP.  A failed TLS
 * handshake or certificate check, STARTTLS required but not offered, and
 * AUTH refused are such session failures: err says which, in one line.
 */
int mg_smtp_send(const struct mg_smtp_opts *o, struct mg_smtp_msg *msgs, size_t n,
		 mg_smtp_done_fn *done, void *arg, struct mg_err *err);

/*
 * From a done callback: end the session now, so that no further mail of it
 * is sent (the caller could not record the last one).  The mails not sent
 * yet are reported as MG_ETEMP.
 */
void mg_smtp_abort(void);

#endif /* MG_SMTP_H */
