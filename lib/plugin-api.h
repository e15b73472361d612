/* lib/plugin-api.h - format plugins: the answer builder and its conversion to a decision */
#ifndef MG_PLUGIN_API_H
#define MG_PLUGIN_API_H

#include <stdbool.h>
#include <stdint.h>

#include "directive.h"
#include "mailgen-plugin.h"
#include "mg-err.h"
#include "rules.h"

/*
 * The pure half of the plugin interface (include/mailgen-plugin.h): the
 * mg_plugin_* builder functions a plugin calls, the read-only view of a
 * group it gets, and the conversion of its answer into a struct
 * mg_rule_decision, so that the mailer renders a plugin's mail exactly as
 * a rule's.  Loading and calling plugins is lib/plugin.c.
 */

/*
 * A new, empty answer for the plugin named who ("example_plugin.so:
 * example", copied; it becomes the decision's rule) deciding at now.
 * NULL when out of memory.  Pure.
 */
struct mg_plugin_answer *mg_plugin_answer_new(const char *who, int64_t now);

/* Free an answer.  NULL-safe.  Pure. */
void mg_plugin_answer_free(struct mg_plugin_answer *a);

/* The first error a builder call recorded in a, or NULL.  Borrowed.  Pure. */
const char *mg_plugin_answer_error(const struct mg_plugin_answer *a);

/*
 * Fill *view with a read-only view of g at now.  The aggregate pairs go
 * into *ret_kv (malloc'd, n_agg pairs borrowing from g; free() it after
 * the call).  Returns MG_OK or MG_ENOMEM.  Pure.
 */
int mg_plugin_group_view(const struct mg_group *g, int64_t now, struct mg_plugin_group *view,
			 struct mg_plugin_kv **ret_kv, struct mg_err *err);

/*
 * Turn the verdict v of a plugin and its answer a into a decision for g.
 * Takes ownership of a in every case.
 *
 * MG_PLUGIN_NOT_MINE: *ret_mine false, *ret untouched, MG_OK.
 * Otherwise *ret_mine is true and:
 *   MG_PLUGIN_SEND:     MG_RULE_SEND with the answer's template, columns,
 *                       placement and substitutions (defaults as for a
 *                       rule); MG_RULE_POSTPONED instead while the group
 *                       waits for its retry_at after a temporary failure;
 *   MG_PLUGIN_POSTPONE: MG_RULE_POSTPONED until the plugin's moment (or
 *                       the retry_at, if later), postponed_by its reason;
 *                       a group with a mail in the outbox is due at once
 *                       (MG_RULE_SEND), as with rules;
 *   MG_PLUGIN_FAIL, an unknown verdict, or an answer with an error from
 *   a builder call: MG_EINPUT, err naming the plugin.
 * The decision borrows from set (shared variables; may be NULL) and g, and
 * owns the answer: release it with mg_rule_decision_release().
 *
 * Returns MG_OK, MG_EINPUT or MG_ENOMEM.  Pure.
 */
int mg_plugin_answer_decide(struct mg_plugin_answer *a, int v, const struct mg_group *g,
			    int64_t now, const struct mg_rules *set, struct mg_rule_decision *ret,
			    bool *ret_mine, struct mg_err *err);

#endif /* MG_PLUGIN_API_H */
