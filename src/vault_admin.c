/*
 * vault_admin: workspaces, KEK rotation and disabling, rewrap, status and
 * the audit log readers (SPEC sections 1 and 5; docs/storage.md).
 *
 * Rewrap walks credential_versions with kek_version below the active KEK
 * in primary-key order (keyset pagination), re-wraps each DEK inside the
 * key store (hv_envelope_rewrap: the payload is never decrypted) and
 * writes it back with a compare-and-set on the old wrapped DEK and KEK
 * version, so a concurrent rotation, rewrap, edit or crypto-shred wins and
 * the row is skipped. Each batch is one transaction with its audit row;
 * a crash loses at most the batch in flight, and the next run resumes
 * with whatever still references an older KEK.
 */
#include "vault_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "log.h"
#include "mem.h"
#include "uuid.h"

#define REWRAP_BATCH     100
#define REWRAP_BATCH_MAX 10000
#define AUDIT_DEFAULT    50
#define AUDIT_MAX        200
#define WS_LIST_DEFAULT  50
#define WS_LIST_MAX      200

static const struct hv_stmt admin_stmts[] = {
    {"admin_ws_insert",
        "INSERT INTO workspaces (id, name) VALUES ($1::uuid, $2) "
        "RETURNING " HV_SQL_TS("created_at"),
        2},
    {"admin_ws_list",
        "SELECT id::text, name, " HV_SQL_TS(
            "created_at") ", "
                          "(extract(epoch FROM created_at) * 1000000)::bigint "
                          "FROM workspaces WHERE ($1::bigint IS NULL OR "
                          "(created_at, id) > "
                          "('epoch'::timestamptz + $1::bigint * interval '1 "
                          "microsecond', "
                          "$2::uuid)) ORDER BY created_at, id LIMIT "
                          "$3::integer",
        3},
    {"admin_kek_refs",
        "SELECT count(*) FROM credential_versions WHERE kek_version = "
        "$1::integer",
        1},
    {"admin_kek_lock", "SELECT pg_advisory_xact_lock(7531468254417668)", 0},
    {"admin_rewrap_page",
        "SELECT cv.credential_id::text, cv.version, cv.kek_version, "
        "cv.wrapped_dek, c.workspace_id::text FROM credential_versions cv "
        "JOIN credentials c ON c.id = cv.credential_id "
        "WHERE cv.kek_version < $1::integer AND (cv.credential_id, "
        "cv.version) > ($2::uuid, $3::integer) "
        "ORDER BY cv.credential_id, cv.version LIMIT $4::integer",
        4},
    {"admin_rewrap_update",
        "UPDATE credential_versions SET wrapped_dek = $4, kek_version = "
        "$5::integer WHERE credential_id = $1::uuid AND version = "
        "$2::integer AND kek_version = $3::integer AND wrapped_dek = $6",
        6},
    {"admin_rewrap_remaining",
        "SELECT count(*) FROM credential_versions WHERE kek_version < "
        "$1::integer",
        1},
    {"admin_kek_counts",
        "SELECT kek_version, count(*) FROM credential_versions "
        "GROUP BY kek_version ORDER BY kek_version",
        0},
    {"admin_counts",
        "SELECT (SELECT count(*) FROM workspaces), "
        "(SELECT count(*) FROM credentials), "
        "(SELECT count(*) FROM credential_versions), "
        "(SELECT count(*) FROM api_keys), "
        "(SELECT count(*) FROM api_keys WHERE revoked_at IS NULL AND "
        "(expires_at IS NULL OR expires_at > now())), "
        "(SELECT count(*) FROM audit_log), "
        "(SELECT coalesce(max(version), 0) FROM hv_migrations)",
        0},
    /*
	 * Audit rows, newest first. $1: workspace (NULL: every workspace,
	 * admin), then optional filters, then the cursor (an id).
	 */
    {"admin_audit_list",
        "SELECT id, " HV_SQL_TS(
            "at") ", actor_id::text, actor_name, action, "
                  "credential_id::text, outcome, request_id, remote_addr, "
                  "detail, "
                  "workspace_id::text, chain, seq, encode(mac, 'hex'), "
                  "encode(prev_mac, 'hex') FROM audit_log WHERE "
                  "($1::uuid IS NULL OR workspace_id = $1::uuid) "
                  "AND ($2::text IS NULL OR action = $2::text) "
                  "AND ($3::uuid IS NULL OR credential_id = $3::uuid) "
                  "AND ($4::timestamptz IS NULL OR at >= $4::timestamptz) "
                  "AND ($5::bigint IS NULL OR id < $5::bigint) "
                  "ORDER BY id DESC LIMIT $6::integer",
        6},
    {"admin_cred_meta",
        "SELECT workspace_id::text, scope, owner_user FROM credentials "
        "WHERE id = $1::uuid",
        1},
};

void
hv_vault_admin_register(void)
{
	hv_store_register(
	    admin_stmts, sizeof(admin_stmts) / sizeof(admin_stmts[0]));
}

/* ---------------------------------------------------------------- */
/* workspaces                                                         */

static const char *const ws_fields[] = {"name", NULL};

enum hv_rc
hv_vault_workspace_create(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const json_t *body, json_t **out,
    struct hv_err *err)
{
	struct hv_conn *c = NULL;
	struct hv_audit_event ev;
	PGresult *r = NULL;
	char id[HV_UUID_STR];
	const char *pv[2];
	json_t *name, *res;
	enum hv_rc rc;

	rc = hv_vault_require(v, p, HV_SCOPE_ADMIN, ctx, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_vault_check_fields(body, ws_fields, err);
	if (rc != HV_OK)
		return rc;
	name = json_object_get(body, "name");
	if (!hv_vault_text_ok(name, 1, 200))
		return hv_err_set(err, HV_E_INVALID,
		    "name: a string of 1 to "
		    "200 characters is required");
	if (hv_uuid_new(id) != HV_OK)
		return hv_err_set(err, HV_E_INTERNAL, "uuid: rng failed");
	pv[0] = id;
	pv[1] = json_string_value(name);
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_begin(c, err);
	if (rc == HV_OK)
		rc = hv_store_exec(
		    c, "admin_ws_insert", 2, pv, NULL, NULL, false, &r, err);
	if (rc == HV_E_CONFLICT)
		hv_err_set(err, HV_E_CONFLICT,
		    "a workspace with this name "
		    "exists");
	if (rc == HV_OK) {
		hv_vault_event(
		    &ev, p, ctx, id, "workspace.create", NULL, "success", NULL);
		rc = hv_audit_append(v->audit, c, &ev, err);
	}
	if (rc == HV_OK)
		rc = hv_store_commit(c, err);
	if (rc != HV_OK)
		goto out;
	res = json_pack("{s:s,s:s,s:s}", "id", id, "name", pv[1], "created_at",
	    PQgetvalue(r, 0, 0));
	if (res == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	*out = res;
out:
	PQclear(r);
	hv_store_release(v->store, &c);
	return rc;
}

enum hv_rc
hv_vault_workspace_list_page(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const struct hv_list_query *q, json_t **out,
    struct hv_err *err)
{
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	char us[24], cid[HV_UUID_STR], lim[16], next[64];
	const char *pv[3] = {NULL, NULL, lim};
	unsigned int limit =
	    q != NULL && q->limit > 0 ? q->limit : WS_LIST_DEFAULT;
	json_t *items = NULL, *res;
	enum hv_rc rc;
	int i, n;

	rc = hv_vault_require(v, p, HV_SCOPE_ADMIN, ctx, err);
	if (rc != HV_OK)
		return rc;
	if (limit > WS_LIST_MAX)
		limit = WS_LIST_MAX;
	if (q != NULL && q->cursor != NULL && q->cursor[0] != '\0') {
		if (!hv_vault_cursor_parse(q->cursor, us, cid))
			return hv_err_set(err, HV_E_INVALID, "cursor: invalid");
		pv[0] = us;
		pv[1] = cid;
	}
	snprintf(lim, sizeof(lim), "%u", limit + 1);
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_exec(
	    c, "admin_ws_list", 3, pv, NULL, NULL, false, &r, err);
	hv_store_release(v->store, &c);
	if (rc != HV_OK)
		return rc;
	n = PQntuples(r);
	items = json_array();
	for (i = 0; items != NULL && i < n && i < (int)limit; i++)
		if (json_array_append_new(items,
		        json_pack("{s:s,s:s,s:s}", "id", PQgetvalue(r, i, 0),
		            "name", PQgetvalue(r, i, 1), "created_at",
		            PQgetvalue(r, i, 2))) != 0) {
			json_decref(items);
			items = NULL;
		}
	if (n > (int)limit)
		snprintf(next, sizeof(next), "%s_%s",
		    PQgetvalue(r, (int)limit - 1, 3),
		    PQgetvalue(r, (int)limit - 1, 0));
	res = items == NULL
	    ? NULL
	    : json_pack("{s:o,s:o}", "items", items, "next_cursor",
	          n > (int)limit ? json_string(next) : json_null());
	PQclear(r);
	if (res == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	*out = res;
	return HV_OK;
}

enum hv_rc
hv_vault_workspace_list(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, json_t **out, struct hv_err *err)
{
	return hv_vault_workspace_list_page(v, p, ctx, NULL, out, err);
}

/* ---------------------------------------------------------------- */
/* KEK versions                                                       */

static const char *
kek_state_name(enum hv_kek_state s)
{
	switch (s) {
	case HV_KEK_ACTIVE:
		return "active";
	case HV_KEK_RETIRED:
		return "retired";
	case HV_KEK_DISABLED:
		return "disabled";
	}
	return "unknown";
}

static enum hv_rc
active_kek(struct hv_vault *v, uint32_t *out, struct hv_err *err)
{
	struct hv_kek_info keks[HV_KEK_MAX_VERSIONS];
	size_t n = 0, i;
	enum hv_rc rc;

	rc = hv_hsm_kek_list(v->hsm, keks, HV_KEK_MAX_VERSIONS, &n, err);
	if (rc != HV_OK)
		return rc;
	*out = 0;
	for (i = 0; i < n; i++)
		if (keks[i].state == HV_KEK_ACTIVE)
			*out = keks[i].version;
	if (*out == 0)
		return hv_err_set(
		    err, HV_E_NOT_FOUND, "no active kek (run hsmvault init)");
	return HV_OK;
}

/* {"version": n, "state": "...", "deks": count} for every KEK. */
static enum hv_rc
kek_json(
    struct hv_vault *v, struct hv_conn *c, json_t **out, struct hv_err *err)
{
	struct hv_kek_info keks[HV_KEK_MAX_VERSIONS];
	size_t n = 0, i;
	PGresult *r = NULL;
	json_t *arr;
	enum hv_rc rc;
	int j;

	rc = hv_hsm_kek_list(v->hsm, keks, HV_KEK_MAX_VERSIONS, &n, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_exec(
	    c, "admin_kek_counts", 0, NULL, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		return rc;
	arr = json_array();
	for (i = 0; arr != NULL && i < n; i++) {
		long long cnt = 0;

		for (j = 0; j < PQntuples(r); j++)
			if (strtoul(PQgetvalue(r, j, 0), NULL, 10) ==
			    keks[i].version)
				cnt = strtoll(PQgetvalue(r, j, 1), NULL, 10);
		json_array_append_new(arr,
		    json_pack("{s:I,s:s,s:I}", "version",
		        (json_int_t)keks[i].version, "state",
		        kek_state_name(keks[i].state), "deks",
		        (json_int_t)cnt));
	}
	/* versions the database names that the key store does not know */
	for (j = 0; arr != NULL && j < PQntuples(r); j++) {
		unsigned long ver = strtoul(PQgetvalue(r, j, 0), NULL, 10);
		bool known = false;

		for (i = 0; i < n; i++)
			if (keks[i].version == ver)
				known = true;
		if (!known)
			json_array_append_new(arr,
			    json_pack("{s:I,s:s,s:I}", "version",
			        (json_int_t)ver, "state", "missing", "deks",
			        (json_int_t)strtoll(
			            PQgetvalue(r, j, 1), NULL, 10)));
	}
	PQclear(r);
	if (arr == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	*out = arr;
	return HV_OK;
}

enum hv_rc
hv_vault_kek_rotate(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, json_t **out, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	struct hv_audit_event ev;
	uint32_t ver = 0;
	char detail[64];
	json_t *keks = NULL;
	enum hv_rc rc;

	rc = hv_vault_require(v, p, HV_SCOPE_ADMIN, ctx, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	/*
	 * The transaction is open before the key store acts, so a database
	 * that is away fails the rotation before a key exists. A key made
	 * whose audit row then fails is reported as an error: the key stays
	 * (a key store has no rollback) and is harmless, but the caller
	 * learns the rotation was not recorded.
	 */
	rc = hv_store_begin(c, err);
	if (rc == HV_OK)
		rc = hv_store_exec(
		    c, "admin_kek_lock", 0, NULL, NULL, NULL, false, NULL, err);
	if (rc == HV_OK)
		rc = hv_hsm_kek_create(v->hsm, &ver, err);
	if (rc == HV_OK) {
		snprintf(detail, sizeof(detail), "kek_version=%u", ver);
		hv_vault_event(
		    &ev, p, ctx, NULL, "kek.rotate", NULL, "success", detail);
		rc = hv_audit_append(v->audit, c, &ev, err);
	}
	if (rc == HV_OK)
		rc = hv_store_commit(c, err);
	if (rc == HV_OK)
		rc = kek_json(v, c, &keks, err);
	if (rc != HV_OK)
		goto out;
	hv_log_info("kek: version %u created and active", ver);
	*out = json_pack(
	    "{s:I,s:o}", "kek_version", (json_int_t)ver, "keks", keks);
	if (*out == NULL)
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
out:
	hv_store_rollback(c);
	hv_store_release(v->store, &c);
	return rc;
}

enum hv_rc
hv_vault_kek_disable(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, uint32_t version, json_t **out,
    struct hv_err *err)
{
	struct hv_conn *c = NULL;
	struct hv_audit_event ev;
	PGresult *r = NULL;
	char ver[16], detail[64];
	const char *pv[1] = {ver};
	long long refs;
	json_t *keks = NULL;
	enum hv_rc rc;

	rc = hv_vault_require(v, p, HV_SCOPE_ADMIN, ctx, err);
	if (rc != HV_OK)
		return rc;
	if (version == 0)
		return hv_err_set(err, HV_E_INVALID, "kek version 0");
	snprintf(ver, sizeof(ver), "%u", version);
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_begin(c, err);
	if (rc == HV_OK)
		rc = hv_store_exec(
		    c, "admin_kek_lock", 0, NULL, NULL, NULL, false, NULL, err);
	if (rc == HV_OK)
		rc = hv_store_exec(
		    c, "admin_kek_refs", 1, pv, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	refs = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	if (refs > 0) {
		rc = hv_err_set(err, HV_E_CONFLICT,
		    "kek version %u still "
		    "protects %lld data keys (run hsmvault rewrap)",
		    version, refs);
		goto out;
	}
	rc = hv_hsm_kek_disable(v->hsm, version, err);
	if (rc != HV_OK)
		goto out;
	snprintf(detail, sizeof(detail), "kek_version=%u", version);
	hv_vault_event(
	    &ev, p, ctx, NULL, "kek.disable", NULL, "success", detail);
	rc = hv_audit_append(v->audit, c, &ev, err);
	if (rc == HV_OK)
		rc = hv_store_commit(c, err);
	if (rc == HV_OK)
		rc = kek_json(v, c, &keks, err);
	if (rc != HV_OK)
		goto out;
	hv_log_info("kek: version %u disabled", version);
	*out = json_pack("{s:I,s:s,s:o}", "kek_version", (json_int_t)version,
	    "state", "disabled", "keks", keks);
	if (*out == NULL)
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
out:
	PQclear(r);
	hv_store_rollback(c);
	hv_store_release(v->store, &c);
	return rc;
}

/* ---------------------------------------------------------------- */
/* rewrap                                                             */

static enum hv_rc
count_remaining(
    struct hv_conn *c, const char *active, long long *n, struct hv_err *err)
{
	PGresult *r = NULL;
	const char *pv[1] = {active};
	enum hv_rc rc;

	rc = hv_store_exec(
	    c, "admin_rewrap_remaining", 1, pv, NULL, NULL, false, &r, err);
	if (rc == HV_OK)
		*n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return rc;
}

/* Re-wrap one page; *done and *failed grow, *last moves forward. */
static enum hv_rc
rewrap_batch(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, struct hv_conn *c, const char *active,
    unsigned int batch, char last_id[HV_UUID_STR], char last_ver[16], int *rows,
    unsigned long *done, unsigned long *failed, struct hv_err *err)
{
	PGresult *r = NULL;
	struct hv_audit_event ev;
	char lim[16], detail[96];
	const char *pv[6];
	unsigned long n_ok = 0, n_fail = 0, n_skip = 0;
	enum hv_rc rc;
	int i, n;

	snprintf(lim, sizeof(lim), "%u", batch);
	pv[0] = active;
	pv[1] = last_id;
	pv[2] = last_ver;
	pv[3] = lim;
	/* binary results: the wrapped DEK comes back as raw bytes */
	rc = hv_store_exec(
	    c, "admin_rewrap_page", 4, pv, NULL, NULL, true, &r, err);
	if (rc != HV_OK)
		return rc;
	n = PQntuples(r);
	*rows = n;
	if (n == 0)
		goto out;
	rc = hv_store_begin(c, err);
	if (rc != HV_OK)
		goto out;
	for (i = 0; i < n; i++) {
		char cred[HV_UUID_STR], ws[HV_UUID_STR], vers[16], olds[16],
		    news[16];
		const uint8_t *wrapped = (const uint8_t *)PQgetvalue(r, i, 3);
		size_t wlen = (size_t)PQgetlength(r, i, 3);
		uint8_t nw[HV_WRAPPED_MAX];
		size_t nwlen = 0;
		uint32_t ver, old, newk = 0;
		const uint8_t *vp;
		struct hv_err e2 = {0};
		PGresult *u = NULL;
		const char *up[6];
		int ulen[6] = {0}, ufmt[6] = {0};
		int cl = PQgetlength(r, i, 0), wl = PQgetlength(r, i, 4);
		enum hv_rc rc2;

		if (cl != HV_UUID_STR - 1 || wl != HV_UUID_STR - 1 ||
		    PQgetlength(r, i, 1) != 4 || PQgetlength(r, i, 2) != 4) {
			rc = hv_err_set(
			    err, HV_E_DATABASE, "rewrap: unexpected row shape");
			goto out;
		}
		memcpy(cred, PQgetvalue(r, i, 0), HV_UUID_STR - 1);
		cred[HV_UUID_STR - 1] = '\0';
		memcpy(ws, PQgetvalue(r, i, 4), HV_UUID_STR - 1);
		ws[HV_UUID_STR - 1] = '\0';
		vp = (const uint8_t *)PQgetvalue(r, i, 1);
		ver = (uint32_t)vp[0] << 24 | (uint32_t)vp[1] << 16 |
		    (uint32_t)vp[2] << 8 | vp[3];
		vp = (const uint8_t *)PQgetvalue(r, i, 2);
		old = (uint32_t)vp[0] << 24 | (uint32_t)vp[1] << 16 |
		    (uint32_t)vp[2] << 8 | vp[3];
		snprintf(last_id, HV_UUID_STR, "%s", cred);
		snprintf(last_ver, 16, "%u", ver);

		rc2 = hv_envelope_rewrap(v->hsm, ws, cred, ver, wrapped, wlen,
		    old, nw, &nwlen, &newk, &e2);
		if (rc2 == HV_E_KEYSTORE || rc2 == HV_E_PIN ||
		    rc2 == HV_E_NOMEM) {
			*err = e2;
			rc = rc2;
			goto out;
		}
		if (rc2 != HV_OK) {
			/* a DEK that does not open stays; report, go on */
			hv_log_error("rewrap: credential %s version %u: %s",
			    cred, ver, e2.msg);
			n_fail++;
			continue;
		}
		snprintf(vers, sizeof(vers), "%u", ver);
		snprintf(olds, sizeof(olds), "%u", old);
		snprintf(news, sizeof(news), "%u", newk);
		up[0] = cred;
		up[1] = vers;
		up[2] = olds;
		up[3] = (const char *)nw;
		ulen[3] = (int)nwlen;
		ufmt[3] = 1;
		up[4] = news;
		up[5] = (const char *)wrapped;
		ulen[5] = (int)wlen;
		ufmt[5] = 1;
		rc = hv_store_exec(c, "admin_rewrap_update", 6, up, ulen, ufmt,
		    false, &u, err);
		hv_mem_zero(nw, sizeof(nw));
		if (rc != HV_OK)
			goto out;
		if (strcmp(PQcmdTuples(u), "1") == 0)
			n_ok++;
		else
			n_skip++; /* changed under us: theirs wins */
		PQclear(u);
	}
	snprintf(detail, sizeof(detail),
	    "rewrapped=%lu failed=%lu skipped=%lu "
	    "kek_version=%s",
	    n_ok, n_fail, n_skip, active);
	hv_vault_event(&ev, p, ctx, NULL, "rewrap", NULL,
	    n_fail > 0 ? "failure" : "success", detail);
	rc = hv_audit_append(v->audit, c, &ev, err);
	if (rc == HV_OK)
		rc = hv_store_commit(c, err);
	if (rc == HV_OK) {
		*done += n_ok;
		*failed += n_fail;
	}
out:
	hv_store_rollback(c);
	PQclear(r);
	return rc;
}

enum hv_rc
hv_vault_rewrap(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, unsigned int batch, unsigned int max_batches,
    void (*progress)(unsigned long done, unsigned long remaining, void *arg),
    void *arg, json_t **out, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	char active[16],
	    last_id[HV_UUID_STR] = "00000000-0000-0000-0000-000000000000",
	    last_ver[16] = "0";
	unsigned long done = 0, failed = 0;
	unsigned int nb = 0;
	long long remaining = 0;
	uint32_t act = 0;
	enum hv_rc rc;

	rc = hv_vault_require(v, p, HV_SCOPE_ADMIN, ctx, err);
	if (rc != HV_OK)
		return rc;
	if (batch == 0)
		batch = REWRAP_BATCH;
	if (batch > REWRAP_BATCH_MAX)
		batch = REWRAP_BATCH_MAX;
	rc = active_kek(v, &act, err);
	if (rc != HV_OK)
		return rc;
	snprintf(active, sizeof(active), "%u", act);
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	for (;;) {
		int rows = 0;

		if (max_batches != 0 && nb >= max_batches)
			break;
		rc = rewrap_batch(v, p, ctx, c, active, batch, last_id,
		    last_ver, &rows, &done, &failed, err);
		if (rc != HV_OK)
			goto out;
		if (rows == 0)
			break;
		nb++;
		if (progress != NULL) {
			rc = count_remaining(c, active, &remaining, err);
			if (rc != HV_OK)
				goto out;
			progress(done, (unsigned long)remaining, arg);
		}
		if ((unsigned int)rows < batch)
			break;
	}
	rc = count_remaining(c, active, &remaining, err);
	if (rc != HV_OK)
		goto out;
	hv_log_info("rewrap: %lu data keys moved to kek %u, %lld remaining, "
	            "%lu failed",
	    done, act, remaining, failed);
	*out = json_pack("{s:I,s:I,s:I,s:I}", "rewrapped", (json_int_t)done,
	    "remaining", (json_int_t)remaining, "kek_version", (json_int_t)act,
	    "failed", (json_int_t)failed);
	if (*out == NULL)
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
out:
	hv_store_release(v->store, &c);
	return rc;
}

/* ---------------------------------------------------------------- */
/* status                                                             */

enum hv_rc
hv_vault_status(struct hv_vault *v, json_t **out, struct hv_err *err)
{
	struct hv_hsm_status st;
	struct hv_store_stats ss;
	struct hv_conn *c = NULL;
	struct hv_err e2 = {0};
	PGresult *r = NULL;
	json_t *res = NULL, *keks = NULL;
	char active[16];
	long long remaining = -1;
	enum hv_rc rc, hrc;

	memset(&st, 0, sizeof(st));
	hrc = hv_hsm_probe(v->hsm, &st, &e2);
	if (hrc != HV_OK)
		st.reachable = false;
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_exec(
	    c, "admin_counts", 0, NULL, NULL, NULL, false, &r, err);
	if (rc != HV_OK)
		goto out;
	if (st.reachable) {
		if (kek_json(v, c, &keks, &e2) != HV_OK)
			keks = NULL;
		if (st.active_kek > 0) {
			snprintf(active, sizeof(active), "%u", st.active_kek);
			rc = count_remaining(c, active, &remaining, err);
			if (rc != HV_OK)
				goto out;
		}
	}
	hv_store_stats(v->store, &ss);
#define CNT(i) ((json_int_t)strtoll(PQgetvalue(r, 0, i), NULL, 10))
	res = json_pack("{s:{s:s,s:s,s:s,s:b,s:I,s:I,s:s*},s:o,"
	                "s:{s:I,s:o},s:{s:I,s:I,s:I,s:I,s:I,s:I},"
	                "s:{s:I,s:i,s:i}}",
	    "keystore", "backend", st.backend, "token", st.token, "detail",
	    st.detail, "reachable", st.reachable, "active_kek",
	    (json_int_t)st.active_kek, "reconnects", (json_int_t)st.reconnects,
	    "error", hrc != HV_OK ? e2.msg : NULL, "keks",
	    keks != NULL ? keks : json_null(), "rewrap", "active_kek",
	    (json_int_t)st.active_kek, "remaining",
	    remaining >= 0 ? json_integer(remaining) : json_null(), "counts",
	    "workspaces", CNT(0), "credentials", CNT(1), "credential_versions",
	    CNT(2), "api_keys", CNT(3), "api_keys_active", CNT(4), "audit_rows",
	    CNT(5), "database", "schema_version", CNT(6), "pool_size",
	    (int)ss.size, "pool_in_use", (int)ss.in_use);
#undef CNT
	keks = NULL;
	if (res == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	*out = res;
out:
	json_decref(keks);
	PQclear(r);
	hv_store_release(v->store, &c);
	return rc;
}

/* ---------------------------------------------------------------- */
/* audit                                                              */

enum hv_rc
hv_vault_audit_verify(struct hv_vault *v, json_t **report, struct hv_err *err)
{
	return hv_audit_verify(v->audit, v->store, report, err);
}

/* One page of audit rows as {"items", "next_cursor"}. */
static enum hv_rc
audit_page(struct hv_vault *v, const char *ws, const char *cred_id,
    const struct hv_list_query *q, json_t **out, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	char cid[HV_UUID_STR], lim[16], cur[24];
	const char *pv[6] = {ws, NULL, NULL, NULL, NULL, lim};
	unsigned int limit =
	    q != NULL && q->limit > 0 ? q->limit : AUDIT_DEFAULT;
	json_t *items = NULL, *res = NULL;
	enum hv_rc rc;
	int i, n;

	if (limit > AUDIT_MAX)
		limit = AUDIT_MAX;
	if (q != NULL && q->action != NULL && q->action[0] != '\0') {
		if (strlen(q->action) > 64)
			return hv_err_set(
			    err, HV_E_INVALID, "action: too long");
		pv[1] = q->action;
	}
	if (cred_id != NULL) {
		pv[2] = cred_id;
	} else if (q != NULL && q->credential_id != NULL &&
	    q->credential_id[0] != '\0') {
		if (!hv_uuid_normalize(q->credential_id, cid))
			return hv_err_set(err, HV_E_INVALID,
			    "credential_id: not a credential id");
		pv[2] = cid;
	}
	if (q != NULL && q->since != NULL && q->since[0] != '\0') {
		int64_t us;

		rc = hv_vault_parse_time(q->since, &us, err, "since");
		if (rc != HV_OK)
			return rc;
		pv[3] = q->since;
	}
	if (q != NULL && q->cursor != NULL && q->cursor[0] != '\0') {
		size_t l = strlen(q->cursor);

		if (l == 0 || l > 18 || strspn(q->cursor, "0123456789") != l)
			return hv_err_set(err, HV_E_INVALID, "cursor: invalid");
		snprintf(cur, sizeof(cur), "%s", q->cursor);
		pv[4] = cur;
	}
	snprintf(lim, sizeof(lim), "%u", limit + 1);
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_exec(
	    c, "admin_audit_list", 6, pv, NULL, NULL, false, &r, err);
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
		json_t *it;

#define NS(col)                                                                \
	(PQgetisnull(r, i, col) ? json_null()                                  \
	                        : json_string(PQgetvalue(r, i, col)))
		it = json_pack("{s:I,s:s,s:{s:o,s:o},s:s,s:o,s:s,s:o,s:o,s:o,"
		               "s:o,s:I,s:I,s:s,s:s}",
		    "id", (json_int_t)strtoll(PQgetvalue(r, i, 0), NULL, 10),
		    "at", PQgetvalue(r, i, 1), "actor", "id", NS(2), "name",
		    NS(3), "action", PQgetvalue(r, i, 4), "credential_id",
		    NS(5), "outcome", PQgetvalue(r, i, 6), "request_id", NS(7),
		    "remote_addr", NS(8), "detail", NS(9), "workspace_id",
		    NS(10), "chain",
		    (json_int_t)strtoll(PQgetvalue(r, i, 11), NULL, 10), "seq",
		    (json_int_t)strtoll(PQgetvalue(r, i, 12), NULL, 10), "mac",
		    PQgetvalue(r, i, 13), "prev_mac", PQgetvalue(r, i, 14));
#undef NS
		if (it == NULL || json_array_append_new(items, it) != 0) {
			rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
			goto out;
		}
	}
	res = json_pack("{s:O,s:o}", "items", items, "next_cursor",
	    n > (int)limit ? json_string(PQgetvalue(r, (int)limit - 1, 0))
	                   : json_null());
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
hv_vault_audit_list(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const struct hv_list_query *q, json_t **out,
    struct hv_err *err)
{
	enum hv_rc rc;

	rc = hv_vault_require(v, p, HV_SCOPE_AUDIT_READ, ctx, err);
	if (rc != HV_OK)
		return rc;
	/* admin reads the whole deployment; others their workspace */
	return audit_page(v,
	    (p->scopes & HV_SCOPE_ADMIN) ? NULL : p->workspace_id, NULL, q, out,
	    err);
}

enum hv_rc
hv_vault_cred_audit(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const struct hv_list_query *q,
    json_t **out, struct hv_err *err)
{
	struct hv_conn *c = NULL;
	PGresult *r = NULL;
	char cid[HV_UUID_STR];
	const char *pv[1] = {cid};
	enum hv_rc rc;

	rc = hv_vault_require(v, p, HV_SCOPE_CRED_READ, ctx, err);
	if (rc != HV_OK)
		return rc;
	if (id == NULL || !hv_uuid_normalize(id, cid))
		return hv_err_set(err, HV_E_NOT_FOUND, "no such credential");
	rc = hv_store_acquire(v->store, &c, err);
	if (rc != HV_OK)
		return rc;
	rc = hv_store_exec(
	    c, "admin_cred_meta", 1, pv, NULL, NULL, false, &r, err);
	hv_store_release(v->store, &c);
	if (rc != HV_OK)
		return rc;
	if (PQntuples(r) != 1 ||
	    !hv_vault_visible(p, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
	        PQgetisnull(r, 0, 2) ? NULL : PQgetvalue(r, 0, 2))) {
		PQclear(r);
		return hv_err_set(err, HV_E_NOT_FOUND, "no such credential");
	}
	PQclear(r);
	if (!hv_vault_allowed(p, cid)) {
		hv_vault_deny(v, p, ctx, cid,
		    "credential not in the api key's "
		    "allow-list");
		return hv_err_set(err, HV_E_FORBIDDEN,
		    "this api key may not "
		    "use this credential");
	}
	/* every row about the credential, whichever workspace acted */
	return audit_page(v, NULL, cid, q, out, err);
}
