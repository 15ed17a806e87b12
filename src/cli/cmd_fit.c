/* cli/cmd_fit.c — 'popk fit': estimate a population model from a dataset and write the
 * results (fit.yaml, tab.csv, eta.csv, ext.csv, summary.txt). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fit/fit_write.h"
#include "report/report.h"
#include "util/error.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: popk fit MODEL DATA [options]\n\n"
            "Estimates the model's thetas, omegas and sigmas from DATA and writes fit.yaml,\n"
            "tab.csv, eta.csv, ext.csv and summary.txt into the output directory.\n"
            "  --method M      focei (default), foce, fo or laplace\n"
            "  --out DIR       output directory (default: <model name>-fit)\n"
            "  --threads N     threads over individuals (default: all cores)\n"
            "  --optimizer O   auto (default: slsqp, or bhhh on a noisy ODE fit), slsqp,\n"
            "                  lbfgs, bobyqa or bhhh\n"
            "  --cov C         covariance step: sandwich (default), r, s or none\n"
            "  --maxeval N     limit on outer objective evaluations (default 2000)\n"
            "  --evaluate      objective, EBEs and tables at the initial values only\n"
            "  --ignore C      drop records matching COL=VALUE (NONMEM IGNORE=(COL.EQ.VALUE))\n"
            "  --accept C      keep only records matching COL=VALUE\n"
            "  --quiet         no iteration log\n"
            "  --report        also write report.html (as 'popk report OUT')\n"
            "Exit status: 0 converged, 3 not converged (results written), 2 bad input,\n"
            "1 other failure.\n");
}

typedef struct {
    const popk_param_map *map;
    int quiet, npar;
    double *ext;
    int rows, cap;
    const popk_model *m;
} iter_log;

static int on_iteration(int iteration, double ofv, const double *theta, const double *omega,
                        const double *sigma, void *user)
{
    iter_log *log = user;
    if (log->rows == log->cap) {
        int cap = log->cap ? 2 * log->cap : 64;
        double *e = realloc(log->ext, sizeof(double) * (size_t)cap * (size_t)(2 + log->npar));
        if (!e)
            return 0; /* the log is best effort; the fit goes on */
        log->ext = e;
        log->cap = cap;
    }
    double *row = log->ext + (size_t)log->rows * (size_t)(2 + log->npar);
    row[0] = iteration;
    row[1] = ofv;
    popk_param_map_get_natural(log->map, theta, omega, sigma, row + 2);
    log->rows++;
    if (!log->quiet) {
        printf("iter %4d  OFV %14.6f ", iteration, ofv);
        for (int k = 0; k < log->npar && k < 12; k++)
            printf(" %10.5g", row[2 + k]);
        printf("%s\n", log->npar > 12 ? " ..." : "");
        fflush(stdout);
    }
    return 0;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int popk_cmd_fit(int argc, char **argv)
{
    const char *model_path = NULL, *data_path = NULL, *out_dir = NULL;
    const char *filters[16];
    int filter_accept[16], nfilter = 0, quiet = 0, report = 0;
    popk_estimate_options opt;
    popk_estimate_options_default(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return POPK_EXIT_OK;
        } else if (!strcmp(a, "--method") && has) {
            if (popk_method_parse(argv[++i], &opt.method) != 0) {
                fprintf(stderr, "popk fit: unknown method '%s' (fo, foce, focei, laplace)\n",
                        argv[i]);
                return POPK_EXIT_INPUT;
            }
        } else if (!strcmp(a, "--optimizer") && has) {
            if (popk_optimizer_parse(argv[++i], &opt.optimizer) != 0) {
                fprintf(stderr, "popk fit: unknown optimizer '%s' (auto, slsqp, lbfgs, bobyqa, bhhh)\n",
                        argv[i]);
                return POPK_EXIT_INPUT;
            }
        } else if (!strcmp(a, "--cov") && has) {
            if (popk_covstep_parse(argv[++i], &opt.covariance) != 0) {
                fprintf(stderr, "popk fit: unknown covariance '%s' (sandwich, r, s, none)\n",
                        argv[i]);
                return POPK_EXIT_INPUT;
            }
        } else if ((!strcmp(a, "--threads") || !strcmp(a, "--maxeval")) && has) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000000) {
                fprintf(stderr, "popk fit: %s needs a positive whole number\n", a);
                return POPK_EXIT_INPUT;
            }
            if (!strcmp(a, "--threads"))
                opt.nthreads = (int)v;
            else
                opt.maxeval = (int)v;
        } else if (!strcmp(a, "--out") && has) {
            out_dir = argv[++i];
        } else if ((!strcmp(a, "--ignore") || !strcmp(a, "--accept")) && has && nfilter < 16) {
            filter_accept[nfilter] = !strcmp(a, "--accept");
            filters[nfilter++] = argv[++i];
        } else if (!strcmp(a, "--evaluate")) {
            opt.evaluate_only = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--report")) {
            report = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "popk fit: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return POPK_EXIT_INPUT;
        } else if (!model_path) {
            model_path = a;
        } else if (!data_path) {
            data_path = a;
        } else {
            fprintf(stderr, "popk fit: unexpected argument '%s'\n", a);
            return POPK_EXIT_INPUT;
        }
    }
    if (!model_path || !data_path) {
        usage(stderr);
        return POPK_EXIT_INPUT;
    }

    int rc = POPK_EXIT_INPUT;
    popk_error err;
    popk_error_clear(&err);
    popk_model *m = NULL;
    popk_data *d = NULL;
    popk_binding *b = NULL;
    popk_fit_problem *fp = NULL;
    popk_param_map *map = NULL;
    popk_estimate_result *res = NULL;
    iter_log log = {0};
    char dirbuf[4096];

    if (popk_cli_load(model_path, data_path, nfilter, filters, filter_accept, &m, &d, &b) != 0)
        goto done;
    if (!(fp = popk_fit_problem_new(m, d, b, opt.nthreads, &err)) ||
        !(map = popk_param_map_create(popk_fit_problem_get(fp), &err))) {
        popk_cli_report(&err);
        goto done;
    }
    if (popk_fit_nobs(fp) == 0) {
        fprintf(stderr, "%s: no observations to fit (EVID 0, MDV 0 with a DV)\n", data_path);
        goto done;
    }
    if (!out_dir) {
        snprintf(dirbuf, sizeof dirbuf, "%s-fit", m->name ? m->name : "popk");
        out_dir = dirbuf;
    }
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "%s: cannot create output directory: %s\n", out_dir, strerror(errno));
        goto done;
    }
    struct stat sb;
    if (stat(out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "%s: not a directory\n", out_dir);
        goto done;
    }
    /* Find an unwritable directory now, not after the fit: nothing is written then. */
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.popk-write-test-XXXXXX", out_dir);
    int probe_fd = mkstemp(probe);
    if (probe_fd < 0) {
        fprintf(stderr, "%s: cannot write in the output directory: %s\n", out_dir,
                strerror(errno));
        goto done;
    }
    close(probe_fd);
    unlink(probe);
    log.map = map;
    log.quiet = quiet;
    log.npar = popk_param_map_npar(map);
    log.m = m;
    opt.iter = on_iteration;
    opt.iter_user = &log;
    if (!quiet)
        printf("popk fit: %s, %s, %zu subjects, %d observations, %d parameters\n",
               m->name ? m->name : model_path, popk_method_name(opt.method), d->nsub,
               popk_fit_nobs(fp), log.npar);
    double t0 = now_seconds();
    res = popk_estimate(popk_fit_problem_get(fp), &opt, &err);
    double runtime = now_seconds() - t0;
    if (!res) {
        popk_cli_report(&err);
        rc = err.code == POPK_ERR_ARG || err.code == POPK_ERR_DATA || err.code == POPK_ERR_MODEL
                 ? POPK_EXIT_INPUT
                 : POPK_EXIT_FAILURE;
        goto done;
    }
    popk_fit_info info = {m, d, b, fp, map, res, opt.method, opt.covariance,
                          popk_fit_nobs(fp), runtime, log.ext, log.rows, NAN};
    /* nlmixr2 reports the FOCE-I objective at its FO estimates as the OFV of an FO fit;
     * give both, so the figures can be compared with either program. */
    if (opt.method == POPK_METHOD_FO &&
        popk_fit_ofv_at(fp, POPK_METHOD_FOCEI, res->theta, res->omega, res->sigma,
                        &info.ofv_focei, &err) != POPK_OK) {
        fprintf(stderr, "popk fit: note: no FOCE-I objective at the FO estimates (%s)\n",
                err.message);
        info.ofv_focei = NAN;
        popk_error_clear(&err);
    }
    if (popk_fit_write(out_dir, &info, &err) != POPK_OK) {
        popk_cli_report(&err);
        rc = POPK_EXIT_FAILURE;
        goto done;
    }
    if (!quiet)
        putchar('\n');
    popk_fit_summary(stdout, &info);
    printf("results in %s/\n", out_dir);
    rc = res->status == POPK_OK ? POPK_EXIT_OK : POPK_EXIT_NOCONV;
    if (report) {
        popk_report_options ro;
        popk_report_options_default(&ro);
        ro.data_path = data_path;
        ro.nthreads = opt.nthreads;
        if (popk_report_write(out_dir, &ro, &err) != POPK_OK) {
            popk_cli_report(&err);
            rc = POPK_EXIT_FAILURE;
            goto done;
        }
        printf("report in %s/report.html\n", out_dir);
    }
    if (rc == POPK_EXIT_NOCONV)
        fprintf(stderr, "popk fit: the estimation did not converge; results written with "
                        "status 'not converged'\n");
done:
    free(log.ext);
    popk_estimate_result_free(res);
    popk_param_map_free(map);
    popk_fit_problem_free(fp);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
    return rc;
}
