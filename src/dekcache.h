/*
 * dekcache: a bounded cache of unwrapped data keys (DEKs), so that a hot
 * credential does not cost a key store round trip on every read
 * (SPEC section 1: "Any DEK cache is bounded, time-limited, and in locked
 * memory"; docs/performance.md explains the reasoning).
 *
 * Bounds: at most max_entries DEKs; an entry lives at most ttl_ms after
 * the key store unwrapped it, and serves at most max_uses hits (0: no
 * limit); when full, the least recently used entry is evicted. DEK bytes
 * live only in one struct hv_secret (locked, MADV_DONTDUMP, wiped on
 * free); a slot is wiped as soon as its entry is dropped.
 *
 * Key: struct hv_dekcache_key is a SHA-256 digest over everything that
 * decides what the key store would return for an unwrap, namely
 * workspace id, credential id, version, KEK version and the wrapped DEK
 * bytes, plus the binary credential id (for hv_dekcache_forget). A DEK
 * never changes for one (credential version, wrapped blob): a re-wrap
 * produces other bytes and so another key, and a row read from the
 * database is always the input. Hence the cache needs no cross-instance
 * invalidation for correctness; forget() on rotate, revoke and delete
 * only shortens how long a no-longer-needed DEK stays in memory.
 *
 * Races with forget(): take hv_dekcache_gen() before reading the wrapped
 * DEK from the database and pass it to hv_dekcache_put(); a put whose
 * generation is older than the last forget() is dropped, so a DEK read
 * just before a delete committed is never cached after the delete.
 *
 * A NULL cache (max_entries 0) is valid everywhere: every get misses and
 * every put is dropped, i.e. every unwrap goes to the key store.
 *
 * Thread-safety: every function is thread-safe (one mutex; the work done
 * under it is a hash lookup and a 32-byte copy).
 */
#ifndef HV_DEKCACHE_H
#define HV_DEKCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "mem.h"

#define HV_DEKCACHE_DEK_LEN 32
/* Largest accepted max_entries (32 MiB of locked DEK slots). */
#define HV_DEKCACHE_MAX_ENTRIES (1u << 20)

struct hv_dekcache;

struct hv_dekcache_key {
	uint8_t digest[32]; /* SHA-256 of the identity, see above */
	uint8_t cred[16];   /* binary credential id */
};

struct hv_dekcache_stats {
	unsigned long hits;
	unsigned long misses;
	unsigned long expired;   /* dropped at lookup: older than ttl */
	unsigned long used_up;   /* dropped after max_uses hits */
	unsigned long evicted;   /* dropped for room (least recently used) */
	unsigned long forgotten; /* dropped by forget() or clear() */
	size_t entries;
	size_t capacity;
};

/*
 * A new cache of max_entries DEKs (0: *out = NULL, the disabled cache).
 * ttl_ms 0 means entries never expire by age (not recommended; the
 * configuration refuses it). HV_E_CONFIG when max_entries exceeds
 * HV_DEKCACHE_MAX_ENTRIES; HV_E_NOMEM. Free with hv_dekcache_free().
 */
enum hv_rc hv_dekcache_new(unsigned int max_entries, unsigned int ttl_ms,
    unsigned int max_uses, struct hv_dekcache **out, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(4)));

/* Wipe every DEK and free; NULL-safe; sets *c to NULL. */
void hv_dekcache_free(struct hv_dekcache **c);

/*
 * The key of the DEK wrapped as `wrapped` (wrapped_len bytes, by KEK
 * kek_version) for version `version` of credential cred_id in workspace
 * ws_id. HV_E_INVALID when an id is not a UUID.
 */
enum hv_rc hv_dekcache_key(const char *ws_id, const char *cred_id,
    uint32_t version, uint32_t kek_version, const uint8_t *wrapped,
    size_t wrapped_len, struct hv_dekcache_key *out, struct hv_err *err)
    __attribute__((warn_unused_result, nonnull(1, 2, 5, 7)));

/* The current generation; take it before reading the wrapped DEK. */
uint64_t hv_dekcache_gen(struct hv_dekcache *c);

/*
 * On a hit: true, and *dek is a new secret holding a copy of the DEK
 * (freed by the caller with hv_secret_free). The entry counts one use and
 * is dropped when that was its last. On a miss (absent, expired, or no
 * memory for the copy): false and *dek untouched.
 */
bool hv_dekcache_get(struct hv_dekcache *c, const struct hv_dekcache_key *k,
    struct hv_secret **dek) __attribute__((nonnull(2, 3)));

/*
 * Cache a copy of dek (HV_DEKCACHE_DEK_LEN bytes, else ignored) under k,
 * unless an entry for k exists or a forget() happened since gen.
 */
void hv_dekcache_put(struct hv_dekcache *c, const struct hv_dekcache_key *k,
    const struct hv_secret *dek, uint64_t gen) __attribute__((nonnull(2, 3)));

/* Drop every DEK of credential cred_id (any version); bumps the gen. */
void hv_dekcache_forget(struct hv_dekcache *c, const char *cred_id);

/* Drop everything; bumps the generation. */
void hv_dekcache_clear(struct hv_dekcache *c);

/* Counters since creation; all zero for the NULL cache. */
void hv_dekcache_stats(struct hv_dekcache *c, struct hv_dekcache_stats *st)
    __attribute__((nonnull(2)));

#endif
