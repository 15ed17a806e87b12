/* Dual-number derivatives of compiled expressions against finite differences and against
 * hand-derived piecewise rules (if, min, max, abs, comparisons, negative bases).
 *
 * The random test builds expression trees here, prints them as text, and evaluates them
 * with an independent tree-walking evaluator that also records every branch decision
 * (comparison results, min/max choices, abs signs, if branches) and flags points near a
 * domain edge. A (expression, point) pair is used only when every finite-difference
 * stencil point takes the same decisions as the centre and stays inside the domain, so
 * the derivative exists and the difference quotient is smooth across the stencil.
 *
 * Finite differences: central quotients D(h) at h, h/2, h/4, h/8 along each seeded
 * direction, Richardson-extrapolated twice (order h^6). The estimate's own error is taken
 * as the difference between the extrapolations at h and h/2; pairs whose estimate is not
 * clearly below the tolerance are skipped (independently of the dual result) and counted.
 * Relative error = |dual - fd| / max(|fd|, 1e-4 max(1, M)), where M is the largest
 * intermediate magnitude: below that floor the difference quotient's rounding noise
 * (~1e-16 M / h) dominates and a relative comparison would test the test. */
#include "expr/expr.h"

#include "common/popk_test.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NVAR 4
#define MAXND 13
#define REL_TOL 1e-7

/* ---- generator ------------------------------------------------------------------------ */

typedef enum {
    G_VAR, G_NUM, G_NEG, G_PLUS, G_ADD, G_SUB, G_MUL, G_DIV, G_POW, G_POWK, G_RPOWK, G_POWFN,
    G_EXP, G_LOG, G_LOG10, G_SQRT, G_ABS, G_LOGIT, G_EXPIT, G_PHI, G_MIN, G_MAX, G_IF,
    G_LT, G_LE, G_GT, G_GE, G_EQ, G_NE, G_AND, G_OR, G_NOT, G_TRUTH, G_COUNT
} gkind;

static const char *const gname[G_COUNT] = {
    "var", "num", "neg", "plus", "+", "-", "*", "/", "^", "^k", "k^", "pow", "exp", "log",
    "log10", "sqrt", "abs", "logit", "expit", "phi", "min", "max", "if", "<", "<=", ">", ">=",
    "==", "!=", "&&", "||", "!", "truth"};

typedef struct gnode {
    gkind k;
    int var;
    double num;
    int nargs;
    struct gnode *a[4];
} gnode;

#define POOL 4096
static gnode pool[POOL];
static int npool;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double urand(double lo, double hi)
{
    return lo + (hi - lo) * ((double)(rng_next() >> 11) / 9007199254740992.0);
}

static int irand(int n)
{
    return (int)(rng_next() % (uint64_t)n);
}

static gnode *node(gkind k, int nargs)
{
    gnode *g = &pool[npool++];
    memset(g, 0, sizeof *g);
    g->k = k;
    g->nargs = nargs;
    return g;
}

static gnode *gen(int depth);

static gnode *leaf(void)
{
    if (irand(100) < 85) {
        gnode *g = node(G_VAR, 0);
        g->var = irand(NVAR);
        return g;
    }
    gnode *g = node(G_NUM, 0);
    g->num = round(urand(-2.5, 2.5) * 1000) / 1000;
    return g;
}

/* Half of the time, make an argument positive (or inside (0,1)) by construction, so the
 * domain-restricted functions are exercised often enough. */
static gnode *positive(int depth)
{
    if (irand(2))
        return gen(depth);
    if (irand(2)) {
        gnode *g = node(G_EXP, 1);
        g->a[0] = gen(depth);
        return g;
    }
    gnode *g = node(G_ADD, 2);
    g->a[0] = node(G_NUM, 0);
    g->a[0]->num = 0.5;
    g->a[1] = node(G_POWK, 1);
    g->a[1]->num = 2;
    g->a[1]->a[0] = gen(depth);
    return g;
}

static gnode *gen_cond(int depth)
{
    int r = irand(100);
    if (depth <= 0 || r < 55) {
        gnode *g = node((gkind)(G_LT + irand(6)), 2);
        g->a[0] = gen(depth - 1);
        g->a[1] = gen(depth - 1);
        return g;
    }
    if (r < 80) {
        gnode *g = node(irand(2) ? G_AND : G_OR, 2);
        g->a[0] = gen_cond(depth - 1);
        g->a[1] = gen_cond(depth - 1);
        return g;
    }
    if (r < 92) {
        gnode *g = node(G_NOT, 1);
        g->a[0] = gen_cond(depth - 1);
        return g;
    }
    gnode *g = node(G_TRUTH, 1);
    g->a[0] = gen(depth - 1);
    return g;
}

static gnode *gen(int depth)
{
    if (depth <= 0 || npool > 300 || irand(100) < 15)
        return leaf();
    static const gkind numeric[] = {G_NEG, G_PLUS, G_ADD, G_SUB, G_MUL, G_DIV, G_POW, G_POWK,
                                    G_RPOWK, G_POWFN, G_EXP, G_LOG, G_LOG10, G_SQRT, G_ABS,
                                    G_LOGIT, G_EXPIT, G_PHI, G_MIN, G_MAX, G_IF, G_LT, G_LT, G_IF, G_ADD,
                                    G_MUL, G_SUB, G_DIV};
    gkind k = numeric[irand((int)(sizeof numeric / sizeof numeric[0]))];
    gnode *g;
    switch (k) {
    case G_NEG:
    case G_PLUS:
    case G_EXP:
    case G_EXPIT:
    case G_PHI:
    case G_ABS:
        g = node(k, 1);
        g->a[0] = gen(depth - 1);
        return g;
    case G_LOG:
    case G_LOG10:
    case G_SQRT:
        g = node(k, 1);
        g->a[0] = positive(depth - 1);
        return g;
    case G_LOGIT:
        g = node(k, 1);
        if (irand(2)) {
            g->a[0] = node(G_EXPIT, 1);
            g->a[0]->a[0] = gen(depth - 2);
        } else {
            g->a[0] = gen(depth - 1);
        }
        return g;
    case G_POW:
    case G_POWFN:
        g = node(k, 2);
        g->a[0] = positive(depth - 1);
        g->a[1] = gen(depth - 1);
        return g;
    case G_POWK: {
        static const double ks[] = {2, 3, -1, 0.5, 0.75, -1.5, 1, 0, 4, -2};
        g = node(k, 1);
        g->num = ks[irand(10)];
        g->a[0] = g->num == floor(g->num) ? gen(depth - 1) : positive(depth - 1);
        return g;
    }
    case G_RPOWK: {
        static const double ks[] = {2, 10, 0.5, 2.718281828459045};
        g = node(k, 1);
        g->num = ks[irand(4)];
        g->a[0] = gen(depth - 1);
        return g;
    }
    case G_MIN:
    case G_MAX:
        g = node(k, 2 + irand(3));
        for (int i = 0; i < g->nargs; i++)
            g->a[i] = gen(depth - 1);
        return g;
    case G_IF:
        g = node(k, 3);
        g->a[0] = gen_cond(depth - 1);
        g->a[1] = gen(depth - 1);
        g->a[2] = gen(depth - 1);
        return g;
    case G_LT: /* a condition used as a 0/1 number */
        return gen_cond(depth - 1);
    default:
        g = node(k, 2);
        g->a[0] = gen(depth - 1);
        g->a[1] = gen(depth - 1);
        return g;
    }
}

typedef struct {
    char *buf;
    size_t len, cap;
} strbuf;

static void put(strbuf *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
    va_end(ap);
    if (n > 0 && s->len + (size_t)n < s->cap)
        s->len += (size_t)n;
}

static void print_num(strbuf *s, double v)
{
    if (v < 0)
        put(s, "(%.17g)", v);
    else
        put(s, "%.17g", v);
}

static void print(strbuf *s, const gnode *g)
{
    static const char *const binop[G_COUNT] = {
        [G_ADD] = "+", [G_SUB] = "-", [G_MUL] = "*", [G_DIV] = "/", [G_POW] = "^",
        [G_LT] = "<", [G_LE] = "<=", [G_GT] = ">", [G_GE] = ">=", [G_EQ] = "==",
        [G_NE] = "!=", [G_AND] = "&&", [G_OR] = "||"};
    switch (g->k) {
    case G_VAR: put(s, "x%d", g->var + 1); return;
    case G_NUM: print_num(s, g->num); return;
    case G_NEG: put(s, "(-"); print(s, g->a[0]); put(s, ")"); return;
    case G_PLUS: put(s, "(+"); print(s, g->a[0]); put(s, ")"); return;
    case G_NOT: put(s, "(!"); print(s, g->a[0]); put(s, ")"); return;
    case G_TRUTH: print(s, g->a[0]); return;
    case G_POWK: put(s, "("); print(s, g->a[0]); put(s, " ^ "); print_num(s, g->num); put(s, ")");
        return;
    case G_RPOWK: put(s, "("); print_num(s, g->num); put(s, " ^ "); print(s, g->a[0]); put(s, ")");
        return;
    default: break;
    }
    if (binop[g->k]) {
        put(s, "(");
        print(s, g->a[0]);
        put(s, " %s ", binop[g->k]);
        print(s, g->a[1]);
        put(s, ")");
        return;
    }
    put(s, "%s(", g->k == G_POWFN ? "pow" : gname[g->k]);
    for (int i = 0; i < g->nargs; i++) {
        if (i)
            put(s, ", ");
        print(s, g->a[i]);
    }
    put(s, ")");
}

/* ---- reference evaluator -------------------------------------------------------------- */

typedef struct {
    uint64_t sig;           /* hash of every branch decision taken */
    int bad;                /* near a domain edge, overflow, or too large */
    double maxabs;
    int count[G_COUNT];     /* operators actually evaluated */
} refctx;

/* A decision between nearly equal values could go either way under rounding differences
 * between this evaluator and the program: such points are treated as kinks. */
static void near_tie(refctx *c, double a, double b)
{
    if (fabs(a - b) <= 1e-9 * fmax(1, fmax(fabs(a), fabs(b))))
        c->bad = 1;
}

static void decide(refctx *c, int d)
{
    c->sig = c->sig * 1000003u + (uint64_t)(d + 1);
}

static double check(refctx *c, double v)
{
    if (!isfinite(v) || fabs(v) > 1e4)
        c->bad = 1;
    if (fabs(v) > c->maxabs)
        c->maxabs = fabs(v);
    return v;
}

static double ref(const gnode *g, const double *x, refctx *c)
{
    c->count[g->k]++;
    double a, b;
    switch (g->k) {
    case G_VAR: return check(c, x[g->var]);
    case G_NUM: return check(c, g->num);
    case G_NEG: return -ref(g->a[0], x, c);
    case G_PLUS: return ref(g->a[0], x, c);
    case G_ADD: a = ref(g->a[0], x, c); return check(c, a + ref(g->a[1], x, c));
    case G_SUB: a = ref(g->a[0], x, c); return check(c, a - ref(g->a[1], x, c));
    case G_MUL: a = ref(g->a[0], x, c); return check(c, a * ref(g->a[1], x, c));
    case G_DIV:
        a = ref(g->a[0], x, c);
        b = ref(g->a[1], x, c);
        if (fabs(b) < 0.05)
            c->bad = 1;
        return check(c, a / b);
    case G_POW:
    case G_POWFN:
        a = ref(g->a[0], x, c);
        b = ref(g->a[1], x, c);
        if (a < 0.05)
            c->bad = 1;
        return check(c, pow(a, b));
    case G_POWK:
        a = ref(g->a[0], x, c);
        if ((g->num != floor(g->num) && a < 0.05) || (g->num < 0 && fabs(a) < 0.05))
            c->bad = 1;
        return check(c, pow(a, g->num));
    case G_RPOWK: return check(c, pow(g->num, ref(g->a[0], x, c)));
    case G_EXP: return check(c, exp(ref(g->a[0], x, c)));
    case G_LOG:
    case G_LOG10:
    case G_SQRT:
        a = ref(g->a[0], x, c);
        if (a < 0.05)
            c->bad = 1;
        return check(c, g->k == G_LOG ? log(a) : g->k == G_LOG10 ? log(a) / log(10.0) : sqrt(a));
    case G_ABS:
        a = ref(g->a[0], x, c);
        near_tie(c, a, 0);
        decide(c, a > 0);
        return check(c, a > 0 ? a : -a);
    case G_LOGIT:
        a = ref(g->a[0], x, c);
        if (a < 0.02 || a > 0.98)
            c->bad = 1;
        return check(c, log(a) - log1p(-a));
    case G_EXPIT: a = ref(g->a[0], x, c); return check(c, exp(a) / (1 + exp(a)));
    case G_PHI: return check(c, 0.5 * (1 + erf(ref(g->a[0], x, c) / sqrt(2.0))));
    case G_MIN:
    case G_MAX: {
        int pick = 0;
        double best = ref(g->a[0], x, c);
        for (int i = 1; i < g->nargs; i++) {
            double v = ref(g->a[i], x, c);
            near_tie(c, v, best);
            if (g->k == G_MIN ? v < best : v > best) {
                best = v;
                pick = i;
            }
        }
        decide(c, pick);
        return best;
    }
    case G_IF: {
        int t = ref(g->a[0], x, c) != 0;
        decide(c, t);
        return ref(g->a[t ? 1 : 2], x, c);
    }
    case G_LT: case G_LE: case G_GT: case G_GE: case G_EQ: case G_NE: {
        a = ref(g->a[0], x, c);
        b = ref(g->a[1], x, c);
        near_tie(c, a, b);
        int r = g->k == G_LT ? a < b : g->k == G_LE ? a <= b : g->k == G_GT ? a > b
              : g->k == G_GE ? a >= b : g->k == G_EQ ? a == b : a != b;
        decide(c, r);
        return r;
    }
    case G_AND:
    case G_OR: {
        int l = ref(g->a[0], x, c) != 0;
        if (g->k == G_AND ? !l : l)
            return l;
        return ref(g->a[1], x, c) != 0;
    }
    case G_NOT: return ref(g->a[0], x, c) == 0;
    case G_TRUTH: a = ref(g->a[0], x, c); near_tie(c, a, 0); decide(c, a != 0); return a;
    default: return NAN;
    }
}

/* ---- the random test ------------------------------------------------------------------ */

static const popk_symbol vars[] = {
    {"x1", 0, 0, NULL, NULL}, {"x2", 1, 0, NULL, NULL},
    {"x3", 2, 0, NULL, NULL}, {"x4", 3, 0, NULL, NULL}};
static const popk_symtab vartab = {vars, NVAR};
enum { OUT = NVAR, NS = NVAR + 1 };

static double eval_at(const popk_prog *p, const double *x, double *stack)
{
    double slots[NS];
    memcpy(slots, x, sizeof(double) * NVAR);
    slots[OUT] = NAN;
    popk_prog_eval(p, slots, stack);
    return slots[OUT];
}

static void test_random_pairs(void)
{
    static const int nds[] = {1, 2, 3, 4, 4, 4, 5, 6, 7, 8, 9, 13};
    int accepted = 0, attempts = 0, rej_domain = 0, rej_kink = 0, rej_fd = 0, failures = 0;
    int ncheck = 0, nfloor = 0, nzero = 0;
    double worst = 0;
    char worst_text[400] = "";
    int covered[G_COUNT] = {0};
    static char text[32768];
    while (accepted < 2000 && attempts < 40000) {
        attempts++;
        npool = 0;
        gnode *root = gen(2 + irand(4));
        strbuf sb = {text, 0, sizeof text};
        print(&sb, root);
        double x[NVAR] = {urand(0.2, 2.5), urand(0.2, 2.5), urand(-2, 2), urand(-2, 2)};
        refctx centre = {0};
        double fref = ref(root, x, &centre);
        if (centre.bad) {
            rej_domain++;
            continue;
        }
        popk_error err;
        popk_expr *e = popk_expr_parse(text, sb.len, NULL, &err);
        popk_prog *p = popk_prog_new();
        if (!e || popk_prog_add(p, OUT, e, &vartab, &err) != POPK_OK) {
            fprintf(stderr, "'%s': %s\n", text, err.message);
            CU_FAIL("generated expression did not compile");
            popk_expr_free(e);
            popk_prog_free(p);
            failures++;
            continue;
        }
        popk_expr_free(e);
        int nd = nds[irand((int)(sizeof nds / sizeof nds[0]))];
        double dir[MAXND][NVAR];
        for (int k = 0; k < nd; k++)
            for (int i = 0; i < NVAR; i++)
                dir[k][i] = nd == 4 && attempts % 4 == 0 ? (double)(i == k)
                          : irand(10) == 0 ? 0 : urand(-1, 1);
        size_t ss = (size_t)popk_prog_stack_size(p) + 1;
        double *stack = malloc(sizeof(double) * ss * (MAXND + 1));
        double f = eval_at(p, x, stack);
        if (!(fabs(f - fref) <= 1e-12 * fmax(1, centre.maxabs))) {
            fprintf(stderr, "'%s' at (%g %g %g %g): program %.17g, reference %.17g\n", text, x[0],
                    x[1], x[2], x[3], f, fref);
            CU_FAIL("value differs from the reference evaluator");
            failures++;
        }
        /* Every stencil point must take the centre's branches and stay in the domain. */
        const double h0 = 1e-2;
        double fd[MAXND], fd_err[MAXND];
        int usable = 1;
        for (int k = 0; k < nd && usable; k++) {
            double D[4];
            for (int m = 0; m < 4 && usable; m++) {
                double h = h0 / (double)(1 << m), fp = 0, fm = 0;
                for (int side = -1; side <= 1 && usable; side += 2) {
                    double xs[NVAR];
                    for (int i = 0; i < NVAR; i++)
                        xs[i] = x[i] + side * h * dir[k][i];
                    refctx c = {0};
                    ref(root, xs, &c);
                    if (c.bad || c.sig != centre.sig) {
                        usable = 0;
                        if (c.bad)
                            rej_domain++;
                        else
                            rej_kink++;
                    }
                    if (side < 0)
                        fm = eval_at(p, xs, stack);
                    else
                        fp = eval_at(p, xs, stack);
                }
                if (usable)
                    D[m] = (fp - fm) / (2 * h);
            }
            if (!usable)
                break;
            double R4[3], R6[2];
            for (int m = 0; m < 3; m++)
                R4[m] = (4 * D[m + 1] - D[m]) / 3;
            for (int m = 0; m < 2; m++)
                R6[m] = (16 * R4[m + 1] - R4[m]) / 15;
            fd[k] = R6[1];
            fd_err[k] = fabs(R6[0] - R6[1]);
        }
        if (!usable) {
            free(stack);
            popk_prog_free(p);
            continue;
        }
        double scale_floor = 1e-4 * fmax(1, centre.maxabs);
        int fd_ok = 1;
        for (int k = 0; k < nd; k++)
            if (fd_err[k] > 0.1 * REL_TOL * fmax(fabs(fd[k]), scale_floor))
                fd_ok = 0;
        if (!fd_ok) {
            rej_fd++;
            free(stack);
            popk_prog_free(p);
            continue;
        }
        double slots[NS * (MAXND + 1)];
        int w = 1 + nd;
        for (int s = 0; s < NS; s++) {
            slots[s * w] = s < NVAR ? x[s] : NAN;
            for (int k = 0; k < nd; k++)
                slots[s * w + 1 + k] = s < NVAR ? dir[k][s] : NAN;
        }
        popk_prog_eval_dual(p, nd, slots, stack);
        if (!(slots[OUT * w] == f)) {
            fprintf(stderr, "'%s': dual value %.17g, double value %.17g\n", text, slots[OUT * w],
                    f);
            CU_FAIL("dual value differs from double value");
            failures++;
        }
        for (int k = 0; k < nd; k++) {
            double d = slots[OUT * w + 1 + k];
            double rel = fabs(d - fd[k]) / fmax(fabs(fd[k]), scale_floor);
            ncheck++;
            nfloor += fabs(fd[k]) < scale_floor;
            nzero += d == 0;
            if (!(rel <= REL_TOL)) {
                if (failures < 10)
                    fprintf(stderr, "'%s' at (%.6g %.6g %.6g %.6g) nd=%d dir %d: dual %.12g, fd "
                            "%.12g (rel %.2g)\n", text, x[0], x[1], x[2], x[3], nd, k, d, fd[k],
                            rel);
                failures++;
                CU_FAIL("dual derivative differs from finite differences");
            }
            if (rel > worst || rel != rel) {
                worst = rel;
                snprintf(worst_text, sizeof worst_text, "%.380s", text);
            }
        }
        for (int g = 0; g < G_COUNT; g++)
            covered[g] += centre.count[g];
        accepted++;
        free(stack);
        popk_prog_free(p);
    }
    printf("\n    %d pairs accepted of %d generated (skipped: %d domain, %d kink in stencil, %d "
           "inaccurate FD);\n    %d directional derivatives (%d exactly zero, %d more below the floor), "
           "worst relative error %.2g\n    in %s\n",
           accepted, attempts, rej_domain, rej_kink, rej_fd, ncheck, nzero, nfloor - nzero, worst,
           worst_text);
    CU_ASSERT(accepted >= 1000);
    CU_ASSERT(ncheck - nzero >= 5000);
    CU_ASSERT_EQUAL(failures, 0);
    /* Inaccurate-FD skips must stay rare, or the check would be hollow. */
    CU_ASSERT(rej_fd * 20 < accepted);
    printf("    evaluated operators:");
    for (int g = 0; g < G_COUNT; g++) {
        printf(" %s:%d", gname[g], covered[g]);
        if (g != G_EQ && g != G_NE) {
            if (covered[g] < 30)
                fprintf(stderr, "operator %s evaluated only %d times\n", gname[g], covered[g]);
            CU_ASSERT(covered[g] >= 30);
        }
    }
    printf("\n");
    CU_ASSERT(covered[G_EQ] + covered[G_NE] >= 30);
}

/* ---- piecewise rules and special cases ------------------------------------------------ */

/* Evaluate text with x, y, z seeded as directions 0, 1, 2; returns value and gradient. */
static double grad3(const char *text, double x, double y, double z, double g[3])
{
    static const popk_symbol s3[] = {
        {"x", 0, 0, NULL, NULL}, {"y", 1, 0, NULL, NULL}, {"z", 2, 0, NULL, NULL}};
    const popk_symtab t3 = {s3, 3};
    popk_error err;
    popk_expr *e = popk_expr_parse(text, strlen(text), NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    popk_prog *p = popk_prog_new();
    CU_ASSERT_EQUAL_FATAL(popk_prog_add(p, 3, e, &t3, &err), POPK_OK);
    double slots[4 * 4] = {x, 1, 0, 0, y, 0, 1, 0, z, 0, 0, 1, 0, 0, 0, 0};
    double stack[64 * 4];
    CU_ASSERT_FATAL(popk_prog_stack_size(p) <= 64);
    popk_prog_eval_dual(p, 3, slots, stack);
    memcpy(g, slots + 13, 3 * sizeof(double));
    popk_expr_free(e);
    popk_prog_free(p);
    return slots[12];
}

#define EXPECT_GRAD(text, x, y, z, v, gx, gy, gz)                                         \
    do {                                                                                  \
        double g_[3];                                                                     \
        double v_ = grad3(text, x, y, z, g_);                                             \
        double want_[4] = {v, gx, gy, gz}, got_[4] = {v_, g_[0], g_[1], g_[2]};           \
        for (int i_ = 0; i_ < 4; i_++)                                                    \
            if (!(fabs(got_[i_] - want_[i_]) <= 1e-14 * fmax(1, fabs(want_[i_])))) {      \
                fprintf(stderr, "%s at (%g,%g,%g): component %d = %.17g, want %.17g\n",    \
                        text, (double)(x), (double)(y), (double)(z), i_, got_[i_],        \
                        want_[i_]);                                                       \
                CU_FAIL("wrong piecewise derivative");                                    \
            }                                                                             \
    } while (0)

static void test_piecewise(void)
{
    /* min/max: the chosen argument's derivative; ties take the first argument. */
    EXPECT_GRAD("min(x, y)", 1, 2, 0, 1, 1, 0, 0);
    EXPECT_GRAD("min(x, y)", 3, 2, 0, 2, 0, 1, 0);
    EXPECT_GRAD("min(x, y)", 2, 2, 0, 2, 1, 0, 0);
    EXPECT_GRAD("min(y, x)", 2, 2, 0, 2, 0, 1, 0);
    EXPECT_GRAD("min(x, y, z)", 2, 1, 1, 1, 0, 1, 0);
    EXPECT_GRAD("max(x, y, z)", 2, 3, 3, 3, 0, 1, 0);
    EXPECT_GRAD("max(x, 2 * y)", 2, 1, 0, 2, 1, 0, 0);
    EXPECT_GRAD("max(2 * y, x)", 2, 1, 0, 2, 0, 2, 0);
    EXPECT_GRAD("max(x * y, z)", 2, 3, 1, 6, 3, 2, 0);
    /* abs: sign(x), and 0 at 0. */
    EXPECT_GRAD("abs(x)", -1.5, 0, 0, 1.5, -1, 0, 0);
    EXPECT_GRAD("abs(x)", 1.5, 0, 0, 1.5, 1, 0, 0);
    EXPECT_GRAD("abs(x)", 0, 0, 0, 0, 0, 0, 0);
    EXPECT_GRAD("abs(x - y)", 1, 1, 0, 0, 0, 0, 0);
    /* if: the chosen branch only, the other is not evaluated (no NaN leaks). */
    EXPECT_GRAD("if(x > 0, x^2, 3 * x)", 2, 0, 0, 4, 4, 0, 0);
    EXPECT_GRAD("if(x > 0, x^2, 3 * x)", 0, 0, 0, 0, 3, 0, 0);
    EXPECT_GRAD("if(x > 0, log(x), -y * x)", -2, 5, 0, 10, -5, 2, 0);
    EXPECT_GRAD("if(x < y && sqrt(y - x) > 1, y, z)", 1, 3, 7, 3, 0, 1, 0);
    EXPECT_GRAD("if(x < y && sqrt(y - x) > 1, y, z)", 3, 1, 7, 7, 0, 0, 1);
    EXPECT_GRAD("if(x > y || log(x - y) > 0, y, z)", 3, 1, 7, 1, 0, 1, 0);
    /* Fused instructions: exp(slot), * exp(slot), if(slot <cmp> constant, ...). */
    EXPECT_GRAD("y * exp(x)", 0.5, 3, 0, 3 * exp(0.5), 3 * exp(0.5), exp(0.5), 0);
    EXPECT_GRAD("exp(x) * (y + z)", 0.5, 3, 1, 4 * exp(0.5), 4 * exp(0.5), exp(0.5),
                exp(0.5));
    EXPECT_GRAD("if(x < 2, x * y, z)", 1, 3, 5, 3, 3, 1, 0);
    EXPECT_GRAD("if(2 > x, x * y, z)", 2, 3, 5, 5, 0, 0, 1);
    EXPECT_GRAD("z + if(x * 1 < 2, x * y, z)", 1, 3, 5, 8, 3, 1, 1);
    EXPECT_GRAD("z * (x < 2 && y > 0)", 1, 3, 5, 5, 0, 0, 1);
    EXPECT_GRAD("x / 4 + 4 / y - (2 - z)", 2, 4, 1, 0.5, 0.25, -0.25, 1);
    /* Comparisons and logic are piecewise constant. */
    EXPECT_GRAD("(x > y) * 5 + (x <= y) + !(x - 1) + (x && y) + (z || 0)", 2, 1, 3, 7, 0, 0, 0);
    EXPECT_GRAD("(x > y) * z", 2, 1, 3, 3, 0, 0, 1);
    /* Negative bases with integer exponents, constant or not differentiated. */
    EXPECT_GRAD("x^3", -2, 0, 0, -8, 12, 0, 0);
    EXPECT_GRAD("x^2", -2, 0, 0, 4, -4, 0, 0);
    EXPECT_GRAD("x^(-1)", -2, 0, 0, -0.5, -0.25, 0, 0);
    EXPECT_GRAD("(x - 3)^4", 1, 0, 0, 16, -32, 0, 0);
    EXPECT_GRAD("x^0", 0, 0, 0, 1, 0, 0, 0);
    EXPECT_GRAD("x^2", 0, 0, 0, 0, 0, 0, 0);
    EXPECT_GRAD("x^1.5", 0, 0, 0, 0, 0, 0, 0);
    EXPECT_GRAD("x^y", 2, 3, 0, 8, 12, 8 * log(2.0), 0);
    EXPECT_GRAD("pow(y, x)", 2, 3, 0, 9, 9 * log(3.0), 6, 0);
    EXPECT_GRAD("2^x", 3, 0, 0, 8, 8 * log(2.0), 0, 0);
    double g[3];
    CU_ASSERT_EQUAL(grad3("(-2)^x", 3, 0, 0, g), -8); /* ln of a negative base: no derivative */
    CU_ASSERT(isnan(g[0]));
    CU_ASSERT_EQUAL(g[1], 0);
    /* Closed forms of the special functions' derivatives. */
    EXPECT_GRAD("phi(x)", 0.3, 0, 0, 0.5 * erfc(-0.3 / sqrt(2.0)),
                exp(-0.045) / sqrt(2 * M_PI), 0, 0);
    EXPECT_GRAD("expit(x)", 0.3, 0, 0, 1 / (1 + exp(-0.3)),
                exp(-0.3) / ((1 + exp(-0.3)) * (1 + exp(-0.3))), 0, 0);
    EXPECT_GRAD("logit(x)", 0.2, 0, 0, log(0.25), 1 / 0.16, 0, 0);
    EXPECT_GRAD("log10(x)", 2, 0, 0, log10(2.0), 1 / (2 * log(10.0)), 0, 0);
    EXPECT_GRAD("sqrt(x)", 4, 0, 0, 2, 0.25, 0, 0);
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("expr_deriv", NULL, NULL);
    CU_add_test(s, "piecewise", test_piecewise);
    CU_add_test(s, "random_pairs", test_random_pairs);
    return popk_test_run();
}
