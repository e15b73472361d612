/* lib/timing.h - the daemon's timing decisions: debounce deadline, retry back-off */
#ifndef MG_TIMING_H
#define MG_TIMING_H

#include <stdint.h>

/*
 * When the debounced scan should start: quiet_usec after the latest
 * notification (now_usec), but no later than max_usec after the first one
 * of the burst (first_usec).  All times in microseconds.  Pure.
 */
uint64_t mg_debounce_deadline(uint64_t first_usec, uint64_t now_usec, uint64_t quiet_usec,
			      uint64_t max_usec);

/*
 * Delay before retry number attempt (1 for the first retry): min_sec
 * doubled per earlier attempt, capped at max_sec.  Pure.
 */
uint64_t mg_backoff_sec(unsigned attempt, uint64_t min_sec, uint64_t max_sec);

#endif /* MG_TIMING_H */
