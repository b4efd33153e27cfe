/* spec_json.h — the strict-JSON field readers shared by every spec parser (prune, rsst, lite,
 * cell): unknown-key detection and range-checked numbers whose messages name the field. */
#ifndef PL_SPEC_JSON_H
#define PL_SPEC_JSON_H

#include <jansson.h>
#include <stddef.h>

/* The first key of obj that is not in the NULL-terminated allowed list, or NULL when every key
 * is allowed. On a hit, list (may be NULL) receives the allowed names joined by ", ". */
const char *spec_json_unknown_key(json_t *obj, const char *const *allowed, char *list, size_t listlen);

/* Integer field obj[key] in [lo, hi]; absent leaves *out. Returns 0, or -1 with err
 * "FIELD: must be an integer in [lo, hi]" / "FIELD: X is outside [lo, hi]". */
int spec_json_int(json_t *obj, const char *key, const char *field, long long lo, long long hi, long long *out,
                  char *err, size_t errlen);

/* Number field in [lo, hi], or (lo, hi] when lo_open; NaN never passes. Absent leaves *out.
 * Returns 0, or -1 with err "FIELD: must be a number" / "FIELD: X is outside [lo, hi]". */
int spec_json_num(json_t *obj, const char *key, const char *field, double lo, int lo_open, double hi, double *out,
                  char *err, size_t errlen);

#endif
