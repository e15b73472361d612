/* lib/json-util.h - strict JSON parsing with positions, for config and rule files */
#ifndef MG_JSON_UTIL_H
#define MG_JSON_UTIL_H

#include <stddef.h>

#include <json-c/json.h>

#include "mg-err.h"

/*
 * Parse text[0..len) as one JSON value into *ret (owned by the caller):
 * json-c's strict mode, and nothing but white space after the value
 * (json-c accepts trailing garbage and comments otherwise; LIBRARY-NOTES
 * "json-c").  Errors are MG_ECONFIG "NAME:LINE:COL: invalid JSON: ...",
 * or MG_ENOMEM; more than INT_MAX bytes is MG_ECONFIG.  Pure.
 */
int mg_json_parse_strict(const char *name, const char *text, size_t len, struct json_object **ret,
			 struct mg_err *err);

/* "an integer", "a string", ... for messages about a value's type.  Pure. */
const char *mg_json_type_word(struct json_object *v);

#endif /* MG_JSON_UTIL_H */
