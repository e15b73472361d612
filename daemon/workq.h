/* daemon/workq.h - the bounded queue that hands batches of groups to the workers */
#ifndef MG_WORKQ_H
#define MG_WORKQ_H

#include <stdbool.h>
#include <stddef.h>

#include "directive.h"

/* A batch of groups for one SMTP session.  Owned by exactly one thread at a time. */
struct batch {
	struct mg_group *groups;
	size_t n;
	bool probe; /* the one group a scan hands out after a failure */
	struct batch *next;
};

/* Free a batch and its groups.  NULL-safe. */
void batch_free(struct batch *b);

struct workq;

/* A queue holding at most capacity batches. */
struct workq *workq_new(size_t capacity);

/* Frees batches still queued.  No thread may use it any more.  NULL-safe. */
void workq_free(struct workq *q);

enum workq_push_rc {
	WQ_PUSHED,  /* queued: the queue owns b */
	WQ_REFUSED, /* closed, or held: b was freed */
	WQ_WOKEN,   /* workq_wake_pusher() while full: b is still the caller's */
};

/*
 * Queue a batch, waiting while the queue is full.  Refused once the queue
 * was closed, or while it is held: batches made before a hold would be
 * handed out in a stale order when it ends.  A pusher waiting for room
 * returns WQ_WOKEN when workq_wake_pusher() is called, so that it can do
 * something else and push again.
 */
enum workq_push_rc workq_push(struct workq *q, struct batch *b);

/* Wake a pusher waiting for room (once). */
void workq_wake_pusher(struct workq *q);

/*
 * Take the oldest batch, waiting while the queue is empty or held.
 * Returns NULL once the queue was closed.  The caller owns the batch.
 */
struct batch *workq_pop(struct workq *q);

/* Hold (true) or release (false): while held, workq_pop() waits. */
void workq_hold(struct workq *q, bool hold);

/* Drop every queued batch (their groups stay pending in the database). */
size_t workq_discard(struct workq *q);

/* Number of queued batches. */
size_t workq_length(struct workq *q);

/* Wake every waiter; from now on push fails and pop returns NULL. */
void workq_close(struct workq *q);

#endif /* MG_WORKQ_H */
