/* data.c — not yet written. */
