/*
 * Unit tests of envelope: AES-256-GCM known answers (NIST), tamper and
 * binding failures, and seal/open/rewrap through a real SoftHSM2 token.
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

#include "envelope.h"
#include "hsm.h"
#include "testenv.h"
#include "uuid.h"

#define WS    "6f1d2c3b-4a59-4e68-8f77-0a1b2c3d4e5f"
#define WS2   "6f1d2c3b-4a59-4e68-8f77-0a1b2c3d4e60"
#define CRED  "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f60"
#define CRED2 "0d9e8f7a-6b5c-4d3e-9f2a-1b2c3d4e5f61"

/*
 * AES-256-GCM, 96-bit IV, 128-bit tag. Cases 13-16 of the GCM
 * specification (McGrew and Viega), which NIST SP 800-38D's validation
 * suite includes, and count 0 of CAVP gcmEncryptExtIV256.rsp
 * (PTlen 0, AADlen 0).
 */
struct kat {
	const char *name, *key, *iv, *pt, *aad, *ct, *tag;
};

static const struct kat kats[] = {
    {"gcm-tc13",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000", "", "", "",
        "530f8afbc74536b9a963b4f1c4cb738b"},
    {"gcm-tc14",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000", "00000000000000000000000000000000", "",
        "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"gcm-tc15",
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        "",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        "b094dac5d93471bdec1a502270e3cc6c"},
    {"gcm-tc16-aad",
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        "76fc6ece0f4e1768cddf8853bb2d551b"},
    {"cavp-256-96-count0",
        "b52c505a37d78eda5dd34f20c22540ea1b58963cf8e5bf8ffa85f9f2492505b4",
        "516c33929df5a3284ff463d7", "", "", "",
        "bdc1ac884d332457a1d2664f168c76f0"},
};

static size_t
unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t n = strlen(h) / 2, i;

	assert_true(n <= cap);
	for (i = 0; i < n; i++) {
		unsigned int v;

		assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static struct hv_secret *
secret_hex(const char *h)
{
	uint8_t buf[256];
	size_t n = unhex(h, buf, sizeof(buf));
	struct hv_secret *s = hv_secret_from(buf, n);

	assert_non_null(s);
	return s;
}

static void
test_kat(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(kats) / sizeof(kats[0]); i++) {
		const struct kat *k = &kats[i];
		struct hv_secret *key = secret_hex(k->key), *pt = NULL;
		uint8_t iv[12], p[128], aad[64], ct[128], tag[16], rec[160];
		size_t plen, alen, clen, rlen = 0;
		struct hv_err err = {0};

		assert_int_equal(unhex(k->iv, iv, sizeof(iv)), 12);
		plen = unhex(k->pt, p, sizeof(p));
		alen = unhex(k->aad, aad, sizeof(aad));
		clen = unhex(k->ct, ct, sizeof(ct));
		assert_int_equal(unhex(k->tag, tag, sizeof(tag)), 16);
		assert_int_equal(plen, clen);
		print_message("%s\n", k->name);
		assert_int_equal(
		    hv_aead_seal(key, iv, alen ? aad : NULL, alen,
		        plen ? p : NULL, plen, rec, sizeof(rec), &rlen, &err),
		    HV_OK);
		assert_int_equal(rlen, 1 + clen + 16);
		assert_int_equal(rec[0], HV_ENVELOPE_FMT_V1);
		assert_memory_equal(rec + 1, ct, clen);
		assert_memory_equal(rec + 1 + clen, tag, 16);
		assert_int_equal(hv_aead_open(key, iv, alen ? aad : NULL, alen,
		                     rec, rlen, &pt, &err),
		    HV_OK);
		assert_int_equal(pt->len, plen);
		if (plen > 0)
			assert_memory_equal(pt->buf, p, plen);
		hv_secret_free(&pt);
		hv_secret_free(&key);
	}
}

/* Every single-bit flip of record, nonce or AAD fails to open. */
static void
test_tamper(void **state)
{
	const struct kat *k = &kats[3]; /* with AAD */
	struct hv_secret *key = secret_hex(k->key), *pt = NULL;
	uint8_t iv[12], p[128], aad[64], rec[160];
	size_t plen, alen, rlen = 0, i;
	struct hv_err err = {0};
	int bit;

	(void)state;
	unhex(k->iv, iv, sizeof(iv));
	plen = unhex(k->pt, p, sizeof(p));
	alen = unhex(k->aad, aad, sizeof(aad));
	assert_int_equal(hv_aead_seal(key, iv, aad, alen, p, plen, rec,
	                     sizeof(rec), &rlen, &err),
	    HV_OK);
	for (i = 0; i < rlen; i++) {
		for (bit = 0; bit < 8; bit++) {
			rec[i] ^= (uint8_t)(1u << bit);
			assert_int_equal(hv_aead_open(key, iv, aad, alen, rec,
			                     rlen, &pt, &err),
			    HV_E_CRYPTO);
			assert_null(pt);
			rec[i] ^= (uint8_t)(1u << bit);
		}
	}
	for (i = 0; i < 12; i++) {
		iv[i] ^= 0x01;
		assert_int_equal(
		    hv_aead_open(key, iv, aad, alen, rec, rlen, &pt, &err),
		    HV_E_CRYPTO);
		iv[i] ^= 0x01;
	}
	for (i = 0; i < alen; i++) {
		aad[i] ^= 0x80;
		assert_int_equal(
		    hv_aead_open(key, iv, aad, alen, rec, rlen, &pt, &err),
		    HV_E_CRYPTO);
		aad[i] ^= 0x80;
	}
	/* missing AAD, truncated record, short record, wrong key */
	assert_int_equal(
	    hv_aead_open(key, iv, NULL, 0, rec, rlen, &pt, &err), HV_E_CRYPTO);
	assert_int_equal(
	    hv_aead_open(key, iv, aad, alen, rec, rlen - 1, &pt, &err),
	    HV_E_CRYPTO);
	assert_int_equal(
	    hv_aead_open(key, iv, aad, alen, rec, 16, &pt, &err), HV_E_CRYPTO);
	assert_int_equal(
	    hv_aead_open(key, iv, aad, alen, rec, 0, &pt, &err), HV_E_CRYPTO);
	assert_null(strstr(err.msg, "d931")); /* no data in messages */
	key->buf[0] ^= 1;
	assert_int_equal(hv_aead_open(key, iv, aad, alen, rec, rlen, &pt, &err),
	    HV_E_CRYPTO);
	key->buf[0] ^= 1;
	/* intact: still opens (the loops restored every byte) */
	assert_int_equal(
	    hv_aead_open(key, iv, aad, alen, rec, rlen, &pt, &err), HV_OK);
	hv_secret_free(&pt);
	/* a DEK of the wrong size is our bug, not a forgery */
	key->len = 16;
	assert_int_equal(hv_aead_seal(key, iv, aad, alen, p, plen, rec,
	                     sizeof(rec), &rlen, &err),
	    HV_E_INTERNAL);
	key->len = 32;
	assert_int_equal(hv_aead_seal(key, iv, aad, alen, p, plen, rec,
	                     plen + 16, &rlen, &err),
	    HV_E_INTERNAL); /* too small */
	hv_secret_free(&key);
}

static void
test_aad_layout(void **state)
{
	uint8_t a[HV_ENVELOPE_AAD_MAX], b[HV_ENVELOPE_AAD_MAX];
	uint8_t ws[16], cred[16];
	size_t alen = 0, blen = 0;
	struct hv_err err = {0};

	(void)state;
	assert_int_equal(hv_envelope_aad(HV_AAD_PAYLOAD, WS, CRED, 0x01020304,
	                     a, &alen, &err),
	    HV_OK);
	assert_int_equal(alen, HV_ENVELOPE_AAD_LEN_PAYLOAD);
	assert_int_equal(alen, 20 + 16 + 16 + 4);
	assert_memory_equal(a, "hsmvault/payload/v1\0", 20);
	assert_true(hv_uuid_parse(WS, ws));
	assert_true(hv_uuid_parse(CRED, cred));
	assert_memory_equal(a + 20, ws, 16);
	assert_memory_equal(a + 36, cred, 16);
	assert_memory_equal(a + 52, "\x01\x02\x03\x04", 4);

	assert_int_equal(
	    hv_envelope_aad(HV_AAD_DEK, WS, CRED, 0x01020304, b, &blen, &err),
	    HV_OK);
	assert_int_equal(blen, HV_ENVELOPE_AAD_LEN_DEK);
	assert_memory_equal(b, "hsmvault/dek/v1\0", 16);
	assert_memory_equal(b + 16, a + 20, 36);

	/* case of the ids does not matter: they are parsed */
	assert_int_equal(hv_envelope_aad(HV_AAD_PAYLOAD,
	                     "6F1D2C3B-4A59-4E68-8F77-0A1B2C3D4E5F", CRED,
	                     0x01020304, b, &blen, &err),
	    HV_OK);
	assert_memory_equal(a, b, alen);

	assert_int_equal(
	    hv_envelope_aad(HV_AAD_PAYLOAD, "nope", CRED, 1, b, &blen, &err),
	    HV_E_INVALID);
	assert_non_null(strstr(err.msg, "workspace"));
	assert_int_equal(
	    hv_envelope_aad(HV_AAD_PAYLOAD, WS, "", 1, b, &blen, &err),
	    HV_E_INVALID);
	assert_non_null(strstr(err.msg, "credential"));
}

static void *
aead_thread(void *arg)
{
	struct hv_secret *key = arg, *pt = NULL;
	uint8_t iv[12] = {0}, msg[200], rec[256];
	size_t rlen = 0;
	struct hv_err err = {0};
	int i;

	for (i = 0; i < 2000; i++) {
		memset(msg, i & 0xff, sizeof(msg));
		iv[0] = (uint8_t)i;
		iv[1] = (uint8_t)(i >> 8);
		if (hv_aead_seal(key, iv, msg, 8, msg, sizeof(msg), rec,
		        sizeof(rec), &rlen, &err) != HV_OK ||
		    hv_aead_open(key, iv, msg, 8, rec, rlen, &pt, &err) !=
		        HV_OK ||
		    pt->len != sizeof(msg) ||
		    memcmp(pt->buf, msg, sizeof(msg)) != 0)
			return (void *)1;
		hv_secret_free(&pt);
		rec[5] ^= 1; /* a failure in between must not poison */
		if (hv_aead_open(key, iv, msg, 8, rec, rlen, &pt, &err) !=
		    HV_E_CRYPTO)
			return (void *)1;
	}
	return NULL;
}

/* Per-thread contexts: concurrent use stays correct. */
static void
test_threads(void **state)
{
	pthread_t t[4];
	struct hv_secret *key = hv_secret_new(32);
	void *r;
	int i;

	(void)state;
	assert_non_null(key);
	memset(key->buf, 0x42, 32);
	for (i = 0; i < 4; i++)
		assert_int_equal(
		    pthread_create(&t[i], NULL, aead_thread, key), 0);
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], &r), 0);
		assert_null(r);
	}
	hv_secret_free(&key);
}

/* ---- through SoftHSM2 ---- */

struct fx {
	struct hv_test_token tok;
	struct hv_hsm_config cfg;
	struct hv_hsm *h;
};

static int
setup_hsm(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct hv_err err = {0};

	assert_non_null(f);
	hv_test_token_new(&f->tok, "hvenvelope");
	f->cfg.keystore = "pkcs11";
	f->cfg.p11_module = HV_TEST_SOFTHSM_MODULE;
	f->cfg.p11_token = f->tok.uri;
	f->cfg.p11_pin = HV_TEST_PIN;
	if (hv_hsm_open(&f->cfg, &f->h, &err) != HV_OK ||
	    hv_hsm_ensure_keys(f->h, true, &err) != HV_OK) {
		print_error("key store: %s\n", err.msg);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown_hsm(void **state)
{
	struct fx *f = *state;

	hv_hsm_close(&f->h);
	hv_test_token_destroy(&f->tok);
	free(f);
	return 0;
}

static struct hv_secret *
text_secret(const char *s)
{
	struct hv_secret *x = hv_secret_from(s, strlen(s));

	assert_non_null(x);
	return x;
}

static void
seal(struct fx *f, const char *ws, const char *cred, uint32_t ver,
    const char *text, struct hv_envelope *e)
{
	struct hv_secret *pt = text_secret(text);
	struct hv_err err = {0};

	hv_envelope_init(e);
	assert_int_equal(
	    hv_envelope_seal(f->h, ws, cred, ver, pt, e, &err), HV_OK);
	hv_secret_free(&pt);
}

static void
test_seal_open(void **state)
{
	struct fx *f = *state;
	const char *text = "{\"key\":\"sk_live_0123456789\"}";
	struct hv_envelope e, e2;
	struct hv_secret *pt = NULL, *dek = NULL;
	struct hv_err err = {0};

	seal(f, WS, CRED, 1, text, &e);
	assert_int_equal(e.ct_len, strlen(text) + HV_ENVELOPE_OVERHEAD);
	assert_int_equal(e.ct[0], HV_ENVELOPE_FMT_V1);
	assert_true(e.wrapped_len > 0 && e.wrapped_len <= HV_WRAPPED_MAX);
	assert_true(e.kek_version >= 1);
	assert_null(memmem(e.ct, e.ct_len, "sk_live", 7));
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED, 1, &e, &pt, &err), HV_OK);
	assert_int_equal(pt->len, strlen(text));
	assert_memory_equal(pt->buf, text, pt->len);
	hv_secret_free(&pt);

	/* the two halves give the same answer (DEK cache path) */
	assert_int_equal(hv_envelope_unwrap_dek(f->h, WS, CRED, 1, e.wrapped,
	                     e.wrapped_len, e.kek_version, &dek, &err),
	    HV_OK);
	assert_int_equal(dek->len, HV_DEK_LEN);
	assert_int_equal(
	    hv_envelope_open_dek(dek, WS, CRED, 1, &e, &pt, &err), HV_OK);
	assert_memory_equal(pt->buf, text, pt->len);
	hv_secret_free(&pt);
	hv_secret_free(&dek);

	/* same plaintext, same ids: fresh DEK and nonce each time */
	seal(f, WS, CRED, 1, text, &e2);
	assert_memory_not_equal(e.nonce, e2.nonce, HV_ENVELOPE_NONCE_LEN);
	assert_memory_not_equal(e.ct + 1, e2.ct + 1, e.ct_len - 1);
	hv_envelope_release(&e2);

	/* empty payload */
	seal(f, WS, CRED, 2, "", &e2);
	assert_int_equal(e2.ct_len, HV_ENVELOPE_OVERHEAD);
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED, 2, &e2, &pt, &err), HV_OK);
	assert_int_equal(pt->len, 0);
	hv_secret_free(&pt);
	hv_envelope_release(&e2);
	assert_null(e2.ct);

	hv_envelope_release(&e);
	hv_envelope_release(&e); /* twice is fine */
	hv_envelope_release(NULL);
}

static void
test_binding(void **state)
{
	struct fx *f = *state;
	struct hv_envelope e, o, x;
	struct hv_secret *pt = NULL;
	struct hv_err err = {0};
	size_t i;

	seal(f, WS, CRED, 3, "payload-A", &e);
	seal(f, WS, CRED2, 3, "payload-B", &o);

	/* other credential, other version, other workspace: refused */
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED2, 3, &e, &pt, &err), HV_E_CRYPTO);
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED, 4, &e, &pt, &err), HV_E_CRYPTO);
	assert_int_equal(
	    hv_envelope_open(f->h, WS2, CRED, 3, &e, &pt, &err), HV_E_CRYPTO);
	assert_null(pt);
	assert_int_equal(hv_envelope_open(f->h, "bad", CRED, 3, &e, &pt, &err),
	    HV_E_INVALID);

	/* A's wrapped DEK moved onto B's row: B's ids do not unwrap it */
	x = o;
	memcpy(x.wrapped, e.wrapped, e.wrapped_len);
	x.wrapped_len = e.wrapped_len;
	x.kek_version = e.kek_version;
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED2, 3, &x, &pt, &err), HV_E_CRYPTO);
	/* B's ciphertext with A's (valid) DEK: GCM refuses */
	x = e;
	x.ct = o.ct;
	x.ct_len = o.ct_len;
	memcpy(x.nonce, o.nonce, sizeof(x.nonce));
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED, 3, &x, &pt, &err), HV_E_CRYPTO);
	assert_null(pt);

	/* tampering: a bit of the wrapped DEK, nonce, record, tag, format */
	x = e;
	for (i = 0; i < e.wrapped_len; i += 7) {
		x.wrapped[i] ^= 0x10;
		assert_int_equal(
		    hv_envelope_open(f->h, WS, CRED, 3, &x, &pt, &err),
		    HV_E_CRYPTO);
		x.wrapped[i] ^= 0x10;
	}
	x.wrapped_len = e.wrapped_len - 1;
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED, 3, &x, &pt, &err), HV_E_CRYPTO);
	x.wrapped_len = e.wrapped_len;
	x.nonce[11] ^= 1;
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED, 3, &x, &pt, &err), HV_E_CRYPTO);
	x.nonce[11] ^= 1;
	for (i = 0; i < e.ct_len; i++) {
		e.ct[i] ^= 0x04; /* format byte, ciphertext and tag */
		assert_int_equal(
		    hv_envelope_open(f->h, WS, CRED, 3, &e, &pt, &err),
		    HV_E_CRYPTO);
		e.ct[i] ^= 0x04;
	}
	assert_null(pt);
	assert_null(strstr(err.msg, "payload"));
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED, 3, &e, &pt, &err), HV_OK);
	assert_memory_equal(pt->buf, "payload-A", 9);
	hv_secret_free(&pt);
	hv_envelope_release(&e);
	hv_envelope_release(&o);
}

static void
test_rewrap(void **state)
{
	struct fx *f = *state;
	struct hv_envelope e, moved;
	struct hv_secret *pt = NULL;
	struct hv_err err = {0};
	uint8_t out[HV_WRAPPED_MAX], ct_before[64];
	size_t out_len = 0;
	uint32_t old_kek, new_kek = 0, created = 0;

	seal(f, WS, CRED, 7, "rotate me", &e);
	old_kek = e.kek_version;
	memcpy(ct_before, e.ct, e.ct_len);

	assert_int_equal(hv_hsm_kek_create(f->h, &created, &err), HV_OK);
	assert_true(created > old_kek);
	assert_int_equal(
	    hv_envelope_rewrap(f->h, WS, CRED, 7, e.wrapped, e.wrapped_len,
	        old_kek, out, &out_len, &new_kek, &err),
	    HV_OK);
	assert_int_equal(new_kek, created);
	assert_true(out_len > 0);

	/* the payload is untouched and opens under the new wrapping */
	moved = e;
	memcpy(moved.wrapped, out, out_len);
	moved.wrapped_len = out_len;
	moved.kek_version = new_kek;
	assert_memory_equal(moved.ct, ct_before, e.ct_len);
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED, 7, &moved, &pt, &err), HV_OK);
	assert_memory_equal(pt->buf, "rotate me", 9);
	hv_secret_free(&pt);
	/* the new wrapping names its KEK: claiming the old one fails */
	moved.kek_version = old_kek;
	assert_int_not_equal(
	    hv_envelope_open(f->h, WS, CRED, 7, &moved, &pt, &err), HV_OK);
	assert_null(pt);
	moved.kek_version = new_kek;

	/* rewrap is bound to the ids too */
	assert_int_equal(
	    hv_envelope_rewrap(f->h, WS, CRED2, 7, e.wrapped, e.wrapped_len,
	        old_kek, out, &out_len, &new_kek, &err),
	    HV_E_CRYPTO);

	/* once the old KEK is disabled only the re-wrapped copy opens */
	assert_int_equal(hv_hsm_kek_disable(f->h, old_kek, &err), HV_OK);
	assert_int_not_equal(
	    hv_envelope_open(f->h, WS, CRED, 7, &e, &pt, &err), HV_OK);
	assert_null(pt);
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED, 7, &moved, &pt, &err), HV_OK);
	hv_secret_free(&pt);

	/* new seals use the newest KEK */
	hv_envelope_release(&e);
	seal(f, WS, CRED, 8, "after rotation", &e);
	assert_int_equal(e.kek_version, created);
	hv_envelope_release(&e);
}

static void
test_limits(void **state)
{
	struct fx *f = *state;
	struct hv_envelope e;
	struct hv_secret *big, *pt = NULL;
	struct hv_err err = {0};
	long n;
	enum hv_rc rc;

	hv_envelope_init(&e);
	big = hv_secret_new(HV_ENVELOPE_MAX_PLAINTEXT + 1);
	assert_non_null(big);
	assert_int_equal(
	    hv_envelope_seal(f->h, WS, CRED, 1, big, &e, &err), HV_E_TOO_LARGE);
	assert_null(e.ct);
	big->len = HV_ENVELOPE_MAX_PLAINTEXT;
	assert_int_equal(
	    hv_envelope_seal(f->h, WS, CRED, 1, big, &e, &err), HV_OK);
	assert_int_equal(
	    hv_envelope_open(f->h, WS, CRED, 1, &e, &pt, &err), HV_OK);
	assert_int_equal(pt->len, HV_ENVELOPE_MAX_PLAINTEXT);
	hv_secret_free(&pt);
	hv_envelope_release(&e);
	hv_secret_free(&big);

	/* allocation failures: a clean error, nothing half-built */
	big = text_secret("abc");
	for (n = 1; n < 20; n++) {
		hv_mem_fail_after(n);
		rc = hv_envelope_seal(f->h, WS, CRED, 1, big, &e, &err);
		hv_mem_fail_after(0);
		if (rc == HV_OK) {
			hv_envelope_release(&e);
			break;
		}
		assert_int_equal(rc, HV_E_NOMEM);
		assert_null(e.ct);
	}
	hv_secret_free(&big);
}

int
main(void)
{
	const struct CMUnitTest plain[] = {
	    cmocka_unit_test(test_kat),
	    cmocka_unit_test(test_tamper),
	    cmocka_unit_test(test_aad_layout),
	    cmocka_unit_test(test_threads),
	};
	const struct CMUnitTest hsm[] = {
	    cmocka_unit_test(test_seal_open),
	    cmocka_unit_test(test_binding),
	    cmocka_unit_test(test_rewrap),
	    cmocka_unit_test(test_limits),
	};
	int rc;

	rc = cmocka_run_group_tests_name("aead", plain, NULL, NULL);
	rc |= cmocka_run_group_tests_name(
	    "envelope-softhsm2", hsm, setup_hsm, teardown_hsm);
	return rc;
}
