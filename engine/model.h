/* model.h — the two models of DESIGN.md section 3 on one Mamba backbone: the patch-Mamba image
 * classifier and the causal LM (HF MambaForCausalLM).
 *
 * Notation: d d_model, E d_inner, N d_state, R dt_rank, K d_conv, M MLP width (0 = none),
 * P patch size, L tokens = (H/P)*(W/P) (image) or T (LM window), B batch, V classes (image) or
 * vocabulary (LM). Every layer has its own E,N,R,K,M: tensor shapes in the checkpoint are the
 * truth.
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

typedef enum {
    MODEL_TASK_IMAGE = 0, /* patch-Mamba image classifier ("image_classifier") */
    MODEL_TASK_LM,        /* causal LM, HF MambaForCausalLM ("causal_lm") */
    MODEL_TASK_COUNT
} model_task;
extern const char *const model_task_names[MODEL_TASK_COUNT + 1]; /* metadata spellings, NULL-terminated */

typedef struct {
    model_task task;       /* 0 (image) in a zeroed config */
    int d;                 /* d_model */
    int n_layers;
    int C, H, W, P;        /* image: channels, height, width; patch size (0 for an LM) */
    int L;                 /* image: tokens = (H/P)*(W/P) (0 for an LM: T is chosen per model_acts) */
    int classes;           /* image: V classes (0 for an LM) */
    int vocab;             /* LM: V, rows of backbone.embeddings.weight (0 for an image model) */
    int tied;              /* LM: lm_head is the embedding matrix; no lm_head.weight tensor */
    float eps;             /* layer_norm_epsilon of every RMSNorm; 0 in a hand-built config -> 1e-5
                              (model_alloc fills it in) */
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
/* Fill cfg for a causal LM from hyper-parameters (patch ignored), vocabulary V >= 2 and the tied
 * flag; eps 1e-5. Returns 0 or -1 with err. */
int model_config_lm(model_config *cfg, const model_hparams *hp, int V, int tied, char *err, size_t errlen);

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
    float *patch_w;    /* (d, C*P*P), image only (else NULL) */
    float *patch_b;    /* (d), image only */
    float *pos;        /* (L, d), image only */
    float *embed;      /* (V, d) backbone.embeddings.weight, LM only */
    layer_params layers[MODEL_MAX_LAYERS];
    float *norm_f_w;   /* (d) */
    float *head_w;     /* (V, d): image head.weight; LM lm_head.weight, NULL when tied (use embed) */
    float *head_b;     /* (V), image only */
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

/* Checkpoint I/O (safetensors, DESIGN.md 4). path is a safetensors file or an HF directory
 * (config.json + model.safetensors, or shards listed by model.safetensors.index.json).
 * model_load accepts files written by others: when our "prunelab" metadata is missing, a file
 * with backbone.embeddings.weight is a causal LM; otherwise image shape comes from the dataset
 * name (dataset_hint, may be NULL -> error naming --dataset), P from patch_embed's width, classes
 * from head's rows. A directory's config.json is checked against the tensor shapes.
 * Returns 0 or -1 with err naming the offending tensor/shape/key. */
int model_load(model *m, const char *path, const char *dataset_hint, char *err, size_t errlen);
/* Save m. When path is an existing directory or ends in '/', the directory (created if missing,
 * one level) receives model.safetensors and, for an LM whose layers all agree on E/N/R/K and
 * have no MLP, a config.json that MambaForCausalLM.from_pretrained reads (an older config.json
 * there is removed otherwise). Returns 0 or -1 with err. */
int model_save(const model *m, const char *path, char *err, size_t errlen);
/* Write the HF config.json of an LM to path. Returns 0, or -1 with err when m is not an LM or
 * its layers differ in E/N/R/K or have an MLP (no HF config describes it). */
int model_save_hf_config(const model *m, const char *path, char *err, size_t errlen);
/* 1 when every layer of an LM has the same E, N, R, K and no MLP (an HF config describes it). */
int model_hf_uniform(const model *m);
/* Config + per-layer dims + parameter counts as a JSON object text (malloc'd). */
char *model_describe_json(const model *m);

/* Per-layer dims as a new JSON array, one {"index" (the layer's index in the model it was pruned
 * from), "E", "N", "R", "K", "M"} per layer: what cells and the CLI commands report. */
struct json_t;
struct json_t *model_dims_json(const model *m);

/* Forward FLOPs per sample (multiply-add = 2 FLOPs; GEMMs, conv, scan, norms). For an LM a
 * sample is one token (every layer plus the head's logits for that token). */
double model_flops_per_sample(const model_config *cfg);

/* Activations for a batch of up to B samples. training = 1 keeps everything backward needs.
 * Image models only (an LM needs model_acts_new_lm). */
typedef struct model_acts model_acts;
model_acts *model_acts_new(const model *m, int B, int training);
/* Activations of a causal LM for up to B windows of up to T tokens. keep_logits = 1 also keeps
 * the full (B, T, V) logits (small cases: tests, `grad`); otherwise only (128, V) logits chunks
 * exist, whatever V is. */
model_acts *model_acts_new_lm(const model *m, int B, int T, int training, int keep_logits);
void model_acts_free(model_acts *a);

/* Forward pass on images (B, C, H, W), already normalised. If labels != NULL returns the mean
 * cross-entropy loss, else 0. Logits (B, V) stay readable through model_acts_logits. */
float model_forward(const model *m, model_acts *a, const float *images, const int *labels, int B);
const float *model_acts_logits(const model_acts *a); /* LM: (B, T, V) or NULL without keep_logits */

/* Causal LM forward on token windows ids (B, T) (row-major, values in [0, V); B <= the acts'
 * B, 2 <= T <= the acts' T): returns the mean next-token cross-entropy over the B*(T-1)
 * positions 0..T-2 predicting ids 1..T-1 (HF labels=input_ids). */
float model_forward_lm(const model *m, model_acts *a, const int *ids, int B, int T);
/* Top-1 correct next-token predictions (first arg-max logit = target) of the last
 * model_forward_lm on a with batch B (of B*(T-1) predictions). */
long model_acts_lm_correct(const model_acts *a, int B);
/* Backward of the last model_forward_lm (same ids, B, T); ACCUMULATES into m->grads. The tied
 * head's gradient adds into the embedding's. Requires training acts and allocated grads. */
void model_backward_lm(model *m, model_acts *a, const int *ids, int B, int T);
/* Observer of one layer's activations during model_forward (calibration statistics for the
 * activation and wanda criteria). Pointers are valid only inside the call; rows = B*L (B*T). */
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
