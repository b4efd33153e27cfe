/* cli.c — not yet written. */
