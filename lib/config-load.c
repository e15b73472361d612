/* lib/config-load.c - reading the config files from disk (I/O half of lib/config.c) */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config.h"
#include "mg-buf.h"

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
		if (r < 0)
			mg_config_release(cfg);
	}
out:
	mg_buf_release(&text[0]);
	mg_buf_release(&text[1]);
	mg_buf_release(&user_path);
	return r;
}
