/* estimate.c — print the daemon's memory estimate (server/cell_memory.c) of a cell spec given as
 * argv[1] (JSON text), in KiB. Built and run by bench/cell_memory.sh. */
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "cell_memory.h"
#include "spec.h"

int main(int argc, char **argv) {
    if (argc < 2) return fprintf(stderr, "usage: estimate SPEC_JSON [THREADS]\n"), 2;
    json_error_t je;
    json_t *root = json_loads(argv[1], 0, &je);
    cell_spec cs;
    spec_error se;
    if (!root || spec_cell_parse(root, &cs, &se) != 0) return fprintf(stderr, "bad spec: %s\n", root ? se.message : je.text), 1;
    cell_memory cm;
    cell_memory_estimate(&cs, NULL, argc > 2 ? atoi(argv[2]) : 1, &cm);
    printf("%.0f\n", cm.total / 1024.0);
    cell_spec_free(&cs);
    json_decref(root);
    return 0;
}
