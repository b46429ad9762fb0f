/*
 * cfg: hsmvault configuration. Three layers, later ones win:
 *   1. a file (`--config FILE`): `key = value` lines, `#` comments;
 *   2. environment variables HSMVAULT_<KEY> (key upper-cased);
 *   3. command-line flags --<key-with-dashes>=value.
 * Keys are listed in the table in cfg.c and docs/configuration.md. The PIN
 * is read from pkcs11_pin_file or HSMVAULT_PKCS11_PIN, never from a flag.
 * Per-service base URLs are service_<id>_base_url in the file or
 * HSMVAULT_SERVICE_<ID>_BASE_URL in the environment.
 *
 * Ownership: struct hv_cfg owns every string in it; hv_cfg_release() frees
 * them and wipes the PIN. Not thread-safe while loading; read-only after.
 */
#ifndef HV_CFG_H
#define HV_CFG_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "mem.h"

#define HV_CFG_MAX_SERVICES 64

struct hv_cfg_service {
	char *id; /* lower-case catalog id */
	char *base_url;
};

struct hv_cfg {
	char *database_url;   /* libpq connection string */
	unsigned int db_pool; /* connections in the pool */
	char *keystore;       /* "pkcs11" | "tpm" */
	char *pkcs11_module;  /* NULL = p11-kit proxy */
	char *pkcs11_token;   /* PKCS#11 URI */
	char *pkcs11_pin_file;
	struct hv_secret *pin; /* resolved PIN, NULL when none */
	unsigned int pkcs11_sessions;
	char *tpm_tcti;
	char *softhsm2_conf; /* exported as SOFTHSM2_CONF when unset */
	char *listen;        /* host:port */
	char *data;          /* data directory */
	char *apikey_prefix; /* default "hv_sk_" */
	char *log_level;
	char *catalog; /* service catalog JSON path */
	char *tls_cert;
	char *tls_key;
	char *tls_client_ca;
	char *metrics_listen; /* open /metrics listener, optional */
	unsigned int threads; /* HTTP worker threads; 0 = 2 x cores */
	size_t max_body;      /* bytes; default 1 MiB */
	bool allow_private_targets;
	unsigned int dek_cache_size; /* entries; 0 disables the cache */
	unsigned int dek_cache_ttl_ms;
	unsigned int dek_cache_max_uses; /* hits per unwrap; 0 = no limit */
	unsigned int cred_cache_size;    /* metadata rows; 0 = off */
	unsigned int cred_cache_ttl_ms;
	unsigned int audit_chains;         /* parallel audit chains */
	unsigned int audit_group_leaders;  /* group commit; 0 = off */
	unsigned int create_group_writers; /* group commit; 0 = off */
	unsigned int use_group_writers;    /* group commit; 0 = off */
	unsigned int access_log_flush_ms;  /* 0 = one write per line */
	unsigned int upstream_timeout_ms;  /* test/use: whole provider call */
	size_t upstream_max_response;      /* test/use: provider body cap */
	struct hv_cfg_service services[HV_CFG_MAX_SERVICES];
	size_t n_services;
};

/* Set defaults. */
void hv_cfg_init(struct hv_cfg *c);

/* Free every string, wipe the PIN; leaves *c re-initialised. */
void hv_cfg_release(struct hv_cfg *c);

/* Apply a config file. Unknown keys and malformed lines: HV_E_CONFIG. */
enum hv_rc hv_cfg_load_file(struct hv_cfg *c, const char *path,
    struct hv_err *err) __attribute__((warn_unused_result));

/* Apply HSMVAULT_* variables from environ. */
enum hv_rc hv_cfg_load_env(struct hv_cfg *c, struct hv_err *err)
    __attribute__((warn_unused_result));

/*
 * Apply one `key=value` setting (the flag form, dashes allowed). Refuses
 * pkcs11_pin: a PIN never comes from the command line.
 */
enum hv_rc hv_cfg_set(struct hv_cfg *c, const char *key, const char *value,
    struct hv_err *err) __attribute__((warn_unused_result));

/*
 * Resolve the PIN: HSMVAULT_PKCS11_PIN wins, else pkcs11_pin_file (its
 * first line). Stores it in c->pin. Not an error when neither is set.
 * HSMVAULT_PKCS11_PIN is wiped in place and removed from the environment
 * once read, so a second call finds only the file.
 */
enum hv_rc hv_cfg_resolve_pin(struct hv_cfg *c, struct hv_err *err)
    __attribute__((warn_unused_result));

/* The base URL override of a service id, or NULL. Borrowed. */
const char *hv_cfg_service_url(const struct hv_cfg *c, const char *id);

/*
 * Write the effective configuration (without the PIN itself; the PIN file
 * path is written) to path with mode 0600.
 */
enum hv_rc hv_cfg_write(const struct hv_cfg *c, const char *path,
    struct hv_err *err) __attribute__((warn_unused_result));

#endif
