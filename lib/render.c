/* lib/render.c - one group to subject, body and CSV (pure) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hdr.h"
#include "mg-alloc.h"
#include "mg-buf.h"
#include "render.h"
#include "template.h"

struct subst {
	const struct mg_render_in *in;
	const struct mg_group *group;
	const char *ticket;
	const char *csv;
	char part[24], parts[24]; /* mail_part and mail_parts, "1" and "1" when not split */
};

static const char *subst_lookup(void *arg, const char *name)
{
	const struct subst *s = arg;
	const char *v = NULL;

	/* a format rule's values, chosen by the operator for this group, first */
	if (s->in->lookup != NULL)
		v = s->in->lookup(s->in->lookup_arg, s->in->attach_csv, name);
	if (v != NULL)
		return v;
	v = mg_group_agg(s->group, name);

	/* aggregate identifier keys are added last in the original: they win */
	if (v != NULL)
		return v;
	if (strcmp(name, "ticket_number") == 0)
		return s->ticket;
	if (strcmp(name, "events_as_csv") == 0)
		return s->csv;
	if (strcmp(name, "mail_part") == 0)
		return s->part;
	if (strcmp(name, "mail_parts") == 0)
		return s->parts;
	return NULL;
}

void mg_rendered_release(struct mg_rendered *r)
{
	if (r == NULL)
		return;
	free(r->subject);
	free(r->body);
	free(r->csv);
	memset(r, 0, sizeof(*r));
}

bool mg_render_wants_attachment(const char *event_data_format)
{
	static const char suffix[] = "_csv_attachment";
	size_t n = strlen(event_data_format);

	return n >= sizeof(suffix) - 1 &&
	       strcmp(event_data_format + n - (sizeof(suffix) - 1), suffix) == 0;
}

int mg_render(const struct mg_render_in *in, struct mg_rendered *ret, struct mg_err *err)
{
	struct mg_buf csv = MG_BUF_INIT(in->max_bytes);
	struct mg_buf subject = MG_BUF_INIT(4096);
	struct mg_buf body = MG_BUF_INIT(in->max_bytes);
	struct mg_rendered res = { 0 };
	char *tmpl_subject = NULL, *tmpl_body = NULL;
	struct subst s;
	int r;

	/*
	 * Aggregate values go into subject and body, which are declared UTF-8;
	 * a database with encoding SQL_ASCII can hold any bytes.
	 */
	for (size_t i = 0; i < in->group->n_agg; i++) {
		const struct mg_kv *kv = &in->group->agg[i];

		if (!mg_utf8_valid(kv->key, strlen(kv->key))) {
			r = mg_err_set(err, MG_EINPUT,
				       "aggregate identifier: key %zu is not valid UTF-8", i + 1);
			goto out;
		}
		if (!mg_utf8_valid(kv->value, strlen(kv->value))) {
			r = mg_err_set(err, MG_EINPUT,
				       "aggregate identifier '%s': value is not valid UTF-8",
				       kv->key);
			goto out;
		}
	}
	r = mg_template_split(in->template_text, in->template_len, &tmpl_subject, &tmpl_body, err);
	if (r < 0) {
		mg_err_prefix(err, "template '%s': ", in->template_name);
		goto out;
	}
	r = mg_table_csv(&csv, in->cols, in->n_cols, in->cells, in->n_rows, in->table_flags, err);
	if (r < 0) {
		mg_err_prefix(err, "events as CSV: ");
		goto out;
	}
	s.in = in;
	s.group = in->group;
	s.ticket = in->ticket;
	s.csv = in->attach_csv ? "" : mg_buf_str(&csv);
	(void)snprintf(s.part, sizeof(s.part), "%zu",
		       in->group->n_parts > 0 ? in->group->part : (size_t)1);
	(void)snprintf(s.parts, sizeof(s.parts), "%zu",
		       in->group->n_parts > 0 ? in->group->n_parts : (size_t)1);
	r = mg_template_expand(tmpl_subject, strlen(tmpl_subject), subst_lookup, &s, &subject, err);
	if (r < 0) {
		mg_err_prefix(err, "template '%s', subject: ", in->template_name);
		goto out;
	}
	r = mg_template_expand(tmpl_body, strlen(tmpl_body), subst_lookup, &s, &body, err);
	if (r < 0) {
		mg_err_prefix(err, "template '%s', body: ", in->template_name);
		goto out;
	}
	res.subject = mg_buf_detach(&subject, NULL);
	res.body = mg_buf_detach(&body, NULL);
	if (in->attach_csv)
		res.csv = mg_buf_detach(&csv, &res.csv_len);
	if (res.subject == NULL || res.body == NULL || (in->attach_csv && res.csv == NULL)) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	*ret = res;
	memset(&res, 0, sizeof(res));
	r = MG_OK;
out:
	mg_rendered_release(&res);
	free(tmpl_subject);
	free(tmpl_body);
	mg_buf_release(&csv);
	mg_buf_release(&subject);
	mg_buf_release(&body);
	return r;
}
