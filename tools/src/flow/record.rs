//! `droidfleet flow record`: a person plays a journey by hand, and it is kept as a flow file.
//!
//! The recorder starts a control plane and the devices asked for, as `flow run` does, then reads
//! commands, one a line, on stdin: `admin …` (as `droidfleet admin`, with device names and saved
//! action names instead of ids), `device NAME …` (the harness's user operations), `check NAME`
//! (keep what the phone shows now as assertions), `advance`, `wait`, `save`, `quit`. Each command
//! runs at once, through the same steps a flow runs, and what it did is printed. What happened
//! is what is kept: a refused admin call becomes its `expect_error`, an entry's outcome its
//! `expect`, a `--wait` the action's final state and error code, and a passcode the admin was
//! shown is written as `${revealed.<scope>}`, since the next run's passcode will differ. The
//! file is written at `save`, `quit` or the end of input, and read back before it is kept.

use super::FlowError;
use super::check::{self, shade_words};
use super::model::{Flow, FlowDevice, Pos, Step, StepKind, Text, TokenWanted};
use super::parse::{ACTION_STATES, Context, parse_flow};
use super::report::Failure;
use super::run::Run;
use super::stage::{Stage, Target};
use super::write::flow_file;
use crate::admin::format::{error_name, state_name};
use droidfleet_agent::cli::Argon2Preset;
use droidfleet_agent::device::Scope;
use droidfleet_agent::fleet::DeviceSpec;
use droidfleet_proto::v1 as pb;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

#[derive(clap::Args)]
pub(super) struct RecordArgs {
    /// The flow file to write.
    output: PathBuf,
    /// A device to host, TYPE:NAME (e.g. byod:alice); repeat for more.
    #[arg(long = "device", required = true)]
    devices: Vec<DeviceSpec>,
    /// The flow's name (the file's name by default).
    #[arg(long)]
    name: Option<String>,
    /// A tag for the flow; repeat for more.
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// How long a waiting command (`--wait`, `watch`) may take.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Cost of the devices' passcode hashing.
    #[arg(long, value_enum, default_value_t = Argon2Preset::Light)]
    argon2: Argon2Preset,
}

/// One line of a recording session.
#[derive(clap::Parser)]
#[command(no_binary_name = true, disable_help_subcommand = true)]
enum Line {
    /// The admin, over the admin API.
    Admin {
        #[command(subcommand)]
        command: AdminLine,
    },
    /// The user of device NAME, on the phone.
    Device {
        name: String,
        #[command(subcommand)]
        command: DeviceLine,
    },
    /// Keep what device NAME shows now as assertions (notifications, lock state, tokens).
    Check { name: String },
    /// Move the control plane's and the devices' clocks, e.g. `advance 6d`.
    Advance {
        #[arg(value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Let real time pass, e.g. `wait 2s`.
    Wait {
        #[arg(value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Write the flow file now and go on.
    Save,
    /// Write the flow file and end.
    Quit,
}

#[derive(clap::Subcommand)]
enum AdminLine {
    AssignPolicy {
        device: String,
        #[arg(long, value_enum)]
        scope: ScopeArg,
        #[arg(long = "type", default_value = "pin", value_parser = ["pin", "numeric_complex", "alphanumeric", "complex"])]
        passcode_type: String,
        #[arg(long, default_value_t = 6)]
        min_length: u32,
        #[arg(long, default_value_t = 0)]
        wipe_after: u32,
        #[arg(long = "as")]
        role: Option<String>,
    },
    RemovePolicy {
        device: String,
        #[arg(long, value_enum)]
        scope: ScopeArg,
        #[arg(long = "as")]
        role: Option<String>,
    },
    ResetPasscode {
        device: String,
        #[arg(long, value_enum)]
        scope: Option<ScopeArg>,
        #[arg(long)]
        passcode: Option<String>,
        #[arg(long)]
        ttl: Option<u64>,
        #[arg(long = "as")]
        role: Option<String>,
        /// Follow the action to its final state and keep that state as an assertion.
        #[arg(long)]
        wait: bool,
    },
    RemoteLock {
        device: String,
        #[arg(long, value_enum)]
        scope: Option<ScopeArg>,
        #[arg(long)]
        ttl: Option<u64>,
        #[arg(long = "as")]
        role: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// ACTION is a saved name (`reset`, `reset-2`, `lock`…); the latest action by default.
    RevealPasscode {
        action: Option<String>,
        #[arg(long = "as")]
        role: Option<String>,
    },
    Cancel {
        action: Option<String>,
        #[arg(long = "as")]
        role: Option<String>,
    },
    /// Follow an action to its final state (or the user's entry) and keep it as an assertion.
    Watch {
        action: Option<String>,
        #[arg(long)]
        until_entered: bool,
    },
    /// Keep the newest audit entry of an operation (by a role's principal) as an assertion.
    Audit {
        #[arg(long)]
        operation: String,
        #[arg(long = "by")]
        role: Option<String>,
    },
}

#[derive(clap::Subcommand)]
enum DeviceLine {
    SetPasscode {
        #[arg(long, value_enum)]
        scope: ScopeArg,
        #[arg(long)]
        current: Option<String>,
        passcode: String,
    },
    EnterPasscode {
        #[arg(long, value_enum)]
        scope: ScopeArg,
        passcode: String,
    },
    Lock {
        #[arg(long, value_enum)]
        scope: ScopeArg,
    },
    Reboot,
    Offline,
    Online,
    WriteData {
        #[arg(long, value_enum)]
        scope: ScopeArg,
        key: String,
        value: String,
    },
    ReadData {
        #[arg(long, value_enum)]
        scope: ScopeArg,
        key: String,
    },
    /// Show the screen (records nothing).
    Screen,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScopeArg {
    Device,
    WorkProfile,
}

impl From<ScopeArg> for Scope {
    fn from(scope: ScopeArg) -> Scope {
        match scope {
            ScopeArg::Device => Scope::Device,
            ScopeArg::WorkProfile => Scope::WorkProfile,
        }
    }
}

/// Runs a recording session on stdin until `quit` or the end of input.
pub(super) async fn record(args: RecordArgs) -> Result<(), FlowError> {
    if args.output.exists() && !args.force {
        return Err(FlowError::InvalidOption(format!(
            "{} exists: give another file, or --force to replace it",
            args.output.display()
        )));
    }
    let name = args.name.clone().unwrap_or_else(|| {
        args.output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "recorded".into())
    });
    let mut flow = Flow {
        path: args.output.clone(),
        name,
        tags: args.tags.clone(),
        env: BTreeMap::new(),
        devices: args
            .devices
            .iter()
            .map(|d| FlowDevice {
                name: d.name.clone(),
                ownership: d.ownership,
                build: d.build,
                pos: Pos::default(),
            })
            .collect(),
        steps: Vec::new(),
    };
    let target = Target::Embedded {
        kdf: args.argon2.params(),
    };
    let stage = Stage::prepare(&target, &flow).await?;
    let devices = flow.devices.clone();
    let setup = Flow {
        steps: Vec::new(),
        ..flow.clone()
    };
    let mut session = Session {
        run: Run::new(&setup, stage, args.timeout),
        devices,
        steps: Vec::new(),
        action_names: Vec::new(),
        reads: 0,
        timeout: args.timeout,
    };
    println!(
        "recording {}: devices {} are enrolled and connected; one command a line, `quit` to end",
        args.output.display(),
        session
            .devices
            .iter()
            .map(|d| format!("{} ({})", d.name, d.ownership))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  admin reset-passcode NAME [--as ROLE] [--wait] | admin reveal-passcode | device NAME \
         enter-passcode --scope work-profile CODE | check NAME | advance 6d | save | quit \
         (`help`, `admin help`, `device NAME help` list the rest)"
    );
    let prompt = std::io::stdin().is_terminal();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        if prompt {
            print!("> ");
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
        }
        let Ok(Some(line)) = lines.next_line().await else {
            break;
        };
        let words = match split(&line) {
            Ok(words) if words.is_empty() || words[0].starts_with('#') => continue,
            Ok(words) => words,
            Err(problem) => {
                println!("  ? {problem}");
                continue;
            }
        };
        if words[0] == "help" {
            println!("{}", help());
            continue;
        }
        let parsed = match <Line as clap::Parser>::try_parse_from(&words) {
            Ok(parsed) => parsed,
            Err(error) => {
                println!("{}", error.render());
                continue;
            }
        };
        match parsed {
            Line::Save => save(&mut flow, &session.steps, &args.output)?,
            Line::Quit => break,
            other => session.play(other).await,
        }
    }
    save(&mut flow, &session.steps, &args.output)?;
    session.run.into_stage().finish().await;
    Ok(())
}

fn help() -> String {
    "admin assign-policy NAME --scope device|work-profile [--type pin|numeric_complex|alphanumeric|complex] [--min-length N] [--wipe-after N] [--as ROLE]\n\
     admin remove-policy NAME --scope S [--as ROLE]\n\
     admin reset-passcode NAME [--scope S] [--passcode P] [--ttl SECONDS] [--as ROLE] [--wait]\n\
     admin remote-lock NAME [--scope S] [--ttl SECONDS] [--as ROLE] [--wait]\n\
     admin reveal-passcode [ACTION] [--as ROLE]    admin cancel [ACTION] [--as ROLE]\n\
     admin watch [ACTION] [--until-entered]         admin audit --operation RPC [--by ROLE]\n\
     device NAME set-passcode --scope S [--current C] P | enter-passcode --scope S P | lock --scope S\n\
     device NAME reboot | offline | online | write-data --scope S KEY VALUE | read-data --scope S KEY | screen\n\
     check NAME    advance DURATION    wait DURATION    save    quit"
        .to_string()
}

/// Writes the flow recorded so far, after reading it back as `flow run` would.
fn save(flow: &mut Flow, steps: &[Step], output: &PathBuf) -> Result<(), FlowError> {
    flow.steps = steps.to_vec();
    let text = flow_file(
        flow,
        &[
            "Recorded with `droidfleet flow record`.".to_string(),
            format!("Run it with `droidfleet flow run {}`.", output.display()),
        ],
    );
    let context = Context {
        embedded: true,
        env: BTreeMap::new(),
    };
    if let Err(problems) = parse_flow(output, &text, &context) {
        return Err(FlowError::Invalid(problems));
    }
    std::fs::write(output, text).map_err(|source| FlowError::Report {
        path: output.clone(),
        source,
    })?;
    println!("  saved {} ({} steps)", output.display(), steps.len());
    Ok(())
}

/// A recording in progress.
struct Session<'a> {
    run: Run<'a>,
    devices: Vec<FlowDevice>,
    /// The steps kept so far.
    steps: Vec<Step>,
    /// Each saved action's name, oldest first.
    action_names: Vec<String>,
    /// `read-data` commands so far, to name each one's variable.
    reads: usize,
    /// How long `--wait` and `watch` follow an action.
    timeout: Duration,
}

fn step(kind: StepKind) -> Step {
    Step {
        pos: Pos::default(),
        kind,
        timeout: None,
        role: None,
        expect_error: None,
    }
}

impl Session<'_> {
    fn known_device(&self, name: &str) -> bool {
        let known = self.devices.iter().any(|d| d.name == name);
        if !known {
            println!(
                "  ? no device {name:?}; this session has {}",
                self.devices
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        known
    }

    /// Whether the session can act as `role`: a principal holding it is made the first time.
    async fn known_role(&mut self, role: &Option<String>) -> bool {
        let Some(role) = role else { return true };
        match self.run.stage().create_role(role).await {
            Ok(()) => true,
            Err(error) => {
                println!("  ? cannot act as {role:?}: {error}");
                false
            }
        }
    }

    /// The saved action `name`, or the latest.
    fn action(&self, name: Option<String>) -> Option<String> {
        match name {
            Some(name) if self.action_names.contains(&name) => Some(name),
            Some(name) => {
                println!(
                    "  ? no action saved as {name:?} (saved: {})",
                    self.action_names.join(", ")
                );
                None
            }
            None => {
                let latest = self.action_names.last().cloned();
                if latest.is_none() {
                    println!("  ? no action yet: reset-passcode or remote-lock first");
                }
                latest
            }
        }
    }

    /// The next name for an action of this kind: `reset`, `reset-2`, …
    fn next_action_name(&self, base: &str) -> String {
        let taken = self
            .action_names
            .iter()
            .filter(|n| *n == base || n.starts_with(&format!("{base}-")))
            .count();
        if taken == 0 {
            base.to_string()
        } else {
            format!("{base}-{}", taken + 1)
        }
    }

    /// A passcode the user typed: the variable of the passcode the admin was shown when it is
    /// that one (the next run's passcode will be another), else the digits as typed.
    fn passcode(&self, device: &str, scope: Scope, typed: &str) -> Text {
        for name in [
            format!("revealed.{}", scope.as_str()),
            format!("revealed.{device}.{}", scope.as_str()),
        ] {
            if self.run.value(&name) == Some(typed) {
                return Text::variable(&name);
            }
        }
        Text::literal(typed)
    }

    async fn play(&mut self, line: Line) {
        let planned: Option<Step> = match line {
            Line::Admin { command } => match self.admin(command).await {
                Some(step) => Some(step),
                None => return,
            },
            Line::Device { name, command } => {
                if !self.known_device(&name) {
                    return;
                }
                match self.device(name, command).await {
                    Some(step) => Some(step),
                    None => return,
                }
            }
            Line::Check { name } => {
                if self.known_device(&name) {
                    self.check(&name).await;
                }
                return;
            }
            Line::Advance { duration } => Some(step(StepKind::Advance(duration))),
            Line::Wait { duration } => Some(step(StepKind::Wait(duration))),
            Line::Save | Line::Quit => None,
        };
        if let Some(planned) = planned {
            self.keep(planned).await;
        }
    }

    /// Runs `planned` and keeps it as it went: a refusal as its `expect_error`, an entry's
    /// outcome as its `expect`. A step that failed otherwise is shown and not kept.
    async fn keep(&mut self, mut planned: Step) -> bool {
        let outcome = self.run.step(&planned).await;
        match outcome {
            Ok(detail) => {
                if let StepKind::EnterPasscode { expect, .. } = &mut planned.kind {
                    *expect = self.run.entered;
                }
                println!("  ok: {detail}");
                // The person plays the admin too: like `droidfleet admin reveal-passcode`, the
                // session shows the passcode, so they can read it out to the user.
                if let StepKind::RevealPasscode { action } = &planned.kind
                    && planned.expect_error.is_none()
                {
                    let (device, scope) = self.run.action_target(action);
                    if let Some(passcode) = self
                        .run
                        .value(&format!("revealed.{device}.{}", scope.as_str()))
                    {
                        println!("  the admin reads out: {passcode}");
                    }
                }
                self.steps.push(planned);
                true
            }
            Err(_) if self.run.refused.is_some() => {
                planned.expect_error = self.run.refused;
                let code =
                    super::parse::grpc_code_name(self.run.refused.unwrap_or(tonic::Code::Unknown));
                println!("  refused with {code}: kept as the step's expect_error");
                if let StepKind::ResetPasscode { save_as, .. }
                | StepKind::RemoteLock { save_as, .. } = &planned.kind
                {
                    let save_as = save_as.clone();
                    self.action_names.retain(|n| *n != save_as);
                }
                self.steps.push(planned);
                true
            }
            Err(Failure { expected, observed }) => {
                println!("  failed, not kept: expected {expected}; observed {observed}");
                false
            }
        }
    }

    async fn admin(&mut self, command: AdminLine) -> Option<Step> {
        match command {
            AdminLine::AssignPolicy {
                device,
                scope,
                passcode_type,
                min_length,
                wipe_after,
                role,
            } => {
                if !self.known_device(&device) || !self.known_role(&role).await {
                    return None;
                }
                let kind = match passcode_type.as_str() {
                    "numeric_complex" => pb::PasscodeType::NumericComplex,
                    "alphanumeric" => pb::PasscodeType::Alphanumeric,
                    "complex" => pb::PasscodeType::Complex,
                    _ => pb::PasscodeType::Pin,
                };
                let mut planned = step(StepKind::AssignPolicy {
                    device,
                    scope: scope.into(),
                    policy: Some(pb::PasscodePolicy {
                        r#type: kind as i32,
                        min_length,
                        max_failed_attempts_before_wipe: wipe_after,
                        ..Default::default()
                    }),
                });
                planned.role = role;
                Some(planned)
            }
            AdminLine::RemovePolicy {
                device,
                scope,
                role,
            } => {
                if !self.known_device(&device) || !self.known_role(&role).await {
                    return None;
                }
                let mut planned = step(StepKind::AssignPolicy {
                    device,
                    scope: scope.into(),
                    policy: None,
                });
                planned.role = role;
                Some(planned)
            }
            AdminLine::ResetPasscode {
                device,
                scope,
                passcode,
                ttl,
                role,
                wait,
            } => {
                if !self.known_device(&device) || !self.known_role(&role).await {
                    return None;
                }
                let save_as = self.next_action_name("reset");
                let mut planned = step(StepKind::ResetPasscode {
                    device,
                    scope: scope.map(Scope::from),
                    passcode: passcode.as_deref().map(Text::literal),
                    ttl_seconds: ttl,
                    save_as: save_as.clone(),
                });
                planned.role = role;
                self.action_names.push(save_as.clone());
                if self.keep(planned).await && wait && self.run.saved_action_id(&save_as).is_some()
                {
                    self.watch(save_as, false).await;
                }
                None
            }
            AdminLine::RemoteLock {
                device,
                scope,
                ttl,
                role,
                wait,
            } => {
                if !self.known_device(&device) || !self.known_role(&role).await {
                    return None;
                }
                let save_as = self.next_action_name("lock");
                let mut planned = step(StepKind::RemoteLock {
                    device,
                    scope: scope.map(Scope::from),
                    ttl_seconds: ttl,
                    save_as: save_as.clone(),
                });
                planned.role = role;
                self.action_names.push(save_as.clone());
                if self.keep(planned).await && wait && self.run.saved_action_id(&save_as).is_some()
                {
                    self.watch(save_as, false).await;
                }
                None
            }
            AdminLine::RevealPasscode { action, role } => {
                let action = self.action(action)?;
                if !self.known_role(&role).await {
                    return None;
                }
                let mut planned = step(StepKind::RevealPasscode { action });
                planned.role = role;
                Some(planned)
            }
            AdminLine::Cancel { action, role } => {
                let action = self.action(action)?;
                if !self.known_role(&role).await {
                    return None;
                }
                let mut planned = step(StepKind::Cancel { action });
                planned.role = role;
                Some(planned)
            }
            AdminLine::Watch {
                action,
                until_entered,
            } => {
                let action = self.action(action)?;
                self.watch(action, until_entered).await;
                None
            }
            AdminLine::Audit { operation, role } => {
                if !self.known_role(&role).await {
                    return None;
                }
                let principal = role
                    .as_ref()
                    .and_then(|r| self.run.stage().roles.get(r))
                    .map(|actor| actor.principal.clone())
                    .unwrap_or_default();
                let events = self
                    .run
                    .stage()
                    .admin
                    .list_audit_events(
                        pb::ListAuditEventsRequest {
                            operation: operation.clone(),
                            principal,
                            ..Default::default()
                        },
                        1,
                    )
                    .await;
                match events.as_deref() {
                    Ok([newest, ..]) => Some(step(StepKind::Audit {
                        operation,
                        result: Some(newest.result.clone()),
                        by_role: role,
                        device: None,
                    })),
                    Ok([]) => {
                        println!("  ? no {operation} entry in the audit log");
                        None
                    }
                    Err(error) => {
                        println!("  ? {error}");
                        None
                    }
                }
            }
        }
    }

    /// Follows the saved action until a final state (or the user's entry) and keeps that as an
    /// `assert_action`.
    async fn watch(&mut self, action: String, until_entered: bool) {
        let Some(action_id) = self.run.saved_action_id(&action).map(str::to_string) else {
            println!("  ? the action {action:?} was never created");
            return;
        };
        let finals = &ACTION_STATES[2..];
        let admin = self.run.stage().admin.clone();
        let followed = admin.wait_action(&action_id, until_entered, |a| {
            finals.contains(&state_name(a.state))
                && (!until_entered || state_name(a.state) != "done" || a.user_entered_at_ms != 0)
        });
        let seen = match tokio::time::timeout(self.timeout, followed).await {
            Ok(Ok(seen)) => seen,
            Ok(Err(error)) => {
                println!("  ? {error}");
                return;
            }
            Err(_) => {
                println!("  ? the action did not end within the --timeout; nothing kept");
                return;
            }
        };
        let planned = step(StepKind::ActionEnded {
            action,
            state: state_name(seen.state).to_string(),
            error_code: (seen.error_code != 0).then(|| error_name(seen.error_code)),
            user_entered: until_entered.then_some(seen.user_entered_at_ms != 0),
        });
        self.keep(planned).await;
    }

    async fn device(&mut self, name: String, command: DeviceLine) -> Option<Step> {
        Some(step(match command {
            DeviceLine::SetPasscode {
                scope,
                current,
                passcode,
            } => StepKind::SetPasscode {
                current: current.map(|c| self.passcode(&name, scope.into(), &c)),
                passcode: self.passcode(&name, scope.into(), &passcode),
                device: name,
                scope: scope.into(),
            },
            DeviceLine::EnterPasscode { scope, passcode } => StepKind::EnterPasscode {
                passcode: self.passcode(&name, scope.into(), &passcode),
                device: name,
                scope: scope.into(),
                expect: None,
                times: 1,
            },
            DeviceLine::Lock { scope } => StepKind::Lock {
                device: name,
                scope: scope.into(),
            },
            DeviceLine::Reboot => StepKind::Reboot { device: name },
            DeviceLine::Offline => StepKind::SetOnline {
                device: name,
                online: false,
            },
            DeviceLine::Online => StepKind::SetOnline {
                device: name,
                online: true,
            },
            DeviceLine::WriteData { scope, key, value } => StepKind::WriteData {
                device: name,
                scope: scope.into(),
                key,
                value: Text::literal(&value),
            },
            DeviceLine::ReadData { scope, key } => {
                self.reads += 1;
                StepKind::ReadData {
                    device: name,
                    scope: scope.into(),
                    key,
                    save_as: format!("read-{}", self.reads),
                }
            }
            DeviceLine::Screen => {
                self.show(&name).await;
                return None;
            }
        }))
    }

    async fn screen(&mut self, name: &str) -> Option<pb::Screen> {
        match self
            .run
            .stage()
            .harness
            .get_screen(pb::DeviceRef {
                name: name.to_string(),
            })
            .await
        {
            Ok(screen) => Some(screen.into_inner()),
            Err(status) => {
                println!("  ? {}", status.message());
                None
            }
        }
    }

    async fn show(&mut self, name: &str) {
        let Some(screen) = self.screen(name).await else {
            return;
        };
        let now = self.run.stage().now_ms();
        println!(
            "  {name}: {}; {}",
            if screen.connected {
                "online"
            } else {
                "offline"
            },
            shade_words(&screen)
        );
        for status in &screen.stores {
            println!(
                "    {}: {}, token {}",
                check::scope_from_pb(status.scope)
                    .map(|s| s.as_str())
                    .unwrap_or("?"),
                check::store_words(status, now),
                check::token_name(status.token_state)
            );
        }
    }

    /// Keeps what the phone shows now as assertions: its notifications (or an empty shade), each
    /// store's lock state and token.
    async fn check(&mut self, name: &str) {
        let Some(screen) = self.screen(name).await else {
            return;
        };
        let mut planned = Vec::new();
        if screen.notifications.is_empty() {
            planned.push(step(StepKind::Notification {
                device: name.to_string(),
                title: None,
                shown: false,
            }));
        }
        for notification in &screen.notifications {
            planned.push(step(StepKind::Notification {
                device: name.to_string(),
                title: Some(Text::literal(&notification.title)),
                shown: true,
            }));
        }
        for status in &screen.stores {
            let Some(scope) = check::scope_from_pb(status.scope) else {
                continue;
            };
            planned.push(step(StepKind::Locked {
                device: name.to_string(),
                scope,
                locked: status.locked,
            }));
            planned.push(step(StepKind::Token {
                device: name.to_string(),
                scope,
                state: match check::token_name(status.token_state) {
                    "pending" => TokenWanted::Pending,
                    "active" => TokenWanted::Active,
                    _ => TokenWanted::None,
                },
            }));
        }
        for assertion in planned {
            self.keep(assertion).await;
        }
    }
}

/// Words of a command line, as a shell splits them: on white space, with '…' and "…" quoting
/// and backslash escapes.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => match chars.next() {
                Some(escaped) => {
                    word.push(escaped);
                    in_word = true;
                }
                None => return Err("a line cannot end with a backslash".into()),
            },
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_a_shell() {
        assert_eq!(
            split(
                r#"device alice write-data --scope work-profile notes "alice's notes" 'a b' c\ d"#
            )
            .unwrap(),
            [
                "device",
                "alice",
                "write-data",
                "--scope",
                "work-profile",
                "notes",
                "alice's notes",
                "a b",
                "c d"
            ]
        );
        assert!(split("admin \"open").is_err());
        assert_eq!(split("   ").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn command_lines_parse_as_the_cli_writes_them() {
        let words = split("admin reset-passcode alice --as \"Read Only Operator\" --wait").unwrap();
        let Ok(Line::Admin {
            command: AdminLine::ResetPasscode {
                device, role, wait, ..
            },
        }) = <Line as clap::Parser>::try_parse_from(&words)
        else {
            panic!("parsed")
        };
        assert_eq!(device, "alice");
        assert_eq!(role.as_deref(), Some("Read Only Operator"));
        assert!(wait);
        let words = split("device alice enter-passcode --scope work-profile 1234").unwrap();
        assert!(<Line as clap::Parser>::try_parse_from(&words).is_ok());
        let words = split("advance 6d").unwrap();
        assert!(<Line as clap::Parser>::try_parse_from(&words).is_ok());
        let words = split("device alice fly").unwrap();
        assert!(<Line as clap::Parser>::try_parse_from(&words).is_err());
    }
}
