/*
 * mem: locked, zeroizing memory for secrets, constant-time comparison and
 * a fault-injection hook for allocation failure tests.
 *
 * A struct hv_secret holds DEKs, plaintext secret payloads, PINs and API
 * keys. Its buffer is mlock()ed (a failed mlock only warns once) and marked
 * MADV_DONTDUMP; hv_secret_free() wipes it with explicit_bzero before
 * giving it back. Small secrets (up to 4 KiB) come from slots of locked
 * slabs that are reused and never unlocked, because an mmap+mlock+munmap
 * per secret costs ~100 us and would cap DEK unwraps near 10,000/s;
 * larger ones get a mapping of their own. Secrets are never copied into ordinary heap
 * memory except transiently by libraries we do not control (jansson gets a
 * zeroing allocator through hv_mem_json_init()).
 *
 * Thread-safety: all functions are thread-safe. The fault hook is a
 * process-wide atomic counter meant for tests only.
 */
#ifndef HV_MEM_H
#define HV_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hv_secret {
	size_t len;         /* bytes in use */
	size_t cap;         /* bytes usable at buf (slot or mapping) */
	int cls;            /* slab size class, or -1 for its own mapping */
	unsigned char *buf; /* locked, never NULL for a live secret;
				   buf[len] is always 0, so a text secret
				   is a C string */
};

/*
 * A new zero-filled secret of len bytes (len may be 0). Returns NULL when
 * memory is exhausted or the fault hook fires. Free with hv_secret_free().
 */
struct hv_secret *hv_secret_new(size_t len) __attribute__((warn_unused_result));

/* A new secret holding a copy of len bytes at p. NULL on failure. */
struct hv_secret *
hv_secret_from(const void *p, size_t len) __attribute__((warn_unused_result));

/* Wipe, unlock and free *s, then set *s to NULL. NULL-safe. */
void hv_secret_free(struct hv_secret **s);

/* Wipe n bytes at p in a way the compiler cannot elide. NULL-safe. */
void hv_mem_zero(void *p, size_t n);

/*
 * Compare n bytes in time that depends only on n. Returns true when equal.
 * Use for tags, tokens and key hashes; hash variable-length inputs first.
 */
bool hv_ct_equal(const void *a, const void *b, size_t n);

/*
 * malloc/free that count towards the fault hook. hv_free() does not wipe;
 * use hv_free_wipe() for buffers that held anything sensitive.
 */
void *hv_malloc(size_t n) __attribute__((warn_unused_result));
void *hv_calloc(size_t n, size_t sz) __attribute__((warn_unused_result));
char *hv_strdup(const char *s) __attribute__((warn_unused_result));
/*
 * Copy src with its NUL to buf + *off and advance *off past it; returns
 * the copy (NULL for NULL: nothing copied). The caller sized buf.
 */
const char *hv_strput(char *buf, size_t *off, const char *src);
void hv_free(void *p);
void hv_free_wipe(void *p, size_t n);

/*
 * Tests only: make the n-th allocation from now on fail (n = 1 is the next
 * one); n = 0 disables the hook.
 */
void hv_mem_fail_after(long n);

/*
 * Install a zeroing allocator in jansson, so that JSON strings that held a
 * secret are wiped when freed. Call once at start-up, before any thread.
 */
void hv_mem_json_init(void);

/*
 * Process hardening at start-up: no core dumps, no ptrace attach
 * (PR_SET_DUMPABLE 0, RLIMIT_CORE 0). Returns 0 or -1 with errno set.
 */
int hv_mem_harden_process(void);

#endif
