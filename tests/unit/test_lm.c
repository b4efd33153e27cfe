/* test_lm.c — the causal LM (DESIGN.md 3, HF MambaForCausalLM): the HF-written fixture
 * tests/fixtures/hf_mamba_a (loss, logits and every parameter gradient that transformers
 * computed in float64), loaded as a directory, as its single model.safetensors and as shards;
 * finite differences on tiny LMs (tied and untied, a layer with an MLP); threaded batches;
 * checkpoint round trips (file and directory with config.json) and the loader's refusals.
 *
 * Tolerances: logits by max abs error (1e-4), loss relative (1e-4), each gradient by max abs
 * error relative to that tensor's max abs value (1e-3). */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "ops.h"
#include "safetensors.h"
#include "util.h"

static char fixdir[1024];

/* PRUNELAB_SRCDIR (make check), else the source tree this file was compiled from (the
 * sanitizer pass runs the tests without the check environment). */
static void set_fixdir(void)
{
    const char *src = getenv("PRUNELAB_SRCDIR");
    if (src) {
        snprintf(fixdir, sizeof fixdir, "%s/tests/fixtures/hf_mamba_a", src);
        return;
    }
    const char *me = __FILE__, *tail = strstr(me, "tests/unit/test_lm.c");
    int n = tail ? (int)(tail - me) : 0;
    snprintf(fixdir, sizeof fixdir, "%.*stests/fixtures/hf_mamba_a", n, me);
}

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pl_test_lm_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    char err[PL_ERRLEN];
    unsigned char *b = pl_read_file(from, &len, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    ck_assert_msg(pl_write_file_atomic(to, b, len, err, sizeof err) == 0, "%s", err);
    free(b);
}

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* ---------------------------------------------------------------- the HF fixture */

typedef struct {
    st_file *f;
    int B, T, *ids;
} expected;

static void expected_load(expected *e)
{
    char path[1200], err[PL_ERRLEN];
    snprintf(path, sizeof path, "%s/expected.safetensors", fixdir);
    e->f = st_load(path, err, sizeof err);
    ck_assert_msg(e->f != NULL, "%s", err);
    const st_tensor *t = st_find(e->f, "input_ids");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, ST_I64);
    ck_assert_int_eq(t->ndim, 2);
    e->B = (int)t->shape[0], e->T = (int)t->shape[1];
    e->ids = xmalloc((size_t)e->B * e->T * sizeof(int));
    for (int i = 0; i < e->B * e->T; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * (size_t)i, 8);
        e->ids[i] = (int)v;
    }
}

static void expected_free(expected *e)
{
    st_free(e->f);
    free(e->ids);
}

static float *tensor_f32(const st_file *f, const char *name, size_t *n)
{
    const st_tensor *t = st_find(f, name);
    ck_assert_msg(t != NULL, "expected.safetensors has no %s", name);
    float *x = xmalloc((size_t)t->numel * sizeof(float));
    char err[PL_ERRLEN];
    ck_assert_msg(st_to_f32(t, x, err, sizeof err) == 0, "%s", err);
    *n = (size_t)t->numel;
    return x;
}

/* Forward + backward of m on the fixture's ids; checks loss, logits and every gradient. */
static void check_against_fixture(model *m, const expected *e, double *out_errs)
{
    ck_assert_int_eq(m->cfg.task, MODEL_TASK_LM);
    ck_assert_int_eq(m->cfg.vocab, 256);
    ck_assert_int_eq(m->cfg.tied, 1);
    ck_assert_float_eq(m->cfg.eps, 1e-5f);
    model_alloc_grads(m);
    model_zero_grads(m);
    model_acts *a = model_acts_new_lm(m, e->B, e->T, 1, 1);
    float loss = model_forward_lm(m, a, e->ids, e->B, e->T);
    model_backward_lm(m, a, e->ids, e->B, e->T);
    size_t n;
    float *want_loss = tensor_f32(e->f, "loss", &n);
    double loss_rel = fabs(loss - want_loss[0]) / fabs(want_loss[0]);
    ck_assert_msg(loss_rel < 1e-4, "loss %.7f, transformers %.7f", loss, want_loss[0]);
    float *want_logits = tensor_f32(e->f, "logits", &n);
    ck_assert_uint_eq(n, (size_t)e->B * e->T * m->cfg.vocab);
    double lerr = max_diff(model_acts_logits(a), want_logits, n);
    ck_assert_msg(lerr < 1e-4, "logits max abs error %g", lerr);
    double gworst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const param_info *p = &m->info[i];
        char name[128];
        snprintf(name, sizeof name, "grad.%s", p->name);
        float *want = tensor_f32(e->f, name, &n);
        ck_assert_uint_eq(n, p->numel);
        double rel = max_diff(m->grads + p->offset, want, n) / fmax(max_abs(want, n), 1e-30);
        gworst = fmax(gworst, rel);
        ck_assert_msg(rel < 1e-3, "%s: max abs error / max abs = %g", name, rel);
        free(want);
    }
    if (out_errs) out_errs[0] = loss_rel, out_errs[1] = lerr, out_errs[2] = gworst;
    free(want_loss);
    free(want_logits);
    model_acts_free(a);
}

START_TEST(test_fixture_directory_and_file)
{
    set_fixdir();
    expected e;
    expected_load(&e);
    char path[1200], err[PL_ERRLEN];
    double errs[3];
    model m;
    ck_assert_msg(model_load(&m, fixdir, NULL, err, sizeof err) == 0, "%s", err);
    check_against_fixture(&m, &e, errs);
    fprintf(stderr, "hf_mamba_a (directory): loss rel err %.3g, logits max abs err %.3g, worst grad err %.3g\n",
            errs[0], errs[1], errs[2]);
    model m2;
    snprintf(path, sizeof path, "%s/model.safetensors", fixdir);
    ck_assert_msg(model_load(&m2, path, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(m2.n_params, m.n_params);
    ck_assert(memcmp(m.params, m2.params, m.n_params * sizeof(float)) == 0);
    check_against_fixture(&m2, &e, errs);
    fprintf(stderr, "hf_mamba_a (single file): loss rel err %.3g, logits max abs err %.3g, worst grad err %.3g\n",
            errs[0], errs[1], errs[2]);
    model_free(&m2);
    model_free(&m);
    expected_free(&e);
}
END_TEST

/* The fixture split into two shards with an index loads to the same parameters; a bad index is
 * refused with a message naming the problem. */
START_TEST(test_fixture_sharded)
{
    set_fixdir();
    make_tmpdir();
    char path[1200], err[PL_ERRLEN];
    model m;
    ck_assert_msg(model_load(&m, fixdir, NULL, err, sizeof err) == 0, "%s", err);
    /* shard A: embeddings + layer 0; shard B: the rest */
    st_writer *wa = st_writer_new(), *wb = st_writer_new();
    char index[16384];
    size_t il = (size_t)snprintf(index, sizeof index, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
    for (int i = 0; i < m.n_tensors; i++) {
        const param_info *p = &m.info[i];
        int a = p->layer <= 0 && strcmp(p->name, "backbone.norm_f.weight") != 0;
        st_writer_add(a ? wa : wb, p->name, ST_F32, p->ndim, p->shape, m.params + p->offset);
        il += (size_t)snprintf(index + il, sizeof index - il, "%s\"%s\": \"%s\"", i ? ", " : "", p->name,
                               a ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
    }
    snprintf(index + il, sizeof index - il, "}}");
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", tmpdir);
    ck_assert(st_writer_save(wa, path, err, sizeof err) == 0);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", tmpdir);
    ck_assert(st_writer_save(wb, path, err, sizeof err) == 0);
    st_writer_free(wa), st_writer_free(wb);
    char ipath[1200], cpath[1200];
    snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", tmpdir);
    snprintf(cpath, sizeof cpath, "%s/config.json", tmpdir);
    snprintf(path, sizeof path, "%s/config.json", fixdir);
    copy_file(path, cpath);
    write_text(ipath, index);
    model s;
    ck_assert_msg(model_load(&s, tmpdir, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(s.n_params, m.n_params);
    ck_assert(memcmp(s.params, m.params, m.n_params * sizeof(float)) == 0);
    model_free(&s);
    struct {
        const char *index, *needle;
    } bad[] = {
        {"{\"weight_map\": {\"backbone.norm_f.weight\": \"../model-00002-of-00002.safetensors\"}}", "no '/' or '..'"},
        {"{\"weight_map\": {\"backbone.norm_f.weight\": \"..\"}}", "no '/' or '..'"},
        {"{\"weight_map\": {\"backbone.norm_f.weight\": \"gone.safetensors\"}}", "gone.safetensors, which is missing"},
        {"{\"weight_map\": {\"backbone.norm_f.weight\": \"model-00002-of-00002.safetensors\", "
         "\"backbone.norm_f.weight\": \"model-00002-of-00002.safetensors\"}}",
         "listed twice"},
        {"{\"weight_map\": {\"backbone.norm_f.weight\": \"model-00001-of-00002.safetensors\"}}", "has no such tensor"},
        {"{\"weight_map\": {\"backbone.norm_f.weight\": \"model-00002-of-00002.safetensors\"}}", "is not given to"},
        {"{\"weight_map\": []}", "weight_map"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_text(ipath, bad[k].index);
        ck_assert_int_eq(model_load(&s, tmpdir, NULL, err, sizeof err), -1);
        ck_assert_msg(strstr(err, bad[k].needle) != NULL, "case %zu: '%s' lacks '%s'", k, err, bad[k].needle);
    }
    /* the same tensor in two shards */
    write_text(ipath, index);
    wa = st_writer_new();
    const param_info *pn = model_find(&m, "backbone.norm_f.weight");
    st_writer_add(wa, pn->name, ST_F32, pn->ndim, pn->shape, m.params + pn->offset);
    for (int i = 0; i < m.n_tensors; i++) {
        const param_info *p = &m.info[i];
        if (p->layer <= 0 && p != pn) st_writer_add(wa, p->name, ST_F32, p->ndim, p->shape, m.params + p->offset);
    }
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", tmpdir);
    ck_assert(st_writer_save(wa, path, err, sizeof err) == 0);
    st_writer_free(wa);
    ck_assert_int_eq(model_load(&s, tmpdir, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "is in both") != NULL, "%s", err);
    model_free(&m);
}
END_TEST

/* config.json that disagrees with the shapes: an error naming the key. */
START_TEST(test_config_json_mismatch)
{
    set_fixdir();
    make_tmpdir();
    char path[1200], err[PL_ERRLEN];
    snprintf(path, sizeof path, "%s/model.safetensors", fixdir);
    char wpath[1200], cpath[1200];
    snprintf(wpath, sizeof wpath, "%s/model.safetensors", tmpdir);
    snprintf(cpath, sizeof cpath, "%s/config.json", tmpdir);
    copy_file(path, wpath);
    struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"hidden_size\": 32}", "hidden_size 32"},
        {"{\"vocab_size\": 50280}", "vocab_size 50280"},
        {"{\"state_size\": 8}", "state_size 8"},
        {"{\"num_hidden_layers\": 3}", "num_hidden_layers 3"},
        {"{\"conv_kernel\": 2}", "conv_kernel 2"},
        {"{\"intermediate_size\": 64}", "intermediate_size 64"},
        {"{\"expand\": 4}", "expand 4"},
        {"{\"time_step_rank\": 8}", "time_step_rank 8"},
        {"{\"time_step_rank\": \"auto\", \"hidden_size\": 64}", NULL}, /* ceil(64/16) = 4: fine */
        {"{\"tie_word_embeddings\": false}", "tie_word_embeddings false"},
        {"{\"use_bias\": true}", "use_bias"},
        {"{\"use_conv_bias\": false}", "use_conv_bias"},
        {"{\"model_type\": \"llama\"}", "model_type"},
        {"{\"layer_norm_epsilon\": \"small\"}", "layer_norm_epsilon"},
        {"{\"hidden_size\": 64.5}", "hidden_size must be an integer"},
        {"[1]", "config.json is not a JSON object"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        write_text(cpath, cases[k].json);
        model m;
        int rc = model_load(&m, tmpdir, NULL, err, sizeof err);
        if (!cases[k].needle) {
            ck_assert_msg(rc == 0, "case %zu: %s", k, err);
            model_free(&m);
            continue;
        }
        ck_assert_msg(rc == -1, "case %zu loaded", k);
        ck_assert_msg(strstr(err, cases[k].needle) != NULL, "case %zu: '%s' lacks '%s'", k, err, cases[k].needle);
    }
    /* layer_norm_epsilon from config.json reaches the model */
    write_text(cpath, "{\"layer_norm_epsilon\": 1e-6}");
    model m;
    ck_assert_msg(model_load(&m, tmpdir, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_float_eq(m.cfg.eps, 1e-6f);
    model_free(&m);
    /* a directory without weights */
    unlink(wpath);
    ck_assert_int_eq(model_load(&m, tmpdir, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "neither model.safetensors") != NULL, "%s", err);
}
END_TEST

/* ---------------------------------------------------------------- tiny LMs */

/* d 6, V 11; layer 0 with an MLP and odd dims, layer 1 without. */
static void tiny_lm(model *m, int tied, uint64_t seed)
{
    model_config c;
    memset(&c, 0, sizeof c);
    c.task = MODEL_TASK_LM;
    c.d = 6, c.n_layers = 2, c.vocab = 11, c.tied = tied;
    c.layers[0] = (layer_dims){.E = 7, .N = 3, .R = 2, .K = 3, .M = 5};
    c.layers[1] = (layer_dims){.E = 5, .N = 2, .R = 1, .K = 4, .M = 0};
    c.orig_index[0] = 0, c.orig_index[1] = 1;
    char err[PL_ERRLEN];
    ck_assert_msg(model_create(m, &c, seed, err, sizeof err) == 0, "%s", err);
    pl_rng r;
    pl_rng_seed(&r, seed + 100);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] += 0.1f * pl_rng_normal(&r);
    /* the embedding starts at N(0, 0.02): make it matter as much as the rest */
    for (size_t i = 0; i < (size_t)c.vocab * c.d; i++) m->w.embed[i] *= 5.0f;
}

static int *random_ids(int n, int V, uint64_t seed)
{
    int *ids = xmalloc((size_t)n * sizeof(int));
    pl_rng r;
    pl_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) ids[i] = (int)pl_rng_below(&r, (uint32_t)V);
    return ids;
}

static void fd_check(int tied)
{
    model m;
    tiny_lm(&m, tied, tied ? 5 : 6);
    ck_assert(tied ? model_find(&m, "lm_head.weight") == NULL : model_find(&m, "lm_head.weight") != NULL);
    int B = 3, T = 5;
    int *ids = random_ids(B * T, m.cfg.vocab, 9);
    ids[1] = ids[2] = ids[3]; /* a repeated token: the scatter adds */
    model_alloc_grads(&m);
    model_zero_grads(&m);
    model_acts *a = model_acts_new_lm(&m, B, T, 1, 0);
    model_forward_lm(&m, a, ids, B, T);
    model_backward_lm(&m, a, ids, B, T);
    int bad = 0, checked = 0;
    double worst = 0;
    char worst_name[256] = "";
    for (int t = 0; t < m.n_tensors; t++) {
        const param_info *p = &m.info[t];
        for (size_t k = 0; k < p->numel; k++) {
            float *w = &m.params[p->offset + k];
            float save = *w;
            float h = 1e-2f * fmaxf(1.0f, fabsf(save));
            *w = save + h;
            double lp = model_forward_lm(&m, a, ids, B, T);
            *w = save - h;
            double lm = model_forward_lm(&m, a, ids, B, T);
            *w = save;
            double fd = (lp - lm) / (2.0 * ((double)(save + h) - (double)save));
            double g = m.grads[p->offset + k];
            double e = fabs(g - fd) / (fabs(g) + fabs(fd) + 1e-3);
            checked++;
            if (e > worst) {
                worst = e;
                snprintf(worst_name, sizeof worst_name, "%s[%zu] analytic %g fd %g", p->name, k, g, fd);
            }
            if (e > 2e-2) bad++;
        }
    }
    fprintf(stderr, "LM finite differences (%s): %d parameters, worst relative error %.3g (%s)\n",
            tied ? "tied" : "untied", checked, worst, worst_name);
    ck_assert_int_eq(checked, (int)m.n_params);
    ck_assert_msg(bad == 0, "%d of %d gradients disagree with finite differences; worst %s", bad, checked, worst_name);
    model_acts_free(a);
    free(ids);
    model_free(&m);
}

START_TEST(test_fd_tied) { fd_check(1); }
END_TEST

START_TEST(test_fd_untied) { fd_check(0); }
END_TEST

/* Windows are independent samples: the threaded slices give the loss, logits and gradients of a
 * one-slice run (up to summation order); a shorter T' on the same acts works; the inference acts
 * give the training forward's loss. */
START_TEST(test_threads_and_acts)
{
    for (int tied = 0; tied <= 1; tied++) {
        model m;
        tiny_lm(&m, tied, 21);
        int B = 5, T = 9, V = m.cfg.vocab;
        int *ids = random_ids(B * T, V, 3);
        model_alloc_grads(&m);
        ops_set_threads(1);
        model_acts *a1 = model_acts_new_lm(&m, B, T, 1, 1);
        model_zero_grads(&m);
        float l1 = model_forward_lm(&m, a1, ids, B, T);
        model_backward_lm(&m, a1, ids, B, T);
        float *g1 = xmalloc(m.n_params * sizeof(float));
        memcpy(g1, m.grads, m.n_params * sizeof(float));
        ops_set_threads(3);
        model_acts *a3 = model_acts_new_lm(&m, B, T, 1, 1);
        model_zero_grads(&m);
        float l3 = model_forward_lm(&m, a3, ids, B, T);
        model_backward_lm(&m, a3, ids, B, T);
        ck_assert_float_eq_tol(l1, l3, 1e-6);
        ck_assert(max_diff(model_acts_logits(a1), model_acts_logits(a3), (size_t)B * T * V) < 1e-6);
        ck_assert_msg(max_diff(g1, m.grads, m.n_params) < 1e-6, "threaded grads differ by %g",
                      max_diff(g1, m.grads, m.n_params));
        model_acts *ai = model_acts_new_lm(&m, B, T, 0, 0);
        ck_assert_ptr_null(model_acts_logits(ai));
        ck_assert_float_eq_tol(model_forward_lm(&m, ai, ids, B, T), l1, 1e-5);
        ops_set_threads(1);
        /* one window of 4 tokens on acts sized for 5 x 9 = the window's own loss */
        model_acts *a4 = model_acts_new_lm(&m, 1, 4, 0, 1);
        float ls = model_forward_lm(&m, a4, ids, 1, 4);
        ck_assert_float_eq_tol(model_forward_lm(&m, ai, ids, 1, 4), ls, 1e-6);
        ck_assert_float_eq_tol(model_forward_lm(&m, a1, ids, 1, 4), ls, 1e-6);
        /* the first 4 logits rows of the long window equal the short window's (causal) */
        model_forward_lm(&m, a1, ids, B, T);
        ck_assert(max_diff(model_acts_logits(a1), model_acts_logits(a4), (size_t)4 * V) < 1e-6);
        model_acts_free(a1), model_acts_free(a3), model_acts_free(ai), model_acts_free(a4);
        free(g1);
        free(ids);
        model_free(&m);
    }
}
END_TEST

/* ---------------------------------------------------------------- checkpoints */

static float *logits_of(model *m, const int *ids, int B, int T)
{
    model_acts *a = model_acts_new_lm(m, B, T, 0, 1);
    model_forward_lm(m, a, ids, B, T);
    size_t n = (size_t)B * T * m->cfg.vocab;
    float *out = xmalloc(n * sizeof(float));
    memcpy(out, model_acts_logits(a), n * sizeof(float));
    model_acts_free(a);
    return out;
}

/* load -> save -> load is bit-identical, for the fixture (into a directory: config.json written,
 * no lm_head tensor) and for tiny LMs with per-layer dims (file; no config.json in a directory). */
START_TEST(test_roundtrip)
{
    set_fixdir();
    make_tmpdir();
    char path[1200], err[PL_ERRLEN];
    expected e;
    expected_load(&e);
    model m, r;
    ck_assert_msg(model_load(&m, fixdir, NULL, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/hf/", tmpdir);
    ck_assert_msg(model_save(&m, path, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(model_load(&r, path, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(r.n_params, m.n_params);
    ck_assert(memcmp(r.params, m.params, m.n_params * sizeof(float)) == 0);
    ck_assert_int_eq(r.cfg.tied, 1);
    float *l0 = logits_of(&m, e.ids, e.B, e.T), *l1 = logits_of(&r, e.ids, e.B, e.T);
    ck_assert(memcmp(l0, l1, (size_t)e.B * e.T * 256 * sizeof(float)) == 0);
    free(l0), free(l1);
    model_free(&r);
    /* the directory: our config.json with HF's keys, weights without lm_head */
    char cpath[1300];
    snprintf(cpath, sizeof cpath, "%s/hf/config.json", tmpdir);
    size_t len;
    char *cfg = (char *)pl_read_file(cpath, &len, err, sizeof err);
    ck_assert_msg(cfg != NULL, "%s", err);
    const char *keys[] = {"\"model_type\": \"mamba\"", "\"hidden_size\": 64", "\"state_size\": 16",
                          "\"num_hidden_layers\": 2", "\"expand\": 2", "\"conv_kernel\": 4", "\"time_step_rank\": 4",
                          "\"vocab_size\": 256", "\"layer_norm_epsilon\": 1e-5", "\"tie_word_embeddings\": true",
                          "\"use_bias\": false", "\"use_conv_bias\": true", "\"intermediate_size\": 128"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        ck_assert_msg(strstr(cfg, keys[k]) != NULL, "config.json lacks %s:\n%s", keys[k], cfg);
    free(cfg);
    snprintf(path, sizeof path, "%s/hf/model.safetensors", tmpdir);
    st_file *f = st_load(path, err, sizeof err);
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_null(st_find(f, "lm_head.weight"));
    ck_assert_ptr_nonnull(st_find(f, "backbone.embeddings.weight"));
    const char *meta = st_meta(f, "prunelab");
    ck_assert_ptr_nonnull(meta);
    ck_assert_msg(strstr(meta, "\"task\":\"causal_lm\"") && strstr(meta, "\"dims\":\"uniform\""), "%s", meta);
    st_free(f);
    model_free(&m);
    expected_free(&e);

    for (int tied = 0; tied <= 1; tied++) {
        model t;
        tiny_lm(&t, tied, 31);
        t.cfg.eps = 1e-6f;
        snprintf(path, sizeof path, "%s/t%d.safetensors", tmpdir, tied);
        ck_assert_msg(model_save(&t, path, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(model_load(&r, path, NULL, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(r.cfg.task, MODEL_TASK_LM);
        ck_assert_int_eq(r.cfg.tied, tied);
        ck_assert_float_eq(r.cfg.eps, 1e-6f);
        ck_assert_int_eq(r.cfg.layers[0].M, 5);
        ck_assert_int_eq(r.n_params, t.n_params);
        ck_assert(memcmp(r.params, t.params, t.n_params * sizeof(float)) == 0);
        int *ids = random_ids(2 * 6, t.cfg.vocab, 4);
        float *a = logits_of(&t, ids, 2, 6), *b = logits_of(&r, ids, 2, 6);
        ck_assert(memcmp(a, b, (size_t)2 * 6 * t.cfg.vocab * sizeof(float)) == 0);
        free(a), free(b), free(ids);
        /* per-layer dims and an MLP: no config.json (a stale one is removed), metadata says so */
        snprintf(path, sizeof path, "%s/hf/", tmpdir);
        ck_assert_msg(model_save(&t, path, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(access(cpath, F_OK), -1);
        ck_assert_int_eq(model_save_hf_config(&t, cpath, err, sizeof err), -1);
        model r2;
        ck_assert_msg(model_load(&r2, path, NULL, err, sizeof err) == 0, "%s", err);
        ck_assert(memcmp(r2.params, t.params, t.n_params * sizeof(float)) == 0);
        snprintf(path, sizeof path, "%s/hf/model.safetensors", tmpdir);
        f = st_load(path, err, sizeof err);
        ck_assert_msg(strstr(st_meta(f, "prunelab"), "\"dims\":\"per_layer\""), "%s", st_meta(f, "prunelab"));
        ck_assert(tied ? st_find(f, "lm_head.weight") == NULL : st_find(f, "lm_head.weight") != NULL);
        st_free(f);
        model_free(&r2);
        model_free(&r);
        model_free(&t);
    }
}
END_TEST

/* A file without metadata is an LM when it has backbone.embeddings.weight; a wrong shape, a
 * missing tensor or an extra one is refused naming the tensor. */
START_TEST(test_load_refusals)
{
    make_tmpdir();
    model t;
    tiny_lm(&t, 0, 41);
    char path[512], err[PL_ERRLEN];
    snprintf(path, sizeof path, "%s/x.safetensors", tmpdir);
    for (int k = 0; k < 4; k++) {
        st_writer *w = st_writer_new();
        for (int i = 0; i < t.n_tensors; i++) {
            const param_info *p = &t.info[i];
            int64_t shape[4];
            memcpy(shape, p->shape, sizeof shape);
            if (k == 1 && strcmp(p->name, "lm_head.weight") == 0) shape[0] = 10; /* wrong V */
            if (k == 2 && strcmp(p->name, "backbone.norm_f.weight") == 0) continue;
            if (k == 1 && strcmp(p->name, "lm_head.weight") == 0) {
                st_writer_add(w, p->name, ST_F32, p->ndim, shape, t.params + p->offset);
                continue;
            }
            st_writer_add(w, p->name, ST_F32, p->ndim, p->shape, t.params + p->offset);
        }
        if (k == 3) {
            int64_t one = 1;
            st_writer_add(w, "extra.weight", ST_F32, 1, &one, t.params);
        }
        ck_assert(st_writer_save(w, path, err, sizeof err) == 0);
        st_writer_free(w);
        model r;
        int rc = model_load(&r, path, NULL, err, sizeof err);
        if (k == 0) {
            ck_assert_msg(rc == 0, "%s", err);
            ck_assert_int_eq(r.cfg.task, MODEL_TASK_LM);
            ck_assert_int_eq(r.cfg.tied, 0);
            ck_assert(memcmp(r.params, t.params, t.n_params * sizeof(float)) == 0);
            model_free(&r);
            continue;
        }
        ck_assert_int_eq(rc, -1);
        const char *needle[] = {NULL, "lm_head.weight has shape [10, 6], expected [11, 6]",
                                "no tensor backbone.norm_f.weight", "unexpected tensor extra.weight"};
        ck_assert_msg(strstr(err, needle[k]) != NULL, "case %d: %s", k, err);
    }
    model_free(&t);
}
END_TEST

/* init for an LM: the embedding is N(0, 0.02), tied by default, layers as the image model's. */
START_TEST(test_init)
{
    model_hparams hp = {.d = 16, .n_layers = 2, .d_state = 4, .d_conv = 4, .expand = 2.0f, .mlp_ratio = 0.0f};
    model_config c;
    char err[PL_ERRLEN];
    ck_assert_msg(model_config_lm(&c, &hp, 300, 1, err, sizeof err) == 0, "%s", err);
    model m;
    ck_assert(model_create(&m, &c, 7, err, sizeof err) == 0);
    ck_assert_int_eq(m.n_tensors, 1 + 2 * 10 + 1);
    ck_assert_ptr_null(model_find(&m, "lm_head.weight"));
    double s = 0, s2 = 0;
    size_t n = (size_t)300 * 16;
    for (size_t i = 0; i < n; i++) s += m.w.embed[i], s2 += (double)m.w.embed[i] * m.w.embed[i];
    double sd = sqrt(s2 / n - (s / n) * (s / n));
    ck_assert_msg(fabs(sd - 0.02) < 0.002 && fabs(s / n) < 0.002, "embedding sd %g mean %g", sd, s / n);
    ck_assert_float_eq(m.w.layers[1].A_log[3], logf(4.0f));
    ck_assert_float_eq(m.cfg.eps, 1e-5f);
    ck_assert_int_eq(model_hf_uniform(&m), 1);
    model_free(&m);
    ck_assert_int_eq(model_config_lm(&c, &hp, 1, 1, err, sizeof err), -1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("lm");
    TCase *tf = tcase_create("fixture");
    tcase_add_test(tf, test_fixture_directory_and_file);
    tcase_add_test(tf, test_fixture_sharded);
    tcase_add_test(tf, test_config_json_mismatch);
    suite_add_tcase(s, tf);
    TCase *tg = tcase_create("gradients");
    tcase_add_test(tg, test_fd_tied);
    tcase_add_test(tg, test_fd_untied);
    tcase_add_test(tg, test_threads_and_acts);
    suite_add_tcase(s, tg);
    TCase *tc = tcase_create("checkpoints");
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_load_refusals);
    tcase_add_test(tc, test_init);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
