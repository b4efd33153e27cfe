/* jobs_page.c — the body of a GET /api/v1/jobs page, and its read cache.
 *
 *  - api_jobs_page_reference: store_jobs_list + one jansson object per job (jobs_view_page);
 *  - api_jobs_page_cached: that page, without the jobs' specs (the list does not show them),
 *    kept in the store's read cache under the normalised filter, tagged with the commit counter,
 *    so repeated GETs while nothing is committed are a lookup and a copy, and the first GET after
 *    any commit renders the page once. Both give the same bytes (tests/unit/test_store.c).
 * The list shows every job to every reader allowed to read (no per-caller filtering), so the
 * cache key is the filter alone; auth runs before the cache. (A hand-written renderer of the same
 * bytes once stood beside jansson here; bench/README.md section 5 shows the cache alone serves
 * the same request rate.) */
#include "api.h"

#include <stdio.h>

#include "jobs_view.h"

int api_jobs_page_reference(store *st, const store_job_filter *f, char **out, size_t *len, char *err, size_t errlen)
{
    store_job *jobs = NULL;
    size_t n = 0;
    char next[STORE_PAGE_TOKEN_LEN] = "";
    *out = NULL;
    *len = 0;
    int rc = store_jobs_list(st, f, &jobs, &n, next, err, errlen);
    if (rc == STORE_OK && jobs_view_page(jobs, n, next, out, len) != 0) {
        snprintf(err, errlen, "out of memory rendering the job list");
        rc = STORE_ERR;
    }
    store_jobs_free(jobs, n);
    return rc;
}

typedef struct {
    store *st;
    const store_job_filter *f;
} page_build_ctx;

/* The page without specs (store_memo_get's build function). */
static int page_build(void *cls, char **blob, size_t *len, char *err, size_t errlen)
{
    page_build_ctx *c = cls;
    store_job_filter lf = *c->f;
    lf.without_spec = 1;
    return api_jobs_page_reference(c->st, &lf, blob, len, err, errlen);
}

int api_jobs_page_cached(store *st, const store_job_filter *f, char **out, size_t *len, int *hit, char *err,
                         size_t errlen)
{
    /* The normalised filter: defaults applied, query spelling (order of arguments, empty values)
     * gone. '\n' cannot occur in a query value (controls are refused by the HTTP layer). */
    char key[STORE_MEMO_KEY_MAX + 2];
    int limit = f->limit <= 0 ? 50 : f->limit > STORE_PAGE_MAX ? STORE_PAGE_MAX : f->limit;
    int kl = snprintf(key, sizeof key, "jobs\n%d\n%d\n%d\n%d\n%s\n%s%s", f->type, f->state, (int)f->order, limit,
                      f->page_token ? f->page_token : "", f->owner ? "=" : "-", f->owner ? f->owner : "");
    page_build_ctx c = {st, f};
    if (kl < 0 || (size_t)kl >= sizeof key) { /* too long to cache: render it */
        if (hit) *hit = 0;
        return page_build(&c, out, len, err, errlen);
    }
    return store_memo_get(st, key, page_build, &c, out, len, hit, err, errlen);
}

