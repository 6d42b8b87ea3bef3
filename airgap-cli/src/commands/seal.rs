//! The encryption and signature options shared by `verify`, `unpack` and `inspect`, and the
//! secret-reading helpers `bundle` uses. Secrets are read from the terminal (never echoed) or
//! from a file, never from the command line, and never printed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use airgap_seal::{Keys, SealError, SecretString, TrustedKey};
use clap::Args;

use crate::report::with_help;
use crate::ui::Ui;

/// How to open a sealed bundle.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Encrypted and signed bundles")]
pub struct OpenArgs {
    /// An age identity file that can decrypt the bundle (repeatable); from `airgap keygen`
    /// (NAME.age.key) or `age-keygen`
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<PathBuf>,

    /// The bundle is encrypted with a passphrase: ask for it on the terminal
    #[arg(long, conflicts_with_all = ["identities", "passphrase_file"])]
    pub passphrase: bool,

    /// Read the passphrase from this file (first line), for scripts
    #[arg(long, value_name = "FILE", conflicts_with = "identities")]
    pub passphrase_file: Option<PathBuf>,

    /// Check BUNDLE.minisig against this minisign public key (file, or the base64 key)
    /// before anything else, and refuse the bundle if it is missing or does not match
    #[arg(long, value_name = "PUB")]
    pub trusted_key: Option<String>,

    /// With --trusted-key: refuse, not only warn, when the signature was made for a file of
    /// another name (an older signed bundle renamed to the current name)
    #[arg(long, requires = "trusted_key")]
    pub strict: bool,
}

/// The file name a signature's trusted comment (`file:NAME<TAB>sha256:...`) was made for.
fn signed_name(trusted_comment: &str) -> Option<&str> {
    trusted_comment
        .split('\t')
        .find_map(|part| part.strip_prefix("file:"))
}

/// A seal error with its advice attached.
pub fn seal(error: SealError) -> anyhow::Error {
    match error.help() {
        Some(help) => with_help(error, help),
        None => anyhow::Error::new(error),
    }
}

/// Read a passphrase from a file: its first line, without the line ending.
pub fn passphrase_from_file(path: &Path) -> anyhow::Result<SecretString> {
    read_passphrase_file(path).map_err(seal)
}

/// [`passphrase_from_file`], as a seal error.
pub fn read_passphrase_file(path: &Path) -> Result<SecretString, SealError> {
    let text = std::fs::read(path).map_err(|e| SealError::Io {
        action: "reading",
        path: path.into(),
        cause: e,
    })?;
    let text = String::from_utf8(text).map_err(|_| SealError::Passphrase {
        reason: format!("{} is not text", path.display()),
    })?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(SealError::Passphrase {
            reason: format!("{} is empty", path.display()),
        });
    }
    Ok(SecretString::from(line))
}

/// Ask for a secret on the terminal, without echo; twice when `confirm`.
pub fn ask_secret(prompt: &str, confirm: bool) -> anyhow::Result<SecretString> {
    prompt_secret(prompt, confirm).map_err(seal)
}

/// [`ask_secret`], as a seal error.
pub fn prompt_secret(prompt: &str, confirm: bool) -> Result<SecretString, SealError> {
    let no_tty = |e: std::io::Error| SealError::Passphrase {
        reason: format!("cannot read it from the terminal ({e})"),
    };
    let first = rpassword::prompt_password(format!("{prompt}: ")).map_err(no_tty)?;
    if first.is_empty() {
        return Err(SealError::Passphrase {
            reason: "it is empty".into(),
        });
    }
    if confirm {
        let again = rpassword::prompt_password(format!("{prompt} (again): ")).map_err(no_tty)?;
        if again != first {
            return Err(SealError::Passphrase {
                reason: "the two entries differ".into(),
            });
        }
    }
    Ok(SecretString::from(first))
}

/// What [`prepare`] found.
pub struct Opened {
    /// The keys the archive reader decrypts with, when the bundle is encrypted.
    pub keys: Option<Arc<airgap_seal::Decrypt>>,
    /// The bundle file, opened once: the signature was checked on it, and everything after
    /// (checksum, decryption, entries) must read it, never the path again. `None` for an
    /// extracted bundle directory.
    pub file: Option<airgap_archive::install::read::BundleFile>,
    /// The key id of the signature `--trusted-key` verified.
    pub signer: Option<String>,
}

impl Opened {
    /// What the archive's readers decrypt an encrypted bundle with (none for a plain one).
    pub fn decryptor(&self) -> Option<&dyn airgap_archive::Decryptor> {
        self.keys
            .as_deref()
            .map(|k| k as &dyn airgap_archive::Decryptor)
    }
}

/// Before reading any entry: open the bundle once, check the signature (with
/// `--trusted-key`) on that descriptor, then, for an encrypted bundle, get the keys and
/// keep the decryptor for the archive's readers ([`Opened::decryptor`]).
pub fn prepare(args: &OpenArgs, bundle: &Path, ui: &Ui) -> anyhow::Result<Opened> {
    if bundle.is_dir() {
        if args.trusted_key.is_some() {
            return Err(with_help(
                anyhow::anyhow!(
                    "{} is a directory: --trusted-key checks the signature of a bundle file",
                    bundle.display()
                ),
                "verify the bundle file before extracting it: airgap verify BUNDLE --trusted-key PUB",
            ));
        }
        return Ok(Opened {
            keys: None,
            file: None,
            signer: None,
        });
    }
    let file = airgap_archive::install::read::open_bundle(bundle)
        .map_err(crate::commands::verify::archive)?;
    let mut signer = None;
    if let Some(spec) = &args.trusted_key {
        let trusted: TrustedKey = airgap_seal::load_public_key(spec).map_err(seal)?;
        let verified = airgap_seal::verify_opened(bundle, &file, &trusted).map_err(seal)?;
        signer = Some(verified.key_id.clone());
        ui.status(
            "Signature",
            &format!(
                "{} is good, by trusted key {} ({})",
                verified.signature.display(),
                verified.key_id,
                crate::ui::escape(&verified.trusted_comment.replace('\t', " "))
            ),
        );
        // For a split bundle, the signature is its list's, made under the list's name.
        let actual = verified
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(signed) = signed_name(&verified.trusted_comment) {
            if signed != actual {
                let text = format!(
                    "the signature was made for a file named {}, not {}: this may be an older signed bundle renamed to the current name",
                    crate::ui::escape(signed),
                    crate::ui::escape(&actual)
                );
                if args.strict {
                    return Err(with_help(
                        anyhow::anyhow!("{text}"),
                        "get the bundle again under the name it was signed with, or drop --strict to accept it",
                    ));
                }
                ui.warn(&text);
            }
        }
    }
    // A split bundle's volumes are checked against their list (after its signature), with
    // a progress bar: the pass reads every volume once before anything else does.
    file.check_volumes(ui)
        .map_err(crate::commands::verify::archive)?;
    if !airgap_seal::is_encrypted_opened(bundle, &file).map_err(seal)? {
        if !args.identities.is_empty() || args.passphrase || args.passphrase_file.is_some() {
            ui.warn(&format!(
                "{} is not encrypted: the identity or passphrase given is not used",
                bundle.display()
            ));
        }
        return Ok(Opened {
            keys: None,
            file: Some(file),
            signer,
        });
    }
    let keys = if !args.identities.is_empty() {
        Keys::from_files(&args.identities).map_err(seal)?
    } else if let Some(file) = &args.passphrase_file {
        Keys::Passphrase(passphrase_from_file(file)?)
    } else if args.passphrase {
        Keys::Passphrase(ask_secret(
            &format!("passphrase for {}", bundle.display()),
            false,
        )?)
    } else {
        return Err(crate::commands::verify::archive(
            airgap_archive::ArchiveError::Encrypted {
                bundle: bundle.into(),
            },
        ));
    };
    Ok(Opened {
        keys: Some(Arc::new(airgap_seal::Decrypt(keys))),
        file: Some(file),
        signer,
    })
}
