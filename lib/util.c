/* lib/util.c - safe number parsing and small helpers shared by the modules */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "mg-err.h"
#include "util.h"

/*
 * Written out by hand rather than with strtoll(): strtoll() skips leading
 * white space, accepts "0x" with base 0, depends on the locale and reports
 * overflow through errno, all of which a strict parser has to undo again.
 */
bool mg_parse_int64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
	bool neg = false;
	uint64_t v = 0, limit;
	const char *p = s;

	if (s == NULL || min > max)
		return false;
	if (*p == '+' || *p == '-') {
		neg = *p == '-';
		p++;
	}
	if (*p == '\0')
		return false;
	/* the magnitude of INT64_MIN does not fit in int64_t, but in uint64_t */
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *p != '\0'; p++) {
		unsigned d;

		if (*p < '0' || *p > '9')
			return false;
		d = (unsigned)(*p - '0');
		if (v > (limit - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (neg) {
		int64_t n = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;

		if (n < min || n > max)
			return false;
		*ret = n;
	} else {
		if ((int64_t)v < min || (int64_t)v > max)
			return false;
		*ret = (int64_t)v;
	}
	return true;
}

static int add_id(struct mg_buf *out, bool comma, int64_t id)
{
	char num[32];
	int n;

	n = snprintf(num, sizeof(num), "%s%" PRId64, comma ? "," : "", id);
	if (n < 0 || (size_t)n >= sizeof(num))
		return MG_EINPUT; /* cannot happen: 21 bytes at most */
	return mg_buf_add(out, num, (size_t)n);
}

int mg_ids_join(struct mg_buf *out, const int64_t *ids, size_t n, size_t max_ids)
{
	size_t shown = n < max_ids ? n : max_ids;
	char more[64];
	int r, m;

	for (size_t i = 0; i < shown; i++) {
		r = add_id(out, i > 0, ids[i]);
		if (r < 0)
			return r;
	}
	if (shown == n)
		return MG_OK;
	m = snprintf(more, sizeof(more), "%s...(+%zu more)", shown > 0 ? "," : "", n - shown);
	if (m < 0 || (size_t)m >= sizeof(more))
		return MG_EINPUT; /* cannot happen: 34 bytes at most */
	return mg_buf_add(out, more, (size_t)m);
}

int mg_ids_pgarray(struct mg_buf *out, const int64_t *ids, size_t n)
{
	int r;

	r = mg_buf_addc(out, '{');
	for (size_t i = 0; r == MG_OK && i < n; i++)
		r = add_id(out, i > 0, ids[i]);
	if (r == MG_OK)
		r = mg_buf_addc(out, '}');
	return r;
}
