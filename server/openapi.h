/* openapi.h — the OpenAPI 3 document of prunelabd's REST API.
 *
 * The document is written by hand in server/openapi.json (request bodies, parameters, responses
 * and error shapes of every route) and compiled into the binary as one string by make
 * (server/openapi_doc.c, generated). openapi_check keeps it honest against the route table. */
#ifndef PL_SERVER_OPENAPI_H
#define PL_SERVER_OPENAPI_H

#include <stddef.h>

#include "http.h"

/* The document text (NUL-terminated JSON) and, if len is not NULL, its length. */
const char *openapi_document(size_t *len);

/* Compare the document with a route table. Every route whose pattern is /healthz, /metrics or
 * starts with /api/ must have an operation for its method under the same path template, and
 * every documented operation must be a route. Returns 0, or -1 with err naming the first
 * mismatch ("GET /api/v1/jobs/{id}/cells: not documented"). */
int openapi_check(const http_route *routes, size_t n, char *err, size_t errlen);

#endif
