/*
 * catalog: load, validate and serve the service catalog (catalog.h).
 *
 * The parsed JSON document is kept for the catalog's lifetime; services
 * point into it. Only base URL overrides and their hosts are allocated
 * separately. Everything is validated at load so that the request path can
 * trust the catalog without checks.
 */
#include "catalog.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mem.h"

#define ID_MAX   32
#define HOST_MAX 256
#define TEXT_MAX 1024

struct hv_service {
	const char *id; /* borrowed from root */
	const char *name;
	const char *base_url; /* effective: override or file */
	const char *token_url;
	const char *notes;
	char *override_url;  /* owned */
	char *override_host; /* owned */
	bool generic;
	json_t *obj; /* borrowed from root */
	json_t *auth_types;
	json_t *injection;
	json_t *test;       /* NULL when null */
	const char **hosts; /* owned array, borrowed strings */
	size_t n_hosts;
	size_t n_file_hosts; /* hosts[0..n) from the file */
};

struct hv_catalog {
	json_t *root;
	struct hv_service *svc;
	size_t n;
};

static const char *const auth_types[] = {
    "api_key",
    "bearer",
    "basic",
    "oauth2",
    "custom_headers",
};

/* Framing and hop-by-hop headers an injection may never set. */
static const char *const forbidden_headers[] = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "expect",
    "cookie",
};

bool
hv_auth_type_known(const char *t)
{
	size_t i;

	if (t == NULL)
		return false;
	for (i = 0; i < sizeof(auth_types) / sizeof(auth_types[0]); i++)
		if (strcmp(t, auth_types[i]) == 0)
			return true;
	return false;
}

/* RFC 9110 token characters. */
static bool
is_tchar(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static bool
header_name_ok(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0' || strlen(s) > 128)
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	for (i = 0;
	     i < sizeof(forbidden_headers) / sizeof(forbidden_headers[0]); i++)
		if (strcasecmp(s, forbidden_headers[i]) == 0)
			return false;
	return true;
}

/* Printable text: no control characters (CR/LF would split headers). */
static bool
text_ok(const char *s, size_t max)
{
	size_t i;

	if (s == NULL || strlen(s) > max)
		return false;
	for (i = 0; s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static bool
query_name_ok(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0' || strlen(s) > 128)
		return false;
	for (i = 0; s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && strchr("-._~", c) == NULL)
			return false;
	}
	return true;
}

/* True when every key of obj is in the NULL-terminated list. */
static const char *
unknown_key(const json_t *obj, const char *const *allowed)
{
	const char *k;
	json_t *v;
	size_t i;

	json_object_foreach((json_t *)obj, k, v)
	{
		bool found = false;

		(void)v;
		for (i = 0; allowed[i] != NULL; i++)
			if (strcmp(k, allowed[i]) == 0)
				found = true;
		if (!found)
			return k;
	}
	return NULL;
}

enum hv_rc
hv_injection_check(const json_t *inj, const char *auth_type, struct hv_err *err)
{
	static const char *const k_header[] = {"header", "prefix", NULL};
	static const char *const k_query[] = {"query_param", NULL};
	static const char *const k_basic[] = {
	    "basic", "username", "password", NULL};
	static const char *const k_headers[] = {"headers", NULL};
	json_t *v, *u, *p;
	const char *bad;
	int kinds;
	bool custom, basic_type;

	if (!hv_auth_type_known(auth_type))
		return hv_err_set(err, HV_E_INVALID, "unknown auth_type");
	if (!json_is_object(inj))
		return hv_err_set(err, HV_E_INVALID,
		    "injection must be an "
		    "object");
	custom = strcmp(auth_type, "custom_headers") == 0;
	basic_type = strcmp(auth_type, "basic") == 0;
	kinds = (json_object_get(inj, "header") != NULL) +
	    (json_object_get(inj, "query_param") != NULL) +
	    (json_object_get(inj, "basic") != NULL) +
	    (json_object_get(inj, "headers") != NULL);
	if (kinds != 1)
		return hv_err_set(err, HV_E_INVALID,
		    "injection needs exactly "
		    "one of header, query_param, basic, headers");
	if ((v = json_object_get(inj, "header")) != NULL) {
		if ((bad = unknown_key(inj, k_header)) != NULL)
			return hv_err_set(err, HV_E_INVALID,
			    "injection: "
			    "unknown field '%.64s'",
			    bad);
		if (custom || basic_type)
			return hv_err_set(err, HV_E_INVALID,
			    "injection.header "
			    "does not fit auth_type %s",
			    auth_type);
		if (!json_is_string(v) || !header_name_ok(json_string_value(v)))
			return hv_err_set(err, HV_E_INVALID,
			    "injection.header "
			    "must be an allowed header name");
		p = json_object_get(inj, "prefix");
		if (p != NULL &&
		    (!json_is_string(p) || !text_ok(json_string_value(p), 256)))
			return hv_err_set(err, HV_E_INVALID,
			    "injection.prefix "
			    "must be a string without control characters");
		return HV_OK;
	}
	if ((v = json_object_get(inj, "query_param")) != NULL) {
		if ((bad = unknown_key(inj, k_query)) != NULL)
			return hv_err_set(err, HV_E_INVALID,
			    "injection: "
			    "unknown field '%.64s'",
			    bad);
		if (custom || basic_type)
			return hv_err_set(err, HV_E_INVALID,
			    "injection."
			    "query_param does not fit auth_type %s",
			    auth_type);
		if (!json_is_string(v) || !query_name_ok(json_string_value(v)))
			return hv_err_set(err, HV_E_INVALID,
			    "injection."
			    "query_param must be a name of [A-Za-z0-9._~-]");
		return HV_OK;
	}
	if ((v = json_object_get(inj, "basic")) != NULL) {
		if ((bad = unknown_key(inj, k_basic)) != NULL)
			return hv_err_set(err, HV_E_INVALID,
			    "injection: "
			    "unknown field '%.64s'",
			    bad);
		if (!json_is_true(v))
			return hv_err_set(err, HV_E_INVALID,
			    "injection.basic "
			    "must be true");
		if (custom)
			return hv_err_set(err, HV_E_INVALID,
			    "injection.basic "
			    "does not fit auth_type custom_headers");
		u = json_object_get(inj, "username");
		p = json_object_get(inj, "password");
		if (basic_type && (u != NULL || p != NULL))
			return hv_err_set(err, HV_E_INVALID,
			    "injection: auth_type "
			    "basic takes username and password from the "
			    "secret");
		if (!basic_type && (u != NULL) == (p != NULL))
			return hv_err_set(err, HV_E_INVALID,
			    "injection.basic for "
			    "%s needs exactly one of username, password",
			    auth_type);
		if (u != NULL &&
		    (!json_is_string(u) ||
		        !text_ok(json_string_value(u), 256) ||
		        strchr(json_string_value(u), ':') != NULL))
			return hv_err_set(err, HV_E_INVALID,
			    "injection.username "
			    "must be a string without ':' or control "
			    "characters");
		if (p != NULL &&
		    (!json_is_string(p) || !text_ok(json_string_value(p), 256)))
			return hv_err_set(err, HV_E_INVALID,
			    "injection.password "
			    "must be a string without control characters");
		return HV_OK;
	}
	v = json_object_get(inj, "headers");
	if ((bad = unknown_key(inj, k_headers)) != NULL)
		return hv_err_set(err, HV_E_INVALID,
		    "injection: unknown field "
		    "'%.64s'",
		    bad);
	if (!json_is_true(v))
		return hv_err_set(err, HV_E_INVALID,
		    "injection.headers must be "
		    "true");
	if (!custom)
		return hv_err_set(err, HV_E_INVALID,
		    "injection.headers fits "
		    "only auth_type custom_headers");
	return HV_OK;
}

static bool
host_char_ok(unsigned char c)
{
	return isalnum(c) || c == '-' || c == '.';
}

bool
hv_url_host(const char *url, char *out, size_t cap)
{
	const char *a, *end, *h, *he, *port = NULL;
	size_t n, i;

	if (cap > 0)
		out[0] = '\0';
	if (url == NULL)
		return false;
	if (strncasecmp(url, "https://", 8) == 0)
		a = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		a = url + 7;
	else
		return false;
	end = a + strcspn(a, "/?#");
	if (memchr(a, '@', (size_t)(end - a)) != NULL)
		return false;
	if (*a == '[') {
		h = a + 1;
		he = memchr(h, ']', (size_t)(end - h));
		if (he == NULL)
			return false;
		for (i = 0; h + i < he; i++)
			if (!isxdigit((unsigned char)h[i]) && h[i] != ':' &&
			    h[i] != '.')
				return false;
		if (he + 1 < end) {
			if (he[1] != ':')
				return false;
			port = he + 2;
		}
	} else {
		h = a;
		he = memchr(a, ':', (size_t)(end - a));
		if (he != NULL)
			port = he + 1;
		else
			he = end;
		for (i = 0; h + i < he; i++)
			if (!host_char_ok((unsigned char)h[i]))
				return false;
	}
	if (port != NULL) {
		unsigned long pv = 0;

		if (port == end || end - port > 5)
			return false;
		for (i = 0; port + i < end; i++) {
			if (!isdigit((unsigned char)port[i]))
				return false;
			pv = pv * 10 + (unsigned long)(port[i] - '0');
		}
		if (pv == 0 || pv > 65535)
			return false;
	}
	n = (size_t)(he - h);
	if (n == 0 || n >= cap)
		return false;
	for (i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)h[i]);
	out[n] = '\0';
	return true;
}

/* A host pattern of the file: lowercase name, optional "*." prefix. */
static bool
host_pattern_ok(const char *p)
{
	size_t i, n;

	if (p == NULL)
		return false;
	if (strncmp(p, "*.", 2) == 0)
		p += 2;
	n = strlen(p);
	if (n == 0 || n >= HOST_MAX || p[0] == '.' || p[0] == '-' ||
	    p[n - 1] == '.' || strstr(p, "..") != NULL)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (!(islower(c) || isdigit(c) || c == '-' || c == '.'))
			return false;
	}
	return true;
}

static bool
host_match(const char *pattern, const char *host, size_t hlen)
{
	size_t slen;

	if (strncmp(pattern, "*.", 2) == 0) {
		slen = strlen(pattern + 1); /* ".example.com" */
		return hlen > slen &&
		    strncasecmp(host + hlen - slen, pattern + 1, slen) == 0;
	}
	return strlen(pattern) == hlen && strncasecmp(pattern, host, hlen) == 0;
}

bool
hv_service_host_allowed(const struct hv_service *s, const char *host)
{
	size_t hlen, i;

	if (s == NULL || host == NULL)
		return false;
	hlen = strlen(host);
	if (hlen > 0 && host[hlen - 1] == '.')
		hlen--; /* "api.stripe.com." is the same name */
	if (hlen == 0 || hlen >= HOST_MAX)
		return false;
	for (i = 0; i < s->n_hosts; i++)
		if (host_match(s->hosts[i], host, hlen))
			return true;
	return false;
}

/* "" or "/...", printable, no scheme. */
static bool
path_ok(const char *p)
{
	return p != NULL && (p[0] == '\0' || p[0] == '/') &&
	    text_ok(p, TEXT_MAX) && strchr(p, ' ') == NULL &&
	    strstr(p, "//") == NULL;
}

static bool
pointer_ok(const json_t *v)
{
	const char *p;

	if (!json_is_string(v))
		return false;
	p = json_string_value(v);
	return (p[0] == '\0' || p[0] == '/') && text_ok(p, 256);
}

static enum hv_rc
check_test(const char *id, json_t *t, struct hv_err *err)
{
	static const char *const keys[] = {"method", "path", "headers", "body",
	    "account", "success", "json", NULL};
	const char *m, *bad, *k;
	json_t *v, *a, *x;
	size_t i;

	if ((bad = unknown_key(t, keys)) != NULL)
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "unknown field test.%.64s",
		    id, bad);
	v = json_object_get(t, "method");
	m = json_string_value(v);
	if (m == NULL ||
	    (strcmp(m, "GET") != 0 && strcmp(m, "POST") != 0 &&
	        strcmp(m, "HEAD") != 0))
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "test.method must be GET, POST or HEAD",
		    id);
	if (!path_ok(json_string_value(json_object_get(t, "path"))))
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "test.path must be \"\" or start with '/'",
		    id);
	v = json_object_get(t, "headers");
	if (v != NULL) {
		if (!json_is_object(v))
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': test.headers must be an object",
			    id);
		json_object_foreach(v, k, x)
		{
			if (!header_name_ok(k) || !json_is_string(x) ||
			    !text_ok(json_string_value(x), TEXT_MAX))
				return hv_err_set(err, HV_E_CONFIG,
				    "catalog: "
				    "service '%s': bad test header '%.64s'",
				    id, k);
		}
	}
	v = json_object_get(t, "body");
	if (v != NULL && !json_is_string(v))
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "test.body must be a string",
		    id);
	v = json_object_get(t, "account");
	if (json_is_array(v)) {
		if (json_array_size(v) == 0)
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': test.account is an empty list",
			    id);
		json_array_foreach(v, i, a)
		{
			if (!pointer_ok(a))
				return hv_err_set(err, HV_E_CONFIG,
				    "catalog: "
				    "service '%s': test.account must hold "
				    "JSON pointers",
				    id);
		}
	} else if (v != NULL && !json_is_null(v) && !pointer_ok(v)) {
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "test.account must be a JSON pointer, a list of them or "
		    "null",
		    id);
	}
	v = json_object_get(t, "json");
	if (v != NULL && !json_is_boolean(v))
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "test.json must be true or false",
		    id);
	v = json_object_get(t, "success");
	if (v != NULL) {
		if (!json_is_object(v))
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': test.success must be an object",
			    id);
		json_object_foreach(v, k, x)
		{
			(void)x;
			if (k[0] != '/' || !text_ok(k, 256))
				return hv_err_set(err, HV_E_CONFIG,
				    "catalog: "
				    "service '%s': test.success keys must be "
				    "JSON pointers",
				    id);
		}
	}
	return HV_OK;
}

static bool
id_ok(const char *id)
{
	size_t i;

	if (id == NULL || id[0] == '\0' || strlen(id) > ID_MAX)
		return false;
	for (i = 0; id[i] != '\0'; i++) {
		unsigned char c = (unsigned char)id[i];

		if (!(islower(c) || isdigit(c) || c == '_'))
			return false;
	}
	return true;
}

/* An absolute URL of the file: https, host, no query, fragment or '/' end. */
static bool
file_url_ok(const char *u, char *host, size_t cap)
{
	size_t n;

	if (u == NULL || strncmp(u, "https://", 8) != 0 ||
	    !text_ok(u, TEXT_MAX) || strchr(u, ' ') != NULL)
		return false;
	n = strlen(u);
	return hv_url_host(u, host, cap) && u[n - 1] != '/';
}

static enum hv_rc
load_service(struct hv_catalog *cat, size_t idx, json_t *o, struct hv_err *err)
{
	static const char *const keys[] = {"id", "name", "auth_types",
	    "injection", "base_url", "allowed_hosts", "token_url", "test",
	    "notes", NULL};
	static const char *const required[] = {"id", "name", "auth_types",
	    "injection", "base_url", "allowed_hosts", "token_url", "test",
	    NULL};
	struct hv_service *s = &cat->svc[idx];
	char host[HOST_MAX], where[48];
	const char *id, *bad, *k;
	json_t *v, *x;
	size_t i, j;
	enum hv_rc rc;

	if (!json_is_object(o))
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: entry %zu is not "
		    "an object",
		    idx);
	v = json_object_get(o, "id");
	id = json_string_value(v);
	if (!id_ok(id))
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: entry %zu: id "
		    "must be 1 to %d characters of [a-z0-9_]",
		    idx, ID_MAX);
	for (i = 0; i < idx; i++)
		if (strcmp(cat->svc[i].id, id) == 0)
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s' appears twice",
			    id);
	s->id = id;
	s->obj = o;
	if ((bad = unknown_key(o, keys)) != NULL)
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "unknown field '%.64s'",
		    id, bad);
	for (i = 0; required[i] != NULL; i++)
		if (json_object_get(o, required[i]) == NULL)
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': missing field '%s'",
			    id, required[i]);

	s->name = json_string_value(json_object_get(o, "name"));
	if (s->name == NULL || s->name[0] == '\0' || !text_ok(s->name, 128))
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "name must be a non-empty string",
		    id);

	s->auth_types = json_object_get(o, "auth_types");
	if (!json_is_array(s->auth_types) ||
	    json_array_size(s->auth_types) == 0)
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "auth_types must be a non-empty list",
		    id);
	json_array_foreach(s->auth_types, i, v)
	{
		if (!hv_auth_type_known(json_string_value(v)))
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': unknown auth type in auth_types",
			    id);
		for (j = 0; j < i; j++)
			if (json_equal(v, json_array_get(s->auth_types, j)))
				return hv_err_set(err, HV_E_CONFIG,
				    "catalog: "
				    "service '%s': auth type '%s' listed twice",
				    id, json_string_value(v));
	}

	s->injection = json_object_get(o, "injection");
	if (!json_is_object(s->injection))
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "injection must be an object",
		    id);
	json_object_foreach(s->injection, k, x)
	{
		if (!hv_service_supports(s, k))
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': injection.%.32s is not one of auth_types",
			    id, k);
		rc = hv_injection_check(x, k, err);
		if (rc != HV_OK) {
			snprintf(
			    where, sizeof(where), "catalog: service '%s'", id);
			hv_err_prefix(err, where);
			err->rc = HV_E_CONFIG;
			return HV_E_CONFIG;
		}
	}
	json_array_foreach(s->auth_types, i, v)
	{
		if (json_object_get(s->injection, json_string_value(v)) == NULL)
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': no injection for auth type '%s'",
			    id, json_string_value(v));
	}

	v = json_object_get(o, "base_url");
	host[0] = '\0';
	if (json_is_null(v)) {
		s->generic = true;
	} else if (!file_url_ok(json_string_value(v), host, sizeof(host))) {
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "base_url must be null or https://host[:port][/path] "
		    "without a trailing '/'",
		    id);
	} else {
		s->base_url = json_string_value(v);
	}

	v = json_object_get(o, "allowed_hosts");
	if (!json_is_array(v))
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "allowed_hosts must be a list",
		    id);
	/*
	 * base_url set: hosts required. base_url null: no hosts means any
	 * host the credential's base_url names (generic); hosts mean the
	 * credential's base_url must match them (Shopify's per-shop hosts).
	 */
	if (!s->generic && json_array_size(v) == 0)
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "allowed_hosts must not be empty when base_url is set",
		    id);
	/* One spare slot for an override's host. */
	s->hosts = hv_calloc(json_array_size(v) + 1, sizeof(*s->hosts));
	if (s->hosts == NULL)
		return hv_err_set(err, HV_E_NOMEM, "catalog: out of memory");
	json_array_foreach(v, i, x)
	{
		if (!host_pattern_ok(json_string_value(x)))
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': allowed_hosts[%zu] is not a lowercase host "
			    "name or *.domain",
			    id, i);
		s->hosts[s->n_hosts++] = json_string_value(x);
	}
	s->n_file_hosts = s->n_hosts;
	if (!s->generic && !hv_service_host_allowed(s, host))
		return hv_err_set(err, HV_E_CONFIG,
		    "catalog: service '%s': "
		    "the base_url host is not in allowed_hosts",
		    id);

	v = json_object_get(o, "token_url");
	if (!json_is_null(v)) {
		if (!file_url_ok(json_string_value(v), host, sizeof(host)))
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': token_url must be null or an https URL",
			    id);
		s->token_url = json_string_value(v);
	}

	v = json_object_get(o, "test");
	if (!json_is_null(v)) {
		if (!json_is_object(v))
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': test must be an object or null",
			    id);
		rc = check_test(id, v, err);
		if (rc != HV_OK)
			return rc;
		s->test = v;
	}

	v = json_object_get(o, "notes");
	if (v != NULL) {
		if (!json_is_string(v))
			return hv_err_set(err, HV_E_CONFIG,
			    "catalog: service "
			    "'%s': notes must be a string",
			    id);
		s->notes = json_string_value(v);
	}
	return HV_OK;
}

static enum hv_rc
apply_override(
    struct hv_catalog *cat, const char *id, const char *url, struct hv_err *err)
{
	struct hv_service *s = NULL;
	char host[HOST_MAX];
	size_t i, n;

	for (i = 0; i < cat->n; i++)
		if (strcasecmp(cat->svc[i].id, id) == 0)
			s = &cat->svc[i];
	if (s == NULL) {
		hv_log_warn("service_%s_base_url: no service '%s' in the "
		            "catalog; ignored",
		    id, id);
		return HV_OK;
	}
	if (url == NULL || url[0] == '\0' || !text_ok(url, TEXT_MAX) ||
	    strchr(url, ' ') != NULL || strpbrk(url, "?#") != NULL ||
	    !hv_url_host(url, host, sizeof(host)))
		return hv_err_set(err, HV_E_CONFIG,
		    "service_%s_base_url must "
		    "be http(s)://host[:port][/path]",
		    s->id);
	n = strlen(url);
	while (n > 0 && url[n - 1] == '/')
		n--;
	hv_free(s->override_url);
	hv_free(s->override_host);
	s->override_url = hv_malloc(n + 1);
	s->override_host = hv_strdup(host);
	if (s->override_url == NULL || s->override_host == NULL)
		return hv_err_set(err, HV_E_NOMEM, "catalog: out of memory");
	memcpy(s->override_url, url, n);
	s->override_url[n] = '\0';
	s->base_url = s->override_url;
	if (!hv_service_host_allowed(s, host))
		s->hosts[s->n_hosts++] = s->override_host;
	return HV_OK;
}

enum hv_rc
hv_catalog_parse(const char *text, const struct hv_cfg *cfg,
    struct hv_catalog **out, struct hv_err *err)
{
	struct hv_catalog *cat = NULL;
	json_error_t jerr;
	json_t *v;
	size_t i;
	enum hv_rc rc = HV_OK;

	cat = hv_calloc(1, sizeof(*cat));
	if (cat == NULL)
		return hv_err_set(err, HV_E_NOMEM, "catalog: out of memory");
	cat->root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (cat->root == NULL) {
		rc = hv_err_set(err, HV_E_CONFIG, "catalog: line %d: %s",
		    jerr.line, jerr.text);
		goto out;
	}
	if (!json_is_array(cat->root) || json_array_size(cat->root) == 0) {
		rc = hv_err_set(err, HV_E_CONFIG,
		    "catalog: must be a non-empty "
		    "JSON array of services");
		goto out;
	}
	cat->svc = hv_calloc(json_array_size(cat->root), sizeof(*cat->svc));
	if (cat->svc == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "catalog: out of memory");
		goto out;
	}
	json_array_foreach(cat->root, i, v)
	{
		cat->n = i + 1; /* so that free sees partial entries */
		rc = load_service(cat, i, v, err);
		if (rc != HV_OK)
			goto out;
	}
	for (i = 0; cfg != NULL && i < cfg->n_services; i++) {
		rc = apply_override(
		    cat, cfg->services[i].id, cfg->services[i].base_url, err);
		if (rc != HV_OK)
			goto out;
	}
	*out = cat;
	cat = NULL;
out:
	hv_catalog_free(&cat);
	return rc;
}

enum hv_rc
hv_catalog_load(const char *path, const struct hv_cfg *cfg,
    struct hv_catalog **out, struct hv_err *err)
{
	FILE *f = NULL;
	char *text = NULL;
	long sz;
	size_t n;
	enum hv_rc rc;

	if (path == NULL)
		return hv_catalog_parse(hv_catalog_data, cfg, out, err);
	f = fopen(path, "rb");
	if (f == NULL)
		return hv_err_set(err, HV_E_IO, "catalog: cannot open '%s': %s",
		    path, strerror(errno));
	if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 ||
	    sz > 4L * 1024 * 1024 || fseek(f, 0, SEEK_SET) != 0) {
		rc = hv_err_set(err, HV_E_IO,
		    "catalog: cannot size '%s' (at "
		    "most 4 MiB)",
		    path);
		goto out;
	}
	text = hv_malloc((size_t)sz + 1);
	if (text == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "catalog: out of memory");
		goto out;
	}
	n = fread(text, 1, (size_t)sz, f);
	if (n != (size_t)sz) {
		rc =
		    hv_err_set(err, HV_E_IO, "catalog: cannot read '%s'", path);
		goto out;
	}
	text[n] = '\0';
	rc = hv_catalog_parse(text, cfg, out, err);
	if (rc != HV_OK && rc != HV_E_NOMEM) {
		/* Name the file: the message already names the service. */
		char where[300];

		snprintf(where, sizeof(where), "%.280s", path);
		hv_err_prefix(err, where);
	}
out:
	hv_free(text);
	if (f != NULL)
		fclose(f);
	return rc;
}

void
hv_catalog_free(struct hv_catalog **c)
{
	size_t i;

	if (c == NULL || *c == NULL)
		return;
	for (i = 0; (*c)->svc != NULL && i < (*c)->n; i++) {
		hv_free((*c)->svc[i].override_url);
		hv_free((*c)->svc[i].override_host);
		hv_free((void *)(*c)->svc[i].hosts);
	}
	hv_free((*c)->svc);
	json_decref((*c)->root);
	hv_free(*c);
	*c = NULL;
}

size_t
hv_catalog_count(const struct hv_catalog *c)
{
	return c == NULL ? 0 : c->n;
}

const struct hv_service *
hv_catalog_at(const struct hv_catalog *c, size_t i)
{
	return c == NULL || i >= c->n ? NULL : &c->svc[i];
}

const struct hv_service *
hv_catalog_find(const struct hv_catalog *c, const char *id)
{
	size_t i;

	if (c == NULL || id == NULL)
		return NULL;
	for (i = 0; i < c->n; i++)
		if (strcmp(c->svc[i].id, id) == 0)
			return &c->svc[i];
	return NULL;
}

const char *
hv_service_id(const struct hv_service *s)
{
	return s->id;
}

const char *
hv_service_name(const struct hv_service *s)
{
	return s->name;
}

const char *
hv_service_base_url(const struct hv_service *s)
{
	return s->base_url;
}

bool
hv_service_is_generic(const struct hv_service *s)
{
	return s->generic;
}

bool
hv_service_credential_host_allowed(const struct hv_service *s, const char *host)
{
	size_t hlen, i;

	if (s == NULL || host == NULL || host[0] == '\0')
		return false;
	/* A catalog base_url: the credential's own is a self-hosted one. */
	if (!s->generic || s->n_file_hosts == 0)
		return true;
	hlen = strlen(host);
	if (host[hlen - 1] == '.')
		hlen--;
	if (hlen == 0 || hlen >= HOST_MAX)
		return false;
	for (i = 0; i < s->n_hosts; i++)
		if (host_match(s->hosts[i], host, hlen))
			return true;
	return false;
}

const char *
hv_service_token_url(const struct hv_service *s)
{
	return s->token_url;
}

bool
hv_service_supports(const struct hv_service *s, const char *auth_type)
{
	size_t i;
	json_t *v;

	if (s == NULL || auth_type == NULL)
		return false;
	json_array_foreach(s->auth_types, i, v)
	{
		if (strcmp(json_string_value(v), auth_type) == 0)
			return true;
	}
	return false;
}

const char *
hv_service_default_auth_type(const struct hv_service *s)
{
	return json_string_value(json_array_get(s->auth_types, 0));
}

json_t *
hv_service_injection(const struct hv_service *s, const char *auth_type)
{
	if (!hv_service_supports(s, auth_type))
		return NULL;
	return json_object_get(s->injection, auth_type);
}

size_t
hv_service_host_count(const struct hv_service *s)
{
	return s->n_hosts;
}

const char *
hv_service_host(const struct hv_service *s, size_t i)
{
	return i < s->n_hosts ? s->hosts[i] : NULL;
}

json_t *
hv_service_test(const struct hv_service *s)
{
	return s->test;
}

const char *
hv_service_notes(const struct hv_service *s)
{
	return s->notes;
}

static json_t *
str_or_null(const char *s)
{
	return s == NULL ? json_null() : json_string(s);
}

json_t *
hv_service_to_json(const struct hv_service *s)
{
	json_t *o, *hosts;
	size_t i;
	int bad = 0;

	o = json_object();
	hosts = json_array();
	if (o == NULL || hosts == NULL) {
		json_decref(o);
		json_decref(hosts);
		return NULL;
	}
	for (i = 0; i < s->n_hosts; i++)
		bad |= json_array_append_new(hosts, json_string(s->hosts[i]));
	bad |= json_object_set_new(o, "id", json_string(s->id));
	bad |= json_object_set_new(o, "name", json_string(s->name));
	bad |=
	    json_object_set_new(o, "auth_types", json_deep_copy(s->auth_types));
	bad |= json_object_set_new(o, "default_auth_type",
	    json_string(hv_service_default_auth_type(s)));
	bad |=
	    json_object_set_new(o, "injection", json_deep_copy(s->injection));
	bad |= json_object_set_new(o, "base_url", str_or_null(s->base_url));
	bad |= json_object_set_new(o, "allowed_hosts", hosts);
	bad |= json_object_set_new(o, "token_url", str_or_null(s->token_url));
	bad |= json_object_set_new(
	    o, "test", s->test == NULL ? json_null() : json_deep_copy(s->test));
	bad |= json_object_set_new(o, "notes", str_or_null(s->notes));
	if (bad != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *
hv_catalog_to_json(const struct hv_catalog *c)
{
	json_t *items, *o;
	size_t i;

	items = json_array();
	if (items == NULL)
		return NULL;
	for (i = 0; i < c->n; i++) {
		if (json_array_append_new(
		        items, hv_service_to_json(&c->svc[i])) != 0) {
			json_decref(items);
			return NULL;
		}
	}
	o = json_object();
	if (o == NULL || json_object_set_new(o, "items", items) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}
