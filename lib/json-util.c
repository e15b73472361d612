/* lib/json-util.c - strict JSON parsing with positions, for config and rule files */
#include <limits.h>
#include <string.h>

#include "json-util.h"

/* 1-based line and column of byte offset off in text. */
static void text_position(const char *text, size_t off, size_t *ret_line, size_t *ret_col)
{
	size_t line = 1, col = 1;

	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	*ret_line = line;
	*ret_col = col;
}

int mg_json_parse_strict(const char *name, const char *text, size_t len, struct json_object **ret,
			 struct mg_err *err)
{
	struct json_tokener *tok = NULL;
	struct json_object *obj = NULL;
	size_t end, line, col;
	int r;

	if (len > INT_MAX) /* the callers check their own, smaller limits first */
		return mg_err_set(err, MG_ECONFIG, "%s: too large to parse", name);
	tok = json_tokener_new();
	if (tok == NULL)
		return mg_err_set(err, MG_ENOMEM, "%s: out of memory", name);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, text, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (obj == NULL) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		if (e == json_tokener_continue)
			end = len;
		text_position(text, end > len ? len : end, &line, &col);
		r = mg_err_set(err, MG_ECONFIG, "%s:%zu:%zu: invalid JSON: %s", name, line, col,
			       e == json_tokener_continue ? "unexpected end of file"
							  : json_tokener_error_desc(e));
		goto out;
	}
	while (end < len && strchr(" \t\r\n", text[end]) != NULL)
		end++;
	if (end < len) {
		text_position(text, end, &line, &col);
		r = mg_err_set(err, MG_ECONFIG, "%s:%zu:%zu: invalid JSON: garbage after the value",
			       name, line, col);
		goto out;
	}
	*ret = obj;
	obj = NULL;
	r = MG_OK;
out:
	json_object_put(obj);
	json_tokener_free(tok);
	return r;
}

const char *mg_json_type_word(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "a boolean";
	case json_type_double:
		return "a number with a fraction";
	case json_type_int:
		return "an integer";
	case json_type_object:
		return "an object";
	case json_type_array:
		return "an array";
	case json_type_string:
		return "a string";
	}
	return "something else";
}
