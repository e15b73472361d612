/* lib/plugin.c - format plugins: loading shared objects, and the whole decision chain */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mg-buf.h"
#include "plugin-api.h"
#include "dir.h"
#include "plugin.h"

#define PLUGINS_MAX	64
#define PLUGIN_NAME_MAX 64

struct plugin {
	char *path;
	char *who; /* "file.so: name", for messages and decisions */
	void *handle;
	const struct mg_plugin *def;
	void *state;
	bool inited;
	bool serialised;
	pthread_mutex_t lock; /* calls into decide() unless MG_PLUGIN_REENTRANT */
};

struct mg_plugins {
	struct plugin *p;
	size_t n;
};

struct mg_plugins *mg_plugins_active(struct mg_plugins *ps)
{
	return mg_plugins_count(ps) > 0 ? ps : NULL;
}

size_t mg_plugins_count(const struct mg_plugins *ps)
{
	return ps != NULL ? ps->n : 0;
}

const char *mg_plugins_name(const struct mg_plugins *ps, size_t i)
{
	return ps->p[i].who;
}

static void plugin_release(struct plugin *pl)
{
	if (pl->inited && pl->def->fini != NULL)
		pl->def->fini(pl->state);
	if (pl->handle != NULL)
		(void)dlclose(pl->handle);
	if (pl->serialised)
		(void)pthread_mutex_destroy(&pl->lock);
	free(pl->path);
	free(pl->who);
}

void mg_plugins_free(struct mg_plugins *ps)
{
	if (ps == NULL)
		return;
	/* in reverse: a later plugin may use what an earlier one set up */
	for (size_t i = ps->n; i > 0; i--)
		plugin_release(&ps->p[i - 1]);
	free(ps->p);
	free(ps);
}

/*
 * Plugins are trusted code: only root or we may be able to change them.
 * what is "directory" or "plugin" for the message.
 */
static int check_owner_mode(const char *what, const char *path, const struct stat *st,
			    struct mg_err *err)
{
	if (st->st_uid != 0 && st->st_uid != geteuid())
		return mg_err_set(err, MG_ECONFIG,
				  "format_plugin_dir: %s '%s' is owned by uid %u, not by root or "
				  "the user mailgen runs as (uid %u): plugins are trusted code",
				  what, path, (unsigned)st->st_uid, (unsigned)geteuid());
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
		return mg_err_set(err, MG_ECONFIG,
				  "format_plugin_dir: %s '%s' is writable by group or others "
				  "(mode %04o): plugins are trusted code, make it writable only by "
				  "root",
				  what, path, (unsigned)(st->st_mode & 07777));
	return MG_OK;
}

static bool name_ok(const char *name)
{
	size_t n = 0;

	for (; name[n] != '\0'; n++)
		if (!((name[n] >= 'a' && name[n] <= 'z') || (name[n] >= 'A' && name[n] <= 'Z') ||
		      (name[n] >= '0' && name[n] <= '9') || name[n] == '.' || name[n] == '_' ||
		      name[n] == '-'))
			return false;
	return n > 0 && n <= PLUGIN_NAME_MAX;
}

static bool is_plugin_file(const char *name, void *arg)
{
	size_t n = strlen(name);

	(void)arg;
	return name[0] != '.' && n > 3 && strcmp(name + n - 3, ".so") == 0;
}

/* Load, check and initialise one plugin; dfd is the checked directory. */
static int plugin_load(int dfd, const char *dir, const char *file, struct plugin *pl,
		       struct mg_err *err)
{
	struct mg_buf b = MG_BUF_INIT(8192);
	const struct mg_plugin *def;
	struct stat st;
	char msg[256] = "";
	int fd, r;

	r = mg_buf_addf(&b, "%s/%s", dir, file);
	if (r == MG_OK && (pl->path = mg_buf_detach(&b, NULL)) == NULL)
		r = MG_ENOMEM;
	if (r < 0) {
		mg_buf_release(&b);
		return r == MG_ENOMEM
			       ? mg_err_set(err, r, "out of memory")
			       : mg_err_set(err, MG_ECONFIG,
					    "format_plugin_dir: path of '%.100s' too long", file);
	}
	fd = openat(dfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return mg_err_set(err, MG_ECONFIG,
				  "format_plugin_dir: cannot open plugin '%s': %s%s", pl->path,
				  strerror(errno),
				  errno == ELOOP ? " (symbolic links are not followed: copy the "
						   "file)"
						 : "");
	r = fstat(fd, &st) < 0 ? mg_err_set(err, MG_ECONFIG, "format_plugin_dir: '%s': %s",
					    pl->path, strerror(errno))
			       : MG_OK;
	(void)close(fd);
	if (r < 0)
		return r;
	if (!S_ISREG(st.st_mode))
		return mg_err_set(err, MG_ECONFIG, "format_plugin_dir: plugin '%s' is not a file",
				  pl->path);
	r = check_owner_mode("plugin", pl->path, &st, err);
	if (r < 0)
		return r;
	/*
	 * The checks above and dlopen() name the file twice; only root or we
	 * can swap it in between, as the directory is checked the same way.
	 */
	pl->handle = dlopen(pl->path, RTLD_NOW | RTLD_LOCAL);
	if (pl->handle == NULL)
		return mg_err_set(err, MG_ECONFIG, "format_plugin_dir: cannot load plugin '%s': %s",
				  pl->path, dlerror());
	def = dlsym(pl->handle, MG_PLUGIN_SYMBOL);
	if (def == NULL)
		return mg_err_set(err, MG_ECONFIG,
				  "format_plugin_dir: plugin '%s' does not export '%s' "
				  "(include/mailgen-plugin.h)",
				  pl->path, MG_PLUGIN_SYMBOL);
	if (def->abi_version != MG_PLUGIN_ABI_VERSION)
		return mg_err_set(err, MG_ECONFIG,
				  "format_plugin_dir: plugin '%s' was built for plugin ABI version "
				  "%u, this program has version %d: rebuild it with this "
				  "mailgen-plugin.h",
				  pl->path, (unsigned)def->abi_version, MG_PLUGIN_ABI_VERSION);
	if (def->name == NULL || !name_ok(def->name))
		return mg_err_set(err, MG_ECONFIG,
				  "format_plugin_dir: plugin '%s': its name must be 1..%d of "
				  "[A-Za-z0-9._-]",
				  pl->path, PLUGIN_NAME_MAX);
	if (def->decide == NULL)
		return mg_err_set(err, MG_ECONFIG, "format_plugin_dir: plugin '%s' has no decide()",
				  pl->path);
	if ((def->flags & ~(uint32_t)MG_PLUGIN_REENTRANT) != 0)
		return mg_err_set(err, MG_ECONFIG,
				  "format_plugin_dir: plugin '%s': unknown flags 0x%x", pl->path,
				  (unsigned)def->flags);
	pl->def = def;
	b = MG_BUF_INIT(8192);
	r = mg_buf_addf(&b, "%s: %s", file, def->name);
	if (r == MG_OK && (pl->who = mg_buf_detach(&b, NULL)) == NULL)
		r = MG_ENOMEM;
	if (r < 0) {
		mg_buf_release(&b);
		return r == MG_ENOMEM ? mg_err_set(err, r, "out of memory")
				      : mg_err_set(err, MG_ECONFIG,
						   "format_plugin_dir: plugin '%s': name too long",
						   pl->path);
	}
	if ((def->flags & MG_PLUGIN_REENTRANT) == 0) {
		if (pthread_mutex_init(&pl->lock, NULL) != 0)
			return mg_err_set(err, MG_ENOMEM, "cannot create a mutex");
		pl->serialised = true;
	}
	if (def->init != NULL) {
		if (def->init(&pl->state, msg, sizeof(msg)) != 0) {
			msg[sizeof(msg) - 1] = '\0';
			return mg_err_set(err, MG_ECONFIG,
					  "format_plugin_dir: plugin '%s': init failed: %s",
					  pl->path, msg[0] != '\0' ? msg : "no reason given");
		}
		pl->inited = true;
	}
	return MG_OK;
}

int mg_plugins_load(const char *dir, struct mg_plugins **ret, struct mg_err *err)
{
	struct mg_plugins *ps = NULL;
	char **names = NULL;
	size_t n = 0;
	struct stat st;
	DIR *dh = NULL;
	int dfd, r;

	if (dir[0] != '/')
		return mg_err_set(err, MG_ECONFIG,
				  "format_plugin_dir: '%s' is not an absolute path", dir);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return mg_err_set(err, MG_ECONFIG,
				  "format_plugin_dir: cannot open directory '%s': %s", dir,
				  strerror(errno));
	if (fstat(dfd, &st) < 0) {
		r = mg_err_set(err, MG_ECONFIG, "format_plugin_dir: '%s': %s", dir,
			       strerror(errno));
		(void)close(dfd);
		goto out;
	}
	r = check_owner_mode("directory", dir, &st, err);
	if (r < 0) {
		(void)close(dfd);
		goto out;
	}
	dh = fdopendir(dfd);
	if (dh == NULL) {
		r = mg_err_set(err, MG_ECONFIG, "format_plugin_dir: cannot read '%s': %s", dir,
			       strerror(errno));
		(void)close(dfd);
		goto out;
	}
	r = mg_dir_names(dh, is_plugin_file, NULL, PLUGINS_MAX, &names, &n);
	if (r == MG_EINPUT)
		r = mg_err_set(err, MG_ECONFIG, "format_plugin_dir: more than %d plugins in '%s'",
			       PLUGINS_MAX, dir);
	else if (r == MG_ESYS)
		r = mg_err_set(err, MG_ECONFIG, "format_plugin_dir: cannot read '%s': %s", dir,
			       strerror(errno));
	else if (r < 0)
		r = mg_err_set(err, r, "out of memory");
	if (r < 0)
		goto out;
	ps = calloc(1, sizeof(*ps));
	if (ps == NULL || (n > 0 && (ps->p = calloc(n, sizeof(*ps->p))) == NULL)) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		r = plugin_load(dirfd(dh), dir, names[i], &ps->p[ps->n], err);
		ps->n++; /* released with the rest even when half loaded */
		if (r < 0)
			goto out;
	}
	*ret = ps;
	ps = NULL;
	r = MG_OK;
out:
	mg_plugins_free(ps);
	mg_dir_names_free(names, n);
	if (dh != NULL)
		(void)closedir(dh);
	return r;
}

/* Ask one plugin; *ret_mine false when it says "not mine". */
static int plugin_ask(struct plugin *pl, const struct mg_config *cfg, const struct mg_group *g,
		      int64_t now, struct mg_rule_decision *ret, bool *ret_mine, struct mg_err *err)
{
	struct mg_plugin_group view;
	struct mg_plugin_kv *kv = NULL;
	struct mg_plugin_answer *a;
	int v, r;

	*ret_mine = false;
	r = mg_plugin_group_view(g, now, &view, &kv, err);
	if (r < 0)
		return r;
	a = mg_plugin_answer_new(pl->who, now);
	if (a == NULL) {
		free(kv);
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	}
	if (pl->serialised)
		(void)pthread_mutex_lock(&pl->lock);
	v = (int)pl->def->decide(pl->state, &view, a);
	if (pl->serialised)
		(void)pthread_mutex_unlock(&pl->lock);
	free(kv);
	return mg_plugin_answer_decide(a, v, g, now, cfg->rules, ret, ret_mine, err);
}

int mg_format_decide(const struct mg_config *cfg, const struct mg_group *g, int64_t now,
		     struct mg_rule_decision *ret, struct mg_err *err)
{
	struct mg_plugins *ps = cfg->plugins;

	for (size_t i = 0; i < mg_plugins_count(ps); i++) {
		bool mine;
		int r = plugin_ask(&ps->p[i], cfg, g, now, ret, &mine, err);

		if (r < 0 || mine)
			return r;
	}
	if (cfg->rules != NULL)
		return mg_rules_decide(cfg->rules, g, now, ret, err);
	mg_rules_decide_fallback(g, now, ret);
	return MG_OK;
}
