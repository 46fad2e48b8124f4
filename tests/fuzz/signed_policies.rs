//! Signed policies as a device receives them: a `ControlMessage` off the wire, its policy's
//! Ed25519 signature checked (behind the policy prefix) and its body decoded and applied by an
//! enrolled device model. Inputs of even length have their policy body signed with the control
//! plane's key, so the decoder and the rules after the signature check are reached; the others
//! keep the signature they carry.

use crate::driver::fuzz;
use crate::enrolled_kiosk::{DEVICE_ID, enrolled_kiosk, signing_key};
use droidfleet_agent::decode_policy;
use droidfleet_agent::device::{ErrorCode, Scope};
use droidfleet_proto::signing::{key_id, policy_signature_verifies, policy_signed_bytes};
use droidfleet_proto::v1 as pb;
use prost::Message;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

fn seeds(keys: &Ed25519KeyPair) -> Vec<Vec<u8>> {
    let body = |scope: pb::CredentialScope, min_length, version| pb::PolicyBody {
        device_id: DEVICE_ID.into(),
        scope: scope as i32,
        policy: Some(pb::PasscodePolicy {
            r#type: pb::PasscodeType::NumericComplex as i32,
            min_length,
            max_failed_attempts_before_wipe: 10,
            ..pb::PasscodePolicy::default()
        }),
        version,
    };
    [
        body(pb::CredentialScope::Device, 6, 1),
        body(pb::CredentialScope::WorkProfile, 8, 2),
    ]
    .iter()
    .map(|body| {
        let body = body.encode_to_vec();
        let signature = keys.sign(&policy_signed_bytes(&body)).as_ref().to_vec();
        pb::ControlMessage {
            body: Some(pb::control_message::Body::Policy(pb::SignedPolicy {
                body,
                signature,
                key_id: key_id(keys.public_key().as_ref()).to_vec(),
            })),
        }
        .encode_to_vec()
    })
    .collect()
}

#[test]
fn signed_policies() {
    let keys = signing_key();
    let rng = SystemRandom::new();
    let public = keys.public_key().as_ref().to_vec();
    fuzz("signed_policies", seeds(&keys), |input| {
        let Ok(message) = pb::ControlMessage::decode(input) else {
            return "not a ControlMessage".into();
        };
        let Some(pb::control_message::Body::Policy(policy)) = message.body else {
            return "not a policy".into();
        };
        let signed_here = input.len() % 2 == 0;
        let trusted_id = key_id(&public).to_vec();
        let (signature, signed_by) = if signed_here {
            let signature = keys.sign(&policy_signed_bytes(&policy.body));
            (signature.as_ref().to_vec(), trusted_id.clone())
        } else {
            (policy.signature.clone(), policy.key_id.clone())
        };
        // DEV-KEY-1: a signature counts only under the id of the key the device trusts.
        let genuine =
            signed_by == trusted_id && policy_signature_verifies(&public, &policy.body, &signature);
        let mut device = enrolled_kiosk(&keys, &rng);
        let before = device.policy(Scope::Device).unwrap().cloned();
        match device.apply_signed_policy(&policy.body, &signature, &signed_by, decode_policy) {
            Ok(()) => {
                assert!(genuine, "a policy without a valid signature was applied");
                format!("applied, signed here {signed_here}")
            }
            Err(refusal) => {
                if !genuine {
                    // DEV-POLICY-2: a policy whose signature does not verify changes nothing.
                    assert_eq!(refusal.code, ErrorCode::BadSignature, "{refusal:?}");
                }
                let after = device.policy(Scope::Device).unwrap().cloned();
                assert_eq!(after, before, "a refused policy changed the store");
                format!("refused {:?}, signed here {signed_here}", refusal.code)
            }
        }
    });
}
