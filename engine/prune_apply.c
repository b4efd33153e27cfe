/* prune_apply.c — applying a whole pruning spec to a model (prune_apply_spec).
 *
 * Order (chosen so that a spec gives the same logits whether its structured part is masked or
 * shrunk, and so that one calibration pass serves every entry):
 *   1. calibration: collected once, on the model as given, when any entry's criterion needs it
 *      (activation, taylor, wanda); every entry is scored against these statistics;
 *   2. unstructured entries, in spec order, on the model as given (prune_unstructured): the
 *      exact counts refer to the component's weights at full shape;
 *   3. structured entries: every entry is scored on the model after step 2 and contributes to
 *      ONE prune_selection (per layer, the lowest round(rate * units) units removed, ties to the
 *      lower index; conv1d taps are removed oldest first whatever the criterion; the layer
 *      component removes round(rate * selected blocks) blocks, lowest scores first, across the
 *      selected blocks). gate and in_proj both select d_inner channels: a channel survives only
 *      if both keep it. The selection is applied as a mask (apply mask) or by prune_shrink
 *      (apply shrink: *m is replaced by the smaller model). prune_shrink gathers the mask with
 *      the weights, so step 2's masks survive on the kept weights.
 * A removal that would leave a layer without any d_inner channel, state, dt rank or conv tap,
 * or the model without any block, keeps one unit (the report says "clamped"); removing every
 * MLP neuron or out_proj row is allowed (the MLP disappears / the mixer outputs zero).
 * Layer indices in the spec refer to the model as given.
 * Ownership: the caller owns m (replaced in place on shrink, the old model freed here) and the
 * report text (malloc'd). On error m may have been partly pruned (masks of earlier entries). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune.h"
#include "util.h"


static size_t slice_zeros(const model *m, prune_component c, int layer, size_t *count)
{
    prune_slice s[PRUNE_MAX_SLICES];
    int ns = prune_component_slices(m, c, layer, s);
    size_t z = 0;
    *count = 0;
    for (int k = 0; k < ns; k++) {
        const float *p = m->params + m->info[s[k].tensor].offset + s[k].start;
        for (size_t i = 0; i < s[k].count; i++) z += p[i] == 0.0f;
        *count += s[k].count;
    }
    return z;
}

static json_t *entry_header(const prune_entry *e)
{
    static const char *const gran[PG_COUNT] = {"unstructured", "structured"};
    static const char *const scope[PS_COUNT] = {"layer", "global"};
    static const char *const apply[PA_COUNT] = {"shrink", "mask"};
    json_t *o = json_object();
    json_object_set_new(o, "component", json_string(prune_component_name(e->component)));
    json_object_set_new(o, "alias", json_string(prune_component_alias(e->component)));
    json_object_set_new(o, "granularity", json_string(gran[e->granularity]));
    json_object_set_new(o, "rate", json_real(round((double)e->rate * 1e6) / 1e6)); /* 0.7f prints as 0.7 */
    json_object_set_new(o, "criterion", json_string(prune_criterion_name(e->criterion)));
    if (e->granularity == PG_UNSTRUCTURED)
        json_object_set_new(o, "scope", json_string(scope[e->scope]));
    else
        json_object_set_new(o, "apply", json_string(apply[e->apply]));
    return o;
}

/* Step 2 for one entry; appends its report object to rep. */
static int apply_unstructured(model *m, const prune_entry *e, const prune_calib *calib, uint64_t seed, json_t *rep,
                              char *err, size_t errlen)
{
    int layers[MODEL_MAX_LAYERS];
    int nl = prune_entry_layers(m, e, layers);
    size_t before[MODEL_MAX_LAYERS];
    for (int i = 0; i < nl; i++) {
        size_t n;
        before[i] = slice_zeros(m, e->component, layers[i], &n);
    }
    long removed = prune_unstructured(m, e, calib, seed, err, errlen);
    if (removed < 0) return -1;
    json_t *o = entry_header(e);
    json_t *per = json_array();
    size_t tw = 0, tz = 0;
    for (int i = 0; i < nl; i++) {
        size_t n, z = slice_zeros(m, e->component, layers[i], &n);
        if (n == 0) continue;
        json_t *l = json_object();
        json_object_set_new(l, "layer", json_integer(layers[i]));
        json_object_set_new(l, "weights", json_integer((json_int_t)n));
        json_object_set_new(l, "zeros_before", json_integer((json_int_t)before[i]));
        json_object_set_new(l, "zeros_after", json_integer((json_int_t)z));
        json_array_append_new(per, l);
        tw += n;
        tz += z;
    }
    json_object_set_new(o, "weights", json_integer((json_int_t)tw));
    json_object_set_new(o, "removed", json_integer(removed));
    json_object_set_new(o, "zeros", json_integer((json_int_t)tz));
    json_object_set_new(o, "sparsity", json_real(tw ? (double)tz / (double)tw : 0.0));
    json_object_set_new(o, "layers", per);
    json_array_append_new(rep, o);
    return 0;
}


/* Step 3 for one entry: adds its removals to sel (prune_select_structured, fresh); appends its
 * report to rep. */
static int select_structured(const model *m, const prune_entry *e, const prune_calib *calib, uint64_t seed,
                             prune_selection *sel, json_t *rep, char *err, size_t errlen)
{
    prune_select_report sr;
    if (prune_select_structured(m, e, e->rate, 0, calib, seed, sel, &sr, err, errlen) != 0) return -1;
    json_t *o = entry_header(e);
    json_object_set_new(o, "unit", json_string(prune_component_unit(e->component)));
    json_t *per = json_array();
    for (int i = 0; i < sr.n; i++) {
        const prune_select_layer *sl = &sr.layers[i];
        json_t *l = json_object();
        json_object_set_new(l, "layer", json_integer(sl->layer));
        if (e->component == PC_LAYER) {
            json_object_set_new(l, "score", json_real(isfinite(sl->score) ? sl->score : 0.0));
            json_object_set_new(l, "removed", json_boolean(sl->removed));
        } else {
            json_object_set_new(l, "units", json_integer(sl->units));
            json_object_set_new(l, "removed", json_integer(sl->removed));
            json_object_set_new(l, "kept", json_integer(sl->units - sl->removed));
        }
        json_array_append_new(per, l);
    }
    json_object_set_new(o, "units", json_integer(sr.units));
    json_object_set_new(o, "removed", json_integer(sr.removed));
    json_object_set_new(o, "clamped", json_boolean(sr.clamped));
    json_object_set_new(o, "layers", per);
    json_array_append_new(rep, o);
    return 0;
}

int prune_apply_spec_report(model *m, const prune_spec *spec, const dataset *ds, char **report, char *err,
                            size_t errlen)
{
    if (report) *report = NULL;
    for (int i = 0; i < spec->n; i++) {
        const prune_entry *e = &spec->entries[i];
        for (int j = 0; j < e->n_layers; j++)
            if (e->layers[j] < 0 || e->layers[j] >= m->cfg.n_layers)
                return pl_err(err, errlen, "prune[%d].layers[%d]: layer %d is out of range (the model has %d layers)",
                              i, j, e->layers[j], m->cfg.n_layers);
    }
    prune_calib *calib = NULL;
    int rc = -1, any_structured = 0, shrink = 0;
    for (int i = 0; i < spec->n; i++) {
        if (spec->entries[i].granularity == PG_STRUCTURED) {
            any_structured = 1;
            shrink |= spec->entries[i].apply == PA_SHRINK;
        }
        if (!calib && prune_criterion_needs_calib(spec->entries[i].criterion) &&
            !(spec->entries[i].granularity == PG_STRUCTURED && spec->entries[i].component == PC_CONV1D)) {
            if (!ds)
                return pl_err(err, errlen, "prune[%d].criterion: %s needs calibration data (give a dataset)", i,
                              prune_criterion_name(spec->entries[i].criterion));
            char e2[PL_ERRLEN];
            calib = prune_calib_collect(m, ds, spec->calib_samples, spec->seed, e2, sizeof e2);
            if (!calib) return pl_err(err, errlen, "calibration on %s: %s", ds->name, e2);
        }
    }
    json_t *rep = json_array();
    prune_selection sel;
    prune_selection_init(&sel);

    for (int i = 0; i < spec->n; i++) {
        const prune_entry *e = &spec->entries[i];
        if (e->granularity != PG_UNSTRUCTURED) continue;
        char e2[PL_ERRLEN];
        if (apply_unstructured(m, e, calib, spec->seed, rep, e2, sizeof e2) != 0) {
            pl_err(err, errlen, "prune[%d] (%s): %s", i, prune_component_name(e->component), e2);
            goto done;
        }
        json_object_set_new(json_array_get(rep, json_array_size(rep) - 1), "entry", json_integer(i));
    }
    for (int i = 0; i < spec->n; i++) {
        const prune_entry *e = &spec->entries[i];
        if (e->granularity != PG_STRUCTURED) continue;
        char e2[PL_ERRLEN];
        if (select_structured(m, e, calib, spec->seed, &sel, rep, e2, sizeof e2) != 0) {
            pl_err(err, errlen, "prune[%d] (%s): %s", i, prune_component_name(e->component), e2);
            goto done;
        }
        json_object_set_new(json_array_get(rep, json_array_size(rep) - 1), "entry", json_integer(i));
    }
    if (any_structured) {
        if (shrink) {
            model dst;
            char e2[PL_ERRLEN];
            if (prune_shrink(m, &sel, &dst, e2, sizeof e2) != 0) {
                model_free(&dst);
                pl_err(err, errlen, "shrinking: %s", e2);
                goto done;
            }
            model_free(m);
            *m = dst;
        } else {
            prune_selection_to_mask(m, &sel);
        }
    }
    if (report) *report = json_dumps(rep, JSON_COMPACT | JSON_REAL_PRECISION(8));
    rc = 0;
done:
    json_decref(rep);
    prune_selection_free(&sel);
    prune_calib_free(calib);
    return rc;
}

int prune_apply_spec(model *m, const prune_spec *spec, const dataset *ds, char *err, size_t errlen)
{
    return prune_apply_spec_report(m, spec, ds, NULL, err, errlen);
}

/* The realised twin's spec: spec with every structured entry shrunk (entries copied). */
static prune_spec shrunk_spec(const prune_spec *spec)
{
    prune_spec tw = *spec;
    tw.entries = xcalloc((size_t)(spec->n ? spec->n : 1), sizeof *tw.entries);
    for (int i = 0; i < spec->n; i++) {
        tw.entries[i] = spec->entries[i];
        if (tw.entries[i].granularity == PG_STRUCTURED) tw.entries[i].apply = PA_SHRINK;
    }
    return tw;
}

int prune_run(const model *in, const prune_spec *spec, const dataset *ds, model *out, model *twin, char **report,
              char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    memset(twin, 0, sizeof *twin);
    int masked = 0;
    for (int i = 0; i < spec->n; i++)
        masked |= spec->entries[i].granularity == PG_STRUCTURED && spec->entries[i].apply == PA_MASK;
    char e2[PL_ERRLEN];
    if (model_copy(out, in, e2, sizeof e2) != 0) {
        pl_err(err, errlen, "copying the model: %s", e2);
        goto fail;
    }
    if (prune_apply_spec_report(out, spec, ds, report, e2, sizeof e2) != 0) {
        pl_err(err, errlen, "pruning: %s", e2);
        goto fail;
    }
    if (masked) { /* the same selection (same calibration seed -> same units), shrunk */
        prune_spec tw = shrunk_spec(spec);
        int rc = model_copy(twin, in, e2, sizeof e2) != 0 || prune_apply_spec(twin, &tw, ds, e2, sizeof e2) != 0;
        prune_spec_free(&tw);
        if (rc) {
            pl_err(err, errlen, "shrinking the realised model: %s", e2);
            goto fail;
        }
    }
    return 0;
fail:
    model_free(out);
    model_free(twin);
    memset(out, 0, sizeof *out);
    memset(twin, 0, sizeof *twin);
    if (report) {
        free(*report);
        *report = NULL;
    }
    return -1;
}
