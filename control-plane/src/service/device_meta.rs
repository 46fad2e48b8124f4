//! What a device is and where it belongs beyond its enrollment: the Android it reports in each
//! session's Hello (API level, maker profile), which lets a reset the device cannot run end at
//! once, and moving it to another group (MoveDevice).

use super::access::MOVE_DEVICE;
use super::actions::scope_words;
use super::validation::check_id;
use super::{ControlPlane, ServiceError};
use crate::model::{ActionState, Device, ErrorCode, Permission, Scope};
use crate::rbac;
use crate::store::AuthenticatedPrincipal;

/// `DevicePolicyManager.setResetPasswordToken` and `resetPasswordWithToken` arrived in API level
/// 26 (Android 8.0): an older device cannot reset an existing passcode with an escrow token.
pub(crate) const TOKEN_RESET_API_LEVEL: u32 = 26;
/// Above any Android API level for years to come; a larger number is a malformed Hello.
const MAX_API_LEVEL: u32 = 99;
/// The longest maker profile name a Hello may carry.
const MAX_MAKER_PROFILE_LEN: usize = 64;

/// The refusal of a reset on a device whose reported API level has no escrow-token reset, as
/// the Android Management API answers API_LEVEL. A level of 0 (not reported) refuses nothing.
pub(super) fn reset_api_level_refusal(
    device: &Device,
    scope: Scope,
) -> Option<(ActionState, ErrorCode, String)> {
    (device.api_level != 0 && device.api_level < TOKEN_RESET_API_LEVEL).then(|| {
        (
            ActionState::NotSupported,
            ErrorCode::ApiLevel,
            format!(
                "the device runs Android API level {}; resetting its {} with an escrow token \
                 needs API level {TOKEN_RESET_API_LEVEL} (Android 8.0) or later",
                device.api_level,
                scope_words(scope)
            ),
        )
    })
}

impl ControlPlane {
    /// Records the Android a session's Hello reports, checking each field and naming a bad one.
    /// Written only when it changed, so a reconnect costs no write.
    pub(crate) async fn record_build(
        &self,
        device: &Device,
        api_level: u32,
        maker_profile: &str,
    ) -> Result<(), ServiceError> {
        if api_level > MAX_API_LEVEL {
            return Err(ServiceError::invalid(
                "hello.api_level",
                format!(
                    "{api_level} is not an Android API level (0 when unknown, at most {MAX_API_LEVEL})"
                ),
            ));
        }
        if maker_profile.len() > MAX_MAKER_PROFILE_LEN {
            return Err(ServiceError::invalid(
                "hello.maker_profile",
                format!("must be at most {MAX_MAKER_PROFILE_LEN} bytes"),
            ));
        }
        if maker_profile.chars().any(char::is_control) {
            return Err(ServiceError::invalid(
                "hello.maker_profile",
                "must not contain control characters",
            ));
        }
        if device.api_level == api_level && device.maker_profile == maker_profile {
            return Ok(());
        }
        self.store
            .set_device_build(&device.id, api_level, maker_profile)
            .await?;
        Ok(())
    }

    /// Moves a device to `group`. The caller must be able to manage it where it is and where it
    /// goes; a device it may not see answers NOT_FOUND. Moving it where it is changes nothing.
    pub(crate) async fn move_device(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
        group: &str,
    ) -> Result<(Device, String), ServiceError> {
        check_id("device_id", device_id)?;
        rbac::validate_group_name(group)
            .map_err(|problem| ServiceError::invalid("group", problem))?;
        let device = self.device_for(caller, device_id, &MOVE_DEVICE).await?;
        caller
            .grants
            .authorize_group(group, &[Permission::ManagedDevicesUpdate])?;
        if device.group != group {
            self.store.move_device(&device.id, group).await?;
            tracing::info!(device_id = %device.id, from = %device.group, to = %group, by = %caller.name, "device moved to another group");
        }
        Ok((self.device_record(&device.id).await?, device.group))
    }
}
