/*
 * test_p11: the PKCS#11 key store backend against a real SoftHSM2 token.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "hsm.h"
#include "p11_test.h"
#include "testenv.h"

#define AAD "ws-1|cred-1|1"

struct fx {
	struct hv_test_token tok;
	struct hv_hsm_config cfg;
	struct hv_hsm *h;
	char uri[200];
};

static void
cfg_for(struct fx *f, const char *pin)
{
	memset(&f->cfg, 0, sizeof(f->cfg));
	f->cfg.keystore = "pkcs11";
	f->cfg.p11_module = HV_TEST_SOFTHSM_MODULE;
	f->cfg.p11_token = f->uri;
	f->cfg.p11_pin = pin;
	f->cfg.p11_sessions = 4;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct hv_err err = {0};

	assert_non_null(f);
	hv_test_token_new(&f->tok, "hvp11");
	snprintf(f->uri, sizeof(f->uri), "%s", f->tok.uri);
	cfg_for(f, HV_TEST_PIN);
	assert_int_equal(hv_hsm_open(&f->cfg, &f->h, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(f->h, true, &err), HV_OK);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	hv_hsm_close(&f->h);
	hv_test_token_destroy(&f->tok);
	free(f);
	return 0;
}

static struct hv_secret *
new_dek(struct hv_hsm *h)
{
	struct hv_secret *d = hv_secret_new(HV_DEK_LEN);
	struct hv_err err = {0};

	assert_non_null(d);
	assert_int_equal(hv_hsm_random(h, d->buf, d->len, &err), HV_OK);
	return d;
}

static void
wrap1(struct hv_hsm *h, uint32_t v, const char *aad,
    const struct hv_secret *dek, uint8_t *out, size_t *n)
{
	struct hv_err err = {0};

	assert_int_equal(hv_hsm_wrap(h, v, (const uint8_t *)aad, strlen(aad),
	                     dek, out, n, NULL, &err),
	    HV_OK);
}

static enum hv_rc
unwrap1(struct hv_hsm *h, uint32_t v, const char *aad, const uint8_t *in,
    size_t n, struct hv_secret **out, struct hv_err *err)
{
	return hv_hsm_unwrap(
	    h, v, (const uint8_t *)aad, strlen(aad), in, n, out, err);
}

static void
test_round_trip(void **state)
{
	struct fx *f = *state;
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX], w2[HV_WRAPPED_MAX];
	size_t n = 0, n2 = 0;
	uint32_t used = 0;
	struct hv_err err = {0};

	assert_int_equal(hv_hsm_wrap(f->h, 0, (const uint8_t *)AAD, strlen(AAD),
	                     dek, w, &n, &used, &err),
	    HV_OK);
	assert_int_equal(used, 1);
	assert_int_equal(n, 61);
	assert_int_equal(w[0], 0x01);
	/* The DEK does not appear in the blob. */
	assert_null(memmem(w, n, dek->buf, 8));
	assert_int_equal(unwrap1(f->h, 1, AAD, w, n, &back, &err), HV_OK);
	assert_non_null(back);
	assert_int_equal(back->len, HV_DEK_LEN);
	assert_memory_equal(back->buf, dek->buf, HV_DEK_LEN);
	hv_secret_free(&back);
	/* A fresh IV each time. */
	wrap1(f->h, 1, AAD, dek, w2, &n2);
	assert_memory_not_equal(w + 1, w2 + 1, 12);
	/* Empty AAD works too. */
	wrap1(f->h, 1, "", dek, w2, &n2);
	assert_int_equal(unwrap1(f->h, 1, "", w2, n2, &back, &err), HV_OK);
	assert_memory_equal(back->buf, dek->buf, HV_DEK_LEN);
	hv_secret_free(&back);
	hv_secret_free(&dek);
}

static void
test_aad_mismatch(void **state)
{
	struct fx *f = *state;
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX];
	size_t n = 0;
	struct hv_err err = {0};

	wrap1(f->h, 1, AAD, dek, w, &n);
	assert_int_equal(
	    unwrap1(f->h, 1, "ws-1|cred-1|2", w, n, &back, &err), HV_E_CRYPTO);
	assert_null(back);
	assert_non_null(strstr(err.msg, "C_Decrypt"));
	assert_int_equal(unwrap1(f->h, 1, "", w, n, &back, &err), HV_E_CRYPTO);
	assert_null(back);
	/* Still fine afterwards (the failed operation left no state). */
	assert_int_equal(unwrap1(f->h, 1, AAD, w, n, &back, &err), HV_OK);
	hv_secret_free(&back);
	hv_secret_free(&dek);
}

static void
test_tamper(void **state)
{
	struct fx *f = *state;
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX], t[HV_WRAPPED_MAX];
	size_t n = 0, i;
	struct hv_err err = {0};
	/* format byte, IV, ciphertext, tag: first, middle and last byte of
	 * each region. */
	const size_t where[] = {0, 1, 6, 12, 13, 30, 44, 45, 52, 60};

	wrap1(f->h, 1, AAD, dek, w, &n);
	assert_int_equal(n, 61);
	for (i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		unsigned int bit;

		for (bit = 0; bit < 8; bit += 7) {
			memcpy(t, w, n);
			t[where[i]] ^= (uint8_t)(1u << bit);
			assert_int_equal(
			    unwrap1(f->h, 1, AAD, t, n, &back, &err),
			    HV_E_CRYPTO);
			assert_null(back);
		}
	}
	/* Truncated and extended. */
	assert_int_equal(
	    unwrap1(f->h, 1, AAD, w, n - 1, &back, &err), HV_E_CRYPTO);
	memcpy(t, w, n);
	t[n] = 0;
	assert_int_equal(
	    unwrap1(f->h, 1, AAD, t, n + 1, &back, &err), HV_E_CRYPTO);
	assert_int_equal(unwrap1(f->h, 1, AAD, w, 0, &back, &err), HV_E_CRYPTO);
	assert_int_equal(unwrap1(f->h, 1, AAD, w, n, &back, &err), HV_OK);
	hv_secret_free(&back);
	hv_secret_free(&dek);
}

static void
test_kek_versions(void **state)
{
	struct fx *f = *state;
	struct hv_kek_info k[HV_KEK_MAX_VERSIONS];
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	uint8_t w1[HV_WRAPPED_MAX], w2[HV_WRAPPED_MAX];
	size_t n = 0, n1 = 0, n2 = 0;
	uint32_t v = 0, used = 0;
	struct hv_err err = {0};

	assert_int_equal(
	    hv_hsm_kek_list(f->h, k, HV_KEK_MAX_VERSIONS, &n, &err), HV_OK);
	assert_int_equal(n, 1);
	assert_int_equal(k[0].version, 1);
	assert_int_equal(k[0].state, HV_KEK_ACTIVE);
	wrap1(f->h, 1, AAD, dek, w1, &n1);

	assert_int_equal(hv_hsm_kek_create(f->h, &v, &err), HV_OK);
	assert_int_equal(v, 2);
	assert_int_equal(
	    hv_hsm_kek_list(f->h, k, HV_KEK_MAX_VERSIONS, &n, &err), HV_OK);
	assert_int_equal(n, 2);
	assert_int_equal(k[0].version, 1);
	assert_int_equal(k[0].state, HV_KEK_RETIRED);
	assert_int_equal(k[1].version, 2);
	assert_int_equal(k[1].state, HV_KEK_ACTIVE);
	assert_int_equal(hv_hsm_wrap(f->h, 0, (const uint8_t *)AAD, strlen(AAD),
	                     dek, w2, &n2, &used, &err),
	    HV_OK);
	assert_int_equal(used, 2);

	/* Wrapped by v1, unwrapped with v2: fails; and the reverse. */
	assert_int_equal(
	    unwrap1(f->h, 2, AAD, w1, n1, &back, &err), HV_E_CRYPTO);
	assert_int_equal(
	    unwrap1(f->h, 1, AAD, w2, n2, &back, &err), HV_E_CRYPTO);
	assert_null(back);
	/* Retired still unwraps. */
	assert_int_equal(unwrap1(f->h, 1, AAD, w1, n1, &back, &err), HV_OK);
	hv_secret_free(&back);
	/* Unknown version. */
	assert_int_equal(
	    unwrap1(f->h, 9, AAD, w1, n1, &back, &err), HV_E_NOT_FOUND);

	/* The active one cannot be disabled. */
	assert_int_equal(hv_hsm_kek_disable(f->h, 2, &err), HV_E_CONFLICT);
	assert_int_equal(hv_hsm_kek_disable(f->h, 7, &err), HV_E_NOT_FOUND);
	assert_int_equal(hv_hsm_kek_disable(f->h, 1, &err), HV_OK);
	assert_int_equal(hv_hsm_kek_disable(f->h, 1, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_kek_list(f->h, k, HV_KEK_MAX_VERSIONS, &n, &err), HV_OK);
	assert_int_equal(n, 2);
	assert_int_equal(k[0].state, HV_KEK_DISABLED);
	assert_int_equal(k[1].state, HV_KEK_ACTIVE);
	/* Disabled: refuses unwrap and wrap, in this process at once. */
	assert_int_not_equal(unwrap1(f->h, 1, AAD, w1, n1, &back, &err), HV_OK);
	assert_null(back);
	assert_int_not_equal(hv_hsm_wrap(f->h, 1, (const uint8_t *)AAD,
	                         strlen(AAD), dek, w1, &n1, NULL, &err),
	    HV_OK);
	assert_int_equal(unwrap1(f->h, 2, AAD, w2, n2, &back, &err), HV_OK);
	hv_secret_free(&back);

	/* Next version is 3, not a reuse of the disabled one. */
	assert_int_equal(hv_hsm_kek_create(f->h, &v, &err), HV_OK);
	assert_int_equal(v, 3);
	hv_secret_free(&dek);
}

static void
test_hmac(void **state)
{
	struct fx *f = *state;
	uint8_t a[HV_HMAC_LEN], b[HV_HMAC_LEN], c[HV_HMAC_LEN];
	struct hv_err err = {0};
	struct hv_test_token t2;
	struct hv_hsm_config cfg2;
	struct hv_hsm *h2 = NULL;

	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"abc", 3, a, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"abc", 3, b, &err), HV_OK);
	assert_memory_equal(a, b, HV_HMAC_LEN);
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"abd", 3, c, &err), HV_OK);
	assert_memory_not_equal(a, c, HV_HMAC_LEN);
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"", 0, c, &err), HV_OK);

	/* Another token's key gives another MAC. */
	hv_hsm_close(&f->h);
	hv_test_token_new(&t2, "hvp11b");
	cfg2 = f->cfg;
	cfg2.p11_token = t2.uri;
	assert_int_equal(hv_hsm_open(&cfg2, &h2, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h2, true, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(h2, (const uint8_t *)"abc", 3, c, &err), HV_OK);
	assert_memory_not_equal(a, c, HV_HMAC_LEN);
	hv_hsm_close(&h2);
	hv_test_token_destroy(&t2);
	/* Back to the first token: same MAC as before (the key persisted). */
	setenv("SOFTHSM2_CONF", f->tok.conf, 1);
	assert_int_equal(hv_hsm_open(&f->cfg, &f->h, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"abc", 3, c, &err), HV_OK);
	assert_memory_equal(a, c, HV_HMAC_LEN);
}

static void
test_persist(void **state)
{
	struct fx *f = *state;
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX];
	size_t n = 0;
	uint32_t v = 0;
	struct hv_err err = {0};

	assert_int_equal(hv_hsm_kek_create(f->h, &v, &err), HV_OK);
	wrap1(f->h, 2, AAD, dek, w, &n);
	hv_hsm_close(&f->h);
	assert_int_equal(hv_hsm_open(&f->cfg, &f->h, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(f->h, false, &err), HV_OK);
	assert_int_equal(unwrap1(f->h, 2, AAD, w, n, &back, &err), HV_OK);
	assert_memory_equal(back->buf, dek->buf, HV_DEK_LEN);
	hv_secret_free(&back);
	hv_secret_free(&dek);
}

static void
test_empty_token(void **state)
{
	struct hv_test_token t;
	struct fx f;
	struct hv_err err = {0};
	uint8_t m[HV_HMAC_LEN];

	(void)state;
	memset(&f, 0, sizeof(f));
	hv_test_token_new(&t, "hvempty");
	snprintf(f.uri, sizeof(f.uri), "%s", t.uri);
	cfg_for(&f, HV_TEST_PIN);
	assert_int_equal(hv_hsm_open(&f.cfg, &f.h, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(f.h, false, &err), HV_E_NOT_FOUND);
	assert_non_null(strstr(err.msg, "hsmvault init"));
	assert_int_equal(
	    hv_hsm_hmac(f.h, (const uint8_t *)"x", 1, m, &err), HV_E_NOT_FOUND);
	assert_int_equal(hv_hsm_ensure_keys(f.h, true, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(f.h, false, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(f.h, (const uint8_t *)"x", 1, m, &err), HV_OK);
	hv_hsm_close(&f.h);
	hv_test_token_destroy(&t);
}

/* Handles and session copies are cached; the periodic re-read of the key
 * list (every 2 s) keeps them when nothing changed. */
static void
test_cache(void **state)
{
	struct fx *f = *state;
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	struct hv_p11_test_stats a, b;
	uint8_t w[HV_WRAPPED_MAX];
	size_t n = 0;
	int i;
	struct hv_err err = {0};

	wrap1(f->h, 1, AAD, dek, w, &n);
	hv_p11_test_stats(f->h, &a);
	for (i = 0; i < 200; i++) {
		wrap1(f->h, 1, AAD, dek, w, &n);
		assert_int_equal(
		    unwrap1(f->h, 1, AAD, w, n, &back, &err), HV_OK);
		hv_secret_free(&back);
	}
	hv_p11_test_stats(f->h, &b);
	assert_int_equal(b.finds, a.finds);
	usleep(2200 * 1000);
	wrap1(f->h, 1, AAD, dek, w, &n);
	hv_p11_test_stats(f->h, &b);
	assert_int_equal(b.finds, a.finds + 1);
	assert_true(b.copies <= f->cfg.p11_sessions);
	assert_int_equal(b.reconnects, 0);
	hv_secret_free(&dek);
}

/* ------------------------------------------------------------------ */
/* Direct PKCS#11 access, as another application would have. */

struct direct {
	CK_FUNCTION_LIST *fn;
	CK_SESSION_HANDLE s;
};

static void
direct_open(struct direct *d, const char *label)
{
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16, i;
	CK_RV rv;

	d->fn = p11_kit_module_load(HV_TEST_SOFTHSM_MODULE, 0);
	assert_non_null(d->fn);
	assert_int_equal(p11_kit_module_initialize(d->fn), CKR_OK);
	assert_int_equal(d->fn->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	for (i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		char l[33];

		assert_int_equal(d->fn->C_GetTokenInfo(slots[i], &ti), CKR_OK);
		memcpy(l, ti.label, 32);
		l[p11_kit_space_strlen(ti.label, 32)] = '\0';
		if (strcmp(l, label) == 0)
			break;
	}
	assert_true(i < n);
	assert_int_equal(
	    d->fn->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION,
	        NULL, NULL, &d->s),
	    CKR_OK);
	rv = d->fn->C_Login(
	    d->s, CKU_USER, (CK_UTF8CHAR_PTR)HV_TEST_PIN, strlen(HV_TEST_PIN));
	/* Login state is per process: the backend may have logged in. */
	assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
}

static void
direct_close(struct direct *d)
{
	(void)d->fn->C_CloseSession(d->s);
	(void)p11_kit_module_finalize(d->fn);
	p11_kit_module_release(d->fn);
	d->fn = NULL;
}

/* Handles of objects labelled label (token or session objects). */
static CK_ULONG
direct_find(struct direct *d, const char *label, CK_BBOOL token,
    CK_OBJECT_HANDLE *out, CK_ULONG max)
{
	CK_ATTRIBUTE t[] = {
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_TOKEN, &token, sizeof(token)},
	};
	CK_ULONG n = 0;

	assert_int_equal(d->fn->C_FindObjectsInit(d->s, t, 2), CKR_OK);
	assert_int_equal(d->fn->C_FindObjects(d->s, out, max, &n), CKR_OK);
	assert_int_equal(d->fn->C_FindObjectsFinal(d->s), CKR_OK);
	return n;
}

static CK_BBOOL
attr_bool(struct direct *d, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL v = 0xff;
	CK_ATTRIBUTE a = {type, &v, sizeof(v)};

	assert_int_equal(d->fn->C_GetAttributeValue(d->s, o, &a, 1), CKR_OK);
	assert_true(v == CK_TRUE || v == CK_FALSE);
	return v;
}

static CK_ULONG
attr_ulong(struct direct *d, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type)
{
	CK_ULONG v = 0;
	CK_ATTRIBUTE a = {type, &v, sizeof(v)};

	assert_int_equal(d->fn->C_GetAttributeValue(d->s, o, &a, 1), CKR_OK);
	return v;
}

/* Never readable, never exportable, never wrappable. */
static void
check_protected(struct direct *d, CK_OBJECT_HANDLE o)
{
	uint8_t buf[64];
	CK_ATTRIBUTE a = {CKA_VALUE, buf, sizeof(buf)};
	CK_BBOOL tru = CK_TRUE;
	CK_ATTRIBUTE ex = {CKA_EXTRACTABLE, &tru, sizeof(tru)};

	assert_true(attr_bool(d, o, CKA_SENSITIVE));
	assert_false(attr_bool(d, o, CKA_EXTRACTABLE));
	assert_true(attr_bool(d, o, CKA_NEVER_EXTRACTABLE));
	assert_true(attr_bool(d, o, CKA_ALWAYS_SENSITIVE));
	assert_true(attr_bool(d, o, CKA_PRIVATE));
	assert_false(attr_bool(d, o, CKA_WRAP));
	assert_false(attr_bool(d, o, CKA_UNWRAP));
	assert_false(attr_bool(d, o, CKA_DERIVE));
	assert_int_equal(attr_ulong(d, o, CKA_CLASS), CKO_SECRET_KEY);
	assert_int_equal(attr_ulong(d, o, CKA_VALUE_LEN), 32);
	assert_int_not_equal(
	    d->fn->C_GetAttributeValue(d->s, o, &a, 1), CKR_OK);
	assert_int_not_equal(
	    d->fn->C_SetAttributeValue(d->s, o, &ex, 1), CKR_OK);
	assert_false(attr_bool(d, o, CKA_EXTRACTABLE));
}

static void
test_attributes(void **state)
{
	struct fx *f = *state;
	struct direct d;
	CK_OBJECT_HANDLE o[8];
	uint8_t id[64];
	CK_ATTRIBUTE ida = {CKA_ID, id, sizeof(id)};
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX], m[HV_HMAC_LEN];
	size_t n = 0, i;
	uint32_t v;
	struct hv_err err = {0};

	/* Make session copies exist, then look at everything. */
	wrap1(f->h, 1, AAD, dek, w, &n);
	assert_int_equal(unwrap1(f->h, 1, AAD, w, n, &back, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m, &err), HV_OK);
	direct_open(&d, f->tok.label);

	assert_int_equal(direct_find(&d, "hsmvault-kek-1", CK_TRUE, o, 8), 1);
	check_protected(&d, o[0]);
	assert_true(attr_bool(&d, o[0], CKA_TOKEN));
	assert_int_equal(attr_ulong(&d, o[0], CKA_KEY_TYPE), CKK_AES);
	assert_true(attr_bool(&d, o[0], CKA_ENCRYPT));
	assert_true(attr_bool(&d, o[0], CKA_DECRYPT));
	assert_false(attr_bool(&d, o[0], CKA_SIGN));
	assert_false(attr_bool(&d, o[0], CKA_VERIFY));
	assert_int_equal(d.fn->C_GetAttributeValue(d.s, o[0], &ida, 1), CKR_OK);
	assert_true(ida.ulValueLen > 0);

	assert_int_equal(direct_find(&d, "hsmvault-hmac", CK_TRUE, o, 8), 1);
	check_protected(&d, o[0]);
	assert_int_equal(
	    attr_ulong(&d, o[0], CKA_KEY_TYPE), CKK_GENERIC_SECRET);
	assert_true(attr_bool(&d, o[0], CKA_SIGN));
	assert_true(attr_bool(&d, o[0], CKA_VERIFY));
	assert_false(attr_bool(&d, o[0], CKA_ENCRYPT));
	assert_false(attr_bool(&d, o[0], CKA_DECRYPT));

	/* The session copies are just as protected, and not on the token. */
	n = direct_find(&d, "hsmvault-kek-1", CK_FALSE, o, 8);
	assert_true(n >= 1);
	for (i = 0; i < n; i++) {
		check_protected(&d, o[i]);
		assert_false(attr_bool(&d, o[i], CKA_TOKEN));
	}
	n = direct_find(&d, "hsmvault-hmac", CK_FALSE, o, 8);
	assert_true(n >= 1);
	for (i = 0; i < n; i++)
		check_protected(&d, o[i]);

	/* A disabled version: relabelled, and the token refuses its use. */
	assert_int_equal(hv_hsm_kek_create(f->h, &v, &err), HV_OK);
	assert_int_equal(hv_hsm_kek_disable(f->h, 1, &err), HV_OK);
	assert_int_equal(direct_find(&d, "hsmvault-kek-1", CK_TRUE, o, 8), 0);
	assert_int_equal(
	    direct_find(&d, "hsmvault-kek-1-disabled", CK_TRUE, o, 8), 1);
	assert_false(attr_bool(&d, o[0], CKA_ENCRYPT));
	assert_false(attr_bool(&d, o[0], CKA_DECRYPT));
	{
		/* The token itself refuses it, for any application. */
		uint8_t iv[12] = {0};
		CK_GCM_PARAMS g = {iv, 12, 96, NULL, 0, 128};
		CK_MECHANISM mech = {CKM_AES_GCM, &g, sizeof(g)};

		assert_int_equal(d.fn->C_DecryptInit(d.s, &mech, o[0]),
		    CKR_KEY_FUNCTION_NOT_PERMITTED);
		assert_int_equal(d.fn->C_EncryptInit(d.s, &mech, o[0]),
		    CKR_KEY_FUNCTION_NOT_PERMITTED);
	}
	/* ... and no session copy of it is left. */
	assert_int_equal(direct_find(&d, "hsmvault-kek-1", CK_FALSE, o, 8), 0);
	direct_close(&d);
	hv_secret_free(&back);
	hv_secret_free(&dek);
}

/* Make an AES-256 token key under label with the given protection. */
static void
direct_aes(struct direct *d, const char *label, CK_BBOOL sensitive,
    CK_BBOOL extractable)
{
	CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
	CK_BBOOL tru = CK_TRUE;
	CK_ULONG len = 32;
	CK_ATTRIBUTE t[] = {
	    {CKA_LABEL, (void *)label, strlen(label)},
	    {CKA_TOKEN, &tru, sizeof(tru)},
	    {CKA_PRIVATE, &tru, sizeof(tru)},
	    {CKA_ENCRYPT, &tru, sizeof(tru)},
	    {CKA_DECRYPT, &tru, sizeof(tru)},
	    {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
	    {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
	    {CKA_VALUE_LEN, &len, sizeof(len)},
	};
	CK_OBJECT_HANDLE o;

	assert_int_equal(
	    d->fn->C_GenerateKey(d->s, &gen, t, sizeof(t) / sizeof(t[0]), &o),
	    CKR_OK);
}

/*
 * Keys under our labels that could leave the token (made by another tool:
 * extractable, or not sensitive) are not used, neither as a KEK version
 * nor as the HMAC key; the backend keeps using its own.
 */
static void
test_unsafe_keys_refused(void **state)
{
	struct fx *f = *state;
	struct direct d;
	struct hv_kek_info k[8];
	struct hv_secret *dek = new_dek(f->h);
	uint8_t w[HV_WRAPPED_MAX], m1[HV_HMAC_LEN], m2[HV_HMAC_LEN];
	size_t n = sizeof(w), nk = 0, i;
	struct hv_err err = {0};

	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m1, &err), HV_OK);
	direct_open(&d, f->tok.label);
	direct_aes(&d, "hsmvault-kek-8", CK_TRUE, CK_TRUE);
	direct_aes(&d, "hsmvault-kek-9", CK_FALSE, CK_FALSE);
	direct_close(&d);
	/* a fresh open reads the key list */
	hv_hsm_close(&f->h);
	assert_int_equal(hv_hsm_open(&f->cfg, &f->h, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(f->h, false, &err), HV_OK);
	assert_int_equal(hv_hsm_kek_list(f->h, k, 8, &nk, &err), HV_OK);
	assert_int_equal(nk, 1);
	for (i = 0; i < nk; i++)
		assert_true(k[i].version < 8);
	assert_int_not_equal(hv_hsm_wrap(f->h, 8, (const uint8_t *)AAD,
	                         strlen(AAD), dek, w, &n, NULL, &err),
	    HV_OK);
	n = sizeof(w);
	assert_int_not_equal(hv_hsm_wrap(f->h, 9, (const uint8_t *)AAD,
	                         strlen(AAD), dek, w, &n, NULL, &err),
	    HV_OK);
	/* an extractable second "hmac" key is skipped, not used */
	direct_open(&d, f->tok.label);
	direct_aes(&d, "hsmvault-hmac", CK_TRUE, CK_TRUE);
	direct_close(&d);
	hv_hsm_close(&f->h);
	assert_int_equal(hv_hsm_open(&f->cfg, &f->h, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(f->h, false, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m2, &err), HV_OK);
	assert_memory_equal(m1, m2, HV_HMAC_LEN);
	hv_secret_free(&dek);
}

/* A disable done by another application reaches a running backend. */
static void
test_disable_elsewhere(void **state)
{
	struct fx *f = *state;
	struct direct d;
	CK_OBJECT_HANDLE o[4];
	CK_BBOOL fls = CK_FALSE;
	const char *lab = "hsmvault-kek-1-disabled";
	CK_ATTRIBUTE t[] = {
	    {CKA_LABEL, (void *)lab, strlen(lab)},
	    {CKA_DECRYPT, &fls, sizeof(fls)},
	    {CKA_ENCRYPT, &fls, sizeof(fls)},
	};
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	struct hv_kek_info k[4];
	uint8_t w[HV_WRAPPED_MAX];
	size_t n = 0, nk = 0;
	uint32_t v;
	struct hv_err err = {0};
	int i;

	assert_int_equal(hv_hsm_kek_create(f->h, &v, &err), HV_OK);
	wrap1(f->h, 1, AAD, dek, w, &n);
	assert_int_equal(unwrap1(f->h, 1, AAD, w, n, &back, &err), HV_OK);
	hv_secret_free(&back);
	direct_open(&d, f->tok.label);
	assert_int_equal(direct_find(&d, "hsmvault-kek-1", CK_TRUE, o, 4), 1);
	assert_int_equal(d.fn->C_SetAttributeValue(d.s, o[0], t, 3), CKR_OK);
	direct_close(&d);
	/* Within the key list's refresh interval (2 s). */
	for (i = 0; i < 40; i++) {
		if (unwrap1(f->h, 1, AAD, w, n, &back, &err) != HV_OK)
			break;
		hv_secret_free(&back);
		usleep(100000);
	}
	assert_true(i < 40);
	assert_int_equal(hv_hsm_kek_list(f->h, k, 4, &nk, &err), HV_OK);
	assert_int_equal(nk, 2);
	assert_int_equal(k[0].state, HV_KEK_DISABLED);
	hv_secret_free(&dek);
}

/* ------------------------------------------------------------------ */
/* PIN handling. */

/* Run fn with stderr going to a file; return how often needle is there. */
static int
count_in_stderr(void (*fn)(void *), void *arg, const char *needle)
{
	char path[] = "/tmp/hvp11log.XXXXXX", buf[65536];
	int fd = mkstemp(path), saved = dup(2), count = 0;
	ssize_t r;
	char *q;

	assert_true(fd >= 0 && saved >= 0);
	fflush(stderr);
	dup2(fd, 2);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	r = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	unlink(path);
	assert_true(r >= 0);
	buf[r] = '\0';
	fputs(buf, stderr);
	for (q = strstr(buf, needle); q != NULL; q = strstr(q + 1, needle))
		count++;
	return count;
}

struct pin_run {
	struct fx *f;
	enum hv_rc rc, rc2;
};

static void
open_wrong_pin(void *arg)
{
	struct pin_run *r = arg;
	struct hv_err err = {0};
	struct hv_hsm *h = NULL;

	cfg_for(r->f, "11112222");
	r->rc = hv_hsm_open(&r->f->cfg, &h, &err);
	assert_null(h);
	assert_non_null(strstr(err.msg, "CKR_PIN_INCORRECT"));
	assert_null(strstr(err.msg, "11112222"));
	cfg_for(r->f, HV_TEST_PIN);
}

static void
test_wrong_pin(void **state)
{
	struct fx *f = *state;
	struct pin_run r = {f, HV_OK, HV_OK};
	struct direct d;
	CK_TOKEN_INFO ti;
	CK_SLOT_ID slots[8];
	CK_ULONG ns = 8;

	hv_hsm_close(&f->h);
	/* One C_Login, no retry, no reconnect loop. */
	assert_int_equal(count_in_stderr(open_wrong_pin, &r, "C_Login"), 1);
	assert_int_equal(r.rc, HV_E_PIN);
	/* The token saw exactly the failure (SoftHSM: PIN_COUNT_LOW). */
	direct_open(&d, f->tok.label);
	assert_int_equal(d.fn->C_GetSlotList(CK_TRUE, slots, &ns), CKR_OK);
	assert_int_equal(d.fn->C_GetTokenInfo(slots[0], &ti), CKR_OK);
	assert_true((ti.flags & CKF_USER_PIN_LOCKED) == 0);
	direct_close(&d);
}

/* The PIN changes under a running backend: HV_E_PIN, never retried. */
static void
test_pin_changed(void **state)
{
	struct fx *f = *state;
	struct direct d;
	struct hv_p11_test_stats st0, st1, st2;
	uint8_t m[HV_HMAC_LEN];
	struct hv_err err = {0};
	int i;

	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m, &err), HV_OK);
	hv_p11_test_stats(f->h, &st0);
	assert_int_equal(st0.logins, 1);
	direct_open(&d, f->tok.label);
	assert_int_equal(
	    d.fn->C_SetPIN(d.s, (CK_UTF8CHAR_PTR)HV_TEST_PIN,
	        strlen(HV_TEST_PIN), (CK_UTF8CHAR_PTR) "99998888", 8),
	    CKR_OK);
	assert_int_equal(d.fn->C_Logout(d.s), CKR_OK);
	direct_close(&d);
	hv_p11_test_break(f->h, HV_P11_BREAK_SESSIONS);

	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m, &err), HV_E_PIN);
	hv_p11_test_stats(f->h, &st1);
	assert_int_equal(st1.logins, 2);
	/* Not retried, not even after the breaker window. */
	for (i = 0; i < 5; i++)
		assert_int_equal(
		    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m, &err),
		    HV_E_PIN);
	usleep(1200 * 1000);
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m, &err), HV_E_PIN);
	hv_p11_test_stats(f->h, &st2);
	assert_int_equal(st2.logins, 2);
	/* A new open with the new PIN works. */
	hv_hsm_close(&f->h);
	cfg_for(f, "99998888");
	assert_int_equal(hv_hsm_open(&f->cfg, &f->h, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m, &err), HV_OK);
	cfg_for(f, HV_TEST_PIN);
}

/* ------------------------------------------------------------------ */
/* Threads. */

struct worker {
	struct hv_hsm *h;
	atomic_bool *busy; /* keep working while true (disturb runs) */
	int id;
	int errors;
	char msg[HV_ERR_MSG_MAX];
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct hv_secret *dek = hv_secret_new(HV_DEK_LEN), *back = NULL;
	uint8_t blob[HV_WRAPPED_MAX], m[HV_HMAC_LEN], rnd[48];
	struct hv_kek_info k[HV_KEK_MAX_VERSIONS];
	char aad[64];
	size_t n, nk;
	uint32_t used;
	int i;

	for (i = 0; dek != NULL && (i < 500 || atomic_load(w->busy)); i++) {
		struct hv_err err = {0};
		enum hv_rc rc = HV_OK;

		snprintf(aad, sizeof(aad), "ws|%d|%d", w->id, i);
		switch (i % 5) {
		case 0:
		case 1:
			rc = hv_hsm_random(w->h, dek->buf, dek->len, &err);
			if (rc == HV_OK)
				rc = hv_hsm_wrap(w->h, 0, (uint8_t *)aad,
				    strlen(aad), dek, blob, &n, &used, &err);
			if (rc == HV_OK)
				rc = hv_hsm_unwrap(w->h, used, (uint8_t *)aad,
				    strlen(aad), blob, n, &back, &err);
			if (rc == HV_OK &&
			    memcmp(back->buf, dek->buf, HV_DEK_LEN) != 0)
				rc = HV_E_INTERNAL;
			hv_secret_free(&back);
			break;
		case 2:
			rc = hv_hsm_hmac(
			    w->h, (uint8_t *)aad, strlen(aad), m, &err);
			break;
		case 3:
			rc = hv_hsm_random(w->h, rnd, sizeof(rnd), &err);
			break;
		case 4:
			rc = hv_hsm_kek_list(
			    w->h, k, HV_KEK_MAX_VERSIONS, &nk, &err);
			break;
		}
		if (rc != HV_OK) {
			w->errors++;
			snprintf(w->msg, sizeof(w->msg), "%s", err.msg);
		}
	}
	hv_secret_free(&dek);
	return NULL;
}

static void
run_workers(struct hv_hsm *h, int nthreads, bool disturb)
{
	pthread_t th[8];
	struct worker w[8];
	struct hv_err err = {0};
	atomic_bool busy = disturb;
	uint32_t v;
	int i;

	for (i = 0; i < nthreads; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].busy = &busy;
		w[i].h = h;
		w[i].id = i;
		assert_int_equal(
		    pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	if (disturb) {
		usleep(20000);
		assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
		usleep(20000);
		hv_p11_test_break(h, HV_P11_BREAK_SESSIONS);
		/* the workers run into the broken sessions, then stop */
		usleep(50000);
		atomic_store(&busy, false);
	}
	for (i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		if (w[i].errors != 0)
			fprintf(stderr, "worker %d: %d errors, last: %s\n", i,
			    w[i].errors, w[i].msg);
		assert_int_equal(w[i].errors, 0);
	}
}

static void
test_threads(void **state)
{
	struct fx *f = *state;
	struct hv_p11_test_stats st;
	struct hv_err err = {0};

	/* Fewer sessions than threads: the pool makes threads wait. */
	hv_hsm_close(&f->h);
	f->cfg.p11_sessions = 2;
	assert_int_equal(hv_hsm_open(&f->cfg, &f->h, &err), HV_OK);
	run_workers(f->h, 4, false);
	/* Handles are cached: no C_FindObjects per operation. */
	hv_p11_test_stats(f->h, &st);
	assert_true(st.finds < 10);
	/* A rotation and a lost session under load: still no error. */
	run_workers(f->h, 4, true);
	hv_p11_test_stats(f->h, &st);
	assert_true(st.reconnects >= 1);
	hv_p11_test_set_copies(f->h, false);
	run_workers(f->h, 4, false);
}

/* ------------------------------------------------------------------ */
/* Outages. */

static double
ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
test_recover_finalize(void **state)
{
	struct fx *f = *state;
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	struct hv_p11_test_stats st;
	uint8_t w[HV_WRAPPED_MAX], m[HV_HMAC_LEN];
	size_t n = 0;
	struct hv_err err = {0};

	wrap1(f->h, 1, AAD, dek, w, &n);
	/* The module is finalized behind the backend's back. */
	hv_p11_test_break(f->h, HV_P11_BREAK_FINALIZE);
	assert_int_equal(unwrap1(f->h, 1, AAD, w, n, &back, &err), HV_OK);
	assert_memory_equal(back->buf, dek->buf, HV_DEK_LEN);
	hv_secret_free(&back);
	hv_p11_test_stats(f->h, &st);
	assert_int_equal(st.reconnects, 1);
	assert_int_equal(st.logins, 2);
	/* Its sessions are closed behind its back. */
	hv_p11_test_break(f->h, HV_P11_BREAK_SESSIONS);
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m, &err), HV_OK);
	hv_p11_test_stats(f->h, &st);
	assert_int_equal(st.reconnects, 2);
	hv_secret_free(&dek);
}

static void
test_outage_breaker(void **state)
{
	struct fx *f = *state;
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	struct hv_hsm_status st;
	struct hv_p11_test_stats ps;
	uint8_t w[HV_WRAPPED_MAX], m[HV_HMAC_LEN];
	size_t n = 0;
	struct hv_err err = {0};
	double t0, dt;
	int i;

	wrap1(f->h, 1, AAD, dek, w, &n);
	assert_int_equal(hv_hsm_probe(f->h, &st, &err), HV_OK);
	assert_true(st.reachable);
	assert_string_equal(st.backend, "pkcs11");
	assert_string_equal(st.token, f->tok.label);
	assert_int_equal(st.active_kek, 1);

	/* The token goes away. */
	assert_int_equal(hv_test_sh("mv '%s/tokens' '%s/tokens.away'",
	                     f->tok.dir, f->tok.dir),
	    0);
	t0 = ms_now();
	assert_int_equal(hv_hsm_probe(f->h, &st, &err), HV_E_KEYSTORE);
	dt = ms_now() - t0;
	assert_false(st.reachable);
	/* It tried: backoff 10 + 50 + 200 ms. */
	assert_true(dt >= 250.0);
	assert_true(dt < 3000.0);
	/* The breaker is open: every kind of call fails at once. */
	for (i = 0; i < 20; i++) {
		t0 = ms_now();
		assert_int_equal(
		    unwrap1(f->h, 1, AAD, w, n, &back, &err), HV_E_KEYSTORE);
		assert_int_equal(hv_hsm_wrap(f->h, 0, (const uint8_t *)AAD,
		                     strlen(AAD), dek, w + 100, &n, NULL, &err),
		    HV_E_KEYSTORE);
		assert_int_equal(
		    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m, &err),
		    HV_E_KEYSTORE);
		assert_int_equal(
		    hv_hsm_random(f->h, m, sizeof(m), &err), HV_E_KEYSTORE);
		dt = ms_now() - t0;
		assert_true(dt < 20.0);
	}
	assert_null(back);
	assert_non_null(strstr(err.msg, "unavailable"));
	/* After the window, one quick try (half open), still failing. */
	usleep(1100 * 1000);
	t0 = ms_now();
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m, &err), HV_E_KEYSTORE);
	assert_true(ms_now() - t0 < 100.0);

	/* The token comes back: calls succeed again without a reopen. */
	assert_int_equal(hv_test_sh("mv '%s/tokens.away' '%s/tokens'",
	                     f->tok.dir, f->tok.dir),
	    0);
	usleep(1100 * 1000);
	assert_int_equal(unwrap1(f->h, 1, AAD, w, n, &back, &err), HV_OK);
	assert_memory_equal(back->buf, dek->buf, HV_DEK_LEN);
	hv_secret_free(&back);
	assert_int_equal(
	    hv_hsm_hmac(f->h, (const uint8_t *)"x", 1, m, &err), HV_OK);
	assert_int_equal(hv_hsm_probe(f->h, &st, &err), HV_OK);
	assert_true(st.reachable);
	assert_true(st.reconnects >= 1);
	hv_p11_test_stats(f->h, &ps);
	assert_true(ps.reconnects >= 1);
	hv_secret_free(&dek);
}

/* ------------------------------------------------------------------ */
/* Configuration. */

static void
test_uri(void **state)
{
	struct fx *f = *state;
	struct hv_hsm *h2 = NULL;
	struct hv_hsm_config c = f->cfg;
	struct hv_kek_info k[4];
	struct direct d;
	CK_OBJECT_HANDLE o[4];
	char uri[256];
	size_t nk = 0;
	struct hv_err err = {0};

	/* object= sets the label prefix; prefixes are independent. */
	snprintf(uri, sizeof(uri), "%s;object=team-a", f->tok.uri);
	c.p11_token = uri;
	assert_int_equal(hv_hsm_open(&c, &h2, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h2, false, &err), HV_E_NOT_FOUND);
	assert_int_equal(hv_hsm_ensure_keys(h2, true, &err), HV_OK);
	assert_int_equal(hv_hsm_kek_list(h2, k, 4, &nk, &err), HV_OK);
	assert_int_equal(nk, 1);
	hv_hsm_close(&h2);
	direct_open(&d, f->tok.label);
	assert_int_equal(direct_find(&d, "team-a-kek-1", CK_TRUE, o, 4), 1);
	assert_int_equal(direct_find(&d, "team-a-hmac", CK_TRUE, o, 4), 1);
	direct_close(&d);

	/* Matching more of the token works; a wrong model does not. */
	snprintf(uri, sizeof(uri), "pkcs11:model=SoftHSM%%20v2;token=%s",
	    f->tok.label);
	assert_int_equal(hv_hsm_open(&c, &h2, &err), HV_OK);
	hv_hsm_close(&h2);
	snprintf(uri, sizeof(uri), "pkcs11:model=Other;token=%s", f->tok.label);
	assert_int_equal(hv_hsm_open(&c, &h2, &err), HV_E_KEYSTORE);
	assert_non_null(strstr(err.msg, "no token matches"));
	assert_int_equal(hv_hsm_open(&c, &h2, &err), HV_E_KEYSTORE);
	c.p11_token = "pkcs11:token=nosuchtoken";
	assert_int_equal(hv_hsm_open(&c, &h2, &err), HV_E_KEYSTORE);
	c.p11_token = "http://example";
	assert_int_equal(hv_hsm_open(&c, &h2, &err), HV_E_CONFIG);
	snprintf(uri, sizeof(uri), "%s?pin-value=%s", f->tok.uri, HV_TEST_PIN);
	c.p11_token = uri;
	assert_int_equal(hv_hsm_open(&c, &h2, &err), HV_E_CONFIG);
	assert_null(strstr(err.msg, HV_TEST_PIN));
	c.p11_token = f->tok.uri;
	c.p11_module = "/nonexistent/module.so";
	assert_int_equal(hv_hsm_open(&c, &h2, &err), HV_E_CONFIG);
	c.p11_module = HV_TEST_SOFTHSM_MODULE;
	c.p11_pin = NULL;
	assert_int_equal(hv_hsm_open(&c, &h2, &err), HV_E_CONFIG);
	assert_null(h2);
}

/* The p11-kit proxy: SoftHSM2 is registered in p11-kit's module config
 * (Debian's softhsm2 ships /usr/share/p11-kit/modules/softhsm2.module). */
static void
test_proxy(void **state)
{
	struct fx *f = *state;
	struct hv_hsm_config c = f->cfg;
	struct hv_hsm *h2 = NULL;
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX];
	size_t n = 0;
	struct hv_err err = {0};

	if (access("/usr/share/p11-kit/modules/softhsm2.module", R_OK) != 0 &&
	    access("/etc/pkcs11/modules/softhsm2.module", R_OK) != 0) {
		hv_secret_free(&dek);
		skip();
	}
	wrap1(f->h, 1, AAD, dek, w, &n);
	hv_hsm_close(&f->h);
	c.p11_module = NULL;
	assert_int_equal(hv_hsm_open(&c, &h2, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h2, false, &err), HV_OK);
	assert_int_equal(unwrap1(h2, 1, AAD, w, n, &back, &err), HV_OK);
	assert_memory_equal(back->buf, dek->buf, HV_DEK_LEN);
	hv_secret_free(&back);
	hv_p11_test_break(h2, HV_P11_BREAK_SESSIONS);
	assert_int_equal(unwrap1(h2, 1, AAD, w, n, &back, &err), HV_OK);
	hv_secret_free(&back);
	hv_hsm_close(&h2);
	hv_secret_free(&dek);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_aad_mismatch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tamper, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kek_versions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hmac, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_persist, setup, teardown),
	    cmocka_unit_test(test_empty_token),
	    cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_attributes, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_disable_elsewhere, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_unsafe_keys_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_pin, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pin_changed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_recover_finalize, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_outage_breaker, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_uri, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_proxy, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
