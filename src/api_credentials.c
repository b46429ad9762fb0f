/*
 * api_credentials: the credential endpoints (SPEC section 5), each one
 * vault call. http.c has already authenticated the caller, checked the
 * route's scope, the query, the path id, If-Match and the body's shape.
 */
#include "api.h"

enum hv_rc
hv_api_cred_create(struct hv_call *c, struct hv_err *err)
{
	c->status = 201;
	return hv_vault_cred_create_async(c->vault, c->principal, c->ctx,
	    c->body, c->done, c->done_arg, &c->pending, &c->out, err);
}

enum hv_rc
hv_api_cred_list(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_cred_list(
	    c->vault, c->principal, c->ctx, c->query, &c->out, err);
}

enum hv_rc
hv_api_cred_get(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_cred_get(
	    c->vault, c->principal, c->ctx, c->id, &c->out, err);
}

enum hv_rc
hv_api_cred_update(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_cred_update(c->vault, c->principal, c->ctx, c->id,
	    c->body, c->expected_version, &c->out, err);
}

enum hv_rc
hv_api_cred_delete(struct hv_call *c, struct hv_err *err)
{
	c->status = 204;
	return hv_vault_cred_delete(c->vault, c->principal, c->ctx, c->id, err);
}

enum hv_rc
hv_api_cred_rotate(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_cred_rotate(c->vault, c->principal, c->ctx, c->id,
	    c->body, c->expected_version, &c->out, err);
}

enum hv_rc
hv_api_cred_revoke(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_cred_revoke(
	    c->vault, c->principal, c->ctx, c->id, true, &c->out, err);
}

enum hv_rc
hv_api_cred_unrevoke(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_cred_revoke(
	    c->vault, c->principal, c->ctx, c->id, false, &c->out, err);
}

enum hv_rc
hv_api_cred_duplicate(struct hv_call *c, struct hv_err *err)
{
	c->status = 201;
	return hv_vault_cred_duplicate(
	    c->vault, c->principal, c->ctx, c->id, c->body, &c->out, err);
}

/*
 * The answer holds the plaintext: http.c wipes the buffer after sending.
 * With group commit it is held until the audit row commits (c->pending).
 */
enum hv_rc
hv_api_cred_reveal(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_cred_reveal_async(c->vault, c->principal, c->ctx, c->id,
	    c->done, c->done_arg, &c->pending, &c->out, err);
}

enum hv_rc
hv_api_cred_audit(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_cred_audit(
	    c->vault, c->principal, c->ctx, c->id, c->query, &c->out, err);
}

enum hv_rc
hv_api_audit_list(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_audit_list(
	    c->vault, c->principal, c->ctx, c->query, &c->out, err);
}
