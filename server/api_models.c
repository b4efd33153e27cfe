/* api_models.c — the /api/v1/models handlers (datasets: api_datasets.c).
 *
 * Uploads: PUT /api/v1/models/{name} arrives as a temp file under DATA_DIR/tmp (http.c streams
 * and fsyncs it). Its 8-byte header length is checked against its size first (junk costs no engine
 * process), then it is validated by running `ENGINE inspect FILE` (posix_spawn, own process
 * group, stdin /dev/null, stdout and stderr captured, killed after a timeout), then hard-linked
 * to models_dir/NAME.safetensors (link() refuses to replace an existing file, so two uploads of
 * one name cannot overwrite each other), the directory fsynced, and registered in the store;
 * the temp file is left for http.c to remove. A model's component table (`ENGINE components
 * --model PATH`) is made on its first request and recorded in the store under the file's
 * identity, so later requests never load the checkpoint. Every engine run here goes through
 * engine_gate.h (at most `workers` at once, niced like cells, one per model). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "api.h"

#include "engine_gate.h"
#include "jobspec.h"
#include "proc.h"
#include "upload_slots.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENGINE_TIMEOUT_S 60.0
#define ENGINE_OUT_MAX (8u << 20)
#define ENGINE_WAIT_S 30.0 /* longest wait for a free engine slot before 503 busy */

/* Run argv (argv[0] a path or a name found on PATH) through the engine gate (the caller holds a
 * slot): niced like cells, with a timeout, capturing stdout and stderr up to ENGINE_OUT_MAX bytes
 * each (NUL-terminated, malloc'd, caller frees; never NULL on success). Returns 0 with *status
 * the exit status (or 128 + signal, or -2 for a timeout), or -1 with err when it cannot be
 * started. */
static int run_engine(const api_ctx *ctx, char *const argv[], char **out, char **errout, int *status, char *err,
                      size_t errlen)
{
    proc_result r;
    *out = *errout = NULL;
    int nice_steps = ctx->cfg ? ctx->cfg->cell_nice : 0;
    if (engine_gate_run(argv, nice_steps, ENGINE_TIMEOUT_S, ENGINE_OUT_MAX, &r, err, errlen) != 0) return -1;
    *out = r.out;
    *errout = r.err;
    *status = r.status;
    return 0;
}

static int gate_limit(const api_ctx *ctx) { return ctx->cfg && ctx->cfg->workers > 0 ? ctx->cfg->workers : 1; }

static int reply_busy(http_request *req)
{
    return http_reply_error(req, 503, "busy", NULL,
                            "every engine slot is taken (at most %s at once); retry in a few seconds", "workers");
}

/* The engine's complaint: stderr without the "prunelab: " prefix, trimmed, first 400 bytes. */
static void engine_message(const char *errtext, int status, char *msg, size_t len)
{
    const char *s = errtext ? errtext : "";
    if (strncmp(s, "prunelab: ", 10) == 0) s += 10;
    snprintf(msg, len, "%.400s", s);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = 0;
    if (!n) snprintf(msg, len, status == -2 ? "the engine timed out" : "the engine failed (status %d)", status);
}

/* The engine could not be run at all: the reason (which names the binary's path) goes to the
 * daemon's log, the client gets a message without server paths. */
static int reply_engine_unavailable(http_request *req, const char *what, const char *err)
{
    fprintf(stderr, "prunelabd: %s: %s\n", what, err);
    return http_reply_error(req, 500, "engine_unavailable", NULL,
                            "the engine (prunelab) could not be run for %s; the daemon's log says why", what);
}

static const char *engine_bin(const api_ctx *ctx)
{
    if (ctx->engine_bin) return ctx->engine_bin;
    if (ctx->cfg && ctx->cfg->engine_bin) return ctx->cfg->engine_bin;
    return "prunelab";
}

/* A model as the API shows it: its record, the task from its inspect info ("causal_lm" or
 * "image_classifier"; a model recorded before tasks existed is an image classifier) and, for a
 * causal LM, its vocabulary and whether the head is tied to the embeddings (null otherwise). */
static json_t *model_json(const store_model *m)
{
    json_t *info = m->info_json ? json_loads(m->info_json, 0, NULL) : NULL;
    jobspec_task t;
    jobspec_info_task(m->info_json, &t);
    return json_pack("{s:s, s:o, s:o, s:o, s:s?, s:I, s:s, s:o, s:o, s:o}", "name", m->name, "dataset",
                     m->dataset ? json_string(m->dataset) : json_null(), "params",
                     m->params >= 0 ? json_integer(m->params) : json_null(), "accuracy",
                     isfinite(m->accuracy) ? json_real(m->accuracy) : json_null(), "owner", m->owner,
                     "created_ms", (json_int_t)m->created_ms, "task", t.is_lm ? "causal_lm" : "image_classifier",
                     "vocab", t.is_lm && t.vocab > 0 ? json_integer(t.vocab) : json_null(), "tied",
                     t.is_lm ? json_boolean(t.tied) : json_null(), "info", info ? info : json_null());
}

/* The {name} parameter, or NULL after replying 400. */
static const char *path_model_name(http_request *req)
{
    const char *name = http_request_param(req, "name");
    if (!name || !store_name_valid(name)) {
        http_reply_error(req, 400, "bad_name", "name",
                         "name: model names match [A-Za-z0-9._-]{1,64} and are not . or ..");
        return NULL;
    }
    return name;
}

int api_models_list(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_model *ms = NULL;
    size_t n = 0;
    char err[256] = "";
    if (api_auth(req, ctx, API_READ, &u) < 0) return 0;
    store_user_free(&u);
    int src = store_models_list(ctx->st, &ms, &n, err, sizeof err);
    int rc;
    if (src != STORE_OK) {
        rc = api_reply_store(req, src, "models", err);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(arr, model_json(&ms[i]));
        rc = http_reply_json(req, 200, json_pack("{s:o}", "models", arr));
    }
    store_models_free(ms, n);
    return rc < 0 ? -1 : 0;
}

int api_model_get(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_model m;
    char err[256] = "", what[96];
    if (api_auth(req, ctx, API_READ, &u) < 0) return 0;
    store_user_free(&u);
    const char *name = path_model_name(req);
    if (!name) return 0;
    snprintf(what, sizeof what, "model %s", name);
    int src = store_model_get(ctx->st, name, &m, err, sizeof err);
    if (src != STORE_OK) return api_reply_store(req, src, what, err) < 0 ? -1 : 0;
    int rc = http_reply_json(req, 200, model_json(&m));
    store_model_free(&m);
    return rc < 0 ? -1 : 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Replace every occurrence of what in msg (capacity cap) by with, truncating at cap. */
static void message_replace(char *msg, size_t cap, const char *what, const char *with)
{
    size_t wl = strlen(what), nl = strlen(with);
    if (wl == 0) return;
    char out[1024];
    size_t o = 0;
    for (const char *p = msg; *p && o + 1 < sizeof out;) {
        if (strncmp(p, what, wl) == 0) {
            for (size_t k = 0; k < nl && o + 1 < sizeof out; k++) out[o++] = with[k];
            p += wl;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    size_t n = o < cap ? o : cap - 1; /* cap >= 1: msg holds at least its NUL */
    memcpy(msg, out, n);
    msg[n] = '\0';
}

/* The cheap first look at an upload of len bytes: its 8-byte little-endian header length must fit
 * the file and the engine's limit, and the header must open a JSON object. Junk is refused here
 * without starting an engine process. Returns 0, or -1 after replying 400 invalid_model. */
#define UPLOAD_MAX_HEADER 100000000ull /* the engine's limit (engine/safetensors.c) */
static int upload_precheck(http_request *req, const char *tmp, size_t len)
{
    unsigned char b[9];
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? pread(fd, b, sizeof b, 0) : -1;
    if (fd >= 0) close(fd);
    if (got < (ssize_t)sizeof b || len < sizeof b) {
        http_reply_error(req, 400, "invalid_model", NULL,
                         "not a valid model: the upload is %zu bytes, too short for a safetensors file", len);
        return -1;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | b[i];
    if (n > UPLOAD_MAX_HEADER || n > len - 8) {
        http_reply_error(req, 400, "invalid_model", NULL,
                         "not a valid model: the upload's header length %" PRIu64 " %s (file of %zu bytes)", n,
                         n > UPLOAD_MAX_HEADER ? "is over the 100 MB limit" : "runs past its end", len);
        return -1;
    }
    if (b[8] != '{') {
        http_reply_error(req, 400, "invalid_model", NULL, "not a valid model: the upload's header is not a JSON object");
        return -1;
    }
    return 0;
}

/* Run `prunelab inspect` on the uploaded file tmp (with --dataset ds when given). Returns its JSON
 * object (without "file"; caller decrefs), or NULL after replying (500, 400 invalid_model, 502). */
static json_t *upload_inspect(http_request *req, api_ctx *ctx, const char *tmp, const char *ds)
{
    char err[256] = "", msg[512], *out = NULL, *errtext = NULL;
    char *argv[6] = {(char *)engine_bin(ctx), "inspect", (char *)tmp, NULL, NULL, NULL};
    if (ds && *ds) {
        argv[3] = "--dataset";
        argv[4] = (char *)ds;
    }
    int status = 0;
    json_t *info = NULL;
    if (engine_gate_enter(NULL, gate_limit(ctx), ENGINE_WAIT_S) != GATE_RUN) {
        reply_busy(req);
        return NULL;
    }
    int ran = run_engine(ctx, argv, &out, &errtext, &status, err, sizeof err);
    engine_gate_leave(NULL);
    if (ran != 0) {
        reply_engine_unavailable(req, "an upload", err);
    } else if (status != 0) {
        engine_message(errtext, status, msg, sizeof msg);
        /* the engine names the temp file; say "the upload" instead */
        message_replace(msg, sizeof msg, tmp, "the upload");
        message_replace(msg, sizeof msg, "inspect: not a valid model: ", "");
        http_reply_error(req, 400, "invalid_model", NULL, "not a valid model: %s", msg);
    } else if (!json_is_object(info = json_loads(out, 0, NULL))) {
        json_decref(info);
        info = NULL;
        http_reply_error(req, 502, "engine_error", NULL, "prunelab inspect printed no JSON object");
    } else {
        json_object_del(info, "file");
    }
    free(out);
    free(errtext);
    return info;
}

/* Register the checkpoint at path as model name of owner, described by info; answers 201 with
 * the model, or 409 / a store error. Returns 1 when registered (the file is kept), else 0. */
static int upload_register(http_request *req, api_ctx *ctx, const char *name, const char *path, const char *ds,
                           json_t *info, const char *owner, int *rc)
{
    char err[256] = "";
    char *info_text = json_dumps(info, JSON_COMPACT | JSON_SORT_KEYS);
    json_t *cfg = json_object_get(info, "config");
    const char *dataset = ds && *ds ? ds : json_string_value(json_object_get(cfg, "dataset"));
    if (dataset && !*dataset) dataset = NULL; /* an LM's "" = none recorded */
    if (dataset && !store_dataset_name_valid(dataset)) {
        free(info_text);
        *rc = http_reply_error(req, 400, "invalid_value", "dataset",
                               "dataset: the checkpoint's metadata names '%.60s', which is not a dataset name; "
                               "give ?dataset=NAME", dataset);
        return 0;
    }
    json_t *params = json_object_get(info, "params");
    store_model m = {
        .name = (char *)name,
        .path = (char *)path,
        .dataset = (char *)dataset,
        .params = json_is_integer(params) ? json_integer_value(params) : -1,
        .accuracy = NAN,
        .info_json = info_text,
        .owner = (char *)owner,
    };
    int src = store_model_insert(ctx->st, &m, NULL, err, sizeof err);
    free(info_text);
    if (src == STORE_EXISTS) {
        *rc = http_reply_error(req, 409, "model_exists", "name", "name: a model named '%s' already exists", name);
        return 0;
    }
    if (src != STORE_OK) {
        *rc = api_reply_store(req, src, "model", err);
        return 0;
    }
    store_model got;
    if (store_model_get(ctx->st, name, &got, err, sizeof err) == STORE_OK) {
        *rc = http_reply_json(req, 201, model_json(&got));
        store_model_free(&got);
    } else {
        *rc = http_reply_json(req, 201, json_pack("{s:s}", "name", name));
    }
    return 1;
}

static void upload_slot_give_back(void *arg)
{
    upload_slot_release(*(int64_t *)arg);
    free(arg);
}

/* One of the user's `uploads_per_user` slots for this upload, given back when the request ends
 * however it ends; 429 (Retry-After) when the user streams that many already. */
static void upload_slot_hold(http_request *req, api_ctx *ctx, int64_t uid)
{
    int cap = ctx->cfg ? ctx->cfg->uploads_per_user : 0;
    int64_t *arg = malloc(sizeof *arg);
    if (!arg) {
        http_reply_error(req, 500, "internal", NULL, "out of memory");
        return;
    }
    if (!upload_slot_take(uid, cap)) {
        free(arg);
        http_reply_error(req, 429, "too_many_uploads", NULL,
                         "you are streaming %d upload(s) already (uploads_per_user = %d); wait for one to end", cap,
                         cap);
        http_reply_header(req, "Retry-After", "10");
        return;
    }
    *arg = uid;
    http_request_on_free(req, upload_slot_give_back, arg);
}

/* PUT /models/{name} when its headers are in, before a byte of the body is stored: the token
 * (write), the name, no model of that name yet, and a Content-Length above 0 (the route's cap
 * was checked against it already; a chunked upload of unknown size is refused with 411). A
 * refusal here costs the server no disk and no engine; api_model_put checks again. */
int api_model_put_headers(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_model existing;
    char err[256] = "";
    if (api_auth(req, ctx, API_WRITE, &u) < 0) return 0;
    int64_t uid = u.id;
    store_user_free(&u);
    const char *name = path_model_name(req);
    if (!name) return 0;
    const char *cl = http_request_header(req, "Content-Length");
    const char *ds = http_request_query(req, "dataset");
    if (ds && !store_dataset_name_valid(ds)) {
        http_reply_error(req, 400, "invalid_value", "dataset",
                         "dataset: '%.60s' is not a dataset name (1 to 200 printable characters, no slashes)", ds);
    } else if (store_model_get(ctx->st, name, &existing, err, sizeof err) == STORE_OK) {
        store_model_free(&existing);
        http_reply_error(req, 409, "model_exists", "name", "name: a model named '%s' already exists", name);
    } else if (!cl) {
        http_reply_error(req, 411, "length_required", NULL,
                         "uploads need a Content-Length (send the file, e.g. curl --data-binary @FILE)");
    } else if (strcmp(cl, "0") == 0) {
        http_reply_error(req, 400, "empty_body", NULL, "the body must be a safetensors checkpoint");
    } else {
        upload_slot_hold(req, ctx, uid);
    }
    return 0;
}

int api_model_put(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_model existing;
    char err[256] = "", *final = NULL;
    json_t *info = NULL;
    int rc = 0;
    size_t len = 0;
    if (api_auth(req, ctx, API_WRITE, &u) < 0) return 0;
    const char *name = path_model_name(req), *tmp = http_request_body_file(req, &len);
    const char *ds = http_request_query(req, "dataset");
    if (!name) goto cleanup;
    if (store_model_get(ctx->st, name, &existing, err, sizeof err) == STORE_OK) {
        store_model_free(&existing);
        rc = http_reply_error(req, 409, "model_exists", "name", "name: a model named '%s' already exists", name);
    } else if (!tmp || len == 0) {
        rc = http_reply_error(req, 400, "empty_body", NULL, "the body must be a safetensors checkpoint");
    } else if (upload_precheck(req, tmp, len) == 0 && (info = upload_inspect(req, ctx, tmp, ds))) {
        const char *models_dir = ctx->models_dir ? ctx->models_dir : "models";
        mkdir(models_dir, 0755);
        size_t flen = strlen(models_dir) + strlen(name) + 32;
        if ((final = malloc(flen))) snprintf(final, flen, "%s/%s.safetensors", models_dir, name);
        if (!final || link(tmp, final) != 0) {
            if (final && errno == EEXIST)
                rc = http_reply_error(req, 409, "model_exists", "name", "name: a checkpoint for '%s' already exists",
                                      name);
            else
                rc = http_reply_error(req, 500, "internal", NULL, "cannot store the checkpoint: %s", strerror(errno));
        } else {
            fsync_dir(models_dir);
            if (!upload_register(req, ctx, name, final, ds, info, u.name, &rc)) unlink(final);
        }
    }
cleanup:
    free(final);
    json_decref(info);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

int api_model_delete(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_model m;
    memset(&m, 0, sizeof m);
    char err[256] = "", what[96];
    int rc = 0, have = 0;
    if (api_auth(req, ctx, API_WRITE, &u) < 0) return 0;
    const char *name = path_model_name(req);
    if (!name) goto cleanup;
    snprintf(what, sizeof what, "model %s", name);
    int src = store_model_get(ctx->st, name, &m, err, sizeof err);
    if (src != STORE_OK) {
        rc = api_reply_store(req, src, what, err);
        goto cleanup;
    }
    have = 1;
    if (!u.admin && (!m.owner || strcmp(m.owner, u.name) != 0)) {
        rc = http_reply_error(req, 403, "forbidden", NULL, "only the owner of %s (%s) or an admin may delete it",
                              what, m.owner ? m.owner : "?");
        goto cleanup;
    }
    src = store_model_delete(ctx->st, name, err, sizeof err);
    if (src == STORE_CONFLICT) {
        rc = http_reply_error(req, 409, "model_in_use", NULL, "%s is used by a queued or running job", what);
        goto cleanup;
    }
    if (src != STORE_OK) {
        rc = api_reply_store(req, src, what, err);
        goto cleanup;
    }
    if (m.path) unlink(m.path);
    rc = http_reply_json(req, 200, json_pack("{s:s, s:b}", "name", name, "deleted", 1));
cleanup:
    if (have) store_model_free(&m);
    store_user_free(&u);
    return rc < 0 ? -1 : 0;
}

/* The identity of the file at path (device, inode, size, mtime in ns): a component table made
 * from it stays valid while this is unchanged. Returns 0, or -1 when it cannot be read. */
static int file_key(const char *path, char *key, size_t len)
{
    struct stat sb;
    if (!path || stat(path, &sb) != 0) return -1;
    snprintf(key, len, "%ju:%ju:%jd:%jd.%09ld", (uintmax_t)sb.st_dev, (uintmax_t)sb.st_ino, (intmax_t)sb.st_size,
             (intmax_t)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
    return 0;
}

/* Run `prunelab components` on m and record its table under key (the caller holds the gate for
 * m's name). Returns the table (caller decrefs), or NULL after replying 500 / 502. */
static json_t *components_make(http_request *req, api_ctx *ctx, const store_model *m, const char *key)
{
    char err[256] = "", msg[512], *out = NULL, *errtext = NULL;
    int status = 0;
    json_t *doc = NULL;
    char *argv[] = {(char *)engine_bin(ctx), "components", "--model", m->path, NULL};
    if (run_engine(ctx, argv, &out, &errtext, &status, err, sizeof err) != 0) {
        reply_engine_unavailable(req, m->name, err);
    } else if (status != 0) {
        char self[96];
        engine_message(errtext, status, msg, sizeof msg);
        fprintf(stderr, "prunelabd: prunelab components of %s failed: %s\n", m->name, msg);
        /* the engine names the checkpoint by its path under the data dir; say which model */
        snprintf(self, sizeof self, "the checkpoint of %s", m->name);
        message_replace(msg, sizeof msg, m->path, self);
        if (ctx->data_dir) message_replace(msg, sizeof msg, ctx->data_dir, "DATA_DIR");
        http_reply_error(req, 502, "engine_error", NULL, "%s", msg);
    } else if (!json_is_object(doc = json_loads(out, 0, NULL))) {
        json_decref(doc);
        doc = NULL;
        http_reply_error(req, 502, "engine_error", NULL, "prunelab components printed no JSON object");
    } else {
        char *text = json_dumps(doc, JSON_COMPACT);
        if (!text || store_model_components_put(ctx->st, m->name, key, text, err, sizeof err) != STORE_OK)
            fprintf(stderr, "prunelabd: cannot record the components of %s: %s\n", m->name, err);
        free(text);
    }
    free(out);
    free(errtext);
    return doc;
}

/* GET /models/{name}/components: the table recorded for the model's file, made once (through the
 * engine gate, one run per model at a time) when the file has none yet. */
int api_model_components(http_request *req, void *app)
{
    api_ctx *ctx = app;
    store_user u;
    store_model m;
    char err[256] = "", what[96], key[160];
    if (api_auth(req, ctx, API_READ, &u) < 0) return 0;
    store_user_free(&u);
    const char *name = path_model_name(req);
    if (!name) return 0;
    snprintf(what, sizeof what, "model %s", name);
    int src = store_model_get(ctx->st, name, &m, err, sizeof err);
    if (src != STORE_OK) return api_reply_store(req, src, what, err) < 0 ? -1 : 0;
    json_t *doc = NULL;
    int rc = 0, replied = 0;
    if (file_key(m.path, key, sizeof key) != 0) {
        rc = http_reply_error(req, 500, "internal", NULL, "the checkpoint of %s cannot be read", what);
        replied = 1;
    }
    for (int attempt = 0; !replied && !doc && attempt < 3; attempt++) {
        char *text = NULL;
        if (store_model_components_get(ctx->st, name, key, &text, err, sizeof err) == STORE_OK) {
            doc = json_loads(text, 0, NULL);
            free(text);
            if (doc) break;
        }
        int g = engine_gate_enter(name, gate_limit(ctx), ENGINE_WAIT_S);
        if (g == GATE_WAITED) continue;
        if (g == GATE_BUSY) break;
        doc = components_make(req, ctx, &m, key);
        engine_gate_leave(name);
        replied = !doc;
    }
    if (doc) {
        json_object_set_new(doc, "model", json_string(name));
        rc = http_reply_json(req, 200, doc);
    } else if (!replied) {
        rc = reply_busy(req);
    }
    store_model_free(&m);
    return rc < 0 ? -1 : 0;
}
