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
//! Layout, from the bottom up:
//! - [`secret`]: zeroized, redacted secret types.
//! - [`crypto`]: Argon2id, HKDF, AES-256-GCM, Ed25519, and making random secrets.
//! - [`policy`]: Android's passcode rules; [`throttle`]: Gatekeeper's schedule.
//! - [`android`]: the API levels the model simulates and the rules that change between them;
//!   [`profile`]: maker profiles, each maker's departures from AOSP as data.
//! - [`store`]: one credential store.
//! - this file: the model's vocabulary (ownership, scopes, statuses, notifications, events,
//!   errors) and [`Device`] with its tokens, locking, reboot, policies, user data, reset and
//!   persisted form.
//! - `lock_screen`: entering and changing a passcode (failure counts, throttling, wipes).
//! - [`commands`]: verifying, running and recording signed commands; [`signed_policy`]:
//!   verifying and applying signed policies; [`key_update`]: the one signing key the device
//!   trusts, replaced only by an update that key signed.
//!
//! `lock_screen` and `commands` add to [`Device`]'s methods rather than wrap it.
//!
//! The behaviour follows Android's LockSettingsService, SyntheticPasswordManager,
//! DevicePolicyManagerService and Gatekeeper; where the model simplifies, the item says so.

pub mod android;
pub mod commands;
pub mod crypto;
pub mod key_update;
mod lock_screen;
pub mod policy;
pub mod profile;
pub mod secret;
pub mod signed_policy;
pub mod store;
pub mod throttle;

use std::fmt;

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

pub use android::{ApiLevel, UnknownApiLevel};
pub use commands::{Command, CommandKind, CommandResult, ErrorCode};
pub use crypto::{CryptoError, KdfParams};
pub use key_update::{KeyUpdate, KeyUpdateRefusal};
pub use lock_screen::{EntryOutcome, Refusal};
/// The shorter name the gRPC edge uses.
pub(crate) use policy::PasscodeComplexity as Complexity;
pub use policy::{PasscodeComplexity, PasscodePolicy, PasscodeType, PolicyViolation, Requirement};
pub use profile::Profile;
pub use secret::{DeviceKey, EnrollmentToken, EscrowToken, Passcode, TokenError};
pub use signed_policy::{PolicyRefusal, PolicyUpdate};
pub use store::{PromptReason, ResetError, ResetOptions};

use commands::CommandLog;
use store::{CredentialStore, NewPasscode, PersistedStore};

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

/// Which Android a device runs: its API level and its maker's profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Build {
    pub api_level: ApiLevel,
    pub profile: Profile,
}

impl fmt::Display for Build {
    /// "API 34 / aosp", as the load test's report and the screen show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "API {} / {}", self.api_level, self.profile)
    }
}

/// What a locked store's lock screen says above the passcode field, when it asks for more than
/// a routine unlock (SystemUI's keyguard prompt). Shown for the device's keyguard: a work
/// profile's reset is announced by its management app's notification instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockScreenPrompt {
    pub scope: Scope,
    pub reason: PromptReason,
    /// SystemUI's text for the reason (`kg_prompt_reason_device_admin`,
    /// `kg_prompt_reason_restart_pin` / `_password`).
    pub message: String,
}

/// A notification on the device's screen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub scope: Scope,
    pub title: String,
    pub text: String,
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
    #[error(
        "the {0} store has no passcode, so a lock would only turn the screen off and anyone \
         could open it again"
    )]
    NothingToLock(Scope),
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
    /// The private key whose public key the control plane bound to the device at this
    /// enrollment; it signs the proof that opens every session.
    pub key: DeviceKey,
    /// Ed25519 public key that signs every command and policy to this device: the one from
    /// enrollment, until a key update signed by it names its successor (`key_update.rs`).
    #[serde(with = "crypto::b64")]
    pub command_public_key: Vec<u8>,
}

/// Everything that survives a restart. It holds no passcode, no token and no unwrapped secret;
/// the device's private key is the one secret in it, because the device needs it to reconnect.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PersistedDevice {
    format: u32,
    name: String,
    ownership: Ownership,
    /// Absent in state files written before versions were modelled: those devices were the
    /// newest level on the AOSP profile.
    #[serde(default)]
    api_level: ApiLevel,
    #[serde(default = "aosp_profile_name")]
    profile: String,
    enrollment: Option<Enrollment>,
    stores: Vec<PersistedStore>,
    commands: CommandLog,
}

fn aosp_profile_name() -> String {
    Profile::default().name().to_owned()
}

impl PersistedDevice {
    /// The Android the state file says the device runs.
    pub fn build(&self) -> Result<Build, DeviceError> {
        let profile = Profile::named(&self.profile).ok_or_else(|| {
            DeviceError::CorruptState(format!("unknown maker profile {:?}", self.profile))
        })?;
        Ok(Build {
            api_level: self.api_level,
            profile,
        })
    }
}

/// One simulated Android device.
#[derive(Debug)]
pub struct Device {
    name: String,
    ownership: Ownership,
    /// Its Android version and maker decide which rules the model applies.
    build: Build,
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
        build: Build,
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
            build,
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

    pub fn build(&self) -> Build {
        self.build
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

    pub(crate) fn store(&self, scope: Scope) -> Result<&CredentialStore, DeviceError> {
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

    /// The management app's "enter your new work passcode" notification, while a work-profile
    /// reset's passcode has not been entered (or, on a maker that keeps it, until a work app is
    /// opened). Intune documents this notification for work-profile resets only; after a
    /// device-level reset the keyguard itself asks for the new passcode (see
    /// [`Device::lock_screen_prompts`]), so no notification is invented for it.
    pub fn notifications(&self) -> Vec<Notification> {
        self.work_store
            .iter()
            .filter(|store| store.shows_notification())
            .map(|store| Notification {
                id: format!("enter-new-passcode/{}", store.scope().as_str()),
                scope: store.scope(),
                title: "Enter your new work passcode".to_owned(),
                text: "Your IT admin reset your work passcode. Enter the new passcode to keep \
                       using your work apps."
                    .to_owned(),
            })
            .collect()
    }

    /// What the device's locked keyguard says above its passcode field: "Device locked by
    /// admin" after `lockNow` or a reset that requires entry (`DevicePolicyManagerService`
    /// requires strong authentication, `STRONG_AUTH_REQUIRED_AFTER_DPM_LOCK_NOW`, and SystemUI's
    /// bouncer shows `kg_prompt_reason_device_admin`), and the restart prompt after a boot.
    pub fn lock_screen_prompts(&self) -> Vec<LockScreenPrompt> {
        let store = &self.device_store;
        let Some(reason) = store.prompt() else {
            return Vec::new();
        };
        let credential = if store.passcode_is_pin() {
            "PIN"
        } else {
            "Password"
        };
        let message = match reason {
            PromptReason::DeviceAdmin => "Device locked by admin".to_owned(),
            PromptReason::Restart => format!("{credential} is required after device restarts"),
        };
        vec![LockScreenPrompt {
            scope: Scope::Device,
            reason,
            message,
        }]
    }

    /// The user opens an app in the work profile, which must be unlocked. A maker's management
    /// app that keeps its notification after the entry clears it now.
    pub fn open_work_app(&mut self) -> Result<(), DeviceError> {
        let work = self.store(Scope::WorkProfile)?;
        if work.is_wiped() {
            return Err(DeviceError::StoreWiped(Scope::WorkProfile));
        }
        if !work.is_unlocked() {
            return Err(DeviceError::StoreLocked(Scope::WorkProfile));
        }
        self.store_mut(Scope::WorkProfile)?.dismiss_notification();
        Ok(())
    }

    /// What a new passcode for `scope` must meet on this device: the store's policy (the
    /// device's as its version lets the management app apply it), merged for the device store
    /// with a unified work profile's, whose requirements Android holds the shared credential to
    /// (`DevicePolicyManagerService.getPasswordMinimumMetrics` gathers the admins of every
    /// profile without a separate challenge); complexity as the version enforces it; the
    /// length the maker's lock screen takes.
    pub fn requirement(&self, scope: Scope) -> Result<Requirement, DeviceError> {
        let api_level = self.build.api_level;
        let own = match scope {
            Scope::Device => self
                .device_store
                .policy()
                .map(|p| api_level.device_policy_as_applied(self.ownership, p)),
            Scope::WorkProfile => self.store(scope)?.policy().cloned(),
        };
        let shared = match scope {
            Scope::Device => self
                .work_store
                .as_ref()
                .filter(|work| work.is_unified())
                .and_then(CredentialStore::policy),
            Scope::WorkProfile => None,
        };
        let policy = match (own, shared) {
            (Some(own), Some(shared)) => Some(own.merged_with(shared)),
            (own, shared) => own.or_else(|| shared.cloned()),
        };
        Ok(Requirement {
            policy,
            complexity_enforced: api_level.enforces_required_complexity(),
            max_length: self.build.profile.maker().max_passcode_length(),
        })
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

    /// `DevicePolicyManager.lockNow` from a remote lock: as [`Device::lock`], and the keyguard
    /// says an admin locked it. A store without a passcode is refused rather than "locked":
    /// Android's lockNow would only turn the screen off, and anyone could open it again, so an
    /// admin must not be told it is locked.
    pub fn remote_lock(&mut self, scope: Scope) -> Result<(), DeviceError> {
        let store = self.store(scope)?;
        if store.is_wiped() {
            return Err(DeviceError::StoreWiped(scope));
        }
        if !self.is_secure(store) {
            return Err(DeviceError::NothingToLock(scope));
        }
        self.lock(scope)?;
        if scope == Scope::Device {
            self.device_store.lock_by_admin();
        }
        Ok(())
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

    /// Opens a unified work profile with the device store's secret, now that the device store is
    /// open; a separate work profile keeps its own lock.
    fn unlock_unified_work(&mut self) -> Result<(), CryptoError> {
        if let (Some(work), Some(parent)) = (self.work_store.as_mut(), self.device_store.secret()) {
            work.unlock_from_parent(parent)?;
        }
        Ok(())
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

    /// What the management app does after a re-enrollment: the control plane dropped the
    /// escrowed tokens, so every live store gets a fresh one (pending where a passcode protects
    /// it, until the user's next entry), each handed to the runtime as a
    /// [`DeviceEvent::EscrowToken`].
    pub fn renew_tokens(&mut self, rng: &dyn SecureRandom) {
        for scope in self.scopes() {
            if self.store(scope).is_ok_and(CredentialStore::is_wiped) {
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

    /// `DevicePolicyManager.resetPasswordWithToken`, checks in order: store exists, the version
    /// lets the management app reset it, not wiped, token set, token active, token matches, new
    /// passcode meets [`Device::requirement`]. A refused reset changes nothing. A successful one keeps the store's data,
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
        let requirement = self
            .requirement(scope)
            .map_err(|_| ResetError::StoreMissing(scope))?;
        if let Some(why) = self
            .build
            .api_level
            .reset_refusal(self.ownership, scope == Scope::Device)
        {
            return Err(ResetError::ApiLevel(why));
        }
        self.tracked(|device| {
            let store = device
                .store_mut(scope)
                .map_err(|_| ResetError::StoreMissing(scope))?;
            let new = NewPasscode {
                passcode: new,
                requirement: &requirement,
            };
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

    /// The Argon2id runs of both stores since the last call, and the counts back at zero: the
    /// runtime times the change that ran them, since the model reads no clock.
    pub fn take_argon2_runs(&mut self) -> u32 {
        let work = self
            .work_store
            .as_mut()
            .map_or(0, CredentialStore::take_argon2_runs);
        self.device_store.take_argon2_runs() + work
    }

    pub fn to_persisted(&self) -> PersistedDevice {
        PersistedDevice {
            format: PERSISTED_FORMAT,
            name: self.name.clone(),
            ownership: self.ownership,
            api_level: self.build.api_level,
            profile: self.build.profile.name().to_owned(),
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
        let build = persisted.build()?;
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
            build,
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
mod tests;
