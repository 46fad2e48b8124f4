//! Roles, principals and their role assignments (every group or one), and the bootstrap admin
//! created on first start.

use super::validation::{MAX_LIST_LEN, check_assignment};
use super::{BOOTSTRAP_PRINCIPAL, BOOTSTRAP_TOKEN_FILE, ControlPlane, ServiceError};
use crate::crypto::sha256;
use crate::model::{Permission, Principal, Role, RoleAssignment};
use crate::rbac;
use crate::secret::BearerToken;
use crate::store::AuthenticatedPrincipal;
use std::path::PathBuf;

impl ControlPlane {
    /// On first start (no principal yet) creates the `admin` principal with the Administrator
    /// role for every group and writes its token to a file only the owner can read; returns that
    /// file's path.
    pub(crate) async fn bootstrap_admin(&self) -> Result<Option<PathBuf>, ServiceError> {
        if !self.store.list_principals().await?.is_empty() {
            return Ok(None);
        }
        let token = BearerToken::new(self.keys.new_credential("dfa_")?);
        self.store
            .create_principal(
                BOOTSTRAP_PRINCIPAL,
                sha256(token.expose().as_bytes()),
                &[RoleAssignment {
                    role: rbac::ADMINISTRATOR.to_string(),
                    group: None,
                }],
                self.now(),
            )
            .await?;
        let path = self.config.data_dir.join(BOOTSTRAP_TOKEN_FILE);
        crate::crypto::write_private_file(&path, format!("{}\n", token.expose()).as_bytes())
            .map_err(|e| {
                ServiceError::FailedPrecondition(format!("cannot write {}: {e}", path.display()))
            })?;
        Ok(Some(path))
    }

    pub(crate) async fn roles(&self) -> Result<Vec<Role>, ServiceError> {
        Ok(self.store.list_roles().await?)
    }

    pub(crate) async fn create_role(
        &self,
        name: &str,
        permissions: &[String],
    ) -> Result<Role, ServiceError> {
        let role = custom_role(name, permissions)?;
        self.store.create_role(&role).await?;
        tracing::info!(role = %role.name, "custom role created");
        Ok(role)
    }

    pub(crate) async fn update_role(
        &self,
        name: &str,
        permissions: &[String],
    ) -> Result<Role, ServiceError> {
        let role = custom_role(name, permissions)?;
        self.store.update_role(&role).await?;
        tracing::info!(role = %role.name, "custom role changed");
        Ok(role)
    }

    pub(crate) async fn delete_role(&self, name: &str) -> Result<(), ServiceError> {
        rbac::validate_role_name(name).map_err(|problem| ServiceError::invalid("name", problem))?;
        self.store.delete_role(name).await?;
        tracing::info!(role = %name, "custom role deleted");
        Ok(())
    }

    /// Creates a principal with `roles` for every group plus `assignments`; returns its token.
    pub(crate) async fn create_principal(
        &self,
        name: &str,
        roles: &[String],
        assignments: &[RoleAssignment],
    ) -> Result<(Principal, BearerToken), ServiceError> {
        rbac::validate_principal_name(name)
            .map_err(|problem| ServiceError::invalid("name", problem))?;
        if roles.len() + assignments.len() > MAX_LIST_LEN {
            return Err(ServiceError::invalid(
                "roles",
                format!("at most {MAX_LIST_LEN} role assignments"),
            ));
        }
        let mut all = Vec::with_capacity(roles.len() + assignments.len());
        for role in roles {
            rbac::validate_role_name(role)
                .map_err(|problem| ServiceError::invalid("roles", problem))?;
            all.push(RoleAssignment {
                role: role.clone(),
                group: None,
            });
        }
        for assignment in assignments {
            check_assignment("assignments.role", "assignments.group", assignment)?;
            all.push(assignment.clone());
        }
        if all.is_empty() {
            return Err(ServiceError::invalid(
                "roles",
                "a principal needs at least one role",
            ));
        }
        let token = BearerToken::new(self.keys.new_credential("dfa_")?);
        let principal = self
            .store
            .create_principal(name, sha256(token.expose().as_bytes()), &all, self.now())
            .await?;
        tracing::info!(principal = %principal.name, "principal created");
        Ok((principal, token))
    }

    pub(crate) async fn principals(&self) -> Result<Vec<Principal>, ServiceError> {
        Ok(self.store.list_principals().await?)
    }

    pub(crate) async fn assign_role(
        &self,
        principal: &str,
        assignment: &RoleAssignment,
    ) -> Result<Principal, ServiceError> {
        rbac::validate_principal_name(principal)
            .map_err(|problem| ServiceError::invalid("principal", problem))?;
        check_assignment("role", "group", assignment)?;
        let after = self.store.assign_role(principal, assignment).await?;
        tracing::info!(principal = %principal, assignment = %assignment, "role assigned");
        Ok(after)
    }

    pub(crate) async fn unassign_role(
        &self,
        principal: &str,
        assignment: &RoleAssignment,
    ) -> Result<Principal, ServiceError> {
        rbac::validate_principal_name(principal)
            .map_err(|problem| ServiceError::invalid("principal", problem))?;
        check_assignment("role", "group", assignment)?;
        let after = self.store.unassign_role(principal, assignment).await?;
        tracing::info!(principal = %principal, assignment = %assignment, "role unassigned");
        Ok(after)
    }

    pub(crate) async fn delete_principal(
        &self,
        caller: &AuthenticatedPrincipal,
        name: &str,
    ) -> Result<(), ServiceError> {
        rbac::validate_principal_name(name)
            .map_err(|problem| ServiceError::invalid("name", problem))?;
        if name == caller.name {
            return Err(ServiceError::FailedPrecondition(
                "a principal cannot delete itself".into(),
            ));
        }
        self.store.delete_principal(name).await?;
        tracing::info!(principal = %name, "principal deleted");
        Ok(())
    }
}

fn custom_role(name: &str, permissions: &[String]) -> Result<Role, ServiceError> {
    rbac::validate_role_name(name).map_err(|problem| ServiceError::invalid("name", problem))?;
    if permissions.is_empty() {
        return Err(ServiceError::invalid(
            "permissions",
            "a role needs at least one permission",
        ));
    }
    if permissions.len() > MAX_LIST_LEN {
        return Err(ServiceError::invalid(
            "permissions",
            format!("at most {MAX_LIST_LEN} entries"),
        ));
    }
    let mut parsed: Vec<Permission> = Vec::new();
    for p in permissions {
        let permission = Permission::parse(p).ok_or_else(|| {
            let shown: String = p.chars().take(64).collect();
            ServiceError::invalid(
                "permissions",
                format!(
                    "unknown permission {shown:?}; known: {}",
                    Permission::ALL.map(|p| p.as_str()).join(", ")
                ),
            )
        })?;
        if !parsed.contains(&permission) {
            parsed.push(permission);
        }
    }
    Ok(Role {
        name: name.to_string(),
        permissions: parsed,
        built_in: false,
    })
}
