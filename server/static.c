/* static.c — not yet written */
