//! `droidfleet admin …`: a gRPC client of the admin API with human or JSON output.

use anyhow::{Context, bail};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_client::AdminServiceClient;
use serde_json::{Value, json};
use std::path::PathBuf;
use tonic::transport::Channel;

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The control plane's address.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:7300",
        env = "DROIDFLEET_SERVER"
    )]
    server: String,
    /// File holding your bearer token (the first admin's is written by `droidfleet serve`).
    #[arg(long, global = true, env = "DROIDFLEET_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Your bearer token itself (prefer --token-file: command lines are visible to others).
    #[arg(long, global = true, env = "DROIDFLEET_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
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
    /// Cancel a pending action.
    Cancel { action_id: String },
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
    },
    /// List principals and their role assignments.
    Principals,
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
pub enum ScopeArg {
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
pub enum TypeArg {
    Pin,
    NumericComplex,
    Alphanumeric,
    Complex,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ComplexityArg {
    Unspecified,
    Low,
    Medium,
    High,
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read token file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!(
            "no credentials: pass --token-file (droidfleet serve wrote the first admin's token \
             to <data-dir>/bootstrap-admin.token) or set DROIDFLEET_TOKEN"
        ),
    };
    let mut client = Client::connect(&args.server, &token).await?;
    let output = args.output;
    let assign = matches!(args.command, AdminCommand::AssignRole { .. });
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
                print_device(&device);
                return Ok(());
            }
            device_json(&device)
        }
        AdminCommand::CreateEnrollmentToken { uses, ttl, group } => {
            let response = client
                .admin
                .create_enrollment_token(client.request(pb::CreateEnrollmentTokenRequest {
                    max_uses: uses,
                    ttl_seconds: ttl,
                    group: group.unwrap_or_default(),
                }))
                .await?
                .into_inner();
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
                .admin
                .re_enroll_device(client.request(pb::ReEnrollDeviceRequest {
                    device_id,
                    ttl_seconds: ttl,
                }))
                .await?
                .into_inner();
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
                .admin
                .assign_passcode_policy(client.request(pb::AssignPasscodePolicyRequest {
                    device_id,
                    scope: scope.to_pb() as i32,
                    policy,
                }))
                .await?
                .into_inner();
            if output == Output::Human {
                print_device(&device);
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
                .admin
                .reset_passcode(client.request(pb::ResetPasscodeRequest {
                    device_id,
                    scope: scope.map(|s| s.to_pb() as i32).unwrap_or(0),
                    new_passcode: passcode.unwrap_or_default(),
                    ttl_seconds: ttl.unwrap_or(0),
                }))
                .await?
                .into_inner();
            if wait {
                return client
                    .follow(Some(&action), &action.action_id, false, output)
                    .await;
            }
            if output == Output::Human {
                print_action(&action);
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
                .admin
                .remote_lock(client.request(pb::RemoteLockRequest {
                    device_id,
                    scope: scope.map(|s| s.to_pb() as i32).unwrap_or(0),
                    ttl_seconds: ttl.unwrap_or(0),
                }))
                .await?
                .into_inner();
            if wait {
                return client
                    .follow(Some(&action), &action.action_id, false, output)
                    .await;
            }
            if output == Output::Human {
                print_action(&action);
                return Ok(());
            }
            action_json(&action)
        }
        AdminCommand::Action { action_id } => {
            let action = client.action(&action_id).await?;
            if output == Output::Human {
                print_action(&action);
                return Ok(());
            }
            action_json(&action)
        }
        AdminCommand::Actions { device } => {
            let actions = client
                .admin
                .list_actions(client.request(pb::ListActionsRequest {
                    device_id: device.unwrap_or_default(),
                }))
                .await?
                .into_inner()
                .actions;
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
            return client.follow(None, &action_id, until_entered, output).await;
        }
        AdminCommand::Cancel { action_id } => {
            let action = client
                .admin
                .cancel_action(client.request(pb::GetActionRequest {
                    action_id,
                    ..Default::default()
                }))
                .await?
                .into_inner();
            if output == Output::Human {
                print_action(&action);
                return Ok(());
            }
            action_json(&action)
        }
        AdminCommand::RevealPasscode { action_id } => {
            let revealed = client.reveal(&action_id).await?;
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
            let events = client
                .admin
                .list_audit_events(client.request(pb::ListAuditEventsRequest {
                    device_id: device.unwrap_or_default(),
                    principal: principal.unwrap_or_default(),
                    operation: operation.unwrap_or_default(),
                    limit,
                    ..Default::default()
                }))
                .await?
                .into_inner()
                .events;
            if output == Output::Human {
                for e in &events {
                    println!(
                        "{}  {:<12} {:<22} {:<18} {:<24} {}",
                        time(e.at_ms),
                        e.principal,
                        e.operation,
                        e.result,
                        e.device_id,
                        e.detail
                    );
                }
                return Ok(());
            }
            json!(events.iter().map(|e| json!({
                "id": e.id, "at": time(e.at_ms), "principal": e.principal, "operation": e.operation,
                "device_id": e.device_id, "action_id": e.action_id, "result": e.result, "detail": e.detail,
            })).collect::<Vec<_>>())
        }
        AdminCommand::Roles => {
            let roles = client
                .admin
                .list_roles(client.request(pb::ListRolesRequest {}))
                .await?
                .into_inner()
                .roles;
            if output == Output::Human {
                for role in &roles {
                    let kind = if role.built_in { "built-in" } else { "custom" };
                    println!("{} ({kind}): {}", role.name, role.permissions.join(", "));
                }
                return Ok(());
            }
            json!(roles.iter().map(|r| json!({"name": r.name, "permissions": r.permissions, "built_in": r.built_in})).collect::<Vec<_>>())
        }
        AdminCommand::CreateRole { name, permissions } => {
            let role = client
                .admin
                .create_role(client.request(pb::Role {
                    name,
                    permissions,
                    built_in: false,
                }))
                .await?
                .into_inner();
            json!({"name": role.name, "permissions": role.permissions})
        }
        AdminCommand::UpdateRole { name, permissions } => {
            let role = client
                .admin
                .update_role(client.request(pb::Role {
                    name,
                    permissions,
                    built_in: false,
                }))
                .await?
                .into_inner();
            json!({"name": role.name, "permissions": role.permissions})
        }
        AdminCommand::DeleteRole { name } => {
            client
                .admin
                .delete_role(client.request(pb::DeleteRoleRequest { name: name.clone() }))
                .await?;
            if output == Output::Human {
                println!("role {name:?} deleted");
                return Ok(());
            }
            json!({"deleted_role": name})
        }
        AdminCommand::CreatePrincipal { name, roles, group } => {
            let request = match group {
                None => pb::CreatePrincipalRequest {
                    name,
                    roles,
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
                    ..Default::default()
                },
            };
            let created = client
                .admin
                .create_principal(client.request(request))
                .await?
                .into_inner();
            if output == Output::Human {
                println!("{}", created.bearer_token);
                eprintln!(
                    "token of principal {:?}; it is shown only now",
                    created.name
                );
                return Ok(());
            }
            json!({"name": created.name, "bearer_token": created.bearer_token})
        }
        AdminCommand::Principals => {
            let principals = client
                .admin
                .list_principals(client.request(pb::ListPrincipalsRequest {}))
                .await?
                .into_inner()
                .principals;
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
        }
        | AdminCommand::UnassignRole {
            principal,
            role,
            group,
        } => {
            let request = client.request(pb::RoleAssignmentRequest {
                principal,
                role,
                group: group.unwrap_or_default(),
            });
            let principal = if assign {
                client.admin.assign_role(request).await?
            } else {
                client.admin.unassign_role(request).await?
            }
            .into_inner();
            if output == Output::Human {
                println!("{}", principal_line(&principal));
                return Ok(());
            }
            principal_json(&principal)
        }
        AdminCommand::DeletePrincipal { name } => {
            client
                .admin
                .delete_principal(client.request(pb::DeletePrincipalRequest { name: name.clone() }))
                .await?;
            if output == Output::Human {
                println!("principal {name:?} deleted");
                return Ok(());
            }
            json!({"deleted_principal": name})
        }
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// An admin API client that adds the bearer token to every request.
pub struct Client {
    pub admin: AdminServiceClient<Channel>,
    bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Client {
    pub async fn connect(server: &str, token: &str) -> anyhow::Result<Client> {
        let channel = tonic::transport::Endpoint::from_shared(server.to_string())
            .with_context(|| format!("invalid server address {server:?}"))?
            .connect()
            .await
            .with_context(|| format!("cannot reach the control plane at {server}"))?;
        let bearer = format!("Bearer {token}")
            .parse()
            .context("the token contains characters that cannot be sent")?;
        Ok(Client {
            admin: AdminServiceClient::new(channel),
            bearer,
        })
    }

    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    /// The devices of `group` ("" for every group) the caller may see.
    pub async fn list_devices(&mut self, group: String) -> Result<Vec<pb::Device>, tonic::Status> {
        let request = self.request(pb::ListDevicesRequest { group });
        Ok(self.admin.list_devices(request).await?.into_inner().devices)
    }

    pub async fn device(&mut self, device_id: &str) -> Result<pb::Device, tonic::Status> {
        let request = self.request(pb::GetDeviceRequest {
            device_id: device_id.to_string(),
        });
        Ok(self.admin.get_device(request).await?.into_inner())
    }

    pub async fn action(&mut self, action_id: &str) -> Result<pb::Action, tonic::Status> {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            ..Default::default()
        });
        Ok(self.admin.get_action(request).await?.into_inner())
    }

    pub async fn reveal(
        &mut self,
        action_id: &str,
    ) -> Result<pb::RevealPasscodeResponse, tonic::Status> {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            ..Default::default()
        });
        Ok(self.admin.reveal_passcode(request).await?.into_inner())
    }

    /// Follows an action with WatchAction until its final state and returns that state.
    pub async fn wait_final(
        &mut self,
        action_id: &str,
        each: impl FnMut(&pb::Action),
    ) -> Result<pb::Action, tonic::Status> {
        self.watch(action_id, false, each).await
    }

    /// Follows the action with WatchAction until its final state or, with `until_user_entered`,
    /// until the user has entered a done reset's new passcode.
    async fn watch(
        &mut self,
        action_id: &str,
        until_user_entered: bool,
        mut each: impl FnMut(&pb::Action),
    ) -> Result<pb::Action, tonic::Status> {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            until_user_entered,
        });
        let mut stream = self.admin.watch_action(request).await?.into_inner();
        let mut last = None;
        while let Some(action) = stream.message().await? {
            each(&action);
            last = Some(action);
        }
        last.ok_or_else(|| tonic::Status::unavailable("the watch ended without a state"))
    }

    /// Prints `created` (the action as the request returned it) and then each state change
    /// until the final one (and, with `until_entered`, the user's entry of the new passcode).
    async fn follow(
        &mut self,
        created: Option<&pb::Action>,
        action_id: &str,
        until_entered: bool,
        output: Output,
    ) -> anyhow::Result<()> {
        let mut printed = None;
        let mut print = |action: &pb::Action| {
            let shown = (action.state, action.user_entered_at_ms);
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
        let last = self.watch(action_id, until_entered, print).await?;
        if output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&action_json(&last))?);
        } else if !last.reason.is_empty() {
            println!("reason: {}", last.reason);
        }
        Ok(())
    }
}

pub fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

pub fn ownership_name(value: i32) -> &'static str {
    match pb::Ownership::try_from(value) {
        Ok(pb::Ownership::Cosu) => "COSU",
        Ok(pb::Ownership::Cobo) => "COBO",
        Ok(pb::Ownership::Cope) => "COPE",
        Ok(pb::Ownership::Byod) => "BYOD",
        Ok(pb::Ownership::Aosp) => "AOSP",
        _ => "?",
    }
}

pub fn scope_name(value: i32) -> &'static str {
    match pb::CredentialScope::try_from(value) {
        Ok(pb::CredentialScope::Device) => "device",
        Ok(pb::CredentialScope::WorkProfile) => "work_profile",
        _ => "-",
    }
}

pub fn state_name(value: i32) -> &'static str {
    match pb::ActionState::try_from(value) {
        Ok(pb::ActionState::Pending) => "pending",
        Ok(pb::ActionState::Active) => "active",
        Ok(pb::ActionState::Done) => "done",
        Ok(pb::ActionState::Failed) => "failed",
        Ok(pb::ActionState::Canceled) => "canceled",
        Ok(pb::ActionState::NotSupported) => "not_supported",
        Ok(pb::ActionState::Expired) => "expired",
        _ => "?",
    }
}

pub fn error_name(value: i32) -> String {
    pb::ErrorCode::try_from(value)
        .map(|c| {
            c.as_str_name()
                .trim_start_matches("ERROR_CODE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| format!("code {value}"))
}

fn token_state_name(value: i32) -> &'static str {
    match pb::TokenState::try_from(value) {
        Ok(pb::TokenState::Pending) => "pending",
        Ok(pb::TokenState::Active) => "active",
        _ => "none",
    }
}

fn device_line(device: &pb::Device) -> String {
    format!(
        "{}  {:<4}  {:<20} {:<12} {}",
        device.device_id,
        ownership_name(device.ownership),
        device.display_name,
        device.group,
        if device.online { "online" } else { "offline" }
    )
}

fn assignment_text(assignment: &pb::RoleAssignment) -> String {
    if assignment.group.is_empty() {
        assignment.role.clone()
    } else {
        format!("{} (group {})", assignment.role, assignment.group)
    }
}

fn principal_line(principal: &pb::Principal) -> String {
    let held: Vec<String> = principal.assignments.iter().map(assignment_text).collect();
    format!("{}: {}", principal.name, held.join(", "))
}

fn principal_json(principal: &pb::Principal) -> Value {
    json!({
        "name": principal.name,
        "roles": principal.roles,
        "assignments": principal.assignments.iter().map(|a| json!({
            "role": a.role,
            "group": (!a.group.is_empty()).then_some(&a.group),
        })).collect::<Vec<_>>(),
        "created_at": time(principal.created_at_ms),
    })
}

pub fn kind_name(value: i32) -> &'static str {
    match pb::ActionKind::try_from(value) {
        Ok(pb::ActionKind::ResetPasscode) => "reset_passcode",
        Ok(pb::ActionKind::RemoteLock) => "remote_lock",
        _ => "?",
    }
}

fn print_device(device: &pb::Device) {
    println!("{}", device_line(device));
    for store in &device.stores {
        println!(
            "  {:<12} passcode {}, {}, reset token {}, {} failed attempt(s){}",
            scope_name(store.scope),
            if store.has_passcode { "set" } else { "not set" },
            if store.locked { "locked" } else { "unlocked" },
            token_state_name(store.token_state),
            store.failed_attempts,
            if store.wiped { ", WIPED" } else { "" }
        );
    }
    let policy = |p: &Option<pb::PasscodePolicy>| match p {
        Some(p) => format!(
            "{} of at least {} characters",
            pb::PasscodeType::try_from(p.r#type)
                .map(|t| t
                    .as_str_name()
                    .trim_start_matches("PASSCODE_TYPE_")
                    .to_lowercase())
                .unwrap_or_default(),
            p.min_length.max(4)
        ),
        None => "none".into(),
    };
    println!(
        "  device passcode policy: {}",
        policy(&device.device_policy)
    );
    if ownership_name(device.ownership) != "COSU" && ownership_name(device.ownership) != "AOSP" {
        println!(
            "  work profile passcode policy: {}",
            policy(&device.work_profile_policy)
        );
    }
}

pub fn action_line(action: &pb::Action) -> String {
    let mut line = format!(
        "{}  {:<14} {:<13} {:<12} {}",
        action.action_id,
        kind_name(action.kind),
        state_name(action.state),
        scope_name(action.scope),
        time(action.updated_at_ms)
    );
    if action.error_code != 0 {
        line.push_str(&format!("  [{}]", error_name(action.error_code)));
    }
    line
}

fn print_action(action: &pb::Action) {
    println!("{}", action_line(action));
    println!(
        "  device {} requested by {} at {}",
        action.device_id,
        action.requested_by,
        time(action.created_at_ms)
    );
    if !action.reason.is_empty() {
        println!("  reason: {}", action.reason);
    }
    if action.passcode_visible_until_ms > 0 {
        println!(
            "  passcode: droidfleet admin reveal-passcode {} (until {})",
            action.action_id,
            time(action.passcode_visible_until_ms)
        );
    }
}

fn device_json(device: &pb::Device) -> Value {
    json!({
        "device_id": device.device_id,
        "display_name": device.display_name,
        "ownership": ownership_name(device.ownership),
        "group": device.group,
        "online": device.online,
        "enrolled_at": time(device.enrolled_at_ms),
        "last_seen": time(device.last_seen_ms),
        "stores": device.stores.iter().map(|s| json!({
            "scope": scope_name(s.scope), "has_passcode": s.has_passcode, "locked": s.locked,
            "token_state": token_state_name(s.token_state), "failed_attempts": s.failed_attempts,
            "wiped": s.wiped, "separate_challenge": s.separate_challenge, "require_entry": s.require_entry,
        })).collect::<Vec<_>>(),
        "device_policy": device.device_policy.as_ref().map(policy_json),
        "work_profile_policy": device.work_profile_policy.as_ref().map(policy_json),
        "escrowed_token_scopes": device.escrowed_token_scopes.iter().map(|s| scope_name(*s)).collect::<Vec<_>>(),
    })
}

fn policy_json(policy: &pb::PasscodePolicy) -> Value {
    json!({
        "type": pb::PasscodeType::try_from(policy.r#type).map(|t| t.as_str_name()).unwrap_or("?"),
        "min_length": policy.min_length,
        "complexity": pb::PasscodeComplexity::try_from(policy.complexity).map(|t| t.as_str_name()).unwrap_or("?"),
        "max_failed_attempts_before_wipe": policy.max_failed_attempts_before_wipe,
    })
}

pub fn action_json(action: &pb::Action) -> Value {
    json!({
        "action_id": action.action_id,
        "device_id": action.device_id,
        "kind": kind_name(action.kind),
        "scope": scope_name(action.scope),
        "state": state_name(action.state),
        "error_code": (action.error_code != 0).then(|| error_name(action.error_code)),
        "reason": action.reason,
        "requested_by": action.requested_by,
        "created_at": time(action.created_at_ms),
        "updated_at": time(action.updated_at_ms),
        "delivered_at": time(action.delivered_at_ms),
        "completed_at": time(action.completed_at_ms),
        "user_entered_at": time(action.user_entered_at_ms),
        "not_after": time(action.not_after_ms),
        "passcode_visible_until": time(action.passcode_visible_until_ms),
    })
}
