/* util/atomic.h — write output files atomically: a temporary file beside the target,
 * renamed over it only when complete, so readers never see a partial file. */
#ifndef POPK_UTIL_ATOMIC_H
#define POPK_UTIL_ATOMIC_H

#include <stdio.h>

#include "popk.h"

typedef struct {
    FILE *fp;
    char path[4096];
    char tmp[4100];
} popk_atomic_file;

/* Open a temporary file next to path for writing. */
popk_status popk_atomic_open(popk_atomic_file *af, const char *path, popk_error *err);
/* Flush, close and rename over the target. On failure the temporary file is removed. */
popk_status popk_atomic_commit(popk_atomic_file *af, popk_error *err);
/* Close and remove the temporary file (NULL-safe, idempotent). */
void popk_atomic_abort(popk_atomic_file *af);

#endif
