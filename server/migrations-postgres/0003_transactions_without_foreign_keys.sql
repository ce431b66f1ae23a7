-- PostgreSQL only, on purpose (SQLite keeps these keys), for the reason of 0002: the
-- transactions' foreign keys to their account and user, checked row by row (one SPI query
-- and a FOR KEY SHARE lock per row; ~7 rows per fetched account) in the engine's commit.
-- Measured: ~20-25 % of the insert of 64 accounts' transactions.
--
-- The rows are written by one statement alone (store/transactions.rs, insert_many), for
-- accounts the same transaction has claimed or has just created; accounts and users are
-- never deleted. The SQLite schema keeps the keys, and the integration suite runs on both.
ALTER TABLE transactions DROP CONSTRAINT transactions_account_id_fkey;
ALTER TABLE transactions DROP CONSTRAINT transactions_user_id_fkey;
