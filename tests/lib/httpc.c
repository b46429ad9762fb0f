/* httpc: libcurl test client and raw TCP sender (see httpc.h). */
#include "httpc.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

void
hv_httpc_init(struct hv_httpc *c, const char *base)
{
	static int global_done;

	if (!global_done) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		global_done = 1;
	}
	memset(c, 0, sizeof(*c));
	(void)snprintf(c->base, sizeof(c->base), "%s", base);
	c->curl = curl_easy_init();
	c->timeout_ms = 30000;
	if (c->curl == NULL) {
		fprintf(stderr, "curl_easy_init failed\n");
		exit(1);
	}
}

void
hv_httpc_release(struct hv_httpc *c)
{
	if (c->curl != NULL)
		curl_easy_cleanup(c->curl);
	c->curl = NULL;
}

static size_t
on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct hv_httpc_resp *r = arg;
	size_t add = sz * n;
	char *nb;

	nb = realloc(r->body, r->len + add + 1);
	if (nb == NULL)
		return 0;
	r->body = nb;
	memcpy(r->body + r->len, p, add);
	r->len += add;
	r->body[r->len] = '\0';
	return add;
}

static void
keep_header(const char *line, size_t n, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name), vl;
	const char *v;

	if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	v = line + nl + 1;
	while (v < line + n && (*v == ' ' || *v == '\t'))
		v++;
	vl = (size_t)(line + n - v);
	while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
		vl--;
	if (vl >= cap)
		vl = cap - 1;
	memcpy(out, v, vl);
	out[vl] = '\0';
}

static size_t
on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct hv_httpc_resp *r = arg;
	size_t len = sz * n;

	keep_header(
	    p, len, "X-Request-Id", r->request_id, sizeof(r->request_id));
	keep_header(
	    p, len, "Content-Type", r->content_type, sizeof(r->content_type));
	keep_header(p, len, "Cache-Control", r->cache_control,
	    sizeof(r->cache_control));
	keep_header(p, len, "Allow", r->allow, sizeof(r->allow));
	keep_header(
	    p, len, "WWW-Authenticate", r->www_auth, sizeof(r->www_auth));
	keep_header(p, len, "ETag", r->etag, sizeof(r->etag));
	return len;
}

long
hv_httpc_do(struct hv_httpc *c, const char *method, const char *path,
    const char *key, const char *const *hdrs, const char *body, size_t body_len,
    struct hv_httpc_resp *r)
{
	struct curl_slist *sl = NULL;
	char url[4096], auth[1024];
	bool have_ct = false;
	CURL *h = c->curl;
	size_t i;

	memset(r, 0, sizeof(*r));
	curl_easy_reset(h);
	(void)snprintf(url, sizeof(url), "%s%s", c->base, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
	if (c->ca[0] != '\0')
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca);
	if (c->cert[0] != '\0') {
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert);
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->key);
	}
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	if (key != NULL) {
		(void)snprintf(
		    auth, sizeof(auth), "Authorization: Bearer %s", key);
		sl = curl_slist_append(sl, auth);
	}
	for (i = 0; hdrs != NULL && hdrs[i] != NULL; i++) {
		if (strncasecmp(hdrs[i], "Content-Type:", 13) == 0)
			have_ct = true;
		sl = curl_slist_append(sl, hdrs[i]);
	}
	if (body != NULL) {
		if (!have_ct)
			sl = curl_slist_append(
			    sl, "Content-Type: application/json");
		sl = curl_slist_append(sl, "Expect:");
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(
		    h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, sl);
	r->curl_rc = (int)curl_easy_perform(h);
	if (r->curl_rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(sl);
	if (r->body == NULL) {
		r->body = calloc(1, 1);
		if (r->body == NULL)
			exit(1);
	}
	if (r->len > 0 && strncmp(r->content_type, "application/json", 16) == 0)
		r->json = json_loadb(r->body, r->len, 0, NULL);
	return r->status;
}

long
hv_httpc_json(struct hv_httpc *c, const char *method, const char *path,
    const char *key, const json_t *body, struct hv_httpc_resp *r)
{
	char *s = NULL;
	size_t n;
	long st;

	/*
	 * json_dumpb into our own buffer: json_dumps() would allocate through
	 * whatever allocator jansson has (hsmvault installs a zeroing one),
	 * which plain free() must not release.
	 */
	if (body != NULL) {
		n = json_dumpb(body, NULL, 0, JSON_COMPACT);
		s = malloc(n + 1);
		if (n == 0 || s == NULL ||
		    json_dumpb(body, s, n, JSON_COMPACT) != n)
			exit(1);
		s[n] = '\0';
	}
	st = hv_httpc_do(
	    c, method, path, key, NULL, s, s != NULL ? strlen(s) : 0, r);
	free(s);
	return st;
}

void
hv_httpc_resp_free(struct hv_httpc_resp *r)
{
	free(r->body);
	json_decref(r->json);
	memset(r, 0, sizeof(*r));
}

const char *
hv_httpc_error_code(const struct hv_httpc_resp *r)
{
	const char *s;

	s = json_string_value(
	    json_object_get(json_object_get(r->json, "error"), "code"));
	return s != NULL ? s : "";
}

static long
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

long
hv_httpc_raw(unsigned short port, const void *req, size_t len, char *out,
    size_t cap, long *status, long timeout_ms)
{
	struct sockaddr_in sa;
	size_t sent = 0, got = 0;
	long deadline = now_ms() + timeout_ms;
	int fd;

	*status = 0;
	if (cap > 0)
		out[0] = '\0';
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	while (sent < len) {
		ssize_t n = send(
		    fd, (const char *)req + sent, len - sent, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; /* the server may close early (413, 431) */
		sent += (size_t)n;
	}
	while (got + 1 < cap) {
		struct pollfd p = {fd, POLLIN, 0};
		long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			break;
		n = recv(fd, out + got, cap - 1 - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		out[got] = '\0';
	}
	close(fd);
	if (cap > 0)
		out[got] = '\0';
	if (got > 12 && strncmp(out, "HTTP/1.", 7) == 0)
		*status = strtol(out + 9, NULL, 10);
	return (long)got;
}
