//! The cryptography of a credential store: Argon2id for passcode-derived keys, HKDF-SHA256 for
//! keys derived from high-entropy material (escrow tokens, synthetic secrets), AES-256-GCM for
//! every wrapped secret and every user-data value, and Ed25519 for command signatures.
//!
//! Argon2id is deliberately the only slow step: one run per passcode entry or change, as on a
//! real device, with parameters that a fleet can lower ([`KdfParams::LIGHT`]) when it simulates
//! tens of thousands of devices in one process.
//!
//! Making fresh random secrets (`EscrowToken::generate`, `SyntheticSecret::generate`,
//! `DeviceKey::generate`) is here too, so that the secret types in `secret` depend on nothing and the imports go one way.

use argon2::{Algorithm, Argon2, Params, Version};
use ring::{aead, hkdf, rand::SecureRandom, signature};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::secret::{DeviceKey, EscrowToken, Passcode, SyntheticSecret};

/// Salt length for both Argon2id and HKDF.
pub const SALT_LEN: usize = 16;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = aead::NONCE_LEN;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// OWASP's recommended Argon2id minimum (19 MiB, two passes): close to what a phone spends.
    pub const REALISTIC: KdfParams = KdfParams {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
    /// For large simulated fleets and tests: still Argon2id, at a small fraction of the cost.
    pub const LIGHT: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the key derivation parameters are invalid: {0}")]
    KdfParams(String),
    #[error("the random number generator failed")]
    Random,
    #[error("a key could not be derived")]
    Derive,
    #[error("encryption failed")]
    Seal,
    #[error("decryption failed: wrong key or corrupted data")]
    Open,
}

pub(crate) fn fill_random(rng: &dyn SecureRandom, out: &mut [u8]) -> Result<(), CryptoError> {
    rng.fill(out).map_err(|_| CryptoError::Random)
}

pub(crate) fn random_salt(rng: &dyn SecureRandom) -> Result<Vec<u8>, CryptoError> {
    let mut salt = vec![0u8; SALT_LEN];
    fill_random(rng, &mut salt)?;
    Ok(salt)
}

impl EscrowToken {
    /// A fresh token of [`EscrowToken::MIN_LEN`] random bytes, as a management app makes one.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, CryptoError> {
        let mut bytes = vec![0u8; Self::MIN_LEN];
        fill_random(rng, &mut bytes)?;
        Ok(EscrowToken::new(bytes))
    }
}

impl DeviceKey {
    /// A fresh Ed25519 private key (its seed) for an enrollment.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self, CryptoError> {
        let mut seed = Zeroizing::new([0u8; DeviceKey::LEN]);
        fill_random(rng, seed.as_mut())?;
        Ok(DeviceKey::new(*seed))
    }
}

impl SyntheticSecret {
    /// A fresh secret for a new credential store.
    pub(crate) fn generate(rng: &dyn SecureRandom) -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; SyntheticSecret::LEN]);
        fill_random(rng, bytes.as_mut())?;
        Ok(SyntheticSecret::new(*bytes))
    }
}

/// An AES-GCM nonce. Which constructor a caller uses is the argument for why the nonce is unique
/// under its key, so each one says when it is safe.
#[derive(Clone, Copy)]
pub(crate) struct Nonce([u8; NONCE_LEN]);

impl Nonce {
    /// Safe for any key.
    pub(crate) fn random(rng: &dyn SecureRandom) -> Result<Self, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(rng, &mut nonce)?;
        Ok(Nonce(nonce))
    }

    /// Safe only for a key that encrypts a single plaintext in its whole life.
    pub(crate) fn single_use_key() -> Self {
        Nonce([0u8; NONCE_LEN])
    }
}

/// An AES-256-GCM key, wiped on drop.
pub(crate) struct Key(Zeroizing<[u8; KEY_LEN]>);

impl Key {
    /// Argon2id(passcode, salt): the one deliberately slow operation.
    pub(crate) fn from_passcode(
        kdf: KdfParams,
        passcode: &Passcode,
        salt: &[u8],
    ) -> Result<Key, CryptoError> {
        let params = Params::new(
            kdf.memory_kib,
            kdf.iterations,
            kdf.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|e| CryptoError::KdfParams(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passcode.expose().as_bytes(), salt, key.as_mut())
            .map_err(|e| CryptoError::KdfParams(e.to_string()))?;
        Ok(Key(key))
    }

    /// HKDF-SHA256 for input that is already uniformly random (tokens, synthetic secrets), where
    /// a slow KDF would add cost and no strength. `info` separates the purposes of keys derived
    /// from the same input.
    pub(crate) fn from_random(ikm: &[u8], salt: &[u8], info: &[u8]) -> Result<Key, CryptoError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
            .extract(ikm)
            .expand(&[info], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(key.as_mut()))
            .map_err(|_| CryptoError::Derive)?;
        Ok(Key(key))
    }

    fn aead_key(&self) -> Result<aead::LessSafeKey, CryptoError> {
        aead::UnboundKey::new(&aead::AES_256_GCM, self.0.as_ref())
            .map(aead::LessSafeKey::new)
            .map_err(|_| CryptoError::Derive)
    }

    /// Encrypts `plaintext`; `aad` binds the box to its purpose so it cannot be moved to another
    /// slot that happens to use the same key.
    pub(crate) fn seal(
        &self,
        nonce: Nonce,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<SealedBox, CryptoError> {
        let mut in_out = Zeroizing::new(plaintext.to_vec());
        self.aead_key()?
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce.0),
                aead::Aad::from(aad),
                &mut *in_out,
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + in_out.len());
        out.extend_from_slice(&nonce.0);
        out.extend_from_slice(&in_out);
        Ok(SealedBox(out))
    }

    pub(crate) fn open(
        &self,
        sealed: &SealedBox,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.0.len() < NONCE_LEN + aead::MAX_TAG_LEN {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = sealed.0.split_at(NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let len = self
            .aead_key()?
            .open_in_place(nonce, aead::Aad::from(aad), in_out.as_mut_slice())
            .map_err(|_| CryptoError::Open)?
            .len();
        in_out.truncate(len);
        Ok(in_out)
    }
}

/// Nonce, ciphertext and tag of one AES-256-GCM encryption; persisted as base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SealedBox(#[serde(with = "b64")] Vec<u8>);

impl std::fmt::Debug for SealedBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedBox({} bytes)", self.0.len())
    }
}

/// Derives the key of `passcode` with `kdf` exactly as a passcode entry or change does, and
/// forgets it: the cost of one Argon2id run on a device, for a load test's Argon2-only bound.
pub fn run_passcode_kdf(
    kdf: KdfParams,
    passcode: &Passcode,
    salt: &[u8],
) -> Result<(), CryptoError> {
    Key::from_passcode(kdf, passcode, salt).map(drop)
}

/// Whether `signature` is a valid Ed25519 signature of `message` by `public_key`.
pub(crate) fn verify_ed25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

/// What the control plane's key signs ahead of a policy body (PROTOCOL.md CP-POLICY-3): the
/// model knows the protocol's rules, not its crate, so a test at the gRPC edge (`convert.rs`)
/// checks that this equals the proto crate's `signing::POLICY_CONTEXT`.
pub const POLICY_CONTEXT: &[u8] = b"droidfleet.v1 policy\0";

/// Whether `signature` is the control plane's signature of the policy body `body`: an Ed25519
/// signature of [`POLICY_CONTEXT`] followed by `body`.
pub(crate) fn verify_policy_signature(public_key: &[u8], body: &[u8], signature: &[u8]) -> bool {
    let mut signed = Vec::with_capacity(POLICY_CONTEXT.len() + body.len());
    signed.extend_from_slice(POLICY_CONTEXT);
    signed.extend_from_slice(body);
    verify_ed25519(public_key, &signed, signature)
}

/// What the control plane's earlier key signs ahead of a key update's body (PROTOCOL.md
/// CP-KEY-2); checked against the proto crate's `signing::KEY_UPDATE_CONTEXT` at the edge, as
/// [`POLICY_CONTEXT`] is.
pub const KEY_UPDATE_CONTEXT: &[u8] = b"droidfleet.v1 key\0";

/// How many bytes a signing key's id has.
pub const KEY_ID_LEN: usize = 8;

/// A signing key's id (PROTOCOL.md CP-KEY-1): the first 8 bytes of its public key's SHA-256.
pub fn key_id(public_key: &[u8]) -> [u8; KEY_ID_LEN] {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
    id
}

/// `None` when `key_id` names `public_key`, the key the device trusts; otherwise why not, as
/// the end of a sentence about the signed message (PROTOCOL.md DEV-KEY-1).
pub(crate) fn key_id_mismatch(public_key: &[u8], key_id: &[u8]) -> Option<String> {
    let trusted = self::key_id(public_key);
    if key_id == trusted {
        return None;
    }
    let named = if key_id.is_empty() {
        "no key id".to_owned()
    } else if key_id.len() == KEY_ID_LEN {
        format!("key id {}", hex(key_id))
    } else {
        format!("a key id of {} bytes", key_id.len())
    };
    Some(format!(
        "carries {named}, not {}, the id of the key this device trusts",
        hex(&trusted)
    ))
}

/// Whether `signature` is `public_key`'s signature of the key update body `body`: an Ed25519
/// signature of [`KEY_UPDATE_CONTEXT`] followed by `body`.
pub(crate) fn verify_key_update_signature(
    public_key: &[u8],
    body: &[u8],
    signature: &[u8],
) -> bool {
    let mut signed = Vec::with_capacity(KEY_UPDATE_CONTEXT.len() + body.len());
    signed.extend_from_slice(KEY_UPDATE_CONTEXT);
    signed.extend_from_slice(body);
    verify_ed25519(public_key, &signed, signature)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serde adapter that writes bytes as standard base64, which keeps persisted state compact and
/// readable compared to JSON arrays of numbers.
pub(crate) mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::KeyPair as _;

    #[test]
    fn passcode_key_is_deterministic_and_salted() {
        let passcode = Passcode::new("1593");
        let a = Key::from_passcode(KdfParams::LIGHT, &passcode, &[1; SALT_LEN]).unwrap();
        let b = Key::from_passcode(KdfParams::LIGHT, &passcode, &[1; SALT_LEN]).unwrap();
        let c = Key::from_passcode(KdfParams::LIGHT, &passcode, &[2; SALT_LEN]).unwrap();
        assert_eq!(*a.0, *b.0);
        assert_ne!(*a.0, *c.0);
    }

    #[test]
    fn invalid_kdf_params_are_an_error() {
        let bad = KdfParams {
            memory_kib: 1,
            iterations: 1,
            parallelism: 1,
        };
        let err = Key::from_passcode(bad, &Passcode::new("1593"), &[1; SALT_LEN]);
        assert!(matches!(err, Err(CryptoError::KdfParams(_))));
    }

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let rng = SystemRandom::new();
        let key = Key::from_random(&[9; 32], b"salt", b"purpose").unwrap();
        let sealed = key
            .seal(Nonce::random(&rng).unwrap(), b"hello", b"aad")
            .unwrap();
        assert_eq!(key.open(&sealed, b"aad").unwrap().as_slice(), b"hello");
        assert_eq!(key.open(&sealed, b"other aad"), Err(CryptoError::Open));
        let other = Key::from_random(&[9; 32], b"salt", b"other purpose").unwrap();
        assert_eq!(other.open(&sealed, b"aad"), Err(CryptoError::Open));
        let mut tampered = sealed.clone();
        let last = tampered.0.len() - 1;
        tampered.0[last] ^= 1;
        assert_eq!(key.open(&tampered, b"aad"), Err(CryptoError::Open));
        assert_eq!(
            key.open(&SealedBox(vec![0; 5]), b"aad"),
            Err(CryptoError::Open)
        );
    }

    #[test]
    fn random_nonces_make_distinct_boxes() {
        let rng = SystemRandom::new();
        let key = Key::from_random(&[9; 32], b"salt", b"purpose").unwrap();
        let a = key
            .seal(Nonce::random(&rng).unwrap(), b"same", b"")
            .unwrap();
        let b = key
            .seal(Nonce::random(&rng).unwrap(), b"same", b"")
            .unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn sealed_box_serializes_as_base64() {
        let json = serde_json::to_string(&SealedBox(vec![0xff, 0x00, 0x10])).unwrap();
        assert_eq!(json, "\"/wAQ\"");
        let back: SealedBox = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0, vec![0xff, 0x00, 0x10]);
    }

    #[test]
    fn ed25519_verification() {
        let rng = SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let sig = pair.sign(b"body");
        let public = pair.public_key().as_ref();
        assert!(verify_ed25519(public, b"body", sig.as_ref()));
        assert!(!verify_ed25519(public, b"bodY", sig.as_ref()));
        assert!(!verify_ed25519(&[0; 32], b"body", sig.as_ref()));
    }
}
