//! One credential store: the device keyguard (Android user 0) or the work profile (its own user
//! with its own "work challenge"), after Android's LockSettingsService and
//! SyntheticPasswordManager.
//!
//! Key hierarchy: a random synthetic secret → a data key (HKDF) → each user-data value
//! (AES-256-GCM). The secret is only ever stored wrapped: under the passcode (Argon2id), under
//! the active escrow token (HKDF), or, for a work profile that shares the device's challenge,
//! under a key derived from the device store's secret. Unlocking means recovering the secret;
//! locking means forgetting it. Because a passcode change or a token reset re-wraps the *same*
//! secret, the user's data survives both.

use std::collections::BTreeMap;
use std::fmt;

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use super::crypto::{self, CryptoError, KdfParams, Key, Nonce, SealedBox, b64};
use super::policy::{PasscodePolicy, PolicyViolation, Requirement};
use super::secret::{EscrowToken, Passcode, SyntheticSecret};
use super::throttle;
use super::{DeviceError, Scope, StoreStatus, TokenState};

const INFO_NO_CREDENTIAL: &[u8] = b"droidfleet/v1/no-credential";
const INFO_UNIFIED: &[u8] = b"droidfleet/v1/unified-work-challenge";
const INFO_ESCROW_TOKEN: &[u8] = b"droidfleet/v1/escrow-token";
const INFO_USER_DATA: &[u8] = b"droidfleet/v1/user-data";

/// Binds a sealed box to what it holds and to its store, so no box can stand in for another.
fn aad(purpose: &str, scope: Scope) -> Vec<u8> {
    format!("droidfleet/v1/{purpose}/{}", scope.as_str()).into_bytes()
}

/// How the store's secret is protected against the user's challenge.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Challenge {
    /// No credential. The key is derivable by anyone, like Android's default credential for a
    /// user without a lock screen: it protects nothing, but lets such a store come back unlocked
    /// after a boot through the same code path as the others.
    None { sealed: SealedBox },
    Passcode {
        #[serde(with = "b64")]
        salt: Vec<u8>,
        /// Kept with the wrap so a change of the agent's parameters never locks a user out.
        kdf: KdfParams,
        sealed: SealedBox,
        /// Digits only: the lock screen shows a PIN pad and says "PIN" in its prompts. Absent
        /// in state files written before prompts were modelled, which then say "password".
        #[serde(default)]
        pin: bool,
    },
    /// A work profile sharing the device's challenge: it unlocks when the device store does.
    Unified { sealed: SealedBox },
    /// Wiped after too many failed entries; nothing is left to unlock.
    Wiped,
}

/// The persistent part of a store: nothing in it reveals a passcode, a token or the secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PersistedStore {
    scope: Scope,
    /// HKDF salt of the keys derived from tokens, the secret and the no-credential constant.
    #[serde(with = "b64")]
    salt: Vec<u8>,
    challenge: Challenge,
    /// The secret wrapped under the active escrow token.
    escrow: Option<SealedBox>,
    data: BTreeMap<String, SealedBox>,
    policy: Option<PasscodePolicy>,
    /// The version of the signed policy that set `policy`. `None` until one came (and in state
    /// files written before policies were signed), so the first may carry any version.
    #[serde(default)]
    policy_version: Option<u64>,
    failed_attempts: u32,
    last_failure_at_ms: u64,
    /// Command id of the reset whose new passcode the user has not entered yet.
    require_entry: Option<String>,
    /// The user entered a reset's passcode, but the maker's management app keeps its
    /// notification until a work app is opened (a maker profile's quirk).
    #[serde(default)]
    notification_kept: bool,
}

/// Why a locked store's own lock screen asks for its credential, when it is more than a routine
/// unlock: SystemUI's keyguard prompt reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptReason {
    /// `lockNow` or a reset with `RESET_PASSWORD_REQUIRE_ENTRY` required strong authentication
    /// (`STRONG_AUTH_REQUIRED_AFTER_DPM_LOCK_NOW`): "Device locked by admin".
    DeviceAdmin,
    /// The device booted and the credential was not entered since
    /// (`STRONG_AUTH_REQUIRED_AFTER_BOOT`): "PIN is required after device restarts".
    Restart,
}

/// How a token reset ends, after Android's `resetPasswordWithToken` flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetOptions {
    /// The user must enter the new passcode (raises the notification; locks the store).
    pub require_entry: bool,
    pub lock_now: bool,
}

/// The passcode a reset sets, with what it must meet on this device.
pub(crate) struct NewPasscode<'a> {
    pub(crate) passcode: &'a Passcode,
    pub(crate) requirement: &'a Requirement,
}

/// Why a reset with a token was refused, one variant per check, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResetError {
    #[error("this device has no {0} credential store")]
    StoreMissing(Scope),
    /// The device's Android version does not let its management app run this reset; the
    /// sentence says why.
    #[error("{0}")]
    ApiLevel(String),
    #[error(
        "the {0} store was wiped after too many failed attempts and has no credential to reset"
    )]
    StoreWiped(Scope),
    #[error("the store has no escrow token")]
    TokenMissing,
    #[error(
        "the escrow token is not active: the user has not entered the passcode since it was set"
    )]
    TokenNotActive,
    #[error("the escrow token does not match the store's token")]
    TokenMismatch,
    #[error("the new passcode does not satisfy the policy: {0}")]
    PolicyViolation(PolicyViolation),
    #[error(transparent)]
    Crypto(CryptoError),
}

/// A credential store with its in-memory state: the secret while unlocked, a pending token, and
/// why its lock screen asks for the credential.
pub(crate) struct CredentialStore {
    state: PersistedStore,
    secret: Option<SyntheticSecret>,
    /// Android keeps a token set over an existing credential in memory only, so a reboot
    /// before the next successful entry loses it.
    pending_token: Option<EscrowToken>,
    /// Android's strong-authentication flags live in memory too: a boot replaces an admin's
    /// lock with the boot's own reason.
    prompt: Option<PromptReason>,
    /// Argon2id runs since the runtime last took the count (`take_argon2_runs`): the model reads
    /// no clock, so the fleet times the blocking change that ran them and records each run.
    argon2_runs: u32,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("scope", &self.state.scope)
            .field("own_passcode", &self.has_own_passcode())
            .field("unified", &self.is_unified())
            .field("unlocked", &self.is_unlocked())
            .field("token_state", &self.token_state())
            .field("failed_attempts", &self.state.failed_attempts)
            .field("wiped", &self.is_wiped())
            .field("data_keys", &self.state.data.len())
            .finish()
    }
}

impl CredentialStore {
    /// A new store, unlocked, without credential; a work profile (`parent` given) starts with
    /// the device's challenge.
    pub(crate) fn create(
        scope: Scope,
        parent: Option<&SyntheticSecret>,
        rng: &dyn SecureRandom,
    ) -> Result<Self, CryptoError> {
        let secret = SyntheticSecret::generate(rng)?;
        let salt = crypto::random_salt(rng)?;
        let nonce = Nonce::random(rng)?;
        let challenge = match parent {
            None => Challenge::None {
                sealed: Key::from_random(&[], &salt, INFO_NO_CREDENTIAL)?.seal(
                    nonce,
                    secret.expose(),
                    &aad("no-credential", scope),
                )?,
            },
            Some(parent) => Challenge::Unified {
                sealed: Key::from_random(parent.expose(), &salt, INFO_UNIFIED)?.seal(
                    nonce,
                    secret.expose(),
                    &aad("unified", scope),
                )?,
            },
        };
        Ok(CredentialStore {
            state: PersistedStore {
                scope,
                salt,
                challenge,
                escrow: None,
                data: BTreeMap::new(),
                policy: None,
                policy_version: None,
                failed_attempts: 0,
                last_failure_at_ms: 0,
                require_entry: None,
                notification_kept: false,
            },
            secret: Some(secret),
            pending_token: None,
            prompt: None,
            argon2_runs: 0,
        })
    }

    /// A store as a boot finds it: locked, without pending token, its lock screen asking for the
    /// credential because of the boot.
    pub(crate) fn from_persisted(state: PersistedStore) -> Self {
        let prompt =
            matches!(state.challenge, Challenge::Passcode { .. }).then_some(PromptReason::Restart);
        CredentialStore {
            state,
            secret: None,
            pending_token: None,
            prompt,
            argon2_runs: 0,
        }
    }

    /// The Argon2id runs since the last call, and the count back at zero.
    pub(crate) fn take_argon2_runs(&mut self) -> u32 {
        std::mem::take(&mut self.argon2_runs)
    }

    pub(crate) fn to_persisted(&self) -> PersistedStore {
        self.state.clone()
    }

    pub(crate) fn scope(&self) -> Scope {
        self.state.scope
    }

    pub(crate) fn is_wiped(&self) -> bool {
        matches!(self.state.challenge, Challenge::Wiped)
    }

    pub(crate) fn has_own_passcode(&self) -> bool {
        matches!(self.state.challenge, Challenge::Passcode { .. })
    }

    pub(crate) fn is_unified(&self) -> bool {
        matches!(self.state.challenge, Challenge::Unified { .. })
    }

    pub(crate) fn is_unlocked(&self) -> bool {
        self.secret.is_some()
    }

    pub(crate) fn token_state(&self) -> TokenState {
        if self.state.escrow.is_some() {
            TokenState::Active
        } else if self.pending_token.is_some() {
            TokenState::Pending
        } else {
            TokenState::None
        }
    }

    pub(crate) fn policy(&self) -> Option<&PasscodePolicy> {
        self.state.policy.as_ref()
    }

    #[cfg(test)]
    pub(crate) fn require_entry(&self) -> Option<&str> {
        self.state.require_entry.as_deref()
    }

    /// The enter-new-passcode notification shows: the entry is still due, or a maker's app
    /// keeps the notification after it.
    pub(crate) fn shows_notification(&self) -> bool {
        self.state.require_entry.is_some() || self.state.notification_kept
    }

    /// After the entry, the notification stays until [`CredentialStore::dismiss_notification`].
    pub(crate) fn keep_notification(&mut self) {
        self.state.notification_kept = true;
    }

    pub(crate) fn dismiss_notification(&mut self) {
        self.state.notification_kept = false;
    }

    /// Why the lock screen asks for the credential, while the store is locked.
    pub(crate) fn prompt(&self) -> Option<PromptReason> {
        self.prompt.filter(|_| !self.is_unlocked())
    }

    /// The passcode is a PIN (digits only).
    pub(crate) fn passcode_is_pin(&self) -> bool {
        matches!(self.state.challenge, Challenge::Passcode { pin: true, .. })
    }

    pub(crate) fn set_policy(&mut self, policy: Option<PasscodePolicy>) {
        self.state.policy = policy;
    }

    /// The version of the signed policy the store applies, if one came.
    pub(crate) fn policy_version(&self) -> Option<u64> {
        self.state.policy_version
    }

    /// Applies a verified signed policy (the checks are [`super::Device::apply_signed_policy`]'s).
    pub(crate) fn set_signed_policy(&mut self, policy: Option<PasscodePolicy>, version: u64) {
        self.state.policy = policy;
        self.state.policy_version = Some(version);
    }

    pub(crate) fn secret(&self) -> Option<&SyntheticSecret> {
        self.secret.as_ref()
    }

    /// `secure`: whether a passcode protects the store, which for a unified work profile is the
    /// device's passcode; only the device knows that.
    pub(crate) fn status(&self, now_ms: u64, secure: bool) -> StoreStatus {
        StoreStatus {
            scope: self.scope(),
            has_passcode: secure,
            locked: !self.is_unlocked(),
            token_state: self.token_state(),
            failed_attempts: self.state.failed_attempts,
            throttled_until_ms: self.throttled(now_ms).unwrap_or(0),
            wiped: self.is_wiped(),
            separate_challenge: self.scope() == Scope::WorkProfile && self.has_own_passcode(),
            require_entry: self.state.require_entry.is_some(),
        }
    }

    pub(crate) fn throttled(&self, now_ms: u64) -> Option<u64> {
        throttle::active_throttle(
            self.state.failed_attempts,
            self.state.last_failure_at_ms,
            now_ms,
        )
    }

    /// Boot path of a store without credential; other stores are left as they are.
    pub(crate) fn unlock_without_credential(&mut self) -> Result<(), CryptoError> {
        if let Challenge::None { sealed } = &self.state.challenge {
            let key = Key::from_random(&[], &self.state.salt, INFO_NO_CREDENTIAL)?;
            let secret = open_secret(&key, sealed, &aad("no-credential", self.scope()))?;
            self.secret = Some(secret);
        }
        Ok(())
    }

    /// Unlocks a unified work profile with the device store's secret. Android verifies the
    /// profile's tied credential at that moment, so it counts as a successful entry.
    pub(crate) fn unlock_from_parent(
        &mut self,
        parent: &SyntheticSecret,
    ) -> Result<(), CryptoError> {
        if let Challenge::Unified { sealed } = &self.state.challenge {
            let key = Key::from_random(parent.expose(), &self.state.salt, INFO_UNIFIED)?;
            let secret = open_secret(&key, sealed, &aad("unified", self.scope()))?;
            self.record_success(secret)?;
        }
        Ok(())
    }

    /// One Argon2id run. `Ok(None)` for a wrong passcode (or a store without one).
    pub(crate) fn verify_passcode(
        &mut self,
        passcode: &Passcode,
    ) -> Result<Option<SyntheticSecret>, CryptoError> {
        let Challenge::Passcode {
            salt, kdf, sealed, ..
        } = &self.state.challenge
        else {
            return Ok(None);
        };
        let key = Key::from_passcode(*kdf, passcode, salt)?;
        self.argon2_runs += 1;
        match open_secret(&key, sealed, &aad("passcode", self.scope())) {
            Ok(secret) => Ok(Some(secret)),
            Err(CryptoError::Open) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The user proved the credential: unlock, clear the failure count, activate a pending
    /// token. Returns the command id of the reset whose passcode this entry confirms.
    pub(crate) fn record_success(
        &mut self,
        secret: SyntheticSecret,
    ) -> Result<Option<String>, CryptoError> {
        let escrow = match &self.pending_token {
            Some(token) => Some(self.wrap_under_token(token, &secret)?),
            None => None,
        };
        if escrow.is_some() {
            self.state.escrow = escrow;
            self.pending_token = None;
        }
        self.secret = Some(secret);
        self.prompt = None;
        self.state.failed_attempts = 0;
        self.state.last_failure_at_ms = 0;
        Ok(self.state.require_entry.take())
    }

    /// Counts a wrong entry; returns the new count.
    pub(crate) fn record_failure(&mut self, now_ms: u64) -> u32 {
        self.state.failed_attempts = self.state.failed_attempts.saturating_add(1);
        self.state.last_failure_at_ms = now_ms;
        self.state.failed_attempts
    }

    /// Whether the store's own count of failures reached its policy's wipe limit.
    pub(crate) fn wipe_due(&self) -> bool {
        self.wipe_limit_reached(self.state.failed_attempts)
    }

    /// Whether `failures` reach this store's wipe limit (0 in the policy means no limit). A
    /// unified work profile has no count of its own: the device's count is held against it.
    pub(crate) fn wipe_limit_reached(&self, failures: u32) -> bool {
        self.policy()
            .map(|p| p.max_failed_attempts_before_wipe)
            .is_some_and(|limit| limit > 0 && failures >= limit)
    }

    pub(crate) fn lock(&mut self) {
        self.secret = None;
    }

    /// `DevicePolicyManager.lockNow`: locks, and the lock screen says an admin locked it.
    pub(crate) fn lock_by_admin(&mut self) {
        self.secret = None;
        self.prompt = Some(PromptReason::DeviceAdmin);
    }

    /// What a reboot loses: the secret and a pending token. A store with a passcode comes back
    /// asking for it because of the boot.
    pub(crate) fn power_off(&mut self) {
        self.secret = None;
        self.pending_token = None;
        self.prompt = self.has_own_passcode().then_some(PromptReason::Restart);
    }

    /// Replaces the store's token (`DevicePolicyManager.setResetPasswordToken`). It is active at
    /// once when no passcode protects the store (`secure` false) and the secret is at hand,
    /// otherwise pending until the next successful entry.
    pub(crate) fn set_token(
        &mut self,
        token: EscrowToken,
        secure: bool,
    ) -> Result<TokenState, CryptoError> {
        let escrow = match &self.secret {
            Some(secret) if !secure => Some(self.wrap_under_token(&token, secret)?),
            _ => None,
        };
        if escrow.is_some() {
            self.state.escrow = escrow;
            self.pending_token = None;
        } else {
            self.state.escrow = None;
            self.pending_token = Some(token);
        }
        Ok(self.token_state())
    }

    /// A fixed nonce is safe here: the key comes from a fresh random token of at least 32 bytes
    /// and only ever seals this store's one secret, so re-wrapping under the same token can only
    /// repeat the identical ciphertext. That is what lets an entry activate a token without a
    /// random generator.
    fn wrap_under_token(
        &self,
        token: &EscrowToken,
        secret: &SyntheticSecret,
    ) -> Result<SealedBox, CryptoError> {
        Key::from_random(token.expose(), &self.state.salt, INFO_ESCROW_TOKEN)?.seal(
            Nonce::single_use_key(),
            secret.expose(),
            &aad("escrow-token", self.scope()),
        )
    }

    /// The challenge of `passcode` over `secret`: one Argon2id run, which the caller counts once
    /// the challenge is made.
    fn passcode_challenge(
        &self,
        secret: &SyntheticSecret,
        passcode: &Passcode,
        kdf: KdfParams,
        rng: &dyn SecureRandom,
    ) -> Result<Challenge, CryptoError> {
        let salt = crypto::random_salt(rng)?;
        let sealed = Key::from_passcode(kdf, passcode, &salt)?.seal(
            Nonce::random(rng)?,
            secret.expose(),
            &aad("passcode", self.scope()),
        )?;
        let pin = passcode.expose().bytes().all(|b| b.is_ascii_digit());
        Ok(Challenge::Passcode {
            salt,
            kdf,
            sealed,
            pin,
        })
    }

    /// Sets the store's own passcode over the unlocked secret. The caller has checked the
    /// current credential and the policy. A unified work profile becomes separate here.
    pub(crate) fn set_passcode(
        &mut self,
        new: &Passcode,
        kdf: KdfParams,
        rng: &dyn SecureRandom,
    ) -> Result<(), DeviceError> {
        let secret = self
            .secret
            .as_ref()
            .ok_or(DeviceError::StoreLocked(self.scope()))?;
        self.state.challenge = self.passcode_challenge(secret, new, kdf, rng)?;
        self.argon2_runs += 1;
        self.state.failed_attempts = 0;
        self.state.last_failure_at_ms = 0;
        Ok(())
    }

    /// `resetPasswordWithToken`: every check first, then the whole change at once, so a refused
    /// reset leaves the store exactly as it was. Returns the rotated token, now pending.
    pub(crate) fn reset_with_token(
        &mut self,
        token: &EscrowToken,
        new: NewPasscode<'_>,
        options: ResetOptions,
        command_id: &str,
        kdf: KdfParams,
        rng: &dyn SecureRandom,
    ) -> Result<EscrowToken, ResetError> {
        if self.is_wiped() {
            return Err(ResetError::StoreWiped(self.scope()));
        }
        let Some(escrow) = &self.state.escrow else {
            return Err(if self.pending_token.is_some() {
                ResetError::TokenNotActive
            } else {
                ResetError::TokenMissing
            });
        };
        let key = Key::from_random(token.expose(), &self.state.salt, INFO_ESCROW_TOKEN)
            .map_err(ResetError::Crypto)?;
        let secret = match open_secret(&key, escrow, &aad("escrow-token", self.scope())) {
            Ok(secret) => secret,
            Err(CryptoError::Open) => return Err(ResetError::TokenMismatch),
            Err(e) => return Err(ResetError::Crypto(e)),
        };
        new.requirement
            .check(new.passcode)
            .map_err(ResetError::PolicyViolation)?;
        let challenge = self
            .passcode_challenge(&secret, new.passcode, kdf, rng)
            .map_err(ResetError::Crypto)?;
        self.argon2_runs += 1;
        let rotated = EscrowToken::generate(rng).map_err(ResetError::Crypto)?;

        self.state.challenge = challenge;
        self.state.failed_attempts = 0;
        self.state.last_failure_at_ms = 0;
        // The management app rotates a used token; with a passcode now set, the new one waits
        // for the user's next entry.
        self.state.escrow = None;
        self.pending_token = Some(rotated.clone());
        // A newer reset makes an older reset's notification moot.
        self.state.require_entry = options.require_entry.then(|| command_id.to_owned());
        self.state.notification_kept = false;
        if options.require_entry || options.lock_now {
            // Both require strong authentication, as lockNow does.
            self.lock_by_admin();
        }
        Ok(rotated)
    }

    /// Removes everything the store protected; it can never be unlocked or reset again.
    pub(crate) fn wipe(&mut self) {
        let state = &mut self.state;
        state.challenge = Challenge::Wiped;
        state.escrow = None;
        state.data.clear();
        state.failed_attempts = 0;
        state.last_failure_at_ms = 0;
        state.require_entry = None;
        state.notification_kept = false;
        self.secret = None;
        self.pending_token = None;
        self.prompt = None;
    }

    fn data_key(&self) -> Result<Key, DeviceError> {
        if self.is_wiped() {
            return Err(DeviceError::StoreWiped(self.scope()));
        }
        let secret = self
            .secret
            .as_ref()
            .ok_or(DeviceError::StoreLocked(self.scope()))?;
        Ok(Key::from_random(
            secret.expose(),
            &self.state.salt,
            INFO_USER_DATA,
        )?)
    }

    fn data_aad(&self, key: &str) -> Vec<u8> {
        aad(&format!("user-data/{key}"), self.scope())
    }

    pub(crate) fn write_data(
        &mut self,
        key: &str,
        value: &[u8],
        rng: &dyn SecureRandom,
    ) -> Result<(), DeviceError> {
        let sealed = self
            .data_key()?
            .seal(Nonce::random(rng)?, value, &self.data_aad(key))?;
        self.state.data.insert(key.to_owned(), sealed);
        Ok(())
    }

    pub(crate) fn read_data(&self, key: &str) -> Result<Option<Vec<u8>>, DeviceError> {
        let data_key = self.data_key()?;
        match self.state.data.get(key) {
            Some(sealed) => Ok(Some(data_key.open(sealed, &self.data_aad(key))?.to_vec())),
            None => Ok(None),
        }
    }
}

fn open_secret(key: &Key, sealed: &SealedBox, aad: &[u8]) -> Result<SyntheticSecret, CryptoError> {
    let plain = key.open(sealed, aad)?;
    SyntheticSecret::from_bytes(&plain).ok_or(CryptoError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    const KDF: KdfParams = KdfParams::LIGHT;

    fn store_with_passcode(rng: &SystemRandom, passcode: &str) -> CredentialStore {
        let mut store = CredentialStore::create(Scope::Device, None, rng).unwrap();
        store
            .set_passcode(&Passcode::new(passcode), KDF, rng)
            .unwrap();
        store
    }

    fn token(byte: u8) -> EscrowToken {
        EscrowToken::new(vec![byte; 32])
    }

    fn no_policy() -> Requirement {
        Requirement::newest(None)
    }

    fn new<'a>(passcode: &'a Passcode, requirement: &'a Requirement) -> NewPasscode<'a> {
        NewPasscode {
            passcode,
            requirement,
        }
    }

    #[test]
    fn passcode_verification_and_boot_lock() {
        let rng = SystemRandom::new();
        let store = store_with_passcode(&rng, "2580");
        let mut booted = CredentialStore::from_persisted(store.to_persisted());
        assert!(!booted.is_unlocked());
        assert!(
            booted
                .verify_passcode(&Passcode::new("2581"))
                .unwrap()
                .is_none()
        );
        let secret = booted
            .verify_passcode(&Passcode::new("2580"))
            .unwrap()
            .unwrap();
        assert_eq!(secret.expose(), store.secret().unwrap().expose());
        booted.record_success(secret).unwrap();
        assert!(booted.is_unlocked());
    }

    #[test]
    fn store_without_credential_unlocks_at_boot() {
        let rng = SystemRandom::new();
        let store = CredentialStore::create(Scope::Device, None, &rng).unwrap();
        let mut booted = CredentialStore::from_persisted(store.to_persisted());
        assert!(!booted.is_unlocked());
        booted.unlock_without_credential().unwrap();
        assert_eq!(
            booted.secret().unwrap().expose(),
            store.secret().unwrap().expose()
        );
    }

    #[test]
    fn unified_store_opens_with_parent_secret_only() {
        let rng = SystemRandom::new();
        let parent = CredentialStore::create(Scope::Device, None, &rng).unwrap();
        let other = CredentialStore::create(Scope::Device, None, &rng).unwrap();
        let work = CredentialStore::create(Scope::WorkProfile, parent.secret(), &rng).unwrap();
        let mut booted = CredentialStore::from_persisted(work.to_persisted());
        assert_eq!(
            booted.unlock_from_parent(other.secret().unwrap()),
            Err(CryptoError::Open)
        );
        booted.unlock_from_parent(parent.secret().unwrap()).unwrap();
        assert!(booted.is_unlocked());
    }

    #[test]
    fn token_pending_then_active_after_success() {
        let rng = SystemRandom::new();
        let mut store = store_with_passcode(&rng, "2580");
        assert_eq!(
            store.set_token(token(1), true).unwrap(),
            TokenState::Pending
        );
        let secret = store
            .verify_passcode(&Passcode::new("2580"))
            .unwrap()
            .unwrap();
        store.record_success(secret).unwrap();
        assert_eq!(store.token_state(), TokenState::Active);
        // Setting again replaces it and waits for the next entry again.
        assert_eq!(
            store.set_token(token(2), true).unwrap(),
            TokenState::Pending
        );
    }

    #[test]
    fn token_active_at_once_without_passcode() {
        let rng = SystemRandom::new();
        let mut store = CredentialStore::create(Scope::Device, None, &rng).unwrap();
        assert_eq!(
            store.set_token(token(1), false).unwrap(),
            TokenState::Active
        );
    }

    #[test]
    fn reset_checks_and_rotation() {
        let rng = SystemRandom::new();
        let mut store = CredentialStore::create(Scope::Device, None, &rng).unwrap();
        let options = ResetOptions {
            require_entry: true,
            lock_now: false,
        };
        let reset = |store: &mut CredentialStore, t: &EscrowToken, p: &str| {
            let passcode = Passcode::new(p);
            store.reset_with_token(t, new(&passcode, &no_policy()), options, "cmd", KDF, &rng)
        };
        assert_eq!(
            reset(&mut store, &token(1), "1357").unwrap_err(),
            ResetError::TokenMissing
        );
        store.set_token(token(1), false).unwrap();
        assert_eq!(
            reset(&mut store, &token(2), "1357").unwrap_err(),
            ResetError::TokenMismatch
        );
        let rotated = reset(&mut store, &token(1), "1357").unwrap();
        assert_ne!(rotated.expose(), token(1).expose());
        assert_eq!(store.token_state(), TokenState::Pending);
        assert_eq!(store.require_entry(), Some("cmd"));
        assert!(!store.is_unlocked());
        assert_eq!(
            reset(&mut store, &rotated, "1357").unwrap_err(),
            ResetError::TokenNotActive
        );
        assert!(
            store
                .verify_passcode(&Passcode::new("1357"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn data_is_sealed_and_needs_the_unlocked_secret() {
        let rng = SystemRandom::new();
        let mut store = store_with_passcode(&rng, "2580");
        store.write_data("photo", b"cat", &rng).unwrap();
        store.write_data("photo", b"dog", &rng).unwrap();
        assert_eq!(store.read_data("photo").unwrap().unwrap(), b"dog");
        assert_eq!(store.read_data("missing").unwrap(), None);
        let json = serde_json::to_string(&store.to_persisted()).unwrap();
        assert!(!json.contains("dog"));
        store.lock();
        assert_eq!(
            store.read_data("photo"),
            Err(DeviceError::StoreLocked(Scope::Device))
        );
        assert_eq!(
            store.write_data("x", b"y", &rng),
            Err(DeviceError::StoreLocked(Scope::Device))
        );
    }

    #[test]
    fn wipe_removes_everything() {
        let rng = SystemRandom::new();
        let mut store = store_with_passcode(&rng, "2580");
        store.write_data("k", b"v", &rng).unwrap();
        store.set_token(token(1), true).unwrap();
        store.wipe();
        assert!(store.is_wiped());
        assert!(!store.is_unlocked());
        assert_eq!(store.token_state(), TokenState::None);
        assert!(
            store
                .verify_passcode(&Passcode::new("2580"))
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store.read_data("k"),
            Err(DeviceError::StoreWiped(Scope::Device))
        );
        let options = ResetOptions::default();
        assert_eq!(
            store
                .reset_with_token(
                    &token(1),
                    new(&Passcode::new("1357"), &no_policy()),
                    options,
                    "c",
                    KDF,
                    &rng,
                )
                .unwrap_err(),
            ResetError::StoreWiped(Scope::Device)
        );
    }
}
