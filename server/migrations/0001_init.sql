-- freshet's first schema. Instants are Unix milliseconds (INTEGER, UTC); ids are UUID text.
-- STRICT tables: SQLite refuses values of the wrong type instead of storing them.
-- WITHOUT ROWID: every table is keyed by text ids, so the primary key is the table itself
-- (one B-tree per insert instead of a rowid table plus a key index: the refresh hot path
-- writes a job, its items and marks accounts in every batch).

CREATE TABLE partners (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    -- Partners enrolled in the direct connection journey may create users and refresh them.
    direct_enabled  INTEGER NOT NULL DEFAULT 1 CHECK (direct_enabled IN (0, 1)),
    created_at      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    partner_id  TEXT NOT NULL REFERENCES partners(id),
    -- SHA-256 of the whole key: keys are 192 random bits, so a fast hash is enough.
    key_hash    BLOB NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT, WITHOUT ROWID;

CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    partner_id          TEXT NOT NULL REFERENCES partners(id),
    source              TEXT NOT NULL CHECK (source IN ('DIRECT', 'MARKETPLACE')),
    external_reference  TEXT,
    created_at          INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX users_by_partner ON users (partner_id, created_at, id);

CREATE TABLE accounts (
    id                              TEXT PRIMARY KEY,
    user_id                         TEXT NOT NULL REFERENCES users(id),
    provider_name                   TEXT NOT NULL,
    account_type                    TEXT NOT NULL,
    currency                        TEXT NOT NULL,
    balance                         TEXT NOT NULL,
    consent_status                  TEXT NOT NULL CHECK (consent_status IN ('ACTIVE', 'EXPIRED')),
    consent_expires_at              INTEGER,
    last_transaction_refresh_date   INTEGER,
    -- Set while a refresh of the account is queued or running: when it was triggered
    -- (its open item in refresh_job_items says by which job).
    in_flight_since                 INTEGER,
    persona                         TEXT NOT NULL DEFAULT 'salaried',
    created_at                      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX accounts_by_user ON accounts (user_id, id);

CREATE TABLE transactions (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES accounts(id),
    user_id              TEXT NOT NULL REFERENCES users(id),
    bank_transaction_id  TEXT NOT NULL,
    created              INTEGER NOT NULL,
    booked_at            INTEGER NOT NULL,
    amount               TEXT NOT NULL,
    currency             TEXT NOT NULL,
    description          TEXT NOT NULL,
    merchant_name        TEXT,
    category             TEXT,
    UNIQUE (account_id, bank_transaction_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX transactions_by_user ON transactions (user_id, created DESC, id DESC);
CREATE INDEX transactions_by_account ON transactions (account_id, created DESC, id DESC);

CREATE TABLE refresh_jobs (
    id           TEXT PRIMARY KEY,
    partner_id   TEXT NOT NULL REFERENCES partners(id),
    user_id      TEXT NOT NULL REFERENCES users(id),
    status       TEXT NOT NULL CHECK (status IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'PARTIALLY_FAILED', 'FAILED')),
    created_at   INTEGER NOT NULL,
    finished_at  INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX refresh_jobs_by_user ON refresh_jobs (user_id, created_at);

CREATE TABLE refresh_job_items (
    job_id            TEXT NOT NULL REFERENCES refresh_jobs(id),
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    state             TEXT NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    started_at        INTEGER,
    finished_at       INTEGER,
    new_transactions  INTEGER,
    error_code        TEXT,
    error_retryable   INTEGER,
    PRIMARY KEY (job_id, account_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX refresh_job_items_open ON refresh_job_items (state, lease_expires_at) WHERE state IN ('QUEUED', 'RUNNING');

-- Idempotency-Key records: the first response, replayed for 24 hours.
CREATE TABLE idempotency_keys (
    partner_id   TEXT NOT NULL REFERENCES partners(id),
    key          TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT NOT NULL,
    retry_after  INTEGER,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (partner_id, key)
) STRICT, WITHOUT ROWID;
