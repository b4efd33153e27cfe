-- 002_model_components.sql — a model's component table (`prunelab components --model PATH`),
-- recorded once per checkpoint file so GET /api/v1/models/{name}/components never loads the
-- checkpoint again. file_key is the file's identity when the table was made (device, inode,
-- size, modification time in ns): a replaced file has another key and its table is made anew.
-- Deleting the model deletes its table.

CREATE TABLE model_components (
    model_id   INTEGER PRIMARY KEY REFERENCES models(id) ON DELETE CASCADE,
    file_key   TEXT    NOT NULL,
    doc        TEXT    NOT NULL CHECK (json_valid(doc)),
    created_ms INTEGER NOT NULL
);
