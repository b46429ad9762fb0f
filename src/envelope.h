/*
 * envelope: envelope encryption of credential secrets (SPEC section 1).
 *
 * Each credential version gets its own random 256-bit data key (DEK) from
 * the key store's RNG (hv_hsm_random). The secret payload is encrypted in
 * process with AES-256-GCM (OpenSSL EVP, cipher fetched once per process),
 * a 96-bit random nonce (OpenSSL RAND_bytes; a DEK encrypts exactly one
 * payload, so nonce reuse under one key cannot happen) and a 128-bit tag.
 * The DEK is then wrapped by the active KEK inside the key store; only the
 * wrapped DEK, the KEK version, the nonce and the ciphertext record are
 * stored. Details and rationale: docs/envelope.md.
 *
 * Binding (fixed binary AAD layouts, HV_ENVELOPE_AAD_LEN_* bytes):
 *   payload AAD = "hsmvault/payload/v1" NUL || ws(16) || cred(16) || ver(be32)
 *   DEK AAD     = "hsmvault/dek/v1"     NUL || ws(16) || cred(16) || ver(be32)
 * where ws and cred are the binary UUIDs. The payload AAD goes to GCM; the
 * DEK AAD goes to hv_hsm_wrap/unwrap, so a wrapped DEK or a ciphertext
 * copied to another workspace, credential or version fails to open. The
 * two domain strings keep one layout from ever being valid as the other.
 *
 * Ciphertext record (the database column):
 *   byte 0      format version, HV_ENVELOPE_FMT_V1 = 0x01
 *   bytes 1..n  AES-256-GCM ciphertext (same length as the plaintext)
 *   last 16     GCM tag
 * Unknown format bytes are HV_E_CRYPTO.
 *
 * Secrets: DEKs and plaintexts only ever live in struct hv_secret (locked,
 * wiped on free); the plaintext is decrypted straight into a secret and is
 * released only after the tag verified. Errors never carry key bytes.
 *
 * Errors: HV_E_INVALID for a malformed id (not a UUID); HV_E_CRYPTO for
 * any authentication failure (tag, nonce, AAD, wrapped DEK, record
 * format); HV_E_KEYSTORE / HV_E_NOT_FOUND / HV_E_PIN as hv_hsm_* report;
 * HV_E_NOMEM; HV_E_INTERNAL if OpenSSL fails unexpectedly.
 *
 * Thread-safety: every function is thread-safe. The fetched cipher is
 * shared read-only; each thread reuses its own EVP_CIPHER_CTX (freed at
 * thread exit). A struct hv_envelope belongs to one thread at a time.
 */
#ifndef HV_ENVELOPE_H
#define HV_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "hsm.h"
#include "mem.h"

#define HV_ENVELOPE_FMT_V1    0x01
#define HV_ENVELOPE_NONCE_LEN 12
#define HV_ENVELOPE_TAG_LEN   16
/* Bytes a record adds to the plaintext: format byte + tag. */
#define HV_ENVELOPE_OVERHEAD (1 + HV_ENVELOPE_TAG_LEN)
/* Largest plaintext we seal (a secret payload is a small JSON object). */
#define HV_ENVELOPE_MAX_PLAINTEXT (1024u * 1024u)

#define HV_ENVELOPE_DOMAIN_PAYLOAD "hsmvault/payload/v1"
#define HV_ENVELOPE_DOMAIN_DEK     "hsmvault/dek/v1"
/* sizeof includes the NUL, which is part of the layout. */
#define HV_ENVELOPE_AAD_LEN_PAYLOAD (sizeof(HV_ENVELOPE_DOMAIN_PAYLOAD) + 36)
#define HV_ENVELOPE_AAD_LEN_DEK     (sizeof(HV_ENVELOPE_DOMAIN_DEK) + 36)
#define HV_ENVELOPE_AAD_MAX         64

enum hv_aad_kind {
	HV_AAD_PAYLOAD = 0, /* GCM AAD of the secret payload */
	HV_AAD_DEK = 1,     /* key store AAD of the wrapped DEK */
};

/*
 * One sealed credential version, as stored. Initialise with
 * hv_envelope_init() (or = {0}); release with hv_envelope_release().
 */
struct hv_envelope {
	uint8_t nonce[HV_ENVELOPE_NONCE_LEN];
	uint8_t *ct; /* record: format byte || ciphertext || tag;
				   owned (hv_malloc), freed by release */
	size_t ct_len;
	uint8_t wrapped[HV_WRAPPED_MAX]; /* DEK wrapped by the key store */
	size_t wrapped_len;
	uint32_t kek_version; /* KEK version that wrapped the DEK */
};

/* Zero *e (no allocation). */
void hv_envelope_init(struct hv_envelope *e) __attribute__((nonnull));

/* Free e->ct, wipe every field; *e is re-initialised. NULL-safe. */
void hv_envelope_release(struct hv_envelope *e);

/*
 * Build the AAD of `kind` for (ws_id, cred_id, version) into out, which
 * holds HV_ENVELOPE_AAD_MAX bytes; *out_len receives the length
 * (HV_ENVELOPE_AAD_LEN_PAYLOAD or _DEK). ws_id and cred_id are UUID
 * strings, either case (they are parsed, so case does not change the AAD).
 * Errors: HV_E_INVALID naming the bad id.
 */
enum hv_rc hv_envelope_aad(enum hv_aad_kind kind, const char *ws_id,
    const char *cred_id, uint32_t version, uint8_t out[HV_ENVELOPE_AAD_MAX],
    size_t *out_len, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(2, 3, 5, 6)));

/*
 * Seal plaintext for credential version (ws_id, cred_id, version): new
 * DEK from the key store, GCM in process, DEK wrapped by the active KEK.
 * On HV_OK *out (which must be initialised and empty) holds the new
 * envelope, owned by the caller. On error *out is left empty. The DEK is
 * wiped before return. plaintext->len may be 0; at most
 * HV_ENVELOPE_MAX_PLAINTEXT (else HV_E_TOO_LARGE).
 */
enum hv_rc hv_envelope_seal(struct hv_hsm *hsm, const char *ws_id,
    const char *cred_id, uint32_t version, const struct hv_secret *plaintext,
    struct hv_envelope *out, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(1, 2, 3, 5, 6)));

/*
 * Open env for (ws_id, cred_id, version): unwrap the DEK in the key store
 * (with env->kek_version and the DEK AAD), verify and decrypt. On HV_OK
 * *plaintext is a new secret the caller frees with hv_secret_free(); on
 * error *plaintext is untouched and nothing decrypted survives.
 * Any mismatch (other ids or version, modified nonce, record, tag or
 * wrapped DEK) is HV_E_CRYPTO.
 */
enum hv_rc hv_envelope_open(struct hv_hsm *hsm, const char *ws_id,
    const char *cred_id, uint32_t version, const struct hv_envelope *env,
    struct hv_secret **plaintext, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(1, 2, 3, 5, 6)));

/*
 * The two halves of hv_envelope_open(), for a DEK cache:
 * hv_envelope_unwrap_dek() returns the DEK of (ws_id, cred_id, version)
 * as a new secret (*dek, freed by the caller; untouched on error);
 * hv_envelope_open_dek() decrypts env with that DEK (env->wrapped and
 * env->kek_version are ignored). Same errors as hv_envelope_open().
 */
enum hv_rc hv_envelope_unwrap_dek(struct hv_hsm *hsm, const char *ws_id,
    const char *cred_id, uint32_t version, const uint8_t *wrapped,
    size_t wrapped_len, uint32_t kek_version, struct hv_secret **dek,
    struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(1, 2, 3, 5, 8)));
enum hv_rc hv_envelope_open_dek(const struct hv_secret *dek, const char *ws_id,
    const char *cred_id, uint32_t version, const struct hv_envelope *env,
    struct hv_secret **plaintext, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(1, 2, 3, 5, 6)));

/*
 * Re-wrap one DEK to the active KEK without touching the payload: unwrap
 * `wrapped` (wrapped by old_kek, bound to the DEK AAD of the ids) inside
 * the key store, wrap it again with the active KEK and the same AAD. out
 * must hold HV_WRAPPED_MAX bytes; on HV_OK *out_len and *new_kek are set
 * (*new_kek may equal old_kek when old_kek is already the active one; the
 * DEK is re-wrapped anyway). The DEK exists in process memory only inside
 * locked secret memory for the duration of the call (the hv_hsm interface
 * has no in-store re-wrap).
 */
enum hv_rc hv_envelope_rewrap(struct hv_hsm *hsm, const char *ws_id,
    const char *cred_id, uint32_t version, const uint8_t *wrapped,
    size_t wrapped_len, uint32_t old_kek, uint8_t *out, size_t *out_len,
    uint32_t *new_kek, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(1, 2, 3, 5, 8, 9, 10)));

/*
 * Lower level: AES-256-GCM with an explicit 32-byte DEK (tests, known
 * answer vectors, the DEK cache).
 *
 * hv_aead_seal() writes the record (format byte || ciphertext || tag,
 * pt_len + HV_ENVELOPE_OVERHEAD bytes) to record, which holds record_cap
 * bytes (HV_E_INTERNAL if too small); *record_len receives its length.
 * pt may be NULL when pt_len is 0; aad may be NULL when aad_len is 0.
 *
 * hv_aead_open() verifies and decrypts a record. On HV_OK *plaintext is a
 * new secret (freed by the caller); on any failure (short record, unknown
 * format byte, tag mismatch) HV_E_CRYPTO and *plaintext is untouched.
 * dek->len must be 32 (HV_E_INTERNAL otherwise).
 */
enum hv_rc hv_aead_seal(const struct hv_secret *dek,
    const uint8_t nonce[HV_ENVELOPE_NONCE_LEN], const uint8_t *aad,
    size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *record,
    size_t record_cap, size_t *record_len, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(1, 2, 7, 9)));
enum hv_rc hv_aead_open(const struct hv_secret *dek,
    const uint8_t nonce[HV_ENVELOPE_NONCE_LEN], const uint8_t *aad,
    size_t aad_len, const uint8_t *record, size_t record_len,
    struct hv_secret **plaintext, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(1, 2, 5, 7)));

#endif
