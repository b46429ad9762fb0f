/*
 * test_apikeys: API key create, format, authenticate, expiry, revocation
 * across two server instances (two hv_vault_open in one process), scope
 * escalation, listing and last_used_at, against real PostgreSQL and
 * SoftHSM2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apikey.h"
#include "digest.h"
#include "testenv.h"
#include "uuid.h"
#include "vault_int.h"

static struct hv_test_token tok;
static struct hv_test_db db;
static struct hv_cfg cfg;
static struct hv_vault *va, *vb; /* two "servers" on one database */
static char ws_default[HV_UUID_STR];

static const struct hv_stmt t_stmts[] = {
    {"tk_audit_count", "SELECT count(*) FROM audit_log WHERE action = $1", 1},
    {"tk_audit_all", "SELECT count(*) FROM audit_log", 0},
    {"tk_last_used",
        "SELECT count(*) FROM api_keys WHERE id = $1::uuid "
        "AND last_used_at IS NOT NULL",
        1},
    {"tk_ws_other",
        "INSERT INTO workspaces (id, name) VALUES "
        "('99999999-9999-4999-8999-999999999999', 'other') "
        "ON CONFLICT DO NOTHING",
        0},
    {"tk_hmac_of", "SELECT count(*) FROM api_keys WHERE key_hmac = $1", 1},
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long
q_count(const char *stmt, const char *p0)
{
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	PGresult *r = NULL;
	const char *p[1] = {p0};
	long long x;

	assert_int_equal(hv_store_acquire(hv_vault_store(va), &c, &err), HV_OK);
	if (hv_store_exec(c, stmt, p0 != NULL ? 1 : 0, p0 != NULL ? p : NULL,
	        NULL, NULL, false, &r, &err) != HV_OK)
		fail_msg("%s: %s", stmt, err.msg);
	x = PQntuples(r) > 0 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	PQclear(r);
	hv_store_release(hv_vault_store(va), &c);
	return x;
}

/* One statement on its own connection to url, as an operator would. */
static void
sql_on(const char *url, const char *q)
{
	PGconn *c = PQconnectdb(url);
	PGresult *r;

	assert_int_equal(PQstatus(c), CONNECTION_OK);
	r = PQexec(c, q);
	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", q, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static void
admin_sql(const char *q)
{
	sql_on(getenv("HV_TEST_PG_URL"), q);
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
	hv_test_token_new(&tok, "hvkeys");
	hv_test_db_new(&db, "keys");
	hv_cfg_init(&cfg);
	hv_test_cfg(&cfg, &tok, &db);
	if (hv_vault_init(&cfg, &rep, &err) != HV_OK) {
		fprintf(stderr, "init: %s\n", err.msg);
		return -1;
	}
	snprintf(ws_default, sizeof(ws_default), "%s",
	    json_string_value(
	        json_object_get(json_object_get(rep, "workspace"), "id")));
	json_decref(rep);
	if (hv_vault_open(&cfg, false, &va, &err) != HV_OK ||
	    hv_vault_open(&cfg, false, &vb, &err) != HV_OK) {
		fprintf(stderr, "open: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	hv_vault_close(&va);
	hv_vault_close(&vb);
	hv_cfg_release(&cfg);
	hv_test_db_drop(&db);
	hv_test_token_destroy(&tok);
	return 0;
}

/*
 * Create a key as principal p (NULL: CLI) from a JSON body text; returns
 * the rc, and on success the key in key (cap bytes) and its id in id.
 */
static enum hv_rc
mint(struct hv_vault *v, const struct hv_principal *p, const char *body_text,
    char *key, size_t cap, char id[HV_UUID_STR], struct hv_err *err)
{
	json_error_t je;
	json_t *body = json_loads(body_text, JSON_ALLOW_NUL, &je), *out = NULL;
	enum hv_rc rc;

	assert_non_null(body);
	rc = hv_vault_apikey_create(v, p, NULL, body, &out, err);
	json_decref(body);
	if (rc != HV_OK) {
		assert_null(out);
		return rc;
	}
	snprintf(
	    key, cap, "%s", json_string_value(json_object_get(out, "key")));
	if (id != NULL)
		snprintf(id, HV_UUID_STR, "%s",
		    json_string_value(json_object_get(out, "id")));
	json_decref(out);
	return HV_OK;
}

static enum hv_rc
auth(struct hv_vault *v, const char *key, struct hv_principal *p)
{
	char hdr[256];
	struct hv_err err = {0};
	struct hv_reqctx ctx = {"req-test", "192.0.2.1"};
	enum hv_rc rc;

	snprintf(hdr, sizeof(hdr), "Bearer %s", key);
	memset(p, 0, sizeof(*p));
	rc = hv_vault_authenticate(v, hdr, &ctx, p, &err);
	if (rc == HV_E_UNAUTHORIZED)
		assert_null(strstr(err.msg, key)); /* never echoed */
	return rc;
}

static void
test_create_and_authenticate(void **state)
{
	char key[128], id[HV_UUID_STR];
	struct hv_err err = {0};
	struct hv_principal p;
	json_t *body, *out = NULL;
	uint8_t mac[HV_HMAC_LEN];
	unsigned long hits, misses, revs;
	bool listening;

	(void)state;
	body = json_pack("{s:s,s:[s,s],s:s}", "name", "ci", "scopes",
	    "credentials:read", "credentials:use", "user", "alice");
	assert_int_equal(
	    hv_vault_apikey_create(va, NULL, NULL, body, &out, &err), HV_OK);
	json_decref(body);
	snprintf(key, sizeof(key), "%s",
	    json_string_value(json_object_get(out, "key")));
	snprintf(id, sizeof(id), "%s",
	    json_string_value(json_object_get(out, "id")));
	assert_true(hv_apikey_format_ok(NULL, key));
	assert_int_equal(strncmp(key, "hv_sk_", 6), 0);
	assert_string_equal(
	    json_string_value(json_object_get(out, "name")), "ci");
	assert_string_equal(
	    json_string_value(json_object_get(out, "user")), "alice");
	assert_string_equal(
	    json_string_value(json_object_get(out, "workspace_id")),
	    ws_default);
	assert_string_equal(
	    json_string_value(json_object_get(out, "credentials")), "all");
	assert_int_equal(json_array_size(json_object_get(out, "scopes")), 2);
	assert_non_null(json_string_value(json_object_get(out, "created_at")));
	assert_true(json_is_null(json_object_get(out, "expires_at")));
	json_decref(out);
	assert_int_equal(q_count("tk_audit_count", "apikey.create") >= 1, 1);

	/* only the key store HMAC is stored */
	assert_int_equal(
	    hv_apikey_hash(hv_vault_hsm(va), key, mac, &err), HV_OK);
	{
		struct hv_conn *c = NULL;
		PGresult *r = NULL;
		const char *pv[1] = {(const char *)mac};
		const int len[1] = {HV_HMAC_LEN}, fmt[1] = {1};

		assert_int_equal(
		    hv_store_acquire(hv_vault_store(va), &c, &err), HV_OK);
		assert_int_equal(hv_store_exec(c, "tk_hmac_of", 1, pv, len, fmt,
		                     false, &r, &err),
		    HV_OK);
		assert_string_equal(PQgetvalue(r, 0, 0), "1");
		PQclear(r);
		hv_store_release(hv_vault_store(va), &c);
	}

	/* authenticate: principal as created; second call from the cache */
	assert_int_equal(auth(va, key, &p), HV_OK);
	assert_string_equal(p.key_id, id);
	assert_string_equal(p.name, "ci");
	assert_string_equal(p.user, "alice");
	assert_string_equal(p.workspace_id, ws_default);
	assert_int_equal(p.scopes, HV_SCOPE_CRED_READ | HV_SCOPE_CRED_USE);
	assert_true(p.all_credentials);
	hv_principal_release(&p);
	hv_vault_cache_stats(va, &hits, &misses, &revs, &listening);
	assert_int_equal(auth(va, key, &p), HV_OK);
	assert_string_equal(p.key_id, id);
	hv_principal_release(&p);
	{
		unsigned long h2, m2;

		hv_vault_cache_stats(va, &h2, &m2, &revs, &listening);
		assert_int_equal(h2, hits + 1);
	}
	/* "bearer" in any case */
	{
		char hdr[200];
		struct hv_principal q;

		snprintf(hdr, sizeof(hdr), "bEaReR %s", key);
		assert_int_equal(
		    hv_vault_authenticate(va, hdr, NULL, &q, &err), HV_OK);
		hv_principal_release(&q);
	}
}

/*
 * Two keys whose SHA-256 would share a slot of a direct-mapped cache of
 * 1,024 (the same low 10 bits of its first two bytes, which the cache's
 * sets of four also use): used in turn, both stay cached. Direct-mapped,
 * each use dropped the other and every use missed.
 */
static void
test_keys_sharing_a_slot(void **state)
{
	enum { SLOTS = 1024, MAX_MINTS = 400 };
	static char keys[MAX_MINTS][128];
	static short first[SLOTS];
	struct hv_err err = {0};
	struct hv_principal p;
	uint8_t h[32];
	unsigned long h0, m0, h1, m1, revs;
	bool listening;
	int i, a = -1, b = -1, round;

	(void)state;
	memset(first, 0xff, sizeof(first)); /* -1: no key yet */
	for (i = 0; i < MAX_MINTS && b < 0; i++) {
		unsigned int slot;

		assert_int_equal(mint(va, NULL,
		                     "{\"name\":\"slot\",\"scopes\":"
		                     "[\"credentials:read\"]}",
		                     keys[i], sizeof(keys[i]), NULL, &err),
		    HV_OK);
		assert_true(hv_sha256(keys[i], strlen(keys[i]), h));
		slot = ((unsigned int)h[0] << 8 | h[1]) % SLOTS;
		if (first[slot] >= 0) {
			a = first[slot];
			b = i;
		} else {
			first[slot] = (short)i;
		}
	}
	/* 400 keys in 1,024 slots without a shared one: about e^-78 */
	assert_true(a >= 0 && b >= 0);
	/*
	 * With its listener's heartbeat late (a loaded machine) the cache
	 * trusts an entry for 0.5 s only; wait for it, so that only the
	 * slot decides below.
	 */
	for (i = 0; i < 500; i++) {
		hv_vault_cache_stats(va, &h0, &m0, &revs, &listening);
		if (listening)
			break;
		usleep(10 * 1000);
	}
	assert_int_equal(auth(va, keys[a], &p), HV_OK);
	hv_principal_release(&p);
	assert_int_equal(auth(va, keys[b], &p), HV_OK);
	hv_principal_release(&p);
	hv_vault_cache_stats(va, &h0, &m0, &revs, &listening);
	for (round = 0; round < 3; round++) {
		assert_int_equal(auth(va, keys[a], &p), HV_OK);
		hv_principal_release(&p);
		assert_int_equal(auth(va, keys[b], &p), HV_OK);
		hv_principal_release(&p);
	}
	hv_vault_cache_stats(va, &h1, &m1, &revs, &listening);
	if (m1 != m0 || h1 != h0 + 6)
		fail_msg("two keys sharing a slot: %lu hits, %lu misses of 6",
		    h1 - h0, m1 - m0);
}

/* Malformed headers and keys: 401 and no audit row (junk stays out). */
static void
test_malformed(void **state)
{
	char key[128], bad[200];
	struct hv_err err = {0};
	struct hv_principal p;
	long long before = q_count("tk_audit_all", NULL);
	size_t n;
	const char *hdrs[] = {NULL, "", "Basic Zm9vOmJhcg==", "Bearer",
	    "Bearer ", "Bearer  hv_sk_x", "Token hv_sk_abc",
	    "Bearer hv_sk_'; DROP TABLE api_keys; --", NULL};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		memset(&p, 0, sizeof(p));
		assert_int_equal(
		    hv_vault_authenticate(va, hdrs[i], NULL, &p, &err),
		    HV_E_UNAUTHORIZED);
	}
	assert_int_equal(mint(va, NULL,
	                     "{\"name\":\"m\",\"scopes\":"
	                     "[\"audit:read\"]}",
	                     key, sizeof(key), NULL, &err),
	    HV_OK);
	before = q_count("tk_audit_all", NULL);
	/* one changed character breaks the checksum */
	n = strlen(key);
	snprintf(bad, sizeof(bad), "%s", key);
	bad[n - 8] = bad[n - 8] == 'A' ? 'B' : 'A';
	assert_int_equal(auth(va, bad, &p), HV_E_UNAUTHORIZED);
	/* truncated, extended, trailing space, wrong prefix */
	snprintf(bad, sizeof(bad), "%.*s", (int)n - 1, key);
	assert_int_equal(auth(va, bad, &p), HV_E_UNAUTHORIZED);
	snprintf(bad, sizeof(bad), "%sA", key);
	assert_int_equal(auth(va, bad, &p), HV_E_UNAUTHORIZED);
	snprintf(bad, sizeof(bad), "%s ", key);
	assert_int_equal(auth(va, bad, &p), HV_E_UNAUTHORIZED);
	snprintf(bad, sizeof(bad), "xx%s", key + 2);
	assert_int_equal(auth(va, bad, &p), HV_E_UNAUTHORIZED);
	assert_int_equal(q_count("tk_audit_all", NULL), before);
	/* the real one still works */
	assert_int_equal(auth(va, key, &p), HV_OK);
	hv_principal_release(&p);
}

/* A well-formed key nobody issued: 401 and an auth.denied row. */
static void
test_unknown_key(void **state)
{
	struct hv_secret *k = NULL;
	struct hv_err err = {0};
	struct hv_principal p;
	long long before = q_count("tk_audit_count", "auth.denied");

	(void)state;
	assert_int_equal(hv_apikey_generate(NULL, &k, &err), HV_OK);
	assert_int_equal(auth(va, (const char *)k->buf, &p), HV_E_UNAUTHORIZED);
	hv_secret_free(&k);
	assert_int_equal(q_count("tk_audit_count", "auth.denied"), before + 1);
}

static void
test_expired(void **state)
{
	char key[128], body[256], exp[64];
	struct hv_err err = {0};
	struct hv_principal p;
	time_t t = time(NULL) + 2;
	struct tm tm;
	long long before;

	(void)state;
	gmtime_r(&t, &tm);
	strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(body, sizeof(body),
	    "{\"name\":\"short\",\"scopes\":"
	    "[\"credentials:read\"],\"expires_at\":\"%s\"}",
	    exp);
	assert_int_equal(
	    mint(va, NULL, body, key, sizeof(key), NULL, &err), HV_OK);
	assert_int_equal(auth(va, key, &p), HV_OK); /* now cached */
	hv_principal_release(&p);
	sleep(3);
	before = q_count("tk_audit_count", "auth.denied");
	assert_int_equal(auth(va, key, &p), HV_E_UNAUTHORIZED);
	assert_int_equal(auth(vb, key, &p), HV_E_UNAUTHORIZED);
	assert_int_equal(q_count("tk_audit_count", "auth.denied"), before + 2);

	/* expires_at in the past or malformed is refused at creation */
	assert_int_equal(
	    mint(va, NULL,
	        "{\"name\":\"x\",\"scopes\":"
	        "[\"audit:read\"],\"expires_at\":\"2001-01-01T00:00:00Z\"}",
	        key, sizeof(key), NULL, &err),
	    HV_E_INVALID);
	assert_int_equal(mint(va, NULL,
	                     "{\"name\":\"x\",\"scopes\":"
	                     "[\"audit:read\"],\"expires_at\":\"tomorrow\"}",
	                     key, sizeof(key), NULL, &err),
	    HV_E_INVALID);
	assert_non_null(strstr(err.msg, "expires_at"));
	assert_int_equal(
	    mint(va, NULL,
	        "{\"name\":\"x\",\"scopes\":"
	        "[\"audit:read\"],\"expires_at\":\"2099-02-30T00:00:00Z\"}",
	        key, sizeof(key), NULL, &err),
	    HV_E_INVALID);
	assert_int_equal(mint(va, NULL,
	                     "{\"name\":\"x\",\"scopes\":"
	                     "[\"audit:read\"],\"expires_at\":\"2099-01-01T00:"
	                     "00:00+02:00\"}",
	                     key, sizeof(key), NULL, &err),
	    HV_OK);
}

/* Poll v until key is refused; returns the seconds it took (or 99). */
static double
until_refused(struct hv_vault *v, const char *key, double t0)
{
	struct hv_principal p;

	while (now_s() - t0 < 5.0) {
		if (auth(v, key, &p) == HV_E_UNAUTHORIZED)
			return now_s() - t0;
		hv_principal_release(&p);
		usleep(10 * 1000);
	}
	return 99;
}

/*
 * Revoked on server B, refused on server A (which had the key cached)
 * within one second.
 */
static void
test_revoke_two_instances(void **state)
{
	char key[128], id[HV_UUID_STR];
	struct hv_err err = {0};
	struct hv_principal p, adm;
	double t0, took;
	int i;

	(void)state;
	assert_int_equal(mint(va, NULL,
	                     "{\"name\":\"rv\",\"scopes\":"
	                     "[\"credentials:read\"]}",
	                     key, sizeof(key), id, &err),
	    HV_OK);
	for (i = 0; i < 3; i++) {
		assert_int_equal(auth(va, key, &p), HV_OK);
		hv_principal_release(&p);
		assert_int_equal(auth(vb, key, &p), HV_OK);
		hv_principal_release(&p);
	}
	usleep(300 * 1000); /* listeners are up and the entry is old */
	assert_int_equal(hv_principal_cli(vb, NULL, &adm, &err), HV_OK);
	t0 = now_s();
	assert_int_equal(
	    hv_vault_apikey_revoke(vb, &adm, NULL, id, &err), HV_OK);
	took = until_refused(va, key, t0);
	fprintf(stderr, "revocation seen by the other instance after %.3f s\n",
	    took);
	assert_true(took < 1.0);
	assert_int_equal(auth(vb, key, &p), HV_E_UNAUTHORIZED);
	assert_int_equal(q_count("tk_audit_count", "apikey.revoke"), 1);
	/* revoking twice: done already, no second row */
	assert_int_equal(
	    hv_vault_apikey_revoke(vb, &adm, NULL, id, &err), HV_OK);
	assert_int_equal(q_count("tk_audit_count", "apikey.revoke"), 1);
	/* unknown and malformed ids */
	assert_int_equal(hv_vault_apikey_revoke(vb, &adm, NULL,
	                     "12345678-1234-4234-8234-123456789012", &err),
	    HV_E_NOT_FOUND);
	assert_int_equal(
	    hv_vault_apikey_revoke(vb, &adm, NULL, "1 OR 1=1", &err),
	    HV_E_NOT_FOUND);
	hv_principal_release(&adm);
}

/*
 * The revocation listener of A is cut off (and cannot reconnect): cached
 * keys fall back to a sub-second life, so A still refuses within 1 s.
 */
static void
test_revoke_listener_down(void **state)
{
	char key[128], id[HV_UUID_STR], q[256];
	struct hv_err err = {0};
	struct hv_principal p, adm;
	unsigned long h, m, r;
	bool listening = true;
	double t0, took;

	(void)state;
	assert_int_equal(mint(va, NULL,
	                     "{\"name\":\"rv2\",\"scopes\":"
	                     "[\"credentials:read\"]}",
	                     key, sizeof(key), id, &err),
	    HV_OK);
	assert_int_equal(auth(va, key, &p), HV_OK);
	hv_principal_release(&p);
	assert_int_equal(hv_principal_cli(vb, NULL, &adm, &err), HV_OK);

	snprintf(
	    q, sizeof(q), "ALTER DATABASE %s ALLOW_CONNECTIONS false", db.name);
	admin_sql(q);
	snprintf(q, sizeof(q),
	    "SELECT pg_terminate_backend(pid, 5000) FROM "
	    "pg_stat_activity WHERE datname = '%s' AND application_name = "
	    "'hsmvault-listener'",
	    db.name);
	admin_sql(q);
	/* A notices within a heartbeat or two */
	t0 = now_s();
	while (listening && now_s() - t0 < 2.0) {
		hv_vault_cache_stats(va, &h, &m, &r, &listening);
		usleep(20 * 1000);
	}
	assert_false(listening);
	assert_int_equal(auth(va, key, &p), HV_OK); /* cached again */
	hv_principal_release(&p);
	t0 = now_s();
	assert_int_equal(
	    hv_vault_apikey_revoke(vb, &adm, NULL, id, &err), HV_OK);
	took = until_refused(va, key, t0);
	fprintf(stderr, "revocation without listener after %.3f s\n", took);
	assert_true(took < 1.0);
	snprintf(
	    q, sizeof(q), "ALTER DATABASE %s ALLOW_CONNECTIONS true", db.name);
	admin_sql(q);
	/* and the listener comes back */
	t0 = now_s();
	while (!listening && now_s() - t0 < 5.0) {
		hv_vault_cache_stats(va, &h, &m, &r, &listening);
		usleep(50 * 1000);
	}
	assert_true(listening);
	hv_principal_release(&adm);
}

/* Mint a key on va and have both instances cache it (old enough). */
static void
mint_cached(const char *name, char *key, size_t cap, char id[HV_UUID_STR])
{
	char body[128];
	struct hv_err err = {0};
	struct hv_principal p;

	(void)snprintf(body, sizeof(body),
	    "{\"name\":\"%s\",\"scopes\":[\"credentials:read\"]}", name);
	assert_int_equal(mint(va, NULL, body, key, cap, id, &err), HV_OK);
	assert_int_equal(auth(va, key, &p), HV_OK);
	hv_principal_release(&p);
	assert_int_equal(auth(vb, key, &p), HV_OK);
	hv_principal_release(&p);
}

/*
 * Changes made in SQL reach every instance's key cache within one second
 * (sql/0004-change-notify-sql.sql): an operator's UPDATE of revoked_at, a
 * DELETE and a TRUNCATE; and the batched last_used_at writes evict
 * nothing. Last in the list: it empties api_keys.
 */
static void
test_revoke_by_sql(void **state)
{
	char k1[128], k2[128], k3[128], id1[HV_UUID_STR], id2[HV_UUID_STR],
	    id3[HV_UUID_STR], q[256];
	struct hv_principal p;
	unsigned long h, m, r0, r1;
	bool listening;
	double t0;
	int i;

	(void)state;
	mint_cached("sql1", k1, sizeof(k1), id1);
	mint_cached("sql2", k2, sizeof(k2), id2);
	mint_cached("sql3", k3, sizeof(k3), id3);
	/* last_used_at is written (about every second): no eviction */
	hv_vault_cache_stats(va, &h, &m, &r0, &listening);
	assert_true(listening);
	for (i = 0; i < 15; i++) {
		assert_int_equal(auth(va, k1, &p), HV_OK);
		hv_principal_release(&p);
		usleep(100 * 1000);
	}
	assert_int_not_equal(q_count("tk_last_used", id1), 0);
	hv_vault_cache_stats(va, &h, &m, &r1, &listening);
	assert_int_equal(r1, r0);

	(void)snprintf(q, sizeof(q),
	    "UPDATE api_keys SET revoked_at = now() WHERE id = '%s'", id1);
	t0 = now_s();
	sql_on(db.url, q);
	assert_true(until_refused(va, k1, t0) < 1.0);
	assert_true(until_refused(vb, k1, t0) < 1.0);
	assert_int_equal(auth(va, k2, &p), HV_OK); /* only that key */
	hv_principal_release(&p);

	(void)snprintf(
	    q, sizeof(q), "DELETE FROM api_keys WHERE id = '%s'", id2);
	t0 = now_s();
	sql_on(db.url, q);
	assert_true(until_refused(va, k2, t0) < 1.0);
	assert_true(until_refused(vb, k2, t0) < 1.0);

	t0 = now_s();
	sql_on(db.url, "TRUNCATE api_keys");
	assert_true(until_refused(va, k3, t0) < 1.0);
	assert_true(until_refused(vb, k3, t0) < 1.0);
}

/* Nobody mints what they do not hold. */
static void
test_no_escalation(void **state)
{
	char key[128], k2[128], id[HV_UUID_STR];
	struct hv_err err = {0};
	struct hv_principal p, q2;
	long long denied;

	(void)state;
	assert_int_equal(
	    mint(va, NULL,
	        "{\"name\":\"mgr\",\"scopes\":"
	        "[\"apikeys:write\",\"credentials:read\"],\"user\":\"bob\"}",
	        key, sizeof(key), NULL, &err),
	    HV_OK);
	assert_int_equal(auth(va, key, &p), HV_OK);
	denied = q_count("tk_audit_count", "auth.denied");

	assert_int_equal(mint(va, &p, "{\"name\":\"x\",\"scopes\":[\"admin\"]}",
	                     k2, sizeof(k2), NULL, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(mint(va, &p,
	                     "{\"name\":\"x\",\"scopes\":"
	                     "[\"credentials:write\"]}",
	                     k2, sizeof(k2), NULL, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(mint(va, &p,
	                     "{\"name\":\"x\",\"scopes\":"
	                     "[\"credentials:read\"],\"user\":\"carol\"}",
	                     k2, sizeof(k2), NULL, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(mint(va, &p,
	                     "{\"name\":\"x\",\"scopes\":"
	                     "[\"credentials:read\"],\"workspace_id\":"
	                     "\"99999999-9999-4999-8999-999999999999\"}",
	                     k2, sizeof(k2), NULL, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(q_count("tk_audit_count", "auth.denied"), denied + 4);

	/* within its own scopes: fine, and the user label is inherited */
	assert_int_equal(mint(va, &p,
	                     "{\"name\":\"sub\",\"scopes\":"
	                     "[\"credentials:read\"],\"credentials\":"
	                     "[\"AAAAAAAA-aaaa-4aaa-8aaa-aaaaaaaaaaaa\"]}",
	                     k2, sizeof(k2), id, &err),
	    HV_OK);
	assert_int_equal(auth(va, k2, &q2), HV_OK);
	assert_string_equal(q2.user, "bob");
	assert_false(q2.all_credentials);
	assert_int_equal(q2.n_cred_ids, 1);
	assert_string_equal(
	    q2.cred_ids[0], "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa");
	assert_true(
	    hv_vault_allowed(&q2, "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"));
	assert_false(
	    hv_vault_allowed(&q2, "bbbbbbbb-aaaa-4aaa-8aaa-aaaaaaaaaaaa"));
	/* q2 lacks apikeys:write */
	assert_int_equal(mint(va, &q2,
	                     "{\"name\":\"y\",\"scopes\":"
	                     "[\"credentials:read\"]}",
	                     k2, sizeof(k2), NULL, &err),
	    HV_E_FORBIDDEN);
	/* an allow-listed key cannot widen its list */
	q2.scopes |= HV_SCOPE_KEYS_WRITE;
	assert_int_equal(mint(va, &q2,
	                     "{\"name\":\"y\",\"scopes\":"
	                     "[\"credentials:read\"]}",
	                     k2, sizeof(k2), NULL, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(mint(va, &q2,
	                     "{\"name\":\"y\",\"scopes\":"
	                     "[\"credentials:read\"],\"credentials\":"
	                     "[\"bbbbbbbb-aaaa-4aaa-8aaa-aaaaaaaaaaaa\"]}",
	                     k2, sizeof(k2), NULL, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(mint(va, &q2,
	                     "{\"name\":\"y\",\"scopes\":"
	                     "[\"credentials:read\"],\"credentials\":"
	                     "[\"aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa\"]}",
	                     k2, sizeof(k2), NULL, &err),
	    HV_OK);
	hv_principal_release(&q2);
	hv_principal_release(&p);

	/* require() without the scope: 403 and a denied row */
	assert_int_equal(mint(va, NULL,
	                     "{\"name\":\"ro\",\"scopes\":"
	                     "[\"credentials:read\"]}",
	                     key, sizeof(key), NULL, &err),
	    HV_OK);
	assert_int_equal(auth(va, key, &p), HV_OK);
	denied = q_count("tk_audit_count", "auth.denied");
	assert_int_equal(
	    hv_vault_require(va, &p, HV_SCOPE_KEYS_READ, NULL, &err),
	    HV_E_FORBIDDEN);
	assert_int_equal(
	    hv_vault_require(va, &p, HV_SCOPE_CRED_READ, NULL, &err), HV_OK);
	assert_int_equal(q_count("tk_audit_count", "auth.denied"), denied + 1);
	hv_principal_release(&p);
}

static void
test_create_validation(void **state)
{
	char key[128];
	struct hv_err err = {0};
	struct {
		const char *body, *needle;
	} bad[] = {
	    {"{\"scopes\":[\"admin\"]}", "name"},
	    {"{\"name\":\"\",\"scopes\":[\"admin\"]}", "name"},
	    {"{\"name\":\"a\\u0000b\",\"scopes\":[\"admin\"]}", "name"},
	    {"{\"name\":\"a\\nb\",\"scopes\":[\"admin\"]}", "name"},
	    {"{\"name\":\"n\"}", "scopes"},
	    {"{\"name\":\"n\",\"scopes\":[]}", "scopes"},
	    {"{\"name\":\"n\",\"scopes\":\"admin\"}", "scopes"},
	    {"{\"name\":\"n\",\"scopes\":[\"root\"]}", "scopes"},
	    {"{\"name\":\"n\",\"scopes\":[\"admin\",\"admin\"]}", "scopes"},
	    {"{\"name\":\"n\",\"scopes\":[1]}", "scopes"},
	    {"{\"name\":\"n\",\"scopes\":[\"admin\"],\"color\":1}", "color"},
	    {"{\"name\":\"n\",\"scopes\":[\"admin\"],\"credentials\":"
	     "\"some\"}",
	        "credentials"},
	    {"{\"name\":\"n\",\"scopes\":[\"admin\"],\"credentials\":"
	     "[\"x\"]}",
	        "credentials"},
	    {"{\"name\":\"n\",\"scopes\":[\"admin\"],\"user\":\"\"}", "user"},
	    {"{\"name\":\"n\",\"scopes\":[\"admin\"],\"workspace_id\":"
	     "\"nope\"}",
	        "workspace_id"},
	    {"{\"name\":\"n\",\"scopes\":[\"admin\"],\"workspace_id\":"
	     "\"12345678-1234-4234-8234-123456789012\"}",
	        "workspace_id"},
	    {"[1,2]", "object"},
	};
	size_t i;
	long long before = q_count("tk_audit_count", "apikey.create");

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    mint(va, NULL, bad[i].body, key, sizeof(key), NULL, &err),
		    HV_E_INVALID);
		if (strstr(err.msg, bad[i].needle) == NULL)
			fail_msg("%s: message '%s' lacks '%s'", bad[i].body,
			    err.msg, bad[i].needle);
	}
	assert_int_equal(q_count("tk_audit_count", "apikey.create"), before);
	/* admin may place a key in another workspace */
	q_count("tk_ws_other", NULL);
	assert_int_equal(mint(va, NULL,
	                     "{\"name\":\"o\",\"scopes\":"
	                     "[\"credentials:read\"],\"workspace_id\":"
	                     "\"99999999-9999-4999-8999-999999999999\"}",
	                     key, sizeof(key), NULL, &err),
	    HV_OK);
}

static void
test_list_and_last_used(void **state)
{
	char key[128], id[HV_UUID_STR], cur[128];
	struct hv_err err = {0};
	struct hv_principal adm, p;
	struct hv_list_query q;
	json_t *out = NULL, *it;
	size_t i, seen = 0;
	bool found_used = false;
	int pages = 0;

	(void)state;
	assert_int_equal(mint(va, NULL,
	                     "{\"name\":\"used\",\"scopes\":"
	                     "[\"apikeys:read\"]}",
	                     key, sizeof(key), id, &err),
	    HV_OK);
	assert_int_equal(auth(va, key, &p), HV_OK);
	assert_int_equal(hv_principal_cli(va, NULL, &adm, &err), HV_OK);
	usleep(1600 * 1000); /* one batch flush */
	memset(&q, 0, sizeof(q));
	q.limit = 2;
	q.workspace_id = ws_default; /* admin would list every workspace */
	for (;;) {
		const char *nc;

		assert_int_equal(
		    hv_vault_apikey_list(va, &adm, NULL, &q, &out, &err),
		    HV_OK);
		assert_true(
		    json_array_size(json_object_get(out, "items")) <= 2);
		json_array_foreach(json_object_get(out, "items"), i, it)
		{
			assert_null(json_object_get(it, "key"));
			assert_null(json_object_get(it, "key_hmac"));
			assert_string_equal(json_string_value(json_object_get(
			                        it, "workspace_id")),
			    ws_default);
			if (strcmp(json_string_value(json_object_get(it, "id")),
			        id) == 0) {
				found_used = json_is_string(
				    json_object_get(it, "last_used_at"));
				assert_string_equal(
				    json_string_value(
				        json_object_get(it, "status")),
				    "active");
			}
			seen++;
		}
		pages++;
		nc = json_string_value(json_object_get(out, "next_cursor"));
		if (nc == NULL)
			break;
		snprintf(cur, sizeof(cur), "%s", nc);
		q.cursor = cur;
		json_decref(out);
		out = NULL;
	}
	json_decref(out);
	out = NULL;
	assert_true(found_used);
	assert_true(seen >= 6);
	assert_true(pages >= 3);
	/* the listing principal itself (apikeys:read) works too */
	memset(&q, 0, sizeof(q));
	assert_int_equal(
	    hv_vault_apikey_list(va, &p, NULL, &q, &out, &err), HV_OK);
	json_decref(out);
	out = NULL;
	q.cursor = "garbage";
	assert_int_equal(
	    hv_vault_apikey_list(va, &p, NULL, &q, &out, &err), HV_E_INVALID);
	/* a key of another workspace is not found from this one */
	q.cursor = NULL;
	hv_principal_release(&p);
	{
		struct hv_principal o;
		char ok[128], oid[HV_UUID_STR];

		assert_int_equal(
		    mint(va, NULL,
		        "{\"name\":\"ow\",\"scopes\":"
		        "[\"apikeys:write\",\"apikeys:read\"],\"workspace_id\":"
		        "\"99999999-9999-4999-8999-999999999999\"}",
		        ok, sizeof(ok), oid, &err),
		    HV_OK);
		assert_int_equal(auth(va, ok, &o), HV_OK);
		assert_int_equal(hv_vault_apikey_revoke(va, &o, NULL, id, &err),
		    HV_E_NOT_FOUND);
		assert_int_equal(
		    hv_vault_apikey_list(va, &o, NULL, &q, &out, &err), HV_OK);
		json_array_foreach(json_object_get(out, "items"), i, it)
		    assert_string_not_equal(
		        json_string_value(json_object_get(it, "id")), id);
		json_decref(out);
		hv_principal_release(&o);
	}
	hv_principal_release(&adm);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_create_and_authenticate),
	    cmocka_unit_test(test_keys_sharing_a_slot),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_unknown_key),
	    cmocka_unit_test(test_expired),
	    cmocka_unit_test(test_revoke_two_instances),
	    cmocka_unit_test(test_revoke_listener_down),
	    cmocka_unit_test(test_no_escalation),
	    cmocka_unit_test(test_create_validation),
	    cmocka_unit_test(test_list_and_last_used),
	    cmocka_unit_test(test_revoke_by_sql),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
