/* cmd_train.c — not yet written. */
