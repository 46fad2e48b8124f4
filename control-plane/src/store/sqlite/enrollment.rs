//! Enrolling a device, inside its write: an enrollment token's use counted and the device
//! created (or, with a re-enrollment token, the known device given a new key) in one
//! atomic step, returning the state its sessions will need.

use super::queries::open_commands_of;
use super::rows::{db_time, device_not_found, fetch_device, is_unique_violation};
use super::writer::Written;
use crate::model::Device;
use crate::store::{Change, DeviceState, Enrolled, NewDevice, StoreError};
use sqlx::{Row, SqliteConnection};

/// Enrollment, inside its write (atomic: the token's use is counted before the device can turn
/// out to collide).
pub(super) async fn enroll(
    connection: &mut SqliteConnection,
    token_hash: [u8; 32],
    device: NewDevice,
) -> Result<Written<Enrolled>, StoreError> {
    // The writer holds the write lock, so the token read here is still as read when its use is
    // counted below.
    let token = sqlx::query(
        "SELECT device_group, device_id FROM enrollment_tokens
         WHERE hash = ? AND uses < max_uses AND ? < expires_at",
    )
    .bind(&token_hash[..])
    .bind(db_time(device.enrolled_at))
    .fetch_optional(&mut *connection)
    .await?;
    let Some(token) = token else {
        return Err(StoreError::EnrollmentTokenInvalid);
    };
    let group: String = token.try_get("device_group")?;
    let bound: Option<String> = token.try_get("device_id")?;
    if let Some(known) = &bound {
        // Re-enrollment of a known device: same id, group, policies and actions; a new key; the
        // old install's escrowed tokens and status are gone with it.
        let existing = fetch_device(connection, known)
            .await?
            .ok_or_else(|| device_not_found(known))?;
        if existing.ownership != device.ownership {
            return Err(StoreError::EnrollmentOwnership {
                expected: existing.ownership,
            });
        }
    }
    sqlx::query("UPDATE enrollment_tokens SET uses = uses + 1 WHERE hash = ?")
        .bind(&token_hash[..])
        .execute(&mut *connection)
        .await?;
    let re_enrolled = bound.is_some();
    let state = match bound {
        Some(known) => {
            sqlx::query(
                "UPDATE devices SET public_key = ?, stores_json = '[]', last_seen = ?
                 WHERE id = ?",
            )
            .bind(&device.public_key[..])
            .bind(db_time(device.enrolled_at))
            .bind(&known)
            .execute(&mut *connection)
            .await?;
            sqlx::query("DELETE FROM escrow_tokens WHERE device_id = ?")
                .bind(&known)
                .execute(&mut *connection)
                .await?;
            let enrolled = fetch_device(connection, &known)
                .await?
                .ok_or_else(|| StoreError::Corrupt("an enrolled device vanished".into()))?;
            DeviceState {
                device: enrolled,
                public_key: Some(device.public_key),
                escrow_tokens: Vec::new(),
                open_commands: open_commands_of(connection, &known).await?,
            }
        }
        None => {
            let inserted = sqlx::query(
                "INSERT INTO devices (id, display_name, ownership, credential_hash, public_key,
                                      enrolled_at, last_seen, stores_json, next_sequence,
                                      device_group)
                 VALUES (?, ?, ?, ?, ?, ?, ?, '[]', 1, ?)",
            )
            .bind(&device.id)
            .bind(&device.display_name)
            .bind(device.ownership.as_str())
            // The column opens nothing any more (0011_device_keys.sql) but is NOT NULL UNIQUE.
            .bind(&crate::crypto::sha256(device.id.as_bytes())[..])
            .bind(&device.public_key[..])
            .bind(db_time(device.enrolled_at))
            .bind(db_time(device.enrolled_at))
            .bind(&group)
            .execute(&mut *connection)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::AlreadyExists {
                        kind: "device",
                        name: device.id,
                    });
                }
                Err(e) => return Err(e.into()),
            }
            // What the row holds, without reading it back.
            DeviceState {
                device: Device {
                    id: device.id,
                    display_name: device.display_name,
                    ownership: device.ownership,
                    enrolled_at: device.enrolled_at,
                    last_seen: device.enrolled_at,
                    stores: Vec::new(),
                    device_policy: None,
                    work_profile_policy: None,
                    policy_version: 0,
                    escrowed_token_scopes: Vec::new(),
                    group,
                    api_level: 0,
                    maker_profile: String::new(),
                },
                public_key: Some(device.public_key),
                escrow_tokens: Vec::new(),
                open_commands: Vec::new(),
            }
        }
    };
    let enrolled = Enrolled {
        device: state.device.clone(),
        re_enrolled,
    };
    Ok(Written::new(
        enrolled,
        vec![Change::Enrolled(Box::new(state))],
    ))
}
