/* err: result codes, their strings and HTTP mapping. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum hv_rc
hv_err_set(struct hv_err *err, enum hv_rc rc, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (err == NULL)
		return rc;
	err->rc = rc;
	va_start(ap, fmt);
	n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		err->msg[0] = '\0';
	else if ((size_t)n >= sizeof(err->msg))
		memcpy(err->msg + sizeof(err->msg) - 4, "...", 4);
	return rc;
}

enum hv_rc
hv_err_prefix(struct hv_err *err, const char *what)
{
	char tmp[HV_ERR_MSG_MAX];
	int n;

	if (err == NULL)
		return HV_E_INTERNAL;
	memcpy(tmp, err->msg, sizeof(tmp));
	n = snprintf(err->msg, sizeof(err->msg), "%s: %s", what, tmp);
	if (n < 0 || (size_t)n >= sizeof(err->msg))
		memcpy(err->msg + sizeof(err->msg) - 4, "...", 4);
	return err->rc;
}

const char *
hv_strerror(enum hv_rc rc)
{
	switch (rc) {
	case HV_OK:
		return "ok";
	case HV_E_INVALID:
		return "invalid request";
	case HV_E_UNAUTHORIZED:
		return "missing or invalid api key";
	case HV_E_FORBIDDEN:
		return "forbidden";
	case HV_E_NOT_FOUND:
		return "not found";
	case HV_E_CONFLICT:
		return "conflict";
	case HV_E_REVOKED:
		return "credential revoked";
	case HV_E_TOO_LARGE:
		return "payload too large";
	case HV_E_MEDIA_TYPE:
		return "unsupported media type";
	case HV_E_KEYSTORE:
		return "key store unavailable";
	case HV_E_DATABASE:
		return "database unavailable";
	case HV_E_CRYPTO:
		return "cryptographic check failed";
	case HV_E_NOMEM:
		return "out of memory";
	case HV_E_INTERNAL:
		return "internal error";
	case HV_E_CONFIG:
		return "bad configuration";
	case HV_E_PIN:
		return "key store pin rejected";
	case HV_E_IO:
		return "i/o error";
	case HV_E_UNSUPPORTED:
		return "not supported by this key store";
	case HV_E_UPSTREAM:
		return "upstream provider error";
	case HV_E_NOT_IMPLEMENTED:
		return "not implemented";
	case HV_E_EXPIRED:
		return "credential expired";
	}
	return "unknown error";
}

const char *
hv_rc_code(enum hv_rc rc)
{
	switch (rc) {
	case HV_OK:
		return "ok";
	case HV_E_INVALID:
		return "invalid_request";
	case HV_E_UNAUTHORIZED:
		return "unauthorized";
	case HV_E_FORBIDDEN:
		return "forbidden";
	case HV_E_NOT_FOUND:
		return "not_found";
	case HV_E_CONFLICT:
		return "conflict";
	case HV_E_REVOKED:
		return "credential_revoked";
	case HV_E_TOO_LARGE:
		return "payload_too_large";
	case HV_E_MEDIA_TYPE:
		return "unsupported_media_type";
	case HV_E_KEYSTORE:
	case HV_E_PIN:
		return "keystore_unavailable";
	case HV_E_DATABASE:
		return "database_unavailable";
	case HV_E_UPSTREAM:
		return "upstream_error";
	case HV_E_NOT_IMPLEMENTED:
		return "not_implemented";
	case HV_E_EXPIRED:
		return "credential_expired";
	case HV_E_CRYPTO:
	case HV_E_NOMEM:
	case HV_E_INTERNAL:
	case HV_E_CONFIG:
	case HV_E_IO:
	case HV_E_UNSUPPORTED:
		return "internal_error";
	}
	return "internal_error";
}

unsigned int
hv_rc_http(enum hv_rc rc)
{
	switch (rc) {
	case HV_OK:
		return 200;
	case HV_E_INVALID:
		return 400;
	case HV_E_UNAUTHORIZED:
		return 401;
	case HV_E_FORBIDDEN:
		return 403;
	case HV_E_NOT_FOUND:
		return 404;
	case HV_E_CONFLICT:
	case HV_E_REVOKED:
	case HV_E_EXPIRED:
		return 409;
	case HV_E_TOO_LARGE:
		return 413;
	case HV_E_MEDIA_TYPE:
		return 415;
	case HV_E_KEYSTORE:
	case HV_E_PIN:
	case HV_E_DATABASE:
		return 503;
	case HV_E_UPSTREAM:
		return 502;
	case HV_E_NOT_IMPLEMENTED:
		return 501;
	case HV_E_CRYPTO:
	case HV_E_NOMEM:
	case HV_E_INTERNAL:
	case HV_E_CONFIG:
	case HV_E_IO:
	case HV_E_UNSUPPORTED:
		return 500;
	}
	return 500;
}
