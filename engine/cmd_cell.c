/* cmd_cell.c — `prunelab cell`: run one experiment cell (cell.h, DESIGN.md section 6).
 *
 * Reads the cell spec (one JSON object) from stdin, writes JSON lines (progress, then one result
 * or error event) to stdout and human diagnostics to stderr. The BLAS kernel is checked before
 * stdin is read, because a failed check re-executes the process (and a consumed stdin would be
 * lost). Exit status: 0 after a result, 2 for a bad spec or model, 1 for other failures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "cell.h"
#include "cli.h"
#include "util.h"

/* Read all of f, at most max bytes. Returns a malloc'd NUL-terminated text, or NULL when the
 * input is larger than max or unreadable (*too_big says which). */
static char *read_all(FILE *f, size_t max, int *too_big)
{
    size_t cap = 65536, len = 0;
    char *buf = xmalloc(cap + 1);
    *too_big = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= max) {
                *too_big = 1;
                free(buf);
                return NULL;
            }
            cap = cap * 2 < max ? cap * 2 : max;
            buf = xrealloc(buf, cap + 1);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

int cmd_cell(int argc, char **argv)
{
    cli_spec s = {
        .cmd = "cell",
        .usage = "prunelab cell < SPEC.json",
        .summary = "Run one experiment cell. stdin: one JSON object {\"recipe\": train|ablation|sensitivity|joint|\n"
                   "rsst|lite, \"model\", \"dataset\", \"seed\", \"threads\", \"out\", \"baseline\", \"eval\",\n"
                   "\"finetune\", \"calibration\", recipe fields} (engine/cell.h lists them). stdout: JSON lines,\n"
                   "{\"event\":\"progress\",\"phase\",\"fraction\",\"overall\",...} at least every 2 s, then one\n"
                   "{\"event\":\"result\",\"metrics\":{...}} (exit 0) or {\"event\":\"error\",\"code\",\"message\"}\n"
                   "(exit 2 for bad_spec / bad_model, 1 otherwise).",
        .opts = NULL,
        .n_opts = 0,
    };
    cli_parse(&s, argc, argv, NULL);
    char err[PL_ERRLEN];
    if (blas_verify(err, sizeof err) != 0) {
        char msg[PL_ERRLEN + 64];
        snprintf(msg, sizeof msg, "BLAS check failed: %s (set OPENBLAS_CORETYPE=Prescott)", err);
        fprintf(stderr, "prunelab cell: %s\n", msg);
        return cell_emit_error(stdout, CELL_ERR_RUNTIME, msg);
    }
    int too_big = 0;
    char *text = read_all(stdin, CELL_MAX_SPEC_BYTES, &too_big);
    if (!text) {
        char msg[128];
        if (too_big)
            snprintf(msg, sizeof msg, "spec: larger than %d bytes", CELL_MAX_SPEC_BYTES);
        else
            snprintf(msg, sizeof msg, "spec: cannot read stdin");
        fprintf(stderr, "prunelab cell: %s\n", msg);
        return cell_emit_error(stdout, CELL_ERR_BAD_SPEC, msg);
    }
    int rc = cell_run_text(text, stdout);
    free(text);
    return rc;
}
