/*
 * swtpm: start, stop and restart a private swtpm for one test process.
 */
#include "swtpm.h"
#include "testenv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PORT_LO     20000u
#define PORT_HI     32700u /* below the ephemeral range (32768-) */
#define START_TRIES 20
#define READY_MS    5000

static void
nap_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Whether a TCP port on 127.0.0.1 can be bound right now. */
static bool
port_free(unsigned int port)
{
	struct sockaddr_in a;
	int fd, one = 1;
	bool ok;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

/*
 * Connect to the server port and send TPM2_GetRandom(8). Returns 1 when
 * the TPM answers TPM_RC_SUCCESS, 0 when nothing listens yet, -1 when it
 * answers with an error (0x101: failure mode, seen now and then on a
 * freshly manufactured swtpm).
 */
static int
tpm_answers(unsigned int port)
{
	static const unsigned char cmd[] = {
	    0x80,
	    0x01,
	    0x00,
	    0x00,
	    0x00,
	    0x0c, /* no sessions, size */
	    0x00,
	    0x00,
	    0x01,
	    0x7b, /* TPM2_CC_GetRandom */
	    0x00,
	    0x08,
	};
	unsigned char rsp[64];
	struct sockaddr_in a;
	struct timeval tv = {2, 0};
	size_t got = 0;
	ssize_t n;
	int fd, res = 0;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		goto out;
	if (send(fd, cmd, sizeof(cmd), MSG_NOSIGNAL) != (ssize_t)sizeof(cmd))
		goto out;
	while (got < 10) {
		n = recv(fd, rsp + got, sizeof(rsp) - got, 0);
		if (n <= 0)
			goto out;
		got += (size_t)n;
	}
	res = (rsp[6] | rsp[7] | rsp[8] | rsp[9]) == 0 ? 1 : -1;
	if (res < 0)
		fprintf(stderr,
		    "swtpm on port %u answers rc 0x%02x%02x%02x%02x\n", port,
		    rsp[6], rsp[7], rsp[8], rsp[9]);
out:
	close(fd);
	return res;
}

static unsigned int
random_port(void)
{
	static unsigned int seq;
	unsigned int x;
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	x = (unsigned int)getpid() * 2654435761u ^ (unsigned int)ts.tv_nsec ^
	    (++seq * 40503u);
	x ^= x >> 13;
	return PORT_LO + (x % ((PORT_HI - PORT_LO) / 2)) * 2;
}

/* Fork and exec swtpm; 0 when it answers on its port, -1 otherwise. */
static int
spawn(struct hv_swtpm *s)
{
	char server[128], ctrl[128], state[340], logpath[300];
	pid_t pid;
	int fd, st, waited, ready;

	snprintf(server, sizeof(server), "type=tcp,port=%u,bindaddr=127.0.0.1",
	    s->port);
	snprintf(ctrl, sizeof(ctrl), "type=tcp,port=%u,bindaddr=127.0.0.1",
	    s->port + 1);
	snprintf(state, sizeof(state), "dir=%s", s->state);
	snprintf(logpath, sizeof(logpath), "%s/swtpm.log", s->dir);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			(void)dup2(fd, 1);
			(void)dup2(fd, 2);
			close(fd);
		}
		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0) {
			(void)dup2(fd, 0);
			close(fd);
		}
		execlp("swtpm", "swtpm", "socket", "--tpm2", "--tpmstate",
		    state, "--server", server, "--ctrl", ctrl, "--flags",
		    "not-need-init,startup-clear", (char *)NULL);
		_exit(127);
	}
	for (waited = 0; waited < READY_MS; waited += 10) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return -1; /* exited: port taken, or broken */
		ready = tpm_answers(s->port);
		if (ready < 0)
			break;
		if (ready > 0) {
			s->pid = pid;
			snprintf(s->tcti, sizeof(s->tcti),
			    "swtpm:host=127.0.0.1,port=%u", s->port);
			return 0;
		}
		nap_ms(10);
	}
	kill(pid, SIGKILL);
	(void)waitpid(pid, &st, 0);
	return -1;
}

void
hv_swtpm_start(struct hv_swtpm *s)
{
	const char *tmp = getenv("TMPDIR");
	int i;

	if (hv_test_sh("command -v swtpm >/dev/null 2>&1") != 0)
		hv_test_missing("swtpm (Debian package swtpm)");
	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "%s/hvtpm.XXXXXX",
	    tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(s->dir) == NULL) {
		fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
		exit(1);
	}
	snprintf(s->state, sizeof(s->state), "%s/state", s->dir);
	if (mkdir(s->state, 0700) != 0) {
		fprintf(stderr, "mkdir %s: %s\n", s->state, strerror(errno));
		exit(1);
	}
	for (i = 0; i < START_TRIES; i++) {
		s->port = random_port();
		if (!port_free(s->port) || !port_free(s->port + 1))
			continue;
		if (spawn(s) == 0)
			return;
		/* A TPM that came up in failure mode: manufacture anew. */
		(void)hv_test_sh("rm -rf '%s'/*", s->state);
	}
	fprintf(stderr, "swtpm did not start (see %s/swtpm.log)\n", s->dir);
	exit(1);
}

static void
signal_and_reap(struct hv_swtpm *s, int sig)
{
	int st;

	if (s == NULL || s->pid <= 0)
		return;
	kill(s->pid, SIGCONT); /* a paused one must see SIGTERM */
	kill(s->pid, sig);
	(void)waitpid(s->pid, &st, 0);
	s->pid = 0;
}

void
hv_swtpm_stop(struct hv_swtpm *s)
{
	signal_and_reap(s, SIGTERM);
}

void
hv_swtpm_kill(struct hv_swtpm *s)
{
	signal_and_reap(s, SIGKILL);
}

int
hv_swtpm_resume(struct hv_swtpm *s)
{
	int i;

	if (s->pid > 0)
		return 0;
	/* The old listener may linger for a moment after a kill. */
	for (i = 0; i < 50; i++) {
		if (spawn(s) == 0)
			return 0;
		nap_ms(50);
	}
	return -1;
}

int
hv_swtpm_restart(struct hv_swtpm *s)
{
	hv_swtpm_stop(s);
	return hv_swtpm_resume(s);
}

void
hv_swtpm_pause(struct hv_swtpm *s)
{
	if (s->pid > 0)
		kill(s->pid, SIGSTOP);
}

void
hv_swtpm_continue(struct hv_swtpm *s)
{
	if (s->pid > 0)
		kill(s->pid, SIGCONT);
}

bool
hv_swtpm_running(const struct hv_swtpm *s)
{
	return s->pid > 0 && kill(s->pid, 0) == 0;
}

void
hv_swtpm_destroy(struct hv_swtpm *s)
{
	hv_swtpm_stop(s);
	if (s->dir[0] == '/' && strstr(s->dir, "hvtpm.") != NULL)
		(void)hv_test_sh("rm -rf '%s'", s->dir);
	s->dir[0] = '\0';
}
