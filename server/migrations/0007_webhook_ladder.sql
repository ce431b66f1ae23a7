-- A delivery sent again by hand (redeliver, recover) starts the retry ladder over: its
-- steps count from the attempts it had then.
ALTER TABLE webhook_deliveries ADD COLUMN ladder_start INTEGER NOT NULL DEFAULT 0;
