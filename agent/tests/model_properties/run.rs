//! Runs each operation on both the device and the reference model and compares results,
//! statuses, notifications and events; at the end, checks that every store opens with its last
//! passcode and every value written is still there.

use std::collections::BTreeMap;

use droidfleet_agent::device::{
    Build, Device, DeviceError, DeviceEvent, EscrowToken, Ownership, Passcode, ResetError,
    ResetOptions, Scope, TokenError, TokenState,
};
use proptest::prelude::*;
use ring::rand::SystemRandom;

use super::fixtures::{DAY_MS, KDF, PASSCODES, policy};
use super::ops::{Current, Entry, Op, TokenChoice};
use super::reference::{ANY_VIOLATION, Model};

fn normalize_device<T>(result: Result<T, DeviceError>) -> Result<T, DeviceError> {
    result.map_err(|e| match e {
        DeviceError::Policy(_) => DeviceError::Policy(ANY_VIOLATION),
        other => other,
    })
}

fn same_device_result<T: PartialEq + std::fmt::Debug>(
    what: &str,
    actual: Result<T, DeviceError>,
    expected: Result<T, DeviceError>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(normalize_device(actual), expected, "{}", what);
    Ok(())
}

fn key(index: usize) -> String {
    format!("key-{index}")
}

/// Runs one operation on both the device and the model and compares the outcome.
pub(crate) struct Run {
    device: Device,
    model: Model,
    rng: SystemRandom,
}

impl Run {
    pub(crate) fn new(ownership: Ownership) -> Run {
        let rng = SystemRandom::new();
        let mut run = Run {
            device: Device::new("phone".into(), ownership, Build::default(), KDF, &rng),
            model: Model::new(ownership),
            rng,
        };
        // Enrollment: the management app sets its tokens before any passcode exists.
        run.ensure_tokens();
        run
    }

    fn ensure_tokens(&mut self) {
        self.model.expected.escrow = self.model.needing_tokens();
        self.device.ensure_tokens(&self.rng);
    }

    pub(crate) fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let what = format!("{op:?}");
        let tokens_before: Vec<TokenState> = self
            .model
            .statuses()
            .iter()
            .map(|s| s.token_state)
            .collect();
        let model = &mut self.model;
        let now_ms = model.now_ms;
        // Escrow events carry random tokens; the model takes them from the device's events.
        let mut rotated_for: Option<(Scope, String, ResetOptions, String)> = None;
        match op {
            Op::Enter { scope, entry } => {
                let text = match entry {
                    Entry::Right => model
                        .right_passcode(*scope)
                        .unwrap_or_else(|| PASSCODES[0].to_owned()),
                    Entry::Other(i) => PASSCODES[*i].to_owned(),
                    Entry::Wrong => {
                        let right = model.right_passcode(*scope);
                        let wrong = PASSCODES
                            .iter()
                            .find(|p| right.as_deref() != Some(**p))
                            .expect("ten different passcodes");
                        (*wrong).to_owned()
                    }
                };
                let actual =
                    self.device
                        .enter_passcode(*scope, &Passcode::new(text.as_str()), now_ms);
                let expected = model.enter(*scope, &text);
                same_device_result(&what, actual, expected)?;
            }
            Op::Guess { scope, times } => {
                for _ in 0..*times {
                    let guess = Op::Enter {
                        scope: *scope,
                        entry: Entry::Wrong,
                    };
                    self.apply(&guess)?;
                }
                return Ok(());
            }
            Op::SetPasscode {
                scope,
                current,
                new,
            } => {
                let confirm = if *scope == Scope::WorkProfile && model.unified_work() {
                    Scope::Device
                } else {
                    *scope
                };
                let current = match current {
                    Current::Right => model.right_passcode(confirm),
                    Current::Other(i) => Some(PASSCODES[*i].to_owned()),
                    Current::Missing => None,
                };
                let new = PASSCODES[*new];
                let actual = self.device.set_passcode(
                    *scope,
                    current.as_deref().map(Passcode::new).as_ref(),
                    &Passcode::new(new),
                    now_ms,
                    &self.rng,
                );
                let expected = model.set_passcode(*scope, current.as_deref(), new);
                same_device_result(&what, actual, expected)?;
            }
            Op::Lock(scope) => {
                let actual = self.device.lock(*scope);
                same_device_result(&what, actual, model.lock(*scope))?;
            }
            Op::Reboot {
                app_restores_tokens,
            } => {
                self.device.reboot();
                model.reboot();
                if *app_restores_tokens {
                    self.ensure_tokens();
                }
            }
            Op::Restart => {
                let persisted = self.device.to_persisted();
                // Events not taken yet belong to the process that stopped.
                self.device.take_events();
                self.device = Device::from_persisted(persisted, KDF)
                    .map_err(|e| TestCaseError::fail(format!("restore failed: {e}")))?;
                model.reboot();
            }
            Op::EnsureTokens => self.ensure_tokens(),
            Op::SetToken { scope, byte, short } => {
                let bytes = vec![*byte; if *short { 31 } else { 32 }];
                let actual = self
                    .device
                    .set_escrow_token(*scope, EscrowToken::new(bytes.clone()));
                let expected = match model.store(*scope) {
                    Err(e) => Err(e),
                    Ok(s) if s.wiped => Err(DeviceError::StoreWiped(*scope)),
                    Ok(_) if *short => Err(DeviceError::Token(TokenError::TooShort)),
                    Ok(_) => {
                        model.token_set(*scope, bytes);
                        Ok(model.statuses()[usize::from(*scope == Scope::WorkProfile)].token_state)
                    }
                };
                same_device_result(&what, actual, expected)?;
            }
            Op::Reset {
                scope,
                token,
                new,
                require_entry,
                lock_now,
            } => {
                let sent = match token {
                    TokenChoice::Escrowed => model.escrowed.get(scope).cloned(),
                    TokenChoice::Stale(i) if !model.stale.is_empty() => {
                        Some(model.stale[i % model.stale.len()].clone())
                    }
                    _ => None,
                };
                let sent = sent.unwrap_or_else(|| match token {
                    TokenChoice::Random(b) => vec![*b; 32],
                    _ => vec![0xee; 32],
                });
                model.commands += 1;
                let command_id = format!("cmd-{}", model.commands);
                let new = PASSCODES[*new];
                let options = ResetOptions {
                    require_entry: *require_entry,
                    lock_now: *lock_now,
                };
                let actual = self.device.reset_with_token(
                    *scope,
                    &EscrowToken::new(sent.clone()),
                    &Passcode::new(new),
                    options,
                    &command_id,
                    &self.rng,
                );
                let expected = model.reset_check(*scope, &sent, new);
                let actual = actual.map_err(|e| match e {
                    ResetError::PolicyViolation(_) => ResetError::PolicyViolation(ANY_VIOLATION),
                    // The reason is a sentence for a human; the variant is what is checked.
                    ResetError::ApiLevel(_) => ResetError::ApiLevel(String::new()),
                    other => other,
                });
                prop_assert_eq!(&actual, &expected, "{}", what);
                if expected.is_ok() {
                    model.expected.escrow = vec![*scope];
                    rotated_for = Some((*scope, new.to_owned(), options, command_id));
                }
            }
            Op::Write {
                scope,
                key: k,
                value,
            } => {
                let actual = self
                    .device
                    .write_user_data(*scope, &key(*k), &[*value], &self.rng);
                let expected = model.write(*scope, &key(*k), &[*value]);
                same_device_result(&what, actual, expected)?;
            }
            Op::Read { scope, key: k } => {
                let actual = self.device.read_user_data(*scope, &key(*k));
                same_device_result(&what, actual, model.read(*scope, &key(*k)))?;
            }
            Op::SetPolicy { scope, policy: p } => {
                let actual = self.device.set_policy(*scope, policy(*p));
                let expected = model.store(*scope).map(|_| ());
                if expected.is_ok() {
                    model.store_mut(*scope).policy = *p;
                }
                same_device_result(&what, actual, expected)?;
            }
            Op::Advance(ms) => model.now_ms += ms,
        }
        // A restart is a new process: the restored device reports its whole status when it
        // reconnects, not as a change.
        let reported = (!matches!(op, Op::Restart)).then_some(tokens_before.as_slice());
        self.check_events(&what, rotated_for, reported)?;
        self.check_state(&what)
    }

    /// The device's events match what the model expects, and escrowed tokens enter the model.
    pub(crate) fn check_events(
        &mut self,
        what: &str,
        rotated_for: Option<(Scope, String, ResetOptions, String)>,
        tokens_before: Option<&[TokenState]>,
    ) -> Result<(), TestCaseError> {
        let expected = std::mem::take(&mut self.model.expected);
        let events = self.device.take_events();
        let mut entered = Vec::new();
        let mut wiped = Vec::new();
        let mut escrowed = Vec::new();
        let mut status_changed = false;
        for event in events {
            match event {
                DeviceEvent::NewPasscodeEntered {
                    scope,
                    command_id,
                    at_ms,
                } => {
                    prop_assert_eq!(at_ms, self.model.now_ms, "{}", what);
                    entered.push((scope, command_id));
                }
                DeviceEvent::StoreWiped { scope, at_ms } => {
                    prop_assert_eq!(at_ms, self.model.now_ms, "{}", what);
                    wiped.push(scope);
                }
                DeviceEvent::EscrowToken { scope, token } => {
                    prop_assert_eq!(token.expose().len(), EscrowToken::MIN_LEN, "{}", what);
                    escrowed.push((scope, token.expose().to_vec()));
                }
                DeviceEvent::StatusChanged => status_changed = true,
            }
        }
        prop_assert_eq!(&entered, &expected.entered, "{}: user entries", what);
        prop_assert_eq!(&wiped, &expected.wiped, "{}: wipes", what);
        let escrow_scopes: Vec<Scope> = escrowed.iter().map(|(s, _)| *s).collect();
        prop_assert_eq!(
            &escrow_scopes,
            &expected.escrow,
            "{}: escrowed tokens",
            what
        );
        match rotated_for {
            Some((scope, new, options, command_id)) => {
                let (_, rotated) = escrowed.pop().expect("checked above");
                self.model
                    .reset_applied(scope, &new, options, &command_id, rotated);
            }
            None => {
                for (scope, token) in escrowed {
                    self.model.token_set(scope, token);
                }
            }
        }
        // The management app reports every token-state change to the control plane.
        let tokens_after: Vec<TokenState> = self
            .model
            .statuses()
            .iter()
            .map(|s| s.token_state)
            .collect();
        if tokens_before.is_some_and(|before| before != tokens_after) {
            prop_assert!(status_changed, "{}: token state changed unreported", what);
        }
        Ok(())
    }

    pub(crate) fn check_state(&self, what: &str) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            self.device.statuses(self.model.now_ms),
            self.model.statuses(),
            "{}: statuses",
            what
        );
        let notified: Vec<Scope> = self
            .device
            .notifications()
            .iter()
            .map(|n| n.scope)
            .collect();
        // Only a work profile's reset raises a notification; the keyguard asks for a device's.
        let expected: Vec<Scope> = self
            .model
            .stores()
            .filter(|s| s.scope == Scope::WorkProfile && s.require_entry.is_some())
            .map(|s| s.scope)
            .collect();
        prop_assert_eq!(notified, expected, "{}: notifications", what);
        Ok(())
    }

    /// After any history: once every throttle has passed, the last passcode set opens each
    /// store that was not wiped, and every value the user wrote is still there.
    pub(crate) fn final_check(&mut self) -> Result<(), TestCaseError> {
        self.apply(&Op::Advance(2 * DAY_MS))?;
        for scope in [Scope::Device, Scope::WorkProfile] {
            if self.model.secure(scope) {
                self.apply(&Op::Enter {
                    scope,
                    entry: Entry::Right,
                })?;
            }
        }
        let live: Vec<(Scope, BTreeMap<String, Vec<u8>>)> = self
            .model
            .stores()
            .filter(|s| !s.wiped)
            .map(|s| (s.scope, s.data.clone()))
            .collect();
        for (scope, data) in live {
            for k in 0..3 {
                let value = self.device.read_user_data(scope, &key(k));
                prop_assert_eq!(
                    value,
                    Ok(data.get(&key(k)).cloned()),
                    "{:?} {} after the final unlock",
                    scope,
                    key(k)
                );
            }
        }
        Ok(())
    }
}
