/*
 * test_pgdump: a database dump alone holds no secret. Every secret value
 * and every API key the test used must be absent from `pg_dump` output,
 * as text and as the hex form bytea columns are dumped in; the test also
 * checks that the dump is real (it holds the credential names).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testenv.h"
#include "vault_int.h"

static struct hv_test_token tok;
static struct hv_test_db db;
static struct hv_cfg cfg;
static struct hv_vault *v;

#define MAX_NEEDLES 64
static char *needles[MAX_NEEDLES];
static size_t nneedles;

static void
remember(const char *s)
{
	assert_true(nneedles < MAX_NEEDLES);
	needles[nneedles] = strdup(s);
	assert_non_null(needles[nneedles]);
	nneedles++;
}

static int
setup(void **state)
{
	(void)state;
	if (getenv("HV_TEST_PG_URL") == NULL)
		hv_test_missing("HV_TEST_PG_URL (PostgreSQL) not set");
	hv_mem_json_init();
	hv_test_token_new(&tok, "hvdump");
	hv_test_db_new(&db, "dump");
	hv_cfg_init(&cfg);
	hv_test_cfg(&cfg, &tok, &db);
	return hv_test_vault_up(&cfg, &v);
}

static int
teardown(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < nneedles; i++)
		free(needles[i]);
	hv_vault_close(&v);
	hv_cfg_release(&cfg);
	hv_test_db_drop(&db);
	hv_test_token_destroy(&tok);
	return 0;
}

static void
make_cred(const struct hv_principal *p, const char *name, const char *auth,
    json_t *secret, char id[HV_UUID_STR])
{
	struct hv_err err = {0};
	json_t *body, *out = NULL;

	body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "service", "http", "name",
	    name, "auth_type", auth, "scope", "workspace", "base_url",
	    "https://api.example.com", "secret", secret);
	if (hv_vault_cred_create(v, p, NULL, body, &out, &err) != HV_OK)
		fail_msg("create %s: %s", name, err.msg);
	json_decref(body);
	snprintf(id, HV_UUID_STR, "%s",
	    json_string_value(json_object_get(out, "id")));
	json_decref(out);
}

/* Needle as it would look hex-encoded (bytea dump format, lowercase). */
static void
hexify(const char *s, char *out, size_t cap)
{
	size_t i, n = strlen(s);

	assert_true(2 * n + 1 <= cap);
	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", (unsigned char)s[i]);
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf;

	assert_non_null(f);
	assert_int_equal(fstat(fileno(f), &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	*len = fread(buf, 1, (size_t)st.st_size, f);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

static void
test_dump_holds_no_secret(void **state)
{
	struct hv_principal adm, p;
	struct hv_err err = {0};
	json_t *body, *out = NULL, *sec = NULL;
	char id[HV_UUID_STR], path[512], hdr[200], hex[512];
	const char *bindir = getenv("HV_TEST_PG_BINDIR");
	char *dump;
	size_t dlen, i;
	int k;

	(void)state;
	if (bindir == NULL)
		bindir = "/usr/lib/postgresql/15/bin";
	assert_int_equal(hv_principal_cli(v, NULL, &adm, &err), HV_OK);

	/* one credential per auth type, each secret field distinctive */
	remember("sk_live_DUMPTEST_apikey_4f1c9a");
	make_cred(&adm, "dump-api-key", "api_key",
	    json_pack("{s:s}", "key", "sk_live_DUMPTEST_apikey_4f1c9a"), id);
	remember("DUMPTEST_bearer_token_77ab");
	make_cred(&adm, "dump-bearer", "bearer",
	    json_pack("{s:s}", "token", "DUMPTEST_bearer_token_77ab"), id);
	/* rotate it: the new version's secret is just as absent */
	remember("DUMPTEST_bearer_rotated_88cd");
	body = json_pack(
	    "{s:{s:s}}", "secret", "token", "DUMPTEST_bearer_rotated_88cd");
	if (hv_vault_cred_rotate(v, &adm, NULL, id, body, -1, &out, &err) !=
	    HV_OK)
		fail_msg("rotate: %s", err.msg);
	json_decref(body);
	json_decref(out);
	out = NULL;
	remember("DUMPTEST_basic_password_19");
	make_cred(&adm, "dump-basic", "basic",
	    json_pack("{s:s,s:s}", "username", "dumpuser", "password",
	        "DUMPTEST_basic_password_19"),
	    id);
	remember("DUMPTEST_oauth_access_5e");
	remember("DUMPTEST_oauth_refresh_6f");
	remember("DUMPTEST_oauth_client_secret_70");
	make_cred(&adm, "dump-oauth", "oauth2",
	    json_pack("{s:s,s:s,s:s,s:s}", "access_token",
	        "DUMPTEST_oauth_access_5e", "refresh_token",
	        "DUMPTEST_oauth_refresh_6f", "client_id", "client-1",
	        "client_secret", "DUMPTEST_oauth_client_secret_70"),
	    id);
	remember("DUMPTEST_header_value_a1");
	make_cred(&adm, "dump-headers", "custom_headers",
	    json_pack("{s:{s:s}}", "headers", "X-Api-Token",
	        "DUMPTEST_header_value_a1"),
	    id);
	/* reveal one: decryption really works */
	assert_int_equal(
	    hv_vault_cred_reveal(v, &adm, NULL, id, &sec, &err), HV_OK);
	json_decref(sec);

	/* API keys, used (cached, last_used flushed) and one revoked */
	for (k = 0; k < 3; k++) {
		char name[32];

		snprintf(name, sizeof(name), "dump-key-%d", k);
		body = json_pack(
		    "{s:s,s:[s]}", "name", name, "scopes", "credentials:read");
		assert_int_equal(
		    hv_vault_apikey_create(v, NULL, NULL, body, &out, &err),
		    HV_OK);
		json_decref(body);
		remember(json_string_value(json_object_get(out, "key")));
		/* the random part alone must not appear either */
		remember(json_string_value(json_object_get(out, "key")) + 6);
		snprintf(hdr, sizeof(hdr), "Bearer %s",
		    json_string_value(json_object_get(out, "key")));
		assert_int_equal(
		    hv_vault_authenticate(v, hdr, NULL, &p, &err), HV_OK);
		hv_principal_release(&p);
		if (k == 2)
			assert_int_equal(
			    hv_vault_apikey_revoke(v, &adm, NULL,
			        json_string_value(json_object_get(out, "id")),
			        &err),
			    HV_OK);
		json_decref(out);
		out = NULL;
	}
	remember(HV_TEST_PIN);
	usleep(1300 * 1000); /* let last_used_at be written */

	snprintf(path, sizeof(path), "%s/dump.sql", tok.dir);
	assert_int_equal(hv_test_sh("'%s/pg_dump' --no-owner -d '%s' -f '%s'",
	                     bindir, db.url, path),
	    0);
	dump = read_file(path, &dlen);
	assert_true(dlen > 1000);
	/* the dump is real: metadata is there, ciphertext is there */
	assert_non_null(strstr(dump, "dump-oauth"));
	assert_non_null(strstr(dump, "credential_versions"));
	assert_non_null(strstr(dump, "dump-key-1"));
	for (i = 0; i < nneedles; i++) {
		if (memmem(dump, dlen, needles[i], strlen(needles[i])) != NULL)
			fail_msg("secret #%zu found in the dump", i);
		hexify(needles[i], hex, sizeof(hex));
		if (memmem(dump, dlen, hex, strlen(hex)) != NULL)
			fail_msg(
			    "secret #%zu found hex-encoded in the dump", i);
	}
	free(dump);
	unlink(path);
	hv_principal_release(&adm);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dump_holds_no_secret),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
