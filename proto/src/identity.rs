//! Device identity: the proof of possession that opens a session (PROTOCOL.md CP-SESSION-1,
//! DEV-SESSION-4). At enrollment a device makes an Ed25519 key pair and the control plane binds
//! the public key to the device; each session then opens with a fresh single-use nonce from the
//! control plane (`SessionChallenge`), which the device signs with the nonce, the fingerprint of
//! the CA it pinned and its device id (`SessionProof`). Neither side ever sends a long-lived
//! secret, so a recorded session or a stolen database row lets no one in.
//!
//! Both sides build the signed bytes with [`session_proof_message`]. A device keeps only its
//! 32-byte seed and makes the key from it when it signs ([`sign_session_proof`]): a fleet of a
//! hundred thousand simulated devices cannot afford a key object each.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// Length of the control plane's session nonce.
pub const NONCE_LEN: usize = 32;

/// Length of an Ed25519 seed (the device's private key) and of its public key.
pub const KEY_LEN: usize = 32;

/// Domain separation: a session proof can never be mistaken for (or reused as) a signature over
/// anything else a device or the control plane signs.
pub const SESSION_PROOF_CONTEXT: &[u8] = b"droidfleet.v1 session proof\0";

/// The bytes a device signs to open a session: the context, the nonce, the fingerprint of the CA
/// it pinned (`CaFingerprint::as_bytes`; a proof made towards one control plane is worthless at
/// another; 32 zero bytes on a plaintext test connection, where nothing is pinned) and its
/// device id.
pub fn session_proof_message(nonce: &[u8], ca: Option<&[u8; 32]>, device_id: &str) -> Vec<u8> {
    let mut message =
        Vec::with_capacity(SESSION_PROOF_CONTEXT.len() + nonce.len() + 32 + device_id.len());
    message.extend_from_slice(SESSION_PROOF_CONTEXT);
    message.extend_from_slice(nonce);
    message.extend_from_slice(ca.unwrap_or(&[0u8; 32]));
    message.extend_from_slice(device_id.as_bytes());
    message
}

/// The public key of the device key whose seed is `seed`.
pub fn device_public_key(seed: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let key = Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are an Ed25519 seed");
    let mut public = [0u8; KEY_LEN];
    public.copy_from_slice(key.public_key().as_ref());
    public
}

/// The device's `SessionProof.signature` for `nonce`, by the key whose seed is `seed`.
pub fn sign_session_proof(
    seed: &[u8; KEY_LEN],
    nonce: &[u8],
    ca: Option<&[u8; 32]>,
    device_id: &str,
) -> Vec<u8> {
    let key = Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are an Ed25519 seed");
    key.sign(&session_proof_message(nonce, ca, device_id))
        .as_ref()
        .to_vec()
}

/// Whether `signature` proves possession of `public_key`'s private key for this session.
pub fn session_proof_verifies(
    public_key: &[u8],
    nonce: &[u8],
    ca: Option<&[u8; 32]>,
    device_id: &str,
    signature: &[u8],
) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&session_proof_message(nonce, ca, device_id), signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::CaFingerprint;

    const SEED: [u8; 32] = [7; 32];

    #[test]
    fn a_proof_verifies_with_the_enrolled_key_only_for_its_nonce_ca_and_device() {
        let ca = CaFingerprint::of_der(b"ca");
        let public = device_public_key(&SEED);
        let nonce = [1u8; NONCE_LEN];
        let signature = sign_session_proof(&SEED, &nonce, Some(ca.as_bytes()), "dev_1");
        assert!(session_proof_verifies(
            &public,
            &nonce,
            Some(ca.as_bytes()),
            "dev_1",
            &signature
        ));
        let other_key = device_public_key(&[8; 32]);
        assert!(!session_proof_verifies(
            &other_key,
            &nonce,
            Some(ca.as_bytes()),
            "dev_1",
            &signature
        ));
        assert!(!session_proof_verifies(
            &public,
            &[2u8; NONCE_LEN],
            Some(ca.as_bytes()),
            "dev_1",
            &signature
        ));
        assert!(!session_proof_verifies(
            &public,
            &nonce,
            Some(CaFingerprint::of_der(b"another ca").as_bytes()),
            "dev_1",
            &signature
        ));
        assert!(!session_proof_verifies(
            &public, &nonce, None, "dev_1", &signature
        ));
        assert!(!session_proof_verifies(
            &public,
            &nonce,
            Some(ca.as_bytes()),
            "dev_2",
            &signature
        ));
    }

    #[test]
    fn the_signed_bytes_are_context_nonce_ca_then_device_id() {
        let ca = CaFingerprint::of_der(b"ca");
        let nonce = [3u8; NONCE_LEN];
        let message = session_proof_message(&nonce, Some(ca.as_bytes()), "dev_9");
        let mut expected = b"droidfleet.v1 session proof\0".to_vec();
        expected.extend_from_slice(&nonce);
        expected.extend_from_slice(ca.as_bytes());
        expected.extend_from_slice(b"dev_9");
        assert_eq!(message, expected);
        let plaintext = session_proof_message(&nonce, None, "dev_9");
        assert_eq!(&plaintext[28 + 32..28 + 64], &[0u8; 32]);
    }
}
