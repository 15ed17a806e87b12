/* fit/problem.c — the prediction engine as the estimator's per-individual callback. */
#include "fit/fit.h"

#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "pred/obs.h"
#include "pred/pred.h"
#include "util/error.h"

struct popk_fit_problem {
    const popk_model *m;
    const popk_data *d;
    const popk_binding *b;
    popk_problem prob;
    int nthreads;
    popk_pred_ws **ws;
    int *nobs;
    double **y;
    size_t **rec;           /* record index of each observation */
    int **out;              /* output index of each observation */
    double *theta_lo, *theta_hi, *theta0, *sigma0;
    int *theta_fixed, *sigma_fixed, *block, *block_fixed;
    int total_obs;
    double *ids;            /* subject IDs, for messages */
};

static int predict_cb(int i, int thread, const double *theta, const double *sigma,
                      const double *eta, double *f, double *V, double *G, double *dV,
                      void *user, popk_error *err)
{
    popk_fit_problem *fp = user;
    const popk_model *m = fp->m;
    int neta = m->neta;
    popk_pred_dirs dirs = {0};
    if (G || dV) {
        dirs.nd = neta;
        for (int k = 0; k < neta; k++) {
            dirs.dir_is_eta[k] = 1;
            dirs.dir_index[k] = k;
        }
    }
    popk_pred_result res;
    popk_error e;
    popk_error_clear(&e);
    popk_status st = popk_pred_subject(fp->ws[thread], m, fp->d, fp->b, (size_t)i, theta, eta,
                                       &dirs, &res, &e);
    if (st != POPK_OK) {
        /* Numerical trouble at a trial eta is recoverable (the caller shortens its step);
         * anything else is fatal and reported. */
        if (st == POPK_ERR_NUMERIC || st == POPK_ERR_SOLVER || st == POPK_ERR_NOCONV) {
            if (err)
                *err = e;
            return 1;
        }
        if (err)
            *err = e;
        return -1;
    }
    size_t first = fp->d->sub[i].first;
    int st1 = 1 + res.nd;
    for (int j = 0; j < fp->nobs[i]; j++) {
        size_t r = fp->rec[i][j] - first;
        int o = fp->out[i][j];
        const double *fd = res.out + (r * (size_t)res.nout + (size_t)o) * (size_t)st1;
        if (popk_obs_eval(&m->out[o], sigma, fd, res.nd, &f[j], &V[j],
                          G ? G + (size_t)j * neta : NULL, dV ? dV + (size_t)j * neta : NULL)) {
            popk_error_set(err, POPK_ERR_NUMERIC, fp->d->path, fp->d->rec[fp->rec[i][j]].line,
                           0, "prediction %g gives no usable residual variance (output '%s')",
                           fd[0], m->out[o].name);
            return 1;
        }
    }
    return 0;
}

static void *xcalloc(size_t n, size_t size, int *fail)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        *fail = 1;
    return p;
}

popk_fit_problem *popk_fit_problem_new(const popk_model *m, const popk_data *d,
                                       const popk_binding *b, int nthreads, popk_error *err)
{
    int bad = 0;
    popk_fit_problem *fp = calloc(1, sizeof *fp);
    if (!fp) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    fp->m = m;
    fp->d = d;
    fp->b = b;
    fp->nthreads = nthreads > 0 ? nthreads : omp_get_max_threads();
    size_t nsub = d->nsub;
    fp->ws = xcalloc((size_t)fp->nthreads, sizeof *fp->ws, &bad);
    fp->nobs = xcalloc(nsub, sizeof *fp->nobs, &bad);
    fp->y = xcalloc(nsub, sizeof *fp->y, &bad);
    fp->rec = xcalloc(nsub, sizeof *fp->rec, &bad);
    fp->out = xcalloc(nsub, sizeof *fp->out, &bad);
    if (bad)
        goto nomem;
    for (int t = 0; t < fp->nthreads; t++)
        if (!(fp->ws[t] = popk_pred_ws_new(m, err))) {
            popk_fit_problem_free(fp);
            return NULL;
        }
    fp->ids = xcalloc(nsub, sizeof(double), &bad);
    if (bad)
        goto nomem;
    for (size_t s = 0; s < nsub; s++) {
        const popk_subject *sub = &d->sub[s];
        fp->ids[s] = sub->id;
        fp->y[s] = xcalloc(sub->n, sizeof(double), &bad);
        fp->rec[s] = xcalloc(sub->n, sizeof(size_t), &bad);
        fp->out[s] = xcalloc(sub->n, sizeof(int), &bad);
        if (bad)
            goto nomem;
        for (size_t r = sub->first; r < sub->first + sub->n; r++) {
            const popk_record *rec = &d->rec[r];
            if (rec->evid != 0 || rec->mdv != 0 || isnan(rec->dv))
                continue;
            int o = b->out_of_rec[r];
            if (o < 0) {
                popk_error_set(err, POPK_ERR_DATA, d->path, rec->line, 0,
                               "observation answers no output of the model");
                popk_fit_problem_free(fp);
                return NULL;
            }
            double y = popk_obs_transform(&m->out[o], rec->dv);
            if (isnan(y)) {
                popk_error_set(err, POPK_ERR_DATA, d->path, rec->line, 0,
                               "DV %g cannot be used with the log-transformed error of '%s' "
                               "(it must be > 0)", rec->dv, m->out[o].name);
                popk_fit_problem_free(fp);
                return NULL;
            }
            int j = fp->nobs[s]++;
            fp->y[s][j] = y;
            fp->rec[s][j] = r;
            fp->out[s][j] = o;
            fp->total_obs++;
        }
    }
    int nt = m->ntheta, ne = m->neta, ns = m->nsigma;
    fp->theta0 = xcalloc((size_t)nt, sizeof(double), &bad);
    fp->theta_lo = xcalloc((size_t)nt, sizeof(double), &bad);
    fp->theta_hi = xcalloc((size_t)nt, sizeof(double), &bad);
    fp->theta_fixed = xcalloc((size_t)nt, sizeof(int), &bad);
    fp->sigma0 = xcalloc((size_t)ns, sizeof(double), &bad);
    fp->sigma_fixed = xcalloc((size_t)ns, sizeof(int), &bad);
    fp->block = xcalloc((size_t)ne, sizeof(int), &bad);
    fp->block_fixed = xcalloc((size_t)ne, sizeof(int), &bad);
    if (bad)
        goto nomem;
    for (int k = 0; k < nt; k++) {
        fp->theta0[k] = m->theta[k].init;
        fp->theta_lo[k] = m->theta[k].lower;
        fp->theta_hi[k] = m->theta[k].upper;
        fp->theta_fixed[k] = m->theta[k].fixed;
    }
    for (int k = 0; k < ns; k++) {
        fp->sigma0[k] = m->sigma[k].init;
        fp->sigma_fixed[k] = m->sigma[k].fixed;
    }
    for (int k = 0; k < ne; k++) {
        fp->block[k] = m->omega_block[k];
        fp->block_fixed[m->omega_block[k]] = m->omega_fixed[m->omega_block[k]];
    }
    popk_problem *p = &fp->prob;
    p->nsub = (int)nsub;
    p->nobs = fp->nobs;
    p->y = (const double *const *)fp->y;
    p->ntheta = nt;
    p->neta = ne;
    p->nsigma = ns;
    p->theta0 = fp->theta0;
    p->theta_lo = fp->theta_lo;
    p->theta_hi = fp->theta_hi;
    p->theta_fixed = fp->theta_fixed;
    p->omega0 = m->omega;
    p->omega_block = fp->block;
    p->omega_block_fixed = fp->block_fixed;
    p->sigma0 = fp->sigma0;
    p->sigma_fixed = fp->sigma_fixed;
    p->pred = predict_cb;
    p->user = fp;
    p->subject_id = fp->ids;
    return fp;
nomem:
    popk_fit_problem_free(fp);
    popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    return NULL;
}

void popk_fit_problem_free(popk_fit_problem *fp)
{
    if (!fp)
        return;
    for (int t = 0; fp->ws && t < fp->nthreads; t++)
        popk_pred_ws_free(fp->ws[t]);
    for (size_t s = 0; s < fp->d->nsub; s++) {
        if (fp->y)
            free(fp->y[s]);
        if (fp->rec)
            free(fp->rec[s]);
        if (fp->out)
            free(fp->out[s]);
    }
    free(fp->ws);
    free(fp->nobs);
    free(fp->y);
    free(fp->rec);
    free(fp->out);
    free(fp->theta0);
    free(fp->theta_lo);
    free(fp->theta_hi);
    free(fp->theta_fixed);
    free(fp->sigma0);
    free(fp->sigma_fixed);
    free(fp->block);
    free(fp->block_fixed);
    free(fp->ids);
    free(fp);
}

const popk_problem *popk_fit_problem_get(const popk_fit_problem *fp)
{
    return &fp->prob;
}

size_t popk_fit_obs_record(const popk_fit_problem *fp, int i, int j)
{
    return fp->rec[i][j];
}

int popk_fit_nobs(const popk_fit_problem *fp)
{
    return fp->total_obs;
}

/* Whitened residuals C^-1/2 r with C = G Omega G' + diag(V) and C^-1/2 the symmetric inverse
 * square root (C = Q diag(lambda) Q', C^-1/2 = Q diag(lambda^-1/2) Q'). Hooker et al.'s
 * reference CWRES code (xpose4 ind.cwres) uses this root, and NONMEM's WRES/CWRES are defined
 * alike; a Cholesky factor gives a different (rotated) vector with the same sum of squares.
 * C, lambda and work need n*n, n and n entries. */
static int whiten(int n, int neta, const double *G, const double *omega, const double *V,
                  double *r, double *C, double *lambda, double *work)
{
    for (int a = 0; a < n; a++)
        for (int b = 0; b <= a; b++) {
            double s = a == b ? V[a] : 0.0;
            for (int k = 0; k < neta; k++)
                for (int l = 0; l < neta; l++)
                    s += G[a * neta + k] * omega[k * neta + l] * G[b * neta + l];
            C[a * n + b] = C[b * n + a] = s;
        }
    if (n == 0)
        return 0;
    if (LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'L', n, C, n, lambda) != 0 || !(lambda[0] > 0.0))
        return -1;
    /* work = diag(lambda^-1/2) Q' r, then r = Q work */
    for (int k = 0; k < n; k++) {
        double s = 0.0;
        for (int a = 0; a < n; a++)
            s += C[a * n + k] * r[a];
        work[k] = s / sqrt(lambda[k]);
    }
    for (int a = 0; a < n; a++) {
        double s = 0.0;
        for (int k = 0; k < n; k++)
            s += C[a * n + k] * work[k];
        r[a] = s;
    }
    return 0;
}

popk_status popk_fit_residuals(popk_fit_problem *fp, int i, const double *theta,
                               const double *omega, const double *sigma, const double *eta,
                               popk_fit_resid *res, popk_error *err)
{
    return popk_fit_residuals_method(fp, POPK_METHOD_FOCE, i, theta, omega, sigma, eta, res,
                                     err);
}

popk_status popk_fit_residuals_method(popk_fit_problem *fp, popk_method method, int i,
                                      const double *theta, const double *omega,
                                      const double *sigma, const double *eta,
                                      popk_fit_resid *res, popk_error *err)
{
    int n = fp->nobs[i], neta = fp->m->neta;
    int interaction = method == POPK_METHOD_FOCEI || method == POPK_METHOD_LAPLACE;
    size_t nn = (size_t)(n ? n : 1);
    size_t ne = (size_t)(neta ? neta : 1);
    double *f0 = malloc(sizeof(double) * nn * 6), *V0 = f0 + nn, *f1 = V0 + nn, *V1 = f1 + nn;
    double *lambda = V1 + nn, *work = lambda + nn;
    double *G0 = malloc(sizeof(double) * nn * ne * 4), *G1 = G0 + nn * ne, *dV0 = G1 + nn * ne;
    double *dV1 = dV0 + nn * ne;
    double *r = malloc(sizeof(double) * nn), *C = malloc(sizeof(double) * nn * nn);
    double *zero = calloc(ne, sizeof(double));
    popk_status st = POPK_OK;
    if (!f0 || !G0 || !r || !C || !zero) {
        st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto out;
    }
    int thread = omp_get_thread_num();
    if (thread >= fp->nthreads)
        thread = 0;
    if (predict_cb(i, thread, theta, sigma, zero, f0, V0, G0, dV0, fp, err) != 0 ||
        predict_cb(i, thread, theta, sigma, eta, f1, V1, G1, dV1, fp, err) != 0) {
        st = err && err->code ? err->code : POPK_ERR_NUMERIC;
        goto out;
    }
    for (int j = 0; j < n; j++) {
        res[j].dv = fp->y[i][j];
        res[j].pred = f0[j];
        res[j].ipred = f1[j];
        res[j].res = fp->y[i][j] - f0[j];
        res[j].ires = fp->y[i][j] - f1[j];
        res[j].iwres = res[j].ires / sqrt(V1[j]);
        r[j] = res[j].res;
        /* With interaction the first-order expansion of y = f + h(eta) eps at eta = 0 keeps
         * the eta*eps product, whose variance is (dh/deta)' Omega (dh/deta) sigma; with
         * V = h^2 sigma that is dV' Omega dV / (4 V). NONMEM's WRES under INTERACTION (its
         * WRESI) includes it: Wang 2007 proportional, subject 1 at t = 1 gives -1.1786 with
         * it and -1.1839 (NONMEM's NWRES) without. */
        if (interaction && V0[j] > 0.0) {
            double q = 0.0;
            for (int k = 0; k < neta; k++)
                for (int l = 0; l < neta; l++)
                    q += dV0[(size_t)j * neta + k] * omega[k * neta + l] *
                         dV0[(size_t)j * neta + l];
            V0[j] += q / (4.0 * V0[j]);
        }
    }
    int wok = whiten(n, neta, G0, omega, V0, r, C, lambda, work) == 0;
    for (int j = 0; j < n; j++)
        res[j].wres = wok ? r[j] : NAN;
    for (int j = 0; j < n; j++) {
        double s = fp->y[i][j] - f1[j];
        for (int k = 0; k < neta; k++)
            s += G1[(size_t)j * neta + k] * eta[k];
        r[j] = s;
    }
    int cok = whiten(n, neta, G1, omega, V1, r, C, lambda, work) == 0;
    for (int j = 0; j < n; j++)
        res[j].cwres = cok ? r[j] : NAN;
out:
    free(f0);
    free(G0);
    free(r);
    free(C);
    free(zero);
    return st;
}

popk_status popk_fit_ofv_at(const popk_fit_problem *fp, popk_method method,
                            const double *theta, const double *omega, const double *sigma,
                            double *ofv, popk_error *err)
{
    popk_estimator *est = popk_estimator_create(&fp->prob, fp->nthreads, err);
    if (!est)
        return err && err->code ? err->code : POPK_ERR_NOMEM;
    popk_status st = popk_estimator_ofv(est, method, theta, omega, sigma, ofv, err);
    popk_estimator_free(est);
    return st;
}
