/* cell.h — one experiment cell (DESIGN.md section 6): a JSON spec in, JSON lines out.
 *
 * Protocol. The spec is one JSON object. The cell writes JSON lines, each flushed:
 *   {"event":"progress","phase":P,"fraction":F,"overall":O,"elapsed_s":S, ...phase fields}
 *       F in [0, 1] is the progress within phase P, O in [0, 1] the estimated progress of the
 *       whole cell; a line at every phase start and at least every CELL_HEARTBEAT_S seconds
 *       while the cell runs (a background thread repeats the last line, "heartbeat": true,
 *       when the work itself is silent, e.g. inside a calibration pass);
 *   then exactly one {"event":"result","metrics":{...}} (exit status 0)
 *   or exactly one {"event":"error","code":C,"message":M} (exit status cell_error_exit(C)).
 *   Phases in order: load, baseline (unless given), the recipe's own (train |
 *   prune | score, build | regularise, prune, finetune, eval per rsst round), eval_pruned and
 *   finetune (when fine-tuned after the recipe), eval, latency, save (with "out").
 * Every number is finite; a value that is not known or not finite is null.
 *
 * Spec (strict: unknown keys, wrong types, unknown names, out-of-range values are refused with
 * code "bad_spec" and a message that starts with the field, e.g. "rate: 1 is outside [0, 1)"):
 *   recipe      "train" | "ablation" | "sensitivity" | "joint" | "rsst" | "lite"   (required)
 *   model       checkpoint path, a regular file (required, except for train: an init checkpoint,
 *               absent = create one from "preset" / dims)
 *   dataset     dataset name (data.h), required; data_dir optional
 *   seed        integer >= 0 (default 1): initialisation, shuffling, calibration sampling,
 *               the random criterion
 *   threads     BLAS and kernel threads, 1..1024 (default: OpenBLAS's count)
 *   out         path of the produced model (required for train), written atomically; not the
 *               model path; its directory must exist
 *   baseline    {"accuracy" in [0,1], "loss" >= 0 (optional)}: the input model's metrics on the
 *               evaluation split; absent = the cell evaluates the input model itself
 *   eval        {"split": "test" | "train" (default test), "max_samples": n >= 1 (default all,
 *               the first n)}: where accuracy and loss (and the baseline) are measured
 *   finetune    {"steps" >= 0 (default 0), "lr" in (0, 100] (default 1e-3), "batch" >= 1
 *               (default 64)}: AdamW, cosine from lr to lr/100, masks kept fixed
 *   calibration {"samples" >= 1 (default 512)}: for the activation / taylor / wanda criteria
 *   seq_len     2..65536 (default 256): tokens per window of a causal LM on a token dataset
 *               (tokens:DIR, text:FILE, synthetic-lm[:...]); ignored by image cells
 *   eval.max_tokens  >= 1 (LM; default the whole split): the first ceil(max_tokens / seq_len)
 *               in-order windows. On an LM "max_samples" counts windows (a sample is a window),
 *               as do calibration "samples" and finetune "batch".
 * An LM model needs a token dataset and an image model an image dataset (bad_spec "dataset:"
 * otherwise); the data's vocabulary must not exceed the model's. A train cell without "model"
 * on a token dataset creates an LM: preset P means lm-P (lm.h), tied head, V from the data.
 * Recipe fields:
 *   train        "preset" (tiny|small|base, default small) and dims "d_model", "layers",
 *                "d_state", "expand", "d_conv", "mlp_ratio", "patch", "dt_rank" (only without
 *                "model"); "epochs" (default 10), "batch" (64), "lr" (2e-3), "min_lr" (lr/100),
 *                "warmup" (auto), "weight_decay" (0.05), "optimizer" (adamw|sgd), "momentum",
 *                "clip" (1.0), "max_steps", "augment" (true). No finetune / calibration.
 *   ablation     "component" (name or alias), "rate" in [0, 1), "granularity"
 *                (unstructured|structured, default unstructured), "criterion" (default
 *                magnitude), "scope" (layer|global, unstructured only), "apply" (shrink|mask,
 *                structured only, default shrink); every layer.
 *   sensitivity  "layer" (index into the model), "components" (a name or a non-empty array of
 *                names), "rate", "granularity", "criterion", "apply": only that layer.
 *   joint        "config": {component: rate, ...} (non-empty), "granularity", "criterion",
 *                "scope", "apply": one entry per component, every layer.
 *   rsst         "rsst": the rsst spec object (rsst.h); cell-level finetune / calibration / seed
 *                fill in what the object leaves out (finetune.batch becomes its "batch"). Its
 *                fine-tuning runs inside every round, not after the recipe.
 *   lite         "lite": the lite spec object (lite.h); same filling-in.
 *
 * Result metrics (all recipes): recipe, accuracy, loss, baseline_accuracy, baseline_loss,
 * baseline_source ("given" | "measured"), delta_accuracy = accuracy - baseline_accuracy,
 * delta_loss, eval {split, n}, params, params_nonzero, params_baseline(_nonzero), sparsity
 * (prune_sparsity_json of the produced model), flops_per_sample, baseline_flops_per_sample,
 * latency_batch (64), latency_ms_per_batch and samples_per_s of the realised model (5-15 timed
 * pairs of passes, baseline then realised model, after 2 warm-up pairs: each model's median, and
 * speedup = the median per-pair ratio, so both are timed under the same load; ablation / sensitivity / joint selections applied as
 * masks are measured on the equivalent shrunk model, params_realised gives its size; rsst
 * measures the model rsst_run returns, shrunk when its spec says shrink), the baseline's
 * latency_ms_per_batch / samples_per_s, speedup, layers (dims of the realised model),
 * peak_rss_kb, wall_s, blas_kernel, threads, seed, out (or null), config (with out: the written
 * model's config as `prunelab inspect` prints it, task / vocab / tied included). Recipe extras: pruned
 * {accuracy, loss, delta_accuracy, delta_loss} before fine-tuning and finetune {steps, lr, batch,
 * train_loss, train_acc, seconds} when fine-tuned; ablation / sensitivity / joint: entries (what
 * each pruning entry removed, prune_apply_spec_report); train: train {...} and series (per
 * epoch); rsst: series (per round, rsst_result_json) and rsst (the rest of that report), with
 * progress phases regularise / prune / finetune / eval carrying round and rounds; lite:
 * lite_spec (the merged spec), progress phases score / build.
 * Every result has task ("image_classifier" | "causal_lm") and metric ("accuracy" |
 * "perplexity", the headline number). An LM cell adds perplexity = exp(loss), bits_per_token =
 * loss / ln 2, bits_per_byte (when the dataset knows its bytes per token), baseline_perplexity,
 * baseline_bits_per_token (..._per_byte), delta_perplexity, eval {split, n (windows), tokens
 * (predictions), seq_len}, eval_tokens_per_s (the evaluation phase), latency_seq_len,
 * tokens_per_s and baseline_tokens_per_s (the paired latency, a sample = a window), and
 * perplexity / bits / delta_perplexity inside pruned; accuracy is next-token top-1; train
 * {seq_len, tokens_per_s}. */
#ifndef PL_CELL_H
#define PL_CELL_H

#include <stdint.h>
#include <stdio.h>

#include "model.h"
#include "prune.h"
#include "spec.h"

#define CELL_HEARTBEAT_S 2.0
#define CELL_MAX_SPEC_BYTES (1 << 20)

/* cell_recipe and its names live in spec/vocab.h; cell_spec and its parser in spec/spec.h. */

/* Error codes of the protocol. */
typedef enum {
    CELL_OK = 0,
    CELL_ERR_BAD_SPEC,    /* "bad_spec": the spec is wrong (exit 2) */
    CELL_ERR_BAD_MODEL,   /* "bad_model": the model file is not a usable patch-Mamba checkpoint (exit 2) */
    CELL_ERR_DATA,        /* "data": the dataset files cannot be loaded (exit 1) */
    CELL_ERR_UNAVAILABLE, /* "unavailable": the recipe is not built into this engine (exit 1) */
    CELL_ERR_RUNTIME,     /* "runtime": pruning, training, evaluation or writing failed (exit 1) */
    CELL_ERR_COUNT
} cell_error;

const char *cell_error_code(cell_error e); /* "bad_spec", ...; "ok" for CELL_OK */
int cell_error_exit(cell_error e);         /* 0, 2 (bad_spec, bad_model) or 1 */

/* Parse and check a spec (spec_cell_parse, then the files it names and the dataset name; fields
 * that depend on the model are checked by cell_run through spec_cell_check). Returns CELL_OK, or
 * CELL_ERR_BAD_SPEC with err naming the field. On error the spec holds nothing to free
 * (cell_spec_free is still safe). */
cell_error cell_spec_parse(const char *json_text, cell_spec *s, char *err, size_t errlen);

/* Run one cell from its spec text: writes the progress lines and the one result / error event
 * to out (flushed per line). Returns the exit status (0 after a result). Diagnostics for humans
 * go to stderr. While the cell runs, SIGTERM removes the temporary file of the output model
 * (and the output itself if it was written but the result not yet sent) and then terminates the
 * process with the default action. */
int cell_run_text(const char *json_text, FILE *out);

/* Emit a single error event on out (used for failures before a spec exists); returns the exit
 * status. */
int cell_emit_error(FILE *out, cell_error code, const char *message);

#endif
