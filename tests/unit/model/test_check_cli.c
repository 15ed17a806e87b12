/* Tests for 'popk check': every tests/data/bad-models/NAME.yaml makes the popk executable exit
 * with status 2 and print NAME.expected as its first stderr line; golden summaries; bundled
 * models pass, alone and with the datasets shipped in datasets/. */
#include "common/popk_test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char corpus_dir[4096];
static char source_root[4096];

/* Run popk with args from the source root; returns the exit status (-1 if it did not exit). */
static int run_popk(const char *args, const char *out_path)
{
    char cmd[8192];
    if (chdir(source_root))
        return -1;
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>&1", getenv("POPK_EXE"), args,
             out_path ? out_path : "/dev/null");
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

static void test_golden(void)
{
    static const char *const cases[][2] = {
        {"check models/theophylline.yaml datasets/theo_sd.csv",
         "tests/data/check/theophylline.out"},
        {"check models/voriconazole.yaml", "tests/data/check/voriconazole.out"},
    };
    char out[] = "/tmp/popk_check_out_XXXXXX";
    int fd = mkstemp(out);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CU_ASSERT_EQUAL(run_popk(cases[i][0], out), 0);
        char *got = slurp(out), *want = slurp(cases[i][1]);
        CU_ASSERT_PTR_NOT_NULL(got);
        CU_ASSERT_PTR_NOT_NULL(want);
        if (got && want && strcmp(got, want)) {
            printf("\n  popk %s differs from %s:\n%s\n", cases[i][0], cases[i][1], got);
            CU_FAIL("summary differs from the golden file");
        }
        free(got);
        free(want);
    }
    remove(out);
}

static void test_models_with_data(void)
{
    static const char *const pairs[] = {
        "models/theophylline.yaml datasets/theo_sd.csv",
        "models/theophylline_ode.yaml datasets/theo_sd.csv",
        "models/wang2007_prop.yaml datasets/wang2007.csv",
        "models/wang2007_add.yaml datasets/wang2007.csv",
        "models/warfarin_pkpd.yaml datasets/warfarin.csv",
        "models/wang2007_ode.yaml tests/reference/data/wang2007_dosed.csv",
        "models/nmtest.yaml tests/reference/data/nmtest.csv",
        "models/nmtest_ode.yaml tests/reference/data/nmtest.csv",
        "models/warfarin.yaml",
        "models/voriconazole.yaml",
        "models/vancomycin.yaml",
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char args[512];
        snprintf(args, sizeof args, "check %s", pairs[i]);
        int rc = run_popk(args, NULL);
        if (rc != 0)
            printf("\n  popk %s: exit %d\n", args, rc);
        CU_ASSERT_EQUAL(rc, 0);
    }
    /* each ACOP model with its data set (the _ode variants use the same data) */
    static const char *const acop[] = {"Bolus", "Infusion", "Oral"};
    static const char *const kinds[] = {"1CPT", "2CPT", "1CPTMM", "2CPTMM"};
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 4; k++)
            for (int ode = 0; ode < 2; ode++) {
                if (ode && strstr(kinds[k], "MM"))
                    continue;
                char args[512];
                snprintf(args, sizeof args,
                         "check models/acop/%s_%s%s.yaml tests/reference/data/acop/%s_%s.csv",
                         acop[r], kinds[k], ode ? "_ode" : "", acop[r], kinds[k]);
                int rc = run_popk(args, NULL);
                if (rc != 0)
                    printf("\n  popk %s: exit %d\n", args, rc);
                CU_ASSERT_EQUAL(rc, 0);
            }
    /* the PK-only warfarin model refuses the PCA records (CMT 3) of the full dataset */
    CU_ASSERT_EQUAL(run_popk("check models/warfarin.yaml datasets/warfarin.csv", NULL), 2);
    CU_ASSERT_EQUAL(run_popk("check", NULL), 2);
    CU_ASSERT_EQUAL(run_popk("check a b c", NULL), 2);
    CU_ASSERT_EQUAL(run_popk("check --help", NULL), 0);
    CU_ASSERT_EQUAL(run_popk("check models/missing.yaml", NULL), 2);
}

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
    snprintf(source_root, sizeof source_root, "%s", popk_test_src("."));
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("bad_models", NULL, NULL);
    CU_add_test(s, "corpus", test_corpus);
    CU_pSuite c = CU_add_suite("check", NULL, NULL);
    CU_add_test(c, "golden", test_golden);
    CU_add_test(c, "models_with_data", test_models_with_data);
    return popk_test_run();
}
