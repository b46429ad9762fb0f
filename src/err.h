/*
 * err: the one result code of hsmvault and the error detail that travels
 * with it.
 *
 * Every fallible function returns an enum hv_rc and, when it fails, fills
 * a caller-provided struct hv_err with a lowercase message. On success the
 * struct hv_err is left untouched. Messages never hold secrets, PINs,
 * request bodies or API keys: callers pass only identifiers and foreign
 * error strings (p11_kit_strerror, PQerrorMessage, Tss2_RC_Decode, ...).
 *
 * Thread-safety: all functions are reentrant; struct hv_err is owned by
 * the caller and is not shared between threads.
 */
#ifndef HV_ERR_H
#define HV_ERR_H

#include <stddef.h>

/* Append only; never renumber or reuse a value. */
enum hv_rc {
	HV_OK = 0,             /* 0 */
	HV_E_INVALID = 1,      /* 1: bad input from the caller (400) */
	HV_E_UNAUTHORIZED = 2, /* 2: missing/malformed/expired/revoked key */
	HV_E_FORBIDDEN = 3,    /* 3: known key without scope or allow-list */
	HV_E_NOT_FOUND = 4,    /* 4 */
	HV_E_CONFLICT = 5,     /* 5: stale version, duplicate name, ... */
	HV_E_REVOKED = 6,      /* 6: credential revoked (409) */
	HV_E_TOO_LARGE = 7,    /* 7: body over the configured limit */
	HV_E_MEDIA_TYPE = 8,   /* 8: not application/json */
	HV_E_KEYSTORE = 9,     /* 9: key store unreachable (503) */
	HV_E_DATABASE = 10,    /* 10: database unreachable (503) */
	HV_E_CRYPTO = 11,      /* 11: authentication tag mismatch etc. */
	HV_E_NOMEM = 12,       /* 12 */
	HV_E_INTERNAL = 13,    /* 13: broken invariant, our fault (500) */
	HV_E_CONFIG = 14,      /* 14: bad configuration */
	HV_E_PIN = 15,         /* 15: wrong PIN / locked: never retried */
	HV_E_IO = 16,          /* 16: file or socket error */
	HV_E_UNSUPPORTED = 17, /* 17: not implemented by this backend */
	HV_E_UPSTREAM = 18,    /* 18: provider call failed (502) */
	HV_E_NOT_IMPLEMENTED = 19, /* 19: endpoint exists, feature pending */
	HV_E_EXPIRED = 20,         /* 20: credential expired (409) */
};

#define HV_ERR_MSG_MAX 256

struct hv_err {
	enum hv_rc rc;
	char msg[HV_ERR_MSG_MAX];
};

/*
 * Record rc and a printf-style message in err (which may be NULL) and
 * return rc, so that callers can write `return hv_err_set(err, ...)`.
 * A message that does not fit is truncated with "...".
 */
enum hv_rc hv_err_set(struct hv_err *err, enum hv_rc rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * The completion of work finished on another thread: rc, and err filled
 * when rc is not HV_OK (borrowed for the call).
 */
typedef void (*hv_done_fn)(void *arg, enum hv_rc rc, const struct hv_err *err);

/* Prefix err->msg with "what: " keeping rc; returns err->rc. */
enum hv_rc hv_err_prefix(struct hv_err *err, const char *what);

/* A short lowercase description of rc; never NULL. */
const char *hv_strerror(enum hv_rc rc);

/* The SPEC error code string ("invalid_request", "not_found", ...). */
const char *hv_rc_code(enum hv_rc rc);

/* The HTTP status for rc (200 for HV_OK). */
unsigned int hv_rc_http(enum hv_rc rc);

#endif
