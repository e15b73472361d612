/* tests/unit/test_pgp.c - OpenPGP signature packets, armor and gpg-agent answers */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "mg-buf.h"
#include "pgp.h"
#include "util.h"

/* fingerprint 01 02 .. 14, so the key id is 0d 0e .. 14 */
static void test_fpr(unsigned char fpr[MG_PGP_FPR_LEN])
{
	for (int i = 0; i < MG_PGP_FPR_LEN; i++)
		fpr[i] = (unsigned char)(i + 1);
}

static void test_sig_init_layout(void **state)
{
	/* RFC 4880 5.2.3, written out by hand */
	static const unsigned char
		want[] = {
			0x04, 0x00, 0x16, 0x08, 0x00, 0x1d, /* v4, binary, EdDSA, SHA256, 29 */
			0x16, 0x21, 0x04, 1,	2,    3,    4,	  5,	6,    7,
			8,    9,    10,	  11,	12,   13,   14,	  15,	16,   17,
			18,   19,   20,	  0x05, 0x02, 0x65, 0x43, 0x21, 0x0f, /* created 0x6543210f */
		};
	static const unsigned char keyid[] = { 13, 14, 15, 16, 17, 18, 19, 20 };
	unsigned char fpr[MG_PGP_FPR_LEN], trailer[MG_PGP_TRAILER_MAX];
	struct mg_pgp_sig s;
	struct mg_err err = { 0 };
	size_t n;

	test_fpr(fpr);
	assert_int_equal(
		mg_pgp_sig_init(&s, MG_PGP_PK_EDDSA, MG_PGP_HASH_SHA256, 0x6543210f, fpr, &err),
		MG_OK);
	assert_int_equal(s.hashed_len, sizeof(want));
	assert_memory_equal(s.hashed, want, sizeof(want));
	assert_memory_equal(s.keyid, keyid, sizeof(keyid));
	/* the v4 trailer: the hashed part, 04 ff and its length (5.2.4) */
	n = mg_pgp_sig_trailer(&s, trailer);
	assert_int_equal(n, sizeof(want) + 6);
	assert_memory_equal(trailer, want, sizeof(want));
	assert_int_equal(trailer[sizeof(want)], 0x04);
	assert_int_equal(trailer[sizeof(want) + 1], 0xff);
	assert_int_equal(trailer[sizeof(want) + 2], 0);
	assert_int_equal(trailer[sizeof(want) + 3], 0);
	assert_int_equal(trailer[sizeof(want) + 4], 0);
	assert_int_equal(trailer[sizeof(want) + 5], sizeof(want));
}

static void test_sig_init_refuses_other_algorithms(void **state)
{
	static const struct {
		int pk, hash;
		const char *want;
	} cases[] = {
		{ 17, MG_PGP_HASH_SHA256, "public-key algorithm 17 not supported" }, /* DSA */
		{ 19, MG_PGP_HASH_SHA256, "public-key algorithm 19 not supported" }, /* ECDSA */
		{ MG_PGP_PK_RSA, 2, "hash algorithm 2 not supported" },		     /* SHA-1 */
		{ MG_PGP_PK_RSA, 1, "hash algorithm 1 not supported" },		     /* MD5 */
	};
	unsigned char fpr[MG_PGP_FPR_LEN];

	test_fpr(fpr);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mg_pgp_sig s;
		struct mg_err err = { 0 };

		assert_int_equal(mg_pgp_sig_init(&s, cases[i].pk, cases[i].hash, 1, fpr, &err),
				 MG_EINPUT);
		if (strstr(err.msg, cases[i].want) == NULL)
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].want);
	}
}

/*
 * Take an armored signature apart: the layout mg_pgp_sig_armor() promises
 * (header line, blank line, base64 lines of at most 64 characters, "=" and
 * the CRC-24, end line; LF), then the packet through mg_pgp_dearmor().
 */
static size_t dearmor(const char *text, unsigned char *pkt, size_t max)
{
	static const char begin[] = "-----BEGIN PGP SIGNATURE-----\n\n";
	static const char end[] = "\n-----END PGP SIGNATURE-----\n";
	const char *p = text + strlen(begin), *crc;
	struct mg_err err = { 0 };
	bool headers = true;
	size_t len = 0;

	assert_memory_equal(text, begin, strlen(begin));
	for (; *p != '='; p = strchr(p, '\n') + 1) {
		assert_non_null(strchr(p, '\n'));
		assert_true(strchr(p, '\n') - p <= 64);
	}
	crc = p;
	assert_int_equal(strlen(crc), 5 + strlen(end));
	assert_string_equal(crc + 5, end);
	assert_int_equal(mg_pgp_dearmor(text, strlen(text), pkt, max, &len, &headers, &err), MG_OK);
	assert_false(headers);
	return len;
}

static void test_crc24(void **state)
{
	/* the CRC-24/OPENPGP check value, and the initial value for nothing */
	assert_int_equal(mg_pgp_crc24((const unsigned char *)"123456789", 9), 0x21cf02);
	assert_int_equal(mg_pgp_crc24(NULL, 0), 0xb704ce);
}

static void test_armor_eddsa_packet(void **state)
{
	static const unsigned char r[] = { 0x00, 0x00, 0x01, 0xff }; /* leading zeros go */
	static const unsigned char sv[] = { 0x80 };
	const struct mg_pgp_mpi v[2] = { { r, sizeof(r) }, { sv, sizeof(sv) } };
	const unsigned char head[2] = { 0xab, 0xcd };
	unsigned char fpr[MG_PGP_FPR_LEN], pkt[512];
	struct mg_buf out = MG_BUF_INIT(4096);
	struct mg_err err = { 0 };
	struct mg_pgp_sig s;
	size_t n, k;

	test_fpr(fpr);
	assert_int_equal(mg_pgp_sig_init(&s, MG_PGP_PK_EDDSA, MG_PGP_HASH_SHA256, 7, fpr, &err),
			 MG_OK);
	assert_int_equal(mg_pgp_sig_armor(&s, head, v, 2, &out, &err), MG_OK);
	n = dearmor(mg_buf_str(&out), pkt, sizeof(pkt));
	/* old-format header of tag 2 with a one-byte length (4.2.1) */
	assert_int_equal(pkt[0], 0x88);
	assert_int_equal(pkt[1], n - 2);
	k = 2;
	assert_memory_equal(pkt + k, s.hashed, s.hashed_len);
	k += s.hashed_len;
	/* unhashed: 10 bytes, the issuer key id subpacket */
	assert_int_equal(pkt[k], 0);
	assert_int_equal(pkt[k + 1], 10);
	assert_int_equal(pkt[k + 2], 9);
	assert_int_equal(pkt[k + 3], 16);
	assert_memory_equal(pkt + k + 4, s.keyid, 8);
	k += 12;
	assert_int_equal(pkt[k], 0xab);
	assert_int_equal(pkt[k + 1], 0xcd);
	k += 2;
	/* MPIs (3.2): 0x01ff is 9 bits, 0x80 is 8 */
	assert_int_equal(pkt[k], 0);
	assert_int_equal(pkt[k + 1], 9);
	assert_int_equal(pkt[k + 2], 0x01);
	assert_int_equal(pkt[k + 3], 0xff);
	assert_int_equal(pkt[k + 4], 0);
	assert_int_equal(pkt[k + 5], 8);
	assert_int_equal(pkt[k + 6], 0x80);
	assert_int_equal(k + 7, n);
	mg_buf_release(&out);
}

static void test_armor_long_rsa_packet(void **state)
{
	unsigned char big[384], fpr[MG_PGP_FPR_LEN], pkt[1024];
	const struct mg_pgp_mpi v[1] = { { big, sizeof(big) } };
	const unsigned char head[2] = { 1, 2 };
	struct mg_buf out = MG_BUF_INIT(4096);
	struct mg_err err = { 0 };
	struct mg_pgp_sig s;
	size_t n;

	memset(big, 0x5a, sizeof(big)); /* top bit clear: 3071 bits */
	test_fpr(fpr);
	assert_int_equal(mg_pgp_sig_init(&s, MG_PGP_PK_RSA, MG_PGP_HASH_SHA512, 7, fpr, &err),
			 MG_OK);
	assert_int_equal(mg_pgp_sig_armor(&s, head, v, 1, &out, &err), MG_OK);
	n = dearmor(mg_buf_str(&out), pkt, sizeof(pkt));
	/* two-byte length */
	assert_int_equal(pkt[0], 0x89);
	assert_int_equal((size_t)pkt[1] << 8 | pkt[2], n - 3);
	assert_int_equal(pkt[n - 386], 3071 >> 8);
	assert_int_equal(pkt[n - 385], 3071 & 0xff);
	assert_memory_equal(pkt + n - 384, big, sizeof(big));
	mg_buf_release(&out);
}

static void test_armor_refusals(void **state)
{
	static const unsigned char one[] = { 1 };
	unsigned char huge[1025] = { 1 }, fpr[MG_PGP_FPR_LEN];
	const struct mg_pgp_mpi two[2] = { { one, 1 }, { one, 1 } };
	const struct mg_pgp_mpi big[1] = { { huge, sizeof(huge) } };
	const unsigned char head[2] = { 0, 0 };
	struct mg_buf out = MG_BUF_INIT(4096), tiny = MG_BUF_INIT(40);
	struct mg_err err = { 0 };
	struct mg_pgp_sig s = { 0 };

	/* not begun */
	assert_int_equal(mg_pgp_sig_armor(&s, head, two, 1, &out, &err), MG_EINPUT);
	test_fpr(fpr);
	assert_int_equal(mg_pgp_sig_init(&s, MG_PGP_PK_RSA, MG_PGP_HASH_SHA256, 7, fpr, &err),
			 MG_OK);
	assert_int_equal(mg_pgp_sig_armor(&s, head, two, 2, &out, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "2 signature values where 1 belong"));
	assert_int_equal(mg_pgp_sig_armor(&s, head, big, 1, &out, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "signature value of 1025 bytes"));
	assert_int_equal(out.len, 0);
	/* the buffer's cap */
	assert_int_equal(mg_pgp_sig_armor(&s, head, two, 1, &tiny, &err), MG_EINPUT);
	assert_non_null(strstr(err.msg, "no room for the signature"));
	mg_buf_release(&out);
	mg_buf_release(&tiny);
}

static void test_armor_torture(void **state)
{
	static const unsigned char one[] = { 1 };
	const struct mg_pgp_mpi v[1] = { { one, 1 } };
	const unsigned char head[2] = { 0, 0 };
	unsigned char fpr[MG_PGP_FPR_LEN];
	struct mg_pgp_sig s;
	struct mg_err err = { 0 };
	bool done = false;

	test_fpr(fpr);
	assert_int_equal(mg_pgp_sig_init(&s, MG_PGP_PK_RSA, MG_PGP_HASH_SHA256, 7, fpr, &err),
			 MG_OK);
	for (long n = 0; !done; n++) {
		struct mg_buf out = MG_BUF_INIT(4096);
		int r;

		mg_alloc_fail_after(n);
		r = mg_pgp_sig_armor(&s, head, v, 1, &out, &err);
		mg_alloc_fail_after(-1);
		if (r == MG_OK)
			done = true;
		else
			assert_int_equal(r, MG_ENOMEM);
		mg_buf_release(&out);
		assert_true(n < 20);
	}
}

#define A32 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define B32 "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"

static const struct sexp_case {
	const char *in;
	int pk;
	int want_rc;
	const char *want0, *want1; /* values, or want0 a part of err.msg */
} sexp_cases[] = {
	{ "(7:sig-val(5:eddsa(1:r32:" A32 ")(1:s32:" B32 ")))", MG_PGP_PK_EDDSA, MG_OK, A32, B32 },
	{ "(7:sig-val(3:rsa(1:s3:abc)))", MG_PGP_PK_RSA, MG_OK, "abc", NULL },
	/* (name value) lists of other names are passed over */
	{ "(7:sig-val(3:rsa(5:flags5:pkcs1)(1:x1:y)(1:s3:abc)))", MG_PGP_PK_RSA, MG_OK, "abc",
	  NULL },
	/* a name twice, lists without their names, more than one algorithm */
	{ "(7:sig-val(3:rsa(1:s2:ab)(1:s2:cd)))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed",
	  NULL },
	{ "(((1:s3:abc)))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "(7:sig-val((1:s3:abc)))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "(7:sig-val(3:rsa(1:s3:abc))(3:rsa(1:s3:abd)))", MG_PGP_PK_RSA, MG_EINPUT,
	  "not a well-formed", NULL },
	{ "(7:sig-val(3:rsa1:x(1:s3:abc)))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "(7:sig-val(3:rsa(1:s3:abc1:x)))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	/* lengths with a leading zero are not canonical */
	{ "(7:sig-val(3:rsa(1:s03:abc)))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "(7:sig-val(5:eddsa(1:r1:a)(1:s1:b)))", MG_PGP_PK_RSA, MG_EINPUT,
	  "not a well-formed (sig-val (rsa", NULL },
	{ "(7:sig-val(5:eddsa(1:r2:ab)))", MG_PGP_PK_EDDSA, MG_EINPUT, "lacks 's'", NULL },
	{ "(7:sig-val(5:eddsa(1:s2:ab)))", MG_PGP_PK_EDDSA, MG_EINPUT, "lacks 'r'", NULL },
	{ "(7:sig-val(3:rsa(1:s0:)))", MG_PGP_PK_RSA, MG_EINPUT, "lacks 's'", NULL },
	{ "(7:sig-val(3:rsa(1:s3:abc)))x", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "(7:sig-val(3:rsa(1:s3:abc))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "(7:sig-val(3:rsa(1:s99:abc)))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "(7:sig-val(3:rsa(1:s99999999999999999999999:abc)))", MG_PGP_PK_RSA, MG_EINPUT,
	  "not a well-formed", NULL },
	{ "(7:sig-val(3:rsa(1:s3abc)))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "(7:sig-vax(3:rsa(1:s3:abc)))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "3:abc(7:sig-val(3:rsa(1:s3:abc)))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed",
	  NULL },
	{ ")", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed", NULL },
	{ "(7:sig-val(3:rsa(1:s(((1:x)))))))", MG_PGP_PK_RSA, MG_EINPUT, "not a well-formed",
	  NULL },
};

static void test_parse_sig_sexp_table(void **state)
{
	for (size_t i = 0; i < sizeof(sexp_cases) / sizeof(sexp_cases[0]); i++) {
		const struct sexp_case *c = &sexp_cases[i];
		struct mg_pgp_mpi v[2] = { { NULL, 0 }, { NULL, 0 } };
		struct mg_err err = { 0 };
		size_t n = 0;
		int rc;

		print_message("case %zu: %s\n", i, c->in);
		rc = mg_pgp_parse_sig_sexp((const unsigned char *)c->in, strlen(c->in), c->pk, v,
					   &n, &err);
		assert_int_equal(rc, c->want_rc);
		if (rc != MG_OK) {
			if (strstr(err.msg, c->want0) == NULL)
				fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, c->want0);
			continue;
		}
		assert_int_equal(n, c->want1 != NULL ? 2 : 1);
		assert_int_equal(v[0].len, strlen(c->want0));
		assert_memory_equal(v[0].p, c->want0, v[0].len);
		if (c->want1 != NULL) {
			assert_int_equal(v[1].len, strlen(c->want1));
			assert_memory_equal(v[1].p, c->want1, v[1].len);
		}
	}
}

static void test_parse_ed25519_sexp(void **state)
{
	static const char good[] = "(10:public-key(3:ecc(5:curve7:Ed25519)(5:flags5:eddsa)"
				   "(1:q33:@" A32 ")))";
	static const struct {
		const char *in, *want;
	} bad[] = {
		{ "(10:public-key(3:ecc(5:curve10:NIST P-256)(1:q33:@" A32 ")))",
		  "not on Ed25519" },
		{ "(10:public-key(3:ecc(5:curve7:Ed25519)(1:q33:A" A32 ")))", "malformed" },
		{ "(10:public-key(3:ecc(5:curve7:Ed25519)(1:q32:" A32 ")))", "malformed" },
		{ "(10:public-key(3:ecc(5:curve7:Ed25519)))", "malformed" },
		{ "(10:public-key(3:rsa(1:n1:a)(1:e1:b)))", "not a well-formed" },
	};
	unsigned char q[MG_PGP_ED25519_LEN];
	struct mg_err err = { 0 };

	assert_int_equal(
		mg_pgp_parse_ed25519_sexp((const unsigned char *)good, sizeof(good) - 1, q, &err),
		MG_OK);
	assert_memory_equal(q, A32, sizeof(q));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(mg_pgp_parse_ed25519_sexp((const unsigned char *)bad[i].in,
							   strlen(bad[i].in), q, &err),
				 MG_EINPUT);
		if (strstr(err.msg, bad[i].want) == NULL)
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].want);
	}
}

static void test_dearmor_refusals(void **state)
{
	static const char good[] = "-----BEGIN PGP SIGNATURE-----\n\nAQID\n=%s\n"
				   "-----END PGP SIGNATURE-----\n";
	unsigned char three[3] = { 1, 2, 3 }, out[64], crc[3];
	char crc_text[5], text[256], bad[256];
	struct mg_err err = { 0 };
	bool headers;
	size_t len;
	uint32_t c = mg_pgp_crc24(three, 3);
	static const struct {
		const char *from, *to, *want;
	} edits[] = {
		{ "-----BEGIN PGP SIGNATURE-----", "-----BEGIN PGP MESSAGE-----", "no BEGIN" },
		{ "-----END PGP SIGNATURE-----", "-----END PGP MESSAGE-----", "no END" },
		{ "AQID", "AQ!D", "malformed base64" },
		{ "AQID", "AQIE", "checksum mismatch" },
		{ "AQID\n=", "AQID\n-", "no checksum line" },
		{ "AQID", "AQI", "malformed base64" },
	};

	crc[0] = (unsigned char)(c >> 16);
	crc[1] = (unsigned char)(c >> 8);
	crc[2] = (unsigned char)c;
	crc_text[mg_base64(crc_text, crc, 3)] = '\0';
	(void)snprintf(text, sizeof(text), good, crc_text);
	assert_int_equal(mg_pgp_dearmor(text, strlen(text), out, sizeof(out), &len, &headers, &err),
			 MG_OK);
	assert_int_equal(len, 3);
	assert_memory_equal(out, three, 3);
	assert_false(headers);
	/* armor headers are reported; CRLF line ends are taken */
	(void)snprintf(text, sizeof(text),
		       "-----BEGIN PGP SIGNATURE-----\r\nComment: x\r\n\r\nAQID\r\n=%s\r\n"
		       "-----END PGP SIGNATURE-----\r\n",
		       crc_text);
	assert_int_equal(mg_pgp_dearmor(text, strlen(text), out, sizeof(out), &len, &headers, &err),
			 MG_OK);
	assert_true(headers);
	assert_int_equal(len, 3);
	/* no room */
	(void)snprintf(text, sizeof(text), good, crc_text);
	assert_int_equal(mg_pgp_dearmor(text, strlen(text), out, 2, &len, &headers, &err),
			 MG_EINPUT);
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		const char *at = strstr(text, edits[i].from);
		size_t k = (size_t)(at - text);

		assert_non_null(at);
		(void)snprintf(bad, sizeof(bad), "%.*s%s%s", (int)k, text, edits[i].to,
			       at + strlen(edits[i].from));
		assert_int_equal(
			mg_pgp_dearmor(bad, strlen(bad), out, sizeof(out), &len, &headers, &err),
			MG_EINPUT);
		if (strstr(err.msg, edits[i].want) == NULL)
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, edits[i].want);
	}
}

/*
 * Copy pkt[0..n) (a packet with a one-byte length) into out with the
 * bytes [at, at + del) replaced by sub[0..add), fixing the packet's length
 * and the subpacket area's 2-byte length at body offset len_at.  Returns
 * the new length.
 */
static size_t edit_packet(const unsigned char *pkt, size_t n, size_t at, size_t del,
			  const void *sub, size_t add, size_t len_at, unsigned char *out)
{
	size_t area, m = n - del + add;

	assert_int_equal(pkt[0], 0x88);
	assert_true(m - 2 <= 255);
	memcpy(out, pkt, at);
	memcpy(out + at, sub, add);
	memcpy(out + at + add, pkt + at + del, n - at - del);
	out[1] = (unsigned char)(m - 2);
	area = ((size_t)out[2 + len_at] << 8 | out[3 + len_at]) - del + add;
	out[2 + len_at] = (unsigned char)(area >> 8);
	out[3 + len_at] = (unsigned char)area;
	return m;
}

static void test_sig_is_plain(void **state)
{
	static const unsigned char r[] = { 1 }, sv[] = { 2 };
	const struct mg_pgp_mpi v[2] = { { r, 1 }, { sv, 1 } };
	const unsigned char head[2] = { 0, 0 };
	unsigned char fpr[MG_PGP_FPR_LEN], pkt[512], odd[600];
	struct mg_buf out = MG_BUF_INIT(4096);
	struct mg_err err = { 0 };
	struct mg_pgp_sig s;
	size_t n, h, m;

	test_fpr(fpr);
	assert_int_equal(mg_pgp_sig_init(&s, MG_PGP_PK_EDDSA, MG_PGP_HASH_SHA256, 7, fpr, &err),
			 MG_OK);
	assert_int_equal(mg_pgp_sig_armor(&s, head, v, 2, &out, &err), MG_OK);
	n = dearmor(mg_buf_str(&out), pkt, sizeof(pkt));
	assert_true(mg_pgp_sig_is_plain(pkt, n));
	/* truncated, or a new-format header */
	assert_false(mg_pgp_sig_is_plain(pkt, n - 1));
	memcpy(odd, pkt, n);
	odd[0] = 0xc2;
	assert_false(mg_pgp_sig_is_plain(odd, n));
	/*
	 * Edited packets, each well-formed (10-byte subpackets: length 9, the
	 * type, 8 bytes): without the unhashed key id it is still plain; with
	 * a notation (type 20) hashed or unhashed, a creation time unhashed, or
	 * the key id hashed, it is not.
	 */
	h = 2 + s.hashed_len; /* the unhashed area's length, then the area */
	m = edit_packet(pkt, n, h + 2, 10, "", 0, s.hashed_len, odd);
	assert_true(mg_pgp_sig_is_plain(odd, m));
	m = edit_packet(pkt, n, h, 0, "\x09\x14\x80\0\0\0\0\0\0\0", 10, 4, odd);
	assert_false(mg_pgp_sig_is_plain(odd, m));
	m = edit_packet(pkt, n, h + 2, 0, "\x09\x14\x80\0\0\0\0\0\0\0", 10, s.hashed_len, odd);
	assert_false(mg_pgp_sig_is_plain(odd, m));
	m = edit_packet(pkt, n, h + 2, 0, "\x05\x02\0\0\0\1", 6, s.hashed_len, odd);
	assert_false(mg_pgp_sig_is_plain(odd, m));
	m = edit_packet(pkt, n, h, 0, "\x09\x10KEYIDKEY", 10, 4, odd);
	assert_false(mg_pgp_sig_is_plain(odd, m));
	mg_buf_release(&out);
}

static void test_parse_rsa_sexp(void **state)
{
	static const char good[] = "(10:public-key(3:rsa(1:n4:\0ABC)(1:e3:\1\0\1)))";
	static const struct {
		const char *in;
		size_t len;
		const char *want;
	} bad[] = {
		{ "(10:public-key(3:rsa(1:n3:ABC)))", 32, "lacks 'n' or 'e'" },
		{ "(10:public-key(3:rsa(1:e3:ABC)))", 32, "lacks 'n' or 'e'" },
		{ "(10:public-key(3:ecc(1:n1:A)(1:e1:B)))", 38, "not a well-formed" },
		{ "(10:public-key(3:rsa(1:n1:A)(1:e1:B))", 37, "not a well-formed" },
	};
	struct mg_pgp_mpi n, e;
	struct mg_err err = { 0 };

	assert_int_equal(
		mg_pgp_parse_rsa_sexp((const unsigned char *)good, sizeof(good) - 1, &n, &e, &err),
		MG_OK);
	assert_int_equal(n.len, 4);
	assert_memory_equal(n.p, "\0ABC", 4);
	assert_int_equal(e.len, 3);
	assert_memory_equal(e.p, "\1\0\1", 3);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(strlen(bad[i].in), bad[i].len);
		assert_int_equal(mg_pgp_parse_rsa_sexp((const unsigned char *)bad[i].in, bad[i].len,
						       &n, &e, &err),
				 MG_EINPUT);
		if (strstr(err.msg, bad[i].want) == NULL)
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sig_init_layout),
		cmocka_unit_test(test_sig_init_refuses_other_algorithms),
		cmocka_unit_test(test_crc24),
		cmocka_unit_test(test_armor_eddsa_packet),
		cmocka_unit_test(test_armor_long_rsa_packet),
		cmocka_unit_test(test_armor_refusals),
		cmocka_unit_test(test_armor_torture),
		cmocka_unit_test(test_parse_sig_sexp_table),
		cmocka_unit_test(test_parse_ed25519_sexp),
		cmocka_unit_test(test_parse_rsa_sexp),
		cmocka_unit_test(test_dearmor_refusals),
		cmocka_unit_test(test_sig_is_plain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
