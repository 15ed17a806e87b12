/* cli/cmd_sim.c — 'popk sim': simulate a dosing regimen for a patient profile or a virtual
 * population; writes percentiles, exposure metrics, target attainment and an SVG plot into
 * an output directory, all files or none (docs/simulation.md). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "model/model.h"
#include "model/yaml_tree.h"
#include "simulate/sim.h"
#include "util/error.h"

#define MAX_TARGETS 8
#define MAX_PROFILES 16
#define MAX_Q 32

static void usage(FILE *out)
{
    fprintf(out,
        "usage: popk sim MODEL --regimen SPEC [options]\n\n"
        "Simulates SPEC for a patient profile or a virtual population and writes into\n"
        "--out DIR (default sim_out): percentiles.csv, summary.csv, summary.txt, metrics.csv\n"
        "(n <= 100000), profiles.csv (--profiles), plot.svg. MODEL may be a fit.yaml.\n"
        "  --regimen SPEC     \"400 mg po q12h x2, then 200 mg po q12h x 26\", a YAML\n"
        "                     regimen file (.yaml/.yml) or a NONMEM dataset (its first\n"
        "                     subject's doses; --template-id ID picks another)\n"
        "  --covariates SPEC  WT=70,CYP2C19=PM; distributions WT=N(70,15,40,150),\n"
        "                     WT=LN(70,0.2), AGE=U(20,80), CYP2C19={PM:0.02,IM:0.26,...}\n"
        "  --population CSV   virtual patients (one row each, covariate columns); sampled\n"
        "                     with replacement (--n) or row by row (--sequential)\n"
        "  --mode MODE        typical (etas zero, n = 1) | population (default)\n"
        "  --residual         add residual error to the simulated profiles\n"
        "  --uncertainty      draw thetas from the fit's covariance (MODEL = fit.yaml)\n"
        "  --n N              subjects (default 1000); --seed S (default 1)\n"
        "  --times SPEC       0:0.5:336 or 0,1,2,4 (default: the regimen's span)\n"
        "  --quantiles LIST   default 0.05,0.25,0.5,0.75,0.95\n"
        "  --target T         trough>=10, \"AUC24 in 400..600\", Cmax<=40, \"T>2 50%%\",\n"
        "                     \"T>MIC 50%%\" (with --mic X); repeatable\n"
        "  --threshold X      concentration for the T_above_pct metric\n"
        "  --by COV=A,B,C     one run per value, compared side by side\n"
        "  --output NAME      the model output summarised (default: the first)\n"
        "  --profiles         write every subject's profile (n <= 1000)\n"
        "  --threads N, --quiet, --write-design (design.csv: the regimen as a dataset)\n");
}

/* --- progress ---------------------------------------------------------------------------- */

typedef struct {
    struct timespec start;
    int quiet, shown;
    double last;
    const char *label;
    long n;
} progress_state;

static double elapsed(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static int on_progress(double frac, void *user)
{
    progress_state *p = user;
    double e = elapsed(&p->start);
    if (p->quiet || e < 2.0 || (e - p->last < 0.5 && frac < 1))
        return 0;
    p->last = e;
    fprintf(stderr, "\rpopk sim: %s%3.0f%% of %ld subjects, %.1f s", p->label, 100 * frac,
            p->n, e);
    p->shown = 1;
    return 0;
}

/* --- output directory: files staged in a sibling directory, moved in at the end ----------- */

typedef struct {
    char dir[4096], stage[4200];
    char names[16][64];
    int nfiles;
} outdir;

static int outdir_open(outdir *o, const char *dir)
{
    snprintf(o->dir, sizeof o->dir, "%s", dir);
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            fprintf(stderr, "popk sim: %s: exists and is not a directory\n", dir);
            return -1;
        }
        if (access(dir, W_OK | X_OK) != 0) {
            fprintf(stderr, "popk sim: %s: output directory is not writable: %s\n", dir,
                    strerror(errno));
            return -1;
        }
    }
    size_t l = strlen(dir);
    while (l > 1 && dir[l - 1] == '/')
        l--;
    snprintf(o->stage, sizeof o->stage, "%.*s.popk-sim-XXXXXX", (int)l, dir);
    if (!mkdtemp(o->stage)) {
        fprintf(stderr, "popk sim: %s: cannot create the output directory: %s\n", dir,
                strerror(errno));
        o->stage[0] = '\0';
        return -1;
    }
    return 0;
}

static FILE *outdir_file(outdir *o, const char *name)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", o->stage, name);
    FILE *f = fopen(path, "w");
    if (f && o->nfiles < 16)
        snprintf(o->names[o->nfiles++], sizeof o->names[0], "%s", name);
    return f;
}

static void outdir_abort(outdir *o)
{
    if (!o->stage[0])
        return;
    for (int i = 0; i < o->nfiles; i++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", o->stage, o->names[i]);
        unlink(path);
    }
    rmdir(o->stage);
    o->stage[0] = '\0';
}

static int outdir_commit(outdir *o)
{
    struct stat st;
    if (stat(o->dir, &st) != 0) {
        if (rename(o->stage, o->dir) == 0) {
            o->stage[0] = '\0';
            return 0;
        }
        if (mkdir(o->dir, 0777) != 0) {
            fprintf(stderr, "popk sim: %s: cannot create: %s\n", o->dir, strerror(errno));
            outdir_abort(o);
            return -1;
        }
    }
    for (int i = 0; i < o->nfiles; i++) {
        char from[4400], to[4400];
        snprintf(from, sizeof from, "%s/%s", o->stage, o->names[i]);
        snprintf(to, sizeof to, "%s/%s", o->dir, o->names[i]);
        if (rename(from, to) != 0) {
            fprintf(stderr, "popk sim: %s: %s\n", to, strerror(errno));
            outdir_abort(o);
            return -1;
        }
    }
    rmdir(o->stage);
    o->stage[0] = '\0';
    return 0;
}

static int close_checked(FILE *f, const char *name)
{
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad)
        fprintf(stderr, "popk sim: %s: write error\n", name);
    return bad ? -1 : 0;
}

/* --- fit covariance ----------------------------------------------------------------------- */

static const popk_yt_node *ymap(const popk_yt_node *n, const char *key)
{
    for (int i = 0; n && n->kind == POPK_YT_MAP && i < n->n; i++)
        if (!strcmp(n->item[2 * i]->text, key))
            return n->item[2 * i + 1];
    return NULL;
}

/* The thetas' covariance from fit.yaml (fit: covariance: theta_covariance: names, matrix),
 * as a full ntheta x ntheta matrix with zero rows for thetas that were not estimated. */
static double *read_theta_cov(const char *path, const popk_model *m)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 16u << 20;
    char *buf = malloc(cap);
    size_t len = buf ? fread(buf, 1, cap - 1, f) : 0;
    fclose(f);
    if (!buf)
        return NULL;
    popk_yt_doc doc = {0};
    popk_error err;
    double *cov = NULL;
    if (popk_yt_parse(&doc, path, buf, len, &err) != POPK_OK)
        goto done;
    const popk_yt_node *tc = ymap(ymap(ymap(doc.root, "fit"), "covariance"), "theta_covariance");
    const popk_yt_node *names = ymap(tc, "names"), *mat = ymap(tc, "matrix");
    if (!names || !mat || names->kind != POPK_YT_SEQ || mat->kind != POPK_YT_SEQ ||
        mat->n != names->n)
        goto done;
    int k = names->n, idx[64];
    if (k > 64 || !(cov = calloc((size_t)m->ntheta * (size_t)m->ntheta + 1, sizeof *cov)))
        goto done;
    for (int i = 0; i < k; i++) {
        idx[i] = -1;
        for (int t = 0; t < m->ntheta; t++)
            if (!strcmp(m->theta[t].name, names->item[i]->text))
                idx[i] = t;
        if (idx[i] < 0)
            goto bad;
    }
    for (int i = 0; i < k; i++) {
        const popk_yt_node *row = mat->item[i];
        if (row->kind != POPK_YT_SEQ || row->n != k)
            goto bad;
        for (int j = 0; j < k; j++) {
            char *e;
            double v = strtod(row->item[j]->text, &e);
            if (*e || !isfinite(v))
                goto bad;
            cov[idx[i] * m->ntheta + idx[j]] = v;
        }
    }
    goto done;
bad:
    free(cov);
    cov = NULL;
done:
    popk_yt_free(&doc);
    free(buf);
    return cov;
}

/* --- summaries ---------------------------------------------------------------------------- */

/* The k-th smallest of x[0..n) (0-based) moved to x[k], smaller values before it and larger
 * after (Hoare partitioning around a median of three): O(n), where sorting a million
 * metrics seven times took most of the summary's time. */
static void select_kth(double *x, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (hi > lo) {
        size_t mid = lo + (hi - lo) / 2;
        double a = x[lo], b = x[mid], c = x[hi];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        size_t i = lo, j = hi;
        for (;;) {
            while (x[i] < pivot)
                i++;
            while (x[j] > pivot)
                j--;
            if (i >= j)
                break;
            double t = x[i];
            x[i] = x[j];
            x[j] = t;
            i++;
            j--;
        }
        /* x[lo..j] <= pivot <= x[j+1..hi] */
        if (k <= j)
            hi = j;
        else
            lo = j + 1;
    }
}

/* Mean and type-7 quantiles of metric k over subjects (NaN excluded); p increasing. */
static void metric_summary(const popk_sim_result *r, int k, const double *p, int np,
                           double *mean, double *q, double *work)
{
    size_t nf = 0;
    double s = 0;
    for (long i = 0; i < r->n; i++) {
        double v = r->metric[(size_t)i * POPK_MET_N + (size_t)k];
        if (!isnan(v)) {
            work[nf++] = v;
            s += v;
        }
    }
    *mean = nf ? s / (double)nf : NAN;
    size_t from = 0; /* work[0..from) holds values <= every later one */
    for (int j = 0; j < np; j++) {
        if (!nf) {
            q[j] = NAN;
            continue;
        }
        double h = (double)(nf - 1) * p[j];
        size_t i = (size_t)floor(h);
        if (i < from)
            i = from; /* cannot happen with increasing p */
        select_kth(work + from, nf - from, i - from);
        double lo = work[i], hi = lo;
        if (i + 1 < nf) {
            hi = work[i + 1];
            for (size_t t = i + 2; t < nf; t++)
                if (work[t] < hi)
                    hi = work[t];
        }
        q[j] = i + 1 >= nf ? lo : lo + (h - (double)i) * (hi - lo);
        from = i;
    }
}

static const char *svg_colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                    "#8c564b", "#e377c2", "#17becf"};

/* Text inside an SVG element, with XML's special characters escaped. */
static void svg_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

/* Median and the outermost and inner quantile bands per profile, the target window. */
static void write_svg(FILE *f, popk_sim_result *const *res, char (*label)[128], int nprof,
                      const char *yname, const popk_target *tg, int ntg)
{
    const double W = 760, H = 440, L = 70, R = 20, T = 30, B = 50;
    double tmin = res[0]->times[0], tmax = res[0]->times[res[0]->ntimes - 1], ymax = 0;
    int nq = res[0]->nq;
    for (int p = 0; p < nprof; p++)
        for (size_t t = 0; t < res[p]->ntimes * (size_t)nq; t++)
            if (isfinite(res[p]->q[t]))
                ymax = fmax(ymax, res[p]->q[t]);
    for (int j = 0; j < ntg; j++)
        if (tg[j].metric == POPK_MET_TROUGH || tg[j].metric == POPK_MET_CMAX ||
            tg[j].metric == POPK_MET_TABOVE) {
            double v = tg[j].metric == POPK_MET_TABOVE ? tg[j].threshold
                       : isfinite(tg[j].hi) ? tg[j].hi : tg[j].lo;
            if (isfinite(v))
                ymax = fmax(ymax, v);
        }
    if (!(ymax > 0))
        ymax = 1;
    ymax *= 1.05;
    if (!(tmax > tmin))
        tmax = tmin + 1;
#define SX(t) (L + ((t) - tmin) / (tmax - tmin) * (W - L - R))
#define SY(y) (H - B - (y) / ymax * (H - T - B))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    for (int j = 0; j < ntg; j++) {
        const popk_target *t = &tg[j];
        if (t->metric == POPK_MET_TABOVE) {
            fprintf(f, "<line x1=\"%g\" x2=\"%g\" y1=\"%.2f\" y2=\"%.2f\" stroke=\"#888\" "
                       "stroke-dasharray=\"6,4\"/>\n", L, W - R, SY(t->threshold),
                    SY(t->threshold));
        } else if (t->metric == POPK_MET_TROUGH || t->metric == POPK_MET_CMAX) {
            double lo = isfinite(t->lo) ? fmax(t->lo, 0) : 0, hi = isfinite(t->hi) ? t->hi : ymax;
            fprintf(f, "<rect x=\"%g\" y=\"%.2f\" width=\"%g\" height=\"%.2f\" fill=\"#2ca02c\" "
                       "fill-opacity=\"0.12\"><title>", L, SY(fmin(hi, ymax)), W - L - R,
                    SY(lo) - SY(fmin(hi, ymax)));
            svg_text(f, t->text);
            fprintf(f, "</title></rect>\n");
        }
    }
    for (int p = 0; p < nprof; p++) {
        const popk_sim_result *r = res[p];
        const char *col = svg_colours[p % 8];
        /* bands between symmetric quantile pairs (j, nq-1-j) */
        for (int j = 0; j < nq / 2; j++) {
            fprintf(f, "<path fill=\"%s\" fill-opacity=\"%.2f\" stroke=\"none\" d=\"", col,
                    0.12 + 0.1 * j);
            for (size_t t = 0; t < r->ntimes; t++)
                fprintf(f, "%s%.2f,%.2f", t ? " L" : "M", SX(r->times[t]),
                        SY(fmax(0, r->q[t * (size_t)nq + (size_t)(nq - 1 - j)])));
            for (size_t t = r->ntimes; t-- > 0;)
                fprintf(f, " L%.2f,%.2f", SX(r->times[t]),
                        SY(fmax(0, r->q[t * (size_t)nq + (size_t)j])));
            fprintf(f, " Z\"/>\n");
        }
        int mid = -1;
        for (int j = 0; j < nq; j++)
            if (r->quantiles[j] == 0.5)
                mid = j;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"", col);
        for (size_t t = 0; t < r->ntimes; t++)
            fprintf(f, "%.2f,%.2f ", SX(r->times[t]),
                    SY(fmax(0, mid >= 0 ? r->q[t * (size_t)nq + (size_t)mid] : r->mean[t])));
        fprintf(f, "\"/>\n<text x=\"%g\" y=\"%g\" fill=\"%s\">", W - R - 200,
                T + 16.0 * (p + 1), col);
        svg_text(f, label[p]);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", L, H - B,
            W - R, H - B);
    fprintf(f, "<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", L, T, L,
            H - B);
    for (int i = 0; i <= 5; i++) {
        double tv = tmin + (tmax - tmin) * i / 5, yv = ymax * i / 5;
        fprintf(f, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%.4g</text>\n", SX(tv),
                H - B + 16, tv);
        fprintf(f, "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 6,
                SY(yv) + 4, yv);
    }
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">time (h)</text>\n",
            (L + W - R) / 2, H - 12);
    fprintf(f, "<text x=\"16\" y=\"%g\" transform=\"rotate(-90 16 %g)\" "
               "text-anchor=\"middle\">", (T + H - B) / 2, (T + H - B) / 2);
    svg_text(f, yname);
    fprintf(f, ": median and %g-%g%% band</text>\n</svg>\n", 100 * res[0]->quantiles[0],
            100 * res[0]->quantiles[nq - 1]);
#undef SX
#undef SY
}

/* --- the command -------------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

static int parse_long(const char *s, long *v)
{
    char *e;
    errno = 0;
    double d = strtod(s, &e);
    if (*e || e == s || !isfinite(d) || d != floor(d) || fabs(d) > 1e12)
        return -1;
    *v = (long)d;
    return 0;
}

int popk_cmd_sim(int argc, char **argv)
{
    const char *model_path = NULL, *regimen = NULL, *covs[8], *pop_path = NULL;
    const char *times_spec = NULL, *out_dir = "sim_out", *mode = "population";
    const char *qspec = "0.05,0.25,0.5,0.75,0.95", *by = NULL, *output = NULL;
    const char *targets[MAX_TARGETS];
    int ncovs = 0, ntargets = 0, residual = 0, uncertainty = 0, profiles = 0, quiet = 0;
    int sequential = 0, write_design = 0;
    long n = -1, seed = 1, threads = 0;
    double mic = NAN, threshold = NAN, template_id = NAN;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return POPK_EXIT_OK;
        } else if (!strcmp(a, "--regimen") && more) {
            regimen = argv[++i];
        } else if (!strcmp(a, "--covariates") && more && ncovs < 8) {
            covs[ncovs++] = argv[++i];
        } else if (!strcmp(a, "--population") && more) {
            pop_path = argv[++i];
        } else if (!strcmp(a, "--times") && more) {
            times_spec = argv[++i];
        } else if (!strcmp(a, "--out") && more) {
            out_dir = argv[++i];
        } else if (!strcmp(a, "--mode") && more) {
            mode = argv[++i];
        } else if (!strcmp(a, "--quantiles") && more) {
            qspec = argv[++i];
        } else if (!strcmp(a, "--by") && more) {
            by = argv[++i];
        } else if (!strcmp(a, "--output") && more) {
            output = argv[++i];
        } else if (!strcmp(a, "--target") && more && ntargets < MAX_TARGETS) {
            targets[ntargets++] = argv[++i];
        } else if ((!strcmp(a, "--n") || !strcmp(a, "--seed") || !strcmp(a, "--threads")) &&
                   more) {
            long v;
            if (parse_long(argv[++i], &v) != 0) {
                fprintf(stderr, "popk sim: %s: expected a whole number, found '%s'\n", a,
                        argv[i]);
                return POPK_EXIT_INPUT;
            }
            *(a[2] == 'n' ? &n : a[2] == 's' ? &seed : &threads) = v;
        } else if ((!strcmp(a, "--mic") || !strcmp(a, "--threshold") ||
                    !strcmp(a, "--template-id")) && more) {
            char *e;
            double v = strtod(argv[++i], &e);
            if (*e || e == argv[i] || !isfinite(v)) {
                fprintf(stderr, "popk sim: %s: expected a number, found '%s'\n", a, argv[i]);
                return POPK_EXIT_INPUT;
            }
            *(a[2] == 'm' ? &mic : a[3] == 'h' ? &threshold : &template_id) = v;
        } else if (!strcmp(a, "--residual")) {
            residual = 1;
        } else if (!strcmp(a, "--uncertainty")) {
            uncertainty = 1;
        } else if (!strcmp(a, "--profiles")) {
            profiles = 1;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--sequential")) {
            sequential = 1;
        } else if (!strcmp(a, "--write-design")) {
            write_design = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "popk sim: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return POPK_EXIT_INPUT;
        } else if (!model_path) {
            model_path = a;
        } else {
            fprintf(stderr, "popk sim: unexpected argument '%s'\n", a);
            return POPK_EXIT_INPUT;
        }
    }
    if (!model_path || !regimen) {
        usage(stderr);
        return POPK_EXIT_INPUT;
    }
    int typical = !strcmp(mode, "typical");
    if (!typical && strcmp(mode, "population") != 0) {
        fprintf(stderr, "popk sim: --mode: expected typical or population, found '%s'\n", mode);
        return POPK_EXIT_INPUT;
    }
    if (n == -1)
        n = typical && !uncertainty ? 1 : 1000;
    if (n <= 0) {
        fprintf(stderr, "popk sim: --n: the number of subjects must be positive, found %ld\n",
                n);
        return POPK_EXIT_INPUT;
    }
    if (typical && !uncertainty && n != 1) {
        fprintf(stderr, "popk sim: --mode typical simulates one subject (use --uncertainty to "
                        "draw thetas for n > 1)\n");
        return POPK_EXIT_INPUT;
    }
    if (profiles && n > 1000) {
        fprintf(stderr, "popk sim: --profiles is for n <= 1000\n");
        return POPK_EXIT_INPUT;
    }
    if (threads < 0 || threads > 1024) {
        fprintf(stderr, "popk sim: --threads: expected 0..1024\n");
        return POPK_EXIT_INPUT;
    }

    int rc = POPK_EXIT_INPUT;
    popk_error err;
    popk_error_clear(&err);
    popk_model *m = NULL;
    popk_regimen *reg = NULL;
    popk_data *tmpl = NULL;
    double *times = NULL, *theta_cov = NULL, *work = NULL;
    size_t nt = 0;
    popk_population pop = {0};
    popk_target tg[MAX_TARGETS];
    double quant[MAX_Q];
    int nq = 0, nprof = 1, out_index = 0;
    char prof_label[MAX_PROFILES][128], prof_spec[MAX_PROFILES][128];
    popk_sim_result *res[MAX_PROFILES] = {0};
    outdir od = {0};
    char by_name[64] = "";

    if (!(m = popk_model_load(model_path, &err)))
        goto report;
    if (output) {
        out_index = -1;
        for (int k = 0; k < m->nout; k++)
            if (!strcmp(m->out[k].name, output))
                out_index = k;
        if (out_index < 0) {
            fprintf(stderr, "popk sim: --output: the model has no output '%s'\n", output);
            goto done;
        }
    } else if (m->nout == 0) {
        fprintf(stderr, "popk sim: %s: the model has no outputs\n", model_path);
        goto done;
    }
    /* regimen: a YAML file, a dataset, or the human form */
    struct stat st;
    if (stat(regimen, &st) == 0 && S_ISREG(st.st_mode)) {
        if (ends_with(regimen, ".yaml") || ends_with(regimen, ".yml")) {
            reg = popk_regimen_load(regimen, m, &err);
        } else {
            if ((tmpl = popk_data_read(regimen, &err)))
                reg = popk_regimen_from_data(tmpl, template_id, &err);
        }
    } else {
        reg = popk_regimen_parse(regimen, m, &err);
    }
    if (!reg)
        goto report;
    times = times_spec ? popk_sim_parse_times(times_spec, &nt, &err)
                       : popk_sim_default_times(reg, &nt);
    if (!times)
        goto report;
    for (const char *p = qspec; *p;) {
        char *e;
        double v = strtod(p, &e);
        if (e == p || !(v > 0 && v < 1) || nq == MAX_Q || (nq && v <= quant[nq - 1])) {
            fprintf(stderr, "popk sim: --quantiles: expected increasing probabilities in "
                            "(0, 1), at most %d\n", MAX_Q);
            goto done;
        }
        quant[nq++] = v;
        p = *e == ',' ? e + 1 : e;
        if (*e && *e != ',') {
            fprintf(stderr, "popk sim: --quantiles: expected a comma-separated list\n");
            goto done;
        }
    }
    if (nq == 0) {
        fprintf(stderr, "popk sim: --quantiles: give at least one probability\n");
        goto done;
    }
    for (int j = 0; j < ntargets; j++)
        if (popk_target_parse(&tg[j], targets[j], mic, &err) != POPK_OK)
            goto report;
    pop.ncov = m->ncov;
    pop.sequential = sequential;
    if (!(pop.dist = calloc((size_t)m->ncov + 1, sizeof *pop.dist)))
        goto done;
    if (pop_path && popk_population_read(&pop, m, pop_path, &err) != POPK_OK)
        goto report;
    for (int j = 0; j < ncovs; j++)
        if (popk_population_parse(&pop, m, covs[j], &err) != POPK_OK)
            goto report;
    if (uncertainty) {
        if (!(theta_cov = read_theta_cov(model_path, m))) {
            fprintf(stderr, "popk sim: --uncertainty: %s has no theta covariance (fit: "
                            "covariance: theta_covariance); run popk fit with a covariance "
                            "step\n", model_path);
            goto done;
        }
    }
    /* profiles: --by COV=A,B,C */
    snprintf(prof_label[0], sizeof prof_label[0], "all");
    prof_spec[0][0] = '\0';
    if (by) {
        const char *eq = strchr(by, '=');
        if (!eq || eq == by || (size_t)(eq - by) >= sizeof by_name || !eq[1]) {
            fprintf(stderr, "popk sim: --by: expected COV=A,B,C\n");
            goto done;
        }
        snprintf(by_name, sizeof by_name, "%.*s", (int)(eq - by), by);
        nprof = 0;
        for (const char *p = eq + 1; *p;) {
            size_t l = strcspn(p, ",");
            if (nprof == MAX_PROFILES || l == 0 || l > 100) {
                fprintf(stderr, "popk sim: --by: 1 to %d non-empty values\n", MAX_PROFILES);
                goto done;
            }
            snprintf(prof_label[nprof], sizeof prof_label[0], "%s=%.*s", by_name, (int)l, p);
            memcpy(prof_spec[nprof], prof_label[nprof], sizeof prof_spec[0]);
            /* validate now, so that bad input never reaches the output directory */
            popk_population probe = pop;
            popk_covdist tmp[64];
            if (m->ncov > 64)
                goto done;
            memcpy(tmp, pop.dist, sizeof *tmp * (size_t)m->ncov);
            probe.dist = tmp;
            if (popk_population_parse(&probe, m, prof_spec[nprof], &err) != POPK_OK) {
                err.column = 0;
                snprintf(err.file, sizeof err.file, "--by");
                goto report;
            }
            nprof++;
            p += l;
            if (*p == ',')
                p++;
        }
    }
    {
        popk_population probe = pop;
        popk_covdist tmp[64];
        memcpy(tmp, pop.dist, sizeof *tmp * (size_t)(m->ncov < 64 ? m->ncov : 64));
        probe.dist = tmp;
        if (nprof > 1 || by)
            popk_population_parse(&probe, m, prof_spec[0], &err);
        if (popk_population_check(&probe, m, &err) != POPK_OK)
            goto report;
    }
    if (outdir_open(&od, out_dir) != 0)
        goto done;

    progress_state ps = {.quiet = quiet, .n = n};
    clock_gettime(CLOCK_MONOTONIC, &ps.start);
    popk_sim_options opt = {.seed = (uint64_t)seed, .n = n, .nthreads = (int)threads,
                            .iiv = !typical, .residual = residual, .theta_cov = theta_cov,
                            .output = out_index, .nq = nq, .quantiles = quant,
                            .threshold = threshold, .ntarget = ntargets, .target = tg,
                            .keep_profiles = profiles, .progress = on_progress,
                            .progress_user = &ps};
    for (int p = 0; p < nprof; p++) {
        popk_covdist saved[64];
        memcpy(saved, pop.dist, sizeof *saved * (size_t)(m->ncov < 64 ? m->ncov : 64));
        if (by)
            popk_population_parse(&pop, m, prof_spec[p], &err);
        char lab[160];
        snprintf(lab, sizeof lab, "%s%s", by ? prof_label[p] : "", by ? ": " : "");
        ps.label = lab;
        res[p] = popk_sim_run(m, reg, &pop, times, nt, &opt, &err);
        memcpy(pop.dist, saved, sizeof *saved * (size_t)(m->ncov < 64 ? m->ncov : 64));
        if (!res[p]) {
            if (ps.shown)
                fputc('\n', stderr);
            popk_cli_report(&err);
            rc = err.code == POPK_ERR_ARG ? POPK_EXIT_INPUT : POPK_EXIT_FAILURE;
            goto done;
        }
    }
    if (ps.shown)
        fputc('\n', stderr);

    /* --- outputs --- */
    rc = POPK_EXIT_FAILURE;
    const char *yname = m->out[out_index].name;
    FILE *f = outdir_file(&od, "percentiles.csv");
    if (!f)
        goto io_fail;
    fprintf(f, "profile,time,n,mean");
    for (int j = 0; j < nq; j++)
        fprintf(f, ",P%g", 100 * quant[j]);
    fputc('\n', f);
    for (int p = 0; p < nprof; p++)
        for (size_t t = 0; t < nt; t++) {
            fprintf(f, "%s,%.10g,%ld,%.10g", prof_label[p], times[t], n, res[p]->mean[t]);
            for (int j = 0; j < nq; j++)
                fprintf(f, ",%.10g", res[p]->q[t * (size_t)nq + (size_t)j]);
            fputc('\n', f);
        }
    if (close_checked(f, "percentiles.csv"))
        goto io_fail;

    if (n <= 100000) {
        if (!(f = outdir_file(&od, "metrics.csv")))
            goto io_fail;
        fprintf(f, "profile,subject");
        for (int k = 0; k < m->ncov; k++)
            fprintf(f, ",%s", m->cov[k].name);
        for (int k = 0; k < POPK_MET_N; k++)
            fprintf(f, ",%s", popk_metric_names[k]);
        for (int j = 0; j < ntargets; j++)
            fprintf(f, ",target%d", j + 1);
        fputc('\n', f);
        for (int p = 0; p < nprof; p++)
            for (long s = 0; s < n; s++) {
                fprintf(f, "%s,%ld", prof_label[p], s + 1);
                for (int k = 0; k < m->ncov; k++) {
                    double v = res[p]->cov[(size_t)s * (size_t)m->ncov + (size_t)k];
                    const popk_covdef *cv = &m->cov[k];
                    const char *lv = NULL;
                    for (int l = 0; cv->kind == POPK_COVDEF_CATEGORICAL && l < cv->nlevels; l++)
                        if (cv->codes[l] == v)
                            lv = cv->levels[l];
                    if (lv)
                        fprintf(f, ",%s", lv);
                    else
                        fprintf(f, ",%.6g", v);
                }
                for (int k = 0; k < POPK_MET_N; k++)
                    fprintf(f, ",%.8g", res[p]->metric[(size_t)s * POPK_MET_N + (size_t)k]);
                for (int j = 0; j < ntargets; j++)
                    fprintf(f, ",%d", res[p]->pass[(size_t)s * (size_t)(ntargets + 1) + (size_t)j]);
                fputc('\n', f);
            }
        if (close_checked(f, "metrics.csv"))
            goto io_fail;
    }
    if (profiles) {
        if (!(f = outdir_file(&od, "profiles.csv")))
            goto io_fail;
        fprintf(f, "profile,subject,time,%s\n", yname);
        for (int p = 0; p < nprof; p++)
            for (long s = 0; s < n; s++)
                for (size_t t = 0; t < nt; t++)
                    fprintf(f, "%s,%ld,%.10g,%.10g\n", prof_label[p], s + 1, times[t],
                            res[p]->profile[(size_t)s * nt + t]);
        if (close_checked(f, "profiles.csv"))
            goto io_fail;
    }
    /* summary: metric distributions and PTA per profile */
    static const double sq[] = {0.05, 0.5, 0.95};
    double msum[MAX_PROFILES][POPK_MET_N][4];
    if (!(work = malloc(sizeof(double) * (size_t)n)))
        goto io_fail;
    for (int p = 0; p < nprof; p++)
        for (int k = 0; k < POPK_MET_N; k++)
            metric_summary(res[p], k, sq, 3, &msum[p][k][0], &msum[p][k][1], work);
    if (!(f = outdir_file(&od, "summary.csv")))
        goto io_fail;
    fprintf(f, "profile,quantity,mean,P5,P50,P95\n");
    for (int p = 0; p < nprof; p++) {
        for (int k = 0; k < POPK_MET_N; k++)
            fprintf(f, "%s,%s,%.8g,%.8g,%.8g,%.8g\n", prof_label[p], popk_metric_names[k],
                    msum[p][k][0], msum[p][k][1], msum[p][k][2], msum[p][k][3]);
        for (int j = 0; j < ntargets; j++)
            fprintf(f, "%s,\"PTA %s\",%.6g,,,\n", prof_label[p], tg[j].text, res[p]->pta[j]);
        if (ntargets > 1)
            fprintf(f, "%s,PTA all targets,%.6g,,,\n", prof_label[p], res[p]->pta[ntargets]);
    }
    if (close_checked(f, "summary.csv"))
        goto io_fail;

    FILE *outs[2] = {outdir_file(&od, "summary.txt"), stdout};
    if (!outs[0])
        goto io_fail;
    for (int w = 0; w < 2; w++) {
        FILE *g = outs[w];
        fprintf(g, "popk sim: %s, %ld subject%s%s%s%s, seed %ld\n", m->name ? m->name : model_path,
                n, n == 1 ? "" : "s", typical ? ", typical patient" : ", population",
                residual ? " with residual error" : "", uncertainty ? ", parameter uncertainty" : "",
                seed);
        fprintf(g, "regimen: %s (%zu doses; last at %g h, interval %g h)\n", regimen,
                reg->ndose, reg->t_last, reg->tau);
        fprintf(g, "output: %s; times %g to %g h (%zu points); percentiles %s\n", yname,
                times[0], times[nt - 1], nt, res[0]->exact ? "exact" : "from a sketch "
                "(relative error < 0.1% above 1e-6 of the typical peak)");
        fprintf(g, "medians (5th-95th percentile):\n%-22s", "profile");
        static const int show[] = {POPK_MET_CMAX, POPK_MET_TROUGH, POPK_MET_AUCTAU,
                                   POPK_MET_AUC24};
        for (int k = 0; k < 4; k++)
            fprintf(g, " %-24s", popk_metric_names[show[k]]);
        for (int j = 0; j < ntargets; j++)
            fprintf(g, " PTA%% %-13s", tg[j].text);
        fputc('\n', g);
        for (int p = 0; p < nprof; p++) {
            fprintf(g, "%-22s", prof_label[p]);
            for (int k = 0; k < 4; k++) {
                char cell[64];
                const double *v = msum[p][show[k]];
                if (isnan(v[2]))
                    snprintf(cell, sizeof cell, "-");
                else
                    snprintf(cell, sizeof cell, "%.4g (%.4g-%.4g)", v[2], v[1], v[3]);
                fprintf(g, " %-24s", cell);
            }
            for (int j = 0; j < ntargets; j++)
                fprintf(g, " %-18.1f", 100 * res[p]->pta[j]);
            fputc('\n', g);
        }
    }
    if (close_checked(outs[0], "summary.txt"))
        goto io_fail;
    if (!(f = outdir_file(&od, "plot.svg")))
        goto io_fail;
    write_svg(f, res, prof_label, nprof, yname, tg, ntargets);
    if (close_checked(f, "plot.svg"))
        goto io_fail;
    if (write_design) {
        if (!(f = outdir_file(&od, "design.csv")))
            goto io_fail;
        /* the first subject's covariates (all subjects' in typical mode) */
        char covtext[2048] = "";
        for (int k = 0; k < m->ncov; k++) {
            double v = res[0]->cov[k];
            const popk_covdef *cv = &m->cov[k];
            const char *lv = NULL;
            for (int l = 0; cv->kind == POPK_COVDEF_CATEGORICAL && l < cv->nlevels; l++)
                if (cv->codes[l] == v)
                    lv = cv->levels[l];
            size_t len = strlen(covtext);
            if (lv)
                snprintf(covtext + len, sizeof covtext - len, ",%s", lv);
            else
                snprintf(covtext + len, sizeof covtext - len, ",%.17g", v);
        }
        fprintf(f, "ID,TIME,AMT,RATE,EVID,CMT,MDV,DV");
        for (int k = 0; k < m->ncov; k++)
            fprintf(f, ",%s", m->cov[k].name);
        fputc('\n', f);
        size_t di = 0;
        for (size_t t = 0; t <= nt; t++) {
            while (di < reg->ndose && (t == nt || reg->dose[di].time <= times[t])) {
                const popk_record *d = &reg->dose[di++];
                fprintf(f, "1,%.17g,%.17g,%.17g,1,%d,1,.%s\n", d->time, d->amt, d->rate,
                        d->cmt, covtext);
            }
            if (t < nt)
                fprintf(f, "1,%.17g,0,0,2,0,1,.%s\n", times[t], covtext);
        }
        if (close_checked(f, "design.csv"))
            goto io_fail;
    }
    if (outdir_commit(&od) != 0)
        goto done;
    rc = POPK_EXIT_OK;
    goto done;
io_fail:
    fprintf(stderr, "popk sim: cannot write the outputs in %s\n", out_dir);
    goto done;
report:
    popk_cli_report(&err);
done:
    outdir_abort(&od);
    for (int p = 0; p < MAX_PROFILES; p++)
        popk_sim_result_free(res[p]);
    free(work);
    free(times);
    free(theta_cov);
    free(pop.dist);
    free(pop.table);
    popk_regimen_free(reg);
    popk_data_free(tmpl);
    popk_model_free(m);
    return rc;
}
