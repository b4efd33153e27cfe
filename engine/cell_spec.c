/* cell_spec.c — a cell spec from its text (cell.h): the shared parser of spec/ (spec_cell_parse)
 * does keys, types, names and ranges; this file adds what only the engine can check, the files
 * the spec names (model readable, out writable and not the model) and the dataset name (data.h).
 * Each refusal is "bad_spec" with a message that starts with the field. Checks that need the
 * model (spec_cell_check) run in cell.c once the model is loaded.
 * Ownership: a parsed cell_spec owns its strings (cell_spec_free). */
#include "cell.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell_internal.h"
#include "data.h"
#include "spec.h"
#include "tokens.h"
#include "util.h"

static const char *const error_codes[CELL_ERR_COUNT] = {"ok", "bad_spec", "bad_model", "data", "unavailable", "runtime"};
_Static_assert(sizeof error_codes / sizeof error_codes[0] == CELL_ERR_COUNT, "error code table");

const char *cell_error_code(cell_error e) { return (unsigned)e < CELL_ERR_COUNT ? error_codes[e] : "runtime"; }

int cell_error_exit(cell_error e)
{
    if (e == CELL_OK) return 0;
    return e == CELL_ERR_BAD_SPEC || e == CELL_ERR_BAD_MODEL ? 2 : 1;
}

cell_error cell_bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return CELL_ERR_BAD_SPEC;
}

static cell_error check_file(const char *field, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) return cell_bad(err, errlen, "%s: cannot use %s: %s", field, path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return cell_bad(err, errlen, "%s: %s is not a regular file", field, path);
    return CELL_OK;
}

static cell_error check_out(const cell_spec *s, char *err, size_t errlen)
{
    struct stat st;
    if (stat(s->out, &st) == 0 && S_ISDIR(st.st_mode))
        return cell_bad(err, errlen, "out: %s is a directory (give a file path)", s->out);
    if (s->model) {
        struct stat sm;
        if (stat(s->model, &sm) == 0 && stat(s->out, &st) == 0 && sm.st_dev == st.st_dev && sm.st_ino == st.st_ino)
            return cell_bad(err, errlen, "out: %s is the input model (write the result elsewhere)", s->out);
    }
    char *dir = xstrdup(s->out);
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash) {
        slash[slash == dir ? 1 : 0] = '\0';
        d = dir;
    }
    cell_error e = CELL_OK;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode))
        e = cell_bad(err, errlen, "out: directory %s does not exist", d);
    else if (access(d, W_OK) != 0)
        e = cell_bad(err, errlen, "out: directory %s is not writable", d);
    free(dir);
    return e;
}

cell_error cell_spec_parse(const char *json_text, cell_spec *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!json_text) return cell_bad(err, errlen, "spec: no input");
    json_error_t je;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je);
    if (!root) return cell_bad(err, errlen, "spec: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    spec_error se;
    int rc = spec_cell_parse(root, s, &se);
    json_decref(root);
    if (rc != 0) return cell_bad(err, errlen, "%s", se.message);
    cell_error e = CELL_OK;
    if (s->model) e = check_file("model", s->model, err, errlen);
    char e2[PL_ERRLEN];
    int tk = e == CELL_OK ? tokens_name_info(s->dataset, NULL, e2, sizeof e2) : 0;
    if (tk < 0) e = cell_bad(err, errlen, "dataset: %s", e2);
    if (e == CELL_OK && tk == 0 && dataset_shape(s->dataset, NULL, NULL, NULL, NULL) != 0)
        e = cell_bad(err, errlen,
                     "dataset: unknown dataset \"%s\" (fashion-mnist, mnist, cifar10, cifar100, "
                     "synthetic[:n=..,classes=..,c=..,h=..,w=..]; token datasets: tokens:DIR, text:FILE, "
                     "synthetic-lm[:n=..,vocab=..,seed=..])", s->dataset);
    if (e == CELL_OK && s->out) e = check_out(s, err, errlen);
    if (e != CELL_OK) cell_spec_free(s);
    return e;
}
