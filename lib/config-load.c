/* lib/config-load.c - reading the config files from disk (I/O half of lib/config.c) */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config.h"
#include "dir.h"
#include "mg-buf.h"
#include "rules.h"
#include "template.h"

#define CONFIG_MAX_BYTES (1024 * 1024)

/*
 * Read a whole file into out.  Returns MG_OK, -ENOENT-like MG_ESYS with
 * err->sys_errno set, or MG_ECONFIG when it is too large.
 */
static int read_file(const char *path, struct mg_buf *out, struct mg_err *err)
{
	char chunk[8192];
	ssize_t n;
	int fd, r = MG_OK;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = mg_err_set(err, MG_ESYS, "%s: cannot open: %s", path, strerror(errno));
		if (err != NULL)
			err->sys_errno = errno;
		return r;
	}
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = mg_err_set(err, MG_ECONFIG, "%s: cannot read: %s", path,
				       strerror(errno));
			break;
		}
		if (n == 0)
			break;
		if (mg_buf_add(out, chunk, (size_t)n) < 0) {
			r = mg_err_set(err, MG_ECONFIG, "%s: larger than %d bytes", path,
				       CONFIG_MAX_BYTES);
			break;
		}
	}
	close(fd);
	return r;
}

/*
 * Check the further database.event keys against the keywords of the libpq
 * we are linked with, so that a typo stops the start with the file and the
 * key instead of a connection error later (and no guessed keyword is ever
 * passed on).  Debug options (dispchar "D") are not for configuration.
 */
static int check_db_keywords(const struct mg_config *cfg, struct mg_err *err)
{
	PQconninfoOption *opts;
	int r = MG_OK;

	if (cfg->n_db_params == 0)
		return MG_OK;
	opts = PQconndefaults();
	if (opts == NULL)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	for (size_t i = 0; i < cfg->n_db_params && r == MG_OK; i++) {
		const struct mg_db_param *p = &cfg->db_params[i];
		bool known = false;

		for (const PQconninfoOption *o = opts; o->keyword != NULL && !known; o++)
			known = strcmp(o->keyword, p->keyword) == 0 &&
				(o->dispchar == NULL || strchr(o->dispchar, 'D') == NULL);
		if (!known)
			r = mg_err_set(
				err, MG_ECONFIG,
				"%s: 'database.event.%.64s': not a libpq connection keyword "
				"(see \"Parameter Key Words\" in the PostgreSQL documentation)",
				p->file, p->keyword);
	}
	PQconninfoFree(opts);
	return r;
}

#define RULE_FILES_MAX 256

/* A rule file is wanted; *.py files (the original's scripts) are counted in *arg. */
static bool want_rule_file(const char *name, void *arg)
{
	size_t len = strlen(name);

	if (len > 3 && strcmp(name + len - 3, ".py") == 0)
		(*(size_t *)arg)++;
	return mg_rules_is_rule_file(name);
}

/* Read dir/name into buf; a missing optional file leaves *ret_src NULL. */
static int read_rules_file(const char *dir, const char *name, bool optional, struct mg_buf *buf,
			   struct mg_rules_src *src, struct mg_rules_src **ret_src,
			   struct mg_err *err)
{
	struct mg_buf path = MG_BUF_INIT(4096);
	struct mg_err e = { 0 };
	int r;

	if (mg_buf_addf(&path, "%s/%s", dir, name) < 0) {
		r = mg_err_set(err, MG_ECONFIG, "%s/%s: path too long", dir, name);
		goto out;
	}
	r = read_file(mg_buf_str(&path), buf, &e);
	if (r == MG_ESYS && e.sys_errno == ENOENT && optional) {
		r = MG_OK;
		goto out;
	}
	if (r < 0) {
		r = mg_err_set(err, MG_ECONFIG, "%s", e.msg);
		goto out;
	}
	src->name = name;
	src->text = mg_buf_str(buf);
	src->len = buf->len;
	if (ret_src != NULL)
		*ret_src = src;
out:
	mg_buf_release(&path);
	return r;
}

/*
 * Load the format rules of cfg->rules_dir: the files NN_name.json in name
 * order, variables.json and tables.json when present (docs/format-rules.md),
 * and check that every template a rule names is in template_dir.  The
 * original's Python scripts are not run: a directory without rule files
 * stops the start with a message that says so.
 */
static int load_rules(struct mg_config *cfg, struct mg_err *err)
{
	struct mg_buf bufs[RULE_FILES_MAX + 2];
	struct mg_rules_src srcs[RULE_FILES_MAX + 2], *vars = NULL, *tables = NULL;
	struct mg_buf tpath = MG_BUF_INIT(4096);
	char **names = NULL;
	const char *dir = cfg->rules_dir;
	size_t n = 0, n_py = 0;
	DIR *d = NULL;
	int r = MG_OK;

	for (size_t i = 0; i < RULE_FILES_MAX + 2; i++)
		bufs[i] = MG_BUF_INIT(CONFIG_MAX_BYTES);
	d = opendir(dir);
	if (d == NULL) {
		r = mg_err_set(err, MG_ECONFIG, "%s: cannot open '%s': %s", cfg->rules_dir_origin,
			       dir, strerror(errno));
		goto out;
	}
	r = mg_dir_names(d, want_rule_file, &n_py, RULE_FILES_MAX, &names, &n);
	if (r == MG_EINPUT)
		r = mg_err_set(err, MG_ECONFIG, "%s: more than %d rule files in '%s'",
			       cfg->rules_dir_origin, RULE_FILES_MAX, dir);
	else if (r == MG_ESYS)
		r = mg_err_set(err, MG_ECONFIG, "%s: cannot read '%s': %s", cfg->rules_dir_origin,
			       dir, strerror(errno));
	else if (r < 0)
		r = mg_err_set(err, r, "out of memory");
	if (r < 0)
		goto out;
	if (n == 0) {
		r = mg_err_set(err, MG_ECONFIG,
			       "%s: no format rule files (NN_name.json) in '%s'%s; remove the key "
			       "for the built-in fallback rule, see docs/format-rules.md",
			       cfg->rules_dir_origin, dir,
			       n_py > 0 ? " (mailgen-c does not run the original's Python "
					  "scripts: write rule files for them)"
					: "");
		goto out;
	}
	for (size_t i = 0; i < n && r == MG_OK; i++)
		r = read_rules_file(dir, names[i], false, &bufs[i], &srcs[i], NULL, err);
	if (r == MG_OK)
		r = read_rules_file(dir, "variables.json", true, &bufs[n], &srcs[n], &vars, err);
	if (r == MG_OK)
		r = read_rules_file(dir, "tables.json", true, &bufs[n + 1], &srcs[n + 1], &tables,
				    err);
	if (r < 0)
		goto out;
	r = mg_rules_parse(srcs, n, vars, tables, &cfg->rules, err);
	if (r < 0) {
		mg_err_prefix(err, "format rules in '%s': ", dir);
		r = MG_ECONFIG;
		goto out;
	}
	/* templates named by rules must exist now, not fail groups later */
	for (size_t i = 0; i < mg_rules_template_count(cfg->rules); i++) {
		const char *name = mg_rules_template(cfg->rules, i);

		mg_buf_reset(&tpath);
		r = mg_template_check_name(name, err);
		if (r == MG_OK && (mg_buf_addf(&tpath, "%s/%s", cfg->template_dir, name) < 0 ||
				   access(mg_buf_str(&tpath), R_OK) != 0))
			r = mg_err_set(err, MG_ECONFIG, "template '%s': cannot read '%s': %s", name,
				       mg_buf_str(&tpath), strerror(errno));
		if (r < 0) {
			mg_err_prefix(err, "format rules in '%s': ", dir);
			r = MG_ECONFIG;
			goto out;
		}
	}
out:
	if (d != NULL)
		closedir(d);
	mg_dir_names_free(names, n);
	for (size_t i = 0; i < RULE_FILES_MAX + 2; i++)
		mg_buf_release(&bufs[i]);
	mg_buf_release(&tpath);
	return r;
}

int mg_config_load(struct mg_config *cfg, const char *path_override, struct mg_err *err)
{
	struct mg_buf text[2] = { MG_BUF_INIT(CONFIG_MAX_BYTES), MG_BUF_INIT(CONFIG_MAX_BYTES) };
	struct mg_buf user_path = MG_BUF_INIT(4096);
	struct mg_config_src srcs[2];
	const char *paths[2];
	const char *home;
	size_t n = 0, n_paths = 0;
	int r;

	if (path_override != NULL) {
		paths[n_paths++] = path_override;
	} else {
		paths[n_paths++] = MG_CONFIG_SYSTEM_PATH;
		home = getenv("HOME");
		if (home != NULL && home[0] != '\0') {
			if (mg_buf_addf(&user_path, "%s/%s", home, MG_CONFIG_USER_PATH) < 0) {
				r = mg_err_set(err, MG_ENOMEM, "out of memory");
				goto out;
			}
			paths[n_paths++] = mg_buf_str(&user_path);
		}
	}
	for (size_t i = 0; i < n_paths; i++) {
		struct mg_err e = { 0 };

		r = read_file(paths[i], &text[n], &e);
		if (r == MG_ESYS && e.sys_errno == ENOENT && path_override == NULL)
			continue; /* either file may be absent, as in the original */
		if (r < 0) {
			if (err != NULL) {
				*err = e;
				err->rc = MG_ECONFIG;
			}
			r = MG_ECONFIG;
			goto out;
		}
		srcs[n].path = paths[i];
		srcs[n].text = mg_buf_str(&text[n]);
		srcs[n].len = text[n].len;
		n++;
	}
	if (n == 0) {
		r = mg_err_set(err, MG_ECONFIG, "no configuration found: neither %s nor %s exists",
			       paths[0], n_paths > 1 ? paths[1] : "$HOME/" MG_CONFIG_USER_PATH);
		goto out;
	}
	r = mg_config_parse(cfg, srcs, n, err);
	if (r == MG_OK) {
		r = check_db_keywords(cfg, err);
		if (r == MG_OK && cfg->rules_dir != NULL)
			r = load_rules(cfg, err);
		if (r < 0)
			mg_config_release(cfg);
	}
out:
	mg_buf_release(&text[0]);
	mg_buf_release(&text[1]);
	mg_buf_release(&user_path);
	return r;
}
