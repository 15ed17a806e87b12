/* util/error.h — setting popk_error values from inside the library. */
#ifndef POPK_UTIL_ERROR_H
#define POPK_UTIL_ERROR_H

#include "popk.h"

#if defined(__GNUC__)
#define POPK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define POPK_PRINTF(a, b)
#endif

/* Fill err (if not NULL) with a code, location and formatted message. Returns code, so
 * `return popk_error_set(...)` reads naturally. file may be NULL; line/column 0 = unknown. */
popk_status popk_error_set(popk_error *err, popk_status code, const char *file, int line,
                           int column, const char *fmt, ...) POPK_PRINTF(6, 7);

/* Attach the source line (copied, truncated to fit, without newline) for caret output. */
void popk_error_set_context(popk_error *err, const char *line_start, size_t len);

#endif
