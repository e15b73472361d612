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
#include "plugin.h"
#include "rules.h"
#include "workq.h"

#define ACTIONS_MAX 32
#define FIRST_BATCH 4 /* mails in each of a scan's first batches (batch_limit()) */

struct action {
	enum pool_action_kind kind;
	int64_t id;
	unsigned uid;
	uint64_t token;
};

struct pool {
	pthread_mutex_t lock;
	struct action actions[ACTIONS_MAX]; /* under lock */
	size_t n_actions;		    /* under lock */
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
	bool probing;  /* after a failure: one group per scan; under lock */
	bool stopping; /* under lock */
	unsigned busy; /* under lock */
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

void completion_free(struct completion *c)
{
	if (c == NULL)
		return;
	mg_failed_list_release(&c->failed);
	for (size_t i = 0; i < c->n_answers; i++)
		free(c->answers[i].text);
	free(c->answers);
	free(c);
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

/* One of the pool's flags that live under its lock. */
static bool flag(struct pool *p, const bool *f)
{
	bool s;

	pthread_mutex_lock(&p->lock);
	s = *f;
	pthread_mutex_unlock(&p->lock);
	return s;
}

/*
 * A scan in progress ends early when the pool is stopping or held (a
 * back-off discarded the queued batches: groups pushed now would go to
 * the probes in the old scan's order, not outbox mails first).
 */
static bool scan_should_end(struct pool *p)
{
	bool s;

	pthread_mutex_lock(&p->lock);
	s = p->stopping || p->held;
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

static void add_utc(struct mg_buf *b, int64_t usec)
{
	time_t t = (time_t)(usec / 1000000);
	char when[32] = "?";
	struct tm tm;

	if (gmtime_r(&t, &tm) != NULL)
		(void)strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
	(void)mg_buf_adds(b, when);
}

/* The failed and deferred groups, for people ("mailgenctl failed"). */
static int list_failed(PGconn *conn, struct mg_buf *out, struct mg_err *err)
{
	struct mg_failed_list l = { 0 };
	int r;

	r = mg_db_failed_list(conn, POOL_FAILED_LIST_MAX, &l, err);
	if (r < 0)
		return r;
	(void)mg_buf_addf(out, "%zu failed, %zu deferred", l.n_failed, l.n_deferred);
	if (l.n < l.n_failed + l.n_deferred)
		(void)mg_buf_addf(out, " (the first %zu listed)", l.n);
	(void)mg_buf_adds(out, "\n");
	for (size_t i = 0; i < l.n; i++) {
		const struct mg_failed_group *f = &l.items[i];

		(void)mg_buf_addf(out,
				  "\n%lld  %s  %.200s  template %.100s  %zu directives, %d "
				  "attempts\n",
				  (long long)f->id, f->permanent ? "failed" : "deferred",
				  f->recipient_address, f->template_name, f->n_directives,
				  f->attempts);
		(void)mg_buf_adds(out, "    first ");
		add_utc(out, f->first_failed);
		(void)mg_buf_adds(out, ", last ");
		add_utc(out, f->last_failed);
		if (!f->permanent && f->retry_at != 0) {
			(void)mg_buf_adds(out, ", retry at ");
			add_utc(out, f->retry_at);
		}
		(void)mg_buf_addf(out, "\n    %.300s\n", f->reason);
	}
	mg_failed_list_release(&l);
	return MG_OK;
}

/* Carry out one request of an operator; the answer goes to res. */
static void run_action(PGconn *conn, const struct action *a, struct pool_answer *res)
{
	struct mg_buf text = MG_BUF_INIT(POOL_ANSWER_MAX);
	struct mg_err err = { 0 };
	size_t done = 0;
	char who[64];
	int r;

	res->token = a->token;
	(void)snprintf(who, sizeof(who), "mailgenctl (uid %u)", a->uid);
	switch (a->kind) {
	case POOL_LIST:
		r = list_failed(conn, &text, &err);
		break;
	case POOL_RETRY:
		r = mg_db_failed_retry(conn, a->id, &done, &err);
		if (r == MG_OK && done == 0 && a->id != 0)
			r = mg_err_set(&err, MG_EINPUT, "no failed group with id %lld",
				       (long long)a->id);
		if (r == MG_OK) {
			mg_log(LOG_INFO, NULL,
			       "%zu failed groups released for retry (id %lld, asked by uid %u)",
			       done, (long long)a->id, a->uid);
			(void)mg_buf_addf(&text,
					  "%zu failed groups released; they are sent at the "
					  "next scan",
					  done);
		}
		break;
	default:
		r = mg_db_failed_drop(conn, a->id, who, &done, &err);
		if (r == MG_OK) {
			mg_log(LOG_WARNING, NULL,
			       "failed group %lld dropped by uid %u: %zu directives will never be "
			       "mailed",
			       (long long)a->id, a->uid, done);
			(void)mg_buf_addf(&text,
					  "failed group %lld dropped: %zu directives will never be "
					  "mailed",
					  (long long)a->id, done);
		}
		break;
	}
	res->ok = r == MG_OK;
	res->changed = res->ok && a->kind != POOL_LIST;
	if (r < 0) {
		if (a->kind != POOL_LIST && r != MG_EINPUT)
			mg_log(LOG_ERR, NULL, "%s of failed group %lld asked by uid %u: %s",
			       a->kind == POOL_RETRY ? "retry" : "drop", (long long)a->id, a->uid,
			       err.msg);
		res->text = strdup(err.msg);
	} else {
		res->text = mg_buf_detach(&text, NULL);
	}
	mg_buf_release(&text);
}

/* Carry out what operators asked for, and report the answers. */
static void run_actions(struct pool *p, PGconn **conn)
{
	struct action todo[ACTIONS_MAX];
	struct completion *c = completion_new(DONE_ACTIONS);
	struct cfg_ref *ref = current_cfg(p);
	struct mg_err err = { 0 };
	size_t n;
	int r;

	pthread_mutex_lock(&p->lock);
	n = p->n_actions;
	memcpy(todo, p->actions, n * sizeof(todo[0]));
	p->n_actions = 0;
	pthread_mutex_unlock(&p->lock);
	if (n == 0) {
		completion_free(c);
		goto out;
	}
	if (c != NULL)
		c->answers = calloc(n, sizeof(*c->answers));
	if (c == NULL || c->answers == NULL) {
		completion_free(c);
		c = NULL;
		mg_log(LOG_ERR, NULL, "out of memory; %zu control requests not answered", n);
		goto out;
	}
	r = ensure_conn(conn, &ref->cfg, &err);
	for (size_t i = 0; i < n; i++) {
		struct pool_answer *res = &c->answers[c->n_answers++];

		if (r < 0) {
			res->token = todo[i].token;
			res->ok = false;
			res->text = strdup(err.msg);
		} else {
			run_action(*conn, &todo[i], res);
		}
	}
	report(p, c);
out:
	cfg_ref_put(ref);
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

static bool actions_pending(struct pool *p)
{
	bool a;

	pthread_mutex_lock(&p->lock);
	a = p->n_actions > 0;
	pthread_mutex_unlock(&p->lock);
	return a;
}

/*
 * When a scanned group is due: by the format plugins and rules when there
 * are any (a group no rule matches goes to a worker, which puts it into the
 * failed state), else by the interval rule.  The worker asks again after its claim.
 */
static int64_t scan_due_at(const struct mg_config *cfg, const struct mg_group *g, int64_t now)
{
	struct mg_rule_decision d;
	struct mg_err err = { 0 };
	int64_t due = now;

	if (!mg_config_has_formats(cfg))
		return mg_group_due_at(g);
	if (mg_format_decide(cfg, g, now, &d, &err) < 0)
		return now; /* the worker logs it */
	if (d.verdict == MG_RULE_POSTPONED)
		due = d.due_at;
	mg_rule_decision_release(&d);
	return due;
}

/*
 * Hand a batch to the workers (ownership goes with it).  While the queue is
 * full, operators' requests are answered: a scan of a large backlog waits
 * here until the workers have nearly caught up.  Returns false when the
 * queue refused it (stopping, or held).
 */
static bool push_batch(struct pool *p, PGconn **conn, struct batch *b)
{
	enum workq_push_rc rc;

	while ((rc = workq_push(p->q, b)) == WQ_WOKEN)
		run_actions(p, conn);
	if (rc == WQ_PUSHED && actions_pending(p))
		run_actions(p, conn);
	return rc == WQ_PUSHED;
}

/*
 * How many mails the next batch of a scan takes, after n_batches: the
 * first round of batches (one per worker) takes FIRST_BATCH mails, each
 * further round twice as many, up to per (mails_per_session).  A worker
 * signs a batch's mails before it sends the first, so the oldest groups
 * (the scan's order) leave after a few signatures rather than a whole
 * session's: what a burst of notifications wants.  A large backlog
 * reaches full sessions after a few rounds.
 */
static size_t batch_limit(const struct pool *p, size_t per, size_t n_batches)
{
	size_t round = n_batches / p->n_workers, limit = FIRST_BATCH;

	while (round-- > 0 && limit < per)
		limit *= 2;
	return limit < per ? limit : per;
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
	bool ended = false;
	bool probe = flag(p, &p->probing); /* hand out one group (all its parts) only */
	size_t n_batches = 0;		   /* pushed so far in this scan */
	int64_t now, due_at;
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

			if (ended) {
				mg_group_release(g);
				continue;
			}
			/* the parts of a group share its last_sent: all due or none */
			due_at = scan_due_at(cfg, g, now);
			if (due_at > now) {
				if (due_at < c->next_due)
					c->next_due = due_at;
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
			if ((probe || b->n >= batch_limit(p, per, n_batches)) &&
			    g->part == g->n_parts) {
				n_batches++;
				b->probe = probe;
				/* refused when stopping or held: the groups stay pending */
				ended = !push_batch(p, conn, b) || probe || scan_should_end(p);
				b = NULL;
			}
		}
		free(groups);
		groups = NULL;
		if (ended || scan_should_end(p))
			break;
	}
	if (b != NULL && (ended || scan_should_end(p)))
		batch_free(b); /* its groups stay pending for the next scan */
	else if (b != NULL) {
		b->probe = probe;
		(void)push_batch(p, conn, b); /* refused: its groups stay pending */
	}
	b = NULL;
	if (r < 0 && !flag(p, &p->stopping)) {
		c->db_failed = mg_db_broken(*conn) || r == MG_ETEMP;
		(void)snprintf(c->error, sizeof(c->error), "%s", err.msg);
	}
	mg_db_scan_close(*conn);
	if (!mg_db_broken(*conn)) {
		memset(&err, 0, sizeof(err));
		if (mg_db_failed_list(*conn, 0, &c->failed, &err) == MG_OK)
			c->failed_listed = true;
		else
			mg_log(LOG_ERR, NULL, "listing the failed groups: %s", err.msg);
	}
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
		/*
		 * Start a scan only when the previous one's batches are all done;
		 * operators' requests are answered at once.
		 */
		while (!p->stopping && p->n_actions == 0 &&
		       (!p->scan_requested || p->held || p->busy > 0 || workq_length(p->q) > 0))
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stopping) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		if (p->n_actions > 0) {
			pthread_mutex_unlock(&p->lock);
			run_actions(p, &conn);
			continue;
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
	d->deferred = after->deferred - before->deferred;
	d->failed = after->failed - before->failed;
	d->skipped = after->skipped - before->skipped;
	d->directives_sent = after->directives_sent - before->directives_sent;
	d->next_due = INT64_MAX; /* work_batch() takes the minimum over its calls */
	(void)snprintf(d->last_error, sizeof(d->last_error), "%s",
		       d->errors + d->deferred + d->failed > 0 ? after->last_error : "");
}

/*
 * The worker's database connection and mailer (with its gpgme context),
 * made anew after a reload or a lost connection.
 */
static int worker_ready(struct worker *w, struct cfg_ref *ref, struct mg_err *err)
{
	int r;

	if (w->mailer != NULL && w->generation == ref->generation && !mg_db_broken(w->conn))
		return MG_OK;
	worker_reset(w);
	w->ref = cfg_ref_get(ref);
	w->generation = ref->generation;
	r = ensure_conn(&w->conn, &ref->cfg, err);
	if (r == MG_OK)
		r = mg_mailer_new(&ref->cfg, w->conn, false, &w->mailer, err);
	if (r < 0) {
		worker_reset(w);
		return r;
	}
	/* each worker has its own signer: the main thread's log line was for a check */
	if (mg_mailer_sign_method(w->mailer) != NULL)
		mg_log(LOG_DEBUG, NULL, "worker signing through %s",
		       mg_mailer_sign_method(w->mailer));
	return MG_OK;
}

static void work_batch(struct pool *p, struct worker *w, struct batch *b, struct completion *c)
{
	struct cfg_ref *ref = current_cfg(p);
	struct mg_mailer_stats before;
	struct mg_err err = { 0 };
	int64_t next_due = INT64_MAX;
	size_t off = 0;
	int r;

	r = worker_ready(w, ref, &err);
	if (r < 0) {
		c->db_failed = r != MG_ECONFIG;
		(void)snprintf(c->error, sizeof(c->error), "%s", err.msg);
		goto out;
	}
	c->probe = b->probe;
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
			/*
			 * Hold the queue at once, before the main thread hears of
			 * it: a batch taken meanwhile would build new mails (and
			 * draw tickets) for a server that is down.
			 */
			pool_hold(p, true);
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
	struct cfg_ref *ref = current_cfg(p);
	struct mg_err err = { 0 };
	struct batch *b;

	/*
	 * Connect and set up gpgme now, not in the first mail's time (gpgme's
	 * first context costs 10-20 ms); a failure is met again, and
	 * reported, with the first batch.
	 */
	if (worker_ready(&w, ref, &err) < 0)
		mg_log(LOG_DEBUG, NULL, "worker not ready yet: %s", err.msg);
	cfg_ref_put(ref);
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

bool pool_request_action(struct pool *p, enum pool_action_kind kind, int64_t id, unsigned uid,
			 uint64_t token)
{
	bool ok;

	pthread_mutex_lock(&p->lock);
	ok = p->n_actions < ACTIONS_MAX;
	if (ok) {
		p->actions[p->n_actions].kind = kind;
		p->actions[p->n_actions].id = id;
		p->actions[p->n_actions].uid = uid;
		p->actions[p->n_actions].token = token;
		p->n_actions++;
		workq_wake_pusher(p->q); /* a scan waiting for room answers it */
		pthread_cond_broadcast(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	return ok;
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

void pool_probe(struct pool *p, bool on)
{
	pthread_mutex_lock(&p->lock);
	p->probing = on;
	pthread_mutex_unlock(&p->lock);
}

bool pool_end_probe(struct pool *p)
{
	bool was;

	pthread_mutex_lock(&p->lock);
	was = p->probing;
	p->probing = false;
	pthread_mutex_unlock(&p->lock);
	return was;
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
		completion_free(c);
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
