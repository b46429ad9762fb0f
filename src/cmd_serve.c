/*
 * cmd_serve: `hsmvault serve`. Opens the vault, starts the HTTP server and
 * waits for SIGTERM or SIGINT, then drains requests in flight and stops.
 */
#include "cmd.h"
#include "fetch.h"
#include "http.h"
#include "log.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

/*
 * Without its trigram indexes (pg_trgm missing when the schema was
 * migrated) the search still answers, through a sequential scan: say so
 * where an operator looks, once at start.
 */
static void
search_index_check(struct hv_vault *v)
{
	struct hv_err err = {0};
	int n = 0;

	if (hv_vault_search_indexes(v, &n, &err) != HV_OK)
		hv_log_warn(
		    "credential search: indexes not checked: %s", err.msg);
	else if (n < 3)
		hv_log_warn(
		    "credential search: %d of its 3 trigram indexes exist "
		    "(was pg_trgm missing when the schema was migrated?): "
		    "every search reads every credential; docs/storage.md, "
		    "\"Without pg_trgm\", says how to add them",
		    n);
}

int
hv_cmd_serve(struct hv_cfg *cfg, const struct hv_opts *o)
{
	struct hv_err err = {0};
	struct hv_vault *v = NULL;
	struct hv_http *h = NULL;
	sigset_t set;
	int sig = 0, rc = 1;

	(void)o;
	/* block the stop signals in every thread; this one waits for them */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* libcurl's global state (and its wiping allocators) before threads */
	hv_fetch_global_init();
	if (cfg->access_log_flush_ms > 10000) {
		hv_err_set(&err, HV_E_CONFIG,
		    "access_log_flush_ms too large (max 10000)");
		return hv_cmd_fail(&err);
	}
	if (hv_log_buffer_start(cfg->access_log_flush_ms) != 0)
		hv_log_warn("access log: no buffer, one write per line");
	if (hv_cmd_open(cfg, false, &v, &err) != HV_OK ||
	    hv_http_start(cfg, v, &h, &err) != HV_OK) {
		rc = hv_cmd_fail(&err);
		goto out;
	}
	hv_log_info("hsmvault serving on %s (port %u)", cfg->listen,
	    (unsigned int)hv_http_port(h));
	search_index_check(v);
	if (sigwait(&set, &sig) == 0)
		hv_log_info("signal %d: draining requests and stopping", sig);
	hv_http_stop(&h);
	rc = 0;
out:
	hv_http_stop(&h);
	hv_vault_close(&v);
	/* after the last request: its access line is written */
	hv_log_buffer_stop();
	return rc;
}
