/* model/yaml_tree.h — a YAML document read into a small tree with source positions, under
 * size limits (nesting depth, alias expansion) so hostile files cannot exhaust memory. */
#ifndef POPK_MODEL_YAML_TREE_H
#define POPK_MODEL_YAML_TREE_H

#include <stddef.h>

#include "popk.h"

/* Nesting deeper than this is refused. */
#define POPK_YAML_MAX_DEPTH 64
/* Nodes in the document counting every alias as a copy of what it refers to. */
#define POPK_YAML_MAX_NODES 20000

typedef enum { POPK_YT_SCALAR, POPK_YT_SEQ, POPK_YT_MAP } popk_yt_kind;

typedef enum { POPK_YT_PLAIN, POPK_YT_QUOTED, POPK_YT_BLOCK } popk_yt_style;

typedef struct popk_yt_node {
    popk_yt_kind kind;
    int line, column;           /* 1-based position of the node's first character */
    /* scalar */
    char *text;                 /* NUL-terminated */
    size_t len;
    popk_yt_style style;
    /* sequence: n items; mapping: n pairs, key i at item[2i], value at item[2i+1] */
    int n, cap;
    struct popk_yt_node **item;
    /* alias bookkeeping */
    size_t expanded;            /* node count with aliases expanded */
    int complete;
} popk_yt_node;

typedef struct {
    popk_yt_node *root;         /* NULL for an empty document */
    popk_yt_node **owned;       /* every allocated node (aliases share, never own) */
    size_t nowned, capowned;
} popk_yt_doc;

/* Parse buf[0..len). On failure returns a status, sets err to NAME:LINE:COLUMN: message with
 * the offending source line as context, and leaves doc empty. */
popk_status popk_yt_parse(popk_yt_doc *doc, const char *name, const char *buf, size_t len,
                          popk_error *err);
void popk_yt_free(popk_yt_doc *doc);

/* Copy line `line` (1-based) of buf into err->context. */
void popk_yt_context(popk_error *err, const char *buf, size_t len, int line);

/* Name of a node kind for messages ("a mapping", "a list", "a scalar"). */
const char *popk_yt_kind_name(popk_yt_kind kind);

#endif
