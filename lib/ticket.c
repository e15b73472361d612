/* lib/ticket.c - ticket numbers YYYYMMDD-NNNNNNNN */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ticket.h"

#define TICKET_DAY_LEN 8
#define TICKET_SEQ_MOD 100000000 /* keep the last 8 digits */

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

int mg_ticket_format(char *out, const char *day, int64_t seq, struct mg_err *err)
{
	int n;

	if (day == NULL || strlen(day) != TICKET_DAY_LEN || !all_digits(day, TICKET_DAY_LEN))
		return mg_err_set(err, MG_EINPUT, "ticket: day '%s' is not 8 digits (YYYYMMDD)",
				  day != NULL ? day : "(null)");
	if (seq < 0)
		return mg_err_set(err, MG_EINPUT, "ticket: negative sequence number %" PRId64, seq);
	/*
	 * The original formats "%s-%08d" and keeps the last 8 characters of
	 * the number, so a sequence past 99999999 wraps instead of making
	 * the ticket longer.  The modulo does the same.
	 */
	n = snprintf(out, MG_TICKET_LEN + 1, "%s-%08" PRId64, day, seq % TICKET_SEQ_MOD);
	if (n != MG_TICKET_LEN)
		return mg_err_set(err, MG_EINPUT, "ticket: cannot format day '%s', number %" PRId64,
				  day, seq); /* cannot happen */
	return MG_OK;
}

bool mg_ticket_valid(const char *s)
{
	if (s == NULL || strlen(s) != MG_TICKET_LEN)
		return false;
	return all_digits(s, TICKET_DAY_LEN) && s[TICKET_DAY_LEN] == '-' &&
	       all_digits(s + TICKET_DAY_LEN + 1, MG_TICKET_LEN - TICKET_DAY_LEN - 1);
}
