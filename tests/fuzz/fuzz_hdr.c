/* tests/fuzz/fuzz_hdr.c - fuzz header checks, RFC 2047 encoding, folding and addresses */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "hdr.h"
#include "mg-buf.h"
#include "mg-err.h"

#define BIG_CAP	    (1u << 20)
#define SMALL_CAP   120
#define LINE_MAX_   998 /* RFC 5322 2.1.1, without the CRLF */
#define EW_LINE_MAX 76	/* RFC 2047 2: a line holding encoded-words */
#define EW_MAX	    75	/* RFC 2047 2: one encoded-word */
#define EW_PREFIX   "=?UTF-8?B?"

/* Header names as the mailer uses them, and one that leaves little room on its line. */
static const char *const text_names[] = {
	"Subject",
	"X-Mailgen-A-Header-Name-Long-Enough-To-Leave-No-Room-For-A-Word-Here",
};

/*
 * Reference UTF-8 check, straight from the table of well-formed byte
 * sequences in the Unicode Standard (chapter 3, table 3-7).  Returns the
 * length of the sequence at s, 0 when it is ill-formed; *ret_cp gets the
 * code point.
 */
static size_t ref_utf8(const unsigned char *s, size_t n, unsigned long *ret_cp)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len;

	if (s[0] <= 0x7f) {
		*ret_cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		if (s[0] == 0xe0)
			lo = 0xa0;
		if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		if (s[0] == 0xf0)
			lo = 0x90;
		if (s[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	*ret_cp = s[0] & (0xff >> (len + 1));
	for (size_t i = 1; i < len; i++)
		*ret_cp = *ret_cp << 6 | (s[i] & 0x3f);
	return len;
}

static bool ref_utf8_valid(const unsigned char *s, size_t n)
{
	unsigned long cp;

	for (size_t i = 0, k; i < n; i += k)
		if ((k = ref_utf8(s + i, n - i, &cp)) == 0)
			return false;
	return true;
}

/* mg_hdr_check_value() by its contract: UTF-8 without C0 (but TAB), DEL or C1. */
static bool ref_value_ok(const char *v)
{
	const unsigned char *s = (const unsigned char *)v;
	size_t n = strlen(v);
	unsigned long cp;

	for (size_t i = 0, k; i < n; i += k) {
		k = ref_utf8(s + i, n - i, &cp);
		if (k == 0 || (cp < 0x20 && cp != '\t') || (cp >= 0x7f && cp <= 0x9f))
			return false;
	}
	return true;
}

/* mg_addr_check() by its contract (lib/hdr.h). */
static bool ref_addr_ok(const char *a)
{
	size_t n = strlen(a), ats = 0;
	const char *at = strchr(a, '@'), *domain;

	if (n == 0 || n > MG_ADDR_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a[i];

		if (c <= 0x20 || c >= 0x7f || strchr("<>()[],;:\\\"", c) != NULL)
			return false;
		ats += c == '@';
	}
	if (ats != 1 || at == a || at[1] == '\0')
		return false;
	domain = at + 1;
	return domain[0] != '.' && a[n - 1] != '.' && strstr(domain, "..") == NULL;
}

/* True when s[0..n) holds "=?", the start of an encoded-word. */
static bool has_ew_start(const char *s, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++)
		if (s[i] == '=' && s[i + 1] == '?')
			return true;
	return false;
}

/*
 * The lines of a header field written from out->data[start..len): CRLF
 * ends every line and appears nowhere else, every byte is 7-bit and not a
 * control character but TAB, no line is longer than 998 bytes, the first
 * starts with "name:", and the others are continuation lines that start
 * with white space and hold more than white space.
 */
static void check_lines(const struct mg_buf *out, size_t start, const char *name, bool ew_limit)
{
	const char *s = out->data + start;
	size_t n = out->len - start, nl = strlen(name);
	size_t line = 0;

	FUZZ_CHECK(n >= nl + 3 && memcmp(s, name, nl) == 0 && s[nl] == ':');
	FUZZ_CHECK(s[n - 2] == '\r' && s[n - 1] == '\n');
	for (size_t i = 0; i < n;) {
		size_t e = i, ws = 0;

		while (e < n && s[e] != '\r' && s[e] != '\n') {
			unsigned char c = (unsigned char)s[e];

			FUZZ_CHECK(c < 0x80 && (c >= 0x20 || c == '\t') && c != 0x7f);
			ws += c == ' ' || c == '\t';
			e++;
		}
		/* a CR must start CRLF, an LF must end it */
		FUZZ_CHECK(e + 1 < n && s[e] == '\r' && s[e + 1] == '\n');
		FUZZ_CHECK(e - i <= LINE_MAX_);
		if (line > 0) {
			FUZZ_CHECK(s[i] == ' ' || s[i] == '\t');
			FUZZ_CHECK(ws < e - i);
		}
		if (ew_limit && has_ew_start(s + i, e - i))
			FUZZ_CHECK(e - i <= EW_LINE_MAX);
		i = e + 2;
		line++;
	}
}

/* Remove every CRLF that folds a line (RFC 5322 2.2.3), and the final one. */
static char *unfold(const struct mg_buf *out, size_t start)
{
	const char *s = out->data + start;
	size_t n = out->len - start, k = 0;
	char *u = malloc(n + 1);

	FUZZ_CHECK(u != NULL);
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') {
			i++;
			continue;
		}
		u[k++] = s[i];
	}
	u[k] = '\0';
	return u;
}

static int b64_value(char c)
{
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c != '\0' ? strchr(digits, c) : NULL;

	return p != NULL ? (int)(p - digits) : -1;
}

/* Decode one base64 text s[0..n) (with padding) into dst; returns the length. */
static size_t b64_decode(unsigned char *dst, const char *s, size_t n)
{
	size_t o = 0;

	FUZZ_CHECK(n > 0 && n % 4 == 0);
	for (size_t i = 0; i < n; i += 4) {
		int v[4];
		bool last = i + 4 == n;

		for (int j = 0; j < 4; j++) {
			v[j] = b64_value(s[i + j]);
			/* '=' only as padding at the very end */
			FUZZ_CHECK(v[j] >= 0 || (s[i + j] == '=' && last && j >= 2));
		}
		FUZZ_CHECK(v[2] >= 0 || v[3] < 0);
		dst[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (v[2] >= 0)
			dst[o++] = (unsigned char)((v[1] & 0x0f) << 4 | v[2] >> 2);
		if (v[3] >= 0)
			dst[o++] = (unsigned char)((v[2] & 0x03) << 6 | v[3]);
	}
	return o;
}

/*
 * Read the field back: the unfolded field body is either " " value, or a
 * sequence of " =?UTF-8?B?...?=" words that decode to value, each word at
 * most 75 characters and holding whole UTF-8 characters.
 */
static void check_text_field(const struct mg_buf *out, size_t start, const char *name,
			     const char *value)
{
	char *u = unfold(out, start);
	size_t nl = strlen(name), vl = strlen(value);
	const char *p = u + nl + 1;

	if (vl == 0) {
		FUZZ_CHECK(*p == '\0');
	} else if (strncmp(p, " " EW_PREFIX, strlen(EW_PREFIX) + 1) != 0) {
		FUZZ_CHECK(p[0] == ' ' && strcmp(p + 1, value) == 0);
		/* plain text stays plain only when it is ASCII without "=?" */
		FUZZ_CHECK(strstr(value, "=?") == NULL);
	} else {
		unsigned char *dec = malloc(vl + 3); /* room for a padded group */
		size_t dl = 0;

		FUZZ_CHECK(dec != NULL);
		while (*p != '\0') {
			const char *b64, *end;
			size_t wl, k;

			FUZZ_CHECK(p[0] == ' ' &&
				   strncmp(p + 1, EW_PREFIX, strlen(EW_PREFIX)) == 0);
			b64 = p + 1 + strlen(EW_PREFIX);
			end = strstr(b64, "?=");
			FUZZ_CHECK(end != NULL);
			wl = (size_t)(end + 2 - (p + 1));
			FUZZ_CHECK(wl <= EW_MAX);
			/* decode only what can fit: padding takes up to 2 of the 3 bytes */
			FUZZ_CHECK((size_t)(end - b64) / 4 * 3 <= vl - dl + 2);
			k = b64_decode(dec + dl, b64, (size_t)(end - b64));
			FUZZ_CHECK(k <= vl - dl);
			FUZZ_CHECK(mg_utf8_valid((const char *)dec + dl, k));
			dl += k;
			p = end + 2;
		}
		FUZZ_CHECK(dl == vl && memcmp(dec, value, vl) == 0);
		free(dec);
	}
	free(u);
}

static void add_text(const char *name, const char *value)
{
	struct mg_buf big = MG_BUF_INIT(BIG_CAP), small = MG_BUF_INIT(SMALL_CAP);
	struct mg_err err = { 0 };
	bool valid = ref_value_ok(value);
	int r;

	fuzz_dirty_stack();
	r = mg_hdr_add_text(&big, name, value, &err);
	FUZZ_CHECK(r == (valid ? MG_OK : MG_EINPUT));
	if (r == MG_OK) {
		check_lines(&big, 0, name, true);
		check_text_field(&big, 0, name, value);
	} else {
		FUZZ_CHECK(big.len == 0); /* nothing is written when value is bad */
	}

	/* a second field after the first, with a cap: a prefix of the same text */
	FUZZ_CHECK(mg_buf_adds(&small, "X: y\r\n") == MG_OK);
	r = mg_hdr_add_text(&small, name, value, &err);
	FUZZ_CHECK(small.len <= SMALL_CAP);
	if (valid && big.len + 6 <= SMALL_CAP)
		FUZZ_CHECK(r == MG_OK && small.len == big.len + 6 &&
			   memcmp(small.data + 6, big.data, big.len) == 0);
	else if (valid)
		FUZZ_CHECK(r == MG_EINPUT && strstr(err.msg, "exceeds") != NULL);
	else
		FUZZ_CHECK(r == MG_EINPUT && small.len == 6);
	mg_buf_release(&big);
	mg_buf_release(&small);
}

static void add_mailbox(const char *name, const char *display, const char *addr, bool must_work)
{
	struct mg_buf out = MG_BUF_INIT(BIG_CAP);
	struct mg_err err = { 0 };
	bool valid = ref_addr_ok(addr) && (display == NULL || ref_value_ok(display));
	size_t al = strlen(addr);
	char *u;
	int r;

	fuzz_dirty_stack();
	r = mg_hdr_add_mailbox(&out, name, display, addr, &err);
	FUZZ_CHECK(r == (valid ? MG_OK : MG_EINPUT));
	FUZZ_CHECK(!must_work || r == MG_OK);
	if (r < 0) {
		FUZZ_CHECK(out.len == 0);
		mg_buf_release(&out);
		return;
	}
	check_lines(&out, 0, name, false);
	u = unfold(&out, 0);
	if (display == NULL || display[0] == '\0') {
		FUZZ_CHECK(u[strlen(name) + 1] == ' ' && strcmp(u + strlen(name) + 2, addr) == 0);
	} else {
		size_t ul = strlen(u);

		FUZZ_CHECK(ul > al + 3 && u[ul - 1] == '>' && u[ul - al - 2] == '<' &&
			   u[ul - al - 3] == ' ' && memcmp(u + ul - al - 1, addr, al) == 0);
	}
	free(u);
	mg_buf_release(&out);
}

static void parse_mailbox(const char *mailbox)
{
	char *display = NULL, *addr = NULL;
	struct mg_err err = { 0 };
	int r;

	fuzz_dirty_stack();
	r = mg_addr_parse_mailbox(mailbox, &display, &addr, &err);
	FUZZ_CHECK(r == MG_OK || r == MG_EINPUT);
	if (r < 0) {
		FUZZ_CHECK(display == NULL && addr == NULL && err.msg[0] != '\0');
		return;
	}
	FUZZ_CHECK(ref_value_ok(mailbox));
	FUZZ_CHECK(addr != NULL && ref_addr_ok(addr));
	FUZZ_CHECK(mg_addr_check("sender address", addr, &err) == MG_OK);
	FUZZ_CHECK(display == NULL || display[0] != '\0');
	FUZZ_CHECK(strcmp(mg_addr_domain(addr), strchr(addr, '@') + 1) == 0);
	/* what the parser accepts, the writer must write */
	add_mailbox("From", display, addr, true);
	free(display);
	free(addr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mg_err err = { 0 };
	char *value, *second;
	size_t vl;

	/* the raw bytes, NULs included: they are valid UTF-8 */
	FUZZ_CHECK(mg_utf8_valid((const char *)data, size) == ref_utf8_valid(data, size));

	/* the input as a C string, and what follows its first NUL as a second one */
	value = malloc(size + 2);
	FUZZ_CHECK(value != NULL);
	memcpy(value, data, size);
	value[size] = '\0';
	value[size + 1] = '\0';
	vl = strlen(value);
	second = vl < size ? value + vl + 1 : NULL;

	FUZZ_CHECK((mg_hdr_check_value("Subject", value, &err) == MG_OK) == ref_value_ok(value));
	FUZZ_CHECK((mg_addr_check("recipient address", value, &err) == MG_OK) ==
		   ref_addr_ok(value));
	for (size_t i = 0; i < sizeof(text_names) / sizeof(text_names[0]); i++)
		add_text(text_names[i], value);
	parse_mailbox(value);
	add_mailbox("To", value, second != NULL ? second : "cert@example.org", false);
	add_mailbox("Reply-To", NULL, value, false);
	free(value);
	return 0;
}
