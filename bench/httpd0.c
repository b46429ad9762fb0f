/*
 * hv-httpd0: the HTTP ceiling of the benchmark, and its stand-in provider.
 *
 * An empty libmicrohttpd 0.9.75 handler set up like src/http.c (internal
 * polling thread, epoll, a thread pool of 2 x cores unless --threads,
 * answer on the second access-handler call, MHD_RESPMEM_MUST_COPY), so
 * that what it serves per second is what MHD itself allows hsmvault on
 * this machine. Every request, whatever its method and path, gets 200 and
 * a small JSON body (like a provider's answer to `use`); a request body
 * is read and dropped.
 *
 * Usage: hv-httpd0 --port N [--threads N] [--pidfile F]
 * Listens on 127.0.0.1 only; runs until SIGTERM or SIGINT.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char body[] =
    "{\"object\":\"balance\",\"available\":[{\"amount\":0,"
    "\"currency\":\"usd\"}],\"livemode\":false}";

static int first_call_marker;

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_size, void **state)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload;
	/* answering on the first call makes MHD close the connection */
	if (*state == NULL) {
		*state = &first_call_marker;
		return MHD_YES;
	}
	if (*upload_size != 0) {
		*upload_size = 0; /* dropped */
		return MHD_YES;
	}
	r = MHD_create_response_from_buffer(
	    sizeof(body) - 1, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	(void)MHD_add_response_header(r, "Content-Type", "application/json");
	ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static long
num_arg(const char *s, long lo, long hi)
{
	char *end = NULL;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "hv-httpd0: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

int
main(int argc, char **argv)
{
	struct MHD_Daemon *d;
	struct sockaddr_in sa;
	const char *pidfile = NULL;
	long port = 0, threads = 0, cores;
	unsigned int flags;
	sigset_t set;
	int i, sig;

	for (i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--port") == 0)
			port = num_arg(argv[i + 1], 1, 65535);
		else if (strcmp(argv[i], "--threads") == 0)
			threads = num_arg(argv[i + 1], 1, 256);
		else if (strcmp(argv[i], "--pidfile") == 0)
			pidfile = argv[i + 1];
		else
			break;
	}
	if (i != argc || port == 0) {
		fprintf(stderr,
		    "usage: hv-httpd0 --port N [--threads N] "
		    "[--pidfile F]\n");
		return 2;
	}
	if (threads == 0) {
		cores = sysconf(_SC_NPROCESSORS_ONLN);
		threads = cores < 1 ? 2 : cores * 2;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	flags =
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
		flags |= MHD_USE_EPOLL;
	if (threads > 1)
		d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL,
		    on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
		    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
		    MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)threads,
		    MHD_OPTION_END);
	else
		d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL,
		    on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
		    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30,
		    MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "hv-httpd0: cannot listen on port %ld\n", port);
		return 1;
	}
	if (pidfile != NULL) {
		FILE *f = fopen(pidfile, "w");

		if (f != NULL) {
			fprintf(f, "%ld\n", (long)getpid());
			fclose(f);
		}
	}
	while (sigwait(&set, &sig) != 0)
		;
	MHD_stop_daemon(d);
	return 0;
}
