/* simulate/regimen.c — dosing regimens from the human form ("400 mg po q12h x2, then ..."),
 * from a YAML file, or from a NONMEM dataset's dose records. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model/yaml_tree.h"
#include "simulate/sim.h"
#include "util/error.h"

/* Dose records accumulated phase by phase. */
typedef struct {
    popk_regimen *r;
    size_t cap;
    double next_start;       /* last dose time + its interval (NaN before the first phase) */
    double last_time;
} reg_build;

static popk_status add_phase(reg_build *b, double start, double amt, int cmt, double rate,
                             double tau, long count, popk_error *err)
{
    if (!(count >= 1))
        count = 1;
    if (count > 100000)
        return popk_error_set(err, POPK_ERR_LIMIT, NULL, 0, 0,
                              "more than 100000 doses in one phase");
    if (b->r->ndose + (size_t)count > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        while (cap < b->r->ndose + (size_t)count)
            cap *= 2;
        popk_record *d = realloc(b->r->dose, cap * sizeof *d);
        if (!d)
            return popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        b->r->dose = d;
        b->cap = cap;
    }
    for (long i = 0; i < count; i++) {
        popk_record rec = {.time = start + (double)i * tau, .dv = NAN, .amt = amt,
                           .rate = rate, .evid = 1, .mdv = 1, .cmt = cmt};
        b->r->dose[b->r->ndose++] = rec;
    }
    b->last_time = start + (double)(count - 1) * tau;
    b->r->t_last = b->last_time;
    b->r->tau = tau;
    b->next_start = tau > 0 ? b->last_time + tau : NAN;
    return POPK_OK;
}

void popk_regimen_free(popk_regimen *r)
{
    if (!r)
        return;
    free(r->dose);
    free(r);
}

/* --- the human form --------------------------------------------------------------------- */

typedef struct {
    const char *text, *p;
    popk_error *err;
} lex;

static void skip_ws(lex *x)
{
    while (*x->p == ' ' || *x->p == '\t')
        x->p++;
}

static popk_status lex_fail(lex *x, const char *at, const char *fmt, const char *what)
{
    popk_error_set(x->err, POPK_ERR_ARG, "regimen", 1, (int)(at - x->text) + 1, fmt, what);
    popk_error_set_context(x->err, x->text, strlen(x->text));
    return POPK_ERR_ARG;
}

/* A case-insensitive word at the cursor followed by a non-letter; consumes it. */
static int word(lex *x, const char *w)
{
    skip_ws(x);
    size_t n = strlen(w);
    if (strncasecmp(x->p, w, n) != 0 || isalpha((unsigned char)x->p[n]))
        return 0;
    x->p += n;
    return 1;
}

/* A prefix that may be glued to a number ("q12h", "x2"): consumes it when a digit, a
 * space or a '.' follows. */
static int prefix(lex *x, const char *w)
{
    skip_ws(x);
    size_t n = strlen(w);
    if (strncasecmp(x->p, w, n) != 0)
        return 0;
    char c = x->p[n];
    if (!(isdigit((unsigned char)c) || c == ' ' || c == '.' || c == '-' || c == '\0'))
        return 0;
    x->p += n;
    return 1;
}

static popk_status number(lex *x, double *v, const char *what)
{
    skip_ws(x);
    char *end;
    const char *at = x->p;
    if (!(isdigit((unsigned char)*at) || *at == '.' || *at == '-' || *at == '+'))
        return lex_fail(x, at, "expected %s (a number)", what);
    *v = strtod(at, &end);
    if (end == at || !isfinite(*v))
        return lex_fail(x, at, "expected %s (a number)", what);
    x->p = end;
    return POPK_OK;
}

/* Hours from "h", "hr", "hours", "min", "d", "days" after a number (default hours). */
static double time_unit(lex *x)
{
    if (word(x, "h") || word(x, "hr") || word(x, "hrs") || word(x, "hour") || word(x, "hours"))
        return 1.0;
    if (word(x, "min") || word(x, "mins") || word(x, "minutes"))
        return 1.0 / 60.0;
    if (word(x, "d") || word(x, "day") || word(x, "days"))
        return 24.0;
    return 1.0;
}

static int find_cmt(const popk_model *m, const char *name, size_t len)
{
    for (int c = 0; c < m->ncmt; c++)
        if (strlen(m->cmt_name[c]) == len && !strncasecmp(m->cmt_name[c], name, len))
            return c + 1;
    return 0;
}

/* Route to a compartment number; 0 with the error set. */
static int route(lex *x, const popk_model *m)
{
    skip_ws(x);
    const char *at = x->p;
    if (word(x, "po") || word(x, "oral") || word(x, "sc") || word(x, "im") ||
        word(x, "depot")) {
        if (m->default_dose_cmt == 0 || m->default_dose_cmt == m->default_obs_cmt) {
            lex_fail(x, at, "%s: the model has no absorption compartment (use iv)",
                     "extravascular route");
            return 0;
        }
        return m->default_dose_cmt;
    }
    if (word(x, "iv") || word(x, "bolus") || word(x, "infusion")) {
        int c = m->default_obs_cmt ? m->default_obs_cmt : m->default_dose_cmt;
        if (c == 0)
            lex_fail(x, at, "%s: the model has no compartments", "iv");
        return c;
    }
    if (word(x, "to")) {
        skip_ws(x);
        const char *s = x->p;
        while (isalnum((unsigned char)*x->p) || *x->p == '_')
            x->p++;
        int c = find_cmt(m, s, (size_t)(x->p - s));
        if (!c)
            lex_fail(x, s, "unknown compartment%s", "");
        return c;
    }
    lex_fail(x, at, "expected a route (po, iv, sc, im, depot, infusion, or 'to' a "
                    "compartment)%s", "");
    return 0;
}

static popk_status parse_phase(lex *x, const popk_model *m, reg_build *b)
{
    double start = NAN, amt, v;
    popk_status st;
    skip_ws(x);
    if (word(x, "at")) {
        if ((st = number(x, &start, "the start time")))
            return st;
        start *= time_unit(x);
        if (start < 0)
            return lex_fail(x, x->p, "the start time must be >= 0%s", "");
    }
    skip_ws(x);
    const char *amt_at = x->p;
    if ((st = number(x, &amt, "a dose amount")))
        return st;
    if (!(amt > 0))
        return lex_fail(x, amt_at, "the dose must be positive%s", "");
    if (word(x, "mg"))
        ;
    else if (word(x, "g"))
        amt *= 1000;
    else if (word(x, "ug") || word(x, "mcg"))
        amt /= 1000;
    int is_infusion = 0;
    skip_ws(x);
    if (!strncasecmp(x->p, "infusion", 8))
        is_infusion = 1;
    int cmt = route(x, m);
    if (!cmt)
        return POPK_ERR_ARG;
    double rate = 0, tau = 0;
    long count = 0;
    int have_count = 0;
    const char *count_at = NULL, *tau_at = NULL;
    for (;;) {
        skip_ws(x);
        const char *at = x->p;
        if (*x->p == '\0' || *x->p == ',' || *x->p == ';')
            break;
        if (word(x, "over")) {
            if ((st = number(x, &v, "the infusion duration")))
                return st;
            v *= time_unit(x);
            if (!(v > 0))
                return lex_fail(x, at, "the infusion duration must be positive%s", "");
            rate = amt / v;
        } else if (word(x, "at")) {
            if ((st = number(x, &v, "the infusion rate")))
                return st;
            if (!(v > 0))
                return lex_fail(x, at, "the infusion rate must be positive%s", "");
            if (!(word(x, "mg/h") || (word(x, "mg") && *x->p == '/' && (x->p++, word(x, "h")))))
                return lex_fail(x, x->p, "expected the rate unit 'mg/h'%s", "");
            rate = v;
        } else if (word(x, "qd") || word(x, "daily") || word(x, "od")) {
            tau = 24, tau_at = at;
        } else if (word(x, "bid")) {
            tau = 12, tau_at = at;
        } else if (word(x, "tid")) {
            tau = 8, tau_at = at;
        } else if (word(x, "qid")) {
            tau = 6, tau_at = at;
        } else if (prefix(x, "q") || word(x, "every")) {
            if ((st = number(x, &tau, "the dosing interval")))
                return st;
            tau *= time_unit(x);
            tau_at = at;
            if (!(tau > 0))
                return lex_fail(x, at, "the dosing interval must be positive%s", "");
        } else if (prefix(x, "x") || prefix(x, "×")) {
            if ((st = number(x, &v, "the number of doses")))
                return st;
            count_at = at;
            if (word(x, "days") || word(x, "day") || word(x, "d")) {
                if (!(tau > 0))
                    return lex_fail(x, at, "'x N days' needs the interval first (q12h x 7 "
                                           "days)%s", "");
                v = v * 24.0 / tau;
            } else {
                (void)(word(x, "doses") || word(x, "dose"));
            }
            if (!(v >= 1) || v != floor(v) || v > 100000)
                return lex_fail(x, at, "the number of doses must be a whole number from 1 "
                                       "to 100000%s", "");
            count = (long)v;
            have_count = 1;
        } else if (word(x, "for")) {
            if ((st = number(x, &v, "the duration")))
                return st;
            v *= time_unit(x);
            count_at = at;
            if (!(tau > 0))
                return lex_fail(x, at, "'for' needs the interval first (q12h for 7 days)%s",
                                "");
            double nd = floor(v / tau + 1e-9);
            if (!(nd >= 1) || nd > 100000)
                return lex_fail(x, at, "the duration must cover 1 to 100000 doses%s", "");
            count = (long)nd;
            have_count = 1;
        } else {
            return lex_fail(x, at, "unexpected text: expected 'over', 'at', an interval "
                                   "(q12h), a count (x 14), ',' or the end%s", "");
        }
    }
    if (is_infusion && rate == 0)
        return lex_fail(x, amt_at, "an infusion needs 'over D h' or 'at R mg/h'%s", "");
    if (have_count && count > 1 && !(tau > 0))
        return lex_fail(x, count_at, "repeated doses need an interval (q12h)%s", "");
    if (tau > 0 && !have_count)
        return lex_fail(x, tau_at, "give the number of doses after the interval (x 14 or for "
                                   "7 days)%s", "");
    if (isnan(start)) {
        if (b->r->ndose == 0)
            start = 0;
        else if (!isnan(b->next_start))
            start = b->next_start;
        else if (tau > 0)
            start = b->last_time + tau;
        else
            return lex_fail(x, amt_at, "a single dose after a single dose needs its time "
                                       "('at 24 h ...')%s", "");
    } else if (b->r->ndose > 0 && start < b->last_time) {
        return lex_fail(x, amt_at, "this phase starts before the previous dose%s", "");
    }
    return add_phase(b, start, amt, cmt, rate, tau, count, x->err);
}

popk_regimen *popk_regimen_parse(const char *text, const popk_model *m, popk_error *err)
{
    reg_build b = {.next_start = NAN};
    b.r = calloc(1, sizeof *b.r);
    if (!b.r) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    lex x = {text, text, err};
    for (;;) {
        skip_ws(&x);
        if (*x.p == '\0') {
            if (b.r->ndose == 0) {
                lex_fail(&x, x.p, "empty regimen: expected a dose such as '100 mg iv'%s", "");
                goto fail;
            }
            break;
        }
        (void)word(&x, "then");
        if (parse_phase(&x, m, &b) != POPK_OK)
            goto fail;
        skip_ws(&x);
        if (*x.p == ',' || *x.p == ';') {
            x.p++;
            skip_ws(&x);
            if (*x.p == '\0') {
                lex_fail(&x, x.p, "expected another dose after the separator%s", "");
                goto fail;
            }
        }
    }
    return b.r;
fail:
    popk_regimen_free(b.r);
    return NULL;
}

/* --- YAML ------------------------------------------------------------------------------- */

static const popk_yt_node *ymap_get(const popk_yt_node *n, const char *key)
{
    for (int i = 0; n && n->kind == POPK_YT_MAP && i < n->n; i++)
        if (!strcmp(n->item[2 * i]->text, key))
            return n->item[2 * i + 1];
    return NULL;
}

static popk_status yfail(popk_error *err, const char *path, const popk_yt_node *n,
                         const char *msg, const char *buf, size_t len)
{
    popk_error_set(err, POPK_ERR_ARG, path, n ? n->line : 0, n ? n->column : 0, "%s", msg);
    if (n)
        popk_yt_context(err, buf, len, n->line);
    return POPK_ERR_ARG;
}

static popk_status ynum(const popk_yt_node *n, double *v, const char *path, const char *buf,
                        size_t len, popk_error *err)
{
    char *end;
    if (n->kind != POPK_YT_SCALAR)
        return yfail(err, path, n, "expected a number", buf, len);
    *v = strtod(n->text, &end);
    if (end == n->text || *end || !isfinite(*v))
        return yfail(err, path, n, "expected a number", buf, len);
    return POPK_OK;
}

popk_regimen *popk_regimen_load(const char *path, const popk_model *m, popk_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        popk_error_set(err, POPK_ERR_IO, path, 0, 0, "cannot open the regimen file");
        return NULL;
    }
    char *buf = malloc(1 << 20);
    size_t len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!buf) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    buf[len] = '\0';
    popk_yt_doc doc = {0};
    popk_regimen *out = NULL;
    reg_build b = {.next_start = NAN};
    if (popk_yt_parse(&doc, path, buf, len, err) != POPK_OK)
        goto done;
    const popk_yt_node *root = doc.root, *n;
    if (!root || root->kind != POPK_YT_MAP) {
        yfail(err, path, root, "a regimen file is a mapping with 'regimen' or 'doses'", buf,
              len);
        goto done;
    }
    if ((n = ymap_get(root, "regimen"))) {
        if (n->kind != POPK_YT_SCALAR) {
            yfail(err, path, n, "'regimen' must be text such as \"100 mg iv q12h x 4\"", buf,
                  len);
            goto done;
        }
        popk_error e;
        out = popk_regimen_parse(n->text, m, &e);
        if (!out && err) {
            /* Report the position inside the file (plain scalars start at their column). */
            popk_error_set(err, e.code, path, n->line,
                           n->column + (n->style == POPK_YT_QUOTED) + e.column - 1, "%s",
                           e.message);
            popk_yt_context(err, buf, len, n->line);
        }
        goto done;
    }
    const popk_yt_node *doses = ymap_get(root, "doses");
    if (!doses || doses->kind != POPK_YT_SEQ || doses->n == 0) {
        yfail(err, path, doses ? doses : root, "expected 'doses:' as a non-empty list", buf,
              len);
        goto done;
    }
    if (!(b.r = calloc(1, sizeof *b.r)))
        goto done;
    for (int i = 0; i < doses->n; i++) {
        const popk_yt_node *d = doses->item[i];
        static const char *const keys[] = {"amount", "route", "cmt", "time", "every",
                                           "count", "duration", "rate", NULL};
        if (d->kind != POPK_YT_MAP) {
            yfail(err, path, d, "each dose is a mapping (amount, route, every, count, ...)",
                  buf, len);
            goto fail;
        }
        for (int k = 0; k < d->n; k++) {
            int known = 0;
            for (int j = 0; keys[j]; j++)
                known |= !strcmp(d->item[2 * k]->text, keys[j]);
            if (!known) {
                char msg[200];
                snprintf(msg, sizeof msg, "unknown key '%.60s' (amount, route, cmt, time, "
                         "every, count, duration, rate)", d->item[2 * k]->text);
                yfail(err, path, d->item[2 * k], msg, buf, len);
                goto fail;
            }
        }
        double amt = NAN, start = NAN, tau = 0, count = 1, dur = 0, rate = 0;
        if (!(n = ymap_get(d, "amount"))) {
            yfail(err, path, d, "missing 'amount'", buf, len);
            goto fail;
        }
        if (ynum(n, &amt, path, buf, len, err))
            goto fail;
        if (!(amt > 0)) {
            yfail(err, path, n, "the dose must be positive", buf, len);
            goto fail;
        }
        int cmt = 0;
        if ((n = ymap_get(d, "route"))) {
            lex x = {n->text, n->text, err};
            cmt = route(&x, m);
            if (!cmt) {
                yfail(err, path, n, err ? err->message : "bad route", buf, len);
                goto fail;
            }
        } else if ((n = ymap_get(d, "cmt"))) {
            double c;
            if (n->kind == POPK_YT_SCALAR && (cmt = find_cmt(m, n->text, strlen(n->text))))
                ;
            else if (ynum(n, &c, path, buf, len, err) == POPK_OK && c >= 1 && c <= m->ncmt &&
                     c == floor(c))
                cmt = (int)c;
            else {
                yfail(err, path, n, "not a compartment of the model", buf, len);
                goto fail;
            }
        } else {
            yfail(err, path, d, "missing 'route' or 'cmt'", buf, len);
            goto fail;
        }
        if ((n = ymap_get(d, "time")) && ynum(n, &start, path, buf, len, err))
            goto fail;
        if ((n = ymap_get(d, "every")) &&
            (ynum(n, &tau, path, buf, len, err) || (!(tau > 0) && yfail(err, path, n,
                                                   "the interval must be positive", buf,
                                                   len))))
            goto fail;
        if ((n = ymap_get(d, "count")) &&
            (ynum(n, &count, path, buf, len, err) ||
             ((!(count >= 1) || count != floor(count) || (count > 1 && !(tau > 0))) &&
              yfail(err, path, n, "count must be a whole number >= 1 (and > 1 needs 'every')",
                    buf, len))))
            goto fail;
        if ((n = ymap_get(d, "duration")) &&
            (ynum(n, &dur, path, buf, len, err) ||
             (!(dur > 0) && yfail(err, path, n, "the duration must be positive", buf, len))))
            goto fail;
        if ((n = ymap_get(d, "rate")) &&
            (ynum(n, &rate, path, buf, len, err) ||
             (!(rate > 0) && yfail(err, path, n, "the rate must be positive", buf, len))))
            goto fail;
        if (dur > 0)
            rate = amt / dur;
        if (isnan(start))
            start = b.r->ndose == 0 ? 0 : !isnan(b.next_start) ? b.next_start
                                                                : b.last_time + tau;
        if (b.r->ndose > 0 && !(start > b.last_time || (start == b.last_time && tau > 0))) {
            yfail(err, path, d, "each dose entry must start after the previous one (give "
                                "'time')", buf, len);
            goto fail;
        }
        if (add_phase(&b, start, amt, cmt, rate, tau, (long)count, err) != POPK_OK)
            goto fail;
    }
    out = b.r;
    b.r = NULL;
    goto done;
fail:
    popk_regimen_free(b.r);
    b.r = NULL;
done:
    popk_yt_free(&doc);
    free(buf);
    return out;
}

/* --- a dataset's dose records ------------------------------------------------------------ */

popk_regimen *popk_regimen_from_data(const popk_data *d, double id, popk_error *err)
{
    size_t s = 0;
    if (!isnan(id)) {
        while (s < d->nsub && d->sub[s].id != id)
            s++;
        if (s == d->nsub) {
            popk_error_set(err, POPK_ERR_ARG, d->path, 0, 0, "no subject with ID %g", id);
            return NULL;
        }
    }
    reg_build b = {.next_start = NAN};
    if (!d->nsub || !(b.r = calloc(1, sizeof *b.r))) {
        popk_error_set(err, d->nsub ? POPK_ERR_NOMEM : POPK_ERR_ARG, d->path, 0, 0,
                       d->nsub ? "out of memory" : "the dataset has no subjects");
        return NULL;
    }
    const popk_subject *sub = &d->sub[s];
    for (size_t i = 0; i < sub->n; i++) {
        const popk_record *rec = &d->rec[sub->first + i];
        if (rec->evid != 1 && rec->evid != 4)
            continue;
        if (rec->amt < 0) {
            popk_error_set(err, POPK_ERR_ARG, d->path, rec->line, 0, "negative dose");
            goto fail;
        }
        if (rec->ss) {
            popk_error_set(err, POPK_ERR_ARG, d->path, rec->line, 0,
                           "steady-state dose records (SS) are not supported in a regimen "
                           "template: list the doses");
            goto fail;
        }
        double tau = rec->addl > 0 ? rec->ii : 0;
        if (add_phase(&b, rec->time, rec->amt, rec->cmt, rec->rate, tau, rec->addl + 1L, err))
            goto fail;
    }
    if (b.r->ndose == 0) {
        popk_error_set(err, POPK_ERR_ARG, d->path, 0, 0, "subject %g has no dose records",
                       sub->id);
        goto fail;
    }
    /* Records may list doses out of the expanded order (ADDL): sort by time, stable. */
    for (size_t i = 1; i < b.r->ndose; i++)
        for (size_t j = i; j > 0 && b.r->dose[j - 1].time > b.r->dose[j].time; j--) {
            popk_record t = b.r->dose[j];
            b.r->dose[j] = b.r->dose[j - 1];
            b.r->dose[j - 1] = t;
        }
    size_t nd = b.r->ndose;
    b.r->t_last = b.r->dose[nd - 1].time;
    b.r->tau = nd > 1 ? b.r->dose[nd - 1].time - b.r->dose[nd - 2].time : 0;
    return b.r;
fail:
    popk_regimen_free(b.r);
    return NULL;
}
