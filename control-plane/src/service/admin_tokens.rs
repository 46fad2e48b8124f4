//! Admin tokens' lifecycle: how long a token lives ([`AdminTokenPolicy`]), issuing one,
//! rotating a principal's token (the old one ending at once or after a grace period), revoking a
//! principal's tokens, and the bootstrap admin's token, made on first start and again whenever
//! nobody holding Roles.Manage for every group has a valid token left.

use super::{BOOTSTRAP_PRINCIPAL, BOOTSTRAP_TOKEN_FILE, ControlPlane, ServiceError};
use crate::clock::{DAY, Millis, SECOND};
use crate::crypto::sha256;
use crate::model::{Permission, Principal};
use crate::rbac;
use crate::secret::BearerToken;
use crate::store::{AuthenticatedPrincipal, NewAdminToken};
use std::path::PathBuf;

/// An admin token's time-to-live when the request names none, the bootstrap token's included.
pub const DEFAULT_ADMIN_TOKEN_TTL: Millis = 90 * DAY;
/// The longest time-to-live a request may ask for.
pub const MAX_ADMIN_TOKEN_TTL: Millis = 365 * DAY;
/// The longest a rotated-out token may keep working, so a rotation cannot keep two tokens alive
/// for long.
pub const MAX_ROTATION_GRACE: Millis = 7 * DAY;

/// How long admin tokens live; `droidfleet serve --admin-token-ttl` and `--max-admin-token-ttl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminTokenPolicy {
    /// A token's time-to-live when the request names none (the bootstrap token's too).
    pub default_ttl: Millis,
    /// The longest a request may ask for.
    pub max_ttl: Millis,
}

impl Default for AdminTokenPolicy {
    fn default() -> AdminTokenPolicy {
        AdminTokenPolicy {
            default_ttl: DEFAULT_ADMIN_TOKEN_TTL,
            max_ttl: MAX_ADMIN_TOKEN_TTL,
        }
    }
}

/// A rotation's request: the new token's time-to-live and how long the old one keeps working.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Rotation {
    /// `None`: the policy's default.
    pub(crate) ttl: Option<Millis>,
    /// 0: the old token ends at once.
    pub(crate) grace: Millis,
}

impl ControlPlane {
    /// A new token and what the store keeps of it, living `ttl` (the default when `None`).
    pub(super) fn issue_admin_token(
        &self,
        ttl: Option<Millis>,
    ) -> Result<(BearerToken, NewAdminToken), ServiceError> {
        let policy = self.config.admin_tokens;
        let ttl = ttl.unwrap_or(policy.default_ttl);
        if ttl < SECOND || ttl > policy.max_ttl {
            return Err(ServiceError::invalid(
                "token_ttl_seconds",
                format!(
                    "must be 0 (the default, {} s) or 1 to {} seconds",
                    policy.default_ttl / SECOND,
                    policy.max_ttl / SECOND
                ),
            ));
        }
        let token = BearerToken::new(self.keys.new_credential("dfa_")?);
        let issued_at = self.now();
        let stored = NewAdminToken {
            hash: sha256(token.expose().as_bytes()),
            issued_at,
            expires_at: issued_at.saturating_add(ttl),
        };
        Ok((token, stored))
    }

    /// Gives `name` a new token; its tokens still valid end after `rotation.grace`. A principal
    /// may rotate its own token; another's needs Roles.Manage for every group.
    pub(crate) async fn rotate_admin_token(
        &self,
        caller: &AuthenticatedPrincipal,
        name: &str,
        rotation: Rotation,
    ) -> Result<(Principal, BearerToken), ServiceError> {
        check_target(caller, name)?;
        if rotation.grace > MAX_ROTATION_GRACE {
            return Err(ServiceError::invalid(
                "grace_seconds",
                format!("must be at most {} seconds", MAX_ROTATION_GRACE / SECOND),
            ));
        }
        let (token, stored) = self.issue_admin_token(rotation.ttl)?;
        let old_tokens_end = stored.issued_at.saturating_add(rotation.grace);
        let principal = self
            .store
            .rotate_admin_token(name, stored, old_tokens_end)
            .await?;
        tracing::info!(principal = %name, grace_ms = rotation.grace, "admin token rotated");
        Ok((principal, token))
    }

    /// Revokes every token of `name` at once; returns how many were still valid. A principal may
    /// revoke its own tokens; another's needs Roles.Manage for every group.
    pub(crate) async fn revoke_admin_tokens(
        &self,
        caller: &AuthenticatedPrincipal,
        name: &str,
    ) -> Result<u64, ServiceError> {
        check_target(caller, name)?;
        let revoked = self.store.revoke_admin_tokens(name, self.now()).await?;
        tracing::info!(principal = %name, revoked, "admin tokens revoked");
        Ok(revoked)
    }

    /// On first start, and on any start where no principal holding Roles.Manage for every group
    /// has a valid token left (they all expired or were revoked), gives the `admin` principal the
    /// Administrator role for every group (creating it if needed) and a new token, written to a
    /// file only the owner can read; returns that file's path.
    pub(crate) async fn bootstrap_admin(&self) -> Result<Option<PathBuf>, ServiceError> {
        let (token, stored) = self.issue_admin_token(None)?;
        let recovered = self
            .store
            .recover_admin(BOOTSTRAP_PRINCIPAL, rbac::ADMINISTRATOR, stored)
            .await?;
        if !recovered {
            return Ok(None);
        }
        let path = self.config.data_dir.join(BOOTSTRAP_TOKEN_FILE);
        crate::crypto::write_private_file(&path, format!("{}\n", token.expose()).as_bytes())
            .map_err(|e| {
                ServiceError::FailedPrecondition(format!("cannot write {}: {e}", path.display()))
            })?;
        tracing::warn!(
            principal = BOOTSTRAP_PRINCIPAL,
            file = %path.display(),
            "no valid admin token could manage roles: a new bootstrap token was written"
        );
        Ok(Some(path))
    }
}

/// A caller may rotate or revoke its own tokens; another principal's need Roles.Manage (which
/// only an assignment for every group grants).
fn check_target(caller: &AuthenticatedPrincipal, name: &str) -> Result<(), ServiceError> {
    rbac::validate_principal_name(name)
        .map_err(|problem| ServiceError::invalid("name", problem))?;
    if name != caller.name {
        caller
            .grants
            .authorize_anywhere(&[Permission::RolesManage])?;
    }
    Ok(())
}
