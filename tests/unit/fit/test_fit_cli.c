/* 'popk fit' on bad input and faults: each gives one clear message and its documented exit
 * status (docs/fitting.md): 2 bad input (non-PD omega, initial values outside bounds,
 * unusable output directory), 1 run-time failure (a subject's inner problem), 3 not
 * converged (outputs written, status recorded); a model without etas is a naive pooled fit. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "../../reference/test_fit.h"

static char tmpdir[256], errpath[320];
static char theo_model[4096], theo_data[4096];

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

/* Write the theophylline model with text 'from' replaced by 'to' (each must occur). */
static const char *edited_model(const char *name, const char *const *from,
                                const char *const *to, int n)
{
    static char path[600];
    char *s = read_text(theo_model);
    for (int k = 0; s && k < n; k++) {
        char *at = strstr(s, from[k]);
        CU_ASSERT_FATAL(at != NULL);
        size_t lf = strlen(from[k]), lt = strlen(to[k]), rest = strlen(at + lf);
        char *t = malloc((size_t)(at - s) + lt + rest + 1);
        memcpy(t, s, (size_t)(at - s));
        memcpy(t + (at - s), to[k], lt);
        memcpy(t + (at - s) + lt, at + lf, rest + 1);
        free(s);
        s = t;
    }
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(s, f);
    fclose(f);
    free(s);
    return path;
}

static int exists(const char *dir, const char *file)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Run popk fit; return the exit status, stderr in *err_text (caller frees). */
static int fit(const char *model, const char *out, const char *extra, char **err_text)
{
    const char *args[] = {"fit", model, theo_data, "--quiet", "--out", out, extra, NULL};
    int rc = run_popk(args, NULL, errpath);
    *err_text = read_text(errpath);
    return rc;
}

static void test_omega_not_pd(void)
{
    const char *from[] = {"  eta_ka: 0.6\n  eta_cl: 0.3\n  eta_v: 0.1\n"};
    const char *to[] = {"  - eta_ka: 0.6\n  - block: [eta_cl, eta_v]\n"
                        "    values: [0.3, 0.9, 0.1]\n"};
    char out[400], *e;
    snprintf(out, sizeof out, "%s/o_notpd", tmpdir);
    CU_ASSERT_EQUAL(fit(edited_model("notpd.yaml", from, to, 1), out, NULL, &e), 2);
    CU_ASSERT(e && strstr(e, "notpd.yaml:") && strstr(e, "not positive definite"));
    CU_ASSERT(!exists(out, "fit.yaml"));
    free(e);
}

static void test_bounds(void)
{
    const char *from[] = {"tka: {init: 0.45,"};
    const char *to[] = {"tka: {init: 0.45, upper: 0.4,"};
    char out[400], *e;
    snprintf(out, sizeof out, "%s/o_bounds", tmpdir);
    CU_ASSERT_EQUAL(fit(edited_model("bounds.yaml", from, to, 1), out, NULL, &e), 2);
    CU_ASSERT(e && strstr(e, "bounds.yaml:") && strstr(e, "tka") &&
              strstr(e, "strictly between the bounds"));
    CU_ASSERT(!exists(out, "fit.yaml"));
    free(e);
}

/* Subject 5 (WT 54.6, the only one under 55) gets V = NaN at every eta. */
static void test_inner_failure(void)
{
    const char *from[] = {"v: exp(tv + eta_v)", "sigma:\n"};
    const char *to[] = {"v: exp(tv + eta_v) * sqrt(WT - 55) / sqrt(WT - 55)",
                        "covariates:\n  WT: {unit: kg}\n\nsigma:\n"};
    char out[400], *e;
    snprintf(out, sizeof out, "%s/o_inner", tmpdir);
    CU_ASSERT_EQUAL(fit(edited_model("inner.yaml", from, to, 2), out, NULL, &e), 1);
    CU_ASSERT(e && strstr(e, "inner problem (EBE) failed") && strstr(e, "subject ID 5") &&
              strstr(e, "'v'"));
    CU_ASSERT(!exists(out, "fit.yaml"));
    free(e);
}

/* Without etas the fit is naive pooled: at the optimum add_sd^2 = RSS/N and
 * OFV = N log(RSS/N) + N, checked from tab.csv's residuals. */
static void test_no_etas(void)
{
    const char *from[] = {"omega:\n  eta_ka: 0.6\n  eta_cl: 0.3\n  eta_v: 0.1\n", " + eta_ka",
                          " + eta_cl", " + eta_v"};
    const char *to[] = {"", "", "", ""};
    char out[400], path[600], *e;
    snprintf(out, sizeof out, "%s/o_noeta", tmpdir);
    CU_ASSERT_EQUAL_FATAL(fit(edited_model("noeta.yaml", from, to, 4), out, NULL, &e), 0);
    free(e);
    num_table tab;
    snprintf(path, sizeof path, "%s/tab.csv", out);
    CU_ASSERT_FATAL(table_read(&tab, path, ',') == 0);
    double rss = 0.0;
    int n = 0;
    for (int k = 0; k < tab.nrow; k++)
        if (table_get(&tab, k, "EVID") == 0) {
            double r = table_get(&tab, k, "RES");
            CU_ASSERT(r == table_get(&tab, k, "DV") - table_get(&tab, k, "IPRED") ||
                      fabs(r - (table_get(&tab, k, "DV") - table_get(&tab, k, "IPRED"))) <
                          1e-8);
            rss += r * r;
            n++;
        }
    table_free(&tab);
    CU_ASSERT_EQUAL(n, 132);
    snprintf(path, sizeof path, "%s/fit.yaml", out);
    char *y = read_text(path);
    CU_ASSERT_FATAL(y != NULL);
    double ofv = NAN, sd = NAN;
    char *p = strstr(y, "\n  ofv: ");
    if (p)
        ofv = strtod(p + 8, NULL);
    p = strstr(y, "add_sd: {init: ");
    if (p)
        sd = strtod(p + 15, NULL);
    free(y);
    printf("\n  naive pooled: sd^2 / (RSS / n) - 1 = %.2e, OFV - (n log(RSS / n) + n) = %.2e\n",
           sd * sd / (rss / n) - 1.0, ofv - (n * log(rss / n) + n));
    /* the MLE of sd^2 is RSS / n; a relative error e leaves the OFV n e^2 / 2 above its
     * minimum, and the search stops once it gains less than 1e-4 (fit.c): |e| < 1e-3 */
    CU_ASSERT(fabs(sd * sd / (rss / n) - 1.0) < 1e-3);
    CU_ASSERT(fabs(ofv - (n * log(rss / n) + n)) < 1e-3);
}

static void test_not_converged(void)
{
    char out[400], path[600], *e;
    snprintf(out, sizeof out, "%s/o_maxeval", tmpdir);
    const char *args[] = {"fit",   theo_model, theo_data, "--quiet", "--maxeval",
                          "3",     "--out",    out,       NULL};
    CU_ASSERT_EQUAL(run_popk(args, NULL, errpath), 3);
    e = read_text(errpath);
    CU_ASSERT(e && strstr(e, "did not converge"));
    free(e);
    static const char *files[] = {"fit.yaml", "tab.csv", "eta.csv", "ext.csv", "summary.txt"};
    for (int k = 0; k < 5; k++)
        CU_ASSERT(exists(out, files[k]));
    snprintf(path, sizeof path, "%s/fit.yaml", out);
    char *y = read_text(path);
    CU_ASSERT(y && strstr(y, "status: not converged"));
    free(y);
    snprintf(path, sizeof path, "%s/summary.txt", out);
    y = read_text(path);
    CU_ASSERT(y && strstr(y, "NOT CONVERGED"));
    free(y);
}

static void test_bad_out_dir(void)
{
    char file[400], out[500], *e;
    snprintf(file, sizeof file, "%s/plain-file", tmpdir);
    FILE *f = fopen(file, "w");
    fclose(f);
    /* a directory below a regular file cannot be created */
    snprintf(out, sizeof out, "%s/sub", file);
    CU_ASSERT_EQUAL(fit(theo_model, out, NULL, &e), 2);
    CU_ASSERT(e && strstr(e, "cannot create output directory"));
    free(e);
    /* a regular file is not a directory; nothing is written next to it */
    CU_ASSERT_EQUAL(fit(theo_model, file, NULL, &e), 2);
    CU_ASSERT(e && strstr(e, "not a directory"));
    free(e);
    CU_ASSERT(!exists(tmpdir, "fit.yaml") && !exists(tmpdir, "tab.csv"));
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/popk-fit-cli-XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    snprintf(errpath, sizeof errpath, "%s/stderr", tmpdir);
    snprintf(theo_model, sizeof theo_model, "%s", popk_test_src("models/theophylline.yaml"));
    snprintf(theo_data, sizeof theo_data, "%s", popk_test_src("datasets/theo_sd.csv"));
    CU_initialize_registry();
    CU_pSuite s = CU_add_suite("fit_cli_faults", NULL, NULL);
    CU_add_test(s, "omega not positive definite: exit 2", test_omega_not_pd);
    CU_add_test(s, "initial value outside its bounds: exit 2", test_bounds);
    CU_add_test(s, "a subject's inner problem fails: exit 1, subject named", test_inner_failure);
    CU_add_test(s, "no etas: naive pooled fit", test_no_etas);
    CU_add_test(s, "not converged (--maxeval 3): exit 3, outputs written", test_not_converged);
    CU_add_test(s, "unusable --out: exit 2, nothing written", test_bad_out_dir);
    int rc = popk_test_run();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
