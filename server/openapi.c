/* openapi.c — not yet written */
