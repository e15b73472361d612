/* lib/sign.c - OpenPGP detached signatures through gpgme, or from gpg-agent directly */
#include <ctype.h>
#include <locale.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gpgme.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "pgp.h"
#include "sign.h"

#define AGENT_ANSWER_MAX 4096 /* a PKSIGN answer: RSA 8192 is about 1,050 bytes */
#define KEY_RECHECK_SEC	 300  /* how often the key is looked up again (revoked?) */

/*
 * Signing without gpg (docs/signing.md): the signature packet is built
 * here (pgp.c) and only the private-key operation is asked of gpg-agent,
 * over an Assuan connection that gpgme makes (GPGME_PROTOCOL_ASSUAN).
 * This saves starting a gpg process per mail, most of the cost of a
 * signature.  Set up only for the key types pgp.c knows (RSA, Ed25519
 * v4 keys), and used only after a signature made this way was verified
 * by gpg at start-up.
 */
struct agent {
	gpgme_ctx_t ctx; /* NULL after a failure: connect again at the next signature */
	char *socket;	 /* the agent's, as gpgconf names it */
	char keygrip[41];
	unsigned char fpr[MG_PGP_FPR_LEN];
	int pk_algo;   /* MG_PGP_PK_* */
	int hash_algo; /* MG_PGP_HASH_*, what gpg chose for the key */
	const EVP_MD *md;
	EVP_PKEY *pub;	/* to check each signature, as gpg checks what it makes */
	size_t sig_len; /* RSA: the modulus' bytes, the length OpenSSL checks */
	char micalg[MG_MICALG_MAX];
	time_t not_after;  /* the key's or subkey's expiry (0: none): gpg from then on */
	time_t checked_at; /* when the key was last looked up (revoked, disabled?) */
	/* the answer being read */
	unsigned char answer[AGENT_ANSWER_MAX];
	size_t answer_len;
	bool answer_overflow;
};

struct mg_signer {
	gpgme_ctx_t ctx;
	gpgme_key_t key;
	struct agent *agent; /* NULL: every signature through gpg */
	char agent_note[256];
	char fallback[256];	  /* why the last signature went through gpg after all; "" */
	char fallback_taken[256]; /* what mg_sign_take_fallback() returned last */
};

static const char *gerr(gpgme_error_t e, char *buf, size_t size)
{
	if (gpgme_strerror_r(e, buf, size) != 0)
		(void)snprintf(buf, size, "gpgme error %u", (unsigned)e);
	return buf;
}

int mg_sign_global_init(struct mg_err *err)
{
	char ebuf[256];
	gpgme_error_t e;

	if (gpgme_check_version(NULL) == NULL)
		return mg_err_set(err, MG_ECONFIG, "gpgme: library initialisation failed");
	(void)gpgme_set_locale(NULL, LC_CTYPE, setlocale(LC_CTYPE, NULL));
	e = gpgme_engine_check_version(GPGME_PROTOCOL_OpenPGP);
	if (e != 0)
		return mg_err_set(err, MG_ECONFIG, "gpgme: no usable OpenPGP engine (gpg): %s",
				  gerr(e, ebuf, sizeof(ebuf)));
	return MG_OK;
}

static void agent_free(struct agent *a)
{
	if (a == NULL)
		return;
	if (a->ctx != NULL)
		gpgme_release(a->ctx);
	gpgme_free(a->socket);
	EVP_PKEY_free(a->pub);
	free(a);
}

void mg_sign_free(struct mg_signer *s)
{
	if (s == NULL)
		return;
	agent_free(s->agent);
	if (s->key != NULL)
		gpgme_key_unref(s->key);
	if (s->ctx != NULL)
		gpgme_release(s->ctx);
	free(s);
}

static int gpg_sign(struct mg_signer *s, const char *data, size_t len, struct mg_buf *sig,
		    char *micalg, char **ret_fpr, int *ret_hash, struct mg_err *err);

/* ------------------------------------------------- gpg-agent directly */

static gpgme_error_t agent_data(void *opaque, const void *data, size_t len)
{
	struct agent *a = opaque;

	if (len == 0)
		return 0;
	if (len > sizeof(a->answer) - a->answer_len) {
		a->answer_overflow = true;
		return 0;
	}
	memcpy(a->answer + a->answer_len, data, len);
	a->answer_len += len;
	return 0;
}

/* A passphrase (or anything else) asked for: we have none to give. */
static gpgme_error_t agent_inquire(void *opaque, const char *name, const char *args,
				   gpgme_data_t *r_data)
{
	(void)opaque;
	(void)name;
	(void)args;
	*r_data = NULL;
	return gpg_error(GPG_ERR_ASS_CANCELED); /* gpgme answers CAN for this one */
}

/*
 * One Assuan command; its data (D lines, unescaped) lands in a->answer.
 * MG_ETEMP when the connection failed, MG_EREJECT when the agent answered
 * with an error (no such key, a passphrase needed, a card missing, ...).
 */
static int agent_cmd(struct agent *a, const char *cmd, struct mg_err *err)
{
	gpgme_error_t e, op = 0;
	char ebuf[256];

	a->answer_len = 0;
	a->answer_overflow = false;
	e = gpgme_op_assuan_transact_ext(a->ctx, cmd, agent_data, a, agent_inquire, a, NULL, NULL,
					 &op);
	if (e != 0)
		return mg_err_set(err, MG_ETEMP, "gpg-agent: %.12s: %s", cmd,
				  gerr(e, ebuf, sizeof(ebuf)));
	if (op != 0)
		return mg_err_set(err, MG_EREJECT, "gpg-agent refused %.12s: %s", cmd,
				  gerr(op, ebuf, sizeof(ebuf)));
	if (a->answer_overflow)
		return mg_err_set(err, MG_EINPUT, "gpg-agent: %.12s: answer too long", cmd);
	return MG_OK;
}

/* The agent socket of gnupg_home, as gpgconf names it, into a->socket. */
static int agent_find(struct agent *a, const char *gnupg_home, struct mg_err *err)
{
	gpgme_ctx_t conf = NULL;
	char ebuf[256];
	gpgme_error_t e;

	e = gpgme_new(&conf);
	if (e == 0)
		e = gpgme_set_protocol(conf, GPGME_PROTOCOL_GPGCONF);
	if (e == 0)
		e = gpgme_ctx_set_engine_info(conf, GPGME_PROTOCOL_GPGCONF, NULL, gnupg_home);
	if (e == 0)
		e = gpgme_op_conf_dir(conf, "agent-socket", &a->socket);
	if (e == 0 && a->socket == NULL)
		e = gpg_error(GPG_ERR_NOT_FOUND);
	gpgme_release(conf);
	if (e != 0)
		return mg_err_set(err, MG_ETEMP, "gpgconf names no gpg-agent socket: %s",
				  gerr(e, ebuf, sizeof(ebuf)));
	return MG_OK;
}

/* Connect to the agent (gpgme's Assuan engine). */
static int agent_connect(struct agent *a, struct mg_err *err)
{
	char ebuf[256];
	gpgme_error_t e;
	int r;

	e = gpgme_new(&a->ctx);
	if (e == 0)
		e = gpgme_set_protocol(a->ctx, GPGME_PROTOCOL_ASSUAN);
	if (e == 0)
		e = gpgme_ctx_set_engine_info(a->ctx, GPGME_PROTOCOL_ASSUAN, a->socket, NULL);
	if (e != 0) {
		r = mg_err_set(err, MG_ETEMP, "no connection to gpg-agent: %s",
			       gerr(e, ebuf, sizeof(ebuf)));
		goto out;
	}
	/* a protected key is then asked for by an INQUIRE we refuse, not a pinentry */
	r = agent_cmd(a, "OPTION pinentry-mode=loopback", err);
out:
	if (r < 0 && a->ctx != NULL) {
		gpgme_release(a->ctx);
		a->ctx = NULL;
	}
	return r;
}

/*
 * Check the signature values v over digest with the public key, as gpg
 * checks the signatures it makes: a fault in the signing (a bad card, a
 * glitch) must not send out a bad signature.  Ed25519: (r, s) over the
 * digest as the message, as gpg-agent signs it; RSA: PKCS #1 v1.5 with
 * the hash.
 */
static int agent_check(struct agent *a, const unsigned char *digest, size_t dlen,
		       const struct mg_pgp_mpi *v, struct mg_err *err)
{
	unsigned char buf[2 * MG_PGP_ED25519_LEN + 1024] = { 0 };
	size_t blen = a->pk_algo == MG_PGP_PK_EDDSA ? 2 * MG_PGP_ED25519_LEN : a->sig_len;
	size_t each = a->pk_algo == MG_PGP_PK_EDDSA ? MG_PGP_ED25519_LEN : a->sig_len;
	size_t n = a->pk_algo == MG_PGP_PK_EDDSA ? 2 : 1;
	EVP_MD_CTX *c = NULL;
	EVP_PKEY_CTX *pc = NULL;
	int ok = 0;

	if (blen > sizeof(buf))
		return mg_err_set(err, MG_EINPUT, "gpg-agent: signature too long");
	for (size_t k = 0; k < n; k++) {
		struct mg_pgp_mpi t = mg_pgp_mpi_trim(v[k]);

		if (t.len > each)
			return mg_err_set(err, MG_EINPUT, "gpg-agent: signature value too long");
		memcpy(buf + k * each + each - t.len, t.p, t.len);
	}
	if (a->pk_algo == MG_PGP_PK_EDDSA) {
		c = EVP_MD_CTX_new();
		if (c == NULL)
			return mg_err_set(err, MG_ENOMEM, "out of memory");
		if (EVP_DigestVerifyInit(c, NULL, NULL, NULL, a->pub) == 1)
			ok = EVP_DigestVerify(c, buf, blen, digest, dlen) == 1;
		EVP_MD_CTX_free(c);
	} else {
		pc = EVP_PKEY_CTX_new(a->pub, NULL);
		if (pc == NULL)
			return mg_err_set(err, MG_ENOMEM, "out of memory");
		if (EVP_PKEY_verify_init(pc) == 1 &&
		    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) == 1 &&
		    EVP_PKEY_CTX_set_signature_md(pc, a->md) == 1)
			ok = EVP_PKEY_verify(pc, buf, blen, digest, dlen) == 1;
		EVP_PKEY_CTX_free(pc);
	}
	if (!ok)
		return mg_err_set(err, MG_EINPUT,
				  "gpg-agent made a signature that does not verify");
	return MG_OK;
}

/*
 * Sign data[0..len) by asking the agent for the private-key operation
 * only, appending the armored signature to sig.  MG_ETEMP when the agent
 * cannot be reached; *ret_give_up set when it refused or its answer is no
 * good signature (this key is then better signed through gpg).
 */
static int agent_sign(struct agent *a, const char *data, size_t len, struct mg_buf *sig,
		      bool *ret_give_up, struct mg_err *err)
{
	unsigned char trailer[MG_PGP_TRAILER_MAX], digest[EVP_MAX_MD_SIZE];
	char cmd[32 + 2 * EVP_MAX_MD_SIZE];
	struct mg_pgp_mpi v[2];
	struct mg_pgp_sig ps;
	EVP_MD_CTX *md = NULL;
	unsigned int dlen = 0;
	size_t tlen, n = 0, k;
	int r;

	if (a->ctx == NULL && (r = agent_connect(a, err)) < 0) {
		*ret_give_up = r == MG_EREJECT;
		return r;
	}
	r = mg_pgp_sig_init(&ps, a->pk_algo, a->hash_algo, (uint32_t)time(NULL), a->fpr, err);
	if (r < 0)
		return r;
	tlen = mg_pgp_sig_trailer(&ps, trailer);
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, a->md, NULL) != 1 ||
	    EVP_DigestUpdate(md, data, len) != 1 || EVP_DigestUpdate(md, trailer, tlen) != 1 ||
	    EVP_DigestFinal_ex(md, digest, &dlen) != 1) {
		r = mg_err_set(err, MG_ENOMEM, "hashing the mail failed");
		goto out;
	}
	(void)snprintf(cmd, sizeof(cmd), "SIGKEY %s", a->keygrip);
	r = agent_cmd(a, cmd, err);
	if (r == MG_EREJECT)
		*ret_give_up = true;
	if (r < 0)
		goto out;
	k = (size_t)snprintf(cmd, sizeof(cmd), "SETHASH %d ", a->hash_algo);
	for (unsigned int i = 0; i < dlen; i++)
		k += (size_t)snprintf(cmd + k, sizeof(cmd) - k, "%02X", digest[i]);
	r = agent_cmd(a, cmd, err);
	if (r == MG_OK)
		r = agent_cmd(a, "PKSIGN", err);
	if (r == MG_OK)
		r = mg_pgp_parse_sig_sexp(a->answer, a->answer_len, a->pk_algo, v, &n, err);
	if (r == MG_OK)
		r = agent_check(a, digest, dlen, v, err);
	if (r == MG_EINPUT || r == MG_EREJECT) {
		*ret_give_up = true;
		goto out;
	}
	if (r == MG_OK)
		r = mg_pgp_sig_armor(&ps, digest, v, n, sig, err);
out:
	EVP_MD_CTX_free(md);
	return r;
}

static int hex_bytes(const char *hex, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned int b;

		if (!isxdigit((unsigned char)hex[2 * i]) ||
		    !isxdigit((unsigned char)hex[2 * i + 1]) || sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = (unsigned char)b;
	}
	return hex[2 * n] == '\0' ? 0 : -1;
}

/* Whether sig (armored) is a good signature over data by the signer's key, as gpg sees it. */
static bool gpg_verifies(struct mg_signer *s, const char *data, size_t len,
			 const struct mg_buf *sig, const char *fpr)
{
	gpgme_data_t d = NULL, sd = NULL;
	gpgme_verify_result_t v;
	bool ok = false;

	if (gpgme_data_new_from_mem(&d, data, len, 0) != 0 ||
	    gpgme_data_new_from_mem(&sd, mg_buf_str(sig), sig->len, 0) != 0)
		goto out;
	if (gpgme_op_verify(s->ctx, sd, d, NULL) != 0)
		goto out;
	v = gpgme_op_verify_result(s->ctx);
	ok = v != NULL && v->signatures != NULL && v->signatures->next == NULL &&
	     gpg_err_code(v->signatures->status) == GPG_ERR_NO_ERROR &&
	     v->signatures->fpr != NULL && strcasecmp(v->signatures->fpr, fpr) == 0;
out:
	gpgme_data_release(d);
	gpgme_data_release(sd);
	return ok;
}

/* The earlier of the key's and the signing subkey's expiry; 0: never. */
static time_t key_not_after(gpgme_key_t key, gpgme_subkey_t sk)
{
	time_t t = 0;

	if (key->subkeys != NULL && key->subkeys->expires > 0)
		t = (time_t)key->subkeys->expires;
	if (sk->expires > 0 && (t == 0 || (time_t)sk->expires < t))
		t = (time_t)sk->expires;
	return t;
}

/* The public key of the keygrip from the agent, to check each signature with. */
static int agent_public_key(struct agent *a, struct mg_err *err)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pc = NULL;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	char cmd[64];
	int r;

	(void)snprintf(cmd, sizeof(cmd), "READKEY %s", a->keygrip);
	r = agent_cmd(a, cmd, err);
	if (r < 0)
		return r;
	if (a->pk_algo == MG_PGP_PK_EDDSA) {
		unsigned char q[MG_PGP_ED25519_LEN];

		r = mg_pgp_parse_ed25519_sexp(a->answer, a->answer_len, q, err);
		if (r < 0)
			return r;
		a->pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, q, sizeof(q));
		return a->pub != NULL ? MG_OK
				      : mg_err_set(err, MG_EINPUT,
						   "OpenSSL does not take the Ed25519 key");
	}
	{
		struct mg_pgp_mpi n, e;

		r = mg_pgp_parse_rsa_sexp(a->answer, a->answer_len, &n, &e, err);
		if (r < 0)
			return r;
		n = mg_pgp_mpi_trim(n);
		a->sig_len = n.len;
		bn_n = BN_bin2bn(n.p, (int)n.len, NULL);
		bn_e = BN_bin2bn(e.p, (int)e.len, NULL);
	}
	bld = OSSL_PARAM_BLD_new();
	pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (bn_n == NULL || bn_e == NULL || bld == NULL || pc == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1 ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL || EVP_PKEY_fromdata_init(pc) != 1 ||
	    EVP_PKEY_fromdata(pc, &a->pub, EVP_PKEY_PUBLIC_KEY, params) != 1)
		r = mg_err_set(err, MG_EINPUT, "OpenSSL does not take the RSA key");
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(pc);
	BN_free(bn_n);
	BN_free(bn_e);
	return r;
}

/*
 * Whether the signer's key may still sign: not expired (checked at every
 * signature) and, looked up again every KEY_RECHECK_SEC, not revoked or
 * disabled, as gpg checks at every signature.
 */
static bool agent_key_usable(struct mg_signer *s, const char **ret_why)
{
	struct agent *a = s->agent;
	time_t now = time(NULL);
	gpgme_key_t k = NULL;
	bool ok;

	if (a->not_after != 0 && now >= a->not_after) {
		*ret_why = "the key has expired";
		return false;
	}
	if (now - a->checked_at < KEY_RECHECK_SEC && now >= a->checked_at)
		return true;
	a->checked_at = now;
	if (gpgme_get_key(s->ctx, s->key->subkeys->fpr, &k, 1) != 0 || k == NULL)
		return true; /* not found just now: gpg would say more; keep going */
	ok = k->can_sign && !k->revoked && !k->expired && !k->disabled;
	gpgme_key_unref(k);
	if (!ok)
		*ret_why = "the key was revoked, disabled or expired";
	return ok;
}

/*
 * Set up signing through the agent for s when its key allows it, else
 * leave s->agent NULL and say why in s->agent_note.  The probe signature
 * gpg made (gpg_sig with micalg, by the (sub)key fpr with hash) tells
 * what gpg uses; a signature made the new way must then verify in gpg
 * before it is used.
 */
static void agent_setup(struct mg_signer *s, const char *gnupg_home, const struct mg_buf *gpg_sig,
			const char *micalg, const char *fpr, int hash)
{
	static const char probe[] = "mailgen signing key check (gpg-agent)\r\n";
	struct mg_buf sig = MG_BUF_INIT(64 * 1024);
	struct mg_err e = { 0 };
	struct agent *a = NULL;
	gpgme_subkey_t sk;
	unsigned char pkt[2048];
	size_t pkt_len = 0;
	bool headers = false, give_up = false;
	const char *why = NULL;

	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		why = "out of memory";
		goto out;
	}
	/*
	 * What gpg.conf adds to signatures ("comment", "sig-notation",
	 * "sig-policy-url", "default-sig-expire", ...) the agent path would
	 * leave out: then every signature goes through gpg, as configured.
	 */
	if (mg_pgp_dearmor(mg_buf_str(gpg_sig), gpg_sig->len, pkt, sizeof(pkt), &pkt_len, &headers,
			   &e) < 0) {
		why = e.msg; /* not what gpg 2.2 writes: leave it to gpg */
		goto out;
	}
	if (headers || !mg_pgp_sig_is_plain(pkt, pkt_len)) {
		why = "gpg adds armor headers or subpackets to its signatures (gpg.conf)";
		goto out;
	}
	for (sk = s->key->subkeys; sk != NULL; sk = sk->next)
		if (sk->fpr != NULL && strcasecmp(sk->fpr, fpr) == 0)
			break;
	if (sk == NULL || sk->keygrip == NULL || strlen(sk->keygrip) != 40 ||
	    hex_bytes(sk->fpr, a->fpr, MG_PGP_FPR_LEN) < 0) {
		why = "not a v4 key with a keygrip";
		goto out;
	}
	memcpy(a->keygrip, sk->keygrip, 41);
	if (sk->pubkey_algo == GPGME_PK_RSA) /* not the deprecated sign-only RSA (3) */
		a->pk_algo = MG_PGP_PK_RSA;
	else if (sk->pubkey_algo == GPGME_PK_EDDSA && sk->curve != NULL &&
		 strcasecmp(sk->curve, "ed25519") == 0)
		a->pk_algo = MG_PGP_PK_EDDSA;
	else {
		why = "a key type other than RSA and Ed25519";
		goto out;
	}
	a->hash_algo = hash;
	a->md = hash == MG_PGP_HASH_SHA256   ? EVP_sha256()
		: hash == MG_PGP_HASH_SHA384 ? EVP_sha384()
		: hash == MG_PGP_HASH_SHA512 ? EVP_sha512()
		: hash == MG_PGP_HASH_SHA224 ? EVP_sha224()
					     : NULL;
	if (a->md == NULL) {
		why = "a hash algorithm other than SHA-2";
		goto out;
	}
	(void)snprintf(a->micalg, sizeof(a->micalg), "%s", micalg);
	a->not_after = key_not_after(s->key, sk);
	a->checked_at = time(NULL);
	if (agent_find(a, gnupg_home, &e) < 0 || agent_connect(a, &e) < 0 ||
	    agent_public_key(a, &e) < 0) {
		why = e.msg;
		goto out;
	}
	if (agent_sign(a, probe, sizeof(probe) - 1, &sig, &give_up, &e) < 0) {
		why = e.msg;
		goto out;
	}
	if (!gpg_verifies(s, probe, sizeof(probe) - 1, &sig, sk->fpr)) {
		why = "gpg does not verify its signature";
		goto out;
	}
	s->agent = a;
	a = NULL;
out:
	if (why != NULL)
		(void)snprintf(s->agent_note, sizeof(s->agent_note),
			       "gpg (gpg-agent directly is not possible: %.200s)", why);
	agent_free(a);
	mg_buf_release(&sig);
}

/*
 * Sign once through gpg: a key gpg cannot use unattended is a configuration
 * error.  sig, micalg, *ret_fpr (owned) and *ret_hash tell agent_setup()
 * what gpg made.
 */
static int sign_probe(struct mg_signer *s, const char *key, const char *gnupg_home,
		      struct mg_buf *sig, char *micalg, char **ret_fpr, int *ret_hash,
		      struct mg_err *err)
{
	static const char probe[] = "mailgen signing key check\r\n";
	struct mg_err e = { 0 };
	int r;

	r = gpg_sign(s, probe, sizeof(probe) - 1, sig, micalg, ret_fpr, ret_hash, &e);
	if (r < 0)
		return mg_err_set(
			err, MG_ECONFIG,
			"'openpgp.signing_key': cannot sign with key '%s' from '%s' (is it "
			"protected by a passphrase?): %s",
			key, gnupg_home, e.msg);
	return MG_OK;
}

int mg_sign_new(const char *gnupg_home, const char *key, bool via_agent, struct mg_signer **ret,
		struct mg_err *err)
{
	struct mg_signer *s = calloc(1, sizeof(*s));
	struct mg_buf probe_sig = MG_BUF_INIT(64 * 1024);
	char ebuf[256], micalg[MG_MICALG_MAX], *fpr = NULL;
	gpgme_error_t e;
	int r, hash = 0;

	if (s == NULL)
		return mg_err_set(err, MG_ENOMEM, "out of memory");
	e = gpgme_new(&s->ctx);
	if (e == 0)
		e = gpgme_set_protocol(s->ctx, GPGME_PROTOCOL_OpenPGP);
	if (e == 0)
		e = gpgme_ctx_set_engine_info(s->ctx, GPGME_PROTOCOL_OpenPGP, NULL, gnupg_home);
	if (e != 0) {
		r = mg_err_set(err, MG_ECONFIG, "gpgme: cannot set up a context for '%s': %s",
			       gnupg_home, gerr(e, ebuf, sizeof(ebuf)));
		goto out;
	}
	gpgme_set_armor(s->ctx, 1);
	gpgme_set_textmode(s->ctx, 0);
	gpgme_set_pinentry_mode(s->ctx, GPGME_PINENTRY_MODE_LOOPBACK);
	/* the keygrips, for signing through the agent */
	(void)gpgme_set_keylist_mode(s->ctx, gpgme_get_keylist_mode(s->ctx) |
						     GPGME_KEYLIST_MODE_WITH_KEYGRIP);
	e = gpgme_get_key(s->ctx, key, &s->key, 1);
	if (gpg_err_code(e) == GPG_ERR_AMBIGUOUS_NAME) {
		r = mg_err_set(err, MG_ECONFIG,
			       "'openpgp.signing_key': '%s' matches several secret keys in '%s'; "
			       "give the fingerprint",
			       key, gnupg_home);
		goto out;
	}
	if (e != 0 || s->key == NULL) {
		r = mg_err_set(err, MG_ECONFIG,
			       "'openpgp.signing_key': no secret key '%s' in '%s': %s", key,
			       gnupg_home, e != 0 ? gerr(e, ebuf, sizeof(ebuf)) : "not found");
		goto out;
	}
	if (!s->key->can_sign || s->key->revoked || s->key->expired || s->key->disabled) {
		r = mg_err_set(err, MG_ECONFIG,
			       "'openpgp.signing_key': key '%s' cannot sign (revoked, expired, "
			       "disabled or not a signing key)",
			       key);
		goto out;
	}
	gpgme_signers_clear(s->ctx);
	e = gpgme_signers_add(s->ctx, s->key);
	if (e != 0) {
		r = mg_err_set(err, MG_ECONFIG, "gpgme: cannot use key '%s': %s", key,
			       gerr(e, ebuf, sizeof(ebuf)));
		goto out;
	}
	/*
	 * Sign once now: a key gpg cannot use unattended (a passphrase, a
	 * missing agent) is a configuration error at start, not an error in
	 * every group later.
	 */
	r = sign_probe(s, key, gnupg_home, &probe_sig, micalg, &fpr, &hash, err);
	if (r < 0)
		goto out;
	if (via_agent)
		agent_setup(s, gnupg_home, &probe_sig, micalg, fpr, hash);
	else
		(void)snprintf(s->agent_note, sizeof(s->agent_note),
			       "gpg ('delivery.sign_via_agent' is false)");
	*ret = s;
	s = NULL;
	r = MG_OK;
out:
	mg_sign_free(s);
	mg_buf_release(&probe_sig);
	free(fpr);
	return r;
}

/*
 * Sign through gpg (gpgme_op_sign); with ret_fpr not NULL, *ret_fpr gets
 * the signing (sub)key's fingerprint (owned) and *ret_hash the hash
 * algorithm of the result.
 */
static int gpg_sign(struct mg_signer *s, const char *data, size_t len, struct mg_buf *sig,
		    char *micalg, char **ret_fpr, int *ret_hash, struct mg_err *err)
{
	gpgme_data_t in = NULL, out = NULL;
	gpgme_sign_result_t res;
	const char *hash;
	char ebuf[256];
	char *mem = NULL;
	size_t mem_len = 0;
	gpgme_error_t e;
	int r;

	e = gpgme_data_new_from_mem(&in, data, len, 0);
	if (e == 0)
		e = gpgme_data_new(&out);
	if (e != 0) {
		r = mg_err_set(err, MG_ENOMEM, "gpgme: %s", gerr(e, ebuf, sizeof(ebuf)));
		goto out;
	}
	e = gpgme_op_sign(s->ctx, in, out, GPGME_SIG_MODE_DETACH);
	res = gpgme_op_sign_result(s->ctx);
	if (e != 0 || res == NULL || res->signatures == NULL || res->invalid_signers != NULL) {
		r = mg_err_set(err, MG_ETEMP, "signing failed: %s",
			       e != 0 ? gerr(e, ebuf, sizeof(ebuf))
				      : "gpg made no signature with the key");
		goto out;
	}
	hash = gpgme_hash_algo_name(res->signatures->hash_algo);
	if (hash == NULL || strlen(hash) + 5 > MG_MICALG_MAX) {
		r = mg_err_set(err, MG_ETEMP, "signing: unknown hash algorithm %d",
			       (int)res->signatures->hash_algo);
		goto out;
	}
	(void)snprintf(micalg, MG_MICALG_MAX, "pgp-%s", hash);
	for (char *p = micalg; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	if (ret_fpr != NULL) {
		*ret_hash = (int)res->signatures->hash_algo;
		*ret_fpr = res->signatures->fpr != NULL ? strdup(res->signatures->fpr) : NULL;
		if (*ret_fpr == NULL) {
			r = mg_err_set(err, MG_ENOMEM, "out of memory");
			goto out;
		}
	}
	mem = gpgme_data_release_and_get_mem(out, &mem_len);
	out = NULL;
	if (mem == NULL) {
		r = mg_err_set(err, MG_ENOMEM, "gpgme: out of memory");
		goto out;
	}
	r = mg_buf_add(sig, mem, mem_len);
	if (r < 0)
		mg_err_set(err, r, "signature too large");
out:
	gpgme_free(mem);
	gpgme_data_release(in);
	gpgme_data_release(out);
	return r;
}

/* Sign through gpg from now on; why goes into the notes. */
static void agent_give_up(struct mg_signer *s, const char *why)
{
	(void)snprintf(s->agent_note, sizeof(s->agent_note),
		       "gpg (gpg-agent directly was given up: %.200s)", why);
	(void)snprintf(s->fallback, sizeof(s->fallback),
		       "%.200s; every signature goes through gpg from now on", why);
	agent_free(s->agent);
	s->agent = NULL;
}

int mg_sign_detached(struct mg_signer *s, const char *data, size_t len, struct mg_buf *sig,
		     char *micalg, struct mg_err *err)
{
	struct mg_err e = { 0 };
	const char *why = NULL;
	size_t mark = sig->len;
	bool give_up = false;
	int r;

	if (s->agent != NULL && !agent_key_usable(s, &why))
		agent_give_up(s, why); /* gpg refuses it with its own message */
	if (s->agent == NULL)
		return gpg_sign(s, data, len, sig, micalg, NULL, NULL, err);
	r = agent_sign(s->agent, data, len, sig, &give_up, &e);
	if (r == MG_OK) {
		memcpy(micalg, s->agent->micalg, MG_MICALG_MAX);
		return MG_OK;
	}
	mg_buf_truncate(sig, mark);
	if (give_up) {
		/* refused, or an answer that is no good signature */
		agent_give_up(s, e.msg);
	} else if (r == MG_ETEMP) {
		/*
		 * The agent went away (restarted, killed): this signature through
		 * gpg, which starts an agent again; the next over a new connection.
		 */
		if (s->agent->ctx != NULL)
			gpgme_release(s->agent->ctx);
		s->agent->ctx = NULL;
		(void)snprintf(s->fallback, sizeof(s->fallback),
			       "%.200s; the next signature tries gpg-agent again", e.msg);
	} else {
		return mg_err_set(err, r, "%s", e.msg);
	}
	return gpg_sign(s, data, len, sig, micalg, NULL, NULL, err);
}

const char *mg_sign_method(const struct mg_signer *s)
{
	return s->agent != NULL ? "gpg-agent directly" : s->agent_note;
}

const char *mg_sign_take_fallback(struct mg_signer *s)
{
	if (s->fallback[0] == '\0')
		return NULL;
	memcpy(s->fallback_taken, s->fallback, sizeof(s->fallback_taken));
	s->fallback[0] = '\0';
	return s->fallback_taken;
}
