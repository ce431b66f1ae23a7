-- A subscription disabled by a 410 keeps the events that happen while it is disabled,
-- waiting, as a paused one does: resuming it delivers them (the deliveries that were
-- waiting when the 410 came are failed then, and `recover` sends them again). Before, the
-- fan-out skipped disabled subscriptions, so those events were lost to them for good.
DROP TRIGGER events_to_webhook_deliveries;
CREATE TRIGGER events_to_webhook_deliveries AFTER INSERT ON events BEGIN
    INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, payload,
        event_created_at, status, attempts, next_attempt_at, created_at, updated_at)
    SELECT s.id, NEW.id, NEW.type, NEW.payload, NEW.created_at, 'PENDING', 0,
        NEW.created_at, NEW.created_at, NEW.created_at
    FROM webhook_subscriptions s
    WHERE s.partner_id = NEW.partner_id
      AND EXISTS (SELECT 1 FROM json_each(s.event_types) WHERE value = NEW.type);
END;
