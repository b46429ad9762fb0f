/*
 * tpm: the TPM 2.0 key store backend, through tss2-esys (ESAPI) and the
 * TCTI loader. docs/keystore-tpm.md explains the design; in short:
 *
 *   - a storage primary (ECC P-256, AES-256-CFB, fixed template) under the
 *     owner hierarchy: deterministic from the owner seed, never stored;
 *   - KEK version v: an AES-256-CFB restricted-decrypt storage key created
 *     inside the TPM under the primary (TPM2_Create); only its public and
 *     private blobs (the private part encrypted by the primary) are kept,
 *     in data_dir/tpm-kek-<v>.blob;
 *   - a DEK is wrapped by sealing it as a keyedhash data object under the
 *     KEK (TPM2_Create), whose authValue is SHA-256 of a domain tag, the
 *     KEK version and the AAD. Unwrap is Load + Unseal + FlushContext: the
 *     TPM checks the blob's integrity (parent-derived HMAC) and the
 *     authValue before it releases the DEK;
 *   - the HMAC key: a keyedhash HMAC-SHA256 signing key created inside the
 *     TPM (data_dir/tpm-hmac.blob), used with TPM2_HMAC;
 *   - KEK version states in data_dir/tpm-keys.meta (atomic writes, 0600).
 *
 * Robustness: every Esys_* call goes through ESYS_CALL (asynchronous call
 * with a deadline, retries of RETRY/YIELDED/TESTING, one logging point
 * with Tss2_RC_Decode). A call that finds the connection lost makes run()
 * drop the ESYS and TCTI contexts, reconnect and redo the operation, up to
 * retry_max times; then a circuit breaker fails calls fast for breaker_ms.
 * Only three transient object slots are assumed (no resource manager): a
 * small LRU table of loaded objects flushes what it must.
 *
 * Thread-safety: one mutex serializes everything that touches the ESYS
 * context, the slot table and the metadata.
 */
#include "hsm.h"

#include "../src/clock.h"
#include "../src/log.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#define TPM_SLOTS          3    /* transient objects we may hold */
#define TPM_CMD_TIMEOUT_MS 5000 /* one command, all retries */
#define TPM_POLL_MS        1000 /* one wait inside a command */
#define TPM_WARN_RETRIES   8    /* RETRY/YIELDED/TESTING */
#define TPM_RANDOM_CHUNK   32
#define TPM_HMAC_CHUNK     1024
#define TPM_BLOB_MAX       1024
#define TPM_META_MAX       8192
#define DEFAULT_BREAKER_MS 1000
#define DEFAULT_RETRY_MAX  3

#define META_FILE   "tpm-keys.meta"
#define META_HEAD   "hsmvault-tpm-keys 1"
#define HMAC_FILE   "tpm-hmac.blob"
#define LOCK_FILE   "tpm.lock"
#define KEY_MAGIC   "HVTK" /* key blob file: magic, pub, priv */
#define DEK_MAGIC   "HVT1" /* wrapped DEK: magic, pub, priv */
#define MAGIC_LEN   4
#define AUTH_DOMAIN "hsmvault/tpm/dek-auth/v1"

enum obj_kind {
	OBJ_FREE = 0,
	OBJ_PRIMARY,
	OBJ_HMAC,
	OBJ_KEK,
	OBJ_TEMP, /* a sealed DEK or an HMAC sequence */
};

struct slot {
	enum obj_kind kind;
	uint32_t version; /* OBJ_KEK */
	ESYS_TR h;
	uint64_t used; /* LRU tick */
	bool pinned;   /* in use by the running operation */
};

struct kek {
	uint32_t version;
	bool disabled;
	uint8_t *blob; /* cached file contents, NULL = not read */
	size_t blob_len;
};

struct tpm {
	struct hv_hsm base;
	pthread_mutex_t mu;
	char *tcti_conf; /* NULL = the loader's default */
	char *data_dir;
	unsigned int breaker_ms;
	unsigned int retry_max;

	TSS2_TCTI_CONTEXT *tcti;
	ESYS_CONTEXT *ctx;
	bool lost;           /* set by ESYS_CALL: reconnect */
	uint64_t down_until; /* breaker open until (ms) */
	bool breaker_tripped;
	bool ever_connected;
	unsigned long reconnects;

	struct slot slots[TPM_SLOTS];
	uint64_t tick;
	TPMS_CONTEXT *primary_ctx; /* saved primary, this connection */
	uint16_t hmac_chunk;
	char manufacturer[5];
	char vendor[17];
	uint32_t fw1, fw2;

	/* metadata (data_dir/tpm-keys.meta) */
	struct kek keks[HV_KEK_MAX_VERSIONS];
	size_t n_keks;
	char primary_name[2 * sizeof(TPMU_NAME) + 3];
	bool meta_seen;
	dev_t meta_dev;
	ino_t meta_ino;
	off_t meta_size;
	struct timespec meta_mtime;
	uint8_t *hmac_blob;
	size_t hmac_blob_len;

	/* watchdog for TCP TCTIs (see watchdog_fire) */
	bool wd_running, wd_stop, wd_armed, wd_idle;
	unsigned int wd_port;
	uint64_t wd_deadline;
	pthread_t wd_thread;
	pthread_mutex_t wd_mu;
	pthread_cond_t wd_cv;
};

/* ------------------------------------------------------------------ */
/* Templates. Changing any of them changes the keys: never do that.    */

static const TPM2B_PUBLIC primary_template = {
    .publicArea =
        {
            .type = TPM2_ALG_ECC,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT,
            .parameters.eccDetail =
                {
                    .symmetric =
                        {
                            .algorithm = TPM2_ALG_AES,
                            .keyBits.aes = 256,
                            .mode.aes = TPM2_ALG_CFB,
                        },
                    .scheme = {.scheme = TPM2_ALG_NULL},
                    .curveID = TPM2_ECC_NIST_P256,
                    .kdf = {.scheme = TPM2_ALG_NULL},
                },
            /* A unique value of our own: a key apart from the usual SRK. */
            .unique.ecc =
                {
                    .x = {.size = 8, .buffer = "hsmvault"},
                    .y = {.size = 0},
                },
        },
};

static const TPM2B_PUBLIC kek_template = {
    .publicArea =
        {
            .type = TPM2_ALG_SYMCIPHER,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT,
            .parameters.symDetail.sym =
                {
                    .algorithm = TPM2_ALG_AES,
                    .keyBits.aes = 256,
                    .mode.aes = TPM2_ALG_CFB,
                },
        },
};

static const TPM2B_PUBLIC hmac_template = {
    .publicArea =
        {
            .type = TPM2_ALG_KEYEDHASH,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT,
            .parameters.keyedHashDetail.scheme =
                {
                    .scheme = TPM2_ALG_HMAC,
                    .details.hmac.hashAlg = TPM2_ALG_SHA256,
                },
        },
};

/* A sealed data object: no sign, no decrypt; noDA so that a wrong AAD
 * never feeds the dictionary-attack lockout of the whole TPM. */
#define SEAL_ATTRS                                                             \
	(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |                      \
	    TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA)

static const TPM2B_PUBLIC seal_template = {
    .publicArea =
        {
            .type = TPM2_ALG_KEYEDHASH,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = SEAL_ATTRS,
            .parameters.keyedHashDetail.scheme =
                {
                    .scheme = TPM2_ALG_NULL,
                },
        },
};

/* ------------------------------------------------------------------ */
/* Time, signals                                                       */

/*
 * The socket TCTIs write with write(2): a peer that went away raises
 * SIGPIPE, which would kill a host that did not ignore it. Block it in the
 * calling thread for the duration of an operation and swallow one that
 * our own write raised (the pattern libpq uses).
 */
struct sigpipe_guard {
	sigset_t old;
	bool was_pending;
};

static void
sigpipe_block(struct sigpipe_guard *g)
{
	sigset_t set, pend;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
	sigemptyset(&pend);
	g->was_pending =
	    sigpending(&pend) == 0 && sigismember(&pend, SIGPIPE) == 1;
}

static void
sigpipe_restore(struct sigpipe_guard *g)
{
	sigset_t set, pend;
	struct timespec zero = {0, 0};

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pend);
	if (!g->was_pending && sigpending(&pend) == 0 &&
	    sigismember(&pend, SIGPIPE) == 1)
		(void)sigtimedwait(&set, NULL, &zero);
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ------------------------------------------------------------------ */
/* The one wrapper around Esys_* calls                                 */

enum rc_class {
	RC_OK = 0,
	RC_LOST,  /* connection or TPM state gone: reconnect */
	RC_BUSY,  /* a TPM warning that outlived our retries */
	RC_TPM,   /* the TPM refused the command */
	RC_LOCAL, /* marshalling or argument error in the TSS */
};

static enum rc_class
rc_classify(TSS2_RC r)
{
	TSS2_RC layer = r & TSS2_RC_LAYER_MASK;
	TSS2_RC base = r & 0xffffu;

	if (r == TSS2_RC_SUCCESS)
		return RC_OK;
	if (layer == TSS2_TCTI_RC_LAYER || layer == TSS2_RESMGR_RC_LAYER)
		return RC_LOST;
	if (layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER) {
		if ((base & TPM2_RC_FMT1) != 0)
			return RC_TPM;
		if (base == TPM2_RC_INITIALIZE || base == TPM2_RC_FAILURE)
			return RC_LOST;
		if ((base & TPM2_RC_WARN) == TPM2_RC_WARN) {
			/* Our view of loaded objects is stale. */
			if ((base & 0x7fu) >= (TPM2_RC_REFERENCE_H0 & 0x7fu) &&
			    (base & 0x7fu) <= (TPM2_RC_REFERENCE_S6 & 0x7fu))
				return RC_LOST;
			return RC_BUSY;
		}
		return RC_TPM;
	}
	switch (base) {
	case TSS2_BASE_RC_TRY_AGAIN: /* deadline passed mid-command */
	case TSS2_BASE_RC_IO_ERROR:
	case TSS2_BASE_RC_BAD_SEQUENCE:
	case TSS2_BASE_RC_NO_CONNECTION:
	case TSS2_BASE_RC_MALFORMED_RESPONSE:
	case TSS2_BASE_RC_INSUFFICIENT_RESPONSE:
	case TSS2_BASE_RC_BAD_TCTI_STRUCTURE:
		return RC_LOST;
	default:
		return RC_LOCAL;
	}
}

static bool
rc_is_warning_retry(TSS2_RC r)
{
	TSS2_RC base = r & 0xffffu;
	TSS2_RC layer = r & TSS2_RC_LAYER_MASK;

	if (layer != TSS2_TPM_RC_LAYER && layer != TSS2_RESMGR_TPM_RC_LAYER)
		return false;
	return base == TPM2_RC_RETRY || base == TPM2_RC_YIELDED ||
	    base == TPM2_RC_TESTING;
}

static bool
rc_is_object_memory(TSS2_RC r)
{
	TSS2_RC base = r & 0xffffu;

	return base == TPM2_RC_OBJECT_MEMORY || base == TPM2_RC_OBJECT_HANDLES;
}

/* Bare TPM response code without the session/handle/parameter number. */
static TSS2_RC
rc_tpm_base(TSS2_RC r)
{
	r &= 0xffffu;
	if ((r & TPM2_RC_FMT1) != 0)
		return r & (TPM2_RC_FMT1 | 0x3fu);
	return r;
}

struct call {
	uint64_t deadline;
	unsigned int tries;
	bool evicted;
};

static void slots_evict_unpinned(struct tpm *t);

static void watchdog_arm(struct tpm *t, uint64_t deadline);
static void watchdog_disarm(struct tpm *t);

static void
call_begin(struct tpm *t, struct call *c)
{
	c->deadline = hv_mono_ms() + TPM_CMD_TIMEOUT_MS;
	c->tries = 0;
	c->evicted = false;
	watchdog_arm(t, c->deadline);
}

/* True while a _Finish should be called again. */
static bool
call_pending(struct call *c, TSS2_RC r)
{
	return (r & 0xffffu) == TSS2_BASE_RC_TRY_AGAIN &&
	    (r & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER &&
	    hv_mono_ms() < c->deadline;
}

/* True when the whole command should be sent again. */
static bool
call_again(struct tpm *t, struct call *c, TSS2_RC r)
{
	if (rc_is_warning_retry(r) && c->tries < TPM_WARN_RETRIES &&
	    hv_mono_ms() < c->deadline) {
		hv_sleep_ms(1u << (c->tries < 6 ? c->tries : 6));
		c->tries++;
		return true;
	}
	if (rc_is_object_memory(r) && !c->evicted) {
		c->evicted = true;
		slots_evict_unpinned(t);
		return true;
	}
	return false;
}

/* The single logging point for every TSS result. */
static TSS2_RC
call_log(struct tpm *t, const char *what, TSS2_RC r)
{
	enum rc_class k = rc_classify(r);

	if (k == RC_OK)
		return r;
	if (k == RC_LOST) {
		t->lost = true;
		hv_log_warn(
		    "tpm: %s: %s (0x%" PRIx32 ")", what, Tss2_RC_Decode(r), r);
	} else if (k == RC_BUSY) {
		hv_log_warn(
		    "tpm: %s: %s (0x%" PRIx32 ")", what, Tss2_RC_Decode(r), r);
	} else {
		hv_log_debug(
		    "tpm: %s: %s (0x%" PRIx32 ")", what, Tss2_RC_Decode(r), r);
	}
	return r;
}

/*
 * Send a command and wait for its answer within TPM_CMD_TIMEOUT_MS:
 * the _Async half once per attempt, the _Finish half until it stops
 * asking to be called again. rv receives the TSS2_RC.
 */
#define ESYS_CALL(rv, t, what, async_expr, finish_expr)                        \
	do {                                                                   \
		struct call c_;                                                \
		call_begin((t), &c_);                                          \
		for (;;) {                                                     \
			(rv) = (async_expr);                                   \
			if ((rv) == TSS2_RC_SUCCESS) {                         \
				do {                                           \
					(rv) = (finish_expr);                  \
				} while (call_pending(&c_, (rv)));             \
			}                                                      \
			if (!call_again((t), &c_, (rv)))                       \
				break;                                         \
		}                                                              \
		watchdog_disarm(t);                                            \
		(rv) = call_log((t), (what), (rv));                            \
	} while (0)

/* Local ESYS calls (no command to the TPM) log through the same point. */
#define ESYS_LOCAL(rv, t, what, expr)                                          \
	do {                                                                   \
		(rv) = (expr);                                                 \
		(rv) = call_log((t), (what), (rv));                            \
	} while (0)

/*
 * Map a failed TSS result to our error: a lost connection or a busy TPM
 * is HV_E_KEYSTORE; anything else is `usual`.
 */
static enum hv_rc
tss_fail(struct tpm *t, TSS2_RC r, enum hv_rc usual, const char *what,
    struct hv_err *err)
{
	(void)t;
	switch (rc_classify(r)) {
	case RC_LOST:
	case RC_BUSY:
		return hv_err_set(
		    err, HV_E_KEYSTORE, "tpm %s: %s", what, Tss2_RC_Decode(r));
	case RC_OK:
	case RC_TPM:
	case RC_LOCAL:
		break;
	}
	return hv_err_set(err, usual, "tpm %s: %s", what, Tss2_RC_Decode(r));
}

/* ------------------------------------------------------------------ */
/* Files in data_dir                                                   */

static enum hv_rc
path_join(const struct tpm *t, const char *name, char *out, size_t cap,
    struct hv_err *err)
{
	int n = snprintf(out, cap, "%s/%s", t->data_dir, name);

	if (n < 0 || (size_t)n >= cap)
		return hv_err_set(err, HV_E_CONFIG, "data dir path too long");
	return HV_OK;
}

/* Read a whole small file. HV_E_NOT_FOUND when it does not exist. */
static enum hv_rc
file_read(const struct tpm *t, const char *name, uint8_t **out, size_t *out_len,
    size_t max, struct hv_err *err)
{
	char path[4096];
	uint8_t *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd = -1;
	enum hv_rc rc;

	rc = path_join(t, name, path, sizeof(path), err);
	if (rc != HV_OK)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return hv_err_set(
			    err, HV_E_NOT_FOUND, "%s not found", name);
		return hv_err_set(err, HV_E_IO, "cannot open '%s': %s", path,
		    strerror(errno));
	}
	buf = hv_malloc(max + 1);
	if (buf == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		n = read(fd, buf + len, max + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = hv_err_set(err, HV_E_IO, "cannot read '%s': %s",
			    path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			rc = hv_err_set(
			    err, HV_E_CONFIG, "'%s' is too large", path);
			goto out;
		}
	}
	*out = buf;
	*out_len = len;
	buf = NULL;
	rc = HV_OK;
out:
	hv_free(buf);
	close(fd);
	return rc;
}

/*
 * Replace data_dir/name with buf atomically: a 0600 temporary file,
 * fsync, rename, fsync of the directory.
 */
static enum hv_rc
file_write(const struct tpm *t, const char *name, const void *buf, size_t len,
    struct hv_err *err)
{
	char path[4096], tmp[4200];
	const uint8_t *p = buf;
	size_t off = 0;
	ssize_t n;
	int fd = -1, dfd = -1, k;
	enum hv_rc rc;

	rc = path_join(t, name, path, sizeof(path), err);
	if (rc != HV_OK)
		return rc;
	k = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	if (k < 0 || (size_t)k >= sizeof(tmp))
		return hv_err_set(err, HV_E_CONFIG, "data dir path too long");
	(void)unlink(tmp);
	fd = open(
	    tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return hv_err_set(err, HV_E_IO, "cannot create '%s': %s", tmp,
		    strerror(errno));
	while (off < len) {
		n = write(fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = hv_err_set(err, HV_E_IO, "cannot write '%s': %s",
			    tmp, strerror(errno));
			goto out;
		}
		off += (size_t)n;
	}
	if (fsync(fd) != 0) {
		rc = hv_err_set(
		    err, HV_E_IO, "cannot sync '%s': %s", tmp, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	if (rename(tmp, path) != 0) {
		rc = hv_err_set(err, HV_E_IO, "cannot rename to '%s': %s", path,
		    strerror(errno));
		goto out;
	}
	dfd = open(t->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	rc = HV_OK;
out:
	if (fd >= 0) {
		close(fd);
		(void)unlink(tmp);
	}
	return rc;
}

/* Cross-process lock for key creation and metadata updates. */
static enum hv_rc
dir_lock(const struct tpm *t, int *fd_out, struct hv_err *err)
{
	char path[4096];
	enum hv_rc rc;
	int fd;

	rc = path_join(t, LOCK_FILE, path, sizeof(path), err);
	if (rc != HV_OK)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return hv_err_set(err, HV_E_IO, "cannot open '%s': %s", path,
		    strerror(errno));
	while (flock(fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			rc = hv_err_set(err, HV_E_IO, "cannot lock '%s': %s",
			    path, strerror(errno));
			close(fd);
			return rc;
		}
	}
	*fd_out = fd;
	return HV_OK;
}

static void
dir_unlock(int *fd)
{
	if (*fd >= 0) {
		(void)flock(*fd, LOCK_UN);
		close(*fd);
	}
	*fd = -1;
}

/* ------------------------------------------------------------------ */
/* Blobs                                                               */

static enum hv_rc
blob_pack(const char *magic, const TPM2B_PUBLIC *pub, const TPM2B_PRIVATE *priv,
    uint8_t *out, size_t cap, size_t *len, struct hv_err *err)
{
	size_t off = MAGIC_LEN;
	TSS2_RC r;

	if (cap < MAGIC_LEN)
		return hv_err_set(err, HV_E_INTERNAL, "blob buffer too small");
	memcpy(out, magic, MAGIC_LEN);
	r = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, out, cap, &off);
	if (r == TSS2_RC_SUCCESS)
		r = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, out, cap, &off);
	if (r != TSS2_RC_SUCCESS)
		return hv_err_set(err, HV_E_INTERNAL, "cannot marshal blob: %s",
		    Tss2_RC_Decode(r));
	*len = off;
	return HV_OK;
}

/* Unpack; any malformation is HV_E_CRYPTO (the input is untrusted). */
static enum hv_rc
blob_unpack(const char *magic, const uint8_t *in, size_t len, TPM2B_PUBLIC *pub,
    TPM2B_PRIVATE *priv, struct hv_err *err)
{
	uint8_t again[TPM_BLOB_MAX];
	size_t off = MAGIC_LEN, n = 0;
	TSS2_RC r;

	memset(pub, 0, sizeof(*pub));
	memset(priv, 0, sizeof(*priv));
	if (len < MAGIC_LEN || memcmp(in, magic, MAGIC_LEN) != 0)
		return hv_err_set(err, HV_E_CRYPTO, "not a tpm blob");
	r = Tss2_MU_TPM2B_PUBLIC_Unmarshal(in, len, &off, pub);
	if (r == TSS2_RC_SUCCESS)
		r = Tss2_MU_TPM2B_PRIVATE_Unmarshal(in, len, &off, priv);
	if (r != TSS2_RC_SUCCESS || off != len)
		return hv_err_set(err, HV_E_CRYPTO, "malformed tpm blob");
	/*
	 * The unmarshaller does not check a TPM2B_PUBLIC's size prefix
	 * against its contents: accept only the canonical encoding, so that
	 * no modified byte goes unnoticed.
	 */
	if (len > sizeof(again) ||
	    blob_pack(magic, pub, priv, again, sizeof(again), &n, NULL) !=
	        HV_OK ||
	    n != len || memcmp(again, in, len) != 0)
		return hv_err_set(err, HV_E_CRYPTO, "malformed tpm blob");
	return HV_OK;
}

/* authValue of a sealed DEK: binds it to the KEK version and the AAD. */
static enum hv_rc
dek_auth(uint32_t version, const uint8_t *aad, size_t aad_len, TPM2B_AUTH *auth,
    struct hv_err *err)
{
	uint8_t hdr[8];
	unsigned int n = 0;
	EVP_MD_CTX *md = NULL;
	enum hv_rc rc = HV_OK;

	hdr[0] = (uint8_t)(version >> 24);
	hdr[1] = (uint8_t)(version >> 16);
	hdr[2] = (uint8_t)(version >> 8);
	hdr[3] = (uint8_t)version;
	hdr[4] = (uint8_t)(aad_len >> 24);
	hdr[5] = (uint8_t)(aad_len >> 16);
	hdr[6] = (uint8_t)(aad_len >> 8);
	hdr[7] = (uint8_t)aad_len;
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, AUTH_DOMAIN, sizeof(AUTH_DOMAIN)) != 1 ||
	    EVP_DigestUpdate(md, hdr, sizeof(hdr)) != 1 ||
	    (aad_len > 0 && EVP_DigestUpdate(md, aad, aad_len) != 1) ||
	    EVP_DigestFinal_ex(md, auth->buffer, &n) != 1 || n != 32) {
		rc = hv_err_set(err, HV_E_INTERNAL, "sha-256 failed");
		goto out;
	}
	auth->size = 32;
out:
	EVP_MD_CTX_free(md);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Metadata                                                            */

static void
keks_clear(struct tpm *t)
{
	size_t i;

	for (i = 0; i < t->n_keks; i++)
		hv_free(t->keks[i].blob);
	memset(t->keks, 0, sizeof(t->keks));
	t->n_keks = 0;
}

static struct kek *
kek_find(struct tpm *t, uint32_t version)
{
	size_t i;

	for (i = 0; i < t->n_keks; i++)
		if (t->keks[i].version == version)
			return &t->keks[i];
	return NULL;
}

/* The active version: the newest enabled one; 0 when none. */
static uint32_t
kek_active(const struct tpm *t)
{
	size_t i = t->n_keks;

	while (i > 0) {
		i--;
		if (!t->keks[i].disabled)
			return t->keks[i].version;
	}
	return 0;
}

static bool
parse_u32(const char *s, uint32_t *out)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* Parse the metadata text into t (versions must ascend). */
static enum hv_rc
meta_parse(struct tpm *t, char *text, struct hv_err *err)
{
	char *line, *next, *f[4], *p, *sp;
	size_t nf;
	uint32_t v;
	bool head = false;

	keks_clear(t);
	t->primary_name[0] = '\0';
	for (line = text; line != NULL && *line != '\0'; line = next) {
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		if (*line == '\0' || *line == '#')
			continue;
		if (!head) {
			if (strcmp(line, META_HEAD) != 0)
				goto bad;
			head = true;
			continue;
		}
		nf = 0;
		p = line;
		while (*p != '\0') {
			if (nf == 4)
				goto bad;
			f[nf++] = p;
			sp = strchr(p, ' ');
			if (sp == NULL)
				break;
			*sp = '\0';
			p = sp + 1;
		}
		if (nf == 2 && strcmp(f[0], "primary") == 0) {
			if (strlen(f[1]) >= sizeof(t->primary_name))
				goto bad;
			memcpy(t->primary_name, f[1], strlen(f[1]) + 1);
		} else if (nf == 3 && strcmp(f[0], "kek") == 0) {
			if (!parse_u32(f[1], &v) ||
			    t->n_keks >= HV_KEK_MAX_VERSIONS ||
			    (t->n_keks > 0 &&
			        t->keks[t->n_keks - 1].version >= v))
				goto bad;
			if (strcmp(f[2], "enabled") == 0)
				t->keks[t->n_keks].disabled = false;
			else if (strcmp(f[2], "disabled") == 0)
				t->keks[t->n_keks].disabled = true;
			else
				goto bad;
			t->keks[t->n_keks].version = v;
			t->n_keks++;
		} else {
			goto bad;
		}
	}
	if (!head)
		goto bad;
	return HV_OK;
bad:
	keks_clear(t);
	return hv_err_set(
	    err, HV_E_CONFIG, "%s/%s is corrupt", t->data_dir, META_FILE);
}

/*
 * Re-read the metadata when the file changed (another process rotated or
 * disabled a KEK). Atomic rename gives every write a new inode.
 */
static enum hv_rc
meta_refresh(struct tpm *t, struct hv_err *err)
{
	char path[4096];
	struct stat st;
	uint8_t *text = NULL;
	size_t len = 0;
	enum hv_rc rc;

	rc = path_join(t, META_FILE, path, sizeof(path), err);
	if (rc != HV_OK)
		return rc;
	if (stat(path, &st) != 0) {
		if (errno != ENOENT)
			return hv_err_set(err, HV_E_IO, "cannot stat '%s': %s",
			    path, strerror(errno));
		keks_clear(t);
		t->primary_name[0] = '\0';
		t->meta_seen = false;
		return HV_OK;
	}
	if (t->meta_seen && st.st_dev == t->meta_dev &&
	    st.st_ino == t->meta_ino && st.st_size == t->meta_size &&
	    st.st_mtim.tv_sec == t->meta_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == t->meta_mtime.tv_nsec)
		return HV_OK;
	rc = file_read(t, META_FILE, &text, &len, TPM_META_MAX, err);
	if (rc == HV_E_NOT_FOUND) {
		keks_clear(t);
		t->meta_seen = false;
		return HV_OK;
	}
	if (rc != HV_OK)
		return rc;
	text[len] = '\0';
	rc = meta_parse(t, (char *)text, err);
	hv_free(text);
	if (rc != HV_OK)
		return rc;
	t->meta_seen = true;
	t->meta_dev = st.st_dev;
	t->meta_ino = st.st_ino;
	t->meta_size = st.st_size;
	t->meta_mtime = st.st_mtim;
	return HV_OK;
}

static enum hv_rc
meta_write(struct tpm *t, struct hv_err *err)
{
	char text[TPM_META_MAX];
	size_t off = 0, i;
	int n;
	enum hv_rc rc;

	n = snprintf(text, sizeof(text), "%s\n", META_HEAD);
	if (n < 0)
		return hv_err_set(err, HV_E_INTERNAL, "metadata format");
	off = (size_t)n;
	if (t->primary_name[0] != '\0') {
		n = snprintf(text + off, sizeof(text) - off, "primary %s\n",
		    t->primary_name);
		if (n < 0 || (size_t)n >= sizeof(text) - off)
			return hv_err_set(
			    err, HV_E_INTERNAL, "metadata too long");
		off += (size_t)n;
	}
	for (i = 0; i < t->n_keks; i++) {
		n = snprintf(text + off, sizeof(text) - off,
		    "kek %" PRIu32 " %s\n", t->keks[i].version,
		    t->keks[i].disabled ? "disabled" : "enabled");
		if (n < 0 || (size_t)n >= sizeof(text) - off)
			return hv_err_set(
			    err, HV_E_INTERNAL, "metadata too long");
		off += (size_t)n;
	}
	rc = file_write(t, META_FILE, text, off, err);
	if (rc != HV_OK)
		return rc;
	/* Make the next refresh re-read what we wrote. */
	t->meta_seen = false;
	return meta_refresh(t, err);
}

static void
kek_file_name(uint32_t version, char *out, size_t cap)
{
	(void)snprintf(out, cap, "tpm-kek-%" PRIu32 ".blob", version);
}

/* The blob of a KEK version (read once, then cached). */
static enum hv_rc
kek_blob(struct tpm *t, struct kek *k, struct hv_err *err)
{
	char name[64];
	enum hv_rc rc;

	if (k->blob != NULL)
		return HV_OK;
	kek_file_name(k->version, name, sizeof(name));
	rc = file_read(t, name, &k->blob, &k->blob_len, TPM_BLOB_MAX, err);
	if (rc == HV_E_NOT_FOUND)
		return hv_err_set(err, HV_E_CONFIG,
		    "kek version %" PRIu32 " is listed but %s/%s is missing",
		    k->version, t->data_dir, name);
	return rc;
}

static enum hv_rc
hmac_blob(struct tpm *t, struct hv_err *err)
{
	if (t->hmac_blob != NULL)
		return HV_OK;
	return file_read(
	    t, HMAC_FILE, &t->hmac_blob, &t->hmac_blob_len, TPM_BLOB_MAX, err);
}

/* ------------------------------------------------------------------ */
/* Transient object slots                                              */

static void
slot_forget(struct slot *s)
{
	memset(s, 0, sizeof(*s));
	s->kind = OBJ_FREE;
	s->h = ESYS_TR_NONE;
}

static void
slot_flush(struct tpm *t, struct slot *s)
{
	TSS2_RC r;

	if (s->kind == OBJ_FREE)
		return;
	if (t->ctx != NULL && !t->lost) {
		ESYS_CALL(r, t, "FlushContext",
		    Esys_FlushContext_Async(t->ctx, s->h),
		    Esys_FlushContext_Finish(t->ctx));
		if (r != TSS2_RC_SUCCESS && !t->lost) {
			/* Not loaded any more: drop our handle all the same. */
			ESYS_LOCAL(
			    r, t, "TR_Close", Esys_TR_Close(t->ctx, &s->h));
		}
	}
	slot_forget(s);
}

static void
slots_evict_unpinned(struct tpm *t)
{
	size_t i;

	for (i = 0; i < TPM_SLOTS; i++)
		if (t->slots[i].kind != OBJ_FREE && !t->slots[i].pinned)
			slot_flush(t, &t->slots[i]);
}

static void
slots_unpin(struct tpm *t)
{
	size_t i;

	for (i = 0; i < TPM_SLOTS; i++)
		t->slots[i].pinned = false;
}

static struct slot *
slot_find(struct tpm *t, enum obj_kind kind, uint32_t version)
{
	size_t i;

	for (i = 0; i < TPM_SLOTS; i++)
		if (t->slots[i].kind == kind &&
		    (kind != OBJ_KEK || t->slots[i].version == version))
			return &t->slots[i];
	return NULL;
}

/* A free slot, flushing the least recently used unpinned object. */
static enum hv_rc
slot_alloc(struct tpm *t, struct slot **out, struct hv_err *err)
{
	struct slot *victim = NULL;
	size_t i;

	for (i = 0; i < TPM_SLOTS; i++) {
		if (t->slots[i].kind == OBJ_FREE) {
			*out = &t->slots[i];
			return HV_OK;
		}
		if (t->slots[i].pinned)
			continue;
		/*
		 * The primary goes first: it only serves to load keys and
		 * comes back from its saved context in one command, while
		 * evicting a KEK that is in use makes two KEKs (rewrap) evict
		 * each other on every call.
		 */
		if (victim == NULL)
			victim = &t->slots[i];
		else if ((t->slots[i].kind == OBJ_PRIMARY) !=
		    (victim->kind == OBJ_PRIMARY)) {
			if (t->slots[i].kind == OBJ_PRIMARY)
				victim = &t->slots[i];
		} else if (t->slots[i].used < victim->used) {
			victim = &t->slots[i];
		}
	}
	if (victim == NULL)
		return hv_err_set(err, HV_E_INTERNAL, "no free tpm slot");
	slot_flush(t, victim);
	if (t->lost)
		return hv_err_set(err, HV_E_KEYSTORE, "tpm connection lost");
	*out = victim;
	return HV_OK;
}

static void
slot_take(struct tpm *t, struct slot *s, enum obj_kind kind, uint32_t version,
    ESYS_TR h)
{
	s->kind = kind;
	s->version = version;
	s->h = h;
	s->used = ++t->tick;
	s->pinned = true;
}

static void
hex_encode(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/*
 * Create the storage primary and check that it is the one our blobs were
 * made under (its Name is recorded in the metadata).
 */
static enum hv_rc
primary_create(struct tpm *t, ESYS_TR *out, struct hv_err *err)
{
	TPM2B_SENSITIVE_CREATE sens = {0};
	TPM2B_DATA outside = {0};
	TPML_PCR_SELECTION pcrs = {0};
	TPM2B_PUBLIC *pub = NULL;
	TPM2B_CREATION_DATA *cdata = NULL;
	TPM2B_DIGEST *chash = NULL;
	TPMT_TK_CREATION *ticket = NULL;
	TPM2B_NAME *name = NULL;
	ESYS_TR h = ESYS_TR_NONE;
	char hex[sizeof(t->primary_name)];
	enum hv_rc rc = HV_OK;
	TSS2_RC r;

	ESYS_CALL(r, t, "CreatePrimary",
	    Esys_CreatePrimary_Async(t->ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD,
	        ESYS_TR_NONE, ESYS_TR_NONE, &sens, &primary_template, &outside,
	        &pcrs),
	    Esys_CreatePrimary_Finish(
	        t->ctx, &h, &pub, &cdata, &chash, &ticket));
	if (r != TSS2_RC_SUCCESS) {
		TSS2_RC b = rc_tpm_base(r);

		if (rc_classify(r) == RC_TPM &&
		    (b == TPM2_RC_BAD_AUTH || b == TPM2_RC_AUTH_FAIL))
			return hv_err_set(err, HV_E_CONFIG,
			    "tpm owner "
			    "hierarchy has an authorization value; hsmvault "
			    "needs it empty");
		return tss_fail(t, r, HV_E_KEYSTORE, "create primary", err);
	}
	ESYS_LOCAL(r, t, "TR_GetName", Esys_TR_GetName(t->ctx, h, &name));
	if (r != TSS2_RC_SUCCESS) {
		rc = tss_fail(t, r, HV_E_INTERNAL, "primary name", err);
		goto out;
	}
	hex_encode(name->name, name->size, hex);
	if (t->primary_name[0] != '\0' && strcmp(hex, t->primary_name) != 0) {
		rc = hv_err_set(err, HV_E_CONFIG,
		    "this tpm's owner seed is "
		    "not the one the keys in %s were made with (tpm cleared, "
		    "or another tpm)",
		    t->data_dir);
		goto out;
	}
	if (t->primary_name[0] == '\0')
		memcpy(t->primary_name, hex, strlen(hex) + 1);
	*out = h;
	h = ESYS_TR_NONE;
out:
	if (h != ESYS_TR_NONE) {
		ESYS_CALL(r, t, "FlushContext",
		    Esys_FlushContext_Async(t->ctx, h),
		    Esys_FlushContext_Finish(t->ctx));
	}
	Esys_Free(pub);
	Esys_Free(cdata);
	Esys_Free(chash);
	Esys_Free(ticket);
	Esys_Free(name);
	return rc;
}

/*
 * Make object (kind, version) loaded and pinned for the running operation;
 * *h receives its handle.
 */
static enum hv_rc
obj_get(struct tpm *t, enum obj_kind kind, uint32_t version, ESYS_TR *h,
    struct hv_err *err)
{
	struct slot *s, *ps;
	TPM2B_PUBLIC pub;
	TPM2B_PRIVATE priv;
	ESYS_TR parent = ESYS_TR_NONE, loaded = ESYS_TR_NONE;
	const uint8_t *blob;
	size_t blob_len;
	struct kek *k;
	enum hv_rc rc;
	TSS2_RC r;

	s = slot_find(t, kind, version);
	if (s != NULL) {
		s->used = ++t->tick;
		s->pinned = true;
		*h = s->h;
		return HV_OK;
	}
	if (kind == OBJ_PRIMARY) {
		rc = slot_alloc(t, &s, err);
		if (rc != HV_OK)
			return rc;
		if (t->primary_ctx != NULL) {
			ESYS_CALL(r, t, "ContextLoad",
			    Esys_ContextLoad_Async(t->ctx, t->primary_ctx),
			    Esys_ContextLoad_Finish(t->ctx, &loaded));
			if (r == TSS2_RC_SUCCESS) {
				slot_take(t, s, OBJ_PRIMARY, 0, loaded);
				*h = loaded;
				return HV_OK;
			}
			if (t->lost)
				return tss_fail(
				    t, r, HV_E_KEYSTORE, "context load", err);
			Esys_Free(t->primary_ctx);
			t->primary_ctx = NULL;
		}
		rc = primary_create(t, &loaded, err);
		if (rc != HV_OK)
			return rc;
		slot_take(t, s, OBJ_PRIMARY, 0, loaded);
		*h = loaded;
		/* Saved once per connection: restoring it is one cheap
		 * command, creating it an ECC key derivation (ms). */
		ESYS_CALL(r, t, "ContextSave",
		    Esys_ContextSave_Async(t->ctx, loaded),
		    Esys_ContextSave_Finish(t->ctx, &t->primary_ctx));
		if (r != TSS2_RC_SUCCESS) {
			t->primary_ctx = NULL;
			if (t->lost)
				return tss_fail(
				    t, r, HV_E_KEYSTORE, "context save", err);
		}
		return HV_OK;
	}
	if (kind == OBJ_HMAC) {
		rc = hmac_blob(t, err);
		if (rc == HV_E_NOT_FOUND)
			return hv_err_set(err, HV_E_NOT_FOUND,
			    "no tpm hmac key "
			    "in %s (run hsmvault init)",
			    t->data_dir);
		if (rc != HV_OK)
			return rc;
		blob = t->hmac_blob;
		blob_len = t->hmac_blob_len;
	} else {
		k = kek_find(t, version);
		if (k == NULL)
			return hv_err_set(err, HV_E_NOT_FOUND,
			    "no kek version %" PRIu32, version);
		rc = kek_blob(t, k, err);
		if (rc != HV_OK)
			return rc;
		blob = k->blob;
		blob_len = k->blob_len;
	}
	rc = blob_unpack(KEY_MAGIC, blob, blob_len, &pub, &priv, err);
	if (rc != HV_OK)
		return hv_err_set(err, HV_E_CONFIG,
		    "key blob in %s is "
		    "corrupt",
		    t->data_dir);
	rc = obj_get(t, OBJ_PRIMARY, 0, &parent, err);
	if (rc != HV_OK)
		return rc;
	ps = slot_find(t, OBJ_PRIMARY, 0);
	rc = slot_alloc(t, &s, err);
	if (rc != HV_OK)
		return rc;
	ESYS_CALL(r, t, "Load",
	    Esys_Load_Async(t->ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	        ESYS_TR_NONE, &priv, &pub),
	    Esys_Load_Finish(t->ctx, &loaded));
	if (ps != NULL)
		ps->pinned = false;
	if (r != TSS2_RC_SUCCESS) {
		if (rc_classify(r) == RC_TPM)
			return hv_err_set(err, HV_E_CONFIG,
			    "tpm refused the "
			    "%s key blob in %s: %s",
			    kind == OBJ_HMAC ? "hmac" : "kek", t->data_dir,
			    Tss2_RC_Decode(r));
		return tss_fail(t, r, HV_E_KEYSTORE, "load key", err);
	}
	slot_take(t, s, kind, version, loaded);
	*h = loaded;
	return HV_OK;
}

/* ------------------------------------------------------------------ */
/* Connection                                                          */

static void
tpm_disconnect(struct tpm *t, bool flush)
{
	size_t i;

	if (flush && t->ctx != NULL && !t->lost) {
		for (i = 0; i < TPM_SLOTS; i++)
			slot_flush(t, &t->slots[i]);
	}
	for (i = 0; i < TPM_SLOTS; i++)
		slot_forget(&t->slots[i]);
	Esys_Free(t->primary_ctx);
	t->primary_ctx = NULL;
	if (t->ctx != NULL)
		Esys_Finalize(&t->ctx);
	if (t->tcti != NULL)
		Tss2_TctiLdr_Finalize(&t->tcti);
	t->ctx = NULL;
	t->tcti = NULL;
}

static void
prop_string(uint32_t v, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < 4; i++) {
		char c = (char)((v >> (24 - 8 * i)) & 0xff);

		if (c >= 0x20 && c < 0x7f)
			out[o++] = c;
	}
	out[o] = '\0';
}

/* Fixed properties: manufacturer, vendor, firmware, input buffer. */
static enum hv_rc
read_properties(struct tpm *t, struct hv_err *err)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more = 0;
	TPMS_TAGGED_PROPERTY *p;
	char v[5];
	uint32_t i;
	TSS2_RC r;

	ESYS_CALL(r, t, "GetCapability",
	    Esys_GetCapability_Async(t->ctx, ESYS_TR_NONE, ESYS_TR_NONE,
	        ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES, TPM2_PT_FIXED, 48),
	    Esys_GetCapability_Finish(t->ctx, &more, &cap));
	if (r != TSS2_RC_SUCCESS)
		return tss_fail(t, r, HV_E_KEYSTORE, "get capability", err);
	t->vendor[0] = '\0';
	for (i = 0; i < cap->data.tpmProperties.count; i++) {
		p = &cap->data.tpmProperties.tpmProperty[i];
		switch (p->property) {
		case TPM2_PT_MANUFACTURER:
			prop_string(p->value, t->manufacturer);
			break;
		case TPM2_PT_VENDOR_STRING_1:
		case TPM2_PT_VENDOR_STRING_2:
		case TPM2_PT_VENDOR_STRING_3:
		case TPM2_PT_VENDOR_STRING_4:
			prop_string(p->value, v);
			if (strlen(t->vendor) + strlen(v) < sizeof(t->vendor))
				memcpy(t->vendor + strlen(t->vendor), v,
				    strlen(v) + 1);
			break;
		case TPM2_PT_FIRMWARE_VERSION_1:
			t->fw1 = p->value;
			break;
		case TPM2_PT_FIRMWARE_VERSION_2:
			t->fw2 = p->value;
			break;
		case TPM2_PT_INPUT_BUFFER:
			if (p->value >= 64 && p->value < TPM_HMAC_CHUNK)
				t->hmac_chunk = (uint16_t)p->value;
			break;
		default:
			break;
		}
	}
	Esys_Free(cap);
	return HV_OK;
}

/*
 * Flush transient objects that a crashed earlier process of ours left in
 * a TPM without a resource manager (swtpm): only three slots exist.
 * Behind a resource manager (/dev/tpmrm0, tabrmd) the list is our own
 * connection's and empty.
 */
static enum hv_rc
flush_stale(struct tpm *t, struct hv_err *err)
{
	TPMS_CAPABILITY_DATA *cap = NULL;
	TPMI_YES_NO more = 0;
	ESYS_TR h;
	uint32_t i;
	TSS2_RC r;

	ESYS_CALL(r, t, "GetCapability",
	    Esys_GetCapability_Async(t->ctx, ESYS_TR_NONE, ESYS_TR_NONE,
	        ESYS_TR_NONE, TPM2_CAP_HANDLES,
	        0x80000000u /* TRANSIENT_FIRST */, 16),
	    Esys_GetCapability_Finish(t->ctx, &more, &cap));
	if (r != TSS2_RC_SUCCESS)
		return tss_fail(t, r, HV_E_KEYSTORE, "list handles", err);
	for (i = 0; i < cap->data.handles.count && !t->lost; i++) {
		h = ESYS_TR_NONE;
		ESYS_CALL(r, t, "TR_FromTPMPublic",
		    Esys_TR_FromTPMPublic_Async(t->ctx,
		        cap->data.handles.handle[i], ESYS_TR_NONE, ESYS_TR_NONE,
		        ESYS_TR_NONE),
		    Esys_TR_FromTPMPublic_Finish(t->ctx, &h));
		if (r != TSS2_RC_SUCCESS)
			continue; /* a sequence object: cannot name it */
		ESYS_CALL(r, t, "FlushContext",
		    Esys_FlushContext_Async(t->ctx, h),
		    Esys_FlushContext_Finish(t->ctx));
		hv_log_info("tpm: flushed stale transient object 0x%08" PRIx32,
		    cap->data.handles.handle[i]);
	}
	Esys_Free(cap);
	if (t->lost)
		return hv_err_set(err, HV_E_KEYSTORE, "tpm connection lost");
	return HV_OK;
}

/* The TCP port of a swtpm/mssim TCTI string; 0 for other TCTIs. */
static unsigned int
tcti_tcp_port(const char *conf)
{
	const char *p;
	unsigned long v;
	char *end;

	if (conf == NULL ||
	    (strncmp(conf, "swtpm", 5) != 0 && strncmp(conf, "mssim", 5) != 0))
		return 0;
	if (strstr(conf, "path=") != NULL)
		return 0; /* a unix socket */
	p = strstr(conf, "port=");
	if (p == NULL)
		return 2321; /* the TCTIs' default */
	errno = 0;
	v = strtoul(p + 5, &end, 10);
	if (errno != 0 || end == p + 5 || v == 0 || v > 65535)
		return 0;
	return (unsigned int)v;
}

/*
 * The swtpm TCTI of tss2 3.2.1 ignores the _Finish timeout: it opens a
 * socket per command and blocks in read(2) until the answer comes, and it
 * does not give its socket out (getPollHandles is not implemented). A
 * TPM that stopped answering would hang the caller, and every caller
 * queued behind the mutex. For TCP TCTIs a watchdog thread therefore
 * shuts down the sockets connected to the TPM's port when a command
 * outlives TPM_CMD_TIMEOUT_MS: the read fails, the call is an I/O error,
 * and run() reconnects and then opens the breaker. Any such socket belongs
 * to a TPM command of this process, and any command that old is hung.
 * The device and tabrmd TCTIs honour the ESYS timeout themselves.
 */
static void
watchdog_fire(unsigned int port)
{
	struct sockaddr_storage sa;
	socklen_t sl;
	struct dirent *de;
	struct stat st;
	unsigned int peer;
	DIR *d;
	long fd;
	char *end;

	d = opendir("/proc/self/fd");
	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		errno = 0;
		fd = strtol(de->d_name, &end, 10);
		if (errno != 0 || *end != '\0' || end == de->d_name || fd < 0 ||
		    fd > INT32_MAX || fd == dirfd(d))
			continue;
		if (fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode))
			continue;
		sl = sizeof(sa);
		if (getpeername((int)fd, (struct sockaddr *)&sa, &sl) != 0)
			continue;
		if (sa.ss_family == AF_INET)
			peer = ntohs(((struct sockaddr_in *)&sa)->sin_port);
		else if (sa.ss_family == AF_INET6)
			peer = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
		else
			continue;
		if (peer == port)
			(void)shutdown((int)fd, SHUT_RDWR);
	}
	closedir(d);
}

/*
 * The watchdog sleeps until the deadline of the command in flight and
 * re-checks then; commands arm and disarm it without waking it, so a
 * steady stream of commands costs one wake-up per TPM_CMD_TIMEOUT_MS.
 * Only arming an idle watchdog signals it.
 */
static void *
watchdog_main(void *arg)
{
	struct tpm *t = arg;
	struct timespec ts;
	uint64_t dl;

	pthread_mutex_lock(&t->wd_mu);
	while (!t->wd_stop) {
		if (!t->wd_armed) {
			t->wd_idle = true;
			pthread_cond_wait(&t->wd_cv, &t->wd_mu);
			t->wd_idle = false;
			continue;
		}
		dl = t->wd_deadline;
		if (hv_mono_ms() >= dl) {
			hv_log_warn("tpm: command timed out after %d ms, "
			            "closing its connection",
			    TPM_CMD_TIMEOUT_MS);
			t->wd_armed = false;
			watchdog_fire(t->wd_port);
			continue;
		}
		ts.tv_sec = (time_t)(dl / 1000);
		ts.tv_nsec = (long)(dl % 1000) * 1000000L;
		(void)pthread_cond_timedwait(&t->wd_cv, &t->wd_mu, &ts);
	}
	pthread_mutex_unlock(&t->wd_mu);
	return NULL;
}

static void
watchdog_arm(struct tpm *t, uint64_t deadline)
{
	if (!t->wd_running)
		return;
	pthread_mutex_lock(&t->wd_mu);
	t->wd_deadline = deadline;
	t->wd_armed = true;
	if (t->wd_idle)
		pthread_cond_signal(&t->wd_cv);
	pthread_mutex_unlock(&t->wd_mu);
}

static void
watchdog_disarm(struct tpm *t)
{
	if (!t->wd_running)
		return;
	pthread_mutex_lock(&t->wd_mu);
	t->wd_armed = false;
	pthread_mutex_unlock(&t->wd_mu);
}

static void
watchdog_start(struct tpm *t)
{
	pthread_condattr_t ca;

	t->wd_port = tcti_tcp_port(t->tcti_conf);
	if (t->wd_port == 0)
		return;
	if (pthread_mutex_init(&t->wd_mu, NULL) != 0)
		return;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&t->wd_cv, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		pthread_mutex_destroy(&t->wd_mu);
		return;
	}
	pthread_condattr_destroy(&ca);
	if (pthread_create(&t->wd_thread, NULL, watchdog_main, t) != 0) {
		pthread_cond_destroy(&t->wd_cv);
		pthread_mutex_destroy(&t->wd_mu);
		hv_log_warn("tpm: no watchdog thread: a hung tpm will block");
		return;
	}
	t->wd_running = true;
}

static void
watchdog_stop(struct tpm *t)
{
	if (!t->wd_running)
		return;
	pthread_mutex_lock(&t->wd_mu);
	t->wd_stop = true;
	pthread_cond_signal(&t->wd_cv);
	pthread_mutex_unlock(&t->wd_mu);
	pthread_join(t->wd_thread, NULL);
	pthread_cond_destroy(&t->wd_cv);
	pthread_mutex_destroy(&t->wd_mu);
	t->wd_running = false;
}

static enum hv_rc
tpm_connect(struct tpm *t, struct hv_err *err)
{
	enum hv_rc rc;
	ESYS_TR h;
	TSS2_RC r;

	t->lost = false;
	r = Tss2_TctiLdr_Initialize(t->tcti_conf, &t->tcti);
	(void)call_log(t, "TctiLdr_Initialize", r);
	if (r != TSS2_RC_SUCCESS) {
		t->tcti = NULL;
		return hv_err_set(err, HV_E_KEYSTORE,
		    "cannot open tpm tcti "
		    "'%.64s': %s",
		    t->tcti_conf != NULL ? t->tcti_conf : "(default)",
		    Tss2_RC_Decode(r));
	}
	ESYS_LOCAL(r, t, "Initialize", Esys_Initialize(&t->ctx, t->tcti, NULL));
	if (r != TSS2_RC_SUCCESS) {
		t->ctx = NULL;
		rc = hv_err_set(err, HV_E_KEYSTORE,
		    "cannot initialize esys: "
		    "%s",
		    Tss2_RC_Decode(r));
		goto fail;
	}
	ESYS_LOCAL(r, t, "SetTimeout", Esys_SetTimeout(t->ctx, TPM_POLL_MS));
	t->lost = false;
	t->hmac_chunk = TPM_HMAC_CHUNK;
	rc = read_properties(t, err);
	if (rc != HV_OK && t->lost && t->ctx != NULL) {
		/* A TPM that was powered up without TPM2_Startup. */
		t->lost = false;
		ESYS_CALL(r, t, "Startup",
		    Esys_Startup_Async(t->ctx, TPM2_SU_CLEAR),
		    Esys_Startup_Finish(t->ctx));
		if (r == TSS2_RC_SUCCESS ||
		    rc_tpm_base(r) == TPM2_RC_INITIALIZE) {
			t->lost = false;
			rc = read_properties(t, err);
		}
	}
	if (rc != HV_OK)
		goto fail;
	rc = flush_stale(t, err);
	if (rc != HV_OK)
		goto fail;
	/* With keys on record, prove at once that this is their TPM. */
	if (t->primary_name[0] != '\0') {
		rc = obj_get(t, OBJ_PRIMARY, 0, &h, err);
		slots_unpin(t);
		if (rc != HV_OK)
			goto fail;
	}
	if (t->ever_connected)
		t->reconnects++;
	t->ever_connected = true;
	return HV_OK;
fail:
	tpm_disconnect(t, false);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Running an operation: reconnect, retry, circuit breaker             */

typedef enum hv_rc (*op_fn)(struct tpm *t, void *arg, struct hv_err *err);

static enum hv_rc
run(struct tpm *t, op_fn fn, void *arg, struct hv_err *err)
{
	struct sigpipe_guard g;
	unsigned int attempt, attempts;
	uint64_t now;
	enum hv_rc rc = HV_E_KEYSTORE;

	pthread_mutex_lock(&t->mu);
	sigpipe_block(&g);
	attempts = t->retry_max;
	if (t->ctx == NULL && t->breaker_tripped) {
		now = hv_mono_ms();
		if (now < t->down_until) {
			rc = hv_err_set(err, HV_E_KEYSTORE,
			    "tpm unreachable "
			    "(next reconnect in %" PRIu64 " ms)",
			    t->down_until - now);
			goto out;
		}
		attempts = 1; /* half-open: one probe */
	}
	for (attempt = 0; attempt < attempts; attempt++) {
		if (attempt > 0)
			hv_sleep_ms(10u << (attempt < 5 ? attempt : 5));
		if (t->ctx == NULL) {
			rc = tpm_connect(t, err);
			if (rc != HV_OK) {
				if (rc != HV_E_KEYSTORE)
					goto out; /* config: no retry */
				continue;
			}
		}
		t->lost = false;
		rc = fn(t, arg, err);
		slots_unpin(t);
		if (!t->lost)
			goto out;
		hv_log_warn("tpm: connection lost, reconnecting");
		tpm_disconnect(t, false);
		rc = hv_err_set(err, HV_E_KEYSTORE, "tpm connection lost");
	}
	/* Every attempt failed to reach the TPM: open the breaker. */
	t->breaker_tripped = true;
	t->down_until = hv_mono_ms() + t->breaker_ms;
	if (rc != HV_E_KEYSTORE)
		rc = hv_err_set(err, HV_E_KEYSTORE, "tpm unreachable");
	hv_log_warn("tpm: unreachable, failing fast for %u ms", t->breaker_ms);
	goto out_locked;
out:
	if (rc == HV_OK || t->ctx != NULL)
		t->breaker_tripped = false;
out_locked:
	sigpipe_restore(&g);
	pthread_mutex_unlock(&t->mu);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Operations                                                          */

/* Create an ordinary child of the primary; blob packed into out. */
static enum hv_rc
create_key(struct tpm *t, const TPM2B_PUBLIC *tmpl, uint8_t *out, size_t cap,
    size_t *len, struct hv_err *err)
{
	TPM2B_SENSITIVE_CREATE sens = {0};
	TPM2B_DATA outside = {0};
	TPML_PCR_SELECTION pcrs = {0};
	TPM2B_PRIVATE *priv = NULL;
	TPM2B_PUBLIC *pub = NULL;
	TPM2B_CREATION_DATA *cdata = NULL;
	TPM2B_DIGEST *chash = NULL;
	TPMT_TK_CREATION *ticket = NULL;
	ESYS_TR parent;
	enum hv_rc rc;
	TSS2_RC r;

	rc = obj_get(t, OBJ_PRIMARY, 0, &parent, err);
	if (rc != HV_OK)
		return rc;
	ESYS_CALL(r, t, "Create",
	    Esys_Create_Async(t->ctx, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	        ESYS_TR_NONE, &sens, tmpl, &outside, &pcrs),
	    Esys_Create_Finish(t->ctx, &priv, &pub, &cdata, &chash, &ticket));
	if (r != TSS2_RC_SUCCESS) {
		rc = tss_fail(t, r, HV_E_KEYSTORE, "create key", err);
		goto out;
	}
	rc = blob_pack(KEY_MAGIC, pub, priv, out, cap, len, err);
out:
	Esys_Free(priv);
	Esys_Free(pub);
	Esys_Free(cdata);
	Esys_Free(chash);
	Esys_Free(ticket);
	return rc;
}

static enum hv_rc
do_create_hmac(struct tpm *t, struct hv_err *err)
{
	uint8_t blob[TPM_BLOB_MAX];
	size_t len = 0;
	enum hv_rc rc;

	rc = create_key(t, &hmac_template, blob, sizeof(blob), &len, err);
	if (rc != HV_OK)
		return rc;
	rc = file_write(t, HMAC_FILE, blob, len, err);
	if (rc != HV_OK)
		return rc;
	hv_free(t->hmac_blob);
	t->hmac_blob = NULL;
	return hmac_blob(t, err);
}

/* Create KEK version newest + 1; the caller holds the directory lock. */
static enum hv_rc
do_create_kek(struct tpm *t, uint32_t *version, struct hv_err *err)
{
	uint8_t blob[TPM_BLOB_MAX];
	char name[64];
	size_t len = 0;
	uint32_t v;
	enum hv_rc rc;

	if (t->n_keks >= HV_KEK_MAX_VERSIONS)
		return hv_err_set(err, HV_E_CONFLICT,
		    "too many kek versions "
		    "(%d)",
		    HV_KEK_MAX_VERSIONS);
	v = t->n_keks == 0 ? 1 : t->keks[t->n_keks - 1].version + 1;
	if (v == 0)
		return hv_err_set(err, HV_E_CONFLICT, "kek versions exhausted");
	rc = create_key(t, &kek_template, blob, sizeof(blob), &len, err);
	if (rc != HV_OK)
		return rc;
	kek_file_name(v, name, sizeof(name));
	rc = file_write(t, name, blob, len, err);
	if (rc != HV_OK)
		return rc;
	/* The metadata is the commit point. */
	t->keks[t->n_keks].version = v;
	t->keks[t->n_keks].disabled = false;
	t->keks[t->n_keks].blob = NULL;
	t->n_keks++;
	rc = meta_write(t, err);
	if (rc != HV_OK)
		return rc;
	*version = v;
	hv_log_info("tpm: created kek version %" PRIu32, v);
	return HV_OK;
}

struct ensure_arg {
	bool create;
};

static enum hv_rc
op_ensure(struct tpm *t, void *argp, struct hv_err *err)
{
	struct ensure_arg *a = argp;
	ESYS_TR h;
	uint32_t v;
	int lock = -1;
	enum hv_rc rc;

	if (a->create) {
		rc = dir_lock(t, &lock, err);
		if (rc != HV_OK)
			return rc;
	}
	rc = meta_refresh(t, err);
	if (rc != HV_OK)
		goto out;
	rc = hmac_blob(t, err);
	if (rc == HV_E_NOT_FOUND) {
		if (!a->create) {
			rc = hv_err_set(err, HV_E_NOT_FOUND,
			    "no tpm hmac key "
			    "in %s (run hsmvault init)",
			    t->data_dir);
			goto out;
		}
		rc = do_create_hmac(t, err);
	}
	if (rc != HV_OK)
		goto out;
	if (kek_active(t) == 0) {
		if (!a->create) {
			rc = hv_err_set(err, HV_E_NOT_FOUND,
			    "no tpm kek in %s "
			    "(run hsmvault init)",
			    t->data_dir);
			goto out;
		}
		rc = do_create_kek(t, &v, err);
		if (rc != HV_OK)
			goto out;
	}
	/* Prove both keys load in this TPM. */
	rc = obj_get(t, OBJ_HMAC, 0, &h, err);
	if (rc == HV_OK)
		rc = obj_get(t, OBJ_KEK, kek_active(t), &h, err);
out:
	dir_unlock(&lock);
	return rc;
}

static enum hv_rc
tpm_ensure_keys(struct hv_hsm *h, bool create, struct hv_err *err)
{
	struct ensure_arg a = {.create = create};

	return run((struct tpm *)h, op_ensure, &a, err);
}

/*
 * Whether a version may wrap or unwrap: it must exist and be enabled. A
 * disabled version is reported as not found, like one that never existed
 * (the PKCS#11 backend does the same). A retired version may still wrap
 * when named explicitly: hv_hsm_wrap(0) always picks the active one, and
 * a rotation by another process between that choice and the wrap must
 * not fail the write.
 */
static enum hv_rc
kek_usable(struct tpm *t, uint32_t version, struct hv_err *err)
{
	struct kek *k;
	enum hv_rc rc;

	rc = meta_refresh(t, err);
	if (rc != HV_OK)
		return rc;
	k = kek_find(t, version);
	if (k == NULL)
		return hv_err_set(
		    err, HV_E_NOT_FOUND, "no kek version %" PRIu32, version);
	if (k->disabled)
		return hv_err_set(err, HV_E_NOT_FOUND,
		    "kek version %" PRIu32 " is disabled", version);
	return HV_OK;
}

struct wrap_arg {
	uint32_t version;
	const uint8_t *aad;
	size_t aad_len;
	const struct hv_secret *dek;
	uint8_t *out;
	size_t *out_len;
};

static enum hv_rc
op_wrap(struct tpm *t, void *argp, struct hv_err *err)
{
	struct wrap_arg *a = argp;
	TPM2B_SENSITIVE_CREATE sens;
	TPM2B_DATA outside = {0};
	TPML_PCR_SELECTION pcrs = {0};
	TPM2B_PRIVATE *priv = NULL;
	TPM2B_PUBLIC *pub = NULL;
	TPM2B_CREATION_DATA *cdata = NULL;
	TPM2B_DIGEST *chash = NULL;
	TPMT_TK_CREATION *ticket = NULL;
	ESYS_TR kek;
	size_t len = 0;
	enum hv_rc rc;
	TSS2_RC r;

	memset(&sens, 0, sizeof(sens));
	rc = kek_usable(t, a->version, err);
	if (rc != HV_OK)
		return rc;
	rc = dek_auth(
	    a->version, a->aad, a->aad_len, &sens.sensitive.userAuth, err);
	if (rc != HV_OK)
		goto out;
	memcpy(sens.sensitive.data.buffer, a->dek->buf, HV_DEK_LEN);
	sens.sensitive.data.size = HV_DEK_LEN;
	rc = obj_get(t, OBJ_KEK, a->version, &kek, err);
	if (rc != HV_OK)
		goto out;
	ESYS_CALL(r, t, "Create",
	    Esys_Create_Async(t->ctx, kek, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	        ESYS_TR_NONE, &sens, &seal_template, &outside, &pcrs),
	    Esys_Create_Finish(t->ctx, &priv, &pub, &cdata, &chash, &ticket));
	hv_mem_zero(&sens, sizeof(sens));
	if (r != TSS2_RC_SUCCESS) {
		rc = tss_fail(t, r, HV_E_KEYSTORE, "wrap", err);
		goto out;
	}
	rc = blob_pack(DEK_MAGIC, pub, priv, a->out, HV_WRAPPED_MAX, &len, err);
	if (rc != HV_OK)
		goto out;
	*a->out_len = len;
out:
	hv_mem_zero(&sens, sizeof(sens));
	Esys_Free(priv);
	Esys_Free(pub);
	Esys_Free(cdata);
	Esys_Free(chash);
	Esys_Free(ticket);
	return rc;
}

static enum hv_rc
tpm_wrap(struct hv_hsm *h, uint32_t kek_version, const uint8_t *aad,
    size_t aad_len, const struct hv_secret *dek, uint8_t *out, size_t *out_len,
    struct hv_err *err)
{
	struct wrap_arg a = {
	    .version = kek_version,
	    .aad = aad,
	    .aad_len = aad_len,
	    .dek = dek,
	    .out = out,
	    .out_len = out_len,
	};

	if (dek == NULL || dek->len != HV_DEK_LEN)
		return hv_err_set(err, HV_E_INTERNAL,
		    "wrap: dek must be %d "
		    "bytes",
		    HV_DEK_LEN);
	if (aad_len > HV_AAD_MAX || (aad == NULL && aad_len > 0))
		return hv_err_set(err, HV_E_INTERNAL, "wrap: bad aad");
	return run((struct tpm *)h, op_wrap, &a, err);
}

struct unwrap_arg {
	uint32_t version;
	const uint8_t *aad;
	size_t aad_len;
	const TPM2B_PUBLIC *pub;
	const TPM2B_PRIVATE *priv;
	struct hv_secret **dek;
};

static enum hv_rc
op_unwrap(struct tpm *t, void *argp, struct hv_err *err)
{
	struct unwrap_arg *a = argp;
	TPM2B_AUTH auth = {0};
	TPM2B_SENSITIVE_DATA *data = NULL;
	struct slot *s = NULL;
	struct hv_secret *dek = NULL;
	ESYS_TR kek, obj = ESYS_TR_NONE;
	enum hv_rc rc;
	TSS2_RC r;

	rc = kek_usable(t, a->version, err);
	if (rc != HV_OK)
		return rc;
	rc = dek_auth(a->version, a->aad, a->aad_len, &auth, err);
	if (rc != HV_OK)
		return rc;
	rc = obj_get(t, OBJ_KEK, a->version, &kek, err);
	if (rc != HV_OK)
		return rc;
	rc = slot_alloc(t, &s, err);
	if (rc != HV_OK)
		return rc;
	ESYS_CALL(r, t, "Load",
	    Esys_Load_Async(t->ctx, kek, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	        ESYS_TR_NONE, a->priv, a->pub),
	    Esys_Load_Finish(t->ctx, &obj));
	if (r != TSS2_RC_SUCCESS)
		return tss_fail(t, r, HV_E_CRYPTO,
		    "unwrap: wrapped dek "
		    "rejected",
		    err);
	slot_take(t, s, OBJ_TEMP, 0, obj);
	ESYS_LOCAL(r, t, "TR_SetAuth", Esys_TR_SetAuth(t->ctx, obj, &auth));
	if (r != TSS2_RC_SUCCESS) {
		rc = tss_fail(t, r, HV_E_INTERNAL, "set auth", err);
		goto out;
	}
	ESYS_CALL(r, t, "Unseal",
	    Esys_Unseal_Async(
	        t->ctx, obj, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE),
	    Esys_Unseal_Finish(t->ctx, &data));
	if (r != TSS2_RC_SUCCESS) {
		rc = tss_fail(t, r, HV_E_CRYPTO,
		    "unwrap: wrapped dek does "
		    "not match its aad",
		    err);
		goto out;
	}
	if (data->size != HV_DEK_LEN) {
		rc = hv_err_set(err, HV_E_CRYPTO, "unwrap: wrong dek length");
		goto out;
	}
	dek = hv_secret_from(data->buffer, HV_DEK_LEN);
	if (dek == NULL) {
		rc = hv_err_set(err, HV_E_NOMEM, "out of memory");
		goto out;
	}
	*a->dek = dek;
	rc = HV_OK;
out:
	if (data != NULL) {
		hv_mem_zero(data, sizeof(*data));
		Esys_Free(data);
	}
	hv_mem_zero(&auth, sizeof(auth));
	if (s != NULL && s->kind == OBJ_TEMP)
		slot_flush(t, s);
	return rc;
}

static bool
seal_public_ok(const TPM2B_PUBLIC *pub)
{
	const TPMT_PUBLIC *p = &pub->publicArea;

	return p->type == TPM2_ALG_KEYEDHASH && p->nameAlg == TPM2_ALG_SHA256 &&
	    p->objectAttributes == SEAL_ATTRS && p->authPolicy.size == 0 &&
	    p->parameters.keyedHashDetail.scheme.scheme == TPM2_ALG_NULL;
}

static enum hv_rc
tpm_unwrap(struct hv_hsm *h, uint32_t kek_version, const uint8_t *aad,
    size_t aad_len, const uint8_t *in, size_t in_len, struct hv_secret **dek,
    struct hv_err *err)
{
	TPM2B_PUBLIC pub;
	TPM2B_PRIVATE priv;
	struct unwrap_arg a = {
	    .version = kek_version,
	    .aad = aad,
	    .aad_len = aad_len,
	    .pub = &pub,
	    .priv = &priv,
	    .dek = dek,
	};
	enum hv_rc rc;

	if (aad_len > HV_AAD_MAX || (aad == NULL && aad_len > 0) ||
	    in == NULL || in_len > HV_WRAPPED_MAX)
		return hv_err_set(err, HV_E_CRYPTO, "unwrap: bad input");
	rc = blob_unpack(DEK_MAGIC, in, in_len, &pub, &priv, err);
	if (rc != HV_OK) {
		if (err != NULL)
			(void)hv_err_prefix(err, "unwrap");
		return rc;
	}
	if (!seal_public_ok(&pub))
		return hv_err_set(
		    err, HV_E_CRYPTO, "unwrap: not a wrapped dek");
	return run((struct tpm *)h, op_unwrap, &a, err);
}

struct hmac_arg {
	const uint8_t *msg;
	size_t len;
	uint8_t *out;
};

static enum hv_rc
hmac_sequence(
    struct tpm *t, ESYS_TR key, struct hmac_arg *a, struct hv_err *err)
{
	TPM2B_AUTH auth = {0};
	TPM2B_MAX_BUFFER buf;
	TPM2B_DIGEST *res = NULL;
	TPMT_TK_HASHCHECK *check = NULL;
	ESYS_TR seq = ESYS_TR_NONE;
	struct slot *s = NULL;
	size_t off = 0, n;
	enum hv_rc rc;
	TSS2_RC r;

	rc = slot_alloc(t, &s, err);
	if (rc != HV_OK)
		return rc;
	ESYS_CALL(r, t, "HMAC_Start",
	    Esys_HMAC_Start_Async(t->ctx, key, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	        ESYS_TR_NONE, &auth, TPM2_ALG_SHA256),
	    Esys_HMAC_Start_Finish(t->ctx, &seq));
	if (r != TSS2_RC_SUCCESS)
		return tss_fail(t, r, HV_E_KEYSTORE, "hmac start", err);
	slot_take(t, s, OBJ_TEMP, 0, seq);
	while (a->len - off > t->hmac_chunk) {
		n = t->hmac_chunk;
		memcpy(buf.buffer, a->msg + off, n);
		buf.size = (uint16_t)n;
		ESYS_CALL(r, t, "SequenceUpdate",
		    Esys_SequenceUpdate_Async(t->ctx, seq, ESYS_TR_PASSWORD,
		        ESYS_TR_NONE, ESYS_TR_NONE, &buf),
		    Esys_SequenceUpdate_Finish(t->ctx));
		if (r != TSS2_RC_SUCCESS) {
			rc = tss_fail(t, r, HV_E_KEYSTORE, "hmac update", err);
			goto out;
		}
		off += n;
	}
	n = a->len - off;
	if (n > 0)
		memcpy(buf.buffer, a->msg + off, n);
	buf.size = (uint16_t)n;
	ESYS_CALL(r, t, "SequenceComplete",
	    Esys_SequenceComplete_Async(t->ctx, seq, ESYS_TR_PASSWORD,
	        ESYS_TR_NONE, ESYS_TR_NONE, &buf, ESYS_TR_RH_NULL),
	    Esys_SequenceComplete_Finish(t->ctx, &res, &check));
	if (r != TSS2_RC_SUCCESS) {
		rc = tss_fail(t, r, HV_E_KEYSTORE, "hmac complete", err);
		goto out;
	}
	slot_forget(s); /* the TPM flushed the sequence */
	s = NULL;
	if (res->size != HV_HMAC_LEN) {
		rc = hv_err_set(err, HV_E_INTERNAL, "hmac: wrong length");
		goto out;
	}
	memcpy(a->out, res->buffer, HV_HMAC_LEN);
	rc = HV_OK;
out:
	hv_mem_zero(&buf, sizeof(buf));
	Esys_Free(res);
	Esys_Free(check);
	if (s != NULL)
		slot_flush(t, s);
	return rc;
}

static enum hv_rc
op_hmac(struct tpm *t, void *argp, struct hv_err *err)
{
	struct hmac_arg *a = argp;
	TPM2B_MAX_BUFFER buf;
	TPM2B_DIGEST *res = NULL;
	ESYS_TR key;
	enum hv_rc rc;
	TSS2_RC r;

	rc = obj_get(t, OBJ_HMAC, 0, &key, err);
	if (rc != HV_OK)
		return rc;
	if (a->len > t->hmac_chunk)
		return hmac_sequence(t, key, a, err);
	if (a->len > 0)
		memcpy(buf.buffer, a->msg, a->len);
	buf.size = (uint16_t)a->len;
	ESYS_CALL(r, t, "HMAC",
	    Esys_HMAC_Async(t->ctx, key, ESYS_TR_PASSWORD, ESYS_TR_NONE,
	        ESYS_TR_NONE, &buf, TPM2_ALG_SHA256),
	    Esys_HMAC_Finish(t->ctx, &res));
	hv_mem_zero(&buf, sizeof(buf));
	if (r != TSS2_RC_SUCCESS)
		return tss_fail(t, r, HV_E_KEYSTORE, "hmac", err);
	if (res->size != HV_HMAC_LEN) {
		Esys_Free(res);
		return hv_err_set(err, HV_E_INTERNAL, "hmac: wrong length");
	}
	memcpy(a->out, res->buffer, HV_HMAC_LEN);
	Esys_Free(res);
	return HV_OK;
}

static enum hv_rc
tpm_hmac(struct hv_hsm *h, const uint8_t *msg, size_t len,
    uint8_t out[HV_HMAC_LEN], struct hv_err *err)
{
	struct hmac_arg a = {.msg = msg, .len = len, .out = out};

	if (msg == NULL && len > 0)
		return hv_err_set(err, HV_E_INTERNAL, "hmac: no message");
	return run((struct tpm *)h, op_hmac, &a, err);
}

struct random_arg {
	uint8_t *buf;
	size_t len;
};

static enum hv_rc
op_random(struct tpm *t, void *argp, struct hv_err *err)
{
	struct random_arg *a = argp;
	TPM2B_DIGEST *rnd = NULL;
	size_t off = 0, want;
	TSS2_RC r;

	while (off < a->len) {
		want = a->len - off;
		if (want > TPM_RANDOM_CHUNK)
			want = TPM_RANDOM_CHUNK;
		ESYS_CALL(r, t, "GetRandom",
		    Esys_GetRandom_Async(t->ctx, ESYS_TR_NONE, ESYS_TR_NONE,
		        ESYS_TR_NONE, (UINT16)want),
		    Esys_GetRandom_Finish(t->ctx, &rnd));
		if (r != TSS2_RC_SUCCESS) {
			hv_mem_zero(a->buf, a->len);
			return tss_fail(t, r, HV_E_KEYSTORE, "get random", err);
		}
		/* The TPM may return fewer bytes than asked. */
		if (rnd->size == 0 || rnd->size > want) {
			Esys_Free(rnd);
			hv_mem_zero(a->buf, a->len);
			return hv_err_set(err, HV_E_KEYSTORE,
			    "tpm get random: "
			    "bad length");
		}
		memcpy(a->buf + off, rnd->buffer, rnd->size);
		off += rnd->size;
		hv_mem_zero(rnd, sizeof(*rnd));
		Esys_Free(rnd);
		rnd = NULL;
	}
	return HV_OK;
}

static enum hv_rc
tpm_random(struct hv_hsm *h, uint8_t *buf, size_t len, struct hv_err *err)
{
	struct random_arg a = {.buf = buf, .len = len};

	if (len == 0)
		return HV_OK;
	if (buf == NULL)
		return hv_err_set(err, HV_E_INTERNAL, "random: no buffer");
	return run((struct tpm *)h, op_random, &a, err);
}

/* KEK list and disable touch only the metadata, never the TPM. */
static enum hv_rc
tpm_kek_list(struct hv_hsm *h, struct hv_kek_info *out, size_t max, size_t *n,
    struct hv_err *err)
{
	struct tpm *t = (struct tpm *)h;
	uint32_t active;
	size_t i;
	enum hv_rc rc;

	pthread_mutex_lock(&t->mu);
	rc = meta_refresh(t, err);
	if (rc != HV_OK)
		goto out;
	active = kek_active(t);
	for (i = 0; i < t->n_keks && i < max; i++) {
		out[i].version = t->keks[i].version;
		if (t->keks[i].disabled)
			out[i].state = HV_KEK_DISABLED;
		else if (t->keks[i].version == active)
			out[i].state = HV_KEK_ACTIVE;
		else
			out[i].state = HV_KEK_RETIRED;
	}
	*n = i;
out:
	pthread_mutex_unlock(&t->mu);
	return rc;
}

struct kek_create_arg {
	uint32_t *version;
};

static enum hv_rc
op_kek_create(struct tpm *t, void *argp, struct hv_err *err)
{
	struct kek_create_arg *a = argp;
	int lock = -1;
	enum hv_rc rc;

	rc = dir_lock(t, &lock, err);
	if (rc != HV_OK)
		return rc;
	rc = meta_refresh(t, err);
	if (rc == HV_OK)
		rc = do_create_kek(t, a->version, err);
	dir_unlock(&lock);
	return rc;
}

static enum hv_rc
tpm_kek_create(struct hv_hsm *h, uint32_t *version, struct hv_err *err)
{
	struct kek_create_arg a = {.version = version};

	return run((struct tpm *)h, op_kek_create, &a, err);
}

static enum hv_rc
tpm_kek_disable(struct hv_hsm *h, uint32_t version, struct hv_err *err)
{
	struct tpm *t = (struct tpm *)h;
	struct kek *k;
	int lock = -1;
	enum hv_rc rc;

	pthread_mutex_lock(&t->mu);
	rc = dir_lock(t, &lock, err);
	if (rc != HV_OK)
		goto out;
	rc = meta_refresh(t, err);
	if (rc != HV_OK)
		goto out;
	k = kek_find(t, version);
	if (k == NULL) {
		rc = hv_err_set(
		    err, HV_E_NOT_FOUND, "no kek version %" PRIu32, version);
		goto out;
	}
	if (k->disabled)
		goto out;
	if (version == kek_active(t)) {
		rc = hv_err_set(err, HV_E_CONFLICT,
		    "kek version %" PRIu32 " is active: rotate first", version);
		goto out;
	}
	k->disabled = true;
	rc = meta_write(t, err);
	if (rc != HV_OK)
		goto out;
	hv_log_info("tpm: disabled kek version %" PRIu32, version);
out:
	dir_unlock(&lock);
	pthread_mutex_unlock(&t->mu);
	return rc;
}

static enum hv_rc
op_probe(struct tpm *t, void *argp, struct hv_err *err)
{
	(void)argp;
	return read_properties(t, err);
}

static enum hv_rc
tpm_probe(struct hv_hsm *h, struct hv_hsm_status *st, struct hv_err *err)
{
	struct tpm *t = (struct tpm *)h;
	struct hv_err ignore;
	enum hv_rc rc;

	rc = run(t, op_probe, NULL, err);
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&t->mu);
	(void)snprintf(st->backend, sizeof(st->backend), "tpm");
	(void)snprintf(st->token, sizeof(st->token), "%s",
	    t->manufacturer[0] != '\0' ? t->manufacturer : "unknown");
	(void)snprintf(st->detail, sizeof(st->detail),
	    "vendor '%s', "
	    "firmware %08" PRIx32 ".%08" PRIx32 ", tcti '%.64s'",
	    t->vendor, t->fw1, t->fw2,
	    t->tcti_conf != NULL ? t->tcti_conf : "(default)");
	st->reachable = rc == HV_OK;
	if (meta_refresh(t, &ignore) == HV_OK)
		st->active_kek = kek_active(t);
	st->reconnects = t->reconnects;
	pthread_mutex_unlock(&t->mu);
	return rc;
}

static void
tpm_close(struct hv_hsm *h)
{
	struct tpm *t = (struct tpm *)h;
	struct sigpipe_guard g;

	if (t == NULL)
		return;
	sigpipe_block(&g);
	tpm_disconnect(t, true);
	sigpipe_restore(&g);
	watchdog_stop(t);
	keks_clear(t);
	hv_free(t->hmac_blob);
	hv_free(t->tcti_conf);
	hv_free(t->data_dir);
	pthread_mutex_destroy(&t->mu);
	hv_free(t);
}

static const struct hv_hsm_ops tpm_ops = {
    .name = "tpm",
    .ensure_keys = tpm_ensure_keys,
    .wrap = tpm_wrap,
    .unwrap = tpm_unwrap,
    .hmac = tpm_hmac,
    .random = tpm_random,
    .kek_list = tpm_kek_list,
    .kek_create = tpm_kek_create,
    .kek_disable = tpm_kek_disable,
    .probe = tpm_probe,
    .close = tpm_close,
};

static enum hv_rc
op_nothing(struct tpm *t, void *argp, struct hv_err *err)
{
	(void)t;
	(void)argp;
	(void)err;
	return HV_OK;
}

enum hv_rc
hv_tpm_open(
    const struct hv_hsm_config *cfg, struct hv_hsm **out, struct hv_err *err)
{
	struct tpm *t = NULL;
	struct stat st;
	size_t i;
	enum hv_rc rc;

	if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
		return hv_err_set(err, HV_E_CONFIG,
		    "tpm key store needs a "
		    "data directory");
	if (stat(cfg->data_dir, &st) != 0) {
		if (errno != ENOENT || mkdir(cfg->data_dir, 0700) != 0)
			return hv_err_set(err, HV_E_CONFIG,
			    "cannot use data "
			    "directory '%s': %s",
			    cfg->data_dir, strerror(errno));
	} else if (!S_ISDIR(st.st_mode)) {
		return hv_err_set(
		    err, HV_E_CONFIG, "'%s' is not a directory", cfg->data_dir);
	}
	t = hv_calloc(1, sizeof(*t));
	if (t == NULL)
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	t->base.ops = &tpm_ops;
	for (i = 0; i < TPM_SLOTS; i++)
		slot_forget(&t->slots[i]);
	t->breaker_ms =
	    cfg->breaker_ms != 0 ? cfg->breaker_ms : DEFAULT_BREAKER_MS;
	t->retry_max = cfg->retry_max != 0 ? cfg->retry_max : DEFAULT_RETRY_MAX;
	t->hmac_chunk = TPM_HMAC_CHUNK;
	t->data_dir = hv_strdup(cfg->data_dir);
	if (cfg->tpm_tcti != NULL && cfg->tpm_tcti[0] != '\0')
		t->tcti_conf = hv_strdup(cfg->tpm_tcti);
	if (t->data_dir == NULL ||
	    (cfg->tpm_tcti != NULL && cfg->tpm_tcti[0] != '\0' &&
	        t->tcti_conf == NULL)) {
		hv_free(t->data_dir);
		hv_free(t->tcti_conf);
		hv_free(t);
		return hv_err_set(err, HV_E_NOMEM, "out of memory");
	}
	if (pthread_mutex_init(&t->mu, NULL) != 0) {
		hv_free(t->data_dir);
		hv_free(t->tcti_conf);
		hv_free(t);
		return hv_err_set(err, HV_E_INTERNAL, "mutex init failed");
	}
	watchdog_start(t);
	rc = meta_refresh(t, err);
	if (rc == HV_OK)
		rc = run(t, op_nothing, NULL, err);
	if (rc != HV_OK) {
		tpm_close(&t->base);
		return rc;
	}
	*out = &t->base;
	return HV_OK;
}
