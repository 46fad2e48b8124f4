//! Signing-key updates as a device receives them: a `ControlMessage` off the wire, its update's
//! key id and Ed25519 signature checked (behind the key-update prefix) and its body decoded and
//! followed by an enrolled device model. Inputs of even length have their update body signed with
//! the trusted key under its id, so the decoder and the rules after the signature check are
//! reached; the others keep the signature and key id they carry.

use crate::driver::fuzz;
use crate::enrolled_kiosk::{DEVICE_ID, enrolled_kiosk, signing_key};
use droidfleet_agent::decode_key_update;
use droidfleet_agent::device::KeyUpdateRefusal;
use droidfleet_proto::signing::{key_id, key_update_signature_verifies, key_update_signed_bytes};
use droidfleet_proto::v1 as pb;
use prost::Message;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

fn seeds(keys: &Ed25519KeyPair) -> Vec<Vec<u8>> {
    let next = Ed25519KeyPair::from_seed_unchecked(&[8; 32]).expect("a 32-byte seed is a key");
    [
        (DEVICE_ID, next.public_key().as_ref().to_vec()),
        (DEVICE_ID, keys.public_key().as_ref().to_vec()),
        ("dev-other", next.public_key().as_ref().to_vec()),
    ]
    .iter()
    .map(|(device_id, public_key)| {
        let body = pb::KeyUpdateBody {
            device_id: device_id.to_string(),
            public_key: public_key.clone(),
        }
        .encode_to_vec();
        let signature = keys.sign(&key_update_signed_bytes(&body)).as_ref().to_vec();
        pb::ControlMessage {
            body: Some(pb::control_message::Body::KeyUpdate(pb::SignedKeyUpdate {
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
fn signed_key_updates() {
    let keys = signing_key();
    let rng = SystemRandom::new();
    let public = keys.public_key().as_ref().to_vec();
    let trusted_id = key_id(&public).to_vec();
    fuzz("signed_key_updates", seeds(&keys), |input| {
        let Ok(message) = pb::ControlMessage::decode(input) else {
            return "not a ControlMessage".into();
        };
        let Some(pb::control_message::Body::KeyUpdate(update)) = message.body else {
            return "not a key update".into();
        };
        let signed_here = input.len() % 2 == 0;
        let (signature, signed_by) = if signed_here {
            let signature = keys.sign(&key_update_signed_bytes(&update.body));
            (signature.as_ref().to_vec(), trusted_id.clone())
        } else {
            (update.signature.clone(), update.key_id.clone())
        };
        // DEV-KEY-2: only an update the trusted key signed, under its id, can move the device.
        let genuine = signed_by == trusted_id
            && key_update_signature_verifies(&public, &update.body, &signature);
        let mut device = enrolled_kiosk(&keys, &rng);
        let outcome =
            device.apply_key_update(&update.body, &signature, &signed_by, decode_key_update);
        let trusted_after = device
            .enrollment()
            .expect("the kiosk stays enrolled")
            .command_public_key
            .clone();
        match outcome {
            Ok(changed) => {
                assert!(
                    genuine,
                    "a key update without a valid signature was followed"
                );
                let body = decode_key_update(&update.body).expect("a followed update decodes");
                assert_eq!(
                    body.device_id, DEVICE_ID,
                    "another device's update was followed"
                );
                assert_eq!(
                    trusted_after, body.public_key,
                    "the device trusts another key"
                );
                assert_eq!(changed, body.public_key != public);
                format!("followed, changed {changed}, signed here {signed_here}")
            }
            Err(refusal) => {
                assert_eq!(
                    trusted_after, public,
                    "a refused key update changed the key"
                );
                match refusal {
                    KeyUpdateRefusal::NotTrustedKey => {
                        assert_ne!(
                            signed_by, trusted_id,
                            "the trusted key's id was not trusted"
                        );
                        format!("not the trusted key, signed here {signed_here}")
                    }
                    KeyUpdateRefusal::Invalid(reason) => {
                        format!("refused: {reason}, signed here {signed_here}")
                    }
                }
            }
        }
    });
}
