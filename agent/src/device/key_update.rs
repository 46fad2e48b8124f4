//! The control plane's signing key changing under an enrolled device (PROTOCOL.md DEV-KEY-2).
//!
//! A device trusts one signing key at a time. [`Device::apply_key_update`] replaces it only with
//! a key named by an update that the trusted key itself signed (behind a prefix of its own) for
//! this device: whoever does not hold the trusted key cannot make the device trust another, and
//! once the device follows, the earlier key signs nothing it accepts any more (DEV-KEY-1). Keys
//! are never reused, so an old update replayed later is signed by a key the device no longer
//! trusts and changes nothing.

use super::Device;
use super::crypto;

/// A decoded key update body (`droidfleet.v1.KeyUpdateBody`).
#[derive(Clone, Debug)]
pub struct KeyUpdate {
    pub device_id: String,
    /// The Ed25519 public key that signs from now on.
    pub public_key: Vec<u8>,
}

/// Why a key update changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyUpdateRefusal {
    /// Signed by a key the device does not trust: after a rotation every session carries one
    /// update per earlier key, and a device that already follows the current key refuses the
    /// others as a matter of course.
    NotTrustedKey,
    /// Named the trusted key but is not a valid update for this device: forged, misrouted or
    /// malformed. The sentence says which.
    Invalid(String),
}

impl Device {
    /// Follows a signed key update, or says why not. `body` is untrusted and `decode` turns it
    /// into a [`KeyUpdate`]. Returns whether the trusted key changed (an update naming the key
    /// the device already trusts changes nothing).
    pub fn apply_key_update(
        &mut self,
        body: &[u8],
        signature: &[u8],
        key_id: &[u8],
        decode: impl FnOnce(&[u8]) -> Option<KeyUpdate>,
    ) -> Result<bool, KeyUpdateRefusal> {
        let invalid = |reason: &str| Err(KeyUpdateRefusal::Invalid(reason.to_owned()));
        let Some(enrollment) = &mut self.enrollment else {
            return invalid("the device is not enrolled, so it trusts no key");
        };
        if crypto::key_id_mismatch(&enrollment.command_public_key, key_id).is_some() {
            return Err(KeyUpdateRefusal::NotTrustedKey);
        }
        if !crypto::verify_key_update_signature(&enrollment.command_public_key, body, signature) {
            return invalid("the key update's signature does not verify with the trusted key");
        }
        let Some(update) = decode(body) else {
            return invalid("the signed body is not a key update this device knows");
        };
        if update.device_id != enrollment.device_id {
            return invalid("the key update is for another device");
        }
        if update.public_key.len() != 32 {
            return invalid("the key update's public key is not 32 bytes");
        }
        if update.public_key == enrollment.command_public_key {
            return Ok(false);
        }
        enrollment.command_public_key = update.public_key;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Build, DeviceKey, Enrollment, KdfParams, Ownership};
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn key(rng: &SystemRandom) -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(rng).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn enrolled(keys: &Ed25519KeyPair, rng: &SystemRandom) -> Device {
        let mut device = Device::new(
            "d".into(),
            Ownership::Cosu,
            Build::default(),
            KdfParams::LIGHT,
            rng,
        );
        device.set_enrollment(Enrollment {
            device_id: "dev-1".into(),
            key: DeviceKey::new([5; 32]),
            command_public_key: keys.public_key().as_ref().to_vec(),
        });
        device
    }

    /// `signer`'s update naming `next` for `device_id`, handed to the device.
    fn apply(
        device: &mut Device,
        signer: &Ed25519KeyPair,
        next: &[u8],
        device_id: &str,
    ) -> Result<bool, KeyUpdateRefusal> {
        let body = next.to_vec();
        let signature = signer.sign(&[crypto::KEY_UPDATE_CONTEXT, &body].concat());
        let update = KeyUpdate {
            device_id: device_id.into(),
            public_key: next.to_vec(),
        };
        let key_id = crypto::key_id(signer.public_key().as_ref());
        device.apply_key_update(&body, signature.as_ref(), &key_id, |_| Some(update))
    }

    fn trusted(device: &Device) -> Vec<u8> {
        device.enrollment().unwrap().command_public_key.clone()
    }

    #[test]
    fn an_update_signed_by_the_trusted_key_replaces_it_and_survives_a_restart() {
        let rng = SystemRandom::new();
        let (old, new, newer) = (key(&rng), key(&rng), key(&rng));
        let mut device = enrolled(&old, &rng);
        assert_eq!(
            apply(&mut device, &old, new.public_key().as_ref(), "dev-1"),
            Ok(true)
        );
        assert_eq!(trusted(&device), new.public_key().as_ref());
        // Sent again on the next session: signed by a key the device no longer trusts.
        assert_eq!(
            apply(&mut device, &old, new.public_key().as_ref(), "dev-1"),
            Err(KeyUpdateRefusal::NotTrustedKey)
        );
        assert_eq!(
            apply(&mut device, &new, new.public_key().as_ref(), "dev-1"),
            Ok(false)
        );
        let mut restored = Device::from_persisted(device.to_persisted(), KdfParams::LIGHT).unwrap();
        assert_eq!(trusted(&restored), new.public_key().as_ref());
        // An old update replayed cannot bring the old key back or skip to another.
        assert_eq!(
            apply(&mut restored, &old, newer.public_key().as_ref(), "dev-1"),
            Err(KeyUpdateRefusal::NotTrustedKey)
        );
        assert_eq!(trusted(&restored), new.public_key().as_ref());
    }

    #[test]
    fn forged_misrouted_and_malformed_updates_change_nothing() {
        let rng = SystemRandom::new();
        let (trusted_key, attacker) = (key(&rng), key(&rng));
        let mut device = enrolled(&trusted_key, &rng);
        let next = attacker.public_key().as_ref().to_vec();
        let invalid = |result: Result<bool, KeyUpdateRefusal>| {
            assert!(
                matches!(result, Err(KeyUpdateRefusal::Invalid(_))),
                "{result:?}"
            );
        };
        // Signed by another key that claims the trusted key's id.
        let body = next.clone();
        let signature = attacker.sign(&[crypto::KEY_UPDATE_CONTEXT, &body].concat());
        let trusted_id = crypto::key_id(trusted_key.public_key().as_ref());
        let decoded = KeyUpdate {
            device_id: "dev-1".into(),
            public_key: next.clone(),
        };
        invalid(
            device.apply_key_update(&body, signature.as_ref(), &trusted_id, |_| {
                Some(decoded.clone())
            }),
        );
        // The trusted key's signature without the prefix (a command's signature).
        let bare = trusted_key.sign(&body);
        invalid(
            device.apply_key_update(&body, bare.as_ref(), &trusted_id, |_| Some(decoded.clone())),
        );
        // Another device's update; a key of the wrong length; a body that is no update.
        invalid(apply(&mut device, &trusted_key, &next, "dev-2"));
        invalid(apply(&mut device, &trusted_key, &next[..31], "dev-1"));
        let signature = trusted_key.sign(&[crypto::KEY_UPDATE_CONTEXT, &body].concat());
        invalid(device.apply_key_update(&body, signature.as_ref(), &trusted_id, |_| None));
        assert_eq!(trusted(&device), trusted_key.public_key().as_ref());
    }
}
