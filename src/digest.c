/* digest: SHA-256 with a digest fetched once (digest.h). */
#include "digest.h"

#include <openssl/evp.h>
#include <pthread.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256;

static void
init_once(void)
{
	sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

bool
hv_sha256(const void *p, size_t n, uint8_t out[HV_SHA256_LEN])
{
	unsigned int len = 0;

	pthread_once(&once, init_once);
	return sha256 != NULL &&
	    EVP_Digest(p, n, out, &len, sha256, NULL) == 1 &&
	    len == HV_SHA256_LEN;
}
