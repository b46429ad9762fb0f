/*
 * uuid: random v4 ids and the strict canonical-form validator.
 */
#include "uuid.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <string.h>

static const char hexdig[] = "0123456789abcdef";

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool
is_hyphen_pos(size_t i)
{
	return i == 8 || i == 13 || i == 18 || i == 23;
}

/*
 * Random bytes for ids come from OpenSSL's DRBG 16 ids at a time: one
 * RAND_bytes call costs about as much as a request's id is worth (locks, a
 * fork check with a system call). Ids are not secrets; the pool is per
 * thread. A forked child empties the pool of its one thread, so that it
 * never hands out its parent's ids (OpenSSL's own fork check is skipped).
 */
#define POOL_IDS 16
static _Thread_local struct {
	uint8_t b[POOL_IDS * HV_UUID_LEN];
	unsigned int left;
} pool;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void
pool_reset(void)
{
	memset(pool.b, 0, sizeof(pool.b));
	pool.left = 0;
}

static void
pool_init(void)
{
	(void)pthread_atfork(NULL, NULL, pool_reset);
}

enum hv_rc
hv_uuid_new(char out[HV_UUID_STR])
{
	uint8_t *b;

	if (pool.left == 0) {
		pthread_once(&pool_once, pool_init);
		if (RAND_bytes(pool.b, (int)sizeof(pool.b)) != 1) {
			out[0] = '\0';
			return HV_E_INTERNAL;
		}
		pool.left = POOL_IDS;
	}
	b = pool.b + (--pool.left) * HV_UUID_LEN;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	hv_uuid_format(b, out);
	memset(b, 0, HV_UUID_LEN); /* each id handed out once */
	return HV_OK;
}

bool
hv_uuid_valid(const char *s)
{
	size_t i;

	if (s == NULL)
		return false;
	for (i = 0; i < 36; i++) {
		if (s[i] == '\0')
			return false;
		if (is_hyphen_pos(i)) {
			if (s[i] != '-')
				return false;
		} else if (hexval(s[i]) < 0) {
			return false;
		}
	}
	return s[36] == '\0';
}

bool
hv_uuid_parse(const char *s, uint8_t out[HV_UUID_LEN])
{
	uint8_t b[HV_UUID_LEN];
	size_t i, j = 0;

	if (!hv_uuid_valid(s))
		return false;
	for (i = 0; i < 36; i++) {
		if (is_hyphen_pos(i))
			continue;
		b[j / 2] = (uint8_t)(j % 2 == 0 ? hexval(s[i]) << 4
		                                : b[j / 2] | hexval(s[i]));
		j++;
	}
	memcpy(out, b, sizeof(b));
	return true;
}

void
hv_uuid_format(const uint8_t in[HV_UUID_LEN], char out[HV_UUID_STR])
{
	size_t i, o = 0;

	for (i = 0; i < HV_UUID_LEN; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hexdig[in[i] >> 4];
		out[o++] = hexdig[in[i] & 0x0f];
	}
	out[o] = '\0';
}

bool
hv_uuid_normalize(const char *s, char out[HV_UUID_STR])
{
	uint8_t b[HV_UUID_LEN];

	if (!hv_uuid_parse(s, b)) {
		out[0] = '\0';
		return false;
	}
	hv_uuid_format(b, out);
	return true;
}
