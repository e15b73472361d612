/* lib/ticket.h - ticket numbers YYYYMMDD-NNNNNNNN */
#ifndef MG_TICKET_H
#define MG_TICKET_H

#include <stdbool.h>
#include <stdint.h>

#include "mg-err.h"

#define MG_TICKET_LEN 17 /* "20261126-10000001" */

/*
 * Format a ticket as the original's _format_ticket(): day (8 digits,
 * "YYYYMMDD") + "-" + the sequence number zero-padded to 8 digits, of
 * which only the last 8 are kept.  out must hold MG_TICKET_LEN + 1 bytes.
 * Returns MG_EINPUT for a day that is not 8 digits or a negative number.
 * Pure.
 */
int mg_ticket_format(char *out, const char *day, int64_t seq, struct mg_err *err);

/* True when s has the form of a ticket (8 digits, '-', 8 digits).  Pure. */
bool mg_ticket_valid(const char *s);

#endif /* MG_TICKET_H */
