/* report/vpc.c — visual predictive checks from simulated replicates (see vpc.h). */
#include "report/vpc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/stats.h"
#include "util/atomic.h"
#include "util/error.h"

#define MAX_STRATA 24

void popk_vpc_options_default(popk_vpc_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->nsim = 500;
    opt->seed = 1;
    opt->max_auto_bins = 10;
    opt->pi_lo = 0.05;
    opt->pi_hi = 0.95;
    opt->ci = 0.90;
    opt->lloq = NAN;
}

void popk_vpc_free(popk_vpc *v)
{
    if (!v)
        return;
    for (int s = 0; s < v->nstrata; s++) {
        free(v->strata[s].bin);
        free(v->strata[s].x);
        free(v->strata[s].censored);
    }
    free(v->strata);
    free(v);
}

popk_vpc *popk_vpc_run(const popk_model *m, const popk_data *d, const popk_binding *b,
                       const popk_vpc_options *opt, popk_error *err)
{
    popk_vpc_options o;
    if (opt)
        o = *opt;
    else
        popk_vpc_options_default(&o);
    popk_sim_design_opts so = {0};
    so.seed = o.seed;
    so.nrep = o.nsim > 0 ? o.nsim : 500;
    so.residual = 1;
    so.nthreads = o.nthreads;
    popk_sim_replicates *sims = popk_sim_design(m, d, b, &so, err);
    if (!sims)
        return NULL;
    popk_vpc *v = popk_vpc_compute(m, d, b, sims, &o, err);
    popk_sim_replicates_free(sims);
    return v;
}

/* One observation taking part in the VPC. */
typedef struct {
    size_t rec;
    int stratum, bin;
    double x, lloq, pred;
    int censored;
} vpc_obs;

static int find_column(const popk_data *d, const char *const *names)
{
    for (; *names; names++) {
        int k = popk_data_find_cov(d, *names);
        if (k >= 0)
            return k;
    }
    return -1;
}

static double correct(double y, double pred, double bin_pred, int pc)
{
    return pc ? y * bin_pred / pred : y;
}

static void quantiles3(double *v, size_t n, const popk_vpc_options *o, double *q)
{
    popk_sort(v, n);
    q[0] = popk_quantile_sorted(v, n, o->pi_lo);
    q[1] = popk_quantile_sorted(v, n, 0.5);
    q[2] = popk_quantile_sorted(v, n, o->pi_hi);
}

popk_vpc *popk_vpc_compute(const popk_model *m, const popk_data *d, const popk_binding *b,
                           const popk_sim_replicates *sims, const popk_vpc_options *opt,
                           popk_error *err)
{
    popk_vpc_options o;
    if (opt)
        o = *opt;
    else
        popk_vpc_options_default(&o);
    if (o.pi_lo <= 0 && o.pi_hi <= 0) {
        o.pi_lo = 0.05;
        o.pi_hi = 0.95;
    }
    if (o.ci <= 0)
        o.ci = 0.90;
    if (o.max_auto_bins <= 0)
        o.max_auto_bins = 10;
    if (!(o.pi_lo > 0 && o.pi_lo < 0.5 && o.pi_hi > 0.5 && o.pi_hi < 1 && o.ci < 1)) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                       "VPC percentiles must satisfy 0 < low < 0.5 < high < 1 and 0 < CI < 1");
        return NULL;
    }
    if (sims->nrec != d->nrec || sims->nrep < 2) {
        popk_error_set(err, POPK_ERR_ARG, NULL, 0, 0,
                       "a VPC needs at least 2 replicates simulated from its dataset");
        return NULL;
    }
    int nsim = sims->nrep;
    size_t nrec = d->nrec;
    popk_vpc *v = calloc(1, sizeof *v);
    vpc_obs *ob = malloc(sizeof *ob * (nrec ? nrec : 1));
    if (!v || !ob) {
        free(v), free(ob);
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    v->opt = o;
    v->opt.stratify = NULL;

    /* Censoring: a given limit, else an LLOQ column; BLQ/CENS flags mark censored records. */
    static const char *const lloq_names[] = {"LLOQ", "LOQ", NULL};
    static const char *const flag_names[] = {"BLQ", "CENS", NULL};
    int lloq_col = isfinite(o.lloq) ? -1 : find_column(d, lloq_names);
    int flag_col = find_column(d, flag_names);
    v->has_lloq = isfinite(o.lloq) || lloq_col >= 0;
    int strat_col = -1;
    if (o.stratify) {
        strat_col = popk_data_find_cov(d, o.stratify);
        if (strat_col < 0) {
            popk_error_set(err, POPK_ERR_ARG, d->path, 0, 0,
                           "no column '%s' to stratify by in the dataset", o.stratify);
            goto fail;
        }
        snprintf(v->stratify, sizeof v->stratify, "%s", d->cov[strat_col].name);
    }

    /* Observations, their x, limit, stratum (output x level). */
    double levels[MAX_STRATA];
    int outs[MAX_STRATA], nlev = 0;
    size_t nob = 0;
    for (size_t s = 0; s < d->nsub; s++) {
        double last_dose = -INFINITY;
        for (size_t k = 0; k < d->sub[s].n; k++) {
            size_t r = d->sub[s].first + k;
            const popk_record *rec = &d->rec[r];
            if (rec->evid == 1 || rec->evid == 4)
                last_dose = rec->time;
            if (rec->evid != 0 || b->out_of_rec[r] < 0 || !isfinite(sims->dv[r]))
                continue;
            int flagged = flag_col >= 0 && d->cov[flag_col].values[r] == 1.0;
            if (!flagged && (rec->mdv != 0 || !isfinite(rec->dv)))
                continue;
            double lloq = isfinite(o.lloq) ? o.lloq
                          : lloq_col >= 0  ? d->cov[lloq_col].values[r]
                                           : NAN;
            vpc_obs *q = &ob[nob];
            q->rec = r;
            q->x = o.time_after_dose && isfinite(last_dose) ? rec->time - last_dose : rec->time;
            q->lloq = lloq;
            q->pred = sims->pred[r];
            q->censored = flagged || (isfinite(lloq) && isfinite(rec->dv) && rec->dv < lloq);
            if (o.pred_corrected && !(q->pred > 0 && isfinite(q->pred)))
                continue; /* no correction possible where the typical prediction is 0 */
            double lev = strat_col >= 0 ? d->cov[strat_col].values[r] : 0.0;
            int out = b->out_of_rec[r], st = -1;
            for (int i = 0; i < nlev; i++)
                if (outs[i] == out && (levels[i] == lev || (isnan(lev) && isnan(levels[i]))))
                    st = i;
            if (st < 0) {
                if (nlev == MAX_STRATA) {
                    popk_error_set(err, POPK_ERR_LIMIT, d->path, rec->line, 0,
                                   "more than %d strata: stratify by a column with few values",
                                   MAX_STRATA);
                    goto fail;
                }
                outs[nlev] = out;
                levels[nlev] = lev;
                st = nlev++;
            }
            q->stratum = st;
            nob++;
        }
    }
    if (nob == 0) {
        popk_error_set(err, POPK_ERR_DATA, d->path, 0, 0,
                       "no observations to compare with simulations");
        goto fail;
    }
    /* Strata in order of output, then stratum value. */
    {
        int perm[MAX_STRATA], rank[MAX_STRATA];
        for (int i = 0; i < nlev; i++)
            perm[i] = i;
        for (int i = 1; i < nlev; i++)
            for (int j = i; j > 0; j--) {
                int a = perm[j - 1], c = perm[j];
                if (outs[a] < outs[c] || (outs[a] == outs[c] && !(levels[a] > levels[c])))
                    break;
                perm[j - 1] = c;
                perm[j] = a;
            }
        double lv2[MAX_STRATA];
        int out2[MAX_STRATA];
        for (int i = 0; i < nlev; i++) {
            rank[perm[i]] = i;
            lv2[i] = levels[perm[i]];
            out2[i] = outs[perm[i]];
        }
        for (int i = 0; i < nlev; i++) {
            levels[i] = lv2[i];
            outs[i] = out2[i];
        }
        for (size_t i = 0; i < nob; i++)
            ob[i].stratum = rank[ob[i].stratum];
    }
    v->strata = calloc((size_t)nlev, sizeof *v->strata);
    if (!v->strata)
        goto nomem;
    v->nstrata = nlev;
    double *x = malloc(sizeof(double) * nob);
    double *vals = malloc(sizeof(double) * nob);
    int maxb = (o.nbins > o.max_auto_bins ? o.nbins : o.max_auto_bins);
    double *edges = malloc(sizeof(double) * (size_t)(maxb + 1));
    size_t *members = malloc(sizeof(size_t) * nob);
    if (!x || !vals || !edges || !members) {
        free(x), free(vals), free(edges), free(members);
        goto nomem;
    }
    double lo_ci = 0.5 * (1.0 - o.ci), hi_ci = 1.0 - lo_ci;
    for (int st = 0; st < nlev; st++) {
        popk_vpc_stratum *S = &v->strata[st];
        S->output = outs[st];
        const char *oname = m->out[outs[st]].name;
        if (strat_col >= 0) {
            const popk_covariate *c = &d->cov[strat_col];
            if (c->kind == POPK_COV_CATEGORICAL && levels[st] >= 0 && levels[st] < c->nlevels)
                snprintf(S->label, sizeof S->label, "%s, %s = %s", oname, c->name,
                         c->levels[(int)levels[st]]);
            else
                snprintf(S->label, sizeof S->label, "%s, %s = %g", oname, c->name, levels[st]);
        } else {
            snprintf(S->label, sizeof S->label, "%s", oname);
        }
        size_t n = 0;
        for (size_t i = 0; i < nob; i++)
            if (ob[i].stratum == st) {
                members[n] = i;
                x[n++] = ob[i].x;
            }
        int nb = popk_natural_breaks(x, n, o.nbins, o.max_auto_bins, edges);
        if (nb < 0)
            goto nomem_loop;
        S->nbins = nb;
        S->bin = calloc((size_t)nb, sizeof *S->bin);
        S->nobs = n;
        S->x = malloc(sizeof(double) * 2 * n + 1);
        S->censored = malloc(n + 1);
        double *sim_stats = malloc(sizeof(double) * (size_t)nb * 4 * (size_t)nsim + 1);
        size_t *bin_start = calloc((size_t)nb + 1, sizeof(size_t));
        size_t *order = malloc(sizeof(size_t) * n + 1);
        double *bin_pred = malloc(sizeof(double) * (size_t)nb + 1);
        if (!S->bin || !S->x || !S->censored || !sim_stats || !bin_start || !order ||
            !bin_pred) {
            free(sim_stats), free(bin_start), free(order), free(bin_pred);
            goto nomem_loop;
        }
        S->y = S->x + n;
        for (size_t i = 0; i < n; i++) {
            vpc_obs *q = &ob[members[i]];
            q->bin = popk_bin_index(edges, nb, q->x);
            bin_start[q->bin + 1]++;
        }
        for (int k = 0; k < nb; k++)
            bin_start[k + 1] += bin_start[k];
        {
            size_t *fill = calloc((size_t)nb, sizeof(size_t));
            if (!fill) {
                free(sim_stats), free(bin_start), free(order), free(bin_pred);
                goto nomem_loop;
            }
            for (size_t i = 0; i < n; i++) {
                int k = ob[members[i]].bin;
                order[bin_start[k] + fill[k]++] = members[i];
            }
            free(fill);
        }
        /* Per bin: median time, median typical prediction, typical limit. */
        for (int k = 0; k < nb; k++) {
            popk_vpc_bin *B = &S->bin[k];
            size_t a = bin_start[k], e = bin_start[k + 1], c = 0;
            B->t_lo = edges[k];
            B->t_hi = edges[k + 1];
            B->nobs = (int)(e - a);
            for (size_t i = a; i < e; i++)
                vals[c++] = ob[order[i]].x;
            popk_sort(vals, c);
            B->t_mid = popk_quantile_sorted(vals, c, 0.5);
            c = 0;
            for (size_t i = a; i < e; i++)
                vals[c++] = ob[order[i]].pred;
            popk_sort(vals, c);
            bin_pred[k] = popk_quantile_sorted(vals, c, 0.5);
            c = 0;
            for (size_t i = a; i < e; i++)
                if (isfinite(ob[order[i]].lloq))
                    vals[c++] = ob[order[i]].lloq;
            popk_sort(vals, c);
            B->lloq = c ? popk_quantile_sorted(vals, c, 0.5) : NAN;
            if (o.pred_corrected && c)
                B->lloq = NAN; /* the limit has no single value after correction */
        }
        /* Observed. */
        for (int k = 0; k < nb; k++) {
            popk_vpc_bin *B = &S->bin[k];
            size_t a = bin_start[k], e = bin_start[k + 1], c = 0, ncens = 0;
            for (size_t i = a; i < e; i++) {
                const vpc_obs *q = &ob[order[i]];
                double y = q->censored ? (isfinite(q->lloq) ? q->lloq : -INFINITY)
                                       : d->rec[q->rec].dv;
                vals[c++] = correct(y, q->pred, bin_pred[k], o.pred_corrected);
                ncens += (size_t)q->censored;
            }
            quantiles3(vals, c, &o, B->obs);
            /* A percentile at or below the limit is not observed. */
            double cut = vals[0];
            for (int j = 0; j < 3; j++)
                if (ncens > 0 && !(B->obs[j] > cut))
                    B->obs[j] = NAN;
            B->blq_obs = v->has_lloq ? (double)ncens / (double)c : NAN;
        }
        for (size_t i = 0; i < n; i++) {
            const vpc_obs *q = &ob[members[i]];
            S->x[i] = q->x;
            S->censored[i] = (unsigned char)q->censored;
            S->y[i] = q->censored ? NAN
                                  : correct(d->rec[q->rec].dv, q->pred, bin_pred[q->bin],
                                            o.pred_corrected);
        }
        /* Simulated: statistics per replicate, then their distribution. */
        for (int rep = 0; rep < nsim; rep++) {
            const double *dv = sims->dv + (size_t)rep * sims->nrec;
            for (int k = 0; k < nb; k++) {
                size_t a = bin_start[k], e = bin_start[k + 1], c = 0, nblq = 0;
                for (size_t i = a; i < e; i++) {
                    const vpc_obs *q = &ob[order[i]];
                    double y = dv[q->rec];
                    if (isfinite(q->lloq) && y < q->lloq)
                        nblq++;
                    vals[c++] = correct(y, q->pred, bin_pred[k], o.pred_corrected);
                }
                double qq[3];
                quantiles3(vals, c, &o, qq);
                double *row = sim_stats + ((size_t)k * 4) * (size_t)nsim;
                for (int j = 0; j < 3; j++)
                    row[(size_t)j * nsim + rep] = qq[j];
                row[3 * (size_t)nsim + rep] = c ? (double)nblq / (double)c : NAN;
            }
        }
        for (int k = 0; k < nb; k++) {
            popk_vpc_bin *B = &S->bin[k];
            for (int j = 0; j < 4; j++) {
                double *row = sim_stats + ((size_t)k * 4 + (size_t)j) * (size_t)nsim;
                popk_sort(row, (size_t)nsim);
                double *dst = j < 3 ? B->sim[j] : B->blq_sim;
                dst[0] = popk_quantile_sorted(row, (size_t)nsim, lo_ci);
                dst[1] = popk_quantile_sorted(row, (size_t)nsim, 0.5);
                dst[2] = popk_quantile_sorted(row, (size_t)nsim, hi_ci);
                if (j == 3 && !v->has_lloq)
                    dst[0] = dst[1] = dst[2] = NAN;
            }
        }
        free(sim_stats), free(bin_start), free(order), free(bin_pred);
        continue;
    nomem_loop:
        free(x), free(vals), free(edges), free(members);
        goto nomem;
    }
    free(x), free(vals), free(edges), free(members);
    free(ob);
    return v;
nomem:
    popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
fail:
    free(ob);
    popk_vpc_free(v);
    return NULL;
}

double popk_vpc_coverage(const popk_vpc *v, int *n)
{
    int total = 0, inside = 0;
    for (int s = 0; s < v->nstrata; s++)
        for (int k = 0; k < v->strata[s].nbins; k++) {
            const popk_vpc_bin *B = &v->strata[s].bin[k];
            for (int j = 0; j < 3; j++) {
                if (!isfinite(B->obs[j]))
                    continue;
                total++;
                inside += B->obs[j] >= B->sim[j][0] && B->obs[j] <= B->sim[j][2];
            }
        }
    if (n)
        *n = total;
    return total ? (double)inside / total : NAN;
}

popk_status popk_vpc_write_csv(const popk_vpc *v, const char *path, popk_error *err)
{
    popk_atomic_file af;
    popk_status st = popk_atomic_open(&af, path, err);
    if (st != POPK_OK)
        return st;
    FILE *f = af.fp;
    fprintf(f, "STRATUM,BIN,T_LO,T_HI,T_MID,NOBS,LLOQ,OBS_LO,OBS_MED,OBS_HI,"
               "SIM_LO_CILO,SIM_LO_MED,SIM_LO_CIHI,SIM_MED_CILO,SIM_MED_MED,SIM_MED_CIHI,"
               "SIM_HI_CILO,SIM_HI_MED,SIM_HI_CIHI,BLQ_OBS,BLQ_CILO,BLQ_MED,BLQ_CIHI\n");
    for (int s = 0; s < v->nstrata; s++)
        for (int k = 0; k < v->strata[s].nbins; k++) {
            const popk_vpc_bin *B = &v->strata[s].bin[k];
            fprintf(f, "\"%s\",%d,%.8g,%.8g,%.8g,%d,%.8g", v->strata[s].label, k + 1, B->t_lo,
                    B->t_hi, B->t_mid, B->nobs, B->lloq);
            for (int j = 0; j < 3; j++)
                fprintf(f, ",%.8g", B->obs[j]);
            for (int j = 0; j < 3; j++)
                fprintf(f, ",%.8g,%.8g,%.8g", B->sim[j][0], B->sim[j][1], B->sim[j][2]);
            fprintf(f, ",%.8g,%.8g,%.8g,%.8g\n", B->blq_obs, B->blq_sim[0], B->blq_sim[1],
                    B->blq_sim[2]);
        }
    if (ferror(f)) {
        popk_atomic_abort(&af);
        return popk_error_set(err, POPK_ERR_IO, path, 0, 0, "write error");
    }
    return popk_atomic_commit(&af, err);
}

popk_plot *popk_vpc_plot(const popk_vpc *v, int s, int ylog, int width, int height)
{
    const popk_vpc_stratum *S = &v->strata[s];
    popk_plot *p = popk_plot_new(width, height);
    if (!p)
        return NULL;
    int nb = S->nbins, pct_lo = (int)lround(100 * v->opt.pi_lo),
        pct_hi = (int)lround(100 * v->opt.pi_hi), ci = (int)lround(100 * v->opt.ci);
    double *buf = malloc(sizeof(double) * (size_t)(nb > 0 ? nb : 1) * 5);
    if (!buf) {
        popk_plot_free(p);
        return NULL;
    }
    double *t = buf, *lo = buf + nb, *hi = lo + nb, *med = hi + nb, *ob = med + nb;
    char title[256], ylabel[96], lab[96];
    snprintf(title, sizeof title, "%s%s: %s", v->opt.pred_corrected ? "pcVPC" : "VPC",
             ylog ? " (log)" : "", S->label);
    snprintf(ylabel, sizeof ylabel, "%s%s", v->opt.pred_corrected ? "prediction-corrected " : "",
             "observation");
    int rc = popk_plot_labels(p, title, v->opt.time_after_dose ? "time after dose" : "time",
                              ylabel);
    popk_plot_log(p, 0, ylog);
    if (ylog) {
        /* The range of the observations: simulated percentiles of an additive error model
         * reach 0 and below, which a log axis cannot show. */
        double lo = INFINITY;
        for (size_t i = 0; i < S->nobs; i++)
            if (S->y[i] > 0)
                lo = fmin(lo, S->y[i]);
        if (isfinite(lo))
            popk_plot_limits(p, NAN, NAN, 0.5 * lo, NAN);
    }
    popk_plot_style pts = {.color = "#7f7f7f", .size = 1.8, .opacity = 0.45};
    rc |= popk_plot_points(p, S->nobs, S->x, S->y, &pts);
    for (int k = 0; k < nb; k++)
        t[k] = S->bin[k].t_mid;
    static const char *const colors[3] = {"#3a78c2", "#d6404e", "#3a78c2"};
    for (int j = 0; j < 3; j++) {
        for (int k = 0; k < nb; k++) {
            lo[k] = S->bin[k].sim[j][0];
            hi[k] = S->bin[k].sim[j][2];
        }
        snprintf(lab, sizeof lab, "simulated %s, %d%% CI",
                 j == 1 ? "median" : j == 0 ? "outer percentiles" : "", ci);
        popk_plot_style band = {.color = colors[j], .opacity = 0.25,
                                .label = j == 2 ? NULL : lab};
        rc |= popk_plot_band(p, (size_t)nb, t, lo, hi, &band);
    }
    for (int j = 0; j < 3; j++) {
        for (int k = 0; k < nb; k++) {
            ob[k] = S->bin[k].obs[j];
            med[k] = S->bin[k].sim[j][1];
        }
        popk_plot_style sim_line = {.color = colors[j], .width = 1, .dashed = 2};
        rc |= popk_plot_line(p, (size_t)nb, t, med, &sim_line);
        if (j == 1)
            snprintf(lab, sizeof lab, "observed median");
        else
            snprintf(lab, sizeof lab, "observed %d%%, %d%%", pct_lo, pct_hi);
        popk_plot_style obs_line = {.color = j == 1 ? "#a01020" : "#1d4f91", .width = 2,
                                    .dashed = j == 1 ? 0 : 1, .label = j == 2 ? NULL : lab};
        rc |= popk_plot_line(p, (size_t)nb, t, ob, &obs_line);
    }
    if (v->has_lloq && !v->opt.pred_corrected) {
        double l = NAN;
        for (int k = 0; k < nb && isnan(l); k++)
            l = S->bin[k].lloq;
        if (isfinite(l)) {
            popk_plot_style ls = {.color = "#222", .width = 1, .dashed = 1, .label = "LLOQ"};
            rc |= popk_plot_hline(p, l, &ls);
        }
    }
    free(buf);
    if (rc) {
        popk_plot_free(p);
        return NULL;
    }
    return p;
}

popk_plot *popk_vpc_blq_plot(const popk_vpc *v, int s, int width, int height)
{
    const popk_vpc_stratum *S = &v->strata[s];
    popk_plot *p = popk_plot_new(width, height);
    int nb = S->nbins;
    double *buf = malloc(sizeof(double) * (size_t)(nb > 0 ? nb : 1) * 5);
    if (!p || !buf) {
        free(buf);
        popk_plot_free(p);
        return NULL;
    }
    double *t = buf, *lo = t + nb, *hi = lo + nb, *med = hi + nb, *ob = med + nb;
    for (int k = 0; k < nb; k++) {
        t[k] = S->bin[k].t_mid;
        lo[k] = S->bin[k].blq_sim[0];
        med[k] = S->bin[k].blq_sim[1];
        hi[k] = S->bin[k].blq_sim[2];
        ob[k] = S->bin[k].blq_obs;
    }
    char title[256];
    snprintf(title, sizeof title, "Fraction below LLOQ: %s", S->label);
    int rc = popk_plot_labels(p, title, v->opt.time_after_dose ? "time after dose" : "time",
                              "fraction BLQ");
    popk_plot_limits(p, NAN, NAN, 0.0, 1.0);
    popk_plot_style band = {.color = "#3a78c2", .label = "simulated, CI"};
    popk_plot_style sm = {.color = "#3a78c2", .width = 1, .dashed = 2};
    popk_plot_style os = {.color = "#a01020", .width = 2, .label = "observed"};
    rc |= popk_plot_band(p, (size_t)nb, t, lo, hi, &band);
    rc |= popk_plot_line(p, (size_t)nb, t, med, &sm);
    rc |= popk_plot_line(p, (size_t)nb, t, ob, &os);
    free(buf);
    if (rc) {
        popk_plot_free(p);
        return NULL;
    }
    return p;
}
