/* Tests for 'popk data': golden summaries, usage, and the bad-dataset corpus (one stderr line,
 * exit status 2, nothing on stdout). Runs the popk executable named by POPK_EXE. */
#include "common/popk_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

typedef struct {
    int status; /* exit status, or -1 when popk did not exit normally */
    char *out, *err;
    size_t out_len, err_len;
} run_result;

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(buf, 2 * cap + 1);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(fp);
    if (buf)
        buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Run popk with args (NULL-terminated) in directory dir. */
static run_result run_popk(const char *dir, const char *const *args)
{
    run_result r = {-1, NULL, NULL, 0, 0};
    const char *exe = getenv("POPK_EXE");
    if (!exe)
        return r;
    char out_path[512], err_path[512];
    snprintf(out_path, sizeof out_path, "%s/stdout", tmpdir);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmpdir);
    const char *argv[16] = {exe};
    int argc = 1;
    while (args[argc - 1] && argc < 15) {
        argv[argc] = args[argc - 1];
        argc++;
    }
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0 || chdir(dir) != 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
            _exit(127);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
    int ws;
    if (pid < 0 || waitpid(pid, &ws, 0) != pid)
        return r;
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    r.out = slurp(out_path, &r.out_len);
    r.err = slurp(err_path, &r.err_len);
    return r;
}

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

static void test_theo_summary(void)
{
    const char *root = getenv("POPK_SOURCE_ROOT");
    const char *args[] = {"data", "datasets/theo_sd.csv", NULL};
    run_result r = run_popk(root, args);
    CU_ASSERT_EQUAL(r.status, 0);
    char *want = slurp(popk_test_src("tests/unit/data/theo_sd.summary"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.out);
    CU_ASSERT_STRING_EQUAL(r.out, want);
    /* The acceptance figures, in words a reader finds. */
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "subjects:       12\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "observations:   132\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "doses:          12 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, "WT: numeric, from 54.6 to 86.4"));
    CU_ASSERT_EQUAL(r.err_len, 0);
    free(want);
    run_free(&r);

    const char *jargs[] = {"data", "--json", "datasets/theo_sd.csv", NULL};
    r = run_popk(root, jargs);
    CU_ASSERT_EQUAL(r.status, 0);
    want = slurp(popk_test_src("tests/unit/data/theo_sd.json"), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.out);
    CU_ASSERT_STRING_EQUAL(r.out, want);
    free(want);
    run_free(&r);
}

static void test_usage(void)
{
    const char *help[] = {"data", "--help", NULL};
    run_result r = run_popk(tmpdir, help);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_PTR_NOT_NULL(r.out && strstr(r.out, "usage: popk data FILE [--json]"));
    run_free(&r);
    const char *none[] = {"data", NULL};
    r = run_popk(tmpdir, none);
    CU_ASSERT_EQUAL(r.status, 2);
    CU_ASSERT_PTR_NOT_NULL(r.err && strstr(r.err, "usage: popk data"));
    run_free(&r);
    const char *unknown[] = {"data", "--jsn", "x.csv", NULL};
    r = run_popk(tmpdir, unknown);
    CU_ASSERT_EQUAL(r.status, 2);
    CU_ASSERT_PTR_NOT_NULL(r.err && strstr(r.err, "unknown option '--jsn'"));
    run_free(&r);
    const char *missing[] = {"data", "no-such-file.csv", NULL};
    r = run_popk(tmpdir, missing);
    CU_ASSERT_EQUAL(r.status, 2);
    CU_ASSERT_STRING_EQUAL(r.err, "no-such-file.csv: cannot open: No such file or directory\n");
    run_free(&r);
}

/* Run popk data on dir/name; the whole stderr must be the single line want. */
static int check_bad(const char *dir, const char *name, const char *want)
{
    const char *args[] = {"data", name, NULL};
    run_result r = run_popk(dir, args);
    int ok = r.status == 2 && r.out && r.out_len == 0 && r.err && !strcmp(r.err, want);
    if (!ok)
        fprintf(stderr, "\n  %s: exit %d, stdout %zu bytes, stderr:\n  %s  wanted:\n  %s", name,
                r.status, r.out_len, r.err ? r.err : "(none)\n", want);
    run_free(&r);
    return ok;
}

/* Every NAME.csv in tests/data/bad-datasets has NAME.expected holding its stderr line. */
static void test_bad_corpus(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", popk_test_src("tests/data/bad-datasets"));
    DIR *dp = opendir(dir);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dp);
    struct dirent *e;
    int files = 0, passed = 0;
    while ((e = readdir(dp)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".csv"))
            continue;
        char expected[4096 + 300];
        snprintf(expected, sizeof expected, "%s/%.*s.expected", dir, (int)(n - 4), e->d_name);
        char *want = slurp(expected, NULL);
        CU_ASSERT_PTR_NOT_NULL(want);
        files++;
        if (want) {
            /* One line, naming the file, a line and a column. */
            char prefix[300];
            snprintf(prefix, sizeof prefix, "%s:", e->d_name);
            CU_ASSERT_EQUAL(strncmp(want, prefix, strlen(prefix)), 0);
            CU_ASSERT_PTR_EQUAL(strchr(want, '\n'), want + strlen(want) - 1);
            passed += check_bad(dir, e->d_name, want);
        }
        free(want);
    }
    closedir(dp);
    CU_ASSERT_TRUE(files >= 20);
    CU_ASSERT_EQUAL(passed, files);
}

static int write_file(const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    size_t put = fwrite(data, 1, len, fp);
    return fclose(fp) == 0 && put == len ? 0 : -1;
}

/* The large and binary cases are generated here rather than stored in the repository. */
static void test_generated_bad(void)
{
    /* A 1 MB line. */
    size_t big = (1u << 20) + 100;
    char *buf = malloc(big + 64);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    size_t len = (size_t)sprintf(buf, "ID,TIME,DV\n1,0,");
    memset(buf + len, '7', big - len);
    buf[big] = '\n';
    CU_ASSERT_EQUAL_FATAL(write_file("long-line.csv", buf, big + 1), 0);
    CU_ASSERT_TRUE(
        check_bad(tmpdir, "long-line.csv", "long-line.csv:2:1: line longer than 1048576 bytes\n"));

    /* 10^5 columns: refused at column 4097, whose character column is counted here. */
    len = 0;
    int col = 0;
    for (int c = 1; c <= 100000; c++) {
        if (c == 4097)
            col = (int)len + 1;
        len += (size_t)sprintf(buf + len, c == 1 ? "ID" : c == 2 ? ",TIME" : ",X%d", c);
        if (c == 4097)
            col += 1; /* skip the comma */
    }
    buf[len++] = '\n';
    len += (size_t)sprintf(buf + len, "1,0\n");
    CU_ASSERT_EQUAL_FATAL(write_file("many-columns.csv", buf, len), 0);
    char want[256];
    snprintf(want, sizeof want,
             "many-columns.csv:1:%d: too many columns: popk reads at most 4096\n", col);
    CU_ASSERT_TRUE(check_bad(tmpdir, "many-columns.csv", want));

    /* NUL bytes inside a record. */
    static const char nul[] = "ID,TIME,DV\n1,0,5\n1,1\0\0\0,4\n";
    CU_ASSERT_EQUAL_FATAL(write_file("nul.csv", nul, sizeof nul - 1), 0);
    CU_ASSERT_TRUE(
        check_bad(tmpdir, "nul.csv", "nul.csv:3:4: NUL byte: this is not a text file\n"));

    /* Binary garbage: a PNG signature and pseudo-random bytes. */
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    uint32_t x = 2463534242u;
    for (size_t i = 8; i < 65536; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        buf[i] = (char)(x >> 24);
    }
    CU_ASSERT_EQUAL_FATAL(write_file("garbage.png", buf, 65536), 0);
    CU_ASSERT_TRUE(
        check_bad(tmpdir, "garbage.png",
                  "garbage.png:1:1: invalid UTF-8 (byte 0x89): is this a binary file?\n"));
    free(buf);

    /* An endless stream of NUL bytes ends at the first one. */
    if (access("/dev/zero", R_OK) == 0)
        CU_ASSERT_TRUE(
            check_bad(tmpdir, "/dev/zero", "/dev/zero:1:1: NUL byte: this is not a text file\n"));

    /* Accepted edge cases: no final newline, CRLF, BOM, -0. */
    static const char edge[] = "\xEF\xBB\xBFID,TIME,DV\r\n1,-0,5\r\n1,1,4";
    CU_ASSERT_EQUAL_FATAL(write_file("edge.csv", edge, sizeof edge - 1), 0);
    const char *args[] = {"data", "edge.csv", NULL};
    run_result r = run_popk(tmpdir, args);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_PTR_NOT_NULL(r.out && strstr(r.out, "observations:   2\n"));
    CU_ASSERT_PTR_NOT_NULL(r.out && strstr(r.out, "time:           from 0 to 1\n"));
    run_free(&r);
}

/* Per-compartment counts with more compartments than the summary's fast path holds. */
static void test_many_compartments(void)
{
    enum { NCMT = 40 };
    char text[NCMT * 64 + 64];
    size_t len = (size_t)sprintf(text, "ID,TIME,DV,AMT,CMT\n");
    /* Compartments in a scrambled order: c gets one dose and c % 3 observations. */
    for (int k = 0; k < NCMT; k++) {
        int c = 1 + (k * 17) % NCMT;
        len += (size_t)sprintf(text + len, "1,%d,0,10,%d\n", k, c);
        for (int o = 0; o < c % 3; o++)
            len += (size_t)sprintf(text + len, "1,%d,1.5,0,%d\n", k, c);
    }
    CU_ASSERT_EQUAL_FATAL(write_file("cmts.csv", text, len), 0);
    const char *args[] = {"data", "--json", "cmts.csv", NULL};
    run_result r = run_popk(tmpdir, args);
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r.out);
    char want[NCMT * 64 + 64];
    size_t w = (size_t)sprintf(want, " \"compartments\": [");
    for (int c = 1; c <= NCMT; c++)
        w += (size_t)sprintf(want + w, "%s{\"cmt\": %d, \"observations\": %d, \"doses\": 1}",
                             c > 1 ? ", " : "", c, c % 3);
    sprintf(want + w, "],\n");
    CU_ASSERT_PTR_NOT_NULL(strstr(r.out, want));
    run_free(&r);
}

static int suite_init(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/popk-data-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int suite_clean(void)
{
    static const char *files[] = {"stdout",  "stderr",      "long-line.csv", "many-columns.csv",
                                  "nul.csv", "garbage.png", "edge.csv",      "cmts.csv"};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    return rmdir(tmpdir) == 0 ? 0 : -1;
}

int main(void)
{
    if (!getenv("POPK_EXE")) {
        fprintf(stderr, "POPK_EXE is not set (run through meson test)\n");
        return 1;
    }
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("data_cli", suite_init, suite_clean);
    CU_add_test(s, "theo_summary", test_theo_summary);
    CU_add_test(s, "usage", test_usage);
    CU_add_test(s, "bad_corpus", test_bad_corpus);
    CU_add_test(s, "generated_bad", test_generated_bad);
    CU_add_test(s, "many_compartments", test_many_compartments);
    return popk_test_run();
}
