-- droidfleet control plane schema, version 1 (SQLite).
--
-- Times are milliseconds since the Unix epoch (UTC) in INTEGER columns. Enumerations are stored as
-- the text their Rust types print with `as_str()`, so the file can be read without the code.
-- No plaintext secret is stored: credentials are SHA-256 hashes, escrow tokens and revealable
-- passcodes are sealed (AES-256-GCM) with a key kept outside the database.

-- One-time or limited-use tokens that let a device enroll.
CREATE TABLE enrollment_tokens (
    hash       BLOB    PRIMARY KEY NOT NULL,  -- SHA-256 of the token
    max_uses   INTEGER NOT NULL CHECK (max_uses >= 0),
    uses       INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
    expires_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL
);

CREATE TABLE devices (
    id                       TEXT    PRIMARY KEY NOT NULL,
    display_name             TEXT    NOT NULL,
    ownership                TEXT    NOT NULL,          -- cosu | cobo | cope | byod | aosp
    credential_hash          BLOB    NOT NULL UNIQUE,   -- SHA-256 of the device credential
    enrolled_at              INTEGER NOT NULL,
    last_seen                INTEGER NOT NULL,
    stores_json              TEXT    NOT NULL DEFAULT '[]',  -- credential stores as last reported
    device_policy_json       TEXT,                      -- NULL: no passcode policy assigned
    work_profile_policy_json TEXT,
    -- The sequence number the device's next command gets; allocated in the transaction that
    -- creates the command, so numbers are unique and increasing per device.
    next_sequence            INTEGER NOT NULL DEFAULT 1
);

-- The escrowed reset token of each credential store, sealed; replaced when the device rotates it.
CREATE TABLE escrow_tokens (
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    scope     TEXT NOT NULL,                            -- device | work_profile
    sealed    BLOB NOT NULL,
    PRIMARY KEY (device_id, scope)
);

CREATE TABLE actions (
    id                     TEXT    PRIMARY KEY NOT NULL,
    device_id              TEXT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind                   TEXT    NOT NULL,            -- reset_passcode | remote_lock
    scope                  TEXT    NOT NULL,
    state                  TEXT    NOT NULL,            -- pending | active | done | failed | ...
    error_code             TEXT,
    reason                 TEXT    NOT NULL DEFAULT '',
    requested_by           TEXT    NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    delivered_at           INTEGER,
    completed_at           INTEGER,
    user_entered_at        INTEGER,
    not_after              INTEGER NOT NULL,
    sequence               INTEGER,                     -- NULL: never became a command
    -- Until when the passcode was to be revealable, kept as history after the passcode itself is
    -- purged; whether a passcode is still stored is answered by action_passcodes alone.
    passcode_visible_until INTEGER
);
-- A device's sequence numbers never repeat (NULLs are exempt: actions that ended at once).
CREATE UNIQUE INDEX actions_device_sequence ON actions (device_id, sequence);
CREATE INDEX actions_device_created ON actions (device_id, created_at);
CREATE INDEX actions_created ON actions (created_at);
-- Open commands by deadline, for the expiry sweep.
CREATE INDEX actions_open_not_after ON actions (not_after) WHERE state IN ('pending', 'active');

-- The new passcode of a reset, sealed, in its own table so that purging deletes a whole row
-- (with secure_delete on, its bytes are overwritten rather than left in a free block).
CREATE TABLE action_passcodes (
    action_id     TEXT    PRIMARY KEY NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
    sealed        BLOB    NOT NULL,
    visible_until INTEGER NOT NULL
);
CREATE INDEX action_passcodes_visible_until ON action_passcodes (visible_until);

CREATE TABLE roles (
    name             TEXT    PRIMARY KEY NOT NULL,
    permissions_json TEXT    NOT NULL,                  -- JSON array of permission names
    built_in         INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE principals (
    name       TEXT    PRIMARY KEY NOT NULL,
    token_hash BLOB    NOT NULL UNIQUE,                 -- SHA-256 of the bearer token
    created_at INTEGER NOT NULL
);

CREATE TABLE principal_roles (
    principal TEXT NOT NULL REFERENCES principals (name) ON DELETE CASCADE,
    role      TEXT NOT NULL REFERENCES roles (name),
    PRIMARY KEY (principal, role)
);

-- Append-only audit trail. `detail` is free text and never carries a secret.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    principal TEXT    NOT NULL,
    operation TEXT    NOT NULL,
    device_id TEXT,
    action_id TEXT,
    result    TEXT    NOT NULL,
    detail    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_device_at ON audit (device_id, at);
CREATE INDEX audit_principal_at ON audit (principal, at);
CREATE INDEX audit_operation_at ON audit (operation, at);
