//! Device identity: the proof of possession that opens a session. At enrollment a device makes
//! an Ed25519 key pair and the control plane binds the public key to the device; each session
//! then opens with a fresh single-use nonce from the control plane, signed by the device over
//! the nonce, its device id and the fingerprint of the CA it pinned. Neither side ever sends a
//! long-lived secret, so a recorded session or a stolen database row lets no one in.
//!
//! Both sides build the signed message with [`session_proof_message`]; the device sends the
//! proof as [`SESSION_PROOF_METADATA`] on the `Session` call, and the control plane checks it
//! with [`SessionProof::verify`].

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::tls::CaFingerprint;

/// The `Session` call's metadata key that carries the device's proof.
pub const SESSION_PROOF_METADATA: &str = "x-droidfleet-session-proof";

/// Length of the control plane's session nonce.
pub const NONCE_LEN: usize = 32;

/// Domain separation: a session proof can never be mistaken for (or reused as) a signature over
/// anything else the device or the control plane signs.
const SESSION_PROOF_CONTEXT: &[u8] = b"droidfleet.v1 session proof\0";

/// Why a session proof was refused. The messages name the problem and never hold key material.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("malformed session proof (expected `<device id>.<nonce>.<signature>`, base64url): {0}")]
    Malformed(&'static str),
    #[error("the session proof's signature does not verify with the device's enrolled key")]
    BadSignature,
}

/// The bytes a device signs to open a session: context, nonce, the CA fingerprint it pinned
/// (so a proof made towards one control plane is worthless at another) and its device id.
pub fn session_proof_message(
    nonce: &[u8; NONCE_LEN],
    ca: &CaFingerprint,
    device_id: &str,
) -> Vec<u8> {
    let mut message =
        Vec::with_capacity(SESSION_PROOF_CONTEXT.len() + NONCE_LEN + 32 + device_id.len());
    message.extend_from_slice(SESSION_PROOF_CONTEXT);
    message.extend_from_slice(nonce);
    message.extend_from_slice(ca.as_bytes());
    message.extend_from_slice(device_id.as_bytes());
    message
}

/// A device's answer to a session challenge, as carried in [`SESSION_PROOF_METADATA`].
#[derive(Clone, PartialEq, Eq)]
pub struct SessionProof {
    pub device_id: String,
    pub nonce: [u8; NONCE_LEN],
    /// Ed25519 signature over [`session_proof_message`].
    pub signature: [u8; 64],
}

impl fmt::Debug for SessionProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionProof")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

impl SessionProof {
    /// The metadata value: `<device id>.<nonce>.<signature>`, the last two base64url. Device ids
    /// are printable ASCII without spaces, so the value is valid gRPC ASCII metadata.
    pub fn to_metadata(&self) -> String {
        format!(
            "{}.{}.{}",
            self.device_id,
            URL_SAFE_NO_PAD.encode(self.nonce),
            URL_SAFE_NO_PAD.encode(self.signature)
        )
    }

    pub fn from_metadata(value: &str) -> Result<SessionProof, ProofError> {
        let mut parts = value.rsplitn(3, '.');
        let signature = parts.next().ok_or(ProofError::Malformed("no signature"))?;
        let nonce = parts.next().ok_or(ProofError::Malformed("no nonce"))?;
        let device_id = parts.next().ok_or(ProofError::Malformed("no device id"))?;
        if device_id.is_empty() {
            return Err(ProofError::Malformed("empty device id"));
        }
        let nonce = decode_fixed::<NONCE_LEN>(nonce).ok_or(ProofError::Malformed(
            "the nonce is not 32 bytes of base64url",
        ))?;
        let signature = decode_fixed::<64>(signature).ok_or(ProofError::Malformed(
            "the signature is not 64 bytes of base64url",
        ))?;
        Ok(SessionProof {
            device_id: device_id.to_string(),
            nonce,
            signature,
        })
    }

    /// Checks the signature with the device's enrolled Ed25519 public key. Whether the nonce is
    /// one the control plane issued, unused and unexpired, is the caller's to check.
    pub fn verify(&self, public_key: &[u8], ca: &CaFingerprint) -> Result<(), ProofError> {
        let message = session_proof_message(&self.nonce, ca, &self.device_id);
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
            .verify(&message, &self.signature)
            .map_err(|_| ProofError::BadSignature)
    }
}

fn decode_fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key_pair() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn proof(key: &Ed25519KeyPair, nonce: [u8; 32], ca: &CaFingerprint, id: &str) -> SessionProof {
        let signature = key.sign(&session_proof_message(&nonce, ca, id));
        SessionProof {
            device_id: id.to_string(),
            nonce,
            signature: signature.as_ref().try_into().unwrap(),
        }
    }

    #[test]
    fn a_proof_survives_metadata_and_verifies_with_the_enrolled_key() {
        let key = key_pair();
        let ca = CaFingerprint::of_der(b"ca");
        let sent = proof(&key, [7; 32], &ca, "dev_0a.b");
        let received = SessionProof::from_metadata(&sent.to_metadata()).unwrap();
        assert_eq!(received, sent);
        received.verify(key.public_key().as_ref(), &ca).unwrap();
    }

    #[test]
    fn another_key_another_device_another_nonce_or_another_ca_fails() {
        let key = key_pair();
        let ca = CaFingerprint::of_der(b"ca");
        let good = proof(&key, [7; 32], &ca, "dev_1");
        let public = key.public_key().as_ref().to_vec();
        assert_eq!(
            good.verify(key_pair().public_key().as_ref(), &ca),
            Err(ProofError::BadSignature)
        );
        let other_device = SessionProof {
            device_id: "dev_2".to_string(),
            ..good.clone()
        };
        assert_eq!(
            other_device.verify(&public, &ca),
            Err(ProofError::BadSignature)
        );
        let other_nonce = SessionProof {
            nonce: [8; 32],
            ..good.clone()
        };
        assert_eq!(
            other_nonce.verify(&public, &ca),
            Err(ProofError::BadSignature)
        );
        assert_eq!(
            good.verify(&public, &CaFingerprint::of_der(b"other ca")),
            Err(ProofError::BadSignature)
        );
        good.verify(&public, &ca).unwrap();
    }

    #[test]
    fn malformed_proofs_are_named_without_echoing_them() {
        for (value, expected) in [
            ("", "no nonce"),
            ("abc", "no nonce"),
            ("a.b", "no device id"),
            (".AAAA.AAAA", "empty device id"),
            ("dev.AAAA.AAAA", "the nonce is not 32 bytes"),
        ] {
            let error = SessionProof::from_metadata(value).unwrap_err();
            assert!(error.to_string().contains(expected), "{value:?}: {error}");
        }
        let nonce = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let error = SessionProof::from_metadata(&format!("dev.{nonce}.AAAA")).unwrap_err();
        assert!(
            error.to_string().contains("signature is not 64 bytes"),
            "{error}"
        );
    }

    #[test]
    fn debug_output_holds_only_the_device_id() {
        let key = key_pair();
        let sent = proof(&key, [9; 32], &CaFingerprint::of_der(b"ca"), "dev_3");
        let printed = format!("{sent:?}");
        assert!(printed.contains("dev_3"), "{printed}");
        assert!(
            !printed.contains(&URL_SAFE_NO_PAD.encode([9u8; 32])),
            "{printed}"
        );
    }
}
