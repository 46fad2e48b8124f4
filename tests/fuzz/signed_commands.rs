//! Signed commands as a device receives them: a `ControlMessage` off the wire, its command's
//! Ed25519 signature checked and its body decoded and run by an enrolled device model. Inputs of
//! even length have their command body signed with the control plane's key, so the decoder and
//! the rules after the signature check are reached; the others keep the signature they carry.

use crate::driver::fuzz;
use crate::enrolled_kiosk::{DEVICE_ID, enrolled_kiosk, signing_key};
use droidfleet_agent::decode_command;
use droidfleet_agent::device::{Device, ErrorCode, EscrowToken, Passcode, Scope};
use droidfleet_proto::signing::key_id;
use droidfleet_proto::v1 as pb;
use prost::Message;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

const NOW: u64 = 1_700_000_000_000;

/// The enrolled kiosk with a passcode and an active escrow token.
fn device(keys: &Ed25519KeyPair, rng: &SystemRandom) -> Device {
    let mut device = enrolled_kiosk(keys, rng);
    device
        .set_escrow_token(Scope::Device, EscrowToken::new(vec![42; 32]))
        .expect("the store exists");
    device
        .set_passcode(Scope::Device, None, &Passcode::new("2580"), NOW, rng)
        .expect("a first passcode is set");
    device.take_events();
    device
}

fn seeds(keys: &Ed25519KeyPair) -> Vec<Vec<u8>> {
    let reset = |scope: pb::CredentialScope, passcode: &str, sequence| pb::CommandBody {
        command_id: format!("c{sequence}"),
        device_id: DEVICE_ID.into(),
        sequence,
        not_after_ms: NOW + 600_000,
        kind: Some(pb::command_body::Kind::ResetPasscode(
            pb::ResetPasscodeCommand {
                scope: scope as i32,
                new_passcode: passcode.into(),
                escrow_token: vec![42; 32],
                flags: vec![pb::ResetFlag::RequireEntry as i32],
            },
        )),
        traceparent: String::new(),
    };
    let lock = pb::CommandBody {
        command_id: "c9".into(),
        device_id: DEVICE_ID.into(),
        sequence: 9,
        not_after_ms: NOW + 600_000,
        kind: Some(pb::command_body::Kind::RemoteLock(pb::RemoteLockCommand {
            scope: pb::CredentialScope::WorkProfile as i32,
        })),
        traceparent: String::new(),
    };
    let bodies = [
        reset(pb::CredentialScope::Device, "9146", 1),
        reset(pb::CredentialScope::WorkProfile, "work-2718", 2),
        lock,
    ];
    bodies
        .iter()
        .map(|body| {
            let body = body.encode_to_vec();
            let signature = keys.sign(&body).as_ref().to_vec();
            pb::ControlMessage {
                body: Some(pb::control_message::Body::Command(pb::SignedCommand {
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
fn signed_commands() {
    let keys = signing_key();
    let rng = SystemRandom::new();
    fuzz("signed_commands", seeds(&keys), |input| {
        let Ok(message) = pb::ControlMessage::decode(input) else {
            return "not a ControlMessage".into();
        };
        let Some(pb::control_message::Body::Command(command)) = message.body else {
            return "not a command".into();
        };
        let signed_here = input.len() % 2 == 0;
        let trusted_id = key_id(keys.public_key().as_ref()).to_vec();
        let (signature, signed_by) = if signed_here {
            (
                keys.sign(&command.body).as_ref().to_vec(),
                trusted_id.clone(),
            )
        } else {
            (command.signature.clone(), command.key_id.clone())
        };
        // DEV-KEY-1: a signature counts only under the id of the key the device trusts.
        let genuine = signed_by == trusted_id && verifies(&keys, &command.body, &signature);
        let mut device = device(&keys, &rng);
        let before = device.statuses(NOW);
        let Some(result) = device.run_command(
            &command.body,
            &signature,
            &signed_by,
            decode_command,
            NOW,
            &rng,
        ) else {
            assert!(
                decode_command(&command.body).is_none(),
                "a decodable command got no result"
            );
            return format!("undecodable, signed here {signed_here}");
        };
        let code = result.error.as_ref().map(|(code, _)| *code);
        if !genuine {
            // DEV-COMMAND: a command whose signature does not verify changes nothing.
            assert_eq!(code, Some(ErrorCode::BadSignature), "{result:?}");
            assert_eq!(
                device.statuses(NOW),
                before,
                "a forged command changed the device"
            );
        }
        if result.success {
            assert!(genuine, "a command without a valid signature ran");
        }
        format!(
            "signed here {signed_here}, success {}, {code:?}",
            result.success
        )
    });
}

/// Whether `signature` is the key's signature of `body`.
fn verifies(keys: &Ed25519KeyPair, body: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, keys.public_key())
        .verify(body, signature)
        .is_ok()
}
