/* spec_text.c — the engine's entry to spec/: spec text plus (optionally) the model it applies
 * to, parsed by the shared parsers of spec/spec.h. Messages are spec/'s, field first; invalid
 * JSON (and duplicate keys) is refused here, with its position. */
#include <jansson.h>
#include <stdio.h>

#include "lite.h"
#include "model.h"
#include "prune.h"
#include "rsst.h"
#include "spec.h"
#include "util.h"

/* The JSON object of text, or NULL with err. */
static json_t *load(const char *text, char *err, size_t errlen)
{
    if (!text) {
        pl_err(err, errlen, "spec: no text");
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root) pl_err(err, errlen, "spec: invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    return root;
}

/* The model's shape, or NULL when there is no model. */
static const spec_shape *shape_of(const model *m, spec_shape *buf)
{
    if (!m) return NULL;
    model_shape(m, buf);
    return buf;
}

static int done(json_t *root, int rc, const spec_error *e, char *err, size_t errlen)
{
    json_decref(root);
    if (rc != 0) pl_err(err, errlen, "%s", e->message);
    return rc;
}

int prune_spec_parse(const char *json_text, const model *m, prune_spec *spec, char *err, size_t errlen)
{
    spec_shape sh;
    spec_error e;
    json_t *root = load(json_text, err, errlen);
    if (!root) {
        *spec = (prune_spec){0};
        return -1;
    }
    return done(root, spec_prune_parse(root, "", shape_of(m, &sh), spec, &e), &e, err, errlen);
}

int rsst_spec_parse(const char *json_text, const model *m, rsst_spec *s, char *err, size_t errlen)
{
    spec_shape sh;
    spec_error e;
    json_t *root = load(json_text, err, errlen);
    if (!root) {
        *s = (rsst_spec){0};
        return -1;
    }
    return done(root, spec_rsst_parse(root, "", shape_of(m, &sh), s, &e), &e, err, errlen);
}

int lite_spec_parse(const char *json_text, lite_spec *spec, char *err, size_t errlen)
{
    spec_error e;
    lite_spec_init(spec);
    json_t *root = load(json_text, err, errlen);
    if (!root) return -1;
    return done(root, spec_lite_parse(root, "", spec, &e), &e, err, errlen);
}

int lite_target_check(const model *src, const lite_target *t, char *err, size_t errlen)
{
    spec_shape sh;
    spec_error e;
    model_shape(src, &sh);
    if (spec_lite_check(t, "", &sh, &e) == 0) return 0;
    return pl_err(err, errlen, "%s", e.message);
}
