-- Signed-in portal users. The cookie holds a random token; only its SHA-256 is stored, so a
-- read of the database does not hand out sessions.
CREATE TABLE portal_sessions (
    token_hash      TEXT PRIMARY KEY,
    portal_user_id  TEXT NOT NULL REFERENCES portal_users(id) ON DELETE CASCADE,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX portal_sessions_by_user ON portal_sessions (portal_user_id);
