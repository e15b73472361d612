/* tests/fuzz/fuzz_ctl.c - fuzz the control protocol parsers and check the round trips */
#include <stdbool.h>
#include <string.h>

#include "ctl-proto.h"
#include "fuzz.h"
#include "hdr.h"
#include "mg-buf.h"
#include "mg-err.h"

static bool no_controls(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static bool str_valid(const char *s, size_t size)
{
	size_t n = strnlen(s, size);

	return n < size && mg_utf8_valid(s, n);
}

static void check_status_equal(const struct mg_ctl_status *a, const struct mg_ctl_status *b)
{
	FUZZ_CHECK(strcmp(a->state, b->state) == 0);
	FUZZ_CHECK(a->started_at == b->started_at && a->now == b->now);
	FUZZ_CHECK(a->workers_busy == b->workers_busy && a->workers_total == b->workers_total);
	FUZZ_CHECK(a->pending_groups == b->pending_groups);
	FUZZ_CHECK(a->pending_directives == b->pending_directives);
	FUZZ_CHECK(a->next_due == b->next_due && a->last_scan == b->last_scan);
	FUZZ_CHECK(a->sent == b->sent && a->postponed == b->postponed && a->failed == b->failed);
	FUZZ_CHECK(a->paused == b->paused && a->db_connected == b->db_connected);
	FUZZ_CHECK(strcmp(a->last_error, b->last_error) == 0);
}

static void request(const char *line, size_t len)
{
	enum mg_ctl_cmd cmd = (enum mg_ctl_cmd) - 1, cmd2 = (enum mg_ctl_cmd) - 1;
	struct mg_buf b = MG_BUF_INIT(MG_CTL_LINE_MAX);
	struct mg_err err = { 0 };
	int64_t id = -1, id2 = -1;
	int r;

	fuzz_dirty_stack();
	r = mg_ctl_parse_request_id(line, len, &cmd, &id, &err);
	FUZZ_CHECK(r == MG_OK || r == MG_EINPUT);
	if (r < 0) {
		/* the message goes back to the client as one line */
		FUZZ_CHECK(cmd == (enum mg_ctl_cmd) - 1 && err.msg[0] != '\0' &&
			   no_controls(err.msg));
		return;
	}
	FUZZ_CHECK(mg_ctl_cmd_name(cmd) != NULL);
	FUZZ_CHECK(id >= 0 && id < INT64_MAX);
	FUZZ_CHECK(mg_ctl_format_request_id(&b, cmd, id) == MG_OK);
	FUZZ_CHECK(mg_ctl_parse_request_id(b.data, b.len, &cmd2, &id2, &err) == MG_OK &&
		   cmd2 == cmd && id2 == id);
	mg_buf_release(&b);
}

/* An ok response: format it again, read that, and print it for a terminal. */
static void status_round_trip(const struct mg_ctl_status *st)
{
	struct mg_buf b = MG_BUF_INIT(MG_CTL_RESPONSE_MAX + 1), text = MG_BUF_INIT(1u << 16);
	struct mg_ctl_status st2;
	struct mg_err err = { 0 };
	bool ok = false;

	FUZZ_CHECK(mg_ctl_format_status_text(&text, st) == MG_OK);
	FUZZ_CHECK(strlen(mg_buf_str(&text)) == text.len);
	for (size_t i = 0; i < text.len; i++)
		FUZZ_CHECK((unsigned char)text.data[i] >= 0x20 || text.data[i] == '\n');
	mg_buf_release(&text);

	/* what the parser hands out is UTF-8, so the writer sends it back unchanged */
	FUZZ_CHECK(str_valid(st->state, sizeof(st->state)));
	FUZZ_CHECK(str_valid(st->last_error, sizeof(st->last_error)));
	FUZZ_CHECK(mg_ctl_format_ok(&b, st) == MG_OK);
	FUZZ_CHECK(b.len <= MG_CTL_RESPONSE_MAX + 1);
	FUZZ_CHECK(mg_ctl_parse_response(b.data, b.len, &ok, &st2, &err) == MG_OK && ok);
	check_status_equal(st, &st2);
	mg_buf_release(&b);
}

static void response(const char *line, size_t len)
{
	struct mg_buf b = MG_BUF_INIT(MG_CTL_RESPONSE_MAX + 1);
	struct mg_err err = { 0 }, err2 = { 0 };
	struct mg_ctl_status st;
	bool ok = true, ok2 = true;
	int r, r2;

	/* without a status: only the envelope counts */
	fuzz_dirty_stack();
	r2 = mg_ctl_parse_response(line, len, &ok2, NULL, &err2);
	FUZZ_CHECK(r2 == MG_OK || r2 == MG_EREJECT || r2 == MG_EINPUT);
	FUZZ_CHECK(r2 != MG_OK || ok2);
	FUZZ_CHECK(r2 != MG_EREJECT || !ok2);

	if (r2 == MG_OK) {
		/* a message for people: one string, only newlines as controls */
		char msg[512];

		mg_ctl_response_message(line, len, msg, sizeof(msg));
		FUZZ_CHECK(strlen(msg) < sizeof(msg));
		for (size_t i = 0; msg[i] != '\0'; i++)
			FUZZ_CHECK((unsigned char)msg[i] >= 0x20 || msg[i] == '\n');
		FUZZ_CHECK(msg[0] == '\0' || mg_ctl_format_ok_message(&b, msg) == MG_OK);
		mg_buf_release(&b);
	}

	memset(&st, 0xa5, sizeof(st));
	fuzz_dirty_stack();
	r = mg_ctl_parse_response(line, len, &ok, &st, &err);
	FUZZ_CHECK(r == MG_OK || r == MG_EREJECT || r == MG_EINPUT);
	if (r == MG_OK) {
		FUZZ_CHECK(ok && r2 == MG_OK);
		status_round_trip(&st);
		return;
	}
	if (r == MG_EREJECT) {
		/* the daemon's message, one line; it survives another trip */
		FUZZ_CHECK(!ok && r2 == MG_EREJECT && strcmp(err.msg, err2.msg) == 0);
		FUZZ_CHECK(no_controls(err.msg));
		FUZZ_CHECK(mg_ctl_format_error(&b, err.msg) == MG_OK);
		r = mg_ctl_parse_response(b.data, b.len, &ok2, NULL, &err2);
		FUZZ_CHECK(r == MG_EREJECT && !ok2);
		FUZZ_CHECK(mg_utf8_valid(err.msg, strlen(err.msg)));
		FUZZ_CHECK(strcmp(err.msg, err2.msg) == 0);
		mg_buf_release(&b);
		return;
	}
	/* malformed: *ret_ok untouched, st zeroed, a message that fits one line */
	FUZZ_CHECK(ok);
	FUZZ_CHECK(err.msg[0] != '\0' && no_controls(err.msg));
	for (size_t i = 0; i < sizeof(st); i++)
		FUZZ_CHECK(((const unsigned char *)&st)[i] == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;

	request(line, size);
	response(line, size);
	return 0;
}
