//! What the user does at a store's lock screen: entering its passcode (checked with one
//! Argon2id run, failures counted and throttled, the store wiped at its policy's limit) and
//! changing it (after confirming the current one, which counts as an entry too).
//!
//! A unified work profile has no challenge of its own: its entries and confirmations go to the
//! device's, and the device's failures count toward the profile's wipe limit.

use std::fmt;

use ring::rand::SecureRandom;

use super::secret::SyntheticSecret;
use super::{Device, DeviceError, DeviceEvent, Passcode, Scope, throttle};

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

impl Device {
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
        match self.store_mut(scope)?.verify_passcode(passcode)? {
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
        let keeps_notification = scope == Scope::WorkProfile
            && self
                .build
                .profile
                .maker()
                .keeps_work_notification_until_app_opened();
        let store = self.store_mut(scope)?;
        if let Some(command_id) = store.record_success(secret)? {
            if keeps_notification {
                store.keep_notification();
            }
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
        self.requirement(scope)?.check(new)?;
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
}
