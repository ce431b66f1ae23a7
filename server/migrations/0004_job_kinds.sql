-- Why a job exists: a partner's on-demand refresh, the scheduler, or the first fetch after
-- a connection. It decides the type of the events the job's accounts produce.
ALTER TABLE refresh_jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'ON_DEMAND'
    CHECK (kind IN ('ON_DEMAND', 'SCHEDULED', 'INITIAL'));
