//! Roles, principals and their role assignments (every group or one).

use super::paging::{List, Listing, PageRequest, listing};
use super::validation::{MAX_LIST_LEN, check_assignment};
use super::{ControlPlane, ServiceError};
use crate::clock::Millis;
use crate::model::{Permission, Principal, Role, RoleAssignment};
use crate::rbac;
use crate::secret::BearerToken;
use crate::store::AuthenticatedPrincipal;

impl ControlPlane {
    pub(crate) async fn roles(&self, page: &PageRequest) -> Result<Listing<Role>, ServiceError> {
        let query = page.query(List::Roles, &[])?;
        let roles = self.store.list_roles(&query).await?;
        Ok(listing(List::Roles, &[], roles))
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

    /// Creates a principal with `roles` for every group plus `assignments`; returns its token,
    /// which lives `token_ttl` (the policy's default when `None`).
    pub(crate) async fn create_principal(
        &self,
        name: &str,
        roles: &[String],
        assignments: &[RoleAssignment],
        token_ttl: Option<Millis>,
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
        let (token, stored) = self.issue_admin_token(token_ttl)?;
        let principal = self.store.create_principal(name, stored, &all).await?;
        tracing::info!(principal = %principal.name, "principal created");
        Ok((principal, token))
    }

    pub(crate) async fn principals(
        &self,
        page: &PageRequest,
    ) -> Result<Listing<Principal>, ServiceError> {
        let query = page.query(List::Principals, &[])?;
        let principals = self.store.list_principals(&query).await?;
        Ok(listing(List::Principals, &[], principals))
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
