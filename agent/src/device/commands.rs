//! Signed commands from the control plane, and the device's record of what it answered.
//!
//! [`Device::run_command`] checks, in order: the body decodes; its key id names the key the
//! device trusts (from its enrollment or its last key update); its Ed25519 signature verifies
//! with that key; it names this device; its id was not answered
//! before (a re-delivery gets the stored result again and never runs twice, since delivery is
//! at-least-once); its sequence is above every sequence already answered; its not-after time has
//! not passed. A bad signature, another device's command or an old sequence is answered but not
//! recorded: such a message proves nothing about the control plane's intent, so it must not
//! occupy its command id.

use std::collections::BTreeMap;

use droidfleet_telemetry::traceparent::TraceParent;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use super::crypto;
use super::secret::{EscrowToken, Passcode};
use super::store::{ResetError, ResetOptions};
use super::{Device, DeviceError, Scope};

/// A decoded command body (`droidfleet.v1.CommandBody`).
#[derive(Clone, Debug)]
pub struct Command {
    pub command_id: String,
    pub device_id: String,
    pub sequence: u64,
    pub not_after_ms: u64,
    pub kind: CommandKind,
    /// The W3C trace the command belongs to (`CommandBody.traceparent`), for the runtime's log
    /// lines and answers; `None` when absent or malformed (it never fails a command). The model
    /// does not read it.
    pub traceparent: Option<TraceParent>,
}

#[derive(Clone, Debug)]
pub enum CommandKind {
    ResetPasscode {
        scope: Scope,
        new_passcode: Passcode,
        /// Any length: a short one simply does not match.
        escrow_token: EscrowToken,
        require_entry: bool,
        lock_now: bool,
    },
    RemoteLock {
        scope: Scope,
    },
    /// Cancel the command with this id, if it has not been answered.
    Cancel {
        command_id: String,
    },
}

/// The device-side codes of `droidfleet.v1.ErrorCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    TokenMissing,
    TokenNotActive,
    TokenMismatch,
    PasscodePolicyViolation,
    StoreWiped,
    StoreMissing,
    /// The device's Android API level cannot run the command (the Android Management API's
    /// `API_LEVEL`); the action ends `not_supported`.
    ApiLevel,
    /// A remote lock of a store without a passcode, which a lock could not protect.
    NoPasscode,
    BadSignature,
    WrongDevice,
    Replayed,
    Expired,
    /// For the runtime, which answers a body that does not decode (`run_command` gives `None`).
    MalformedCommand,
    /// A cancel of a command the device already answered: nothing is left to cancel.
    AlreadyAnswered,
    Internal,
}

/// The outcome of a command (`droidfleet.v1.CommandResult`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    pub command_id: String,
    pub success: bool,
    /// Code and a sentence for a human; the sentence never holds a passcode or token.
    pub error: Option<(ErrorCode, String)>,
    pub completed_at_ms: u64,
}

impl ResetError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ResetError::StoreMissing(_) => ErrorCode::StoreMissing,
            ResetError::ApiLevel(_) => ErrorCode::ApiLevel,
            ResetError::StoreWiped(_) => ErrorCode::StoreWiped,
            ResetError::TokenMissing => ErrorCode::TokenMissing,
            ResetError::TokenNotActive => ErrorCode::TokenNotActive,
            ResetError::TokenMismatch => ErrorCode::TokenMismatch,
            ResetError::PolicyViolation(_) => ErrorCode::PasscodePolicyViolation,
            ResetError::Crypto(_) => ErrorCode::Internal,
        }
    }
}

impl DeviceError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DeviceError::StoreMissing(_) => ErrorCode::StoreMissing,
            DeviceError::StoreWiped(_) => ErrorCode::StoreWiped,
            DeviceError::NothingToLock(_) => ErrorCode::NoPasscode,
            DeviceError::Policy(_) => ErrorCode::PasscodePolicyViolation,
            _ => ErrorCode::Internal,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CommandRecord {
    result: CommandResult,
    /// 1 when the command took effect, 0 when it was refused; a re-delivery never adds to it.
    times_applied: u32,
}

/// The answered commands, persisted so a restart neither re-runs nor forgets one.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct CommandLog {
    /// `None` until a command is answered, so the first sequence may be any number.
    highest_sequence: Option<u64>,
    records: BTreeMap<String, CommandRecord>,
}

impl Device {
    /// Handles one signed command. `body` is untrusted and `decode` turns it into a
    /// [`Command`]; `None` from `decode` gives `None` here (the runtime answers
    /// [`ErrorCode::MalformedCommand`]). `rng` is for the new passcode wrap and the rotated token.
    pub fn run_command(
        &mut self,
        body: &[u8],
        signature: &[u8],
        key_id: &[u8],
        decode: impl FnOnce(&[u8]) -> Option<Command>,
        now_ms: u64,
        rng: &dyn SecureRandom,
    ) -> Option<CommandResult> {
        let command = decode(body)?;
        let refusal = |code, reason: String| CommandResult {
            command_id: command.command_id.clone(),
            success: false,
            error: Some((code, reason)),
            completed_at_ms: now_ms,
        };
        let Some(enrollment) = &self.enrollment else {
            return Some(refusal(
                ErrorCode::BadSignature,
                "the device is not enrolled, so it has no key to verify commands".to_owned(),
            ));
        };
        if let Some(mismatch) = crypto::key_id_mismatch(&enrollment.command_public_key, key_id) {
            return Some(refusal(
                ErrorCode::BadSignature,
                format!("the command {mismatch}"),
            ));
        }
        if !crypto::verify_ed25519(&enrollment.command_public_key, body, signature) {
            return Some(refusal(
                ErrorCode::BadSignature,
                "the command signature does not verify with the control plane's key".to_owned(),
            ));
        }
        if command.device_id != enrollment.device_id {
            return Some(refusal(
                ErrorCode::WrongDevice,
                format!(
                    "the command is for device {}, not {}",
                    command.device_id, enrollment.device_id
                ),
            ));
        }
        if let Some(record) = self.commands.records.get(&command.command_id) {
            return Some(record.result.clone());
        }
        if let Some(highest) = self.commands.highest_sequence
            && command.sequence <= highest
        {
            return Some(refusal(
                ErrorCode::Replayed,
                format!(
                    "sequence {} is not above {highest}, the highest already answered",
                    command.sequence
                ),
            ));
        }
        // A cancel of an answered command is refused before its own time-to-live counts: the
        // answer it points to is final, whatever the time.
        if let CommandKind::Cancel { command_id } = &command.kind
            && let Some(record) = self.commands.records.get(command_id)
        {
            let done = if record.times_applied > 0 {
                "it was already applied and cannot be undone"
            } else {
                "it was already refused"
            };
            let result = refusal(
                ErrorCode::AlreadyAnswered,
                format!("command {command_id} cannot be canceled: {done}"),
            );
            self.record(&command, &result);
            return Some(result);
        }
        let result = if now_ms > command.not_after_ms {
            refusal(
                ErrorCode::Expired,
                format!(
                    "the command expired at {} ms since the epoch, before it could run",
                    command.not_after_ms
                ),
            )
        } else {
            let outcome = self.execute(&command, rng);
            CommandResult {
                command_id: command.command_id.clone(),
                success: outcome.is_ok(),
                error: outcome.err(),
                completed_at_ms: now_ms,
            }
        };
        self.record(&command, &result);
        Some(result)
    }

    /// Records an answered command, so a re-delivery gets the same answer and an older sequence
    /// is refused.
    fn record(&mut self, command: &Command, result: &CommandResult) {
        self.commands.highest_sequence = Some(command.sequence);
        // A cancel changes nothing on the device: it took effect by being recorded.
        let applied = result.success && !matches!(command.kind, CommandKind::Cancel { .. });
        self.commands.records.insert(
            command.command_id.clone(),
            CommandRecord {
                result: result.clone(),
                times_applied: u32::from(applied),
            },
        );
    }

    fn execute(
        &mut self,
        command: &Command,
        rng: &dyn SecureRandom,
    ) -> Result<(), (ErrorCode, String)> {
        match &command.kind {
            CommandKind::ResetPasscode {
                scope,
                new_passcode,
                escrow_token,
                require_entry,
                lock_now,
            } => {
                let options = ResetOptions {
                    require_entry: *require_entry,
                    lock_now: *lock_now,
                };
                self.reset_with_token(
                    *scope,
                    escrow_token,
                    new_passcode,
                    options,
                    &command.command_id,
                    rng,
                )
                .map_err(|e| (e.code(), e.to_string()))
            }
            CommandKind::RemoteLock { scope } => self
                .remote_lock(*scope)
                .map_err(|e| (e.code(), e.to_string())),
            // Checked in `run_command`: the command it names has no record, so it never ran, and
            // recording the cancel keeps it from ever running.
            CommandKind::Cancel { .. } => Ok(()),
        }
    }

    /// Every answered command id with how many times it took effect (0 or 1).
    pub fn applied_commands(&self) -> impl Iterator<Item = (&str, u32)> {
        self.commands
            .records
            .iter()
            .map(|(id, record)| (id.as_str(), record.times_applied))
    }

    /// The stored result of an answered command.
    pub fn command_result(&self, command_id: &str) -> Option<&CommandResult> {
        self.commands.records.get(command_id).map(|r| &r.result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{
        Build, DeviceEvent, DeviceKey, Enrollment, EntryOutcome, KdfParams, Ownership, TokenState,
    };
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    const NOW: u64 = 1_700_000_000_000;

    struct Fixture {
        rng: SystemRandom,
        keys: Ed25519KeyPair,
        device: Device,
        token: EscrowToken,
    }

    /// An enrolled COSU device with passcode 2580 and an active escrow token.
    fn fixture() -> Fixture {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let keys = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut device = Device::new(
            "d".into(),
            Ownership::Cosu,
            Build::default(),
            KdfParams::LIGHT,
            &rng,
        );
        device.set_enrollment(Enrollment {
            device_id: "dev-1".into(),
            key: DeviceKey::new([5; 32]),
            command_public_key: keys.public_key().as_ref().to_vec(),
        });
        let token = EscrowToken::new(vec![42; 32]);
        assert_eq!(
            device
                .set_escrow_token(Scope::Device, token.clone())
                .unwrap(),
            TokenState::Active
        );
        device
            .set_passcode(Scope::Device, None, &Passcode::new("2580"), NOW, &rng)
            .unwrap();
        device.take_events();
        Fixture {
            rng,
            keys,
            device,
            token,
        }
    }

    fn reset(id: &str, sequence: u64, token: &EscrowToken) -> Command {
        Command {
            command_id: id.into(),
            traceparent: None,
            device_id: "dev-1".into(),
            sequence,
            not_after_ms: NOW + 600_000,
            kind: CommandKind::ResetPasscode {
                scope: Scope::Device,
                new_passcode: Passcode::new("9146"),
                escrow_token: token.clone(),
                require_entry: true,
                lock_now: false,
            },
        }
    }

    impl Fixture {
        /// Signs a body derived from the command id, so different commands sign differently.
        fn run(&mut self, command: Command, now_ms: u64) -> Option<CommandResult> {
            let body = command.command_id.clone().into_bytes();
            let signature = self.keys.sign(&body);
            let key_id = crypto::key_id(self.keys.public_key().as_ref());
            self.device.run_command(
                &body,
                signature.as_ref(),
                &key_id,
                |_| Some(command),
                now_ms,
                &self.rng,
            )
        }

        fn code(&mut self, command: Command, now_ms: u64) -> Option<ErrorCode> {
            let result = self.run(command, now_ms).unwrap();
            result.error.map(|(code, _)| code)
        }
    }

    #[test]
    fn undecodable_body_gives_none() {
        let mut f = fixture();
        let result = f
            .device
            .run_command(b"junk", b"sig", &[], |_| None, NOW, &f.rng);
        assert!(result.is_none());
        assert_eq!(f.device.applied_commands().count(), 0);
    }

    #[test]
    fn reset_command_runs_once_and_duplicates_repeat_the_result() {
        let mut f = fixture();
        let token = f.token.clone();
        let first = f.run(reset("c1", 1, &token), NOW).unwrap();
        assert!(first.success, "{first:?}");
        assert_eq!(first.error, None);
        assert_eq!(first.completed_at_ms, NOW);
        let events = f.device.take_events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, DeviceEvent::EscrowToken { .. }))
        );

        // Re-delivered later: same stored result, nothing runs again.
        let again = f.run(reset("c1", 1, &token), NOW + 5_000).unwrap();
        assert_eq!(again, first);
        assert!(f.device.take_events().is_empty());
        assert_eq!(
            f.device.applied_commands().collect::<Vec<_>>(),
            vec![("c1", 1)]
        );
        assert_eq!(f.device.command_result("c1"), Some(&first));

        let entered = f
            .device
            .enter_passcode(Scope::Device, &Passcode::new("9146"), NOW + 6_000)
            .unwrap();
        assert_eq!(entered, EntryOutcome::Unlocked);
    }

    #[test]
    fn bad_signature_is_refused_and_not_recorded() {
        let mut f = fixture();
        let command = reset("c1", 1, &f.token);
        let body = b"c1".to_vec();
        let mut signature = f.keys.sign(&body).as_ref().to_vec();
        signature[0] ^= 1;
        let key_id = crypto::key_id(f.keys.public_key().as_ref());
        let result = f
            .device
            .run_command(&body, &signature, &key_id, |_| Some(command), NOW, &f.rng)
            .unwrap();
        assert!(!result.success);
        assert_eq!(result.error.unwrap().0, ErrorCode::BadSignature);
        assert_eq!(f.device.applied_commands().count(), 0);
        // The genuine command with that id still runs.
        let token = f.token.clone();
        assert_eq!(f.code(reset("c1", 1, &token), NOW), None);
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let mut f = fixture();
        let other =
            Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&f.rng).unwrap().as_ref())
                .unwrap();
        let command = reset("c1", 1, &f.token);
        let signature = other.sign(b"c1");
        // Under the trusted key's id, and under its own.
        for key_id in [
            crypto::key_id(f.keys.public_key().as_ref()),
            crypto::key_id(other.public_key().as_ref()),
        ] {
            let result = f
                .device
                .run_command(
                    b"c1",
                    signature.as_ref(),
                    &key_id,
                    |_| Some(command.clone()),
                    NOW,
                    &f.rng,
                )
                .unwrap();
            assert_eq!(result.error.unwrap().0, ErrorCode::BadSignature);
        }
        assert_eq!(f.device.applied_commands().count(), 0);
    }

    #[test]
    fn a_command_under_an_unknown_key_id_is_refused_before_its_signature_is_checked() {
        let mut f = fixture();
        let command = reset("c1", 1, &f.token);
        // The trusted key's own signature, but named as another key's: refused all the same.
        let signature = f.keys.sign(b"c1");
        for key_id in [&[][..], &[0u8; 8][..], &[1u8; 40][..]] {
            let result = f
                .device
                .run_command(
                    b"c1",
                    signature.as_ref(),
                    key_id,
                    |_| Some(command.clone()),
                    NOW,
                    &f.rng,
                )
                .unwrap();
            let (code, reason) = result.error.unwrap();
            assert_eq!(code, ErrorCode::BadSignature);
            assert!(reason.contains("the key this device trusts"), "{reason}");
        }
        assert_eq!(f.device.applied_commands().count(), 0);
        let token = f.token.clone();
        assert_eq!(f.code(reset("c1", 1, &token), NOW), None);
    }

    #[test]
    fn unenrolled_device_cannot_verify() {
        let rng = SystemRandom::new();
        let mut device = Device::new(
            "d".into(),
            Ownership::Cosu,
            Build::default(),
            KdfParams::LIGHT,
            &rng,
        );
        let token = EscrowToken::new(vec![1; 32]);
        let result = device
            .run_command(
                b"c1",
                b"sig",
                &[],
                |_| Some(reset("c1", 1, &token)),
                NOW,
                &rng,
            )
            .unwrap();
        assert_eq!(result.error.unwrap().0, ErrorCode::BadSignature);
    }

    #[test]
    fn wrong_device_is_refused_and_not_recorded() {
        let mut f = fixture();
        let mut command = reset("c1", 1, &f.token);
        command.device_id = "dev-2".into();
        assert_eq!(f.code(command, NOW), Some(ErrorCode::WrongDevice));
        assert_eq!(f.device.applied_commands().count(), 0);
    }

    #[test]
    fn old_sequence_is_replayed() {
        let mut f = fixture();
        let lock = |id: &str, sequence| Command {
            command_id: id.into(),
            traceparent: None,
            device_id: "dev-1".into(),
            sequence,
            not_after_ms: NOW + 1,
            kind: CommandKind::RemoteLock {
                scope: Scope::Device,
            },
        };
        assert_eq!(f.code(lock("a", 5), NOW), None);
        assert_eq!(f.code(lock("b", 5), NOW), Some(ErrorCode::Replayed));
        assert_eq!(f.code(lock("c", 4), NOW), Some(ErrorCode::Replayed));
        assert_eq!(f.code(lock("d", 6), NOW), None);
        assert_eq!(
            f.device.applied_commands().collect::<Vec<_>>(),
            vec![("a", 1), ("d", 1)]
        );
    }

    #[test]
    fn expired_command_is_recorded_and_never_runs() {
        let mut f = fixture();
        let token = f.token.clone();
        let mut command = reset("c1", 1, &token);
        command.not_after_ms = NOW - 1;
        let before = f.device.statuses(NOW);
        assert_eq!(f.code(command.clone(), NOW), Some(ErrorCode::Expired));
        assert_eq!(f.device.statuses(NOW), before);
        assert_eq!(
            f.device.applied_commands().collect::<Vec<_>>(),
            vec![("c1", 0)]
        );
        // A re-delivery keeps the recorded answer even if the clock were behind.
        assert_eq!(f.code(command, NOW - 10), Some(ErrorCode::Expired));
        let entered = f
            .device
            .enter_passcode(Scope::Device, &Passcode::new("2580"), NOW)
            .unwrap();
        assert_eq!(entered, EntryOutcome::Unlocked);
    }

    #[test]
    fn refused_reset_is_recorded_with_its_code() {
        let mut f = fixture();
        let wrong = EscrowToken::new(vec![7; 32]);
        assert_eq!(
            f.code(reset("c1", 1, &wrong), NOW),
            Some(ErrorCode::TokenMismatch)
        );
        let short = EscrowToken::new(vec![7; 3]);
        assert_eq!(
            f.code(reset("c2", 2, &short), NOW),
            Some(ErrorCode::TokenMismatch)
        );
        let mut missing = reset("c3", 3, &wrong);
        if let CommandKind::ResetPasscode { scope, .. } = &mut missing.kind {
            *scope = Scope::WorkProfile;
        }
        let result = f.run(missing, NOW).unwrap();
        let (code, reason) = result.error.unwrap();
        assert_eq!(code, ErrorCode::StoreMissing);
        assert_eq!(reason, "this device has no work profile credential store");
        assert_eq!(
            f.device.applied_commands().collect::<Vec<_>>(),
            vec![("c1", 0), ("c2", 0), ("c3", 0)]
        );
    }

    #[test]
    fn results_survive_persistence() {
        let mut f = fixture();
        let token = f.token.clone();
        let first = f.run(reset("c1", 1, &token), NOW).unwrap();
        let json = serde_json::to_string(&f.device.to_persisted()).unwrap();
        f.device =
            Device::from_persisted(serde_json::from_str(&json).unwrap(), KdfParams::LIGHT).unwrap();
        assert_eq!(f.run(reset("c1", 1, &token), NOW).unwrap(), first);
        assert_eq!(
            f.code(reset("c0", 1, &token), NOW),
            Some(ErrorCode::Replayed)
        );
    }

    fn remote_lock(id: &str, sequence: u64, scope: Scope) -> Command {
        Command {
            command_id: id.into(),
            traceparent: None,
            device_id: "dev-1".into(),
            sequence,
            not_after_ms: NOW + 600_000,
            kind: CommandKind::RemoteLock { scope },
        }
    }

    #[test]
    fn remote_lock_command_locks_the_store_and_names_what_it_cannot_lock() {
        let mut f = fixture();
        assert!(!f.device.statuses(NOW)[0].locked);
        let locked = f.run(remote_lock("l1", 1, Scope::Device), NOW).unwrap();
        assert!(locked.success, "{locked:?}");
        assert!(
            f.device.statuses(NOW)[0].locked,
            "DevicePolicyManager.lockNow"
        );
        assert!(
            f.device
                .take_events()
                .iter()
                .any(|e| matches!(e, DeviceEvent::StatusChanged)),
            "the lock is reported"
        );
        // The passcode still opens it; the lock changed no credential.
        let entered = f
            .device
            .enter_passcode(Scope::Device, &Passcode::new("2580"), NOW)
            .unwrap();
        assert_eq!(entered, EntryOutcome::Unlocked);

        // A COSU device has no work profile to lock.
        assert_eq!(
            f.code(remote_lock("l2", 2, Scope::WorkProfile), NOW),
            Some(ErrorCode::StoreMissing)
        );

        // A wiped store has nothing left to lock.
        f.device
            .set_policy(
                Scope::Device,
                Some(crate::device::PasscodePolicy {
                    max_failed_attempts_before_wipe: 1,
                    ..crate::device::PasscodePolicy::default()
                }),
            )
            .unwrap();
        f.device
            .enter_passcode(Scope::Device, &Passcode::new("0000"), NOW)
            .unwrap();
        let refused = f.run(remote_lock("l3", 3, Scope::Device), NOW).unwrap();
        let (code, reason) = refused.error.unwrap();
        assert_eq!(code, ErrorCode::StoreWiped);
        assert!(reason.contains("wiped"), "{reason}");
    }

    /// `DevicePolicyManager.lockNow` on a user without a secure credential only turns the
    /// screen off: the keyguard it leaves is dismissed with a swipe. The management app must not
    /// report such a store as locked, so the command fails with its own code and changes
    /// nothing.
    #[test]
    fn remote_lock_of_a_store_without_passcode_is_refused_with_no_passcode() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let keys = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut device = Device::new(
            "d".into(),
            Ownership::Aosp,
            Build::default(),
            KdfParams::LIGHT,
            &rng,
        );
        device.set_enrollment(Enrollment {
            device_id: "dev-1".into(),
            key: DeviceKey::new([5; 32]),
            command_public_key: keys.public_key().as_ref().to_vec(),
        });
        let before = device.statuses(NOW);
        let body = b"l1".to_vec();
        let signature = keys.sign(&body);
        let result = device
            .run_command(
                &body,
                signature.as_ref(),
                &crypto::key_id(keys.public_key().as_ref()),
                |_| Some(remote_lock("l1", 1, Scope::Device)),
                NOW,
                &rng,
            )
            .unwrap();
        let (code, reason) = result.error.unwrap();
        assert_eq!(code, ErrorCode::NoPasscode);
        assert!(reason.contains("no passcode"), "{reason}");
        assert_eq!(device.statuses(NOW), before);
        assert!(!device.statuses(NOW)[0].locked);
    }

    #[test]
    fn error_codes_serialize_in_snake_case() {
        assert_eq!(
            serde_json::to_string(&ErrorCode::PasscodePolicyViolation).unwrap(),
            "\"passcode_policy_violation\""
        );
    }
}
