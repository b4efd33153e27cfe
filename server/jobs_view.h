/* jobs_view.h — how prunelabd shows jobs, cells and results: JSON objects and the results CSV.
 *
 * Pure functions of store records (no store access, no HTTP): every function returns a new
 * jansson reference or a malloc'd text that the caller frees, or NULL when memory runs out.
 * Non-finite numbers are shown as null; stored JSON text (specs, results, baselines) is shown
 * parsed, or as a string when it does not parse, or null when absent. */
#ifndef PL_SERVER_JOBS_VIEW_H
#define PL_SERVER_JOBS_VIEW_H

#include <jansson.h>
#include <stddef.h>

#include "store.h"

/* Stored JSON text parsed, a string when it does not parse, null for NULL. */
json_t *jobs_view_stored(const char *text);

/* One job: id, owner, type, model, priority, state, cells, counts (per state), progress,
 * created_ms, started_ms, finished_ms, error, baseline, and spec when with_spec. */
json_t *jobs_view_job(const store_job *j, int with_spec);

/* One cell: id, idx, state, attempts, max_attempts, progress, phase, spec, result, error
 * ({code, message} or null), stderr_tail, started_ms, finished_ms. */
json_t *jobs_view_cell(const store_cell *c);

/* {"job": id, "cells": [cell...]}. */
json_t *jobs_view_cells(int64_t job_id, const store_cell *cells, size_t n);

/* One flat results row: idx, cell_id, state, the grid coordinates of the cell spec (component,
 * components (the first one), layer, rate, seed, config as "a=0.3;b=0.5"), the metrics
 * (accuracy ... wall_s; sparsity the overall fraction when the engine reports an object), the
 * cell's task ("image_classifier" | "causal_lm") and headline metric ("accuracy" | "perplexity"),
 * the causal LM metrics (perplexity, baseline_perplexity, delta_perplexity, bits_per_token,
 * bits_per_byte, tokens_per_s) and error (the cell's error code). Absent values are null. */
json_t *jobs_view_result_row(const store_cell *c);

/* The headline metric of cells: the "metric" of the first result that names one ("perplexity"
 * for causal LM cells), else "accuracy". Written into buf (len bytes); returns buf. */
const char *jobs_view_headline_metric(const store_cell *cells, size_t n, char *buf, size_t len);

/* {"job", "type", "metric" (jobs_view_headline_metric), "baseline", "rows": [row...]} for job j. */
json_t *jobs_view_results(const store_job *j, const store_cell *cells, size_t n);

/* The rows of jobs_view_results as CSV (RFC 4180: a header line, one line per cell, fields with
 * , " CR or LF quoted, reals as %.10g, null as empty). Returns the text (caller frees) with
 * *len, or NULL when memory runs out. */
char *jobs_view_results_csv(const store_cell *cells, size_t n, size_t *len);

/* A page of GET /api/v1/jobs/{id}/cells: {"job": id, "cells": [cell...], "next_page_token": next
 * or null} (next "" for the last page). */
json_t *jobs_view_cells_page(int64_t job_id, const store_cell *cells, size_t n, const char *next);

/* A page of results.json: jobs_view_results of the page's cells with "next_page_token" (next ""
 * for the last page). */
json_t *jobs_view_results_page(const store_job *j, const store_cell *cells, size_t n, const char *next);

/* The same two pages as text, exactly as http_reply_json would write them (compact JSON and
 * "\n"), built one item at a time so only one cell's jansson tree is alive at once. Returns the
 * text (caller frees) with *len, or NULL when memory runs out. */
char *jobs_view_cells_page_text(int64_t job_id, const store_cell *cells, size_t n, const char *next, size_t *len);
char *jobs_view_results_page_text(const store_job *j, const store_cell *cells, size_t n, const char *next,
                                  size_t *len);

/* Part of the results CSV: the header line when with_header, then one line per cell, exactly as
 * jobs_view_results_csv writes them (so the parts of consecutive pages concatenate to it).
 * Returns the text (caller frees) with *len, or NULL when memory runs out. */
char *jobs_view_results_csv_part(const store_cell *cells, size_t n, int with_header, size_t *len);

/* A GET /api/v1/jobs page: {"jobs": [job without spec...], "next_page_token": next or null},
 * compact, ending in "\n" (as http_reply_json writes it). next is "" for the last page. Returns
 * 0 with *out (caller frees) and *len, or -1 when memory runs out. */
int jobs_view_page(const store_job *jobs, size_t n, const char *next, char **out, size_t *len);

#endif
