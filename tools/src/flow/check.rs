//! Assertions: each one judges what the device shows (its screen, from the harness's WatchScreens
//! stream) or what the admin sees (an action, the audit log), and is judged again at every
//! change until it holds or its timeout passes. A failure says what was expected and what was
//! last observed, in words a person reads on a phone or in the admin console.

use super::model::{StepKind, THROTTLE_SLACK, Text, TokenWanted};
use super::report::Failure;
use super::run::StepResult;
use super::stage::Stage;
use crate::admin::Client;
use crate::admin::format::{error_name, state_name, time};
use droidfleet_agent::device::Scope;
use droidfleet_proto::v1 as pb;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) fn scope_pb(scope: Scope) -> pb::CredentialScope {
    match scope {
        Scope::Device => pb::CredentialScope::Device,
        Scope::WorkProfile => pb::CredentialScope::WorkProfile,
    }
}

pub(crate) fn scope_from_pb(value: i32) -> Option<Scope> {
    match pb::CredentialScope::try_from(value) {
        Ok(pb::CredentialScope::Device) => Some(Scope::Device),
        Ok(pb::CredentialScope::WorkProfile) => Some(Scope::WorkProfile),
        _ => None,
    }
}

pub(crate) fn policy_words(policy: &pb::PasscodePolicy) -> String {
    let kind = match pb::PasscodeType::try_from(policy.r#type) {
        Ok(pb::PasscodeType::NumericComplex) => "numeric complex PIN",
        Ok(pb::PasscodeType::Alphanumeric) => "letters and digits",
        Ok(pb::PasscodeType::Complex) => "complex password",
        _ => "PIN",
    };
    let mut words = format!("{kind}, at least {} characters", policy.min_length.max(4));
    if policy.max_failed_attempts_before_wipe > 0 {
        words.push_str(&format!(
            ", wiped after {} failed entries",
            policy.max_failed_attempts_before_wipe
        ));
    }
    words
}

/// An action as the admin console shows it in one line.
pub(crate) fn action_words(action: &pb::Action) -> String {
    let mut words = state_name(action.state).to_string();
    if action.error_code != 0 {
        words.push_str(&format!(
            " with error code {}",
            error_name(action.error_code)
        ));
    }
    if !action.reason.is_empty() {
        words.push_str(&format!(" ({})", action.reason));
    }
    if action.user_entered_at_ms != 0 {
        words.push_str(&format!(
            "; the user entered the new passcode at {}",
            time(action.user_entered_at_ms)
        ));
    }
    words
}

pub(crate) fn token_name(value: i32) -> &'static str {
    match pb::TokenState::try_from(value) {
        Ok(pb::TokenState::Pending) => "pending",
        Ok(pb::TokenState::Active) => "active",
        _ => "none",
    }
}

fn store(screen: &pb::Screen, scope: Scope) -> Option<&pb::StoreStatus> {
    let wanted = scope_pb(scope) as i32;
    screen.stores.iter().find(|s| s.scope == wanted)
}

/// The notification shade in words.
pub(crate) fn shade_words(screen: &pb::Screen) -> String {
    if screen.notifications.is_empty() {
        return "no notification (the shade is empty)".into();
    }
    let titles: Vec<String> = screen
        .notifications
        .iter()
        .map(|n| format!("{:?}", n.title))
        .collect();
    format!("notifications: {}", titles.join(", "))
}

/// How a screen check judges one screen, given the devices' time now: `Ok` with what it saw
/// when the check holds, `Err` with what it saw when not.
pub(crate) type Judge = Box<dyn Fn(&pb::Screen, u64) -> Result<String, String> + Send>;

/// What a screen assertion expects, in words, and how it judges a screen.
pub(crate) fn screen_check(
    kind: &StepKind,
    values: &BTreeMap<String, String>,
) -> Result<(String, Judge), Failure> {
    let resolve = |text: &Text| {
        text.resolve(values).map_err(|name| Failure {
            expected: format!("a value for ${{{name}}}"),
            observed: "none (the step that defines it did not run as expected)".into(),
        })
    };
    Ok(match kind {
        StepKind::Notification { title, shown, .. } => {
            let title = title.as_ref().map(resolve).transpose()?;
            let shown = *shown;
            let expected = match (&title, shown) {
                (Some(title), true) => format!("a notification titled {title:?}"),
                (Some(title), false) => format!("no notification titled {title:?}"),
                (None, _) => "no notification at all".to_string(),
            };
            let judge: Judge = Box::new(move |screen, _| {
                let present = match &title {
                    Some(title) => screen.notifications.iter().any(|n| n.title == *title),
                    None => !screen.notifications.is_empty(),
                };
                let words = shade_words(screen);
                if present == shown {
                    Ok(words)
                } else {
                    Err(words)
                }
            });
            (expected, judge)
        }
        StepKind::Locked { scope, locked, .. } => {
            let (scope, locked) = (*scope, *locked);
            let expected = format!(
                "the {} is {}",
                scope_words(scope),
                if locked { "locked" } else { "unlocked" }
            );
            let judge: Judge = Box::new(move |screen, now| {
                let Some(status) = store(screen, scope) else {
                    return Err(format!("the device has no {}", scope_words(scope)));
                };
                let words = store_words(status, now);
                if status.locked == locked {
                    Ok(words)
                } else {
                    Err(words)
                }
            });
            (expected, judge)
        }
        StepKind::Token { scope, state, .. } => {
            let (scope, state) = (*scope, *state);
            let expected = format!("the {} token is {}", scope_words(scope), state.name());
            let judge: Judge = Box::new(move |screen, _| {
                let Some(status) = store(screen, scope) else {
                    return Err(format!("the device has no {}", scope_words(scope)));
                };
                let seen = token_name(status.token_state);
                let words = format!("the {} token is {seen}", scope_words(scope));
                let holds = match state {
                    TokenWanted::None => seen == "none",
                    TokenWanted::Pending => seen == "pending",
                    TokenWanted::Active => seen == "active",
                };
                if holds { Ok(words) } else { Err(words) }
            });
            (expected, judge)
        }
        StepKind::Throttled {
            scope,
            retry_in,
            throttled,
            ..
        } => {
            let (scope, retry_in, throttled) = (*scope, *retry_in, *throttled);
            let expected = match (throttled, retry_in) {
                (true, Some(retry_in)) => format!(
                    "the {} refuses entries for {} more (within {})",
                    scope_words(scope),
                    humantime::format_duration(retry_in),
                    humantime::format_duration(THROTTLE_SLACK)
                ),
                (true, None) => format!("the {} refuses entries for now", scope_words(scope)),
                (false, _) => format!("the {} takes entries", scope_words(scope)),
            };
            let judge: Judge = Box::new(move |screen, now| {
                let Some(status) = store(screen, scope) else {
                    return Err(format!("the device has no {}", scope_words(scope)));
                };
                let words = throttle_words(status, now);
                let remaining = status.throttled_until_ms.saturating_sub(now);
                let holds = match (throttled, retry_in) {
                    (false, _) => remaining == 0,
                    (true, None) => remaining > 0,
                    (true, Some(retry_in)) => {
                        let wanted = retry_in.as_millis() as u64;
                        let slack = THROTTLE_SLACK.as_millis() as u64;
                        remaining > 0 && remaining <= wanted && remaining + slack >= wanted
                    }
                };
                if holds { Ok(words) } else { Err(words) }
            });
            (expected, judge)
        }
        _ => unreachable!("screen_check is only called for screen assertions"),
    })
}

fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Device => "device lock screen",
        Scope::WorkProfile => "work profile",
    }
}

pub(crate) fn store_words(status: &pb::StoreStatus, now: u64) -> String {
    let mut words = vec![if status.locked { "locked" } else { "unlocked" }.to_string()];
    if status.wiped {
        words.push("wiped".into());
    }
    if status.failed_attempts > 0 {
        words.push(format!("{} failed attempts", status.failed_attempts));
    }
    if status.throttled_until_ms > now {
        words.push(throttle_words(status, now));
    }
    words.join(", ")
}

fn throttle_words(status: &pb::StoreStatus, now: u64) -> String {
    if status.throttled_until_ms > now {
        let remaining = Duration::from_millis(status.throttled_until_ms - now);
        format!(
            "throttled: the next entry is accepted in {} (at {}), after {} failed attempts",
            humantime::format_duration(Duration::from_secs(remaining.as_secs_f64().ceil() as u64)),
            time(status.throttled_until_ms),
            status.failed_attempts
        )
    } else {
        format!("not throttled ({} failed attempts)", status.failed_attempts)
    }
}

/// Judges the device's screens from WatchScreens (its current screen first, then each change)
/// until `judge` holds or `timeout` passes. A throttle ends with time rather than with a change:
/// on a real clock the last screen is judged again when the throttle it shows runs out.
pub(crate) async fn until_screen(
    stage: &mut Stage,
    device: &str,
    timeout: Duration,
    expected: &str,
    judge: Judge,
) -> StepResult {
    let failure = |observed: String| Failure {
        expected: expected.to_string(),
        observed,
    };
    let mut screens = stage
        .harness
        .watch_screens(pb::WatchScreensRequest {
            name: device.to_string(),
        })
        .await
        .map_err(|status| failure(format!("WatchScreens: {}", status.message())))?
        .into_inner();
    let deadline = Instant::now() + timeout;
    let real_clock = stage.clock.is_none();
    let mut last: Option<pb::Screen> = None;
    let mut observed = "no screen yet".to_string();
    loop {
        let now = stage.now_ms();
        let recheck = last
            .as_ref()
            .filter(|_| real_clock)
            .and_then(|screen| {
                screen
                    .stores
                    .iter()
                    .map(|s| s.throttled_until_ms)
                    .filter(|until| *until > now)
                    .min()
            })
            .map(|until| Instant::now() + Duration::from_millis(until - now))
            .unwrap_or(deadline)
            .min(deadline);
        tokio::select! {
            message = screens.message() => match message {
                Ok(Some(screen)) => last = Some(screen),
                Ok(None) => return Err(failure(format!("{observed} (the screen stream ended)"))),
                Err(status) => return Err(failure(format!("WatchScreens: {}", status.message()))),
            },
            _ = tokio::time::sleep_until(recheck) => {
                if recheck >= deadline {
                    return Err(failure(format!(
                        "after {}: {observed}",
                        humantime::format_duration(timeout)
                    )));
                }
            }
        }
        if let Some(screen) = &last {
            match judge(screen, stage.now_ms()) {
                Ok(words) => return Ok(words),
                Err(words) => observed = words,
            }
        }
    }
}

/// Reads the user data again at each change of the device's screen (a store unlocking is one)
/// until it equals `wanted` or `timeout` passes.
pub(crate) async fn until_user_data(
    stage: &mut Stage,
    device: &str,
    scope: Scope,
    key: &str,
    wanted: &str,
    timeout: Duration,
) -> StepResult {
    let expected = format!(
        "{key:?} in the {} reads back as the {} bytes written",
        scope_words(scope),
        wanted.len()
    );
    let failure = |observed: String| Failure {
        expected: expected.clone(),
        observed,
    };
    let mut screens = stage
        .harness
        .watch_screens(pb::WatchScreensRequest {
            name: device.to_string(),
        })
        .await
        .map_err(|status| failure(format!("WatchScreens: {}", status.message())))?
        .into_inner();
    let read = async {
        let mut observed = String::new();
        // Each screen (the current one first) is a moment the data may have become readable.
        while let Some(_screen) = screens
            .message()
            .await
            .map_err(|status| format!("WatchScreens: {}", status.message()))?
        {
            let answer = stage
                .harness
                .clone()
                .read_user_data(pb::ReadUserDataRequest {
                    name: device.to_string(),
                    scope: scope_pb(scope) as i32,
                    key: key.to_string(),
                })
                .await;
            observed = match answer {
                Ok(answer) => match answer.into_inner().value {
                    Some(value) if value == wanted.as_bytes() => {
                        return Ok(format!("{key:?} reads back intact ({} bytes)", value.len()));
                    }
                    Some(value) => format!("{key:?} holds {} other bytes", value.len()),
                    None => format!("{key:?} has no value"),
                },
                Err(status) => format!("cannot read it: {}", status.message()),
            };
        }
        Err(format!("{observed} (the screen stream ended)"))
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(words)) => Ok(words),
        Ok(Err(observed)) => Err(failure(observed)),
        Err(_) => {
            let answer = stage
                .harness
                .read_user_data(pb::ReadUserDataRequest {
                    name: device.to_string(),
                    scope: scope_pb(scope) as i32,
                    key: key.to_string(),
                })
                .await;
            let observed = match answer {
                Ok(answer) => match answer.into_inner().value {
                    Some(value) => format!("{key:?} holds {} other bytes", value.len()),
                    None => format!("{key:?} has no value"),
                },
                Err(status) => format!("cannot read it: {}", status.message()),
            };
            Err(failure(format!(
                "after {}: {observed}",
                humantime::format_duration(timeout)
            )))
        }
    }
}

/// Whether the audit log holds a matching entry. The control plane writes an admin call's entry
/// before it answers the call, so one reading decides.
pub(crate) async fn audit(
    admin: &Client,
    operation: &str,
    result: Option<&str>,
    by_role: Option<&str>,
    principal: &str,
    device_id: &str,
) -> StepResult {
    let mut expected = format!("an audit entry for {operation}");
    if let Some(result) = result {
        expected.push_str(&format!(" with result {result}"));
    }
    if let Some(role) = by_role {
        expected.push_str(&format!(" by the {role} principal"));
    }
    let events = admin
        .list_audit_events(
            pb::ListAuditEventsRequest {
                device_id: device_id.to_string(),
                principal: principal.to_string(),
                operation: operation.to_string(),
                ..Default::default()
            },
            100,
        )
        .await
        .map_err(|error| Failure {
            expected: expected.clone(),
            observed: error.to_string(),
        })?;
    let matching = events.iter().find(|e| result.is_none_or(|r| e.result == r));
    match matching {
        Some(event) => Ok(format!(
            "audit: {} {} by {} at {}",
            event.operation,
            event.result,
            event.principal,
            time(event.at_ms)
        )),
        None => Err(Failure {
            expected,
            observed: if events.is_empty() {
                format!("no {operation} entry")
            } else {
                let results: Vec<String> = events
                    .iter()
                    .take(5)
                    .map(|e| format!("{} by {}", e.result, e.principal))
                    .collect();
                format!("{operation} entries: {}", results.join(", "))
            },
        }),
    }
}
