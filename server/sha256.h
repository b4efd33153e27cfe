/* sha256.h — SHA-256 (FIPS 180-4) with hex output, used to store bearer tokens hashed.
 * Streaming: sha256_init, any number of sha256_update calls, sha256_final. No allocation. */
#ifndef PL_SHA256_H
#define PL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN 65 /* 64 lowercase hex digits + NUL */

typedef struct {
    uint32_t h[8];      /* chaining state H0..H7 */
    uint64_t nbytes;    /* message length so far, bytes */
    uint8_t block[64];  /* pending partial block */
    size_t nblock;      /* bytes used in block */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t out[SHA256_DIGEST_LEN]); /* c must be re-initialised to reuse */

/* One-shot digest of data[0..n) as 64 lowercase hex digits, NUL-terminated. */
void sha256_hex(const void *data, size_t n, char out[SHA256_HEX_LEN]);
/* Lowercase hex of any byte string; out holds 2n+1 bytes. */
void sha256_to_hex(const uint8_t *bytes, size_t n, char *out);

#endif
