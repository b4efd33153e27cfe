/* errbuf.h — how every module of the daemon fills a caller's error buffer. */
#ifndef PL_SERVER_ERRBUF_H
#define PL_SERVER_ERRBUF_H

#include <stddef.h>

/* printf into err (capacity errlen; nothing when err is NULL or errlen is 0, truncated to fit).
 * Returns -1, so `return errbuf_set(err, errlen, "...")` reports a failure in one line. */
__attribute__((format(printf, 3, 4))) int errbuf_set(char *err, size_t errlen, const char *fmt, ...);

#endif
