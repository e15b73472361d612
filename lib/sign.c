/* lib/sign.c - OpenPGP detached signatures through gpgme */
#include <ctype.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gpgme.h>

#include "sign.h"

struct mg_signer {
	gpgme_ctx_t ctx;
	gpgme_key_t key;
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

void mg_sign_free(struct mg_signer *s)
{
	if (s == NULL)
		return;
	if (s->key != NULL)
		gpgme_key_unref(s->key);
	if (s->ctx != NULL)
		gpgme_release(s->ctx);
	free(s);
}

static int sign_probe(struct mg_signer *s, const char *key, const char *gnupg_home,
		      struct mg_err *err)
{
	static const char probe[] = "mailgen signing key check\r\n";
	struct mg_buf sig = MG_BUF_INIT(64 * 1024);
	struct mg_err e = { 0 };
	char micalg[MG_MICALG_MAX];
	int r;

	r = mg_sign_detached(s, probe, sizeof(probe) - 1, &sig, micalg, &e);
	mg_buf_release(&sig);
	if (r < 0)
		return mg_err_set(
			err, MG_ECONFIG,
			"'openpgp.signing_key': cannot sign with key '%s' from '%s' (is it "
			"protected by a passphrase?): %s",
			key, gnupg_home, e.msg);
	return MG_OK;
}

int mg_sign_new(const char *gnupg_home, const char *key, struct mg_signer **ret, struct mg_err *err)
{
	struct mg_signer *s = calloc(1, sizeof(*s));
	char ebuf[256];
	gpgme_error_t e;
	int r;

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
		goto fail;
	}
	gpgme_set_armor(s->ctx, 1);
	gpgme_set_textmode(s->ctx, 0);
	gpgme_set_pinentry_mode(s->ctx, GPGME_PINENTRY_MODE_LOOPBACK);
	e = gpgme_get_key(s->ctx, key, &s->key, 1);
	if (gpg_err_code(e) == GPG_ERR_AMBIGUOUS_NAME) {
		r = mg_err_set(err, MG_ECONFIG,
			       "'openpgp.signing_key': '%s' matches several secret keys in '%s'; "
			       "give the fingerprint",
			       key, gnupg_home);
		goto fail;
	}
	if (e != 0 || s->key == NULL) {
		r = mg_err_set(err, MG_ECONFIG,
			       "'openpgp.signing_key': no secret key '%s' in '%s': %s", key,
			       gnupg_home, e != 0 ? gerr(e, ebuf, sizeof(ebuf)) : "not found");
		goto fail;
	}
	if (!s->key->can_sign || s->key->revoked || s->key->expired || s->key->disabled) {
		r = mg_err_set(err, MG_ECONFIG,
			       "'openpgp.signing_key': key '%s' cannot sign (revoked, expired, "
			       "disabled or not a signing key)",
			       key);
		goto fail;
	}
	gpgme_signers_clear(s->ctx);
	e = gpgme_signers_add(s->ctx, s->key);
	if (e != 0) {
		r = mg_err_set(err, MG_ECONFIG, "gpgme: cannot use key '%s': %s", key,
			       gerr(e, ebuf, sizeof(ebuf)));
		goto fail;
	}
	/*
	 * Sign once now: a key gpg cannot use unattended (a passphrase, a
	 * missing agent) is a configuration error at start, not an error in
	 * every group later.
	 */
	r = sign_probe(s, key, gnupg_home, err);
	if (r < 0)
		goto fail;
	*ret = s;
	return MG_OK;
fail:
	mg_sign_free(s);
	return r;
}

int mg_sign_detached(struct mg_signer *s, const char *data, size_t len, struct mg_buf *sig,
		     char *micalg, struct mg_err *err)
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
