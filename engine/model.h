/* model.h — the patch-Mamba image classifier of DESIGN.md section 3.
 *
 * Notation: d d_model, E d_inner, N d_state, R dt_rank, K d_conv, M MLP width (0 = none),
 * P patch size, L tokens = (H/P)*(W/P), B batch, V classes. Every layer has its own E,N,R,K,M:
 * tensor shapes in the checkpoint are the truth.
 *
 * Memory (STYLE.md 3): parameters, gradients and the optional mask each live in ONE float block
 * with the same layout; `info` is the size table (name, shape, offset) and `w` / `g` are named
 * views into params / grads. Optimizers, mask application and checkpoint I/O are flat loops
 * over the blocks. Activations live in a model_acts sized for a batch. */
#ifndef PL_MODEL_H
#define PL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "spec.h"
#include "vocab.h"

typedef struct {
    int E; /* d_inner */
    int N; /* d_state */
    int R; /* dt_rank */
    int K; /* d_conv */
    int M; /* MLP width, 0 = no MLP */
} layer_dims;

#define MODEL_MAX_LAYERS SPEC_MAX_LAYERS

typedef struct {
    int d;                 /* d_model */
    int n_layers;
    int C, H, W, P;        /* image channels, height, width; patch size */
    int L;                 /* tokens = (H/P)*(W/P) */
    int classes;           /* V */
    layer_dims layers[MODEL_MAX_LAYERS];
    int orig_index[MODEL_MAX_LAYERS]; /* original layer index (after block removal) */
    char dataset[64];
    float norm_mean[3], norm_std[3];
    char provenance[1024]; /* free-form JSON object text, "" if none */
} model_config;

/* model_hparams and model_preset (the presets tiny, small, base) live in spec/vocab.h. */
/* Fill cfg from hyper-parameters and an image shape. Returns 0 or -1 with err (e.g. image not
 * divisible by the patch, dims out of range). */
int model_config_from_hparams(model_config *cfg, const model_hparams *hp, int C, int H, int W, int classes,
                              char *err, size_t errlen);

/* One parameter tensor in the block. */
typedef struct {
    char name[96];         /* checkpoint name, e.g. backbone.layers.0.mixer.in_proj.weight */
    int ndim;
    int64_t shape[4];
    size_t offset;         /* in floats, into params / grads / mask */
    size_t numel;
    int layer;             /* -1 for non-layer tensors */
    int decay;             /* 1 if weight decay applies (2-D weight matrices) */
} param_info;

typedef struct {
    float *norm_w;     /* (d) */
    float *in_proj_w;  /* (2E, d): rows 0..E-1 -> x, rows E..2E-1 -> z */
    float *conv_w;     /* (E, K)  [checkpoint (E, 1, K)] */
    float *conv_b;     /* (E) */
    float *x_proj_w;   /* (R+2N, E): dt_low rows, then B rows, then C rows */
    float *dt_proj_w;  /* (E, R) */
    float *dt_proj_b;  /* (E) */
    float *A_log;      /* (E, N) */
    float *D;          /* (E) */
    float *out_proj_w; /* (d, E) */
    float *norm2_w;    /* (d) or NULL when M = 0 */
    float *fc1_w;      /* (M, d) or NULL */
    float *fc1_b;      /* (M) or NULL */
    float *fc2_w;      /* (d, M) or NULL */
    float *fc2_b;      /* (d) or NULL */
} layer_params;

typedef struct {
    float *patch_w;    /* (d, C*P*P) */
    float *patch_b;    /* (d) */
    float *pos;        /* (L, d) */
    layer_params layers[MODEL_MAX_LAYERS];
    float *norm_f_w;   /* (d) */
    float *head_w;     /* (V, d) */
    float *head_b;     /* (V) */
} model_params;

typedef struct {
    model_config cfg;
    int n_tensors;
    param_info *info;  /* n_tensors entries, in checkpoint order */
    size_t n_params;
    float *params;     /* (n_params) */
    float *grads;      /* (n_params) or NULL until model_alloc_grads */
    float *mask;       /* (n_params) 1 keep / 0 pruned, or NULL when unmasked */
    model_params w;    /* views into params */
    model_params g;    /* views into grads (NULL pointers until allocated) */
} model;

/* Allocate the parameter block for cfg and initialise it as mamba_ssm does (DESIGN.md 3),
 * deterministically from seed. Returns 0 or -1 with err. Free with model_free. */
int model_create(model *m, const model_config *cfg, uint64_t seed, char *err, size_t errlen);
void model_free(model *m); /* NULL-safe; frees params, grads, mask, info */
/* Lay out cfg and allocate a zeroed parameter block (no init); for loaders and shrinking.
 * Returns 0 or -1 with err for an invalid cfg. */
int model_alloc(model *m, const model_config *cfg, char *err, size_t errlen);
void model_alloc_grads(model *m);  /* allocates (zeroed) grads and their views, idempotent */
void model_zero_grads(model *m);
/* Allocate an all-ones mask (idempotent). */
void model_alloc_mask(model *m);

/* dst = a copy of src's parameters and mask (no grads); dst is overwritten. Returns 0 or -1 with
 * err. Free with model_free. */
int model_copy(model *dst, const model *src, char *err, size_t errlen);

/* Parameters of m that are not exactly zero. */
size_t model_count_nonzero(const model *m);
/* The model's dims as a spec_shape (what spec/ checks specs against). */
void model_shape(const model *m, spec_shape *sh);
/* params *= mask (and grads *= mask if grads) when a mask exists. */
void model_apply_mask(model *m);

const param_info *model_find(const model *m, const char *name); /* NULL if absent */

/* Checkpoint I/O (safetensors, DESIGN.md 4). model_load accepts files written by others: when our
 * "prunelab" metadata is missing, image shape comes from the dataset name (dataset_hint, may be
 * NULL -> error naming --dataset), P from patch_embed's width, classes from head's rows.
 * Returns 0 or -1 with err naming the offending tensor/shape. */
int model_load(model *m, const char *path, const char *dataset_hint, char *err, size_t errlen);
int model_save(const model *m, const char *path, char *err, size_t errlen);
/* Config + per-layer dims + parameter counts as a JSON object text (malloc'd). */
char *model_describe_json(const model *m);

/* Per-layer dims as a new JSON array, one {"index" (the layer's index in the model it was pruned
 * from), "E", "N", "R", "K", "M"} per layer: what cells and the CLI commands report. */
struct json_t;
struct json_t *model_dims_json(const model *m);

/* Forward FLOPs per sample (multiply-add = 2 FLOPs; GEMMs, conv, scan, norms). */
double model_flops_per_sample(const model_config *cfg);

/* Activations for a batch of up to B samples. training = 1 keeps everything backward needs. */
typedef struct model_acts model_acts;
model_acts *model_acts_new(const model *m, int B, int training);
void model_acts_free(model_acts *a);

/* Forward pass on images (B, C, H, W), already normalised. If labels != NULL returns the mean
 * cross-entropy loss, else 0. Logits (B, V) stay readable through model_acts_logits. */
float model_forward(const model *m, model_acts *a, const float *images, const int *labels, int B);
const float *model_acts_logits(const model_acts *a);
/* Observer of one layer's activations during model_forward (calibration statistics for the
 * activation and wanda criteria). Pointers are valid only inside the call; rows = B*L. */
typedef struct {
    int layer, rows;          /* BL */
    const float *a;           /* (BL, d) norm(h): input of in_proj */
    const float *x, *z;       /* (BL, E) in_proj outputs: SSM branch (input of conv1d), gate branch */
    const float *u;           /* (BL, E) silu(conv1d(x)): input of x_proj */
    const float *dtl;         /* (BL, R) dt_low: input of dt_proj */
    const float *Bm, *Cm;     /* (BL, N) */
    const float *delta;       /* (BL, E) */
    const float *y;           /* (BL, E) scan output */
    const float *g;           /* (BL, E) y * silu(z): input of out_proj */
    const float *mix_out;     /* (BL, d) out_proj output (the mixer's contribution) */
    const float *a2;          /* (BL, d) norm2(hmid): input of fc1, NULL when M = 0 */
    const float *f1g;         /* (BL, M) gelu(fc1): input of fc2, NULL when M = 0 */
    const float *mlp_out;     /* (BL, d) fc2 output, NULL when M = 0 */
} model_layer_view;
typedef void (*model_layer_hook)(const model_layer_view *v, void *user);
/* Install (or clear with NULL) an observer called after each layer of every forward on a. */
void model_acts_set_hook(model_acts *a, model_layer_hook fn, void *user);

/* Backward of the mean loss of the last forward (same B, labels). ACCUMULATES into m->grads
 * (call model_zero_grads first). Requires training acts and allocated grads. */
void model_backward(model *m, model_acts *a, const int *labels, int B);

#endif
