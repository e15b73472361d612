/* tests/fuzz/fuzz_template.c - fuzz template splitting, expansion and name checks */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "mg-buf.h"
#include "mg-err.h"
#include "template.h"

#define BIG_CAP	  (1u << 20)
#define SMALL_CAP 300
#define NAME_MAX_ 255

static char long_value[4000];

static const char *lookup(void *arg, const char *name)
{
	size_t *calls = arg;
	const unsigned char *u = (const unsigned char *)name;

	/* the expander only asks for identifiers: "[_a-z][_a-z0-9.]*" and four letters */
	FUZZ_CHECK(name[0] != '\0');
	FUZZ_CHECK(!(u[0] >= '0' && u[0] <= '9') && u[0] != '.');
	for (size_t i = 0; u[i] != '\0'; i++)
		FUZZ_CHECK(u[i] == '_' || u[i] == '.' || (u[i] >= '0' && u[i] <= '9') ||
			   (u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') ||
			   u[i] >= 0x80);
	(*calls)++;
	if (strcmp(name, "ticket_number") == 0)
		return "20261126-00000001";
	if (strcmp(name, "source.asn") == 0)
		return "64496";
	if (strcmp(name, "events_as_csv") == 0)
		return "\"asn\",\"ip\"\r\n\"64496\",\"192.0.2.1\"\r\n";
	if (strcmp(name, "long") == 0)
		return long_value;
	if (strcmp(name, "empty") == 0)
		return "";
	if (strcmp(name, "dollar") == 0)
		return "$ticket_number ${x}"; /* values are not expanded again */
	return NULL;
}

/* No control character except TAB in a one-line error message. */
static bool one_line(const char *msg)
{
	for (const char *p = msg; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			return false;
	return true;
}

/* Expand tmpl[0..len) with a large and a small cap; the two must agree. */
static void expand(const char *tmpl, size_t len)
{
	struct mg_buf big = MG_BUF_INIT(BIG_CAP), small = MG_BUF_INIT(SMALL_CAP);
	struct mg_err err = { 0 }, err2 = { 0 };
	size_t calls = 0;
	int r, r2;

	fuzz_dirty_stack();
	r = mg_template_expand(tmpl, len, lookup, &calls, &big, &err);
	FUZZ_CHECK(r == MG_OK || r == MG_EINPUT);
	FUZZ_CHECK(big.len <= BIG_CAP);
	if (r == MG_OK) {
		/* nothing to substitute: the text comes out as it is */
		if (memchr(tmpl, '$', len) == NULL)
			FUZZ_CHECK(big.len == len &&
				   (len == 0 || memcmp(big.data, tmpl, len) == 0));
		/* a NUL byte is refused, and no value holds one */
		FUZZ_CHECK(strlen(mg_buf_str(&big)) == big.len);
	} else {
		FUZZ_CHECK(err.msg[0] != '\0' && one_line(err.msg));
	}

	r2 = mg_template_expand(tmpl, len, lookup, &calls, &small, &err2);
	FUZZ_CHECK(small.len <= SMALL_CAP);
	/* appends are all or nothing: the capped output is a prefix of the other */
	FUZZ_CHECK(small.len <= big.len);
	FUZZ_CHECK(small.len == 0 || memcmp(small.data, big.data, small.len) == 0);
	if (r == MG_OK) {
		if (big.len <= SMALL_CAP)
			FUZZ_CHECK(r2 == MG_OK && small.len == big.len);
		else
			FUZZ_CHECK(r2 == MG_EINPUT && strstr(err2.msg, "exceeds") != NULL);
	}
	mg_buf_release(&big);
	mg_buf_release(&small);
}

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static void split(const char *text, size_t len)
{
	char *subject = NULL, *body = NULL;
	struct mg_err err = { 0 };
	size_t sl, bl;
	int r;

	fuzz_dirty_stack();
	r = mg_template_split(text, len, &subject, &body, &err);
	FUZZ_CHECK(r == MG_OK || r == MG_EINPUT);
	if (r < 0) {
		FUZZ_CHECK(subject == NULL && body == NULL);
		FUZZ_CHECK(err.msg[0] != '\0' && one_line(err.msg));
		return;
	}
	/* the subject: one stripped, non-empty line */
	sl = strlen(subject);
	FUZZ_CHECK(sl > 0 && !is_ws(subject[0]) && !is_ws(subject[sl - 1]));
	FUZZ_CHECK(strpbrk(subject, "\r\n") == NULL);
	/* the body: stripped, plus one LF; universal newlines leave no CR */
	bl = strlen(body);
	FUZZ_CHECK(bl > 0 && body[bl - 1] == '\n' && strchr(body, '\r') == NULL);
	FUZZ_CHECK(bl == 1 || (!is_ws(body[0]) && !is_ws(body[bl - 2])));
	FUZZ_CHECK(sl + bl <= len + 1);

	expand(subject, sl);
	expand(body, bl);
	free(subject);
	free(body);
}

static void check_name(const uint8_t *data, size_t size)
{
	struct mg_err err = { 0 };
	char *name;
	size_t n;
	int r;

	name = malloc(size + 1);
	FUZZ_CHECK(name != NULL);
	memcpy(name, data, size);
	name[size] = '\0';
	fuzz_dirty_stack();
	r = mg_template_check_name(name, &err);
	FUZZ_CHECK(r == MG_OK || r == MG_EINPUT);
	n = strlen(name);
	if (r == MG_OK) {
		FUZZ_CHECK(n >= 1 && n <= NAME_MAX_);
		FUZZ_CHECK(strchr(name, '/') == NULL);
		FUZZ_CHECK(strcmp(name, ".") != 0 && strcmp(name, "..") != 0);
		for (size_t i = 0; i < n; i++)
			FUZZ_CHECK((unsigned char)name[i] >= 0x20 && name[i] != 0x7f);
	} else {
		FUZZ_CHECK(err.msg[0] != '\0' && one_line(err.msg));
	}
	free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;

	if (long_value[0] == '\0')
		memset(long_value, 'L', sizeof(long_value) - 1);
	split(text, size);
	expand(text, size);
	check_name(data, size);
	return 0;
}
