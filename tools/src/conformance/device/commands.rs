//! The commands the kit sends a device under test: bodies, their signatures (or forgeries), and
//! the policies (signed too) and passcodes the cases use.

use super::super::transcript;
use droidfleet_proto::v1 as pb;
use prost::Message as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

/// A signed command as sent: the exact body bytes and signature, so it can be sent again byte
/// for byte (a redelivery) or with a changed signature (a forgery).
#[derive(Clone, Debug)]
pub(crate) struct SentCommand {
    pub(crate) id: String,
    pub(crate) sequence: u64,
    pub(crate) body: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    /// The id of the key the signature claims (PROTOCOL.md CP-KEY-1): the signing key's, unless
    /// a case claims another.
    pub(crate) key_id: Vec<u8>,
}

impl SentCommand {
    pub(crate) fn signed(body: &pb::CommandBody, key: &Ed25519KeyPair) -> SentCommand {
        let bytes = body.encode_to_vec();
        SentCommand::signed_bytes(body, bytes, key)
    }

    /// Signs `bytes` (which decode to `body`, however they are laid out).
    pub(crate) fn signed_bytes(
        body: &pb::CommandBody,
        bytes: Vec<u8>,
        key: &Ed25519KeyPair,
    ) -> SentCommand {
        let signature = key.sign(&bytes).as_ref().to_vec();
        SentCommand {
            id: body.command_id.clone(),
            sequence: body.sequence,
            body: bytes,
            signature,
            key_id: key_id(key),
        }
    }

    pub(crate) fn message(&self) -> pb::ControlMessage {
        pb::ControlMessage {
            body: Some(pb::control_message::Body::Command(pb::SignedCommand {
                body: self.body.clone(),
                signature: self.signature.clone(),
                key_id: self.key_id.clone(),
            })),
        }
    }

    /// One line for the transcript.
    pub(crate) fn describe(&self) -> String {
        transcript::signed_command(&pb::SignedCommand {
            body: self.body.clone(),
            signature: self.signature.clone(),
            key_id: self.key_id.clone(),
        })
    }
}

/// A policy for `device_id`'s store `scope`, signed with `key` as a control plane signs one
/// (PROTOCOL.md CP-POLICY-3).
pub(crate) fn signed_policy(
    key: &Ed25519KeyPair,
    device_id: &str,
    scope: i32,
    policy: Option<pb::PasscodePolicy>,
    version: u64,
) -> pb::SignedPolicy {
    let body = pb::PolicyBody {
        device_id: device_id.to_string(),
        scope,
        policy,
        version,
    }
    .encode_to_vec();
    let signature = key
        .sign(&droidfleet_proto::signing::policy_signed_bytes(&body))
        .as_ref()
        .to_vec();
    pb::SignedPolicy {
        body,
        signature,
        key_id: key_id(key),
    }
}

/// `key`'s id, as signed messages carry it (PROTOCOL.md CP-KEY-1).
pub(crate) fn key_id(key: &Ed25519KeyPair) -> Vec<u8> {
    droidfleet_proto::signing::key_id(key.public_key().as_ref()).to_vec()
}

/// A key update naming `next` for `device_id`, signed with `key` (PROTOCOL.md CP-KEY-2).
pub(crate) fn key_update(
    key: &Ed25519KeyPair,
    device_id: &str,
    next: &Ed25519KeyPair,
) -> pb::ControlMessage {
    let body = pb::KeyUpdateBody {
        device_id: device_id.to_string(),
        public_key: next.public_key().as_ref().to_vec(),
    }
    .encode_to_vec();
    let signature = key
        .sign(&droidfleet_proto::signing::key_update_signed_bytes(&body))
        .as_ref()
        .to_vec();
    pb::ControlMessage {
        body: Some(pb::control_message::Body::KeyUpdate(pb::SignedKeyUpdate {
            body,
            signature,
            key_id: key_id(key),
        })),
    }
}

pub(crate) fn policy_message(policy: pb::SignedPolicy) -> pb::ControlMessage {
    pb::ControlMessage {
        body: Some(pb::control_message::Body::Policy(policy)),
    }
}

/// A reset command's kind, with `RESET_FLAG_REQUIRE_ENTRY` as a control plane sends it.
pub(crate) fn reset(
    scope: pb::CredentialScope,
    passcode: &str,
    token: Vec<u8>,
) -> pb::command_body::Kind {
    pb::command_body::Kind::ResetPasscode(pb::ResetPasscodeCommand {
        scope: scope as i32,
        new_passcode: passcode.to_string(),
        escrow_token: token,
        flags: vec![pb::ResetFlag::RequireEntry as i32],
    })
}

pub(crate) fn remote_lock(scope: pb::CredentialScope) -> pb::command_body::Kind {
    pb::command_body::Kind::RemoteLock(pb::RemoteLockCommand {
        scope: scope as i32,
    })
}

/// The kit's policy for a store: a numeric-complex PIN of at least 6 for the device store, an
/// alphanumeric password of at least 8 for the work profile.
pub(crate) fn default_policy(scope: pb::CredentialScope) -> pb::PasscodePolicy {
    match scope {
        pb::CredentialScope::WorkProfile => pb::PasscodePolicy {
            r#type: pb::PasscodeType::Alphanumeric as i32,
            min_length: 8,
            ..Default::default()
        },
        _ => pb::PasscodePolicy {
            r#type: pb::PasscodeType::NumericComplex as i32,
            min_length: 6,
            ..Default::default()
        },
    }
}

/// Passcodes that satisfy [`default_policy`]: the first and second reset of a store.
pub(crate) fn good_passcodes(scope: pb::CredentialScope) -> [&'static str; 2] {
    match scope {
        pb::CredentialScope::WorkProfile => ["Tulip4Lane", "Harbor7Wind"],
        _ => ["860273", "593816"],
    }
}

/// One policy rule broken: the policy in force and a passcode that breaks it.
pub(crate) struct Violation {
    /// The rule, for messages.
    pub(crate) rule: &'static str,
    pub(crate) policy: pb::PasscodePolicy,
    pub(crate) passcode: &'static str,
}

/// A passcode breaking each rule of PROTOCOL.md's passcode rules (DEV-PASSCODE-1 to 4).
pub(crate) fn violations() -> Vec<Violation> {
    let pin = default_policy(pb::CredentialScope::Device);
    let password = default_policy(pb::CredentialScope::WorkProfile);
    let complex = pb::PasscodePolicy {
        r#type: pb::PasscodeType::Complex as i32,
        min_length: 8,
        min_upper_case: 1,
        min_symbols: 1,
        ..Default::default()
    };
    vec![
        Violation {
            rule: "DEV-PASSCODE-1: shorter than the policy's minimum",
            policy: pin,
            passcode: "58302",
        },
        Violation {
            rule: "DEV-PASSCODE-1: longer than 16 characters",
            policy: password,
            passcode: "Harbor7WindHarbor",
        },
        Violation {
            rule: "DEV-PASSCODE-1: a character outside printable ASCII",
            policy: password,
            passcode: "Harbör7Wind",
        },
        Violation {
            rule: "DEV-PASSCODE-2: a letter in a PIN",
            policy: pin,
            passcode: "58a302",
        },
        Violation {
            rule: "DEV-PASSCODE-2: a PIN where a password is required",
            policy: password,
            passcode: "58302914",
        },
        Violation {
            rule: "DEV-PASSCODE-2: no digit in an alphanumeric password",
            policy: password,
            passcode: "HarborWind",
        },
        Violation {
            rule: "DEV-PASSCODE-3: an ordered run of 4 digits",
            policy: pin,
            passcode: "913579",
        },
        Violation {
            rule: "DEV-PASSCODE-3: a repeated run of 4 digits",
            policy: pin,
            passcode: "277770",
        },
        Violation {
            rule: "DEV-PASSCODE-3: an ordered run of 4 letters at medium complexity",
            policy: pb::PasscodePolicy {
                complexity: pb::PasscodeComplexity::Medium as i32,
                ..password
            },
            passcode: "Wabcd739",
        },
        Violation {
            rule: "DEV-PASSCODE-4: no upper-case letter or symbol under a complex policy",
            policy: complex,
            passcode: "harbor7wind",
        },
        Violation {
            rule: "DEV-PASSCODE-4: a space counts as a symbol, but the upper case is missing",
            policy: complex,
            passcode: "harbor 7wind",
        },
    ]
}

/// `body` encoded as a control plane other than prost might lay it out: fields in reverse order
/// and an unknown field (99) at the end. Protobuf decodes it to the same `body`, but its bytes
/// are not a re-encoding's, so only a device that verifies the bytes received accepts it.
pub(crate) fn non_canonical(body: &pb::CommandBody) -> Vec<u8> {
    let only = |change: &dyn Fn(&mut pb::CommandBody)| {
        let mut part = pb::CommandBody::default();
        change(&mut part);
        part.encode_to_vec()
    };
    let mut bytes = Vec::new();
    bytes.extend(only(&|p| p.kind = body.kind.clone()));
    bytes.extend(only(&|p| p.not_after_ms = body.not_after_ms));
    bytes.extend(only(&|p| p.sequence = body.sequence));
    bytes.extend(only(&|p| p.device_id = body.device_id.clone()));
    bytes.extend(only(&|p| p.command_id = body.command_id.clone()));
    // Field 99, varint 1: tag (99 << 3 | 0) = 792 as a varint.
    bytes.extend([0x98, 0x06, 0x01]);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use droidfleet_agent::device::{Passcode, policy};

    fn agent_policy(policy: &pb::PasscodePolicy) -> droidfleet_agent::device::PasscodePolicy {
        use droidfleet_agent::device::{PasscodeComplexity as Complexity, PasscodeType};
        droidfleet_agent::device::PasscodePolicy {
            passcode_type: match pb::PasscodeType::try_from(policy.r#type).unwrap() {
                pb::PasscodeType::Pin => PasscodeType::Pin,
                pb::PasscodeType::NumericComplex => PasscodeType::NumericComplex,
                pb::PasscodeType::Alphanumeric => PasscodeType::Alphanumeric,
                pb::PasscodeType::Complex => PasscodeType::Complex,
                pb::PasscodeType::Unspecified => PasscodeType::Unspecified,
            },
            min_length: policy.min_length,
            complexity: match pb::PasscodeComplexity::try_from(policy.complexity).unwrap() {
                pb::PasscodeComplexity::Low => Complexity::Low,
                pb::PasscodeComplexity::Medium => Complexity::Medium,
                pb::PasscodeComplexity::High => Complexity::High,
                pb::PasscodeComplexity::Unspecified => Complexity::Unspecified,
            },
            min_letters: policy.min_letters,
            min_upper_case: policy.min_upper_case,
            min_lower_case: policy.min_lower_case,
            min_digits: policy.min_digits,
            min_symbols: policy.min_symbols,
            min_non_letters: policy.min_non_letters,
            max_failed_attempts_before_wipe: 0,
        }
    }

    #[test]
    fn the_kits_passcodes_meet_or_break_the_policies_as_our_device_model_judges_them() {
        for scope in [
            pb::CredentialScope::Device,
            pb::CredentialScope::WorkProfile,
        ] {
            let policy = agent_policy(&default_policy(scope));
            for passcode in good_passcodes(scope) {
                assert_eq!(
                    policy::validate(Some(&policy), &Passcode::new(passcode)),
                    Ok(()),
                    "{passcode}"
                );
            }
        }
        for violation in violations() {
            let policy = agent_policy(&violation.policy);
            assert!(
                policy::validate(Some(&policy), &Passcode::new(violation.passcode)).is_err(),
                "{} is accepted",
                violation.rule
            );
        }
    }

    #[test]
    fn the_non_canonical_encoding_decodes_to_the_same_body_with_other_bytes() {
        let body = pb::CommandBody {
            command_id: "kit-command-1".into(),
            device_id: "d".into(),
            sequence: 4,
            not_after_ms: 1_700_000_000_000,
            kind: Some(reset(pb::CredentialScope::Device, "860273", vec![1; 32])),
            traceparent: String::new(),
        };
        let bytes = non_canonical(&body);
        assert_ne!(bytes, body.encode_to_vec());
        assert_eq!(pb::CommandBody::decode(bytes.as_slice()).unwrap(), body);
    }
}
