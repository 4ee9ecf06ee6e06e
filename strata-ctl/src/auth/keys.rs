//! Static X25519 keys: generation, the key file, and their text form.
//!
//! A private key file holds the 32-byte key as 64 lowercase hex digits and a
//! newline, readable by its owner only (0600): `strata-ctl keygen` writes it
//! and prints the public key, which goes into the other side's configuration
//! as the same 64 hex digits. Hex rather than base64 so that a key pasted
//! into TOML has no characters that need quoting rules and a truncated copy
//! is obvious (the length is fixed).

use std::{
    fmt,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use snow::{params::DHChoice, resolvers::CryptoResolver as _};

/// Length of an X25519 key, private or public.
pub const KEY_LEN: usize = 32;

/// Why a key could not be made, read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not 64 hex digits.
    #[error("a key is {} hex digits, got {got:?}", KEY_LEN * 2)]
    BadText {
        /// What was given (a public key, or a private key file's first line
        /// with the digits hidden).
        got: String,
    },
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others may read the private key file.
    #[error("{path}: mode {mode:03o} lets others read the private key; `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file exists already (keygen never overwrites a key).
    #[error("{path} exists; keygen does not overwrite a key (remove it first to replace it)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The Noise library refused (no randomness source, or a bad key).
    #[error("key generation: {0}")]
    Noise(#[from] snow::Error),
}

/// A public key, shown as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; KEY_LEN]);

impl PublicKey {
    /// Parses 64 hex digits (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        decode_hex(text.trim()).map(Self).ok_or_else(|| KeyError::BadText { got: text.to_string() })
    }

    /// A short, stable name for logs and status: the first 8 hex digits, as
    /// operators compare keys by eye.
    pub fn fingerprint(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A private key with the public key that belongs to it. Never printed.
#[derive(Clone)]
pub struct StaticKey {
    private: [u8; KEY_LEN],
    /// The public half.
    pub public: PublicKey,
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticKey(public {})", self.public)
    }
}

impl StaticKey {
    /// A fresh key pair from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let mut dh = x25519()?;
        let mut rng = snow::resolvers::DefaultResolver
            .resolve_rng()
            .ok_or(KeyError::Noise(snow::Error::Init(snow::error::InitStage::GetRngImpl)))?;
        dh.generate(rng.as_mut())?;
        let private = dh.privkey().try_into().map_err(|_| KeyError::BadText { got: "?".into() })?;
        Self::from_private(private)
    }

    /// The key pair of a private key (its public half computed).
    pub fn from_private(private: [u8; KEY_LEN]) -> Result<Self, KeyError> {
        let mut dh = x25519()?;
        dh.set(&private);
        let public = dh.pubkey().try_into().map_err(|_| KeyError::BadText { got: "?".into() })?;
        Ok(Self { private, public: PublicKey(public) })
    }

    /// The private half, for the Noise handshake only.
    pub(super) fn private(&self) -> &[u8; KEY_LEN] {
        &self.private
    }

    /// Reads a private key file, refusing one that group or others may read
    /// (as ssh does): a leaked car key lets anyone be that car.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io { path: path.to_path_buf(), source };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: path.to_path_buf(), mode });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let private = decode_hex(text.trim()).ok_or_else(|| KeyError::BadText {
            got: format!("{} characters in {}", text.trim().len(), path.display()),
        })?;
        Self::from_private(private)
    }

    /// Writes the private key to a new file, mode 0600 from its creation (no
    /// moment where it is readable by others).
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(
                |source| match source.kind() {
                    std::io::ErrorKind::AlreadyExists => KeyError::Exists { path: path.to_path_buf() },
                    _ => KeyError::Io { path: path.to_path_buf(), source },
                },
            )?;
        writeln!(file, "{}", hex(&self.private))
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyError::Io { path: path.to_path_buf(), source })
    }
}

/// snow's X25519 (the primitive of the handshake's pattern).
fn x25519() -> Result<Box<dyn snow::types::Dh>, KeyError> {
    snow::resolvers::DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .ok_or(KeyError::Noise(snow::Error::Init(snow::error::InitStage::GetDhImpl)))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly 64 hex digits to 32 bytes.
fn decode_hex(text: &str) -> Option<[u8; KEY_LEN]> {
    let digits = text.as_bytes();
    if digits.len() != KEY_LEN * 2 {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_its_file_and_text() {
        let dir = std::env::temp_dir().join(format!("strata-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("edge.key");
        let key = StaticKey::generate().unwrap();
        key.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = StaticKey::load(&path).unwrap();
        assert_eq!(loaded.public, key.public);
        assert_eq!(PublicKey::parse(&key.public.to_string()).unwrap(), key.public);
        assert!(matches!(key.save(&path), Err(KeyError::Exists { .. })));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = StaticKey::load(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_key_text_is_an_error_not_a_panic() {
        for text in ["", "zz", &"0".repeat(63), &"g".repeat(64), &"é".repeat(32)] {
            assert!(PublicKey::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn the_public_half_follows_from_the_private() {
        let key = StaticKey::generate().unwrap();
        let again = StaticKey::from_private(*key.private()).unwrap();
        assert_eq!(again.public, key.public);
        assert_eq!(key.public.fingerprint().len(), 8);
        assert!(!format!("{key:?}").contains(&hex(key.private())));
    }
}
