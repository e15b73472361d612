/* lib/table.h - CSV rendering of event rows ("events_as_csv") */
#ifndef MG_TABLE_H
#define MG_TABLE_H

#include <stddef.h>

#include "mg-buf.h"
#include "mg-err.h"

/* One column: the event field it shows and the title in the header row. */
struct mg_column {
	const char *field; /* IntelMQ field ("source.ip") or "extra.<key>" */
	const char *title; /* header-row title ("ip") */
};

/* Flags for mg_table_csv(). */
enum {
	/*
	 * Neutralise cells that a spreadsheet would run as a formula (first
	 * byte '=', '+', '-', '@', TAB or CR): prefix them with "'".
	 */
	MG_TABLE_SPREADSHEET_SAFE = 1 << 0,
};

/*
 * Append a CSV table as Python's csv.writer(quoting=csv.QUOTE_ALL) writes it:
 * a header row of titles, then one row per event; every field in double
 * quotes, a '"' inside a field doubled, rows ended by CRLF.  cells holds
 * n_rows * n_cols values row by row; a NULL cell (SQL NULL) is written as
 * "" (an empty quoted field).  Cell text is written as given (the caller
 * has formatted time.source and the like).
 *
 * A cell that is not valid UTF-8 is refused (the part is declared UTF-8).
 * Control characters are written as they are: the field is quoted, and the
 * MIME layer encodes them (quoted-printable), so they cannot end a row or
 * a part early.
 *
 * Returns MG_OK, MG_ENOMEM, or MG_EINPUT when a cell is not valid UTF-8 or
 * out would exceed its cap (err names the row and, for a cell, the field).
 * Pure.
 */
int mg_table_csv(struct mg_buf *out, const struct mg_column *cols, size_t n_cols,
		 const char *const *cells, size_t n_rows, unsigned flags, struct mg_err *err);

/* The original's fallback columns (99fallback.py), in order. */
extern const struct mg_column mg_table_fallback_columns[];
extern const size_t mg_table_fallback_n_columns;

#endif /* MG_TABLE_H */
