/*
 * stubprov: a stand-in provider for the test/use tests. A real HTTP
 * server (libmicrohttpd) on 127.0.0.1, on an ephemeral port, started by
 * the test itself, with routes that behave like the providers of the
 * catalog, plus routes that misbehave on purpose.
 *
 * Authorization: a request is "authorized" when one of its headers
 * equals (name any case, value exactly) a pair given to
 * hv_stubprov_accept_header(), or one of its query parameters equals a
 * pair given to hv_stubprov_accept_query().
 *
 * Routes (method-insensitive unless noted):
 *   /v1/balance                       Stripe: 200 balance | 401
 *   /user                             GitHub: 200 {"login": "octocat"} | 401
 *   /api/auth.test                    Slack: 200 {"ok": true, "team",
 *                                     "user"} | 200 {"ok": false}
 *   /client/v4/user/tokens/verify     Cloudflare: 200 {"success": true,
 *                                     "result": {"status": "active"}} | 401
 *   /admin/api/2024-10/shop.json      Shopify: {"shop": {"name"}} | 401
 *   /api/v4/user                      GitLab: {"username"} | 401
 *   /2010-04-01/Accounts.json         Twilio: {"accounts": [...]} | 401
 *   /api/v1/validate                  Datadog: {"valid": true} | 403
 *   /v1/models                        OpenAI/Anthropic: {"data": []} | 401
 *   /echo, /echo/...                  200, the request as JSON: {"method",
 *                                     "path", "query": {..}, "headers":
 *                                     {lowercase: value}, "body"} (so the
 *                                     secret comes back)
 *   /redirect                         302 to the configured location
 *   /slow                             answers after the configured delay
 *   /huge                             configured size, Content-Length set
 *   /huge-chunked                     configured size, chunked
 *   /notjson, /notjson/...            200 text/html
 *   /status/NNN                       status NNN, {"status": NNN}
 *   /oauth/token                      POST form: grant_type=refresh_token
 *                                     and an accepted refresh token give
 *                                     new tokens (the new access token is
 *                                     then accepted as a Bearer header);
 *                                     else 400 {"error": "invalid_grant"}
 *   anything else                     404
 *
 * Every request is counted and the last one is kept (hv_stubprov_last).
 *
 * Thread-safety: the server answers on its own threads; every function
 * here may be called from the test thread while it runs.
 */
#ifndef HV_TEST_STUBPROV_H
#define HV_TEST_STUBPROV_H

#include <jansson.h>
#include <stddef.h>

struct hv_stubprov;

/*
 * Start on 127.0.0.1 (http). Fails the test (exit 1) when it cannot. In a
 * process that installs hsmvault's JSON allocator (hv_mem_json_init),
 * install it first: the stand-in keeps JSON values.
 */
struct hv_stubprov *hv_stubprov_start(void);

/* The same over TLS with a PEM certificate and key (contents, not paths). */
struct hv_stubprov *
hv_stubprov_start_tls(const char *cert_pem, const char *key_pem);

void hv_stubprov_stop(struct hv_stubprov **s);

unsigned short hv_stubprov_port(const struct hv_stubprov *s);
/* "http://127.0.0.1:PORT" or "https://..." (static storage in s). */
const char *hv_stubprov_url(const struct hv_stubprov *s);

void hv_stubprov_accept_header(
    struct hv_stubprov *s, const char *name, const char *value);
void hv_stubprov_accept_query(
    struct hv_stubprov *s, const char *name, const char *value);
/* Forget every accepted pair and refresh token. */
void hv_stubprov_accept_clear(struct hv_stubprov *s);

/*
 * /oauth/token accepts refresh_token rt and answers access_token
 * new_access, refresh_token new_refresh (NULL: none), expires_in.
 */
void hv_stubprov_accept_refresh(struct hv_stubprov *s, const char *rt,
    const char *new_access, const char *new_refresh, long expires_in);

void hv_stubprov_set_slow_ms(struct hv_stubprov *s, long ms);
void hv_stubprov_set_huge_bytes(struct hv_stubprov *s, size_t n);
void hv_stubprov_set_redirect(struct hv_stubprov *s, const char *location);

/* Requests seen since start or the last reset. */
unsigned long hv_stubprov_count(struct hv_stubprov *s);
/* Requests whose path starts with prefix. */
unsigned long
hv_stubprov_count_prefix(struct hv_stubprov *s, const char *prefix);
/* The last request as in /echo (new reference), or NULL. */
json_t *hv_stubprov_last(struct hv_stubprov *s);
/* TCP connections accepted since start (connection reuse checks). */
unsigned long hv_stubprov_connections(struct hv_stubprov *s);
/* Zero the counters and forget the last request. */
void hv_stubprov_reset(struct hv_stubprov *s);

#endif
