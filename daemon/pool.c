/* daemon/pool.c - the scanner thread and the worker threads of mailgend */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "pool.h"
#include "workq.h"

struct pool {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* scan requested, batch finished, thread exited, stop */
	struct cfg_ref *cfg; /* under lock */
	struct workq *q;
	struct event *ev_done;
	pool_done_fn *done;
	void *done_arg;
	struct completion *done_head, *done_tail; /* under lock */
	bool scan_requested;			  /* under lock */
	bool scanning;				  /* under lock */
	bool held;				  /* under lock */
	bool stopping;				  /* under lock */
	unsigned busy;				  /* under lock */
	unsigned n_workers;
	unsigned running; /* threads not yet exited; under lock */
	pthread_t *threads;
	bool *started;
	pthread_t scanner;
	bool scanner_started;
};

struct cfg_ref *cfg_ref_new(struct mg_config *cfg, unsigned generation)
{
	struct cfg_ref *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	atomic_init(&r->refs, 1);
	r->generation = generation;
	return r;
}

struct cfg_ref *cfg_ref_get(struct cfg_ref *r)
{
	atomic_fetch_add(&r->refs, 1);
	return r;
}

void cfg_ref_put(struct cfg_ref *r)
{
	if (r == NULL || atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	mg_config_release(&r->cfg);
	free(r);
}

static struct cfg_ref *current_cfg(struct pool *p)
{
	struct cfg_ref *r;

	pthread_mutex_lock(&p->lock);
	r = cfg_ref_get(p->cfg);
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* Hand a completion to the main thread (thread-safe: libevent uses pthreads locks). */
static void report(struct pool *p, struct completion *c)
{
	pthread_mutex_lock(&p->lock);
	c->next = NULL;
	if (p->done_tail != NULL)
		p->done_tail->next = c;
	else
		p->done_head = c;
	p->done_tail = c;
	pthread_mutex_unlock(&p->lock);
	event_active(p->ev_done, EV_READ, 0);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct pool *p = arg;
	struct completion *c, *next;

	pthread_mutex_lock(&p->lock);
	c = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->lock);
	for (; c != NULL; c = next) {
		next = c->next;
		p->done(c, p->done_arg); /* frees c */
	}
}

static struct completion *completion_new(int kind)
{
	struct completion *c = calloc(1, sizeof(*c));

	if (c != NULL) {
		c->kind = kind;
		c->next_due = INT64_MAX;
		c->stats.next_due = INT64_MAX;
	}
	return c;
}

/* (Re)connect when there is no usable connection. */
static int ensure_conn(PGconn **conn, const struct mg_config *cfg, struct mg_err *err)
{
	if (*conn != NULL && !mg_db_broken(*conn))
		return MG_OK;
	PQfinish(*conn);
	*conn = NULL;
	return mg_db_connect(cfg, "mailgend", conn, err);
}

static bool should_stop(struct pool *p)
{
	bool s;

	pthread_mutex_lock(&p->lock);
	s = p->stopping;
	pthread_mutex_unlock(&p->lock);
	return s;
}

static void thread_exit(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->running--;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/*
 * Move g into batch *b (a new one when NULL, *cap its capacity), growing it
 * as needed.  False when out of memory: then g is still the caller's and a
 * part of its group already in *b stays there (the mailer sends it, and
 * the rest of the group after the notification interval).
 */
static bool batch_add(struct batch **b, size_t *cap, struct mg_group *g)
{
	struct mg_group *grown;

	if (*b == NULL) {
		*b = calloc(1, sizeof(**b));
		if (*b == NULL)
			return false;
		*cap = 0;
	}
	if ((*b)->n == *cap) {
		size_t want = *cap == 0 ? 16 : 2 * *cap;

		grown = realloc((*b)->groups, want * sizeof(*grown));
		if (grown == NULL)
			return false;
		(*b)->groups = grown;
		*cap = want;
	}
	(*b)->groups[(*b)->n++] = *g; /* moved */
	memset(g, 0, sizeof(*g));
	return true;
}

/*
 * One scan: read the pending groups in chunks, hand the due ones to the
 * workers in batches of one SMTP session, and note when the earliest
 * postponed one becomes due.  Workers claim and check again, so a group
 * that changed meanwhile is handled right.
 */
static void scan_once(struct pool *p, PGconn **conn, struct completion *c)
{
	struct cfg_ref *ref = current_cfg(p);
	const struct mg_config *cfg = &ref->cfg;
	size_t per = (size_t)cfg->mails_per_session;
	struct mg_group *groups = NULL, *fetched = NULL;
	struct batch *b = NULL;
	struct mg_err err = { 0 };
	struct timespec ts;
	size_t n = 0, cap = 0;
	int64_t now;
	int r;

	r = ensure_conn(conn, cfg, &err);
	if (r < 0) {
		c->db_failed = true;
		(void)snprintf(c->error, sizeof(c->error), "%s", err.msg);
		goto out;
	}
	r = mg_db_scan_open(*conn, cfg->additional_directive_where, &err);
	for (; r == MG_OK;) {
		r = mg_db_scan_fetch(*conn, per, &fetched, &n, &err);
		if (r < 0 || n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			c->groups++;
			c->directives += fetched[i].n_directives;
		}
		/* a group over delivery.max_events_per_mail becomes several mails */
		r = mg_groups_split(fetched, n, (size_t)cfg->max_events_per_mail, &groups, &n,
				    &err);
		free(fetched);
		fetched = NULL;
		if (r < 0) {
			mg_log(LOG_ERR, NULL, "splitting large groups: %s; they stay pending",
			       err.msg);
			r = MG_OK; /* the next scan tries again */
			continue;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
		for (size_t i = 0; i < n; i++) {
			struct mg_group *g = &groups[i];

			/* the parts of a group share its last_sent: all due or none */
			if (!mg_group_is_due(g, now)) {
				if (mg_group_due_at(g) < c->next_due)
					c->next_due = mg_group_due_at(g);
				mg_group_release(g);
				continue;
			}
			if (g->part <= 1)
				c->due_groups++;
			if (!batch_add(&b, &cap, g)) {
				mg_group_release(g);
				continue; /* stays pending: the next scan finds it */
			}
			g = &b->groups[b->n - 1]; /* moved there */
			/*
			 * A batch is one SMTP session, but the parts of a split group
			 * stay in one batch however many they are: the mailer must
			 * claim them all before it sends the first (mailer.h).
			 */
			if (b->n >= per && g->part == g->n_parts) {
				if (!workq_push(p->q, b))
					r = MG_ETEMP; /* closed: stopping */
				b = NULL;
			}
		}
		free(groups);
		groups = NULL;
		if (should_stop(p))
			break;
	}
	if (b != NULL) {
		(void)workq_push(p->q, b);
		b = NULL;
	}
	if (r < 0 && !should_stop(p)) {
		c->db_failed = mg_db_broken(*conn) || r == MG_ETEMP;
		(void)snprintf(c->error, sizeof(c->error), "%s", err.msg);
	}
	mg_db_scan_close(*conn);
out:
	cfg_ref_put(ref);
}

static void *scanner_main(void *arg)
{
	struct pool *p = arg;
	PGconn *conn = NULL;

	for (;;) {
		struct completion *c;

		pthread_mutex_lock(&p->lock);
		/* start a scan only when the previous one's batches are all done */
		while (!p->stopping &&
		       (!p->scan_requested || p->held || p->busy > 0 || workq_length(p->q) > 0))
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stopping) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		p->scan_requested = false;
		p->scanning = true;
		pthread_mutex_unlock(&p->lock);

		c = completion_new(DONE_SCAN);
		if (c != NULL) {
			scan_once(p, &conn, c);
			report(p, c);
		}
		pthread_mutex_lock(&p->lock);
		p->scanning = false;
		pthread_mutex_unlock(&p->lock);
	}
	PQfinish(conn);
	thread_exit(p);
	return NULL;
}

struct worker {
	PGconn *conn;
	struct mg_mailer *mailer;
	unsigned generation; /* of the config the mailer was made with */
	struct cfg_ref *ref;
	bool smtp_proven; /* the last session delivered: use full sessions */
};

static void worker_reset(struct worker *w)
{
	mg_mailer_free(w->mailer);
	w->mailer = NULL;
	PQfinish(w->conn);
	w->conn = NULL;
	cfg_ref_put(w->ref);
	w->ref = NULL;
}

static void stats_delta(struct mg_mailer_stats *d, const struct mg_mailer_stats *after,
			const struct mg_mailer_stats *before)
{
	d->sent = after->sent - before->sent;
	d->postponed = after->postponed - before->postponed;
	d->errors = after->errors - before->errors;
	d->skipped = after->skipped - before->skipped;
	d->directives_sent = after->directives_sent - before->directives_sent;
	d->next_due = INT64_MAX; /* work_batch() takes the minimum over its calls */
	(void)snprintf(d->last_error, sizeof(d->last_error), "%s",
		       d->errors > 0 ? after->last_error : "");
}

static void work_batch(struct pool *p, struct worker *w, struct batch *b, struct completion *c)
{
	struct cfg_ref *ref = current_cfg(p);
	struct mg_mailer_stats before;
	struct mg_err err = { 0 };
	int64_t next_due = INT64_MAX;
	size_t off = 0;
	int r;

	if (w->mailer == NULL || w->generation != ref->generation || mg_db_broken(w->conn)) {
		worker_reset(w);
		w->ref = cfg_ref_get(ref);
		w->generation = ref->generation;
		r = ensure_conn(&w->conn, &ref->cfg, &err);
		if (r == MG_OK)
			r = mg_mailer_new(&ref->cfg, w->conn, false, &w->mailer, &err);
		if (r < 0) {
			c->db_failed = r != MG_ECONFIG;
			(void)snprintf(c->error, sizeof(c->error), "%s", err.msg);
			worker_reset(w);
			goto out;
		}
	}
	before = *mg_mailer_stats(w->mailer);
	/*
	 * After a failure, probe with a single group (all parts of a split one,
	 * which must not be separated) before sending whole sessions.
	 */
	while (off < b->n) {
		size_t k = w->smtp_proven ? b->n - off : mg_group_span(b->groups + off, b->n - off);

		r = mg_mailer_process(w->mailer, b->groups + off, k);
		if (mg_mailer_stats(w->mailer)->next_due < next_due)
			next_due = mg_mailer_stats(w->mailer)->next_due;
		if (r < 0) {
			if (mg_db_broken(w->conn)) {
				c->db_failed = true;
				(void)snprintf(c->error, sizeof(c->error), "%s",
					       "database connection lost");
			} else {
				c->smtp_failed = true;
				(void)snprintf(c->error, sizeof(c->error), "%s",
					       "SMTP server not usable");
			}
			w->smtp_proven = false;
			break;
		}
		if (mg_mailer_stats(w->mailer)->sent > before.sent)
			w->smtp_proven = true;
		off += k;
	}
	stats_delta(&c->stats, mg_mailer_stats(w->mailer), &before);
	c->stats.next_due = next_due;
	c->next_due = next_due;
	if (c->error[0] == '\0' && c->stats.last_error[0] != '\0')
		(void)snprintf(c->error, sizeof(c->error), "%s", c->stats.last_error);
out:
	cfg_ref_put(ref);
}

static void *worker_main(void *arg)
{
	struct pool *p = arg;
	struct worker w = { 0 };
	struct batch *b;

	while ((b = workq_pop(p->q)) != NULL) {
		struct completion *c = completion_new(DONE_BATCH);

		pthread_mutex_lock(&p->lock);
		p->busy++;
		pthread_mutex_unlock(&p->lock);
		if (c != NULL) {
			work_batch(p, &w, b, c);
			report(p, c);
		}
		batch_free(b);
		pthread_mutex_lock(&p->lock);
		p->busy--;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
	}
	worker_reset(&w);
	thread_exit(p);
	return NULL;
}

struct pool *pool_new(struct event_base *base, struct cfg_ref *cfg, unsigned n_workers,
		      pool_done_fn *done, void *arg)
{
	struct pool *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->cfg = cfg_ref_get(cfg);
	p->done = done;
	p->done_arg = arg;
	p->n_workers = n_workers;
	p->q = workq_new(2 * (size_t)n_workers);
	p->ev_done = event_new(base, -1, 0, on_done, p);
	p->threads = calloc(n_workers, sizeof(*p->threads));
	p->started = calloc(n_workers, sizeof(*p->started));
	if (p->q == NULL || p->ev_done == NULL || p->threads == NULL || p->started == NULL)
		goto fail;
	for (unsigned i = 0; i < n_workers; i++) {
		if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
			goto fail;
		p->started[i] = true;
		pthread_mutex_lock(&p->lock);
		p->running++;
		pthread_mutex_unlock(&p->lock);
	}
	if (pthread_create(&p->scanner, NULL, scanner_main, p) != 0)
		goto fail;
	p->scanner_started = true;
	pthread_mutex_lock(&p->lock);
	p->running++;
	pthread_mutex_unlock(&p->lock);
	return p;
fail:
	(void)pool_stop(p, 60);
	pool_free(p);
	return NULL;
}

void pool_request_scan(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->scan_requested = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void pool_set_config(struct pool *p, struct cfg_ref *cfg)
{
	struct cfg_ref *old;

	pthread_mutex_lock(&p->lock);
	old = p->cfg;
	p->cfg = cfg_ref_get(cfg);
	pthread_mutex_unlock(&p->lock);
	cfg_ref_put(old);
}

void pool_hold(struct pool *p, bool hold)
{
	workq_hold(p->q, hold);
	pthread_mutex_lock(&p->lock);
	p->held = hold;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

unsigned pool_discard(struct pool *p)
{
	unsigned n = (unsigned)workq_discard(p->q);

	pthread_mutex_lock(&p->lock);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return n;
}

unsigned pool_busy(struct pool *p)
{
	unsigned n;

	pthread_mutex_lock(&p->lock);
	n = p->busy;
	pthread_mutex_unlock(&p->lock);
	return n;
}

unsigned pool_size(struct pool *p)
{
	return p->n_workers;
}

bool pool_scanning(struct pool *p)
{
	bool s;

	pthread_mutex_lock(&p->lock);
	s = p->scanning || p->scan_requested;
	pthread_mutex_unlock(&p->lock);
	return s;
}

bool pool_stop(struct pool *p, int timeout_sec)
{
	struct timespec deadline;
	bool all = true;

	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (p->q != NULL) {
		(void)workq_discard(p->q);
		workq_close(p->q);
	}
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_sec;
	pthread_mutex_lock(&p->lock);
	while (p->running > 0) {
		if (pthread_cond_timedwait(&p->cond, &p->lock, &deadline) == ETIMEDOUT) {
			all = false;
			break;
		}
	}
	pthread_mutex_unlock(&p->lock);
	if (!all)
		return false; /* threads still sending: the process exits around them */
	for (unsigned i = 0; i < p->n_workers; i++)
		if (p->started != NULL && p->started[i])
			pthread_join(p->threads[i], NULL);
	if (p->scanner_started)
		pthread_join(p->scanner, NULL);
	p->n_workers = 0;
	p->scanner_started = false;
	return true;
}

void pool_free(struct pool *p)
{
	struct completion *c, *next;

	if (p == NULL)
		return;
	for (c = p->done_head; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	if (p->ev_done != NULL)
		event_free(p->ev_done);
	workq_free(p->q);
	cfg_ref_put(p->cfg);
	free(p->threads);
	free(p->started);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
