/*
 * testenv: real PostgreSQL databases and SoftHSM2 tokens for tests.
 */
#include "testenv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vault.h"

void
hv_test_missing(const char *what)
{
	const char *req = getenv("HV_REQUIRE_INTEGRATION");

	if (req != NULL && strcmp(req, "1") == 0) {
		fprintf(stderr, "FAIL: required test component missing: %s\n",
		    what);
		exit(1);
	}
	fprintf(stderr, "SKIP: %s\n", what);
	exit(77);
}

static int
vsh(char *out, size_t cap, const char *fmt, va_list ap)
{
	char cmd[4096];
	FILE *p;
	size_t n = 0;
	int st;

	if (vsnprintf(cmd, sizeof(cmd), fmt, ap) >= (int)sizeof(cmd))
		return -1;
	if (out == NULL) {
		st = system(cmd);
	} else {
		p = popen(cmd, "r");
		if (p == NULL)
			return -1;
		while (n + 1 < cap) {
			size_t r = fread(out + n, 1, cap - 1 - n, p);
			if (r == 0)
				break;
			n += r;
		}
		out[n] = '\0';
		st = pclose(p);
	}
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

int
hv_test_sh(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vsh(NULL, 0, fmt, ap);
	va_end(ap);
	return rc;
}

int
hv_test_sh_out(char *out, size_t cap, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vsh(out, cap, fmt, ap);
	va_end(ap);
	return rc;
}

void
hv_test_token_new(struct hv_test_token *t, const char *label)
{
	FILE *f;
	const char *tmp = getenv("TMPDIR");

	if (access(HV_TEST_SOFTHSM_MODULE, R_OK) != 0)
		hv_test_missing("softhsm2 module " HV_TEST_SOFTHSM_MODULE);
	memset(t, 0, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "%s/hvtok.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(t->dir) == NULL) {
		fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
		exit(1);
	}
	snprintf(t->conf, sizeof(t->conf), "%s/softhsm2.conf", t->dir);
	snprintf(t->label, sizeof(t->label), "%.32s", label);
	snprintf(t->uri, sizeof(t->uri), "pkcs11:token=%s", t->label);
	if (hv_test_sh("mkdir -p '%s/tokens'", t->dir) != 0)
		exit(1);
	f = fopen(t->conf, "w");
	if (f == NULL)
		exit(1);
	fprintf(f,
	    "directories.tokendir = %s/tokens\n"
	    "objectstore.backend = file\nlog.level = ERROR\n",
	    t->dir);
	fclose(f);
	setenv("SOFTHSM2_CONF", t->conf, 1);
	if (hv_test_sh("softhsm2-util --init-token --free --label '%s' "
	               "--pin %s --so-pin %s >/dev/null",
	        t->label, HV_TEST_PIN, HV_TEST_SO_PIN) != 0)
		hv_test_missing("softhsm2-util --init-token");
}

void
hv_test_token_destroy(struct hv_test_token *t)
{
	if (t->dir[0] != '\0' && strncmp(t->dir, "/", 1) == 0 &&
	    strstr(t->dir, "hvtok.") != NULL)
		(void)hv_test_sh("rm -rf '%s'", t->dir);
	t->dir[0] = '\0';
}

static PGconn *
admin_conn(void)
{
	const char *url = getenv("HV_TEST_PG_URL");
	PGconn *c;

	if (url == NULL || url[0] == '\0')
		hv_test_missing("HV_TEST_PG_URL (PostgreSQL) not set");
	c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "connect %s: %s", url, PQerrorMessage(c));
		PQfinish(c);
		hv_test_missing("PostgreSQL not reachable");
	}
	return c;
}

void
hv_test_db_new(struct hv_test_db *d, const char *prefix)
{
	char sql[200];
	PGconn *c = admin_conn();
	PGresult *r;
	unsigned int rnd;
	const char *url = getenv("HV_TEST_PG_URL");

	memset(d, 0, sizeof(*d));
	rnd = (unsigned int)getpid() ^ (unsigned int)time(NULL) ^
	    (unsigned int)clock();
	snprintf(d->name, sizeof(d->name), "hvt_%.20s_%u_%x", prefix,
	    (unsigned int)getpid(), rnd & 0xffffu);
	for (char *p = d->name; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			*p = '_';
	/* test-only: the name is made here of [a-z0-9_], not from input */
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", d->name);
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
		exit(1);
	}
	PQclear(r);
	PQfinish(c);
	snprintf(d->url, sizeof(d->url), "%s dbname=%s", url, d->name);
}

void
hv_test_db_drop(struct hv_test_db *d)
{
	char sql[200];
	PGconn *c;
	PGresult *r;

	if (d->name[0] == '\0')
		return;
	if (getenv("HV_TEST_KEEP_DB") != NULL)
		return;
	c = admin_conn();
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
	    d->name);
	r = PQexec(c, sql);
	PQclear(r);
	PQfinish(c);
	d->name[0] = '\0';
}

void
hv_test_cfg(struct hv_cfg *cfg, const struct hv_test_token *t,
    const struct hv_test_db *d)
{
	struct hv_err err = {0};

	if (d != NULL && hv_cfg_set(cfg, "database_url", d->url, &err) != HV_OK)
		exit(1);
	if (t != NULL) {
		char data[300];

		if (hv_cfg_set(cfg, "keystore", "pkcs11", &err) != HV_OK ||
		    hv_cfg_set(cfg, "pkcs11_module", HV_TEST_SOFTHSM_MODULE,
		        &err) != HV_OK ||
		    hv_cfg_set(cfg, "pkcs11_token", t->uri, &err) != HV_OK)
			exit(1);
		snprintf(data, sizeof(data), "%s/data", t->dir);
		(void)hv_test_sh("mkdir -p '%s'", data);
		if (hv_cfg_set(cfg, "data", data, &err) != HV_OK)
			exit(1);
		hv_secret_free(&cfg->pin);
		cfg->pin = hv_secret_from(HV_TEST_PIN, sizeof(HV_TEST_PIN));
		if (cfg->pin == NULL)
			exit(1);
		cfg->pin->len = sizeof(HV_TEST_PIN) - 1; /* NUL kept after */
	}
}

const char *
hv_test_bin(void)
{
	static char path[512];
	const char *b = getenv("HV_BUILD_DIR");

	snprintf(path, sizeof(path), "%s/hsmvault", b != NULL ? b : ".");
	return path;
}

int
hv_test_vault_up(const struct hv_cfg *cfg, struct hv_vault **v)
{
	struct hv_err err = {0};
	json_t *report = NULL;

	if (hv_vault_init(cfg, &report, &err) != HV_OK) {
		fprintf(stderr, "init: %s\n", err.msg);
		return -1;
	}
	json_decref(report);
	if (hv_vault_open(cfg, false, v, &err) != HV_OK) {
		fprintf(stderr, "open: %s\n", err.msg);
		return -1;
	}
	return 0;
}

void
hv_test_pg_exec(PGconn *pg, const char *sql)
{
	PGresult *r = PQexec(pg, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(pg));
	PQclear(r);
}

char *
hv_test_pg_text(PGconn *pg, const char *sql, const char *param)
{
	const char *params[1] = {param};
	PGresult *r = PQexecParams(
	    pg, sql, param != NULL ? 1 : 0, NULL, params, NULL, NULL, 0);
	char *out = NULL;

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(pg));
	if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		out = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return out;
}

long
hv_test_pg_long(PGconn *pg, const char *sql, const char *param)
{
	char *s = hv_test_pg_text(pg, sql, param);
	long n = s != NULL ? strtol(s, NULL, 10) : -1;

	free(s);
	return n;
}

char *
hv_test_pg_workspace(PGconn *pg, const char *name)
{
	char *id = hv_test_pg_text(pg,
	    "INSERT INTO workspaces (id, name) "
	    "VALUES (gen_random_uuid(), $1) RETURNING id::text",
	    name);

	if (id == NULL)
		fail_msg("workspace %s: no id", name);
	return id;
}
