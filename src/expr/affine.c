/* expr/affine.c — symbolic test that an expression is affine in chosen variables with
 * coefficients that read no varying name (the check behind matrix-exponential ODE solving). */
#include "expr/expr_impl.h"

/* Classes of a subexpression: no state, or affine in the states. Anything else stops the
 * walk with the place and the reason in err. */
enum { AFF_CONST = 0, AFF_LINEAR = 1, AFF_FAIL = -1 };

typedef struct {
    const popk_expr *e;
    popk_expr_role (*role)(const char *name, void *user);
    void *user;
    popk_error *err;
    int nomem;
} affine_walk;

/* Record why the expression is not affine: the reason is head + name + tail. */
static int not_affine(affine_walk *w, size_t pos, const char *head, const char *name,
                      const char *tail)
{
    expr_error_at(w->e, w->err, POPK_ERR_MODEL, pos, "%s%s%s", head, name, tail);
    return AFF_FAIL;
}

static const char *binop_text(expr_binop op)
{
    static const char *const text[] = {"+", "-", "*", "/", "^", "<", "<=", ">", ">=", "==",
                                       "!=", "&&", "||"};
    return text[op];
}

static int classify(affine_walk *w, const expr_node *n);

/* One binary operator with its operands' classes a (left) and b (right). */
static int combine(affine_walk *w, const expr_node *n, int a, int b)
{
    if (a == AFF_FAIL || b == AFF_FAIL)
        return AFF_FAIL;
    switch ((expr_binop)n->op) {
    case B_ADD:
    case B_SUB:
        return a > b ? a : b;
    case B_MUL:
        if (a == AFF_LINEAR && b == AFF_LINEAR)
            return not_affine(w, n->pos, "product of two amount-dependent terms", "", "");
        return a > b ? a : b;
    case B_DIV:
        if (b == AFF_LINEAR)
            return not_affine(w, n->pos, "division by an amount-dependent term", "", "");
        return a;
    case B_POW:
        if (a == AFF_CONST && b == AFF_CONST)
            return AFF_CONST;
        if (b == AFF_CONST && n->args->next->kind == N_NUM && n->args->next->num == 1.0)
            return a;
        return not_affine(w, n->pos, "power of an amount-dependent term", "", "");
    default:
        if (a == AFF_CONST && b == AFF_CONST)
            return AFF_CONST;
        return not_affine(w, n->pos, "operator '", binop_text((expr_binop)n->op),
                          "' applied to an amount-dependent term");
    }
}

/* A chain of binary operators is walked along its left spine without recursion, so a long
 * sum of terms costs no C stack (as in the compiler). */
static int classify_binary(affine_walk *w, const expr_node *n)
{
    expr_spine sp;
    const expr_node *left = expr_spine_collect(&sp, n);
    int cls;
    if (!left) {
        expr_spine_free(&sp);
        popk_error_set(w->err, POPK_ERR_NOMEM, NULL, 0, 0, "out of memory");
        w->nomem = 1;
        return AFF_FAIL;
    }
    cls = classify(w, left);
    for (size_t i = sp.n; i-- > 0 && cls != AFF_FAIL;) {
        const expr_node *op = sp.node[i];
        cls = combine(w, op, cls, classify(w, op->args->next));
    }
    expr_spine_free(&sp);
    return cls;
}

static int classify(affine_walk *w, const expr_node *n)
{
    switch (n->kind) {
    case N_NUM:
    case N_STR:
        return AFF_CONST;
    case N_NAME:
        switch (w->role(n->name, w->user)) {
        case POPK_EXPR_ROLE_STATE:
            return AFF_LINEAR;
        case POPK_EXPR_ROLE_VARYING:
            return not_affine(w, n->pos, "reads '", n->name,
                              "', which varies with time (coefficients must be constant)");
        default:
            return AFF_CONST;
        }
    case N_NEG:
        return classify(w, n->args);
    case N_NOT: {
        int a = classify(w, n->args);
        if (a == AFF_LINEAR)
            return not_affine(w, n->pos, "'!' applied to an amount-dependent term", "", "");
        return a;
    }
    case N_BIN:
        return classify_binary(w, n);
    case N_CALL:
        break;
    }
    if (n->op == F_IF) {
        const expr_node *cond = n->args;
        int c = classify(w, cond);
        if (c == AFF_FAIL)
            return AFF_FAIL;
        if (c == AFF_LINEAR)
            return not_affine(w, n->pos, "if() whose condition depends on the amounts", "", "");
        int a = classify(w, cond->next);
        int b = a == AFF_FAIL ? AFF_FAIL : classify(w, cond->next->next);
        if (a == AFF_FAIL || b == AFF_FAIL)
            return AFF_FAIL;
        return a > b ? a : b;
    }
    for (const expr_node *arg = n->args; arg; arg = arg->next) {
        int a = classify(w, arg);
        if (a == AFF_FAIL)
            return AFF_FAIL;
        if (a == AFF_LINEAR)
            return not_affine(w, n->pos, "", expr_fn_table[n->op].name,
                              "() of an amount-dependent term");
    }
    return AFF_CONST;
}

int popk_expr_affine(const popk_expr *e, popk_expr_role (*role)(const char *name, void *user),
                     void *user, popk_error *err)
{
    if (!e || !e->root || !role)
        return 1;
    affine_walk w = {e, role, user, err, 0};
    if (classify(&w, e->root) != AFF_FAIL)
        return 1;
    return w.nomem ? -1 : 0;
}
