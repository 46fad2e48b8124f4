//! What the control plane's Ed25519 key signs. A command's signature covers its body bytes
//! alone (PROTOCOL.md CP-CMD-1); a policy's covers a domain-separating prefix and then its body
//! (CP-POLICY-3), so that no signed policy can ever be taken for a signed command; a key
//! update's covers a prefix of its own (CP-KEY-2). Every signature travels with the id of the
//! key that made it ([`key_id`], CP-KEY-1).

/// Signed ahead of a `PolicyBody`'s bytes: the protocol's name, the message kind, one zero byte.
pub const POLICY_CONTEXT: &[u8] = b"droidfleet.v1 policy\0";

/// Signed ahead of a `KeyUpdateBody`'s bytes, as [`POLICY_CONTEXT`] for policies.
pub const KEY_UPDATE_CONTEXT: &[u8] = b"droidfleet.v1 key\0";

/// How many bytes a key id has.
pub const KEY_ID_LEN: usize = 8;

/// The id of a signing key: the first 8 bytes of the SHA-256 of its public key. It names the
/// key without revealing anything a public key does not already reveal.
pub fn key_id(public_key: &[u8]) -> [u8; KEY_ID_LEN] {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
    id
}

/// The exact bytes whose signature a `SignedKeyUpdate` carries: [`KEY_UPDATE_CONTEXT`] then
/// `body`.
pub fn key_update_signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(KEY_UPDATE_CONTEXT.len() + body.len());
    bytes.extend_from_slice(KEY_UPDATE_CONTEXT);
    bytes.extend_from_slice(body);
    bytes
}

/// Whether `signature` is `public_key`'s Ed25519 signature of the key update body `body`.
pub fn key_update_signature_verifies(public_key: &[u8], body: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(&key_update_signed_bytes(body), signature)
        .is_ok()
}

/// The exact bytes whose signature a `SignedPolicy` carries: [`POLICY_CONTEXT`] then `body`.
pub fn policy_signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(POLICY_CONTEXT.len() + body.len());
    bytes.extend_from_slice(POLICY_CONTEXT);
    bytes.extend_from_slice(body);
    bytes
}

/// Whether `signature` is `public_key`'s Ed25519 signature of the policy body `body`.
pub fn policy_signature_verifies(public_key: &[u8], body: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
        .verify(&policy_signed_bytes(body), signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn a_policy_signature_covers_the_prefix_and_never_verifies_as_a_bare_body() {
        let key = key();
        let public = key.public_key().as_ref();
        let body = b"policy body";
        let signature = key.sign(&policy_signed_bytes(body));
        assert!(policy_signature_verifies(public, body, signature.as_ref()));
        assert!(!policy_signature_verifies(
            public,
            b"policy bodY",
            signature.as_ref()
        ));
        // A command signature over the same bytes (no prefix) is not a policy signature.
        let bare = key.sign(body);
        assert!(!policy_signature_verifies(public, body, bare.as_ref()));
        let another = self::key();
        let another = another.public_key().as_ref();
        assert!(!policy_signature_verifies(
            another,
            body,
            signature.as_ref()
        ));
    }

    #[test]
    fn a_key_update_signature_is_neither_a_policy_nor_a_command_signature() {
        let key = key();
        let public = key.public_key().as_ref();
        let body = b"key update body";
        let signature = key.sign(&key_update_signed_bytes(body));
        assert!(key_update_signature_verifies(
            public,
            body,
            signature.as_ref()
        ));
        assert!(!policy_signature_verifies(public, body, signature.as_ref()));
        let as_policy = key.sign(&policy_signed_bytes(body));
        assert!(!key_update_signature_verifies(
            public,
            body,
            as_policy.as_ref()
        ));
        assert!(!key_update_signature_verifies(
            public,
            body,
            key.sign(body).as_ref()
        ));
    }

    #[test]
    fn a_key_id_is_the_head_of_the_public_key_hash() {
        let (a, b) = (key(), key());
        let id = key_id(a.public_key().as_ref());
        let digest = ring::digest::digest(&ring::digest::SHA256, a.public_key().as_ref());
        assert_eq!(id[..], digest.as_ref()[..KEY_ID_LEN]);
        assert_ne!(id, key_id(b.public_key().as_ref()));
    }
}
