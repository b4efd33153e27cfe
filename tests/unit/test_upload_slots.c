/* test_upload_slots.c — unit tests for server/upload_slots.c: a user's cap holds, a released
 * slot can be taken again, users are counted apart, and a full table refuses rather than
 * forgetting a count. */
#include <check.h>
#include <stdint.h>

#include "upload_slots.h"

START_TEST(test_cap_per_user)
{
    ck_assert_int_eq(upload_slot_take(7, 2), 1);
    ck_assert_int_eq(upload_slot_take(7, 2), 1);
    ck_assert_int_eq(upload_slot_take(7, 2), 0); /* the third upload of user 7 */
    ck_assert_int_eq(upload_slots_held(7), 2);
    ck_assert_int_eq(upload_slot_take(8, 2), 1); /* another user is not affected */
    upload_slot_release(7);
    ck_assert_int_eq(upload_slots_held(7), 1);
    ck_assert_int_eq(upload_slot_take(7, 2), 1);
    upload_slot_release(7);
    upload_slot_release(7);
    upload_slot_release(8);
    ck_assert_int_eq(upload_slots_held(7), 0);
    ck_assert_int_eq(upload_slots_held(8), 0);
    upload_slot_release(9); /* releasing what is not held changes nothing */
    ck_assert_int_eq(upload_slots_held(9), 0);
}
END_TEST

START_TEST(test_no_cap_still_counts)
{
    for (int i = 0; i < 5; i++) ck_assert_int_eq(upload_slot_take(3, 0), 1);
    ck_assert_int_eq(upload_slots_held(3), 5);
    for (int i = 0; i < 5; i++) upload_slot_release(3);
    ck_assert_int_eq(upload_slots_held(3), 0);
}
END_TEST

START_TEST(test_full_table_refuses)
{
    for (int64_t u = 1000; u < 1000 + UPLOAD_SLOTS_USERS; u++) ck_assert_int_eq(upload_slot_take(u, 1), 1);
    ck_assert_int_eq(upload_slot_take(5, 1), 0); /* no free row for a new user */
    ck_assert_int_eq(upload_slot_take(1000, 2), 1); /* a user with a row may still take one */
    upload_slot_release(1000);
    upload_slot_release(1001); /* a row frees up */
    ck_assert_int_eq(upload_slot_take(5, 1), 1);
    upload_slot_release(5);
    for (int64_t u = 1000; u < 1000 + UPLOAD_SLOTS_USERS; u++)
        if (u != 1001) upload_slot_release(u);
    for (int64_t u = 1000; u < 1000 + UPLOAD_SLOTS_USERS; u++) ck_assert_int_eq(upload_slots_held(u), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("upload_slots");
    TCase *tc = tcase_create("slots");
    tcase_add_test(tc, test_cap_per_user);
    tcase_add_test(tc, test_no_cap_still_counts);
    tcase_add_test(tc, test_full_table_refuses);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
