/*
 * envelope: AES-256-GCM payload encryption under per-version DEKs wrapped
 * by the key store. See envelope.h for the formats and docs/envelope.md for
 * the reasoning.
 *
 * OpenSSL 3.0 costs: an implicit fetch (EVP_aes_256_gcm()) plus a new
 * EVP_CIPHER_CTX per operation is 1.6x slower than a prefetched cipher and
 * a reused context, and stops scaling across threads (MEASURED.md). So
 * the cipher is fetched once per process and each thread keeps one
 * context, initialised once with the cipher and then only re-keyed. After
 * every operation the context is re-keyed with an all-zero key, which
 * overwrites the DEK's key schedule and GHASH key in place: no DEK-derived
 * material outlives the call.
 */
#include "envelope.h"

#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

#include "uuid.h"

/* Process-wide, set once by init_once(), read-only afterwards. */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *gcm_cipher;
static pthread_key_t ctx_key;
static bool ctx_key_ok;

static void
ctx_destroy(void *p)
{
	EVP_CIPHER_CTX_free(p);
}

static void
init_once(void)
{
	gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	ctx_key_ok = pthread_key_create(&ctx_key, ctx_destroy) == 0;
}

/* This thread's context, initialised with the cipher; NULL on failure. */
static EVP_CIPHER_CTX *
thread_ctx(void)
{
	EVP_CIPHER_CTX *ctx;

	pthread_once(&once, init_once);
	if (gcm_cipher == NULL || !ctx_key_ok)
		return NULL;
	ctx = pthread_getspecific(ctx_key);
	if (ctx != NULL)
		return ctx;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return NULL;
	if (EVP_CipherInit_ex2(ctx, gcm_cipher, NULL, NULL, 1, NULL) != 1 ||
	    pthread_setspecific(ctx_key, ctx) != 0) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Overwrite the key schedule left in ctx by the last operation. */
static void
ctx_scrub(EVP_CIPHER_CTX *ctx)
{
	static const uint8_t zero_key[HV_DEK_LEN];

	if (EVP_CipherInit_ex2(ctx, NULL, zero_key, NULL, 1, NULL) != 1) {
		/* Cannot re-key: drop the context; a new one comes next time. */
		EVP_CIPHER_CTX_free(ctx);
		(void)pthread_setspecific(ctx_key, NULL);
	}
}

enum hv_rc
hv_aead_seal(const struct hv_secret *dek,
    const uint8_t nonce[HV_ENVELOPE_NONCE_LEN], const uint8_t *aad,
    size_t aad_len, const uint8_t *pt, size_t pt_len, uint8_t *record,
    size_t record_cap, size_t *record_len, struct hv_err *err)
{
	EVP_CIPHER_CTX *ctx;
	uint8_t tag[HV_ENVELOPE_TAG_LEN];
	int n = 0, fin = 0;
	enum hv_rc rc = HV_OK;

	if (dek->len != HV_DEK_LEN)
		return hv_err_set(err, HV_E_INTERNAL,
		    "aead: dek must be %d "
		    "bytes",
		    HV_DEK_LEN);
	if (pt_len > INT_MAX - HV_ENVELOPE_OVERHEAD || aad_len > INT_MAX)
		return hv_err_set(err, HV_E_TOO_LARGE, "aead: input too large");
	if (record_cap < pt_len + HV_ENVELOPE_OVERHEAD)
		return hv_err_set(err, HV_E_INTERNAL,
		    "aead: record buffer too "
		    "small");
	if ((pt == NULL && pt_len > 0) || (aad == NULL && aad_len > 0))
		return hv_err_set(err, HV_E_INTERNAL, "aead: null input");
	ctx = thread_ctx();
	if (ctx == NULL)
		return hv_err_set(err, HV_E_INTERNAL,
		    "aead: openssl cipher "
		    "unavailable");
	record[0] = HV_ENVELOPE_FMT_V1;
	if (EVP_CipherInit_ex2(ctx, NULL, dek->buf, nonce, 1, NULL) != 1 ||
	    (aad_len > 0 &&
	        EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1) ||
	    (pt_len > 0 &&
	        EVP_EncryptUpdate(ctx, record + 1, &n, pt, (int)pt_len) != 1) ||
	    EVP_EncryptFinal_ex(ctx, record + 1 + (pt_len > 0 ? n : 0), &fin) !=
	        1 ||
	    EVP_CIPHER_CTX_ctrl(
	        ctx, EVP_CTRL_AEAD_GET_TAG, HV_ENVELOPE_TAG_LEN, tag) != 1) {
		rc = hv_err_set(err, HV_E_INTERNAL, "aead: encryption failed");
		hv_mem_zero(record, pt_len + HV_ENVELOPE_OVERHEAD);
		goto out;
	}
	memcpy(record + 1 + pt_len, tag, HV_ENVELOPE_TAG_LEN);
	*record_len = pt_len + HV_ENVELOPE_OVERHEAD;
out:
	ctx_scrub(ctx);
	return rc;
}

enum hv_rc
hv_aead_open(const struct hv_secret *dek,
    const uint8_t nonce[HV_ENVELOPE_NONCE_LEN], const uint8_t *aad,
    size_t aad_len, const uint8_t *record, size_t record_len,
    struct hv_secret **plaintext, struct hv_err *err)
{
	EVP_CIPHER_CTX *ctx = NULL;
	struct hv_secret *pt = NULL;
	uint8_t tag[HV_ENVELOPE_TAG_LEN];
	size_t ct_len;
	int n = 0, fin = 0;
	enum hv_rc rc = HV_OK;

	if (dek->len != HV_DEK_LEN)
		return hv_err_set(err, HV_E_INTERNAL,
		    "aead: dek must be %d "
		    "bytes",
		    HV_DEK_LEN);
	if (record_len < HV_ENVELOPE_OVERHEAD ||
	    record[0] != HV_ENVELOPE_FMT_V1)
		return hv_err_set(err, HV_E_CRYPTO,
		    "aead: unknown or "
		    "truncated ciphertext record");
	if (record_len > INT_MAX || aad_len > INT_MAX)
		return hv_err_set(err, HV_E_TOO_LARGE, "aead: input too large");
	if (aad == NULL && aad_len > 0)
		return hv_err_set(err, HV_E_INTERNAL, "aead: null input");
	ct_len = record_len - HV_ENVELOPE_OVERHEAD;
	ctx = thread_ctx();
	if (ctx == NULL)
		return hv_err_set(err, HV_E_INTERNAL,
		    "aead: openssl cipher "
		    "unavailable");
	pt = hv_secret_new(ct_len);
	if (pt == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "aead: out of memory");
		goto out;
	}
	memcpy(tag, record + 1 + ct_len, HV_ENVELOPE_TAG_LEN);
	if (EVP_CipherInit_ex2(ctx, NULL, dek->buf, nonce, 0, NULL) != 1 ||
	    (aad_len > 0 &&
	        EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1) ||
	    (ct_len > 0 &&
	        EVP_DecryptUpdate(ctx, pt->buf, &n, record + 1, (int)ct_len) !=
	            1) ||
	    EVP_CIPHER_CTX_ctrl(
	        ctx, EVP_CTRL_AEAD_SET_TAG, HV_ENVELOPE_TAG_LEN, tag) != 1) {
		rc = hv_err_set(err, HV_E_INTERNAL, "aead: decryption failed");
		goto out;
	}
	/* The tag is checked here; nothing decrypted leaves before it. */
	if (EVP_DecryptFinal_ex(ctx, pt->buf + (ct_len > 0 ? n : 0), &fin) !=
	    1) {
		rc = hv_err_set(err, HV_E_CRYPTO,
		    "aead: authentication "
		    "failed");
		goto out;
	}
	*plaintext = pt;
	pt = NULL;
out:
	hv_secret_free(&pt);
	ctx_scrub(ctx);
	return rc;
}

enum hv_rc
hv_envelope_aad(enum hv_aad_kind kind, const char *ws_id, const char *cred_id,
    uint32_t version, uint8_t out[HV_ENVELOPE_AAD_MAX], size_t *out_len,
    struct hv_err *err)
{
	uint8_t ws[HV_UUID_LEN], cred[HV_UUID_LEN];
	const char *domain;
	size_t dlen, o;

	switch (kind) {
	case HV_AAD_PAYLOAD:
		domain = HV_ENVELOPE_DOMAIN_PAYLOAD;
		dlen = sizeof(HV_ENVELOPE_DOMAIN_PAYLOAD);
		break;
	case HV_AAD_DEK:
		domain = HV_ENVELOPE_DOMAIN_DEK;
		dlen = sizeof(HV_ENVELOPE_DOMAIN_DEK);
		break;
	default:
		return hv_err_set(err, HV_E_INTERNAL, "aad: unknown kind");
	}
	if (!hv_uuid_parse(ws_id, ws))
		return hv_err_set(err, HV_E_INVALID, "invalid workspace id");
	if (!hv_uuid_parse(cred_id, cred))
		return hv_err_set(err, HV_E_INVALID, "invalid credential id");
	memcpy(out, domain, dlen); /* with its NUL */
	o = dlen;
	memcpy(out + o, ws, HV_UUID_LEN);
	o += HV_UUID_LEN;
	memcpy(out + o, cred, HV_UUID_LEN);
	o += HV_UUID_LEN;
	out[o++] = (uint8_t)(version >> 24);
	out[o++] = (uint8_t)(version >> 16);
	out[o++] = (uint8_t)(version >> 8);
	out[o++] = (uint8_t)version;
	*out_len = o;
	return HV_OK;
}

void
hv_envelope_init(struct hv_envelope *e)
{
	memset(e, 0, sizeof(*e));
}

void
hv_envelope_release(struct hv_envelope *e)
{
	if (e == NULL)
		return;
	if (e->ct != NULL)
		hv_free_wipe(e->ct, e->ct_len);
	hv_mem_zero(e, sizeof(*e));
}

enum hv_rc
hv_envelope_seal(struct hv_hsm *hsm, const char *ws_id, const char *cred_id,
    uint32_t version, const struct hv_secret *plaintext,
    struct hv_envelope *out, struct hv_err *err)
{
	struct hv_envelope e;
	struct hv_secret *dek = NULL;
	uint8_t aad_p[HV_ENVELOPE_AAD_MAX], aad_d[HV_ENVELOPE_AAD_MAX];
	size_t aad_p_len, aad_d_len, cap = 0;
	enum hv_rc rc;

	hv_envelope_init(&e);
	rc = hv_envelope_aad(
	    HV_AAD_PAYLOAD, ws_id, cred_id, version, aad_p, &aad_p_len, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_envelope_aad(
	    HV_AAD_DEK, ws_id, cred_id, version, aad_d, &aad_d_len, err);
	if (rc != HV_OK)
		goto out;
	if (plaintext->len > HV_ENVELOPE_MAX_PLAINTEXT) {
		rc = hv_err_set(err, HV_E_TOO_LARGE,
		    "secret payload over %u "
		    "bytes",
		    HV_ENVELOPE_MAX_PLAINTEXT);
		goto out;
	}
	dek = hv_secret_new(HV_DEK_LEN);
	cap = plaintext->len + HV_ENVELOPE_OVERHEAD;
	e.ct = hv_malloc(cap);
	if (dek == NULL || e.ct == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "seal: out of memory");
		goto out;
	}
	rc = hv_hsm_random(hsm, dek->buf, HV_DEK_LEN, err);
	if (rc != HV_OK) {
		hv_err_prefix(err, "seal: dek");
		goto out;
	}
	if (RAND_bytes(e.nonce, HV_ENVELOPE_NONCE_LEN) != 1) {
		rc = hv_err_set(err, HV_E_INTERNAL, "seal: rng failed");
		goto out;
	}
	rc = hv_aead_seal(dek, e.nonce, aad_p, aad_p_len, plaintext->buf,
	    plaintext->len, e.ct, cap, &e.ct_len, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_hsm_wrap(hsm, 0, aad_d, aad_d_len, dek, e.wrapped,
	    &e.wrapped_len, &e.kek_version, err);
	if (rc != HV_OK) {
		hv_err_prefix(err, "seal: wrap");
		goto out;
	}
	*out = e;
	hv_envelope_init(&e); /* the caller owns e.ct now */
out:
	if (e.ct != NULL)
		hv_free_wipe(e.ct, cap);
	hv_secret_free(&dek);
	return rc;
}

enum hv_rc
hv_envelope_unwrap_dek(struct hv_hsm *hsm, const char *ws_id,
    const char *cred_id, uint32_t version, const uint8_t *wrapped,
    size_t wrapped_len, uint32_t kek_version, struct hv_secret **dek,
    struct hv_err *err)
{
	struct hv_secret *k = NULL;
	uint8_t aad[HV_ENVELOPE_AAD_MAX];
	size_t aad_len;
	enum hv_rc rc;

	rc = hv_envelope_aad(
	    HV_AAD_DEK, ws_id, cred_id, version, aad, &aad_len, err);
	if (rc != HV_OK)
		return rc;
	if (wrapped_len == 0 || wrapped_len > HV_WRAPPED_MAX)
		return hv_err_set(err, HV_E_CRYPTO,
		    "unwrap: bad wrapped dek "
		    "length");
	rc = hv_hsm_unwrap(
	    hsm, kek_version, aad, aad_len, wrapped, wrapped_len, &k, err);
	if (rc != HV_OK) {
		hv_err_prefix(err, "unwrap");
		return rc;
	}
	if (k->len != HV_DEK_LEN) {
		hv_secret_free(&k);
		return hv_err_set(err, HV_E_CRYPTO,
		    "unwrap: dek has wrong "
		    "length");
	}
	*dek = k;
	return HV_OK;
}

enum hv_rc
hv_envelope_open_dek(const struct hv_secret *dek, const char *ws_id,
    const char *cred_id, uint32_t version, const struct hv_envelope *env,
    struct hv_secret **plaintext, struct hv_err *err)
{
	uint8_t aad[HV_ENVELOPE_AAD_MAX];
	size_t aad_len;
	enum hv_rc rc;

	rc = hv_envelope_aad(
	    HV_AAD_PAYLOAD, ws_id, cred_id, version, aad, &aad_len, err);
	if (rc != HV_OK)
		return rc;
	if (env->ct == NULL)
		return hv_err_set(err, HV_E_CRYPTO, "open: no ciphertext");
	return hv_aead_open(dek, env->nonce, aad, aad_len, env->ct, env->ct_len,
	    plaintext, err);
}

enum hv_rc
hv_envelope_open(struct hv_hsm *hsm, const char *ws_id, const char *cred_id,
    uint32_t version, const struct hv_envelope *env,
    struct hv_secret **plaintext, struct hv_err *err)
{
	struct hv_secret *dek = NULL;
	enum hv_rc rc;

	rc = hv_envelope_unwrap_dek(hsm, ws_id, cred_id, version, env->wrapped,
	    env->wrapped_len, env->kek_version, &dek, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_envelope_open_dek(
	    dek, ws_id, cred_id, version, env, plaintext, err);
	hv_secret_free(&dek);
	return rc;
}

enum hv_rc
hv_envelope_rewrap(struct hv_hsm *hsm, const char *ws_id, const char *cred_id,
    uint32_t version, const uint8_t *wrapped, size_t wrapped_len,
    uint32_t old_kek, uint8_t *out, size_t *out_len, uint32_t *new_kek,
    struct hv_err *err)
{
	struct hv_secret *dek = NULL;
	uint8_t aad[HV_ENVELOPE_AAD_MAX], buf[HV_WRAPPED_MAX];
	size_t aad_len, len = 0;
	uint32_t used = 0;
	enum hv_rc rc;

	rc = hv_envelope_unwrap_dek(hsm, ws_id, cred_id, version, wrapped,
	    wrapped_len, old_kek, &dek, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_envelope_aad(
	    HV_AAD_DEK, ws_id, cred_id, version, aad, &aad_len, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_hsm_wrap(hsm, 0, aad, aad_len, dek, buf, &len, &used, err);
	if (rc != HV_OK) {
		hv_err_prefix(err, "rewrap");
		goto out;
	}
	memcpy(out, buf, len);
	*out_len = len;
	*new_kek = used;
out:
	hv_secret_free(&dek);
	return rc;
}
