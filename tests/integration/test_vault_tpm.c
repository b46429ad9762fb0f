/*
 * The whole server on the TPM key store (issue: "a server with
 * HSMVAULT_KEYSTORE=tpm stores, reveals after a restart, rotates and
 * rewraps, with no plaintext in pg_dump"): a real swtpm, a real PostgreSQL,
 * the real HTTP server in process, driven over HTTP.
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
#include <unistd.h>

#include "cfg.h"
#include "http.h"
#include "httpc.h"
#include "mem.h"
#include "swtpm.h"
#include "testenv.h"
#include "vault.h"

#define NCRED 12

static struct {
	struct hv_swtpm tpm;
	struct hv_test_db db;
	struct hv_cfg cfg;
	char data[320];
	struct hv_vault *v;
	struct hv_http *http;
	struct hv_httpc c;
	char key[128];
	char ids[NCRED][HV_UUID_STR];
	char secrets[NCRED][64];
} E;

static void
server_up(void)
{
	struct hv_err err = {0};
	char base[64];

	if (hv_vault_open(&E.cfg, false, &E.v, &err) != HV_OK ||
	    hv_http_start(&E.cfg, E.v, &E.http, &err) != HV_OK)
		fail_msg("server start: %s", err.msg);
	snprintf(base, sizeof(base), "http://127.0.0.1:%u",
	    (unsigned int)hv_http_port(E.http));
	hv_httpc_init(&E.c, base);
}

static void
server_down(void)
{
	hv_httpc_release(&E.c);
	hv_http_stop(&E.http);
	hv_vault_close(&E.v);
}

static void
reveal_all(void)
{
	struct hv_httpc_resp r;
	char path[128];
	int i;

	for (i = 0; i < NCRED; i++) {
		snprintf(
		    path, sizeof(path), "/v1/credentials/%s/secret", E.ids[i]);
		assert_int_equal(
		    hv_httpc_json(&E.c, "GET", path, E.key, NULL, &r), 200);
		assert_string_equal(
		    json_string_value(json_object_get(
		        json_object_get(r.json, "secret"), "token")),
		    E.secrets[i]);
		hv_httpc_resp_free(&r);
	}
}

static long
sql_long(const char *q)
{
	PGconn *pg = PQconnectdb(E.db.url);
	PGresult *r;
	long n;

	assert_int_equal(PQstatus(pg), CONNECTION_OK);
	r = PQexec(pg, q);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(pg);
	return n;
}

static void
test_tpm_server(void **state)
{
	struct hv_httpc_resp r;
	struct hv_err err = {0};
	json_t *body, *out = NULL, *rep = NULL;
	char path[128], dump[512], out_buf[64];
	long remaining = 1;
	int i, guard;

	(void)state;
	assert_int_equal(hv_vault_init(&E.cfg, &rep, &err), HV_OK);
	json_decref(rep);
	server_up();
	body =
	    json_pack("{s:s, s:[s]}", "name", "tpm-admin", "scopes", "admin");
	assert_int_equal(
	    hv_vault_apikey_create(E.v, NULL, NULL, body, &out, &err), HV_OK);
	snprintf(E.key, sizeof(E.key), "%s",
	    json_string_value(json_object_get(out, "key")));
	json_decref(out);
	json_decref(body);

	/* store */
	for (i = 0; i < NCRED; i++) {
		snprintf(E.secrets[i], sizeof(E.secrets[i]),
		    "tpm-secret-%02d-%08x", i, (unsigned int)rand());
		body = json_pack("{s:s, s:s, s:s, s:{s:s}}", "service",
		    "github", "name", "tpm credential", "auth_type", "bearer",
		    "secret", "token", E.secrets[i]);
		assert_int_equal(hv_httpc_json(&E.c, "POST", "/v1/credentials",
		                     E.key, body, &r),
		    201);
		snprintf(E.ids[i], sizeof(E.ids[i]), "%s",
		    json_string_value(json_object_get(r.json, "id")));
		hv_httpc_resp_free(&r);
		json_decref(body);
	}
	reveal_all();

	/* restart the server and the TPM itself: everything still reveals */
	server_down();
	assert_int_equal(hv_swtpm_restart(&E.tpm), 0);
	server_up();
	reveal_all();

	/* rotate the KEK, rewrap until done, every secret still reveals */
	assert_int_equal(hv_httpc_json(&E.c, "POST", "/v1/admin/kek/rotate",
	                     E.key, NULL, &r),
	    200);
	hv_httpc_resp_free(&r);
	for (guard = 0; remaining > 0 && guard < 100; guard++) {
		assert_int_equal(hv_httpc_json(&E.c, "POST", "/v1/admin/rewrap",
		                     E.key, NULL, &r),
		    200);
		remaining = (long)json_integer_value(
		    json_object_get(r.json, "remaining"));
		hv_httpc_resp_free(&r);
	}
	assert_int_equal(remaining, 0);
	assert_int_equal(sql_long("SELECT count(*) FROM credential_versions "
	                          "WHERE kek_version = 1"),
	    0);
	reveal_all();

	/* rotate one credential's secret: version 2 reveals the new one */
	snprintf(E.secrets[0], sizeof(E.secrets[0]), "tpm-rotated-%08x",
	    (unsigned int)rand());
	body = json_pack("{s:{s:s}}", "secret", "token", E.secrets[0]);
	snprintf(path, sizeof(path), "/v1/credentials/%s/rotate", E.ids[0]);
	assert_int_equal(
	    hv_httpc_json(&E.c, "POST", path, E.key, body, &r), 200);
	assert_int_equal(
	    json_integer_value(json_object_get(r.json, "version")), 2);
	hv_httpc_resp_free(&r);
	json_decref(body);
	reveal_all();

	/* the audit chain (HMAC in the TPM) verifies */
	assert_int_equal(hv_vault_audit_verify(E.v, &rep, &err), HV_OK);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	server_down();

	/* no plaintext and no API key in a dump */
	snprintf(dump, sizeof(dump), "%s/dump.sql", E.data);
	assert_int_equal(
	    hv_test_sh("'%s/pg_dump' '%s' > '%s'",
	        getenv("HV_TEST_PG_BINDIR") ? getenv("HV_TEST_PG_BINDIR")
	                                    : "/usr/lib/postgresql/15/bin",
	        E.db.url, dump),
	    0);
	for (i = 0; i < NCRED; i++)
		assert_int_not_equal(
		    hv_test_sh_out(out_buf, sizeof(out_buf),
		        "grep -c '%s' '%s'", E.secrets[i], dump),
		    0);
	assert_int_not_equal(hv_test_sh_out(out_buf, sizeof(out_buf),
	                         "grep -c '%s' '%s'", E.key + 6, dump),
	    0);
	/* and the dump does hold the ciphertext rows */
	assert_int_equal(hv_test_sh_out(out_buf, sizeof(out_buf),
	                     "grep -c credential_versions '%s'", dump),
	    0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tpm_server),
	};
	struct hv_err err = {0};
	int rc;

	hv_mem_json_init();
	srand((unsigned int)getpid());
	hv_test_db_new(&E.db, "tpmsrv");
	hv_swtpm_start(&E.tpm);
	snprintf(E.data, sizeof(E.data), "%s/data", E.tpm.dir);
	(void)hv_test_sh("mkdir -p '%s'", E.data);
	hv_cfg_init(&E.cfg);
	if (hv_cfg_set(&E.cfg, "database_url", E.db.url, &err) != HV_OK ||
	    hv_cfg_set(&E.cfg, "keystore", "tpm", &err) != HV_OK ||
	    hv_cfg_set(&E.cfg, "tpm_tcti", E.tpm.tcti, &err) != HV_OK ||
	    hv_cfg_set(&E.cfg, "data", E.data, &err) != HV_OK ||
	    hv_cfg_set(&E.cfg, "listen", "127.0.0.1:0", &err) != HV_OK) {
		fprintf(stderr, "cfg: %s\n", err.msg);
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	hv_cfg_release(&E.cfg);
	hv_swtpm_destroy(&E.tpm);
	hv_test_db_drop(&E.db);
	return rc;
}
