-- A user's consent at a bank and the OAuth tokens it was granted: what the workers present
-- when they fetch the accounts linked to it (accounts.bank_id + accounts.bank_consent_id).
-- Both tokens are sealed (AES-256-GCM, `secrets.rs`); the access token is replaced when it
-- is refreshed, the refresh token when the bank rotates it.
CREATE TABLE bank_consents (
    bank_id            TEXT NOT NULL,
    bank_consent_id    TEXT NOT NULL,
    user_id            TEXT NOT NULL REFERENCES users(id),
    access_token       TEXT NOT NULL,
    access_expires_at  INTEGER NOT NULL,
    refresh_token      TEXT,
    expires_at         INTEGER,
    ended_at           INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (bank_id, bank_consent_id)
) STRICT, WITHOUT ROWID;
