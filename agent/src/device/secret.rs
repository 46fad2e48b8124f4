//! Secret values of a simulated device: passcodes, escrow tokens, the device's private key and
//! the credential stores' synthetic secrets.
//!
//! Every type here wipes its memory when dropped and prints as `<redacted>` through `Debug` and
//! `Display`, so a secret cannot reach a log or an error message by accident. Code that needs the
//! value calls `expose`, which keeps every use easy to find in review.
//!
//! This module is the bottom of the model: it depends on no other part of it. Fresh random
//! secrets are made in `crypto` (`EscrowToken::generate`, `SyntheticSecret::generate`), with the
//! rest of what the model does with the random generator.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

const REDACTED: &str = "<redacted>";

macro_rules! redacted {
    ($($ty:ty),+) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(REDACTED)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(REDACTED)
            }
        }
    )+};
}

redacted!(
    Passcode,
    EscrowToken,
    DeviceKey,
    EnrollmentToken,
    SyntheticSecret
);

/// A lock-screen credential (PIN or password) as the user types it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Passcode(String);

impl Passcode {
    pub fn new(value: impl Into<String>) -> Self {
        Passcode(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Why an escrow token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Android's `DevicePolicyManager.setResetPasswordToken` refuses short tokens the same way.
    #[error("token must be at least {} bytes long", EscrowToken::MIN_LEN)]
    TooShort,
}

/// An escrow (reset-password) token. Any length can be held, because a token arriving in a
/// command is only compared; [`EscrowToken::check_length`] is what a store applies before it
/// accepts one.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EscrowToken(Vec<u8>);

impl EscrowToken {
    /// Android's minimum token length.
    pub const MIN_LEN: usize = 32;

    pub fn new(bytes: Vec<u8>) -> Self {
        EscrowToken(bytes)
    }

    pub fn check_length(&self) -> Result<(), TokenError> {
        if self.0.len() < Self::MIN_LEN {
            return Err(TokenError::TooShort);
        }
        Ok(())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// The device's Ed25519 private key, as its 32-byte seed: made for each enrollment, whose public
/// key the control plane binds to the device, and which signs the proof that opens every session.
/// Unlike the other secrets it is persisted: a device that forgot it could never reconnect after
/// a restart. Only the seed is kept, in memory as on disk (a key object is made to sign and
/// dropped), so a fleet of a hundred thousand devices holds 32 bytes each.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeviceKey([u8; DeviceKey::LEN]);

impl DeviceKey {
    pub const LEN: usize = 32;

    pub fn new(seed: [u8; Self::LEN]) -> Self {
        DeviceKey(seed)
    }

    pub fn expose(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

/// Base64, as every binary field of the state file.
impl Serialize for DeviceKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for DeviceKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let text = zeroize::Zeroizing::new(String::deserialize(d)?);
        let bytes = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|_| serde::de::Error::custom("the device key is not base64"))?,
        );
        let seed: [u8; Self::LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| serde::de::Error::custom("the device key is not 32 bytes"))?;
        Ok(DeviceKey(seed))
    }
}

/// A single-use enrollment token handed to the device (a re-enrollment after its credential was
/// revoked). Held in memory only, until the device enrolls with it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EnrollmentToken(String);

impl EnrollmentToken {
    pub fn new(value: impl Into<String>) -> Self {
        EnrollmentToken(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A credential store's synthetic secret (Android's synthetic password): the root of every key
/// that protects the store's data. It exists in memory only while the store is unlocked.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct SyntheticSecret([u8; SyntheticSecret::LEN]);

impl SyntheticSecret {
    pub(crate) const LEN: usize = 32;

    pub(crate) fn new(bytes: [u8; Self::LEN]) -> Self {
        SyntheticSecret(bytes)
    }

    /// Rebuilds a secret from an unwrapped blob; `None` when the blob has the wrong size, which
    /// means the persisted state is corrupt.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(SyntheticSecret::new(bytes.try_into().ok()?))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn debug_and_display_are_redacted() {
        let passcode = Passcode::new("Hunter42!");
        let token = EscrowToken::new(b"tok-tok-tok-tok-tok-tok-tok-tok-tok".to_vec());
        let key = DeviceKey::new([9; 32]);
        for shown in [
            format!("{passcode:?} {passcode}"),
            format!("{token:?} {token}"),
            format!("{key:?} {key}"),
        ] {
            assert_eq!(shown, "<redacted> <redacted>");
        }
        let secret = SyntheticSecret::generate(&SystemRandom::new()).unwrap();
        assert_eq!(format!("{secret:?}"), "<redacted>");
    }

    #[test]
    fn token_length_rule() {
        assert_eq!(
            EscrowToken::new(vec![7; 31]).check_length(),
            Err(TokenError::TooShort)
        );
        assert_eq!(
            TokenError::TooShort.to_string(),
            "token must be at least 32 bytes long"
        );
        assert!(EscrowToken::new(vec![7; 32]).check_length().is_ok());
        let generated = EscrowToken::generate(&SystemRandom::new()).unwrap();
        assert_eq!(generated.expose().len(), EscrowToken::MIN_LEN);
    }

    #[test]
    fn device_key_round_trips_through_json_and_refuses_another_length() {
        let json = serde_json::to_string(&DeviceKey::new([1; 32])).unwrap();
        assert_eq!(json, format!("\"{}\"", "AQEB".repeat(10) + "AQE="));
        let back: DeviceKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose(), &[1; 32]);
        let short = serde_json::from_str::<DeviceKey>("\"AQEB\"").unwrap_err();
        assert!(short.to_string().contains("not 32 bytes"), "{short}");
    }

    #[test]
    fn synthetic_secret_from_bytes_checks_length() {
        assert!(SyntheticSecret::from_bytes(&[1; 31]).is_none());
        let secret = SyntheticSecret::from_bytes(&[1; 32]).unwrap();
        assert_eq!(secret.expose(), &[1; 32]);
    }
}
