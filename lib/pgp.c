/* lib/pgp.c - OpenPGP v4 detached signature packets and ASCII armor (RFC 4880) */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "pgp.h"
#include "util.h"

#define SIG_VERSION    4
#define SIG_BINARY     0x00 /* signature of a binary document (5.2.1) */
#define SUB_CREATED    2    /* signature creation time (5.2.3.4) */
#define SUB_ISSUER     16   /* issuer key id (5.2.3.5) */
#define SUB_ISSUER_FPR 33   /* issuer fingerprint (RFC 4880bis 5.2.3.28) */
#define MPI_MAX	       1024 /* bytes: RSA up to 8192 bits */
#define ARMOR_LINE     64   /* base64 characters per line, as gpg */
#define CRC24_INIT     0xB704CEu
#define CRC24_POLY     0x1864CFBu

static bool pk_known(int a)
{
	return a == MG_PGP_PK_RSA || a == MG_PGP_PK_EDDSA;
}

static bool hash_known(int a)
{
	return a == MG_PGP_HASH_SHA256 || a == MG_PGP_HASH_SHA384 || a == MG_PGP_HASH_SHA512 ||
	       a == MG_PGP_HASH_SHA224;
}

int mg_pgp_sig_init(struct mg_pgp_sig *s, int pk_algo, int hash_algo, uint32_t created,
		    const unsigned char fpr[MG_PGP_FPR_LEN], struct mg_err *err)
{
	unsigned char *h = s->hashed;
	size_t n = 0, sub_start;

	memset(s, 0, sizeof(*s));
	if (!pk_known(pk_algo))
		return mg_err_set(err, MG_EINPUT, "OpenPGP public-key algorithm %d not supported",
				  pk_algo);
	if (!hash_known(hash_algo))
		return mg_err_set(err, MG_EINPUT, "OpenPGP hash algorithm %d not supported",
				  hash_algo);
	h[n++] = SIG_VERSION;
	h[n++] = SIG_BINARY;
	h[n++] = (unsigned char)pk_algo;
	h[n++] = (unsigned char)hash_algo;
	n += 2; /* length of the hashed subpackets, below */
	sub_start = n;
	h[n++] = 1 + 1 + MG_PGP_FPR_LEN; /* type, key version, fingerprint */
	h[n++] = SUB_ISSUER_FPR;
	h[n++] = 4;
	memcpy(h + n, fpr, MG_PGP_FPR_LEN);
	n += MG_PGP_FPR_LEN;
	h[n++] = 1 + 4;
	h[n++] = SUB_CREATED;
	h[n++] = (unsigned char)(created >> 24);
	h[n++] = (unsigned char)(created >> 16);
	h[n++] = (unsigned char)(created >> 8);
	h[n++] = (unsigned char)created;
	h[4] = (unsigned char)((n - sub_start) >> 8);
	h[5] = (unsigned char)(n - sub_start);
	s->hashed_len = n;
	/* a v4 key id is the low 64 bits of the fingerprint (12.2) */
	memcpy(s->keyid, fpr + MG_PGP_FPR_LEN - 8, 8);
	return MG_OK;
}

size_t mg_pgp_sig_trailer(const struct mg_pgp_sig *s, unsigned char out[MG_PGP_TRAILER_MAX])
{
	size_t n = s->hashed_len;

	memcpy(out, s->hashed, n);
	out[n++] = SIG_VERSION;
	out[n++] = 0xff;
	out[n++] = (unsigned char)((uint32_t)s->hashed_len >> 24);
	out[n++] = (unsigned char)((uint32_t)s->hashed_len >> 16);
	out[n++] = (unsigned char)((uint32_t)s->hashed_len >> 8);
	out[n++] = (unsigned char)s->hashed_len;
	return n;
}

struct mg_pgp_mpi mg_pgp_mpi_trim(struct mg_pgp_mpi v)
{
	while (v.len > 0 && v.p[0] == 0) {
		v.p++;
		v.len--;
	}
	return v;
}

/* Append an MPI (3.2): bit count, then the bytes without leading zeros. */
static void put_mpi(unsigned char *pkt, size_t *n, const struct mg_pgp_mpi *m)
{
	struct mg_pgp_mpi t = mg_pgp_mpi_trim(*m);
	size_t bits = t.len * 8;

	if (t.len > 0)
		for (unsigned char top = t.p[0]; !(top & 0x80); top <<= 1)
			bits--;
	pkt[(*n)++] = (unsigned char)(bits >> 8);
	pkt[(*n)++] = (unsigned char)bits;
	memcpy(pkt + *n, t.p, t.len);
	*n += t.len;
}

uint32_t mg_pgp_crc24(const unsigned char *p, size_t n)
{
	uint32_t crc = CRC24_INIT;

	for (size_t i = 0; i < n; i++) {
		crc ^= (uint32_t)p[i] << 16;
		for (int b = 0; b < 8; b++) {
			crc <<= 1;
			if (crc & 0x1000000)
				crc ^= CRC24_POLY;
		}
	}
	return crc & 0xffffff;
}

int mg_pgp_sig_armor(const struct mg_pgp_sig *s, const unsigned char digest_head[2],
		     const struct mg_pgp_mpi *v, size_t n, struct mg_buf *out, struct mg_err *err)
{
	/* body: hashed part, unhashed subpackets, digest head, MPIs */
	unsigned char pkt[3 + MG_PGP_HASHED_MAX + 2 + 10 + 2 + 2 * (2 + MPI_MAX)];
	unsigned char crc[3];
	char line[ARMOR_LINE + 1];
	size_t len, body, want;
	uint32_t c;
	int r;

	if (s->hashed_len < 4)
		return mg_err_set(err, MG_EINPUT, "signature not begun");
	want = s->hashed[2] == MG_PGP_PK_RSA ? 1 : 2;
	if (n != want)
		return mg_err_set(err, MG_EINPUT, "%zu signature values where %zu belong", n, want);
	for (size_t i = 0; i < n; i++)
		if (v[i].len > MPI_MAX)
			return mg_err_set(err, MG_EINPUT, "signature value of %zu bytes", v[i].len);
	len = 3; /* room for the longest header */
	memcpy(pkt + len, s->hashed, s->hashed_len);
	len += s->hashed_len;
	pkt[len++] = 0;
	pkt[len++] = 10; /* unhashed: the issuer key id, for older readers */
	pkt[len++] = 9;
	pkt[len++] = SUB_ISSUER;
	memcpy(pkt + len, s->keyid, 8);
	len += 8;
	pkt[len++] = digest_head[0];
	pkt[len++] = digest_head[1];
	for (size_t i = 0; i < n; i++)
		put_mpi(pkt, &len, &v[i]);
	/* an old-format header for tag 2, as gpg writes it (4.2.1) */
	body = len - 3;
	if (body < 256) {
		pkt[1] = 0x88;
		pkt[2] = (unsigned char)body;
	} else {
		pkt[0] = 0x89;
		pkt[1] = (unsigned char)(body >> 8);
		pkt[2] = (unsigned char)body;
	}
	{
		size_t start = body < 256 ? 1 : 0;
		const unsigned char *p = pkt + start;
		size_t plen = len - start;

		r = mg_buf_adds(out, "-----BEGIN PGP SIGNATURE-----\n\n");
		for (size_t off = 0; off < plen && r == MG_OK; off += ARMOR_LINE / 4 * 3) {
			size_t take =
				plen - off < ARMOR_LINE / 4 * 3 ? plen - off : ARMOR_LINE / 4 * 3;
			size_t k = mg_base64(line, p + off, take);

			line[k] = '\n';
			r = mg_buf_add(out, line, k + 1);
		}
		c = mg_pgp_crc24(p, plen);
	}
	crc[0] = (unsigned char)(c >> 16);
	crc[1] = (unsigned char)(c >> 8);
	crc[2] = (unsigned char)c;
	if (r == MG_OK)
		r = mg_buf_addc(out, '=');
	if (r == MG_OK) {
		size_t k = mg_base64(line, crc, 3);

		r = mg_buf_add(out, line, k);
	}
	if (r == MG_OK)
		r = mg_buf_adds(out, "\n-----END PGP SIGNATURE-----\n");
	if (r < 0)
		return mg_err_set(err, r, "no room for the signature");
	return MG_OK;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/*
 * Decode the base64 of s[0..n), line ends allowed, into out (room for
 * max).  Returns the byte count, or -1 for a bad character, bad padding or
 * no room.
 */
static long b64_decode(const char *s, size_t n, unsigned char *out, size_t max)
{
	uint32_t acc = 0;
	size_t o = 0, k = 0, pad = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		int v = b64_value(c);

		if (c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			pad++;
			v = 0;
		} else if (v < 0 || pad > 0) {
			return -1;
		}
		acc = acc << 6 | (uint32_t)v;
		if (++k < 4)
			continue;
		if (pad > 2 || o + 3 - pad > max)
			return -1;
		out[o++] = (unsigned char)(acc >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(acc >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)acc;
		acc = 0;
		k = 0;
	}
	return k == 0 ? (long)o : -1;
}

/* The line at *pos (without its LF or CRLF) as *ret_p, *ret_n; false at the end. */
static bool next_line(const char *text, size_t len, size_t *pos, const char **ret_p, size_t *ret_n)
{
	const char *p = text + *pos, *nl;

	if (*pos >= len)
		return false;
	nl = memchr(p, '\n', len - *pos);
	*ret_p = p;
	*ret_n = nl != NULL ? (size_t)(nl - p) : len - *pos;
	*pos += *ret_n + (nl != NULL);
	if (*ret_n > 0 && p[*ret_n - 1] == '\r')
		(*ret_n)--;
	return true;
}

/* Whether p[0..n) are the bytes of the string s (an armor line, an atom). */
static bool bytes_are(const void *p, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(p, s, n) == 0;
}

int mg_pgp_dearmor(const char *text, size_t len, unsigned char *out, size_t max, size_t *ret_len,
		   bool *ret_headers, struct mg_err *err)
{
	const char *p = NULL, *b64 = NULL, *crc_text = NULL;
	size_t pos = 0, n = 0, b64_len = 0;
	unsigned char crc[3];
	bool headers = false;
	long got;
	uint32_t c;

	if (!next_line(text, len, &pos, &p, &n) ||
	    !bytes_are(p, n, "-----BEGIN PGP SIGNATURE-----"))
		return mg_err_set(err, MG_EINPUT, "armor: no BEGIN PGP SIGNATURE line");
	while (next_line(text, len, &pos, &p, &n) && n > 0)
		headers = true; /* "Comment: ...", "Version: ..." */
	b64 = text + pos;
	for (;;) {
		size_t start = pos;

		if (!next_line(text, len, &pos, &p, &n) || (n > 0 && p[0] == '-'))
			return mg_err_set(err, MG_EINPUT, "armor: no checksum line");
		if (n > 0 && p[0] == '=') {
			b64_len = start - (size_t)(b64 - text);
			break;
		}
	}
	crc_text = p + 1;
	if (n != 5 || b64_decode(crc_text, 4, crc, sizeof(crc)) != 3)
		return mg_err_set(err, MG_EINPUT, "armor: malformed checksum line");
	if (!next_line(text, len, &pos, &p, &n) || !bytes_are(p, n, "-----END PGP SIGNATURE-----"))
		return mg_err_set(err, MG_EINPUT, "armor: no END PGP SIGNATURE line");
	got = b64_decode(b64, b64_len, out, max);
	if (got < 0)
		return mg_err_set(err, MG_EINPUT, "armor: malformed base64");
	c = mg_pgp_crc24(out, (size_t)got);
	if (crc[0] != (c >> 16 & 0xff) || crc[1] != (c >> 8 & 0xff) || crc[2] != (c & 0xff))
		return mg_err_set(err, MG_EINPUT, "armor: checksum mismatch");
	*ret_len = (size_t)got;
	*ret_headers = headers;
	return MG_OK;
}

/*
 * The types of the subpackets in p[0..n) (5.2.3.1) into *types (a bit per
 * type below 64; critical bit masked), each at most once.  False when
 * malformed, repeated or of a type of 64 or more.
 */
static bool subpacket_types(const unsigned char *p, size_t n, uint64_t *types)
{
	size_t i = 0;

	*types = 0;
	while (i < n) {
		size_t len;
		unsigned t;

		if (p[i] < 192) {
			len = p[i];
			i += 1;
		} else if (p[i] < 255 && i + 1 < n) {
			len = ((size_t)(p[i] - 192) << 8) + p[i + 1] + 192;
			i += 2;
		} else {
			return false; /* five-octet lengths: not in a small signature */
		}
		if (len == 0 || len > n - i)
			return false;
		t = p[i] & 0x7f;
		if (t >= 64 || (*types & (UINT64_C(1) << t)))
			return false;
		*types |= UINT64_C(1) << t;
		i += len;
	}
	return true;
}

bool mg_pgp_sig_is_plain(const unsigned char *pkt, size_t len)
{
	const unsigned char *b;
	size_t hdr, body, hashed, unhashed;
	uint64_t types;

	if (len < 2 || (pkt[0] & 0xfc) != 0x88)
		return false; /* not an old-format tag-2 header of one or two octets */
	hdr = (pkt[0] & 3) == 0 ? 2 : 3;
	if ((pkt[0] & 3) > 1 || len < hdr)
		return false;
	body = hdr == 2 ? pkt[1] : (size_t)pkt[1] << 8 | pkt[2];
	if (body != len - hdr || body < 6)
		return false;
	b = pkt + hdr;
	if (b[0] != SIG_VERSION || b[1] != SIG_BINARY)
		return false;
	hashed = (size_t)b[4] << 8 | b[5];
	if (6 + hashed + 2 > body)
		return false;
	if (!subpacket_types(b + 6, hashed, &types) ||
	    types != ((UINT64_C(1) << SUB_ISSUER_FPR) | (UINT64_C(1) << SUB_CREATED)))
		return false;
	unhashed = (size_t)b[6 + hashed] << 8 | b[7 + hashed];
	if (8 + hashed + unhashed > body)
		return false;
	return subpacket_types(b + 8 + hashed, unhashed, &types) &&
	       (types & ~(UINT64_C(1) << SUB_ISSUER)) == 0;
}

/*
 * One token of a canonical S-expression at *pos: '(' or ')' (returned as
 * is, *ret_p and *ret_len untouched) or an atom "len:bytes" (returns 'a', *ret_p and *ret_len the
 * bytes).  0 at the end or on a malformed token.
 */
static int sexp_next(const unsigned char *buf, size_t len, size_t *pos, const unsigned char **ret_p,
		     size_t *ret_len)
{
	size_t i = *pos, n = 0;

	if (i >= len)
		return 0;
	if (buf[i] == '(' || buf[i] == ')') {
		*pos = i + 1;
		return buf[i];
	}
	if (buf[i] == '0' && i + 1 < len && buf[i + 1] != ':')
		return 0; /* "03:": not canonical */
	for (; i < len && buf[i] >= '0' && buf[i] <= '9'; i++) {
		n = n * 10 + (size_t)(buf[i] - '0');
		if (n > len)
			return 0;
	}
	if (i == *pos || i >= len || buf[i] != ':' || n > len - i - 1)
		return 0;
	*ret_p = buf + i + 1;
	*ret_len = n;
	*pos = i + 1 + n;
	return 'a';
}

/*
 * The values of the (name value) lists in (top (algo ...)), a canonical
 * S-expression filling all of buf and of exactly that shape: found[k] for
 * names[k], {NULL, 0} when absent.  Returns false for any other shape and
 * for a name given twice.
 */
static bool sexp_values(const unsigned char *buf, size_t len, const char *top, const char *algo,
			const char *const *names, size_t n_names, struct mg_pgp_mpi *found)
{
	const unsigned char *p = NULL, *name = NULL;
	size_t pos = 0, n = 0, name_len = 0;
	int t;

	for (size_t k = 0; k < n_names; k++)
		found[k] = (struct mg_pgp_mpi){ NULL, 0 };
	if (sexp_next(buf, len, &pos, &p, &n) != '(' || sexp_next(buf, len, &pos, &p, &n) != 'a' ||
	    !bytes_are(p, n, top) || sexp_next(buf, len, &pos, &p, &n) != '(' ||
	    sexp_next(buf, len, &pos, &p, &n) != 'a' || !bytes_are(p, n, algo))
		return false;
	while ((t = sexp_next(buf, len, &pos, &p, &n)) == '(') {
		if (sexp_next(buf, len, &pos, &name, &name_len) != 'a' ||
		    sexp_next(buf, len, &pos, &p, &n) != 'a' ||
		    sexp_next(buf, len, &pos, &p, &n) != ')')
			return false;
		/* p and n: the value, kept by the ')' token */
		for (size_t k = 0; k < n_names; k++) {
			if (!bytes_are(name, name_len, names[k]))
				continue;
			if (found[k].p != NULL)
				return false;
			found[k].p = p;
			found[k].len = n;
		}
	}
	return t == ')' && sexp_next(buf, len, &pos, &p, &n) == ')' && pos == len;
}

int mg_pgp_parse_sig_sexp(const unsigned char *buf, size_t len, int pk_algo, struct mg_pgp_mpi v[2],
			  size_t *ret_n, struct mg_err *err)
{
	static const char *const rsa[] = { "s" }, *const eddsa[] = { "r", "s" };
	const char *algo = pk_algo == MG_PGP_PK_RSA ? "rsa" : "eddsa";
	const char *const *names = pk_algo == MG_PGP_PK_RSA ? rsa : eddsa;
	size_t want = pk_algo == MG_PGP_PK_RSA ? 1 : 2;
	struct mg_pgp_mpi found[2];

	if (!sexp_values(buf, len, "sig-val", algo, names, want, found))
		return mg_err_set(err, MG_EINPUT,
				  "gpg-agent's signature is not a well-formed (sig-val (%s ...))",
				  algo);
	for (size_t k = 0; k < want; k++) {
		if (found[k].p == NULL || found[k].len == 0)
			return mg_err_set(err, MG_EINPUT, "gpg-agent's signature lacks '%s'",
					  names[k]);
		v[k] = found[k];
	}
	*ret_n = want;
	return MG_OK;
}

int mg_pgp_parse_rsa_sexp(const unsigned char *buf, size_t len, struct mg_pgp_mpi *ret_n,
			  struct mg_pgp_mpi *ret_e, struct mg_err *err)
{
	static const char *const names[] = { "n", "e" };
	struct mg_pgp_mpi found[2];

	if (!sexp_values(buf, len, "public-key", "rsa", names, 2, found))
		return mg_err_set(
			err, MG_EINPUT,
			"gpg-agent's public key is not a well-formed (public-key (rsa ...))");
	if (found[0].p == NULL || found[0].len == 0 || found[1].p == NULL || found[1].len == 0)
		return mg_err_set(err, MG_EINPUT, "gpg-agent's RSA public key lacks 'n' or 'e'");
	*ret_n = found[0];
	*ret_e = found[1];
	return MG_OK;
}

int mg_pgp_parse_ed25519_sexp(const unsigned char *buf, size_t len,
			      unsigned char ret_q[MG_PGP_ED25519_LEN], struct mg_err *err)
{
	static const char *const names[] = { "curve", "q" };
	struct mg_pgp_mpi found[2];

	if (!sexp_values(buf, len, "public-key", "ecc", names, 2, found))
		return mg_err_set(
			err, MG_EINPUT,
			"gpg-agent's public key is not a well-formed (public-key (ecc ...))");
	if (found[0].p == NULL || !(bytes_are(found[0].p, found[0].len, "Ed25519") ||
				    bytes_are(found[0].p, found[0].len, "ed25519")))
		return mg_err_set(err, MG_EINPUT, "gpg-agent's public key is not on Ed25519");
	/* the point as 0x40 and the 32 bytes (RFC 4880bis 13.3, "native" form) */
	if (found[1].p == NULL || found[1].len != MG_PGP_ED25519_LEN + 1 || found[1].p[0] != 0x40)
		return mg_err_set(err, MG_EINPUT, "gpg-agent's Ed25519 public key is malformed");
	memcpy(ret_q, found[1].p + 1, MG_PGP_ED25519_LEN);
	return MG_OK;
}
