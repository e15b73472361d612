/* tests/fuzz/fuzz_table.c - fuzz the CSV writer and read its output back */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "hdr.h"
#include "mg-buf.h"
#include "mg-err.h"
#include "table.h"

#define BIG_CAP	  (1u << 22)
#define SMALL_CAP 100
#define MAX_COLS  8
#define NULL_CELL "\x01" /* a cell of just this byte is passed as NULL (SQL NULL) */

/*
 * Input: byte 0 picks the number of columns (1..8), byte 1 is the cell
 * separator; the rest is split into cells at it.  The first n_cols cells
 * are the column titles, the others fill rows (a short last row is
 * padded with NULL cells).
 */
struct table {
	struct mg_column cols[MAX_COLS];
	size_t n_cols;
	char **cells; /* n_rows * n_cols, NULL for an SQL NULL */
	size_t n_rows;
	char **titles;
	size_t n_titles;
};

static char *dup_cell(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);

	FUZZ_CHECK(s != NULL);
	memcpy(s, p, n);
	s[n] = '\0'; /* a NUL inside ends the cell early, as the C string it is */
	return s;
}

static void table_build(struct table *t, const uint8_t *data, size_t size)
{
	size_t n_cells = 0, alloc = 0, start = 2;
	uint8_t sep = data[1];
	char **cells = NULL;

	memset(t, 0, sizeof(*t));
	t->n_cols = data[0] % MAX_COLS + 1;
	for (size_t i = 2; i <= size; i++) {
		if (i < size && data[i] != sep)
			continue;
		if (n_cells == alloc) {
			alloc = alloc == 0 ? 16 : alloc * 2;
			cells = realloc(cells, alloc * sizeof(*cells));
			FUZZ_CHECK(cells != NULL);
		}
		if (i - start == 1 && data[start] == NULL_CELL[0])
			cells[n_cells++] = NULL;
		else
			cells[n_cells++] = dup_cell(data + start, i - start);
		start = i + 1;
	}
	/* titles: the first n_cols cells (missing ones: NULL, written as "") */
	t->titles = calloc(t->n_cols, sizeof(*t->titles));
	FUZZ_CHECK(t->titles != NULL);
	t->n_titles = t->n_cols;
	for (size_t c = 0; c < t->n_cols; c++) {
		t->titles[c] = c < n_cells ? cells[c] : NULL;
		t->cols[c].field = "source.ip";
		t->cols[c].title = t->titles[c];
	}
	if (n_cells > t->n_cols) {
		size_t rest = n_cells - t->n_cols;

		t->n_rows = (rest + t->n_cols - 1) / t->n_cols;
		t->cells = calloc(t->n_rows * t->n_cols, sizeof(*t->cells));
		FUZZ_CHECK(t->cells != NULL);
		memcpy(t->cells, cells + t->n_cols, rest * sizeof(*cells));
	}
	free(cells);
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n_titles; i++)
		free(t->titles[i]);
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		free(t->cells[i]);
	free(t->titles);
	free(t->cells);
}

static bool needs_guard(const char *s)
{
	return s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' ||
	       s[0] == '\r';
}

/*
 * Read one QUOTE_ALL field at *pos and compare it with want (NULL: "");
 * with guard, a cell that starts with a formula trigger must come back
 * with "'" in front.
 */
static void read_field(const struct mg_buf *b, size_t *pos, const char *want, bool guard)
{
	const char *s = want != NULL ? want : "";
	size_t i = *pos, k = 0, n = strlen(s);
	bool quote_added = guard && needs_guard(s);

	FUZZ_CHECK(i < b->len && b->data[i] == '"');
	i++;
	if (quote_added) {
		FUZZ_CHECK(i < b->len && b->data[i] == '\'');
		i++;
	}
	for (;;) {
		FUZZ_CHECK(i < b->len);
		if (b->data[i] == '"') {
			if (i + 1 < b->len && b->data[i + 1] == '"') {
				FUZZ_CHECK(k < n && s[k] == '"');
				k++;
				i += 2;
				continue;
			}
			i++;
			break;
		}
		FUZZ_CHECK(k < n && s[k] == b->data[i]);
		k++;
		i++;
	}
	FUZZ_CHECK(k == n);
	*pos = i;
}

static void read_row(const struct mg_buf *b, size_t *pos, const struct table *t, char *const *row,
		     bool guard)
{
	for (size_t c = 0; c < t->n_cols; c++) {
		if (c > 0) {
			FUZZ_CHECK(*pos < b->len && b->data[*pos] == ',');
			(*pos)++;
		}
		read_field(b, pos, row[c], guard);
	}
	FUZZ_CHECK(*pos + 2 <= b->len && memcmp(b->data + *pos, "\r\n", 2) == 0);
	*pos += 2;
}

/* Parse the CSV back: every row has n_cols quoted fields and the cells come back. */
static void read_back(const struct mg_buf *b, const struct table *t, bool guard)
{
	size_t pos = 0;

	read_row(b, &pos, t, t->titles, false); /* titles are never guarded */
	for (size_t r = 0; r < t->n_rows; r++)
		read_row(b, &pos, t, t->cells + r * t->n_cols, guard);
	FUZZ_CHECK(pos == b->len);
}

/* Cells are refused when they are not UTF-8 (titles come from the config). */
static bool table_all_utf8(const struct table *t)
{
	for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
		if (t->cells[i] != NULL && !mg_utf8_valid(t->cells[i], strlen(t->cells[i])))
			return false;
	return true;
}

static void run(const struct table *t, unsigned flags)
{
	struct mg_buf big = MG_BUF_INIT(BIG_CAP), small = MG_BUF_INIT(SMALL_CAP);
	struct mg_err err = { 0 };
	int r, r_big;

	fuzz_dirty_stack();
	r = r_big = mg_table_csv(&big, t->cols, t->n_cols, (const char *const *)t->cells, t->n_rows,
				 flags, &err);
	FUZZ_CHECK(r == MG_OK || r == MG_EINPUT);
	FUZZ_CHECK(big.len <= BIG_CAP);
	if (r == MG_OK)
		read_back(&big, t, (flags & MG_TABLE_SPREADSHEET_SAFE) != 0);
	else if (strstr(err.msg, "not valid UTF-8") != NULL)
		FUZZ_CHECK(!table_all_utf8(t));
	else
		FUZZ_CHECK(strstr(err.msg, "exceeds") != NULL);

	r = mg_table_csv(&small, t->cols, t->n_cols, (const char *const *)t->cells, t->n_rows,
			 flags, &err);
	FUZZ_CHECK(small.len <= SMALL_CAP);
	FUZZ_CHECK(small.len <= big.len);
	FUZZ_CHECK(small.len == 0 || memcmp(small.data, big.data, small.len) == 0);
	if (r_big == MG_OK)
		FUZZ_CHECK(r == (big.len <= SMALL_CAP ? MG_OK : MG_EINPUT));
	else
		FUZZ_CHECK(r == MG_EINPUT);
	mg_buf_release(&big);
	mg_buf_release(&small);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct table t;

	if (size < 2)
		return 0;
	table_build(&t, data, size);
	run(&t, 0);
	run(&t, MG_TABLE_SPREADSHEET_SAFE);
	table_free(&t);
	return 0;
}
