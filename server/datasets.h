/* datasets.h — token and text datasets on the server: found under DATA_DIR/datasets/, or
 * registered by an admin with their path (store.h store_dataset), and what a cell is given.
 *
 * Found: DATA_DIR/datasets/D, a directory holding regular files train.bin and val.bin, is
 * "tokens:D"; DATA_DIR/datasets/F.txt, a regular non-empty file, is "text:F.txt" (only names
 * that are dataset names, store_dataset_name_valid). A registered name takes precedence over a
 * found one of the same name (registration refuses such a name anyway).
 * Cells: a job names a dataset by name (no slashes reach a cell spec through the API); at launch
 * the scheduler gives the cell "tokens:/path" or "text:/path" for a registered or found name
 * (datasets_resolve), and any other name as it is (the engine then looks relative names up
 * under $PRUNELAB_DATASETS, engine/tokens.h). No function here talks HTTP. */
#ifndef PL_SERVER_DATASETS_H
#define PL_SERVER_DATASETS_H

#include <stddef.h>

#include <jansson.h>

#include "dataset_names.h"
#include "store.h"

/* Whether path has the shape of a dataset of kind (tokens: a directory with regular files
 * train.bin and val.bin; text: a regular non-empty file). Returns 0, or -1 with err saying what
 * is missing (err names no other path than the given one). */
int datasets_path_check(const char *path, dataset_kind kind, char *err, size_t errlen);

/* The datasets found under data_dir/datasets, sorted by name: a JSON array of {"name", "kind",
 * "available": true, "path", "source": "data_dir", "vocab" (text: 256, tokens: null)}. Never
 * NULL unless memory runs out; an absent directory gives []. */
json_t *datasets_found(const char *data_dir);

/* The dataset name a cell is given for name: "tokens:PATH" / "text:PATH" when name is
 * registered (its path) or found under data_dir/datasets, else NULL (give name as it is).
 * Returns malloc'd text (caller frees). */
char *datasets_resolve(store *st, const char *data_dir, const char *name);

#endif
