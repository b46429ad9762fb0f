/*
 * test_keystore_conformance: one suite, every key store backend. The same
 * test functions run against PKCS#11 (SoftHSM2, a fresh token of this
 * process) and TPM 2.0 (a private swtpm); whatever hsm/hsm.h promises must
 * hold for both, with the same result codes.
 *
 * Each test gets its own key namespace: a fresh data directory for the
 * TPM, a fresh object label prefix (URI object=) on the one SoftHSM2
 * token for PKCS#11.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hsm.h"
#include "log.h"
#include "swtpm.h"
#include "testenv.h"

#if defined(__has_include)
#if __has_include("p11_test.h")
#include "p11_test.h"
#define HAVE_P11_TEST 1
#endif
#endif

enum ks_kind { KS_PKCS11, KS_TPM };

struct fixture {
	enum ks_kind kind;
	const char *name;
	struct hv_test_token tok; /* pkcs11 */
	struct hv_swtpm tpm;      /* tpm */
	unsigned int seq;         /* namespaces handed out */
	unsigned int ns;          /* the current test's namespace */
};

static struct fixture fx_p11 = {.kind = KS_PKCS11, .name = "pkcs11"};
static struct fixture fx_tpm = {.kind = KS_TPM, .name = "tpm"};
static struct fixture *cur;

/* Handles a test has open, closed by the teardown when it failed early. */
static struct hv_hsm *live[4];

static void
track(struct hv_hsm *h)
{
	size_t i;

	for (i = 0; i < 4; i++)
		if (live[i] == NULL) {
			live[i] = h;
			return;
		}
}

static void
ks_close(struct hv_hsm **h)
{
	size_t i;

	for (i = 0; i < 4; i++)
		if (live[i] == *h)
			live[i] = NULL;
	hv_hsm_close(h);
}

/* Open the key store of namespace ns (breaker short for the tests). */
static enum hv_rc
open_ns(unsigned int ns, struct hv_hsm **h, struct hv_err *err)
{
	char uri[200], data[400];
	struct hv_hsm_config cfg = {
	    .breaker_ms = 200,
	    .retry_max = 3,
	};
	enum hv_rc rc;

	if (cur->kind == KS_PKCS11) {
		snprintf(uri, sizeof(uri), "%s;object=ct%u", cur->tok.uri, ns);
		snprintf(data, sizeof(data), "%s/data%u", cur->tok.dir, ns);
		cfg.keystore = "pkcs11";
		cfg.p11_module = HV_TEST_SOFTHSM_MODULE;
		cfg.p11_token = uri;
		cfg.p11_pin = HV_TEST_PIN;
		cfg.data_dir = data;
	} else {
		snprintf(data, sizeof(data), "%s/ct%u", cur->tpm.dir, ns);
		cfg.keystore = "tpm";
		cfg.tpm_tcti = cur->tpm.tcti;
		cfg.data_dir = data;
	}
	rc = hv_hsm_open(&cfg, h, err);
	if (rc == HV_OK)
		track(*h);
	return rc;
}

static struct hv_hsm *
open_cur(void)
{
	struct hv_hsm *h = NULL;
	struct hv_err err = {0};
	enum hv_rc rc = open_ns(cur->ns, &h, &err);

	if (rc != HV_OK)
		fprintf(stderr, "%s open: %s\n", cur->name, err.msg);
	assert_int_equal(rc, HV_OK);
	return h;
}

/* A fresh namespace with keys created (hsmvault init). */
static struct hv_hsm *
open_fresh(void)
{
	struct hv_hsm *h = open_cur();
	struct hv_err err = {0};
	enum hv_rc rc = hv_hsm_ensure_keys(h, true, &err);

	if (rc != HV_OK)
		fprintf(stderr, "%s ensure_keys: %s\n", cur->name, err.msg);
	assert_int_equal(rc, HV_OK);
	return h;
}

static struct hv_secret *
random_dek(struct hv_hsm *h)
{
	struct hv_secret *s = hv_secret_new(HV_DEK_LEN);
	struct hv_err err = {0};

	assert_non_null(s);
	assert_int_equal(hv_hsm_random(h, s->buf, HV_DEK_LEN, &err), HV_OK);
	return s;
}

struct wrapped {
	uint8_t b[HV_WRAPPED_MAX];
	size_t len;
	uint32_t version;
};

static void
wrap_ok(struct hv_hsm *h, uint32_t version, const char *aad,
    const struct hv_secret *dek, struct wrapped *w)
{
	struct hv_err err = {0};
	enum hv_rc rc;

	w->len = 0;
	w->version = 0;
	rc = hv_hsm_wrap(h, version, (const uint8_t *)aad, strlen(aad), dek,
	    w->b, &w->len, &w->version, &err);
	if (rc != HV_OK)
		fprintf(stderr, "%s wrap: %s\n", cur->name, err.msg);
	assert_int_equal(rc, HV_OK);
	assert_true(w->len > HV_DEK_LEN && w->len <= HV_WRAPPED_MAX);
}

static enum hv_rc
unwrap_rc(struct hv_hsm *h, uint32_t version, const char *aad,
    const uint8_t *in, size_t len, struct hv_secret **out)
{
	struct hv_err err = {0};

	return hv_hsm_unwrap(
	    h, version, (const uint8_t *)aad, strlen(aad), in, len, out, &err);
}

static void
unwrap_eq(struct hv_hsm *h, const struct wrapped *w, const char *aad,
    const struct hv_secret *want)
{
	struct hv_secret *got = NULL;
	struct hv_err err = {0};
	enum hv_rc rc;

	rc = hv_hsm_unwrap(h, w->version, (const uint8_t *)aad, strlen(aad),
	    w->b, w->len, &got, &err);
	if (rc != HV_OK)
		fprintf(stderr, "%s unwrap: %s\n", cur->name, err.msg);
	assert_int_equal(rc, HV_OK);
	assert_non_null(got);
	assert_int_equal(got->len, HV_DEK_LEN);
	assert_memory_equal(got->buf, want->buf, HV_DEK_LEN);
	hv_secret_free(&got);
}

static void
hmac_ok(struct hv_hsm *h, const void *msg, size_t len, uint8_t *out)
{
	struct hv_err err = {0};
	enum hv_rc rc = hv_hsm_hmac(h, msg, len, out, &err);

	if (rc != HV_OK)
		fprintf(stderr, "%s hmac(%zu bytes): %s\n", cur->name, len,
		    err.msg);
	assert_int_equal(rc, HV_OK);
}

static void
kek_states(struct hv_hsm *h, const enum hv_kek_state *want, size_t n)
{
	struct hv_kek_info k[HV_KEK_MAX_VERSIONS];
	struct hv_err err = {0};
	size_t got = 0, i;

	assert_int_equal(
	    hv_hsm_kek_list(h, k, HV_KEK_MAX_VERSIONS, &got, &err), HV_OK);
	assert_int_equal(got, n);
	for (i = 0; i < n; i++) {
		assert_int_equal(k[i].version, (uint32_t)i + 1);
		assert_int_equal(k[i].state, want[i]);
	}
}

/* ------------------------------------------------------------------ */

static void
test_ensure_keys(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_hsm_status st;
	static const enum hv_kek_state one[] = {HV_KEK_ACTIVE};

	(void)state;
	h = open_cur();
	assert_int_equal(hv_hsm_ensure_keys(h, false, &err), HV_E_NOT_FOUND);
	assert_int_equal(hv_hsm_ensure_keys(h, true, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h, false, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h, true, &err), HV_OK);
	kek_states(h, one, 1);
	assert_int_equal(hv_hsm_probe(h, &st, &err), HV_OK);
	assert_true(st.reachable);
	assert_string_equal(st.backend, cur->name);
	assert_int_equal(st.active_kek, 1);
	ks_close(&h);
	assert_null(h);
}

static void
test_round_trip(void **state)
{
	struct hv_hsm *h;
	struct hv_secret *dek[3];
	struct wrapped w[3];
	char aad_max[HV_AAD_MAX + 1];
	int i;

	(void)state;
	h = open_fresh();
	memset(aad_max, 'a', HV_AAD_MAX);
	aad_max[HV_AAD_MAX] = '\0';
	for (i = 0; i < 3; i++)
		dek[i] = random_dek(h);
	wrap_ok(h, 0, "ws1|cred1|1", dek[0], &w[0]);
	assert_int_equal(w[0].version, 1);
	wrap_ok(h, 0, "", dek[1], &w[1]);
	wrap_ok(h, 1, aad_max, dek[2], &w[2]);
	assert_int_equal(w[2].version, 1);
	unwrap_eq(h, &w[0], "ws1|cred1|1", dek[0]);
	unwrap_eq(h, &w[1], "", dek[1]);
	unwrap_eq(h, &w[2], aad_max, dek[2]);
	/* Twice, and in another order: unwrapping changes nothing. */
	unwrap_eq(h, &w[2], aad_max, dek[2]);
	unwrap_eq(h, &w[0], "ws1|cred1|1", dek[0]);
	for (i = 0; i < 3; i++)
		hv_secret_free(&dek[i]);
	ks_close(&h);
}

static void
test_aad_binding(void **state)
{
	static const char *wrong[] = {
	    "ws1|cred1|2",
	    "ws1|cred2|1",
	    "ws2|cred1|1",
	    "ws1|cred1|",
	    "ws1|cred1|1 ",
	    "",
	    "WS1|cred1|1",
	};
	struct hv_hsm *h;
	struct hv_secret *dek, *got = NULL;
	struct wrapped w;
	size_t i;

	(void)state;
	h = open_fresh();
	dek = random_dek(h);
	wrap_ok(h, 0, "ws1|cred1|1", dek, &w);
	for (i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		assert_int_equal(
		    unwrap_rc(h, w.version, wrong[i], w.b, w.len, &got),
		    HV_E_CRYPTO);
		assert_null(got);
	}
	unwrap_eq(h, &w, "ws1|cred1|1", dek);
	hv_secret_free(&dek);
	ks_close(&h);
}

static void
test_tamper(void **state)
{
	struct hv_hsm *h;
	struct hv_secret *dek, *got = NULL;
	struct wrapped w;
	uint8_t t[HV_WRAPPED_MAX];
	size_t i;
	enum hv_rc rc;

	(void)state;
	h = open_fresh();
	dek = random_dek(h);
	wrap_ok(h, 0, "a|b|1", dek, &w);
	/* One flipped bit in every byte, a different bit each time. */
	for (i = 0; i < w.len; i++) {
		memcpy(t, w.b, w.len);
		t[i] ^= (uint8_t)(1u << (i % 8));
		rc = unwrap_rc(h, w.version, "a|b|1", t, w.len, &got);
		if (rc != HV_E_CRYPTO)
			fprintf(stderr,
			    "%s: flipped bit %zu of byte %zu/%zu: "
			    "rc %d\n",
			    cur->name, i % 8, i, w.len, (int)rc);
		assert_int_equal(rc, HV_E_CRYPTO);
		assert_null(got);
	}
	/* Every byte flipped whole at a few places, truncations, extension. */
	memcpy(t, w.b, w.len);
	t[w.len - 1] ^= 0xff;
	assert_int_equal(
	    unwrap_rc(h, w.version, "a|b|1", t, w.len, &got), HV_E_CRYPTO);
	assert_int_equal(unwrap_rc(h, w.version, "a|b|1", w.b, w.len - 1, &got),
	    HV_E_CRYPTO);
	assert_int_equal(unwrap_rc(h, w.version, "a|b|1", w.b, w.len / 2, &got),
	    HV_E_CRYPTO);
	assert_int_equal(
	    unwrap_rc(h, w.version, "a|b|1", w.b, 1, &got), HV_E_CRYPTO);
	if (w.len < HV_WRAPPED_MAX) {
		memcpy(t, w.b, w.len);
		t[w.len] = 0;
		assert_int_equal(
		    unwrap_rc(h, w.version, "a|b|1", t, w.len + 1, &got),
		    HV_E_CRYPTO);
	}
	assert_null(got);
	unwrap_eq(h, &w, "a|b|1", dek);
	hv_secret_free(&dek);
	ks_close(&h);
}

static void
test_kek_rotation(void **state)
{
	static const enum hv_kek_state s1[] = {HV_KEK_ACTIVE};
	static const enum hv_kek_state s2[] = {HV_KEK_RETIRED, HV_KEK_ACTIVE};
	static const enum hv_kek_state s3[] = {
	    HV_KEK_RETIRED, HV_KEK_RETIRED, HV_KEK_ACTIVE};
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_hsm_status st;
	struct hv_secret *dek, *got = NULL;
	struct wrapped w1, w2, w3;
	uint32_t v = 0;

	(void)state;
	h = open_fresh();
	dek = random_dek(h);
	kek_states(h, s1, 1);
	wrap_ok(h, 0, "r|1", dek, &w1);
	assert_int_equal(w1.version, 1);
	assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
	assert_int_equal(v, 2);
	kek_states(h, s2, 2);
	wrap_ok(h, 0, "r|1", dek, &w2);
	assert_int_equal(w2.version, 2);
	assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
	assert_int_equal(v, 3);
	kek_states(h, s3, 3);
	wrap_ok(h, 0, "r|1", dek, &w3);
	assert_int_equal(w3.version, 3);
	assert_int_equal(hv_hsm_probe(h, &st, &err), HV_OK);
	assert_int_equal(st.active_kek, 3);
	/* Every version unwraps its own; none unwraps another's. */
	unwrap_eq(h, &w1, "r|1", dek);
	unwrap_eq(h, &w2, "r|1", dek);
	unwrap_eq(h, &w3, "r|1", dek);
	assert_int_equal(
	    unwrap_rc(h, 2, "r|1", w1.b, w1.len, &got), HV_E_CRYPTO);
	assert_int_equal(
	    unwrap_rc(h, 1, "r|1", w3.b, w3.len, &got), HV_E_CRYPTO);
	assert_int_equal(
	    unwrap_rc(h, 3, "r|1", w2.b, w2.len, &got), HV_E_CRYPTO);
	/* An unknown version is not found. */
	assert_int_equal(
	    unwrap_rc(h, 4, "r|1", w3.b, w3.len, &got), HV_E_NOT_FOUND);
	assert_null(got);
	hv_secret_free(&dek);
	ks_close(&h);
}

/* A DEK wrapped before a rotation still unwraps; a retired version
 * named explicitly still wraps (see hsm/tpm.c kek_usable). */
static void
test_old_version_unwraps(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_secret *dek;
	struct wrapped w_old, w_explicit;
	uint32_t v;
	int i;

	(void)state;
	h = open_fresh();
	dek = random_dek(h);
	wrap_ok(h, 0, "old|1", dek, &w_old);
	for (i = 0; i < 2; i++)
		assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
	unwrap_eq(h, &w_old, "old|1", dek);
	wrap_ok(h, 1, "old|2", dek, &w_explicit);
	assert_int_equal(w_explicit.version, 1);
	unwrap_eq(h, &w_explicit, "old|2", dek);
	hv_secret_free(&dek);
	ks_close(&h);
}

/* hsmvault rewrap: unwrap with the old version, wrap with the active one,
 * then the old version can be disabled and the DEK still unwraps. */
static void
test_rewrap(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_secret *dek[4], *tmp = NULL;
	struct wrapped w[4], nw[4];
	char aad[32];
	uint32_t v;
	int i;

	(void)state;
	h = open_fresh();
	for (i = 0; i < 4; i++) {
		dek[i] = random_dek(h);
		snprintf(aad, sizeof(aad), "ws|c%d|1", i);
		wrap_ok(h, 0, aad, dek[i], &w[i]);
	}
	assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
	for (i = 0; i < 4; i++) {
		snprintf(aad, sizeof(aad), "ws|c%d|1", i);
		assert_int_equal(
		    hv_hsm_unwrap(h, w[i].version, (const uint8_t *)aad,
		        strlen(aad), w[i].b, w[i].len, &tmp, &err),
		    HV_OK);
		wrap_ok(h, 0, aad, tmp, &nw[i]);
		hv_secret_free(&tmp);
		assert_int_equal(nw[i].version, v);
	}
	assert_int_equal(hv_hsm_kek_disable(h, 1, &err), HV_OK);
	for (i = 0; i < 4; i++) {
		snprintf(aad, sizeof(aad), "ws|c%d|1", i);
		unwrap_eq(h, &nw[i], aad, dek[i]);
		assert_int_equal(
		    unwrap_rc(h, w[i].version, aad, w[i].b, w[i].len, &tmp),
		    HV_E_NOT_FOUND);
		assert_null(tmp);
		hv_secret_free(&dek[i]);
	}
	ks_close(&h);
}

static void
test_disabled_refuses(void **state)
{
	static const enum hv_kek_state s[] = {HV_KEK_DISABLED, HV_KEK_ACTIVE};
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_secret *dek, *got = NULL;
	struct wrapped w1, w2;
	uint8_t out[HV_WRAPPED_MAX];
	size_t len = 0;
	uint32_t v;

	(void)state;
	h = open_fresh();
	dek = random_dek(h);
	wrap_ok(h, 0, "d|1", dek, &w1);
	/* The only (active) version cannot be disabled. */
	assert_int_equal(hv_hsm_kek_disable(h, 1, &err), HV_E_CONFLICT);
	assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
	assert_int_equal(hv_hsm_kek_disable(h, 2, &err), HV_E_CONFLICT);
	assert_int_equal(hv_hsm_kek_disable(h, 7, &err), HV_E_NOT_FOUND);
	assert_int_equal(hv_hsm_kek_disable(h, 1, &err), HV_OK);
	assert_int_equal(hv_hsm_kek_disable(h, 1, &err), HV_OK);
	kek_states(h, s, 2);
	assert_int_equal(
	    unwrap_rc(h, 1, "d|1", w1.b, w1.len, &got), HV_E_NOT_FOUND);
	assert_null(got);
	assert_int_equal(hv_hsm_wrap(h, 1, (const uint8_t *)"d|1", 3, dek, out,
	                     &len, NULL, &err),
	    HV_E_NOT_FOUND);
	/* The active version is unaffected. */
	wrap_ok(h, 0, "d|2", dek, &w2);
	assert_int_equal(w2.version, 2);
	unwrap_eq(h, &w2, "d|2", dek);
	hv_secret_free(&dek);
	ks_close(&h);
}

static void
test_hmac(void **state)
{
	struct hv_hsm *h, *other = NULL;
	struct hv_err err = {0};
	uint8_t a[HV_HMAC_LEN], b[HV_HMAC_LEN], c[HV_HMAC_LEN];
	uint8_t big_mac[HV_HMAC_LEN];
	static uint8_t big[4096];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	h = open_fresh();
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"hv_sk_abc", 9, a, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"hv_sk_abc", 9, b, &err), HV_OK);
	assert_memory_equal(a, b, HV_HMAC_LEN);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"hv_sk_abd", 9, c, &err), HV_OK);
	assert_memory_not_equal(a, c, HV_HMAC_LEN);
	hmac_ok(h, big, sizeof(big), big_mac);
	hmac_ok(h, big, sizeof(big), c);
	assert_memory_equal(big_mac, c, HV_HMAC_LEN);
	/* HMAC does not depend on the KEK version. */
	{
		uint32_t v;

		assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
		assert_int_equal(
		    hv_hsm_hmac(h, (const uint8_t *)"hv_sk_abc", 9, c, &err),
		    HV_OK);
		assert_memory_equal(a, c, HV_HMAC_LEN);
	}
	ks_close(&h);
	/* Another key store's HMAC key gives another answer. */
	assert_int_equal(open_ns(++cur->seq, &other, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(other, true, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(other, (const uint8_t *)"hv_sk_abc", 9, c, &err),
	    HV_OK);
	assert_memory_not_equal(a, c, HV_HMAC_LEN);
	ks_close(&other);
}

/* HMAC of the empty message is defined (RFC 2104) and must work. */
static void
test_hmac_empty(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	uint8_t a[HV_HMAC_LEN], e[HV_HMAC_LEN], n[HV_HMAC_LEN];

	(void)state;
	h = open_fresh();
	hmac_ok(h, "", 0, e);
	hmac_ok(h, NULL, 0, n);
	assert_memory_equal(e, n, HV_HMAC_LEN);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"x", 1, a, &err), HV_OK);
	assert_memory_not_equal(a, e, HV_HMAC_LEN);
	ks_close(&h);
}

static void
test_random(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	uint8_t a[200], b[200], zero[200] = {0};

	(void)state;
	h = open_cur(); /* no keys needed */
	assert_int_equal(hv_hsm_random(h, a, sizeof(a), &err), HV_OK);
	assert_int_equal(hv_hsm_random(h, b, sizeof(b), &err), HV_OK);
	assert_memory_not_equal(a, zero, sizeof(a));
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(hv_hsm_random(h, a, 1, &err), HV_OK);
	ks_close(&h);
}

/* Keys and KEK states survive close and reopen, and a restart of the
 * key store itself (swtpm restarted; SoftHSM2 re-reads its token). */
static void
test_persistence(void **state)
{
	static const enum hv_kek_state s[] = {
	    HV_KEK_DISABLED, HV_KEK_RETIRED, HV_KEK_ACTIVE};
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_secret *dek;
	struct wrapped w2, w3;
	uint8_t m1[HV_HMAC_LEN], m2[HV_HMAC_LEN];
	uint32_t v;

	(void)state;
	h = open_fresh();
	dek = random_dek(h);
	assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
	wrap_ok(h, 0, "p|1", dek, &w2);
	assert_int_equal(hv_hsm_kek_create(h, &v, &err), HV_OK);
	wrap_ok(h, 0, "p|2", dek, &w3);
	assert_int_equal(hv_hsm_kek_disable(h, 1, &err), HV_OK);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"x", 1, m1, &err), HV_OK);
	ks_close(&h);
	if (cur->kind == KS_TPM)
		assert_int_equal(hv_swtpm_restart(&cur->tpm), 0);
	h = open_cur();
	assert_int_equal(hv_hsm_ensure_keys(h, false, &err), HV_OK);
	kek_states(h, s, 3);
	unwrap_eq(h, &w2, "p|1", dek);
	unwrap_eq(h, &w3, "p|2", dek);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"x", 1, m2, &err), HV_OK);
	assert_memory_equal(m1, m2, HV_HMAC_LEN);
	hv_secret_free(&dek);
	ks_close(&h);
}

/* The store goes away behind an open handle and comes back: the next
 * calls recover by themselves. */
static void
test_reconnect(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_hsm_status st;
	struct hv_secret *dek;
	struct wrapped w, w2;
	uint8_t m1[HV_HMAC_LEN], m2[HV_HMAC_LEN];
	int round;

	(void)state;
#ifndef HAVE_P11_TEST
	if (cur->kind == KS_PKCS11) {
		skip();
		return;
	}
#endif
	h = open_fresh();
	dek = random_dek(h);
	wrap_ok(h, 0, "rc|1", dek, &w);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"y", 1, m1, &err), HV_OK);
	for (round = 0; round < 2; round++) {
		if (cur->kind == KS_TPM) {
			/* Crash (SIGKILL), then a clean restart. */
			if (round == 0)
				hv_swtpm_kill(&cur->tpm);
			else
				hv_swtpm_stop(&cur->tpm);
			assert_int_equal(hv_swtpm_resume(&cur->tpm), 0);
		} else {
#ifdef HAVE_P11_TEST
			hv_p11_test_break(h,
			    round == 0 ? HV_P11_BREAK_FINALIZE
			               : HV_P11_BREAK_SESSIONS);
#endif
		}
		unwrap_eq(h, &w, "rc|1", dek);
		assert_int_equal(
		    hv_hsm_hmac(h, (const uint8_t *)"y", 1, m2, &err), HV_OK);
		assert_memory_equal(m1, m2, HV_HMAC_LEN);
		wrap_ok(h, 0, "rc|2", dek, &w2);
		unwrap_eq(h, &w2, "rc|2", dek);
	}
	assert_int_equal(hv_hsm_probe(h, &st, &err), HV_OK);
	assert_true(st.reachable);
	if (cur->kind == KS_TPM)
		assert_true(st.reconnects >= 2);
	hv_secret_free(&dek);
	ks_close(&h);
}

/* Unreachable: HV_E_KEYSTORE, never a weaker answer; then recovery.
 * Only the TPM can be taken away here (SoftHSM2 lives in-process). */
static void
test_outage(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct hv_secret *dek, *got = NULL;
	struct wrapped w;
	uint8_t m[HV_HMAC_LEN], out[HV_WRAPPED_MAX], r[16];
	size_t len = 0;
	int i;

	(void)state;
	if (cur->kind != KS_TPM) {
		skip();
		return;
	}
	h = open_fresh();
	dek = random_dek(h);
	wrap_ok(h, 0, "o|1", dek, &w);
	hv_swtpm_stop(&cur->tpm);
	assert_int_equal(hv_hsm_unwrap(h, w.version, (const uint8_t *)"o|1", 3,
	                     w.b, w.len, &got, &err),
	    HV_E_KEYSTORE);
	assert_null(got);
	assert_int_equal(hv_hsm_wrap(h, 0, (const uint8_t *)"o|1", 3, dek, out,
	                     &len, NULL, &err),
	    HV_E_KEYSTORE);
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"o", 1, m, &err), HV_E_KEYSTORE);
	assert_int_equal(hv_hsm_random(h, r, sizeof(r), &err), HV_E_KEYSTORE);
	assert_int_equal(hv_swtpm_resume(&cur->tpm), 0);
	for (i = 0; i < 50; i++) {
		if (hv_hsm_hmac(h, (const uint8_t *)"o", 1, m, &err) == HV_OK)
			break;
		usleep(50 * 1000);
	}
	assert_true(i < 50);
	unwrap_eq(h, &w, "o|1", dek);
	hv_secret_free(&dek);
	ks_close(&h);
}

#define CONC_THREADS 4
#define CONC_ROUNDS  25

struct conc {
	struct hv_hsm *h;
	int id;
	const uint8_t *mac_want;
	int failures;
};

static void *
conc_main(void *arg)
{
	struct conc *c = arg;
	struct hv_err err = {0};
	struct hv_secret *dek = NULL, *got = NULL;
	uint8_t w[HV_WRAPPED_MAX], mac[HV_HMAC_LEN];
	char aad[48];
	size_t len;
	uint32_t v;
	int i;

	for (i = 0; i < CONC_ROUNDS; i++) {
		dek = hv_secret_new(HV_DEK_LEN);
		if (dek == NULL ||
		    hv_hsm_random(c->h, dek->buf, HV_DEK_LEN, &err) != HV_OK) {
			c->failures++;
			hv_secret_free(&dek);
			continue;
		}
		snprintf(aad, sizeof(aad), "t%d|c%d|1", c->id, i);
		len = 0;
		if (hv_hsm_wrap(c->h, 0, (const uint8_t *)aad, strlen(aad), dek,
		        w, &len, &v, &err) != HV_OK ||
		    hv_hsm_unwrap(c->h, v, (const uint8_t *)aad, strlen(aad), w,
		        len, &got, &err) != HV_OK ||
		    memcmp(got->buf, dek->buf, HV_DEK_LEN) != 0)
			c->failures++;
		hv_secret_free(&got);
		hv_secret_free(&dek);
		if (hv_hsm_hmac(c->h, (const uint8_t *)"shared", 6, mac,
		        &err) != HV_OK ||
		    memcmp(mac, c->mac_want, HV_HMAC_LEN) != 0)
			c->failures++;
		if (c->id == 0 && i == CONC_ROUNDS / 2 &&
		    hv_hsm_kek_create(c->h, &v, &err) != HV_OK)
			c->failures++;
	}
	return NULL;
}

static void
test_concurrency(void **state)
{
	struct hv_hsm *h;
	struct hv_err err = {0};
	struct conc c[CONC_THREADS];
	pthread_t th[CONC_THREADS];
	uint8_t want[HV_HMAC_LEN];
	int i;

	(void)state;
	h = open_fresh();
	assert_int_equal(
	    hv_hsm_hmac(h, (const uint8_t *)"shared", 6, want, &err), HV_OK);
	for (i = 0; i < CONC_THREADS; i++) {
		c[i] = (struct conc){.h = h, .id = i, .mac_want = want};
		assert_int_equal(
		    pthread_create(&th[i], NULL, conc_main, &c[i]), 0);
	}
	for (i = 0; i < CONC_THREADS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(c[i].failures, 0);
	}
	ks_close(&h);
}

/* ------------------------------------------------------------------ */

static int
each_setup(void **state)
{
	(void)state;
	cur->ns = ++cur->seq;
	return 0;
}

static int
each_teardown(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < 4; i++)
		if (live[i] != NULL)
			hv_hsm_close(&live[i]);
	return 0;
}

static int
group_setup_p11(void **state)
{
	(void)state;
	cur = &fx_p11;
	hv_test_token_new(&fx_p11.tok, "conformance");
	return 0;
}

static int
group_teardown_p11(void **state)
{
	(void)state;
	hv_test_token_destroy(&fx_p11.tok);
	return 0;
}

static int
group_setup_tpm(void **state)
{
	(void)state;
	cur = &fx_tpm;
	hv_swtpm_start(&fx_tpm.tpm);
	return 0;
}

static int
group_teardown_tpm(void **state)
{
	(void)state;
	hv_swtpm_destroy(&fx_tpm.tpm);
	return 0;
}

#define T(f) cmocka_unit_test_setup_teardown(f, each_setup, each_teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_ensure_keys),
	    T(test_round_trip),
	    T(test_aad_binding),
	    T(test_tamper),
	    T(test_kek_rotation),
	    T(test_old_version_unwraps),
	    T(test_rewrap),
	    T(test_disabled_refuses),
	    T(test_hmac),
	    T(test_hmac_empty),
	    T(test_random),
	    T(test_persistence),
	    T(test_reconnect),
	    T(test_outage),
	    T(test_concurrency),
	};
	const char *only = getenv("HV_KEYSTORE_ONLY");
	int failed = 0;

	hv_log_set_level(HV_LOG_ERROR);
	setenv("TSS2_LOG", "all+none", 0);
	if (only == NULL || strcmp(only, "pkcs11") == 0)
		failed += cmocka_run_group_tests_name("keystore_pkcs11", tests,
		    group_setup_p11, group_teardown_p11);
	if (only == NULL || strcmp(only, "tpm") == 0)
		failed += cmocka_run_group_tests_name(
		    "keystore_tpm", tests, group_setup_tpm, group_teardown_tpm);
	return failed;
}
