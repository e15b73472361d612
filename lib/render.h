/* lib/render.h - one group to subject, body and CSV: the original's fallback handling */
#ifndef MG_RENDER_H
#define MG_RENDER_H

#include <stdbool.h>
#include <stddef.h>

#include "directive.h"
#include "mg-err.h"
#include "table.h"

/* Everything needed to render one mail; all borrowed. */
struct mg_render_in {
	const struct mg_group *group;
	const char *template_name; /* for messages */
	const char *template_text; /* the template file's contents */
	size_t template_len;
	const char *ticket; /* ticket number, or a placeholder in a dry run */
	const struct mg_column *cols;
	size_t n_cols;
	const char *const *cells; /* n_rows * n_cols, NULL = SQL NULL */
	size_t n_rows;
	bool attach_csv;      /* events.csv attachment instead of ${events_as_csv} */
	unsigned table_flags; /* MG_TABLE_* */
	size_t max_bytes;     /* cap on the CSV and on the body */
	/*
	 * More substitutions (a format rule's values and variables), NULL for
	 * none: the value of name for this placement, or NULL.  They win over
	 * the aggregate identifier's keys; the built-in names are reserved.
	 */
	const char *(*lookup)(const void *arg, bool attach_csv, const char *name);
	const void *lookup_arg;
};

/* The result; every pointer is owned (release with mg_rendered_release). */
struct mg_rendered {
	char *subject;
	char *body;
	char *csv; /* NULL unless attach_csv */
	size_t csv_len;
};

/*
 * Render a group as the original's mail_format_as_csv() does: split the
 * template (first non-empty line subject, rest body), build the CSV of the
 * events, and substitute, in this order of precedence (later wins):
 * ticket_number, events_as_csv ("" when attached), mail_part and mail_parts
 * (ours: which of the mails of a group split by delivery.max_events_per_mail
 * this is, 1-based, and how many there are; "1" and "1" for a group that was
 * not split), then every key of the aggregate identifier.  Unknown names and
 * stray "$" fail with MG_EINPUT, the message naming the template and the
 * place; so do an aggregate key or value or an event cell that is not valid
 * UTF-8 (the mail is declared UTF-8; a database with encoding SQL_ASCII can
 * hold any bytes).  Pure.
 */
int mg_render(const struct mg_render_in *in, struct mg_rendered *ret, struct mg_err *err);

/* Free the result and zero it.  NULL-safe.  Pure. */
void mg_rendered_release(struct mg_rendered *r);

/*
 * The built-in placement rule (until format rules exist): an
 * event_data_format ending in "_csv_attachment" asks for an events.csv
 * attachment, anything else for inline CSV.  Pure.
 */
bool mg_render_wants_attachment(const char *event_data_format);

#endif /* MG_RENDER_H */
