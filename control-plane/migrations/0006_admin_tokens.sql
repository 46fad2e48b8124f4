-- Admin tokens with a lifecycle: each principal's tokens in a table of their own, each with an
-- expiry, and ended by revocation or by a rotation (after its grace period). An ended token's
-- row is kept, so a call with it is told why it is refused.
--
-- principals.token_hash (NOT NULL UNIQUE, which SQLite cannot drop) moves to admin_tokens, so
-- principals is rebuilt. role_assignments references principals with ON DELETE CASCADE: it is
-- set aside first and rebuilt after, so dropping the old principals table deletes no assignment.
-- Tokens that existed before expire 90 days after this migration (the default time-to-live).

CREATE TABLE saved_role_assignments AS
    SELECT rowid AS position, principal, role, device_group FROM role_assignments;
DROP TABLE role_assignments;

CREATE TABLE saved_principals AS
    SELECT rowid AS position, name, token_hash, created_at FROM principals;
DROP TABLE principals;

CREATE TABLE principals (
    name       TEXT    PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL
);
INSERT INTO principals (name, created_at)
    SELECT name, created_at FROM saved_principals ORDER BY position;

CREATE TABLE role_assignments (
    principal    TEXT NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
    role         TEXT NOT NULL REFERENCES roles (name),
    device_group TEXT                                    -- NULL: every group
);
CREATE UNIQUE INDEX role_assignments_unique
    ON role_assignments (principal, role, IFNULL(device_group, ''));
CREATE INDEX role_assignments_role ON role_assignments (role);
INSERT INTO role_assignments (principal, role, device_group)
    SELECT principal, role, device_group FROM saved_role_assignments ORDER BY position;
DROP TABLE saved_role_assignments;

CREATE TABLE admin_tokens (
    token_hash BLOB    PRIMARY KEY NOT NULL,           -- SHA-256 of the bearer token
    principal  TEXT    NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
    issued_at  INTEGER NOT NULL,
    -- Refused from then on: the time-to-live it was issued with, brought forward by a rotation
    -- to the end of the rotation's grace period.
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,                                -- set: refused as revoked
    rotated_at INTEGER                                 -- set: a rotation replaced it
);
CREATE INDEX admin_tokens_principal ON admin_tokens (principal);
INSERT INTO admin_tokens (token_hash, principal, issued_at, expires_at)
    SELECT token_hash, name, created_at,
           CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 90 * 86400000
    FROM saved_principals ORDER BY position;
DROP TABLE saved_principals;
