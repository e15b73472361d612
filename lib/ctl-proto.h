/* lib/ctl-proto.h - the control protocol between mailgenctl and mailgend */
#ifndef MG_CTL_PROTO_H
#define MG_CTL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mg-buf.h"
#include "mg-err.h"

/*
 * One request per line, one JSON object: {"v": 1, "cmd": "status"}.
 * One response per request, one JSON object on one line:
 *   {"v": 1, "ok": true}, {"v": 1, "ok": true, "status": {...}}
 *   or {"v": 1, "ok": false, "error": "..."}.
 * A request longer than MG_CTL_LINE_MAX bytes (not counting the "\n") is
 * refused; a response is at most MG_CTL_RESPONSE_MAX bytes.  Both sides
 * write valid UTF-8 only.
 *
 * Requests are checked strictly (other keys than "v", "cmd" and "id", an
 * integer >= 0 naming a failed group, are refused).  An ok response may
 * carry a "message" string for people (the answer to failed, retry, drop).  Responses are read leniently: unknown keys are ignored, so a
 * daemon may add status fields without a new protocol version.
 */
#define MG_CTL_VERSION	    1
#define MG_CTL_LINE_MAX	    4096
#define MG_CTL_RESPONSE_MAX 65536

enum mg_ctl_cmd {
	MG_CTL_STATUS,
	MG_CTL_FLUSH,
	MG_CTL_PAUSE,
	MG_CTL_RESUME,
	MG_CTL_RELOAD,
	MG_CTL_FAILED, /* list the failed and deferred groups */
	MG_CTL_RETRY,  /* release failed group "id" (0: all) */
	MG_CTL_DROP,   /* give up on failed group "id" */
};

/* The daemon's status as "mailgenctl status" shows it. */
struct mg_ctl_status {
	char state[32];	    /* "idle", "scanning", "sending", "paused", ... */
	int64_t started_at; /* seconds since the epoch */
	int64_t now;	    /* seconds since the epoch, when the status was taken */
	unsigned workers_busy;
	unsigned workers_total;
	uint64_t pending_groups;     /* found by the last scan */
	uint64_t pending_directives; /* found by the last scan */
	int64_t next_due;	     /* seconds since the epoch; 0: nothing postponed */
	int64_t last_scan;	     /* seconds since the epoch; 0: none yet */
	uint64_t sent;		     /* since start */
	uint64_t postponed;
	uint64_t failed;
	uint64_t failed_groups;	  /* in the failed state, as of the last scan */
	uint64_t deferred_groups; /* waiting for their retry, as of the last scan */
	bool paused;
	bool db_connected;
	char last_error[512]; /* "" when none */
};

/* Command name for the wire ("status", ...); NULL outside the enum.  Pure. */
const char *mg_ctl_cmd_name(enum mg_ctl_cmd cmd);

/*
 * Append a request line (with "\n").  Returns MG_OK, MG_ENOMEM, or
 * MG_EINPUT (unknown cmd, or out->max reached); out is unchanged on error.
 * Pure.
 */
int mg_ctl_format_request(struct mg_buf *out, enum mg_ctl_cmd cmd);

/* The same with the group id of retry and drop ("id"; 0 is left out).  Pure. */
int mg_ctl_format_request_id(struct mg_buf *out, enum mg_ctl_cmd cmd, int64_t id);

/*
 * Parse one request line (without or with its "\n").  Unknown commands,
 * another version, extra garbage or a line over MG_CTL_LINE_MAX are
 * MG_EINPUT with a message fit to send back.  Pure.
 */
int mg_ctl_parse_request(const char *line, size_t len, enum mg_ctl_cmd *ret_cmd,
			 struct mg_err *err);

/* The same, also giving the request's "id" (0 when it has none).  Pure. */
int mg_ctl_parse_request_id(const char *line, size_t len, enum mg_ctl_cmd *ret_cmd, int64_t *ret_id,
			    struct mg_err *err);

/* Append an ok response line with a message for people.  Errors as below.  Pure. */
int mg_ctl_format_ok_message(struct mg_buf *out, const char *message);

/*
 * The "message" of a response line that mg_ctl_parse_response() accepted,
 * control characters other than newline masked, cut to fit size; "" when
 * there is none.  Pure.
 */
void mg_ctl_response_message(const char *line, size_t len, char *msg, size_t size);

/*
 * Append a response line: ok with status (st may be NULL for a bare ok).
 * The status keys are state, started_at, now, uptime_seconds, workers_busy,
 * workers_total, pending_groups, pending_directives, next_due (null when
 * 0), last_scan (null when 0), sent, postponed, failed, failed_groups,
 * deferred_groups, paused,
 * db_connected, last_error (null when "").  Strings that are not valid
 * UTF-8 get U+FFFD for each bad byte.  Returns MG_OK, MG_ENOMEM or
 * MG_EINPUT (out->max reached); out is unchanged on error.  Pure.
 */
int mg_ctl_format_ok(struct mg_buf *out, const struct mg_ctl_status *st);

/*
 * Append an error response line (message NULL: "unknown error").  Errors
 * and out as for mg_ctl_format_ok().  Pure.
 */
int mg_ctl_format_error(struct mg_buf *out, const char *message);

/*
 * Parse a response line (without or with its "\n").  *ret_ok tells
 * ok/error and is set whenever the line is a well-formed response:
 *   - ok: returns MG_OK, *ret_ok = true;
 *   - error response: returns MG_EREJECT, *ret_ok = false, and the
 *     daemon's message (control characters masked) is in err->msg.
 * A malformed line (bytes that are not UTF-8, or an error message
 * holding a NUL byte, included), another version or a missing or
 * ill-typed status field is MG_EINPUT (*ret_ok untouched); MG_ENOMEM is
 * possible.  With
 * st != NULL, st is zeroed first and an ok response must carry a status,
 * which is parsed into it (a last_error too long for st is cut at a UTF-8
 * character boundary).  Pure.
 */
int mg_ctl_parse_response(const char *line, size_t len, bool *ret_ok, struct mg_ctl_status *st,
			  struct mg_err *err);

/*
 * Append the human-readable form of a status, as "mailgenctl status" prints
 * it: one "label: value" line per item, times in UTC relative to st->now
 * (no clock is read), control characters in strings masked.  Errors and
 * out as for mg_ctl_format_ok().  Pure.
 */
int mg_ctl_format_status_text(struct mg_buf *out, const struct mg_ctl_status *st);

#endif /* MG_CTL_PROTO_H */
