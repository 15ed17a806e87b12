/* util/atomic.c — atomic output files (temporary file, then rename). */
#include "util/atomic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"

popk_status popk_atomic_open(popk_atomic_file *af, const char *path, popk_error *err)
{
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path)
        return popk_error_set(err, POPK_ERR_ARG, path, 0, 0, "path too long");
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp, sizeof af->tmp, "%s.XXXXXX", path);
    int fd = mkstemp(af->tmp);
    if (fd < 0) {
        af->tmp[0] = '\0';
        return popk_error_set(err, POPK_ERR_IO, path, 0, 0, "cannot create output file: %s",
                              strerror(errno));
    }
    af->fp = fdopen(fd, "w");
    if (!af->fp) {
        int e = errno;
        close(fd);
        unlink(af->tmp);
        af->tmp[0] = '\0';
        return popk_error_set(err, POPK_ERR_IO, path, 0, 0, "cannot open output file: %s",
                              strerror(e));
    }
    return POPK_OK;
}

popk_status popk_atomic_commit(popk_atomic_file *af, popk_error *err)
{
    if (!af->fp)
        return popk_error_set(err, POPK_ERR_IO, af->path, 0, 0, "output file is not open");
    int bad = ferror(af->fp) || fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0;
    int e = errno;
    bad |= fclose(af->fp) != 0;
    af->fp = NULL;
    if (bad || rename(af->tmp, af->path) != 0) {
        if (!bad)
            e = errno;
        unlink(af->tmp);
        af->tmp[0] = '\0';
        return popk_error_set(err, POPK_ERR_IO, af->path, 0, 0, "cannot write output file: %s",
                              strerror(e));
    }
    af->tmp[0] = '\0';
    return POPK_OK;
}

void popk_atomic_abort(popk_atomic_file *af)
{
    if (!af)
        return;
    if (af->fp)
        fclose(af->fp);
    af->fp = NULL;
    if (af->tmp[0])
        unlink(af->tmp);
    af->tmp[0] = '\0';
}
