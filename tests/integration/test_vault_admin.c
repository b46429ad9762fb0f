/*
 * test_vault_admin: init, workspaces, KEK rotation, rewrap of 1,000
 * credential versions, KEK disable, status and the audit readers, against
 * real PostgreSQL and SoftHSM2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "testenv.h"
#include "uuid.h"
#include "vault_int.h"

#define NVERS 1000

static struct hv_test_token tok;
static struct hv_test_db db;
static struct hv_cfg cfg;
static struct hv_vault *v;
static char ws_default[HV_UUID_STR];

static const struct hv_stmt t_stmts[] = {
    {"tv_cred_insert",
        "INSERT INTO credentials (id, workspace_id, "
        "service, name, auth_type, scope, injection, created_by) VALUES "
        "($1::uuid, $2::uuid, 'http', $3, 'bearer', 'workspace', '{}', "
        "'test')",
        3},
    {"tv_ver_insert",
        "INSERT INTO credential_versions (credential_id, "
        "version, kek_version, wrapped_dek, nonce, ciphertext) VALUES "
        "($1::uuid, $2::integer, $3::integer, $4, $5, $6)",
        6},
    {"tv_versions",
        "SELECT c.workspace_id::text, cv.credential_id::text, "
        "cv.version, cv.kek_version, cv.wrapped_dek, cv.nonce, "
        "cv.ciphertext FROM credential_versions cv JOIN credentials c ON "
        "c.id = cv.credential_id WHERE c.name LIKE 'rw-%' "
        "ORDER BY cv.credential_id",
        0},
    {"tv_count_kek",
        "SELECT count(*) FROM credential_versions WHERE "
        "kek_version = $1::integer",
        1},
    {"tv_audit_count", "SELECT count(*) FROM audit_log WHERE action = $1", 1},
    {"tv_ws_count", "SELECT count(*) FROM workspaces", 0},
};

static long long
q_count(const char *stmt, int n, const char *p0)
{
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	PGresult *r = NULL;
	const char *p[1] = {p0};
	long long x;

	assert_int_equal(hv_store_acquire(hv_vault_store(v), &c, &err), HV_OK);
	if (hv_store_exec(
	        c, stmt, n, n ? p : NULL, NULL, NULL, false, &r, &err) != HV_OK)
		fail_msg("%s: %s", stmt, err.msg);
	x = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	hv_store_release(hv_vault_store(v), &c);
	return x;
}

static int
setup(void **state)
{
	struct hv_err err = {0};
	json_t *rep = NULL;

	(void)state;
	if (getenv("HV_TEST_PG_URL") == NULL)
		hv_test_missing("HV_TEST_PG_URL (PostgreSQL) not set");
	hv_mem_json_init();
	hv_store_register(t_stmts, sizeof(t_stmts) / sizeof(t_stmts[0]));
	hv_test_token_new(&tok, "hvadmin");
	hv_test_db_new(&db, "admin");
	hv_cfg_init(&cfg);
	hv_test_cfg(&cfg, &tok, &db);
	cfg.audit_chains = 2;
	if (hv_vault_init(&cfg, &rep, &err) != HV_OK) {
		fprintf(stderr, "init: %s\n", err.msg);
		return -1;
	}
	snprintf(ws_default, sizeof(ws_default), "%s",
	    json_string_value(
	        json_object_get(json_object_get(rep, "workspace"), "id")));
	json_decref(rep);
	if (hv_vault_open(&cfg, false, &v, &err) != HV_OK) {
		fprintf(stderr, "open: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	hv_vault_close(&v);
	hv_cfg_release(&cfg);
	hv_test_db_drop(&db);
	hv_test_token_destroy(&tok);
	return 0;
}

static void
cli(struct hv_principal *p)
{
	struct hv_err err = {0};

	assert_int_equal(hv_principal_cli(v, NULL, p, &err), HV_OK);
}

/* init is idempotent: a second run creates nothing new. */
static void
test_init_twice(void **state)
{
	struct hv_err err = {0};
	json_t *rep = NULL, *ws;

	(void)state;
	assert_int_equal(hv_vault_init(&cfg, &rep, &err), HV_OK);
	ws = json_object_get(rep, "workspace");
	assert_string_equal(
	    json_string_value(json_object_get(ws, "id")), ws_default);
	assert_true(json_is_false(json_object_get(ws, "created")));
	assert_int_equal(json_array_size(json_object_get(
	                     json_object_get(rep, "migrations"), "applied")),
	    0);
	assert_int_equal(json_integer_value(json_object_get(
	                     json_object_get(rep, "keystore"), "active_kek")),
	    1);
	json_decref(rep);
	assert_int_equal(q_count("tv_ws_count", 0, NULL), 1);
	/* migrate alone, again */
	assert_int_equal(hv_vault_migrate(&cfg, &rep, &err), HV_OK);
	json_decref(rep);
}

/* A database that is not there: init fails cleanly, quickly. */
static void
test_init_no_database(void **state)
{
	struct hv_cfg c2;
	struct hv_err err = {0};
	json_t *rep = NULL;

	(void)state;
	hv_cfg_init(&c2);
	hv_test_cfg(&c2, &tok, NULL);
	assert_int_equal(hv_cfg_set(&c2, "database_url",
	                     "host=/nonexistent-hv dbname=x", &err),
	    HV_OK);
	assert_int_equal(hv_vault_init(&c2, &rep, &err), HV_E_DATABASE);
	assert_null(rep);
	hv_cfg_release(&c2);
}

static void
test_principal_cli(void **state)
{
	struct hv_principal p;
	struct hv_err err = {0};

	(void)state;
	cli(&p);
	assert_string_equal(p.workspace_id, ws_default);
	assert_true(p.scopes & HV_SCOPE_ADMIN);
	assert_true(p.all_credentials);
	hv_principal_release(&p);
	assert_int_equal(hv_principal_cli(v, "default", &p, &err), HV_OK);
	assert_string_equal(p.workspace_id, ws_default);
	hv_principal_release(&p);
	assert_int_equal(hv_principal_cli(v, ws_default, &p, &err), HV_OK);
	hv_principal_release(&p);
	assert_int_equal(
	    hv_principal_cli(v, "no-such-ws", &p, &err), HV_E_NOT_FOUND);
	assert_int_equal(
	    hv_principal_cli(v, "'; DROP TABLE workspaces; --", &p, &err),
	    HV_E_NOT_FOUND);
}

static void
test_workspaces(void **state)
{
	struct hv_principal adm, user;
	struct hv_err err = {0};
	json_t *body, *out = NULL;
	long long denied;

	(void)state;
	cli(&adm);
	body = json_pack("{s:s}", "name", "team-a");
	assert_int_equal(
	    hv_vault_workspace_create(v, &adm, NULL, body, &out, &err), HV_OK);
	assert_true(
	    hv_uuid_valid(json_string_value(json_object_get(out, "id"))));
	json_decref(out);
	out = NULL;
	/* the same name again */
	assert_int_equal(
	    hv_vault_workspace_create(v, &adm, NULL, body, &out, &err),
	    HV_E_CONFLICT);
	json_decref(body);
	/* bad bodies */
	body = json_pack("{s:s,s:i}", "name", "x", "color", 3);
	assert_int_equal(
	    hv_vault_workspace_create(v, &adm, NULL, body, &out, &err),
	    HV_E_INVALID);
	assert_non_null(strstr(err.msg, "color"));
	json_decref(body);
	body = json_pack("{s:s}", "name", "");
	assert_int_equal(
	    hv_vault_workspace_create(v, &adm, NULL, body, &out, &err),
	    HV_E_INVALID);
	json_decref(body);
	body = json_pack("{s:i}", "name", 5);
	assert_int_equal(
	    hv_vault_workspace_create(v, &adm, NULL, body, &out, &err),
	    HV_E_INVALID);
	json_decref(body);
	assert_null(out);
	/* list */
	assert_int_equal(
	    hv_vault_workspace_list(v, &adm, NULL, &out, &err), HV_OK);
	assert_int_equal(json_array_size(json_object_get(out, "items")), 2);
	json_decref(out);
	out = NULL;
	/* not admin: 403 and an auth.denied row */
	memset(&user, 0, sizeof(user));
	snprintf(
	    user.workspace_id, sizeof(user.workspace_id), "%s", ws_default);
	snprintf(user.key_id, sizeof(user.key_id),
	    "44444444-4444-4444-8444-444444444444");
	snprintf(user.name, sizeof(user.name), "reader");
	user.scopes = HV_SCOPE_CRED_READ | HV_SCOPE_KEYS_WRITE;
	user.all_credentials = true;
	denied = q_count("tv_audit_count", 1, "auth.denied");
	body = json_pack("{s:s}", "name", "team-b");
	assert_int_equal(
	    hv_vault_workspace_create(v, &user, NULL, body, &out, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(hv_vault_workspace_list(v, &user, NULL, &out, &err),
	    HV_E_FORBIDDEN);
	assert_null(out);
	json_decref(body);
	assert_int_equal(
	    q_count("tv_audit_count", 1, "auth.denied"), denied + 2);
	hv_principal_release(&adm);
}

/* Seal n versions straight through the envelope layer. */
static void
make_versions(int n)
{
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	int i;

	assert_int_equal(hv_store_acquire(hv_vault_store(v), &c, &err), HV_OK);
	assert_int_equal(hv_store_begin(c, &err), HV_OK);
	for (i = 0; i < n; i++) {
		struct hv_envelope e;
		struct hv_secret *pt;
		char id[HV_UUID_STR], name[32], msg[64], kv[16];
		const char *p[6];
		int len[6] = {0}, fmt[6] = {0};

		hv_envelope_init(&e);
		assert_int_equal(hv_uuid_new(id), HV_OK);
		snprintf(name, sizeof(name), "rw-%d", i);
		snprintf(msg, sizeof(msg), "{\"token\":\"secret-%d\"}", i);
		pt = hv_secret_from(msg, strlen(msg));
		assert_non_null(pt);
		if (hv_envelope_seal(hv_vault_hsm(v), ws_default, id, 1, pt, &e,
		        &err) != HV_OK)
			fail_msg("seal: %s", err.msg);
		hv_secret_free(&pt);
		p[0] = id;
		p[1] = ws_default;
		p[2] = name;
		assert_int_equal(hv_store_exec(c, "tv_cred_insert", 3, p, NULL,
		                     NULL, false, NULL, &err),
		    HV_OK);
		snprintf(kv, sizeof(kv), "%u", e.kek_version);
		p[1] = "1";
		p[2] = kv;
		p[3] = (const char *)e.wrapped;
		len[3] = (int)e.wrapped_len;
		p[4] = (const char *)e.nonce;
		len[4] = HV_ENVELOPE_NONCE_LEN;
		p[5] = (const char *)e.ct;
		len[5] = (int)e.ct_len;
		fmt[3] = fmt[4] = fmt[5] = 1;
		if (hv_store_exec(c, "tv_ver_insert", 6, p, len, fmt, false,
		        NULL, &err) != HV_OK)
			fail_msg("insert: %s", err.msg);
		hv_envelope_release(&e);
	}
	assert_int_equal(hv_store_commit(c, &err), HV_OK);
	hv_store_release(hv_vault_store(v), &c);
}

/* Every sealed version still opens and holds what was sealed. */
static void
check_versions(int n, uint32_t want_kek)
{
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	PGresult *r = NULL;
	int i;

	assert_int_equal(hv_store_acquire(hv_vault_store(v), &c, &err), HV_OK);
	assert_int_equal(hv_store_exec(c, "tv_versions", 0, NULL, NULL, NULL,
	                     true, &r, &err),
	    HV_OK);
	hv_store_release(hv_vault_store(v), &c);
	assert_int_equal(PQntuples(r), n);
	for (i = 0; i < n; i++) {
		struct hv_envelope e;
		struct hv_secret *pt = NULL;
		char ws[HV_UUID_STR], id[HV_UUID_STR];
		const uint8_t *kv = (const uint8_t *)PQgetvalue(r, i, 3);

		memcpy(ws, PQgetvalue(r, i, 0), 36);
		ws[36] = '\0';
		memcpy(id, PQgetvalue(r, i, 1), 36);
		id[36] = '\0';
		hv_envelope_init(&e);
		e.kek_version = (uint32_t)kv[0] << 24 | (uint32_t)kv[1] << 16 |
		    (uint32_t)kv[2] << 8 | kv[3];
		assert_int_equal(e.kek_version, want_kek);
		e.wrapped_len = (size_t)PQgetlength(r, i, 4);
		memcpy(e.wrapped, PQgetvalue(r, i, 4), e.wrapped_len);
		memcpy(e.nonce, PQgetvalue(r, i, 5), HV_ENVELOPE_NONCE_LEN);
		e.ct_len = (size_t)PQgetlength(r, i, 6);
		e.ct = hv_malloc(e.ct_len);
		memcpy(e.ct, PQgetvalue(r, i, 6), e.ct_len);
		if (hv_envelope_open(
		        hv_vault_hsm(v), ws, id, 1, &e, &pt, &err) != HV_OK)
			fail_msg("open %s: %s", id, err.msg);
		assert_non_null(memmem(pt->buf, pt->len, "secret-", 7));
		hv_secret_free(&pt);
		hv_envelope_release(&e);
	}
	PQclear(r);
}

struct prog {
	unsigned long calls, last_done, last_remaining;
};

static void
on_progress(unsigned long done, unsigned long remaining, void *arg)
{
	struct prog *pg = arg;

	pg->calls++;
	pg->last_done = done;
	pg->last_remaining = remaining;
}

static long long
kek_deks(json_t *status, unsigned int ver, const char **state)
{
	json_t *keks = json_object_get(status, "keks"), *k;
	size_t i;

	json_array_foreach(keks, i, k)
	{
		if (json_integer_value(json_object_get(k, "version")) == ver) {
			if (state != NULL)
				*state = json_string_value(
				    json_object_get(k, "state"));
			return json_integer_value(json_object_get(k, "deks"));
		}
	}
	return -1;
}

static void
test_rotate_rewrap_disable(void **state)
{
	struct hv_principal adm;
	struct hv_err err = {0};
	struct prog pg = {0};
	json_t *out = NULL, *st = NULL;
	const char *s = NULL;

	(void)state;
	cli(&adm);
	make_versions(NVERS);
	assert_int_equal(q_count("tv_count_kek", 1, "1"), NVERS);

	/* the active KEK cannot be disabled; nor one that protects DEKs */
	assert_int_equal(
	    hv_vault_kek_disable(v, &adm, NULL, 1, &out, &err), HV_E_CONFLICT);
	assert_int_equal(hv_vault_kek_rotate(v, &adm, NULL, &out, &err), HV_OK);
	assert_int_equal(
	    json_integer_value(json_object_get(out, "kek_version")), 2);
	json_decref(out);
	out = NULL;
	assert_int_equal(q_count("tv_audit_count", 1, "kek.rotate"), 1);
	assert_int_equal(
	    hv_vault_kek_disable(v, &adm, NULL, 1, &out, &err), HV_E_CONFLICT);
	assert_non_null(strstr(err.msg, "rewrap"));
	assert_null(out);

	assert_int_equal(hv_vault_status(v, &st, &err), HV_OK);
	assert_int_equal(kek_deks(st, 1, &s), NVERS);
	assert_string_equal(s, "retired");
	assert_int_equal(json_integer_value(json_object_get(
	                     json_object_get(st, "rewrap"), "remaining")),
	    NVERS);
	json_decref(st);

	/* a partial run (2 batches), as if interrupted; then resume */
	assert_int_equal(hv_vault_rewrap(v, &adm, NULL, 150, 2, on_progress,
	                     &pg, &out, &err),
	    HV_OK);
	assert_int_equal(
	    json_integer_value(json_object_get(out, "rewrapped")), 300);
	assert_int_equal(
	    json_integer_value(json_object_get(out, "remaining")), NVERS - 300);
	assert_int_equal(pg.calls, 2);
	assert_int_equal(pg.last_remaining, NVERS - 300);
	json_decref(out);
	out = NULL;
	assert_int_equal(hv_vault_rewrap(v, &adm, NULL, 128, 0, on_progress,
	                     &pg, &out, &err),
	    HV_OK);
	assert_int_equal(
	    json_integer_value(json_object_get(out, "rewrapped")), NVERS - 300);
	assert_int_equal(
	    json_integer_value(json_object_get(out, "remaining")), 0);
	assert_int_equal(json_integer_value(json_object_get(out, "failed")), 0);
	assert_int_equal(
	    json_integer_value(json_object_get(out, "kek_version")), 2);
	assert_int_equal(pg.last_remaining, 0);
	json_decref(out);
	out = NULL;
	assert_int_equal(q_count("tv_count_kek", 1, "1"), 0);
	assert_int_equal(q_count("tv_count_kek", 1, "2"), NVERS);
	assert_true(q_count("tv_audit_count", 1, "rewrap") >= 8);
	check_versions(NVERS, 2);

	/* nothing left: a rewrap is a no-op */
	assert_int_equal(
	    hv_vault_rewrap(v, &adm, NULL, 0, 0, NULL, NULL, &out, &err),
	    HV_OK);
	assert_int_equal(
	    json_integer_value(json_object_get(out, "rewrapped")), 0);
	json_decref(out);
	out = NULL;

	/* now KEK 1 can go */
	assert_int_equal(
	    hv_vault_kek_disable(v, &adm, NULL, 1, &out, &err), HV_OK);
	json_decref(out);
	out = NULL;
	assert_int_equal(hv_vault_kek_disable(v, &adm, NULL, 2, &out, &err),
	    HV_E_CONFLICT); /* active (and referenced) */
	assert_int_equal(hv_vault_status(v, &st, &err), HV_OK);
	assert_int_equal(kek_deks(st, 1, &s), 0);
	assert_string_equal(s, "disabled");
	assert_int_equal(kek_deks(st, 2, &s), NVERS);
	assert_string_equal(s, "active");
	assert_int_equal(
	    json_integer_value(json_object_get(
	        json_object_get(st, "counts"), "credential_versions")),
	    NVERS);
	assert_true(
	    json_integer_value(json_object_get(
	        json_object_get(st, "counts"), "credentials")) >= NVERS);
	assert_int_equal(json_integer_value(json_object_get(
	                     json_object_get(st, "counts"), "workspaces")),
	    2);
	assert_true(json_integer_value(json_object_get(
	                json_object_get(st, "counts"), "audit_rows")) > 0);
	assert_true(json_is_true(
	    json_object_get(json_object_get(st, "keystore"), "reachable")));
	json_decref(st);
	check_versions(NVERS, 2);
	hv_principal_release(&adm);
}

/* A credential made through the service layer survives a rewrap. */
static void
test_rewrap_cred_api(void **state)
{
	struct hv_principal adm;
	struct hv_err err = {0};
	json_t *body, *out = NULL, *sec = NULL;
	char id[HV_UUID_STR];

	(void)state;
	cli(&adm);
	body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s}}", "service", "http",
	    "name", "api-made", "auth_type", "bearer", "scope", "workspace",
	    "base_url", "https://api.example.com", "secret", "token",
	    "tok-123456");
	if (hv_vault_cred_create(v, &adm, NULL, body, &out, &err) != HV_OK)
		fail_msg("cred create: %s", err.msg);
	json_decref(body);
	snprintf(id, sizeof(id), "%s",
	    json_string_value(json_object_get(out, "id")));
	json_decref(out);
	out = NULL;
	assert_int_equal(hv_vault_kek_rotate(v, &adm, NULL, &out, &err), HV_OK);
	json_decref(out);
	out = NULL;
	assert_int_equal(
	    hv_vault_rewrap(v, &adm, NULL, 0, 0, NULL, NULL, &out, &err),
	    HV_OK);
	assert_int_equal(
	    json_integer_value(json_object_get(out, "remaining")), 0);
	json_decref(out);
	out = NULL;
	if (hv_vault_cred_reveal(v, &adm, NULL, id, &sec, &err) != HV_OK)
		fail_msg("reveal: %s", err.msg);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(sec, "secret"), "token")),
	    "tok-123456");
	json_decref(sec);
	hv_principal_release(&adm);
}

static void
test_audit_readers(void **state)
{
	struct hv_principal adm, rd, nob;
	struct hv_err err = {0};
	struct hv_list_query q;
	json_t *out = NULL, *it, *all = NULL;
	const char *cursor;
	size_t total = 0;
	char cur[32];
	int pages = 0;

	(void)state;
	cli(&adm);
	/* page through everything, newest first */
	memset(&q, 0, sizeof(q));
	q.limit = 5;
	all = json_array();
	for (;;) {
		assert_int_equal(
		    hv_vault_audit_list(v, &adm, NULL, &q, &out, &err), HV_OK);
		json_array_extend(all, json_object_get(out, "items"));
		total += json_array_size(json_object_get(out, "items"));
		pages++;
		cursor = json_string_value(json_object_get(out, "next_cursor"));
		if (cursor == NULL) {
			json_decref(out);
			out = NULL;
			break;
		}
		snprintf(cur, sizeof(cur), "%s", cursor);
		q.cursor = cur;
		json_decref(out);
		out = NULL;
	}
	assert_true(total > 10);
	assert_true(pages > 2);
	it = json_array_get(all, 0);
	assert_true(json_integer_value(json_object_get(it, "id")) >
	    json_integer_value(json_object_get(json_array_get(all, 1), "id")));
	assert_non_null(json_object_get(it, "at"));
	assert_true(json_is_object(json_object_get(it, "actor")));
	assert_int_equal(
	    strlen(json_string_value(json_object_get(it, "mac"))), 64);
	assert_int_equal(
	    strlen(json_string_value(json_object_get(it, "prev_mac"))), 64);
	assert_non_null(json_object_get(it, "chain"));
	assert_non_null(json_object_get(it, "seq"));
	json_decref(all);

	/* filters */
	memset(&q, 0, sizeof(q));
	q.action = "kek.rotate";
	assert_int_equal(
	    hv_vault_audit_list(v, &adm, NULL, &q, &out, &err), HV_OK);
	assert_true(json_array_size(json_object_get(out, "items")) >= 1);
	json_array_foreach(json_object_get(out, "items"), total, it)
	    assert_string_equal(
	        json_string_value(json_object_get(it, "action")), "kek.rotate");
	json_decref(out);
	out = NULL;
	q.action = NULL;
	q.since = "2999-01-01T00:00:00Z";
	assert_int_equal(
	    hv_vault_audit_list(v, &adm, NULL, &q, &out, &err), HV_OK);
	assert_int_equal(json_array_size(json_object_get(out, "items")), 0);
	json_decref(out);
	out = NULL;
	q.since = "yesterday";
	assert_int_equal(
	    hv_vault_audit_list(v, &adm, NULL, &q, &out, &err), HV_E_INVALID);
	q.since = NULL;
	q.credential_id = "not-a-uuid";
	assert_int_equal(
	    hv_vault_audit_list(v, &adm, NULL, &q, &out, &err), HV_E_INVALID);
	q.credential_id = NULL;
	q.cursor = "12; DROP TABLE audit_log";
	assert_int_equal(
	    hv_vault_audit_list(v, &adm, NULL, &q, &out, &err), HV_E_INVALID);
	assert_null(out);

	/* a workspace reader sees only its workspace */
	memset(&rd, 0, sizeof(rd));
	snprintf(rd.workspace_id, sizeof(rd.workspace_id), "%s", ws_default);
	snprintf(rd.key_id, sizeof(rd.key_id),
	    "55555555-5555-4555-8555-555555555555");
	snprintf(rd.name, sizeof(rd.name), "auditor");
	rd.scopes = HV_SCOPE_AUDIT_READ | HV_SCOPE_CRED_READ;
	rd.all_credentials = true;
	memset(&q, 0, sizeof(q));
	q.limit = 200;
	assert_int_equal(
	    hv_vault_audit_list(v, &rd, NULL, &q, &out, &err), HV_OK);
	json_array_foreach(json_object_get(out, "items"), total, it)
	    assert_string_equal(
	        json_string_value(json_object_get(it, "workspace_id")),
	        ws_default);
	json_decref(out);
	out = NULL;

	/* without audit:read */
	nob = rd;
	nob.scopes = HV_SCOPE_CRED_READ;
	assert_int_equal(
	    hv_vault_audit_list(v, &nob, NULL, &q, &out, &err), HV_E_FORBIDDEN);
	/* per-credential: unknown and malformed ids are 404 */
	assert_int_equal(
	    hv_vault_cred_audit(v, &rd, NULL,
	        "66666666-6666-4666-8666-666666666666", &q, &out, &err),
	    HV_E_NOT_FOUND);
	assert_int_equal(
	    hv_vault_cred_audit(v, &rd, NULL, "../etc", &q, &out, &err),
	    HV_E_NOT_FOUND);
	assert_null(out);
	hv_principal_release(&adm);
}

/* Per-credential audit: visibility and allow-list. */
static void
test_cred_audit(void **state)
{
	struct hv_principal adm, other, lst;
	struct hv_err err = {0};
	struct hv_list_query q;
	json_t *body, *out = NULL;
	char id[HV_UUID_STR];

	(void)state;
	cli(&adm);
	body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s}}", "service", "http",
	    "name", "audited", "auth_type", "bearer", "scope", "workspace",
	    "base_url", "https://api.example.com", "secret", "token", "t-1");
	if (hv_vault_cred_create(v, &adm, NULL, body, &out, &err) != HV_OK)
		fail_msg("cred create: %s", err.msg);
	json_decref(body);
	snprintf(id, sizeof(id), "%s",
	    json_string_value(json_object_get(out, "id")));
	json_decref(out);
	out = NULL;
	memset(&q, 0, sizeof(q));
	assert_int_equal(
	    hv_vault_cred_audit(v, &adm, NULL, id, &q, &out, &err), HV_OK);
	assert_true(json_array_size(json_object_get(out, "items")) >= 1);
	assert_string_equal(
	    json_string_value(json_object_get(
	        json_array_get(json_object_get(out, "items"), 0),
	        "credential_id")),
	    id);
	json_decref(out);
	out = NULL;
	/* another workspace's key: as if it did not exist */
	memset(&other, 0, sizeof(other));
	snprintf(other.workspace_id, sizeof(other.workspace_id),
	    "77777777-7777-4777-8777-777777777777");
	snprintf(other.key_id, sizeof(other.key_id),
	    "88888888-8888-4888-8888-888888888888");
	other.scopes = HV_SCOPE_CRED_READ;
	other.all_credentials = true;
	assert_int_equal(
	    hv_vault_cred_audit(v, &other, NULL, id, &q, &out, &err),
	    HV_E_NOT_FOUND);
	/* same workspace, allow-list without it: 403 */
	lst = other;
	snprintf(lst.workspace_id, sizeof(lst.workspace_id), "%s", ws_default);
	lst.all_credentials = false;
	lst.n_cred_ids = 0;
	lst.cred_ids = NULL;
	assert_int_equal(hv_vault_cred_audit(v, &lst, NULL, id, &q, &out, &err),
	    HV_E_FORBIDDEN);
	assert_null(out);
	hv_principal_release(&adm);
}

static void
test_verify_and_status(void **state)
{
	struct hv_err err = {0};
	json_t *rep = NULL;

	(void)state;
	assert_int_equal(hv_vault_audit_verify(v, &rep, &err), HV_OK);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	assert_true(json_integer_value(json_object_get(rep, "rows")) > 0);
	json_decref(rep);
	assert_int_equal(hv_vault_ready(v, &err), HV_OK);
	assert_int_equal(hv_vault_services(v, &rep, &err), HV_OK);
	assert_true(json_array_size(json_object_get(rep, "items")) > 0);
	json_decref(rep);
}

static void
test_visibility_rules(void **state)
{
	struct hv_principal p;
	const char *ws = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
	const char *ws2 = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";

	(void)state;
	memset(&p, 0, sizeof(p));
	snprintf(p.workspace_id, sizeof(p.workspace_id), "%s", ws);
	p.scopes = HV_SCOPE_CRED_READ;
	assert_true(hv_vault_visible(&p, ws, "workspace", NULL));
	assert_false(hv_vault_visible(&p, ws2, "workspace", NULL));
	assert_true(hv_vault_visible(&p, ws2, "organization", NULL));
	/* no user label: no personal credential */
	assert_false(hv_vault_visible(&p, ws, "personal", "alice"));
	snprintf(p.user, sizeof(p.user), "alice");
	assert_true(hv_vault_visible(&p, ws, "personal", "alice"));
	assert_false(hv_vault_visible(&p, ws, "personal", "bob"));
	assert_false(hv_vault_visible(&p, ws2, "personal", "alice"));
	assert_false(hv_vault_visible(&p, ws, "bogus", NULL));
	p.scopes |= HV_SCOPE_ADMIN;
	assert_true(hv_vault_visible(&p, ws2, "personal", "bob"));
	assert_int_equal(hv_scope_parse("apikeys:write"), HV_SCOPE_KEYS_WRITE);
	assert_int_equal(hv_scope_parse("apikeys:*"), 0);
	assert_string_equal(hv_scope_name(HV_SCOPE_AUDIT_READ), "audit:read");
	assert_null(hv_scope_name(HV_SCOPE_AUDIT_READ | HV_SCOPE_ADMIN));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_init_twice),
	    cmocka_unit_test(test_init_no_database),
	    cmocka_unit_test(test_principal_cli),
	    cmocka_unit_test(test_workspaces),
	    cmocka_unit_test(test_rotate_rewrap_disable),
	    cmocka_unit_test(test_rewrap_cred_api),
	    cmocka_unit_test(test_audit_readers),
	    cmocka_unit_test(test_cred_audit),
	    cmocka_unit_test(test_verify_and_status),
	    cmocka_unit_test(test_visibility_rules),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
