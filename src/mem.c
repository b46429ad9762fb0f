/*
 * mem: secret memory. Each secret is its own anonymous mapping so that
 * mlock and MADV_DONTDUMP apply to it alone and never to neighbouring heap
 * objects; a DEK cache of a few thousand entries stays well inside the
 * default RLIMIT_MEMLOCK only if the caller bounds it, which the cache does.
 */
#include "mem.h"
#include "log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static atomic_long fail_countdown;
static atomic_bool mlock_warned;

static bool
fault_fires(void)
{
	long v = atomic_load(&fail_countdown);

	while (v > 0) {
		if (atomic_compare_exchange_weak(&fail_countdown, &v, v - 1))
			return v == 1;
	}
	return false;
}

void
hv_mem_fail_after(long n)
{
	atomic_store(&fail_countdown, n < 0 ? 0 : n);
}

void
hv_mem_zero(void *p, size_t n)
{
	if (p != NULL && n > 0)
		explicit_bzero(p, n);
}

bool
hv_ct_equal(const void *a, const void *b, size_t n)
{
	const volatile unsigned char *x = a;
	const volatile unsigned char *y = b;
	unsigned char d = 0;
	size_t i;

	for (i = 0; i < n; i++)
		d |= (unsigned char)(x[i] ^ y[i]);
	return d == 0;
}

/*
 * Locked slabs. Each size class keeps a free list of slots carved from
 * 64 KiB mappings that are locked and excluded from core dumps once, at
 * creation. A freed slot is wiped before it goes back on its list. Slabs
 * are never unmapped: their number is bounded by the peak of live secrets.
 */
#define SLAB_BYTES (64 * 1024)

static const size_t class_size[] = {64, 256, 1024, 4096};
#define NCLASS (sizeof(class_size) / sizeof(class_size[0]))

struct slot {
	struct slot *next;
};

static struct slot *free_list[NCLASS];
static pthread_mutex_t slab_lock = PTHREAD_MUTEX_INITIALIZER;

static void *
locked_map(size_t cap)
{
	void *m = mmap(NULL, cap, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return NULL;
	(void)madvise(m, cap, MADV_DONTDUMP);
	if (mlock(m, cap) != 0 && !atomic_exchange(&mlock_warned, true))
		hv_log_warn("mlock failed; secrets may be swapped "
		            "(raise RLIMIT_MEMLOCK)");
	return m;
}

static void *
slot_get(int cls)
{
	struct slot *sl;
	size_t i, n;
	unsigned char *m;

	pthread_mutex_lock(&slab_lock);
	if (free_list[cls] == NULL) {
		m = locked_map(SLAB_BYTES);
		if (m == NULL) {
			pthread_mutex_unlock(&slab_lock);
			return NULL;
		}
		n = SLAB_BYTES / class_size[cls];
		for (i = 0; i < n; i++) {
			sl = (struct slot *)(void *)(m + i * class_size[cls]);
			sl->next = free_list[cls];
			free_list[cls] = sl;
		}
	}
	sl = free_list[cls];
	free_list[cls] = sl->next;
	pthread_mutex_unlock(&slab_lock);
	explicit_bzero(sl, class_size[cls]);
	return sl;
}

static void
slot_put(int cls, void *p)
{
	struct slot *sl = p;

	explicit_bzero(p, class_size[cls]);
	pthread_mutex_lock(&slab_lock);
	sl->next = free_list[cls];
	free_list[cls] = sl;
	pthread_mutex_unlock(&slab_lock);
}

struct hv_secret *
hv_secret_new(size_t len)
{
	struct hv_secret *s;
	size_t page, cap, i;
	void *m = NULL;
	int cls = -1;

	if (fault_fires())
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	for (i = 0; i < NCLASS; i++) {
		if (len + 1 <= class_size[i]) {
			cls = (int)i;
			break;
		}
	}
	if (cls >= 0) {
		cap = class_size[cls];
		m = slot_get(cls);
	} else {
		page = (size_t)sysconf(_SC_PAGESIZE);
		cap = (len + 1 + page - 1) / page * page; /* room for a NUL */
		m = locked_map(cap);
	}
	if (m == NULL) {
		free(s);
		return NULL;
	}
	s->buf = m;
	s->cap = cap;
	s->len = len;
	s->cls = cls;
	return s;
}

struct hv_secret *
hv_secret_from(const void *p, size_t len)
{
	struct hv_secret *s = hv_secret_new(len);

	if (s != NULL && len > 0)
		memcpy(s->buf, p, len);
	return s;
}

void
hv_secret_free(struct hv_secret **sp)
{
	struct hv_secret *s;

	if (sp == NULL || *sp == NULL)
		return;
	s = *sp;
	if (s->cls >= 0) {
		slot_put(s->cls, s->buf);
	} else {
		explicit_bzero(s->buf, s->cap);
		(void)munlock(s->buf, s->cap);
		(void)munmap(s->buf, s->cap);
	}
	explicit_bzero(s, sizeof(*s));
	free(s);
	*sp = NULL;
}

void *
hv_malloc(size_t n)
{
	if (fault_fires())
		return NULL;
	return malloc(n == 0 ? 1 : n);
}

void *
hv_calloc(size_t n, size_t sz)
{
	if (fault_fires())
		return NULL;
	return calloc(n == 0 ? 1 : n, sz == 0 ? 1 : sz);
}

const char *
hv_strput(char *buf, size_t *off, const char *src)
{
	size_t n;
	char *d;

	if (src == NULL)
		return NULL;
	n = strlen(src) + 1;
	d = buf + *off;
	memcpy(d, src, n);
	*off += n;
	return d;
}

char *
hv_strdup(const char *s)
{
	size_t n;
	char *d;

	if (s == NULL)
		return NULL;
	n = strlen(s) + 1;
	d = hv_malloc(n);
	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

void
hv_free(void *p)
{
	free(p);
}

void
hv_free_wipe(void *p, size_t n)
{
	if (p == NULL)
		return;
	explicit_bzero(p, n);
	free(p);
}

/*
 * jansson's allocator: we prefix each block with its size so that the free
 * function can wipe it. jansson holds request bodies and secret fields.
 */
static void *
json_zalloc(size_t n)
{
	size_t *p;

	if (fault_fires())
		return NULL;
	p = malloc(sizeof(size_t) * 2 + n);
	if (p == NULL)
		return NULL;
	p[0] = n;
	return p + 2;
}

static void
json_zfree(void *ptr)
{
	size_t *p;

	if (ptr == NULL)
		return;
	p = (size_t *)ptr - 2;
	explicit_bzero(ptr, p[0]);
	free(p);
}

void
hv_mem_json_init(void)
{
	json_set_alloc_funcs(json_zalloc, json_zfree);
}

int
hv_mem_harden_process(void)
{
	struct rlimit rl = {0, 0};

	if (setrlimit(RLIMIT_CORE, &rl) != 0)
		return -1;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return -1;
	return 0;
}
