/*
 * http: the HTTP API server (SPEC sections 3-5) on libmicrohttpd.
 *
 * One MHD daemon with an internal thread pool (epoll where available)
 * serves the API on cfg->listen, over TLS when cfg->tls_cert and
 * cfg->tls_key are set (and requiring a verified client certificate when
 * cfg->tls_client_ca is set). When cfg->metrics_listen is set, a second,
 * single-threaded plain-HTTP daemon there serves GET /metrics without an
 * API key. Routing, validation, response envelope, access log and the
 * route table are described in docs/http.md.
 *
 * Ownership: cfg and the vault are borrowed and must outlive the server.
 * Thread-safety: start and stop from one controlling thread; the server's
 * own threads call into the (thread-safe) vault.
 */
#ifndef HV_HTTP_H
#define HV_HTTP_H

#include "cfg.h"
#include "err.h"
#include "vault.h"

struct hv_http;

/*
 * Start serving on cfg->listen ("host:port", "[v6]:port" or ":port"; port
 * 0 = an ephemeral port, see hv_http_port()). HV_E_CONFIG for a bad listen
 * address or unreadable TLS files, HV_E_IO when the port cannot be bound.
 * On HV_OK *out is released with hv_http_stop().
 */
enum hv_rc hv_http_start(const struct hv_cfg *cfg, struct hv_vault *v,
    struct hv_http **out, struct hv_err *err)
    __attribute__((warn_unused_result));

/* The bound port of the API listener (useful with port 0). */
unsigned short hv_http_port(const struct hv_http *h);

/* The bound port of the metrics listener; 0 when there is none. */
unsigned short hv_http_metrics_port(const struct hv_http *h);

/*
 * Graceful stop: stop accepting connections, wait (at most
 * HV_HTTP_DRAIN_MS) for requests in flight to complete, then stop the
 * daemons and free everything. Sets *h to NULL. NULL-safe.
 */
#define HV_HTTP_DRAIN_MS 10000
void hv_http_stop(struct hv_http **h);

#endif
