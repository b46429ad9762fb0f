/*
 * stubprov: the stand-in provider (stubprov.h) on libmicrohttpd, one
 * thread per connection so that a slow route never holds up the others.
 */
#include "stubprov.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 32
#define MAX_BODY  (1024 * 1024)

struct pair {
	char *name;
	char *value;
};

struct refresh {
	char *rt, *access, *refresh;
	long expires_in;
};

struct hv_stubprov {
	struct MHD_Daemon *d;
	unsigned short port;
	char url[64];
	pthread_mutex_t mu;
	struct pair hdr[MAX_PAIRS];
	size_t n_hdr;
	struct pair qry[MAX_PAIRS];
	size_t n_qry;
	struct refresh rf[MAX_PAIRS];
	size_t n_rf;
	long slow_ms;
	size_t huge;
	char *redirect;
	json_t *paths; /* every path seen */
	json_t *last;
	atomic_bool stopping;
	atomic_ulong connections;
};

struct req {
	char *body;
	size_t len;
	bool too_big;
};

static void
die(const char *what)
{
	fprintf(stderr, "stubprov: %s\n", what);
	exit(1);
}

static char *
xstrdup(const char *s)
{
	char *d = s != NULL ? strdup(s) : NULL;

	if (s != NULL && d == NULL)
		die("out of memory");
	return d;
}

/* ------------------------------------------------------------------ */

struct collect {
	json_t *obj;
	bool lower;
};

static enum MHD_Result
collect_kv(
    void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct collect *c = cls;
	char name[256];
	size_t i, n = strlen(key);
	json_t *v;

	(void)kind;
	if (n >= sizeof(name))
		n = sizeof(name) - 1;
	for (i = 0; i < n; i++)
		name[i] = c->lower
		    ? (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] + 32
		                                            : key[i])
		    : key[i];
	name[n] = '\0';
	v = json_string(value != NULL ? value : "");
	if (v == NULL)
		v = json_string("<not utf-8>");
	json_object_set_new(c->obj, name, v);
	return MHD_YES;
}

static json_t *
describe(struct MHD_Connection *c, const char *method, const char *url,
    const struct req *r)
{
	struct collect h = {json_object(), true};
	struct collect q = {json_object(), false};
	json_t *o, *body;

	MHD_get_connection_values(c, MHD_HEADER_KIND, collect_kv, &h);
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_kv, &q);
	body = json_stringn(r->body != NULL ? r->body : "", r->len);
	if (body == NULL)
		body = json_string("<not utf-8>");
	o = json_pack("{s:s, s:s, s:o, s:o, s:o}", "method", method, "path",
	    url, "query", q.obj, "headers", h.obj, "body", body);
	if (o == NULL)
		die("out of memory");
	return o;
}

static bool
authorized(struct hv_stubprov *s, struct MHD_Connection *c)
{
	const char *v;
	size_t i;
	bool ok = false;

	pthread_mutex_lock(&s->mu);
	for (i = 0; i < s->n_hdr && !ok; i++) {
		v = MHD_lookup_connection_value(
		    c, MHD_HEADER_KIND, s->hdr[i].name);
		ok = v != NULL && strcmp(v, s->hdr[i].value) == 0;
	}
	for (i = 0; i < s->n_qry && !ok; i++) {
		v = MHD_lookup_connection_value(
		    c, MHD_GET_ARGUMENT_KIND, s->qry[i].name);
		ok = v != NULL && strcmp(v, s->qry[i].value) == 0;
	}
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static enum MHD_Result
answer(struct MHD_Connection *c, unsigned int status, const char *type,
    const char *body, size_t len)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(
	    len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	if (type != NULL)
		MHD_add_response_header(resp, "Content-Type", type);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result
answer_json(struct MHD_Connection *c, unsigned int status, const char *json)
{
	return answer(c, status, "application/json", json, strlen(json));
}

static enum MHD_Result
answer_obj(struct MHD_Connection *c, unsigned int status, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);
	enum MHD_Result ret;
	json_malloc_t m;
	json_free_t f;

	json_decref(o);
	if (text == NULL)
		return MHD_NO;
	ret = answer_json(c, status, text);
	/* jansson's allocator (the zeroing one in hsmvault processes) */
	json_get_alloc_funcs(&m, &f);
	f(text);
	return ret;
}

/* Provider-like routes: authorized or not, a fixed answer. */
struct route {
	const char *path;
	unsigned int ok_status;
	const char *ok;
	unsigned int bad_status;
	const char *bad;
};

static const struct route routes[] = {
    {"/v1/balance", 200,
        "{\"object\":\"balance\",\"available\":"
        "[{\"amount\":0,\"currency\":\"usd\"}],\"livemode\":false}",
        401,
        "{\"error\":{\"type\":\"invalid_request_error\",\"message\":"
        "\"Invalid API Key provided\"}}"},
    {"/user", 200, "{\"login\":\"octocat\",\"id\":1}", 401,
        "{\"message\":\"Bad credentials\"}"},
    {"/api/auth.test", 200,
        "{\"ok\":true,\"team\":\"Acme\",\"user\":"
        "\"hvbot\",\"team_id\":\"T1\"}",
        200, "{\"ok\":false,\"error\":\"invalid_auth\"}"},
    {"/client/v4/user/tokens/verify", 200,
        "{\"success\":true,\"result\":"
        "{\"id\":\"t1\",\"status\":\"active\"}}",
        401,
        "{\"success\":false,\"errors\":[{\"code\":1000,\"message\":"
        "\"Invalid API Token\"}]}"},
    {"/admin/api/2024-10/shop.json", 200,
        "{\"shop\":{\"name\":"
        "\"Acme Shop\"}}",
        401,
        "{\"errors\":\"[API] Invalid API key or "
        "access token\"}"},
    {"/api/v4/user", 200, "{\"username\":\"glbot\"}", 401,
        "{\"message\":\"401 Unauthorized\"}"},
    {"/2010-04-01/Accounts.json", 200,
        "{\"accounts\":[{"
        "\"friendly_name\":\"Acme Twilio\"}]}",
        401, "{\"code\":20003,\"message\":\"Authenticate\"}"},
    {"/api/v1/validate", 200, "{\"valid\":true}", 403,
        "{\"errors\":[\"Forbidden\"]}"},
    {"/v1/models", 200, "{\"data\":[]}", 401,
        "{\"error\":{\"message\":\"invalid key\"}}"},
};

static ssize_t
huge_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
	size_t total = *(size_t *)cls, n;

	if (pos >= total)
		return MHD_CONTENT_READER_END_OF_STREAM;
	n = total - (size_t)pos;
	if (n > max)
		n = max;
	memset(buf, 'a', n);
	return (ssize_t)n;
}

static void
huge_free(void *cls)
{
	free(cls);
}

static enum MHD_Result
answer_huge(struct hv_stubprov *s, struct MHD_Connection *c, bool chunked)
{
	struct MHD_Response *resp;
	size_t *total = malloc(sizeof(*total));
	enum MHD_Result ret;

	if (total == NULL)
		return MHD_NO;
	pthread_mutex_lock(&s->mu);
	*total = s->huge;
	pthread_mutex_unlock(&s->mu);
	resp = MHD_create_response_from_callback(
	    chunked ? MHD_SIZE_UNKNOWN : (uint64_t)*total, 32 * 1024, huge_cb,
	    total, huge_free);
	if (resp == NULL) {
		free(total);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/plain");
	ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Value of `name` in an application/x-www-form-urlencoded body. */
static bool
form_value(
    const char *body, size_t len, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name), i = 0, o;

	while (i < len) {
		size_t end = i;

		while (end < len && body[end] != '&')
			end++;
		if (end - i > nl && strncmp(body + i, name, nl) == 0 &&
		    body[i + nl] == '=') {
			o = 0;
			for (i += nl + 1; i < end && o + 1 < cap; i++) {
				if (body[i] == '%' && i + 2 < end) {
					char hx[3] = {
					    body[i + 1], body[i + 2], 0};

					out[o++] = (char)strtol(hx, NULL, 16);
					i += 2;
				} else if (body[i] == '+') {
					out[o++] = ' ';
				} else {
					out[o++] = body[i];
				}
			}
			out[o] = '\0';
			return true;
		}
		i = end + 1;
	}
	return false;
}

static enum MHD_Result
token_endpoint(
    struct hv_stubprov *s, struct MHD_Connection *c, const struct req *r)
{
	char gt[64], rt[512];
	json_t *o = NULL;
	size_t i;

	if (!form_value(r->body, r->len, "grant_type", gt, sizeof(gt)) ||
	    strcmp(gt, "refresh_token") != 0 ||
	    !form_value(r->body, r->len, "refresh_token", rt, sizeof(rt)))
		return answer_json(c, 400, "{\"error\":\"invalid_request\"}");
	pthread_mutex_lock(&s->mu);
	for (i = 0; i < s->n_rf; i++) {
		if (strcmp(s->rf[i].rt, rt) != 0)
			continue;
		o = json_pack("{s:s, s:s, s:I}", "access_token",
		    s->rf[i].access, "token_type", "bearer", "expires_in",
		    (json_int_t)s->rf[i].expires_in);
		if (o != NULL && s->rf[i].refresh != NULL)
			json_object_set_new(
			    o, "refresh_token", json_string(s->rf[i].refresh));
		if (s->n_hdr < MAX_PAIRS) {
			char v[600];

			(void)snprintf(
			    v, sizeof(v), "Bearer %s", s->rf[i].access);
			s->hdr[s->n_hdr].name = xstrdup("Authorization");
			s->hdr[s->n_hdr].value = xstrdup(v);
			s->n_hdr++;
		}
		break;
	}
	pthread_mutex_unlock(&s->mu);
	if (o == NULL)
		return answer_json(c, 400, "{\"error\":\"invalid_grant\"}");
	return answer_obj(c, 200, o);
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
    const char *version, const char *upload, size_t *upload_size,
    void **con_cls)
{
	struct hv_stubprov *s = cls;
	struct req *r = *con_cls;
	json_t *d;
	size_t i;
	bool ok;

	(void)version;
	if (r == NULL) {
		r = calloc(1, sizeof(*r));
		if (r == NULL)
			return MHD_NO;
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (r->len + *upload_size > MAX_BODY) {
			r->too_big = true;
		} else {
			char *nb = realloc(r->body, r->len + *upload_size + 1);

			if (nb == NULL)
				return MHD_NO;
			r->body = nb;
			memcpy(r->body + r->len, upload, *upload_size);
			r->len += *upload_size;
			r->body[r->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}

	d = describe(c, method, url, r);
	pthread_mutex_lock(&s->mu);
	json_array_append_new(s->paths, json_string(url));
	json_decref(s->last);
	s->last = json_incref(d);
	pthread_mutex_unlock(&s->mu);

	if (strcmp(url, "/echo") == 0 || strncmp(url, "/echo/", 6) == 0)
		return answer_obj(c, 200, d);
	json_decref(d);

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(url, routes[i].path) != 0)
			continue;
		ok = authorized(s, c);
		return answer_json(c,
		    ok ? routes[i].ok_status : routes[i].bad_status,
		    ok ? routes[i].ok : routes[i].bad);
	}
	if (strcmp(url, "/redirect") == 0) {
		struct MHD_Response *resp;
		enum MHD_Result ret;
		char loc[512];

		pthread_mutex_lock(&s->mu);
		(void)snprintf(loc, sizeof(loc), "%s",
		    s->redirect != NULL ? s->redirect : "/echo");
		pthread_mutex_unlock(&s->mu);
		resp = MHD_create_response_from_buffer(
		    2, (void *)"{}", MHD_RESPMEM_PERSISTENT);
		if (resp == NULL)
			return MHD_NO;
		MHD_add_response_header(resp, "Location", loc);
		MHD_add_response_header(
		    resp, "Content-Type", "application/json");
		ret = MHD_queue_response(c, 302, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	if (strcmp(url, "/slow") == 0) {
		long ms;

		pthread_mutex_lock(&s->mu);
		ms = s->slow_ms;
		pthread_mutex_unlock(&s->mu);
		while (ms > 0 && !atomic_load(&s->stopping)) {
			struct timespec ts = {0, 20 * 1000 * 1000};

			nanosleep(&ts, NULL);
			ms -= 20;
		}
		return answer_json(c, 200, "{\"slow\":true}");
	}
	if (strcmp(url, "/huge") == 0)
		return answer_huge(s, c, false);
	if (strcmp(url, "/huge-chunked") == 0)
		return answer_huge(s, c, true);
	if (strncmp(url, "/notjson", 8) == 0)
		return answer(c, 200, "text/html", "<html>hello</html>", 18);
	if (strncmp(url, "/status/", 8) == 0) {
		long st = strtol(url + 8, NULL, 10);
		char b[64];

		if (st < 100 || st > 599)
			st = 500;
		(void)snprintf(b, sizeof(b), "{\"status\":%ld}", st);
		return answer_json(c, (unsigned int)st, b);
	}
	if (strcmp(url, "/oauth/token") == 0 && strcmp(method, "POST") == 0)
		return token_endpoint(s, c, r);
	return answer_json(c, 404, "{\"error\":\"not found\"}");
}

static void
completed(void *cls, struct MHD_Connection *c, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct req *r = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (r != NULL) {
		free(r->body);
		free(r);
	}
	*con_cls = NULL;
}

static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
    enum MHD_ConnectionNotificationCode code)
{
	struct hv_stubprov *s = cls;

	(void)c;
	(void)socket_ctx;
	if (code == MHD_CONNECTION_NOTIFY_STARTED)
		atomic_fetch_add(&s->connections, 1);
}

static struct hv_stubprov *
start(const char *cert, const char *key)
{
	struct hv_stubprov *s = calloc(1, sizeof(*s));
	struct sockaddr_in sa;
	const union MHD_DaemonInfo *info;
	unsigned int flags =
	    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;

	if (s == NULL)
		die("out of memory");
	pthread_mutex_init(&s->mu, NULL);
	s->paths = json_array();
	s->slow_ms = 3000;
	s->huge = 8 * 1024 * 1024;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = 0;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (cert != NULL) {
		flags |= MHD_USE_TLS;
		s->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, s,
		    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
		    MHD_OPTION_NOTIFY_COMPLETED, completed, s,
		    MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
		    MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_MEM_KEY,
		    key, MHD_OPTION_END);
	} else {
		s->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, s,
		    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
		    MHD_OPTION_NOTIFY_COMPLETED, completed, s,
		    MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
		    MHD_OPTION_END);
	}
	if (s->d == NULL)
		die("cannot start the stand-in provider");
	info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	if (info == NULL || info->port == 0)
		die("cannot learn the stand-in provider's port");
	s->port = info->port;
	(void)snprintf(s->url, sizeof(s->url), "%s://127.0.0.1:%u",
	    cert != NULL ? "https" : "http", (unsigned int)s->port);
	return s;
}

struct hv_stubprov *
hv_stubprov_start(void)
{
	return start(NULL, NULL);
}

struct hv_stubprov *
hv_stubprov_start_tls(const char *cert_pem, const char *key_pem)
{
	return start(cert_pem, key_pem);
}

static void
pairs_free(struct pair *p, size_t *n)
{
	size_t i;

	for (i = 0; i < *n; i++) {
		free(p[i].name);
		free(p[i].value);
	}
	*n = 0;
}

static void
refresh_free(struct hv_stubprov *s)
{
	size_t i;

	for (i = 0; i < s->n_rf; i++) {
		free(s->rf[i].rt);
		free(s->rf[i].access);
		free(s->rf[i].refresh);
	}
	s->n_rf = 0;
}

void
hv_stubprov_stop(struct hv_stubprov **sp)
{
	struct hv_stubprov *s;

	if (sp == NULL || *sp == NULL)
		return;
	s = *sp;
	atomic_store(&s->stopping, true);
	MHD_stop_daemon(s->d);
	pairs_free(s->hdr, &s->n_hdr);
	pairs_free(s->qry, &s->n_qry);
	refresh_free(s);
	free(s->redirect);
	json_decref(s->paths);
	json_decref(s->last);
	pthread_mutex_destroy(&s->mu);
	free(s);
	*sp = NULL;
}

unsigned short
hv_stubprov_port(const struct hv_stubprov *s)
{
	return s->port;
}

const char *
hv_stubprov_url(const struct hv_stubprov *s)
{
	return s->url;
}

static void
add_pair(struct hv_stubprov *s, struct pair *p, size_t *n, const char *name,
    const char *value)
{
	pthread_mutex_lock(&s->mu);
	if (*n == MAX_PAIRS)
		die("too many accepted credentials");
	p[*n].name = xstrdup(name);
	p[*n].value = xstrdup(value);
	(*n)++;
	pthread_mutex_unlock(&s->mu);
}

void
hv_stubprov_accept_header(
    struct hv_stubprov *s, const char *name, const char *value)
{
	add_pair(s, s->hdr, &s->n_hdr, name, value);
}

void
hv_stubprov_accept_query(
    struct hv_stubprov *s, const char *name, const char *value)
{
	add_pair(s, s->qry, &s->n_qry, name, value);
}

void
hv_stubprov_accept_clear(struct hv_stubprov *s)
{
	pthread_mutex_lock(&s->mu);
	pairs_free(s->hdr, &s->n_hdr);
	pairs_free(s->qry, &s->n_qry);
	refresh_free(s);
	pthread_mutex_unlock(&s->mu);
}

void
hv_stubprov_accept_refresh(struct hv_stubprov *s, const char *rt,
    const char *new_access, const char *new_refresh, long expires_in)
{
	pthread_mutex_lock(&s->mu);
	if (s->n_rf == MAX_PAIRS)
		die("too many refresh tokens");
	s->rf[s->n_rf].rt = xstrdup(rt);
	s->rf[s->n_rf].access = xstrdup(new_access);
	s->rf[s->n_rf].refresh = xstrdup(new_refresh);
	s->rf[s->n_rf].expires_in = expires_in;
	s->n_rf++;
	pthread_mutex_unlock(&s->mu);
}

void
hv_stubprov_set_slow_ms(struct hv_stubprov *s, long ms)
{
	pthread_mutex_lock(&s->mu);
	s->slow_ms = ms;
	pthread_mutex_unlock(&s->mu);
}

void
hv_stubprov_set_huge_bytes(struct hv_stubprov *s, size_t n)
{
	pthread_mutex_lock(&s->mu);
	s->huge = n;
	pthread_mutex_unlock(&s->mu);
}

void
hv_stubprov_set_redirect(struct hv_stubprov *s, const char *location)
{
	pthread_mutex_lock(&s->mu);
	free(s->redirect);
	s->redirect = xstrdup(location);
	pthread_mutex_unlock(&s->mu);
}

unsigned long
hv_stubprov_count(struct hv_stubprov *s)
{
	unsigned long n;

	pthread_mutex_lock(&s->mu);
	n = (unsigned long)json_array_size(s->paths);
	pthread_mutex_unlock(&s->mu);
	return n;
}

unsigned long
hv_stubprov_count_prefix(struct hv_stubprov *s, const char *prefix)
{
	unsigned long n = 0;
	size_t i, pl = strlen(prefix);
	json_t *v;

	pthread_mutex_lock(&s->mu);
	json_array_foreach(s->paths, i, v)
	{
		if (strncmp(json_string_value(v), prefix, pl) == 0)
			n++;
	}
	pthread_mutex_unlock(&s->mu);
	return n;
}

json_t *
hv_stubprov_last(struct hv_stubprov *s)
{
	json_t *d;

	pthread_mutex_lock(&s->mu);
	d = s->last != NULL ? json_deep_copy(s->last) : NULL;
	pthread_mutex_unlock(&s->mu);
	return d;
}

unsigned long
hv_stubprov_connections(struct hv_stubprov *s)
{
	return atomic_load(&s->connections);
}

void
hv_stubprov_reset(struct hv_stubprov *s)
{
	pthread_mutex_lock(&s->mu);
	json_array_clear(s->paths);
	json_decref(s->last);
	s->last = NULL;
	pthread_mutex_unlock(&s->mu);
}
