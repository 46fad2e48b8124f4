-- droidfleet control plane schema, version 4 (SQLite): what the paged device list
-- (AdminService.SearchDevices) needs to read a page of a hundred thousand devices without reading
-- them all: each device's newest action kept on its row, and indexes in list order (display name,
-- then id) after each filter.

-- The device's newest action (the last one created) and its state, kept by the triggers below in
-- the same transaction as the action's own write, so the store's code writes actions as before.
ALTER TABLE devices ADD COLUMN latest_action_id TEXT;
ALTER TABLE devices ADD COLUMN latest_action_state TEXT;
UPDATE devices SET latest_action_id = (
    SELECT a.id FROM actions a WHERE a.device_id = devices.id
    ORDER BY a.created_at DESC, a.rowid DESC LIMIT 1
);
UPDATE devices SET latest_action_state = (
    SELECT a.state FROM actions a WHERE a.id = devices.latest_action_id
);

CREATE TRIGGER actions_newest_on_insert AFTER INSERT ON actions
BEGIN
    UPDATE devices SET latest_action_id = NEW.id, latest_action_state = NEW.state
    WHERE id = NEW.device_id;
END;

CREATE TRIGGER actions_newest_on_state AFTER UPDATE OF state ON actions
BEGIN
    UPDATE devices SET latest_action_state = NEW.state
    WHERE id = NEW.device_id AND latest_action_id = NEW.id;
END;

-- A page is read by walking one of these in order from the page token's position, so its cost
-- follows the page size rather than the fleet's.
CREATE INDEX devices_name ON devices (display_name, id);
CREATE INDEX devices_group_name ON devices (device_group, display_name, id);
CREATE INDEX devices_ownership_name ON devices (ownership, display_name, id);
CREATE INDEX devices_latest_state_name ON devices (latest_action_state, display_name, id);
