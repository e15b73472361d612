/* tests/fuzz/fuzz_directive.c - fuzz the PostgreSQL array parsers and print their results back */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "directive.h"
#include "fuzz.h"
#include "mg-buf.h"
#include "mg-err.h"

#define OUT_CAP (1u << 24)

/* An element as PostgreSQL quotes it: in double quotes, '"' and '\' escaped. */
static void add_quoted(struct mg_buf *b, const char *s)
{
	FUZZ_CHECK(mg_buf_addc(b, '"') == MG_OK);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			FUZZ_CHECK(mg_buf_addc(b, '\\') == MG_OK);
		FUZZ_CHECK(mg_buf_addc(b, *s) == MG_OK);
	}
	FUZZ_CHECK(mg_buf_addc(b, '"') == MG_OK);
}

static void pairs(const char *lit)
{
	struct mg_kv *kv = NULL, *kv2 = NULL;
	struct mg_buf b = MG_BUF_INIT(OUT_CAP);
	struct mg_err err = { 0 };
	struct mg_group g = { 0 };
	size_t n = 0, n2 = 0;
	int r;

	fuzz_dirty_stack();
	r = mg_pgarray_parse_pairs(lit, &kv, &n, &err);
	FUZZ_CHECK(r == MG_OK || r == MG_EINPUT);
	if (r < 0) {
		FUZZ_CHECK(kv == NULL && n == 0 && err.msg[0] != '\0');
		return;
	}
	FUZZ_CHECK(n == 0 || kv != NULL);

	/* print it as the server would, with every element quoted, and read it again */
	FUZZ_CHECK(mg_buf_addc(&b, '{') == MG_OK);
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(kv[i].key != NULL && kv[i].value != NULL);
		FUZZ_CHECK(mg_buf_adds(&b, i > 0 ? ",{" : "{") == MG_OK);
		add_quoted(&b, kv[i].key);
		FUZZ_CHECK(mg_buf_addc(&b, ',') == MG_OK);
		add_quoted(&b, kv[i].value);
		FUZZ_CHECK(mg_buf_addc(&b, '}') == MG_OK);
	}
	FUZZ_CHECK(mg_buf_addc(&b, '}') == MG_OK);
	r = mg_pgarray_parse_pairs(mg_buf_str(&b), &kv2, &n2, &err);
	FUZZ_CHECK(r == MG_OK && n2 == n);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(strcmp(kv[i].key, kv2[i].key) == 0 &&
			   strcmp(kv[i].value, kv2[i].value) == 0);

	/* the lookup finds the first pair with a key */
	g.agg = kv;
	g.n_agg = n;
	for (size_t i = 0; i < n; i++) {
		size_t first = 0;

		while (strcmp(kv[first].key, kv[i].key) != 0)
			first++;
		FUZZ_CHECK(mg_group_agg(&g, kv[i].key) == kv[first].value);
	}
	mg_group_release(&g); /* frees kv */
	mg_kv_free(kv2, n2);
	mg_buf_release(&b);
}

static void ids(const char *lit)
{
	int64_t *v = NULL, *v2 = NULL;
	struct mg_buf b = MG_BUF_INIT(OUT_CAP);
	struct mg_err err = { 0 };
	size_t n = 0, n2 = 0;
	int r;

	fuzz_dirty_stack();
	r = mg_pgarray_parse_ids(lit, &v, &n, &err);
	FUZZ_CHECK(r == MG_OK || r == MG_EINPUT);
	if (r < 0) {
		FUZZ_CHECK(v == NULL && n == 0 && err.msg[0] != '\0');
		return;
	}
	FUZZ_CHECK(n == 0 || v != NULL);
	FUZZ_CHECK(mg_buf_addc(&b, '{') == MG_OK);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(mg_buf_addf(&b, "%s%" PRId64, i > 0 ? "," : "", v[i]) == MG_OK);
	FUZZ_CHECK(mg_buf_addc(&b, '}') == MG_OK);
	r = mg_pgarray_parse_ids(mg_buf_str(&b), &v2, &n2, &err);
	FUZZ_CHECK(r == MG_OK && n2 == n);
	FUZZ_CHECK(n == 0 || memcmp(v, v2, n * sizeof(*v)) == 0);
	free(v);
	free(v2);
	mg_buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *lit = malloc(size + 1);

	FUZZ_CHECK(lit != NULL);
	memcpy(lit, data, size);
	lit[size] = '\0'; /* the server's text ends at a NUL: so does the literal */
	pairs(lit);
	ids(lit);
	free(lit);
	return 0;
}
