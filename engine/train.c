/* train.c — the training loop, epoch checkpoints with optimizer state, and evaluation.
 *
 * Determinism: one pl_rng seeded with cfg->seed drives the per-epoch shuffle (the permutation
 * restarts from the identity each epoch) and the augmentation draws. The RNG state, the step
 * and the epoch are saved at every epoch end, so resuming from a checkpoint replays exactly the
 * remaining epochs. Kernels are deterministic for a fixed thread count.
 *
 * Ownership: train_run allocates its own activations, batch buffers and optimizer and frees
 * them before returning; the model (and its grads, allocated here if missing) stay the
 * caller's. Errors come back as -1 with a message in err; nothing here exits. */
#define _GNU_SOURCE
#include "train.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "measure.h"
#include "safetensors.h"
#include "task.h"
#include "util.h"

void train_config_default(train_config *c)
{
    memset(c, 0, sizeof *c);
    c->epochs = SPEC_TRAIN_EPOCHS;
    c->batch = SPEC_TRAIN_BATCH;
    c->max_steps = 0;
    c->stop_after_epoch = 0;
    c->warmup_steps = -1;
    optim_config_default(&c->opt);
    c->seed = 1;
    c->augment = 1;
    c->report_every_s = 5.0;
}

void train_config_finetune(train_config *c, const dataset *train, long steps, int epochs, float lr, int batch,
                           uint64_t seed)
{
    train_config_default(c);
    c->batch = batch;
    int Bb = batch < train->n ? batch : train->n;
    long spe = Bb > 0 ? train->n / Bb : 1;
    if (spe < 1) spe = 1;
    if (steps <= 0 && epochs > 0) {
        c->epochs = epochs;
    } else {
        c->epochs = (int)((steps + spe - 1) / spe);
        if (c->epochs < 1) c->epochs = 1;
        c->max_steps = steps;
    }
    c->opt.lr = lr;
    c->opt.min_lr = lr * 0.01f;
    c->seed = seed;
}

int train_check_compat(const model *m, const dataset *ds, char *err, size_t errlen)
{
    const model_config *c = &m->cfg;
    int lm = c->task == MODEL_TASK_LM;
    if (lm && !ds->tokens)
        return pl_err(err, errlen,
                      "the model is a causal LM (vocabulary %d) but dataset %s is an image dataset (give a token "
                      "dataset: tokens:DIR, text:FILE or synthetic-lm[:...])",
                      c->vocab, ds->name);
    if (!lm && ds->tokens)
        return pl_err(err, errlen,
                      "the model is an image classifier but dataset %s is a token dataset (give an image dataset: "
                      "fashion-mnist, mnist, cifar10, cifar100, synthetic[:...])",
                      ds->name);
    if (lm) {
        if (ds->vocab > c->vocab)
            return pl_err(err, errlen,
                          "dataset %s has vocabulary %d but the model's vocabulary is %d (ids would fall outside "
                          "the embedding; use a model created for this dataset: prunelab init --task lm --dataset %s)",
                          ds->name, ds->vocab, c->vocab, ds->name);
        return 0;
    }
    if (c->C != ds->c || c->H != ds->h || c->W != ds->w || c->classes != ds->classes)
        return pl_err(err, errlen,
                      "the model expects %dx%dx%d images and %d classes, but dataset %s has %dx%dx%d images "
                      "and %d classes (use the dataset the model was created for; see prunelab inspect)",
                      c->C, c->H, c->W, c->classes, ds->name, ds->c, ds->h, ds->w, ds->classes);
    return 0;
}

static void fmt_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0.0) || s > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

void train_progress_stderr(const train_progress *p, void *user)
{
    (void)user;
    char eta[32], el[32];
    fmt_duration(eta, sizeof eta, p->eta_s);
    fmt_duration(el, sizeof el, p->elapsed_s);
    if (p->epoch_end) {
        if (p->test_acc >= 0.0f)
            fprintf(stderr,
                    "epoch %d/%d done  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  [%s elapsed]\n",
                    p->epoch, p->epochs, p->train_loss, 100.0 * p->train_acc, p->test_loss, 100.0 * p->test_acc,
                    el);
        else
            fprintf(stderr, "epoch %d/%d done  train loss %.4f acc %.2f%%  [%s elapsed]\n", p->epoch, p->epochs,
                    p->train_loss, 100.0 * p->train_acc, el);
    } else if (p->tokens_per_s > 0.0) {
        fprintf(stderr, "epoch %d/%d  %5.1f%%  ETA %s  loss %.4f  %.0f tokens/s  lr %.2e  |g| %.3f\n", p->epoch,
                p->epochs, 100.0 * p->fraction, eta, p->loss, p->tokens_per_s, p->lr, p->grad_norm);
    } else {
        fprintf(stderr, "epoch %d/%d  %5.1f%%  ETA %s  loss %.4f  %.0f samples/s  lr %.2e  |g| %.3f\n", p->epoch,
                p->epochs, 100.0 * p->fraction, eta, p->loss, p->samples_per_s, p->lr, p->grad_norm);
    }
    fflush(stderr);
}

/* ---------------------------------------------------------------- checkpoints */

static char *state_path(const char *path)
{
    size_t n = strlen(path);
    char *s = xmalloc(n + 7);
    memcpy(s, path, n);
    memcpy(s + n, ".optim", 7);
    return s;
}

int train_checkpoint_save(const char *path, const model *m, const optim *o, const train_state *st, char *err,
                          size_t errlen)
{
    if (model_save(m, path, err, errlen) != 0) return -1;
    json_t *meta = json_object();
    json_object_set_new(meta, "optimizer", json_string(optim_kind_name(o->cfg.kind)));
    json_object_set_new(meta, "step", json_integer(st->step));
    json_object_set_new(meta, "epoch", json_integer(st->epoch));
    json_object_set_new(meta, "batch", json_integer(st->batch));
    json_object_set_new(meta, "epochs", json_integer(st->epochs));
    json_object_set_new(meta, "total_steps", json_integer(st->total_steps));
    json_object_set_new(meta, "n_params", json_integer((json_int_t)o->n));
    char seed[32];
    snprintf(seed, sizeof seed, "%016" PRIx64, st->seed);
    json_object_set_new(meta, "seed", json_string(seed));
    json_t *rng = json_array();
    for (int i = 0; i < 4; i++) {
        char h[32];
        snprintf(h, sizeof h, "%016" PRIx64, st->rng.s[i]);
        json_array_append_new(rng, json_string(h));
    }
    json_object_set_new(meta, "rng", rng);
    char *meta_text = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);

    st_writer *w = st_writer_new();
    int64_t shape[1] = {(int64_t)o->state_len};
    st_writer_add(w, "optim.state", ST_F32, 1, shape, o->state);
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "prunelab_train", meta_text);
    char *sp = state_path(path);
    int rc = st_writer_save(w, sp, err, errlen);
    st_writer_free(w);
    free(sp);
    free(meta_text);
    return rc;
}

static int parse_hex_u64(const char *s, uint64_t *v)
{
    if (!s || !*s) return -1;
    char *end = NULL;
    unsigned long long x = strtoull(s, &end, 16);
    if (*end) return -1;
    *v = (uint64_t)x;
    return 0;
}

int train_checkpoint_load_state(const char *path, optim *o, train_state *st, char *err, size_t errlen)
{
    char *sp = state_path(path);
    char e2[PL_ERRLEN];
    st_file *f = st_load(sp, e2, sizeof e2);
    if (!f) {
        pl_err(err, errlen, "cannot read the optimizer state of checkpoint %s: %s", path, e2);
        free(sp);
        return -1;
    }
    int rc = -1;
    json_t *meta = NULL;
    const char *text = st_meta(f, "prunelab_train");
    json_error_t je;
    if (!text || !(meta = json_loads(text, 0, &je)) || !json_is_object(meta)) {
        pl_err(err, errlen, "%s: missing or invalid prunelab_train metadata", sp);
        goto done;
    }
    const char *kind = json_string_value(json_object_get(meta, "optimizer"));
    optim_kind k;
    if (!kind || optim_kind_parse(kind, &k) != 0 || k != o->cfg.kind) {
        pl_err(err, errlen, "%s was written by optimizer %s, but this run uses %s (pass --optimizer %s)", sp,
               kind ? kind : "?", optim_kind_name(o->cfg.kind), kind ? kind : "?");
        goto done;
    }
    json_t *np = json_object_get(meta, "n_params");
    if (!json_is_integer(np) || (size_t)json_integer_value(np) != o->n) {
        pl_err(err, errlen, "%s holds state for %lld parameters, the model has %zu", sp,
               json_is_integer(np) ? (long long)json_integer_value(np) : -1LL, o->n);
        goto done;
    }
    const st_tensor *t = st_find(f, "optim.state");
    if (!t || t->dtype != ST_F32 || t->ndim != 1 || (size_t)t->numel != o->state_len) {
        pl_err(err, errlen, "%s: tensor optim.state missing or not F32 [%zu]", sp, o->state_len);
        goto done;
    }
    json_t *rng = json_object_get(meta, "rng");
    const char *seed = json_string_value(json_object_get(meta, "seed"));
    memset(st, 0, sizeof *st);
    if (!json_is_array(rng) || json_array_size(rng) != 4 || parse_hex_u64(seed, &st->seed) != 0) {
        pl_err(err, errlen, "%s: bad rng/seed in metadata", sp);
        goto done;
    }
    for (int i = 0; i < 4; i++)
        if (parse_hex_u64(json_string_value(json_array_get(rng, (size_t)i)), &st->rng.s[i]) != 0) {
            pl_err(err, errlen, "%s: bad rng state in metadata", sp);
            goto done;
        }
    st->step = (long)json_integer_value(json_object_get(meta, "step"));
    st->epoch = (int)json_integer_value(json_object_get(meta, "epoch"));
    st->batch = (int)json_integer_value(json_object_get(meta, "batch"));
    st->epochs = (int)json_integer_value(json_object_get(meta, "epochs"));
    st->total_steps = (long)json_integer_value(json_object_get(meta, "total_steps"));
    if (st->step < 0 || st->epoch < 0 || st->batch < 1) {
        pl_err(err, errlen, "%s: bad step/epoch/batch in metadata", sp);
        goto done;
    }
    memcpy(o->state, t->data, o->state_len * sizeof(float));
    o->step = st->step;
    rc = 0;
done:
    json_decref(meta);
    st_free(f);
    free(sp);
    return rc;
}

/* ---------------------------------------------------------------- evaluation */

int train_evaluate(const model *m, const dataset *ds, int batch, eval_result *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    measure_eval_out o;
    if (measure_eval_full(m, ds, batch, NULL, &o, err, errlen) != 0) return -1;
    double t = o.forward_s;
    r->n = o.n;
    r->accuracy = o.accuracy;
    r->loss = o.loss;
    r->batches = o.batches;
    r->batch = o.batch;
    r->seconds = t;
    r->latency_ms_per_batch = r->batches ? 1000.0 * t / r->batches : 0.0;
    r->samples_per_s = t > 0.0 ? ds->n / t : 0.0;
    r->predictions = o.predictions;
    r->tokens_per_s = ds->tokens && t > 0.0 ? (double)ds->n * ds->T / t : 0.0;
    return 0;
}

/* ---------------------------------------------------------------- training */

int train_run(model *m, const dataset *train, const dataset *test, const train_config *cfg, train_result *res,
              char *err, size_t errlen)
{
    train_result rdummy;
    if (!res) res = &rdummy;
    memset(res, 0, sizeof *res);
    res->test_loss = res->test_acc = -1.0f;
    if (cfg->epochs < 1) return pl_err(err, errlen, "epochs must be >= 1 (got %d)", cfg->epochs);
    if (cfg->batch < 1) return pl_err(err, errlen, "batch must be >= 1 (got %d)", cfg->batch);
    if (train->n < 1) return pl_err(err, errlen, "training set %s is empty", train->name);
    if (train_check_compat(m, train, err, errlen) != 0) return -1;
    if (test && train_check_compat(m, test, err, errlen) != 0) return -1;

    /* drop the incomplete last batch; a set smaller than one batch is one batch */
    int Bb = cfg->batch < train->n ? cfg->batch : train->n;
    long spe = train->n / Bb;
    long total = spe * cfg->epochs;
    if (cfg->max_steps > 0 && cfg->max_steps < total) total = cfg->max_steps;
    optim_config oc = cfg->opt;
    oc.total_steps = total;
    if (cfg->warmup_steps >= 0) {
        oc.warmup_steps = cfg->warmup_steps;
    } else {
        long w = total / 10 < spe ? total / 10 : spe;
        oc.warmup_steps = w > 0 ? w : 1;
    }
    if (oc.warmup_steps > total) oc.warmup_steps = total;

    optim o;
    if (optim_init(&o, &oc, m->n_params, err, errlen) != 0) return -1;
    train_state st = {.step = 0, .epoch = 0, .batch = Bb, .epochs = cfg->epochs, .total_steps = total,
                      .seed = cfg->seed};
    pl_rng_seed(&st.rng, cfg->seed);
    if (cfg->resume) {
        train_state rs;
        if (train_checkpoint_load_state(cfg->resume, &o, &rs, err, errlen) != 0) {
            optim_free(&o);
            return -1;
        }
        if (rs.batch != Bb || rs.total_steps != total || rs.epochs != cfg->epochs) {
            pl_err(err, errlen,
                   "checkpoint %s was written by a run with batch %d, %d epochs, %ld total steps; this run has "
                   "batch %d, %d epochs, %ld total steps (resume with the same --batch/--epochs/--max-steps)",
                   cfg->resume, rs.batch, rs.epochs, rs.total_steps, Bb, cfg->epochs, total);
            optim_free(&o);
            return -1;
        }
        st = rs;
    }

    model_alloc_grads(m);
    if (m->mask) model_apply_mask(m);
    int lm = dataset_is_tokens(train);
    model_acts *a = task_acts_new(m, train, Bb, 1);
    task_batch tb;
    task_batch_init(&tb, train, Bb);
    int *perm = lm ? NULL : xmalloc((size_t)train->n * sizeof(int));
    long preds = task_preds_per_sample(train);
    double report_every = cfg->report_every_s > 0 ? cfg->report_every_s : 5.0;
    double t_start = pl_now(), t_report = t_start;
    long step0 = st.step, samples_since = 0;
    double loss_since = 0.0;
    long n_since = 0;
    int rc = 0;
    float lr = 0.0f;
    double gnorm = 0.0, penalty = 0.0;

    while (st.epoch < cfg->epochs && st.step < total) {
        if (!lm) {
            for (int i = 0; i < train->n; i++) perm[i] = i;
            pl_rng_shuffle(&st.rng, perm, train->n);
        }
        double ep_loss = 0.0;
        long ep_correct = 0, ep_seen = 0;
        for (long b = 0; b < spe && st.step < total; b++) {
            if (lm) task_batch_random(&tb, train, Bb, &st.rng);
            else task_batch_fill(&tb, train, perm + b * Bb, Bb, &st.rng, cfg->augment);
            model_zero_grads(m);
            float loss = task_forward(m, a, &tb, Bb, &ep_correct);
            if (!isfinite(loss)) {
                rc = pl_err(err, errlen,
                            "training diverged: loss is %g at step %ld (epoch %d); try a lower --lr or --clip",
                            loss, st.step, st.epoch + 1);
                goto out;
            }
            task_backward(m, a, &tb, Bb);
            if (cfg->penalty) penalty = cfg->penalty(m, st.step, total, cfg->penalty_user);
            if (m->mask) model_apply_mask(m); /* masked weights get no gradient (and no norm share) */
            gnorm = optim_clip(m->grads, m->n_params, oc.clip);
            lr = optim_step(&o, m);
            st.step++;
            ep_loss += loss;
            ep_seen += Bb * preds;
            loss_since += loss;
            n_since++;
            samples_since += Bb;
            double now = pl_now();
            if (cfg->progress && now - t_report >= report_every) {
                train_progress p = {0};
                p.epoch = st.epoch + 1;
                p.epochs = cfg->epochs;
                p.step = st.step;
                p.total_steps = total;
                p.fraction = (double)st.step / total;
                p.elapsed_s = now - t_start;
                p.eta_s = (now - t_start) / (double)(st.step - step0) * (double)(total - st.step);
                p.loss = (float)(loss_since / n_since);
                p.lr = lr;
                p.grad_norm = gnorm;
                p.penalty = penalty;
                p.samples_per_s = samples_since / (now - t_report);
                p.tokens_per_s = lm ? p.samples_per_s * train->T : 0.0;
                p.test_loss = p.test_acc = -1.0f;
                cfg->progress(&p, cfg->progress_user);
                t_report = now;
                loss_since = 0.0;
                n_since = 0;
                samples_since = 0;
            }
        }
        st.epoch++;
        long batches = ep_seen / (Bb * preds);
        res->train_loss = batches ? (float)(ep_loss / batches) : 0.0f;
        res->train_acc = ep_seen ? (float)ep_correct / (float)ep_seen : 0.0f;
        res->test_loss = res->test_acc = -1.0f;
        if (test && test->n > 0) {
            eval_result er;
            if (train_evaluate(m, test, 256, &er, err, errlen) != 0) {
                rc = -1;
                goto out;
            }
            res->test_loss = (float)er.loss;
            res->test_acc = (float)er.accuracy;
        }
        if (cfg->checkpoint && train_checkpoint_save(cfg->checkpoint, m, &o, &st, err, errlen) != 0) {
            rc = -1;
            goto out;
        }
        if (cfg->progress) {
            double now = pl_now();
            train_progress p = {0};
            p.epoch = st.epoch;
            p.epochs = cfg->epochs;
            p.step = st.step;
            p.total_steps = total;
            p.fraction = (double)st.step / total;
            p.elapsed_s = now - t_start;
            p.eta_s = st.step > step0 ? (now - t_start) / (double)(st.step - step0) * (double)(total - st.step) : 0;
            p.loss = n_since ? (float)(loss_since / n_since) : res->train_loss;
            p.lr = lr;
            p.grad_norm = gnorm;
            p.penalty = penalty;
            p.samples_per_s = now > t_report ? samples_since / (now - t_report) : 0.0;
            p.tokens_per_s = lm ? p.samples_per_s * train->T : 0.0;
            p.epoch_end = 1;
            p.train_loss = res->train_loss;
            p.train_acc = res->train_acc;
            p.test_loss = res->test_loss;
            p.test_acc = res->test_acc;
            cfg->progress(&p, cfg->progress_user);
        }
        t_report = pl_now(); /* evaluation and checkpoint time do not count as training speed */
        loss_since = 0.0;
        n_since = 0;
        samples_since = 0;
        if (cfg->stop_after_epoch > 0 && st.epoch >= cfg->stop_after_epoch && st.epoch < cfg->epochs) {
            res->stopped_early = 1;
            break;
        }
    }
    if (st.step >= total && st.epoch < cfg->epochs) res->stopped_early = 1;
out:
    res->epochs_done = st.epoch;
    res->steps = st.step;
    res->seconds = pl_now() - t_start;
    free(perm);
    task_batch_free(&tb);
    model_acts_free(a);
    optim_free(&o);
    return rc;
}
