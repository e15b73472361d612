/* daemon/workq.c - the bounded queue that hands batches of groups to the workers */
#include <pthread.h>
#include <stdlib.h>

#include "workq.h"

struct workq {
	pthread_mutex_t lock;
	pthread_cond_t not_empty; /* or closed, or released */
	pthread_cond_t not_full;  /* or closed */
	struct batch *head, *tail;
	size_t len, capacity;
	bool held;
	bool closed;
	bool wake; /* workq_wake_pusher() was called */
};

void batch_free(struct batch *b)
{
	if (b == NULL)
		return;
	for (size_t i = 0; i < b->n; i++)
		mg_group_release(&b->groups[i]);
	free(b->groups);
	free(b);
}

struct workq *workq_new(size_t capacity)
{
	struct workq *q = calloc(1, sizeof(*q));

	if (q == NULL)
		return NULL;
	q->capacity = capacity > 0 ? capacity : 1;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	pthread_cond_init(&q->not_full, NULL);
	return q;
}

void workq_free(struct workq *q)
{
	if (q == NULL)
		return;
	(void)workq_discard(q);
	pthread_cond_destroy(&q->not_full);
	pthread_cond_destroy(&q->not_empty);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

enum workq_push_rc workq_push(struct workq *q, struct batch *b)
{
	pthread_mutex_lock(&q->lock);
	while (!q->closed && !q->held && !q->wake && q->len >= q->capacity)
		pthread_cond_wait(&q->not_full, &q->lock);
	if (q->closed || q->held) {
		pthread_mutex_unlock(&q->lock);
		batch_free(b);
		return WQ_REFUSED;
	}
	if (q->wake) {
		q->wake = false;
		if (q->len >= q->capacity) {
			pthread_mutex_unlock(&q->lock);
			return WQ_WOKEN; /* b is still the caller's */
		}
	}
	b->next = NULL;
	if (q->tail != NULL)
		q->tail->next = b;
	else
		q->head = b;
	q->tail = b;
	q->len++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->lock);
	return WQ_PUSHED;
}

void workq_wake_pusher(struct workq *q)
{
	pthread_mutex_lock(&q->lock);
	q->wake = true;
	pthread_cond_broadcast(&q->not_full);
	pthread_mutex_unlock(&q->lock);
}

struct batch *workq_pop(struct workq *q)
{
	struct batch *b;

	pthread_mutex_lock(&q->lock);
	while (!q->closed && (q->head == NULL || q->held))
		pthread_cond_wait(&q->not_empty, &q->lock);
	if (q->closed) {
		pthread_mutex_unlock(&q->lock);
		return NULL;
	}
	b = q->head;
	q->head = b->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->len--;
	b->next = NULL;
	pthread_cond_signal(&q->not_full);
	pthread_mutex_unlock(&q->lock);
	return b;
}

void workq_hold(struct workq *q, bool hold)
{
	pthread_mutex_lock(&q->lock);
	q->held = hold;
	if (!hold)
		pthread_cond_broadcast(&q->not_empty);
	else
		pthread_cond_broadcast(&q->not_full); /* pushers give up */
	pthread_mutex_unlock(&q->lock);
}

size_t workq_discard(struct workq *q)
{
	struct batch *b, *next;
	size_t n;

	pthread_mutex_lock(&q->lock);
	b = q->head;
	n = q->len;
	q->head = q->tail = NULL;
	q->len = 0;
	pthread_cond_broadcast(&q->not_full);
	pthread_mutex_unlock(&q->lock);
	for (; b != NULL; b = next) {
		next = b->next;
		batch_free(b);
	}
	return n;
}

size_t workq_length(struct workq *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->len;
	pthread_mutex_unlock(&q->lock);
	return n;
}

void workq_close(struct workq *q)
{
	pthread_mutex_lock(&q->lock);
	q->closed = true;
	pthread_cond_broadcast(&q->not_empty);
	pthread_cond_broadcast(&q->not_full);
	pthread_mutex_unlock(&q->lock);
}
