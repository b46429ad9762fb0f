/*
 * p11: the PKCS#11 key store backend, through p11-kit.
 *
 * Keys live on the token named by a PKCS#11 URI (RFC 7512) and never leave
 * it: KEK versions "<prefix>-kek-<n>" (AES-256) wrap DEKs with CKM_AES_GCM
 * through C_Encrypt/C_Decrypt, and "<prefix>-hmac" (generic secret) signs
 * with CKM_SHA256_HMAC. docs/keystore-pkcs11.md explains the choices.
 *
 * Concurrency: one pthread rwlock guards the connection. Operations hold
 * it shared and borrow one session from a pool for the length of one
 * operation (a PKCS#11 session must never serve two threads at once).
 * Reconnect, key table refresh, key creation and disable hold it
 * exclusively, so they may close sessions and destroy session objects.
 *
 * Outages: an operation that fails with an outage code (session gone,
 * device removed, module finalized, ...) reconnects (re-initializing the
 * module when needed), logs in again, finds the keys again and retries
 * with backoff; when that fails cfg->retry_max times the circuit breaker
 * opens and calls fail at once with HV_E_KEYSTORE until cfg->breaker_ms
 * have passed. A rejected PIN is remembered and never tried again.
 *
 * Every C_* call goes through CK() below, which logs the function name and
 * the return value on failure; never a PIN or key bytes.
 */
#include "hsm.h"
#include "p11_test.h"
#include "../src/clock.h"
#include "../src/log.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#define KEK_LEN         32
#define HMAC_KEY_LEN    32
#define GCM_IV_LEN      12
#define GCM_TAG_LEN     16
#define WRAP_FORMAT_GCM 0x01
#define WRAPPED_LEN     (1 + GCM_IV_LEN + HV_DEK_LEN + GCM_TAG_LEN)
#define PREFIX_MAX      48
#define LABEL_MAX       96
#define DEFAULT_PREFIX  "hsmvault"
#define DISABLED_SUFFIX "-disabled"
#define SESSIONS_MAX    256
/* Re-read the key list this often, so that a rotation or disable done by
 * another process (hsmvault kek rotate) reaches a running server. */
#define KEYS_TTL_MS        2000
#define DEFAULT_BREAKER_MS 1000
#define DEFAULT_RETRY_MAX  3
/* Vendor-range sentinels that never come from a module. */
#define RV_NOT_CONNECTED (CKR_VENDOR_DEFINED | 0x48560001UL)
#define RV_KEY_MISS      (CKR_VENDOR_DEFINED | 0x48560002UL)

static const char *const proxy_paths[] = {
#ifdef HV_P11_PROXY_PATH
    HV_P11_PROXY_PATH,
#endif
    "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so",
    "/usr/lib64/p11-kit-proxy.so",
    "/usr/lib/p11-kit-proxy.so",
    "/usr/local/lib/p11-kit-proxy.so",
};

struct p11_kek {
	uint32_t version;
	CK_OBJECT_HANDLE obj;
	bool disabled;
};

struct p11_sess {
	CK_SESSION_HANDLE h;
	bool open;
	/* Session copies (CKA_TOKEN false) by index into p11.keks; 0 = none. */
	CK_OBJECT_HANDLE kek_copy[HV_KEK_MAX_VERSIONS];
	CK_OBJECT_HANDLE hmac_copy;
	struct p11_sess *next_free;
};

struct p11 {
	struct hv_hsm base; /* first: hv_hsm_close() casts */
	CK_FUNCTION_LIST *fn;
	void *dl; /* the proxy's dlopen handle, else NULL */
	char *module_path;
	P11KitUri *uri;
	char uri_text[160]; /* for messages, trimmed */
	char prefix[PREFIX_MAX + 1];
	struct hv_secret *pin; /* NULL: no C_Login */
	unsigned int retry_max;
	unsigned int breaker_ms;
	unsigned int nsess;

	pthread_rwlock_t lock;
	pthread_mutex_t pool_mu;
	pthread_cond_t pool_cv;
	struct p11_sess *sess;      /* nsess of them */
	struct p11_sess *free_list; /* under pool_mu */

	/* Written under the exclusive lock, read under the shared one. */
	bool copies;
	bool inited;  /* module C_Initialize'd by us */
	bool up;      /* sessions open, logged in, keys read */
	uint64_t gen; /* bumped by every reconnect */
	CK_SLOT_ID slot;
	char token_label[33];
	char token_detail[200];
	struct p11_kek keks[HV_KEK_MAX_VERSIONS]; /* ascending */
	size_t nkeks;
	CK_OBJECT_HANDLE hmac_obj; /* 0: none */
	bool unsafe_logged;        /* the last read found unsafe keys */
	_Atomic uint64_t keys_ms;  /* when keks were read; 0 = stale */

	_Atomic uint64_t breaker_until; /* monotonic ms; 0 = closed */
	atomic_bool pin_bad;
	atomic_ulong n_reconnects;
	atomic_ulong n_logins;
	atomic_ulong n_finds;
	atomic_ulong n_copies;
	pthread_mutex_t last_mu;
	char last_err[HV_ERR_MSG_MAX]; /* last outage, for breaker messages */
};

/* What an operation sees: its session (NULL when none was asked for). */
struct p11_op {
	enum hv_rc (*fn)(
	    struct p11 *, struct p11_sess *, void *, CK_RV *, struct hv_err *);
	void *arg;
	bool exclusive; /* needs the exclusive lock */
	bool session;   /* needs a session */
	bool refresh;   /* re-read the keys first (exclusive) */
};

/* ------------------------------------------------------------------ */
/* The one wrapper for C_* calls. */

static const char *
ckr_name(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return "CKR_OK";
	case CKR_HOST_MEMORY:
		return "CKR_HOST_MEMORY";
	case CKR_SLOT_ID_INVALID:
		return "CKR_SLOT_ID_INVALID";
	case CKR_GENERAL_ERROR:
		return "CKR_GENERAL_ERROR";
	case CKR_FUNCTION_FAILED:
		return "CKR_FUNCTION_FAILED";
	case CKR_ARGUMENTS_BAD:
		return "CKR_ARGUMENTS_BAD";
	case CKR_ATTRIBUTE_READ_ONLY:
		return "CKR_ATTRIBUTE_READ_ONLY";
	case CKR_ATTRIBUTE_SENSITIVE:
		return "CKR_ATTRIBUTE_SENSITIVE";
	case CKR_ATTRIBUTE_TYPE_INVALID:
		return "CKR_ATTRIBUTE_TYPE_INVALID";
	case CKR_ATTRIBUTE_VALUE_INVALID:
		return "CKR_ATTRIBUTE_VALUE_INVALID";
	case CKR_ACTION_PROHIBITED:
		return "CKR_ACTION_PROHIBITED";
	case CKR_DATA_INVALID:
		return "CKR_DATA_INVALID";
	case CKR_DATA_LEN_RANGE:
		return "CKR_DATA_LEN_RANGE";
	case CKR_DEVICE_ERROR:
		return "CKR_DEVICE_ERROR";
	case CKR_DEVICE_MEMORY:
		return "CKR_DEVICE_MEMORY";
	case CKR_DEVICE_REMOVED:
		return "CKR_DEVICE_REMOVED";
	case CKR_ENCRYPTED_DATA_INVALID:
		return "CKR_ENCRYPTED_DATA_INVALID";
	case CKR_ENCRYPTED_DATA_LEN_RANGE:
		return "CKR_ENCRYPTED_DATA_LEN_RANGE";
	case CKR_FUNCTION_CANCELED:
		return "CKR_FUNCTION_CANCELED";
	case CKR_FUNCTION_NOT_SUPPORTED:
		return "CKR_FUNCTION_NOT_SUPPORTED";
	case CKR_KEY_HANDLE_INVALID:
		return "CKR_KEY_HANDLE_INVALID";
	case CKR_KEY_SIZE_RANGE:
		return "CKR_KEY_SIZE_RANGE";
	case CKR_KEY_TYPE_INCONSISTENT:
		return "CKR_KEY_TYPE_INCONSISTENT";
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
		return "CKR_KEY_FUNCTION_NOT_PERMITTED";
	case CKR_KEY_UNEXTRACTABLE:
		return "CKR_KEY_UNEXTRACTABLE";
	case CKR_MECHANISM_INVALID:
		return "CKR_MECHANISM_INVALID";
	case CKR_MECHANISM_PARAM_INVALID:
		return "CKR_MECHANISM_PARAM_INVALID";
	case CKR_OBJECT_HANDLE_INVALID:
		return "CKR_OBJECT_HANDLE_INVALID";
	case CKR_OPERATION_ACTIVE:
		return "CKR_OPERATION_ACTIVE";
	case CKR_OPERATION_NOT_INITIALIZED:
		return "CKR_OPERATION_NOT_INITIALIZED";
	case CKR_PIN_INCORRECT:
		return "CKR_PIN_INCORRECT";
	case CKR_PIN_INVALID:
		return "CKR_PIN_INVALID";
	case CKR_PIN_LEN_RANGE:
		return "CKR_PIN_LEN_RANGE";
	case CKR_PIN_EXPIRED:
		return "CKR_PIN_EXPIRED";
	case CKR_PIN_LOCKED:
		return "CKR_PIN_LOCKED";
	case CKR_SESSION_CLOSED:
		return "CKR_SESSION_CLOSED";
	case CKR_SESSION_COUNT:
		return "CKR_SESSION_COUNT";
	case CKR_SESSION_HANDLE_INVALID:
		return "CKR_SESSION_HANDLE_INVALID";
	case CKR_SESSION_READ_ONLY:
		return "CKR_SESSION_READ_ONLY";
	case CKR_TEMPLATE_INCOMPLETE:
		return "CKR_TEMPLATE_INCOMPLETE";
	case CKR_TEMPLATE_INCONSISTENT:
		return "CKR_TEMPLATE_INCONSISTENT";
	case CKR_TOKEN_NOT_PRESENT:
		return "CKR_TOKEN_NOT_PRESENT";
	case CKR_TOKEN_NOT_RECOGNIZED:
		return "CKR_TOKEN_NOT_RECOGNIZED";
	case CKR_TOKEN_WRITE_PROTECTED:
		return "CKR_TOKEN_WRITE_PROTECTED";
	case CKR_USER_ALREADY_LOGGED_IN:
		return "CKR_USER_ALREADY_LOGGED_IN";
	case CKR_USER_NOT_LOGGED_IN:
		return "CKR_USER_NOT_LOGGED_IN";
	case CKR_USER_PIN_NOT_INITIALIZED:
		return "CKR_USER_PIN_NOT_INITIALIZED";
	case CKR_USER_TYPE_INVALID:
		return "CKR_USER_TYPE_INVALID";
	case CKR_BUFFER_TOO_SMALL:
		return "CKR_BUFFER_TOO_SMALL";
	case CKR_RANDOM_NO_RNG:
		return "CKR_RANDOM_NO_RNG";
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return "CKR_CRYPTOKI_NOT_INITIALIZED";
	case CKR_CRYPTOKI_ALREADY_INITIALIZED:
		return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
	default:
		return NULL;
	}
}

/* "CKR_NAME" or "CKR_0x..." into buf. */
static const char *
ckr_str(CK_RV rv, char *buf, size_t cap)
{
	const char *n = ckr_name(rv);

	if (n != NULL)
		return n;
	(void)snprintf(buf, cap, "CKR_0x%08lx", (unsigned long)rv);
	return buf;
}

static CK_RV
ck_log(const char *fname, CK_RV rv)
{
	char b[24];

	if (rv == CKR_OK)
		return rv;
	/* Expected outcomes (a tampered blob, an existing login) are debug:
	 * the caller reports them; warn on everything else. */
	if (rv == CKR_USER_ALREADY_LOGGED_IN || strcmp(fname, "C_Decrypt") == 0)
		hv_log_debug("pkcs11 %s: %s", fname, ckr_str(rv, b, sizeof(b)));
	else
		hv_log_warn("pkcs11 %s: %s (%s)", fname,
		    ckr_str(rv, b, sizeof(b)), p11_kit_strerror(rv));
	return rv;
}

/* For calls whose failure is expected and handled (debug level only). */
static CK_RV
ck_quiet(const char *fname, CK_RV rv)
{
	char b[24];

	if (rv != CKR_OK)
		hv_log_debug("pkcs11 %s: %s", fname, ckr_str(rv, b, sizeof(b)));
	return rv;
}

#define CK(p, name, ...)  ck_log(#name, (p)->fn->name(__VA_ARGS__))
#define CKQ(p, name, ...) ck_quiet(#name, (p)->fn->name(__VA_ARGS__))

/* Codes after which the connection is presumed lost. */
static bool
rv_outage(CK_RV rv)
{
	switch (rv) {
	case CKR_SESSION_HANDLE_INVALID:
	case CKR_SESSION_CLOSED:
	case CKR_DEVICE_REMOVED:
	case CKR_DEVICE_ERROR:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_KEY_HANDLE_INVALID:
	case CKR_GENERAL_ERROR:
	case CKR_DEVICE_MEMORY:
	case CKR_SLOT_ID_INVALID:
	case RV_NOT_CONNECTED:
		return true;
	default:
		return false;
	}
}

static bool
rv_pin(CK_RV rv)
{
	return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED ||
	    rv == CKR_PIN_EXPIRED || rv == CKR_PIN_INVALID ||
	    rv == CKR_PIN_LEN_RANGE;
}

/* Map a failed C_* call to our error, with "C_Name: CKR_..." text. */
static enum hv_rc
ck_err(struct hv_err *err, const char *fname, CK_RV rv)
{
	char b[24];
	enum hv_rc rc = HV_E_UPSTREAM;

	if (rv_outage(rv))
		rc = HV_E_KEYSTORE;
	else if (rv_pin(rv))
		rc = HV_E_PIN;
	else if (rv == CKR_HOST_MEMORY)
		rc = HV_E_NOMEM;
	return hv_err_set(err, rc, "%s: %s", fname, ckr_str(rv, b, sizeof(b)));
}

/* Copy a blank-padded PKCS#11 string into a NUL-terminated buffer. */
static void
space_copy(char *dst, size_t cap, const unsigned char *src, size_t len)
{
	size_t n = p11_kit_space_strlen(src, len);

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ------------------------------------------------------------------ */
/* Session pool. */

static struct p11_sess *
pool_get(struct p11 *p)
{
	struct p11_sess *s;

	pthread_mutex_lock(&p->pool_mu);
	while (p->free_list == NULL)
		pthread_cond_wait(&p->pool_cv, &p->pool_mu);
	s = p->free_list;
	p->free_list = s->next_free;
	pthread_mutex_unlock(&p->pool_mu);
	return s;
}

static void
pool_put(struct p11 *p, struct p11_sess *s)
{
	pthread_mutex_lock(&p->pool_mu);
	s->next_free = p->free_list;
	p->free_list = s;
	pthread_cond_signal(&p->pool_cv);
	pthread_mutex_unlock(&p->pool_mu);
}

/* Exclusive lock: destroy every session copy (keys changed or disabled). */
static void
drop_copies_locked(struct p11 *p)
{
	unsigned int i;
	size_t k;

	for (i = 0; i < p->nsess; i++) {
		struct p11_sess *s = &p->sess[i];

		for (k = 0; k < HV_KEK_MAX_VERSIONS; k++) {
			if (s->kek_copy[k] != 0 && s->open)
				(void)CK(
				    p, C_DestroyObject, s->h, s->kek_copy[k]);
			s->kek_copy[k] = 0;
		}
		if (s->hmac_copy != 0 && s->open)
			(void)CK(p, C_DestroyObject, s->h, s->hmac_copy);
		s->hmac_copy = 0;
	}
}

/*
 * Exclusive lock: close every session (their copies go with them). A
 * managed module gets one C_CloseAllSessions: p11-kit then closes only the
 * sessions this handle opened, never those of another user of the same
 * module. The proxy is shared by the whole process: one by one there.
 */
static void
disconnect_locked(struct p11 *p)
{
	unsigned int i;
	bool any = false;

	for (i = 0; i < p->nsess; i++) {
		struct p11_sess *s = &p->sess[i];

		any = any || s->open;
		if (s->open && p->inited && p->dl != NULL)
			(void)CK(p, C_CloseSession, s->h);
		s->open = false;
		s->h = 0;
		memset(s->kek_copy, 0, sizeof(s->kek_copy));
		s->hmac_copy = 0;
	}
	if (any && p->inited && p->dl == NULL)
		(void)CK(p, C_CloseAllSessions, p->slot);
	p->up = false;
}

/* ------------------------------------------------------------------ */
/* Key table. */

/* Parse "<prefix>-kek-<n>[-disabled]" or "<prefix>-hmac". */
static int
parse_label(
    const struct p11 *p, const char *label, uint32_t *version, bool *disabled)
{
	size_t pl = strlen(p->prefix);
	const char *s;
	uint64_t v = 0;

	if (strncmp(label, p->prefix, pl) != 0 || label[pl] != '-')
		return -1;
	s = label + pl + 1;
	if (strcmp(s, "hmac") == 0)
		return 1;
	if (strncmp(s, "kek-", 4) != 0)
		return -1;
	s += 4;
	if (*s < '1' || *s > '9')
		return -1;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -1;
		s++;
	}
	*disabled = false;
	if (strcmp(s, DISABLED_SUFFIX) == 0)
		*disabled = true;
	else if (*s != '\0')
		return -1;
	*version = (uint32_t)v;
	return 0;
}

static int
kek_cmp(const void *a, const void *b)
{
	const struct p11_kek *x = a, *y = b;

	return (x->version > y->version) - (x->version < y->version);
}

static void
kek_label(
    const struct p11 *p, uint32_t version, bool disabled, char *buf, size_t cap)
{
	(void)snprintf(buf, cap, "%s-kek-%u%s", p->prefix, version,
	    disabled ? DISABLED_SUFFIX : "");
}

/*
 * Exclusive lock: read the key list from the token with session s. One
 * C_FindObjects pass over the token's secret keys; labels are parsed here
 * so that disabled versions (relabelled) are found too.
 */
static enum hv_rc
load_keys_locked(
    struct p11 *p, CK_SESSION_HANDLE s, CK_RV *rvp, struct hv_err *err)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_BBOOL tru = CK_TRUE;
	CK_ATTRIBUTE tmpl[] = {
	    {CKA_CLASS, &cls, sizeof(cls)},
	    {CKA_TOKEN, &tru, sizeof(tru)},
	};
	CK_OBJECT_HANDLE objs[256];
	CK_ULONG nobj = 0, got;
	struct p11_kek keks[HV_KEK_MAX_VERSIONS];
	size_t nk = 0, i;
	CK_OBJECT_HANDLE hmac = 0;
	const char *fname = "C_FindObjectsInit";
	CK_RV rv;
	bool changed, unsafe = false;

	atomic_fetch_add(&p->n_finds, 1);
	rv = CK(p, C_FindObjectsInit, s, tmpl, 2);
	if (rv != CKR_OK)
		goto fail_rv;
	fname = "C_FindObjects";
	for (;;) {
		rv = CK(p, C_FindObjects, s, objs + nobj,
		    (CK_ULONG)(sizeof(objs) / sizeof(objs[0])) - nobj, &got);
		if (rv != CKR_OK) {
			(void)CK(p, C_FindObjectsFinal, s);
			goto fail_rv;
		}
		nobj += got;
		if (got == 0 || nobj == sizeof(objs) / sizeof(objs[0]))
			break;
	}
	fname = "C_FindObjectsFinal";
	rv = CK(p, C_FindObjectsFinal, s);
	if (rv != CKR_OK)
		goto fail_rv;
	fname = "C_GetAttributeValue";

	for (i = 0; i < nobj; i++) {
		char label[LABEL_MAX + 1];
		CK_BBOOL dec = CK_TRUE, sens = CK_TRUE, extr = CK_FALSE;
		CK_ATTRIBUTE a[] = {
		    {CKA_LABEL, label, LABEL_MAX},
		    {CKA_DECRYPT, &dec, sizeof(dec)},
		    {CKA_SENSITIVE, &sens, sizeof(sens)},
		    {CKA_EXTRACTABLE, &extr, sizeof(extr)},
		};
		uint32_t v = 0;
		bool dis = false;
		int kind;

		rv = CKQ(p, C_GetAttributeValue, s, objs[i], a, 4);
		/* An over-long label or a key without CKA_DECRYPT is simply
		 * not one of ours; lost connections still count. */
		if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID &&
		    rv != CKR_BUFFER_TOO_SMALL &&
		    rv != CKR_ATTRIBUTE_SENSITIVE) {
			(void)ck_log("C_GetAttributeValue", rv);
			goto fail_rv;
		}
		if (a[0].ulValueLen == CK_UNAVAILABLE_INFORMATION ||
		    a[0].ulValueLen > LABEL_MAX)
			continue;
		label[a[0].ulValueLen] = '\0';
		kind = parse_label(p, label, &v, &dis);
		/*
		 * A key under one of our labels that could leave the token
		 * (imported, or made by another tool) is not used: keys must
		 * be sensitive and never extractable (docs/keystore-pkcs11.md).
		 * An attribute the token does not report is not held against
		 * the key.
		 */
		if ((kind == 0 || kind == 1) &&
		    ((a[2].ulValueLen == sizeof(sens) && sens == CK_FALSE) ||
		        (a[3].ulValueLen == sizeof(extr) && extr == CK_TRUE))) {
			/* once, not at every re-read of the key list */
			if (!p->unsafe_logged)
				hv_log_error("pkcs11: '%s' is %s: not used "
				             "(keys must be sensitive and not "
				             "extractable)",
				    label,
				    extr == CK_TRUE ? "extractable"
				                    : "not sensitive");
			unsafe = true;
			continue;
		}
		if (kind == 1) {
			if (hmac != 0)
				hv_log_warn("pkcs11: two objects labelled "
				            "'%s'; using the first",
				    label);
			else
				hmac = objs[i];
			continue;
		}
		if (kind != 0)
			continue;
		if (a[1].ulValueLen == sizeof(dec) && dec == CK_FALSE)
			dis = true;
		if (nk == HV_KEK_MAX_VERSIONS) {
			hv_log_warn("pkcs11: more than %d kek versions; "
			            "ignoring '%s'",
			    HV_KEK_MAX_VERSIONS, label);
			continue;
		}
		keks[nk].version = v;
		keks[nk].obj = objs[i];
		keks[nk].disabled = dis;
		nk++;
	}
	qsort(keks, nk, sizeof(keks[0]), kek_cmp);
	for (i = 1; i < nk; i++) {
		if (keks[i].version == keks[i - 1].version) {
			hv_log_warn("pkcs11: duplicate kek version %u; using "
			            "one of them",
			    keks[i].version);
			memmove(&keks[i], &keks[i + 1],
			    (nk - i - 1) * sizeof(keks[0]));
			nk--;
			i--;
		}
	}
	changed = nk != p->nkeks || hmac != p->hmac_obj;
	for (i = 0; i < nk && !changed; i++)
		changed = keks[i].version != p->keks[i].version ||
		    keks[i].obj != p->keks[i].obj ||
		    keks[i].disabled != p->keks[i].disabled;
	if (changed)
		drop_copies_locked(p);
	memset(p->keks, 0, sizeof(p->keks));
	memcpy(p->keks, keks, nk * sizeof(keks[0]));
	p->nkeks = nk;
	p->hmac_obj = hmac;
	p->unsafe_logged = unsafe;
	atomic_store(&p->keys_ms, hv_mono_ms());
	return HV_OK;
fail_rv:
	*rvp = rv;
	return ck_err(err, fname, rv);
}

/* Index of version in keks, or -1. Shared lock. */
static long
kek_find(const struct p11 *p, uint32_t version)
{
	size_t i;

	for (i = 0; i < p->nkeks; i++)
		if (p->keks[i].version == version)
			return (long)i;
	return -1;
}

/* The active (newest enabled) version, 0 when none. Shared lock. */
static uint32_t
kek_active(const struct p11 *p)
{
	size_t i = p->nkeks;

	while (i-- > 0)
		if (!p->keks[i].disabled)
			return p->keks[i].version;
	return 0;
}

/*
 * The handle to use for KEK index k (or the HMAC key when k < 0) on
 * session s: its session copy when copies are on (made on first use),
 * else the token object. Shared lock, s held by this thread.
 */
static CK_RV
key_handle(struct p11 *p, struct p11_sess *s, long k, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_HANDLE src = k < 0 ? p->hmac_obj : p->keks[k].obj;
	CK_OBJECT_HANDLE *slot = k < 0 ? &s->hmac_copy : &s->kek_copy[k];
	CK_BBOOL fls = CK_FALSE;
	CK_ATTRIBUTE t[] = {{CKA_TOKEN, &fls, sizeof(fls)}};
	CK_RV rv;

	if (!p->copies) {
		*out = src;
		return CKR_OK;
	}
	if (*slot == 0) {
		atomic_fetch_add(&p->n_copies, 1);
		rv = CK(p, C_CopyObject, s->h, src, t, 1, slot);
		if (rv != CKR_OK) {
			*slot = 0;
			if (rv_outage(rv))
				return rv;
			/* A token that refuses copies still works, slower. */
			*out = src;
			return CKR_OK;
		}
	}
	*out = *slot;
	return CKR_OK;
}

/* ------------------------------------------------------------------ */
/* Connecting. */

static void
set_last(struct p11 *p, const struct hv_err *e)
{
	pthread_mutex_lock(&p->last_mu);
	(void)snprintf(p->last_err, sizeof(p->last_err), "%s", e->msg);
	pthread_mutex_unlock(&p->last_mu);
}

static enum hv_rc
module_init_locked(struct p11 *p, CK_RV *rvp, struct hv_err *err)
{
	CK_RV rv;

	if (p->inited)
		return HV_OK;
	if (p->dl == NULL) {
		/* The module is loaded managed: p11-kit calls the real
		 * C_Initialize with CKF_OS_LOCKING_OK, so SoftHSM locks. */
		rv = ck_log("p11_kit_module_initialize",
		    p11_kit_module_initialize(p->fn));
	} else {
		/* The proxy: we are its application and must ask for OS
		 * locking ourselves (C_Initialize(NULL) means no locks). */
		CK_C_INITIALIZE_ARGS args;

		memset(&args, 0, sizeof(args));
		args.flags = CKF_OS_LOCKING_OK;
		rv = CK(p, C_Initialize, &args);
	}
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		*rvp = rv;
		return ck_err(err, "C_Initialize", rv);
	}
	p->inited = true;
	return HV_OK;
}

static void
module_fini_locked(struct p11 *p)
{
	if (!p->inited)
		return;
	if (p->dl == NULL)
		(void)ck_log(
		    "p11_kit_module_finalize", p11_kit_module_finalize(p->fn));
	else
		(void)CK(p, C_Finalize, NULL);
	p->inited = false;
}

/* Find the slot whose token matches the URI. */
static enum hv_rc
find_slot_locked(
    struct p11 *p, CK_TOKEN_INFO *ti, CK_RV *rvp, struct hv_err *err)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i;
	CK_SLOT_ID want = p11_kit_uri_get_slot_id(p->uri);
	CK_INFO info;
	enum hv_rc rc;
	CK_RV rv;

	rv = CK(p, C_GetInfo, &info);
	if (rv != CKR_OK)
		goto fail_rv;
	if (!p11_kit_uri_match_module_info(p->uri, &info)) {
		*rvp = CKR_TOKEN_NOT_PRESENT;
		return hv_err_set(
		    err, HV_E_KEYSTORE, "no module matches '%s'", p->uri_text);
	}
	rv = CK(p, C_GetSlotList, CK_TRUE, NULL, &n);
	if (rv != CKR_OK)
		goto fail_rv;
	slots = hv_calloc(n + 1, sizeof(*slots));
	if (slots == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	rv = CK(p, C_GetSlotList, CK_TRUE, slots, &n);
	if (rv != CKR_OK)
		goto fail_rv;
	for (i = 0; i < n; i++) {
		CK_SLOT_INFO si;

		if (want != (CK_SLOT_ID)-1 && slots[i] != want)
			continue;
		if (CK(p, C_GetSlotInfo, slots[i], &si) != CKR_OK ||
		    !p11_kit_uri_match_slot_info(p->uri, &si))
			continue;
		if (CK(p, C_GetTokenInfo, slots[i], ti) != CKR_OK ||
		    !p11_kit_uri_match_token_info(p->uri, ti))
			continue;
		p->slot = slots[i];
		hv_free(slots);
		return HV_OK;
	}
	hv_free(slots);
	*rvp = CKR_TOKEN_NOT_PRESENT;
	return hv_err_set(
	    err, HV_E_KEYSTORE, "no token matches '%s'", p->uri_text);
fail_rv:
	hv_free(slots);
	*rvp = rv;
	rc = ck_err(err, "C_GetSlotList", rv);
	return rc;
}

static void
pin_flags_warn(const CK_TOKEN_INFO *ti)
{
	if (ti->flags & CKF_USER_PIN_FINAL_TRY)
		hv_log_warn("pkcs11: user pin final try: one more wrong pin "
		            "locks the token");
	else if (ti->flags & CKF_USER_PIN_COUNT_LOW)
		hv_log_warn("pkcs11: user pin count low: a wrong pin was "
		            "entered since the last successful login");
}

/*
 * Exclusive lock, module initialized: find the token, open the sessions,
 * log in once, read the keys.
 */
static enum hv_rc
connect_locked(struct p11 *p, CK_RV *rvp, struct hv_err *err)
{
	CK_TOKEN_INFO ti;
	unsigned int i;
	enum hv_rc rc;
	CK_RV rv;

	disconnect_locked(p);
	rc = find_slot_locked(p, &ti, rvp, err);
	if (rc != HV_OK)
		return rc;
	if (!(ti.flags & CKF_TOKEN_INITIALIZED))
		return hv_err_set(err, HV_E_CONFIG,
		    "token '%s' is not "
		    "initialized",
		    p->uri_text);
	if (ti.flags & CKF_USER_PIN_LOCKED) {
		atomic_store(&p->pin_bad, true);
		return hv_err_set(err, HV_E_PIN,
		    "user pin is locked on "
		    "token '%s'",
		    p->uri_text);
	}
	pin_flags_warn(&ti);
	space_copy(
	    p->token_label, sizeof(p->token_label), ti.label, sizeof(ti.label));
	{
		char man[33], model[17], serial[17];

		space_copy(man, sizeof(man), ti.manufacturerID,
		    sizeof(ti.manufacturerID));
		space_copy(model, sizeof(model), ti.model, sizeof(ti.model));
		space_copy(serial, sizeof(serial), ti.serialNumber,
		    sizeof(ti.serialNumber));
		(void)snprintf(p->token_detail, sizeof(p->token_detail),
		    "%s %s serial %s firmware %u.%u slot %lu", man, model,
		    serial, ti.firmwareVersion.major, ti.firmwareVersion.minor,
		    (unsigned long)p->slot);
	}
	if ((ti.flags & CKF_LOGIN_REQUIRED) && p->pin == NULL &&
	    !(ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH))
		return hv_err_set(err, HV_E_CONFIG,
		    "token '%s' needs a pin "
		    "(pkcs11_pin_file or HSMVAULT_PKCS11_PIN)",
		    p->uri_text);

	for (i = 0; i < p->nsess; i++) {
		rv = CK(p, C_OpenSession, p->slot,
		    CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
		    &p->sess[i].h);
		if (rv != CKR_OK) {
			*rvp = rv;
			rc = ck_err(err, "C_OpenSession", rv);
			disconnect_locked(p);
			return rc;
		}
		p->sess[i].open = true;
	}
	/* Login state is per application: once, on any session. */
	if (ti.flags & CKF_LOGIN_REQUIRED) {
		atomic_fetch_add(&p->n_logins, 1);
		if (p->pin != NULL)
			rv = CK(p, C_Login, p->sess[0].h, CKU_USER, p->pin->buf,
			    (CK_ULONG)p->pin->len);
		else
			rv = CK(p, C_Login, p->sess[0].h, CKU_USER, NULL, 0);
		if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
			*rvp = rv;
			if (rv_pin(rv)) {
				atomic_store(&p->pin_bad, true);
				rc = hv_err_set(err, HV_E_PIN,
				    "C_Login: %s "
				    "(the pin will not be tried again)",
				    ckr_name(rv));
			} else if (rv == CKR_USER_PIN_NOT_INITIALIZED) {
				rc = hv_err_set(err, HV_E_CONFIG,
				    "C_Login: "
				    "CKR_USER_PIN_NOT_INITIALIZED");
			} else {
				rc = ck_err(err, "C_Login", rv);
			}
			if (rv_pin(rv) &&
			    CK(p, C_GetTokenInfo, p->slot, &ti) == CKR_OK)
				pin_flags_warn(&ti);
			disconnect_locked(p);
			return rc;
		}
	}
	rc = load_keys_locked(p, p->sess[0].h, rvp, err);
	if (rc != HV_OK) {
		disconnect_locked(p);
		return rc;
	}
	p->up = true;
	p->gen++;
	return HV_OK;
}

/*
 * Reconnect after an outage seen at generation gen_seen. Another thread
 * may have done it meanwhile; then there is nothing to do. Re-initializes
 * the module when it was finalized, or when reconnecting without doing so
 * fails (a removed device often needs it).
 */
static enum hv_rc
reconnect(struct p11 *p, uint64_t gen_seen, CK_RV rv_seen, struct hv_err *err)
{
	enum hv_rc rc;
	CK_RV rv = CKR_OK;
	bool reinit;

	pthread_rwlock_wrlock(&p->lock);
	reinit = rv_seen == CKR_CRYPTOKI_NOT_INITIALIZED || !p->inited;
	if (atomic_load(&p->pin_bad)) {
		rc = hv_err_set(err, HV_E_PIN,
		    "pin rejected before; not "
		    "retried until the key store is reopened");
		goto out;
	}
	if (p->up && p->gen != gen_seen) {
		rc = HV_OK;
		goto out;
	}
	if (atomic_load(&p->breaker_until) > hv_mono_ms()) {
		/* Another thread just gave up: do not pile on. */
		rc = hv_err_set(err, HV_E_KEYSTORE, "key store unavailable");
		goto out;
	}
	if (rv_seen == CKR_CRYPTOKI_NOT_INITIALIZED) {
		/* Our sessions died with the module: closing them would be
		 * an error (p11-kit even asserts on it). */
		p->inited = false;
	}
	if (reinit) {
		disconnect_locked(p);
		module_fini_locked(p);
		rc = module_init_locked(p, &rv, err);
		if (rc != HV_OK)
			goto out;
	}
	rc = connect_locked(p, &rv, err);
	if (rc != HV_OK && rc != HV_E_PIN && rc != HV_E_CONFIG && !reinit) {
		module_fini_locked(p);
		rc = module_init_locked(p, &rv, err);
		if (rc == HV_OK)
			rc = connect_locked(p, &rv, err);
	}
	if (rc == HV_OK) {
		atomic_fetch_add(&p->n_reconnects, 1);
		hv_log_info(
		    "pkcs11: reconnected to token '%s'", p->token_label);
	}
out:
	pthread_rwlock_unlock(&p->lock);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The runner: locking, pool, retries, breaker. */

/* One attempt. *rv receives the PKCS#11 code of a failure, if any. */
static enum hv_rc
try_once(struct p11 *p, const struct p11_op *op, bool excl, bool refresh,
    uint64_t *gen, CK_RV *rv, struct hv_err *err)
{
	struct p11_sess *s = NULL;
	enum hv_rc rc;

	if (excl)
		pthread_rwlock_wrlock(&p->lock);
	else
		pthread_rwlock_rdlock(&p->lock);
	*gen = p->gen;
	if (!p->up) {
		*rv = RV_NOT_CONNECTED;
		rc = hv_err_set(err, HV_E_KEYSTORE,
		    "key store not "
		    "connected");
		goto out;
	}
	if (excl) {
		s = &p->sess[0];
		if (refresh) {
			rc = load_keys_locked(p, s->h, rv, err);
			if (rc != HV_OK)
				goto out;
		}
	} else if (op->session) {
		s = pool_get(p);
	}
	rc = op->fn(p, s, op->arg, rv, err);
	if (s != NULL && !excl)
		pool_put(p, s);
out:
	pthread_rwlock_unlock(&p->lock);
	return rc;
}

static bool
keys_stale(struct p11 *p)
{
	uint64_t t = atomic_load(&p->keys_ms);

	return t == 0 || hv_mono_ms() - t > KEYS_TTL_MS;
}

/* The token answered: close the breaker if it was open. */
static void
breaker_close(struct p11 *p, uint64_t until)
{
	if (until != 0 &&
	    atomic_compare_exchange_strong(&p->breaker_until, &until, 0))
		hv_log_info("pkcs11: key store reachable again");
}

/*
 * Run op with the retry policy: an outage code leads to a reconnect after
 * 10, 50, 200 ms (p->retry_max reconnects); when the last one fails the
 * breaker opens for p->breaker_ms and calls fail at once. After that
 * window one call tries one reconnect without backoff (half open).
 */
static enum hv_rc
run(struct p11 *p, const struct p11_op *op, struct hv_err *err)
{
	static const unsigned int backoff[] = {10, 50, 200, 500};
	uint64_t until = atomic_load(&p->breaker_until), gen = 0;
	unsigned int reconnects = 0, max = p->retry_max;
	bool half_open = false, missed = false;
	struct hv_err e, last;
	enum hv_rc rc;
	CK_RV rv;

	if (atomic_load(&p->pin_bad))
		return hv_err_set(err, HV_E_PIN,
		    "pin rejected before; not "
		    "retried until the key store is reopened");
	if (until != 0) {
		uint64_t now = hv_mono_ms();

		if (now < until) {
			pthread_mutex_lock(&p->last_mu);
			rc = hv_err_set(err, HV_E_KEYSTORE,
			    "key store "
			    "unavailable (%s); next try in %lu ms",
			    p->last_err, (unsigned long)(until - now));
			pthread_mutex_unlock(&p->last_mu);
			return rc;
		}
		half_open = true;
		max = 1;
	}
	memset(&last, 0, sizeof(last));
	for (;;) {
		bool refresh = op->refresh || keys_stale(p);
		bool excl = op->exclusive || refresh;

		memset(&e, 0, sizeof(e));
		rv = CKR_OK;
		rc = try_once(p, op, excl, refresh, &gen, &rv, &e);
		if (rc == HV_OK)
			break;
		if (rv == RV_KEY_MISS && !missed) {
			/* An unknown version: maybe another process made
			 * it. Read the keys again, once. */
			missed = true;
			atomic_store(&p->keys_ms, 0);
			continue;
		}
		if (rc == HV_E_PIN || !rv_outage(rv)) {
			if (rc != HV_E_PIN)
				breaker_close(p, until);
			goto fail;
		}
		/* "not connected" says less than the reconnect's reason. */
		if (rv != RV_NOT_CONNECTED || last.msg[0] == '\0')
			last = e;
		if (reconnects >= max)
			goto trip;
		if (!half_open) {
			unsigned int i = reconnects;

			if (i >= sizeof(backoff) / sizeof(backoff[0]))
				i = sizeof(backoff) / sizeof(backoff[0]) - 1;
			hv_sleep_ms(backoff[i]);
		}
		reconnects++;
		memset(&e, 0, sizeof(e));
		rc = reconnect(p, gen, rv, &e);
		if (rc == HV_E_PIN || rc == HV_E_CONFIG)
			goto fail;
		if (rc != HV_OK)
			last = e;
		/* Whether it worked or not, the next attempt tells. */
	}
	breaker_close(p, until);
	return HV_OK;
fail:
	return hv_err_set(err, rc, "%s", e.msg);
trip:
	set_last(p, &last);
	atomic_store(&p->breaker_until, hv_mono_ms() + p->breaker_ms);
	hv_log_warn("pkcs11: key store unreachable (%s); failing fast for "
	            "%u ms",
	    last.msg, p->breaker_ms);
	return hv_err_set(
	    err, HV_E_KEYSTORE, "key store unreachable: %s", last.msg);
}

/* ------------------------------------------------------------------ */
/* Operations. */

struct wrap_arg {
	uint32_t version;
	const uint8_t *aad;
	size_t aad_len;
	const struct hv_secret *dek;
	const uint8_t *in;
	size_t in_len;
	uint8_t *out;
	size_t *out_len;
	struct hv_secret *dek_out;
};

/* Index of an enabled KEK version, or an error. Shared lock. */
static enum hv_rc
usable_kek(
    struct p11 *p, uint32_t version, long *k, CK_RV *rv, struct hv_err *err)
{
	*k = kek_find(p, version);
	if (*k < 0) {
		*rv = RV_KEY_MISS;
		return hv_err_set(err, HV_E_NOT_FOUND,
		    "kek version %u not "
		    "found on token",
		    version);
	}
	if (p->keks[*k].disabled)
		return hv_err_set(err, HV_E_NOT_FOUND,
		    "kek version %u is "
		    "disabled",
		    version);
	return HV_OK;
}

static enum hv_rc
op_wrap(struct p11 *p, struct p11_sess *s, void *varg, CK_RV *rvp,
    struct hv_err *err)
{
	struct wrap_arg *a = varg;
	uint8_t *iv = a->out + 1, *ct = a->out + 1 + GCM_IV_LEN;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM mech = {CKM_AES_GCM, &gcm, sizeof(gcm)};
	CK_OBJECT_HANDLE key;
	CK_ULONG n = HV_DEK_LEN + GCM_TAG_LEN;
	enum hv_rc rc;
	long k;
	CK_RV rv;

	rc = usable_kek(p, a->version, &k, rvp, err);
	if (rc != HV_OK)
		return rc;
	rv = key_handle(p, s, k, &key);
	if (rv != CKR_OK)
		goto fail;
	/* A fresh IV from the token for every wrap: 2^32 wraps per KEK stay
	 * far below the GCM random-IV bound, and kek rotate resets it. */
	rv = CK(p, C_GenerateRandom, s->h, iv, GCM_IV_LEN);
	if (rv != CKR_OK)
		goto fail_name_rand;
	gcm.pIv = iv;
	gcm.ulIvLen = GCM_IV_LEN;
	gcm.ulIvBits = GCM_IV_LEN * 8;
	gcm.pAAD = (CK_BYTE_PTR)a->aad;
	gcm.ulAADLen = a->aad_len;
	gcm.ulTagBits = GCM_TAG_LEN * 8;
	rv = CK(p, C_EncryptInit, s->h, &mech, key);
	if (rv != CKR_OK)
		return (*rvp = rv, ck_err(err, "C_EncryptInit", rv));
	rv = CK(p, C_Encrypt, s->h, a->dek->buf, HV_DEK_LEN, ct, &n);
	if (rv != CKR_OK)
		return (*rvp = rv, ck_err(err, "C_Encrypt", rv));
	if (n != HV_DEK_LEN + GCM_TAG_LEN)
		return hv_err_set(err, HV_E_UPSTREAM,
		    "C_Encrypt: unexpected "
		    "length %lu",
		    (unsigned long)n);
	a->out[0] = WRAP_FORMAT_GCM;
	*a->out_len = WRAPPED_LEN;
	return HV_OK;
fail_name_rand:
	*rvp = rv;
	return ck_err(err, "C_GenerateRandom", rv);
fail:
	*rvp = rv;
	return ck_err(err, "C_CopyObject", rv);
}

static enum hv_rc
op_unwrap(struct p11 *p, struct p11_sess *s, void *varg, CK_RV *rvp,
    struct hv_err *err)
{
	struct wrap_arg *a = varg;
	CK_GCM_PARAMS gcm;
	CK_MECHANISM mech = {CKM_AES_GCM, &gcm, sizeof(gcm)};
	CK_OBJECT_HANDLE key;
	CK_SESSION_INFO si;
	CK_ULONG n;
	enum hv_rc rc;
	long k;
	CK_RV rv;

	rc = usable_kek(p, a->version, &k, rvp, err);
	if (rc != HV_OK)
		return rc;
	rv = key_handle(p, s, k, &key);
	if (rv != CKR_OK) {
		*rvp = rv;
		return ck_err(err, "C_CopyObject", rv);
	}
	gcm.pIv = (CK_BYTE_PTR)a->in + 1;
	gcm.ulIvLen = GCM_IV_LEN;
	gcm.ulIvBits = GCM_IV_LEN * 8;
	gcm.pAAD = (CK_BYTE_PTR)a->aad;
	gcm.ulAADLen = a->aad_len;
	gcm.ulTagBits = GCM_TAG_LEN * 8;
	rv = CK(p, C_DecryptInit, s->h, &mech, key);
	if (rv != CKR_OK) {
		*rvp = rv;
		return ck_err(err, "C_DecryptInit", rv);
	}
	n = (CK_ULONG)a->dek_out->cap;
	rv = CK(p, C_Decrypt, s->h, (CK_BYTE_PTR)a->in + 1 + GCM_IV_LEN,
	    HV_DEK_LEN + GCM_TAG_LEN, a->dek_out->buf, &n);
	if (rv == CKR_OK && n == HV_DEK_LEN)
		return HV_OK;
	hv_mem_zero(a->dek_out->buf, a->dek_out->cap);
	if (rv == CKR_OK)
		return hv_err_set(err, HV_E_CRYPTO,
		    "C_Decrypt: unexpected "
		    "length %lu",
		    (unsigned long)n);
	/* SoftHSM reports a GCM tag mismatch as CKR_GENERAL_ERROR: tell it
	 * from a lost token by asking the session whether it is alive. */
	if (rv == CKR_GENERAL_ERROR) {
		CK_RV r2 = CK(p, C_GetSessionInfo, s->h, &si);

		if (r2 != CKR_OK) {
			*rvp = r2;
			return ck_err(err, "C_Decrypt", r2);
		}
	} else if (rv_outage(rv)) {
		*rvp = rv;
		return ck_err(err, "C_Decrypt", rv);
	}
	{
		char b[24];

		return hv_err_set(err, HV_E_CRYPTO,
		    "C_Decrypt: %s "
		    "(wrapped key does not authenticate)",
		    ckr_str(rv, b, sizeof(b)));
	}
}

struct hmac_arg {
	const uint8_t *msg;
	size_t len;
	uint8_t *out;
};

static enum hv_rc
op_hmac(struct p11 *p, struct p11_sess *s, void *varg, CK_RV *rvp,
    struct hv_err *err)
{
	struct hmac_arg *a = varg;
	CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
	CK_OBJECT_HANDLE key;
	CK_ULONG n = HV_HMAC_LEN;
	const char *fname = "C_CopyObject";
	CK_RV rv;

	if (p->hmac_obj == 0) {
		*rvp = RV_KEY_MISS;
		return hv_err_set(err, HV_E_NOT_FOUND,
		    "hmac key '%s-hmac' "
		    "not found on token (run hsmvault init)",
		    p->prefix);
	}
	rv = key_handle(p, s, -1, &key);
	if (rv != CKR_OK)
		goto fail;
	fname = "C_SignInit";
	rv = CK(p, C_SignInit, s->h, &mech, key);
	if (rv != CKR_OK)
		goto fail;
	fname = "C_Sign";
	/* SoftHSM refuses a NULL pointer even with length 0 */
	rv = CK(p, C_Sign, s->h,
	    a->len > 0 ? (CK_BYTE_PTR)a->msg : (CK_BYTE_PTR)(uintptr_t) "",
	    a->len, a->out, &n);
	if (rv != CKR_OK)
		goto fail;
	if (n != HV_HMAC_LEN)
		return hv_err_set(err, HV_E_UPSTREAM,
		    "C_Sign: unexpected "
		    "length %lu",
		    (unsigned long)n);
	return HV_OK;
fail:
	*rvp = rv;
	return ck_err(err, fname, rv);
}

struct random_arg {
	uint8_t *buf;
	size_t len;
};

static enum hv_rc
op_random(struct p11 *p, struct p11_sess *s, void *varg, CK_RV *rvp,
    struct hv_err *err)
{
	struct random_arg *a = varg;
	CK_RV rv;

	rv = CK(p, C_GenerateRandom, s->h, a->buf, a->len);
	if (rv != CKR_OK) {
		*rvp = rv;
		return ck_err(err, "C_GenerateRandom", rv);
	}
	return HV_OK;
}

struct list_arg {
	struct hv_kek_info *out;
	size_t max;
	size_t *n;
};

static enum hv_rc
op_list(struct p11 *p, struct p11_sess *s, void *varg, CK_RV *rvp,
    struct hv_err *err)
{
	struct list_arg *a = varg;
	uint32_t active = kek_active(p);
	size_t i, n = 0;

	(void)s;
	(void)rvp;
	(void)err;
	for (i = 0; i < p->nkeks && n < a->max; i++) {
		a->out[n].version = p->keks[i].version;
		a->out[n].state = p->keks[i].disabled ? HV_KEK_DISABLED
		    : p->keks[i].version == active    ? HV_KEK_ACTIVE
		                                      : HV_KEK_RETIRED;
		n++;
	}
	*a->n = n;
	return HV_OK;
}

/* Exclusive lock: generate a KEK or the HMAC key on the token. */
static enum hv_rc
gen_key_locked(struct p11 *p, CK_SESSION_HANDLE s, bool hmac, uint32_t version,
    CK_OBJECT_HANDLE *obj, CK_RV *rvp, struct hv_err *err)
{
	char label[LABEL_MAX + 1];
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = hmac ? CKK_GENERIC_SECRET : CKK_AES;
	CK_ULONG vlen = hmac ? HMAC_KEY_LEN : KEK_LEN;
	CK_BBOOL tru = CK_TRUE, fls = CK_FALSE;
	CK_BBOOL *cipher = hmac ? &fls : &tru, *sign = hmac ? &tru : &fls;
	CK_MECHANISM mech = {
	    hmac ? CKM_GENERIC_SECRET_KEY_GEN : CKM_AES_KEY_GEN, NULL, 0};
	CK_RV rv;

	if (hmac)
		(void)snprintf(label, sizeof(label), "%s-hmac", p->prefix);
	else
		kek_label(p, version, false, label, sizeof(label));
	{
		CK_ATTRIBUTE t[] = {
		    {CKA_CLASS, &cls, sizeof(cls)},
		    {CKA_KEY_TYPE, &kt, sizeof(kt)},
		    {CKA_VALUE_LEN, &vlen, sizeof(vlen)},
		    {CKA_LABEL, label, strlen(label)},
		    {CKA_ID, label, strlen(label)},
		    {CKA_TOKEN, &tru, sizeof(tru)},
		    {CKA_PRIVATE, &tru, sizeof(tru)},
		    {CKA_SENSITIVE, &tru, sizeof(tru)},
		    {CKA_EXTRACTABLE, &fls, sizeof(fls)},
		    {CKA_MODIFIABLE, &tru, sizeof(tru)},
		    {CKA_ENCRYPT, cipher, sizeof(tru)},
		    {CKA_DECRYPT, cipher, sizeof(tru)},
		    {CKA_SIGN, sign, sizeof(tru)},
		    {CKA_VERIFY, sign, sizeof(tru)},
		    {CKA_WRAP, &fls, sizeof(fls)},
		    {CKA_UNWRAP, &fls, sizeof(fls)},
		    {CKA_DERIVE, &fls, sizeof(fls)},
		};

		rv = CK(p, C_GenerateKey, s, &mech, t,
		    (CK_ULONG)(sizeof(t) / sizeof(t[0])), obj);
	}
	if (rv != CKR_OK) {
		*rvp = rv;
		return ck_err(err, "C_GenerateKey", rv);
	}
	hv_log_info(
	    "pkcs11: generated '%s' on token '%s'", label, p->token_label);
	return HV_OK;
}

/* Exclusive lock: append a new KEK version. */
static enum hv_rc
add_kek_locked(struct p11 *p, CK_SESSION_HANDLE s, uint32_t *version,
    CK_RV *rvp, struct hv_err *err)
{
	uint32_t v = p->nkeks ? p->keks[p->nkeks - 1].version + 1 : 1;
	CK_OBJECT_HANDLE obj = 0;
	enum hv_rc rc;

	if (p->nkeks == HV_KEK_MAX_VERSIONS || v == 0)
		return hv_err_set(err, HV_E_CONFLICT,
		    "too many kek versions "
		    "(max %d)",
		    HV_KEK_MAX_VERSIONS);
	rc = gen_key_locked(p, s, false, v, &obj, rvp, err);
	if (rc != HV_OK)
		return rc;
	p->keks[p->nkeks].version = v;
	p->keks[p->nkeks].obj = obj;
	p->keks[p->nkeks].disabled = false;
	p->nkeks++;
	*version = v;
	return HV_OK;
}

struct ensure_arg {
	bool create;
};

static enum hv_rc
op_ensure(struct p11 *p, struct p11_sess *s, void *varg, CK_RV *rvp,
    struct hv_err *err)
{
	struct ensure_arg *a = varg;
	enum hv_rc rc;
	uint32_t v;

	if (kek_active(p) != 0 && p->hmac_obj != 0)
		return HV_OK;
	if (!a->create)
		return hv_err_set(err, HV_E_NOT_FOUND,
		    "%s missing on token "
		    "'%s' (prefix '%s'): run hsmvault init",
		    kek_active(p) == 0 ? "kek" : "hmac key", p->token_label,
		    p->prefix);
	if (kek_active(p) == 0) {
		rc = add_kek_locked(p, s->h, &v, rvp, err);
		if (rc != HV_OK)
			return rc;
	}
	if (p->hmac_obj == 0) {
		rc = gen_key_locked(p, s->h, true, 0, &p->hmac_obj, rvp, err);
		if (rc != HV_OK)
			return rc;
	}
	return HV_OK;
}

static enum hv_rc
op_create(struct p11 *p, struct p11_sess *s, void *varg, CK_RV *rvp,
    struct hv_err *err)
{
	return add_kek_locked(p, s->h, varg, rvp, err);
}

static enum hv_rc
op_disable(struct p11 *p, struct p11_sess *s, void *varg, CK_RV *rvp,
    struct hv_err *err)
{
	uint32_t version = *(uint32_t *)varg;
	char label[LABEL_MAX + 1];
	CK_BBOOL fls = CK_FALSE;
	CK_ATTRIBUTE t[3];
	long k = kek_find(p, version);
	CK_RV rv;

	if (k < 0)
		return hv_err_set(err, HV_E_NOT_FOUND,
		    "kek version %u not "
		    "found on token",
		    version);
	if (p->keks[k].disabled)
		return HV_OK;
	if (version == kek_active(p))
		return hv_err_set(err, HV_E_CONFLICT,
		    "kek version %u is the "
		    "active one; rotate first",
		    version);
	/* Session copies carry their own CKA_DECRYPT: destroy them first. */
	p->keks[k].disabled = true;
	drop_copies_locked(p);
	kek_label(p, version, true, label, sizeof(label));
	t[0].type = CKA_LABEL;
	t[0].pValue = label;
	t[0].ulValueLen = strlen(label);
	t[1].type = CKA_ENCRYPT;
	t[1].pValue = &fls;
	t[1].ulValueLen = sizeof(fls);
	t[2].type = CKA_DECRYPT;
	t[2].pValue = &fls;
	t[2].ulValueLen = sizeof(fls);
	rv = CK(p, C_SetAttributeValue, s->h, p->keks[k].obj, t, 3);
	if (rv != CKR_OK) {
		/* Without the token's consent nothing is durable: let a
		 * refresh show the key as it really is. */
		atomic_store(&p->keys_ms, 0);
		p->keks[k].disabled = false;
		*rvp = rv;
		return ck_err(err, "C_SetAttributeValue", rv);
	}
	hv_log_info("pkcs11: disabled kek version %u", version);
	return HV_OK;
}

static enum hv_rc
op_probe(struct p11 *p, struct p11_sess *s, void *varg, CK_RV *rvp,
    struct hv_err *err)
{
	struct hv_hsm_status *st = varg;
	CK_TOKEN_INFO ti;
	CK_SESSION_INFO si;
	CK_RV rv;

	rv = CK(p, C_GetSessionInfo, s->h, &si);
	if (rv == CKR_OK && si.state != CKS_RW_USER_FUNCTIONS &&
	    si.state != CKS_RO_USER_FUNCTIONS && p->pin != NULL)
		rv = CKR_USER_NOT_LOGGED_IN;
	if (rv != CKR_OK) {
		*rvp = rv;
		return ck_err(err, "C_GetSessionInfo", rv);
	}
	rv = CK(p, C_GetTokenInfo, p->slot, &ti);
	if (rv != CKR_OK) {
		*rvp = rv;
		return ck_err(err, "C_GetTokenInfo", rv);
	}
	space_copy(st->token, sizeof(st->token), ti.label, sizeof(ti.label));
	(void)snprintf(st->detail, sizeof(st->detail), "%s", p->token_detail);
	st->reachable = true;
	st->active_kek = kek_active(p);
	return HV_OK;
}

/* ------------------------------------------------------------------ */
/* Vtable entries. */

#define P11(h) ((struct p11 *)(void *)(h))

static enum hv_rc
p11_ensure_keys(struct hv_hsm *h, bool create, struct hv_err *err)
{
	struct ensure_arg a = {create};
	struct p11_op op = {op_ensure, &a, true, true, true};

	return run(P11(h), &op, err);
}

static enum hv_rc
p11_wrap(struct hv_hsm *h, uint32_t kek_version, const uint8_t *aad,
    size_t aad_len, const struct hv_secret *dek, uint8_t *out, size_t *out_len,
    struct hv_err *err)
{
	struct wrap_arg a = {.version = kek_version,
	    .aad = aad,
	    .aad_len = aad_len,
	    .dek = dek,
	    .out = out,
	    .out_len = out_len};
	struct p11_op op = {op_wrap, &a, false, true, false};

	if (dek == NULL || dek->len != HV_DEK_LEN || aad_len > HV_AAD_MAX)
		return hv_err_set(err, HV_E_INTERNAL, "wrap: bad arguments");
	return run(P11(h), &op, err);
}

static enum hv_rc
p11_unwrap(struct hv_hsm *h, uint32_t kek_version, const uint8_t *aad,
    size_t aad_len, const uint8_t *in, size_t in_len, struct hv_secret **dek,
    struct hv_err *err)
{
	struct wrap_arg a = {.version = kek_version,
	    .aad = aad,
	    .aad_len = aad_len,
	    .in = in,
	    .in_len = in_len};
	struct p11_op op = {op_unwrap, &a, false, true, false};
	enum hv_rc rc;

	if (in_len != WRAPPED_LEN || in[0] != WRAP_FORMAT_GCM)
		return hv_err_set(err, HV_E_CRYPTO,
		    "unwrap: not a wrapped "
		    "key of format 1 (%zu bytes)",
		    in_len);
	if (aad_len > HV_AAD_MAX)
		return hv_err_set(err, HV_E_CRYPTO, "unwrap: aad too long");
	/* Room for what a module may want to write (plaintext + tag). */
	a.dek_out = hv_secret_new(HV_DEK_LEN + GCM_TAG_LEN);
	if (a.dek_out == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	rc = run(P11(h), &op, err);
	if (rc != HV_OK) {
		hv_secret_free(&a.dek_out);
		return rc;
	}
	a.dek_out->len = HV_DEK_LEN;
	*dek = a.dek_out;
	return HV_OK;
}

static enum hv_rc
p11_hmac(struct hv_hsm *h, const uint8_t *msg, size_t len,
    uint8_t out[HV_HMAC_LEN], struct hv_err *err)
{
	struct hmac_arg a = {msg, len, out};
	struct p11_op op = {op_hmac, &a, false, true, false};

	return run(P11(h), &op, err);
}

static enum hv_rc
p11_random(struct hv_hsm *h, uint8_t *buf, size_t len, struct hv_err *err)
{
	struct random_arg a = {buf, len};
	struct p11_op op = {op_random, &a, false, true, false};

	if (len == 0)
		return HV_OK;
	return run(P11(h), &op, err);
}

static enum hv_rc
p11_kek_list(struct hv_hsm *h, struct hv_kek_info *out, size_t max, size_t *n,
    struct hv_err *err)
{
	struct list_arg a = {out, max, n};
	struct p11_op op = {op_list, &a, false, false, false};

	*n = 0;
	return run(P11(h), &op, err);
}

static enum hv_rc
p11_kek_create(struct hv_hsm *h, uint32_t *version, struct hv_err *err)
{
	uint32_t v = 0;
	struct p11_op op = {op_create, &v, true, true, true};
	enum hv_rc rc;

	rc = run(P11(h), &op, err);
	if (rc == HV_OK && version != NULL)
		*version = v;
	return rc;
}

static enum hv_rc
p11_kek_disable(struct hv_hsm *h, uint32_t version, struct hv_err *err)
{
	struct p11_op op = {op_disable, &version, true, true, true};

	return run(P11(h), &op, err);
}

static enum hv_rc
p11_probe(struct hv_hsm *h, struct hv_hsm_status *st, struct hv_err *err)
{
	struct p11 *p = P11(h);
	struct p11_op op = {op_probe, st, false, true, false};

	memset(st, 0, sizeof(*st));
	(void)snprintf(st->backend, sizeof(st->backend), "pkcs11");
	(void)snprintf(st->token, sizeof(st->token), "%.127s", p->uri_text);
	st->reachable = false;
	st->reconnects = atomic_load(&p->n_reconnects);
	return run(p, &op, err);
}

static void
p11_free(struct p11 *p)
{
	if (p == NULL)
		return;
	if (p->fn != NULL) {
		pthread_rwlock_wrlock(&p->lock);
		disconnect_locked(p);
		module_fini_locked(p);
		pthread_rwlock_unlock(&p->lock);
		if (p->dl == NULL)
			p11_kit_module_release(p->fn);
	}
	if (p->dl != NULL)
		dlclose(p->dl);
	pthread_rwlock_destroy(&p->lock);
	pthread_mutex_destroy(&p->pool_mu);
	pthread_cond_destroy(&p->pool_cv);
	pthread_mutex_destroy(&p->last_mu);
	if (p->uri != NULL)
		p11_kit_uri_free(p->uri);
	hv_secret_free(&p->pin);
	hv_free(p->module_path);
	hv_free(p->sess);
	hv_mem_zero(p, sizeof(*p));
	hv_free(p);
}

static void
p11_close(struct hv_hsm *h)
{
	p11_free(P11(h));
}

static const struct hv_hsm_ops p11_ops = {
    .name = "pkcs11",
    .ensure_keys = p11_ensure_keys,
    .wrap = p11_wrap,
    .unwrap = p11_unwrap,
    .hmac = p11_hmac,
    .random = p11_random,
    .kek_list = p11_kek_list,
    .kek_create = p11_kek_create,
    .kek_disable = p11_kek_disable,
    .probe = p11_probe,
    .close = p11_close,
};

/* ------------------------------------------------------------------ */
/* Opening. */

static enum hv_rc
parse_uri(struct p11 *p, const char *text, struct hv_err *err)
{
	CK_ATTRIBUTE *lab;
	int r;
	size_t i;

	p->uri = p11_kit_uri_new();
	if (p->uri == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	if (text == NULL || text[0] == '\0')
		text = "pkcs11:";
	(void)snprintf(p->uri_text, sizeof(p->uri_text), "%s", text);
	r = p11_kit_uri_parse(text, P11_KIT_URI_FOR_ANY, p->uri);
	if (r != P11_KIT_URI_OK)
		return hv_err_set(err, HV_E_CONFIG, "pkcs11 token uri: %s",
		    p11_kit_uri_message(r));
	if (p11_kit_uri_get_pin_value(p->uri) != NULL)
		return hv_err_set(err, HV_E_CONFIG,
		    "pkcs11 token uri must "
		    "not carry pin-value (use pkcs11_pin_file)");
	/* The URI is shown in messages: keep only up to a query. */
	p->uri_text[strcspn(p->uri_text, "?")] = '\0';
	lab = p11_kit_uri_get_attribute(p->uri, CKA_LABEL);
	if (lab == NULL || lab->ulValueLen == 0) {
		(void)snprintf(
		    p->prefix, sizeof(p->prefix), "%s", DEFAULT_PREFIX);
		return HV_OK;
	}
	if (lab->ulValueLen > PREFIX_MAX)
		return hv_err_set(err, HV_E_CONFIG,
		    "pkcs11 object= prefix "
		    "longer than %d",
		    PREFIX_MAX);
	for (i = 0; i < lab->ulValueLen; i++) {
		unsigned char c = ((unsigned char *)lab->pValue)[i];

		if (c < 0x21 || c > 0x7e)
			return hv_err_set(err, HV_E_CONFIG,
			    "pkcs11 object= "
			    "prefix must be printable ascii without spaces");
	}
	memcpy(p->prefix, lab->pValue, lab->ulValueLen);
	p->prefix[lab->ulValueLen] = '\0';
	/* Matching is by label prefix, not the exact label. */
	(void)p11_kit_uri_clear_attribute(p->uri, CKA_LABEL);
	return HV_OK;
}

static const char *
proxy_path(void)
{
	size_t i;

	for (i = 0; i < sizeof(proxy_paths) / sizeof(proxy_paths[0]); i++)
		if (access(proxy_paths[i], R_OK) == 0)
			return proxy_paths[i];
	return "p11-kit-proxy.so";
}

/*
 * p11-kit refuses to load its own proxy as a module, so the proxy is
 * opened as any PKCS#11 application would: dlopen + C_GetFunctionList.
 * It loads the modules registered in p11-kit's configuration itself,
 * managed (with locking), and presents their slots as its own.
 */
static enum hv_rc
load_proxy(struct p11 *p, struct hv_err *err)
{
	CK_C_GetFunctionList get;
	CK_RV rv;

	p->dl = dlopen(p->module_path, RTLD_NOW | RTLD_LOCAL);
	if (p->dl == NULL)
		return hv_err_set(err, HV_E_CONFIG,
		    "cannot load p11-kit "
		    "proxy '%s': %s",
		    p->module_path, dlerror());
	*(void **)&get = dlsym(p->dl, "C_GetFunctionList");
	if (get == NULL)
		return hv_err_set(err, HV_E_CONFIG,
		    "'%s' has no "
		    "C_GetFunctionList",
		    p->module_path);
	rv = ck_log("C_GetFunctionList", get(&p->fn));
	if (rv != CKR_OK || p->fn == NULL) {
		p->fn = NULL;
		return ck_err(err, "C_GetFunctionList", rv);
	}
	return HV_OK;
}

enum hv_rc
hv_p11_open(
    const struct hv_hsm_config *cfg, struct hv_hsm **out, struct hv_err *err)
{
	struct p11 *p = NULL;
	pthread_rwlockattr_t ra;
	const char *path;
	enum hv_rc rc;
	CK_RV rv = CKR_OK;
	unsigned int i;
	long cores;
	bool proxy = false;

	p = hv_calloc(1, sizeof(*p));
	if (p == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	p->base.ops = &p11_ops;
	pthread_rwlockattr_init(&ra);
	/* Writers (reconnect, refresh) must not starve under load. */
	pthread_rwlockattr_setkind_np(
	    &ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&p->lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&p->pool_mu, NULL);
	pthread_cond_init(&p->pool_cv, NULL);
	pthread_mutex_init(&p->last_mu, NULL);
	p->copies = true;
	p->retry_max = cfg->retry_max ? cfg->retry_max : DEFAULT_RETRY_MAX;
	p->breaker_ms = cfg->breaker_ms ? cfg->breaker_ms : DEFAULT_BREAKER_MS;
	cores = sysconf(_SC_NPROCESSORS_ONLN);
	p->nsess = cfg->p11_sessions
	    ? cfg->p11_sessions
	    : (unsigned int)(cores > 0 ? 2 * cores : 4);
	if (p->nsess < 2)
		p->nsess = 2;
	if (p->nsess > SESSIONS_MAX)
		p->nsess = SESSIONS_MAX;
	p->sess = hv_calloc(p->nsess, sizeof(*p->sess));
	if (p->sess == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < p->nsess; i++)
		pool_put(p, &p->sess[i]);

	rc = parse_uri(p, cfg->p11_token, err);
	if (rc != HV_OK)
		goto out;
	if (cfg->p11_pin != NULL) {
		p->pin = hv_secret_from(cfg->p11_pin, strlen(cfg->p11_pin));
		if (p->pin == NULL) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
	}
	path = cfg->p11_module;
	if (path == NULL || path[0] == '\0')
		path = p11_kit_uri_get_module_path(p->uri);
	if (path == NULL || path[0] == '\0') {
		path = proxy_path();
		proxy = true;
	}
	p->module_path = hv_strdup(path);
	if (p->module_path == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	if (proxy) {
		rc = load_proxy(p, err);
		if (rc != HV_OK)
			goto out;
	} else {
		/* Managed (no P11_KIT_MODULE_UNMANAGED): p11-kit initializes
		 * the module with CKF_OS_LOCKING_OK, tracks our sessions. */
		p->fn = p11_kit_module_load(p->module_path, 0);
	}
	if (p->fn == NULL) {
		const char *m = p11_kit_message();

		rc = hv_err_set(err, HV_E_CONFIG,
		    "cannot load pkcs11 module "
		    "'%s': %s",
		    p->module_path, m != NULL ? m : "unknown");
		goto out;
	}
	pthread_rwlock_wrlock(&p->lock);
	rc = module_init_locked(p, &rv, err);
	if (rc == HV_OK)
		rc = connect_locked(p, &rv, err);
	pthread_rwlock_unlock(&p->lock);
	if (rc == HV_E_UPSTREAM && rv_outage(rv))
		rc = HV_E_KEYSTORE;
	if (rc != HV_OK)
		goto out;
	hv_log_info("pkcs11: token '%s' via %s, %u sessions, %zu kek "
	            "versions",
	    p->token_label, p->module_path, p->nsess, p->nkeks);
	*out = &p->base;
	p = NULL;
out:
	p11_free(p);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Test-only hooks (hsm/p11_test.h). */

void
hv_p11_test_break(struct hv_hsm *h, enum hv_p11_break how)
{
	struct p11 *p = P11(h);

	pthread_rwlock_wrlock(&p->lock);
	if (how == HV_P11_BREAK_FINALIZE)
		(void)CK(p, C_Finalize, NULL);
	else if (how == HV_P11_BREAK_SESSIONS)
		(void)CK(p, C_CloseAllSessions, p->slot);
	pthread_rwlock_unlock(&p->lock);
}

void
hv_p11_test_set_copies(struct hv_hsm *h, bool on)
{
	struct p11 *p = P11(h);

	pthread_rwlock_wrlock(&p->lock);
	drop_copies_locked(p);
	p->copies = on;
	pthread_rwlock_unlock(&p->lock);
}

void
hv_p11_test_stats(struct hv_hsm *h, struct hv_p11_test_stats *st)
{
	struct p11 *p = P11(h);

	st->logins = atomic_load(&p->n_logins);
	st->reconnects = atomic_load(&p->n_reconnects);
	st->finds = atomic_load(&p->n_finds);
	st->copies = atomic_load(&p->n_copies);
}
