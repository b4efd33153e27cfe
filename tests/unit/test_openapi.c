/* test_openapi.c — the OpenAPI document (server/openapi.json, compiled in) and openapi_check
 * (server/openapi.c).
 *
 * Checks that the document parses, is OpenAPI 3.0.x and that every local $ref resolves; that
 * openapi_check accepts the daemon's documented route table (api_routes(): the daemon's own rows
 * and the API's) and ignores the dashboard's static routes, and refuses, naming the route, a table with an
 * extra route, a table missing any one documented route, and a changed method. Then that the
 * document agrees with the code it describes: its enums of job types, states and components are
 * the store's and jobspec's names; every property of each job body schema is a field jobspec
 * accepts for that type and every other job field is refused; every request example of POST
 * /api/v1/jobs validates and expands (the notes' grid to the cell count the 202 example shows);
 * and every operation has a summary, a 2xx response and JSON Error bodies for its errors. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "jobspec.h"
#include "openapi.h"
#include "store.h"
#include "vocab.h"

/* A component name or alias -> its index in the vocabulary, or -1. */
static int comp_parse(const char *s)
{
    prune_component c;
    return prune_component_parse(s, &c) == 0 ? (int)c : -1;
}

#define MAX_ROUTES 64

static const jobspec_limits LIM = {"fashion-mnist", 4, 10000, NULL};

/* The daemon's documented table (its own rows, then the API's) into rows; returns the count. */
static size_t full_table(http_route *rows)
{
    size_t n_api = 0;
    const http_route *api = api_routes(&n_api);
    ck_assert_msg(n_api > 3 && n_api <= MAX_ROUTES, "api_routes gave %zu rows", n_api);
    ck_assert_str_eq(api[0].pattern, "/healthz");
    memcpy(rows, api, n_api * sizeof *api);
    return n_api;
}

static json_t *load_doc(void)
{
    size_t len = 0;
    const char *text = openapi_document(&len);
    ck_assert_ptr_nonnull(text);
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(doc != NULL, "openapi.json does not parse: line %d column %d: %s", je.line, je.column, je.text);
    return doc;
}

/* Local JSON pointer "#/a/b~1c" -> value, or NULL. Written independently of openapi.c's. */
static json_t *pointer_get(json_t *doc, const char *ref)
{
    if (strncmp(ref, "#/", 2) != 0) return NULL;
    char *copy = strdup(ref + 2);
    json_t *cur = doc;
    char *save = NULL;
    for (char *tok = strtok_r(copy, "/", &save); tok && cur; tok = strtok_r(NULL, "/", &save)) {
        char *w = tok;
        for (char *r = tok; *r; r++) {
            if (r[0] == '~' && r[1] == '1') *w++ = '/', r++;
            else if (r[0] == '~' && r[1] == '0') *w++ = '~', r++;
            else *w++ = *r;
        }
        *w = '\0';
        cur = json_is_array(cur) ? json_array_get(cur, strtoul(tok, NULL, 10)) : json_object_get(cur, tok);
    }
    free(copy);
    return cur;
}

/* Follow $ref chains. */
static json_t *deref(json_t *doc, json_t *v)
{
    for (int i = 0; i < 16 && v; i++) {
        json_t *r = json_object_get(v, "$ref");
        if (!json_is_string(r)) return v;
        v = pointer_get(doc, json_string_value(r));
    }
    return NULL;
}

/* Count $refs under v; the first that does not resolve is copied into bad. */
static int refs_walk(json_t *doc, json_t *v, int *count, char *bad, size_t badlen)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            if (strcmp(k, "$ref") == 0 && json_is_string(x)) {
                (*count)++;
                if (!pointer_get(doc, json_string_value(x))) {
                    snprintf(bad, badlen, "%s", json_string_value(x));
                    return -1;
                }
            } else if (refs_walk(doc, x, count, bad, badlen) != 0) {
                return -1;
            }
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (refs_walk(doc, x, count, bad, badlen) != 0) return -1;
    }
    return 0;
}

static int enum_has(json_t *en, const char *s)
{
    size_t i;
    json_t *x;
    json_array_foreach(en, i, x) if (json_is_string(x) && strcmp(json_string_value(x), s) == 0) return 1;
    return 0;
}

static json_t *schema(json_t *doc, const char *name)
{
    json_t *s = json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), name);
    ck_assert_msg(s != NULL, "components.schemas.%s missing", name);
    return s;
}

/* ------------------------------------------------------------------ the document itself */

START_TEST(test_document_parses_as_openapi_3_0)
{
    size_t len = 0;
    const char *text = openapi_document(&len);
    ck_assert_uint_eq(len, strlen(text));
    ck_assert_ptr_eq(openapi_document(NULL), text);
    json_t *doc = load_doc();
    const char *ver = json_string_value(json_object_get(doc, "openapi"));
    ck_assert_msg(ver && strncmp(ver, "3.0.", 4) == 0, "openapi is '%s', want 3.0.x", ver ? ver : "(none)");
    json_t *info = json_object_get(doc, "info");
    ck_assert_msg(json_string_length(json_object_get(info, "title")) > 0, "info.title missing");
    ck_assert_msg(json_string_length(json_object_get(info, "version")) > 0, "info.version missing");
    ck_assert_msg(json_object_size(json_object_get(doc, "paths")) > 0, "no paths");
    json_t *bearer = json_object_get(json_object_get(json_object_get(doc, "components"), "securitySchemes"), "bearerAuth");
    ck_assert_str_eq(json_string_value(json_object_get(bearer, "scheme")), "bearer");
    json_decref(doc);
}
END_TEST

START_TEST(test_every_ref_resolves)
{
    json_t *doc = load_doc();
    int count = 0;
    char bad[256] = "";
    ck_assert_msg(refs_walk(doc, doc, &count, bad, sizeof bad) == 0, "$ref %s does not resolve", bad);
    ck_assert_msg(count > 0, "the document has no $ref at all");
    /* the resolver itself rejects what it should */
    ck_assert_ptr_null(pointer_get(doc, "#/components/schemas/NoSuchSchema"));
    ck_assert_ptr_null(pointer_get(doc, "other.json#/components"));
    ck_assert_ptr_nonnull(pointer_get(doc, "#/paths/~1api~1v1~1jobs/post"));
    json_decref(doc);
}
END_TEST

/* ------------------------------------------------------------------ openapi_check */

START_TEST(test_check_accepts_the_daemon_table)
{
    http_route rows[MAX_ROUTES];
    size_t n = full_table(rows);
    char err[256] = "";
    ck_assert_msg(openapi_check(rows, n, err, sizeof err) == 0, "openapi_check: %s", err);
    ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(test_check_ignores_static_routes)
{
    http_route rows[MAX_ROUTES + 3];
    size_t n = full_table(rows);
    rows[n++] = (http_route){"GET", "/", NULL, HTTP_BODY_MEMORY, 0, "dashboard"};
    rows[n++] = (http_route){"GET", "/static/{file}", NULL, HTTP_BODY_MEMORY, 0, "dashboard assets"};
    rows[n++] = (http_route){"GET", "/apiary", NULL, HTTP_BODY_MEMORY, 0, "not under /api/"};
    char err[256] = "";
    ck_assert_msg(openapi_check(rows, n, err, sizeof err) == 0, "openapi_check: %s", err);
}
END_TEST

START_TEST(test_check_refuses_an_extra_route)
{
    http_route rows[MAX_ROUTES + 1];
    size_t n = full_table(rows);
    rows[n++] = (http_route){"POST", "/api/v1/jobs/{id}/pause", NULL, HTTP_BODY_MEMORY, 0, "pause"};
    char err[256] = "";
    ck_assert_int_eq(openapi_check(rows, n, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "POST /api/v1/jobs/{id}/pause") && strstr(err, "not documented"), "message: %s", err);

    /* a new method on a documented path is caught too */
    n = full_table(rows);
    rows[n++] = (http_route){"PATCH", "/api/v1/models/{name}", NULL, HTTP_BODY_MEMORY, 0, "rename"};
    ck_assert_int_eq(openapi_check(rows, n, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "PATCH /api/v1/models/{name}: not documented"), "message: %s", err);
}
END_TEST

/* Removing any one in-scope row leaves a documented operation without a route. */
START_TEST(test_check_refuses_a_missing_route)
{
    http_route rows[MAX_ROUTES], less[MAX_ROUTES];
    size_t n = full_table(rows);
    char err[256], want[160];
    for (size_t skip = 0; skip < n; skip++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (i != skip) less[m++] = rows[i];
        err[0] = '\0';
        ck_assert_msg(openapi_check(less, m, err, sizeof err) == -1, "table without %s %s accepted", rows[skip].method,
                      rows[skip].pattern);
        snprintf(want, sizeof want, "%s %s: documented, but no route serves it", rows[skip].method, rows[skip].pattern);
        ck_assert_msg(strstr(err, want) != NULL, "without %s %s the message is '%s'", rows[skip].method,
                      rows[skip].pattern, err);
    }
}
END_TEST

START_TEST(test_check_refuses_a_changed_method)
{
    http_route rows[MAX_ROUTES];
    size_t n = full_table(rows);
    size_t i = 0;
    while (i < n && !(strcmp(rows[i].method, "DELETE") == 0 && strcmp(rows[i].pattern, "/api/v1/jobs/{id}") == 0)) i++;
    ck_assert_msg(i < n, "DELETE /api/v1/jobs/{id} is not in the route table");
    rows[i].method = "POST";
    char err[256] = "";
    ck_assert_int_eq(openapi_check(rows, n, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "POST /api/v1/jobs/{id}: not documented"), "message: %s", err);
    /* a NULL err buffer is allowed */
    ck_assert_int_eq(openapi_check(rows, n, NULL, 0), -1);
}
END_TEST

/* ------------------------------------------------------------------ agreement with the code */

START_TEST(test_enums_match_the_code)
{
    json_t *doc = load_doc();
    json_t *types = json_object_get(schema(doc, "JobType"), "enum");
    ck_assert_uint_eq(json_array_size(types), STORE_JOB_TYPE_COUNT);
    for (int t = 0; t < STORE_JOB_TYPE_COUNT; t++)
        ck_assert_msg(enum_has(types, store_job_type_name((store_job_type)t)), "JobType lacks %s",
                      store_job_type_name((store_job_type)t));
    json_t *states = json_object_get(schema(doc, "State"), "enum");
    ck_assert_uint_eq(json_array_size(states), STORE_STATE_COUNT);
    for (int s = 0; s < STORE_STATE_COUNT; s++)
        ck_assert_msg(enum_has(states, store_state_name((store_state)s)), "State lacks %s",
                      store_state_name((store_state)s));
    json_t *counts = json_object_get(schema(doc, "StateCounts"), "properties");
    ck_assert_uint_eq(json_object_size(counts), STORE_STATE_COUNT);

    /* components: every canonical name and alias, and nothing jobspec would refuse */
    json_t *comps = json_object_get(schema(doc, "ComponentName"), "enum");
    for (int c = 0; c < PC_COUNT; c++) {
        ck_assert_msg(enum_has(comps, prune_component_name(c)), "ComponentName lacks %s", prune_component_name(c));
        ck_assert_msg(enum_has(comps, prune_component_alias(c)), "ComponentName lacks %s", prune_component_alias(c));
    }
    size_t i;
    json_t *x;
    json_array_foreach(comps, i, x)
        ck_assert_msg(comp_parse(json_string_value(x)) >= 0, "jobspec refuses component %s",
                      json_string_value(x));

    /* the request body: one schema per job type, discriminated on "type" */
    json_t *req = schema(doc, "JobRequest");
    json_t *one_of = json_object_get(req, "oneOf");
    json_t *mapping = json_object_get(json_object_get(req, "discriminator"), "mapping");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(req, "discriminator"), "propertyName")), "type");
    ck_assert_uint_eq(json_array_size(one_of), STORE_JOB_TYPE_COUNT);
    ck_assert_uint_eq(json_object_size(mapping), STORE_JOB_TYPE_COUNT);
    for (int t = 0; t < STORE_JOB_TYPE_COUNT; t++) {
        const char *name = store_job_type_name((store_job_type)t);
        json_t *ref = json_object_get(mapping, name);
        ck_assert_msg(json_is_string(ref), "discriminator mapping lacks %s", name);
        int listed = 0;
        json_array_foreach(one_of, i, x) listed |= strcmp(json_string_value(json_object_get(x, "$ref")),
                                                          json_string_value(ref)) == 0;
        ck_assert_msg(listed, "%s is mapped to %s, which oneOf does not list", name, json_string_value(ref));
        json_t *sub = pointer_get(doc, json_string_value(ref));
        json_t *ten = json_object_get(json_object_get(json_object_get(sub, "properties"), "type"), "enum");
        ck_assert_msg(json_array_size(ten) == 1 && enum_has(ten, name), "%s: its type property is not [\"%s\"]",
                      json_string_value(ref), name);
        ck_assert_msg(enum_has(json_object_get(sub, "required"), "type"), "%s does not require type", name);
        ck_assert_msg(json_is_false(json_object_get(sub, "additionalProperties")),
                      "%s allows additional properties; jobspec refuses unknown fields", name);
    }
    json_decref(doc);
}
END_TEST

/* Expand {"type": type, key: null}: jobspec checks the field names before any value. */
static void expand_probe(const char *type, const char *key, jobspec_error *e)
{
    json_t *body = json_pack("{s:s, s:n}", "type", type, key);
    jobspec js;
    int rc = jobspec_expand(body, &LIM, &js, e);
    ck_assert_msg(rc == -1, "{\"type\": \"%s\", \"%s\": null} was accepted", type, key);
    json_decref(body);
}

START_TEST(test_job_fields_match_jobspec)
{
    json_t *doc = load_doc();
    json_t *mapping = json_object_get(json_object_get(schema(doc, "JobRequest"), "discriminator"), "mapping");
    /* the vocabulary: every property of every job schema */
    json_t *all = json_object();
    const char *type;
    json_t *ref;
    json_object_foreach(mapping, type, ref) {
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(pointer_get(doc, json_string_value(ref)), "properties"), k, v)
            json_object_set(all, k, json_true());
    }
    ck_assert_msg(json_object_size(all) > 10, "job schemas have only %zu properties", json_object_size(all));
    json_object_foreach(mapping, type, ref) {
        json_t *props = json_object_get(pointer_get(doc, json_string_value(ref)), "properties");
        const char *k;
        json_t *v;
        json_object_foreach(all, k, v) {
            if (strcmp(k, "type") == 0) continue;
            jobspec_error e;
            expand_probe(type, k, &e);
            if (json_object_get(props, k))
                ck_assert_msg(strcmp(e.code, "unknown_field") != 0, "%s documents \"%s\" but jobspec refuses it", type, k);
            else
                ck_assert_msg(strcmp(e.code, "unknown_field") == 0 && strcmp(e.field, k) == 0,
                              "%s does not document \"%s\" but jobspec accepts it (%s: %s)", type, k, e.code, e.message);
        }
        jobspec_error e;
        expand_probe(type, "no_such_field", &e);
        ck_assert_str_eq(e.code, "unknown_field");
    }
    json_decref(all);
    json_decref(doc);
}
END_TEST

START_TEST(test_request_examples_expand)
{
    json_t *doc = load_doc();
    json_t *post = pointer_get(doc, "#/paths/~1api~1v1~1jobs/post");
    ck_assert_ptr_nonnull(post);
    json_t *examples = pointer_get(post, "#/requestBody/content/application~1json/examples");
    ck_assert_msg(json_object_size(examples) >= STORE_JOB_TYPE_COUNT, "fewer request examples than job types");
    int seen[STORE_JOB_TYPE_COUNT] = {0};
    const char *name;
    json_t *ex;
    json_object_foreach(examples, name, ex) {
        json_t *value = json_object_get(ex, "value");
        jobspec js;
        jobspec_error e;
        ck_assert_msg(jobspec_expand(value, &LIM, &js, &e) == 0, "example %s is refused: %s (%s)", name, e.message,
                      e.code);
        seen[js.type] = 1;
        if (strcmp(name, "notes_ablation") == 0) {
            json_t *accepted = pointer_get(post, "#/responses/202/content/application~1json/example");
            json_t *dry = pointer_get(post, "#/responses/200/content/application~1json/example");
            ck_assert_int_eq((long long)js.n_cells, json_integer_value(json_object_get(accepted, "cells")));
            ck_assert_int_eq((long long)js.n_cells, json_integer_value(json_object_get(dry, "cells")));
            ck_assert_int_eq(js.n_cells, 24);
        }
        jobspec_free(&js);
    }
    for (int t = 0; t < STORE_JOB_TYPE_COUNT; t++)
        ck_assert_msg(seen[t], "no request example of type %s", store_job_type_name((store_job_type)t));
    ck_assert_ptr_nonnull(json_object_get(examples, "notes_ablation"));
    json_decref(doc);
}
END_TEST

START_TEST(test_operations_are_complete)
{
    json_t *doc = load_doc();
    json_t *error_schema = schema(doc, "Error");
    json_t *inner = pointer_get(doc, "#/components/schemas/Error/properties/error");
    ck_assert_msg(enum_has(json_object_get(error_schema, "required"), "error"), "Error does not require error");
    ck_assert_msg(enum_has(json_object_get(inner, "required"), "code") &&
                      enum_has(json_object_get(inner, "required"), "message") &&
                      enum_has(json_object_get(inner, "required"), "field"),
                  "Error.error does not require code, message and field");
    const char *path;
    json_t *item;
    int ops = 0;
    json_object_foreach(json_object_get(doc, "paths"), path, item) {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op) {
            if (strcmp(method, "parameters") == 0) continue;
            ops++;
            ck_assert_msg(json_string_length(json_object_get(op, "summary")) > 0, "%s %s: no summary", method, path);
            ck_assert_msg(json_string_length(json_object_get(op, "operationId")) > 0, "%s %s: no operationId", method,
                          path);
            json_t *responses = json_object_get(op, "responses");
            int ok2xx = 0;
            const char *status;
            json_t *resp;
            json_object_foreach(responses, status, resp) {
                json_t *r = deref(doc, resp);
                ck_assert_msg(r != NULL, "%s %s %s: response does not resolve", method, path, status);
                if (status[0] == '2') {
                    ok2xx = 1;
                    continue;
                }
                json_t *sch = pointer_get(r, "#/content/application~1json/schema");
                ck_assert_msg(sch && deref(doc, sch) == error_schema, "%s %s %s: the body is not the Error schema",
                              method, path, status);
            }
            ck_assert_msg(ok2xx, "%s %s: no 2xx response", method, path);
            int writes = strcmp(method, "post") == 0 || strcmp(method, "put") == 0 || strcmp(method, "delete") == 0 ||
                         strcmp(method, "patch") == 0;
            if (strncmp(path, "/api/", 5) == 0 && strcmp(path, "/api/v1/openapi.json") != 0)
                ck_assert_msg(json_object_get(responses, "401") && json_object_get(responses, "403"),
                              "%s %s: every API route authenticates, so 401 and 403 belong in its responses", method,
                              path);
            if (writes) {
                json_t *sec = json_object_get(op, "security");
                ck_assert_msg(json_array_size(sec) == 1 && json_object_get(json_array_get(sec, 0), "bearerAuth"),
                              "%s %s: a write must require the bearer token", method, path);
                ck_assert_msg(json_object_get(responses, "401") != NULL, "%s %s: a write without 401", method, path);
            }
        }
    }
    ck_assert_int_gt(ops, 0);
    /* the media types the daemon actually sends */
    ck_assert_ptr_nonnull(pointer_get(doc, "#/paths/~1api~1v1~1jobs~1{id}~1results.csv/get/responses/200/content/text~1csv"));
    ck_assert_ptr_nonnull(pointer_get(doc, "#/paths/~1metrics/get/responses/200/content/text~1plain; version=0.0.4; charset=utf-8"));
    ck_assert_ptr_nonnull(pointer_get(doc, "#/paths/~1api~1v1~1models~1{name}/put/requestBody/content/application~1octet-stream"));
    json_decref(doc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("openapi");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_document_parses_as_openapi_3_0);
    tcase_add_test(tc, test_every_ref_resolves);
    tcase_add_test(tc, test_check_accepts_the_daemon_table);
    tcase_add_test(tc, test_check_ignores_static_routes);
    tcase_add_test(tc, test_check_refuses_an_extra_route);
    tcase_add_test(tc, test_check_refuses_a_missing_route);
    tcase_add_test(tc, test_check_refuses_a_changed_method);
    tcase_add_test(tc, test_enums_match_the_code);
    tcase_add_test(tc, test_job_fields_match_jobspec);
    tcase_add_test(tc, test_request_examples_expand);
    tcase_add_test(tc, test_operations_are_complete);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
