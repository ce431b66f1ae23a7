//! Secrets at rest: bank client secrets (and, with the connection journey, OAuth tokens)
//! are sealed with AES-256-GCM before they reach the database, and opened only where they
//! are used. Each sealed value names the key that sealed it, so keys rotate: a new key
//! seals from then on, the old ones still open what they sealed until `freshet keys
//! rotate` has sealed everything again.
//!
//! Where the keys come from: `FRESHET_MASTER_KEY` (base64 of 32 bytes) is the current key
//! and `FRESHET_RETIRED_MASTER_KEYS` (comma-separated, same form) the old ones; when the
//! first is unset, a key file beside the SQLite file (`<db>.keys`, mode 0600, one base64
//! key a line, the last one current) is created on first start.
//!
//! A sealed value is `v1.<key id>.<base64url(nonce ‖ ciphertext)>`; the key id is derived
//! from the key (8 hex digits), never chosen. The associated data is what the value is
//! (e.g. `bank:acme:client_secret`), so a sealed value moved to another row does not open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// The environment variable holding the current master key.
pub const MASTER_KEY_ENV: &str = "FRESHET_MASTER_KEY";
/// The environment variable holding retired master keys (still opening old values).
pub const RETIRED_KEYS_ENV: &str = "FRESHET_RETIRED_MASTER_KEYS";

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;

/// Why a secret could not be sealed or opened, or the keys not loaded. Never carries the
/// secret or a key.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A key is not base64 of exactly 32 bytes.
    #[error("{0}: a master key must be base64 of exactly 32 bytes")]
    BadKey(String),
    /// The key file could not be read or written.
    #[error("the key file {path}: {error}")]
    KeyFile {
        /// Which file.
        path: PathBuf,
        /// What the system said.
        error: String,
    },
    /// The value is not of the sealed form.
    #[error("not a sealed value")]
    Malformed,
    /// No loaded key has this id.
    #[error("no key {0} is loaded (was it retired without a rotation?)")]
    UnknownKey(String),
    /// The value does not open with its key and context: tampered, or moved.
    #[error("the sealed value does not open (tampered with, or not for {0})")]
    DoesNotOpen(String),
    /// The system gave no randomness for a key or a nonce.
    #[error("randomness: {0}")]
    Random(String),
}

/// One AES-256 key and its derived id.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: Aes256Gcm,
}

impl Key {
    fn from_bytes(bytes: &[u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"freshet key id v1\0")
            .chain_update(bytes)
            .finalize();
        Self {
            id: digest[..4].iter().map(|b| format!("{b:02x}")).collect(),
            cipher: Aes256Gcm::new(bytes.into()),
        }
    }

    fn parse(text: &str, what: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::BadKey(what.to_owned()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SecretError::BadKey(what.to_owned()))?;
        Ok(Self::from_bytes(&bytes))
    }

    fn generate() -> Result<([u8; 32], Self), SecretError> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
        let key = Self::from_bytes(&bytes);
        Ok((bytes, key))
    }
}

/// The keys this process holds: the current one seals, every one opens its own.
#[derive(Clone)]
pub struct Keyring {
    current: Key,
    by_id: HashMap<String, Key>,
    /// The key file they came from, if any (rotation appends to it).
    file: Option<PathBuf>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: never a key.
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("keys", &self.by_id.len())
            .field("file", &self.file)
            .finish()
    }
}

impl Keyring {
    /// The keys for the database at `db_file` (`None` for an in-memory database): from the
    /// environment when `FRESHET_MASTER_KEY` is set, else from the key file beside the
    /// database (created with a fresh key when missing), else — in memory — a fresh key
    /// that lives as long as the process (as the database does).
    pub fn load(db_file: Option<&Path>) -> Result<Self, SecretError> {
        if let Ok(current) = std::env::var(MASTER_KEY_ENV) {
            let retired = std::env::var(RETIRED_KEYS_ENV).unwrap_or_default();
            let retired = retired
                .split(',')
                .filter(|k| !k.trim().is_empty())
                .map(|k| Key::parse(k, RETIRED_KEYS_ENV))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self::of(
                Key::parse(&current, MASTER_KEY_ENV)?,
                retired,
                None,
            ));
        }
        match db_file {
            Some(db) => Self::from_file(&key_file_of(db)),
            None => Ok(Self::of(Key::generate()?.1, Vec::new(), None)),
        }
    }

    /// A keyring of one fresh key, kept nowhere (tests).
    pub fn ephemeral() -> Result<Self, SecretError> {
        Ok(Self::of(Key::generate()?.1, Vec::new(), None))
    }

    fn of(current: Key, retired: Vec<Key>, file: Option<PathBuf>) -> Self {
        let mut by_id: HashMap<String, Key> =
            retired.into_iter().map(|k| (k.id.clone(), k)).collect();
        by_id.insert(current.id.clone(), current.clone());
        Self {
            current,
            by_id,
            file,
        }
    }

    fn from_file(path: &Path) -> Result<Self, SecretError> {
        let file_error = |e: std::io::Error| SecretError::KeyFile {
            path: path.to_owned(),
            error: e.to_string(),
        };
        if !path.exists() {
            let (bytes, _) = Key::generate()?;
            write_private(path, &format!("{}\n", STANDARD.encode(bytes))).map_err(file_error)?;
        }
        let text = std::fs::read_to_string(path).map_err(file_error)?;
        let what = path.display().to_string();
        let mut keys = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| Key::parse(l, &what))
            .collect::<Result<Vec<_>, _>>()?;
        let current = keys.pop().ok_or(SecretError::BadKey(what))?;
        Ok(Self::of(current, keys, Some(path.to_owned())))
    }

    /// The id of the key that seals.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plain` as the value `context` names (e.g. `bank:acme:client_secret`).
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<String, SecretError> {
        let mut nonce = [0_u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SecretError::Random(e.to_string()))?;
        let sealed = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::DoesNotOpen(context.to_owned()))?;
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        Ok(format!(
            "{VERSION}.{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(body)
        ))
    }

    /// Opens a value sealed as `context`, with whichever loaded key sealed it.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Malformed);
        };
        let key = self
            .by_id
            .get(id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretError::Malformed)?;
        if body.len() < NONCE_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::DoesNotOpen(context.to_owned()))
    }

    /// Whether `sealed` was sealed by the current key (else a rotation should reseal it).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed
            .split('.')
            .nth(1)
            .is_some_and(|id| id == self.current.id)
    }

    /// Adds a fresh key to the key file as the new current key (the old ones stay, to open
    /// what they sealed) and returns the keyring with it. Keys from the environment are
    /// rotated by the operator instead: a new `FRESHET_MASTER_KEY`, the old one moved to
    /// `FRESHET_RETIRED_MASTER_KEYS`.
    pub fn with_new_key(&self) -> Result<Self, SecretError> {
        let Some(path) = &self.file else {
            return Err(SecretError::KeyFile {
                path: PathBuf::from(MASTER_KEY_ENV),
                error: format!(
                    "keys from the environment are rotated by setting a new {MASTER_KEY_ENV} and moving the old one to {RETIRED_KEYS_ENV}"
                ),
            });
        };
        let (bytes, _) = Key::generate()?;
        let file_error = |e: std::io::Error| SecretError::KeyFile {
            path: path.clone(),
            error: e.to_string(),
        };
        let mut text = std::fs::read_to_string(path).map_err(file_error)?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&STANDARD.encode(bytes));
        text.push('\n');
        write_private(path, &text).map_err(file_error)?;
        Self::from_file(path)
    }
}

/// Where the keys of the database at `db` live.
pub fn key_file_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".keys");
    PathBuf::from(name)
}

/// Writes `text` to `path` readable by its owner only, replacing it whole (a crash leaves
/// the old file or the new one, never half of one).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let partial = path.with_extension("keys.partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&partial)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_as_what_it_was_sealed_as() {
        let keys = Keyring::ephemeral().unwrap_or_else(|e| panic!("{e}"));
        let sealed = keys
            .seal("bank:acme:client_secret", b"s3cret")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!sealed.contains("s3cret"));
        assert!(sealed.starts_with(&format!("v1.{}.", keys.current_key_id())));
        assert_eq!(
            keys.open("bank:acme:client_secret", &sealed)
                .ok()
                .as_deref(),
            Some(&b"s3cret"[..])
        );
        assert!(matches!(
            keys.open("bank:other:client_secret", &sealed),
            Err(SecretError::DoesNotOpen(_))
        ));
        // One bit changed anywhere in the body: refused.
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap_or_default();
        assert!(keys.open("bank:acme:client_secret", &tampered).is_err());
        assert!(matches!(
            keys.open("bank:acme:client_secret", "plain text"),
            Err(SecretError::Malformed)
        ));
        // Two seals of one value differ (fresh nonces).
        assert_ne!(
            keys.seal("c", b"x").unwrap_or_default(),
            keys.seal("c", b"x").unwrap_or_default()
        );
    }

    #[test]
    fn the_key_file_is_created_private_and_a_new_key_still_opens_old_values() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = dir.path().join("freshet.db");
        let first = Keyring::from_file(&key_file_of(&db)).unwrap_or_else(|e| panic!("{e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_file_of(&db))
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            assert_eq!(mode, 0o600);
        }
        let again = Keyring::from_file(&key_file_of(&db)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            again.current_key_id(),
            first.current_key_id(),
            "the same key next start"
        );
        let old = first.seal("t", b"token").unwrap_or_default();
        let rotated = first.with_new_key().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(rotated.current_key_id(), first.current_key_id());
        assert!(!rotated.is_current(&old));
        assert_eq!(rotated.open("t", &old).ok().as_deref(), Some(&b"token"[..]));
        let new = rotated.seal("t", b"token").unwrap_or_default();
        assert!(rotated.is_current(&new));
        assert!(matches!(
            first.open("t", &new),
            Err(SecretError::UnknownKey(_))
        ));
    }

    #[test]
    fn a_key_must_be_32_bytes_of_base64() {
        assert!(Key::parse(&STANDARD.encode([7_u8; 32]), "k").is_ok());
        assert!(matches!(
            Key::parse(&STANDARD.encode([7_u8; 31]), "k"),
            Err(SecretError::BadKey(_))
        ));
        assert!(matches!(
            Key::parse("not base64!", "k"),
            Err(SecretError::BadKey(_))
        ));
    }
}
