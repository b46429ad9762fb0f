/*
 * digest: SHA-256 on the host, with the digest fetched once per process
 * (OpenSSL 3.0's SHA256() fetches it on every call, and gets slower with a
 * second thread: MEASURED.md). Used for the API-key checksum and as the
 * hash of the verified-key and DEK caches' keys.
 *
 * Thread-safety: thread-safe; the fetched digest is shared read-only.
 */
#ifndef HV_DIGEST_H
#define HV_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HV_SHA256_LEN 32

/* SHA-256 of p[0..n) into out. False only if OpenSSL fails. */
bool hv_sha256(const void *p, size_t n, uint8_t out[HV_SHA256_LEN]);

#endif
