/* test_file_tail.c — unit tests for server/file_tail.c: lines handed over only once complete, in
 * order, each once across looks; a half-written line waits; CRLF; a missing file is "nothing
 * yet"; an over-long line is reported once and skipped (also when it arrives in pieces); a stop
 * from the callback leaves the rest for the next look; a truncated or replaced file restarts;
 * the per-look byte budget holds. */
#define _GNU_SOURCE
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file_tail.h"

static char g_dir[128], g_path[256];

typedef struct {
    char got[8192];
    int lines, too_long, restarted, stop_after;
} sink;

static int take(void *user, file_tail_kind kind, const char *line, size_t n)
{
    sink *s = user;
    if (kind == FILE_TAIL_LINE) {
        strncat(s->got, line, n);
        strcat(s->got, "|");
        s->lines++;
    } else if (kind == FILE_TAIL_TOO_LONG) {
        s->too_long++;
        strcat(s->got, "<long>|");
    } else {
        s->restarted++;
        strcat(s->got, "<restart>|");
    }
    return s->stop_after && s->lines >= s->stop_after;
}

static void append(const char *text)
{
    FILE *f = fopen(g_path, "a");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    strcpy(g_dir, "/tmp/prunelab-test_file_tail.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_path, sizeof g_path, "%s/cell.events", g_dir);
}

static void teardown(void)
{
    unlink(g_path);
    rmdir(g_dir);
}

START_TEST(test_follow)
{
    setup();
    file_tail t;
    ck_assert_int_eq(file_tail_init(&t, g_path, 16), 0);
    sink s = {0};
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s), 0); /* no file yet */
    append("one\ntwo\nthr");
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s), 2);
    ck_assert_str_eq(s.got, "one|two|");
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s), 0); /* the half line waits */
    append("ee\r\nfour\n");
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s), 2);
    ck_assert_str_eq(s.got, "one|two|three|four|");
    /* an over-long line: reported once, skipped, also when it arrives in pieces */
    append("0123456789abcdefXYZ\nok\n");
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s), 1);
    ck_assert_str_eq(s.got, "one|two|three|four|<long>|ok|");
    append("0123456789abcdefghij"); /* no newline yet, already too long */
    file_tail_read(&t, 0, take, &s);
    append("more of it");
    file_tail_read(&t, 0, take, &s);
    append(" end\nafter\n");
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s), 1);
    ck_assert_str_eq(s.got, "one|two|three|four|<long>|ok|<long>|after|");
    ck_assert_int_eq(s.too_long, 2);
    /* a stop leaves the rest for the next look, nothing is lost or repeated */
    append("a\nb\nc\n");
    sink s2 = {.stop_after = 1};
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s2), 1);
    ck_assert_str_eq(s2.got, "a|");
    s2.stop_after = 0;
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s2), 2);
    ck_assert_str_eq(s2.got, "a|b|c|");
    /* truncated (a requeued run rewrote it) or replaced: from the start again, and said so */
    FILE *f = fopen(g_path, "w");
    fputs("new\n", f);
    fclose(f);
    sink s3 = {0};
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s3), 1);
    ck_assert_str_eq(s3.got, "<restart>|new|");
    char other[300];
    snprintf(other, sizeof other, "%s.other", g_path);
    f = fopen(other, "w");
    fputs("first line of a bigger file\nsecond\n", f);
    fclose(f);
    ck_assert_int_eq(rename(other, g_path), 0);
    sink s4 = {0};
    file_tail_free(&t);
    ck_assert_int_eq(file_tail_init(&t, g_path, 64), 0);
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s4), 2);
    f = fopen(other, "w");
    fputs("x\ny\nz\n", f); /* another inode, a different size: a replacement, not an append */
    fclose(f);
    ck_assert_int_eq(rename(other, g_path), 0);
    sink s5 = {0};
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s5), 3);
    ck_assert_str_eq(s5.got, "<restart>|x|y|z|");
    file_tail_free(&t);
    teardown();
}
END_TEST

START_TEST(test_budget)
{
    setup();
    char line[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(line, sizeof line, "line %04d\n", i); /* 10 bytes each */
        append(line);
    }
    file_tail t;
    ck_assert_int_eq(file_tail_init(&t, g_path, 0), 0);
    long total = 0;
    int looks = 0;
    for (; looks < 100; looks++) {
        sink s = {0};
        long n = file_tail_read(&t, 1000, take, &s); /* at most 1000 bytes a look: 100 lines */
        ck_assert_int_le(n, 100);
        if (n == 0) break;
        total += n;
    }
    ck_assert_int_eq(total, 1000);
    ck_assert_int_ge(looks, 10);
    file_tail_free(&t);
    /* not a regular file: an error */
    ck_assert_int_eq(file_tail_init(&t, g_dir, 0), 0);
    sink s = {0};
    ck_assert_int_eq(file_tail_read(&t, 0, take, &s), -1);
    file_tail_free(&t);
    teardown();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("file_tail");
    TCase *tc = tcase_create("tail");
    tcase_add_test(tc, test_follow);
    tcase_add_test(tc, test_budget);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
