/* api_vocab.c — GET /api/v1/vocabulary: the names the service accepts (components with their
 * tensors, aliases, structured unit and recommended flag; criteria; granularities; scopes; apply
 * modes; presets; optimizers; job types with their keys), straight from spec/vocab.h, so the
 * dashboard and scripts never carry a copy. Authenticated like every API read; cheap: the
 * document is built once and kept (the vocabulary is compiled in). */
#include "api_vocab.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "vocab.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char *doc;
static size_t doc_len;

static void build(void)
{
    json_t *v = spec_vocabulary_json();
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text) return;
    doc_len = strlen(text) + 1;
    doc = malloc(doc_len + 1);
    if (doc) {
        memcpy(doc, text, doc_len - 1);
        doc[doc_len - 1] = '\n';
        doc[doc_len] = '\0';
    }
    free(text);
}

int api_vocabulary_get(http_request *req, void *app)
{
    store_user u;
    if (api_auth(req, app, API_READ, &u) < 0) return 0;
    store_user_free(&u);
    pthread_once(&once, build);
    if (!doc) return http_reply_error(req, 500, "internal", NULL, "the vocabulary could not be written");
    char *copy = malloc(doc_len);
    if (!copy) return http_reply_error(req, 500, "internal", NULL, "out of memory");
    memcpy(copy, doc, doc_len);
    return http_reply_json_text(req, 200, copy, doc_len);
}
