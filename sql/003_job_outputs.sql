-- 003_job_outputs.sql — the model a train job will register (its "name"), so a second job
-- training into the same name is refused at submission instead of training to the end and
-- being thrown away. Unique among queued and running jobs; a finished job's name is then the
-- registered model's (models.name is unique), a failed or cancelled job frees it.

ALTER TABLE jobs ADD COLUMN out_model TEXT;
CREATE UNIQUE INDEX jobs_live_out_model ON jobs(out_model)
    WHERE out_model IS NOT NULL AND state IN ('queued', 'running');
