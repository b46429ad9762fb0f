/*
 * fetch: outbound HTTP(S) through libcurl under the rules of fetch.h.
 *
 * Order of a request: parse the URL with CURLU, check scheme, user info
 * and host, resolve the host ourselves, classify every address, then hand
 * curl the parsed URL, the checked addresses (CURLOPT_RESOLVE) and a
 * socket callback that only opens sockets to those addresses. Anything
 * refused before that point has opened no connection at all.
 */
#include "fetch.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <curl/curl.h>

#include "log.h"
#include "mem.h"

#define HOST_MAX 256

/* ------------------------------------------------------------------ */
/* libcurl allocators that wipe every block on free                    */

/*
 * Each block carries its size in a 16-byte header (keeping malloc's
 * alignment), so free can wipe it: curl's heap holds copies of request
 * URLs and header lines, which may carry an injected secret.
 */
#define ZHDR (2 * sizeof(size_t))

static void *
zmalloc(size_t n)
{
	size_t *p = malloc(ZHDR + n);

	if (p == NULL)
		return NULL;
	p[0] = n;
	return (unsigned char *)p + ZHDR;
}

static void
zfree(void *ptr)
{
	size_t *p;

	if (ptr == NULL)
		return;
	p = (size_t *)(void *)((unsigned char *)ptr - ZHDR);
	explicit_bzero(ptr, p[0]);
	free(p);
}

static void *
zrealloc(void *ptr, size_t n)
{
	size_t *old;
	void *q;

	if (ptr == NULL)
		return zmalloc(n);
	if (n == 0) {
		zfree(ptr);
		return NULL;
	}
	old = (size_t *)(void *)((unsigned char *)ptr - ZHDR);
	q = zmalloc(n);
	if (q == NULL)
		return NULL;
	memcpy(q, ptr, old[0] < n ? old[0] : n);
	zfree(ptr);
	return q;
}

static char *
zstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = zmalloc(n);

	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

static void *
zcalloc(size_t n, size_t sz)
{
	void *p;

	if (sz != 0 && n > SIZE_MAX / sz)
		return NULL;
	p = zmalloc(n * sz);
	if (p != NULL)
		memset(p, 0, n * sz);
	return p;
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static pthread_key_t tl_key;
static bool tl_key_ok;
static bool global_ok;

static void
tl_release(void *p)
{
	curl_easy_cleanup(p);
}

static void
global_init_once(void)
{
	CURLcode cc;

	cc = curl_global_init_mem(
	    CURL_GLOBAL_DEFAULT, zmalloc, zfree, zrealloc, zstrdup, zcalloc);
	if (cc != CURLE_OK)
		hv_log_error("libcurl initialisation failed: %s",
		    curl_easy_strerror(cc));
	global_ok = cc == CURLE_OK;
	tl_key_ok = pthread_key_create(&tl_key, tl_release) == 0;
}

void
hv_fetch_global_init(void)
{
	(void)pthread_once(&global_once, global_init_once);
}

/*
 * The calling thread's easy handle (created on first use). *owned tells
 * the caller to clean it up itself (no thread-local slot).
 */
static CURL *
thread_handle(bool *owned)
{
	CURL *h;

	*owned = false;
	if (tl_key_ok) {
		h = pthread_getspecific(tl_key);
		if (h != NULL) {
			curl_easy_reset(h);
			return h;
		}
	}
	h = curl_easy_init();
	if (h == NULL)
		return NULL;
	if (!tl_key_ok || pthread_setspecific(tl_key, h) != 0)
		*owned = true;
	return h;
}

/* ------------------------------------------------------------------ */
/* Address policy                                                      */

static bool
v4_allowed(const unsigned char a[4], bool allow_private)
{
	/* Never: "this network", multicast, reserved and broadcast. */
	if (a[0] == 0 || a[0] >= 224)
		return false;
	if (allow_private)
		return true;
	if (a[0] == 10 || a[0] == 127)
		return false;
	if (a[0] == 100 && (a[1] & 0xc0) == 64) /* 100.64/10 CGNAT */
		return false;
	if (a[0] == 169 && a[1] == 254) /* link-local */
		return false;
	if (a[0] == 172 && (a[1] & 0xf0) == 16) /* 172.16/12 */
		return false;
	if (a[0] == 192 && a[1] == 168)
		return false;
	if (a[0] == 192 && a[1] == 0 && (a[2] == 0 || a[2] == 2))
		return false; /* IETF assignments, TEST-NET-1 */
	if (a[0] == 192 && a[1] == 88 && a[2] == 99) /* 6to4 relay */
		return false;
	if (a[0] == 198 && (a[1] & 0xfe) == 18) /* benchmarking */
		return false;
	if (a[0] == 198 && a[1] == 51 && a[2] == 100) /* TEST-NET-2 */
		return false;
	if (a[0] == 203 && a[1] == 0 && a[2] == 113) /* TEST-NET-3 */
		return false;
	return true;
}

static bool
all_zero(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

static bool
v6_allowed(const unsigned char a[16], bool allow_private)
{
	static const unsigned char nat64[12] = {
	    0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

	if (all_zero(a, 16)) /* :: */
		return false;
	if (a[0] == 0xff) /* multicast */
		return false;
	/* IPv4 inside IPv6: the IPv4 rules decide. */
	if (all_zero(a, 10) && a[10] == 0xff && a[11] == 0xff) /* mapped */
		return v4_allowed(a + 12, allow_private);
	if (all_zero(a, 12)) {
		if (a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] == 1)
			return allow_private;             /* ::1 */
		return v4_allowed(a + 12, allow_private); /* compatible */
	}
	if (memcmp(a, nat64, sizeof(nat64)) == 0) /* 64:ff9b::/96 */
		return v4_allowed(a + 12, allow_private);
	if (a[0] == 0x20 && a[1] == 0x02) /* 6to4 2002::/16 */
		return v4_allowed(a + 2, allow_private);
	if (allow_private)
		return true;
	/* Only global unicast 2000::/3 is public ... */
	if ((a[0] & 0xe0) != 0x20)
		return false; /* ULA fc00::/7, link-local, site-local, ... */
	/* ... minus Teredo 2001::/32 and documentation 2001:db8::/32. */
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x00 && a[3] == 0x00)
		return false;
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return false;
	return true;
}

bool
hv_fetch_addr_allowed(const struct sockaddr *sa, bool allow_private)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		return v4_allowed(
		    (const unsigned char *)&in->sin_addr, allow_private);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		return v6_allowed(in6->sin6_addr.s6_addr, allow_private);
	}
	return false;
}

bool
hv_fetch_ip_allowed(const char *ip, bool allow_private)
{
	struct sockaddr_in in;
	struct sockaddr_in6 in6;

	if (ip == NULL)
		return false;
	memset(&in, 0, sizeof(in));
	memset(&in6, 0, sizeof(in6));
	if (inet_pton(AF_INET, ip, &in.sin_addr) == 1) {
		in.sin_family = AF_INET;
		return hv_fetch_addr_allowed(
		    (const struct sockaddr *)&in, allow_private);
	}
	if (inet_pton(AF_INET6, ip, &in6.sin6_addr) == 1) {
		in6.sin6_family = AF_INET6;
		return hv_fetch_addr_allowed(
		    (const struct sockaddr *)&in6, allow_private);
	}
	return false;
}

const char *
hv_fetch_fail_str(enum hv_fetch_fail f)
{
	switch (f) {
	case HV_FETCH_OK:
		return "ok";
	case HV_FETCH_REFUSED:
		return "target refused";
	case HV_FETCH_BAD_URL:
		return "malformed url";
	case HV_FETCH_RESOLVE:
		return "cannot resolve host";
	case HV_FETCH_CONNECT:
		return "cannot connect";
	case HV_FETCH_TIMEOUT:
		return "timed out";
	case HV_FETCH_TLS:
		return "tls failure";
	case HV_FETCH_TOO_LARGE:
		return "response too large";
	case HV_FETCH_PROTOCOL:
		return "malformed or interrupted answer";
	}
	return "failure";
}

/* ------------------------------------------------------------------ */
/* One transfer                                                        */

/* A checked address: family, address bytes, port (network order). */
struct addr {
	int family;
	unsigned char a[16];
	uint16_t port;
};

struct xfer {
	struct addr addrs[HV_FETCH_MAX_ADDRS];
	size_t n_addrs;
	bool allow_private;
	bool refused_socket; /* the socket callback said no */
	bool too_large;
	size_t max_body;
	size_t header_bytes;
	char *body;
	size_t len, cap;
	struct hv_fetch_header *hdrs;
	size_t n_hdrs, cap_hdrs;
};

static void
headers_free(struct hv_fetch_header *h, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (h[i].name != NULL)
			hv_free_wipe(h[i].name, strlen(h[i].name));
		if (h[i].value != NULL)
			hv_free_wipe(h[i].value, strlen(h[i].value));
	}
	hv_free(h);
}

static void
xfer_release(struct xfer *x)
{
	if (x->body != NULL)
		hv_free_wipe(x->body, x->cap);
	x->body = NULL;
	headers_free(x->hdrs, x->n_hdrs);
	x->hdrs = NULL;
	x->n_hdrs = x->cap_hdrs = 0;
}

static bool
addr_checked(const struct xfer *x, const struct sockaddr *sa)
{
	const unsigned char *a;
	uint16_t port;
	size_t i, n;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		a = (const unsigned char *)&in->sin_addr;
		n = 4;
		port = in->sin_port;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		a = in6->sin6_addr.s6_addr;
		n = 16;
		port = in6->sin6_port;
	} else {
		return false;
	}
	for (i = 0; i < x->n_addrs; i++)
		if (x->addrs[i].family == sa->sa_family &&
		    x->addrs[i].port == port &&
		    memcmp(x->addrs[i].a, a, n) == 0)
			return true;
	return false;
}

/* The last line of defence: a socket only to a checked address. */
static curl_socket_t
on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *sa)
{
	struct xfer *x = arg;

	if (purpose != CURLSOCKTYPE_IPCXN ||
	    !hv_fetch_addr_allowed(&sa->addr, x->allow_private) ||
	    !addr_checked(x, &sa->addr)) {
		x->refused_socket = true;
		return CURL_SOCKET_BAD;
	}
	return socket(sa->family, sa->socktype, sa->protocol);
}

static size_t
on_body(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb, ncap;
	char *nb;

	if (n == 0)
		return 0;
	if (x->len + n > x->max_body) {
		x->too_large = true;
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (x->len + n + 1 > x->cap) {
		ncap = x->cap == 0 ? 16384 : x->cap;
		while (ncap < x->len + n + 1)
			ncap *= 2;
		if (ncap > x->max_body + 1)
			ncap = x->max_body + 1;
		nb = hv_malloc(ncap);
		if (nb == NULL)
			return 0;
		if (x->len > 0)
			memcpy(nb, x->body, x->len);
		if (x->body != NULL)
			hv_free_wipe(x->body, x->cap);
		x->body = nb;
		x->cap = ncap;
	}
	memcpy(x->body + x->len, p, n);
	x->len += n;
	return n;
}

static char *
dup_range(const char *p, size_t n, bool lower)
{
	char *d = hv_malloc(n + 1);
	size_t i;

	if (d == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		d[i] = lower ? (char)tolower((unsigned char)p[i]) : p[i];
	d[n] = '\0';
	return d;
}

static size_t
on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb, nl, vs, ve;
	const char *colon;
	struct hv_fetch_header *nh;

	x->header_bytes += n;
	if (x->header_bytes > HV_FETCH_MAX_HEADER_BYTES) {
		x->too_large = true;
		return 0;
	}
	if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		/* A new status line (after a 1xx): start over. */
		headers_free(x->hdrs, x->n_hdrs);
		x->hdrs = NULL;
		x->n_hdrs = x->cap_hdrs = 0;
		return n;
	}
	while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == '\n'))
		n--;
	colon = memchr(p, ':', n);
	if (n == 0 || colon == NULL || colon == p)
		return size * nmemb; /* end of block, or not a field */
	nl = (size_t)(colon - p);
	vs = nl + 1;
	while (vs < n && (p[vs] == ' ' || p[vs] == '\t'))
		vs++;
	ve = n;
	while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
		ve--;
	if (x->n_hdrs == x->cap_hdrs) {
		size_t nc = x->cap_hdrs == 0 ? 16 : x->cap_hdrs * 2;

		nh = hv_calloc(nc, sizeof(*nh));
		if (nh == NULL)
			return 0;
		if (x->n_hdrs > 0)
			memcpy(nh, x->hdrs, x->n_hdrs * sizeof(*nh));
		hv_free(x->hdrs);
		x->hdrs = nh;
		x->cap_hdrs = nc;
	}
	x->hdrs[x->n_hdrs].name = dup_range(p, nl, true);
	x->hdrs[x->n_hdrs].value = dup_range(p + vs, ve - vs, false);
	if (x->hdrs[x->n_hdrs].name == NULL ||
	    x->hdrs[x->n_hdrs].value == NULL) {
		x->n_hdrs++; /* freed by headers_free */
		return 0;
	}
	x->n_hdrs++;
	return size * nmemb;
}

static bool
host_chars_ok(const char *h)
{
	size_t i;

	if (h[0] == '\0')
		return false;
	for (i = 0; h[i] != '\0'; i++) {
		unsigned char c = (unsigned char)h[i];

		if (!isalnum(c) && c != '-' && c != '.' && c != ':')
			return false;
	}
	return true;
}

static enum hv_rc
fail(struct hv_fetch_response *r, enum hv_fetch_fail f, struct hv_err *err,
    enum hv_rc rc, const char *host, const char *what)
{
	r->fail = f;
	return hv_err_set(err, rc, "%s%s%s: %s", host != NULL ? "'" : "",
	    host != NULL ? host : "", host != NULL ? "'" : "", what);
}

/*
 * Resolve host (lowercase, IPv6 without brackets) on port, check every
 * address and record it in x; write the CURLOPT_RESOLVE line to pin
 * (empty for IP literals, which curl does not resolve).
 */
static enum hv_rc
resolve_and_check(struct xfer *x, const char *host, unsigned int port,
    char *pin, size_t pin_cap, struct hv_fetch_response *r, struct hv_err *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char txt[INET6_ADDRSTRLEN];
	size_t used;
	bool literal;
	int gai, k;
	enum hv_rc rc = HV_OK;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	gai = getaddrinfo(host, NULL, &hints, &res);
	literal = gai == 0;
	if (!literal) {
		hints.ai_flags = 0;
		gai = getaddrinfo(host, NULL, &hints, &res);
		if (gai != 0)
			return fail(r, HV_FETCH_RESOLVE, err, HV_E_UPSTREAM,
			    host, "cannot resolve host");
	}
	pin[0] = '\0';
	used = 0;
	if (!literal) {
		k = snprintf(pin, pin_cap, "%s:%u:", host, port);
		if (k < 0 || (size_t)k >= pin_cap) {
			rc = fail(r, HV_FETCH_BAD_URL, err, HV_E_INVALID, NULL,
			    "host name too long");
			goto out;
		}
		used = (size_t)k;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct addr a;

		memset(&a, 0, sizeof(a));
		if (ai->ai_family == AF_INET) {
			const struct sockaddr_in *in =
			    (const void *)ai->ai_addr;

			a.family = AF_INET;
			memcpy(a.a, &in->sin_addr, 4);
		} else if (ai->ai_family == AF_INET6) {
			const struct sockaddr_in6 *in6 =
			    (const void *)ai->ai_addr;

			if (in6->sin6_scope_id != 0) {
				rc = fail(r, HV_FETCH_REFUSED, err,
				    HV_E_FORBIDDEN, host,
				    "scoped ipv6 "
				    "addresses are not allowed");
				goto out;
			}
			a.family = AF_INET6;
			memcpy(a.a, in6->sin6_addr.s6_addr, 16);
		} else {
			continue;
		}
		a.port = htons((uint16_t)port);
		if (!hv_fetch_addr_allowed(ai->ai_addr, x->allow_private)) {
			/*
			 * One refused address refuses the host: a name that
			 * answers with internal addresses is not a provider.
			 */
			rc = fail(r, HV_FETCH_REFUSED, err, HV_E_FORBIDDEN,
			    host,
			    "resolves to a loopback, private, link-local or "
			    "otherwise non-public address (allow_private_"
			    "targets is off)");
			goto out;
		}
		{
			size_t j;
			bool dup = false;

			for (j = 0; j < x->n_addrs; j++)
				if (x->addrs[j].family == a.family &&
				    memcmp(x->addrs[j].a, a.a, 16) == 0)
					dup = true;
			if (dup || x->n_addrs == HV_FETCH_MAX_ADDRS)
				continue;
		}
		if (inet_ntop(a.family, a.a, txt, sizeof(txt)) == NULL)
			continue;
		if (!literal) {
			k = snprintf(pin + used, pin_cap - used, "%s%s%s%s",
			    x->n_addrs > 0 ? "," : "",
			    a.family == AF_INET6 ? "[" : "", txt,
			    a.family == AF_INET6 ? "]" : "");
			if (k < 0 || (size_t)k >= pin_cap - used)
				break; /* enough addresses pinned */
			used += (size_t)k;
		}
		x->addrs[x->n_addrs++] = a;
	}
	if (x->n_addrs == 0)
		rc = fail(r, HV_FETCH_RESOLVE, err, HV_E_UPSTREAM, host,
		    "no usable address");
out:
	freeaddrinfo(res);
	return rc;
}

static enum hv_fetch_fail
classify(CURLcode cc, const struct xfer *x)
{
	if (x->refused_socket)
		return HV_FETCH_REFUSED;
	if (x->too_large)
		return HV_FETCH_TOO_LARGE;
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return HV_FETCH_TIMEOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
		return HV_FETCH_RESOLVE;
	case CURLE_COULDNT_CONNECT:
		return HV_FETCH_CONNECT;
	case CURLE_FILESIZE_EXCEEDED:
		return HV_FETCH_TOO_LARGE;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_USE_SSL_FAILED:
		return HV_FETCH_TLS;
	case CURLE_UNSUPPORTED_PROTOCOL:
		return HV_FETCH_REFUSED;
	case CURLE_URL_MALFORMAT:
		return HV_FETCH_BAD_URL;
	default:
		return HV_FETCH_PROTOCOL;
	}
}

static const char *const methods[] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", NULL};

static bool
method_ok(const char *m)
{
	size_t i;

	for (i = 0; m != NULL && methods[i] != NULL; i++)
		if (strcmp(m, methods[i]) == 0)
			return true;
	return false;
}

/* Set an option; remember the first failure. */
#define SETOPT(h, opt, val)                                                    \
	do {                                                                   \
		if (cc == CURLE_OK)                                            \
			cc = curl_easy_setopt((h), (opt), (val));              \
	} while (0)

enum hv_rc
hv_fetch(const struct hv_fetch_request *req, const struct hv_fetch_limits *lim,
    struct hv_fetch_response *resp, struct hv_err *err)
{
	struct xfer x;
	CURLU *u = NULL;
	CURL *h = NULL;
	struct curl_slist *hdrs = NULL, *pins = NULL, *t;
	char *scheme = NULL, *host = NULL, *user = NULL, *pass = NULL,
	     *zone = NULL, *port = NULL;
	char hostbuf[HOST_MAX],
	    pin[HOST_MAX + 16 * (INET6_ADDRSTRLEN + 3) + 16];
	unsigned long portnum;
	bool owned = false;
	long status = 0;
	size_t i, n;
	CURLcode cc = CURLE_OK;
	CURLUcode uc;
	enum hv_rc rc = HV_OK;

	memset(resp, 0, sizeof(*resp));
	memset(&x, 0, sizeof(x));
	hv_fetch_global_init();
	if (!global_ok)
		return fail(resp, HV_FETCH_PROTOCOL, err, HV_E_INTERNAL, NULL,
		    "libcurl is not initialised");
	x.allow_private = lim->allow_private;
	x.max_body =
	    lim->max_response != 0 ? lim->max_response : HV_FETCH_MAX_RESPONSE;

	if (!method_ok(req->method))
		return fail(resp, HV_FETCH_BAD_URL, err, HV_E_INVALID, NULL,
		    "method not allowed");
	if (req->url == NULL)
		return fail(
		    resp, HV_FETCH_BAD_URL, err, HV_E_INVALID, NULL, "no url");

	/* 1. Parse with curl's own parser; the same handle is sent. */
	u = curl_url();
	if (u == NULL) {
		rc = fail(resp, HV_FETCH_PROTOCOL, err, HV_E_NOMEM, NULL,
		    "out of memory");
		goto out;
	}
	uc = curl_url_set(u, CURLUPART_URL, req->url, CURLU_NON_SUPPORT_SCHEME);
	if (uc != CURLUE_OK) {
		rc = fail(resp, HV_FETCH_BAD_URL, err, HV_E_INVALID, NULL,
		    "malformed url");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		rc = fail(resp, HV_FETCH_REFUSED, err, HV_E_FORBIDDEN, NULL,
		    "only http and https urls are allowed");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) != CURLUE_NO_USER ||
	    curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) !=
	        CURLUE_NO_PASSWORD) {
		rc = fail(resp, HV_FETCH_REFUSED, err, HV_E_FORBIDDEN, NULL,
		    "user info in the url is not allowed");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_ZONEID, &zone, 0) != CURLUE_NO_ZONEID) {
		rc = fail(resp, HV_FETCH_REFUSED, err, HV_E_FORBIDDEN, NULL,
		    "ipv6 zone ids are not allowed");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		rc = fail(resp, HV_FETCH_BAD_URL, err, HV_E_INVALID, NULL,
		    "url has no host");
		goto out;
	}
	n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		if (n - 2 >= sizeof(hostbuf))
			goto toolong;
		memcpy(hostbuf, host + 1, n - 2);
		hostbuf[n - 2] = '\0';
	} else {
		if (n >= sizeof(hostbuf))
			goto toolong;
		memcpy(hostbuf, host, n + 1);
	}
	for (i = 0; hostbuf[i] != '\0'; i++)
		hostbuf[i] = (char)tolower((unsigned char)hostbuf[i]);
	n = strlen(hostbuf);
	if (n > 1 && hostbuf[n - 1] == '.')
		hostbuf[--n] = '\0';
	if (!host_chars_ok(hostbuf)) {
		rc = fail(resp, HV_FETCH_REFUSED, err, HV_E_FORBIDDEN, NULL,
		    "host name has characters outside [a-z0-9.-]");
		goto out;
	}
	if (req->host != NULL) {
		char want[HOST_MAX];
		size_t wn = strlen(req->host);

		if (wn >= sizeof(want))
			goto toolong;
		for (i = 0; i <= wn; i++)
			want[i] = (char)tolower((unsigned char)req->host[i]);
		if (wn > 1 && want[wn - 1] == '.')
			want[wn - 1] = '\0';
		if (strcmp(want, hostbuf) != 0) {
			rc = fail(resp, HV_FETCH_REFUSED, err, HV_E_FORBIDDEN,
			    NULL, "url host differs from the allowed host");
			goto out;
		}
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) !=
	    CURLUE_OK) {
		rc = fail(resp, HV_FETCH_BAD_URL, err, HV_E_INVALID, NULL,
		    "url has no port");
		goto out;
	}
	portnum = strtoul(port, NULL, 10);
	if (portnum == 0 || portnum > 65535) {
		rc = fail(resp, HV_FETCH_BAD_URL, err, HV_E_INVALID, NULL,
		    "bad port");
		goto out;
	}

	/* 2. Resolve and check every address before any connection. */
	rc = resolve_and_check(
	    &x, hostbuf, (unsigned int)portnum, pin, sizeof(pin), resp, err);
	if (rc != HV_OK)
		goto out;
	if (pin[0] != '\0') {
		pins = curl_slist_append(NULL, pin);
		hv_mem_zero(pin, sizeof(pin));
		if (pins == NULL)
			goto nomem;
	}

	/* 3. Headers: the caller's lines, and no Expect: 100-continue. */
	for (i = 0; i < req->n_headers; i++) {
		t = curl_slist_append(hdrs, req->headers[i]);
		if (t == NULL)
			goto nomem;
		hdrs = t;
	}
	t = curl_slist_append(hdrs, "Expect:");
	if (t == NULL)
		goto nomem;
	hdrs = t;

	/* 4. The transfer. */
	h = thread_handle(&owned);
	if (h == NULL)
		goto nomem;
	SETOPT(h, CURLOPT_CURLU, u);
	SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(h, CURLOPT_MAXREDIRS, 0L);
	SETOPT(h, CURLOPT_PROXY, "");
	SETOPT(h, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(h, CURLOPT_SSL_VERIFYHOST, 2L);
	SETOPT(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	SETOPT(h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(h, CURLOPT_CONNECTTIMEOUT_MS,
	    lim->connect_timeout_ms > 0 ? lim->connect_timeout_ms
	                                : HV_FETCH_CONNECT_TIMEOUT_MS);
	SETOPT(h, CURLOPT_TIMEOUT_MS,
	    lim->timeout_ms > 0 ? lim->timeout_ms : HV_FETCH_TIMEOUT_MS);
	SETOPT(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x.max_body);
	SETOPT(h, CURLOPT_ACCEPT_ENCODING, "");
	SETOPT(h, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(h, CURLOPT_USERAGENT, "hsmvault/0.1");
	SETOPT(h, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	SETOPT(h, CURLOPT_OPENSOCKETDATA, &x);
	SETOPT(h, CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(h, CURLOPT_WRITEDATA, &x);
	SETOPT(h, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(h, CURLOPT_HEADERDATA, &x);
	SETOPT(h, CURLOPT_HTTPHEADER, hdrs);
	if (pins != NULL)
		SETOPT(h, CURLOPT_RESOLVE, pins);
	if (strcmp(req->method, "HEAD") == 0) {
		SETOPT(h, CURLOPT_NOBODY, 1L);
	} else if (req->send_body) {
		SETOPT(
		    h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		SETOPT(h, CURLOPT_POSTFIELDS,
		    req->body != NULL ? (const char *)req->body : "");
		if (strcmp(req->method, "POST") != 0)
			SETOPT(h, CURLOPT_CUSTOMREQUEST, req->method);
	} else if (strcmp(req->method, "GET") == 0) {
		SETOPT(h, CURLOPT_HTTPGET, 1L);
	} else {
		SETOPT(h, CURLOPT_CUSTOMREQUEST, req->method);
	}
	if (cc != CURLE_OK) {
		rc = fail(resp, HV_FETCH_PROTOCOL, err, HV_E_INTERNAL, NULL,
		    curl_easy_strerror(cc));
		goto out;
	}
	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		enum hv_fetch_fail f = classify(cc, &x);
		char what[160];

		if (f == HV_FETCH_TOO_LARGE)
			(void)snprintf(what, sizeof(what),
			    "response larger "
			    "than %zu bytes; cut off",
			    x.max_body);
		else
			(void)snprintf(what, sizeof(what), "%s (%s)",
			    hv_fetch_fail_str(f), curl_easy_strerror(cc));
		rc = fail(resp, f, err,
		    f == HV_FETCH_REFUSED ? HV_E_FORBIDDEN : HV_E_UPSTREAM,
		    hostbuf, what);
		goto out;
	}
	(void)curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status < 100 || status > 999) {
		rc = fail(resp, HV_FETCH_PROTOCOL, err, HV_E_UPSTREAM, hostbuf,
		    "no http status");
		goto out;
	}
	if (x.body == NULL) {
		x.body = hv_malloc(1);
		if (x.body == NULL)
			goto nomem;
		x.cap = 1;
	}
	x.body[x.len] = '\0';
	resp->status = status;
	resp->body = x.body;
	resp->body_len = x.len;
	resp->headers = x.hdrs;
	resp->n_headers = x.n_hdrs;
	resp->fail = HV_FETCH_OK;
	x.body = NULL;
	x.hdrs = NULL;
	x.n_hdrs = 0;
	goto out;

toolong:
	rc = fail(resp, HV_FETCH_BAD_URL, err, HV_E_INVALID, NULL,
	    "host name too long");
	goto out;
nomem:
	rc = fail(
	    resp, HV_FETCH_PROTOCOL, err, HV_E_NOMEM, NULL, "out of memory");
out:
	if (h != NULL) {
		/* Drop pointers into this call's stack and lists. */
		(void)curl_easy_setopt(h, CURLOPT_CURLU, NULL);
		(void)curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
		(void)curl_easy_setopt(h, CURLOPT_RESOLVE, NULL);
		(void)curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
		(void)curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, NULL);
		(void)curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
		(void)curl_easy_setopt(h, CURLOPT_HEADERDATA, NULL);
		if (owned)
			curl_easy_cleanup(h);
	}
	curl_slist_free_all(hdrs);
	curl_slist_free_all(pins);
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	if (pass != NULL)
		hv_mem_zero(pass, strlen(pass));
	curl_free(pass);
	curl_free(zone);
	curl_free(port);
	curl_url_cleanup(u);
	xfer_release(&x);
	return rc;
}

void
hv_fetch_response_release(struct hv_fetch_response *r)
{
	if (r == NULL)
		return;
	if (r->body != NULL)
		hv_free_wipe(r->body, r->body_len + 1);
	headers_free(r->headers, r->n_headers);
	memset(r, 0, sizeof(*r));
}

const char *
hv_fetch_header_get(const struct hv_fetch_response *r, const char *name)
{
	size_t i;

	for (i = 0; i < r->n_headers; i++)
		if (strcasecmp(r->headers[i].name, name) == 0)
			return r->headers[i].value;
	return NULL;
}
