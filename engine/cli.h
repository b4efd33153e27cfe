/* cli.h — not yet written. */
