/*
 * httpc: a small HTTP client for integration tests (libcurl), plus a raw
 * TCP sender for requests curl will not produce (NUL bytes, broken
 * framing, oversized header blocks).
 *
 * Ownership: a struct hv_httpc owns its CURL handle (reused: keep-alive);
 * a struct hv_httpc_resp owns its body and parsed JSON, released with
 * hv_httpc_resp_free(). Not thread-safe: one client per thread.
 */
#ifndef HV_TEST_HTTPC_H
#define HV_TEST_HTTPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct hv_httpc {
	void *curl;     /* CURL * */
	char base[256]; /* "http://127.0.0.1:PORT" */
	/* TLS (https base): PEM paths, "" = unset */
	char ca[512];
	char cert[512];
	char key[512];
	long timeout_ms; /* whole request; default 30000 */
};

struct hv_httpc_resp {
	long status; /* 0 when the transfer failed */
	int curl_rc; /* CURLcode */
	char *body;  /* NUL-terminated, may be "" */
	size_t len;
	json_t *json; /* parsed body when it is JSON, else NULL */
	char request_id[128];
	char content_type[128];
	char cache_control[64];
	char allow[128];
	char www_auth[128];
	char etag[64];
};

/* Start a client for base ("http://127.0.0.1:8200"). */
void hv_httpc_init(struct hv_httpc *c, const char *base);
void hv_httpc_release(struct hv_httpc *c);

/*
 * One request. key (may be NULL) becomes "Authorization: Bearer <key>";
 * hdrs is a NULL-terminated list of extra "Name: value" lines (may be
 * NULL; "Name:" removes a header curl would send). A non-NULL body is
 * sent with Content-Type: application/json unless hdrs sets another.
 * Returns r->status (0 on a transport failure).
 */
long hv_httpc_do(struct hv_httpc *c, const char *method, const char *path,
    const char *key, const char *const *hdrs, const char *body, size_t body_len,
    struct hv_httpc_resp *r);

/* The same with a JSON body (NULL = no body). */
long hv_httpc_json(struct hv_httpc *c, const char *method, const char *path,
    const char *key, const json_t *body, struct hv_httpc_resp *r);

void hv_httpc_resp_free(struct hv_httpc_resp *r);

/* The error code of an envelope answer ("" when there is none). */
const char *hv_httpc_error_code(const struct hv_httpc_resp *r);

/*
 * Send raw bytes to 127.0.0.1:port and read until the server closes or
 * timeout_ms passes (send "Connection: close" to avoid waiting). Stores up to cap - 1 bytes in out and the status
 * of the first response line in *status (0 when none). Returns bytes read
 * or -1 on a connect error.
 */
long hv_httpc_raw(unsigned short port, const void *req, size_t len, char *out,
    size_t cap, long *status, long timeout_ms);

#endif
