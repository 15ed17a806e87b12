/* map/map.c — one patient's MAP estimate, posterior draws and dose recommendation. */
#include "map/map.h"

#include <lapacke.h>
#include <math.h>
#include <nlopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "estimate/estimate.h"
#include "fit/fit.h"
#include "pred/obs.h"
#include "pred/pred.h"
#include "util/error.h"
#include "util/rng.h"

#define MAP_MAX_WARNINGS 64
#define SIR_RATIO 4     /* proposals per posterior draw */
#define SIR_WIDEN 1.25  /* proposal SD relative to the Laplace approximation */

struct popk_map {
    const popk_model *m;
    popk_data *pd;              /* the patient, rebuilt with the model's covariates */
    popk_binding *b;
    popk_fit_problem *fp;
    popk_pred_ws *ws;
    double id;
    int *src_line;              /* pd record -> line in the patient file */
    double *lloq;               /* pd record -> LLOQ of a censored observation, else NaN */
    double *last_cov;           /* model covariates at the last record (model codes) */
    double *theta, *sigma;      /* the model's (fixed) values */
    int neta, out_index, converged, used_m3;
    double dose_lo, dose_hi;
    double *eta, *eta_cov, objective;
    int nsamples;
    popk_pta_method pta;
    double *draws;              /* nsamples x neta posterior draws (common to every use) */
    int nobs;
    popk_map_obs *obs;
    int nparams;
    popk_map_param *params;
    int nwarn;
    char *warn[MAP_MAX_WARNINGS];
};

void popk_map_options_default(popk_map_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->id = NAN;
    opt->dose_lo = opt->dose_hi = NAN;
    opt->nsamples = 500;
    opt->seed = 20261125ULL;
}

void popk_map_warn(popk_map *mp, const char *fmt, ...)
{
    if (mp->nwarn >= MAP_MAX_WARNINGS)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (int k = 0; k < mp->nwarn; k++)
        if (!strcmp(mp->warn[k], buf))
            return; /* one warning per distinct cause */
    char *w = strdup(buf);
    if (w)
        mp->warn[mp->nwarn++] = w;
}

int popk_map_nwarnings(const popk_map *mp) { return mp->nwarn; }
const char *popk_map_warning(const popk_map *mp, int k) { return mp->warn[k]; }
int popk_map_converged(const popk_map *mp) { return mp->converged; }
int popk_map_used_m3(const popk_map *mp) { return mp->used_m3; }
const double *popk_map_eta(const popk_map *mp) { return mp->eta; }
const double *popk_map_eta_cov(const popk_map *mp) { return mp->eta_cov; }
double popk_map_objective(const popk_map *mp) { return mp->objective; }
double popk_map_patient_id(const popk_map *mp) { return mp->id; }
int popk_map_nobs(const popk_map *mp) { return mp->nobs; }
const popk_map_obs *popk_map_observations(const popk_map *mp) { return mp->obs; }
int popk_map_nparams(const popk_map *mp) { return mp->nparams; }
const popk_map_param *popk_map_params(const popk_map *mp) { return mp->params; }

void popk_map_free(popk_map *mp)
{
    if (!mp)
        return;
    popk_fit_problem_free(mp->fp);
    popk_binding_free(mp->b);
    popk_data_free(mp->pd);
    popk_pred_ws_free(mp->ws);
    free(mp->src_line);
    free(mp->lloq);
    free(mp->last_cov);
    free(mp->theta);
    free(mp->sigma);
    free(mp->eta);
    free(mp->eta_cov);
    free(mp->draws);
    free(mp->obs);
    free(mp->params);
    for (int k = 0; k < mp->nwarn; k++)
        free(mp->warn[k]);
    free(mp);
}

/* ---------------------------------------------------------------------------------------
 * The patient's records, rebuilt with the model's covariates in model codes. */

/* Model code of a categorical level named text (case-insensitive), or NaN. */
/* ODE models CVODES must integrate (not linear ones solved by matrix exponential) are
 * costly per prediction: they get delta-method PTA and fewer dose-search segments. */
static int costly_ode(const popk_model *m)
{
    return m->kind == POPK_STRUCT_ODE && !popk_model_uses_expm(m);
}

static double level_code(const popk_covdef *cd, const char *text)
{
    for (int l = 0; l < cd->nlevels; l++)
        if (!strcasecmp(cd->levels[l], text))
            return cd->codes[l];
    char *end;
    double v = strtod(text, &end);
    if (end != text && *end == '\0')
        for (int l = 0; l < cd->nlevels; l++)
            if (cd->codes[l] == v)
                return v;
    return NAN;
}

/* Value of model covariate cd at record r of d (model code), NaN when missing. */
static double data_cov_value(const popk_covdef *cd, const popk_data *d, int col, size_t r,
                             int *bad_level)
{
    if (col < 0)
        return NAN;
    const popk_covariate *c = &d->cov[col];
    double v = c->values[r];
    if (isnan(v))
        return NAN;
    if (c->kind == POPK_COV_CATEGORICAL) {
        const char *text = c->levels[(int)v];
        if (cd->kind == POPK_COVDEF_CONTINUOUS) {
            *bad_level = 1;
            return NAN;
        }
        double code = level_code(cd, text);
        if (isnan(code))
            *bad_level = 1;
        return code;
    }
    if (cd->kind == POPK_COVDEF_CATEGORICAL) {
        for (int l = 0; l < cd->nlevels; l++)
            if (cd->codes[l] == v)
                return v;
        *bad_level = 1;
        return NAN;
    }
    return v;
}

static int find_col(const popk_data *d, const char *a, const char *b)
{
    int k = popk_data_find_cov(d, a);
    return k >= 0 || !b ? k : popk_data_find_cov(d, b);
}

static popk_status build_patient(popk_map *mp, const popk_data *d, const popk_map_options *opt,
                                 popk_error *err)
{
    const popk_model *m = mp->m;
    size_t s = 0;
    if (d->nsub == 0)
        return popk_error_set(err, POPK_ERR_DATA, d->path, 0, 0, "the patient file has no records");
    if (isnan(opt->id)) {
        if (d->nsub > 1)
            popk_map_warn(mp, "the patient file holds %zu subjects; only ID %g was used (choose "
                          "one with --id)", d->nsub, d->sub[0].id);
    } else {
        while (s < d->nsub && d->sub[s].id != opt->id)
            s++;
        if (s == d->nsub)
            return popk_error_set(err, POPK_ERR_ARG, d->path, 0, 0,
                                  "no subject with ID %g in the patient file", opt->id);
    }
    const popk_subject *sub = &d->sub[s];
    mp->id = sub->id;
    int ncov = m->ncov;
    popk_status st = POPK_OK;
    const char **names = calloc((size_t)(ncov ? ncov : 1), sizeof *names);
    double *over = malloc(sizeof(double) * (size_t)(ncov ? ncov : 1));
    double *cur = malloc(sizeof(double) * (size_t)(ncov ? ncov : 1));
    int *col = malloc(sizeof(int) * (size_t)(ncov ? ncov : 1));
    mp->src_line = calloc(sub->n ? sub->n : 1, sizeof *mp->src_line);
    mp->lloq = calloc(sub->n ? sub->n : 1, sizeof *mp->lloq);
    mp->last_cov = calloc((size_t)(ncov ? ncov : 1), sizeof *mp->last_cov);
    popk_data_builder *bld = NULL;
    if (!names || !over || !cur || !col || !mp->src_line || !mp->lloq || !mp->last_cov) {
        st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto out;
    }
    for (int k = 0; k < ncov; k++) {
        const popk_covdef *cd = &m->cov[k];
        names[k] = cd->name;
        over[k] = NAN;
        col[k] = popk_data_find_cov(d, cd->name);
        for (int j = 0; j < opt->ncov; j++) {
            if (strcasecmp(opt->cov_name[j], cd->name))
                continue;
            if (cd->kind == POPK_COVDEF_CATEGORICAL)
                over[k] = level_code(cd, opt->cov_value[j]);
            else {
                char *end;
                over[k] = strtod(opt->cov_value[j], &end);
                if (end == opt->cov_value[j] || *end)
                    over[k] = NAN;
            }
            if (isnan(over[k])) {
                st = popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                    "--covariates %s=%s: not a valid value of %s", cd->name,
                                    opt->cov_value[j], cd->name);
                goto out;
            }
        }
        /* the first value on file stands for earlier missing ones */
        cur[k] = over[k];
        for (size_t r = sub->first; isnan(cur[k]) && r < sub->first + sub->n; r++) {
            int bad = 0;
            cur[k] = data_cov_value(cd, d, col[k], r, &bad);
            if (bad) {
                st = popk_error_set(err, POPK_ERR_DATA, d->path, d->rec[r].line, 0,
                                    "covariate %s: value not known to the model", cd->name);
                goto out;
            }
        }
        if (isnan(cur[k])) {
            if (!cd->has_default) {
                st = popk_error_set(err, POPK_ERR_DATA, d->path, 0, 0,
                                    "the model needs covariate %s%s%s%s but the patient file has "
                                    "no value for it (give --covariates %s=VALUE)", cd->name,
                                    cd->unit ? " (" : "", cd->unit ? cd->unit : "",
                                    cd->unit ? ")" : "", cd->name);
                goto out;
            }
            cur[k] = cd->default_value;
            if (cd->used)
                popk_map_warn(mp, "covariate %s is not given; the model's default was used",
                              cd->name);
        }
    }
    for (int j = 0; j < opt->ncov; j++) {
        int known = 0;
        for (int k = 0; k < ncov; k++)
            known |= !strcasecmp(opt->cov_name[j], m->cov[k].name);
        if (!known) {
            st = popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                                "--covariates %s: the model has no covariate of that name",
                                opt->cov_name[j]);
            goto out;
        }
    }
    int cens_col = find_col(d, "CENS", "BLQ"), lloq_col = popk_data_find_cov(d, "LLOQ");
    double first_dose = INFINITY;
    for (size_t r = sub->first; r < sub->first + sub->n; r++)
        if ((d->rec[r].evid == 1 || d->rec[r].evid == 4) && d->rec[r].time < first_dose)
            first_dose = d->rec[r].time;
    if (!(bld = popk_data_builder_new(ncov, names, err))) {
        st = err ? err->code : POPK_ERR_NOMEM;
        goto out;
    }
    size_t n = 0;
    for (size_t r = sub->first; r < sub->first + sub->n; r++, n++) {
        popk_record rec = d->rec[r];
        mp->src_line[n] = rec.line;
        mp->lloq[n] = NAN;
        for (int k = 0; k < ncov; k++) {
            int bad = 0;
            double v = isnan(over[k]) ? data_cov_value(&m->cov[k], d, col[k], r, &bad) : over[k];
            if (bad) {
                st = popk_error_set(err, POPK_ERR_DATA, d->path, rec.line, 0,
                                    "covariate %s: value not known to the model", m->cov[k].name);
                goto out;
            }
            if (!isnan(v))
                cur[k] = v;
        }
        if (rec.evid == 0) {
            double flag = cens_col >= 0 ? d->cov[cens_col].values[r] : NAN;
            double lim = lloq_col >= 0 ? d->cov[lloq_col].values[r] : NAN;
            if (flag == 1.0 && !isnan(rec.dv)) {
                mp->lloq[n] = isnan(lim) ? rec.dv : lim;
                rec.mdv = 0;
            } else if (!isnan(lim) && (isnan(rec.dv) || rec.dv < lim)) {
                mp->lloq[n] = lim;
                rec.mdv = 0;
            }
            if (!isnan(mp->lloq[n])) {
                if (!(mp->lloq[n] > 0)) {
                    st = popk_error_set(err, POPK_ERR_DATA, d->path, rec.line, 0,
                                        "limit of quantification %g must be > 0", mp->lloq[n]);
                    goto out;
                }
                rec.dv = mp->lloq[n];
            }
            if (rec.mdv == 0 && !isnan(rec.dv) && rec.dv < 0) {
                st = popk_error_set(err, POPK_ERR_DATA, d->path, rec.line, 0,
                                    "negative concentration %g: a measured level cannot be below "
                                    "0 (for a level below the limit of quantification give "
                                    "CENS=1 or an LLOQ column)", rec.dv);
                goto out;
            }
            if (rec.mdv == 0 && rec.time < first_dose) {
                if (!isnan(rec.dv) && rec.dv > 0 && isnan(mp->lloq[n]))
                    popk_map_warn(mp, "line %d: a level of %g at time %g, before the first "
                                  "dose, was ignored (drug given before the records start, or "
                                  "a wrong time?)", rec.line, rec.dv, rec.time);
                rec.mdv = 1;
                mp->lloq[n] = NAN;
            }
        }
        if ((st = popk_data_builder_add(bld, sub->id, &rec, cur, err)) != POPK_OK)
            goto out;
    }
    memcpy(mp->last_cov, cur, sizeof(double) * (size_t)ncov);
    for (int k = 0; k < ncov; k++) {
        const popk_covdef *cd = &m->cov[k];
        double ref = cd->reference;
        if (cd->kind == POPK_COVDEF_CONTINUOUS && cd->used && isfinite(ref) && ref > 0 &&
            (cur[k] > 4 * ref || cur[k] < ref / 4))
            popk_map_warn(mp, "covariate %s = %g is far from the model's reference %g%s%s: "
                          "check its units", cd->name, cur[k], ref, cd->unit ? " " : "",
                          cd->unit ? cd->unit : "");
        if (cd->kind == POPK_COVDEF_CONTINUOUS && cd->used && cur[k] < 0) {
            st = popk_error_set(err, POPK_ERR_DATA, d->path, 0, 0,
                                "covariate %s = %g is negative", cd->name, cur[k]);
            goto out;
        }
    }
    mp->pd = popk_data_builder_finish(bld);
    bld = NULL;
    /* which NONMEM items the file had decides how observations find outputs (DVID) */
    memcpy(mp->pd->has_col, d->has_col, sizeof d->has_col);
    free(mp->pd->path);
    mp->pd->path = strdup(d->path ? d->path : "(patient)");
out:
    popk_data_builder_free(bld);
    free(names);
    free(over);
    free(cur);
    free(col);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * The joint term with M3 censoring (own minimiser; see map.h). */

typedef struct {
    popk_map *mp;
    const popk_problem *prob;
    int n, neta;
    const double *y;
    double *lloq;               /* per observation: NaN or the limit */
    double *omega_inv, logdet_omega;
    double *f, *V, *G, *dV;
    int failed;
    popk_error *err;
} m3_ctx;

/* log Phi(z) and phi(z)/Phi(z), accurate far into the lower tail. */
static void log_norm_cdf(double z, double *log_cdf, double *mills)
{
    if (z > -30.0) {
        double cdf = 0.5 * erfc(-z / sqrt(2.0));
        *log_cdf = log(cdf);
        *mills = exp(-0.5 * z * z) / sqrt(2.0 * M_PI) / cdf;
    } else { /* asymptotic series of the Mills ratio */
        double z2 = z * z;
        double r = -z * (1.0 + 1.0 / z2 - 2.0 / (z2 * z2));
        *mills = r;
        *log_cdf = -0.5 * z2 - 0.5 * log(2.0 * M_PI) - log(r);
    }
}

static int m3_eval(m3_ctx *c, const double *eta, double *l, double *grad)
{
    int q = c->neta, n = c->n;
    int st = c->prob->pred(0, 0, c->prob->theta0, c->mp->sigma, eta, c->f, c->V,
                           grad ? c->G : NULL, grad ? c->dV : NULL, c->prob->user, c->err);
    if (st != 0)
        return st;
    double s = c->logdet_omega;
    if (grad)
        for (int a = 0; a < q; a++)
            grad[a] = 0.0;
    for (int a = 0; a < q; a++)
        for (int b = 0; b < q; b++) {
            s += eta[a] * c->omega_inv[a * q + b] * eta[b];
            if (grad)
                grad[a] += 2.0 * c->omega_inv[a * q + b] * eta[b];
        }
    for (int j = 0; j < n; j++) {
        double f = c->f[j], V = c->V[j];
        const double *G = c->G + (size_t)j * q, *dV = c->dV + (size_t)j * q;
        if (isnan(c->lloq[j])) {
            double r = c->y[j] - f;
            s += r * r / V + log(V);
            if (grad)
                for (int a = 0; a < q; a++)
                    grad[a] += -2.0 * r / V * G[a] + (1.0 / V - r * r / (V * V)) * dV[a];
        } else {
            double sd = sqrt(V), z = (c->lloq[j] - f) / sd, lc, mills;
            log_norm_cdf(z, &lc, &mills);
            s += -2.0 * lc;
            if (grad)
                for (int a = 0; a < q; a++) {
                    double dz = -G[a] / sd - 0.5 * z / V * dV[a];
                    grad[a] += -2.0 * mills * dz;
                }
        }
    }
    *l = s;
    return isfinite(s) ? 0 : 1;
}

static double m3_objective(unsigned n, const double *x, double *grad, void *user)
{
    (void)n;
    m3_ctx *c = user;
    double l;
    int st = m3_eval(c, x, &l, grad);
    if (st != 0) {
        if (st < 0)
            c->failed = 1;
        if (grad)
            memset(grad, 0, sizeof(double) * (size_t)c->neta);
        return 1e30; /* a trial eta the model cannot predict from: reject it */
    }
    return l;
}

/* Symmetric positive-definite inverse in place; 0 ok. Also log det of the input. */
static int spd_inverse(int n, double *a, double *logdet)
{
    if (n == 0) {
        if (logdet)
            *logdet = 0.0;
        return 0;
    }
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, a, n) != 0)
        return -1;
    if (logdet) {
        *logdet = 0.0;
        for (int k = 0; k < n; k++)
            *logdet += 2.0 * log(a[k * n + k]);
    }
    if (LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', n, a, n) != 0)
        return -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            a[j * n + i] = a[i * n + j];
    return 0;
}

/* The joint term's context for the patient (free with m3_ctx_free). */
static popk_status m3_ctx_init(popk_map *mp, m3_ctx *c, popk_error *err)
{
    const popk_problem *prob = popk_fit_problem_get(mp->fp);
    int q = mp->neta, n = prob->nobs[0];
    size_t nn = (size_t)(n ? n : 1), qq = (size_t)(q ? q : 1);
    memset(c, 0, sizeof *c);
    c->mp = mp;
    c->prob = prob;
    c->n = n;
    c->neta = q;
    c->y = prob->y[0];
    c->err = err;
    c->lloq = malloc(sizeof(double) * nn);
    c->omega_inv = malloc(sizeof(double) * qq * qq);
    c->f = malloc(sizeof(double) * nn * 2);
    c->G = malloc(sizeof(double) * nn * qq * 2);
    if (!c->lloq || !c->omega_inv || !c->f || !c->G)
        return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    c->V = c->f + nn;
    c->dV = c->G + nn * qq;
    for (int j = 0; j < n; j++) {
        size_t r = popk_fit_obs_record(mp->fp, 0, j);
        c->lloq[j] = mp->lloq[r];
        if (!isnan(c->lloq[j]))
            c->lloq[j] = popk_obs_transform(&mp->m->out[mp->b->out_of_rec[r]], c->lloq[j]);
    }
    memcpy(c->omega_inv, mp->m->omega, sizeof(double) * (size_t)(q * q));
    if (spd_inverse(q, c->omega_inv, &c->logdet_omega) != 0)
        return popk_error_set(err, POPK_ERR_MODEL, mp->m->path, 0, 0,
                              "the model's omega is not positive definite");
    return POPK_OK;
}

static void m3_ctx_free(m3_ctx *c)
{
    free(c->lloq);
    free(c->omega_inv);
    free(c->f);
    free(c->G);
}

static popk_status map_m3(popk_map *mp, popk_error *err)
{
    int q = mp->neta;
    size_t qq = (size_t)(q ? q : 1);
    m3_ctx c;
    double *H = malloc(sizeof(double) * qq * qq), *g1 = malloc(sizeof(double) * qq * 3);
    popk_status st = m3_ctx_init(mp, &c, err);
    if (st == POPK_OK && (!H || !g1))
        st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    if (st != POPK_OK)
        goto out;
    for (int a = 0; a < q; a++)
        mp->eta[a] = 0.0;
    double l = 0.0;
    if (q > 0) {
        nlopt_opt o = nlopt_create(NLOPT_LD_LBFGS, (unsigned)q);
        if (!o) {
            st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
            goto out;
        }
        nlopt_set_min_objective(o, m3_objective, &c);
        nlopt_set_ftol_rel(o, 1e-14);
        nlopt_set_xtol_rel(o, 1e-10);
        nlopt_set_maxeval(o, 5000);
        nlopt_result res = nlopt_optimize(o, mp->eta, &l);
        nlopt_destroy(o);
        if (c.failed) {
            st = err && err->code ? err->code : POPK_ERR_NUMERIC;
            goto out;
        }
        mp->converged = res > 0 && l < 1e29;
    } else {
        mp->converged = m3_eval(&c, mp->eta, &l, NULL) == 0;
    }
    if (m3_eval(&c, mp->eta, &l, NULL) != 0) {
        st = popk_error_set(err, POPK_ERR_NOCONV, NULL, 0, 0,
                            "the posterior mode could not be found (no usable prediction)");
        goto out;
    }
    mp->objective = l;
    /* Hessian by central differences of the exact gradient; covariance (H/2)^-1 */
    for (int a = 0; a < q; a++) {
        double h = 1e-5 * fmax(1.0, fabs(mp->eta[a]));
        double *gp = g1, *gm = g1 + q, *e = g1 + 2 * q, lv;
        memcpy(e, mp->eta, sizeof(double) * (size_t)q);
        e[a] = mp->eta[a] + h;
        int s1 = m3_eval(&c, e, &lv, gp);
        e[a] = mp->eta[a] - h;
        int s2 = m3_eval(&c, e, &lv, gm);
        if (s1 || s2) {
            st = popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                                "no prediction next to the posterior mode (Hessian)");
            goto out;
        }
        for (int b = 0; b < q; b++)
            H[a * q + b] = (gp[b] - gm[b]) / (2.0 * h);
    }
    for (int a = 0; a < q; a++)
        for (int b = 0; b < a; b++)
            H[a * q + b] = H[b * q + a] = 0.5 * (H[a * q + b] + H[b * q + a]);
    for (int k = 0; k < q * q; k++)
        mp->eta_cov[k] = 0.5 * H[k];
    if (spd_inverse(q, mp->eta_cov, NULL) != 0) {
        mp->converged = 0;
        memcpy(mp->eta_cov, mp->m->omega, sizeof(double) * (size_t)(q * q));
        popk_map_warn(mp, "the posterior is not peaked at the estimate (Hessian not positive "
                      "definite): credible intervals use the population variability");
    }
out:
    m3_ctx_free(&c);
    free(H);
    free(g1);
    return st;
}

static popk_status map_gaussian(popk_map *mp, popk_error *err)
{
    const popk_problem *prob = popk_fit_problem_get(mp->fp);
    int q = mp->neta;
    popk_estimator *est = popk_estimator_create(prob, 1, err);
    if (!est)
        return err ? err->code : POPK_ERR_NOMEM;
    popk_error e;
    popk_error_clear(&e);
    popk_status st = popk_estimator_posthoc(est, 1, prob->theta0, mp->m->omega, mp->sigma, &e);
    if (st == POPK_OK) {
        memcpy(mp->eta, popk_estimator_eta(est), sizeof(double) * (size_t)q);
        memcpy(mp->eta_cov, popk_estimator_eta_cov(est), sizeof(double) * (size_t)(q * q));
        mp->objective = popk_estimator_ofv_terms(est)[0];
        mp->converged = 1;
    }
    popk_estimator_free(est);
    if (st == POPK_OK) {
        /* the Laplace term includes log det(H/2): report l(eta_hat) itself */
        double ld = 0.0;
        double *c = malloc(sizeof(double) * (size_t)(q > 0 ? q * q : 1));
        if (c) {
            memcpy(c, mp->eta_cov, sizeof(double) * (size_t)(q * q));
            if (q == 0 || LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', q, c, q) == 0)
                for (int k = 0; k < q; k++)
                    ld += 2.0 * log(c[k * q + k]);
            free(c);
        }
        mp->objective += ld;
        return POPK_OK;
    }
    if (st == POPK_ERR_NUMERIC || st == POPK_ERR_NOCONV || st == POPK_ERR_SOLVER) {
        /* the estimator's Newton iterations failed: try the quasi-Newton minimiser */
        popk_map_warn(mp, "the Newton iterations for the posterior mode failed (%s); a "
                      "quasi-Newton search was used instead", e.message);
        return map_m3(mp, err);
    }
    if (err)
        *err = e;
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Predictions on generated datasets. */

typedef struct {
    popk_data *d;
    popk_binding *b;
} gen_data;

static void gen_free(gen_data *g)
{
    popk_binding_free(g->b);
    popk_data_free(g->d);
    g->b = NULL;
    g->d = NULL;
}

static int cmp_time(const void *a, const void *b)
{
    const popk_record *x = a, *y = b;
    if (x->time != y->time)
        return x->time < y->time ? -1 : 1;
    return x->line - y->line; /* stable: history first, in file order */
}

/* Dataset of one subject from records (sorted here by time) with the covariates of the
 * latest patient record at or before each time. */
static popk_status gen_build(popk_map *mp, popk_record *rec, size_t n, gen_data *g,
                             popk_error *err)
{
    const popk_model *m = mp->m;
    const char **names = calloc((size_t)(m->ncov ? m->ncov : 1), sizeof *names);
    double *cv = malloc(sizeof(double) * (size_t)(m->ncov ? m->ncov : 1));
    popk_status st = POPK_OK;
    popk_data_builder *bld = NULL;
    if (!names || !cv) {
        st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto out;
    }
    for (int k = 0; k < m->ncov; k++)
        names[k] = m->cov[k].name;
    for (size_t r = 0; r < n; r++)
        rec[r].line = (int)r;
    qsort(rec, n, sizeof *rec, cmp_time);
    if (!(bld = popk_data_builder_new(m->ncov, names, err))) {
        st = err ? err->code : POPK_ERR_NOMEM;
        goto out;
    }
    const popk_data *pd = mp->pd;
    size_t h = 0;
    for (size_t r = 0; r < n; r++) {
        while (h + 1 < pd->nrec && pd->rec[h + 1].time <= rec[r].time)
            h++;
        for (int k = 0; k < m->ncov; k++)
            cv[k] = pd->nrec ? pd->cov[k].values[h] : mp->last_cov[k];
        if ((st = popk_data_builder_add(bld, mp->id, &rec[r], cv, err)) != POPK_OK)
            goto out;
    }
    g->d = popk_data_builder_finish(bld);
    bld = NULL;
    memcpy(g->d->has_col, mp->pd->has_col, sizeof g->d->has_col);
    if (!(g->b = popk_model_bind(m, g->d, err))) {
        st = err ? err->code : POPK_ERR_DATA;
        gen_free(g);
    }
out:
    popk_data_builder_free(bld);
    free(names);
    free(cv);
    return st;
}

/* Output k of record r for eta (values only). */
static popk_status gen_predict(popk_map *mp, gen_data *g, const double *eta,
                               popk_pred_result *res, popk_error *err)
{
    return popk_pred_subject(mp->ws, mp->m, g->d, g->b, 0, mp->theta, eta, NULL, res, err);
}

static double out_value(const popk_map *mp, const popk_pred_result *res, size_t r)
{
    return res->out[(r * (size_t)res->nout + (size_t)mp->out_index) * (size_t)(1 + res->nd)];
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Quantile p of n sorted values (linear interpolation, type 7). */
static double quantile(const double *v, int n, double p)
{
    if (n <= 0)
        return NAN;
    double h = (n - 1) * p;
    int lo = (int)floor(h);
    if (lo >= n - 1)
        return v[n - 1];
    return v[lo] + (h - lo) * (v[lo + 1] - v[lo]);
}

static popk_status make_draws(popk_map *mp, unsigned long long seed, popk_error *err)
{
    int q = mp->neta, ns = mp->nsamples;
    double *L = malloc(sizeof(double) * (size_t)(q > 0 ? q * q : 1));
    mp->draws = malloc(sizeof(double) * (size_t)ns * (size_t)(q ? q : 1));
    if (!L || !mp->draws) {
        free(L);
        return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    }
    memcpy(L, mp->eta_cov, sizeof(double) * (size_t)(q * q));
    if (q > 0 && LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', q, L, q) != 0) {
        free(L);
        return popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                              "posterior covariance is not positive definite");
    }
    for (int a = 0; a < q; a++)
        for (int b = a + 1; b < q; b++)
            L[a * q + b] = 0.0;
    popk_rng rng;
    popk_rng_init(&rng, seed, 0);
    popk_status st = POPK_OK;
    if (costly_ode(mp->m) || q == 0) {
        for (int s = 0; s < ns; s++) {
            double *x = mp->draws + (size_t)s * q;
            popk_rng_mvnormal(&rng, q, L, x);
            for (int a = 0; a < q; a++)
                x[a] += mp->eta[a];
        }
        free(L);
        return POPK_OK;
    }
    /* Sampling-importance-resampling: proposals from the Laplace approximation widened by
     * SIR_WIDEN, weighted by the exact posterior exp(-l/2) (M3 terms included) over the
     * proposal density, then resampled (systematic), so that intervals and probabilities
     * follow the posterior where it is skewed. Closed-form models only: it costs SIR_RATIO
     * predictions of the history per draw. */
    int M = SIR_RATIO * ns;
    double *prop = malloc(sizeof(double) * (size_t)M * (size_t)q);
    double *lw = malloc(sizeof(double) * (size_t)M), *z = malloc(sizeof(double) * (size_t)q);
    m3_ctx c;
    memset(&c, 0, sizeof c);
    if (!prop || !lw || !z) {
        st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto sir_out;
    }
    if ((st = m3_ctx_init(mp, &c, err)) != POPK_OK)
        goto sir_out;
    double lmax = -INFINITY;
    for (int i = 0; i < M; i++) {
        double *x = prop + (size_t)i * q, zz = 0.0, l;
        for (int a = 0; a < q; a++) {
            z[a] = popk_rng_normal(&rng);
            zz += z[a] * z[a];
        }
        for (int a = 0; a < q; a++) {
            double v = 0.0;
            for (int b = 0; b <= a; b++)
                v += L[a * q + b] * z[b];
            x[a] = mp->eta[a] + SIR_WIDEN * v;
        }
        lw[i] = m3_eval(&c, x, &l, NULL) == 0 ? -0.5 * l + 0.5 * zz : -INFINITY;
        lmax = fmax(lmax, lw[i]);
    }
    double sw = 0.0, sw2 = 0.0;
    for (int i = 0; i < M; i++) {
        lw[i] = isfinite(lw[i]) ? exp(lw[i] - lmax) : 0.0;
        sw += lw[i];
        sw2 += lw[i] * lw[i];
    }
    if (!(sw > 0)) {
        st = popk_error_set(err, POPK_ERR_NUMERIC, NULL, 0, 0,
                            "no usable posterior draw near the estimate");
        goto sir_out;
    }
    double ess = sw * sw / sw2;
    if (ess < 0.1 * M)
        popk_map_warn(mp, "the posterior is far from normal (effective sample size %.0f of %d "
                      "draws): intervals and probabilities are rough", ess, M);
    double u = popk_rng_uniform(&rng), acc = 0.0;
    int i = 0;
    for (int s = 0; s < ns; s++) {
        double target = (s + u) / ns * sw;
        while (i < M - 1 && acc + lw[i] < target)
            acc += lw[i++];
        memcpy(mp->draws + (size_t)s * q, prop + (size_t)i * q, sizeof(double) * (size_t)q);
    }
sir_out:
    m3_ctx_free(&c);
    free(prop);
    free(lw);
    free(z);
    free(L);
    return st;
}

static popk_record other_record(double time)
{
    popk_record r = {0};
    r.time = time;
    r.dv = NAN;
    r.evid = 2;
    r.mdv = 1;
    return r;
}

/* Observation table and individual parameters with posterior quantiles. */
static popk_status summarise(popk_map *mp, popk_error *err)
{
    const popk_model *m = mp->m;
    const popk_problem *prob = popk_fit_problem_get(mp->fp);
    int n = prob->nobs[0];
    mp->nobs = n;
    mp->obs = calloc((size_t)(n ? n : 1), sizeof *mp->obs);
    popk_fit_resid *rs = calloc((size_t)(n ? n : 1), sizeof *rs);
    double *zero = calloc((size_t)(mp->neta ? mp->neta : 1), sizeof *zero);
    double *pop = NULL, *vals = NULL;
    popk_status st = POPK_OK;
    if (!mp->obs || !rs || !zero) {
        st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto out;
    }
    if (n > 0 && (st = popk_fit_residuals(mp->fp, 0, prob->theta0, m->omega, mp->sigma,
                                          mp->eta, rs, err)) != POPK_OK)
        goto out;
    popk_pred_result res;
    gen_data g = {mp->pd, mp->b};
    size_t nrec = mp->pd->nrec;
    int nind = m->nind;
    mp->nparams = nind;
    mp->params = calloc((size_t)(nind ? nind : 1), sizeof *mp->params);
    pop = malloc(sizeof(double) * (size_t)(n + nind + 1) * 2);
    vals = malloc(sizeof(double) * (size_t)(nind ? nind : 1) * (size_t)mp->nsamples);
    if (!mp->params || !pop || !vals) {
        st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto out;
    }
    if ((st = gen_predict(mp, &g, zero, &res, err)) != POPK_OK)
        goto out;
    for (int j = 0; j < n; j++)
        pop[j] = out_value(mp, &res, popk_fit_obs_record(mp->fp, 0, j));
    for (int k = 0; k < nind; k++)
        mp->params[k].typical = res.ind[(nrec - 1) * (size_t)res.nind + (size_t)k];
    if ((st = gen_predict(mp, &g, mp->eta, &res, err)) != POPK_OK)
        goto out;
    int nlow = 0, nhigh = 0, nunc = 0;
    for (int j = 0; j < n; j++) {
        size_t r = popk_fit_obs_record(mp->fp, 0, j);
        popk_map_obs *o = &mp->obs[j];
        o->time = mp->pd->rec[r].time;
        o->dv = mp->pd->rec[r].dv;
        o->lloq = mp->lloq[r];
        o->pred = pop[j];
        o->ipred = out_value(mp, &res, r);
        o->iwres = isnan(o->lloq) ? rs[j].iwres : NAN;
        o->line = mp->src_line[r];
        if (isnan(o->lloq) && o->pred > 0) {
            nunc++;
            nlow += o->dv < o->pred / 10;
            nhigh += o->dv > o->pred * 10;
        }
    }
    if (nunc > 0 && (nlow == nunc || nhigh == nunc))
        popk_map_warn(mp, "every measured level is more than 10 times %s the population "
                      "prediction: check that the concentrations are in the model's units "
                      "(%s) and the doses in its dose units", nlow ? "below" : "above",
                      m->out[mp->out_index].name);
    for (int k = 0; k < nind; k++) {
        mp->params[k].name = m->ind_name[k];
        mp->params[k].value = res.ind[(nrec - 1) * (size_t)res.nind + (size_t)k];
    }
    /* The individual variables depend on eta and the record's covariates only: a dataset of
     * the last record alone gives them without running the patient's history (ODE cost). */
    popk_record last = other_record(mp->pd->rec[nrec - 1].time);
    gen_data one = {0};
    if ((st = gen_build(mp, &last, 1, &one, err)) != POPK_OK)
        goto out;
    int good = 0;
    for (int s = 0; s < mp->nsamples; s++) {
        if (gen_predict(mp, &one, mp->draws + (size_t)s * mp->neta, &res, NULL) != POPK_OK)
            continue;
        for (int k = 0; k < nind; k++)
            vals[(size_t)k * mp->nsamples + good] = res.ind[(size_t)k];
        good++;
    }
    gen_free(&one);
    for (int k = 0; k < nind; k++) {
        double *v = vals + (size_t)k * mp->nsamples;
        qsort(v, (size_t)good, sizeof *v, cmp_double);
        mp->params[k].lo95 = quantile(v, good, 0.025);
        mp->params[k].hi95 = quantile(v, good, 0.975);
        mp->params[k].lo90 = quantile(v, good, 0.05);
        mp->params[k].hi90 = quantile(v, good, 0.95);
    }
out:
    free(rs);
    free(zero);
    free(pop);
    free(vals);
    return st;
}

popk_map *popk_map_new(const popk_model *m, const popk_data *d, const popk_map_options *opt,
                       popk_error *err)
{
    popk_map_options defaults;
    if (!opt) {
        popk_map_options_default(&defaults);
        opt = &defaults;
    }
    popk_map *mp = calloc(1, sizeof *mp);
    if (!mp) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    mp->m = m;
    mp->neta = m->neta;
    mp->dose_lo = opt->dose_lo;
    mp->dose_hi = opt->dose_hi;
    mp->nsamples = opt->nsamples > 0 ? opt->nsamples : 500;
    mp->pta = opt->pta;
    if (mp->pta == POPK_PTA_AUTO)
        mp->pta = costly_ode(m) ? POPK_PTA_DELTA : POPK_PTA_SAMPLE;
    size_t q = (size_t)(m->neta ? m->neta : 1);
    mp->eta = calloc(q, sizeof *mp->eta);
    mp->eta_cov = calloc(q * q, sizeof *mp->eta_cov);
    mp->theta = calloc((size_t)(m->ntheta ? m->ntheta : 1), sizeof *mp->theta);
    mp->sigma = calloc((size_t)(m->nsigma ? m->nsigma : 1), sizeof *mp->sigma);
    if (!mp->eta || !mp->eta_cov || !mp->theta || !mp->sigma) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto fail;
    }
    for (int k = 0; k < m->ntheta; k++)
        mp->theta[k] = m->theta[k].init;
    for (int k = 0; k < m->nsigma; k++)
        mp->sigma[k] = m->sigma[k].init;
    if (m->nout == 0) {
        popk_error_set(err, POPK_ERR_MODEL, m->path, 0, 0, "the model has no output to predict");
        goto fail;
    }
    if (build_patient(mp, d, opt, err) != POPK_OK)
        goto fail;
    if (!(mp->b = popk_model_bind(m, mp->pd, err)))
        goto fail;
    for (size_t r = 0; r < mp->pd->nrec; r++) {
        if (mp->b->out_of_rec[r] >= 0) {
            mp->out_index = mp->b->out_of_rec[r];
            break;
        }
    }
    if (!(mp->ws = popk_pred_ws_new(m, err)) ||
        !(mp->fp = popk_fit_problem_new(m, mp->pd, mp->b, 1, err)))
        goto fail;
    const popk_problem *prob = popk_fit_problem_get(mp->fp);
    for (int j = 0; j < prob->nobs[0]; j++)
        mp->used_m3 |= !isnan(mp->lloq[popk_fit_obs_record(mp->fp, 0, j)]);
    if ((mp->used_m3 ? map_m3(mp, err) : map_gaussian(mp, err)) != POPK_OK)
        goto fail;
    if (!mp->converged)
        popk_map_warn(mp, "the posterior mode search did not converge: treat the estimates "
                      "with caution");
    if (prob->nobs[0] == 0)
        popk_map_warn(mp, "no measured levels: the estimates are the population (a priori) "
                      "values for this patient's covariates");
    if (make_draws(mp, opt->seed, err) != POPK_OK || summarise(mp, err) != POPK_OK)
        goto fail;
    return mp;
fail:
    popk_map_free(mp);
    return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Regimens at steady state. */

int popk_map_target_parse(const char *text, popk_map_target *t)
{
    static const char *const names[] = {"auc24", "trough", "peak", "tmic"};
    memset(t, 0, sizeof *t);
    /* The form popk sim uses: "AUC24 in 400..600", "trough in 10..20", "peak in 20..40". */
    char name[16], num[64];
    double lo, hi;
    int used = 0;
    const char *dots = strstr(text, "..");
    char *end;
    if (sscanf(text, " %15[A-Za-z0-9] in %n", name, &used) == 1 && used > 0 && dots &&
        (size_t)(dots - (text + used)) < sizeof num) {
        memcpy(num, text + used, (size_t)(dots - (text + used)));
        num[dots - (text + used)] = '\0';
        lo = strtod(num, &end);
        if (end == num || *end)
            return -1;
        hi = strtod(dots + 2, &end);
        if (end == dots + 2 || *end)
            return -1;
        for (int k = 0; k < 3; k++)
            if (!strcasecmp(name, names[k]) && lo >= 0 && hi > lo) {
                t->kind = (popk_target_kind)k;
                t->lo = lo;
                t->hi = hi;
                return 0;
            }
        return -1;
    }
    const char *eq = strchr(text, '=');
    if (!eq)
        return -1;
    int kind = -1;
    for (int k = 0; k < 4; k++)
        if ((size_t)(eq - text) == strlen(names[k]) && !strncasecmp(text, names[k], strlen(names[k])))
            kind = k;
    if (kind < 0)
        return -1;
    t->kind = (popk_target_kind)kind;
    const char *p = eq + 1;
    if (t->kind == POPK_TARGET_TMIC) {
        t->mic = strtod(p, &end);
        if (end == p || *end != ':' || !(t->mic > 0))
            return -1;
        p = end + 1;
        t->lo = strtod(p, &end);
        t->hi = 1.0;
        return end == p || *end || !(t->lo > 0 && t->lo <= 1) ? -1 : 0;
    }
    t->lo = strtod(p, &end);
    if (end == p || *end != '-')
        return -1;
    p = end + 1;
    t->hi = strtod(p, &end);
    if (end == p || *end || !(t->lo >= 0 && t->hi > t->lo))
        return -1;
    return 0;
}

const char *popk_target_name(popk_target_kind kind)
{
    switch (kind) {
    case POPK_TARGET_AUC24: return "AUC24";
    case POPK_TARGET_TROUGH: return "trough";
    case POPK_TARGET_PEAK: return "peak";
    case POPK_TARGET_TMIC: return "time above MIC";
    }
    return "?";
}

typedef struct {
    double trough, peak, auc24, tmic;
} ss_metrics;

/* Simpson subintervals during the infusion and after it (the most: closed-form models; an
 * ODE model restarts its solver at each grid record, so it gets a coarser grid, whose AUC
 * error stays near 1e-3 relative; tests/unit/map checks it against dose/CL) */
#define SEG1 8
#define SEG2 32
#define SEG1_ODE 2
#define SEG2_ODE 10
#define DAY_POINTS 97 /* grid over a 24-h window on a given day */

/* Grid of one interval at steady state: Simpson nodes on [0, dur] and [dur, tau]. */
static int grid_times(double tau, double dur, double *t, int seg1, int seg2)
{
    /* two Simpson segments split at the end of the infusion, or (bolus, absorption) after
     * the first eighth of the interval, where the curve bends most */
    double split = dur > 0 && dur < tau ? dur : tau / 8;
    int n = 0;
    for (int k = 0; k <= seg1; k++)
        t[n++] = split * k / seg1;
    for (int k = 1; k <= seg2; k++)
        t[n++] = split + (tau - split) * k / seg2;
    return n;
}

static double simpson(const double *t, const double *c, int a, int b)
{
    double h = (t[b] - t[a]) / (b - a), s = c[a] + c[b];
    for (int k = a + 1; k < b; k++)
        s += ((k - a) % 2 ? 4.0 : 2.0) * c[k];
    return s * h / 3.0;
}

/* Metrics over a window of grid values c at window-relative times t (Simpson segments
 * [0, seg1] and [seg1, n - 1]): trough = the last value (steady state: the end of the
 * interval) or, with min_trough, the smallest; AUC scaled to 24 h; fraction above mic. */
static ss_metrics metrics_of(const double *t, const double *c, int n, int min_trough,
                             double mic, int seg1)
{
    double len = t[n - 1] - t[0];
    ss_metrics x = {c[n - 1], c[0], 0.0, 0.0};
    for (int k = 0; k < n; k++) {
        x.peak = fmax(x.peak, c[k]);
        if (min_trough)
            x.trough = fmin(x.trough, c[k]);
    }
    double auc = simpson(t, c, 0, seg1) + simpson(t, c, seg1, n - 1);
    x.auc24 = auc * 24.0 / len;
    double above = 0.0;
    for (int k = 0; k + 1 < n; k++) {
        double a = c[k] - mic, b = c[k + 1] - mic, h = t[k + 1] - t[k];
        if (a >= 0 && b >= 0)
            above += h;
        else if (a > 0 || b > 0)
            above += h * (a > 0 ? a : b) / fabs(a - b);
    }
    x.tmic = above / len;
    return x;
}

static double metric(const ss_metrics *x, popk_target_kind kind)
{
    switch (kind) {
    case POPK_TARGET_AUC24: return x->auc24;
    case POPK_TARGET_TROUGH: return x->trough;
    case POPK_TARGET_PEAK: return x->peak;
    case POPK_TARGET_TMIC: return x->tmic;
    }
    return NAN;
}

/* Value and gradient (in eta) of the target's metric from the grid values c and their
 * partials cg[j * q + a] (the same formulas as metrics_of for the smooth metrics). */
static double metric_grad(popk_target_kind kind, const double *t, const double *c,
                          const double *cg, int n, int q, int min_trough, int seg1, double *g)
{
    for (int a = 0; a < q; a++)
        g[a] = 0.0;
    if (kind == POPK_TARGET_TROUGH || kind == POPK_TARGET_PEAK) {
        int at = n - 1;
        for (int k = 0; k < n; k++)
            if ((kind == POPK_TARGET_PEAK && c[k] > c[at]) ||
                (kind == POPK_TARGET_TROUGH && min_trough && c[k] < c[at]))
                at = k;
        for (int a = 0; a < q; a++)
            g[a] = cg[(size_t)at * q + a];
        return c[at];
    }
    /* AUC24: Simpson weights over the two segments, times 24/window */
    double v = 0.0, len = t[n - 1] - t[0];
    for (int seg = 0; seg < 2; seg++) {
        int a0 = seg ? seg1 : 0, b0 = seg ? n - 1 : seg1;
        double h = (t[b0] - t[a0]) / (b0 - a0);
        for (int k = a0; k <= b0; k++) {
            double w = (k == a0 || k == b0 ? 1.0 : ((k - a0) % 2 ? 4.0 : 2.0)) * h / 3.0 * 24.0 / len;
            v += w * c[k];
            for (int a = 0; a < q; a++)
                g[a] += w * cg[(size_t)k * q + a];
        }
    }
    return v;
}

/* Log-scale SD of a positive metric with gradient g under the posterior covariance. */
static double log_sd(const popk_map *mp, double v, const double *g)
{
    int q = mp->neta;
    double s = 0.0;
    for (int a = 0; a < q; a++)
        for (int b = 0; b < q; b++)
            s += g[a] * mp->eta_cov[a * q + b] * g[b];
    return v > 0 ? sqrt(fmax(s, 0.0)) / v : NAN;
}

static double norm_cdf(double z)
{
    return 0.5 * erfc(-z / sqrt(2.0));
}

/* P(lo <= X <= hi) for log X ~ N(log v, s^2). */
static double lognormal_pta(double v, double s, const popk_map_target *target)
{
    if (!(v > 0) || isnan(s))
        return NAN;
    if (s == 0)
        return v >= target->lo && v <= target->hi;
    return norm_cdf(log(target->hi / v) / s) -
           (target->lo > 0 ? norm_cdf(log(target->lo / v) / s) : 0.0);
}

static popk_record dose_record(const popk_model *m, double time, double amt, double tau,
                               double dur, int ss, int addl)
{
    popk_record r = {0};
    r.time = time;
    r.dv = NAN;
    r.amt = amt;
    r.evid = 1;
    r.mdv = 1;
    r.cmt = m->default_dose_cmt;
    r.ss = ss;
    r.ii = ss || addl ? tau : 0.0;
    r.addl = addl;
    r.rate = dur > 0 ? amt / dur : 0.0;
    return r;
}


typedef struct {
    const popk_map_target *target;
    popk_target_kind kind;
    double mid;
} rank_ctx;

static rank_ctx g_rank; /* qsort has no user pointer; set and used under one call */

static int cmp_regimen(const void *a, const void *b)
{
    const popk_map_regimen *x = a, *y = b;
    if (x->pta != y->pta)
        return x->pta > y->pta ? -1 : 1;
    double mx, my;
    switch (g_rank.kind) {
    case POPK_TARGET_AUC24: mx = x->auc24; my = y->auc24; break;
    case POPK_TARGET_TROUGH: mx = x->trough; my = y->trough; break;
    case POPK_TARGET_PEAK: mx = x->peak; my = y->peak; break;
    default: mx = x->tmic; my = y->tmic; break;
    }
    double dx = fabs(mx - g_rank.mid), dy = fabs(my - g_rank.mid);
    if (fabs(dx - dy) > 1e-9 * (1 + g_rank.mid))
        return dx < dy ? -1 : 1;
    double ddx = x->dose * 24 / x->interval, ddy = y->dose * 24 / y->interval;
    return ddx < ddy ? -1 : ddx > ddy;
}

/* Delta-method PTA and 90% intervals of trough and AUC24 for regimen rg on dataset g. */
static popk_status delta_pta(popk_map *mp, gen_data *g, const popk_map_target *target,
                             popk_map_regimen *rg, const double *t, double *c,
                             const size_t *gi, int ng, int min_trough, int seg1,
                             double *s_target, popk_error *err)
{
    int q = mp->neta;
    popk_pred_dirs dirs = {0};
    dirs.nd = q;
    for (int a = 0; a < q; a++) {
        dirs.dir_is_eta[a] = 1;
        dirs.dir_index[a] = a;
    }
    popk_pred_result res;
    popk_status st = popk_pred_subject(mp->ws, mp->m, g->d, g->b, 0, mp->theta, mp->eta, &dirs,
                                       &res, err);
    if (st != POPK_OK)
        return st;
    double *cg = malloc(sizeof(double) * (size_t)ng * (size_t)(q ? q : 1) + sizeof(double) * (size_t)(q ? q : 1));
    if (!cg)
        return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
    double *gr = cg + (size_t)ng * q;
    for (int j = 0; j < ng; j++) {
        const double *o = res.out + (gi[j] * (size_t)res.nout + (size_t)mp->out_index) *
                                        (size_t)(1 + res.nd);
        c[j] = o[0];
        for (int a = 0; a < q; a++)
            cg[(size_t)j * q + a] = o[1 + a];
    }
    const double z90 = 1.6448536269514722;
    double v = metric_grad(POPK_TARGET_TROUGH, t, c, cg, ng, q, min_trough, seg1, gr);
    double s = log_sd(mp, v, gr);
    rg->trough_lo = v * exp(-z90 * s);
    rg->trough_hi = v * exp(z90 * s);
    v = metric_grad(POPK_TARGET_AUC24, t, c, cg, ng, q, min_trough, seg1, gr);
    s = log_sd(mp, v, gr);
    rg->auc_lo = v * exp(-z90 * s);
    rg->auc_hi = v * exp(z90 * s);
    v = metric_grad(target->kind, t, c, cg, ng, q, min_trough, seg1, gr);
    s = log_sd(mp, v, gr);
    *s_target = s;
    rg->pta = lognormal_pta(v, s, target);
    free(cg);
    return POPK_OK;
}

static void init_regimen(const popk_map *mp, popk_map_regimen *rg, double dose,
                         double interval, double duration)
{
    rg->dose = dose;
    rg->interval = interval;
    rg->duration = duration < interval ? duration : 0.0;
    rg->outside_range = (!isnan(mp->dose_lo) && dose < mp->dose_lo) ||
                        (!isnan(mp->dose_hi) && dose > mp->dose_hi);
}

static int proportional(double a, double b, double ratio)
{
    return isfinite(a) && isfinite(b) && fabs(b - a * ratio) <= 1e-6 * fabs(b);
}

/* Regimen rg from ref with the same interval and duration, for a system linear in the
 * amounts: concentrations scale with the dose, log-scale spreads stay (delta method). */
static void scale_regimen(const popk_map_regimen *ref, popk_map_regimen *rg,
                          const popk_map_target *target, double s_target)
{
    double f = rg->dose / ref->dose;
    rg->trough = ref->trough * f;
    rg->peak = ref->peak * f;
    rg->auc24 = ref->auc24 * f;
    rg->tmic = NAN;
    rg->trough_lo = ref->trough_lo * f;
    rg->trough_hi = ref->trough_hi * f;
    rg->auc_lo = ref->auc_lo * f;
    rg->auc_hi = ref->auc_hi * f;
    rg->delta = 1;
    ss_metrics x = {rg->trough, rg->peak, rg->auc24, rg->tmic};
    rg->pta = lognormal_pta(metric(&x, target->kind), s_target, target);
}

/* Steady-state metrics and PTA of regimen rg (dose, interval, duration set); *s_target: the
 * log-scale SD of the target metric with the delta method, else NaN. */
/* Metrics and PTA of regimen rg (dose, interval, duration set): at steady state over one
 * interval (target->day == 0), or over day target->day of the regimen started after the
 * patient's history. *s_target: the log-scale SD of the target metric with the delta method,
 * else NaN. Buffers: t, c, gi of DAY_POINTS; rec of the history + DAY_POINTS + 2. */
static popk_status eval_regimen(popk_map *mp, const popk_map_target *target, popk_map_regimen *rg,
                                int seg1, int seg2, double *t, double *c, size_t *gi,
                                double *tr, double *au, popk_record *rec, double *s_target,
                                popk_error *err)
{
    const popk_model *m = mp->m;
    int ns = mp->nsamples, day = target->day > 0, ng;
    double dur = rg->duration;
    size_t nr = 0;
    if (!day) {
        ng = grid_times(rg->interval, dur, t, seg1, seg2);
        rec[nr++] = dose_record(m, 0.0, rg->dose, rg->interval, dur, 1, 0);
        for (int j = 0; j < ng; j++)
            rec[nr++] = other_record(t[j]);
    } else {
        /* the history, then the regimen from the next dose through the end of the day */
        const popk_data *pd = mp->pd;
        double start = popk_map_next_dose_time(mp, rg->interval);
        double w0 = start + 24.0 * (target->day - 1);
        for (size_t j = 0; j < pd->nrec; j++)
            if (pd->rec[j].evid != 0 && pd->rec[j].evid != 2)
                rec[nr++] = pd->rec[j];
        int addl = (int)ceil(24.0 * target->day / rg->interval);
        rec[nr++] = dose_record(m, start, rg->dose, rg->interval, dur, 0, addl);
        seg1 = seg2 = (DAY_POINTS - 1) / 2;
        ng = DAY_POINTS;
        for (int j = 0; j < ng; j++) {
            t[j] = 24.0 * j / (ng - 1);
            rec[nr++] = other_record(w0 + t[j]);
        }
    }
    size_t first_grid = nr - (size_t)ng;
    gen_data g = {0};
    popk_pred_result res;
    popk_status st;
    *s_target = NAN;
    if ((st = gen_build(mp, rec, nr, &g, err)) != POPK_OK)
        return st;
    for (size_t j = 0; j < nr; j++) /* gen_build sorted the records; find the grid again */
        if ((size_t)rec[j].line >= first_grid)
            gi[(size_t)rec[j].line - first_grid] = j;
    rg->delta = mp->pta == POPK_PTA_DELTA && target->kind != POPK_TARGET_TMIC;
    if (rg->delta) {
        /* one prediction with eta partials gives the metrics and their spreads */
        st = delta_pta(mp, &g, target, rg, t, c, gi, ng, day, seg1, s_target, err);
        if (st == POPK_OK) {
            ss_metrics x = metrics_of(t, c, ng, day, target->mic, seg1);
            rg->trough = x.trough;
            rg->peak = x.peak;
            rg->auc24 = x.auc24;
            rg->tmic = x.tmic;
        }
        gen_free(&g);
        return st;
    }
    if ((st = gen_predict(mp, &g, mp->eta, &res, err)) != POPK_OK) {
        gen_free(&g);
        return st;
    }
    for (int j = 0; j < ng; j++)
        c[j] = out_value(mp, &res, gi[j]);
    ss_metrics x = metrics_of(t, c, ng, day, target->mic, seg1);
    rg->trough = x.trough;
    rg->peak = x.peak;
    rg->auc24 = x.auc24;
    rg->tmic = x.tmic;
    int hit = 0, good = 0;
    for (int s = 0; s < ns; s++) {
        if (gen_predict(mp, &g, mp->draws + (size_t)s * mp->neta, &res, NULL))
            continue;
        for (int j = 0; j < ng; j++)
            c[j] = out_value(mp, &res, gi[j]);
        ss_metrics y = metrics_of(t, c, ng, day, target->mic, seg1);
        double v = metric(&y, target->kind);
        hit += v >= target->lo && v <= target->hi;
        tr[good] = y.trough;
        au[good] = y.auc24;
        good++;
    }
    gen_free(&g);
    rg->pta = good ? (double)hit / good : NAN;
    qsort(tr, (size_t)good, sizeof *tr, cmp_double);
    qsort(au, (size_t)good, sizeof *au, cmp_double);
    rg->trough_lo = quantile(tr, good, 0.05);
    rg->trough_hi = quantile(tr, good, 0.95);
    rg->auc_lo = quantile(au, good, 0.05);
    rg->auc_hi = quantile(au, good, 0.95);
    return POPK_OK;
}

popk_map_regimen *popk_map_recommend(popk_map *mp, const popk_map_target *target, int nd,
                                     const double *doses, int ni, const double *intervals,
                                     int ndur, const double *durations, int *n,
                                     popk_error *err)
{
    double zero_dur = 0.0;
    if (ndur <= 0) {
        ndur = 1;
        durations = &zero_dur;
    }
    int total = nd * ni * ndur;
    if (nd <= 0 || ni <= 0) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "no candidate doses or intervals");
        return NULL;
    }
    for (int k = 0; k < nd; k++)
        if (!(doses[k] > 0)) {
            popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "candidate dose %g is not > 0", doses[k]);
            return NULL;
        }
    for (int k = 0; k < ni; k++)
        if (!(intervals[k] > 0)) {
            popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "dosing interval %g is not > 0",
                           intervals[k]);
            return NULL;
        }
    for (int k = 0; k < ndur; k++)
        if (!(durations[k] >= 0)) {
            popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "infusion duration %g is negative",
                           durations[k]);
            return NULL;
        }
    const popk_model *m = mp->m;
    int ns = mp->nsamples;
    int seg1 = costly_ode(m) ? SEG1_ODE : SEG1;
    int seg2 = costly_ode(m) ? SEG2_ODE : SEG2;
    popk_map_regimen *out = calloc((size_t)total, sizeof *out);
    double *t = malloc(sizeof(double) * DAY_POINTS * 2), *c = t + DAY_POINTS;
    size_t *gi = malloc(sizeof(size_t) * DAY_POINTS);
    double *tr = malloc(sizeof(double) * (size_t)ns * 2), *au = tr + ns;
    popk_record *rec = malloc(sizeof *rec * (mp->pd->nrec + DAY_POINTS + 2));
    if (!out || !t || !gi || !tr || !rec) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto fail;
    }
    for (int b = 0; b < ni; b++)
        for (int e = 0; e < ndur; e++) {
            /* the smallest and largest doses first: with the delta method, when their results
             * are proportional to the dose (a system linear in the amounts), the doses between
             * are scaled from them instead of predicted again */
            int first = 0, last = 0;
            for (int a = 1; a < nd; a++) {
                if (doses[a] < doses[first])
                    first = a;
                if (doses[a] > doses[last])
                    last = a;
            }
            popk_map_regimen *lo = &out[(first * ni + b) * ndur + e];
            popk_map_regimen *hi = &out[(last * ni + b) * ndur + e];
            double s_lo = NAN, s_hi = NAN;
            init_regimen(mp, lo, doses[first], intervals[b], durations[e]);
            if (eval_regimen(mp, target, lo, seg1, seg2, t, c, gi, tr, au, rec, &s_lo, err))
                goto fail;
            if (last != first) {
                init_regimen(mp, hi, doses[last], intervals[b], durations[e]);
                if (eval_regimen(mp, target, hi, seg1, seg2, t, c, gi, tr, au, rec, &s_hi, err))
                    goto fail;
            }
            int linear = nd > 2 && target->day <= 0 && lo->delta && hi->delta && isfinite(s_lo) &&
                         fabs(s_lo - s_hi) <= 1e-6 * s_lo &&
                         proportional(lo->trough, hi->trough, hi->dose / lo->dose) &&
                         proportional(lo->peak, hi->peak, hi->dose / lo->dose) &&
                         proportional(lo->auc24, hi->auc24, hi->dose / lo->dose) &&
                         proportional(lo->trough_hi, hi->trough_hi, hi->dose / lo->dose) &&
                         proportional(lo->auc_hi, hi->auc_hi, hi->dose / lo->dose);
            for (int a = 0; a < nd; a++) {
                if (a == first || a == last)
                    continue;
                popk_map_regimen *rg = &out[(a * ni + b) * ndur + e];
                double s_unused;
                init_regimen(mp, rg, doses[a], intervals[b], durations[e]);
                if (linear)
                    scale_regimen(lo, rg, target, s_lo);
                else if (eval_regimen(mp, target, rg, seg1, seg2, t, c, gi, tr, au, rec, &s_unused,
                                      err))
                    goto fail;
            }
        }
    g_rank.target = target;
    g_rank.kind = target->kind;
    g_rank.mid = target->kind == POPK_TARGET_TMIC ? target->lo : 0.5 * (target->lo + target->hi);
    qsort(out, (size_t)total, sizeof *out, cmp_regimen);
    int reached = 0;
    for (int j = 0; j < total; j++) {
        ss_metrics x = {out[j].trough, out[j].peak, out[j].auc24, out[j].tmic};
        double v = metric(&x, target->kind);
        reached |= v >= target->lo && v <= target->hi;
    }
    if (!reached)
        popk_map_warn(mp, "no candidate regimen brings the %s into %g-%g at this patient's "
                      "estimate: the target is not reachable with the allowed doses and "
                      "intervals; the closest is listed first", popk_target_name(target->kind),
                      target->lo, target->hi);
    else if (out[0].pta < 0.5)
        popk_map_warn(mp, "the best regimen reaches the target with probability %.0f%% only",
                      100 * out[0].pta);
    if (isnan(mp->dose_lo) && isnan(mp->dose_hi))
        popk_map_warn(mp, "the dose range the model was built on is not known (give "
                      "--dose-range): the recommended doses were not checked against it");
    else if (out[0].outside_range)
        popk_map_warn(mp, "the recommended dose %g lies outside the range the model was built "
                      "on (%g-%g): its predictions are an extrapolation", out[0].dose,
                      mp->dose_lo, mp->dose_hi);
    *n = total;
    free(t);
    free(gi);
    free(tr);
    free(rec);
    return out;
fail:
    free(out);
    free(t);
    free(gi);
    free(tr);
    free(rec);
    return NULL;
}

double popk_map_loading(popk_map *mp, const popk_map_regimen *r, double step, popk_error *err)
{
    if (!(step > 0))
        return NAN;
    double dur = r->duration < r->interval ? r->duration : 0.0;
    for (double amt = r->dose + step; amt <= 3.0 * r->dose + 1e-9; amt += step) {
        popk_record rec[2];
        /* a larger loading dose is infused at the same rate */
        rec[0] = dose_record(mp->m, 0.0, amt, r->interval, dur > 0 ? dur * amt / r->dose : 0, 0, 0);
        rec[1] = other_record(r->interval);
        gen_data g = {0};
        popk_pred_result res;
        if (gen_build(mp, rec, 2, &g, err) != POPK_OK)
            return NAN;
        popk_status st = gen_predict(mp, &g, mp->eta, &res, err);
        double c = st == POPK_OK ? out_value(mp, &res, 1) : NAN;
        gen_free(&g);
        if (st != POPK_OK)
            return NAN;
        if (c >= r->trough)
            return amt;
    }
    return NAN;
}

int popk_map_last_dose(const popk_map *mp, double *amt, double *interval, double *duration)
{
    const popk_data *d = mp->pd;
    for (size_t r = d->nrec; r-- > 0;) {
        const popk_record *x = &d->rec[r];
        if (x->evid == 1 || x->evid == 4) {
            *amt = x->amt;
            *interval = x->ii;
            *duration = x->rate > 0 ? x->amt / x->rate : 0.0;
            return 1;
        }
    }
    return 0;
}

double popk_map_next_dose_time(const popk_map *mp, double interval)
{
    const popk_data *d = mp->pd;
    double last_rec = d->nrec ? d->rec[d->nrec - 1].time : 0.0, next = last_rec;
    for (size_t r = d->nrec; r-- > 0;) {
        const popk_record *x = &d->rec[r];
        if (x->evid == 1 || x->evid == 4) {
            double ii = x->ii > 0 ? x->ii : interval;
            for (size_t e = r; x->ii <= 0 && e-- > 0;)
                if (d->rec[e].evid == 1 || d->rec[e].evid == 4) {
                    /* no II: the spacing of the last two doses is the current schedule */
                    if (x->time > d->rec[e].time)
                        ii = x->time - d->rec[e].time;
                    break;
                }
            next = x->time + ii * (x->addl + 1);
            while (next < last_rec)
                next += ii;
            break;
        }
    }
    return next;
}

popk_status popk_map_curve(popk_map *mp, const popk_map_regimen *r, double start, double days,
                           int n, double *t, double *ipred, double *lo, double *hi,
                           popk_error *err)
{
    const popk_data *pd = mp->pd;
    double end = pd->nrec ? pd->rec[pd->nrec - 1].time : 0.0;
    if (r)
        end = fmax(end, start + 24.0 * days);
    if (n < 2 || !(end > 0))
        return popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0, "nothing to plot");
    size_t nrec = pd->nrec + (size_t)n + 1;
    popk_record *rec = malloc(sizeof *rec * nrec);
    double *vals = malloc(sizeof(double) * (size_t)n * (size_t)mp->nsamples);
    size_t *where = malloc(sizeof(size_t) * (size_t)n);
    popk_status st = POPK_OK;
    gen_data g = {0};
    if (!rec || !vals || !where) {
        st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t j = 0; j < pd->nrec; j++) {
        rec[k] = pd->rec[j];
        if (rec[k].evid == 0) { /* observations become plain prediction points */
            rec[k].evid = 2;
            rec[k].mdv = 1;
        }
        k++;
    }
    if (r) {
        double dur = r->duration < r->interval ? r->duration : 0.0;
        int addl = (int)ceil(24.0 * days / r->interval) - 1;
        rec[k++] = dose_record(mp->m, start, r->dose, r->interval, dur, 0, addl > 0 ? addl : 0);
    }
    size_t first_grid = k;
    for (int j = 0; j < n; j++) {
        t[j] = end * j / (n - 1);
        rec[k++] = other_record(t[j]);
    }
    if ((st = gen_build(mp, rec, k, &g, err)) != POPK_OK)
        goto out;
    /* gen_build sorted the records: find the grid points again by their original index */
    for (size_t j = 0; j < k; j++) {
        size_t orig = (size_t)rec[j].line;
        if (orig >= first_grid)
            where[orig - first_grid] = j;
    }
    popk_pred_result res;
    if ((st = gen_predict(mp, &g, mp->eta, &res, err)) != POPK_OK)
        goto out;
    for (int j = 0; j < n; j++)
        ipred[j] = out_value(mp, &res, where[j]);
    int good = 0;
    for (int s = 0; s < mp->nsamples; s++) {
        if (gen_predict(mp, &g, mp->draws + (size_t)s * mp->neta, &res, NULL) != POPK_OK)
            continue;
        for (int j = 0; j < n; j++)
            vals[(size_t)j * mp->nsamples + good] = out_value(mp, &res, where[j]);
        good++;
    }
    for (int j = 0; j < n; j++) {
        double *v = vals + (size_t)j * mp->nsamples;
        qsort(v, (size_t)good, sizeof *v, cmp_double);
        lo[j] = quantile(v, good, 0.05);
        hi[j] = quantile(v, good, 0.95);
    }
out:
    gen_free(&g);
    free(rec);
    free(vals);
    free(where);
    return st;
}
