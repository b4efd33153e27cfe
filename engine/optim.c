/* optim.c — not yet written. */
