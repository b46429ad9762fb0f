/*
 * Allocation-failure torture: every vault operation is run with its n-th
 * allocation failing (hv_mem's fault hook, which also serves jansson), for
 * n = 1, 2, ... until the operation succeeds. Each failed run must return a
 * clean error (no crash, no leak under ASan) and leave the database as it
 * was; the final run must succeed. Real PostgreSQL and SoftHSM2.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "mem.h"
#include "provider.h"
#include "stubprov.h"
#include "testenv.h"
#include "vault.h"

#define MAX_TRIES 4000

static struct {
	struct hv_test_token tok;
	struct hv_test_db db;
	struct hv_cfg cfg;
	struct hv_vault *v;
	struct hv_principal cli;
	PGconn *pg;
	struct hv_stubprov *prov; /* the stand-in provider of op_use */
	char cred_id[HV_UUID_STR];
	char api_key[128];
} E;

static long
count(const char *table)
{
	char q[128];
	PGresult *r;
	long n;

	/* test-only: table names are literals of this file */
	snprintf(q, sizeof(q), "SELECT count(*) FROM %s", table);
	r = PQexec(E.pg, q);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return n;
}

struct snap {
	long creds, versions, keys, audit;
};

static void
snapshot(struct snap *s)
{
	s->creds = count("credentials");
	s->versions = count("credential_versions");
	s->keys = count("api_keys");
	s->audit = count("audit_log");
}

typedef enum hv_rc (*op_fn)(json_t **out, struct hv_err *err);

/*
 * Run op with allocation n failing, for growing n, until it succeeds.
 * mutating: on failure nothing may have changed (audit rows included).
 */
static void
torture(const char *name, op_fn op, bool mutating, bool hooked)
{
	struct snap before, after;
	struct hv_err err;
	json_t *out;
	enum hv_rc rc = HV_E_NOMEM;
	long n, failures = 0;

	for (n = 1; n <= MAX_TRIES; n++) {
		snapshot(&before);
		memset(&err, 0, sizeof(err));
		out = NULL;
		hv_mem_fail_after(n);
		rc = op(&out, &err);
		hv_mem_fail_after(0);
		if (rc == HV_OK) {
			json_decref(out);
			break;
		}
		failures++;
		assert_null(out);
		/* a clean error: one of ours, with a message */
		assert_true(rc > HV_OK && rc <= HV_E_EXPIRED);
		if (mutating) {
			snapshot(&after);
			assert_int_equal(before.creds, after.creds);
			assert_int_equal(before.versions, after.versions);
			assert_int_equal(before.keys, after.keys);
			/* a failed op may audit its own failure, nothing else */
			assert_true(after.audit - before.audit <= 1);
		}
	}
	fprintf(stderr, "torture %s: %ld failing runs, then success\n", name,
	    failures);
	assert_int_equal(rc, HV_OK);
	/* the hook reached this path (authenticate allocates nothing we hook) */
	if (hooked)
		assert_true(failures > 0);
}

static struct hv_reqctx ctx = {"torture", "127.0.0.1"};

static enum hv_rc
op_create(json_t **out, struct hv_err *err)
{
	json_t *body = json_pack("{s:s, s:s, s:s, s:{s:s}, s:s}", "service",
	    "github", "name", "tortured", "auth_type", "bearer", "secret",
	    "token", "ghp_torture_secret_0123456789", "notes", "n");
	enum hv_rc rc;

	if (body == NULL)
		return hv_err_set(err, HV_E_NOMEM, "pack");
	rc = hv_vault_cred_create(E.v, &E.cli, &ctx, body, out, err);
	json_decref(body);
	if (rc == HV_OK)
		snprintf(E.cred_id, sizeof(E.cred_id), "%s",
		    json_string_value(json_object_get(*out, "id")));
	return rc;
}

static enum hv_rc
op_get(json_t **out, struct hv_err *err)
{
	return hv_vault_cred_get(E.v, &E.cli, &ctx, E.cred_id, out, err);
}

static enum hv_rc
op_list(json_t **out, struct hv_err *err)
{
	struct hv_list_query q = {.q = "tort", .limit = 10};

	return hv_vault_cred_list(E.v, &E.cli, &ctx, &q, out, err);
}

static enum hv_rc
op_reveal(json_t **out, struct hv_err *err)
{
	return hv_vault_cred_reveal(E.v, &E.cli, &ctx, E.cred_id, out, err);
}

static enum hv_rc
op_rotate(json_t **out, struct hv_err *err)
{
	json_t *body = json_pack(
	    "{s:{s:s}}", "secret", "token", "ghp_rotated_secret_9876543210");
	enum hv_rc rc;

	if (body == NULL)
		return hv_err_set(err, HV_E_NOMEM, "pack");
	rc = hv_vault_cred_rotate(
	    E.v, &E.cli, &ctx, E.cred_id, body, -1, out, err);
	json_decref(body);
	return rc;
}

static enum hv_rc
op_apikey(json_t **out, struct hv_err *err)
{
	json_t *body = json_pack(
	    "{s:s, s:[s]}", "name", "tortured", "scopes", "credentials:read");
	enum hv_rc rc;

	if (body == NULL)
		return hv_err_set(err, HV_E_NOMEM, "pack");
	rc = hv_vault_apikey_create(E.v, &E.cli, &ctx, body, out, err);
	json_decref(body);
	if (rc == HV_OK)
		snprintf(E.api_key, sizeof(E.api_key), "%s",
		    json_string_value(json_object_get(*out, "key")));
	return rc;
}

static enum hv_rc
op_auth(json_t **out, struct hv_err *err)
{
	struct hv_principal p = {0};
	char hdr[160];
	enum hv_rc rc;

	snprintf(hdr, sizeof(hdr), "Bearer %s", E.api_key);
	rc = hv_vault_authenticate(E.v, hdr, &ctx, &p, err);
	if (rc == HV_OK) {
		*out = json_string(p.key_id);
		hv_principal_release(&p);
		if (*out == NULL)
			return HV_E_NOMEM;
	}
	return rc;
}

/* A use through the stand-in provider: the answer is built after the call. */
static enum hv_rc
op_use(json_t **out, struct hv_err *err)
{
	json_t *body = json_pack("{s:s, s:s, s:{s:s}}", "method", "POST",
	    "path", "/echo/tortured", "headers", "X-Test", "torture");
	enum hv_rc rc;

	if (body == NULL)
		return hv_err_set(err, HV_E_NOMEM, "pack");
	rc = hv_provider_use(E.v, &E.cli, &ctx, E.cred_id, body, out, err);
	json_decref(body);
	return rc;
}

static enum hv_rc
op_delete(json_t **out, struct hv_err *err)
{
	enum hv_rc rc = hv_vault_cred_delete(E.v, &E.cli, &ctx, E.cred_id, err);

	if (rc == HV_OK)
		*out = json_true();
	return rc;
}

static void
test_torture(void **state)
{
	(void)state;
	torture("create", op_create, true, true);
	torture("get", op_get, false, true);
	torture("list", op_list, false, true);
	torture("reveal", op_reveal, true, true);
	torture("rotate", op_rotate, true, true);
	torture("apikey create", op_apikey, true, true);
	torture("authenticate", op_auth, false, false);
	torture("use", op_use, true, true);
	assert_true(hv_stubprov_count(E.prov) > 0);
	torture("delete", op_delete, true, true);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_torture),
	};
	struct hv_err err = {0};
	json_t *report = NULL;
	int rc;

	hv_mem_json_init();
	hv_test_db_new(&E.db, "torture");
	hv_test_token_new(&E.tok, "torture");
	hv_cfg_init(&E.cfg);
	hv_test_cfg(&E.cfg, &E.tok, &E.db);
	E.prov = hv_stubprov_start();
	E.cfg.allow_private_targets = true;
	if (hv_cfg_set(&E.cfg, "service_github_base_url",
	        hv_stubprov_url(E.prov), &err) != HV_OK) {
		fprintf(stderr, "setup: %s\n", err.msg);
		return 1;
	}
	if (hv_vault_init(&E.cfg, &report, &err) != HV_OK ||
	    hv_vault_open(&E.cfg, false, &E.v, &err) != HV_OK ||
	    hv_principal_cli(E.v, NULL, &E.cli, &err) != HV_OK) {
		fprintf(stderr, "setup: %s\n", err.msg);
		return 1;
	}
	json_decref(report);
	E.pg = PQconnectdb(E.db.url);
	if (PQstatus(E.pg) != CONNECTION_OK)
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	PQfinish(E.pg);
	hv_principal_release(&E.cli);
	hv_vault_close(&E.v);
	hv_cfg_release(&E.cfg);
	hv_test_db_drop(&E.db);
	hv_test_token_destroy(&E.tok);
	hv_stubprov_stop(&E.prov);
	return rc;
}
