-- droidfleet control plane schema, version 3 (SQLite): indexes for the paged device list
-- (AdminService.SearchDevices), ordered by display name then id.
--
-- A page is read by walking one of these in order from the page token's position, so its cost
-- follows the page size rather than the fleet's. The group and enrollment-type filters each have
-- an index of their own that starts with the filtered column.

CREATE INDEX devices_name ON devices (display_name, id);
CREATE INDEX devices_group_name ON devices (device_group, display_name, id);
CREATE INDEX devices_ownership_name ON devices (ownership, display_name, id);
