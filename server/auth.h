/* auth.h — bearer-token authentication and the owner-or-admin rule of prunelabd's API.
 *
 * Writes need "Authorization: Bearer TOKEN" of an active token (401 without or with an unknown
 * token, 403 token_revoked for a revoked one); a token sent with a read is checked the same way;
 * reads are anonymous unless cfg->anonymous_reads is false. Tokens are stored hashed (store.c).
 * Only an object's owner or an admin may change or delete it (auth_may_change). */
#ifndef PL_SERVER_AUTH_H
#define PL_SERVER_AUTH_H

#include "config.h"
#include "http.h"
#include "store.h"

enum { API_READ = 0, API_WRITE = 1 };

/* Authenticate the request against st. Returns 1 with *u filled (free with store_user_free) for
 * a valid bearer token; 0 for an anonymous read that cfg (may be NULL: anonymous reads allowed)
 * allows (*u zeroed); -1 after replying 401 (no / malformed / unknown token), 403 (revoked
 * token) or 500 — the handler then returns 0. */
int auth_request(http_request *req, store *st, const pl_config *cfg, int need, store_user *u);

/* 1 if user u may cancel, retry or delete an object owned by owner (NULL: nobody's): its owner
 * or an admin; else 0. */
int auth_may_change(const store_user *u, const char *owner);

#endif
