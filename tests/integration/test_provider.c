/*
 * Credential test and brokered use (src/provider.c) against a real
 * PostgreSQL, a real SoftHSM2 token and a stand-in provider on 127.0.0.1
 * (tests/lib/stubprov.h), for several catalog services: good and bad
 * tokens (status, account, audit), every injection kind, scrubbing of
 * echoed secrets, escape attempts (path, headers, query, hosts, private
 * addresses) refused with a 4xx before anything is sent, redirects not
 * followed, timeouts, size caps, provider down, non-JSON answers,
 * revoked and expired credentials, OAuth 2.0 refresh stored as a new
 * version, and connection reuse.
 *
 * The stand-in runs on loopback, so the configuration allows private
 * targets and points the services' base URLs at it; the tests that prove
 * the private-address rule switch allow_private_targets off.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <openssl/evp.h>

#include "mem.h"
#include "provider.h"
#include "stubprov.h"
#include "testenv.h"
#include "uuid.h"
#include "vault.h"

struct env {
	struct hv_test_token tok;
	struct hv_test_db db;
	struct hv_cfg cfg;
	struct hv_vault *v;
	PGconn *pg;
	struct hv_principal cli;
	struct hv_stubprov *stub;  /* "the provider" */
	struct hv_stubprov *other; /* "another host": must see nothing */
};

static struct env E;
static const struct hv_reqctx CTX = {"req-prov", "127.0.0.1"};

/* ------------------------------------------------------------------ */

static json_t *
parse(const char *text)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);

	if (j == NULL)
		fail_msg("bad test json: %s: %s", je.text, text);
	return j;
}

/* Create a credential from a JSON body; copies its id. */
static void
create(const char *body, char id[HV_UUID_STR])
{
	struct hv_err err = {0};
	json_t *b = parse(body), *out = NULL;

	if (hv_vault_cred_create(E.v, &E.cli, &CTX, b, &out, &err) != HV_OK)
		fail_msg("create: %s: %s", err.msg, body);
	(void)snprintf(id, HV_UUID_STR, "%s",
	    json_string_value(json_object_get(out, "id")));
	json_decref(b);
	json_decref(out);
}

static json_t *
get_cred(const char *id)
{
	struct hv_err err = {0};
	json_t *out = NULL;

	if (hv_vault_cred_get(E.v, &E.cli, &CTX, id, &out, &err) != HV_OK)
		fail_msg("get: %s", err.msg);
	return out;
}

static void
assert_status(const char *id, const char *want)
{
	json_t *c = get_cred(id);
	const char *st = json_string_value(json_object_get(c, "status"));

	if (st == NULL || strcmp(st, want) != 0)
		fail_msg("status of %s is %s, want %s", id, st, want);
	json_decref(c);
}

static long
sql_long(const char *sql, const char *param)
{
	const char *params[1] = {param};
	PGresult *r = PQexecParams(
	    E.pg, sql, param != NULL ? 1 : 0, NULL, params, NULL, NULL, 0);
	long n;

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(E.pg));
	n = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
	    ? strtol(PQgetvalue(r, 0, 0), NULL, 10)
	    : -1;
	PQclear(r);
	return n;
}

static long
audit_count(const char *action, const char *cred, const char *outcome)
{
	const char *params[3] = {action, cred, outcome};
	PGresult *r = PQexecParams(E.pg,
	    "SELECT count(*) FROM audit_log "
	    "WHERE action = $1 AND credential_id = $2::uuid AND "
	    "($3::text IS NULL OR outcome = $3)",
	    3, NULL, params, NULL, NULL, 0);
	long n;

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("audit: %s", PQerrorMessage(E.pg));
	n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return n;
}

static json_t *
prov_test(const char *id)
{
	struct hv_err err = {0};
	json_t *out = NULL;

	if (hv_provider_test(E.v, &E.cli, &CTX, id, &out, &err) != HV_OK)
		fail_msg("test: %s", err.msg);
	return out;
}

static enum hv_rc
run_use(const char *id, const json_t *body, json_t **out, struct hv_err *err)
{
	memset(err, 0, sizeof(*err));
	*out = NULL;
	return hv_provider_use(E.v, &E.cli, &CTX, id, body, out, err);
}

static json_t *
use_ok(const char *id, const char *body)
{
	struct hv_err err;
	json_t *b = parse(body), *out = NULL;

	if (run_use(id, b, &out, &err) != HV_OK)
		fail_msg("use: %s (%s)", err.msg, body);
	json_decref(b);
	return out;
}

/* The JSON the echo route answered inside a use answer. */
static json_t *
echoed(const json_t *answer)
{
	const char *b = json_string_value(json_object_get(answer, "body"));

	assert_non_null(b);
	return parse(b);
}

static bool
dump_contains(const json_t *j, const char *needle)
{
	char *s = json_dumps(j, JSON_COMPACT);
	bool found = s != NULL && strstr(s, needle) != NULL;
	json_malloc_t m;
	json_free_t f;

	json_get_alloc_funcs(&m, &f);
	f(s);
	return found;
}

static void
b64(const char *in, char *out, size_t cap)
{
	assert_true((strlen(in) + 2) / 3 * 4 + 1 <= cap);
	EVP_EncodeBlock(
	    (unsigned char *)out, (const unsigned char *)in, (int)strlen(in));
}

/* ------------------------------------------------------------------ */

struct svc_case {
	const char *name;
	const char *create_good;
	const char *create_bad;
	const char *account; /* expected, or NULL */
};

/* test: a good token passes and names the account; a bad one fails */
static void
test_test_good_and_bad(void **state)
{
	static const struct svc_case cases[] = {
	    {"stripe",
	        "{\"service\":\"stripe\",\"name\":\"s\",\"secret\":"
	        "{\"key\":\"sk_test_good\"}}",
	        "{\"service\":\"stripe\","
	        "\"name\":\"s\",\"secret\":{\"key\":\"sk_test_bad\"}}",
	        NULL},
	    {"github",
	        "{\"service\":\"github\",\"name\":\"g\",\"secret\":"
	        "{\"token\":\"ghp_good\"}}",
	        "{\"service\":\"github\","
	        "\"name\":\"g\",\"secret\":{\"token\":\"ghp_bad\"}}",
	        "octocat"},
	    {"slack",
	        "{\"service\":\"slack\",\"name\":\"sl\",\"secret\":"
	        "{\"token\":\"xoxb-good\"}}",
	        "{\"service\":\"slack\","
	        "\"name\":\"sl\",\"secret\":{\"token\":\"xoxb-bad\"}}",
	        "Acme / hvbot"},
	    {"cloudflare",
	        "{\"service\":\"cloudflare\",\"name\":\"c\","
	        "\"secret\":{\"token\":\"cf_good\"}}",
	        "{\"service\":"
	        "\"cloudflare\",\"name\":\"c\",\"secret\":{\"token\":"
	        "\"cf_bad\"}}",
	        NULL},
	    {"twilio",
	        "{\"service\":\"twilio\",\"name\":\"t\",\"secret\":"
	        "{\"username\":\"ACgood\",\"password\":\"authtok\"}}",
	        "{\"service\":\"twilio\",\"name\":\"t\",\"secret\":"
	        "{\"username\":\"ACgood\",\"password\":\"wrong\"}}",
	        "Acme Twilio"},
	    {"gitlab",
	        "{\"service\":\"gitlab\",\"name\":\"gl\","
	        "\"auth_type\":\"api_key\",\"secret\":{\"key\":"
	        "\"glpat-good\"}}",
	        "{\"service\":\"gitlab\",\"name\":\"gl\","
	        "\"auth_type\":\"api_key\",\"secret\":{\"key\":"
	        "\"glpat-bad\"}}",
	        "glbot"},
	    {"datadog",
	        "{\"service\":\"datadog\",\"name\":\"d\",\"secret\":"
	        "{\"key\":\"dd_good\"}}",
	        "{\"service\":\"datadog\","
	        "\"name\":\"d\",\"secret\":{\"key\":\"dd_bad\"}}",
	        NULL},
	    {"anthropic",
	        "{\"service\":\"anthropic\",\"name\":\"a\","
	        "\"secret\":{\"key\":\"sk-ant-good\"}}",
	        "{\"service\":"
	        "\"anthropic\",\"name\":\"a\",\"secret\":{\"key\":"
	        "\"sk-ant-bad\"}}",
	        NULL},
	};
	char good[HV_UUID_STR], bad[HV_UUID_STR];
	json_t *r, *c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		create(cases[i].create_good, good);
		create(cases[i].create_bad, bad);
		r = prov_test(good);
		if (!json_is_true(json_object_get(r, "ok")))
			fail_msg("%s: good token failed: %s", cases[i].name,
			    json_string_value(json_object_get(r, "detail")));
		if (cases[i].account != NULL)
			assert_string_equal(
			    json_string_value(json_object_get(r, "account")),
			    cases[i].account);
		else
			assert_true(
			    json_is_null(json_object_get(r, "account")));
		assert_int_equal(
		    json_integer_value(json_object_get(r, "http_status")), 200);
		json_decref(r);
		assert_status(good, "active");
		c = get_cred(good);
		assert_true(json_is_string(json_object_get(c, "last_used_at")));
		json_decref(c);
		assert_int_equal(
		    audit_count("credential.test", good, "success"), 1);

		r = prov_test(bad);
		if (!json_is_false(json_object_get(r, "ok")))
			fail_msg("%s: bad token passed", cases[i].name);
		assert_true(json_is_null(json_object_get(r, "account")));
		assert_non_null(
		    strstr(json_string_value(json_object_get(r, "detail")),
		        "provider answered"));
		json_decref(r);
		assert_status(bad, "failing");
		assert_int_equal(
		    audit_count("credential.test", bad, "failure"), 1);
	}
}

/* Shopify: per-shop host from the credential's base_url. */
static void
test_shopify(void **state)
{
	char id[HV_UUID_STR], evil[HV_UUID_STR];
	char body[512];
	struct hv_err err;
	json_t *r, *b;
	unsigned long before;

	(void)state;
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"shopify\","
	    "\"name\":\"shop\",\"base_url\":\"%s\",\"secret\":{\"key\":"
	    "\"shpat_good\"}}",
	    hv_stubprov_url(E.stub));
	create(body, id);
	r = prov_test(id);
	assert_true(json_is_true(json_object_get(r, "ok")));
	assert_string_equal(
	    json_string_value(json_object_get(r, "account")), "Acme Shop");
	json_decref(r);

	/* a shop credential may not name a host outside *.myshopify.com */
	create("{\"service\":\"shopify\",\"name\":\"evil\",\"base_url\":"
	       "\"https://evil.example.com\",\"secret\":{\"key\":\"shpat_x\"}}",
	    evil);
	before = hv_stubprov_count(E.stub);
	b = parse("{\"path\": \"/admin/api/2024-10/shop.json\"}");
	assert_int_equal(run_use(evil, b, &r, &err), HV_E_FORBIDDEN);
	assert_non_null(strstr(err.msg, "evil.example.com"));
	memset(&err, 0, sizeof(err));
	assert_int_equal(hv_provider_test(E.v, &E.cli, &CTX, evil, &r, &err),
	    HV_E_FORBIDDEN);
	json_decref(b);
	assert_int_equal(hv_stubprov_count(E.stub), before);
	assert_status(evil, "active");
	assert_int_equal(audit_count("credential.use", evil, NULL), 0);
}

/* use: header, query parameter, basic and custom headers injection */
static void
test_use_injection(void **state)
{
	char id[HV_UUID_STR], body[1024], hdr[128], want[160];
	json_t *a, *e, *h;

	(void)state;
	/* header + prefix (Stripe) with the caller's query, headers, body */
	create("{\"service\":\"stripe\",\"name\":\"inj\",\"secret\":{\"key\":"
	       "\"sk_test_good\"}}",
	    id);
	a = use_ok(id,
	    "{\"method\":\"POST\",\"path\":\"/echo/v1/charges"
	    "?expand=x\",\"query\":{\"limit\":\"3\",\"q\":\"a b&c=d\"},"
	    "\"headers\":{\"Idempotency-Key\":\"k1\",\"Accept\":"
	    "\"application/json\"},\"body\":\"amount=100&currency=usd\"}");
	assert_int_equal(json_integer_value(json_object_get(a, "status")), 200);
	assert_string_equal(
	    json_string_value(json_object_get(a, "body_encoding")), "utf-8");
	e = hv_stubprov_last(E.stub);
	h = json_object_get(e, "headers");
	assert_string_equal(
	    json_string_value(json_object_get(h, "authorization")),
	    "Bearer sk_test_good");
	assert_string_equal(
	    json_string_value(json_object_get(h, "idempotency-key")), "k1");
	assert_string_equal(
	    json_string_value(json_object_get(e, "method")), "POST");
	assert_string_equal(
	    json_string_value(json_object_get(e, "path")), "/echo/v1/charges");
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(e, "query"), "q")),
	    "a b&c=d");
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(e, "query"), "expand")),
	    "x");
	assert_string_equal(json_string_value(json_object_get(e, "body")),
	    "amount=100&currency=usd");
	json_decref(e);
	/* the echoed secret is scrubbed from what the caller gets */
	assert_false(dump_contains(a, "sk_test_good"));
	assert_true(dump_contains(a, "[REDACTED]"));
	assert_true(json_is_object(json_object_get(a, "headers")));
	assert_non_null(
	    json_object_get(json_object_get(a, "headers"), "content-type"));
	assert_null(
	    json_object_get(json_object_get(a, "headers"), "content-length"));
	json_decref(a);

	/* a JSON body is serialized and typed */
	a = use_ok(id,
	    "{\"method\":\"PUT\",\"path\":\"/echo/j\",\"body\":"
	    "{\"n\":1,\"s\":\"x\"}}");
	e = echoed(a);
	assert_string_equal(json_string_value(json_object_get(e, "body")),
	    "{\"n\":1,\"s\":\"x\"}");
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(e, "headers"), "content-type")),
	    "application/json");
	json_decref(e);
	json_decref(a);

	/* query parameter (generic http service) */
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"http\",\"name\":"
	    "\"q\",\"base_url\":\"%s\",\"auth_type\":\"api_key\","
	    "\"injection\":{\"query_param\":\"api_key\"},\"secret\":{\"key\":"
	    "\"q/secret+value\"}}",
	    hv_stubprov_url(E.stub));
	create(body, id);
	a = use_ok(id, "{\"path\":\"/echo/q\",\"query\":{\"x\":\"1\"}}");
	e = hv_stubprov_last(E.stub);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(e, "query"), "api_key")),
	    "q/secret+value");
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(e, "query"), "x")),
	    "1");
	assert_null(
	    json_object_get(json_object_get(e, "headers"), "authorization"));
	json_decref(e);
	assert_false(dump_contains(a, "q/secret+value"));
	assert_false(dump_contains(a, "q\\/secret+value"));
	assert_false(dump_contains(a, "secret%2Bvalue"));
	json_decref(a);

	/* basic (Twilio): username and password from the secret */
	create("{\"service\":\"twilio\",\"name\":\"b\",\"secret\":"
	       "{\"username\":\"ACgood\",\"password\":\"authtok\"}}",
	    id);
	a = use_ok(id, "{\"path\":\"/echo/basic\"}");
	e = hv_stubprov_last(E.stub);
	b64("ACgood:authtok", hdr, sizeof(hdr));
	(void)snprintf(want, sizeof(want), "Basic %s", hdr);
	assert_string_equal(
	    json_string_value(json_object_get(
	        json_object_get(e, "headers"), "authorization")),
	    want);
	json_decref(e);
	assert_false(dump_contains(a, hdr));
	assert_false(dump_contains(a, "authtok"));
	json_decref(a);

	/* basic with a fixed user name (Mailgun: "api", key as password) */
	create("{\"service\":\"mailgun\",\"name\":\"m\",\"secret\":{\"key\":"
	       "\"key-mailgun\"}}",
	    id);
	a = use_ok(id, "{\"path\":\"/echo/mg\"}");
	e = hv_stubprov_last(E.stub);
	b64("api:key-mailgun", hdr, sizeof(hdr));
	(void)snprintf(want, sizeof(want), "Basic %s", hdr);
	assert_string_equal(
	    json_string_value(json_object_get(
	        json_object_get(e, "headers"), "authorization")),
	    want);
	json_decref(e);
	json_decref(a);

	/* custom headers (Cloudflare legacy global key) */
	create("{\"service\":\"cloudflare\",\"name\":\"ch\",\"auth_type\":"
	       "\"custom_headers\",\"secret\":{\"headers\":{\"X-Auth-Email\":"
	       "\"ops@example.com\",\"X-Auth-Key\":\"cfglobal123\"}}}",
	    id);
	a = use_ok(id, "{\"path\":\"/echo/ch\"}");
	e = hv_stubprov_last(E.stub);
	h = json_object_get(e, "headers");
	assert_string_equal(
	    json_string_value(json_object_get(h, "x-auth-email")),
	    "ops@example.com");
	assert_string_equal(
	    json_string_value(json_object_get(h, "x-auth-key")), "cfglobal123");
	json_decref(e);
	assert_false(dump_contains(a, "cfglobal123"));
	json_decref(a);

	/* header without prefix (Anthropic x-api-key) */
	create("{\"service\":\"anthropic\",\"name\":\"an\",\"secret\":"
	       "{\"key\":\"sk-ant-good\"}}",
	    id);
	a = use_ok(id,
	    "{\"path\":\"/echo/an\",\"headers\":"
	    "{\"anthropic-version\":\"2023-06-01\"}}");
	e = hv_stubprov_last(E.stub);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(e, "headers"), "x-api-key")),
	    "sk-ant-good");
	json_decref(e);
	json_decref(a);
}

/* Every escape attempt: 4xx, nothing sent anywhere, nothing changed. */
static void
test_use_escapes(void **state)
{
	static const char *const bad[] = {
	    "{\"path\": \"//evil.example.com/x\"}",
	    "{\"path\": \"http://evil.example.com/x\"}",
	    "{\"path\": \"https://evil.example.com\"}",
	    "{\"path\": \"evil.example.com/x\"}",
	    "{\"path\": \"@evil.example.com/x\"}",
	    "{\"path\": \"/x@evil.example.com\"}",
	    "{\"path\": \"\"}",
	    "{\"path\": \"/echo/../../etc/passwd\"}",
	    "{\"path\": \"/..\"}",
	    "{\"path\": \"/echo/..\"}",
	    "{\"path\": \"/./echo\"}",
	    "{\"path\": \"/echo/%2e%2e/x\"}",
	    "{\"path\": \"/echo/%2E%2e\"}",
	    "{\"path\": \"/echo/.%2E/x\"}",
	    "{\"path\": \"/echo/..;/x\"}",
	    "{\"path\": \"/echo%2f..%2fx\"}",
	    "{\"path\": \"/echo%5cx\"}",
	    "{\"path\": \"/echo%00x\"}",
	    "{\"path\": \"/echo%zz\"}",
	    "{\"path\": \"/echo%2\"}",
	    "{\"path\": \"/echo\\\\x\"}",
	    "{\"path\": \"/echo\\r\\nHost: evil.example.com\"}",
	    "{\"path\": \"/echo x\"}",
	    "{\"path\": \"/echo#frag\"}",
	    "{\"path\": \"/\\u00e9\"}",
	    "{\"path\": 5}",
	    "{}",
	    "{\"path\": \"/echo\", \"url\": \"http://evil.example.com\"}",
	    "{\"path\": \"/echo\", \"method\": \"TRACE\"}",
	    "{\"path\": \"/echo\", \"method\": \"get\"}",
	    "{\"path\": \"/echo\", \"method\": \"CONNECT\"}",
	    "{\"path\": \"/echo\", \"headers\": {\"Host\": \"evil.example."
	    "com\"}}",
	    "{\"path\": \"/echo\", \"headers\": {\"Authorization\": "
	    "\"Bearer mine\"}}",
	    "{\"path\": \"/echo\", \"headers\": {\"authorization\": "
	    "\"Bearer mine\"}}",
	    "{\"path\": \"/echo\", \"headers\": {\"Content-Length\": \"5\"}}",
	    "{\"path\": \"/echo\", \"headers\": {\"Transfer-Encoding\": "
	    "\"chunked\"}}",
	    "{\"path\": \"/echo\", \"headers\": {\"Connection\": \"close\"}}",
	    "{\"path\": \"/echo\", \"headers\": {\"Accept-Encoding\": "
	    "\"gzip\"}}",
	    "{\"path\": \"/echo\", \"headers\": {\"X-A\": \"v\\r\\nHost: e\"}}",
	    "{\"path\": \"/echo\", \"headers\": {\"X:A\": \"v\"}}",
	    "{\"path\": \"/echo\", \"headers\": {\"X A\": \"v\"}}",
	    "{\"path\": \"/echo\", \"headers\": {\"X-A\": 1}}",
	    "{\"path\": \"/echo\", \"headers\": [\"X-A: v\"]}",
	    "{\"path\": \"/echo\", \"query\": {\"a\": 1}}",
	    "{\"path\": \"/echo\", \"query\": \"a=1\"}",
	    "{\"path\": \"/echo\", \"body\": 5}",
	    "{\"path\": \"/echo\", \"body\": true}",
	    "{\"path\": \"/echo\", \"method\": \"HEAD\", \"body\": \"x\"}",
	};
	char id[HV_UUID_STR], qid[HV_UUID_STR], body[512];
	struct hv_err err;
	json_t *b, *out, *c;
	long audit_before;
	size_t i;
	enum hv_rc rc;

	(void)state;
	create("{\"service\":\"stripe\",\"name\":\"esc\",\"secret\":{\"key\":"
	       "\"sk_test_good\"}}",
	    id);
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"http\",\"name\":"
	    "\"qesc\",\"base_url\":\"%s\",\"auth_type\":\"api_key\","
	    "\"injection\":{\"query_param\":\"api_key\"},\"secret\":{\"key\":"
	    "\"qk\"}}",
	    hv_stubprov_url(E.stub));
	create(body, qid);
	hv_stubprov_reset(E.stub);
	hv_stubprov_reset(E.other);
	audit_before = sql_long("SELECT count(*) FROM audit_log", NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b = parse(bad[i]);
		rc = run_use(id, b, &out, &err);
		if (rc != HV_E_INVALID)
			fail_msg(
			    "%s: rc %d (%s), want 400", bad[i], rc, err.msg);
		assert_null(out);
		assert_null(strstr(err.msg, "sk_test_good"));
		json_decref(b);
	}
	/* the injected query parameter cannot be set or shadowed */
	{
		static const char *const qbad[] = {
		    "{\"path\": \"/echo\", \"query\": {\"api_key\": \"x\"}}",
		    "{\"path\": \"/echo?api_key=x\"}",
		    "{\"path\": \"/echo?a=1&api_key=x\"}",
		    "{\"path\": \"/echo?api%5Fkey=x\"}",
		    "{\"path\": \"/echo?api_key\"}",
		};

		for (i = 0; i < sizeof(qbad) / sizeof(qbad[0]); i++) {
			b = parse(qbad[i]);
			rc = run_use(qid, b, &out, &err);
			if (rc != HV_E_INVALID)
				fail_msg("%s: rc %d (%s), want 400", qbad[i],
				    rc, err.msg);
			json_decref(b);
		}
	}
	assert_int_equal(hv_stubprov_count(E.stub), 0);
	assert_int_equal(hv_stubprov_count(E.other), 0);
	assert_int_equal(
	    sql_long("SELECT count(*) FROM audit_log", NULL), audit_before);
	c = get_cred(id);
	assert_true(json_is_null(json_object_get(c, "last_used_at")));
	json_decref(c);
	assert_int_equal(hv_provider_check_use(NULL, &err), HV_E_INVALID);
}

/* Loopback and private targets are refused unless configured. */
static void
test_private_targets(void **state)
{
	char id[HV_UUID_STR], https_id[HV_UUID_STR], lh_id[HV_UUID_STR];
	char gen[HV_UUID_STR], body[512];
	struct hv_err err;
	unsigned long conns;
	json_t *b, *out;

	(void)state;
	create("{\"service\":\"stripe\",\"name\":\"priv\",\"secret\":{\"key\":"
	       "\"sk_test_good\"}}",
	    id);
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"stripe\",\"name\":"
	    "\"priv-https\",\"base_url\":\"https://127.0.0.1:%u\",\"secret\":"
	    "{\"key\":\"sk_test_good\"}}",
	    (unsigned int)hv_stubprov_port(E.stub));
	create(body, https_id);
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"github\",\"name\":"
	    "\"priv-lh\",\"base_url\":\"https://localhost:%u\",\"secret\":"
	    "{\"token\":\"ghp_good\"}}",
	    (unsigned int)hv_stubprov_port(E.stub));
	create(body, lh_id);
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"http\",\"name\":"
	    "\"priv-gen\",\"base_url\":\"https://169.254.169.254\","
	    "\"auth_type\":\"bearer\",\"secret\":{\"token\":\"tok\"}}");
	create(body, gen);
	hv_stubprov_reset(E.stub);
	conns = hv_stubprov_connections(E.stub);

	E.cfg.allow_private_targets = false;
	b = parse("{\"path\": \"/echo\"}");
	/* http to loopback: no clear-text secrets, no private address */
	assert_int_equal(run_use(id, b, &out, &err), HV_E_FORBIDDEN);
	/* https to 127.0.0.1, to "localhost", to the metadata address */
	assert_int_equal(run_use(https_id, b, &out, &err), HV_E_FORBIDDEN);
	assert_non_null(strstr(err.msg, "private"));
	assert_int_equal(run_use(lh_id, b, &out, &err), HV_E_FORBIDDEN);
	assert_int_equal(run_use(gen, b, &out, &err), HV_E_FORBIDDEN);
	memset(&err, 0, sizeof(err));
	assert_int_equal(
	    hv_provider_test(E.v, &E.cli, &CTX, https_id, &out, &err),
	    HV_E_FORBIDDEN);
	memset(&err, 0, sizeof(err));
	assert_int_equal(hv_provider_test(E.v, &E.cli, &CTX, id, &out, &err),
	    HV_E_FORBIDDEN);
	E.cfg.allow_private_targets = true;
	json_decref(b);
	assert_int_equal(hv_stubprov_count(E.stub), 0);
	assert_int_equal(hv_stubprov_connections(E.stub), conns);
	/* refusals are not the credential's fault: status unchanged */
	assert_status(https_id, "active");
	assert_status(gen, "active");
}

static void
test_redirect(void **state)
{
	char id[HV_UUID_STR], loc[256];
	json_t *a;

	(void)state;
	create("{\"service\":\"stripe\",\"name\":\"redir\",\"secret\":{\"key\":"
	       "\"sk_test_good\"}}",
	    id);
	(void)snprintf(loc, sizeof(loc), "%s/echo", hv_stubprov_url(E.other));
	hv_stubprov_set_redirect(E.stub, loc);
	hv_stubprov_reset(E.other);
	a = use_ok(id, "{\"path\": \"/redirect\"}");
	assert_int_equal(json_integer_value(json_object_get(a, "status")), 302);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(a, "headers"), "location")),
	    loc);
	json_decref(a);
	assert_int_equal(hv_stubprov_count(E.other), 0);
}

static void
test_slow_huge_down_notjson(void **state)
{
	char id[HV_UUID_STR], slow[HV_UUID_STR], huge[HV_UUID_STR];
	char down[HV_UUID_STR], nj[HV_UUID_STR], body[512];
	struct hv_err err;
	struct timespec t0, t1;
	json_t *b, *out, *r;
	long ms;

	(void)state;
	create("{\"service\":\"stripe\",\"name\":\"shd\",\"secret\":{\"key\":"
	       "\"sk_test_good\"}}",
	    id);
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"http\",\"name\":"
	    "\"slow\",\"base_url\":\"%s/slow\",\"auth_type\":\"bearer\","
	    "\"secret\":{\"token\":\"tok-slow\"}}",
	    hv_stubprov_url(E.stub));
	create(body, slow);
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"http\",\"name\":"
	    "\"huge\",\"base_url\":\"%s/huge\",\"auth_type\":\"bearer\","
	    "\"secret\":{\"token\":\"tok-huge\"}}",
	    hv_stubprov_url(E.stub));
	create(body, huge);
	create("{\"service\":\"http\",\"name\":\"down\",\"base_url\":"
	       "\"http://127.0.0.1:1\",\"auth_type\":\"bearer\",\"secret\":"
	       "{\"token\":\"tok-down\"}}",
	    down);
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"github\",\"name\":"
	    "\"nj\",\"base_url\":\"%s/notjson\",\"secret\":{\"token\":"
	    "\"ghp_good\"}}",
	    hv_stubprov_url(E.stub));
	create(body, nj);

	/* slow: a clean timeout */
	E.cfg.upstream_timeout_ms = 400;
	hv_stubprov_set_slow_ms(E.stub, 3000);
	b = parse("{\"path\": \"/slow\"}");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(run_use(id, b, &out, &err), HV_E_UPSTREAM);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms < 2500);
	assert_non_null(strstr(err.msg, "timed out"));
	assert_null(strstr(err.msg, "sk_test_good"));
	json_decref(b);
	assert_int_equal(audit_count("credential.use", id, "failure"), 1);
	assert_status(id, "active"); /* a timeout is not a bad token */
	r = prov_test(slow);
	assert_true(json_is_false(json_object_get(r, "ok")));
	assert_non_null(strstr(
	    json_string_value(json_object_get(r, "detail")), "timed out"));
	assert_true(json_is_null(json_object_get(r, "http_status")));
	json_decref(r);
	assert_status(slow, "failing");
	E.cfg.upstream_timeout_ms = 30000;

	/* huge: cut off cleanly, with and without Content-Length */
	E.cfg.upstream_max_response = 64 * 1024;
	hv_stubprov_set_huge_bytes(E.stub, 2 * 1024 * 1024);
	b = parse("{\"path\": \"/huge\"}");
	assert_int_equal(run_use(id, b, &out, &err), HV_E_UPSTREAM);
	assert_non_null(strstr(err.msg, "cut off"));
	json_decref(b);
	b = parse("{\"path\": \"/huge-chunked\"}");
	assert_int_equal(run_use(id, b, &out, &err), HV_E_UPSTREAM);
	assert_non_null(strstr(err.msg, "cut off"));
	json_decref(b);
	r = prov_test(huge);
	assert_true(json_is_false(json_object_get(r, "ok")));
	assert_non_null(
	    strstr(json_string_value(json_object_get(r, "detail")), "cut off"));
	json_decref(r);
	E.cfg.upstream_max_response = 4 * 1024 * 1024;
	hv_stubprov_set_huge_bytes(E.stub, 1000);
	r = use_ok(id, "{\"path\": \"/huge\"}");
	assert_int_equal(json_string_length(json_object_get(r, "body")), 1000);
	json_decref(r);

	/* provider down */
	r = prov_test(down);
	assert_true(json_is_false(json_object_get(r, "ok")));
	assert_non_null(strstr(
	    json_string_value(json_object_get(r, "detail")), "cannot connect"));
	assert_null(strstr(
	    json_string_value(json_object_get(r, "detail")), "tok-down"));
	json_decref(r);
	assert_status(down, "failing");
	b = parse("{\"path\": \"/x\"}");
	assert_int_equal(run_use(down, b, &out, &err), HV_E_UPSTREAM);
	json_decref(b);

	/* a 200 that is not JSON fails a JSON service's test */
	r = prov_test(nj);
	assert_true(json_is_false(json_object_get(r, "ok")));
	assert_non_null(strstr(
	    json_string_value(json_object_get(r, "detail")), "not with JSON"));
	json_decref(r);
	/* the generic service takes any 2xx */
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"http\",\"name\":"
	    "\"html\",\"base_url\":\"%s/notjson\",\"auth_type\":\"bearer\","
	    "\"secret\":{\"token\":\"tok-html\"}}",
	    hv_stubprov_url(E.stub));
	create(body, nj);
	r = prov_test(nj);
	assert_true(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
}

/* 401/403 from the provider: failing; a later success: active. */
static void
test_use_status(void **state)
{
	char id[HV_UUID_STR];
	json_t *a;

	(void)state;
	create("{\"service\":\"stripe\",\"name\":\"st\",\"secret\":{\"key\":"
	       "\"sk_test_later\"}}",
	    id);
	a = use_ok(id, "{\"path\": \"/v1/balance\"}");
	assert_int_equal(json_integer_value(json_object_get(a, "status")), 401);
	json_decref(a);
	assert_status(id, "failing");
	assert_int_equal(audit_count("credential.use", id, "failure"), 1);
	a = use_ok(id, "{\"path\": \"/status/404\"}");
	json_decref(a);
	assert_status(id, "failing"); /* 404: unchanged */
	hv_stubprov_accept_header(
	    E.stub, "Authorization", "Bearer sk_test_later");
	a = use_ok(id, "{\"path\": \"/v1/balance\"}");
	assert_int_equal(json_integer_value(json_object_get(a, "status")), 200);
	assert_true(dump_contains(a, "balance"));
	json_decref(a);
	assert_status(id, "active");
	/* outcome: success below 400, failure from 400 (401 and 404) */
	assert_int_equal(audit_count("credential.use", id, "success"), 1);
	assert_int_equal(audit_count("credential.use", id, "failure"), 2);
	a = use_ok(id, "{\"path\": \"/status/403\"}");
	json_decref(a);
	assert_status(id, "failing");
	a = use_ok(id, "{\"path\": \"/status/204\", \"method\": \"DELETE\"}");
	assert_int_equal(json_integer_value(json_object_get(a, "status")), 204);
	assert_string_equal(json_string_value(json_object_get(a, "body")), "");
	json_decref(a);
	assert_status(id, "active");
}

static void
test_revoked_expired_access(void **state)
{
	char id[HV_UUID_STR], ex[HV_UUID_STR];
	struct hv_err err = {0};
	struct hv_principal p;
	json_t *b, *out = NULL, *rv = NULL;
	unsigned long before;

	(void)state;
	create("{\"service\":\"stripe\",\"name\":\"rv\",\"secret\":{\"key\":"
	       "\"sk_test_good\"}}",
	    id);
	create(
	    "{\"service\":\"stripe\",\"name\":\"ex\",\"expires_at\":"
	    "\"2001-01-01T00:00:00Z\",\"secret\":{\"key\":\"sk_test_good\"}}",
	    ex);
	before = hv_stubprov_count(E.stub);
	b = parse("{\"path\": \"/v1/balance\"}");
	assert_int_equal(
	    hv_vault_cred_revoke(E.v, &E.cli, &CTX, id, true, &rv, &err),
	    HV_OK);
	json_decref(rv);
	assert_int_equal(run_use(id, b, &out, &err), HV_E_REVOKED);
	assert_int_equal(
	    hv_provider_test(E.v, &E.cli, &CTX, id, &out, &err), HV_E_REVOKED);
	assert_int_equal(run_use(ex, b, &out, &err), HV_E_EXPIRED);
	assert_string_equal(hv_rc_code(HV_E_EXPIRED), "credential_expired");
	assert_int_equal(
	    hv_provider_test(E.v, &E.cli, &CTX, ex, &out, &err), HV_E_EXPIRED);
	rv = NULL;
	assert_int_equal(
	    hv_vault_cred_revoke(E.v, &E.cli, &CTX, id, false, &rv, &err),
	    HV_OK);
	json_decref(rv);
	out = use_ok(id, "{\"path\": \"/v1/balance\"}");
	json_decref(out);

	/* scope and visibility come first */
	memset(&p, 0, sizeof(p));
	assert_int_equal(hv_uuid_new(p.key_id), HV_OK);
	(void)snprintf(p.name, sizeof(p.name), "reader");
	(void)snprintf(
	    p.workspace_id, sizeof(p.workspace_id), "%s", E.cli.workspace_id);
	p.scopes = HV_SCOPE_CRED_READ;
	p.all_credentials = true;
	assert_int_equal(
	    hv_provider_use(E.v, &p, &CTX, id, b, &out, &err), HV_E_FORBIDDEN);
	assert_int_equal(
	    hv_provider_test(E.v, &p, &CTX, id, &out, &err), HV_E_FORBIDDEN);
	p.scopes = HV_SCOPE_CRED_USE;
	assert_int_equal(
	    hv_provider_use(E.v, &p, &CTX,
	        "00000000-0000-4000-8000-000000000000", b, &out, &err),
	    HV_E_NOT_FOUND);
	assert_int_equal(
	    hv_provider_use(E.v, &p, &CTX, "not-a-uuid", b, &out, &err),
	    HV_E_NOT_FOUND);
	json_decref(b);
	assert_int_equal(hv_stubprov_count(E.stub), before + 1);
}

/* OAuth 2.0: an expired access token is refreshed, stored, audited. */
static void
test_oauth_refresh(void **state)
{
	char id[HV_UUID_STR], bad[HV_UUID_STR], noref[HV_UUID_STR];
	char body[1024], basic[128], want[160];
	struct hv_err err = {0};
	json_t *r, *c, *sec = NULL, *e, *b, *out;
	unsigned long tokens;

	(void)state;
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"github\",\"name\":"
	    "\"oa\",\"auth_type\":\"oauth2\",\"secret\":{\"access_token\":"
	    "\"gho_old\",\"refresh_token\":\"ghr_1\",\"client_id\":\"cid\","
	    "\"client_secret\":\"csecret\",\"token_url\":\"%s/oauth/token\","
	    "\"expires_at\":\"2001-01-01T00:00:00Z\"}}",
	    hv_stubprov_url(E.stub));
	create(body, id);
	hv_stubprov_accept_refresh(E.stub, "ghr_1", "gho_new", "ghr_2", 3600);
	r = prov_test(id);
	if (!json_is_true(json_object_get(r, "ok")))
		fail_msg("refresh test: %s",
		    json_string_value(json_object_get(r, "detail")));
	assert_string_equal(
	    json_string_value(json_object_get(r, "account")), "octocat");
	json_decref(r);
	c = get_cred(id);
	assert_int_equal(json_integer_value(json_object_get(c, "version")), 2);
	json_decref(c);
	assert_int_equal(audit_count("credential.rotate", id, "success"), 1);
	assert_int_equal(sql_long("SELECT count(*) FROM audit_log WHERE "
	                          "action = 'credential.rotate' AND detail = "
	                          "'oauth2 refresh' AND "
	                          "credential_id = $1::uuid",
	                     id),
	    1);
	assert_int_equal(sql_long("SELECT count(*) FROM credential_versions "
	                          "WHERE credential_id = $1::uuid",
	                     id),
	    2);
	if (hv_vault_cred_reveal(E.v, &E.cli, &CTX, id, &sec, &err) != HV_OK)
		fail_msg("reveal: %s", err.msg);
	e = json_object_get(sec, "secret");
	assert_string_equal(
	    json_string_value(json_object_get(e, "access_token")), "gho_new");
	assert_string_equal(
	    json_string_value(json_object_get(e, "refresh_token")), "ghr_2");
	assert_string_equal(
	    json_string_value(json_object_get(e, "client_id")), "cid");
	assert_true(strncmp(json_string_value(json_object_get(e, "expires_at")),
	                "20", 2) == 0);
	json_decref(sec);
	/* the token endpoint saw a refresh grant with client_secret_basic */
	tokens = hv_stubprov_count_prefix(E.stub, "/oauth/token");
	assert_int_equal(tokens, 1);

	/* fresh now: no second refresh, the new token is injected */
	r = use_ok(id, "{\"path\": \"/echo/after\"}");
	e = hv_stubprov_last(E.stub);
	assert_string_equal(
	    json_string_value(json_object_get(
	        json_object_get(e, "headers"), "authorization")),
	    "Bearer gho_new");
	json_decref(e);
	assert_false(dump_contains(r, "gho_new"));
	json_decref(r);
	assert_int_equal(
	    hv_stubprov_count_prefix(E.stub, "/oauth/token"), tokens);

	/* the token endpoint request itself */
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"github\",\"name\":"
	    "\"oa2\",\"auth_type\":\"oauth2\",\"secret\":{\"access_token\":"
	    "\"gho_old2\",\"refresh_token\":\"ghr_x\",\"client_id\":\"cid\","
	    "\"client_secret\":\"csecret\",\"token_url\":\"%s/oauth/token\","
	    "\"expires_at\":\"2001-01-01T00:00:00Z\"}}",
	    hv_stubprov_url(E.stub));
	create(body, bad);
	r = prov_test(bad);
	e = hv_stubprov_last(E.stub);
	assert_string_equal(
	    json_string_value(json_object_get(e, "path")), "/oauth/token");
	assert_string_equal(json_string_value(json_object_get(e, "body")),
	    "grant_type=refresh_token&refresh_token=ghr_x");
	b64("cid:csecret", basic, sizeof(basic));
	(void)snprintf(want, sizeof(want), "Basic %s", basic);
	assert_string_equal(
	    json_string_value(json_object_get(
	        json_object_get(e, "headers"), "authorization")),
	    want);
	json_decref(e);
	/* ... which refused it: ok false, failing, nothing stored */
	assert_true(json_is_false(json_object_get(r, "ok")));
	assert_non_null(strstr(
	    json_string_value(json_object_get(r, "detail")), "invalid_grant"));
	assert_null(
	    strstr(json_string_value(json_object_get(r, "detail")), "ghr_x"));
	json_decref(r);
	assert_status(bad, "failing");
	c = get_cred(bad);
	assert_int_equal(json_integer_value(json_object_get(c, "version")), 1);
	json_decref(c);
	b = parse("{\"path\": \"/user\"}");
	assert_int_equal(run_use(bad, b, &out, &err), HV_E_UPSTREAM);
	assert_non_null(strstr(err.msg, "refresh"));

	/* expired and nothing to refresh with: credential_expired */
	create("{\"service\":\"github\",\"name\":\"oa3\",\"auth_type\":"
	       "\"oauth2\",\"secret\":{\"access_token\":\"gho_dead\","
	       "\"expires_at\":\"2001-01-01T00:00:00Z\"}}",
	    noref);
	tokens = hv_stubprov_count(E.stub);
	assert_int_equal(run_use(noref, b, &out, &err), HV_E_EXPIRED);
	assert_int_equal(hv_stubprov_count(E.stub), tokens);
	json_decref(b);
	/* a token that does not expire is used as is */
	create("{\"service\":\"github\",\"name\":\"oa4\",\"auth_type\":"
	       "\"oauth2\",\"secret\":{\"access_token\":\"ghp_good\"}}",
	    noref);
	r = prov_test(noref);
	assert_true(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
}

/* Repeated use from one thread reuses the connection. */
static void
test_connection_reuse(void **state)
{
	char id[HV_UUID_STR];
	unsigned long before;
	json_t *a;
	int i;

	(void)state;
	create("{\"service\":\"stripe\",\"name\":\"reuse\",\"secret\":{\"key\":"
	       "\"sk_test_good\"}}",
	    id);
	a = use_ok(id, "{\"path\": \"/v1/balance\"}");
	json_decref(a);
	before = hv_stubprov_connections(E.stub);
	for (i = 0; i < 5; i++) {
		a = use_ok(id, "{\"path\": \"/v1/balance\"}");
		json_decref(a);
	}
	assert_int_equal(hv_stubprov_connections(E.stub), before);
}

/* ------------------------------------------------------------------ */

static void
override(const char *svc)
{
	struct hv_err err = {0};
	char key[96];

	(void)snprintf(key, sizeof(key), "service_%s_base_url", svc);
	if (hv_cfg_set(&E.cfg, key, hv_stubprov_url(E.stub), &err) != HV_OK)
		fail_msg("override %s: %s", svc, err.msg);
}

static int
setup(void **state)
{
	static const char *const services[] = {"stripe", "github", "slack",
	    "cloudflare", "shopify", "twilio", "gitlab", "datadog", "anthropic",
	    "mailgun", "openai"};
	struct hv_err err = {0};
	char basic[64], hdr[96];
	size_t i;

	(void)state;
	hv_mem_json_init();
	E.stub = hv_stubprov_start();
	E.other = hv_stubprov_start();
	hv_test_db_new(&E.db, "prov");
	hv_test_token_new(&E.tok, "provtest");
	hv_cfg_init(&E.cfg);
	hv_test_cfg(&E.cfg, &E.tok, &E.db);
	E.cfg.allow_private_targets = true;
	for (i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		override(services[i]);
	if (hv_test_vault_up(&E.cfg, &E.v) != 0)
		return -1;
	if (hv_principal_cli(E.v, NULL, &E.cli, &err) != HV_OK) {
		fprintf(stderr, "cli principal: %s\n", err.msg);
		return -1;
	}
	E.pg = PQconnectdb(E.db.url);
	if (PQstatus(E.pg) != CONNECTION_OK)
		return -1;
	hv_stubprov_accept_header(
	    E.stub, "Authorization", "Bearer sk_test_good");
	hv_stubprov_accept_header(E.stub, "Authorization", "Bearer ghp_good");
	hv_stubprov_accept_header(E.stub, "Authorization", "Bearer xoxb-good");
	hv_stubprov_accept_header(E.stub, "Authorization", "Bearer cf_good");
	hv_stubprov_accept_header(
	    E.stub, "X-Shopify-Access-Token", "shpat_good");
	hv_stubprov_accept_header(E.stub, "PRIVATE-TOKEN", "glpat-good");
	hv_stubprov_accept_header(E.stub, "DD-API-KEY", "dd_good");
	hv_stubprov_accept_header(E.stub, "x-api-key", "sk-ant-good");
	EVP_EncodeBlock((unsigned char *)basic,
	    (const unsigned char *)"ACgood:authtok", 14);
	(void)snprintf(hdr, sizeof(hdr), "Basic %s", basic);
	hv_stubprov_accept_header(E.stub, "Authorization", hdr);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	hv_principal_release(&E.cli);
	PQfinish(E.pg);
	hv_vault_close(&E.v);
	hv_cfg_release(&E.cfg);
	hv_test_db_drop(&E.db);
	hv_test_token_destroy(&E.tok);
	hv_stubprov_stop(&E.stub);
	hv_stubprov_stop(&E.other);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_test_good_and_bad),
	    cmocka_unit_test(test_shopify),
	    cmocka_unit_test(test_use_injection),
	    cmocka_unit_test(test_use_escapes),
	    cmocka_unit_test(test_private_targets),
	    cmocka_unit_test(test_redirect),
	    cmocka_unit_test(test_slow_huge_down_notjson),
	    cmocka_unit_test(test_use_status),
	    cmocka_unit_test(test_revoked_expired_access),
	    cmocka_unit_test(test_oauth_refresh),
	    cmocka_unit_test(test_connection_reuse),
	};

	if (getenv("HV_TEST_PG_URL") == NULL)
		hv_test_missing("HV_TEST_PG_URL");
	return cmocka_run_group_tests(tests, setup, teardown);
}
