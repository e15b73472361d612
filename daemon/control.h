/* daemon/control.h - the control socket of mailgend: mailgenctl's requests on the event loop */
#ifndef MG_CONTROL_H
#define MG_CONTROL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "mg-err.h"

/* Where mailgend listens and mailgenctl connects unless told otherwise. */
#define MG_CTL_DEFAULT_SOCKET "/run/mailgen/mailgend.sock"

/* Limits on what clients can hold (STYLE.md "Security"). */
#define CONTROL_MAX_CONNS	  16 /* connections at a time, all users */
#define CONTROL_MAX_CONNS_PER_UID 4  /* connections at a time, per peer uid */
#define CONTROL_IDLE_TIMEOUT_SEC  10 /* a connection without progress is closed */

struct event_base;
struct daemon;
struct control;

/*
 * Listen on the unix socket at path (SOCK_STREAM, mode 0660) and serve
 * control requests (lib/ctl-proto.h) on base, answering them with the
 * daemon_*() functions of daemon/daemon.h on d.
 *
 * A socket file left behind by a dead daemon is replaced: path is removed
 * only when it is a socket and connecting to it fails with ECONNREFUSED.
 * When another process answers on path, this fails with MG_ECONFIG
 * "another mailgend is listening on PATH"; anything else at path that is
 * not a socket is MG_ECONFIG too.  System call failures are MG_ESYS with
 * err->sys_errno set.
 *
 * Peers are identified with SO_PEERCRED and served when their uid is 0 or
 * daemon_uid, or their primary gid is daemon_gid (supplementary groups
 * cannot be seen on the socket); others get {"ok":false,"error":"access
 * denied"} and are disconnected.  The socket file gets the process's
 * effective uid and gid (or the directory's group when it is setgid), so
 * run the daemon with daemon_gid as its primary group.
 *
 * The file is created under a temporary umask(0117); umask is per process,
 * so call this before other threads create files.  The daemon must ignore
 * SIGPIPE (this module also sends with MSG_NOSIGNAL).  Logs through
 * mg_log(): flush/pause/resume/reload requests at LOG_INFO with the peer
 * uid, refused peers at LOG_WARNING.  Main thread only.
 */
struct control *control_new(struct event_base *base, const char *path, uid_t daemon_uid,
			    gid_t daemon_gid, struct daemon *d, struct mg_err *err);

/*
 * Answer a request that the daemon handed on (daemon_failed_request()
 * returned 0 for the connection conn_id): an ok response with text as its
 * message, or an error response with text.  Nothing happens when the
 * connection is gone.  Main thread only; not from inside a daemon_*()
 * callback made by this module.
 */
void control_answer(struct control *c, uint64_t conn_id, bool ok, const char *text);

/*
 * Close all client connections, stop listening and remove the socket file
 * (only if path still names the socket this module created).  NULL-safe.
 * Must not be called from inside a daemon_*() callback made by this module.
 */
void control_free(struct control *c);

#endif /* MG_CONTROL_H */
