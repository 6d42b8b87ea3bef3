//! Detached minisign (Ed25519) signatures: `BUNDLE.minisig` beside the bundle, over the file
//! exactly as it is on disk (encrypted or not), checkable with `minisign -Vm BUNDLE -p KEY`.

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use minisign::{PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};

use crate::error::SealError;
use airgap_archive::install::read::{BundleFile, BundleReader};

/// The detached signature of a bundle: `BUNDLE.minisig` (minisign's own default name).
pub fn signature_path(bundle: &Path) -> PathBuf {
    let mut s = bundle.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

/// A minisign secret key, ready to sign. Its `Debug` shows only the key id.
pub struct SigningKey {
    key: SecretKey,
    id: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.id)
    }
}

impl SigningKey {
    /// The key id, as minisign prints it (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A trusted minisign public key.
#[derive(Clone)]
pub struct TrustedKey {
    key: PublicKey,
    id: String,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedKey({})", self.id)
    }
}

impl TrustedKey {
    /// The key id (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }
}

fn key_id(keynum: &[u8]) -> String {
    let mut n = [0u8; 8];
    let len = keynum.len().min(8);
    n[..len].copy_from_slice(&keynum[..len]);
    format!("{:016X}", u64::from_le_bytes(n))
}

/// The base64 line of a minisign key file (the line after the untrusted comment).
fn key_line(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
}

/// Whether a minisign secret key file is encrypted with a password: its first bytes are
/// `Ed` then the KDF (`Sc` for scrypt, two zero bytes for none), then `B2`.
pub fn secret_key_is_encrypted(path: &Path) -> Result<bool, SealError> {
    let text = read_key_file(path, "secret")?;
    let line = key_line(&text).unwrap_or("");
    if line.starts_with("RWQAAEIy") {
        Ok(false)
    } else if line.starts_with("RWRTY0Iy") {
        Ok(true)
    } else {
        Err(SealError::Key {
            path: path.into(),
            kind: "secret",
            reason: "unknown key format".into(),
        })
    }
}

fn read_key_file(path: &Path, kind: &'static str) -> Result<String, SealError> {
    let bytes = fs::read(path).map_err(|e| SealError::io("reading", path, e))?;
    if bytes.len() > 4096 {
        return Err(SealError::Key {
            path: path.into(),
            kind,
            reason: "the file is too large".into(),
        });
    }
    String::from_utf8(bytes).map_err(|_| SealError::Key {
        path: path.into(),
        kind,
        reason: "the file is not text".into(),
    })
}

/// Load a minisign secret key. `password` is called only for an encrypted key.
pub fn load_secret_key(
    path: &Path,
    password: impl FnOnce() -> Result<SecretString, SealError>,
) -> Result<SigningKey, SealError> {
    let encrypted = secret_key_is_encrypted(path)?;
    let text = read_key_file(path, "secret")?;
    let sk_box = SecretKeyBox::from_string(&text).map_err(|_| SealError::Key {
        path: path.into(),
        kind: "secret",
        reason: "it does not parse".into(),
    })?;
    let key = if encrypted {
        let pw = password()?;
        SecretKey::from_box(sk_box, Some(pw.expose_secret().to_string())).map_err(|e| {
            if e.to_string().contains("password") {
                SealError::WrongKeyPassword { path: path.into() }
            } else {
                SealError::Key {
                    path: path.into(),
                    kind: "secret",
                    reason: "it does not parse".into(),
                }
            }
        })?
    } else {
        unencrypted_secret_key(path, &text, sk_box)?
    };
    let id = key_id(key.keynum());
    Ok(SigningKey { key, id })
}

/// An unencrypted secret key. `minisign -G -W` (0.11) leaves its checksum zero, which the
/// crate refuses: such a key is read as is (a wrong key would make signatures that do not
/// verify, never a wrong signature that does).
fn unencrypted_secret_key(
    path: &Path,
    text: &str,
    sk_box: SecretKeyBox,
) -> Result<SecretKey, SealError> {
    use base64::Engine;
    let bad = |reason: &str| SealError::Key {
        path: path.into(),
        kind: "secret",
        reason: reason.into(),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key_line(text).unwrap_or(""))
        .map_err(|_| bad("it is not base64"))?;
    // sig_alg 2, kdf_alg 2, chk_alg 2, salt 32, opslimit 8, memlimit 8, keynum 8, sk 64, chk 32
    if bytes.len() != 158 {
        return Err(bad("it has the wrong length"));
    }
    if bytes[126..].iter().all(|&b| b == 0) {
        SecretKey::from_bytes(&bytes).map_err(|_| bad("it does not parse"))
    } else {
        SecretKey::from_unencrypted_box(sk_box)
            .map_err(|_| bad("its checksum does not match (damaged)"))
    }
}

/// Load a trusted public key: a minisign `.pub` file, or the base64 key itself (as
/// `minisign -P` takes it).
pub fn load_public_key(spec: &str) -> Result<TrustedKey, SealError> {
    let path = Path::new(spec);
    let key = if path.exists() {
        let text = read_key_file(path, "public")?;
        PublicKeyBox::from_string(&text)
            .and_then(|b| b.into_public_key())
            .or_else(|_| PublicKey::from_base64(key_line(&text).unwrap_or("")))
            .map_err(|_| SealError::Key {
                path: path.into(),
                kind: "public",
                reason: "it does not parse".into(),
            })?
    } else {
        PublicKey::from_base64(spec.trim()).map_err(|_| SealError::Key {
            path: path.into(),
            kind: "public",
            reason: "no such file, and not a base64 minisign public key either".into(),
        })?
    };
    let id = key_id(key.keynum());
    Ok(TrustedKey { key, id })
}

/// Sign `bundle` (whose sha256 is `sha256`) and write `BUNDLE.minisig` atomically beside
/// it. The trusted comment names the file and its sha256.
pub fn sign_file(bundle: &Path, sha256: &str, key: &SigningKey) -> Result<PathBuf, SealError> {
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let trusted = format!("file:{name}\tsha256:{sha256}");
    let file = File::open(bundle).map_err(|e| SealError::io("reading", bundle, e))?;
    let sig = minisign::sign(
        None,
        &key.key,
        file,
        Some(&trusted),
        Some(&format!("signature from airgap, key {}", key.id)),
    )
    .map_err(|e| SealError::Sign {
        bundle: bundle.into(),
        reason: e.to_string(),
    })?;
    let path = signature_path(bundle);
    write_atomic(&path, sig.to_string().as_bytes(), 0o644)?;
    Ok(path)
}

/// What a good signature says.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The file the signature covers: the bundle, or a split bundle's volume list.
    pub file: PathBuf,
    /// The signature file.
    pub signature: PathBuf,
    /// The id of the key that signed.
    pub key_id: String,
    /// The signed trusted comment.
    pub trusted_comment: String,
}

/// Check `BUNDLE.minisig` against `bundle` as it is on disk and the trusted key.
pub fn verify_file(bundle: &Path, trusted: &TrustedKey) -> Result<Verified, SealError> {
    let file = File::open(bundle).map_err(|e| SealError::io("reading", bundle, e))?;
    verify_opened(bundle, &BundleFile::from_file(file), trusted)
}

/// [`verify_file`] over the descriptor the bundle will then be read through (from
/// `airgap_archive::install::read::open_bundle`): what the signature covers is what gets installed,
/// whatever is renamed over the path afterwards.
pub fn verify_opened(
    bundle: &Path,
    opened: &BundleFile,
    trusted: &TrustedKey,
) -> Result<Verified, SealError> {
    // A split bundle's signature is its list's (`NAME.tar.gz.volumes.minisig`).
    let (signed, file) = opened.signed(bundle).map_err(SealError::from_archive)?;
    let bundle = signed.as_path();
    let signature = signature_path(bundle);
    if !signature.exists() {
        return Err(SealError::SignatureMissing {
            bundle: bundle.into(),
            signature,
        });
    }
    let invalid = |reason: String| SealError::SignatureInvalid {
        bundle: bundle.into(),
        signature: signature.clone(),
        reason,
    };
    let text = fs::read(&signature).map_err(|e| SealError::io("reading", &signature, e))?;
    if text.len() > 64 * 1024 {
        return Err(invalid("the signature file is too large".into()));
    }
    let text = String::from_utf8(text).map_err(|_| invalid("not a minisign signature".into()))?;
    let sig =
        SignatureBox::from_string(&text).map_err(|_| invalid("not a minisign signature".into()))?;
    let signed_by = key_id(sig.keynum());
    if signed_by != trusted.id {
        return Err(SealError::SignatureOtherKey {
            signature,
            signed_by,
            trusted: trusted.id.clone(),
        });
    }
    minisign::verify(&trusted.key, &sig, file, true, false, false).map_err(|e| {
        invalid(match e.kind() {
            minisign::ErrorKind::Io => e.to_string(),
            _ => "the signature does not match the file".into(),
        })
    })?;
    Ok(Verified {
        file: signed.clone(),
        signature,
        key_id: signed_by,
        trusted_comment: sig.trusted_comment().unwrap_or_default(),
    })
}

/// A duplicate of `opened` (same open file), positioned at its start.
pub(crate) fn from_start(bundle: &Path, opened: &BundleFile) -> Result<BundleReader, SealError> {
    opened.reader(bundle).map_err(SealError::from_archive)
}

/// Write a file through a temporary name beside it and rename it into place.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), SealError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(SealError::io("writing", path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sign_then_verify_and_refuse_a_change_another_key_or_no_signature() {
        let dir = tempfile::tempdir().unwrap();
        let a = crate::keygen::generate(dir.path(), "a").unwrap();
        let b = crate::keygen::generate(dir.path(), "b").unwrap();
        let file = dir.path().join("x.tar.gz");
        fs::write(&file, b"some bundle bytes").unwrap();
        let trusted = load_public_key(a.minisign_public.to_str().unwrap()).unwrap();
        assert!(matches!(
            verify_file(&file, &trusted),
            Err(SealError::SignatureMissing { .. })
        ));

        let key = load_secret_key(&a.minisign_secret, || unreachable!()).unwrap();
        assert_eq!(format!("{key:?}"), format!("SigningKey({})", key.id()));
        let sig = sign_file(&file, "abc", &key).unwrap();
        assert_eq!(sig, dir.path().join("x.tar.gz.minisig"));
        let ok = verify_file(&file, &trusted).unwrap();
        assert_eq!(ok.trusted_comment, "file:x.tar.gz\tsha256:abc");
        assert_eq!(ok.key_id, a.minisign_key_id);
        // The base64 key works as well as the file.
        let line = load_public_key(&a.minisign_public_line).unwrap();
        verify_file(&file, &line).unwrap();

        fs::write(&file, b"some bundle byteS").unwrap();
        assert!(matches!(
            verify_file(&file, &trusted),
            Err(SealError::SignatureInvalid { .. })
        ));

        let other = load_public_key(b.minisign_public.to_str().unwrap()).unwrap();
        assert!(matches!(
            verify_file(&file, &other),
            Err(SealError::SignatureOtherKey { .. })
        ));
    }

    #[test]
    fn keygen_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        crate::keygen::generate(dir.path(), "k").unwrap();
        assert!(matches!(
            crate::keygen::generate(dir.path(), "k"),
            Err(SealError::Exists { .. })
        ));
    }
}
