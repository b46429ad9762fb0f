/*
 * api_admin: workspaces, KEK rotation, rewrap and status (scope admin).
 */
#include "api.h"

/*
 * One POST /v1/admin/rewrap call does at most this much work, so that a
 * request stays well inside any proxy timeout; callers repeat until
 * "remaining" is 0 (or run `hsmvault rewrap`).
 */
#define REWRAP_BATCH       100
#define REWRAP_MAX_BATCHES 50

enum hv_rc
hv_api_workspace_create(struct hv_call *c, struct hv_err *err)
{
	c->status = 201;
	return hv_vault_workspace_create(
	    c->vault, c->principal, c->ctx, c->body, &c->out, err);
}

enum hv_rc
hv_api_workspace_list(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_workspace_list_page(
	    c->vault, c->principal, c->ctx, c->query, &c->out, err);
}

enum hv_rc
hv_api_kek_rotate(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_kek_rotate(
	    c->vault, c->principal, c->ctx, &c->out, err);
}

enum hv_rc
hv_api_rewrap(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_rewrap(c->vault, c->principal, c->ctx, REWRAP_BATCH,
	    REWRAP_MAX_BATCHES, NULL, NULL, &c->out, err);
}

enum hv_rc
hv_api_admin_status(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_status(c->vault, &c->out, err);
}
