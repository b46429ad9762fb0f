/*
 * The credential search (GET /v1/credentials?q=, statement cred_list) and
 * its trigram indexes (sql/0002-search-index.sql) against a real
 * PostgreSQL and a real SoftHSM2 token:
 *
 * - answers: a case-insensitive plain substring of name, service or notes;
 *   %, _, \ and quotes in q are ordinary characters; every answer equals
 *   what the former predicate, strpos(lower(col), lower(q)) > 0, selects,
 *   on a few rows (sequential scan) and on 10,000 (the indexes);
 * - the plan: a search of 3+ characters is a BitmapOr of the three
 *   trigram indexes, and the prepared statement stays on custom plans, so
 *   that is what the server runs;
 * - the migration: applies on a database that already holds rows, runs
 *   twice without change, and succeeds without indexes when the migrating
 *   role may not create pg_trgm (or not use the schema it lives in).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "mem.h"
#include "store.h"
#include "testenv.h"
#include "uuid.h"
#include "vault.h"

#define ALL_CRED                                                               \
	(HV_SCOPE_CRED_READ | HV_SCOPE_CRED_WRITE | HV_SCOPE_CRED_USE |        \
	    HV_SCOPE_CRED_REVEAL)
#define BULK_ROWS 10000 /* the benchmark's size */
#define MAX_IDS   (BULK_ROWS + 16)

static const char *const trgm_indexes[] = {"credentials_name_trgm",
    "credentials_service_trgm", "credentials_notes_trgm"};

struct env {
	struct hv_test_token tok;
	struct hv_test_db db;
	struct hv_cfg cfg;
	struct hv_vault *v;
	PGconn *pg;
	char ws_small[HV_UUID_STR]; /* a few rows made through the vault */
	char ws_bulk[HV_UUID_STR];  /* BULK_ROWS rows inserted by SQL */
	/* test_migration_without_privilege; teardown drops what a failure left */
	struct hv_test_db priv_db;
	char role[64];
};

static struct env E;
static const struct hv_reqctx CTX = {"req-search", "127.0.0.1"};

/* ------------------------------------------------------------------ */

static void
make_principal(struct hv_principal *p, const char *ws)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(hv_uuid_new(p->key_id), HV_OK);
	(void)snprintf(p->name, sizeof(p->name), "%s", "searcher");
	(void)snprintf(p->workspace_id, sizeof(p->workspace_id), "%s", ws);
	p->scopes = ALL_CRED;
	p->all_credentials = true;
}

/* Test-only SQL with up to 3 text parameters; the result is the caller's. */
static PGresult *
sqlp(PGconn *pg, ExecStatusType want, const char *sql, int n, const char *p1,
    const char *p2, const char *p3)
{
	const char *params[3] = {p1, p2, p3};
	PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) != want)
		fail_msg("%s: %s", sql, PQerrorMessage(pg));
	return r;
}

/* How many of the three trigram indexes exist on the database of pg. */
static long
trgm_index_count(PGconn *pg)
{
	return hv_test_pg_long(pg,
	    "SELECT count(*) FROM pg_indexes WHERE tablename = 'credentials' "
	    "AND indexname IN ('credentials_name_trgm', "
	    "'credentials_service_trgm', 'credentials_notes_trgm') "
	    "AND indexdef LIKE '%USING gin (lower(%gin_trgm_ops)'",
	    NULL);
}

struct ids {
	char *v[MAX_IDS];
	size_t n;
};

static void
ids_clear(struct ids *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->v[i]);
	s->n = 0;
}

/* Every id the vault lists for q, all pages, in list order. */
static void
vault_search(const struct hv_principal *p, const char *q, struct ids *out)
{
	struct hv_list_query lq = {0};
	struct hv_err err = {0};
	char cur[256];
	unsigned int pages = 0;

	lq.q = q;
	lq.limit = 200;
	out->n = 0;
	for (;;) {
		json_t *l = NULL, *items;
		const json_t *next;
		size_t i;

		hv_test_must(
		    hv_vault_cred_list(E.v, p, &CTX, &lq, &l, &err), &err, q);
		items = json_object_get(l, "items");
		assert_true(json_is_array(items));
		for (i = 0; i < json_array_size(items); i++) {
			const char *id = json_string_value(
			    json_object_get(json_array_get(items, i), "id"));

			assert_non_null(id);
			assert_true(out->n < MAX_IDS);
			out->v[out->n++] = strdup(id);
		}
		next = json_object_get(l, "next_cursor");
		if (json_is_null(next)) {
			json_decref(l);
			break;
		}
		(void)snprintf(cur, sizeof(cur), "%s", json_string_value(next));
		json_decref(l);
		lq.cursor = cur;
		assert_true(++pages < 100);
	}
}

/*
 * What the search answered before the trigram indexes: the former
 * predicate, verbatim, in the list's order. Only workspace-scoped rows of
 * one workspace exist in these tests' workspaces, so visibility is
 * workspace_id = ws.
 */
static void
reference_search(const char *ws, const char *q, struct ids *out)
{
	PGresult *r = sqlp(E.pg, PGRES_TUPLES_OK,
	    "SELECT id::text FROM credentials WHERE workspace_id = $1::uuid "
	    "AND (strpos(lower(name), lower($2::text)) > 0 "
	    "OR strpos(lower(service), lower($2::text)) > 0 "
	    "OR strpos(lower(notes), lower($2::text)) > 0) "
	    "ORDER BY created_at, id",
	    2, ws, q, NULL);
	int i;

	out->n = 0;
	assert_true(PQntuples(r) <= MAX_IDS);
	for (i = 0; i < PQntuples(r); i++)
		out->v[out->n++] = strdup(PQgetvalue(r, i, 0));
	PQclear(r);
}

/* The vault answers q exactly as the former predicate did. */
static size_t
assert_unchanged(const char *ws, const char *q)
{
	static struct ids got, want;
	struct hv_principal p;
	size_t i, n;

	make_principal(&p, ws);
	vault_search(&p, q, &got);
	reference_search(ws, q, &want);
	if (got.n != want.n)
		fail_msg("q '%s': %zu rows, the former search found %zu", q,
		    got.n, want.n);
	for (i = 0; i < got.n; i++)
		if (strcmp(got.v[i], want.v[i]) != 0)
			fail_msg("q '%s': row %zu differs", q, i);
	n = got.n;
	ids_clear(&got);
	ids_clear(&want);
	return n;
}

/* ------------------------------------------------------------------ */

static int
setup(void **state)
{
	char *id;
	PGresult *r;
	const char *p[1];

	(void)state;
	hv_mem_json_init();
	hv_test_db_new(&E.db, "search");
	hv_test_token_new(&E.tok, "searchtest");
	hv_cfg_init(&E.cfg);
	hv_test_cfg(&E.cfg, &E.tok, &E.db);
	if (hv_test_vault_up(&E.cfg, &E.v) != 0)
		return -1;
	E.pg = PQconnectdb(E.db.url);
	if (PQstatus(E.pg) != CONNECTION_OK)
		return -1;
	id = hv_test_pg_workspace(E.pg, "small");
	(void)snprintf(E.ws_small, sizeof(E.ws_small), "%s", id);
	free(id);
	id = hv_test_pg_workspace(E.pg, "bulk");
	(void)snprintf(E.ws_bulk, sizeof(E.ws_bulk), "%s", id);
	free(id);
	/*
	 * Metadata rows only (no version: a list reads none): 100 tags of 1%
	 * each like the benchmark's, three services, and every 250th name
	 * with metacharacters.
	 */
	p[0] = E.ws_bulk;
	r = PQexecParams(E.pg,
	    "INSERT INTO credentials (id, workspace_id, service, name, "
	    "auth_type, scope, notes, injection, created_by, created_at) "
	    "SELECT gen_random_uuid(), $1::uuid, "
	    "(ARRAY['stripe', 'github', 'openai'])[1 + i % 3], "
	    "format('Bulk %s tag-%s', lpad(i::text, 5, '0'), "
	    "lpad((i % 100)::text, 3, '0')) || CASE WHEN i % 250 = 0 "
	    "THEN ' 50%_off\\x it''s' ELSE '' END, 'api_key', 'workspace', "
	    "format('team %s; Rotated quarterly', i % 37), '{}', 'test', "
	    "now() - (20000 - i) * interval '1 second' "
	    "FROM generate_series(1, 10000) i",
	    1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "bulk: %s", PQerrorMessage(E.pg));
		PQclear(r);
		return -1;
	}
	PQclear(r);
	/*
	 * Rows inserted after a GIN index was made wait in its pending list
	 * until a VACUUM (autovacuum, in production) merges them; until then
	 * the planner prices the indexes by that list and may scan instead.
	 */
	r = PQexec(E.pg, "VACUUM ANALYZE credentials");
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "vacuum: %s", PQerrorMessage(E.pg));
		PQclear(r);
		return -1;
	}
	PQclear(r);
	return 0;
}

/* Drop the unprivileged role's database (if any), then the role. */
static void
drop_role(void)
{
	char sql[128];
	PGconn *adm;
	PGresult *r;

	hv_test_db_drop(&E.priv_db);
	if (E.role[0] == '\0')
		return;
	adm = PQconnectdb(getenv("HV_TEST_PG_URL"));
	(void)snprintf(sql, sizeof(sql), "DROP ROLE IF EXISTS %s", E.role);
	r = PQexec(adm, sql);
	PQclear(r);
	PQfinish(adm);
	E.role[0] = '\0';
}

static int
teardown(void **state)
{
	(void)state;
	drop_role();
	PQfinish(E.pg);
	hv_vault_close(&E.v);
	hv_cfg_release(&E.cfg);
	hv_test_db_drop(&E.db);
	hv_test_token_destroy(&E.tok);
	return 0;
}

/* ------------------------------------------------------------------ */

static void
test_migration_made_indexes(void **state)
{
	(void)state;
	assert_int_equal(hv_test_pg_long(E.pg,
	                     "SELECT count(*) FROM pg_extension "
	                     "WHERE extname = 'pg_trgm'",
	                     NULL),
	    1);
	assert_int_equal(trgm_index_count(E.pg), 3);
}

/* Metacharacters and case on a few rows made through the vault. */
static void
test_search_semantics(void **state)
{
	static const struct {
		const char *service, *field, *name, *notes;
	} rows[] = {
	    {"stripe", "key", "100% done", "billing"},
	    {"stripe", "key", "a%b", ""},
	    {"stripe", "key", "a_b", ""},
	    {"stripe", "key", "axb", ""},
	    {"stripe", "key", "back\\slash", ""},
	    {"stripe", "key", "it's", ""},
	    {"stripe", "key", "\"quoted\"", ""},
	    {"github", "token", "GitHub Token", "for CI"},
	    {"stripe", "key",
	        "\xc3\x84rger Schl\xc3\xbc"
	        "ssel",
	        ""},
	    {"openai", "key", "plain", "Notes Mention PostgreSQL"},
	};
	static const struct {
		const char *q;
		size_t n; /* rows of `rows` it matches */
	} cases[] = {
	    {"%", 2},           /* "100% done", "a%b" */
	    {"a%", 1},          /* "a%b", not "axb" */
	    {"_", 1},           /* "a_b" */
	    {"a_b", 1},         /* not "axb" */
	    {"\\", 1},          /* "back\slash" */
	    {"k\\s", 1},        /* "back\slash" */
	    {"\\s", 1},         /* "back\slash", not "a_b" */
	    {"'", 1},           /* "it's" */
	    {"\"", 1},          /* "\"quoted\"" */
	    {"' OR '1'='1", 0}, /* SQL is not q's language either */
	    {"%%", 0},          /* two % in a row nowhere */
	    {"github tok", 1},  /* name, case-insensitive */
	    {"GITHUB", 1},      /* name and service of one row */
	    {"StRiPe", 8},      /* service */
	    {"postgresql", 1},  /* notes */
	    {"for ci", 1},      /* notes */
	    {"zzz-no-match", 0},
	};
	struct hv_principal p;
	struct hv_err err = {0};
	size_t i;

	(void)state;
	make_principal(&p, E.ws_small);
	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		json_t *b = json_pack("{s:s, s:s, s:s, s:{s:s}}", "service",
		           rows[i].service, "name", rows[i].name, "notes",
		           rows[i].notes, "secret", rows[i].field, "k"),
		       *c = NULL;

		assert_non_null(b);
		hv_test_must(hv_vault_cred_create(E.v, &p, &CTX, b, &c, &err),
		    &err, rows[i].name);
		json_decref(c);
		json_decref(b);
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = assert_unchanged(E.ws_small, cases[i].q);

		if (n != cases[i].n)
			fail_msg("q '%s': %zu rows, expected %zu", cases[i].q,
			    n, cases[i].n);
	}
	/* non-ASCII case folding is PostgreSQL's, as before */
	(void)assert_unchanged(E.ws_small, "\xc3\xa4rger");
	(void)assert_unchanged(E.ws_small,
	    "SCHL\xc3\x9c"
	    "SSEL");
}

/*
 * On BULK_ROWS rows the trigram indexes answer (3+ characters) or a scan
 * does (shorter): the same rows as before, in the same order, over pages.
 */
static void
test_search_bulk_unchanged(void **state)
{
	static const char *const qs[] = {"tag-042", "TAG-042", "tag-04",
	    "bulk 0", "Bulk 02", "50%_off", "%_off", "off\\x", "\\x it's", "'s",
	    "rotated quarterly", "team 3;", "github", "GIT", "ub", "%", "_",
	    "\\", "ta", "t", "zzz", "\xc3\xb6", "bulk 02999 tag-99", "0% off"};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
		(void)assert_unchanged(E.ws_bulk, qs[i]);
	assert_int_equal(assert_unchanged(E.ws_bulk, "tag-042"), 100);
	assert_int_equal(assert_unchanged(E.ws_bulk, "50%_off"), 40);
	assert_int_equal(assert_unchanged(E.ws_bulk, "0% off"), 0);
	assert_int_equal(assert_unchanged(E.ws_bulk, "off\\x"), 40);
}

/* EXPLAIN (FORMAT JSON) of a statement with cred_list's 12 parameters. */
static char *
explain(const char *stmt_sql, const char *const params[12])
{
	static const char pre[] = "EXPLAIN (FORMAT JSON) ";
	size_t l = strlen(pre) + strlen(stmt_sql) + 1;
	char *sql = malloc(l);
	PGresult *r;
	char *plan;

	assert_non_null(sql);
	(void)snprintf(sql, l, "%s%s", pre, stmt_sql);
	r = PQexecParams(E.pg, sql, 12, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("explain: %s", PQerrorMessage(E.pg));
	plan = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	free(sql);
	return plan;
}

static void
assert_trgm_plan(const char *plan, const char *what)
{
	char needle[96];
	size_t i;

	if (strstr(plan, "\"Node Type\": \"BitmapOr\"") == NULL)
		fail_msg("%s: no BitmapOr in %s", what, plan);
	for (i = 0; i < 3; i++) {
		(void)snprintf(needle, sizeof(needle), "\"Index Name\": \"%s\"",
		    trgm_indexes[i]);
		if (strstr(plan, needle) == NULL)
			fail_msg("%s: %s not used in %s", what, trgm_indexes[i],
			    plan);
	}
}

/*
 * The plan of a search of 3+ characters: a BitmapOr of the three trigram
 * indexes under the visibility filter, the sort and the limit, without
 * disabling any plan type. And the server's own way to run it, a named
 * prepared statement executed many times with and without q, stays on
 * custom plans: the plan above is what every search gets.
 */
static void
test_plan_uses_trigram_indexes(void **state)
{
	const char *sql = hv_store_statement_sql("cred_list");
	const char *params[12] = {NULL};
	static const char *const qs[] = {NULL, "tag-001", NULL, "ta", NULL,
	    "tag-002", "github", NULL, "%", "rotated", NULL, "tag-003"};
	char *plan;
	PGresult *r;
	size_t i;

	(void)state;
	assert_non_null(sql);
	params[0] = "f"; /* not admin */
	params[1] = E.ws_bulk;
	params[4] = "tag-042";
	params[11] = "51";
	plan = explain(sql, params);
	assert_trgm_plan(plan, "non-admin search");
	free(plan);
	params[0] = "t"; /* admin: no visibility filter at all */
	plan = explain(sql, params);
	assert_trgm_plan(plan, "admin search");
	free(plan);

	r = PQprepare(E.pg, "t_cred_list", sql, 12, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("prepare: %s", PQerrorMessage(E.pg));
	PQclear(r);
	params[0] = "f";
	for (i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		params[4] = qs[i];
		r = PQexecPrepared(
		    E.pg, "t_cred_list", 12, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			fail_msg("execute: %s", PQerrorMessage(E.pg));
		PQclear(r);
	}
	assert_int_equal(hv_test_pg_long(E.pg,
	                     "SELECT generic_plans FROM pg_prepared_statements "
	                     "WHERE name = 't_cred_list'",
	                     NULL),
	    0);
	hv_test_pg_exec(E.pg, "DEALLOCATE t_cred_list");
}

/*
 * 0002 on a database that already holds rows (this one: the bulk rows and
 * the vault's own), as on an upgrade from schema 1; then once more.
 */
static void
test_migration_on_existing_rows(void **state)
{
	struct hv_err err = {0};
	json_t *rep = NULL, *applied;
	long rows;

	(void)state;
	rows = hv_test_pg_long(E.pg, "SELECT count(*) FROM credentials", NULL);
	assert_true(rows > BULK_ROWS);
	hv_test_pg_exec(E.pg,
	    "DROP INDEX credentials_name_trgm, "
	    "credentials_service_trgm, credentials_notes_trgm");
	hv_test_pg_exec(E.pg, "DELETE FROM hv_migrations WHERE version = 2");
	assert_int_equal(trgm_index_count(E.pg), 0);
	(void)assert_unchanged(E.ws_bulk, "tag-042"); /* unindexed: same */

	hv_test_must(hv_vault_migrate(&E.cfg, &rep, &err), &err, "migrate");
	applied = json_object_get(rep, "applied");
	assert_int_equal(json_array_size(applied), 1);
	assert_int_equal(json_integer_value(json_object_get(
	                     json_array_get(applied, 0), "version")),
	    2);
	assert_string_equal(json_string_value(json_object_get(
	                        json_array_get(applied, 0), "name")),
	    "0002-search-index");
	json_decref(rep);
	rep = NULL;
	assert_int_equal(trgm_index_count(E.pg), 3);
	assert_int_equal(
	    hv_test_pg_long(E.pg, "SELECT count(*) FROM credentials", NULL),
	    rows);

	/* twice: nothing to apply */
	hv_test_must(
	    hv_vault_migrate(&E.cfg, &rep, &err), &err, "migrate again");
	assert_int_equal(json_array_size(json_object_get(rep, "applied")), 0);
	json_decref(rep);
	rep = NULL;

	/* indexes already there (made by hand) but 0002 not recorded */
	hv_test_pg_exec(E.pg, "DELETE FROM hv_migrations WHERE version = 2");
	hv_test_must(
	    hv_vault_migrate(&E.cfg, &rep, &err), &err, "migrate over");
	assert_int_equal(json_array_size(json_object_get(rep, "applied")), 1);
	json_decref(rep);
	assert_int_equal(trgm_index_count(E.pg), 3);
	hv_test_pg_exec(E.pg, "ANALYZE credentials");
	(void)assert_unchanged(E.ws_bulk, "tag-042");
}

/* ------------------------------------------------------------------ */
/* A migrating role that may not create or use pg_trgm                  */

static PGconn *
admin_pg(const char *url)
{
	PGconn *c = PQconnectdb(url);

	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("connect: %s", PQerrorMessage(c));
	return c;
}

/*
 * Migrate a new database as E.role (LOGIN, no CREATE on the database;
 * CREATE on schema public, as PostgreSQL 15 no longer gives everybody).
 * `prep` runs first as the cluster admin in it. Returns the number of
 * trigram indexes afterwards; the migration itself must succeed.
 */
static long
migrate_as(const char *prep)
{
	struct hv_test_db *d = &E.priv_db;
	const char *role = E.role;
	struct hv_store *s = NULL;
	struct hv_err err = {0};
	json_t *rep = NULL;
	char url[700], grant[128];
	PGconn *adm, *pg;
	PGresult *r;
	const char *params[12] = {NULL};
	const char *sql = hv_store_statement_sql("cred_list");
	long n;

	hv_test_db_new(d, "searchpriv");
	adm = admin_pg(d->url);
	/* the database belongs to the admin; PUBLIC has no CREATE on it */
	(void)snprintf(
	    grant, sizeof(grant), "GRANT CREATE ON SCHEMA public TO %s", role);
	hv_test_pg_exec(adm, grant);
	if (prep != NULL)
		hv_test_pg_exec(adm, prep);

	(void)snprintf(url, sizeof(url), "%s user=%s", d->url, role);
	hv_test_must(hv_store_open(url, 1, &s, &err), &err, "open as role");
	hv_test_must(hv_store_migrate(s, &rep, &err), &err, "migrate as role");
	assert_int_equal(json_array_size(json_object_get(rep, "applied")),
	    (long)hv_migrations_count);
	json_decref(rep);
	hv_store_close(&s);

	pg = admin_pg(url);
	n = trgm_index_count(pg);
	/* the search works either way; % is a plain character */
	hv_test_pg_exec(pg,
	    "INSERT INTO workspaces (id, name) VALUES "
	    "('00000000-0000-4000-8000-0000000000aa', 'w')");
	hv_test_pg_exec(pg,
	    "INSERT INTO credentials (id, workspace_id, service, name, "
	    "auth_type, scope, injection, created_by) SELECT "
	    "gen_random_uuid(), '00000000-0000-4000-8000-0000000000aa', "
	    "'stripe', v, 'api_key', 'workspace', '{}', 't' "
	    "FROM unnest(ARRAY['Half 50% off', 'x50y', 'none']) v");
	params[0] = "f";
	params[1] = "00000000-0000-4000-8000-0000000000aa";
	params[4] = "50\\%"; /* like_escape("50%") */
	params[11] = "51";
	r = PQexecParams(pg, sql, 12, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("cred_list as role: %s", PQerrorMessage(pg));
	assert_int_equal(PQntuples(r), 1);
	PQclear(r);
	PQfinish(pg);
	PQfinish(adm);
	hv_test_db_drop(d);
	return n;
}

static void
test_migration_without_privilege(void **state)
{
	char sql[160], url[700];
	PGconn *adm, *probe;

	(void)state;
	adm = admin_pg(getenv("HV_TEST_PG_URL"));
	/* test-only: role names are made here of [a-z0-9_], not from input */
	(void)snprintf(
	    E.role, sizeof(E.role), "hvt_trgm_%u", (unsigned)getpid());
	(void)snprintf(sql, sizeof(sql), "CREATE ROLE %s LOGIN", E.role);
	hv_test_pg_exec(adm, sql);
	PQfinish(adm);
	(void)snprintf(
	    url, sizeof(url), "%s user=%s", getenv("HV_TEST_PG_URL"), E.role);
	probe = PQconnectdb(url);
	if (PQstatus(probe) != CONNECTION_OK) {
		/* a cluster that does not trust local roles: cannot test */
		PQfinish(probe);
		drop_role();
		skip();
	}
	PQfinish(probe);

	/* no CREATE on the database: no extension, no index, no error */
	assert_int_equal(migrate_as(NULL), 0);
	/* a DBA installed pg_trgm in a schema this role may not use */
	assert_int_equal(migrate_as("CREATE SCHEMA ext; "
	                            "CREATE EXTENSION pg_trgm SCHEMA ext"),
	    0);
	/* ... and in one it may use: indexes, with ext.gin_trgm_ops */
	(void)snprintf(sql, sizeof(sql),
	    "CREATE SCHEMA ext; CREATE EXTENSION pg_trgm SCHEMA ext; "
	    "GRANT USAGE ON SCHEMA ext TO %s",
	    E.role);
	assert_int_equal(migrate_as(sql), 3);
	drop_role();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_migration_made_indexes),
	    cmocka_unit_test(test_search_semantics),
	    cmocka_unit_test(test_search_bulk_unchanged),
	    cmocka_unit_test(test_plan_uses_trigram_indexes),
	    cmocka_unit_test(test_migration_on_existing_rows),
	    cmocka_unit_test(test_migration_without_privilege),
	};

	if (getenv("HV_TEST_PG_URL") == NULL)
		hv_test_missing("HV_TEST_PG_URL");
	return cmocka_run_group_tests(tests, setup, teardown);
}
