-- When each consent's notices were sent (v1.consent.expiring at 7 days and at 1 day before its
-- end, v1.consent.expired at its end): set in the commit that appends the event, so each is
-- sent once, across restarts.
ALTER TABLE bank_consents ADD COLUMN expiring_7d_sent_at INTEGER;
ALTER TABLE bank_consents ADD COLUMN expiring_1d_sent_at INTEGER;
ALTER TABLE bank_consents ADD COLUMN expired_sent_at INTEGER;
CREATE INDEX bank_consents_by_end ON bank_consents (expires_at) WHERE expired_sent_at IS NULL;
