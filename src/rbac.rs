//! Role-based access control: the permissions the control plane checks, the built-in roles, and
//! the one authorisation rule (a principal holds the union of its roles' permissions).
//!
//! The permission names follow Intune's "Category.Action" shape, so the seed's rule reads the same
//! here: a passcode reset needs `RemoteTasks.ResetPasscode` plus device visibility
//! (`ManagedDevices.Read`, `ManagedDevices.Update`). Help Desk Operator and School Administrator
//! carry all three; Read Only Operator does not; a custom role is any set of permissions.

use crate::model::Role;
use std::collections::BTreeSet;
use std::fmt;

/// One thing a principal may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    ManagedDevicesRead,
    ManagedDevicesUpdate,
    RemoteTasksResetPasscode,
    RemoteTasksRemoteLock,
    DeviceConfigurationsAssign,
    EnrollmentCreate,
    AuditRead,
    RolesManage,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::ManagedDevicesRead,
        Permission::ManagedDevicesUpdate,
        Permission::RemoteTasksResetPasscode,
        Permission::RemoteTasksRemoteLock,
        Permission::DeviceConfigurationsAssign,
        Permission::EnrollmentCreate,
        Permission::AuditRead,
        Permission::RolesManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ManagedDevicesRead => "ManagedDevices.Read",
            Permission::ManagedDevicesUpdate => "ManagedDevices.Update",
            Permission::RemoteTasksResetPasscode => "RemoteTasks.ResetPasscode",
            Permission::RemoteTasksRemoteLock => "RemoteTasks.RemoteLock",
            Permission::DeviceConfigurationsAssign => "DeviceConfigurations.Assign",
            Permission::EnrollmentCreate => "Enrollment.Create",
            Permission::AuditRead => "Audit.Read",
            Permission::RolesManage => "Roles.Manage",
        }
    }

    /// The permission named `text` (exact spelling, as `as_str` prints it).
    pub fn parse(text: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
