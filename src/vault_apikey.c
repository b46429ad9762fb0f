/*
 * vault_apikey: create, list and revoke API keys (SPEC sections 3 and 5).
 *
 * A key is shown once, in the create answer; the database keeps only the
 * key store HMAC (hv_apikey_hash). Nobody mints what they do not hold:
 * scopes, the credential allow-list and the user label of a new key must
 * be within the caller's own (admin holds everything; p == NULL is the
 * CLI bootstrap, which is admin). Revocation sets revoked_at and NOTIFYs
 * HV_REVOKE_CHANNEL in the same transaction, so every server's cache
 * drops the key when the revocation commits (vault.c).
 */
#include "vault_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apikey.h"
#include "clock.h"
#include "log.h"
#include "mem.h"
#include "uuid.h"

#define LIST_DEFAULT 50
#define LIST_MAX     200
#define ALLOW_MAX    1000

static const struct hv_stmt apikey_stmts[] = {
    {"apikey_ws_exists", "SELECT 1 FROM workspaces WHERE id = $1::uuid", 1},
    {"apikey_insert",
        "INSERT INTO api_keys (id, workspace_id, name, user_label, "
        "scopes, "
        "credential_ids, key_hmac, expires_at, created_by) VALUES "
        "($1::uuid, "
        "$2::uuid, $3, $4, $5::text[], $6::uuid[], $7, "
        "$8::timestamptz, $9) "
        "RETURNING " HV_SQL_TS("created_at") ", " HV_SQL_TS("expires_at"),
        9},
    {"apikey_list",
        "SELECT id::text, name, user_label, scopes, "
        "credential_ids, " HV_SQL_TS("created_at") ", " HV_SQL_TS(
            "expi"
            "res_"
            "at") ", " HV_SQL_TS("revoked_at") ", " HV_SQL_TS("last_used_"
                                                              "at") ", "
                                                                    "create"
                                                                    "d_by, "
                                                                    "worksp"
                                                                    "ace_"
                                                                    "id:"
                                                                    ":text,"
                                                                    " "
                                                                    "(extra"
                                                                    "ct("
                                                                    "epoch "
                                                                    "FROM "
                                                                    "create"
                                                                    "d_at) "
                                                                    "* "
                                                                    "100000"
                                                                    "0)::"
                                                                    "bigint"
                                                                    ", "
                                                                    "expire"
                                                                    "s_at "
                                                                    "IS "
                                                                    "NOT "
                                                                    "NULL "
                                                                    "AND "
                                                                    "expire"
                                                                    "s_at "
                                                                    "<= "
                                                                    "now() "
                                                                    "FROM "
                                                                    "api_"
                                                                    "keys "
                                                                    "WHERE "
                                                                    "($1::"
                                                                    "uuid "
                                                                    "IS "
                                                                    "NULL "
                                                                    "OR "
                                                                    "worksp"
                                                                    "ace_"
                                                                    "id "
                                                                    "= "
                                                                    "$1::"
                                                                    "uuid) "
                                                                    "AND "
                                                                    "($2::"
                                                                    "bigint"
                                                                    " "
                                                                    "IS "
                                                                    "NULL "
                                                                    "OR "
                                                                    "(creat"
                                                                    "ed_at,"
                                                                    " "
                                                                    "id) > "
                                                                    "('"
                                                                    "epoch'"
                                                                    "::"
                                                                    "timest"
                                                                    "amptz "
                                                                    "+ "
                                                                    "$2::"
                                                                    "bigint"
                                                                    " "
                                                                    "* "
                                                                    "interv"
                                                                    "al '1 "
                                                                    "micros"
                                                                    "econd'"
                                                                    ","
                                                                    " $3::"
                                                                    "uuid))"
                                                                    " "
                                                                    "ORDER "
                                                                    "BY "
                                                                    "create"
                                                                    "d_at, "
                                                                    "id "
                                                                    "LIMIT "
                                                                    "$4::"
                                                                    "intege"
                                                                    "r",
        4},
    {"apikey_revoke",
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1::uuid "
        "AND ($2::uuid IS NULL OR workspace_id = $2::uuid) "
        "AND revoked_at IS NULL RETURNING workspace_id::text",
        2},
    {"apikey_find",
        "SELECT workspace_id::text FROM api_keys WHERE id = $1::uuid "
        "AND ($2::uuid IS NULL OR workspace_id = $2::uuid)",
        2},
    {"apikey_notify", "SELECT pg_notify('" HV_REVOKE_CHANNEL "', $1)", 1},
};

void
hv_vault_apikey_register(void)
{
	hv_store_register(
	    apikey_stmts, sizeof(apikey_stmts) / sizeof(apikey_stmts[0]));
}

static bool
is_admin(const struct hv_principal *p)
{
	return p->scopes & HV_SCOPE_ADMIN;
}

/* Append s to a growing "{a,b}" literal in buf (cap bytes). */
static bool
lit_add(char *buf, size_t cap, size_t *n, const char *s)
{
	size_t l = strlen(s);

	if (*n + l + 3 > cap)
		return false;
	if (*n > 1)
		buf[(*n)++] = ',';
	memcpy(buf + *n, s, l);
	*n += l;
	return true;
}

/* A PostgreSQL array literal as a JSON array of strings. */
static json_t *
array_to_json(const char *s)
{
	json_t *a = json_array();
	size_t n = strlen(s), i = 1;

	if (a == NULL || n < 2)
		return a;
	while (i < n - 1) {
		size_t l = strcspn(s + i, ",}");

		if (s[i] == '"' && l >= 2)
			json_array_append_new(
			    a, json_stringn(s + i + 1, l - 2));
		else
			json_array_append_new(a, json_stringn(s + i, l));
		i += l + 1;
	}
	return a;
}

struct newkey {
	char ws[HV_UUID_STR];
	const char *name;
	const char *user; /* NULL: none */
	unsigned int bits;
	char scopes_lit[256];
	char *creds_lit;    /* NULL: all */
	json_t *creds_json; /* "all" or array */
	json_t *scopes_json;
	const char *expires; /* NULL: never */
};

static void
newkey_release(struct newkey *k)
{
	hv_free(k->creds_lit);
	json_decref(k->creds_json);
	json_decref(k->scopes_json);
	memset(k, 0, sizeof(*k));
}

static enum hv_rc
parse_scopes(const json_t *arr, struct newkey *k, struct hv_err *err)
{
	size_t i, n = 1;
	json_t *e;

	if (!json_is_array(arr) || json_array_size(arr) == 0)
		return hv_err_set(err, HV_E_INVALID,
		    "scopes: a non-empty array of scope names is required");
	k->scopes_lit[0] = '{';
	k->scopes_json = json_array();
	if (k->scopes_json == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	json_array_foreach(arr, i, e)
	{
		unsigned int b = json_is_string(e)
		    ? hv_scope_parse(json_string_value(e))
		    : 0;

		if (b == 0)
			return hv_err_set(
			    err, HV_E_INVALID, "scopes[%zu]: unknown scope", i);
		if (k->bits & b)
			return hv_err_set(err, HV_E_INVALID,
			    "scopes[%zu]: duplicate scope", i);
		k->bits |= b;
		if (!lit_add(k->scopes_lit, sizeof(k->scopes_lit), &n,
		        hv_scope_name(b)))
			return hv_err_set(
			    err, HV_E_INVALID, "scopes: too many");
		json_array_append_new(
		    k->scopes_json, json_string(hv_scope_name(b)));
	}
	k->scopes_lit[n++] = '}';
	k->scopes_lit[n] = '\0';
	return HV_OK;
}

static enum hv_rc
parse_creds(const json_t *v, struct newkey *k, struct hv_err *err)
{
	size_t i, n = 1, cap;
	json_t *e;

	if (v == NULL || json_is_null(v) ||
	    (json_is_string(v) && strcmp(json_string_value(v), "all") == 0 &&
	        json_string_length(v) == 3)) {
		k->creds_json = json_string("all");
		return k->creds_json != NULL
		    ? HV_OK
		    : hv_err_set(err, HV_E_NOMEM, "out of memory");
	}
	if (!json_is_array(v))
		return hv_err_set(err, HV_E_INVALID,
		    "credentials: \"all\" or "
		    "an array of credential ids");
	if (json_array_size(v) > ALLOW_MAX)
		return hv_err_set(err, HV_E_INVALID,
		    "credentials: at most %d ids", ALLOW_MAX);
	cap = json_array_size(v) * HV_UUID_STR + 3;
	k->creds_lit = hv_malloc(cap);
	k->creds_json = json_array();
	if (k->creds_lit == NULL || k->creds_json == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	k->creds_lit[0] = '{';
	json_array_foreach(v, i, e)
	{
		char id[HV_UUID_STR];
		size_t j;
		bool dup = false;

		if (!json_is_string(e) ||
		    !hv_uuid_normalize(json_string_value(e), id))
			return hv_err_set(err, HV_E_INVALID,
			    "credentials[%zu]: not a credential id", i);
		for (j = 0; j < json_array_size(k->creds_json); j++)
			if (strcmp(json_string_value(
			               json_array_get(k->creds_json, j)),
			        id) == 0)
				dup = true;
		if (dup)
			continue;
		(void)lit_add(k->creds_lit, cap, &n, id);
		json_array_append_new(k->creds_json, json_string(id));
	}
	k->creds_lit[n++] = '}';
	k->creds_lit[n] = '\0';
	return HV_OK;
}

/* The caller may not hand out anything it does not hold itself. */
static enum hv_rc
check_escalation(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const struct newkey *k, struct hv_err *err)
{
	size_t i;

	if (is_admin(p))
		return HV_OK;
	if ((k->bits & ~p->scopes) != 0) {
		hv_vault_deny(v, p, ctx, NULL,
		    "api key create: scopes beyond "
		    "the caller's");
		return hv_err_set(err, HV_E_FORBIDDEN,
		    "cannot grant scopes "
		    "this api key does not hold");
	}
	if (!p->all_credentials) {
		bool ok = json_is_array(k->creds_json);

		for (i = 0; ok && i < json_array_size(k->creds_json); i++)
			ok = hv_vault_allowed(p,
			    json_string_value(
			        json_array_get(k->creds_json, i)));
		if (!ok) {
			hv_vault_deny(v, p, ctx, NULL,
			    "api key create: "
			    "credentials beyond the caller's allow-list");
			return hv_err_set(err, HV_E_FORBIDDEN,
			    "cannot grant "
			    "credentials outside this api key's allow-list");
		}
	}
	if (k->user != NULL && strcmp(k->user, p->user) != 0) {
		hv_vault_deny(v, p, ctx, NULL, "api key create: another user");
		return hv_err_set(err, HV_E_FORBIDDEN,
		    "cannot create a key for "
		    "another user");
	}
	return HV_OK;
}

static const char *const create_fields[] = {"name", "scopes", "credentials",
    "expires_at", "user", "workspace_id", NULL};

enum hv_rc
hv_vault_apikey_create(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const json_t *body, json_t **out,
    struct hv_err *err)
{
	struct hv_principal cli;
	struct newkey k;
	struct hv_secret *key = NULL;
	struct hv_conn *c = NULL;
	struct hv_audit_event ev;
	PGresult *r = NULL;
	uint8_t mac[HV_HMAC_LEN];
	char id[HV_UUID_STR], detail[64];
	const char *pv[9];
	int len[9] = {0}, fmt[9] = {0};
	json_t *j, *res = NULL;
	enum hv_rc rc;

	memset(&cli, 0, sizeof(cli));
	memset(&k, 0, sizeof(k));
	if (p == NULL) {
		rc = hv_principal_cli(v, NULL, &cli, err);
		if (rc != HV_OK)
			return rc;
		p = &cli;
	} else {
		rc = hv_vault_require(v, p, HV_SCOPE_KEYS_WRITE, ctx, err);
		if (rc != HV_OK)
			return rc;
	}
	rc = hv_vault_check_fields(body, create_fields, err);
	if (rc != HV_OK)
		goto out;
	j = json_object_get(body, "name");
	if (!hv_vault_text_ok(j, 1, 200)) {
		rc = hv_err_set(err, HV_E_INVALID,
		    "name: a string of 1 to 200 "
		    "characters is required");
		goto out;
	}
	k.name = json_string_value(j);
	rc = parse_scopes(json_object_get(body, "scopes"), &k, err);
	if (rc != HV_OK)
		goto out;
	rc = parse_creds(json_object_get(body, "credentials"), &k, err);
	if (rc != HV_OK)
		goto out;
	j = json_object_get(body, "expires_at");
	if (j != NULL && !json_is_null(j)) {
		int64_t us;

		if (!json_is_string(j)) {
			rc = hv_err_set(err, HV_E_INVALID,
			    "expires_at: an RFC 3339 time is required");
			goto out;
		}
		rc = hv_vault_parse_time(
		    json_string_value(j), &us, err, "expires_at");
		if (rc != HV_OK)
			goto out;
		if (us <= hv_real_us()) {
			rc = hv_err_set(err, HV_E_INVALID,
			    "expires_at: must be in the future");
			goto out;
		}
		k.expires = json_string_value(j);
	}
	j = json_object_get(body, "user");
	if (j != NULL && !json_is_null(j)) {
		if (!hv_vault_text_ok(j, 1, 127)) {
			rc = hv_err_set(err, HV_E_INVALID,
			    "user: a string of 1 "
			    "to 127 characters");
			goto out;
		}
		k.user = json_string_value(j);
	} else if (p->user[0] != '\0') {
		k.user = p->user; /* a user's key mints keys of the user */
	}
	snprintf(k.ws, sizeof(k.ws), "%s", p->workspace_id);
	j = json_object_get(body, "workspace_id");
	if (j != NULL && !json_is_null(j)) {
		char ws[HV_UUID_STR];
		const char *wp[1] = {ws};

		if (!json_is_string(j) ||
		    !hv_uuid_normalize(json_string_value(j), ws)) {
			rc = hv_err_set(err, HV_E_INVALID,
			    "workspace_id: not a workspace id");
			goto out;
		}
		if (!is_admin(p) && strcmp(ws, p->workspace_id) != 0) {
			hv_vault_deny(v, p, ctx, NULL,
			    "api key create: other "
			    "workspace");
			rc = hv_err_set(err, HV_E_FORBIDDEN,
			    "workspace_id: "
			    "only admin keys can create keys for another "
			    "workspace");
			goto out;
		}
		rc = hv_store_acquire(v->store, &c, err);
		if (rc != HV_OK)
			goto out;
		rc = hv_store_exec(
		    c, "apikey_ws_exists", 1, wp, NULL, NULL, false, &r, err);
		hv_store_release(v->store, &c);
		if (rc != HV_OK)
			goto out;
		if (PQntuples(r) != 1) {
			rc = hv_err_set(err, HV_E_INVALID,
			    "workspace_id: no such workspace");
			goto out;
		}
		PQclear(r);
		r = NULL;
		snprintf(k.ws, sizeof(k.ws), "%s", ws);
	}
	rc = check_escalation(v, p, ctx, &k, err);
	if (rc != HV_OK)
		goto out;

	if (hv_uuid_new(id) != HV_OK) {
		rc = hv_err_set(err, HV_E_INTERNAL, "uuid: rng failed");
		goto out;
	}
	rc = hv_apikey_generate(v->cfg->apikey_prefix, &key, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_apikey_hash(v->hsm, (const char *)key->buf, mac, err);
	if (rc != HV_OK)
		goto out;
	pv[0] = id;
	pv[1] = k.ws;
	pv[2] = k.name;
	pv[3] = k.user;
	pv[4] = k.scopes_lit;
	pv[5] = k.creds_lit;
	pv[6] = (const char *)mac;
	len[6] = HV_HMAC_LEN;
	fmt[6] = 1;
	pv[7] = k.expires;
	pv[8] = hv_principal_actor(p);
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		goto out;
	rc = hv_store_begin(c, err);
	if (rc == HV_OK)
		rc = hv_store_exec(
		    c, "apikey_insert", 9, pv, len, fmt, false, &r, err);
	if (rc == HV_OK) {
		snprintf(detail, sizeof(detail), "api key %s", id);
		hv_vault_event(&ev, p, ctx, k.ws, "apikey.create", NULL,
		    "success", detail);
		rc = hv_audit_append(v->audit, c, &ev, err);
	}
	if (rc == HV_OK)
		rc = hv_store_commit(c, err);
	if (rc != HV_OK) {
		hv_store_rollback(c);
		goto out;
	}
	/* the list item's fields, plus the key itself */
	res = json_pack("{s:s,s:s%,s:s,s:O,s:O,s:o,s:s,s:s,s:o,s:n,s:n,s:s,"
	                "s:s}",
	    "id", id, "key", (const char *)key->buf, key->len, "name", k.name,
	    "scopes", k.scopes_json, "credentials", k.creds_json, "user",
	    k.user != NULL ? json_string(k.user) : json_null(), "workspace_id",
	    k.ws, "created_at", PQgetvalue(r, 0, 0), "expires_at",
	    PQgetisnull(r, 0, 1) ? json_null()
	                         : json_string(PQgetvalue(r, 0, 1)),
	    "revoked_at", "last_used_at", "created_by", hv_principal_actor(p),
	    "status", "active");
	if (res == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	hv_log_info("api key %s created in workspace %s by %s", id, k.ws,
	    hv_principal_actor(p));
	*out = res;
out:
	if (c != NULL)
		hv_store_release(v->store, &c);
	PQclear(r);
	hv_mem_zero(mac, sizeof(mac));
	hv_secret_free(&key);
	newkey_release(&k);
	hv_principal_release(&cli);
	return rc;
}

/*
 * Cursor of the API key and workspace lists (vault_int.h):
 * "<created_at in µs>_<id>", both from the last row of a page.
 */
bool
hv_vault_cursor_parse(const char *s, char us[24], char id[HV_UUID_STR])
{
	size_t n = strspn(s, "0123456789");

	if (n == 0 || n > 19 || s[n] != '_')
		return false;
	memcpy(us, s, n);
	us[n] = '\0';
	return hv_uuid_normalize(s + n + 1, id);
}

enum hv_rc
hv_vault_apikey_list(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const struct hv_list_query *q, json_t **out,
    struct hv_err *err)
{
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	char us[24], cid[HV_UUID_STR], lim[16], next[64], ws[HV_UUID_STR];
	const char *pv[4];
	unsigned int limit =
	    q != NULL && q->limit > 0 ? q->limit : LIST_DEFAULT;
	json_t *items = NULL, *res = NULL;
	enum hv_rc rc;
	int i, n;

	rc = hv_vault_require(v, p, HV_SCOPE_KEYS_READ, ctx, err);
	if (rc != HV_OK)
		return rc;
	if (limit > LIST_MAX)
		limit = LIST_MAX;
	/* admin: every workspace unless narrowed; others: their own */
	pv[0] = is_admin(p) ? NULL : p->workspace_id;
	if (q != NULL && q->workspace_id != NULL &&
	    q->workspace_id[0] != '\0') {
		if (!hv_uuid_normalize(q->workspace_id, ws))
			return hv_err_set(err, HV_E_INVALID,
			    "workspace_id: not a workspace id");
		if (!is_admin(p) && strcmp(ws, p->workspace_id) != 0) {
			hv_vault_deny(v, p, ctx, NULL,
			    "api key list: other "
			    "workspace");
			return hv_err_set(err, HV_E_FORBIDDEN,
			    "workspace_id: "
			    "only admin keys can list another workspace's "
			    "keys");
		}
		pv[0] = ws;
	}
	pv[1] = pv[2] = NULL;
	if (q != NULL && q->cursor != NULL && q->cursor[0] != '\0') {
		if (!hv_vault_cursor_parse(q->cursor, us, cid))
			return hv_err_set(err, HV_E_INVALID, "cursor: invalid");
		pv[1] = us;
		pv[2] = cid;
	}
	snprintf(lim, sizeof(lim), "%u", limit + 1);
	pv[3] = lim;
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_exec(c, "apikey_list", 4, pv, NULL, NULL, false, &r, err);
	hv_store_release(v->store, &c);
	if (rc != HV_OK)
		return rc;
	items = json_array();
	if (items == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	n = PQntuples(r);
	for (i = 0; i < n && i < (int)limit; i++) {
		const char *status = !PQgetisnull(r, i, 7)   ? "revoked"
		    : strcmp(PQgetvalue(r, i, 12), "t") == 0 ? "expired"
		                                             : "active";
		json_t *it;

#define NS(col)                                                                \
	(PQgetisnull(r, i, col) ? json_null()                                  \
	                        : json_string(PQgetvalue(r, i, col)))
		it = json_pack("{s:s,s:s,s:o,s:o,s:o,s:s,s:o,s:o,s:o,s:s,s:s,"
		               "s:s}",
		    "id", PQgetvalue(r, i, 0), "name", PQgetvalue(r, i, 1),
		    "user", NS(2), "scopes", array_to_json(PQgetvalue(r, i, 3)),
		    "credentials",
		    PQgetisnull(r, i, 4) ? json_string("all")
		                         : array_to_json(PQgetvalue(r, i, 4)),
		    "created_at", PQgetvalue(r, i, 5), "expires_at", NS(6),
		    "revoked_at", NS(7), "last_used_at", NS(8), "created_by",
		    PQgetvalue(r, i, 9), "workspace_id", PQgetvalue(r, i, 10),
		    "status", status);
#undef NS
		if (it == NULL || json_array_append_new(items, it) != 0) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
	}
	if (n > (int)limit)
		snprintf(next, sizeof(next), "%s_%s",
		    PQgetvalue(r, (int)limit - 1, 11),
		    PQgetvalue(r, (int)limit - 1, 0));
	res = json_pack("{s:O,s:o}", "items", items, "next_cursor",
	    n > (int)limit ? json_string(next) : json_null());
	if (res == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	*out = res;
out:
	json_decref(items);
	PQclear(r);
	return rc;
}

enum hv_rc
hv_vault_apikey_revoke(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id_in, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	struct hv_audit_event ev;
	PGresult *r = NULL;
	char id[HV_UUID_STR], ws[HV_UUID_STR], detail[64];
	const char *pv[2];
	enum hv_rc rc;

	rc = hv_vault_require(v, p, HV_SCOPE_KEYS_WRITE, ctx, err);
	if (rc != HV_OK)
		return rc;
	if (id_in == NULL || !hv_uuid_normalize(id_in, id))
		return hv_err_set(err, HV_E_NOT_FOUND, "no such api key");
	pv[0] = id;
	/* admin reaches every workspace; others only their own */
	pv[1] = is_admin(p) ? NULL : p->workspace_id;
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_begin(c, err);
	if (rc == HV_OK)
		rc = hv_store_exec(
		    c, "apikey_revoke", 2, pv, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	if (PQntuples(r) == 0) {
		/* unknown, another workspace's, or already revoked */
		PQclear(r);
		r = NULL;
		rc = hv_store_exec(
		    c, "apikey_find", 2, pv, NULL, NULL, false, &r, err);
		if (rc != HV_OK)
			goto out;
		if (PQntuples(r) == 0)
			rc = hv_err_set(err, HV_E_NOT_FOUND, "no such api key");
		/* already revoked: done, nothing more to record */
		goto out;
	}
	snprintf(ws, sizeof(ws), "%s", PQgetvalue(r, 0, 0));
	pv[0] = id;
	rc = hv_store_exec(
	    c, "apikey_notify", 1, pv, NULL, NULL, false, NULL, err);
	if (rc != HV_OK)
		goto out;
	snprintf(detail, sizeof(detail), "api key %s", id);
	hv_vault_event(
	    &ev, p, ctx, ws, "apikey.revoke", NULL, "success", detail);
	rc = hv_audit_append(v->audit, c, &ev, err);
	if (rc == HV_OK)
		rc = hv_store_commit(c, err);
	if (rc == HV_OK) {
		hv_vault_cache_evict(v, id);
		hv_log_info(
		    "api key %s revoked by %s", id, hv_principal_actor(p));
	}
out:
	PQclear(r);
	hv_store_rollback(c);
	hv_store_release(v->store, &c);
	return rc;
}
