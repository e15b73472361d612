/* lib/log.c - logging: journald fields under systemd, one plain line on stderr otherwise */
#define SD_JOURNAL_SUPPRESS_LOCATION 1

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "log.h"

static const char *log_ident = "mailgen";
static atomic_int log_max_prio = LOG_INFO;
static bool log_journal;

static const char *prio_word(int prio)
{
	switch (prio) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
		return "CRITICAL";
	case LOG_ERR:
		return "ERROR";
	case LOG_WARNING:
		return "WARNING";
	case LOG_NOTICE:
	case LOG_INFO:
		return "INFO";
	default:
		return "DEBUG";
	}
}

/*
 * sd_journal_send() reports success and drops the record when journald is
 * absent (LIBRARY-NOTES "libsystemd"), so only use it when systemd told us
 * that stderr is a journal stream.
 */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void mg_log_init(const char *ident, int max_prio)
{
	log_ident = ident;
	atomic_store(&log_max_prio, max_prio);
	log_journal = stderr_is_journal();
}

void mg_log_set_level(int max_prio)
{
	atomic_store(&log_max_prio, max_prio);
}

/*
 * Mask control characters, so that a record is always one line (Postfix
 * printable()), and every byte that is not part of a valid UTF-8 sequence
 * (data from the database, or a string cut by a length limit), so that a
 * record is always valid UTF-8 for journald and log readers.
 */
static void mask_controls(char *s)
{
	unsigned char *p = (unsigned char *)s;

	while (*p != '\0') {
		size_t n = *p < 0x80		      ? 1
			   : *p >= 0xc2 && *p <= 0xdf ? 2
			   : *p >= 0xe0 && *p <= 0xef ? 3
			   : *p >= 0xf0 && *p <= 0xf4 ? 4
						      : 0;
		size_t i;

		if (n == 1) {
			if (*p < 0x20 || *p == 0x7f)
				*p = '?';
			p++;
			continue;
		}
		for (i = 1; n > 1 && i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				break;
		if (n == 0 || i < n) {
			*p++ = '?'; /* a stray or cut sequence: mask its first byte */
			continue;
		}
		p += n;
	}
}

void mg_log(int prio, const struct mg_log_ctx *ctx_in, const char *fmt, ...)
{
	struct mg_log_ctx c = { 0 }, *ctx = &c;
	char msg[2048], rcpt[300];
	va_list ap;

	if (prio > atomic_load(&log_max_prio))
		return;
	if (ctx_in != NULL)
		c = *ctx_in;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mask_controls(msg);
	if (c.recipient != NULL) { /* comes from the database: untrusted */
		(void)snprintf(rcpt, sizeof(rcpt), "%s", c.recipient);
		mask_controls(rcpt);
		c.recipient = rcpt;
	}

	if (log_journal) {
		(void)sd_journal_send(
			"MESSAGE=%s", msg, "PRIORITY=%d", prio, "SYSLOG_IDENTIFIER=%s", log_ident,
			"MAILGEN_DIRECTIVE_IDS=%s",
			ctx->directive_ids != NULL ? ctx->directive_ids : "",
			"MAILGEN_EVENT_IDS=%s", ctx->event_ids != NULL ? ctx->event_ids : "",
			"MAILGEN_TICKET=%s", ctx->ticket != NULL ? ctx->ticket : "",
			"MAILGEN_RECIPIENT=%s", ctx->recipient != NULL ? ctx->recipient : "", NULL);
		return;
	}
	(void)fprintf(stderr, "%s: %s: %s%s%s%s%s%s%s%s%s\n", log_ident, prio_word(prio), msg,
		      ctx->ticket != NULL ? " ticket=" : "", ctx->ticket != NULL ? ctx->ticket : "",
		      ctx->recipient != NULL ? " recipient=" : "",
		      ctx->recipient != NULL ? ctx->recipient : "",
		      ctx->directive_ids != NULL ? " directive_ids=" : "",
		      ctx->directive_ids != NULL ? ctx->directive_ids : "",
		      ctx->event_ids != NULL ? " event_ids=" : "",
		      ctx->event_ids != NULL ? ctx->event_ids : "");
}
