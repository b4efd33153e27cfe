/* blas.h — not yet written. */
