/* Tests for 'popk check' on the bad-model corpus: every tests/data/bad-models/NAME.yaml makes
 * the popk executable exit with status 2 and print NAME.expected as its first stderr line. */
#include "common/popk_test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char corpus_dir[4096];

static int read_first_line(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    if (!fgets(buf, (int)size, f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_corpus(void)
{
    const char *exe = getenv("POPK_EXE");
    CU_ASSERT_PTR_NOT_NULL_FATAL(exe);
    CU_ASSERT_EQUAL_FATAL(chdir(corpus_dir), 0);
    DIR *dir = opendir(".");
    CU_ASSERT_PTR_NOT_NULL_FATAL(dir);
    char *names[256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dir)) && n < 256) {
        size_t len = strlen(de->d_name);
        if (len > 5 && !strcmp(de->d_name + len - 5, ".yaml"))
            names[n++] = strdup(de->d_name);
    }
    closedir(dir);
    qsort(names, (size_t)n, sizeof names[0], by_name);
    CU_ASSERT(n >= 25);
    char errpath[] = "/tmp/popk_bad_model_XXXXXX";
    int fd = mkstemp(errpath);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    for (int i = 0; i < n; i++) {
        char expected_path[512], cmd[8192], expected[1024], got[1024];
        size_t len = strlen(names[i]);
        snprintf(expected_path, sizeof expected_path, "%.*s.expected", (int)(len - 5), names[i]);
        int have = read_first_line(expected_path, expected, sizeof expected);
        if (have != 0)
            printf("\n  missing %s\n", expected_path);
        CU_ASSERT_EQUAL(have, 0);
        snprintf(cmd, sizeof cmd, "'%s' check '%s' >/dev/null 2>'%s'", exe, names[i], errpath);
        int rc = system(cmd);
        CU_ASSERT(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
        CU_ASSERT_EQUAL(read_first_line(errpath, got, sizeof got), 0);
        if (have == 0 && strcmp(got, expected)) {
            printf("\n  %s:\n    expected: %s\n    got:      %s\n", names[i], expected, got);
            CU_FAIL("first stderr line differs from the .expected file");
        }
        free(names[i]);
    }
    remove(errpath);
}

int main(void)
{
    snprintf(corpus_dir, sizeof corpus_dir, "%s", popk_test_src("tests/data/bad-models"));
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("bad_models", NULL, NULL);
    CU_add_test(s, "corpus", test_corpus);
    return popk_test_run();
}
