/* popk.h — public interface of libpopk, the population pharmacokinetics engine.
 *
 * Conventions (see docs/): opaque handles with create/free pairs, every function that can
 * fail takes a popk_error* (may be NULL) and returns a status or NULL; free functions accept
 * NULL. The library never prints and never exits. Nothing global is mutable, so distinct
 * handles may be used from distinct threads.
 */
#ifndef POPK_H
#define POPK_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define POPK_VERSION "0.1.0"

/* Status codes: negative values are failures (X-macro: one list, names and messages). */
#define POPK_STATUS_LIST(X)                                              \
    X(POPK_OK, 0, "ok")                                                  \
    X(POPK_ERR_IO, -1, "input/output error")                             \
    X(POPK_ERR_NOMEM, -2, "out of memory")                               \
    X(POPK_ERR_ARG, -3, "invalid argument")                              \
    X(POPK_ERR_DATA, -4, "invalid dataset")                              \
    X(POPK_ERR_MODEL, -5, "invalid model")                               \
    X(POPK_ERR_SOLVER, -6, "solver failure")                             \
    X(POPK_ERR_NUMERIC, -7, "numerical failure")                         \
    X(POPK_ERR_NOCONV, -8, "did not converge")                           \
    X(POPK_ERR_LIMIT, -9, "size limit exceeded")

typedef enum {
#define POPK_STATUS_ENUM(name, value, text) name = value,
    POPK_STATUS_LIST(POPK_STATUS_ENUM)
#undef POPK_STATUS_ENUM
} popk_status;

/* Short English description of a status code (never NULL). */
const char *popk_status_str(popk_status code);

/* An error: a code, a message and, when the error is about an input file, its location.
 * line and column are 1-based; 0 means "not applicable". context holds the offending
 * source line (without newline) when known, for caret diagnostics. */
typedef struct popk_error {
    popk_status code;
    int line;
    int column;
    char file[256];
    char message[512];
    char context[256];
} popk_error;

/* Reset an error to POPK_OK with empty fields. NULL-safe. */
void popk_error_clear(popk_error *err);

/* Write "FILE:LINE:COLUMN: message" (omitting absent parts) into buf; returns buf. */
char *popk_error_format(const popk_error *err, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
