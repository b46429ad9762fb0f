/*
 * fetch: the one way hsmvault talks to the outside world (libcurl). Used
 * by the provider module (provider.h) for credential test, use and OAuth
 * refresh; nothing else sends outbound requests.
 *
 * Rules enforced here for every request, whatever the caller asks
 * (docs/providers.md, "Outbound rules"):
 *   - the URL is parsed once with curl's own parser (CURLU) and handed to
 *     curl as that parsed handle, so our checks and the request cannot
 *     disagree about the host; only http and https, no user info;
 *   - no redirect is ever followed (CURLOPT_FOLLOWLOCATION 0): a 3xx is
 *     the answer; no proxy from the environment is used;
 *   - TLS: peer and host verification are always on, TLS 1.2 at least;
 *   - the host is resolved by us (getaddrinfo). Unless allow_private,
 *     every address must be public: loopback, RFC 1918 / ULA private,
 *     CGNAT, link-local, multicast, broadcast, unspecified, reserved and
 *     documentation ranges are refused, in IPv4, IPv6 and IPv4 embedded
 *     in IPv6 (mapped, compatible, NAT64, 6to4). Multicast, broadcast and
 *     the unspecified address are refused even with allow_private;
 *   - the checked addresses are pinned: curl gets them through
 *     CURLOPT_RESOLVE, and a socket callback (CURLOPT_OPENSOCKETFUNCTION)
 *     refuses to open a socket to any address that was not checked, so a
 *     DNS answer that changes between check and connect (rebinding)
 *     cannot reach another address;
 *   - a connect timeout and a total timeout; the response body and the
 *     response header block are capped (the transfer is aborted in the
 *     write callback, nothing beyond the cap is kept);
 *   - compressed answers are decoded by curl (so that the caller can
 *     scrub secrets from plain text), and the cap applies to the decoded
 *     bytes (no decompression bomb).
 *
 * Connection reuse: each thread keeps one CURL easy handle (thread-local,
 * released at thread exit) whose connection and TLS session caches
 * survive between requests (curl_easy_reset keeps them), so that
 * repeated use of a provider from one worker does not pay a TLS handshake
 * each time.
 *
 * Secrets: request URLs and header lines may hold secrets (an injected
 * query parameter or Authorization header). The caller keeps them in
 * struct hv_secret buffers; curl copies them into its own heap, and
 * hv_fetch_global_init() installs allocators in libcurl that wipe every
 * block on free. Error messages name the host and curl's error class,
 * never the URL's path or query, a header value or a body.
 *
 * Thread-safety: hv_fetch() is thread-safe (one easy handle per thread).
 */
#ifndef HV_FETCH_H
#define HV_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "err.h"

/* Defaults used when a limit is 0. */
#define HV_FETCH_CONNECT_TIMEOUT_MS 5000L
#define HV_FETCH_TIMEOUT_MS         30000L
#define HV_FETCH_MAX_RESPONSE       (4u * 1024u * 1024u)
#define HV_FETCH_MAX_HEADER_BYTES   (64u * 1024u)
#define HV_FETCH_MAX_ADDRS          16

struct hv_fetch_limits {
	long connect_timeout_ms; /* 0 = default */
	long timeout_ms;         /* whole transfer; 0 = default */
	size_t max_response;     /* decoded body bytes; 0 = default */
	bool allow_private;      /* cfg allow_private_targets */
};

/* Why a fetch failed (for a short, secret-free detail). */
enum hv_fetch_fail {
	HV_FETCH_OK = 0,
	HV_FETCH_REFUSED, /* target refused by policy: no connection */
	HV_FETCH_BAD_URL, /* malformed URL */
	HV_FETCH_RESOLVE, /* host name does not resolve */
	HV_FETCH_CONNECT, /* connection refused / unreachable */
	HV_FETCH_TIMEOUT,
	HV_FETCH_TLS,       /* handshake or certificate verification */
	HV_FETCH_TOO_LARGE, /* body or headers over the cap */
	HV_FETCH_PROTOCOL,  /* malformed answer, reset, other */
};

struct hv_fetch_request {
	const char *method; /* GET HEAD POST PUT PATCH DELETE OPTIONS */
	const char *url;    /* absolute http(s) URL; may hold a secret */
	const char *host;   /* the host the URL must name (lowercase, IPv6
				   without brackets), or NULL */
	const char *const *headers; /* "Name: value" lines; may hold
					   secrets; "Name:" removes one */
	size_t n_headers;
	const void *body; /* may be NULL */
	size_t body_len;
	bool send_body; /* send body (even when empty) */
};

struct hv_fetch_header {
	char *name;  /* lowercase */
	char *value; /* trimmed */
};

/* The answer; release with hv_fetch_response_release(). */
struct hv_fetch_response {
	long status;
	struct hv_fetch_header *headers; /* in arrival order */
	size_t n_headers;
	char *body; /* body_len bytes + a NUL; never NULL on
				   HV_OK (possibly "") */
	size_t body_len;
	enum hv_fetch_fail fail; /* set when hv_fetch() fails */
};

/*
 * Install wiping allocators in libcurl and initialise it (once per
 * process; later calls do nothing). Call at start-up before any other
 * libcurl use; hv_fetch() calls it too. If libcurl was initialised by
 * someone else first, curl keeps the system allocator.
 */
void hv_fetch_global_init(void);

/*
 * Send req under the rules above. On HV_OK *resp holds the answer,
 * whatever its status (a 3xx is returned, never followed). Errors, with
 * resp->fail set (resp needs no release then):
 *   HV_E_INVALID   malformed URL or request (BAD_URL);
 *   HV_E_FORBIDDEN the target is not allowed (REFUSED): scheme, private
 *                  address, host mismatch; no connection was opened;
 *   HV_E_UPSTREAM  resolution, connection, TLS, timeout, size cap, or a
 *                  malformed answer;
 *   HV_E_NOMEM.
 * The message names the host and the class of failure only.
 */
enum hv_rc hv_fetch(const struct hv_fetch_request *req,
    const struct hv_fetch_limits *lim, struct hv_fetch_response *resp,
    struct hv_err *err) __attribute__((warn_unused_result, nonnull(1, 2, 3)));

/* Free everything in r (wiping the body) and zero it. NULL-safe. */
void hv_fetch_response_release(struct hv_fetch_response *r);

/*
 * The first value of header `name` (any case) in r, or NULL. Borrowed.
 */
const char *
hv_fetch_header_get(const struct hv_fetch_response *r, const char *name);

/*
 * Is the address sa (AF_INET or AF_INET6) one the vault may connect to?
 * With allow_private every unicast address except unspecified is
 * allowed; without, only public unicast ones. Exposed for tests.
 */
bool hv_fetch_addr_allowed(const struct sockaddr *sa, bool allow_private)
    __attribute__((nonnull(1)));

/*
 * The same for an IP literal in text ("10.0.0.1", "::ffff:127.0.0.1").
 * False for anything that is not an IP literal.
 */
bool hv_fetch_ip_allowed(const char *ip, bool allow_private);

/* A short description of f ("timed out", "tls failure", ...). */
const char *hv_fetch_fail_str(enum hv_fetch_fail f);

#endif
