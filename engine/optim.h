/* optim.h — not yet written. */
