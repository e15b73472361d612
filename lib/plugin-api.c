/* lib/plugin-api.c - format plugins: the answer builder and its conversion to a decision */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "plugin-api.h"
#include "render.h"
#include "table.h"
#include "template.h"

#define COLUMNS_MAX	200
#define TITLE_MAX	256
#define SUBSTS_MAX	1000
#define VALUE_MAX	(64 * 1024)
#define REASON_MAX	200
#define PLACEMENT_UNSET (-1)

struct psubst {
	char *name;
	char *inline_value;
	char *attach_value; /* NULL: inline_value */
};

/* What a plugin built; every string owned.  Opaque to plugins. */
struct mg_plugin_answer {
	char *who; /* "file.so: name" */
	int64_t now;
	char *template_name; /* a file in template_dir */
	char *template_text; /* or an inline template */
	struct mg_column *cols;
	size_t n_cols;
	int placement;
	struct psubst *subst;
	size_t n_subst;
	int64_t until;
	char *reason;
	bool postponed;
	bool failed; /* mg_plugin_fail(): msg says why */
	bool broken; /* a builder call was refused: msg says why */
	bool nomem;  /* the first refusal was for want of memory: worth a retry */
	char msg[400];
};

struct mg_plugin_answer *mg_plugin_answer_new(const char *who, int64_t now)
{
	struct mg_plugin_answer *a = mg_calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->who = mg_strdup(who);
	if (a->who == NULL) {
		free(a);
		return NULL;
	}
	a->now = now;
	a->placement = PLACEMENT_UNSET;
	return a;
}

void mg_plugin_answer_free(struct mg_plugin_answer *a)
{
	if (a == NULL)
		return;
	free(a->who);
	free(a->template_name);
	free(a->template_text);
	for (size_t i = 0; i < a->n_cols; i++) {
		free((char *)a->cols[i].field);
		free((char *)a->cols[i].title);
	}
	free(a->cols);
	for (size_t i = 0; i < a->n_subst; i++) {
		free(a->subst[i].name);
		free(a->subst[i].inline_value);
		free(a->subst[i].attach_value);
	}
	free(a->subst);
	free(a->reason);
	free(a);
}

const char *mg_plugin_answer_error(const struct mg_plugin_answer *a)
{
	return a->broken ? a->msg : NULL;
}

/* Record the first refused call; later ones keep it.  Returns -1. */
__attribute__((format(printf, 2, 3))) static int refuse(struct mg_plugin_answer *a, const char *fmt,
							...)
{
	va_list ap;

	if (a->broken)
		return -1;
	a->broken = true;
	va_start(ap, fmt);
	(void)vsnprintf(a->msg, sizeof(a->msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* A builder call failed for want of memory (a group retried, not failed). */
static int refuse_nomem(struct mg_plugin_answer *a)
{
	if (!a->broken)
		a->nomem = true;
	return refuse(a, "out of memory");
}

/* No byte below 0x20 and no DEL: titles and reasons end up in one-line messages. */
static bool printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

int mg_plugin_set_template(struct mg_plugin_answer *a, const char *file_name)
{
	struct mg_err err = { 0 };
	char *copy;

	if (file_name == NULL)
		return refuse(a, "mg_plugin_set_template: no file name");
	if (mg_template_check_name(file_name, &err) < 0)
		return refuse(a, "mg_plugin_set_template: %s", err.msg);
	copy = mg_strdup(file_name);
	if (copy == NULL)
		return refuse_nomem(a);
	free(a->template_name);
	free(a->template_text);
	a->template_name = copy;
	a->template_text = NULL;
	return 0;
}

int mg_plugin_set_template_text(struct mg_plugin_answer *a, const char *text)
{
	char *copy;

	if (text == NULL)
		return refuse(a, "mg_plugin_set_template_text: no text");
	if (strlen(text) > MG_TEMPLATE_MAX_BYTES)
		return refuse(a, "mg_plugin_set_template_text: more than %d bytes",
			      MG_TEMPLATE_MAX_BYTES);
	copy = mg_strdup(text);
	if (copy == NULL)
		return refuse_nomem(a);
	free(a->template_name);
	free(a->template_text);
	a->template_name = NULL;
	a->template_text = copy;
	return 0;
}

int mg_plugin_add_column(struct mg_plugin_answer *a, const char *field, const char *title)
{
	struct mg_column *cols;
	char *f, *t;

	if (field == NULL || !mg_rules_column_field_ok(field))
		return refuse(a,
			      "mg_plugin_add_column: '%.100s' is not an IntelMQ field or "
			      "extra.<key>",
			      field != NULL ? field : "(null)");
	if (title == NULL || title[0] == '\0' || strlen(title) > TITLE_MAX || !printable(title))
		return refuse(a,
			      "mg_plugin_add_column: the title of '%.100s' must be 1..%d bytes "
			      "without control characters",
			      field, TITLE_MAX);
	if (a->n_cols >= COLUMNS_MAX)
		return refuse(a, "mg_plugin_add_column: more than %d columns", COLUMNS_MAX);
	cols = mg_realloc(a->cols, (a->n_cols + 1) * sizeof(*cols));
	if (cols == NULL)
		return refuse_nomem(a);
	a->cols = cols;
	f = mg_strdup(field);
	t = mg_strdup(title);
	if (f == NULL || t == NULL) {
		free(f);
		free(t);
		return refuse_nomem(a);
	}
	cols[a->n_cols].field = f;
	cols[a->n_cols].title = t;
	a->n_cols++;
	return 0;
}

int mg_plugin_set_placement(struct mg_plugin_answer *a, enum mg_plugin_placement placement)
{
	switch (placement) {
	case MG_PLUGIN_BY_SUFFIX:
	case MG_PLUGIN_INLINE:
	case MG_PLUGIN_ATTACHMENT:
		a->placement = (int)placement;
		return 0;
	}
	return refuse(a, "mg_plugin_set_placement: unknown placement %d", (int)placement);
}

static int check_value(struct mg_plugin_answer *a, const char *name, const char *v)
{
	if (strlen(v) > VALUE_MAX)
		return refuse(a, "mg_plugin_set_subst: the value of '%s' has more than %d bytes",
			      name, VALUE_MAX);
	return 0;
}

int mg_plugin_set_subst(struct mg_plugin_answer *a, const char *name, const char *inline_value,
			const char *attach_value)
{
	struct psubst *s = NULL, *arr;
	char *iv, *av = NULL;

	if (name == NULL || strlen(name) > 200 || !mg_rules_subst_name_ok(name))
		return refuse(a,
			      "mg_plugin_set_subst: '%.100s' is not a name a template can use "
			      "([_a-zA-Z][_a-zA-Z0-9.]*, not ticket_number, events_as_csv, "
			      "mail_part or mail_parts)",
			      name != NULL ? name : "(null)");
	if (inline_value == NULL)
		return refuse(a, "mg_plugin_set_subst: no value for '%s'", name);
	if (check_value(a, name, inline_value) < 0 ||
	    (attach_value != NULL && check_value(a, name, attach_value) < 0))
		return -1;
	for (size_t i = 0; i < a->n_subst; i++)
		if (strcmp(a->subst[i].name, name) == 0)
			s = &a->subst[i];
	if (s == NULL && a->n_subst >= SUBSTS_MAX)
		return refuse(a, "mg_plugin_set_subst: more than %d substitutions", SUBSTS_MAX);
	iv = mg_strdup(inline_value);
	if (attach_value != NULL)
		av = mg_strdup(attach_value);
	if (iv == NULL || (attach_value != NULL && av == NULL))
		goto nomem;
	if (s == NULL) {
		arr = mg_realloc(a->subst, (a->n_subst + 1) * sizeof(*arr));
		if (arr == NULL)
			goto nomem;
		a->subst = arr;
		s = &arr[a->n_subst];
		s->name = mg_strdup(name);
		if (s->name == NULL)
			goto nomem;
		s->inline_value = s->attach_value = NULL;
		a->n_subst++;
	}
	free(s->inline_value);
	free(s->attach_value);
	s->inline_value = iv;
	s->attach_value = av;
	return 0;
nomem:
	free(iv);
	free(av);
	return refuse_nomem(a);
}

enum mg_plugin_verdict mg_plugin_postpone(struct mg_plugin_answer *a, int64_t until,
					  const char *reason)
{
	char *copy;

	if (until <= a->now) {
		(void)refuse(
			a, "mg_plugin_postpone: %lld is not after now (%lld usec since the epoch)",
			(long long)until, (long long)a->now);
		return MG_PLUGIN_FAIL;
	}
	if (reason == NULL || reason[0] == '\0' || strlen(reason) > REASON_MAX ||
	    !printable(reason)) {
		(void)refuse(a,
			     "mg_plugin_postpone: the reason must be 1..%d bytes without control "
			     "characters",
			     REASON_MAX);
		return MG_PLUGIN_FAIL;
	}
	copy = mg_strdup(reason);
	if (copy == NULL) {
		(void)refuse_nomem(a);
		return MG_PLUGIN_FAIL;
	}
	free(a->reason);
	a->reason = copy;
	a->until = until;
	a->postponed = true;
	return MG_PLUGIN_POSTPONE;
}

enum mg_plugin_verdict mg_plugin_fail(struct mg_plugin_answer *a, const char *fmt, ...)
{
	va_list ap;

	if (!a->failed && !a->broken) {
		a->failed = true;
		va_start(ap, fmt);
		(void)vsnprintf(a->msg, sizeof(a->msg), fmt, ap);
		va_end(ap);
	}
	return MG_PLUGIN_FAIL;
}

const char *mg_plugin_group_get(const struct mg_plugin_group *g, const char *key)
{
	for (size_t i = 0; i < g->n_aggregate; i++)
		if (strcmp(g->aggregate[i].key, key) == 0)
			return g->aggregate[i].value;
	return NULL;
}

int mg_plugin_group_view(const struct mg_group *g, int64_t now, struct mg_plugin_group *view,
			 struct mg_plugin_kv **ret_kv, struct mg_err *err)
{
	struct mg_plugin_kv *kv = mg_calloc(g->n_agg > 0 ? g->n_agg : 1, sizeof(*kv));

	if (kv == NULL)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	for (size_t i = 0; i < g->n_agg; i++) {
		kv[i].key = g->agg[i].key;
		kv[i].value = g->agg[i].value;
	}
	memset(view, 0, sizeof(*view));
	view->recipient_address = g->recipient_address;
	view->template_name = g->template_name;
	view->notification_format = g->notification_format != NULL ? g->notification_format : "";
	view->event_data_format = g->event_data_format != NULL ? g->event_data_format : "";
	view->aggregate = kv;
	view->n_aggregate = g->n_agg;
	view->n_directives = g->n_directives;
	view->inserted_at = g->inserted_at;
	view->has_last_sent = g->has_last_sent;
	view->last_sent = g->has_last_sent ? g->last_sent : 0;
	view->interval_sec = g->interval_sec;
	view->now = now;
	*ret_kv = kv;
	return MG_OK;
}

static void answer_free(void *a)
{
	mg_plugin_answer_free(a);
}

/* The answer's substitutions as the decision holds them: names borrowed, values owned. */
static int move_substs(struct mg_plugin_answer *a, struct mg_rule_decision *d)
{
	if (a->n_subst == 0)
		return MG_OK;
	d->subst = mg_calloc(a->n_subst, sizeof(*d->subst));
	if (d->subst == NULL)
		return MG_ENOMEM;
	for (size_t i = 0; i < a->n_subst; i++) {
		struct psubst *s = &a->subst[i];
		struct mg_rule_subst *o = &d->subst[d->n_subst];

		o->name = s->name;
		o->attach_value =
			mg_strdup(s->attach_value != NULL ? s->attach_value : s->inline_value);
		if (o->attach_value == NULL)
			return MG_ENOMEM;
		o->inline_value = s->inline_value;
		s->inline_value = NULL;
		d->n_subst++;
	}
	return MG_OK;
}

int mg_plugin_answer_decide(struct mg_plugin_answer *a, int v, const struct mg_group *g,
			    int64_t now, const struct mg_rules *set, struct mg_rule_decision *ret,
			    bool *ret_mine, struct mg_err *err)
{
	struct mg_rule_decision d = { .set = set };
	int r;

	*ret_mine = v != MG_PLUGIN_NOT_MINE;
	if (v == MG_PLUGIN_NOT_MINE) {
		mg_plugin_answer_free(a);
		return MG_OK;
	}
	if (a->broken) {
		r = mg_err_set(err, a->nomem ? MG_ENOMEM : MG_EINPUT, "plugin %s: %s", a->who,
			       a->msg);
		goto fail;
	}
	if (v == MG_PLUGIN_FAIL) {
		r = mg_err_set(err, MG_EINPUT, "plugin %s: %s", a->who,
			       a->failed ? a->msg : "failed without saying why");
		goto fail;
	}
	if (v != MG_PLUGIN_SEND && v != MG_PLUGIN_POSTPONE) {
		r = mg_err_set(err, MG_EINPUT, "plugin %s: unknown verdict %d", a->who, v);
		goto fail;
	}
	if (v == MG_PLUGIN_POSTPONE && !a->postponed) {
		r = mg_err_set(
			err, MG_EINPUT,
			"plugin %s: answered MG_PLUGIN_POSTPONE without mg_plugin_postpone()",
			a->who);
		goto fail;
	}

	d.rule = a->who;
	if (a->template_text != NULL) {
		d.template_name = a->who;
		d.template_inline = true;
		d.template_text = a->template_text;
		d.template_len = strlen(a->template_text);
	} else {
		d.template_name = a->template_name != NULL ? a->template_name : g->template_name;
	}
	if (a->n_cols > 0) {
		d.table = a->who;
		d.cols = a->cols;
		d.n_cols = a->n_cols;
	} else {
		d.table = "fallback";
		d.cols = mg_table_fallback_columns;
		d.n_cols = mg_table_fallback_n_columns;
	}
	switch (a->placement) {
	case MG_PLUGIN_INLINE:
		d.attach_csv = false;
		break;
	case MG_PLUGIN_ATTACHMENT:
		d.attach_csv = true;
		break;
	default:
		d.attach_csv = g->event_data_format != NULL &&
			       mg_render_wants_attachment(g->event_data_format);
		break;
	}

	/* as with rules: an outbox mail goes at once, a deferred group waits for retry_at */
	d.due_at = now;
	if (!g->has_outbox) {
		if (v == MG_PLUGIN_POSTPONE) {
			d.due_at = a->until;
			d.postponed_by = a->reason;
		}
		if (g->retry_at != 0 && g->retry_at > d.due_at) {
			d.due_at = g->retry_at;
			d.postponed_by = "retry after a temporary failure";
		}
	}
	d.verdict = d.due_at > now ? MG_RULE_POSTPONED : MG_RULE_SEND;
	if (d.verdict == MG_RULE_SEND && move_substs(a, &d) < 0) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		d.owner = a;
		d.owner_free = answer_free;
		mg_rule_decision_release(&d);
		return r;
	}
	d.owner = a;
	d.owner_free = answer_free;
	*ret = d;
	return MG_OK;
fail:
	mg_plugin_answer_free(a);
	return r;
}
