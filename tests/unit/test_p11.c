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
	struct hv_err err = { 0 };

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
	struct hv_err err = { 0 };

	assert_non_null(d);
	assert_int_equal(hv_hsm_random(h, d->buf, d->len, &err), HV_OK);
	return d;
}

static void
wrap1(struct hv_hsm *h, uint32_t v, const char *aad,
    const struct hv_secret *dek, uint8_t *out, size_t *n)
{
	struct hv_err err = { 0 };

	assert_int_equal(hv_hsm_wrap(h, v, (const uint8_t *)aad, strlen(aad),
	    dek, out, n, NULL, &err), HV_OK);
}

static enum hv_rc
unwrap1(struct hv_hsm *h, uint32_t v, const char *aad, const uint8_t *in,
    size_t n, struct hv_secret **out, struct hv_err *err)
{
	return hv_hsm_unwrap(h, v, (const uint8_t *)aad, strlen(aad), in, n,
	    out, err);
}

static void
test_round_trip(void **state)
{
	struct fx *f = *state;
	struct hv_secret *dek = new_dek(f->h), *back = NULL;
	uint8_t w[HV_WRAPPED_MAX], w2[HV_WRAPPED_MAX];
	size_t n = 0, n2 = 0;
	uint32_t used = 0;
	struct hv_err err = { 0 };

	assert_int_equal(hv_hsm_wrap(f->h, 0, (const uint8_t *)AAD,
	    strlen(AAD), dek, w, &n, &used, &err), HV_OK);
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
	struct hv_err err = { 0 };

	wrap1(f->h, 1, AAD, dek, w, &n);
	assert_int_equal(unwrap1(f->h, 1, "ws-1|cred-1|2", w, n, &back, &err),
	    HV_E_CRYPTO);
	assert_null(back);
	assert_non_null(strstr(err.msg, "C_Decrypt"));
	assert_int_equal(unwrap1(f->h, 1, "", w, n, &back, &err),
	    HV_E_CRYPTO);
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
	struct hv_err err = { 0 };
	/* format byte, IV, ciphertext, tag: first, middle and last byte of
	 * each region. */
	const size_t where[] = { 0, 1, 6, 12, 13, 30, 44, 45, 52, 60 };

	wrap1(f->h, 1, AAD, dek, w, &n);
	assert_int_equal(n, 61);
	for (i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		unsigned int bit;

		for (bit = 0; bit < 8; bit += 7) {
			memcpy(t, w, n);
			t[where[i]] ^= (uint8_t)(1u << bit);
			assert_int_equal(unwrap1(f->h, 1, AAD, t, n, &back,
			    &err), HV_E_CRYPTO);
			assert_null(back);
		}
	}
	/* Truncated and extended. */
	assert_int_equal(unwrap1(f->h, 1, AAD, w, n - 1, &back, &err),
	    HV_E_CRYPTO);
	memcpy(t, w, n);
	t[n] = 0;
	assert_int_equal(unwrap1(f->h, 1, AAD, t, n + 1, &back, &err),
	    HV_E_CRYPTO);
	assert_int_equal(unwrap1(f->h, 1, AAD, w, 0, &back, &err),
	    HV_E_CRYPTO);
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
	struct hv_err err = { 0 };

	assert_int_equal(hv_hsm_kek_list(f->h, k, HV_KEK_MAX_VERSIONS, &n,
	    &err), HV_OK);
	assert_int_equal(n, 1);
	assert_int_equal(k[0].version, 1);
	assert_int_equal(k[0].state, HV_KEK_ACTIVE);
	wrap1(f->h, 1, AAD, dek, w1, &n1);

	assert_int_equal(hv_hsm_kek_create(f->h, &v, &err), HV_OK);
	assert_int_equal(v, 2);
	assert_int_equal(hv_hsm_kek_list(f->h, k, HV_KEK_MAX_VERSIONS, &n,
	    &err), HV_OK);
	assert_int_equal(n, 2);
	assert_int_equal(k[0].version, 1);
	assert_int_equal(k[0].state, HV_KEK_RETIRED);
	assert_int_equal(k[1].version, 2);
	assert_int_equal(k[1].state, HV_KEK_ACTIVE);
	assert_int_equal(hv_hsm_wrap(f->h, 0, (const uint8_t *)AAD,
	    strlen(AAD), dek, w2, &n2, &used, &err), HV_OK);
	assert_int_equal(used, 2);

	/* Wrapped by v1, unwrapped with v2: fails; and the reverse. */
	assert_int_equal(unwrap1(f->h, 2, AAD, w1, n1, &back, &err),
	    HV_E_CRYPTO);
	assert_int_equal(unwrap1(f->h, 1, AAD, w2, n2, &back, &err),
	    HV_E_CRYPTO);
	assert_null(back);
	/* Retired still unwraps. */
	assert_int_equal(unwrap1(f->h, 1, AAD, w1, n1, &back, &err), HV_OK);
	hv_secret_free(&back);
	/* Unknown version. */
	assert_int_equal(unwrap1(f->h, 9, AAD, w1, n1, &back, &err),
	    HV_E_NOT_FOUND);

	/* The active one cannot be disabled. */
	assert_int_equal(hv_hsm_kek_disable(f->h, 2, &err), HV_E_CONFLICT);
	assert_int_equal(hv_hsm_kek_disable(f->h, 7, &err), HV_E_NOT_FOUND);
	assert_int_equal(hv_hsm_kek_disable(f->h, 1, &err), HV_OK);
	assert_int_equal(hv_hsm_kek_disable(f->h, 1, &err), HV_OK);
	assert_int_equal(hv_hsm_kek_list(f->h, k, HV_KEK_MAX_VERSIONS, &n,
	    &err), HV_OK);
	assert_int_equal(n, 2);
	assert_int_equal(k[0].state, HV_KEK_DISABLED);
	assert_int_equal(k[1].state, HV_KEK_ACTIVE);
	/* Disabled: refuses unwrap and wrap, in this process at once. */
	assert_int_not_equal(unwrap1(f->h, 1, AAD, w1, n1, &back, &err),
	    HV_OK);
	assert_null(back);
	assert_int_not_equal(hv_hsm_wrap(f->h, 1, (const uint8_t *)AAD,
	    strlen(AAD), dek, w1, &n1, NULL, &err), HV_OK);
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
	struct hv_err err = { 0 };
	struct hv_test_token t2;
	struct hv_hsm_config cfg2;
	struct hv_hsm *h2 = NULL;

	assert_int_equal(hv_hsm_hmac(f->h, (const uint8_t *)"abc", 3, a,
	    &err), HV_OK);
	assert_int_equal(hv_hsm_hmac(f->h, (const uint8_t *)"abc", 3, b,
	    &err), HV_OK);
	assert_memory_equal(a, b, HV_HMAC_LEN);
	assert_int_equal(hv_hsm_hmac(f->h, (const uint8_t *)"abd", 3, c,
	    &err), HV_OK);
	assert_memory_not_equal(a, c, HV_HMAC_LEN);
	assert_int_equal(hv_hsm_hmac(f->h, (const uint8_t *)"", 0, c, &err),
	    HV_OK);

	/* Another token's key gives another MAC. */
	hv_hsm_close(&f->h);
	hv_test_token_new(&t2, "hvp11b");
	cfg2 = f->cfg;
	cfg2.p11_token = t2.uri;
	assert_int_equal(hv_hsm_open(&cfg2, &h2, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h2, true, &err), HV_OK);
	assert_int_equal(hv_hsm_hmac(h2, (const uint8_t *)"abc", 3, c, &err),
	    HV_OK);
	assert_memory_not_equal(a, c, HV_HMAC_LEN);
	hv_hsm_close(&h2);
	hv_test_token_destroy(&t2);
	/* Back to the first token: same MAC as before (the key persisted). */
	setenv("SOFTHSM2_CONF", f->tok.conf, 1);
	assert_int_equal(hv_hsm_open(&f->cfg, &f->h, &err), HV_OK);
	assert_int_equal(hv_hsm_hmac(f->h, (const uint8_t *)"abc", 3, c,
	    &err), HV_OK);
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
	struct hv_err err = { 0 };

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
	struct hv_err err = { 0 };
	uint8_t m[HV_HMAC_LEN];

	(void)state;
	memset(&f, 0, sizeof(f));
	hv_test_token_new(&t, "hvempty");
	snprintf(f.uri, sizeof(f.uri), "%s", t.uri);
	cfg_for(&f, HV_TEST_PIN);
	assert_int_equal(hv_hsm_open(&f.cfg, &f.h, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(f.h, false, &err),
	    HV_E_NOT_FOUND);
	assert_non_null(strstr(err.msg, "hsmvault init"));
	assert_int_equal(hv_hsm_hmac(f.h, (const uint8_t *)"x", 1, m, &err),
	    HV_E_NOT_FOUND);
	assert_int_equal(hv_hsm_ensure_keys(f.h, true, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(f.h, false, &err), HV_OK);
	assert_int_equal(hv_hsm_hmac(f.h, (const uint8_t *)"x", 1, m, &err),
	    HV_OK);
	hv_hsm_close(&f.h);
	hv_test_token_destroy(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_aad_mismatch, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_tamper, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kek_versions, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_hmac, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persist, setup, teardown),
		cmocka_unit_test(test_empty_token),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
