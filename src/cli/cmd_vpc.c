/* cli/cmd_vpc.c — 'popk vpc': visual predictive check of a fitted model against a dataset
 * (docs/diagnostics.md). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "report/report.h"
#include "report/vpc.h"
#include "util/atomic.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: popk vpc FIT DATA [options]\n\n"
            "Simulates the design of DATA with the model FIT (a fit.yaml written by 'popk fit',\n"
            "or any model file) and compares observed and simulated percentiles by time bin.\n"
            "Writes vpc.csv (one row per stratum and bin) and vpc.html (the plots).\n"
            "  --nsim N          replicates (default 500)\n"
            "  --seed S          random seed (default 1)\n"
            "  --stratify COL    one VPC per value of a dataset column\n"
            "  --pred-corrected  prediction-corrected VPC (Bergstrand et al. 2011)\n"
            "  --bins auto|N     time bins: natural breaks, chosen (auto) or N of them\n"
            "  --tad             bin by time after the last dose instead of time\n"
            "  --lloq X          limit of quantification (default: an LLOQ column, if any)\n"
            "  --ci X            width of the confidence intervals (default 0.90)\n"
            "  --ignore C / --accept C   record filters, as for 'popk fit'\n"
            "  --threads N       threads (default: all cores)\n"
            "  --log             logarithmic concentration axis in vpc.html\n"
            "  --out DIR         output directory (default: vpc beside FIT)\n");
}

static int whole(const char *s, unsigned long long max, unsigned long long *v)
{
    char *end;
    if (!s[0] || s[0] == '-')
        return -1;
    errno = 0;
    *v = strtoull(s, &end, 10);
    return *end || errno || *v > max ? -1 : 0;
}

int popk_cmd_vpc(int argc, char **argv)
{
    popk_vpc_options opt;
    popk_vpc_options_default(&opt);
    const char *fit_path = NULL, *data_path = NULL, *out_dir = NULL;
    const char *filters[16];
    int accept[16], nfilter = 0, ylog = 0;
    unsigned long long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return POPK_EXIT_OK;
        } else if (!strcmp(a, "--nsim") && has) {
            if (whole(argv[++i], 1000000, &v) || v < 2) {
                fprintf(stderr, "popk vpc: --nsim needs a whole number from 2 to 1000000\n");
                return POPK_EXIT_INPUT;
            }
            opt.nsim = (int)v;
        } else if (!strcmp(a, "--seed") && has) {
            if (whole(argv[++i], ~0ULL, &v)) {
                fprintf(stderr, "popk vpc: --seed needs a non-negative whole number\n");
                return POPK_EXIT_INPUT;
            }
            opt.seed = v;
        } else if (!strcmp(a, "--threads") && has) {
            if (whole(argv[++i], 4096, &v) || v < 1) {
                fprintf(stderr, "popk vpc: --threads needs a positive whole number\n");
                return POPK_EXIT_INPUT;
            }
            opt.nthreads = (int)v;
        } else if (!strcmp(a, "--bins") && has) {
            const char *s = argv[++i];
            if (!strcmp(s, "auto"))
                opt.nbins = 0;
            else if (whole(s, 100, &v) || v < 1) {
                fprintf(stderr, "popk vpc: --bins needs 'auto' or a number from 1 to 100\n");
                return POPK_EXIT_INPUT;
            } else {
                opt.nbins = (int)v;
            }
        } else if ((!strcmp(a, "--lloq") || !strcmp(a, "--ci")) && has) {
            char *end;
            double x = strtod(argv[++i], &end);
            int bad = *end || !isfinite(x) || (!strcmp(a, "--ci") && !(x > 0 && x < 1));
            if (bad) {
                fprintf(stderr, "popk vpc: %s needs a number%s\n", a,
                        strcmp(a, "--ci") ? "" : " between 0 and 1");
                return POPK_EXIT_INPUT;
            }
            if (!strcmp(a, "--ci"))
                opt.ci = x;
            else
                opt.lloq = x;
        } else if (!strcmp(a, "--stratify") && has) {
            opt.stratify = argv[++i];
        } else if (!strcmp(a, "--pred-corrected")) {
            opt.pred_corrected = 1;
        } else if (!strcmp(a, "--tad")) {
            opt.time_after_dose = 1;
        } else if (!strcmp(a, "--log")) {
            ylog = 1;
        } else if (!strcmp(a, "--out") && has) {
            out_dir = argv[++i];
        } else if ((!strcmp(a, "--ignore") || !strcmp(a, "--accept")) && has && nfilter < 16) {
            accept[nfilter] = !strcmp(a, "--accept");
            filters[nfilter++] = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "popk vpc: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return POPK_EXIT_INPUT;
        } else if (!fit_path) {
            fit_path = a;
        } else if (!data_path) {
            data_path = a;
        } else {
            fprintf(stderr, "popk vpc: unexpected argument '%s'\n", a);
            return POPK_EXIT_INPUT;
        }
    }
    if (!fit_path || !data_path) {
        usage(stderr);
        return POPK_EXIT_INPUT;
    }
    int rc = POPK_EXIT_INPUT;
    popk_error err;
    popk_error_clear(&err);
    popk_model *m = NULL;
    popk_data *d = NULL;
    popk_binding *b = NULL;
    popk_vpc *vpc = NULL;
    char dir[4096], path[4200];
    if (popk_cli_load(fit_path, data_path, nfilter, filters, accept, &m, &d, &b) != 0)
        goto done;
    if (out_dir) {
        snprintf(dir, sizeof dir, "%s", out_dir);
    } else {
        const char *slash = strrchr(fit_path, '/');
        if (slash)
            snprintf(dir, sizeof dir, "%.*s/vpc", (int)(slash - fit_path), fit_path);
        else
            snprintf(dir, sizeof dir, "vpc");
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: cannot create output directory: %s\n", dir, strerror(errno));
        goto done;
    }
    if (!(vpc = popk_vpc_run(m, d, b, &opt, &err))) {
        popk_cli_report(&err);
        rc = err.code == POPK_ERR_ARG || err.code == POPK_ERR_DATA || err.code == POPK_ERR_LIMIT
                 ? POPK_EXIT_INPUT
                 : POPK_EXIT_FAILURE;
        goto done;
    }
    rc = POPK_EXIT_FAILURE;
    snprintf(path, sizeof path, "%s/vpc.csv", dir);
    if (popk_vpc_write_csv(vpc, path, &err) != POPK_OK) {
        popk_cli_report(&err);
        goto done;
    }
    snprintf(path, sizeof path, "%s/vpc.html", dir);
    popk_atomic_file af;
    if (popk_atomic_open(&af, path, &err) != POPK_OK) {
        popk_cli_report(&err);
        goto done;
    }
    popk_report_html_begin(af.fp, "popk vpc");
    fputs("<h1>Visual predictive check: ", af.fp);
    popk_report_html_text(af.fp, m->name ? m->name : fit_path);
    fprintf(af.fp, "</h1>\n<p class=\"note\">%d replicates of ", opt.nsim);
    popk_report_html_text(af.fp, data_path);
    fprintf(af.fp, " (seed %llu).</p>\n<div class=\"grid\">\n", (unsigned long long)opt.seed);
    int bad = 0;
    for (int s = 0; s < vpc->nstrata; s++) {
        char id[32];
        popk_plot *p = popk_vpc_plot(vpc, s, ylog, 620, 440);
        snprintf(id, sizeof id, "vpc%d", s + 1);
        bad |= !p || popk_plot_write(p, af.fp, id);
        popk_plot_free(p);
        if (vpc->has_lloq) {
            p = popk_vpc_blq_plot(vpc, s, 620, 440);
            snprintf(id, sizeof id, "blq%d", s + 1);
            bad |= !p || popk_plot_write(p, af.fp, id);
            popk_plot_free(p);
        }
    }
    fputs("</div>\n", af.fp);
    popk_report_html_end(af.fp);
    if (bad) {
        popk_atomic_abort(&af);
        fprintf(stderr, "%s: could not draw the plots (out of memory or write error)\n", path);
        goto done;
    }
    if (popk_atomic_commit(&af, &err) != POPK_OK) {
        popk_cli_report(&err);
        goto done;
    }
    int n;
    double cov = popk_vpc_coverage(vpc, &n);
    for (int s = 0; s < vpc->nstrata; s++)
        printf("%s: %d bins\n", vpc->strata[s].label, vpc->strata[s].nbins);
    printf("observed percentiles inside the simulated %.0f%% intervals: %.1f%% (%d)\n",
           100 * vpc->opt.ci, 100 * cov, n);
    printf("results in %s/\n", dir);
    rc = POPK_EXIT_OK;
done:
    popk_vpc_free(vpc);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
    return rc;
}
