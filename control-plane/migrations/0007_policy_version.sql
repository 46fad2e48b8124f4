-- Counts the changes of a device's passcode policies (either store). Each signed policy carries
-- it, so a device can refuse an older policy replayed to it (PROTOCOL.md CP-POLICY-3).
ALTER TABLE devices ADD COLUMN policy_version INTEGER NOT NULL DEFAULT 0;
