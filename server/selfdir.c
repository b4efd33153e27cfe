/* selfdir.c — selfdir_get (selfdir.h): one place that finds the directory of the running binary,
 * for the engine binary (config.c), the migrations (main.c) and the dashboard (static.c). */
#include "selfdir.h"

#include <limits.h>
#include <string.h>
#include <unistd.h>

int selfdir_get(const char *argv0, char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
    } else if (argv0 && strchr(argv0, '/') && strlen(argv0) < sizeof self) {
        strcpy(self, argv0);
    } else {
        return -1;
    }
    char *slash = strrchr(self, '/');
    if (!slash) return -1;
    size_t len = (size_t)(slash - self);
    if (len == 0) len = 1; /* the binary sits in "/" */
    if (len + 1 > cap) return -1;
    memcpy(out, self, len);
    out[len] = '\0';
    return 0;
}
