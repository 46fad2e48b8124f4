//! The control plane's keys and primitives: AES-256-GCM sealing of escrow tokens and revealable
//! passcodes at rest, Ed25519 command signing, random identifiers and credentials, SHA-256 for
//! credentials kept as hashes.
//!
//! Keys live in files beside the database (not in it), so a copy of the database alone reveals no
//! secret. They are created on first start, readable only by their owner.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("cannot read or write key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is not a valid key ({what})")]
    BadKey { path: PathBuf, what: &'static str },
    #[error("sealed value failed to open (wrong key, wrong record or tampered)")]
    Open,
    #[error("the system random number generator failed")]
    Random,
}

const SEAL_KEY_FILE: &str = "seal.key";
const SIGNING_KEY_FILE: &str = "command-signing.pk8";

/// The control plane's long-lived keys.
pub struct KeyRing {
    /// Seals escrow tokens and revealable passcodes in the database.
    seal: LessSafeKey,
    /// Signs every command to a device.
    signing: Ed25519KeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("signing_public_key", &hex(self.signing_public_key()))
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// The key files [`KeyRing::load_or_create`] would have to make in `dir`: on a control plane
    /// with enrolled devices, making any of them would cut those devices off, so the caller
    /// refuses to start instead.
    pub fn missing_key_files(dir: &Path) -> Vec<PathBuf> {
        [SEAL_KEY_FILE, SIGNING_KEY_FILE]
            .iter()
            .map(|name| dir.join(name))
            .filter(|path| !path.exists())
            .collect()
    }

    /// Loads the keys from `dir`, creating them (and `dir`, mode 0700) on first start.
    pub fn load_or_create(dir: &Path) -> Result<KeyRing, CryptoError> {
        let rng = SystemRandom::new();
        create_private_dir(dir)?;
        let seal_path = dir.join(SEAL_KEY_FILE);
        let seal_bytes = load_or_create_file(&seal_path, || {
            let mut key = Zeroizing::new(vec![0u8; 32]);
            rng.fill(&mut key).map_err(|_| CryptoError::Random)?;
            Ok(key)
        })?;
        let seal = UnboundKey::new(&AES_256_GCM, &seal_bytes).map_err(|_| CryptoError::BadKey {
            path: seal_path.clone(),
            what: "expected 32 bytes",
        })?;
        let signing_path = dir.join(SIGNING_KEY_FILE);
        let pkcs8 = load_or_create_file(&signing_path, || {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CryptoError::Random)?;
            Ok(Zeroizing::new(doc.as_ref().to_vec()))
        })?;
        let signing = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| CryptoError::BadKey {
            path: signing_path,
            what: "expected an Ed25519 PKCS#8 document",
        })?;
        Ok(KeyRing {
            seal: LessSafeKey::new(seal),
            signing,
            rng,
        })
    }

    /// Encrypts `plaintext` bound to `context` (e.g. the device id): the result opens only with
    /// the same context, so a sealed value cannot be moved to another record.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        sealed.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .map_err(|_| CryptoError::Open)?;
        sealed.extend_from_slice(&body);
        body.iter_mut().for_each(|b| *b = 0);
        Ok(sealed)
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
        let mut buffer = Zeroizing::new(body.to_vec());
        let plain_len = self
            .seal
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| CryptoError::Open)?
            .len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }

    pub fn sign(&self, body: &[u8]) -> Vec<u8> {
        self.signing.sign(body).as_ref().to_vec()
    }

    pub fn signing_public_key(&self) -> &[u8] {
        self.signing.public_key().as_ref()
    }

    /// `prefix` followed by 32 random bytes in URL-safe base64: a credential to hand out once.
    pub fn new_credential(&self, prefix: &str) -> Result<String, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        self.rng
            .fill(bytes.as_mut())
            .map_err(|_| CryptoError::Random)?;
        use base64::Engine;
        Ok(format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
        ))
    }

    /// `prefix` followed by 16 random bytes in hex: an identifier that reveals nothing about
    /// order or count.
    pub fn new_id(&self, prefix: &str) -> Result<String, CryptoError> {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes).map_err(|_| CryptoError::Random)?;
        Ok(format!("{prefix}{}", hex(&bytes)))
    }

    /// `N` random bytes (trace and span ids).
    pub fn random<const N: usize>(&self) -> Result<[u8; N], CryptoError> {
        let mut bytes = [0u8; N];
        self.rng.fill(&mut bytes).map_err(|_| CryptoError::Random)?;
        Ok(bytes)
    }

    pub fn rng(&self) -> &SystemRandom {
        &self.rng
    }
}

/// SHA-256, for credentials that are stored only as hashes. They are 32 random bytes, so a fast
/// hash is enough; a slow password hash would buy nothing.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn create_private_dir(dir: &Path) -> Result<(), CryptoError> {
    let io = |source| CryptoError::KeyFile {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    set_mode(dir, 0o700).map_err(io)
}

fn load_or_create_file(
    path: &Path,
    make: impl FnOnce() -> Result<Zeroizing<Vec<u8>>, CryptoError>,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let io = |source| CryptoError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    match fs::read(path) {
        Ok(bytes) => Ok(Zeroizing::new(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = make()?;
            write_private_file(path, &bytes).map_err(io)?;
            Ok(bytes)
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes a file only its owner can read, durably, without ever exposing a partial file.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    set_mode(&tmp, 0o600)?;
    fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Sets a file's or folder's Unix permission bits (a no-op elsewhere).
#[cfg(unix)]
pub(crate) fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
pub(crate) fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_context_and_keys_persist() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyRing::load_or_create(dir.path()).unwrap();
        let sealed = keys.seal(b"escrow-token-bytes", "dev_1/device").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"escrow"));
        assert_eq!(
            &keys.open(&sealed, "dev_1/device").unwrap()[..],
            b"escrow-token-bytes"
        );
        assert!(keys.open(&sealed, "dev_2/device").is_err());

        let reloaded = KeyRing::load_or_create(dir.path()).unwrap();
        assert_eq!(reloaded.signing_public_key(), keys.signing_public_key());
        assert_eq!(
            &reloaded.open(&sealed, "dev_1/device").unwrap()[..],
            b"escrow-token-bytes"
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        KeyRing::load_or_create(&keys_dir).unwrap();
        for name in [SEAL_KEY_FILE, SIGNING_KEY_FILE] {
            let mode = fs::metadata(keys_dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyRing::load_or_create(dir.path()).unwrap();
        let signature = keys.sign(b"body");
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ED25519,
            keys.signing_public_key(),
        );
        assert!(public.verify(b"body", &signature).is_ok());
        assert!(public.verify(b"other", &signature).is_err());
    }

    #[test]
    fn credentials_and_ids_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyRing::load_or_create(dir.path()).unwrap();
        let a = keys.new_credential("dfa_").unwrap();
        let b = keys.new_credential("dfa_").unwrap();
        assert!(a.starts_with("dfa_") && a.len() == 4 + 43);
        assert_ne!(a, b);
        assert_ne!(keys.new_id("act_").unwrap(), keys.new_id("act_").unwrap());
    }
}
