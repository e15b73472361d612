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
