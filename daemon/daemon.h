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
 * The failed and deferred groups as of the last scan, for people
 * ("mailgenctl failed").  Returns MG_OK or what mg_buf returned.
 */
int daemon_list_failed(struct daemon *d, struct mg_buf *out);

/*
 * Release (drop false; id 0: all) or give up on (drop true) failed group
 * id; carried out by the scanner before its next scan, which is asked for.
 * msg gets the answer for the operator.  Returns MG_OK, MG_EINPUT (an id
 * the last scan did not list) or MG_ETEMP (too many requests waiting).
 */
int daemon_failed_action(struct daemon *d, bool drop, int64_t id, unsigned uid, char *msg,
			 size_t msg_size);

#endif /* MG_DAEMON_H */
