//! `sh NAME.run ...`: the modes of a self-extracting bundle besides installing, which the
//! header's `--run NAME.run` selects. Each reads the archive in place inside the `.run`
//! file, through the library's one strict reader.

use std::path::{Path, PathBuf};

use airgap_archive::format::manifest::FileType;
use airgap_archive::open_manifest;
use airgap_archive::progress::Progress;
use airgap_archive::text::escape;
use airgap_archive::ArchiveError;

/// What the user shows when running `sh NAME.run` with `--help`.
pub const USAGE: &str = "usage: sh NAME.run DEST [--python PATH] [--no-run] [--self-test=MODE] [-q]
       sh NAME.run --list | --verify | --extract-only DIR | --help

A self-extracting airgap bundle: a sh header, the static unpacker and the bundle archive
in one file. Installing verifies every file against the manifest while it extracts into a
staging directory beside DEST, runs the install steps and renames it to DEST only when all
of that succeeded; the archive is read in place, never copied, so the disk needs room for
this file and DEST only. DEST must not exist (or be an empty directory).

  DEST                install there
  --list              list the bundle's files (from its manifest), one a line
  --verify            check every byte (header, unpacker, archive) and write nothing
  --extract-only DIR  verify and extract the bundle's folder (what tar xzf of the plain
                      bundle gives: NAME/unpack, .airgap/, the files) into DIR, installing
                      nothing; DIR/unpack DEST installs it later
  --python PATH       the target's Python, for bundles whose install steps need one
  --no-run            install the files but run none of the bundle's programs; list them
  --self-test=MODE    after the install steps, load every bundled library and module with
                      the bundled interpreter: fail (default: a failure removes the install
                      again), warn (report it), off
  -q, --quiet         print only errors

Each program the bundle runs is shown before it runs, as the unpacking user. The unpacker
is copied to $TMPDIR (default /tmp) for the run and removed after it.";

/// A mode of `--run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Install,
    List,
    Verify,
    ExtractOnly,
}

impl Mode {
    /// Whether the mode takes a directory (DEST, or the `--extract-only` DIR).
    pub fn takes_dir(self) -> bool {
        matches!(self, Mode::Install | Mode::ExtractOnly)
    }
}

/// Run a mode other than [`Mode::Install`] on `file`.
pub fn run(
    mode: Mode,
    file: &Path,
    dir: Option<&PathBuf>,
    progress: &dyn Progress,
) -> Result<(), ArchiveError> {
    match (mode, dir) {
        (Mode::List, _) => list(file),
        (Mode::Verify, _) => {
            let report = airgap_archive::verify_bundle(file, progress)?;
            eprintln!(
                "    verified {} entries ({} bytes) of {}: the sh header, the unpacker and the archive match",
                report.entries,
                report.bytes,
                escape(&report.manifest.meta.bundle_name)
            );
            Ok(())
        }
        (Mode::ExtractOnly, Some(dir)) => {
            let report = airgap_archive::install::unpack::extract_tree(file, dir, progress)?;
            eprintln!(
                "   extracted {} entries ({} bytes) into {}, nothing installed; install with: {}/unpack DEST",
                report.entries,
                report.bytes,
                report.dest.display(),
                report.dest.display()
            );
            Ok(())
        }
        (Mode::Install | Mode::ExtractOnly, _) => Err(ArchiveError::Dest {
            path: PathBuf::new(),
            reason: "no directory given".into(),
        }),
    }
}

/// The manifest's files on stdout, as `tar tzf` lists a plain bundle's (below `NAME/`),
/// escaped: names come from the bundle.
fn list(file: &Path) -> Result<(), ArchiveError> {
    use std::io::Write;
    let manifest = open_manifest(file)?;
    let name = escape(&manifest.meta.bundle_name);
    let mut out = std::io::stdout().lock();
    for f in manifest.files.iter() {
        let f = f?;
        let path = escape(&f.path);
        let line = match (&f.kind, &f.target) {
            (FileType::Dir, _) => format!("{name}/{path}/"),
            (FileType::Symlink, Some(t)) => format!("{name}/{path} -> {}", escape(t)),
            _ => format!("{name}/{path}"),
        };
        if writeln!(out, "{line}").is_err() {
            break; // a closed pipe (| head) ends the listing
        }
    }
    Ok(())
}
