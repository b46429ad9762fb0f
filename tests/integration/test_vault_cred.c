/*
 * Credentials through the vault service layer (src/vault_cred.c) against a
 * real PostgreSQL and a real SoftHSM2 token: the lifecycle of every auth
 * type, validation that never changes state, tenancy, allow-lists, scopes,
 * optimistic concurrency, crypto-shred, duplicate with a new DEK, rotation
 * history, list search/filters/pagination, SQL metacharacters, and the
 * fail-closed audit row.
 *
 * Principals are built the way hv_vault_authenticate() fills them (key id,
 * name, workspace, user label, scopes, allow-list), so that every
 * combination can be tested without minting keys.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "mem.h"
#include "testenv.h"
#include "uuid.h"
#include "vault.h"

#define ALL_CRED                                                               \
	(HV_SCOPE_CRED_READ | HV_SCOPE_CRED_WRITE | HV_SCOPE_CRED_USE |        \
	    HV_SCOPE_CRED_REVEAL)

struct env {
	struct hv_test_token tok;
	struct hv_test_db db;
	struct hv_cfg cfg;
	struct hv_vault *v;
	PGconn *pg;
	struct hv_principal cli; /* admin, default workspace */
	char ws_a[HV_UUID_STR];  /* default workspace */
	char ws_b[HV_UUID_STR];
	char ws_c[HV_UUID_STR]; /* pagination, isolated */
	char ws_d[HV_UUID_STR]; /* metacharacters, isolated */
};

static struct env E;
static const struct hv_reqctx CTX = {"req-test", "127.0.0.1"};

/* ------------------------------------------------------------------ */

static void
make_principal(struct hv_principal *p, const char *ws, const char *user,
    unsigned int scopes, const char *name)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(hv_uuid_new(p->key_id), HV_OK);
	(void)snprintf(p->name, sizeof(p->name), "%s", name);
	(void)snprintf(p->workspace_id, sizeof(p->workspace_id), "%s", ws);
	(void)snprintf(
	    p->user, sizeof(p->user), "%s", user != NULL ? user : "");
	p->scopes = scopes;
	p->all_credentials = true;
}

/* Free json_dumps() output with jansson's (zeroing) allocator. */
static void
json_text_free(char *s)
{
	json_malloc_t m;
	json_free_t f;

	json_get_alloc_funcs(&m, &f);
	f(s);
}

struct counts {
	long creds, versions, audit;
};

static void
counts(struct counts *c)
{
	c->creds =
	    hv_test_pg_long(E.pg, "SELECT count(*) FROM credentials", NULL);
	c->versions = hv_test_pg_long(
	    E.pg, "SELECT count(*) FROM credential_versions", NULL);
	/* refusals are audited (auth.denied); only other rows are state */
	c->audit = hv_test_pg_long(E.pg,
	    "SELECT count(*) FROM audit_log "
	    "WHERE action <> 'auth.denied'",
	    NULL);
}

static void
assert_counts_equal(
    const struct counts *a, const struct counts *b, const char *what)
{
	if (a->creds != b->creds || a->versions != b->versions ||
	    a->audit != b->audit)
		fail_msg("%s changed state: creds %ld->%ld versions %ld->%ld "
		         "audit %ld->%ld",
		    what, a->creds, b->creds, a->versions, b->versions,
		    a->audit, b->audit);
}

static json_t *
parse(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);

	if (j == NULL)
		fail_msg("bad test json: %s: %s", je.text, text);
	return j;
}

/* Create from JSON text; returns the new credential (caller decrefs). */
static json_t *
create(const struct hv_principal *p, const char *body)
{
	struct hv_err err = {0};
	json_t *b = parse(body), *out = NULL;

	hv_test_must(
	    hv_vault_cred_create(E.v, p, &CTX, b, &out, &err), &err, body);
	json_decref(b);
	return out;
}

static const char *
sfield(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	if (s == NULL)
		fail_msg("field %s missing or not a string", k);
	return s;
}

static json_int_t
ifield(const json_t *o, const char *k)
{
	const json_t *j = json_object_get(o, k);

	if (!json_is_integer(j))
		fail_msg("field %s missing or not an integer", k);
	return json_integer_value(j);
}

static json_t *
reveal(const struct hv_principal *p, const char *id)
{
	struct hv_err err = {0};
	json_t *out = NULL, *s;

	hv_test_must(
	    hv_vault_cred_reveal(E.v, p, &CTX, id, &out, &err), &err, "reveal");
	s = json_object_get(out, "secret");
	assert_non_null(s);
	json_incref(s);
	json_decref(out);
	return s;
}

static void
assert_secret(
    const struct hv_principal *p, const char *id, const char *expected)
{
	json_t *s = reveal(p, id), *e = parse(expected);

	if (!json_equal(s, e)) {
		fail_msg("secret of %s differs", id);
	}
	json_decref(s);
	json_decref(e);
}

static enum hv_rc
get_rc(const struct hv_principal *p, const char *id)
{
	struct hv_err err = {0};
	json_t *out = NULL;
	enum hv_rc rc = hv_vault_cred_get(E.v, p, &CTX, id, &out, &err);

	json_decref(out);
	return rc;
}

static long
audit_rows(const char *action, const char *cred_id)
{
	const char *params[2] = {action, cred_id};
	PGresult *r = PQexecParams(E.pg,
	    "SELECT count(*) FROM audit_log "
	    "WHERE action = $1 AND credential_id = $2::uuid",
	    2, NULL, params, NULL, NULL, 0);
	long n;

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("audit count: %s", PQerrorMessage(E.pg));
	n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return n;
}

/* ------------------------------------------------------------------ */

static int
setup(void **state)
{
	struct hv_err err = {0};
	char *id;

	(void)state;
	hv_mem_json_init();
	hv_test_db_new(&E.db, "cred");
	hv_test_token_new(&E.tok, "credtest");
	hv_cfg_init(&E.cfg);
	hv_test_cfg(&E.cfg, &E.tok, &E.db);
	E.cfg.allow_private_targets = true;
	E.cfg.audit_chains = 4;
	if (hv_test_vault_up(&E.cfg, &E.v) != 0)
		return -1;
	if (hv_principal_cli(E.v, NULL, &E.cli, &err) != HV_OK) {
		fprintf(stderr, "cli principal: %s\n", err.msg);
		return -1;
	}
	E.pg = PQconnectdb(E.db.url);
	if (PQstatus(E.pg) != CONNECTION_OK)
		return -1;
	(void)snprintf(E.ws_a, sizeof(E.ws_a), "%s", E.cli.workspace_id);
	id = hv_test_pg_workspace(E.pg, "b");
	(void)snprintf(E.ws_b, sizeof(E.ws_b), "%s", id);
	free(id);
	id = hv_test_pg_workspace(E.pg, "c");
	(void)snprintf(E.ws_c, sizeof(E.ws_c), "%s", id);
	free(id);
	id = hv_test_pg_workspace(E.pg, "d");
	(void)snprintf(E.ws_d, sizeof(E.ws_d), "%s", id);
	free(id);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	hv_principal_release(&E.cli);
	PQfinish(E.pg);
	hv_vault_close(&E.v);
	hv_cfg_release(&E.cfg);
	hv_test_db_drop(&E.db);
	hv_test_token_destroy(&E.tok);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Lifecycle of every auth type                                        */

struct lc_case {
	const char *create;
	const char *secret1;
	const char *rotate;
	const char *secret2;
	const char *injection; /* expected default */
};

static const struct lc_case lc_cases[] = {
    {"{\"service\":\"stripe\",\"name\":\"Stripe live\",\"auth_type\":"
     "\"api_key\",\"notes\":\"billing\",\"secret\":{\"key\":"
     "\"sk_live_AAA\"}}",
        "{\"key\":\"sk_live_AAA\"}", "{\"secret\":{\"key\":\"sk_live_BBB\"}}",
        "{\"key\":\"sk_live_BBB\"}",
        "{\"header\":\"Authorization\",\"prefix\":\"Bearer \"}"},
    {"{\"service\":\"github\",\"name\":\"gh\",\"auth_type\":\"bearer\","
     "\"secret\":{\"token\":\"ghp_111\"},\"expires_at\":"
     "\"2099-01-02T03:04:05Z\"}",
        "{\"token\":\"ghp_111\"}", "{\"secret\":{\"token\":\"ghp_222\"}}",
        "{\"token\":\"ghp_222\"}",
        "{\"header\":\"Authorization\",\"prefix\":\"Bearer \"}"},
    {"{\"service\":\"twilio\",\"name\":\"tw\",\"auth_type\":\"basic\","
     "\"secret\":{\"username\":\"AC1\",\"password\":\"p@ss: w\"}}",
        "{\"username\":\"AC1\",\"password\":\"p@ss: w\"}",
        "{\"secret\":{\"username\":\"AC2\",\"password\":\"x\"}}",
        "{\"username\":\"AC2\",\"password\":\"x\"}", "{\"basic\":true}"},
    {"{\"service\":\"slack\",\"name\":\"slack oauth\",\"auth_type\":"
     "\"oauth2\",\"secret\":{\"access_token\":\"xoxb-1\","
     "\"refresh_token\":\"r1\",\"client_id\":\"c\",\"client_secret\":"
     "\"cs\",\"token_url\":\"https://slack.com/api/oauth.v2.access\","
     "\"expires_at\":\"2030-05-06T07:08:09.5+02:00\"}}",
        "{\"access_token\":\"xoxb-1\",\"refresh_token\":\"r1\","
        "\"client_id\":\"c\",\"client_secret\":\"cs\",\"token_url\":"
        "\"https://slack.com/api/oauth.v2.access\",\"expires_at\":"
        "\"2030-05-06T07:08:09.5+02:00\"}",
        "{\"secret\":{\"access_token\":\"xoxb-2\"}}",
        "{\"access_token\":\"xoxb-2\"}",
        "{\"header\":\"Authorization\",\"prefix\":\"Bearer \"}"},
    {"{\"service\":\"cloudflare\",\"name\":\"cf\",\"auth_type\":"
     "\"custom_headers\",\"secret\":{\"headers\":{\"X-Auth-Email\":"
     "\"a@b.c\",\"X-Auth-Key\":\"k1\"}}}",
        "{\"headers\":{\"X-Auth-Email\":\"a@b.c\",\"X-Auth-Key\":\"k1\"}}",
        "{\"secret\":{\"headers\":{\"X-Auth-Key\":\"k2\"}}}",
        "{\"headers\":{\"X-Auth-Key\":\"k2\"}}", "{\"headers\":true}"},
    {"{\"service\":\"http\",\"name\":\"internal\",\"auth_type\":"
     "\"api_key\",\"base_url\":\"http://127.0.0.1:9/api/\",\"injection\":"
     "{\"query_param\":\"api_key\"},\"secret\":{\"key\":\"k\"}}",
        "{\"key\":\"k\"}",
        "{\"secret\":{\"key\":\"k2\"},\"base_url\":"
        "\"https://api.example.com\"}",
        "{\"key\":\"k2\"}", "{\"query_param\":\"api_key\"}"},
};

static void
test_lifecycle(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(lc_cases) / sizeof(lc_cases[0]); i++) {
		const struct lc_case *k = &lc_cases[i];
		struct hv_err err = {0};
		json_t *c, *g = NULL, *u = NULL, *b, *rot = NULL, *meta = NULL,
		           *sec = NULL, *dup = NULL, *inj;
		char id[HV_UUID_STR], did[HV_UUID_STR];
		char *w1, *w2;
		static const char *const keys[] = {"id", "service", "name",
		    "auth_type", "scope", "notes", "injection", "status",
		    "version", "created_at", "updated_at", "last_used_at",
		    "expires_at", "created_by", "base_url", "workspace_id",
		    NULL};
		size_t j;

		c = create(&E.cli, k->create);
		for (j = 0; keys[j] != NULL; j++)
			if (json_object_get(c, keys[j]) == NULL)
				fail_msg("case %zu: no %s", i, keys[j]);
		assert_null(json_object_get(c, "secret"));
		(void)snprintf(id, sizeof(id), "%s", sfield(c, "id"));
		assert_true(hv_uuid_valid(id));
		assert_string_equal(sfield(c, "status"), "active");
		assert_string_equal(sfield(c, "scope"), "workspace");
		assert_string_equal(sfield(c, "workspace_id"), E.ws_a);
		assert_string_equal(sfield(c, "created_by"), E.cli.name);
		assert_int_equal(ifield(c, "version"), 1);
		assert_true(json_is_null(json_object_get(c, "last_used_at")));
		inj = parse(k->injection);
		assert_true(json_equal(json_object_get(c, "injection"), inj));
		json_decref(inj);
		assert_int_equal(audit_rows("credential.create", id), 1);
		assert_int_equal(hv_test_pg_long(E.pg,
		                     "SELECT count(*) FROM credential_versions "
		                     "WHERE credential_id = $1::uuid",
		                     id),
		    1);

		/* get equals create */
		hv_test_must(hv_vault_cred_get(E.v, &E.cli, &CTX, id, &g, &err),
		    &err, "get");
		assert_true(json_equal(g, c));
		json_decref(g);
		/* an upper-case id names the same credential */
		{
			char up[HV_UUID_STR];

			for (j = 0; j < HV_UUID_STR; j++)
				up[j] = (char)toupper((unsigned char)id[j]);
			assert_int_equal(get_rc(&E.cli, up), HV_OK);
		}

		assert_secret(&E.cli, id, k->secret1);
		assert_int_equal(audit_rows("credential.reveal", id), 1);

		/* edit */
		b = parse("{\"name\":\"renamed\",\"notes\":\"n2\"}");
		hv_test_must(
		    hv_vault_cred_update(E.v, &E.cli, &CTX, id, b, 1, &u, &err),
		    &err, "update");
		json_decref(b);
		assert_string_equal(sfield(u, "name"), "renamed");
		assert_string_equal(sfield(u, "notes"), "n2");
		assert_int_equal(ifield(u, "version"), 1);
		assert_int_equal(audit_rows("credential.update", id), 1);
		json_decref(u);

		/* rotate: version 2, both version rows kept */
		b = parse(k->rotate);
		hv_test_must(hv_vault_cred_rotate(
		                 E.v, &E.cli, &CTX, id, b, 1, &rot, &err),
		    &err, "rotate");
		json_decref(b);
		assert_int_equal(ifield(rot, "version"), 2);
		json_decref(rot);
		assert_int_equal(hv_test_pg_long(E.pg,
		                     "SELECT count(*) FROM credential_versions "
		                     "WHERE credential_id = $1::uuid",
		                     id),
		    2);
		assert_secret(&E.cli, id, k->secret2);
		assert_int_equal(audit_rows("credential.rotate", id), 1);

		/* revoke: use refused; unrevoke: usable again */
		hv_test_must(hv_vault_cred_revoke(
		                 E.v, &E.cli, &CTX, id, true, &rot, &err),
		    &err, "revoke");
		assert_string_equal(sfield(rot, "status"), "revoked");
		json_decref(rot);
		assert_int_equal(hv_vault_cred_open_for_use(
		                     E.v, &E.cli, &CTX, id, &meta, &sec, &err),
		    HV_E_REVOKED);
		assert_null(meta);
		assert_null(sec);
		hv_test_must(hv_vault_cred_revoke(
		                 E.v, &E.cli, &CTX, id, false, &rot, &err),
		    &err, "unrevoke");
		assert_string_equal(sfield(rot, "status"), "active");
		json_decref(rot);
		assert_int_equal(audit_rows("credential.revoke", id), 1);
		assert_int_equal(audit_rows("credential.unrevoke", id), 1);
		hv_test_must(hv_vault_cred_open_for_use(
		                 E.v, &E.cli, &CTX, id, &meta, &sec, &err),
		    &err, "open_for_use");
		inj = parse(k->secret2);
		assert_true(json_equal(sec, inj));
		assert_string_equal(sfield(meta, "id"), id);
		json_decref(inj);
		json_decref(meta);
		json_decref(sec);
		meta = sec = NULL;

		/* duplicate: new id, new DEK, same secret */
		b = parse("{\"name\":\"the copy\"}");
		hv_test_must(hv_vault_cred_duplicate(
		                 E.v, &E.cli, &CTX, id, b, &dup, &err),
		    &err, "duplicate");
		json_decref(b);
		(void)snprintf(did, sizeof(did), "%s", sfield(dup, "id"));
		assert_string_not_equal(did, id);
		assert_string_equal(sfield(dup, "name"), "the copy");
		assert_int_equal(ifield(dup, "version"), 1);
		assert_string_equal(
		    sfield(dup, "service"), sfield(c, "service"));
		json_decref(dup);
		w1 = hv_test_pg_text(E.pg,
		    "SELECT encode(wrapped_dek, 'hex') FROM "
		    "credential_versions WHERE credential_id = $1::uuid AND "
		    "version = 2",
		    id);
		w2 = hv_test_pg_text(E.pg,
		    "SELECT encode(wrapped_dek, 'hex') FROM "
		    "credential_versions WHERE credential_id = $1::uuid",
		    did);
		assert_non_null(w1);
		assert_non_null(w2);
		assert_string_not_equal(w1, w2);
		free(w1);
		free(w2);
		assert_secret(&E.cli, did, k->secret2);
		assert_int_equal(audit_rows("credential.duplicate", id), 1);
		assert_int_equal(audit_rows("credential.duplicate", did), 1);

		/* delete: crypto-shred, later 404, audit row kept */
		hv_test_must(hv_vault_cred_delete(E.v, &E.cli, &CTX, id, &err),
		    &err, "delete");
		assert_int_equal(get_rc(&E.cli, id), HV_E_NOT_FOUND);
		assert_int_equal(hv_test_pg_long(E.pg,
		                     "SELECT count(*) FROM credential_versions "
		                     "WHERE credential_id = $1::uuid",
		                     id),
		    0);
		assert_int_equal(hv_test_pg_long(E.pg,
		                     "SELECT count(*) FROM credentials "
		                     "WHERE id = $1::uuid",
		                     id),
		    0);
		assert_int_equal(audit_rows("credential.delete", id), 1);
		assert_int_equal(
		    hv_vault_cred_delete(E.v, &E.cli, &CTX, id, &err),
		    HV_E_NOT_FOUND);
		assert_int_equal(
		    hv_vault_cred_reveal(E.v, &E.cli, &CTX, id, &sec, &err),
		    HV_E_NOT_FOUND);
		/* the copy lives on */
		assert_secret(&E.cli, did, k->secret2);
		hv_test_must(hv_vault_cred_delete(E.v, &E.cli, &CTX, did, &err),
		    &err, "delete copy");
		json_decref(c);
	}
}

/* ------------------------------------------------------------------ */
/* Validation: HV_E_INVALID and no state change                       */

static const char *const bad_creates[] = {
    "[]",
    "\"x\"",
    "{\"service\":\"stripe\",\"name\":\"n\",\"secret\":{\"key\":"
    "\"SUPERSECRET\"},\"bogus\":1}",
    "{\"service\":\"nosuch\",\"name\":\"n\",\"secret\":{\"key\":"
    "\"SUPERSECRET\"}}",
    "{\"service\":1,\"name\":\"n\",\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"name\":\"n\",\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"http\",\"name\":\"n\",\"auth_type\":\"api_key\","
    "\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"auth_type\":\"magic\","
    "\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"anthropic\",\"name\":\"n\",\"auth_type\":\"bearer\","
    "\"secret\":{\"token\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\"}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"secret\":\"SUPERSECRET\"}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"secret\":{}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"secret\":{\"key\":\"\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"secret\":{\"key\":5}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"secret\":{\"key\":\"a\","
    "\"SUPERSECRET\":\"x\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"secret\":{\"key\":"
    "\"SUPER\\nSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"secret\":{\"key\":"
    "\"SUPER\\u0000SECRET\"}}",
    "{\"service\":\"twilio\",\"name\":\"n\",\"secret\":{\"username\":"
    "\"u\"}}",
    "{\"service\":\"twilio\",\"name\":\"n\",\"secret\":{\"username\":"
    "\"u:v\",\"password\":\"SUPERSECRET\"}}",
    "{\"service\":\"slack\",\"name\":\"n\",\"auth_type\":\"oauth2\","
    "\"secret\":{\"refresh_token\":\"SUPERSECRET\"}}",
    "{\"service\":\"slack\",\"name\":\"n\",\"auth_type\":\"oauth2\","
    "\"secret\":{\"access_token\":\"SUPERSECRET\",\"token_url\":"
    "\"http://evil.example/\"}}",
    "{\"service\":\"slack\",\"name\":\"n\",\"auth_type\":\"oauth2\","
    "\"secret\":{\"access_token\":\"SUPERSECRET\",\"expires_at\":"
    "\"tomorrow\"}}",
    "{\"service\":\"cloudflare\",\"name\":\"n\",\"auth_type\":"
    "\"custom_headers\",\"secret\":{\"headers\":[]}}",
    "{\"service\":\"cloudflare\",\"name\":\"n\",\"auth_type\":"
    "\"custom_headers\",\"secret\":{\"headers\":{}}}",
    "{\"service\":\"cloudflare\",\"name\":\"n\",\"auth_type\":"
    "\"custom_headers\",\"secret\":{\"headers\":{\"Bad Name\":\"v\"}}}",
    "{\"service\":\"cloudflare\",\"name\":\"n\",\"auth_type\":"
    "\"custom_headers\",\"secret\":{\"headers\":{\"X-A\":1}}}",
    "{\"service\":\"cloudflare\",\"name\":\"n\",\"auth_type\":"
    "\"custom_headers\",\"secret\":{\"headers\":{\"X-A\":"
    "\"SUPER\\r\\nHost: evil\"}}}",
    "{\"service\":\"cloudflare\",\"name\":\"n\",\"auth_type\":"
    "\"custom_headers\",\"secret\":{\"headers\":{\"Host\":\"evil\"}}}",
    "{\"service\":\"stripe\",\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"\",\"secret\":{\"key\":"
    "\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"a\\tb\",\"secret\":{\"key\":"
    "\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"scope\":\"galaxy\","
    "\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"scope\":\"personal\","
    "\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"notes\":7,\"secret\":"
    "{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"injection\":\"header\","
    "\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"injection\":{\"header\":"
    "\"X-K\",\"query_param\":\"k\"},\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"injection\":{\"header\":"
    "\"Bad Header\"},\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"injection\":{\"header\":"
    "\"X-K\",\"prefix\":\"a\\r\\nb\"},\"secret\":{\"key\":"
    "\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"injection\":{\"cookie\":"
    "\"k\"},\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"expires_at\":\"2024-02-30"
    "T00:00:00Z\",\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"expires_at\":\"2024-01-01"
    "\",\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"stripe\",\"name\":\"n\",\"expires_at\":1700000000,"
    "\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"http\",\"name\":\"n\",\"base_url\":"
    "\"http://api.example.com\",\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"http\",\"name\":\"n\",\"base_url\":"
    "\"https://user:pw@api.example.com\",\"secret\":{\"key\":"
    "\"SUPERSECRET\"}}",
    "{\"service\":\"http\",\"name\":\"n\",\"base_url\":"
    "\"https://api.example.com/#frag\",\"secret\":{\"key\":"
    "\"SUPERSECRET\"}}",
    "{\"service\":\"http\",\"name\":\"n\",\"base_url\":"
    "\"ftp://api.example.com\",\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"http\",\"name\":\"n\",\"base_url\":\"/relative\","
    "\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"http\",\"name\":\"n\",\"base_url\":"
    "\"https://api.example.com:99999\",\"secret\":{\"key\":"
    "\"SUPERSECRET\"}}",
    "{\"service\":\"http\",\"name\":\"n\",\"base_url\":"
    "\"https://a b.example.com\",\"secret\":{\"key\":\"SUPERSECRET\"}}",
    "{\"service\":\"http\",\"name\":\"n\",\"base_url\":\"https://\","
    "\"secret\":{\"key\":\"SUPERSECRET\"}}",
};

static void
test_create_validation(void **state)
{
	struct counts before, after;
	char big[20000];
	size_t i;

	(void)state;
	counts(&before);
	for (i = 0; i < sizeof(bad_creates) / sizeof(bad_creates[0]); i++) {
		struct hv_err err = {0};
		json_t *b = parse(bad_creates[i]), *out = NULL;
		enum hv_rc rc;

		rc = hv_vault_cred_create(E.v, &E.cli, &CTX, b, &out, &err);
		if (rc != HV_E_INVALID)
			fail_msg("case %zu: rc %d (%s): %s", i, (int)rc,
			    err.msg, bad_creates[i]);
		assert_null(out);
		assert_int_equal(err.rc, HV_E_INVALID);
		assert_true(err.msg[0] != '\0');
		if (strstr(err.msg, "SUPER") != NULL)
			fail_msg(
			    "case %zu: message leaks a value: %s", i, err.msg);
		json_decref(b);
	}
	/* oversized: a name of 201 characters, a secret value of 20000 */
	{
		struct hv_err err = {0};
		json_t *b = parse("{\"service\":\"stripe\",\"secret\":{\"key\":"
		                  "\"k\"}}"),
		       *out = NULL;

		memset(big, 'x', 201);
		big[201] = '\0';
		json_object_set_new(b, "name", json_string(big));
		assert_int_equal(
		    hv_vault_cred_create(E.v, &E.cli, &CTX, b, &out, &err),
		    HV_E_INVALID);
		json_object_set_new(b, "name", json_string("ok"));
		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		json_object_set_new(
		    json_object_get(b, "secret"), "key", json_string(big));
		assert_int_equal(
		    hv_vault_cred_create(E.v, &E.cli, &CTX, b, &out, &err),
		    HV_E_INVALID);
		memset(big, 'x', 10001);
		big[10001] = '\0';
		json_object_set_new(
		    json_object_get(b, "secret"), "key", json_string("k"));
		json_object_set_new(b, "notes", json_string(big));
		assert_int_equal(
		    hv_vault_cred_create(E.v, &E.cli, &CTX, b, &out, &err),
		    HV_E_INVALID);
		/* 200 multi-byte characters are fine (limit in characters) */
		{
			char u[1000] = "";
			size_t k;

			for (k = 0; k < 200; k++)
				memcpy(u + k * 2, "\xc3\xa9", 3);
			json_object_set_new(b, "notes", json_string("n"));
			json_object_set_new(b, "name", json_string(u));
			json_t *c = NULL;

			hv_test_must(hv_vault_cred_create(
			                 E.v, &E.cli, &CTX, b, &c, &err),
			    &err, "200 chars");
			counts(&before); /* that one was valid */
			hv_test_must(hv_vault_cred_delete(E.v, &E.cli, &CTX,
			                 sfield(c, "id"), &err),
			    &err, "delete");
			json_decref(c);
			counts(&before);
		}
		json_decref(b);
	}
	/* http to loopback only while private targets are allowed */
	{
		struct hv_err err = {0};
		json_t *b = parse(
		           "{\"service\":\"http\",\"name\":\"n\","
		           "\"base_url\":\"http://127.0.0.1:8080\",\"secret\":"
		           "{\"key\":\"k\"}}"),
		       *out = NULL;

		E.cfg.allow_private_targets = false;
		assert_int_equal(
		    hv_vault_cred_create(E.v, &E.cli, &CTX, b, &out, &err),
		    HV_E_INVALID);
		assert_non_null(strstr(err.msg, "https"));
		E.cfg.allow_private_targets = true;
		json_decref(b);
	}
	{
		struct hv_err err = {0};
		struct hv_list_query q = {0};
		json_t *l = NULL;

		q.q = "\xff\xfe";
		assert_int_equal(
		    hv_vault_cred_list(E.v, &E.cli, &CTX, &q, &l, &err),
		    HV_E_INVALID);
		q.q = "\xed\xa0\x80"; /* a surrogate */
		assert_int_equal(
		    hv_vault_cred_list(E.v, &E.cli, &CTX, &q, &l, &err),
		    HV_E_INVALID);
		assert_null(l);
	}
	counts(&after);
	assert_counts_equal(&before, &after, "invalid creates");
}

static void
test_update_rotate_validation(void **state)
{
	static const char *const bad_patch[] = {
	    "{\"secret\":{\"key\":\"SUPERSECRET\"}}",
	    "{\"base_url\":\"https://x.example\"}",
	    "{\"service\":\"github\"}",
	    "{\"auth_type\":\"bearer\"}",
	    "{\"name\":\"\"}",
	    "{\"name\":null}",
	    "{\"name\":3}",
	    "{\"scope\":\"everyone\"}",
	    "{\"scope\":\"personal\"}", /* CLI has no user label */
	    "{\"injection\":{\"header\":\"bad header\"}}",
	    "{\"injection\":{\"headers\":true}}",
	    "{\"expected_version\":\"1\"}",
	    "{\"expected_version\":0}",
	    "[]",
	};
	static const char *const bad_rotate[] = {
	    "{}",
	    "{\"secret\":{\"token\":\"SUPERSECRET\"}}",
	    "{\"secret\":{\"key\":\"\"}}",
	    "{\"secret\":{\"key\":\"SUPERSECRET\"},\"name\":\"x\"}",
	    "{\"secret\":{\"key\":\"SUPERSECRET\"},\"base_url\":"
	    "\"http://example.com\"}",
	    "{\"secret\":{\"key\":\"SUPERSECRET\"},\"expires_at\":\"soon\"}",
	    "{\"secret\":{\"key\":\"SUPERSECRET\"},\"expected_version\":-1}",
	};
	struct counts before, after;
	json_t *c, *g = NULL;
	char *upd;
	const char *id;
	size_t i;

	(void)state;
	c = create(&E.cli,
	    "{\"service\":\"stripe\",\"name\":\"val\","
	    "\"secret\":{\"key\":\"sk_1\"}}");
	id = sfield(c, "id");
	upd = hv_test_pg_text(E.pg,
	    "SELECT updated_at::text FROM credentials WHERE id = "
	    "$1::uuid",
	    id);
	counts(&before);
	for (i = 0; i < sizeof(bad_patch) / sizeof(bad_patch[0]); i++) {
		struct hv_err err = {0};
		json_t *b = parse(bad_patch[i]), *out = NULL;
		enum hv_rc rc = hv_vault_cred_update(
		    E.v, &E.cli, &CTX, id, b, -1, &out, &err);

		if (rc != HV_E_INVALID)
			fail_msg("patch %zu: rc %d (%s)", i, (int)rc, err.msg);
		assert_null(strstr(err.msg, "SUPER"));
		json_decref(b);
	}
	for (i = 0; i < sizeof(bad_rotate) / sizeof(bad_rotate[0]); i++) {
		struct hv_err err = {0};
		json_t *b = parse(bad_rotate[i]), *out = NULL;
		enum hv_rc rc = hv_vault_cred_rotate(
		    E.v, &E.cli, &CTX, id, b, -1, &out, &err);

		if (rc != HV_E_INVALID)
			fail_msg("rotate %zu: rc %d (%s)", i, (int)rc, err.msg);
		assert_null(strstr(err.msg, "SUPER"));
		json_decref(b);
	}
	{
		/* the secret message explains rotate */
		struct hv_err err = {0};
		json_t *b = parse(bad_patch[0]), *out = NULL;

		assert_int_equal(hv_vault_cred_update(
		                     E.v, &E.cli, &CTX, id, b, -1, &out, &err),
		    HV_E_INVALID);
		assert_non_null(strstr(err.msg, "rotate"));
		json_decref(b);
		b = parse(bad_patch[1]);
		assert_int_equal(hv_vault_cred_update(
		                     E.v, &E.cli, &CTX, id, b, -1, &out, &err),
		    HV_E_INVALID);
		assert_non_null(strstr(err.msg, "rotate"));
		json_decref(b);
	}
	counts(&after);
	assert_counts_equal(&before, &after, "invalid patch/rotate");
	{
		char *u2 = hv_test_pg_text(E.pg,
		    "SELECT updated_at::text FROM credentials WHERE "
		    "id = $1::uuid",
		    id);

		assert_string_equal(upd, u2);
		free(u2);
	}
	{
		struct hv_err err = {0};

		hv_test_must(hv_vault_cred_get(E.v, &E.cli, &CTX, id, &g, &err),
		    &err, "get");
		assert_int_equal(ifield(g, "version"), 1);
		assert_string_equal(sfield(g, "name"), "val");
		json_decref(g);
	}
	assert_secret(&E.cli, id, "{\"key\":\"sk_1\"}");
	free(upd);
	json_decref(c);
}

/* ------------------------------------------------------------------ */
/* Ids, tenancy, allow-lists, scopes                                   */

static void
test_ids(void **state)
{
	static const char *const ids[] = {"", "not-a-uuid", "' OR 1=1 --",
	    "00000000-0000-0000-0000-00000000000g",
	    "{00000000-0000-0000-0000-000000000000}",
	    "00000000-0000-0000-0000-000000000000",
	    "7d444840-9dc0-11d1-b245-5ffdce74fad2"};
	struct hv_err err = {0};
	json_t *out = NULL, *b = parse("{\"name\":\"x\"}");
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		assert_int_equal(get_rc(&E.cli, ids[i]), HV_E_NOT_FOUND);
		assert_int_equal(hv_vault_cred_update(E.v, &E.cli, &CTX, ids[i],
		                     b, -1, &out, &err),
		    HV_E_NOT_FOUND);
		assert_int_equal(
		    hv_vault_cred_delete(E.v, &E.cli, &CTX, ids[i], &err),
		    HV_E_NOT_FOUND);
		assert_int_equal(hv_vault_cred_revoke(E.v, &E.cli, &CTX, ids[i],
		                     true, &out, &err),
		    HV_E_NOT_FOUND);
		assert_int_equal(
		    hv_vault_cred_reveal(E.v, &E.cli, &CTX, ids[i], &out, &err),
		    HV_E_NOT_FOUND);
		assert_int_equal(hv_vault_cred_duplicate(E.v, &E.cli, &CTX,
		                     ids[i], NULL, &out, &err),
		    HV_E_NOT_FOUND);
	}
	assert_int_equal(get_rc(&E.cli, NULL), HV_E_NOT_FOUND);
	json_decref(b);
}

static void
test_tenancy(void **state)
{
	struct hv_principal alice, bob, other, alice_b;
	struct hv_err err = {0};
	json_t *ws, *pers, *org, *out = NULL, *b, *meta = NULL, *sec = NULL;
	const char *ws_id, *pers_id, *org_id;
	struct counts before, after;

	(void)state;
	make_principal(&alice, E.ws_a, "alice", ALL_CRED, "alice-key");
	make_principal(&bob, E.ws_a, "bob", ALL_CRED, "bob-key");
	make_principal(&other, E.ws_b, NULL, ALL_CRED, "other-key");
	make_principal(&alice_b, E.ws_b, "alice", ALL_CRED, "alice-in-b");

	ws = create(&alice,
	    "{\"service\":\"github\",\"name\":\"team token\","
	    "\"secret\":{\"token\":\"t1\"}}");
	pers = create(&alice,
	    "{\"service\":\"github\",\"name\":\"mine\","
	    "\"scope\":\"personal\",\"secret\":{\"token\":\"t2\"}}");
	org = create(&alice,
	    "{\"service\":\"github\",\"name\":\"shared\","
	    "\"scope\":\"organization\",\"secret\":{\"token\":\"t3\"}}");
	ws_id = sfield(ws, "id");
	pers_id = sfield(pers, "id");
	org_id = sfield(org, "id");
	assert_string_equal(sfield(ws, "created_by"), "alice-key");
	assert_string_equal(sfield(pers, "scope"), "personal");

	/* workspace: every key of the workspace, no other */
	assert_int_equal(get_rc(&bob, ws_id), HV_OK);
	assert_int_equal(get_rc(&other, ws_id), HV_E_NOT_FOUND);
	/* personal: same user, same workspace only */
	assert_int_equal(get_rc(&alice, pers_id), HV_OK);
	assert_int_equal(get_rc(&bob, pers_id), HV_E_NOT_FOUND);
	assert_int_equal(get_rc(&alice_b, pers_id), HV_E_NOT_FOUND);
	assert_int_equal(get_rc(&other, pers_id), HV_E_NOT_FOUND);
	assert_int_equal(
	    hv_vault_cred_reveal(E.v, &bob, &CTX, pers_id, &out, &err),
	    HV_E_NOT_FOUND);
	/* organization: every key of the deployment */
	assert_int_equal(get_rc(&other, org_id), HV_OK);
	hv_test_must(hv_vault_cred_open_for_use(
	                 E.v, &other, &CTX, org_id, &meta, &sec, &err),
	    &err, "org use from b");
	assert_string_equal(sfield(sec, "token"), "t3");
	json_decref(meta);
	json_decref(sec);
	meta = sec = NULL;

	/* invisible means 404 for every operation, and nothing changes */
	counts(&before);
	b = parse("{\"name\":\"hijack\"}");
	assert_int_equal(
	    hv_vault_cred_update(E.v, &other, &CTX, ws_id, b, -1, &out, &err),
	    HV_E_NOT_FOUND);
	assert_int_equal(
	    hv_vault_cred_update(E.v, &bob, &CTX, pers_id, b, -1, &out, &err),
	    HV_E_NOT_FOUND);
	assert_int_equal(hv_vault_cred_delete(E.v, &other, &CTX, ws_id, &err),
	    HV_E_NOT_FOUND);
	assert_int_equal(
	    hv_vault_cred_revoke(E.v, &bob, &CTX, pers_id, true, &out, &err),
	    HV_E_NOT_FOUND);
	assert_int_equal(hv_vault_cred_open_for_use(
	                     E.v, &other, &CTX, ws_id, &meta, &sec, &err),
	    HV_E_NOT_FOUND);
	/* a shared credential is changed only by its own workspace */
	assert_int_equal(
	    hv_vault_cred_update(E.v, &other, &CTX, org_id, b, -1, &out, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(hv_vault_cred_delete(E.v, &other, &CTX, org_id, &err),
	    HV_E_FORBIDDEN);
	counts(&after);
	assert_counts_equal(&before, &after, "foreign changes");
	json_decref(b);

	/* list: each principal sees exactly its share */
	{
		struct hv_list_query q = {0};
		json_t *l = NULL;
		size_t i;
		bool saw_ws = false, saw_pers = false, saw_org = false;

		q.service = "github";
		hv_test_must(
		    hv_vault_cred_list(E.v, &other, &CTX, &q, &l, &err), &err,
		    "list other");
		for (i = 0; i < json_array_size(json_object_get(l, "items"));
		     i++) {
			const char *id = sfield(
			    json_array_get(json_object_get(l, "items"), i),
			    "id");

			saw_ws |= strcmp(id, ws_id) == 0;
			saw_pers |= strcmp(id, pers_id) == 0;
			saw_org |= strcmp(id, org_id) == 0;
		}
		assert_false(saw_ws);
		assert_false(saw_pers);
		assert_true(saw_org);
		json_decref(l);
		l = NULL;
		saw_ws = saw_pers = saw_org = false;
		hv_test_must(hv_vault_cred_list(E.v, &bob, &CTX, &q, &l, &err),
		    &err, "list bob");
		for (i = 0; i < json_array_size(json_object_get(l, "items"));
		     i++) {
			const char *id = sfield(
			    json_array_get(json_object_get(l, "items"), i),
			    "id");

			saw_ws |= strcmp(id, ws_id) == 0;
			saw_pers |= strcmp(id, pers_id) == 0;
			saw_org |= strcmp(id, org_id) == 0;
		}
		assert_true(saw_ws);
		assert_false(saw_pers);
		assert_true(saw_org);
		json_decref(l);
		l = NULL;
		q.scope = "personal";
		hv_test_must(
		    hv_vault_cred_list(E.v, &alice, &CTX, &q, &l, &err), &err,
		    "list alice personal");
		assert_int_equal(
		    json_array_size(json_object_get(l, "items")), 1);
		json_decref(l);
	}

	/* edit scope: bob takes the team token personal; alice loses it */
	b = parse("{\"scope\":\"personal\"}");
	hv_test_must(
	    hv_vault_cred_update(E.v, &bob, &CTX, ws_id, b, -1, &out, &err),
	    &err, "to personal");
	json_decref(out);
	out = NULL;
	json_decref(b);
	assert_int_equal(get_rc(&alice, ws_id), HV_E_NOT_FOUND);
	assert_int_equal(get_rc(&bob, ws_id), HV_OK);
	b = parse("{\"scope\":\"workspace\"}");
	hv_test_must(
	    hv_vault_cred_update(E.v, &bob, &CTX, ws_id, b, -1, &out, &err),
	    &err, "back to workspace");
	json_decref(out);
	out = NULL;
	json_decref(b);
	assert_int_equal(get_rc(&alice, ws_id), HV_OK);

	/* later tests list other workspaces: leave nothing shared behind */
	hv_test_must(hv_vault_cred_delete(E.v, &alice, &CTX, org_id, &err),
	    &err, "delete org");
	assert_int_equal(get_rc(&other, org_id), HV_E_NOT_FOUND);
	json_decref(ws);
	json_decref(pers);
	json_decref(org);
}

static void
test_allow_list_and_scopes(void **state)
{
	static char allowed[1][HV_UUID_STR];
	struct hv_principal lim, ro, nouse;
	struct hv_err err = {0};
	json_t *c1, *c2, *out = NULL, *meta = NULL, *sec = NULL, *l = NULL;
	struct hv_list_query q = {0};
	struct counts before, after;
	const char *id1, *id2;
	long denied;

	(void)state;
	c1 = create(&E.cli,
	    "{\"service\":\"openai\",\"name\":\"allowed one\","
	    "\"secret\":{\"key\":\"o1\"}}");
	c2 = create(&E.cli,
	    "{\"service\":\"openai\",\"name\":\"other one\","
	    "\"secret\":{\"key\":\"o2\"}}");
	id1 = sfield(c1, "id");
	id2 = sfield(c2, "id");
	(void)snprintf(allowed[0], HV_UUID_STR, "%s", id1);
	make_principal(&lim, E.ws_a, NULL, ALL_CRED, "limited");
	lim.all_credentials = false;
	lim.cred_ids = allowed;
	lim.n_cred_ids = 1;

	assert_int_equal(get_rc(&lim, id1), HV_OK);
	assert_int_equal(get_rc(&lim, id2), HV_E_FORBIDDEN);
	assert_int_equal(hv_vault_cred_reveal(E.v, &lim, &CTX, id2, &out, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(
	    hv_vault_cred_open_for_use(E.v, &lim, &CTX, id2, &meta, &sec, &err),
	    HV_E_FORBIDDEN);
	counts(&before);
	assert_int_equal(
	    hv_vault_cred_delete(E.v, &lim, &CTX, id2, &err), HV_E_FORBIDDEN);
	counts(&after);
	assert_counts_equal(&before, &after, "allow-list delete");
	q.service = "openai";
	hv_test_must(
	    hv_vault_cred_list(E.v, &lim, &CTX, &q, &l, &err), &err, "list");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 1);
	assert_string_equal(
	    sfield(json_array_get(json_object_get(l, "items"), 0), "id"), id1);
	json_decref(l);
	l = NULL;

	/* missing scopes: 403 and an auth.denied row */
	make_principal(&ro, E.ws_a, NULL, HV_SCOPE_CRED_READ, "read-only");
	denied = hv_test_pg_long(E.pg,
	    "SELECT count(*) FROM audit_log WHERE action = "
	    "'auth.denied'",
	    NULL);
	{
		json_t *b = parse("{\"service\":\"openai\",\"name\":\"x\","
		                  "\"secret\":{\"key\":\"k\"}}");

		assert_int_equal(
		    hv_vault_cred_create(E.v, &ro, &CTX, b, &out, &err),
		    HV_E_FORBIDDEN);
		json_decref(b);
	}
	assert_int_equal(hv_vault_cred_reveal(E.v, &ro, &CTX, id1, &out, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(
	    hv_vault_cred_delete(E.v, &ro, &CTX, id1, &err), HV_E_FORBIDDEN);
	assert_int_equal(
	    hv_vault_cred_open_for_use(E.v, &ro, &CTX, id1, &meta, &sec, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(get_rc(&ro, id1), HV_OK);
	assert_true(hv_test_pg_long(E.pg,
	                "SELECT count(*) FROM audit_log WHERE action = "
	                "'auth.denied'",
	                NULL) >= denied + 4);
	make_principal(&nouse, E.ws_a, NULL, HV_SCOPE_CRED_WRITE, "write-only");
	assert_int_equal(get_rc(&nouse, id1), HV_E_FORBIDDEN);
	assert_int_equal(hv_vault_cred_list(E.v, &nouse, &CTX, &q, &l, &err),
	    HV_E_FORBIDDEN);
	assert_null(out);
	assert_null(meta);
	assert_null(sec);
	json_decref(c1);
	json_decref(c2);
}

/* ------------------------------------------------------------------ */
/* Optimistic concurrency                                              */

static void
test_conflict(void **state)
{
	struct hv_err err = {0};
	struct counts before, after;
	json_t *c, *b, *out = NULL;
	const char *id;

	(void)state;
	c = create(&E.cli,
	    "{\"service\":\"vercel\",\"name\":\"v\","
	    "\"secret\":{\"token\":\"a\"}}");
	id = sfield(c, "id");
	counts(&before);
	b = parse("{\"name\":\"stale\"}");
	assert_int_equal(
	    hv_vault_cred_update(E.v, &E.cli, &CTX, id, b, 2, &out, &err),
	    HV_E_CONFLICT);
	json_decref(b);
	b = parse("{\"name\":\"stale\",\"expected_version\":3}");
	assert_int_equal(
	    hv_vault_cred_update(E.v, &E.cli, &CTX, id, b, -1, &out, &err),
	    HV_E_CONFLICT);
	/* header and body disagree: a bad request */
	assert_int_equal(
	    hv_vault_cred_update(E.v, &E.cli, &CTX, id, b, 1, &out, &err),
	    HV_E_INVALID);
	json_decref(b);
	b = parse("{\"secret\":{\"token\":\"b\"}}");
	assert_int_equal(
	    hv_vault_cred_rotate(E.v, &E.cli, &CTX, id, b, 7, &out, &err),
	    HV_E_CONFLICT);
	json_decref(b);
	counts(&after);
	assert_counts_equal(&before, &after, "stale versions");
	assert_null(out);
	assert_secret(&E.cli, id, "{\"token\":\"a\"}");

	/* the right version goes through, then is stale itself */
	b = parse("{\"secret\":{\"token\":\"b\"},\"expected_version\":1}");
	hv_test_must(
	    hv_vault_cred_rotate(E.v, &E.cli, &CTX, id, b, -1, &out, &err),
	    &err, "rotate v1");
	json_decref(out);
	out = NULL;
	assert_int_equal(
	    hv_vault_cred_rotate(E.v, &E.cli, &CTX, id, b, -1, &out, &err),
	    HV_E_CONFLICT);
	json_decref(b);
	b = parse("{\"name\":\"fresh\"}");
	hv_test_must(
	    hv_vault_cred_update(E.v, &E.cli, &CTX, id, b, 2, &out, &err), &err,
	    "update v2");
	assert_string_equal(sfield(out, "name"), "fresh");
	json_decref(out);
	json_decref(b);
	/* version history kept */
	assert_int_equal(hv_test_pg_long(E.pg,
	                     "SELECT count(*) FROM credential_versions "
	                     "WHERE credential_id = $1::uuid",
	                     id),
	    2);
	json_decref(c);
}

/* ------------------------------------------------------------------ */
/* Use, status, audit                                                  */

static void
test_use_and_status(void **state)
{
	struct hv_err err = {0};
	json_t *c, *out = NULL, *b;
	char *lu;
	const char *id;

	(void)state;
	c = create(&E.cli,
	    "{\"service\":\"notion\",\"name\":\"n\","
	    "\"secret\":{\"token\":\"a\"}}");
	id = sfield(c, "id");
	hv_test_must(hv_vault_cred_record_use(E.v, &E.cli, &CTX, id,
	                 "credential.test", false, "failing", &err),
	    &err, "record failing");
	hv_test_must(
	    hv_vault_cred_get(E.v, &E.cli, &CTX, id, &out, &err), &err, "get");
	assert_string_equal(sfield(out, "status"), "failing");
	assert_true(json_is_string(json_object_get(out, "last_used_at")));
	json_decref(out);
	out = NULL;
	assert_int_equal(
	    hv_test_pg_long(E.pg,
	        "SELECT count(*) FROM audit_log WHERE action = "
	        "'credential.test' AND outcome = 'failure' AND credential_id = "
	        "$1::uuid",
	        id),
	    1);
	/* a rotation makes it active again */
	b = parse("{\"secret\":{\"token\":\"b\"}}");
	hv_test_must(
	    hv_vault_cred_rotate(E.v, &E.cli, &CTX, id, b, -1, &out, &err),
	    &err, "rotate");
	assert_string_equal(sfield(out, "status"), "active");
	json_decref(out);
	out = NULL;
	json_decref(b);
	/* a test never un-revokes */
	hv_test_must(
	    hv_vault_cred_revoke(E.v, &E.cli, &CTX, id, true, &out, &err), &err,
	    "revoke");
	json_decref(out);
	out = NULL;
	hv_test_must(hv_vault_cred_record_use(E.v, &E.cli, &CTX, id,
	                 "credential.use", true, "active", &err),
	    &err, "record on revoked");
	lu = hv_test_pg_text(
	    E.pg, "SELECT status FROM credentials WHERE id = $1::uuid", id);
	assert_string_equal(lu, "revoked");
	free(lu);
	assert_int_equal(hv_vault_cred_record_use(E.v, &E.cli, &CTX, "nonsense",
	                     "credential.use", true, NULL, &err),
	    HV_E_NOT_FOUND);

	/* an expired credential reads as expired */
	json_decref(c);
	c = create(&E.cli,
	    "{\"service\":\"notion\",\"name\":\"old\","
	    "\"expires_at\":\"2001-01-01T00:00:00+01:00\","
	    "\"secret\":{\"token\":\"a\"}}");
	assert_string_equal(sfield(c, "status"), "expired");
	assert_string_equal(
	    sfield(c, "expires_at"), "2000-12-31T23:00:00.000000Z");
	json_decref(c);
}

/*
 * Fail closed: when the audit row cannot be written, the change (or the
 * reveal) fails and nothing is left behind.
 */
static void
test_audit_fail_closed(void **state)
{
	struct hv_err err = {0};
	struct counts before, after;
	json_t *c, *b, *out = NULL;
	const char *id;

	(void)state;
	c = create(&E.cli,
	    "{\"service\":\"heroku\",\"name\":\"h\","
	    "\"secret\":{\"token\":\"a\"}}");
	id = sfield(c, "id");
	hv_test_pg_exec(E.pg,
	    "ALTER TABLE audit_log ADD CONSTRAINT test_no_cred CHECK "
	    "(action NOT LIKE 'credential.%') NOT VALID");
	counts(&before);
	b = parse("{\"service\":\"heroku\",\"name\":\"h2\","
	          "\"secret\":{\"token\":\"a\"}}");
	assert_int_not_equal(
	    hv_vault_cred_create(E.v, &E.cli, &CTX, b, &out, &err), HV_OK);
	json_decref(b);
	b = parse("{\"secret\":{\"token\":\"new\"}}");
	assert_int_not_equal(
	    hv_vault_cred_rotate(E.v, &E.cli, &CTX, id, b, -1, &out, &err),
	    HV_OK);
	json_decref(b);
	assert_int_not_equal(
	    hv_vault_cred_delete(E.v, &E.cli, &CTX, id, &err), HV_OK);
	assert_int_not_equal(
	    hv_vault_cred_revoke(E.v, &E.cli, &CTX, id, true, &out, &err),
	    HV_OK);
	assert_int_not_equal(
	    hv_vault_cred_reveal(E.v, &E.cli, &CTX, id, &out, &err), HV_OK);
	assert_null(out);
	counts(&after);
	hv_test_pg_exec(
	    E.pg, "ALTER TABLE audit_log DROP CONSTRAINT test_no_cred");
	assert_counts_equal(&before, &after, "audit failure");
	hv_test_must(
	    hv_vault_cred_get(E.v, &E.cli, &CTX, id, &out, &err), &err, "get");
	assert_string_equal(sfield(out, "status"), "active");
	assert_int_equal(ifield(out, "version"), 1);
	json_decref(out);
	assert_secret(&E.cli, id, "{\"token\":\"a\"}");
	json_decref(c);
}

/* ------------------------------------------------------------------ */
/* List: pagination, search, filters                                   */

static void
collect(const struct hv_principal *p, struct hv_list_query *q, char **seen,
    size_t *n_seen, size_t max, unsigned int *pages)
{
	struct hv_err err = {0};
	char cur[256];

	*pages = 0;
	*n_seen = 0;
	for (;;) {
		json_t *l = NULL, *items;
		const json_t *next;
		size_t i;

		hv_test_must(hv_vault_cred_list(E.v, p, &CTX, q, &l, &err),
		    &err, "list page");
		(*pages)++;
		items = json_object_get(l, "items");
		assert_true(json_is_array(items));
		for (i = 0; i < json_array_size(items); i++) {
			assert_true(*n_seen < max);
			seen[(*n_seen)++] =
			    strdup(sfield(json_array_get(items, i), "id"));
			assert_null(json_object_get(
			    json_array_get(items, i), "secret"));
		}
		next = json_object_get(l, "next_cursor");
		assert_non_null(next);
		if (json_is_null(next)) {
			json_decref(l);
			break;
		}
		(void)snprintf(cur, sizeof(cur), "%s", json_string_value(next));
		json_decref(l);
		q->cursor = cur;
		assert_true(*pages < 100);
	}
	q->cursor = NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * A page's rows share one parsed injection while their texts are the same
 * (src/vault_cred.c, inj_memo): rows in the order A A B A C A must each
 * still carry their own injection, as a get of the same id shows.
 */
static void
test_list_injections(void **state)
{
	static const char *const inj[] = {
	    "{\"header\":\"Authorization\",\"prefix\":\"Bearer \"}",
	    "{\"header\":\"X-Api-Key\"}", "{\"query_param\":\"key\"}"};
	static const int order[] = {0, 0, 1, 0, 2, 0};
	struct hv_principal p;
	struct hv_err err = {0};
	struct hv_list_query q = {0};
	json_t *l = NULL, *items;
	size_t i;

	(void)state;
	make_principal(&p, E.ws_c, NULL, ALL_CRED, "injmemo");
	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		char body[256];
		json_t *c;

		(void)snprintf(body, sizeof(body),
		    "{\"service\":\"stripe\",\"name\":\"injmemo %zu\","
		    "\"injection\":%s,\"secret\":{\"key\":\"k\"}}",
		    i, inj[order[i]]);
		c = create(&p, body);
		json_decref(c);
	}
	q.limit = 200;
	q.q = "injmemo";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "list");
	items = json_object_get(l, "items");
	assert_int_equal(
	    json_array_size(items), sizeof(order) / sizeof(order[0]));
	for (i = 0; i < json_array_size(items); i++) {
		const json_t *it = json_array_get(items, i);
		json_t *want = parse(inj[order[i]]), *g = NULL;

		assert_true(json_equal(json_object_get(it, "injection"), want));
		hv_test_must(hv_vault_cred_get(
		                 E.v, &p, &CTX, sfield(it, "id"), &g, &err),
		    &err, "get");
		assert_true(json_equal(json_object_get(it, "injection"),
		    json_object_get(g, "injection")));
		json_decref(g);
		json_decref(want);
	}
	json_decref(l);
}

static void
test_list_pagination(void **state)
{
	static const char *const svc[] = {"stripe", "github", "openai"};
	static const char *const field[] = {"key", "token", "key"};
	struct hv_principal p;
	struct hv_err err = {0};
	struct hv_list_query q = {0};
	char *created[120], *seen[200];
	size_t n_seen, i;
	unsigned int pages;
	json_t *l = NULL;

	(void)state;
	make_principal(&p, E.ws_c, NULL, ALL_CRED, "pager");
	for (i = 0; i < 120; i++) {
		char name[32], val[32];
		json_t *b, *c = NULL;

		(void)snprintf(name, sizeof(name), "Item %03zu", i);
		(void)snprintf(val, sizeof(val), "v%zu", i);
		b = json_pack("{s:s, s:s, s:s, s:{s:s}}", "service", svc[i % 3],
		    "name", name, "notes",
		    i % 10 == 0 ? "has MAGIC word" : "plain", "secret",
		    field[i % 3], val);
		assert_non_null(b);
		hv_test_must(hv_vault_cred_create(E.v, &p, &CTX, b, &c, &err),
		    &err, name);
		created[i] = strdup(sfield(c, "id"));
		json_decref(c);
		json_decref(b);
	}
	/* 3 pages of 50, 50, 20: no duplicates, no gaps, in order */
	q.limit = 50;
	collect(&p, &q, seen, &n_seen, 200, &pages);
	assert_int_equal(pages, 3);
	assert_int_equal(n_seen, 120);
	for (i = 0; i < 120; i++) /* creation order = list order */
		assert_string_equal(seen[i], created[i]);
	qsort(seen, n_seen, sizeof(seen[0]), cmp_str);
	for (i = 1; i < n_seen; i++)
		assert_string_not_equal(seen[i - 1], seen[i]);
	for (i = 0; i < n_seen; i++)
		free(seen[i]);

	/* default limit 50; max 200 in one page */
	memset(&q, 0, sizeof(q));
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "default");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 50);
	json_decref(l);
	l = NULL;
	q.limit = 200;
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "200");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 120);
	assert_true(json_is_null(json_object_get(l, "next_cursor")));
	json_decref(l);
	l = NULL;

	/* search: case-insensitive over name, service, notes */
	memset(&q, 0, sizeof(q));
	q.limit = 200;
	q.q = "magic";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "q notes");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 12);
	json_decref(l);
	l = NULL;
	q.q = "item 00";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "q name");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 10);
	json_decref(l);
	l = NULL;
	q.q = "GITHUB";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "q svc");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 40);
	json_decref(l);
	l = NULL;

	/* filters, combined with search and with paging */
	memset(&q, 0, sizeof(q));
	q.limit = 200;
	q.auth_type = "bearer";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "auth");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 40);
	json_decref(l);
	l = NULL;
	q.auth_type = NULL;
	q.service = "stripe";
	q.q = "magic";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "svc+q");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 4);
	json_decref(l);
	l = NULL;
	for (i = 0; i < 5; i++) {
		json_t *o = NULL;

		hv_test_must(hv_vault_cred_revoke(
		                 E.v, &p, &CTX, created[i], true, &o, &err),
		    &err, "revoke");
		json_decref(o);
	}
	memset(&q, 0, sizeof(q));
	q.status = "revoked";
	q.limit = 2;
	collect(&p, &q, seen, &n_seen, 200, &pages);
	assert_int_equal(n_seen, 5);
	assert_int_equal(pages, 3);
	for (i = 0; i < n_seen; i++) {
		assert_string_equal(seen[i], created[i]);
		free(seen[i]);
	}
	memset(&q, 0, sizeof(q));
	q.status = "active";
	q.scope = "workspace";
	q.limit = 200;
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "active");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 115);
	json_decref(l);
	l = NULL;
	q.scope = "organization";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "org");
	/* only organization credentials of other tests may show up */
	for (i = 0; i < json_array_size(json_object_get(l, "items")); i++)
		assert_string_equal(
		    sfield(json_array_get(json_object_get(l, "items"), i),
		        "scope"),
		    "organization");
	json_decref(l);
	l = NULL;

	/* bad parameters: 400 */
	{
		static const char *const bad_cursors[] = {"!!!", "abc",
		    "MTIzfG5vdC1hLXV1aWQ", "eA", "MTIz",
		    "fDAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMA",
		    "a=", ""};
		struct hv_list_query b;

		memset(&b, 0, sizeof(b));
		b.limit = 201;
		assert_int_equal(
		    hv_vault_cred_list(E.v, &p, &CTX, &b, &l, &err),
		    HV_E_INVALID);
		b.limit = 0;
		b.scope = "universe";
		assert_int_equal(
		    hv_vault_cred_list(E.v, &p, &CTX, &b, &l, &err),
		    HV_E_INVALID);
		b.scope = NULL;
		b.auth_type = "password";
		assert_int_equal(
		    hv_vault_cred_list(E.v, &p, &CTX, &b, &l, &err),
		    HV_E_INVALID);
		b.auth_type = NULL;
		b.status = "dead";
		assert_int_equal(
		    hv_vault_cred_list(E.v, &p, &CTX, &b, &l, &err),
		    HV_E_INVALID);
		b.status = NULL;
		b.service = "nosuch";
		assert_int_equal(
		    hv_vault_cred_list(E.v, &p, &CTX, &b, &l, &err),
		    HV_E_INVALID);
		b.service = NULL;
		for (i = 0;
		     i + 1 < sizeof(bad_cursors) / sizeof(bad_cursors[0]);
		     i++) {
			b.cursor = bad_cursors[i];
			if (hv_vault_cred_list(E.v, &p, &CTX, &b, &l, &err) !=
			    HV_E_INVALID)
				fail_msg(
				    "cursor '%s' accepted", bad_cursors[i]);
		}
		assert_null(l);
	}
	for (i = 0; i < 120; i++)
		free(created[i]);
}

/* SQL metacharacters in names, notes and q are plain text. */
static void
test_metacharacters(void **state)
{
	static const char *const names[] = {"100% done", "under_score", "it's",
	    "back\\slash", "'; DROP TABLE credentials; --", "a%b_c",
	    "\"quoted\"", "$1 $2"};
	struct hv_principal p;
	struct hv_err err = {0};
	struct hv_list_query q = {0};
	json_t *l = NULL;
	size_t i;

	(void)state;
	make_principal(&p, E.ws_d, NULL, ALL_CRED, "meta");
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		json_t *b = json_pack("{s:s, s:s, s:s, s:{s:s}}", "service",
		           "stripe", "name", names[i], "notes", names[i],
		           "secret", "key", names[i]),
		       *c = NULL;

		char *sec_text;

		hv_test_must(hv_vault_cred_create(E.v, &p, &CTX, b, &c, &err),
		    &err, names[i]);
		assert_string_equal(sfield(c, "name"), names[i]);
		sec_text = json_dumps(json_object_get(b, "secret"), 0);
		assert_secret(&p, sfield(c, "id"), sec_text);
		json_text_free(sec_text);
		json_decref(c);
		json_decref(b);
	}
	assert_int_equal(hv_test_pg_long(E.pg,
	                     "SELECT count(*) FROM credentials WHERE "
	                     "workspace_id = $1::uuid",
	                     E.ws_d),
	    8);
	q.limit = 200;
	q.q = "%";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "q %");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 2);
	json_decref(l);
	l = NULL;
	q.q = "_";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "q _");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 2);
	json_decref(l);
	l = NULL;
	q.q = "'";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "q '");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 2);
	json_decref(l);
	l = NULL;
	q.q = "\\";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "q \\");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 1);
	json_decref(l);
	l = NULL;
	q.q = "' OR '1'='1";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "q or");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 0);
	json_decref(l);
	l = NULL;
	q.q = "zzz-no-match";
	hv_test_must(
	    hv_vault_cred_list(E.v, &p, &CTX, &q, &l, &err), &err, "q none");
	assert_int_equal(json_array_size(json_object_get(l, "items")), 0);
	assert_true(json_is_null(json_object_get(l, "next_cursor")));
	json_decref(l);
	assert_true(hv_test_pg_long(
	                E.pg, "SELECT count(*) FROM credentials", NULL) > 8);
}

/* Mint a real API key and authenticate with it. */
static void
real_key(const char *body, struct hv_principal *out)
{
	struct hv_err err = {0};
	json_t *b = parse(body), *k = NULL;
	char hdr[256];

	hv_test_must(hv_vault_apikey_create(E.v, &E.cli, &CTX, b, &k, &err),
	    &err, "apikey create");
	(void)snprintf(hdr, sizeof(hdr), "Bearer %s", sfield(k, "key"));
	hv_test_must(hv_vault_authenticate(E.v, hdr, &CTX, out, &err), &err,
	    "authenticate");
	hv_mem_zero(hdr, sizeof(hdr));
	json_decref(k);
	json_decref(b);
}

/* The same rules with principals from minted keys, not hand-built ones. */
static void
test_real_keys(void **state)
{
	struct hv_principal carol, dave, lim;
	struct hv_err err = {0};
	json_t *pers, *ws, *b, *out = NULL;
	char body[512];

	(void)state;
	real_key("{\"name\":\"carol\",\"user\":\"carol\",\"scopes\":"
	         "[\"credentials:read\",\"credentials:write\","
	         "\"credentials:reveal\"]}",
	    &carol);
	real_key("{\"name\":\"dave\",\"scopes\":[\"credentials:read\","
	         "\"credentials:write\"]}",
	    &dave);
	pers = create(&carol,
	    "{\"service\":\"linear\",\"name\":\"c\","
	    "\"scope\":\"personal\",\"secret\":{\"key\":\"lin\"}}");
	ws = create(&dave,
	    "{\"service\":\"linear\",\"name\":\"d\","
	    "\"secret\":{\"key\":\"lin2\"}}");
	assert_string_equal(sfield(ws, "created_by"), "dave");
	assert_int_equal(get_rc(&carol, sfield(pers, "id")), HV_OK);
	assert_int_equal(get_rc(&dave, sfield(pers, "id")), HV_E_NOT_FOUND);
	assert_secret(&carol, sfield(pers, "id"), "{\"key\":\"lin\"}");
	/* dave has no user label: personal is refused with a reason */
	b = parse("{\"service\":\"linear\",\"name\":\"x\",\"scope\":"
	          "\"personal\",\"secret\":{\"key\":\"k\"}}");
	assert_int_equal(hv_vault_cred_create(E.v, &dave, &CTX, b, &out, &err),
	    HV_E_INVALID);
	assert_non_null(strstr(err.msg, "user"));
	json_decref(b);
	/* dave lacks credentials:reveal */
	assert_int_equal(hv_vault_cred_reveal(
	                     E.v, &dave, &CTX, sfield(ws, "id"), &out, &err),
	    HV_E_FORBIDDEN);
	/* an allow-listed key */
	(void)snprintf(body, sizeof(body),
	    "{\"name\":\"lim\",\"scopes\":"
	    "[\"credentials:read\"],\"credentials\":[\"%s\"]}",
	    sfield(ws, "id"));
	real_key(body, &lim);
	assert_int_equal(get_rc(&lim, sfield(ws, "id")), HV_OK);
	assert_int_equal(get_rc(&lim, sfield(pers, "id")), HV_E_NOT_FOUND);
	{
		json_t *o = create(&carol,
		    "{\"service\":\"linear\","
		    "\"name\":\"shared\",\"scope\":\"organization\","
		    "\"secret\":{\"key\":\"k\"}}");

		assert_int_equal(get_rc(&lim, sfield(o, "id")), HV_E_FORBIDDEN);
		hv_test_must(hv_vault_cred_delete(
		                 E.v, &carol, &CTX, sfield(o, "id"), &err),
		    &err, "delete shared");
		json_decref(o);
	}
	assert_null(out);
	hv_principal_release(&carol);
	hv_principal_release(&dave);
	hv_principal_release(&lim);
	json_decref(pers);
	json_decref(ws);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lifecycle),
	    cmocka_unit_test(test_create_validation),
	    cmocka_unit_test(test_update_rotate_validation),
	    cmocka_unit_test(test_ids),
	    cmocka_unit_test(test_tenancy),
	    cmocka_unit_test(test_allow_list_and_scopes),
	    cmocka_unit_test(test_conflict),
	    cmocka_unit_test(test_use_and_status),
	    cmocka_unit_test(test_audit_fail_closed),
	    cmocka_unit_test(test_list_pagination),
	    cmocka_unit_test(test_list_injections),
	    cmocka_unit_test(test_metacharacters),
	    cmocka_unit_test(test_real_keys),
	};

	if (getenv("HV_TEST_PG_URL") == NULL)
		hv_test_missing("HV_TEST_PG_URL");
	return cmocka_run_group_tests(tests, setup, teardown);
}
