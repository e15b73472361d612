/* daemon/daemon.h - what the main-thread modules of mailgend offer each other */
#ifndef MG_DAEMON_H
#define MG_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl-proto.h"
#include "mg-buf.h"

struct daemon;

/*
 * The daemon's answers to control requests.  All of them run on the main
 * thread (the event loop) and never block.
 */

/* Fill in the current status. */
void daemon_get_status(struct daemon *d, struct mg_ctl_status *st);

/* Scan now, skipping the debounce. */
void daemon_flush(struct daemon *d);

/* Stop (true) or restart (false) handing new groups to the workers. */
void daemon_set_paused(struct daemon *d, bool paused);

/*
 * Re-read config and templates.  On failure the old config stays in force
 * and msg says why.  Returns 0 or a negative mg_rc.
 */
int daemon_reload(struct daemon *d, char *msg, size_t msg_size);

/*
 * An operator's failed, retry or drop request (id: the failed group; 0 with
 * retry: all).  Returns 0 when it was handed on: the answer comes later
 * through control_answer() with token.  Returns 1 when msg holds the
 * answer now, or a negative mg_rc with msg saying why it was refused.
 */
int daemon_failed_request(struct daemon *d, enum mg_ctl_cmd cmd, int64_t id, unsigned uid,
			  uint64_t token, char *msg, size_t msg_size);

#endif /* MG_DAEMON_H */
