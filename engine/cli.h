/* cli.h — the command table and a small table-driven option parser shared by the commands.
 *
 * Every command declares its options as a cli_opt array; cli_parse handles "--name value" and
 * "--name=value", --help / -h (prints usage and exits 0), unknown flags (refused with a
 * "did you mean" hint), missing or malformed values and out-of-range numbers (refused with the
 * allowed range). Every refusal goes through pl_die: message, hint, exit status 1. */
#ifndef PL_CLI_H
#define PL_CLI_H

#include <stdint.h>

#include "data.h"
#include "model.h"

typedef enum {
    CLI_STRING, /* dst: const char ** */
    CLI_INT,    /* dst: int * */
    CLI_LONG,   /* dst: long * */
    CLI_FLOAT,  /* dst: float * */
    CLI_U64,    /* dst: uint64_t * */
    CLI_FLAG,   /* dst: int *, set to 1, takes no value */
    CLI_CHOICE, /* dst: int *, index into the '|'-separated choices */
    CLI_TYPE_COUNT
} cli_type;

typedef struct {
    const char *name;    /* "--lr" */
    cli_type type;
    void *dst;
    const char *metavar; /* "LR" (shown in help) */
    const char *help;    /* one line, including the default */
    double min, max;     /* numeric range, inclusive; ignored when min == max == 0 */
    const char *choices; /* CLI_CHOICE: "adamw|sgd" */
    int seen;            /* set by cli_parse */
} cli_opt;

typedef struct {
    const char *cmd;        /* "train" */
    const char *usage;      /* "prunelab train --model M --dataset NAME [options] --out M2" */
    const char *summary;    /* a few lines describing the command */
    cli_opt *opts;
    int n_opts;
    int min_pos, max_pos;   /* positional arguments accepted */
    const char *pos_name;   /* e.g. "M.safetensors" */
} cli_spec;

/* Parse argv[1..argc-1] (argv[0] is the command name). Positional arguments are stored in
 * pos (up to s->max_pos). Returns the number of positionals; exits on --help or any error. */
int cli_parse(cli_spec *s, int argc, char **argv, const char **pos);

/* Exit with "<cmd>: <name> is required" and the usage hint unless the option was given. */
void cli_require(const cli_spec *s, const char *name);
/* 1 if the option was given on the command line. */
int cli_given(const cli_spec *s, const char *name);
/* Print "prunelab <cmd>: <msg>", a hint (NULL: "run 'prunelab <cmd> --help'") and exit 1. */
__attribute__((noreturn, format(printf, 3, 4))) void cli_fail(const cli_spec *s, const char *hint, const char *fmt,
                                                              ...);

/* Load a checkpoint or exit with the loader's message (dataset_hint may be NULL). */
void cli_load_model(const cli_spec *s, model *m, const char *path, const char *dataset_hint);
/* Load a checkpoint that pruning commands work on: model_load, then prune_is_mamba_model, then
 * the optional mask file (masks_path may be NULL). Exits with a message and a hint on failure. */
void cli_load_prunable(const cli_spec *s, model *m, const char *path, const char *dataset_hint,
                       const char *masks_path);
/* Read a JSON spec file (malloc'd, NUL-terminated) or exit with "cannot read spec PATH". */
char *cli_read_spec(const cli_spec *s, const char *path);
/* blas_verify once, or exit with a hint naming the fallback kernel. */
void cli_verify_blas(const cli_spec *s);
/* Load a dataset split or exit with the loader's message. */
void cli_load_dataset(const cli_spec *s, dataset *ds, const char *name, const char *dir, const char *split);
/* The same; a token dataset name is cut into windows of seq_len (<= 0: TOKENS_DEFAULT_SEQ_LEN)
 * and capped to max_tokens (> 0) of evaluation (dataset_load_tokens). */
void cli_load_data(const cli_spec *s, dataset *ds, const char *name, const char *dir, const char *split, int seq_len,
                   long max_tokens);
/* Fail unless the model and the dataset fit (task, image shape / vocabulary: train_check_compat). */
void cli_check_data(const cli_spec *s, const model *m, const dataset *ds);
/* Time m against the baseline m0 on ds in pairs as a cell does (measure_latency_into: the cell's
 * names written into rep); reps > 0 fixes the number of timed pairs. Exits on failure. */
void cli_latency_into(const cli_spec *s, struct json_t *rep, const model *m0, const model *m, const dataset *ds,
                      int reps);

/* Apply --threads (n > 0) to OpenBLAS and to the OpenMP kernels; n <= 0 keeps OpenBLAS's own
 * count (all cores unless OPENBLAS_NUM_THREADS says otherwise) and gives the kernels the same. */
void cli_set_threads(int n);

/* Commands (each gets argc/argv starting at its own name; returns the exit status). */
int cmd_init(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_ngram(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_components(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_rsst(int argc, char **argv);
int cmd_lite(int argc, char **argv);
int cmd_cell(int argc, char **argv);

#endif
