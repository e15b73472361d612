/* include/mailgen-plugin.h - the C plugin interface of the format rules (issue #4) */
#ifndef MAILGEN_PLUGIN_H
#define MAILGEN_PLUGIN_H

/*
 * A format plugin decides, like a format rule, *how* a group of directives
 * becomes mail, for logic that the declarative rule files cannot express
 * (docs/format-rules.md, "Plugins").  It is a shared object in the
 * directory named by the configuration key format_plugin_dir, loaded by
 * mailgend and intelmqcbmail at start (a reload does not load plugins
 * again: restart to change them).
 *
 * Plugins are TRUSTED CODE: they run inside the daemon with its
 * privileges and see every group.  The directory and every *.so file in it
 * must be owned by root (or the user the program runs as) and writable by
 * nobody else; the loader refuses anything else.
 *
 * A plugin exports one data symbol, MG_PLUGIN_SYMBOL ("mailgen_plugin"):
 *
 *	#include <mailgen-plugin.h>
 *
 *	static enum mg_plugin_verdict decide(void *state, const struct mg_plugin_group *g,
 *					     struct mg_plugin_answer *a)
 *	{
 *		if (strcmp(g->notification_format, "mine") != 0)
 *			return MG_PLUGIN_NOT_MINE;
 *		mg_plugin_add_column(a, "source.ip", "ip");
 *		return MG_PLUGIN_SEND;
 *	}
 *
 *	const struct mg_plugin mailgen_plugin = {
 *		.abi_version = MG_PLUGIN_ABI_VERSION,
 *		.name = "mine",
 *		.decide = decide,
 *	};
 *
 * and is built with
 *
 *	cc -shared -fPIC -I/usr/local/include/mailgen -o mine.so mine.c
 *
 * The mg_plugin_* functions below are provided by the program that loads
 * the plugin (mailgend, intelmqcbmail): do not link against anything.
 *
 * Order: the plugins are asked first, in file name order (byte order of
 * the names); the first that does not answer MG_PLUGIN_NOT_MINE decides.
 * When all say "not mine", the format rules decide (format_rules_dir), and
 * without rules the built-in fallback (the interval rule, the eight
 * fallback columns, the directive's template).
 *
 * Threads: decide() is called from the scanner thread of mailgend and
 * from its worker threads.  Unless the plugin sets MG_PLUGIN_REENTRANT in
 * flags, the loader serialises all calls into one plugin with a mutex, so
 * decide() needs no locking of its own (but holds up the others while it
 * runs: keep it quick, and do no blocking I/O in it).  With
 * MG_PLUGIN_REENTRANT, decide() may run in several threads at once and
 * must be reentrant.  init() and fini() run once, alone, in the main
 * thread.
 *
 * Ownership: everything passed to the plugin is borrowed and valid only
 * during the call; the plugin must not keep pointers to it.  Every string
 * handed to an mg_plugin_* function is copied; the plugin keeps ownership
 * of its own memory.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The version of this interface.  The loader refuses a plugin whose
 * abi_version differs from the version it was built with; any change to
 * the structs or functions of this header increments it.
 */
#define MG_PLUGIN_ABI_VERSION 1

/* The name of the data symbol a plugin exports (a const struct mg_plugin). */
#define MG_PLUGIN_SYMBOL "mailgen_plugin"

/* One key/value pair of a group's aggregate identifier ("source.asn", "64496"). */
struct mg_plugin_kv {
	const char *key;
	const char *value;
};

/*
 * The group being decided: pending directives that share the five keys
 * (recipient address, template name, notification format, event data
 * format, aggregate identifier).  Read-only and borrowed; times are
 * microseconds since the epoch (UTC).
 */
struct mg_plugin_group {
	const char *recipient_address;
	const char *template_name;
	const char *notification_format;
	const char *event_data_format;
	const struct mg_plugin_kv *aggregate; /* n_aggregate pairs, in the stored order */
	size_t n_aggregate;
	size_t n_directives;
	int64_t inserted_at;  /* the newest directive's inserted_at */
	bool has_last_sent;   /* a mail for the same keys was sent before ... */
	int64_t last_sent;    /* ... at this moment (0 when not) */
	int64_t interval_sec; /* the longest notification_interval, in seconds */
	int64_t now;	      /* the moment of the decision: compare times with this */
};

/* What decide() answers. */
enum mg_plugin_verdict {
	MG_PLUGIN_NOT_MINE = 0, /* ask the next plugin, then the rules, then the fallback */
	MG_PLUGIN_POSTPONE = 1, /* not yet: see mg_plugin_postpone() */
	MG_PLUGIN_SEND = 2,	/* mail it now, as the answer says */
	MG_PLUGIN_FAIL = 3,	/* the group fails: see mg_plugin_fail() */
};

/* mg_plugin.flags */
enum {
	MG_PLUGIN_REENTRANT = 1u << 0, /* decide() may run in several threads at once */
};

/* Where the CSV of the events goes (mg_plugin_set_placement()). */
enum mg_plugin_placement {
	MG_PLUGIN_BY_SUFFIX = 0,  /* attached when event_data_format ends in "_csv_attachment" */
	MG_PLUGIN_INLINE = 1,	  /* in the text, as ${events_as_csv} */
	MG_PLUGIN_ATTACHMENT = 2, /* as events.csv */
};

/* The answer under construction: opaque, owned by the loader. */
struct mg_plugin_answer;

/*
 * What a plugin exports as MG_PLUGIN_SYMBOL.  abi_version must stay the
 * first member in every version: the loader reads it before anything else.
 */
struct mg_plugin {
	uint32_t abi_version; /* MG_PLUGIN_ABI_VERSION */
	uint32_t flags;	      /* MG_PLUGIN_REENTRANT or 0 */
	/* a short name for messages and decisions: 1..64 of [A-Za-z0-9._-] */
	const char *name;
	/*
	 * Optional: called once after loading.  Set *ret_state (passed to
	 * decide() and fini()) and return 0, or write a message of at most
	 * msg_size bytes (NUL included) to msg and return non-zero: the
	 * program then refuses to start.
	 */
	int (*init)(void **ret_state, char *msg, size_t msg_size);
	/*
	 * Required: decide for group g.  Return MG_PLUGIN_NOT_MINE, or build
	 * the answer with the mg_plugin_* calls below and return the verdict:
	 * MG_PLUGIN_SEND (the template, table, placement and substitutions
	 * given, defaults for the rest), or the value of mg_plugin_postpone()
	 * or mg_plugin_fail().
	 */
	enum mg_plugin_verdict (*decide)(void *state, const struct mg_plugin_group *g,
					 struct mg_plugin_answer *a);
	/* Optional: called once before unloading (at exit). */
	void (*fini)(void *state);
};

/*
 * The builder.  Each call returns 0, or -1 when its arguments are invalid
 * or memory ran out; the first such error is kept in the answer, and an
 * answer with an error is not used: the group fails with a message
 * naming the plugin and the error (so a plugin may ignore the return
 * values).  None of them may be called after decide() returned.
 *
 * Defaults for MG_PLUGIN_SEND, as for a rule: the directive's
 * template_name, the eight fallback columns when no column was added,
 * MG_PLUGIN_BY_SUFFIX, no substitutions besides the shared variables of
 * the rule set (variables.json) when there is one.
 */

/*
 * The template: a file name in template_dir (no "/", not "." or "..", no
 * control characters, at most 255 bytes), or the text of a template
 * (first non-empty line the subject, then the body; ${name}
 * placeholders as in template files), at most 1 MiB.  The last call wins.
 */
int mg_plugin_set_template(struct mg_plugin_answer *a, const char *file_name);
int mg_plugin_set_template_text(struct mg_plugin_answer *a, const char *text);

/*
 * Add a column to the table (in order; at most 200): field is an IntelMQ
 * field ("source.ip": lower-case letters, digits, '_' and '.') or a key of
 * the extra JSON ("extra.system_desc"); title is the header-row title
 * (1..256 bytes, no control characters).  Same meaning as a column of a
 * table format in tables.json.
 */
int mg_plugin_add_column(struct mg_plugin_answer *a, const char *field, const char *title);

/* Where the CSV goes (enum mg_plugin_placement). */
int mg_plugin_set_placement(struct mg_plugin_answer *a, enum mg_plugin_placement placement);

/*
 * A substitution for the template: ${name} becomes inline_value in a mail
 * with the CSV inline and attach_value in one with the CSV attached
 * (attach_value NULL: inline_value in both).  name is [_A-Za-z][_A-Za-z0-9.]*
 * and not ticket_number, events_as_csv, mail_part or mail_parts; values
 * are literal text (not expanded again), at most 64 KiB each.  Setting a
 * name again replaces it; at most 1,000 names.  Substitutions win over
 * keys of the aggregate identifier and the shared variables.
 */
int mg_plugin_set_subst(struct mg_plugin_answer *a, const char *name, const char *inline_value,
			const char *attach_value);

/*
 * Postpone the group until the moment until (usec since the epoch, after
 * g->now); reason (a few words, at most 200 bytes, e.g. "newest directive
 * age") is logged and shown as the condition that holds it back.  The
 * daemon arms its due timer at until and asks again then.  Returns
 * MG_PLUGIN_POSTPONE (or MG_PLUGIN_FAIL when the arguments are invalid),
 * so that a plugin can write "return mg_plugin_postpone(a, t, "why");".
 */
enum mg_plugin_verdict mg_plugin_postpone(struct mg_plugin_answer *a, int64_t until,
					  const char *reason);

/*
 * Fail the group with a message (printf format; at most about 400 bytes
 * are kept): it goes into the failed state, as a group no rule matches,
 * and is not tried again before "mailgenctl retry".  Returns
 * MG_PLUGIN_FAIL.
 */
enum mg_plugin_verdict mg_plugin_fail(struct mg_plugin_answer *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The value of key in the group's aggregate identifier, or NULL.  Borrowed. */
const char *mg_plugin_group_get(const struct mg_plugin_group *g, const char *key);

#ifdef __cplusplus
}
#endif

#endif /* MAILGEN_PLUGIN_H */
