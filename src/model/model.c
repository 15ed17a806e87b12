/* model/model.c — reading a YAML model file (docs/model-format.md) into a popk_model:
 * schema checks with positions, the name registry, the slot frame and the compiled programs. */
#include "model/model.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "model/yaml_tree.h"
#include "util/error.h"

/* Longest expression accepted in a model file (longer ones are refused, not parsed). */
#define MODEL_MAX_EXPR 65536
/* Largest model file read from disk. */
#define MODEL_MAX_FILE (16u << 20)

typedef popk_yt_node node;

typedef enum {
    SYM_THETA, SYM_ETA, SYM_SIGMA, SYM_COV, SYM_IND, SYM_CMT, SYM_TIME, SYM_OUT, SYM_DERIVED
} sym_kind;

static const char *const sym_kind_name[] = {
    "a theta", "an eta", "a sigma", "a covariate", "an individual parameter", "a compartment",
    "time", "an output", "a derived output"};

typedef struct {
    const char *name;
    sym_kind kind;
    int index;
    int line;
} sym;

/* Where an expression is used decides which names it may read. */
typedef enum { CTX_IND, CTX_PK, CTX_RHS, CTX_OUT, CTX_DERIVED } expr_ctx;

static const char *const ctx_name[] = {"individual", "linear/dosing", "odes", "observe",
                                       "derived"};

enum { DOSE_F, DOSE_ALAG, DOSE_RATE, DOSE_DUR, DOSE_NATTR };
static const char *const dose_attr_name[] = {"F", "ALAG", "RATE", "DUR"};

typedef struct {
    popk_model *m;
    const char *file, *buf;
    size_t len;
    popk_error *err;

    sym *syms;
    int nsyms, capsyms;

    /* top-level sections */
    node *sec_theta, *sec_omega, *sec_sigma, *sec_cov, *sec_ind, *sec_linear, *sec_odes,
        *sec_default_dose, *sec_dosing, *sec_observe, *sec_derived, *sec_solver;

    /* expressions awaiting compilation, with their YAML nodes */
    popk_expr **ind_expr;
    popk_expr *lin_expr[POPK_LIN_NPAR];
    node *lin_node[POPK_LIN_NPAR];
    popk_expr **rhs_expr;
    popk_expr **dose_expr;      /* ncmt * DOSE_NATTR */
    popk_expr **out_expr;
    popk_expr **der_expr;

    /* symbol table handed to the compiler */
    popk_symbol *symtab;
    int nsymtab;
    /* the expression being checked (for the name callback) */
    expr_ctx cur_ctx;
    int cur_index;
} ctx;

/* ---------------------------------------------------------------------------------------- */
/* errors */

static popk_status fail_pos(ctx *c, int line, int column, const char *fmt, ...)
    POPK_PRINTF(4, 5);

static popk_status fail_pos(ctx *c, int line, int column, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    popk_error_set(c->err, POPK_ERR_MODEL, c->file, line, column, "%s", msg);
    popk_yt_context(c->err, c->buf, c->len, line);
    return POPK_ERR_MODEL;
}

#define fail(c, n, ...) fail_pos((c), (n)->line, (n)->column, __VA_ARGS__)

/* After an error from expr/, show the model file's line rather than the expression's. */
static popk_status expr_failed(ctx *c, popk_status st)
{
    if (c->err && c->err->line > 0) {
        snprintf(c->err->file, sizeof c->err->file, "%s", c->file);
        popk_yt_context(c->err, c->buf, c->len, c->err->line);
    }
    return st ? st : POPK_ERR_MODEL;
}

static popk_status nomem(ctx *c)
{
    return popk_error_set(c->err, POPK_ERR_NOMEM, c->file, 0, 0, "out of memory");
}

/* ---------------------------------------------------------------------------------------- */
/* small helpers on nodes */

static int levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 1000;
    int row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            int best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *suggest(const char *name, const char *const *options)
{
    const char *best = NULL;
    int bestd = 1000;
    for (int i = 0; options[i]; i++) {
        int d = levenshtein(name, options[i]);
        if (d < bestd) {
            bestd = d;
            best = options[i];
        }
    }
    int limit = (int)strlen(name) / 3;
    if (limit < 2)
        limit = 2;
    return bestd <= limit ? best : NULL;
}

static node *map_key(const node *map, int i) { return map->item[2 * i]; }
static node *map_val(const node *map, int i) { return map->item[2 * i + 1]; }

static node *map_get(const node *map, const char *key)
{
    if (!map || map->kind != POPK_YT_MAP)
        return NULL;
    for (int i = 0; i < map->n; i++)
        if (map_key(map, i)->kind == POPK_YT_SCALAR && !strcmp(map_key(map, i)->text, key))
            return map_val(map, i);
    return NULL;
}

static int is_null(const node *n)
{
    return n->kind == POPK_YT_SCALAR && n->style == POPK_YT_PLAIN &&
           (n->len == 0 || !strcmp(n->text, "~") || !strcmp(n->text, "null"));
}

static popk_status expect_kind(ctx *c, const node *n, popk_yt_kind kind, const char *what)
{
    if (n->kind == kind && !(kind == POPK_YT_SCALAR && is_null(n)))
        return POPK_OK;
    return fail(c, n, "%s must be %s, found %s", what, popk_yt_kind_name(kind),
                is_null(n) ? "nothing" : popk_yt_kind_name(n->kind));
}

/* Every key of a mapping is a scalar, appears once and is one of allowed (NULL-terminated;
 * case-insensitive when ci). */
static popk_status check_keys(ctx *c, const node *map, const char *const *allowed, int ci,
                              const char *where)
{
    for (int i = 0; i < map->n; i++) {
        node *k = map_key(map, i);
        if (k->kind != POPK_YT_SCALAR)
            return fail(c, k, "keys in %s must be names, found %s", where,
                        popk_yt_kind_name(k->kind));
        for (int j = 0; j < i; j++)
            if (!strcmp(map_key(map, j)->text, k->text))
                return fail(c, k, "duplicate key '%s' in %s (first at line %d)", k->text, where,
                            map_key(map, j)->line);
        if (!allowed)
            continue;
        int ok = 0;
        for (int j = 0; allowed[j] && !ok; j++)
            ok = ci ? !strcasecmp(allowed[j], k->text) : !strcmp(allowed[j], k->text);
        if (!ok) {
            const char *s = suggest(k->text, allowed);
            if (s)
                return fail(c, k, "unknown key '%s' in %s (did you mean '%s'?)", k->text, where, s);
            return fail(c, k, "unknown key '%s' in %s", k->text, where);
        }
    }
    return POPK_OK;
}

static popk_status get_number(ctx *c, const node *n, const char *what, double *out)
{
    if (n->kind != POPK_YT_SCALAR || is_null(n))
        return fail(c, n, "%s must be a number, found %s", what,
                    is_null(n) ? "nothing" : popk_yt_kind_name(n->kind));
    char *end;
    double v = strtod(n->text, &end);
    while (*end == ' ')
        end++;
    if (end == n->text || *end || !isfinite(v))
        return fail(c, n, "%s must be a number, found '%.40s'", what, n->text);
    *out = v;
    return POPK_OK;
}

static popk_status get_bool(ctx *c, const node *n, const char *what, int *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", NULL};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", NULL};
    if (n->kind == POPK_YT_SCALAR) {
        for (int i = 0; yes[i]; i++)
            if (!strcmp(n->text, yes[i]))
                return *out = 1, POPK_OK;
        for (int i = 0; no[i]; i++)
            if (!strcmp(n->text, no[i]))
                return *out = 0, POPK_OK;
    }
    return fail(c, n, "%s must be true or false, found '%.40s'", what,
                n->kind == POPK_YT_SCALAR ? n->text : popk_yt_kind_name(n->kind));
}

static popk_status get_text(ctx *c, const node *n, const char *what, char **out)
{
    popk_status st = expect_kind(c, n, POPK_YT_SCALAR, what);
    if (st)
        return st;
    free(*out);
    if (!(*out = strdup(n->text)))
        return nomem(c);
    return POPK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* names */

static const char *const function_names[] = {"exp", "log", "log10", "sqrt", "pow", "abs",
                                             "min", "max", "logit", "expit", "phi", "if", NULL};
static const char *const nonmem_items[] = {"ID", "TIME", "DV", "AMT", "EVID", "MDV", "CMT",
                                           "RATE", "II", "ADDL", "SS", "DVID", NULL};

static const char *reserved_reason(const char *name)
{
    if (!strcmp(name, "t") || !strcmp(name, "time"))
        return "time";
    if (!strcmp(name, "pi") || !strcmp(name, "e"))
        return "a constant";
    for (int i = 0; function_names[i]; i++)
        if (!strcmp(name, function_names[i]))
            return "a function";
    for (int i = 0; nonmem_items[i]; i++)
        if (!strcasecmp(name, nonmem_items[i]))
            return "a NONMEM data item";
    return NULL;
}

static int valid_identifier(const char *s)
{
    if (!isalpha((unsigned char)s[0]) && s[0] != '_')
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return 0;
    return 1;
}

static const sym *find_sym(const ctx *c, const char *name)
{
    for (int i = 0; i < c->nsyms; i++)
        if (!strcmp(c->syms[i].name, name))
            return &c->syms[i];
    return NULL;
}

/* Register a declared name; key is the YAML node that declares it. */
static popk_status declare(ctx *c, const node *key, sym_kind kind, int index, const char *verb)
{
    const char *name = key->text;
    if (!valid_identifier(name))
        return fail(c, key,
                    "'%.60s' is not a valid name (letters, digits and '_', not starting with a "
                    "digit)",
                    name);
    const char *why = reserved_reason(name);
    if (why)
        return fail(c, key, "'%s' is a reserved name (%s) and cannot be %s", name, why, verb);
    const sym *prev = find_sym(c, name);
    if (prev)
        return fail(c, key, "'%s' is already declared as %s (line %d)", name,
                    sym_kind_name[prev->kind], prev->line);
    if (c->nsyms == c->capsyms) {
        int cap = c->capsyms ? 2 * c->capsyms : 32;
        sym *p = realloc(c->syms, (size_t)cap * sizeof *p);
        if (!p)
            return nomem(c);
        c->syms = p;
        c->capsyms = cap;
    }
    c->syms[c->nsyms++] = (sym){name, kind, index, key->line};
    return POPK_OK;
}

static popk_status parse_expr(ctx *c, const node *n, const char *what, popk_expr **out)
{
    if (n->kind != POPK_YT_SCALAR || is_null(n))
        return fail(c, n, "%s must be an expression, found %s", what,
                    is_null(n) ? "nothing" : popk_yt_kind_name(n->kind));
    if (n->len > MODEL_MAX_EXPR)
        return fail(c, n, "expression too long (%zu characters; the limit is %d)", n->len,
                    MODEL_MAX_EXPR);
    popk_srcloc loc = {c->file, n->line, n->column};
    if (n->style == POPK_YT_QUOTED) {
        loc.column++;
    } else if (n->style == POPK_YT_BLOCK) {
        /* the text starts on the next line, after its indentation */
        loc.line++;
        size_t i = 0;
        for (int l = 1; l < loc.line && i < c->len; i++)
            if (c->buf[i] == '\n')
                l++;
        loc.column = 1;
        while (i < c->len && c->buf[i] == ' ') {
            i++;
            loc.column++;
        }
    }
    const char *text = n->text;
    size_t len = n->len;
    char *padded = NULL;
    if (n->style == POPK_YT_BLOCK && memchr(n->text, '\n', n->len)) {
        /* libyaml strips the block's indentation: put it back on continuation lines so that
         * columns in messages are columns of the file */
        size_t indent = (size_t)loc.column - 1, lines = 0;
        for (size_t i = 0; i < n->len; i++)
            lines += n->text[i] == '\n';
        if (!(padded = malloc(n->len + lines * indent + 1)))
            return nomem(c);
        size_t k = 0;
        for (size_t i = 0; i < n->len; i++) {
            padded[k++] = n->text[i];
            if (n->text[i] == '\n' && i + 1 < n->len)
                for (size_t j = 0; j < indent; j++)
                    padded[k++] = ' ';
        }
        padded[k] = '\0';
        text = padded;
        len = k;
    }
    *out = popk_expr_parse(text, len, &loc, c->err);
    free(padded);
    if (!*out)
        return expr_failed(c, c->err ? c->err->code : POPK_ERR_MODEL);
    return POPK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* parameters */

static popk_status read_param(ctx *c, const node *key, const node *val, popk_param *p,
                              int is_sigma)
{
    p->lower = -INFINITY;
    p->upper = INFINITY;
    p->line = key->line;
    if (!(p->name = strdup(key->text)))
        return nomem(c);
    const char *what = is_sigma ? "sigma" : "theta";
    char label[128];
    popk_status st;
    const node *init_node = val;
    if (val->kind == POPK_YT_MAP) {
        static const char *const theta_keys[] = {"init", "lower", "upper", "fixed", "unit",
                                                 "label", NULL};
        static const char *const sigma_keys[] = {"init", "var", "lower", "upper", "fixed",
                                                 "unit", "label", NULL};
        snprintf(label, sizeof label, "%s '%s'", what, key->text);
        if ((st = check_keys(c, val, is_sigma ? sigma_keys : theta_keys, 0, label)))
            return st;
        const node *init = map_get(val, "init"), *var = map_get(val, "var");
        if (init && var)
            return fail(c, var, "%s '%s' gives both init (an SD) and var; give one", what,
                        key->text);
        if (!init && !var)
            return fail(c, val, "%s '%s' needs an initial value ('init:')", what, key->text);
        if (init) {
            snprintf(label, sizeof label, "init of %s '%s'", what, key->text);
            if ((st = get_number(c, init, label, &p->init)))
                return st;
            init_node = init;
        } else {
            double v;
            snprintf(label, sizeof label, "var of sigma '%s'", key->text);
            if ((st = get_number(c, var, label, &v)))
                return st;
            if (v < 0)
                return fail(c, var, "var of sigma '%s' must not be negative", key->text);
            p->init = sqrt(v);
            init_node = var;
        }
        const node *n;
        if ((n = map_get(val, "lower"))) {
            snprintf(label, sizeof label, "lower bound of %s '%s'", what, key->text);
            if ((st = get_number(c, n, label, &p->lower)))
                return st;
        }
        if ((n = map_get(val, "upper"))) {
            snprintf(label, sizeof label, "upper bound of %s '%s'", what, key->text);
            if ((st = get_number(c, n, label, &p->upper)))
                return st;
        }
        if ((n = map_get(val, "fixed")) && (st = get_bool(c, n, "fixed", &p->fixed)))
            return st;
        if ((n = map_get(val, "unit")) && (st = get_text(c, n, "unit", &p->unit)))
            return st;
        if ((n = map_get(val, "label")) && (st = get_text(c, n, "label", &p->label)))
            return st;
    } else {
        snprintf(label, sizeof label, "%s '%s'", what, key->text);
        if ((st = get_number(c, val, label, &p->init)))
            return st;
    }
    if (!(p->lower < p->upper))
        return fail(c, val, "%s '%s': lower bound %g is not below upper bound %g", what,
                    key->text, p->lower, p->upper);
    if (p->fixed ? (p->init < p->lower || p->init > p->upper)
                 : (p->init <= p->lower || p->init >= p->upper))
        return fail(c, init_node,
                    "%s '%s': initial value %g must lie %sbetween the bounds %g and %g", what,
                    key->text, p->init, p->fixed ? "" : "strictly ", p->lower, p->upper);
    if (is_sigma && p->init < 0)
        return fail(c, init_node, "sigma '%s' is a standard deviation and must not be negative",
                    key->text);
    return POPK_OK;
}

static popk_status read_params(ctx *c, const node *sec, int is_sigma)
{
    popk_model *m = c->m;
    const char *what = is_sigma ? "sigma" : "theta";
    popk_status st = expect_kind(c, sec, POPK_YT_MAP, what);
    if (st || (st = check_keys(c, sec, NULL, 0, what)))
        return st;
    popk_param *p = calloc((size_t)sec->n + 1, sizeof *p);
    if (!p)
        return nomem(c);
    if (is_sigma)
        m->sigma = p;
    else
        m->theta = p;
    for (int i = 0; i < sec->n; i++) {
        if ((st = declare(c, map_key(sec, i), is_sigma ? SYM_SIGMA : SYM_THETA, i, "declared")))
            return st;
        if (is_sigma)
            m->nsigma++;
        else
            m->ntheta++;
        if ((st = read_param(c, map_key(sec, i), map_val(sec, i), &p[i], is_sigma)))
            return st;
    }
    return POPK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* omega */

/* Cholesky test of positive definiteness of an n x n row-major matrix. */
static int positive_definite(const double *a, int n)
{
    double l[32 * 32];
    if (n > 32)
        return 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double s = a[i * n + j];
            for (int k = 0; k < j; k++)
                s -= l[i * n + k] * l[j * n + k];
            if (i == j) {
                if (!(s > 0))
                    return 0;
                l[i * n + i] = sqrt(s);
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    return 1;
}

static popk_status add_eta(ctx *c, const node *key, int block)
{
    popk_model *m = c->m;
    popk_status st;
    if (key->kind != POPK_YT_SCALAR)
        return fail(c, key, "eta names must be names, found %s", popk_yt_kind_name(key->kind));
    if ((st = declare(c, key, SYM_ETA, m->neta, "declared")))
        return st;
    char **names = realloc(m->eta_name, (size_t)(m->neta + 1) * sizeof *names);
    int *blk = realloc(m->omega_block, (size_t)(m->neta + 1) * sizeof *blk);
    if (names)
        m->eta_name = names;
    if (blk)
        m->omega_block = blk;
    if (!names || !blk || !(m->eta_name[m->neta] = strdup(key->text)))
        return nomem(c);
    m->omega_block[m->neta] = block;
    m->neta++;
    return POPK_OK;
}

static popk_status add_block(ctx *c, int fixed)
{
    popk_model *m = c->m;
    int *f = realloc(m->omega_fixed, (size_t)(m->nomega_block + 1) * sizeof *f);
    if (!f)
        return nomem(c);
    m->omega_fixed = f;
    f[m->nomega_block++] = fixed;
    return POPK_OK;
}

/* Values of the omega matrix, collected while reading and placed at the end. */
typedef struct {
    int i, j;
    double v;
} omega_entry;

typedef struct {
    omega_entry *e;
    int n, cap;
} omega_list;

static popk_status omega_put(ctx *c, omega_list *l, int i, int j, double v)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        omega_entry *p = realloc(l->e, (size_t)cap * sizeof *p);
        if (!p)
            return nomem(c);
        l->e = p;
        l->cap = cap;
    }
    l->e[l->n++] = (omega_entry){i, j, v};
    return POPK_OK;
}

/* One diagonal entry: `eta: 0.3` or `eta: {var: 0.3, fixed: true}` or `{sd: 0.55}`. */
static popk_status read_omega_diag(ctx *c, const node *key, const node *val, omega_list *l)
{
    popk_status st;
    double v = 0;
    int fixed = 0;
    char label[128];
    const node *vnode = val;
    if (val->kind == POPK_YT_MAP) {
        static const char *const keys[] = {"var", "sd", "fixed", NULL};
        snprintf(label, sizeof label, "omega '%s'", key->text);
        if ((st = check_keys(c, val, keys, 0, label)))
            return st;
        const node *var = map_get(val, "var"), *sd = map_get(val, "sd"), *fx;
        if (!!var == !!sd)
            return fail(c, val, "omega '%s' needs exactly one of 'var' and 'sd'", key->text);
        vnode = var ? var : sd;
        snprintf(label, sizeof label, "omega '%s'", key->text);
        if ((st = get_number(c, vnode, label, &v)))
            return st;
        if (sd) {
            if (v < 0)
                return fail(c, vnode, "sd of omega '%s' must not be negative", key->text);
            v *= v;
        }
        if ((fx = map_get(val, "fixed")) && (st = get_bool(c, fx, "fixed", &fixed)))
            return st;
    } else {
        snprintf(label, sizeof label, "omega '%s'", key->text);
        if ((st = get_number(c, val, label, &v)))
            return st;
    }
    if (fixed ? v < 0 : v <= 0)
        return fail(c, vnode, "variance of '%s' must be %s, found %g", key->text,
                    fixed ? "zero or more" : "positive", v);
    if ((st = add_eta(c, key, c->m->nomega_block)) || (st = add_block(c, fixed)))
        return st;
    return omega_put(c, l, c->m->neta - 1, c->m->neta - 1, v);
}

static popk_status read_number_list(ctx *c, const node *n, const char *what, int count,
                                    double *out)
{
    popk_status st = expect_kind(c, n, POPK_YT_SEQ, what);
    if (st)
        return st;
    if (n->n != count)
        return fail(c, n, "%s needs %d value%s, found %d", what, count, count == 1 ? "" : "s",
                    n->n);
    for (int i = 0; i < count; i++)
        if ((st = get_number(c, n->item[i], what, &out[i])))
            return st;
    return POPK_OK;
}

static popk_status read_omega_block(ctx *c, const node *spec, omega_list *l)
{
    static const char *const keys[] = {"block", "values", "sd", "correlation", "fixed", NULL};
    popk_status st;
    if ((st = check_keys(c, spec, keys, 0, "an omega block")))
        return st;
    const node *names = map_get(spec, "block");
    if ((st = expect_kind(c, names, POPK_YT_SEQ, "block (a list of eta names)")))
        return st;
    int n = names->n;
    if (n < 1 || n > 32)
        return fail(c, names, "an omega block holds 1 to 32 etas, found %d", n);
    int fixed = 0;
    const node *fx = map_get(spec, "fixed");
    if (fx && (st = get_bool(c, fx, "fixed", &fixed)))
        return st;
    double a[32 * 32];
    const node *values = map_get(spec, "values"), *sd = map_get(spec, "sd"),
               *corr = map_get(spec, "correlation");
    if (values && (sd || corr))
        return fail(c, values, "give an omega block either as 'values' (lower triangle of the "
                               "covariance) or as 'sd' and 'correlation', not both");
    if (values) {
        double tri[32 * 33 / 2];
        if ((st = read_number_list(c, values, "values (lower triangle, row by row)",
                                   n * (n + 1) / 2, tri)))
            return st;
        for (int i = 0, k = 0; i < n; i++)
            for (int j = 0; j <= i; j++, k++)
                a[i * n + j] = a[j * n + i] = tri[k];
    } else if (sd) {
        double s[32], r[32 * 31 / 2];
        if ((st = read_number_list(c, sd, "sd", n, s)))
            return st;
        if (n > 1 && !corr)
            return fail(c, sd, "an omega block given by 'sd' needs 'correlation' (lower "
                               "triangle without the diagonal, row by row)");
        if (n > 1 && (st = read_number_list(c, corr, "correlation", n * (n - 1) / 2, r)))
            return st;
        for (int i = 0, k = 0; i < n; i++) {
            if (!(s[i] > 0))
                return fail(c, sd->item[i], "sd must be positive, found %g", s[i]);
            a[i * n + i] = s[i] * s[i];
            for (int j = 0; j < i; j++, k++) {
                if (!(r[k] > -1 && r[k] < 1))
                    return fail(c, corr->item[k], "a correlation must lie strictly between "
                                                  "-1 and 1, found %g", r[k]);
                a[i * n + j] = a[j * n + i] = r[k] * s[i] * s[j];
            }
        }
    } else {
        return fail(c, spec, "an omega block needs 'values' or 'sd' and 'correlation'");
    }
    if (!positive_definite(a, n))
        return fail(c, values ? values : sd, "omega block is not positive definite");
    int block = c->m->nomega_block, first = c->m->neta;
    for (int i = 0; i < n; i++)
        if ((st = add_eta(c, names->item[i], block)))
            return st;
    if ((st = add_block(c, fixed)))
        return st;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if ((st = omega_put(c, l, first + i, first + j, a[i * n + j])))
                return st;
    return POPK_OK;
}

static popk_status read_omega(ctx *c, const node *sec)
{
    popk_model *m = c->m;
    omega_list l = {0};
    popk_status st = POPK_OK;
    if (sec->kind == POPK_YT_MAP) {
        if (!(st = check_keys(c, sec, NULL, 0, "omega")))
            for (int i = 0; i < sec->n && !st; i++)
                st = read_omega_diag(c, map_key(sec, i), map_val(sec, i), &l);
    } else if (sec->kind == POPK_YT_SEQ) {
        for (int k = 0; k < sec->n && !st; k++) {
            const node *item = sec->item[k];
            if ((st = expect_kind(c, item, POPK_YT_MAP, "an omega item")))
                break;
            if (map_get(item, "block")) {
                st = read_omega_block(c, item, &l);
            } else if (!(st = check_keys(c, item, NULL, 0, "omega"))) {
                for (int i = 0; i < item->n && !st; i++)
                    st = read_omega_diag(c, map_key(item, i), map_val(item, i), &l);
            }
        }
    } else {
        st = fail(c, sec, "omega must be a mapping (eta: variance) or a list of such mappings "
                          "and blocks, found %s", popk_yt_kind_name(sec->kind));
    }
    if (!st && m->neta > 0) {
        if (!(m->omega = calloc((size_t)m->neta * (size_t)m->neta, sizeof *m->omega)))
            st = nomem(c);
        for (int k = 0; !st && k < l.n; k++)
            m->omega[l.e[k].i * m->neta + l.e[k].j] = l.e[k].v;
    }
    free(l.e);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* covariates */

static popk_status read_levels(ctx *c, const node *key, const node *lv, popk_covdef *cv)
{
    popk_status st;
    int n = lv->n;
    if (n < 1)
        return fail(c, lv, "covariate '%s' needs at least one level", key->text);
    cv->kind = POPK_COVDEF_CATEGORICAL;
    cv->levels = calloc((size_t)n, sizeof *cv->levels);
    cv->codes = calloc((size_t)n, sizeof *cv->codes);
    if (!cv->levels || !cv->codes)
        return nomem(c);
    for (int i = 0; i < n; i++) {
        const node *name = lv->kind == POPK_YT_MAP ? map_key(lv, i) : lv->item[i];
        if ((st = expect_kind(c, name, POPK_YT_SCALAR, "a level name")))
            return st;
        for (int j = 0; j < i; j++)
            if (!strcmp(cv->levels[j], name->text))
                return fail(c, name, "level '%s' of covariate '%s' appears twice", name->text,
                            key->text);
        if (!(cv->levels[i] = strdup(name->text)))
            return nomem(c);
        cv->nlevels++;
        if (lv->kind == POPK_YT_MAP) {
            char what[160];
            snprintf(what, sizeof what, "the code of level '%s'", name->text);
            if ((st = get_number(c, map_val(lv, i), what, &cv->codes[i])))
                return st;
            for (int j = 0; j < i; j++)
                if (cv->codes[j] == cv->codes[i])
                    return fail(c, map_val(lv, i), "levels '%s' and '%s' of covariate '%s' "
                                                   "have the same code %g",
                                cv->levels[j], cv->levels[i], key->text, cv->codes[i]);
        } else {
            cv->codes[i] = i;
        }
    }
    return POPK_OK;
}

static int all_numeric_values(const node *map)
{
    for (int i = 0; i < map->n; i++) {
        const node *v = map_val(map, i);
        char *end;
        if (v->kind != POPK_YT_SCALAR || is_null(v))
            return 0;
        strtod(v->text, &end);
        if (end == v->text || *end)
            return 0;
    }
    return map->n > 0;
}

static popk_status read_covariate(ctx *c, const node *key, const node *val, popk_covdef *cv)
{
    static const char *const keys[] = {"unit", "reference", "default", "levels", NULL};
    popk_status st;
    cv->reference = NAN;
    cv->line = key->line;
    if (!(cv->name = strdup(key->text)))
        return nomem(c);
    if (is_null(val))
        return POPK_OK;
    if (val->kind == POPK_YT_SEQ)
        return read_levels(c, key, val, cv);
    if (val->kind == POPK_YT_SCALAR)
        return fail(c, val, "covariate '%s' must be a mapping ({unit: ..., reference: ...}) or "
                            "a list of levels, found '%.40s'",
                    key->text, val->text);
    int spec = 0;
    for (int i = 0; keys[i]; i++)
        spec |= map_get(val, keys[i]) != NULL;
    if (!spec && all_numeric_values(val))
        return read_levels(c, key, val, cv);
    char where[128];
    snprintf(where, sizeof where, "covariate '%s'", key->text);
    if ((st = check_keys(c, val, keys, 0, where)))
        return st;
    const node *n;
    if ((n = map_get(val, "levels"))) {
        if (n->kind != POPK_YT_SEQ && n->kind != POPK_YT_MAP)
            return fail(c, n, "levels of '%s' must be a list or a mapping of level: code",
                        key->text);
        if ((st = read_levels(c, key, n, cv)))
            return st;
    }
    if ((n = map_get(val, "unit")) && (st = get_text(c, n, "unit", &cv->unit)))
        return st;
    if ((n = map_get(val, "reference"))) {
        if (cv->kind == POPK_COVDEF_CATEGORICAL)
            return fail(c, n, "a categorical covariate has no reference value (use 'default')");
        if ((st = get_number(c, n, "reference", &cv->reference)))
            return st;
    }
    if ((n = map_get(val, "default"))) {
        cv->has_default = 1;
        if (cv->kind == POPK_COVDEF_CATEGORICAL) {
            if ((st = expect_kind(c, n, POPK_YT_SCALAR, "default")))
                return st;
            int found = -1;
            for (int i = 0; i < cv->nlevels && found < 0; i++)
                if (!strcmp(cv->levels[i], n->text))
                    found = i;
            if (found < 0)
                return fail(c, n, "default '%s' is not a level of covariate '%s'", n->text,
                            key->text);
            cv->default_value = cv->codes[found];
        } else if ((st = get_number(c, n, "default", &cv->default_value))) {
            return st;
        }
    }
    return POPK_OK;
}

static popk_status read_covariates(ctx *c, const node *sec)
{
    popk_status st = expect_kind(c, sec, POPK_YT_MAP, "covariates");
    if (st || (st = check_keys(c, sec, NULL, 0, "covariates")))
        return st;
    if (!(c->m->cov = calloc((size_t)sec->n + 1, sizeof *c->m->cov)))
        return nomem(c);
    for (int i = 0; i < sec->n; i++) {
        if ((st = declare(c, map_key(sec, i), SYM_COV, i, "declared")))
            return st;
        c->m->ncov++;
        if ((st = read_covariate(c, map_key(sec, i), map_val(sec, i), &c->m->cov[i])))
            return st;
    }
    return POPK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* structure */

static popk_status add_cmt(ctx *c, const node *key, const char *name)
{
    popk_model *m = c->m;
    char **p = realloc(m->cmt_name, (size_t)(m->ncmt + 1) * sizeof *p);
    if (!p)
        return nomem(c);
    m->cmt_name = p;
    if (!(p[m->ncmt] = strdup(name)))
        return nomem(c);
    if (key) {
        popk_status st = declare(c, key, SYM_CMT, m->ncmt, "declared");
        if (st) {
            free(p[m->ncmt]);
            return st;
        }
    } else {
        /* linear compartments are implicit: register them with the section's position */
        node fake = {.kind = POPK_YT_SCALAR, .text = p[m->ncmt], .line = c->sec_linear->line,
                     .column = c->sec_linear->column};
        popk_status st = declare(c, &fake, SYM_CMT, m->ncmt, "declared");
        if (st) {
            free(p[m->ncmt]);
            return st;
        }
    }
    m->ncmt++;
    return POPK_OK;
}

static const char *const lin_key_name[POPK_LIN_NPAR] = {"CL", "V", "Q", "V2", "Q3", "V3", "KA",
                                                         "K", "K12", "K21", "K13", "K31"};

static popk_status read_linear(ctx *c, const node *sec)
{
    static const char *const keys[] = {"compartments", "CL", "V", "Q", "Q2", "V2", "Q3", "V3",
                                       "KA", "K", "K12", "K21", "K13", "K31", NULL};
    popk_model *m = c->m;
    popk_status st = expect_kind(c, sec, POPK_YT_MAP, "linear");
    if (st || (st = check_keys(c, sec, keys, 0, "linear")))
        return st;
    m->kind = POPK_STRUCT_LINEAR;
    const node *q = map_get(sec, "Q"), *q2 = map_get(sec, "Q2");
    if (q && q2)
        return fail(c, q2, "linear: 'Q' and 'Q2' name the same parameter; give one");
    for (int k = 0; k < POPK_LIN_NPAR; k++) {
        const node *n = k == POPK_LIN_Q2 ? (q ? q : q2) : map_get(sec, lin_key_name[k]);
        c->lin_node[k] = (node *)n;
        char what[64];
        snprintf(what, sizeof what, "linear parameter %s", lin_key_name[k]);
        if (n && (st = parse_expr(c, n, what, &c->lin_expr[k])))
            return st;
    }
    node *const *ln = c->lin_node;
    int has_rate = ln[POPK_LIN_K] || ln[POPK_LIN_K12] || ln[POPK_LIN_K21] || ln[POPK_LIN_K13] ||
                   ln[POPK_LIN_K31];
    int has_clear = ln[POPK_LIN_CL] || ln[POPK_LIN_Q2] || ln[POPK_LIN_V2] || ln[POPK_LIN_Q3] ||
                    ln[POPK_LIN_V3];
    if (has_rate && has_clear)
        return fail(c, sec, "linear: give clearances (CL, V, Q, V2, Q3, V3) or rate constants "
                            "(K, K12, K21, K13, K31), not both");
    int ncmt;
    m->lin_rate_form = has_rate;
    if (has_rate) {
        if (!ln[POPK_LIN_K])
            return fail(c, sec, "linear: the rate-constant form needs K (elimination rate)");
        if (!ln[POPK_LIN_K12] != !ln[POPK_LIN_K21])
            return fail(c, ln[POPK_LIN_K12] ? ln[POPK_LIN_K12] : ln[POPK_LIN_K21],
                        "linear: K12 and K21 go together");
        if (!ln[POPK_LIN_K13] != !ln[POPK_LIN_K31])
            return fail(c, ln[POPK_LIN_K13] ? ln[POPK_LIN_K13] : ln[POPK_LIN_K31],
                        "linear: K13 and K31 go together");
        if (ln[POPK_LIN_K13] && !ln[POPK_LIN_K12])
            return fail(c, ln[POPK_LIN_K13], "linear: K13/K31 need K12/K21");
        ncmt = ln[POPK_LIN_K13] ? 3 : ln[POPK_LIN_K12] ? 2 : 1;
    } else {
        if (!ln[POPK_LIN_CL] || !ln[POPK_LIN_V])
            return fail(c, sec, "linear: needs CL and V (clearance form) or K (rate-constant "
                                "form)");
        if (!ln[POPK_LIN_Q2] != !ln[POPK_LIN_V2])
            return fail(c, ln[POPK_LIN_Q2] ? ln[POPK_LIN_Q2] : ln[POPK_LIN_V2],
                        "linear: Q and V2 go together");
        if (!ln[POPK_LIN_Q3] != !ln[POPK_LIN_V3])
            return fail(c, ln[POPK_LIN_Q3] ? ln[POPK_LIN_Q3] : ln[POPK_LIN_V3],
                        "linear: Q3 and V3 go together");
        if (ln[POPK_LIN_Q3] && !ln[POPK_LIN_Q2])
            return fail(c, ln[POPK_LIN_Q3], "linear: Q3/V3 need Q/V2");
        ncmt = ln[POPK_LIN_Q3] ? 3 : ln[POPK_LIN_Q2] ? 2 : 1;
    }
    const node *nc = map_get(sec, "compartments");
    if (nc) {
        double v;
        if ((st = get_number(c, nc, "compartments", &v)))
            return st;
        if (v != 1 && v != 2 && v != 3)
            return fail(c, nc, "linear: compartments must be 1, 2 or 3, found %g", v);
        if ((int)v != ncmt)
            return fail(c, nc, "linear: compartments is %d but the parameters given describe "
                               "%d compartment%s", (int)v, ncmt, ncmt == 1 ? "" : "s");
    }
    m->lin_ncmt = ncmt;
    m->lin_depot = ln[POPK_LIN_KA] != NULL;
    if (m->lin_depot && (st = add_cmt(c, NULL, "depot")))
        return st;
    if ((st = add_cmt(c, NULL, "central")))
        return st;
    if (ncmt >= 2 && (st = add_cmt(c, NULL, "peripheral1")))
        return st;
    if (ncmt >= 3 && (st = add_cmt(c, NULL, "peripheral2")))
        return st;
    return POPK_OK;
}

static popk_status read_odes(ctx *c, const node *sec)
{
    popk_model *m = c->m;
    popk_status st = expect_kind(c, sec, POPK_YT_MAP, "odes");
    if (st || (st = check_keys(c, sec, NULL, 0, "odes")))
        return st;
    if (sec->n < 1)
        return fail(c, sec, "odes needs at least one compartment");
    m->kind = POPK_STRUCT_ODE;
    c->rhs_expr = calloc((size_t)sec->n, sizeof *c->rhs_expr);
    if (!c->rhs_expr)
        return nomem(c);
    for (int i = 0; i < sec->n; i++) {
        if ((st = add_cmt(c, map_key(sec, i), map_key(sec, i)->text)))
            return st;
    }
    for (int i = 0; i < sec->n; i++) {
        char what[128];
        snprintf(what, sizeof what, "the right-hand side of '%s'", map_key(sec, i)->text);
        if ((st = parse_expr(c, map_val(sec, i), what, &c->rhs_expr[i])))
            return st;
    }
    return POPK_OK;
}

/* A compartment given by name or by number (1-based); returns its number. */
static popk_status read_cmt_ref(ctx *c, const node *n, int *cmt)
{
    popk_model *m = c->m;
    popk_status st = expect_kind(c, n, POPK_YT_SCALAR, "a compartment");
    if (st)
        return st;
    if (m->ncmt == 0)
        return fail(c, n, "unknown compartment '%s': this model has no compartments (no "
                          "'linear:' or 'odes:' section)", n->text);
    char *end;
    long v = strtol(n->text, &end, 10);
    if (end != n->text && !*end) {
        if (v < 1 || v > m->ncmt)
            return fail(c, n, "compartment number %ld is out of range (1 to %d)", v, m->ncmt);
        *cmt = (int)v;
        return POPK_OK;
    }
    for (int i = 0; i < m->ncmt; i++)
        if (!strcmp(m->cmt_name[i], n->text))
            return *cmt = i + 1, POPK_OK;
    /* cmt_name is not NULL-terminated: suggest over a terminated copy */
    const char *names[64];
    int k = 0;
    for (; k < m->ncmt && k < 63; k++)
        names[k] = m->cmt_name[k];
    names[k] = NULL;
    const char *s = suggest(n->text, names);
    if (s)
        return fail(c, n, "unknown compartment '%s' (did you mean '%s'?)", n->text, s);
    return fail(c, n, "unknown compartment '%s'", n->text);
}

static popk_status read_dosing(ctx *c, const node *sec)
{
    static const char *const keys[] = {"F", "ALAG", "RATE", "DUR", NULL};
    popk_model *m = c->m;
    popk_status st = expect_kind(c, sec, POPK_YT_MAP, "dosing");
    if (st || (st = check_keys(c, sec, NULL, 0, "dosing")))
        return st;
    for (int i = 0; i < sec->n; i++) {
        int cmt;
        if ((st = read_cmt_ref(c, map_key(sec, i), &cmt)))
            return st;
        for (int j = 0; j < i; j++) {
            int other;
            read_cmt_ref(c, map_key(sec, j), &other);
            if (other == cmt)
                return fail(c, map_key(sec, i), "dosing: compartment '%s' appears twice",
                            m->cmt_name[cmt - 1]);
        }
        const node *spec = map_val(sec, i);
        char where[128];
        snprintf(where, sizeof where, "dosing of '%s'", m->cmt_name[cmt - 1]);
        if ((st = expect_kind(c, spec, POPK_YT_MAP, where)) ||
            (st = check_keys(c, spec, keys, 1, where)))
            return st;
        for (int k = 0; k < spec->n; k++) {
            int a = 0;
            while (strcasecmp(dose_attr_name[a], map_key(spec, k)->text))
                a++;
            int idx = (cmt - 1) * DOSE_NATTR + a;
            char what[128];
            snprintf(what, sizeof what, "%s of '%s'", dose_attr_name[a], m->cmt_name[cmt - 1]);
            if ((st = parse_expr(c, map_val(spec, k), what, &c->dose_expr[idx])))
                return st;
        }
    }
    return POPK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* individual block, outputs */

static popk_status read_individual(ctx *c, const node *sec)
{
    popk_model *m = c->m;
    popk_status st = expect_kind(c, sec, POPK_YT_MAP, "individual");
    if (st || (st = check_keys(c, sec, NULL, 0, "individual")))
        return st;
    m->ind_name = calloc((size_t)sec->n + 1, sizeof *m->ind_name);
    m->ind_text = calloc((size_t)sec->n + 1, sizeof *m->ind_text);
    c->ind_expr = calloc((size_t)sec->n + 1, sizeof *c->ind_expr);
    if (!m->ind_name || !m->ind_text || !c->ind_expr)
        return nomem(c);
    for (int i = 0; i < sec->n; i++) {
        node *key = map_key(sec, i), *val = map_val(sec, i);
        if ((st = declare(c, key, SYM_IND, i, "assigned")))
            return st;
        if (!(m->ind_name[i] = strdup(key->text)))
            return nomem(c);
        m->nind++;
        char what[128];
        snprintf(what, sizeof what, "the value of '%s'", key->text);
        if ((st = parse_expr(c, val, what, &c->ind_expr[i])))
            return st;
        if (!(m->ind_text[i] = strdup(val->text)))
            return nomem(c);
    }
    return POPK_OK;
}

static const char *const errm_key[] = {"additive", "proportional", "combined_sd",
                                       "combined_var", "power", "log", NULL};
static const int errm_nparam[] = {1, 1, 2, 2, 2, 1};

static popk_status sigma_ref(ctx *c, const node *n, int *index)
{
    popk_status st = expect_kind(c, n, POPK_YT_SCALAR, "an error parameter (a sigma name)");
    if (st)
        return st;
    const sym *s = find_sym(c, n->text);
    if (s && s->kind == SYM_SIGMA)
        return *index = s->index, POPK_OK;
    if (s)
        return fail(c, n, "'%s' is %s; error models take sigma parameters (declare it under "
                          "'sigma:')", n->text, sym_kind_name[s->kind]);
    const char *names[256];
    int k = 0;
    for (; k < c->m->nsigma && k < 255; k++)
        names[k] = c->m->sigma[k].name;
    names[k] = NULL;
    const char *sug = suggest(n->text, names);
    if (sug)
        return fail(c, n, "unknown sigma '%s' (did you mean '%s'?)", n->text, sug);
    return fail(c, n, "unknown sigma '%s'", n->text);
}

static popk_status read_error_model(ctx *c, const node *spec, popk_output *o)
{
    popk_status st = expect_kind(c, spec, POPK_YT_MAP, "error");
    if (st || (st = check_keys(c, spec, errm_key, 0, "error")))
        return st;
    if (spec->n != 1)
        return fail(c, spec, "error needs exactly one model (additive, proportional, "
                             "combined_sd, combined_var, power or log), found %d", spec->n);
    int kind = 0;
    while (strcmp(errm_key[kind], map_key(spec, 0)->text))
        kind++;
    o->err = (popk_errm_kind)kind;
    const node *v = map_val(spec, 0);
    int need = errm_nparam[kind];
    int got = v->kind == POPK_YT_SEQ ? v->n : 1;
    if (got != need)
        return fail(c, v, "the %s error model takes %d parameter%s, found %d", errm_key[kind],
                    need, need == 1 ? "" : "s", got);
    int idx[2] = {-1, -1};
    for (int i = 0; i < need; i++)
        if ((st = sigma_ref(c, v->kind == POPK_YT_SEQ ? v->item[i] : v, &idx[i])))
            return st;
    switch (o->err) {
    case POPK_ERRM_ADD:
    case POPK_ERRM_LOG:
        o->sig_a = idx[0];
        break;
    case POPK_ERRM_PROP:
        o->sig_b = idx[0];
        break;
    case POPK_ERRM_COMB_SD:
    case POPK_ERRM_COMB_VAR:
        o->sig_a = idx[0];
        o->sig_b = idx[1];
        break;
    case POPK_ERRM_POW:
        o->sig_b = idx[0];
        o->sig_c = idx[1];
        break;
    }
    return POPK_OK;
}

static popk_status read_observe(ctx *c, const node *sec)
{
    static const char *const keys[] = {"value", "cmt", "dvid", "error", NULL};
    popk_model *m = c->m;
    popk_status st = expect_kind(c, sec, POPK_YT_MAP, "observe");
    if (st || (st = check_keys(c, sec, NULL, 0, "observe")))
        return st;
    if (sec->n < 1)
        return fail(c, sec, "observe needs at least one output");
    m->out = calloc((size_t)sec->n, sizeof *m->out);
    c->out_expr = calloc((size_t)sec->n, sizeof *c->out_expr);
    if (!m->out || !c->out_expr)
        return nomem(c);
    for (int i = 0; i < sec->n; i++) {
        node *key = map_key(sec, i), *spec = map_val(sec, i);
        popk_output *o = &m->out[i];
        o->sig_a = o->sig_b = o->sig_c = -1;
        o->line = key->line;
        if ((st = declare(c, key, SYM_OUT, i, "declared")))
            return st;
        if (!(o->name = strdup(key->text)))
            return nomem(c);
        m->nout++;
        char where[128];
        snprintf(where, sizeof where, "output '%s'", key->text);
        if ((st = expect_kind(c, spec, POPK_YT_MAP, where)) ||
            (st = check_keys(c, spec, keys, 0, where)))
            return st;
        const node *value = map_get(spec, "value"), *err = map_get(spec, "error"), *n;
        if (!value)
            return fail(c, spec, "output '%s' needs 'value:' (its prediction)", key->text);
        if (!err)
            return fail(c, spec, "output '%s' needs 'error:' (its residual error model)",
                        key->text);
        if ((st = parse_expr(c, value, "value", &c->out_expr[i])))
            return st;
        if (!(o->text = strdup(value->text)))
            return nomem(c);
        if ((n = map_get(spec, "cmt")) && (st = read_cmt_ref(c, n, &o->cmt)))
            return st;
        if ((n = map_get(spec, "dvid"))) {
            double v;
            if ((st = get_number(c, n, "dvid", &v)))
                return st;
            if (v != floor(v) || v < 1 || v > 1e9)
                return fail(c, n, "dvid must be a positive whole number, found %g", v);
            o->dvid = (int)v;
            for (int j = 0; j < i; j++)
                if (m->out[j].dvid == o->dvid)
                    return fail(c, n, "outputs '%s' and '%s' both answer dvid %d",
                                m->out[j].name, o->name, o->dvid);
        }
        if ((st = read_error_model(c, err, o)))
            return st;
    }
    return POPK_OK;
}

static popk_status read_derived(ctx *c, const node *sec)
{
    popk_model *m = c->m;
    popk_status st = expect_kind(c, sec, POPK_YT_MAP, "derived");
    if (st || (st = check_keys(c, sec, NULL, 0, "derived")))
        return st;
    m->derived_name = calloc((size_t)sec->n + 1, sizeof *m->derived_name);
    m->derived_slot = calloc((size_t)sec->n + 1, sizeof *m->derived_slot);
    c->der_expr = calloc((size_t)sec->n + 1, sizeof *c->der_expr);
    if (!m->derived_name || !m->derived_slot || !c->der_expr)
        return nomem(c);
    for (int i = 0; i < sec->n; i++) {
        node *key = map_key(sec, i), *val = map_val(sec, i);
        if ((st = declare(c, key, SYM_DERIVED, i, "declared")))
            return st;
        if (!(m->derived_name[i] = strdup(key->text)))
            return nomem(c);
        m->nderived++;
        char what[128];
        snprintf(what, sizeof what, "derived '%s'", key->text);
        if ((st = parse_expr(c, val, what, &c->der_expr[i])))
            return st;
    }
    return POPK_OK;
}

static popk_status read_solver(ctx *c, const node *sec)
{
    static const char *const keys[] = {"method", "rtol", "atol", "max_steps", NULL};
    static const char *const methods[] = {"auto", "expm", "bdf", "adams", NULL};
    popk_model *m = c->m;
    popk_status st = expect_kind(c, sec, POPK_YT_MAP, "solver");
    if (st || (st = check_keys(c, sec, keys, 0, "solver")))
        return st;
    const node *n;
    double v;
    if ((n = map_get(sec, "method"))) {
        if ((st = expect_kind(c, n, POPK_YT_SCALAR, "method")))
            return st;
        int k = 0;
        while (methods[k] && strcmp(methods[k], n->text))
            k++;
        if (!methods[k])
            return fail(c, n, "unknown solver method '%.40s' (one of auto, expm, bdf, adams)",
                        n->text);
        m->ode_method = (popk_ode_method)k;
    }
    if ((n = map_get(sec, "rtol"))) {
        if ((st = get_number(c, n, "rtol", &v)))
            return st;
        if (!(v > 0 && v < 1))
            return fail(c, n, "rtol must lie between 0 and 1, found %g", v);
        m->rtol = v;
    }
    if ((n = map_get(sec, "atol"))) {
        if ((st = get_number(c, n, "atol", &v)))
            return st;
        if (!(v > 0))
            return fail(c, n, "atol must be positive, found %g", v);
        m->atol = v;
    }
    if ((n = map_get(sec, "max_steps"))) {
        if ((st = get_number(c, n, "max_steps", &v)))
            return st;
        if (v != floor(v) || v < 1 || v > 1e12)
            return fail(c, n, "max_steps must be a positive whole number, found %g", v);
        m->max_steps = (long)v;
    }
    return POPK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* compilation */

static int slot_of(const ctx *c, const sym *s)
{
    const popk_model *m = c->m;
    switch (s->kind) {
    case SYM_THETA:
        return m->theta_slot + s->index;
    case SYM_ETA:
        return m->eta_slot + s->index;
    case SYM_SIGMA:
        return m->sigma_slot + s->index;
    case SYM_COV:
        return m->cov[s->index].slot;
    case SYM_IND:
        return m->ind_slot + s->index;
    case SYM_CMT:
        return m->amt_slot + s->index;
    case SYM_TIME:
        return m->time_slot;
    case SYM_OUT:
        return m->out[s->index].slot;
    case SYM_DERIVED:
        return m->derived_slot[s->index];
    }
    return -1;
}

static int allowed_in(sym_kind kind, expr_ctx where)
{
    switch (where) {
    case CTX_IND:
    case CTX_PK:
        return kind == SYM_THETA || kind == SYM_ETA || kind == SYM_COV || kind == SYM_IND;
    case CTX_RHS:
    case CTX_OUT:
        return kind == SYM_COV || kind == SYM_IND || kind == SYM_CMT || kind == SYM_TIME;
    case CTX_DERIVED:
        return kind == SYM_COV || kind == SYM_IND || kind == SYM_CMT || kind == SYM_TIME ||
               kind == SYM_OUT || kind == SYM_DERIVED;
    }
    return 0;
}

static int check_name(const char *name, int line, int column, void *user)
{
    ctx *c = user;
    const sym *s = find_sym(c, name);
    if (!s) {
        if (!strcmp(name, "t") || !strcmp(name, "time") || !strcmp(name, "TIME")) {
            if (c->cur_ctx == CTX_IND || c->cur_ctx == CTX_PK) {
                fail_pos(c, line, column, "time '%s' cannot be used in %s (it holds per-subject "
                                          "parameters); use it in odes, observe or derived",
                         name, ctx_name[c->cur_ctx]);
                return 1;
            }
        }
        return 0; /* unknown names are reported by the compiler with a suggestion */
    }
    if (!allowed_in(s->kind, c->cur_ctx)) {
        const char *hint = (s->kind == SYM_THETA || s->kind == SYM_ETA)
                               ? "; define an individual parameter from it"
                               : "";
        fail_pos(c, line, column, "%s '%s' cannot be used in %s%s",
                 s->kind == SYM_TIME ? "time" : sym_kind_name[s->kind], name,
                 ctx_name[c->cur_ctx], hint);
        return 1;
    }
    if (s->kind == SYM_COV)
        c->m->cov[s->index].used = 1;
    if (s->kind == SYM_DERIVED && c->cur_ctx == CTX_DERIVED && s->index >= c->cur_index) {
        fail_pos(c, line, column, "derived '%s' is used before it is assigned (line %d)", name,
                 s->line);
        return 1;
    }
    return 0;
}

static popk_status check_names(ctx *c, const popk_expr *e, expr_ctx where, int index)
{
    c->cur_ctx = where;
    c->cur_index = index;
    if (popk_expr_foreach_name(e, check_name, c))
        return POPK_ERR_MODEL;
    return POPK_OK;
}

typedef struct {
    const ctx *c;
    char *reads;    /* nind flags: the individual variables one expression reads */
} reads_of;

static int note_read(const char *name, int line, int column, void *user)
{
    reads_of *r = user;
    (void)line;
    (void)column;
    const sym *s = find_sym(r->c, name);
    if (s && s->kind == SYM_IND)
        r->reads[s->index] = 1;
    return 0;
}

/* Find a path j -> ... -> target through "reads" in the individual block; fills path.
 * Only used to explain an error, on at most 1024 variables. */
static int dep_path(const ctx *c, int j, int target, int *path, int *len, char *seen)
{
    int n = c->m->nind;
    path[(*len)++] = j;
    if (j == target)
        return 1;
    seen[j] = 1;
    reads_of r = {c, calloc((size_t)n, 1)};
    int found = 0;
    if (r.reads) {
        popk_expr_foreach_name(c->ind_expr[j], note_read, &r);
        for (int k = 0; k < n && !found; k++)
            found = r.reads[k] && !seen[k] && dep_path(c, k, target, path, len, seen);
        free(r.reads);
    }
    if (!found)
        (*len)--;
    return found;
}

/* Report the first use of an individual variable before its assignment, naming a cycle when
 * the late variable itself depends on the current one. */
static int order_name(const char *name, int line, int column, void *user)
{
    ctx *c = user;
    const sym *s = find_sym(c, name);
    if (!s || s->kind != SYM_IND || s->index < c->cur_index)
        return 0;
    int i = c->cur_index, n = c->m->nind;
    if (s->index == i) {
        fail_pos(c, line, column, "'%s' is defined in terms of itself", name);
        return 1;
    }
    int path[1024], len = 0;
    char *seen = calloc((size_t)n, 1);
    if (n <= 1024 && seen && dep_path(c, s->index, i, path, &len, seen)) {
        char chain[400];
        size_t pos = (size_t)snprintf(chain, sizeof chain, "%s", c->m->ind_name[i]);
        for (int k = 0; k < len && pos < sizeof chain; k++)
            pos += (size_t)snprintf(chain + pos, sizeof chain - pos, " -> %s",
                                    c->m->ind_name[path[k]]);
        free(seen);
        fail_pos(c, line, column, "cyclic definition: %s", chain);
        return 1;
    }
    free(seen);
    fail_pos(c, line, column, "'%s' is used before it is assigned (line %d)", name, s->line);
    return 1;
}

static popk_status compile(ctx *c, popk_prog **prog, int slot, const popk_expr *e)
{
    if (!*prog && !(*prog = popk_prog_new()))
        return nomem(c);
    popk_symtab st = {c->symtab, c->nsymtab};
    popk_status s = popk_prog_add(*prog, slot, e, &st, c->err);
    if (s)
        return expr_failed(c, s);
    return POPK_OK;
}

static popk_status build_frame(ctx *c)
{
    popk_model *m = c->m;
    int k = 0;
    m->theta_slot = k;
    k += m->ntheta;
    m->eta_slot = k;
    k += m->neta;
    m->sigma_slot = k;
    k += m->nsigma;
    m->cov_slot = k;
    for (int i = 0; i < m->ncov; i++)
        m->cov[i].slot = k++;
    m->ind_slot = k;
    k += m->nind;
    for (int i = 0; i < POPK_LIN_NPAR; i++)
        m->lin_slot[i] = c->lin_expr[i] ? k++ : -1;
    for (int i = 0; i < m->ncmt; i++) {
        int *slots[DOSE_NATTR] = {&m->dose[i].f_slot, &m->dose[i].alag_slot,
                                  &m->dose[i].rate_slot, &m->dose[i].dur_slot};
        for (int a = 0; a < DOSE_NATTR; a++)
            *slots[a] = c->dose_expr[i * DOSE_NATTR + a] ? k++ : -1;
    }
    m->time_slot = k++;
    m->amt_slot = k;
    k += m->ncmt;
    m->deriv_slot = k;
    k += m->ncmt;
    for (int i = 0; i < m->nout; i++)
        m->out[i].slot = k++;
    for (int i = 0; i < m->nderived; i++)
        m->derived_slot[i] = k++;
    m->nslots = k;

    /* the compiler's symbol table: every declared name plus the names of time */
    c->symtab = calloc((size_t)c->nsyms + 3, sizeof *c->symtab);
    if (!c->symtab)
        return nomem(c);
    for (int i = 0; i < c->nsyms; i++) {
        popk_symbol *s = &c->symtab[c->nsymtab++];
        s->name = c->syms[i].name;
        s->slot = slot_of(c, &c->syms[i]);
        if (c->syms[i].kind == SYM_COV) {
            const popk_covdef *cv = &m->cov[c->syms[i].index];
            if (cv->kind == POPK_COVDEF_CATEGORICAL) {
                s->nlevels = cv->nlevels;
                s->levels = (const char *const *)cv->levels;
                s->level_codes = cv->codes;
            }
        }
    }
    static const char *const time_names[] = {"t", "time", "TIME"};
    for (int i = 0; i < 3; i++)
        c->symtab[c->nsymtab++] = (popk_symbol){time_names[i], m->time_slot, 0, NULL, NULL};
    return POPK_OK;
}

/* In the right-hand sides, amounts are the states and time varies; individual parameters
 * and covariates are constant between events. */
static popk_expr_role rhs_role(const char *name, void *user)
{
    const sym *s = find_sym(user, name);
    if (s)
        return s->kind == SYM_CMT ? POPK_EXPR_ROLE_STATE : POPK_EXPR_ROLE_CONST;
    if (!strcmp(name, "t") || !strcmp(name, "time") || !strcmp(name, "TIME"))
        return POPK_EXPR_ROLE_VARYING;
    return POPK_EXPR_ROLE_CONST;
}

/* Decide whether the odes are linear with constant coefficients (solvable by matrix
 * exponential); with method expm, a system that is not is a load error at the first
 * offending place. */
static popk_status classify_odes(ctx *c)
{
    popk_model *m = c->m;
    m->ode_affine = 1;
    for (int i = 0; i < m->ncmt && m->ode_affine; i++) {
        popk_error why;
        popk_error_clear(&why);
        int r = popk_expr_affine(c->rhs_expr[i], rhs_role, c, &why);
        if (r < 0)
            return nomem(c);
        if (r > 0)
            continue;
        m->ode_affine = 0;
        char msg[sizeof why.message + 128], full[sizeof msg + 300];
        snprintf(msg, sizeof msg, "the right-hand side of '%s' is not linear in the amounts: %s",
                 m->cmt_name[i], why.message);
        snprintf(full, sizeof full, "%s:%d:%d: %s", c->file, why.line, why.column, msg);
        if (!(m->ode_nonaffine = strdup(full)))
            return nomem(c);
        if (m->ode_method == POPK_ODE_EXPM)
            return fail_pos(c, why.line, why.column, "solver method 'expm' needs linear odes: %s",
                            msg);
    }
    return POPK_OK;
}

static popk_status compile_all(ctx *c)
{
    popk_model *m = c->m;
    popk_status st;
    /* names first (context rules), then assignment order, then code */
    for (int i = 0; i < m->nind; i++)
        if ((st = check_names(c, c->ind_expr[i], CTX_IND, i)))
            return st;
    for (int i = 0; i < m->nind; i++) {
        c->cur_index = i;
        if (popk_expr_foreach_name(c->ind_expr[i], order_name, c))
            return POPK_ERR_MODEL;
    }
    for (int i = 0; i < m->nind; i++)
        if ((st = compile(c, &m->prog_pk, m->ind_slot + i, c->ind_expr[i])))
            return st;
    for (int k = 0; k < POPK_LIN_NPAR; k++)
        if (c->lin_expr[k] && ((st = check_names(c, c->lin_expr[k], CTX_PK, 0)) ||
                               (st = compile(c, &m->prog_pk, m->lin_slot[k], c->lin_expr[k]))))
            return st;
    for (int i = 0; i < m->ncmt; i++) {
        int slots[DOSE_NATTR] = {m->dose[i].f_slot, m->dose[i].alag_slot, m->dose[i].rate_slot,
                                 m->dose[i].dur_slot};
        for (int a = 0; a < DOSE_NATTR; a++) {
            popk_expr *e = c->dose_expr[i * DOSE_NATTR + a];
            if (e && ((st = check_names(c, e, CTX_PK, 0)) ||
                      (st = compile(c, &m->prog_pk, slots[a], e))))
                return st;
        }
    }
    if (m->kind == POPK_STRUCT_ODE)
        for (int i = 0; i < m->ncmt; i++)
            if ((st = check_names(c, c->rhs_expr[i], CTX_RHS, i)) ||
                (st = compile(c, &m->prog_rhs, m->deriv_slot + i, c->rhs_expr[i])))
                return st;
    if (m->kind == POPK_STRUCT_ODE && (st = classify_odes(c)))
        return st;
    for (int i = 0; i < m->nout; i++) {
        if ((st = check_names(c, c->out_expr[i], CTX_OUT, i)) ||
            (st = compile(c, &m->prog_out, m->out[i].slot, c->out_expr[i])))
            return st;
        popk_error why;
        int r = popk_expr_affine(c->out_expr[i], rhs_role, c, &why);
        if (r < 0)
            return nomem(c);
        m->out[i].affine = r;
    }
    for (int i = 0; i < m->nderived; i++)
        if ((st = check_names(c, c->der_expr[i], CTX_DERIVED, i)) ||
            (st = compile(c, &m->prog_out, m->derived_slot[i], c->der_expr[i])))
            return st;
    return POPK_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* the whole file */

static popk_status read_sections(ctx *c, const node *root)
{
    static const char *const keys[] = {"name", "description", "reference", "theta", "omega",
                                       "sigma", "covariates", "individual", "linear", "odes",
                                       "default_dose", "dosing", "observe", "derived",
                                       "solver", "fit", NULL};
    popk_model *m = c->m;
    popk_status st;
    if ((st = check_keys(c, root, keys, 0, "the model")))
        return st;
    node **slot[] = {NULL, NULL, NULL, &c->sec_theta, &c->sec_omega, &c->sec_sigma,
                     &c->sec_cov, &c->sec_ind, &c->sec_linear, &c->sec_odes,
                     &c->sec_default_dose, &c->sec_dosing, &c->sec_observe, &c->sec_derived,
                     &c->sec_solver, NULL};
    for (int i = 0; i < root->n; i++) {
        const node *k = map_key(root, i);
        node *v = map_val(root, i);
        int j = 0;
        while (strcmp(keys[j], k->text))
            j++;
        if (j == 0 && (st = get_text(c, v, "name", &m->name)))
            return st;
        if (j == 1 && (st = get_text(c, v, "description", &m->description)))
            return st;
        if (j == 2 && (st = get_text(c, v, "reference", &m->reference)))
            return st;
        if (j == 15) {
            /* results written by 'popk fit' (informational; the estimates are the inits) */
            if (!is_null(v) && (st = expect_kind(c, v, POPK_YT_MAP, "fit")))
                return st;
            continue;
        }
        if (j >= 3) {
            if (is_null(v) && j != 10)
                continue; /* an empty section is the same as an absent one */
            *slot[j] = v;
        }
    }
    if (c->sec_linear && c->sec_odes)
        return fail(c, c->sec_odes, "a model has either 'linear:' or 'odes:', not both");
    if (!c->sec_observe)
        return fail_pos(c, root->line, root->column,
                        "the model has no 'observe:' section (at least one output is needed)");

    if (c->sec_theta && (st = read_params(c, c->sec_theta, 0)))
        return st;
    if (c->sec_omega && (st = read_omega(c, c->sec_omega)))
        return st;
    if (c->sec_sigma && (st = read_params(c, c->sec_sigma, 1)))
        return st;
    if (c->sec_cov && (st = read_covariates(c, c->sec_cov)))
        return st;
    if (c->sec_linear && (st = read_linear(c, c->sec_linear)))
        return st;
    if (c->sec_odes && (st = read_odes(c, c->sec_odes)))
        return st;
    m->dose = calloc((size_t)m->ncmt + 1, sizeof *m->dose);
    c->dose_expr = calloc((size_t)m->ncmt * DOSE_NATTR + 1, sizeof *c->dose_expr);
    if (!m->dose || !c->dose_expr)
        return nomem(c);
    if (c->sec_ind && (st = read_individual(c, c->sec_ind)))
        return st;
    if (c->sec_dosing && (st = read_dosing(c, c->sec_dosing)))
        return st;
    if ((st = read_observe(c, c->sec_observe)))
        return st;
    if (c->sec_derived && (st = read_derived(c, c->sec_derived)))
        return st;
    if (c->sec_solver && (st = read_solver(c, c->sec_solver)))
        return st;

    /* default compartments */
    if (m->ncmt > 0) {
        /* the depot, else central (linear); the first compartment (odes) */
        m->default_dose_cmt = 1;
        if (c->sec_default_dose && (st = read_cmt_ref(c, c->sec_default_dose,
                                                      &m->default_dose_cmt)))
            return st;
        m->default_obs_cmt = m->kind == POPK_STRUCT_LINEAR ? (m->lin_depot ? 2 : 1) : 1;
        if (m->out[0].cmt > 0)
            m->default_obs_cmt = m->out[0].cmt;
    } else if (c->sec_default_dose) {
        return read_cmt_ref(c, c->sec_default_dose, &m->default_dose_cmt);
    }

    /* every sigma serves some error model: an unused one is a mistake, not a parameter */
    for (int s = 0; s < m->nsigma; s++) {
        int used = 0;
        for (int o = 0; o < m->nout; o++)
            used |= m->out[o].sig_a == s || m->out[o].sig_b == s || m->out[o].sig_c == s;
        if (!used)
            return fail_pos(c, m->sigma[s].line, 3, "sigma '%s' is not used by any error model",
                            m->sigma[s].name);
    }
    if ((st = build_frame(c)))
        return st;
    return compile_all(c);
}

static void ctx_free(ctx *c)
{
    popk_model *m = c->m;
    for (int i = 0; c->ind_expr && i < m->nind; i++)
        popk_expr_free(c->ind_expr[i]);
    for (int k = 0; k < POPK_LIN_NPAR; k++)
        popk_expr_free(c->lin_expr[k]);
    for (int i = 0; c->rhs_expr && i < m->ncmt; i++)
        popk_expr_free(c->rhs_expr[i]);
    for (int i = 0; c->dose_expr && i < m->ncmt * DOSE_NATTR; i++)
        popk_expr_free(c->dose_expr[i]);
    for (int i = 0; c->out_expr && i < m->nout; i++)
        popk_expr_free(c->out_expr[i]);
    for (int i = 0; c->der_expr && i < m->nderived; i++)
        popk_expr_free(c->der_expr[i]);
    free(c->ind_expr);
    free(c->rhs_expr);
    free(c->dose_expr);
    free(c->out_expr);
    free(c->der_expr);
    free(c->symtab);
    free(c->syms);
}

static char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    const char *dot = strrchr(b, '.');
    if (dot && dot != b)
        n = (size_t)(dot - b);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, b, n);
        s[n] = '\0';
    }
    return s;
}

popk_model *popk_model_parse(const char *name, const char *buf, size_t len, popk_error *err)
{
    if (!name)
        name = "<model>";
    popk_error_clear(err);
    popk_model *m = calloc(1, sizeof *m);
    if (!m) {
        popk_error_set(err, POPK_ERR_NOMEM, name, 0, 0, "out of memory");
        return NULL;
    }
    m->rtol = 1e-8;
    m->atol = 1e-10;
    m->max_steps = 100000;
    m->kind = POPK_STRUCT_NONE;
    for (int k = 0; k < POPK_LIN_NPAR; k++)
        m->lin_slot[k] = -1;
    ctx c = {.m = m, .file = name, .buf = buf, .len = len, .err = err};
    popk_yt_doc doc;
    popk_status st = POPK_OK;
    if (!(m->path = strdup(name))) {
        st = nomem(&c);
    } else if ((st = popk_yt_parse(&doc, name, buf, len, err)) == POPK_OK) {
        const node *root = doc.root;
        if (!root)
            st = fail_pos(&c, 1, 1, "the model file is empty");
        else if (root->kind != POPK_YT_MAP)
            st = fail(&c, root, "a model file must be a YAML mapping (name:, theta:, observe: "
                                "...), found %s", popk_yt_kind_name(root->kind));
        else
            st = read_sections(&c, root);
        if (!st && !m->name && !(m->name = base_name(name)))
            st = nomem(&c);
        ctx_free(&c);
        popk_yt_free(&doc);
    }
    if (st) {
        popk_model_free(m);
        return NULL;
    }
    return m;
}

popk_model *popk_model_load(const char *path, popk_error *err)
{
    popk_error_clear(err);
    FILE *f = fopen(path, "rb");
    if (!f) {
        popk_error_set(err, POPK_ERR_IO, path, 0, 0, "cannot open the model file");
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap)
            break;
        if (cap >= MODEL_MAX_FILE) {
            fclose(f);
            free(buf);
            popk_error_set(err, POPK_ERR_LIMIT, path, 0, 0,
                           "model file too large (the limit is %u MiB)", MODEL_MAX_FILE >> 20);
            return NULL;
        }
        char *p = realloc(buf, cap * 2);
        if (!p) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = p;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) {
        popk_error_set(err, POPK_ERR_NOMEM, path, 0, 0, "out of memory");
        return NULL;
    }
    if (bad) {
        free(buf);
        popk_error_set(err, POPK_ERR_IO, path, 0, 0, "cannot read the model file");
        return NULL;
    }
    popk_model *m = popk_model_parse(path, buf, len, err);
    free(buf);
    return m;
}

static void free_param(popk_param *p)
{
    free(p->name);
    free(p->label);
    free(p->unit);
}

void popk_model_free(popk_model *m)
{
    if (!m)
        return;
    for (int i = 0; m->theta && i < m->ntheta; i++)
        free_param(&m->theta[i]);
    for (int i = 0; m->sigma && i < m->nsigma; i++)
        free_param(&m->sigma[i]);
    for (int i = 0; m->eta_name && i < m->neta; i++)
        free(m->eta_name[i]);
    for (int i = 0; m->cov && i < m->ncov; i++) {
        popk_covdef *cv = &m->cov[i];
        free(cv->name);
        free(cv->unit);
        for (int j = 0; j < cv->nlevels; j++)
            free(cv->levels[j]);
        free(cv->levels);
        free(cv->codes);
    }
    for (int i = 0; m->ind_name && i < m->nind; i++) {
        free(m->ind_name[i]);
        free(m->ind_text[i]);
    }
    for (int i = 0; m->cmt_name && i < m->ncmt; i++)
        free(m->cmt_name[i]);
    for (int i = 0; m->out && i < m->nout; i++) {
        free(m->out[i].name);
        free(m->out[i].text);
    }
    for (int i = 0; m->derived_name && i < m->nderived; i++)
        free(m->derived_name[i]);
    free(m->theta);
    free(m->sigma);
    free(m->eta_name);
    free(m->omega);
    free(m->omega_block);
    free(m->omega_fixed);
    free(m->cov);
    free(m->ind_name);
    free(m->ind_text);
    free(m->cmt_name);
    free(m->out);
    free(m->derived_name);
    free(m->derived_slot);
    free(m->dose);
    popk_prog_free(m->prog_pk);
    popk_prog_free(m->prog_rhs);
    popk_prog_free(m->prog_out);
    free(m->ode_nonaffine);
    free(m->path);
    free(m->name);
    free(m->description);
    free(m->reference);
    free(m);
}
