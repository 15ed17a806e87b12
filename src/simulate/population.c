/* simulate/population.c — virtual patients: fixed covariates, declared distributions
 * (truncated normal, lognormal, uniform, categorical frequencies) or a CSV of patients,
 * and the targets whose attainment a simulation reports. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "simulate/sim.h"
#include "simulate/sim_impl.h"
#include "util/error.h"

const char *const popk_metric_names[POPK_MET_N] = {"Cmax", "Tmax", "trough", "AUCtau",
                                                   "AUC0_24", "AUC24", "T_above_pct"};

static popk_status spec_fail(popk_error *err, const char *what, const char *spec,
                             const char *at, const char *fmt, const char *arg)
{
    popk_error_set(err, POPK_ERR_ARG, what, 1, (int)(at - spec) + 1, fmt, arg);
    popk_error_set_context(err, spec, strlen(spec));
    return POPK_ERR_ARG;
}

static int find_covdef(const popk_model *m, const char *name, size_t len)
{
    for (int k = 0; k < m->ncov; k++)
        if (strlen(m->cov[k].name) == len && !strncasecmp(m->cov[k].name, name, len))
            return k;
    return -1;
}

/* A level name or numeric code of categorical covariate k; NaN if neither. */
static double level_code(const popk_covdef *cv, const char *s, size_t len)
{
    for (int i = 0; i < cv->nlevels; i++)
        if (strlen(cv->levels[i]) == len && !strncasecmp(cv->levels[i], s, len))
            return cv->codes[i];
    char buf[64], *end;
    if (len == 0 || len >= sizeof buf)
        return NAN;
    memcpy(buf, s, len);
    buf[len] = '\0';
    double v = strtod(buf, &end);
    if (*end)
        return NAN;
    for (int i = 0; i < cv->nlevels; i++)
        if (cv->codes[i] == v)
            return v;
    return NAN;
}

static void levels_list(const popk_covdef *cv, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < cv->nlevels; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, size - l, "%s%s", i ? ", " : "", cv->levels[i]);
    }
}

/* Numbers "a,b[,c,d]" inside parentheses; returns the count read or -1. */
static int paren_numbers(const char *s, const char *end, double *v, int max)
{
    int n = 0;
    while (s < end && n < max) {
        char *e;
        v[n] = strtod(s, &e);
        if (e == s || !isfinite(v[n]))
            return -1;
        n++;
        while (*e == ' ')
            e++;
        s = e;
        if (s < end && *s != ',')
            return -1;
        if (s < end)
            s++;
    }
    return s == end ? n : -1;
}

popk_status popk_population_parse(popk_population *pop, const popk_model *m,
                                  const char *spec, popk_error *err)
{
    const char *p = spec;
    const char *what = "--covariates";
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *name = p;
        while (*p && *p != '=' && *p != ',')
            p++;
        size_t nlen = (size_t)(p - name);
        while (nlen && name[nlen - 1] == ' ')
            nlen--;
        if (*p != '=')
            return spec_fail(err, what, spec, name, "expected NAME=VALUE%s", "");
        int k = find_covdef(m, name, nlen);
        if (k < 0) {
            char list[512] = "";
            for (int j = 0; j < m->ncov; j++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", j ? ", " : "", m->cov[j].name);
            }
            char msg[700];
            snprintf(msg, sizeof msg, "unknown covariate '%.*s' (the model declares: %s)",
                     (int)(nlen < 64 ? nlen : 64), name, m->ncov ? list : "none");
            return spec_fail(err, what, spec, name, "%s", msg);
        }
        const popk_covdef *cv = &m->cov[k];
        const char *val = ++p;
        /* the value runs to the next comma outside parentheses and braces */
        int depth = 0;
        while (*p && (depth > 0 || *p != ',')) {
            if (*p == '(' || *p == '{')
                depth++;
            else if (*p == ')' || *p == '}')
                depth--;
            p++;
        }
        const char *vend = p;
        while (*val == ' ')
            val++;
        while (vend > val && vend[-1] == ' ')
            vend--;
        popk_covdist d = {.kind = POPK_COVDIST_FIXED, .lo = -INFINITY, .hi = INFINITY};
        size_t vlen = (size_t)(vend - val);
        if (vlen == 0)
            return spec_fail(err, what, spec, val, "missing value%s", "");
        if (*val == '{') {
            if (cv->kind != POPK_COVDEF_CATEGORICAL)
                return spec_fail(err, what, spec, val,
                                 "level frequencies are for categorical covariates; '%s' is "
                                 "continuous", cv->name);
            if (vend[-1] != '}')
                return spec_fail(err, what, spec, vend, "expected '}'%s", "");
            d.kind = POPK_COVDIST_CATEGORICAL;
            const char *q = val + 1;
            double total = 0;
            while (q < vend - 1) {
                while (*q == ' ' || *q == ',')
                    q++;
                const char *lv = q;
                while (q < vend - 1 && *q != ':')
                    q++;
                size_t ll = (size_t)(q - lv);
                while (ll && lv[ll - 1] == ' ')
                    ll--;
                if (*q != ':')
                    return spec_fail(err, what, spec, lv, "expected LEVEL:PROBABILITY%s", "");
                double code = level_code(cv, lv, ll);
                if (isnan(code)) {
                    char levels[400], msg[600];
                    levels_list(cv, levels, sizeof levels);
                    snprintf(msg, sizeof msg, "unknown level '%.*s' of %s (levels: %s)",
                             (int)(ll < 64 ? ll : 64), lv, cv->name, levels);
                    return spec_fail(err, what, spec, lv, "%s", msg);
                }
                char *e;
                double pr = strtod(++q, &e);
                if (e == q || !(pr >= 0 && pr <= 1))
                    return spec_fail(err, what, spec, q, "expected a probability in [0, 1]%s",
                                     "");
                if (d.ncat == 32)
                    return spec_fail(err, what, spec, lv, "too many levels%s", "");
                d.code[d.ncat] = code;
                d.prob[d.ncat++] = pr;
                total += pr;
                q = e;
                while (*q == ' ')
                    q++;
                if (q < vend - 1 && *q != ',')
                    return spec_fail(err, what, spec, q, "expected ',' or '}'%s", "");
            }
            if (d.ncat == 0 || fabs(total - 1) > 1e-6)
                return spec_fail(err, what, spec, val,
                                 "level probabilities must sum to 1%s", "");
        } else if (vlen > 2 && (val[1] == '(' || (val[2] == '(' && val[1] != ' '))) {
            const char *open = strchr(val, '(');
            if (cv->kind == POPK_COVDEF_CATEGORICAL)
                return spec_fail(err, what, spec, val,
                                 "'%s' is categorical: give a level or {LEVEL:p,...}",
                                 cv->name);
            if (vend[-1] != ')')
                return spec_fail(err, what, spec, vend, "expected ')'%s", "");
            double a[4];
            int na = paren_numbers(open + 1, vend - 1, a, 4);
            size_t fl = (size_t)(open - val);
            if (fl == 1 && toupper((unsigned char)val[0]) == 'N')
                d.kind = POPK_COVDIST_NORMAL;
            else if (fl == 2 && !strncasecmp(val, "LN", 2))
                d.kind = POPK_COVDIST_LOGNORMAL;
            else if (fl == 1 && toupper((unsigned char)val[0]) == 'U')
                d.kind = POPK_COVDIST_UNIFORM;
            else
                return spec_fail(err, what, spec, val,
                                 "unknown distribution (N(mean,sd[,lo,hi]), LN(median,sdlog"
                                 "[,lo,hi]), U(lo,hi))%s", "");
            if (d.kind == POPK_COVDIST_UNIFORM) {
                if (na != 2 || !(a[0] < a[1]))
                    return spec_fail(err, what, spec, open, "U(lo,hi) needs lo < hi%s", "");
                d.lo = a[0];
                d.hi = a[1];
            } else {
                if ((na != 2 && na != 4) || !(a[1] > 0) || (na == 4 && !(a[2] < a[3])))
                    return spec_fail(err, what, spec, open,
                                     "expected (center, sd > 0) or (center, sd, lo, hi) with "
                                     "lo < hi%s", "");
                d.a = a[0];
                d.b = a[1];
                if (na == 4) {
                    d.lo = a[2];
                    d.hi = a[3];
                }
                if (d.kind == POPK_COVDIST_LOGNORMAL && !(d.a > 0))
                    return spec_fail(err, what, spec, open, "the median must be positive%s",
                                     "");
                /* the truncation window must hold some probability (5 SDs) */
                int ln = d.kind == POPK_COVDIST_LOGNORMAL;
                double c = ln ? log(d.a) : d.a;
                double lo = ln ? (d.lo > 0 ? log(d.lo) : -INFINITY) : d.lo;
                double hi = ln ? (d.hi > 0 ? log(d.hi) : -INFINITY) : d.hi;
                if (na == 4 && (hi < c - 5 * d.b || lo > c + 5 * d.b))
                    return spec_fail(err, what, spec, open,
                                     "the truncation window is far from the center%s", "");
            }
        } else if (cv->kind == POPK_COVDEF_CATEGORICAL) {
            d.a = level_code(cv, val, vlen);
            if (isnan(d.a)) {
                char levels[400], msg[600];
                levels_list(cv, levels, sizeof levels);
                snprintf(msg, sizeof msg, "unknown level '%.*s' of %s (levels: %s)",
                         (int)(vlen < 64 ? vlen : 64), val, cv->name, levels);
                return spec_fail(err, what, spec, val, "%s", msg);
            }
        } else {
            char buf[64], *e;
            if (vlen >= sizeof buf)
                return spec_fail(err, what, spec, val, "expected a number%s", "");
            memcpy(buf, val, vlen);
            buf[vlen] = '\0';
            d.a = strtod(buf, &e);
            if (*e || e == buf || !isfinite(d.a))
                return spec_fail(err, what, spec, val, "expected a number or a distribution "
                                                       "(N(70,15,40,150))%s", "");
        }
        pop->dist[k] = d;
    }
    return POPK_OK;
}

popk_status popk_population_read(popk_population *pop, const popk_model *m, const char *path,
                                 popk_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return popk_error_set(err, POPK_ERR_IO, path, 0, 0, "cannot open: %s", strerror(errno));
    char line[8192];
    int col_cov[256], ncol = 0, lineno = 1;
    popk_status st = POPK_OK;
    if (!fgets(line, sizeof line, f)) {
        fclose(f);
        return popk_error_set(err, POPK_ERR_DATA, path, 1, 1, "empty file");
    }
    for (char *tok = line, *next; tok && ncol < 256; tok = next) {
        next = strchr(tok, ',');
        if (next)
            *next++ = '\0';
        size_t l = strcspn(tok, "\r\n");
        while (l && tok[l - 1] == ' ')
            l--;
        while (*tok == ' ' || *tok == '"')
            tok++, l--;
        if (l && tok[l - 1] == '"')
            l--;
        int k = find_covdef(m, tok, l);
        int is_id = l == 2 && !strncasecmp(tok, "ID", 2);
        if (k < 0 && !is_id) {
            fclose(f);
            return popk_error_set(err, POPK_ERR_DATA, path, 1, (int)(tok - line) + 1,
                                  "unknown covariate column '%.*s'", (int)(l < 64 ? l : 64),
                                  tok);
        }
        col_cov[ncol++] = k;
    }
    size_t cap = 0;
    free(pop->table);
    pop->table = NULL;
    pop->nrow = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (strspn(line, " \r\n") == strlen(line))
            continue;
        if (pop->nrow == cap) {
            cap = cap ? 2 * cap : 256;
            double *t = realloc(pop->table, sizeof(double) * cap * (size_t)(m->ncov + 1));
            if (!t) {
                st = popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
                goto done;
            }
            pop->table = t;
        }
        double *row = pop->table + pop->nrow * (size_t)m->ncov;
        for (int k = 0; k < m->ncov; k++)
            row[k] = NAN;
        int c = 0;
        for (char *tok = line, *next; tok; tok = next, c++) {
            next = strchr(tok, ',');
            if (next)
                *next++ = '\0';
            if (c >= ncol) {
                st = popk_error_set(err, POPK_ERR_DATA, path, lineno, (int)(tok - line) + 1,
                                    "more fields than header columns");
                goto done;
            }
            int k = col_cov[c];
            size_t l = strcspn(tok, "\r\n");
            while (*tok == ' ' || *tok == '"')
                tok++, l--;
            while (l && (tok[l - 1] == ' ' || tok[l - 1] == '"'))
                l--;
            if (k < 0)
                continue;
            const popk_covdef *cv = &m->cov[k];
            double v;
            if (cv->kind == POPK_COVDEF_CATEGORICAL) {
                v = level_code(cv, tok, l);
            } else {
                char buf[64], *e;
                if (l == 0 || l >= sizeof buf)
                    v = NAN;
                else {
                    memcpy(buf, tok, l);
                    buf[l] = '\0';
                    v = strtod(buf, &e);
                    if (*e || !isfinite(v))
                        v = NAN;
                }
            }
            if (isnan(v)) {
                char levels[400] = "";
                if (cv->kind == POPK_COVDEF_CATEGORICAL)
                    levels_list(cv, levels, sizeof levels);
                st = popk_error_set(err, POPK_ERR_DATA, path, lineno, (int)(tok - line) + 1,
                                    "%s: invalid value '%.*s'%s%s%s", cv->name,
                                    (int)(l < 64 ? l : 64), tok, *levels ? " (levels: " : "",
                                    levels, *levels ? ")" : "");
                goto done;
            }
            row[k] = v;
        }
        if (c != ncol) {
            st = popk_error_set(err, POPK_ERR_DATA, path, lineno, 1,
                                "%d fields, the header has %d", c, ncol);
            goto done;
        }
        pop->nrow++;
    }
    if (pop->nrow == 0)
        st = popk_error_set(err, POPK_ERR_DATA, path, lineno, 1, "no patients in the file");
done:
    fclose(f);
    return st;
}

popk_status popk_population_check(const popk_population *pop, const popk_model *m,
                                  popk_error *err)
{
    for (int k = 0; k < m->ncov; k++) {
        const popk_covdef *cv = &m->cov[k];
        if (!cv->used || cv->has_default || pop->dist[k].kind != POPK_COVDIST_UNSET)
            continue;
        int in_table = pop->nrow > 0;
        for (size_t r = 0; in_table && r < pop->nrow; r++)
            if (isnan(pop->table[r * (size_t)m->ncov + k]))
                in_table = 0;
        if (!in_table)
            return popk_error_set(err, POPK_ERR_ARG, m->path, cv->line, 0,
                                  "the model needs covariate '%s' but no value was given "
                                  "(--covariates %s=...)", cv->name, cv->name);
    }
    return POPK_OK;
}

static double trunc_draw(popk_rng *r, const popk_covdist *d)
{
    for (int tries = 0; tries < 10000; tries++) {
        double z = popk_rng_normal(r);
        double v = d->kind == POPK_COVDIST_NORMAL ? d->a + d->b * z : d->a * exp(d->b * z);
        if (v >= d->lo && v <= d->hi)
            return v;
    }
    /* window far in a tail (refused at parse time): the nearer bound */
    return d->a < d->lo ? d->lo : d->hi;
}

void popk_sim_draw_covariates(const popk_population *pop, const popk_model *m, popk_rng *r,
                              long s, double *cov)
{
    const double *row = NULL;
    if (pop && pop->nrow > 0) {
        size_t i = pop->sequential ? (size_t)s % pop->nrow
                                   : (size_t)(popk_rng_uniform(r) * (double)pop->nrow);
        if (i >= pop->nrow)
            i = pop->nrow - 1;
        row = pop->table + i * (size_t)m->ncov;
    }
    for (int k = 0; k < m->ncov; k++) {
        const popk_covdef *cv = &m->cov[k];
        const popk_covdist *d = pop ? &pop->dist[k] : NULL;
        double v = cv->has_default ? cv->default_value
                   : cv->kind == POPK_COVDEF_CATEGORICAL ? cv->codes[0]
                   : isfinite(cv->reference) ? cv->reference : 1.0;
        if (row && !isnan(row[k]))
            v = row[k];
        if (d) {
            switch (d->kind) {
            case POPK_COVDIST_FIXED:
                v = d->a;
                break;
            case POPK_COVDIST_NORMAL:
            case POPK_COVDIST_LOGNORMAL:
                v = trunc_draw(r, d);
                break;
            case POPK_COVDIST_UNIFORM:
                v = d->lo + (d->hi - d->lo) * popk_rng_uniform(r);
                break;
            case POPK_COVDIST_CATEGORICAL: {
                double u = popk_rng_uniform(r), c = 0;
                v = d->code[d->ncat - 1];
                for (int j = 0; j < d->ncat; j++) {
                    c += d->prob[j];
                    if (u < c) {
                        v = d->code[j];
                        break;
                    }
                }
                break;
            }
            default:
                break;
            }
        }
        cov[k] = v;
    }
}

/* --- targets ----------------------------------------------------------------------------- */

popk_status popk_target_parse(popk_target *t, const char *text, double mic, popk_error *err)
{
    memset(t, 0, sizeof *t);
    snprintf(t->text, sizeof t->text, "%s", text);
    t->lo = -INFINITY;
    t->hi = INFINITY;
    t->threshold = NAN;
    const char *p = text;
    while (*p == ' ')
        p++;
    if ((p[0] == 'T' || p[0] == 't') && p[1] == '>') {
        /* T>X P% */
        p += 2;
        char *e;
        double x;
        if (!strncasecmp(p, "MIC", 3)) {
            if (!isfinite(mic))
                return spec_fail(err, "--target", text, p, "T>MIC needs --mic VALUE%s", "");
            x = mic;
            e = (char *)p + 3;
        } else {
            x = strtod(p, &e);
            if (e == p || !isfinite(x))
                return spec_fail(err, "--target", text, p, "expected a concentration or MIC%s",
                                 "");
        }
        const char *q = e;
        double pct = strtod(q, &e);
        if (e == q || !(pct >= 0 && pct <= 100))
            return spec_fail(err, "--target", text, q,
                             "expected the percentage of the dosing interval (50%%)%s", "");
        while (*e == ' ')
            e++;
        if (*e == '%')
            e++;
        while (*e == ' ')
            e++;
        if (*e)
            return spec_fail(err, "--target", text, e, "unexpected text%s", "");
        t->metric = POPK_MET_TABOVE;
        t->threshold = x;
        t->lo = pct;
        return POPK_OK;
    }
    const char *name = p;
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    size_t nl = (size_t)(p - name);
    t->metric = -1;
    static const struct {
        const char *name;
        int metric;
    } alias[] = {{"cmax", POPK_MET_CMAX},       {"tmax", POPK_MET_TMAX},
                 {"trough", POPK_MET_TROUGH},   {"cmin", POPK_MET_TROUGH},
                 {"ctrough", POPK_MET_TROUGH},  {"auctau", POPK_MET_AUCTAU},
                 {"auc0_24", POPK_MET_AUC0_24}, {"auc24", POPK_MET_AUC24}};
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strlen(alias[i].name) == nl && !strncasecmp(alias[i].name, name, nl))
            t->metric = alias[i].metric;
    if (t->metric < 0)
        return spec_fail(err, "--target", text, name,
                         "unknown metric (Cmax, Tmax, trough, AUCtau, AUC0_24, AUC24, or "
                         "T>X P%%)%s", "");
    while (*p == ' ')
        p++;
    char *e;
    if (!strncasecmp(p, "in", 2) && (p[2] == ' ' || isdigit((unsigned char)p[2]))) {
        const char *q = p + 2, *dots = strstr(q, "..");
        char lo[64];
        while (*q == ' ')
            q++;
        if (!dots || dots <= q || dots - q >= (long)sizeof lo)
            return spec_fail(err, "--target", text, q, "expected LO..HI%s", "");
        memcpy(lo, q, (size_t)(dots - q));
        lo[dots - q] = '\0';
        t->lo = strtod(lo, &e);
        while (*e == ' ')
            e++;
        if (e == lo || *e)
            return spec_fail(err, "--target", text, q, "expected LO..HI%s", "");
        q = dots + 2;
        t->hi = strtod(q, &e);
        if (e == q || !(t->lo <= t->hi))
            return spec_fail(err, "--target", text, q, "expected LO..HI with LO <= HI%s", "");
    } else {
        int op = 0; /* 1 >=, 2 >, 3 <=, 4 < */
        if (!strncmp(p, ">=", 2))
            op = 1, p += 2;
        else if (*p == '>')
            op = 2, p++;
        else if (!strncmp(p, "<=", 2))
            op = 3, p += 2;
        else if (*p == '<')
            op = 4, p++;
        else
            return spec_fail(err, "--target", text, p,
                             "expected >=, >, <=, < or 'in LO..HI'%s", "");
        double v = strtod(p, &e);
        if (e == p || !isfinite(v))
            return spec_fail(err, "--target", text, p, "expected a number%s", "");
        if (op <= 2)
            t->lo = v, t->lo_strict = op == 2;
        else
            t->hi = v, t->hi_strict = op == 4;
    }
    while (*e == ' ')
        e++;
    if (*e)
        return spec_fail(err, "--target", text, e, "unexpected text%s", "");
    return POPK_OK;
}

int popk_target_pass(const popk_target *t, double v)
{
    if (isnan(v))
        return 0;
    if (t->lo_strict ? !(v > t->lo) : !(v >= t->lo))
        return 0;
    if (t->hi_strict ? !(v < t->hi) : !(v <= t->hi))
        return 0;
    return 1;
}
