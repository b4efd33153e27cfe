/* auth.c — bearer-token authentication for the API handlers (see auth.h). Owns nothing: the
 * user record it fills belongs to the caller. */
#include "auth.h"

#include <string.h>

/* 401 with code, message and the WWW-Authenticate challenge. Returns -1. */
static int unauthorized(http_request *req, const char *code, const char *message, const char *challenge)
{
    http_reply_error(req, 401, code, NULL, "%s", message);
    http_reply_header(req, "WWW-Authenticate", challenge);
    return -1;
}

int auth_request(http_request *req, store *st, const pl_config *cfg, int need, store_user *u)
{
    memset(u, 0, sizeof *u);
    const char *token = NULL;
    enum http_auth a = http_request_auth(req, &token);
    if (a == HTTP_AUTH_NONE) {
        if (need == API_READ && (!cfg || cfg->anonymous_reads)) return 0;
        return unauthorized(req, "unauthorized", "this request needs \"Authorization: Bearer TOKEN\"", "Bearer");
    }
    if (a == HTTP_AUTH_MALFORMED)
        return unauthorized(req, "unauthorized", "malformed Authorization header (expected \"Bearer TOKEN\")",
                            "Bearer error=\"invalid_request\"");
    char err[256] = "";
    int rc = store_token_lookup(st, token, u, err, sizeof err);
    if (rc == STORE_OK) return 1;
    if (rc == STORE_NOTFOUND)
        return unauthorized(req, "invalid_token", "the bearer token is unknown", "Bearer error=\"invalid_token\"");
    if (rc == STORE_CONFLICT) {
        http_reply_error(req, 403, "token_revoked", NULL,
                         "the bearer token was revoked; ask an admin for a new one (prunelabd user token NAME)");
        return -1;
    }
    http_reply_error(req, 500, "internal", NULL, "token lookup failed: %s", err);
    return -1;
}

int auth_may_change(const store_user *u, const char *owner)
{
    return u->admin || (owner && u->name && strcmp(owner, u->name) == 0);
}
