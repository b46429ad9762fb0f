/*
 * apikey: generation, offline format check and key-store hash of API keys.
 * Format and reasoning in apikey.h and docs/apikeys.md.
 */
#include "apikey.h"

#include <openssl/rand.h>
#include <string.h>

#include "base62.h"
#include "digest.h"

bool
hv_apikey_prefix_ok(const char *prefix)
{
	size_t i;

	if (prefix == NULL || prefix[0] == '\0')
		return false;
	for (i = 0; prefix[i] != '\0'; i++) {
		char c = prefix[i];

		if (i >= HV_APIKEY_PREFIX_MAX)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		        (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* The 6 checksum digits of key[0..len) (prefix || body) into out[7]. */
static bool
checksum(const char *key, size_t len, char out[HV_APIKEY_CHECK_LEN + 1])
{
	uint8_t md[HV_SHA256_LEN];
	bool ok;

	ok = hv_sha256(key, len, md) &&
	    hv_base62_encode(md, 4, out, HV_APIKEY_CHECK_LEN);
	hv_mem_zero(md, sizeof(md));
	return ok;
}

enum hv_rc
hv_apikey_generate(
    const char *prefix, struct hv_secret **key, struct hv_err *err)
{
	uint8_t rnd[HV_APIKEY_RANDOM_BYTES];
	struct hv_secret *k = NULL;
	char *p;
	size_t plen;
	enum hv_rc rc = HV_OK;

	if (prefix == NULL)
		prefix = HV_APIKEY_PREFIX_DEFAULT;
	if (!hv_apikey_prefix_ok(prefix))
		return hv_err_set(err, HV_E_CONFIG,
		    "api key prefix must be 1 "
		    "to %d characters of [A-Za-z0-9_-]",
		    HV_APIKEY_PREFIX_MAX);
	plen = strlen(prefix);
	k = hv_secret_new(plen + HV_APIKEY_BODY_LEN + HV_APIKEY_CHECK_LEN);
	if (k == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "api key: out of memory");
		goto out;
	}
	if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1) {
		rc = hv_err_set(err, HV_E_INTERNAL, "api key: rng failed");
		goto out;
	}
	p = (char *)k->buf;
	memcpy(p, prefix, plen);
	/* Each encode writes a NUL after its digits; buf has room for it. */
	if (!hv_base62_encode(rnd, sizeof(rnd), p + plen, HV_APIKEY_BODY_LEN) ||
	    !checksum(
	        p, plen + HV_APIKEY_BODY_LEN, p + plen + HV_APIKEY_BODY_LEN)) {
		rc = hv_err_set(err, HV_E_INTERNAL, "api key: encoding failed");
		goto out;
	}
	*key = k;
	k = NULL;
out:
	hv_mem_zero(rnd, sizeof(rnd));
	hv_secret_free(&k);
	return rc;
}

bool
hv_apikey_format_ok(const char *prefix, const char *key)
{
	uint8_t num[HV_APIKEY_RANDOM_BYTES];
	char check[HV_APIKEY_CHECK_LEN + 1];
	size_t plen, klen;
	bool ok;

	if (prefix == NULL)
		prefix = HV_APIKEY_PREFIX_DEFAULT;
	if (key == NULL || !hv_apikey_prefix_ok(prefix))
		return false;
	plen = strlen(prefix);
	klen = strnlen(key, HV_APIKEY_MAX_LEN + 1);
	/* Length and prefix are public: early return is fine. */
	if (klen != plen + HV_APIKEY_BODY_LEN + HV_APIKEY_CHECK_LEN ||
	    !hv_ct_equal(key, prefix, plen))
		return false;
	/*
	 * The body must be 43 digits of a value below 2^256 (a generated key
	 * always is), then the checksum must match. Both steps always run.
	 */
	ok = hv_base62_decode(key + plen, HV_APIKEY_BODY_LEN, num, sizeof(num));
	if (!checksum(key, plen + HV_APIKEY_BODY_LEN, check))
		ok = false;
	else if (!hv_ct_equal(check, key + plen + HV_APIKEY_BODY_LEN,
	             HV_APIKEY_CHECK_LEN))
		ok = false;
	hv_mem_zero(num, sizeof(num));
	hv_mem_zero(check, sizeof(check));
	return ok;
}

enum hv_rc
hv_apikey_hash(struct hv_hsm *hsm, const char *key, uint8_t out[HV_HMAC_LEN],
    struct hv_err *err)
{
	static const char domain[] = HV_APIKEY_HASH_DOMAIN;
	struct hv_secret *msg = NULL;
	size_t klen;
	enum hv_rc rc;

	klen = strnlen(key, HV_APIKEY_MAX_LEN + 1);
	if (klen > HV_APIKEY_MAX_LEN)
		return hv_err_set(err, HV_E_INVALID, "api key too long");
	msg = hv_secret_new(sizeof(domain) + klen);
	if (msg == NULL)
		return hv_err_set(err, HV_E_NOMEM, "api key: out of memory");
	memcpy(msg->buf, domain, sizeof(domain)); /* with its NUL */
	memcpy(msg->buf + sizeof(domain), key, klen);
	rc = hv_hsm_hmac(hsm, msg->buf, msg->len, out, err);
	if (rc != HV_OK)
		hv_err_prefix(err, "api key hash");
	hv_secret_free(&msg);
	return rc;
}

bool
hv_apikey_hint(
    const char *prefix, const char *key, char out[HV_APIKEY_HINT_MAX])
{
	size_t plen;

	out[0] = '\0';
	if (prefix == NULL)
		prefix = HV_APIKEY_PREFIX_DEFAULT;
	if (!hv_apikey_format_ok(prefix, key))
		return false;
	plen = strlen(prefix);
	memcpy(out, key, plen + 4);
	out[plen + 4] = '\0';
	return true;
}
