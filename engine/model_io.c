/* model_io.c — not yet written. */
