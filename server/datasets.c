/* datasets.c — token and text datasets found under DATA_DIR/datasets or registered by path (see
 * datasets.h). Reads directories and stats files; never opens a dataset's contents. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "datasets.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_regular(const char *path, int nonempty)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (!nonempty || sb.st_size > 0);
}

int datasets_path_check(const char *path, dataset_kind kind, char *err, size_t errlen)
{
    struct stat sb;
    if (!path || stat(path, &sb) != 0) return snprintf(err, errlen, "%s does not exist", path ? path : "(null)"), -1;
    if (kind == DATASET_KIND_TEXT) {
        if (!S_ISREG(sb.st_mode)) return snprintf(err, errlen, "%s is not a regular file (text: takes a file)", path), -1;
        if (sb.st_size == 0) return snprintf(err, errlen, "%s is empty", path), -1;
        return 0;
    }
    if (kind != DATASET_KIND_TOKENS) return snprintf(err, errlen, "only token and text datasets have a path"), -1;
    if (!S_ISDIR(sb.st_mode))
        return snprintf(err, errlen, "%s is not a directory (tokens: takes a directory with train.bin and val.bin)",
                        path), -1;
    static const char *const need[] = {"train.bin", "val.bin"};
    for (int i = 0; i < 2; i++) {
        char f[4096];
        int n = snprintf(f, sizeof f, "%s/%s", path, need[i]);
        if (n < 0 || (size_t)n >= sizeof f) return snprintf(err, errlen, "the path is too long"), -1;
        if (!is_regular(f, 0)) return snprintf(err, errlen, "%s has no %s (a regular file)", path, need[i]), -1;
    }
    return 0;
}

/* The dataset name of directory entry e under dir (kind in *kind), or 0 when it is none. */
static int found_name(const char *dir, const char *e, char *name, size_t len, dataset_kind *kind)
{
    char path[4096];
    size_t el = strlen(e);
    if (e[0] == '.' || snprintf(path, sizeof path, "%s/%s", dir, e) >= (int)sizeof path) return 0;
    char err[8];
    if (el > 4 && strcmp(e + el - 4, ".txt") == 0 && datasets_path_check(path, DATASET_KIND_TEXT, err, sizeof err) == 0) {
        snprintf(name, len, "text:%s", e);
        *kind = DATASET_KIND_TEXT;
    } else if (datasets_path_check(path, DATASET_KIND_TOKENS, err, sizeof err) == 0) {
        snprintf(name, len, "tokens:%s", e);
        *kind = DATASET_KIND_TOKENS;
    } else {
        return 0;
    }
    return store_dataset_name_valid(name);
}

static int by_name(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));
    return strcmp(x ? x : "", y ? y : "");
}

json_t *datasets_found(const char *data_dir)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/datasets", data_dir ? data_dir : "./var");
    json_t *arr = json_array();
    DIR *d = arr ? opendir(dir) : NULL;
    if (!d) return arr;
    json_t **items = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char name[300], path[4400];
        dataset_kind kind;
        if (!found_name(dir, e->d_name, name, sizeof name, &kind)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            json_t **ni = realloc(items, nc * sizeof *ni);
            if (!ni) break;
            items = ni, cap = nc;
        }
        items[n++] = json_pack("{s:s, s:s, s:b, s:s, s:s, s:o}", "name", name, "kind", dataset_kind_name(kind),
                               "available", 1, "path", path, "source", "data_dir", "vocab",
                               kind == DATASET_KIND_TEXT ? json_integer(256) : json_null());
    }
    closedir(d);
    if (n) qsort(items, n, sizeof *items, by_name);
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, items[i]);
    free(items);
    return arr;
}

char *datasets_resolve(store *st, const char *data_dir, const char *name)
{
    dataset_kind kind = dataset_names_kind(name);
    if (kind == DATASET_KIND_IMAGE || strncmp(name, "synthetic-lm", 12) == 0) return NULL;
    const char *rest = strchr(name, ':') + 1;
    const char *prefix = kind == DATASET_KIND_TEXT ? "text:" : "tokens:";
    char *out = NULL, err[256];
    store_dataset reg;
    if (st && store_dataset_get(st, name, &reg, err, sizeof err) == STORE_OK) {
        if (asprintf(&out, "%s%s", prefix, reg.path) < 0) out = NULL;
        store_dataset_free(&reg);
        return out;
    }
    if (!*rest || strchr(rest, '/') || strcmp(rest, ".") == 0 || strcmp(rest, "..") == 0) return NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/datasets/%s", data_dir ? data_dir : "./var", rest);
    if (datasets_path_check(path, kind, err, sizeof err) != 0) return NULL;
    char *abs = realpath(path, NULL);
    if (abs && asprintf(&out, "%s%s", prefix, abs) < 0) out = NULL;
    free(abs);
    return out;
}
