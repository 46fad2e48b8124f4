-- When a command was first handed to a device's session. A command never sent may be canceled or
-- expire outright (its passcode purged); once sent, the device may have applied it, so the
-- passcode is kept until the device's final report (PROTOCOL.md CP-DELIVERY-3, CP-DELIVERY-4).
ALTER TABLE actions ADD COLUMN sent_at INTEGER;
