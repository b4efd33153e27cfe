-- 004_datasets.sql — token and text datasets an admin registered by path (POST /api/v1/datasets):
-- NAME is what jobs and models write ("tokens:wikitext2", "text:brown"), path where the files are
-- on the server. The kind follows the name's prefix ("tokens" or "text").

CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('tokens', 'text')),
    owner TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
