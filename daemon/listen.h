/* daemon/listen.h - LISTEN for the directives trigger's notifications, on the event loop */
#ifndef MG_LISTEN_H
#define MG_LISTEN_H

#include <stdbool.h>

#include <event2/event.h>

#include "config.h"

/* Called on the loop: count notifications arrived; 0 after a (re)connect, to catch up. */
typedef void listener_notify_fn(void *arg, unsigned count, bool reconnected);

struct listener;

/*
 * Keep a dedicated, non-blocking connection LISTENing on cfg's notify
 * channel: connect with PQconnectStart/PQconnectPoll on the loop,
 * reconnect with back-off when the connection is lost, ping it every
 * daemon.db_ping_seconds (a lost or stuck server is noticed), and never
 * leave it in a transaction.  The config is copied.
 */
struct listener *listener_new(struct event_base *base, const struct mg_config *cfg,
			      listener_notify_fn *notify, void *arg);

/* Use new connection settings: reconnects. */
int listener_reconfigure(struct listener *l, const struct mg_config *cfg);

bool listener_connected(const struct listener *l);

/* NULL-safe. */
void listener_free(struct listener *l);

#endif /* MG_LISTEN_H */
