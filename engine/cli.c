/* cli.c — the table-driven option parser of the prunelab commands.
 *
 * Assumptions: options are long ("--name"), values follow as the next argument or after '=';
 * string values point into argv (no copies, nothing to free). Errors never return. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "measure.h"
#include "ops.h"
#include "prune.h"
#include "tokens.h"
#include "train.h"
#include "util.h"

static void print_usage(const cli_spec *s, FILE *f)
{
    fprintf(f, "usage: %s\n\n%s\n", s->usage, s->summary);
    if (s->n_opts) fprintf(f, "\noptions:\n");
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt *o = &s->opts[i];
        char left[64];
        if (o->type == CLI_FLAG)
            snprintf(left, sizeof left, "%s", o->name);
        else if (o->type == CLI_CHOICE)
            snprintf(left, sizeof left, "%s %s", o->name, o->choices);
        else
            snprintf(left, sizeof left, "%s %s", o->name, o->metavar ? o->metavar : "V");
        fprintf(f, "  %-26s %s\n", left, o->help);
    }
    fprintf(f, "  %-26s %s\n", "--help", "show this help and exit");
}

void cli_fail(const cli_spec *s, const char *hint, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char h[256];
    if (!hint) {
        snprintf(h, sizeof h, "run 'prunelab %s --help' for the options", s->cmd);
        hint = h;
    }
    pl_die(hint, "%s: %s", s->cmd, msg);
}

static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

static cli_opt *find_opt(cli_spec *s, const char *name, size_t len)
{
    for (int i = 0; i < s->n_opts; i++)
        if (strlen(s->opts[i].name) == len && strncmp(s->opts[i].name, name, len) == 0) return &s->opts[i];
    return NULL;
}

static void unknown_option(cli_spec *s, const char *arg, size_t len)
{
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(len < 100 ? len : 100), arg);
    const char *best = NULL;
    int bestd = 4;
    for (int i = 0; i < s->n_opts; i++) {
        int d = edit_distance(name, s->opts[i].name);
        if (d < bestd) {
            bestd = d;
            best = s->opts[i].name;
        }
    }
    if (best) {
        char hint[256];
        snprintf(hint, sizeof hint, "did you mean %s? run 'prunelab %s --help' for the options", best, s->cmd);
        cli_fail(s, hint, "unknown option %s", name);
    }
    cli_fail(s, NULL, "unknown option %s", name);
}

static void range_fail(cli_spec *s, const cli_opt *o, const char *v)
{
    if (o->type == CLI_FLOAT)
        cli_fail(s, NULL, "%s must be between %g and %g (got %s)", o->name, o->min, o->max, v);
    cli_fail(s, NULL, "%s must be between %.0f and %.0f (got %s)", o->name, o->min, o->max, v);
}

static void set_value(cli_spec *s, cli_opt *o, const char *v)
{
    char *end = NULL;
    int ranged = !(o->min == 0.0 && o->max == 0.0);
    errno = 0;
    switch (o->type) {
    case CLI_STRING:
        if (!*v) cli_fail(s, NULL, "%s needs a non-empty value", o->name);
        *(const char **)o->dst = v;
        break;
    case CLI_INT:
    case CLI_LONG: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno) cli_fail(s, NULL, "%s expects an integer, got '%s'", o->name, v);
        if (ranged && ((double)x < o->min || (double)x > o->max)) range_fail(s, o, v);
        if (o->type == CLI_INT) {
            if (x < -2147483647LL || x > 2147483647LL) cli_fail(s, NULL, "%s: %s is out of range", o->name, v);
            *(int *)o->dst = (int)x;
        } else {
            *(long *)o->dst = (long)x;
        }
        break;
    }
    case CLI_U64: {
        if (*v == '-') cli_fail(s, NULL, "%s expects a non-negative integer, got '%s'", o->name, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno) cli_fail(s, NULL, "%s expects a non-negative integer, got '%s'", o->name, v);
        *(uint64_t *)o->dst = (uint64_t)x;
        break;
    }
    case CLI_FLOAT: {
        float x = strtof(v, &end);
        if (!*v || *end || errno || !isfinite(x)) cli_fail(s, NULL, "%s expects a number, got '%s'", o->name, v);
        if (ranged && ((double)x < o->min || (double)x > o->max)) range_fail(s, o, v);
        *(float *)o->dst = x;
        break;
    }
    case CLI_CHOICE: {
        const char *c = o->choices;
        size_t vl = strlen(v);
        for (int idx = 0; c && *c; idx++) {
            const char *bar = strchr(c, '|');
            size_t cl = bar ? (size_t)(bar - c) : strlen(c);
            if (cl == vl && strncmp(c, v, vl) == 0) {
                *(int *)o->dst = idx;
                return;
            }
            c = bar ? bar + 1 : NULL;
        }
        cli_fail(s, NULL, "%s must be one of %s (got '%s')", o->name, o->choices, v);
    }
    case CLI_FLAG:
    case CLI_TYPE_COUNT:
        break;
    }
}

int cli_parse(cli_spec *s, int argc, char **argv, const char **pos)
{
    int npos = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            print_usage(s, stdout);
            exit(0);
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (!only_pos && a[0] == '-' && a[1] != '\0') {
            const char *eq = strchr(a, '=');
            size_t len = eq ? (size_t)(eq - a) : strlen(a);
            cli_opt *o = find_opt(s, a, len);
            if (!o) unknown_option(s, a, len);
            if (o->seen) cli_fail(s, NULL, "%s given twice", o->name);
            o->seen = 1;
            if (o->type == CLI_FLAG) {
                if (eq) cli_fail(s, NULL, "%s takes no value", o->name);
                *(int *)o->dst = 1;
                continue;
            }
            const char *v;
            if (eq) {
                v = eq + 1;
            } else {
                if (i + 1 >= argc) cli_fail(s, NULL, "%s needs a value (%s)", o->name, o->metavar ? o->metavar : "V");
                v = argv[++i];
            }
            set_value(s, o, v);
            continue;
        }
        if (npos >= s->max_pos) {
            if (s->max_pos == 0) cli_fail(s, NULL, "unexpected argument '%s'", a);
            cli_fail(s, NULL, "too many arguments ('%s')", a);
        }
        pos[npos++] = a;
    }
    if (npos < s->min_pos) cli_fail(s, NULL, "missing %s", s->pos_name ? s->pos_name : "argument");
    return npos;
}

int cli_given(const cli_spec *s, const char *name)
{
    for (int i = 0; i < s->n_opts; i++)
        if (strcmp(s->opts[i].name, name) == 0) return s->opts[i].seen;
    return 0;
}

void cli_require(const cli_spec *s, const char *name)
{
    if (!cli_given(s, name)) cli_fail(s, NULL, "%s is required (usage: %s)", name, s->usage);
}

void cli_set_threads(int n)
{
    if (n > 0)
        blas_set_threads(n);
    else
        n = blas_threads();
    ops_set_threads(n > 0 ? n : 1);
}

void cli_load_model(const cli_spec *s, model *m, const char *path, const char *dataset_hint)
{
    char err[PL_ERRLEN];
    if (model_load(m, path, dataset_hint, err, sizeof err) != 0)
        cli_fail(s, "check the path; 'prunelab inspect FILE' validates a checkpoint", "cannot load model %s",
                 err); /* model_load's message starts with the path */
}

void cli_load_prunable(const cli_spec *s, model *m, const char *path, const char *dataset_hint,
                       const char *masks_path)
{
    char err[PL_ERRLEN];
    cli_load_model(s, m, path, dataset_hint);
    if (!prune_is_mamba_model(m))
        cli_fail(s, NULL, "%s is not a Mamba model (patch-Mamba classifier or MambaForCausalLM) with the expected "
                 "tensor names and shapes", path);
    if (masks_path && prune_mask_load(m, masks_path, err, sizeof err) != 0)
        cli_fail(s, "the mask must come from the same checkpoint (prunelab prune --masks-out)", "%s", err);
}

char *cli_read_spec(const cli_spec *s, const char *path)
{
    char err[PL_ERRLEN];
    size_t len;
    char *text = (char *)pl_read_file(path, &len, err, sizeof err);
    if (!text) cli_fail(s, NULL, "cannot read spec %s: %s", path, err);
    return text;
}

void cli_verify_blas(const cli_spec *s)
{
    char err[PL_ERRLEN];
    if (blas_verify(err, sizeof err) != 0) cli_fail(s, "set OPENBLAS_CORETYPE=Prescott", "BLAS check failed: %s", err);
}

void cli_load_data(const cli_spec *s, dataset *ds, const char *name, const char *dir, const char *split, int seq_len,
                   long max_tokens)
{
    char err[PL_ERRLEN];
    int rc = tokens_is_name(name) ? dataset_load_tokens(ds, name, split, seq_len > 0 ? seq_len : TOKENS_DEFAULT_SEQ_LEN,
                                                        max_tokens, err, sizeof err)
                                  : dataset_load(ds, name, dir, split, err, sizeof err);
    if (rc != 0)
        cli_fail(s,
                 "datasets: fashion-mnist, mnist, cifar10, cifar100, synthetic[:n=..,classes=..,c=..,h=..,w=..]; "
                 "token datasets (causal LMs): tokens:DIR, text:FILE, synthetic-lm[:n=..,vocab=..,seed=..] with "
                 "--seq-len T; --data-dir DIR or $PRUNELAB_DATASETS point at the files",
                 "cannot load dataset %s (%s split): %s", name, split, err);
}

void cli_load_dataset(const cli_spec *s, dataset *ds, const char *name, const char *dir, const char *split)
{
    cli_load_data(s, ds, name, dir, split, 0, 0);
}

void cli_check_data(const cli_spec *s, const model *m, const dataset *ds)
{
    char err[PL_ERRLEN];
    if (train_check_compat(m, ds, err, sizeof err) != 0) cli_fail(s, NULL, "%s", err);
}

void cli_latency_into(const cli_spec *s, json_t *rep, const model *m0, const model *m, const dataset *ds, int reps)
{
    char err[PL_ERRLEN];
    measure_latency_opts lo = MEASURE_LATENCY_DEFAULT;
    if (reps > 0) lo.min_reps = lo.max_reps = reps;
    if (measure_latency_into(rep, m0, m, ds, &lo, NULL, err, sizeof err) != 0)
        cli_fail(s, NULL, "measuring latency: %s", err);
}
