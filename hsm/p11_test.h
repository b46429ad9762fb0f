/*
 * p11_test: TEST-ONLY hooks into the PKCS#11 backend (hsm/p11.c).
 *
 * Nothing in the product calls these; they exist so that tests can break
 * the backend's connection behind its back, switch session copies off for
 * measurements, and count what the backend did. They take the backend's
 * exclusive lock, so they are safe to call while other threads use the
 * handle. `h` must be a handle returned by hv_p11_open() (keystore
 * "pkcs11"); passing any other handle is undefined.
 */
#ifndef HV_P11_TEST_H
#define HV_P11_TEST_H

#include <stdbool.h>

#include "hsm.h"

enum hv_p11_break {
	/* C_Finalize the module: the next call sees
	 * CKR_CRYPTOKI_NOT_INITIALIZED and must re-initialize. */
	HV_P11_BREAK_FINALIZE = 1,
	/* C_CloseAllSessions on the slot: the next call sees
	 * CKR_SESSION_HANDLE_INVALID and the token is logged out. */
	HV_P11_BREAK_SESSIONS = 2,
};

/* Break the backend's module state as `how` says, without telling it. */
void hv_p11_test_break(struct hv_hsm *h, enum hv_p11_break how);

/*
 * Use per-session copies of the keys (default true) or the token objects
 * directly. Drops existing copies.
 */
void hv_p11_test_set_copies(struct hv_hsm *h, bool on);

struct hv_p11_test_stats {
	unsigned long logins;     /* C_Login calls since open */
	unsigned long reconnects; /* successful reconnects */
	unsigned long finds;      /* key lookups (C_FindObjectsInit) */
	unsigned long copies;     /* C_CopyObject calls */
};

/* Counters since hv_p11_open(). */
void hv_p11_test_stats(struct hv_hsm *h, struct hv_p11_test_stats *st);

#endif
