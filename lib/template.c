/* lib/template.c - mail templates: Python string.Template semantics with dotted names */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "template.h"

#define TEMPLATE_NAME_MAX 255
#define TEMPLATE_WS	  " \t\r\n\v\f"

/*
 * Where offset off of text lies, as Python's string.Template reports it:
 * lines are counted by "\n", columns in characters (UTF-8 sequences, which
 * is what Python counts in its decoded str and what an editor shows; the
 * same as bytes for ASCII).  Both are 1-based.
 */
static void text_pos(const char *text, size_t off, size_t *ret_line, size_t *ret_col)
{
	size_t line = 1, col = 1;

	for (size_t i = 0; i < off; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\n') {
			line++;
			col = 1;
		} else if ((c & 0xc0) != 0x80) {
			col++;
		}
	}
	*ret_line = line;
	*ret_col = col;
}

/*
 * Length of the identifier character at s[0..n), or 0.  The idpattern
 * "[_a-z][_a-z0-9.]*" is compiled with re.IGNORECASE on a str, and Python
 * then lets [a-z] match four non-ASCII letters that case-fold into it (see
 * the re module's documentation of IGNORECASE): U+0130, U+0131, U+017F and
 * U+212A.  The original's templates see them as part of a name, so we do too.
 */
static size_t ident_char(const char *s, size_t n, bool first)
{
	const unsigned char *u = (const unsigned char *)s;

	if (n == 0)
		return 0;
	if (u[0] == '_' || (u[0] >= 'a' && u[0] <= 'z') || (u[0] >= 'A' && u[0] <= 'Z'))
		return 1;
	if (!first && ((u[0] >= '0' && u[0] <= '9') || u[0] == '.'))
		return 1;
	if (n >= 2 && u[0] == 0xc4 && (u[1] == 0xb0 || u[1] == 0xb1))
		return 2; /* U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE, U+0131 DOTLESS I */
	if (n >= 2 && u[0] == 0xc5 && u[1] == 0xbf)
		return 2; /* U+017F LATIN SMALL LETTER LONG S */
	if (n >= 3 && u[0] == 0xe2 && u[1] == 0x84 && u[2] == 0xaa)
		return 3; /* U+212A KELVIN SIGN */
	return 0;
}

/* End of the longest identifier starting at tmpl[start], or start if none. */
static size_t ident_end(const char *tmpl, size_t len, size_t start)
{
	size_t i = start, k;

	while ((k = ident_char(tmpl + i, len - i, i == start)) > 0)
		i += k;
	return i;
}

static int expand_fail(struct mg_err *err, int r, const struct mg_buf *out, const char *tmpl,
		       size_t off)
{
	size_t line, col;

	if (r == MG_ENOMEM)
		return mg_err_set(err, r, "out of memory");
	text_pos(tmpl, off, &line, &col);
	return mg_err_set(err, r, "expanded text exceeds %zu bytes at line %zu, col %zu", out->max,
			  line, col);
}

int mg_template_expand(const char *tmpl, size_t len, mg_template_lookup_fn *lookup, void *arg,
		       struct mg_buf *out, struct mg_err *err)
{
	char small[128], *heap = NULL;
	size_t i = 0, line, col;
	const char *nul;
	int r;

	nul = len > 0 ? memchr(tmpl, '\0', len) : NULL;
	if (nul != NULL) {
		text_pos(tmpl, (size_t)(nul - tmpl), &line, &col);
		return mg_err_set(err, MG_EINPUT, "NUL byte at line %zu, col %zu", line, col);
	}
	while (i < len) {
		const char *dollar = memchr(tmpl + i, '$', len - i);
		size_t at = dollar != NULL ? (size_t)(dollar - tmpl) : len;
		size_t start, end;
		const char *name, *value;
		bool braced;

		r = mg_buf_add(out, tmpl + i, at - i);
		if (r < 0) {
			r = expand_fail(err, r, out, tmpl, i);
			goto out;
		}
		if (dollar == NULL)
			break;

		/* the alternatives in the order of Python's pattern */
		i = at + 1;
		if (i < len && tmpl[i] == '$') {
			r = mg_buf_addc(out, '$');
			if (r < 0) {
				r = expand_fail(err, r, out, tmpl, at);
				goto out;
			}
			i++;
			continue;
		}
		braced = i < len && tmpl[i] == '{';
		start = braced ? i + 1 : i;
		end = ident_end(tmpl, len, start);
		if (end == start || (braced && (end == len || tmpl[end] != '}'))) {
			text_pos(tmpl, at, &line, &col);
			r = mg_err_set(err, MG_EINPUT, "invalid placeholder at line %zu, col %zu",
				       line, col);
			goto out;
		}

		if (end - start < sizeof(small)) {
			memcpy(small, tmpl + start, end - start);
			small[end - start] = '\0';
			name = small;
		} else {
			free(heap);
			heap = mg_strndup(tmpl + start, end - start);
			if (heap == NULL) {
				r = mg_err_set(err, MG_ENOMEM, "out of memory");
				goto out;
			}
			name = heap;
		}
		value = lookup(arg, name);
		if (value == NULL) {
			text_pos(tmpl, at, &line, &col);
			r = mg_err_set(err, MG_EINPUT, "unknown name '%s' at line %zu, col %zu",
				       name, line, col);
			goto out;
		}
		r = mg_buf_adds(out, value);
		if (r < 0) {
			r = expand_fail(err, r, out, tmpl, at);
			goto out;
		}
		i = braced ? end + 1 : end;
	}
	r = MG_OK;
out:
	free(heap);
	return r;
}

static bool is_ws(char c)
{
	return c != '\0' && strchr(TEMPLATE_WS, c) != NULL;
}

/* Narrow [*b, *e) to its part without leading and trailing white space. */
static void strip(const char *s, size_t *b, size_t *e)
{
	while (*b < *e && is_ws(s[*b]))
		(*b)++;
	while (*e > *b && is_ws(s[*e - 1]))
		(*e)--;
}

int mg_template_split(const char *text, size_t len, char **ret_subject, char **ret_body,
		      struct mg_err *err)
{
	char *norm = NULL, *subject = NULL, *body = NULL;
	size_t n = 0, pos = 0, sb = 0, se = 0, bb, be, line, col;
	bool found = false;
	const char *nul;
	int r;

	nul = len > 0 ? memchr(text, '\0', len) : NULL;
	if (nul != NULL) {
		text_pos(text, (size_t)(nul - text), &line, &col);
		return mg_err_set(err, MG_EINPUT,
				  "template contains a NUL byte at line %zu, col %zu", line, col);
	}

	/*
	 * The original reads the file in text mode, whose universal newlines
	 * turn "\r\n" and a lone "\r" into "\n" before anything else sees it.
	 */
	norm = mg_malloc(len + 1);
	if (norm == NULL) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\r') {
			norm[n++] = '\n';
			if (i + 1 < len && text[i + 1] == '\n')
				i++;
		} else {
			norm[n++] = text[i];
		}
	}
	norm[n] = '\0';

	/* readline() until a line is non-empty after strip() */
	while (!found && pos < n) {
		const char *nl = memchr(norm + pos, '\n', n - pos);
		size_t next = nl != NULL ? (size_t)(nl - norm) + 1 : n;

		sb = pos;
		se = next;
		strip(norm, &sb, &se);
		found = se > sb;
		pos = next;
	}
	if (!found) {
		r = mg_err_set(err, MG_EINPUT, "template has no subject line");
		goto out;
	}
	bb = pos;
	be = n;
	strip(norm, &bb, &be);

	subject = mg_strndup(norm + sb, se - sb);
	body = mg_malloc(be - bb + 2);
	if (subject == NULL || body == NULL) {
		r = mg_err_set(err, MG_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(body, norm + bb, be - bb);
	body[be - bb] = '\n';
	body[be - bb + 1] = '\0';

	*ret_subject = subject;
	*ret_body = body;
	subject = NULL;
	body = NULL;
	r = MG_OK;
out:
	free(norm);
	free(subject);
	free(body);
	return r;
}

int mg_template_check_name(const char *name, struct mg_err *err)
{
	size_t n;

	if (name == NULL || name[0] == '\0')
		return mg_err_set(err, MG_EINPUT, "template name is empty");
	n = strnlen(name, TEMPLATE_NAME_MAX + 1);
	if (n > TEMPLATE_NAME_MAX)
		return mg_err_set(err, MG_EINPUT, "template name is longer than %d bytes",
				  TEMPLATE_NAME_MAX);
	/* before the name is quoted in a message: it must not break the log line */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c < 0x20 || c == 0x7f)
			return mg_err_set(
				err, MG_EINPUT,
				"template name contains control character 0x%02x at offset %zu", c,
				i);
	}
	if (strchr(name, '/') != NULL)
		return mg_err_set(err, MG_EINPUT, "template name '%s' contains '/'", name);
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return mg_err_set(err, MG_EINPUT, "template name '%s' is not a file name", name);
	return MG_OK;
}
