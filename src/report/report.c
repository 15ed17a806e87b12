/* report/report.c — report.html from a fit directory: tables, goodness-of-fit plots, NPDE,
 * individual fits on a dense time grid, and VPCs (see report.h). */
#include "report/report.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "data/data.h"
#include "model/model.h"
#include "pred/pred.h"
#include "report/npde.h"
#include "report/stats.h"
#include "report/svgplot.h"
#include "report/vpc.h"
#include "simulate/simulate.h"
#include "util/atomic.h"
#include "util/error.h"

#define GOF_W 400
#define GOF_H 320
#define IND_W 250
#define IND_H 190
#define GRID_POINTS 160

void popk_report_options_default(popk_report_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->nsim = 500;
    opt->seed = 1;
}

void popk_report_html_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

void popk_report_html_begin(FILE *f, const char *title)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
    popk_report_html_text(f, title);
    fputs("</title>\n<style>\n"
          "body{font-family:Helvetica,Arial,sans-serif;margin:24px 32px;color:#222;"
          "max-width:1400px}\n"
          "h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;border-bottom:1px solid #ccc;"
          "padding-bottom:3px;margin-top:32px}h3{font-size:15px;margin:18px 0 6px}\n"
          "table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;"
          "border-bottom:1px solid #e4e4e4;text-align:right}th{background:#f3f5f8}"
          "td:first-child,th:first-child{text-align:left}td.txt{text-align:left}\n"
          ".grid{display:flex;flex-wrap:wrap;gap:10px}.grid svg{border:1px solid #e6e6e6}\n"
          ".note{color:#555;font-size:13px;max-width:950px}pre{font-size:12px;background:#f7f7f7;"
          "padding:8px;overflow-x:auto}\nnav a{margin-right:14px;font-size:13px}\n"
          "</style>\n</head>\n<body>\n",
          f);
}

void popk_report_html_end(FILE *f)
{
    fputs("</body>\n</html>\n", f);
}

/* ---- a numeric CSV table (tab.csv) -------------------------------------------------- */

typedef struct {
    int ncol;
    size_t nrow;
    char **name;
    double *v; /* row-major */
} num_table;

static void table_free(num_table *t)
{
    for (int k = 0; k < t->ncol; k++)
        free(t->name[k]);
    free(t->name);
    free(t->v);
}

static int table_col(const num_table *t, const char *name)
{
    for (int k = 0; k < t->ncol; k++)
        if (!strcmp(t->name[k], name))
            return k;
    return -1;
}

static popk_status table_read(const char *path, num_table *t, popk_error *err)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    if (!f)
        return popk_error_set(err, POPK_ERR_IO, path, 0, 0, "cannot open");
    char *line = NULL;
    size_t cap = 0, rcap = 0;
    ssize_t len;
    int lineno = 0;
    popk_status st = POPK_OK;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (lineno == 1) {
            int n = 1;
            for (char *c = line; *c; c++)
                n += *c == ',';
            t->name = calloc((size_t)n, sizeof(char *));
            if (!t->name)
                goto nomem;
            char *save = NULL, *tok = strtok_r(line, ",", &save);
            for (; tok; tok = strtok_r(NULL, ",", &save))
                if (!(t->name[t->ncol++] = strdup(tok)))
                    goto nomem;
            continue;
        }
        if (t->nrow == rcap) {
            rcap = rcap ? 2 * rcap : 256;
            double *v = realloc(t->v, sizeof(double) * rcap * (size_t)t->ncol);
            if (!v)
                goto nomem;
            t->v = v;
        }
        char *c = line;
        for (int k = 0; k < t->ncol; k++) {
            char *end;
            double x = strtod(c, &end);
            if (end == c || (*end != ',' && *end != '\0') || (*end == '\0' && k < t->ncol - 1)) {
                st = popk_error_set(err, POPK_ERR_DATA, path, lineno, (int)(c - line) + 1,
                                    "expected %d numeric columns", t->ncol);
                goto out;
            }
            t->v[t->nrow * (size_t)t->ncol + (size_t)k] = x;
            c = *end ? end + 1 : end;
        }
        t->nrow++;
    }
    if (t->ncol == 0)
        st = popk_error_set(err, POPK_ERR_DATA, path, 1, 1, "empty table");
    goto out;
nomem:
    st = popk_error_set(err, POPK_ERR_NOMEM, path, 0, 0, "out of memory");
out:
    free(line);
    fclose(f);
    if (st != POPK_OK)
        table_free(t);
    return st;
}

/* ---- the report's state ------------------------------------------------------------- */

typedef struct {
    FILE *f;
    int plot_id;
    const popk_model *m;
    const popk_data *d;       /* the records the fit used */
    const popk_binding *b;
    num_table tab;
    size_t *tab_rec;          /* record of d for tab row i */
    int c_id, c_time, c_dv, c_evid, c_mdv, c_pred, c_ipred, c_cwres, c_iwres, c_eta;
    double *eta;              /* nsub x neta EBEs */
    size_t nobs;
    size_t *obs_row;          /* tab rows of the observations */
    double *npde;             /* per record of d, or NULL */
    popk_vpc *vpc, *pcvpc;
    int nsim;
    uint64_t seed;
    double vpc_coverage;
} report;

static double tabv(const report *r, size_t row, int col)
{
    return col < 0 ? NAN : r->tab.v[row * (size_t)r->tab.ncol + (size_t)col];
}

static int emit(report *r, popk_plot *p)
{
    if (!p)
        return -1;
    char id[32];
    snprintf(id, sizeof id, "plot%d", ++r->plot_id);
    int rc = popk_plot_write(p, r->f, id);
    popk_plot_free(p);
    return rc;
}

static const popk_plot_style obs_style = {.color = "#2f5d8a", .size = 2.2, .opacity = 0.55};
static const popk_plot_style ref_style = {.color = "#555", .width = 1, .dashed = 1};
static const popk_plot_style smooth_style = {.color = "#d62728", .width = 1.8,
                                             .label = "LOESS smooth"};

static int add_smooth(popk_plot *p, const double *x, const double *y, size_t n, int xlog)
{
    double gx[60], gy[60], *lx = malloc(sizeof(double) * (n ? n : 1));
    if (!lx)
        return -1;
    /* On a log axis smooth against log x, so the curve follows what the eye sees. */
    for (size_t i = 0; i < n; i++)
        lx[i] = xlog ? (x[i] > 0 ? log10(x[i]) : NAN) : x[i];
    int g = popk_loess(lx, y, n, 0.67, 60, gx, gy);
    free(lx);
    if (g == 0)
        return 0;
    if (xlog)
        for (int i = 0; i < g; i++)
            gx[i] = pow(10.0, gx[i]);
    return popk_plot_line(p, (size_t)g, gx, gy, &smooth_style);
}

/* The observations as points, one colour per model output when there are several. */
static int group_points(const report *r, popk_plot *p, const double *x, const double *y)
{
    static const char *const palette[] = {"#2f5d8a", "#e07b00", "#2a9d4b", "#8e44ad"};
    int nout = r->m->nout, used = 0, rc = 0;
    for (int o = 0; o < nout; o++)
        for (size_t i = 0; i < r->nobs; i++)
            if (r->b->out_of_rec[r->tab_rec[r->obs_row[i]]] == o) {
                used++;
                break;
            }
    if (used <= 1)
        return popk_plot_points(p, r->nobs, x, y, &obs_style);
    double *gx = malloc(sizeof(double) * r->nobs * 2 + 1);
    if (!gx)
        return -1;
    double *gy = gx + r->nobs;
    for (int o = 0, c = 0; o < nout; o++) {
        size_t n = 0;
        for (size_t i = 0; i < r->nobs; i++)
            if (r->b->out_of_rec[r->tab_rec[r->obs_row[i]]] == o) {
                gx[n] = x[i];
                gy[n++] = y[i];
            }
        if (n == 0)
            continue;
        popk_plot_style st = obs_style;
        st.color = palette[c++ % 4];
        st.label = r->m->out[o].name;
        rc |= popk_plot_points(p, n, gx, gy, &st);
    }
    free(gx);
    return rc;
}

/* Scatter of y against x for the observations, with optional identity or zero lines. */
static int scatter(report *r, const char *title, const char *xl, const char *yl,
                   const double *x, const double *y, int logxy, int identity, int zero)
{
    popk_plot *p = popk_plot_new(GOF_W, GOF_H);
    if (!p)
        return -1;
    int rc = popk_plot_labels(p, title, xl, yl);
    popk_plot_log(p, logxy, logxy);
    rc |= group_points(r, p, x, y);
    if (identity) {
        /* Below the identity line, bottom right, is where observed-vs-predicted plots are
         * emptiest. */
        popk_plot_legend_corner(p, 1);
        popk_plot_equal(p);
        rc |= popk_plot_identity(p, &ref_style);
    }
    if (zero) {
        popk_plot_style z = {.color = "#555", .width = 1};
        rc |= popk_plot_hline(p, 0.0, &z);
        rc |= popk_plot_hline(p, 2.0, &ref_style);
        rc |= popk_plot_hline(p, -2.0, &ref_style);
    }
    if (!identity || !logxy)
        rc |= add_smooth(p, x, y, r->nobs, logxy);
    if (rc) {
        popk_plot_free(p);
        return -1;
    }
    return emit(r, p);
}

static int qq_plot(report *r, const char *title, const double *v, size_t n)
{
    double *s = malloc(sizeof(double) * (n ? n : 1)), *q = malloc(sizeof(double) * (n ? n : 1));
    popk_plot *p = popk_plot_new(GOF_W, GOF_H);
    if (!s || !q || !p) {
        free(s), free(q), popk_plot_free(p);
        return -1;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i]))
            s[m++] = v[i];
    popk_sort(s, m);
    for (size_t i = 0; i < m; i++)
        q[i] = popk_norm_quantile(((double)i + 0.5) / (double)m);
    int rc = popk_plot_labels(p, title, "standard normal quantile", "sample quantile");
    rc |= popk_plot_points(p, m, q, s, &obs_style);
    popk_plot_equal(p);
    rc |= popk_plot_identity(p, &ref_style);
    free(s), free(q);
    if (rc) {
        popk_plot_free(p);
        return -1;
    }
    return emit(r, p);
}

/* ---- sections ------------------------------------------------------------------------ */

static void section_summary(report *r, const char *fitdir)
{
    FILE *f = r->f;
    char path[4096];
    snprintf(path, sizeof path, "%s/summary.txt", fitdir);
    FILE *in = fopen(path, "r");
    fputs("<h2 id=\"summary\">Run summary</h2>\n", f);
    if (!in) {
        fputs("<p class=\"note\">summary.txt is missing.</p>\n", f);
        return;
    }
    char line[2048];
    int state = 0; /* 0 header, 1 parameter table, 2 after */
    fputs("<div class=\"note\">\n", f);
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (state == 0 && !strncmp(line, "parameter ", 10)) {
            fputs("</div>\n<h3>Parameters</h3>\n<table>\n<tr><th>parameter</th><th>estimate</th>"
                  "<th>SE</th><th>RSE%</th><th>95% CI / back-transformed / variability</th></tr>\n",
                  f);
            state = 1;
            continue;
        }
        if (state == 1) {
            if (!line[0]) {
                fputs("</table>\n<div class=\"note\">\n", f);
                state = 2;
                continue;
            }
            char name[256], est[64], se[64], rse[64];
            int used = 0;
            if (sscanf(line, "%255s %63s %63s %63s %n", name, est, se, rse, &used) >= 4) {
                fputs("<tr><td>", f);
                popk_report_html_text(f, name);
                fprintf(f, "</td><td>%s</td><td>%s</td><td>%s</td><td class=\"txt\">", est, se,
                        rse);
                popk_report_html_text(f, line + used);
                fputs("</td></tr>\n", f);
            }
            continue;
        }
        if (!line[0])
            continue;
        fputs("<p>", f);
        popk_report_html_text(f, line);
        fputs("</p>\n", f);
    }
    fclose(in);
    if (state == 1)
        fputs("</table>\n", f);
    else
        fputs("</div>\n", f);
}

static int section_gof(report *r)
{
    size_t n = r->nobs;
    double *col = malloc(sizeof(double) * (n ? n : 1) * 6);
    if (!col)
        return -1;
    double *dv = col, *pred = dv + n, *ipred = pred + n, *cwres = ipred + n, *iwres = cwres + n,
           *time = iwres + n;
    for (size_t i = 0; i < n; i++) {
        size_t row = r->obs_row[i];
        dv[i] = tabv(r, row, r->c_dv);
        pred[i] = tabv(r, row, r->c_pred);
        ipred[i] = tabv(r, row, r->c_ipred);
        cwres[i] = tabv(r, row, r->c_cwres);
        iwres[i] = tabv(r, row, r->c_iwres);
        time[i] = tabv(r, row, r->c_time);
    }
    FILE *f = r->f;
    int rc = 0;
    fputs("<h2 id=\"gof\">Goodness of fit</h2>\n<p class=\"note\">Observations against population "
          "(PRED, eta = 0) and individual (IPRED, empirical Bayes etas) predictions; dashed: "
          "identity. Residuals with a LOESS smooth (red); dashed lines at &plusmn;2.</p>\n"
          "<div class=\"grid\">\n",
          f);
    rc |= scatter(r, "DV vs PRED", "PRED", "DV", pred, dv, 0, 1, 0);
    rc |= scatter(r, "DV vs IPRED", "IPRED", "DV", ipred, dv, 0, 1, 0);
    rc |= scatter(r, "DV vs PRED (log)", "PRED", "DV", pred, dv, 1, 1, 0);
    rc |= scatter(r, "DV vs IPRED (log)", "IPRED", "DV", ipred, dv, 1, 1, 0);
    fputs("</div>\n<h3>Residuals</h3>\n<div class=\"grid\">\n", f);
    rc |= scatter(r, "CWRES vs TIME", "TIME", "CWRES", time, cwres, 0, 0, 1);
    rc |= scatter(r, "CWRES vs PRED", "PRED", "CWRES", pred, cwres, 0, 0, 1);
    rc |= scatter(r, "IWRES vs IPRED", "IPRED", "IWRES", ipred, iwres, 0, 0, 1);
    rc |= qq_plot(r, "QQ plot of CWRES", cwres, n);
    fputs("</div>\n", f);
    if (r->npde) {
        double *npde = dv; /* reuse: dv is no longer needed */
        for (size_t i = 0; i < n; i++)
            npde[i] = r->npde[r->tab_rec[r->obs_row[i]]];
        fprintf(f, "<h3>NPDE</h3>\n<p class=\"note\">Normalised prediction distribution errors "
                   "(Brendel et al. 2006; decorrelated by the Cholesky factor of each subject's "
                   "simulated covariance, Comets et al. 2008) from %d simulated replicates "
                   "(seed %llu); under the model they are independent N(0, 1).</p>\n"
                   "<div class=\"grid\">\n",
                r->nsim, (unsigned long long)r->seed);
        rc |= scatter(r, "NPDE vs TIME", "TIME", "NPDE", time, npde, 0, 0, 1);
        rc |= scatter(r, "NPDE vs PRED", "PRED", "NPDE", pred, npde, 0, 0, 1);
        rc |= qq_plot(r, "QQ plot of NPDE", npde, n);
        fputs("</div>\n", f);
    }
    free(col);
    return rc;
}

static int section_etas(report *r)
{
    const popk_model *m = r->m;
    const popk_data *d = r->d;
    int ne = m->neta;
    size_t ns = d->nsub;
    if (ne == 0)
        return 0;
    FILE *f = r->f;
    int rc = 0;
    double *v = malloc(sizeof(double) * (ns ? ns : 1) * 2);
    if (!v)
        return -1;
    fputs("<h2 id=\"etas\">Random effects</h2>\n<p class=\"note\">Histograms of the empirical "
          "Bayes estimates with the N(0, omega) density of the model (line).</p>\n"
          "<div class=\"grid\">\n",
          f);
    for (int k = 0; k < ne; k++) {
        double sd = sqrt(m->omega[k * ne + k]);
        for (size_t s = 0; s < ns; s++)
            v[s] = r->eta[s * (size_t)ne + k];
        int nb = (int)ceil(sqrt((double)ns)) + 1;
        nb = nb < 5 ? 5 : nb > 25 ? 25 : nb;
        double lo = INFINITY, hi = -INFINITY;
        for (size_t s = 0; s < ns; s++) {
            lo = fmin(lo, v[s]);
            hi = fmax(hi, v[s]);
        }
        double span = fmax(hi - lo, 1e-6), w = span / nb;
        double x0[25], x1[25], y0[25], y1[25], gx[81], gy[81];
        for (int i = 0; i < nb; i++) {
            x0[i] = lo + w * i;
            x1[i] = lo + w * (i + 1);
            y0[i] = 0;
            y1[i] = 0;
        }
        for (size_t s = 0; s < ns; s++) {
            int i = (int)((v[s] - lo) / w);
            y1[i >= nb ? nb - 1 : i] += 1;
        }
        double a = fmin(lo, -3 * sd), bnd = fmax(hi, 3 * sd);
        for (int i = 0; i <= 80; i++) {
            gx[i] = a + (bnd - a) * i / 80.0;
            gy[i] = sd > 0 ? (double)ns * w * exp(-0.5 * gx[i] * gx[i] / (sd * sd)) /
                                 (sd * sqrt(2 * M_PI))
                           : NAN;
        }
        char title[160];
        snprintf(title, sizeof title, "%s (omega %.3g)", m->eta_name[k], sd * sd);
        popk_plot *p = popk_plot_new(300, 240);
        if (!p) {
            rc = -1;
            break;
        }
        popk_plot_style bars = {.color = "#4c78a8", .opacity = 0.45};
        popk_plot_style dens = {.color = "#d62728", .width = 1.5};
        rc |= popk_plot_labels(p, title, m->eta_name[k], "subjects");
        rc |= popk_plot_rects(p, (size_t)nb, x0, x1, y0, y1, &bars);
        rc |= popk_plot_line(p, 81, gx, gy, &dens);
        rc |= emit(r, p);
    }
    fputs("</div>\n", f);

    /* Etas against every dataset column that varies between subjects (first record). */
    int shown = 0;
    for (size_t c = 0; c < d->ncov && shown < 8; c++) {
        const popk_covariate *cv = &d->cov[c];
        double first = NAN;
        int varies = 0;
        for (size_t s = 0; s < ns; s++) {
            double x = cv->values[d->sub[s].first];
            v[ns + s] = x;
            if (s == 0)
                first = x;
            else if (x != first && !(isnan(x) && isnan(first)))
                varies = 1;
        }
        if (!varies)
            continue;
        if (shown++ == 0)
            fputs("<h3>Random effects against covariates</h3>\n<p class=\"note\">Each subject's "
                  "value at its first record.</p>\n",
                  f);
        fputs("<div class=\"grid\">\n", f);
        for (int k = 0; k < ne; k++) {
            for (size_t s = 0; s < ns; s++)
                v[s] = r->eta[s * (size_t)ne + k];
            char title[160];
            snprintf(title, sizeof title, "%s vs %s", m->eta_name[k], cv->name);
            popk_plot *p = popk_plot_new(300, 240);
            if (!p) {
                rc = -1;
                break;
            }
            rc |= popk_plot_labels(p, title, cv->name, m->eta_name[k]);
            if (cv->kind == POPK_COV_CATEGORICAL && cv->nlevels > 0 && cv->nlevels <= 40) {
                double at[40];
                for (int l = 0; l < cv->nlevels; l++)
                    at[l] = l;
                rc |= popk_plot_xticks(p, cv->nlevels, at, (const char *const *)cv->levels);
            }
            rc |= popk_plot_points(p, ns, v + ns, v, &obs_style);
            popk_plot_style z = {.color = "#555", .width = 1};
            rc |= popk_plot_hline(p, 0.0, &z);
            if (cv->kind != POPK_COV_CATEGORICAL)
                rc |= add_smooth(p, v + ns, v, ns, 0);
            rc |= emit(r, p);
        }
        fputs("</div>\n", f);
    }
    free(v);
    return rc;
}

/* A dataset holding each subject's non-observation records plus GRID_POINTS evenly spaced
 * EVID 2 records, for smooth PRED and IPRED curves; covariates are the model's, in model
 * codes, carried from the nearest earlier record. */
static popk_data *dense_grid(const report *r, popk_error *err)
{
    const popk_model *m = r->m;
    const popk_data *d = r->d;
    const char **names = malloc(sizeof(char *) * (size_t)(m->ncov + 1));
    double *cov = malloc(sizeof(double) * (size_t)(m->ncov + 1));
    if (!names || !cov) {
        free(names), free(cov);
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    for (int k = 0; k < m->ncov; k++)
        names[k] = m->cov[k].name;
    popk_data_builder *bld = popk_data_builder_new(m->ncov, names, err);
    free(names);
    if (!bld) {
        free(cov);
        return NULL;
    }
    for (size_t s = 0; s < d->nsub; s++) {
        const popk_subject *sub = &d->sub[s];
        double t0 = d->rec[sub->first].time, t1 = d->rec[sub->first + sub->n - 1].time;
        if (!(t1 > t0))
            t1 = t0 + 1.0;
        size_t k = 0;
        int g = 0;
        while (k < sub->n || g < GRID_POINTS) {
            double tg = g < GRID_POINTS ? t0 + (t1 - t0) * g / (GRID_POINTS - 1) : INFINITY;
            size_t ri = sub->first + (k < sub->n ? k : sub->n - 1);
            if (k < sub->n && d->rec[ri].time <= tg) {
                popk_record rec = d->rec[ri];
                k++;
                if (rec.evid == 0 || rec.evid == 2)
                    continue;
                for (int c = 0; c < m->ncov; c++)
                    cov[c] = r->b->cov[(size_t)c * r->b->nrec + ri];
                if (popk_data_builder_add(bld, sub->id, &rec, cov, err) != POPK_OK)
                    goto fail;
                continue;
            }
            size_t prev = k > 0 ? sub->first + k - 1 : sub->first;
            popk_record rec = {0};
            rec.time = tg;
            rec.dv = NAN;
            rec.evid = 2;
            rec.mdv = 1;
            for (int c = 0; c < m->ncov; c++)
                cov[c] = r->b->cov[(size_t)c * r->b->nrec + prev];
            if (popk_data_builder_add(bld, sub->id, &rec, cov, err) != POPK_OK)
                goto fail;
            g++;
        }
    }
    free(cov);
    return popk_data_builder_finish(bld);
fail:
    free(cov);
    popk_data_builder_free(bld);
    return NULL;
}

static int section_individual(report *r, popk_error *err)
{
    const popk_model *m = r->m;
    const popk_data *d = r->d;
    FILE *f = r->f;
    popk_data *g = dense_grid(r, err);
    popk_binding *gb = g ? popk_model_bind(m, g, err) : NULL;
    popk_pred_ws *ws = gb ? popk_pred_ws_new(m, err) : NULL;
    double *theta = malloc(sizeof(double) * (size_t)(m->ntheta + 1));
    double *zero = calloc((size_t)m->neta + 1, sizeof(double));
    size_t maxn = 1;
    if (g)
        for (size_t s = 0; s < g->nsub; s++)
            maxn = g->sub[s].n > maxn ? g->sub[s].n : maxn;
    double *buf = malloc(sizeof(double) * maxn * 3);
    double *ox = malloc(sizeof(double) * (d->nrec + 1) * 2);
    int rc = 0;
    if (!ws || !theta || !zero || !buf || !ox) {
        rc = -1;
        goto out;
    }
    for (int k = 0; k < m->ntheta; k++)
        theta[k] = m->theta[k].init;
    fprintf(f, "<h2 id=\"individual\">Individual fits</h2>\n<p class=\"note\">Observations "
               "(points), population prediction PRED (dashed) and individual prediction IPRED "
               "(solid) on a grid of %d times per subject.</p>\n<div class=\"grid\">\n",
            GRID_POINTS);
    for (size_t s = 0; s < d->nsub && s < g->nsub; s++) {
        /* The subject's observations and the output they belong to. */
        size_t no = 0;
        int out = -1;
        double *oy = ox + d->nrec + 1;
        for (size_t i = 0; i < r->nobs; i++) {
            size_t rec = r->tab_rec[r->obs_row[i]];
            if (rec < d->sub[s].first || rec >= d->sub[s].first + d->sub[s].n)
                continue;
            if (out < 0)
                out = r->b->out_of_rec[rec];
            if (r->b->out_of_rec[rec] != out)
                continue;
            ox[no] = d->rec[rec].time;
            oy[no++] = d->rec[rec].dv;
        }
        if (out < 0)
            out = 0;
        popk_pred_result pr;
        double *gt = buf, *gp = buf + maxn, *gi = gp + maxn;
        if (popk_pred_subject(ws, m, g, gb, s, theta, zero, NULL, &pr, err) != POPK_OK) {
            rc = -2;
            goto out;
        }
        size_t n = pr.nrec;
        for (size_t k = 0; k < n; k++) {
            gt[k] = g->rec[g->sub[s].first + k].time;
            gp[k] = g->rec[g->sub[s].first + k].evid == 2 ? pr.out[k * (size_t)pr.nout + (size_t)out]
                                                           : NAN;
        }
        if (popk_pred_subject(ws, m, g, gb, s, theta, r->eta + s * (size_t)m->neta, NULL, &pr,
                              err) != POPK_OK) {
            rc = -2;
            goto out;
        }
        for (size_t k = 0; k < n; k++)
            gi[k] = g->rec[g->sub[s].first + k].evid == 2 ? pr.out[k * (size_t)pr.nout + (size_t)out]
                                                           : NAN;
        /* A dose record between grid points is not a break in the curve. */
        size_t c = 0;
        for (size_t k = 0; k < n; k++)
            if (!isnan(gp[k]) || !isnan(gi[k])) {
                gt[c] = gt[k];
                gp[c] = gp[k];
                gi[c++] = gi[k];
            }
        char title[96];
        snprintf(title, sizeof title, "ID %g", d->sub[s].id);
        popk_plot *p = popk_plot_new(IND_W, IND_H);
        if (!p) {
            rc = -1;
            goto out;
        }
        popk_plot_style ps = {.color = "#222", .size = 2.4};
        popk_plot_style pp = {.color = "#1f77b4", .width = 1.4, .dashed = 1,
                              .label = s == 0 ? "PRED" : NULL};
        popk_plot_style pi = {.color = "#d62728", .width = 1.6, .label = s == 0 ? "IPRED" : NULL};
        rc |= popk_plot_labels(p, title, "time", m->out[out].name);
        rc |= popk_plot_line(p, c, gt, gp, &pp);
        rc |= popk_plot_line(p, c, gt, gi, &pi);
        rc |= popk_plot_points(p, no, ox, oy, &ps);
        rc |= emit(r, p);
    }
    fputs("</div>\n", f);
out:
    free(theta), free(zero), free(buf), free(ox);
    popk_pred_ws_free(ws);
    popk_binding_free(gb);
    popk_data_free(g);
    return rc;
}

static int section_vpc(report *r)
{
    FILE *f = r->f;
    int rc = 0;
    if (!r->vpc)
        return 0;
    int n;
    double cov = popk_vpc_coverage(r->vpc, &n);
    fprintf(f, "<h2 id=\"vpc\">Visual predictive check</h2>\n<p class=\"note\">%d replicates of "
               "the dataset's design simulated with the fitted model (seed %llu). Points: "
               "observations; lines: observed median (solid) and %g%%/%g%% percentiles "
               "(dashed); shaded: %g%% confidence intervals of the same percentiles of the "
               "simulations, by time bin (natural breaks; docs/diagnostics.md). %.0f%% of the "
               "%d observed percentiles lie inside their interval. The prediction-corrected "
               "VPC (Bergstrand et al. 2011) scales each observation by the median PRED of its "
               "bin over its own PRED.</p>\n<div class=\"grid\">\n",
            r->nsim, (unsigned long long)r->seed, 100 * r->vpc->opt.pi_lo,
            100 * r->vpc->opt.pi_hi, 100 * r->vpc->opt.ci, 100 * cov, n);
    for (int s = 0; s < r->vpc->nstrata; s++) {
        rc |= emit(r, popk_vpc_plot(r->vpc, s, 0, 520, 380));
        rc |= emit(r, popk_vpc_plot(r->vpc, s, 1, 520, 380));
        if (r->vpc->has_lloq)
            rc |= emit(r, popk_vpc_blq_plot(r->vpc, s, 520, 380));
    }
    if (r->pcvpc)
        for (int s = 0; s < r->pcvpc->nstrata; s++)
            rc |= emit(r, popk_vpc_plot(r->pcvpc, s, 0, 520, 380));
    fputs("</div>\n", f);
    return rc;
}

/* ---- inputs ------------------------------------------------------------------------- */

/* The dataset path from fit.yaml's first line: "# Fitted by popk V (M) from MODEL on DATA." */
static int data_path_from_fit(const char *fit_yaml, char *buf, size_t size)
{
    FILE *f = fopen(fit_yaml, "r");
    if (!f)
        return -1;
    char line[4096];
    int ok = -1;
    if (fgets(line, sizeof line, f) && !strncmp(line, "# Fitted by popk", 16)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *on = strstr(line, " on ");
        for (char *nxt; on && (nxt = strstr(on + 4, " on "));)
            on = nxt;
        size_t len = on ? strlen(on + 4) : 0;
        if (len > 1 && on[4 + len - 1] == '.' && len < size) {
            memcpy(buf, on + 4, len - 1);
            buf[len - 1] = '\0';
            ok = 0;
        }
    }
    fclose(f);
    return ok;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Match tab.csv rows to the dataset's records in order (the fit may have dropped records
 * with filters): row i is the next record with the same ID, TIME and EVID. */
static popk_status match_tab(report *r, const popk_data *full, const char *tab_path,
                             unsigned char *keep, popk_error *err)
{
    size_t next = 0;
    for (size_t i = 0; i < r->tab.nrow; i++) {
        double id = tabv(r, i, r->c_id), t = tabv(r, i, r->c_time);
        int evid = (int)tabv(r, i, r->c_evid);
        while (next < full->nrec) {
            const popk_record *rec = &full->rec[next];
            size_t s = 0;
            /* The subject of record next (records are grouped by subject). */
            while (s + 1 < full->nsub && full->sub[s + 1].first <= next)
                s++;
            if (full->sub[s].id == id && fabs(rec->time - t) <= 1e-9 * fmax(1.0, fabs(t)) &&
                rec->evid == evid)
                break;
            next++;
        }
        if (next == full->nrec)
            return popk_error_set(err, POPK_ERR_DATA, tab_path, (int)i + 2, 1,
                                  "no record of %s matches ID %g TIME %g EVID %d: is this the "
                                  "dataset of the fit?",
                                  full->path, id, t, evid);
        keep[next++] = 1;
    }
    return POPK_OK;
}

popk_status popk_report_write(const char *fitdir, const popk_report_options *opt,
                              popk_error *err)
{
    popk_report_options o;
    if (opt)
        o = *opt;
    else
        popk_report_options_default(&o);
    if (o.nsim == 0)
        o.nsim = 500;
    report r;
    memset(&r, 0, sizeof r);
    r.nsim = o.nsim;
    r.seed = o.seed;
    char path[4096], data_path[4096], tab_path[4096];
    popk_status st = POPK_OK;
    popk_model *m = NULL;
    popk_data *full = NULL, *d = NULL;
    popk_binding *b = NULL;
    unsigned char *keep = NULL;
    popk_sim_replicates *sims = NULL;
    popk_atomic_file af = {0};

    snprintf(path, sizeof path, "%s/fit.yaml", fitdir);
    if (!(m = popk_model_load(path, err)))
        return err ? err->code : POPK_ERR_MODEL;
    if (o.data_path) {
        snprintf(data_path, sizeof data_path, "%s", o.data_path);
    } else if (data_path_from_fit(path, data_path, sizeof data_path) != 0) {
        st = popk_error_set(err, POPK_ERR_ARG, path, 1, 1,
                            "no dataset named on the first line: give the dataset with --data");
        goto out;
    } else if (!file_exists(data_path) && data_path[0] != '/') {
        /* The fit ran elsewhere: try the path relative to the fit directory's parent. */
        char alt[8300];
        snprintf(alt, sizeof alt, "%s/../%s", fitdir, data_path);
        if (file_exists(alt) && strlen(alt) < sizeof data_path)
            memcpy(data_path, alt, strlen(alt) + 1);
    }
    if (!(full = popk_data_read(data_path, err))) {
        st = err ? err->code : POPK_ERR_DATA;
        goto out;
    }
    snprintf(tab_path, sizeof tab_path, "%s/tab.csv", fitdir);
    if ((st = table_read(tab_path, &r.tab, err)) != POPK_OK)
        goto out;
    r.c_id = table_col(&r.tab, "ID");
    r.c_time = table_col(&r.tab, "TIME");
    r.c_dv = table_col(&r.tab, "DV");
    r.c_evid = table_col(&r.tab, "EVID");
    r.c_mdv = table_col(&r.tab, "MDV");
    r.c_pred = table_col(&r.tab, "PRED");
    r.c_ipred = table_col(&r.tab, "IPRED");
    r.c_cwres = table_col(&r.tab, "CWRES");
    r.c_iwres = table_col(&r.tab, "IWRES");
    r.c_eta = table_col(&r.tab, "ETA1");
    if (r.c_id < 0 || r.c_time < 0 || r.c_dv < 0 || r.c_evid < 0 || r.c_mdv < 0 ||
        r.c_pred < 0 || r.c_ipred < 0 || r.c_cwres < 0 || r.c_iwres < 0 ||
        (m->neta > 0 && r.c_eta < 0)) {
        st = popk_error_set(err, POPK_ERR_DATA, tab_path, 1, 1,
                            "not a popk fit table (ID TIME DV EVID MDV PRED IPRED ... ETA1)");
        goto out;
    }
    if (!(keep = calloc(full->nrec + 1, 1))) {
        st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto out;
    }
    if ((st = match_tab(&r, full, tab_path, keep, err)) != POPK_OK)
        goto out;
    if (!(d = popk_data_subset(full, keep, err)) || !(b = popk_model_bind(m, d, err))) {
        st = err ? err->code : POPK_ERR_DATA;
        goto out;
    }
    r.m = m;
    r.d = d;
    r.b = b;
    /* Rows map one-to-one, in order, onto the kept records. */
    r.tab_rec = malloc(sizeof(size_t) * (r.tab.nrow + 1));
    r.obs_row = malloc(sizeof(size_t) * (r.tab.nrow + 1));
    r.eta = calloc(d->nsub * (size_t)m->neta + 1, sizeof(double));
    if (!r.tab_rec || !r.obs_row || !r.eta || d->nrec != r.tab.nrow) {
        st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < r.tab.nrow; i++) {
        r.tab_rec[i] = i;
        if (tabv(&r, i, r.c_evid) == 0 && tabv(&r, i, r.c_mdv) == 0)
            r.obs_row[r.nobs++] = i;
    }
    for (size_t s = 0; s < d->nsub; s++)
        for (int k = 0; k < m->neta; k++)
            r.eta[s * (size_t)m->neta + k] = tabv(&r, d->sub[s].first, r.c_eta + k);

    if (o.nsim > 0) {
        popk_sim_design_opts so = {0};
        so.seed = o.seed;
        so.nrep = o.nsim;
        so.residual = 1;
        so.nthreads = o.nthreads;
        if (!(sims = popk_sim_design(m, d, b, &so, err))) {
            st = err ? err->code : POPK_ERR_NUMERIC;
            goto out;
        }
        r.npde = malloc(sizeof(double) * (d->nrec + 1) * 4);
        if (!r.npde) {
            st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
            goto out;
        }
        double *pd = r.npde + d->nrec, *npd = pd + d->nrec, *pde = npd + d->nrec;
        if ((st = popk_npde_dataset(m, d, b, sims, pd, npd, pde, r.npde, err)) != POPK_OK)
            goto out;
        popk_vpc_options vo;
        popk_vpc_options_default(&vo);
        vo.nsim = o.nsim;
        vo.seed = o.seed;
        if (!(r.vpc = popk_vpc_compute(m, d, b, sims, &vo, err))) {
            st = err ? err->code : POPK_ERR_NUMERIC;
            goto out;
        }
        vo.pred_corrected = 1;
        if (!(r.pcvpc = popk_vpc_compute(m, d, b, sims, &vo, err))) {
            st = err ? err->code : POPK_ERR_NUMERIC;
            goto out;
        }
        snprintf(path, sizeof path, "%s/vpc.csv", fitdir);
        if ((st = popk_vpc_write_csv(r.vpc, path, err)) != POPK_OK)
            goto out;
        snprintf(path, sizeof path, "%s/npde.csv", fitdir);
        popk_atomic_file nf;
        if ((st = popk_atomic_open(&nf, path, err)) != POPK_OK)
            goto out;
        fprintf(nf.fp, "ID,TIME,DV,PD,NPD,PDE,NPDE\n");
        for (size_t s = 0; s < d->nsub; s++)
            for (size_t k = 0; k < d->sub[s].n; k++) {
                size_t rr = d->sub[s].first + k;
                if (isnan(pd[rr]))
                    continue;
                fprintf(nf.fp, "%.15g,%.15g,%.10g,%.6g,%.6g,%.6g,%.6g\n", d->sub[s].id,
                        d->rec[rr].time, d->rec[rr].dv, pd[rr], npd[rr], pde[rr], r.npde[rr]);
            }
        if ((st = popk_atomic_commit(&nf, err)) != POPK_OK)
            goto out;
    }

    if (o.out_path)
        snprintf(path, sizeof path, "%s", o.out_path);
    else
        snprintf(path, sizeof path, "%s/report.html", fitdir);
    if ((st = popk_atomic_open(&af, path, err)) != POPK_OK)
        goto out;
    r.f = af.fp;
    char title[512];
    snprintf(title, sizeof title, "popk report: %s", m->name ? m->name : fitdir);
    popk_report_html_begin(r.f, title);
    fputs("<h1>", r.f);
    popk_report_html_text(r.f, title);
    fputs("</h1>\n<p class=\"note\">", r.f);
    if (m->description) {
        popk_report_html_text(r.f, m->description);
        fputs("<br>", r.f);
    }
    fputs("Fit directory ", r.f);
    popk_report_html_text(r.f, fitdir);
    fputs(", dataset ", r.f);
    popk_report_html_text(r.f, data_path);
    fprintf(r.f, " (%zu subjects, %zu observations).</p>\n<nav><a href=\"#summary\">Summary</a>"
                 "<a href=\"#gof\">Goodness of fit</a><a href=\"#etas\">Random effects</a>"
                 "<a href=\"#individual\">Individual fits</a>%s</nav>\n",
            d->nsub, r.nobs, r.vpc ? "<a href=\"#vpc\">VPC</a>" : "");
    section_summary(&r, fitdir);
    int rc = section_gof(&r);
    rc |= section_etas(&r);
    int ri = section_individual(&r, err);
    if (ri == -2) {
        popk_atomic_abort(&af);
        st = err ? err->code : POPK_ERR_NUMERIC;
        goto out;
    }
    rc |= ri;
    rc |= section_vpc(&r);
    fprintf(r.f, "<p class=\"note\">Written by popk %s.</p>\n", POPK_VERSION);
    popk_report_html_end(r.f);
    if (rc || ferror(r.f)) {
        popk_atomic_abort(&af);
        st = popk_error_set(err, rc ? POPK_ERR_NOMEM : POPK_ERR_IO, path, 0, 0,
                            rc ? "out of memory while drawing" : "write error");
        goto out;
    }
    st = popk_atomic_commit(&af, err);
out:
    popk_vpc_free(r.vpc);
    popk_vpc_free(r.pcvpc);
    popk_sim_replicates_free(sims);
    free(r.npde);
    free(r.tab_rec);
    free(r.obs_row);
    free(r.eta);
    table_free(&r.tab);
    free(keep);
    popk_binding_free(b);
    popk_data_free(d);
    popk_data_free(full);
    popk_model_free(m);
    return st;
}
