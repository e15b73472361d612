/* lib/directive.c - the group model (pure) */
#include <stdlib.h>
#include <string.h>

#include "directive.h"
#include "mg-alloc.h"
#include "mg-buf.h"
#include "util.h"

void mg_kv_free(struct mg_kv *kv, size_t n)
{
	if (kv == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

void mg_group_release(struct mg_group *g)
{
	if (g == NULL)
		return;
	free(g->recipient_address);
	free(g->template_name);
	free(g->notification_format);
	free(g->event_data_format);
	free(g->aggregate_literal);
	mg_kv_free(g->agg, g->n_agg);
	free(g->directive_ids);
	free(g->directive_events);
	free(g->event_ids);
	memset(g, 0, sizeof(*g));
}

/*
 * A small reader for PostgreSQL's array output syntax (docs: "Array
 * Value Input"): elements are separated by ',', nested in '{}', and are
 * either unquoted (no white space, braces, commas, quotes or backslashes)
 * or double-quoted with backslash escapes.  NULL unquoted is SQL NULL.
 */
struct arr_reader {
	const char *p;
	struct mg_buf elem;
	bool quoted;
};

static int elem_error(int r, struct mg_err *err)
{
	if (r == MG_ENOMEM)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	return mg_err_set(err, MG_EINPUT, "array literal: element too long");
}

static int read_element(struct arr_reader *rd, struct mg_err *err)
{
	int r;

	mg_buf_reset(&rd->elem);
	rd->quoted = false;
	if (*rd->p == '"') {
		rd->quoted = true;
		rd->p++;
		for (;;) {
			char c = *rd->p;

			if (c == '\0')
				return mg_err_set(err, MG_EINPUT,
						  "array literal: unterminated quote");
			rd->p++;
			if (c == '"')
				break;
			if (c == '\\') {
				c = *rd->p;
				if (c == '\0')
					return mg_err_set(err, MG_EINPUT,
							  "array literal: dangling backslash");
				rd->p++;
			}
			r = mg_buf_addc(&rd->elem, c);
			if (r < 0)
				return elem_error(r, err);
		}
		return MG_OK;
	}
	while (*rd->p != '\0' && *rd->p != ',' && *rd->p != '}' && *rd->p != '{') {
		if (*rd->p == '"' || *rd->p == '\\')
			return mg_err_set(err, MG_EINPUT,
					  "array literal: stray quote or backslash");
		r = mg_buf_addc(&rd->elem, *rd->p);
		if (r < 0)
			return elem_error(r, err);
		rd->p++;
	}
	if (rd->elem.len == 0)
		return mg_err_set(err, MG_EINPUT, "array literal: empty element");
	return MG_OK;
}

static bool element_is_null(const struct arr_reader *rd)
{
	return !rd->quoted && strcasecmp(mg_buf_str(&rd->elem), "NULL") == 0;
}

int mg_pgarray_parse_pairs(const char *lit, struct mg_kv **ret_kv, size_t *ret_n,
			   struct mg_err *err)
{
	struct arr_reader rd = { .p = lit, .elem = MG_BUF_INIT(1 << 20) };
	struct mg_kv *kv = NULL, *grown;
	size_t n = 0;
	int r;

	if (*rd.p++ != '{') {
		r = mg_err_set(err, MG_EINPUT, "aggregate identifier: expected '{'");
		goto out;
	}
	if (*rd.p == '}') {
		rd.p++;
		goto done;
	}
	for (;;) {
		char *parts[2] = { NULL, NULL };

		if (*rd.p++ != '{') {
			r = mg_err_set(err, MG_EINPUT,
				       "aggregate identifier: expected pairs like {key,value}");
			goto out;
		}
		for (int i = 0; i < 2; i++) {
			r = read_element(&rd, err);
			if (r == MG_EINPUT)
				mg_err_prefix(err, "aggregate identifier: ");
			if (r == MG_OK && element_is_null(&rd))
				r = mg_err_set(err, MG_EINPUT,
					       "aggregate identifier: NULL element");
			if (r == MG_OK && *rd.p != (i == 0 ? ',' : '}'))
				r = mg_err_set(
					err, MG_EINPUT,
					"aggregate identifier: expected pairs of two elements");
			if (r == MG_OK) {
				parts[i] = mg_strdup(mg_buf_str(&rd.elem));
				if (parts[i] == NULL)
					r = mg_err_set(err, MG_ENOMEM, "out of memory");
			}
			if (r < 0) {
				free(parts[0]);
				free(parts[1]);
				goto out;
			}
			rd.p++;
		}
		grown = mg_realloc(kv, (n + 1) * sizeof(*kv));
		if (grown == NULL) {
			free(parts[0]);
			free(parts[1]);
			r = mg_err_set(err, MG_ENOMEM, "out of memory");
			goto out;
		}
		kv = grown;
		kv[n].key = parts[0];
		kv[n].value = parts[1];
		n++;
		if (*rd.p == ',') {
			rd.p++;
			continue;
		}
		if (*rd.p == '}') {
			rd.p++;
			break;
		}
		r = mg_err_set(err, MG_EINPUT, "aggregate identifier: expected ',' or '}'");
		goto out;
	}
done:
	if (*rd.p != '\0') {
		r = mg_err_set(err, MG_EINPUT, "aggregate identifier: garbage after the array");
		goto out;
	}
	*ret_kv = kv;
	*ret_n = n;
	kv = NULL;
	n = 0;
	r = MG_OK;
out:
	mg_kv_free(kv, n);
	mg_buf_release(&rd.elem);
	return r;
}

int mg_pgarray_parse_ids(const char *lit, int64_t **ret_ids, size_t *ret_n, struct mg_err *err)
{
	struct arr_reader rd = { .p = lit, .elem = MG_BUF_INIT(64) };
	int64_t *ids = NULL, *grown;
	size_t n = 0, alloc = 0;
	int r;

	if (*rd.p++ != '{') {
		r = mg_err_set(err, MG_EINPUT, "id list: expected '{'");
		goto out;
	}
	while (*rd.p != '}') {
		int64_t v;

		r = read_element(&rd, err);
		if (r < 0)
			goto out;
		if (!mg_parse_int64(mg_buf_str(&rd.elem), INT64_MIN, INT64_MAX, &v)) {
			r = mg_err_set(err, MG_EINPUT, "id list: '%s' is not an integer",
				       mg_buf_str(&rd.elem));
			goto out;
		}
		if (n == alloc) {
			alloc = alloc == 0 ? 16 : alloc * 2;
			grown = mg_realloc(ids, alloc * sizeof(*ids));
			if (grown == NULL) {
				r = mg_err_set(err, MG_ENOMEM, "out of memory");
				goto out;
			}
			ids = grown;
		}
		ids[n++] = v;
		if (*rd.p == ',')
			rd.p++;
		else if (*rd.p != '}') {
			r = mg_err_set(err, MG_EINPUT, "id list: expected ',' or '}'");
			goto out;
		}
	}
	if (rd.p[1] != '\0') {
		r = mg_err_set(err, MG_EINPUT, "id list: garbage after the array");
		goto out;
	}
	*ret_ids = ids;
	*ret_n = n;
	ids = NULL;
	r = MG_OK;
out:
	free(ids);
	mg_buf_release(&rd.elem);
	return r;
}

const char *mg_group_agg(const struct mg_group *g, const char *key)
{
	for (size_t i = 0; i < g->n_agg; i++)
		if (strcmp(g->agg[i].key, key) == 0)
			return g->agg[i].value;
	return NULL;
}

static int64_t interval_due_at(const struct mg_group *g)
{
	int64_t interval_usec;

	if (!g->has_last_sent || g->has_outbox)
		return INT64_MIN;
	if (g->interval_sec > INT64_MAX / 1000000 - 1)
		return INT64_MAX;
	interval_usec = g->interval_sec * 1000000;
	if (g->last_sent > INT64_MAX - interval_usec - 1)
		return INT64_MAX;
	/* exceeded means last_sent + interval < now, so due one tick later */
	return g->last_sent + interval_usec + 1;
}

int64_t mg_group_due_at(const struct mg_group *g)
{
	int64_t due = interval_due_at(g);

	return g->retry_at != 0 && g->retry_at > due ? g->retry_at : due;
}

bool mg_group_is_due(const struct mg_group *g, int64_t now)
{
	return mg_group_due_at(g) <= now;
}

static int cmp_int64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The distinct values of ids[0..n), ascending, into a malloc'd array. */
static int distinct_ids(const int64_t *ids, size_t n, int64_t **ret, size_t *ret_n)
{
	int64_t *out;
	size_t k = 0;

	out = mg_malloc((n > 0 ? n : 1) * sizeof(*out));
	if (out == NULL)
		return MG_ENOMEM;
	if (n > 0)
		memcpy(out, ids, n * sizeof(*out));
	qsort(out, n, sizeof(*out), cmp_int64);
	for (size_t i = 0; i < n; i++)
		if (k == 0 || out[k - 1] != out[i])
			out[k++] = out[i];
	*ret = out;
	*ret_n = k;
	return MG_OK;
}

int mg_group_collect_events(struct mg_group *g, struct mg_err *err)
{
	int64_t *ids = NULL;
	size_t n = 0;

	if (g->directive_events == NULL && g->n_directives > 0)
		return mg_err_set(err, MG_EINPUT,
				  "group: the event of each directive is not known");
	if (distinct_ids(g->directive_events, g->n_directives, &ids, &n) < 0)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	free(g->event_ids);
	g->event_ids = ids;
	g->n_events = n;
	return MG_OK;
}

static int64_t *dup_ids(const int64_t *ids, size_t n)
{
	int64_t *out = mg_malloc((n > 0 ? n : 1) * sizeof(*out));

	if (out != NULL && n > 0)
		memcpy(out, ids, n * sizeof(*out));
	return out;
}

static char *dup_opt(const char *s, bool *failed)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = mg_strdup(s);
	if (d == NULL)
		*failed = true;
	return d;
}

/* One part of g: its keys and times, and the directives [off, off + n). */
static int make_part(const struct mg_group *g, size_t off, size_t n, struct mg_group *p)
{
	bool failed = false;

	memset(p, 0, sizeof(*p));
	p->recipient_address = dup_opt(g->recipient_address, &failed);
	p->template_name = dup_opt(g->template_name, &failed);
	p->notification_format = dup_opt(g->notification_format, &failed);
	p->event_data_format = dup_opt(g->event_data_format, &failed);
	p->aggregate_literal = dup_opt(g->aggregate_literal, &failed);
	if (failed)
		goto fail;
	if (g->n_agg > 0) {
		p->agg = mg_calloc(g->n_agg, sizeof(*p->agg));
		if (p->agg == NULL)
			goto fail;
		p->n_agg = g->n_agg;
		for (size_t i = 0; i < g->n_agg; i++) {
			p->agg[i].key = dup_opt(g->agg[i].key, &failed);
			p->agg[i].value = dup_opt(g->agg[i].value, &failed);
		}
		if (failed)
			goto fail;
	}
	p->directive_ids = dup_ids(g->directive_ids + off, n);
	p->directive_events = dup_ids(g->directive_events + off, n);
	if (p->directive_ids == NULL || p->directive_events == NULL)
		goto fail;
	p->n_directives = n;
	if (mg_group_collect_events(p, NULL) < 0)
		goto fail;
	p->inserted_at = g->inserted_at;
	p->interval_sec = g->interval_sec;
	p->last_sent = g->last_sent;
	p->has_last_sent = g->has_last_sent;
	p->has_outbox = g->has_outbox;
	p->retry_at = g->retry_at;
	p->attempts = g->attempts;
	return MG_OK;
fail:
	mg_group_release(p);
	return MG_ENOMEM;
}

int mg_group_split(const struct mg_group *g, size_t max, struct mg_group **ret_parts, size_t *ret_n,
		   struct mg_err *err)
{
	struct mg_group *parts = NULL;
	size_t n_parts, done = 0;
	int r;

	if (g->directive_events == NULL && g->n_directives > 0)
		return mg_err_set(err, MG_EINPUT,
				  "splitting a group: the event of each directive is not known");
	for (size_t i = 1; i < g->n_directives; i++)
		if (g->directive_ids[i - 1] >= g->directive_ids[i])
			return mg_err_set(err, MG_EINPUT,
					  "splitting a group: directive ids not ascending at %zu",
					  i);
	if (max == 0 || max > g->n_directives)
		max = g->n_directives > 0 ? g->n_directives : 1;
	n_parts = g->n_directives > 0 ? (g->n_directives + max - 1) / max : 1;
	parts = mg_calloc(n_parts, sizeof(*parts));
	if (parts == NULL) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	for (; done < n_parts; done++) {
		size_t off = done * max;
		size_t k = g->n_directives - off < max ? g->n_directives - off : max;

		if (make_part(g, off, k, &parts[done]) < 0) {
			r = mg_err_set(err, MG_ENOMEM, "out of memory");
			goto out;
		}
		parts[done].part = done + 1;
		parts[done].n_parts = n_parts;
	}
	*ret_parts = parts;
	*ret_n = n_parts;
	parts = NULL;
	r = MG_OK;
out:
	if (parts != NULL) {
		for (size_t i = 0; i < done; i++)
			mg_group_release(&parts[i]);
		free(parts);
	}
	return r;
}

int mg_groups_split(struct mg_group *groups, size_t n, size_t max, struct mg_group **ret_groups,
		    size_t *ret_n, struct mg_err *err)
{
	struct mg_group *out = NULL, *grown, *parts = NULL;
	size_t n_out = 0, n_parts = 0, alloc = n;
	size_t i = 0;
	int r;

	*ret_groups = NULL;
	*ret_n = 0;
	if (n == 0)
		return MG_OK;
	out = mg_calloc(alloc, sizeof(*out));
	if (out == NULL) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	for (; i < n; i++) {
		if (max == 0 || groups[i].n_directives <= max) {
			out[n_out++] = groups[i]; /* moved */
			memset(&groups[i], 0, sizeof(groups[i]));
			continue;
		}
		r = mg_group_split(&groups[i], max, &parts, &n_parts, err);
		if (r < 0)
			goto out;
		/* room for the parts and one slot each for the groups still to come */
		grown = mg_realloc(out, (alloc + n_parts - 1) * sizeof(*out));
		if (grown == NULL) {
			r = mg_err_set(err, MG_ENOMEM, "out of memory");
			goto out;
		}
		out = grown;
		alloc += n_parts - 1;
		memcpy(out + n_out, parts, n_parts * sizeof(*parts));
		n_out += n_parts;
		free(parts);
		parts = NULL;
		n_parts = 0;
		mg_group_release(&groups[i]);
	}
	*ret_groups = out;
	*ret_n = n_out;
	out = NULL;
	n_out = 0;
	r = MG_OK;
out:
	for (size_t k = 0; k < n_parts; k++)
		mg_group_release(&parts[k]);
	free(parts);
	for (size_t k = 0; k < n_out; k++)
		mg_group_release(&out[k]);
	free(out);
	for (; i < n; i++)
		mg_group_release(&groups[i]);
	return r;
}

size_t mg_group_span(const struct mg_group *g, size_t n)
{
	size_t k = 1;

	if (n == 0)
		return 0;
	if (g[0].n_parts <= 1)
		return 1;
	while (k < n && g[k].n_parts == g[0].n_parts && g[k].part == g[0].part + k)
		k++;
	return k;
}
