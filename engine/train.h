/* train.h — not yet written. */
