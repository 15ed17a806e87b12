/* pred/sundials_compat.h — the one place where SUNDIALS 6.x and 7.x differ for popk's ODE layer.
 *
 * Differences handled here (guarded by SUNDIALS_VERSION_MAJOR):
 *   - real and boolean types: realtype/booleantype (6.x) were removed in 7.0 for
 *     sunrealtype/sunbooleantype;
 *   - SUNContext_Create takes a void* communicator (NULL) in 6.x, a SUNComm (SUN_COMM_NULL)
 *     in 7.x, and returns a SUNErrCode there;
 *   - error reporting: 6.x installs a per-solver CVErrHandlerFn (CVodeSetErrHandlerFn),
 *     7.x replaced it with a stack of SUNErrHandlerFn on the context (whose default handler
 *     prints to stderr, so it must be cleared).
 * Warnings ("t + h = t") are disabled with CVodeSetMaxHnilWarns(-1), which both versions
 * accept, so nothing is ever printed. */
#ifndef POPK_PRED_SUNDIALS_COMPAT_H
#define POPK_PRED_SUNDIALS_COMPAT_H

#include <cvodes/cvodes.h>
#include <nvector/nvector_serial.h>
#include <sundials/sundials_config.h>
#include <sunlinsol/sunlinsol_dense.h>
#include <sunmatrix/sunmatrix_dense.h>

#if !defined(SUNDIALS_VERSION_MAJOR) || SUNDIALS_VERSION_MAJOR < 6
#error "popk needs SUNDIALS 6.0 or later (SUNContext API)"
#endif

#if SUNDIALS_VERSION_MAJOR >= 7
#include <sundials/sundials_errors.h>
typedef sunrealtype popk_sunreal;
typedef sunbooleantype popk_sunbool;
#else
typedef realtype popk_sunreal;
typedef booleantype popk_sunbool;
#endif

/* Receives every error message the solver would otherwise print: the CVODE return code
 * (e.g. CV_TOO_MUCH_WORK) and SUNDIALS' formatted message. */
typedef void (*popk_sun_message_fn)(int code, const char *message, void *user);

/* The handler and its data; must outlive the solver it is installed on. */
typedef struct {
    popk_sun_message_fn fn;
    void *user;
} popk_sun_message_sink;

/* Create a serial (no MPI) context; returns 0 on success. */
static inline int popk_sun_context_create(SUNContext *ctx)
{
#if SUNDIALS_VERSION_MAJOR >= 7
    return SUNContext_Create(SUN_COMM_NULL, ctx) == SUN_SUCCESS ? 0 : -1;
#else
    return SUNContext_Create(NULL, ctx) == 0 ? 0 : -1;
#endif
}

#if SUNDIALS_VERSION_MAJOR >= 7
static inline void popk_sun_error_trampoline(int line, const char *func, const char *file,
                                             const char *msg, SUNErrCode code, void *user,
                                             SUNContext ctx)
{
    (void)line;
    (void)func;
    (void)file;
    (void)ctx;
    const popk_sun_message_sink *sink = user;
    if (sink && sink->fn)
        sink->fn((int)code, msg ? msg : "", sink->user);
}
#else
static inline void popk_sun_error_trampoline(int code, const char *module, const char *function,
                                             char *msg, void *user)
{
    (void)module;
    (void)function;
    const popk_sun_message_sink *sink = user;
    if (sink && sink->fn)
        sink->fn(code, msg ? msg : "", sink->user);
}
#endif

/* Route the solver's error messages to sink (nothing reaches stdout/stderr) and disable
 * warnings. ctx must be the context that cvode_mem was created with and must serve only
 * this solver (7.x handlers live on the context). Returns 0 on success. */
static inline int popk_sun_silence(SUNContext ctx, void *cvode_mem, popk_sun_message_sink *sink)
{
#if SUNDIALS_VERSION_MAJOR >= 7
    if (SUNContext_ClearErrHandlers(ctx) != SUN_SUCCESS)
        return -1;
    if (SUNContext_PushErrHandler(ctx, popk_sun_error_trampoline, sink) != SUN_SUCCESS)
        return -1;
#else
    (void)ctx;
    if (CVodeSetErrHandlerFn(cvode_mem, popk_sun_error_trampoline, sink) != CV_SUCCESS)
        return -1;
#endif
    return CVodeSetMaxHnilWarns(cvode_mem, -1) == CV_SUCCESS ? 0 : -1;
}

#endif
