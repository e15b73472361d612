/* lib/smtp.c - handing mails to an SMTP server through libESMTP */
#define _GNU_SOURCE 1

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* <openssl/ssl.h> first: libesmtp.h declares smtp_starttls_set_ctx() only then */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <auth-client.h>
#include <libesmtp.h>

#include "config.h"
#include "smtp.h"

#define PASSWORD_MAX 1024 /* bytes in a password file, line end included */

struct mg_smtp_client {
	enum mg_smtp_tls mode;
	bool verify;
	SSL_CTX *ctx;	   /* NULL when mode is MG_SMTP_TLS_OFF */
	char *sni;	   /* server name sent in SMTPS handshakes; NULL for an address */
	char *username;	   /* NULL: no AUTH */
	char *password;	   /* wiped on free; never logged, never in a message */
	bool plaintext_ok; /* smtp.auth_allow_plaintext */
	int timeout_sec;
};

/* One SMTPS connection: TLS on tcp, cleartext for libESMTP on app (docs/smtp.md). */
struct bridge {
	SSL *ssl;
	int tcp; /* the TLS connection to the server */
	int app; /* our end of the socket pair whose other end libESMTP holds */
	pthread_t thread;
};

/* The state of one mg_smtp_send() call, for the callbacks and connect(). */
struct session_ctx {
	mg_smtp_done_fn *done;
	void *arg;
	const struct mg_smtp_client *client; /* NULL: plain, no AUTH */
	int fd;				     /* libESMTP's socket once connected; -1 */
	int connect_timeout_ms;		     /* libESMTP has none: see connect() */
	bool encrypted;			     /* STARTTLS done, or SMTPS */
	bool starttls_sent;
	bool auth_sent;	    /* an AUTH command awaits its outcome */
	bool authenticated; /* the server said 235 */
	struct bridge *bridge;
	char error[400]; /* the first session-level failure, "" if none */
};

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
 * While mg_smtp_send() runs on this thread, a TCP socket that connects is
 * libESMTP's: remembered so that mg_smtp_abort() can cut the session, and
 * for SMTPS wrapped in TLS before libESMTP sees it (bridge_start()).
 */
static __thread struct session_ctx *cur_session;

static int bridge_start(struct session_ctx *sc, int fd);

/*
 * The C library's connect() with a time-out, for a blocking socket:
 * libESMTP has none of its own, and a host that drops our SYNs would hold
 * a worker for the kernel's SYN retries (about two minutes).
 */
static int connect_timed(connect_fn *fn, int fd, const struct sockaddr *addr, socklen_t len,
			 int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	int flags = fcntl(fd, F_GETFL), soerr = 0, r;
	socklen_t elen = sizeof(soerr);

	if (flags < 0 || (flags & O_NONBLOCK) || timeout_ms <= 0)
		return fn(fd, addr, len);
	if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return fn(fd, addr, len);
	r = fn(fd, addr, len);
	if (r < 0 && errno == EINPROGRESS) {
		do
			r = poll(&pfd, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			errno = ETIMEDOUT;
			r = -1;
		} else if (r > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &elen) == 0) {
			errno = soerr;
			r = soerr == 0 ? 0 : -1;
		} else {
			r = -1;
		}
	}
	soerr = errno;
	(void)fcntl(fd, F_SETFL, flags);
	errno = soerr;
	return r;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	static _Atomic(connect_fn *) real;
	connect_fn *fn = atomic_load(&real);
	struct session_ctx *sc = cur_session;
	int type = 0, one = 1, saved, r;
	socklen_t tlen = sizeof(type);
	bool tcp = false;

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
			tcp = true;
		}
		errno = saved;
	}
	if (tcp && sc != NULL)
		r = connect_timed(fn, fd, addr, len, sc->connect_timeout_ms);
	else
		r = fn(fd, addr, len);
	/* only a connect that worked: "localhost" may try ::1 in vain first */
	if (r == 0 && tcp && sc != NULL && sc->fd < 0) {
		sc->fd = fd;
		if (sc->client != NULL && sc->client->mode == MG_SMTP_TLS_SMTPS)
			r = bridge_start(sc, fd);
	}
	return r;
}

/* ---------------------------------------------------------------- the client */

/* "what: reason" from OpenSSL's error queue of this thread, which it clears. */
static const char *ssl_reason(char *buf, size_t size)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		(void)snprintf(buf, size, "no details");
	else
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

/*
 * Read the password: the file's content up to an optional final line end.
 * It may not be empty or hold another line.  Messages name the file, never
 * what it holds.
 */
static int read_password(const char *path, const char *origin, const char *key, char **ret,
			 struct mg_err *err)
{
	char buf[PASSWORD_MAX + 1];
	size_t len = 0;
	ssize_t n;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return mg_err_set(err, MG_ECONFIG, "%s: '%s': cannot open '%s': %s", origin, key,
				  path, strerror(errno));
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = mg_err_set(err, MG_ECONFIG, "%s: '%s': cannot read '%s': %s", origin,
				       key, path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > PASSWORD_MAX) {
		r = mg_err_set(err, MG_ECONFIG, "%s: '%s': '%s' is longer than %d bytes", origin,
			       key, path, PASSWORD_MAX);
		goto out;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0 || memchr(buf, '\n', len) != NULL || memchr(buf, '\r', len) != NULL ||
	    memchr(buf, '\0', len) != NULL) {
		r = mg_err_set(err, MG_ECONFIG,
			       "%s: '%s': '%s' must hold the password on one line, nothing else",
			       origin, key, path);
		goto out;
	}
	*ret = strndup(buf, len);
	r = *ret != NULL ? MG_OK : mg_err_set(err, MG_ENOMEM, "out of memory");
out:
	explicit_bzero(buf, sizeof(buf));
	close(fd);
	return r;
}

static int client_password(struct mg_smtp_client *c, const struct mg_config *cfg,
			   struct mg_err *err)
{
	const char *origin =
		cfg->smtp_password_origin != NULL ? cfg->smtp_password_origin : "(config)";
	const char *dir;
	char path[4096];

	if (cfg->smtp_password_file != NULL)
		return read_password(cfg->smtp_password_file, origin, "smtp.password_file",
				     &c->password, err);
	dir = getenv("CREDENTIALS_DIRECTORY");
	if (dir == NULL || dir[0] == '\0')
		return mg_err_set(err, MG_ECONFIG,
				  "%s: 'smtp.password_credential': $CREDENTIALS_DIRECTORY is not "
				  "set (give the unit LoadCredential=%s:...)",
				  origin, cfg->smtp_password_credential);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, cfg->smtp_password_credential) >=
	    sizeof(path))
		return mg_err_set(err, MG_ECONFIG, "%s: 'smtp.password_credential': path too long",
				  origin);
	return read_password(path, origin, "smtp.password_credential", &c->password, err);
}

/*
 * The OpenSSL context shared by every session of this client.  libESMTP
 * 1.1.0 would build and cache its own, and crash on the second STARTTLS
 * session of a process (LIBRARY-NOTES trap 2); so we build it, load the CAs
 * ourselves and hand it to each session.  STARTTLS is capped at TLS 1.2:
 * libESMTP hangs after a TLS 1.3 server's session tickets (trap 3).  The
 * name to check is set on the context, so OpenSSL checks it during
 * verification (DNS names and IP addresses alike); libESMTP's own check
 * matches DNS names only and is overridden in event_cb().
 */
static int client_tls(struct mg_smtp_client *c, const struct mg_config *cfg, struct mg_err *err)
{
	const char *name =
		cfg->smtp_tls_server_name != NULL ? cfg->smtp_tls_server_name : cfg->smtp_host;
	const char *key = cfg->smtp_tls_server_name != NULL ? "smtp.tls_server_name" : "smtp.host";
	X509_VERIFY_PARAM *vp;
	unsigned char ip[sizeof(struct in6_addr)];
	bool is_ip;
	char why[256];

	ERR_clear_error();
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL)
		return mg_err_set(err, MG_ENOMEM, "cannot create a TLS context: %s",
				  ssl_reason(why, sizeof(why)));
	(void)SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	if (c->mode != MG_SMTP_TLS_SMTPS)
		(void)SSL_CTX_set_max_proto_version(c->ctx, TLS1_2_VERSION);
	/*
	 * SSL_VERIFY_NONE: the handshake completes and the verdict is looked at
	 * afterwards (libESMTP's INVALID_PEER_CERTIFICATE event, or
	 * bridge_start()), so that the error can say what was wrong.  No data
	 * is sent before that check.
	 */
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
	if (cfg->smtp_tls_ca_file != NULL || cfg->smtp_tls_ca_dir != NULL) {
		if (SSL_CTX_load_verify_locations(c->ctx, cfg->smtp_tls_ca_file,
						  cfg->smtp_tls_ca_dir) != 1)
			return mg_err_set(err, MG_ECONFIG, "%s: '%s': cannot load '%s': %s",
					  cfg->smtp_tls_origin != NULL ? cfg->smtp_tls_origin
								       : "(config)",
					  cfg->smtp_tls_ca_file != NULL ? "smtp.tls_ca_file"
									: "smtp.tls_ca_dir",
					  cfg->smtp_tls_ca_file != NULL ? cfg->smtp_tls_ca_file
									: cfg->smtp_tls_ca_dir,
					  ssl_reason(why, sizeof(why)));
	} else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
		return mg_err_set(err, MG_ECONFIG, "cannot load the system's trusted CAs: %s",
				  ssl_reason(why, sizeof(why)));
	}
	is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
	if (!is_ip) {
		c->sni = strdup(name);
		if (c->sni == NULL)
			return mg_err_set(err, MG_ENOMEM, "out of memory");
	}
	if (!c->verify)
		return MG_OK;
	vp = SSL_CTX_get0_param(c->ctx);
	X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name)
		   : X509_VERIFY_PARAM_set1_host(vp, name, 0)) != 1)
		return mg_err_set(err, MG_ECONFIG,
				  "'%s': \"%.80s\" cannot be checked in a certificate", key, name);
	return MG_OK;
}

static pthread_once_t auth_once = PTHREAD_ONCE_INIT;

static void auth_init(void)
{
	auth_client_init();
}

int mg_smtp_client_new(const struct mg_config *cfg, struct mg_smtp_client **ret, struct mg_err *err)
{
	struct mg_smtp_client *c = calloc(1, sizeof(*c));
	int r;

	*ret = NULL;
	if (c == NULL)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	c->mode = (enum mg_smtp_tls)cfg->smtp_tls;
	c->verify = cfg->smtp_tls_verify;
	c->plaintext_ok = cfg->smtp_auth_allow_plaintext;
	c->timeout_sec = cfg->smtp_timeout_sec;
	if (c->mode != MG_SMTP_TLS_OFF) {
		r = client_tls(c, cfg, err);
		if (r < 0)
			goto fail;
	}
	if (cfg->smtp_username != NULL) {
		c->username = strdup(cfg->smtp_username);
		if (c->username == NULL) {
			r = mg_err_set(err, MG_ENOMEM, "out of memory");
			goto fail;
		}
		r = client_password(c, cfg, err);
		if (r < 0)
			goto fail;
		(void)pthread_once(&auth_once, auth_init);
	}
	*ret = c;
	return MG_OK;
fail:
	mg_smtp_client_free(c);
	return r;
}

void mg_smtp_client_free(struct mg_smtp_client *c)
{
	if (c == NULL)
		return;
	if (c->password != NULL) {
		explicit_bzero(c->password, strlen(c->password));
		free(c->password);
	}
	free(c->username);
	free(c->sni);
	SSL_CTX_free(c->ctx);
	free(c);
}

/* The first session-level failure wins: it is the cause, later ones follow from it. */
static void session_fail(struct session_ctx *sc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void session_fail(struct session_ctx *sc, const char *fmt, ...)
{
	va_list ap;

	if (sc->error[0] != '\0')
		return;
	va_start(ap, fmt);
	(void)vsnprintf(sc->error, sizeof(sc->error), fmt, ap);
	va_end(ap);
}

/* End the session now: libESMTP sees the connection drop and sends nothing more. */
static void session_cut(struct session_ctx *sc)
{
	if (sc->fd >= 0)
		(void)shutdown(sc->fd, SHUT_RDWR);
}

/* ---------------------------------------------------------------- SMTPS */

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Copy bytes between libESMTP's cleartext socket and the TLS connection
 * until either side ends.  Auto-retry is off, so a TLS record without data
 * (a TLS 1.3 session ticket) does not block SSL_read().
 */
static void *bridge_run(void *arg)
{
	struct bridge *b = arg;
	char buf[16384];
	int n;

	for (;;) {
		struct pollfd p[2] = { { .fd = b->app, .events = POLLIN },
				       { .fd = b->tcp, .events = POLLIN } };

		if (SSL_pending(b->ssl) > 0) {
			p[1].revents = POLLIN;
			(void)poll(p, 1, 0);
		} else if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents != 0) {
			n = SSL_read(b->ssl, buf, sizeof(buf));
			if (n > 0) {
				if (write_all(b->app, buf, (size_t)n) < 0)
					break;
			} else {
				int e = SSL_get_error(b->ssl, n);

				if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
					break; /* the server closed, or a TLS error */
			}
		}
		if (p[0].revents != 0) {
			ssize_t m = read(b->app, buf, sizeof(buf));

			if (m < 0 && errno == EINTR)
				continue;
			if (m <= 0)
				break; /* libESMTP closed its socket: the session is over */
			if (SSL_write(b->ssl, buf, (int)m) <= 0)
				break;
		}
	}
	(void)SSL_shutdown(b->ssl); /* close_notify, best effort */
	(void)shutdown(b->app, SHUT_RDWR);
	ERR_clear_error();
	return NULL;
}

/*
 * Implicit TLS (RFC 8314) for a library that only knows STARTTLS: fd has
 * just connected to the server.  Do the TLS handshake and the certificate
 * check on it, then put one end of a socket pair in its place (dup2), so
 * that libESMTP speaks cleartext SMTP to a thread that carries it over TLS.
 * On failure the error is recorded and connect() fails.
 */
static int bridge_start(struct session_ctx *sc, int fd)
{
	const struct mg_smtp_client *c = sc->client;
	struct bridge *b = calloc(1, sizeof(*b));
	struct timeval tv = { .tv_sec = c->timeout_sec };
	int sp[2] = { -1, -1 };
	char why[256];
	long vr;

	if (b == NULL) {
		session_fail(sc, "out of memory");
		goto fail;
	}
	b->tcp = b->app = -1;
	b->tcp = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (b->tcp < 0) {
		session_fail(sc, "cannot set up TLS: %s", strerror(errno));
		goto fail;
	}
	(void)setsockopt(b->tcp, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(b->tcp, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	ERR_clear_error();
	b->ssl = SSL_new(c->ctx);
	if (b->ssl == NULL || SSL_set_fd(b->ssl, b->tcp) != 1 ||
	    (c->sni != NULL && SSL_set_tlsext_host_name(b->ssl, c->sni) != 1)) {
		session_fail(sc, "cannot set up TLS: %s", ssl_reason(why, sizeof(why)));
		goto fail;
	}
	SSL_clear_mode(b->ssl, SSL_MODE_AUTO_RETRY);
	if (SSL_connect(b->ssl) != 1) {
		session_fail(sc, "TLS handshake failed: %s",
			     ERR_peek_last_error() != 0 ? ssl_reason(why, sizeof(why))
							: "connection closed or timed out");
		goto fail;
	}
	if (c->verify) {
		if (SSL_get0_peer_certificate(b->ssl) == NULL) {
			session_fail(sc, "certificate verification failed: the server sent none");
			goto fail;
		}
		vr = SSL_get_verify_result(b->ssl);
		if (vr != X509_V_OK) {
			session_fail(sc, "certificate verification failed: %s",
				     X509_verify_cert_error_string(vr));
			goto fail;
		}
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0 || dup2(sp[0], fd) < 0) {
		session_fail(sc, "cannot set up TLS: %s", strerror(errno));
		goto fail;
	}
	close(sp[0]);
	sp[0] = -1;
	b->app = sp[1];
	if (pthread_create(&b->thread, NULL, bridge_run, b) != 0) {
		session_fail(sc, "cannot start the TLS thread");
		goto fail;
	}
	sc->bridge = b;
	sc->encrypted = true;
	return 0;
fail:
	if (sp[0] >= 0)
		close(sp[0]);
	if (b != NULL) {
		SSL_free(b->ssl);
		if (b->tcp >= 0)
			close(b->tcp);
		if (b->app >= 0)
			close(b->app);
		free(b);
	}
	ERR_clear_error();
	sc->fd = -1; /* libESMTP may try the server's next address: wrap that one too */
	errno = ECONNABORTED;
	return -1;
}

/* After the session: libESMTP has closed its end; wake the thread, wait for it. */
static void bridge_stop(struct bridge *b)
{
	if (b == NULL)
		return;
	(void)shutdown(b->app, SHUT_RDWR);
	(void)pthread_join(b->thread, NULL);
	SSL_free(b->ssl);
	close(b->tcp);
	close(b->app);
	free(b);
}

/* ---------------------------------------------------------------- AUTH */

/*
 * libESMTP's SASL plugins (PLAIN, LOGIN, CRAM-MD5) ask for the user name and
 * password here.  On a connection that is not encrypted we give nothing
 * unless smtp.auth_allow_plaintext: the password never leaves in clear.
 */
static int interact_cb(auth_client_request_t req, char **result, int fields, void *arg)
{
	struct session_ctx *sc = arg;
	const struct mg_smtp_client *c = sc->client;

	if (!sc->encrypted && !c->plaintext_ok)
		return 0;
	for (int i = 0; i < fields; i++) {
		if (req[i].flags & AUTH_PASS)
			result[i] = c->password;
		else if (req[i].flags & AUTH_USER)
			result[i] = c->username;
		else
			result[i] = (char *)""; /* realm: none */
	}
	return 1;
}

/*
 * libESMTP reports no AUTH outcome: after a refusal it goes on to MAIL FROM
 * unauthenticated.  So watch the protocol: remember the server's answer to
 * AUTH, and cut the session before a MAIL FROM that is not authenticated
 * (when a user name is configured), and before AUTH on a cleartext
 * connection.  What is written is never copied anywhere: AUTH lines hold
 * the credentials.
 */
static void monitor_cb(const char *buf, int len, int writing, void *arg)
{
	struct session_ctx *sc = arg;
	const struct mg_smtp_client *c = sc->client;
	int code;

	if (writing == SMTP_CB_WRITING && len >= 8 && strncasecmp(buf, "STARTTLS", 8) == 0) {
		sc->starttls_sent = true;
		return;
	}
	if (c == NULL || c->username == NULL || sc->authenticated)
		return;
	if (writing == SMTP_CB_WRITING) {
		if (len >= 5 && strncasecmp(buf, "AUTH ", 5) == 0) {
			if (!sc->encrypted && !c->plaintext_ok) {
				session_fail(sc, "AUTH not attempted: the connection is not "
						 "encrypted (the server offered no STARTTLS)");
				session_cut(sc);
				return;
			}
			sc->auth_sent = true;
		} else if (len >= 10 && strncasecmp(buf, "MAIL FROM:", 10) == 0) {
			session_fail(sc, "AUTH not possible: the server offers no mechanism "
					 "libESMTP can use (PLAIN, LOGIN, CRAM-MD5)");
			session_cut(sc);
		}
		return;
	}
	if (writing != SMTP_CB_READING || !sc->auth_sent || len < 3)
		return;
	if (buf[0] < '0' || buf[0] > '9' || buf[1] < '0' || buf[1] > '9' || buf[2] < '0' ||
	    buf[2] > '9')
		return;
	code = (buf[0] - '0') * 100 + (buf[1] - '0') * 10 + (buf[2] - '0');
	if (code == 334)
		return; /* a challenge: the exchange goes on */
	sc->auth_sent = false;
	if (code == 235) {
		sc->authenticated = true;
		return;
	}
	/* the server's own words, one line, printable ASCII only */
	{
		char text[200];
		size_t n = 0;

		for (int i = 0; i < len && buf[i] != '\r' && buf[i] != '\n' && n + 1 < sizeof(text);
		     i++)
			text[n++] = (buf[i] >= 0x20 && buf[i] < 0x7f) ? buf[i] : '?';
		text[n] = '\0';
		session_fail(sc, "AUTH refused for user '%s': %s", c->username, text);
	}
}

/* State of one mail inside the session: the message callback's cursor. */
struct msg_ctx {
	struct mg_smtp_msg *msg;
	bool served;
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
	size_t index;	/* of the next recipient, in the order they were added */
	int first_code; /* the first recipient's reply */
	char first_text[256];
};

static void rcpt_cb(smtp_recipient_t r, const char *mailbox, void *arg)
{
	struct rcpt_walk *w = arg;
	const smtp_status_t *st = smtp_recipient_status(r);
	int code = st != NULL ? st->code : 0;

	if (w->index++ == 0) {
		w->first_code = code;
		(void)snprintf(w->first_text, sizeof(w->first_text), "%s", status_text(st));
	}
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
	if (m->first_rcpt_decides && m->n_rcpts > 1) {
		/* copies: only the recipient's own refusal fails the mail */
		if (status_class(w.first_code) != MG_OK) {
			m->about_message = w.first_code != 0;
			return mg_err_set(&m->err, status_class(w.first_code),
					  "RCPT TO <%s> refused: %d %s", m->rcpts[0], w.first_code,
					  w.first_text);
		}
		m->others_refused = (unsigned)(w.n_temp + w.n_reject);
		if (m->others_refused > 0)
			(void)snprintf(m->others_text, sizeof(m->others_text),
				       "RCPT TO <%s> refused: %d %s",
				       w.mailbox != NULL ? w.mailbox : "?", w.code,
				       w.text != NULL ? w.text : "");
	} else if (w.n_ok == 0 || w.n_ok < (int)m->n_rcpts) {
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
	bool verify = sc->client != NULL && sc->client->verify;
	smtp_message_t message;
	struct msg_ctx *mc;
	long vr;
	int *ok;
	va_list ap;

	(void)session;
	va_start(ap, arg);
	switch (event_no) {
	case SMTP_EV_MESSAGESENT:
		message = va_arg(ap, smtp_message_t);
		mc = smtp_message_get_application_data(message);
		if (mc != NULL)
			finish(sc, mc->msg, classify(message, mc->msg));
		break;
	case SMTP_EV_STARTTLS_OK:
		sc->encrypted = true;
		break;
	case SMTP_EV_EXTNA_STARTTLS: /* only sent when STARTTLS is required */
		session_fail(sc, "the server does not offer STARTTLS (smtp.tls is "
				 "\"starttls-required\")");
		break;
	case SMTP_EV_INVALID_PEER_CERTIFICATE: /* long result, int *ok, SSL * */
		vr = va_arg(ap, long);
		ok = va_arg(ap, int *);
		*ok = !verify;
		if (verify)
			session_fail(sc, "certificate verification failed: %s",
				     X509_verify_cert_error_string(vr));
		break;
	case SMTP_EV_NO_PEER_CERTIFICATE: /* int *ok */
		ok = va_arg(ap, int *);
		*ok = !verify;
		if (verify)
			session_fail(sc, "certificate verification failed: the server sent none");
		break;
	case SMTP_EV_WRONG_PEER_CERTIFICATE: /* int *ok, char *name, SSL * */
		/*
		 * libESMTP's own name check (DNS names only, against smtp.host).
		 * OpenSSL has already checked smtp.tls_server_name or smtp.host
		 * (client_tls()); a failure there came as INVALID_PEER_CERTIFICATE.
		 */
		ok = va_arg(ap, int *);
		*ok = 1;
		break;
	case SMTP_EV_WEAK_CIPHER: /* int bits, int *ok */
		(void)va_arg(ap, int);
		ok = va_arg(ap, int *);
		*ok = 0;
		session_fail(sc, "TLS handshake failed: the negotiated cipher is too weak");
		break;
	default:
		break;
	}
	va_end(ap);
}

void mg_smtp_abort(void)
{
	if (cur_session != NULL)
		session_cut(cur_session);
}

int mg_smtp_send(const struct mg_smtp_opts *o, struct mg_smtp_msg *msgs, size_t n,
		 mg_smtp_done_fn *done, void *arg, struct mg_err *err)
{
	struct session_ctx sc = { .done = done,
				  .arg = arg,
				  .client = o->client,
				  .fd = -1,
				  .connect_timeout_ms = o->timeout_sec * 1000 };
	const struct mg_smtp_client *c = o->client;
	struct msg_ctx *ctxs = NULL;
	smtp_session_t session = NULL;
	auth_context_t auth = NULL;
	char server[300], ebuf[256];
	long ms = (long)o->timeout_sec * 1000;
	int r, started;

	for (size_t i = 0; i < n; i++) {
		msgs[i].done = false;
		msgs[i].maybe_delivered = false;
		msgs[i].about_message = false;
		msgs[i].others_refused = 0;
		msgs[i].others_text[0] = '\0';
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
	if (c != NULL &&
	    (c->mode == MG_SMTP_TLS_STARTTLS || c->mode == MG_SMTP_TLS_STARTTLS_REQUIRED) &&
	    (!smtp_starttls_enable(session, c->mode == MG_SMTP_TLS_STARTTLS ? Starttls_ENABLED
									    : Starttls_REQUIRED) ||
	     !smtp_starttls_set_ctx(session, c->ctx))) {
		r = mg_err_set(err, MG_ETEMP, "SMTP: cannot enable STARTTLS for '%s'", server);
		goto out;
	}
	if (c != NULL && c->username != NULL) {
		auth = auth_create_context();
		if (auth == NULL || !auth_set_mechanism_flags(auth, AUTH_PLUGIN_PLAIN, 0) ||
		    !auth_set_interact_cb(auth, interact_cb, &sc) ||
		    !smtp_auth_set_context(session, auth)) {
			r = mg_err_set(err, MG_ETEMP, "SMTP: cannot set up AUTH for '%s'", server);
			goto out;
		}
	}
	if (!smtp_set_monitorcb(session, monitor_cb, &sc, 0)) {
		r = mg_err_set(err, MG_ETEMP, "SMTP: cannot set up a session for '%s'", server);
		goto out;
	}
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
	ERR_clear_error();
	cur_session = &sc;
	started = smtp_start_session(session);
	cur_session = NULL;
	bridge_stop(sc.bridge);
	sc.bridge = NULL;
	if (sc.error[0] == '\0' && sc.starttls_sent && !sc.encrypted)
		session_fail(&sc, "TLS handshake failed: %s", ssl_reason(ebuf, sizeof(ebuf)));
	ERR_clear_error();
	if (sc.error[0] != '\0') {
		r = mg_err_set(err, MG_ETEMP, "SMTP server '%s': %s", server, sc.error);
		goto out;
	}
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
	if (auth != NULL)
		auth_destroy_context(auth);
	free(ctxs);
	return r;
}
