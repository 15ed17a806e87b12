/* Tests for 'popk sim': the typical-patient curve against 'popk predict' on the same design
 * with zero etas, same output for 1 and 2 threads, and the refused inputs (exit 2, a message
 * naming the problem, no output directory or staging files left behind). */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/popk_test.h"

static char work[256];

static int sh(const char *cmd)
{
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (b) {
        size_t got = fread(b, 1, (size_t)n, f);
        b[got] = '\0';
    }
    fclose(f);
    return b;
}

static int setup(void)
{
    snprintf(work, sizeof work, "/tmp/popk-simcli-XXXXXX");
    return mkdtemp(work) ? 0 : 1;
}

static int teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    return sh(cmd) == 0 ? 0 : 1;
}

/* Read column `col` (0-based) of the CSV rows selected by keep(row fields). */
static int read_column(const char *path, int col, int filter_col, const char *filter_val,
                       double *out, int max)
{
    char *text = slurp(path);
    if (!text)
        return -1;
    int n = 0;
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    for (line = strtok_r(NULL, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save)) {
        char *fields[64];
        int nf = 0;
        for (char *p = line, *q; p && nf < 64; p = q) {
            q = strchr(p, ',');
            if (q)
                *q++ = '\0';
            fields[nf++] = p;
        }
        if (filter_col >= 0 && (filter_col >= nf || strcmp(fields[filter_col], filter_val)))
            continue;
        if (col < nf)
            out[n++] = strtod(fields[col], NULL);
    }
    free(text);
    return n;
}

static void typical_vs_predict(const char *model, const char *regimen, const char *extra)
{
    const char *exe = getenv("POPK_EXE");
    char cmd[16384], dir[1024], pred[1024], pct[1100];
    snprintf(dir, sizeof dir, "%s/typ", work);
    snprintf(cmd, sizeof cmd,
             "rm -rf '%s' && '%s' sim '%s' --mode typical --regimen '%s' %s --times 0:0.5:60 "
             "--write-design --quiet --out '%s' > /dev/null",
             dir, exe, popk_test_src(model), regimen, extra, dir);
    CU_ASSERT_EQUAL_FATAL(sh(cmd), 0);
    snprintf(pred, sizeof pred, "%s/pred.csv", work);
    snprintf(cmd, sizeof cmd, "'%s' predict '%s' '%s/design.csv' --out '%s'", exe,
             popk_test_src(model), dir, pred);
    CU_ASSERT_EQUAL_FATAL(sh(cmd), 0);
    static double a[200], b[200], t[200];
    snprintf(pct, sizeof pct, "%s/percentiles.csv", dir);
    int na = read_column(pct, 6, -1, NULL, a, 200); /* P50 */
    int nt = read_column(pct, 1, -1, NULL, t, 200);
    int nb = read_column(pred, 4, 2, "2", b, 200); /* first output at EVID 2 rows */
    CU_ASSERT_EQUAL(na, 121);
    CU_ASSERT_EQUAL(nb, 121);
    CU_ASSERT_EQUAL(nt, 121);
    int same = 0, positive = 0;
    for (int i = 0; i < na && i < nb; i++) {
        same += a[i] == b[i];
        positive += a[i] > 0;
    }
    CU_ASSERT_EQUAL(same, na); /* both printed with 10 significant digits */
    CU_ASSERT(positive >= 100);
}

static void test_typical_equals_predict(void)
{
    typical_vs_predict("models/acop/Bolus_1CPT.yaml", "100 mg iv q12h x 4", "");
    typical_vs_predict("models/theophylline.yaml", "320 mg po q12h x 3", "");
    typical_vs_predict("models/vancomycin.yaml", "1 g iv over 1 h q12h x 4",
                       "--covariates CRCL=60,WT=80");
}

static void test_threads_cli(void)
{
    const char *exe = getenv("POPK_EXE");
    char cmd[16384];
    for (int th = 1; th <= 2; th++) {
        snprintf(cmd, sizeof cmd,
                 "rm -rf '%s/t%d' && OMP_WAIT_POLICY=passive '%s' sim '%s' --regimen '1 g iv over "
                 "1 h q12h x 6' --covariates 'CRCL=U(30,120),WT=N(75,15,45,140),DIAL={no:0.9,"
                 "yes:0.1}' --n 3000 --residual --target 'AUC24 in 400..600' --threads %d "
                 "--quiet --out '%s/t%d' > /dev/null",
                 work, th, exe, popk_test_src("models/vancomycin.yaml"), th, work, th);
        CU_ASSERT_EQUAL_FATAL(sh(cmd), 0);
    }
    const char *files[] = {"percentiles.csv", "metrics.csv", "summary.csv", "plot.svg"};
    for (int i = 0; i < 4; i++) {
        char p1[1024], p2[1024];
        snprintf(p1, sizeof p1, "%s/t1/%s", work, files[i]);
        snprintf(p2, sizeof p2, "%s/t2/%s", work, files[i]);
        char *a = slurp(p1), *b = slurp(p2);
        CU_ASSERT_PTR_NOT_NULL(a);
        CU_ASSERT(a && b && strcmp(a, b) == 0);
        free(a);
        free(b);
    }
}

/* fit.yaml written by popk fit carries the thetas' covariance that --uncertainty reads: the
 * typical curve gets a band whose median is the typical curve (to sampling error). */
static void test_uncertainty_from_fit(void)
{
    const char *exe = getenv("POPK_EXE");
    char cmd[16384], path[1100], model[4096], data[4096];
    /* popk_test_src returns a static buffer: copy before the second call */
    snprintf(model, sizeof model, "%s", popk_test_src("models/theophylline.yaml"));
    snprintf(data, sizeof data, "%s", popk_test_src("datasets/theo_sd.csv"));
    snprintf(cmd, sizeof cmd,
             "OMP_WAIT_POLICY=passive '%s' fit '%s' '%s' --out '%s/fit' > /dev/null 2>&1 && "
             "'%s' sim '%s/fit/fit.yaml' --mode typical --uncertainty --n 2000 --regimen "
             "'320 mg po' --times 0,2,8 --quiet --out '%s/unc' > /dev/null && "
             "'%s' sim '%s/fit/fit.yaml' --mode typical --regimen '320 mg po' --times 0,2,8 "
             "--quiet --out '%s/typ0' > /dev/null",
             exe, model, data, work, exe, work, work, exe, work, work);
    CU_ASSERT_EQUAL_FATAL(sh(cmd), 0);
    double p5[3], p50[3], p95[3], typ[3];
    snprintf(path, sizeof path, "%s/unc/percentiles.csv", work);
    CU_ASSERT_EQUAL(read_column(path, 4, -1, NULL, p5, 3), 3);
    CU_ASSERT_EQUAL(read_column(path, 6, -1, NULL, p50, 3), 3);
    CU_ASSERT_EQUAL(read_column(path, 8, -1, NULL, p95, 3), 3);
    snprintf(path, sizeof path, "%s/typ0/percentiles.csv", work);
    CU_ASSERT_EQUAL(read_column(path, 6, -1, NULL, typ, 3), 3);
    for (int t = 1; t < 3; t++) {
        CU_ASSERT(p95[t] > 1.05 * p5[t]);
        CU_ASSERT(fabs(p50[t] / typ[t] - 1) < 0.02);
    }
}

/* No output directory and no staging directory may remain after a refused run. */
static int leftovers(void)
{
    DIR *d = opendir(work);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, "bad") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void test_bad_input(void)
{
    const char *exe = getenv("POPK_EXE");
    static const struct {
        const char *args, *msg;
    } bad[] = {
        {"--regimen '1 g iv q12h x 4' --covariates CRCL=60,WT=70,HT=180",
         "unknown covariate 'HT'"},
        {"--regimen '1 g iv q12h x 4' --covariates CRCL=60,WT=70,DIAL=maybe",
         "unknown level 'maybe'"},
        {"--regimen '1 g iv q12h x 4' --covariates WT=70", "needs covariate 'CRCL'"},
        {"--regimen '-1000 mg iv q12h x 4' --covariates CRCL=60,WT=70", "regimen:1:1:"},
        {"--regimen '1000 mg iv q0h x 4' --covariates CRCL=60,WT=70",
         "interval must be positive"},
        {"--regimen '1 g iv q12h x 4' --covariates CRCL=60,WT=70 --n 0", "must be positive"},
        {"--regimen '1 g iv q12h x 4' --covariates CRCL=60,WT=70 --n -5", "must be positive"},
        {"--regimen '1000 mg iv over q12h x 4' --covariates CRCL=60,WT=70",
         "regimen:1:17: expected the infusion duration"},
        {"--regimen '1 g iv q12h x 4' --covariates CRCL=60,WT=70 --by DIAL=no,perhaps",
         "unknown level 'perhaps'"},
        {"--regimen '1 g iv q12h x 4' --covariates CRCL=60,WT=70 --target 'AUC in 1..2'",
         "unknown metric"},
        {"--regimen '1 g iv q12h x 4' --covariates CRCL=60,WT=70 --times 0:0:24",
         "START:STEP:END"},
        {"--regimen '1 g iv q12h x 4' --covariates CRCL=60,WT=70 --uncertainty",
         "no theta covariance"},
    };
    char cmd[16384], errf[1024];
    snprintf(errf, sizeof errf, "%s/stderr.txt", work);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "'%s' sim '%s' %s --quiet --out '%s/bad%zu' > /dev/null "
                                  "2> '%s'",
                 exe, popk_test_src("models/vancomycin.yaml"), bad[i].args, work, i, errf);
        CU_ASSERT_EQUAL(sh(cmd), 2);
        char *msg = slurp(errf);
        CU_ASSERT(msg && strstr(msg, bad[i].msg));
        if (!msg || !strstr(msg, bad[i].msg))
            fprintf(stderr, "\ncase %zu: %s\n", i, msg ? msg : "(none)");
        free(msg);
        CU_ASSERT_EQUAL(leftovers(), 0);
    }
    /* an output directory that cannot be created: below a regular file */
    snprintf(cmd, sizeof cmd, "touch '%s/plainfile' && '%s' sim '%s' --regimen '1 g iv' "
                              "--covariates CRCL=60,WT=70 --quiet --out '%s/plainfile/out' "
                              "> /dev/null 2> '%s'",
             work, exe, popk_test_src("models/vancomycin.yaml"), work, errf);
    CU_ASSERT_EQUAL(sh(cmd), 2);
    char *msg = slurp(errf);
    CU_ASSERT(msg && strstr(msg, "cannot create the output directory"));
    free(msg);
}

int main(void)
{
    if (!getenv("POPK_EXE"))
        return 77;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("sim_cli", setup, teardown);
    CU_add_test(s, "typical patient equals popk predict", test_typical_equals_predict);
    CU_add_test(s, "same output for 1 and 2 threads", test_threads_cli);
    CU_add_test(s, "parameter uncertainty from fit.yaml", test_uncertainty_from_fit);
    CU_add_test(s, "bad input: exit 2, nothing written", test_bad_input);
    return popk_test_run();
}
