/*
 * hsm: backend selection and the thin wrappers that check arguments once
 * for every backend.
 */
#include "hsm.h"

#include <string.h>

enum hv_rc
hv_hsm_open(
    const struct hv_hsm_config *cfg, struct hv_hsm **out, struct hv_err *err)
{
	if (cfg == NULL || cfg->keystore == NULL)
		return hv_err_set(err, HV_E_CONFIG, "keystore not configured");
	if (strcmp(cfg->keystore, "pkcs11") == 0)
		return hv_p11_open(cfg, out, err);
	if (strcmp(cfg->keystore, "tpm") == 0)
		return hv_tpm_open(cfg, out, err);
	return hv_err_set(err, HV_E_CONFIG,
	    "unknown keystore '%.32s' (want pkcs11 or tpm)", cfg->keystore);
}

void
hv_hsm_close(struct hv_hsm **h)
{
	if (h == NULL || *h == NULL)
		return;
	(*h)->ops->close(*h);
	*h = NULL;
}

enum hv_rc
hv_hsm_ensure_keys(struct hv_hsm *h, bool create, struct hv_err *err)
{
	return h->ops->ensure_keys(h, create, err);
}

enum hv_rc
hv_hsm_wrap(struct hv_hsm *h, uint32_t kek_version, const uint8_t *aad,
    size_t aad_len, const struct hv_secret *dek, uint8_t *out, size_t *out_len,
    uint32_t *used_version, struct hv_err *err)
{
	struct hv_kek_info keks[HV_KEK_MAX_VERSIONS];
	size_t n = 0, i;
	enum hv_rc rc;

	if (dek == NULL || dek->len != HV_DEK_LEN)
		return hv_err_set(err, HV_E_INTERNAL,
		    "wrap: dek must be %d "
		    "bytes",
		    HV_DEK_LEN);
	if (aad_len > HV_AAD_MAX)
		return hv_err_set(err, HV_E_INTERNAL, "wrap: aad too long");
	if (kek_version == 0) {
		rc = h->ops->kek_list(h, keks, HV_KEK_MAX_VERSIONS, &n, err);
		if (rc != HV_OK)
			return rc;
		for (i = 0; i < n; i++)
			if (keks[i].state == HV_KEK_ACTIVE)
				kek_version = keks[i].version;
		if (kek_version == 0)
			return hv_err_set(err, HV_E_NOT_FOUND,
			    "no active kek (run hsmvault init)");
	}
	rc = h->ops->wrap(h, kek_version, aad, aad_len, dek, out, out_len, err);
	if (rc == HV_OK && used_version != NULL)
		*used_version = kek_version;
	return rc;
}

enum hv_rc
hv_hsm_unwrap(struct hv_hsm *h, uint32_t kek_version, const uint8_t *aad,
    size_t aad_len, const uint8_t *in, size_t in_len, struct hv_secret **dek,
    struct hv_err *err)
{
	if (aad_len > HV_AAD_MAX || in_len > HV_WRAPPED_MAX)
		return hv_err_set(err, HV_E_CRYPTO, "unwrap: input too long");
	if (kek_version == 0)
		return hv_err_set(err, HV_E_NOT_FOUND, "unwrap: kek version 0");
	return h->ops->unwrap(
	    h, kek_version, aad, aad_len, in, in_len, dek, err);
}

enum hv_rc
hv_hsm_hmac(struct hv_hsm *h, const uint8_t *msg, size_t len,
    uint8_t out[HV_HMAC_LEN], struct hv_err *err)
{
	return h->ops->hmac(h, msg, len, out, err);
}

enum hv_rc
hv_hsm_random(struct hv_hsm *h, uint8_t *buf, size_t len, struct hv_err *err)
{
	return h->ops->random(h, buf, len, err);
}

enum hv_rc
hv_hsm_kek_list(struct hv_hsm *h, struct hv_kek_info *out, size_t max,
    size_t *n, struct hv_err *err)
{
	return h->ops->kek_list(h, out, max, n, err);
}

enum hv_rc
hv_hsm_kek_create(struct hv_hsm *h, uint32_t *version, struct hv_err *err)
{
	return h->ops->kek_create(h, version, err);
}

enum hv_rc
hv_hsm_kek_disable(struct hv_hsm *h, uint32_t version, struct hv_err *err)
{
	return h->ops->kek_disable(h, version, err);
}

enum hv_rc
hv_hsm_probe(struct hv_hsm *h, struct hv_hsm_status *st, struct hv_err *err)
{
	return h->ops->probe(h, st, err);
}
