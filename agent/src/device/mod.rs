//! The device domain model of the agent: one simulated Android device with its credential
//! stores (keyguard and work profile), escrow tokens, passcode policies, Gatekeeper throttling,
//! the user's notifications and the signed commands a control plane sends it.
//!
//! Plain Rust without I/O. Time comes in as `now_ms` (milliseconds since the Unix epoch), never
//! from the system clock. Randomness comes in as `rng: &dyn SecureRandom` on exactly the methods
//! that need it: [`Device::new`] (secrets, salts), [`Device::set_passcode`] (salt and nonce of
//! the new wrap), [`Device::reset_with_token`] and [`Device::run_command`] (the same, plus the
//! rotated token), [`Device::ensure_tokens`] (new tokens) and [`Device::write_user_data`]
//! (nonces). Everything a runtime must send or store leaves as [`DeviceEvent`]s and
//! [`PersistedDevice`]; the gRPC edge converts these types to and from protobuf.
//!
//! Modules: [`secret`] (zeroized, redacted secret types), [`crypto`] (Argon2id, HKDF,
//! AES-256-GCM, Ed25519), [`policy`] (Android's passcode rules), [`throttle`] (Gatekeeper's
//! schedule), [`store`] (one credential store), [`commands`] (signed command handling).
//!
//! The behaviour follows Android's LockSettingsService, SyntheticPasswordManager,
//! DevicePolicyManagerService and Gatekeeper; where the model simplifies, the item says so.

pub mod commands;
pub mod crypto;
pub mod policy;
pub mod secret;
pub mod store;
pub mod throttle;

use std::fmt;

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

pub use commands::{Command, CommandKind, CommandResult, ErrorCode};
pub use crypto::{CryptoError, KdfParams};
/// The shorter name the gRPC edge uses.
pub use policy::PasscodeComplexity as Complexity;
pub use policy::{PasscodeComplexity, PasscodePolicy, PasscodeType, PolicyViolation};
pub use secret::{DeviceCredential, EscrowToken, Passcode, TokenError};
pub use store::{CredentialStore, PersistedStore, ResetError, ResetOptions};

use commands::CommandLog;
use secret::SyntheticSecret;

/// Bumped whenever [`PersistedDevice`] changes incompatibly.
const PERSISTED_FORMAT: u32 = 1;
const RNG_FAILED: &str = "the system random number generator failed";

/// How the device is enrolled; decides whether it has a work profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    /// Corporate-owned dedicated device.
    Cosu,
    /// Corporate-owned, fully managed.
    Cobo,
    /// Corporate-owned with a work profile.
    Cope,
    /// Personally owned with a work profile.
    Byod,
    /// Android Open Source Project device.
    Aosp,
}

impl Ownership {
    pub const ALL: [Ownership; 5] = [
        Ownership::Cosu,
        Ownership::Cobo,
        Ownership::Cope,
        Ownership::Byod,
        Ownership::Aosp,
    ];

    pub fn has_work_profile(self) -> bool {
        matches!(self, Ownership::Cobo | Ownership::Cope | Ownership::Byod)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Ownership::Cosu => "cosu",
            Ownership::Cobo => "cobo",
            Ownership::Cope => "cope",
            Ownership::Byod => "byod",
            Ownership::Aosp => "aosp",
        }
    }

    /// Accepts [`Ownership::as_str`] in any letter case.
    pub fn parse(text: &str) -> Option<Ownership> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Ownership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A credential store: Android's user 0 (keyguard) or the work profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Device,
    WorkProfile,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Device => "device",
            Scope::WorkProfile => "work_profile",
        }
    }

    /// Accepts [`Scope::as_str`].
    pub fn parse(text: &str) -> Option<Scope> {
        [Scope::Device, Scope::WorkProfile]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Reads well inside sentences ("the work profile store is locked").
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Device => "device",
            Scope::WorkProfile => "work profile",
        })
    }
}

/// `DevicePolicyManager.isResetPasswordTokenActive`, with pending told apart from none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    None,
    /// Set over an existing passcode; active after the next successful entry, lost on reboot.
    Pending,
    Active,
}

/// One store as the device reports it (`droidfleet.v1.StoreStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    pub scope: Scope,
    /// A passcode protects the store; for a unified work profile, that is the device passcode.
    pub has_passcode: bool,
    pub locked: bool,
    pub token_state: TokenState,
    pub failed_attempts: u32,
    /// 0 when not throttled.
    pub throttled_until_ms: u64,
    pub wiped: bool,
    pub separate_challenge: bool,
    pub require_entry: bool,
}

/// A notification on the device's screen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub scope: Scope,
    pub title: String,
    pub text: String,
}

/// The result of typing a passcode on a store's lock screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    Unlocked,
    Refused(Refusal),
}

impl fmt::Display for EntryOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryOutcome::Unlocked => f.write_str("the store is unlocked"),
            EntryOutcome::Refused(refusal) => refusal.fmt(f),
        }
    }
}

/// Why an entry did not unlock the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    WrongPasscode {
        failed_attempts: u32,
        /// 0 when the next entry may follow at once.
        throttled_until_ms: u64,
    },
    /// Refused unchecked and uncounted.
    Throttled {
        until_ms: u64,
    },
    Wiped,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::WrongPasscode {
                failed_attempts,
                throttled_until_ms: 0,
            } => write!(
                f,
                "wrong passcode ({failed_attempts} failed {})",
                attempts(failed_attempts)
            ),
            Refusal::WrongPasscode {
                failed_attempts,
                throttled_until_ms,
            } => write!(
                f,
                "wrong passcode ({failed_attempts} failed {}); try again at \
                 {throttled_until_ms} ms since the epoch",
                attempts(failed_attempts)
            ),
            Refusal::Throttled { until_ms } => write!(
                f,
                "too many failed attempts; try again at {until_ms} ms since the epoch"
            ),
            Refusal::Wiped => f.write_str("the store was wiped after too many failed attempts"),
        }
    }
}

fn attempts(n: u32) -> &'static str {
    if n == 1 { "attempt" } else { "attempts" }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("this device has no {0} credential store")]
    StoreMissing(Scope),
    #[error("the {0} store is locked; enter its passcode first")]
    StoreLocked(Scope),
    #[error("the {0} store was wiped after too many failed attempts")]
    StoreWiped(Scope),
    #[error("the {0} store has no passcode to enter")]
    NoPasscode(Scope),
    #[error("the current {0} passcode is required to change it")]
    CurrentPasscodeRequired(Scope),
    #[error("the passcode is wrong")]
    WrongPasscode,
    #[error("too many failed attempts; try again at {until_ms} ms since the epoch")]
    Throttled { until_ms: u64 },
    #[error(transparent)]
    Policy(#[from] PolicyViolation),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("the persisted device state is invalid: {0}")]
    CorruptState(String),
}

/// What the device tells its runtime; drained with [`Device::take_events`].
#[derive(Clone, Debug)]
pub enum DeviceEvent {
    /// The management app set a new token on a store; the runtime escrows it.
    EscrowToken {
        scope: Scope,
        token: EscrowToken,
    },
    /// Something [`Device::statuses`] shows has changed.
    StatusChanged,
    /// The user entered the passcode a reset set; its notification is gone.
    NewPasscodeEntered {
        scope: Scope,
        command_id: String,
        at_ms: u64,
    },
    StoreWiped {
        scope: Scope,
        at_ms: u64,
    },
}

/// The identity a control plane gave the device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enrollment {
    pub device_id: String,
    pub credential: DeviceCredential,
    /// Ed25519 public key that signs every command to this device.
    #[serde(with = "crypto::b64")]
    pub command_public_key: Vec<u8>,
}

/// Everything that survives a restart. It holds no passcode, no token and no unwrapped secret;
/// the device credential is the one secret in it, because the device needs it to reconnect.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PersistedDevice {
    format: u32,
    name: String,
    ownership: Ownership,
    enrollment: Option<Enrollment>,
    stores: Vec<PersistedStore>,
    commands: CommandLog,
}

/// One simulated Android device.
#[derive(Debug)]
pub struct Device {
    name: String,
    ownership: Ownership,
    /// Cost of new passcode wraps; existing wraps keep the parameters they were made with.
    kdf: KdfParams,
    enrollment: Option<Enrollment>,
    device_store: CredentialStore,
    work_store: Option<CredentialStore>,
    commands: CommandLog,
    events: Vec<DeviceEvent>,
}

impl Device {
    /// A factory-fresh device: no passcode, so every store is unlocked; a work profile, when the
    /// ownership has one, shares the device's challenge.
    ///
    /// # Panics
    /// If `rng` fails, which the system generator does not do once the OS has seeded it.
    pub fn new(
        name: String,
        ownership: Ownership,
        kdf: KdfParams,
        rng: &dyn SecureRandom,
    ) -> Device {
        let device_store = CredentialStore::create(Scope::Device, None, rng).expect(RNG_FAILED);
        let work_store = ownership.has_work_profile().then(|| {
            CredentialStore::create(Scope::WorkProfile, device_store.secret(), rng)
                .expect(RNG_FAILED)
        });
        Device {
            name,
            ownership,
            kdf,
            enrollment: None,
            device_store,
            work_store,
            commands: CommandLog::default(),
            events: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ownership(&self) -> Ownership {
        self.ownership
    }

    pub fn enrollment(&self) -> Option<&Enrollment> {
        self.enrollment.as_ref()
    }

    pub fn set_enrollment(&mut self, enrollment: Enrollment) {
        self.enrollment = Some(enrollment);
    }

    pub fn scopes(&self) -> Vec<Scope> {
        self.stores().map(CredentialStore::scope).collect()
    }

    pub fn store(&self, scope: Scope) -> Result<&CredentialStore, DeviceError> {
        match scope {
            Scope::Device => Ok(&self.device_store),
            Scope::WorkProfile => self
                .work_store
                .as_ref()
                .ok_or(DeviceError::StoreMissing(scope)),
        }
    }

    fn store_mut(&mut self, scope: Scope) -> Result<&mut CredentialStore, DeviceError> {
        match scope {
            Scope::Device => Ok(&mut self.device_store),
            Scope::WorkProfile => self
                .work_store
                .as_mut()
                .ok_or(DeviceError::StoreMissing(scope)),
        }
    }

    fn stores(&self) -> impl Iterator<Item = &CredentialStore> {
        std::iter::once(&self.device_store).chain(self.work_store.as_ref())
    }

    /// Whether a passcode protects `store`: its own, or the device's for a unified work profile.
    fn is_secure(&self, store: &CredentialStore) -> bool {
        store.has_own_passcode() || (store.is_unified() && self.device_store.has_own_passcode())
    }

    pub fn statuses(&self, now_ms: u64) -> Vec<StoreStatus> {
        self.stores()
            .map(|store| store.status(now_ms, self.is_secure(store)))
            .collect()
    }

    /// One "enter your new passcode" notification per store whose reset passcode the user has
    /// not entered yet.
    pub fn notifications(&self) -> Vec<Notification> {
        self.stores()
            .filter(|store| store.require_entry().is_some())
            .map(|store| {
                let scope = store.scope();
                let (what, use_it) = match scope {
                    Scope::Device => ("device", "to unlock this device"),
                    Scope::WorkProfile => ("work", "to keep using your work apps"),
                };
                Notification {
                    id: format!("enter-new-passcode/{}", scope.as_str()),
                    scope,
                    title: format!("Enter your new {what} passcode"),
                    text: format!(
                        "Your IT admin reset your {what} passcode. Enter the new passcode {use_it}."
                    ),
                }
            })
            .collect()
    }

    /// The user types `passcode` on the store's lock screen. A unified work profile has no
    /// challenge of its own, so the entry goes to the device's.
    pub fn enter_passcode(
        &mut self,
        scope: Scope,
        passcode: &Passcode,
        now_ms: u64,
    ) -> Result<EntryOutcome, DeviceError> {
        let store = self.store(scope)?;
        if store.is_wiped() {
            return Ok(EntryOutcome::Refused(Refusal::Wiped));
        }
        if store.is_unified() {
            let outcome = self.enter_passcode(Scope::Device, passcode, now_ms)?;
            // The device's failure may have reached the profile's own wipe limit.
            if self.store(scope)?.is_wiped() {
                return Ok(EntryOutcome::Refused(Refusal::Wiped));
            }
            return Ok(outcome);
        }
        if !store.has_own_passcode() {
            return Err(DeviceError::NoPasscode(scope));
        }
        if let Some(until_ms) = store.throttled(now_ms) {
            return Ok(EntryOutcome::Refused(Refusal::Throttled { until_ms }));
        }
        let checked = self.tracked(|device| device.check_passcode(scope, passcode, now_ms))?;
        Ok(match checked {
            Ok(()) => EntryOutcome::Unlocked,
            Err(refusal) => EntryOutcome::Refused(refusal),
        })
    }

    /// One Argon2id run against the store's own passcode, with the consequences of the outcome.
    fn check_passcode(
        &mut self,
        scope: Scope,
        passcode: &Passcode,
        now_ms: u64,
    ) -> Result<Result<(), Refusal>, DeviceError> {
        match self.store(scope)?.verify_passcode(passcode)? {
            Some(secret) => {
                self.on_verified(scope, secret, now_ms)?;
                Ok(Ok(()))
            }
            None => Ok(Err(self.on_failed(scope, now_ms)?)),
        }
    }

    fn on_verified(
        &mut self,
        scope: Scope,
        secret: SyntheticSecret,
        now_ms: u64,
    ) -> Result<(), DeviceError> {
        if let Some(command_id) = self.store_mut(scope)?.record_success(secret)? {
            self.events.push(DeviceEvent::NewPasscodeEntered {
                scope,
                command_id,
                at_ms: now_ms,
            });
        }
        if scope == Scope::Device {
            self.unlock_unified_work()?;
        }
        Ok(())
    }

    fn unlock_unified_work(&mut self) -> Result<(), CryptoError> {
        if let (Some(work), Some(parent)) = (self.work_store.as_mut(), self.device_store.secret()) {
            work.unlock_from_parent(parent)?;
        }
        Ok(())
    }

    /// Counts a wrong entry and applies the strictest wipe limit it reaches. A unified work
    /// profile's limit counts the device's failures, since its challenge is the device's: as in
    /// `DevicePolicyManagerService.reportFailedPasswordAttempt`, which holds the admins of
    /// profiles without a separate challenge to the parent's failures and wipes the profile
    /// whose admin set the limit that was reached first.
    fn on_failed(&mut self, scope: Scope, now_ms: u64) -> Result<Refusal, DeviceError> {
        let store = self.store_mut(scope)?;
        let failed_attempts = store.record_failure(now_ms);
        if store.wipe_due() {
            self.wipe(scope, now_ms);
            return Ok(Refusal::Wiped);
        }
        let unified_work_due = scope == Scope::Device
            && self
                .work_store
                .as_ref()
                .is_some_and(|work| work.is_unified() && work.wipe_limit_reached(failed_attempts));
        if unified_work_due {
            // The device itself stays; its entry was wrong, not wiped.
            self.wipe(Scope::WorkProfile, now_ms);
        }
        Ok(Refusal::WrongPasscode {
            failed_attempts,
            throttled_until_ms: throttle::throttled_until(failed_attempts, now_ms),
        })
    }

    /// A work profile's limit removes the profile only; the device store's limit is a factory
    /// reset and takes every store with it.
    fn wipe(&mut self, scope: Scope, now_ms: u64) {
        let whole_device = scope == Scope::Device;
        let stores = std::iter::once(&mut self.device_store).chain(self.work_store.as_mut());
        for store in stores {
            if (whole_device || store.scope() == scope) && !store.is_wiped() {
                store.wipe();
                self.events.push(DeviceEvent::StoreWiped {
                    scope: store.scope(),
                    at_ms: now_ms,
                });
            }
        }
    }

    /// The user changes a store's passcode. When a passcode protects the store, `current` must
    /// be it (for a unified work profile: the device passcode), and a wrong one counts as a
    /// failed attempt, as Android's confirm-credential does. A unified work profile becomes
    /// separate. An active token keeps working because the same secret is re-wrapped.
    pub fn set_passcode(
        &mut self,
        scope: Scope,
        current: Option<&Passcode>,
        new: &Passcode,
        now_ms: u64,
        rng: &dyn SecureRandom,
    ) -> Result<(), DeviceError> {
        let store = self.store(scope)?;
        if store.is_wiped() {
            return Err(DeviceError::StoreWiped(scope));
        }
        policy::validate(store.policy(), new)?;
        let confirm_scope = if store.is_unified() {
            Scope::Device
        } else {
            scope
        };
        let must_confirm = self.is_secure(store);
        let kdf = self.kdf;
        self.tracked(|device| {
            if must_confirm && let Err(error) = device.confirm(confirm_scope, current, now_ms) {
                // A wrong device passcode may have reached a unified profile's wipe limit.
                return Err(if device.store(scope)?.is_wiped() {
                    DeviceError::StoreWiped(scope)
                } else {
                    error
                });
            }
            device.store_mut(scope)?.set_passcode(new, kdf, rng)
        })
    }

    fn confirm(
        &mut self,
        scope: Scope,
        current: Option<&Passcode>,
        now_ms: u64,
    ) -> Result<(), DeviceError> {
        let current = current.ok_or(DeviceError::CurrentPasscodeRequired(scope))?;
        if let Some(until_ms) = self.store(scope)?.throttled(now_ms) {
            return Err(DeviceError::Throttled { until_ms });
        }
        match self.check_passcode(scope, current, now_ms)? {
            Ok(()) => Ok(()),
            Err(Refusal::Wiped) => Err(DeviceError::StoreWiped(scope)),
            Err(_) => Err(DeviceError::WrongPasscode),
        }
    }

    /// Locks a store (remote lock, or the user pressing power). Locking the device store also
    /// locks a unified work profile. A store without passcode stays open: there is nothing to
    /// enter to get back in.
    pub fn lock(&mut self, scope: Scope) -> Result<(), DeviceError> {
        if self.store(scope)?.is_wiped() {
            return Err(DeviceError::StoreWiped(scope));
        }
        self.tracked(|device| {
            let unified_work = device
                .work_store
                .as_ref()
                .is_some_and(CredentialStore::is_unified);
            let mut targets = vec![scope];
            if scope == Scope::Device && unified_work {
                targets.push(Scope::WorkProfile);
            }
            for target in targets {
                if device.is_secure(device.store(target)?) {
                    device.store_mut(target)?.lock();
                }
            }
            Ok(())
        })
    }

    /// Every store locks and pending tokens are lost; reset notifications stay. Stores without
    /// a passcode come back unlocked, as Android unlocks a user without credential at boot.
    /// Call [`Device::ensure_tokens`] afterwards, as the management app would on boot.
    pub fn reboot(&mut self) {
        self.tracked(|device| {
            device.device_store.power_off();
            if let Some(work) = device.work_store.as_mut() {
                work.power_off();
            }
            // Cannot fail: from_persisted or new proved these blobs open and nothing rewrites
            // them. Were it to fail anyway, the store would merely stay locked.
            let _ = device.boot_unlock();
        });
    }

    fn boot_unlock(&mut self) -> Result<(), CryptoError> {
        self.device_store.unlock_without_credential()?;
        self.unlock_unified_work()
    }

    /// What the management app does at enrollment and after every boot: give every live store
    /// without a token a fresh one, and hand each to the runtime as a
    /// [`DeviceEvent::EscrowToken`]. A store whose token cannot be made (the random generator
    /// failed) keeps none and is retried on the next call.
    pub fn ensure_tokens(&mut self, rng: &dyn SecureRandom) {
        for scope in self.scopes() {
            let needs_token = self
                .store(scope)
                .is_ok_and(|s| !s.is_wiped() && s.token_state() == TokenState::None);
            if !needs_token {
                continue;
            }
            let Ok(token) = EscrowToken::generate(rng) else {
                continue;
            };
            if self.set_escrow_token(scope, token.clone()).is_ok() {
                self.events.push(DeviceEvent::EscrowToken { scope, token });
            }
        }
    }

    /// `DevicePolicyManager.setResetPasswordToken`: replaces the store's token. Returns
    /// [`TokenState::Active`] when no passcode protects the store, else [`TokenState::Pending`].
    pub fn set_escrow_token(
        &mut self,
        scope: Scope,
        token: EscrowToken,
    ) -> Result<TokenState, DeviceError> {
        let store = self.store(scope)?;
        if store.is_wiped() {
            return Err(DeviceError::StoreWiped(scope));
        }
        token.check_length()?;
        let secure = self.is_secure(store);
        self.tracked(|device| Ok(device.store_mut(scope)?.set_token(token, secure)?))
    }

    /// Policy updates take effect for the next passcode set or reset; `None` removes it.
    pub fn set_policy(
        &mut self,
        scope: Scope,
        policy: Option<PasscodePolicy>,
    ) -> Result<(), DeviceError> {
        self.store_mut(scope)?.set_policy(policy);
        Ok(())
    }

    pub fn policy(&self, scope: Scope) -> Result<Option<&PasscodePolicy>, DeviceError> {
        Ok(self.store(scope)?.policy())
    }

    /// `rng` gives each sealed value its own nonce.
    pub fn write_user_data(
        &mut self,
        scope: Scope,
        key: &str,
        value: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<(), DeviceError> {
        self.store_mut(scope)?.write_data(key, value, rng)
    }

    pub fn read_user_data(&self, scope: Scope, key: &str) -> Result<Option<Vec<u8>>, DeviceError> {
        self.store(scope)?.read_data(key)
    }

    /// `DevicePolicyManager.resetPasswordWithToken`, checks in order: store exists, not wiped,
    /// token set, token active, token matches, new passcode meets the store's policy (or the
    /// no-policy rule). A refused reset changes nothing. A successful one keeps the store's data,
    /// makes a work profile's challenge separate, clears the failure count, locks the store when
    /// asked to (require-entry or lock-now; locking the device store also locks a unified work
    /// profile), and rotates the token: the new one is pending until the user's next entry and
    /// leaves as a [`DeviceEvent::EscrowToken`].
    pub fn reset_with_token(
        &mut self,
        scope: Scope,
        token: &EscrowToken,
        new: &Passcode,
        options: ResetOptions,
        command_id: &str,
        rng: &dyn SecureRandom,
    ) -> Result<(), ResetError> {
        let kdf = self.kdf;
        self.tracked(|device| {
            let store = device
                .store_mut(scope)
                .map_err(|_| ResetError::StoreMissing(scope))?;
            let rotated = store.reset_with_token(token, new, options, command_id, kdf, rng)?;
            let locks = options.require_entry || options.lock_now;
            if scope == Scope::Device
                && locks
                && let Some(work) = device.work_store.as_mut().filter(|w| w.is_unified())
            {
                work.lock();
            }
            device.events.push(DeviceEvent::EscrowToken {
                scope,
                token: rotated,
            });
            Ok(())
        })
    }

    pub fn take_events(&mut self) -> Vec<DeviceEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn to_persisted(&self) -> PersistedDevice {
        PersistedDevice {
            format: PERSISTED_FORMAT,
            name: self.name.clone(),
            ownership: self.ownership,
            enrollment: self.enrollment.clone(),
            stores: self.stores().map(CredentialStore::to_persisted).collect(),
            commands: self.commands.clone(),
        }
    }

    /// Restores a device as a boot finds it: stores with a passcode locked, no pending tokens.
    /// `kdf` applies to passcodes set from now on.
    pub fn from_persisted(
        persisted: PersistedDevice,
        kdf: KdfParams,
    ) -> Result<Device, DeviceError> {
        let corrupt = |why: &str| DeviceError::CorruptState(why.to_owned());
        if persisted.format != PERSISTED_FORMAT {
            return Err(DeviceError::CorruptState(format!(
                "unknown format {}",
                persisted.format
            )));
        }
        let mut stores = persisted
            .stores
            .into_iter()
            .map(CredentialStore::from_persisted);
        let device_store = stores
            .next()
            .filter(|s| s.scope() == Scope::Device)
            .ok_or_else(|| corrupt("the device store is missing"))?;
        let work_store = stores.next();
        if work_store
            .as_ref()
            .is_some_and(|s| s.scope() != Scope::WorkProfile)
            || stores.next().is_some()
        {
            return Err(corrupt("unexpected credential stores"));
        }
        if work_store.is_some() != persisted.ownership.has_work_profile() {
            return Err(corrupt("the work profile does not match the ownership"));
        }
        let mut device = Device {
            name: persisted.name,
            ownership: persisted.ownership,
            kdf,
            enrollment: persisted.enrollment,
            device_store,
            work_store,
            commands: persisted.commands,
            events: Vec::new(),
        };
        device.boot_unlock().map_err(|e| {
            DeviceError::CorruptState(format!("a credential store does not open: {e}"))
        })?;
        Ok(device)
    }

    /// Runs `change` and queues [`DeviceEvent::StatusChanged`] if it changed any status. The
    /// comparison uses time 0, where every throttle shows its raw end, so the passing of time
    /// alone never counts as a change.
    fn tracked<R>(&mut self, change: impl FnOnce(&mut Self) -> R) -> R {
        let before = self.statuses(0);
        let result = change(self);
        if self.statuses(0) != before {
            self.events.push(DeviceEvent::StatusChanged);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ring::rand::SystemRandom;

    const NOW: u64 = 1_700_000_000_000;
    const KDF: KdfParams = KdfParams::LIGHT;
    const REQUIRE_ENTRY: ResetOptions = ResetOptions {
        require_entry: true,
        lock_now: false,
    };

    fn pass(text: &str) -> Passcode {
        Passcode::new(text)
    }

    fn new_device(ownership: Ownership) -> (Device, SystemRandom) {
        let rng = SystemRandom::new();
        (Device::new("phone".into(), ownership, KDF, &rng), rng)
    }

    fn status(device: &Device, scope: Scope) -> StoreStatus {
        device
            .statuses(NOW)
            .into_iter()
            .find(|s| s.scope == scope)
            .unwrap()
    }

    fn enter(device: &mut Device, scope: Scope, passcode: &str, now_ms: u64) -> EntryOutcome {
        device
            .enter_passcode(scope, &pass(passcode), now_ms)
            .unwrap()
    }

    fn escrowed(events: &[DeviceEvent], wanted: Scope) -> Option<EscrowToken> {
        events.iter().find_map(|e| match e {
            DeviceEvent::EscrowToken { scope, token } if *scope == wanted => Some(token.clone()),
            _ => None,
        })
    }

    /// A COSU device with passcode 2580, an active escrow token and one user-data value.
    fn cosu_ready() -> (Device, SystemRandom, EscrowToken) {
        let (mut device, rng) = new_device(Ownership::Cosu);
        device.ensure_tokens(&rng);
        let token = escrowed(&device.take_events(), Scope::Device).unwrap();
        device
            .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
            .unwrap();
        device
            .write_user_data(Scope::Device, "notes", b"groceries", &rng)
            .unwrap();
        assert_eq!(
            status(&device, Scope::Device).token_state,
            TokenState::Active
        );
        device.take_events();
        (device, rng, token)
    }

    /// A COPE device with device passcode 2580, active tokens on both stores (set before any
    /// passcode) and one value in the work profile.
    fn cope_ready() -> (Device, SystemRandom, EscrowToken) {
        let (mut device, rng) = new_device(Ownership::Cope);
        device.ensure_tokens(&rng);
        let work_token = escrowed(&device.take_events(), Scope::WorkProfile).unwrap();
        device
            .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
            .unwrap();
        device
            .write_user_data(Scope::WorkProfile, "mail", b"quarterly report", &rng)
            .unwrap();
        device.take_events();
        (device, rng, work_token)
    }

    /// Text forms a byte string could take in JSON or Debug output.
    fn renderings(bytes: &[u8]) -> Vec<String> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        vec![
            base64::engine::general_purpose::STANDARD.encode(bytes),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
            hex,
            serde_json::to_string(bytes).unwrap(),
            format!("{bytes:?}"),
        ]
    }

    #[test]
    fn ownership_and_scope_names() {
        for ownership in Ownership::ALL {
            assert_eq!(Ownership::parse(ownership.as_str()), Some(ownership));
        }
        assert_eq!(Ownership::parse("BYOD"), Some(Ownership::Byod));
        assert_eq!(Ownership::parse("kiosk"), None);
        let with_profile: Vec<_> = Ownership::ALL
            .into_iter()
            .filter(|o| o.has_work_profile())
            .collect();
        assert_eq!(
            with_profile,
            vec![Ownership::Cobo, Ownership::Cope, Ownership::Byod]
        );
        assert_eq!(Scope::WorkProfile.as_str(), "work_profile");
        assert_eq!(Scope::parse("work_profile"), Some(Scope::WorkProfile));
        assert_eq!(Scope::parse("work"), None);
    }

    #[test]
    fn new_device_has_the_stores_its_ownership_implies() {
        let (cosu, _) = new_device(Ownership::Cosu);
        assert_eq!(cosu.scopes(), vec![Scope::Device]);
        let (cope, _) = new_device(Ownership::Cope);
        assert_eq!(cope.scopes(), vec![Scope::Device, Scope::WorkProfile]);
        for s in cope.statuses(NOW) {
            assert!(!s.has_passcode && !s.locked && !s.wiped && !s.separate_challenge);
            assert_eq!(s.token_state, TokenState::None);
        }
        assert!(cope.notifications().is_empty());
    }

    #[test]
    fn entry_errors() {
        let (mut device, _) = new_device(Ownership::Cosu);
        assert_eq!(
            device.enter_passcode(Scope::Device, &pass("1234"), NOW),
            Err(DeviceError::NoPasscode(Scope::Device))
        );
        assert_eq!(
            device.enter_passcode(Scope::WorkProfile, &pass("1234"), NOW),
            Err(DeviceError::StoreMissing(Scope::WorkProfile))
        );
    }

    #[test]
    fn token_lifecycle() {
        let (mut device, rng) = new_device(Ownership::Cosu);
        // No passcode: active at once.
        let first = EscrowToken::new(vec![1; 32]);
        assert_eq!(
            device.set_escrow_token(Scope::Device, first).unwrap(),
            TokenState::Active
        );
        device
            .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
            .unwrap();
        assert_eq!(
            status(&device, Scope::Device).token_state,
            TokenState::Active
        );

        // Too short: refused, the active token stays.
        assert_eq!(
            device.set_escrow_token(Scope::Device, EscrowToken::new(vec![2; 31])),
            Err(DeviceError::Token(TokenError::TooShort))
        );
        assert_eq!(
            status(&device, Scope::Device).token_state,
            TokenState::Active
        );

        // Replacing an active token makes the new one pending.
        assert_eq!(
            device
                .set_escrow_token(Scope::Device, EscrowToken::new(vec![3; 32]))
                .unwrap(),
            TokenState::Pending
        );
        // A wrong entry does not activate it; a reboot loses it.
        assert!(matches!(
            enter(&mut device, Scope::Device, "0000", NOW),
            EntryOutcome::Refused(Refusal::WrongPasscode { .. })
        ));
        assert_eq!(
            status(&device, Scope::Device).token_state,
            TokenState::Pending
        );
        device.reboot();
        assert_eq!(status(&device, Scope::Device).token_state, TokenState::None);

        // The management app re-creates it on boot; the next entry activates it.
        device.take_events();
        device.ensure_tokens(&rng);
        let token = escrowed(&device.take_events(), Scope::Device).unwrap();
        assert_eq!(token.expose().len(), 32);
        assert_eq!(
            status(&device, Scope::Device).token_state,
            TokenState::Pending
        );
        device.ensure_tokens(&rng);
        assert!(escrowed(&device.take_events(), Scope::Device).is_none());
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW),
            EntryOutcome::Unlocked
        );
        assert_eq!(
            status(&device, Scope::Device).token_state,
            TokenState::Active
        );

        // Active survives a reboot and a round trip through persisted state.
        device.reboot();
        assert_eq!(
            status(&device, Scope::Device).token_state,
            TokenState::Active
        );
        let json = serde_json::to_string(&device.to_persisted()).unwrap();
        let mut restored =
            Device::from_persisted(serde_json::from_str(&json).unwrap(), KDF).unwrap();
        assert_eq!(
            status(&restored, Scope::Device).token_state,
            TokenState::Active
        );
        restored
            .reset_with_token(
                Scope::Device,
                &token,
                &pass("9146"),
                REQUIRE_ENTRY,
                "c1",
                &rng,
            )
            .unwrap();
    }

    #[test]
    fn throttled_entry_is_refused_without_counting() {
        let (mut device, _, _) = cosu_ready();
        device.lock(Scope::Device).unwrap();
        for n in 1..=4 {
            assert_eq!(
                enter(&mut device, Scope::Device, "0000", NOW),
                EntryOutcome::Refused(Refusal::WrongPasscode {
                    failed_attempts: n,
                    throttled_until_ms: 0
                })
            );
        }
        assert_eq!(
            enter(&mut device, Scope::Device, "0000", NOW),
            EntryOutcome::Refused(Refusal::WrongPasscode {
                failed_attempts: 5,
                throttled_until_ms: NOW + 30_000
            })
        );
        // Even the right passcode is refused unchecked, and the count stays.
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW + 29_999),
            EntryOutcome::Refused(Refusal::Throttled {
                until_ms: NOW + 30_000
            })
        );
        let throttled = status(&device, Scope::Device);
        assert_eq!(throttled.failed_attempts, 5);
        assert_eq!(throttled.throttled_until_ms, NOW + 30_000);
        assert!(throttled.locked);
        assert_eq!(
            device.statuses(NOW + 30_000)[0].throttled_until_ms,
            0,
            "no throttle shown once it has passed"
        );
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW + 30_000),
            EntryOutcome::Unlocked
        );
        assert_eq!(status(&device, Scope::Device).failed_attempts, 0);
    }

    #[test]
    fn refusal_messages() {
        let wrong = Refusal::WrongPasscode {
            failed_attempts: 5,
            throttled_until_ms: 30_000,
        };
        assert_eq!(
            wrong.to_string(),
            "wrong passcode (5 failed attempts); try again at 30000 ms since the epoch"
        );
        assert_eq!(
            EntryOutcome::Refused(Refusal::Wiped).to_string(),
            "the store was wiped after too many failed attempts"
        );
        let first = Refusal::WrongPasscode {
            failed_attempts: 1,
            throttled_until_ms: 0,
        };
        assert_eq!(first.to_string(), "wrong passcode (1 failed attempt)");
    }

    /// Runs a reset that must fail with `expected` and checks that nothing changed.
    fn assert_refused(
        device: &mut Device,
        rng: &SystemRandom,
        scope: Scope,
        token: &EscrowToken,
        new: &str,
        expected: ResetError,
    ) {
        let before = device.statuses(NOW);
        device.take_events();
        assert_eq!(
            device.reset_with_token(scope, token, &pass(new), REQUIRE_ENTRY, "c", rng),
            Err(expected)
        );
        assert_eq!(device.statuses(NOW), before);
        assert!(device.take_events().is_empty());
        assert!(device.notifications().is_empty());
    }

    #[test]
    fn reset_checks_in_order_and_changes_nothing_on_failure() {
        let rng = SystemRandom::new();
        let any = EscrowToken::new(vec![9; 32]);

        let (mut cosu, _, token) = cosu_ready();
        assert_refused(
            &mut cosu,
            &rng,
            Scope::WorkProfile,
            &token,
            "9146",
            ResetError::StoreMissing(Scope::WorkProfile),
        );

        // Token missing, even with a passcode the policy would refuse.
        let (mut device, _) = new_device(Ownership::Cosu);
        device
            .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
            .unwrap();
        device.set_policy(Scope::Device, Some(min_six())).unwrap();
        assert_refused(
            &mut device,
            &rng,
            Scope::Device,
            &any,
            "1",
            ResetError::TokenMissing,
        );

        // Token pending: not active, whatever the token sent.
        device.set_escrow_token(Scope::Device, any.clone()).unwrap();
        assert_refused(
            &mut device,
            &rng,
            Scope::Device,
            &any,
            "1",
            ResetError::TokenNotActive,
        );

        // Active but another token (or a short one): mismatch before the policy check.
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW),
            EntryOutcome::Unlocked
        );
        let other = EscrowToken::new(vec![8; 32]);
        assert_refused(
            &mut device,
            &rng,
            Scope::Device,
            &other,
            "1",
            ResetError::TokenMismatch,
        );
        let short = EscrowToken::new(vec![9; 4]);
        assert_refused(
            &mut device,
            &rng,
            Scope::Device,
            &short,
            "1",
            ResetError::TokenMismatch,
        );

        // Right token, passcode against the policy.
        assert_refused(
            &mut device,
            &rng,
            Scope::Device,
            &any,
            "91468",
            ResetError::PolicyViolation(PolicyViolation::TooShort { min: 6 }),
        );
        // Without policy, Android's own rule still applies.
        device.set_policy(Scope::Device, None).unwrap();
        assert_refused(
            &mut device,
            &rng,
            Scope::Device,
            &any,
            "914",
            ResetError::PolicyViolation(PolicyViolation::TooShort { min: 4 }),
        );
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW),
            EntryOutcome::Unlocked
        );

        // Wiped comes before any token check.
        let (mut wiped, _) = new_device(Ownership::Cosu);
        wiped
            .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
            .unwrap();
        wiped
            .set_policy(
                Scope::Device,
                Some(PasscodePolicy {
                    max_failed_attempts_before_wipe: 1,
                    ..PasscodePolicy::default()
                }),
            )
            .unwrap();
        enter(&mut wiped, Scope::Device, "0000", NOW);
        assert_refused(
            &mut wiped,
            &rng,
            Scope::Device,
            &any,
            "9146",
            ResetError::StoreWiped(Scope::Device),
        );
    }

    fn min_six() -> PasscodePolicy {
        PasscodePolicy {
            passcode_type: PasscodeType::Pin,
            min_length: 6,
            ..PasscodePolicy::default()
        }
    }

    #[test]
    fn reset_keeps_data_and_requires_entry_of_the_new_passcode() {
        let (mut device, rng, token) = cosu_ready();
        for _ in 0..3 {
            enter(&mut device, Scope::Device, "0000", NOW);
        }
        device
            .reset_with_token(
                Scope::Device,
                &token,
                &pass("9146"),
                REQUIRE_ENTRY,
                "cmd-1",
                &rng,
            )
            .unwrap();
        let events = device.take_events();
        let rotated = escrowed(&events, Scope::Device).expect("token rotated");
        assert_ne!(rotated.expose(), token.expose());
        assert!(
            events
                .iter()
                .any(|e| matches!(e, DeviceEvent::StatusChanged))
        );

        let after = status(&device, Scope::Device);
        assert!(after.locked && after.require_entry && after.has_passcode);
        assert_eq!(after.failed_attempts, 0);
        assert_eq!(after.token_state, TokenState::Pending);
        let notifications = device.notifications();
        assert_eq!(notifications.len(), 1);
        assert_eq!(notifications[0].id, "enter-new-passcode/device");
        assert_eq!(notifications[0].title, "Enter your new device passcode");
        assert_eq!(
            device.read_user_data(Scope::Device, "notes"),
            Err(DeviceError::StoreLocked(Scope::Device))
        );
        // The old token is gone.
        assert_eq!(
            device.reset_with_token(
                Scope::Device,
                &token,
                &pass("1739"),
                REQUIRE_ENTRY,
                "c",
                &rng
            ),
            Err(ResetError::TokenNotActive)
        );

        // A wrong entry (the old passcode) keeps the notification.
        assert!(matches!(
            enter(&mut device, Scope::Device, "2580", NOW + 1),
            EntryOutcome::Refused(Refusal::WrongPasscode {
                failed_attempts: 1,
                ..
            })
        ));
        assert_eq!(device.notifications().len(), 1);
        device.take_events();

        // The right one clears it, reports the entry and activates the rotated token.
        assert_eq!(
            enter(&mut device, Scope::Device, "9146", NOW + 2),
            EntryOutcome::Unlocked
        );
        let events = device.take_events();
        assert!(events.iter().any(|e| matches!(
            e,
            DeviceEvent::NewPasscodeEntered { scope: Scope::Device, command_id, at_ms }
                if command_id == "cmd-1" && *at_ms == NOW + 2
        )));
        assert!(device.notifications().is_empty());
        let after = status(&device, Scope::Device);
        assert!(!after.require_entry && !after.locked);
        assert_eq!(after.token_state, TokenState::Active);
        assert_eq!(
            device
                .read_user_data(Scope::Device, "notes")
                .unwrap()
                .unwrap(),
            b"groceries"
        );
        // The rotated token works for the next reset.
        device
            .reset_with_token(
                Scope::Device,
                &rotated,
                &pass("1739"),
                REQUIRE_ENTRY,
                "cmd-2",
                &rng,
            )
            .unwrap();
    }

    #[test]
    fn reset_without_flags_leaves_an_unlocked_store_unlocked() {
        let (mut device, rng, token) = cosu_ready();
        device
            .reset_with_token(
                Scope::Device,
                &token,
                &pass("9146"),
                ResetOptions::default(),
                "c",
                &rng,
            )
            .unwrap();
        let after = status(&device, Scope::Device);
        assert!(!after.locked && !after.require_entry);
        assert!(device.notifications().is_empty());
        let lock_now = ResetOptions {
            require_entry: false,
            lock_now: true,
        };
        let rotated = escrowed(&device.take_events(), Scope::Device).unwrap();
        assert_eq!(
            enter(&mut device, Scope::Device, "9146", NOW),
            EntryOutcome::Unlocked
        );
        device
            .reset_with_token(Scope::Device, &rotated, &pass("1739"), lock_now, "d", &rng)
            .unwrap();
        let after = status(&device, Scope::Device);
        assert!(after.locked && !after.require_entry);
    }

    #[test]
    fn unified_work_profile_follows_the_device_store() {
        let (mut device, rng, _) = cope_ready();
        let work = status(&device, Scope::WorkProfile);
        assert!(work.has_passcode && !work.separate_challenge && !work.locked);

        device.lock(Scope::Device).unwrap();
        assert!(status(&device, Scope::WorkProfile).locked);
        assert_eq!(
            device.read_user_data(Scope::WorkProfile, "mail"),
            Err(DeviceError::StoreLocked(Scope::WorkProfile))
        );
        // Its lock screen is the device's.
        assert_eq!(
            enter(&mut device, Scope::WorkProfile, "2580", NOW),
            EntryOutcome::Unlocked
        );
        assert!(!status(&device, Scope::Device).locked);
        assert_eq!(
            device
                .read_user_data(Scope::WorkProfile, "mail")
                .unwrap()
                .unwrap(),
            b"quarterly report"
        );

        // A token set now is pending until the device passcode is entered.
        device
            .set_escrow_token(Scope::WorkProfile, EscrowToken::new(vec![5; 32]))
            .unwrap();
        assert_eq!(
            status(&device, Scope::WorkProfile).token_state,
            TokenState::Pending
        );
        device.reboot();
        assert!(status(&device, Scope::WorkProfile).locked);
        assert_eq!(
            status(&device, Scope::WorkProfile).token_state,
            TokenState::None
        );
        device
            .set_escrow_token(Scope::WorkProfile, EscrowToken::new(vec![5; 32]))
            .unwrap();
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW),
            EntryOutcome::Unlocked
        );
        let work = status(&device, Scope::WorkProfile);
        assert!(!work.locked);
        assert_eq!(work.token_state, TokenState::Active);

        // Setting a work passcode needs the device passcode and makes the challenge separate.
        assert_eq!(
            device.set_passcode(Scope::WorkProfile, None, &pass("7391"), NOW, &rng),
            Err(DeviceError::CurrentPasscodeRequired(Scope::Device))
        );
        device
            .set_passcode(
                Scope::WorkProfile,
                Some(&pass("2580")),
                &pass("7391"),
                NOW,
                &rng,
            )
            .unwrap();
        assert!(status(&device, Scope::WorkProfile).separate_challenge);
        device.lock(Scope::Device).unwrap();
        assert!(!status(&device, Scope::WorkProfile).locked, "separate now");
        device.lock(Scope::WorkProfile).unwrap();
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW),
            EntryOutcome::Unlocked
        );
        assert!(status(&device, Scope::WorkProfile).locked);
        assert_eq!(
            enter(&mut device, Scope::WorkProfile, "7391", NOW),
            EntryOutcome::Unlocked
        );
    }

    #[test]
    fn work_reset_keeps_the_device_passcode_and_separates_the_challenge() {
        let (mut device, rng, work_token) = cope_ready();
        device.lock(Scope::Device).unwrap();
        device
            .reset_with_token(
                Scope::WorkProfile,
                &work_token,
                &pass("Work9182"),
                REQUIRE_ENTRY,
                "cmd-w",
                &rng,
            )
            .unwrap();
        let events = device.take_events();
        assert!(escrowed(&events, Scope::WorkProfile).is_some());
        let work = status(&device, Scope::WorkProfile);
        assert!(work.separate_challenge && work.locked && work.require_entry);
        assert_eq!(work.token_state, TokenState::Pending);
        let notifications = device.notifications();
        assert_eq!(notifications.len(), 1);
        assert_eq!(notifications[0].id, "enter-new-passcode/work_profile");
        assert_eq!(notifications[0].scope, Scope::WorkProfile);
        assert_eq!(notifications[0].title, "Enter your new work passcode");

        // The device passcode is untouched and no longer opens the work profile.
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW),
            EntryOutcome::Unlocked
        );
        assert!(status(&device, Scope::WorkProfile).locked);
        assert!(matches!(
            enter(&mut device, Scope::WorkProfile, "2580", NOW),
            EntryOutcome::Refused(Refusal::WrongPasscode { .. })
        ));
        assert_eq!(device.notifications().len(), 1);
        device.take_events();
        assert_eq!(
            enter(&mut device, Scope::WorkProfile, "Work9182", NOW + 5),
            EntryOutcome::Unlocked
        );
        assert!(device.take_events().iter().any(|e| matches!(
            e,
            DeviceEvent::NewPasscodeEntered { scope: Scope::WorkProfile, command_id, .. }
                if command_id == "cmd-w"
        )));
        assert!(device.notifications().is_empty());
        assert_eq!(
            status(&device, Scope::WorkProfile).token_state,
            TokenState::Active
        );
        assert_eq!(
            device
                .read_user_data(Scope::WorkProfile, "mail")
                .unwrap()
                .unwrap(),
            b"quarterly report"
        );
        assert_eq!(
            status(&device, Scope::Device).token_state,
            TokenState::Active
        );
    }

    #[test]
    fn work_profile_wipe_leaves_the_device() {
        let (mut device, rng, _) = cope_ready();
        device
            .write_user_data(Scope::Device, "photos", b"cat", &rng)
            .unwrap();
        device
            .set_passcode(
                Scope::WorkProfile,
                Some(&pass("2580")),
                &pass("7391"),
                NOW,
                &rng,
            )
            .unwrap();
        device
            .set_policy(
                Scope::WorkProfile,
                Some(PasscodePolicy {
                    max_failed_attempts_before_wipe: 3,
                    ..PasscodePolicy::default()
                }),
            )
            .unwrap();
        device.lock(Scope::WorkProfile).unwrap();
        device.take_events();
        for _ in 0..2 {
            enter(&mut device, Scope::WorkProfile, "0000", NOW);
        }
        assert!(!status(&device, Scope::WorkProfile).wiped);
        assert_eq!(
            enter(&mut device, Scope::WorkProfile, "0000", NOW),
            EntryOutcome::Refused(Refusal::Wiped)
        );
        let events = device.take_events();
        let wiped: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                DeviceEvent::StoreWiped { scope, at_ms } => Some((*scope, *at_ms)),
                _ => None,
            })
            .collect();
        assert_eq!(wiped, vec![(Scope::WorkProfile, NOW)]);
        let work = status(&device, Scope::WorkProfile);
        assert!(work.wiped && work.locked && !work.has_passcode);
        assert_eq!(work.token_state, TokenState::None);
        assert_eq!(
            enter(&mut device, Scope::WorkProfile, "7391", NOW),
            EntryOutcome::Refused(Refusal::Wiped)
        );
        assert_eq!(
            device.read_user_data(Scope::WorkProfile, "mail"),
            Err(DeviceError::StoreWiped(Scope::WorkProfile))
        );
        assert_eq!(
            device.set_escrow_token(Scope::WorkProfile, EscrowToken::new(vec![1; 32])),
            Err(DeviceError::StoreWiped(Scope::WorkProfile))
        );
        device.ensure_tokens(&rng);
        assert!(escrowed(&device.take_events(), Scope::WorkProfile).is_none());

        // The device itself is untouched.
        assert!(!status(&device, Scope::Device).wiped);
        device.lock(Scope::Device).unwrap();
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW),
            EntryOutcome::Unlocked
        );
        assert_eq!(
            device
                .read_user_data(Scope::Device, "photos")
                .unwrap()
                .unwrap(),
            b"cat"
        );
    }

    #[test]
    fn device_store_wipe_takes_the_whole_device() {
        let (mut device, _, _) = cosu_ready();
        device
            .set_policy(
                Scope::Device,
                Some(PasscodePolicy {
                    max_failed_attempts_before_wipe: 2,
                    ..PasscodePolicy::default()
                }),
            )
            .unwrap();
        enter(&mut device, Scope::Device, "0000", NOW);
        assert_eq!(
            enter(&mut device, Scope::Device, "0000", NOW),
            EntryOutcome::Refused(Refusal::Wiped)
        );
        assert!(status(&device, Scope::Device).wiped);
        assert_eq!(
            device.read_user_data(Scope::Device, "notes"),
            Err(DeviceError::StoreWiped(Scope::Device))
        );

        // On a device with a work profile, the device store's limit removes the profile too.
        let (mut cope, rng, _) = cope_ready();
        cope.set_passcode(
            Scope::WorkProfile,
            Some(&pass("2580")),
            &pass("7391"),
            NOW,
            &rng,
        )
        .unwrap();
        cope.set_policy(
            Scope::Device,
            Some(PasscodePolicy {
                max_failed_attempts_before_wipe: 1,
                ..PasscodePolicy::default()
            }),
        )
        .unwrap();
        cope.take_events();
        enter(&mut cope, Scope::Device, "0000", NOW);
        assert!(cope.statuses(NOW).iter().all(|s| s.wiped));
        let wiped = cope
            .take_events()
            .iter()
            .filter(|e| matches!(e, DeviceEvent::StoreWiped { .. }))
            .count();
        assert_eq!(wiped, 2);
    }

    #[test]
    fn set_passcode_confirms_the_current_one() {
        let (mut device, rng, token) = cosu_ready();
        assert_eq!(
            device.set_passcode(Scope::Device, None, &pass("1739"), NOW, &rng),
            Err(DeviceError::CurrentPasscodeRequired(Scope::Device))
        );
        assert_eq!(
            device.set_passcode(Scope::Device, Some(&pass("0000")), &pass("1739"), NOW, &rng),
            Err(DeviceError::WrongPasscode)
        );
        assert_eq!(status(&device, Scope::Device).failed_attempts, 1);
        device.set_policy(Scope::Device, Some(min_six())).unwrap();
        assert_eq!(
            device.set_passcode(Scope::Device, Some(&pass("2580")), &pass("1739"), NOW, &rng),
            Err(DeviceError::Policy(PolicyViolation::TooShort { min: 6 }))
        );
        assert_eq!(status(&device, Scope::Device).failed_attempts, 1);
        device
            .set_passcode(
                Scope::Device,
                Some(&pass("2580")),
                &pass("173946"),
                NOW,
                &rng,
            )
            .unwrap();
        let after = status(&device, Scope::Device);
        assert!(!after.locked);
        assert_eq!(after.failed_attempts, 0);
        assert_eq!(after.token_state, TokenState::Active);
        device.lock(Scope::Device).unwrap();
        assert!(matches!(
            enter(&mut device, Scope::Device, "2580", NOW),
            EntryOutcome::Refused(_)
        ));
        assert_eq!(
            enter(&mut device, Scope::Device, "173946", NOW),
            EntryOutcome::Unlocked
        );
        // The token escrowed before the change still resets the store.
        device
            .reset_with_token(
                Scope::Device,
                &token,
                &pass("914682"),
                REQUIRE_ENTRY,
                "c",
                &rng,
            )
            .unwrap();
    }

    #[test]
    fn set_passcode_while_throttled_is_refused() {
        let (mut device, rng, _) = cosu_ready();
        for _ in 0..5 {
            enter(&mut device, Scope::Device, "0000", NOW);
        }
        assert_eq!(
            device.set_passcode(Scope::Device, Some(&pass("2580")), &pass("1739"), NOW, &rng),
            Err(DeviceError::Throttled {
                until_ms: NOW + 30_000
            })
        );
        assert_eq!(status(&device, Scope::Device).failed_attempts, 5);
    }

    #[test]
    fn status_changes_are_reported_once() {
        let (mut device, _, _) = cosu_ready();
        device.lock(Scope::Device).unwrap();
        assert!(matches!(
            device.take_events().as_slice(),
            [DeviceEvent::StatusChanged]
        ));
        device.lock(Scope::Device).unwrap();
        device.set_policy(Scope::Device, Some(min_six())).unwrap();
        assert!(device.take_events().is_empty());
        // A store without passcode has nothing to lock.
        let (mut open, _) = new_device(Ownership::Aosp);
        open.lock(Scope::Device).unwrap();
        assert!(!status(&open, Scope::Device).locked);
        assert!(open.take_events().is_empty());
    }

    #[test]
    fn user_data_needs_an_unlocked_store() {
        let (mut device, rng, _) = cosu_ready();
        device.lock(Scope::Device).unwrap();
        assert_eq!(
            device.write_user_data(Scope::Device, "k", b"v", &rng),
            Err(DeviceError::StoreLocked(Scope::Device))
        );
        assert_eq!(
            device.read_user_data(Scope::WorkProfile, "k"),
            Err(DeviceError::StoreMissing(Scope::WorkProfile))
        );
    }

    #[test]
    fn persisted_state_holds_no_secret_and_restores_as_a_boot() {
        let (mut device, rng, token) = cope_ready();
        device.set_enrollment(Enrollment {
            device_id: "dev-1".into(),
            credential: DeviceCredential::new("cred-xyz"),
            command_public_key: vec![1; 32],
        });
        device
            .reset_with_token(
                Scope::WorkProfile,
                &token,
                &pass("Zq7!wX3k"),
                REQUIRE_ENTRY,
                "cmd-9",
                &rng,
            )
            .unwrap();
        let pending = escrowed(&device.take_events(), Scope::WorkProfile).unwrap();
        let device_token = EscrowToken::new(vec![0x5a; 32]);
        device
            .set_escrow_token(Scope::Device, device_token.clone())
            .unwrap();
        device.set_policy(Scope::Device, Some(min_six())).unwrap();

        let json = serde_json::to_string(&device.to_persisted()).unwrap();
        for secret in ["2580", "Zq7!wX3k", "quarterly report"] {
            assert!(!json.contains(secret), "{secret} leaked into {json}");
        }
        for bytes in [token.expose(), pending.expose(), device_token.expose()] {
            for rendering in renderings(bytes) {
                assert!(!json.contains(&rendering), "a token leaked into {json}");
            }
        }

        let mut restored =
            Device::from_persisted(serde_json::from_str(&json).unwrap(), KDF).unwrap();
        assert_eq!(restored.name(), "phone");
        assert_eq!(restored.ownership(), Ownership::Cope);
        assert_eq!(restored.enrollment().unwrap().device_id, "dev-1");
        assert_eq!(
            restored.enrollment().unwrap().credential.expose(),
            "cred-xyz"
        );
        assert_eq!(restored.policy(Scope::Device).unwrap(), Some(&min_six()));
        let statuses = restored.statuses(NOW);
        assert!(statuses.iter().all(|s| s.locked));
        assert!(statuses.iter().all(|s| s.token_state == TokenState::None));
        assert!(status(&restored, Scope::WorkProfile).require_entry);
        assert_eq!(restored.notifications().len(), 1);
        assert_eq!(
            enter(&mut restored, Scope::WorkProfile, "Zq7!wX3k", NOW),
            EntryOutcome::Unlocked
        );
        assert_eq!(
            restored
                .read_user_data(Scope::WorkProfile, "mail")
                .unwrap()
                .unwrap(),
            b"quarterly report"
        );
    }

    #[test]
    fn from_persisted_rejects_inconsistent_state() {
        let (device, _, _) = cope_ready();
        let mut persisted = device.to_persisted();
        persisted.ownership = Ownership::Cosu;
        assert!(matches!(
            Device::from_persisted(persisted, KDF),
            Err(DeviceError::CorruptState(_))
        ));
        let mut persisted = device.to_persisted();
        persisted.format = 99;
        assert!(matches!(
            Device::from_persisted(persisted, KDF),
            Err(DeviceError::CorruptState(_))
        ));
        let mut persisted = device.to_persisted();
        persisted.stores.reverse();
        assert!(matches!(
            Device::from_persisted(persisted, KDF),
            Err(DeviceError::CorruptState(_))
        ));
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let (mut device, rng, token) = cosu_ready();
        device.set_enrollment(Enrollment {
            device_id: "dev-1".into(),
            credential: DeviceCredential::new("cred-xyz"),
            command_public_key: vec![1; 32],
        });
        device
            .reset_with_token(
                Scope::Device,
                &token,
                &pass("Zq7!wX3k"),
                REQUIRE_ENTRY,
                "c",
                &rng,
            )
            .unwrap();
        // The rotated token sits in the outbox until taken.
        let shown = format!("{device:?}");
        let rotated = escrowed(&device.take_events(), Scope::Device).unwrap();
        for secret in ["2580", "Zq7!wX3k", "cred-xyz", "groceries"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for bytes in [token.expose(), rotated.expose()] {
            for rendering in renderings(bytes) {
                assert!(!shown.contains(&rendering), "a token in {shown}");
            }
        }
        assert!(shown.contains("<redacted>"));
        let command = Command {
            command_id: "c".into(),
            device_id: "d".into(),
            sequence: 1,
            not_after_ms: 0,
            kind: CommandKind::ResetPasscode {
                scope: Scope::Device,
                new_passcode: pass("Zq7!wX3k"),
                escrow_token: token.clone(),
                require_entry: true,
                lock_now: false,
            },
        };
        let shown = format!("{command:?}");
        assert!(!shown.contains("Zq7!wX3k"));
        assert!(
            renderings(token.expose())
                .iter()
                .all(|r| !shown.contains(r))
        );
    }

    /// Token states of every store, in scope order.
    fn token_states(device: &Device) -> Vec<TokenState> {
        device.statuses(NOW).iter().map(|s| s.token_state).collect()
    }

    /// Runs `change` and asserts that it changed some store's token state from `before` to
    /// `after` and queued a status report for it.
    fn assert_reported(
        device: &mut Device,
        what: &str,
        after: &[TokenState],
        change: impl FnOnce(&mut Device),
    ) {
        let before = token_states(device);
        device.take_events();
        change(device);
        assert_eq!(token_states(device), after, "{what}: token states");
        assert_ne!(before, after, "{what}: the token state must change");
        assert!(
            device
                .take_events()
                .iter()
                .any(|e| matches!(e, DeviceEvent::StatusChanged)),
            "{what}: no status report for a token-state change"
        );
    }

    #[test]
    fn every_token_state_change_is_reported() {
        use TokenState::{Active, None as Gone, Pending};
        let (mut device, rng) = new_device(Ownership::Cope);
        assert_eq!(token_states(&device), [Gone, Gone]);
        // Enrollment: no passcode yet, so both activate at once.
        assert_reported(&mut device, "enrollment", &[Active, Active], |d| {
            d.ensure_tokens(&rng)
        });
        device
            .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
            .unwrap();
        // Replacing a token over a passcode makes it pending.
        assert_reported(&mut device, "set token", &[Pending, Active], |d| {
            d.set_escrow_token(Scope::Device, EscrowToken::new(vec![3; 32]))
                .unwrap();
        });
        // The next entry activates it.
        assert_reported(&mut device, "entry", &[Active, Active], |d| {
            assert_eq!(
                d.enter_passcode(Scope::Device, &pass("2580"), NOW).unwrap(),
                EntryOutcome::Unlocked
            );
        });
        // A unified work profile's token activates with the device's entry.
        device
            .set_escrow_token(Scope::WorkProfile, EscrowToken::new(vec![4; 32]))
            .unwrap();
        device
            .set_escrow_token(Scope::Device, EscrowToken::new(vec![5; 32]))
            .unwrap();
        assert_reported(&mut device, "reboot", &[Gone, Gone], |d| d.reboot());
        assert_reported(&mut device, "boot re-creation", &[Pending, Pending], |d| {
            d.ensure_tokens(&rng)
        });
        assert_reported(&mut device, "unified entry", &[Active, Active], |d| {
            assert_eq!(
                d.enter_passcode(Scope::WorkProfile, &pass("2580"), NOW)
                    .unwrap(),
                EntryOutcome::Unlocked
            );
        });
        // A reset rotates the used token: the new one is pending.
        device
            .set_escrow_token(Scope::WorkProfile, EscrowToken::new(vec![6; 32]))
            .unwrap();
        device
            .enter_passcode(Scope::Device, &pass("2580"), NOW)
            .unwrap();
        assert_reported(&mut device, "reset", &[Active, Pending], |d| {
            d.reset_with_token(
                Scope::WorkProfile,
                &EscrowToken::new(vec![6; 32]),
                &pass("Work9182"),
                REQUIRE_ENTRY,
                "cmd",
                &rng,
            )
            .unwrap();
        });
        // A wipe takes the token with the store.
        device
            .set_policy(
                Scope::WorkProfile,
                Some(PasscodePolicy {
                    max_failed_attempts_before_wipe: 1,
                    ..PasscodePolicy::default()
                }),
            )
            .unwrap();
        assert_reported(&mut device, "wipe", &[Active, Gone], |d| {
            d.enter_passcode(Scope::WorkProfile, &pass("0000"), NOW)
                .unwrap();
        });
    }

    #[test]
    fn reboot_locks_every_store_loses_pending_tokens_and_keeps_the_notification() {
        let (mut device, rng, work_token) = cope_ready();
        device
            .reset_with_token(
                Scope::WorkProfile,
                &work_token,
                &pass("Work9182"),
                REQUIRE_ENTRY,
                "cmd-w",
                &rng,
            )
            .unwrap();
        let rotated = escrowed(&device.take_events(), Scope::WorkProfile).unwrap();
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW),
            EntryOutcome::Unlocked
        );
        let before = device.statuses(NOW);
        assert!(!before[0].locked);
        assert_eq!(before[0].token_state, TokenState::Active);
        assert_eq!(before[1].token_state, TokenState::Pending);

        device.reboot();
        let after = device.statuses(NOW);
        assert!(
            after.iter().all(|s| s.locked),
            "every store locks: {after:?}"
        );
        assert_eq!(
            after[0].token_state,
            TokenState::Active,
            "an active token survives: its wrap is on disk"
        );
        assert_eq!(
            after[1].token_state,
            TokenState::None,
            "a pending one is lost"
        );
        assert!(after[1].require_entry);
        let notifications = device.notifications();
        assert_eq!(notifications.len(), 1);
        assert_eq!(notifications[0].id, "enter-new-passcode/work_profile");
        // The lost token no longer resets anything.
        assert_eq!(
            device.reset_with_token(
                Scope::WorkProfile,
                &rotated,
                &pass("Work5555x"),
                REQUIRE_ENTRY,
                "c",
                &rng
            ),
            Err(ResetError::TokenMissing)
        );

        // The management app re-creates it; the user's entry of the new passcode clears the
        // notification and activates the new token.
        device.take_events();
        device.ensure_tokens(&rng);
        let recreated = escrowed(&device.take_events(), Scope::WorkProfile).unwrap();
        assert_ne!(recreated.expose(), rotated.expose());
        assert_eq!(
            status(&device, Scope::WorkProfile).token_state,
            TokenState::Pending
        );
        assert_eq!(
            enter(&mut device, Scope::WorkProfile, "Work9182", NOW),
            EntryOutcome::Unlocked
        );
        assert!(device.notifications().is_empty());
        assert_eq!(
            status(&device, Scope::WorkProfile).token_state,
            TokenState::Active
        );
        device
            .reset_with_token(
                Scope::WorkProfile,
                &recreated,
                &pass("Work5555x"),
                REQUIRE_ENTRY,
                "c2",
                &rng,
            )
            .unwrap();
    }

    #[test]
    fn unified_work_profile_wipe_limit_counts_the_device_failures() {
        let limit = |n| {
            Some(PasscodePolicy {
                max_failed_attempts_before_wipe: n,
                ..PasscodePolicy::default()
            })
        };
        let (mut device, _, _) = cope_ready();
        device.set_policy(Scope::WorkProfile, limit(3)).unwrap();
        device.lock(Scope::Device).unwrap();
        device.take_events();
        assert!(matches!(
            enter(&mut device, Scope::Device, "0000", NOW),
            EntryOutcome::Refused(Refusal::WrongPasscode {
                failed_attempts: 1,
                ..
            })
        ));
        assert!(matches!(
            enter(&mut device, Scope::WorkProfile, "0000", NOW),
            EntryOutcome::Refused(Refusal::WrongPasscode {
                failed_attempts: 2,
                ..
            })
        ));
        assert!(!status(&device, Scope::WorkProfile).wiped);
        // The third failure reaches the profile's limit: the profile goes, the device stays.
        assert_eq!(
            enter(&mut device, Scope::WorkProfile, "0000", NOW),
            EntryOutcome::Refused(Refusal::Wiped)
        );
        let wiped: Vec<_> = device
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                DeviceEvent::StoreWiped { scope, .. } => Some(scope),
                _ => None,
            })
            .collect();
        assert_eq!(wiped, [Scope::WorkProfile]);
        let device_store = status(&device, Scope::Device);
        assert!(!device_store.wiped);
        assert_eq!(device_store.failed_attempts, 3);
        assert_eq!(
            enter(&mut device, Scope::Device, "2580", NOW),
            EntryOutcome::Unlocked
        );

        // The strictest limit wins: the device's 2 comes before the profile's 3, and a device
        // limit takes every store.
        let (mut device, _, _) = cope_ready();
        device.set_policy(Scope::WorkProfile, limit(3)).unwrap();
        device.set_policy(Scope::Device, limit(2)).unwrap();
        enter(&mut device, Scope::Device, "0000", NOW);
        assert!(device.statuses(NOW).iter().all(|s| !s.wiped));
        assert_eq!(
            enter(&mut device, Scope::Device, "0000", NOW),
            EntryOutcome::Refused(Refusal::Wiped)
        );
        assert!(device.statuses(NOW).iter().all(|s| s.wiped));

        // A separate profile keeps its own count: device failures never reach its limit.
        let (mut device, rng, _) = cope_ready();
        device
            .set_passcode(
                Scope::WorkProfile,
                Some(&pass("2580")),
                &pass("7391"),
                NOW,
                &rng,
            )
            .unwrap();
        device.set_policy(Scope::WorkProfile, limit(1)).unwrap();
        enter(&mut device, Scope::Device, "0000", NOW);
        assert!(!status(&device, Scope::WorkProfile).wiped);
    }

    #[test]
    fn wrong_current_passcode_that_wipes_a_unified_profile_says_so() {
        let (mut device, rng, _) = cope_ready();
        device
            .set_policy(
                Scope::WorkProfile,
                Some(PasscodePolicy {
                    max_failed_attempts_before_wipe: 1,
                    ..PasscodePolicy::default()
                }),
            )
            .unwrap();
        assert_eq!(
            device.set_passcode(
                Scope::WorkProfile,
                Some(&pass("0000")),
                &pass("7391"),
                NOW,
                &rng
            ),
            Err(DeviceError::StoreWiped(Scope::WorkProfile))
        );
        assert!(status(&device, Scope::WorkProfile).wiped);
        assert!(!status(&device, Scope::Device).wiped);
    }

    #[test]
    fn throttled_refusal_says_when_to_try_again() {
        assert_eq!(
            EntryOutcome::Refused(Refusal::Throttled {
                until_ms: NOW + 30_000
            })
            .to_string(),
            format!(
                "too many failed attempts; try again at {} ms since the epoch",
                NOW + 30_000
            )
        );
        assert_eq!(EntryOutcome::Unlocked.to_string(), "the store is unlocked");
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert_eq!(
            DeviceError::StoreMissing(Scope::WorkProfile).to_string(),
            "this device has no work profile credential store"
        );
        assert_eq!(
            DeviceError::Token(TokenError::TooShort).to_string(),
            "token must be at least 32 bytes long"
        );
        assert_eq!(
            ResetError::PolicyViolation(PolicyViolation::TooShort { min: 6 }).to_string(),
            "the new passcode does not satisfy the policy: the passcode is shorter than 6 characters"
        );
    }
}
