//! Signed passcode policies from the control plane (PROTOCOL.md DEV-POLICY-1 to DEV-POLICY-3).
//!
//! [`Device::apply_signed_policy`] checks, in order: the key id names the key the device
//! trusts (from its enrollment or its last key update); the signature verifies, with that key,
//! over the policy prefix and the body bytes as received; the body
//! decodes; it names this device; the store exists; its version is not below the version of the
//! policy the store applies, nor equal to it with another policy. A refused policy changes
//! nothing: the store keeps the policy it had, so nobody without the control plane's key (a
//! relay, a replay of an older policy) can loosen or tighten what a store enforces.

use super::commands::ErrorCode;
use super::crypto;
use super::policy::PasscodePolicy;
use super::{Device, Scope};

/// A decoded policy body (`droidfleet.v1.PolicyBody`).
#[derive(Clone, Debug)]
pub struct PolicyUpdate {
    pub device_id: String,
    pub scope: Scope,
    /// The store's whole policy; `None` removes it.
    pub policy: Option<PasscodePolicy>,
    pub version: u64,
}

/// Why a signed policy was not applied (`droidfleet.v1.PolicyRefusal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRefusal {
    /// As the body named it, when it decodes; only a label for the answer.
    pub scope: Option<Scope>,
    pub version: u64,
    pub code: ErrorCode,
    /// A sentence for a human.
    pub reason: String,
}

impl Device {
    /// Applies one signed policy, or says why not. `body` is untrusted and `decode` turns it into
    /// a [`PolicyUpdate`] (`None`: not a well-formed policy). The same policy at the version the
    /// store already applies (sent again on every session) is accepted and changes nothing.
    pub fn apply_signed_policy(
        &mut self,
        body: &[u8],
        signature: &[u8],
        key_id: &[u8],
        decode: impl FnOnce(&[u8]) -> Option<PolicyUpdate>,
    ) -> Result<(), PolicyRefusal> {
        let update = decode(body);
        let refusal = |code, reason: String| PolicyRefusal {
            scope: update.as_ref().map(|u| u.scope),
            version: update.as_ref().map_or(0, |u| u.version),
            code,
            reason,
        };
        let Some(enrollment) = &self.enrollment else {
            return Err(refusal(
                ErrorCode::BadSignature,
                "the device is not enrolled, so it has no key to verify policies".to_owned(),
            ));
        };
        if let Some(mismatch) = crypto::key_id_mismatch(&enrollment.command_public_key, key_id) {
            return Err(refusal(
                ErrorCode::BadSignature,
                format!("the policy {mismatch}"),
            ));
        }
        if !crypto::verify_policy_signature(&enrollment.command_public_key, body, signature) {
            return Err(refusal(
                ErrorCode::BadSignature,
                "the policy signature does not verify with the control plane's key".to_owned(),
            ));
        }
        let Some(update) = &update else {
            return Err(refusal(
                ErrorCode::MalformedCommand,
                "the signed policy body is not a policy this device knows".to_owned(),
            ));
        };
        if update.device_id != enrollment.device_id {
            return Err(refusal(
                ErrorCode::WrongDevice,
                format!(
                    "the policy is for device {}, not {}",
                    update.device_id, enrollment.device_id
                ),
            ));
        }
        let store = match self.store_mut(update.scope) {
            Ok(store) => store,
            Err(error) => return Err(refusal(ErrorCode::StoreMissing, error.to_string())),
        };
        if let Some(applied) = store.policy_version() {
            let why = if update.version < applied {
                Some("is older than")
            } else if update.version == applied && store.policy() != update.policy.as_ref() {
                Some("carries another policy than")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(refusal(
                    ErrorCode::Replayed,
                    format!(
                        "policy version {} {why} version {applied}, which the {} store applies",
                        update.version, update.scope
                    ),
                ));
            }
        }
        store.set_signed_policy(update.policy.clone(), update.version);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Build, DeviceKey, Enrollment, KdfParams, Ownership, PasscodeType};
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn policy_signed_bytes(body: &[u8]) -> Vec<u8> {
        [crypto::POLICY_CONTEXT, body].concat()
    }

    fn key(rng: &SystemRandom) -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(rng).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    /// An enrolled COSU device trusting `keys`.
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

    fn pin(min_length: u32) -> PasscodePolicy {
        PasscodePolicy {
            passcode_type: PasscodeType::Pin,
            min_length,
            ..PasscodePolicy::default()
        }
    }

    fn update(scope: Scope, policy: Option<PasscodePolicy>, version: u64) -> PolicyUpdate {
        PolicyUpdate {
            device_id: "dev-1".into(),
            scope,
            policy,
            version,
        }
    }

    /// Signs a body named after the version, as the control plane signs (prefix, then body),
    /// and hands `update` to the device as that body's decoding.
    fn apply(
        device: &mut Device,
        keys: &Ed25519KeyPair,
        update: PolicyUpdate,
    ) -> Result<(), PolicyRefusal> {
        let body = update.version.to_be_bytes();
        let signature = keys.sign(&policy_signed_bytes(&body));
        let key_id = crypto::key_id(keys.public_key().as_ref());
        device.apply_signed_policy(&body, signature.as_ref(), &key_id, |_| Some(update))
    }

    #[test]
    fn a_signed_newer_policy_applies_and_the_same_one_again_changes_nothing() {
        let rng = SystemRandom::new();
        let keys = key(&rng);
        let mut device = enrolled(&keys, &rng);
        apply(&mut device, &keys, update(Scope::Device, Some(pin(6)), 3)).unwrap();
        assert_eq!(device.policy(Scope::Device).unwrap(), Some(&pin(6)));
        // Sent again on the next session: accepted, nothing changes.
        apply(&mut device, &keys, update(Scope::Device, Some(pin(6)), 3)).unwrap();
        apply(&mut device, &keys, update(Scope::Device, None, 4)).unwrap();
        assert_eq!(device.policy(Scope::Device).unwrap(), None);
        // The version survives a restart.
        let mut restored = Device::from_persisted(device.to_persisted(), KdfParams::LIGHT).unwrap();
        let refusal = apply(&mut restored, &keys, update(Scope::Device, Some(pin(6)), 3));
        assert_eq!(refusal.unwrap_err().code, ErrorCode::Replayed);
    }

    #[test]
    fn forged_misrouted_and_replayed_policies_change_nothing() {
        let rng = SystemRandom::new();
        let keys = key(&rng);
        let mut device = enrolled(&keys, &rng);
        apply(&mut device, &keys, update(Scope::Device, Some(pin(6)), 5)).unwrap();
        let refused = |device: &mut Device, result: Result<(), PolicyRefusal>, code| {
            let refusal = result.expect_err("refused");
            assert_eq!(refusal.code, code, "{}", refusal.reason);
            assert_eq!(device.policy(Scope::Device).unwrap(), Some(&pin(6)));
        };

        // Signed by another key; unsigned; a command's signature (no policy prefix).
        let other = key(&rng);
        let loose = update(Scope::Device, Some(pin(4)), 9);
        let result = apply(&mut device, &other, loose.clone());
        refused(&mut device, result, ErrorCode::BadSignature);
        let body = 9u64.to_be_bytes();
        let key_id = crypto::key_id(keys.public_key().as_ref());
        let result = device.apply_signed_policy(&body, &[], &key_id, |_| Some(loose.clone()));
        refused(&mut device, result, ErrorCode::BadSignature);
        let bare = keys.sign(&body);
        let result =
            device.apply_signed_policy(&body, bare.as_ref(), &key_id, |_| Some(loose.clone()));
        refused(&mut device, result, ErrorCode::BadSignature);

        // Another device's; an older version; the same version with another policy.
        let mut elsewhere = loose.clone();
        elsewhere.device_id = "dev-2".into();
        let result = apply(&mut device, &keys, elsewhere);
        refused(&mut device, result, ErrorCode::WrongDevice);
        let result = apply(&mut device, &keys, update(Scope::Device, Some(pin(4)), 4));
        refused(&mut device, result, ErrorCode::Replayed);
        let result = apply(&mut device, &keys, update(Scope::Device, Some(pin(4)), 5));
        refused(&mut device, result, ErrorCode::Replayed);

        // A store the device does not have; a verified body that is not a policy.
        let result = apply(&mut device, &keys, update(Scope::WorkProfile, None, 9));
        refused(&mut device, result, ErrorCode::StoreMissing);
        let signature = keys.sign(&policy_signed_bytes(&body));
        let result = device.apply_signed_policy(&body, signature.as_ref(), &key_id, |_| None);
        refused(&mut device, result, ErrorCode::MalformedCommand);

        // The trusted key's signature under another key's id, or under none.
        for other_id in [&[][..], &crypto::key_id(other.public_key().as_ref())[..]] {
            let result = device
                .apply_signed_policy(&body, signature.as_ref(), other_id, |_| Some(loose.clone()));
            refused(&mut device, result, ErrorCode::BadSignature);
        }
    }
}
