/*
 * hsm: the key store interface. Two backends implement it: PKCS#11
 * (hsm/p11.c, through p11-kit) and TPM 2.0 (hsm/tpm.c, through tss2-esys).
 *
 * Keys held by a key store never leave it:
 *   - KEK versions 1..n (AES-256 for PKCS#11): wrap and unwrap 32-byte DEKs
 *     bound to an AAD. The newest enabled version wraps; every enabled
 *     version unwraps. A disabled version refuses both.
 *   - one HMAC-SHA256 key: API-key hashes and the audit chain.
 *
 * The interface is message-shaped: plain buffers in, plain buffers out, no
 * callbacks and no pointers shared across the boundary, so that custody
 * can later move into a separate, minimally privileged process.
 *
 * Errors: HV_E_KEYSTORE when the store is unreachable (after the backend's
 * own reconnect-and-retry, or at once while its circuit breaker is open);
 * HV_E_PIN for a rejected PIN (never retried); HV_E_CRYPTO when a wrapped
 * DEK fails authentication (tampered, wrong AAD, wrong KEK); HV_E_NOT_FOUND
 * for an unknown KEK version; HV_E_CONFIG for bad configuration.
 *
 * Thread-safety: every function except hv_hsm_open() and hv_hsm_close()
 * may be called from any number of threads at once.
 */
#ifndef HV_HSM_H
#define HV_HSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../src/err.h"
#include "../src/mem.h"

#define HV_DEK_LEN  32
#define HV_HMAC_LEN 32
/* Upper bound of a wrapped DEK from any backend (bytes). */
#define HV_WRAPPED_MAX 256
/* Upper bound of the AAD passed to wrap/unwrap (bytes). */
#define HV_AAD_MAX          256
#define HV_KEK_MAX_VERSIONS 64

struct hv_hsm;

/* Configuration handed to hv_hsm_open(); borrowed, copied by the backend. */
struct hv_hsm_config {
	const char *keystore; /* "pkcs11" or "tpm" */
	/* pkcs11 */
	const char *p11_module;    /* module path; NULL = p11-kit proxy */
	const char *p11_token;     /* PKCS#11 URI: token and optional object=
				     label prefix (default "hsmvault") */
	const char *p11_pin;       /* PIN value (borrowed, caller wipes) */
	unsigned int p11_sessions; /* session pool size; 0 = default */
	/* tpm */
	const char *tpm_tcti; /* e.g. "swtpm:host=127.0.0.1,port=2321" */
	const char *data_dir; /* where the TPM backend keeps key blobs */
	/* circuit breaker: fail fast for this long after reconnect failed */
	unsigned int breaker_ms; /* 0 = default (1000 ms) */
	unsigned int retry_max;  /* reconnect attempts per call; 0 = 3 */
};

enum hv_kek_state {
	HV_KEK_ACTIVE = 0,   /* the newest: wraps and unwraps */
	HV_KEK_RETIRED = 1,  /* older: unwraps only */
	HV_KEK_DISABLED = 2, /* refuses everything */
};

struct hv_kek_info {
	uint32_t version;
	enum hv_kek_state state;
};

struct hv_hsm_status {
	char backend[16]; /* "pkcs11" or "tpm" */
	char token[128];  /* token label / TPM manufacturer */
	char detail[256]; /* model, firmware, slot... */
	bool reachable;
	uint32_t active_kek;      /* 0 when none exists yet */
	unsigned long reconnects; /* since open */
};

/* Backend vtable; see the hv_hsm_* wrappers below for the contract. */
struct hv_hsm_ops {
	const char *name;
	enum hv_rc (*ensure_keys)(
	    struct hv_hsm *, bool create, struct hv_err *);
	enum hv_rc (*wrap)(struct hv_hsm *, uint32_t kek_version,
	    const uint8_t *aad, size_t aad_len, const struct hv_secret *dek,
	    uint8_t *out, size_t *out_len, struct hv_err *);
	enum hv_rc (*unwrap)(struct hv_hsm *, uint32_t kek_version,
	    const uint8_t *aad, size_t aad_len, const uint8_t *in,
	    size_t in_len, struct hv_secret **dek, struct hv_err *);
	enum hv_rc (*hmac)(struct hv_hsm *, const uint8_t *msg, size_t len,
	    uint8_t out[HV_HMAC_LEN], struct hv_err *);
	enum hv_rc (*random)(
	    struct hv_hsm *, uint8_t *buf, size_t len, struct hv_err *);
	enum hv_rc (*kek_list)(struct hv_hsm *, struct hv_kek_info *out,
	    size_t max, size_t *n, struct hv_err *);
	enum hv_rc (*kek_create)(
	    struct hv_hsm *, uint32_t *version, struct hv_err *);
	enum hv_rc (*kek_disable)(
	    struct hv_hsm *, uint32_t version, struct hv_err *);
	enum hv_rc (*probe)(
	    struct hv_hsm *, struct hv_hsm_status *, struct hv_err *);
	void (*close)(struct hv_hsm *);
};

/* Common head of every backend's handle. */
struct hv_hsm {
	const struct hv_hsm_ops *ops;
};

/*
 * Open the key store named by cfg->keystore: load the module or connect to
 * the TPM, log in, find existing keys. Does not create keys: call
 * hv_hsm_ensure_keys(h, true, ...) for that (hsmvault init). On HV_OK *out
 * is a new handle released with hv_hsm_close().
 */
enum hv_rc hv_hsm_open(const struct hv_hsm_config *cfg, struct hv_hsm **out,
    struct hv_err *err) __attribute__((warn_unused_result));

/* Close and free; NULL-safe; sets *h to NULL. */
void hv_hsm_close(struct hv_hsm **h);

/*
 * Make sure KEK version 1 (or any newer) and the HMAC key exist. With
 * create false, their absence is HV_E_NOT_FOUND ("run hsmvault init").
 * With create true, missing keys are generated inside the store.
 */
enum hv_rc hv_hsm_ensure_keys(struct hv_hsm *h, bool create, struct hv_err *err)
    __attribute__((warn_unused_result));

/*
 * Wrap the 32-byte dek with KEK kek_version (0 = the active one), bound to
 * aad. Writes at most HV_WRAPPED_MAX bytes to out and their count to
 * *out_len. *used_version (may be NULL) receives the version that wrapped.
 */
enum hv_rc hv_hsm_wrap(struct hv_hsm *h, uint32_t kek_version,
    const uint8_t *aad, size_t aad_len, const struct hv_secret *dek,
    uint8_t *out, size_t *out_len, uint32_t *used_version, struct hv_err *err)
    __attribute__((warn_unused_result));

/*
 * Unwrap in (as written by wrap with the same kek_version and aad). On
 * HV_OK *dek is a new secret the caller frees with hv_secret_free(); on
 * error *dek is untouched. A wrong aad or any modified byte: HV_E_CRYPTO.
 */
enum hv_rc
hv_hsm_unwrap(struct hv_hsm *h, uint32_t kek_version, const uint8_t *aad,
    size_t aad_len, const uint8_t *in, size_t in_len, struct hv_secret **dek,
    struct hv_err *err) __attribute__((warn_unused_result));

/* HMAC-SHA256 of msg with the store's HMAC key. */
enum hv_rc hv_hsm_hmac(struct hv_hsm *h, const uint8_t *msg, size_t len,
    uint8_t out[HV_HMAC_LEN], struct hv_err *err)
    __attribute__((warn_unused_result));

/* len random bytes from the store's RNG. */
enum hv_rc hv_hsm_random(struct hv_hsm *h, uint8_t *buf, size_t len,
    struct hv_err *err) __attribute__((warn_unused_result));

/* KEK versions, ascending; *n receives how many (at most max). */
enum hv_rc
hv_hsm_kek_list(struct hv_hsm *h, struct hv_kek_info *out, size_t max,
    size_t *n, struct hv_err *err) __attribute__((warn_unused_result));

/* Create KEK version newest+1 inside the store; it becomes active. */
enum hv_rc hv_hsm_kek_create(struct hv_hsm *h, uint32_t *version,
    struct hv_err *err) __attribute__((warn_unused_result));

/*
 * Disable a retired KEK version so that it can neither wrap nor unwrap.
 * The active version cannot be disabled (HV_E_CONFLICT). Callers must first
 * prove that no DEK references it (hsmvault checks the database).
 */
enum hv_rc hv_hsm_kek_disable(struct hv_hsm *h, uint32_t version,
    struct hv_err *err) __attribute__((warn_unused_result));

/* Health probe: a cheap round trip to the store. */
enum hv_rc hv_hsm_probe(struct hv_hsm *h, struct hv_hsm_status *st,
    struct hv_err *err) __attribute__((warn_unused_result));

/* Backend constructors, used by hv_hsm_open(). */
enum hv_rc hv_p11_open(
    const struct hv_hsm_config *cfg, struct hv_hsm **out, struct hv_err *err);
enum hv_rc hv_tpm_open(
    const struct hv_hsm_config *cfg, struct hv_hsm **out, struct hv_err *err);

#endif
