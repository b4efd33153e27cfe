/* cmd_eval.c — not yet written. */
