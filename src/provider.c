/*
 * provider: credential test, brokered use and OAuth 2.0 refresh
 * (provider.h, docs/providers.md).
 *
 * A call goes: validate the caller's request (use) -> open the credential
 * (scope, visibility, allow-list, revoked; vault_cred.c) -> expired? ->
 * where may it go (catalog and credential base_url, scheme) -> refresh an
 * expiring OAuth token (vault_provider.c) -> build the request with the
 * credential injected, in locked memory -> fetch (fetch.c: address
 * checks, pinning, no redirects, timeouts, size cap) -> audit the outcome
 * and set the status -> answer, scrubbed of every secret value.
 */
#include "provider.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "fetch.h"
#include "httpreq.h"
#include "log.h"
#include "mem.h"

#define PATH_MAX_BYTES    2048
#define QUERY_MAX_ENTRIES 64
#define QUERY_KEY_MAX     256
#define QUERY_VAL_MAX     4096
#define HEADERS_MAX       64
#define HEADER_NAME_MAX   128
#define HEADER_VAL_MAX    8192
#define LINES_MAX         (HEADERS_MAX + 40)
#define NEEDLES_MAX       256
#define URL_MAX           8192
#define SECRET_VAL_MAX    16384
#define REFRESH_SKEW_S    30
#define REDACTED          "[REDACTED]"

static const char *const use_fields[] = {
    "method", "path", "query", "headers", "body", NULL};
static const char *const use_methods[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", NULL};
/*
 * Framing, routing and hop-by-hop headers a caller may not set, and
 * Accept-Encoding: curl negotiates and decodes compression itself, so
 * that answers can be scrubbed.
 */
static const char *const forbidden_headers[] = {"host", "content-length",
    "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
    "proxy-authorization", "proxy-connection", "expect", "accept-encoding",
    NULL};
/* Provider answer headers that describe the hop, not the answer. */
static const char *const dropped_answer_headers[] = {"connection", "keep-alive",
    "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate",
    "proxy-connection", "content-length", "content-encoding", NULL};

static bool
in_list(const char *s, const char *const *list, bool nocase)
{
	size_t i;

	for (i = 0; s != NULL && list[i] != NULL; i++)
		if ((nocase ? strcasecmp(s, list[i]) : strcmp(s, list[i])) == 0)
			return true;
	return false;
}

/* Free what jansson allocated (json_dumps): its (zeroing) allocator. */
static void
json_text_free(char *s)
{
	json_malloc_t m;
	json_free_t f;

	if (s == NULL)
		return;
	json_get_alloc_funcs(&m, &f);
	f(s);
}

/* ------------------------------------------------------------------ */
/* Growing buffers in locked memory                                    */

struct sbuf {
	struct hv_secret *s;
	size_t len;
	bool oom;
};

static void
sb_add(struct sbuf *b, const void *p, size_t n)
{
	struct hv_secret *ns;
	size_t want;

	if (b->oom)
		return;
	if (b->s == NULL || b->len + n + 1 > b->s->cap) {
		want = b->s == NULL ? 256 : b->s->cap * 2;
		while (want < b->len + n + 1)
			want *= 2;
		ns = hv_secret_new(want - 1);
		if (ns == NULL) {
			b->oom = true;
			return;
		}
		if (b->s != NULL)
			memcpy(ns->buf, b->s->buf, b->len);
		hv_secret_free(&b->s);
		b->s = ns;
	}
	if (n > 0)
		memcpy(b->s->buf + b->len, p, n);
	b->len += n;
	b->s->buf[b->len] = '\0';
	b->s->len = b->len;
}

static void
sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* Percent-encode everything but RFC 3986 unreserved characters. */
static void
sb_pct(struct sbuf *b, const char *s, size_t n, bool upper)
{
	static const char hu[] = "0123456789ABCDEF";
	static const char hl[] = "0123456789abcdef";
	const char *hex = upper ? hu : hl;
	char e[3];
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (isalnum(c) || c == '-' || c == '.' || c == '_' ||
		    c == '~') {
			sb_add(b, &s[i], 1);
		} else {
			e[0] = '%';
			e[1] = hex[c >> 4];
			e[2] = hex[c & 15];
			sb_add(b, e, 3);
		}
	}
}

static void
sb_b64(struct sbuf *b, const unsigned char *p, size_t n)
{
	struct hv_secret *t;
	int k;

	if (b->oom)
		return;
	if (n > (size_t)INT32_MAX / 2) {
		b->oom = true;
		return;
	}
	t = hv_secret_new((n + 2) / 3 * 4 + 1);
	if (t == NULL) {
		b->oom = true;
		return;
	}
	k = EVP_EncodeBlock(t->buf, p, (int)n);
	if (k < 0)
		b->oom = true;
	else
		sb_add(b, t->buf, (size_t)k);
	hv_secret_free(&t);
}

static const char *
sb_cstr(const struct sbuf *b)
{
	return b->s != NULL ? (const char *)b->s->buf : "";
}

static void
sb_free(struct sbuf *b)
{
	hv_secret_free(&b->s);
	b->len = 0;
	b->oom = false;
}

/* ------------------------------------------------------------------ */
/* Validation of the use body                                          */

static void
safe_name(char *out, size_t cap, const char *k)
{
	hv_httpreq_sanitize(out, cap, k, strlen(k));
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (unsigned char)tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * A path segment (s[0..n)) after percent-decoding: refuses bad escapes,
 * encoded '/', '\' and NUL, and the dot-segments "." and ".." (also as
 * "..;params", which some servers read as "..").
 */
static bool
segment_ok(const char *s, size_t n)
{
	char d[8];
	size_t i, o = 0, semi = n;
	int hi, lo;

	for (i = 0; i < n; i++)
		if (s[i] == ';') {
			semi = i;
			break;
		}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '%') {
			if (i + 2 >= n)
				return false;
			hi = hexval((unsigned char)s[i + 1]);
			lo = hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			c = (unsigned char)(hi << 4 | lo);
			if (c == '/' || c == '\\' || c == '\0')
				return false;
			if (i < semi && o < sizeof(d))
				d[o++] = (char)c;
			i += 2;
			continue;
		}
		if (i < semi && o < sizeof(d))
			d[o++] = (char)c;
	}
	if (o == 1 && d[0] == '.')
		return false;
	if (o == 2 && d[0] == '.' && d[1] == '.')
		return false;
	return true;
}

/*
 * path: relative to the base URL, "/..." with a single leading slash,
 * printable ASCII without space, '\', '#' or '@', no dot-segments (also
 * percent-encoded), at most PATH_MAX_BYTES. A "?query" part is allowed;
 * *qpos receives its offset (or n).
 */
static enum hv_rc
check_path(const char *p, size_t n, size_t *qpos, struct hv_err *err)
{
	size_t i, seg, q;

	if (n == 0 || n > PATH_MAX_BYTES || p[0] != '/' ||
	    (n > 1 && p[1] == '/'))
		return hv_err_set(err, HV_E_INVALID,
		    "path must start with a "
		    "single '/' and be at most %d bytes",
		    PATH_MAX_BYTES);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '#' || c == '@')
			return hv_err_set(err, HV_E_INVALID,
			    "path must be "
			    "printable ASCII (percent-encode the rest) "
			    "without spaces, '\\', '#' or '@'");
	}
	q = strcspn(p, "?");
	if (q > n)
		q = n;
	seg = 1;
	for (i = 1; i <= q; i++) {
		if (i == q || p[i] == '/') {
			if (!segment_ok(p + seg, i - seg))
				return hv_err_set(err, HV_E_INVALID,
				    "path must "
				    "not contain dot-segments, encoded '/' or "
				    "'\\', or bad percent escapes");
			seg = i + 1;
		}
	}
	*qpos = q;
	return HV_OK;
}

/* Header value: no control characters but tab, at most max bytes. */
static bool
header_value_ok(const char *s, size_t n, size_t max)
{
	size_t i;

	if (n > max || strlen(s) != n)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static bool
token_ok(const char *s, size_t max)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) &&
		    (c == 0 || strchr("!#$%&'*+-.^_`|~", c) == NULL))
			return false;
	}
	return true;
}

enum hv_rc
hv_provider_check_use(const json_t *body, struct hv_err *err)
{
	const char *k, *m = "GET";
	char name[64];
	json_t *val, *j;
	size_t qpos;
	enum hv_rc rc;

	if (!json_is_object(body))
		return hv_err_set(err, HV_E_INVALID,
		    "body must be a JSON "
		    "object");
	json_object_foreach((json_t *)body, k, val)
	{
		(void)val;
		if (!in_list(k, use_fields, false)) {
			safe_name(name, sizeof(name), k);
			return hv_err_set(err, HV_E_INVALID,
			    "unknown field "
			    "'%s'",
			    name);
		}
	}
	j = json_object_get(body, "method");
	if (j != NULL && !json_is_null(j)) {
		if (!json_is_string(j) ||
		    !in_list(json_string_value(j), use_methods, false))
			return hv_err_set(err, HV_E_INVALID,
			    "method must be "
			    "one of GET, HEAD, POST, PUT, PATCH, DELETE, "
			    "OPTIONS");
		m = json_string_value(j);
	}
	j = json_object_get(body, "path");
	if (!json_is_string(j))
		return hv_err_set(err, HV_E_INVALID,
		    "path is required and "
		    "must be a string");
	if (strlen(json_string_value(j)) != json_string_length(j))
		return hv_err_set(err, HV_E_INVALID,
		    "path must not contain "
		    "NUL");
	rc =
	    check_path(json_string_value(j), json_string_length(j), &qpos, err);
	if (rc != HV_OK)
		return rc;
	j = json_object_get(body, "query");
	if (j != NULL && !json_is_null(j)) {
		if (!json_is_object(j) ||
		    json_object_size(j) > QUERY_MAX_ENTRIES)
			return hv_err_set(err, HV_E_INVALID,
			    "query must be an "
			    "object of at most %d strings",
			    QUERY_MAX_ENTRIES);
		json_object_foreach(j, k, val)
		{
			if (k[0] == '\0' || strlen(k) > QUERY_KEY_MAX ||
			    !json_is_string(val) ||
			    json_string_length(val) > QUERY_VAL_MAX ||
			    strlen(json_string_value(val)) !=
			        json_string_length(val))
				return hv_err_set(err, HV_E_INVALID,
				    "query "
				    "must map names of 1 to %d bytes to "
				    "strings of at most %d bytes",
				    QUERY_KEY_MAX, QUERY_VAL_MAX);
		}
	}
	j = json_object_get(body, "headers");
	if (j != NULL && !json_is_null(j)) {
		if (!json_is_object(j) || json_object_size(j) > HEADERS_MAX)
			return hv_err_set(err, HV_E_INVALID,
			    "headers must be "
			    "an object of at most %d strings",
			    HEADERS_MAX);
		json_object_foreach(j, k, val)
		{
			if (!token_ok(k, HEADER_NAME_MAX))
				return hv_err_set(err, HV_E_INVALID,
				    "invalid "
				    "header name");
			if (in_list(k, forbidden_headers, true)) {
				safe_name(name, sizeof(name), k);
				return hv_err_set(err, HV_E_INVALID,
				    "header "
				    "'%s' may not be set",
				    name);
			}
			if (!json_is_string(val) ||
			    !header_value_ok(json_string_value(val),
			        json_string_length(val), HEADER_VAL_MAX)) {
				safe_name(name, sizeof(name), k);
				return hv_err_set(err, HV_E_INVALID,
				    "header "
				    "'%s' must be a string of at most %d bytes "
				    "without control characters",
				    name, HEADER_VAL_MAX);
			}
		}
	}
	j = json_object_get(body, "body");
	if (j != NULL && !json_is_null(j)) {
		if (!json_is_string(j) && !json_is_object(j) &&
		    !json_is_array(j))
			return hv_err_set(err, HV_E_INVALID,
			    "body must be a "
			    "string, an object, an array or null");
		if (strcmp(m, "HEAD") == 0)
			return hv_err_set(err, HV_E_INVALID,
			    "a HEAD request "
			    "has no body");
	}
	return HV_OK;
}

/* ------------------------------------------------------------------ */
/* The credential: where it may go and how it is injected              */

struct target {
	char base[URL_MAX]; /* without trailing '/' */
	char host[256];
	bool https;
};

static enum hv_rc
resolve_target(const struct hv_cfg *cfg, const struct hv_service *svc,
    const json_t *meta, struct target *t, struct hv_err *err)
{
	const char *cb = json_string_value(json_object_get(meta, "base_url"));
	const char *base;
	size_t n;

	if (cb != NULL) {
		base = cb;
		if (!hv_url_host(base, t->host, sizeof(t->host)))
			return hv_err_set(err, HV_E_CONFLICT,
			    "the credential's "
			    "base_url is not a usable http(s) url");
		if (!hv_service_credential_host_allowed(svc, t->host))
			return hv_err_set(err, HV_E_FORBIDDEN,
			    "host '%s' is not "
			    "allowed for service %s",
			    t->host, hv_service_id(svc));
	} else {
		base = hv_service_base_url(svc);
		if (base == NULL)
			return hv_err_set(err, HV_E_CONFLICT,
			    "service %s needs "
			    "the credential's base_url, and it has none",
			    hv_service_id(svc));
		if (!hv_url_host(base, t->host, sizeof(t->host)) ||
		    !hv_service_host_allowed(svc, t->host))
			return hv_err_set(err, HV_E_FORBIDDEN,
			    "the base url "
			    "of service %s names a host it does not allow",
			    hv_service_id(svc));
	}
	if (strchr(base, '?') != NULL || strchr(base, '#') != NULL)
		return hv_err_set(err, HV_E_CONFLICT,
		    "base url must not hold "
		    "a query or fragment");
	t->https = strncasecmp(base, "https://", 8) == 0;
	/* A secret never crosses the network in clear text. */
	if (!t->https && !cfg->allow_private_targets)
		return hv_err_set(err, HV_E_FORBIDDEN,
		    "http (without TLS) is "
		    "allowed only when allow_private_targets is on");
	n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	if (n >= sizeof(t->base))
		return hv_err_set(err, HV_E_CONFLICT, "base url too long");
	memcpy(t->base, base, n);
	t->base[n] = '\0';
	return HV_OK;
}

static void
limits_of(const struct hv_cfg *cfg, struct hv_fetch_limits *lim)
{
	long total = cfg->upstream_timeout_ms > 0
	    ? (long)cfg->upstream_timeout_ms
	    : HV_FETCH_TIMEOUT_MS;

	memset(lim, 0, sizeof(*lim));
	lim->timeout_ms = total;
	lim->connect_timeout_ms = total < HV_FETCH_CONNECT_TIMEOUT_MS
	    ? total
	    : HV_FETCH_CONNECT_TIMEOUT_MS;
	lim->max_response = cfg->upstream_max_response;
	lim->allow_private = cfg->allow_private_targets;
}

/* The secret field that carries the value for a non-basic auth type. */
static const char *
value_field(const char *auth_type)
{
	if (strcmp(auth_type, "api_key") == 0)
		return "key";
	if (strcmp(auth_type, "bearer") == 0)
		return "token";
	if (strcmp(auth_type, "oauth2") == 0)
		return "access_token";
	return NULL;
}

/* A stored secret value fit to travel in a header or URL. */
static const char *
secret_str(
    const json_t *secret, const char *field, struct hv_err *err, enum hv_rc *rc)
{
	const json_t *j = json_object_get(secret, field);
	const char *s = json_string_value(j);

	if (s == NULL || s[0] == '\0' ||
	    !header_value_ok(s, json_string_length(j), SECRET_VAL_MAX)) {
		*rc = hv_err_set(err, HV_E_CONFLICT,
		    "the credential's secret "
		    "has no usable '%s'",
		    field);
		return NULL;
	}
	return s;
}

/*
 * The outgoing request under construction: header lines and the URL in
 * locked memory, the names the credential sets, and the scrub list.
 */
struct outreq {
	struct sbuf lines[LINES_MAX];
	size_t n_lines;
	const char *line_ptrs[LINES_MAX];
	char inj_names[40][HEADER_NAME_MAX + 1]; /* lowercase */
	size_t n_inj;
	char query_param[HEADER_NAME_MAX + 1]; /* "" when none */
	struct sbuf query_value;               /* encoded */
	struct sbuf needles[NEEDLES_MAX];
	size_t n_needles;
	struct sbuf url;
	char *body; /* jansson text or NULL */
	const char *body_ptr;
	size_t body_len;
	bool send_body;
};

static void
outreq_release(struct outreq *o)
{
	size_t i;

	for (i = 0; i < o->n_lines; i++)
		sb_free(&o->lines[i]);
	for (i = 0; i < o->n_needles; i++)
		sb_free(&o->needles[i]);
	sb_free(&o->url);
	sb_free(&o->query_value);
	json_text_free(o->body);
	memset(o, 0, sizeof(*o));
}

static enum hv_rc
oom(struct hv_err *err)
{
	return hv_err_set(err, HV_E_NOMEM, "out of memory");
}

/* Append a "Name: value" line (value may be a secret). */
static enum hv_rc
add_line(struct outreq *o, const char *name, const char *prefix,
    const char *value, struct hv_err *err)
{
	struct sbuf *b;

	if (o->n_lines == LINES_MAX)
		return hv_err_set(err, HV_E_INVALID, "too many headers");
	b = &o->lines[o->n_lines++];
	sb_str(b, name);
	sb_str(b, ": ");
	if (prefix != NULL)
		sb_str(b, prefix);
	sb_str(b, value);
	return b->oom ? oom(err) : HV_OK;
}

static enum hv_rc
add_inj_name(struct outreq *o, const char *name, struct hv_err *err)
{
	size_t i, n = strlen(name);

	if (n > HEADER_NAME_MAX ||
	    o->n_inj == sizeof(o->inj_names) / sizeof(o->inj_names[0]))
		return hv_err_set(err, HV_E_CONFLICT,
		    "too many injected "
		    "headers");
	for (i = 0; i <= n; i++)
		o->inj_names[o->n_inj][i] =
		    (char)tolower((unsigned char)name[i]);
	o->n_inj++;
	return HV_OK;
}

static bool
injected(const struct outreq *o, const char *name)
{
	size_t i;

	for (i = 0; i < o->n_inj; i++)
		if (strcasecmp(o->inj_names[i], name) == 0)
			return true;
	return false;
}

/* Add s and its encoded forms to the scrub list. */
static void
add_needle_forms(struct outreq *o, const char *s, size_t n)
{
	struct sbuf b[5];
	json_t *js;
	char *txt;
	size_t i, k, m = 0;

	if (n == 0)
		return;
	memset(b, 0, sizeof(b));
	sb_add(&b[m++], s, n);
	sb_pct(&b[m++], s, n, true);
	sb_pct(&b[m++], s, n, false);
	js = json_stringn(s, n);
	if (js != NULL) {
		txt = json_dumps(js, JSON_ENCODE_ANY);
		if (txt != NULL && strlen(txt) >= 2)
			sb_add(&b[m++], txt + 1, strlen(txt) - 2);
		json_text_free(txt);
		txt = json_dumps(js, JSON_ENCODE_ANY | JSON_ESCAPE_SLASH);
		if (txt != NULL && strlen(txt) >= 2)
			sb_add(&b[m++], txt + 1, strlen(txt) - 2);
		json_text_free(txt);
		json_decref(js);
	}
	for (i = 0; i < m; i++) {
		bool dup = b[i].oom || b[i].len == 0;

		for (k = 0; k < o->n_needles && !dup; k++)
			dup = o->needles[k].len == b[i].len &&
			    memcmp(o->needles[k].s->buf, b[i].s->buf,
			        b[i].len) == 0;
		if (dup || o->n_needles == NEEDLES_MAX) {
			sb_free(&b[i]);
			continue;
		}
		o->needles[o->n_needles++] = b[i];
	}
}

/* Every secret value of a secret object (not token_url, expires_at). */
static void
add_secret_needles(struct outreq *o, const json_t *secret)
{
	const char *k, *hk;
	json_t *val, *hv;

	json_object_foreach((json_t *)secret, k, val)
	{
		if (strcmp(k, "token_url") == 0 || strcmp(k, "expires_at") == 0)
			continue;
		if (json_is_string(val))
			add_needle_forms(
			    o, json_string_value(val), json_string_length(val));
		else if (json_is_object(val))
			json_object_foreach(val, hk, hv)
			{
				if (json_is_string(hv))
					add_needle_forms(o,
					    json_string_value(hv),
					    json_string_length(hv));
			}
	}
}

/* Authorization: Basic base64(user:pass), and its base64 as a needle. */
static enum hv_rc
add_basic(
    struct outreq *o, const char *user, const char *pass, struct hv_err *err)
{
	struct sbuf up = {0}, b64 = {0};
	enum hv_rc rc;

	sb_str(&up, user);
	sb_str(&up, ":");
	sb_str(&up, pass);
	if (!up.oom)
		sb_b64(&b64, up.s->buf, up.len);
	sb_free(&up);
	if (b64.oom) {
		sb_free(&b64);
		return oom(err);
	}
	rc = add_line(o, "Authorization", "Basic ", sb_cstr(&b64), err);
	if (rc == HV_OK)
		add_needle_forms(o, sb_cstr(&b64), b64.len);
	sb_free(&b64);
	if (rc == HV_OK)
		rc = add_inj_name(o, "Authorization", err);
	return rc;
}

/* Apply the credential's injection to o. */
static enum hv_rc
inject(struct outreq *o, const json_t *meta, const json_t *secret,
    struct hv_err *err)
{
	const char *auth =
	    json_string_value(json_object_get(meta, "auth_type"));
	const json_t *inj = json_object_get(meta, "injection");
	const char *val, *name, *k;
	json_t *j, *hv;
	enum hv_rc rc = HV_OK;
	struct hv_err e2 = {0};

	if (auth == NULL || hv_injection_check(inj, auth, &e2) != HV_OK)
		return hv_err_set(err, HV_E_CONFLICT,
		    "the credential's "
		    "injection is not usable: %s",
		    e2.msg);
	if ((j = json_object_get(inj, "headers")) != NULL) {
		hv = json_object_get(secret, "headers");
		if (!json_is_object(hv) || json_object_size(hv) == 0)
			return hv_err_set(err, HV_E_CONFLICT,
			    "the credential's "
			    "secret has no headers");
		json_object_foreach(hv, k, j)
		{
			if (!token_ok(k, HEADER_NAME_MAX) ||
			    in_list(k, forbidden_headers, true) ||
			    !json_is_string(j) ||
			    !header_value_ok(json_string_value(j),
			        json_string_length(j), SECRET_VAL_MAX))
				return hv_err_set(err, HV_E_CONFLICT,
				    "the "
				    "credential's secret has an unusable "
				    "header");
			rc = add_line(o, k, NULL, json_string_value(j), err);
			if (rc == HV_OK)
				rc = add_inj_name(o, k, err);
			if (rc != HV_OK)
				return rc;
		}
		return HV_OK;
	}
	if (json_object_get(inj, "basic") != NULL) {
		const char *fu =
		    json_string_value(json_object_get(inj, "username"));
		const char *fp =
		    json_string_value(json_object_get(inj, "password"));

		if (strcmp(auth, "basic") == 0) {
			const char *u =
			    secret_str(secret, "username", err, &rc);
			const char *p;

			if (u == NULL)
				return rc;
			p = secret_str(secret, "password", err, &rc);
			if (p == NULL)
				return rc;
			return add_basic(o, u, p, err);
		}
		val = secret_str(secret, value_field(auth), err, &rc);
		if (val == NULL)
			return rc;
		return fu != NULL
		    ? add_basic(o, fu, val, err)
		    : add_basic(o, val, fp != NULL ? fp : "", err);
	}
	val = secret_str(secret, value_field(auth), err, &rc);
	if (val == NULL)
		return rc;
	if ((name = json_string_value(json_object_get(inj, "header"))) !=
	    NULL) {
		rc = add_line(o, name,
		    json_string_value(json_object_get(inj, "prefix")), val,
		    err);
		if (rc == HV_OK)
			rc = add_inj_name(o, name, err);
		return rc;
	}
	name = json_string_value(json_object_get(inj, "query_param"));
	if (name == NULL || strlen(name) > HEADER_NAME_MAX)
		return hv_err_set(err, HV_E_CONFLICT,
		    "the credential's "
		    "injection is not usable");
	(void)snprintf(o->query_param, sizeof(o->query_param), "%s", name);
	sb_pct(&o->query_value, val, strlen(val), true);
	return o->query_value.oom ? oom(err) : HV_OK;
}

/* Decode a percent-encoded query name (for comparisons). */
static void
decode_name(const char *s, size_t n, char *out, size_t cap)
{
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < n && o + 1 < cap; i++) {
		if (s[i] == '%' && i + 2 < n &&
		    (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
		    (lo = hexval((unsigned char)s[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = s[i] == '+' ? ' ' : s[i];
		}
	}
	out[o] = '\0';
}

/*
 * Build the URL: base + path + '?' + path's own query + caller query +
 * injected parameter. The caller may not name the injected parameter.
 */
static enum hv_rc
build_url(struct outreq *o, const struct target *t, const char *path,
    size_t plen, size_t qpos, const json_t *query, struct hv_err *err)
{
	const char *k;
	json_t *v;
	bool have_q = false;
	char dn[QUERY_KEY_MAX + 1];

	if (o->query_param[0] != '\0') {
		if (json_object_get(query, o->query_param) != NULL)
			return hv_err_set(err, HV_E_INVALID,
			    "query parameter "
			    "'%s' is set by the credential",
			    o->query_param);
		if (qpos < plen) {
			size_t i = qpos + 1, end;

			while (i <= plen) {
				end = i;
				while (end < plen && path[end] != '&')
					end++;
				decode_name(path + i,
				    strcspn(path + i, "=&") < end - i
				        ? strcspn(path + i, "=&")
				        : end - i,
				    dn, sizeof(dn));
				if (strcmp(dn, o->query_param) == 0)
					return hv_err_set(err, HV_E_INVALID,
					    "query parameter '%s' is set by "
					    "the "
					    "credential",
					    o->query_param);
				i = end + 1;
			}
		}
	}
	sb_str(&o->url, t->base);
	sb_add(&o->url, path, qpos);
	if (qpos + 1 < plen) {
		sb_str(&o->url, "?");
		sb_add(&o->url, path + qpos + 1, plen - qpos - 1);
		have_q = true;
	}
	json_object_foreach((json_t *)query, k, v)
	{
		sb_str(&o->url, have_q ? "&" : "?");
		have_q = true;
		sb_pct(&o->url, k, strlen(k), true);
		sb_str(&o->url, "=");
		sb_pct(
		    &o->url, json_string_value(v), json_string_length(v), true);
	}
	if (o->query_param[0] != '\0') {
		sb_str(&o->url, have_q ? "&" : "?");
		sb_pct(&o->url, o->query_param, strlen(o->query_param), true);
		sb_str(&o->url, "=");
		sb_add(&o->url, sb_cstr(&o->query_value), o->query_value.len);
	}
	if (o->url.oom)
		return oom(err);
	if (o->url.len > URL_MAX)
		return hv_err_set(err, HV_E_INVALID,
		    "url too long (at most %d "
		    "bytes)",
		    URL_MAX);
	return HV_OK;
}

/* ------------------------------------------------------------------ */
/* Scrubbing and the answer                                            */

/*
 * Replace every needle in s[0..n) by REDACTED, longest needles first.
 * Returns a new buffer (hv_malloc, NUL-terminated; wipe it with
 * hv_free_wipe(p, *outn + 1)) or NULL when out of memory.
 */
static char *
scrub(const struct outreq *o, const char *s, size_t n, size_t *outn)
{
	const size_t rl = sizeof(REDACTED) - 1;
	char *cur, *next;
	size_t i, k, len = n, best;
	bool used[NEEDLES_MAX];

	cur = hv_malloc(n + 1);
	if (cur == NULL)
		return NULL;
	memcpy(cur, s, n);
	cur[n] = '\0';
	memset(used, 0, sizeof(used));
	for (k = 0; k < o->n_needles; k++) {
		const struct sbuf *nd;
		const char *hit;
		size_t count = 0, pos, nl, w;

		/* the longest needle not used yet */
		best = o->n_needles;
		for (i = 0; i < o->n_needles; i++)
			if (!used[i] &&
			    (best == o->n_needles ||
			        o->needles[i].len > o->needles[best].len))
				best = i;
		used[best] = true;
		nd = &o->needles[best];
		nl = nd->len;
		if (nl == 0 || nl > len)
			continue;
		for (pos = 0; pos + nl <= len;) {
			hit = memmem(cur + pos, len - pos, nd->s->buf, nl);
			if (hit == NULL)
				break;
			count++;
			pos = (size_t)(hit - cur) + nl;
		}
		if (count == 0)
			continue;
		next = hv_malloc(len - count * nl + count * rl + 1);
		if (next == NULL) {
			hv_free_wipe(cur, len + 1);
			return NULL;
		}
		w = 0;
		for (pos = 0; pos < len;) {
			hit = pos + nl <= len
			    ? memmem(cur + pos, len - pos, nd->s->buf, nl)
			    : NULL;
			if (hit == NULL) {
				memcpy(next + w, cur + pos, len - pos);
				w += len - pos;
				break;
			}
			memcpy(next + w, cur + pos, (size_t)(hit - cur) - pos);
			w += (size_t)(hit - cur) - pos;
			memcpy(next + w, REDACTED, rl);
			w += rl;
			pos = (size_t)(hit - cur) + nl;
		}
		next[w] = '\0';
		hv_free_wipe(cur, len + 1);
		cur = next;
		len = w;
	}
	*outn = len;
	return cur;
}

/* A JSON string of s[0..n): as is when valid UTF-8, else sanitized. */
static json_t *
text_json(const char *s, size_t n)
{
	char buf[HEADER_VAL_MAX + 1];
	json_t *j = NULL;

	if (hv_httpreq_utf8_valid(s, n) && memchr(s, '\0', n) == NULL)
		j = json_stringn(s, n);
	if (j != NULL)
		return j;
	hv_httpreq_sanitize(buf, sizeof(buf), s, n);
	return json_string(buf);
}

static json_t *
answer_headers(const struct outreq *o, const struct hv_fetch_response *r)
{
	json_t *h = json_object(), *prev, *j;
	size_t i, nn, vn;
	char *name, *value;

	if (h == NULL)
		return NULL;
	for (i = 0; i < r->n_headers; i++) {
		if (in_list(r->headers[i].name, dropped_answer_headers, true))
			continue;
		name = scrub(
		    o, r->headers[i].name, strlen(r->headers[i].name), &nn);
		value = scrub(
		    o, r->headers[i].value, strlen(r->headers[i].value), &vn);
		if (name == NULL || value == NULL)
			goto fail;
		prev = json_object_get(h, name);
		if (prev != NULL) {
			/* a repeated field: join the values as RFC 9110 does */
			struct sbuf b = {0};

			sb_str(&b, json_string_value(prev));
			sb_str(&b, ", ");
			sb_add(&b, value, vn);
			j = b.oom ? NULL : text_json(sb_cstr(&b), b.len);
			sb_free(&b);
		} else {
			j = text_json(value, vn);
		}
		if (j == NULL || json_object_set_new(h, name, j) != 0)
			goto fail;
		hv_free_wipe(name, nn + 1);
		hv_free_wipe(value, vn + 1);
		continue;
	fail:
		if (name != NULL)
			hv_free_wipe(name, nn + 1);
		if (value != NULL)
			hv_free_wipe(value, vn + 1);
		json_decref(h);
		return NULL;
	}
	return h;
}

static json_t *
answer_body(const struct outreq *o, const struct hv_fetch_response *r,
    const char **encoding)
{
	struct sbuf b64 = {0};
	size_t n;
	char *s;
	json_t *j = NULL;

	s = scrub(o, r->body, r->body_len, &n);
	if (s == NULL)
		return NULL;
	if (memchr(s, '\0', n) == NULL && hv_httpreq_utf8_valid(s, n)) {
		*encoding = "utf-8";
		j = json_stringn(s, n);
	} else {
		*encoding = "base64";
		sb_b64(&b64, (const unsigned char *)s, n);
		if (!b64.oom)
			j = json_stringn(sb_cstr(&b64), b64.len);
		sb_free(&b64);
	}
	hv_free_wipe(s, n + 1);
	return j;
}

/* ------------------------------------------------------------------ */
/* OAuth 2.0 refresh (the token endpoint call)                         */

struct refresh_arg {
	const struct hv_cfg *cfg;
	struct hv_fetch_limits lim;
};

/* An RFC 6749 error code is [\x20-\x21\x23-\x5B\x5D-\x7E]; we keep a
 * short [a-z_] one only, so that no echoed text reaches a detail. */
static bool
oauth_error_ok(const char *s)
{
	size_t i;

	if (s == NULL || s[0] == '\0' || strlen(s) > 40)
		return false;
	for (i = 0; s[i] != '\0'; i++)
		if (!(islower((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

static enum hv_rc
do_refresh(
    void *argp, const json_t *secret, json_t **new_secret, struct hv_err *err)
{
	struct refresh_arg *arg = argp;
	const char *url =
	    json_string_value(json_object_get(secret, "token_url"));
	const char *rt =
	    json_string_value(json_object_get(secret, "refresh_token"));
	const char *cid =
	    json_string_value(json_object_get(secret, "client_id"));
	const char *csec =
	    json_string_value(json_object_get(secret, "client_secret"));
	struct hv_fetch_request req;
	struct hv_fetch_response resp;
	struct sbuf body = {0}, auth = {0}, up = {0}, b64 = {0};
	const char *lines[3];
	size_t n_lines = 0;
	char host[256];
	json_t *doc = NULL, *ns = NULL, *at, *nrt, *ei;
	json_error_t jerr;
	long long expires_in = -1;
	enum hv_rc rc;

	memset(&resp, 0, sizeof(resp));
	if (url == NULL || rt == NULL)
		return hv_err_set(err, HV_E_UPSTREAM,
		    "no refresh_token or "
		    "token_url");
	if (!hv_url_host(url, host, sizeof(host)))
		return hv_err_set(err, HV_E_UPSTREAM,
		    "token_url is not a "
		    "usable http(s) url");
	if (strncasecmp(url, "https://", 8) != 0 &&
	    !arg->cfg->allow_private_targets)
		return hv_err_set(err, HV_E_FORBIDDEN,
		    "token_url must use "
		    "https");
	sb_str(&body, "grant_type=refresh_token&refresh_token=");
	sb_pct(&body, rt, strlen(rt), true);
	if (cid != NULL && csec == NULL) {
		/* a public client names itself in the body */
		sb_str(&body, "&client_id=");
		sb_pct(&body, cid, strlen(cid), true);
	}
	if (cid != NULL && csec != NULL) {
		/* RFC 6749 2.3.1: client_secret_basic, both form-encoded */
		sb_pct(&up, cid, strlen(cid), true);
		sb_str(&up, ":");
		sb_pct(&up, csec, strlen(csec), true);
		if (!up.oom)
			sb_b64(&b64, up.s->buf, up.len);
		sb_str(&auth, "Authorization: Basic ");
		sb_str(&auth, sb_cstr(&b64));
		lines[n_lines++] = sb_cstr(&auth);
	}
	lines[n_lines++] = "Content-Type: application/x-www-form-urlencoded";
	lines[n_lines++] = "Accept: application/json";
	if (body.oom || up.oom || b64.oom || auth.oom) {
		rc = oom(err);
		goto out;
	}
	memset(&req, 0, sizeof(req));
	req.method = "POST";
	req.url = url;
	req.host = host;
	req.headers = lines;
	req.n_headers = n_lines;
	req.body = sb_cstr(&body);
	req.body_len = body.len;
	req.send_body = true;
	rc = hv_fetch(&req, &arg->lim, &resp, err);
	if (rc != HV_OK) {
		hv_err_prefix(err, "token endpoint");
		goto out;
	}
	doc = json_loadb(resp.body, resp.body_len, 0, &jerr);
	hv_mem_zero(&jerr, sizeof(jerr));
	if (resp.status < 200 || resp.status > 299) {
		const char *e =
		    json_string_value(json_object_get(doc, "error"));

		rc = hv_err_set(err, HV_E_UPSTREAM,
		    "token endpoint answered "
		    "%ld%s%s%s",
		    resp.status, oauth_error_ok(e) ? " (" : "",
		    oauth_error_ok(e) ? e : "", oauth_error_ok(e) ? ")" : "");
		goto out;
	}
	at = json_object_get(doc, "access_token");
	if (!json_is_string(at) || json_string_length(at) == 0 ||
	    !header_value_ok(json_string_value(at), json_string_length(at),
	        SECRET_VAL_MAX)) {
		rc = hv_err_set(err, HV_E_UPSTREAM,
		    "token endpoint gave no "
		    "usable access_token");
		goto out;
	}
	nrt = json_object_get(doc, "refresh_token");
	if (nrt != NULL && !json_is_null(nrt) &&
	    (!json_is_string(nrt) || json_string_length(nrt) == 0 ||
	        !header_value_ok(json_string_value(nrt),
	            json_string_length(nrt), SECRET_VAL_MAX))) {
		rc = hv_err_set(err, HV_E_UPSTREAM,
		    "token endpoint gave an "
		    "unusable refresh_token");
		goto out;
	}
	ei = json_object_get(doc, "expires_in");
	if (json_is_integer(ei))
		expires_in = json_integer_value(ei);
	else if (json_is_string(ei))
		expires_in = strtoll(json_string_value(ei), NULL, 10);
	if (ei != NULL && !json_is_null(ei) &&
	    (expires_in <= 0 || expires_in > 10LL * 366 * 86400)) {
		rc = hv_err_set(err, HV_E_UPSTREAM,
		    "token endpoint gave an "
		    "unusable expires_in");
		goto out;
	}
	ns = json_deep_copy(secret);
	if (ns == NULL || json_object_set(ns, "access_token", at) != 0 ||
	    (json_is_string(nrt) &&
	        json_object_set(ns, "refresh_token", nrt) != 0)) {
		rc = oom(err);
		goto out;
	}
	if (expires_in > 0) {
		char ts[32];
		time_t t = time(NULL) + (time_t)expires_in;
		struct tm tm;

		if (gmtime_r(&t, &tm) == NULL ||
		    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 ||
		    json_object_set_new(ns, "expires_at", json_string(ts)) !=
		        0) {
			rc = oom(err);
			goto out;
		}
	} else {
		(void)json_object_del(ns, "expires_at");
	}
	*new_secret = ns;
	ns = NULL;
out:
	json_decref(ns);
	json_decref(doc);
	hv_fetch_response_release(&resp);
	sb_free(&body);
	sb_free(&auth);
	sb_free(&up);
	sb_free(&b64);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The common frame of test and use                                    */

struct call {
	struct hv_vault *v;
	const struct hv_principal *p;
	const struct hv_reqctx *ctx;
	const char *id;
	const struct hv_cfg *cfg;
	const struct hv_service *svc;
	json_t *meta;
	json_t *secret;     /* the one injected */
	json_t *old_secret; /* before a refresh, for scrubbing */
	struct target t;
	struct hv_fetch_limits lim;
};

static void
call_release(struct call *c)
{
	json_decref(c->meta);
	json_decref(c->secret);
	json_decref(c->old_secret);
	c->meta = c->secret = c->old_secret = NULL;
}

/* Open the credential and work out where it may go. */
/*
 * A refused attempt (revoked, expired, a target the rules forbid) is a
 * denied request: it gets an auth.denied audit row naming the credential.
 * Scope and allow-list refusals are audited by the vault itself.
 */
static void
deny(struct call *c, const char *detail)
{
	(void)hv_vault_deny(c->v, c->p, c->ctx, c->id, detail);
}

static enum hv_rc
call_open(struct call *c, struct hv_err *err)
{
	const char *status, *service;
	enum hv_rc rc;

	rc = hv_vault_cred_open_for_use(
	    c->v, c->p, c->ctx, c->id, &c->meta, &c->secret, err);
	if (rc == HV_E_REVOKED)
		deny(c, "credential revoked");
	if (rc != HV_OK)
		return rc;
	status = json_string_value(json_object_get(c->meta, "status"));
	if (status != NULL && strcmp(status, "expired") == 0) {
		deny(c, "credential expired");
		return hv_err_set(err, HV_E_EXPIRED, "credential is expired");
	}
	service = json_string_value(json_object_get(c->meta, "service"));
	c->svc = hv_catalog_find(hv_vault_catalog(c->v), service);
	if (c->svc == NULL)
		return hv_err_set(err, HV_E_CONFLICT,
		    "the credential's service "
		    "is not in the catalog any more");
	limits_of(c->cfg, &c->lim);
	rc = resolve_target(c->cfg, c->svc, c->meta, &c->t, err);
	if (rc == HV_E_FORBIDDEN)
		deny(c, "target refused");
	return rc;
}

enum refresh_outcome {
	RF_NONE,    /* nothing to do, or done */
	RF_EXPIRED, /* expired and cannot be refreshed */
	RF_FAILED,  /* refresh attempted and failed: err set */
};

static enum refresh_outcome
call_refresh(struct call *c, enum hv_rc *rcp, struct hv_err *err)
{
	struct refresh_arg arg;
	json_t *fresh = NULL;
	bool can, refreshed;
	const char *auth =
	    json_string_value(json_object_get(c->meta, "auth_type"));

	*rcp = HV_OK;
	if (auth == NULL || strcmp(auth, "oauth2") != 0 ||
	    !hv_vault_oauth_expiring(c->secret, REFRESH_SKEW_S, &can))
		return RF_NONE;
	if (!can)
		return RF_EXPIRED;
	arg.cfg = c->cfg;
	arg.lim = c->lim;
	*rcp = hv_vault_cred_oauth_refresh(c->v, c->p, c->ctx, c->id,
	    REFRESH_SKEW_S, do_refresh, &arg, &fresh, &refreshed, err);
	if (*rcp != HV_OK)
		return RF_FAILED;
	json_decref(c->old_secret);
	c->old_secret = c->secret;
	c->secret = fresh;
	return RF_NONE;
}

/* Record the outcome (audit row, status, last_used_at): fail closed. */
static enum hv_rc
record(struct call *c, const char *action, bool ok, const char *status,
    struct hv_err *err)
{
	struct hv_err e2 = {0};
	enum hv_rc rc;

	rc = hv_vault_cred_record_use(
	    c->v, c->p, c->ctx, c->id, action, ok, status, &e2);
	if (rc != HV_OK && err != NULL)
		*err = e2;
	return rc;
}

/* Prepare the scrub list and injection of o from c. */
static enum hv_rc
call_inject(struct call *c, struct outreq *o, struct hv_err *err)
{
	enum hv_rc rc;

	rc = inject(o, c->meta, c->secret, err);
	if (rc != HV_OK)
		return rc;
	add_secret_needles(o, c->secret);
	if (c->old_secret != NULL)
		add_secret_needles(o, c->old_secret);
	return HV_OK;
}

static enum hv_rc
call_fetch(struct call *c, struct outreq *o, const char *method,
    struct hv_fetch_response *resp, struct hv_err *err)
{
	struct hv_fetch_request req;
	size_t i;

	for (i = 0; i < o->n_lines; i++)
		o->line_ptrs[i] = sb_cstr(&o->lines[i]);
	memset(&req, 0, sizeof(req));
	req.method = method;
	req.url = sb_cstr(&o->url);
	req.host = c->t.host;
	req.headers = o->line_ptrs;
	req.n_headers = o->n_lines;
	req.body = o->body_ptr;
	req.body_len = o->body_len;
	req.send_body = o->send_body;
	return hv_fetch(&req, &c->lim, resp, err);
}

/* ------------------------------------------------------------------ */
/* Test                                                                */

/* RFC 6901 JSON pointer; NULL when it names nothing. */
static json_t *
jptr(json_t *doc, const char *p)
{
	char tok[256];
	size_t n, i, o;
	json_t *cur = doc;

	if (p[0] == '\0')
		return doc;
	while (cur != NULL && *p == '/') {
		p++;
		n = strcspn(p, "/");
		for (i = 0, o = 0; i < n && o + 1 < sizeof(tok); i++) {
			if (p[i] == '~' && i + 1 < n &&
			    (p[i + 1] == '0' || p[i + 1] == '1')) {
				tok[o++] = p[i + 1] == '0' ? '~' : '/';
				i++;
			} else {
				tok[o++] = p[i];
			}
		}
		tok[o] = '\0';
		if (json_is_object(cur)) {
			cur = json_object_get(cur, tok);
		} else if (json_is_array(cur)) {
			char *end = NULL;
			unsigned long idx;

			if (o == 0 || (o > 1 && tok[0] == '0') ||
			    strspn(tok, "0123456789") != o)
				return NULL;
			idx = strtoul(tok, &end, 10);
			cur = json_array_get(cur, idx);
		} else {
			return NULL;
		}
		p += n;
	}
	return cur;
}

/* Append the text of v (string or number) to b; false when neither. */
static bool
account_part(struct sbuf *b, json_t *v)
{
	char num[64];

	if (json_is_string(v) && json_string_length(v) > 0) {
		if (b->len > 0)
			sb_str(b, " / ");
		sb_add(b, json_string_value(v), json_string_length(v));
		return true;
	}
	if (json_is_integer(v) || json_is_real(v)) {
		if (json_is_integer(v))
			(void)snprintf(num, sizeof(num),
			    "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		else
			(void)snprintf(
			    num, sizeof(num), "%g", json_real_value(v));
		if (b->len > 0)
			sb_str(b, " / ");
		sb_str(b, num);
		return true;
	}
	return false;
}

struct verdict {
	bool ok;
	char detail[HV_ERR_MSG_MAX];
	json_t *account; /* new reference or NULL */
};

static void
evaluate(const struct outreq *o, const json_t *test,
    const struct hv_fetch_response *r, struct verdict *vd)
{
	const json_t *want_json = json_object_get(test, "json");
	const json_t *acc = json_object_get(test, "account");
	const json_t *succ = json_object_get(test, "success");
	json_t *doc = NULL, *x;
	json_error_t jerr;
	struct sbuf ab = {0};
	const char *k;
	size_t i;

	vd->ok = false;
	vd->account = NULL;
	if (r->status < 200 || r->status > 299) {
		(void)snprintf(vd->detail, sizeof(vd->detail),
		    "provider "
		    "answered %ld",
		    r->status);
		return;
	}
	if (!json_is_false(want_json) || succ != NULL ||
	    (acc != NULL && !json_is_null(acc))) {
		doc = json_loadb(r->body, r->body_len, 0, &jerr);
		hv_mem_zero(&jerr, sizeof(jerr));
		if (doc == NULL) {
			(void)snprintf(vd->detail, sizeof(vd->detail),
			    "provider "
			    "answered %ld, but not with JSON",
			    r->status);
			return;
		}
	}
	json_object_foreach((json_t *)succ, k, x)
	{
		if (!json_equal(jptr(doc, k), x)) {
			(void)snprintf(vd->detail, sizeof(vd->detail),
			    "provider "
			    "answered %ld, but %.64s is not as a valid "
			    "credential gives it",
			    r->status, k);
			json_decref(doc);
			return;
		}
	}
	if (json_is_string(acc)) {
		(void)account_part(&ab, jptr(doc, json_string_value(acc)));
	} else if (json_is_array(acc)) {
		json_array_foreach(acc, i, x)(void)
		    account_part(&ab, jptr(doc, json_string_value(x)));
	}
	if (ab.len > 0 && !ab.oom) {
		size_t n;
		char *s = scrub(o, sb_cstr(&ab), ab.len, &n);

		if (s != NULL) {
			vd->account = text_json(s, n);
			hv_free_wipe(s, n + 1);
		}
	}
	sb_free(&ab);
	json_decref(doc);
	vd->ok = true;
	(void)snprintf(
	    vd->detail, sizeof(vd->detail), "provider answered %ld", r->status);
}

enum hv_rc
hv_provider_test(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, json_t **out,
    struct hv_err *err)
{
	struct call c;
	struct outreq *o = NULL;
	struct hv_fetch_response resp;
	struct verdict vd;
	struct hv_err e2 = {0};
	const json_t *test, *hdrs;
	const char *k, *method, *path, *tb;
	json_t *x, *res = NULL;
	long http_status = -1;
	enum hv_rc rc, rrc;
	size_t qpos;

	memset(&c, 0, sizeof(c));
	memset(&resp, 0, sizeof(resp));
	memset(&vd, 0, sizeof(vd));
	c.v = v;
	c.p = p;
	c.ctx = ctx;
	c.id = id;
	c.cfg = hv_vault_cfg(v);
	rc = call_open(&c, err);
	if (rc != HV_OK)
		goto out;
	test = hv_service_test(c.svc);
	if (test == NULL) {
		(void)snprintf(vd.detail, sizeof(vd.detail),
		    "service %s has "
		    "no test request",
		    hv_service_id(c.svc));
		goto verdict;
	}
	switch (call_refresh(&c, &rrc, &e2)) {
	case RF_NONE:
		break;
	case RF_EXPIRED:
		(void)snprintf(vd.detail, sizeof(vd.detail),
		    "the access token "
		    "expired and there is no refresh_token and token_url to "
		    "renew it");
		goto verdict;
	case RF_FAILED:
		if (rrc == HV_E_FORBIDDEN || rrc == HV_E_NOT_FOUND ||
		    rrc == HV_E_REVOKED || rrc == HV_E_DATABASE ||
		    rrc == HV_E_KEYSTORE || rrc == HV_E_NOMEM) {
			*err = e2;
			rc = rrc;
			goto out;
		}
		(void)snprintf(vd.detail, sizeof(vd.detail),
		    "oauth2 refresh "
		    "failed: %.200s",
		    e2.msg);
		goto verdict;
	}

	o = hv_calloc(1, sizeof(*o));
	if (o == NULL) {
		rc = oom(err);
		goto out;
	}
	rc = call_inject(&c, o, err);
	if (rc != HV_OK)
		goto out;
	method = json_string_value(json_object_get(test, "method"));
	path = json_string_value(json_object_get(test, "path"));
	hdrs = json_object_get(test, "headers");
	json_object_foreach((json_t *)hdrs, k, x)
	{
		if (injected(o, k))
			continue; /* the credential's own wins */
		rc = add_line(o, k, NULL, json_string_value(x), err);
		if (rc != HV_OK)
			goto out;
	}
	tb = json_string_value(json_object_get(test, "body"));
	if (tb != NULL || strcmp(method, "POST") == 0) {
		o->body_ptr = tb != NULL ? tb : "";
		o->body_len = tb != NULL ? strlen(tb) : 0;
		o->send_body = true;
	}
	qpos = strcspn(path, "?");
	rc = build_url(o, &c.t, path, strlen(path), qpos, NULL, err);
	if (rc != HV_OK)
		goto out;
	rc = call_fetch(&c, o, method, &resp, &e2);
	if (rc == HV_E_FORBIDDEN || rc == HV_E_INVALID || rc == HV_E_NOMEM) {
		/* refused before any connection: not the credential's fault */
		hv_log_warn("test of credential %s refused: %s", c.id, e2.msg);
		if (rc == HV_E_FORBIDDEN)
			deny(&c, "target refused");
		*err = e2;
		goto out;
	}
	if (rc != HV_OK) {
		(void)snprintf(vd.detail, sizeof(vd.detail), "%.240s", e2.msg);
		rc = HV_OK;
		goto verdict;
	}
	http_status = resp.status;
	evaluate(o, test, &resp, &vd);
verdict:
	rc = record(
	    &c, "credential.test", vd.ok, vd.ok ? "active" : "failing", err);
	if (rc != HV_OK)
		goto out;
	res = json_pack("{s:b, s:o, s:s, s:o}", "ok", vd.ok, "account",
	    vd.account != NULL ? vd.account : json_null(), "detail", vd.detail,
	    "http_status",
	    http_status >= 0 ? json_integer(http_status) : json_null());
	vd.account = NULL;
	if (res == NULL) {
		rc = oom(err);
		goto out;
	}
	*out = res;
out:
	json_decref(vd.account);
	hv_fetch_response_release(&resp);
	if (o != NULL) {
		outreq_release(o);
		hv_free(o);
	}
	call_release(&c);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Use                                                                 */

/* done == NULL: the record is written before it returns (hv_provider_use). */
static enum hv_rc
use(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const json_t *body,
    hv_done_fn done, void *arg, bool *pending, json_t **out, struct hv_err *err)
{
	struct call c;
	struct outreq *o = NULL;
	struct hv_fetch_response resp;
	struct hv_err e2 = {0};
	const json_t *query, *hdrs, *jb;
	const char *method = "GET", *path, *k, *enc = NULL, *status;
	json_t *x, *res = NULL, *ah = NULL, *ab = NULL;
	bool has_ct = false;
	enum hv_rc rc, rrc;
	size_t qpos, plen;

	memset(&c, 0, sizeof(c));
	memset(&resp, 0, sizeof(resp));
	rc = hv_provider_check_use(body, err);
	if (rc != HV_OK)
		return rc;
	c.v = v;
	c.p = p;
	c.ctx = ctx;
	c.id = id;
	c.cfg = hv_vault_cfg(v);
	rc = call_open(&c, err);
	if (rc != HV_OK)
		goto out;
	switch (call_refresh(&c, &rrc, &e2)) {
	case RF_NONE:
		break;
	case RF_EXPIRED:
		rc = record(&c, "credential.use", false, "expired", err);
		if (rc == HV_OK)
			rc = hv_err_set(err, HV_E_EXPIRED,
			    "the access token "
			    "expired and the credential holds no "
			    "refresh_token and token_url to renew it");
		goto out;
	case RF_FAILED:
		if (rrc == HV_E_FORBIDDEN || rrc == HV_E_NOT_FOUND ||
		    rrc == HV_E_REVOKED || rrc == HV_E_DATABASE ||
		    rrc == HV_E_KEYSTORE || rrc == HV_E_NOMEM ||
		    rrc == HV_E_INVALID) {
			*err = e2;
			rc = rrc;
			goto out;
		}
		rc = record(&c, "credential.use", false, "failing", err);
		if (rc == HV_OK)
			rc = hv_err_set(err, HV_E_UPSTREAM,
			    "oauth2 refresh "
			    "failed: %.200s",
			    e2.msg);
		goto out;
	}

	o = hv_calloc(1, sizeof(*o));
	if (o == NULL) {
		rc = oom(err);
		goto out;
	}
	rc = call_inject(&c, o, err);
	if (rc != HV_OK)
		goto out;
	x = json_object_get(body, "method");
	if (json_is_string(x))
		method = json_string_value(x);
	hdrs = json_object_get(body, "headers");
	json_object_foreach((json_t *)hdrs, k, x)
	{
		char name[64];

		if (injected(o, k)) {
			hv_httpreq_sanitize(name, sizeof(name), k, strlen(k));
			rc = hv_err_set(err, HV_E_INVALID,
			    "header '%s' is set "
			    "by the credential and cannot be overridden",
			    name);
			goto out;
		}
		if (strcasecmp(k, "content-type") == 0)
			has_ct = true;
		rc = add_line(o, k, NULL, json_string_value(x), err);
		if (rc != HV_OK)
			goto out;
	}
	jb = json_object_get(body, "body");
	if (json_is_string(jb)) {
		o->body_ptr = json_string_value(jb);
		o->body_len = json_string_length(jb);
		o->send_body = true;
	} else if (jb != NULL && !json_is_null(jb)) {
		o->body = json_dumps(jb, JSON_COMPACT | JSON_ENCODE_ANY);
		if (o->body == NULL) {
			rc = oom(err);
			goto out;
		}
		o->body_ptr = o->body;
		o->body_len = strlen(o->body);
		o->send_body = true;
		if (!has_ct) {
			rc = add_line(
			    o, "Content-Type", NULL, "application/json", err);
			if (rc != HV_OK)
				goto out;
		}
	} else if (strcmp(method, "POST") == 0) {
		o->body_ptr = "";
		o->send_body = true;
	}
	path = json_string_value(json_object_get(body, "path"));
	plen = strlen(path);
	rc = check_path(path, plen, &qpos, err);
	if (rc != HV_OK)
		goto out;
	query = json_object_get(body, "query");
	rc = build_url(o, &c.t, path, plen, qpos,
	    json_is_object(query) ? query : NULL, err);
	if (rc != HV_OK)
		goto out;

	rc = call_fetch(&c, o, method, &resp, &e2);
	if (rc == HV_E_FORBIDDEN || rc == HV_E_INVALID || rc == HV_E_NOMEM) {
		hv_log_warn("use of credential %s refused: %s", c.id, e2.msg);
		if (rc == HV_E_FORBIDDEN)
			deny(&c, "target refused");
		*err = e2;
		goto out;
	}
	if (rc != HV_OK) {
		/* the provider could not be reached or misbehaved */
		rc = record(&c, "credential.use", false, NULL, err);
		if (rc == HV_OK) {
			*err = e2;
			rc = e2.rc;
		}
		goto out;
	}
	if (resp.status >= 200 && resp.status <= 299)
		status = "active";
	else if (resp.status == 401 || resp.status == 403)
		status = "failing";
	else
		status = NULL;
	ah = answer_headers(o, &resp);
	ab = answer_body(o, &resp, &enc);
	if (ah != NULL && ab != NULL) {
		res = json_pack("{s:I, s:o, s:o, s:s}", "status",
		    (json_int_t)resp.status, "headers", ah, "body", ab,
		    "body_encoding", enc);
		ah = ab = NULL; /* taken by json_pack, also when it fails */
	}
	if (res == NULL) {
		/* no answer to hold, but the call was made: its record still */
		(void)record(
		    &c, "credential.use", resp.status < 400, status, NULL);
		rc = oom(err);
		goto out;
	}
	/* the answer leaves only once its record is committed */
	rc = hv_vault_cred_record_use_async(v, p, ctx, id, "credential.use",
	    resp.status < 400, status, done, arg, pending, &e2);
	if (rc != HV_OK) {
		*err = e2;
		goto out;
	}
	*out = res;
	res = NULL;
out:
	json_decref(res);
	json_decref(ah);
	json_decref(ab);
	hv_fetch_response_release(&resp);
	if (o != NULL) {
		outreq_release(o);
		hv_free(o);
	}
	call_release(&c);
	return rc;
}

enum hv_rc
hv_provider_use(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const json_t *body,
    json_t **out, struct hv_err *err)
{
	bool pending = false;

	return use(v, p, ctx, id, body, NULL, NULL, &pending, out, err);
}

enum hv_rc
hv_provider_use_async(struct hv_vault *v, const struct hv_principal *p,
    const struct hv_reqctx *ctx, const char *id, const json_t *body,
    hv_done_fn done, void *arg, bool *pending, json_t **out, struct hv_err *err)
{
	*pending = false;
	return use(v, p, ctx, id, body, done, arg, pending, out, err);
}
