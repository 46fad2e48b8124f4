-- droidfleet control plane schema, version 2 (SQLite): device groups, role assignments scoped to
-- a group, and enrollment tokens bound to a known device for explicit re-enrollment.
--
-- Databases in the field already ran 0001; this file only adds to it. Existing devices and
-- tokens join the group "default"; existing role assignments hold for every group, as before.

-- The group a device belongs to; role assignments can be limited to one group.
ALTER TABLE devices ADD COLUMN device_group TEXT NOT NULL DEFAULT 'default';
CREATE INDEX devices_group ON devices (device_group, enrolled_at);

-- The group devices enrolling with the token join.
ALTER TABLE enrollment_tokens ADD COLUMN device_group TEXT NOT NULL DEFAULT 'default';
-- Set for a re-enrollment token (AdminService.ReEnrollDevice): enrolling with it gives this known
-- device a new credential instead of creating a device.
ALTER TABLE enrollment_tokens ADD COLUMN device_id TEXT REFERENCES devices (id) ON DELETE CASCADE;
CREATE INDEX enrollment_tokens_device ON enrollment_tokens (device_id) WHERE device_id IS NOT NULL;

-- Role assignments, each for every group (device_group NULL) or for one group. Replaces
-- principal_roles, whose primary key could not hold the same role for two groups.
CREATE TABLE role_assignments (
    principal    TEXT NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
    role         TEXT NOT NULL REFERENCES roles (name),
    device_group TEXT                                    -- NULL: every group
);
-- A group name is never empty, so '' stands for "every group" in the uniqueness test.
CREATE UNIQUE INDEX role_assignments_unique
    ON role_assignments (principal, role, IFNULL(device_group, ''));
CREATE INDEX role_assignments_role ON role_assignments (role);

INSERT INTO role_assignments (principal, role, device_group)
    SELECT principal, role, NULL FROM principal_roles ORDER BY rowid;
DROP TABLE principal_roles;
