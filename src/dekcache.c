/*
 * dekcache: the bounded DEK cache (contract in dekcache.h, reasoning in
 * docs/performance.md).
 *
 * Layout: a fixed array of entries (digest, credential id, birth time,
 * uses, links), a power-of-two bucket array of chain heads (two buckets
 * per entry, so chains stay short), a doubly linked recency list for
 * eviction, and one locked secret holding max_entries 32-byte DEK slots,
 * slot i belonging to entry i. Nothing is allocated after creation, so a
 * lookup or insert never fails for memory except the caller's copy.
 */
#include "dekcache.h"

#include <pthread.h>
#include <string.h>

#include "clock.h"
#include "digest.h"
#include "hsm.h"
#include "uuid.h"

#define NIL    (-1)
#define DOMAIN "hsmvault/dekcache/v1"

struct entry {
	uint8_t digest[32];
	uint8_t cred[16];
	uint64_t born_ms;
	uint32_t uses;
	int32_t hnext;        /* bucket chain, or free list */
	int32_t newer, older; /* recency list */
	bool used;
};

struct hv_dekcache {
	pthread_mutex_t mu;
	unsigned int cap, ttl_ms, max_uses;
	uint32_t mask; /* buckets - 1 */
	struct entry *e;
	int32_t *bucket;
	int32_t free_head;
	int32_t newest, oldest;
	size_t n;
	uint64_t gen;
	struct hv_secret *keys; /* cap * 32 bytes, locked */
	struct hv_dekcache_stats st;
};

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

enum hv_rc
hv_dekcache_new(unsigned int max_entries, unsigned int ttl_ms,
    unsigned int max_uses, struct hv_dekcache **out, struct hv_err *err)
{
	struct hv_dekcache *c;
	uint32_t nb = 1;
	unsigned int i;

	*out = NULL;
	if (max_entries == 0)
		return HV_OK;
	if (max_entries > HV_DEKCACHE_MAX_ENTRIES)
		return hv_err_set(err, HV_E_CONFIG,
		    "dek_cache_size: at most "
		    "%u entries",
		    HV_DEKCACHE_MAX_ENTRIES);
	while (nb < 2u * max_entries)
		nb <<= 1;
	c = hv_calloc(1, sizeof(*c));
	if (c == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	c->e = hv_calloc(max_entries, sizeof(*c->e));
	c->bucket = hv_calloc(nb, sizeof(*c->bucket));
	c->keys = hv_secret_new((size_t)max_entries * HV_DEKCACHE_DEK_LEN);
	if (c->e == NULL || c->bucket == NULL || c->keys == NULL) {
		hv_free(c->e);
		hv_free(c->bucket);
		hv_secret_free(&c->keys);
		hv_free(c);
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	}
	pthread_mutex_init(&c->mu, NULL);
	c->cap = max_entries;
	c->ttl_ms = ttl_ms;
	c->max_uses = max_uses;
	c->mask = nb - 1;
	for (i = 0; i < nb; i++)
		c->bucket[i] = NIL;
	for (i = 0; i < max_entries; i++)
		c->e[i].hnext = i + 1 < max_entries ? (int32_t)i + 1 : NIL;
	c->free_head = 0;
	c->newest = c->oldest = NIL;
	c->st.capacity = max_entries;
	*out = c;
	return HV_OK;
}

void
hv_dekcache_free(struct hv_dekcache **cp)
{
	struct hv_dekcache *c;

	if (cp == NULL || *cp == NULL)
		return;
	c = *cp;
	hv_secret_free(&c->keys); /* wipes every slot */
	hv_free_wipe(c->e, (size_t)c->cap * sizeof(*c->e));
	hv_free(c->bucket);
	pthread_mutex_destroy(&c->mu);
	hv_free(c);
	*cp = NULL;
}

enum hv_rc
hv_dekcache_key(const char *ws_id, const char *cred_id, uint32_t version,
    uint32_t kek_version, const uint8_t *wrapped, size_t wrapped_len,
    struct hv_dekcache_key *out, struct hv_err *err)
{
	/* DOMAIN with its NUL || ws || cred || version || kek || len || blob */
	uint8_t m[sizeof(DOMAIN) + 2 * HV_UUID_LEN + 12 + HV_WRAPPED_MAX];
	size_t o = sizeof(DOMAIN);

	if (wrapped_len > HV_WRAPPED_MAX)
		return hv_err_set(err, HV_E_INVALID,
		    "dek cache: wrapped dek "
		    "too long");
	memcpy(m, DOMAIN, sizeof(DOMAIN));
	if (!hv_uuid_parse(ws_id, m + o) ||
	    !hv_uuid_parse(cred_id, m + o + HV_UUID_LEN))
		return hv_err_set(err, HV_E_INVALID, "dek cache: bad id");
	memcpy(out->cred, m + o + HV_UUID_LEN, sizeof(out->cred));
	o += 2 * HV_UUID_LEN;
	put32(m + o, version);
	put32(m + o + 4, kek_version);
	put32(m + o + 8, (uint32_t)wrapped_len);
	o += 12;
	memcpy(m + o, wrapped, wrapped_len);
	if (!hv_sha256(m, o + wrapped_len, out->digest))
		return hv_err_set(
		    err, HV_E_INTERNAL, "dek cache: sha-256 failed");
	return HV_OK;
}

uint64_t
hv_dekcache_gen(struct hv_dekcache *c)
{
	uint64_t g;

	if (c == NULL)
		return 0;
	pthread_mutex_lock(&c->mu);
	g = c->gen;
	pthread_mutex_unlock(&c->mu);
	return g;
}

static uint32_t
bucket_of(const struct hv_dekcache *c, const uint8_t digest[32])
{
	uint32_t h;

	memcpy(&h, digest, sizeof(h));
	return h & c->mask;
}

static uint8_t *
slot(struct hv_dekcache *c, int32_t i)
{
	return c->keys->buf + (size_t)i * HV_DEKCACHE_DEK_LEN;
}

/* Recency list: unlink i. */
static void
lru_unlink(struct hv_dekcache *c, int32_t i)
{
	struct entry *e = &c->e[i];

	if (e->newer != NIL)
		c->e[e->newer].older = e->older;
	else
		c->newest = e->older;
	if (e->older != NIL)
		c->e[e->older].newer = e->newer;
	else
		c->oldest = e->newer;
	e->newer = e->older = NIL;
}

static void
lru_push(struct hv_dekcache *c, int32_t i)
{
	struct entry *e = &c->e[i];

	e->newer = NIL;
	e->older = c->newest;
	if (c->newest != NIL)
		c->e[c->newest].newer = i;
	c->newest = i;
	if (c->oldest == NIL)
		c->oldest = i;
}

/* Drop entry i (under mu): unlink, wipe its DEK, return it to the pool. */
static void
drop(struct hv_dekcache *c, int32_t i)
{
	struct entry *e = &c->e[i];
	int32_t *pp = &c->bucket[bucket_of(c, e->digest)];

	while (*pp != NIL && *pp != i)
		pp = &c->e[*pp].hnext;
	if (*pp == i)
		*pp = e->hnext;
	lru_unlink(c, i);
	hv_mem_zero(slot(c, i), HV_DEKCACHE_DEK_LEN);
	hv_mem_zero(e, sizeof(*e));
	e->newer = e->older = NIL;
	e->hnext = c->free_head;
	c->free_head = i;
	c->n--;
}

static int32_t
find(struct hv_dekcache *c, const struct hv_dekcache_key *k)
{
	int32_t i = c->bucket[bucket_of(c, k->digest)];

	while (i != NIL) {
		if (hv_ct_equal(c->e[i].digest, k->digest, 32))
			return i;
		i = c->e[i].hnext;
	}
	return NIL;
}

static bool
expired(const struct hv_dekcache *c, const struct entry *e, uint64_t now)
{
	return c->ttl_ms != 0 && now - e->born_ms >= c->ttl_ms;
}

bool
hv_dekcache_get(struct hv_dekcache *c, const struct hv_dekcache_key *k,
    struct hv_secret **dek)
{
	struct hv_secret *copy;
	uint64_t now;
	int32_t i;

	if (c == NULL)
		return false;
	/* allocated outside the lock; wiped and freed again on a miss */
	copy = hv_secret_new(HV_DEKCACHE_DEK_LEN);
	if (copy == NULL)
		return false;
	now = hv_mono_ms();
	pthread_mutex_lock(&c->mu);
	i = find(c, k);
	if (i != NIL && expired(c, &c->e[i], now)) {
		drop(c, i);
		c->st.expired++;
		i = NIL;
	}
	if (i == NIL) {
		c->st.misses++;
		pthread_mutex_unlock(&c->mu);
		hv_secret_free(&copy);
		return false;
	}
	memcpy(copy->buf, slot(c, i), HV_DEKCACHE_DEK_LEN);
	c->st.hits++;
	c->e[i].uses++;
	if (c->max_uses != 0 && c->e[i].uses >= c->max_uses) {
		drop(c, i);
		c->st.used_up++;
	} else {
		lru_unlink(c, i);
		lru_push(c, i);
	}
	pthread_mutex_unlock(&c->mu);
	*dek = copy;
	return true;
}

void
hv_dekcache_put(struct hv_dekcache *c, const struct hv_dekcache_key *k,
    const struct hv_secret *dek, uint64_t gen)
{
	struct entry *e;
	int32_t i;
	uint32_t b;

	if (c == NULL || dek->len != HV_DEKCACHE_DEK_LEN)
		return;
	pthread_mutex_lock(&c->mu);
	if (gen != c->gen || find(c, k) != NIL)
		goto out;
	if (c->free_head == NIL) {
		drop(c, c->oldest);
		c->st.evicted++;
	}
	i = c->free_head;
	e = &c->e[i];
	c->free_head = e->hnext;
	memcpy(e->digest, k->digest, sizeof(e->digest));
	memcpy(e->cred, k->cred, sizeof(e->cred));
	e->born_ms = hv_mono_ms();
	e->uses = 0;
	e->used = true;
	b = bucket_of(c, e->digest);
	e->hnext = c->bucket[b];
	c->bucket[b] = i;
	lru_push(c, i);
	memcpy(slot(c, i), dek->buf, HV_DEKCACHE_DEK_LEN);
	c->n++;
out:
	pthread_mutex_unlock(&c->mu);
}

void
hv_dekcache_forget(struct hv_dekcache *c, const char *cred_id)
{
	uint8_t cred[HV_UUID_LEN];
	bool all;
	unsigned int i;

	if (c == NULL)
		return;
	/* an unparsable id cannot match; drop everything to be safe */
	all = cred_id == NULL || !hv_uuid_parse(cred_id, cred);
	pthread_mutex_lock(&c->mu);
	c->gen++;
	for (i = 0; i < c->cap; i++) {
		if (!c->e[i].used)
			continue;
		if (all || memcmp(c->e[i].cred, cred, sizeof(cred)) == 0) {
			drop(c, (int32_t)i);
			c->st.forgotten++;
		}
	}
	pthread_mutex_unlock(&c->mu);
}

void
hv_dekcache_clear(struct hv_dekcache *c)
{
	hv_dekcache_forget(c, NULL);
}

void
hv_dekcache_stats(struct hv_dekcache *c, struct hv_dekcache_stats *st)
{
	if (c == NULL) {
		memset(st, 0, sizeof(*st));
		return;
	}
	pthread_mutex_lock(&c->mu);
	*st = c->st;
	st->entries = c->n;
	st->capacity = c->cap;
	pthread_mutex_unlock(&c->mu);
}
