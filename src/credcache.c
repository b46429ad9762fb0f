/*
 * credcache: the credential metadata cache (contract in credcache.h).
 *
 * Layout: a power-of-two array of sets of `ways` entries (WAYS, or fewer
 * for a cache smaller than one set); an id hashes to one set and lives in
 * one of its ways (a full set drops its oldest entry). Each entry's hash
 * is also kept in a separate array, a set's 16 in one cache line, so a
 * lookup compares ids only where the hashes match. Sixteen ways, not
 * four: 10,000 random ids in 16,384 four-way entries leave 6.4% of them
 * without a slot (sets of more than four), 0.45% with sixteen. An entry's
 * row is one allocation: the column count, then per column a 32-bit
 * length (NULL_LEN for SQL NULL) and the bytes. Sets are
 * guarded by STRIPES mutexes so that readers of different sets never
 * wait for each other. Each stripe has its own generation (an atomic
 * counter): a forget bumps only its id's stripe, so it refuses the puts
 * of the ids that share that stripe, not every put in flight.
 */
#include "credcache.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "mem.h"
#include "uuid.h"

#define WAYS     16
#define STRIPES  64
#define NULL_LEN UINT32_MAX
/* A row above this is read from the database every time. */
#define ROW_MAX   4096
#define NCOLS_MAX 64

struct entry {
	char id[HV_UUID_STR];
	uint64_t born_ms, until_ms;
	uint8_t *row; /* NULL: free */
	size_t len;
};

struct hv_credcache {
	pthread_mutex_t mu[STRIPES];
	unsigned int ttl_ms;
	unsigned int ways;     /* entries per set: WAYS, or fewer */
	uint32_t mask;         /* sets - 1 */
	struct entry *e;       /* [sets * ways] */
	uint32_t *hash;        /* [sets * ways]: hash_id of e's id */
	uint64_t gen[STRIPES]; /* atomic */
	/* statistics: atomic */
	unsigned long hits, misses, stored, forgotten;
	unsigned int entries;
};

/* FNV-1a over the id's characters (ids are random uuids). */
static uint32_t
hash_id(const char *id)
{
	uint32_t h = 2166136261u;

	for (; *id != '\0'; id++)
		h = (h ^ (uint8_t)*id) * 16777619u;
	return h ^ (h >> 15);
}

/*
 * Between half of ttl and all of it, spread by seed. Rows stored together
 * (the first reads after a start, or the reloads after they expire) would
 * otherwise expire together, every ttl, and send all their reads to the
 * database in the same second: measured as 10,000 extra SELECTs in 1-2 s
 * every cycle with the benchmark's 10,000 credentials.
 */
static uint64_t
lifetime_ms(unsigned int ttl, uint32_t seed)
{
	uint32_t x = seed * 0x9e3779b9u;

	x ^= x >> 16;
	x *= 0x85ebca6bu;
	x ^= x >> 13;
	return ttl - (uint64_t)(ttl / 2) * (x & 0xffff) / 0x10000;
}

enum hv_rc
hv_credcache_new(unsigned int max_entries, unsigned int ttl_ms,
    struct hv_credcache **out, struct hv_err *err)
{
	struct hv_credcache *c;
	uint32_t sets = 1;
	unsigned int i, ways = WAYS;

	*out = NULL;
	if (max_entries == 0)
		return HV_OK;
	if (max_entries > (1u << 22))
		return hv_err_set(err, HV_E_CONFIG,
		    "cred_cache_size: at most %u entries", 1u << 22);
	if (ttl_ms == 0)
		return hv_err_set(err, HV_E_CONFIG,
		    "cred_cache_ttl_ms must be above 0 while cred_cache_size "
		    "is (or set cred_cache_size to 0)");
	if (max_entries < WAYS)
		ways = max_entries;
	while ((uint64_t)sets * ways < max_entries)
		sets <<= 1;
	c = hv_calloc(1, sizeof(*c));
	if (c == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	c->e = hv_calloc((size_t)sets * ways, sizeof(*c->e));
	c->hash = hv_calloc((size_t)sets * ways, sizeof(*c->hash));
	if (c->e == NULL || c->hash == NULL) {
		hv_free(c->e);
		hv_free(c->hash);
		hv_free(c);
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	}
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_init(&c->mu[i], NULL);
	c->mask = sets - 1;
	c->ways = ways;
	c->ttl_ms = ttl_ms;
	*out = c;
	return HV_OK;
}

static void
entry_drop(struct hv_credcache *c, struct entry *e)
{
	if (e == NULL || e->row == NULL)
		return;
	hv_free(e->row);
	e->row = NULL;
	e->id[0] = '\0';
	__atomic_fetch_sub(&c->entries, 1, __ATOMIC_RELAXED);
}

void
hv_credcache_free(struct hv_credcache **cp)
{
	struct hv_credcache *c = *cp;
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < ((size_t)c->mask + 1) * c->ways; i++)
		entry_drop(c, &c->e[i]);
	for (i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&c->mu[i]);
	hv_free(c->e);
	hv_free(c->hash);
	hv_free(c);
	*cp = NULL;
}

/* The index of id's set's first entry; its hash in *h. */
static size_t
set_of(struct hv_credcache *c, const char *id, uint32_t *h,
    pthread_mutex_t **mu, uint64_t **gen)
{
	uint32_t s;

	*h = hash_id(id);
	s = *h & c->mask;
	*mu = &c->mu[s % STRIPES];
	if (gen != NULL)
		*gen = &c->gen[s % STRIPES];
	return (size_t)s * c->ways;
}

/* The entry of id in the set at base, or NULL (lock held). */
static struct entry *
find(struct hv_credcache *c, size_t base, uint32_t h, const char *id)
{
	unsigned int w;

	for (w = 0; w < c->ways; w++) {
		struct entry *e = &c->e[base + w];

		if (c->hash[base + w] == h && e->row != NULL &&
		    strcmp(e->id, id) == 0)
			return e;
	}
	return NULL;
}

uint64_t
hv_credcache_gen(struct hv_credcache *c, const char *id)
{
	pthread_mutex_t *mu;
	uint64_t *gen;
	uint32_t h;

	if (c == NULL)
		return 0;
	(void)set_of(c, id, &h, &mu, &gen);
	return __atomic_load_n(gen, __ATOMIC_ACQUIRE);
}

/* A free way of the set at base, else its oldest entry (lock held). */
static struct entry *
victim(struct hv_credcache *c, size_t base)
{
	struct entry *old = &c->e[base];
	unsigned int w;

	for (w = 0; w < c->ways; w++) {
		struct entry *e = &c->e[base + w];

		if (e->row == NULL)
			return e;
		if (e->born_ms < old->born_ms)
			old = e;
	}
	return old;
}

/* A one-row result of the serialized row (NULL: malformed or no memory). */
static PGresult *
row_result(const uint8_t *row, size_t len)
{
	PGresAttDesc att[NCOLS_MAX];
	PGresult *r;
	uint32_t n, i, l;
	size_t o = sizeof(uint32_t);

	if (len < sizeof(uint32_t))
		return NULL;
	memcpy(&n, row, sizeof(n));
	if (n == 0 || n > NCOLS_MAX)
		return NULL;
	r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	if (r == NULL)
		return NULL;
	memset(att, 0, sizeof(att));
	for (i = 0; i < n; i++)
		att[i].name = (char *)"";
	if (!PQsetResultAttrs(r, (int)n, att))
		goto bad;
	for (i = 0; i < n; i++) {
		if (len - o < sizeof(l))
			goto bad;
		memcpy(&l, row + o, sizeof(l));
		o += sizeof(l);
		if (l == NULL_LEN) {
			if (!PQsetvalue(r, 0, (int)i, NULL, -1))
				goto bad;
			continue;
		}
		if (l > len - o ||
		    !PQsetvalue(r, 0, (int)i, (char *)(row + o), (int)l))
			goto bad;
		o += l;
	}
	return r;
bad:
	PQclear(r);
	return NULL;
}

PGresult *
hv_credcache_get(struct hv_credcache *c, const char *id)
{
	pthread_mutex_t *mu;
	struct entry *e;
	PGresult *r = NULL;
	uint64_t now;
	uint32_t h;
	size_t base;

	if (c == NULL)
		return NULL;
	base = set_of(c, id, &h, &mu, NULL);
	now = hv_mono_ms();
	pthread_mutex_lock(mu);
	e = find(c, base, h, id);
	if (e != NULL) {
		if (now >= e->until_ms)
			entry_drop(c, e);
		else
			r = row_result(e->row, e->len);
	}
	pthread_mutex_unlock(mu);
	__atomic_fetch_add(
	    r != NULL ? &c->hits : &c->misses, 1, __ATOMIC_RELAXED);
	return r;
}

/* Row 0 of r serialized (NULL: too large, odd or no memory). */
static uint8_t *
row_bytes(const PGresult *r, size_t *len)
{
	uint32_t n, i, l;
	size_t total = sizeof(uint32_t), o;
	uint8_t *b;

	if (PQntuples(r) < 1 || PQnfields(r) < 1 || PQnfields(r) > NCOLS_MAX)
		return NULL;
	n = (uint32_t)PQnfields(r);
	for (i = 0; i < n; i++) {
		if (PQfformat(r, (int)i) != 0)
			return NULL;
		total += sizeof(uint32_t);
		if (!PQgetisnull(r, 0, (int)i))
			total += (size_t)PQgetlength(r, 0, (int)i);
		if (total > ROW_MAX)
			return NULL;
	}
	b = hv_malloc(total);
	if (b == NULL)
		return NULL;
	memcpy(b, &n, sizeof(n));
	o = sizeof(n);
	for (i = 0; i < n; i++) {
		if (PQgetisnull(r, 0, (int)i)) {
			l = NULL_LEN;
			memcpy(b + o, &l, sizeof(l));
			o += sizeof(l);
			continue;
		}
		l = (uint32_t)PQgetlength(r, 0, (int)i);
		memcpy(b + o, &l, sizeof(l));
		o += sizeof(l);
		memcpy(b + o, PQgetvalue(r, 0, (int)i), l);
		o += l;
	}
	*len = total;
	return b;
}

void
hv_credcache_put(struct hv_credcache *c, const char *id, const PGresult *r,
    int64_t until_us, uint64_t gen)
{
	pthread_mutex_t *mu;
	struct entry *slot;
	uint64_t now, life, *sgen;
	uint8_t *row;
	size_t len = 0, base;
	uint32_t h;

	if (c == NULL || !hv_uuid_valid(id)) /* 36 characters: fits id[] */
		return;
	base = set_of(c, id, &h, &mu, &sgen);
	now = hv_mono_ms();
	life = lifetime_ms(c->ttl_ms, h ^ (uint32_t)now);
	if (until_us != 0) {
		int64_t left = until_us - hv_real_us();

		if (left <= 0)
			return;
		if ((uint64_t)left / 1000u < life)
			life = (uint64_t)left / 1000u;
	}
	row = row_bytes(r, &len);
	if (row == NULL)
		return;
	pthread_mutex_lock(mu);
	/* under the lock: a forget of id takes this lock after its bump */
	if (__atomic_load_n(sgen, __ATOMIC_ACQUIRE) != gen) {
		pthread_mutex_unlock(mu);
		hv_free(row);
		return;
	}
	slot = find(c, base, h, id);
	if (slot == NULL)
		slot = victim(c, base);
	entry_drop(c, slot);
	c->hash[slot - c->e] = h;
	memcpy(slot->id, id, strlen(id) + 1);
	slot->row = row;
	slot->len = len;
	slot->born_ms = now;
	slot->until_ms = now + life;
	__atomic_fetch_add(&c->entries, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(mu);
	__atomic_fetch_add(&c->stored, 1, __ATOMIC_RELAXED);
}

void
hv_credcache_forget(struct hv_credcache *c, const char *id)
{
	pthread_mutex_t *mu;
	uint64_t *sgen;
	uint32_t h;
	size_t base;

	if (c == NULL)
		return;
	base = set_of(c, id, &h, &mu, &sgen);
	/* bump first: a put of id that read its row before now is refused */
	__atomic_fetch_add(sgen, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_lock(mu);
	entry_drop(c, find(c, base, h, id));
	pthread_mutex_unlock(mu);
	__atomic_fetch_add(&c->forgotten, 1, __ATOMIC_RELAXED);
}

void
hv_credcache_clear(struct hv_credcache *c)
{
	size_t s, w;

	if (c == NULL)
		return;
	for (s = 0; s < STRIPES; s++)
		__atomic_fetch_add(&c->gen[s], 1, __ATOMIC_ACQ_REL);
	for (s = 0; s <= c->mask; s++) {
		pthread_mutex_t *mu = &c->mu[s % STRIPES];

		pthread_mutex_lock(mu);
		for (w = 0; w < c->ways; w++)
			entry_drop(c, &c->e[s * c->ways + w]);
		pthread_mutex_unlock(mu);
	}
}

void
hv_credcache_stats(struct hv_credcache *c, struct hv_credcache_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (c == NULL)
		return;
	st->hits = __atomic_load_n(&c->hits, __ATOMIC_RELAXED);
	st->misses = __atomic_load_n(&c->misses, __ATOMIC_RELAXED);
	st->stored = __atomic_load_n(&c->stored, __ATOMIC_RELAXED);
	st->forgotten = __atomic_load_n(&c->forgotten, __ATOMIC_RELAXED);
	st->entries = __atomic_load_n(&c->entries, __ATOMIC_RELAXED);
	st->capacity = (c->mask + 1) * c->ways;
}
