/* expr/expr_impl.h — the AST, function table and scalar math shared by parser and compiler. */
#ifndef POPK_EXPR_IMPL_H
#define POPK_EXPR_IMPL_H

#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stddef.h>

#include "expr/expr.h"
#include "util/error.h"

#define EXPR_MAX_DEPTH 256
#define EXPR_MAX_LEN ((size_t)1 << 20)

typedef enum { N_NUM, N_NAME, N_STR, N_NEG, N_NOT, N_BIN, N_CALL } expr_node_kind;

typedef enum {
    B_ADD, B_SUB, B_MUL, B_DIV, B_POW,
    B_LT, B_LE, B_GT, B_GE, B_EQ, B_NE,
    B_AND, B_OR
} expr_binop;

/* Functions callable by name; `if` is parsed as a call and compiled lazily. pow(a, b) is
 * rewritten to the binary ^ node so both spellings compile alike. */
typedef enum {
    F_EXP, F_LOG, F_LOG10, F_SQRT, F_ABS, F_LOGIT, F_EXPIT, F_PHI, /* unary, in this order */
    F_POW, F_MIN, F_MAX, F_IF, F_COUNT
} expr_fn;

typedef struct {
    const char *name;
    int min_args, max_args;     /* max_args < 0: unbounded */
} expr_fn_info;

extern const expr_fn_info expr_fn_table[F_COUNT];

/* Children form a singly linked list: args is the first, each child's next the following.
 * A binary node has exactly two (left, right); unary nodes one; calls nargs. */
typedef struct expr_node {
    expr_node_kind kind;
    int op;                 /* expr_binop for N_BIN, expr_fn for N_CALL */
    int nargs;
    size_t pos;             /* byte offset in the text: operator, name, literal or function */
    double num;             /* N_NUM */
    const char *name;       /* N_NAME / N_STR: NUL-terminated, arena-owned */
    struct expr_node *args;
    struct expr_node *next;
} expr_node;

typedef struct expr_arena_block expr_arena_block;

struct popk_expr {
    char *text;             /* copy of the source text, NUL-terminated */
    size_t len;
    char *file;             /* copy of loc->file, or NULL */
    int line, column;       /* where text starts in the file */
    expr_node *root;
    expr_arena_block *arena;
};

/* Set err to "FILE:LINE:COLUMN: message" for byte offset off of e's text, with the
 * offending text line as context (first line padded so the caret column lines up). */
popk_status expr_error_at(const popk_expr *e, popk_error *err, popk_status code, size_t off,
                          const char *fmt, ...) POPK_PRINTF(5, 6);

/* Closest candidate to name (see popk_symtab_suggest), or NULL; get(i) lists candidates. */
const char *expr_suggest(const char *name, int n, const char *(*get)(const void *, int),
                         const void *ctx);

/* Scalar semantics, shared by constant folding and by the evaluator so both agree bit for
 * bit. x^2 is x*x everywhere. */
static inline double expr_pow(double a, double b)
{
    return b == 2.0 ? a * a : pow(a, b);
}

static inline double expr_logit(double p)
{
    return log(p / (1.0 - p));
}

static inline double expr_expit(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

static inline double expr_phi(double x)
{
    return 0.5 * erfc(-x * M_SQRT1_2);
}

/* min/max: ties keep the first argument; a NaN in either argument gives NaN. */
static inline int expr_pick_second_min(double a, double b)
{
    return b < a || (b != b && a == a);
}

static inline int expr_pick_second_max(double a, double b)
{
    return b > a || (b != b && a == a);
}

static inline double expr_unary_fn(expr_fn f, double x)
{
    switch (f) {
    case F_EXP: return exp(x);
    case F_LOG: return log(x);
    case F_LOG10: return log10(x);
    case F_SQRT: return sqrt(x);
    case F_ABS: return fabs(x);
    case F_LOGIT: return expr_logit(x);
    case F_EXPIT: return expr_expit(x);
    case F_PHI: return expr_phi(x);
    default: return NAN;
    }
}

static inline double expr_binop_apply(expr_binop op, double a, double b)
{
    switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_POW: return expr_pow(a, b);
    case B_LT: return a < b;
    case B_LE: return a <= b;
    case B_GT: return a > b;
    case B_GE: return a >= b;
    case B_EQ: return a == b;
    case B_NE: return a != b;
    case B_AND: return a != 0 && b != 0;
    case B_OR: return a != 0 || b != 0;
    }
    return NAN;
}

/* The left spine of a chain of binary operators (a + b + c + ...), collected iteratively so
 * that a long sum needs no deep recursion: node[0] is the top operator, node[n - 1] the
 * innermost one. */
typedef struct {
    const expr_node *local[16];
    const expr_node **node;
    size_t n, cap;
} expr_spine;

/* Collect the spine below n; returns the leftmost operand (the first node that is not a
 * binary operator), or NULL when out of memory (release with expr_spine_free either way). */
static inline const expr_node *expr_spine_collect(expr_spine *s, const expr_node *n)
{
    s->node = s->local;
    s->n = 0;
    s->cap = sizeof s->local / sizeof s->local[0];
    while (n->kind == N_BIN) {
        if (s->n == s->cap) {
            const expr_node **grown = malloc(2 * s->cap * sizeof *grown);
            if (!grown)
                return NULL;
            memcpy(grown, s->node, s->n * sizeof *grown);
            if (s->node != s->local)
                free(s->node);
            s->node = grown;
            s->cap *= 2;
        }
        s->node[s->n++] = n;
        n = n->args;
    }
    return n;
}

static inline void expr_spine_free(expr_spine *s)
{
    if (s->node != s->local)
        free(s->node);
    s->node = s->local;
}

#endif
