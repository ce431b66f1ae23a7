-- The portal's operations page reads a partner's last day of jobs (and through them their
-- items): without this index that read walked every job of every partner.
CREATE INDEX refresh_jobs_by_partner ON refresh_jobs (partner_id, created_at);
