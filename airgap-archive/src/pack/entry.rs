//! What a source asks the plan for, and what the plan reports back: the engine's own types.
//!
//! `airgap-core` converts a plugin's entries into these and the planned paths back into the
//! plugin API's records, so that packing, like the format, never names the plugin API.

use std::path::PathBuf;

/// One thing to put into the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the bundle, relative to its top folder, `/`-separated, no `..`.
    pub dest: String,
    /// What to put there.
    pub kind: EntryKind,
    /// Permission bits to store instead of the source's.
    pub mode: Option<u32>,
    /// The package this belongs to.
    pub package: Option<String>,
    /// This entry knowingly replaces what an earlier source put at `dest`.
    pub replace: bool,
}

/// What an [`Entry`] puts into the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A file, or a directory walked recursively, from the build machine.
    Path {
        /// Absolute path on the build machine.
        source: PathBuf,
        /// Patterns (relative to `source`) left out of the walk, in `airgap-glob`'s dialect.
        exclude: Vec<String>,
    },
    /// A symbolic link, stored as a link, relative to its directory.
    Symlink {
        /// Link target.
        target: String,
    },
    /// An empty directory.
    Dir,
}

impl Entry {
    /// A file or directory tree copied from `source` to `dest`.
    pub fn path(source: impl Into<PathBuf>, dest: impl Into<String>) -> Entry {
        Entry::new(
            dest,
            EntryKind::Path {
                source: source.into(),
                exclude: Vec::new(),
            },
        )
    }

    /// A symbolic link at `dest` pointing to `target`.
    pub fn symlink(dest: impl Into<String>, target: impl Into<String>) -> Entry {
        Entry::new(
            dest,
            EntryKind::Symlink {
                target: target.into(),
            },
        )
    }

    /// An empty directory at `dest`.
    pub fn dir(dest: impl Into<String>) -> Entry {
        Entry::new(dest, EntryKind::Dir)
    }

    /// `kind` at `dest`, with the source's mode, no package, replacing nothing.
    pub fn new(dest: impl Into<String>, kind: EntryKind) -> Entry {
        Entry {
            dest: dest.into(),
            kind,
            mode: None,
            package: None,
            replace: false,
        }
    }

    /// Attach the package id.
    pub fn with_package(mut self, package: impl Into<String>) -> Entry {
        self.package = Some(package.into());
        self
    }

    /// Store these permission bits.
    pub fn with_mode(mut self, mode: u32) -> Entry {
        self.mode = Some(mode);
        self
    }

    /// Mark as a deliberate replacement of an earlier source's entry.
    pub fn replacing(mut self) -> Entry {
        self.replace = true;
        self
    }
}

/// One path the plan holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Path inside the bundle, relative to its top folder (lossy when not UTF-8).
    pub path: String,
    /// Where a file's content comes from on the build machine.
    pub source: Option<PathBuf>,
    /// What it is.
    pub kind: PlannedKind,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes (files).
    pub size: u64,
    /// The source (plugin) that contributed it.
    pub plugin: String,
    /// The package it belongs to, if known.
    pub package: Option<String>,
}

/// Kind of a [`PlannedFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, with its target.
    Symlink {
        /// The link target, relative to the link's directory.
        target: String,
    },
}
