/* cmd_grad.c — not yet written. */
