-- Devices prove possession of a key pair instead of presenting a bearer credential. Each device's
-- Ed25519 public key (32 bytes), bound at enrollment and replaced by a re-enrollment; NULL for a
-- device enrolled before keys, or whose key an admin revoked for re-enrollment: no session opens
-- for it until it enrolls (again) with a key.
--
-- `credential_hash` opens nothing any more. SQLite cannot drop a UNIQUE column, so new rows fill
-- it with the SHA-256 of the device id, which is unique and no secret.
ALTER TABLE devices ADD COLUMN public_key BLOB;
