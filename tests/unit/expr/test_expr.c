/* Tests for expr/: parsing, precedence, folding, categorical levels, errors and limits. */
#include "expr/expr.h"

#include "common/popk_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Frame used by most tests: x y z w a b, then a categorical CYP (codes 10..14) and SEX. */
enum { SX, SY, SZ, SW, SA, SB, SCYP, SSEX, SOUT, NSLOT };
static const char *const cyp_levels[] = {"PM", "IM", "NM", "RM", "UM"};
static const double cyp_codes[] = {10, 11, 12, 13, 14};
static const char *const sex_levels[] = {"male", "female"};
static const double sex_codes[] = {1, 0};
static const popk_symbol syms[] = {
    {"x", SX, 0, NULL, NULL},     {"y", SY, 0, NULL, NULL},
    {"z", SZ, 0, NULL, NULL},     {"add.sd", SW, 0, NULL, NULL},
    {"tcl", SA, 0, NULL, NULL},   {"eta_cl", SB, 0, NULL, NULL},
    {"CYP2C19", SCYP, 5, cyp_levels, cyp_codes},
    {"SEX", SSEX, 2, sex_levels, sex_codes},
};
static const popk_symtab symtab = {syms, (int)(sizeof syms / sizeof syms[0])};

/* Compile text into slot SOUT and evaluate on doubles; returns NaN and fails on error. */
static double eval_text(const char *text, const double *in)
{
    popk_error err;
    popk_expr *e = popk_expr_parse(text, strlen(text), NULL, &err);
    if (!e) {
        fprintf(stderr, "parse '%s': %s\n", text, err.message);
        CU_FAIL("parse failed");
        return NAN;
    }
    popk_prog *p = popk_prog_new();
    double r = NAN;
    if (popk_prog_add(p, SOUT, e, &symtab, &err) != POPK_OK) {
        fprintf(stderr, "compile '%s': %s\n", text, err.message);
        CU_FAIL("compile failed");
    } else {
        double slots[NSLOT];
        memcpy(slots, in, sizeof slots);
        double *stack = malloc(sizeof(double) * (size_t)(popk_prog_stack_size(p) + 1));
        popk_prog_eval(p, slots, stack);
        r = slots[SOUT];
        /* The dual evaluator must produce the very same value. */
        double dslots[NSLOT * 3];
        for (int k = 0; k < NSLOT; k++) {
            dslots[3 * k] = in[k];
            dslots[3 * k + 1] = k == SX;
            dslots[3 * k + 2] = k == SY;
        }
        double *dstack = malloc(sizeof(double) * 3 * (size_t)(popk_prog_stack_size(p) + 1));
        popk_prog_eval_dual(p, 2, dslots, dstack);
        if (!(dslots[3 * SOUT] == r || (isnan(r) && isnan(dslots[3 * SOUT])))) {
            fprintf(stderr, "'%s': double %.17g dual %.17g\n", text, r, dslots[3 * SOUT]);
            CU_FAIL("dual value differs from double value");
        }
        free(stack);
        free(dstack);
    }
    popk_prog_free(p);
    popk_expr_free(e);
    return r;
}

static void test_values(void)
{
    const double x = 1.7, y = -0.6, z = 3.25, w = 0.4, a = 0.2, b = -0.35;
    const double in[NSLOT] = {x, y, z, w, a, b, 10, 0, 0};
    struct {
        const char *text;
        double expect;
    } cases[] = {
        {"1 + 2 * 3", 7},
        {"(1 + 2) * 3", 9},
        {"1 - 2 - 3", -4},
        {"8 / 4 / 2", 1},
        {"2^3^2", 512},
        {"-2^2", -4},
        {"(-2)^2", 4},
        {"2^-1", 0.5},
        {"-x^2", -(x * x)},
        {"x^2", x * x},
        {"x^3", pow(x, 3)},
        {"x^0.75", pow(x, 0.75)},
        {"x^y", pow(x, y)},
        {"2^x", pow(2, x)},
        {"y^2", y * y},
        {"y^3", pow(y, 3)},
        {"pow(x, z)", pow(x, z)},
        {"x - y - z", x - y - z},
        {"x / y / z", x / y / z},
        {"x - (y - z)", x - (y - z)},
        {"x / (y / z)", x / (y / z)},
        {"2 - x", 2 - x},
        {"2 / x", 2 / x},
        {"x - 2", x - 2},
        {"x / 2", x / 2},
        {"x * 2 + 1", x * 2 + 1},
        {"x - y * z", x - y * z},
        {"x / (y + z)", x / (y + z)},
        {"x * (y + z)", x * (y + z)},
        {"(y + z) - x", (y + z) - x},
        {"+x", x},
        {"--x", x},
        {"1e-3 * x", 1e-3 * x},
        {".5 + 1. + 2E+1 + 1.5e0", 0.5 + 1 + 20 + 1.5},
        {"pi", M_PI},
        {"e", M_E},
        {"exp(tcl + eta_cl)", exp(a + b)},
        {"tcl * (z / 70)^0.75 * exp(eta_cl)", a * pow(z / 70, 0.75) * exp(b)},
        {"log(x) + log10(z) + sqrt(z)", log(x) + log10(z) + sqrt(z)},
        {"abs(y) + abs(x)", fabs(y) + fabs(x)},
        {"logit(add.sd)", log(w / (1 - w))},
        {"expit(y)", 1 / (1 + exp(-y))},
        {"phi(y)", 0.5 * erfc(-y / sqrt(2.0))},
        {"phi(0)", 0.5},
        {"min(x, y, z)", y},
        {"max(x, y, z)", z},
        {"min(x, 1)", 1},
        {"max(2, x)", 2},
        {"x < y", 0},
        {"x > y", 1},
        {"x <= x", 1},
        {"x >= z", 0},
        {"x == x", 1},
        {"x != x", 0},
        {"1 < x", 1},
        {"2 < x", 0},
        {"x > 1 && y > 0", 0},
        {"x > 1 || y > 0", 1},
        {"!x", 0},
        {"!(x - x)", 1},
        {"!0 + 1", 2},
        {"x > 0 && y < 0 || z < 0", 1},
        {"x < 0 || y < 0 && z < 0", 0},
        {"1 + 2 < 4", 1},
        {"x && 2", 1},
        {"0 || y", 1},
        {"if(x > 1, y, z)", y},
        {"if(x > 2, y, z)", z},
        {"if(x > 2, log(-1), z)", z},
        {"if(x, 1, 2) + 1", 2},
        {"add.sd * 2", w * 2},
        {"CYP2C19 == \"PM\"", 1},
        {"CYP2C19 != 'PM'", 0},
        {"\"IM\" == CYP2C19", 0},
        {"if(CYP2C19 == \"PM\", x, y)", x},
        {"SEX == \"male\"", 0},
        {"SEX == \"female\"", 1},
        {"CYP2C19 + 1", 11},
        {"x - 2 * y + z / 4 - (x * y) / (z - 1)", x - 2 * y + z / 4 - (x * y) / (z - 1)},
        {"tcl * x^2 / (1 + exp(-y))", a * x * x / (1 + exp(-y))},
        /* fused forms: exp(slot), * exp(slot), if(slot <cmp> constant, ...) */
        {"exp(x)", exp(x)},
        {"y * exp(x)", y * exp(x)},
        {"exp(x) * y", y * exp(x)},
        {"(y + z) * exp(x)", (y + z) * exp(x)},
        {"if(2 < x, 1, 0)", 0},
        {"if(1 < x, 1, 0)", 1},
        {"if(x <= 1.7, 1, 0)", 1},
        {"if(x < 1.7, 1, 0)", 0},
        {"if(x >= 1.7, 1, 0)", 1},
        {"if(x > 1.7, 1, 0)", 0},
        {"if(x == 1.7, 1, 0)", 1},
        {"if(x != 1.7, 1, 0)", 0},
        {"if(1.7 >= x, 1, 0)", 1},
        {"if(1.8 <= x, 1, 0)", 0},
        {"if(\"IM\" != CYP2C19, 1, 0)", 1},
        {"if(CYP2C19 == \"IM\", 1, if(CYP2C19 == \"PM\", 2, 3))", 2},
        /* conditional jumps with values below them on the stack */
        {"x + if(y * 2 > 0, 1, 2)", x + 2},
        {"x + if(y * 2 < 0, 1, 2)", x + 1},
        {"x + (y < 0 && z > 0)", x + 1},
        {"x + (y > 0 && z > 0)", x},
        {"x * (y > 0 || z > 0)", x},
        {"x * (y > 0 || z < 0)", 0},
        {"z - min(x, y) * max(x, y, z)", z - y * z},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double v = eval_text(cases[i].text, in);
        double tol = 4e-16 * fabs(cases[i].expect);
        if (!(fabs(v - cases[i].expect) <= tol)) {
            fprintf(stderr, "'%s' = %.17g, expected %.17g\n", cases[i].text, v, cases[i].expect);
            CU_FAIL("wrong value");
        }
    }
}

/* Several assignments, later ones reading earlier ones' slots. */
static void test_program(void)
{
    popk_error err;
    const char *texts[] = {"exp(tcl + eta_cl)", "x * add.sd", "x + y"};
    const int dest[] = {SX, SY, SZ};
    popk_prog *p = popk_prog_new();
    for (int i = 0; i < 3; i++) {
        popk_expr *e = popk_expr_parse(texts[i], strlen(texts[i]), NULL, &err);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        CU_ASSERT_EQUAL(popk_prog_add(p, dest[i], e, &symtab, &err), POPK_OK);
        popk_expr_free(e);
    }
    CU_ASSERT_EQUAL(popk_prog_count(p), 3);
    CU_ASSERT_EQUAL(popk_prog_nslots(p), SB + 1);
    CU_ASSERT(popk_prog_stack_size(p) >= 1);
    double slots[NSLOT] = {0, 0, 0, 0.5, 0.1, 0.2, 0, 0, 0};
    double stack[16];
    popk_prog_eval(p, slots, stack);
    double cl = exp(0.1 + 0.2);
    CU_ASSERT_DOUBLE_EQUAL(slots[SX], cl, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(slots[SY], cl * 0.5, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(slots[SZ], cl + cl * 0.5, 1e-15);
    /* nd outside 0..POPK_DUAL_MAX: nothing is evaluated. */
    double dslots[NSLOT * 2] = {0};
    dslots[2 * SZ] = -1;
    popk_prog_eval_dual(p, -1, dslots, stack);
    CU_ASSERT_EQUAL(dslots[2 * SZ], -1);
    /* A failed add leaves the program unchanged. */
    popk_expr *bad = popk_expr_parse("x + nope", 8, NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bad);
    CU_ASSERT_EQUAL(popk_prog_add(p, SW, bad, &symtab, &err), POPK_ERR_MODEL);
    CU_ASSERT_EQUAL(popk_prog_count(p), 3);
    popk_expr_free(bad);
    popk_prog_free(p);
    popk_prog_free(NULL);
    popk_expr_free(NULL);
}

typedef struct {
    char names[16][16];
    int line[16], column[16];
    int n;
} name_list;

static int collect(const char *name, int line, int column, void *user)
{
    name_list *l = user;
    if (l->n < 16) {
        snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
        l->line[l->n] = line;
        l->column[l->n] = column;
        l->n++;
    }
    return 0;
}

static int stop_at_second(const char *name, int line, int column, void *user)
{
    (void)name;
    (void)line;
    (void)column;
    return ++*(int *)user == 2 ? 7 : 0;
}

static void test_names(void)
{
    popk_error err;
    popk_srcloc loc = {"m.yaml", 7, 9};
    const char *text = "exp(tcl + eta_cl) * pi\n  / (WT - e) + if(CYP == \"PM\", tcl, 1)";
    popk_expr *e = popk_expr_parse(text, strlen(text), &loc, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    name_list l = {.n = 0};
    CU_ASSERT_EQUAL(popk_expr_foreach_name(e, collect, &l), 0);
    CU_ASSERT_EQUAL_FATAL(l.n, 5);
    const char *expect[] = {"tcl", "eta_cl", "WT", "CYP", "tcl"};
    const int line[] = {7, 7, 8, 8, 8}, column[] = {13, 19, 6, 19, 32};
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_STRING_EQUAL(l.names[i], expect[i]);
        CU_ASSERT_EQUAL(l.line[i], line[i]);
        CU_ASSERT_EQUAL(l.column[i], column[i]);
    }
    int calls = 0;
    CU_ASSERT_EQUAL(popk_expr_foreach_name(e, stop_at_second, &calls), 7);
    CU_ASSERT_EQUAL(calls, 2);
    double v = 0;
    CU_ASSERT_FALSE(popk_expr_constant(e, &v));
    popk_expr_free(e);
    e = popk_expr_parse("2 * (3 + 0.5)", 13, NULL, &err);
    CU_ASSERT_TRUE(popk_expr_constant(e, &v));
    CU_ASSERT_EQUAL(v, 7.0);
    popk_expr_free(e);
    CU_ASSERT_TRUE(popk_expr_is_reserved("exp"));
    CU_ASSERT_TRUE(popk_expr_is_reserved("if"));
    CU_ASSERT_TRUE(popk_expr_is_reserved("pi"));
    CU_ASSERT_FALSE(popk_expr_is_reserved("CL"));
}

/* Each bad expression: where the error points and what it says. Parse errors and compile
 * errors are both checked (compile only runs when parsing succeeded). */
static void test_errors(void)
{
    struct {
        const char *text;
        popk_status code;
        int line, column;
        const char *message;
        const char *context;
    } cases[] = {
        {"", POPK_ERR_MODEL, 3, 5, "empty expression", "    "},
        {"   ", POPK_ERR_MODEL, 3, 5, "empty expression", "       "},
        {"tcl + etacl", POPK_ERR_MODEL, 3, 11, "unknown symbol 'etacl' (did you mean 'eta_cl'?)",
         "    tcl + etacl"},
        {"x + qqq", POPK_ERR_MODEL, 3, 9, "unknown symbol 'qqq'", NULL},
        {"2 * exp", POPK_ERR_MODEL, 3, 9, "'exp' is a function: call it as exp(...)", NULL},
        {"expp(x)", POPK_ERR_MODEL, 3, 5, "unknown function 'expp' (did you mean 'exp'?)", NULL},
        {"foo(x)", POPK_ERR_MODEL, 3, 5, "unknown function 'foo'", NULL},
        {"exp(x, y)", POPK_ERR_MODEL, 3, 5, "exp() takes 1 argument, got 2", NULL},
        {"pow(x)", POPK_ERR_MODEL, 3, 5, "pow() takes 2 arguments, got 1", NULL},
        {"min(x)", POPK_ERR_MODEL, 3, 5, "min() takes at least 2 arguments, got 1", NULL},
        {"if(x, y)", POPK_ERR_MODEL, 3, 5, "if() takes 3 arguments, got 2", NULL},
        {"exp()", POPK_ERR_MODEL, 3, 5, "exp() takes 1 argument, got 0", NULL},
        {"x / 0", POPK_ERR_MODEL, 3, 7, "division by zero", NULL},
        {"x / (2 - 2.0)", POPK_ERR_MODEL, 3, 7, "division by zero", NULL},
        {"x / -0.0e3", POPK_ERR_MODEL, 3, 7, "division by zero", NULL},
        {"(x + 1", POPK_ERR_MODEL, 3, 5, "unbalanced parentheses: '(' is never closed", NULL},
        {"exp(x + 1", POPK_ERR_MODEL, 3, 8, "unbalanced parentheses: '(' is never closed", NULL},
        {"x + 1)", POPK_ERR_MODEL, 3, 10, "unbalanced parentheses: unexpected ')'", NULL},
        {")", POPK_ERR_MODEL, 3, 5, "unbalanced parentheses: unexpected ')'", NULL},
        {"x y", POPK_ERR_MODEL, 3, 7, "unexpected 'y' after a complete expression", NULL},
        {"2x", POPK_ERR_MODEL, 3, 5, "malformed number '2x'", NULL},
        {"1e+", POPK_ERR_MODEL, 3, 5, "malformed number '1e+': exponent has no digits", NULL},
        {"1.2.3", POPK_ERR_MODEL, 3, 5, "malformed number '1.2.'", NULL},
        {"1e400", POPK_ERR_MODEL, 3, 5, "number '1e400' is out of range", NULL},
        {"x +", POPK_ERR_MODEL, 3, 8, "expected an expression, found end of input", NULL},
        {"x * * y", POPK_ERR_MODEL, 3, 9, "expected an expression, found '*'", NULL},
        {"x ** 2", POPK_ERR_MODEL, 3, 7, "use '^' for powers", NULL},
        {"x = 1", POPK_ERR_MODEL, 3, 7, "use '==' to compare", NULL},
        {"x & y", POPK_ERR_MODEL, 3, 7, "use '&&'", NULL},
        {"x | y", POPK_ERR_MODEL, 3, 7, "use '||'", NULL},
        {"x $ y", POPK_ERR_MODEL, 3, 7, "unexpected character '$'", NULL},
        {"x < y < z", POPK_ERR_MODEL, 3, 11, "comparisons cannot be chained", NULL},
        {"x == y == z", POPK_ERR_MODEL, 3, 12, "comparisons cannot be chained", NULL},
        {"exp(x y)", POPK_ERR_MODEL, 3, 11, "expected ',' or ')' in the arguments of exp()", NULL},
        {"\"PM\"", POPK_ERR_MODEL, 3, 5, "string literal \"PM\" can only be compared", NULL},
        {"\"PM\" + 1", POPK_ERR_MODEL, 3, 5, "string literal \"PM\" can only be compared", NULL},
        {"exp('PM')", POPK_ERR_MODEL, 3, 9, "string literal \"PM\" can only be compared", NULL},
        {"CYP2C19 < \"PM\"", POPK_ERR_MODEL, 3, 15, "string literal \"PM\" can only be compared",
         NULL},
        {"\"PM\" == \"PM\"", POPK_ERR_MODEL, 3, 5, "comparison of two string literals", NULL},
        {"-\"PM\"", POPK_ERR_MODEL, 3, 6, "string literal", NULL},
        {"CYP2C19 == \"PM", POPK_ERR_MODEL, 3, 16, "unterminated string literal", NULL},
        {"CYP2C19 == \"XM\"", POPK_ERR_MODEL, 3, 16,
         "unknown level \"XM\" of 'CYP2C19' (did you mean \"PM\"?; levels: PM, IM, NM, RM, UM)",
         NULL},
        {"CYP2C19 == \"poor\"", POPK_ERR_MODEL, 3, 16,
         "unknown level \"poor\" of 'CYP2C19' (levels: PM, IM, NM, RM, UM)", NULL},
        {"x == \"PM\"", POPK_ERR_MODEL, 3, 10, "'x' is not categorical", NULL},
        {"(x + 1) == \"PM\"", POPK_ERR_MODEL, 3, 16, "can only be compared with a categorical",
         NULL},
        {"cyp == \"PM\"", POPK_ERR_MODEL, 3, 5, "unknown symbol 'cyp'", NULL},
        {"x +\n  y +\n   qq", POPK_ERR_MODEL, 5, 4, "unknown symbol 'qq'", "   qq"},
        {"x +\n  y + )", POPK_ERR_MODEL, 4, 7, "unexpected ')'", "  y + )"},
    };
    popk_srcloc loc = {"model.yaml", 3, 5};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        popk_error err;
        const char *text = cases[i].text;
        popk_expr *e = popk_expr_parse(text, strlen(text), &loc, &err);
        popk_status st = POPK_OK;
        if (e) {
            popk_prog *p = popk_prog_new();
            st = popk_prog_add(p, SOUT, e, &symtab, &err);
            CU_ASSERT_EQUAL(popk_prog_count(p), 0);
            popk_prog_free(p);
            popk_expr_free(e);
        } else {
            st = err.code;
        }
        int ok = st == cases[i].code && err.code == cases[i].code &&
                 err.line == cases[i].line && err.column == cases[i].column &&
                 strstr(err.message, cases[i].message) != NULL &&
                 strcmp(err.file, "model.yaml") == 0;
        if (ok && cases[i].context)
            ok = strcmp(err.context, cases[i].context) == 0;
        else if (ok)  /* the first line of the text, padded to the file column */
            ok = strncmp(err.context, "    ", 4) == 0 &&
                 strncmp(err.context + 4, text, strlen(err.context + 4)) == 0;
        if (!ok) {
            fprintf(stderr, "'%s': got %d %d:%d '%s' [%s]\n", text, (int)st, err.line, err.column,
                    err.message, err.context);
            CU_FAIL("unexpected error report");
        }
    }
}

/* Without a source location, positions count from line 1, column 1 of the text. */
static void test_error_without_location(void)
{
    popk_error err;
    char buf[1024];
    popk_expr *e = popk_expr_parse("exp(x) +", 8, NULL, &err);
    CU_ASSERT_PTR_NULL(e);
    CU_ASSERT_EQUAL(err.line, 1);
    CU_ASSERT_EQUAL(err.column, 9);
    CU_ASSERT_STRING_EQUAL(err.context, "exp(x) +");
    CU_ASSERT_STRING_EQUAL(popk_error_format(&err, buf, sizeof buf),
                           "expected an expression, found end of input");
    popk_srcloc loc = {"m.yaml", 12, 7};
    e = popk_expr_parse("tcl * WT", 8, &loc, &err);
    popk_prog *p = popk_prog_new();
    CU_ASSERT_EQUAL(popk_prog_add(p, SOUT, e, &symtab, &err), POPK_ERR_MODEL);
    CU_ASSERT_STRING_EQUAL(popk_error_format(&err, buf, sizeof buf),
                           "m.yaml:12:13: unknown symbol 'WT'");
    CU_ASSERT_STRING_EQUAL(err.context, "      tcl * WT");
    CU_ASSERT_EQUAL(popk_prog_add(p, -1, e, &symtab, &err), POPK_ERR_ARG);
    CU_ASSERT_EQUAL(popk_prog_add(p, SOUT, NULL, &symtab, &err), POPK_ERR_ARG);
    popk_prog_free(p);
    popk_expr_free(e);
}

static char *repeat(const char *head, const char *unit, size_t times, const char *tail)
{
    size_t lh = strlen(head), lu = strlen(unit), lt = strlen(tail);
    char *s = malloc(lh + lu * times + lt + 1);
    memcpy(s, head, lh);
    for (size_t i = 0; i < times; i++)
        memcpy(s + lh + i * lu, unit, lu);
    memcpy(s + lh + lu * times, tail, lt + 1);
    return s;
}

/* Nesting is refused past 256 levels whatever the form; long flat chains (a 1 MB sum) are
 * fine; past 1 MiB the text is refused. */
static void test_limits(void)
{
    popk_error err;
    const char *deep_forms[][2] = {{"(", ")"}, {"exp(", ")"}, {"-", ""}, {"x^", ""},
                                   {"if(x,", ",1)"}, {"!", ""}};
    for (size_t f = 0; f < sizeof deep_forms / sizeof deep_forms[0]; f++) {
        for (int n = 200; n <= 400; n += 200) {
            size_t lo = strlen(deep_forms[f][0]), lc = strlen(deep_forms[f][1]);
            char *s = malloc((lo + lc) * (size_t)n + 2);
            size_t k = 0;
            for (int i = 0; i < n; i++, k += lo)
                memcpy(s + k, deep_forms[f][0], lo);
            s[k++] = 'y';
            for (int i = 0; i < n; i++, k += lc)
                memcpy(s + k, deep_forms[f][1], lc);
            s[k] = '\0';
            popk_expr *e = popk_expr_parse(s, k, NULL, &err);
            if (n == 200) {
                CU_ASSERT_PTR_NOT_NULL(e);
                if (e) {
                    popk_prog *p = popk_prog_new();
                    CU_ASSERT_EQUAL(popk_prog_add(p, SOUT, e, &symtab, &err), POPK_OK);
                    popk_prog_free(p);
                }
            } else {
                CU_ASSERT_PTR_NULL(e);
                CU_ASSERT_EQUAL(err.code, POPK_ERR_LIMIT);
                CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "nested deeper than 256 levels"));
            }
            popk_expr_free(e);
            free(s);
        }
    }

    /* About 1 MB of "x+y*2+", evaluated and checked against the closed form. */
    size_t terms = 1000000 / 6;
    char *big = repeat("", "x+y*2+", terms, "z");
    popk_expr *e = popk_expr_parse(big, strlen(big), NULL, &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    popk_prog *p = popk_prog_new();
    CU_ASSERT_EQUAL(popk_prog_add(p, SOUT, e, &symtab, &err), POPK_OK);
    CU_ASSERT(popk_prog_stack_size(p) <= 3);
    double slots[NSLOT] = {0.5, 0.25, 3, 0, 0, 0, 0, 0, 0};
    double stack[8];
    popk_prog_eval(p, slots, stack);
    CU_ASSERT_DOUBLE_EQUAL(slots[SOUT], (double)terms + 3, 0);
    popk_prog_free(p);
    popk_expr_free(e);
    free(big);

    /* A 1 MB constant sum folds as it is parsed. */
    big = repeat("", "1+", 500000, "1");
    e = popk_expr_parse(big, strlen(big), NULL, &err);
    double v = 0;
    CU_ASSERT_TRUE(popk_expr_constant(e, &v));
    CU_ASSERT_EQUAL(v, 500001.0);
    popk_expr_free(e);
    free(big);

    big = repeat("", "x+", 600000, "1");
    e = popk_expr_parse(big, strlen(big), NULL, &err);
    CU_ASSERT_PTR_NULL(e);
    CU_ASSERT_EQUAL(err.code, POPK_ERR_LIMIT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "longer than 1048576 bytes"));
    free(big);
}

static void test_suggest(void)
{
    CU_ASSERT_STRING_EQUAL(popk_symtab_suggest(&symtab, "eta_c1"), "eta_cl");
    CU_ASSERT_STRING_EQUAL(popk_symtab_suggest(&symtab, "tlc"), "tcl");
    CU_ASSERT_STRING_EQUAL(popk_symtab_suggest(&symtab, "cyp2c19"), "CYP2C19");
    CU_ASSERT_STRING_EQUAL(popk_symtab_suggest(&symtab, "add_sd"), "add.sd");
    CU_ASSERT_PTR_NULL(popk_symtab_suggest(&symtab, "qqq"));
    CU_ASSERT_PTR_NULL(popk_symtab_suggest(NULL, "x"));
}

int main(void)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("expr", NULL, NULL);
    CU_add_test(s, "values", test_values);
    CU_add_test(s, "program", test_program);
    CU_add_test(s, "names", test_names);
    CU_add_test(s, "suggest", test_suggest);
    CU_add_test(s, "errors", test_errors);
    CU_add_test(s, "limits", test_limits);
    CU_add_test(s, "error_without_location", test_error_without_location);
    return popk_test_run();
}
