-- PostgreSQL only, on purpose (SQLite keeps these keys): the four foreign keys that every
-- new job and job item checked, row by row, on the refresh endpoint's hot path.
--
-- Measured (BENCHMARKS.md, issue 15): the checks were ~40 % of the jobs' insert statement
-- and the endpoint went from ~3.3 k to ~5.2 k refreshes/s without them on the project's box.
-- PostgreSQL checks a foreign key with one SPI query per row that also locks the referenced
-- row FOR KEY SHARE; refresh_jobs.partner_id made every concurrent batch of a partner share
-- one such lock on the partner's row (a MultiXact extended by each new locker).
--
-- Nothing is lost by dropping them here: rows of these tables are only ever written by the
-- one statement in store/jobs.rs (INSERT_JOBS_PG), which inserts each job together with
-- its items, for a user and accounts that the same transaction has just read or written;
-- users, accounts, partners and jobs are never deleted. The SQLite schema keeps the keys,
-- so the integration suite, which runs on both backends, still catches a writer that
-- breaks them.
ALTER TABLE refresh_jobs DROP CONSTRAINT refresh_jobs_partner_id_fkey;
ALTER TABLE refresh_jobs DROP CONSTRAINT refresh_jobs_user_id_fkey;
ALTER TABLE refresh_job_items DROP CONSTRAINT refresh_job_items_job_id_fkey;
ALTER TABLE refresh_job_items DROP CONSTRAINT refresh_job_items_account_id_fkey;
