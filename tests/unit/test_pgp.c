/* tests/unit/test_pgp.c - OpenPGP signature packets, armor and gpg-agent answers */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mg-alloc.h"
#include "mg-buf.h"
#include "pgp.h"

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

static int b64_value(char c)
{
	static const char digits[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c != '\0' ? strchr(digits, c) : NULL;

	return p != NULL ? (int)(p - digits) : -1;
}

/* Decode base64 text (no line breaks) into out; returns the byte count. */
static size_t b64_decode(const char *s, size_t n, unsigned char *out)
{
	size_t o = 0;

	assert_int_equal(n % 4, 0);
	for (size_t i = 0; i < n; i += 4) {
		int v[4];

		for (int k = 0; k < 4; k++)
			v[k] = s[i + k] == '=' ? 0 : b64_value(s[i + k]);
		for (int k = 0; k < 4; k++)
			assert_true(v[k] >= 0);
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (s[i + 2] != '=')
			out[o++] = (unsigned char)(v[1] << 4 | v[2] >> 2);
		if (s[i + 3] != '=')
			out[o++] = (unsigned char)(v[2] << 6 | v[3]);
	}
	return o;
}

/*
 * Take an armored signature apart as RFC 4880 6.2 says: header line,
 * blank line, base64 lines of at most 64 characters, "=" and the CRC-24,
 * end line.  Returns the packet's bytes; checks the checksum.
 */
static size_t dearmor(const char *text, unsigned char *pkt, size_t max)
{
	static const char begin[] = "-----BEGIN PGP SIGNATURE-----\n\n";
	static const char end[] = "-----END PGP SIGNATURE-----\n";
	char *b64 = calloc(1, strlen(text) + 1);
	const char *p = text + strlen(begin);
	size_t n = 0, len;
	unsigned char crc[4];
	uint32_t c;

	assert_non_null(b64);
	assert_memory_equal(text, begin, strlen(begin));
	while (*p != '=') {
		const char *nl = strchr(p, '\n');

		assert_non_null(nl);
		assert_true(nl - p <= 64);
		memcpy(b64 + n, p, (size_t)(nl - p));
		n += (size_t)(nl - p);
		p = nl + 1;
	}
	assert_true(n / 4 * 3 <= max);
	len = b64_decode(b64, n, pkt);
	assert_int_equal(b64_decode(p + 1, 4, crc), 3);
	assert_string_equal(p + 5, "\n-----END PGP SIGNATURE-----\n");
	(void)end;
	c = mg_pgp_crc24(pkt, len);
	assert_int_equal(crc[0], c >> 16 & 0xff);
	assert_int_equal(crc[1], c >> 8 & 0xff);
	assert_int_equal(crc[2], c & 0xff);
	free(b64);
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
	/* lists other than (name value) and unknown names are passed over */
	{ "(7:sig-val(3:rsa(5:flags5:pkcs1)(1:x1:y)(1:s3:abc)))", MG_PGP_PK_RSA, MG_OK, "abc",
	  NULL },
	/* the first of two values of a name */
	{ "(7:sig-val(3:rsa(1:s2:ab)(1:s2:cd)))", MG_PGP_PK_RSA, MG_OK, "ab", NULL },
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
