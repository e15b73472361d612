/* lib/config-load.c - reading the config files from disk (I/O half of lib/config.c) */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
out:
	mg_buf_release(&text[0]);
	mg_buf_release(&text[1]);
	mg_buf_release(&user_path);
	return r;
}
