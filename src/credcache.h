/*
 * credcache: a bounded cache of credential metadata rows, so that a
 * metadata read (GET /v1/credentials/{id}) needs no database round trip
 * (docs/performance.md, "Credential metadata cache").
 *
 * It holds the text columns of one `cred_get` row per credential id: no
 * secret, no wrapped key, nothing that is not in the metadata answer
 * already. Entries are found by id in sets of sixteen ways; an entry lives
 * between half of ttl_ms and ttl_ms (spread, so that entries stored together
 * do not expire together) and never past the credential's own expires_at (its
 * status flips then). Correctness across instances does not rest on the
 * TTL: every committed change of a credentials row NOTIFYs its id
 * (sql/0003-credential-notify.sql) and the vault's listener forgets it;
 * the vault uses the cache only while that listener is connected and its
 * heartbeat is recent, and a change made through this process forgets
 * the entry itself after its commit.
 *
 * Races: take hv_credcache_gen() of the id before reading its row from
 * the database; hv_credcache_put() drops the row when a forget of that id
 * (or of another id of the same lock stripe) or a clear happened since,
 * so a row read before a change can never be stored after the change was
 * forgotten.
 *
 * Thread-safety: every function is thread-safe.
 */
#ifndef HV_CREDCACHE_H
#define HV_CREDCACHE_H

#include <libpq-fe.h>
#include <stdint.h>

#include "err.h"

struct hv_credcache;

/* max_entries 0: *out = NULL (every function accepts a NULL cache). */
enum hv_rc hv_credcache_new(unsigned int max_entries, unsigned int ttl_ms,
    struct hv_credcache **out, struct hv_err *err);
void hv_credcache_free(struct hv_credcache **c);

/* The current generation of id's stripe; take it before reading the row. */
uint64_t hv_credcache_gen(struct hv_credcache *c, const char *id);

/*
 * A new PGresult (one row, text columns, PQclear it) holding the cached
 * row of id (canonical lowercase uuid), or NULL on a miss.
 */
PGresult *hv_credcache_get(struct hv_credcache *c, const char *id);

/*
 * Remember row 0 of r for id, until ttl_ms from now (or up to half of it
 * sooner, spread over the entries) or until_us (realtime
 * microseconds; 0 = none), whichever is first, unless a forget of its
 * stripe or a clear happened since gen (hv_credcache_gen of the same id).
 * Rows larger than a few KiB are not kept.
 */
void hv_credcache_put(struct hv_credcache *c, const char *id, const PGresult *r,
    int64_t until_us, uint64_t gen);

/* Drop the entry of id; bumps the generation of its stripe. */
void hv_credcache_forget(struct hv_credcache *c, const char *id);
/* Drop everything; bumps every generation. */
void hv_credcache_clear(struct hv_credcache *c);

struct hv_credcache_stats {
	unsigned long hits, misses, stored, forgotten;
	unsigned int entries, capacity;
};
void hv_credcache_stats(struct hv_credcache *c, struct hv_credcache_stats *st);

#endif
