-- freshet's PostgreSQL schema: the same schema as the SQLite migrations 0001-0018 in
-- ../migrations leave behind (same tables, columns, keys, constraints, indexes and
-- triggers), written as one migration. From now on every schema change gets a migration in
-- both directories, with the same meaning.
--
-- Types follow the SQLite ones exactly, because the code binds the same Rust types on both
-- backends: TEXT -> TEXT, INTEGER -> BIGINT (flags too, kept to 0/1 by CHECKs),
-- BLOB -> BYTEA, REAL -> DOUBLE PRECISION. Instants are Unix milliseconds (BIGINT, UTC);
-- ids are UUID text.

-- SQLite's COLLATE NOCASE: equality (and so uniqueness) that ignores case. Used by
-- portal_users.email, so that `WHERE email = $1` finds an email whatever its case.
CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);

CREATE TABLE partners (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    -- Partners enrolled in the direct connection journey may create users and refresh them.
    direct_enabled     BIGINT NOT NULL DEFAULT 1 CHECK (direct_enabled IN (0, 1)),
    created_at         BIGINT NOT NULL,
    -- How many transactions the partner's users hold, kept by the triggers on transactions
    -- in the same commit as the rows: what the sandbox's per-partner quota reads.
    transactions_held  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    partner_id  TEXT NOT NULL REFERENCES partners(id),
    -- SHA-256 of the whole key: keys are 192 random bits, so a fast hash is enough.
    key_hash    BYTEA NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    partner_id          TEXT NOT NULL REFERENCES partners(id),
    source              TEXT NOT NULL CHECK (source IN ('DIRECT', 'MARKETPLACE')),
    external_reference  TEXT,
    created_at          BIGINT NOT NULL
);
CREATE INDEX users_by_partner ON users (partner_id, created_at, id);

CREATE TABLE accounts (
    id                              TEXT PRIMARY KEY,
    user_id                         TEXT NOT NULL REFERENCES users(id),
    provider_name                   TEXT NOT NULL,
    account_type                    TEXT NOT NULL,
    currency                        TEXT NOT NULL,
    balance                         TEXT NOT NULL,
    consent_status                  TEXT NOT NULL CHECK (consent_status IN ('ACTIVE', 'EXPIRED')),
    consent_expires_at              BIGINT,
    last_transaction_refresh_date   BIGINT,
    -- Set while a refresh of the account is queued or running: when it was triggered
    -- (its open item in refresh_job_items says by which job).
    in_flight_since                 BIGINT,
    created_at                      BIGINT NOT NULL,
    -- The account's bank and how that bank knows it: the bank's id for the account and the
    -- consent freshet presents. Opaque to everything but the bank's connector.
    bank_id                         TEXT NOT NULL DEFAULT 'sandbox',
    bank_account_id                 TEXT NOT NULL DEFAULT '',
    bank_consent_id                 TEXT NOT NULL DEFAULT ''
);
CREATE INDEX accounts_by_user ON accounts (user_id, id);

CREATE TABLE transactions (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL REFERENCES accounts(id),
    user_id              TEXT NOT NULL REFERENCES users(id),
    bank_transaction_id  TEXT NOT NULL,
    created              BIGINT NOT NULL,
    booked_at            BIGINT NOT NULL,
    amount               TEXT NOT NULL,
    currency             TEXT NOT NULL,
    description          TEXT NOT NULL,
    merchant_name        TEXT,
    category             TEXT,
    -- A pending transaction is updated in place when it is booked (sometimes under a new
    -- bank id): `match_key` is the bank's reference for it when it gives one, else its id.
    status               TEXT NOT NULL DEFAULT 'BOOKED' CHECK (status IN ('PENDING', 'BOOKED')),
    match_key            TEXT,
    UNIQUE (account_id, bank_transaction_id)
);
CREATE INDEX transactions_by_user ON transactions (user_id, created DESC, id DESC);
CREATE INDEX transactions_by_account ON transactions (account_id, created DESC, id DESC);
CREATE UNIQUE INDEX transactions_by_match_key ON transactions (account_id, match_key);

CREATE TABLE refresh_jobs (
    id           TEXT PRIMARY KEY,
    partner_id   TEXT NOT NULL REFERENCES partners(id),
    user_id      TEXT NOT NULL REFERENCES users(id),
    status       TEXT NOT NULL CHECK (status IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'PARTIALLY_FAILED', 'FAILED')),
    created_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    -- Why the job exists: a partner's on-demand refresh, the scheduler, or the first fetch
    -- after a connection. It decides the type of the events the job's accounts produce.
    kind         TEXT NOT NULL DEFAULT 'ON_DEMAND' CHECK (kind IN ('ON_DEMAND', 'SCHEDULED', 'INITIAL'))
);
CREATE INDEX refresh_jobs_by_user ON refresh_jobs (user_id, created_at);
CREATE INDEX refresh_jobs_by_partner ON refresh_jobs (partner_id, created_at);

CREATE TABLE refresh_job_items (
    job_id            TEXT NOT NULL REFERENCES refresh_jobs(id),
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    state             TEXT NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED')),
    attempts          BIGINT NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires_at  BIGINT,
    started_at        BIGINT,
    finished_at       BIGINT,
    new_transactions  BIGINT,
    error_code        TEXT,
    error_retryable   BIGINT,
    PRIMARY KEY (job_id, account_id)
);
CREATE INDEX refresh_job_items_open ON refresh_job_items (state, lease_expires_at)
    WHERE state IN ('QUEUED', 'RUNNING');
CREATE INDEX refresh_job_items_by_account ON refresh_job_items (account_id, state);

-- Idempotency-Key records: the first response, replayed for 24 hours.
CREATE TABLE idempotency_keys (
    partner_id   TEXT NOT NULL REFERENCES partners(id),
    key          TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    status       BIGINT NOT NULL,
    body         TEXT NOT NULL,
    retry_after  BIGINT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (partner_id, key)
);

-- Staff of a partner who sign in to the portal. Passwords are argon2id PHC strings.
CREATE TABLE portal_users (
    id             TEXT PRIMARY KEY,
    partner_id     TEXT NOT NULL REFERENCES partners(id),
    email          TEXT COLLATE nocase NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

-- Signed-in portal users. The cookie holds a random token; only its SHA-256 is stored.
CREATE TABLE portal_sessions (
    token_hash      TEXT PRIMARY KEY,
    portal_user_id  TEXT NOT NULL REFERENCES portal_users(id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX portal_sessions_by_user ON portal_sessions (portal_user_id);

-- The event log (outbox): every event a partner is told about. `seq` is the SSE `id:`;
-- webhooks deliver from here too.
CREATE TABLE events (
    seq         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    partner_id  TEXT NOT NULL REFERENCES partners(id),
    type        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX events_by_partner ON events (partner_id, seq);

-- Webhooks: a partner's subscriptions, one delivery per (event, matching subscription), and
-- every attempt of every delivery.
CREATE TABLE webhook_subscriptions (
    id                          TEXT PRIMARY KEY,
    partner_id                  TEXT NOT NULL REFERENCES partners(id),
    target_url                  TEXT NOT NULL,
    -- A JSON array of event types (text, as in SQLite).
    event_types                 TEXT NOT NULL,
    -- whsec_...: kept in clear because every delivery is signed with it.
    secret                      TEXT NOT NULL,
    -- The secret before the last rotation: it signs too until it expires.
    previous_secret             TEXT,
    previous_secret_expires_at  BIGINT,
    paused                      BIGINT NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- Set when the receiver answered 410 Gone; unpausing clears it.
    disabled_at                 BIGINT,
    disabled_reason             TEXT,
    created_at                  BIGINT NOT NULL,
    updated_at                  BIGINT NOT NULL
);
CREATE INDEX webhook_subscriptions_by_partner ON webhook_subscriptions (partner_id, created_at);

-- The delivery queue. A row is due when PENDING and next_attempt_at has passed; a claim
-- moves next_attempt_at to the lease's end, so a killed process's deliveries come due again.
-- The event is copied in, so that test events (not in the event log) deliver the same way.
CREATE TABLE webhook_deliveries (
    subscription_id   TEXT NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    event_id          TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    payload           TEXT NOT NULL,
    event_created_at  BIGINT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT,
    lease_owner       TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    -- A delivery sent again by hand (redeliver, recover) starts the retry ladder over: its
    -- steps count from the attempts it had then.
    ladder_start      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (subscription_id, next_attempt_at)
    WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (subscription_id, status, created_at);

-- Every attempt. It is written when the attempt starts (IN_PROGRESS) and completed when it
-- ends; one still IN_PROGRESS when its delivery is claimed again was cut off by a crash.
CREATE TABLE webhook_attempts (
    subscription_id   TEXT NOT NULL,
    event_id          TEXT NOT NULL,
    attempt           BIGINT NOT NULL,
    started_at        BIGINT NOT NULL,
    outcome           TEXT NOT NULL CHECK (outcome IN ('IN_PROGRESS', 'SUCCEEDED', 'FAILED')),
    finished_at       BIGINT,
    status_code       BIGINT,
    latency_ms        BIGINT,
    error_kind        TEXT,
    response_excerpt  TEXT,
    next_attempt_at   BIGINT,
    PRIMARY KEY (subscription_id, event_id, attempt),
    FOREIGN KEY (subscription_id, event_id)
        REFERENCES webhook_deliveries(subscription_id, event_id) ON DELETE CASCADE
);
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (subscription_id, started_at);

-- The banks (account servicers) freshet fetches from, and how to reach them.
-- `client_secret` is sealed (AES-256-GCM, `secrets.rs`): the key id travels inside it.
CREATE TABLE banks (
    id                   TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    name                 TEXT NOT NULL,
    api_base             TEXT NOT NULL,
    issuer               TEXT,
    authorization_url    TEXT NOT NULL,
    token_url            TEXT NOT NULL,
    client_id            TEXT NOT NULL,
    client_secret        TEXT NOT NULL,
    ca_pem               TEXT,
    max_in_flight        BIGINT NOT NULL CHECK (max_in_flight > 0),
    requests_per_second  DOUBLE PRECISION NOT NULL CHECK (requests_per_second > 0),
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

-- A user's consent at a bank and the OAuth tokens it was granted (accounts.bank_id +
-- accounts.bank_consent_id name it). Both tokens are sealed (AES-256-GCM, `secrets.rs`).
CREATE TABLE bank_consents (
    bank_id              TEXT NOT NULL,
    bank_consent_id      TEXT NOT NULL,
    user_id              TEXT NOT NULL REFERENCES users(id),
    access_token         TEXT NOT NULL,
    access_expires_at    BIGINT NOT NULL,
    refresh_token        TEXT,
    expires_at           BIGINT,
    ended_at             BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    -- When each consent notice was sent (expiring at 7 days and at 1 day before its end,
    -- expired at its end): set in the commit that appends the event, so each is sent once.
    expiring_7d_sent_at  BIGINT,
    expiring_1d_sent_at  BIGINT,
    expired_sent_at      BIGINT,
    PRIMARY KEY (bank_id, bank_consent_id)
);
CREATE INDEX bank_consents_by_end ON bank_consents (expires_at) WHERE expired_sent_at IS NULL;

-- The direct connection journey: a session the partner creates for one of its users, and
-- each authorization at a bank in flight (the OAuth `state`, single-use; the PKCE verifier,
-- sealed). Tokens are stored as their SHA-256.
CREATE TABLE connection_sessions (
    id                      TEXT PRIMARY KEY,
    partner_id              TEXT NOT NULL REFERENCES partners(id),
    user_id                 TEXT NOT NULL REFERENCES users(id),
    partner_redirect_url    TEXT NOT NULL,
    correlation_id          TEXT,
    partner_token_hash      BYTEA NOT NULL UNIQUE,
    termination_token_hash  BYTEA UNIQUE,
    outcome                 TEXT,
    status                  TEXT NOT NULL CHECK (status IN ('CREATED', 'IN_PROGRESS', 'AWAITING_COMPLETION', 'COMPLETED', 'FAILED')),
    created_at              BIGINT NOT NULL,
    expires_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE INDEX connection_sessions_by_partner ON connection_sessions (partner_id, created_at);

CREATE TABLE connection_attempts (
    state_hash       BYTEA PRIMARY KEY,
    session_id       TEXT NOT NULL REFERENCES connection_sessions(id),
    bank_id          TEXT NOT NULL,
    bank_consent_id  TEXT NOT NULL,
    verifier         TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    -- Set when the authorization renews a consent: the accounts of the consent it names move
    -- to the new one.
    renews           TEXT
);

-- Fan-out in the event's own transaction: an event is either committed with a delivery for
-- every subscription of its partner that wants its type, or not at all. Disabled (410)
-- subscriptions get them too, waiting as a paused one's do (SQLite 0017).
CREATE FUNCTION events_to_webhook_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, payload,
        event_created_at, status, attempts, next_attempt_at, created_at, updated_at)
    SELECT s.id, NEW.id, NEW.type, NEW.payload, NEW.created_at, 'PENDING', 0,
        NEW.created_at, NEW.created_at, NEW.created_at
    FROM webhook_subscriptions s
    WHERE s.partner_id = NEW.partner_id
      AND s.event_types::jsonb ? NEW.type;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_to_webhook_deliveries AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_to_webhook_deliveries();

-- partners.transactions_held, kept in the rows' own commit. Rows skipped by ON CONFLICT DO
-- NOTHING, or updated by ON CONFLICT DO UPDATE, are not in the INSERT's transition table, so
-- they never count. Per statement, not per row (SQLite's triggers are per row): an engine
-- commit inserts thousands of rows, and one update per row of the same partner row cost it
-- two thirds of its throughput. The partners are locked in id order first, as every other
-- writer of several partners does, so that concurrent commits queue instead of deadlocking.
CREATE FUNCTION transactions_held_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM partners
     WHERE id IN (SELECT u.partner_id FROM new_rows r JOIN users u ON u.id = r.user_id)
     ORDER BY id FOR NO KEY UPDATE;
    UPDATE partners p SET transactions_held = p.transactions_held + c.n
      FROM (SELECT u.partner_id, COUNT(*) AS n FROM new_rows r JOIN users u ON u.id = r.user_id
            GROUP BY u.partner_id) AS c
     WHERE p.id = c.partner_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER transactions_held_on_insert AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION transactions_held_on_insert();

CREATE FUNCTION transactions_held_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM partners
     WHERE id IN (SELECT u.partner_id FROM old_rows r JOIN users u ON u.id = r.user_id)
     ORDER BY id FOR NO KEY UPDATE;
    UPDATE partners p SET transactions_held = p.transactions_held - c.n
      FROM (SELECT u.partner_id, COUNT(*) AS n FROM old_rows r JOIN users u ON u.id = r.user_id
            GROUP BY u.partner_id) AS c
     WHERE p.id = c.partner_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER transactions_held_on_delete AFTER DELETE ON transactions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION transactions_held_on_delete();
