/*
 * test_http_use: credential test and use through the HTTP API (the
 * in-process server of tests/lib/httpsrv.h) against the stand-in provider
 * on 127.0.0.1 (tests/lib/stubprov.h): GET /v1/services, test with a good
 * and a bad token (status, account, audit), use with injection and
 * scrubbing, refusals (escapes, injected header override, private
 * targets) that send nothing, revoked and expired credentials (409 with
 * their codes), and an unreachable provider (502 upstream_error).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "httpc.h"
#include "httpsrv.h"
#include "mem.h"
#include "stubprov.h"
#include "uuid.h"

static struct hv_test_server S;
static struct hv_httpc C;
static struct hv_stubprov *P;

static void
check_common(const struct hv_httpc_resp *r)
{
	assert_int_equal(r->curl_rc, 0);
	if (!hv_uuid_valid(r->request_id))
		fail_msg("bad X-Request-Id '%s'", r->request_id);
	if (r->status >= 400) {
		const json_t *e = json_object_get(r->json, "error");

		if (!json_is_string(json_object_get(e, "code")) ||
		    !json_is_string(json_object_get(e, "message")))
			fail_msg("status %ld without envelope: %s", r->status,
			    r->body);
	}
}

static long
post(const char *path, const char *body, struct hv_httpc_resp *r)
{
	hv_httpc_do(&C, "POST", path, S.admin_key, NULL, body,
	    body != NULL ? strlen(body) : 0, r);
	check_common(r);
	return r->status;
}

static void
expect_post(const char *path, const char *body, long status, const char *code)
{
	struct hv_httpc_resp r;

	if (post(path, body, &r) != status)
		fail_msg("POST %s %s: want %ld, got %ld %s", path,
		    body != NULL ? body : "", status, r.status, r.body);
	if (code != NULL)
		assert_string_equal(hv_httpc_error_code(&r), code);
	hv_httpc_resp_free(&r);
}

static const char *
jstr(const json_t *j, const char *k)
{
	const char *s = json_string_value(json_object_get(j, k));

	return s != NULL ? s : "";
}

static void
cred_status(const char *id, const char *want)
{
	struct hv_httpc_resp r;
	char path[128];

	(void)snprintf(path, sizeof(path), "/v1/credentials/%s", id);
	assert_int_equal(
	    hv_httpc_do(&C, "GET", path, S.admin_key, NULL, NULL, 0, &r), 200);
	assert_string_equal(jstr(r.json, "status"), want);
	hv_httpc_resp_free(&r);
}

static void
test_services(void **state)
{
	struct hv_httpc_resp r;
	json_t *items, *it;
	size_t i;
	bool stripe = false, shopify = false, http = false;

	(void)state;
	assert_int_equal(hv_httpc_do(&C, "GET", "/v1/services", S.admin_key,
	                     NULL, NULL, 0, &r),
	    200);
	check_common(&r);
	items = json_object_get(r.json, "items");
	assert_true(json_array_size(items) >= 20);
	json_array_foreach(items, i, it)
	{
		const char *id = jstr(it, "id");

		assert_true(json_is_array(json_object_get(it, "auth_types")));
		assert_true(json_is_object(json_object_get(it, "injection")));
		assert_non_null(json_object_get(it, "test"));
		assert_non_null(json_object_get(it, "token_url"));
		assert_non_null(json_object_get(it, "allowed_hosts"));
		if (strcmp(id, "stripe") == 0) {
			stripe = true;
			/* the configured override is what the catalog says */
			assert_string_equal(
			    jstr(it, "base_url"), hv_stubprov_url(P));
			assert_string_equal(jstr(it, "token_url"),
			    "https://dashboard.stripe.com/apikeys");
		}
		if (strcmp(id, "shopify") == 0)
			shopify = true;
		if (strcmp(id, "http") == 0)
			http = true;
	}
	assert_true(stripe && shopify && http);
	hv_httpc_resp_free(&r);
	/* any valid key; none: 401 */
	assert_int_equal(
	    hv_httpc_do(&C, "GET", "/v1/services", NULL, NULL, NULL, 0, &r),
	    401);
	hv_httpc_resp_free(&r);
}

static void
test_test_endpoint(void **state)
{
	char good[64], bad[64], path[128];
	struct hv_httpc_resp r;

	(void)state;
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"github\",\"name\":"
	    "\"gh\",\"secret\":{\"token\":\"ghp_good\"}}",
	    good, sizeof(good));
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"github\",\"name\":"
	    "\"gh-bad\",\"secret\":{\"token\":\"ghp_bad\"}}",
	    bad, sizeof(bad));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", good);
	assert_int_equal(post(path, NULL, &r), 200);
	assert_true(json_is_true(json_object_get(r.json, "ok")));
	assert_string_equal(jstr(r.json, "account"), "octocat");
	assert_true(json_is_string(json_object_get(r.json, "detail")));
	hv_httpc_resp_free(&r);
	assert_int_equal(post(path, "{}", &r), 200);
	hv_httpc_resp_free(&r);
	expect_post(path, "{\"x\":1}", 400, "invalid_request");
	cred_status(good, "active");

	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", bad);
	assert_int_equal(post(path, NULL, &r), 200);
	assert_true(json_is_false(json_object_get(r.json, "ok")));
	assert_true(json_is_null(json_object_get(r.json, "account")));
	assert_null(strstr(r.body, "ghp_bad"));
	hv_httpc_resp_free(&r);
	cred_status(bad, "failing");

	/* audited */
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/audit", bad);
	assert_int_equal(
	    hv_httpc_do(&C, "GET", path, S.admin_key, NULL, NULL, 0, &r), 200);
	assert_non_null(strstr(r.body, "credential.test"));
	hv_httpc_resp_free(&r);
}

static void
test_use_endpoint(void **state)
{
	char id[64], path[128];
	struct hv_httpc_resp r;
	json_t *echo, *last;

	(void)state;
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"st\",\"secret\":{\"key\":\"sk_test_http\"}}",
	    id, sizeof(id));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", id);
	assert_int_equal(
	    post(path,
	        "{\"method\":\"POST\",\"path\":"
	        "\"/echo/v1/"
	        "customers\",\"query\":{\"limit\":\"2\"},\"headers\":"
	        "{\"Stripe-Version\":\"2024-06-20\"},\"body\":{\"email\":"
	        "\"a@example.com\"}}",
	        &r),
	    200);
	assert_int_equal(
	    json_integer_value(json_object_get(r.json, "status")), 200);
	assert_true(json_is_object(json_object_get(r.json, "headers")));
	assert_string_equal(jstr(r.json, "body_encoding"), "utf-8");
	assert_null(strstr(r.body, "sk_test_http"));
	assert_non_null(strstr(r.body, "[REDACTED]"));
	echo = json_loads(jstr(r.json, "body"), 0, NULL);
	assert_non_null(echo);
	assert_string_equal(jstr(echo, "path"), "/echo/v1/customers");
	json_decref(echo);
	hv_httpc_resp_free(&r);
	last = hv_stubprov_last(P);
	assert_string_equal(
	    jstr(json_object_get(last, "headers"), "authorization"),
	    "Bearer sk_test_http");
	assert_string_equal(
	    jstr(json_object_get(last, "headers"), "stripe-version"),
	    "2024-06-20");
	assert_string_equal(
	    jstr(last, "body"), "{\"email\":\"a@example.com\"}");
	json_decref(last);

	/* the provider's 401: answered as is, credential failing */
	assert_int_equal(post(path, "{\"path\":\"/v1/balance\"}", &r), 200);
	assert_int_equal(
	    json_integer_value(json_object_get(r.json, "status")), 401);
	hv_httpc_resp_free(&r);
	cred_status(id, "failing");
	/* a redirect is answered, not followed */
	assert_int_equal(post(path, "{\"path\":\"/redirect\"}", &r), 200);
	assert_int_equal(
	    json_integer_value(json_object_get(r.json, "status")), 302);
	hv_httpc_resp_free(&r);
}

static void
test_refusals(void **state)
{
	static const char *const bad[] = {
	    "{\"path\":\"//evil.example.com/\"}",
	    "{\"path\":\"https://evil.example.com/\"}",
	    "{\"path\":\"/echo/../../x\"}",
	    "{\"path\":\"/echo/%2e%2e/x\"}",
	    "{\"path\":\"/echo\",\"headers\":{\"Authorization\":\"x\"}}",
	    "{\"path\":\"/echo\",\"headers\":{\"Host\":\"evil\"}}",
	    "{\"path\":\"/echo\",\"method\":\"TRACE\"}",
	    "{\"path\":\"/echo\",\"extra\":1}",
	};
	char id[64], rv[64], ex[64], down[64], priv[64], path[160], body[400];
	unsigned long before;
	size_t i;

	(void)state;
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"ref\",\"secret\":{\"key\":\"sk_test_ref\"}}",
	    id, sizeof(id));
	before = hv_stubprov_count(P);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", id);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_post(path, bad[i], 400, "invalid_request");
	assert_int_equal(hv_stubprov_count(P), before);

	/* revoked, expired */
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"rv\",\"secret\":{\"key\":\"sk_test_rv\"}}",
	    rv, sizeof(rv));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/revoke", rv);
	expect_post(path, NULL, 200, NULL);
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", rv);
	expect_post(
	    path, "{\"path\":\"/v1/balance\"}", 409, "credential_revoked");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", rv);
	expect_post(path, NULL, 409, "credential_revoked");
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"stripe\",\"name\":"
	    "\"ex\",\"expires_at\":\"2001-01-01T00:00:00Z\",\"secret\":{"
	    "\"key\":"
	    "\"sk_test_ex\"}}",
	    ex, sizeof(ex));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", ex);
	expect_post(
	    path, "{\"path\":\"/v1/balance\"}", 409, "credential_expired");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", ex);
	expect_post(path, NULL, 409, "credential_expired");

	/* nothing listening: 502 upstream_error */
	hv_test_make_cred(&S, S.admin_key,
	    "{\"service\":\"http\",\"name\":"
	    "\"down\",\"base_url\":\"http://127.0.0.1:1\",\"auth_type\":"
	    "\"bearer\",\"secret\":{\"token\":\"tok_down\"}}",
	    down, sizeof(down));
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", down);
	expect_post(path, "{\"path\":\"/x\"}", 502, "upstream_error");

	/* private targets refused when not allowed: 403, nothing sent */
	(void)snprintf(body, sizeof(body),
	    "{\"service\":\"stripe\",\"name\":"
	    "\"priv\",\"base_url\":\"https://127.0.0.1:%u\",\"secret\":"
	    "{\"key\":\"sk_test_priv\"}}",
	    (unsigned int)hv_stubprov_port(P));
	hv_test_make_cred(&S, S.admin_key, body, priv, sizeof(priv));
	before = hv_stubprov_count(P);
	S.cfg.allow_private_targets = false;
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", priv);
	expect_post(path, "{\"path\":\"/v1/balance\"}", 403, "forbidden");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/test", priv);
	expect_post(path, NULL, 403, "forbidden");
	(void)snprintf(path, sizeof(path), "/v1/credentials/%s/use", id);
	expect_post(path, "{\"path\":\"/v1/balance\"}", 403, "forbidden");
	S.cfg.allow_private_targets = true;
	assert_int_equal(hv_stubprov_count(P), before);
}

static void
tweak(struct hv_cfg *cfg)
{
	static const char *const services[] = {"stripe", "github"};
	struct hv_err err = {0};
	char key[96];
	size_t i;

	cfg->allow_private_targets = true;
	cfg->upstream_timeout_ms = 5000;
	for (i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
		(void)snprintf(
		    key, sizeof(key), "service_%s_base_url", services[i]);
		if (hv_cfg_set(cfg, key, hv_stubprov_url(P), &err) != HV_OK)
			fail_msg("%s: %s", key, err.msg);
	}
}

static int
setup(void **state)
{
	(void)state;
	hv_mem_json_init(); /* before any JSON: the stand-in makes some */
	P = hv_stubprov_start();
	hv_stubprov_accept_header(P, "Authorization", "Bearer ghp_good");
	hv_test_server_start(&S, "httpuse", tweak);
	hv_httpc_init(&C, S.base);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	hv_httpc_release(&C);
	hv_test_server_stop(&S);
	hv_stubprov_stop(&P);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_services),
	    cmocka_unit_test(test_test_endpoint),
	    cmocka_unit_test(test_use_endpoint),
	    cmocka_unit_test(test_refusals),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
