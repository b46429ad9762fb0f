/* httpsrv: in-process API server fixture for integration tests. */
#include "httpsrv.h"

#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

static void
die(const char *what, const struct hv_err *err)
{
	fprintf(stderr, "FAIL: %s: %s\n", what, err != NULL ? err->msg : "");
	exit(1);
}

static void
serve(struct hv_test_server *s)
{
	struct hv_err err = {HV_OK, ""};

	if (hv_vault_open(&s->cfg, false, &s->vault, &err) != HV_OK)
		die("hv_vault_open", &err);
	if (hv_http_start(&s->cfg, s->vault, &s->http, &err) != HV_OK)
		die("hv_http_start", &err);
	s->port = hv_http_port(s->http);
	(void)snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%u",
	    (unsigned int)s->port);
}

void
hv_test_server_start(struct hv_test_server *s, const char *name,
    void (*tweak)(struct hv_cfg *cfg))
{
	struct hv_err err = {HV_OK, ""};
	struct hv_reqctx ctx = {"test-bootstrap", NULL};
	json_t *report = NULL, *body, *out = NULL;
	static bool once;

	if (!once) {
		hv_mem_json_init();
		signal(SIGPIPE, SIG_IGN);
		once = true;
	}
	memset(s, 0, sizeof(*s));
	hv_test_db_new(&s->db, name);
	hv_test_token_new(&s->tok, name);
	hv_cfg_init(&s->cfg);
	hv_test_cfg(&s->cfg, &s->tok, &s->db);
	if (hv_cfg_set(&s->cfg, "listen", "127.0.0.1:0", &err) != HV_OK)
		die("cfg listen", &err);
	if (tweak != NULL)
		tweak(&s->cfg);
	if (hv_vault_init(&s->cfg, &report, &err) != HV_OK)
		die("hv_vault_init", &err);
	(void)snprintf(s->workspace_id, sizeof(s->workspace_id), "%s",
	    json_string_value(
	        json_object_get(json_object_get(report, "workspace"), "id")));
	json_decref(report);
	serve(s);

	body =
	    json_pack("{s:s,s:[s]}", "name", "test-admin", "scopes", "admin");
	if (body == NULL ||
	    hv_vault_apikey_create(s->vault, NULL, &ctx, body, &out, &err) !=
	        HV_OK)
		die("bootstrap admin key", &err);
	(void)snprintf(s->admin_key, sizeof(s->admin_key), "%s",
	    json_string_value(json_object_get(out, "key")));
	(void)snprintf(s->admin_id, sizeof(s->admin_id), "%s",
	    json_string_value(json_object_get(out, "id")));
	json_decref(body);
	json_decref(out);
}

void
hv_test_server_start_peer(struct hv_test_server *peer,
    const struct hv_test_server *s, void (*tweak)(struct hv_cfg *cfg))
{
	struct hv_err err = {HV_OK, ""};

	memset(peer, 0, sizeof(*peer));
	peer->tok = s->tok;
	peer->db = s->db;
	peer->peer = true;
	hv_cfg_init(&peer->cfg);
	hv_test_cfg(&peer->cfg, &peer->tok, &peer->db);
	if (hv_cfg_set(&peer->cfg, "listen", "127.0.0.1:0", &err) != HV_OK)
		die("cfg listen", &err);
	if (tweak != NULL)
		tweak(&peer->cfg);
	serve(peer);
	(void)snprintf(
	    peer->admin_key, sizeof(peer->admin_key), "%s", s->admin_key);
	(void)snprintf(
	    peer->admin_id, sizeof(peer->admin_id), "%s", s->admin_id);
	(void)snprintf(peer->workspace_id, sizeof(peer->workspace_id), "%s",
	    s->workspace_id);
}

void
hv_test_server_stop_http(struct hv_test_server *s)
{
	hv_http_stop(&s->http);
}

void
hv_test_server_stop(struct hv_test_server *s)
{
	hv_http_stop(&s->http);
	hv_vault_close(&s->vault);
	hv_cfg_release(&s->cfg);
	if (!s->peer) {
		hv_test_token_destroy(&s->tok);
		hv_test_db_drop(&s->db);
	}
}

void
hv_test_mint_key(const struct hv_test_server *s, const char *as,
    const char *body_json, char *key, size_t key_cap, char *id, size_t id_cap)
{
	struct hv_httpc c;
	struct hv_httpc_resp r;

	hv_httpc_init(&c, s->base);
	if (hv_httpc_do(&c, "POST", "/v1/api-keys",
	        as != NULL ? as : s->admin_key, NULL, body_json,
	        strlen(body_json), &r) != 201) {
		fprintf(stderr, "FAIL: mint key %s: %ld %s\n", body_json,
		    r.status, r.body);
		exit(1);
	}
	if (key != NULL)
		(void)snprintf(key, key_cap, "%s",
		    json_string_value(json_object_get(r.json, "key")));
	if (id != NULL)
		(void)snprintf(id, id_cap, "%s",
		    json_string_value(json_object_get(r.json, "id")));
	hv_httpc_resp_free(&r);
	hv_httpc_release(&c);
}

void
hv_test_make_cred(const struct hv_test_server *s, const char *key,
    const char *body_json, char *id, size_t id_cap)
{
	struct hv_httpc c;
	struct hv_httpc_resp r;

	hv_httpc_init(&c, s->base);
	if (hv_httpc_do(&c, "POST", "/v1/credentials", key, NULL, body_json,
	        strlen(body_json), &r) != 201) {
		fprintf(stderr, "FAIL: make credential: %ld %s\n", r.status,
		    r.body);
		exit(1);
	}
	if (id != NULL)
		(void)snprintf(id, id_cap, "%s",
		    json_string_value(json_object_get(r.json, "id")));
	hv_httpc_resp_free(&r);
	hv_httpc_release(&c);
}

static PGconn *
connect_db(const struct hv_test_server *s)
{
	PGconn *c = PQconnectdb(s->db.url);

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "FAIL: connect: %s", PQerrorMessage(c));
		exit(1);
	}
	return c;
}

long
hv_test_count_rows(const struct hv_test_server *s, const char *table)
{
	static const char *const tables[] = {"credentials",
	    "credential_versions", "api_keys", "workspaces", "audit_log",
	    "auth_denied", NULL};
	char sql[128];
	PGconn *c;
	PGresult *r;
	long n;
	size_t i;

	for (i = 0; tables[i] != NULL; i++)
		if (strcmp(tables[i], table) == 0)
			break;
	if (tables[i] == NULL) {
		fprintf(stderr, "FAIL: count of unknown table\n");
		exit(1);
	}
	/* test-only: the table name comes from the fixed list above */
	if (strcmp(tables[i], "auth_denied") == 0)
		(void)snprintf(sql, sizeof(sql),
		    "SELECT count(*) FROM "
		    "audit_log WHERE action = 'auth.denied'");
	else
		(void)snprintf(
		    sql, sizeof(sql), "SELECT count(*) FROM %s", tables[i]);
	c = connect_db(s);
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "FAIL: %s: %s", sql, PQerrorMessage(c));
		exit(1);
	}
	n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return n;
}

void
hv_test_sql(const struct hv_test_server *s, const char *sql)
{
	PGconn *c = connect_db(s);
	PGresult *r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "FAIL: %s: %s", sql, PQerrorMessage(c));
		exit(1);
	}
	PQclear(r);
	PQfinish(c);
}

long
hv_test_metric(const struct hv_test_server *s, const char *name)
{
	struct hv_httpc c;
	struct hv_httpc_resp r;
	char key[128];
	const char *p;
	long v = -1;

	(void)snprintf(key, sizeof(key), "\n%s ", name);
	hv_httpc_init(&c, s->base);
	hv_httpc_do(&c, "GET", "/metrics", s->admin_key, NULL, NULL, 0, &r);
	if (r.status == 200 && r.body != NULL &&
	    (p = strstr(r.body, key)) != NULL)
		v = strtol(p + strlen(key), NULL, 10);
	hv_httpc_resp_free(&r);
	hv_httpc_release(&c);
	return v;
}

long
hv_test_db_long(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	long n = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return n;
}

long
hv_test_lock_waits(PGconn *c)
{
	return hv_test_db_long(c,
	    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON "
	    "d.oid = l.database WHERE NOT l.granted AND "
	    "d.datname = current_database()");
}
