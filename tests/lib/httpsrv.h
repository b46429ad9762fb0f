/*
 * httpsrv: an in-process hsmvault API server for integration tests: a
 * fresh SoftHSM2 token and database (testenv.h), hsmvault init, the vault
 * and hv_http_start() on an ephemeral port of 127.0.0.1, plus a bootstrap
 * admin API key minted through the vault (as `hsmvault apikey create`
 * does).
 *
 * Not thread-safe: set up and tear down from the test's main thread.
 */
#ifndef HV_TEST_HTTPSRV_H
#define HV_TEST_HTTPSRV_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"
#include "http.h"
#include "httpc.h"
#include "testenv.h"
#include "vault.h"

struct hv_test_server {
	struct hv_test_token tok; /* owned unless peer */
	struct hv_test_db db;     /* owned unless peer */
	bool peer;                /* shares tok/db of another server */
	struct hv_cfg cfg;
	struct hv_vault *vault;
	struct hv_http *http;
	unsigned short port;
	char base[64]; /* "http://127.0.0.1:PORT" */
	char admin_key[160];
	char admin_id[40];
	char workspace_id[40]; /* the default workspace */
};

/*
 * Make token, database, config (tweak, may be NULL, adjusts it before
 * init), init, open and serve; mint an admin key. Exits on failure
 * (77 when PostgreSQL or SoftHSM2 is missing).
 */
void hv_test_server_start(struct hv_test_server *s, const char *name,
    void (*tweak)(struct hv_cfg *cfg));

/*
 * Another server instance on the database and token of s, with its own
 * vault and configuration (tweak may be NULL). SoftHSM2 reads its
 * configuration once per process, so a test process holds one token: use
 * peers, not a second hv_test_server_start(), for servers configured
 * differently.
 */
void hv_test_server_start_peer(struct hv_test_server *peer,
    const struct hv_test_server *s, void (*tweak)(struct hv_cfg *cfg));

/* Stop serving (graceful) but keep vault, token and database. */
void hv_test_server_stop_http(struct hv_test_server *s);

/* Stop and remove everything the server owns. */
void hv_test_server_stop(struct hv_test_server *s);

/*
 * POST /v1/api-keys with body_json as the admin (or with `as`, a key);
 * expects 201. Copies the key and its id (either may be NULL).
 */
void hv_test_mint_key(const struct hv_test_server *s, const char *as,
    const char *body_json, char *key, size_t key_cap, char *id, size_t id_cap);

/*
 * POST /v1/credentials with body_json using key; expects 201 and copies
 * the new id.
 */
void hv_test_make_cred(const struct hv_test_server *s, const char *key,
    const char *body_json, char *id, size_t id_cap);

/*
 * Rows of a table (credentials, api_keys, ...) in the server's database;
 * "auth_denied" counts the audit rows of denied requests.
 */
long hv_test_count_rows(const struct hv_test_server *s, const char *table);

/* Run one SQL statement (test set-up only) on the server's database. */
void hv_test_sql(const struct hv_test_server *s, const char *sql);

/* The value of the unlabelled /metrics line name of s, or -1. */
long hv_test_metric(const struct hv_test_server *s, const char *name);

/* The one value of a test-only query on c, as a number; -1 if none. */
long hv_test_db_long(PGconn *c, const char *sql);

/* Lock requests waiting in c's database (pg_locks not granted), or -1. */
long hv_test_lock_waits(PGconn *c);

#endif
