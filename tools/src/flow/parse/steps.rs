//! Reading the steps of a flow: each step's name and fields, checked in order, so that a device,
//! an action or a variable is known only from the step that defines it on.

use super::{
    ACTION_STATES, Context, ERROR_CODE_NAMES, Fields, GRPC_CODES, Reader, STEP_NAMES, Scopes,
    describe, pos_of, suggestion,
};
use crate::flow::model::{Entry, FlowDevice, Pos, Step, StepKind, TokenWanted};
use droidfleet_agent::device::Scope;
use droidfleet_proto::v1 as pb;
use saphyr::{MarkedYaml, YamlData};
use std::time::Duration;

/// The most entries one `enter_passcode` step makes (Gatekeeper's schedule is done by 140).
const MAX_TIMES: u32 = 1_000;
/// The longest real pause a `wait` step makes; longer spans of time are for `advance`.
const MAX_WAIT: Duration = Duration::from_secs(600);

impl Reader {
    pub(super) fn steps(
        &mut self,
        node: &MarkedYaml<'_>,
        devices: &[FlowDevice],
        scopes: &mut Scopes,
        context: &Context,
    ) -> Vec<Step> {
        let YamlData::Sequence(items) = &node.data else {
            self.problem(
                pos_of(node),
                format!("`steps` must be a list, found {}", describe(node)),
            );
            return Vec::new();
        };
        let mut steps = Vec::new();
        for item in items {
            let YamlData::Mapping(map) = &item.data else {
                self.problem(
                    pos_of(item),
                    format!(
                        "a step is `- NAME: ...` (e.g. `- reboot: alice`), found {}",
                        describe(item)
                    ),
                );
                continue;
            };
            if map.len() != 1 {
                self.problem(
                    pos_of(item),
                    format!(
                        "a step names one thing to do, found {} keys; indent a step's fields \
                         under its name",
                        map.len()
                    ),
                );
                continue;
            }
            let Some((key, value)) = map.iter().next() else {
                continue;
            };
            let Some(name) = self.key(key) else { continue };
            let Some(&step_name) = STEP_NAMES.iter().find(|s| **s == name) else {
                self.problem(
                    pos_of(key),
                    format!(
                        "unknown step `{name}`{}; the steps are {}",
                        suggestion(&name, &STEP_NAMES),
                        STEP_NAMES.join(", ")
                    ),
                );
                continue;
            };
            if let Some(step) = self.step(step_name, pos_of(key), value, devices, scopes, context) {
                steps.push(step);
            }
        }
        steps
    }

    /// One step's value: a mapping of its fields, or for some steps a single scalar (the device,
    /// the action or the duration).
    pub(super) fn step(
        &mut self,
        name: &'static str,
        pos: Pos,
        value: &MarkedYaml<'_>,
        devices: &[FlowDevice],
        scopes: &mut Scopes,
        context: &Context,
    ) -> Option<Step> {
        let shorthand = match name {
            "reboot" | "go_offline" | "go_online" | "reset_passcode" | "remote_lock" => {
                Some("device")
            }
            "reveal_passcode" | "cancel" => Some("action"),
            _ => None,
        };
        if matches!(name, "wait" | "advance") {
            let duration = self.duration(value, name)?;
            if name == "wait" && duration > MAX_WAIT {
                self.problem(
                    pos_of(value),
                    format!(
                        "`wait` lets real time pass, at most {}; `advance` moves the clocks",
                        humantime::format_duration(MAX_WAIT)
                    ),
                );
                return None;
            }
            if name == "advance" && !context.embedded {
                self.problem(
                    pos,
                    "`advance` moves the clocks of a control plane and fleet the runner started \
                     itself; against --control-plane it cannot (run without --control-plane, \
                     --harness and --token-file)",
                );
                return None;
            }
            let kind = if name == "wait" {
                StepKind::Wait(duration)
            } else {
                StepKind::Advance(duration)
            };
            return Some(Step {
                pos,
                kind,
                timeout: None,
                role: None,
                expect_error: None,
            });
        }
        // `- reboot: alice` is `- reboot: {device: alice}`.
        let single;
        let fields_node = match (shorthand, &value.data) {
            (Some(_), YamlData::Value(_)) => {
                single = true;
                value
            }
            _ => {
                single = false;
                value
            }
        };
        let allowed = fields_of(name);
        let fields = if single {
            Fields {
                step: name,
                entries: vec![(
                    shorthand.unwrap_or_default().to_string(),
                    pos_of(fields_node),
                    fields_node,
                )],
                allowed,
            }
        } else {
            self.fields(fields_node, name, allowed)?
        };
        let before = self.problems.len();
        let timeout = fields
            .get("timeout")
            .and_then(|n| self.duration(n, "timeout"));
        let role = fields.get("as").and_then(|n| self.string(n, "as"));
        let expect_error = fields
            .get("expect_error")
            .and_then(|n| self.choice(n, "expect_error", &GRPC_CODES.map(|(n, _)| n)))
            .and_then(|n| GRPC_CODES.iter().find(|(c, _)| *c == n).map(|(_, c)| *c));
        let device =
            |r: &mut Reader| r.required(&fields, "device", value, |r, n| r.device_ref(n, devices));
        let kind = match name {
            "assign_policy" | "remove_policy" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| r.scope(n));
                let policy = if name == "assign_policy" {
                    Some(self.policy(&fields))
                } else {
                    None
                };
                StepKind::AssignPolicy {
                    device: device?.0,
                    scope: scope?,
                    policy,
                }
            }
            "reset_passcode" | "remote_lock" => {
                let device = device(self);
                let scope = fields.get("scope").and_then(|n| self.scope(n));
                let ttl_seconds = fields
                    .get("ttl")
                    .and_then(|n| self.duration(n, "ttl"))
                    .map(|d| d.as_secs().max(1));
                let save_as = match fields.get("save_as") {
                    Some(n) => self.name(n, "save_as")?,
                    None => if name == "reset_passcode" {
                        "reset"
                    } else {
                        "lock"
                    }
                    .to_string(),
                };
                let (device, ownership) = device?;
                if expect_error.is_none() {
                    let target = scope.unwrap_or(if ownership.has_work_profile() {
                        Scope::WorkProfile
                    } else {
                        Scope::Device
                    });
                    scopes
                        .actions
                        .insert(save_as.clone(), (device.clone(), Some(target)));
                    scopes.variables.insert(format!("{save_as}.action_id"));
                }
                if name == "reset_passcode" {
                    let passcode = fields
                        .get("passcode")
                        .and_then(|n| self.text(n, "passcode", scopes));
                    StepKind::ResetPasscode {
                        device,
                        scope,
                        passcode,
                        ttl_seconds,
                        save_as,
                    }
                } else {
                    StepKind::RemoteLock {
                        device,
                        scope,
                        ttl_seconds,
                        save_as,
                    }
                }
            }
            "reveal_passcode" | "cancel" => {
                let action =
                    self.required(&fields, "action", value, |r, n| r.action_ref(n, scopes))?;
                if name == "reveal_passcode" {
                    if expect_error.is_none()
                        && let Some((device, Some(scope))) = scopes.actions.get(&action).cloned()
                    {
                        scopes
                            .variables
                            .insert(format!("revealed.{}", scope.as_str()));
                        scopes
                            .variables
                            .insert(format!("revealed.{device}.{}", scope.as_str()));
                    }
                    StepKind::RevealPasscode { action }
                } else {
                    StepKind::Cancel { action }
                }
            }
            "wait_action" | "assert_action" => {
                let action =
                    self.required(&fields, "action", value, |r, n| r.action_ref(n, scopes));
                let state = self.required(&fields, "state", value, |r, n| {
                    r.choice(n, "state", &ACTION_STATES)
                });
                if name == "wait_action" {
                    StepKind::WaitAction {
                        action: action?,
                        state: state?.to_string(),
                    }
                } else {
                    let error_code = fields
                        .get("error_code")
                        .and_then(|n| self.choice(n, "error_code", &ERROR_CODE_NAMES));
                    let user_entered = fields
                        .get("user_entered")
                        .and_then(|n| self.boolean(n, "user_entered"));
                    StepKind::ActionEnded {
                        action: action?,
                        state: state?.to_string(),
                        error_code: error_code.map(str::to_string),
                        user_entered,
                    }
                }
            }
            "set_passcode" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let passcode = self.required(&fields, "passcode", value, |r, n| {
                    r.text(n, "passcode", scopes)
                });
                let current = fields
                    .get("current")
                    .and_then(|n| self.text(n, "current", scopes));
                StepKind::SetPasscode {
                    device: device?.0,
                    scope: scope?,
                    current,
                    passcode: passcode?,
                }
            }
            "enter_passcode" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let passcode = self.required(&fields, "passcode", value, |r, n| {
                    r.text(n, "passcode", scopes)
                });
                let expect = fields
                    .get("expect")
                    .and_then(|n| self.choice(n, "expect", &["unlocked", "refused"]))
                    .map(|e| {
                        if e == "unlocked" {
                            Entry::Unlocked
                        } else {
                            Entry::Refused
                        }
                    });
                let times = match fields.get("times") {
                    Some(n) => match self.unsigned(n, "times")? {
                        t if (1..=MAX_TIMES).contains(&t) => t,
                        _ => {
                            self.problem(
                                pos_of(n),
                                format!("`times` must be from 1 to {MAX_TIMES}"),
                            );
                            return None;
                        }
                    },
                    None => 1,
                };
                StepKind::EnterPasscode {
                    device: device?.0,
                    scope: scope?,
                    passcode: passcode?,
                    expect,
                    times,
                }
            }
            "lock" | "assert_locked" | "assert_unlocked" | "assert_not_throttled" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let (device, scope) = (device?.0, scope?);
                match name {
                    "lock" => StepKind::Lock { device, scope },
                    "assert_not_throttled" => StepKind::Throttled {
                        device,
                        scope,
                        retry_in: None,
                        throttled: false,
                    },
                    _ => StepKind::Locked {
                        device,
                        scope,
                        locked: name == "assert_locked",
                    },
                }
            }
            "reboot" => StepKind::Reboot {
                device: device(self)?.0,
            },
            "go_offline" | "go_online" => StepKind::SetOnline {
                device: device(self)?.0,
                online: name == "go_online",
            },
            "write_data" | "read_data" | "assert_user_data" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let key = self.required(&fields, "key", value, |r, n| r.string(n, "key"));
                let (device, scope, key) = (device?.0, scope?, key?);
                match name {
                    "write_data" => StepKind::WriteData {
                        device,
                        scope,
                        key,
                        value: self
                            .required(&fields, "value", value, |r, n| r.text(n, "value", scopes))?,
                    },
                    "read_data" => {
                        let save_as =
                            self.required(&fields, "save_as", value, |r, n| r.name(n, "save_as"))?;
                        scopes.variables.insert(save_as.clone());
                        StepKind::ReadData {
                            device,
                            scope,
                            key,
                            save_as,
                        }
                    }
                    _ => StepKind::UserData {
                        device,
                        scope,
                        key,
                        equals: fields
                            .get("equals")
                            .and_then(|n| self.text(n, "equals", scopes)),
                    },
                }
            }
            "assert_notification" | "assert_no_notification" => {
                let device = device(self);
                let title = if name == "assert_notification" {
                    self.required(&fields, "title", value, |r, n| r.text(n, "title", scopes))
                        .map(Some)
                } else {
                    Some(
                        fields
                            .get("title")
                            .and_then(|n| self.text(n, "title", scopes)),
                    )
                };
                StepKind::Notification {
                    device: device?.0,
                    title: title?,
                    shown: name == "assert_notification",
                }
            }
            "assert_token" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let state = self.required(&fields, "state", value, |r, n| {
                    r.choice(n, "state", &["none", "pending", "active"])
                });
                StepKind::Token {
                    device: device?.0,
                    scope: scope?,
                    state: match state? {
                        "none" => TokenWanted::None,
                        "pending" => TokenWanted::Pending,
                        _ => TokenWanted::Active,
                    },
                }
            }
            "assert_throttled" => {
                let device = device(self);
                let scope = self.required(&fields, "scope", value, |r, n| {
                    r.device_scope(n, device.as_ref())
                });
                let retry_in = fields
                    .get("retry_in")
                    .and_then(|n| self.duration(n, "retry_in"));
                StepKind::Throttled {
                    device: device?.0,
                    scope: scope?,
                    retry_in,
                    throttled: true,
                }
            }
            "assert_audit" => {
                let operation =
                    self.required(&fields, "operation", value, |r, n| r.string(n, "operation"));
                let result = fields.get("result").and_then(|n| self.string(n, "result"));
                let by_role = fields.get("by").and_then(|n| self.string(n, "by"));
                let device = fields
                    .get("device")
                    .and_then(|n| self.device_ref(n, devices));
                if fields.get("device").is_some() && device.is_none() {
                    return None;
                }
                StepKind::Audit {
                    operation: operation?,
                    result: result.map(|r| {
                        if r.eq_ignore_ascii_case("ok") {
                            "ok".to_string()
                        } else {
                            r.to_ascii_uppercase()
                        }
                    }),
                    by_role,
                    device: device.map(|d| d.0),
                }
            }
            _ => return None,
        };
        if self.problems.len() > before {
            return None;
        }
        Some(Step {
            pos,
            kind,
            timeout,
            role,
            expect_error,
        })
    }

    pub(super) fn policy(&mut self, fields: &Fields<'_, '_>) -> pb::PasscodePolicy {
        let kind = fields
            .get("type")
            .and_then(|n| {
                self.choice(
                    n,
                    "type",
                    &["pin", "numeric_complex", "alphanumeric", "complex"],
                )
            })
            .map(|t| match t {
                "numeric_complex" => pb::PasscodeType::NumericComplex,
                "alphanumeric" => pb::PasscodeType::Alphanumeric,
                "complex" => pb::PasscodeType::Complex,
                _ => pb::PasscodeType::Pin,
            })
            .unwrap_or(pb::PasscodeType::Pin);
        let complexity = fields
            .get("complexity")
            .and_then(|n| self.choice(n, "complexity", &["low", "medium", "high"]))
            .map(|c| match c {
                "low" => pb::PasscodeComplexity::Low,
                "medium" => pb::PasscodeComplexity::Medium,
                _ => pb::PasscodeComplexity::High,
            })
            .unwrap_or(pb::PasscodeComplexity::Unspecified);
        let min_length = fields
            .get("min_length")
            .and_then(|n| self.unsigned(n, "min_length"))
            .unwrap_or(4);
        let wipe_after = fields
            .get("wipe_after")
            .and_then(|n| self.unsigned(n, "wipe_after"))
            .unwrap_or(0);
        pb::PasscodePolicy {
            r#type: kind as i32,
            min_length,
            complexity: complexity as i32,
            max_failed_attempts_before_wipe: wipe_after,
            ..Default::default()
        }
    }
}

/// The fields each step takes.
fn fields_of(step: &str) -> &'static [&'static str] {
    match step {
        "assign_policy" => &[
            "device",
            "scope",
            "type",
            "min_length",
            "complexity",
            "wipe_after",
            "as",
            "expect_error",
        ],
        "remove_policy" => &["device", "scope", "as", "expect_error"],
        "reset_passcode" => &[
            "device",
            "scope",
            "passcode",
            "ttl",
            "save_as",
            "as",
            "expect_error",
        ],
        "remote_lock" => &["device", "scope", "ttl", "save_as", "as", "expect_error"],
        "reveal_passcode" | "cancel" => &["action", "as", "expect_error"],
        "wait_action" => &["action", "state", "timeout"],
        "set_passcode" => &["device", "scope", "passcode", "current"],
        "enter_passcode" => &["device", "scope", "passcode", "expect", "times"],
        "lock" => &["device", "scope"],
        "reboot" | "go_offline" | "go_online" => &["device"],
        "write_data" => &["device", "scope", "key", "value"],
        "read_data" => &["device", "scope", "key", "save_as"],
        "assert_notification" | "assert_no_notification" => &["device", "title", "timeout"],
        "assert_locked" | "assert_unlocked" | "assert_not_throttled" => {
            &["device", "scope", "timeout"]
        }
        "assert_token" => &["device", "scope", "state", "timeout"],
        "assert_throttled" => &["device", "scope", "retry_in", "timeout"],
        "assert_action" => &["action", "state", "error_code", "user_entered", "timeout"],
        "assert_user_data" => &["device", "scope", "key", "equals", "timeout"],
        "assert_audit" => &["operation", "result", "by", "device"],
        _ => &[],
    }
}
