-- Pending transactions: a bank reports a card payment as pending, then books it — sometimes
-- under a new id. Both are one transaction here, updated in place: `match_key` is the bank's
-- reference for it (TransactionReference) when the bank gives one, else the bank's id.
ALTER TABLE transactions ADD COLUMN status TEXT NOT NULL DEFAULT 'BOOKED' CHECK (status IN ('PENDING', 'BOOKED'));
ALTER TABLE transactions ADD COLUMN match_key TEXT;
UPDATE transactions SET match_key = bank_transaction_id;
CREATE UNIQUE INDEX transactions_by_match_key ON transactions (account_id, match_key);
