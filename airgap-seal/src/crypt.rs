//! age encryption as streams: an [`OutputFilter`] for the archive writer, and a
//! [`Decryptor`] for its reader. The age format (STREAM: ChaCha20-Poly1305 over 64 KiB
//! chunks) authenticates every chunk and the end, so a tampered or truncated file fails to
//! read, and memory stays constant.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::SecretString;
use age::stream::{StreamReader, StreamWriter};
use airgap_archive::{Decryptor, FilteredOutput, HashingWriter, OutputFilter};

use crate::error::SealError;
use airgap_archive::install::read::BundleFile;

/// The suffix an encrypted bundle's default name gets.
pub const SUFFIX: &str = ".age";

/// Who can decrypt: age X25519 public keys, or one passphrase.
pub enum Recipients {
    /// `age1...` public keys.
    Keys(Vec<age::x25519::Recipient>),
    /// A passphrase (scrypt).
    Passphrase(SecretString),
}

impl Recipients {
    /// Parse `age1...` public keys (from `--encrypt-to`).
    pub fn parse(values: &[String]) -> Result<Recipients, SealError> {
        let keys = values
            .iter()
            .map(|v| {
                age::x25519::Recipient::from_str(v.trim()).map_err(|_| SealError::Recipient {
                    shown: shown_recipient(v),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Recipients::Keys(keys))
    }
}

/// A bad `--encrypt-to` value as an error message may show it: only what looks public.
fn shown_recipient(v: &str) -> String {
    let v = v.trim();
    if v.starts_with("AGE-SECRET-KEY-") {
        "an age secret key (AGE-SECRET-KEY-...; give its public key instead)".into()
    } else if v.starts_with("age1") && v.len() < 100 && v.chars().all(|c| c.is_ascii_alphanumeric())
    {
        format!("{v:?}")
    } else {
        format!("a value of {} characters", v.chars().count())
    }
}

/// Encrypts the archive as it is written (an [`OutputFilter`]).
pub struct Encrypt {
    recipients: Recipients,
}

impl Encrypt {
    /// An encrypting filter.
    pub fn new(recipients: Recipients) -> Encrypt {
        Encrypt { recipients }
    }
}

impl fmt::Debug for Encrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.recipients {
            Recipients::Keys(k) => write!(f, "Encrypt({} age recipient(s))", k.len()),
            Recipients::Passphrase(_) => write!(f, "Encrypt(passphrase)"),
        }
    }
}

struct AgeOut(StreamWriter<HashingWriter>);

impl Write for AgeOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl FilteredOutput for AgeOut {
    fn finish(self: Box<Self>) -> io::Result<HashingWriter> {
        self.0.finish()
    }
}

impl OutputFilter for Encrypt {
    fn wrap(&self, out: HashingWriter) -> io::Result<Box<dyn FilteredOutput>> {
        let encryptor = match &self.recipients {
            Recipients::Keys(keys) => {
                age::Encryptor::with_recipients(keys.iter().map(|k| k as &dyn age::Recipient))
                    .map_err(|e| io::Error::other(e.to_string()))?
            }
            Recipients::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
        };
        Ok(Box::new(AgeOut(encryptor.wrap_output(out)?)))
    }
}

/// What decrypts: age identities (from files), or a passphrase.
pub enum Keys {
    /// Identities, and the file(s) they came from (for messages).
    Identities {
        /// The identities.
        identities: Vec<Box<dyn age::Identity + Send + Sync>>,
        /// The file(s) given, joined for messages.
        files: PathBuf,
    },
    /// A passphrase.
    Passphrase(SecretString),
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keys::Identities { files, .. } => {
                write!(f, "Keys(identities from {})", files.display())
            }
            Keys::Passphrase(_) => write!(f, "Keys(passphrase)"),
        }
    }
}

impl Keys {
    /// Read age identity files (the age-keygen format: comments and `AGE-SECRET-KEY-1...`).
    pub fn from_files(paths: &[PathBuf]) -> Result<Keys, SealError> {
        let mut identities = Vec::new();
        for path in paths {
            let file = File::open(path).map_err(|e| SealError::io("reading", path, e))?;
            let parsed = age::IdentityFile::from_buffer(BufReader::new(file))
                .map_err(|e| identity_error(path, e.kind()))?
                .into_identities()
                .map_err(|_| SealError::Identity {
                    path: path.clone(),
                    reason: "it holds identities this build cannot use".into(),
                })?;
            if parsed.is_empty() {
                return Err(SealError::Identity {
                    path: path.clone(),
                    reason: "it holds no identity".into(),
                });
            }
            identities.extend(parsed);
        }
        let files = PathBuf::from(
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        );
        Ok(Keys::Identities { identities, files })
    }

    /// Open `file` (positioned at its start) as an age file and return its plaintext.
    pub fn decrypt(&self, bundle: &Path, file: Box<dyn Read + Send>) -> Result<Plain, SealError> {
        let input = age::armor::ArmoredReader::new(file);
        let decryptor = age::Decryptor::new(input).map_err(|e| SealError::Tampered {
            bundle: bundle.into(),
            reason: format!("not a valid age file ({})", one_line(&e.to_string())),
        })?;
        let scrypt = decryptor.is_scrypt();
        let result = match self {
            Keys::Identities { identities, .. } => {
                if scrypt {
                    return Err(SealError::WrongKind {
                        bundle: bundle.into(),
                        encrypted_with: "with a passphrase",
                        given: "an identity",
                    });
                }
                decryptor.decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            }
            Keys::Passphrase(p) => {
                if !scrypt {
                    return Err(SealError::WrongKind {
                        bundle: bundle.into(),
                        encrypted_with: "to age public keys",
                        given: "a passphrase",
                    });
                }
                let identity = age::scrypt::Identity::new(p.clone());
                decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
            }
        };
        match result {
            Ok(reader) => Ok(Plain {
                inner: reader,
                bundle: bundle.into(),
            }),
            Err(age::DecryptError::NoMatchingKeys) => Err(self.no_key(bundle)),
            Err(age::DecryptError::DecryptionFailed) if scrypt => Err(self.no_key(bundle)),
            Err(e) => Err(SealError::Tampered {
                bundle: bundle.into(),
                reason: one_line(&e.to_string()),
            }),
        }
    }

    fn no_key(&self, bundle: &Path) -> SealError {
        match self {
            Keys::Identities { files, .. } => SealError::NoMatchingKey {
                bundle: bundle.into(),
                identities: files.clone(),
            },
            Keys::Passphrase(_) => SealError::WrongPassphrase {
                bundle: bundle.into(),
            },
        }
    }

    /// Decrypt the whole file once, discarding the plaintext: every chunk and the end are
    /// authenticated, so that a tampered file is refused before anything is extracted.
    /// Returns the plaintext size.
    pub fn authenticate(&self, bundle: &Path) -> Result<u64, SealError> {
        let file = File::open(bundle).map_err(|e| SealError::io("opening", bundle, e))?;
        self.authenticate_opened(bundle, &BundleFile::from_file(file))
    }

    /// [`Keys::authenticate`] over the descriptor the bundle is then extracted through.
    pub fn authenticate_opened(
        &self,
        bundle: &Path,
        opened: &BundleFile,
    ) -> Result<u64, SealError> {
        let file = crate::sign::from_start(bundle, opened)?;
        let mut plain = self.decrypt(bundle, Box::new(file))?;
        io::copy(&mut plain, &mut io::sink()).map_err(|e| SealError::Tampered {
            bundle: bundle.into(),
            reason: one_line(&e.to_string()),
        })
    }
}

fn identity_error(path: &Path, kind: io::ErrorKind) -> SealError {
    SealError::Identity {
        path: path.into(),
        reason: match kind {
            io::ErrorKind::InvalidData => "a line is neither a comment nor an identity".into(),
            other => other.to_string(),
        },
    }
}

/// age's messages can span lines (with advice for its own CLI): keep the first.
fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// The plaintext of an age file. Read errors (a chunk failing authentication, a truncated
/// file) say that the bundle is damaged or was tampered with.
pub struct Plain {
    inner: StreamReader<age::armor::ArmoredReader<BufReader<Box<dyn Read + Send>>>>,
    bundle: PathBuf,
}

impl Read for Plain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is damaged or was tampered with: age authentication failed ({})",
                    self.bundle.display(),
                    one_line(&e.to_string())
                ),
            )
        })
    }
}

/// The [`Decryptor`] the CLI registers with the archive reader.
pub struct Decrypt(pub Keys);

impl Decryptor for Decrypt {
    fn open(
        &self,
        bundle: &Path,
        file: Box<dyn Read + Send>,
    ) -> Result<Box<dyn Read + Send>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Box::new(self.0.decrypt(bundle, file)?))
    }
}

/// Whether `path` is an age file (binary or armored), from its first bytes.
pub fn is_encrypted(path: &Path) -> Result<bool, SealError> {
    let file = File::open(path).map_err(|e| SealError::io("opening", path, e))?;
    is_encrypted_opened(path, &BundleFile::from_file(file))
}

/// [`is_encrypted`] over an opened bundle.
pub fn is_encrypted_opened(path: &Path, opened: &BundleFile) -> Result<bool, SealError> {
    let file = crate::sign::from_start(path, opened)?;
    let mut reader = BufReader::with_capacity(64, file);
    let head = reader
        .fill_buf()
        .map_err(|e| SealError::io("reading", path, e))?;
    Ok(airgap_archive::install::read::is_age(head))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_bad_recipient_is_shown_only_when_it_looks_public() {
        let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
        let e = Recipients::parse(&[secret.into()])
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("1QQQ"), "{e}");
        let e = Recipients::parse(&["hunter2 my passphrase".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("a value of 21 characters"), "{e}");
        let e = Recipients::parse(&["age1notakey".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"age1notakey\""), "{e}");
    }

    #[test]
    fn keys_and_recipients_do_not_debug_their_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let k = crate::keygen::generate(dir.path(), "k").unwrap();
        let keys = Keys::from_files(std::slice::from_ref(&k.age_identity)).unwrap();
        let text = fs_text(&k.age_identity);
        let secret = text.lines().last().unwrap();
        assert!(!format!("{keys:?}").contains(secret));
        let pass = Keys::Passphrase(SecretString::from("pw-123456".to_string()));
        assert!(!format!("{pass:?}").contains("pw-123456"));
        let enc = Encrypt::new(Recipients::Passphrase(SecretString::from(
            "pw-123456".to_string(),
        )));
        assert!(!format!("{enc:?}").contains("pw-123456"));
    }

    fn fs_text(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }
}
