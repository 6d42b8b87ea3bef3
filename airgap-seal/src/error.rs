//! Every way sealing can fail. No message ever holds a secret key or a passphrase: they name
//! files, public key ids and what to do.

use std::io;
use std::path::PathBuf;

/// An error of `airgap-seal`.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Reading or writing a file failed.
    #[error("{action} {}: {cause}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause, shown in the message (so not also returned by `source()`: the CLI
        /// prints an error's chain, and would print it twice).
        cause: io::Error,
    },
    /// The bundle could not be read: a volume of a split bundle missing or damaged, say.
    #[error(transparent)]
    Archive(Box<airgap_archive::ArchiveError>),
    /// An `--encrypt-to` value is not an age X25519 public key.
    #[error("{shown} is not an age public key (age1...)")]
    Recipient {
        /// What was given, shown only when it looks like a public key (a mistaken value
        /// could be a secret).
        shown: String,
    },
    /// An identity file does not parse.
    #[error("{} is not an age identity file: {reason}", path.display())]
    Identity {
        /// The file.
        path: PathBuf,
        /// Why (never the file's content).
        reason: String,
    },
    /// The bundle was encrypted to other recipients than the identities given.
    #[error("none of the identities in {} can decrypt {} (it was encrypted to other keys, or its header is damaged)", identities.display(), bundle.display())]
    NoMatchingKey {
        /// The bundle.
        bundle: PathBuf,
        /// The identity file(s) given.
        identities: PathBuf,
    },
    /// The passphrase is wrong.
    #[error("wrong passphrase for {}", bundle.display())]
    WrongPassphrase {
        /// The bundle.
        bundle: PathBuf,
    },
    /// The bundle is encrypted with a passphrase, and identities were given (or the other
    /// way round).
    #[error("{} is encrypted {encrypted_with}, and {given} was given", bundle.display())]
    WrongKind {
        /// The bundle.
        bundle: PathBuf,
        /// `with a passphrase` or `to age public keys`.
        encrypted_with: &'static str,
        /// `an identity` or `a passphrase`.
        given: &'static str,
    },
    /// The encrypted file is not a valid age file, or fails authentication.
    #[error("{} is damaged or was tampered with: {reason}", bundle.display())]
    Tampered {
        /// The bundle.
        bundle: PathBuf,
        /// What age said.
        reason: String,
    },
    /// No passphrase could be read.
    #[error("passphrase: {reason}")]
    Passphrase {
        /// Why.
        reason: String,
    },
    /// A minisign key file does not parse.
    #[error("{} is not a minisign {kind} key: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// `public` or `secret`.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// The password of an encrypted minisign secret key is wrong.
    #[error("wrong password for the secret key {}", path.display())]
    WrongKeyPassword {
        /// The key file.
        path: PathBuf,
    },
    /// Signing failed.
    #[error("signing {}: {reason}", bundle.display())]
    Sign {
        /// The bundle.
        bundle: PathBuf,
        /// Why.
        reason: String,
    },
    /// A trusted key was given and the bundle has no signature beside it.
    #[error("{} has no signature: {} is missing", bundle.display(), signature.display())]
    SignatureMissing {
        /// The bundle.
        bundle: PathBuf,
        /// Where the signature should be.
        signature: PathBuf,
    },
    /// The signature was made by another key than the trusted one.
    #[error("{} was signed by key {signed_by}, not by the trusted key {trusted}", signature.display())]
    SignatureOtherKey {
        /// The signature file.
        signature: PathBuf,
        /// Key id in the signature.
        signed_by: String,
        /// Key id of the trusted key.
        trusted: String,
    },
    /// The signature does not match the bundle (or does not parse).
    #[error("{} does not verify against {}: {reason}", signature.display(), bundle.display())]
    SignatureInvalid {
        /// The bundle.
        bundle: PathBuf,
        /// The signature file.
        signature: PathBuf,
        /// Why.
        reason: String,
    },
    /// `keygen` would overwrite a file.
    #[error("{} already exists", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

impl SealError {
    /// Advice for the user, printed as a `help:` line.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            SealError::Recipient { .. } => {
                "give the public key printed by `airgap keygen` or `age-keygen` (it starts with age1)".into()
            }
            SealError::Identity { .. } => {
                "give the secret key file written by `airgap keygen` (NAME.age.key) or `age-keygen -o FILE`".into()
            }
            SealError::NoMatchingKey { .. } => {
                "the bundle was encrypted to other public keys: ask its sender to add yours (--encrypt-to age1...), or use the matching identity".into()
            }
            SealError::WrongPassphrase { .. } => "check the passphrase (or --passphrase-file) and retry".into(),
            SealError::WrongKind { given, .. } => {
                if *given == "a passphrase" {
                    "pass --identity FILE instead".into()
                } else {
                    "pass --passphrase (or --passphrase-file FILE) instead".into()
                }
            }
            SealError::Tampered { .. } => {
                "nothing was written; copy the bundle again from the original and compare it with its .sha256 (and verify its signature)".into()
            }
            SealError::Passphrase { .. } => {
                "run in a terminal to be asked, or pass --passphrase-file FILE (never the passphrase itself)".into()
            }
            SealError::Key { kind, .. } => format!(
                "give a minisign {kind} key file, as written by `airgap keygen` or `minisign -G`"
            ),
            SealError::WrongKeyPassword { .. } => "check the key's password and retry".into(),
            SealError::SignatureMissing { .. } => {
                "copy the .minisig file that came with the bundle beside it; without a signature the bundle cannot be trusted".into()
            }
            SealError::SignatureOtherKey { .. } => {
                "the bundle was not signed by the key you trust: check where it came from, or pass the right --trusted-key".into()
            }
            SealError::SignatureInvalid { .. } => {
                "the bundle or its signature changed after signing: do not use it; copy both again from the original".into()
            }
            SealError::Exists { .. } => {
                "keygen never overwrites keys: choose another --out directory or --name".into()
            }
            SealError::Archive(e) => return e.help(),
            SealError::Io { .. } | SealError::Sign { .. } => return None,
        })
    }

    pub(crate) fn from_archive(e: airgap_archive::ArchiveError) -> Self {
        SealError::Archive(Box::new(e))
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SealError::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }
}
