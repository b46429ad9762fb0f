/*
 * vault_int: what the vault_*.c modules share and nobody else sees.
 */
#ifndef HV_VAULT_INT_H
#define HV_VAULT_INT_H

#include "audit.h"
#include "catalog.h"
#include "cfg.h"
#include "hsm.h"
#include "store.h"
#include "vault.h"

struct hv_vault {
	const struct hv_cfg *cfg;	/* borrowed */
	struct hv_hsm *hsm;
	struct hv_store *store;
	struct hv_catalog *catalog;
	struct hv_audit *audit;
	void *apikey_cache;		/* owned by vault.c */
};

/* Register the statement tables of every vault module (once). */
void hv_vault_register_statements(void);
void hv_vault_cred_register(void);	/* vault_cred.c */

/*
 * May principal p see credential row (workspace, scope, owner_user, id)?
 * Implements SPEC section 3 visibility plus the allow-list is NOT part of
 * visibility (allow-list misses are 403, not 404).
 */
bool hv_vault_visible(const struct hv_principal *p, const char *workspace_id,
    const char *scope, const char *owner_user);
bool hv_vault_allowed(const struct hv_principal *p, const char *cred_id);

#endif
