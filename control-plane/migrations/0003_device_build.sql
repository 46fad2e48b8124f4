-- droidfleet control plane schema, version 3 (SQLite): the Android a device reports it runs.
--
-- Databases in the field already ran 0001 and 0002; this file only adds to them. Existing devices
-- are "unknown" (0, '') until their next session's Hello says.

-- The Android API level from the device's last Hello (26 for Android 8.0 ... 35 for Android 15);
-- 0 while unknown.
ALTER TABLE devices ADD COLUMN api_level INTEGER NOT NULL DEFAULT 0;
-- The maker profile from the device's last Hello; '' while unknown.
ALTER TABLE devices ADD COLUMN maker_profile TEXT NOT NULL DEFAULT '';
