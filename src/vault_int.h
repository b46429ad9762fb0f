/*
 * vault_int: what the vault_*.c modules share and nobody else sees.
 */
#ifndef HV_VAULT_INT_H
#define HV_VAULT_INT_H

#include "audit.h"
#include "catalog.h"
#include "cfg.h"
#include "credcache.h"
#include "dekcache.h"
#include "envelope.h"
#include "hsm.h"
#include "store.h"
#include "vault.h"

#include <stdint.h>

struct hv_group;

struct hv_vault {
	const struct hv_cfg *cfg; /* borrowed */
	struct hv_hsm *hsm;
	struct hv_store *store;
	struct hv_catalog *catalog;
	struct hv_audit *audit;
	void *apikey_cache;             /* owned by vault.c */
	struct hv_dekcache *dekcache;   /* NULL: off; used by vault_cred.c */
	struct hv_credcache *credcache; /* NULL: off; metadata reads */
	struct hv_group *creates; /* NULL: off; group commit (vault_cred.c) */
	struct hv_group *uses;    /* NULL: off; group commit (vault_cred.c) */
};

/*
 * Credentials per group commit of creates (create_group_writers); at most
 * the audit log's rows per statement (hv_audit_append_many).
 */
#define CREATE_GROUP_MAX 32

/* Run a group of queued creates (an hv_group_fn; ctx is the vault). */
struct hv_group_item;
void
hv_vault_create_group_run(void *ctx, struct hv_group_item **items, size_t n);

/*
 * Uses per group commit (use_group_writers); at most the audit log's rows
 * per statement (hv_audit_append_many).
 */
#define USE_GROUP_MAX 32

/* Run a group of queued use records (an hv_group_fn; ctx is the vault). */
void hv_vault_use_group_run(void *ctx, struct hv_group_item **items, size_t n);

/* Register the statement tables of every vault module (once). */
void hv_vault_register_statements(void);
void hv_vault_cred_register(void); /* vault_cred.c */

/*
 * May principal p see credential row (workspace, scope, owner_user, id)?
 * Implements SPEC section 3 visibility plus the allow-list is NOT part of
 * visibility (allow-list misses are 403, not 404).
 */
/* PostgreSQL NOTIFY channel of API key revocations (payload: key id). */
#define HV_REVOKE_CHANNEL "hv_apikey_revoked"
/*
 * NOTIFY channel of credential changes (payload: credential id), sent by
 * the trigger of sql/0003-credential-notify.sql.
 */
#define HV_CRED_CHANNEL "hv_credential_changed"

/*
 * Is this process's listener connected, with a recent heartbeat, on a
 * database whose credentials_changed trigger is enabled? Only then may
 * cached credential metadata be served (credcache.h). Lock-free.
 */
bool hv_vault_notices_fresh(struct hv_vault *v);

/*
 * After a committed rotate (OAuth refresh too), revoke or delete of
 * cred_id: drop its cached DEKs and metadata row on this instance.
 */
void hv_vault_forget_cached(struct hv_vault *v, const char *cred_id);

/* Timestamps leave the database as RFC 3339 UTC with microseconds. */
#define HV_SQL_TS(col)                                                         \
	"to_char(" col " AT TIME ZONE 'UTC', "                                 \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

void hv_vault_apikey_register(void);   /* vault_apikey.c */
void hv_vault_admin_register(void);    /* vault_admin.c */
void hv_vault_provider_register(void); /* vault_provider.c */

/* Every scope bit (what admin holds). */
unsigned int hv_scope_all(void);
/* The scope names of a bit set as a new JSON array (NULL: no memory). */
json_t *hv_scopes_to_json(unsigned int scopes);

/* The actor name recorded for p ("cli" for NULL or the CLI). */
const char *hv_principal_actor(const struct hv_principal *p);

/* Fill an audit event for principal p (may be NULL: the CLI). */
void hv_vault_event(struct hv_audit_event *ev, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *ws, const char *action,
    const char *cred_id, const char *outcome, const char *detail);

/*
 * Record an auth.denied row for p (in its own transaction; a failure is
 * logged) and return HV_E_FORBIDDEN. The caller sets err.
 */
enum hv_rc hv_vault_deny(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *cred_id, const char *detail);

/*
 * HV_E_INVALID naming the first key of body not in the NULL-terminated
 * allowed list (or when body is not an object).
 */
enum hv_rc hv_vault_check_fields(
    const json_t *body, const char *const *allowed, struct hv_err *err);

/* A JSON string of min..max bytes without NUL or control characters. */
bool hv_vault_text_ok(const json_t *v, size_t min, size_t max);

/*
 * Parse an RFC 3339 date-time (2030-01-31T12:00:00Z, fractions and
 * offsets allowed) into microseconds since the epoch. HV_E_INVALID naming
 * `field` otherwise.
 */
enum hv_rc hv_vault_parse_time(
    const char *s, int64_t *epoch_us, struct hv_err *err, const char *field);

/*
 * Drop key_id from this instance's verified-key cache; "" drops every key
 * (the notification of a TRUNCATE of api_keys, or one whose payload is not
 * a key id).
 */
void hv_vault_cache_evict(struct hv_vault *v, const char *key_id);
/* Cache figures for /metrics; listening: revocations arrive live. */
void hv_vault_cache_stats(struct hv_vault *v, unsigned long *hits,
    unsigned long *misses, unsigned long *revocations, bool *listening);

bool hv_vault_visible(const struct hv_principal *p, const char *workspace_id,
    const char *scope, const char *owner_user);
bool hv_vault_allowed(const struct hv_principal *p, const char *cred_id);

/*
 * Parse a keyset cursor "<created_at in µs>_<uuid>" (API key and workspace
 * lists) into us (digits) and id (normalized); false when malformed.
 * (vault_apikey.c)
 */
bool hv_vault_cursor_parse(const char *s, char us[24], char id[HV_UUID_STR]);

/*
 * The one path for a credential version's secret (vault_cred.c), also used
 * by the OAuth refresh in vault_provider.c:
 * hv_vault_seal_secret serializes sec (compact, sorted keys; at most 64 KiB,
 * else HV_E_INVALID) into locked memory and seals it under a new DEK;
 * hv_vault_insert_version stores env as version `version` of id (inside the
 * caller's transaction on c); hv_vault_open_version reads version `version`
 * (decimal text) of (ws, id) and decrypts it into a new JSON object,
 * through the DEK cache.
 */
enum hv_rc hv_vault_seal_secret(struct hv_vault *v, const char *ws,
    const char *id, uint32_t version, const json_t *sec,
    struct hv_envelope *env, struct hv_err *err);
enum hv_rc hv_vault_insert_version(struct hv_conn *c, const char *id,
    uint32_t version, const struct hv_envelope *env, struct hv_err *err);
enum hv_rc
hv_vault_open_version(struct hv_vault *v, struct hv_conn *c, const char *ws,
    const char *id, const char *version, json_t **secret, struct hv_err *err);

#endif
