-- How many transactions each partner's users hold, kept by the database in the same
-- commit as the rows: what the sandbox's per-partner quota reads, at connection and at
-- every ingestion, without counting rows (a COUNT over 100,000 rows on the engine's path).
-- INSERT OR IGNORE skips the trigger for rows it ignores, so duplicates never count.
ALTER TABLE partners ADD COLUMN transactions_held INTEGER NOT NULL DEFAULT 0;
UPDATE partners SET transactions_held = (
    SELECT COUNT(*) FROM transactions t JOIN users u ON u.id = t.user_id
     WHERE u.partner_id = partners.id);
CREATE TRIGGER transactions_held_on_insert AFTER INSERT ON transactions BEGIN
    UPDATE partners SET transactions_held = transactions_held + 1
     WHERE id = (SELECT partner_id FROM users WHERE id = NEW.user_id);
END;
CREATE TRIGGER transactions_held_on_delete AFTER DELETE ON transactions BEGIN
    UPDATE partners SET transactions_held = transactions_held - 1
     WHERE id = (SELECT partner_id FROM users WHERE id = OLD.user_id);
END;
