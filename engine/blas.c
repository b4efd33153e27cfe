/* blas.c — not yet written. */
