/* Unit tests of uuid: generation, strict validation, parse and format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uuid.h"

static void
test_valid(void **state)
{
	static const char *const good[] = {
	    "00000000-0000-0000-0000-000000000000",
	    "123e4567-e89b-12d3-a456-426614174000",
	    "123E4567-E89B-12D3-A456-426614174000",
	    "aBcDeF01-2345-6789-abcd-EF0123456789",
	    "ffffffff-ffff-ffff-ffff-ffffffffffff",
	};
	static const char *const bad[] = {
	    "",
	    "123e4567-e89b-12d3-a456-42661417400",   /* 35 chars */
	    "123e4567-e89b-12d3-a456-4266141740000", /* 37 chars */
	    "123e4567e89b12d3a456426614174000",      /* no hyphens */
	    "{123e4567-e89b-12d3-a456-426614174000}",
	    "urn:uuid:123e4567-e89b-12d3-a456-426614174000",
	    " 123e4567-e89b-12d3-a456-426614174000",
	    "123e4567-e89b-12d3-a456-426614174000 ",
	    "123e4567-e89b-12d3-a456-42661417400g",
	    "123e4567-e89b-12d3-a456_426614174000",
	    "123e4567-e89b-12d3a-456-426614174000",
	    "123e4567-e89b-12d3-a456-4266141740\n0",
	    "123e4567-e89b-12d3-a456-42661417400\xc3\xa9",
	    "'; DROP TABLE credentials; --------",
	    "------------------------------------",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(hv_uuid_valid(good[i]));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(hv_uuid_valid(bad[i]));
	assert_false(hv_uuid_valid(NULL));
	/* an embedded NUL ends the string early: invalid */
	assert_false(hv_uuid_valid("123e4567-e89b-12d3\0a456-426614174000"));
}

static void
test_parse_format(void **state)
{
	static const uint8_t want[16] = {
	    0x12,
	    0x3e,
	    0x45,
	    0x67,
	    0xe8,
	    0x9b,
	    0x12,
	    0xd3,
	    0xa4,
	    0x56,
	    0x42,
	    0x66,
	    0x14,
	    0x17,
	    0x40,
	    0x00,
	};
	uint8_t b[16], keep[16];
	char s[HV_UUID_STR];

	(void)state;
	assert_true(hv_uuid_parse("123E4567-e89b-12D3-a456-426614174000", b));
	assert_memory_equal(b, want, 16);
	hv_uuid_format(b, s);
	assert_string_equal(s, "123e4567-e89b-12d3-a456-426614174000");
	/* failure leaves out untouched */
	memset(keep, 0xa5, sizeof(keep));
	memcpy(b, keep, sizeof(b));
	assert_false(hv_uuid_parse("123e4567-e89b-12d3-a456-42661417400", b));
	assert_false(hv_uuid_parse(NULL, b));
	assert_memory_equal(b, keep, 16);
	assert_true(
	    hv_uuid_normalize("ABCDEF01-2345-6789-ABCD-EF0123456789", s));
	assert_string_equal(s, "abcdef01-2345-6789-abcd-ef0123456789");
	assert_false(hv_uuid_normalize("nope", s));
	assert_string_equal(s, "");
}

static void
test_new(void **state)
{
	char a[HV_UUID_STR], b[HV_UUID_STR];
	uint8_t raw[16];
	int i;

	(void)state;
	for (i = 0; i < 1000; i++) {
		assert_int_equal(hv_uuid_new(a), HV_OK);
		assert_int_equal(strlen(a), 36);
		assert_true(hv_uuid_valid(a));
		assert_int_equal(a[14], '4');           /* version 4 */
		assert_non_null(strchr("89ab", a[19])); /* RFC 4122 variant */
		assert_true(hv_uuid_parse(a, raw));
		hv_uuid_format(raw, b);
		assert_string_equal(a, b); /* lowercase, round trip */
	}
	assert_int_equal(hv_uuid_new(b), HV_OK);
	assert_string_not_equal(a, b);
}

/* Ids come from a per-thread pool: none repeats, across refills and
 * threads. */
#define IDS_PER_THREAD 2000
static char ids[2 * IDS_PER_THREAD][HV_UUID_STR];

static void *
make_ids(void *arg)
{
	char(*mine)[HV_UUID_STR] = arg;
	int i;

	for (i = 0; i < IDS_PER_THREAD; i++)
		if (hv_uuid_new(mine[i]) != HV_OK)
			return arg;
	return NULL;
}

static int
cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
test_new_unique(void **state)
{
	pthread_t t[2];
	void *rv;
	int i;

	(void)state;
	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, make_ids,
		                     ids + i * IDS_PER_THREAD),
		    0);
	for (i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(t[i], &rv), 0);
		assert_null(rv);
	}
	qsort(ids, 2 * IDS_PER_THREAD, HV_UUID_STR, cmp_id);
	for (i = 1; i < 2 * IDS_PER_THREAD; i++)
		assert_string_not_equal(ids[i - 1], ids[i]);
}

/*
 * A forked child does not hand out the ids its parent's pool still
 * holds: the next id of each differs.
 */
static void
test_new_after_fork(void **state)
{
	char first[HV_UUID_STR], mine[HV_UUID_STR], theirs[HV_UUID_STR];
	int fd[2], status;
	pid_t pid;

	(void)state;
	assert_int_equal(hv_uuid_new(first), HV_OK); /* the pool is full */
	assert_int_equal(pipe(fd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char id[HV_UUID_STR];

		close(fd[0]);
		_exit(hv_uuid_new(id) == HV_OK &&
		            write(fd[1], id, HV_UUID_STR) == HV_UUID_STR
		        ? 0
		        : 1);
	}
	close(fd[1]);
	assert_int_equal(read(fd[0], theirs, HV_UUID_STR), HV_UUID_STR);
	close(fd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(hv_uuid_new(mine), HV_OK);
	assert_true(hv_uuid_valid(theirs));
	assert_string_not_equal(mine, theirs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid),
	    cmocka_unit_test(test_parse_format),
	    cmocka_unit_test(test_new),
	    cmocka_unit_test(test_new_unique),
	    cmocka_unit_test(test_new_after_fork),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
