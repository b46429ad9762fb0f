/*
 * api_apikeys: POST/GET /v1/api-keys and DELETE /v1/api-keys/{id}. The
 * key itself appears only in the answer of POST (and is wiped from the
 * response buffer after sending).
 */
#include "api.h"

enum hv_rc
hv_api_apikey_create(struct hv_call *c, struct hv_err *err)
{
	c->status = 201;
	return hv_vault_apikey_create(
	    c->vault, c->principal, c->ctx, c->body, &c->out, err);
}

enum hv_rc
hv_api_apikey_list(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_apikey_list(
	    c->vault, c->principal, c->ctx, c->query, &c->out, err);
}

enum hv_rc
hv_api_apikey_revoke(struct hv_call *c, struct hv_err *err)
{
	c->status = 204;
	return hv_vault_apikey_revoke(
	    c->vault, c->principal, c->ctx, c->id, err);
}
