/* lib/directive.h - the group model: directives that become one mail */
#ifndef MG_DIRECTIVE_H
#define MG_DIRECTIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mg-err.h"

/* One key/value pair of an aggregate identifier ({{"source.asn","64496"}}). */
struct mg_kv {
	char *key;
	char *value;
};

/*
 * Pending directives that share recipient, template, notification format,
 * event data format and aggregate identifier.  Everything is owned by the
 * struct; release with mg_group_release().  Times are microseconds since
 * the epoch.
 */
struct mg_group {
	char *recipient_address;
	char *template_name;
	char *notification_format;
	char *event_data_format;
	char *aggregate_literal; /* the text[] as PostgreSQL printed it, for queries */
	struct mg_kv *agg;	 /* parsed aggregate identifier */
	size_t n_agg;
	int64_t *directive_ids; /* ascending */
	size_t n_directives;
	/*
	 * The events_id of each directive, aligned with directive_ids, as the
	 * scan returns them (mg_group_split needs them); NULL when not known,
	 * as after mg_db_claim().
	 */
	int64_t *directive_events;
	int64_t *event_ids; /* distinct, ascending */
	size_t n_events;
	int64_t inserted_at;  /* newest directive */
	int64_t interval_sec; /* longest notification_interval */
	int64_t last_sent;    /* last mail for the same keys */
	bool has_last_sent;
	/*
	 * From mailgen-c's own tables (sql/notifications.sql): a mail of the
	 * group is waiting in mailgen_outbox (sent again as it is, whatever
	 * the interval says), and the group's deferral after a temporary
	 * failure (retry_at in usec, 0: none; attempts so far).
	 */
	bool has_outbox;
	int64_t retry_at;
	int attempts;
	/*
	 * Which mail of a group split by delivery.max_events_per_mail this is:
	 * part 1..n_parts.  0 and 0 for a group that was not split.
	 */
	size_t part, n_parts;
};

/* Free what the group owns and zero it.  NULL-safe.  Pure. */
void mg_group_release(struct mg_group *g);

/*
 * Parse a PostgreSQL text[][] literal as printed by the server
 * ('{{source.asn,64496},{time.observation,"2026-11-26 06:00:00+00"}}', or
 * '{}' for none) into key/value pairs.  Quoted elements with backslash
 * escapes are handled; NULL elements and arrays that are not N x 2 are
 * MG_EINPUT.  On success *ret_kv (malloc'd, release with mg_kv_free) and
 * *ret_n are set.  Pure.
 */
int mg_pgarray_parse_pairs(const char *lit, struct mg_kv **ret_kv, size_t *ret_n,
			   struct mg_err *err);

/* Free an array of n pairs.  NULL-safe.  Pure. */
void mg_kv_free(struct mg_kv *kv, size_t n);

/*
 * Parse a PostgreSQL bigint[] literal ("{1,2,3}") into a malloc'd array.
 * Pure.
 */
int mg_pgarray_parse_ids(const char *lit, int64_t **ret_ids, size_t *ret_n, struct mg_err *err);

/*
 * Set g->event_ids to the distinct event ids of g->directive_events
 * (n_directives of them), ascending.  Returns MG_OK or MG_ENOMEM.  Pure.
 */
int mg_group_collect_events(struct mg_group *g, struct mg_err *err);

/*
 * Split g into parts of at most max directives each, in the order of
 * directive_ids (which must be ascending): part k takes the k-th run of max
 * directives and the distinct events of those directives.  Every part
 * carries g's keys, aggregate identifier, times and interval, its own
 * directive_ids, directive_events and event_ids, and part/n_parts (1-based).
 * Every directive of g lands in exactly one part: nothing is dropped.  g
 * itself is not changed.  A group within the cap gives one part (1 of 1);
 * max 0 means no cap.
 *
 * On success *ret_parts is a malloc'd array of *ret_n parts (release each
 * with mg_group_release and free the array).  Returns MG_ENOMEM, or
 * MG_EINPUT when g has no directive_events or its directive ids are not
 * ascending.  Pure.
 */
int mg_group_split(const struct mg_group *g, size_t max, struct mg_group **ret_parts, size_t *ret_n,
		   struct mg_err *err);

/*
 * Replace groups[0..n) by the same groups with every one of more than max
 * directives split by mg_group_split(); the parts of a group follow each
 * other.  Takes over what groups[0..n) own in every case (the caller only
 * frees the array): on failure everything is released (the directives
 * stay pending in the database, so the next scan finds them) and
 * *ret_groups is NULL.  max 0 means no cap.  Pure.
 */
int mg_groups_split(struct mg_group *groups, size_t n, size_t max, struct mg_group **ret_groups,
		    size_t *ret_n, struct mg_err *err);

/*
 * How many of g[0..n) must go into the same mg_mailer_process() call as
 * g[0]: g[0] and the parts that follow it when g[0] is a part of a split
 * group (1 for a group that was not split; at least 1 when n > 0).  Pure.
 */
size_t mg_group_span(const struct mg_group *g, size_t n);

/* The value of key in the aggregate identifier, or NULL.  Borrowed.  Pure. */
const char *mg_group_agg(const struct mg_group *g, const char *key);

/*
 * When the group may be sent, by the interval rule of the original's
 * notification_interval_exceeded(): it is due when no mail for its keys
 * was sent yet, or when last_sent + interval < now.  A group with a mail
 * in the outbox is due at once (that mail was due when it was built); a
 * deferred group not before its retry_at.  Returns the moment it becomes
 * due (<= now: due now).  Pure.
 */
int64_t mg_group_due_at(const struct mg_group *g);

/* True when the group may be sent at now (see mg_group_due_at).  Pure. */
bool mg_group_is_due(const struct mg_group *g, int64_t now);

#endif /* MG_DIRECTIVE_H */
