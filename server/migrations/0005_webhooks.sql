-- Webhooks: a partner's subscriptions, one delivery per (event, matching subscription), and
-- every attempt of every delivery.
CREATE TABLE webhook_subscriptions (
    id                          TEXT PRIMARY KEY,
    partner_id                  TEXT NOT NULL REFERENCES partners(id),
    target_url                  TEXT NOT NULL,
    -- A JSON array of event types.
    event_types                 TEXT NOT NULL,
    -- whsec_...: kept in clear because every delivery is signed with it.
    secret                      TEXT NOT NULL,
    -- The secret before the last rotation: it signs too until it expires.
    previous_secret             TEXT,
    previous_secret_expires_at  INTEGER,
    paused                      INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- Set when the receiver answered 410 Gone; unpausing clears it.
    disabled_at                 INTEGER,
    disabled_reason             TEXT,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX webhook_subscriptions_by_partner ON webhook_subscriptions (partner_id, created_at);

-- The delivery queue. A row is due when PENDING and next_attempt_at has passed; a claim
-- moves next_attempt_at to the lease's end, so a killed process's deliveries come due again.
-- The event is copied in, so that test events (not in the event log) deliver the same way.
CREATE TABLE webhook_deliveries (
    subscription_id   TEXT NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    event_id          TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    payload           TEXT NOT NULL,
    event_created_at  INTEGER NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER,
    lease_owner       TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, event_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (subscription_id, next_attempt_at)
    WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (subscription_id, status, created_at);

-- Every attempt. It is written when the attempt starts (IN_PROGRESS) and completed when it
-- ends; one still IN_PROGRESS when its delivery is claimed again was cut off by a crash.
CREATE TABLE webhook_attempts (
    subscription_id   TEXT NOT NULL,
    event_id          TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    outcome           TEXT NOT NULL CHECK (outcome IN ('IN_PROGRESS', 'SUCCEEDED', 'FAILED')),
    finished_at       INTEGER,
    status_code       INTEGER,
    latency_ms        INTEGER,
    error_kind        TEXT,
    response_excerpt  TEXT,
    next_attempt_at   INTEGER,
    PRIMARY KEY (subscription_id, event_id, attempt),
    FOREIGN KEY (subscription_id, event_id)
        REFERENCES webhook_deliveries(subscription_id, event_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX webhook_attempts_by_time ON webhook_attempts (subscription_id, started_at);

-- Fan-out in the event's own transaction: an event is either committed with a delivery for
-- every subscription that wanted it, or not at all.
CREATE TRIGGER events_to_webhook_deliveries AFTER INSERT ON events BEGIN
    INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, payload,
        event_created_at, status, attempts, next_attempt_at, created_at, updated_at)
    SELECT s.id, NEW.id, NEW.type, NEW.payload, NEW.created_at, 'PENDING', 0,
        NEW.created_at, NEW.created_at, NEW.created_at
    FROM webhook_subscriptions s
    WHERE s.partner_id = NEW.partner_id AND s.disabled_at IS NULL
      AND EXISTS (SELECT 1 FROM json_each(s.event_types) WHERE value = NEW.type);
END;
