/*
 * swtpm: a private software TPM 2.0 for one test process.
 *
 * hv_swtpm_start() makes a temporary directory (state in dir/state, log in
 * dir/swtpm.log), picks a free loopback port pair (server P, control P+1,
 * in 20000-40000) and runs `swtpm socket --tpm2` on it as a child of the
 * test (it dies with the test: PR_SET_PDEATHSIG). The TPM is manufactured
 * on first start and started up (not-need-init, startup-clear), so it is
 * ready for commands when start returns; tcti holds the TCTI string.
 *
 * The TPM's state survives hv_swtpm_stop()/hv_swtpm_kill() followed by
 * hv_swtpm_resume() (same port, same state directory): that is how tests
 * simulate a TPM (or its host) restarting. hv_swtpm_pause() and
 * hv_swtpm_continue() freeze and thaw the process (a hung TPM).
 *
 * swtpm serves one client connection at a time: a second handle against
 * the same swtpm waits until the first one disconnects.
 *
 * A missing swtpm binary makes start exit 77 (skip) through
 * hv_test_missing(). Not thread-safe: call from the test's main thread.
 */
#ifndef HV_TEST_SWTPM_H
#define HV_TEST_SWTPM_H

#include <stdbool.h>
#include <sys/types.h>

struct hv_swtpm {
	char dir[256];     /* temporary directory */
	char state[300];   /* dir/state: the TPM's NV state */
	char tcti[128];    /* "swtpm:host=127.0.0.1,port=P" */
	unsigned int port; /* server port; control is port + 1 */
	pid_t pid;         /* 0 while not running */
};

/* Start a fresh TPM; exits the test on failure (77 when swtpm is absent). */
void hv_swtpm_start(struct hv_swtpm *s);

/* Terminate (SIGTERM) and reap; the state is kept. NULL-safe, idempotent. */
void hv_swtpm_stop(struct hv_swtpm *s);

/* Kill (SIGKILL) and reap, as a crash would; the state is kept. */
void hv_swtpm_kill(struct hv_swtpm *s);

/*
 * Start again on the same port with the same state after stop or kill.
 * Returns 0, or -1 when it did not come up within a few seconds.
 */
int hv_swtpm_resume(struct hv_swtpm *s) __attribute__((warn_unused_result));

/* Stop and resume: a TPM restart (TPM2_Startup CLEAR; transients gone). */
int hv_swtpm_restart(struct hv_swtpm *s) __attribute__((warn_unused_result));

/* Freeze (SIGSTOP) / thaw (SIGCONT) the running swtpm. */
void hv_swtpm_pause(struct hv_swtpm *s);
void hv_swtpm_continue(struct hv_swtpm *s);

/* Whether the swtpm process is alive. */
bool hv_swtpm_running(const struct hv_swtpm *s);

/* Stop and remove the temporary directory. */
void hv_swtpm_destroy(struct hv_swtpm *s);

#endif
