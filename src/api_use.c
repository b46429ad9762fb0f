/*
 * api_use: POST /v1/credentials/{id}/test and /use.
 *
 * Until the provider work (src/fetch.c, the outbound call) lands, both
 * endpoints do everything that comes before the call: the body's shape
 * (use), credentials:use, visibility (404), allow-list (403) and the
 * revoked check (409 credential_revoked) through
 * hv_vault_cred_open_for_use(); then they answer 501 not_implemented. The
 * decrypted secret is released at once (jansson's zeroing allocator
 * wipes it).
 */
#include "api.h"

static enum hv_rc
open_then_pending(struct hv_call *c, const char *what, struct hv_err *err)
{
	json_t *meta = NULL, *secret = NULL;
	enum hv_rc rc;

	rc = hv_vault_cred_open_for_use(c->vault, c->principal, c->ctx, c->id,
	    &meta, &secret, err);
	json_decref(secret);
	json_decref(meta);
	if (rc != HV_OK)
		return rc;
	return hv_err_set(err, HV_E_NOT_IMPLEMENTED, "credential %s is not "
	    "implemented yet", what);
}

enum hv_rc
hv_api_cred_test(struct hv_call *c, struct hv_err *err)
{
	return open_then_pending(c, "test", err);
}

enum hv_rc
hv_api_cred_use(struct hv_call *c, struct hv_err *err)
{
	enum hv_rc rc;

	rc = hv_httpreq_use_body(c->body, err);
	if (rc != HV_OK)
		return rc;
	return open_then_pending(c, "use", err);
}
