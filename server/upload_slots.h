/* upload_slots.h — uploads in progress per user: a model upload takes a slot when its headers
 * are accepted and gives it back when the request ends (answered, refused later, or dropped by
 * the client mid-body), so one user cannot stream more than `cap` bodies to disk at once.
 * Process-wide, thread-safe; at most UPLOAD_SLOTS_USERS users hold slots at a time (beyond that
 * every further upload is refused until one ends). */
#ifndef PL_SERVER_UPLOAD_SLOTS_H
#define PL_SERVER_UPLOAD_SLOTS_H

#include <stdint.h>

#define UPLOAD_SLOTS_USERS 256

/* Take one of uid's cap slots: 1 taken (release it once), 0 when uid holds cap already (or the
 * table is full). cap <= 0 means no limit: always 1, still counted. */
int upload_slot_take(int64_t uid, int cap);
void upload_slot_release(int64_t uid);
/* Slots uid holds now (tests, messages). */
int upload_slots_held(int64_t uid);

#endif
