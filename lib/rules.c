/* lib/rules.c - format rules: parsing, matching, postpone decisions (pure) */
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hdr.h"
#include "mg-alloc.h"
#include "mg-buf.h"
#include "json-util.h"
#include "render.h"
#include "rules.h"
#include "template.h"
#include "util.h"

/*
 * Limits that keep a rule set (and the work per group) bounded; a set that
 * needs more is almost certainly a mistake.
 */
#define RULES_MAX_FILE	   (4 * 1024 * 1024)
#define RULES_MAX_RULES	   1000
#define RULES_MAX_LIST	   1000	    /* patterns, columns, copies, recipients ... */
#define RULES_MAX_DURATION 31622400 /* a year, in seconds */
#define RULES_MAX_VALUE	   65536    /* an expanded substitution */
#define PATH_MAX_LEN	   256

/* ------------------------------------------------------------- glob */

/* Length of the set starting after '[' at p, up to and including ']'; 0 if malformed. */
static size_t set_len(const char *p)
{
	const char *q = p;

	if (*q == '!' || *q == '^')
		q++;
	if (*q == ']') /* a ']' first is a member */
		q++;
	for (; *q != '\0'; q++) {
		if (*q == '\\') {
			if (q[1] == '\0')
				return 0;
			q++;
		} else if (*q == ']') {
			return (size_t)(q - p) + 1;
		}
	}
	return 0;
}

/* Does byte c belong to the set p[0..n) (n from set_len, so p[n - 1] is the ']')? */
static bool set_has(const char *p, size_t n, unsigned char c)
{
	const char *end = p + n - 1;
	bool neg = false, hit = false;

	if (*p == '!' || *p == '^') {
		neg = true;
		p++;
	}
	while (p < end) {
		unsigned char lo, hi;

		if (*p == '\\')
			p++;
		lo = (unsigned char)*p++;
		hi = lo;
		/* a range "a-z"; a '-' last is a member */
		if (p + 1 < end && *p == '-') {
			p++;
			if (*p == '\\')
				p++;
			hi = (unsigned char)*p++;
		}
		if (c >= lo && c <= hi)
			hit = true;
	}
	return hit != neg;
}

/* One pattern element at p: its length, and whether it matches c. */
static size_t elem(const char *p, unsigned char c, bool *ret_hit)
{
	size_t n;

	switch (*p) {
	case '?':
		*ret_hit = true;
		return 1;
	case '[':
		n = set_len(p + 1);
		if (n == 0) {
			*ret_hit = false;
			return 0;
		}
		*ret_hit = set_has(p + 1, n, c);
		return n + 1;
	case '\\':
		if (p[1] == '\0') {
			*ret_hit = false;
			return 0;
		}
		*ret_hit = (unsigned char)p[1] == c;
		return 2;
	default:
		*ret_hit = (unsigned char)*p == c;
		return 1;
	}
}

bool mg_glob_match(const char *pattern, const char *text)
{
	const char *p = pattern, *t = text;
	const char *star_p = NULL, *star_t = NULL;

	if (!mg_glob_check(pattern))
		return false;
	/*
	 * The classic two-pointer match: remember the last '*' and, on a
	 * mismatch, let it swallow one more byte.  Only the last star needs
	 * to be retried, so this is O(len(p) * len(t)).
	 */
	while (*t != '\0') {
		if (*p == '*') {
			while (*p == '*')
				p++;
			star_p = p;
			star_t = t;
			continue;
		}
		if (*p != '\0') {
			bool hit;
			size_t n = elem(p, (unsigned char)*t, &hit);

			if (hit) {
				p += n;
				t++;
				continue;
			}
		}
		if (star_p == NULL)
			return false;
		p = star_p;
		t = ++star_t;
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

bool mg_glob_check(const char *pattern)
{
	for (const char *p = pattern; *p != '\0'; p++) {
		if (*p == '\\') {
			if (p[1] == '\0')
				return false;
			p++;
		} else if (*p == '[') {
			size_t n = set_len(p + 1);

			if (n == 0)
				return false;
			p += n;
		}
	}
	return true;
}

/* ------------------------------------------------------------- the model */

enum { PAT_EXACT, PAT_GLOB };

struct pat {
	int kind;
	char *s;
};

/* Any of pats matches; n == 0 means "not constrained". */
struct str_match {
	struct pat *pats;
	size_t n;
};

enum { AGG_PRESENT, AGG_ABSENT, AGG_MATCH };

struct agg_cond {
	char *key;
	int kind;
	struct str_match m; /* AGG_MATCH */
};

struct agg_match {
	struct agg_cond *conds;
	size_t n;
};

enum { PL_INLINE, PL_ATTACH, PL_BY_SUFFIX, PL_SAME };

struct text2 {
	char *in; /* for inline placement */
	char *at; /* for attachment placement */
};

struct subst_alt {
	char *if_key; /* NULL: always */
	struct text2 v;
};

struct subst_def {
	char *name;
	struct subst_alt *alts;
	size_t n_alts;
};

struct copy_def {
	struct agg_match when;
	char **to;
	size_t n_to;
	int placement; /* PL_INLINE, PL_ATTACH or PL_SAME */
};

struct table {
	char *name;
	struct mg_column *cols; /* field and title owned, except for the built-in */
	size_t n_cols;
	bool builtin;
};

enum { TBL_FIXED, TBL_BY_FORMAT, TBL_MAP };

struct tbl_map {
	char *format;
	size_t table;
};

struct table_choice {
	int kind;
	size_t fixed; /* TBL_FIXED */
	struct tbl_map *map;
	size_t n_map;
};

enum { TMPL_DIRECTIVE, TMPL_FILE, TMPL_INLINE };

struct rule {
	char *name; /* "file: name" */
	struct str_match nf, edf, tmpl_name, rcpt;
	struct agg_match agg;
	bool interval;
	int64_t min_dir_age; /* usec, -1: none */
	int64_t min_obs_age; /* usec, -1: none */
	int tmpl_kind;
	char *tmpl; /* file name or inline text */
	struct table_choice table;
	int placement;
	struct subst_def *subst;
	size_t n_subst;
	struct copy_def *copies;
	size_t n_copies;
	size_t n_global_copies; /* set->copies[0..n) apply too */
};

struct mg_rules {
	struct rule *rules;
	size_t n_rules;
	struct table *tables;
	size_t n_tables;
	struct mg_kv *vars;
	size_t n_vars;
	struct mg_kv *titles;
	size_t n_titles;
	struct copy_def *copies;
	size_t n_copies;
	char **templates;
	size_t n_templates;
};

static void str_match_release(struct str_match *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->pats[i].s);
	free(m->pats);
}

static void agg_match_release(struct agg_match *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->conds[i].key);
		str_match_release(&a->conds[i].m);
	}
	free(a->conds);
}

static void text2_release(struct text2 *t)
{
	if (t->at != t->in)
		free(t->at);
	free(t->in);
}

static void copies_release(struct copy_def *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		agg_match_release(&c[i].when);
		for (size_t j = 0; j < c[i].n_to; j++)
			free(c[i].to[j]);
		free(c[i].to);
	}
	free(c);
}

static void rule_release(struct rule *r)
{
	free(r->name);
	str_match_release(&r->nf);
	str_match_release(&r->edf);
	str_match_release(&r->tmpl_name);
	str_match_release(&r->rcpt);
	agg_match_release(&r->agg);
	free(r->tmpl);
	for (size_t i = 0; i < r->table.n_map; i++)
		free(r->table.map[i].format);
	free(r->table.map);
	for (size_t i = 0; i < r->n_subst; i++) {
		free(r->subst[i].name);
		for (size_t j = 0; j < r->subst[i].n_alts; j++) {
			free(r->subst[i].alts[j].if_key);
			text2_release(&r->subst[i].alts[j].v);
		}
		free(r->subst[i].alts);
	}
	free(r->subst);
	copies_release(r->copies, r->n_copies);
}

void mg_rules_free(struct mg_rules *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->n_rules; i++)
		rule_release(&set->rules[i]);
	free(set->rules);
	for (size_t i = 0; i < set->n_tables; i++) {
		struct table *t = &set->tables[i];

		free(t->name);
		if (!t->builtin) {
			for (size_t j = 0; j < t->n_cols; j++) {
				free((char *)t->cols[j].field);
				free((char *)t->cols[j].title);
			}
			free(t->cols);
		}
	}
	free(set->tables);
	mg_kv_free(set->vars, set->n_vars);
	mg_kv_free(set->titles, set->n_titles);
	copies_release(set->copies, set->n_copies);
	for (size_t i = 0; i < set->n_templates; i++)
		free(set->templates[i]);
	free(set->templates);
	free(set);
}

/* ------------------------------------------------------------- parsing helpers */

/* The state of one parse: which file we are in, for messages. */
struct ctx {
	struct mg_rules *set;
	const char *file;
	struct mg_err *err;
};

/* "file: 'path': problem", MG_ECONFIG. */
static int bad(struct ctx *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int bad(struct ctx *c, const char *path, const char *fmt, ...)
{
	char msg[MG_ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (path[0] == '\0')
		return mg_err_set(c->err, MG_ECONFIG, "%s: %s", c->file, msg);
	return mg_err_set(c->err, MG_ECONFIG, "%s: '%s': %s", c->file, path, msg);
}

static int nomem(struct ctx *c)
{
	return mg_err_set(c->err, MG_ENOMEM, "%s: out of memory", c->file);
}

/* Append ".key" or "[i]" to a JSON path (truncated silently; paths are for messages). */
static void path_key(char *out, const char *base, const char *key)
{
	if (snprintf(out, PATH_MAX_LEN, "%s%s%s", base, base[0] != '\0' ? "." : "", key) >=
	    PATH_MAX_LEN)
		memcpy(out + PATH_MAX_LEN - 4, "...", 4);
}

static void path_idx(char *out, const char *base, size_t i)
{
	if (snprintf(out, PATH_MAX_LEN, "%s[%zu]", base, i) >= PATH_MAX_LEN)
		memcpy(out + PATH_MAX_LEN - 4, "...", 4);
}

/*
 * Parse a file into a JSON object: strict mode, nothing but white space
 * after the value (mg_json_parse_strict), an object at the top.
 */
static int parse_json(struct ctx *c, const struct mg_rules_src *src, struct json_object **ret)
{
	struct json_object *obj = NULL;
	int r;

	if (src->len > RULES_MAX_FILE)
		return bad(c, "", "file too large (more than %d bytes)", RULES_MAX_FILE);
	if (memchr(src->text, '\0', src->len) != NULL)
		return bad(c, "", "NUL byte in the file");
	r = mg_json_parse_strict(c->file, src->text, src->len, &obj, c->err);
	if (r < 0)
		return r;
	if (!json_object_is_type(obj, json_type_object)) {
		r = bad(c, "", "expected a JSON object at the top level, got %s",
			mg_json_type_word(obj));
		json_object_put(obj);
		return r;
	}
	*ret = obj;
	return MG_OK;
}

/* Refuse keys of obj that are not in allowed (NULL-terminated). */
static int check_keys(struct ctx *c, const char *path, struct json_object *obj,
		      const char *const *allowed)
{
	json_object_object_foreach(obj, key, val)
	{
		const char *const *a;
		char p[PATH_MAX_LEN];

		(void)val;
		for (a = allowed; *a != NULL; a++)
			if (strcmp(*a, key) == 0)
				break;
		if (*a == NULL) {
			path_key(p, path, key);
			return bad(c, p, "unknown key");
		}
	}
	return MG_OK;
}

static int want_type(struct ctx *c, const char *path, struct json_object *v, enum json_type t,
		     const char *what)
{
	if (!json_object_is_type(v, t))
		return bad(c, path, "expected %s, got %s", what, mg_json_type_word(v));
	return MG_OK;
}

/* A non-empty string without control characters, valid UTF-8. */
static int want_name(struct ctx *c, const char *path, struct json_object *v, const char **ret)
{
	const char *s;
	int r = want_type(c, path, v, json_type_string, "a string");

	if (r < 0)
		return r;
	s = json_object_get_string(v);
	if (s[0] == '\0')
		return bad(c, path, "must not be empty");
	for (const char *p = s; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return bad(c, path, "control character in the name");
	if (!mg_utf8_valid(s, strlen(s)))
		return bad(c, path, "not valid UTF-8");
	*ret = s;
	return MG_OK;
}

/* Any string, valid UTF-8 (variable values, template text). */
static int want_text(struct ctx *c, const char *path, struct json_object *v, const char **ret)
{
	const char *s;
	int r = want_type(c, path, v, json_type_string, "a string");

	if (r < 0)
		return r;
	s = json_object_get_string(v);
	if (!mg_utf8_valid(s, (size_t)json_object_get_string_len(v)))
		return bad(c, path, "not valid UTF-8");
	*ret = s;
	return MG_OK;
}

static int want_array(struct ctx *c, const char *path, struct json_object *v, bool may_be_empty)
{
	int r = want_type(c, path, v, json_type_array, "an array");

	if (r < 0)
		return r;
	if (!may_be_empty && json_object_array_length(v) == 0)
		return bad(c, path, "must not be empty");
	if (json_object_array_length(v) > RULES_MAX_LIST)
		return bad(c, path, "more than %d entries", RULES_MAX_LIST);
	return MG_OK;
}

static int dup_into(struct ctx *c, const char *s, char **ret)
{
	*ret = mg_strdup(s);
	return *ret == NULL ? nomem(c) : MG_OK;
}

/* Grow *arr (of elements of size sz) so that it holds n + 1; zero the new one. */
static int grow(struct ctx *c, void **arr, size_t n, size_t sz)
{
	char *p = mg_realloc(*arr, (n + 1) * sz);

	if (p == NULL)
		return nomem(c);
	memset(p + n * sz, 0, sz);
	*arr = p;
	return MG_OK;
}

/* Names the renderer provides itself; no variable or substitution may take them. */
static bool reserved_name(const char *name)
{
	return strcmp(name, "ticket_number") == 0 || strcmp(name, "events_as_csv") == 0 ||
	       strcmp(name, "mail_part") == 0 || strcmp(name, "mail_parts") == 0;
}

/* A name a template can write as ${name}: [_a-z][_a-z0-9.]* (case-insensitive, ASCII). */
static bool template_ident(const char *s)
{
	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
		return false;
	for (s++; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '.'))
			return false;
	return true;
}

static const char *empty_lookup(void *arg, const char *name)
{
	return "";
}

/* A substitution value must be a valid template (names are checked when it is used). */
static int check_template_syntax(struct ctx *c, const char *path, const char *s)
{
	struct mg_buf out = MG_BUF_INIT(SIZE_MAX / 2);
	struct mg_err e = { 0 };
	int r;

	r = mg_template_expand(s, strlen(s), empty_lookup, NULL, &out, &e);
	mg_buf_release(&out);
	if (r == MG_ENOMEM)
		return nomem(c);
	if (r < 0)
		return bad(c, path, "%s", e.msg);
	return MG_OK;
}

/*
 * A duration: an integer of seconds, or a string "<n>s", "<n>m", "<n>h",
 * "<n>d"; 0 .. a year.  Stored in usec.
 */
static int want_duration(struct ctx *c, const char *path, struct json_object *v, int64_t *ret)
{
	int64_t n, unit = 1;

	if (json_object_is_type(v, json_type_int)) {
		n = json_object_get_int64(v);
	} else if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);
		size_t len = strlen(s);
		char num[32];

		if (len < 2 || len >= sizeof(num))
			goto fail;
		switch (s[len - 1]) {
		case 's':
			unit = 1;
			break;
		case 'm':
			unit = 60;
			break;
		case 'h':
			unit = 3600;
			break;
		case 'd':
			unit = 86400;
			break;
		default:
			goto fail;
		}
		memcpy(num, s, len - 1);
		num[len - 1] = '\0';
		if (num[0] < '0' || num[0] > '9' || !mg_parse_int64(num, 0, RULES_MAX_DURATION, &n))
			goto fail;
	} else {
		goto fail;
	}
	if (n < 0 || n > RULES_MAX_DURATION / unit)
		goto fail;
	*ret = n * unit * 1000000;
	return MG_OK;
fail:
	return bad(
		c, path,
		"expected a duration like 900, \"15m\", \"2h\" or \"1d\" (at most a year), got %s",
		json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
}

/* ------------------------------------------------------------- matchers */

/* One pattern: "exact" or {"glob": "pattern"}. */
static int parse_pat(struct ctx *c, const char *path, struct json_object *v, struct pat *ret)
{
	static const char *const keys[] = { "glob", NULL };
	struct json_object *g;
	const char *s;
	char p[PATH_MAX_LEN];
	int r;

	if (json_object_is_type(v, json_type_string)) {
		r = want_text(c, path, v, &s);
		if (r < 0)
			return r;
		ret->kind = PAT_EXACT;
		return dup_into(c, s, &ret->s);
	}
	if (!json_object_is_type(v, json_type_object))
		return bad(c, path, "expected a string or {\"glob\": \"pattern\"}, got %s",
			   mg_json_type_word(v));
	r = check_keys(c, path, v, keys);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(v, "glob", &g))
		return bad(c, path, "expected a string or {\"glob\": \"pattern\"}");
	path_key(p, path, "glob");
	r = want_text(c, p, g, &s);
	if (r < 0)
		return r;
	if (!mg_glob_check(s))
		return bad(c, p, "malformed pattern (a '[' without ']', or '\\' at the end)");
	ret->kind = PAT_GLOB;
	return dup_into(c, s, &ret->s);
}

/* A pattern or a non-empty list of patterns. */
static int parse_str_match(struct ctx *c, const char *path, struct json_object *v,
			   struct str_match *m)
{
	char p[PATH_MAX_LEN];
	size_t n;
	int r;

	if (!json_object_is_type(v, json_type_array)) {
		r = grow(c, (void **)&m->pats, 0, sizeof(*m->pats));
		if (r < 0)
			return r;
		m->n = 1;
		return parse_pat(c, path, v, &m->pats[0]);
	}
	r = want_array(c, path, v, false);
	if (r < 0)
		return r;
	n = json_object_array_length(v);
	for (size_t i = 0; i < n; i++) {
		r = grow(c, (void **)&m->pats, m->n, sizeof(*m->pats));
		if (r < 0)
			return r;
		m->n++;
		path_idx(p, path, i);
		r = parse_pat(c, p, json_object_array_get_idx(v, i), &m->pats[i]);
		if (r < 0)
			return r;
	}
	return MG_OK;
}

static bool str_match(const struct str_match *m, const char *s)
{
	if (m->n == 0)
		return true;
	if (s == NULL)
		return false;
	for (size_t i = 0; i < m->n; i++) {
		if (m->pats[i].kind == PAT_EXACT ? strcmp(m->pats[i].s, s) == 0
						 : mg_glob_match(m->pats[i].s, s))
			return true;
	}
	return false;
}

/*
 * Conditions on aggregate identifier keys: {"key": true} present,
 * {"key": false} absent, {"key": pattern or list} a value that matches.
 */
static int parse_agg_match(struct ctx *c, const char *path, struct json_object *v,
			   struct agg_match *a)
{
	int r = want_type(c, path, v, json_type_object, "an object of aggregate identifier keys");

	if (r < 0)
		return r;
	if (json_object_object_length(v) > RULES_MAX_LIST)
		return bad(c, path, "more than %d keys", RULES_MAX_LIST);
	json_object_object_foreach(v, key, val)
	{
		struct agg_cond *cond;
		char p[PATH_MAX_LEN];

		path_key(p, path, key);
		if (key[0] == '\0')
			return bad(c, p, "empty key");
		r = grow(c, (void **)&a->conds, a->n, sizeof(*a->conds));
		if (r < 0)
			return r;
		cond = &a->conds[a->n++];
		r = dup_into(c, key, &cond->key);
		if (r < 0)
			return r;
		if (json_object_is_type(val, json_type_boolean)) {
			cond->kind = json_object_get_boolean(val) ? AGG_PRESENT : AGG_ABSENT;
			continue;
		}
		cond->kind = AGG_MATCH;
		r = parse_str_match(c, p, val, &cond->m);
		if (r < 0)
			return r;
	}
	return MG_OK;
}

static bool agg_match(const struct agg_match *a, const struct mg_group *g)
{
	for (size_t i = 0; i < a->n; i++) {
		const struct agg_cond *cond = &a->conds[i];
		const char *v = mg_group_agg(g, cond->key);

		switch (cond->kind) {
		case AGG_PRESENT:
			if (v == NULL)
				return false;
			break;
		case AGG_ABSENT:
			if (v != NULL)
				return false;
			break;
		default:
			if (v == NULL || !str_match(&cond->m, v))
				return false;
			break;
		}
	}
	return true;
}

/* ------------------------------------------------------------- variables and tables */

static int kv_add(struct ctx *c, struct mg_kv **kv, size_t *n, const char *key, const char *value)
{
	int r = grow(c, (void **)kv, *n, sizeof(**kv));

	if (r < 0)
		return r;
	(*n)++;
	r = dup_into(c, key, &(*kv)[*n - 1].key);
	if (r < 0)
		return r;
	return dup_into(c, value, &(*kv)[*n - 1].value);
}

static const char *kv_get(const struct mg_kv *kv, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(kv[i].key, key) == 0)
			return kv[i].value;
	return NULL;
}

/*
 * variables.json: an object of sections, each an object of name -> text
 * (the original's file has "common_strings" and "substitutions").  All
 * names share one namespace.
 */
static int parse_variables(struct ctx *c, struct json_object *root)
{
	struct mg_rules *set = c->set;
	int r;

	json_object_object_foreach(root, sect, obj)
	{
		r = want_type(c, sect, obj, json_type_object, "an object of variables");
		if (r < 0)
			return r;
		json_object_object_foreach(obj, name, val)
		{
			char p[PATH_MAX_LEN];
			const char *s;

			path_key(p, sect, name);
			if (!template_ident(name))
				return bad(
					c, p,
					"not a name a template can use ([_a-zA-Z][_a-zA-Z0-9.]*)");
			if (reserved_name(name))
				return bad(c, p, "'%s' is set by mailgen itself", name);
			if (kv_get(set->vars, set->n_vars, name) != NULL)
				return bad(c, p, "variable '%s' defined twice", name);
			r = want_text(c, p, val, &s);
			if (r < 0)
				return r;
			if (set->n_vars >= RULES_MAX_LIST * 10)
				return bad(c, p, "too many variables");
			r = kv_add(c, &set->vars, &set->n_vars, name, s);
			if (r < 0)
				return r;
		}
	}
	return MG_OK;
}

static bool column_field_ok(const char *f)
{
	if (strncmp(f, "extra.", 6) == 0)
		return f[6] != '\0';
	/* an IntelMQ field: lower-case words joined by dots and underscores */
	if (!(*f >= 'a' && *f <= 'z'))
		return false;
	for (; *f != '\0'; f++)
		if (!((*f >= 'a' && *f <= 'z') || (*f >= '0' && *f <= '9') || *f == '_' ||
		      *f == '.'))
			return false;
	return true;
}

static struct table *table_find(const struct mg_rules *set, const char *name, size_t *ret_i)
{
	for (size_t i = 0; i < set->n_tables; i++) {
		if (strcmp(set->tables[i].name, name) == 0) {
			if (ret_i != NULL)
				*ret_i = i;
			return &set->tables[i];
		}
	}
	return NULL;
}

/* A column: "field" (standard title) or {"field": ..., "title": ...}. */
static int parse_column(struct ctx *c, const char *path, struct json_object *v,
			struct mg_column *col)
{
	static const char *const keys[] = { "field", "title", NULL };
	struct json_object *f = NULL, *t = NULL;
	const char *field, *title = NULL;
	char p[PATH_MAX_LEN];
	char *fd = NULL, *td = NULL;
	int r;

	if (json_object_is_type(v, json_type_object)) {
		r = check_keys(c, path, v, keys);
		if (r < 0)
			return r;
		if (!json_object_object_get_ex(v, "field", &f))
			return bad(c, path, "missing 'field'");
		(void)json_object_object_get_ex(v, "title", &t);
	} else {
		f = v;
	}
	if (f == v)
		memcpy(p, path, PATH_MAX_LEN);
	else
		path_key(p, path, "field");
	r = want_name(c, p, f, &field);
	if (r < 0)
		return r;
	if (!column_field_ok(field))
		return bad(
			c, p,
			"expected an IntelMQ field (\"source.ip\") or \"extra.<key>\", got \"%s\"",
			field);
	if (t != NULL) {
		path_key(p, path, "title");
		r = want_text(c, p, t, &title);
		if (r < 0)
			return r;
	} else {
		title = kv_get(c->set->titles, c->set->n_titles, field);
		if (title == NULL)
			return bad(c, path, "no title for '%s': give one or add it to \"titles\"",
				   field);
	}
	fd = mg_strdup(field);
	td = mg_strdup(title);
	if (fd == NULL || td == NULL) {
		free(fd);
		free(td);
		return nomem(c);
	}
	col->field = fd;
	col->title = td;
	return MG_OK;
}

/*
 * tables.json: {"titles": {field: title}, "tables": {name: [column, ...]}}.
 * The built-in table "fallback" (the original's eight columns) always exists.
 */
static int parse_tables(struct ctx *c, struct json_object *root)
{
	static const char *const keys[] = { "comment", "titles", "tables", NULL };
	struct mg_rules *set = c->set;
	struct json_object *titles, *tables;
	int r;

	r = check_keys(c, "", root, keys);
	if (r < 0)
		return r;
	if (json_object_object_get_ex(root, "titles", &titles)) {
		r = want_type(c, "titles", titles, json_type_object, "an object of field: title");
		if (r < 0)
			return r;
		json_object_object_foreach(titles, field, val)
		{
			char p[PATH_MAX_LEN];
			const char *s;

			path_key(p, "titles", field);
			if (!column_field_ok(field))
				return bad(c, p, "not an IntelMQ field or \"extra.<key>\"");
			r = want_text(c, p, val, &s);
			if (r < 0)
				return r;
			r = kv_add(c, &set->titles, &set->n_titles, field, s);
			if (r < 0)
				return r;
		}
	}
	if (!json_object_object_get_ex(root, "tables", &tables))
		return MG_OK;
	r = want_type(c, "tables", tables, json_type_object, "an object of name: [columns]");
	if (r < 0)
		return r;
	json_object_object_foreach(tables, name, cols)
	{
		struct table *t;
		char p[PATH_MAX_LEN], pc[PATH_MAX_LEN];
		size_t n;

		path_key(p, "tables", name);
		if (name[0] == '\0')
			return bad(c, p, "empty table name");
		if (table_find(set, name, NULL) != NULL)
			return bad(c, p, "table '%s' is built in", name);
		r = want_array(c, p, cols, false);
		if (r < 0)
			return r;
		r = grow(c, (void **)&set->tables, set->n_tables, sizeof(*set->tables));
		if (r < 0)
			return r;
		t = &set->tables[set->n_tables++];
		r = dup_into(c, name, &t->name);
		if (r < 0)
			return r;
		n = json_object_array_length(cols);
		t->cols = mg_calloc(n, sizeof(*t->cols));
		if (t->cols == NULL)
			return nomem(c);
		for (size_t i = 0; i < n; i++) {
			path_idx(pc, p, i);
			r = parse_column(c, pc, json_object_array_get_idx(cols, i), &t->cols[i]);
			if (r < 0)
				return r;
			t->n_cols++;
		}
	}
	return MG_OK;
}

/* ------------------------------------------------------------- rules */

static int parse_placement(struct ctx *c, const char *path, struct json_object *v, bool copy,
			   int *ret)
{
	const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";

	if (strcmp(s, "inline") == 0)
		*ret = PL_INLINE;
	else if (strcmp(s, "attachment") == 0)
		*ret = PL_ATTACH;
	else if (!copy && strcmp(s, "by_suffix") == 0)
		*ret = PL_BY_SUFFIX;
	else if (copy && strcmp(s, "same") == 0)
		*ret = PL_SAME;
	else
		return bad(c, path, "expected %s, got %s",
			   copy ? "\"inline\", \"attachment\" or \"same\""
				: "\"inline\", \"attachment\" or \"by_suffix\"",
			   json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	return MG_OK;
}

/* A value: "text" for both placements, or {"inline": "...", "attachment": "..."}. */
static int parse_text2(struct ctx *c, const char *path, struct json_object *v, struct text2 *t)
{
	static const char *const keys[] = { "inline", "attachment", NULL };
	struct json_object *in, *at;
	const char *s;
	char p[PATH_MAX_LEN];
	int r;

	if (json_object_is_type(v, json_type_string)) {
		r = want_text(c, path, v, &s);
		if (r < 0)
			return r;
		r = check_template_syntax(c, path, s);
		if (r < 0)
			return r;
		r = dup_into(c, s, &t->in);
		t->at = t->in;
		return r;
	}
	if (!json_object_is_type(v, json_type_object))
		return bad(c, path,
			   "expected a string or {\"inline\": ..., \"attachment\": ...}, got %s",
			   mg_json_type_word(v));
	r = check_keys(c, path, v, keys);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(v, "inline", &in) ||
	    !json_object_object_get_ex(v, "attachment", &at))
		return bad(c, path, "needs both \"inline\" and \"attachment\"");
	path_key(p, path, "inline");
	r = want_text(c, p, in, &s);
	if (r == MG_OK)
		r = check_template_syntax(c, p, s);
	if (r == MG_OK)
		r = dup_into(c, s, &t->in);
	if (r < 0)
		return r;
	t->at = NULL; /* t->in is owned now; t->at != t->in until it is set */
	path_key(p, path, "attachment");
	r = want_text(c, p, at, &s);
	if (r == MG_OK)
		r = check_template_syntax(c, p, s);
	if (r == MG_OK)
		r = dup_into(c, s, &t->at);
	return r;
}

/*
 * "substitutions": {name: value}, value a text2, or {"first_of": [{"if":
 * "key", "value": text2}, ..., {"value": text2}]}.
 */
static int parse_substs(struct ctx *c, const char *path, struct json_object *v, struct rule *rule)
{
	int r = want_type(c, path, v, json_type_object, "an object of name: value");

	if (r < 0)
		return r;
	json_object_object_foreach(v, name, val)
	{
		static const char *const alt_keys[] = { "if", "value", NULL };
		struct json_object *fo;
		struct subst_def *sd;
		char p[PATH_MAX_LEN], pa[PATH_MAX_LEN], pk[PATH_MAX_LEN];
		size_t n;

		path_key(p, path, name);
		if (!template_ident(name))
			return bad(c, p, "not a name a template can use ([_a-zA-Z][_a-zA-Z0-9.]*)");
		if (reserved_name(name))
			return bad(c, p, "'%s' is set by mailgen itself", name);
		r = grow(c, (void **)&rule->subst, rule->n_subst, sizeof(*rule->subst));
		if (r < 0)
			return r;
		sd = &rule->subst[rule->n_subst++];
		r = dup_into(c, name, &sd->name);
		if (r < 0)
			return r;
		if (!json_object_is_type(val, json_type_object) ||
		    !json_object_object_get_ex(val, "first_of", &fo)) {
			r = grow(c, (void **)&sd->alts, 0, sizeof(*sd->alts));
			if (r < 0)
				return r;
			sd->n_alts = 1;
			r = parse_text2(c, p, val, &sd->alts[0].v);
			if (r < 0)
				return r;
			continue;
		}
		if (json_object_object_length(val) != 1)
			return bad(c, p, "\"first_of\" takes no other keys beside it");
		path_key(pk, p, "first_of");
		memcpy(p, pk, sizeof(p));
		r = want_array(c, p, fo, false);
		if (r < 0)
			return r;
		n = json_object_array_length(fo);
		for (size_t i = 0; i < n; i++) {
			struct json_object *alt = json_object_array_get_idx(fo, i), *k, *vv;
			struct subst_alt *sa;
			const char *key;

			path_idx(pa, p, i);
			r = want_type(c, pa, alt, json_type_object,
				      "an object {\"if\": key, \"value\": ...}");
			if (r == MG_OK)
				r = check_keys(c, pa, alt, alt_keys);
			if (r < 0)
				return r;
			if (!json_object_object_get_ex(alt, "value", &vv))
				return bad(c, pa, "missing \"value\"");
			r = grow(c, (void **)&sd->alts, sd->n_alts, sizeof(*sd->alts));
			if (r < 0)
				return r;
			sa = &sd->alts[sd->n_alts++];
			if (json_object_object_get_ex(alt, "if", &k)) {
				path_key(pk, pa, "if");
				r = want_name(c, pk, k, &key);
				if (r == MG_OK)
					r = dup_into(c, key, &sa->if_key);
				if (r < 0)
					return r;
			} else if (i + 1 < n) {
				return bad(c, pa, "only the last entry may lack \"if\"");
			}
			path_key(pk, pa, "value");
			r = parse_text2(c, pk, vv, &sa->v);
			if (r < 0)
				return r;
		}
	}
	return MG_OK;
}

/* "copies": [{"when": {agg}, "to": addr or [addr], "placement": ...}] */
static int parse_copies(struct ctx *c, const char *path, struct json_object *v,
			struct copy_def **arr, size_t *n_arr)
{
	static const char *const keys[] = { "when", "to", "placement", "comment", NULL };
	size_t n;
	int r = want_array(c, path, v, true);

	if (r < 0)
		return r;
	n = json_object_array_length(v);
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(v, i), *w, *to, *pl;
		struct copy_def *cd;
		char p[PATH_MAX_LEN], pk[PATH_MAX_LEN], pt[PATH_MAX_LEN];
		size_t n_to;

		path_idx(p, path, i);
		r = want_type(c, p, o, json_type_object, "an object");
		if (r == MG_OK)
			r = check_keys(c, p, o, keys);
		if (r < 0)
			return r;
		r = grow(c, (void **)arr, *n_arr, sizeof(**arr));
		if (r < 0)
			return r;
		cd = &(*arr)[(*n_arr)++];
		cd->placement = PL_SAME;
		if (!json_object_object_get_ex(o, "when", &w))
			return bad(
				c, p,
				"missing \"when\" (which aggregate identifier selects the copy)");
		path_key(pk, p, "when");
		r = parse_agg_match(c, pk, w, &cd->when);
		if (r < 0)
			return r;
		if (cd->when.n == 0)
			return bad(c, pk, "must not be empty");
		if (json_object_object_get_ex(o, "placement", &pl)) {
			path_key(pk, p, "placement");
			r = parse_placement(c, pk, pl, true, &cd->placement);
			if (r < 0)
				return r;
		}
		if (!json_object_object_get_ex(o, "to", &to))
			return bad(c, p, "missing \"to\"");
		path_key(pk, p, "to");
		if (!json_object_is_type(to, json_type_array)) {
			n_to = 1;
		} else {
			r = want_array(c, pk, to, false);
			if (r < 0)
				return r;
			n_to = json_object_array_length(to);
		}
		cd->to = mg_calloc(n_to, sizeof(*cd->to));
		if (cd->to == NULL)
			return nomem(c);
		for (size_t j = 0; j < n_to; j++) {
			struct json_object *a = to;
			const char *addr;
			struct mg_err e = { 0 };

			if (json_object_is_type(to, json_type_array)) {
				a = json_object_array_get_idx(to, j);
				path_idx(pt, pk, j);
			} else {
				memcpy(pt, pk, sizeof(pt));
			}
			r = want_name(c, pt, a, &addr);
			if (r < 0)
				return r;
			if (mg_addr_check("copy recipient", addr, &e) < 0)
				return bad(c, pt, "%s", e.msg);
			r = dup_into(c, addr, &cd->to[j]);
			if (r < 0)
				return r;
			cd->n_to++;
		}
	}
	return MG_OK;
}

static int add_template_name(struct ctx *c, const char *name)
{
	struct mg_rules *set = c->set;
	int r;

	for (size_t i = 0; i < set->n_templates; i++)
		if (strcmp(set->templates[i], name) == 0)
			return MG_OK;
	r = grow(c, (void **)&set->templates, set->n_templates, sizeof(*set->templates));
	if (r < 0)
		return r;
	r = dup_into(c, name, &set->templates[set->n_templates]);
	if (r == MG_OK)
		set->n_templates++;
	return r;
}

/* "template": "file name" or {"text": "Subject\n\nBody"}. */
static int parse_template(struct ctx *c, const char *path, struct json_object *v, struct rule *rule)
{
	static const char *const keys[] = { "text", NULL };
	struct json_object *t;
	struct mg_err e = { 0 };
	char *subj = NULL, *body = NULL;
	const char *s;
	char p[PATH_MAX_LEN];
	int r;

	if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		if (mg_template_check_name(s, &e) < 0)
			return bad(c, path, "%s", e.msg);
		rule->tmpl_kind = TMPL_FILE;
		r = dup_into(c, s, &rule->tmpl);
		if (r == MG_OK)
			r = add_template_name(c, s);
		return r;
	}
	if (!json_object_is_type(v, json_type_object))
		return bad(c, path, "expected a template file name or {\"text\": \"...\"}, got %s",
			   mg_json_type_word(v));
	r = check_keys(c, path, v, keys);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(v, "text", &t))
		return bad(c, path, "missing \"text\"");
	path_key(p, path, "text");
	r = want_text(c, p, t, &s);
	if (r < 0)
		return r;
	r = mg_template_split(s, strlen(s), &subj, &body, &e);
	if (r == MG_OK)
		r = check_template_syntax(c, p, subj);
	else if (r == MG_ENOMEM)
		r = nomem(c);
	else
		r = bad(c, p, "%s", e.msg);
	if (r == MG_OK)
		r = check_template_syntax(c, p, body);
	free(subj);
	free(body);
	if (r < 0)
		return r;
	rule->tmpl_kind = TMPL_INLINE;
	return dup_into(c, s, &rule->tmpl);
}

/*
 * "table": "name", or {"by_event_data_format": true} (the table named like
 * the event_data_format), or {"by_event_data_format": {"format": "table"}}.
 */
static int parse_table_choice(struct ctx *c, const char *path, struct json_object *v,
			      struct table_choice *tc)
{
	static const char *const keys[] = { "by_event_data_format", NULL };
	struct json_object *by;
	const char *name;
	char p[PATH_MAX_LEN];
	int r;

	if (json_object_is_type(v, json_type_string)) {
		r = want_name(c, path, v, &name);
		if (r < 0)
			return r;
		tc->kind = TBL_FIXED;
		if (table_find(c->set, name, &tc->fixed) == NULL)
			return bad(c, path, "no table '%s' (tables.json)", name);
		return MG_OK;
	}
	if (!json_object_is_type(v, json_type_object))
		return bad(c, path,
			   "expected a table name or {\"by_event_data_format\": ...}, got %s",
			   mg_json_type_word(v));
	r = check_keys(c, path, v, keys);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(v, "by_event_data_format", &by))
		return bad(c, path, "missing \"by_event_data_format\"");
	path_key(p, path, "by_event_data_format");
	if (json_object_is_type(by, json_type_boolean) && json_object_get_boolean(by)) {
		tc->kind = TBL_BY_FORMAT;
		return MG_OK;
	}
	r = want_type(c, p, by, json_type_object, "true or an object of event_data_format: table");
	if (r < 0)
		return r;
	tc->kind = TBL_MAP;
	json_object_object_foreach(by, fmt, tv)
	{
		char pk[PATH_MAX_LEN];
		struct tbl_map *m;

		path_key(pk, p, fmt);
		r = want_name(c, pk, tv, &name);
		if (r < 0)
			return r;
		r = grow(c, (void **)&tc->map, tc->n_map, sizeof(*tc->map));
		if (r < 0)
			return r;
		m = &tc->map[tc->n_map++];
		r = dup_into(c, fmt, &m->format);
		if (r < 0)
			return r;
		if (table_find(c->set, name, &m->table) == NULL)
			return bad(c, pk, "no table '%s' (tables.json)", name);
	}
	if (tc->n_map == 0)
		return bad(c, p, "must not be empty");
	return MG_OK;
}

static int parse_match(struct ctx *c, const char *path, struct json_object *v, struct rule *rule)
{
	static const char *const keys[] = { "notification_format", "event_data_format",
					    "template_name",	   "recipient_address",
					    "aggregate",	   NULL };
	struct {
		const char *key;
		struct str_match *m;
	} fields[] = {
		{ "notification_format", &rule->nf },
		{ "event_data_format", &rule->edf },
		{ "template_name", &rule->tmpl_name },
		{ "recipient_address", &rule->rcpt },
	};
	struct json_object *f;
	char p[PATH_MAX_LEN];
	int r = want_type(c, path, v, json_type_object, "an object");

	if (r == MG_OK)
		r = check_keys(c, path, v, keys);
	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (!json_object_object_get_ex(v, fields[i].key, &f))
			continue;
		path_key(p, path, fields[i].key);
		r = parse_str_match(c, p, f, fields[i].m);
		if (r < 0)
			return r;
	}
	if (json_object_object_get_ex(v, "aggregate", &f)) {
		path_key(p, path, "aggregate");
		r = parse_agg_match(c, p, f, &rule->agg);
		if (r < 0)
			return r;
	}
	return MG_OK;
}

static int parse_postpone(struct ctx *c, const char *path, struct json_object *v, struct rule *rule)
{
	static const char *const keys[] = { "interval", "min_directive_age", "min_observation_age",
					    NULL };
	struct json_object *f;
	char p[PATH_MAX_LEN];
	int r = want_type(c, path, v, json_type_object, "an object");

	if (r == MG_OK)
		r = check_keys(c, path, v, keys);
	if (r < 0)
		return r;
	if (json_object_object_get_ex(v, "interval", &f)) {
		path_key(p, path, "interval");
		r = want_type(c, p, f, json_type_boolean, "true or false");
		if (r < 0)
			return r;
		rule->interval = json_object_get_boolean(f);
	}
	if (json_object_object_get_ex(v, "min_directive_age", &f)) {
		path_key(p, path, "min_directive_age");
		r = want_duration(c, p, f, &rule->min_dir_age);
		if (r < 0)
			return r;
	}
	if (json_object_object_get_ex(v, "min_observation_age", &f)) {
		path_key(p, path, "min_observation_age");
		r = want_duration(c, p, f, &rule->min_obs_age);
		if (r < 0)
			return r;
	}
	return MG_OK;
}

static int parse_rule(struct ctx *c, const char *path, struct json_object *v, size_t idx,
		      struct rule *rule)
{
	static const char *const keys[] = { "name",	"comment", "match",	"postpone",
					    "template", "table",   "placement", "substitutions",
					    "copies",	NULL };
	struct json_object *f;
	struct mg_buf label = MG_BUF_INIT(1024);
	const char *name = NULL;
	char p[PATH_MAX_LEN], dflt[32];
	int r = want_type(c, path, v, json_type_object, "an object");

	if (r == MG_OK)
		r = check_keys(c, path, v, keys);
	if (r < 0)
		return r;
	rule->min_dir_age = -1;
	rule->min_obs_age = -1;
	rule->placement = PL_BY_SUFFIX;
	rule->table.kind = TBL_FIXED;
	rule->table.fixed = 0; /* "fallback" */
	if (json_object_object_get_ex(v, "name", &f)) {
		path_key(p, path, "name");
		r = want_name(c, p, f, &name);
		if (r < 0)
			return r;
	} else {
		(void)snprintf(dflt, sizeof(dflt), "rules[%zu]", idx);
		name = dflt;
	}
	r = mg_buf_addf(&label, "%s: %s", c->file, name);
	if (r == MG_OK) {
		rule->name = mg_buf_detach(&label, NULL);
		if (rule->name == NULL)
			r = MG_ENOMEM;
	}
	mg_buf_release(&label);
	if (r == MG_ENOMEM)
		return nomem(c);
	if (r < 0)
		return bad(c, path, "rule name too long");
	/* the rule being parsed is the last one of the set */
	for (size_t i = 0; i + 1 < c->set->n_rules; i++)
		if (strcmp(c->set->rules[i].name, rule->name) == 0)
			return bad(c, path, "rule name '%s' used twice in the file", name);
	if (json_object_object_get_ex(v, "match", &f)) {
		path_key(p, path, "match");
		r = parse_match(c, p, f, rule);
		if (r < 0)
			return r;
	}
	if (json_object_object_get_ex(v, "postpone", &f)) {
		path_key(p, path, "postpone");
		r = parse_postpone(c, p, f, rule);
		if (r < 0)
			return r;
	}
	if (json_object_object_get_ex(v, "template", &f)) {
		path_key(p, path, "template");
		r = parse_template(c, p, f, rule);
		if (r < 0)
			return r;
	}
	if (json_object_object_get_ex(v, "table", &f)) {
		path_key(p, path, "table");
		r = parse_table_choice(c, p, f, &rule->table);
		if (r < 0)
			return r;
	}
	if (json_object_object_get_ex(v, "placement", &f)) {
		path_key(p, path, "placement");
		r = parse_placement(c, p, f, false, &rule->placement);
		if (r < 0)
			return r;
	}
	if (json_object_object_get_ex(v, "substitutions", &f)) {
		path_key(p, path, "substitutions");
		r = parse_substs(c, p, f, rule);
		if (r < 0)
			return r;
	}
	if (json_object_object_get_ex(v, "copies", &f)) {
		path_key(p, path, "copies");
		r = parse_copies(c, p, f, &rule->copies, &rule->n_copies);
		if (r < 0)
			return r;
	}
	rule->n_global_copies = c->set->n_copies;
	return MG_OK;
}

/* A rule file: {"comment": ..., "copies": [...], "rules": [...]}. */
static int parse_rule_file(struct ctx *c, struct json_object *root)
{
	static const char *const keys[] = { "comment", "copies", "rules", NULL };
	struct mg_rules *set = c->set;
	struct json_object *f;
	size_t n;
	int r;

	r = check_keys(c, "", root, keys);
	if (r < 0)
		return r;
	if (json_object_object_get_ex(root, "copies", &f)) {
		r = parse_copies(c, "copies", f, &set->copies, &set->n_copies);
		if (r < 0)
			return r;
	}
	if (!json_object_object_get_ex(root, "rules", &f))
		return MG_OK; /* a file of copies only, as the original's 01_constituency_copies */
	r = want_array(c, "rules", f, true);
	if (r < 0)
		return r;
	n = json_object_array_length(f);
	for (size_t i = 0; i < n; i++) {
		char p[PATH_MAX_LEN];

		if (set->n_rules >= RULES_MAX_RULES)
			return bad(c, "rules", "more than %d rules in the set", RULES_MAX_RULES);
		r = grow(c, (void **)&set->rules, set->n_rules, sizeof(*set->rules));
		if (r < 0)
			return r;
		set->n_rules++;
		path_idx(p, "rules", i);
		r = parse_rule(c, p, json_object_array_get_idx(f, i), i,
			       &set->rules[set->n_rules - 1]);
		if (r < 0)
			return r;
	}
	return MG_OK;
}

bool mg_rules_is_rule_file(const char *name)
{
	size_t n = strlen(name);

	return n > 7 && name[0] >= '0' && name[0] <= '9' && name[1] >= '0' && name[1] <= '9' &&
	       strchr(name, '/') == NULL && strcmp(name + n - 5, ".json") == 0;
}

static int parse_one(struct ctx *c, const struct mg_rules_src *src,
		     int (*fn)(struct ctx *, struct json_object *))
{
	struct json_object *root = NULL;
	int r;

	c->file = src->name;
	r = parse_json(c, src, &root);
	if (r == MG_OK)
		r = fn(c, root);
	json_object_put(root);
	return r;
}

int mg_rules_parse(const struct mg_rules_src *files, size_t n_files,
		   const struct mg_rules_src *variables, const struct mg_rules_src *tables,
		   struct mg_rules **ret_set, struct mg_err *err)
{
	struct ctx c = { .err = err, .file = "format rules" };
	struct mg_rules *set;
	int r;

	set = mg_calloc(1, sizeof(*set));
	if (set == NULL)
		return nomem(&c);
	c.set = set;
	/* the built-in table: the original's 99fallback.py columns */
	set->tables = mg_calloc(1, sizeof(*set->tables));
	if (set->tables == NULL) {
		r = nomem(&c);
		goto out;
	}
	set->n_tables = 1;
	set->tables[0].builtin = true;
	set->tables[0].cols = (struct mg_column *)mg_table_fallback_columns;
	set->tables[0].n_cols = mg_table_fallback_n_columns;
	r = dup_into(&c, "fallback", &set->tables[0].name);
	if (r < 0)
		goto out;
	if (variables != NULL) {
		r = parse_one(&c, variables, parse_variables);
		if (r < 0)
			goto out;
	}
	if (tables != NULL) {
		r = parse_one(&c, tables, parse_tables);
		if (r < 0)
			goto out;
	}
	for (size_t i = 0; i < n_files; i++) {
		c.file = files[i].name;
		if (!mg_rules_is_rule_file(files[i].name)) {
			r = bad(&c, "", "not a rule file name (NN_name.json)");
			goto out;
		}
		if (i > 0 && strcmp(files[i - 1].name, files[i].name) >= 0) {
			r = bad(&c, "",
				"rule files must be given in name order, without duplicates");
			goto out;
		}
		r = parse_one(&c, &files[i], parse_rule_file);
		if (r < 0)
			goto out;
	}
	*ret_set = set;
	set = NULL;
	r = MG_OK;
out:
	mg_rules_free(set);
	return r;
}

size_t mg_rules_count(const struct mg_rules *set)
{
	return set->n_rules;
}

size_t mg_rules_template_count(const struct mg_rules *set)
{
	return set->n_templates;
}

const char *mg_rules_template(const struct mg_rules *set, size_t i)
{
	return i < set->n_templates ? set->templates[i] : NULL;
}

/* ------------------------------------------------------------- deciding */

/* The table for g, or NULL when the rule's map has none (the rule does not match). */
static const struct table *choose_table(const struct mg_rules *set, const struct rule *rule,
					const struct mg_group *g)
{
	const char *fmt = g->event_data_format != NULL ? g->event_data_format : "";

	switch (rule->table.kind) {
	case TBL_FIXED:
		return &set->tables[rule->table.fixed];
	case TBL_BY_FORMAT:
		return table_find(set, fmt, NULL);
	default:
		for (size_t i = 0; i < rule->table.n_map; i++)
			if (strcmp(rule->table.map[i].format, fmt) == 0)
				return &set->tables[rule->table.map[i].table];
		return NULL;
	}
}

static bool rule_matches(const struct rule *rule, const struct mg_group *g)
{
	return str_match(&rule->nf, g->notification_format) &&
	       str_match(&rule->edf, g->event_data_format) &&
	       str_match(&rule->tmpl_name, g->template_name) &&
	       str_match(&rule->rcpt, g->recipient_address) && agg_match(&rule->agg, g);
}

static int64_t add_sat(int64_t a, int64_t b)
{
	if (b > 0 && a > INT64_MAX - b)
		return INT64_MAX;
	return a + b;
}

/* Lookup for expanding substitution values: the aggregate identifier, then the variables. */
struct value_ctx {
	const struct mg_rules *set;
	const struct mg_group *g;
};

static const char *value_lookup(void *arg, const char *name)
{
	const struct value_ctx *vc = arg;
	const char *v = mg_group_agg(vc->g, name);

	return v != NULL ? v : kv_get(vc->set->vars, vc->set->n_vars, name);
}

static int expand_value(const struct value_ctx *vc, const char *tmpl, char **ret,
			struct mg_err *err)
{
	struct mg_buf out = MG_BUF_INIT(RULES_MAX_VALUE);
	int r;

	r = mg_template_expand(tmpl, strlen(tmpl), value_lookup, (void *)vc, &out, err);
	if (r == MG_OK) {
		*ret = mg_buf_detach(&out, NULL);
		if (*ret == NULL)
			r = mg_err_set(err, MG_ENOMEM, "out of memory");
	}
	mg_buf_release(&out);
	return r;
}

static int expand_substs(const struct mg_rules *set, const struct rule *rule,
			 const struct mg_group *g, struct mg_rule_decision *d, struct mg_err *err)
{
	struct value_ctx vc = { set, g };
	int r;

	if (rule->n_subst == 0)
		return MG_OK;
	d->subst = mg_calloc(rule->n_subst, sizeof(*d->subst));
	if (d->subst == NULL)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	for (size_t i = 0; i < rule->n_subst; i++) {
		const struct subst_def *sd = &rule->subst[i];
		const struct subst_alt *alt = NULL;
		struct mg_rule_subst *s = &d->subst[d->n_subst++];

		s->name = sd->name;
		for (size_t j = 0; j < sd->n_alts && alt == NULL; j++)
			if (sd->alts[j].if_key == NULL ||
			    mg_group_agg(g, sd->alts[j].if_key) != NULL)
				alt = &sd->alts[j];
		r = expand_value(&vc, alt != NULL ? alt->v.in : "", &s->inline_value, err);
		if (r == MG_OK)
			r = expand_value(&vc, alt != NULL ? alt->v.at : "", &s->attach_value, err);
		if (r < 0)
			return mg_err_prefix(err, "rule '%s', substitution '%s': ", rule->name,
					     sd->name);
	}
	return MG_OK;
}

static int add_copies(const struct copy_def *defs, size_t n, const struct mg_group *g,
		      struct mg_rule_decision *d, struct mg_err *err)
{
	for (size_t i = 0; i < n; i++) {
		struct mg_rule_copy *cp;

		if (!agg_match(&defs[i].when, g))
			continue;
		cp = mg_realloc(d->copies, (d->n_copies + 1) * sizeof(*d->copies));
		if (cp == NULL)
			return mg_err_set(err, MG_ENOMEM, "out of memory");
		d->copies = cp;
		cp = &d->copies[d->n_copies++];
		cp->to = (const char *const *)defs[i].to;
		cp->n_to = defs[i].n_to;
		cp->attach_csv = defs[i].placement == PL_SAME	  ? d->attach_csv
				 : defs[i].placement == PL_ATTACH ? true
								  : false;
	}
	return MG_OK;
}

/* Raise *due to t when later, naming the condition. */
static void later(int64_t *due, const char **why, int64_t t, const char *what)
{
	if (t > *due) {
		*due = t;
		*why = what;
	}
}

int mg_rules_decide(const struct mg_rules *set, const struct mg_group *g, int64_t now,
		    struct mg_rule_decision *ret, struct mg_err *err)
{
	struct mg_rule_decision d = { .set = set, .verdict = MG_RULE_NONE };
	const struct rule *rule = NULL;
	const struct table *tbl = NULL;
	int64_t due = INT64_MIN;
	const char *why = NULL;
	int r;

	for (size_t i = 0; i < set->n_rules && rule == NULL; i++) {
		if (!rule_matches(&set->rules[i], g))
			continue;
		tbl = choose_table(set, &set->rules[i], g);
		if (tbl != NULL)
			rule = &set->rules[i];
	}
	if (rule == NULL) {
		*ret = d;
		return MG_OK;
	}
	d.rule = rule->name;
	switch (rule->tmpl_kind) {
	case TMPL_DIRECTIVE:
		d.template_name = g->template_name;
		break;
	case TMPL_FILE:
		d.template_name = rule->tmpl;
		break;
	default:
		d.template_name = rule->name;
		d.template_inline = true;
		d.template_text = rule->tmpl;
		d.template_len = strlen(rule->tmpl);
		break;
	}
	d.table = tbl->name;
	d.cols = tbl->cols;
	d.n_cols = tbl->n_cols;
	switch (rule->placement) {
	case PL_ATTACH:
		d.attach_csv = true;
		break;
	case PL_BY_SUFFIX:
		d.attach_csv = g->event_data_format != NULL &&
			       mg_render_wants_attachment(g->event_data_format);
		break;
	default:
		d.attach_csv = false;
		break;
	}

	/* the postpone conditions; a mail already in the outbox goes as it is */
	if (!g->has_outbox) {
		if (rule->interval && g->has_last_sent)
			later(&due, &why,
			      add_sat(add_sat(g->last_sent, g->interval_sec > INT64_MAX / 1000000
								    ? INT64_MAX
								    : g->interval_sec * 1000000),
				      1),
			      "notification interval");
		if (rule->min_dir_age >= 0)
			later(&due, &why, add_sat(g->inserted_at, rule->min_dir_age),
			      "newest directive age");
		if (rule->min_obs_age >= 0) {
			const char *obs = mg_group_agg(g, "time.observation");
			int64_t t;

			if (obs != NULL) {
				if (!mg_parse_timestamp(obs, &t)) {
					r = mg_err_set(err, MG_EINPUT,
						       "rule '%s': aggregate identifier "
						       "'time.observation' is not a timestamp",
						       rule->name);
					goto out;
				}
				later(&due, &why, add_sat(t, rule->min_obs_age), "observation age");
			}
		}
		if (g->retry_at != 0)
			later(&due, &why, g->retry_at, "retry after a temporary failure");
	}
	d.due_at = due == INT64_MIN ? now : due;
	if (d.due_at > now) {
		d.verdict = MG_RULE_POSTPONED;
		d.postponed_by = why;
		*ret = d;
		return MG_OK;
	}
	d.verdict = MG_RULE_SEND;
	r = expand_substs(set, rule, g, &d, err);
	if (r == MG_OK)
		r = add_copies(set->copies, rule->n_global_copies, g, &d, err);
	if (r == MG_OK)
		r = add_copies(rule->copies, rule->n_copies, g, &d, err);
	if (r < 0)
		goto out;
	*ret = d;
	memset(&d, 0, sizeof(d));
	r = MG_OK;
out:
	mg_rule_decision_release(&d);
	return r;
}

void mg_rules_decide_fallback(const struct mg_group *g, int64_t now, struct mg_rule_decision *ret)
{
	struct mg_rule_decision d = { .verdict = MG_RULE_SEND, .rule = "built-in fallback" };

	d.due_at = mg_group_due_at(g);
	if (d.due_at <= now) {
		d.due_at = now;
	} else {
		d.verdict = MG_RULE_POSTPONED;
		d.postponed_by = !g->has_outbox && g->retry_at != 0 && d.due_at == g->retry_at
					 ? "retry after a temporary failure"
					 : "notification interval";
	}
	d.template_name = g->template_name;
	d.table = "fallback";
	d.cols = mg_table_fallback_columns;
	d.n_cols = mg_table_fallback_n_columns;
	d.attach_csv =
		g->event_data_format != NULL && mg_render_wants_attachment(g->event_data_format);
	*ret = d;
}

bool mg_rules_column_field_ok(const char *field)
{
	return column_field_ok(field);
}

bool mg_rules_subst_name_ok(const char *name)
{
	return template_ident(name) && !reserved_name(name);
}

void mg_rule_decision_release(struct mg_rule_decision *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n_subst; i++) {
		free(d->subst[i].inline_value);
		free(d->subst[i].attach_value);
	}
	free(d->subst);
	free(d->copies);
	if (d->owner_free != NULL)
		d->owner_free(d->owner);
	memset(d, 0, sizeof(*d));
}

const char *mg_rule_decision_lookup(const struct mg_rule_decision *d, bool attach_csv,
				    const char *name)
{
	for (size_t i = 0; i < d->n_subst; i++)
		if (strcmp(d->subst[i].name, name) == 0)
			return attach_csv ? d->subst[i].attach_value : d->subst[i].inline_value;
	if (d->set == NULL)
		return NULL;
	return kv_get(d->set->vars, d->set->n_vars, name);
}
