/* model/yaml_tree.c — libyaml events folded into a tree; refuses deep nesting, alias bombs. */
#include "model/yaml_tree.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/error.h"

typedef struct {
    char *name;
    popk_yt_node *node;
} anchor;

typedef struct {
    popk_yt_doc *doc;
    const char *name, *buf;
    size_t len;
    popk_error *err;
    popk_yt_node *stack[POPK_YAML_MAX_DEPTH + 1];
    int depth;
    anchor *anchors;
    int nanchors, capanchors;
    size_t total;               /* nodes so far, aliases counted expanded */
} builder;

const char *popk_yt_kind_name(popk_yt_kind kind)
{
    switch (kind) {
    case POPK_YT_SCALAR:
        return "a scalar";
    case POPK_YT_SEQ:
        return "a list";
    case POPK_YT_MAP:
        return "a mapping";
    }
    return "a node";
}

void popk_yt_context(popk_error *err, const char *buf, size_t len, int line)
{
    if (!err || !buf || line < 1)
        return;
    size_t i = 0;
    for (int l = 1; l < line && i < len; i++)
        if (buf[i] == '\n')
            l++;
    if (i <= len)
        popk_error_set_context(err, buf + i, len - i);
}

static popk_status fail_at(builder *b, popk_status code, int line, int column, const char *fmt,
                           const char *a, const char *c)
{
    popk_error_set(b->err, code, b->name, line, column, fmt, a, c);
    popk_yt_context(b->err, b->buf, b->len, line);
    return code;
}

static popk_status nomem(builder *b)
{
    return popk_error_set(b->err, POPK_ERR_NOMEM, b->name, 0, 0, "out of memory reading YAML");
}

static popk_yt_node *new_node(builder *b, popk_yt_kind kind, const yaml_mark_t *mark)
{
    popk_yt_doc *d = b->doc;
    if (d->nowned == d->capowned) {
        size_t cap = d->capowned ? 2 * d->capowned : 64;
        popk_yt_node **p = realloc(d->owned, cap * sizeof *p);
        if (!p)
            return NULL;
        d->owned = p;
        d->capowned = cap;
    }
    popk_yt_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    d->owned[d->nowned++] = n;
    n->kind = kind;
    n->line = (int)mark->line + 1;
    n->column = (int)mark->column + 1;
    n->expanded = 1;
    n->complete = kind == POPK_YT_SCALAR;
    return n;
}

/* While a collection is open, n counts raw items (keys and values alike). */
static int push_item(popk_yt_node *parent, popk_yt_node *child)
{
    if (parent->n == parent->cap) {
        int cap = parent->cap ? 2 * parent->cap : 8;
        popk_yt_node **p = realloc(parent->item, (size_t)cap * sizeof *p);
        if (!p)
            return -1;
        parent->item = p;
        parent->cap = cap;
    }
    parent->item[parent->n++] = child;
    return 0;
}

/* Attach a finished (or aliased) node to the open collection, or make it the root. */
static popk_status attach(builder *b, popk_yt_node *node)
{
    if (b->depth == 0) {
        b->doc->root = node;
        return POPK_OK;
    }
    popk_yt_node *parent = b->stack[b->depth - 1];
    if (push_item(parent, node))
        return nomem(b);
    return POPK_OK;
}

static popk_status count(builder *b, size_t nodes, const yaml_mark_t *mark)
{
    b->total += nodes;
    if (b->total > POPK_YAML_MAX_NODES) {
        char lim[32];
        snprintf(lim, sizeof lim, "%d", POPK_YAML_MAX_NODES);
        return fail_at(b, POPK_ERR_LIMIT, (int)mark->line + 1, (int)mark->column + 1,
                       "document too large: more than %s nodes with aliases expanded%s", lim,
                       " (alias bomb?)");
    }
    return POPK_OK;
}

static popk_status add_anchor(builder *b, const yaml_char_t *name, popk_yt_node *node)
{
    if (!name)
        return POPK_OK;
    if (b->nanchors == b->capanchors) {
        int cap = b->capanchors ? 2 * b->capanchors : 8;
        anchor *p = realloc(b->anchors, (size_t)cap * sizeof *p);
        if (!p)
            return nomem(b);
        b->anchors = p;
        b->capanchors = cap;
    }
    char *copy = strdup((const char *)name);
    if (!copy)
        return nomem(b);
    b->anchors[b->nanchors].name = copy;
    b->anchors[b->nanchors].node = node;
    b->nanchors++;
    return POPK_OK;
}

static popk_yt_node *find_anchor(const builder *b, const char *name)
{
    /* the latest definition of an anchor name wins, as YAML specifies */
    for (int i = b->nanchors - 1; i >= 0; i--)
        if (!strcmp(b->anchors[i].name, name))
            return b->anchors[i].node;
    return NULL;
}

static popk_status on_event(builder *b, const yaml_event_t *ev, int *docs)
{
    popk_status st;
    popk_yt_node *n;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++*docs > 1)
            return fail_at(b, POPK_ERR_MODEL, (int)ev->start_mark.line + 1,
                           (int)ev->start_mark.column + 1,
                           "a model file holds one YAML document, found a second one%s%s", "",
                           "");
        return POPK_OK;
    case YAML_SCALAR_EVENT:
        if ((st = count(b, 1, &ev->start_mark)))
            return st;
        if (!(n = new_node(b, POPK_YT_SCALAR, &ev->start_mark)))
            return nomem(b);
        n->len = ev->data.scalar.length;
        if (!(n->text = malloc(n->len + 1)))
            return nomem(b);
        memcpy(n->text, ev->data.scalar.value, n->len);
        n->text[n->len] = '\0';
        switch (ev->data.scalar.style) {
        case YAML_SINGLE_QUOTED_SCALAR_STYLE:
        case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
            n->style = POPK_YT_QUOTED;
            break;
        case YAML_LITERAL_SCALAR_STYLE:
        case YAML_FOLDED_SCALAR_STYLE:
            n->style = POPK_YT_BLOCK;
            break;
        default:
            n->style = POPK_YT_PLAIN;
        }
        if ((st = add_anchor(b, ev->data.scalar.anchor, n)))
            return st;
        return attach(b, n);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        if (b->depth >= POPK_YAML_MAX_DEPTH) {
            char lim[32];
            snprintf(lim, sizeof lim, "%d", POPK_YAML_MAX_DEPTH);
            return fail_at(b, POPK_ERR_LIMIT, (int)ev->start_mark.line + 1,
                           (int)ev->start_mark.column + 1,
                           "YAML nested too deeply (more than %s levels)%s", lim, "");
        }
        if ((st = count(b, 1, &ev->start_mark)))
            return st;
        int map = ev->type == YAML_MAPPING_START_EVENT;
        if (!(n = new_node(b, map ? POPK_YT_MAP : POPK_YT_SEQ, &ev->start_mark)))
            return nomem(b);
        const yaml_char_t *a = map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
        if ((st = add_anchor(b, a, n)) || (st = attach(b, n)))
            return st;
        b->stack[b->depth++] = n;
        return POPK_OK;
    }
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
        n = b->stack[--b->depth];
        for (int k = 0; k < n->n; k++)
            n->expanded += n->item[k]->expanded;
        if (n->kind == POPK_YT_MAP)
            n->n /= 2;
        n->complete = 1;
        return POPK_OK;
    }
    case YAML_ALIAS_EVENT: {
        const char *name = (const char *)ev->data.alias.anchor;
        popk_yt_node *target = find_anchor(b, name);
        if (!target)
            return fail_at(b, POPK_ERR_MODEL, (int)ev->start_mark.line + 1,
                           (int)ev->start_mark.column + 1, "unknown alias '*%s'%s", name, "");
        if (!target->complete)
            return fail_at(b, POPK_ERR_MODEL, (int)ev->start_mark.line + 1,
                           (int)ev->start_mark.column + 1,
                           "alias '*%s' refers to a node that contains it%s", name, "");
        if ((st = count(b, target->expanded, &ev->start_mark)))
            return st;
        return attach(b, target);
    }
    default:
        return POPK_OK;
    }
}

static void offset_to_position(const char *buf, size_t len, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            ++*line;
            *col = 1;
        } else {
            ++*col;
        }
    }
}

static popk_status syntax_error(builder *b, const yaml_parser_t *p)
{
    int line, col;
    if (p->error == YAML_READER_ERROR) {
        offset_to_position(b->buf, b->len, p->problem_offset, &line, &col);
        return fail_at(b, POPK_ERR_MODEL, line, col, "not a YAML file: %s%s",
                       p->problem ? p->problem : "unreadable input", "");
    }
    line = (int)p->problem_mark.line + 1;
    col = (int)p->problem_mark.column + 1;
    char ctx[160] = "";
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s at line %d)", p->context, (int)p->context_mark.line + 1);
    return fail_at(b, POPK_ERR_MODEL, line, col, "invalid YAML: %s%s",
                   p->problem ? p->problem : "syntax error", ctx);
}

popk_status popk_yt_parse(popk_yt_doc *doc, const char *name, const char *buf, size_t len,
                          popk_error *err)
{
    memset(doc, 0, sizeof *doc);
    builder b = {.doc = doc, .name = name, .buf = buf, .len = len, .err = err};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return nomem(&b);
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    popk_status st = POPK_OK;
    int docs = 0, done = 0;
    while (!done && st == POPK_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            st = syntax_error(&b, &parser);
            break;
        }
        st = on_event(&b, &ev, &docs);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    for (int i = 0; i < b.nanchors; i++)
        free(b.anchors[i].name);
    free(b.anchors);
    if (st != POPK_OK)
        popk_yt_free(doc);
    return st;
}

void popk_yt_free(popk_yt_doc *doc)
{
    if (!doc)
        return;
    for (size_t i = 0; i < doc->nowned; i++) {
        free(doc->owned[i]->text);
        free(doc->owned[i]->item);
        free(doc->owned[i]);
    }
    free(doc->owned);
    memset(doc, 0, sizeof *doc);
}
