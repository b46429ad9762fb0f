/*
 * cfg: the configuration table and its three sources. Each key is one row
 * of `keys[]`; the file, the environment and flags all go through
 * hv_cfg_set(), so they cannot disagree on names or parsing.
 */
#include "cfg.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

enum kind { K_STR, K_UINT, K_SIZE, K_BOOL };

struct key {
	const char *name;
	enum kind kind;
	size_t off;
};

#define S(f)                                                                   \
	{                                                                      \
#f, K_STR, offsetof(struct hv_cfg, f)                          \
	}
#define U(f)                                                                   \
	{                                                                      \
#f, K_UINT, offsetof(struct hv_cfg, f)                         \
	}

static const struct key keys[] = {
    S(database_url),
    U(db_pool),
    S(keystore),
    S(pkcs11_module),
    S(pkcs11_token),
    S(pkcs11_pin_file),
    U(pkcs11_sessions),
    S(tpm_tcti),
    S(softhsm2_conf),
    S(listen),
    S(data),
    S(apikey_prefix),
    S(log_level),
    S(catalog),
    S(tls_cert),
    S(tls_key),
    S(tls_client_ca),
    S(metrics_listen),
    U(threads),
    {"max_body", K_SIZE, offsetof(struct hv_cfg, max_body)},
    {"allow_private_targets", K_BOOL,
        offsetof(struct hv_cfg, allow_private_targets)},
    U(dek_cache_size),
    U(dek_cache_ttl_ms),
    U(dek_cache_max_uses),
    U(cred_cache_size),
    U(cred_cache_ttl_ms),
    U(audit_chains),
    U(audit_group_leaders),
    U(create_group_writers),
    U(use_group_writers),
    U(access_log_flush_ms),
    U(upstream_timeout_ms),
    {"upstream_max_response", K_SIZE,
        offsetof(struct hv_cfg, upstream_max_response)},
};

#undef S
#undef U

static char *
xstrdup(const char *s)
{
	return s == NULL ? NULL : strdup(s);
}

void
hv_cfg_init(struct hv_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->db_pool = 8;
	c->keystore = xstrdup("pkcs11");
	c->listen = xstrdup("127.0.0.1:8200");
	c->apikey_prefix = xstrdup("hv_sk_");
	c->log_level = xstrdup("info");
	c->max_body = 1024 * 1024;
	c->dek_cache_size = 1024;
	c->dek_cache_ttl_ms = 60000;
	c->dek_cache_max_uses = 10000;
	c->cred_cache_size = 16384;
	c->cred_cache_ttl_ms = 30000;
	c->audit_chains = 16;        /* >= db_pool: no shared head (audit.c) */
	c->audit_group_leaders = 1;  /* one audit writer thread */
	c->create_group_writers = 1; /* one create writer thread */
	c->use_group_writers = 1;    /* one use writer thread */
	c->access_log_flush_ms = 100;
	c->upstream_timeout_ms = 30000;
	c->upstream_max_response = 4 * 1024 * 1024;
}

/* database_url may carry a password: strings are wiped before free. */
static void
str_free(char *s)
{
	if (s == NULL)
		return;
	hv_mem_zero(s, strlen(s));
	free(s);
}

void
hv_cfg_release(struct hv_cfg *c)
{
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i].kind == K_STR) {
			char **p = (char **)((char *)c + keys[i].off);
			str_free(*p);
			*p = NULL;
		}
	}
	for (i = 0; i < c->n_services; i++) {
		free(c->services[i].id);
		free(c->services[i].base_url);
	}
	hv_secret_free(&c->pin);
	hv_cfg_init(c);
	/* hv_cfg_init allocated defaults again; the caller is done with c */
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (keys[i].kind == K_STR) {
			char **p = (char **)((char *)c + keys[i].off);
			str_free(*p);
			*p = NULL;
		}
	}
}

static int
parse_uint(const char *v, unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long n;

	if (*v == '\0' || *v == '-' || isspace((unsigned char)*v))
		return -1;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno != 0 || *end != '\0' || n > max)
		return -1;
	*out = n;
	return 0;
}

static enum hv_rc
set_service(struct hv_cfg *c, const char *id, size_t idlen, const char *value,
    struct hv_err *err)
{
	size_t i, j;
	char *lid;

	if (idlen == 0 || idlen > 64)
		return hv_err_set(err, HV_E_CONFIG, "bad service id");
	lid = malloc(idlen + 1);
	if (lid == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	for (j = 0; j < idlen; j++)
		lid[j] = (char)tolower((unsigned char)id[j]);
	lid[idlen] = '\0';
	for (i = 0; i < c->n_services; i++) {
		if (strcmp(c->services[i].id, lid) == 0) {
			free(lid);
			free(c->services[i].base_url);
			c->services[i].base_url = xstrdup(value);
			return HV_OK;
		}
	}
	if (c->n_services == HV_CFG_MAX_SERVICES) {
		free(lid);
		return hv_err_set(err, HV_E_CONFIG, "too many service urls");
	}
	c->services[c->n_services].id = lid;
	c->services[c->n_services].base_url = xstrdup(value);
	c->n_services++;
	return HV_OK;
}

/* Is norm (lower-case, underscores) a configuration key? */
static bool
known_key(const char *norm)
{
	size_t i, n = strlen(norm);

	if (strncmp(norm, "service_", 8) == 0 && n > 17 &&
	    strcmp(norm + n - 9, "_base_url") == 0)
		return true;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].name, norm) == 0)
			return true;
	return false;
}

enum hv_rc
hv_cfg_set(
    struct hv_cfg *c, const char *key, const char *value, struct hv_err *err)
{
	char norm[96];
	size_t i, n = strlen(key);
	unsigned long long u;

	if (n == 0 || n >= sizeof(norm))
		return hv_err_set(err, HV_E_CONFIG, "bad configuration key");
	for (i = 0; i < n; i++)
		norm[i] =
		    key[i] == '-' ? '_' : (char)tolower((unsigned char)key[i]);
	norm[n] = '\0';
	if (strcmp(norm, "pkcs11_pin") == 0)
		return hv_err_set(err, HV_E_CONFIG,
		    "the pin is read from "
		    "HSMVAULT_PKCS11_PIN or pkcs11_pin_file only");
	if (strncmp(norm, "service_", 8) == 0 && n > 17 &&
	    strcmp(norm + n - 9, "_base_url") == 0)
		return set_service(c, norm + 8, n - 17, value, err);
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		void *p = (char *)c + keys[i].off;

		if (strcmp(keys[i].name, norm) != 0)
			continue;
		switch (keys[i].kind) {
		case K_STR:
			str_free(*(char **)p);
			*(char **)p = value[0] == '\0' ? NULL : strdup(value);
			return HV_OK;
		case K_UINT:
			if (parse_uint(value, UINT_MAX, &u) != 0)
				return hv_err_set(
				    err, HV_E_CONFIG, "%s: not a number", norm);
			*(unsigned int *)p = (unsigned int)u;
			return HV_OK;
		case K_SIZE:
			if (parse_uint(value, SIZE_MAX, &u) != 0)
				return hv_err_set(
				    err, HV_E_CONFIG, "%s: not a number", norm);
			*(size_t *)p = (size_t)u;
			return HV_OK;
		case K_BOOL:
			if (strcmp(value, "1") == 0 ||
			    strcmp(value, "true") == 0 ||
			    strcmp(value, "yes") == 0)
				*(bool *)p = true;
			else if (strcmp(value, "0") == 0 ||
			    strcmp(value, "false") == 0 ||
			    strcmp(value, "no") == 0 || value[0] == '\0')
				*(bool *)p = false;
			else
				return hv_err_set(
				    err, HV_E_CONFIG, "%s: want 1 or 0", norm);
			return HV_OK;
		}
	}
	return hv_err_set(
	    err, HV_E_CONFIG, "unknown configuration key '%s'", norm);
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

enum hv_rc
hv_cfg_load_file(struct hv_cfg *c, const char *path, struct hv_err *err)
{
	char line[4096];
	FILE *f;
	unsigned int lineno = 0;
	enum hv_rc rc = HV_OK;

	f = fopen(path, "r");
	if (f == NULL)
		return hv_err_set(err, HV_E_CONFIG, "cannot open '%s': %s",
		    path, strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		char *k, *v, *eq;

		lineno++;
		k = trim(line);
		if (*k == '\0' || *k == '#')
			continue;
		eq = strchr(k, '=');
		if (eq == NULL) {
			rc = hv_err_set(err, HV_E_CONFIG,
			    "%s:%u: expected key = value", path, lineno);
			break;
		}
		*eq = '\0';
		v = trim(eq + 1);
		k = trim(k);
		rc = hv_cfg_set(c, k, v, err);
		if (rc != HV_OK) {
			char where[64];

			snprintf(where, sizeof(where), "%s:%u",
			    strrchr(path, '/') ? strrchr(path, '/') + 1 : path,
			    lineno);
			hv_err_prefix(err, where);
			break;
		}
	}
	hv_mem_zero(line, sizeof(line));
	fclose(f);
	return rc;
}

enum hv_rc
hv_cfg_load_env(struct hv_cfg *c, struct hv_err *err)
{
	char **e;
	enum hv_rc rc;

	for (e = environ; e != NULL && *e != NULL; e++) {
		const char *kv = *e, *eq;
		char key[96];
		size_t n;

		if (strncmp(kv, "HSMVAULT_", 9) != 0)
			continue;
		eq = strchr(kv, '=');
		if (eq == NULL)
			continue;
		n = (size_t)(eq - kv) - 9;
		if (n == 0 || n >= sizeof(key))
			continue;
		memcpy(key, kv + 9, n);
		key[n] = '\0';
		/* PIN and config-file path are handled elsewhere */
		if (strcmp(key, "PKCS11_PIN") == 0 ||
		    strcmp(key, "CONFIG") == 0)
			continue;
		for (size_t i = 0; i < n; i++)
			key[i] = (char)tolower((unsigned char)key[i]);
		/*
		 * Other tools share the HSMVAULT_ prefix (ci/quickstart's own
		 * switches, a deployment's wrappers): an unknown variable is
		 * reported, not fatal. Files and flags stay strict.
		 */
		if (!known_key(key)) {
			hv_log_warn("ignoring unknown environment variable "
			            "HSMVAULT_%.64s",
			    key);
			continue;
		}
		rc = hv_cfg_set(c, key, eq + 1, err);
		if (rc != HV_OK)
			return hv_err_prefix(err, "environment");
	}
	return HV_OK;
}

enum hv_rc
hv_cfg_resolve_pin(struct hv_cfg *c, struct hv_err *err)
{
	char *env = getenv("HSMVAULT_PKCS11_PIN");
	char buf[256];
	ssize_t n;
	size_t len;
	int fd;

	hv_secret_free(&c->pin);
	if (env != NULL && env[0] != '\0') {
		c->pin = hv_secret_from(env, strlen(env));
		/*
		 * No copy left in the environment: wiped in place (the
		 * process's initial environment is what /proc/<pid>/environ
		 * shows), then removed.
		 */
		hv_mem_zero(env, strlen(env));
		unsetenv("HSMVAULT_PKCS11_PIN");
		return c->pin ? HV_OK
		              : hv_err_set(err, HV_E_NOMEM, "out of memory");
	}
	if (c->pkcs11_pin_file == NULL)
		return HV_OK;
	fd = open(c->pkcs11_pin_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hv_err_set(err, HV_E_CONFIG,
		    "cannot open pin file "
		    "'%s': %s",
		    c->pkcs11_pin_file, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return hv_err_set(err, HV_E_CONFIG, "cannot read pin file");
	len = (size_t)n;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n') {
			len = i;
			break;
		}
	}
	c->pin = hv_secret_from(buf, len);
	hv_mem_zero(buf, sizeof(buf));
	return c->pin ? HV_OK : hv_err_set(err, HV_E_NOMEM, "out of memory");
}

const char *
hv_cfg_service_url(const struct hv_cfg *c, const char *id)
{
	size_t i;

	for (i = 0; i < c->n_services; i++)
		if (strcasecmp(c->services[i].id, id) == 0)
			return c->services[i].base_url;
	return NULL;
}

enum hv_rc
hv_cfg_write(const struct hv_cfg *c, const char *path, struct hv_err *err)
{
	FILE *f;
	size_t i;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return hv_err_set(err, HV_E_IO, "cannot write '%s': %s", path,
		    strerror(errno));
	f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return hv_err_set(err, HV_E_IO, "cannot write '%s'", path);
	}
	fprintf(f, "# hsmvault configuration (written by hsmvault)\n");
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const void *p = (const char *)c + keys[i].off;

		switch (keys[i].kind) {
		case K_STR:
			if (*(char *const *)p != NULL)
				fprintf(f, "%s = %s\n", keys[i].name,
				    *(char *const *)p);
			break;
		case K_UINT:
			fprintf(f, "%s = %u\n", keys[i].name,
			    *(const unsigned int *)p);
			break;
		case K_SIZE:
			fprintf(
			    f, "%s = %zu\n", keys[i].name, *(const size_t *)p);
			break;
		case K_BOOL:
			fprintf(f, "%s = %d\n", keys[i].name,
			    *(const bool *)p ? 1 : 0);
			break;
		}
	}
	for (i = 0; i < c->n_services; i++)
		fprintf(f, "service_%s_base_url = %s\n", c->services[i].id,
		    c->services[i].base_url ? c->services[i].base_url : "");
	if (fclose(f) != 0)
		return hv_err_set(err, HV_E_IO, "cannot write '%s'", path);
	return HV_OK;
}
