-- 001_init.sql — the initial prunelabd schema (DESIGN.md section 7).
--
-- Applied by server/store.c inside one transaction, after which PRAGMA user_version becomes 1.
-- Conventions: times are integer milliseconds since the Unix epoch (UTC), column suffix _ms;
-- JSON columns hold text that json_valid() accepts; enumerations are lowercase text checked
-- here and mirrored by the name tables in store.c. Names (users, models) follow
-- [A-Za-z0-9._-]{1,64}. jobs.n_* are the per-state cell counts, recomputed by store.c after
-- every cell transition (the CHECK keeps them summing to n_cells).

PRAGMA application_id = 1347174722; -- 0x504C4142, "PLAB": marks the file as a prunelabd database

CREATE TABLE users (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE
                       CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^A-Za-z0-9._-]*'),
    admin      INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    created_ms INTEGER NOT NULL
);

-- Bearer tokens: only the SHA-256 (lowercase hex) of the token text is stored.
CREATE TABLE tokens (
    id         INTEGER PRIMARY KEY,
    hash       TEXT    NOT NULL UNIQUE
                       CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX tokens_user ON tokens(user_id);

CREATE TABLE models (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE
                       CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^A-Za-z0-9._-]*'
                              AND name NOT IN ('.', '..')),
    path       TEXT    NOT NULL,
    dataset    TEXT,
    params     INTEGER,
    accuracy   REAL,
    info       TEXT    CHECK (info IS NULL OR json_valid(info)),
    owner      TEXT    NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT, -- ids are never reused after a delete
    owner       TEXT    NOT NULL,
    type        TEXT    NOT NULL
                        CHECK (type IN ('train', 'ablation', 'sensitivity', 'joint', 'rsst', 'lite')),
    spec        TEXT    NOT NULL CHECK (json_valid(spec)),
    model       TEXT,
    priority    INTEGER NOT NULL DEFAULT 0,
    state       TEXT    NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    idem_key    TEXT,
    n_cells     INTEGER NOT NULL CHECK (n_cells >= 1),
    n_queued    INTEGER NOT NULL DEFAULT 0,
    n_running   INTEGER NOT NULL DEFAULT 0,
    n_done      INTEGER NOT NULL DEFAULT 0,
    n_failed    INTEGER NOT NULL DEFAULT 0,
    n_cancelled INTEGER NOT NULL DEFAULT 0,
    baseline    TEXT    CHECK (baseline IS NULL OR json_valid(baseline)),
    created_ms  INTEGER NOT NULL,
    started_ms  INTEGER,
    finished_ms INTEGER,
    error       TEXT,
    UNIQUE (owner, idem_key), -- NULL keys never collide
    CHECK (n_queued + n_running + n_done + n_failed + n_cancelled = n_cells)
);
-- Scheduler: an owner's jobs that still have queued cells, best first.
CREATE INDEX jobs_pending ON jobs(owner, priority DESC, id) WHERE n_queued > 0;
-- Scheduler: running cells per owner (the per-owner cap).
CREATE INDEX jobs_running ON jobs(owner) WHERE n_running > 0;
-- Listing with filters, keyset-paginated on id.
CREATE INDEX jobs_owner ON jobs(owner, id);
CREATE INDEX jobs_state ON jobs(state, id);
CREATE INDEX jobs_type  ON jobs(type, id);
CREATE INDEX jobs_model ON jobs(model) WHERE model IS NOT NULL;

CREATE TABLE cells (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx              INTEGER NOT NULL CHECK (idx >= 0),
    spec             TEXT    NOT NULL CHECK (json_valid(spec)),
    state            TEXT    NOT NULL DEFAULT 'queued'
                             CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    lease_owner      TEXT,
    lease_expires_ms INTEGER,
    pid              INTEGER,
    progress         REAL    NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    phase            TEXT,
    result           TEXT    CHECK (result IS NULL OR json_valid(result)),
    error_code       TEXT,
    error_message    TEXT,
    stderr_tail      TEXT,
    created_ms       INTEGER NOT NULL,
    started_ms       INTEGER,
    finished_ms      INTEGER,
    UNIQUE (job_id, idx)
);
-- Per-job state counts (covering), the next queued cell of a job, running cells of a job.
CREATE INDEX cells_job_state ON cells(job_id, state, idx);
-- Lease expiry sweep over running cells only.
CREATE INDEX cells_lease ON cells(lease_expires_ms) WHERE state = 'running';

-- Round robin across owners: last_claim is a sequence number bumped at every claim; the owner
-- with the smallest (or no) value goes next.
CREATE TABLE sched_owners (
    owner      TEXT    PRIMARY KEY,
    last_claim INTEGER NOT NULL
) WITHOUT ROWID;
