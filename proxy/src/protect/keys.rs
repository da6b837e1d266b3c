//! The accepted API keys of one ApiProtection, held only as SHA-256 hashes and compared in
//! constant time.

use std::path::PathBuf;

use augur_policies::KeysFrom;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why the keys could not be read. Never carries a key.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The key file could not be read.
    #[error("cannot read the key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The environment variable is not set (or not UTF-8).
    #[error("environment variable {0} is not set")]
    Env(String),
    /// The source holds no key.
    #[error("{0} holds no key")]
    Empty(String),
}

/// SHA-256 of a key.
pub type KeyHash = [u8; 32];

/// The hashes of the accepted keys.
#[derive(Clone)]
pub struct KeySet {
    hashes: Vec<KeyHash>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not even the hashes: they would let a reader test guesses offline.
        write!(f, "KeySet({} keys)", self.hashes.len())
    }
}

impl KeySet {
    /// Reads the keys from their file or environment variable, keeping only their hashes.
    pub fn load(from: &KeysFrom) -> Result<Self, KeysError> {
        let (text, what) = match from {
            KeysFrom::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| KeysError::File {
                    path: PathBuf::from(path),
                    source,
                })?;
                (text, format!("key file {path}"))
            }
            KeysFrom::Env(var) => {
                let text = std::env::var(var).map_err(|_| KeysError::Env(var.clone()))?;
                // Comma-separated, as every AUGUR_* list.
                (
                    text.replace(',', "\n"),
                    format!("environment variable {var}"),
                )
            }
        };
        let hashes: Vec<KeyHash> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|k| hash(k.as_bytes()))
            .collect();
        if hashes.is_empty() {
            return Err(KeysError::Empty(what));
        }
        Ok(Self { hashes })
    }

    /// Whether `presented` is one of the keys. Every stored hash is compared, each in constant
    /// time, so the time taken does not say which key (or how much of one) matched.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let h = hash(presented);
        self.hashes
            .iter()
            .fold(subtle::Choice::from(0), |found, k| found | k.ct_eq(&h))
            .into()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether there is none (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }
}

/// SHA-256 of `bytes`.
pub fn hash(bytes: &[u8]) -> KeyHash {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_keys_skip_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# clients\nalpha\n\n  beta  \n").unwrap();
        let keys = KeySet::load(&KeysFrom::File(path.display().to_string())).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.accepts(b"alpha"));
        assert!(keys.accepts(b"beta"));
        assert!(!keys.accepts(b"# clients"));
        assert!(!keys.accepts(b"alph"));
        assert!(!keys.accepts(b""));
        assert_eq!(format!("{keys:?}"), "KeySet(2 keys)");
    }

    #[test]
    fn missing_sources_are_errors_that_name_no_key() {
        let e = KeySet::load(&KeysFrom::Env("AUGUR_TEST_NO_SUCH_VAR_7".into())).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable AUGUR_TEST_NO_SUCH_VAR_7 is not set"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, "# none yet\n").unwrap();
        let e = KeySet::load(&KeysFrom::File(path.display().to_string())).unwrap_err();
        assert!(e.to_string().ends_with("holds no key"), "{e}");
    }
}
