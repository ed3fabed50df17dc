//! Encryption at rest: the master key, the keys derived from it, the sealed envelope
//! every private field is stored in, and the keyed hash (blind index) used to look up
//! phone numbers without storing them.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::domain::Secret;

/// Length of the master key and of every derived key.
pub const KEY_BYTES: usize = 32;

/// Envelope layout: version (1) ‖ key id (4, LE) ‖ nonce (12) ‖ ciphertext ‖ tag (16).
const ENVELOPE_VERSION: u8 = 1;
const NONCE_BYTES: usize = 12;
const HEADER_BYTES: usize = 1 + 4 + NONCE_BYTES;

/// Salt for HKDF: fixed per format version so the same master key always derives the same keys.
const HKDF_SALT: &[u8] = b"burnbox/key-derivation/v1";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the master key must be 32 bytes, as 64 hex characters or base64")]
    BadMasterKey,
    #[error("cannot read or create the master key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error("a stored record is sealed with key {0:#010x}, which this master key does not provide")]
    UnknownKey(u32),
    #[error("a stored record is damaged or was sealed for another record")]
    Corrupt,
    #[error("the operating system's random number generator failed")]
    Random,
}

/// The 256-bit root secret. Everything else is derived from it; it is wiped from
/// memory as soon as it is dropped (after start-up derives the keys it needs).
pub struct MasterKey([u8; KEY_BYTES]);

impl Drop for MasterKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl MasterKey {
    /// Parses 64 hex characters or standard base64 of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .ok_or(CryptoError::BadMasterKey)?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self(key))
    }

    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key).map_err(|_| CryptoError::Random)?;
        Ok(Self(key))
    }

    /// The configured key if there is one, else the key file in the data directory,
    /// created (mode 0600, hex) on first start.
    pub fn load_or_create(
        configured: Option<&Secret>,
        key_file: &Path,
    ) -> Result<Self, CryptoError> {
        if let Some(secret) = configured {
            return Self::parse(secret.expose());
        }
        let file_error = |message: String| CryptoError::KeyFile {
            path: key_file.display().to_string(),
            message,
        };
        match std::fs::read_to_string(key_file) {
            Ok(text) => Self::parse(&text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate()?;
                write_private_file(key_file, format!("{}\n", hex::encode(key.0)).as_bytes())
                    .map_err(|e| file_error(e.to_string()))?;
                Ok(key)
            }
            Err(error) => Err(file_error(error.to_string())),
        }
    }

    /// Derives a purpose-bound subkey, so one leaked subkey reveals nothing about the others.
    pub fn derive(&self, purpose: &str) -> [u8; KEY_BYTES] {
        let mut out = [0u8; KEY_BYTES];
        // HKDF-SHA256 can produce up to 8160 bytes; 32 never fails.
        let _ = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.0).expand(purpose.as_bytes(), &mut out);
        out
    }
}

/// Creates a file at `path` readable only by its owner (0600) holding `contents`, all
/// or nothing: it is written and made durable beside `path`, then linked into place, so
/// a crash never leaves a half-written key behind (which would stop every later start).
/// Fails if `path` exists, so two first starts racing cannot both make a key.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut partial_name = path.file_name().unwrap_or_default().to_owned();
    partial_name.push(".partial");
    let partial = path.with_file_name(partial_name);
    // Left by a start that crashed mid-write: never linked, so never used.
    match std::fs::remove_file(&partial) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&partial)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&partial, path);
    std::fs::remove_file(&partial)?;
    linked?;
    // The new name must survive a crash too.
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)?.sync_all()
}

/// The keys the store works with, derived from the master key.
pub struct Keyring {
    key_id: u32,
    cipher: Aes256Gcm,
    blind_index_key: [u8; KEY_BYTES],
}

impl Keyring {
    pub fn new(master: &MasterKey) -> Self {
        let data_key = master.derive("data-encryption/1");
        // The key id is a fingerprint of the data key: a store opened with the wrong master
        // key fails with "unknown key" rather than a vague authentication error, and a
        // future key rotation can tell old records from new ones.
        let digest = Sha256::digest(data_key);
        let key_id = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Self {
            key_id,
            cipher: Aes256Gcm::new(&data_key.into()),
            blind_index_key: master.derive("blind-index/1"),
        }
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Encrypts `plaintext` with a fresh random nonce. `context` is authenticated but not
    /// stored: it binds the ciphertext to its record (table and id), so a sealed value
    /// copied into another record fails to open.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| CryptoError::Corrupt)?;
        let mut envelope = Vec::with_capacity(HEADER_BYTES + ciphertext.len());
        envelope.push(ENVELOPE_VERSION);
        envelope.extend_from_slice(&self.key_id.to_le_bytes());
        envelope.extend_from_slice(&nonce);
        envelope.extend_from_slice(&ciphertext);
        Ok(envelope)
    }

    pub fn open(&self, context: &[u8], envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if envelope.len() < HEADER_BYTES || envelope[0] != ENVELOPE_VERSION {
            return Err(CryptoError::Corrupt);
        }
        let key_id = u32::from_le_bytes([envelope[1], envelope[2], envelope[3], envelope[4]]);
        if key_id != self.key_id {
            return Err(CryptoError::UnknownKey(key_id));
        }
        let nonce: [u8; NONCE_BYTES] = envelope[5..HEADER_BYTES]
            .try_into()
            .map_err(|_| CryptoError::Corrupt)?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &envelope[HEADER_BYTES..],
                    aad: context,
                },
            )
            .map_err(|_| CryptoError::Corrupt)
    }

    /// A keyed hash for equality look-ups of private values (phone numbers, provider
    /// message ids). `domain` separates uses so equal inputs in different roles do not
    /// collide.
    pub fn blind_index(&self, domain: &str, value: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.blind_index_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(byte: u8) -> Keyring {
        Keyring::new(&MasterKey([byte; KEY_BYTES]))
    }

    #[test]
    fn seal_then_open_round_trips_with_fresh_nonces() {
        let keys = keyring(7);
        let a = keys.seal(b"message:1", b"your code is 123456").unwrap();
        let b = keys.seal(b"message:1", b"your code is 123456").unwrap();
        assert_ne!(a, b, "every seal uses a fresh nonce");
        assert_eq!(keys.open(b"message:1", &a).unwrap(), b"your code is 123456");
        assert!(!a.windows(6).any(|w| w == b"123456"));
    }

    #[test]
    fn a_sealed_value_only_opens_in_its_own_context_with_its_own_key() {
        let keys = keyring(7);
        let sealed = keys.seal(b"message:1", b"secret").unwrap();
        assert!(matches!(
            keys.open(b"message:2", &sealed),
            Err(CryptoError::Corrupt)
        ));
        assert!(matches!(
            keyring(8).open(b"message:1", &sealed),
            Err(CryptoError::UnknownKey(_))
        ));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            keys.open(b"message:1", &tampered),
            Err(CryptoError::Corrupt)
        ));
        assert!(matches!(
            keys.open(b"message:1", &sealed[..10]),
            Err(CryptoError::Corrupt)
        ));
    }

    #[test]
    fn blind_index_is_keyed_and_domain_separated() {
        let keys = keyring(7);
        let number = b"+14155550100";
        assert_eq!(
            keys.blind_index("number", number),
            keys.blind_index("number", number)
        );
        assert_ne!(
            keys.blind_index("number", number),
            keys.blind_index("dedupe", number)
        );
        assert_ne!(
            keys.blind_index("number", number),
            keyring(8).blind_index("number", number)
        );
    }

    #[test]
    fn master_keys_parse_from_hex_or_base64_and_are_created_private() {
        let hex_key = "11".repeat(32);
        assert_eq!(MasterKey::parse(&hex_key).unwrap().0, [0x11; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode([0x22; 32]);
        assert_eq!(MasterKey::parse(&b64).unwrap().0, [0x22; 32]);
        assert!(MasterKey::parse("short").is_err());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = MasterKey::load_or_create(None, &path).unwrap();
        let again = MasterKey::load_or_create(None, &path).unwrap();
        assert_eq!(
            first.0, again.0,
            "the generated key is reused on the next start"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_key_file_left_half_written_by_a_crash_is_never_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        // What a start killed between creating and writing the file leaves.
        std::fs::write(dir.path().join("master.key.partial"), "").unwrap();
        let key = MasterKey::load_or_create(None, &path).unwrap();
        assert!(!dir.path().join("master.key.partial").exists());
        assert_eq!(MasterKey::load_or_create(None, &path).unwrap().0, key.0);
        assert!(
            write_private_file(&path, b"other").is_err(),
            "an existing key is never replaced"
        );
        assert_eq!(MasterKey::load_or_create(None, &path).unwrap().0, key.0);
    }
}
