-- ListDevices pages in enrollment order (enrolled_at, then id) by keyset: each page starts after
-- the previous page's last (enrolled_at, id) and walks one of these indexes from there, so a page
-- reads its own rows whatever the fleet's size, and never sorts the table. The group index
-- replaces 0002's (device_group, enrolled_at), of which it is an extension.
CREATE INDEX devices_enrolled ON devices (enrolled_at, id);
DROP INDEX devices_group;
CREATE INDEX devices_group_enrolled ON devices (device_group, enrolled_at, id);
