//! Running one flow: each step in order against its [`Stage`], the admin's steps through the admin
//! API (as the role a step names), the user's through the device harness, time steps on the
//! injected clocks, and assertions (`check.rs`) retried until they hold. The first step that
//! fails ends the flow; every step leaves a [`StepReport`] with the screens and the admin's view
//! right after it.

use super::check;
use super::model::{Entry, Flow, Step, StepKind, Text};
use super::parse::grpc_code_name;
use super::report::console::Console;
use super::report::{Failure, FlowReport, StepReport, StepStatus};
use super::stage::{Stage, Target};
use crate::admin::format::{error_name, state_name, time};
use crate::admin::{AdminError, Client};
use droidfleet_agent::device::Scope;
use droidfleet_proto::v1 as pb;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// How a step that did not go as the flow says ends: what was expected, what was seen.
pub(crate) type StepResult = Result<String, Failure>;

/// Runs `flow` against `target` and reports every step, printing each as it ends.
pub(crate) async fn run_flow(
    flow: &Flow,
    target: &Target,
    default_timeout: Duration,
    console: &Console,
) -> FlowReport {
    let started = Instant::now();
    console.flow_start(flow);
    let mut report = FlowReport {
        path: flow.path.clone(),
        name: flow.name.clone(),
        tags: flow.tags.clone(),
        steps: Vec::new(),
        setup_error: None,
        duration: Duration::ZERO,
    };
    let stage = match Stage::prepare(target, flow).await {
        Ok(stage) => stage,
        Err(error) => {
            report.setup_error = Some(crate::causes::with_causes(&error));
            report.steps = flow
                .steps
                .iter()
                .enumerate()
                .map(|(i, step)| skipped(i, step))
                .collect();
            report.duration = started.elapsed();
            console.flow_end(&report);
            return report;
        }
    };
    let mut run = Run::new(flow, stage, default_timeout);
    let mut failed = false;
    for (i, step) in flow.steps.iter().enumerate() {
        if failed {
            report.steps.push(skipped(i, step));
            continue;
        }
        let step_started = Instant::now();
        let outcome = run.step(step).await;
        let duration = step_started.elapsed();
        let (status, detail, failure) = match outcome {
            Ok(detail) => (StepStatus::Passed, detail, None),
            Err(failure) => {
                failed = true;
                (StepStatus::Failed, String::new(), Some(failure))
            }
        };
        let (screens, action) = run.snapshot(step).await;
        let step_report = StepReport {
            number: i + 1,
            pos: step.pos,
            label: label(step),
            status,
            detail,
            failure,
            duration,
            screens,
            action,
            now_ms: run.stage.now_ms(),
        };
        console.step(flow, &step_report);
        report.steps.push(step_report);
    }
    run.into_stage().finish().await;
    report.duration = started.elapsed();
    console.flow_end(&report);
    report
}

fn skipped(i: usize, step: &Step) -> StepReport {
    StepReport {
        number: i + 1,
        pos: step.pos,
        label: label(step),
        status: StepStatus::Skipped,
        detail: String::new(),
        failure: None,
        duration: Duration::ZERO,
        screens: Vec::new(),
        action: None,
        now_ms: 0,
    }
}

/// A flow in progress.
pub(super) struct Run<'a> {
    flow: &'a Flow,
    stage: Stage,
    /// Every variable's value: `env`, then what steps defined. Passcodes among them are never
    /// printed.
    values: BTreeMap<String, String>,
    /// Each saved action (`save_as`), as last seen.
    actions: BTreeMap<String, pb::Action>,
    /// What the flow wrote as user data, for `assert_user_data` without `equals`.
    written: BTreeMap<(String, Scope, String), String>,
    /// Each device's latest saved action, shown as the admin's view for its steps.
    latest_action: BTreeMap<String, String>,
    default_timeout: Duration,
    /// The status of the last admin call refused against the step's expectation: a recording
    /// keeps it as the step's `expect_error`.
    pub(super) refused: Option<tonic::Code>,
    /// How the last passcode entry ended: a recording keeps it as the step's `expect`.
    pub(super) entered: Option<Entry>,
}

impl<'a> Run<'a> {
    pub(super) fn new(flow: &'a Flow, stage: Stage, default_timeout: Duration) -> Run<'a> {
        Run {
            flow,
            stage,
            values: flow.env.clone(),
            actions: BTreeMap::new(),
            written: BTreeMap::new(),
            latest_action: BTreeMap::new(),
            default_timeout,
            refused: None,
            entered: None,
        }
    }

    pub(super) fn stage(&mut self) -> &mut Stage {
        &mut self.stage
    }

    pub(super) fn into_stage(self) -> Stage {
        self.stage
    }

    /// A variable's value now.
    pub(super) fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A saved action's id.
    pub(super) fn saved_action_id(&self, name: &str) -> Option<&str> {
        self.actions.get(name).map(|a| a.action_id.as_str())
    }

    fn resolve(&self, text: &Text) -> Result<String, Failure> {
        text.resolve(&self.values).map_err(|name| Failure {
            expected: format!("a value for ${{{name}}}"),
            observed: "none (the step that defines it did not run as expected)".into(),
        })
    }

    fn device_id(&self, device: &str) -> String {
        self.stage
            .device_ids
            .get(device)
            .cloned()
            .unwrap_or_default()
    }

    fn action_id(&self, name: &str) -> String {
        self.actions
            .get(name)
            .map(|a| a.action_id.clone())
            .unwrap_or_default()
    }

    fn actor(&self, step: &Step) -> &Client {
        step.role
            .as_ref()
            .and_then(|role| self.stage.roles.get(role))
            .map(|actor| &actor.client)
            .unwrap_or(&self.stage.admin)
    }

    /// An admin call, judged by the step's `expect_error`: with one, the step passes only when
    /// the call is refused with that status; without, only when it succeeds.
    /// A call refused without `expect_error` leaves its status in [`Run::refused`].
    fn admin_outcome<T>(
        &mut self,
        step: &Step,
        outcome: Result<T, AdminError>,
    ) -> Result<Option<T>, Failure> {
        match (step.expect_error, outcome) {
            (None, Ok(value)) => Ok(Some(value)),
            (None, Err(error)) => {
                if let AdminError::Rpc { status, .. } = &error {
                    self.refused = Some(status.code());
                }
                Err(Failure {
                    expected: "the control plane accepts the call".into(),
                    observed: error.to_string(),
                })
            }
            (Some(code), Err(AdminError::Rpc { status, .. })) if status.code() == code => Ok(None),
            (Some(code), Err(error)) => Err(Failure {
                expected: format!("refused with {}", grpc_code_name(code)),
                observed: error.to_string(),
            }),
            (Some(code), Ok(_)) => Err(Failure {
                expected: format!("refused with {}", grpc_code_name(code)),
                observed: "the control plane accepted the call".into(),
            }),
        }
    }

    fn refused_detail(step: &Step) -> String {
        format!(
            "refused with {}, as expected",
            step.expect_error.map(grpc_code_name).unwrap_or("an error")
        )
    }

    fn timeout(&self, step: &Step) -> Duration {
        step.timeout.unwrap_or(self.default_timeout)
    }

    pub(super) async fn step(&mut self, step: &Step) -> StepResult {
        self.refused = None;
        self.entered = None;
        match &step.kind {
            StepKind::AssignPolicy {
                device,
                scope,
                policy,
            } => {
                let outcome = self
                    .actor(step)
                    .assign_passcode_policy(pb::AssignPasscodePolicyRequest {
                        device_id: self.device_id(device),
                        scope: check::scope_pb(*scope) as i32,
                        policy: *policy,
                    })
                    .await;
                Ok(match self.admin_outcome(step, outcome)? {
                    None => Self::refused_detail(step),
                    Some(_) => match policy {
                        Some(policy) => format!(
                            "{} policy assigned: {}",
                            scope.as_str(),
                            check::policy_words(policy)
                        ),
                        None => format!("{} policy removed", scope.as_str()),
                    },
                })
            }
            StepKind::ResetPasscode {
                device,
                scope,
                passcode,
                ttl_seconds,
                save_as,
            } => {
                let new_passcode = match passcode {
                    Some(text) => self.resolve(text)?,
                    None => String::new(),
                };
                let outcome = self
                    .actor(step)
                    .reset_passcode(pb::ResetPasscodeRequest {
                        device_id: self.device_id(device),
                        scope: scope.map(|s| check::scope_pb(s) as i32).unwrap_or(0),
                        new_passcode,
                        ttl_seconds: ttl_seconds.unwrap_or(0),
                    })
                    .await;
                self.saved_action(step, device, save_as, outcome)
            }
            StepKind::RemoteLock {
                device,
                scope,
                ttl_seconds,
                save_as,
            } => {
                let outcome = self
                    .actor(step)
                    .remote_lock(pb::RemoteLockRequest {
                        device_id: self.device_id(device),
                        scope: scope.map(|s| check::scope_pb(s) as i32).unwrap_or(0),
                        ttl_seconds: ttl_seconds.unwrap_or(0),
                    })
                    .await;
                self.saved_action(step, device, save_as, outcome)
            }
            StepKind::RevealPasscode { action } => {
                let outcome = self
                    .actor(step)
                    .reveal_passcode(&self.action_id(action))
                    .await;
                let Some(revealed) = self.admin_outcome(step, outcome)? else {
                    return Ok(Self::refused_detail(step));
                };
                let (device, scope) = self.action_target(action);
                let scope_name = scope.as_str();
                let length = revealed.passcode.chars().count();
                self.values
                    .insert(format!("revealed.{scope_name}"), revealed.passcode.clone());
                self.values
                    .insert(format!("revealed.{device}.{scope_name}"), revealed.passcode);
                Ok(format!(
                    "the admin is shown the new {scope_name} passcode ({length} characters, \
                     visible until {}); saved as ${{revealed.{scope_name}}}",
                    time(revealed.visible_until_ms)
                ))
            }
            StepKind::Cancel { action } => {
                let outcome = self
                    .actor(step)
                    .cancel_action(&self.action_id(action))
                    .await;
                match self.admin_outcome(step, outcome)? {
                    None => Ok(Self::refused_detail(step)),
                    Some(canceled) => {
                        let words = format!("action {}", state_name(canceled.state));
                        self.actions.insert(action.clone(), canceled);
                        Ok(words)
                    }
                }
            }
            StepKind::WaitAction { action, state } => {
                let expected = format!("the action reaches {state}");
                let wanted = state.clone();
                self.follow_action(action, false, self.timeout(step), expected, move |a| {
                    state_name(a.state) == wanted
                })
                .await
            }
            StepKind::ActionEnded {
                action,
                state,
                error_code,
                user_entered,
            } => {
                let mut expected = format!("the action ends {state}");
                if let Some(code) = error_code {
                    expected.push_str(&format!(" with error code {code}"));
                }
                match user_entered {
                    Some(true) => expected.push_str(", and the user has entered the new passcode"),
                    Some(false) => expected.push_str(", and the user has not entered it"),
                    None => {}
                }
                let (state, error_code, user_entered) =
                    (state.clone(), error_code.clone(), *user_entered);
                self.follow_action(
                    action,
                    user_entered == Some(true),
                    self.timeout(step),
                    expected,
                    move |a| {
                        state_name(a.state) == state
                            && error_code
                                .as_ref()
                                .is_none_or(|code| error_name(a.error_code) == *code)
                            && user_entered
                                .is_none_or(|entered| (a.user_entered_at_ms != 0) == entered)
                    },
                )
                .await
            }
            StepKind::SetPasscode {
                device,
                scope,
                current,
                passcode,
            } => {
                let current_passcode = match current {
                    Some(text) => self.resolve(text)?,
                    None => String::new(),
                };
                let new_passcode = self.resolve(passcode)?;
                self.stage
                    .harness
                    .set_passcode(pb::SetPasscodeRequest {
                        name: device.clone(),
                        scope: check::scope_pb(*scope) as i32,
                        current_passcode,
                        new_passcode,
                    })
                    .await
                    .map_err(|status| Failure {
                        expected: format!("the {} passcode is set", scope.as_str()),
                        observed: status_text(&status),
                    })?;
                Ok(format!("the user set the {} passcode", scope.as_str()))
            }
            StepKind::EnterPasscode {
                device,
                scope,
                passcode,
                expect,
                times,
            } => {
                let passcode = self.resolve(passcode)?;
                let mut last = None;
                for attempt in 1..=*times {
                    let answer = self
                        .stage
                        .harness
                        .enter_passcode(pb::EnterPasscodeRequest {
                            name: device.clone(),
                            scope: check::scope_pb(*scope) as i32,
                            passcode: passcode.clone(),
                        })
                        .await
                        .map_err(|status| Failure {
                            expected: "the lock screen takes the entry".into(),
                            observed: status_text(&status),
                        })?
                        .into_inner();
                    let observed = if answer.unlocked {
                        "unlocked".to_string()
                    } else {
                        format!("refused: {}", answer.message)
                    };
                    self.entered = Some(if answer.unlocked {
                        Entry::Unlocked
                    } else {
                        Entry::Refused
                    });
                    let holds = match expect {
                        Some(Entry::Unlocked) => answer.unlocked,
                        Some(Entry::Refused) => !answer.unlocked,
                        None => true,
                    };
                    if !holds {
                        return Err(Failure {
                            expected: match expect {
                                Some(Entry::Unlocked) => "the passcode unlocks the store".into(),
                                _ => "the passcode is refused".into(),
                            },
                            observed: if *times > 1 {
                                format!("entry {attempt} of {times}: {observed}")
                            } else {
                                observed
                            },
                        });
                    }
                    last = Some(observed);
                }
                let last = last.unwrap_or_default();
                Ok(if *times > 1 {
                    format!("{} entered {times} times; the last: {last}", scope.as_str())
                } else {
                    format!("{} entry: {last}", scope.as_str())
                })
            }
            StepKind::Lock { device, scope } => {
                self.stage
                    .harness
                    .lock(pb::StoreRef {
                        name: device.clone(),
                        scope: check::scope_pb(*scope) as i32,
                    })
                    .await
                    .map_err(|status| Failure {
                        expected: "the store locks".into(),
                        observed: status_text(&status),
                    })?;
                Ok(format!("the user locked the {}", scope.as_str()))
            }
            StepKind::Reboot { device } => {
                self.stage
                    .harness
                    .reboot(pb::DeviceRef {
                        name: device.clone(),
                    })
                    .await
                    .map_err(|status| Failure {
                        expected: "the device reboots".into(),
                        observed: status_text(&status),
                    })?;
                Ok("the device rebooted".into())
            }
            StepKind::SetOnline { device, online } => {
                self.stage
                    .harness
                    .set_online(pb::SetOnlineRequest {
                        name: device.clone(),
                        online: *online,
                    })
                    .await
                    .map_err(|status| Failure {
                        expected: format!(
                            "the device goes {}",
                            if *online { "online" } else { "offline" }
                        ),
                        observed: status_text(&status),
                    })?;
                Ok(if *online {
                    "the device is back on the network".into()
                } else {
                    "the device is off the network (airplane mode)".into()
                })
            }
            StepKind::WriteData {
                device,
                scope,
                key,
                value,
            } => {
                let value = self.resolve(value)?;
                self.stage
                    .harness
                    .write_user_data(pb::WriteUserDataRequest {
                        name: device.clone(),
                        scope: check::scope_pb(*scope) as i32,
                        key: key.clone(),
                        value: value.clone().into_bytes(),
                    })
                    .await
                    .map_err(|status| Failure {
                        expected: format!("{key:?} is written to the {}", scope.as_str()),
                        observed: status_text(&status),
                    })?;
                let words = format!(
                    "{} bytes written to {key:?} in the {}",
                    value.len(),
                    scope.as_str()
                );
                self.written
                    .insert((device.clone(), *scope, key.clone()), value);
                Ok(words)
            }
            StepKind::ReadData {
                device,
                scope,
                key,
                save_as,
            } => {
                let value = self
                    .stage
                    .harness
                    .read_user_data(pb::ReadUserDataRequest {
                        name: device.clone(),
                        scope: check::scope_pb(*scope) as i32,
                        key: key.clone(),
                    })
                    .await
                    .map_err(|status| Failure {
                        expected: format!("{key:?} can be read from the {}", scope.as_str()),
                        observed: status_text(&status),
                    })?
                    .into_inner()
                    .value;
                let words = match &value {
                    Some(bytes) => format!("{} bytes read from {key:?}", bytes.len()),
                    None => format!("{key:?} has no value"),
                };
                self.values.insert(
                    save_as.clone(),
                    value
                        .map(|v| String::from_utf8_lossy(&v).into_owned())
                        .unwrap_or_default(),
                );
                Ok(format!("{words}; saved as ${{{save_as}}}"))
            }
            StepKind::Wait(duration) => {
                tokio::time::sleep(*duration).await;
                Ok(format!(
                    "the user waited {}",
                    humantime::format_duration(*duration)
                ))
            }
            StepKind::Advance(duration) => {
                let Some(clock) = &self.stage.clock else {
                    return Err(Failure {
                        expected: "clocks the runner owns".into(),
                        observed: "a control plane the runner did not start".into(),
                    });
                };
                clock.advance(duration.as_millis() as u64);
                Ok(format!(
                    "the control plane's and the devices' clocks moved {} to {}",
                    humantime::format_duration(*duration),
                    time(self.stage.now_ms())
                ))
            }
            StepKind::Notification { .. }
            | StepKind::Locked { .. }
            | StepKind::Token { .. }
            | StepKind::Throttled { .. } => {
                let device = step.kind.device().unwrap_or_default().to_string();
                let (expected, judge) = check::screen_check(&step.kind, &self.values)?;
                let timeout = self.timeout(step);
                check::until_screen(&mut self.stage, &device, timeout, &expected, judge).await
            }
            StepKind::UserData {
                device,
                scope,
                key,
                equals,
            } => {
                let wanted = match equals {
                    Some(text) => self.resolve(text)?,
                    None => self
                        .written
                        .get(&(device.clone(), *scope, key.clone()))
                        .cloned()
                        .ok_or_else(|| Failure {
                            expected: format!("a value the flow wrote to {key:?} (or `equals`)"),
                            observed: "no write_data step wrote it".into(),
                        })?,
                };
                let timeout = self.timeout(step);
                check::until_user_data(&mut self.stage, device, *scope, key, &wanted, timeout).await
            }
            StepKind::Audit {
                operation,
                result,
                by_role,
                device,
            } => {
                let principal = by_role
                    .as_ref()
                    .and_then(|role| self.stage.roles.get(role))
                    .map(|actor| actor.principal.clone())
                    .unwrap_or_default();
                let device_id = device
                    .as_ref()
                    .map(|d| self.device_id(d))
                    .unwrap_or_default();
                check::audit(
                    &self.stage.admin,
                    operation,
                    result.as_deref(),
                    by_role.as_deref(),
                    &principal,
                    &device_id,
                )
                .await
            }
        }
    }

    /// Saves the action a reset or a remote lock created (or reports the refusal).
    fn saved_action(
        &mut self,
        step: &Step,
        device: &str,
        save_as: &str,
        outcome: Result<pb::Action, AdminError>,
    ) -> StepResult {
        let Some(action) = self.admin_outcome(step, outcome)? else {
            return Ok(Self::refused_detail(step));
        };
        let words = format!(
            "action {} {}{}",
            action.action_id,
            state_name(action.state),
            if action.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", action.reason)
            }
        );
        self.values
            .insert(format!("{save_as}.action_id"), action.action_id.clone());
        self.actions.insert(save_as.to_string(), action);
        self.latest_action
            .insert(device.to_string(), save_as.to_string());
        Ok(words)
    }

    /// The device name and store of a saved action.
    pub(super) fn action_target(&self, name: &str) -> (String, Scope) {
        let action = self.actions.get(name);
        let device = action
            .and_then(|a| {
                self.stage
                    .device_ids
                    .iter()
                    .find(|(_, id)| **id == a.device_id)
                    .map(|(name, _)| name.clone())
            })
            .unwrap_or_default();
        let scope = action
            .and_then(|a| check::scope_from_pb(a.scope))
            .unwrap_or(Scope::Device);
        (device, scope)
    }

    /// Follows a saved action with WatchAction until `reached` holds, its stream ends (a final
    /// state, or the user's entry) without it, or `timeout` passes.
    async fn follow_action(
        &mut self,
        name: &str,
        until_user_entered: bool,
        timeout: Duration,
        expected: String,
        reached: impl Fn(&pb::Action) -> bool,
    ) -> StepResult {
        let action_id = self.action_id(name);
        let mut last: Option<pb::Action> = None;
        let wait = self
            .stage
            .admin
            .wait_action(&action_id, until_user_entered, |action| {
                last = Some(action.clone());
                reached(action)
            });
        let outcome = tokio::time::timeout(timeout, wait).await;
        let observed = |last: &Option<pb::Action>| {
            last.as_ref()
                .map(check::action_words)
                .unwrap_or_else(|| "no state yet".into())
        };
        match outcome {
            Ok(Ok(action)) => {
                let words = check::action_words(&action);
                self.actions.insert(name.to_string(), action);
                Ok(words)
            }
            Ok(Err(AdminError::StreamEnded { .. })) => {
                let observed = observed(&last);
                if let Some(action) = last {
                    self.actions.insert(name.to_string(), action);
                }
                Err(Failure { expected, observed })
            }
            Ok(Err(error)) => Err(Failure {
                expected,
                observed: error.to_string(),
            }),
            Err(_) => Err(Failure {
                expected,
                observed: format!(
                    "after {}: {}",
                    humantime::format_duration(timeout),
                    observed(&last)
                ),
            }),
        }
    }

    /// The screens and the admin's view of the action right after a step, for the report.
    async fn snapshot(&mut self, step: &Step) -> (Vec<pb::Screen>, Option<pb::Action>) {
        let devices: Vec<String> = match step.kind.device() {
            Some(device) => vec![device.to_string()],
            None => match step.kind.action() {
                Some(action) if self.actions.contains_key(action) => {
                    vec![self.action_target(action).0]
                }
                _ => self.flow.devices.iter().map(|d| d.name.clone()).collect(),
            },
        };
        let mut screens = Vec::new();
        for device in &devices {
            if let Ok(screen) = self
                .stage
                .harness
                .get_screen(pb::DeviceRef {
                    name: device.clone(),
                })
                .await
            {
                screens.push(screen.into_inner());
            }
        }
        let action_name = step.kind.action().map(str::to_string).or_else(|| {
            step.kind
                .device()
                .and_then(|d| self.latest_action.get(d).cloned())
        });
        let mut action = None;
        if let Some(name) = action_name
            && let Some(saved) = self.actions.get(&name)
        {
            action = self.stage.admin.action(&saved.action_id).await.ok();
        }
        (screens, action)
    }
}

fn status_text(status: &tonic::Status) -> String {
    format!("{}: {}", grpc_code_name(status.code()), status.message())
}

/// The step as one short line, from the flow file's own text.
pub(crate) fn label(step: &Step) -> String {
    let kind = &step.kind;
    let mut words = vec![kind.name().to_string()];
    let quoted = |text: &Text| format!("{:?}", text.source);
    match kind {
        StepKind::AssignPolicy { device, scope, .. }
        | StepKind::Lock { device, scope }
        | StepKind::Locked { device, scope, .. }
        | StepKind::Throttled { device, scope, .. } => {
            words.extend([device.clone(), scope.as_str().to_string()]);
            if let StepKind::Throttled {
                retry_in: Some(retry_in),
                ..
            } = kind
            {
                words.push(format!(
                    "retry in {}",
                    humantime::format_duration(*retry_in)
                ));
            }
        }
        StepKind::ResetPasscode {
            device,
            scope,
            passcode,
            ..
        } => {
            words.push(device.clone());
            words.extend(scope.map(|s| s.as_str().to_string()));
            words.extend(passcode.as_ref().map(|p| format!("to {}", quoted(p))));
        }
        StepKind::RemoteLock { device, scope, .. } => {
            words.push(device.clone());
            words.extend(scope.map(|s| s.as_str().to_string()));
        }
        StepKind::RevealPasscode { action } | StepKind::Cancel { action } => {
            words.push(action.clone());
        }
        StepKind::WaitAction { action, state } => {
            words.extend([action.clone(), state.clone()]);
        }
        StepKind::ActionEnded {
            action,
            state,
            error_code,
            user_entered,
        } => {
            words.extend([action.clone(), state.clone()]);
            words.extend(error_code.clone());
            match user_entered {
                Some(true) => words.push("user entered".into()),
                Some(false) => words.push("user not entered".into()),
                None => {}
            }
        }
        StepKind::SetPasscode {
            device,
            scope,
            passcode,
            ..
        } => {
            words.extend([device.clone(), scope.as_str().to_string(), quoted(passcode)]);
        }
        StepKind::EnterPasscode {
            device,
            scope,
            passcode,
            expect,
            times,
        } => {
            words.extend([device.clone(), scope.as_str().to_string(), quoted(passcode)]);
            if *times > 1 {
                words.push(format!("x{times}"));
            }
            match expect {
                Some(Entry::Unlocked) => words.push("-> unlocked".into()),
                Some(Entry::Refused) => words.push("-> refused".into()),
                None => {}
            }
        }
        StepKind::Reboot { device } | StepKind::SetOnline { device, .. } => {
            words.push(device.clone());
        }
        StepKind::WriteData {
            device, scope, key, ..
        }
        | StepKind::ReadData {
            device, scope, key, ..
        }
        | StepKind::UserData {
            device, scope, key, ..
        } => {
            words.extend([device.clone(), scope.as_str().to_string(), key.clone()]);
        }
        StepKind::Wait(duration) | StepKind::Advance(duration) => {
            words.push(humantime::format_duration(*duration).to_string());
        }
        StepKind::Notification { device, title, .. } => {
            words.push(device.clone());
            words.extend(title.as_ref().map(quoted));
        }
        StepKind::Token {
            device,
            scope,
            state,
        } => {
            words.extend([
                device.clone(),
                scope.as_str().to_string(),
                state.name().to_string(),
            ]);
        }
        StepKind::Audit {
            operation,
            result,
            by_role,
            ..
        } => {
            words.push(operation.clone());
            words.extend(result.clone());
            words.extend(by_role.as_ref().map(|r| format!("by {r}")));
        }
    }
    if let Some(role) = &step.role {
        words.push(format!("as {role}"));
    }
    if let Some(code) = step.expect_error {
        words.push(format!("expecting {}", grpc_code_name(code)));
    }
    words.join(" ")
}
