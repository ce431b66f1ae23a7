-- The engine reads, claims and ends an account's open items by account (and checks that no
-- other worker holds a live lease on it): without this index each of those lookups walked
-- every open item, so claims cost more the longer the queue.
CREATE INDEX refresh_job_items_by_account ON refresh_job_items (account_id, state);
