/* lib/table.c - CSV rendering of event rows ("events_as_csv") */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "hdr.h"
#include "table.h"

const struct mg_column mg_table_fallback_columns[] = {
	{ "source.asn", "asn" },
	{ "source.ip", "ip" },
	{ "time.source", "timestamp" },
	{ "source.port", "src_port" },
	{ "destination.ip", "dst_ip" },
	{ "destination.port", "dst_port" },
	{ "destination.fqdn", "dst_host" },
	{ "protocol.transport", "proto" },
};
const size_t mg_table_fallback_n_columns =
	sizeof(mg_table_fallback_columns) / sizeof(mg_table_fallback_columns[0]);

/*
 * OWASP's list of formula triggers.  TAB and CR are on it because some
 * spreadsheets drop them and look at the next byte.
 */
static bool needs_guard(const char *s)
{
	return s[0] != '\0' && strchr("=+-@\t\r", s[0]) != NULL;
}

/*
 * One field as csv.QUOTE_ALL writes it: quoted, with '"' doubled, preceded
 * by a comma unless it is the first of its row.
 */
static int add_field(struct mg_buf *out, bool first, const char *s, bool guard)
{
	const char *q;
	int r = MG_OK;

	if (s == NULL)
		s = "";
	if (!first)
		r = mg_buf_addc(out, ',');
	if (r == MG_OK)
		r = mg_buf_addc(out, '"');
	if (r == MG_OK && guard && needs_guard(s))
		r = mg_buf_addc(out, '\'');
	while (r == MG_OK && (q = strchr(s, '"')) != NULL) {
		/* write up to and including the quote, then the quote again */
		r = mg_buf_add(out, s, (size_t)(q - s) + 1);
		if (r == MG_OK)
			r = mg_buf_addc(out, '"');
		s = q + 1;
	}
	if (r == MG_OK)
		r = mg_buf_adds(out, s);
	if (r == MG_OK)
		r = mg_buf_addc(out, '"');
	return r;
}

static int fail(struct mg_err *err, int r, const struct mg_buf *out, size_t row, size_t n_rows)
{
	if (r == MG_ENOMEM)
		return mg_err_set(err, r, "out of memory");
	if (row == 0)
		return mg_err_set(err, r, "table exceeds %zu bytes at the header row", out->max);
	return mg_err_set(err, r, "table exceeds %zu bytes at event row %zu of %zu", out->max, row,
			  n_rows);
}

int mg_table_csv(struct mg_buf *out, const struct mg_column *cols, size_t n_cols,
		 const char *const *cells, size_t n_rows, unsigned flags, struct mg_err *err)
{
	bool guard = (flags & MG_TABLE_SPREADSHEET_SAFE) != 0;
	int r;

	if (n_cols > 0 && n_rows > SIZE_MAX / n_cols)
		return mg_err_set(err, MG_EINPUT, "table of %zu rows by %zu columns is too large",
				  n_rows, n_cols);
	/* titles come from the configuration, not from events: never guarded */
	for (size_t col = 0; col < n_cols; col++) {
		r = add_field(out, col == 0, cols[col].title, false);
		if (r < 0)
			return fail(err, r, out, 0, n_rows);
	}
	r = mg_buf_add(out, "\r\n", 2);
	if (r < 0)
		return fail(err, r, out, 0, n_rows);
	for (size_t row = 0; row < n_rows; row++) {
		for (size_t col = 0; col < n_cols; col++) {
			const char *cell = cells[row * n_cols + col];

			/*
			 * A database with encoding SQL_ASCII hands us any bytes; the
			 * part is declared UTF-8, so refuse rather than mislabel.
			 */
			if (cell != NULL && !mg_utf8_valid(cell, strlen(cell)))
				return mg_err_set(
					err, MG_EINPUT,
					"event row %zu of %zu, field '%s': not valid UTF-8",
					row + 1, n_rows, cols[col].field);
			r = add_field(out, col == 0, cell, guard);
			if (r < 0)
				return fail(err, r, out, row + 1, n_rows);
		}
		r = mg_buf_add(out, "\r\n", 2);
		if (r < 0)
			return fail(err, r, out, row + 1, n_rows);
	}
	return MG_OK;
}
