/* cmd_bench.c — not yet written. */
