/* cmd_inspect.c — not yet written. */
