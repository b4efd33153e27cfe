/* test_static.c — not yet written */
int main(void) { return 77; }
