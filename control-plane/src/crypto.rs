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
/// A retired sealing key's file: `seal-<key id in hex>.key`.
const RETIRED_SEAL_PREFIX: &str = "seal-";
const RETIRED_SEAL_SUFFIX: &str = ".key";
/// A retired signing key's file: `command-signing-<key id in hex>.pk8`.
const RETIRED_SIGNING_PREFIX: &str = "command-signing-";
const RETIRED_SIGNING_SUFFIX: &str = ".pk8";
/// Hashed ahead of a sealing key to name it: the id is a one-way function of the key.
const SEAL_KEY_ID_CONTEXT: &[u8] = b"droidfleet.v1 seal key id\0";
/// How a sealed value made since key ids opens: this marker (a format version), the sealing
/// key's id, the nonce, the ciphertext and tag. A value sealed before has no marker and no id
/// (the nonce first); [`KeyRing::open`] tries every key on it.
const SEALED_MARKER: [u8; 2] = [0xdf, 0x01];

/// How many bytes a key id has (signing and sealing keys alike; PROTOCOL.md CP-KEY-1, checked
/// against the protocol's at the gRPC edge).
pub const KEY_ID_LEN: usize = 8;

/// A key's id: names it in sealed values, signed messages and file names, never reveals it.
pub type KeyId = [u8; KEY_ID_LEN];

/// A sealing key and its id.
struct SealingKey {
    id: KeyId,
    key: LessSafeKey,
}

/// A signing key and its id (the first 8 bytes of the SHA-256 of its public key).
struct SigningKey {
    id: KeyId,
    pair: Ed25519KeyPair,
}

/// The control plane's long-lived keys: the current sealing and signing keys, and the keys
/// they replaced (kept so that values sealed before a rotation still open, and so that devices
/// still trusting an earlier signing key learn the current one from it).
pub struct KeyRing {
    /// Seals escrow tokens and revealable passcodes in the database.
    seal: SealingKey,
    /// Earlier sealing keys: they open what they sealed and seal nothing new.
    retired_seals: Vec<SealingKey>,
    /// Signs every command and policy to a device.
    signing: SigningKey,
    /// Earlier signing keys: each signs only key updates naming the current key.
    retired_signing: Vec<SigningKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("signing_public_key", &hex(self.signing_public_key()))
            .field("signing_key_id", &hex(&self.signing.id))
            .field("sealing_key_id", &hex(&self.seal.id))
            .finish_non_exhaustive()
    }
}

/// Which keys [`KeyRing::rotate`] replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub signing: bool,
    pub sealing: bool,
}

/// What [`KeyRing::rotate`] did: each rotated key's id before and after, in hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    pub signing: Option<(String, String)>,
    pub sealing: Option<(String, String)>,
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

    /// Loads the keys from `dir`, creating the current ones (and `dir`, mode 0700) on first
    /// start; the retired keys of earlier rotations are loaded beside them.
    pub fn load_or_create(dir: &Path) -> Result<KeyRing, CryptoError> {
        let rng = SystemRandom::new();
        create_private_dir(dir)?;
        let seal_path = dir.join(SEAL_KEY_FILE);
        let seal_bytes = load_or_create_file(&seal_path, || new_seal_bytes(&rng))?;
        let seal = sealing_key(&seal_path, &seal_bytes)?;
        let signing_path = dir.join(SIGNING_KEY_FILE);
        let pkcs8 = load_or_create_file(&signing_path, || new_signing_bytes(&rng))?;
        let signing = signing_key(&signing_path, &pkcs8)?;
        let mut retired_seals = Vec::new();
        let mut retired_signing = Vec::new();
        for path in retired_files(dir)? {
            let bytes = read_key_file(&path)?;
            let name = file_name(&path);
            if name.starts_with(RETIRED_SIGNING_PREFIX) {
                retired_signing.push(signing_key(&path, &bytes)?);
            } else {
                retired_seals.push(sealing_key(&path, &bytes)?);
            }
        }
        Ok(KeyRing {
            seal,
            retired_seals,
            signing,
            retired_signing,
            rng,
        })
    }

    /// Replaces the current signing and/or sealing key in `dir` with a new one, keeping the one
    /// it replaces as a retired key file (0600, named by its id). It works on the files alone:
    /// a running control plane keeps the keys it loaded, and the new ones take effect when it
    /// next starts (PROTOCOL.md CP-KEY-2: its sessions then tell every device the new signing
    /// key, signed with the one the device trusts).
    pub fn rotate(dir: &Path, rotation: Rotation) -> Result<Rotated, CryptoError> {
        let rng = SystemRandom::new();
        let mut rotated = Rotated {
            signing: None,
            sealing: None,
        };
        if rotation.sealing {
            let path = dir.join(SEAL_KEY_FILE);
            let old = read_key_file(&path)?;
            let old_id = sealing_key(&path, &old)?.id;
            retire(dir, &old, RETIRED_SEAL_PREFIX, &old_id, RETIRED_SEAL_SUFFIX)?;
            let new = new_seal_bytes(&rng)?;
            let new_id = sealing_key(&path, &new)?.id;
            write_key_file(&path, &new)?;
            rotated.sealing = Some((hex(&old_id), hex(&new_id)));
        }
        if rotation.signing {
            let path = dir.join(SIGNING_KEY_FILE);
            let old = read_key_file(&path)?;
            let old_id = signing_key(&path, &old)?.id;
            retire(
                dir,
                &old,
                RETIRED_SIGNING_PREFIX,
                &old_id,
                RETIRED_SIGNING_SUFFIX,
            )?;
            let new = new_signing_bytes(&rng)?;
            let new_id = signing_key(&path, &new)?.id;
            write_key_file(&path, &new)?;
            rotated.signing = Some((hex(&old_id), hex(&new_id)));
        }
        Ok(rotated)
    }

    /// Encrypts `plaintext` bound to `context` (e.g. the device id) with the current sealing
    /// key: the result opens only with the same context, so a sealed value cannot be moved to
    /// another record. It starts with the key's id, so it still opens after a rotation.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let mut sealed =
            Vec::with_capacity(SEALED_MARKER.len() + KEY_ID_LEN + NONCE_LEN + plaintext.len() + 16);
        sealed.extend_from_slice(&SEALED_MARKER);
        sealed.extend_from_slice(&self.seal.id);
        sealed.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.seal
            .key
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

    /// Opens what [`KeyRing::seal`] sealed with `context`, with the key its id names, current or
    /// retired. A value sealed before key ids (no marker) is tried with every key: the tag
    /// tells which one sealed it.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let keys = || std::iter::once(&self.seal).chain(&self.retired_seals);
        if let Some(rest) = sealed.strip_prefix(&SEALED_MARKER[..])
            && rest.len() >= KEY_ID_LEN
        {
            let (id, nonce_and_body) = rest.split_at(KEY_ID_LEN);
            if let Some(key) = keys().find(|key| key.id[..] == *id)
                && let Ok(plain) = open_with(&key.key, nonce_and_body, context)
            {
                return Ok(plain);
            }
        }
        keys()
            .find_map(|key| open_with(&key.key, sealed, context).ok())
            .ok_or(CryptoError::Open)
    }

    /// The current signing key's signature of `body`.
    pub fn sign(&self, body: &[u8]) -> Vec<u8> {
        self.signing.pair.sign(body).as_ref().to_vec()
    }

    pub fn signing_public_key(&self) -> &[u8] {
        self.signing.pair.public_key().as_ref()
    }

    /// The id every signature of the current key travels with (PROTOCOL.md CP-KEY-1).
    pub fn signing_key_id(&self) -> KeyId {
        self.signing.id
    }

    /// Each retired signing key's id and its signature of `bytes`: the key updates that lead a
    /// device still trusting that key to the current one (PROTOCOL.md CP-KEY-2).
    pub fn retired_signatures(&self, bytes: &[u8]) -> Vec<(KeyId, Vec<u8>)> {
        self.retired_signing
            .iter()
            .map(|key| (key.id, key.pair.sign(bytes).as_ref().to_vec()))
            .collect()
    }

    /// The current sealing key's id (the one [`KeyRing::seal`] writes).
    pub fn sealing_key_id(&self) -> KeyId {
        self.seal.id
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

/// Opens `nonce ‖ ciphertext ‖ tag` with `key` and `context`.
fn open_with(
    key: &LessSafeKey,
    sealed: &[u8],
    context: &str,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Open);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
    let mut buffer = Zeroizing::new(body.to_vec());
    let plain_len = key
        .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
        .map_err(|_| CryptoError::Open)?
        .len();
    buffer.truncate(plain_len);
    Ok(buffer)
}

fn new_seal_bytes(rng: &SystemRandom) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let mut key = Zeroizing::new(vec![0u8; 32]);
    rng.fill(&mut key).map_err(|_| CryptoError::Random)?;
    Ok(key)
}

fn new_signing_bytes(rng: &SystemRandom) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let doc = Ed25519KeyPair::generate_pkcs8(rng).map_err(|_| CryptoError::Random)?;
    Ok(Zeroizing::new(doc.as_ref().to_vec()))
}

/// A sealing key from its file's bytes; its id is a one-way hash of the key behind a context
/// of its own, so it names the key without revealing it.
fn sealing_key(path: &Path, bytes: &[u8]) -> Result<SealingKey, CryptoError> {
    let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| CryptoError::BadKey {
        path: path.to_path_buf(),
        what: "expected 32 bytes",
    })?;
    let mut hashed = Zeroizing::new(Vec::with_capacity(SEAL_KEY_ID_CONTEXT.len() + bytes.len()));
    hashed.extend_from_slice(SEAL_KEY_ID_CONTEXT);
    hashed.extend_from_slice(bytes);
    Ok(SealingKey {
        id: key_id_of(&hashed),
        key: LessSafeKey::new(key),
    })
}

/// A key id: the first [`KEY_ID_LEN`] bytes of the SHA-256 of `named` (a signing key's public
/// key; a sealing key behind its label).
fn key_id_of(named: &[u8]) -> KeyId {
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&sha256(named)[..KEY_ID_LEN]);
    id
}

fn signing_key(path: &Path, pkcs8: &[u8]) -> Result<SigningKey, CryptoError> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| CryptoError::BadKey {
        path: path.to_path_buf(),
        what: "expected an Ed25519 PKCS#8 document",
    })?;
    Ok(SigningKey {
        id: key_id_of(pair.public_key().as_ref()),
        pair,
    })
}

/// The retired key files in `dir`, in name order.
fn retired_files(dir: &Path) -> Result<Vec<PathBuf>, CryptoError> {
    let io = |source| CryptoError::KeyFile {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = file_name(&path);
        let retired = (name.starts_with(RETIRED_SEAL_PREFIX)
            && name.ends_with(RETIRED_SEAL_SUFFIX))
            || (name.starts_with(RETIRED_SIGNING_PREFIX) && name.ends_with(RETIRED_SIGNING_SUFFIX));
        if retired {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Keeps `bytes`, the key a rotation replaces, as `<prefix><id><suffix>`.
fn retire(
    dir: &Path,
    bytes: &[u8],
    prefix: &str,
    id: &KeyId,
    suffix: &str,
) -> Result<(), CryptoError> {
    write_key_file(&dir.join(format!("{prefix}{}{suffix}", hex(id))), bytes)
}

fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| CryptoError::KeyFile {
            path: path.to_path_buf(),
            source,
        })
}

fn write_key_file(path: &Path, bytes: &[u8]) -> Result<(), CryptoError> {
    write_private_file(path, bytes).map_err(|source| CryptoError::KeyFile {
        path: path.to_path_buf(),
        source,
    })
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

    /// A value sealed as before key ids: nonce, ciphertext and tag, with no marker or id.
    fn sealed_without_key_id(keys: &KeyRing, plaintext: &[u8], context: &str) -> Vec<u8> {
        let nonce = [7u8; NONCE_LEN];
        let mut body = plaintext.to_vec();
        keys.seal
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut body,
            )
            .unwrap();
        [&nonce[..], &body].concat()
    }

    #[test]
    fn values_sealed_before_a_sealing_rotation_still_open_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyRing::load_or_create(dir.path()).unwrap();
        let old_id = keys.sealing_key_id();
        let sealed = keys.seal(b"escrow-token-bytes", "dev_1/device").unwrap();
        assert_eq!(sealed[..2], SEALED_MARKER);
        assert_eq!(sealed[2..2 + KEY_ID_LEN], old_id);
        let legacy = sealed_without_key_id(&keys, b"older-token", "dev_1/device");

        let rotated = KeyRing::rotate(
            dir.path(),
            Rotation {
                signing: false,
                sealing: true,
            },
        )
        .unwrap();
        assert_eq!(rotated.signing, None);
        let (before, after) = rotated.sealing.unwrap();
        assert_eq!(before, hex(&old_id));
        let reloaded = KeyRing::load_or_create(dir.path()).unwrap();
        assert_eq!(hex(&reloaded.sealing_key_id()), after);
        assert_ne!(reloaded.sealing_key_id(), old_id);
        assert_eq!(reloaded.signing_key_id(), keys.signing_key_id());
        assert_eq!(
            &reloaded.open(&sealed, "dev_1/device").unwrap()[..],
            b"escrow-token-bytes"
        );
        assert_eq!(
            &reloaded.open(&legacy, "dev_1/device").unwrap()[..],
            b"older-token"
        );
        assert!(reloaded.open(&sealed, "dev_2/device").is_err());
        let resealed = reloaded.seal(b"new", "ctx").unwrap();
        assert_eq!(resealed[2..2 + KEY_ID_LEN], reloaded.sealing_key_id());
        // The old key alone cannot open what the new one sealed.
        assert!(keys.open(&resealed, "ctx").is_err());

        // Without the retired key file, the old values no longer open.
        std::fs::remove_file(dir.path().join(format!("seal-{before}.key"))).unwrap();
        let without = KeyRing::load_or_create(dir.path()).unwrap();
        assert!(without.open(&sealed, "dev_1/device").is_err());
        assert!(without.open(&legacy, "dev_1/device").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_signing_rotation_keeps_the_old_key_for_key_updates_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyRing::load_or_create(dir.path()).unwrap();
        assert!(keys.retired_signatures(b"x").is_empty());
        let rotated = KeyRing::rotate(
            dir.path(),
            Rotation {
                signing: true,
                sealing: false,
            },
        )
        .unwrap();
        let (before, after) = rotated.signing.unwrap();
        assert_eq!(before, hex(&keys.signing_key_id()));
        let reloaded = KeyRing::load_or_create(dir.path()).unwrap();
        assert_eq!(hex(&reloaded.signing_key_id()), after);
        assert_eq!(
            reloaded.signing_key_id(),
            sha256(reloaded.signing_public_key())[..KEY_ID_LEN]
        );
        let verify = |public: &[u8], body: &[u8], signature: &[u8]| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
                .verify(body, signature)
                .is_ok()
        };
        assert!(verify(
            reloaded.signing_public_key(),
            b"body",
            &reloaded.sign(b"body")
        ));
        assert!(!verify(
            keys.signing_public_key(),
            b"body",
            &reloaded.sign(b"body")
        ));
        let retired = reloaded.retired_signatures(b"update");
        assert_eq!(retired.len(), 1);
        assert_eq!(retired[0].0, keys.signing_key_id());
        assert!(verify(keys.signing_public_key(), b"update", &retired[0].1));
        let retired_file = dir.path().join(format!("command-signing-{before}.pk8"));
        let mode = fs::metadata(&retired_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rotating_without_keys_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let error = KeyRing::rotate(
            dir.path(),
            Rotation {
                signing: true,
                sealing: true,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("seal.key"), "{error}");
    }
}
