/* daemon/pool.h - the scanner thread and the worker threads of mailgend */
#ifndef MG_POOL_H
#define MG_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "config.h"
#include "db.h"
#include "mailer.h"

/* How many failed groups "mailgenctl failed" lists, and the size of its answer. */
#define POOL_FAILED_LIST_MAX 50
#define POOL_ANSWER_MAX	     32768

/* The answer to an operator's request (pool_request_action). */
struct pool_answer {
	uint64_t token; /* as given with the request */
	bool ok;
	char *text;   /* owned; the list, what was done, or the error */
	bool changed; /* a retry or drop changed something: scan again */
};

/*
 * A config shared by the threads: reference-counted, replaced as a whole on
 * reload, never changed in place.
 */
struct cfg_ref {
	struct mg_config cfg;
	atomic_int refs;
	unsigned generation;
};

/* A new reference to a freshly loaded config (takes over *cfg's contents). */
struct cfg_ref *cfg_ref_new(struct mg_config *cfg, unsigned generation);
struct cfg_ref *cfg_ref_get(struct cfg_ref *r);
void cfg_ref_put(struct cfg_ref *r); /* NULL-safe */

/* What a thread reports back to the main thread when it finished something. */
struct completion {
	enum { DONE_SCAN, DONE_BATCH, DONE_ACTIONS } kind;
	struct mg_mailer_stats stats; /* DONE_BATCH: what this batch did */
	uint64_t groups;	      /* DONE_SCAN: pending groups found */
	uint64_t directives;	      /* DONE_SCAN: pending directives found */
	uint64_t due_groups;	      /* DONE_SCAN: of them due now, handed to workers */
	int64_t next_due;	      /* earliest postponed group (usec), INT64_MAX: none */
	bool smtp_failed;	      /* the SMTP server could not be used */
	bool db_failed;		      /* the database could not be used */
	bool probe;		      /* DONE_BATCH: the batch was a probe (pool_probe()) */
	char error[512];	      /* "" or what went wrong */
	struct mg_failed_list failed; /* DONE_SCAN: failed and deferred groups; owned */
	bool failed_listed;	      /* DONE_SCAN: failed is filled in */
	struct pool_answer *answers;  /* DONE_ACTIONS: owned */
	size_t n_answers;
	struct completion *next;
};

/* Called on the main thread for each completion; it must completion_free() it. */
typedef void pool_done_fn(struct completion *c, void *arg);

struct pool;

/* Free a completion and what it owns.  NULL-safe. */
void completion_free(struct completion *c);

/* What an operator asked for (mailgenctl failed/retry/drop). */
enum pool_action_kind { POOL_LIST, POOL_RETRY, POOL_DROP };

/*
 * Queue a request for the scanner thread, which carries it out on its
 * database connection as soon as it is not scanning (and logs retry and
 * drop, naming uid), and reports a DONE_ACTIONS completion whose answer
 * carries token.  POOL_RETRY with id 0 releases all failed groups.
 * Returns false when too many requests wait.
 */
bool pool_request_action(struct pool *p, enum pool_action_kind kind, int64_t id, unsigned uid,
			 uint64_t token);

/*
 * Start the scanner and n_workers workers (each with its own database
 * connection, gpgme context and SMTP sessions), with cfg (a reference is
 * taken).  Completions are delivered on base's loop.
 */
struct pool *pool_new(struct event_base *base, struct cfg_ref *cfg, unsigned n_workers,
		      pool_done_fn *done, void *arg);

/* Ask for a scan; requests made while one is waiting or running merge into one more. */
void pool_request_scan(struct pool *p);

/* Use this config for the next scan and batch (a reference is taken). */
void pool_set_config(struct pool *p, struct cfg_ref *cfg);

/* Stop (true) or restart (false) handing batches to workers; scans wait too. */
void pool_hold(struct pool *p, bool hold);

/*
 * After a failure for everybody (SMTP server or database down), scans hand
 * out one group at a time (outbox mails first), so that while the server
 * stays down only that one mail is built and tried, whatever the number of
 * workers.  pool_end_probe() goes back to full scans and says whether the
 * pool was probing.
 */
void pool_probe(struct pool *p, bool on);
bool pool_end_probe(struct pool *p);

/* Drop every queued batch (the groups stay pending).  Returns how many. */
unsigned pool_discard(struct pool *p);

unsigned pool_busy(struct pool *p);
unsigned pool_size(struct pool *p);
bool pool_scanning(struct pool *p);

/*
 * Stop: no new batch starts, the scanner stops, batches in progress finish
 * (each mail accepted by the server is recorded).  Waits up to timeout_sec
 * for the threads.  Returns false when some did not finish in time.
 */
bool pool_stop(struct pool *p, int timeout_sec);

/* Free after pool_stop().  NULL-safe. */
void pool_free(struct pool *p);

#endif /* MG_POOL_H */
