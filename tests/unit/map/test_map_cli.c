/* Tests of 'popk map' as a command: outputs (summary, JSON with warnings, SVG), exit codes
 * and messages for bad patient files and options. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/popk_test.h"

static char out_dir[256];

/* Run popk with args; output (stdout and stderr) into buf. Returns the exit status. */
static int run(const char *args, char *buf, size_t size)
{
    char cmd[4096], path[300];
    snprintf(path, sizeof path, "%s/out.txt", out_dir);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' map %s >'%s' 2>&1", getenv("POPK_SOURCE_ROOT"),
             getenv("POPK_EXE"), args, path);
    int rc = system(cmd);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, size - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char buf[1 << 18];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void write_file(const char *name, const char *text)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_outputs(void)
{
    static char buf[1 << 16];
    char args[1024];
    snprintf(args, sizeof args, "models/vancomycin.yaml datasets/vancomycin_patient.csv "
             "--target auc24=400-600 --strengths 750,1000,1250,1500 --intervals 8,12,24 "
             "--loading --dose-range 500,2000 --samples 200 --out '%s/o'", out_dir);
    CU_ASSERT_EQUAL(run(args, buf, sizeof buf), 0);
    CU_ASSERT(strstr(buf, "Recommended: ") != NULL);
    CU_ASSERT(strstr(buf, "probability that this patient reaches the target") != NULL);
    char *json = slurp("o/map.json");
    CU_ASSERT_FATAL(json != NULL);
    CU_ASSERT(strstr(json, "\"warnings\": [") != NULL);
    CU_ASSERT(strstr(json, "\"recommendations\": [") != NULL);
    CU_ASSERT(strstr(json, "\"loading_dose\": ") != NULL);
    CU_ASSERT(strstr(json, "\"curve\": {\"time\": [0, ") != NULL);
    char *svg = slurp("o/map.svg");
    CU_ASSERT_FATAL(svg != NULL);
    CU_ASSERT(strncmp(svg, "<svg", 4) == 0 && strstr(svg, "</svg>") != NULL);
    CU_ASSERT(strstr(svg, "<polygon") != NULL && strstr(svg, "<circle") != NULL);
    /* no target, JSON on stdout: still a warnings array (empty or not) */
    CU_ASSERT_EQUAL(run("models/theophylline.yaml datasets/theo_sd.csv --id 3 --json", buf,
                        sizeof buf), 0);
    CU_ASSERT(strstr(buf, "\"warnings\": [") != NULL && strstr(buf, "\"recommendations\": [")
                                                            != NULL);
}

static void test_bad_input(void)
{
    static char buf[1 << 14];
    char args[1024];
    write_file("neg.csv", "ID,TIME,DV,AMT,RATE,EVID,CMT,WT,CRCL\n1,0,.,1000,1000,1,1,80,60\n"
                          "1,5,-2,.,.,0,1,80,60\n");
    snprintf(args, sizeof args, "models/vancomycin.yaml '%s/neg.csv'", out_dir);
    CU_ASSERT_EQUAL(run(args, buf, sizeof buf), 2);
    CU_ASSERT(strstr(buf, "neg.csv:3:") != NULL && strstr(buf, "negative") != NULL);
    write_file("nocov.csv", "ID,TIME,DV,AMT,RATE,EVID,CMT\n1,0,.,1000,1000,1,1\n");
    snprintf(args, sizeof args, "models/vancomycin.yaml '%s/nocov.csv'", out_dir);
    CU_ASSERT_EQUAL(run(args, buf, sizeof buf), 2);
    CU_ASSERT(strstr(buf, "CRCL") != NULL && strstr(buf, "--covariates") != NULL);
    snprintf(args, sizeof args, "models/vancomycin.yaml '%s/nocov.csv' --covariates "
             "WT=80,CRCL=60 --target trough=200-300 --strengths 500,1000", out_dir);
    CU_ASSERT_EQUAL(run(args, buf, sizeof buf), 0);
    CU_ASSERT(strstr(buf, "not reachable") != NULL);
    CU_ASSERT(strstr(buf, "no measured levels") != NULL);
    CU_ASSERT_EQUAL(run("models/vancomycin.yaml datasets/vancomycin_patient.csv --target "
                        "auc=1-2 --strengths 1", buf, sizeof buf), 2);
    CU_ASSERT(strstr(buf, "--target") != NULL);
    CU_ASSERT_EQUAL(run("models/vancomycin.yaml datasets/vancomycin_patient.csv --target "
                        "trough=10-20", buf, sizeof buf), 2);
    CU_ASSERT(strstr(buf, "--strengths") != NULL);
    CU_ASSERT_EQUAL(run("models/vancomycin.yaml datasets/vancomycin_patient.csv --covariates "
                        "HEIGHT=180", buf, sizeof buf), 2);
    CU_ASSERT(strstr(buf, "HEIGHT") != NULL);
}

int main(void)
{
    snprintf(out_dir, sizeof out_dir, "/tmp/popk_map_cli_XXXXXX");
    if (!mkdtemp(out_dir))
        return 1;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("map_cli", NULL, NULL);
    CU_add_test(s, "outputs", test_outputs);
    CU_add_test(s, "bad input", test_bad_input);
    int rc = popk_test_run();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out_dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
