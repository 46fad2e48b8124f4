-- A cancel an admin asked for after the command was sent (PROTOCOL.md CP-CANCEL-1): when it was
-- asked, the sequence of the signed cancel that goes to the device in the command's place (NULL
-- again once the device refused it without answering the command, so the command goes again),
-- and the device's reason when it refused.
ALTER TABLE actions ADD COLUMN cancel_requested_at INTEGER;
ALTER TABLE actions ADD COLUMN cancel_sequence INTEGER;
ALTER TABLE actions ADD COLUMN cancel_refusal TEXT;

-- The cancel takes the device's next sequence number, as a new command would, in the statement
-- that asks for it.
CREATE TRIGGER actions_cancel_sequence AFTER UPDATE OF cancel_sequence ON actions
WHEN NEW.cancel_sequence IS NOT NULL AND OLD.cancel_sequence IS NULL
BEGIN
    UPDATE devices SET next_sequence = MAX(next_sequence, NEW.cancel_sequence + 1)
    WHERE id = NEW.device_id;
END;
