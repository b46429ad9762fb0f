/*
 * Unit tests of the service catalog: the shipped file, look-ups, host
 * rules, configuration overrides, the injection grammar and strict
 * rejection of malformed catalogs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "cfg.h"
#include "mem.h"

static struct hv_catalog *
load_embedded(const struct hv_cfg *cfg)
{
	struct hv_catalog *c = NULL;
	struct hv_err err = {0};

	if (hv_catalog_load(NULL, cfg, &c, &err) != HV_OK)
		fail_msg("catalog: %s", err.msg);
	return c;
}

static void
test_shipped(void **state)
{
	static const char *const ids[] = {
	    "stripe",
	    "cloudflare",
	    "github",
	    "slack",
	    "supabase",
	    "appwrite",
	    "openai",
	    "anthropic",
	    "sendgrid",
	    "twilio",
	    "mailgun",
	    "gitlab",
	    "digitalocean",
	    "datadog",
	    "pagerduty",
	    "linear",
	    "notion",
	    "vercel",
	    "heroku",
	    "shopify",
	    "http",
	};
	struct hv_catalog *c = load_embedded(NULL), *f = NULL;
	const struct hv_service *s;
	struct hv_err err = {0};
	char path[1024];
	const char *src = getenv("HV_SOURCE_DIR");
	size_t i;

	(void)state;
	assert_true(hv_catalog_count(c) >= 20);
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		s = hv_catalog_find(c, ids[i]);
		if (s == NULL)
			fail_msg("missing service %s", ids[i]);
		assert_string_equal(hv_service_id(s), ids[i]);
		assert_true(strlen(hv_service_name(s)) > 0);
		assert_non_null(hv_service_default_auth_type(s));
		assert_non_null(
		    hv_service_injection(s, hv_service_default_auth_type(s)));
		if (strcmp(ids[i], "http") != 0) {
			/* Shopify: per-shop hosts, the credential names one */
			assert_int_equal(hv_service_is_generic(s),
			    strcmp(ids[i], "shopify") == 0);
			assert_non_null(hv_service_token_url(s));
			assert_non_null(hv_service_test(s));
			assert_true(hv_service_host_count(s) > 0);
		}
	}
	assert_null(hv_catalog_find(c, "STRIPE"));
	assert_null(hv_catalog_find(c, "nope"));
	assert_null(hv_catalog_find(c, NULL));
	assert_null(hv_catalog_at(c, hv_catalog_count(c)));

	/* the file on disk and the embedded copy agree */
	if (src != NULL) {
		json_t *a, *b;

		snprintf(path, sizeof(path), "%s/catalog/services.json", src);
		assert_int_equal(hv_catalog_load(path, NULL, &f, &err), HV_OK);
		a = hv_catalog_to_json(c);
		b = hv_catalog_to_json(f);
		assert_true(json_equal(a, b));
		json_decref(a);
		json_decref(b);
		hv_catalog_free(&f);
	}
	assert_int_equal(
	    hv_catalog_load("/nonexistent/services.json", NULL, &f, &err),
	    HV_E_IO);
	assert_null(f);
	hv_catalog_free(&c);
	assert_null(c);
	hv_catalog_free(&c);
	hv_catalog_free(NULL);
}

static void
test_services(void **state)
{
	struct hv_catalog *c = load_embedded(NULL);
	const struct hv_service *s;
	json_t *inj, *t;

	(void)state;
	s = hv_catalog_find(c, "stripe");
	assert_string_equal(hv_service_base_url(s), "https://api.stripe.com");
	assert_string_equal(
	    hv_service_token_url(s), "https://dashboard.stripe.com/apikeys");
	assert_true(hv_service_supports(s, "api_key"));
	assert_false(hv_service_supports(s, "basic"));
	assert_false(hv_service_supports(s, NULL));
	inj = hv_service_injection(s, "api_key");
	assert_string_equal(
	    json_string_value(json_object_get(inj, "header")), "Authorization");
	assert_string_equal(
	    json_string_value(json_object_get(inj, "prefix")), "Bearer ");
	assert_null(hv_service_injection(s, "basic"));
	t = hv_service_test(s);
	assert_string_equal(
	    json_string_value(json_object_get(t, "path")), "/v1/balance");
	assert_true(json_is_null(json_object_get(t, "account")));

	/* host rules: exact names, any case, trailing dot; nothing else */
	assert_true(hv_service_host_allowed(s, "api.stripe.com"));
	assert_true(hv_service_host_allowed(s, "API.Stripe.COM"));
	assert_true(hv_service_host_allowed(s, "api.stripe.com."));
	assert_false(hv_service_host_allowed(s, "stripe.com"));
	assert_false(hv_service_host_allowed(s, "api.stripe.com.evil.com"));
	assert_false(hv_service_host_allowed(s, "evilapi.stripe.com"));
	assert_false(hv_service_host_allowed(s, "x.api.stripe.com"));
	assert_false(hv_service_host_allowed(s, ""));
	assert_false(hv_service_host_allowed(s, "."));
	assert_false(hv_service_host_allowed(s, NULL));

	/* wildcards match subdomains only */
	s = hv_catalog_find(c, "supabase");
	assert_true(hv_service_host_allowed(s, "abcdefgh.supabase.co"));
	assert_true(hv_service_host_allowed(s, "api.supabase.com"));
	assert_false(hv_service_host_allowed(s, "supabase.co"));
	assert_false(hv_service_host_allowed(s, "evilsupabase.co"));
	assert_false(hv_service_host_allowed(s, "supabase.co.evil.com"));

	s = hv_catalog_find(c, "github");
	assert_string_equal(
	    json_string_value(json_object_get(hv_service_test(s), "account")),
	    "/login");
	s = hv_catalog_find(c, "slack");
	t = hv_service_test(s);
	assert_string_equal(
	    json_string_value(json_object_get(t, "method")), "POST");
	assert_true(json_is_true(
	    json_object_get(json_object_get(t, "success"), "/ok")));
	s = hv_catalog_find(c, "twilio");
	assert_string_equal(hv_service_default_auth_type(s), "basic");
	assert_true(json_is_true(
	    json_object_get(hv_service_injection(s, "basic"), "basic")));
	s = hv_catalog_find(c, "mailgun");
	assert_string_equal(
	    json_string_value(json_object_get(
	        hv_service_injection(s, "api_key"), "username")),
	    "api");
	s = hv_catalog_find(c, "datadog");
	assert_string_equal(json_string_value(json_object_get(
	                        hv_service_injection(s, "api_key"), "header")),
	    "DD-API-KEY");
	assert_true(hv_service_supports(s, "custom_headers"));

	/* generic: no base URL, no hosts; the credential decides */
	s = hv_catalog_find(c, "http");
	assert_true(hv_service_is_generic(s));
	assert_null(hv_service_base_url(s));
	assert_int_equal(hv_service_host_count(s), 0);
	assert_false(hv_service_host_allowed(s, "example.com"));
	assert_true(hv_service_supports(s, "custom_headers"));
	assert_true(hv_service_supports(s, "oauth2"));
	/* ... and any host of the credential's own base_url */
	assert_true(hv_service_credential_host_allowed(s, "example.com"));
	assert_true(hv_service_credential_host_allowed(s, "10.0.0.1"));
	assert_false(hv_service_credential_host_allowed(s, ""));
	assert_false(hv_service_credential_host_allowed(s, NULL));
	assert_true(json_is_false(json_object_get(hv_service_test(s), "json")));

	/* Shopify: no base URL, but the credential's must be a shop host */
	s = hv_catalog_find(c, "shopify");
	assert_true(hv_service_is_generic(s));
	assert_null(hv_service_base_url(s));
	assert_true(
	    hv_service_credential_host_allowed(s, "acme.myshopify.com"));
	assert_true(
	    hv_service_credential_host_allowed(s, "ACME.myshopify.com."));
	assert_false(hv_service_credential_host_allowed(s, "myshopify.com"));
	assert_false(hv_service_credential_host_allowed(
	    s, "acme.myshopify.com.evil.com"));
	assert_false(hv_service_credential_host_allowed(s, "evil.com"));
	assert_true(hv_service_host_allowed(s, "acme.myshopify.com"));
	assert_string_equal(json_string_value(json_object_get(
	                        hv_service_injection(s, "api_key"), "header")),
	    "X-Shopify-Access-Token");
	assert_string_equal(
	    json_string_value(json_object_get(hv_service_test(s), "account")),
	    "/shop/name");

	/* a service with a catalog base URL: the credential may self-host */
	s = hv_catalog_find(c, "github");
	assert_true(hv_service_credential_host_allowed(s, "ghe.corp.example"));
	hv_catalog_free(&c);
}

static void
test_to_json(void **state)
{
	static const char *const keys[] = {"id", "name", "auth_types",
	    "default_auth_type", "injection", "base_url", "allowed_hosts",
	    "token_url", "test", "notes"};
	struct hv_catalog *c = load_embedded(NULL);
	json_t *j, *items, *it;
	size_t i, k;

	(void)state;
	j = hv_catalog_to_json(c);
	assert_non_null(j);
	items = json_object_get(j, "items");
	assert_true(json_is_array(items));
	assert_int_equal(json_array_size(items), hv_catalog_count(c));
	json_array_foreach(items, i, it)
	{
		for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (json_object_get(it, keys[k]) == NULL)
				fail_msg("item %zu lacks %s", i, keys[k]);
	}
	it = json_array_get(items, 0);
	assert_string_equal(
	    json_string_value(json_object_get(it, "id")), "stripe");
	assert_string_equal(json_string_value(json_object_get(it, "token_url")),
	    "https://dashboard.stripe.com/apikeys");
	/* a deep copy: changing it does not change the catalog */
	json_object_set_new(
	    json_object_get(it, "injection"), "api_key", json_null());
	assert_non_null(
	    hv_service_injection(hv_catalog_find(c, "stripe"), "api_key"));
	assert_true(json_is_object(
	    hv_service_injection(hv_catalog_find(c, "stripe"), "api_key")));
	json_decref(j);
	hv_catalog_free(&c);
}

static void
test_overrides(void **state)
{
	struct hv_cfg cfg;
	struct hv_catalog *c = NULL;
	const struct hv_service *s;
	struct hv_err err = {0};
	json_t *j, *it;
	size_t i;

	(void)state;
	hv_cfg_init(&cfg);
	assert_int_equal(hv_cfg_set(&cfg, "service_stripe_base_url",
	                     "http://127.0.0.1:8999/", &err),
	    HV_OK);
	setenv(
	    "HSMVAULT_SERVICE_GITHUB_BASE_URL", "http://[::1]:9000/api/v3", 1);
	assert_int_equal(hv_cfg_load_env(&cfg, &err), HV_OK);
	unsetenv("HSMVAULT_SERVICE_GITHUB_BASE_URL");
	assert_int_equal(hv_cfg_set(&cfg, "service_nosuch_base_url",
	                     "http://127.0.0.1:1", &err),
	    HV_OK); /* warned, ignored */
	assert_int_equal(hv_cfg_set(&cfg, "service_http_base_url",
	                     "http://localhost:8080", &err),
	    HV_OK);
	assert_int_equal(hv_cfg_set(&cfg, "service_shopify_base_url",
	                     "http://127.0.0.1:8998", &err),
	    HV_OK);
	c = load_embedded(&cfg);

	s = hv_catalog_find(c, "stripe");
	assert_string_equal(hv_service_base_url(s), "http://127.0.0.1:8999");
	assert_true(hv_service_host_allowed(s, "127.0.0.1"));
	assert_true(hv_service_host_allowed(s, "api.stripe.com"));
	assert_false(hv_service_host_allowed(s, "127.0.0.2"));
	s = hv_catalog_find(c, "github");
	assert_string_equal(hv_service_base_url(s), "http://[::1]:9000/api/v3");
	assert_true(hv_service_host_allowed(s, "::1"));
	s = hv_catalog_find(c, "cloudflare");
	assert_string_equal(
	    hv_service_base_url(s), "https://api.cloudflare.com");
	/* an override's host counts for a per-host service (stand-ins) */
	s = hv_catalog_find(c, "shopify");
	assert_string_equal(hv_service_base_url(s), "http://127.0.0.1:8998");
	assert_true(hv_service_credential_host_allowed(s, "127.0.0.1"));
	assert_true(hv_service_credential_host_allowed(s, "a.myshopify.com"));
	assert_false(hv_service_credential_host_allowed(s, "127.0.0.2"));
	/* the generic service keeps being generic in kind */
	s = hv_catalog_find(c, "http");
	assert_true(hv_service_is_generic(s));
	assert_string_equal(hv_service_base_url(s), "http://localhost:8080");

	j = hv_catalog_to_json(c);
	json_array_foreach(json_object_get(j, "items"), i, it)
	{
		if (strcmp(json_string_value(json_object_get(it, "id")),
		        "stripe") == 0)
			assert_string_equal(
			    json_string_value(json_object_get(it, "base_url")),
			    "http://127.0.0.1:8999");
	}
	json_decref(j);
	hv_catalog_free(&c);

	/* a bad override is a configuration error naming the service */
	assert_int_equal(hv_cfg_set(&cfg, "service_slack_base_url",
	                     "ftp://slack.example", &err),
	    HV_OK);
	assert_int_equal(hv_catalog_load(NULL, &cfg, &c, &err), HV_E_CONFIG);
	assert_non_null(strstr(err.msg, "slack"));
	assert_null(c);
	assert_int_equal(hv_cfg_set(&cfg, "service_slack_base_url",
	                     "http://user:pw@slack.example", &err),
	    HV_OK);
	assert_int_equal(hv_catalog_load(NULL, &cfg, &c, &err), HV_E_CONFIG);
	assert_null(strstr(err.msg, "pw"));
	hv_cfg_release(&cfg);
}

static void
test_url_host(void **state)
{
	char h[64];

	(void)state;
	assert_true(hv_url_host("https://API.Example.com/x?y#z", h, sizeof(h)));
	assert_string_equal(h, "api.example.com");
	assert_true(hv_url_host("http://127.0.0.1:8080", h, sizeof(h)));
	assert_string_equal(h, "127.0.0.1");
	assert_true(hv_url_host("http://[::1]:80/", h, sizeof(h)));
	assert_string_equal(h, "::1");
	assert_true(hv_url_host("HTTPS://x.io", h, sizeof(h)));
	assert_false(hv_url_host("ftp://x.io", h, sizeof(h)));
	assert_false(hv_url_host("https://", h, sizeof(h)));
	assert_false(hv_url_host("https://:80", h, sizeof(h)));
	assert_false(hv_url_host("https://u:p@x.io", h, sizeof(h)));
	assert_false(hv_url_host("https://x.io:", h, sizeof(h)));
	assert_false(hv_url_host("https://x.io:99999", h, sizeof(h)));
	assert_false(hv_url_host("https://x.io:8a", h, sizeof(h)));
	assert_false(hv_url_host("https://x_y.io", h, sizeof(h)));
	assert_false(hv_url_host("https://[::1", h, sizeof(h)));
	assert_false(hv_url_host("https://[::1]x", h, sizeof(h)));
	assert_false(hv_url_host("https://aaaaaaaaaa.com", h, 8));
	assert_false(hv_url_host(NULL, h, sizeof(h)));
}

static void
check_inj(const char *json, const char *auth, enum hv_rc want)
{
	json_t *j = json_loads(json, 0, NULL);
	struct hv_err err = {0};
	enum hv_rc rc;

	assert_non_null(j);
	rc = hv_injection_check(j, auth, &err);
	if (rc != want)
		fail_msg("%s for %s: got %d (%s)", json, auth, rc, err.msg);
	json_decref(j);
}

static void
test_injection(void **state)
{
	(void)state;
	check_inj("{\"header\": \"Authorization\", \"prefix\": \"Bearer \"}",
	    "bearer", HV_OK);
	check_inj("{\"header\": \"X-API-Key\"}", "api_key", HV_OK);
	check_inj("{\"query_param\": \"api_key\"}", "api_key", HV_OK);
	check_inj("{\"basic\": true}", "basic", HV_OK);
	check_inj("{\"basic\": true, \"username\": \"api\"}", "api_key", HV_OK);
	check_inj("{\"basic\": true, \"password\": \"\"}", "api_key", HV_OK);
	check_inj("{\"headers\": true}", "custom_headers", HV_OK);
	check_inj("{\"header\": \"Authorization\"}", "oauth2", HV_OK);

	check_inj("{\"header\": \"X-API-Key\"}", "nope", HV_E_INVALID);
	check_inj("[]", "api_key", HV_E_INVALID);
	check_inj("{}", "api_key", HV_E_INVALID);
	check_inj("{\"header\": \"A\", \"query_param\": \"b\"}", "api_key",
	    HV_E_INVALID);
	check_inj("{\"header\": \"X Key\"}", "api_key", HV_E_INVALID);
	check_inj("{\"header\": \"X:Key\"}", "api_key", HV_E_INVALID);
	check_inj("{\"header\": \"\"}", "api_key", HV_E_INVALID);
	check_inj("{\"header\": \"Host\"}", "api_key", HV_E_INVALID);
	check_inj("{\"header\": \"content-length\"}", "api_key", HV_E_INVALID);
	check_inj("{\"header\": 5}", "api_key", HV_E_INVALID);
	check_inj("{\"header\": \"A\", \"prefix\": \"x\\r\\nEvil: 1\"}",
	    "api_key", HV_E_INVALID);
	check_inj("{\"header\": \"A\", \"extra\": 1}", "api_key", HV_E_INVALID);
	check_inj("{\"header\": \"A\"}", "basic", HV_E_INVALID);
	check_inj("{\"header\": \"A\"}", "custom_headers", HV_E_INVALID);
	check_inj("{\"query_param\": \"a&b\"}", "api_key", HV_E_INVALID);
	check_inj("{\"query_param\": \"\"}", "api_key", HV_E_INVALID);
	check_inj("{\"basic\": false}", "basic", HV_E_INVALID);
	check_inj(
	    "{\"basic\": true, \"username\": \"x\"}", "basic", HV_E_INVALID);
	check_inj("{\"basic\": true}", "api_key", HV_E_INVALID);
	check_inj("{\"basic\": true, \"username\": \"a\", \"password\": \"b\"}",
	    "api_key", HV_E_INVALID);
	check_inj("{\"basic\": true, \"username\": \"a:b\"}", "api_key",
	    HV_E_INVALID);
	check_inj("{\"basic\": true}", "custom_headers", HV_E_INVALID);
	check_inj("{\"headers\": true}", "api_key", HV_E_INVALID);
	check_inj("{\"headers\": 1}", "custom_headers", HV_E_INVALID);
	assert_int_equal(
	    hv_injection_check(NULL, "api_key", NULL), HV_E_INVALID);
	assert_true(hv_auth_type_known("custom_headers"));
	assert_false(hv_auth_type_known("API_KEY"));
	assert_false(hv_auth_type_known(NULL));
}

/* One valid entry; the malformed cases below each break one thing. */
#define GOOD_HEAD "{\"id\": \"svc\", \"name\": \"Svc\", "
#define GOOD_AUTH                                                              \
	"\"auth_types\": [\"api_key\"], \"injection\": "                       \
	"{\"api_key\": {\"header\": \"X-Key\"}}, "
#define GOOD_URL                                                               \
	"\"base_url\": \"https://api.svc.test\", "                             \
	"\"allowed_hosts\": [\"api.svc.test\"], "
#define GOOD_TAIL "\"token_url\": null, \"test\": null}"
#define GOOD      GOOD_HEAD GOOD_AUTH GOOD_URL GOOD_TAIL

static void
test_malformed(void **state)
{
	static const struct {
		const char *json, *needle;
	} bad[] = {
	    {"", "catalog"},
	    {"{", "catalog"},
	    {"{}", "array"},
	    {"[]", "array"},
	    {"[1]", "entry 0"},
	    {"[" GOOD ", " GOOD "]", "twice"},
	    {"[{\"id\": \"Svc\"}]", "id"},
	    {"[{\"id\": \"svc\"}]", "svc"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL "\"token_url\": null}]",
	        "'test'"},
	    {"[{\"id\": \"svc\", \"name\": \"\", " GOOD_AUTH GOOD_URL GOOD_TAIL
	     "]",
	        "name"},
	    {"[" GOOD_HEAD "\"auth_types\": [\"api_key\", \"magic\"], "
	     "\"injection\": {\"api_key\": {\"header\": \"X-Key\"}}, " GOOD_URL
	            GOOD_TAIL "]",
	        "unknown auth type"},
	    {"[" GOOD_HEAD
	     "\"auth_types\": [], \"injection\": {}, " GOOD_URL GOOD_TAIL "]",
	        "auth_types"},
	    {"[" GOOD_HEAD "\"auth_types\": [\"api_key\", \"api_key\"], "
	     "\"injection\": {\"api_key\": {\"header\": \"X-Key\"}}, " GOOD_URL
	            GOOD_TAIL "]",
	        "twice"},
	    {"[" GOOD_HEAD "\"auth_types\": [\"api_key\", \"bearer\"], "
	     "\"injection\": {\"api_key\": {\"header\": \"X-Key\"}}, " GOOD_URL
	            GOOD_TAIL "]",
	        "no injection for auth type 'bearer'"},
	    {"[" GOOD_HEAD "\"auth_types\": [\"api_key\"], "
	     "\"injection\": {\"api_key\": {\"header\": \"X-Key\"}, "
	     "\"basic\": {\"basic\": true}}, " GOOD_URL GOOD_TAIL "]",
	        "injection.basic"},
	    {"[" GOOD_HEAD "\"auth_types\": [\"api_key\"], "
	     "\"injection\": {\"api_key\": {\"header\": \"X Key\"}}, " GOOD_URL
	            GOOD_TAIL "]",
	        "injection.header"},
	    {"[" GOOD_HEAD GOOD_AUTH "\"base_url\": \"http://api.svc.test\","
	     " \"allowed_hosts\": [\"api.svc.test\"], " GOOD_TAIL "]",
	        "base_url"},
	    {"[" GOOD_HEAD GOOD_AUTH "\"base_url\": \"https://api.svc.test/\","
	     " \"allowed_hosts\": [\"api.svc.test\"], " GOOD_TAIL "]",
	        "base_url"},
	    {"[" GOOD_HEAD GOOD_AUTH "\"base_url\": \"https://other.test\","
	     " \"allowed_hosts\": [\"api.svc.test\"], " GOOD_TAIL "]",
	        "not in allowed_hosts"},
	    {"[" GOOD_HEAD GOOD_AUTH "\"base_url\": null,"
	     " \"allowed_hosts\": [\"API.svc.test\"], " GOOD_TAIL "]",
	        "allowed_hosts[0]"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL "\"token_url\": null, "
	     "\"test\": {\"method\": \"GET\", \"path\": \"/\", "
	     "\"json\": 1}}]",
	        "test.json"},
	    {"[" GOOD_HEAD GOOD_AUTH "\"base_url\": \"https://api.svc.test\","
	     " \"allowed_hosts\": [], " GOOD_TAIL "]",
	        "allowed_hosts"},
	    {"[" GOOD_HEAD GOOD_AUTH "\"base_url\": \"https://api.svc.test\","
	     " \"allowed_hosts\": [\"API.svc.test\"], " GOOD_TAIL "]",
	        "allowed_hosts[0]"},
	    {"[" GOOD_HEAD GOOD_AUTH "\"base_url\": \"https://api.svc.test\","
	     " \"allowed_hosts\": [\"api.svc.test\", \"*\"], " GOOD_TAIL "]",
	        "allowed_hosts[1]"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL "\"token_url\": \"ftp://x\", "
	     "\"test\": null}]",
	        "token_url"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL "\"token_url\": null, "
	     "\"test\": {\"method\": \"DELETE\", \"path\": \"/x\"}}]",
	        "test.method"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL "\"token_url\": null, "
	     "\"test\": {\"method\": \"GET\", \"path\": \"x\"}}]",
	        "test.path"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL "\"token_url\": null, "
	     "\"test\": {\"method\": \"GET\", \"path\": \"/\", "
	     "\"account\": \"login\"}}]",
	        "test.account"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL "\"token_url\": null, "
	     "\"test\": {\"method\": \"GET\", \"path\": \"/\", "
	     "\"retries\": 3}}]",
	        "test.retries"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL "\"token_url\": null, "
	     "\"test\": {\"method\": \"GET\", \"path\": \"/\", "
	     "\"headers\": {\"Host\": \"x\"}}}]",
	        "test header"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL GOOD_TAIL "]"
	     "x",
	        "catalog"},
	    {"[{\"id\": \"svc\", \"id\": \"svc2\"}]", "duplicate"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL "\"token_url\": null, "
	     "\"test\": null, \"secret\": 1}]",
	        "unknown field 'secret'"},
	    {"[" GOOD_HEAD GOOD_AUTH GOOD_URL "\"token_url\": null, "
	     "\"test\": null, \"notes\": 5}]",
	        "notes"},
	};
	struct hv_catalog *c = NULL;
	struct hv_err err = {0};
	size_t i;
	enum hv_rc rc;

	(void)state;
	/* the template itself is valid */
	assert_int_equal(hv_catalog_parse("[" GOOD "]", NULL, &c, &err), HV_OK);
	assert_int_equal(hv_catalog_count(c), 1);
	hv_catalog_free(&c);
	/* base_url null with hosts: a per-host service, valid */
	assert_int_equal(
	    hv_catalog_parse("[" GOOD_HEAD GOOD_AUTH
	                     "\"base_url\": null, \"allowed_hosts\": "
	                     "[\"*.svc.test\"], " GOOD_TAIL "]",
	        NULL, &c, &err),
	    HV_OK);
	assert_true(hv_service_is_generic(hv_catalog_at(c, 0)));
	assert_true(hv_service_credential_host_allowed(
	    hv_catalog_at(c, 0), "a.svc.test"));
	assert_false(hv_service_credential_host_allowed(
	    hv_catalog_at(c, 0), "svc.test"));
	hv_catalog_free(&c);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		rc = hv_catalog_parse(bad[i].json, NULL, &c, &err);
		if (rc != HV_E_CONFIG || strstr(err.msg, bad[i].needle) == NULL)
			fail_msg("case %zu: rc %d, message '%s', wanted '%s'",
			    i, rc, err.msg, bad[i].needle);
		assert_null(c);
	}
	/* a file that is bad names the file and the service */
	{
		char path[] = "/tmp/hvcatXXXXXX";
		int fd = mkstemp(path);
		FILE *f;

		assert_true(fd >= 0);
		f = fdopen(fd, "w");
		fputs("[" GOOD_HEAD "\"auth_types\": [\"magic\"], "
		      "\"injection\": {}, " GOOD_URL GOOD_TAIL "]",
		    f);
		fclose(f);
		assert_int_equal(
		    hv_catalog_load(path, NULL, &c, &err), HV_E_CONFIG);
		assert_non_null(strstr(err.msg, path));
		assert_non_null(strstr(err.msg, "'svc'"));
		unlink(path);
	}
}

/* Allocation failures while loading: a clean error, never a crash. */
static void
test_alloc_failures(void **state)
{
	struct hv_catalog *c = NULL;
	struct hv_err err = {0};
	struct hv_cfg cfg;
	long n;
	enum hv_rc rc;

	(void)state;
	hv_cfg_init(&cfg);
	assert_int_equal(hv_cfg_set(&cfg, "service_stripe_base_url",
	                     "http://127.0.0.1:1", &err),
	    HV_OK);
	for (n = 1; n < 100; n++) {
		hv_mem_fail_after(n);
		rc = hv_catalog_load(NULL, &cfg, &c, &err);
		hv_mem_fail_after(0);
		if (rc == HV_OK) {
			hv_catalog_free(&c);
			break;
		}
		assert_int_equal(rc, HV_E_NOMEM);
		assert_null(c);
	}
	assert_true(n < 100);
	hv_cfg_release(&cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shipped),
	    cmocka_unit_test(test_services),
	    cmocka_unit_test(test_to_json),
	    cmocka_unit_test(test_overrides),
	    cmocka_unit_test(test_url_host),
	    cmocka_unit_test(test_injection),
	    cmocka_unit_test(test_malformed),
	    cmocka_unit_test(test_alloc_failures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
