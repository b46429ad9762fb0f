/*
 * The hot paths of docs/performance.md against a real PostgreSQL and a
 * real SoftHSM2 token:
 *   - the DEK cache through the vault: a repeated reveal is a cache hit
 *     with the right secret; rotate, revoke and delete drop the
 *     credential's DEKs; a rewrap (other wrapped bytes, other KEK) or a
 *     tampered wrapped DEK never gets a cached key; size 0 caches nothing;
 *   - the audit fast path (remembered chain heads, compare-and-swap) and
 *     its fallback: two instances writing one chain, a rolled-back append,
 *     every row chained (verify), times monotonic along each chain;
 *   - the store: BEGIN sent with the first statement (a failing first
 *     statement, an empty transaction), and hv_store_exec_once() never
 *     replaying a statement on a fresh connection.
 */
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

#include "audit.h"
#include "dekcache.h"
#include "mem.h"
#include "store.h"
#include "testenv.h"
#include "vault.h"
#include "vault_int.h"

struct env {
	struct hv_test_token tok;
	struct hv_test_db db;
	struct hv_cfg cfg;  /* dek_cache_size 64, one audit chain */
	struct hv_cfg cfg0; /* dek_cache_size 0 */
	struct hv_vault *v, *v2, *v0;
	PGconn *pg;
	struct hv_principal cli;
};

static struct env E;
static const struct hv_reqctx CTX = {"req-hot", "127.0.0.1"};

static const struct hv_stmt thp_stmts[] = {
    {"thp_pid", "SELECT pg_backend_pid()", 0},
    {"thp_uuid", "SELECT $1::uuid", 1},
};

static char *
q1(const char *sql)
{
	PGresult *r = PQexec(E.pg, sql);
	char *out = NULL;

	if (PQresultStatus(r) != PGRES_TUPLES_OK &&
	    PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(E.pg));
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 &&
	    !PQgetisnull(r, 0, 0))
		out = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return out;
}

static long
qlong(const char *sql)
{
	char *s = q1(sql);
	long n = s != NULL ? strtol(s, NULL, 10) : -1;

	free(s);
	return n;
}

static void
open_vault(struct hv_cfg *cfg, struct hv_vault **v)
{
	struct hv_err err = {0};

	hv_test_must(hv_vault_open(cfg, false, v, &err), &err, "open");
}

static int
setup(void **state)
{
	struct hv_err err = {0};
	json_t *report = NULL;

	(void)state;
	hv_mem_json_init();
	hv_test_db_new(&E.db, "hot");
	hv_test_token_new(&E.tok, "hottest");
	hv_cfg_init(&E.cfg);
	hv_test_cfg(&E.cfg, &E.tok, &E.db);
	E.cfg.dek_cache_size = 64;
	E.cfg.audit_chains = 1; /* every append of both instances on one */
	E.cfg.db_pool = 2;
	hv_cfg_init(&E.cfg0);
	hv_test_cfg(&E.cfg0, &E.tok, &E.db);
	E.cfg0.dek_cache_size = 0;
	if (hv_vault_init(&E.cfg, &report, &err) != HV_OK) {
		fprintf(stderr, "init: %s\n", err.msg);
		return -1;
	}
	json_decref(report);
	hv_store_register(thp_stmts, sizeof(thp_stmts) / sizeof(thp_stmts[0]));
	open_vault(&E.cfg, &E.v);
	open_vault(&E.cfg, &E.v2);
	open_vault(&E.cfg0, &E.v0);
	if (hv_principal_cli(E.v, NULL, &E.cli, &err) != HV_OK)
		return -1;
	E.pg = PQconnectdb(E.db.url);
	return PQstatus(E.pg) == CONNECTION_OK ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	hv_principal_release(&E.cli);
	PQfinish(E.pg);
	hv_vault_close(&E.v0);
	hv_vault_close(&E.v2);
	hv_vault_close(&E.v);
	hv_cfg_release(&E.cfg0);
	hv_cfg_release(&E.cfg);
	hv_test_db_drop(&E.db);
	hv_test_token_destroy(&E.tok);
	return 0;
}

/* Create a Stripe credential with key `key`; returns its id (strdup). */
static char *
create(struct hv_vault *v, const char *key)
{
	struct hv_err err = {0};
	json_t *body, *out = NULL;
	char *id;

	body = json_pack("{s:s,s:s,s:{s:s}}", "service", "stripe", "name",
	    "hot path", "secret", "key", key);
	assert_non_null(body);
	hv_test_must(hv_vault_cred_create(v, &E.cli, &CTX, body, &out, &err),
	    &err, "create");
	id = strdup(json_string_value(json_object_get(out, "id")));
	json_decref(out);
	json_decref(body);
	return id;
}

/* Reveal id through v and check the key it holds. */
static void
reveal_is(struct hv_vault *v, const char *id, const char *key)
{
	struct hv_err err = {0};
	json_t *out = NULL;
	const char *got;

	hv_test_must(hv_vault_cred_reveal(v, &E.cli, &CTX, id, &out, &err),
	    &err, "reveal");
	got = json_string_value(
	    json_object_get(json_object_get(out, "secret"), "key"));
	assert_non_null(got);
	assert_string_equal(got, key);
	json_decref(out);
}

static struct hv_dekcache_stats
stats(struct hv_vault *v)
{
	struct hv_dekcache_stats st;

	hv_dekcache_stats(v->dekcache, &st);
	return st;
}

static void
test_dek_cache_reveal(void **state)
{
	struct hv_err err = {0};
	struct hv_dekcache_stats s0, s;
	json_t *body, *out = NULL;
	char *id;

	(void)state;
	hv_dekcache_clear(E.v->dekcache);
	id = create(E.v, "sk_test_first");
	s0 = stats(E.v);
	reveal_is(E.v, id, "sk_test_first"); /* miss: key store */
	s = stats(E.v);
	assert_int_equal(s.misses, s0.misses + 1);
	assert_int_equal(s.entries, 1);
	reveal_is(E.v, id, "sk_test_first"); /* hit */
	s = stats(E.v);
	assert_int_equal(s.hits, s0.hits + 1);

	/* rotate: a new DEK, and the old one is dropped at once */
	body = json_pack("{s:{s:s}}", "secret", "key", "sk_test_second");
	hv_test_must(
	    hv_vault_cred_rotate(E.v, &E.cli, &CTX, id, body, -1, &out, &err),
	    &err, "rotate");
	json_decref(out);
	json_decref(body);
	out = NULL;
	assert_int_equal(stats(E.v).entries, 0);
	reveal_is(E.v, id, "sk_test_second");
	reveal_is(E.v, id, "sk_test_second");
	assert_int_equal(stats(E.v).entries, 1);

	/* revoke drops it; unrevoke does not bring it back by itself */
	hv_test_must(
	    hv_vault_cred_revoke(E.v, &E.cli, &CTX, id, true, &out, &err), &err,
	    "revoke");
	json_decref(out);
	out = NULL;
	assert_int_equal(stats(E.v).entries, 0);
	hv_test_must(
	    hv_vault_cred_revoke(E.v, &E.cli, &CTX, id, false, &out, &err),
	    &err, "unrevoke");
	json_decref(out);
	out = NULL;
	assert_int_equal(stats(E.v).entries, 0);
	reveal_is(E.v, id, "sk_test_second");
	assert_int_equal(stats(E.v).entries, 1);

	/* delete drops it, and the credential is gone */
	hv_test_must(
	    hv_vault_cred_delete(E.v, &E.cli, &CTX, id, &err), &err, "delete");
	assert_int_equal(stats(E.v).entries, 0);
	assert_int_equal(
	    hv_vault_cred_reveal(E.v, &E.cli, &CTX, id, &out, &err),
	    HV_E_NOT_FOUND);
	free(id);
}

/* Another instance's cache never outlives a delete on the database. */
static void
test_dek_cache_other_instance(void **state)
{
	struct hv_err err = {0};
	json_t *out = NULL;
	char *id;

	(void)state;
	id = create(E.v, "sk_test_shared");
	reveal_is(E.v2, id, "sk_test_shared");
	reveal_is(E.v2, id, "sk_test_shared"); /* cached in v2 */
	hv_test_must(
	    hv_vault_cred_delete(E.v, &E.cli, &CTX, id, &err), &err, "delete");
	/* v2 still holds the DEK, but nothing reaches it without a row */
	assert_int_equal(
	    hv_vault_cred_reveal(E.v2, &E.cli, &CTX, id, &out, &err),
	    HV_E_NOT_FOUND);
	assert_null(out);
	free(id);
}

static void
test_dek_cache_rewrap_and_tamper(void **state)
{
	struct hv_err err = {0};
	struct hv_dekcache_stats s0;
	json_t *out = NULL;
	char sql[256], *id;

	(void)state;
	id = create(E.v, "sk_test_rewrap");
	reveal_is(E.v, id, "sk_test_rewrap");
	reveal_is(E.v, id, "sk_test_rewrap"); /* cached */
	/* a new KEK and a rewrap: other wrapped bytes, another cache key */
	hv_test_must(hv_vault_kek_rotate(E.v, &E.cli, &CTX, &out, &err), &err,
	    "kek rotate");
	json_decref(out);
	out = NULL;
	hv_test_must(
	    hv_vault_rewrap(E.v, &E.cli, &CTX, 100, 0, NULL, NULL, &out, &err),
	    &err, "rewrap");
	json_decref(out);
	out = NULL;
	s0 = stats(E.v);
	reveal_is(E.v, id, "sk_test_rewrap");
	assert_int_equal(stats(E.v).misses, s0.misses + 1);
	assert_int_equal(stats(E.v).hits, s0.hits);

	/* a wrapped DEK altered in the database: no cached key serves it */
	reveal_is(E.v, id, "sk_test_rewrap"); /* cached under the new bytes */
	(void)snprintf(sql, sizeof(sql),
	    "UPDATE credential_versions SET "
	    "wrapped_dek = set_byte(wrapped_dek, 20, get_byte(wrapped_dek, "
	    "20) # 255) WHERE credential_id = '%s'",
	    id);
	free(q1(sql));
	assert_int_equal(
	    hv_vault_cred_reveal(E.v, &E.cli, &CTX, id, &out, &err),
	    HV_E_CRYPTO);
	assert_null(out);
	free(id);
}

static void
test_dek_cache_size_zero(void **state)
{
	struct hv_dekcache_stats s;
	char *id;

	(void)state;
	assert_null(E.v0->dekcache);
	id = create(E.v0, "sk_test_nocache");
	reveal_is(E.v0, id, "sk_test_nocache");
	reveal_is(E.v0, id, "sk_test_nocache");
	s = stats(E.v0);
	assert_int_equal(s.hits + s.misses + s.entries + s.capacity, 0);
	free(id);
}

static json_t *
verify(void)
{
	struct hv_err err = {0};
	json_t *rep = NULL;

	hv_test_must(hv_vault_audit_verify(E.v, &rep, &err), &err, "verify");
	return rep;
}

/*
 * Two instances appending to one chain: each one's remembered head is
 * stale after the other's append (compare-and-swap misses, the locked
 * path takes over), a rolled-back append leaves a stale head behind, and
 * every row is still chained; times never go back along a chain.
 */
static void
test_audit_fast_and_fallback(void **state)
{
	struct hv_audit_event ev;
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	struct hv_audit_stats st, st0, st2;
	long before, after;
	json_t *rep;
	char *id;
	int i;

	(void)state;
	id = create(E.v, "sk_test_audit");
	hv_audit_stats(E.v->audit, &st0);
	hv_audit_stats(E.v2->audit, &st2);
	before = qlong("SELECT count(*) FROM audit_log");
	for (i = 0; i < 10; i++) {
		reveal_is(E.v, id, "sk_test_audit");
		reveal_is(E.v, id, "sk_test_audit");  /* fast path */
		reveal_is(E.v2, id, "sk_test_audit"); /* v2: stale head */
	}
	/* an append that rolls back: v's remembered head runs ahead */
	memset(&ev, 0, sizeof(ev));
	ev.action = "credential.reveal";
	ev.outcome = "success";
	ev.credential_id = id;
	hv_test_must(
	    hv_store_acquire(hv_vault_store(E.v), &c, &err), &err, "acquire");
	hv_test_must(hv_store_begin(c, &err), &err, "begin");
	hv_test_must(hv_audit_append(E.v->audit, c, &ev, &err), &err, "append");
	hv_store_rollback(c);
	hv_store_release(hv_vault_store(E.v), &c);
	reveal_is(E.v, id, "sk_test_audit");
	reveal_is(E.v, id, "sk_test_audit");
	after = qlong("SELECT count(*) FROM audit_log");
	assert_int_equal(after - before, 32);
	/* both paths ran: v's second reveal of each round went fast, each
	 * round's first (after v2 moved the head) and v2's went locked */
	hv_audit_stats(E.v->audit, &st);
	assert_true(st.fast - st0.fast >= 10);
	assert_true(st.locked - st0.locked >= 10);
	hv_audit_stats(E.v2->audit, &st);
	assert_int_equal(st.fast + st.locked - st2.fast - st2.locked, 10);
	assert_true(st.locked - st2.locked >= 9);
	rep = verify();
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	/* one chain; ids grow with seq; times never go back */
	assert_int_equal(
	    qlong("SELECT count(*) FROM (SELECT id, at, "
	          "lag(id) OVER w AS pid, lag(at) OVER w AS pat FROM audit_log "
	          "WINDOW w AS (PARTITION BY chain ORDER BY seq)) x "
	          "WHERE id <= pid OR at < pat"),
	    0);
	free(id);
}

/* An altered row is still caught when rows come through the fast path. */
static void
test_audit_fast_path_tamper(void **state)
{
	json_t *rep, *fb;
	char *id;

	(void)state;
	id = create(E.v, "sk_test_tamper");
	reveal_is(E.v, id, "sk_test_tamper");
	reveal_is(E.v, id, "sk_test_tamper");
	free(q1("UPDATE audit_log SET outcome = 'failure' WHERE id = "
	        "(SELECT max(id) FROM audit_log)"));
	rep = verify();
	assert_false(json_is_true(json_object_get(rep, "ok")));
	fb = json_object_get(rep, "first_bad");
	assert_string_equal(
	    json_string_value(json_object_get(fb, "problem")), "altered");
	json_decref(rep);
	free(q1("UPDATE audit_log SET outcome = 'success' WHERE id = "
	        "(SELECT max(id) FROM audit_log)"));
	rep = verify();
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	free(id);
}

static long
backend_pid(struct hv_conn *c)
{
	struct hv_err err = {0};
	PGresult *r = NULL;
	long pid;

	hv_test_must(
	    hv_store_exec(c, "thp_pid", 0, NULL, NULL, NULL, false, &r, &err),
	    &err, "pid");
	pid = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return pid;
}

static void
terminate(long pid)
{
	char sql[96];
	int i;

	(void)snprintf(
	    sql, sizeof(sql), "SELECT pg_terminate_backend(%ld)", pid);
	free(q1(sql));
	/* wait until it is gone */
	for (i = 0; i < 100; i++) {
		(void)snprintf(sql, sizeof(sql),
		    "SELECT count(*) FROM "
		    "pg_stat_activity WHERE pid = %ld",
		    pid);
		if (qlong(sql) == 0)
			return;
		hv_test_sh("sleep 0.02");
	}
}

static void
test_store_begin_and_once(void **state)
{
	struct hv_store *s = hv_vault_store(E.v);
	struct hv_conn *c = NULL;
	struct hv_err err = {0};
	const char *bad[1] = {"not-a-uuid"},
	           *good[1] = {"00000000-0000-4000-8000-000000000001"};
	PGresult *r = NULL;
	long pid;

	(void)state;
	hv_test_must(hv_store_acquire(s, &c, &err), &err, "acquire");
	/* an empty transaction never reaches the server */
	hv_test_must(hv_store_begin(c, &err), &err, "begin");
	hv_test_must(hv_store_commit(c, &err), &err, "commit");
	/* the first statement (sent with BEGIN) fails: the transaction too */
	hv_test_must(hv_store_begin(c, &err), &err, "begin");
	assert_int_equal(
	    hv_store_exec(c, "thp_uuid", 1, bad, NULL, NULL, false, NULL, &err),
	    HV_E_INVALID);
	assert_int_not_equal(hv_store_commit(c, &err), HV_OK);
	/* and the connection is fine afterwards, in and out of transactions */
	hv_test_must(hv_store_begin(c, &err), &err, "begin");
	hv_test_must(
	    hv_store_exec(c, "thp_uuid", 1, good, NULL, NULL, false, &r, &err),
	    &err, "uuid");
	assert_string_equal(PQgetvalue(r, 0, 0), good[0]);
	PQclear(r);
	hv_test_must(hv_store_commit(c, &err), &err, "commit");

	/* killed while held: exec retries on a fresh connection ... */
	pid = backend_pid(c);
	terminate(pid);
	hv_test_must(hv_store_exec(
	                 c, "thp_uuid", 1, good, NULL, NULL, false, NULL, &err),
	    &err, "retried");
	assert_int_not_equal(backend_pid(c), pid);
	/* ... exec_once does not (its write may have committed) */
	terminate(backend_pid(c));
	assert_int_equal(hv_store_exec_once(c, "thp_uuid", 1, good, NULL, NULL,
	                     false, NULL, &err),
	    HV_E_DATABASE);
	hv_store_release(s, &c);
	/* the pool heals on the next acquire */
	hv_test_must(hv_store_acquire(s, &c, &err), &err, "acquire");
	(void)backend_pid(c);
	hv_store_release(s, &c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dek_cache_reveal),
	    cmocka_unit_test(test_dek_cache_other_instance),
	    cmocka_unit_test(test_dek_cache_rewrap_and_tamper),
	    cmocka_unit_test(test_dek_cache_size_zero),
	    cmocka_unit_test(test_audit_fast_and_fallback),
	    cmocka_unit_test(test_audit_fast_path_tamper),
	    cmocka_unit_test(test_store_begin_and_once),
	};

	if (getenv("HV_TEST_PG_URL") == NULL)
		hv_test_missing("HV_TEST_PG_URL (PostgreSQL)");
	return cmocka_run_group_tests(tests, setup, teardown);
}
