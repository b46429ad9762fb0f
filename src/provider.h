/*
 * provider: credential test and brokered use (SPEC section 4, the part
 * that talks to the outside world), and OAuth 2.0 refresh. Rules and
 * choices: docs/providers.md.
 *
 * hv_provider_test() sends the catalog's no-op request for the
 * credential's service and answers {"ok", "account", "detail",
 * "http_status"}; ok sets the credential `active`, not ok `failing`.
 * hv_provider_use() sends the caller's request ({"method", "path",
 * "query", "headers", "body"}) with the credential injected and answers
 * {"status", "headers", "body", "body_encoding"}; a 401/403 of the
 * provider sets `failing`, a 2xx `active`. Both are audited
 * (credential.test / credential.use) and update last_used_at through
 * hv_vault_cred_record_use(); the answer is released only after that row
 * is committed.
 *
 * Where a request may go: the credential's base_url, else the service's
 * base_url (configuration override applied); its host must be allowed by
 * the catalog (hv_service_host_allowed / _credential_host_allowed), http
 * only when allow_private_targets is on, and every address must pass the
 * outbound rules of fetch.h. A refusal is HV_E_FORBIDDEN (403) or
 * HV_E_INVALID (400) and nothing is sent.
 *
 * Secrets: the decrypted secret lives in jansson values (zeroing
 * allocator) and in struct hv_secret buffers for the injected header
 * lines and URL; everything the provider answers is scrubbed of every
 * secret value (raw, percent-encoded, JSON-escaped, and the Basic
 * credential's base64) before the caller sees it. Errors and details
 * name hosts, statuses and failure classes, never a value.
 *
 * Errors (besides those of hv_vault_cred_open_for_use): HV_E_INVALID (bad
 * use body), HV_E_FORBIDDEN (target refused), HV_E_EXPIRED (credential
 * expired, or an OAuth access token expired without a way to refresh it),
 * HV_E_UPSTREAM (use only: the provider could not be reached, timed out,
 * failed TLS or answered more than the cap; test reports these as ok
 * false), HV_E_CONFLICT (the credential's service left the catalog).
 *
 * Thread-safety: every function is thread-safe; each thread keeps its own
 * libcurl connection cache (fetch.h).
 */
#ifndef HV_PROVIDER_H
#define HV_PROVIDER_H

#include <jansson.h>
#include <stdbool.h>

#include "catalog.h"
#include "cfg.h"
#include "err.h"
#include "vault.h"

/*
 * POST /v1/credentials/{id}/test. On HV_OK *out is a new object
 * {"ok": bool, "account": string|null, "detail": string,
 * "http_status": int|null}.
 */
enum hv_rc hv_provider_test(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, json_t **out,
    struct hv_err *err) __attribute__((warn_unused_result));

/*
 * POST /v1/credentials/{id}/use with body (borrowed). On HV_OK *out is a
 * new object {"status": int, "headers": {lowercase name: value},
 * "body": string, "body_encoding": "utf-8"|"base64"}.
 */
enum hv_rc hv_provider_use(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const json_t *body,
    json_t **out, struct hv_err *err) __attribute__((warn_unused_result));
/*
 * The same, with the use's record (audit row, status, last_used_at) given
 * to group commit when done is not NULL (hv_vault_cred_record_use_async):
 * HV_OK with *pending true means *out is the answer, to be sent once
 * done(arg, rc, err) has run with HV_OK, or replaced by that error.
 */
enum hv_rc hv_provider_use_async(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx, const char *id,
    const json_t *body, hv_done_fn done, void *arg, bool *pending, json_t **out,
    struct hv_err *err) __attribute__((warn_unused_result));

/*
 * Validate a use body on its own (no credential needed): HV_OK or
 * HV_E_INVALID naming the field. hv_provider_use() runs it first.
 */
enum hv_rc hv_provider_check_use(const json_t *body, struct hv_err *err)
    __attribute__((warn_unused_result));

/* ------------------------------------------------------------------ */
/* Vault side (src/vault_provider.c)                                   */

/* Borrowed handles of an open vault. */
const struct hv_cfg *hv_vault_cfg(struct hv_vault *v);
const struct hv_catalog *hv_vault_catalog(struct hv_vault *v);

/* Register vault_provider.c's statements (hv_vault_register_statements). */
void hv_vault_provider_register(void);

/*
 * Does an oauth2 secret need a refresh? True when it has expires_at and
 * that is at most skew_s seconds away (or past). *can is set to whether
 * it holds both refresh_token and token_url. An unparsable expires_at
 * counts as expired.
 */
bool hv_vault_oauth_expiring(const json_t *secret, long skew_s, bool *can);

/*
 * The token endpoint call of a refresh: given the current secret
 * (borrowed), make *new_secret (new object: the old one with the new
 * tokens), or fail (any rc; the message is a secret-free detail).
 */
typedef enum hv_rc (*hv_refresh_fn)(
    void *arg, const json_t *secret, json_t **new_secret, struct hv_err *err);

/*
 * Refresh the OAuth tokens of credential id, serialized per credential:
 * lock the row (FOR UPDATE), check credentials:use, visibility,
 * allow-list and revocation as open_for_use does, decrypt the current
 * version; if it no longer needs a refresh (another request did it),
 * hand it out unchanged (*refreshed false); else call fn, seal its answer
 * as version + 1 with a new DEK, point the credential at it and write a
 * credential.rotate audit row (detail "oauth2 refresh"), all in one
 * transaction. On HV_OK *secret is the current secret (new reference).
 * fn's failure is returned as is and nothing changes.
 */
enum hv_rc hv_vault_cred_oauth_refresh(struct hv_vault *v,
    const struct hv_principal *p, const struct hv_reqctx *ctx, const char *id,
    long skew_s, hv_refresh_fn fn, void *arg, json_t **secret, bool *refreshed,
    struct hv_err *err) __attribute__((warn_unused_result));

#endif
