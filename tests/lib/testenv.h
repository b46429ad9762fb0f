/*
 * testenv: the real components a test runs against.
 *
 * ci/test starts one PostgreSQL cluster and exports:
 *   HV_TEST_PG_URL       libpq string of the cluster's admin database
 *   HV_TEST_PG_BINDIR    directory holding pg_dump, psql
 *   HV_TEST_TPM_TCTI     TCTI string of a running swtpm (TPM tests)
 *   HV_REQUIRE_INTEGRATION=1  a missing component fails instead of skip
 * Each test makes its own database (hv_test_db_new) and its own SoftHSM2
 * token (hv_test_token_new) so ctest can run tests in parallel.
 *
 * A missing component makes the test exit 77 (ctest SKIP_RETURN_CODE),
 * or fail with exit 1 when HV_REQUIRE_INTEGRATION=1.
 *
 * Not thread-safe: call from the test's main thread during set-up.
 */
#ifndef HV_TESTENV_H
#define HV_TESTENV_H

#include <stdbool.h>
#include <stddef.h>

#include "cfg.h"

#define HV_TEST_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define HV_TEST_PIN            "87654321"
#define HV_TEST_SO_PIN         "12345678"

/* Exit 77 (skip) or 1 (required) with a message naming what is missing. */
void hv_test_missing(const char *what) __attribute__((noreturn));

/*
 * A fresh SoftHSM2 token in its own temporary directory. Sets SOFTHSM2_CONF
 * for this process (SoftHSM reads it at C_Initialize), so one process
 * holds one test token at a time.
 */
struct hv_test_token {
	char dir[256];  /* temp dir; tokens live in dir/tokens */
	char conf[300]; /* dir/softhsm2.conf */
	char label[33];
	char uri[128]; /* "pkcs11:token=<label>" */
};
void hv_test_token_new(struct hv_test_token *t, const char *label);
/* Remove the token directory. */
void hv_test_token_destroy(struct hv_test_token *t);

/*
 * A fresh, empty database on the test cluster; returns its libpq string
 * (static storage in t). hv_test_db_drop() removes it.
 */
struct hv_test_db {
	char name[64];
	char url[512];
};
void hv_test_db_new(struct hv_test_db *d, const char *prefix);
void hv_test_db_drop(struct hv_test_db *d);

/*
 * Fill cfg (after hv_cfg_init) for the PKCS#11 key store on token t and
 * database d (either may be NULL), with the PIN set, and data dir under
 * the token's temp dir.
 */
void hv_test_cfg(struct hv_cfg *cfg, const struct hv_test_token *t,
    const struct hv_test_db *d);

/*
 * Run a shell command; returns its exit status (or -1). Output goes to the
 * test's stderr.
 */
int hv_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Run a shell command and capture up to cap-1 bytes of stdout into out. */
int hv_test_sh_out(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Absolute path of the built hsmvault binary ($HV_BUILD_DIR/hsmvault). */
const char *hv_test_bin(void);

/*
 * Fail the running cmocka test unless rc is HV_OK, with err's message. A
 * macro: cmocka's fail_msg belongs to the test file that uses it.
 */
struct hv_vault;
struct pg_conn;

/*
 * Test-only SQL on a direct connection (set-up, checks behind the vault's
 * back); each fails the running test (fail_msg) when PostgreSQL refuses.
 * param: NULL or the one parameter $1.
 */
/* A statement whose result is not needed. */
void hv_test_pg_exec(struct pg_conn *pg, const char *sql);
/* The first value of the first row (malloc'd), or NULL when none. */
char *hv_test_pg_text(struct pg_conn *pg, const char *sql, const char *param);
/* That value as a number, -1 when there is none. */
long hv_test_pg_long(struct pg_conn *pg, const char *sql, const char *param);
/* A new workspace named name: its id (malloc'd). */
char *hv_test_pg_workspace(struct pg_conn *pg, const char *name);

/*
 * hv_vault_init (its report dropped), then hv_vault_open of *v on cfg, as
 * a test's set-up does: 0, or -1 after printing what failed.
 */
int hv_test_vault_up(const struct hv_cfg *cfg, struct hv_vault **v);

#define hv_test_must(rc, err, what)                                            \
	do {                                                                   \
		enum hv_rc hv_test_rc_ = (rc);                                 \
		if (hv_test_rc_ != HV_OK)                                      \
			fail_msg("%s: rc %d: %s", (what), (int)hv_test_rc_,    \
			    (err)->msg);                                       \
	} while (0)

#endif
