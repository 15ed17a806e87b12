/* cli/cmd_map.c — 'popk map': one patient's Bayesian estimate and dose recommendation, as a
 * plain-language summary, JSON (--json) and an SVG plot (--out). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "map/map.h"
#include "util/atomic.h"
#include "util/error.h"

#define MAX_LIST 32
#define CURVE_POINTS 241

static void usage(FILE *out)
{
    fprintf(out,
            "usage: popk map MODEL PATIENT.csv [options]\n\n"
            "Estimates this patient's parameters from past doses and measured levels (MAP,\n"
            "with the model's parameters as the prior) and recommends a regimen.\n"
            "  --covariates K=V,...  covariate values (replace or fill in the file's)\n"
            "  --id ID               subject of the file to use (default: the first)\n"
            "  --target T            auc24=LO-HI, trough=LO-HI, peak=LO-HI or tmic=MIC:FRACTION\n"
            "                        (or as popk sim writes them: \"AUC24 in 400..600\")\n"
            "                        (at steady state, or with --on-day N over day N of the new\n"
            "                        regimen)\n"
            "  --on-day N            evaluate the target on day N instead of at steady state\n"
            "  --strengths LIST      candidate doses, e.g. 500,750,1000,1250\n"
            "  --intervals LIST      candidate intervals in h (default 8,12,24)\n"
            "  --durations LIST      infusion durations in h (default: the last dose's)\n"
            "  --loading             also propose a loading dose\n"
            "  --dose-range LO,HI    dose range the model was built on (warns outside it)\n"
            "  --samples N           posterior draws for bands and probabilities (500)\n"
            "  --pta M               target attainment by 'sample' (posterior draws) or 'delta'\n"
            "                        (log-normal, exact gradients); default: delta for ODE models\n"
            "  --seed S              random seed for those draws\n"
            "  --days D              days of the recommended regimen to plot (3)\n"
            "  --json                print JSON instead of the summary\n"
            "  --out DIR             write summary.txt, map.json and map.svg into DIR\n"
            "Exit status: 0 ok, 2 bad input, 1 other failure.\n");
}

static int parse_list(const char *text, double *v, int max)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        if (n == max)
            return -1;
        v[n] = strtod(p, &end);
        if (end == p || (*end && *end != ','))
            return -1;
        n++;
        p = *end ? end + 1 : end;
    }
    return n;
}

typedef struct {
    popk_map *mp;
    const popk_model *m;
    const char *patient;
    int have_target;
    popk_map_target target;
    popk_map_regimen *reg;
    int nreg;
    double loading, start;
    int ncurve;
    double t[CURVE_POINTS], ipred[CURVE_POINTS], lo[CURVE_POINTS], hi[CURVE_POINTS];
} report;

static void describe_regimen(FILE *f, const popk_map_regimen *r)
{
    fprintf(f, "%g mg every %g h", r->dose, r->interval);
    if (r->duration > 0)
        fprintf(f, ", infused over %g h", r->duration);
}

static void write_summary(FILE *f, const report *rp)
{
    const popk_map *mp = rp->mp;
    const popk_model *m = rp->m;
    const popk_map_obs *obs = popk_map_observations(mp);
    int nobs = popk_map_nobs(mp), nblq = 0;
    for (int j = 0; j < nobs; j++)
        nblq += !isnan(obs[j].lloq);
    fprintf(f, "Patient %g, model %s", popk_map_patient_id(mp), m->name ? m->name : "?");
    if (m->reference)
        fprintf(f, " (%s)", m->reference);
    fprintf(f, "\n\n");
    if (nobs == 0)
        fprintf(f, "No measured levels: these are the population values for this patient's "
                   "covariates (a-priori dosing).\n");
    else
        fprintf(f, "%d measured level%s (%d below the limit of quantification) combined with "
                   "the population model%s.\n", nobs, nobs == 1 ? "" : "s", nblq,
                popk_map_converged(mp) ? "" : " - the estimate DID NOT CONVERGE");
    fprintf(f, "\nThis patient's parameters (95%% credible interval; population value for "
               "these covariates):\n");
    for (int k = 0; k < popk_map_nparams(mp); k++) {
        const popk_map_param *p = &popk_map_params(mp)[k];
        fprintf(f, "  %-8s %10.4g  (%.4g to %.4g)   population %.4g\n", p->name, p->value,
                p->lo95, p->hi95, p->typical);
    }
    if (nobs > 0) {
        fprintf(f, "\nMeasured and predicted levels:\n");
        fprintf(f, "  %8s %10s %10s %10s %8s\n", "time(h)", "measured", "patient", "population",
                "IWRES");
        for (int j = 0; j < nobs; j++) {
            if (isnan(obs[j].lloq))
                fprintf(f, "  %8g %10.4g %10.4g %10.4g %8.2f\n", obs[j].time, obs[j].dv,
                        obs[j].ipred, obs[j].pred, obs[j].iwres);
            else
                fprintf(f, "  %8g   <%-7.4g %10.4g %10.4g %8s\n", obs[j].time, obs[j].lloq,
                        obs[j].ipred, obs[j].pred, "BLQ");
        }
    }
    if (rp->have_target && rp->nreg > 0) {
        const popk_map_target *t = &rp->target;
        const popk_map_regimen *r = &rp->reg[0];
        fprintf(f, "\nTarget: ");
        if (t->kind == POPK_TARGET_TMIC)
            fprintf(f, "concentration above %g for at least %.0f%% of the interval", t->mic,
                    100 * t->lo);
        else
            fprintf(f, "%s %g-%g", popk_target_name(t->kind), t->lo, t->hi);
        if (t->day > 0)
            fprintf(f, " on day %d of the new regimen.\n\nRecommended: ", t->day);
        else
            fprintf(f, " at steady state.\n\nRecommended: ");
        describe_regimen(f, r);
        fprintf(f, ", starting at time %g h.\n", rp->start);
        fprintf(f, "  predicted trough %.3g (90%% CI %.3g-%.3g), peak %.3g, AUC24 %.4g (90%% CI "
                   "%.4g-%.4g)", r->trough, r->trough_lo, r->trough_hi, r->peak, r->auc24,
                r->auc_lo, r->auc_hi);
        if (t->kind == POPK_TARGET_TMIC)
            fprintf(f, ", time above MIC %.0f%%", 100 * r->tmic);
        fprintf(f, "\n");
        fprintf(f, "  probability that this patient reaches the target: %.0f%%\n", 100 * r->pta);
        if (!isnan(rp->loading))
            fprintf(f, "  loading dose: %g mg as the first dose\n", rp->loading);
        fprintf(f, "\nAll candidates, best first:\n");
        fprintf(f, "  %7s %8s %8s %9s %9s %9s %9s\n", "dose", "every(h)", "over(h)", "trough",
                "peak", "AUC24", "P(target)");
        for (int k = 0; k < rp->nreg; k++) {
            const popk_map_regimen *x = &rp->reg[k];
            fprintf(f, "  %7g %8g %8g %9.3g %9.3g %9.4g %8.0f%%%s\n", x->dose, x->interval,
                    x->duration, x->trough, x->peak, x->auc24, 100 * x->pta,
                    x->outside_range ? "  (outside studied doses)" : "");
        }
    }
    int nw = popk_map_nwarnings(mp);
    if (nw) {
        fprintf(f, "\nWarnings:\n");
        for (int k = 0; k < nw; k++)
            fprintf(f, "  - %s\n", popk_map_warning(mp, k));
    }
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_number(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.10g", v);
    else
        fprintf(f, "null");
}

static void write_json(FILE *f, const report *rp)
{
    const popk_map *mp = rp->mp;
    const popk_model *m = rp->m;
    int q = m->neta;
    fprintf(f, "{\n  \"patient\": ");
    json_number(f, popk_map_patient_id(mp));
    fprintf(f, ",\n  \"model\": ");
    json_string(f, m->name);
    fprintf(f, ",\n  \"converged\": %s,\n  \"m3\": %s,\n  \"objective\": ",
            popk_map_converged(mp) ? "true" : "false", popk_map_used_m3(mp) ? "true" : "false");
    json_number(f, popk_map_objective(mp));
    fprintf(f, ",\n  \"eta\": {");
    for (int a = 0; a < q; a++) {
        fprintf(f, "%s", a ? ", " : "");
        json_string(f, m->eta_name[a]);
        fprintf(f, ": ");
        json_number(f, popk_map_eta(mp)[a]);
    }
    fprintf(f, "},\n  \"eta_cov\": [");
    for (int a = 0; a < q * q; a++) {
        fprintf(f, "%s", a ? ", " : "");
        json_number(f, popk_map_eta_cov(mp)[a]);
    }
    fprintf(f, "],\n  \"parameters\": [");
    for (int k = 0; k < popk_map_nparams(mp); k++) {
        const popk_map_param *p = &popk_map_params(mp)[k];
        fprintf(f, "%s\n    {\"name\": ", k ? "," : "");
        json_string(f, p->name);
        fprintf(f, ", \"value\": ");
        json_number(f, p->value);
        fprintf(f, ", \"lo95\": ");
        json_number(f, p->lo95);
        fprintf(f, ", \"hi95\": ");
        json_number(f, p->hi95);
        fprintf(f, ", \"population\": ");
        json_number(f, p->typical);
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"observations\": [");
    for (int j = 0; j < popk_map_nobs(mp); j++) {
        const popk_map_obs *o = &popk_map_observations(mp)[j];
        fprintf(f, "%s\n    {\"time\": ", j ? "," : "");
        json_number(f, o->time);
        fprintf(f, ", \"dv\": ");
        json_number(f, o->dv);
        fprintf(f, ", \"lloq\": ");
        json_number(f, o->lloq);
        fprintf(f, ", \"pred\": ");
        json_number(f, o->pred);
        fprintf(f, ", \"ipred\": ");
        json_number(f, o->ipred);
        fprintf(f, ", \"iwres\": ");
        json_number(f, o->iwres);
        fprintf(f, ", \"line\": %d}", o->line);
    }
    fprintf(f, "\n  ],\n  \"recommendations\": [");
    for (int k = 0; k < rp->nreg; k++) {
        const popk_map_regimen *r = &rp->reg[k];
        fprintf(f, "%s\n    {\"dose\": ", k ? "," : "");
        json_number(f, r->dose);
        fprintf(f, ", \"interval\": ");
        json_number(f, r->interval);
        fprintf(f, ", \"duration\": ");
        json_number(f, r->duration);
        fprintf(f, ", \"trough\": ");
        json_number(f, r->trough);
        fprintf(f, ", \"trough_ci90\": [");
        json_number(f, r->trough_lo);
        fprintf(f, ", ");
        json_number(f, r->trough_hi);
        fprintf(f, "], \"peak\": ");
        json_number(f, r->peak);
        fprintf(f, ", \"auc24\": ");
        json_number(f, r->auc24);
        fprintf(f, ", \"auc24_ci90\": [");
        json_number(f, r->auc_lo);
        fprintf(f, ", ");
        json_number(f, r->auc_hi);
        fprintf(f, "], \"time_above_mic\": ");
        json_number(f, r->tmic);
        fprintf(f, ", \"pta\": ");
        json_number(f, r->pta);
        fprintf(f, ", \"pta_method\": \"%s\"", r->delta ? "delta" : "sample");
        fprintf(f, ", \"outside_dose_range\": %s}", r->outside_range ? "true" : "false");
    }
    fprintf(f, "\n  ],\n  \"loading_dose\": ");
    json_number(f, rp->loading);
    fprintf(f, ",\n  \"target_day\": %d", rp->have_target ? rp->target.day : 0);
    fprintf(f, ",\n  \"start\": ");
    json_number(f, rp->start);
    /* the predicted curve with its 90% credible band (history and recommended regimen) */
    const char *const cname[] = {"time", "ipred", "lo90", "hi90"};
    const double *const cval[] = {rp->t, rp->ipred, rp->lo, rp->hi};
    fprintf(f, ",\n  \"curve\": {");
    for (int k = 0; k < 4; k++) {
        fprintf(f, "%s\"%s\": [", k ? ", " : "", cname[k]);
        for (int j = 0; j < rp->ncurve; j++) {
            fprintf(f, "%s", j ? ", " : "");
            json_number(f, cval[k][j]);
        }
        fprintf(f, "]");
    }
    fprintf(f, "}");
    fprintf(f, ",\n  \"warnings\": [");
    for (int k = 0; k < popk_map_nwarnings(mp); k++) {
        fprintf(f, "%s\n    ", k ? "," : "");
        json_string(f, popk_map_warning(mp, k));
    }
    fprintf(f, "%s]\n}\n", popk_map_nwarnings(mp) ? "\n  " : "");
}

/* Tick step for an axis from 0 to x with at most about 6 ticks: 1, 2 or 5 times a power of
 * ten, or for hours (hours != 0) a multiple of 6, 12 or 24 h when that is larger. */
static double tick_step(double x, int hours)
{
    if (!(x > 0))
        return 1.0;
    if (hours && x > 24) {
        static const double steps[] = {6, 12, 24, 48, 72, 168, 336, 672};
        for (size_t k = 0; k < sizeof steps / sizeof *steps; k++)
            if (x / steps[k] <= 6)
                return steps[k];
    }
    double p = pow(10.0, floor(log10(x / 6)));
    static const double mult[] = {1, 2, 5, 10};
    for (int k = 0; k < 4; k++)
        if (x / (mult[k] * p) <= 6)
            return mult[k] * p;
    return 10 * p;
}

static void write_svg(FILE *f, const report *rp)
{
    const popk_map *mp = rp->mp;
    const double W = 800, H = 460, L = 70, R = 20, T = 40, B = 55;
    int n = rp->ncurve;
    double tmax = rp->t[n - 1], cmax = 0;
    for (int j = 0; j < n; j++)
        cmax = fmax(cmax, fmax(rp->hi[j], rp->ipred[j]));
    for (int j = 0; j < popk_map_nobs(mp); j++)
        cmax = fmax(cmax, popk_map_observations(mp)[j].dv);
    if (rp->have_target && rp->target.kind != POPK_TARGET_AUC24 &&
        rp->target.kind != POPK_TARGET_TMIC)
        cmax = fmax(cmax, rp->target.hi);
    double cstep = tick_step(cmax * 1.02, 0), tstep = tick_step(tmax, 1);
    int cticks = (int)ceil(cmax * 1.02 / cstep), tticks = (int)ceil(tmax / tstep - 1e-9);
    cmax = cticks * cstep;
    tmax = tticks * tstep;
#define X(t) (L + (W - L - R) * (t) / tmax)
#define Y(c) (H - B - (H - T - B) * (c) / cmax)
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
               "viewBox=\"0 0 %g %g\" font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%g\" y=\"22\" font-size=\"15\">Patient %g (%s): levels, individual "
               "prediction and 90%% credible band</text>\n", L, popk_map_patient_id(mp),
            rp->m->name ? rp->m->name : "");
    if (rp->have_target && rp->nreg > 0) {
        double x0 = X(rp->start);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" stroke=\"#888\" "
                   "stroke-dasharray=\"4,3\"/>\n", x0, T, x0, H - B);
        fprintf(f, "<text x=\"%.1f\" y=\"%g\" fill=\"#555\">recommended: %g mg q%gh</text>\n",
                x0 + 4, T + 12, rp->reg[0].dose, rp->reg[0].interval);
        const popk_map_target *t = &rp->target;
        if (t->kind == POPK_TARGET_TROUGH || t->kind == POPK_TARGET_PEAK)
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                       "fill=\"#2a2\" fill-opacity=\"0.15\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
                       "fill=\"#272\">target %s %g-%g</text>\n",
                    x0, Y(t->hi), X(tmax) - x0, Y(t->lo) - Y(t->hi), x0 + 4, Y(t->hi) - 4,
                    popk_target_name(t->kind), t->lo, t->hi);
        else if (t->kind == POPK_TARGET_TMIC)
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#272\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" fill=\"#272\">MIC %g</text>\n",
                    x0, Y(t->mic), X(tmax), Y(t->mic), x0 + 4, Y(t->mic) - 4, t->mic);
        else
            fprintf(f, "<text x=\"%.1f\" y=\"%g\" fill=\"#272\">target AUC24 %g-%g "
                       "(predicted %.0f, P = %.0f%%)</text>\n", x0 + 4, T + 26, t->lo, t->hi,
                    rp->reg[0].auc24, 100 * rp->reg[0].pta);
    }
    fprintf(f, "<polygon fill=\"#36c\" fill-opacity=\"0.2\" stroke=\"none\" points=\"");
    for (int j = 0; j < n; j++)
        fprintf(f, "%.1f,%.1f ", X(rp->t[j]), Y(rp->hi[j]));
    for (int j = n - 1; j >= 0; j--)
        fprintf(f, "%.1f,%.1f ", X(rp->t[j]), Y(rp->lo[j]));
    fprintf(f, "\"/>\n<polyline fill=\"none\" stroke=\"#36c\" stroke-width=\"2\" points=\"");
    for (int j = 0; j < n; j++)
        fprintf(f, "%.1f,%.1f ", X(rp->t[j]), Y(rp->ipred[j]));
    fprintf(f, "\"/>\n");
    for (int j = 0; j < popk_map_nobs(mp); j++) {
        const popk_map_obs *o = &popk_map_observations(mp)[j];
        if (isnan(o->lloq))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#c33\"/>\n", X(o->time),
                    Y(o->dv));
        else
            fprintf(f, "<path d=\"M%.1f %.1f l-5 -9 h10 z\" fill=\"none\" stroke=\"#c33\"/>\n",
                    X(o->time), Y(o->lloq));
    }
    /* axes with ticks */
    fprintf(f, "<path d=\"M%g %g V%g H%g\" fill=\"none\" stroke=\"black\"/>\n", L, T, H - B, W - R);
    for (int k = 0; k <= cticks; k++)
        fprintf(f, "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L - 6,
                Y(k * cstep) + 4, k * cstep);
    for (int k = 0; k <= tticks; k++)
        fprintf(f, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%g</text>\n",
                X(k * tstep), H - B + 18, k * tstep);
    fprintf(f, "<text x=\"%g\" y=\"%g\">time (h)</text>\n", L, H - 12);
    fprintf(f, "<text transform=\"translate(18,%g) rotate(-90)\" text-anchor=\"middle\">"
               "concentration</text>\n", (T + H - B) / 2);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\"><tspan fill=\"#c33\">&#9679; "
               "measured  &#9651; below LLOQ</tspan>   <tspan fill=\"#36c\">&#8212; individual "
               "prediction, shaded: 90%% credible band</tspan></text>\n", W - R, H - 12);
    fprintf(f, "</svg>\n");
#undef X
#undef Y
}

typedef void (*writer_fn)(FILE *, const report *);

static int write_file(const char *dir, const char *name, writer_fn fn, const report *rp)
{
    char path[4096];
    popk_error err;
    popk_error_clear(&err);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    popk_atomic_file af;
    if (popk_atomic_open(&af, path, &err) != POPK_OK) {
        popk_cli_report(&err);
        return -1;
    }
    fn(af.fp, rp);
    if (popk_atomic_commit(&af, &err) != POPK_OK) {
        popk_cli_report(&err);
        return -1;
    }
    return 0;
}

int popk_cmd_map(int argc, char **argv)
{
    const char *model_path = NULL, *data_path = NULL, *out_dir = NULL, *target_text = NULL;
    double strengths[MAX_LIST], intervals[MAX_LIST] = {8, 12, 24}, durations[MAX_LIST];
    int nstr = 0, nint = 3, ndur = -1, loading = 0, json = 0;
    double days = 3;
    int on_day = 0;
    char *cov_buf = NULL;
    const char *cov_name[MAX_LIST], *cov_value[MAX_LIST];
    popk_map_options opt;
    popk_map_options_default(&opt);
    int rc = POPK_EXIT_INPUT;
    popk_model *m = NULL;
    popk_data *d = NULL;
    report rp;
    memset(&rp, 0, sizeof rp);
    rp.loading = NAN;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return POPK_EXIT_OK;
        } else if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--loading"))
            loading = 1;
        else if (a[0] == '-' && a[1] == '-' && !has_val) {
            fprintf(stderr, "popk map: %s needs a value\n", a);
            goto bad_usage;
        } else if (!strcmp(a, "--on-day")) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end || v < 1 || v > 365) {
                fprintf(stderr, "popk map: --on-day: expected a day number 1-365, got '%s'\n",
                        argv[i]);
                goto bad_usage;
            }
            on_day = (int)v;
        } else if (!strcmp(a, "--pta")) {
            const char *v = argv[++i];
            if (!strcmp(v, "sample"))
                opt.pta = POPK_PTA_SAMPLE;
            else if (!strcmp(v, "delta"))
                opt.pta = POPK_PTA_DELTA;
            else {
                fprintf(stderr, "popk map: --pta: expected sample or delta, got '%s'\n", v);
                goto bad_usage;
            }
        } else if (!strcmp(a, "--out"))
            out_dir = argv[++i];
        else if (!strcmp(a, "--target"))
            target_text = argv[++i];
        else if (!strcmp(a, "--strengths") || !strcmp(a, "--intervals") ||
                 !strcmp(a, "--durations") || !strcmp(a, "--dose-range")) {
            double *v = a[2] == 's' ? strengths : a[2] == 'i' ? intervals : durations;
            double range[MAX_LIST];
            int n = parse_list(argv[++i], a[3] == 'o' ? range : v, MAX_LIST);
            if (n <= 0) {
                fprintf(stderr, "popk map: %s: expected numbers separated by commas, got '%s'\n",
                        a, argv[i]);
                goto bad_usage;
            }
            if (a[2] == 's')
                nstr = n;
            else if (a[2] == 'i')
                nint = n;
            else if (a[3] == 'u')
                ndur = n;
            else {
                if (n != 2 || !(range[0] <= range[1])) {
                    fprintf(stderr, "popk map: --dose-range: expected LO,HI\n");
                    goto bad_usage;
                }
                opt.dose_lo = range[0];
                opt.dose_hi = range[1];
            }
        } else if (!strcmp(a, "--covariates")) {
            free(cov_buf);
            cov_buf = strdup(argv[++i]);
            opt.ncov = 0;
            for (char *tok = strtok(cov_buf, ","); tok; tok = strtok(NULL, ",")) {
                char *eq = strchr(tok, '=');
                if (!eq || eq == tok || !eq[1] || opt.ncov == MAX_LIST) {
                    fprintf(stderr, "popk map: --covariates: expected NAME=VALUE,..., got '%s'\n",
                            tok);
                    goto bad_usage;
                }
                *eq = '\0';
                cov_name[opt.ncov] = tok;
                cov_value[opt.ncov++] = eq + 1;
            }
            opt.cov_name = cov_name;
            opt.cov_value = cov_value;
        } else if (!strcmp(a, "--id") || !strcmp(a, "--samples") || !strcmp(a, "--seed") ||
                   !strcmp(a, "--days")) {
            char *end;
            double v = strtod(argv[++i], &end);
            if (end == argv[i] || *end) {
                fprintf(stderr, "popk map: %s: not a number: '%s'\n", a, argv[i]);
                goto bad_usage;
            }
            if (a[2] == 'i')
                opt.id = v;
            else if (a[3] == 'a')
                opt.nsamples = (int)v;
            else if (a[3] == 'e')
                opt.seed = (unsigned long long)v;
            else
                days = v;
            if ((a[3] == 'a' && !(v >= 20 && v <= 100000)) || (a[2] == 'd' && !(v > 0 && v <= 60))) {
                fprintf(stderr, "popk map: %s %s is out of range\n", a, argv[i]);
                goto bad_usage;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "popk map: unknown option '%s'\n", a);
            goto bad_usage;
        } else if (!model_path)
            model_path = a;
        else if (!data_path)
            data_path = a;
        else {
            fprintf(stderr, "popk map: unexpected argument '%s'\n", a);
            goto bad_usage;
        }
    }
    if (!model_path || !data_path) {
        usage(stderr);
        goto done;
    }
    if (target_text) {
        if (popk_map_target_parse(target_text, &rp.target) != 0) {
            fprintf(stderr, "popk map: --target: expected auc24=LO-HI, trough=LO-HI, "
                            "peak=LO-HI, tmic=MIC:FRACTION or \"AUC24 in LO..HI\", got '%s'\n", target_text);
            goto bad_usage;
        }
        if (nstr == 0) {
            fprintf(stderr, "popk map: --target needs --strengths (the doses to choose from)\n");
            goto bad_usage;
        }
        rp.target.day = on_day;
        rp.have_target = 1;
    }
    popk_error err;
    popk_error_clear(&err);
    if (!(m = popk_model_load(model_path, &err)) || !(d = popk_data_read(data_path, &err))) {
        popk_cli_report(&err);
        goto done;
    }
    rp.m = m;
    rp.patient = data_path;
    if (!(rp.mp = popk_map_new(m, d, &opt, &err))) {
        popk_cli_report(&err);
        rc = err.code == POPK_ERR_DATA || err.code == POPK_ERR_ARG || err.code == POPK_ERR_MODEL
                 ? POPK_EXIT_INPUT : POPK_EXIT_FAILURE;
        goto done;
    }
    if (rp.have_target) {
        double amt, ii, dur;
        if (ndur < 0) {
            ndur = 1;
            durations[0] = popk_map_last_dose(rp.mp, &amt, &ii, &dur) ? dur : 0.0;
        }
        if (!(rp.reg = popk_map_recommend(rp.mp, &rp.target, nstr, strengths, nint, intervals,
                                          ndur, durations, &rp.nreg, &err))) {
            popk_cli_report(&err);
            rc = err.code == POPK_ERR_ARG ? POPK_EXIT_INPUT : POPK_EXIT_FAILURE;
            goto done;
        }
        rp.start = popk_map_next_dose_time(rp.mp, rp.reg[0].interval);
        if (loading) {
            double step = strengths[0];
            for (int k = 1; k < nstr; k++)
                step = fmin(step, strengths[k]);
            rp.loading = popk_map_loading(rp.mp, &rp.reg[0], step, &err);
            if (!isnan(rp.loading) && !isnan(opt.dose_hi) && rp.loading > opt.dose_hi)
                popk_map_warn(rp.mp, "the loading dose %g lies above the range the model was "
                              "built on (up to %g): its prediction is an extrapolation",
                              rp.loading, opt.dose_hi);
            if (isnan(rp.loading))
                popk_map_warn(rp.mp, "no loading dose up to 3 times the maintenance dose "
                              "reaches the steady-state trough after the first interval");
        }
    }
    rp.ncurve = CURVE_POINTS;
    if (popk_map_curve(rp.mp, rp.nreg ? &rp.reg[0] : NULL, rp.start, days, rp.ncurve, rp.t,
                       rp.ipred, rp.lo, rp.hi, &err) != POPK_OK) {
        if (out_dir) {
            popk_cli_report(&err);
            rc = POPK_EXIT_FAILURE;
            goto done;
        }
        rp.ncurve = 0; /* no history and no regimen: nothing to plot, nothing needed */
    }
    if (json)
        write_json(stdout, &rp);
    else
        write_summary(stdout, &rp);
    if (out_dir) {
        if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "popk map: cannot create %s: %s\n", out_dir, strerror(errno));
            rc = POPK_EXIT_FAILURE;
            goto done;
        }
        if (write_file(out_dir, "summary.txt", write_summary, &rp) ||
            write_file(out_dir, "map.json", write_json, &rp) ||
            (rp.ncurve && write_file(out_dir, "map.svg", write_svg, &rp))) {
            rc = POPK_EXIT_FAILURE;
            goto done;
        }
    }
    rc = POPK_EXIT_OK;
    goto done;
bad_usage:
    rc = POPK_EXIT_INPUT;
done:
    free(cov_buf);
    free(rp.reg);
    popk_map_free(rp.mp);
    popk_data_free(d);
    popk_model_free(m);
    return rc;
}
