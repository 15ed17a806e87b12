/* expr/prog.c — compiling ASTs to stack bytecode and running it on doubles or strided duals. */
#include "expr/expr_impl.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/dual.h"

/* Suffixes: _S takes its right operand from a slot, _K from the instruction's constant;
 * R-forms take the operands the other way round (slot or constant on the left).
 * LOAD_EXP pushes exp(slot); MUL_EXP_S multiplies the top by exp(slot) (the ubiquitous
 * "* exp(eta)"); JN_<cmp>_SK jumps unless (slot <cmp> k): a whole if() condition such as
 * CYP2C19 == "PM" in one instruction. */
#define EXPR_OPCODES(X) \
    X(OP_PUSH_K) X(OP_LOAD) X(OP_STORE) X(OP_ADD) X(OP_SUB) X(OP_MUL) X(OP_DIV) \
    X(OP_ADD_S) X(OP_SUB_S) X(OP_RSUB_S) X(OP_MUL_S) X(OP_DIV_S) X(OP_RDIV_S) \
    X(OP_ADD_K) X(OP_RSUB_K) X(OP_MUL_K) X(OP_DIV_K) X(OP_RDIV_K) \
    X(OP_NEG) X(OP_POW) X(OP_POW_K) X(OP_RPOW_K) X(OP_SQR) \
    X(OP_EXP) X(OP_LOG) X(OP_LOG10) X(OP_SQRT) X(OP_ABS) X(OP_LOGIT) X(OP_EXPIT) X(OP_PHI) \
    X(OP_LOAD_EXP) X(OP_MUL_EXP_S) \
    X(OP_MIN) X(OP_MAX) \
    X(OP_LT) X(OP_LE) X(OP_GT) X(OP_GE) X(OP_EQ) X(OP_NE) \
    X(OP_LT_K) X(OP_LE_K) X(OP_GT_K) X(OP_GE_K) X(OP_EQ_K) X(OP_NE_K) \
    X(OP_NOT) X(OP_BOOL) \
    X(OP_JUMP) X(OP_JZ) X(OP_JFALSE_KEEP) X(OP_JTRUE_KEEP) \
    X(OP_JN_LT_SK) X(OP_JN_LE_SK) X(OP_JN_GT_SK) X(OP_JN_GE_SK) X(OP_JN_EQ_SK) X(OP_JN_NE_SK)

typedef enum {
#define EXPR_OP_ENUM(name) name,
    EXPR_OPCODES(EXPR_OP_ENUM)
#undef EXPR_OP_ENUM
} opcode;

typedef struct {
    int32_t op;
    int32_t arg;        /* slot index */
    int32_t target;     /* jumps: index of the next instruction when taken */
    double k;           /* constant operand */
    double k_inv;       /* DIV_K: 1 / k, so the partials need no division */
} instr;

struct popk_prog {
    instr *code;
    size_t ncode, cap;
    int nassign;
    int max_stack;
    int nslots;
};

popk_prog *popk_prog_new(void)
{
    return calloc(1, sizeof(popk_prog));
}

void popk_prog_free(popk_prog *p)
{
    if (!p)
        return;
    free(p->code);
    free(p);
}

int popk_prog_stack_size(const popk_prog *p)
{
    return p ? p->max_stack : 0;
}

int popk_prog_count(const popk_prog *p)
{
    return p ? p->nassign : 0;
}

int popk_prog_nslots(const popk_prog *p)
{
    return p ? p->nslots : 0;
}

/* ---- compiler ------------------------------------------------------------------------- */

typedef struct {
    popk_prog *p;
    const popk_expr *e;
    const popk_symtab *st;
    popk_error *err;
    int depth;
    popk_status status;
} compiler;

static int emit(compiler *c, opcode op, int arg, double k, int stack_delta)
{
    popk_prog *p = c->p;
    if (p->ncode == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        instr *code = realloc(p->code, cap * sizeof *code);
        if (!code) {
            c->status = popk_error_set(c->err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
            return -1;
        }
        p->code = code;
        p->cap = cap;
    }
    p->code[p->ncode++] =
        (instr){.op = op, .arg = arg, .target = 0, .k = k, .k_inv = op == OP_DIV_K ? 1.0 / k : 0};
    c->depth += stack_delta;
    if (c->depth > p->max_stack)
        p->max_stack = c->depth;
    int reads_slot = op == OP_LOAD || op == OP_STORE || (op >= OP_ADD_S && op <= OP_RDIV_S) ||
                     op == OP_LOAD_EXP || op == OP_MUL_EXP_S ||
                     (op >= OP_JN_LT_SK && op <= OP_JN_NE_SK);
    if (reads_slot && arg + 1 > p->nslots)
        p->nslots = arg + 1;
    return 0;
}

static int cfail(compiler *c, size_t pos, const char *fmt, ...) POPK_PRINTF(3, 4);

static int cfail(compiler *c, size_t pos, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->status = expr_error_at(c->e, c->err, POPK_ERR_MODEL, pos, "%s", msg);
    return -1;
}

static const popk_symbol *resolve(compiler *c, const expr_node *n)
{
    const popk_symtab *st = c->st;
    for (int i = 0; st && i < st->n; i++) {
        if (st->sym[i].name && strcmp(st->sym[i].name, n->name) == 0) {
            if (st->sym[i].slot < 0) {
                cfail(c, n->pos, "symbol '%s' has no slot", n->name);
                return NULL;
            }
            return &st->sym[i];
        }
    }
    const char *sug = popk_symtab_suggest(st, n->name);
    if (popk_expr_is_reserved(n->name))
        cfail(c, n->pos, "'%s' is a function: call it as %s(...)", n->name, n->name);
    else if (sug)
        cfail(c, n->pos, "unknown symbol '%s' (did you mean '%s'?)", n->name, sug);
    else
        cfail(c, n->pos, "unknown symbol '%s'", n->name);
    return NULL;
}

static const char *level_get(const void *ctx, int i)
{
    return ((const popk_symbol *)ctx)->levels[i];
}

/* name == "LEVEL": the slot and the level's code. */
static int resolve_level(compiler *c, const expr_node *name, const expr_node *str, int *slot,
                         double *code)
{
    if (name->kind != N_NAME)
        return cfail(c, str->pos,
                     "string literal \"%s\" can only be compared with a categorical covariate "
                     "name",
                     str->name);
    const popk_symbol *s = resolve(c, name);
    if (!s)
        return -1;
    if (s->nlevels <= 0 || !s->levels || !s->level_codes)
        return cfail(c, str->pos, "'%s' is not categorical and cannot be compared with \"%s\"",
                     s->name, str->name);
    for (int i = 0; i < s->nlevels; i++) {
        if (s->levels[i] && strcmp(s->levels[i], str->name) == 0) {
            *slot = s->slot;
            *code = s->level_codes[i];
            return 0;
        }
    }
    char list[200];
    size_t used = 0;
    list[0] = '\0';
    for (int i = 0; i < s->nlevels && used + 1 < sizeof list; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                         s->levels[i] ? s->levels[i] : "?");
        if (w < 0)
            break;
        used += (size_t)w;
    }
    const char *sug = expr_suggest(str->name, s->nlevels, level_get, s);
    if (sug)
        return cfail(c, str->pos, "unknown level \"%s\" of '%s' (did you mean \"%s\"?; levels: %s)",
                     str->name, s->name, sug, list);
    return cfail(c, str->pos, "unknown level \"%s\" of '%s' (levels: %s)", str->name, s->name,
                 list);
}

/* name == "LEVEL" (or !=): compare the slot with the level's code. */
static int compile_level_compare(compiler *c, expr_binop op, const expr_node *name,
                                 const expr_node *str)
{
    int slot;
    double code;
    if (resolve_level(c, name, str, &slot, &code) || emit(c, OP_LOAD, slot, 0, 1))
        return -1;
    return emit(c, op == B_EQ ? OP_EQ_K : OP_NE_K, 0, code, 0);
}

static int compile_node(compiler *c, const expr_node *n);

static int is_exp_of_name(const expr_node *n)
{
    return n->kind == N_CALL && n->op == F_EXP && n->args->kind == N_NAME;
}

/* An if() condition of the form name <cmp> number (either order) or name == "LEVEL":
 * returns 1 with the jump-unless opcode, slot and constant; 0 when the condition has
 * another form; -1 on error. */
static int simple_condition(compiler *c, const expr_node *cond, opcode *op, int *slot,
                            double *k)
{
    if (cond->kind != N_BIN || cond->op < B_LT || cond->op > B_NE)
        return 0;
    expr_binop cmp = (expr_binop)cond->op;
    const expr_node *a = cond->args, *b = a->next;
    static const opcode jn[] = {OP_JN_LT_SK, OP_JN_LE_SK, OP_JN_GT_SK, OP_JN_GE_SK,
                                OP_JN_EQ_SK, OP_JN_NE_SK};
    static const expr_binop flipped[] = {B_GT, B_GE, B_LT, B_LE, B_EQ, B_NE};
    if (a->kind == N_STR || b->kind == N_STR) {
        const expr_node *name = a->kind == N_STR ? b : a, *str = a->kind == N_STR ? a : b;
        if (resolve_level(c, name, str, slot, k))
            return -1;
        *op = jn[cmp - B_LT];
        return 1;
    }
    if (a->kind == N_NUM && b->kind == N_NAME) {
        const expr_node *t = a;
        a = b;
        b = t;
        cmp = flipped[cmp - B_LT];
    }
    if (a->kind != N_NAME || b->kind != N_NUM)
        return 0;
    const popk_symbol *s = resolve(c, a);
    if (!s)
        return -1;
    *slot = s->slot;
    *k = b->num;
    *op = jn[cmp - B_LT];
    return 1;
}

static opcode op_of_binop(expr_binop op)
{
    switch (op) {
    case B_ADD: return OP_ADD;
    case B_SUB: return OP_SUB;
    case B_MUL: return OP_MUL;
    case B_DIV: return OP_DIV;
    case B_POW: return OP_POW;
    case B_LT: return OP_LT;
    case B_LE: return OP_LE;
    case B_GT: return OP_GT;
    case B_GE: return OP_GE;
    case B_EQ: return OP_EQ;
    default: return OP_NE;
    }
}

/* Comparison against a constant; flip when the constant is on the left (k < x is x > k). */
static opcode cmp_k(expr_binop op, int const_on_left)
{
    switch (op) {
    case B_LT: return const_on_left ? OP_GT_K : OP_LT_K;
    case B_LE: return const_on_left ? OP_GE_K : OP_LE_K;
    case B_GT: return const_on_left ? OP_LT_K : OP_GT_K;
    case B_GE: return const_on_left ? OP_LE_K : OP_GE_K;
    case B_EQ: return OP_EQ_K;
    default: return OP_NE_K;
    }
}

/* The left operand of n is on the stack; emit the right one and the operator. */
static int compile_rest(compiler *c, const expr_node *n)
{
    expr_binop op = (expr_binop)n->op;
    const expr_node *b = n->args->next;
    if (op == B_AND || op == B_OR) {
        size_t jump = c->p->ncode;
        if (emit(c, op == B_AND ? OP_JFALSE_KEEP : OP_JTRUE_KEEP, 0, 0, -1) ||
            compile_node(c, b) || emit(c, OP_BOOL, 0, 0, 0))
            return -1;
        c->p->code[jump].target = (int32_t)c->p->ncode;
        return 0;
    }
    if (b->kind == N_STR)
        return compile_level_compare(c, op, n->args, b);
    if (b->kind == N_NUM) {
        double k = b->num;
        switch (op) {
        case B_ADD: return emit(c, OP_ADD_K, 0, k, 0);
        case B_SUB: return emit(c, OP_ADD_K, 0, -k, 0);  /* x - k == x + (-k) exactly */
        case B_MUL: return emit(c, OP_MUL_K, 0, k, 0);
        case B_DIV: return emit(c, OP_DIV_K, 0, k, 0);
        case B_POW:
            if (k == 1)
                return 0;
            return k == 2 ? emit(c, OP_SQR, 0, 0, 0) : emit(c, OP_POW_K, 0, k, 0);
        default: return emit(c, cmp_k(op, 0), 0, k, 0);
        }
    }
    if (op == B_MUL && is_exp_of_name(b)) {
        const popk_symbol *s = resolve(c, b->args);
        return s ? emit(c, OP_MUL_EXP_S, s->slot, 0, 0) : -1;
    }
    if (b->kind == N_NAME && op <= B_DIV) {
        const popk_symbol *s = resolve(c, b);
        if (!s)
            return -1;
        static const opcode slot_op[] = {OP_ADD_S, OP_SUB_S, OP_MUL_S, OP_DIV_S};
        return emit(c, slot_op[op], s->slot, 0, 0);
    }
    if (compile_node(c, b))
        return -1;
    return emit(c, op_of_binop(op), 0, 0, -1);
}

/* A binary node whose left operand is not itself binary: a leaf on the left may be fused
 * into the instruction that applies the operator to the right operand. */
static int compile_first_binary(compiler *c, const expr_node *n)
{
    expr_binop op = (expr_binop)n->op;
    const expr_node *a = n->args, *b = a->next;
    if (a->kind == N_STR)
        return compile_level_compare(c, op, b, a);
    if (b->kind == N_STR)
        return compile_level_compare(c, op, a, b);
    int b_simple = b->kind == N_NUM || b->kind == N_NAME || b->kind == N_STR;
    if (!b_simple && op != B_AND && op != B_OR && op != B_POW) {
        if (a->kind == N_NUM) {
            double k = a->num;
            if (compile_node(c, b))
                return -1;
            switch (op) {
            case B_ADD: return emit(c, OP_ADD_K, 0, k, 0);
            case B_SUB: return emit(c, OP_RSUB_K, 0, k, 0);
            case B_MUL: return emit(c, OP_MUL_K, 0, k, 0);
            case B_DIV: return emit(c, OP_RDIV_K, 0, k, 0);
            default: return emit(c, cmp_k(op, 1), 0, k, 0);
            }
        }
        if (a->kind == N_NAME && op <= B_DIV) {
            const popk_symbol *s = resolve(c, a);
            if (!s || compile_node(c, b))
                return -1;
            static const opcode rslot_op[] = {OP_ADD_S, OP_RSUB_S, OP_MUL_S, OP_RDIV_S};
            return emit(c, rslot_op[op], s->slot, 0, 0);
        }
    }
    if (op == B_POW && a->kind == N_NUM && b->kind != N_NUM) {
        if (compile_node(c, b))
            return -1;
        return emit(c, OP_RPOW_K, 0, a->num, 0);
    }
    if (compile_node(c, a))
        return -1;
    return compile_rest(c, n);
}

static int compile_binary(compiler *c, const expr_node *n)
{
    /* Walk the left spine iteratively: a 1 MiB sum must not recurse a million levels. */
    expr_spine spine;
    int rc;
    if (!expr_spine_collect(&spine, n)) {
        c->status = popk_error_set(c->err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        rc = -1;
    } else {
        rc = compile_first_binary(c, spine.node[--spine.n]);
        while (!rc && spine.n > 0)
            rc = compile_rest(c, spine.node[--spine.n]);
    }
    expr_spine_free(&spine);
    return rc;
}

static int compile_node(compiler *c, const expr_node *n)
{
    switch (n->kind) {
    case N_NUM:
        return emit(c, OP_PUSH_K, 0, n->num, 1);
    case N_NAME: {
        const popk_symbol *s = resolve(c, n);
        return s ? emit(c, OP_LOAD, s->slot, 0, 1) : -1;
    }
    case N_STR:
        return cfail(c, n->pos,
                     "string literal \"%s\" can only be compared (== or !=) with a categorical "
                     "covariate",
                     n->name);
    case N_NEG:
        return compile_node(c, n->args) || emit(c, OP_NEG, 0, 0, 0) ? -1 : 0;
    case N_NOT:
        return compile_node(c, n->args) || emit(c, OP_NOT, 0, 0, 0) ? -1 : 0;
    case N_BIN:
        return compile_binary(c, n);
    case N_CALL:
        break;
    }
    expr_fn f = (expr_fn)n->op;
    const expr_node *a = n->args;
    if (f == F_IF) {
        opcode jn;
        int slot;
        double k;
        size_t jn_at;
        int simple = simple_condition(c, a, &jn, &slot, &k);
        if (simple < 0)
            return -1;
        if (simple) {
            jn_at = c->p->ncode;
            if (emit(c, jn, slot, k, 0))
                return -1;
        } else {
            if (compile_node(c, a))
                return -1;
            jn_at = c->p->ncode;
            if (emit(c, OP_JZ, 0, 0, -1))
                return -1;
        }
        if (compile_node(c, a->next))
            return -1;
        size_t jump = c->p->ncode;
        if (emit(c, OP_JUMP, 0, 0, 0))
            return -1;
        c->depth--;  /* the else branch starts from the depth before the then branch */
        c->p->code[jn_at].target = (int32_t)c->p->ncode;
        if (compile_node(c, a->next->next))
            return -1;
        c->p->code[jump].target = (int32_t)c->p->ncode;
        return 0;
    }
    if (f == F_MIN || f == F_MAX) {
        if (compile_node(c, a))
            return -1;
        for (a = a->next; a; a = a->next)
            if (compile_node(c, a) || emit(c, f == F_MIN ? OP_MIN : OP_MAX, 0, 0, -1))
                return -1;
        return 0;
    }
    if (f == F_EXP && a->kind == N_NAME) {
        const popk_symbol *s = resolve(c, a);
        return s ? emit(c, OP_LOAD_EXP, s->slot, 0, 1) : -1;
    }
    if (compile_node(c, a))
        return -1;
    return emit(c, (opcode)(OP_EXP + (f - F_EXP)), 0, 0, 0);
}

popk_status popk_prog_add(popk_prog *p, int slot, const popk_expr *e, const popk_symtab *st,
                          popk_error *err)
{
    popk_error_clear(err);
    if (!p || !e || !e->root || slot < 0)
        return popk_error_set(err, POPK_ERR_ARG, e ? e->file : NULL, 0, 0,
                              "popk_prog_add: invalid argument");
    compiler c = {.p = p, .e = e, .st = st, .err = err, .depth = 0, .status = POPK_OK};
    size_t ncode = p->ncode;
    int max_stack = p->max_stack, nslots = p->nslots;
    if (compile_node(&c, e->root) || emit(&c, OP_STORE, slot, 0, -1)) {
        p->ncode = ncode;
        p->max_stack = max_stack;
        p->nslots = nslots;
        return c.status != POPK_OK ? c.status : POPK_ERR_MODEL;
    }
    p->nassign++;
    return POPK_OK;
}

/* ---- evaluator ------------------------------------------------------------------------ */

/* d/dx of x^b at value v = x^b, well defined at x = 0 for b >= 1 too. */
static inline double pow_slope(double x, double b, double v)
{
    if (x != 0)
        return b * v / x;
    if (b == 0)
        return 0;
    return b * pow(x, b - 1);
}

#if defined(__GNUC__)
#define EXPR_THREADED 1
/* Labels as values are a GNU extension that GCC and Clang share; silence -Wpedantic. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#else
#define EXPR_THREADED 0
#endif
#define EXPR_LABEL_ADDR(name) &&L_##name,

/* The evaluator loop is instantiated once per small nd (the compiler unrolls the
 * partial-derivative loops and keeps the stack top in registers) and once for any nd;
 * nd = 0 is the plain double evaluator. */
#define RUN_NAME run_nd0
#define RUN_ND 0
#include "expr/prog_eval.inc"
#define RUN_NAME run_nd1
#define RUN_ND 1
#include "expr/prog_eval.inc"
#define RUN_NAME run_nd2
#define RUN_ND 2
#include "expr/prog_eval.inc"
#define RUN_NAME run_nd3
#define RUN_ND 3
#include "expr/prog_eval.inc"
#define RUN_NAME run_nd4
#define RUN_ND 4
#include "expr/prog_eval.inc"
#define RUN_NAME run_nd5
#define RUN_ND 5
#include "expr/prog_eval.inc"
#define RUN_NAME run_nd6
#define RUN_ND 6
#include "expr/prog_eval.inc"
#define RUN_NAME run_nd8
#define RUN_ND 8
#include "expr/prog_eval.inc"
#define RUN_NAME run_any
#define RUN_ND nd_arg
#define RUN_GENERIC
#include "expr/prog_eval.inc"
#if EXPR_THREADED
#pragma GCC diagnostic pop
#endif

void popk_prog_eval(const popk_prog *p, double *slots, double *stack)
{
    run_nd0(p, slots, stack, 0);
}

void popk_prog_eval_dual(const popk_prog *p, int nd, double *slots, double *stack)
{
    if (nd < 0 || nd > POPK_DUAL_MAX)
        return;
    switch (nd) {
    case 0: run_nd0(p, slots, stack, 0); break;
    case 1: run_nd1(p, slots, stack, 1); break;
    case 2: run_nd2(p, slots, stack, 2); break;
    case 3: run_nd3(p, slots, stack, 3); break;
    case 4: run_nd4(p, slots, stack, 4); break;
    case 5: run_nd5(p, slots, stack, 5); break;
    case 6: run_nd6(p, slots, stack, 6); break;
    case 8: run_nd8(p, slots, stack, 8); break;
    default: run_any(p, slots, stack, nd); break;
    }
}
