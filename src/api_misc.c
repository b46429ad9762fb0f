/*
 * api_misc: GET /healthz, /readyz, /metrics and /v1/services.
 */
#include "api.h"

#include "metrics.h"

enum hv_rc
hv_api_healthz(struct hv_call *c, struct hv_err *err)
{
	(void)err;
	c->out = json_pack("{s:s}", "status", "ok");
	return c->out != NULL ? HV_OK : HV_E_NOMEM;
}

/*
 * Ready when the database answers a round trip and the key store a probe.
 * Not ready is 503 with the envelope of the failing part
 * (database_unavailable or keystore_unavailable).
 */
enum hv_rc
hv_api_readyz(struct hv_call *c, struct hv_err *err)
{
	enum hv_rc rc;

	rc = hv_vault_ready(c->vault, err);
	if (rc != HV_OK) {
		/* Whatever went wrong, the answer is "not ready": 503. */
		if (rc != HV_E_DATABASE && rc != HV_E_KEYSTORE &&
		    rc != HV_E_PIN)
			rc = hv_err_set(err, HV_E_KEYSTORE, "not ready: %s",
			    err != NULL ? err->msg : "");
		return rc;
	}
	c->out = json_pack("{s:s}", "status", "ready");
	return c->out != NULL ? HV_OK : HV_E_NOMEM;
}

enum hv_rc
hv_api_metrics(struct hv_call *c, struct hv_err *err)
{
	struct hv_vault_caches caches;
	struct hv_metrics_sources src;
	enum hv_rc rc;

	hv_vault_caches(c->vault, &caches);
	src.store = hv_vault_store(c->vault);
	src.audit = hv_vault_audit(c->vault);
	src.creates = hv_vault_create_group(c->vault);
	src.uses = hv_vault_use_group(c->vault);
	src.caches = &caches;
	rc = hv_metrics_render(c->metrics, &src, &c->text, &c->text_len, err);
	if (rc != HV_OK)
		return rc;
	c->content_type = "text/plain; version=0.0.4; charset=utf-8";
	return HV_OK;
}

enum hv_rc
hv_api_services(struct hv_call *c, struct hv_err *err)
{
	return hv_vault_services(c->vault, &c->out, err);
}
