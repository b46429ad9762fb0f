/*
 * uuid: RFC 4122 identifiers as hsmvault uses them: random (version 4)
 * ids for workspaces, credentials, API keys and audit rows, and a strict
 * validator for ids that arrive from outside (URL paths, JSON bodies).
 *
 * Text form: the canonical 8-4-4-4-12 hexadecimal layout, 36 characters.
 * hv_uuid_valid() accepts either case and nothing else (no braces, no
 * "urn:uuid:", no missing hyphens, no surrounding space); ids we produce
 * are lowercase. Validation does not check version or variant bits, so
 * ids minted by other systems (or by PostgreSQL) stay acceptable.
 *
 * Thread-safety: every function is thread-safe. hv_uuid_new() keeps a
 * per-thread pool of random bytes for 16 ids, emptied in a forked child.
 */
#ifndef HV_UUID_H
#define HV_UUID_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define HV_UUID_LEN 16 /* binary bytes */
#ifndef HV_UUID_STR
#define HV_UUID_STR 37 /* 36 chars + NUL (also in vault.h) */
#endif

/*
 * Write a new random (version 4, RFC 4122 variant) UUID in lowercase
 * canonical form, NUL-terminated, to out. Randomness: OpenSSL RAND_bytes
 * (ids are not secrets; they need uniqueness, not key custody).
 * Returns HV_OK, or HV_E_INTERNAL if the RNG fails (out is then "").
 */
enum hv_rc
hv_uuid_new(char out[HV_UUID_STR]) __attribute__((warn_unused_result, nonnull));

/*
 * True when s is exactly 36 characters in the 8-4-4-4-12 layout with hex
 * digits of either case. NULL is false.
 */
bool hv_uuid_valid(const char *s) __attribute__((warn_unused_result));

/*
 * Parse a canonical UUID string into its 16 bytes. Returns false (and
 * leaves out untouched) when !hv_uuid_valid(s).
 */
bool hv_uuid_parse(const char *s, uint8_t out[HV_UUID_LEN])
    __attribute__((warn_unused_result, nonnull(2)));

/* Format 16 bytes as a lowercase canonical string (NUL-terminated). */
void hv_uuid_format(const uint8_t in[HV_UUID_LEN], char out[HV_UUID_STR])
    __attribute__((nonnull));

/*
 * Copy a valid UUID string to out in lowercase canonical form (so that ids
 * compare equal whatever case a client used). Returns false, writing "",
 * when s is not valid.
 */
bool hv_uuid_normalize(const char *s, char out[HV_UUID_STR])
    __attribute__((warn_unused_result, nonnull(2)));

#endif
