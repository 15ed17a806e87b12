/* expr/prog.c — compiling ASTs to stack bytecode and running it on doubles or strided duals. */
#include "expr/expr_impl.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/dual.h"

/* Suffixes: _S takes its right operand from a slot, _K from the instruction's constant;
 * R-forms take the operands the other way round (slot or constant on the left). */
typedef enum {
    OP_PUSH_K, OP_LOAD, OP_STORE,
    OP_ADD, OP_SUB, OP_MUL, OP_DIV,
    OP_ADD_S, OP_SUB_S, OP_RSUB_S, OP_MUL_S, OP_DIV_S, OP_RDIV_S,
    OP_ADD_K, OP_RSUB_K, OP_MUL_K, OP_DIV_K, OP_RDIV_K,
    OP_NEG, OP_POW, OP_POW_K, OP_RPOW_K, OP_SQR,
    OP_EXP, OP_LOG, OP_LOG10, OP_SQRT, OP_ABS, OP_LOGIT, OP_EXPIT, OP_PHI,
    OP_MIN, OP_MAX,
    OP_LT, OP_LE, OP_GT, OP_GE, OP_EQ, OP_NE,
    OP_LT_K, OP_LE_K, OP_GT_K, OP_GE_K, OP_EQ_K, OP_NE_K,
    OP_NOT, OP_BOOL,
    OP_JUMP, OP_JZ, OP_JFALSE_KEEP, OP_JTRUE_KEEP
} opcode;

typedef struct {
    int32_t op;
    int32_t arg;        /* slot index or jump target (instruction index) */
    double k;           /* constant operand */
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
    p->code[p->ncode++] = (instr){.op = op, .arg = arg, .k = k};
    c->depth += stack_delta;
    if (c->depth > p->max_stack)
        p->max_stack = c->depth;
    if ((op == OP_LOAD || op == OP_STORE || (op >= OP_ADD_S && op <= OP_RDIV_S)) &&
        arg + 1 > p->nslots)
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
    if (sug)
        cfail(c, n->pos, "unknown symbol '%s' (did you mean '%s'?)", n->name, sug);
    else
        cfail(c, n->pos, "unknown symbol '%s'", n->name);
    return NULL;
}

static const char *level_get(const void *ctx, int i)
{
    return ((const popk_symbol *)ctx)->levels[i];
}

/* name == "LEVEL" (or !=): compare the slot with the level's code. */
static int compile_level_compare(compiler *c, expr_binop op, const expr_node *name,
                                 const expr_node *str)
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
            if (emit(c, OP_LOAD, s->slot, 0, 1))
                return -1;
            return emit(c, op == B_EQ ? OP_EQ_K : OP_NE_K, 0, s->level_codes[i], 0);
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

static int compile_node(compiler *c, const expr_node *n);

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
        c->p->code[jump].arg = (int32_t)c->p->ncode;
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
    const expr_node *spine_local[64];
    const expr_node **spine = spine_local;
    size_t nspine = 0, cap = 64;
    int rc = 0;
    while (n->kind == N_BIN) {
        if (nspine == cap) {
            const expr_node **grown = malloc(2 * cap * sizeof *grown);
            if (!grown) {
                c->status = popk_error_set(c->err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
                rc = -1;
                goto out;
            }
            memcpy(grown, spine, nspine * sizeof *grown);
            if (spine != spine_local)
                free(spine);
            spine = grown;
            cap *= 2;
        }
        spine[nspine++] = n;
        n = n->args;
    }
    rc = compile_first_binary(c, spine[--nspine]);
    while (!rc && nspine > 0)
        rc = compile_rest(c, spine[--nspine]);
out:
    if (spine != spine_local)
        free(spine);
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
        if (compile_node(c, a))
            return -1;
        size_t jz = c->p->ncode;
        if (emit(c, OP_JZ, 0, 0, -1) || compile_node(c, a->next))
            return -1;
        size_t jump = c->p->ncode;
        if (emit(c, OP_JUMP, 0, 0, 0))
            return -1;
        c->depth--;  /* the else branch starts from the depth before the then branch */
        c->p->code[jz].arg = (int32_t)c->p->ncode;
        if (compile_node(c, a->next->next))
            return -1;
        c->p->code[jump].arg = (int32_t)c->p->ncode;
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

#if defined(__GNUC__)
#define EVAL_INLINE __attribute__((always_inline)) inline
#else
#define EVAL_INLINE inline
#endif

/* d/dx of x^b at value v = x^b, well defined at x = 0 for b >= 1 too. */
static inline double pow_slope(double x, double b, double v)
{
    if (x != 0)
        return b * v / x;
    if (b == 0)
        return 0;
    return b * pow(x, b - 1);
}

/* One instantiation per small nd lets the compiler unroll the partial-derivative loops and
 * keep the top of the stack in registers; nd = 0 is the plain double evaluator. Entries are
 * w = 1 + nd doubles. The top entry lives in `top`; deeper entries are spilled to the
 * caller's stack, t pointing at the highest spilled one. Keeping the top out of memory
 * takes a store-to-load round trip off every instruction's critical path. */
static EVAL_INLINE void run(const popk_prog *restrict p, double *restrict slots,
                            double *restrict stack, const int nd, double *restrict top)
{
    const int w = 1 + nd;
    const size_t wsize = sizeof(double) * (size_t)w;
    const instr *code = p->code;
    const size_t ncode = p->ncode;
    double *t = stack - w;
    size_t pc = 0;
    for (int i = 0; i < w; i++)
        top[i] = 0;
    while (pc < ncode) {
        const instr *in = &code[pc++];
        switch ((opcode)in->op) {
        case OP_PUSH_K:
            t += w;
            memcpy(t, top, wsize);
            top[0] = in->k;
            for (int i = 1; i < w; i++)
                top[i] = 0;
            break;
        case OP_LOAD:
            t += w;
            memcpy(t, top, wsize);
            memcpy(top, slots + (size_t)in->arg * w, wsize);
            break;
        case OP_STORE:
            /* Assignments end at depth zero, so nothing below needs restoring. */
            memcpy(slots + (size_t)in->arg * w, top, wsize);
            t -= w;
            break;
        case OP_ADD:
            for (int i = 0; i < w; i++)
                top[i] = t[i] + top[i];
            t -= w;
            break;
        case OP_SUB:
            for (int i = 0; i < w; i++)
                top[i] = t[i] - top[i];
            t -= w;
            break;
        case OP_MUL:
            for (int i = 1; i < w; i++)
                top[i] = t[i] * top[0] + t[0] * top[i];
            top[0] = t[0] * top[0];
            t -= w;
            break;
        case OP_DIV: {
            double r = t[0] / top[0];
            if (nd > 0) {
                double inv = 1.0 / top[0];
                for (int i = 1; i < w; i++)
                    top[i] = (t[i] - r * top[i]) * inv;
            }
            top[0] = r;
            t -= w;
            break;
        }
        case OP_ADD_S: {
            const double *s = slots + (size_t)in->arg * w;
            for (int i = 0; i < w; i++)
                top[i] += s[i];
            break;
        }
        case OP_SUB_S: {
            const double *s = slots + (size_t)in->arg * w;
            for (int i = 0; i < w; i++)
                top[i] -= s[i];
            break;
        }
        case OP_RSUB_S: {
            const double *s = slots + (size_t)in->arg * w;
            for (int i = 0; i < w; i++)
                top[i] = s[i] - top[i];
            break;
        }
        case OP_MUL_S: {
            const double *s = slots + (size_t)in->arg * w;
            for (int i = 1; i < w; i++)
                top[i] = top[i] * s[0] + top[0] * s[i];
            top[0] *= s[0];
            break;
        }
        case OP_DIV_S: {
            const double *s = slots + (size_t)in->arg * w;
            double r = top[0] / s[0];
            if (nd > 0) {
                double inv = 1.0 / s[0];
                for (int i = 1; i < w; i++)
                    top[i] = (top[i] - r * s[i]) * inv;
            }
            top[0] = r;
            break;
        }
        case OP_RDIV_S: {
            const double *s = slots + (size_t)in->arg * w;
            double r = s[0] / top[0];
            if (nd > 0) {
                double inv = 1.0 / top[0];
                for (int i = 1; i < w; i++)
                    top[i] = (s[i] - r * top[i]) * inv;
            }
            top[0] = r;
            break;
        }
        case OP_ADD_K:
            top[0] += in->k;
            break;
        case OP_RSUB_K:
            top[0] = in->k - top[0];
            for (int i = 1; i < w; i++)
                top[i] = -top[i];
            break;
        case OP_MUL_K:
            for (int i = 0; i < w; i++)
                top[i] *= in->k;
            break;
        case OP_DIV_K:
            for (int i = 0; i < w; i++)
                top[i] /= in->k;
            break;
        case OP_RDIV_K: {
            double r = in->k / top[0];
            if (nd > 0) {
                double c = -r / top[0];
                for (int i = 1; i < w; i++)
                    top[i] *= c;
            }
            top[0] = r;
            break;
        }
        case OP_NEG:
            for (int i = 0; i < w; i++)
                top[i] = -top[i];
            break;
        case OP_POW: {
            double v = expr_pow(t[0], top[0]);
            if (nd > 0) {
                double ca = pow_slope(t[0], top[0], v);
                int exponent_varies = 0;
                for (int i = 1; i < w; i++)
                    exponent_varies |= top[i] != 0;
                /* The ln(a) term only when the exponent moves, so (-2)^2 stays
                 * differentiable in the base. */
                if (exponent_varies) {
                    double cb = v * log(t[0]);
                    for (int i = 1; i < w; i++)
                        top[i] = ca * t[i] + (top[i] != 0 ? cb * top[i] : 0);
                } else {
                    for (int i = 1; i < w; i++)
                        top[i] = ca * t[i];
                }
            }
            top[0] = v;
            t -= w;
            break;
        }
        case OP_POW_K: {
            double v = expr_pow(top[0], in->k);
            if (nd > 0) {
                double ca = pow_slope(top[0], in->k, v);
                for (int i = 1; i < w; i++)
                    top[i] *= ca;
            }
            top[0] = v;
            break;
        }
        case OP_RPOW_K: {
            double v = expr_pow(in->k, top[0]);
            if (nd > 0) {
                int varies = 0;
                for (int i = 1; i < w; i++)
                    varies |= top[i] != 0;
                if (varies) {
                    double cb = v * log(in->k);
                    for (int i = 1; i < w; i++)
                        top[i] = top[i] != 0 ? cb * top[i] : 0;
                }
            }
            top[0] = v;
            break;
        }
        case OP_SQR: {
            double c = 2 * top[0];
            for (int i = 1; i < w; i++)
                top[i] *= c;
            top[0] *= top[0];
            break;
        }
        case OP_EXP: {
            double v = exp(top[0]);
            for (int i = 1; i < w; i++)
                top[i] *= v;
            top[0] = v;
            break;
        }
        case OP_LOG:
            if (nd > 0) {
                double c = 1.0 / top[0];
                for (int i = 1; i < w; i++)
                    top[i] *= c;
            }
            top[0] = log(top[0]);
            break;
        case OP_LOG10:
            if (nd > 0) {
                double c = 1.0 / (top[0] * M_LN10);
                for (int i = 1; i < w; i++)
                    top[i] *= c;
            }
            top[0] = log10(top[0]);
            break;
        case OP_SQRT: {
            double v = sqrt(top[0]);
            if (nd > 0) {
                double c = 0.5 / v;
                for (int i = 1; i < w; i++)
                    top[i] *= c;
            }
            top[0] = v;
            break;
        }
        case OP_ABS: {
            double c = top[0] > 0 ? 1.0 : top[0] < 0 ? -1.0 : 0.0;
            for (int i = 1; i < w; i++)
                top[i] *= c;
            top[0] = fabs(top[0]);
            break;
        }
        case OP_LOGIT:
            if (nd > 0) {
                double c = 1.0 / (top[0] * (1.0 - top[0]));
                for (int i = 1; i < w; i++)
                    top[i] *= c;
            }
            top[0] = expr_logit(top[0]);
            break;
        case OP_EXPIT: {
            double v = expr_expit(top[0]);
            double c = v * (1.0 - v);
            for (int i = 1; i < w; i++)
                top[i] *= c;
            top[0] = v;
            break;
        }
        case OP_PHI:
            if (nd > 0) {
                double c = exp(-0.5 * top[0] * top[0]) * (0.5 * M_2_SQRTPI * M_SQRT1_2);
                for (int i = 1; i < w; i++)
                    top[i] *= c;
            }
            top[0] = expr_phi(top[0]);
            break;
        case OP_MIN:
        case OP_MAX: {
            int second = in->op == OP_MIN ? expr_pick_second_min(t[0], top[0])
                                          : expr_pick_second_max(t[0], top[0]);
            if (!second)
                memcpy(top, t, wsize);
            t -= w;
            break;
        }
        case OP_LT:
        case OP_LE:
        case OP_GT:
        case OP_GE:
        case OP_EQ:
        case OP_NE: {
            double x = t[0], y = top[0];
            int r = in->op == OP_LT ? x < y : in->op == OP_LE ? x <= y : in->op == OP_GT ? x > y
                  : in->op == OP_GE ? x >= y : in->op == OP_EQ ? x == y : x != y;
            top[0] = r;
            for (int i = 1; i < w; i++)
                top[i] = 0;
            t -= w;
            break;
        }
        case OP_LT_K:
        case OP_LE_K:
        case OP_GT_K:
        case OP_GE_K:
        case OP_EQ_K:
        case OP_NE_K: {
            double x = top[0], y = in->k;
            int r = in->op == OP_LT_K ? x < y : in->op == OP_LE_K ? x <= y
                  : in->op == OP_GT_K ? x > y : in->op == OP_GE_K ? x >= y
                  : in->op == OP_EQ_K ? x == y : x != y;
            top[0] = r;
            for (int i = 1; i < w; i++)
                top[i] = 0;
            break;
        }
        case OP_NOT:
            top[0] = top[0] == 0;
            for (int i = 1; i < w; i++)
                top[i] = 0;
            break;
        case OP_BOOL:
            top[0] = top[0] != 0;
            for (int i = 1; i < w; i++)
                top[i] = 0;
            break;
        case OP_JUMP:
            pc = (size_t)in->arg;
            break;
        case OP_JZ: {
            double cond = top[0];
            memcpy(top, t, wsize);
            t -= w;
            if (cond == 0)
                pc = (size_t)in->arg;
            break;
        }
        case OP_JFALSE_KEEP:
            if (top[0] == 0) {
                for (int i = 0; i < w; i++)
                    top[i] = 0;
                pc = (size_t)in->arg;
            } else {
                memcpy(top, t, wsize);
                t -= w;
            }
            break;
        case OP_JTRUE_KEEP:
            if (top[0] != 0) {
                top[0] = 1;
                for (int i = 1; i < w; i++)
                    top[i] = 0;
                pc = (size_t)in->arg;
            } else {
                memcpy(top, t, wsize);
                t -= w;
            }
            break;
        }
    }
}

/* top is a local array of exactly 1 + nd doubles in each instantiation, so the compiler can
 * keep it in registers. */
#define RUN_ND(n)                                   \
    do {                                            \
        double top_[1 + (n)];                       \
        run(p, slots, stack, (n), top_);            \
    } while (0)

void popk_prog_eval(const popk_prog *p, double *slots, double *stack)
{
    RUN_ND(0);
}

void popk_prog_eval_dual(const popk_prog *p, int nd, double *slots, double *stack)
{
    switch (nd) {
    case 0: RUN_ND(0); break;
    case 1: RUN_ND(1); break;
    case 2: RUN_ND(2); break;
    case 3: RUN_ND(3); break;
    case 4: RUN_ND(4); break;
    case 5: RUN_ND(5); break;
    case 6: RUN_ND(6); break;
    case 7: RUN_ND(7); break;
    case 8: RUN_ND(8); break;
    default: {
        double top[1 + POPK_DUAL_MAX];
        run(p, slots, stack, nd, top);
        break;
    }
    }
}
