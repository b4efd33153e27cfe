/* api_datasets.c — the /api/v1/datasets handlers: the list (image datasets and where their files
 * are, the generated ones, token and text datasets found under DATA_DIR/datasets and those an
 * admin registered) and the registration of a token or text dataset by its path on the server.
 * The shapes and the lookups are datasets.c's; this file parses, checks and replies. */
#include "api.h"

#include "datasets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DATASET_PATH_MAX 1024

/* Datasets: a directory of files counts as available (the engine checks the files themselves). */
static int dir_nonempty(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) && sb.st_nlink >= 2;
}

/* The image datasets the engine knows by name (engine/data.h), with where their files are. */
static void list_image(const api_ctx *ctx, json_t *arr)
{
    static const struct {
        const char *name;
        int c, h, w, classes;
        const char *hint;
    } DS[] = {
        {"fashion-mnist", 1, 28, 28, 10, "apt-get install dataset-fashion-mnist, or set PRUNELAB_DATASETS"},
        {"mnist", 1, 28, 28, 10, "apt-get install dataset-mnist, or set PRUNELAB_DATASETS"},
        {"cifar10", 3, 32, 32, 10, "unpack cifar-10-batches-bin into $PRUNELAB_DATASETS/cifar10"},
        {"cifar100", 3, 32, 32, 100, "unpack cifar-100-binary into $PRUNELAB_DATASETS/cifar100"},
    };
    const char *env = getenv("PRUNELAB_DATASETS");
    for (size_t i = 0; i < sizeof DS / sizeof DS[0]; i++) {
        char cand[4][1024];
        int nc = 0;
        if (ctx->datasets_dir) snprintf(cand[nc++], sizeof cand[0], "%s/%s", ctx->datasets_dir, DS[i].name);
        if (env && *env) snprintf(cand[nc++], sizeof cand[0], "%s/%s", env, DS[i].name);
        snprintf(cand[nc++], sizeof cand[0], "/usr/share/datasets/%s", DS[i].name);
        snprintf(cand[nc++], sizeof cand[0], "%s/datasets/%s", ctx->data_dir ? ctx->data_dir : "./var", DS[i].name);
        const char *found = NULL;
        for (int k = 0; k < nc && !found; k++)
            if (dir_nonempty(cand[k])) found = cand[k];
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:[i,i,i], s:i, s:o, s:s, s:s}", "name", DS[i].name,
                                             "kind", "image", "available", found != NULL, "shape", DS[i].c, DS[i].h,
                                             DS[i].w, "classes", DS[i].classes, "path",
                                             found ? json_string(found) : json_null(), "hint", DS[i].hint, "source",
                                             "builtin"));
    }
    json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:[i,i,i], s:i, s:n, s:s, s:s}", "name", "synthetic", "kind",
                                         "image", "available", 1, "shape", 1, 16, 16, "classes", 4, "path", "hint",
                                         "generated; options synthetic:n=,classes=,c=,h=,w=,seed=", "source",
                                         "builtin"));
}

/* One registered dataset as listed: available while its path keeps its shape. */
static json_t *registered_json(const store_dataset *d)
{
    char err[256];
    dataset_kind kind = strcmp(d->kind, "text") == 0 ? DATASET_KIND_TEXT : DATASET_KIND_TOKENS;
    int ok = datasets_path_check(d->path, kind, err, sizeof err) == 0;
    return json_pack("{s:s, s:s, s:b, s:s, s:s, s:o, s:s, s:I}", "name", d->name, "kind", d->kind, "available", ok,
                     "path", d->path, "source", "registered", "vocab",
                     kind == DATASET_KIND_TEXT ? json_integer(256) : json_null(), "owner", d->owner, "created_ms",
                     (json_int_t)d->created_ms);
}

int api_datasets_list(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    char err[256] = "";
    if (api_auth(req, ctx, API_READ, &u) < 0) return 0;
    store_user_free(&u);
    store_dataset *reg = NULL;
    size_t n = 0;
    int src = store_datasets_list(ctx->st, &reg, &n, err, sizeof err);
    if (src != STORE_OK) return api_reply_store(req, src, "datasets", err) < 0 ? -1 : 0;
    json_t *arr = json_array();
    list_image(ctx, arr);
    json_array_append_new(arr, json_pack("{s:s, s:s, s:b, s:n, s:s, s:i, s:s}", "name", "synthetic-lm", "kind", "tokens",
                                         "available", 1, "path", "hint",
                                         "generated token chain; options synthetic-lm:n=,vocab=,seed=", "vocab", 64,
                                         "source", "builtin"));
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, registered_json(&reg[i]));
    json_t *found = datasets_found(ctx->data_dir);
    size_t k;
    json_t *f;
    json_array_foreach(found, k, f) {
        const char *name = json_string_value(json_object_get(f, "name"));
        int shadowed = 0;
        for (size_t i = 0; i < n && !shadowed; i++) shadowed = strcmp(reg[i].name, name) == 0;
        if (!shadowed) json_array_append(arr, f);
    }
    json_decref(found);
    store_datasets_free(reg, n);
    return http_reply_json(req, 200, json_pack("{s:o}", "datasets", arr)) < 0 ? -1 : 0;
}

/* A name an admin may register: tokens:NAME or text:NAME (synthetic-lm is generated), a dataset
 * name (no slashes), not one found under DATA_DIR/datasets. Returns the kind, or -1 after
 * replying 400 / 409. */
static int register_name(http_request *req, const api_ctx *ctx, const char *name)
{
    char err[160] = "";
    int tok = store_dataset_name_valid(name) ? dataset_names_token_info(name, NULL, err, sizeof err) : 0;
    if (tok != 1 || strncmp(name, "synthetic-lm", 12) == 0) {
        http_reply_error(req, 400, "invalid_value", "name",
                         "name: '%.60s' is not a token or text dataset name (tokens:NAME or text:NAME, 1 to 200 "
                         "printable characters, no slashes)%s%s", name, tok < 0 ? ": " : "", tok < 0 ? err : "");
        return -1;
    }
    json_t *found = datasets_found(ctx->data_dir);
    size_t k;
    json_t *f;
    int clash = 0;
    json_array_foreach(found, k, f) clash |= strcmp(json_string_value(json_object_get(f, "name")), name) == 0;
    json_decref(found);
    if (clash) {
        http_reply_error(req, 409, "dataset_exists", "name",
                         "name: '%s' is already found under DATA_DIR/datasets; pick another name", name);
        return -1;
    }
    return (int)dataset_names_kind(name);
}

/* POST /api/v1/datasets {"name": "tokens:X" | "text:X", "path": "/absolute/path"}: admins only. */
int api_dataset_register(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    char err[512] = "";
    int rc = 0;
    json_t *body = http_request_json(req);
    if (!body) return 0;
    if (api_auth(req, ctx, API_WRITE, &u) < 0) {
        json_decref(body);
        return 0;
    }
    const char *key;
    json_t *v, *name = json_object_get(body, "name"), *path = json_object_get(body, "path");
    const char *bad = NULL;
    json_object_foreach(body, key, v) if (!bad && strcmp(key, "name") != 0 && strcmp(key, "path") != 0) bad = key;
    if (!u.admin) {
        rc = http_reply_error(req, 403, "forbidden", NULL, "only an admin may register a dataset");
    } else if (bad) {
        rc = http_reply_error(req, 400, "unknown_field", bad, "%s: unknown field (give name and path)", bad);
    } else if (!name || !json_is_string(name)) {
        rc = http_reply_error(req, 400, name ? "invalid_value" : "missing_field", "name",
                              "name: %s", name ? "must be a string" : "required (tokens:NAME or text:NAME)");
    } else if (!path || !json_is_string(path)) {
        rc = http_reply_error(req, 400, path ? "invalid_value" : "missing_field", "path", "path: %s",
                              path ? "must be a string" : "required (an absolute path on the server)");
    } else {
        const char *n = json_string_value(name), *p = json_string_value(path);
        int kind;
        if ((kind = register_name(req, ctx, n)) < 0) goto cleanup;
        if (p[0] != '/' || strlen(p) >= DATASET_PATH_MAX || strstr(p, "/../") || strstr(p, "/./")) {
            rc = http_reply_error(req, 400, "invalid_value", "path",
                                  "path: must be an absolute path (no . or .. segments) under %d bytes",
                                  DATASET_PATH_MAX);
            goto cleanup;
        }
        if (datasets_path_check(p, (dataset_kind)kind, err, sizeof err) != 0) {
            rc = http_reply_error(req, 400, "invalid_value", "path", "path: %s", err);
            goto cleanup;
        }
        store_dataset d = {.name = (char *)n, .path = (char *)p,
                           .kind = (char *)dataset_kind_name((dataset_kind)kind), .owner = u.name};
        int src = store_dataset_insert(ctx->st, &d, err, sizeof err);
        store_dataset got;
        if (src == STORE_EXISTS) {
            rc = http_reply_error(req, 409, "dataset_exists", "name", "name: a dataset named '%s' is registered already",
                                  n);
        } else if (src != STORE_OK) {
            rc = api_reply_store(req, src, "dataset", err);
        } else if (store_dataset_get(ctx->st, n, &got, err, sizeof err) == STORE_OK) {
            rc = http_reply_json(req, 201, registered_json(&got));
            store_dataset_free(&got);
        } else {
            rc = http_reply_json(req, 201, json_pack("{s:s}", "name", n));
        }
    }
cleanup:
    json_decref(body);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}
