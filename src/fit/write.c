/* fit/write.c — the files 'popk fit' leaves behind: fit.yaml (the model with its estimates),
 * tab.csv, eta.csv, ext.csv and summary.txt, each written atomically. */
#include "fit/fit_write.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pred/pred.h"
#include "util/atomic.h"
#include "util/error.h"

#define LOG2PI 1.8378770664093453

/* Name of estimated parameter k: theta or sigma name, "omega(eta)" or "omega(eta_a,eta_b)". */
static void param_name(const popk_model *m, const popk_param_map *map, int k, char *buf,
                       size_t size)
{
    popk_param_kind kind;
    int row, col;
    popk_param_map_info(map, k, &kind, &row, &col);
    if (kind == POPK_PARAM_THETA)
        snprintf(buf, size, "%s", m->theta[row].name);
    else if (kind == POPK_PARAM_SIGMA)
        snprintf(buf, size, "%s", m->sigma[row].name);
    else if (row == col)
        snprintf(buf, size, "omega(%s)", m->eta_name[row]);
    else
        snprintf(buf, size, "omega(%s,%s)", m->eta_name[row], m->eta_name[col]);
}

static void yaml_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* A top-level key line of a block-style YAML mapping: "name:" at column 1. */
static int top_key(const char *line, char *key, size_t size)
{
    if (!isalpha((unsigned char)line[0]) && line[0] != '_')
        return 0;
    size_t n = 0;
    while (isalnum((unsigned char)line[n]) || line[n] == '_')
        n++;
    size_t k = n;
    while (line[k] == ' ')
        k++;
    if (line[k] != ':' || n >= size)
        return 0;
    memcpy(key, line, n);
    key[n] = '\0';
    return 1;
}

static void emit_param(FILE *f, const popk_param *p, double value)
{
    fprintf(f, "  %s: {init: %.10g", p->name, value);
    if (isfinite(p->lower))
        fprintf(f, ", lower: %.10g", p->lower);
    if (isfinite(p->upper))
        fprintf(f, ", upper: %.10g", p->upper);
    if (p->fixed)
        fprintf(f, ", fixed: true");
    if (p->unit) {
        fprintf(f, ", unit: ");
        yaml_string(f, p->unit);
    }
    if (p->label) {
        fprintf(f, ", label: ");
        yaml_string(f, p->label);
    }
    fprintf(f, "}\n");
}

static void emit_theta(FILE *f, const popk_model *m, const popk_estimate_result *r)
{
    fprintf(f, "theta:\n");
    for (int k = 0; k < m->ntheta; k++)
        emit_param(f, &m->theta[k], r->theta[k]);
}

static void emit_sigma(FILE *f, const popk_model *m, const popk_estimate_result *r)
{
    fprintf(f, "sigma:\n");
    for (int k = 0; k < m->nsigma; k++)
        emit_param(f, &m->sigma[k], r->sigma[k]);
}

static void emit_omega(FILE *f, const popk_model *m, const popk_estimate_result *r)
{
    int ne = m->neta;
    fprintf(f, "omega:\n");
    for (int k = 0; k < ne; k++) {
        int blk = m->omega_block[k], first = 1;
        for (int j = 0; j < k; j++)
            first &= m->omega_block[j] != blk;
        if (!first)
            continue;
        int idx[64], n = 0;
        for (int j = k; j < ne && n < 64; j++)
            if (m->omega_block[j] == blk)
                idx[n++] = j;
        if (n == 1) {
            fprintf(f, "  - %s: {var: %.10g%s}\n", m->eta_name[k], r->omega[k * ne + k],
                    m->omega_fixed[blk] ? ", fixed: true" : "");
            continue;
        }
        fprintf(f, "  - block: [");
        for (int a = 0; a < n; a++)
            fprintf(f, "%s%s", a ? ", " : "", m->eta_name[idx[a]]);
        fprintf(f, "]\n    values: [");
        for (int a = 0; a < n; a++)
            for (int b = 0; b <= a; b++)
                fprintf(f, "%s%.10g", a || b ? ", " : "", r->omega[idx[a] * ne + idx[b]]);
        fprintf(f, "]\n");
        if (m->omega_fixed[blk])
            fprintf(f, "    fixed: true\n");
    }
}

double popk_fit_aic(const popk_estimate_result *r, int nobs)
{
    return r->ofv + nobs * LOG2PI + 2.0 * r->npar;
}

double popk_fit_bic(const popk_estimate_result *r, int nobs)
{
    return r->ofv + nobs * LOG2PI + r->npar * log((double)nobs);
}

static popk_status write_fit_yaml(const char *path, const popk_fit_info *info,
                                  popk_error *err)
{
    const popk_model *m = info->model;
    const popk_estimate_result *r = info->result;
    FILE *in = fopen(m->path, "r");
    if (!in)
        return popk_error_set(err, POPK_ERR_IO, m->path, 0, 0, "cannot reread the model file");
    popk_atomic_file af;
    popk_status st = popk_atomic_open(&af, path, err);
    if (st != POPK_OK) {
        fclose(in);
        return st;
    }
    FILE *f = af.fp;
    fprintf(f, "# Fitted by popk %s (%s) from %s on %s.\n", POPK_VERSION,
            popk_method_name(info->method), m->path, info->data->path);
    char line[8192], key[64];
    int skipping = 0, done_theta = 0, done_omega = 0, done_sigma = 0;
    while (fgets(line, sizeof line, in)) {
        if (top_key(line, key, sizeof key)) {
            skipping = 0;
            if (!strcmp(key, "theta")) {
                emit_theta(f, m, r);
                done_theta = skipping = 1;
            } else if (!strcmp(key, "omega")) {
                emit_omega(f, m, r);
                done_omega = skipping = 1;
            } else if (!strcmp(key, "sigma")) {
                emit_sigma(f, m, r);
                done_sigma = skipping = 1;
            } else if (!strcmp(key, "fit")) {
                skipping = 1;
            }
        } else if (!strncmp(line, "# Fitted by popk", 16)) {
            continue;
        }
        if (!skipping)
            fputs(line, f);
    }
    fclose(in);
    if (!done_theta && m->ntheta)
        emit_theta(f, m, r);
    if (!done_omega && m->neta)
        emit_omega(f, m, r);
    if (!done_sigma && m->nsigma)
        emit_sigma(f, m, r);
    int nobs = info->nobs;
    fprintf(f, "\nfit:\n");
    fprintf(f, "  popk_version: %s\n  method: %s\n  status: %s\n", POPK_VERSION,
            popk_method_name(info->method),
            r->status == POPK_OK ? "converged" : "not converged");
    fprintf(f, "  ofv: %.10g\n  aic: %.10g\n  bic: %.10g\n", r->ofv, popk_fit_aic(r, nobs),
            popk_fit_bic(r, nobs));
    fprintf(f, "  loglik: %.10g\n", -0.5 * (r->ofv + nobs * LOG2PI));
    if (!isnan(info->ofv_focei))
        fprintf(f, "  ofv_focei_at_estimates: %.10g\n", info->ofv_focei);
    fprintf(f, "  observations: %d\n  subjects: %d\n  parameters: %d\n", nobs, r->nsub,
            r->npar);
    fprintf(f, "  optimizer: %s%s\n", popk_optimizer_name(r->optimizer),
            r->continued ? ", then slsqp" : "");
    fprintf(f, "  iterations: %d\n  evaluations: %d\n  predictions: %ld\n  runtime_s: %.3f\n",
            r->iterations, r->evaluations, r->predictions, info->runtime);
    fprintf(f, "  covariance:\n    status: %s\n", r->cov_status == POPK_OK ? "ok" : "failed");
    if (r->cov_predictions > 0)
        fprintf(f, "    predictions: %ld\n    runtime_s: %.3f\n", r->cov_predictions,
                r->cov_seconds);
    if (r->cov_status != POPK_OK && r->cov_message[0]) {
        fprintf(f, "    message: ");
        yaml_string(f, r->cov_message);
        fputc('\n', f);
    }
    if (r->cov_status == POPK_OK) {
        fprintf(f, "    condition_number: %.6g\n    se:\n", r->condition);
        const popk_param_map *map = info->map;
        for (int k = 0; k < r->npar; k++) {
            char name[256];
            param_name(m, map, k, name, sizeof name);
            fprintf(f, "      ");
            yaml_string(f, name);
            fprintf(f, ": %.6g\n", r->se[k]);
        }
        /* The estimated thetas' covariance block, for 'popk sim --uncertainty'. */
        int ith[64], nth = 0;
        for (int k = 0; k < r->npar && nth < 64; k++) {
            popk_param_kind kind;
            int row, col;
            popk_param_map_info(map, k, &kind, &row, &col);
            if (kind == POPK_PARAM_THETA)
                ith[nth++] = k;
        }
        if (nth > 0 && r->cov) {
            fprintf(f, "    theta_covariance:\n      names: [");
            for (int i = 0; i < nth; i++) {
                char name[256];
                param_name(m, map, ith[i], name, sizeof name);
                fprintf(f, "%s", i ? ", " : "");
                yaml_string(f, name);
            }
            fprintf(f, "]\n      matrix:\n");
            for (int i = 0; i < nth; i++) {
                fprintf(f, "        - [");
                for (int j = 0; j < nth; j++)
                    fprintf(f, "%s%.17g", j ? ", " : "",
                            r->cov[(size_t)ith[i] * (size_t)r->npar + (size_t)ith[j]]);
                fprintf(f, "]\n");
            }
        }
    }
    fprintf(f, "  shrinkage_percent:\n");
    for (int k = 0; k < m->neta; k++)
        fprintf(f, "    %s: %.4g\n", m->eta_name[k], 100.0 * r->eta_shrinkage[k]);
    fprintf(f, "    epsilon: %.4g\n", 100.0 * r->eps_shrinkage);
    if (ferror(f)) {
        popk_atomic_abort(&af);
        return popk_error_set(err, POPK_ERR_IO, path, 0, 0, "write error");
    }
    return popk_atomic_commit(&af, err);
}

static popk_status write_tab(const char *path, const popk_fit_info *info, popk_error *err)
{
    const popk_model *m = info->model;
    const popk_data *d = info->data;
    const popk_estimate_result *r = info->result;
    popk_fit_problem *fp = info->problem;
    int ne = m->neta;
    popk_atomic_file af;
    popk_status st = popk_atomic_open(&af, path, err);
    if (st != POPK_OK)
        return st;
    FILE *f = af.fp;
    fprintf(f, "ID,TIME,DV,EVID,MDV,PRED,IPRED,RES,WRES,CWRES,IWRES");
    for (int k = 0; k < ne; k++)
        fprintf(f, ",ETA%d", k + 1);
    for (int k = 0; k < m->nind; k++)
        fprintf(f, ",%s", m->ind_name[k]);
    fputc('\n', f);
    popk_pred_ws *ws = popk_pred_ws_new(m, err);
    size_t maxn = 1;
    for (size_t s = 0; s < d->nsub; s++)
        maxn = d->sub[s].n > maxn ? d->sub[s].n : maxn;
    popk_fit_resid *res = malloc(sizeof *res * maxn);
    double *pred0 = malloc(sizeof(double) * maxn);
    double *zero = calloc((size_t)(ne ? ne : 1), sizeof(double));
    if (!ws || !res || !pred0 || !zero) {
        st = ws ? popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory") : err->code;
        goto out;
    }
    for (size_t s = 0; s < d->nsub; s++) {
        const double *eta = r->eta + s * (size_t)ne;
        if ((st = popk_fit_residuals_method(fp, info->method, (int)s, r->theta, r->omega,
                                            r->sigma, eta, res, err)) != POPK_OK)
            goto out;
        popk_pred_result pr;
        if ((st = popk_pred_subject(ws, m, d, info->binding, s, r->theta, zero, NULL, &pr,
                                    err)) != POPK_OK)
            goto out;
        for (size_t k = 0; k < pr.nrec; k++)
            pred0[k] = pr.nout ? pr.out[k * (size_t)pr.nout] : NAN;
        if ((st = popk_pred_subject(ws, m, d, info->binding, s, r->theta, eta, NULL, &pr,
                                    err)) != POPK_OK)
            goto out;
        const popk_subject *sub = &d->sub[s];
        int j = 0;
        const popk_problem *prob = popk_fit_problem_get(fp);
        for (size_t k = 0; k < sub->n; k++) {
            size_t ri = sub->first + k;
            const popk_record *rec = &d->rec[ri];
            int is_obs = j < prob->nobs[s] && popk_fit_obs_record(fp, (int)s, j) == ri;
            double dv = isnan(rec->dv) ? 0.0 : rec->dv;
            if (is_obs) {
                const popk_fit_resid *q = &res[j++];
                fprintf(f, "%.15g,%.15g,%.10g,%d,%d,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g",
                        sub->id, rec->time, dv, rec->evid, rec->mdv, q->pred, q->ipred, q->res,
                        q->wres, q->cwres, q->iwres);
            } else {
                double ipred = pr.nout ? pr.out[k * (size_t)pr.nout] : NAN;
                fprintf(f, "%.15g,%.15g,%.10g,%d,%d,%.10g,%.10g,0,0,0,0", sub->id, rec->time,
                        dv, rec->evid, rec->mdv, pred0[k], ipred);
            }
            for (int e = 0; e < ne; e++)
                fprintf(f, ",%.10g", eta[e]);
            for (int e = 0; e < pr.nind; e++)
                fprintf(f, ",%.10g", pr.ind[k * (size_t)pr.nind + e]);
            fputc('\n', f);
        }
    }
out:
    free(res);
    free(pred0);
    free(zero);
    popk_pred_ws_free(ws);
    if (st != POPK_OK) {
        popk_atomic_abort(&af);
        return st;
    }
    return popk_atomic_commit(&af, err);
}

static popk_status write_eta(const char *path, const popk_fit_info *info, popk_error *err)
{
    const popk_model *m = info->model;
    const popk_estimate_result *r = info->result;
    int ne = m->neta;
    popk_atomic_file af;
    popk_status st = popk_atomic_open(&af, path, err);
    if (st != POPK_OK)
        return st;
    FILE *f = af.fp;
    fprintf(f, "ID");
    for (int k = 0; k < ne; k++)
        fprintf(f, ",%s", m->eta_name[k]);
    for (int k = 0; k < ne; k++)
        fprintf(f, ",SD_%s", m->eta_name[k]);
    fprintf(f, ",OBJI\n");
    for (int s = 0; s < r->nsub; s++) {
        fprintf(f, "%.15g", info->data->sub[s].id);
        for (int k = 0; k < ne; k++)
            fprintf(f, ",%.10g", r->eta[(size_t)s * ne + k]);
        for (int k = 0; k < ne; k++)
            fprintf(f, ",%.10g", sqrt(r->eta_cov[((size_t)s * ne + k) * ne + k]));
        fprintf(f, ",%.10g\n", r->ofv_terms[s]);
    }
    return popk_atomic_commit(&af, err);
}

static popk_status write_ext(const char *path, const popk_fit_info *info, popk_error *err)
{
    const popk_model *m = info->model;
    popk_atomic_file af;
    popk_status st = popk_atomic_open(&af, path, err);
    if (st != POPK_OK)
        return st;
    FILE *f = af.fp;
    int npar = info->result->npar;
    fprintf(f, "ITERATION,OFV");
    for (int k = 0; k < npar; k++) {
        char name[256];
        param_name(m, info->map, k, name, sizeof name);
        fprintf(f, ",%s", name);
    }
    fputc('\n', f);
    for (int i = 0; i < info->ext_rows; i++) {
        const double *row = info->ext + (size_t)i * (2 + npar);
        fprintf(f, "%d,%.10g", (int)row[0], row[1]);
        for (int k = 0; k < npar; k++)
            fprintf(f, ",%.10g", row[2 + k]);
        fputc('\n', f);
    }
    /* Final estimates (-1000000) and SEs (-1000001), as NONMEM's .ext does. */
    fprintf(f, "-1000000,%.10g", info->result->ofv);
    for (int k = 0; k < npar; k++)
        fprintf(f, ",%.10g", info->result->p[k]);
    fputc('\n', f);
    if (info->result->cov_status == POPK_OK) {
        fprintf(f, "-1000001,0");
        for (int k = 0; k < npar; k++)
            fprintf(f, ",%.10g", info->result->se[k]);
        fputc('\n', f);
    }
    return popk_atomic_commit(&af, err);
}

void popk_fit_summary(FILE *f, const popk_fit_info *info)
{
    const popk_model *m = info->model;
    const popk_estimate_result *r = info->result;
    int ok = r->cov_status == POPK_OK;
    fprintf(f, "popk %s — %s fit of %s to %s\n", POPK_VERSION, popk_method_name(info->method),
            m->name ? m->name : m->path, info->data->path);
    fprintf(f, "%d subjects, %d observations, %d estimated parameters; %s after %d iterations "
               "(%d objective evaluations), %.2f s\n\n",
            r->nsub, info->nobs, r->npar, r->status == POPK_OK ? "converged" : "NOT CONVERGED",
            r->iterations, r->evaluations, info->runtime);
    fprintf(f, "%-22s %12s %10s %7s   %s\n", "parameter", "estimate", "SE", "RSE%",
            "95% CI / back-transformed");
    for (int k = 0; k < r->npar; k++) {
        popk_param_kind kind;
        int row, col;
        popk_param_map_info(info->map, k, &kind, &row, &col);
        char name[256], extra[160] = "";
        param_name(m, info->map, k, name, sizeof name);
        double est = r->p[k], se = ok ? r->se[k] : NAN;
        if (kind == POPK_PARAM_OMEGA && row == col)
            snprintf(extra, sizeof extra, "BSV %.1f%% CV, shrinkage %.1f%%",
                     100.0 * sqrt(exp(est) - 1.0), 100.0 * r->eta_shrinkage[row]);
        else if (ok)
            snprintf(extra, sizeof extra, "[%.4g, %.4g]", est - 1.96 * se, est + 1.96 * se);
        if (kind == POPK_PARAM_THETA && ok && m->theta[row].label &&
            !strncmp(m->theta[row].label, "log ", 4)) {
            size_t len = strlen(extra);
            snprintf(extra + len, sizeof extra - len, "  %s = %.4g [%.4g, %.4g]",
                     m->theta[row].label + 4, exp(est), exp(est - 1.96 * se),
                     exp(est + 1.96 * se));
        }
        if (ok)
            fprintf(f, "%-22s %12.6g %10.4g %7.1f   %s\n", name, est, se,
                    100.0 * se / fabs(est), extra);
        else
            fprintf(f, "%-22s %12.6g %10s %7s   %s\n", name, est, "-", "-", extra);
    }
    for (int k = 0; k < m->ntheta; k++)
        if (m->theta[k].fixed)
            fprintf(f, "%-22s %12.6g %10s %7s   fixed\n", m->theta[k].name, r->theta[k], "-",
                    "-");
    fprintf(f, "\nepsilon shrinkage: %.1f%%\n", 100.0 * r->eps_shrinkage);
    fprintf(f, "OFV (-2LL without constant): %.4f   AIC: %.2f   BIC: %.2f   -2LL: %.4f\n",
            r->ofv, popk_fit_aic(r, info->nobs), popk_fit_bic(r, info->nobs),
            r->ofv + info->nobs * LOG2PI);
    if (!isnan(info->ofv_focei))
        fprintf(f, "FOCE-I objective at these %s estimates (nlmixr2's OFV for %s fits): %.4f\n",
                popk_method_name(info->method), popk_method_name(info->method),
                info->ofv_focei);
    if (ok)
        fprintf(f, "covariance step (%s): condition number %.4g\n",
                popk_covstep_name(info->covariance), r->condition);
    else
        fprintf(f, "covariance step: %s\n", r->cov_message[0] ? r->cov_message : "not done");
}

static popk_status write_summary(const char *path, const popk_fit_info *info, popk_error *err)
{
    popk_atomic_file af;
    popk_status st = popk_atomic_open(&af, path, err);
    if (st != POPK_OK)
        return st;
    popk_fit_summary(af.fp, info);
    return popk_atomic_commit(&af, err);
}

popk_status popk_fit_write(const char *dir, const popk_fit_info *info, popk_error *err)
{
    char path[4096];
    struct {
        const char *name;
        popk_status (*fn)(const char *, const popk_fit_info *, popk_error *);
    } files[] = {{"fit.yaml", write_fit_yaml}, {"tab.csv", write_tab}, {"eta.csv", write_eta},
                 {"ext.csv", write_ext}, {"summary.txt", write_summary}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
        popk_status st = files[i].fn(path, info, err);
        if (st != POPK_OK) {
            /* a fit's files belong together: leave none rather than a mixed set */
            for (size_t j = 0; j < i; j++) {
                snprintf(path, sizeof path, "%s/%s", dir, files[j].name);
                remove(path);
            }
            return st;
        }
    }
    return POPK_OK;
}
