/* lib/pgp.h - OpenPGP v4 detached signature packets and ASCII armor (RFC 4880) */
#ifndef MG_PGP_H
#define MG_PGP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mg-buf.h"
#include "mg-err.h"

/* Public-key and hash algorithm ids (RFC 4880 9.1, 9.4; EdDSA: RFC 4880bis) */
#define MG_PGP_PK_RSA	   1
#define MG_PGP_PK_EDDSA	   22
#define MG_PGP_HASH_SHA256 8
#define MG_PGP_HASH_SHA384 9
#define MG_PGP_HASH_SHA512 10
#define MG_PGP_HASH_SHA224 11

#define MG_PGP_FPR_LEN	   20 /* a v4 fingerprint */
#define MG_PGP_ED25519_LEN 32 /* an Ed25519 public key, r and s */
#define MG_PGP_HASHED_MAX  64
#define MG_PGP_TRAILER_MAX (MG_PGP_HASHED_MAX + 6)

/*
 * A v4 signature of a binary document (type 0x00) being made: the part
 * of the packet the hash covers (version, type, algorithms and the hashed
 * subpackets: issuer fingerprint and creation time) and the issuer key id.
 */
struct mg_pgp_sig {
	unsigned char hashed[MG_PGP_HASHED_MAX];
	size_t hashed_len;
	unsigned char keyid[8];
};

/* An unsigned big-endian integer; leading zero bytes are allowed. */
struct mg_pgp_mpi {
	const unsigned char *p;
	size_t len;
};

/* v without its leading zero bytes (an MPI's form).  Pure. */
struct mg_pgp_mpi mg_pgp_mpi_trim(struct mg_pgp_mpi v);

/*
 * Begin a signature by the v4 key with fingerprint fpr, made at created
 * (seconds since the epoch).  MG_EINPUT for an algorithm other than the
 * MG_PGP_PK_* and MG_PGP_HASH_* above.  Pure.
 */
int mg_pgp_sig_init(struct mg_pgp_sig *s, int pk_algo, int hash_algo, uint32_t created,
		    const unsigned char fpr[MG_PGP_FPR_LEN], struct mg_err *err);

/*
 * What is hashed after the signed data (RFC 4880 5.2.4): the hashed part
 * of the packet and the v4 trailer.  Writes into out and returns its
 * length.  Pure.
 */
size_t mg_pgp_sig_trailer(const struct mg_pgp_sig *s, unsigned char out[MG_PGP_TRAILER_MAX]);

/*
 * Append to out the ASCII-armored signature packet (LF line ends, as gpg
 * writes it) with the first two bytes of the digest and the algorithm's
 * MPIs: RSA one (s), EdDSA two (r, s).  MG_EINPUT for a wrong count or an
 * MPI over 1,024 bytes; MG_ENOMEM or the buffer's cap.  Pure.
 */
int mg_pgp_sig_armor(const struct mg_pgp_sig *s, const unsigned char digest_head[2],
		     const struct mg_pgp_mpi *v, size_t n, struct mg_buf *out, struct mg_err *err);

/*
 * Take an ASCII-armored signature apart (RFC 4880 6.2; LF or CRLF): the
 * packet bytes into out (room for max) and *ret_len, *ret_headers whether
 * armor headers ("Comment: ...") came before the data.  MG_EINPUT for a
 * malformed armor or a wrong checksum.  Pure.
 */
int mg_pgp_dearmor(const char *text, size_t len, unsigned char *out, size_t max, size_t *ret_len,
		   bool *ret_headers, struct mg_err *err);

/*
 * Whether pkt[0..len) is a v4 binary-document signature packet with
 * exactly the subpackets mg_pgp_sig_armor() writes: hashed the issuer
 * fingerprint and the creation time, unhashed at most the issuer key id
 * (so no notation, policy URL, expiry or other addition).  Pure.
 */
bool mg_pgp_sig_is_plain(const unsigned char *pkt, size_t len);

/* The CRC-24 of the armor checksum (RFC 4880 6.1).  Pure. */
uint32_t mg_pgp_crc24(const unsigned char *p, size_t n);

/*
 * The MPIs of gpg-agent's PKSIGN answer, a canonical S-expression:
 * (7:sig-val(3:rsa(1:s...))) for MG_PGP_PK_RSA, (7:sig-val(5:eddsa(1:r...)
 * (1:s...))) for MG_PGP_PK_EDDSA.  v[] points into buf; *ret_n gets 1 or 2.
 * MG_EINPUT with a message for anything else.  Pure.
 */
int mg_pgp_parse_sig_sexp(const unsigned char *buf, size_t len, int pk_algo, struct mg_pgp_mpi v[2],
			  size_t *ret_n, struct mg_err *err);

/*
 * The 32-byte Ed25519 public key in gpg-agent's READKEY answer,
 * (10:public-key(3:ecc(5:curve7:Ed25519)...(1:q33:\x40...))).  MG_EINPUT
 * for anything else.  Pure.
 */
int mg_pgp_parse_ed25519_sexp(const unsigned char *buf, size_t len,
			      unsigned char ret_q[MG_PGP_ED25519_LEN], struct mg_err *err);

/*
 * The modulus and exponent in gpg-agent's READKEY answer for an RSA key,
 * (10:public-key(3:rsa(1:n...)(1:e...))), pointing into buf.  MG_EINPUT
 * for anything else.  Pure.
 */
int mg_pgp_parse_rsa_sexp(const unsigned char *buf, size_t len, struct mg_pgp_mpi *ret_n,
			  struct mg_pgp_mpi *ret_e, struct mg_err *err);

#endif /* MG_PGP_H */
