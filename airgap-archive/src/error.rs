//! Every way the archive engine can fail. Each message names the file or entry at fault, so
//! that the CLI can print it as is and add the `help:` line from [`ArchiveError::help`].

use std::io;
use std::path::PathBuf;

/// An error of the archive engine.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or writing a file failed.
    #[error("{action} {}: {cause}", path.display())]
    Io {
        /// What was being done (`reading`, `creating`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause, shown in the message (so not also returned by `source()`: the CLI
        /// prints an error's chain, and would print it twice).
        cause: io::Error,
    },
    /// Another run is writing the same output.
    #[error("another airgap is writing {} (it holds {})", output.display(), temp.display())]
    Busy {
        /// The output both runs write.
        output: PathBuf,
        /// The locked temporary file beside it.
        temp: PathBuf,
    },
    /// A symbolic link points nowhere.
    #[error("dangling symbolic link {} -> {}", path.display(), target.display())]
    DanglingLink {
        /// The link on the build machine.
        path: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// Following a symbolic link comes back to itself.
    #[error("symbolic link loop at {}", path.display())]
    LinkLoop {
        /// The link on the build machine.
        path: PathBuf,
    },
    /// A symbolic link leads to `/` or into `/proc`, `/sys` or `/dev`: following it would
    /// walk the whole machine or read virtual files whose sizes lie.
    #[error("symbolic link {} -> {} leads to {}, which airgap does not follow", path.display(), target.display(), resolved.display())]
    LinkToSystem {
        /// The link on the build machine.
        path: PathBuf,
        /// What it says.
        target: PathBuf,
        /// Where it leads.
        resolved: PathBuf,
    },
    /// Two entries claim one bundle path with different contents.
    #[error(
        "{path} is claimed by plugin `{first}` and by plugin `{second}` with different contents"
    )]
    Conflict {
        /// The bundle path.
        path: String,
        /// The plugin that claimed it first.
        first: String,
        /// The plugin that claimed it again.
        second: String,
    },
    /// A plugin gave a destination path that is not allowed.
    #[error("plugin `{plugin}` gave an invalid bundle path {path:?}: {reason}")]
    InvalidDest {
        /// The plugin.
        plugin: String,
        /// The path as given.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// An exclude pattern does not parse.
    #[error("plugin `{plugin}` gave an invalid exclude pattern {pattern:?}: {reason}")]
    InvalidGlob {
        /// The plugin.
        plugin: String,
        /// The pattern.
        pattern: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A file changed between hashing and writing.
    #[error("{} changed while the bundle was being written ({what})", path.display())]
    Changed {
        /// The file on the build machine.
        path: PathBuf,
        /// What differs.
        what: String,
    },
    /// The bundle is not an airgap bundle or is damaged.
    #[error("{}: {reason}", bundle.display())]
    Corrupt {
        /// The bundle.
        bundle: PathBuf,
        /// What is wrong, naming the entry.
        reason: String,
    },
    /// An entry of the bundle is refused as unsafe.
    #[error("{}: refused entry {entry}: {reason}", bundle.display())]
    Unsafe {
        /// The bundle.
        bundle: PathBuf,
        /// The entry path as stored.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The bundle does not match its manifest.
    #[error("{}: {} mismatch(es) with the manifest, first: {}", bundle.display(), problems.len(), problems.first().map(String::as_str).unwrap_or("?"))]
    Mismatch {
        /// The bundle.
        bundle: PathBuf,
        /// Every problem found, one line each.
        problems: Vec<String>,
    },
    /// The manifest does not parse or has an unknown format.
    #[error("manifest of {}: {reason}", bundle.display())]
    Manifest {
        /// The bundle.
        bundle: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The manifest is over [`crate::format::manifest::MAX_MANIFEST`]: refused before it is read, so
    /// that a tiny, highly compressed bundle cannot make a reader hold hundreds of MB.
    #[error("{}: the manifest is {size} bytes, over the {max} bytes a manifest may have", bundle.display())]
    ManifestTooLarge {
        /// The bundle (or the bundle being written, or an unpacked bundle's folder).
        bundle: PathBuf,
        /// The manifest's size.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The output path cannot take a bundle.
    #[error("output {}: {reason}", path.display())]
    Output {
        /// The output given.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// A self-extracting bundle cannot be written as asked.
    #[error("self-extracting bundle {}: {reason}", output.display())]
    SelfExtracting {
        /// The output given.
        output: PathBuf,
        /// Why.
        reason: String,
        /// What to do.
        help: String,
    },
    /// DEST's file system has too little room for the bundle: refused before writing.
    #[error("destination {}: too little room on the file system of {}: {what}", dest.display(), at.display())]
    NoSpace {
        /// The destination.
        dest: PathBuf,
        /// Its nearest existing ancestor (where the file system was asked).
        at: PathBuf,
        /// Bytes (or inodes) the bundle needs at least.
        needed: u64,
        /// Bytes (or inodes) free there for this user.
        available: u64,
        /// The figures, as people read them (disk space or inodes).
        what: String,
        /// The unpack copies an extracted tree (`NAME/unpack DEST`): reading the archive in
        /// place (`--from`) needs the tree's room less.
        from_tree: bool,
    },
    /// The directory of the output cannot take it (missing, not writable).
    #[error("output {}: {reason}", path.display())]
    OutputDir {
        /// The output given.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// The directory does not exist (else it cannot take files).
        missing: bool,
        /// Why it is refused.
        reason: String,
    },
    /// The bundle path is not a regular file (a fifo, a device, a socket).
    #[error("{} is not a regular file ({kind})", path.display())]
    NotRegular {
        /// The path given.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A volume of a split bundle is missing, of the wrong size, or not what its list says.
    #[error("volume {number} ({}): {reason}", file.display())]
    Volume {
        /// The volume list.
        list: PathBuf,
        /// The volume's number, from 1.
        number: usize,
        /// The volume's file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The volume list of a split bundle is missing or unreadable, or the directory holds a
    /// volume it does not list.
    #[error("volume list {}: {reason}", list.display())]
    VolumeList {
        /// The volume list.
        list: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `--split-size` is refused before any work.
    #[error("--split-size: {reason}")]
    SplitSize {
        /// Why.
        reason: String,
    },
    /// The file is no bundle at all: neither gzip, zstd, age nor tar.
    #[error("{} is not an airgap bundle (neither gzip, zstd, age nor tar)", bundle.display())]
    NotABundle {
        /// The file given.
        bundle: PathBuf,
    },
    /// The destination cannot be used.
    #[error("destination {}: {reason}", path.display())]
    Dest {
        /// The destination.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The destination cannot be used, and the general advice for [`ArchiveError::Dest`]
    /// would mislead: this one carries its own.
    #[error("destination {}: {reason}", path.display())]
    DestPlace {
        /// The destination.
        path: PathBuf,
        /// Why.
        reason: String,
        /// What to do.
        help: String,
    },
    /// A binary file cannot take the new prefix.
    #[error("the new prefix {new:?} is {} bytes, longer than the {max} bytes binary file {file} can hold", new.len())]
    PrefixTooLong {
        /// The file inside the bundle.
        file: String,
        /// The prefix that does not fit.
        new: String,
        /// The longest prefix that fits.
        max: usize,
        /// Bytes of `new` after the destination (`/env`): the destination itself may be
        /// `max - tail` bytes long.
        tail: usize,
        /// `max` is a capacity the plugin recorded (a padded placeholder); else it is the
        /// length of the prefix the file was bundled with, which has no room to grow.
        padded: bool,
    },
    /// An install step needs something that was not given, or failed.
    #[error("install step {index} ({description}): {reason}")]
    Step {
        /// 1-based index of the step.
        index: usize,
        /// The step's description.
        description: String,
        /// What went wrong.
        reason: String,
    },
    /// The check after the install steps (the self-test) failed: the install was rolled back.
    #[error("the installed tree does not work, so it was removed again ({} was not installed): {failed}", dest.display())]
    AfterInstall {
        /// Where it was to go.
        dest: PathBuf,
        /// What failed.
        failed: String,
    },
    /// The work was cancelled (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    /// The bundle is age-encrypted and no way to decrypt it was given.
    #[error("{} is encrypted (age), and no identity or passphrase was given", bundle.display())]
    Encrypted {
        /// The bundle.
        bundle: PathBuf,
    },
    /// The decryptor the reader was given could not open the bundle.
    #[error("decrypting {}: {cause}", bundle.display())]
    Decrypt {
        /// The bundle.
        bundle: PathBuf,
        /// Why (an `airgap-seal` error, with its own advice), shown in the message.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A delta bundle was given where a whole one is needed (no `--onto`).
    #[error("{} is a delta: it carries only what changed since {base_name} (manifest sha256 {base})", bundle.display())]
    DeltaNeedsBase {
        /// The bundle.
        bundle: PathBuf,
        /// The base's bundle name.
        base_name: String,
        /// The base's identity (its manifest's sha256).
        base: String,
    },
    /// `--onto` named a tree that is not the delta's base, or one whose files changed since
    /// it was installed.
    #[error("{} is not the base of {}: {reason}{}", onto.display(), bundle.display(), lines(files))]
    WrongBase {
        /// The delta.
        bundle: PathBuf,
        /// The installed tree.
        onto: PathBuf,
        /// What differs.
        reason: String,
        /// The differing files (at most a few dozen), one line each.
        files: Vec<String>,
    },
}

/// Lines after a message, each indented as a list item.
fn lines(items: &[String]) -> String {
    items.iter().map(|i| format!("\n  - {i}")).collect()
}

impl ArchiveError {
    /// Advice for the user, printed as a `help:` line.
    pub fn help(&self) -> Option<String> {
        match self {
            ArchiveError::Io { cause, path, .. } => io_help(cause, path),
            ArchiveError::AfterInstall { .. } => Some(
                "bundle again with what is missing (airgap check names it), or install anyway with --self-test=warn and fix it there".into(),
            ),
            ArchiveError::Busy { .. } => Some(
                "wait for the other run to finish, or write elsewhere with --output".into(),
            ),
            ArchiveError::DanglingLink { .. } | ArchiveError::LinkLoop { .. } => Some(
                "fix or remove the link, exclude it, or pass --drop-dangling-links (or set `[bundle] drop-dangling-links = true`) to leave such links out with a warning".into(),
            ),
            ArchiveError::LinkToSystem { path, .. } => Some(format!(
                "remove the link, or leave it out with an exclude pattern in its source table (exclude = [{:?}])",
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            )),
            ArchiveError::Conflict { .. } => Some(
                "only one plugin may put a file at a path; the later one can mark its entry `replace` if that is deliberate".into(),
            ),
            ArchiveError::Changed { .. } => {
                Some("stop whatever writes to the environment while bundling, then retry".into())
            }
            ArchiveError::DeltaNeedsBase { bundle, .. } => Some(format!(
                "apply it onto the installed base: airgap unpack {} --onto INSTALLED (or NAME/unpack --from {} --onto INSTALLED without airgap)",
                bundle.display(),
                bundle.display()
            )),
            ArchiveError::WrongBase { .. } => Some(
                "nothing was changed; apply the delta onto the tree it was made against, or install the whole bundle of the new version instead".into(),
            ),
            ArchiveError::Corrupt { .. } | ArchiveError::Mismatch { .. } => Some(
                "the bundle was damaged or altered after it was written: copy it again and compare with its .sha256".into(),
            ),
            ArchiveError::Unsafe { .. } => Some(
                "this bundle was not written by airgap or was tampered with; nothing was installed".into(),
            ),
            ArchiveError::PrefixTooLong {
                max, tail, padded, ..
            } => {
                let dest = max.saturating_sub(*tail);
                Some(if *padded {
                    format!(
                        "choose a destination of at most {dest} bytes, so that the prefix fits in the {max} bytes the file has room for"
                    )
                } else {
                    format!(
                        "choose a destination of at most {dest} bytes: the file holds the {max}-byte prefix it was built with and no padding to grow into (a conda package's placeholder has it), so a longer path fits neither here nor with `airgap bundle --dest-prefix` (which checks a destination before the transfer); for a longer one, make the environment at a path at least that long and bundle it from there"
                    )
                })
            }
            ArchiveError::Encrypted { bundle } => Some(format!(
                "pass --identity FILE (an age identity) or --passphrase to airgap; without airgap, decrypt it first: age -d -i key.txt -o {0} {1}, then unpack that",
                bundle.display().to_string().trim_end_matches(".age"),
                bundle.display()
            )),
            ArchiveError::ManifestTooLarge { max, .. } => Some(format!(
                "airgap writes no manifest over {} MiB (about 200,000 files; docs/archive-format.md), so this bundle was damaged or made to exhaust memory: get it again from its author; to bundle that many files, split them into several bundles",
                max >> 20
            )),
            ArchiveError::Output { .. } => Some(
                "give -o a new file name (or an existing bundle to replace) outside everything the bundle reads".into(),
            ),
            ArchiveError::OutputDir { dir, missing: true, .. } => Some(format!(
                "create the directory first (mkdir -p {}), or give -o a path in one that exists",
                dir.display()
            )),
            ArchiveError::OutputDir { .. } => {
                Some("give -o a path in a directory that you can write".into())
            }
            ArchiveError::NotRegular { .. } => Some(
                "give the bundle file itself: airgap reads a bundle several times (signature, checksum, entries), which a pipe or a device cannot give".into(),
            ),
            ArchiveError::NotABundle { .. } => Some(
                "give the .tar.gz or .tar.zst file that `airgap bundle` wrote (its .sha256, .minisig and airgap.toml are not bundles)".into(),
            ),
            ArchiveError::Volume { list, number, .. } => Some(format!(
                "copy volume {number} again from where the bundle was written and compare it with its sha256 in {}; nothing was installed",
                list.display()
            )),
            ArchiveError::VolumeList { .. } => Some(
                "keep the volumes and their .volumes list together in one directory, as `airgap bundle --split-size` wrote them; nothing was installed".into(),
            ),
            ArchiveError::SplitSize { .. } => Some(
                "give bytes, or a number with K, M or G (powers of 1024), of at least 64K; or a preset: fat32 (4 GiB - 1), dvd, bd25".into(),
            ),
            ArchiveError::DestPlace { help, .. } => Some(help.clone()),
            ArchiveError::SelfExtracting { help, .. } => Some(help.clone()),
            ArchiveError::NoSpace { at, from_tree, .. } => Some(format!(
                "free space on the file system of {}, or choose a destination on another one; nothing was written{}",
                at.display(),
                if *from_tree {
                    " (the extracted bundle takes room too: delete it, extract only NAME/unpack and NAME/.airgap/airgap-unpack, and read the archive in place with NAME/unpack --from NAME.tar.gz DEST)"
                } else {
                    ""
                }
            )),
            ArchiveError::Dest { .. } => {
                Some("give a destination that does not exist yet (or is an empty directory)".into())
            }
            _ => None,
        }
    }

    /// An I/O error on `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ArchiveError::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }
}

/// Advice for the I/O errors a user can do something about.
fn io_help(source: &io::Error, path: &std::path::Path) -> Option<String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    match source.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Some(format!(
            "the file system holding {} is full: free space there or choose another place; nothing half-written was left behind",
            dir.display()
        )),
        Some(libc::EACCES) | Some(libc::EPERM) => Some(format!(
            "airgap may not access {}: fix its permissions, run as a user who can read it, or leave it out (exclude)",
            path.display()
        )),
        Some(libc::EROFS) => Some(format!("{} is on a read-only file system", dir.display())),
        _ => None,
    }
}
