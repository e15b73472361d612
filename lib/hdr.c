/* lib/hdr.c - header fields: checks, RFC 2047 encoding, folding, addresses */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hdr.h"
#include "util.h"
#include "mg-alloc.h"

#define FOLD_MAX      77  /* RFC 5322 2.1.1 says at most 78; we stay under it */
#define HARD_MAX      998 /* RFC 5322 2.1.1: a line MUST NOT be longer */
#define EW_LINE_MAX   76  /* RFC 2047 2: a line holding encoded-words */
#define EW_MAX	      75  /* RFC 2047 2: one encoded-word */
#define EW_PREFIX     "=?UTF-8?B?"
#define EW_SUFFIX     "?="
#define EW_OVERHEAD   12 /* strlen(EW_PREFIX EW_SUFFIX) */
#define SHOWN_MAX     64 /* bytes of a bad value quoted in an error message */
#define ADDR_SPECIALS "<>()[],;:\\\""

/*
 * Length of the valid UTF-8 sequence at s (rem > 0 bytes left), or 0 when
 * it is not one: a stray continuation byte, a truncated sequence, an
 * overlong form, a surrogate or a code point above U+10FFFF (RFC 3629 3).
 */
static size_t utf8_seq(const unsigned char *s, size_t rem, uint32_t *ret_cp)
{
	uint32_t cp;
	size_t n;

	if (s[0] < 0x80) {
		*ret_cp = s[0];
		return 1;
	}
	if (s[0] < 0xc2) /* continuation byte, or the overlong leads C0 and C1 */
		return 0;
	if (s[0] < 0xe0) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] < 0xf0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] < 0xf5) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (rem < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
		return 0;
	if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	*ret_cp = cp;
	return n;
}

bool mg_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	uint32_t cp;

	while (i < len) {
		size_t n = utf8_seq(p + i, len - i, &cp);

		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

/* Length of a sequence from its (already validated) lead byte. */
static size_t utf8_lead_len(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if (c < 0xe0)
		return 2;
	if (c < 0xf0)
		return 3;
	return 4;
}

/* Copy s for an error message: printable ASCII only, cut at SHOWN_MAX (Postfix printable()). */
static const char *shown(char buf[SHOWN_MAX + 4], const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i < SHOWN_MAX; i++)
		buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (s[i] != '\0') {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

/*
 * The common check of header text: valid UTF-8, no CR, LF or other
 * control character (C0, DEL or C1) except TAB.  what prefixes the
 * message ("header 'Subject'").
 */
static int text_check(const char *what, const char *value, struct mg_err *err)
{
	const unsigned char *p = (const unsigned char *)value;
	size_t len = strlen(value), i = 0;
	uint32_t cp;

	while (i < len) {
		size_t n = utf8_seq(p + i, len - i, &cp);

		if (n == 0)
			return mg_err_set(err, MG_EINPUT, "%s: invalid UTF-8 at offset %zu", what,
					  i);
		if (cp == '\r' || cp == '\n')
			return mg_err_set(err, MG_EINPUT,
					  "%s: value contains CR or LF at offset %zu", what, i);
		if ((cp < 0x20 && cp != '\t') || (cp >= 0x7f && cp < 0xa0))
			return mg_err_set(err, MG_EINPUT,
					  "%s: control character U+%04X at offset %zu", what,
					  (unsigned)cp, i);
		i += n;
	}
	return MG_OK;
}

int mg_hdr_check_value(const char *name, const char *value, struct mg_err *err)
{
	char what[128];

	(void)snprintf(what, sizeof(what), "header '%s'", name);
	return text_check(what, value, err);
}

int mg_addr_check(const char *what, const char *addr, struct mg_err *err)
{
	size_t len = strlen(addr), at = SIZE_MAX;
	char buf[SHOWN_MAX + 4];
	const char *domain;

	if (len == 0)
		return mg_err_set(err, MG_EINPUT, "%s is empty", what);
	if (len > MG_ADDR_MAX)
		return mg_err_set(err, MG_EINPUT, "%s '%s' is too long (%zu bytes, at most %d)",
				  what, shown(buf, addr), len, MG_ADDR_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)addr[i];

		if (c == '\r' || c == '\n')
			return mg_err_set(err, MG_EINPUT, "%s '%s': CR or LF at offset %zu", what,
					  shown(buf, addr), i);
		if (c == ' ')
			return mg_err_set(err, MG_EINPUT, "%s '%s': space at offset %zu", what,
					  shown(buf, addr), i);
		if (c < 0x20 || c == 0x7f)
			return mg_err_set(err, MG_EINPUT,
					  "%s '%s': control character 0x%02x at offset %zu", what,
					  shown(buf, addr), c, i);
		if (c >= 0x80)
			return mg_err_set(
				err, MG_EINPUT,
				"%s '%s': non-ASCII byte at offset %zu (internationalised addresses are not supported)",
				what, shown(buf, addr), i);
		if (strchr(ADDR_SPECIALS, c) != NULL)
			return mg_err_set(err, MG_EINPUT, "%s '%s': character '%c' at offset %zu",
					  what, shown(buf, addr), c, i);
		if (c == '@') {
			if (at != SIZE_MAX)
				return mg_err_set(err, MG_EINPUT, "%s '%s': more than one '@'",
						  what, shown(buf, addr));
			at = i;
		}
	}
	if (at == SIZE_MAX)
		return mg_err_set(err, MG_EINPUT, "%s '%s': no '@'", what, shown(buf, addr));
	if (at == 0)
		return mg_err_set(err, MG_EINPUT, "%s '%s': empty local part", what,
				  shown(buf, addr));
	if (at == len - 1)
		return mg_err_set(err, MG_EINPUT, "%s '%s': empty domain", what, shown(buf, addr));
	domain = addr + at + 1;
	if (domain[0] == '.' || addr[len - 1] == '.' || strstr(domain, "..") != NULL)
		return mg_err_set(err, MG_EINPUT, "%s '%s': empty label in the domain", what,
				  shown(buf, addr));
	return MG_OK;
}

const char *mg_addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : addr + strlen(addr);
}

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

int mg_addr_parse_mailbox(const char *mailbox, char **ret_display, char **ret_addr,
			  struct mg_err *err)
{
	const char *s = mailbox, *e = mailbox + strlen(mailbox), *a = NULL, *ae = NULL;
	char *display = NULL, *addr = NULL;
	size_t dlen = 0;
	int r;

	r = text_check("sender", mailbox, err);
	if (r < 0)
		goto out;
	while (s < e && is_wsp(*s))
		s++;
	while (e > s && is_wsp(e[-1]))
		e--;

	if (e > s && e[-1] == '>') {
		const char *lt;

		ae = e - 1;
		if (*s == '"') {
			/* RFC 5322 3.2.4 quoted-string; unescape quoted-pairs */
			const char *p;

			display = mg_malloc((size_t)(e - s));
			if (display == NULL)
				goto nomem;
			for (p = s + 1; p < ae && *p != '"'; p++) {
				if (*p == '\\' && p + 1 < ae)
					p++;
				display[dlen++] = *p;
			}
			display[dlen] = '\0';
			if (p >= ae) {
				r = mg_err_set(err, MG_EINPUT,
					       "sender: unterminated quoted string");
				goto out;
			}
			for (lt = p + 1; lt < ae && is_wsp(*lt); lt++)
				;
			if (*lt != '<') {
				r = mg_err_set(
					err, MG_EINPUT,
					"sender: expected '<' after the quoted display name");
				goto out;
			}
		} else {
			const char *de;

			for (lt = ae; lt > s && lt[-1] != '<'; lt--)
				;
			if (lt == s) {
				r = mg_err_set(err, MG_EINPUT, "sender: '>' without '<'");
				goto out;
			}
			lt--;
			for (de = lt; de > s && is_wsp(de[-1]); de--)
				;
			dlen = (size_t)(de - s);
			display = mg_strndup(s, dlen);
			if (display == NULL)
				goto nomem;
		}
		a = lt + 1;
	} else {
		a = s;
		ae = e;
	}

	addr = mg_strndup(a, (size_t)(ae - a));
	if (addr == NULL)
		goto nomem;
	r = mg_addr_check("sender address", addr, err);
	if (r < 0)
		goto out;
	if (display != NULL && display[0] == '\0') {
		free(display);
		display = NULL;
	}
	*ret_display = display;
	*ret_addr = addr;
	return MG_OK;
nomem:
	r = mg_err_set(err, MG_ENOMEM, "out of memory");
out:
	free(display);
	free(addr);
	return r;
}

/*
 * A header writer: tracks the column and keeps the first buffer failure,
 * so a header is written straight through and checked once at the end.
 */
struct hw {
	struct mg_buf *out;
	size_t col;
	int rc;
};

static void hw_add(struct hw *w, const char *s, size_t n)
{
	if (w->rc == MG_OK)
		w->rc = mg_buf_add(w->out, s, n);
	w->col += n;
}

static void hw_adds(struct hw *w, const char *s)
{
	hw_add(w, s, strlen(s));
}

static void hw_crlf(struct hw *w)
{
	hw_add(w, "\r\n", 2);
	w->col = 0;
}

static int hw_finish(struct hw *w, const char *name, struct mg_err *err)
{
	if (w->rc == MG_ENOMEM)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	if (w->rc < 0)
		return mg_err_set(err, w->rc,
				  "header '%s': the mail exceeds its limit of %zu bytes", name,
				  w->out->max);
	return MG_OK;
}

/*
 * Write s[0..len) (valid UTF-8, len > 0) as RFC 2047 B encoded-words, each
 * preceded by white space: the first on the current line when it fits,
 * the others each on a line of its own.  Each word holds whole UTF-8
 * sequences only (RFC 2047 5: "each 'encoded-word' MUST represent an
 * integral number of characters").
 */
static void hw_encoded_words(struct hw *w, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	bool first = true;
	size_t pos = 0;

	while (pos < len) {
		char word[EW_MAX + 1];
		size_t budget = 0, maxraw = 0, take = 0, n, wl;

		if (!first)
			hw_crlf(w);
		if (w->col + 1 < EW_LINE_MAX)
			budget = EW_LINE_MAX - w->col - 1;
		if (budget > EW_MAX)
			budget = EW_MAX;
		if (budget > EW_OVERHEAD)
			maxraw = (budget - EW_OVERHEAD) / 4 * 3;
		while (pos + take < len && take + (n = utf8_lead_len(p[pos + take])) <= maxraw)
			take += n;
		if (take == 0) {
			/* not even one character fits behind the field name */
			assert(w->col > 0);
			hw_crlf(w);
			continue;
		}
		memcpy(word, EW_PREFIX, EW_OVERHEAD - 2);
		wl = EW_OVERHEAD - 2;
		wl += mg_base64(word + wl, p + pos, take);
		memcpy(word + wl, EW_SUFFIX, 2);
		wl += 2;
		hw_add(w, " ", 1);
		hw_add(w, word, wl);
		pos += take;
		first = false;
	}
}

/*
 * Unstructured text that can stay as it is: ASCII, nothing a decoder
 * would take for an encoded-word, and foldable into lines of at most
 * HARD_MAX.  Folding inserts CRLF before white space only (RFC 5322
 * 2.2.3), so a line holds at most FOLD_MAX columns plus one segment (see
 * hw_fold(), trailing white space counted with the last word): a segment
 * up to HARD_MAX - FOLD_MAX - 1 keeps every line within HARD_MAX.
 */
static bool text_is_plain(const char *v, size_t len)
{
	size_t seg = 1, end = len; /* the space after the colon starts the first segment */

	if (strstr(v, "=?") != NULL)
		return false;
	while (end > 0 && is_wsp(v[end - 1]))
		end--;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)v[i] >= 0x80)
			return false;
		if (i < end && i > 0 && is_wsp(v[i]) && !is_wsp(v[i - 1]))
			seg = 0;
		if (++seg > HARD_MAX - FOLD_MAX - 1)
			return false;
	}
	return true;
}

/*
 * Write " " v folded greedily: a segment is a run of white space and the
 * word after it, and a line break goes before a segment that would end
 * past FOLD_MAX.  Trailing white space stays on its line, so no line is
 * white space only.
 */
static void hw_fold(struct hw *w, const char *v, size_t len)
{
	bool lead = true;
	size_t i = 0;

	while (i < len) {
		size_t k = i, j;

		while (k < len && is_wsp(v[k]))
			k++;
		for (j = k; j < len && !is_wsp(v[j]); j++)
			;
		if (j > k && w->col + (lead ? 1 : 0) + (j - i) > FOLD_MAX)
			hw_crlf(w);
		if (lead)
			hw_add(w, " ", 1);
		hw_add(w, v + i, j - i);
		lead = false;
		i = j;
	}
}

int mg_hdr_add_text(struct mg_buf *out, const char *name, const char *value, struct mg_err *err)
{
	struct hw w = { .out = out };
	size_t len = strlen(value);
	int r;

	r = mg_hdr_check_value(name, value, err);
	if (r < 0)
		return r;
	hw_adds(&w, name);
	hw_add(&w, ":", 1);
	if (len > 0 && text_is_plain(value, len))
		hw_fold(&w, value, len);
	else if (len > 0)
		hw_encoded_words(&w, value, len);
	hw_crlf(&w);
	return hw_finish(&w, name, err);
}

/* RFC 5322 3.2.3 atext */
static bool is_atext(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

enum phrase_kind { PHRASE_ATOMS, PHRASE_QUOTED, PHRASE_ENCODED };

/* How a display name (checked, non-empty) is written; *ret_len: its length then. */
static enum phrase_kind phrase_kind(const char *d, size_t len, size_t *ret_len)
{
	bool atoms = d[0] != ' ' && d[len - 1] != ' ';
	size_t quoted = 2;

	/* Some decoders take "=?" for an encoded-word even inside quotes. */
	if (strstr(d, "=?") != NULL)
		return PHRASE_ENCODED;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)d[i] >= 0x80)
			return PHRASE_ENCODED;
		if (!is_atext(d[i]) && d[i] != ' ')
			atoms = false;
		quoted += (d[i] == '"' || d[i] == '\\') ? 2 : 1;
	}
	*ret_len = atoms ? len : quoted;
	return atoms ? PHRASE_ATOMS : PHRASE_QUOTED;
}

int mg_hdr_add_mailbox(struct mg_buf *out, const char *name, const char *display, const char *addr,
		       struct mg_err *err)
{
	struct hw w = { .out = out };
	enum phrase_kind kind;
	size_t dlen, shown_len = 0, alen = strlen(addr);
	char what[128];
	int r;

	(void)snprintf(what, sizeof(what), "header '%s': address", name);
	r = mg_addr_check(what, addr, err);
	if (r < 0)
		return r;
	if (display != NULL) {
		r = mg_hdr_check_value(name, display, err);
		if (r < 0)
			return r;
	}
	hw_adds(&w, name);
	hw_add(&w, ":", 1);
	if (display == NULL || display[0] == '\0') {
		hw_add(&w, " ", 1);
		hw_add(&w, addr, alen);
		hw_crlf(&w);
		return hw_finish(&w, name, err);
	}

	dlen = strlen(display);
	kind = phrase_kind(display, dlen, &shown_len);
	/* a phrase too long for one line is better folded as encoded-words */
	if (kind != PHRASE_ENCODED && w.col + 1 + shown_len > HARD_MAX - 2)
		kind = PHRASE_ENCODED;
	switch (kind) {
	case PHRASE_ATOMS:
		hw_add(&w, " ", 1);
		hw_add(&w, display, dlen);
		break;
	case PHRASE_QUOTED:
		hw_add(&w, " \"", 2);
		for (size_t i = 0; i < dlen; i++) {
			if (display[i] == '"' || display[i] == '\\')
				hw_add(&w, "\\", 1);
			hw_add(&w, display + i, 1);
		}
		hw_add(&w, "\"", 1);
		break;
	case PHRASE_ENCODED:
		hw_encoded_words(&w, display, dlen);
		break;
	}
	/* " <addr>": on this line if it fits, else on the next */
	if (w.col + alen + 3 > (kind == PHRASE_ENCODED ? EW_LINE_MAX : FOLD_MAX))
		hw_crlf(&w);
	hw_add(&w, " <", 2);
	hw_add(&w, addr, alen);
	hw_add(&w, ">", 1);
	hw_crlf(&w);
	return hw_finish(&w, name, err);
}
