/* tests/fuzz/fuzz.h - what every fuzz target shares: the entry point and the invariant check */
#ifndef MG_FUZZ_H
#define MG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The libFuzzer entry point.  Each tests/fuzz/fuzz_<name>.c defines it; it
 * is linked either with libFuzzer (-fsanitize=fuzzer, MG_FUZZ=ON) or with
 * replay-main.c, which feeds it the files of a corpus.  Returns 0.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * An invariant of the code under test.  Unlike assert() it does not depend
 * on NDEBUG, and it names the broken condition before aborting, so both
 * libFuzzer and the replay runner report it as a crash.
 */
#define FUZZ_CHECK(cond) ((cond) ? (void)0 : fuzz_fail(__FILE__, __LINE__, #cond))

static inline __attribute__((noreturn)) void fuzz_fail(const char *file, int line, const char *cond)
{
	(void)fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, cond);
	abort();
}

/*
 * Fill the stack below the caller with a pattern, so that a buffer the code
 * under test reads before writing holds no NUL byte and no zeros: a string
 * read from it then runs off its end, which AddressSanitizer reports.  (No
 * MemorySanitizer build: json-c is not instrumented.)  Call it right before
 * the function under test.
 */
static __attribute__((noinline, unused)) void fuzz_dirty_stack(void)
{
	unsigned char junk[8192];

	memset(junk, 0xa5, sizeof(junk));
	/* keep the stores: the compiler must assume the asm reads junk */
	__asm__ volatile("" : : "r"(junk) : "memory");
}

#endif /* MG_FUZZ_H */
