/* test_openapi.c — not yet written */
int main(void) { return 77; }
