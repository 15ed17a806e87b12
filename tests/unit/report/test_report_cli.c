/* Tests for 'popk report', 'popk fit --report' and 'popk vpc': the report of a theo_sd fit is
 * self-contained (no external reference, every internal reference resolves) with every plot
 * present, and it loads in headless Chromium with all of them in the DOM (skipped with a
 * message when chromium is not installed; CI installs it). Runs the executable in POPK_EXE. */
#include "common/popk_test.h"

#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Run a shell command from the source root; returns its exit status. */
static int run(const char *fmt, const char *a, const char *b)
{
    char cmd[8192];
    char inner[3000];
    snprintf(inner, sizeof inner, fmt, a, b);
    snprintf(cmd, sizeof cmd, "cd '%s' && %s", popk_test_src(""), inner);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Every url(#x) and href="#x" names an id of the page. */
static int broken_references(const char *html)
{
    int broken = 0;
    const char *pats[] = {"url(#", "href=\"#"};
    for (int k = 0; k < 2; k++)
        for (const char *p = strstr(html, pats[k]); p; p = strstr(p + 1, pats[k])) {
            const char *s = p + strlen(pats[k]);
            size_t len = strcspn(s, ")\"");
            char want[160];
            snprintf(want, sizeof want, "id=\"%.*s\"", (int)(len < 140 ? len : 140), s);
            if (!strstr(html, want)) {
                fprintf(stderr, "broken reference: %s\n", want);
                broken++;
            }
        }
    return broken;
}

/* theo_sd: 4 observed-vs-predicted, 4 residual, 3 NPDE plots; 3 eta histograms and 3 etas
 * against WT (the one covariate column); 12 individual panels; VPC linear and log, pcVPC. */
static int expected_plots(void)
{
    int neta = 3, ncov = 1, nsub = 12;
    return 4 + 4 + 3 + neta + neta * ncov + nsub + 3;
}

static void test_fit_report(void)
{
    const char *exe = getenv("POPK_EXE");
    CU_ASSERT_FATAL(exe != NULL);
    char out[512], html_path[600];
    snprintf(out, sizeof out, "%s/fit", tmpdir);
    CU_ASSERT_EQUAL(run("'%s' fit models/theophylline.yaml datasets/theo_sd.csv --evaluate "
                        "--quiet --report --out '%s' > /dev/null",
                        exe, out),
                    0);
    snprintf(html_path, sizeof html_path, "%s/report.html", out);
    char *html = slurp(html_path);
    CU_ASSERT_FATAL(html != NULL);
    CU_ASSERT_EQUAL(count(html, "<svg "), expected_plots());
    CU_ASSERT_EQUAL(count(html, "</svg>"), expected_plots());
    /* Self-contained: no scripts, images, style sheets or links to elsewhere. */
    CU_ASSERT(strstr(html, "src=") == NULL);
    CU_ASSERT(strstr(html, "http://") == strstr(html, "http://www.w3.org/2000/svg"));
    CU_ASSERT(strstr(html, "https://") == NULL);
    CU_ASSERT(strstr(html, "<link") == NULL);
    CU_ASSERT_EQUAL(broken_references(html), 0);
    CU_ASSERT(strstr(html, "<th>parameter</th>") != NULL);
    CU_ASSERT(strstr(html, "tka") != NULL && strstr(html, "add_sd") != NULL);
    CU_ASSERT(strstr(html, "</html>") != NULL);
    char npde_path[600];
    snprintf(npde_path, sizeof npde_path, "%s/npde.csv", out);
    char *npde = slurp(npde_path);
    CU_ASSERT_FATAL(npde != NULL);
    CU_ASSERT_EQUAL(count(npde, "\n"), 1 + 132);
    free(npde);

    /* The same report again by 'popk report' with the same seed: identical. */
    CU_ASSERT_EQUAL(run("'%s' report '%s' > /dev/null", exe, out), 0);
    char *html2 = slurp(html_path);
    CU_ASSERT_FATAL(html2 != NULL);
    CU_ASSERT_STRING_EQUAL(html, html2);
    free(html2);

    /* Headless Chromium: the page loads and every plot reaches the DOM. */
    if (run("command -v chromium > /dev/null 2>&1", "", "") != 0) {
        printf("\n  SKIPPED: chromium is not installed (Debian package 'chromium'; CI installs "
               "it), the browser check did not run\n");
        free(html);
        return;
    }
    char cmd[3000], dom_path[600];
    snprintf(dom_path, sizeof dom_path, "%s/dom.html", tmpdir);
    const char *flags = "--headless --no-sandbox --disable-gpu --disable-background-networking "
                        "--disable-component-update --disable-sync --no-first-run";
    snprintf(cmd, sizeof cmd,
             "timeout 120 chromium %s --user-data-dir='%s/chromium' --dump-dom 'file://%s' "
             "> '%s' 2>/dev/null",
             flags, tmpdir, html_path, dom_path);
    CU_ASSERT_EQUAL(run("%s%s", cmd, ""), 0);
    char *dom = slurp(dom_path);
    CU_ASSERT_FATAL(dom != NULL);
    CU_ASSERT_EQUAL(count(dom, "<svg "), expected_plots());
    CU_ASSERT(strstr(dom, "popk report: theophylline") != NULL);
    CU_ASSERT_EQUAL(broken_references(dom), 0);
    free(dom);
    free(html);
}

static void test_vpc_cli(void)
{
    const char *exe = getenv("POPK_EXE");
    char out[512], path[600];
    snprintf(out, sizeof out, "%s/vpc", tmpdir);
    CU_ASSERT_EQUAL(run("'%s' vpc models/theophylline.yaml datasets/theo_sd.csv --nsim 50 "
                        "--pred-corrected --bins 5 --out '%s' > /dev/null",
                        exe, out),
                    0);
    snprintf(path, sizeof path, "%s/vpc.csv", out);
    char *csv = slurp(path);
    CU_ASSERT_FATAL(csv != NULL);
    CU_ASSERT_EQUAL(count(csv, "\n"), 1 + 5);
    free(csv);
    snprintf(path, sizeof path, "%s/vpc.html", out);
    char *html = slurp(path);
    CU_ASSERT_FATAL(html != NULL);
    CU_ASSERT_EQUAL(count(html, "<svg "), 1);
    CU_ASSERT_EQUAL(broken_references(html), 0);
    free(html);
    /* Bad input: exit status 2. */
    CU_ASSERT_EQUAL(run("'%s' vpc models/theophylline.yaml datasets/theo_sd.csv --nsim 1 "
                        "2>/dev/null%s",
                        exe, ""),
                    2);
    CU_ASSERT_EQUAL(run("'%s' vpc models/theophylline.yaml datasets/theo_sd.csv --bins 0 "
                        "2>/dev/null%s",
                        exe, ""),
                    2);
    CU_ASSERT_EQUAL(run("'%s' vpc models/theophylline.yaml datasets/theo_sd.csv --stratify "
                        "NOPE --out '%s' 2>/dev/null",
                        exe, out),
                    2);
    CU_ASSERT_EQUAL(run("'%s' report '%s/nowhere' 2>/dev/null", exe, tmpdir), 2);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/popk_report_cli_XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("report_cli", NULL, NULL);
    CU_add_test(s, "fit --report, popk report, headless Chromium", test_fit_report);
    CU_add_test(s, "popk vpc", test_vpc_cli);
    int rc = popk_test_run();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
