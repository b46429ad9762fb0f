/*
 * Unit tests of base62 and apikey: codec known answers and limits, key
 * format (every single-character mutation is rejected), and the key-store
 * hash through a real SoftHSM2 token.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "apikey.h"
#include "base62.h"
#include "hsm.h"
#include "testenv.h"

static const char digits[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Exact check of hv_base62_width(n): 62^(w-1) < 256^n <= 62^w. */
static int
cmp_pow(size_t w, size_t n)
{
	/* big-endian byte numbers of 62^w and 256^n in 100 bytes */
	uint8_t a[100] = {0}, b[100] = {0};
	size_t i, k;

	a[99] = 1;
	for (k = 0; k < w; k++) {
		unsigned int carry = 0;

		for (i = 100; i > 0; i--) {
			carry += a[i - 1] * 62u;
			a[i - 1] = (uint8_t)carry;
			carry >>= 8;
		}
		assert_int_equal(carry, 0);
	}
	b[99 - n] = 1;
	return memcmp(a, b, sizeof(a));
}

static void
test_base62_width(void **state)
{
	size_t n, w;

	(void)state;
	assert_int_equal(hv_base62_width(0), 0);
	assert_int_equal(hv_base62_width(HV_BASE62_MAX_BYTES + 1), 0);
	assert_int_equal(hv_base62_width(4), 6);
	assert_int_equal(hv_base62_width(32), 43);
	assert_int_equal(
	    hv_base62_width(HV_BASE62_MAX_BYTES), HV_BASE62_MAX_DIGITS);
	for (n = 1; n <= HV_BASE62_MAX_BYTES; n++) {
		w = hv_base62_width(n);
		assert_true(cmp_pow(w, n) >= 0);    /* 62^w >= 256^n */
		assert_true(cmp_pow(w - 1, n) < 0); /* minimal */
	}
}

static void
test_base62_codec(void **state)
{
	static const uint8_t v256[] = {0x01, 0x00};
	uint8_t ff[32], r[64], back[64];
	char s[HV_BASE62_MAX_DIGITS + 1];
	size_t n, i;
	int round;

	(void)state;
	/* known answers: 61 = "z", 62 = "10", 255 = "47", 256 = "48" */
	r[0] = 61;
	assert_true(hv_base62_encode(r, 1, s, 2));
	assert_string_equal(s, "0z");
	r[0] = 62;
	assert_true(hv_base62_encode(r, 1, s, 2));
	assert_string_equal(s, "10");
	r[0] = 255;
	assert_true(hv_base62_encode(r, 1, s, 2));
	assert_string_equal(s, "47");
	assert_true(hv_base62_encode(v256, 2, s, 3));
	assert_string_equal(s, "048");
	/* does not fit: 256 needs 2 digits */
	assert_false(hv_base62_encode(v256, 2, s, 1));
	assert_string_equal(s, "");
	/* zero and all-ones at full width */
	memset(r, 0, 32);
	assert_true(hv_base62_encode(r, 32, s, 43));
	assert_int_equal(strspn(s, "0"), 43);
	memset(ff, 0xff, sizeof(ff));
	assert_true(hv_base62_encode(ff, 32, s, 43));
	assert_int_equal(strlen(s), 43);
	assert_true(hv_base62_decode(s, 43, back, 32));
	assert_memory_equal(back, ff, 32);
	/* decode known answers and failures */
	assert_true(hv_base62_decode("47", 2, back, 1));
	assert_int_equal(back[0], 255);
	assert_false(hv_base62_decode("48", 2, back, 1)); /* overflow */
	assert_false(hv_base62_decode("zzzz", 4, back, 2));
	assert_false(hv_base62_decode("4_", 2, back, 1)); /* alphabet */
	assert_false(hv_base62_decode("4+", 2, back, 1));
	assert_false(hv_base62_decode("\xc3\xa9", 2, back, 1));
	assert_true(hv_base62_decode("", 0, back, 1));
	assert_int_equal(back[0], 0);
	assert_false(hv_base62_encode(r, HV_BASE62_MAX_BYTES + 1, s, 10));
	assert_false(hv_base62_decode("1", 1, back, HV_BASE62_MAX_BYTES + 1));
	for (i = 0; i < 62; i++)
		assert_true(hv_base62_is_digit(digits[i]));
	assert_false(hv_base62_is_digit('_'));
	assert_false(hv_base62_is_digit('\0'));
	/* random round trips of every length; order is preserved */
	for (round = 0; round < 200; round++) {
		n = (size_t)(round % HV_BASE62_MAX_BYTES) + 1;
		assert_int_equal(RAND_bytes(r, (int)n), 1);
		assert_true(hv_base62_encode(r, n, s, hv_base62_width(n)));
		assert_int_equal(strlen(s), hv_base62_width(n));
		assert_true(hv_base62_decode(s, strlen(s), back, n));
		assert_memory_equal(back, r, n);
	}
}

/* The documented checksum: base62(SHA-256(prefix || body)[0..4]), 6. */
static void
expected_check(const char *key, size_t len, char out[7])
{
	uint8_t md[32];
	unsigned int mdlen = 0;

	assert_int_equal(
	    EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL), 1);
	assert_true(hv_base62_encode(md, 4, out, 6));
}

static void
test_generate(void **state)
{
	struct hv_secret *a = NULL, *b = NULL;
	struct hv_err err = {0};
	char check[7], hint[HV_APIKEY_HINT_MAX];
	const char *k;

	(void)state;
	assert_int_equal(hv_apikey_generate(NULL, &a, &err), HV_OK);
	k = (const char *)a->buf;
	assert_int_equal(a->len, 6 + 43 + 6);
	assert_int_equal(strlen(k), a->len); /* NUL-terminated */
	assert_memory_equal(k, "hv_sk_", 6);
	assert_int_equal(strspn(k + 6, digits), 49);
	expected_check(k, 6 + 43, check);
	assert_memory_equal(k + 49, check, 6);
	assert_true(hv_apikey_format_ok(NULL, k));
	assert_true(hv_apikey_format_ok("hv_sk_", k));
	assert_true(hv_apikey_hint(NULL, k, hint));
	assert_int_equal(strlen(hint), 10);
	assert_memory_equal(hint, k, 10);

	assert_int_equal(hv_apikey_generate("hv_sk_", &b, &err), HV_OK);
	assert_string_not_equal(k, (const char *)b->buf);
	hv_secret_free(&b);

	/* custom prefix */
	assert_int_equal(hv_apikey_generate("acme-ci_", &b, &err), HV_OK);
	assert_int_equal(b->len, 8 + 49);
	assert_true(hv_apikey_format_ok("acme-ci_", (const char *)b->buf));
	assert_false(hv_apikey_format_ok(NULL, (const char *)b->buf));
	assert_false(hv_apikey_format_ok("acme-ci_", k));
	hv_secret_free(&b);

	/* bad prefixes */
	assert_int_equal(hv_apikey_generate("", &b, &err), HV_E_CONFIG);
	assert_int_equal(hv_apikey_generate("hv sk", &b, &err), HV_E_CONFIG);
	assert_int_equal(hv_apikey_generate("hv:sk_", &b, &err), HV_E_CONFIG);
	assert_int_equal(
	    hv_apikey_generate("p23456789012345678901234567890123", &b, &err),
	    HV_E_CONFIG);
	assert_null(b);
	assert_true(hv_apikey_prefix_ok("p2345678901234567890123456789012"));
	assert_false(hv_apikey_prefix_ok(NULL));
	hv_secret_free(&a);
}

static void
test_mutations(void **state)
{
	static const char extra[] = "_-+/=. \t\x7f\xc3";
	struct hv_secret *a = NULL;
	struct hv_err err = {0};
	char key[HV_APIKEY_MAX_LEN + 8], check[7], hint[HV_APIKEY_HINT_MAX];
	size_t len, i, j;
	int round;

	(void)state;
	for (round = 0; round < 3; round++) {
		assert_int_equal(hv_apikey_generate(NULL, &a, &err), HV_OK);
		len = a->len;
		memcpy(key, a->buf, len + 1);
		hv_secret_free(&a);
		assert_true(hv_apikey_format_ok(NULL, key));
		/* every single-character substitution fails */
		for (i = 0; i < len; i++) {
			char orig = key[i];

			for (j = 0; j < 62; j++) {
				if (digits[j] == orig)
					continue;
				key[i] = digits[j];
				assert_false(hv_apikey_format_ok(NULL, key));
			}
			for (j = 0; j < sizeof(extra) - 1; j++) {
				if (extra[j] == orig)
					continue;
				key[i] = extra[j];
				assert_false(hv_apikey_format_ok(NULL, key));
			}
			key[i] = orig;
		}
		/* swapping two adjacent different characters fails */
		for (i = 6; i + 1 < len; i++) {
			char t = key[i];

			if (key[i] == key[i + 1])
				continue;
			key[i] = key[i + 1];
			key[i + 1] = t;
			assert_false(hv_apikey_format_ok(NULL, key));
			key[i + 1] = key[i];
			key[i] = t;
		}
		assert_true(hv_apikey_format_ok(NULL, key));
		/* too short, too long, wrong prefix */
		check[0] = key[len - 1];
		key[len - 1] = '\0';
		assert_false(hv_apikey_format_ok(NULL, key));
		key[len - 1] = check[0];
		key[len] = 'A';
		key[len + 1] = '\0';
		assert_false(hv_apikey_format_ok(NULL, key));
		key[len] = '\0';
		assert_true(hv_apikey_format_ok(NULL, key));
		assert_false(hv_apikey_format_ok("hv_sk", key));
		assert_false(hv_apikey_format_ok("hv_sk_x", key));
		key[0] = 'H';
		assert_false(hv_apikey_format_ok(NULL, key));
		assert_false(hv_apikey_format_ok("hv_pk_", key));
	}
	assert_false(hv_apikey_format_ok(NULL, ""));
	assert_false(hv_apikey_format_ok(NULL, "hv_sk_"));
	assert_false(hv_apikey_format_ok(NULL, NULL));
	assert_false(hv_apikey_format_ok("bad prefix", "bad prefix"));
	assert_false(hv_apikey_hint(NULL, "hv_sk_nope", hint));
	assert_string_equal(hint, "");

	/*
	 * A body above 2^256 with a correct checksum is still refused: a
	 * generated key can never have it.
	 */
	memcpy(key, "hv_sk_", 6);
	memset(key + 6, 'z', 43);
	expected_check(key, 49, check);
	memcpy(key + 49, check, 6);
	key[55] = '\0';
	assert_false(hv_apikey_format_ok(NULL, key));
	/* while the largest 256-bit body with its checksum passes */
	{
		uint8_t ff[32];

		memset(ff, 0xff, sizeof(ff));
		assert_true(hv_base62_encode(ff, 32, key + 6, 43));
		expected_check(key, 49, check);
		memcpy(key + 49, check, 6);
		key[55] = '\0';
		assert_true(hv_apikey_format_ok(NULL, key));
	}
}

static void
test_hash(void **state)
{
	struct hv_test_token tok;
	struct hv_hsm_config cfg = {0};
	struct hv_hsm *h = NULL;
	struct hv_secret *a = NULL, *b = NULL;
	struct hv_err err = {0};
	uint8_t ha[HV_HMAC_LEN], ha2[HV_HMAC_LEN], hb[HV_HMAC_LEN];
	uint8_t raw[HV_HMAC_LEN], msg[128];
	char long_key[HV_APIKEY_MAX_LEN + 2];

	(void)state;
	hv_test_token_new(&tok, "hvapikey");
	cfg.keystore = "pkcs11";
	cfg.p11_module = HV_TEST_SOFTHSM_MODULE;
	cfg.p11_token = tok.uri;
	cfg.p11_pin = HV_TEST_PIN;
	assert_int_equal(hv_hsm_open(&cfg, &h, &err), HV_OK);
	assert_int_equal(hv_hsm_ensure_keys(h, true, &err), HV_OK);

	assert_int_equal(hv_apikey_generate(NULL, &a, &err), HV_OK);
	assert_int_equal(hv_apikey_generate(NULL, &b, &err), HV_OK);
	assert_int_equal(
	    hv_apikey_hash(h, (const char *)a->buf, ha, &err), HV_OK);
	assert_int_equal(
	    hv_apikey_hash(h, (const char *)a->buf, ha2, &err), HV_OK);
	assert_memory_equal(ha, ha2, HV_HMAC_LEN);
	assert_int_equal(
	    hv_apikey_hash(h, (const char *)b->buf, hb, &err), HV_OK);
	assert_memory_not_equal(ha, hb, HV_HMAC_LEN);

	/* the documented construction: HMAC(domain NUL || key) */
	memcpy(msg, "hsmvault/apikey/v1", 19); /* with its NUL */
	memcpy(msg + 19, a->buf, a->len);
	assert_int_equal(hv_hsm_hmac(h, msg, 19 + a->len, raw, &err), HV_OK);
	assert_memory_equal(raw, ha, HV_HMAC_LEN);
	/* and not a bare HMAC of the key (domain separation) */
	assert_int_equal(hv_hsm_hmac(h, a->buf, a->len, raw, &err), HV_OK);
	assert_memory_not_equal(raw, ha, HV_HMAC_LEN);

	memset(long_key, 'a', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	assert_int_equal(hv_apikey_hash(h, long_key, ha2, &err), HV_E_INVALID);
	assert_null(strstr(err.msg, "aaaa"));

	hv_secret_free(&a);
	hv_secret_free(&b);
	hv_hsm_close(&h);
	hv_test_token_destroy(&tok);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base62_width),
	    cmocka_unit_test(test_base62_codec),
	    cmocka_unit_test(test_generate),
	    cmocka_unit_test(test_mutations),
	    cmocka_unit_test(test_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
