/* expr/expr.c — parsing expression text into a constant-folded AST, with located errors. */
#include "expr/expr_impl.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const expr_fn_info expr_fn_table[F_COUNT] = {
    [F_EXP] = {"exp", 1, 1},     [F_LOG] = {"log", 1, 1},     [F_LOG10] = {"log10", 1, 1},
    [F_SQRT] = {"sqrt", 1, 1},   [F_ABS] = {"abs", 1, 1},     [F_LOGIT] = {"logit", 1, 1},
    [F_EXPIT] = {"expit", 1, 1}, [F_PHI] = {"phi", 1, 1},     [F_POW] = {"pow", 2, 2},
    [F_MIN] = {"min", 2, -1},    [F_MAX] = {"max", 2, -1},    [F_IF] = {"if", 3, 3},
};

static const struct {
    const char *name;
    double value;
} expr_constants[] = {{"pi", M_PI}, {"e", M_E}};

#define NCONSTANTS (sizeof expr_constants / sizeof expr_constants[0])

/* ---- arena ---------------------------------------------------------------------------- */

struct expr_arena_block {
    expr_arena_block *prev;
    size_t used, size;
    max_align_t data[];
};

/* align: 1 for strings, alignof the node otherwise (a 1 MiB expression has a million
 * nodes, so padding matters). */
static void *arena_alloc(popk_expr *e, size_t n, size_t align)
{
    expr_arena_block *b = e->arena;
    if (b)
        b->used = (b->used + align - 1) / align * align;
    if (!b || b->used > b->size || b->size - b->used < n) {
        size_t size = n > 16384 ? n : 16384;
        b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
        b->prev = e->arena;
        b->used = 0;
        b->size = size;
        e->arena = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

void popk_expr_free(popk_expr *e)
{
    if (!e)
        return;
    expr_arena_block *b = e->arena;
    while (b) {
        expr_arena_block *prev = b->prev;
        free(b);
        b = prev;
    }
    free(e->text);
    free(e->file);
    free(e);
}

/* ---- locations and errors ------------------------------------------------------------- */

static void locate(const popk_expr *e, size_t off, int *line, int *column, size_t *line_start)
{
    int nl = 0;
    size_t start = 0;
    if (off > e->len)
        off = e->len;
    for (size_t i = 0; i < off; i++)
        if (e->text[i] == '\n') {
            nl++;
            start = i + 1;
        }
    *line = e->line + nl;
    *column = (int)(off - start) + 1 + (nl == 0 ? e->column - 1 : 0);
    *line_start = start;
}

popk_status expr_error_at(const popk_expr *e, popk_error *err, popk_status code, size_t off,
                          const char *fmt, ...)
{
    if (!err)
        return code;
    int line, column;
    size_t start;
    locate(e, off, &line, &column, &start);
    char msg[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    popk_error_set(err, code, e->file, line, column, "%s", msg);
    /* The caret is printed under `column`, which counts from the start of the file line;
     * pad the text's first line so it lands on the right character. */
    char ctx[sizeof err->context];
    size_t pad = start == 0 && e->column > 1 ? (size_t)(e->column - 1) : 0;
    if (pad > sizeof ctx - 1)
        pad = sizeof ctx - 1;
    memset(ctx, ' ', pad);
    size_t n = 0;
    while (pad + n + 1 < sizeof ctx && start + n < e->len && e->text[start + n] != '\n' &&
           e->text[start + n] != '\r') {
        char ch = e->text[start + n];
        ctx[pad + n] = ch == '\t' || ch == '\0' ? ' ' : ch;
        n++;
    }
    popk_error_set_context(err, ctx, pad + n);
    return code;
}

/* ---- suggestions ---------------------------------------------------------------------- */

/* Optimal string alignment distance (Levenshtein plus adjacent transposition), capped:
 * returns cap + 1 as soon as the distance must exceed cap. */
static int osa_distance(const char *a, const char *b, int cap)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (abs(la - lb) > cap)
        return cap + 1;
    if (la > 63 || lb > 63)
        return strcmp(a, b) == 0 ? 0 : cap + 1;
    int d[64][64];
    for (int i = 0; i <= la; i++)
        d[i][0] = i;
    for (int j = 0; j <= lb; j++)
        d[0][j] = j;
    for (int i = 1; i <= la; i++) {
        for (int j = 1; j <= lb; j++) {
            int cost = a[i - 1] == b[j - 1] ? 0 : 1;
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

const char *expr_suggest(const char *name, int n, const char *(*get)(const void *, int),
                         const void *ctx)
{
    if (!name)
        return NULL;
    /* A difference of case only is the likeliest slip (wt for WT). */
    for (int i = 0; i < n; i++) {
        const char *c = get(ctx, i);
        if (c && strcasecmp(c, name) == 0)
            return c;
    }
    int cap = (int)strlen(name) / 3;
    if (cap < 1)
        cap = 1;
    const char *best = NULL;
    int best_d = cap + 1;
    for (int i = 0; i < n; i++) {
        const char *c = get(ctx, i);
        if (!c)
            continue;
        int d = osa_distance(name, c, cap);
        if (d < best_d) {
            best_d = d;
            best = c;
        }
    }
    return best;
}

static const char *symtab_get(const void *ctx, int i)
{
    return ((const popk_symtab *)ctx)->sym[i].name;
}

const char *popk_symtab_suggest(const popk_symtab *st, const char *name)
{
    if (!st || st->n <= 0)
        return NULL;
    return expr_suggest(name, st->n, symtab_get, st);
}

static const char *fn_get(const void *ctx, int i)
{
    (void)ctx;
    return expr_fn_table[i].name;
}

int popk_expr_is_reserved(const char *name)
{
    if (!name)
        return 0;
    for (int i = 0; i < F_COUNT; i++)
        if (strcmp(expr_fn_table[i].name, name) == 0)
            return 1;
    for (size_t i = 0; i < NCONSTANTS; i++)
        if (strcmp(expr_constants[i].name, name) == 0)
            return 1;
    return 0;
}

/* ---- lexer ---------------------------------------------------------------------------- */

typedef enum {
    T_END, T_NUM, T_NAME, T_STR, T_LPAREN, T_RPAREN, T_COMMA,
    T_PLUS, T_MINUS, T_STAR, T_SLASH, T_CARET, T_BANG,
    T_LT, T_LE, T_GT, T_GE, T_EQ, T_NE, T_AND, T_OR
} token_type;

typedef struct {
    token_type type;
    size_t pos, len;
    double num;
} token;

typedef struct {
    popk_expr *e;
    popk_error *err;
    const char *s;
    size_t len, at;     /* at: where the lexer continues */
    token tok;          /* current lookahead */
    int depth;
    popk_status status;
} parser;

static int is_name_start(int c)
{
    return isalpha(c) || c == '_';
}

static int is_name_char(int c)
{
    return isalnum(c) || c == '_' || c == '.';
}

/* Describe the current token for messages, e.g. "')'" or "end of input". */
static const char *tok_desc(const parser *ps, char *buf, size_t size)
{
    if (ps->tok.type == T_END)
        return "end of input";
    size_t n = ps->tok.len > 24 ? 24 : ps->tok.len;
    snprintf(buf, size, "'%.*s%s'", (int)n, ps->s + ps->tok.pos, n < ps->tok.len ? "..." : "");
    return buf;
}

static int fail(parser *ps, popk_status code, size_t pos, const char *fmt, ...)
    POPK_PRINTF(4, 5);

static int fail(parser *ps, popk_status code, size_t pos, const char *fmt, ...)
{
    if (ps->status != POPK_OK)
        return -1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ps->status = expr_error_at(ps->e, ps->err, code, pos, "%s", msg);
    return -1;
}

static int lex_number(parser *ps, token *t)
{
    const char *s = ps->s;
    size_t i = ps->at, n = ps->len;
    while (i < n && isdigit((unsigned char)s[i]))
        i++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j < n && isdigit((unsigned char)s[j])) {
            while (j < n && isdigit((unsigned char)s[j]))
                j++;
            i = j;
        } else {
            return fail(ps, POPK_ERR_MODEL, ps->at, "malformed number '%.*s': exponent has no digits",
                        (int)(j - ps->at), s + ps->at);
        }
    }
    if (i < n && is_name_char((unsigned char)s[i]))
        return fail(ps, POPK_ERR_MODEL, ps->at, "malformed number '%.*s'",
                    (int)(i + 1 - ps->at), s + ps->at);
    char buf[128];
    size_t len = i - ps->at;
    if (len >= sizeof buf)
        return fail(ps, POPK_ERR_MODEL, ps->at, "number with more than %d characters",
                    (int)sizeof buf - 1);
    memcpy(buf, s + ps->at, len);
    buf[len] = '\0';
    double v = strtod(buf, NULL);
    if (!isfinite(v))
        return fail(ps, POPK_ERR_MODEL, ps->at, "number '%s' is out of range", buf);
    t->type = T_NUM;
    t->num = v;
    t->len = len;
    return 0;
}

/* Read the next token into ps->tok. */
static int advance(parser *ps)
{
    const char *s = ps->s;
    size_t n = ps->len;
    while (ps->at < n && (s[ps->at] == ' ' || s[ps->at] == '\t' || s[ps->at] == '\n' ||
                          s[ps->at] == '\r'))
        ps->at++;
    token *t = &ps->tok;
    t->pos = ps->at;
    t->len = 1;
    if (ps->at >= n) {
        t->type = T_END;
        t->len = 0;
        return 0;
    }
    unsigned char c = (unsigned char)s[ps->at];
    unsigned char c2 = ps->at + 1 < n ? (unsigned char)s[ps->at + 1] : 0;
    if (isdigit(c) || (c == '.' && isdigit(c2))) {
        if (lex_number(ps, t))
            return -1;
    } else if (is_name_start(c)) {
        size_t i = ps->at;
        while (i < n && is_name_char((unsigned char)s[i]))
            i++;
        t->type = T_NAME;
        t->len = i - ps->at;
    } else if (c == '"' || c == '\'') {
        size_t i = ps->at + 1;
        while (i < n && (unsigned char)s[i] != c && s[i] != '\n')
            i++;
        if (i >= n || s[i] != (char)c)
            return fail(ps, POPK_ERR_MODEL, ps->at, "unterminated string literal");
        t->type = T_STR;
        t->len = i + 1 - ps->at;
    } else {
        switch (c) {
        case '(': t->type = T_LPAREN; break;
        case ')': t->type = T_RPAREN; break;
        case ',': t->type = T_COMMA; break;
        case '+': t->type = T_PLUS; break;
        case '-': t->type = T_MINUS; break;
        case '*':
            if (c2 == '*')
                return fail(ps, POPK_ERR_MODEL, ps->at, "unexpected '**'; use '^' for powers");
            t->type = T_STAR;
            break;
        case '/': t->type = T_SLASH; break;
        case '^': t->type = T_CARET; break;
        case '<':
            t->type = c2 == '=' ? T_LE : T_LT;
            break;
        case '>':
            t->type = c2 == '=' ? T_GE : T_GT;
            break;
        case '=':
            if (c2 != '=')
                return fail(ps, POPK_ERR_MODEL, ps->at, "unexpected '='; use '==' to compare");
            t->type = T_EQ;
            break;
        case '!':
            t->type = c2 == '=' ? T_NE : T_BANG;
            break;
        case '&':
            if (c2 != '&')
                return fail(ps, POPK_ERR_MODEL, ps->at, "unexpected '&'; use '&&' for 'and'");
            t->type = T_AND;
            break;
        case '|':
            if (c2 != '|')
                return fail(ps, POPK_ERR_MODEL, ps->at, "unexpected '|'; use '||' for 'or'");
            t->type = T_OR;
            break;
        default:
            if (isprint(c))
                return fail(ps, POPK_ERR_MODEL, ps->at, "unexpected character '%c'", c);
            return fail(ps, POPK_ERR_MODEL, ps->at, "unexpected byte 0x%02X", c);
        }
        if (t->type == T_LE || t->type == T_GE || t->type == T_EQ || t->type == T_NE ||
            t->type == T_AND || t->type == T_OR)
            t->len = 2;
    }
    ps->at += t->len;
    return 0;
}

/* ---- AST construction with constant folding ------------------------------------------- */

static expr_node *new_node(parser *ps, expr_node_kind kind, size_t pos)
{
    expr_node *n = arena_alloc(ps->e, sizeof *n, _Alignof(expr_node));
    if (!n) {
        fail(ps, POPK_ERR_NOMEM, pos, "out of memory");
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->pos = pos;
    return n;
}

static char *arena_strndup(parser *ps, const char *s, size_t len)
{
    char *c = arena_alloc(ps->e, len + 1, 1);
    if (!c) {
        fail(ps, POPK_ERR_NOMEM, 0, "out of memory");
        return NULL;
    }
    memcpy(c, s, len);
    c[len] = '\0';
    return c;
}

static expr_node *num_node(parser *ps, double v, size_t pos)
{
    expr_node *n = new_node(ps, N_NUM, pos);
    if (n)
        n->num = v;
    return n;
}

/* String literals only make sense as an operand of == or != (categorical levels). */
static int need_number(parser *ps, const expr_node *n)
{
    if (n->kind != N_STR)
        return 0;
    return fail(ps, POPK_ERR_MODEL, n->pos,
                "string literal \"%s\" can only be compared (== or !=) with a categorical "
                "covariate",
                n->name);
}

static int is_compare(expr_binop op)
{
    return op >= B_LT && op <= B_NE;
}

static expr_node *make_binary(parser *ps, expr_binop op, size_t pos, expr_node *a, expr_node *b)
{
    if (op == B_EQ || op == B_NE) {
        if (a->kind == N_STR && b->kind == N_STR) {
            fail(ps, POPK_ERR_MODEL, a->pos,
                 "comparison of two string literals; compare a categorical covariate with a "
                 "level name");
            return NULL;
        }
    } else if (need_number(ps, a) || need_number(ps, b)) {
        return NULL;
    }
    if (op == B_DIV && b->kind == N_NUM && b->num == 0) {
        fail(ps, POPK_ERR_MODEL, pos, "division by zero");
        return NULL;
    }
    if (a->kind == N_NUM && b->kind == N_NUM) {
        double v = expr_binop_apply(op, a->num, b->num);
        /* A non-finite constant is left for run time, where it shows where it came from. */
        if (isfinite(v))
            return num_node(ps, v, a->pos);
    }
    expr_node *n = new_node(ps, N_BIN, pos);
    if (!n)
        return NULL;
    n->op = (int)op;
    n->nargs = 2;
    n->args = a;
    a->next = b;
    b->next = NULL;
    return n;
}

static expr_node *make_unary(parser *ps, expr_node_kind kind, size_t pos, expr_node *a)
{
    if (need_number(ps, a))
        return NULL;
    if (a->kind == N_NUM)
        return num_node(ps, kind == N_NEG ? -a->num : (double)(a->num == 0), pos);
    expr_node *n = new_node(ps, kind, pos);
    if (!n)
        return NULL;
    n->nargs = 1;
    n->args = a;
    a->next = NULL;
    return n;
}

static expr_node *make_call(parser *ps, expr_fn f, size_t pos, expr_node *args, int nargs)
{
    for (expr_node *a = args; a; a = a->next)
        if (need_number(ps, a))
            return NULL;
    if (f == F_POW)
        return make_binary(ps, B_POW, pos, args, args->next);
    int all_const = f != F_IF;
    for (expr_node *a = args; a; a = a->next)
        all_const = all_const && a->kind == N_NUM;
    if (all_const) {
        double v;
        if (f == F_MIN || f == F_MAX) {
            v = args->num;
            for (expr_node *a = args->next; a; a = a->next)
                if (f == F_MIN ? expr_pick_second_min(v, a->num) : expr_pick_second_max(v, a->num))
                    v = a->num;
        } else {
            v = expr_unary_fn(f, args->num);
        }
        if (isfinite(v))
            return num_node(ps, v, pos);
    }
    expr_node *n = new_node(ps, N_CALL, pos);
    if (!n)
        return NULL;
    n->op = (int)f;
    n->nargs = nargs;
    n->args = args;
    return n;
}

/* ---- recursive descent (precedence climbing) ------------------------------------------ */

static expr_node *parse_binary(parser *ps, int min_prec);

static int binop_of(token_type t, expr_binop *op, int *prec)
{
    switch (t) {
    case T_OR: *op = B_OR; *prec = 1; return 1;
    case T_AND: *op = B_AND; *prec = 2; return 1;
    case T_EQ: *op = B_EQ; *prec = 3; return 1;
    case T_NE: *op = B_NE; *prec = 3; return 1;
    case T_LT: *op = B_LT; *prec = 4; return 1;
    case T_LE: *op = B_LE; *prec = 4; return 1;
    case T_GT: *op = B_GT; *prec = 4; return 1;
    case T_GE: *op = B_GE; *prec = 4; return 1;
    case T_PLUS: *op = B_ADD; *prec = 5; return 1;
    case T_MINUS: *op = B_SUB; *prec = 5; return 1;
    case T_STAR: *op = B_MUL; *prec = 6; return 1;
    case T_SLASH: *op = B_DIV; *prec = 6; return 1;
    default: return 0;
    }
}

static expr_node *parse_call(parser *ps, size_t name_pos, size_t name_len)
{
    char fname[64];
    snprintf(fname, sizeof fname, "%.*s", (int)(name_len < 63 ? name_len : 63), ps->s + name_pos);
    int f = -1;
    for (int i = 0; i < F_COUNT; i++)
        if (name_len == strlen(expr_fn_table[i].name) &&
            memcmp(expr_fn_table[i].name, ps->s + name_pos, name_len) == 0)
            f = i;
    if (f < 0) {
        const char *sug = expr_suggest(fname, F_COUNT, fn_get, NULL);
        if (sug)
            fail(ps, POPK_ERR_MODEL, name_pos, "unknown function '%s' (did you mean '%s'?)", fname,
                 sug);
        else
            fail(ps, POPK_ERR_MODEL, name_pos, "unknown function '%s'", fname);
        return NULL;
    }
    size_t open = ps->tok.pos;
    if (advance(ps))
        return NULL;
    expr_node *first = NULL, *last = NULL;
    int nargs = 0;
    if (ps->tok.type != T_RPAREN) {
        for (;;) {
            expr_node *a = parse_binary(ps, 1);
            if (!a)
                return NULL;
            a->next = NULL;
            if (last)
                last->next = a;
            else
                first = a;
            last = a;
            nargs++;
            if (ps->tok.type == T_COMMA) {
                if (advance(ps))
                    return NULL;
                continue;
            }
            if (ps->tok.type == T_RPAREN)
                break;
            char buf[40];
            if (ps->tok.type == T_END)
                fail(ps, POPK_ERR_MODEL, open, "unbalanced parentheses: '(' is never closed");
            else
                fail(ps, POPK_ERR_MODEL, ps->tok.pos,
                     "expected ',' or ')' in the arguments of %s(), found %s", fname,
                     tok_desc(ps, buf, sizeof buf));
            return NULL;
        }
    }
    if (advance(ps))
        return NULL;
    const expr_fn_info *fi = &expr_fn_table[f];
    if (nargs < fi->min_args || (fi->max_args >= 0 && nargs > fi->max_args)) {
        if (fi->max_args < 0)
            fail(ps, POPK_ERR_MODEL, name_pos, "%s() takes at least %d arguments, got %d", fname,
                 fi->min_args, nargs);
        else
            fail(ps, POPK_ERR_MODEL, name_pos, "%s() takes %d argument%s, got %d", fname,
                 fi->min_args, fi->min_args == 1 ? "" : "s", nargs);
        return NULL;
    }
    return make_call(ps, (expr_fn)f, name_pos, first, nargs);
}

static expr_node *parse_primary(parser *ps)
{
    token t = ps->tok;
    char buf[40];
    switch (t.type) {
    case T_NUM:
        if (advance(ps))
            return NULL;
        return num_node(ps, t.num, t.pos);
    case T_STR: {
        if (advance(ps))
            return NULL;
        expr_node *n = new_node(ps, N_STR, t.pos);
        if (n && !(n->name = arena_strndup(ps, ps->s + t.pos + 1, t.len - 2)))
            return NULL;
        return n;
    }
    case T_NAME: {
        if (advance(ps))
            return NULL;
        if (ps->tok.type == T_LPAREN)
            return parse_call(ps, t.pos, t.len);
        for (size_t i = 0; i < NCONSTANTS; i++)
            if (t.len == strlen(expr_constants[i].name) &&
                memcmp(expr_constants[i].name, ps->s + t.pos, t.len) == 0)
                return num_node(ps, expr_constants[i].value, t.pos);
        expr_node *n = new_node(ps, N_NAME, t.pos);
        if (n && !(n->name = arena_strndup(ps, ps->s + t.pos, t.len)))
            return NULL;
        return n;
    }
    case T_LPAREN: {
        if (advance(ps))
            return NULL;
        expr_node *n = parse_binary(ps, 1);
        if (!n)
            return NULL;
        if (ps->tok.type == T_RPAREN) {
            if (advance(ps))
                return NULL;
            return n;
        }
        if (ps->tok.type == T_END)
            fail(ps, POPK_ERR_MODEL, t.pos, "unbalanced parentheses: '(' is never closed");
        else
            fail(ps, POPK_ERR_MODEL, ps->tok.pos, "expected ')' or an operator, found %s",
                 tok_desc(ps, buf, sizeof buf));
        return NULL;
    }
    case T_RPAREN:
        fail(ps, POPK_ERR_MODEL, t.pos, "unbalanced parentheses: unexpected ')'");
        return NULL;
    case T_END:
        fail(ps, POPK_ERR_MODEL, t.pos, "expected an expression, found end of input");
        return NULL;
    default:
        fail(ps, POPK_ERR_MODEL, t.pos, "expected an expression, found %s",
             tok_desc(ps, buf, sizeof buf));
        return NULL;
    }
}

/* Every recursion of the parser passes through here, so the depth count bounds the C stack
 * (and, through the AST shape, the compiler's recursion too). */
static expr_node *parse_unary(parser *ps)
{
    if (++ps->depth > EXPR_MAX_DEPTH) {
        fail(ps, POPK_ERR_LIMIT, ps->tok.pos, "expression nested deeper than %d levels",
             EXPR_MAX_DEPTH);
        return NULL;
    }
    expr_node *n = NULL;
    token t = ps->tok;
    if (t.type == T_MINUS || t.type == T_PLUS || t.type == T_BANG) {
        if (advance(ps))
            return NULL;
        expr_node *a = parse_unary(ps);
        if (!a)
            return NULL;
        if (t.type == T_PLUS)
            n = need_number(ps, a) ? NULL : a;
        else
            n = make_unary(ps, t.type == T_MINUS ? N_NEG : N_NOT, t.pos, a);
    } else {
        expr_node *base = parse_primary(ps);
        if (!base)
            return NULL;
        n = base;
        if (ps->tok.type == T_CARET) {
            size_t pos = ps->tok.pos;
            if (advance(ps))
                return NULL;
            expr_node *exponent = parse_unary(ps);
            if (!exponent)
                return NULL;
            n = make_binary(ps, B_POW, pos, base, exponent);
        }
    }
    ps->depth--;
    return n;
}

static expr_node *parse_binary(parser *ps, int min_prec)
{
    expr_node *lhs = parse_unary(ps);
    if (!lhs)
        return NULL;
    expr_binop op;
    int prec;
    while (binop_of(ps->tok.type, &op, &prec) && prec >= min_prec) {
        size_t pos = ps->tok.pos;
        if (advance(ps))
            return NULL;
        expr_node *rhs = parse_binary(ps, prec + 1);
        if (!rhs)
            return NULL;
        lhs = make_binary(ps, op, pos, lhs, rhs);
        if (!lhs)
            return NULL;
        expr_binop next;
        int next_prec;
        if (is_compare(op) && binop_of(ps->tok.type, &next, &next_prec) && next_prec == prec) {
            fail(ps, POPK_ERR_MODEL, ps->tok.pos,
                 "comparisons cannot be chained; combine them with && or ||");
            return NULL;
        }
    }
    return lhs;
}

popk_expr *popk_expr_parse(const char *text, size_t len, const popk_srcloc *loc,
                           popk_error *err)
{
    popk_error_clear(err);
    if (!text && len > 0) {
        popk_error_set(err, POPK_ERR_ARG, loc ? loc->file : NULL, 0, 0, "NULL expression text");
        return NULL;
    }
    popk_expr *e = calloc(1, sizeof *e);
    if (!e) {
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    e->line = loc && loc->line > 0 ? loc->line : 1;
    e->column = loc && loc->column > 0 ? loc->column : 1;
    size_t keep = len > EXPR_MAX_LEN ? 256 : len;  /* enough for the error context */
    e->text = malloc(keep + 1);
    e->file = loc && loc->file ? strdup(loc->file) : NULL;
    if (!e->text || (loc && loc->file && !e->file)) {
        popk_expr_free(e);
        popk_error_set(err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        return NULL;
    }
    if (keep)
        memcpy(e->text, text, keep);
    e->text[keep] = '\0';
    e->len = keep;
    if (len > EXPR_MAX_LEN) {
        expr_error_at(e, err, POPK_ERR_LIMIT, 0, "expression longer than %zu bytes (%zu bytes)",
                      EXPR_MAX_LEN, len);
        popk_expr_free(e);
        return NULL;
    }
    parser ps = {.e = e, .err = err, .s = e->text, .len = len, .status = POPK_OK};
    size_t first = 0;
    while (first < len && isspace((unsigned char)text[first]))
        first++;
    if (first == len) {
        expr_error_at(e, err, POPK_ERR_MODEL, 0, "empty expression");
        popk_expr_free(e);
        return NULL;
    }
    if (advance(&ps) == 0) {
        e->root = parse_binary(&ps, 1);
        if (e->root && need_number(&ps, e->root) == 0 && ps.tok.type != T_END) {
            char buf[40];
            if (ps.tok.type == T_RPAREN)
                fail(&ps, POPK_ERR_MODEL, ps.tok.pos, "unbalanced parentheses: unexpected ')'");
            else
                fail(&ps, POPK_ERR_MODEL, ps.tok.pos,
                     "unexpected %s after a complete expression (missing operator?)",
                     tok_desc(&ps, buf, sizeof buf));
        }
    }
    if (ps.status != POPK_OK) {
        popk_expr_free(e);
        return NULL;
    }
    return e;
}

int popk_expr_constant(const popk_expr *e, double *value)
{
    if (!e || !e->root || e->root->kind != N_NUM)
        return 0;
    if (value)
        *value = e->root->num;
    return 1;
}

/* ---- traversal ------------------------------------------------------------------------ */

typedef struct {
    const popk_expr *e;
    int (*fn)(const char *, int, int, void *);
    void *user;
    size_t at;          /* running position, so locating is linear over the whole walk */
    int line, column;
} name_walk;

static void walk_locate(name_walk *w, size_t pos)
{
    if (pos < w->at) {
        w->at = 0;
        w->line = w->e->line;
        w->column = w->e->column;
    }
    for (; w->at < pos && w->at < w->e->len; w->at++) {
        if (w->e->text[w->at] == '\n') {
            w->line++;
            w->column = 1;
        } else {
            w->column++;
        }
    }
}

/* Left-deep chains of binary operators (a + b + c + ...) are walked iteratively, so the
 * recursion depth is bounded by the parser's nesting limit, not by the expression length. */
static int walk_names(name_walk *w, const expr_node *n)
{
    expr_spine spine;
    int rc = 0;
    const expr_node *leaf = expr_spine_collect(&spine, n);
    if (!leaf) {
        rc = -1;
    } else if (leaf->kind == N_NAME) {
        walk_locate(w, leaf->pos);
        rc = w->fn(leaf->name, w->line, w->column, w->user);
    } else {
        for (const expr_node *a = leaf->args; a && !rc; a = a->next)
            rc = walk_names(w, a);
    }
    while (!rc && spine.n > 0)
        rc = walk_names(w, spine.node[--spine.n]->args->next);
    expr_spine_free(&spine);
    return rc;
}

int popk_expr_foreach_name(const popk_expr *e,
                           int (*fn)(const char *name, int line, int column, void *user),
                           void *user)
{
    if (!e || !e->root || !fn)
        return 0;
    name_walk w = {.e = e, .fn = fn, .user = user, .at = 0, .line = e->line, .column = e->column};
    return walk_names(&w, e->root);
}
