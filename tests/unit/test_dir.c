/* tests/unit/test_dir.c - the names in a directory, filtered and sorted */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dir.h"
#include "mg-alloc.h"

static const char *const files[] = { "b.json", "a.json", "10_x.json", "c.txt", ".hidden.json" };

static int make_dir(void **state)
{
	char *path = strdup("/tmp/mgdirtestXXXXXX");

	assert_non_null(path);
	assert_non_null(mkdtemp(path));
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char f[256];
		FILE *fp;

		(void)snprintf(f, sizeof(f), "%s/%s", path, files[i]);
		fp = fopen(f, "w");
		assert_non_null(fp);
		fclose(fp);
	}
	*state = path;
	return 0;
}

static int remove_dir(void **state)
{
	char *path = *state;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char f[256];

		(void)snprintf(f, sizeof(f), "%s/%s", path, files[i]);
		(void)unlink(f);
	}
	(void)rmdir(path);
	free(path);
	return 0;
}

/* Names ending in ".json" and not starting with '.'; counts the others in *arg. */
static bool want_json(const char *name, void *arg)
{
	size_t n = strlen(name);
	bool want = name[0] != '.' && n > 5 && strcmp(name + n - 5, ".json") == 0;

	if (!want && strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
		(*(int *)arg)++;
	return want;
}

static void test_sorted_and_filtered(void **state)
{
	DIR *d = opendir(*state);
	char **names = NULL;
	size_t n = 0;
	int others = 0;

	assert_non_null(d);
	assert_int_equal(mg_dir_names(d, want_json, &others, 10, &names, &n), MG_OK);
	closedir(d);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "10_x.json");
	assert_string_equal(names[1], "a.json");
	assert_string_equal(names[2], "b.json");
	assert_int_equal(others, 2); /* c.txt, .hidden.json */
	mg_dir_names_free(names, n);
}

static void test_more_than_max(void **state)
{
	static char *untouched[1];
	DIR *d = opendir(*state);
	char **names = untouched;
	size_t n = 99;
	int others = 0;

	assert_non_null(d);
	assert_int_equal(mg_dir_names(d, want_json, &others, 2, &names, &n), MG_EINPUT);
	closedir(d);
	assert_ptr_equal(names, untouched);
	assert_int_equal(n, 99);
}

static void test_torture(void **state)
{
	bool done = false;

	for (long k = 0; !done; k++) {
		DIR *d = opendir(*state);
		char **names = NULL;
		size_t n = 0;
		int others = 0, r;

		assert_non_null(d);
		mg_alloc_fail_after(k);
		r = mg_dir_names(d, want_json, &others, 10, &names, &n);
		mg_alloc_fail_after(-1);
		closedir(d);
		if (r == MG_OK) {
			assert_int_equal(n, 3);
			mg_dir_names_free(names, n);
			done = true;
		} else {
			assert_int_equal(r, MG_ENOMEM);
		}
		assert_true(k < 20);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sorted_and_filtered, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_more_than_max, make_dir, remove_dir),
		cmocka_unit_test_setup_teardown(test_torture, make_dir, remove_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
