/* daemon/control.c - the control socket of mailgend: mailgenctl's requests on the event loop */
#define _GNU_SOURCE /* accept4, struct ucred */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "control.h"
#include "ctl-proto.h"
#include "daemon.h"
#include "log.h"
#include "mg-buf.h"

/*
 * Each connection reads at most one request line (MG_CTL_LINE_MAX bytes and
 * its "\n") ahead, and stops reading while more than CONTROL_OUT_HIGH bytes
 * of answers wait for a client that does not read them; the idle timer
 * then ends it.  So a client holds at most about 70 KiB.
 */
#define CONTROL_OUT_HIGH     (16 * 1024)
#define CONTROL_OUT_MAX	     (CONTROL_OUT_HIGH + 3 * MG_CTL_RESPONSE_MAX)
#define CONTROL_BACKLOG	     32
#define CONTROL_ACCEPT_BATCH 32 /* accepts per callback, so clients cannot starve the loop */
#define CONTROL_ACCEPT_PAUSE 1	/* seconds without accepting after EMFILE and friends */

struct conn {
	struct control *c;
	struct conn *prev, *next;
	int fd;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_idle;
	bool reading; /* ev_read is added */
	bool writing; /* ev_write is added */
	bool eof;     /* the client shut down its side */
	bool closing; /* send what is queued, then close */
	bool waiting; /* for the answer to a request handed on (control_answer) */
	uint64_t id;  /* names the connection in control_answer() */
	char in[MG_CTL_LINE_MAX + 1];
	size_t in_len;
	struct mg_buf out;
	size_t out_off; /* bytes of out already sent */
};

struct control {
	struct event_base *base;
	struct daemon *d;
	char *path;
	int fd;
	bool created; /* path is our socket: dev and ino say which file */
	dev_t dev;
	ino_t ino;
	uid_t daemon_uid;
	gid_t daemon_gid;
	struct event *ev_accept;
	struct event *ev_accept_retry;
	struct conn *conns;
	unsigned n_conns;
	uint64_t next_id;
};

static size_t conn_pending(const struct conn *k)
{
	return k->out.len - k->out_off;
}

static void conn_free(struct conn *k)
{
	struct control *c = k->c;

	if (k->prev != NULL)
		k->prev->next = k->next;
	else
		c->conns = k->next;
	if (k->next != NULL)
		k->next->prev = k->prev;
	c->n_conns--;
	if (k->ev_read != NULL)
		event_free(k->ev_read);
	if (k->ev_write != NULL)
		event_free(k->ev_write);
	if (k->ev_idle != NULL)
		event_free(k->ev_idle);
	if (k->fd >= 0)
		(void)close(k->fd);
	mg_buf_release(&k->out);
	free(k);
}

/* Progress was made: the client gets another CONTROL_IDLE_TIMEOUT_SEC. */
static void conn_touch(struct conn *k)
{
	static const struct timeval tv = { .tv_sec = CONTROL_IDLE_TIMEOUT_SEC };

	/* re-adding a pending timer replaces its timeout */
	if (evtimer_add(k->ev_idle, &tv) < 0)
		mg_log(LOG_ERR, NULL, "control: cannot arm the idle timer of uid %u",
		       (unsigned)k->uid);
}

/* Queue an error answer; when even that fails, give up on the client. */
static void conn_error(struct conn *k, const char *message)
{
	if (mg_ctl_format_error(&k->out, message) < 0)
		k->closing = true;
}

/*
 * Move the unsent tail of out to the front.  mg_buf has no "consume"
 * operation (its fields are only touched through the API), so copy the
 * tail into a new buffer; this runs only after a slow reader let more
 * than CONTROL_OUT_HIGH bytes pile up, and copies less than that.
 */
static int conn_compact(struct conn *k)
{
	struct mg_buf tail = MG_BUF_INIT(CONTROL_OUT_MAX);
	int r;

	r = mg_buf_add(&tail, k->out.data + k->out_off, conn_pending(k));
	if (r < 0) {
		mg_buf_release(&tail);
		return r;
	}
	mg_buf_release(&k->out);
	k->out = tail;
	k->out_off = 0;
	return MG_OK;
}

/* Answer one request line and queue the answer. */
static void conn_request(struct conn *k, const char *line, size_t len)
{
	struct daemon *d = k->c->d;
	struct mg_ctl_status st;
	struct mg_err err = { 0 };
	enum mg_ctl_cmd cmd;
	char msg[MG_ERR_MSG_MAX];
	int64_t id;
	int r;

	if (mg_ctl_parse_request_id(line, len, &cmd, &id, &err) < 0) {
		mg_log(LOG_DEBUG, NULL, "control: bad request from uid %u: %s", (unsigned)k->uid,
		       err.msg);
		conn_error(k, err.msg);
		return;
	}
	switch (cmd) {
	case MG_CTL_STATUS:
		memset(&st, 0, sizeof(st));
		daemon_get_status(d, &st);
		r = mg_ctl_format_ok(&k->out, &st);
		break;
	case MG_CTL_FLUSH:
	case MG_CTL_PAUSE:
	case MG_CTL_RESUME:
		mg_log(LOG_INFO, NULL, "control: %s requested by uid %u (pid %d)",
		       mg_ctl_cmd_name(cmd), (unsigned)k->uid, (int)k->pid);
		if (cmd == MG_CTL_FLUSH)
			daemon_flush(d);
		else
			daemon_set_paused(d, cmd == MG_CTL_PAUSE);
		r = mg_ctl_format_ok(&k->out, NULL);
		break;
	case MG_CTL_RELOAD:
		/* daemon_reload() logs its outcome, as it does for SIGHUP */
		mg_log(LOG_INFO, NULL, "control: reload requested by uid %u (pid %d)",
		       (unsigned)k->uid, (int)k->pid);
		msg[0] = '\0';
		r = daemon_reload(d, msg, sizeof(msg));
		if (r < 0) {
			msg[sizeof(msg) - 1] = '\0';
			r = mg_ctl_format_error(&k->out, msg[0] != '\0' ? msg : "reload failed");
		} else {
			r = mg_ctl_format_ok(&k->out, NULL);
		}
		break;
	case MG_CTL_FAILED:
	case MG_CTL_RETRY:
	case MG_CTL_DROP:
		if (cmd != MG_CTL_FAILED)
			mg_log(LOG_INFO, NULL,
			       "control: %s of failed group %lld requested by uid %u (pid %d)",
			       mg_ctl_cmd_name(cmd), (long long)id, (unsigned)k->uid, (int)k->pid);
		msg[0] = '\0';
		/* these need the database: the scanner thread answers them */
		r = daemon_failed_request(d, cmd, id, (unsigned)k->uid, k->id, msg, sizeof(msg));
		if (r == 0) {
			k->waiting = true;
			break;
		}
		if (r < 0)
			r = mg_ctl_format_error(&k->out, msg);
		else
			r = mg_ctl_format_ok_message(&k->out, msg);
		break;
	default:
		r = mg_ctl_format_error(&k->out, "unknown command");
		break;
	}
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "control: cannot answer uid %u: %s, closing",
		       (unsigned)k->uid, r == MG_ENOMEM ? "out of memory" : "answer too large");
		k->closing = true;
	}
}

/*
 * Answer the complete lines in the input buffer while the client keeps up
 * reading.  Returns true when it stopped because too many answers wait.
 */
static bool conn_process(struct conn *k)
{
	char msg[64], *nl;
	size_t n;

	for (;;) {
		if (k->closing || k->waiting)
			return false;
		if (conn_pending(k) >= CONTROL_OUT_HIGH)
			return true;
		nl = memchr(k->in, '\n', k->in_len);
		if (nl == NULL) {
			if (k->in_len == sizeof(k->in)) {
				(void)snprintf(msg, sizeof(msg),
					       "request too long (more than %d bytes)",
					       MG_CTL_LINE_MAX);
				conn_error(k, msg);
				k->closing = true;
			} else if (k->eof) {
				k->closing = true; /* a partial last line is dropped */
			}
			return false;
		}
		if (k->out.len > CONTROL_OUT_HIGH && conn_compact(k) < 0) {
			k->closing = true;
			return false;
		}
		n = (size_t)(nl - k->in) + 1;
		conn_request(k, k->in, n);
		memmove(k->in, k->in + n, k->in_len - n);
		k->in_len -= n;
	}
}

/* Send what the socket takes now.  Returns -1 when the client is gone. */
static int conn_flush(struct conn *k)
{
	bool progress = false;
	ssize_t n;

	while (conn_pending(k) > 0) {
		/* MSG_NOSIGNAL: a client that went away must not take the daemon down */
		n = send(k->fd, k->out.data + k->out_off, conn_pending(k),
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0)
			return -1;
		k->out_off += (size_t)n;
		progress = true;
	}
	if (conn_pending(k) == 0) {
		mg_buf_reset(&k->out);
		k->out_off = 0;
	}
	if (progress)
		conn_touch(k);
	return 0;
}

static int set_event(struct event *ev, bool *added, bool want)
{
	if (want == *added)
		return 0;
	if ((want ? event_add(ev, NULL) : event_del(ev)) < 0)
		return -1;
	*added = want;
	return 0;
}

/*
 * Advance the connection as far as it goes without blocking, then wait for
 * what it needs next.  May free k: callers must not touch it afterwards.
 */
static void conn_step(struct conn *k)
{
	bool blocked, want_read;

	/*
	 * When the socket took all the answers, lines already in the input
	 * buffer are next: no read event would come for them.
	 */
	do {
		blocked = conn_process(k);
		if (conn_flush(k) < 0)
			goto drop;
	} while (blocked && conn_pending(k) < CONTROL_OUT_HIGH);
	if (k->closing && conn_pending(k) == 0)
		goto drop;
	want_read = !k->closing && !k->eof && conn_pending(k) < CONTROL_OUT_HIGH &&
		    k->in_len < sizeof(k->in);
	if (set_event(k->ev_read, &k->reading, want_read) < 0 ||
	    set_event(k->ev_write, &k->writing, conn_pending(k) > 0) < 0) {
		mg_log(LOG_ERR, NULL, "control: cannot wait on the connection of uid %u, closing",
		       (unsigned)k->uid);
		goto drop;
	}
	return;
drop:
	conn_free(k);
}

static void on_conn_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *k = arg;
	ssize_t n;

	n = recv(fd, k->in + k->in_len, sizeof(k->in) - k->in_len, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		/* ECONNRESET and the like: nobody is left to answer */
		conn_free(k);
		return;
	}
	if (n == 0) {
		k->eof = true;
	} else {
		k->in_len += (size_t)n;
		conn_touch(k);
	}
	conn_step(k);
}

static void on_conn_write(evutil_socket_t fd, short what, void *arg)
{
	conn_step(arg);
}

static void on_conn_idle(evutil_socket_t fd, short what, void *arg)
{
	struct conn *k = arg;

	if (k->waiting) {
		/* our side is slow (the scanner is busy), not the client */
		conn_touch(k);
		return;
	}
	mg_log(LOG_DEBUG, NULL, "control: connection of uid %u idle for %d s, closing",
	       (unsigned)k->uid, CONTROL_IDLE_TIMEOUT_SEC);
	conn_free(k);
}

/* Send one error line on a fresh socket and close it; its buffer is empty, so this never blocks. */
static void refuse(int fd, const char *message)
{
	struct mg_buf b = MG_BUF_INIT(1024);

	if (mg_ctl_format_error(&b, message) == MG_OK)
		(void)send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	mg_buf_release(&b);
	(void)close(fd);
}

/*
 * Root, the daemon's user, or a member of its group: the primary group from
 * SO_PEERCRED, or a supplementary one from SO_PEERGROUPS (Linux 4.13), the
 * groups the peer had when it connected.
 */
static bool peer_allowed(const struct control *c, int fd, const struct ucred *cred)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);

	if (cred->uid == 0 || cred->uid == c->daemon_uid || cred->gid == c->daemon_gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return false; /* too many groups, or an old kernel: primary group only */
	for (size_t i = 0; i < len / sizeof(groups[0]); i++)
		if (groups[i] == c->daemon_gid)
			return true;
	return false;
}

static unsigned conns_of_uid(const struct control *c, uid_t uid)
{
	unsigned n = 0;

	for (const struct conn *k = c->conns; k != NULL; k = k->next)
		n += k->uid == uid;
	return n;
}

/* Check the peer of a new connection and serve it, or refuse it.  Takes fd. */
static void control_admit(struct control *c, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct conn *k;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred)) {
		mg_log(LOG_ERR, NULL, "control: cannot identify the peer: %s, refusing",
		       strerror(errno));
		refuse(fd, "cannot identify the peer");
		return;
	}
	if (!peer_allowed(c, fd, &cred)) {
		mg_log(LOG_WARNING, NULL, "control: access denied to uid %u gid %u (pid %d)",
		       (unsigned)cred.uid, (unsigned)cred.gid, (int)cred.pid);
		refuse(fd, "access denied");
		return;
	}
	if (c->n_conns >= CONTROL_MAX_CONNS) {
		mg_log(LOG_WARNING, NULL, "control: %u connections open, refusing uid %u (pid %d)",
		       c->n_conns, (unsigned)cred.uid, (int)cred.pid);
		refuse(fd, "too many connections");
		return;
	}
	if (conns_of_uid(c, cred.uid) >= CONTROL_MAX_CONNS_PER_UID) {
		mg_log(LOG_WARNING, NULL,
		       "control: uid %u has %d connections open, refusing pid %d",
		       (unsigned)cred.uid, CONTROL_MAX_CONNS_PER_UID, (int)cred.pid);
		refuse(fd, "too many connections from this user");
		return;
	}

	k = calloc(1, sizeof(*k));
	if (k == NULL) {
		mg_log(LOG_ERR, NULL, "control: out of memory, refusing uid %u",
		       (unsigned)cred.uid);
		refuse(fd, "out of memory");
		return;
	}
	/* linked first, so conn_free() can take the half-built connection apart */
	k->c = c;
	k->fd = fd;
	k->id = ++c->next_id;
	k->uid = cred.uid;
	k->gid = cred.gid;
	k->pid = cred.pid;
	k->out = MG_BUF_INIT(CONTROL_OUT_MAX);
	k->next = c->conns;
	if (c->conns != NULL)
		c->conns->prev = k;
	c->conns = k;
	c->n_conns++;
	k->ev_read = event_new(c->base, fd, EV_READ | EV_PERSIST, on_conn_read, k);
	k->ev_write = event_new(c->base, fd, EV_WRITE | EV_PERSIST, on_conn_write, k);
	k->ev_idle = evtimer_new(c->base, on_conn_idle, k);
	if (k->ev_read == NULL || k->ev_write == NULL || k->ev_idle == NULL) {
		mg_log(LOG_ERR, NULL, "control: cannot create events, refusing uid %u",
		       (unsigned)cred.uid);
		conn_free(k);
		return;
	}
	mg_log(LOG_DEBUG, NULL, "control: connection from uid %u (pid %d)", (unsigned)cred.uid,
	       (int)cred.pid);
	conn_touch(k);
	conn_step(k);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	static const struct timeval pause = { .tv_sec = CONTROL_ACCEPT_PAUSE };
	struct control *c = arg;

	for (int i = 0; i < CONTROL_ACCEPT_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			control_admit(c, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		/*
		 * Out of descriptors or memory: the listening socket stays
		 * readable, so stop watching it for a moment instead of spinning.
		 */
		mg_log(LOG_ERR, NULL, "control: cannot accept a connection: %s, will retry",
		       strerror(errno));
		if (event_del(c->ev_accept) < 0 || evtimer_add(c->ev_accept_retry, &pause) < 0)
			mg_log(LOG_ERR, NULL, "control: cannot pause accepting");
		return;
	}
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
	struct control *c = arg;

	if (event_add(c->ev_accept, NULL) < 0)
		mg_log(LOG_ERR, NULL, "control: cannot listen again on '%s'", c->path);
}

static int sys_error(struct mg_err *err, int e, const char *what, const char *path)
{
	int r = mg_err_set(err, MG_ESYS, "control socket '%s': %s: %s", path, what, strerror(e));

	if (err != NULL)
		err->sys_errno = e;
	return r;
}

/*
 * Remove a socket file left behind by a daemon that died, but never one
 * somebody still answers on, and never anything that is not a socket.
 */
static int remove_stale(const struct sockaddr_un *sun, struct mg_err *err)
{
	const char *path = sun->sun_path;
	struct stat st;
	int fd, rc, e;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return MG_OK;
		return sys_error(err, errno, "cannot check it", path);
	}
	if (!S_ISSOCK(st.st_mode))
		return mg_err_set(err, MG_ECONFIG, "control socket '%s' exists and is not a socket",
				  path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return sys_error(err, errno, "cannot create a socket", path);
	rc = connect(fd, (const struct sockaddr *)(const void *)sun, sizeof(*sun));
	e = errno;
	(void)close(fd);
	/* EAGAIN: somebody listens, with a full backlog */
	if (rc == 0 || e == EAGAIN)
		return mg_err_set(err, MG_ECONFIG, "another mailgend is listening on '%s'", path);
	if (e == ENOENT)
		return MG_OK; /* gone meanwhile */
	if (e != ECONNREFUSED)
		return sys_error(err, e, "cannot check whether it is in use", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return sys_error(err, errno, "cannot remove the stale socket", path);
	mg_log(LOG_INFO, NULL, "control: removed the stale socket '%s'", path);
	return MG_OK;
}

struct control *control_new(struct event_base *base, const char *path, uid_t daemon_uid,
			    gid_t daemon_gid, struct daemon *d, struct mg_err *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct control *c = NULL;
	struct stat st;
	mode_t old_mask;
	int rc, e;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		mg_err_set(err, MG_ECONFIG, "control socket '%s': path longer than %zu bytes", path,
			   sizeof(sun.sun_path) - 1);
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		mg_err_set(err, MG_ENOMEM, "control socket '%s': out of memory", path);
		return NULL;
	}
	c->fd = -1;
	c->base = base;
	c->d = d;
	c->daemon_uid = daemon_uid;
	c->daemon_gid = daemon_gid;
	c->path = strdup(path);
	if (c->path == NULL) {
		mg_err_set(err, MG_ENOMEM, "control socket '%s': out of memory", path);
		goto fail;
	}
	if (remove_stale(&sun, err) < 0)
		goto fail;

	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		sys_error(err, errno, "cannot create a socket", path);
		goto fail;
	}
	/* the file appears with mode 0660 at once: there is no window with a wider mode */
	old_mask = umask(0117);
	rc = bind(c->fd, (const struct sockaddr *)(const void *)&sun, sizeof(sun));
	e = errno;
	(void)umask(old_mask);
	if (rc < 0) {
		sys_error(err, e, "cannot bind", path);
		goto fail;
	}
	if (lstat(path, &st) < 0) {
		sys_error(err, errno, "cannot check it after bind", path);
		goto fail;
	}
	c->created = true;
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	if (chmod(path, 0660) < 0) {
		sys_error(err, errno, "cannot set its mode to 0660", path);
		goto fail;
	}
	if (listen(c->fd, CONTROL_BACKLOG) < 0) {
		sys_error(err, errno, "cannot listen", path);
		goto fail;
	}
	c->ev_accept = event_new(base, c->fd, EV_READ | EV_PERSIST, on_accept, c);
	c->ev_accept_retry = evtimer_new(base, on_accept_retry, c);
	if (c->ev_accept == NULL || c->ev_accept_retry == NULL ||
	    event_add(c->ev_accept, NULL) < 0) {
		mg_err_set(err, MG_ENOMEM, "control socket '%s': cannot create its events", path);
		goto fail;
	}
	return c;
fail:
	control_free(c);
	return NULL;
}

void control_answer(struct control *c, uint64_t conn_id, bool ok, const char *text)
{
	struct conn *k;
	int r;

	if (c == NULL)
		return;
	for (k = c->conns; k != NULL && k->id != conn_id; k = k->next)
		;
	if (k == NULL || !k->waiting)
		return; /* the client went away meanwhile */
	k->waiting = false;
	if (ok)
		r = mg_ctl_format_ok_message(&k->out, text);
	else
		r = mg_ctl_format_error(&k->out, text != NULL ? text : "failed");
	if (r < 0) {
		mg_log(LOG_ERR, NULL, "control: cannot answer uid %u: %s, closing",
		       (unsigned)k->uid, r == MG_ENOMEM ? "out of memory" : "answer too large");
		k->closing = true;
	}
	conn_touch(k);
	conn_step(k); /* may free k */
}

void control_free(struct control *c)
{
	struct stat st;

	if (c == NULL)
		return;
	while (c->conns != NULL)
		conn_free(c->conns);
	if (c->ev_accept != NULL)
		event_free(c->ev_accept);
	if (c->ev_accept_retry != NULL)
		event_free(c->ev_accept_retry);
	if (c->fd >= 0)
		(void)close(c->fd);
	/* remove the file only if it is still ours, not a successor's */
	if (c->created && lstat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
		(void)unlink(c->path);
	free(c->path);
	free(c);
}
