/* static.h — not yet written */
#ifndef PL_SERVER_STATIC_H
#define PL_SERVER_STATIC_H
#endif
