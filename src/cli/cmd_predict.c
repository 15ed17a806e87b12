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
            "                 name (e.g. eta.csv from popk fit); subjects not listed get\n"
            "                 zero (default: all zero)\n"
            "  --derivatives  add the derivatives of each output with respect to each eta\n"
            "  --out FILE     write there (atomically: no file at all on failure)\n");
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

/* Split a CSV line in place into at most max fields (surrounding blanks and double quotes
 * dropped); returns the number of fields and each field's 1-based column in col. */
static int split_csv(char *line, char **field, int *col, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        char *end = strchr(p, ',');
        if (end)
            *end = '\0';
        char *a = p, *b = p + strlen(p);
        while (*a == ' ' || *a == '\t' || *a == '"')
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '"' || b[-1] == '\n' ||
                         b[-1] == '\r'))
            b--;
        *b = '\0';
        if (n < max) {
            field[n] = a;
            col[n] = (int)(p - line) + 1;
        }
        n++;
        if (!end)
            return n;
        p = end + 1;
    }
}

/* Per-subject etas from a CSV with an ID column and one column per eta name (other columns
 * ignored), e.g. the eta.csv that 'popk fit' writes. */
static int read_etas(const char *path, const popk_model *m, const popk_data *d, double *eta)
{
    enum { MAXF = 1024 };
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    enum { LINE = 1 << 16 };
    char *field[MAXF];
    int col[MAXF], *idx = malloc(sizeof(int) * (size_t)(m->neta + 1)), id_col = -1, rc = 0;
    char *line = malloc(LINE);
    int lineno = 1, nf = 0;
    if (!idx || !line || !fgets(line, LINE, f)) {
        fprintf(stderr, "%s:1:1: empty file (expected a header with ID and the eta names)\n",
                path);
        rc = -1;
    } else {
        nf = split_csv(line, field, col, MAXF);
        nf = nf < MAXF ? nf : MAXF;
        for (int j = 0; j < nf; j++)
            if (!strcasecmp(field[j], "ID"))
                id_col = j;
        for (int k = 0; k < m->neta; k++) {
            idx[k] = -1;
            for (int j = 0; j < nf; j++)
                if (!strcasecmp(field[j], m->eta_name[k]))
                    idx[k] = j;
            if (idx[k] < 0) {
                fprintf(stderr, "%s:1:1: no column for eta '%s'\n", path, m->eta_name[k]);
                rc = -1;
            }
        }
        if (id_col < 0) {
            fprintf(stderr, "%s:1:1: no ID column\n", path);
            rc = -1;
        }
    }
    while (rc == 0 && fgets(line, LINE, f)) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line))
            continue;
        int n = split_csv(line, field, col, MAXF);
        double v[MAXF];
        for (int j = 0; j < nf && rc == 0; j++) {
            char *end;
            v[j] = j < n ? strtod(field[j], &end) : NAN;
            int needed = j == id_col;
            for (int k = 0; k < m->neta; k++)
                needed |= j == idx[k];
            if (needed && (j >= n || end == field[j] || *end || !isfinite(v[j]))) {
                fprintf(stderr, "%s:%d:%d: expected a number\n", path, lineno,
                        j < n ? col[j] : 1);
                rc = -1;
            }
        }
        for (size_t t = 0; rc == 0 && t < d->nsub; t++)
            if (d->sub[t].id == v[id_col])
                for (int k = 0; k < m->neta; k++)
                    eta[t * (size_t)m->neta + k] = v[idx[k]];
    }
    free(idx);
    free(line);
    fclose(f);
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

    if (popk_cli_load(model_path, data_path, 0, NULL, NULL, &m, &d, &b) != 0)
        goto done;
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
