/* main.c — entry point of the engine binary: picks the BLAS kernel (which may re-execute the
 * process before anything else happens), then dispatches to a command of the table. */
#include <stdio.h>
#include <string.h>

#include "blas.h"
#include "cli.h"
#include "util.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"init", cmd_init, "create a freshly initialised model checkpoint"},
    {"train", cmd_train, "train a model on a dataset (checkpoint every epoch, --resume)"},
    {"eval", cmd_eval, "evaluate a model on a dataset split; prints JSON"},
    {"grad", cmd_grad, "loss, logits and parameter gradients for one batch (safetensors in/out)"},
    {"inspect", cmd_inspect, "validate a checkpoint and print its config and dims as JSON"},
    {"bench", cmd_bench, "training / inference throughput and the GEMM roofline"},
    {"components", cmd_components, "list the prunable components of a model with their share of params (JSON)"},
    {"prune", cmd_prune, "prune a model as a JSON spec says; writes the model, masks and a JSON report"},
    {"rsst", cmd_rsst, "regularised (RSST) and iterative (IMP) pruning with rewind and refill"},
    {"lite", cmd_lite, "build a smaller model with target dims from a trained one, then fine-tune"},
    {"ngram", cmd_ngram, "the n-gram baseline of a byte-level dataset: val bits per byte (JSON)"},
    {"cell", cmd_cell, "run one experiment cell: JSON spec on stdin, JSON lines on stdout"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: prunelab COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nrun 'prunelab COMMAND --help' for the options of a command.\n");
}

int main(int argc, char **argv)
{
    blas_select_or_reexec(argc, argv);
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(cmd, commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    pl_die("run 'prunelab --help' for the list of commands", "unknown command '%s'", cmd);
}
