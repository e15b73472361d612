/* examples/plugins/example_plugin.c - a format plugin for groups of notification format "plugin-demo" */

/*
 * An example of the format plugin interface (include/mailgen-plugin.h,
 * docs/format-rules.md "Plugins").  It decides for groups whose
 * notification_format is "plugin-demo" and leaves every other group to
 * the next plugin, the format rules or the built-in fallback:
 *
 *   - it holds a group back until its newest directive is DEMO_MIN_AGE
 *     seconds old, or as many as the environment variable
 *     MG_DEMO_MIN_AGE says (what a rule's "min_directive_age" does, to
 *     show mg_plugin_postpone(), init() and fini());
 *   - then it mails it with an inline template, a table of two columns
 *     and a substitution that it computes from the aggregate identifier.
 *
 * Build it outside the source tree with
 *
 *	cc -shared -fPIC -Wall -I/usr/local/include/mailgen \
 *		-o example_plugin.so example_plugin.c
 *
 * and install it as root into format_plugin_dir, mode 0644 (the directory
 * 0755), writable only by root: plugins are trusted code.
 *
 * It keeps no state, so it could set MG_PLUGIN_REENTRANT; it does not, to
 * show the default (the loader serialises the calls).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mailgen-plugin.h>

#define DEMO_MIN_AGE 60 /* seconds */

static const char demo_template[] = "Demo report about ${demo_about}\n"
				    "\n"
				    "Dear Sir or Madam,\n"
				    "\n"
				    "ticket ${ticket_number}: ${demo_count}, see below.\n"
				    "\n"
				    "${events_as_csv}\n";

struct demo {
	int64_t min_age_usec;
};

/* Once, at start: read the minimum age.  A message refuses the start. */
static int demo_init(void **ret_state, char *msg, size_t msg_size)
{
	const char *env = getenv("MG_DEMO_MIN_AGE");
	struct demo *d;
	char *end;
	long age = DEMO_MIN_AGE;

	if (env != NULL) {
		age = strtol(env, &end, 10);
		if (end == env || *end != '\0' || age < 0 || age > 86400) {
			(void)snprintf(msg, msg_size,
				       "MG_DEMO_MIN_AGE: expected 0..86400, got '%s'", env);
			return -1;
		}
	}
	d = malloc(sizeof(*d));
	if (d == NULL) {
		(void)snprintf(msg, msg_size, "out of memory");
		return -1;
	}
	d->min_age_usec = (int64_t)age * 1000000;
	*ret_state = d;
	return 0;
}

static void demo_fini(void *state)
{
	free(state);
}

static enum mg_plugin_verdict demo_decide(void *state, const struct mg_plugin_group *g,
					  struct mg_plugin_answer *a)
{
	const struct demo *d = state;
	const char *asn = mg_plugin_group_get(g, "source.asn");
	int64_t due = g->inserted_at + d->min_age_usec;
	char about[128], count[64];

	if (strcmp(g->notification_format, "plugin-demo") != 0)
		return MG_PLUGIN_NOT_MINE;
	if (due > g->now)
		return mg_plugin_postpone(a, due, "demo: newest directive age");

	if (asn != NULL)
		(void)snprintf(about, sizeof(about), "AS %s", asn);
	else
		(void)snprintf(about, sizeof(about), "your network");
	(void)snprintf(count, sizeof(count), "%zu directive%s", g->n_directives,
		       g->n_directives == 1 ? "" : "s");

	/* the builder keeps the first error; the loader fails the group on it */
	mg_plugin_set_template_text(a, demo_template);
	mg_plugin_add_column(a, "source.ip", "address");
	mg_plugin_add_column(a, "extra.demo_note", "note");
	mg_plugin_set_placement(a, MG_PLUGIN_INLINE);
	mg_plugin_set_subst(a, "demo_about", about, NULL);
	/* a different text when the data were attached (not here: inline) */
	mg_plugin_set_subst(a, "demo_count", count, "see the attachment");
	return MG_PLUGIN_SEND;
}

const struct mg_plugin mailgen_plugin = {
	.abi_version = MG_PLUGIN_ABI_VERSION,
	.flags = 0,
	.name = "plugin-demo",
	.init = demo_init,
	.decide = demo_decide,
	.fini = demo_fini,
};
