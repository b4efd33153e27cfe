/* test_static.c — the dashboard's file serving (server/static.c), tested without a socket.
 *
 * Each test builds a small web directory under a fresh temp dir (files, a node_modules copy of
 * the chart library, dotfiles, and symlinks pointing inside and outside the root), then asks
 * static_plan_make what it would answer for a URL path: status, content type, the bytes behind
 * the descriptor, and the ETag / If-None-Match round trip. The temp dir is removed afterwards. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "selfdir.h"
#include "static.h"

static char tmp[256];       /* the temp dir: web/ inside, outside/ beside it */
static char web[272];       /* tmp/web */
static static_site *site;

static void write_file(const char *rel, const char *text) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    FILE *f = fopen(p, "w");
    ck_assert_msg(f != NULL, "cannot write %s", p);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

static void make_dir(const char *rel) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    ck_assert_int_eq(mkdir(p, 0755), 0);
}

static void make_link(const char *target, const char *rel) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    ck_assert_int_eq(symlink(target, p), 0);
}

static void setup(void) {
    snprintf(tmp, sizeof tmp, "%s/test_static.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(web, sizeof web, "%s/web", tmp);
    make_dir("web");
    make_dir("web/js");
    make_dir("web/css");
    make_dir("web/node_modules");
    make_dir("web/node_modules/plotly.js-dist-min");
    make_dir("outside");
    write_file("web/index.html", "<!doctype html><title>t</title>\n");
    write_file("web/favicon.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n");
    write_file("web/package.json", "{\"private\": true}\n");
    write_file("web/.env", "SECRET=1\n");
    write_file("web/js/app.js", "export const app = 1;\n");
    write_file("web/js/data.json", "{\"a\": 1}\n");
    write_file("web/js/.hidden.js", "hidden\n");
    write_file("web/js/run.sh", "#!/bin/sh\n");
    write_file("web/css/app.css", "body { color: black; }\n");
    write_file("web/node_modules/plotly.js-dist-min/plotly.min.js", "var Plotly = {};\n");
    write_file("outside/secret.js", "leaked\n");
    write_file("outside/style.css", "leaked {}\n");
    make_link("../../outside/secret.js", "web/js/escape.js");      /* file link out of root */
    make_link("app.js", "web/js/alias.js");                        /* link inside: fine */
    make_link("../outside", "web/css2");                           /* dir link out of root */
    char err[STATIC_ERRLEN];
    ck_assert_msg(static_site_open(&site, web, err, sizeof err) == 0, "%s", err);
}

static void teardown(void) {
    static_site_free(site);
    site = NULL;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert_int_eq(system(cmd), 0);
}

/* Plan url and return its status; the body (if 200) is read into body. */
static unsigned plan(const char *url, const char *inm, static_plan *p, char *body, size_t cap) {
    ck_assert_int_eq(static_plan_make(site, url, inm, p), 0);
    if (body) body[0] = '\0';
    if (p->status == 200) {
        ck_assert_int_ge(p->fd, 0);
        ck_assert_uint_lt(p->size, cap);
        ssize_t n = pread(p->fd, body, cap - 1, 0);
        ck_assert_int_eq(n, (ssize_t)p->size);
        body[n] = '\0';
    } else {
        ck_assert_int_eq(p->fd, -1);
    }
    return p->status;
}

static void expect_404(const char *url) {
    static_plan p;
    char body[256];
    unsigned st = plan(url, NULL, &p, body, sizeof body);
    ck_assert_msg(st == 404, "%s answered %u (%s)", url, st, body);
    ck_assert_msg(p.reason[0] != '\0', "%s: 404 without a reason", url);
    static_plan_clear(&p);
}

START_TEST(test_content_types) {
    ck_assert_str_eq(static_content_type("index.html"), "text/html; charset=utf-8");
    ck_assert_str_eq(static_content_type("app.js"), "text/javascript; charset=utf-8");
    ck_assert_str_eq(static_content_type("x.min.js"), "text/javascript; charset=utf-8");
    ck_assert_str_eq(static_content_type("app.css"), "text/css; charset=utf-8");
    ck_assert_str_eq(static_content_type("favicon.svg"), "image/svg+xml");
    ck_assert_str_eq(static_content_type("a.json"), "application/json");
    ck_assert_str_eq(static_content_type("favicon.ico"), "image/x-icon");
    ck_assert_ptr_null(static_content_type("run.sh"));
    ck_assert_ptr_null(static_content_type("README"));
    ck_assert_ptr_null(static_content_type("app.js.bak"));
    ck_assert_ptr_null(static_content_type(".js"));
}
END_TEST

START_TEST(test_serves_mapped_files) {
    static_plan p;
    char body[256];
    ck_assert_uint_eq(plan("/", NULL, &p, body, sizeof body), 200);
    ck_assert_str_eq(p.content_type, "text/html; charset=utf-8");
    ck_assert_str_eq(body, "<!doctype html><title>t</title>\n");
    static_plan_clear(&p);
    ck_assert_uint_eq(plan("/index.html", NULL, &p, body, sizeof body), 200);
    ck_assert_str_eq(body, "<!doctype html><title>t</title>\n");
    static_plan_clear(&p);
    ck_assert_uint_eq(plan("/js/app.js", NULL, &p, body, sizeof body), 200);
    ck_assert_str_eq(p.content_type, "text/javascript; charset=utf-8");
    ck_assert_str_eq(body, "export const app = 1;\n");
    static_plan_clear(&p);
    ck_assert_uint_eq(plan("/js/data.json", NULL, &p, body, sizeof body), 200);
    ck_assert_str_eq(p.content_type, "application/json");
    static_plan_clear(&p);
    ck_assert_uint_eq(plan("/css/app.css", NULL, &p, body, sizeof body), 200);
    ck_assert_str_eq(p.content_type, "text/css; charset=utf-8");
    ck_assert_str_eq(body, "body { color: black; }\n");
    static_plan_clear(&p);
    ck_assert_uint_eq(plan("/favicon.svg", NULL, &p, body, sizeof body), 200);
    ck_assert_str_eq(p.content_type, "image/svg+xml");
    static_plan_clear(&p);
    /* the vendored chart library comes from node_modules */
    ck_assert_uint_eq(plan("/vendor/plotly.min.js", NULL, &p, body, sizeof body), 200);
    ck_assert_str_eq(p.content_type, "text/javascript; charset=utf-8");
    ck_assert_str_eq(body, "var Plotly = {};\n");
    ck_assert_ptr_nonnull(strstr(p.file, "/node_modules/plotly.js-dist-min/plotly.min.js"));
    static_plan_clear(&p);
    /* a symlink that stays inside the root is served (as its target) */
    ck_assert_uint_eq(plan("/js/alias.js", NULL, &p, body, sizeof body), 200);
    ck_assert_str_eq(body, "export const app = 1;\n");
    static_plan_clear(&p);
}
END_TEST

START_TEST(test_traversal_refused) {
    expect_404("/js/../index.html");
    expect_404("/../outside/secret.js");
    expect_404("/..");
    expect_404("/js/./app.js");
    expect_404("/js//app.js");
    expect_404("js/app.js");
    expect_404("/js/app.js/");
    expect_404("/js\\..\\index.html");
    /* deeper than one directory: node_modules is reachable only through /vendor */
    expect_404("/node_modules/plotly.js-dist-min/plotly.min.js");
    expect_404("/vendor/other.js");
    expect_404("/vendor/../index.html");
}
END_TEST

START_TEST(test_symlink_escape_refused) {
    /* the link exists and its target is a readable .js file, but outside the root */
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/js/escape.js", web);
    ck_assert_int_eq(access(p, R_OK), 0);
    expect_404("/js/escape.js");
    /* a directory link out of the root: not a served directory, and the check would refuse it */
    expect_404("/css2/style.css");
    /* a served directory replaced by a link out of the root */
    snprintf(p, sizeof p, "%s/css", web);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    ck_assert_int_eq(system(cmd), 0);
    make_link("../outside", "web/css");
    expect_404("/css/style.css");
    /* the vendored file as a link out of the root */
    snprintf(p, sizeof p, "%s/node_modules/plotly.js-dist-min/plotly.min.js", web);
    ck_assert_int_eq(unlink(p), 0);
    make_link("../../../outside/secret.js", "web/node_modules/plotly.js-dist-min/plotly.min.js");
    ck_assert_int_eq(access(p, R_OK), 0);
    expect_404("/vendor/plotly.min.js");
}
END_TEST

START_TEST(test_dotfiles_and_types_refused) {
    expect_404("/.env");
    expect_404("/js/.hidden.js");
    expect_404("/.git/config");
    expect_404("/js/run.sh");        /* exists, extension not served */
    expect_404("/package.json");     /* json is served from js/ only */
    expect_404("/app.js");           /* js is served from js/ only */
    expect_404("/css/app.js");
}
END_TEST

START_TEST(test_missing_file_404) {
    expect_404("/js/missing.js");
    expect_404("/nope.html");
    expect_404("/css/missing.css");
    expect_404("/images/x.svg");
    /* a directory named like a file is not a regular file */
    make_dir("web/js/dir.js");
    expect_404("/js/dir.js");
}
END_TEST

START_TEST(test_etag_round_trip) {
    static_plan p;
    char body[256];
    ck_assert_uint_eq(plan("/js/app.js", NULL, &p, body, sizeof body), 200);
    char tag[64];
    snprintf(tag, sizeof tag, "%s", p.etag);
    static_plan_clear(&p);
    ck_assert_int_eq(tag[0], '"');
    ck_assert_int_eq(tag[strlen(tag) - 1], '"');
    ck_assert_uint_eq(plan("/js/app.js", tag, &p, body, sizeof body), 304);
    ck_assert_str_eq(p.etag, tag);
    ck_assert_str_eq(p.content_type, "text/javascript; charset=utf-8");
    static_plan_clear(&p);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "\"other\", W/%s", tag);
    ck_assert_uint_eq(plan("/js/app.js", hdr, &p, body, sizeof body), 304);
    static_plan_clear(&p);
    ck_assert_uint_eq(plan("/js/app.js", "*", &p, body, sizeof body), 304);
    static_plan_clear(&p);
    ck_assert_uint_eq(plan("/js/app.js", "\"other\"", &p, body, sizeof body), 200);
    static_plan_clear(&p);
    /* another file has another tag */
    ck_assert_uint_eq(plan("/css/app.css", tag, &p, body, sizeof body), 200);
    ck_assert_str_ne(p.etag, tag);
    static_plan_clear(&p);
    /* an edited file gets a new tag: the old one no longer matches */
    write_file("web/js/app.js", "export const app = 22;\n");
    ck_assert_uint_eq(plan("/js/app.js", tag, &p, body, sizeof body), 200);
    ck_assert_str_eq(body, "export const app = 22;\n");
    ck_assert_str_ne(p.etag, tag);
    static_plan_clear(&p);
}
END_TEST

START_TEST(test_etag_matching) {
    ck_assert_int_eq(static_etag_matches("\"a\"", "\"a\""), 1);
    ck_assert_int_eq(static_etag_matches("W/\"a\"", "\"a\""), 1);
    ck_assert_int_eq(static_etag_matches(" \"b\" ,\"a\"", "\"a\""), 1);
    ck_assert_int_eq(static_etag_matches("*", "\"a\""), 1);
    ck_assert_int_eq(static_etag_matches("\"ab\"", "\"a\""), 0);
    ck_assert_int_eq(static_etag_matches("\"a", "\"a\""), 0);
    ck_assert_int_eq(static_etag_matches("a", "\"a\""), 0);
    ck_assert_int_eq(static_etag_matches("", "\"a\""), 0);
    ck_assert_int_eq(static_etag_matches(NULL, "\"a\""), 0);
    ck_assert_int_eq(static_etag_matches("junk, \"a\"", "\"a\""), 1);
}
END_TEST

START_TEST(test_dir_resolve_order) {
    const char *src = NULL;
    setenv("PRUNELAB_WEB_DIR", "/from/env", 1);
    char *d = static_dir_resolve("/from/config", web, "/x/prunelabd", &src);
    ck_assert_str_eq(d, "/from/config");
    ck_assert_str_eq(src, "web_dir");
    free(d);
    d = static_dir_resolve(NULL, web, "/x/prunelabd", &src);
    ck_assert_str_eq(d, "/from/env");
    ck_assert_str_eq(src, "PRUNELAB_WEB_DIR");
    free(d);
    unsetenv("PRUNELAB_WEB_DIR");
    /* the install directory counts only when it holds index.html */
    d = static_dir_resolve(NULL, web, "/x/prunelabd", &src);
    ck_assert_str_eq(d, web);
    ck_assert_str_eq(src, "install");
    free(d);
    char empty[PATH_MAX];
    snprintf(empty, sizeof empty, "%s/outside", tmp);
    d = static_dir_resolve(NULL, empty, "/x/prunelabd", &src);
    ck_assert_str_eq(src, "binary");
    /* beside this test binary (/proc/self/exe): DIR/web */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_int_gt(n, 0);
    self[n] = '\0';
    *strrchr(self, '/') = '\0';
    strcat(self, "/web");
    ck_assert_str_eq(d, self);
    free(d);
}
END_TEST

START_TEST(test_selfdir) {
    /* the directory of this test binary, as /proc/self/exe names it */
    char exe[PATH_MAX], dir[PATH_MAX], tiny[4];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert_int_gt(n, 0);
    exe[n] = '\0';
    *strrchr(exe, '/') = '\0';
    ck_assert_int_eq(selfdir_get(NULL, dir, sizeof dir), 0);
    ck_assert_str_eq(dir, exe);
    strcpy(tiny, "x");
    ck_assert_int_eq(selfdir_get(NULL, tiny, sizeof tiny), -1); /* does not fit: untouched */
    ck_assert_str_eq(tiny, "x");
}
END_TEST

START_TEST(test_site_open_errors) {
    static_site *s = (static_site *)1;
    char err[STATIC_ERRLEN] = "";
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/no-such-dir", tmp);
    ck_assert_int_eq(static_site_open(&s, p, err, sizeof err), -1);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(err, "no-such-dir"));
    snprintf(p, sizeof p, "%s/index.html", web);
    ck_assert_int_eq(static_site_open(&s, p, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "not a directory"));
    static_site_free(NULL);
    /* the root is kept as a real path */
    char real[PATH_MAX];
    ck_assert_ptr_nonnull(realpath(web, real));
    ck_assert_str_eq(static_site_dir(site), real);
}
END_TEST

static Suite *static_suite(void) {
    Suite *s = suite_create("static");
    TCase *tc = tcase_create("files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_content_types);
    tcase_add_test(tc, test_serves_mapped_files);
    tcase_add_test(tc, test_traversal_refused);
    tcase_add_test(tc, test_symlink_escape_refused);
    tcase_add_test(tc, test_dotfiles_and_types_refused);
    tcase_add_test(tc, test_missing_file_404);
    tcase_add_test(tc, test_etag_round_trip);
    tcase_add_test(tc, test_etag_matching);
    tcase_add_test(tc, test_dir_resolve_order);
    tcase_add_test(tc, test_site_open_errors);
    tcase_add_test(tc, test_selfdir);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(static_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
