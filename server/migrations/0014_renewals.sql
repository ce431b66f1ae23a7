-- An authorization started from the management page renews a consent: the accounts of the
-- consent it names move to the new one (same accounts at the bank, a new end).
ALTER TABLE connection_attempts ADD COLUMN renews TEXT;
