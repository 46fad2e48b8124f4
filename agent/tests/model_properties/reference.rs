//! The reference model: a device's credential stores as Android's rules say they behave,
//! written from those rules rather than from the device's code. It answers what each operation
//! must return and which events it must queue.

use std::collections::BTreeMap;

use droidfleet_agent::device::{
    DeviceError, EntryOutcome, Ownership, PolicyViolation, Refusal, ResetError, ResetOptions,
    Scope, StoreStatus, TokenState,
};

use super::fixtures::{
    NO_POLICY, START_MS, meets_translated_device_policy, policy, throttle_wait_ms, valid,
    valid_for_both,
};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    None,
    Pending(Vec<u8>),
    Active(Vec<u8>),
}

/// One credential store as Android would have it.
#[derive(Clone, Debug)]
pub(crate) struct StoreModel {
    pub(crate) scope: Scope,
    pub(crate) wiped: bool,
    /// The store's own passcode. `None` on the device store: no credential; on the work
    /// profile: it shares the device's challenge (unified).
    passcode: Option<String>,
    unlocked: bool,
    failures: u32,
    last_failure_ms: u64,
    token: Token,
    pub(crate) data: BTreeMap<String, Vec<u8>>,
    pub(crate) policy: usize,
    /// The command id of a reset whose passcode the user has not entered yet.
    pub(crate) require_entry: Option<String>,
}

impl StoreModel {
    pub(crate) fn new(scope: Scope) -> StoreModel {
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
pub(crate) struct Expected {
    pub(crate) entered: Vec<(Scope, String)>,
    pub(crate) wiped: Vec<Scope>,
    /// Scopes whose token the device must hand out for escrow, in order.
    pub(crate) escrow: Vec<Scope>,
}

pub(crate) struct Model {
    pub(crate) now_ms: u64,
    device: StoreModel,
    work: Option<StoreModel>,
    /// A company-owned work profile on the newest Android: its management app owns the work
    /// profile only and cannot reset the device passcode.
    cope: bool,
    /// A personally owned work profile on the newest Android: the device's policy applies as a
    /// complexity bucket.
    byod: bool,
    /// The token the control plane holds per store, and every token it held before.
    pub(crate) escrowed: BTreeMap<Scope, Vec<u8>>,
    pub(crate) stale: Vec<Vec<u8>>,
    pub(crate) commands: u32,
    pub(crate) expected: Expected,
}

impl Model {
    pub(crate) fn new(ownership: Ownership) -> Model {
        Model {
            now_ms: START_MS,
            device: StoreModel::new(Scope::Device),
            work: ownership
                .has_work_profile()
                .then(|| StoreModel::new(Scope::WorkProfile)),
            cope: ownership == Ownership::Cope,
            byod: ownership == Ownership::Byod,
            escrowed: BTreeMap::new(),
            stale: Vec::new(),
            commands: 0,
            expected: Expected::default(),
        }
    }

    pub(crate) fn store(&self, scope: Scope) -> Result<&StoreModel, DeviceError> {
        match scope {
            Scope::Device => Ok(&self.device),
            Scope::WorkProfile => self.work.as_ref().ok_or(DeviceError::StoreMissing(scope)),
        }
    }

    pub(crate) fn store_mut(&mut self, scope: Scope) -> &mut StoreModel {
        match scope {
            Scope::Device => &mut self.device,
            Scope::WorkProfile => self.work.as_mut().expect("checked by the caller"),
        }
    }

    pub(crate) fn stores(&self) -> impl Iterator<Item = &StoreModel> {
        std::iter::once(&self.device).chain(self.work.as_ref())
    }

    /// Whether `new` meets what the store's credential is held to: its policy, and for the
    /// device store a unified work profile's too.
    fn meets_policies(&self, scope: Scope, store: &StoreModel, new: &str) -> bool {
        let unified_policy = self
            .work
            .as_ref()
            .filter(|_| self.unified_work())
            .map(|work| work.policy);
        match (scope, unified_policy) {
            (Scope::Device, shared) if self.byod => {
                meets_translated_device_policy(store.policy, new)
                    && valid(shared.unwrap_or(NO_POLICY), new)
            }
            (Scope::Device, Some(shared)) => valid_for_both(store.policy, shared, new),
            _ => valid(store.policy, new),
        }
    }

    pub(crate) fn unified_work(&self) -> bool {
        self.work
            .as_ref()
            .is_some_and(|w| !w.wiped && w.passcode.is_none())
    }

    /// A passcode protects the store: its own, or the device's for a unified profile.
    pub(crate) fn secure(&self, scope: Scope) -> bool {
        let Ok(store) = self.store(scope) else {
            return false;
        };
        store.passcode.is_some()
            || (scope == Scope::WorkProfile
                && self.unified_work()
                && self.device.passcode.is_some())
    }

    /// The passcode that unlocks `scope`: for a unified profile, the device's.
    pub(crate) fn right_passcode(&self, scope: Scope) -> Option<String> {
        if scope == Scope::WorkProfile && self.unified_work() {
            return self.device.passcode.clone();
        }
        self.store(scope).ok()?.passcode.clone()
    }

    pub(crate) fn statuses(&self) -> Vec<StoreStatus> {
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

    pub(crate) fn enter(
        &mut self,
        scope: Scope,
        passcode: &str,
    ) -> Result<EntryOutcome, DeviceError> {
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

    pub(crate) fn set_passcode(
        &mut self,
        scope: Scope,
        current: Option<&str>,
        new: &str,
    ) -> Result<(), DeviceError> {
        let store = self.store(scope)?;
        if store.wiped {
            return Err(DeviceError::StoreWiped(scope));
        }
        if !self.meets_policies(scope, store, new) {
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

    pub(crate) fn lock(&mut self, scope: Scope) -> Result<(), DeviceError> {
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
    pub(crate) fn reboot(&mut self) {
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
    pub(crate) fn token_set(&mut self, scope: Scope, token: Vec<u8>) {
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
    pub(crate) fn needing_tokens(&self) -> Vec<Scope> {
        self.stores()
            .filter(|s| !s.wiped && s.token == Token::None)
            .map(|s| s.scope)
            .collect()
    }

    /// The checks of a reset, in Android's order; `Ok` when it must succeed.
    pub(crate) fn reset_check(
        &self,
        scope: Scope,
        token: &[u8],
        new: &str,
    ) -> Result<(), ResetError> {
        let store = self
            .store(scope)
            .map_err(|_| ResetError::StoreMissing(scope))?;
        if self.cope && scope == Scope::Device {
            return Err(ResetError::ApiLevel(String::new()));
        }
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
        if !self.meets_policies(scope, store, new) {
            return Err(ResetError::PolicyViolation(ANY_VIOLATION));
        }
        Ok(())
    }

    /// A successful reset; `rotated` is the new token the device handed out.
    pub(crate) fn reset_applied(
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

    pub(crate) fn write(
        &mut self,
        scope: Scope,
        key: &str,
        value: &[u8],
    ) -> Result<(), DeviceError> {
        self.readable(scope)?;
        self.store_mut(scope)
            .data
            .insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    pub(crate) fn read(&self, scope: Scope, key: &str) -> Result<Option<Vec<u8>>, DeviceError> {
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
/// rule a bad one breaks first; the runner compares violations by kind.
pub(crate) const ANY_VIOLATION: PolicyViolation = PolicyViolation::ContainsInvalidCharacters;
