/* lib/config.c - intelmq-mailgen.conf: parsing, merging and validation (pure) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <json-c/json.h>

#include "config.h"
#include "json-util.h"
#include "rules.h"
#include "mg-alloc.h"
#include "mg-buf.h"
#include "util.h"

enum cf_type {
	CF_STR,	    /* non-empty string */
	CF_STR0,    /* string, may be empty */
	CF_BOOL,    /* true/false */
	CF_PORT,    /* 1..65535, as integer or digit string; stored as text */
	CF_INTPORT, /* 1..65535 as int */
	CF_INT,	    /* integer in [min, max] */
	CF_LONG,    /* integer in [min, max] */
	CF_LEVEL,   /* logging_level name */
};

/* The table of known keys (in the spirit of PgBouncer's CF_ABS). */
struct cf_key {
	const char *path; /* dotted key path */
	enum cf_type type;
	size_t off; /* offset in struct mg_config */
	bool required;
	const char *def; /* default as text, NULL: none */
	long long min, max;
};

#define OFF(f) offsetof(struct mg_config, f)

/*
 * Dotted key paths are built from the names in the files, and a name may
 * be as long as its file: allow a path longer than two files the loader
 * reads (1 MiB each, config-load.c), so that a long unknown key only
 * warns, like a short one.  A warning shows at most CF_KEY_SHOWN bytes of
 * the key.
 */
#define CF_PATH_MAX  (4u << 20)
#define CF_KEY_SHOWN 128

static const struct cf_key cf_keys[] = {
	{ "openpgp.gnupg_home", CF_STR, OFF(gnupg_home), true, NULL, 0, 0 },
	{ "openpgp.always_sign", CF_BOOL, OFF(always_sign), true, NULL, 0, 0 },
	{ "openpgp.signing_key", CF_STR0, OFF(signing_key), true, NULL, 0, 0 },
	{ "database.event.name", CF_STR, OFF(db_name), true, NULL, 0, 0 },
	{ "database.event.username", CF_STR, OFF(db_user), false, NULL, 0, 0 },
	{ "database.event.password", CF_STR0, OFF(db_password), false, NULL, 0, 0 },
	{ "database.event.host", CF_STR, OFF(db_host), false, NULL, 0, 0 },
	{ "database.event.port", CF_PORT, OFF(db_port), false, NULL, 1, 65535 },
	{ "database.additional_directive_where", CF_STR0, OFF(additional_directive_where), false,
	  NULL, 0, 0 },
	{ "template_dir", CF_STR, OFF(template_dir), true, NULL, 0, 0 },
	{ "format_rules_dir", CF_STR, OFF(format_rules_dir), false, NULL, 0, 0 },
	{ "script_directory", CF_STR, OFF(script_directory), false, NULL, 0, 0 },
	{ "format_plugin_dir", CF_STR, OFF(format_plugin_dir), false, NULL, 0, 0 },
	{ "sender", CF_STR, OFF(sender), true, NULL, 0, 0 },
	{ "logging_level", CF_LEVEL, OFF(log_level), false, "INFO", 0, 0 },
	{ "smtp.host", CF_STR, OFF(smtp_host), false, "localhost", 0, 0 },
	{ "smtp.port", CF_INTPORT, OFF(smtp_port), false, "25", 1, 65535 },
	{ "smtp.tls", CF_STR, OFF(smtp_tls_name), false, "off", 0, 0 },
	{ "smtp.tls_verify", CF_BOOL, OFF(smtp_tls_verify), false, "true", 0, 0 },
	{ "smtp.tls_ca_file", CF_STR, OFF(smtp_tls_ca_file), false, NULL, 0, 0 },
	{ "smtp.tls_ca_dir", CF_STR, OFF(smtp_tls_ca_dir), false, NULL, 0, 0 },
	{ "smtp.tls_server_name", CF_STR, OFF(smtp_tls_server_name), false, NULL, 0, 0 },
	{ "smtp.username", CF_STR, OFF(smtp_username), false, NULL, 0, 0 },
	{ "smtp.password_file", CF_STR, OFF(smtp_password_file), false, NULL, 0, 0 },
	{ "smtp.password_credential", CF_STR, OFF(smtp_password_credential), false, NULL, 0, 0 },
	{ "smtp.auth_allow_plaintext", CF_BOOL, OFF(smtp_auth_allow_plaintext), false, NULL, 0, 0 },
	{ "delivery.mails_per_session", CF_INT, OFF(mails_per_session), false, "32", 1, 64 },
	{ "delivery.smtp_timeout_seconds", CF_INT, OFF(smtp_timeout_sec), false, "60", 1, 3600 },
	{ "delivery.max_mail_bytes", CF_LONG, OFF(max_mail_bytes), false, "33554432", 65536,
	  1073741824 },
	{ "delivery.max_events_per_mail", CF_INT, OFF(max_events_per_mail), false, "10000", 1,
	  1000000 },
	{ "delivery.csv_spreadsheet_safe", CF_BOOL, OFF(csv_spreadsheet_safe), false, NULL, 0, 0 },
	{ "delivery.sign_via_agent", CF_BOOL, OFF(sign_via_agent), false, "true", 0, 0 },
	{ "delivery.recipient_max_mails", CF_INT, OFF(recipient_max_mails), false, "0", 0,
	  1000000 },
	{ "delivery.recipient_window_seconds", CF_INT, OFF(recipient_window_sec), false, "3600", 1,
	  31 * 86400 },
	{ "delivery.group_retry_min_seconds", CF_INT, OFF(group_retry_min_sec), false, "300", 1,
	  86400 },
	{ "delivery.group_retry_max_seconds", CF_INT, OFF(group_retry_max_sec), false, "14400", 1,
	  604800 },
	{ "delivery.group_give_up_seconds", CF_INT, OFF(group_give_up_sec), false, "432000", 0,
	  31536000 },
	{ "daemon.notify_channel", CF_STR, OFF(notify_channel), false, "mailgen", 0, 0 },
	{ "daemon.debounce_quiet_ms", CF_INT, OFF(debounce_quiet_ms), false, "2000", 0, 3600000 },
	{ "daemon.debounce_max_ms", CF_INT, OFF(debounce_max_ms), false, "2000", 0, 3600000 },
	{ "daemon.rescan_interval_seconds", CF_INT, OFF(rescan_interval_sec), false, "300", 1,
	  86400 },
	{ "daemon.workers", CF_INT, OFF(workers), false, "0", 0, 64 },
	{ "daemon.control_socket", CF_STR, OFF(control_socket), false, "/run/mailgen/mailgend.sock",
	  0, 0 },
	{ "daemon.retry_min_seconds", CF_INT, OFF(retry_min_sec), false, "5", 1, 86400 },
	{ "daemon.retry_max_seconds", CF_INT, OFF(retry_max_sec), false, "600", 1, 86400 },
	{ "daemon.db_ping_seconds", CF_INT, OFF(db_ping_sec), false, "30", 1, 3600 },
	{ "daemon.shutdown_timeout_seconds", CF_INT, OFF(shutdown_timeout_sec), false, "60", 1,
	  3600 },
};

/*
 * database.event keys other than the original five go to libpq as they are
 * (the original hands psycopg2 the connection parameters).  These libpq
 * keywords are refused: two are spelt differently in the original's keys,
 * and mailgen depends on UTF8.
 */
#define DB_EVENT_PREFIX "database.event."
#define DB_KEY_SHOWN	64
static const struct {
	const char *keyword;
	const char *why;
} db_refused[] = {
	{ "dbname", "write the database name as 'database.event.name'" },
	{ "user", "write the role as 'database.event.username'" },
	{ "client_encoding", "mailgen always talks UTF8 with the server" },
};

/* Keys of the original that we accept and do not use (yet): no warning. */
static const char *const cf_ignored[] = {
	"", /* none at the moment */
};

/* Objects that may hold keys (so "database" is not an unknown key). */
static const char *const cf_objects[] = {
	"database", "database.event", "openpgp", "smtp", "delivery", "daemon",
};

static const struct {
	const char *name;
	int prio;
} cf_levels[] = {
	{ "DEBUG", LOG_DEBUG },	 { "INFO", LOG_INFO }, { "WARNING", LOG_WARNING },
	{ "WARN", LOG_WARNING }, { "ERROR", LOG_ERR }, { "CRITICAL", LOG_CRIT },
	{ "FATAL", LOG_CRIT },
};

int mg_config_level(const char *name)
{
	for (size_t i = 0; i < sizeof(cf_levels) / sizeof(cf_levels[0]); i++)
		if (strcasecmp(name, cf_levels[i].name) == 0)
			return cf_levels[i].prio;
	return -1;
}

void mg_config_release(struct mg_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < sizeof(cf_keys) / sizeof(cf_keys[0]); i++) {
		const struct cf_key *k = &cf_keys[i];

		if (k->type == CF_STR || k->type == CF_STR0 || k->type == CF_PORT)
			free(*(char **)(void *)((char *)cfg + k->off));
	}
	for (size_t i = 0; i < cfg->n_db_params; i++) {
		free(cfg->db_params[i].keyword);
		free(cfg->db_params[i].value);
		free(cfg->db_params[i].file);
	}
	free(cfg->db_params);
	free(cfg->smtp_password_origin);
	free(cfg->rules_dir_origin);
	mg_rules_free(cfg->rules);
	free(cfg->smtp_tls_origin);
	for (size_t i = 0; i < cfg->n_warnings; i++)
		free(cfg->warnings[i]);
	free(cfg->warnings);
	memset(cfg, 0, sizeof(*cfg));
}

/*
 * Parse one file's text into a new JSON object.  json-c accepts trailing
 * garbage and comments in its default mode, so use strict mode and check
 * that only white space follows the value (LIBRARY-NOTES "json-c").
 */
static int parse_json(const struct mg_config_src *src, struct json_object **ret_obj,
		      struct mg_err *err)
{
	struct json_object *obj = NULL;
	int r;

	if (src->len > INT32_MAX)
		return mg_err_set(err, MG_ECONFIG, "%s: file too large", src->path);
	r = mg_json_parse_strict(src->path, src->text, src->len, &obj, err);
	if (r < 0)
		return r;
	if (!json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return mg_err_set(err, MG_ECONFIG, "%s: expected a JSON object at the top level",
				  src->path);
	}
	*ret_obj = obj;
	return MG_OK;
}

/* Where a merged key came from: the path of the file that set it last. */
struct origin {
	char *key; /* "smtp" or "smtp.port" */
	const char *path;
};

struct merge {
	struct json_object *root;
	const char *last_path; /* named for keys no file set */
	struct origin *origins;
	size_t n_origins;
};

static int origin_set(struct merge *m, const char *key, const char *path)
{
	struct origin *o;

	for (size_t i = 0; i < m->n_origins; i++) {
		if (strcmp(m->origins[i].key, key) == 0) {
			m->origins[i].path = path;
			return MG_OK;
		}
	}
	o = mg_realloc(m->origins, (m->n_origins + 1) * sizeof(*o));
	if (o == NULL)
		return MG_ENOMEM;
	m->origins = o;
	o[m->n_origins].key = mg_strdup(key);
	if (o[m->n_origins].key == NULL)
		return MG_ENOMEM;
	o[m->n_origins].path = path;
	m->n_origins++;
	return MG_OK;
}

/* The file a dotted key came from: the longest recorded prefix wins. */
static const char *origin_of(const struct merge *m, const char *key)
{
	const char *best = NULL;
	size_t best_len = 0;

	for (size_t i = 0; i < m->n_origins; i++) {
		size_t n = strlen(m->origins[i].key);

		if (strncmp(key, m->origins[i].key, n) == 0 && (key[n] == '\0' || key[n] == '.') &&
		    n >= best_len) {
			best = m->origins[i].path;
			best_len = n;
		}
	}
	if (best == NULL)
		best = m->last_path != NULL ? m->last_path : "(config)";
	return best;
}

static void merge_release(struct merge *m)
{
	json_object_put(m->root);
	for (size_t i = 0; i < m->n_origins; i++)
		free(m->origins[i].key);
	free(m->origins);
}

static int merge_file(struct merge *m, struct json_object *file, const char *path)
{
	struct json_object_iterator it = json_object_iter_begin(file);
	struct json_object_iterator end = json_object_iter_end(file);
	struct mg_buf key = MG_BUF_INIT(CF_PATH_MAX);
	int r = MG_OK;

	for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
		const char *name = json_object_iter_peek_name(&it);
		struct json_object *val = json_object_iter_peek_value(&it);
		struct json_object *old = NULL;

		if (json_object_object_get_ex(m->root, name, &old) &&
		    json_object_is_type(old, json_type_object) &&
		    json_object_is_type(val, json_type_object)) {
			/* one level deep, as the original's load_config() */
			json_object_object_foreach(val, k2, v2)
			{
				if (json_object_object_add(old, k2, json_object_get(v2)) != 0) {
					r = MG_ENOMEM;
					goto out;
				}
				mg_buf_reset(&key);
				r = mg_buf_addf(&key, "%s.%s", name, k2);
				if (r == MG_OK)
					r = origin_set(m, mg_buf_str(&key), path);
				if (r < 0)
					goto out;
			}
			continue;
		}
		if (json_object_object_add(m->root, name, json_object_get(val)) != 0 ||
		    origin_set(m, name, path) < 0) {
			r = MG_ENOMEM;
			goto out;
		}
	}
out:
	mg_buf_release(&key);
	return r;
}

/* Find a dotted path; *ret_parent_ok is false when a parent is not an object. */
static struct json_object *lookup(struct json_object *root, const char *path, char *ret_bad,
				  size_t bad_size)
{
	char part[128];
	const char *p = path;
	struct json_object *cur = root;

	ret_bad[0] = '\0';
	while (*p != '\0') {
		const char *dot = strchr(p, '.');
		size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);
		struct json_object *next;

		if (n >= sizeof(part))
			return NULL;
		memcpy(part, p, n);
		part[n] = '\0';
		if (!json_object_is_type(cur, json_type_object)) {
			size_t plen = (size_t)(p - path) - 1;

			if (plen >= bad_size)
				plen = bad_size - 1;
			memcpy(ret_bad, path, plen);
			ret_bad[plen] = '\0';
			return NULL;
		}
		if (!json_object_object_get_ex(cur, part, &next))
			return NULL;
		cur = next;
		p += n;
		if (*p == '.')
			p++;
	}
	return cur;
}

static int set_str(struct mg_config *cfg, const struct cf_key *k, const char *s)
{
	char **slot = (char **)(void *)((char *)cfg + k->off);
	char *copy = mg_strdup(s);

	if (copy == NULL)
		return MG_ENOMEM;
	free(*slot);
	*slot = copy;
	return MG_OK;
}

/* Set one key from its JSON value (or its default when v is NULL). */
static int set_key(struct mg_config *cfg, const struct cf_key *k, struct json_object *v,
		   const char *file, struct mg_err *err)
{
	const char *s;
	int64_t n;
	char digits[32];

	switch (k->type) {
	case CF_STR:
	case CF_STR0:
		if (v == NULL)
			return k->def != NULL ? set_str(cfg, k, k->def) : MG_OK;
		if (!json_object_is_type(v, json_type_string))
			return mg_err_set(err, MG_ECONFIG, "%s: '%s': expected a string, got %s",
					  file, k->path, mg_json_type_word(v));
		s = json_object_get_string(v);
		if (k->type == CF_STR && s[0] == '\0')
			return mg_err_set(err, MG_ECONFIG, "%s: '%s': expected a non-empty string",
					  file, k->path);
		if (strlen(s) != (size_t)json_object_get_string_len(v))
			return mg_err_set(err, MG_ECONFIG, "%s: '%s': string contains a NUL byte",
					  file, k->path);
		return set_str(cfg, k, s);
	case CF_BOOL:
		if (v == NULL) {
			*(bool *)(void *)((char *)cfg + k->off) =
				k->def != NULL && strcmp(k->def, "true") == 0;
			return MG_OK;
		}
		if (!json_object_is_type(v, json_type_boolean))
			return mg_err_set(err, MG_ECONFIG,
					  "%s: '%s': expected true or false, got %s", file, k->path,
					  mg_json_type_word(v));
		*(bool *)(void *)((char *)cfg + k->off) = json_object_get_boolean(v);
		return MG_OK;
	case CF_PORT:
	case CF_INTPORT:
	case CF_INT:
	case CF_LONG:
		if (v == NULL) {
			if (k->def == NULL)
				return MG_OK;
			s = k->def;
		} else if (json_object_is_type(v, json_type_int)) {
			(void)snprintf(digits, sizeof(digits), "%lld",
				       (long long)json_object_get_int64(v));
			s = digits;
		} else if (json_object_is_type(v, json_type_string) &&
			   (k->type == CF_PORT || k->type == CF_INTPORT)) {
			s = json_object_get_string(v); /* "5432" as the original allowed */
		} else {
			return mg_err_set(err, MG_ECONFIG,
					  "%s: '%s': expected an integer %lld..%lld, got %s", file,
					  k->path, k->min, k->max, mg_json_type_word(v));
		}
		if (!mg_parse_int64(s, k->min, k->max, &n))
			return mg_err_set(err, MG_ECONFIG,
					  "%s: '%s': expected an integer %lld..%lld, got \"%.40s\"",
					  file, k->path, k->min, k->max, s);
		if (k->type == CF_PORT) {
			(void)snprintf(digits, sizeof(digits), "%lld", (long long)n);
			return set_str(cfg, k, digits);
		}
		if (k->type == CF_LONG)
			*(long *)(void *)((char *)cfg + k->off) = (long)n;
		else
			*(int *)(void *)((char *)cfg + k->off) = (int)n;
		return MG_OK;
	case CF_LEVEL:
		s = k->def;
		if (v != NULL) {
			if (!json_object_is_type(v, json_type_string))
				return mg_err_set(err, MG_ECONFIG,
						  "%s: '%s': expected a level name, got %s", file,
						  k->path, mg_json_type_word(v));
			s = json_object_get_string(v);
		}
		n = mg_config_level(s);
		if (n < 0)
			return mg_err_set(err, MG_ECONFIG,
					  "%s: '%s': expected DEBUG, INFO, WARNING, ERROR or "
					  "CRITICAL, got \"%.40s\"",
					  file, k->path, s);
		*(int *)(void *)((char *)cfg + k->off) = (int)n;
		return MG_OK;
	}
	return mg_err_set(err, MG_ECONFIG, "%s: '%s': internal error", file, k->path);
}

static bool known_path(const char *path)
{
	/* any other key of database.event is a libpq keyword (db_params_parse) */
	if (strncmp(path, DB_EVENT_PREFIX, strlen(DB_EVENT_PREFIX)) == 0)
		return true;
	for (size_t i = 0; i < sizeof(cf_keys) / sizeof(cf_keys[0]); i++)
		if (strcmp(cf_keys[i].path, path) == 0)
			return true;
	for (size_t i = 0; i < sizeof(cf_objects) / sizeof(cf_objects[0]); i++)
		if (strcmp(cf_objects[i], path) == 0)
			return true;
	for (size_t i = 0; i < sizeof(cf_ignored) / sizeof(cf_ignored[0]); i++)
		if (strcmp(cf_ignored[i], path) == 0)
			return true;
	return false;
}

static bool known_object(const char *path)
{
	for (size_t i = 0; i < sizeof(cf_objects) / sizeof(cf_objects[0]); i++)
		if (strcmp(cf_objects[i], path) == 0)
			return true;
	return false;
}

static int add_warning(struct mg_config *cfg, const char *file, const char *path)
{
	struct mg_buf b = MG_BUF_INIT(strlen(file) + CF_KEY_SHOWN + 64);
	size_t shown = strnlen(path, CF_KEY_SHOWN + 1);
	bool cut = shown > CF_KEY_SHOWN;
	char **w;

	/* cut a long key at a character boundary, and say so */
	if (cut) {
		shown = CF_KEY_SHOWN;
		while (shown > 0 && ((unsigned char)path[shown] & 0xc0) == 0x80)
			shown--;
	}
	if (mg_buf_addf(&b, "%s: unknown key '%.*s%s', ignoring", file, (int)shown, path,
			cut ? "..." : "") < 0)
		goto fail;
	w = mg_realloc(cfg->warnings, (cfg->n_warnings + 1) * sizeof(*w));
	if (w == NULL)
		goto fail;
	cfg->warnings = w;
	w[cfg->n_warnings] = mg_buf_detach(&b, NULL);
	if (w[cfg->n_warnings] == NULL)
		goto fail;
	cfg->n_warnings++;
	return MG_OK;
fail:
	mg_buf_release(&b);
	return MG_ENOMEM;
}

/* Warn about every key not in the table, recursing into known objects. */
static int check_unknown(struct mg_config *cfg, const struct merge *m, struct json_object *obj,
			 const char *prefix)
{
	struct mg_buf path = MG_BUF_INIT(CF_PATH_MAX);
	int r = MG_OK;

	json_object_object_foreach(obj, k, v)
	{
		mg_buf_reset(&path);
		r = prefix[0] != '\0' ? mg_buf_addf(&path, "%s.%s", prefix, k)
				      : mg_buf_adds(&path, k);
		if (r < 0)
			break;
		if (!known_path(mg_buf_str(&path)))
			r = add_warning(cfg, origin_of(m, mg_buf_str(&path)), mg_buf_str(&path));
		else if (known_object(mg_buf_str(&path)) &&
			 json_object_is_type(v, json_type_object))
			r = check_unknown(cfg, m, v, mg_buf_str(&path));
		if (r < 0)
			break;
	}
	mg_buf_release(&path);
	return r;
}

/* Add a ready-made warning line. */
static int push_warning(struct mg_config *cfg, struct mg_buf *b)
{
	char **w = mg_realloc(cfg->warnings, (cfg->n_warnings + 1) * sizeof(*w));

	if (w == NULL)
		return MG_ENOMEM;
	cfg->warnings = w;
	w[cfg->n_warnings] = mg_buf_detach(b, NULL);
	if (w[cfg->n_warnings] == NULL)
		return MG_ENOMEM;
	cfg->n_warnings++;
	return MG_OK;
}

/*
 * smtp.tls, smtp.username and the password keys (docs/smtp.md "TLS and
 * AUTH").  AUTH over a connection that is never encrypted is refused unless
 * smtp.auth_allow_plaintext says otherwise: the password would cross the
 * network in the clear.
 */
static int check_smtp(struct mg_config *cfg, const struct merge *m, struct mg_err *err)
{
	static const char *const modes[] = { "off", "starttls", "starttls-required", "smtps" };
	const char *cred = cfg->smtp_password_credential;
	const char *pw_key;
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(cfg->smtp_tls_name, modes[i]) == 0)
			break;
	if (i == sizeof(modes) / sizeof(modes[0]))
		return mg_err_set(err, MG_ECONFIG,
				  "%s: 'smtp.tls': expected \"off\", \"starttls\", "
				  "\"starttls-required\" or \"smtps\", got \"%.40s\"",
				  origin_of(m, "smtp.tls"), cfg->smtp_tls_name);
	cfg->smtp_tls = (int)i;
	if (cfg->smtp_tls_ca_file != NULL || cfg->smtp_tls_ca_dir != NULL) {
		cfg->smtp_tls_origin = mg_strdup(origin_of(
			m, cfg->smtp_tls_ca_file != NULL ? "smtp.tls_ca_file" : "smtp.tls_ca_dir"));
		if (cfg->smtp_tls_origin == NULL)
			return mg_err_set(err, MG_ENOMEM, "out of memory");
	}
	if (cfg->smtp_password_file != NULL && cred != NULL)
		return mg_err_set(err, MG_ECONFIG,
				  "%s: 'smtp.password_credential': give either it or "
				  "'smtp.password_file', not both",
				  origin_of(m, "smtp.password_credential"));
	pw_key = cred != NULL ? "smtp.password_credential" : "smtp.password_file";
	if (cred != NULL &&
	    (strchr(cred, '/') != NULL || strcmp(cred, ".") == 0 || strcmp(cred, "..") == 0))
		return mg_err_set(err, MG_ECONFIG,
				  "%s: 'smtp.password_credential': expected a credential name "
				  "(a file name without '/'), got \"%.40s\"",
				  origin_of(m, pw_key), cred);
	if (cfg->smtp_username == NULL) {
		if (cred != NULL || cfg->smtp_password_file != NULL)
			return mg_err_set(err, MG_ECONFIG,
					  "%s: '%s': set, but 'smtp.username' is not",
					  origin_of(m, pw_key), pw_key);
		return MG_OK;
	}
	if (cred == NULL && cfg->smtp_password_file == NULL)
		return mg_err_set(err, MG_ECONFIG,
				  "%s: 'smtp.username': needs 'smtp.password_file' or "
				  "'smtp.password_credential'",
				  origin_of(m, "smtp.username"));
	if (cfg->smtp_tls == MG_SMTP_TLS_OFF && !cfg->smtp_auth_allow_plaintext)
		return mg_err_set(err, MG_ECONFIG,
				  "%s: 'smtp.username': AUTH would send the password unencrypted; "
				  "set 'smtp.tls' (or 'smtp.auth_allow_plaintext': true)",
				  origin_of(m, "smtp.username"));
	cfg->smtp_password_origin = mg_strdup(origin_of(m, pw_key));
	if (cfg->smtp_password_origin == NULL)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	return MG_OK;
}

/* The loud warning for smtp.tls_verify false (and for AUTH in the clear). */
static int warn_smtp(struct mg_config *cfg, const struct merge *m)
{
	struct mg_buf b = MG_BUF_INIT(4096);
	int r = MG_OK;

	if (cfg->smtp_tls != MG_SMTP_TLS_OFF && !cfg->smtp_tls_verify)
		r = mg_buf_addf(&b,
				"%s: 'smtp.tls_verify' is false: the SMTP server's certificate "
				"and name are NOT checked, so anyone on the network path can "
				"read and change the mails%s",
				origin_of(m, "smtp.tls_verify"),
				cfg->smtp_username != NULL ? " and take the SMTP password" : "");
	else if (cfg->smtp_username != NULL && cfg->smtp_tls == MG_SMTP_TLS_OFF)
		r = mg_buf_addf(&b,
				"%s: 'smtp.auth_allow_plaintext' is true and 'smtp.tls' is "
				"\"off\": the SMTP password crosses the network unencrypted",
				origin_of(m, "smtp.auth_allow_plaintext"));
	if (r == MG_OK && b.len > 0)
		r = push_warning(cfg, &b);
	mg_buf_release(&b);
	return r;
}

/* A failure to build a key path: out of memory, or (past CF_PATH_MAX) a bad file. */
static int key_path_fail(struct mg_err *err, int r, const char *file)
{
	if (r == MG_ENOMEM)
		return mg_err_set(err, MG_ENOMEM, "%s: out of memory", file);
	return mg_err_set(err, MG_ECONFIG, "%s: a key path is longer than %u bytes", file,
			  CF_PATH_MAX);
}

const char *mg_config_db_param(const struct mg_config *cfg, const char *keyword)
{
	for (size_t i = 0; i < cfg->n_db_params; i++)
		if (strcmp(cfg->db_params[i].keyword, keyword) == 0)
			return cfg->db_params[i].value;
	return NULL;
}

static bool db_original_key(const char *key)
{
	static const char *const original[] = { "name", "username", "password", "host", "port" };

	for (size_t i = 0; i < sizeof(original) / sizeof(original[0]); i++)
		if (strcmp(original[i], key) == 0)
			return true;
	return false;
}

static int db_param_add(struct mg_config *cfg, const char *key, const char *value, const char *file)
{
	struct mg_db_param *p = mg_realloc(cfg->db_params, (cfg->n_db_params + 1) * sizeof(*p));

	if (p == NULL)
		return MG_ENOMEM;
	cfg->db_params = p;
	p += cfg->n_db_params;
	p->keyword = mg_strdup(key);
	p->value = mg_strdup(value);
	p->file = mg_strdup(file);
	if (p->keyword == NULL || p->value == NULL || p->file == NULL) {
		free(p->keyword);
		free(p->value);
		free(p->file);
		return MG_ENOMEM;
	}
	cfg->n_db_params++;
	return MG_OK;
}

/*
 * Collect the libpq keywords of database.event.  A value is a string (no
 * NUL) or an integer (connect_timeout: 10, as psycopg2 takes it); the
 * value is never shown in a message, as it may be secret (sslpassword).
 */
static int db_params_parse(struct mg_config *cfg, const struct merge *m, struct mg_err *err)
{
	struct mg_buf path = MG_BUF_INIT(CF_PATH_MAX);
	struct json_object *event;
	char bad[128], digits[32];
	int r = MG_OK;

	event = lookup(m->root, "database.event", bad, sizeof(bad));
	if (event == NULL || !json_object_is_type(event, json_type_object))
		return MG_OK; /* missing or not an object: reported with its keys */
	json_object_object_foreach(event, key, v)
	{
		const char *file, *s;

		if (db_original_key(key))
			continue;
		mg_buf_reset(&path);
		r = mg_buf_addf(&path, DB_EVENT_PREFIX "%s", key);
		if (r < 0) {
			r = key_path_fail(err, r, m->last_path != NULL ? m->last_path : "(config)");
			break;
		}
		file = origin_of(m, mg_buf_str(&path));
		for (size_t i = 0; i < sizeof(db_refused) / sizeof(db_refused[0]); i++) {
			if (strcmp(db_refused[i].keyword, key) == 0) {
				r = mg_err_set(err, MG_ECONFIG, "%s: '" DB_EVENT_PREFIX "%s': %s",
					       file, key, db_refused[i].why);
				goto out;
			}
		}
		if (json_object_is_type(v, json_type_int)) {
			(void)snprintf(digits, sizeof(digits), "%lld",
				       (long long)json_object_get_int64(v));
			s = digits;
		} else if (json_object_is_type(v, json_type_string)) {
			s = json_object_get_string(v);
			if (strlen(s) != (size_t)json_object_get_string_len(v)) {
				r = mg_err_set(err, MG_ECONFIG,
					       "%s: '" DB_EVENT_PREFIX
					       "%.*s': string contains a NUL byte",
					       file, DB_KEY_SHOWN, key);
				goto out;
			}
		} else {
			r = mg_err_set(
				err, MG_ECONFIG,
				"%s: '" DB_EVENT_PREFIX
				"%.*s': expected a string or an integer (a libpq connection parameter), got %s",
				file, DB_KEY_SHOWN, key, mg_json_type_word(v));
			goto out;
		}
		r = db_param_add(cfg, key, s, file);
		if (r < 0) {
			r = mg_err_set(err, r, "%s: out of memory", file);
			goto out;
		}
	}
out:
	mg_buf_release(&path);
	return r;
}

int mg_config_parse(struct mg_config *cfg, const struct mg_config_src *srcs, size_t n_srcs,
		    struct mg_err *err)
{
	struct merge m = { 0 };
	struct json_object *file = NULL;
	char bad[128];
	int r;

	memset(cfg, 0, sizeof(*cfg));
	m.root = json_object_new_object();
	if (m.root == NULL)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	for (size_t i = 0; i < n_srcs; i++) {
		r = parse_json(&srcs[i], &file, err);
		if (r < 0)
			goto out;
		m.last_path = srcs[i].path;
		r = merge_file(&m, file, srcs[i].path);
		json_object_put(file);
		file = NULL;
		if (r < 0) {
			r = key_path_fail(err, r, srcs[i].path);
			goto out;
		}
	}
	/* The original fails without an openpgp section; so do we, clearly. */
	if (lookup(m.root, "openpgp", bad, sizeof(bad)) == NULL) {
		r = mg_err_set(
			err, MG_ECONFIG,
			"%s: 'openpgp': missing (gnupg_home, always_sign and signing_key are "
			"required)",
			n_srcs > 0 ? srcs[n_srcs - 1].path : "(config)");
		goto out;
	}
	for (size_t i = 0; i < sizeof(cf_keys) / sizeof(cf_keys[0]); i++) {
		const struct cf_key *k = &cf_keys[i];
		struct json_object *v = lookup(m.root, k->path, bad, sizeof(bad));
		const char *where = origin_of(&m, k->path);

		if (bad[0] != '\0') {
			r = mg_err_set(err, MG_ECONFIG, "%s: '%s': expected an object",
				       origin_of(&m, bad), bad);
			goto out;
		}
		if (v == NULL && k->required &&
		    !(k->off == OFF(db_name) &&
		      lookup(m.root, DB_EVENT_PREFIX "service", bad, sizeof(bad)) != NULL)) {
			r = mg_err_set(err, MG_ECONFIG, "%s: '%s': missing, required", where,
				       k->path);
			goto out;
		}
		r = set_key(cfg, k, v, where, err);
		if (r < 0)
			goto out;
	}
	r = db_params_parse(cfg, &m, err);
	if (r < 0)
		goto out;
	if (cfg->always_sign && (cfg->signing_key == NULL || cfg->signing_key[0] == '\0')) {
		r = mg_err_set(
			err, MG_ECONFIG,
			"%s: 'openpgp.signing_key': must name a key when always_sign is true",
			origin_of(&m, "openpgp.signing_key"));
		goto out;
	}
	if (cfg->group_retry_max_sec < cfg->group_retry_min_sec) {
		r = mg_err_set(err, MG_ECONFIG,
			       "%s: 'delivery.group_retry_max_seconds': must not be less than "
			       "'delivery.group_retry_min_seconds' (%d)",
			       origin_of(&m, "delivery.group_retry_max_seconds"),
			       cfg->group_retry_min_sec);
		goto out;
	}
	if (cfg->retry_max_sec < cfg->retry_min_sec) {
		r = mg_err_set(err, MG_ECONFIG,
			       "%s: 'daemon.retry_max_seconds': must not be less than "
			       "'daemon.retry_min_seconds' (%d)",
			       origin_of(&m, "daemon.retry_max_seconds"), cfg->retry_min_sec);
		goto out;
	}
	if (strspn(cfg->notify_channel, "abcdefghijklmnopqrstuvwxyz0123456789_") !=
		    strlen(cfg->notify_channel) ||
	    strlen(cfg->notify_channel) > 63) {
		r = mg_err_set(
			err, MG_ECONFIG,
			"%s: 'daemon.notify_channel': expected 1..63 of [a-z0-9_], got \"%.70s\"",
			origin_of(&m, "daemon.notify_channel"), cfg->notify_channel);
		goto out;
	}
	r = check_smtp(cfg, &m, err);
	if (r < 0)
		goto out;
	/* format_rules_dir wins over the original's key, its alias */
	cfg->rules_dir =
		cfg->format_rules_dir != NULL ? cfg->format_rules_dir : cfg->script_directory;
	if (cfg->rules_dir != NULL) {
		const char *key =
			cfg->format_rules_dir != NULL ? "format_rules_dir" : "script_directory";
		struct mg_buf o = MG_BUF_INIT(4096);

		if (mg_buf_addf(&o, "%s: '%s'", origin_of(&m, key), key) < 0 ||
		    (cfg->rules_dir_origin = mg_buf_detach(&o, NULL)) == NULL) {
			mg_buf_release(&o);
			r = mg_err_set(err, MG_ENOMEM, "out of memory");
			goto out;
		}
	}
	r = warn_smtp(cfg, &m);
	if (r < 0) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	r = check_unknown(cfg, &m, m.root, "");
	if (r < 0) {
		r = key_path_fail(err, r, m.last_path != NULL ? m.last_path : "(config)");
		goto out;
	}
	r = MG_OK;
out:
	json_object_put(file);
	merge_release(&m);
	if (r < 0)
		mg_config_release(cfg);
	return r;
}

bool mg_config_has_formats(const struct mg_config *cfg)
{
	return cfg->rules != NULL || cfg->plugins != NULL;
}
