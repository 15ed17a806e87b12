/* expr/expr.h — the model expression language: parse to an AST, check names, compile to a
 * compact program, evaluate on doubles or on strided dual numbers (util/dual.h).
 *
 * Language (docs/model-format.md, "Expressions"): numbers (123, 1.5, 2e-3, .5), names,
 * string literals "PM" (only as an operand of == or != against a categorical symbol),
 * + - * / ^ (right-associative, binds tighter than unary minus: -x^2 = -(x^2)),
 * unary - and +, comparisons < <= > >= == !=, && || ! (result 1 or 0),
 * if(cond, a, b) (lazy: only the chosen branch is evaluated), functions
 * exp log log10 sqrt pow(a,b) abs min(a,b,...) max(a,b,...) logit expit phi (normal CDF),
 * constants pi and e. Derivatives: comparisons and logic have zero derivative; if, min, max
 * and abs are differentiated piecewise (the branch chosen by the values; ties take the
 * first argument; d|x|/dx = 0 at x = 0). min/max return NaN when an argument is NaN.
 * a^b: d = b a^(b-1) da + a^b ln(a) db, the ln term dropped in every direction where db
 * is zero (so a negative base with a constant or undifferentiated exponent is fine).
 * Full reference: docs/expressions.md.
 *
 * Evaluation frame: every symbol lives in a slot of a flat array owned by the caller.
 * Double evaluation reads and writes slots[k]; dual evaluation reads and writes
 * slots[k*(1+nd) .. k*(1+nd)+nd] (value, then nd partials). The caller seeds the partials
 * of the inputs it differentiates with respect to. Evaluation never allocates, never
 * touches strings, and is reentrant: a program is read-only after compilation and may be
 * evaluated from many threads, each with its own slots and stack.
 */
#ifndef POPK_EXPR_H
#define POPK_EXPR_H

#include <stddef.h>

#include "popk.h"

/* Where an expression's text starts in its file, for error messages. */
typedef struct {
    const char *file;   /* may be NULL */
    int line;           /* 1-based line of the first character of the text */
    int column;         /* 1-based column of the first character of the text */
} popk_srcloc;

/* A name the compiler can resolve. */
typedef struct {
    const char *name;
    int slot;                       /* index in the evaluation frame */
    int nlevels;                    /* > 0: categorical; compare with "LEVEL" literals */
    const char *const *levels;      /* level names (nlevels of them) */
    const double *level_codes;      /* the numeric value the slot holds for each level */
} popk_symbol;

typedef struct {
    const popk_symbol *sym;
    int n;
} popk_symtab;

/* Abstract syntax tree of one expression (opaque). */
typedef struct popk_expr popk_expr;

/* Parse text[0..len) as one expression. On error returns NULL with err set to
 * FILE:LINE:COLUMN (computed from loc plus the offset in text; err->context gets the text's
 * offending line). Refuses input nested deeper than 256 levels or longer than 1 MiB with
 * POPK_ERR_LIMIT.
 * Locations: on the text's first line, column = loc->column + offset, and err->context is
 * the text's line padded on the left with loc->column - 1 spaces, so a caret printed under
 * err->column lines up (a caller holding the whole file line may overwrite context with
 * it). On later lines of a multi-line text, columns count from the start of that text line.
 * Errors found here (all POPK_ERR_MODEL unless noted): empty expression, unexpected
 * character or token, malformed or out-of-range number, unterminated string, unbalanced
 * parentheses, trailing garbage, chained comparisons (a < b < c), unknown function (with a
 * suggestion), wrong number of arguments, division by a constant zero, a string literal
 * anywhere but as an operand of == or !=. Constant subexpressions are folded when their
 * value is finite. */
popk_expr *popk_expr_parse(const char *text, size_t len, const popk_srcloc *loc,
                           popk_error *err);
void popk_expr_free(popk_expr *e);

/* Call fn for every name the expression reads (in source order, repeats included), with
 * the name's location. Stops early and returns fn's value when fn returns non-zero.
 * Function names and the constants pi and e are not reported. Returns -1 if memory runs
 * out during the walk (only for very long operator chains). */
int popk_expr_foreach_name(const popk_expr *e,
                           int (*fn)(const char *name, int line, int column, void *user),
                           void *user);

/* 1 when name is a function or constant of the language (exp, if, pi, e, ...): a model
 * must not use it as a variable name. */
int popk_expr_is_reserved(const char *name);

/* 1 when the whole expression folded to a number (stored in *value, which may be NULL). */
int popk_expr_constant(const popk_expr *e, double *value);

/* What a name stands for in popk_expr_affine: a constant (coefficient), a state the
 * expression may be affine in, or a quantity that varies along the solution (time). */
typedef enum {
    POPK_EXPR_ROLE_CONST,
    POPK_EXPR_ROLE_STATE,
    POPK_EXPR_ROLE_VARYING
} popk_expr_role;

/* Symbolic test: is e affine in the names role() calls states, e = sum_j k_j x_j + k_0, with
 * every coefficient k free of states and of varying names? Constants in the states count as
 * affine. The test is structural and conservative: + - on anything affine; * and / with a
 * state-free factor or divisor; x^1; if(c, a, b) with a state-free condition and affine
 * branches; any other function, comparison or logic only on state-free arguments; reading
 * a varying name anywhere fails. Returns 1 when affine; 0 when not, with err set to
 * FILE:LINE:COLUMN of the first offending operator, call or name and the reason (e.g.
 * "product of two amount-dependent terms"); -1 when memory runs out (err set). */
int popk_expr_affine(const popk_expr *e, popk_expr_role (*role)(const char *name, void *user),
                     void *user, popk_error *err);

/* A compiled program: a sequence of assignments slot := expression. */
typedef struct popk_prog popk_prog;

popk_prog *popk_prog_new(void);
void popk_prog_free(popk_prog *p);

/* Compile "slot := e" and append it. Names are resolved in st; an unknown name gives
 * "unknown symbol 'x' (did you mean 'y'?)", a call with the wrong number of arguments,
 * an unknown function, a string literal where a number is needed, an unknown level of a
 * categorical symbol, and division by a literal zero are errors with their location.
 * (Function, arity, division and most string errors are already reported by
 * popk_expr_parse; the compiler adds everything that needs the symbol table.) On error
 * the program is left as it was. Symbols are looked up by a linear scan: compile time
 * only. */
popk_status popk_prog_add(popk_prog *p, int slot, const popk_expr *e, const popk_symtab *st,
                          popk_error *err);

/* Number of doubles (times 1 + nd for dual evaluation) the evaluation stack needs. */
int popk_prog_stack_size(const popk_prog *p);
/* Number of assignments in the program. */
int popk_prog_count(const popk_prog *p);
/* 1 + the largest slot index the program reads or writes (0 when empty): the frame must
 * hold at least this many slots (times 1 + nd for dual evaluation). */
int popk_prog_nslots(const popk_prog *p);

/* Run the program on doubles. stack has at least popk_prog_stack_size(p) doubles. */
void popk_prog_eval(const popk_prog *p, double *slots, double *stack);

/* Run the program on strided duals with nd directions (0 <= nd <= POPK_DUAL_MAX; outside
 * that range nothing is evaluated). stack has at least popk_prog_stack_size(p) * (1 + nd)
 * doubles. Values are bit-identical to popk_prog_eval's. */
void popk_prog_eval_dual(const popk_prog *p, int nd, double *slots, double *stack);

/* Levenshtein distance-based suggestion: the name in st closest to name, or NULL when
 * nothing is close (distance more than max(1, strlen(name)/3)). */
const char *popk_symtab_suggest(const popk_symtab *st, const char *name);

#endif
