/* cell_memory.h — how much memory one cell will ask for, estimated from its spec before it runs,
 * so that a job whose cells cannot fit is refused at submission (jobspec.c) instead of taking the
 * machine down when it runs.
 *
 * The estimate follows the engine's allocations (engine/model.c, train.c, optim.c): parameters,
 * gradients, the AdamW moments and a mask (5 floats per parameter), one private gradient block per
 * extra thread, the training activations of a batch (model.c acts_carve: per token and layer
 * 4d + 8E + R + 2N + 2M + 2 floats, plus the patch, head and backward scratch buffers), both
 * dataset splits in memory, and a fixed 64 MiB for the binary, OpenBLAS and the heap. Pruning
 * recipes are estimated as a fine-tuning run of the input model at the cell's finetune batch.
 * A causal LM (cell_memory_lm) counts V x d embeddings (and a second V x d head when untied) instead
 * of the patch, position and class parameters, B x seq_len tokens of activations (each as an image
 * token, plus its log-sum-exp and target), one (128, V) logits chunk per thread, and no data for
 * token files (memory-mapped; synthetic-lm's generated ids are counted).
 * bench/README.md section 6 compares it with the measured peak RSS of real cells. */
#ifndef PL_SERVER_CELL_MEMORY_H
#define PL_SERVER_CELL_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "spec.h"

#define CELL_MEMORY_DEFAULT_MAX ((size_t)4 << 30) /* max_cell_memory when none is configured */

typedef struct {
    double total;        /* bytes */
    double state;        /* parameters, gradients, optimizer moments, masks */
    double activations;  /* training activations of one batch */
    double data;         /* both dataset splits */
    const char *field;   /* the cell field that drives the estimate: "batch", "finetune.batch",
                          * "d_model" or "preset" (train), "model" (the input model's size),
                          * "seq_len" (an LM cell's window) */
} cell_memory;

#define CELL_MEMORY_LM_SEQ_LEN 256 /* seq_len when the cell gives none (engine/tokens.h) */
#define CELL_MEMORY_LM_CE_ROWS 128 /* rows of the LM head's logits chunk (engine/model.c) */

/* What a causal LM cell adds to the estimate. */
typedef struct {
    int vocab;   /* V; 0 = unknown (counted as 65536) */
    int tied;    /* the head is the embedding matrix */
    int seq_len; /* tokens per window; 0 = CELL_MEMORY_LM_SEQ_LEN */
} cell_memory_lm;

/* Estimate cell cs. model is the input model's shape for pruning recipes (n_layers 0 = unknown:
 * then only the data is counted). threads is the cell's thread count (<= 0 = 1). Returns 0. */
int cell_memory_estimate(const cell_spec *cs, const spec_shape *model, int threads, cell_memory *out);
/* The same for a causal LM cell when lm is not NULL (lm NULL: cell_memory_estimate). The field of
 * an activation-bound LM estimate is "seq_len" when the cell gives one. Returns 0. */
int cell_memory_estimate_lm(const cell_spec *cs, const spec_shape *model, const cell_memory_lm *lm, int threads,
                            cell_memory *out);

/* Address-space limit of a cell process for a max_cell_memory of cap bytes: 2 * cap + 1 GiB (the
 * OpenBLAS threads and glibc arenas reserve address space they never touch; see bench/README.md
 * section 6 for measured VmPeak). */
uint64_t cell_memory_rlimit(size_t cap);

#endif
