/* model_io.c — checkpoint I/O and description of both models (DESIGN.md 3-4).
 *
 * Save: every parameter as F32 in checkpoint order, conv1d.weight as (E, 1, K), and
 * __metadata__ {"format": "pt", "prunelab": "<JSON>"} where the JSON records the task
 * ("image_classifier" or "causal_lm"), layer_norm_epsilon, dataset, original layer indices and
 * provenance; an image model adds patch size, image shape, classes and normalisation; an LM
 * adds vocab, tied and "dims": "uniform" or "per_layer" (with the per-layer E/N/R/K/M), which
 * says whether an HF config.json can describe it. LM tensors carry the HF MambaForCausalLM names;
 * a tied head writes no lm_head.weight (as save_pretrained). Saving into a directory writes
 * DIR/model.safetensors plus, for a uniform LM, DIR/config.json (MambaConfig keys; expand =
 * E/d when whole, else the shortest decimal with int(expand * d) = E, as HF computes
 * intermediate_size from it) and removes a model.safetensors.index.json left there.
 * Load: `path` is a safetensors file or a directory holding model.safetensors or the shards of
 * model.safetensors.index.json (its weight_map: tensor name -> shard file in the same directory;
 * a shard name with '/' or '\', "." or "..", a missing shard, a tensor listed twice, a shard
 * tensor the map does not give to that shard, or a map entry its shard lacks is refused). A
 * single file is self-contained: a config.json is read only from a directory. The tensor shapes
 * are the truth. Layers are counted from backbone.layers.{i}.norm.weight; each layer's E, N, R,
 * K, M come from its tensors and every other shape is checked against them. The task is the
 * metadata's "task" (files of ours without one are image models), else an LM when
 * backbone.embeddings.weight is present. An LM's V and d come from the embedding, tied = no
 * lm_head.weight. config.json keys (vocab_size, hidden_size, state_size, num_hidden_layers,
 * conv_kernel, intermediate_size or expand, time_step_rank, tie_word_embeddings, use_bias,
 * use_conv_bias, hidden_act, model_type) must agree with the shapes (an error names the key);
 * it gives layer_norm_epsilon (which must then agree with our metadata's, when both exist).
 * Without our metadata, image models: C and P follow from patch_embed's width (C*P*P with C in
 * {1, 3}: 3k^2 = m^2 has no integer solution, so the split is unique), the image is square with
 * L = (H/P)^2 tokens, classes = head rows; dataset_hint names the dataset.
 * Floating dtypes (F32, F16, BF16, F64) are converted to F32; anything else is refused. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data.h"
#include "model.h"
#include "ops.h"
#include "safetensors.h"
#include "util.h"

#define HF_WEIGHTS "model.safetensors"
#define HF_INDEX "model.safetensors.index.json"
#define HF_CONFIG "config.json"

/* ------------------------------------------------------------------ save */

/* The double nearest to the shortest decimal that reads back as f (1e-5f -> 1e-05, so JSON
 * shows "1e-05" rather than 9.99999975e-06, and (float) of it is f again). */
static double float_short(float f)
{
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        double v = strtod(buf, NULL);
        if ((float)v == f) return v;
    }
    return (double)f;
}

int model_hf_uniform(const model *m)
{
    const model_config *c = &m->cfg;
    if (c->task != MODEL_TASK_LM || c->n_layers < 1) return 0;
    const layer_dims *l0 = &c->layers[0];
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *l = &c->layers[i];
        if (l->E != l0->E || l->N != l0->N || l->R != l0->R || l->K != l0->K || l->M != 0) return 0;
    }
    return 1;
}

static char *metadata_json(const model *m)
{
    const model_config *c = &m->cfg;
    json_t *o = json_object();
    json_object_set_new(o, "task", json_string(model_task_names[c->task]));
    if (c->task == MODEL_TASK_LM) {
        json_object_set_new(o, "vocab", json_integer(c->vocab));
        json_object_set_new(o, "tied", json_boolean(c->tied));
    } else {
        json_object_set_new(o, "patch_size", json_integer(c->P));
        json_object_set_new(o, "image", json_pack("[iii]", c->C, c->H, c->W));
        json_object_set_new(o, "classes", json_integer(c->classes));
    }
    json_object_set_new(o, "layer_norm_epsilon", json_real(float_short(c->eps)));
    json_object_set_new(o, "dataset", json_string(c->dataset));
    if (c->task == MODEL_TASK_IMAGE) {
        json_t *mean = json_array(), *std = json_array();
        for (int i = 0; i < c->C && i < 3; i++) {
            json_array_append_new(mean, json_real(c->norm_mean[i]));
            json_array_append_new(std, json_real(c->norm_std[i]));
        }
        json_object_set_new(o, "normalisation", json_pack("{s:o,s:o}", "mean", mean, "std", std));
    }
    json_t *layers = json_array();
    for (int i = 0; i < c->n_layers; i++) json_array_append_new(layers, json_integer(c->orig_index[i]));
    json_object_set_new(o, "layers", layers);
    if (c->task == MODEL_TASK_LM) {
        int uni = model_hf_uniform(m);
        json_object_set_new(o, "dims", json_string(uni ? "uniform" : "per_layer"));
        if (!uni) json_object_set_new(o, "layer_dims", model_dims_json(m));
    }
    json_t *prov = c->provenance[0] ? json_loads(c->provenance, 0, NULL) : NULL;
    json_object_set_new(o, "provenance", prov ? prov : json_object());
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    return s;
}

int model_save_hf_config(const model *m, const char *path, char *err, size_t errlen)
{
    const model_config *c = &m->cfg;
    if (c->task != MODEL_TASK_LM) return pl_err(err, errlen, "only a causal LM has an HF config.json");
    if (!model_hf_uniform(m))
        return pl_err(err, errlen, "layers differ in d_inner/d_state/dt_rank/d_conv or have an MLP: no HF config "
                                   "describes them (the checkpoint's metadata lists each layer's dims)");
    const layer_dims *l = &c->layers[0];
    /* HF: intermediate_size = int(expand * hidden_size): the shortest decimal in the middle of
     * [E/d, (E+1)/d) that gives E back (E 301, d 192 -> 1.57) */
    double expand = (l->E + 0.5) / c->d;
    char eb[40];
    for (int p = 1; p <= 9; p++) {
        snprintf(eb, sizeof eb, "%.*g", p, (l->E + 0.5) / c->d);
        double v = strtod(eb, NULL);
        if ((int)(v * c->d) == l->E) {
            expand = v;
            break;
        }
    }
    json_t *o = json_object();
    json_object_set_new(o, "architectures", json_pack("[s]", "MambaForCausalLM"));
    json_object_set_new(o, "model_type", json_string("mamba"));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab));
    json_object_set_new(o, "hidden_size", json_integer(c->d));
    json_object_set_new(o, "state_size", json_integer(l->N));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layers));
    if (l->E % c->d == 0) json_object_set_new(o, "expand", json_integer(l->E / c->d));
    else json_object_set_new(o, "expand", json_real(expand));
    json_object_set_new(o, "intermediate_size", json_integer(l->E));
    json_object_set_new(o, "conv_kernel", json_integer(l->K));
    json_object_set_new(o, "time_step_rank", json_integer(l->R));
    json_object_set_new(o, "layer_norm_epsilon", json_real(float_short(c->eps)));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tied));
    json_object_set_new(o, "use_bias", json_false());
    json_object_set_new(o, "use_conv_bias", json_true());
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "residual_in_fp32", json_true());
    json_object_set_new(o, "dtype", json_string("float32"));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(o);
    size_t n = strlen(s);
    char *buf = xmalloc(n + 2);
    memcpy(buf, s, n);
    buf[n] = '\n';
    free(s);
    int rc = pl_write_file_atomic(path, buf, n + 1, err, errlen);
    free(buf);
    return rc;
}

static int path_join(char *out, size_t n, const char *dir, const char *name, char *err, size_t errlen)
{
    size_t dl = strlen(dir);
    int slash = dl > 0 && dir[dl - 1] == '/';
    if ((size_t)snprintf(out, n, "%s%s%s", dir, slash ? "" : "/", name) >= n)
        return pl_err(err, errlen, "path %s/%s is too long", dir, name);
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int save_file(const model *m, const char *path, char *err, size_t errlen)
{
    st_writer *w = st_writer_new();
    for (int i = 0; i < m->n_tensors; i++) {
        const param_info *p = &m->info[i];
        st_writer_add(w, p->name, ST_F32, p->ndim, p->shape, m->params + p->offset);
    }
    char *meta = metadata_json(m);
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "prunelab", meta);
    int rc = st_writer_save(w, path, err, errlen);
    free(meta);
    st_writer_free(w);
    return rc;
}

int model_save(const model *m, const char *path, char *err, size_t errlen)
{
    size_t n = strlen(path);
    int dir = is_dir(path);
    if (!dir && n > 0 && path[n - 1] == '/') {
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return pl_err(err, errlen, "cannot create directory %s: %s", path, strerror(errno));
        dir = 1;
    }
    if (!dir) return save_file(m, path, err, errlen);
    char wp[4096], cp[4096];
    if (path_join(wp, sizeof wp, path, HF_WEIGHTS, err, errlen) != 0 ||
        path_join(cp, sizeof cp, path, HF_CONFIG, err, errlen) != 0)
        return -1;
    if (save_file(m, wp, err, errlen) != 0) return -1;
    /* the directory now holds one weights file: an index of shards left there would compete */
    char ip[4096];
    if (path_join(ip, sizeof ip, path, HF_INDEX, err, errlen) != 0) return -1;
    if (unlink(ip) != 0 && errno != ENOENT) return pl_err(err, errlen, "cannot remove %s: %s", ip, strerror(errno));
    if (model_hf_uniform(m)) return model_save_hf_config(m, cp, err, errlen);
    /* no config.json describes this model: a stale one would contradict the new weights */
    if (unlink(cp) != 0 && errno != ENOENT) return pl_err(err, errlen, "cannot remove %s: %s", cp, strerror(errno));
    return 0;
}

/* ------------------------------------------------------------------ tensor sets */

/* The tensors of one file or of every shard of a directory, looked up by name. */
typedef struct {
    int nfiles;
    st_file **files;
    char **labels;         /* file names for messages */
    int n;
    const st_tensor **t;   /* n tensors */
    int *file;             /* owner file index of each */
    const char *meta;      /* "prunelab" metadata of the first file, or NULL */
} tset;

static void tset_free(tset *s)
{
    for (int i = 0; i < s->nfiles; i++) st_free(s->files[i]), free(s->labels[i]);
    free(s->files);
    free(s->labels);
    free((void *)s->t);
    free(s->file);
    memset(s, 0, sizeof *s);
}

static const st_tensor *ts_find(const tset *s, const char *name, int *fi)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i]->name, name) == 0) {
            if (fi) *fi = s->file[i];
            return s->t[i];
        }
    return NULL;
}

/* Take ownership of f (freed by tset_free, also on error). */
static int tset_add(tset *s, st_file *f, const char *label, char *err, size_t errlen)
{
    s->files = xrealloc(s->files, (size_t)(s->nfiles + 1) * sizeof *s->files);
    s->labels = xrealloc(s->labels, (size_t)(s->nfiles + 1) * sizeof *s->labels);
    int k = s->nfiles++;
    s->files[k] = f;
    s->labels[k] = xstrdup(label);
    if (k == 0) s->meta = st_meta(f, "prunelab");
    s->t = xrealloc((void *)s->t, (size_t)(s->n + f->n) * sizeof *s->t);
    s->file = xrealloc(s->file, (size_t)(s->n + f->n) * sizeof *s->file);
    for (int i = 0; i < f->n; i++) {
        int other;
        if (ts_find(s, f->tensors[i].name, &other))
            return pl_err(err, errlen, "tensor %s is in both %s and %s", f->tensors[i].name, s->labels[other], label);
        s->t[s->n] = &f->tensors[i];
        s->file[s->n++] = k;
    }
    return 0;
}

/* A shard file name from an index: a plain name in the index's directory. */
static int shard_name_ok(const char *n)
{
    if (!*n || strlen(n) > 255 || strcmp(n, ".") == 0 || strcmp(n, "..") == 0) return 0;
    for (const char *p = n; *p; p++)
        if (*p == '/' || *p == '\\' || (unsigned char)*p < 0x20) return 0;
    return 1;
}

static int load_index(tset *s, const char *dir, const char *index_path, char *err, size_t errlen)
{
    size_t len;
    char e2[PL_ERRLEN];
    unsigned char *text = pl_read_file(index_path, &len, e2, sizeof e2);
    if (!text) return pl_err(err, errlen, "%s", e2);
    json_error_t je;
    json_t *o = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    int rc = -1;
    json_t *wm = json_object_get(o, "weight_map");
    if (!o || !json_is_object(o)) {
        pl_err(err, errlen, "%s: not a JSON object (%s)", HF_INDEX,
               o ? "wrong type" : strstr(je.text, "duplicate") ? "a tensor is listed twice" : je.text);
        goto out;
    }
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        pl_err(err, errlen, "%s: weight_map must be a non-empty object of tensor name -> shard file", HF_INDEX);
        goto out;
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            pl_err(err, errlen, "%s: weight_map[%s] must name a shard file in the same directory (no '/' or '..')",
                   HF_INDEX, name);
            goto out;
        }
        const char *sh = json_string_value(v);
        int have = 0;
        for (int i = 0; i < s->nfiles && !have; i++) have = strcmp(s->labels[i], sh) == 0;
        if (have) continue;
        char sp[4096];
        if (path_join(sp, sizeof sp, dir, sh, err, errlen) != 0) goto out;
        if (access(sp, F_OK) != 0) {
            pl_err(err, errlen, "%s lists shard %s, which is missing", HF_INDEX, sh);
            goto out;
        }
        st_file *f = st_load(sp, e2, sizeof e2);
        if (!f) {
            pl_err(err, errlen, "shard %s", e2);
            goto out;
        }
        if (tset_add(s, f, sh, err, errlen) != 0) goto out;
    }
    /* the map and the shards must agree tensor by tensor */
    json_object_foreach(wm, name, v) {
        int fi;
        const st_tensor *t = ts_find(s, name, &fi);
        if (!t || strcmp(s->labels[fi], json_string_value(v)) != 0) {
            pl_err(err, errlen, "%s maps %s to %s, which has no such tensor", HF_INDEX, name, json_string_value(v));
            goto out;
        }
    }
    for (int i = 0; i < s->n; i++) {
        json_t *e = json_object_get(wm, s->t[i]->name);
        if (!e || strcmp(json_string_value(e), s->labels[s->file[i]]) != 0) {
            pl_err(err, errlen, "tensor %s of shard %s is not given to that shard by %s", s->t[i]->name,
                   s->labels[s->file[i]], HF_INDEX);
            goto out;
        }
    }
    s->meta = NULL; /* shards carry no metadata of ours */
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* Open path (a file or an HF directory) into s; *config = the directory's config.json or NULL. */
static int tset_open(tset *s, const char *path, json_t **config, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    *config = NULL;
    char e2[PL_ERRLEN];
    if (!is_dir(path)) {
        st_file *f = st_load(path, e2, sizeof e2);
        if (!f) return pl_err(err, errlen, "%s", e2); /* st_load's messages name the path already */
        return tset_add(s, f, path, err, errlen);
    }
    char wp[4096], ip[4096], cp[4096];
    if (path_join(wp, sizeof wp, path, HF_WEIGHTS, err, errlen) != 0 ||
        path_join(ip, sizeof ip, path, HF_INDEX, err, errlen) != 0 ||
        path_join(cp, sizeof cp, path, HF_CONFIG, err, errlen) != 0)
        return -1;
    int hw = access(wp, F_OK) == 0, hi = access(ip, F_OK) == 0;
    if (hw && hi) return pl_err(err, errlen, "%s: both %s and %s exist; keep one", path, HF_WEIGHTS, HF_INDEX);
    if (!hw && !hi) return pl_err(err, errlen, "%s: directory has neither %s nor %s", path, HF_WEIGHTS, HF_INDEX);
    if (access(cp, F_OK) == 0) {
        size_t len;
        unsigned char *text = pl_read_file(cp, &len, e2, sizeof e2);
        if (!text) return pl_err(err, errlen, "%s", e2);
        json_error_t je;
        *config = json_loadb((const char *)text, len, JSON_REJECT_DUPLICATES, &je);
        free(text);
        if (!*config || !json_is_object(*config)) {
            json_decref(*config);
            *config = NULL;
            return pl_err(err, errlen, "%s: %s is not a JSON object (%s)", path, HF_CONFIG, je.text);
        }
    }
    if (hw) {
        st_file *f = st_load(wp, e2, sizeof e2);
        if (!f) return pl_err(err, errlen, "%s", e2);
        return tset_add(s, f, HF_WEIGHTS, err, errlen);
    }
    if (load_index(s, path, ip, e2, sizeof e2) != 0) return pl_err(err, errlen, "%s: %s", path, e2);
    return 0;
}

/* ------------------------------------------------------------------ load */

static const st_tensor *need(const tset *s, const char *name, char *err, size_t errlen)
{
    const st_tensor *t = ts_find(s, name, NULL);
    if (!t) pl_err(err, errlen, "checkpoint has no tensor %s", name);
    return t;
}

static int isqrt_exact(long v)
{
    if (v <= 0) return -1;
    long r = lround(sqrt((double)v));
    for (long k = r - 1; k <= r + 1; k++)
        if (k > 0 && k * k == v) return (int)k;
    return -1;
}

/* Our metadata: task, eps (*meta_eps, 0 if absent), the task's keys, then the common ones. */
static int read_metadata(model_config *c, const char *text, float *meta_eps, int *meta_vocab, int *meta_tied,
                         char *err, size_t errlen)
{
    json_error_t je;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return pl_err(err, errlen, "metadata \"prunelab\" is not a JSON object (%s)", o ? "wrong type" : je.text);
    }
    int rc = -1;
    json_t *task = json_object_get(o, "task");
    c->task = MODEL_TASK_IMAGE;
    if (task) {
        int k = -1;
        for (int i = 0; json_is_string(task) && i < MODEL_TASK_COUNT; i++)
            if (strcmp(json_string_value(task), model_task_names[i]) == 0) k = i;
        if (k < 0) {
            pl_err(err, errlen, "metadata \"prunelab\" task must be \"image_classifier\" or \"causal_lm\"");
            goto out;
        }
        c->task = (model_task)k;
    }
    json_t *ep = json_object_get(o, "layer_norm_epsilon");
    *meta_eps = 0.0f;
    if (ep) {
        if (!json_is_number(ep) || !(json_number_value(ep) > 0.0) || json_number_value(ep) >= 1.0) {
            pl_err(err, errlen, "metadata \"prunelab\" layer_norm_epsilon must be a number in (0, 1)");
            goto out;
        }
        *meta_eps = (float)json_number_value(ep);
    }
    *meta_vocab = -1, *meta_tied = -1;
    if (c->task == MODEL_TASK_LM) {
        json_t *v = json_object_get(o, "vocab"), *t = json_object_get(o, "tied");
        if ((v && !json_is_integer(v)) || (t && !json_is_boolean(t))) {
            pl_err(err, errlen, "metadata \"prunelab\" vocab must be an integer and tied a boolean");
            goto out;
        }
        if (v) *meta_vocab = (int)json_integer_value(v);
        if (t) *meta_tied = json_is_true(t);
    } else {
        json_t *img = json_object_get(o, "image");
        json_t *ps = json_object_get(o, "patch_size");
        json_t *cl = json_object_get(o, "classes");
        if (!json_is_array(img) || json_array_size(img) != 3 || !json_is_integer(ps) || !json_is_integer(cl)) {
            pl_err(err, errlen, "metadata \"prunelab\" lacks image [C,H,W], patch_size or classes");
            goto out;
        }
        c->C = (int)json_integer_value(json_array_get(img, 0));
        c->H = (int)json_integer_value(json_array_get(img, 1));
        c->W = (int)json_integer_value(json_array_get(img, 2));
        c->P = (int)json_integer_value(ps);
        c->classes = (int)json_integer_value(cl);
        if (c->C < 1 || c->C > 3 || c->P < 1 || c->H < c->P || c->W < c->P || c->H % c->P || c->W % c->P) {
            pl_err(err, errlen, "metadata image %dx%dx%d / patch %d is inconsistent", c->C, c->H, c->W, c->P);
            goto out;
        }
        c->L = (c->H / c->P) * (c->W / c->P);
        json_t *nm = json_object_get(o, "normalisation");
        json_t *mean = json_object_get(nm, "mean"), *std = json_object_get(nm, "std");
        for (int i = 0; i < 3; i++) {
            json_t *mv = json_array_get(mean, (size_t)i), *sv = json_array_get(std, (size_t)i);
            if (json_is_number(mv) && json_is_number(sv)) {
                c->norm_mean[i] = (float)json_number_value(mv);
                c->norm_std[i] = (float)json_number_value(sv);
            }
        }
    }
    json_t *ds = json_object_get(o, "dataset");
    if (json_is_string(ds)) snprintf(c->dataset, sizeof c->dataset, "%s", json_string_value(ds));
    json_t *layers = json_object_get(o, "layers");
    if (json_is_array(layers)) {
        for (size_t i = 0; i < json_array_size(layers) && i < MODEL_MAX_LAYERS; i++)
            c->orig_index[i] = (int)json_integer_value(json_array_get(layers, i));
    }
    json_t *prov = json_object_get(o, "provenance");
    if (json_is_object(prov)) {
        char *s = json_dumps(prov, JSON_COMPACT);
        if (s && strlen(s) < sizeof c->provenance) snprintf(c->provenance, sizeof c->provenance, "%s", s);
        free(s);
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

static int shape_is(const st_tensor *t, int ndim, int64_t a, int64_t b, int64_t c, char *err, size_t errlen)
{
    int64_t want[3] = {a, b, c};
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == want[i];
    if (ok) return 0;
    char got[128] = "", exp[96] = "";
    size_t gl = 0, el = 0;
    for (int i = 0; i < t->ndim && gl < sizeof got - 24; i++)
        gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    for (int i = 0; i < ndim; i++)
        el += (size_t)snprintf(exp + el, sizeof exp - el, "%s%lld", i ? ", " : "", (long long)want[i]);
    return pl_err(err, errlen, "tensor %s has shape [%s], expected [%s]", t->name, got, exp);
}

/* The image model's non-layer config (patch embedding, positions, head) from shapes and metadata. */
static int image_config(model_config *c, const tset *f, const char *meta, const char *dataset_hint, char *err,
                        size_t errlen)
{
    const st_tensor *pe = need(f, "patch_embed.weight", err, errlen);
    const st_tensor *pos = pe ? need(f, "pos_embed", err, errlen) : NULL;
    const st_tensor *head = pos ? need(f, "head.weight", err, errlen) : NULL;
    if (!head) return -1;
    if (pe->ndim != 2 || pos->ndim != 2 || head->ndim != 2)
        return pl_err(err, errlen, "patch_embed.weight, pos_embed and head.weight must be 2-D");
    c->d = (int)pe->shape[0];
    if (c->d < 1) return pl_err(err, errlen, "patch_embed.weight has no rows");
    if (!meta) {
        long width = (long)pe->shape[1];
        int p1 = isqrt_exact(width), p3 = width % 3 == 0 ? isqrt_exact(width / 3) : -1;
        if (p1 > 0) c->C = 1, c->P = p1;
        else if (p3 > 0) c->C = 3, c->P = p3;
        else return pl_err(err, errlen, "patch_embed.weight width %ld is not C*P*P with C = 1 or 3", width);
        int side = isqrt_exact((long)pos->shape[0]);
        if (side < 1) return pl_err(err, errlen, "pos_embed has %lld tokens, not a square grid; add prunelab metadata",
                                    (long long)pos->shape[0]);
        c->H = c->W = side * c->P;
        c->L = side * side;
        c->classes = (int)head->shape[0];
        if (dataset_hint && *dataset_hint) {
            snprintf(c->dataset, sizeof c->dataset, "%s", dataset_hint);
            int ch = 0;
            if (dataset_norm(dataset_hint, &ch, c->norm_mean, c->norm_std) == 0 && ch != c->C)
                return pl_err(err, errlen, "dataset %s has %d channels but the checkpoint's patch_embed expects %d",
                              dataset_hint, ch, c->C);
        }
    }
    if (pe->shape[1] != (int64_t)c->C * c->P * c->P)
        return pl_err(err, errlen, "patch_embed.weight width %lld != C*P*P = %d", (long long)pe->shape[1],
                      c->C * c->P * c->P);
    if (shape_is(pos, 2, c->L, c->d, 0, err, errlen) != 0) return -1;
    if (head->shape[0] != c->classes)
        return pl_err(err, errlen, "head.weight has %lld rows but the metadata says %d classes",
                      (long long)head->shape[0], c->classes);
    return 0;
}

/* The LM's non-layer config: V and d from the embedding, tied = no lm_head.weight. */
static int lm_config(model_config *c, const tset *f, int meta_vocab, int meta_tied, char *err, size_t errlen)
{
    const st_tensor *emb = need(f, "backbone.embeddings.weight", err, errlen);
    if (!emb) return -1;
    if (emb->ndim != 2 || emb->shape[0] < 1 || emb->shape[1] < 1 || emb->shape[0] > (1 << 24))
        return pl_err(err, errlen, "backbone.embeddings.weight must be [V, d] with 1 <= V <= %d", 1 << 24);
    c->vocab = (int)emb->shape[0];
    c->d = (int)emb->shape[1];
    c->tied = ts_find(f, "lm_head.weight", NULL) == NULL;
    if (meta_vocab >= 0 && meta_vocab != c->vocab)
        return pl_err(err, errlen, "metadata vocab %d but backbone.embeddings.weight has %d rows", meta_vocab,
                      c->vocab);
    if (meta_tied >= 0 && meta_tied != c->tied)
        return pl_err(err, errlen, "metadata says tied %s but lm_head.weight is %s", meta_tied ? "true" : "false",
                      c->tied ? "absent" : "present");
    return 0;
}

/* Derive the config from tensor shapes (and metadata). */
static int config_from_tensors(model_config *c, const tset *f, const char *dataset_hint, float *meta_eps, char *err,
                               size_t errlen)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 3; i++) c->norm_std[i] = 1.0f;
    for (int i = 0; i < MODEL_MAX_LAYERS; i++) c->orig_index[i] = i;
    const char *meta = f->meta;
    int meta_vocab = -1, meta_tied = -1;
    *meta_eps = 0.0f;
    if (meta) {
        if (read_metadata(c, meta, meta_eps, &meta_vocab, &meta_tied, err, errlen) != 0) return -1;
    } else {
        c->task = ts_find(f, "backbone.embeddings.weight", NULL) ? MODEL_TASK_LM : MODEL_TASK_IMAGE;
    }
    if (c->task == MODEL_TASK_LM ? lm_config(c, f, meta_vocab, meta_tied, err, errlen)
                                 : image_config(c, f, meta, dataset_hint, err, errlen))
        return -1;
    char nm[128];
    int n = 0;
    for (;; n++) {
        snprintf(nm, sizeof nm, "backbone.layers.%d.norm.weight", n);
        if (!ts_find(f, nm, NULL)) break;
        if (n == MODEL_MAX_LAYERS) return pl_err(err, errlen, "more than %d layers", MODEL_MAX_LAYERS);
    }
    c->n_layers = n;
    for (int i = 0; i < n; i++) {
        layer_dims *l = &c->layers[i];
        const st_tensor *t;
        snprintf(nm, sizeof nm, "backbone.layers.%d.mixer.in_proj.weight", i);
        if (!(t = need(f, nm, err, errlen))) return -1;
        if (t->ndim != 2 || t->shape[0] % 2 || t->shape[0] < 2)
            return pl_err(err, errlen, "%s must be [2E, d] with an even row count", nm);
        l->E = (int)(t->shape[0] / 2);
        snprintf(nm, sizeof nm, "backbone.layers.%d.mixer.A_log", i);
        if (!(t = need(f, nm, err, errlen))) return -1;
        if (t->ndim != 2) return pl_err(err, errlen, "%s must be [E, N]", nm);
        l->N = (int)t->shape[1];
        snprintf(nm, sizeof nm, "backbone.layers.%d.mixer.dt_proj.weight", i);
        if (!(t = need(f, nm, err, errlen))) return -1;
        if (t->ndim != 2) return pl_err(err, errlen, "%s must be [E, R]", nm);
        l->R = (int)t->shape[1];
        snprintf(nm, sizeof nm, "backbone.layers.%d.mixer.conv1d.weight", i);
        if (!(t = need(f, nm, err, errlen))) return -1;
        if (t->ndim != 3) return pl_err(err, errlen, "%s must be [E, 1, K]", nm);
        l->K = (int)t->shape[2];
        snprintf(nm, sizeof nm, "backbone.layers.%d.mlp.fc1.weight", i);
        t = ts_find(f, nm, NULL);
        l->M = t ? (int)(t->ndim == 2 ? t->shape[0] : -1) : 0;
        if (l->E < 1 || l->N < 1 || l->R < 1 || l->K < 1 || l->M < 0)
            return pl_err(err, errlen, "layer %d has invalid dims (E %d, N %d, R %d, K %d, M %d)", i, l->E, l->N, l->R,
                          l->K, l->M);
    }
    return 0;
}

/* One integer key of config.json: 1 present (in *v), 0 absent, -1 error. */
static int cfg_int(const json_t *o, const char *key, long long *v, char *err, size_t errlen)
{
    json_t *j = json_object_get(o, key);
    if (!j || json_is_null(j)) return 0;
    if (json_is_integer(j)) *v = json_integer_value(j);
    else if (json_is_real(j) && json_real_value(j) == floor(json_real_value(j))) *v = (long long)json_real_value(j);
    else return pl_err(err, errlen, "config.json: %s must be an integer", key);
    return 1;
}

static int cfg_bool(const json_t *o, const char *key, int *v, char *err, size_t errlen)
{
    json_t *j = json_object_get(o, key);
    if (!j || json_is_null(j)) return 0;
    if (!json_is_boolean(j)) return pl_err(err, errlen, "config.json: %s must be true or false", key);
    *v = json_is_true(j);
    return 1;
}

/* Check an HF config.json against the config derived from the shapes; set c->eps from it. */
static int check_hf_config(model_config *c, const json_t *o, char *err, size_t errlen)
{
    long long v;
    int r, b = 0;
    json_t *mt = json_object_get(o, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "mamba") != 0))
        return pl_err(err, errlen, "config.json: model_type must be \"mamba\"");
    json_t *act = json_object_get(o, "hidden_act");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
        return pl_err(err, errlen, "config.json: hidden_act must be \"silu\" (the Mamba mixer's activation)");
#define CHECK_EQ(key, want, what)                                                                              \
    do {                                                                                                       \
        if ((r = cfg_int(o, key, &v, err, errlen)) < 0) return -1;                                             \
        if (r && v != (long long)(want))                                                                       \
            return pl_err(err, errlen, "config.json: %s %lld does not match the tensors (%s %lld)", key, v, what, \
                          (long long)(want));                                                                  \
    } while (0)
    if (c->task == MODEL_TASK_LM) CHECK_EQ("vocab_size", c->vocab, "rows of backbone.embeddings.weight");
    CHECK_EQ("hidden_size", c->d, "d_model");
    CHECK_EQ("num_hidden_layers", c->n_layers, "layers");
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *l = &c->layers[i];
        char what[64];
        snprintf(what, sizeof what, "layer %d d_state", i);
        CHECK_EQ("state_size", l->N, what);
        snprintf(what, sizeof what, "layer %d d_conv", i);
        CHECK_EQ("conv_kernel", l->K, what);
        snprintf(what, sizeof what, "layer %d d_inner", i);
        CHECK_EQ("intermediate_size", l->E, what);
        json_t *ex = json_object_get(o, "expand");
        if (!json_object_get(o, "intermediate_size") && json_is_number(ex) &&
            (int)(json_number_value(ex) * c->d) != l->E)
            return pl_err(err, errlen, "config.json: expand %g gives d_inner %d, the tensors of layer %d have %d",
                          json_number_value(ex), (int)(json_number_value(ex) * c->d), i, l->E);
        json_t *tr = json_object_get(o, "time_step_rank");
        if (json_is_string(tr) && strcmp(json_string_value(tr), "auto") == 0) {
            snprintf(what, sizeof what, "layer %d dt_rank; \"auto\" = ceil(hidden_size / 16)", i);
            if (l->R != (c->d + 15) / 16)
                return pl_err(err, errlen, "config.json: time_step_rank \"auto\" is %d, the tensors of layer %d have %d",
                              (c->d + 15) / 16, i, l->R);
        } else {
            snprintf(what, sizeof what, "layer %d dt_rank", i);
            CHECK_EQ("time_step_rank", l->R, what);
        }
        if (l->M > 0)
            return pl_err(err, errlen, "config.json describes an HF Mamba (no MLP) but layer %d has mlp tensors", i);
    }
#undef CHECK_EQ
    if (c->task == MODEL_TASK_LM) {
        b = 1; /* HF's default */
        if (cfg_bool(o, "tie_word_embeddings", &b, err, errlen) < 0) return -1;
        if (b != c->tied)
            return pl_err(err, errlen, "config.json: tie_word_embeddings %s but lm_head.weight is %s",
                          b ? "true" : "false", c->tied ? "absent" : "present");
    }
    if ((r = cfg_bool(o, "use_bias", &b, err, errlen)) < 0) return -1;
    if (r && b) return pl_err(err, errlen, "config.json: use_bias true (in_proj/out_proj biases) is not supported");
    if ((r = cfg_bool(o, "use_conv_bias", &b, err, errlen)) < 0) return -1;
    if (r && !b) return pl_err(err, errlen, "config.json: use_conv_bias false is not supported (conv1d.bias is required)");
    json_t *ep = json_object_get(o, "layer_norm_epsilon");
    if (ep) {
        if (!json_is_number(ep) || !(json_number_value(ep) > 0.0) || json_number_value(ep) >= 1.0)
            return pl_err(err, errlen, "config.json: layer_norm_epsilon must be a number in (0, 1)");
        c->eps = (float)json_number_value(ep);
    }
    return 0;
}

int model_load(model *m, const char *path, const char *dataset_hint, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    char e2[PL_ERRLEN];
    tset f;
    json_t *hfc = NULL;
    if (tset_open(&f, path, &hfc, e2, sizeof e2) != 0) {
        tset_free(&f);
        json_decref(hfc);
        /* file errors from st_load name the path already */
        return strstr(e2, path) == e2 ? pl_err(err, errlen, "%s", e2) : pl_err(err, errlen, "%s: %s", path, e2);
    }
    model_config cfg;
    float meta_eps = 0.0f;
    if (config_from_tensors(&cfg, &f, dataset_hint, &meta_eps, e2, sizeof e2) != 0) goto fail;
    cfg.eps = meta_eps;
    if (hfc) {
        if (check_hf_config(&cfg, hfc, e2, sizeof e2) != 0) goto fail;
        if (meta_eps != 0.0f && cfg.eps != meta_eps) {
            pl_err(e2, sizeof e2, "config.json: layer_norm_epsilon %g disagrees with the checkpoint's metadata (%g)",
                   cfg.eps, meta_eps);
            goto fail;
        }
    }
    if (model_alloc(m, &cfg, e2, sizeof e2) != 0) goto fail;
    /* every expected tensor present with the exact shape; nothing unexpected */
    for (int i = 0; i < m->n_tensors; i++) {
        const param_info *p = &m->info[i];
        int fi;
        const st_tensor *t = ts_find(&f, p->name, &fi);
        if (!t) {
            pl_err(e2, sizeof e2, "checkpoint has no tensor %s", p->name);
            goto fail;
        }
        if (shape_is(t, p->ndim, p->shape[0], p->shape[1], p->shape[2], e2, sizeof e2) != 0) goto fail;
        if (st_to_f32(t, m->params + p->offset, e2, sizeof e2) != 0) goto fail;
        st_release(f.files[fi], t);
        for (size_t k = 0; k < p->numel; k++) {
            if (!isfinite(m->params[p->offset + k])) {
                pl_err(e2, sizeof e2, "tensor %s holds a non-finite value at index %zu", p->name, k);
                goto fail;
            }
        }
    }
    for (int i = 0; i < f.n; i++) {
        if (!model_find(m, f.t[i]->name)) {
            pl_err(e2, sizeof e2, "unexpected tensor %s (not part of the %s layout)", f.t[i]->name,
                   cfg.task == MODEL_TASK_LM ? "Mamba causal-LM" : "patch-Mamba");
            goto fail;
        }
    }
    tset_free(&f);
    json_decref(hfc);
    return 0;
fail:
    tset_free(&f);
    json_decref(hfc);
    model_free(m);
    return pl_err(err, errlen, "%s: %s", path, e2);
}

/* ------------------------------------------------------------------ describe */

char *model_describe_json(const model *m)
{
    const model_config *c = &m->cfg;
    json_t *o = json_object();
    json_t *cfg = json_object();
    json_object_set_new(cfg, "task", json_string(model_task_names[c->task]));
    json_object_set_new(cfg, "d_model", json_integer(c->d));
    json_object_set_new(cfg, "n_layers", json_integer(c->n_layers));
    if (c->task == MODEL_TASK_LM) {
        json_object_set_new(cfg, "vocab", json_integer(c->vocab));
        json_object_set_new(cfg, "tied", json_boolean(c->tied));
        json_object_set_new(cfg, "hf_config", json_boolean(model_hf_uniform(m)));
    } else {
        json_object_set_new(cfg, "image", json_pack("[iii]", c->C, c->H, c->W));
        json_object_set_new(cfg, "patch_size", json_integer(c->P));
        json_object_set_new(cfg, "tokens", json_integer(c->L));
        json_object_set_new(cfg, "classes", json_integer(c->classes));
    }
    json_object_set_new(cfg, "layer_norm_epsilon", json_real(float_short(c->eps)));
    json_object_set_new(cfg, "dataset", json_string(c->dataset));
    json_object_set_new(o, "config", cfg);
    size_t per_layer[MODEL_MAX_LAYERS] = {0}, other = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        if (m->info[i].layer >= 0) per_layer[m->info[i].layer] += m->info[i].numel;
        else other += m->info[i].numel;
    }
    json_t *layers = json_array();
    for (int i = 0; i < c->n_layers; i++) {
        const layer_dims *l = &c->layers[i];
        json_array_append_new(layers, json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:I}", "index", i, "orig_index",
                                                c->orig_index[i], "d_inner", l->E, "d_state", l->N, "dt_rank", l->R,
                                                "d_conv", l->K, "mlp", l->M, "params", (json_int_t)per_layer[i]));
    }
    json_object_set_new(o, "layers", layers);
    json_object_set_new(o, "params", json_integer((json_int_t)m->n_params));
    json_object_set_new(o, "params_outside_layers", json_integer((json_int_t)other));
    json_object_set_new(o, c->task == MODEL_TASK_LM ? "flops_per_token" : "flops_per_sample",
                        json_real(model_flops_per_sample(c)));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(o);
    return s;
}

json_t *model_dims_json(const model *m)
{
    json_t *dims = json_array();
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const layer_dims *ld = &m->cfg.layers[i];
        json_array_append_new(dims, json_pack("{s:i,s:i,s:i,s:i,s:i,s:i}", "index", m->cfg.orig_index[i], "E", ld->E,
                                              "N", ld->N, "R", ld->R, "K", ld->K, "M", ld->M));
    }
    return dims;
}
