/* slurm_batch.h — the files one Slurm job array of cells runs from, in a batch directory under
 * shared_dir that the daemon and every node see:
 *
 *   manifest         "INDEX CELL_ID\n" per task: array index -> cell (identity never comes from
 *                    Slurm's own ids)
 *   CELL_ID.spec     the cell spec (JSON), the engine's stdin
 *   run.sh           the batch script: finds its cell in the manifest by SLURM_ARRAY_TASK_ID, runs
 *                    `BIN cell` with OMP/OpenBLAS threads = SLURM_CPUS_PER_TASK, forwards USR2 and
 *                    TERM to the engine (sbatch --signal=B:USR2@N reaches the script only)
 *   CELL_ID.events   the engine's JSON lines, appended (progress included: the daemon tails it);
 *                    each run starts with {"event":"slurm_start","restart":R,"task":I,"host":H}
 *   CELL_ID.stderr   the engine's stderr, appended
 *   CELL_ID.exit     written last, by write-fsync-rename after the events were synced:
 *                    {"status":S,"restart":R,"task":I} (S: exit status, 128 + signal). A requeued
 *                    run removes the previous one's exit file before it starts.
 *
 * Everything the daemon writes here goes through a temp file, fsync and rename, so a node never
 * reads half a spec or half a manifest. */
#ifndef PL_SLURM_BATCH_H
#define PL_SLURM_BATCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t cell_id; /* > 0, unique in the batch */
    const char *spec;
} slurm_batch_cell;

/* Create dir (mode 0750; it must not exist yet) with the manifest, the specs and run.sh for
 * cells[0..n) as tasks 0..n-1, bin being the engine on the nodes. 0, or -1 with err (bad path,
 * duplicate cell, write failure; a partly written directory is removed). */
int slurm_batch_write(const char *dir, const char *bin, const slurm_batch_cell *cells, int n, char *err,
                      size_t errlen);

/* The manifest's cell ids in task order into ids (capacity max). Returns the task count (which
 * may exceed max), or -1 with err for a missing or malformed manifest. */
int slurm_batch_manifest(const char *dir, int64_t *ids, int max, char *err, size_t errlen);

/* CELL_ID.exit: 0 with *status, *restart, *task; 1 when there is none yet; -1 with err when it
 * cannot be read. */
int slurm_batch_exit(const char *dir, int64_t cell_id, int *status, int *restart, int *task, char *err,
                     size_t errlen);

/* The path of one of a cell's files ("spec", "events", "stderr", "exit") into buf. 0, or -1 when
 * it does not fit. */
int slurm_batch_path(char *buf, size_t len, const char *dir, int64_t cell_id, const char *what);

#endif
