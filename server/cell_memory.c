/* cell_memory.c — the memory estimate of a cell (see cell_memory.h). Pure arithmetic on the
 * parsed spec: no I/O, no allocation. Counts are doubles so that absurd dims cannot overflow. */
#include "cell_memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLOAT_BYTES 4.0
#define FIXED_BYTES (64.0 * 1024 * 1024)

typedef struct {
    int c, h, w, classes;
    double n_train, n_test;
} data_shape;

/* The image shape and split sizes a dataset name stands for (data.h). */
static void data_shape_of(const char *name, data_shape *ds) {
    *ds = (data_shape){3, 32, 32, 10, 50000, 10000}; /* unknown: as large as cifar */
    if (!name) return;
    if (strstr(name, "mnist")) {
        *ds = (data_shape){1, 28, 28, 10, 60000, 10000};
    } else if (strstr(name, "cifar100") || strstr(name, "cifar-100")) {
        ds->classes = 100;
    } else if (strncmp(name, "synthetic", 9) == 0) {
        *ds = (data_shape){1, 16, 16, 4, 2048, 512};
        const char *p = strchr(name, ':');
        while (p && *p) {
            p++;
            long v = 0;
            char key[16] = "";
            if (sscanf(p, "%15[a-z]=%ld", key, &v) == 2 && v > 0) {
                if (!strcmp(key, "n")) ds->n_train = (double)v, ds->n_test = v / 4 > 0 ? v / 4 : 1;
                else if (!strcmp(key, "c")) ds->c = (int)v;
                else if (!strcmp(key, "h")) ds->h = (int)v;
                else if (!strcmp(key, "w")) ds->w = (int)v;
                else if (!strcmp(key, "classes")) ds->classes = (int)v;
            }
            p = strchr(p, ',');
        }
    }
}

/* The vocabulary counted for an LM: its own, or 65536 (every uint16 id) when unknown. */
static double lm_vocab(const cell_memory_lm *lm) { return lm->vocab > 0 ? lm->vocab : 65536.0; }

/* The ids a token dataset holds in memory: synthetic-lm generates n + n/4 ids (int32); files are
 * memory-mapped and released as they are read (engine/tokens.h), so they count as nothing. */
static double lm_data_bytes(const char *name) {
    double n = 0;
    if (name && strncmp(name, "synthetic-lm", 12) == 0) {
        n = 65536;
        const char *p = strstr(name, "n=");
        if (p && (p == name + 13 || p[-1] == ',')) n = strtod(p + 2, NULL);
    }
    return n * 1.25 * 4;
}

typedef struct {
    double params, per_token; /* per_token: training activation floats per token (B * L rows) */
} model_cost;

/* Parameters and activation floats per token of a model of width d with the given layers: an
 * image classifier of patch P on ds, or (lm not NULL) a causal LM with lm->vocab embeddings
 * (V x d, a second V x d head when untied) and no patch, position or class head. */
static model_cost model_cost_of(int d, const spec_layer_dims *layers, int n_layers, const data_shape *ds, int P,
                                const cell_memory_lm *lm) {
    model_cost mc = {0, 0};
    double D = d, emax = 1, nmax = 1, rmax = 1, mmax = 1;
    double L = (double)(ds->h / P) * (ds->w / P);
    for (int i = 0; i < n_layers; i++) {
        const spec_layer_dims *l = &layers[i];
        double E = l->E, N = l->N, R = l->R, K = l->K, M = l->M;
        mc.params += 2 * E * D + E * K + E + (R + 2 * N) * E + R * E + E + E * N + E + E * D + 2 * D;
        if (M > 0) mc.params += D * M + M + M * D + D;
        mc.per_token += 4 * D + 8 * E + R + 2 * N + 2 * M + 2;
        emax = E > emax ? E : emax, nmax = N > nmax ? N : nmax, rmax = R > rmax ? R : rmax, mmax = M > mmax ? M : mmax;
    }
    if (lm) {
        double V = lm_vocab(lm);
        mc.params += V * D * (lm->tied ? 1 : 2) + D; /* embeddings, untied head, norm_f */
        mc.per_token += 2 + 9 * D + 5 * emax + 2 * nmax + rmax + 2 * mmax + 2; /* lse and targets, not patches */
        return mc;
    }
    double patch = (double)ds->c * P * P;
    mc.params += patch * D + D + L * D + D + D * ds->classes + ds->classes;
    mc.per_token += patch + 9 * D + 5 * emax + 2 * nmax + rmax + 2 * mmax + 2;
    return mc;
}

int cell_memory_estimate(const cell_spec *cs, const spec_shape *model, int threads, cell_memory *out) {
    return cell_memory_estimate_lm(cs, model, NULL, threads, out);
}

int cell_memory_estimate_lm(const cell_spec *cs, const spec_shape *model, const cell_memory_lm *lm, int threads,
                            cell_memory *out) {
    memset(out, 0, sizeof *out);
    data_shape ds;
    data_shape_of(cs->dataset, &ds);
    double T = threads > 0 ? threads : 1;
    /* tokens per sample: an image's patches, an LM's window */
    double seq = lm ? (lm->seq_len > 0 ? lm->seq_len : CELL_MEMORY_LM_SEQ_LEN) : 0;
    out->data = lm ? lm_data_bytes(cs->dataset) : (ds.n_train + ds.n_test) * ((double)ds.c * ds.h * ds.w * FLOAT_BYTES + 1);
    model_cost mc = {0, 0};
    double B = 0;
    if (cs->recipe == CELL_TRAIN) {
        const model_hparams *hp = &cs->hp;
        int P = hp->patch > 0 ? hp->patch : 4;
        spec_layer_dims l = {0};
        l.E = (int)(hp->expand * hp->d + 0.5f);
        l.N = hp->d_state;
        l.R = hp->dt_rank > 0 ? hp->dt_rank : (hp->d + 15) / 16;
        l.K = hp->d_conv;
        l.M = (int)(hp->mlp_ratio * hp->d + 0.5f);
        spec_layer_dims one[1] = {l};
        mc = model_cost_of(hp->d, one, 1, &ds, P, lm);
        model_cost base = model_cost_of(hp->d, one, 0, &ds, P, lm);
        /* n identical layers: the per-layer part n times, the rest once */
        mc.params = base.params + (mc.params - base.params) * hp->n_layers;
        mc.per_token = base.per_token + (mc.per_token - base.per_token) * hp->n_layers;
        B = cs->batch > 0 ? cs->batch : SPEC_TRAIN_BATCH;
        mc.per_token *= lm ? seq : (double)(ds.h / P) * (ds.w / P);
    } else if (model && model->n_layers > 0) {
        int P = 4;
        mc = model_cost_of(model->d, model->layers, model->n_layers, &ds, P, lm);
        B = cs->finetune_batch > 0 ? cs->finetune_batch : SPEC_FINETUNE_BATCH;
        mc.per_token *= lm ? seq : (double)(ds.h / P) * (ds.w / P);
    }
    out->state = mc.params * FLOAT_BYTES * (5 + (T - 1));
    out->activations = B * mc.per_token * FLOAT_BYTES;
    /* an LM's cross-entropy: one (128, V) logits chunk per thread's slice of the batch */
    if (lm && B > 0) out->activations += T * CELL_MEMORY_LM_CE_ROWS * lm_vocab(lm) * FLOAT_BYTES;
    out->total = out->state + out->activations + out->data + FIXED_BYTES;
    if (out->activations > out->state && lm && lm->seq_len > 0) out->field = "seq_len";
    else if (out->activations > out->state) out->field = cs->recipe == CELL_TRAIN ? "batch" : "finetune.batch";
    else out->field = cs->recipe != CELL_TRAIN ? "model" : cs->have_dims ? "d_model" : "preset";
    return 0;
}

uint64_t cell_memory_rlimit(size_t cap) {
    return 2 * (uint64_t)cap + ((uint64_t)1 << 30);
}
