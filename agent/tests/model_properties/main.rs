//! Property test of the device model: random sequences of what a user, an admin (through its
//! control plane) and the device's own life do to a [`Device`], checked step by step against a
//! small reference model written here from the Android rules, not from the device's code.
//!
//! After every operation the device must agree with the model on the operation's result, on
//! every store's status (locked, token state, failed attempts, throttle, wiped, separate
//! challenge, require-entry), on the notifications and on the events it queues for its runtime.
//! That checks, among the rest, the three properties issue 3 asks for:
//! * user data is never lost except by a wipe (every read returns what the model wrote, and the
//!   final unlock reads everything back);
//! * a store never unlocks with anything but the last passcode set by the user or by a
//!   successful reset (the model unlocks only with that one);
//! * a reset succeeds exactly when the store's token is active and matches and the new passcode
//!   meets the policy.
//!
//! Passcodes and policies come from small fixed sets whose verdicts are written out by hand in
//! [`VALID`], so the device's validator is not the oracle of its own behaviour.

use std::collections::BTreeMap;

use droidfleet_agent::device::{
    Device, DeviceError, DeviceEvent, EntryOutcome, EscrowToken, KdfParams, Ownership, Passcode,
    PasscodeComplexity, PasscodePolicy, PasscodeType, PolicyViolation, Refusal, ResetError,
    ResetOptions, Scope, StoreStatus, TokenError, TokenState,
};
use proptest::prelude::*;
use ring::rand::SystemRandom;

/// Cheap Argon2id, so hundreds of sequences run in seconds in a debug build.
const KDF: KdfParams = KdfParams::LIGHT;
const START_MS: u64 = 1_700_000_000_000;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The passcodes every operation picks from: PINs with and without sequences, passwords, and
/// two that no rule admits (too short, too long).
const PASSCODES: [&str; 10] = [
    "2580",
    "1234",
    "914682",
    "abc",
    "orchid42",
    "Zq7!wX3k",
    "12345678901234567",
    "7391",
    "19283746",
    "0000",
];

const NO_POLICY: usize = 0;
const WIPE_POLICY: usize = 5;
const WIPE_LIMIT: u32 = 3;

/// The policies an admin assigns; index [`NO_POLICY`] removes the policy.
fn policy(index: usize) -> Option<PasscodePolicy> {
    let base = PasscodePolicy::default();
    match index {
        NO_POLICY => None,
        1 => Some(PasscodePolicy {
            passcode_type: PasscodeType::Pin,
            min_length: 6,
            ..base
        }),
        2 => Some(PasscodePolicy {
            passcode_type: PasscodeType::NumericComplex,
            min_length: 4,
            ..base
        }),
        3 => Some(PasscodePolicy {
            passcode_type: PasscodeType::Alphanumeric,
            min_length: 8,
            complexity: PasscodeComplexity::Medium,
            ..base
        }),
        4 => Some(PasscodePolicy {
            passcode_type: PasscodeType::Complex,
            min_length: 8,
            min_upper_case: 1,
            min_symbols: 1,
            ..base
        }),
        WIPE_POLICY => Some(PasscodePolicy {
            passcode_type: PasscodeType::Pin,
            min_length: 4,
            max_failed_attempts_before_wipe: WIPE_LIMIT,
            ..base
        }),
        _ => unreachable!("no policy {index}"),
    }
}

/// Whether `PASSCODES[j]` meets `policy(i)`, worked out by hand from Android's rules: the
/// no-policy rule is 4 to 16 printable characters; a PIN policy refuses letters; numeric
/// complex refuses runs of 4 such as 1234 or 0000; password policies refuse a PIN.
const VALID: [[bool; 10]; 6] = [
    //  2580  1234   914682 abc    orchid42 Zq7!wX3k 17-digit 7391  19283746 0000
    [true, true, true, false, true, true, false, true, true, true],
    [
        false, false, true, false, false, false, false, false, true, false,
    ],
    [
        true, false, true, false, false, false, false, true, true, false,
    ],
    [
        false, false, false, false, true, true, false, false, false, false,
    ],
    [
        false, false, false, false, false, true, false, false, false, false,
    ],
    [
        true, true, true, false, false, false, false, true, true, true,
    ],
];

fn valid(policy: usize, passcode: &str) -> bool {
    let index = PASSCODES
        .iter()
        .position(|p| *p == passcode)
        .expect("a passcode from the table");
    VALID[policy][index]
}

/// Gatekeeper's schedule, written out again: 30 s at 5 and 10 to 29 failures, doubling every
/// 10 from 30, one day from 140.
fn throttle_wait_ms(failures: u32) -> u64 {
    const WAIT: u64 = 30_000;
    match failures {
        5 | 10..=29 => WAIT,
        30..=139 => WAIT * 2u64.pow((failures - 30) / 10),
        140.. => DAY_MS,
        _ => 0,
    }
}

#[derive(Clone, Debug)]
enum Current {
    Right,
    Other(usize),
    Missing,
}

#[derive(Clone, Debug)]
enum Entry {
    Right,
    Other(usize),
    /// Surely not the right one.
    Wrong,
}

#[derive(Clone, Debug)]
enum TokenChoice {
    /// The token the control plane holds for the store.
    Escrowed,
    /// A token escrowed earlier and replaced since.
    Stale(usize),
    /// A token the device never had.
    Random(u8),
}

#[derive(Clone, Debug)]
enum Op {
    /// The user enters a passcode on a store's lock screen.
    Enter {
        scope: Scope,
        entry: Entry,
    },
    /// Someone guesses: this many wrong entries in a row, which is what reaches throttles and
    /// wipe limits.
    Guess {
        scope: Scope,
        times: u32,
    },
    /// The user changes a passcode in the settings app.
    SetPasscode {
        scope: Scope,
        current: Current,
        new: usize,
    },
    Lock(Scope),
    /// A reboot; the management app then re-creates lost tokens, or not yet.
    Reboot {
        app_restores_tokens: bool,
    },
    /// The agent process restarts: the device comes back from its persisted state.
    Restart,
    EnsureTokens,
    /// The management app sets a token of its own (31 bytes is too short).
    SetToken {
        scope: Scope,
        byte: u8,
        short: bool,
    },
    /// The admin's reset, as the command carries it.
    Reset {
        scope: Scope,
        token: TokenChoice,
        new: usize,
        require_entry: bool,
        lock_now: bool,
    },
    Write {
        scope: Scope,
        key: usize,
        value: u8,
    },
    Read {
        scope: Scope,
        key: usize,
    },
    SetPolicy {
        scope: Scope,
        policy: usize,
    },
    /// Time passes: a second, past a 30 s throttle, or a day.
    Advance(u64),
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![3 => Just(Scope::Device), 2 => Just(Scope::WorkProfile)]
}

fn passcode_index() -> impl Strategy<Value = usize> {
    0..PASSCODES.len()
}

fn op() -> impl Strategy<Value = Op> {
    let entry = prop_oneof![
        2 => Just(Entry::Right),
        1 => passcode_index().prop_map(Entry::Other),
    ];
    let current = prop_oneof![
        4 => Just(Current::Right),
        1 => passcode_index().prop_map(Current::Other),
        1 => Just(Current::Missing),
    ];
    let token = prop_oneof![
        4 => Just(TokenChoice::Escrowed),
        1 => any::<usize>().prop_map(TokenChoice::Stale),
        1 => any::<u8>().prop_map(TokenChoice::Random),
    ];
    prop_oneof![
        6 => (scope(), entry).prop_map(|(scope, entry)| Op::Enter { scope, entry }),
        2 => (scope(), 1..12u32).prop_map(|(scope, times)| Op::Guess { scope, times }),
        3 => (scope(), current, passcode_index())
            .prop_map(|(scope, current, new)| Op::SetPasscode { scope, current, new }),
        2 => scope().prop_map(Op::Lock),
        1 => any::<bool>().prop_map(|app_restores_tokens| Op::Reboot { app_restores_tokens }),
        1 => Just(Op::Restart),
        1 => Just(Op::EnsureTokens),
        1 => (scope(), any::<u8>(), prop::bool::weighted(0.2))
            .prop_map(|(scope, byte, short)| Op::SetToken { scope, byte, short }),
        5 => (scope(), token, passcode_index(), any::<bool>(), any::<bool>()).prop_map(
            |(scope, token, new, require_entry, lock_now)| Op::Reset {
                scope,
                token,
                new,
                require_entry,
                lock_now,
            }
        ),
        2 => (scope(), 0..3usize, any::<u8>())
            .prop_map(|(scope, key, value)| Op::Write { scope, key, value }),
        2 => (scope(), 0..3usize).prop_map(|(scope, key)| Op::Read { scope, key }),
        2 => (scope(), 0..6usize).prop_map(|(scope, policy)| Op::SetPolicy { scope, policy }),
        2 => prop_oneof![Just(1_000u64), Just(31_000), Just(DAY_MS)].prop_map(Op::Advance),
    ]
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    None,
    Pending(Vec<u8>),
    Active(Vec<u8>),
}

/// One credential store as Android would have it.
#[derive(Clone, Debug)]
struct StoreModel {
    scope: Scope,
    wiped: bool,
    /// The store's own passcode. `None` on the device store: no credential; on the work
    /// profile: it shares the device's challenge (unified).
    passcode: Option<String>,
    unlocked: bool,
    failures: u32,
    last_failure_ms: u64,
    token: Token,
    data: BTreeMap<String, Vec<u8>>,
    policy: usize,
    /// The command id of a reset whose passcode the user has not entered yet.
    require_entry: Option<String>,
}

impl StoreModel {
    fn new(scope: Scope) -> StoreModel {
        StoreModel {
            scope,
            wiped: false,
            passcode: None,
            // A factory-fresh device has no credential, so everything is open.
            unlocked: true,
            failures: 0,
            last_failure_ms: 0,
            token: Token::None,
            data: BTreeMap::new(),
            policy: NO_POLICY,
            require_entry: None,
        }
    }

    fn throttled_until(&self, now_ms: u64) -> Option<u64> {
        let wait = throttle_wait_ms(self.failures);
        let until = self.last_failure_ms + wait;
        (wait > 0 && now_ms < until).then_some(until)
    }

    fn wipe_limit_reached(&self, failures: u32) -> bool {
        let limit = policy(self.policy).map_or(0, |p| p.max_failed_attempts_before_wipe);
        limit > 0 && failures >= limit
    }
}

/// What an operation must produce besides its result.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    entered: Vec<(Scope, String)>,
    wiped: Vec<Scope>,
    /// Scopes whose token the device must hand out for escrow, in order.
    escrow: Vec<Scope>,
}

struct Model {
    now_ms: u64,
    device: StoreModel,
    work: Option<StoreModel>,
    /// The token the control plane holds per store, and every token it held before.
    escrowed: BTreeMap<Scope, Vec<u8>>,
    stale: Vec<Vec<u8>>,
    commands: u32,
    expected: Expected,
}

impl Model {
    fn new(ownership: Ownership) -> Model {
        Model {
            now_ms: START_MS,
            device: StoreModel::new(Scope::Device),
            work: ownership
                .has_work_profile()
                .then(|| StoreModel::new(Scope::WorkProfile)),
            escrowed: BTreeMap::new(),
            stale: Vec::new(),
            commands: 0,
            expected: Expected::default(),
        }
    }

    fn store(&self, scope: Scope) -> Result<&StoreModel, DeviceError> {
        match scope {
            Scope::Device => Ok(&self.device),
            Scope::WorkProfile => self.work.as_ref().ok_or(DeviceError::StoreMissing(scope)),
        }
    }

    fn store_mut(&mut self, scope: Scope) -> &mut StoreModel {
        match scope {
            Scope::Device => &mut self.device,
            Scope::WorkProfile => self.work.as_mut().expect("checked by the caller"),
        }
    }

    fn stores(&self) -> impl Iterator<Item = &StoreModel> {
        std::iter::once(&self.device).chain(self.work.as_ref())
    }

    fn unified_work(&self) -> bool {
        self.work
            .as_ref()
            .is_some_and(|w| !w.wiped && w.passcode.is_none())
    }

    /// A passcode protects the store: its own, or the device's for a unified profile.
    fn secure(&self, scope: Scope) -> bool {
        let Ok(store) = self.store(scope) else {
            return false;
        };
        store.passcode.is_some()
            || (scope == Scope::WorkProfile
                && self.unified_work()
                && self.device.passcode.is_some())
    }

    /// The passcode that unlocks `scope`: for a unified profile, the device's.
    fn right_passcode(&self, scope: Scope) -> Option<String> {
        if scope == Scope::WorkProfile && self.unified_work() {
            return self.device.passcode.clone();
        }
        self.store(scope).ok()?.passcode.clone()
    }

    fn statuses(&self) -> Vec<StoreStatus> {
        self.stores()
            .map(|s| StoreStatus {
                scope: s.scope,
                has_passcode: self.secure(s.scope),
                locked: !s.unlocked,
                token_state: match s.token {
                    Token::None => TokenState::None,
                    Token::Pending(_) => TokenState::Pending,
                    Token::Active(_) => TokenState::Active,
                },
                failed_attempts: s.failures,
                throttled_until_ms: s.throttled_until(self.now_ms).unwrap_or(0),
                wiped: s.wiped,
                separate_challenge: s.scope == Scope::WorkProfile && s.passcode.is_some(),
                require_entry: s.require_entry.is_some(),
            })
            .collect()
    }

    /// The user proved the credential of `scope`.
    fn succeed(&mut self, scope: Scope) {
        let store = self.store_mut(scope);
        store.unlocked = true;
        store.failures = 0;
        store.last_failure_ms = 0;
        if let Token::Pending(token) = &store.token {
            store.token = Token::Active(token.clone());
        }
        if let Some(command_id) = store.require_entry.take() {
            self.expected.entered.push((scope, command_id));
        }
        if scope == Scope::Device && self.unified_work() {
            self.succeed(Scope::WorkProfile);
        }
    }

    /// A wrong credential for `scope`, with the wipe limits it reaches.
    fn fail(&mut self, scope: Scope) -> Refusal {
        let now_ms = self.now_ms;
        let store = self.store_mut(scope);
        store.failures += 1;
        store.last_failure_ms = now_ms;
        let failures = store.failures;
        if store.wipe_limit_reached(failures) {
            self.wipe(scope);
            return Refusal::Wiped;
        }
        if scope == Scope::Device
            && self.unified_work()
            && self
                .store(Scope::WorkProfile)
                .unwrap()
                .wipe_limit_reached(failures)
        {
            self.wipe(Scope::WorkProfile);
        }
        Refusal::WrongPasscode {
            failed_attempts: failures,
            throttled_until_ms: match throttle_wait_ms(failures) {
                0 => 0,
                wait => now_ms + wait,
            },
        }
    }

    /// The device store's limit is a factory reset; a profile's takes the profile only.
    fn wipe(&mut self, scope: Scope) {
        let targets = match scope {
            Scope::Device => vec![Scope::Device, Scope::WorkProfile],
            Scope::WorkProfile => vec![Scope::WorkProfile],
        };
        for target in targets {
            if self.store(target).is_ok_and(|s| !s.wiped) {
                let store = self.store_mut(target);
                *store = StoreModel {
                    wiped: true,
                    unlocked: false,
                    policy: store.policy,
                    ..StoreModel::new(target)
                };
                self.expected.wiped.push(target);
            }
        }
    }

    fn enter(&mut self, scope: Scope, passcode: &str) -> Result<EntryOutcome, DeviceError> {
        let store = self.store(scope)?;
        if store.wiped {
            return Ok(EntryOutcome::Refused(Refusal::Wiped));
        }
        if scope == Scope::WorkProfile && self.unified_work() {
            let outcome = self.enter(Scope::Device, passcode)?;
            if self.store(scope)?.wiped {
                return Ok(EntryOutcome::Refused(Refusal::Wiped));
            }
            return Ok(outcome);
        }
        let Some(right) = store.passcode.clone() else {
            return Err(DeviceError::NoPasscode(scope));
        };
        if let Some(until_ms) = store.throttled_until(self.now_ms) {
            return Ok(EntryOutcome::Refused(Refusal::Throttled { until_ms }));
        }
        if passcode == right {
            self.succeed(scope);
            Ok(EntryOutcome::Unlocked)
        } else {
            Ok(EntryOutcome::Refused(self.fail(scope)))
        }
    }

    fn set_passcode(
        &mut self,
        scope: Scope,
        current: Option<&str>,
        new: &str,
    ) -> Result<(), DeviceError> {
        let store = self.store(scope)?;
        if store.wiped {
            return Err(DeviceError::StoreWiped(scope));
        }
        if !valid(store.policy, new) {
            return Err(DeviceError::Policy(ANY_VIOLATION));
        }
        let confirm_scope = if scope == Scope::WorkProfile && self.unified_work() {
            Scope::Device
        } else {
            scope
        };
        if self.secure(scope) {
            let current = current.ok_or(DeviceError::CurrentPasscodeRequired(confirm_scope))?;
            let confirming = self.store(confirm_scope)?;
            if let Some(until_ms) = confirming.throttled_until(self.now_ms) {
                return Err(DeviceError::Throttled { until_ms });
            }
            if confirming.passcode.as_deref() == Some(current) {
                self.succeed(confirm_scope);
            } else {
                self.fail(confirm_scope);
                return Err(if self.store(scope)?.wiped {
                    DeviceError::StoreWiped(scope)
                } else {
                    DeviceError::WrongPasscode
                });
            }
        }
        let store = self.store_mut(scope);
        if !store.unlocked {
            return Err(DeviceError::StoreLocked(scope));
        }
        store.passcode = Some(new.to_owned());
        store.failures = 0;
        store.last_failure_ms = 0;
        Ok(())
    }

    fn lock(&mut self, scope: Scope) -> Result<(), DeviceError> {
        if self.store(scope)?.wiped {
            return Err(DeviceError::StoreWiped(scope));
        }
        let mut targets = vec![scope];
        if scope == Scope::Device && self.unified_work() {
            targets.push(Scope::WorkProfile);
        }
        for target in targets {
            if self.secure(target) {
                self.store_mut(target).unlocked = false;
            }
        }
        Ok(())
    }

    /// Everything locks, pending tokens are lost, a store without credential opens again.
    fn reboot(&mut self) {
        for scope in [Scope::Device, Scope::WorkProfile] {
            if self.store(scope).is_ok() {
                let store = self.store_mut(scope);
                store.unlocked = false;
                if matches!(store.token, Token::Pending(_)) {
                    store.token = Token::None;
                }
            }
        }
        if !self.device.wiped && self.device.passcode.is_none() {
            self.device.unlocked = true;
            if self.unified_work() {
                self.succeed(Scope::WorkProfile);
            }
        }
    }

    /// A token the device just set on `scope` and handed out for escrow.
    fn token_set(&mut self, scope: Scope, token: Vec<u8>) {
        let secure = self.secure(scope);
        self.store_mut(scope).token = if secure {
            Token::Pending(token.clone())
        } else {
            Token::Active(token.clone())
        };
        self.escrow(scope, token);
    }

    fn escrow(&mut self, scope: Scope, token: Vec<u8>) {
        if let Some(old) = self.escrowed.insert(scope, token) {
            self.stale.push(old);
        }
    }

    /// Which stores `ensure_tokens` must give a token, in order.
    fn needing_tokens(&self) -> Vec<Scope> {
        self.stores()
            .filter(|s| !s.wiped && s.token == Token::None)
            .map(|s| s.scope)
            .collect()
    }

    /// The checks of a reset, in Android's order; `Ok` when it must succeed.
    fn reset_check(&self, scope: Scope, token: &[u8], new: &str) -> Result<(), ResetError> {
        let store = self
            .store(scope)
            .map_err(|_| ResetError::StoreMissing(scope))?;
        if store.wiped {
            return Err(ResetError::StoreWiped(scope));
        }
        match &store.token {
            Token::None => return Err(ResetError::TokenMissing),
            Token::Pending(_) => return Err(ResetError::TokenNotActive),
            Token::Active(active) if active.as_slice() != token => {
                return Err(ResetError::TokenMismatch);
            }
            Token::Active(_) => {}
        }
        if !valid(store.policy, new) {
            return Err(ResetError::PolicyViolation(ANY_VIOLATION));
        }
        Ok(())
    }

    /// A successful reset; `rotated` is the new token the device handed out.
    fn reset_applied(
        &mut self,
        scope: Scope,
        new: &str,
        options: ResetOptions,
        command_id: &str,
        rotated: Vec<u8>,
    ) {
        let locks = options.require_entry || options.lock_now;
        let unified_before = self.unified_work();
        let store = self.store_mut(scope);
        store.passcode = Some(new.to_owned());
        store.failures = 0;
        store.last_failure_ms = 0;
        store.token = Token::Pending(rotated.clone());
        store.require_entry = options.require_entry.then(|| command_id.to_owned());
        if locks {
            store.unlocked = false;
        }
        if scope == Scope::Device && locks && unified_before {
            self.store_mut(Scope::WorkProfile).unlocked = false;
        }
        self.escrow(scope, rotated);
    }

    fn write(&mut self, scope: Scope, key: &str, value: &[u8]) -> Result<(), DeviceError> {
        self.readable(scope)?;
        self.store_mut(scope)
            .data
            .insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn read(&self, scope: Scope, key: &str) -> Result<Option<Vec<u8>>, DeviceError> {
        self.readable(scope)?;
        Ok(self.store(scope)?.data.get(key).cloned())
    }

    fn readable(&self, scope: Scope) -> Result<(), DeviceError> {
        let store = self.store(scope)?;
        if store.wiped {
            return Err(DeviceError::StoreWiped(scope));
        }
        if !store.unlocked {
            return Err(DeviceError::StoreLocked(scope));
        }
        Ok(())
    }
}

/// Stands for "some policy violation": the table knows whether a passcode is valid, not which
/// rule a bad one breaks first; [`same_device_result`] compares violations by kind.
const ANY_VIOLATION: PolicyViolation = PolicyViolation::ContainsInvalidCharacters;

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
struct Run {
    device: Device,
    model: Model,
    rng: SystemRandom,
}

impl Run {
    fn new(ownership: Ownership) -> Run {
        let rng = SystemRandom::new();
        let mut run = Run {
            device: Device::new("phone".into(), ownership, KDF, &rng),
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

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
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
    fn check_events(
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

    fn check_state(&self, what: &str) -> Result<(), TestCaseError> {
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
        let expected: Vec<Scope> = self
            .model
            .stores()
            .filter(|s| s.require_entry.is_some())
            .map(|s| s.scope)
            .collect();
        prop_assert_eq!(notified, expected, "{}: notifications", what);
        Ok(())
    }

    /// After any history: once every throttle has passed, the last passcode set opens each
    /// store that was not wiped, and every value the user wrote is still there.
    fn final_check(&mut self) -> Result<(), TestCaseError> {
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

proptest! {
    // 192 sequences of up to 63 operations (Guess counts up to 11 entries) run in about two
    // seconds in a debug build. No failure file: the minimal failing sequence is printed.
    #![proptest_config(ProptestConfig {
        cases: 192,
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn device_agrees_with_the_reference_model(
        ownership in prop_oneof![Just(Ownership::Cosu), Just(Ownership::Byod)],
        ops in prop::collection::vec(op(), 1..64),
    ) {
        let mut run = Run::new(ownership);
        run.check_events("enrollment", None, Some(&[]))?;
        run.check_state("enrollment")?;
        for op in &ops {
            run.apply(op)?;
        }
        run.final_check()?;
    }
}

/// The hand-written table in [`VALID`] is the oracle of the property test, so it is checked
/// against the device's validator once here: if they disagree, one of them is wrong, and the
/// property test would otherwise report it far from the cause.
#[test]
fn the_verdict_table_matches_the_device_validator() {
    for (i, row) in VALID.iter().enumerate() {
        for (j, &expected) in row.iter().enumerate() {
            let verdict = droidfleet_agent::device::policy::validate(
                policy(i).as_ref(),
                &Passcode::new(PASSCODES[j]),
            );
            assert_eq!(
                verdict.is_ok(),
                expected,
                "policy {i} and {:?}: {verdict:?}",
                PASSCODES[j]
            );
        }
    }
}

/// The model's throttle schedule is its own; it must say what Gatekeeper says at the edges.
#[test]
fn the_model_schedule_matches_gatekeeper() {
    for n in [0, 1, 4, 5, 6, 9, 10, 11, 29, 30, 39, 40, 139, 140, 1_000] {
        assert_eq!(
            throttle_wait_ms(n),
            droidfleet_agent::device::throttle::wait_after_failures(n),
            "{n} failures"
        );
    }
}
