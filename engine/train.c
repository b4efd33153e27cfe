/* train.c — not yet written. */
