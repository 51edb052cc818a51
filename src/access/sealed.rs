//! Secrets at rest: the users' GitLab access and refresh tokens are stored sealed with
//! AES-256-GCM under nbforge's secret key (`NBFORGE_SECRET_KEY`, or a key generated into the
//! data directory on first start). A sealed value names the purpose it was sealed for, so a
//! value copied from one column to another does not open.

use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::Secret;

/// Bytes of key material.
pub const KEY_LEN: usize = 32;
const PREFIX: &str = "v1.";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the secret key must be {KEY_LEN} bytes, as 64 hex digits or base64url")]
    BadKey,
    #[error("the sealed value is damaged or was sealed with another key")]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error("key file {path}: {message}")]
    KeyFile { path: String, message: String },
}

/// A key that seals and opens secrets.
pub struct SecretBox {
    key: RandomizedNonceKey,
    /// `SHA-256("nbforge key derivation" NUL key)`: the root of [`SecretBox::derive`]'s keys,
    /// so a derived key never reveals the sealing key.
    derivation: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

/// `n` random bytes from the system's generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).expect("the system random generator works");
    out
}

impl SecretBox {
    /// A box over a key given as 64 hex digits or 43 base64url characters.
    pub fn from_secret(secret: &Secret) -> Result<SecretBox, SealError> {
        let text = secret.expose().trim();
        let bytes = hex::decode(text)
            .ok()
            .filter(|b| b.len() == KEY_LEN)
            .or_else(|| {
                URL_SAFE_NO_PAD
                    .decode(text)
                    .ok()
                    .filter(|b| b.len() == KEY_LEN)
            })
            .ok_or(SealError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<SecretBox, SealError> {
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadKey)?;
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut h, b"nbforge key derivation\0");
        sha2::Digest::update(&mut h, bytes);
        Ok(SecretBox {
            key,
            derivation: sha2::Digest::finalize(h).into(),
        })
    }

    /// The key in `path`, made there (64 hex digits, mode 0600) when the file is missing.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, SealError> {
        let file_error = |message: String| SealError::KeyFile {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_secret(&Secret::new(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| file_error(e.to_string()))?;
                }
                let key = random_bytes::<KEY_LEN>();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(|e| file_error(e.to_string()))?;
                std::io::Write::write_all(&mut file, hex::encode(key).as_bytes())
                    .map_err(|e| file_error(e.to_string()))?;
                Self::from_bytes(&key)
            }
            Err(e) => Err(file_error(e.to_string())),
        }
    }

    /// A key for `purpose` (64 hex digits) derived from the secret key: stable across
    /// restarts, different for every purpose, and telling nothing of the secret key.
    pub fn derive(&self, purpose: &str) -> Secret {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.derivation)
            .expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        Secret::new(hex::encode(mac.finalize().into_bytes()))
    }

    /// `plain` sealed for `purpose` (e.g. `gitlab-refresh-token`), as printable text.
    pub fn seal(&self, purpose: &str, plain: &str) -> Result<String, SealError> {
        let mut data = plain.as_bytes().to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(purpose.as_bytes()), &mut data)
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a value sealed for `purpose`.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Secret, SealError> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(SealError::Open)?;
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut data = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut data)
            .map_err(|_| SealError::Open)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| SealError::Open)?;
        Ok(Secret::new(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SecretBox {
        SecretBox::from_secret(&Secret::new("11".repeat(KEY_LEN))).unwrap()
    }

    #[test]
    fn seals_and_opens() {
        let b = sample();
        let sealed = b.seal("gitlab-access-token", "glpat-abc").unwrap();
        assert!(!sealed.contains("glpat"));
        assert_ne!(sealed, b.seal("gitlab-access-token", "glpat-abc").unwrap());
        assert_eq!(
            b.open("gitlab-access-token", &sealed).unwrap().expose(),
            "glpat-abc"
        );
    }

    #[test]
    fn refuses_other_purposes_keys_and_damage() {
        let b = sample();
        let sealed = b.seal("gitlab-access-token", "glpat-abc").unwrap();
        assert!(b.open("gitlab-refresh-token", &sealed).is_err());
        let other = SecretBox::from_secret(&Secret::new("22".repeat(KEY_LEN))).unwrap();
        assert!(other.open("gitlab-access-token", &sealed).is_err());
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(b.open("gitlab-access-token", &damaged).is_err());
        assert!(b.open("gitlab-access-token", "v1.").is_err());
        assert!(SecretBox::from_secret(&Secret::new("short")).is_err());
    }

    #[test]
    fn derived_keys_are_stable_per_purpose_and_key() {
        let b = sample();
        let k = b.derive("jupyter-session-tokens");
        assert_eq!(k.expose().len(), 64);
        assert_eq!(
            k.expose(),
            sample().derive("jupyter-session-tokens").expose()
        );
        assert_ne!(k.expose(), b.derive("other").expose());
        let other = SecretBox::from_secret(&Secret::new("22".repeat(KEY_LEN))).unwrap();
        assert_ne!(k.expose(), other.derive("jupyter-session-tokens").expose());
        assert!(!k.expose().contains(&"11".repeat(8)));
    }

    #[test]
    fn a_key_file_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secret-key");
        let first = SecretBox::load_or_create(&path).unwrap();
        let sealed = first.seal("p", "v").unwrap();
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(again.open("p", &sealed).unwrap().expose(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
    }
}
