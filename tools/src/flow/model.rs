//! What a flow file says, once read and checked: the flow, its devices, and its steps, each step
//! with the line and column it came from. Plain data; reading it is `parse.rs`, running it is
//! `run.rs`.

use droidfleet_agent::device::{Build, Ownership, Scope};
use droidfleet_proto::v1 as pb;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A place in a flow file, both counted from 1 as editors show them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One flow file: a user journey with the devices it needs.
#[derive(Clone, Debug)]
pub(crate) struct Flow {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    /// The file's `env` values, after `--env` overrides; `${NAME}` reads them.
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) devices: Vec<FlowDevice>,
    pub(crate) steps: Vec<Step>,
}

#[derive(Clone, Debug)]
pub(crate) struct FlowDevice {
    pub(crate) name: String,
    pub(crate) ownership: Ownership,
    /// The Android it runs (`android:` and `profile:`), so a flow can show how a version or a
    /// maker changes the journey.
    pub(crate) build: Build,
    pub(crate) pos: Pos,
}

/// Text that may hold `${NAME}` variables, resolved when its step runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Text {
    /// As written in the file: what reports show, so a variable holding a passcode is never
    /// printed.
    pub(crate) source: String,
    pub(crate) parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Literal(String),
    Variable { name: String, pos: Pos },
}

impl Text {
    pub(crate) fn literal(text: &str) -> Text {
        Text {
            source: text.to_string(),
            parts: vec![Part::Literal(text.to_string())],
        }
    }

    /// `${name}` alone.
    pub(crate) fn variable(name: &str) -> Text {
        Text {
            source: format!("${{{name}}}"),
            parts: vec![Part::Variable {
                name: name.to_string(),
                pos: Pos::default(),
            }],
        }
    }

    /// The text with every variable replaced; `None` names a variable without value (the
    /// checks before a run make that impossible for a flow that passed them).
    pub(crate) fn resolve(&self, values: &BTreeMap<String, String>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable { name, .. } => match values.get(name) {
                    Some(value) => out.push_str(value),
                    None => return Err(name.clone()),
                },
            }
        }
        Ok(out)
    }
}

/// One step, with what every step may carry.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// Where the step's name is written.
    pub(crate) pos: Pos,
    pub(crate) kind: StepKind,
    /// How long an assertion (or a wait on the control plane) may retry; the flow's or the
    /// run's default otherwise.
    pub(crate) timeout: Option<Duration>,
    /// The role an admin step acts as; the runner's own admin when none.
    pub(crate) role: Option<String>,
    /// An admin step expected to be refused with this gRPC status (e.g. `permission_denied`):
    /// it passes only when the call fails so.
    pub(crate) expect_error: Option<tonic::Code>,
}

/// How a user's passcode entry must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Unlocked,
    Refused,
}

#[derive(Clone, Debug)]
pub(crate) enum StepKind {
    // The admin, over the admin API.
    AssignPolicy {
        device: String,
        scope: Scope,
        /// `None` removes the store's policy.
        policy: Option<pb::PasscodePolicy>,
    },
    ResetPasscode {
        device: String,
        scope: Option<Scope>,
        passcode: Option<Text>,
        ttl_seconds: Option<u64>,
        /// The name later steps use for the action (`reset` unless given).
        save_as: String,
    },
    RemoteLock {
        device: String,
        scope: Option<Scope>,
        ttl_seconds: Option<u64>,
        save_as: String,
    },
    /// Shows the action's passcode to the admin; defines `${revealed.<scope>}` and
    /// `${revealed.<device>.<scope>}`.
    RevealPasscode {
        action: String,
    },
    Cancel {
        action: String,
    },
    /// Follows the action until it reaches `state`; a different final state fails the step.
    WaitAction {
        action: String,
        state: String,
    },
    // The user, through the device harness.
    SetPasscode {
        device: String,
        scope: Scope,
        current: Option<Text>,
        passcode: Text,
    },
    EnterPasscode {
        device: String,
        scope: Scope,
        passcode: Text,
        expect: Option<Entry>,
        /// The same entry, this many times (a user trying a wrong passcode again and again).
        times: u32,
    },
    Lock {
        device: String,
        scope: Scope,
    },
    Reboot {
        device: String,
    },
    SetOnline {
        device: String,
        online: bool,
    },
    WriteData {
        device: String,
        scope: Scope,
        key: String,
        value: Text,
    },
    ReadData {
        device: String,
        scope: Scope,
        key: String,
        /// The variable that receives the value.
        save_as: String,
    },
    /// The user does nothing for this long (real time).
    Wait(Duration),
    /// Moves the embedded control plane's and fleet's clocks.
    Advance(Duration),
    // Assertions, retried until they hold or their timeout passes.
    Notification {
        device: String,
        /// `None` with `shown: false`: the shade is empty.
        title: Option<Text>,
        shown: bool,
    },
    Locked {
        device: String,
        scope: Scope,
        locked: bool,
    },
    Token {
        device: String,
        scope: Scope,
        state: TokenWanted,
    },
    Throttled {
        device: String,
        scope: Scope,
        /// When given: the next entry is accepted this long from the device's now (within
        /// [`THROTTLE_SLACK`]).
        retry_in: Option<Duration>,
        throttled: bool,
    },
    ActionEnded {
        action: String,
        state: String,
        error_code: Option<String>,
        /// The admin sees that the user entered the new passcode.
        user_entered: Option<bool>,
    },
    UserData {
        device: String,
        scope: Scope,
        key: String,
        /// The value expected; the last value the flow wrote under that key when not given.
        equals: Option<Text>,
    },
    Audit {
        operation: String,
        /// `ok` or a gRPC status name such as `PERMISSION_DENIED`.
        result: Option<String>,
        /// The principal that made the call: the one the runner made for this role.
        by_role: Option<String>,
        device: Option<String>,
    },
}

/// How far a throttle's retry time may be from the one a flow expects: a device's own time moves
/// on between the refusal and the check when it runs on a real clock.
pub(crate) const THROTTLE_SLACK: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenWanted {
    None,
    Pending,
    Active,
}

impl TokenWanted {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TokenWanted::None => "none",
            TokenWanted::Pending => "pending",
            TokenWanted::Active => "active",
        }
    }
}

impl StepKind {
    /// The step's name as written in a flow file.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            StepKind::AssignPolicy { policy: None, .. } => "remove_policy",
            StepKind::AssignPolicy { .. } => "assign_policy",
            StepKind::ResetPasscode { .. } => "reset_passcode",
            StepKind::RemoteLock { .. } => "remote_lock",
            StepKind::RevealPasscode { .. } => "reveal_passcode",
            StepKind::Cancel { .. } => "cancel",
            StepKind::WaitAction { .. } => "wait_action",
            StepKind::SetPasscode { .. } => "set_passcode",
            StepKind::EnterPasscode { .. } => "enter_passcode",
            StepKind::Lock { .. } => "lock",
            StepKind::Reboot { .. } => "reboot",
            StepKind::SetOnline { online: false, .. } => "go_offline",
            StepKind::SetOnline { online: true, .. } => "go_online",
            StepKind::WriteData { .. } => "write_data",
            StepKind::ReadData { .. } => "read_data",
            StepKind::Wait(_) => "wait",
            StepKind::Advance(_) => "advance",
            StepKind::Notification { shown: true, .. } => "assert_notification",
            StepKind::Notification { shown: false, .. } => "assert_no_notification",
            StepKind::Locked { locked: true, .. } => "assert_locked",
            StepKind::Locked { locked: false, .. } => "assert_unlocked",
            StepKind::Token { .. } => "assert_token",
            StepKind::Throttled {
                throttled: true, ..
            } => "assert_throttled",
            StepKind::Throttled {
                throttled: false, ..
            } => "assert_not_throttled",
            StepKind::ActionEnded { .. } => "assert_action",
            StepKind::UserData { .. } => "assert_user_data",
            StepKind::Audit { .. } => "assert_audit",
        }
    }

    /// The device the step is about, if one.
    pub(crate) fn device(&self) -> Option<&str> {
        match self {
            StepKind::AssignPolicy { device, .. }
            | StepKind::ResetPasscode { device, .. }
            | StepKind::RemoteLock { device, .. }
            | StepKind::SetPasscode { device, .. }
            | StepKind::EnterPasscode { device, .. }
            | StepKind::Lock { device, .. }
            | StepKind::Reboot { device }
            | StepKind::SetOnline { device, .. }
            | StepKind::WriteData { device, .. }
            | StepKind::ReadData { device, .. }
            | StepKind::Notification { device, .. }
            | StepKind::Locked { device, .. }
            | StepKind::Token { device, .. }
            | StepKind::Throttled { device, .. }
            | StepKind::UserData { device, .. } => Some(device),
            StepKind::Audit { device, .. } => device.as_deref(),
            StepKind::RevealPasscode { .. }
            | StepKind::Cancel { .. }
            | StepKind::WaitAction { .. }
            | StepKind::ActionEnded { .. }
            | StepKind::Wait(_)
            | StepKind::Advance(_) => None,
        }
    }

    /// The action the step names, if one.
    pub(crate) fn action(&self) -> Option<&str> {
        match self {
            StepKind::RevealPasscode { action }
            | StepKind::Cancel { action }
            | StepKind::WaitAction { action, .. }
            | StepKind::ActionEnded { action, .. } => Some(action),
            StepKind::ResetPasscode { save_as, .. } | StepKind::RemoteLock { save_as, .. } => {
                Some(save_as)
            }
            _ => None,
        }
    }

    /// Whether it retries until it holds (and so may carry `timeout`).
    pub(crate) fn waits(&self) -> bool {
        matches!(
            self,
            StepKind::WaitAction { .. }
                | StepKind::Notification { .. }
                | StepKind::Locked { .. }
                | StepKind::Token { .. }
                | StepKind::Throttled { .. }
                | StepKind::ActionEnded { .. }
                | StepKind::UserData { .. }
        )
    }
}

impl Flow {
    /// Each role the flow acts as (`as`, and `by` in audit checks), with where it is first named.
    pub(crate) fn roles(&self) -> Vec<(String, Pos)> {
        let mut roles: Vec<(String, Pos)> = Vec::new();
        for step in &self.steps {
            let named = step.role.iter().chain(match &step.kind {
                StepKind::Audit { by_role, .. } => by_role.as_ref(),
                _ => None,
            });
            for role in named {
                if !roles.iter().any(|(r, _)| r == role) {
                    roles.push((role.clone(), step.pos));
                }
            }
        }
        roles
    }
}
