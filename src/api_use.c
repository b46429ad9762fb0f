/*
 * api_use: POST /v1/credentials/{id}/test and /use.
 *
 * http.c has routed the call and checked credentials:use; use's body
 * shape is checked here (hv_httpreq_use_body) before anything else. The
 * provider module (src/provider.c) then does the rest: visibility (404),
 * allow-list (403), revoked / expired (409), the outbound rules, the call
 * itself, the audit row and the status change (docs/providers.md).
 */
#include "api.h"
#include "provider.h"

enum hv_rc
hv_api_cred_test(struct hv_call *c, struct hv_err *err)
{
	return hv_provider_test(
	    c->vault, c->principal, c->ctx, c->id, &c->out, err);
}

enum hv_rc
hv_api_cred_use(struct hv_call *c, struct hv_err *err)
{
	json_t *body;
	enum hv_rc rc;

	body = hv_httpreq_use_normalize(c->body);
	if (body == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	rc = hv_httpreq_use_body(body, err);
	if (rc == HV_OK)
		rc =
		    hv_provider_use_async(c->vault, c->principal, c->ctx, c->id,
		        body, c->done, c->done_arg, &c->pending, &c->out, err);
	json_decref(body);
	return rc;
}
