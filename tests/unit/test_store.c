/* test_store.c — server/store.c and server/sha256.c: migrations, refusal of newer databases,
 * SHA-256 against FIPS 180-4 vectors, hashed tokens, idempotent job creation, the claim order
 * (round robin, priority, per-owner cap), concurrent claims, idempotent finish, lease expiry,
 * boot recovery, cancel, retry, pagination, crash consistency of a killed writer, the read
 * cache, and the job list page: the cached renderer against the jansson reference
 * (byte for byte, over varied jobs, filters and page tokens, and after every state change).
 *
 * Every test works on a fresh database in its own temporary directory; migrations come from
 * $PRUNELAB_SRCDIR/sql (default ./sql). Time-dependent behaviour runs on a fake clock, so no
 * test sleeps or asserts a duration. */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api.h"
#include "sha256.h"
#include "store.h"

static char g_sql_dir[4096];
static char g_dir[4096];   /* this test's temporary directory */
static char g_db[4200];    /* g_dir/prunelab.db */
static char err[512];
static int64_t g_now = 1700000000000LL; /* fake clock, ms */

static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return g_now;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[8192];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void setup(void)
{
    const char *src = getenv("PRUNELAB_SRCDIR");
    snprintf(g_sql_dir, sizeof g_sql_dir, "%s/sql", src && *src ? src : ".");
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/test_store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_db, sizeof g_db, "%s/prunelab.db", g_dir);
    g_now = 1700000000000LL;
}

static void teardown(void)
{
    rm_tree(g_dir);
}

static store *open_db(void)
{
    store *st = NULL;
    int rc = store_open(g_db, g_sql_dir, &st, err, sizeof err);
    ck_assert_msg(rc == STORE_OK, "store_open: %s", err);
    store_clock_set(st, fake_clock, NULL);
    return st;
}

static void assert_integrity(store *st)
{
    ck_assert_msg(store_integrity_check(st, err, sizeof err) == STORE_OK, "integrity: %s", err);
}

/* The model jobs name must exist when they are stored: register name once (a taken name is fine). */
static void ensure_model(store *st, const char *name)
{
    store_model m = {.name = (char *)name, .path = "/m/x.safetensors", .params = 1, .accuracy = 0.5, .owner = "alice"};
    int rc = store_model_insert(st, &m, NULL, err, sizeof err);
    ck_assert_msg(rc == STORE_OK || rc == STORE_EXISTS, "model insert: %s", err);
}

/* A job of n cells; cell i's spec is {"i": i}. Returns its id. */
static int64_t make_job(store *st, const char *owner, int priority, int n, int max_attempts, const char *key)
{
    ensure_model(st, "fm-small");
    char **specs = calloc((size_t)n, sizeof *specs);
    for (int i = 0; i < n; i++) ck_assert_int_ge(asprintf(&specs[i], "{\"i\": %d}", i), 0);
    store_job_new nj = {.owner = owner, .type = STORE_JOB_ABLATION, .spec_json = "{\"type\": \"ablation\"}",
                        .model = "fm-small", .priority = priority, .idem_key = key,
                        .max_attempts = max_attempts, .cell_specs = (const char *const *)specs, .n_cells = (size_t)n};
    int64_t id = 0;
    int rc = store_job_create(st, &nj, &id, err, sizeof err);
    ck_assert_msg(rc == STORE_OK, "create: %s (%s)", store_rc_name(rc), err);
    for (int i = 0; i < n; i++) free(specs[i]);
    free(specs);
    return id;
}

static store_job get_job(store *st, int64_t id)
{
    store_job j;
    ck_assert_int_eq(store_job_get(st, id, &j, err, sizeof err), STORE_OK);
    return j;
}

/* Copy sql_dir's migrations into dir (created). */
static void copy_migrations(const char *dir)
{
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    DIR *d = opendir(g_sql_dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".sql")) continue;
        char src[8192], dst[8192];
        snprintf(src, sizeof src, "%s/%s", g_sql_dir, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", dir, e->d_name);
        FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
        ck_assert(in && out);
        char buf[4096];
        size_t k;
        while ((k = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, k, out);
        fclose(in);
        fclose(out);
    }
    closedir(d);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* ------------------------------------------------------------------ SHA-256 */

START_TEST(test_sha256_vectors)
{
    char hex[SHA256_HEX_LEN];
    sha256_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_hex("", 0, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m448, strlen(m448), hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    sha256_hex(m896, strlen(m896), hex);
    ck_assert_str_eq(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");

    /* One million 'a', fed in uneven pieces to exercise the partial-block path. */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sha256_ctx c;
    uint8_t d[SHA256_DIGEST_LEN];
    sha256_init(&c);
    size_t off = 0, step = 1;
    while (off < 1000000) {
        size_t k = step < 1000000 - off ? step : 1000000 - off;
        sha256_update(&c, a + off, k);
        off += k;
        step = step * 7 % 1009 + 1;
    }
    sha256_final(&c, d);
    sha256_to_hex(d, sizeof d, hex);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    sha256_hex(a, 1000000, hex);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);

    /* Lengths around the padding boundary (55, 56, 63, 64 bytes): streaming == one-shot. */
    char msg[130];
    for (int i = 0; i < 130; i++) msg[i] = (char)('A' + i % 26);
    for (size_t n = 50; n < 130; n++) {
        char h1[SHA256_HEX_LEN], h2[SHA256_HEX_LEN];
        sha256_hex(msg, n, h1);
        sha256_init(&c);
        for (size_t i = 0; i < n; i++) sha256_update(&c, msg + i, 1);
        sha256_final(&c, d);
        sha256_to_hex(d, sizeof d, h2);
        ck_assert_str_eq(h1, h2);
    }
}
END_TEST

/* ------------------------------------------------------------------ migrations */

#define SCHEMA 4 /* the migrations in sql/ (001_init, 002_model_components, 003_job_outputs, 004_datasets) */

START_TEST(test_migrations_apply_and_reopen)
{
    store *st = open_db();
    ck_assert_int_eq(store_schema_version(st), SCHEMA);
    /* a new database and its WAL are readable by the daemon's user only */
    struct stat sb;
    char wal[8300];
    snprintf(wal, sizeof wal, "%s-wal", g_db);
    ck_assert_int_eq(stat(g_db, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    ck_assert_int_eq(stat(wal, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    int64_t id = make_job(st, "alice", 0, 3, 0, NULL);
    char tok[STORE_TOKEN_LEN];
    ck_assert_int_eq(store_user_add(st, "alice", 1, tok, err, sizeof err), STORE_OK);
    assert_integrity(st);
    store_close(st);

    /* Reopen: nothing is re-applied (a second CREATE TABLE would fail), data is intact. */
    st = open_db();
    ck_assert_int_eq(store_schema_version(st), SCHEMA);
    store_job j = get_job(st, id);
    ck_assert_int_eq(j.n_cells, 3);
    ck_assert_int_eq(j.counts[STORE_STATE_QUEUED], 3);
    ck_assert_int_eq(j.state, STORE_STATE_QUEUED);
    store_job_free(&j);
    store_user u;
    ck_assert_int_eq(store_token_lookup(st, tok, &u, err, sizeof err), STORE_OK);
    ck_assert_str_eq(u.name, "alice");
    store_user_free(&u);
    store_close(st);

    /* The connection settings the design relies on. */
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(g_db, &db), SQLITE_OK);
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(s, 0), SCHEMA);
    sqlite3_finalize(s);
    sqlite3_close(db);
}
END_TEST

START_TEST(test_migrations_newer_database_refused)
{
    char dir2[8192];
    snprintf(dir2, sizeof dir2, "%s/sql2", g_dir);
    char newer[32], missing[8];
    snprintf(newer, sizeof newer, "schema version %d", SCHEMA + 1);
    snprintf(missing, sizeof missing, "%03d", SCHEMA + 1);
    copy_migrations(dir2);
    char p[8300];
    snprintf(p, sizeof p, "%s/%03d_notes.sql", dir2, SCHEMA + 1);
    write_file(p, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\n");

    store *st = NULL;
    ck_assert_msg(store_open(g_db, dir2, &st, err, sizeof err) == STORE_OK, "%s", err);
    ck_assert_int_eq(store_schema_version(st), SCHEMA + 1);
    store_close(st);

    /* This binary's own migrations only know version SCHEMA: refused with a clear message. */
    st = NULL;
    err[0] = '\0';
    ck_assert_int_eq(store_open(g_db, g_sql_dir, &st, err, sizeof err), STORE_ERR);
    ck_assert_ptr_null(st);
    ck_assert_msg(strstr(err, "newer") && strstr(err, newer), "message: %s", err);

    /* An upgrade path from SCHEMA to SCHEMA + 1 on an existing database applies only the new one. */
    char db1[8300];
    snprintf(db1, sizeof db1, "%s/v1.db", g_dir);
    ck_assert_int_eq(store_open(db1, g_sql_dir, &st, err, sizeof err), STORE_OK);
    store_close(st);
    ck_assert_int_eq(store_open(db1, dir2, &st, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_schema_version(st), SCHEMA + 1);
    store_close(st);

    /* A gap in the numbering is refused. */
    char dir3[8192];
    snprintf(dir3, sizeof dir3, "%s/sql3", g_dir);
    copy_migrations(dir3);
    snprintf(p, sizeof p, "%s/%03d_gap.sql", dir3, SCHEMA + 2);
    write_file(p, "CREATE TABLE gap (x);\n");
    char db3[8300];
    snprintf(db3, sizeof db3, "%s/v3.db", g_dir);
    ck_assert_int_eq(store_open(db3, dir3, &st, err, sizeof err), STORE_ERR);
    ck_assert_msg(strstr(err, missing) && strstr(err, "missing"), "message: %s", err);

    /* A failing migration leaves the database at the previous version. */
    char dir4[8192];
    snprintf(dir4, sizeof dir4, "%s/sql4", g_dir);
    copy_migrations(dir4);
    snprintf(p, sizeof p, "%s/%03d_bad.sql", dir4, SCHEMA + 1);
    write_file(p, "CREATE TABLE half (x);\nTHIS IS NOT SQL;\n");
    ck_assert_int_eq(store_open(db1, g_sql_dir, &st, err, sizeof err), STORE_ERR); /* db1 is at SCHEMA + 1 now */
    char db4[8300];
    snprintf(db4, sizeof db4, "%s/v4.db", g_dir);
    ck_assert_int_eq(store_open(db4, dir4, &st, err, sizeof err), STORE_ERR);
    ck_assert_int_eq(store_open(db4, g_sql_dir, &st, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_schema_version(st), SCHEMA);
    store_close(st);

    /* Somebody else's SQLite file is not touched. */
    char other[8300];
    snprintf(other, sizeof other, "%s/other.db", g_dir);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(other, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "CREATE TABLE t(x); PRAGMA user_version = 1;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(store_open(other, g_sql_dir, &st, err, sizeof err), STORE_ERR);
    ck_assert_msg(strstr(err, "not a prunelabd database"), "message: %s", err);
}
END_TEST

/* ------------------------------------------------------------------ users and tokens */

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    int hit = memmem(buf, got, needle, strlen(needle)) != NULL;
    free(buf);
    return hit;
}

static int db_files_contain(const char *needle)
{
    char p[8300];
    snprintf(p, sizeof p, "%s-wal", g_db);
    return file_contains(g_db, needle) || file_contains(p, needle);
}

START_TEST(test_tokens_hashed_and_revoked)
{
    store *st = open_db();
    char tok[STORE_TOKEN_LEN], tok2[STORE_TOKEN_LEN], hash[SHA256_HEX_LEN];
    ck_assert_int_eq(store_user_add(st, "alice", 0, tok, err, sizeof err), STORE_OK);
    ck_assert_int_eq(strlen(tok), STORE_TOKEN_LEN - 1);
    ck_assert(!strncmp(tok, "plt_", 4));
    ck_assert_int_eq(store_user_add(st, "alice", 0, tok2, err, sizeof err), STORE_EXISTS);
    ck_assert_int_eq(store_user_add(st, "../etc", 0, tok2, err, sizeof err), STORE_INVALID);
    ck_assert_int_eq(store_user_add(st, "root", 1, tok2, err, sizeof err), STORE_OK);
    ck_assert_str_ne(tok, tok2);

    store_user u;
    ck_assert_int_eq(store_token_lookup(st, tok, &u, err, sizeof err), STORE_OK);
    ck_assert_str_eq(u.name, "alice");
    ck_assert_int_eq(u.admin, 0);
    store_user_free(&u);
    ck_assert_int_eq(store_token_lookup(st, tok2, &u, err, sizeof err), STORE_OK);
    ck_assert_int_eq(u.admin, 1);
    store_user_free(&u);
    ck_assert_int_eq(store_token_lookup(st, "plt_0000", &u, err, sizeof err), STORE_NOTFOUND);
    ck_assert_int_eq(store_token_lookup(st, "", &u, err, sizeof err), STORE_NOTFOUND);

    /* The raw token never reaches the database files; its hash does (so the grep can hit). */
    sha256_hex(tok, strlen(tok), hash);
    ck_assert(db_files_contain(hash));
    ck_assert(!db_files_contain(tok));
    ck_assert(!db_files_contain(tok + 4));
    store_close(st);
    ck_assert(db_files_contain(hash));
    ck_assert(!db_files_contain(tok));
    ck_assert(!db_files_contain(tok + 4));

    st = open_db();
    char tok3[STORE_TOKEN_LEN];
    ck_assert_int_eq(store_token_create(st, "alice", tok3, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_token_create(st, "nobody", tok2, err, sizeof err), STORE_NOTFOUND);
    store_user *users;
    size_t n;
    ck_assert_int_eq(store_users_list(st, &users, &n, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(users[0].name, "alice");
    ck_assert_int_eq(users[0].active_tokens, 2);
    store_users_free(users, n);

    /* Revoking one token leaves the other; revoking the user ends both. */
    ck_assert_int_eq(store_token_revoke(st, tok3, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_token_revoke(st, tok3, err, sizeof err), STORE_NOOP);
    /* A revoked token is told apart from an unknown one (the API answers 403 vs 401). */
    ck_assert_int_eq(store_token_lookup(st, tok3, &u, err, sizeof err), STORE_CONFLICT);
    ck_assert_ptr_null(u.name);
    ck_assert_int_eq(store_token_lookup(st, tok, &u, err, sizeof err), STORE_OK);
    store_user_free(&u);
    int nr = -1;
    ck_assert_int_eq(store_user_revoke(st, "alice", &nr, err, sizeof err), STORE_OK);
    ck_assert_int_eq(nr, 1);
    ck_assert_int_eq(store_token_lookup(st, tok, &u, err, sizeof err), STORE_CONFLICT);
    ck_assert_int_eq(store_token_lookup(st, "plt_0000", &u, err, sizeof err), STORE_NOTFOUND);
    ck_assert_int_eq(store_user_revoke(st, "alice", &nr, err, sizeof err), STORE_NOOP);
    ck_assert_int_eq(store_user_revoke(st, "nobody", &nr, err, sizeof err), STORE_NOTFOUND);

    /* Lookups are cached, yet a revocation by another process (here: a second store on the same
     * file, as `prunelabd user revoke` is) is seen at the token's next use. */
    ck_assert_int_eq(store_token_create(st, "root", tok2, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_token_lookup(st, tok2, &u, err, sizeof err), STORE_OK);
    store_user_free(&u);
    ck_assert_int_eq(store_token_lookup(st, tok2, &u, err, sizeof err), STORE_OK);
    ck_assert_str_eq(u.name, "root");
    ck_assert_int_eq(u.admin, 1);
    store_user_free(&u);
    store *other = NULL;
    ck_assert_int_eq(store_open(g_db, g_sql_dir, &other, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_user_revoke(other, "root", &nr, err, sizeof err), STORE_OK);
    store_close(other);
    ck_assert_int_eq(store_token_lookup(st, tok2, &u, err, sizeof err), STORE_CONFLICT);
    /* ... and so is a new user added by another process. */
    char tok4[STORE_TOKEN_LEN];
    ck_assert_int_eq(store_open(g_db, g_sql_dir, &other, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_user_add(other, "carol", 0, tok4, err, sizeof err), STORE_OK);
    store_close(other);
    ck_assert_int_eq(store_token_lookup(st, tok4, &u, err, sizeof err), STORE_OK);
    ck_assert_str_eq(u.name, "carol");
    store_user_free(&u);
    assert_integrity(st);
    store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ models */

START_TEST(test_models)
{
    store *st = open_db();
    store_model m = {.name = "fm-small", .path = "/var/models/fm-small.safetensors", .dataset = "fashion-mnist",
                     .params = 12345, .accuracy = 0.875, .info_json = "{\"layers\": 2}", .owner = "alice"};
    int64_t id = 0;
    ck_assert_int_eq(store_model_insert(st, &m, &id, err, sizeof err), STORE_OK);
    ck_assert_int_gt(id, 0);
    ck_assert_int_eq(store_model_insert(st, &m, NULL, err, sizeof err), STORE_EXISTS);
    const char *bad[] = {"..", ".", "a/b", "", "x y", "0123456789012345678901234567890123456789012345678901234567890123456789"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        m.name = (char *)bad[i];
        ck_assert_msg(store_model_insert(st, &m, NULL, err, sizeof err) == STORE_INVALID, "name '%s'", bad[i]);
    }
    m.name = "tiny.v2_a-b";
    m.params = -1;
    m.accuracy = NAN;
    m.info_json = "{not json";
    ck_assert_int_eq(store_model_insert(st, &m, NULL, err, sizeof err), STORE_INVALID);
    m.info_json = NULL;
    ck_assert_int_eq(store_model_insert(st, &m, NULL, err, sizeof err), STORE_OK);

    store_model g;
    ck_assert_int_eq(store_model_get(st, "fm-small", &g, err, sizeof err), STORE_OK);
    ck_assert_str_eq(g.path, "/var/models/fm-small.safetensors");
    ck_assert_int_eq(g.params, 12345);
    ck_assert_double_eq_tol(g.accuracy, 0.875, 1e-12);
    ck_assert_str_eq(g.info_json, "{\"layers\": 2}");
    store_model_free(&g);
    ck_assert_int_eq(store_model_get(st, "tiny.v2_a-b", &g, err, sizeof err), STORE_OK);
    ck_assert_int_eq(g.params, -1);
    ck_assert(isnan(g.accuracy));
    ck_assert_ptr_null(g.info_json);
    store_model_free(&g);
    ck_assert_int_eq(store_model_get(st, "nope", &g, err, sizeof err), STORE_NOTFOUND);

    store_model *ms;
    size_t n;
    ck_assert_int_eq(store_models_list(st, &ms, &n, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(ms[0].name, "fm-small");
    store_models_free(ms, n);

    /* A queued job uses fm-small (make_job's model): deleting it is refused until the job ends. */
    int64_t jid = make_job(st, "alice", 0, 1, 0, NULL);
    ck_assert_int_eq(store_model_delete(st, "fm-small", err, sizeof err), STORE_CONFLICT);
    store_running *r;
    size_t nr;
    ck_assert_int_eq(store_job_cancel(st, jid, &r, &nr, err, sizeof err), STORE_OK);
    store_running_free(r, nr);
    ck_assert_int_eq(store_model_delete(st, "fm-small", err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_model_delete(st, "fm-small", err, sizeof err), STORE_NOTFOUND);
    assert_integrity(st);
    store_close(st);
}
END_TEST

/* A model's component table: recorded per file identity, replaced, gone with the model. */
/* Registered datasets (sql/004_datasets.sql): insert, get, list by name, a taken name and a name
 * that is not a dataset name refused. */
START_TEST(test_datasets_registered)
{
    store *st = open_db();
    store_dataset d = {.name = "tokens:wt2", .path = "/srv/data/wt2", .kind = "tokens", .owner = "root"};
    ck_assert_int_eq(store_dataset_insert(st, &d, err, sizeof err), STORE_OK);
    store_dataset t = {.name = "text:brown", .path = "/srv/brown.txt", .kind = "text", .owner = "root"};
    ck_assert_int_eq(store_dataset_insert(st, &t, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_dataset_insert(st, &d, err, sizeof err), STORE_EXISTS);
    store_dataset bad = {.name = "tokens:a/b", .path = "/x", .kind = "tokens", .owner = "root"};
    ck_assert_int_eq(store_dataset_insert(st, &bad, err, sizeof err), STORE_INVALID);
    bad.name = "tokens:x", bad.kind = "image";
    ck_assert_int_ne(store_dataset_insert(st, &bad, err, sizeof err), STORE_OK); /* the kind CHECK */
    store_dataset got;
    ck_assert_int_eq(store_dataset_get(st, "tokens:wt2", &got, err, sizeof err), STORE_OK);
    ck_assert_str_eq(got.path, "/srv/data/wt2");
    ck_assert_str_eq(got.kind, "tokens");
    ck_assert_str_eq(got.owner, "root");
    ck_assert_int_gt(got.created_ms, 0);
    store_dataset_free(&got);
    store_dataset_free(NULL);
    ck_assert_int_eq(store_dataset_get(st, "tokens:nope", &got, err, sizeof err), STORE_NOTFOUND);
    store_dataset *all = NULL;
    size_t n = 0;
    ck_assert_int_eq(store_datasets_list(st, &all, &n, err, sizeof err), STORE_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(all[0].name, "text:brown");
    ck_assert_str_eq(all[1].name, "tokens:wt2");
    store_datasets_free(all, n);
    store_close(st);
}
END_TEST

START_TEST(test_model_components)
{
    store *st = open_db();
    char *doc = NULL;
    ck_assert_int_eq(store_model_components_put(st, "nosuch", "k1", "{}", err, sizeof err), STORE_NOTFOUND);
    store_model m = {.name = "fm", .path = "/m/fm.safetensors", .params = 1, .accuracy = 0.5, .owner = "alice"};
    ck_assert_int_eq(store_model_insert(st, &m, NULL, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_model_components_get(st, "fm", "k1", &doc, err, sizeof err), STORE_NOTFOUND);
    ck_assert_ptr_null(doc);
    ck_assert_int_eq(store_model_components_put(st, "fm", "k1", "{\"total\":[1]}", err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_model_components_get(st, "fm", "k1", &doc, err, sizeof err), STORE_OK);
    ck_assert_str_eq(doc, "{\"total\":[1]}");
    free(doc);
    /* another file (a different identity) has no table until one is made for it */
    ck_assert_int_eq(store_model_components_get(st, "fm", "k2", &doc, err, sizeof err), STORE_NOTFOUND);
    ck_assert_int_eq(store_model_components_put(st, "fm", "k2", "{\"total\":[2]}", err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_model_components_get(st, "fm", "k1", &doc, err, sizeof err), STORE_NOTFOUND);
    ck_assert_int_eq(store_model_components_get(st, "fm", "k2", &doc, err, sizeof err), STORE_OK);
    ck_assert_str_eq(doc, "{\"total\":[2]}");
    free(doc);
    /* not JSON: refused by the schema, the old table kept */
    ck_assert_int_ne(store_model_components_put(st, "fm", "k3", "{not json", err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_model_components_get(st, "fm", "k2", &doc, err, sizeof err), STORE_OK);
    free(doc);
    /* deleting the model deletes its table: a new model of the same name starts without one */
    ck_assert_int_eq(store_model_delete(st, "fm", err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_model_insert(st, &m, NULL, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_model_components_get(st, "fm", "k2", &doc, err, sizeof err), STORE_NOTFOUND);
    assert_integrity(st);
    store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ jobs */

START_TEST(test_job_idempotency)
{
    store *st = open_db();
    const char *cells[] = {"{\"rate\": 0.3}", "{\"rate\": 0.5}"};
    store_job_new nj = {.owner = "alice", .type = STORE_JOB_ABLATION, .spec_json = "{\"rates\": [0.3, 0.5]}",
                        .idem_key = "k-1", .cell_specs = cells, .n_cells = 2};
    int64_t a = 0, b = 0, c = 0, d = 0;
    ck_assert_int_eq(store_job_create(st, &nj, &a, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_job_create(st, &nj, &b, err, sizeof err), STORE_EXISTS);
    ck_assert_int_eq(a, b);
    nj.spec_json = "{\"rates\": [0.9]}";
    ck_assert_int_eq(store_job_create(st, &nj, &c, err, sizeof err), STORE_CONFLICT);
    ck_assert_int_eq(c, a);
    nj.owner = "bob"; /* keys are per owner */
    ck_assert_int_eq(store_job_create(st, &nj, &d, err, sizeof err), STORE_OK);
    ck_assert_int_ne(d, a);
    nj.idem_key = NULL; /* no key: every POST is a new job */
    ck_assert_int_eq(store_job_create(st, &nj, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_job_create(st, &nj, &d, err, sizeof err), STORE_OK);
    ck_assert_int_ne(c, d);

    /* The replay created no cells: job a still has exactly its 2. */
    store_cell *cs;
    size_t n;
    ck_assert_int_eq(store_cells_list(st, a, -1, &cs, &n, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(cs[1].idx, 1);
    ck_assert_str_eq(cs[1].spec_json, "{\"rate\": 0.5}");
    ck_assert_str_eq(cs[1].owner, "alice");
    ck_assert_int_eq(cs[1].max_attempts, 3);
    store_cells_free(cs, n);

    /* Invalid input writes nothing: a bad cell spec rolls the whole job back. */
    const char *bad_cells[] = {"{\"ok\": 1}", "{oops"};
    store_job_new bad = {.owner = "carol", .type = STORE_JOB_JOINT, .spec_json = "{}", .cell_specs = bad_cells,
                         .n_cells = 2};
    ck_assert_int_eq(store_job_create(st, &bad, &c, err, sizeof err), STORE_INVALID);
    ck_assert_msg(strstr(err, "cell 1"), "message: %s", err);
    bad.n_cells = 0;
    ck_assert_int_eq(store_job_create(st, &bad, &c, err, sizeof err), STORE_INVALID);
    store_job_filter f = {.owner = "carol", .type = -1, .state = -1};
    store_job *js;
    char next[STORE_PAGE_TOKEN_LEN];
    ck_assert_int_eq(store_jobs_list(st, &f, &js, &n, next, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 0);
    store_jobs_free(js, n);
    assert_integrity(st);
    store_close(st);
}
END_TEST

typedef struct { const char *owner; int64_t job; int idx; } claim_t;

static claim_t claim_one(store *st, int cap)
{
    store_cell c;
    claim_t out = {NULL, 0, -1};
    int rc = store_cell_claim(st, "w0", cap, 60000, &c, err, sizeof err);
    ck_assert_msg(rc == STORE_OK || rc == STORE_NOTFOUND, "claim: %s", err);
    if (rc == STORE_OK) {
        static char owners[64][16];
        static int k;
        snprintf(owners[k % 64], 16, "%s", c.owner);
        out.owner = owners[k++ % 64];
        out.job = c.job_id;
        out.idx = c.idx;
        ck_assert_int_eq(c.state, STORE_STATE_RUNNING);
        ck_assert_int_eq(c.attempts, 1);
        ck_assert_int_eq(c.lease_expires_ms, g_now + 60000);
        store_cell_free(&c);
    }
    return out;
}

START_TEST(test_claim_order)
{
    store *st = open_db();
    int64_t a1 = make_job(st, "alice", 0, 3, 0, NULL);
    int64_t b1 = make_job(st, "bob", 0, 2, 0, NULL);
    int64_t a2 = make_job(st, "alice", 5, 2, 0, NULL); /* newer but higher priority */
    int64_t c1 = make_job(st, "carol", 0, 2, 0, NULL);
    struct { const char *owner; int64_t job; int idx; } want[] = {
        {"alice", a2, 0}, {"bob", b1, 0}, {"carol", c1, 0}, /* never served: oldest pending job first */
        {"alice", a2, 1}, {"bob", b1, 1}, {"carol", c1, 1}, /* round robin */
        {"alice", a1, 0}, {"alice", a1, 1}, {"alice", a1, 2}, /* only alice is left */
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        g_now += 10;
        claim_t got = claim_one(st, 0);
        ck_assert_msg(got.owner && !strcmp(got.owner, want[i].owner) && got.job == want[i].job && got.idx == want[i].idx,
                      "claim %zu: got %s job %lld idx %d", i, got.owner ? got.owner : "(none)", (long long)got.job,
                      got.idx);
    }
    ck_assert_ptr_null(claim_one(st, 0).owner);

    store_job j = get_job(st, a1);
    ck_assert_int_eq(j.state, STORE_STATE_RUNNING);
    ck_assert_int_eq(j.counts[STORE_STATE_RUNNING], 3);
    ck_assert_int_eq(j.counts[STORE_STATE_QUEUED], 0);
    ck_assert_int_gt(j.started_ms, 0);
    store_job_free(&j);
    store_metrics m;
    ck_assert_int_eq(store_metrics_get(st, &m, err, sizeof err), STORE_OK);
    ck_assert_int_eq(m.cells[STORE_STATE_RUNNING], 9);
    ck_assert_int_eq(m.cells[STORE_STATE_QUEUED], 0);
    ck_assert_int_eq(m.jobs[STORE_STATE_RUNNING], 4);
    assert_integrity(st);
    store_close(st);
}
END_TEST

START_TEST(test_claim_per_owner_cap)
{
    store *st = open_db();
    make_job(st, "alice", 0, 3, 0, NULL);
    make_job(st, "bob", 0, 1, 0, NULL);
    store_cell c1, c2, c3;
    ck_assert_int_eq(store_cell_claim(st, "w", 1, 1000, &c1, err, sizeof err), STORE_OK);
    ck_assert_str_eq(c1.owner, "alice");
    ck_assert_int_eq(store_cell_claim(st, "w", 1, 1000, &c2, err, sizeof err), STORE_OK);
    ck_assert_str_eq(c2.owner, "bob");
    /* alice is at her cap and bob has nothing queued. */
    ck_assert_int_eq(store_cell_claim(st, "w", 1, 1000, &c3, err, sizeof err), STORE_NOTFOUND);
    /* Without the cap alice's next cell is claimable. */
    ck_assert_int_eq(store_cell_claim(st, "w", 2, 1000, &c3, err, sizeof err), STORE_OK);
    ck_assert_str_eq(c3.owner, "alice");
    ck_assert_int_eq(c3.idx, 1);
    store_cell_free(&c3);
    ck_assert_int_eq(store_cell_claim(st, "w", 2, 1000, &c3, err, sizeof err), STORE_NOTFOUND);
    /* Finishing one of alice's cells frees a slot. */
    ck_assert_int_eq(store_cell_finish(st, c1.id, "{\"accuracy\": 0.9}", err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_claim(st, "w", 2, 1000, &c3, err, sizeof err), STORE_OK);
    ck_assert_int_eq(c3.idx, 2);
    store_cell_free(&c1);
    store_cell_free(&c2);
    store_cell_free(&c3);
    store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ concurrent claims */

#define CONC_CELLS 300
#define CONC_THREADS 4

typedef struct {
    store *st;          /* shared store, or NULL: the thread opens its own (a second connection) */
    int64_t ids[CONC_CELLS];
    int n;
    int errors;
} conc_arg;

static void *conc_worker(void *p)
{
    conc_arg *a = p;
    char e[512];
    store *st = a->st;
    if (!st && store_open(g_db, g_sql_dir, &st, e, sizeof e) != STORE_OK) {
        a->errors++;
        return NULL;
    }
    for (;;) {
        store_cell c;
        int rc = store_cell_claim(st, "conc", 0, 60000, &c, e, sizeof e);
        if (rc == STORE_NOTFOUND) break;
        if (rc != STORE_OK) { a->errors++; break; }
        a->ids[a->n++] = c.id;
        if (store_cell_finish(st, c.id, "{\"ok\": true}", e, sizeof e) != STORE_OK) a->errors++;
        store_cell_free(&c);
    }
    if (!a->st) store_close(st);
    return NULL;
}

static void run_concurrent(store *st, int own_connections)
{
    const char *owners[] = {"alice", "bob", "carol"};
    int64_t jobs[6];
    for (int i = 0; i < 6; i++) jobs[i] = make_job(st, owners[i % 3], i % 2, CONC_CELLS / 6, 0, NULL);
    static conc_arg args[CONC_THREADS];
    pthread_t th[CONC_THREADS];
    memset(args, 0, sizeof args);
    for (int t = 0; t < CONC_THREADS; t++) {
        args[t].st = own_connections ? NULL : st;
        ck_assert_int_eq(pthread_create(&th[t], NULL, conc_worker, &args[t]), 0);
    }
    for (int t = 0; t < CONC_THREADS; t++) pthread_join(th[t], NULL);
    char *seen = calloc(1 << 16, 1);
    int total = 0;
    for (int t = 0; t < CONC_THREADS; t++) {
        ck_assert_int_eq(args[t].errors, 0);
        for (int i = 0; i < args[t].n; i++) {
            ck_assert_int_lt(args[t].ids[i], 1 << 16);
            ck_assert_msg(!seen[args[t].ids[i]], "cell %lld claimed twice", (long long)args[t].ids[i]);
            seen[args[t].ids[i]] = 1;
            total++;
        }
    }
    free(seen);
    ck_assert_int_eq(total, CONC_CELLS);
    for (int i = 0; i < 6; i++) {
        store_job j = get_job(st, jobs[i]);
        ck_assert_int_eq(j.state, STORE_STATE_DONE);
        ck_assert_int_eq(j.counts[STORE_STATE_DONE], CONC_CELLS / 6);
        ck_assert_double_eq_tol(j.progress, 1.0, 1e-12);
        store_job_free(&j);
    }
    /* Every cell ran exactly once. */
    store_cell *cs;
    size_t n;
    for (int i = 0; i < 6; i++) {
        ck_assert_int_eq(store_cells_list(st, jobs[i], -1, &cs, &n, err, sizeof err), STORE_OK);
        for (size_t k = 0; k < n; k++) ck_assert_int_eq(cs[k].attempts, 1);
        store_cells_free(cs, n);
    }
    assert_integrity(st);
}

START_TEST(test_claim_concurrent_threads)
{
    store *st = open_db();
    store_clock_set(st, NULL, NULL);
    run_concurrent(st, 0);
    store_close(st);
}
END_TEST

START_TEST(test_claim_concurrent_connections)
{
    store *st = open_db();
    store_clock_set(st, NULL, NULL);
    run_concurrent(st, 1); /* each thread its own store: atomicity comes from BEGIN IMMEDIATE */
    store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ finish, fail, leases */

START_TEST(test_finish_idempotent)
{
    store *st = open_db();
    int64_t jid = make_job(st, "alice", 0, 2, 0, NULL);
    store_cell c, d;
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_set_pid(st, c.id, c.attempts, 4242, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_progress(st, c.id, c.attempts, 0.5, "finetune", 1000, err, sizeof err), STORE_OK);
    store_job j = get_job(st, jid);
    ck_assert_double_eq_tol(j.progress, 0.25, 1e-12);
    store_job_free(&j);
    ck_assert_int_eq(store_cell_finish(st, c.id, "{\"accuracy\": 0.81}", err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_finish(st, c.id, "{\"accuracy\": 0.11}", err, sizeof err), STORE_NOOP);
    ck_assert_int_eq(store_cell_finish(st, 999999, "{}", err, sizeof err), STORE_NOTFOUND);
    ck_assert_int_eq(store_cell_get(st, c.id, &d, err, sizeof err), STORE_OK);
    ck_assert_int_eq(d.state, STORE_STATE_DONE);
    ck_assert_str_eq(d.result_json, "{\"accuracy\": 0.81}");
    ck_assert_int_eq(d.pid, 0);
    ck_assert_ptr_null(d.lease_owner);
    ck_assert_double_eq(d.progress, 1.0);
    ck_assert_int_gt(d.finished_ms, 0);
    store_cell_free(&d);
    /* A late failure report of the finished attempt changes nothing. */
    ck_assert_int_eq(store_cell_fail(st, c.id, c.attempts, "runtime", "x", NULL, 1, NULL, err, sizeof err), STORE_NOOP);
    ck_assert_int_eq(store_cell_progress(st, c.id, c.attempts, 0.9, NULL, 1000, err, sizeof err), STORE_NOTFOUND);
    store_cell_free(&c);

    j = get_job(st, jid);
    ck_assert_int_eq(j.state, STORE_STATE_RUNNING);
    ck_assert_int_eq(j.counts[STORE_STATE_DONE], 1);
    ck_assert_int_eq(j.counts[STORE_STATE_QUEUED], 1);
    store_job_free(&j);
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_finish(st, c.id, "{\"accuracy\": 0.7}", err, sizeof err), STORE_OK);
    store_cell_free(&c);
    j = get_job(st, jid);
    ck_assert_int_eq(j.state, STORE_STATE_DONE);
    ck_assert_int_gt(j.finished_ms, 0);
    ck_assert_ptr_null(j.error);
    store_job_free(&j);
    /* A result that is not JSON is refused and the cell keeps running. */
    make_job(st, "bob", 0, 1, 0, NULL);
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_finish(st, c.id, "{bad", err, sizeof err), STORE_INVALID);
    ck_assert_int_eq(store_cell_get(st, c.id, &d, err, sizeof err), STORE_OK);
    ck_assert_int_eq(d.state, STORE_STATE_RUNNING);
    store_cell_free(&d);
    store_cell_free(&c);
    assert_integrity(st);
    store_close(st);
}
END_TEST

START_TEST(test_fail_retry_then_failed)
{
    store *st = open_db();
    int64_t jid = make_job(st, "alice", 0, 1, 2, NULL);
    store_cell c;
    store_fail_outcome o;
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_fail(st, c.id, 1, "runtime", "killed", "line1\nline2", 1, &o, err, sizeof err), STORE_OK);
    ck_assert_int_eq(o, STORE_FAIL_REQUEUED);
    store_cell_free(&c);
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(c.attempts, 2);
    ck_assert_str_eq(c.stderr_tail, "line1\nline2"); /* the previous attempt's diagnosis is kept */
    /* A stale report from attempt 1 does not touch attempt 2. */
    ck_assert_int_eq(store_cell_fail(st, c.id, 1, "runtime", "stale", NULL, 1, &o, err, sizeof err), STORE_NOOP);
    ck_assert_int_eq(store_cell_fail(st, c.id, 2, "runtime", "killed again", "tail 2", 1, &o, err, sizeof err), STORE_OK);
    ck_assert_int_eq(o, STORE_FAIL_FAILED);
    int64_t cid = c.id;
    store_cell_free(&c);
    ck_assert_int_eq(store_cell_get(st, cid, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(c.state, STORE_STATE_FAILED);
    ck_assert_str_eq(c.error_message, "killed again");
    ck_assert_str_eq(c.stderr_tail, "tail 2");
    store_cell_free(&c);
    store_job j = get_job(st, jid);
    ck_assert_int_eq(j.state, STORE_STATE_FAILED);
    ck_assert_ptr_nonnull(j.error);
    ck_assert_int_eq(j.counts[STORE_STATE_FAILED], 1);
    store_job_free(&j);

    /* A deterministic error (retry = 0) fails at once even with attempts left. */
    int64_t j2 = make_job(st, "alice", 0, 1, 5, NULL);
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_fail(st, c.id, 1, "bad_spec", "rate: 1 is outside [0, 1)", NULL, 0, &o, err, sizeof err),
                     STORE_OK);
    ck_assert_int_eq(o, STORE_FAIL_FAILED);
    store_cell_free(&c);

    /* retry-failed: failed cells only, attempts reset. */
    int n = -1;
    ck_assert_int_eq(store_job_retry_failed(st, jid, &n, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 1);
    j = get_job(st, jid);
    ck_assert_int_eq(j.state, STORE_STATE_RUNNING);
    ck_assert_int_eq(j.counts[STORE_STATE_QUEUED], 1);
    ck_assert_ptr_null(j.error);
    ck_assert_int_eq(j.finished_ms, 0);
    store_job_free(&j);
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(c.job_id, jid); /* j2 has nothing queued */
    ck_assert_int_eq(c.attempts, 1);
    ck_assert_int_eq(store_cell_finish(st, c.id, "{\"accuracy\": 0.5}", err, sizeof err), STORE_OK);
    store_cell_free(&c);
    ck_assert_int_eq(store_job_retry_failed(st, jid, &n, err, sizeof err), STORE_NOOP);
    j = get_job(st, jid);
    ck_assert_int_eq(j.state, STORE_STATE_DONE);
    store_job_free(&j);
    ck_assert_int_eq(store_job_retry_failed(st, 987654, &n, err, sizeof err), STORE_NOTFOUND);
    (void)j2;
    assert_integrity(st);
    store_close(st);
}
END_TEST

START_TEST(test_lease_expiry)
{
    store *st = open_db();
    int64_t jid = make_job(st, "alice", 0, 1, 2, NULL);
    store_cell c;
    int nq = -1, nf = -1;
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c, err, sizeof err), STORE_OK);
    int64_t id = c.id;
    store_cell_free(&c);
    g_now += 500;
    ck_assert_int_eq(store_cell_progress(st, id, 1, 0.2, "prune", 1000, err, sizeof err), STORE_OK); /* lease -> +1500 */
    g_now += 700;
    ck_assert_int_eq(store_cells_requeue_expired(st, &nq, &nf, err, sizeof err), STORE_OK);
    ck_assert_int_eq(nq + nf, 0); /* the heartbeat kept it */
    g_now += 900;
    ck_assert_int_eq(store_cells_requeue_expired(st, &nq, &nf, err, sizeof err), STORE_OK);
    ck_assert_int_eq(nq, 1);
    ck_assert_int_eq(nf, 0);
    ck_assert_int_eq(store_cell_get(st, id, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(c.state, STORE_STATE_QUEUED);
    ck_assert_str_eq(c.error_code, "lease_expired");
    ck_assert_ptr_null(c.lease_owner);
    store_cell_free(&c);
    /* The old worker's heartbeat now tells it the lease is gone. */
    ck_assert_int_eq(store_cell_progress(st, id, 1, 0.3, NULL, 1000, err, sizeof err), STORE_NOTFOUND);

    ck_assert_int_eq(store_cell_claim(st, "w2", 0, 1000, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(c.attempts, 2);
    ck_assert_str_eq(c.lease_owner, "w2");
    store_cell_free(&c);
    g_now += 5000;
    ck_assert_int_eq(store_cells_requeue_expired(st, &nq, &nf, err, sizeof err), STORE_OK);
    ck_assert_int_eq(nq, 0);
    ck_assert_int_eq(nf, 1);
    store_job j = get_job(st, jid);
    ck_assert_int_eq(j.state, STORE_STATE_FAILED);
    store_job_free(&j);

    /* A result arriving late from a lost lease is still kept: results are never thrown away. */
    ck_assert_int_eq(store_cell_finish(st, id, "{\"accuracy\": 0.6}", err, sizeof err), STORE_OK);
    j = get_job(st, jid);
    ck_assert_int_eq(j.state, STORE_STATE_DONE);
    store_job_free(&j);
    assert_integrity(st);
    store_close(st);
}
END_TEST

START_TEST(test_recover_after_crash)
{
    store *st = open_db();
    int64_t j1 = make_job(st, "alice", 0, 3, 3, NULL);
    int64_t j2 = make_job(st, "bob", 0, 1, 1, NULL);
    store_close(st);

    /* A daemon claims cells, reports pids and dies without finishing them. */
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        store *cs = NULL;
        char e[512];
        if (store_open(g_db, g_sql_dir, &cs, e, sizeof e) != STORE_OK) _exit(3);
        store_cell c;
        for (int i = 0; i < 3; i++) {
            if (store_cell_claim(cs, "dead", 0, 3600000, &c, e, sizeof e) != STORE_OK) _exit(4);
            store_cell_set_pid(cs, c.id, c.attempts, 1000 + i, e, sizeof e);
            store_cell_free(&c);
        }
        kill(getpid(), SIGKILL);
        _exit(5);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    st = open_db();
    store_metrics m;
    ck_assert_int_eq(store_metrics_get(st, &m, err, sizeof err), STORE_OK);
    ck_assert_int_eq(m.cells[STORE_STATE_RUNNING], 3);
    int nq = -1, nf = -1;
    ck_assert_int_eq(store_recover(st, &nq, &nf, err, sizeof err), STORE_OK);
    ck_assert_int_eq(nq, 2); /* alice's two cells have attempts left */
    ck_assert_int_eq(nf, 1); /* bob's single-attempt cell is failed */
    store_job a = get_job(st, j1), b = get_job(st, j2);
    ck_assert_int_eq(a.counts[STORE_STATE_QUEUED], 3);
    ck_assert_int_eq(a.counts[STORE_STATE_RUNNING], 0);
    ck_assert_int_eq(b.state, STORE_STATE_FAILED);
    store_job_free(&a);
    store_job_free(&b);
    store_cell *cs;
    size_t n;
    ck_assert_int_eq(store_cells_list(st, j1, STORE_STATE_QUEUED, &cs, &n, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 3);
    int interrupted = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(cs[i].pid, 0);
        if (cs[i].error_code && !strcmp(cs[i].error_code, "interrupted")) interrupted++;
    }
    ck_assert_int_eq(interrupted, 2);
    store_cells_free(cs, n);
    /* Requeued cells run and finish. */
    store_cell c;
    while (store_cell_claim(st, "w", 0, 1000, &c, err, sizeof err) == STORE_OK) {
        ck_assert_int_eq(store_cell_finish(st, c.id, "{\"accuracy\": 0.5}", err, sizeof err), STORE_OK);
        store_cell_free(&c);
    }
    a = get_job(st, j1);
    ck_assert_int_eq(a.state, STORE_STATE_DONE);
    store_job_free(&a);
    ck_assert_int_eq(store_recover(st, &nq, &nf, err, sizeof err), STORE_OK);
    ck_assert_int_eq(nq + nf, 0);
    assert_integrity(st);
    store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ cancel, delete */

START_TEST(test_cancel)
{
    store *st = open_db();
    int64_t jid = make_job(st, "alice", 0, 5, 3, NULL);
    store_cell c1, c2;
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c1, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c2, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_set_pid(st, c1.id, c1.attempts, 1234, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_set_pid(st, c2.id, c2.attempts, 5678, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_job_delete(st, jid, err, sizeof err), STORE_CONFLICT);

    uint64_t v0 = store_version(st);
    store_running *r;
    size_t n;
    ck_assert_int_eq(store_job_cancel(st, jid, &r, &n, err, sizeof err), STORE_OK);
    ck_assert_uint_gt(store_version(st), v0);
    ck_assert_uint_eq(store_wait(st, v0, 10), store_version(st)); /* returns at once: changed */
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(r[0].pid, 1234);
    ck_assert_int_eq(r[1].pid, 5678);
    ck_assert_int_eq(r[0].cell_id, c1.id);
    ck_assert_str_eq(r[0].lease_owner, "w");
    store_running_free(r, n);

    store_job j = get_job(st, jid);
    ck_assert_int_eq(j.state, STORE_STATE_CANCELLED);
    ck_assert_int_eq(j.counts[STORE_STATE_CANCELLED], 3);
    ck_assert_int_eq(j.counts[STORE_STATE_RUNNING], 2);
    store_job_free(&j);
    store_cell c3;
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c3, err, sizeof err), STORE_NOTFOUND);

    /* Cancelling again returns what still runs. */
    ck_assert_int_eq(store_job_cancel(st, jid, &r, &n, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 2);
    store_running_free(r, n);

    /* One running cell still delivers its result (kept); the other dies: cancelled, not retried. */
    ck_assert_int_eq(store_cell_finish(st, c1.id, "{\"accuracy\": 0.4}", err, sizeof err), STORE_OK);
    store_fail_outcome o;
    ck_assert_int_eq(store_cell_fail(st, c2.id, c2.attempts, "signal", "SIGTERM", NULL, 1, &o, err, sizeof err), STORE_OK);
    ck_assert_int_eq(o, STORE_FAIL_CANCELLED);
    j = get_job(st, jid);
    ck_assert_int_eq(j.state, STORE_STATE_CANCELLED);
    ck_assert_int_eq(j.counts[STORE_STATE_DONE], 1);
    ck_assert_int_eq(j.counts[STORE_STATE_CANCELLED], 4);
    ck_assert_int_eq(j.counts[STORE_STATE_RUNNING], 0);
    store_job_free(&j);
    int64_t gone = c1.id;
    store_cell_free(&c1);
    store_cell_free(&c2);

    /* A finished job cannot be cancelled; a job with nothing running can be deleted. */
    int64_t done = make_job(st, "bob", 0, 1, 0, NULL);
    ck_assert_int_eq(store_cell_claim(st, "w", 0, 1000, &c1, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_finish(st, c1.id, "{}", err, sizeof err), STORE_OK);
    store_cell_free(&c1);
    ck_assert_int_eq(store_job_cancel(st, done, &r, &n, err, sizeof err), STORE_NOOP);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(store_job_cancel(st, 424242, &r, &n, err, sizeof err), STORE_NOTFOUND);
    ck_assert_int_eq(store_job_delete(st, jid, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_job_delete(st, jid, err, sizeof err), STORE_NOTFOUND);
    ck_assert_int_eq(store_cell_get(st, gone, &c3, err, sizeof err), STORE_NOTFOUND); /* cells went too */
    store_cell *cs;
    ck_assert_int_eq(store_cells_list(st, jid, -1, &cs, &n, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 0);
    store_cells_free(cs, n);
    /* Ids are never reused after a delete. */
    int64_t again = make_job(st, "alice", 0, 1, 0, NULL);
    ck_assert_int_gt(again, done);
    assert_integrity(st);
    store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ pagination */

static void paginate(store *st, store_job_filter f, int64_t *seen_count, int64_t max_id, int *pages)
{
    char tok[STORE_PAGE_TOKEN_LEN] = "";
    int64_t last = f.order == STORE_ORDER_NEWEST ? INT64_MAX : 0;
    *pages = 0;
    for (;;) {
        store_job *js;
        size_t n;
        char next[STORE_PAGE_TOKEN_LEN];
        f.page_token = tok;
        ck_assert_int_eq(store_jobs_list(st, &f, &js, &n, next, err, sizeof err), STORE_OK);
        (*pages)++;
        ck_assert_int_le(n, (size_t)f.limit);
        for (size_t i = 0; i < n; i++) {
            ck_assert(f.order == STORE_ORDER_NEWEST ? js[i].id < last : js[i].id > last);
            last = js[i].id;
            ck_assert_int_le(js[i].id, max_id);
            if (f.owner) ck_assert_str_eq(js[i].owner, f.owner);
            seen_count[js[i].id]++;
        }
        store_jobs_free(js, n);
        if (!next[0]) break;
        ck_assert_int_eq(n, (size_t)f.limit);
        snprintf(tok, sizeof tok, "%s", next);
        if (*pages == 3) make_job(st, "alice", 0, 1, 0, NULL); /* a job submitted mid-listing */
    }
}

START_TEST(test_pagination)
{
    store *st = open_db();
    int64_t max_id = 0;
    for (int i = 0; i < 57; i++) max_id = make_job(st, i % 3 ? "alice" : "bob", 0, 1, 0, NULL);
    ck_assert_int_lt(max_id, 200);
    for (int order = 0; order < 2; order++) {
        int64_t seen[300] = {0};
        int pages;
        store_job_filter f = {.owner = NULL, .type = -1, .state = -1, .order = (store_order)order, .limit = 10};
        int64_t ceiling = order == STORE_ORDER_NEWEST ? max_id : 1000;
        int64_t before = max_id;
        paginate(st, f, seen, ceiling, &pages);
        int64_t count = 0;
        for (int64_t id = 1; id <= before; id++) {
            ck_assert_msg(seen[id] == 1, "order %d: job %lld seen %lld times", order, (long long)id, (long long)seen[id]);
            count++;
        }
        ck_assert_int_eq(count, before);
        max_id++; /* the job made mid-listing */
        /* Newest first never shows the job submitted after the first page; oldest first reaches it. */
        ck_assert_int_eq(seen[max_id], order == STORE_ORDER_NEWEST ? 0 : 1);
    }
    /* Filters: bob's jobs only, exactly once each. */
    int64_t seen[300] = {0};
    int pages;
    store_job_filter f = {.owner = "bob", .type = STORE_JOB_ABLATION, .state = STORE_STATE_QUEUED,
                          .order = STORE_ORDER_OLDEST, .limit = 4};
    paginate(st, f, seen, 1000, &pages);
    int bobs = 0;
    for (int i = 0; i < 300; i++) {
        ck_assert_int_le(seen[i], 1);
        bobs += (int)seen[i];
    }
    ck_assert_int_eq(bobs, 19);
    ck_assert_int_eq(pages, 5);
    f.type = STORE_JOB_TRAIN;
    f.page_token = NULL;
    store_job *js;
    size_t n;
    char next[STORE_PAGE_TOKEN_LEN];
    ck_assert_int_eq(store_jobs_list(st, &f, &js, &n, next, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_str_eq(next, "");
    store_jobs_free(js, n);
    /* Tokens are checked: garbage and a token of the other order are refused. */
    f.type = -1;
    ck_assert_int_eq(store_jobs_list(st, &f, &js, &n, next, err, sizeof err), STORE_OK);
    ck_assert_str_ne(next, "");
    store_jobs_free(js, n);
    char tok[STORE_PAGE_TOKEN_LEN];
    snprintf(tok, sizeof tok, "%s", next);
    f.order = STORE_ORDER_NEWEST;
    f.page_token = tok;
    ck_assert_int_eq(store_jobs_list(st, &f, &js, &n, next, err, sizeof err), STORE_INVALID);
    const char *bad[] = {"x1", "n", "n-1", "n0", "nZZ", "n1234567890abcdef0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f.page_token = bad[i];
        ck_assert_msg(store_jobs_list(st, &f, &js, &n, next, err, sizeof err) == STORE_INVALID, "token %s", bad[i]);
    }
    assert_integrity(st);
    store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ crash consistency */

START_TEST(test_killed_writer_mid_transaction)
{
    store *st = open_db();
    int64_t jid = make_job(st, "alice", 0, 4, 0, NULL);
    store_close(st);

    /* The child opens its own connection, writes a large transaction (spilling into the WAL)
     * and exits without committing. */
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        sqlite3 *db;
        if (sqlite3_open(g_db, &db) != SQLITE_OK) _exit(3);
        sqlite3_exec(db, "PRAGMA cache_size = 10", NULL, NULL, NULL);
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) _exit(4);
        sqlite3_exec(db, "UPDATE cells SET state = 'done', result = '{}'", NULL, NULL, NULL);
        sqlite3_exec(db,
                     "WITH RECURSIVE k(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM k WHERE x < 5000) "
                     "INSERT INTO jobs(owner, type, spec, n_cells, n_queued, created_ms) "
                     "SELECT 'ghost', 'train', json_object('pad', hex(randomblob(200))), 1, 1, 0 FROM k",
                     NULL, NULL, NULL);
        _exit(0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    st = open_db();
    assert_integrity(st);
    store_job j = get_job(st, jid);
    ck_assert_int_eq(j.counts[STORE_STATE_QUEUED], 4);
    store_job_free(&j);
    store_job_filter f = {.owner = "ghost", .type = -1, .state = -1};
    store_job *js;
    size_t n;
    char next[STORE_PAGE_TOKEN_LEN];
    ck_assert_int_eq(store_jobs_list(st, &f, &js, &n, next, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 0);
    store_jobs_free(js, n);
    /* The database still takes writes. */
    make_job(st, "bob", 0, 2, 0, NULL);
    assert_integrity(st);
    store_close(st);
}
END_TEST

START_TEST(test_killed_writer_sigkill)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    store *st = open_db(); /* creates the schema before the child starts */
    store_close(st);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        close(fds[0]);
        store *cs = NULL;
        char e[512];
        if (store_open(g_db, g_sql_dir, &cs, e, sizeof e) != STORE_OK) _exit(3);
        char *specs[20];
        for (int i = 0; i < 20; i++)
            if (asprintf(&specs[i], "{\"i\": %d, \"pad\": \"%0200d\"}", i, i) < 0) _exit(4);
        for (int k = 0;; k++) { /* until killed: each committed job id goes down the pipe */
            store_job_new nj = {.owner = "alice", .type = STORE_JOB_SENSITIVITY, .spec_json = "{}",
                                .cell_specs = (const char *const *)specs, .n_cells = 20};
            int64_t id;
            if (store_job_create(cs, &nj, &id, e, sizeof e) != STORE_OK) _exit(5);
            if (write(fds[1], &id, sizeof id) != sizeof id) _exit(6);
            store_cell c;
            if (k % 3 == 0 && store_cell_claim(cs, "w", 0, 1000, &c, e, sizeof e) == STORE_OK) {
                store_cell_finish(cs, c.id, "{\"accuracy\": 0.5}", e, sizeof e);
                store_cell_free(&c);
            }
        }
    }
    close(fds[1]);
    int64_t ids[64];
    int n_ids = 0;
    while (n_ids < 40 && read(fds[0], &ids[n_ids], sizeof ids[0]) == sizeof ids[0]) n_ids++;
    kill(child, SIGKILL);
    int status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert(WIFSIGNALED(status));
    int64_t extra;
    while (read(fds[0], &extra, sizeof extra) == sizeof extra) {} /* reported after we stopped reading */
    close(fds[0]);
    ck_assert_int_eq(n_ids, 40);

    st = open_db();
    assert_integrity(st);
    /* Every job the writer reported committed is there, whole, with consistent counts. */
    for (int i = 0; i < n_ids; i++) {
        store_job j = get_job(st, ids[i]);
        ck_assert_int_eq(j.n_cells, 20);
        int sum = 0;
        for (int k = 0; k < STORE_STATE_COUNT; k++) sum += j.counts[k];
        ck_assert_int_eq(sum, 20);
        store_cell *cs;
        size_t n;
        ck_assert_int_eq(store_cells_list(st, ids[i], -1, &cs, &n, err, sizeof err), STORE_OK);
        ck_assert_int_eq(n, 20);
        int done = 0;
        for (size_t k = 0; k < n; k++) {
            ck_assert_int_eq(cs[k].idx, (int)k);
            if (cs[k].state == STORE_STATE_DONE) {
                ck_assert_str_eq(cs[k].result_json, "{\"accuracy\": 0.5}");
                done++;
            }
        }
        ck_assert_int_eq(done, j.counts[STORE_STATE_DONE]);
        store_cells_free(cs, n);
        store_job_free(&j);
    }
    int nq, nf;
    ck_assert_int_eq(store_recover(st, &nq, &nf, err, sizeof err), STORE_OK);
    assert_integrity(st);
    store_close(st);
}
END_TEST

START_TEST(test_readers_see_commits_and_wait)
{
    store *st = open_db();
    uint64_t v = store_version(st);
    ck_assert_uint_eq(store_wait(st, v, 5), v); /* nothing changed: times out, same version */
    int64_t id = make_job(st, "alice", 0, 1, 0, NULL);
    ck_assert_uint_gt(store_wait(st, v, 1000), v);
    /* A read right after the commit sees it (readers are separate connections). */
    store_job j = get_job(st, id);
    ck_assert_int_eq(j.id, id);
    store_job_free(&j);
    ck_assert_int_eq(store_job_baseline_set(st, id, "{\"accuracy\": 0.9}", err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_job_baseline_set(st, id, "nope", err, sizeof err), STORE_INVALID);
    ck_assert_int_eq(store_job_baseline_set(st, id + 100, "{}", err, sizeof err), STORE_NOTFOUND);
    j = get_job(st, id);
    ck_assert_str_eq(j.baseline_json, "{\"accuracy\": 0.9}");
    ck_assert_str_eq(j.model, "fm-small");
    ck_assert_int_eq(j.type, STORE_JOB_ABLATION);
    store_job_free(&j);
    ck_assert_int_eq(store_job_get(st, id + 100, &j, err, sizeof err), STORE_NOTFOUND);
    ck_assert_int_eq(store_job_type_parse("rsst"), STORE_JOB_RSST);
    ck_assert_int_eq(store_job_type_parse("imp"), -1);
    ck_assert_int_eq(store_state_parse("cancelled"), STORE_STATE_CANCELLED);
    ck_assert_str_eq(store_rc_name(STORE_NOOP), "noop");
    ck_assert(store_name_valid("fm-small.v2_x"));
    ck_assert(!store_name_valid(".."));
    store_close(st);
}
END_TEST

/* ------------------------------------------------------------------ job list page renderers */

/* A job's input model must exist and a train job's output name must be free, in the same
 * transaction as the insert. */
START_TEST(test_job_create_checks_names)
{
    store *st = open_db();
    const char *cells[] = {"{}"};
    int64_t id = 0;
    store_job_new nj = {.owner = "alice", .type = STORE_JOB_ABLATION, .spec_json = "{}", .model = "gone",
                        .cell_specs = cells, .n_cells = 1};
    ck_assert_int_eq(store_job_create(st, &nj, &id, err, sizeof err), STORE_NOTFOUND);
    ck_assert_ptr_nonnull(strstr(err, "gone"));
    ck_assert_int_eq(id, 0);
    ensure_model(st, "base");
    store_job_new tj = {.owner = "alice", .type = STORE_JOB_TRAIN, .spec_json = "{\"n\": 1}", .out_model = "fresh",
                        .cell_specs = cells, .n_cells = 1};
    ck_assert_int_eq(store_job_create(st, &tj, &id, err, sizeof err), STORE_OK);
    int64_t first = id;
    tj.spec_json = "{\"n\": 2}";
    ck_assert_int_eq(store_job_create(st, &tj, &id, err, sizeof err), STORE_TAKEN); /* a live job trains it */
    ck_assert_ptr_nonnull(strstr(err, "fresh"));
    tj.out_model = "base";
    ck_assert_int_eq(store_job_create(st, &tj, &id, err, sizeof err), STORE_TAKEN); /* a model has the name */
    /* once the first job is no longer live, its name is free again */
    store_running *running = NULL;
    size_t n_running = 0;
    ck_assert_int_eq(store_job_cancel(st, first, &running, &n_running, err, sizeof err), STORE_OK);
    ck_assert_uint_eq(n_running, 0);
    store_running_free(running, n_running);
    tj.out_model = "fresh";
    ck_assert_int_eq(store_job_create(st, &tj, &id, err, sizeof err), STORE_OK);
    assert_integrity(st);
    store_close(st);
}
END_TEST

/* A job of the given type/owner/model with n cells (cell i: {"i": i}). */
static int64_t make_job_typed(store *st, const char *owner, store_job_type type, const char *model, int priority, int n)
{
    /* a job's model must exist when it is stored; a name no model can have (the renderers' escaping
     * test) is written into the row afterwards, as an old row might hold it */
    const char *odd = model && !store_name_valid(model) ? model : NULL;
    if (odd) model = NULL;
    if (model) ensure_model(st, model);
    char **specs = calloc((size_t)n, sizeof *specs);
    for (int i = 0; i < n; i++) ck_assert_int_ge(asprintf(&specs[i], "{\"i\": %d}", i), 0);
    store_job_new nj = {.owner = owner, .type = type, .spec_json = "{\"type\": \"x\", \"big\": [1, 2, 3]}",
                        .model = model, .priority = priority, .max_attempts = 1,
                        .cell_specs = (const char *const *)specs, .n_cells = (size_t)n};
    int64_t id = 0;
    int rc = store_job_create(st, &nj, &id, err, sizeof err);
    ck_assert_msg(rc == STORE_OK, "create: %s (%s)", store_rc_name(rc), err);
    for (int i = 0; i < n; i++) free(specs[i]);
    free(specs);
    if (odd) {
        sqlite3 *db;
        sqlite3_stmt *q;
        ck_assert_int_eq(sqlite3_open(g_db, &db), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        ck_assert_int_eq(sqlite3_prepare_v2(db, "UPDATE jobs SET model = ?1 WHERE id = ?2", -1, &q, NULL), SQLITE_OK);
        sqlite3_bind_text(q, 1, odd, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, id);
        ck_assert_int_eq(sqlite3_step(q), SQLITE_DONE);
        sqlite3_finalize(q);
        sqlite3_close(db);
    }
    return id;
}

/* Render f with both renderers (reference and cached); assert they agree byte for byte. Returns the page (caller
 * frees) and its next_page_token in next ("" on the last page). */
static char *pages_agree(store *st, const store_job_filter *f, char next[STORE_PAGE_TOKEN_LEN], int *hit)
{
    char *ref = NULL, *cached = NULL;
    size_t lr = 0, lc = 0;
    ck_assert_msg(api_jobs_page_reference(st, f, &ref, &lr, err, sizeof err) == STORE_OK, "reference: %s", err);
    ck_assert_msg(api_jobs_page_cached(st, f, &cached, &lc, hit, err, sizeof err) == STORE_OK, "cached: %s", err);
    ck_assert_uint_eq(lr, strlen(ref));
    ck_assert_msg(lc == lr && memcmp(ref, cached, lr) == 0, "cached differs:\n%s\nreference:\n%s", cached, ref);
    ck_assert_int_eq(ref[lr - 1], '\n');
    json_error_t je;
    json_t *page = json_loads(ref, 0, &je);
    ck_assert_msg(page != NULL, "page is not JSON: %s", je.text);
    json_t *tok = json_object_get(page, "next_page_token");
    snprintf(next, STORE_PAGE_TOKEN_LEN, "%s", json_is_string(tok) ? json_string_value(tok) : "");
    json_decref(page);
    free(cached);
    return ref;
}

/* Walk every page of f (order, filters) and compare the renderers on each. Returns the number of
 * jobs seen over all pages. */
static size_t walk_pages(store *st, store_job_filter f)
{
    char tok[STORE_PAGE_TOKEN_LEN] = "", next[STORE_PAGE_TOKEN_LEN];
    size_t jobs = 0;
    for (int pages = 0; pages < 200; pages++) {
        f.page_token = tok;
        char *ref = pages_agree(st, &f, next, NULL);
        json_t *page = json_loads(ref, 0, NULL);
        jobs += json_array_size(json_object_get(page, "jobs"));
        json_decref(page);
        free(ref);
        if (!next[0]) return jobs;
        snprintf(tok, sizeof tok, "%s", next);
    }
    ck_abort_msg("pagination did not end");
    return jobs;
}

START_TEST(test_job_list_renderers_agree)
{
    store *st = open_db();
    static const char *const owners[] = {"alice", "bob", "we\"ird\\name\twith/controls\x01", "zo\xc3\xab-\xe2\x82\xac"};
    static const char *const baselines[] = {
        "{\"accuracy\": 0.9}",
        "{\"accuracy\": 0.1, \"loss\": 1e5, \"n\": [1, 2.50, {\"s\": \"\\u00e9\\n\\\"\"}], \"neg\": -0.0}",
        "3.14159",
        "[]",
        "\"text\"",
        "{\"huge\": 123456789012345678901234567890}", /* too big for jansson: rendered as a string */
        "{\"tiny\": 1e-300, \"third\": 0.33333333333333331, \"int_real\": 2.0, \"e\": 1.5E+20}",
    };
    int64_t ids[40];
    int nids = 0;
    for (int i = 0; i < 28; i++) {
        const char *model = i % 5 == 0 ? NULL : i % 5 == 1 ? "fm-small" : "m\xc3\xa9/\"q\"";
        ids[nids++] = make_job_typed(st, owners[i % 4], (store_job_type)(i % STORE_JOB_TYPE_COUNT), model,
                                     i % 3 - 1, 1 + i % 4);
        if (i % 4 != 3)
            ck_assert_int_eq(store_job_baseline_set(st, ids[nids - 1], baselines[i % 7], err, sizeof err), STORE_OK);
        g_now += 1000;
    }
    /* States: some running with fractional progress, some done, failed, cancelled. */
    for (int k = 0; k < 12; k++) {
        store_cell c;
        ck_assert_int_eq(store_cell_claim(st, "w1", 0, 60000, &c, err, sizeof err), STORE_OK);
        double p = (double)(k + 1) / 7.0;
        ck_assert_int_eq(store_cell_progress(st, c.id, c.attempts, p, "finetune", 60000, err, sizeof err), STORE_OK);
        if (k % 3 == 0) ck_assert_int_eq(store_cell_finish(st, c.id, "{\"accuracy\": 0.5}", err, sizeof err), STORE_OK);
        if (k % 3 == 1)
            ck_assert_int_ge(store_cell_fail(st, c.id, c.attempts, "bad_spec", "no\nsuch \"key\"", "tail", 0, NULL,
                                             err, sizeof err), STORE_OK);
        store_cell_free(&c);
    }
    store_running *run = NULL;
    size_t nrun = 0;
    ids[nids++] = make_job_typed(st, "bob", STORE_JOB_RSST, "fm-small", 2, 2);
    ck_assert_int_eq(store_job_cancel(st, ids[nids - 1], &run, &nrun, err, sizeof err), STORE_OK);
    store_running_free(run, nrun);

    /* A name jansson refuses (bad UTF-8): both renderers give the same page. */
    make_job_typed(st, "bad\xff" "name", STORE_JOB_JOINT, NULL, 0, 1);
    nids++;

    int types[] = {-1, STORE_JOB_ABLATION, STORE_JOB_LITE};
    int states[] = {-1, STORE_STATE_QUEUED, STORE_STATE_RUNNING, STORE_STATE_DONE, STORE_STATE_FAILED,
                    STORE_STATE_CANCELLED};
    const char *fowners[] = {NULL, "alice", owners[2], owners[3], "nobody"};
    int limits[] = {1, 3, 50};
    size_t all = 0;
    for (int o = 0; o < 2; o++)
        for (size_t t = 0; t < sizeof types / sizeof *types; t++)
            for (size_t s = 0; s < sizeof states / sizeof *states; s++)
                for (size_t w = 0; w < sizeof fowners / sizeof *fowners; w++)
                    for (size_t l = 0; l < sizeof limits / sizeof *limits; l++) {
                        store_job_filter f = {.owner = fowners[w], .type = types[t], .state = states[s],
                                              .order = (store_order)o, .limit = limits[l]};
                        size_t n = walk_pages(st, f);
                        if (!fowners[w] && types[t] < 0 && states[s] < 0) {
                            ck_assert_uint_eq(n, (size_t)nids);
                            all++;
                        }
                    }
    ck_assert_uint_eq(all, 2 * 3);
    /* An owner filter too long for a cache key is rendered directly, still identical. */
    char longowner[STORE_MEMO_KEY_MAX + 50];
    memset(longowner, 'x', sizeof longowner - 1);
    longowner[sizeof longowner - 1] = '\0';
    store_job_filter lf = {.owner = longowner, .type = -1, .state = -1};
    char next[STORE_PAGE_TOKEN_LEN];
    int hit = -1;
    free(pages_agree(st, &lf, next, &hit));
    free(pages_agree(st, &lf, next, &hit));
    ck_assert_int_eq(hit, 0);
    /* A bad page token is refused by all of them, and nothing is cached for it. */
    char *out = NULL;
    size_t len = 0;
    store_job_filter bf = {.owner = NULL, .type = -1, .state = -1, .order = STORE_ORDER_OLDEST, .page_token = "n1"};
    ck_assert_int_eq(api_jobs_page_reference(st, &bf, &out, &len, err, sizeof err), STORE_INVALID);
    ck_assert_int_eq(api_jobs_page_cached(st, &bf, &out, &len, &hit, err, sizeof err), STORE_INVALID);
    ck_assert_int_eq(api_jobs_page_cached(st, &bf, &out, &len, &hit, err, sizeof err), STORE_INVALID);
    ck_assert_ptr_null(out);
    store_close(st);
}
END_TEST

/* Readers hammering the cached page while the main thread commits changes. */
typedef struct {
    store *st;
    int *stop;        /* shared flag, atomic */
    long pages, bad;  /* this reader's own counts */
} list_reader;

static void *list_reader_main(void *arg)
{
    list_reader *r = arg;
    store_job_filter f = {.owner = NULL, .type = -1, .state = -1, .limit = 50};
    char e[256];
    while (!__atomic_load_n(r->stop, __ATOMIC_ACQUIRE)) {
        char *out = NULL;
        size_t len = 0;
        if (api_jobs_page_cached(r->st, &f, &out, &len, NULL, e, sizeof e) != STORE_OK) {
            r->bad++;
            continue;
        }
        json_t *page = json_loads(out, 0, NULL);
        if (!page || !json_is_array(json_object_get(page, "jobs")) || len != strlen(out)) r->bad++;
        json_decref(page);
        free(out);
        r->pages++;
    }
    return NULL;
}

/* The page after a change (compared with the reference) and whether it came from the cache. */
static char *page_now(store *st, int *hit)
{
    store_job_filter f = {.owner = NULL, .type = -1, .state = -1, .limit = 50};
    char next[STORE_PAGE_TOKEN_LEN];
    return pages_agree(st, &f, next, hit);
}

START_TEST(test_job_list_cache_invalidation)
{
    store *st = open_db();
    int64_t a = make_job_typed(st, "alice", STORE_JOB_ABLATION, "fm-small", 0, 3);
    make_job_typed(st, "bob", STORE_JOB_SENSITIVITY, "fm-small", 1, 2);
    int stop = 0;
    list_reader r[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (list_reader){st, &stop, 0, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, list_reader_main, &r[i]), 0);
    }

    int hit = -1;
    char *prev = page_now(st, &hit);
    char *same = page_now(st, &hit);
    ck_assert_int_eq(hit, 1); /* nothing committed: served from the cache */
    ck_assert_str_eq(prev, same);
    free(same);

    /* Every kind of change is visible in the very next read, and differs from the page before. */
    for (int step = 0; step < 8; step++) {
        store_cell c;
        store_running *run = NULL;
        size_t nrun = 0;
        switch (step) {
        case 0: make_job_typed(st, "carol", STORE_JOB_JOINT, NULL, 0, 1); break;
        case 1:
            ck_assert_int_eq(store_cell_claim(st, "w1", 0, 60000, &c, err, sizeof err), STORE_OK);
            store_cell_free(&c);
            break;
        case 2: ck_assert_int_eq(store_cell_progress(st, 1, 1, 0.25, "finetune", 60000, err, sizeof err), STORE_OK); break;
        case 3: ck_assert_int_eq(store_cell_progress(st, 1, 1, 0.5, NULL, 60000, err, sizeof err), STORE_OK); break;
        case 4: ck_assert_int_eq(store_cell_finish(st, 1, "{\"accuracy\": 0.7}", err, sizeof err), STORE_OK); break;
        case 5: ck_assert_int_eq(store_job_baseline_set(st, a, "{\"accuracy\": 0.8}", err, sizeof err), STORE_OK); break;
        case 6:
            ck_assert_int_eq(store_job_cancel(st, a, &run, &nrun, err, sizeof err), STORE_OK);
            store_running_free(run, nrun);
            break;
        case 7: ck_assert_int_eq(store_job_delete(st, a, err, sizeof err), STORE_OK); break;
        }
        char *now = page_now(st, &hit);
        ck_assert_msg(strcmp(now, prev) != 0, "step %d: the change is not visible:\n%s", step, now);
        free(prev);
        prev = now;
        char *again = page_now(st, &hit);
        ck_assert_int_eq(hit, 1);
        ck_assert_str_eq(again, prev);
        free(again);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(r[i].bad, 0);
        ck_assert_int_gt(r[i].pages, 0);
    }
    free(prev);
    store_close(st);
}
END_TEST

/* A result with a sparsity report as the engine writes it: summaries plus per-tensor detail. */
static const char CELL_RESULT[] =
    "{\"accuracy\": 0.5, \"sparsity\": {\"overall\": {\"params\": 10, \"zeros\": 5, \"sparsity\": 0.5}, "
    "\"weights\": {\"params\": 8, \"zeros\": 5, \"sparsity\": 0.625}, "
    "\"tensors\": {\"head.weight\": {\"params\": 2, \"zeros\": 0, \"sparsity\": 0}}, \"layers\": [{\"layer\": 0}]}}";

/* Walk the pages of job's cells with filter f; seen[idx] counts each cell; cells are in idx
 * order. A hook runs after the first page. Returns the number of pages. */
static int walk_cells(store *st, int64_t job, store_cell_filter f, int *seen, int n_max,
                      void (*after_first)(store *st, int64_t job))
{
    char tok[STORE_PAGE_TOKEN_LEN] = "";
    int pages = 0, last = -1;
    for (;;) {
        store_cell *cs;
        size_t n;
        char next[STORE_PAGE_TOKEN_LEN];
        f.page_token = tok;
        ck_assert_msg(store_cells_page(st, job, &f, &cs, &n, next, err, sizeof err) == STORE_OK, "page: %s", err);
        pages++;
        ck_assert_int_le(n, (size_t)f.limit);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_gt(cs[i].idx, last);
            last = cs[i].idx;
            ck_assert_int_lt(cs[i].idx, n_max);
            ck_assert_int_eq(cs[i].job_id, job);
            if (f.state != -1) ck_assert_int_eq(cs[i].state, f.state);
            seen[cs[i].idx]++;
        }
        store_cells_free(cs, n);
        if (!next[0]) break;
        ck_assert_int_eq(n, (size_t)f.limit);
        snprintf(tok, sizeof tok, "%s", next);
        if (pages == 1 && after_first) after_first(st, job);
    }
    return pages;
}

/* Between pages: the last cell finishes (a write while a client pages through). */
static void finish_last(store *st, int64_t job)
{
    store_cell c;
    ck_assert_int_eq(store_cell_get_idx(st, job, 9, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(store_cell_finish(st, c.id, CELL_RESULT, err, sizeof err), STORE_OK);
    store_cell_free(&c);
}

START_TEST(test_cell_pages)
{
    store *st = open_db();
    int64_t job = make_job(st, "alice", 0, 10, 0, NULL);
    int64_t other = make_job(st, "bob", 0, 3, 0, NULL);
    store_cell *all;
    size_t n_all;
    ck_assert_int_eq(store_cells_list(st, job, -1, &all, &n_all, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n_all, 10);
    for (size_t i = 0; i < n_all; i += 2) /* even cells done */
        ck_assert_int_eq(store_cell_finish(st, all[i].id, CELL_RESULT, err, sizeof err), STORE_OK);
    store_cells_free(all, n_all);

    /* every cell exactly once, in order, across pages of 3, 1 and the maximum; a cell that
     * changes state between pages is still listed once */
    int seen[10] = {0};
    store_cell_filter f = {.state = -1, .limit = 3};
    ck_assert_int_eq(walk_cells(st, job, f, seen, 10, finish_last), 4);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], 1);
    memset(seen, 0, sizeof seen);
    f.limit = 1;
    ck_assert_int_eq(walk_cells(st, job, f, seen, 10, NULL), 10);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], 1);
    memset(seen, 0, sizeof seen);
    f.limit = 5000; /* clamped to STORE_PAGE_MAX: one page */
    ck_assert_int_eq(walk_cells(st, job, f, seen, 10, NULL), 1);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], 1);

    /* the state filter pages too: done = the even cells and 9 */
    memset(seen, 0, sizeof seen);
    f = (store_cell_filter){.state = STORE_STATE_DONE, .limit = 2};
    ck_assert_int_eq(walk_cells(st, job, f, seen, 10, NULL), 3);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], i % 2 == 0 || i == 9);
    memset(seen, 0, sizeof seen);
    f.state = STORE_STATE_QUEUED;
    ck_assert_int_eq(walk_cells(st, job, f, seen, 10, NULL), 2);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(seen[i], i % 2 == 1 && i != 9);

    /* a page cuts the sparsity report to its summaries; with_sparsity and the single cell keep it */
    store_cell *cs;
    size_t n;
    char next[STORE_PAGE_TOKEN_LEN];
    f = (store_cell_filter){.state = -1, .limit = 1};
    ck_assert_int_eq(store_cells_page(st, job, &f, &cs, &n, next, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(next, "c0");
    json_t *r = json_loads(cs[0].result_json, 0, NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert(json_real_value(json_object_get(r, "accuracy")) == 0.5);
    json_t *sp = json_object_get(r, "sparsity");
    ck_assert_int_eq(json_object_size(sp), 2);
    ck_assert(json_real_value(json_object_get(json_object_get(sp, "overall"), "sparsity")) == 0.5);
    ck_assert(json_real_value(json_object_get(json_object_get(sp, "weights"), "sparsity")) == 0.625);
    json_decref(r);
    store_cells_free(cs, n);
    f.with_sparsity = 1;
    ck_assert_int_eq(store_cells_page(st, job, &f, &cs, &n, next, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 1);
    r = json_loads(cs[0].result_json, 0, NULL);
    ck_assert_ptr_nonnull(json_object_get(json_object_get(json_object_get(r, "sparsity"), "tensors"), "head.weight"));
    ck_assert_ptr_nonnull(json_object_get(json_object_get(r, "sparsity"), "layers"));
    json_decref(r);
    store_cells_free(cs, n);
    store_cell c;
    ck_assert_int_eq(store_cell_get_idx(st, job, 4, &c, err, sizeof err), STORE_OK);
    ck_assert_int_eq(c.idx, 4);
    ck_assert_str_eq(c.result_json, CELL_RESULT);
    store_cell_free(&c);
    ck_assert_int_eq(store_cell_get_idx(st, job, 10, &c, err, sizeof err), STORE_NOTFOUND);
    ck_assert_int_eq(store_cell_get_idx(st, other + 1, 0, &c, err, sizeof err), STORE_NOTFOUND);

    /* a token walks one job only: another job's page after idx 0 */
    f = (store_cell_filter){.state = -1, .limit = 5, .page_token = "c0"};
    ck_assert_int_eq(store_cells_page(st, other, &f, &cs, &n, next, err, sizeof err), STORE_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(cs[0].idx, 1);
    ck_assert_int_eq(cs[0].job_id, other);
    ck_assert_str_eq(next, "");
    store_cells_free(cs, n);

    /* malformed tokens and a job-list token are refused */
    const char *bad[] = {"c", "cz", "C1", "c-1", "c123456789", "n1", "o1", "1", "c 1", "c1 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f.page_token = bad[i];
        ck_assert_msg(store_cells_page(st, job, &f, &cs, &n, next, err, sizeof err) == STORE_INVALID, "token %s",
                      bad[i]);
        ck_assert_ptr_null(cs);
        ck_assert_ptr_nonnull(strstr(err, "page_token"));
    }
    f = (store_cell_filter){.state = STORE_STATE_COUNT, .limit = 5};
    ck_assert_int_eq(store_cells_page(st, job, &f, &cs, &n, next, err, sizeof err), STORE_INVALID);
    assert_integrity(st);
    store_close(st);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sha256_vectors);
    tcase_add_test(tc, test_migrations_apply_and_reopen);
    tcase_add_test(tc, test_migrations_newer_database_refused);
    tcase_add_test(tc, test_tokens_hashed_and_revoked);
    tcase_add_test(tc, test_models);
    tcase_add_test(tc, test_model_components);
    tcase_add_test(tc, test_job_create_checks_names);
    tcase_add_test(tc, test_job_idempotency);
    tcase_add_test(tc, test_claim_order);
    tcase_add_test(tc, test_claim_per_owner_cap);
    tcase_add_test(tc, test_claim_concurrent_threads);
    tcase_add_test(tc, test_claim_concurrent_connections);
    tcase_add_test(tc, test_finish_idempotent);
    tcase_add_test(tc, test_fail_retry_then_failed);
    tcase_add_test(tc, test_lease_expiry);
    tcase_add_test(tc, test_recover_after_crash);
    tcase_add_test(tc, test_cancel);
    tcase_add_test(tc, test_pagination);
    tcase_add_test(tc, test_cell_pages);
    tcase_add_test(tc, test_killed_writer_mid_transaction);
    tcase_add_test(tc, test_killed_writer_sigkill);
    tcase_add_test(tc, test_readers_see_commits_and_wait);
    tcase_add_test(tc, test_job_list_renderers_agree);
    tcase_add_test(tc, test_job_list_cache_invalidation);
    tcase_add_test(tc, test_datasets_registered);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
