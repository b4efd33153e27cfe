/* spec_json.c — strict JSON field readers for spec parsers (see spec_json.h). Messages start
 * with the field so the user sees exactly which part of the spec is wrong. */
#include "spec_json.h"

#include <string.h>

#include "util.h"

const char *spec_json_unknown_key(json_t *obj, const char *const *allowed, char *list, size_t listlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) ok = strcmp(key, allowed[i]) == 0;
        if (ok) continue;
        if (list && listlen) {
            list[0] = '\0';
            for (int i = 0; allowed[i]; i++) {
                strncat(list, i ? ", " : "", listlen - strlen(list) - 1);
                strncat(list, allowed[i], listlen - strlen(list) - 1);
            }
        }
        return key;
    }
    return NULL;
}

int spec_json_int(json_t *obj, const char *key, const char *field, long long lo, long long hi, long long *out,
                  char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_integer(v)) return pl_err(err, errlen, "%s: must be an integer in [%lld, %lld]", field, lo, hi);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return pl_err(err, errlen, "%s: %lld is outside [%lld, %lld]", field, x, lo, hi);
    *out = x;
    return 0;
}

int spec_json_num(json_t *obj, const char *key, const char *field, double lo, int lo_open, double hi, double *out,
                  char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_number(v)) return pl_err(err, errlen, "%s: must be a number", field);
    double x = json_number_value(v);
    int ok = lo_open ? x > lo : x >= lo;
    if (!(ok && x <= hi)) /* also catches NaN */
        return pl_err(err, errlen, "%s: %g is outside %s%g, %g]", field, x, lo_open ? "(" : "[", lo, hi);
    *out = x;
    return 0;
}
