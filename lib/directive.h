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
	int64_t *directive_ids;
	size_t n_directives;
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
