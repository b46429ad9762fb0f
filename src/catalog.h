/*
 * catalog: the service catalog of SPEC section 4, a data file shipped as
 * catalog/services.json (and embedded into the binary as hv_catalog_data,
 * the fallback when no path is configured).
 *
 * The file is a JSON array of service objects:
 *   id            [a-z0-9_]{1,32}; HSMVAULT_SERVICE_<ID>_BASE_URL overrides
 *                 its base_url
 *   name          display name
 *   auth_types    non-empty array of distinct auth types (api_key, bearer,
 *                 basic, oauth2, custom_headers); the first is the default
 *   injection     object: one injection (grammar below) for every auth type
 *                 listed, and for no other
 *   base_url      "https://host[:port][/path]" or null (the credential's
 *                 own base_url is then required). An origin without
 *                 the API version: request paths carry it (/v1/balance)
 *   allowed_hosts array of host names the secret may be sent to; "*.d.tld"
 *                 matches any subdomain of d.tld (not d.tld itself).
 *                 Required when base_url is set. With base_url null: empty
 *                 means any host the credential names (generic `http`),
 *                 non-empty means the credential's base_url host must
 *                 match (Shopify: "*.myshopify.com")
 *   token_url     page where a user creates a token, or null
 *   test          null, or the no-op request of the credential test:
 *                   method   "GET" | "POST" | "HEAD"
 *                   path     "" or starting with "/", relative to base_url
 *                   headers  optional object of non-secret headers
 *                   body     optional string
 *                   account  optional RFC 6901 JSON pointer (or array of
 *                            them, joined with " / ") to the account name
 *                            in a 2xx JSON answer; null when the provider
 *                            gives none
 *                   success  optional object {pointer: expected value}
 *                            that must also hold (Slack {"/ok": true})
 *                   json     optional boolean, default true: the answer
 *                            must be JSON (false: any 2xx body passes,
 *                            the generic service)
 *                 a 2xx status is required in every case
 *   notes         optional string for people (e.g. what else a provider
 *                 needs)
 * Unknown fields anywhere are refused. Validation is strict at load: a bad
 * file is HV_E_CONFIG naming the service and the field.
 *
 * Injection grammar (also checked for user-supplied injections, see
 * hv_injection_check()); "value" is the secret's key (api_key), token
 * (bearer) or access_token (oauth2):
 *   {"header": NAME, "prefix": STR?}   NAME: prefix || value
 *   {"query_param": NAME}              ?NAME=value
 *   {"basic": true}                    auth_type basic: Authorization:
 *                                      Basic base64(username:password)
 *   {"basic": true, "username": STR}   api_key/bearer/oauth2: fixed user
 *                                      name, value as password (Mailgun)
 *   {"basic": true, "password": STR}   value as user name, fixed password
 *   {"headers": true}                  custom_headers: every entry of the
 *                                      secret's headers object, as is
 * NAME of a header is an RFC 9110 token; prefix and fixed strings hold no
 * control characters.
 *
 * Base URL overrides (cfg service_<id>_base_url) replace base_url, and the
 * override's host is added to allowed_hosts, so tests can point a service
 * at a local stand-in. An override for an id not in the catalog is logged
 * and ignored.
 *
 * Ownership: struct hv_catalog owns everything; services, strings and json
 * returned by accessors are borrowed for the catalog's lifetime and must
 * not be modified. Thread-safety: read-only after load, so every accessor
 * is thread-safe; load and free are not.
 */
#ifndef HV_CATALOG_H
#define HV_CATALOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"
#include "err.h"

struct hv_catalog;
struct hv_service;

/* The embedded copy of catalog/services.json, NUL-terminated. */
extern const char hv_catalog_data[];

/*
 * Load the catalog from the file at path, or from hv_catalog_data when
 * path is NULL, and apply the base URL overrides of cfg (may be NULL).
 * On HV_OK *out is new, freed with hv_catalog_free(). Errors: HV_E_IO
 * (cannot read path), HV_E_CONFIG (bad JSON, bad field, bad override URL;
 * the message names the service id and field), HV_E_NOMEM.
 */
enum hv_rc hv_catalog_load(const char *path, const struct hv_cfg *cfg,
    struct hv_catalog **out, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(3)));

/* As hv_catalog_load() from a NUL-terminated JSON text (tests). */
enum hv_rc hv_catalog_parse(const char *text, const struct hv_cfg *cfg,
    struct hv_catalog **out, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(1, 3)));

/* Free *c and set it NULL. NULL-safe. */
void hv_catalog_free(struct hv_catalog **c);

/* Services in file order. */
size_t hv_catalog_count(const struct hv_catalog *c);
const struct hv_service *hv_catalog_at(const struct hv_catalog *c, size_t i);

/* The service with exactly this id, or NULL (also for a NULL id). */
const struct hv_service *
hv_catalog_find(const struct hv_catalog *c, const char *id);

/*
 * {"items": [service, ...]} for GET /v1/services: every field of the file
 * (id, name, auth_types, default_auth_type, injection, base_url with the
 * override applied, allowed_hosts with the override host, token_url,
 * test, notes). New reference; NULL when out of memory.
 */
json_t *hv_catalog_to_json(const struct hv_catalog *c);

/* One service as in hv_catalog_to_json(). New reference or NULL. */
json_t *hv_service_to_json(const struct hv_service *s);

const char *hv_service_id(const struct hv_service *s);
const char *hv_service_name(const struct hv_service *s);

/*
 * The base URL with the configuration override applied, without a
 * trailing slash; NULL for a generic service (base_url null, no
 * override): the credential's base_url is then required.
 */
const char *hv_service_base_url(const struct hv_service *s);

/*
 * True when the catalog gives no base_url (the `http` service, Shopify):
 * a credential of the service must carry its own base_url.
 */
bool hv_service_is_generic(const struct hv_service *s);

/*
 * May a credential of s carry a base_url on host (lowercase, no port)?
 * True for services with a catalog base_url (a self-hosted instance) and
 * for generic services without hosts; for a generic service with hosts
 * (Shopify), only a host matching its patterns (an override's host
 * counts, so that tests can point such a service at a stand-in).
 */
bool hv_service_credential_host_allowed(
    const struct hv_service *s, const char *host);

/* The token page URL, or NULL. */
const char *hv_service_token_url(const struct hv_service *s);

/* True when auth_type is one of the service's auth types. */
bool hv_service_supports(const struct hv_service *s, const char *auth_type);

/* The first (default) auth type. */
const char *hv_service_default_auth_type(const struct hv_service *s);

/*
 * The default injection for auth_type (borrowed; do not modify), or NULL
 * when the service does not support auth_type.
 */
json_t *hv_service_injection(const struct hv_service *s, const char *auth_type);

/* Allowed host patterns (override host included). */
size_t hv_service_host_count(const struct hv_service *s);
const char *hv_service_host(const struct hv_service *s, size_t i);

/*
 * True when host (a DNS name or IP literal, any case, optional trailing
 * dot, no port) matches one of the allowed patterns. Always false for a
 * generic service without hosts or override: the caller checks the
 * credential's own base_url host instead.
 */
bool hv_service_host_allowed(const struct hv_service *s, const char *host);

/* The test request object (borrowed), or NULL when there is none. */
json_t *hv_service_test(const struct hv_service *s);

/* Notes for people, or NULL. */
const char *hv_service_notes(const struct hv_service *s);

/* True for api_key, bearer, basic, oauth2, custom_headers. */
bool hv_auth_type_known(const char *auth_type);

/*
 * Check an injection object against the grammar above for auth_type.
 * HV_OK, or HV_E_INVALID with a message naming the offending field (never
 * a value). Used for catalog entries and for user-supplied injections.
 */
enum hv_rc hv_injection_check(const json_t *inj, const char *auth_type,
    struct hv_err *err) __attribute__((warn_unused_result));

/*
 * Host of an http(s) URL into out (cap bytes, lowercase, IPv6 without
 * brackets). False when url is not http:// or https:// with a host, has
 * user info, or the host does not fit.
 */
bool hv_url_host(const char *url, char *out, size_t cap)
    __attribute__((warn_unused_result, nonnull(2)));

#endif
