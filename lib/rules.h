/* lib/rules.h - format rules: which rule handles a group, postpone decisions, due times */
#ifndef MG_RULES_H
#define MG_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "directive.h"
#include "mg-err.h"
#include "table.h"

/*
 * The declarative replacement for the original's formats/NN_name.py
 * scripts (issue #4; the file format is documented in docs/format-rules.md).
 *
 * A rule set is parsed from the texts of its files: the rule files of the
 * format rules directory (NN_name.json, in name order), the shared
 * variables file (variables.json) and the table formats (tables.json).
 * Reading the directory is the caller's business; everything here is pure.
 *
 * For a group, mg_rules_decide() finds the first rule that matches and
 * says: no rule matches, postponed until a moment, or send with this
 * template, these columns, this placement, these substitutions and these
 * copies.  The decision borrows from the set, so the set must outlive
 * every decision made with it (on reload, free the old set only after the
 * mails in flight are done).
 */

/* One input file: its name (for messages; a rule file's name orders it) and text. */
struct mg_rules_src {
	const char *name;
	const char *text;
	size_t len;
};

struct mg_rules;

/*
 * Parse and validate a whole rule set.  files[0..n_files) are the rule
 * files, sorted by name, each named NN_name.json (two digits, then at least
 * one more character, ".json"; see mg_rules_is_rule_file).  variables and
 * tables may be NULL (no shared variables; only the built-in table
 * "fallback").  Every problem is an error: unknown keys, wrong types,
 * unknown table or variable names, bad globs, durations, addresses or
 * template names.  The message names the file, the JSON path and the
 * problem ("10_shadowserver.json: 'rules[0].postpone.min_directive_age':
 * expected a duration like 900, \"15m\" or \"2h\", got \"soon\""), or
 * file:line:col for a JSON syntax error.  An invalid set is refused as a
 * whole: *ret_set is set only on success.
 *
 * Returns MG_OK, MG_ECONFIG or MG_ENOMEM.  Pure.
 */
int mg_rules_parse(const struct mg_rules_src *files, size_t n_files,
		   const struct mg_rules_src *variables, const struct mg_rules_src *tables,
		   struct mg_rules **ret_set, struct mg_err *err);

/* Free a rule set.  NULL-safe.  Pure. */
void mg_rules_free(struct mg_rules *set);

/*
 * True when a directory entry is a rule file: NN_name.json (two ASCII
 * digits, at least one more character, the suffix ".json", no '/', not
 * starting with '.').  variables.json and tables.json are not.  Pure.
 */
bool mg_rules_is_rule_file(const char *name);

/* How many rules the set holds.  Pure. */
size_t mg_rules_count(const struct mg_rules *set);

/*
 * The template file names the set names statically (rules with "template":
 * "name"), each once, in order of first use; i < n from
 * mg_rules_template_count().  The caller checks that they exist in
 * template_dir at start and on reload.  Borrowed.  Pure.
 */
size_t mg_rules_template_count(const struct mg_rules *set);
const char *mg_rules_template(const struct mg_rules *set, size_t i);

enum mg_rule_verdict {
	MG_RULE_NONE = 0,  /* no rule matches: an error for the group */
	MG_RULE_POSTPONED, /* a rule matched; not before due_at */
	MG_RULE_SEND,	   /* a rule matched and the group is due: send it */
};

/* A copy of the mail to further envelope recipients (To stays unchanged). */
struct mg_rule_copy {
	const char *const *to; /* envelope recipients, n_to of them; borrowed */
	size_t n_to;
	bool attach_csv; /* this copy's placement */
};

/* A rule substitution, expanded for both placements. */
struct mg_rule_subst {
	const char *name;   /* borrowed from the set */
	char *inline_value; /* owned */
	char *attach_value; /* owned */
};

/*
 * What a rule decided for a group.  Pointers into the set are borrowed;
 * subst is owned (release with mg_rule_decision_release).  Only verdict,
 * rule and (for MG_RULE_POSTPONED) due_at and postponed_by are meaningful
 * unless verdict is MG_RULE_SEND, except that the template, table and
 * placement are filled for a postponed group too (for explaining it).
 */
struct mg_rule_decision {
	enum mg_rule_verdict verdict;
	const char *rule; /* "10_shadowserver.json: shadowserver", NULL for NONE */
	/*
	 * The moment every condition holds (<= now for MG_RULE_SEND), and
	 * the condition that holds the group back longest (a static string:
	 * "notification interval", "newest directive age", "observation age",
	 * "retry after a temporary failure"), NULL when nothing does.
	 */
	int64_t due_at;
	const char *postponed_by;
	/*
	 * The template: a file in template_dir (template_name, the directive's
	 * or the rule's), or the rule's inline text (template_text, with
	 * template_name "rule '<name>'" for messages).  Maps onto
	 * struct mg_render_in's template_name/template_text/template_len.
	 */
	const char *template_name;
	bool template_inline;
	const char *template_text; /* NULL unless template_inline */
	size_t template_len;
	/* the table: columns for mg_db_load_events() and mg_render_in.cols */
	const char *table;
	const struct mg_column *cols;
	size_t n_cols;
	bool attach_csv; /* mg_render_in.attach_csv of the mail to the recipient */
	struct mg_rule_subst *subst;
	size_t n_subst;
	struct mg_rule_copy *copies; /* owned array, borrowed contents */
	size_t n_copies;
	const struct mg_rules *set; /* for mg_rule_decision_lookup */
	/*
	 * A decision not made by the rule set (a format plugin's answer,
	 * lib/plugin-api.h) borrows its strings from owner, which
	 * mg_rule_decision_release() frees with owner_free.  NULL for rules.
	 */
	void *owner;
	void (*owner_free)(void *owner);
};

/*
 * Decide for group g at now (usec since the epoch).  The first rule (in
 * file name order, then order in the file) whose match holds decides.  Its
 * postpone conditions each give the moment they hold:
 *   interval:            last_sent + notification_interval + 1 usec (no mail
 *                        sent yet: at once), as mg_group_due_at();
 *   min_directive_age:   inserted_at + age;
 *   min_observation_age: time.observation of the aggregate identifier + age
 *                        (no time.observation key: at once);
 * and due_at is the latest of them, or the group's retry_at if later.  A
 * group with a mail in the outbox (has_outbox) is due at once: that mail
 * was due when it was built.  When due_at <= now the verdict is
 * MG_RULE_SEND and the substitutions are expanded for both placements.
 *
 * Returns MG_OK (verdict in *ret, which the caller releases with
 * mg_rule_decision_release), MG_ENOMEM, or MG_EINPUT when the group's data
 * does not fit the rule (a time.observation that is not a timestamp, a
 * substitution naming a key the aggregate identifier lacks); err then
 * names the rule.  Pure.
 */
int mg_rules_decide(const struct mg_rules *set, const struct mg_group *g, int64_t now,
		    struct mg_rule_decision *ret, struct mg_err *err);

/*
 * The built-in fallback, for a group when there are no rules: the interval
 * rule (mg_group_due_at), the directive's template, the table "fallback"
 * and the placement by suffix, as mailgen-c does without format rules.
 * The verdict is MG_RULE_SEND or MG_RULE_POSTPONED, rule "built-in
 * fallback".  Borrows from g.  Pure.
 */
void mg_rules_decide_fallback(const struct mg_group *g, int64_t now, struct mg_rule_decision *ret);

/*
 * True when field can be a column: an IntelMQ field (lower-case letters,
 * digits, '_' and '.', starting with a letter) or "extra.<key>".  Pure.
 */
bool mg_rules_column_field_ok(const char *field);

/*
 * True when name can be a substitution or variable: a name a template can
 * write ([_a-zA-Z][_a-zA-Z0-9.]*) that the renderer does not set itself
 * (ticket_number, events_as_csv, mail_part, mail_parts).  Pure.
 */
bool mg_rules_subst_name_ok(const char *name);

/* Free what the decision owns and zero it.  NULL-safe.  Pure. */
void mg_rule_decision_release(struct mg_rule_decision *d);

/*
 * The value of substitution name for a mail of the decision with the given
 * placement: the rule's substitutions first, then the shared variables;
 * NULL when neither has it.  The renderer consults it after the aggregate
 * identifier keys and before ticket_number, events_as_csv, mail_part and
 * mail_parts (which no variable or substitution may be named).  Borrowed
 * from the decision and the set.  Pure.
 */
const char *mg_rule_decision_lookup(const struct mg_rule_decision *d, bool attach_csv,
				    const char *name);

/*
 * Match text against a shell-style pattern: '*' any run of bytes, '?' one
 * byte, "[abc]", "[a-z]", "[!a-z]" or "[^a-z]" a set, '\' quotes the next
 * byte.  No special treatment of '/' or a leading '.'.  Bytes, not
 * characters.  The time is O(len(pattern) * len(text)).  A malformed
 * pattern ('[' without ']', '\' at the end) matches nothing;
 * mg_glob_check() finds those.  Pure.
 */
bool mg_glob_match(const char *pattern, const char *text);

/* True when pattern is well-formed for mg_glob_match().  Pure. */
bool mg_glob_check(const char *pattern);

#endif /* MG_RULES_H */
