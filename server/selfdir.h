/* selfdir.h — the directory of the running prunelabd, where its sibling files are looked for
 * (the prunelab engine binary, sql/, web/). */
#ifndef PL_SERVER_SELFDIR_H
#define PL_SERVER_SELFDIR_H

#include <stddef.h>

/* Write the directory of the running executable (no trailing '/') into out (capacity cap):
 * from /proc/self/exe, else from argv0 when it names a path (contains '/'); argv0 may be NULL.
 * Returns 0, or -1 (out untouched) when neither gives a directory or it does not fit. */
int selfdir_get(const char *argv0, char *out, size_t cap);

#endif
