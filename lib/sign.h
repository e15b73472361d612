/* lib/sign.h - OpenPGP detached signatures through gpgme */
#ifndef MG_SIGN_H
#define MG_SIGN_H

#include <stdbool.h>
#include <stddef.h>

#include "mg-buf.h"
#include "mg-err.h"

#define MG_MICALG_MAX 32

struct mg_signer;

/*
 * Initialise gpgme for the process: gpgme_check_version() and the locale.
 * Call once in main() before any thread starts (gpgme requires it).
 * Returns MG_ECONFIG when no usable OpenPGP engine is installed.
 */
int mg_sign_global_init(struct mg_err *err);

/*
 * A signer with its own gpgme context, using the secret key key (a
 * fingerprint, key id or user id; it must identify exactly one secret key)
 * from the GnuPG home gnupg_home.  One per thread: contexts must not be
 * shared.  Returns MG_ECONFIG when the key is not there or not usable.
 *
 * With via_agent, signatures are made without gpg where the key allows
 * (v4 RSA and Ed25519 keys): the packet is built here and gpg-agent only
 * does the private-key operation (docs/signing.md).  This is set up only
 * when a signature made so verifies in gpg at once; otherwise, and once
 * the agent refused, gave an answer that is not a good signature (every
 * signature is checked), or the key expired or was revoked, every
 * signature goes through gpg.  mg_sign_method() says which way it is.
 */
int mg_sign_new(const char *gnupg_home, const char *key, bool via_agent, struct mg_signer **ret,
		struct mg_err *err);

/*
 * How s signs, for the log: "gpg-agent directly", or "gpg (...)" with the
 * reason.  Borrowed, valid until the next mg_sign_detached().
 */
const char *mg_sign_method(const struct mg_signer *s);

/* NULL-safe. */
void mg_sign_free(struct mg_signer *s);

/*
 * Make an ASCII-armored detached signature over data[0..len) (binary
 * mode: the bytes as given, which the caller has made CRLF-canonical) and
 * append it to sig.  micalg receives the RFC 3156 micalg of the hash gpg
 * used ("pgp-sha256"), never hard-coded.  Returns MG_ETEMP when gpg or
 * the agent failed (worth a retry), MG_ECONFIG for key problems.
 */
int mg_sign_detached(struct mg_signer *s, const char *data, size_t len, struct mg_buf *sig,
		     char *micalg, struct mg_err *err);

/*
 * Why the last mg_sign_detached() signed through gpg although s signs
 * through gpg-agent (its connection failed; or its answer was no good
 * signature, and s has given the agent up), once: NULL when it did not,
 * and on the next call.  Borrowed from s until the next call.
 */
const char *mg_sign_take_fallback(struct mg_signer *s);

#endif /* MG_SIGN_H */
