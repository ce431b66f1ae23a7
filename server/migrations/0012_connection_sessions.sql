-- The direct connection journey: a session the partner creates for one of its users (its
-- pages carry an unguessable partnerToken; the partner completes it with the termination
-- token it got on the redirect back), and each authorization at a bank in flight (the OAuth
-- `state` that comes back on the callback, single-use; the PKCE verifier, sealed).
-- Tokens are stored as their SHA-256.
CREATE TABLE connection_sessions (
    id                      TEXT PRIMARY KEY,
    partner_id              TEXT NOT NULL REFERENCES partners(id),
    user_id                 TEXT NOT NULL REFERENCES users(id),
    partner_redirect_url    TEXT NOT NULL,
    correlation_id          TEXT,
    partner_token_hash      BLOB NOT NULL UNIQUE,
    termination_token_hash  BLOB UNIQUE,
    outcome                 TEXT,
    status                  TEXT NOT NULL CHECK (status IN ('CREATED', 'IN_PROGRESS', 'AWAITING_COMPLETION', 'COMPLETED', 'FAILED')),
    created_at              INTEGER NOT NULL,
    expires_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX connection_sessions_by_partner ON connection_sessions (partner_id, created_at);

CREATE TABLE connection_attempts (
    state_hash       BLOB PRIMARY KEY,
    session_id       TEXT NOT NULL REFERENCES connection_sessions(id),
    bank_id          TEXT NOT NULL,
    bank_consent_id  TEXT NOT NULL,
    verifier         TEXT NOT NULL,
    created_at       INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
