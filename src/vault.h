/*
 * vault: the service layer. Every operation of SPEC sections 3-5 lives
 * here once, shared by the HTTP API (src/api_*.c) and the CLI
 * (src/cmd_*.c): authorization, tenancy, validation of request fields,
 * envelope encryption through the key store, persistence and the audit row
 * written in the same transaction as the change (fail closed).
 *
 * Inputs and outputs are jansson values so that both front ends serialize
 * the same shapes. Inputs are borrowed; every `json_t **out` is a new
 * reference the caller json_decref()s, set only on HV_OK. Secret payloads
 * are json objects allocated through jansson's zeroing allocator
 * (hv_mem_json_init) and must be released promptly.
 *
 * Errors carry SPEC codes through enum hv_rc (see err.h): HV_E_INVALID for
 * a bad field (message names the field, never its value), HV_E_NOT_FOUND
 * also for what the principal may not see, HV_E_FORBIDDEN for a missing
 * scope or allow-list miss, HV_E_CONFLICT for a stale expected version,
 * HV_E_REVOKED, HV_E_KEYSTORE, HV_E_DATABASE.
 *
 * Thread-safety: one struct hv_vault serves all threads; every function is
 * thread-safe.
 */
#ifndef HV_VAULT_H
#define HV_VAULT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "err.h"

struct hv_vault;
struct hv_group;
struct hv_hsm;
struct hv_store;
struct hv_audit;

#define HV_UUID_STR 37 /* 36 chars + NUL */

enum hv_scope_bit {
	HV_SCOPE_CRED_READ = 1u << 0,   /* credentials:read */
	HV_SCOPE_CRED_WRITE = 1u << 1,  /* credentials:write */
	HV_SCOPE_CRED_USE = 1u << 2,    /* credentials:use */
	HV_SCOPE_CRED_REVEAL = 1u << 3, /* credentials:reveal */
	HV_SCOPE_KEYS_READ = 1u << 4,   /* apikeys:read */
	HV_SCOPE_KEYS_WRITE = 1u << 5,  /* apikeys:write */
	HV_SCOPE_AUDIT_READ = 1u << 6,  /* audit:read */
	HV_SCOPE_ADMIN = 1u << 7,       /* admin: all, across workspaces */
};

/* Parse "credentials:read" etc.; 0 when unknown. */
unsigned int hv_scope_parse(const char *s);
/* The name of one scope bit; NULL when not exactly one known bit. */
const char *hv_scope_name(unsigned int bit);

/*
 * Who is calling. From hv_vault_authenticate() for the HTTP API, or
 * hv_principal_cli() for the local CLI (admin). Released with
 * hv_principal_release().
 */
struct hv_principal {
	char key_id[HV_UUID_STR]; /* "" for the CLI */
	char name[128];           /* key name, or "cli" */
	char workspace_id[HV_UUID_STR];
	char user[128];       /* "" when the key has no user label */
	unsigned int scopes;  /* enum hv_scope_bit; admin = all */
	bool all_credentials; /* false: only cred_ids */
	char (*cred_ids)[HV_UUID_STR];
	size_t n_cred_ids;
};

/* Request context for audit rows. Borrowed strings; may be NULL. */
struct hv_reqctx {
	const char *request_id;
	const char *remote_addr;
};

/*
 * Open the vault: connect the pool, open the key store (keys must exist
 * unless create_keys), load the service catalog. cfg is borrowed and must
 * outlive the vault. On HV_OK *out is released with hv_vault_close().
 */
enum hv_rc
hv_vault_open(const struct hv_cfg *cfg, bool create_keys, struct hv_vault **out,
    struct hv_err *err) __attribute__((warn_unused_result));
void hv_vault_close(struct hv_vault **v);

/* Borrowed handles for front ends that need them (status, metrics). */
struct hv_hsm *hv_vault_hsm(struct hv_vault *v);
struct hv_store *hv_vault_store(struct hv_vault *v);
struct hv_audit *hv_vault_audit(struct hv_vault *v);
/* The group commit of creates (create_group_writers), or NULL when off. */
struct hv_group *hv_vault_create_group(struct hv_vault *v);
/* The group commit of use records (use_group_writers), or NULL when off. */
struct hv_group *hv_vault_use_group(struct hv_vault *v);

/*
 * The caches' figures since the vault opened, for /metrics: lookups that
 * hit and missed, entries held and the most there can be. A cache that is
 * off (size 0) reports zeros.
 */
struct hv_vault_cache_figures {
	unsigned long hits, misses;
	unsigned long entries, capacity;
};
struct hv_vault_caches {
	struct hv_vault_cache_figures apikey; /* verified API keys */
	struct hv_vault_cache_figures dek;    /* unwrapped data keys */
	struct hv_vault_cache_figures cred;   /* credential metadata rows */
};
void hv_vault_caches(struct hv_vault *v, struct hv_vault_caches *out);

/*
 * How many of the credential search's three trigram indexes exist
 * (sql/0002-search-index.sql): fewer than 3 when pg_trgm was missing when
 * the schema was migrated, and every search then reads every credential
 * (docs/storage.md, "Without pg_trgm").
 */
enum hv_rc hv_vault_search_indexes(struct hv_vault *v, int *n,
    struct hv_err *err) __attribute__((warn_unused_result));

/* Run the embedded migrations (also done by hv_vault_init). */
enum hv_rc hv_vault_migrate(const struct hv_cfg *cfg, json_t **report,
    struct hv_err *err) __attribute__((warn_unused_result));

/*
 * hsmvault init: migrate, create KEK v1 and the HMAC key when absent, and
 * the "default" workspace when no workspace exists. Idempotent.
 */
enum hv_rc hv_vault_init(const struct hv_cfg *cfg, json_t **report,
    struct hv_err *err) __attribute__((warn_unused_result));

/*
 * Authenticate `Authorization: Bearer <key>`: header is the full header
 * value or NULL. Format and checksum are checked before any database or
 * key store work. HV_E_UNAUTHORIZED for missing, malformed, unknown,
 * expired or revoked keys (and a denied row is audited).
 */
enum hv_rc hv_vault_authenticate(struct hv_vault *v, const char *header,
    const struct hv_reqctx *ctx, struct hv_principal *out, struct hv_err *err)
    __attribute__((warn_unused_result));

/* The principal of the local CLI: admin in workspace ws (or default). */
enum hv_rc hv_principal_cli(struct hv_vault *v, const char *workspace_id,
    struct hv_principal *out, struct hv_err *err);
void hv_principal_release(struct hv_principal *p);

/*
 * Check that p holds `scope` (admin implies all). On HV_E_FORBIDDEN an
 * auth.denied audit row is written.
 */
enum hv_rc hv_vault_require(struct hv_vault *v, const struct hv_principal *p,
    unsigned int scope, const struct hv_reqctx *ctx, struct hv_err *err);

/*
 * Write an auth.denied audit row (in a transaction of its own) for a
 * refused request about credential cred_id (may be NULL), with a short
 * detail that never holds a secret. Returns HV_E_FORBIDDEN; an audit
 * failure is logged.
 */
enum hv_rc hv_vault_deny(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *cred_id, const char *detail);

/* List filters; NULL/0 fields are unset. */
struct hv_list_query {
	const char *q; /* search in name, service, notes */
	const char *scope;
	const char *auth_type;
	const char *status;
	const char *service;
	const char *action;        /* audit */
	const char *credential_id; /* audit */
	const char *since;         /* audit: RFC 3339 */
	const char *cursor;        /* opaque, from next_cursor */
	unsigned int limit;        /* 0 = default 50; max 200 */
	const char *workspace_id;  /* api keys: one workspace (admin) */
};

/* Credentials. `id` is an untrusted string: an invalid UUID is 404. */
enum hv_rc hv_vault_cred_create(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx,
    const json_t *body, json_t **out, struct hv_err *err);
/*
 * hv_vault_cred_create whose caller need not wait for the commit: with
 * group commit of creates on (create_group_writers) and other creates
 * queued or being written, a create that passed every check is queued
 * and it returns HV_OK with *pending true and *out an empty object;
 * done(arg, rc, err) runs later on a writer thread, after the commit
 * that holds the credential (then *out is its row) or with the error that
 * lost it (then the caller drops *out and answers the error). A create
 * whose group fails before its commit is written again alone, so its
 * error is its own. In every other case (done NULL, group commit off, a
 * lone create, any failure) it is hv_vault_cred_create, *pending false,
 * and done never runs.
 */
enum hv_rc
hv_vault_cred_create_async(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const json_t *body, hv_done_fn done, void *arg,
    bool *pending, json_t **out, struct hv_err *err);
enum hv_rc hv_vault_cred_list(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const struct hv_list_query *q, json_t **out,
    struct hv_err *err);
enum hv_rc hv_vault_cred_get(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, json_t **out,
    struct hv_err *err);
/* expected_version < 0: no If-Match given. */
enum hv_rc
hv_vault_cred_update(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const json_t *body,
    long expected_version, json_t **out, struct hv_err *err);
enum hv_rc
hv_vault_cred_rotate(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const json_t *body,
    long expected_version, json_t **out, struct hv_err *err);
enum hv_rc hv_vault_cred_revoke(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx, const char *id,
    bool revoke, json_t **out, struct hv_err *err);
enum hv_rc hv_vault_cred_duplicate(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx, const char *id,
    const json_t *body, json_t **out, struct hv_err *err);
enum hv_rc
hv_vault_cred_delete(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, struct hv_err *err);
/* {"secret": {...}}; always audited (credential.reveal). */
enum hv_rc hv_vault_cred_reveal(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx, const char *id,
    json_t **out, struct hv_err *err);
/*
 * hv_vault_cred_reveal whose caller need not wait for the audit commit:
 * with group commit on (audit_group_leaders), a successful reveal queues
 * its audit row and returns HV_OK with *pending true and *out set, and
 * done(arg, rc, err) runs later on the audit writer thread. *out may
 * leave the process only after done ran with HV_OK; with another rc the
 * caller drops *out and answers that error. In every other case (done
 * NULL, group commit off, any failure) it is hv_vault_cred_reveal,
 * *pending false, and done never runs.
 */
enum hv_rc
hv_vault_cred_reveal_async(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, hv_done_fn done, void *arg,
    bool *pending, json_t **out, struct hv_err *err);
/*
 * For test/use (provider issue): the credential's metadata and decrypted
 * secret, after checking credentials:use, visibility, allow-list, and
 * that it is not revoked (HV_E_REVOKED). Does not audit: the caller
 * audits the outcome with hv_vault_audit_event().
 */
enum hv_rc hv_vault_cred_open_for_use(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx, const char *id,
    json_t **meta, json_t **secret, struct hv_err *err);
/* Record a test/use outcome and update status / last_used_at. */
enum hv_rc hv_vault_cred_record_use(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx, const char *id,
    const char *action, bool ok, const char *new_status, struct hv_err *err);
/*
 * As hv_vault_cred_record_use, but with group commit of use records on
 * (use_group_writers) and others queued or being written, the record is
 * queued and it returns HV_OK with *pending true: done(arg, rc, err) then
 * runs once, on a writer thread, after the commit that holds the record
 * (HV_OK) or with the error the record gets alone. A group's records
 * share one statement for their credentials' last_used_at and status, one
 * for their audit rows, and one commit. Otherwise (off, done NULL, a lone
 * record) it is hv_vault_cred_record_use, *pending false, and done never
 * runs.
 */
enum hv_rc hv_vault_cred_record_use_async(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx, const char *id,
    const char *action, bool ok, const char *new_status, hv_done_fn done,
    void *arg, bool *pending, struct hv_err *err);

/* Audit. */
enum hv_rc hv_vault_cred_audit(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const struct hv_list_query *q,
    json_t **out, struct hv_err *err);
enum hv_rc hv_vault_audit_list(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const struct hv_list_query *q, json_t **out,
    struct hv_err *err);
/*
 * Walk every chain. HV_OK with *report {"ok": true, "rows": n, ...}, or
 * {"ok": false, "first_bad": {"id":..,"chain":..,"seq":..,"problem":..}}.
 */
enum hv_rc
hv_vault_audit_verify(struct hv_vault *v, json_t **report, struct hv_err *err);

/*
 * API keys. p == NULL only from the CLI bootstrap path. List: an admin
 * sees every workspace's keys (q->workspace_id narrows to one), others
 * their own workspace's (another workspace_id is HV_E_FORBIDDEN).
 */
enum hv_rc hv_vault_apikey_create(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx,
    const json_t *body, json_t **out, struct hv_err *err);
enum hv_rc hv_vault_apikey_list(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx,
    const struct hv_list_query *q, json_t **out, struct hv_err *err);
enum hv_rc
hv_vault_apikey_revoke(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, struct hv_err *err);

/* Workspaces (admin). */
enum hv_rc hv_vault_workspace_create(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx,
    const json_t *body, json_t **out, struct hv_err *err);
enum hv_rc
hv_vault_workspace_list(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, json_t **out, struct hv_err *err);
/* One page (q: limit, cursor; NULL = the first 50) as {items, next_cursor}. */
enum hv_rc hv_vault_workspace_list_page(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx,
    const struct hv_list_query *q, json_t **out, struct hv_err *err);

/* KEK and rewrap (admin). */
enum hv_rc hv_vault_kek_rotate(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, json_t **out, struct hv_err *err);
enum hv_rc hv_vault_kek_disable(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx, uint32_t version,
    json_t **out, struct hv_err *err);
/*
 * Re-wrap up to max_batches batches of `batch` DEKs (0 = until done) to the
 * active KEK without decrypting any payload. Resumable: progress is the
 * set of versions still on older KEKs. progress (may be NULL) is called
 * after each batch with (done so far, remaining). *out is
 * {"rewrapped": n, "remaining": m, "kek_version": k}.
 */
enum hv_rc hv_vault_rewrap(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, unsigned int batch, unsigned int max_batches,
    void (*progress)(unsigned long done, unsigned long remaining, void *arg),
    void *arg, json_t **out, struct hv_err *err);
/* Key store, KEK versions with DEK counts, rewrap progress, counts. */
enum hv_rc
hv_vault_status(struct hv_vault *v, json_t **out, struct hv_err *err);

/* Readiness: a database round trip and a key store probe. */
enum hv_rc hv_vault_ready(struct hv_vault *v, struct hv_err *err);

/* The service catalog as {"items": [...]} (GET /v1/services). */
enum hv_rc
hv_vault_services(struct hv_vault *v, json_t **out, struct hv_err *err);

#endif
