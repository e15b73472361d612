/* lib/ctl-proto.c - the control protocol between mailgenctl and mailgend */
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "ctl-proto.h"

/* Wire names, indexed by enum mg_ctl_cmd. */
static const char *const cmd_names[] = {
	[MG_CTL_STATUS] = "status", /* state and counters */
	[MG_CTL_FLUSH] = "flush",   /* scan now */
	[MG_CTL_PAUSE] = "pause",   /* take no new groups */
	[MG_CTL_RESUME] = "resume", /* take new groups again */
	[MG_CTL_RELOAD] = "reload", /* re-read config and templates */
	[MG_CTL_FAILED] = "failed", /* list failed groups */
	[MG_CTL_RETRY] = "retry",   /* release a failed group */
	[MG_CTL_DROP] = "drop",	    /* give up on a failed group */
};

#define N_CMDS (sizeof(cmd_names) / sizeof(cmd_names[0]))

/*
 * The status fields in wire order.  One table drives both the writer and
 * the reader, so the two cannot drift apart.  Members are reached through
 * memcpy at an offset, which keeps -Wcast-align quiet and needs no casts
 * between pointer types.
 */
enum field_kind {
	F_STR,	       /* char[size], "" allowed */
	F_STR_OR_NULL, /* char[size], "" is written as null */
	F_I64,	       /* int64_t */
	F_I64_OR_NULL, /* int64_t, 0 is written as null */
	F_U64,	       /* uint64_t */
	F_UINT,	       /* unsigned */
	F_BOOL,	       /* bool */
	F_UPTIME,      /* derived: now - started_at; written, not read */
};

/* the initialiser of a status_fields entry: key, kind, offset and size of member m */
#define MEMBER_SIZE(m) sizeof(((struct mg_ctl_status *)NULL)->m)
#define FIELD(m, kind) #m, kind, offsetof(struct mg_ctl_status, m), MEMBER_SIZE(m)

static const struct field {
	const char *key;
	enum field_kind kind;
	size_t off;
	size_t size;
} status_fields[] = {
	{ FIELD(state, F_STR) },
	{ FIELD(started_at, F_I64) },
	{ FIELD(now, F_I64) },
	{ "uptime_seconds", F_UPTIME, 0, 0 },
	{ FIELD(workers_busy, F_UINT) },
	{ FIELD(workers_total, F_UINT) },
	{ FIELD(pending_groups, F_U64) },
	{ FIELD(pending_directives, F_U64) },
	{ FIELD(next_due, F_I64_OR_NULL) },
	{ FIELD(last_scan, F_I64_OR_NULL) },
	{ FIELD(sent, F_U64) },
	{ FIELD(postponed, F_U64) },
	{ FIELD(failed, F_U64) },
	{ FIELD(failed_groups, F_U64) },
	{ FIELD(deferred_groups, F_U64) },
	{ FIELD(paused, F_BOOL) },
	{ FIELD(db_connected, F_BOOL) },
	{ FIELD(last_error, F_STR_OR_NULL) },
};

#undef FIELD
#undef MEMBER_SIZE

#define N_STATUS_FIELDS (sizeof(status_fields) / sizeof(status_fields[0]))

const char *mg_ctl_cmd_name(enum mg_ctl_cmd cmd)
{
	if ((unsigned)cmd >= N_CMDS)
		return NULL;
	return cmd_names[cmd];
}

/* a - b, saturated to the int64_t range (times come from the wire). */
static int64_t diff_sat(int64_t a, int64_t b)
{
	int64_t d;

	if (__builtin_sub_overflow(a, b, &d))
		return b < 0 ? INT64_MAX : INT64_MIN;
	return d;
}

/*
 * Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one
 * (RFC 3629, 4: no overlong forms, no surrogates, nothing past U+10FFFF).
 */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

/* Append s as a JSON string (RFC 8259, 7); bytes that are not UTF-8 become U+FFFD. */
static int add_json_str(struct mg_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	int r;

	r = mg_buf_addc(b, '"');
	for (size_t i = 0; i < n && r == MG_OK;) {
		unsigned char c = p[i];
		size_t len;

		if (c >= 0x80) {
			len = utf8_len(p + i, n - i);
			r = len > 0 ? mg_buf_add(b, p + i, len) : mg_buf_adds(b, "\\ufffd");
			i += len > 0 ? len : 1;
		} else if (c == '"' || c == '\\') {
			r = mg_buf_addf(b, "\\%c", c);
			i++;
		} else if (c == '\n') {
			r = mg_buf_adds(b, "\\n");
			i++;
		} else if (c == '\t') {
			r = mg_buf_adds(b, "\\t");
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			r = mg_buf_addf(b, "\\u%04x", c);
			i++;
		} else {
			r = mg_buf_addc(b, (char)c);
			i++;
		}
	}
	if (r == MG_OK)
		r = mg_buf_addc(b, '"');
	return r;
}

/* Append the members of the status object, without the braces. */
static int add_status_members(struct mg_buf *b, const struct mg_ctl_status *st)
{
	const char *base = (const char *)st;
	int r = MG_OK;

	for (size_t i = 0; i < N_STATUS_FIELDS && r == MG_OK; i++) {
		const struct field *f = &status_fields[i];
		int64_t i64;
		uint64_t u64;
		unsigned u;
		bool flag;

		r = mg_buf_addf(b, "%s\"%s\":", i > 0 ? "," : "", f->key);
		if (r < 0)
			break;
		switch (f->kind) {
		case F_STR:
		case F_STR_OR_NULL:
			/* the struct's arrays are NUL-terminated by contract; do not trust it */
			if (memchr(base + f->off, '\0', f->size) == NULL)
				return MG_EINPUT;
			if (f->kind == F_STR_OR_NULL && base[f->off] == '\0')
				r = mg_buf_adds(b, "null");
			else
				r = add_json_str(b, base + f->off);
			break;
		case F_I64:
		case F_I64_OR_NULL:
			memcpy(&i64, base + f->off, sizeof(i64));
			if (f->kind == F_I64_OR_NULL && i64 == 0)
				r = mg_buf_adds(b, "null");
			else
				r = mg_buf_addf(b, "%" PRId64, i64);
			break;
		case F_U64:
			memcpy(&u64, base + f->off, sizeof(u64));
			r = mg_buf_addf(b, "%" PRIu64, u64);
			break;
		case F_UINT:
			memcpy(&u, base + f->off, sizeof(u));
			r = mg_buf_addf(b, "%u", u);
			break;
		case F_BOOL:
			memcpy(&flag, base + f->off, sizeof(flag));
			r = mg_buf_adds(b, flag ? "true" : "false");
			break;
		case F_UPTIME:
			i64 = diff_sat(st->now, st->started_at);
			r = mg_buf_addf(b, "%" PRId64, i64 < 0 ? 0 : i64);
			break;
		}
	}
	return r;
}

/*
 * Build a line in a scratch buffer with the caller's cap and append it to
 * out only when complete, so out never holds half a line.
 */
static int commit_line(struct mg_buf *out, struct mg_buf *line, int r)
{
	if (r == MG_OK)
		r = mg_buf_addc(line, '\n');
	if (r == MG_OK)
		r = mg_buf_add(out, line->data, line->len);
	mg_buf_release(line);
	return r;
}

int mg_ctl_format_request_id(struct mg_buf *out, enum mg_ctl_cmd cmd, int64_t id)
{
	const char *name = mg_ctl_cmd_name(cmd);

	if (name == NULL || id < 0)
		return MG_EINPUT;
	if (id == 0)
		return mg_buf_addf(out, "{\"v\":%d,\"cmd\":\"%s\"}\n", MG_CTL_VERSION, name);
	return mg_buf_addf(out, "{\"v\":%d,\"cmd\":\"%s\",\"id\":%" PRId64 "}\n", MG_CTL_VERSION,
			   name, id);
}

int mg_ctl_format_request(struct mg_buf *out, enum mg_ctl_cmd cmd)
{
	return mg_ctl_format_request_id(out, cmd, 0);
}

int mg_ctl_format_ok_message(struct mg_buf *out, const char *message)
{
	struct mg_buf line = MG_BUF_INIT(out->max);
	int r;

	r = mg_buf_addf(&line, "{\"v\":%d,\"ok\":true,\"message\":", MG_CTL_VERSION);
	if (r == MG_OK)
		r = add_json_str(&line, message != NULL ? message : "");
	if (r == MG_OK)
		r = mg_buf_addc(&line, '}');
	return commit_line(out, &line, r);
}

int mg_ctl_format_ok(struct mg_buf *out, const struct mg_ctl_status *st)
{
	struct mg_buf line = MG_BUF_INIT(out->max);
	int r;

	r = mg_buf_addf(&line, "{\"v\":%d,\"ok\":true", MG_CTL_VERSION);
	if (r == MG_OK && st != NULL) {
		r = mg_buf_adds(&line, ",\"status\":{");
		if (r == MG_OK)
			r = add_status_members(&line, st);
		if (r == MG_OK)
			r = mg_buf_addc(&line, '}');
	}
	if (r == MG_OK)
		r = mg_buf_addc(&line, '}');
	return commit_line(out, &line, r);
}

int mg_ctl_format_error(struct mg_buf *out, const char *message)
{
	struct mg_buf line = MG_BUF_INIT(out->max);
	int r;

	r = mg_buf_addf(&line, "{\"v\":%d,\"ok\":false,\"error\":", MG_CTL_VERSION);
	if (r == MG_OK)
		r = add_json_str(&line, message != NULL ? message : "unknown error");
	if (r == MG_OK)
		r = mg_buf_addc(&line, '}');
	return commit_line(out, &line, r);
}

/*
 * Copy at most 32 bytes of s[0..n) into dst for an error message, with
 * anything but printable ASCII masked, so a message stays one short line.
 */
static void printable(char *dst, size_t dst_size, const char *s, size_t n)
{
	size_t i, max = dst_size - 4; /* room for "..." and the NUL */

	if (max > 32)
		max = 32;
	for (i = 0; i < n && i < max; i++)
		dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (i < n) {
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
}

/*
 * Parse one line into a JSON object, strictly: no comments, no trailing
 * commas, valid UTF-8, and only white space after the object (json-c
 * would stop after the first value, LIBRARY-NOTES "json-c").
 */
static int parse_object(const char *line, size_t len, size_t max, const char *what,
			struct json_object **ret_obj, struct mg_err *err)
{
	struct json_tokener *tok = NULL;
	struct json_object *obj = NULL;
	const char *nul;
	size_t end;
	int r;

	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > max)
		return mg_err_set(err, MG_EINPUT, "%s too long (%zu bytes, at most %zu)", what, len,
				  max);
	if (len == 0)
		return mg_err_set(err, MG_EINPUT, "empty %s", what);
	nul = memchr(line, '\0', len);
	if (nul != NULL)
		return mg_err_set(err, MG_EINPUT, "%s contains a NUL byte at offset %zu", what,
				  (size_t)(nul - line));
	/*
	 * JSON_TOKENER_VALIDATE_UTF8 of json-c 0.16 checks only the shape of a
	 * sequence: overlong forms, surrogates and code points past U+10FFFF
	 * get through (found by fuzz_ctl), so check RFC 3629 here.
	 */
	for (size_t i = 0, n; i < len; i += n) {
		n = utf8_len((const unsigned char *)line + i, len - i);
		if (n == 0)
			return mg_err_set(err, MG_EINPUT,
					  "%s: invalid JSON at offset %zu: invalid UTF-8", what, i);
	}
	tok = json_tokener_new();
	if (tok == NULL)
		return mg_err_set(err, MG_ENOMEM, "%s: out of memory", what);
	/* trailing characters are checked below, for a clearer message than json-c's */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS |
					    JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, line, (int)len);
	end = json_tokener_get_parse_end(tok);
	if (obj == NULL) {
		enum json_tokener_error e = json_tokener_get_error(tok);
		size_t first = 0;

		while (first < len && (line[first] == ' ' || line[first] == '\t'))
			first++;
		/* a bare null, number or literal is never complete without a delimiter */
		if (e == json_tokener_continue && first < len && line[first] != '{')
			r = mg_err_set(err, MG_EINPUT, "%s is not a JSON object", what);
		else if (e == json_tokener_continue)
			r = mg_err_set(err, MG_EINPUT, "%s: invalid JSON: unexpected end of line",
				       what);
		else
			r = mg_err_set(err, MG_EINPUT, "%s: invalid JSON at offset %zu: %s", what,
				       end, json_tokener_error_desc(e));
		goto out;
	}
	while (end < len && (line[end] == ' ' || line[end] == '\t'))
		end++;
	if (end < len) {
		r = mg_err_set(err, MG_EINPUT, "%s: garbage after the JSON object at offset %zu",
			       what, end);
		goto out;
	}
	if (!json_object_is_type(obj, json_type_object)) {
		r = mg_err_set(err, MG_EINPUT, "%s is not a JSON object", what);
		goto out;
	}
	*ret_obj = obj;
	obj = NULL;
	r = MG_OK;
out:
	json_object_put(obj);
	json_tokener_free(tok);
	return r;
}

static int check_version(struct json_object *obj, const char *what, struct mg_err *err)
{
	struct json_object *v;
	int64_t version;

	if (!json_object_object_get_ex(obj, "v", &v))
		return mg_err_set(err, MG_EINPUT, "%s has no protocol version 'v'", what);
	if (!json_object_is_type(v, json_type_int))
		return mg_err_set(err, MG_EINPUT, "%s: protocol version 'v' is not an integer",
				  what);
	version = json_object_get_int64(v);
	if (version != MG_CTL_VERSION)
		return mg_err_set(err, MG_EINPUT,
				  "%s: unsupported protocol version %" PRId64 " (expected %d)",
				  what, version, MG_CTL_VERSION);
	return MG_OK;
}

int mg_ctl_parse_request(const char *line, size_t len, enum mg_ctl_cmd *ret_cmd, struct mg_err *err)
{
	int64_t id;

	return mg_ctl_parse_request_id(line, len, ret_cmd, &id, err);
}

int mg_ctl_parse_request_id(const char *line, size_t len, enum mg_ctl_cmd *ret_cmd, int64_t *ret_id,
			    struct mg_err *err)
{
	struct json_object *obj = NULL, *cmd, *id;
	char shown[40];
	const char *name;
	size_t name_len;
	int r;

	r = parse_object(line, len, MG_CTL_LINE_MAX, "request", &obj, err);
	if (r < 0)
		goto out;
	r = check_version(obj, "request", err);
	if (r < 0)
		goto out;
	json_object_object_foreach(obj, key, val)
	{
		(void)val;
		if (strcmp(key, "v") != 0 && strcmp(key, "cmd") != 0 && strcmp(key, "id") != 0) {
			printable(shown, sizeof(shown), key, strlen(key));
			r = mg_err_set(err, MG_EINPUT, "request: unknown key '%s'", shown);
			goto out;
		}
	}
	if (!json_object_object_get_ex(obj, "cmd", &cmd)) {
		r = mg_err_set(err, MG_EINPUT, "request has no command 'cmd'");
		goto out;
	}
	if (!json_object_is_type(cmd, json_type_string)) {
		r = mg_err_set(err, MG_EINPUT, "request: command 'cmd' is not a string");
		goto out;
	}
	*ret_id = 0;
	if (json_object_object_get_ex(obj, "id", &id)) {
		/* json-c coerces silently: insist on a JSON integer in range */
		if (!json_object_is_type(id, json_type_int) || json_object_get_int64(id) < 0 ||
		    json_object_get_int64(id) == INT64_MAX) {
			r = mg_err_set(err, MG_EINPUT, "request: 'id' is not an integer >= 0");
			goto out;
		}
		*ret_id = json_object_get_int64(id);
	}
	name = json_object_get_string(cmd);
	name_len = (size_t)json_object_get_string_len(cmd);
	for (size_t i = 0; i < N_CMDS; i++) {
		/* compare lengths too: a string may hold "status\u0000x" */
		if (strlen(cmd_names[i]) == name_len && memcmp(cmd_names[i], name, name_len) == 0) {
			*ret_cmd = (enum mg_ctl_cmd)i;
			r = MG_OK;
			goto out;
		}
	}
	printable(shown, sizeof(shown), name, name_len);
	r = mg_err_set(
		err, MG_EINPUT,
		"unknown command '%s' (expected status, flush, pause, resume, reload, failed, "
		"retry or drop)",
		shown);
out:
	json_object_put(obj);
	return r;
}

/* Copy a JSON string into dst[size]; cut at a UTF-8 boundary if allowed, else fail. */
static int copy_str(char *dst, size_t size, struct json_object *v, bool may_cut)
{
	const char *s = json_object_get_string(v);
	size_t n = (size_t)json_object_get_string_len(v);

	if (memchr(s, '\0', n) != NULL)
		return MG_EINPUT;
	if (n >= size) {
		if (!may_cut)
			return MG_EINPUT;
		n = size - 1;
		/* back off continuation bytes, then the lead byte they belong to */
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
	return MG_OK;
}

static int parse_status_field(const struct field *f, struct json_object *v, char *base)
{
	int64_t i64;
	uint64_t u64;
	unsigned u;
	bool flag;

	if (json_object_is_type(v, json_type_null))
		return (f->kind == F_I64_OR_NULL || f->kind == F_STR_OR_NULL) ? MG_OK : MG_EINPUT;
	switch (f->kind) {
	case F_STR:
	case F_STR_OR_NULL:
		if (!json_object_is_type(v, json_type_string))
			return MG_EINPUT;
		return copy_str(base + f->off, f->size, v, f->kind == F_STR_OR_NULL);
	case F_I64:
	case F_I64_OR_NULL:
		if (!json_object_is_type(v, json_type_int))
			return MG_EINPUT;
		i64 = json_object_get_int64(v);
		memcpy(base + f->off, &i64, sizeof(i64));
		return MG_OK;
	case F_U64:
	case F_UINT:
		/* get_int64 saturates above INT64_MAX, so a negative result is a negative value */
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
			return MG_EINPUT;
		u64 = json_object_get_uint64(v);
		if (f->kind == F_U64) {
			memcpy(base + f->off, &u64, sizeof(u64));
			return MG_OK;
		}
		if (u64 > UINT_MAX)
			return MG_EINPUT;
		u = (unsigned)u64;
		memcpy(base + f->off, &u, sizeof(u));
		return MG_OK;
	case F_BOOL:
		if (!json_object_is_type(v, json_type_boolean))
			return MG_EINPUT;
		flag = json_object_get_boolean(v) != 0;
		memcpy(base + f->off, &flag, sizeof(flag));
		return MG_OK;
	case F_UPTIME:
		return MG_OK;
	}
	return MG_EINPUT;
}

static int parse_status(struct json_object *obj, struct mg_ctl_status *st, struct mg_err *err)
{
	for (size_t i = 0; i < N_STATUS_FIELDS; i++) {
		const struct field *f = &status_fields[i];
		struct json_object *v;

		if (f->kind == F_UPTIME)
			continue; /* derived, and st has no room for it */
		if (!json_object_object_get_ex(obj, f->key, &v))
			return mg_err_set(err, MG_EINPUT, "response: status has no '%s'", f->key);
		if (parse_status_field(f, v, (char *)st) < 0)
			return mg_err_set(err, MG_EINPUT,
					  "response: status field '%s' has the wrong type or is "
					  "out of range",
					  f->key);
	}
	return MG_OK;
}

int mg_ctl_parse_response(const char *line, size_t len, bool *ret_ok, struct mg_ctl_status *st,
			  struct mg_err *err)
{
	struct json_object *obj = NULL, *v;
	char msg[MG_ERR_MSG_MAX];
	int r;

	if (st != NULL)
		memset(st, 0, sizeof(*st));
	r = parse_object(line, len, MG_CTL_RESPONSE_MAX, "response", &obj, err);
	if (r < 0)
		goto out;
	r = check_version(obj, "response", err);
	if (r < 0)
		goto out;
	if (!json_object_object_get_ex(obj, "ok", &v) ||
	    !json_object_is_type(v, json_type_boolean)) {
		r = mg_err_set(err, MG_EINPUT, "response: 'ok' is missing or not a boolean");
		goto out;
	}
	if (!json_object_get_boolean(v)) {
		if (!json_object_object_get_ex(obj, "error", &v) ||
		    !json_object_is_type(v, json_type_string)) {
			r = mg_err_set(err, MG_EINPUT,
				       "response: error without a message string 'error'");
			goto out;
		}
		/* copy_str() refuses a NUL byte, which no daemon writes: malformed */
		if (copy_str(msg, sizeof(msg), v, true) < 0) {
			r = mg_err_set(err, MG_EINPUT,
				       "response: error message contains a NUL byte");
			goto out;
		}
		for (char *p = msg; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = '?';
		*ret_ok = false;
		r = mg_err_set(err, MG_EREJECT, "%s", msg);
		goto out;
	}
	if (st != NULL) {
		if (!json_object_object_get_ex(obj, "status", &v) ||
		    !json_object_is_type(v, json_type_object)) {
			r = mg_err_set(err, MG_EINPUT, "response: no status object 'status'");
			goto out;
		}
		r = parse_status(v, st, err);
		if (r < 0) {
			memset(st, 0, sizeof(*st));
			goto out;
		}
	}
	*ret_ok = true;
	r = MG_OK;
out:
	json_object_put(obj);
	return r;
}

/* "1d 2h 3m 4s", "5m 0s", "12s"; negative durations count as 0. */
static int add_duration(struct mg_buf *b, int64_t secs)
{
	int64_t d, h, m;

	if (secs < 0)
		secs = 0;
	d = secs / 86400;
	h = secs / 3600 % 24;
	m = secs / 60 % 60;
	secs %= 60;
	if (d > 0)
		return mg_buf_addf(b, "%" PRId64 "d %" PRId64 "h %" PRId64 "m %" PRId64 "s", d, h,
				   m, secs);
	if (h > 0)
		return mg_buf_addf(b, "%" PRId64 "h %" PRId64 "m %" PRId64 "s", h, m, secs);
	if (m > 0)
		return mg_buf_addf(b, "%" PRId64 "m %" PRId64 "s", m, secs);
	return mg_buf_addf(b, "%" PRId64 "s", secs);
}

/* "2026-11-26 12:00:00 UTC"; "@<seconds>" when gmtime_r cannot represent it. */
static int add_time(struct mg_buf *b, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if ((int64_t)tt != t || gmtime_r(&tt, &tm) == NULL)
		return mg_buf_addf(b, "@%" PRId64, t);
	return mg_buf_addf(b, "%04d-%02d-%02d %02d:%02d:%02d UTC", tm.tm_year + 1900, tm.tm_mon + 1,
			   tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Append s with control characters masked, so a status line stays one line on a terminal. */
static int add_masked(struct mg_buf *b, const char *s, size_t size)
{
	int r = MG_OK;

	for (size_t i = 0; i < size && s[i] != '\0' && r == MG_OK; i++) {
		unsigned char c = (unsigned char)s[i];

		r = mg_buf_addc(b, (c < 0x20 || c == 0x7f) ? '?' : s[i]);
	}
	return r;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

int mg_ctl_format_status_text(struct mg_buf *out, const struct mg_ctl_status *st)
{
	struct mg_buf b = MG_BUF_INIT(out->max);
	unsigned idle =
		st->workers_total > st->workers_busy ? st->workers_total - st->workers_busy : 0;
	int64_t d;
	int r;

	r = mg_buf_adds(&b, "state:        ");
	if (r == MG_OK)
		r = add_masked(&b, st->state, sizeof(st->state));
	if (r == MG_OK && st->paused && strcmp(st->state, "paused") != 0)
		r = mg_buf_adds(&b, " (paused)");
	if (r == MG_OK)
		r = mg_buf_adds(&b, "\nuptime:       ");
	if (r == MG_OK)
		r = add_duration(&b, diff_sat(st->now, st->started_at));
	if (r == MG_OK)
		r = mg_buf_addf(&b, "\nworkers:      %u busy, %u idle", st->workers_busy, idle);
	if (r == MG_OK)
		r = mg_buf_addf(&b, "\npending:      %" PRIu64 " %s, %" PRIu64 " %s",
				st->pending_groups, plural(st->pending_groups, "group", "groups"),
				st->pending_directives,
				plural(st->pending_directives, "directive", "directives"));
	if (r == MG_OK)
		r = mg_buf_adds(&b, "\nnext due:     ");
	if (r == MG_OK && st->next_due == 0)
		r = mg_buf_adds(&b, "none");
	else if (r == MG_OK) {
		d = diff_sat(st->next_due, st->now);
		r = add_time(&b, st->next_due);
		if (r == MG_OK && d == 0)
			r = mg_buf_adds(&b, " (now)");
		else if (r == MG_OK) {
			r = mg_buf_adds(&b, d > 0 ? " (in " : " (overdue by ");
			if (r == MG_OK)
				r = add_duration(&b, d > 0 ? d : diff_sat(0, d));
			if (r == MG_OK)
				r = mg_buf_addc(&b, ')');
		}
	}
	if (r == MG_OK)
		r = mg_buf_adds(&b, "\nlast scan:    ");
	if (r == MG_OK && st->last_scan == 0)
		r = mg_buf_adds(&b, "never");
	else if (r == MG_OK) {
		r = add_time(&b, st->last_scan);
		if (r == MG_OK)
			r = mg_buf_adds(&b, " (");
		if (r == MG_OK)
			r = add_duration(&b, diff_sat(st->now, st->last_scan));
		if (r == MG_OK)
			r = mg_buf_adds(&b, " ago)");
	}
	if (r == MG_OK)
		r = mg_buf_addf(&b,
				"\nsince start:  %" PRIu64 " sent, %" PRIu64 " postponed, %" PRIu64
				" failed\nheld back:    %" PRIu64 " failed, %" PRIu64
				" deferred groups\ndatabase:     %s\nlast error:   ",
				st->sent, st->postponed, st->failed, st->failed_groups,
				st->deferred_groups,
				st->db_connected ? "connected" : "disconnected");
	if (r == MG_OK && st->last_error[0] == '\0')
		r = mg_buf_adds(&b, "none");
	else if (r == MG_OK)
		r = add_masked(&b, st->last_error, sizeof(st->last_error));
	if (r == MG_OK)
		r = mg_buf_addc(&b, '\n');
	if (r == MG_OK)
		r = mg_buf_add(out, b.data, b.len);
	mg_buf_release(&b);
	return r;
}

void mg_ctl_response_message(const char *line, size_t len, char *msg, size_t size)
{
	struct json_object *obj = NULL, *v;
	struct mg_err err = { 0 };

	msg[0] = '\0';
	if (parse_object(line, len, MG_CTL_RESPONSE_MAX, "response", &obj, &err) < 0)
		return;
	if (json_object_object_get_ex(obj, "message", &v) &&
	    json_object_is_type(v, json_type_string) && copy_str(msg, size, v, true) == 0) {
		for (char *p = msg; *p != '\0'; p++)
			if (((unsigned char)*p < 0x20 && *p != '\n') || *p == 0x7f)
				*p = '?';
	}
	json_object_put(obj);
}
