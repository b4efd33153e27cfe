/* jobs_view.c — JSON and CSV views of jobs, cells and results (see jobs_view.h). Everything is
 * built with jansson from the store's records; nothing is kept between calls. */
#include "jobs_view.h"

#include "http.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *jobs_view_stored(const char *text)
{
    if (!text) return json_null();
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    return v ? v : json_string(text);
}

static json_t *num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }
static json_t *ms_or_null(int64_t ms) { return ms ? json_integer(ms) : json_null(); }
static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

json_t *jobs_view_job(const store_job *j, int with_spec)
{
    json_t *counts = json_object();
    for (int s = 0; s < STORE_STATE_COUNT; s++)
        json_object_set_new(counts, store_state_name((store_state)s), json_integer(j->counts[s]));
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(j->id));
    json_object_set_new(o, "owner", json_string(j->owner ? j->owner : ""));
    json_object_set_new(o, "type", json_string(store_job_type_name(j->type)));
    json_object_set_new(o, "model", str_or_null(j->model));
    json_object_set_new(o, "priority", json_integer(j->priority));
    json_object_set_new(o, "state", json_string(store_state_name(j->state)));
    json_object_set_new(o, "cells", json_integer(j->n_cells));
    json_object_set_new(o, "counts", counts);
    json_object_set_new(o, "progress", num_or_null(j->progress));
    json_object_set_new(o, "created_ms", json_integer(j->created_ms));
    json_object_set_new(o, "started_ms", ms_or_null(j->started_ms));
    json_object_set_new(o, "finished_ms", ms_or_null(j->finished_ms));
    json_object_set_new(o, "error", str_or_null(j->error));
    json_object_set_new(o, "baseline", jobs_view_stored(j->baseline_json));
    if (with_spec) json_object_set_new(o, "spec", jobs_view_stored(j->spec_json));
    return o;
}

json_t *jobs_view_cell(const store_cell *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(c->id));
    json_object_set_new(o, "idx", json_integer(c->idx));
    json_object_set_new(o, "state", json_string(store_state_name(c->state)));
    json_object_set_new(o, "attempts", json_integer(c->attempts));
    json_object_set_new(o, "max_attempts", json_integer(c->max_attempts));
    json_object_set_new(o, "progress", num_or_null(c->progress));
    json_object_set_new(o, "phase", str_or_null(c->phase));
    json_object_set_new(o, "spec", jobs_view_stored(c->spec_json));
    json_object_set_new(o, "result", jobs_view_stored(c->result_json));
    json_object_set_new(o, "error", c->error_code || c->error_message
                                        ? json_pack("{s:s?, s:s?}", "code", c->error_code, "message",
                                                    c->error_message)
                                        : json_null());
    json_object_set_new(o, "stderr_tail", str_or_null(c->stderr_tail));
    json_object_set_new(o, "started_ms", ms_or_null(c->started_ms));
    json_object_set_new(o, "finished_ms", ms_or_null(c->finished_ms));
    return o;
}

json_t *jobs_view_cells(int64_t job_id, const store_cell *cells, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, jobs_view_cell(&cells[i]));
    return json_pack("{s:I, s:o}", "job", (json_int_t)job_id, "cells", arr);
}

/* Columns of the results table: the fixed ones, grid coordinates from the cell spec, metrics
 * (the image ones, then the task and headline metric names and the causal LM ones, appended so
 * the columns before them keep their places), then the error code. */
static const char *const FIXED_COLS[] = {"idx", "cell_id", "state"};
static const char *const COORD_COLS[] = {"component", "components", "layer", "rate", "seed", "config"};
static const char *const METRIC_COLS[] = {
    "accuracy", "loss", "baseline_accuracy", "delta_accuracy", "delta_loss", "sparsity", "params",
    "params_nonzero", "params_baseline", "flops_per_sample", "baseline_flops_per_sample",
    "latency_ms_per_batch", "samples_per_s", "speedup", "wall_s", "task", "metric", "perplexity",
    "baseline_perplexity", "delta_perplexity", "bits_per_token", "bits_per_byte", "tokens_per_s"};
#define N_FIXED (sizeof FIXED_COLS / sizeof FIXED_COLS[0])
#define N_COORD (sizeof COORD_COLS / sizeof COORD_COLS[0])
#define N_METRIC (sizeof METRIC_COLS / sizeof METRIC_COLS[0])

/* A coordinate of the cell spec as a scalar: a {component: rate} config as "a=0.3;b=0.5", the
 * first of a components list, else the value itself (null when absent). */
static json_t *coord_value(json_t *spec, const char *col)
{
    json_t *v = json_object_get(spec, col);
    if (json_is_object(v)) {
        char buf[512] = "";
        size_t used = 0;
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            if (used < sizeof buf)
                used += (size_t)snprintf(buf + used, sizeof buf - used, "%s%s=%g", used ? ";" : "", k,
                                         json_number_value(x));
        }
        return json_string(buf);
    }
    if (strcmp(col, "components") == 0 && json_is_array(v))
        return json_string(json_string_value(json_array_get(v, 0)));
    return v ? json_deep_copy(v) : json_null();
}

/* A metric as a number or null: {"overall": {"sparsity": x}} or {"sparsity": x} objects give x;
 * arrays give null. */
static json_t *metric_value(json_t *metrics, const char *col)
{
    json_t *v = json_object_get(metrics, col);
    if (json_is_object(v)) {
        json_t *o = json_object_get(v, "overall");
        if (json_is_object(o)) o = json_object_get(o, "sparsity");
        if (!o) o = json_object_get(v, "sparsity");
        v = json_is_number(o) ? o : NULL;
    } else if (json_is_array(v)) {
        v = NULL;
    }
    return v ? json_deep_copy(v) : json_null();
}

json_t *jobs_view_result_row(const store_cell *c)
{
    json_t *spec = c->spec_json ? json_loads(c->spec_json, 0, NULL) : NULL;
    json_t *res = c->result_json ? json_loads(c->result_json, 0, NULL) : NULL;
    json_t *row = json_object();
    json_object_set_new(row, "idx", json_integer(c->idx));
    json_object_set_new(row, "cell_id", json_integer(c->id));
    json_object_set_new(row, "state", json_string(store_state_name(c->state)));
    for (size_t i = 0; i < N_COORD; i++) json_object_set_new(row, COORD_COLS[i], coord_value(spec, COORD_COLS[i]));
    json_t *metrics = json_object_get(res, "metrics");
    if (!metrics) metrics = res;
    for (size_t i = 0; i < N_METRIC; i++)
        json_object_set_new(row, METRIC_COLS[i], metric_value(metrics, METRIC_COLS[i]));
    json_object_set_new(row, "error", str_or_null(c->error_code));
    json_decref(spec);
    json_decref(res);
    return row;
}

const char *jobs_view_headline_metric(const store_cell *cells, size_t n, char *buf, size_t len)
{
    snprintf(buf, len, "accuracy");
    for (size_t i = 0; i < n; i++) {
        json_t *res = cells[i].result_json ? json_loads(cells[i].result_json, 0, NULL) : NULL;
        json_t *metrics = json_object_get(res, "metrics");
        const char *m = json_string_value(json_object_get(metrics ? metrics : res, "metric"));
        int found = m && *m && strlen(m) < len;
        if (found) snprintf(buf, len, "%s", m);
        json_decref(res);
        if (found) break;
    }
    return buf;
}

json_t *jobs_view_results(const store_job *j, const store_cell *cells, size_t n)
{
    char metric[64];
    json_t *rows = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(rows, jobs_view_result_row(&cells[i]));
    return json_pack("{s:I, s:s, s:s, s:o, s:o}", "job", (json_int_t)j->id, "type", store_job_type_name(j->type),
                     "metric", jobs_view_headline_metric(cells, n, metric, sizeof metric), "baseline",
                     jobs_view_stored(j->baseline_json), "rows", rows);
}

static json_t *next_or_null(const char *next) { return next && next[0] ? json_string(next) : json_null(); }

json_t *jobs_view_cells_page(int64_t job_id, const store_cell *cells, size_t n, const char *next)
{
    json_t *o = jobs_view_cells(job_id, cells, n);
    if (o) json_object_set_new(o, "next_page_token", next_or_null(next));
    return o;
}

json_t *jobs_view_results_page(const store_job *j, const store_cell *cells, size_t n, const char *next)
{
    json_t *o = jobs_view_results(j, cells, n);
    if (o) json_object_set_new(o, "next_page_token", next_or_null(next));
    return o;
}

/* Append v's compact text to f (steals v). 0, or -1 when memory runs out. */
static int dump_to(FILE *f, json_t *v)
{
    char *t = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    if (!t) return -1;
    fputs(t, f);
    free(t);
    return 0;
}

/* head (an object's text without its closing brace, e.g. {"job":1), then ,"key":[item...],
 * "next_page_token":next} and "\n". item(i) gives item i. */
static char *page_text(char *head, const char *key, json_t *(*item)(const store_cell *c), const store_cell *cells,
                       size_t n, const char *next, size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = head ? open_memstream(&buf, &size) : NULL;
    if (!f) {
        free(head);
        return NULL;
    }
    int bad = 0;
    fprintf(f, "%s,\"%s\":[", head, key);
    free(head);
    for (size_t i = 0; !bad && i < n; i++) {
        if (i) fputc(',', f);
        bad = dump_to(f, item(&cells[i]));
    }
    fputs("],\"next_page_token\":", f);
    if (!bad) bad = dump_to(f, next_or_null(next));
    fputs("}\n", f);
    bad |= ferror(f);
    if (fclose(f) != 0 || bad) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}

/* The compact text of object o without its closing brace (steals o). */
static char *object_head(json_t *o)
{
    char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (t && strlen(t) >= 2) t[strlen(t) - 1] = '\0';
    return t;
}

char *jobs_view_cells_page_text(int64_t job_id, const store_cell *cells, size_t n, const char *next, size_t *len)
{
    return page_text(object_head(json_pack("{s:I}", "job", (json_int_t)job_id)), "cells", jobs_view_cell, cells, n,
                     next, len);
}

char *jobs_view_results_page_text(const store_job *j, const store_cell *cells, size_t n, const char *next,
                                  size_t *len)
{
    char metric[64];
    json_t *o = json_pack("{s:I, s:s, s:s, s:o}", "job", (json_int_t)j->id, "type", store_job_type_name(j->type),
                          "metric", jobs_view_headline_metric(cells, n, metric, sizeof metric), "baseline",
                          jobs_view_stored(j->baseline_json));
    return page_text(object_head(o), "rows", jobs_view_result_row, cells, n, next, len);
}

static void csv_field(FILE *f, const char *s)
{
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    if (quote) fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    if (quote) fputc('"', f);
}

/* A scalar as its CSV text: strings as is, integers, reals as %.10g, booleans; else "". */
static const char *csv_text(json_t *v, char *num, size_t numlen)
{
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_integer(v)) snprintf(num, numlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v)) snprintf(num, numlen, "%.10g", json_real_value(v));
    else if (json_is_boolean(v)) return json_is_true(v) ? "true" : "false";
    else return "";
    return num;
}

char *jobs_view_results_csv(const store_cell *cells, size_t n, size_t *len)
{
    return jobs_view_results_csv_part(cells, n, 1, len);
}

char *jobs_view_results_csv_part(const store_cell *cells, size_t n, int with_header, size_t *len)
{
    const char *cols[N_FIXED + N_COORD + N_METRIC + 1];
    size_t nc = 0;
    for (size_t i = 0; i < N_FIXED; i++) cols[nc++] = FIXED_COLS[i];
    for (size_t i = 0; i < N_COORD; i++) cols[nc++] = COORD_COLS[i];
    for (size_t i = 0; i < N_METRIC; i++) cols[nc++] = METRIC_COLS[i];
    cols[nc++] = "error";
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    for (size_t i = 0; with_header && i < nc; i++) {
        if (i) fputc(',', f);
        csv_field(f, cols[i]);
    }
    if (with_header) fputc('\n', f);
    for (size_t r = 0; r < n; r++) {
        json_t *row = jobs_view_result_row(&cells[r]);
        for (size_t i = 0; i < nc; i++) {
            char num[64];
            if (i) fputc(',', f);
            csv_field(f, csv_text(json_object_get(row, cols[i]), num, sizeof num));
        }
        fputc('\n', f);
        json_decref(row);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}

int jobs_view_page(const store_job *jobs, size_t n, const char *next, char **out, size_t *len)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) json_array_append_new(arr, jobs_view_job(&jobs[i], 0));
    json_t *page = json_pack("{s:o, s:o}", "jobs", arr, "next_page_token", next[0] ? json_string(next) : json_null());
    *out = http_json_text(page, len);
    return *out ? 0 : -1;
}
