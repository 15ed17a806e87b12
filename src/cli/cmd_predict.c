/* cli/cmd_predict.c — 'popk predict': run the prediction engine over a dataset and write
 * one CSV row per record (outputs, compartment amounts, optional eta derivatives). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "data/data.h"
#include "model/model.h"
#include "pred/pred.h"
#include "util/atomic.h"
#include "util/dual.h"
#include "util/error.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: popk predict MODEL DATA [--params FILE] [--eta zero|FILE] [--derivatives]\n"
            "                    [--out FILE]\n\n"
            "Predicts every record of DATA with MODEL and writes CSV (stdout, or FILE):\n"
            "ID,TIME,EVID,CMT, each model output, each compartment amount (A_<name>) and,\n"
            "with --derivatives, d<output>_d<eta> for every eta.\n"
            "  --params FILE  parameter values, one 'name = value' per line (thetas and\n"
            "                 sigmas by name; '#' starts a comment); default: the model's\n"
            "                 initial values\n"
            "  --eta FILE     etas per subject: CSV with an ID column and one column per eta\n"
            "                 name; subjects not listed get zero (default: all zero)\n");
}

/* Read "name = value" lines into theta values (sigmas are accepted and ignored here). */
static int read_params(const char *path, const popk_model *m, double *theta)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char name[256];
        double v;
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '\n' || *p == '\r')
            continue;
        if (sscanf(p, "%255[^ \t=,] %*[=,] %lf", name, &v) != 2 || !isfinite(v)) {
            fprintf(stderr, "%s:%d:1: expected 'name = value'\n", path, lineno);
            fclose(f);
            return -1;
        }
        int found = 0;
        for (int k = 0; k < m->ntheta; k++)
            if (!strcmp(m->theta[k].name, name)) {
                theta[k] = v;
                found = 1;
            }
        for (int k = 0; k < m->nsigma; k++)
            if (!strcmp(m->sigma[k].name, name))
                found = 1;
        if (!found) {
            fprintf(stderr, "%s:%d:1: '%s' is not a theta or sigma of the model\n", path,
                    lineno, name);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

/* Per-subject etas from a CSV read with the dataset reader (ID plus eta-named columns). */
static int read_etas(const char *path, const popk_model *m, const popk_data *d, double *eta)
{
    popk_error err;
    popk_data *e = popk_data_read(path, &err);
    if (!e) {
        popk_cli_report(&err);
        return -1;
    }
    int *col = malloc(sizeof(int) * (size_t)(m->neta ? m->neta : 1));
    int rc = 0;
    for (int k = 0; k < m->neta; k++) {
        col[k] = popk_data_find_cov(e, m->eta_name[k]);
        if (col[k] < 0) {
            fprintf(stderr, "%s: no column for eta '%s'\n", path, m->eta_name[k]);
            rc = -1;
        }
    }
    for (size_t s = 0; rc == 0 && s < e->nsub; s++) {
        size_t r = e->sub[s].first;
        for (size_t t = 0; t < d->nsub; t++)
            if (d->sub[t].id == e->sub[s].id)
                for (int k = 0; k < m->neta; k++)
                    eta[t * (size_t)m->neta + k] = e->cov[col[k]].values[r];
    }
    free(col);
    popk_data_free(e);
    return rc;
}

int popk_cmd_predict(int argc, char **argv)
{
    const char *model_path = NULL, *data_path = NULL, *params = NULL, *etas = NULL;
    const char *out_path = NULL;
    int derivs = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return POPK_EXIT_OK;
        } else if (!strcmp(argv[i], "--params") && i + 1 < argc) {
            params = argv[++i];
        } else if (!strcmp(argv[i], "--eta") && i + 1 < argc) {
            etas = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out_path = argv[++i];
        } else if (!strcmp(argv[i], "--derivatives")) {
            derivs = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "popk predict: unknown or incomplete option '%s'\n", argv[i]);
            usage(stderr);
            return POPK_EXIT_INPUT;
        } else if (!model_path) {
            model_path = argv[i];
        } else if (!data_path) {
            data_path = argv[i];
        } else {
            fprintf(stderr, "popk predict: unexpected argument '%s'\n", argv[i]);
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
    popk_pred_ws *ws = NULL;
    double *theta = NULL, *eta = NULL;
    popk_atomic_file af = {0};
    FILE *out = stdout;

    if (!(m = popk_model_load(model_path, &err)) || !(d = popk_data_read(data_path, &err)) ||
        !(b = popk_model_bind(m, d, &err))) {
        popk_cli_report(&err);
        goto done;
    }
    theta = malloc(sizeof(double) * (size_t)(m->ntheta + 1));
    eta = calloc(d->nsub * (size_t)(m->neta + 1), sizeof(double));
    if (!theta || !eta)
        goto done;
    for (int k = 0; k < m->ntheta; k++)
        theta[k] = m->theta[k].init;
    if (params && read_params(params, m, theta) != 0)
        goto done;
    if (etas && strcmp(etas, "zero") != 0 && read_etas(etas, m, d, eta) != 0)
        goto done;
    if (derivs && m->neta > POPK_DUAL_MAX) {
        fprintf(stderr, "popk predict: at most %d etas with --derivatives\n", POPK_DUAL_MAX);
        goto done;
    }
    if (!(ws = popk_pred_ws_new(m, &err))) {
        popk_cli_report(&err);
        rc = POPK_EXIT_FAILURE;
        goto done;
    }
    if (out_path) {
        if (popk_atomic_open(&af, out_path, &err) != POPK_OK) {
            popk_cli_report(&err);
            goto done;
        }
        out = af.fp;
    }
    popk_pred_dirs dirs = {0};
    if (derivs) {
        dirs.nd = m->neta;
        for (int k = 0; k < m->neta; k++) {
            dirs.dir_is_eta[k] = 1;
            dirs.dir_index[k] = k;
        }
    }
    fprintf(out, "ID,TIME,EVID,CMT");
    for (int k = 0; k < m->nout; k++)
        fprintf(out, ",%s", m->out[k].name);
    for (int c = 0; c < m->ncmt; c++)
        fprintf(out, ",A_%s", m->cmt_name[c]);
    for (int k = 0; derivs && k < m->nout; k++)
        for (int j = 0; j < m->neta; j++)
            fprintf(out, ",d%s_d%s", m->out[k].name, m->eta_name[j]);
    fputc('\n', out);
    rc = POPK_EXIT_OK;
    for (size_t s = 0; s < d->nsub && rc == POPK_EXIT_OK; s++) {
        popk_pred_result res;
        if (popk_pred_subject(ws, m, d, b, s, theta, eta + s * (size_t)m->neta, &dirs, &res,
                              &err) != POPK_OK) {
            popk_cli_report(&err);
            rc = POPK_EXIT_FAILURE;
            break;
        }
        int st = 1 + res.nd;
        for (size_t r = 0; r < res.nrec; r++) {
            const popk_record *rec = &d->rec[d->sub[s].first + r];
            fprintf(out, "%.15g,%.15g,%d,%d", d->sub[s].id, rec->time, rec->evid, rec->cmt);
            const double *o = res.out + r * (size_t)res.nout * st;
            for (int k = 0; k < res.nout; k++)
                fprintf(out, ",%.10g", o[(size_t)k * st]);
            const double *a = res.amt + r * (size_t)res.ncmt * st;
            for (int c = 0; c < res.ncmt; c++)
                fprintf(out, ",%.10g", a[(size_t)c * st]);
            for (int k = 0; derivs && k < res.nout; k++)
                for (int j = 0; j < res.nd; j++)
                    fprintf(out, ",%.10g", o[(size_t)k * st + 1 + j]);
            fputc('\n', out);
        }
    }
    if (out_path) {
        if (rc == POPK_EXIT_OK && popk_atomic_commit(&af, &err) != POPK_OK) {
            popk_cli_report(&err);
            rc = POPK_EXIT_FAILURE;
        }
        popk_atomic_abort(&af);
    }
done:
    if (out_path)
        popk_atomic_abort(&af);
    free(theta);
    free(eta);
    popk_pred_ws_free(ws);
    popk_binding_free(b);
    popk_data_free(d);
    popk_model_free(m);
    return rc;
}
