//! Devices: enrollment, an admin's explicit re-enrollment, reading and listing devices as a caller
//! may see them, and assigning passcode policies.

use super::access::{ASSIGN_POLICY, RE_ENROLL, READ};
use super::validation::{
    MAX_ENROLLMENT_USES, MAX_ID_LEN, MAX_TOKEN_LEN, MAX_WATCHED_DEVICES, check_credential_text,
    check_enrollment_ttl, check_id, check_policy, check_text,
};
use super::{ControlPlane, ServiceError};
use crate::clock::Millis;
use crate::crypto::sha256;
use crate::model::{Device, Ownership, PasscodePolicy, Permission, Scope};
use crate::rbac;
use crate::secret::BearerToken;
use crate::store::{AuthenticatedPrincipal, NewDevice, NewEnrollmentToken};

/// A request for an enrollment token, already parsed from the wire.
#[derive(Debug, Default)]
pub(crate) struct EnrollmentTokenRequest {
    /// 0 means 1.
    pub(crate) max_uses: u32,
    /// `None` means one hour.
    pub(crate) ttl: Option<Millis>,
    /// `None` means [`rbac::DEFAULT_GROUP`].
    pub(crate) group: Option<String>,
}

impl ControlPlane {
    /// Creates an enrollment token for a group the caller may enroll devices into.
    pub(crate) async fn create_enrollment_token(
        &self,
        caller: &AuthenticatedPrincipal,
        request: EnrollmentTokenRequest,
    ) -> Result<(BearerToken, Millis, u32, String), ServiceError> {
        let max_uses = if request.max_uses == 0 {
            1
        } else {
            request.max_uses
        };
        if max_uses > MAX_ENROLLMENT_USES {
            return Err(ServiceError::invalid(
                "max_uses",
                format!("must be at most {MAX_ENROLLMENT_USES}"),
            ));
        }
        let ttl = check_enrollment_ttl(request.ttl)?;
        let group = match request.group {
            Some(group) => {
                rbac::validate_group_name(&group)
                    .map_err(|problem| ServiceError::invalid("group", problem))?;
                group
            }
            None => rbac::DEFAULT_GROUP.to_string(),
        };
        caller
            .grants
            .authorize_group(&group, &[Permission::EnrollmentCreate])?;
        let token = BearerToken::new(self.keys.new_credential("dfe_")?);
        let expires_at = self.now() + ttl;
        self.store
            .create_enrollment_token(NewEnrollmentToken {
                hash: sha256(token.expose().as_bytes()),
                max_uses,
                expires_at,
                created_by: caller.name.clone(),
                group: group.clone(),
            })
            .await?;
        Ok((token, expires_at, max_uses, group))
    }

    /// Starts the explicit re-enrollment of a known device: revokes its credential now (ending
    /// any open session) and returns a single-use enrollment token bound to it.
    pub(crate) async fn reenroll_device(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
        ttl: Option<Millis>,
    ) -> Result<(BearerToken, Millis), ServiceError> {
        let ttl = check_enrollment_ttl(ttl)?;
        let device = self.device_for(caller, device_id, &RE_ENROLL).await?;
        let token = BearerToken::new(self.keys.new_credential("dfe_")?);
        // A credential nobody is ever given: the device's old one stops matching at once.
        let revoked = BearerToken::new(self.keys.new_credential("dfd_")?);
        let expires_at = self.now() + ttl;
        self.store
            .reenroll_device(
                &device.id,
                sha256(revoked.expose().as_bytes()),
                NewEnrollmentToken {
                    hash: sha256(token.expose().as_bytes()),
                    max_uses: 1,
                    expires_at,
                    created_by: caller.name.clone(),
                    group: device.group.clone(),
                },
            )
            .await?;
        // The commit ended the device's open session.
        tracing::info!(device_id = %device.id, by = %caller.name, "device credential revoked for re-enrollment");
        Ok((token, expires_at))
    }

    /// Enrolls a device: returns it and its session credential. A re-enrollment token gives a
    /// known device its id back.
    pub(crate) async fn enroll(
        &self,
        enrollment_token: &BearerToken,
        ownership: Ownership,
        display_name: &str,
    ) -> Result<(Device, BearerToken), ServiceError> {
        check_credential_text("enrollment_token", enrollment_token)?;
        check_text("display_name", display_name, MAX_ID_LEN)?;
        let credential = BearerToken::new(self.keys.new_credential("dfd_")?);
        let device = NewDevice {
            id: self.keys.new_id("dev_")?,
            display_name: display_name.to_string(),
            ownership,
            credential_hash: sha256(credential.expose().as_bytes()),
            enrolled_at: self.now(),
        };
        let enrolled = self
            .store
            .enroll_device(sha256(enrollment_token.expose().as_bytes()), device)
            .await?;
        let device = enrolled.device;
        tracing::info!(
            device_id = %device.id,
            ownership = %ownership,
            group = %device.group,
            re_enrolled = enrolled.re_enrolled,
            "device enrolled"
        );
        Ok((device, credential))
    }

    pub(crate) async fn device_by_credential(
        &self,
        credential: &BearerToken,
    ) -> Result<Option<Device>, ServiceError> {
        if credential.expose().len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        Ok(self
            .hot
            .device_by_credential(&sha256(credential.expose().as_bytes())))
    }

    /// The device as stored, for its own session (no caller to check), from the hot state.
    pub(crate) async fn device_record(&self, device_id: &str) -> Result<Device, ServiceError> {
        self.hot
            .device(device_id)
            .ok_or_else(|| ServiceError::NotFound {
                what: "device",
                id: device_id.to_string(),
            })
    }

    /// A device the caller may see.
    pub(crate) async fn device(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
    ) -> Result<Device, ServiceError> {
        self.device_for(caller, device_id, &READ).await
    }

    /// The devices of a WatchDevices request, each one the caller may see, in the request's order.
    pub(crate) fn watched_devices(
        &self,
        caller: &AuthenticatedPrincipal,
        device_ids: &[String],
    ) -> Result<Vec<Device>, ServiceError> {
        if device_ids.is_empty() || device_ids.len() > MAX_WATCHED_DEVICES {
            return Err(ServiceError::invalid(
                "device_ids",
                format!("give 1 to {MAX_WATCHED_DEVICES} device ids"),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(device_ids.len());
        let mut devices = Vec::with_capacity(device_ids.len());
        for id in device_ids {
            check_id("device_ids", id)?;
            if !seen.insert(id.as_str()) {
                return Err(ServiceError::invalid(
                    "device_ids",
                    format!("{id:?} is listed twice"),
                ));
            }
            devices.push(self.device_visible(caller, id, &READ)?);
        }
        Ok(devices)
    }

    /// The devices the caller may see, of one group or of all.
    pub(crate) async fn devices(
        &self,
        caller: &AuthenticatedPrincipal,
        group: Option<&str>,
    ) -> Result<Vec<Device>, ServiceError> {
        if let Some(group) = group {
            rbac::validate_group_name(group)
                .map_err(|problem| ServiceError::invalid("group", problem))?;
        }
        let groups = Self::visible_groups(caller, group);
        Ok(self.store.list_devices(groups.as_ref()).await?)
    }

    pub(crate) fn is_online(&self, device_id: &str) -> bool {
        self.hot.is_online(device_id)
    }

    pub(crate) async fn assign_policy(
        &self,
        caller: &AuthenticatedPrincipal,
        device_id: &str,
        scope: Scope,
        policy: Option<PasscodePolicy>,
    ) -> Result<Device, ServiceError> {
        check_id("device_id", device_id)?;
        if let Some(policy) = &policy {
            check_policy(policy)?;
        }
        let device = self.device_for(caller, device_id, &ASSIGN_POLICY).await?;
        if !device.has_store(scope) {
            return Err(ServiceError::invalid(
                "scope",
                format!("a {} device has no work profile", device.ownership),
            ));
        }
        self.store
            .set_policy(device_id, scope, policy.as_ref())
            .await?;
        // The commit sent the policy to the device's session.
        self.device_record(device_id).await
    }
}
