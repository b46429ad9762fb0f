/*
 * Unit tests of the outbound HTTP module (src/fetch.c): the address
 * policy (IPv4, IPv6, IPv4 inside IPv6), URL checks, and real transfers
 * against the stand-in provider on 127.0.0.1 (tests/lib/stubprov.h):
 * private targets refused before any connection, no redirects, timeouts,
 * size caps with and without Content-Length, TLS verification, header
 * capture and connection reuse. No traffic leaves 127.0.0.1.
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
#include <unistd.h>

#include "fetch.h"
#include "mem.h"
#include "stubprov.h"
#include "testenv.h"

static struct hv_stubprov *S;

static void
test_addresses(void **state)
{
	static const struct {
		const char *ip;
		bool pub;  /* allowed without allow_private */
		bool priv; /* allowed with allow_private */
	} cases[] = {
	    {"8.8.8.8", true, true},
	    {"1.1.1.1", true, true},
	    {"93.184.216.34", true, true},
	    {"127.0.0.1", false, true},
	    {"127.255.255.254", false, true},
	    {"10.1.2.3", false, true},
	    {"172.16.0.1", false, true},
	    {"172.31.255.255", false, true},
	    {"172.32.0.1", true, true},
	    {"172.15.0.1", true, true},
	    {"192.168.1.1", false, true},
	    {"169.254.169.254", false, true}, /* cloud metadata */
	    {"100.64.0.1", false, true},
	    {"100.127.255.255", false, true},
	    {"100.128.0.1", true, true},
	    {"192.0.2.1", false, true},
	    {"198.18.0.1", false, true},
	    {"198.51.100.7", false, true},
	    {"203.0.113.9", false, true},
	    {"0.0.0.0", false, false},
	    {"0.1.2.3", false, false},
	    {"224.0.0.1", false, false},
	    {"239.255.255.250", false, false},
	    {"240.0.0.1", false, false},
	    {"255.255.255.255", false, false},
	    {"2606:4700:4700::1111", true, true},
	    {"2a00:1450:4001::1", true, true},
	    {"::", false, false},
	    {"::1", false, true},
	    {"fe80::1", false, true},
	    {"febf::1", false, true},
	    {"fec0::1", false, true},
	    {"fc00::1", false, true},
	    {"fd12:3456::1", false, true},
	    {"ff02::1", false, false},
	    {"ff05::2", false, false},
	    {"2001:db8::1", false, true},
	    {"2001:0::1", false, true}, /* Teredo */
	    {"100::1", false, true},
	    /* IPv4 inside IPv6: the IPv4 rules decide */
	    {"::ffff:127.0.0.1", false, true},
	    {"::ffff:10.0.0.1", false, true},
	    {"::ffff:169.254.169.254", false, true},
	    {"::ffff:8.8.8.8", true, true},
	    {"::ffff:0.0.0.0", false, false},
	    {"::127.0.0.1", false, true},
	    {"::8.8.8.8", true, true},
	    {"64:ff9b::7f00:1", false, true},
	    {"64:ff9b::808:808", true, true},
	    {"2002:7f00:1::1", false, true},
	    {"2002:a00:1::1", false, true},
	    {"2002:808:808::1", true, true},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (hv_fetch_ip_allowed(cases[i].ip, false) != cases[i].pub)
			fail_msg("%s without allow_private: want %d",
			    cases[i].ip, cases[i].pub);
		if (hv_fetch_ip_allowed(cases[i].ip, true) != cases[i].priv)
			fail_msg("%s with allow_private: want %d", cases[i].ip,
			    cases[i].priv);
	}
	assert_false(hv_fetch_ip_allowed("localhost", true));
	assert_false(hv_fetch_ip_allowed("", true));
	assert_false(hv_fetch_ip_allowed(NULL, true));
	assert_false(hv_fetch_ip_allowed("1.2.3", true));
}

static enum hv_rc
get(const char *url, const char *host, bool allow_private, long timeout_ms,
    size_t cap, struct hv_fetch_response *r, struct hv_err *err)
{
	struct hv_fetch_request req;
	struct hv_fetch_limits lim;

	memset(&req, 0, sizeof(req));
	memset(&lim, 0, sizeof(lim));
	req.method = "GET";
	req.url = url;
	req.host = host;
	lim.allow_private = allow_private;
	lim.timeout_ms = timeout_ms;
	lim.max_response = cap;
	return hv_fetch(&req, &lim, r, err);
}

static void
url_of(char *out, size_t cap, const char *host, const char *path)
{
	(void)snprintf(out, cap, "http://%s:%u%s", host,
	    (unsigned int)hv_stubprov_port(S), path);
}

/* Malformed or refused URLs fail before any connection. */
static void
test_refusals(void **state)
{
	static const struct {
		const char *url;
		enum hv_rc rc;
	} bad[] = {
	    {"ftp://127.0.0.1/x", HV_E_FORBIDDEN},
	    {"file:///etc/passwd", HV_E_FORBIDDEN},
	    {"gopher://127.0.0.1:70/", HV_E_FORBIDDEN},
	    {"http://user:pw@127.0.0.1:1/", HV_E_FORBIDDEN},
	    {"http://:pw@127.0.0.1:1/", HV_E_FORBIDDEN},
	    {"not a url", HV_E_INVALID},
	    {"/relative", HV_E_INVALID},
	    {"http://", HV_E_INVALID},
	    {"http://a b/", HV_E_INVALID},
	    {"http://[fe80::1%25lo]:1/", HV_E_FORBIDDEN},
	};
	struct hv_fetch_response r;
	struct hv_err err;
	char url[256];
	size_t i;
	enum hv_rc rc;

	(void)state;
	hv_stubprov_reset(S);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		rc = get(bad[i].url, NULL, true, 2000, 0, &r, &err);
		if (rc != bad[i].rc)
			fail_msg("%s: rc %d (%s), want %d", bad[i].url, rc,
			    err.msg, bad[i].rc);
		assert_null(strstr(err.msg, "pw"));
	}

	/* loopback without allow_private: refused, nothing connects */
	url_of(url, sizeof(url), "127.0.0.1", "/echo");
	rc = get(url, "127.0.0.1", false, 2000, 0, &r, &err);
	assert_int_equal(rc, HV_E_FORBIDDEN);
	assert_int_equal(r.fail, HV_FETCH_REFUSED);
	url_of(url, sizeof(url), "localhost", "/echo");
	rc = get(url, "localhost", false, 2000, 0, &r, &err);
	assert_int_equal(rc, HV_E_FORBIDDEN);
	url_of(url, sizeof(url), "[::ffff:127.0.0.1]", "/echo");
	rc = get(url, NULL, false, 2000, 0, &r, &err);
	assert_int_equal(rc, HV_E_FORBIDDEN);
	/* curl's own normalisation of odd IPv4 forms is checked too */
	url_of(url, sizeof(url), "2130706433", "/echo");
	rc = get(url, NULL, false, 2000, 0, &r, &err);
	assert_int_equal(rc, HV_E_FORBIDDEN);
	url_of(url, sizeof(url), "0x7f.1", "/echo");
	rc = get(url, NULL, false, 2000, 0, &r, &err);
	assert_int_equal(rc, HV_E_FORBIDDEN);
	url_of(url, sizeof(url), "0.0.0.0", "/echo");
	rc = get(url, NULL, true, 2000, 0, &r, &err);
	assert_int_equal(rc, HV_E_FORBIDDEN);
	/* a URL whose host is not the one the caller checked */
	url_of(url, sizeof(url), "127.0.0.1", "/echo");
	rc = get(url, "api.stripe.com", true, 2000, 0, &r, &err);
	assert_int_equal(rc, HV_E_FORBIDDEN);
	assert_int_equal(hv_stubprov_count(S), 0);
	assert_int_equal(hv_stubprov_connections(S), 0);
}

static void
test_get_and_headers(void **state)
{
	struct hv_fetch_response r;
	struct hv_fetch_request req;
	struct hv_fetch_limits lim;
	struct hv_err err = {0};
	const char *lines[] = {"X-Test: one", "Authorization: Bearer tok"};
	char url[256];
	json_t *last;

	(void)state;
	url_of(url, sizeof(url), "127.0.0.1", "/echo/x?a=1");
	memset(&req, 0, sizeof(req));
	memset(&lim, 0, sizeof(lim));
	req.method = "PUT";
	req.url = url;
	req.host = "127.0.0.1";
	req.headers = lines;
	req.n_headers = 2;
	req.body = "hello";
	req.body_len = 5;
	req.send_body = true;
	lim.allow_private = true;
	assert_int_equal(hv_fetch(&req, &lim, &r, &err), HV_OK);
	assert_int_equal(r.status, 200);
	assert_non_null(hv_fetch_header_get(&r, "content-type"));
	assert_non_null(hv_fetch_header_get(&r, "Content-Type"));
	assert_null(hv_fetch_header_get(&r, "x-none"));
	last = hv_stubprov_last(S);
	assert_string_equal(
	    json_string_value(json_object_get(last, "method")), "PUT");
	assert_string_equal(
	    json_string_value(json_object_get(last, "body")), "hello");
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(last, "headers"), "x-test")),
	    "one");
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(last, "query"), "a")),
	    "1");
	/* no Expect: 100-continue, our own User-Agent */
	assert_null(
	    json_object_get(json_object_get(last, "headers"), "expect"));
	assert_non_null(
	    strstr(json_string_value(json_object_get(
	               json_object_get(last, "headers"), "user-agent")),
	        "hsmvault"));
	json_decref(last);
	hv_fetch_response_release(&r);
	hv_fetch_response_release(&r); /* idempotent */

	/* HEAD: status, no body */
	url_of(url, sizeof(url), "127.0.0.1", "/v1/balance");
	req.method = "HEAD";
	req.url = url;
	req.n_headers = 0;
	req.send_body = false;
	assert_int_equal(hv_fetch(&req, &lim, &r, &err), HV_OK);
	assert_int_equal(r.status, 401);
	assert_int_equal(r.body_len, 0);
	hv_fetch_response_release(&r);

	/* "localhost" resolves (loopback) and is pinned when allowed */
	url_of(url, sizeof(url), "localhost", "/echo");
	assert_int_equal(get(url, "localhost", true, 2000, 0, &r, &err), HV_OK);
	assert_int_equal(r.status, 200);
	hv_fetch_response_release(&r);
}

static void
test_redirect_not_followed(void **state)
{
	struct hv_stubprov *other = hv_stubprov_start();
	struct hv_fetch_response r;
	struct hv_err err = {0};
	char url[256], loc[256];

	(void)state;
	(void)snprintf(loc, sizeof(loc), "%s/echo", hv_stubprov_url(other));
	hv_stubprov_set_redirect(S, loc);
	url_of(url, sizeof(url), "127.0.0.1", "/redirect");
	assert_int_equal(get(url, "127.0.0.1", true, 2000, 0, &r, &err), HV_OK);
	assert_int_equal(r.status, 302);
	assert_string_equal(hv_fetch_header_get(&r, "location"), loc);
	hv_fetch_response_release(&r);
	assert_int_equal(hv_stubprov_count(other), 0);
	hv_stubprov_stop(&other);
}

static void
test_timeout(void **state)
{
	struct hv_fetch_response r;
	struct hv_err err = {0};
	char url[256];
	struct timespec a, b;
	long ms;

	(void)state;
	hv_stubprov_set_slow_ms(S, 3000);
	url_of(url, sizeof(url), "127.0.0.1", "/slow");
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(
	    get(url, "127.0.0.1", true, 300, 0, &r, &err), HV_E_UPSTREAM);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	assert_int_equal(r.fail, HV_FETCH_TIMEOUT);
	assert_non_null(strstr(err.msg, "timed out"));
	assert_true(ms < 2500);

	/* nothing listens: a clean connect failure */
	assert_int_equal(
	    get("http://127.0.0.1:1/", "127.0.0.1", true, 2000, 0, &r, &err),
	    HV_E_UPSTREAM);
	assert_int_equal(r.fail, HV_FETCH_CONNECT);
}

static void
test_size_cap(void **state)
{
	struct hv_fetch_response r;
	struct hv_err err = {0};
	char url[256];

	(void)state;
	hv_stubprov_set_huge_bytes(S, 3 * 1024 * 1024);
	url_of(url, sizeof(url), "127.0.0.1", "/huge");
	assert_int_equal(get(url, "127.0.0.1", true, 5000, 64 * 1024, &r, &err),
	    HV_E_UPSTREAM);
	assert_int_equal(r.fail, HV_FETCH_TOO_LARGE);
	assert_non_null(strstr(err.msg, "65536"));
	url_of(url, sizeof(url), "127.0.0.1", "/huge-chunked");
	assert_int_equal(get(url, "127.0.0.1", true, 5000, 64 * 1024, &r, &err),
	    HV_E_UPSTREAM);
	assert_int_equal(r.fail, HV_FETCH_TOO_LARGE);
	/* under the cap: whole */
	hv_stubprov_set_huge_bytes(S, 1000);
	assert_int_equal(
	    get(url, "127.0.0.1", true, 5000, 64 * 1024, &r, &err), HV_OK);
	assert_int_equal(r.body_len, 1000);
	assert_int_equal(r.body[1000], '\0');
	hv_fetch_response_release(&r);
}

static void
test_connection_reuse(void **state)
{
	struct hv_fetch_response r;
	struct hv_err err = {0};
	char url[256];
	unsigned long before;
	int i;

	(void)state;
	url_of(url, sizeof(url), "127.0.0.1", "/echo");
	assert_int_equal(get(url, "127.0.0.1", true, 2000, 0, &r, &err), HV_OK);
	hv_fetch_response_release(&r);
	before = hv_stubprov_connections(S);
	for (i = 0; i < 5; i++) {
		assert_int_equal(
		    get(url, "127.0.0.1", true, 2000, 0, &r, &err), HV_OK);
		hv_fetch_response_release(&r);
	}
	assert_int_equal(hv_stubprov_connections(S), before);
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/* A self-signed certificate is refused: verification is always on. */
static void
test_tls_verified(void **state)
{
	char dir[] = "/tmp/hvfetchXXXXXX", cp[300], kp[300], url[256];
	char *cert, *key;
	struct hv_stubprov *tls;
	struct hv_fetch_response r;
	struct hv_err err = {0};

	(void)state;
	assert_non_null(mkdtemp(dir));
	(void)snprintf(cp, sizeof(cp), "%s/cert.pem", dir);
	(void)snprintf(kp, sizeof(kp), "%s/key.pem", dir);
	if (hv_test_sh(
	        "openssl req -x509 -newkey ec -pkeyopt "
	        "ec_paramgen_curve:prime256v1 -nodes -keyout %s -out %s -days "
	        "1 "
	        "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
	        ">/dev/null 2>&1",
	        kp, cp) != 0)
		skip();
	cert = slurp(cp);
	key = slurp(kp);
	assert_non_null(cert);
	assert_non_null(key);
	tls = hv_stubprov_start_tls(cert, key);
	(void)snprintf(url, sizeof(url), "%s/v1/balance", hv_stubprov_url(tls));
	assert_int_equal(
	    get(url, "127.0.0.1", true, 3000, 0, &r, &err), HV_E_UPSTREAM);
	assert_int_equal(r.fail, HV_FETCH_TLS);
	assert_non_null(strstr(err.msg, "tls"));
	assert_int_equal(hv_stubprov_count(tls), 0); /* no request made */
	hv_stubprov_stop(&tls);
	free(cert);
	free(key);
	(void)hv_test_sh("rm -rf %s", dir);
}

static int
setup(void **state)
{
	(void)state;
	hv_mem_json_init();
	hv_fetch_global_init();
	S = hv_stubprov_start();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	hv_stubprov_stop(&S);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addresses),
	    cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_get_and_headers),
	    cmocka_unit_test(test_redirect_not_followed),
	    cmocka_unit_test(test_timeout),
	    cmocka_unit_test(test_size_cap),
	    cmocka_unit_test(test_connection_reuse),
	    cmocka_unit_test(test_tls_verified),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
