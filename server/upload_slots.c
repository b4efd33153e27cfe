/* upload_slots.c — per-user count of uploads in progress (upload_slots.h).
 *
 * A fixed table of (user id, count) rows under one mutex; a row whose count drops to 0 is free
 * again. Taking and releasing are O(UPLOAD_SLOTS_USERS), nothing is allocated. */
#include "upload_slots.h"

#include <pthread.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int64_t uid;
    int n; /* 0: row free */
} g_rows[UPLOAD_SLOTS_USERS];

/* The row of uid, or -1. Caller holds g_mu. */
static int row_find(int64_t uid)
{
    for (int i = 0; i < UPLOAD_SLOTS_USERS; i++)
        if (g_rows[i].n > 0 && g_rows[i].uid == uid) return i;
    return -1;
}

int upload_slot_take(int64_t uid, int cap)
{
    int ok = 0;
    pthread_mutex_lock(&g_mu);
    int i = row_find(uid);
    if (i < 0) {
        for (int j = 0; j < UPLOAD_SLOTS_USERS && i < 0; j++)
            if (g_rows[j].n == 0) {
                i = j;
                g_rows[j].uid = uid;
            }
    }
    if (i >= 0 && (cap <= 0 || g_rows[i].n < cap)) {
        g_rows[i].n++;
        ok = 1;
    }
    pthread_mutex_unlock(&g_mu);
    return ok;
}

void upload_slot_release(int64_t uid)
{
    pthread_mutex_lock(&g_mu);
    int i = row_find(uid);
    if (i >= 0) g_rows[i].n--;
    pthread_mutex_unlock(&g_mu);
}

int upload_slots_held(int64_t uid)
{
    pthread_mutex_lock(&g_mu);
    int i = row_find(uid);
    int n = i >= 0 ? g_rows[i].n : 0;
    pthread_mutex_unlock(&g_mu);
    return n;
}
