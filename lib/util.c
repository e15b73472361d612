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

/* Exactly n digits at *p; advances *p. */
static bool digits(const char **p, int n, int *ret)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*ret = v;
	return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return 29;
	return mdays[m - 1];
}

bool mg_parse_timestamp(const char *s, int64_t *ret_usec)
{
	const char *p = s;
	int y, mo, d, h, mi, sec, oh = 0, om = 0;
	int64_t usec = 0, scale = 100000, off = 0, t;

	if (s == NULL || !digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
	    !digits(&p, 2, &d))
		return false;
	if (*p != 'T' && *p != ' ')
		return false;
	p++;
	if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
	    !digits(&p, 2, &sec))
		return false;
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
	    sec > 59)
		return false;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return false;
		for (; *p >= '0' && *p <= '9'; p++) {
			usec += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1;

		if (!digits(&p, 2, &oh))
			return false;
		if (*p == ':') {
			p++;
			if (!digits(&p, 2, &om))
				return false;
		} else if (*p >= '0' && *p <= '9') {
			if (!digits(&p, 2, &om))
				return false;
		}
		if (oh > 15 || om > 59)
			return false;
		off = sign * ((int64_t)oh * 3600 + om * 60);
	}
	if (*p != '\0')
		return false;
	t = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + sec - off;
	*ret_usec = t * 1000000 + usec;
	return true;
}

static const char b64_digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t mg_base64(char *dst, const unsigned char *src, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)src[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)src[i + 1] << 8;
		if (i + 2 < n)
			v |= src[i + 2];
		dst[o++] = b64_digits[v >> 18 & 0x3f];
		dst[o++] = b64_digits[v >> 12 & 0x3f];
		dst[o++] = i + 1 < n ? b64_digits[v >> 6 & 0x3f] : '=';
		dst[o++] = i + 2 < n ? b64_digits[v & 0x3f] : '=';
	}
	return o;
}
