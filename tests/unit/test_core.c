/* Unit tests of err, mem, cfg and the access log of log (line, buffer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cfg.h"
#include "err.h"
#include "log.h"
#include "mem.h"

static void
test_err_codes(void **state)
{
	struct hv_err err = {0};
	char big[600];

	(void)state;
	assert_int_equal(hv_rc_http(HV_E_INVALID), 400);
	assert_int_equal(hv_rc_http(HV_E_UNAUTHORIZED), 401);
	assert_int_equal(hv_rc_http(HV_E_FORBIDDEN), 403);
	assert_int_equal(hv_rc_http(HV_E_NOT_FOUND), 404);
	assert_int_equal(hv_rc_http(HV_E_REVOKED), 409);
	assert_int_equal(hv_rc_http(HV_E_TOO_LARGE), 413);
	assert_int_equal(hv_rc_http(HV_E_MEDIA_TYPE), 415);
	assert_int_equal(hv_rc_http(HV_E_KEYSTORE), 503);
	assert_int_equal(hv_rc_http(HV_E_DATABASE), 503);
	assert_int_equal(hv_rc_http(HV_E_INTERNAL), 500);
	assert_string_equal(hv_rc_code(HV_E_REVOKED), "credential_revoked");
	assert_string_equal(hv_rc_code(HV_E_KEYSTORE), "keystore_unavailable");
	assert_string_equal(hv_rc_code(HV_E_EXPIRED), "credential_expired");
	assert_int_equal(hv_rc_http(HV_E_EXPIRED), 409);
	assert_string_equal(hv_rc_code(HV_E_DATABASE), "database_unavailable");
	assert_string_equal(hv_rc_code(HV_E_TOO_LARGE), "payload_too_large");
	assert_string_equal(
	    hv_rc_code(HV_E_MEDIA_TYPE), "unsupported_media_type");
	/* every code has a description */
	for (int i = 0; i <= HV_E_EXPIRED; i++)
		assert_true(strlen(hv_strerror((enum hv_rc)i)) > 0);
	assert_int_equal(
	    hv_err_set(&err, HV_E_CONFLICT, "x %d", 42), HV_E_CONFLICT);
	assert_string_equal(err.msg, "x 42");
	hv_err_prefix(&err, "op");
	assert_string_equal(err.msg, "op: x 42");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	hv_err_set(&err, HV_E_INVALID, "%s", big);
	assert_int_equal(strlen(err.msg), HV_ERR_MSG_MAX - 1);
	assert_string_equal(err.msg + HV_ERR_MSG_MAX - 4, "...");
	/* NULL err is allowed */
	assert_int_equal(hv_err_set(NULL, HV_E_IO, "x"), HV_E_IO);
}

static void
test_secret(void **state)
{
	struct hv_secret *s;
	unsigned char z[64] = {0};

	(void)state;
	s = hv_secret_from("hello", 5);
	assert_non_null(s);
	assert_int_equal(s->len, 5);
	assert_memory_equal(s->buf, "hello", 5);
	assert_int_equal(s->buf[5], 0);
	hv_secret_free(&s);
	assert_null(s);
	hv_secret_free(&s); /* NULL-safe */
	s = hv_secret_new(4096);
	assert_non_null(s);
	assert_memory_equal(s->buf, z, sizeof(z));
	assert_int_equal(s->buf[4096], 0);
	hv_secret_free(&s);
	assert_true(hv_ct_equal("abcd", "abcd", 4));
	assert_false(hv_ct_equal("abcd", "abce", 4));
	assert_true(hv_ct_equal("", "", 0));
}

static void
test_secret_slabs(void **state)
{
	struct hv_secret *v[600];
	size_t sizes[] = {0, 1, 32, 63, 64, 255, 1000, 4095, 4096, 20000};
	size_t i, j;

	(void)state;
	/* many live secrets of every class, each keeps its own bytes */
	for (i = 0; i < 600; i++) {
		v[i] = hv_secret_new(sizes[i % 10]);
		assert_non_null(v[i]);
		assert_true(v[i]->cap > v[i]->len);
		memset(v[i]->buf, (int)(i & 0xff), v[i]->len);
	}
	for (i = 0; i < 600; i++) {
		for (j = 0; j < v[i]->len; j++)
			assert_int_equal(v[i]->buf[j], i & 0xff);
		assert_int_equal(v[i]->buf[v[i]->len], 0);
	}
	for (i = 0; i < 600; i++)
		hv_secret_free(&v[i]);
	/* reused slots come back wiped */
	for (i = 0; i < 600; i++) {
		v[i] = hv_secret_new(sizes[i % 10]);
		assert_non_null(v[i]);
		for (j = 0; j <= v[i]->len; j++)
			assert_int_equal(v[i]->buf[j], 0);
	}
	for (i = 0; i < 600; i++)
		hv_secret_free(&v[i]);
}

static void
test_fault_hook(void **state)
{
	void *p;
	struct hv_secret *s;

	(void)state;
	hv_mem_fail_after(2);
	p = hv_malloc(10);
	assert_non_null(p);
	hv_free(p);
	s = hv_secret_new(10);
	assert_null(s);
	p = hv_malloc(10); /* hook fired once, disabled now */
	assert_non_null(p);
	hv_free(p);
	hv_mem_fail_after(0);
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
test_cfg_layers(void **state)
{
	struct hv_cfg c;
	struct hv_err err = {0};
	char dir[] = "/tmp/hvcfg.XXXXXX", path[64], pin[64], out[64];
	FILE *f;
	char line[256], *pin_env;
	int saw_url = 0, saw_pin = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/c.conf", dir);
	snprintf(pin, sizeof(pin), "%s/pin", dir);
	snprintf(out, sizeof(out), "%s/out.conf", dir);
	write_file(pin, "1234\n");
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f,
	    "# comment\n database_url = host=/x dbname=a \n"
	    "listen=127.0.0.1:1\nkeystore = pkcs11\n"
	    "pkcs11_pin_file = %s\nservice_stripe_base_url = "
	    "http://127.0.0.1:9/\nallow_private_targets = 1\n",
	    pin);
	fclose(f);
	hv_cfg_init(&c);
	assert_int_equal(hv_cfg_load_file(&c, path, &err), HV_OK);
	assert_string_equal(c.database_url, "host=/x dbname=a");
	assert_string_equal(c.listen, "127.0.0.1:1");
	assert_true(c.allow_private_targets);
	assert_string_equal(
	    hv_cfg_service_url(&c, "STRIPE"), "http://127.0.0.1:9/");
	/* environment overrides the file */
	setenv("HSMVAULT_LISTEN", "127.0.0.1:2", 1);
	setenv("HSMVAULT_SERVICE_GITHUB_BASE_URL", "http://127.0.0.1:3", 1);
	unsetenv("HSMVAULT_PKCS11_PIN");
	setenv("HSMVAULT_SOMETHING_ELSE", "1", 1); /* not ours: ignored */
	assert_int_equal(hv_cfg_load_env(&c, &err), HV_OK);
	unsetenv("HSMVAULT_SOMETHING_ELSE");
	assert_string_equal(c.listen, "127.0.0.1:2");
	setenv("HSMVAULT_DB_POOL", "many", 1); /* ours, bad value: fatal */
	assert_int_equal(hv_cfg_load_env(&c, &err), HV_E_CONFIG);
	unsetenv("HSMVAULT_DB_POOL");
	assert_string_equal(
	    hv_cfg_service_url(&c, "github"), "http://127.0.0.1:3");
	/* a flag overrides the environment */
	assert_int_equal(hv_cfg_set(&c, "listen", "127.0.0.1:4", &err), HV_OK);
	assert_string_equal(c.listen, "127.0.0.1:4");
	/* the PIN never comes from a flag */
	assert_int_equal(hv_cfg_set(&c, "pkcs11-pin", "1", &err), HV_E_CONFIG);
	assert_int_equal(hv_cfg_resolve_pin(&c, &err), HV_OK);
	assert_non_null(c.pin);
	assert_string_equal((const char *)c.pin->buf, "1234");
	setenv("HSMVAULT_PKCS11_PIN", "9999", 1);
	pin_env = getenv("HSMVAULT_PKCS11_PIN");
	assert_int_equal(hv_cfg_resolve_pin(&c, &err), HV_OK);
	assert_string_equal((const char *)c.pin->buf, "9999");
	/* read once, then gone from the environment, wiped where it was */
	assert_null(getenv("HSMVAULT_PKCS11_PIN"));
	assert_int_equal(pin_env[0], '\0');
	assert_int_equal(hv_cfg_resolve_pin(&c, &err), HV_OK);
	assert_string_equal((const char *)c.pin->buf, "1234");
	/* bad values */
	assert_int_equal(hv_cfg_set(&c, "db_pool", "x", &err), HV_E_CONFIG);
	assert_int_equal(hv_cfg_set(&c, "db_pool", "-1", &err), HV_E_CONFIG);
	assert_int_equal(hv_cfg_set(&c, "nonsense", "1", &err), HV_E_CONFIG);
	assert_int_equal(hv_cfg_set(&c, "allow_private_targets", "maybe", &err),
	    HV_E_CONFIG);
	/* the written file holds the pin file path, never the pin */
	assert_int_equal(hv_cfg_write(&c, out, &err), HV_OK);
	f = fopen(out, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "database_url = host=/x dbname=a"))
			saw_url = 1;
		if (strstr(line, "pkcs11_pin_file"))
			saw_pin = 1;
		assert_null(strstr(line, "9999"));
		assert_null(strstr(line, "1234"));
	}
	fclose(f);
	assert_true(saw_url && saw_pin);
	{
		struct stat st;
		assert_int_equal(stat(out, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
	}
	unsetenv("HSMVAULT_LISTEN");
	unsetenv("HSMVAULT_SERVICE_GITHUB_BASE_URL");
	hv_cfg_release(&c);
	/* malformed file */
	write_file(path, "no equals sign here\n");
	hv_cfg_init(&c);
	assert_int_equal(hv_cfg_load_file(&c, path, &err), HV_E_CONFIG);
	assert_non_null(strstr(err.msg, ":1"));
	assert_int_equal(
	    hv_cfg_load_file(&c, "/nonexistent/x", &err), HV_E_CONFIG);
	hv_cfg_release(&c);
	(void)!system("rm -rf /tmp/hvcfg.*");
}

/* The access-log line is JSON with every field as given, escaped. */
static void
test_access_line(void **state)
{
	struct timespec now = {.tv_sec = 1795000000, .tv_nsec = 987654321};
	struct hv_access_rec r = {
	    .request_id = "0b6f1c2e-0000-4000-8000-000000000001",
	    .method = "GET",
	    .route = "/v1/credentials/{id}",
	    .path = "/v1/\"quoted\"\\back\x01\x1f",
	    .status = 200,
	    .duration_us = 1429,
	};
	char line[4096], big[HV_LOG_FIELD_MAX * 2];
	json_t *j;
	json_error_t je;
	size_t n;

	(void)state;
	n = hv_log_access_format(line, sizeof(line), &r, &now);
	assert_true(n > 0 && n == strlen(line));
	j = json_loads(line, 0, &je);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "ts")),
	    "2026-11-18T11:06:40.987Z");
	assert_string_equal(
	    json_string_value(json_object_get(j, "msg")), "request");
	assert_string_equal(
	    json_string_value(json_object_get(j, "path")), r.path);
	assert_string_equal(
	    json_string_value(json_object_get(j, "route")), r.route);
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
	assert_true(json_real_value(json_object_get(j, "duration_ms")) == 1.42);
	/* absent optional fields are left out, not null */
	assert_null(json_object_get(j, "remote_addr"));
	assert_null(json_object_get(j, "key_id"));
	assert_null(json_object_get(j, "termination"));
	json_decref(j);

	r.remote_addr = "::1";
	r.key_id = "5f2c";
	r.termination = "client_abort";
	r.duration_us = 12000000;
	assert_true(hv_log_access_format(line, sizeof(line), &r, &now) > 0);
	j = json_loads(line, 0, &je);
	assert_non_null(j);
	assert_string_equal(
	    json_string_value(json_object_get(j, "remote_addr")), "::1");
	assert_string_equal(
	    json_string_value(json_object_get(j, "termination")),
	    "client_abort");
	assert_true(
	    json_real_value(json_object_get(j, "duration_ms")) == 12000.0);
	json_decref(j);

	/* a field past the limit is cut and the line stays JSON */
	memset(big, '\\', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	r.path = big;
	n = hv_log_access_format(line, sizeof(line), &r, &now);
	assert_true(n > 0);
	j = json_loads(line, 0, &je);
	assert_non_null(j);
	assert_true(strlen(json_string_value(json_object_get(j, "path"))) <
	    sizeof(big) - 1);
	json_decref(j);

	/* too small a buffer: nothing, never a cut line */
	assert_int_equal(hv_log_access_format(line, 40, &r, &now), 0);
	assert_int_equal(hv_log_access_format(line, 200, &r, &now), 0);
}

/* stderr into a fresh temporary file; returns the saved stderr. */
static int
stderr_to(char *path)
{
	int fd, saved;

	strcpy(path, "/tmp/hv-logbuf-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
	return saved;
}

static void
stderr_back(int saved)
{
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
}

static off_t
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Wait up to 5 s for path to grow past min bytes; returns its size. */
static off_t
wait_size(const char *path, off_t min)
{
	off_t n = file_size(path);
	int i;

	for (i = 0; i < 500 && n <= min; i++) {
		usleep(10000);
		n = file_size(path);
	}
	return n;
}

static void
log_one(const char *id)
{
	struct hv_access_rec r = {
	    .request_id = id,
	    .method = "GET",
	    .route = "/v1/credentials/{id}",
	    .path = "/v1/credentials/0b6f1c2e-0000-4000-8000-000000000001",
	    .status = 200,
	    .duration_us = 321,
	    .remote_addr = "127.0.0.1",
	};

	hv_log_access(&r);
}

#define BUF_THREADS 4
#define BUF_LINES   3000

static void *
buf_writer(void *arg)
{
	char id[32];
	int i, t = (int)(intptr_t)arg;

	for (i = 0; i < BUF_LINES; i++) {
		snprintf(id, sizeof(id), "t%d-%d", t, i);
		log_one(id);
	}
	return NULL;
}

/*
 * The access-log buffer: lines wait for the flusher (here 10 s) until
 * another record is logged, a buffer fills or the buffer stops, and then
 * come out whole and in order, also from several threads at once; with a
 * short interval the flusher writes them by itself.
 */
static void
test_access_buffer(void **state)
{
	char path[64], *text, *line, *save;
	pthread_t th[BUF_THREADS];
	off_t held, after_info, after_fill, fill_base, timed;
	int saved, t, next[BUF_THREADS] = {0}, n_req = 0, n_info = 0, bad = 0;
	int first_is_req = -1, rc_start;
	FILE *f;
	long sz;

	(void)state;
	saved = stderr_to(path);
	rc_start = hv_log_buffer_start(10000);
	log_one("held-1");
	log_one("held-2");
	usleep(50000);
	held = file_size(path);
	hv_log_info("after two requests");
	after_info = file_size(path);
	/* more than a buffer's worth: the flusher writes without waiting */
	fill_base = after_info;
	for (t = 0; t < BUF_THREADS; t++)
		pthread_create(&th[t], NULL, buf_writer, (void *)(intptr_t)t);
	for (t = 0; t < BUF_THREADS; t++)
		pthread_join(th[t], NULL);
	after_fill = wait_size(path, fill_base);
	hv_log_buffer_stop();
	/* a short interval: written by the flusher alone */
	hv_log_buffer_start(20);
	timed = file_size(path);
	log_one("timed");
	timed = wait_size(path, timed) - timed;
	hv_log_buffer_stop();
	/* stopped: one write per line again */
	log_one("direct");
	stderr_back(saved);

	assert_int_equal(rc_start, 0);
	assert_int_equal(held, 0);
	assert_true(after_info > 0);
	assert_true(after_fill > fill_base);
	assert_true(timed > 0);

	f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	sz = ftell(f);
	rewind(f);
	text = malloc((size_t)sz + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)sz, f), (size_t)sz);
	text[sz] = '\0';
	fclose(f);
	unlink(path);
	assert_true(sz > 0 && text[sz - 1] == '\n');
	for (line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		json_error_t je;
		json_t *j = json_loads(line, 0, &je);
		const char *msg, *id;
		int tt, i;

		if (j == NULL) {
			bad++;
			continue;
		}
		msg = json_string_value(json_object_get(j, "msg"));
		id = json_string_value(json_object_get(j, "request_id"));
		if (msg != NULL && strcmp(msg, "request") == 0 && id != NULL) {
			if (first_is_req < 0)
				first_is_req = strcmp(id, "held-1") == 0;
			if (sscanf(id, "t%d-%d", &tt, &i) == 2 && tt >= 0 &&
			    tt < BUF_THREADS) {
				/* each thread's lines in the order it logged them */
				if (i != next[tt])
					bad++;
				next[tt] = i + 1;
			}
			n_req++;
		} else if (msg != NULL &&
		    strcmp(msg, "after two requests") == 0) {
			/* after the two lines it followed, not before */
			if (n_req != 2)
				bad++;
			n_info++;
		}
		json_decref(j);
	}
	free(text);
	assert_int_equal(bad, 0);
	assert_int_equal(first_is_req, 1);
	assert_int_equal(n_info, 1);
	assert_int_equal(n_req, 2 + BUF_THREADS * BUF_LINES + 2);
	for (t = 0; t < BUF_THREADS; t++)
		assert_int_equal(next[t], BUF_LINES);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_err_codes),
	    cmocka_unit_test(test_secret),
	    cmocka_unit_test(test_secret_slabs),
	    cmocka_unit_test(test_fault_hook),
	    cmocka_unit_test(test_cfg_layers),
	    cmocka_unit_test(test_access_line),
	    cmocka_unit_test(test_access_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
