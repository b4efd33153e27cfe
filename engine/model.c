/* model.c — not yet written. */
