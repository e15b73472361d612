/* lib/template.h - mail templates: Python string.Template semantics with dotted names */
#ifndef MG_TEMPLATE_H
#define MG_TEMPLATE_H

#include <stddef.h>

#include "mg-buf.h"
#include "mg-err.h"

/* The largest template file or text taken, in bytes. */
#define MG_TEMPLATE_MAX_BYTES (1024 * 1024)

/*
 * Look a placeholder up.  name is the identifier exactly as written in the
 * template (NUL-terminated, without "$" or braces).  Returns the value
 * (borrowed, must stay valid until mg_template_expand returns), or NULL
 * when the name is unknown.
 */
typedef const char *mg_template_lookup_fn(void *arg, const char *name);

/*
 * Expand tmpl[0..len) into out, with the semantics of Python's
 * string.Template.substitute() and the original's idpattern
 * "[_a-z][_a-z0-9.]*" matched case-insensitively:
 *   "$$"           a literal "$"
 *   "$name"        the longest identifier after "$" (dots included, so
 *                  "$a.b." names "a.b.")
 *   "${name}"      braced identifier
 *   any other "$"  an error ("invalid placeholder at line L, col C")
 * An unknown name is an error ("unknown name 'x' at line L, col C"); lines
 * and columns are 1-based, as Python reports them (lines counted by LF,
 * columns in UTF-8 characters, at the '$').  A NUL byte in tmpl is
 * MG_EINPUT.  As in Python, [a-z] with IGNORECASE also matches U+0130,
 * U+0131, U+017F and U+212A, so those letters are part of a name.
 *
 * Returns MG_OK, MG_EINPUT (err says what and where; out may hold a
 * partial result) or MG_ENOMEM.  Pure.
 */
int mg_template_expand(const char *tmpl, size_t len, mg_template_lookup_fn *lookup, void *arg,
		       struct mg_buf *out, struct mg_err *err);

/*
 * Split the text of a template file as the original's read_template() does:
 * the subject is the first line that is not empty after stripping white
 * space (stripped); the body is everything after that line, stripped of
 * leading and trailing white space, plus one "\n".  Lines may end in LF or
 * CRLF; like Python's universal newlines, CRLF and a lone CR are read as LF,
 * so the body holds LF line ends only.  White space is ASCII " \t\r\n\v\f".
 * A file with no non-empty line, or one containing a NUL byte, is
 * MG_EINPUT.  *ret_subject and *ret_body are malloc'd and owned by the
 * caller; they are set only on success.  Pure.
 */
int mg_template_split(const char *text, size_t len, char **ret_subject, char **ret_body,
		      struct mg_err *err);

/*
 * Check a template name taken from the database before it is joined to
 * template_dir: it must be non-empty, at most 255 bytes, contain no "/",
 * no NUL or control character, and not be "." or "..".  (The original
 * allowed sub-directories; see docs/differences.md.)  Pure.
 */
int mg_template_check_name(const char *name, struct mg_err *err);

#endif /* MG_TEMPLATE_H */
