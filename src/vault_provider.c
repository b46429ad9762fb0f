/*
 * vault_provider: the vault side of the provider module (provider.h):
 * handles for provider.c, and the OAuth 2.0 refresh that stores new
 * tokens as a new credential version.
 *
 * The refresh runs in one transaction on one pooled connection, with the
 * credential row locked (SELECT ... FOR UPDATE) for the whole token
 * endpoint call: two requests that find the same expired token do not
 * both spend the refresh token (many providers rotate it and revoke the
 * old one); the second waits, finds the new version fresh and uses it.
 * The cost is a pooled connection held for at most one upstream timeout,
 * and only while a token is actually being refreshed.
 *
 * The new version is sealed exactly as a rotation (src/vault_cred.c):
 * fresh DEK, AAD = workspace | credential | version, DEK wrapped by the
 * active KEK; its audit row (credential.rotate, detail "oauth2 refresh")
 * is written in the same transaction.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "log.h"
#include "mem.h"
#include "provider.h"
#include "uuid.h"
#include "vault_int.h"

enum pcol {
	P_ID,
	P_WS,
	P_SCOPE,
	P_OWNER,
	P_STATUS,
	P_VERSION,
	P_AUTH,
	P_NCOLS
};

static const struct hv_stmt prov_stmts[] = {
    {"prov_cred_lock",
        "SELECT id::text, workspace_id::text, scope, owner_user, status, "
        "version, auth_type FROM credentials WHERE id = $1::uuid "
        "FOR UPDATE",
        1},
    {"prov_cred_bump",
        "UPDATE credentials SET version = $2::integer, updated_at = now() "
        "WHERE id = $1::uuid AND version = $3::integer",
        3},
};

void
hv_vault_provider_register(void)
{
	hv_store_register(
	    prov_stmts, sizeof(prov_stmts) / sizeof(prov_stmts[0]));
}

const struct hv_cfg *
hv_vault_cfg(struct hv_vault *v)
{
	return v->cfg;
}

const struct hv_catalog *
hv_vault_catalog(struct hv_vault *v)
{
	return v->catalog;
}

bool
hv_vault_oauth_expiring(const json_t *secret, long skew_s, bool *can)
{
	const char *exp =
	    json_string_value(json_object_get(secret, "expires_at"));
	struct hv_err err = {0};
	int64_t us;

	*can = json_string_value(json_object_get(secret, "refresh_token")) !=
	        NULL &&
	    json_string_value(json_object_get(secret, "token_url")) != NULL;
	if (exp == NULL)
		return false;
	if (hv_vault_parse_time(exp, &us, &err, "expires_at") != HV_OK)
		return true;
	return us / 1000000 <= (int64_t)time(NULL) + skew_s;
}

/* ------------------------------------------------------------------ */

enum hv_rc
hv_vault_cred_oauth_refresh(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, long skew_s, hv_refresh_fn fn,
    void *arg, json_t **secret, bool *refreshed, struct hv_err *err)
{
	char idn[HV_UUID_STR], ws[HV_UUID_STR], oldv[16], newv[16];
	const char *params[3];
	struct hv_audit_event ev;
	struct hv_envelope env;
	struct hv_conn *c = NULL;
	PGresult *r = NULL, *r2 = NULL;
	json_t *cur = NULL, *next = NULL;
	unsigned long ver;
	char *end = NULL;
	bool can;
	enum hv_rc rc;

	hv_envelope_init(&env);
	*refreshed = false;
	rc = hv_vault_require(v, p, HV_SCOPE_CRED_USE, ctx, err);
	if (rc != HV_OK)
		goto out;
	if (!hv_uuid_normalize(id, idn)) {
		rc = hv_err_set(err, HV_E_NOT_FOUND, "credential not found");
		goto out;
	}
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_store_begin(c, err);
	if (rc != HV_OK)
		goto out;
	params[0] = idn;
	rc = hv_store_exec(
	    c, "prov_cred_lock", 1, params, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	if (PQntuples(r) != 1 || PQnfields(r) != P_NCOLS ||
	    !hv_vault_visible(p, PQgetvalue(r, 0, P_WS),
	        PQgetvalue(r, 0, P_SCOPE),
	        PQgetisnull(r, 0, P_OWNER) ? NULL
	                                   : PQgetvalue(r, 0, P_OWNER))) {
		rc = hv_err_set(err, HV_E_NOT_FOUND, "credential not found");
		goto out;
	}
	if (!hv_vault_allowed(p, idn)) {
		(void)hv_vault_deny(v, p, ctx, idn,
		    "credential not in the api key's allow-list");
		rc = hv_err_set(err, HV_E_FORBIDDEN,
		    "credential is outside this key's allow-list");
		goto out;
	}
	if (strcmp(PQgetvalue(r, 0, P_STATUS), "revoked") == 0) {
		rc = hv_err_set(err, HV_E_REVOKED, "credential is revoked");
		goto out;
	}
	if (strcmp(PQgetvalue(r, 0, P_AUTH), "oauth2") != 0) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "only oauth2 credentials "
		    "are refreshed");
		goto out;
	}
	errno = 0;
	ver = strtoul(PQgetvalue(r, 0, P_VERSION), &end, 10);
	if (errno != 0 || end == NULL || *end != '\0' || ver == 0 ||
	    ver >= INT32_MAX) {
		rc = hv_err_set(err, HV_E_INTERNAL, "bad version number");
		goto out;
	}
	(void)snprintf(ws, sizeof(ws), "%s", PQgetvalue(r, 0, P_WS));
	rc = hv_vault_open_version(
	    v, c, ws, idn, PQgetvalue(r, 0, P_VERSION), &cur, err);
	if (rc != HV_OK)
		goto out;
	if (!hv_vault_oauth_expiring(cur, skew_s, &can)) {
		/* Refreshed meanwhile by another request: use that. */
		*secret = cur;
		cur = NULL;
		goto out; /* the release rolls the transaction back */
	}
	rc = fn(arg, cur, &next, err);
	if (rc != HV_OK)
		goto out;
	if (!json_is_object(next)) {
		rc = hv_err_set(err, HV_E_INTERNAL, "refresh gave no secret");
		goto out;
	}
	rc = hv_vault_seal_secret(
	    v, ws, idn, (uint32_t)(ver + 1), next, &env, err);
	if (rc == HV_E_INVALID) /* what the provider sent, not the caller */
		rc = hv_err_set(
		    err, HV_E_UPSTREAM, "refreshed secret is too large");
	if (rc != HV_OK)
		goto out;
	rc = hv_vault_insert_version(c, idn, (uint32_t)(ver + 1), &env, err);
	if (rc != HV_OK)
		goto out;
	(void)snprintf(oldv, sizeof(oldv), "%lu", ver);
	(void)snprintf(newv, sizeof(newv), "%lu", ver + 1);
	params[0] = idn;
	params[1] = newv;
	params[2] = oldv;
	rc = hv_store_exec(
	    c, "prov_cred_bump", 3, params, NULL, NULL, false, &r2, err);
	if (rc != HV_OK)
		goto out;
	if (strcmp(PQcmdTuples(r2), "1") != 0) {
		rc = hv_err_set(err, HV_E_CONFLICT,
		    "credential changed during "
		    "the refresh");
		goto out;
	}
	hv_vault_event(&ev, p, ctx, ws, "credential.rotate", idn, "success",
	    "oauth2 refresh");
	rc = hv_audit_append(v->audit, c, &ev, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_store_commit(c, err);
	if (rc != HV_OK)
		goto out;
	hv_vault_forget_cached(v, idn); /* a new version, as a rotate */
	*secret = next;
	next = NULL;
	*refreshed = true;
out:
	if (c != NULL)
		hv_store_release(v->store, &c); /* rolls back if still open */
	json_decref(cur);
	json_decref(next);
	hv_envelope_release(&env);
	PQclear(r);
	PQclear(r2);
	return rc;
}
