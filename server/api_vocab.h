/* api_vocab.h — GET /api/v1/vocabulary (api_vocab.c). */
#ifndef PL_SERVER_API_VOCAB_H
#define PL_SERVER_API_VOCAB_H

#include "http.h"

int api_vocabulary_get(http_request *req, void *app);

#endif
