/* tests/unit/test_ctl_proto.c - the control protocol (ctl-proto.c) */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "ctl-proto.h"
#include "mg-alloc.h"
#include "mg-buf.h"
#include "mg-err.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* 2026-11-26 11:55:00 UTC and 12:00:00 UTC */
#define T_NOW 1795694100
#define T_DUE 1795694400

static const enum mg_ctl_cmd all_cmds[] = {
	MG_CTL_STATUS, MG_CTL_FLUSH, MG_CTL_PAUSE, MG_CTL_RESUME, MG_CTL_RELOAD,
};

static void test_request_round_trip(void **state)
{
	static const char *const want[] = {
		"{\"v\":1,\"cmd\":\"status\"}\n", "{\"v\":1,\"cmd\":\"flush\"}\n",
		"{\"v\":1,\"cmd\":\"pause\"}\n",  "{\"v\":1,\"cmd\":\"resume\"}\n",
		"{\"v\":1,\"cmd\":\"reload\"}\n",
	};

	for (size_t i = 0; i < ARRAY_SIZE(all_cmds); i++) {
		struct mg_buf b = MG_BUF_INIT(MG_CTL_LINE_MAX);
		struct mg_err err = { 0 };
		enum mg_ctl_cmd cmd = (enum mg_ctl_cmd) - 1;

		assert_int_equal(mg_ctl_format_request(&b, all_cmds[i]), MG_OK);
		assert_string_equal(mg_buf_str(&b), want[i]);
		assert_int_equal(mg_ctl_parse_request(b.data, b.len, &cmd, &err), MG_OK);
		assert_int_equal(cmd, all_cmds[i]);
		/* without the newline as well */
		cmd = (enum mg_ctl_cmd) - 1;
		assert_int_equal(mg_ctl_parse_request(b.data, b.len - 1, &cmd, &err), MG_OK);
		assert_int_equal(cmd, all_cmds[i]);
		assert_non_null(mg_ctl_cmd_name(all_cmds[i]));
		mg_buf_release(&b);
	}
	assert_null(mg_ctl_cmd_name((enum mg_ctl_cmd)99));
	{
		struct mg_buf b = MG_BUF_INIT(100);

		assert_int_equal(mg_ctl_format_request(&b, (enum mg_ctl_cmd)99), MG_EINPUT);
		assert_int_equal(b.len, 0);
		mg_buf_release(&b);
	}
}

static const struct good_case {
	const char *line;
	enum mg_ctl_cmd want;
} good_cases[] = {
	{ "{ \"cmd\" : \"reload\", \"v\" : 1 }", MG_CTL_RELOAD },
	{ "{\"v\":1,\"cmd\":\"pause\"}\r\n", MG_CTL_PAUSE },
	{ "{\"v\":1,\"cmd\":\"resume\"}  \t\n", MG_CTL_RESUME },
	{ "  {\"v\":1,\"cmd\":\"flush\"}", MG_CTL_FLUSH },
	/* duplicate keys: json-c keeps the last (LIBRARY-NOTES "json-c") */
	{ "{\"v\":1,\"cmd\":\"flush\",\"cmd\":\"status\"}", MG_CTL_STATUS },
};

static void test_request_good_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(good_cases); i++) {
		const struct good_case *c = &good_cases[i];
		struct mg_err err = { 0 };
		enum mg_ctl_cmd cmd = (enum mg_ctl_cmd) - 1;
		int r;

		print_message("case %zu: %s\n", i, c->line);
		r = mg_ctl_parse_request(c->line, strlen(c->line), &cmd, &err);
		if (r != MG_OK)
			fail_msg("case %zu: %s", i, err.msg);
		assert_int_equal(cmd, c->want);
	}
}

static const struct bad_case {
	const char *line;
	size_t len;	  /* 0: strlen(line) */
	const char *want; /* substring of err.msg */
} bad_cases[] = {
	{ "status", 0, "request: invalid JSON at offset 0" },
	{ "hello world\n", 0, "invalid JSON" },
	{ "[\"status\"]", 0, "request is not a JSON object" },
	{ "\"status\"", 0, "request is not a JSON object" },
	{ "null", 0, "request is not a JSON object" },
	{ "{\"cmd\":\"status\"}", 0, "request has no protocol version 'v'" },
	{ "{\"v\":2,\"cmd\":\"status\"}", 0, "unsupported protocol version 2 (expected 1)" },
	{ "{\"v\":0,\"cmd\":\"status\"}", 0, "unsupported protocol version 0" },
	{ "{\"v\":-1,\"cmd\":\"status\"}", 0, "unsupported protocol version -1" },
	{ "{\"v\":\"1\",\"cmd\":\"status\"}", 0, "'v' is not an integer" },
	{ "{\"v\":1.0,\"cmd\":\"status\"}", 0, "'v' is not an integer" },
	{ "{\"v\":true,\"cmd\":\"status\"}", 0, "'v' is not an integer" },
	{ "{\"v\":1}", 0, "request has no command 'cmd'" },
	{ "{\"v\":1,\"cmd\":\"explode\"}", 0,
	  "unknown command 'explode' (expected status, flush, pause, resume, reload, failed, "
	  "retry or drop)" },
	{ "{\"v\":1,\"cmd\":\"STATUS\"}", 0, "unknown command 'STATUS'" },
	{ "{\"v\":1,\"cmd\":\"\"}", 0, "unknown command ''" },
	{ "{\"v\":1,\"cmd\":\"status\\u0000x\"}", 0, "unknown command 'status?x'" },
	{ "{\"v\":1,\"cmd\":\"a\\nb\"}", 0, "unknown command 'a?b'" },
	{ "{\"v\":1,\"cmd\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}", 0,
	  "unknown command 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'" },
	{ "{\"v\":1,\"cmd\":5}", 0, "request: command 'cmd' is not a string" },
	{ "{\"v\":1,\"cmd\":null}", 0, "'cmd' is not a string" },
	{ "{\"v\":1,\"cmd\":[\"status\"]}", 0, "'cmd' is not a string" },
	{ "{\"v\":1,\"cmd\":\"status\",\"force\":true}", 0, "request: unknown key 'force'" },
	{ "{\"v\":1,\"cmd\":\"status\"} x", 0, "garbage after the JSON object at offset 23" },
	{ "{\"v\":1,\"cmd\":\"status\"}{\"v\":1,\"cmd\":\"flush\"}", 0, "garbage after" },
	{ "{\"v\":1,\"cmd\":\"status\"}\n{\"v\":1,\"cmd\":\"flush\"}\n", 0, "garbage after" },
	{ "{\"v\":1,\"cmd\":\"status\",}", 0, "invalid JSON" },
	{ "{\"v\":1,\"cmd\":\"stat", 0, "request: invalid JSON: unexpected end of line" },
	{ "{\"v\":1,\"cmd\":\"st\xff\"}", 0, "invalid JSON" },
	/* found by fuzz_ctl: json-c lets these through */
	{ "{\"v\":1,\"cmd\":\"st\xc0\xaf\"}", 0, "invalid JSON at offset 16: invalid UTF-8" },
	{ "{\"v\":1,\"cmd\":\"\xed\xa0\x80\"}", 0, "invalid JSON at offset 14: invalid UTF-8" },
	{ "{\"v\":1,\"cmd\":\"\xf4\x90\x80\x80\"}", 0, "invalid UTF-8" },
	{ "{\"v\":1,\"cmd\":\"\xf5\x80\x80\x80\"}", 0, "invalid UTF-8" },
	{ "{\"v\":1,/*x*/\"cmd\":\"status\"}", 0, "invalid JSON" },
	{ "{\"v\":1,\0\"cmd\":\"status\"}", 24, "request contains a NUL byte at offset 7" },
	{ "{\"v\":1,\"cmd\":\"status\"}\0", 23, "NUL byte at offset 22" },
	{ "", 0, "empty request" },
	{ "\n", 0, "empty request" },
	{ "\r\n", 0, "empty request" },
};

static void test_request_bad_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		const struct bad_case *c = &bad_cases[i];
		size_t len = c->len != 0 ? c->len : strlen(c->line);
		struct mg_err err = { 0 };
		enum mg_ctl_cmd cmd = (enum mg_ctl_cmd)77;
		int r;

		print_message("case %zu: %s\n", i, c->line);
		r = mg_ctl_parse_request(c->line, len, &cmd, &err);
		assert_int_equal(r, MG_EINPUT);
		assert_int_equal(err.rc, MG_EINPUT);
		assert_int_equal(cmd, 77); /* untouched */
		assert_null(strchr(err.msg, '\n'));
		if (strstr(err.msg, c->want) == NULL)
			fail_msg("case %zu: '%s' does not contain '%s'", i, err.msg, c->want);
	}
}

/* A valid request padded with spaces to n bytes, plus "\n". */
static void padded_request(struct mg_buf *b, size_t n)
{
	assert_int_equal(mg_buf_adds(b, "{\"v\":1,\"cmd\":\"flush\"}"), MG_OK);
	while (b->len < n)
		assert_int_equal(mg_buf_addc(b, ' '), MG_OK);
	assert_int_equal(mg_buf_addc(b, '\n'), MG_OK);
}

static void test_request_size_limit(void **state)
{
	struct mg_buf b = MG_BUF_INIT(20000);
	struct mg_err err = { 0 };
	enum mg_ctl_cmd cmd;

	padded_request(&b, MG_CTL_LINE_MAX);
	assert_int_equal(mg_ctl_parse_request(b.data, b.len, &cmd, &err), MG_OK);
	assert_int_equal(cmd, MG_CTL_FLUSH);

	mg_buf_reset(&b);
	padded_request(&b, MG_CTL_LINE_MAX + 1);
	assert_int_equal(mg_ctl_parse_request(b.data, b.len, &cmd, &err), MG_EINPUT);
	assert_string_equal(err.msg, "request too long (4097 bytes, at most 4096)");

	mg_buf_reset(&b);
	padded_request(&b, 10000);
	assert_int_equal(mg_ctl_parse_request(b.data, b.len, &cmd, &err), MG_EINPUT);
	assert_string_equal(err.msg, "request too long (10000 bytes, at most 4096)");
	mg_buf_release(&b);
}

static const struct mg_ctl_status fixed_status = {
	.state = "idle",
	.started_at = T_NOW - 3723,
	.now = T_NOW,
	.workers_busy = 1,
	.workers_total = 4,
	.pending_groups = 12,
	.pending_directives = 40,
	.next_due = T_DUE,
	.last_scan = T_NOW - 12,
	.sent = 10,
	.postponed = 2,
	.failed = 1,
	.failed_groups = 3,
	.deferred_groups = 2,
	.paused = false,
	.db_connected = true,
	.last_error = "",
};

static const char fixed_json[] =
	"{\"v\":1,\"ok\":true,\"status\":{\"state\":\"idle\",\"started_at\":1795690377,"
	"\"now\":1795694100,\"uptime_seconds\":3723,\"workers_busy\":1,\"workers_total\":4,"
	"\"pending_groups\":12,\"pending_directives\":40,\"next_due\":1795694400,"
	"\"last_scan\":1795694088,\"sent\":10,\"postponed\":2,\"failed\":1,"
	"\"failed_groups\":3,\"deferred_groups\":2,\"paused\":false,"
	"\"db_connected\":true,\"last_error\":null}}\n";

static void assert_status_equal(const struct mg_ctl_status *a, const struct mg_ctl_status *b)
{
	assert_string_equal(a->state, b->state);
	assert_int_equal(a->started_at, b->started_at);
	assert_int_equal(a->now, b->now);
	assert_int_equal(a->workers_busy, b->workers_busy);
	assert_int_equal(a->workers_total, b->workers_total);
	assert_int_equal(a->pending_groups, b->pending_groups);
	assert_int_equal(a->pending_directives, b->pending_directives);
	assert_int_equal(a->next_due, b->next_due);
	assert_int_equal(a->last_scan, b->last_scan);
	assert_int_equal(a->sent, b->sent);
	assert_int_equal(a->postponed, b->postponed);
	assert_int_equal(a->failed, b->failed);
	assert_int_equal(a->failed_groups, b->failed_groups);
	assert_int_equal(a->deferred_groups, b->deferred_groups);
	assert_int_equal(a->paused, b->paused);
	assert_int_equal(a->db_connected, b->db_connected);
	assert_string_equal(a->last_error, b->last_error);
}

/* retry and drop name a failed group; failed/retry/drop answer with a message. */
static void test_request_id_and_message(void **state)
{
	static const struct {
		const char *line;
		int rc;
		enum mg_ctl_cmd cmd;
		int64_t id;
	} cases[] = {
		{ "{\"v\":1,\"cmd\":\"retry\",\"id\":17}", MG_OK, MG_CTL_RETRY, 17 },
		{ "{\"v\":1,\"cmd\":\"retry\"}", MG_OK, MG_CTL_RETRY, 0 },
		{ "{\"v\":1,\"cmd\":\"drop\",\"id\":9007199254740993}", MG_OK, MG_CTL_DROP,
		  9007199254740993LL },
		{ "{\"v\":1,\"cmd\":\"failed\"}", MG_OK, MG_CTL_FAILED, 0 },
		{ "{\"v\":1,\"cmd\":\"drop\",\"id\":-1}", MG_EINPUT, 0, 0 },
		{ "{\"v\":1,\"cmd\":\"drop\",\"id\":\"7\"}", MG_EINPUT, 0, 0 },
		{ "{\"v\":1,\"cmd\":\"drop\",\"id\":7.5}", MG_EINPUT, 0, 0 },
		{ "{\"v\":1,\"cmd\":\"drop\",\"id\":99999999999999999999}", MG_EINPUT, 0, 0 },
	};
	struct mg_buf b = MG_BUF_INIT(MG_CTL_RESPONSE_MAX);
	struct mg_err err = { 0 };
	enum mg_ctl_cmd cmd;
	char msg[64];
	int64_t id;
	bool ok = false;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int r = mg_ctl_parse_request_id(cases[i].line, strlen(cases[i].line), &cmd, &id,
						&err);

		if (r != cases[i].rc)
			fail_msg("case %zu: got %d want %d (%s)", i, r, cases[i].rc, err.msg);
		if (r == MG_OK && (cmd != cases[i].cmd || id != cases[i].id))
			fail_msg("case %zu: got cmd %d id %lld", i, (int)cmd, (long long)id);
	}
	assert_int_equal(mg_ctl_format_request_id(&b, MG_CTL_DROP, 42), MG_OK);
	assert_string_equal(mg_buf_str(&b), "{\"v\":1,\"cmd\":\"drop\",\"id\":42}\n");
	assert_int_equal(mg_ctl_parse_request_id(b.data, b.len, &cmd, &id, &err), MG_OK);
	assert_int_equal(id, 42);
	assert_int_equal(mg_ctl_format_request_id(&b, MG_CTL_DROP, -3), MG_EINPUT);

	mg_buf_reset(&b);
	assert_int_equal(mg_ctl_format_ok_message(&b, "2 failed\n\n7  failed\x01"), MG_OK);
	assert_int_equal(mg_ctl_parse_response(b.data, b.len, &ok, NULL, &err), MG_OK);
	assert_true(ok);
	mg_ctl_response_message(b.data, b.len, msg, sizeof(msg));
	assert_string_equal(msg, "2 failed\n\n7  failed?");
	mg_ctl_response_message("{\"v\":1,\"ok\":true}", 18, msg, sizeof(msg));
	assert_string_equal(msg, "");
	mg_buf_release(&b);
}

static void test_status_json(void **state)
{
	struct mg_buf b = MG_BUF_INIT(MG_CTL_RESPONSE_MAX);

	assert_int_equal(mg_ctl_format_ok(&b, &fixed_status), MG_OK);
	assert_string_equal(mg_buf_str(&b), fixed_json);
	mg_buf_reset(&b);
	assert_int_equal(mg_ctl_format_ok(&b, NULL), MG_OK);
	assert_string_equal(mg_buf_str(&b), "{\"v\":1,\"ok\":true}\n");
	mg_buf_release(&b);
}

static void test_status_round_trip(void **state)
{
	struct mg_ctl_status cases[4];

	cases[0] = fixed_status;
	/* all zero: nulls on the wire */
	memset(&cases[1], 0, sizeof(cases[1]));
	/* extremes and awkward strings */
	memset(&cases[2], 0, sizeof(cases[2]));
	strcpy(cases[2].state, "sending \"x\" \\ \t\x01");
	cases[2].started_at = INT64_MIN;
	cases[2].now = INT64_MAX;
	cases[2].workers_busy = UINT_MAX;
	cases[2].workers_total = UINT_MAX;
	cases[2].pending_groups = UINT64_MAX;
	cases[2].pending_directives = (uint64_t)INT64_MAX + 1;
	cases[2].next_due = -1;
	cases[2].last_scan = INT64_MIN;
	cases[2].sent = UINT64_MAX;
	cases[2].paused = true;
	strcpy(cases[2].last_error,
	       "smtp: 451 4.3.0 \xc3\xbc\xe2\x82\xac\xf0\x9f\x93\xa7\nline 2/\x7f");
	/* a last_error that fills its array */
	cases[3] = fixed_status;
	memset(cases[3].last_error, 'e', sizeof(cases[3].last_error) - 1);
	cases[3].last_error[sizeof(cases[3].last_error) - 1] = '\0';
	memset(cases[3].state, 's', sizeof(cases[3].state) - 1);
	cases[3].state[sizeof(cases[3].state) - 1] = '\0';

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct mg_buf b = MG_BUF_INIT(MG_CTL_RESPONSE_MAX);
		struct mg_ctl_status got;
		struct mg_err err = { 0 };
		bool ok = false;
		int r;

		print_message("case %zu\n", i);
		assert_int_equal(mg_ctl_format_ok(&b, &cases[i]), MG_OK);
		assert_int_equal(b.data[b.len - 1], '\n');
		assert_null(memchr(b.data, '\n', b.len - 1)); /* one line */
		memset(&got, 0x55, sizeof(got));
		r = mg_ctl_parse_response(b.data, b.len, &ok, &got, &err);
		if (r != MG_OK)
			fail_msg("case %zu: %s: %s", i, err.msg, b.data);
		assert_true(ok);
		assert_status_equal(&got, &cases[i]);
		/* a caller that does not want the status */
		ok = false;
		assert_int_equal(mg_ctl_parse_response(b.data, b.len, &ok, NULL, &err), MG_OK);
		assert_true(ok);
		mg_buf_release(&b);
	}
}

static void test_status_bad_utf8(void **state)
{
	struct mg_ctl_status st = fixed_status, got;
	struct mg_buf b = MG_BUF_INIT(MG_CTL_RESPONSE_MAX);
	struct mg_err err = { 0 };
	bool ok = false;

	/* a stray continuation byte, a truncated sequence, an overlong '/', a surrogate */
	strcpy(st.last_error, "a\x80"
			      "b\xe2\x82"
			      "c\xc0\xaf"
			      "d\xed\xa0\x80");
	assert_int_equal(mg_ctl_format_ok(&b, &st), MG_OK);
	assert_non_null(strstr(b.data, "\"last_error\":\"a\\ufffdb\\ufffd\\ufffdc\\ufffd\\ufffdd"
				       "\\ufffd\\ufffd\\ufffd\""));
	assert_int_equal(mg_ctl_parse_response(b.data, b.len, &ok, &got, &err), MG_OK);
	assert_string_equal(got.last_error, "a\xef\xbf\xbd"
					    "b\xef\xbf\xbd\xef\xbf\xbd"
					    "c\xef\xbf\xbd\xef\xbf\xbd"
					    "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");

	/* 511 bad bytes grow to 511 * 3 bytes of U+FFFD: cut at a character boundary */
	memset(st.last_error, 0xff, sizeof(st.last_error) - 1);
	st.last_error[sizeof(st.last_error) - 1] = '\0';
	mg_buf_reset(&b);
	assert_int_equal(mg_ctl_format_ok(&b, &st), MG_OK);
	assert_int_equal(mg_ctl_parse_response(b.data, b.len, &ok, &got, &err), MG_OK);
	assert_int_equal(strlen(got.last_error), 510); /* 170 whole characters */
	assert_memory_equal(got.last_error + 507, "\xef\xbf\xbd", 3);
	mg_buf_release(&b);
}

static void test_format_cap(void **state)
{
	struct mg_buf b = MG_BUF_INIT(100);
	struct mg_buf big = MG_BUF_INIT(1000);

	/* out is unchanged when the line does not fit */
	assert_int_equal(mg_buf_adds(&b, "keep"), MG_OK);
	assert_int_equal(mg_ctl_format_ok(&b, &fixed_status), MG_EINPUT);
	assert_string_equal(mg_buf_str(&b), "keep");
	assert_int_equal(mg_ctl_format_status_text(&b, &fixed_status), MG_EINPUT);
	assert_string_equal(mg_buf_str(&b), "keep");
	assert_int_equal(mg_ctl_format_error(&b, "0123456789012345678901234567890123456789"
						 "0123456789012345678901234567890123456789"),
			 MG_EINPUT);
	assert_string_equal(mg_buf_str(&b), "keep");
	assert_int_equal(mg_ctl_format_ok(&b, NULL), MG_OK);
	assert_string_equal(mg_buf_str(&b), "keep{\"v\":1,\"ok\":true}\n");

	/* an unterminated string array is refused, not read past */
	{
		struct mg_ctl_status st = fixed_status;

		memset(st.state, 'x', sizeof(st.state));
		assert_int_equal(mg_ctl_format_ok(&big, &st), MG_EINPUT);
		assert_int_equal(big.len, 0);
	}
	mg_buf_release(&b);
	mg_buf_release(&big);
}

static const struct error_case {
	const char *message;
	const char *want_json;
	const char *want_msg;
} error_cases[] = {
	{ "access denied", "{\"v\":1,\"ok\":false,\"error\":\"access denied\"}\n",
	  "access denied" },
	{ "reload: /etc/x.conf: 'smtp.port': expected an integer 1..65535, got \"x\"",
	  "{\"v\":1,\"ok\":false,\"error\":\"reload: /etc/x.conf: 'smtp.port': expected an integer "
	  "1..65535, got \\\"x\\\"\"}\n",
	  "reload: /etc/x.conf: 'smtp.port': expected an integer 1..65535, got \"x\"" },
	{ "two\nlines\x1b[31m", "{\"v\":1,\"ok\":false,\"error\":\"two\\nlines\\u001b[31m\"}\n",
	  "two?lines?[31m" },
	{ "gr\xc3\xbc\xc3\x9f", "{\"v\":1,\"ok\":false,\"error\":\"gr\xc3\xbc\xc3\x9f\"}\n",
	  "gr\xc3\xbc\xc3\x9f" },
	{ NULL, "{\"v\":1,\"ok\":false,\"error\":\"unknown error\"}\n", "unknown error" },
	{ "", "{\"v\":1,\"ok\":false,\"error\":\"\"}\n", "" },
};

static void test_error_round_trip(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(error_cases); i++) {
		const struct error_case *c = &error_cases[i];
		struct mg_buf b = MG_BUF_INIT(MG_CTL_RESPONSE_MAX);
		struct mg_ctl_status st;
		struct mg_err err = { 0 };
		bool ok = true;

		print_message("case %zu\n", i);
		assert_int_equal(mg_ctl_format_error(&b, c->message), MG_OK);
		assert_string_equal(mg_buf_str(&b), c->want_json);
		memset(&st, 0x55, sizeof(st));
		assert_int_equal(mg_ctl_parse_response(b.data, b.len, &ok, &st, &err), MG_EREJECT);
		assert_false(ok);
		assert_int_equal(err.rc, MG_EREJECT);
		assert_string_equal(err.msg, c->want_msg);
		assert_int_equal(st.workers_total, 0); /* zeroed */
		mg_buf_release(&b);
	}
}

static const struct bad_case bad_responses[] = {
	{ "", 0, "empty response" },
	{ "ok", 0, "response: invalid JSON" },
	{ "[]", 0, "response is not a JSON object" },
	{ "{\"ok\":true}", 0, "response has no protocol version 'v'" },
	{ "{\"v\":2,\"ok\":true}", 0, "response: unsupported protocol version 2 (expected 1)" },
	{ "{\"v\":1}", 0, "'ok' is missing or not a boolean" },
	{ "{\"v\":1,\"ok\":1}", 0, "'ok' is missing or not a boolean" },
	{ "{\"v\":1,\"ok\":false}", 0, "error without a message string 'error'" },
	{ "{\"v\":1,\"ok\":false,\"error\":42}", 0, "error without a message string" },
	{ "{\"v\":1,\"ok\":true}", 0, "response: no status object 'status'" },
	{ "{\"v\":1,\"ok\":true,\"status\":[]}", 0, "no status object 'status'" },
	{ "{\"v\":1,\"ok\":true,\"status\":{}}", 0, "response: status has no 'state'" },
	{ "{\"v\":1,\"ok\":true} {}", 0, "response: garbage after the JSON object at offset 18" },
	{ "{\"v\":1,\"ok\":true}{}", 0, "response: garbage after the JSON object at offset 17" },
	{ "42", 0, "response is not a JSON object" },
	/* a NUL byte in the message: it was read uninitialised (fuzz_ctl) */
	{ "{\"v\":1,\"ok\":false,\"error\":\"a\\u0000b\"}", 0,
	  "response: error message contains a NUL byte" },
	{ "{\"v\":1,\"ok\":false,\"error\":\"\\u0000\"}", 0, "error message contains a NUL byte" },
	/* found by fuzz_ctl: a status string that its own writer could not send back */
	{ "{\"v\":1,\"ok\":true,\"status\":{\"state\":\"idle\xf4\xa0\x80\x80\"}}", 0,
	  "response: invalid JSON at offset 40: invalid UTF-8" },
	{ "{\"v\":1,\"ok\":false,\"error\":\"\xed\xa0\x80\"}", 0, "invalid UTF-8" },
};

static void test_response_bad_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(bad_responses); i++) {
		const struct bad_case *c = &bad_responses[i];
		struct mg_ctl_status st;
		struct mg_err err = { 0 };
		bool ok = true;
		int r;

		print_message("case %zu: %s\n", i, c->line);
		r = mg_ctl_parse_response(c->line, strlen(c->line), &ok, &st, &err);
		assert_int_equal(r, MG_EINPUT);
		assert_true(ok); /* untouched */
		if (strstr(err.msg, c->want) == NULL)
			fail_msg("case %zu: '%s' does not contain '%s'", i, err.msg, c->want);
	}
}

/* The fixed status with one field's JSON value replaced. */
static const struct field_case {
	const char *key;
	const char *value;
	bool valid;
} field_cases[] = {
	{ "state", "null", false },
	{ "state", "\"sssssssssssssssssssssssssssssss\"", true },   /* 31 bytes */
	{ "state", "\"ssssssssssssssssssssssssssssssss\"", false }, /* 32 bytes */
	{ "state", "\"a\\u0000b\"", false },
	{ "started_at", "\"1\"", false },
	{ "started_at", "1.5", false },
	{ "started_at", "null", false },
	{ "workers_busy", "-1", false },
	{ "workers_busy", "4294967295", true },
	{ "workers_busy", "4294967296", false },
	{ "pending_groups", "-1", false },
	{ "pending_groups", "18446744073709551615", true },
	{ "sent", "true", false },
	{ "next_due", "null", true },
	{ "next_due", "\"soon\"", false },
	{ "last_scan", "-5", true },
	{ "paused", "1", false },
	{ "paused", "null", false },
	{ "db_connected", "\"yes\"", false },
	{ "last_error", "null", true },
	{ "last_error", "false", false },
	{ "uptime_seconds", "\"ignored\"", true }, /* derived; not read */
};

static void test_status_field_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(field_cases); i++) {
		const struct field_case *c = &field_cases[i];
		struct mg_buf line = MG_BUF_INIT(MG_CTL_RESPONSE_MAX);
		struct mg_ctl_status st;
		struct mg_err err = { 0 };
		char key[64];
		const char *p, *end;
		bool ok = false;
		int r;

		print_message("case %zu: %s=%s\n", i, c->key, c->value);
		/* splice the value into the golden line */
		(void)snprintf(key, sizeof(key), "\"%s\":", c->key);
		p = strstr(fixed_json, key);
		assert_non_null(p);
		p += strlen(key);
		end = p + strcspn(p, ",}");
		assert_int_equal(mg_buf_add(&line, fixed_json, (size_t)(p - fixed_json)), MG_OK);
		assert_int_equal(mg_buf_adds(&line, c->value), MG_OK);
		assert_int_equal(mg_buf_adds(&line, end), MG_OK);
		/* and add an unknown key, which a newer daemon may send */
		line.data[line.len - 3] = '\0';
		line.len -= 3;
		assert_int_equal(mg_buf_adds(&line, ",\"future\":[1,2]}}\n"), MG_OK);

		r = mg_ctl_parse_response(line.data, line.len, &ok, &st, &err);
		if (c->valid && r != MG_OK)
			fail_msg("case %zu: %s: %s", i, err.msg, line.data);
		if (!c->valid) {
			assert_int_equal(r, MG_EINPUT);
			assert_non_null(strstr(err.msg, c->key));
			assert_int_equal(st.now, 0); /* zeroed again */
		}
		mg_buf_release(&line);
	}
}

static const struct text_case {
	struct mg_ctl_status st;
	const char *want;
} text_cases[] = {
	{ .st = {
		  .state = "idle",
		  .started_at = T_NOW - 3723,
		  .now = T_NOW,
		  .workers_busy = 1,
		  .workers_total = 4,
		  .pending_groups = 12,
		  .pending_directives = 40,
		  .next_due = T_DUE,
		  .last_scan = T_NOW - 12,
		  .sent = 10,
		  .postponed = 2,
		  .failed = 1,
		  .db_connected = true,
	  },
	  .want = "state:        idle\n"
		  "uptime:       1h 2m 3s\n"
		  "workers:      1 busy, 3 idle\n"
		  "pending:      12 groups, 40 directives\n"
		  "next due:     2026-11-26 12:00:00 UTC (in 5m 0s)\n"
		  "last scan:    2026-11-26 11:54:48 UTC (12s ago)\n"
		  "since start:  10 sent, 2 postponed, 1 failed\n"
		  "held back:    0 failed, 0 deferred groups\n"
		  "database:     connected\n"
		  "last error:   none\n" },
	{ .st = {
		  .state = "sending",
		  .started_at = T_NOW - 2 * 86400 - 5,
		  .now = T_NOW,
		  .workers_busy = 0,
		  .workers_total = 0,
		  .pending_groups = 1,
		  .pending_directives = 1,
		  .next_due = T_NOW - 61,
		  .last_scan = T_NOW,
		  .paused = true,
		  .db_connected = false,
		  .last_error = "database: connection lost\n\x1b[2J",
	  },
	  .want = "state:        sending (paused)\n"
		  "uptime:       2d 0h 0m 5s\n"
		  "workers:      0 busy, 0 idle\n"
		  "pending:      1 group, 1 directive\n"
		  "next due:     2026-11-26 11:53:59 UTC (overdue by 1m 1s)\n"
		  "last scan:    2026-11-26 11:55:00 UTC (0s ago)\n"
		  "since start:  0 sent, 0 postponed, 0 failed\n"
		  "held back:    0 failed, 0 deferred groups\n"
		  "database:     disconnected\n"
		  "last error:   database: connection lost??[2J\n" },
	{ .st = {
		  .state = "paused",
		  .started_at = T_NOW + 10, /* clock went back: never a negative uptime */
		  .now = T_NOW,
		  .workers_busy = 5, /* inconsistent: no negative idle count */
		  .workers_total = 4,
		  .next_due = T_NOW,
		  .paused = true,
	  },
	  .want = "state:        paused\n"
		  "uptime:       0s\n"
		  "workers:      5 busy, 0 idle\n"
		  "pending:      0 groups, 0 directives\n"
		  "next due:     2026-11-26 11:55:00 UTC (now)\n"
		  "last scan:    never\n"
		  "since start:  0 sent, 0 postponed, 0 failed\n"
		  "held back:    0 failed, 0 deferred groups\n"
		  "database:     disconnected\n"
		  "last error:   none\n" },
	{ .st = {
		  .state = "idle",
		  .started_at = INT64_MIN,
		  .now = INT64_MAX,
		  .next_due = INT64_MIN,
		  .last_scan = -1,
	  },
	  .want = "state:        idle\n"
		  "uptime:       106751991167300d 15h 30m 7s\n"
		  "workers:      0 busy, 0 idle\n"
		  "pending:      0 groups, 0 directives\n"
		  "next due:     @-9223372036854775808 (overdue by 106751991167300d 15h 30m 7s)\n"
		  "last scan:    1969-12-31 23:59:59 UTC (106751991167300d 15h 30m 7s ago)\n"
		  "since start:  0 sent, 0 postponed, 0 failed\n"
		  "held back:    0 failed, 0 deferred groups\n"
		  "database:     disconnected\n"
		  "last error:   none\n" },
};

static void test_status_text_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(text_cases); i++) {
		struct mg_buf b = MG_BUF_INIT(4096);

		print_message("case %zu\n", i);
		assert_int_equal(mg_ctl_format_status_text(&b, &text_cases[i].st), MG_OK);
		assert_string_equal(mg_buf_str(&b), text_cases[i].want);
		mg_buf_release(&b);
	}
}

/* Every formatter and parser, with the Nth allocation failing. */
static int run_all(struct mg_buf *out)
{
	struct mg_ctl_status st;
	struct mg_err err = { 0 };
	enum mg_ctl_cmd cmd;
	bool ok;
	int r;

	r = mg_ctl_format_request(out, MG_CTL_RELOAD);
	if (r == MG_OK)
		r = mg_ctl_parse_request(out->data, out->len, &cmd, &err);
	if (r == MG_OK)
		r = mg_ctl_format_ok(out, &fixed_status);
	if (r == MG_OK)
		r = mg_ctl_format_error(out, "reload failed: x");
	if (r == MG_OK)
		r = mg_ctl_format_status_text(out, &fixed_status);
	if (r == MG_OK)
		r = mg_ctl_parse_response(fixed_json, strlen(fixed_json), &ok, &st, &err);
	return r;
}

static void test_torture(void **state)
{
	struct mg_buf want = MG_BUF_INIT(65536);
	long n;

	assert_int_equal(run_all(&want), MG_OK);
	for (n = 0;; n++) {
		struct mg_buf out = MG_BUF_INIT(65536);
		int r;

		mg_alloc_fail_after(n);
		r = run_all(&out);
		mg_alloc_fail_after(-1);
		if (r == MG_OK) {
			assert_string_equal(mg_buf_str(&out), mg_buf_str(&want));
			mg_buf_release(&out);
			break;
		}
		assert_int_equal(r, MG_ENOMEM);
		mg_buf_release(&out);
		assert_true(n < 1000);
	}
	print_message("torture: %ld allocations\n", n);
	assert_true(n > 3);
	mg_buf_release(&want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_round_trip),
		cmocka_unit_test(test_request_id_and_message),
		cmocka_unit_test(test_request_good_table),
		cmocka_unit_test(test_request_bad_table),
		cmocka_unit_test(test_request_size_limit),
		cmocka_unit_test(test_status_json),
		cmocka_unit_test(test_status_round_trip),
		cmocka_unit_test(test_status_bad_utf8),
		cmocka_unit_test(test_format_cap),
		cmocka_unit_test(test_error_round_trip),
		cmocka_unit_test(test_response_bad_table),
		cmocka_unit_test(test_status_field_table),
		cmocka_unit_test(test_status_text_table),
		cmocka_unit_test(test_torture),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
