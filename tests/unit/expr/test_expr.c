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
    return popk_test_run();
}
