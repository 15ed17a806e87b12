/* cli/cmd_report.c — 'popk report': report.html of a fit directory (docs/diagnostics.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "report/report.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: popk report FITDIR [options]\n\n"
            "Writes FITDIR/report.html (self-contained: opens offline) from the files of\n"
            "'popk fit': run summary, parameters, goodness-of-fit plots, NPDE, random effects,\n"
            "individual fits and VPCs. Also writes FITDIR/npde.csv and FITDIR/vpc.csv.\n"
            "  --data FILE     the dataset (default: the one named in FITDIR/fit.yaml)\n"
            "  --nsim N        simulated replicates for VPC and NPDE (default 500; 0: none)\n"
            "  --seed S        random seed (default 1)\n"
            "  --threads N     threads (default: all cores)\n"
            "  --out FILE      report path (default FITDIR/report.html)\n");
}

int popk_cmd_report(int argc, char **argv)
{
    popk_report_options opt;
    popk_report_options_default(&opt);
    const char *fitdir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return POPK_EXIT_OK;
        } else if (!strcmp(a, "--data") && has) {
            opt.data_path = argv[++i];
        } else if (!strcmp(a, "--out") && has) {
            opt.out_path = argv[++i];
        } else if ((!strcmp(a, "--nsim") || !strcmp(a, "--seed") || !strcmp(a, "--threads")) &&
                   has) {
            char *end;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (*end || argv[i][0] == '-' || !argv[i][0] ||
                (strcmp(a, "--seed") && v > 1000000)) {
                fprintf(stderr, "popk report: %s needs a non-negative whole number\n", a);
                return POPK_EXIT_INPUT;
            }
            if (!strcmp(a, "--nsim"))
                opt.nsim = v == 0 ? -1 : (int)v;
            else if (!strcmp(a, "--seed"))
                opt.seed = v;
            else
                opt.nthreads = (int)v;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "popk report: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return POPK_EXIT_INPUT;
        } else if (!fitdir) {
            fitdir = a;
        } else {
            fprintf(stderr, "popk report: unexpected argument '%s'\n", a);
            return POPK_EXIT_INPUT;
        }
    }
    if (!fitdir) {
        usage(stderr);
        return POPK_EXIT_INPUT;
    }
    if (opt.nsim == 1) {
        fprintf(stderr, "popk report: --nsim needs at least 2 replicates (or 0 for none)\n");
        return POPK_EXIT_INPUT;
    }
    popk_error err;
    popk_error_clear(&err);
    if (popk_report_write(fitdir, &opt, &err) != POPK_OK) {
        popk_cli_report(&err);
        return err.code == POPK_ERR_DATA || err.code == POPK_ERR_MODEL || err.code == POPK_ERR_ARG ||
                       err.code == POPK_ERR_IO
                   ? POPK_EXIT_INPUT
                   : POPK_EXIT_FAILURE;
    }
    printf("report in %s\n", opt.out_path ? opt.out_path : fitdir);
    return POPK_EXIT_OK;
}
