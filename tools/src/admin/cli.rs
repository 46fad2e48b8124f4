//! `droidfleet admin …`: the admin API from the command line, one subcommand per RPC, with
//! human or JSON output.

use super::client::{AdminError, Client, Token, trusted_ca};
use super::format::{
    action_details, action_json, action_line, audit_event_json, audit_event_line, device_details,
    device_json, device_line, principal_json, principal_line, role_json, role_line, state_name,
    time,
};
use droidfleet_proto::v1 as pb;
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The control plane's address.
    #[arg(
        long,
        global = true,
        default_value = "https://127.0.0.1:7300",
        env = "DROIDFLEET_SERVER"
    )]
    server: String,
    /// The control plane's CA certificate (its `<data-dir>/tls/ca.pem`), the only CA the
    /// connection trusts. Default: `tls/ca.pem` beside --token-file when there is one, else in
    /// $DROIDFLEET_DATA_DIR (default droidfleet-data). Not used for an http:// server.
    #[arg(long, global = true, env = "DROIDFLEET_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// File holding your bearer token (the first admin's is written by `droidfleet serve`).
    #[arg(long, global = true, env = "DROIDFLEET_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Your bearer token itself (prefer --token-file: command lines are visible to others).
    #[arg(long, global = true, env = "DROIDFLEET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// Items per page of the list commands, which follow every page to the end (0: the control
    /// plane's default; it serves a larger size as its maximum).
    #[arg(long, global = true, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    page_size: i32,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Human,
    Json,
}

#[derive(clap::Subcommand)]
enum AdminCommand {
    /// List the enrolled devices you may see.
    Devices {
        /// Only devices of this group.
        #[arg(long)]
        group: Option<String>,
    },
    /// Show one device: its stores, policies and escrowed tokens.
    Device { device_id: String },
    /// Create a token devices enroll with.
    CreateEnrollmentToken {
        /// How many devices may enroll with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// The device group the enrolling devices join (default: "default").
        #[arg(long)]
        group: Option<String>,
    },
    /// Re-enroll a known device: revoke its credential now and print a single-use enrollment
    /// token that gives the device its id back.
    ReEnroll {
        device_id: String,
        /// Lifetime of the token in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Move a device to another group: assignments scoped to its old group stop reaching it,
    /// those scoped to the new one start. Its actions, policies and tokens stay.
    MoveDevice {
        device_id: String,
        /// The group to move it to.
        #[arg(long)]
        group: String,
    },
    /// Assign (or remove) the passcode policy of a device's lock screen or work profile.
    AssignPolicy {
        device_id: String,
        /// Which credential store the policy is for.
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// Kind of passcode required.
        #[arg(long = "type", value_enum, default_value_t = TypeArg::Pin)]
        passcode_type: TypeArg,
        /// Minimum length (Android never requires fewer than 4).
        #[arg(long, default_value_t = 6)]
        min_length: u32,
        #[arg(long, value_enum, default_value_t = ComplexityArg::Unspecified)]
        complexity: ComplexityArg,
        /// Wipe the store after this many failed entries (0: never).
        #[arg(long, default_value_t = 0)]
        wipe_after: u32,
        /// Remove the policy instead (then a reset of that store fails).
        #[arg(long)]
        remove: bool,
    },
    /// Reset a device's passcode. Prints the action; `--wait` follows it to its final state.
    ResetPasscode {
        device_id: String,
        /// The store to reset; by default the one the enrollment type supports.
        #[arg(long, value_enum)]
        scope: Option<ScopeArg>,
        /// Choose the new passcode instead of generating one (it must meet the policy).
        #[arg(long)]
        passcode: Option<String>,
        /// Seconds the device has to run it before it expires.
        #[arg(long)]
        ttl: Option<u64>,
        /// Follow the action until it is done, failed, canceled or expired.
        #[arg(long)]
        wait: bool,
    },
    /// Lock a device's lock screen or work profile now. Prints the action; `--wait` follows it.
    RemoteLock {
        device_id: String,
        /// The store to lock; by default the one the enrollment type manages.
        #[arg(long, value_enum)]
        scope: Option<ScopeArg>,
        /// Seconds the device has to run it before it expires.
        #[arg(long)]
        ttl: Option<u64>,
        /// Follow the action until it is done, failed, canceled or expired.
        #[arg(long)]
        wait: bool,
    },
    /// Show an action.
    Action { action_id: String },
    /// List actions, newest first.
    Actions {
        #[arg(long)]
        device: Option<String>,
    },
    /// Follow an action until its final state.
    Watch {
        action_id: String,
        /// For a reset that ends done: keep following until the user has entered the new
        /// passcode.
        #[arg(long)]
        until_entered: bool,
    },
    /// Cancel an action. One never sent is canceled at once; one already sent gets a cancel
    /// request that the device accepts (it had not run the command) or refuses (it had);
    /// `--wait` follows the request to the device's answer.
    Cancel {
        action_id: String,
        /// Follow a cancel request until the device answered it.
        #[arg(long)]
        wait: bool,
    },
    /// Show the passcode a reset set (available for 7 days).
    RevealPasscode { action_id: String },
    /// Read the audit log, newest first.
    Audit {
        #[arg(long)]
        device: Option<String>,
        #[arg(long)]
        principal: Option<String>,
        /// An RPC name such as ResetPasscode.
        #[arg(long)]
        operation: Option<String>,
        /// At most this many events, the newest, over as many pages as that takes.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// List roles and their permissions.
    Roles,
    /// Create a custom role.
    CreateRole {
        name: String,
        /// A permission such as RemoteTasks.ResetPasscode; repeat for more.
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
    },
    /// Replace a custom role's permissions.
    UpdateRole {
        name: String,
        /// A permission such as RemoteTasks.ResetPasscode; repeat for more.
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
    },
    /// Delete a custom role nobody holds.
    DeleteRole { name: String },
    /// Create a principal (an admin account) and print its token once.
    CreatePrincipal {
        name: String,
        /// A role name; repeat for more.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Hold the roles for this device group only (default: every group).
        #[arg(long)]
        group: Option<String>,
        /// How long the token works (default: the server's, 90 days unless configured).
        #[arg(long, value_name = "DURATION")]
        token_ttl: Option<humantime::Duration>,
    },
    /// List principals, their role assignments and when their token expires.
    Principals,
    /// Issue a principal a new token (printed once) and end its old ones, at once or after
    /// --grace. Your own name rotates your own token.
    RotateToken {
        name: String,
        /// How long the new token works (default: the server's).
        #[arg(long, value_name = "DURATION")]
        token_ttl: Option<humantime::Duration>,
        /// How long the old tokens keep working (default: they end at once; at most 7 days).
        #[arg(long, value_name = "DURATION")]
        grace: Option<humantime::Duration>,
    },
    /// Revoke every token of a principal at once; its calls and open watches end.
    RevokeTokens { name: String },
    /// Give a principal a role, for every device group or for one.
    AssignRole {
        principal: String,
        role: String,
        /// Only for this device group (default: every group).
        #[arg(long)]
        group: Option<String>,
    },
    /// Take a role assignment away from a principal.
    UnassignRole {
        principal: String,
        role: String,
        /// The group the assignment is for (default: the one for every group).
        #[arg(long)]
        group: Option<String>,
    },
    /// Delete a principal; its token stops working at once.
    DeletePrincipal { name: String },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScopeArg {
    Device,
    WorkProfile,
}

impl ScopeArg {
    fn to_pb(self) -> pb::CredentialScope {
        match self {
            ScopeArg::Device => pb::CredentialScope::Device,
            ScopeArg::WorkProfile => pb::CredentialScope::WorkProfile,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TypeArg {
    Pin,
    NumericComplex,
    Alphanumeric,
    Complex,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ComplexityArg {
    Unspecified,
    Low,
    Medium,
    High,
}

pub async fn run(args: AdminArgs) -> Result<(), AdminError> {
    let token = Token::resolve(args.token.as_deref(), args.token_file.as_deref())?;
    let ca = trusted_ca(
        &args.server,
        args.ca_file.as_deref(),
        args.token_file.as_deref(),
    )?;
    let client = Client::connect(&args.server, ca, &token)
        .await?
        .with_page_size(args.page_size);
    let output = args.output;
    let value = match args.command {
        AdminCommand::Devices { group } => {
            let devices = client.list_devices(group.unwrap_or_default()).await?;
            if output == Output::Human {
                for device in &devices {
                    println!("{}", device_line(device));
                }
                if devices.is_empty() {
                    println!("no devices enrolled yet");
                }
                return Ok(());
            }
            json!(devices.iter().map(device_json).collect::<Vec<_>>())
        }
        AdminCommand::Device { device_id } => {
            let device = client.device(&device_id).await?;
            if output == Output::Human {
                println!("{}", device_details(&device));
                return Ok(());
            }
            device_json(&device)
        }
        AdminCommand::CreateEnrollmentToken { uses, ttl, group } => {
            let response = client
                .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                    max_uses: uses,
                    ttl_seconds: ttl,
                    group: group.unwrap_or_default(),
                })
                .await?;
            if output == Output::Human {
                println!("{}", response.enrollment_token);
                eprintln!(
                    "enrollment token for {} device(s) of group {:?}, valid until {}; it is shown \
                     only now",
                    response.max_uses,
                    response.group,
                    time(response.expires_at_ms)
                );
                return Ok(());
            }
            json!({"enrollment_token": response.enrollment_token, "max_uses": response.max_uses, "group": response.group, "expires_at": time(response.expires_at_ms)})
        }
        AdminCommand::ReEnroll { device_id, ttl } => {
            let response = client
                .re_enroll_device(pb::ReEnrollDeviceRequest {
                    device_id,
                    ttl_seconds: ttl,
                })
                .await?;
            if output == Output::Human {
                println!("{}", response.enrollment_token);
                eprintln!(
                    "device {}: its credential is revoked; enroll it with this token (single use, \
                     valid until {}); it is shown only now",
                    response.device_id,
                    time(response.expires_at_ms)
                );
                return Ok(());
            }
            json!({"device_id": response.device_id, "enrollment_token": response.enrollment_token, "expires_at": time(response.expires_at_ms)})
        }
        AdminCommand::MoveDevice { device_id, group } => {
            let device = client
                .move_device(pb::MoveDeviceRequest { device_id, group })
                .await?;
            if output == Output::Human {
                println!("{}", device_line(&device));
                return Ok(());
            }
            device_json(&device)
        }
        AdminCommand::AssignPolicy {
            device_id,
            scope,
            passcode_type,
            min_length,
            complexity,
            wipe_after,
            remove,
        } => {
            let policy = (!remove).then(|| pb::PasscodePolicy {
                r#type: match passcode_type {
                    TypeArg::Pin => pb::PasscodeType::Pin,
                    TypeArg::NumericComplex => pb::PasscodeType::NumericComplex,
                    TypeArg::Alphanumeric => pb::PasscodeType::Alphanumeric,
                    TypeArg::Complex => pb::PasscodeType::Complex,
                } as i32,
                min_length,
                complexity: match complexity {
                    ComplexityArg::Unspecified => pb::PasscodeComplexity::Unspecified,
                    ComplexityArg::Low => pb::PasscodeComplexity::Low,
                    ComplexityArg::Medium => pb::PasscodeComplexity::Medium,
                    ComplexityArg::High => pb::PasscodeComplexity::High,
                } as i32,
                max_failed_attempts_before_wipe: wipe_after,
                ..Default::default()
            });
            let device = client
                .assign_passcode_policy(pb::AssignPasscodePolicyRequest {
                    device_id,
                    scope: scope.to_pb() as i32,
                    policy,
                })
                .await?;
            if output == Output::Human {
                println!("{}", device_details(&device));
                return Ok(());
            }
            device_json(&device)
        }
        AdminCommand::ResetPasscode {
            device_id,
            scope,
            passcode,
            ttl,
            wait,
        } => {
            let action = client
                .reset_passcode(pb::ResetPasscodeRequest {
                    device_id,
                    scope: scope.map(|s| s.to_pb() as i32).unwrap_or(0),
                    new_passcode: passcode.unwrap_or_default(),
                    ttl_seconds: ttl.unwrap_or(0),
                })
                .await?;
            if wait {
                return follow(&client, Some(&action), &action.action_id, false, output).await;
            }
            if output == Output::Human {
                println!("{}", action_details(&action));
                return Ok(());
            }
            action_json(&action)
        }
        AdminCommand::RemoteLock {
            device_id,
            scope,
            ttl,
            wait,
        } => {
            let action = client
                .remote_lock(pb::RemoteLockRequest {
                    device_id,
                    scope: scope.map(|s| s.to_pb() as i32).unwrap_or(0),
                    ttl_seconds: ttl.unwrap_or(0),
                })
                .await?;
            if wait {
                return follow(&client, Some(&action), &action.action_id, false, output).await;
            }
            if output == Output::Human {
                println!("{}", action_details(&action));
                return Ok(());
            }
            action_json(&action)
        }
        AdminCommand::Action { action_id } => {
            let action = client.action(&action_id).await?;
            if output == Output::Human {
                println!("{}", action_details(&action));
                return Ok(());
            }
            action_json(&action)
        }
        AdminCommand::Actions { device } => {
            let actions = client.list_actions(device.unwrap_or_default()).await?;
            if output == Output::Human {
                for action in &actions {
                    println!("{}", action_line(action));
                }
                if actions.is_empty() {
                    println!("no actions");
                }
                return Ok(());
            }
            json!(actions.iter().map(action_json).collect::<Vec<_>>())
        }
        AdminCommand::Watch {
            action_id,
            until_entered,
        } => {
            return follow(&client, None, &action_id, until_entered, output).await;
        }
        AdminCommand::Cancel { action_id, wait } => {
            let mut action = client.cancel_action(&action_id).await?;
            if wait && action.state != pb::ActionState::Canceled as i32 {
                action = client.watch_action(&action_id, false, |_| {}).await?;
            }
            let outcome = cancel_outcome(&action);
            if output == Output::Human {
                println!("{}", outcome.sentence(&action));
                println!("{}", action_details(&action));
                return Ok(());
            }
            let mut value = action_json(&action);
            value["cancel"] = json!(outcome.name());
            value
        }
        AdminCommand::RevealPasscode { action_id } => {
            let revealed = client.reveal_passcode(&action_id).await?;
            if output == Output::Human {
                println!("{}", revealed.passcode);
                eprintln!("visible until {}", time(revealed.visible_until_ms));
                return Ok(());
            }
            json!({"action_id": revealed.action_id, "passcode": revealed.passcode, "visible_until": time(revealed.visible_until_ms)})
        }
        AdminCommand::Audit {
            device,
            principal,
            operation,
            limit,
        } => {
            let filter = pb::ListAuditEventsRequest {
                device_id: device.unwrap_or_default(),
                principal: principal.unwrap_or_default(),
                operation: operation.unwrap_or_default(),
                ..Default::default()
            };
            let events = client.list_audit_events(filter, limit as usize).await?;
            if output == Output::Human {
                for event in &events {
                    println!("{}", audit_event_line(event));
                }
                return Ok(());
            }
            json!(events.iter().map(audit_event_json).collect::<Vec<_>>())
        }
        AdminCommand::Roles => {
            let roles = client.list_roles().await?;
            if output == Output::Human {
                for role in &roles {
                    println!("{}", role_line(role));
                }
                return Ok(());
            }
            json!(roles.iter().map(role_json).collect::<Vec<_>>())
        }
        AdminCommand::CreateRole { name, permissions } => {
            let role = client
                .create_role(pb::Role {
                    name,
                    permissions,
                    built_in: false,
                })
                .await?;
            json!({"name": role.name, "permissions": role.permissions})
        }
        AdminCommand::UpdateRole { name, permissions } => {
            let role = client
                .update_role(pb::Role {
                    name,
                    permissions,
                    built_in: false,
                })
                .await?;
            json!({"name": role.name, "permissions": role.permissions})
        }
        AdminCommand::DeleteRole { name } => {
            client.delete_role(name.clone()).await?;
            if output == Output::Human {
                println!("role {name:?} deleted");
                return Ok(());
            }
            json!({"deleted_role": name})
        }
        AdminCommand::CreatePrincipal {
            name,
            roles,
            group,
            token_ttl,
        } => {
            let token_ttl_seconds = token_ttl.map_or(0, seconds);
            let request = match group {
                None => pb::CreatePrincipalRequest {
                    name,
                    roles,
                    token_ttl_seconds,
                    ..Default::default()
                },
                Some(group) => pb::CreatePrincipalRequest {
                    name,
                    assignments: roles
                        .into_iter()
                        .map(|role| pb::RoleAssignment {
                            role,
                            group: group.clone(),
                        })
                        .collect(),
                    token_ttl_seconds,
                    ..Default::default()
                },
            };
            let created = client.create_principal(request).await?;
            if output == Output::Human {
                println!("{}", created.bearer_token);
                eprintln!(
                    "token of principal {:?}, expires {}; it is shown only now",
                    created.name,
                    time(created.token_expires_at_ms)
                );
                return Ok(());
            }
            json!({
                "name": created.name,
                "bearer_token": created.bearer_token,
                "token_expires_at": time(created.token_expires_at_ms),
            })
        }
        AdminCommand::RotateToken {
            name,
            token_ttl,
            grace,
        } => {
            let rotated = client
                .rotate_principal_token(pb::RotatePrincipalTokenRequest {
                    name: name.clone(),
                    token_ttl_seconds: token_ttl.map_or(0, seconds),
                    grace_seconds: grace.map_or(0, seconds),
                })
                .await?;
            if output == Output::Human {
                println!("{}", rotated.bearer_token);
                eprintln!(
                    "new token of principal {name:?}, expires {}; it is shown only now; \
                     the old token(s) stop working {}",
                    time(rotated.token_expires_at_ms),
                    time(rotated.previous_tokens_end_at_ms)
                );
                return Ok(());
            }
            json!({
                "name": name,
                "bearer_token": rotated.bearer_token,
                "token_expires_at": time(rotated.token_expires_at_ms),
                "previous_tokens_end_at": time(rotated.previous_tokens_end_at_ms),
            })
        }
        AdminCommand::RevokeTokens { name } => {
            let revoked = client.revoke_principal_tokens(name.clone()).await?;
            if output == Output::Human {
                println!("{revoked} token(s) of principal {name:?} revoked");
                return Ok(());
            }
            json!({"name": name, "revoked": revoked})
        }
        AdminCommand::Principals => {
            let principals = client.list_principals().await?;
            if output == Output::Human {
                for p in &principals {
                    println!("{}", principal_line(p));
                }
                return Ok(());
            }
            json!(principals.iter().map(principal_json).collect::<Vec<_>>())
        }
        AdminCommand::AssignRole {
            principal,
            role,
            group,
        } => {
            let principal = client
                .assign_role(pb::RoleAssignmentRequest {
                    principal,
                    role,
                    group: group.unwrap_or_default(),
                })
                .await?;
            if output == Output::Human {
                println!("{}", principal_line(&principal));
                return Ok(());
            }
            principal_json(&principal)
        }
        AdminCommand::UnassignRole {
            principal,
            role,
            group,
        } => {
            let principal = client
                .unassign_role(pb::RoleAssignmentRequest {
                    principal,
                    role,
                    group: group.unwrap_or_default(),
                })
                .await?;
            if output == Output::Human {
                println!("{}", principal_line(&principal));
                return Ok(());
            }
            principal_json(&principal)
        }
        AdminCommand::DeletePrincipal { name } => {
            client.delete_principal(name.clone()).await?;
            if output == Output::Human {
                println!("principal {name:?} deleted");
                return Ok(());
            }
            json!({"deleted_principal": name})
        }
    };
    print_json(&value)
}

fn print_json(value: &serde_json::Value) -> Result<(), AdminError> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(AdminError::Json)?
    );
    Ok(())
}

/// Prints `created` (the action as the request returned it) and then each state change until
/// the final one (and, with `until_entered`, the user's entry of the new passcode).
async fn follow(
    client: &Client,
    created: Option<&pb::Action>,
    action_id: &str,
    until_entered: bool,
    output: Output,
) -> Result<(), AdminError> {
    let mut printed = None;
    let mut print = |action: &pb::Action| {
        let shown = (
            action.state,
            action.user_entered_at_ms,
            action.cancel_requested_at_ms,
        );
        if output == Output::Human && printed != Some(shown) {
            println!("{}", action_line(action));
            if action.user_entered_at_ms != 0 {
                println!(
                    "user entered the new passcode at {}",
                    time(action.user_entered_at_ms)
                );
            }
            printed = Some(shown);
        }
    };
    if let Some(created) = created {
        print(created);
    }
    let last = client.watch_action(action_id, until_entered, print).await?;
    if output == Output::Json {
        return print_json(&action_json(&last));
    }
    if !last.reason.is_empty() {
        println!("reason: {}", last.reason);
    }
    Ok(())
}

/// How an admin's cancel went, as `droidfleet admin cancel` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CancelOutcome {
    /// Never sent: canceled by the control plane alone.
    CanceledAtOnce,
    /// Sent: the device has not answered the request yet.
    Requested,
    /// The device had not run the command and never will.
    AcceptedByDevice,
    /// The device had answered the command already; the action ended as it reported.
    RefusedByDevice,
}

fn cancel_outcome(action: &pb::Action) -> CancelOutcome {
    let canceled = action.state == pb::ActionState::Canceled as i32;
    let open = matches!(
        pb::ActionState::try_from(action.state),
        Ok(pb::ActionState::Pending | pb::ActionState::Active)
    );
    match (action.cancel_requested_at_ms != 0, canceled) {
        (false, _) => CancelOutcome::CanceledAtOnce,
        (true, true) => CancelOutcome::AcceptedByDevice,
        (true, false) if open && action.cancel_refusal.is_empty() => CancelOutcome::Requested,
        (true, false) => CancelOutcome::RefusedByDevice,
    }
}

impl CancelOutcome {
    fn name(self) -> &'static str {
        match self {
            CancelOutcome::CanceledAtOnce => "canceled_at_once",
            CancelOutcome::Requested => "requested",
            CancelOutcome::AcceptedByDevice => "accepted_by_device",
            CancelOutcome::RefusedByDevice => "refused_by_device",
        }
    }

    fn sentence(self, action: &pb::Action) -> String {
        match self {
            CancelOutcome::CanceledAtOnce => {
                "canceled at once: the command was never sent to the device".to_string()
            }
            CancelOutcome::Requested => "cancel requested: the command was already sent, so the \
                 device decides; its passcode stays revealable until it answers (--wait follows)"
                .to_string(),
            CancelOutcome::AcceptedByDevice => {
                "canceled by the device: it had not run the command and never will".to_string()
            }
            CancelOutcome::RefusedByDevice => {
                let why = if action.cancel_refusal.is_empty() {
                    "it reported the command's result first"
                } else {
                    &action.cancel_refusal
                };
                format!(
                    "the device refused the cancel ({why}); the action ended {}",
                    state_name(action.state)
                )
            }
        }
    }
}

/// A duration as the API's whole seconds, rounded up so a sub-second value is not 0 (which means
/// "the default").
fn seconds(duration: humantime::Duration) -> u64 {
    std::time::Duration::from(duration)
        .as_millis()
        .div_ceil(1000) as u64
}
