-- The event log (outbox): every event a partner is told about, in commit order. `seq` is
-- the SSE `id:`; webhooks will deliver from here too. A rowid table on purpose: `seq`
-- must grow with each insert.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    partner_id  TEXT NOT NULL REFERENCES partners(id),
    type        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX events_by_partner ON events (partner_id, seq);
