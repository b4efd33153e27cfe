/* safetensors.c — not yet written. */
