//! Role-based access control over the permissions `model.rs` names: the built-in roles and the
//! authorisation rules: a principal holds the union of its roles' permissions; a role
//! assignment holds for every device group or for one; for a device, what counts is what the
//! principal holds in the device's group, and a device it may not read is one it cannot see.
//!
//! The permission names follow Intune's "Category.Action" shape, so the seed's rule reads the same
//! here: a passcode reset needs `RemoteTasks.ResetPasscode` plus device visibility
//! (`ManagedDevices.Read`, `ManagedDevices.Update`). Help Desk Operator and School Administrator
//! carry all three; Read Only Operator does not; a custom role is any set of permissions.

use crate::model::{Permission, Role};
use std::collections::BTreeSet;

impl Permission {
    /// Tenant-wide permissions concern no device, so only a role assigned for every group grants
    /// them: a group-scoped admin must not read other groups' audit trail, nor grant itself more.
    pub fn is_tenant_wide(self) -> bool {
        matches!(self, Permission::AuditRead | Permission::RolesManage)
    }
}

pub const ADMINISTRATOR: &str = "Administrator";
pub const HELP_DESK_OPERATOR: &str = "Help Desk Operator";
pub const SCHOOL_ADMINISTRATOR: &str = "School Administrator";
pub const READ_ONLY_OPERATOR: &str = "Read Only Operator";

/// What a passcode reset needs (the seed): the remote task itself plus visibility into and access
/// to the device.
pub const RESET_PASSCODE: [Permission; 3] = [
    Permission::ManagedDevicesRead,
    Permission::ManagedDevicesUpdate,
    Permission::RemoteTasksResetPasscode,
];

/// The roles every installation starts with. They are data (stored like custom roles, flagged
/// `built_in`), so listing roles shows exactly what each one grants.
pub fn built_in_roles() -> Vec<Role> {
    use Permission::*;
    let role = |name: &str, permissions: &[Permission]| Role {
        name: name.to_string(),
        permissions: permissions.to_vec(),
        built_in: true,
    };
    vec![
        role(ADMINISTRATOR, &Permission::ALL),
        role(
            HELP_DESK_OPERATOR,
            &[
                ManagedDevicesRead,
                ManagedDevicesUpdate,
                RemoteTasksResetPasscode,
                RemoteTasksRemoteLock,
                AuditRead,
            ],
        ),
        role(
            SCHOOL_ADMINISTRATOR,
            &[
                ManagedDevicesRead,
                ManagedDevicesUpdate,
                RemoteTasksResetPasscode,
                RemoteTasksRemoteLock,
                DeviceConfigurationsAssign,
                EnrollmentCreate,
            ],
        ),
        role(READ_ONLY_OPERATOR, &[ManagedDevicesRead, AuditRead]),
    ]
}

/// A principal lacks permissions an operation needs. The message names them, so the caller can
/// tell an administrator exactly which permission to grant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_missing(.missing))]
pub struct Denied {
    /// In the order the operation listed them, without duplicates; never empty.
    pub missing: Vec<Permission>,
}

fn describe_missing(missing: &[Permission]) -> String {
    let names: Vec<&str> = missing.iter().map(|p| p.as_str()).collect();
    let noun = if names.len() == 1 {
        "permission"
    } else {
        "permissions"
    };
    format!("missing {noun} {}", names.join(", "))
}

/// Allows the operation when the union of `roles`' permissions contains every one of `needed`.
pub fn authorize(roles: &[Role], needed: &[Permission]) -> Result<(), Denied> {
    let held: BTreeSet<Permission> = roles
        .iter()
        .flat_map(|r| r.permissions.iter().copied())
        .collect();
    missing_from(&held, needed)
}

fn missing_from(held: &BTreeSet<Permission>, needed: &[Permission]) -> Result<(), Denied> {
    let mut missing: Vec<Permission> = Vec::new();
    for p in needed {
        if !held.contains(p) && !missing.contains(p) {
            missing.push(*p);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Denied { missing })
    }
}

/// The device group a device belongs to when nothing else is said.
pub const DEFAULT_GROUP: &str = "default";

/// One role a principal holds, for every device group (`group: None`) or for one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub group: Option<String>,
}

/// Which device groups a principal may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visibility {
    All,
    /// Only these (possibly none).
    Groups(BTreeSet<String>),
}

impl Visibility {
    pub fn includes(&self, group: &str) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Groups(groups) => groups.contains(group),
        }
    }
}

/// What a device check concluded when it did not allow the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceDenial {
    /// The principal may not read devices of that group: answer as if the device did not exist.
    Invisible,
    /// It may see the device but lacks these permissions for its group.
    Denied(Denied),
}

/// The roles of one principal with their group scopes, and the rules over them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    /// What the principal holds for devices of `group`: roles for every group plus roles for
    /// that group. Tenant-wide permissions come only from roles for every group.
    pub fn held_in(&self, group: &str) -> BTreeSet<Permission> {
        self.0
            .iter()
            .filter(|g| g.group.as_deref().is_none_or(|scope| scope == group))
            .flat_map(|g| {
                let scoped = g.group.is_some();
                g.role
                    .permissions
                    .iter()
                    .copied()
                    .filter(move |p| !(scoped && p.is_tenant_wide()))
            })
            .collect()
    }

    /// What the principal holds in some scope (tenant-wide permissions only for every group).
    pub fn held_anywhere(&self) -> BTreeSet<Permission> {
        self.0
            .iter()
            .flat_map(|g| {
                let scoped = g.group.is_some();
                g.role
                    .permissions
                    .iter()
                    .copied()
                    .filter(move |p| !(scoped && p.is_tenant_wide()))
            })
            .collect()
    }

    /// The first gate of every call: each permission it needs must be held somewhere, or the call
    /// is refused before any device is looked at.
    pub fn authorize_anywhere(&self, needed: &[Permission]) -> Result<(), Denied> {
        missing_from(&self.held_anywhere(), needed)
    }

    /// The gate of a call about one device of `group`: invisible unless the principal may read
    /// that group's devices, denied unless it holds every permission needed there.
    pub fn authorize_device(&self, group: &str, needed: &[Permission]) -> Result<(), DeviceDenial> {
        let held = self.held_in(group);
        if !held.contains(&Permission::ManagedDevicesRead) {
            return Err(DeviceDenial::Invisible);
        }
        missing_from(&held, needed).map_err(DeviceDenial::Denied)
    }

    /// The gate of a call that concerns a group but no device yet (an enrollment token for it).
    pub fn authorize_group(&self, group: &str, needed: &[Permission]) -> Result<(), Denied> {
        missing_from(&self.held_in(group), needed)
    }

    /// The groups whose devices the principal may see.
    pub fn visible_groups(&self) -> Visibility {
        let readers = self
            .0
            .iter()
            .filter(|g| g.role.permissions.contains(&Permission::ManagedDevicesRead));
        let mut groups = BTreeSet::new();
        for grant in readers {
            match &grant.group {
                None => return Visibility::All,
                Some(group) => {
                    groups.insert(group.clone());
                }
            }
        }
        Visibility::Groups(groups)
    }
}

/// Checks a device group's name: 1–64 ASCII letters, digits, `.`, `_` and `-`.
pub fn validate_group_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 || len > 64 {
        return Err(format!(
            "a group name must be 1 to 64 characters long, not {len}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "a group name may contain only letters, digits, '.', '_' and '-', not {bad:?}"
        ));
    }
    Ok(())
}

/// Checks a principal's name: 1–64 ASCII letters, digits, `.`, `_`, `-` and `@`.
pub fn validate_principal_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_@".contains(c));
    if ok {
        Ok(())
    } else {
        Err("must be 1 to 64 letters, digits, '.', '_', '-' or '@'".to_string())
    }
}

/// Checks a custom role's name: 1–64 characters of ASCII letters, digits, space, `.`, `_` and
/// `-`, not starting or ending with a space (two names differing only by a trailing space would
/// look identical in every listing).
pub fn validate_role_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 || len > 64 {
        return Err(format!(
            "a role name must be 1 to 64 characters long, not {len}"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-')))
    {
        return Err(format!(
            "a role name may contain only letters, digits, space, '.', '_' and '-', not {bad:?}"
        ));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err("a role name must not start or end with a space".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in(name: &str) -> Role {
        built_in_roles()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap()
    }

    fn custom(permissions: &[Permission]) -> Role {
        Role {
            name: "Custom".into(),
            permissions: permissions.to_vec(),
            built_in: false,
        }
    }

    #[test]
    fn names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(Permission::parse("remotetasks.resetpasscode"), None);
        assert_eq!(Permission::parse(""), None);
    }

    #[test]
    fn the_seeds_rule_for_who_may_reset_a_passcode() {
        for name in [ADMINISTRATOR, HELP_DESK_OPERATOR, SCHOOL_ADMINISTRATOR] {
            assert_eq!(
                authorize(&[built_in(name)], &RESET_PASSCODE),
                Ok(()),
                "{name}"
            );
        }
        let denied = authorize(&[built_in(READ_ONLY_OPERATOR)], &RESET_PASSCODE).unwrap_err();
        assert_eq!(
            denied.missing,
            vec![
                Permission::ManagedDevicesUpdate,
                Permission::RemoteTasksResetPasscode
            ]
        );

        let full = custom(&[
            Permission::RemoteTasksResetPasscode,
            Permission::ManagedDevicesRead,
            Permission::ManagedDevicesUpdate,
        ]);
        assert_eq!(authorize(&[full], &RESET_PASSCODE), Ok(()));

        let task_only = custom(&[Permission::RemoteTasksResetPasscode]);
        let denied = authorize(&[task_only], &RESET_PASSCODE).unwrap_err();
        assert_eq!(
            denied.missing,
            vec![
                Permission::ManagedDevicesRead,
                Permission::ManagedDevicesUpdate
            ]
        );
    }

    #[test]
    fn permissions_of_several_roles_add_up() {
        let read = custom(&[Permission::ManagedDevicesRead]);
        let rest = custom(&[
            Permission::ManagedDevicesUpdate,
            Permission::RemoteTasksResetPasscode,
        ]);
        assert!(authorize(std::slice::from_ref(&read), &RESET_PASSCODE).is_err());
        assert_eq!(authorize(&[read, rest], &RESET_PASSCODE), Ok(()));
        assert!(authorize(&[], &RESET_PASSCODE).is_err());
        assert_eq!(authorize(&[], &[]), Ok(()));
    }

    #[test]
    fn denials_name_the_missing_permission() {
        let denied = authorize(
            &[custom(&[
                Permission::ManagedDevicesRead,
                Permission::ManagedDevicesUpdate,
            ])],
            &RESET_PASSCODE,
        )
        .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "missing permission RemoteTasks.ResetPasscode"
        );
        let denied = authorize(
            &[],
            &[
                Permission::AuditRead,
                Permission::RolesManage,
                Permission::AuditRead,
            ],
        )
        .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "missing permissions Audit.Read, Roles.Manage"
        );
    }

    #[test]
    fn built_in_roles_are_as_documented() {
        let roles = built_in_roles();
        assert_eq!(roles.len(), 4);
        assert!(roles.iter().all(|r| r.built_in));
        assert!(roles.iter().all(|r| validate_role_name(&r.name).is_ok()));
        assert_eq!(
            built_in(ADMINISTRATOR).permissions,
            Permission::ALL.to_vec()
        );
        let read_only = built_in(READ_ONLY_OPERATOR);
        assert!(authorize(std::slice::from_ref(&read_only), &[Permission::AuditRead]).is_ok());
        assert!(authorize(&[read_only], &[Permission::RemoteTasksRemoteLock]).is_err());
        assert!(authorize(&[built_in(HELP_DESK_OPERATOR)], &[Permission::RolesManage]).is_err());
        assert!(
            authorize(
                &[built_in(SCHOOL_ADMINISTRATOR)],
                &[
                    Permission::EnrollmentCreate,
                    Permission::DeviceConfigurationsAssign
                ]
            )
            .is_ok()
        );
    }

    fn grant(name: &str, group: Option<&str>) -> Grant {
        Grant {
            role: built_in(name),
            group: group.map(str::to_string),
        }
    }

    #[test]
    fn a_group_scoped_role_counts_only_for_devices_of_its_group() {
        let grants = Grants(vec![grant(HELP_DESK_OPERATOR, Some("north"))]);
        assert_eq!(grants.authorize_device("north", &RESET_PASSCODE), Ok(()));
        assert_eq!(
            grants.authorize_device("south", &RESET_PASSCODE),
            Err(DeviceDenial::Invisible),
            "a device of another group is invisible, not merely denied"
        );
        assert_eq!(grants.authorize_anywhere(&RESET_PASSCODE), Ok(()));
        assert_eq!(
            grants.visible_groups(),
            Visibility::Groups(["north".to_string()].into())
        );
        assert!(!grants.visible_groups().includes("south"));
    }

    #[test]
    fn roles_for_every_group_and_for_one_group_add_up() {
        let reader_everywhere = Grant {
            role: custom(&[Permission::ManagedDevicesRead]),
            group: None,
        };
        let resetter_north = Grant {
            role: custom(&[
                Permission::ManagedDevicesUpdate,
                Permission::RemoteTasksResetPasscode,
            ]),
            group: Some("north".into()),
        };
        let grants = Grants(vec![reader_everywhere, resetter_north]);
        assert_eq!(grants.visible_groups(), Visibility::All);
        assert_eq!(grants.authorize_device("north", &RESET_PASSCODE), Ok(()));
        let denied = grants
            .authorize_device("south", &RESET_PASSCODE)
            .unwrap_err();
        assert_eq!(
            denied,
            DeviceDenial::Denied(Denied {
                missing: vec![
                    Permission::ManagedDevicesUpdate,
                    Permission::RemoteTasksResetPasscode
                ]
            }),
            "visible everywhere, so denied rather than hidden"
        );
    }

    #[test]
    fn tenant_wide_permissions_come_only_from_roles_for_every_group() {
        let scoped_admin = Grants(vec![grant(ADMINISTRATOR, Some("north"))]);
        let denied = scoped_admin
            .authorize_anywhere(&[Permission::AuditRead, Permission::RolesManage])
            .unwrap_err();
        assert_eq!(
            denied.missing,
            vec![Permission::AuditRead, Permission::RolesManage]
        );
        assert!(
            !scoped_admin
                .held_in("north")
                .contains(&Permission::RolesManage)
        );
        assert_eq!(
            scoped_admin.authorize_group("north", &[Permission::EnrollmentCreate]),
            Ok(())
        );
        assert!(
            scoped_admin
                .authorize_group("south", &[Permission::EnrollmentCreate])
                .is_err()
        );
        let admin = Grants(vec![grant(ADMINISTRATOR, None)]);
        assert_eq!(
            admin.authorize_anywhere(&[Permission::AuditRead, Permission::RolesManage]),
            Ok(())
        );
        assert_eq!(
            Grants::default().visible_groups(),
            Visibility::Groups([].into())
        );
    }

    #[test]
    fn group_and_principal_names_are_validated() {
        for ok in ["default", "north-eu.2", "a", &"g".repeat(64)] {
            assert_eq!(validate_group_name(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", " ", "two words", "a/b", &"g".repeat(65), "é"] {
            assert!(validate_group_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["admin", "rita@example.com", "a.b-c_d"] {
            assert_eq!(validate_principal_name(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "a b", &"p".repeat(65), "tab\t"] {
            assert!(validate_principal_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn role_names_are_validated() {
        for ok in [
            "a",
            "Help Desk Operator",
            "tier-2_support.eu",
            &"x".repeat(64),
        ] {
            assert_eq!(validate_role_name(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "drop;table",
            "naïve",
            "tab\there",
            " leading",
            "trailing ",
            "quote'",
        ] {
            assert!(validate_role_name(bad).is_err(), "{bad:?}");
        }
    }
}
