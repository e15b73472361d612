/* lib/timing.c - the daemon's timing decisions (pure) */
#include "timing.h"

uint64_t mg_debounce_deadline(uint64_t first_usec, uint64_t now_usec, uint64_t quiet_usec,
			      uint64_t max_usec)
{
	uint64_t quiet_end = now_usec + quiet_usec;
	uint64_t cap = first_usec + max_usec;

	return quiet_end < cap ? quiet_end : cap;
}

uint64_t mg_backoff_sec(unsigned attempt, uint64_t min_sec, uint64_t max_sec)
{
	uint64_t d = min_sec;

	for (unsigned i = 1; i < attempt && d < max_sec; i++)
		d *= 2;
	return d < max_sec ? d : max_sec;
}
