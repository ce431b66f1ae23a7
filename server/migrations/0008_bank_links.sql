-- An account names its bank and how that bank knows it: the bank's id for the account and
-- the consent freshet presents. Opaque to everything but the bank's connector; the sandbox
-- bank's persona (which only the sandbox knew) now lives inside its consent id.
ALTER TABLE accounts ADD COLUMN bank_id TEXT NOT NULL DEFAULT 'sandbox';
ALTER TABLE accounts ADD COLUMN bank_account_id TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN bank_consent_id TEXT NOT NULL DEFAULT '';
UPDATE accounts SET bank_account_id = id,
    bank_consent_id = 'sbx.' || persona || '.'
        || (SELECT u.partner_id FROM users u WHERE u.id = accounts.user_id) || '.' || id;
ALTER TABLE accounts DROP COLUMN persona;
