/* lib/plugin.h - format plugins: loading shared objects, and the whole decision chain */
#ifndef MG_PLUGIN_H
#define MG_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "directive.h"
#include "mg-err.h"
#include "rules.h"

/* The plugins of format_plugin_dir, loaded once (include/mailgen-plugin.h). */
struct mg_plugins;

/*
 * Load every "*.so" of dir (names not starting with '.'), in name order
 * (byte order): check that dir and each file are owned by root or the
 * effective user and writable by neither group nor others (a file must be
 * a regular file, not a symbolic link), dlopen it with RTLD_NOW |
 * RTLD_LOCAL, find MG_PLUGIN_SYMBOL, check its abi_version, name and
 * decide(), and call its init().  Any problem refuses the whole set with
 * a message naming the key, the file and the problem; the plugins loaded
 * so far are unloaded.  A directory without plugins is no error.
 *
 * On success *ret is set; free it with mg_plugins_free() only when no
 * thread decides with it any more.  Returns MG_OK, MG_ECONFIG or
 * MG_ENOMEM.  Does I/O; call it from the main thread before others start.
 */
int mg_plugins_load(const char *dir, struct mg_plugins **ret, struct mg_err *err);

/* Call each plugin's fini() and unload it.  NULL-safe. */
void mg_plugins_free(struct mg_plugins *ps);

/*
 * ps when it holds a plugin, else NULL: what goes into cfg->plugins, so that
 * a plugin directory without plugins leaves the decisions where they were
 * (mg_config_has_formats()).
 */
struct mg_plugins *mg_plugins_active(struct mg_plugins *ps);

/* How many plugins there are, and "file.so: name" of the i-th (borrowed). */
size_t mg_plugins_count(const struct mg_plugins *ps);
const char *mg_plugins_name(const struct mg_plugins *ps, size_t i);

/*
 * Decide for group g at now (usec since the epoch) the way the programs
 * do: ask the plugins of cfg->plugins in order; the first that does not
 * say "not mine" decides (mg_plugin_answer_decide).  Then the format rules
 * of cfg->rules (mg_rules_decide), and without rules the built-in fallback
 * (mg_rules_decide_fallback).  Returns what those return; on MG_OK the
 * caller releases *ret with mg_rule_decision_release().
 *
 * Thread-safe: calls into a plugin that is not MG_PLUGIN_REENTRANT are
 * serialised by a mutex of that plugin.
 */
int mg_format_decide(const struct mg_config *cfg, const struct mg_group *g, int64_t now,
		     struct mg_rule_decision *ret, struct mg_err *err);

#endif /* MG_PLUGIN_H */
