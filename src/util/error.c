/* util/error.c — status names and error formatting. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *popk_status_str(popk_status code)
{
    switch (code) {
#define POPK_STATUS_CASE(name, value, text) \
    case name:                              \
        return text;
        POPK_STATUS_LIST(POPK_STATUS_CASE)
#undef POPK_STATUS_CASE
    }
    return "unknown status";
}

void popk_error_clear(popk_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

popk_status popk_error_set(popk_error *err, popk_status code, const char *file, int line,
                           int column, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    err->line = line;
    err->column = column;
    err->context[0] = '\0';
    snprintf(err->file, sizeof err->file, "%s", file ? file : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

void popk_error_set_context(popk_error *err, const char *line_start, size_t len)
{
    if (!err || !line_start)
        return;
    size_t n = 0;
    while (n < len && n + 1 < sizeof err->context && line_start[n] != '\n' &&
           line_start[n] != '\r' && line_start[n] != '\0') {
        err->context[n] = line_start[n];
        n++;
    }
    err->context[n] = '\0';
}

char *popk_error_format(const popk_error *err, char *buf, size_t size)
{
    if (!buf || size == 0)
        return buf;
    if (!err) {
        snprintf(buf, size, "no error");
        return buf;
    }
    const char *msg = err->message[0] ? err->message : popk_status_str(err->code);
    if (err->file[0] && err->line > 0 && err->column > 0)
        snprintf(buf, size, "%s:%d:%d: %s", err->file, err->line, err->column, msg);
    else if (err->file[0] && err->line > 0)
        snprintf(buf, size, "%s:%d: %s", err->file, err->line, msg);
    else if (err->file[0])
        snprintf(buf, size, "%s: %s", err->file, msg);
    else
        snprintf(buf, size, "%s", msg);
    return buf;
}
