/*
 * bench/sign-rate.c - the raw signing rate of lib/sign.c, for bench/run
 *
 *	mg-bench-sign GNUPGHOME KEY THREADS SECONDS [BYTES [gpg|agent]]
 *
 * THREADS threads, each with its own signer (one gpgme context, as a
 * mailgend worker has), make detached signatures of BYTES (default 4096)
 * bytes of CRLF text for SECONDS seconds, through gpg (gpgme_op_sign, the
 * default: the "raw gpgme rate" of issue #6) or through gpg-agent directly
 * (delivery.sign_via_agent).  Prints one line of JSON:
 * {"threads": T, "signatures": N, "seconds": S, "rate": N/S}.
 * Not installed: a benchmark tool, built with the project.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mg-buf.h"
#include "mg-err.h"
#include "sign.h"

#define MAX_THREADS 64

struct job {
	const char *home;
	const char *key;
	bool via_agent;
	const char *data;
	size_t len;
	double deadline;
	unsigned long count;
	int failed;
	struct mg_err err;
};

static pthread_barrier_t start_barrier;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
	struct job *j = arg;
	struct mg_signer *s = NULL;
	struct mg_buf sig = MG_BUF_INIT(65536);
	char micalg[MG_MICALG_MAX];

	if (mg_sign_new(j->home, j->key, j->via_agent, &s, &j->err) < 0)
		j->failed = 1;
	else if (j->via_agent && strcmp(mg_sign_method(s), "gpg-agent directly") != 0)
		j->failed = mg_err_set(&j->err, MG_ECONFIG, "%s", mg_sign_method(s));
	pthread_barrier_wait(&start_barrier);
	if (j->failed)
		goto out;
	while (now() < j->deadline) {
		mg_buf_reset(&sig);
		if (mg_sign_detached(s, j->data, j->len, &sig, micalg, &j->err) < 0) {
			j->failed = 1;
			goto out;
		}
		j->count++;
	}
out:
	mg_buf_release(&sig);
	mg_sign_free(s);
	return NULL;
}

int main(int argc, char **argv)
{
	struct job jobs[MAX_THREADS];
	pthread_t tids[MAX_THREADS];
	struct mg_err err = { 0 };
	unsigned long total = 0;
	double secs, t0;
	size_t len = 4096, i;
	long nthreads;
	bool via_agent = false;
	char *data;

	if (argc < 5 || argc > 7) {
		fprintf(stderr, "usage: %s GNUPGHOME KEY THREADS SECONDS [BYTES [gpg|agent]]\n",
			argv[0]);
		return 64;
	}
	if (argc == 7 && strcmp(argv[6], "agent") == 0)
		via_agent = true;
	else if (argc == 7 && strcmp(argv[6], "gpg") != 0) {
		fprintf(stderr, "%s: expected gpg or agent, got '%s'\n", argv[0], argv[6]);
		return 64;
	}
	nthreads = strtol(argv[3], NULL, 10);
	secs = strtod(argv[4], NULL);
	if (argc >= 6)
		len = strtoul(argv[5], NULL, 10);
	if (nthreads < 1 || nthreads > MAX_THREADS || secs <= 0 || len < 2) {
		fprintf(stderr, "%s: bad THREADS, SECONDS or BYTES\n", argv[0]);
		return 64;
	}
	if (mg_sign_global_init(&err) < 0) {
		fprintf(stderr, "%s: %s\n", argv[0], err.msg);
		return 1;
	}
	/* 4 KB of mail-like text: lines of 70 characters with CRLF */
	data = malloc(len);
	if (!data)
		return 1;
	for (i = 0; i < len; i++)
		data[i] = (i % 72 == 70) ? '\r' : (i % 72 == 71) ? '\n' : (char)('a' + i % 26);

	pthread_barrier_init(&start_barrier, NULL, (unsigned)nthreads + 1);
	memset(jobs, 0, sizeof(jobs));
	for (i = 0; i < (size_t)nthreads; i++) {
		jobs[i].home = argv[1];
		jobs[i].key = argv[2];
		jobs[i].via_agent = via_agent;
		jobs[i].data = data;
		jobs[i].len = len;
		jobs[i].deadline = 1e300;
	}
	for (i = 0; i < (size_t)nthreads; i++)
		pthread_create(&tids[i], NULL, run, &jobs[i]);
	/*
	 * The contexts are set up (gpgme spawns helper processes) before the
	 * clock starts; the barrier orders the deadline writes before the reads.
	 */
	t0 = now();
	for (i = 0; i < (size_t)nthreads; i++)
		jobs[i].deadline = t0 + secs;
	pthread_barrier_wait(&start_barrier);
	for (i = 0; i < (size_t)nthreads; i++)
		pthread_join(tids[i], NULL);
	secs = now() - t0;
	for (i = 0; i < (size_t)nthreads; i++) {
		if (jobs[i].failed) {
			fprintf(stderr, "%s: thread %zu: %s\n", argv[0], i, jobs[i].err.msg);
			return 1;
		}
		total += jobs[i].count;
	}
	printf("{\"threads\": %ld, \"signatures\": %lu, \"seconds\": %.3f, \"rate\": %.1f}\n",
	       nthreads, total, secs, (double)total / secs);
	free(data);
	return 0;
}
