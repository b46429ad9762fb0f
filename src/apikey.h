/*
 * apikey: the API key format of SPEC section 3, and its key-store hash.
 *
 * A key is   prefix || body || check
 *   prefix  configurable (cfg apikey_prefix, default "hv_sk_"): 1 to
 *           HV_APIKEY_PREFIX_MAX characters of [A-Za-z0-9_-];
 *   body    HV_APIKEY_BODY_LEN (43) base62 digits: 256 random bits,
 *           zero-padded (see base62.h);
 *   check   HV_APIKEY_CHECK_LEN (6) base62 digits: the first 4 bytes of
 *           SHA-256(prefix || body) as a big-endian number, zero-padded.
 * so the default key is 55 characters, e.g. hv_sk_<43><6>. The checksum
 * lets a typo or truncated key be rejected without a database read or a
 * key store call; it is not a secret and not an authenticator (the HMAC
 * in the database is). Rationale: docs/apikeys.md.
 *
 * Only the key-store HMAC of a key is stored:
 *   hash = HMAC-SHA256_hmackey("hsmvault/apikey/v1" NUL || key)
 * so a database dump alone cannot confirm a key.
 *
 * Secrets: a generated key lives in a struct hv_secret; callers show it
 * once and free it. Keys are never logged or put in error messages.
 *
 * Thread-safety: every function is thread-safe; no state.
 */
#ifndef HV_APIKEY_H
#define HV_APIKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "hsm.h"
#include "mem.h"

#define HV_APIKEY_PREFIX_DEFAULT "hv_sk_"
#define HV_APIKEY_PREFIX_MAX     32
#define HV_APIKEY_RANDOM_BYTES   32
#define HV_APIKEY_BODY_LEN       43
#define HV_APIKEY_CHECK_LEN      6
/* Longest well-formed key, without the NUL. */
#define HV_APIKEY_MAX_LEN                                                      \
	(HV_APIKEY_PREFIX_MAX + HV_APIKEY_BODY_LEN + HV_APIKEY_CHECK_LEN)
#define HV_APIKEY_HASH_DOMAIN "hsmvault/apikey/v1"
/* Display hint: prefix + first 4 body characters + NUL. */
#define HV_APIKEY_HINT_MAX (HV_APIKEY_PREFIX_MAX + 4 + 1)

/* True when prefix is an acceptable prefix (see above). NULL is false. */
bool hv_apikey_prefix_ok(const char *prefix);

/*
 * Generate a new key with `prefix` (NULL = HV_APIKEY_PREFIX_DEFAULT).
 * Randomness: OpenSSL RAND_bytes (getrandom-seeded DRBG), not the key
 * store: see docs/apikeys.md. On HV_OK *key is a new secret holding the
 * NUL-terminated key ((*key)->len = strlen, the NUL follows in the
 * buffer); the caller frees it with hv_secret_free(). Errors: HV_E_CONFIG
 * for a bad prefix, HV_E_NOMEM, HV_E_INTERNAL if the RNG fails.
 */
enum hv_rc hv_apikey_generate(const char *prefix, struct hv_secret **key,
    struct hv_err *err) __attribute__((warn_unused_result, nonnull(2)));

/*
 * True when key is well formed for prefix (NULL = default): exact length,
 * the prefix, base62 body and a matching checksum. Does no database or key
 * store work. Runs in time that depends on the lengths only, except that
 * a wrong length or prefix returns at once (both are public). NULL key is
 * false.
 */
bool hv_apikey_format_ok(const char *prefix, const char *key)
    __attribute__((warn_unused_result));

/*
 * The stored hash of key: HMAC-SHA256 in the key store over
 * HV_APIKEY_HASH_DOMAIN NUL || key. Does not check the format (callers
 * call hv_apikey_format_ok() first); key longer than HV_APIKEY_MAX_LEN is
 * HV_E_INVALID. Errors otherwise as hv_hsm_hmac().
 */
enum hv_rc
hv_apikey_hash(struct hv_hsm *hsm, const char *key, uint8_t out[HV_HMAC_LEN],
    struct hv_err *err) __attribute__((warn_unused_result, nonnull(1, 2, 3)));

/*
 * A non-secret display hint for listings: the prefix and the first 4
 * characters of the body followed by nothing else (e.g. "hv_sk_3xQ9"),
 * written NUL-terminated to out. Returns false ("" written) when key is
 * not well formed for prefix (NULL = default). 4 base62 characters leave
 * over 230 unknown bits.
 */
bool hv_apikey_hint(const char *prefix, const char *key,
    char out[HV_APIKEY_HINT_MAX]) __attribute__((nonnull(3)));

#endif
