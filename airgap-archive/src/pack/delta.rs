//! The base of a delta bundle as the writer sees it: which contents the base already holds,
//! and at which of its paths, so that the writer leaves those files out and lists them in
//! `.airgap/delta.toml` ([`crate::format::delta`]).

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::ArchiveError;
use crate::format::delta::{MAX_PATCHED, MIN_PATCHED};
use crate::format::manifest::{FileType, StreamedManifest};
use crate::progress::Progress;

/// Where the writer gets the base's bundled contents of the files it patches: the caller
/// knows the base (a bundle to read, a tree), this crate's packing side reads no bundle.
pub trait References: Send + Sync + std::fmt::Debug {
    /// A directory holding, at `DIR/PATH`, the base's bundled content of each of `paths`
    /// that it can give (the writer checks each against the base's manifest). Lives as
    /// long as the `References`.
    fn fetch(&self, paths: &[Vec<u8>], progress: &dyn Progress) -> Result<PathBuf, ArchiveError>;
}

/// What a previous version holds for a file of the new one ([`DeltaBase::lookup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InBase {
    /// The same content, at this base path.
    Same(Vec<u8>),
    /// Another content at the same path, with this sha256: a patch against it may pay.
    Patchable([u8; 32]),
    /// Nothing to take or patch against.
    Absent,
}

/// The sha256 a manifest record lists, as bytes.
fn record_sha256(r: &crate::format::manifest::FileRecord) -> Option<[u8; 32]> {
    let bytes = hex::decode(r.sha256.as_deref()?).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// A previous version's manifest, indexed by content.
#[derive(Debug)]
pub struct DeltaBase {
    /// The sha256 of the base's manifest text: what the delta names as its base.
    pub identity: String,
    /// The base's bundle name.
    pub name: String,
    manifest: StreamedManifest,
    /// (sha256, record index) of every regular file, sorted: 40 bytes a file of the base,
    /// the one thing a delta's writer holds per path (docs/archive-format.md).
    by_content: Vec<([u8; 32], u64)>,
    /// The base's contents, for patches (none: changed files are carried whole).
    pub references: Option<Arc<dyn References>>,
}

impl DeltaBase {
    /// Index `manifest` (a bundle's, an extracted tree's or an installed tree's record).
    pub fn new(manifest: StreamedManifest) -> Result<DeltaBase, ArchiveError> {
        let identity = manifest
            .sha256()
            .map_err(crate::format::manifest::records::scratch_error)?;
        let mut by_content = Vec::new();
        for (i, r) in manifest.files.iter().enumerate() {
            let r = r?;
            if r.kind != FileType::File {
                continue;
            }
            if let Some(sha) = record_sha256(&r) {
                by_content.push((sha, i as u64));
            }
        }
        by_content.sort_unstable();
        Ok(DeltaBase {
            identity,
            name: manifest.meta.bundle_name.clone(),
            manifest,
            by_content,
            references: None,
        })
    }

    /// The base's packages, for what a report says changed.
    pub fn packages(&self) -> &[crate::format::manifest::PackageRecord] {
        &self.manifest.meta.packages
    }

    /// Patch changed files against the base's contents from `references`.
    pub fn with_references(mut self, references: Arc<dyn References>) -> DeltaBase {
        self.references = Some(references);
        self
    }

    /// What the base holds for a file of the new version at `path` with `sha256`: the
    /// same content (at `path` itself when it has it there, else at the first path that
    /// has it), or, when it lacks the content, whether a patch against its file at `path`
    /// may be made (both between [`MIN_PATCHED`] and [`MAX_PATCHED`] bytes, and contents
    /// to patch against at hand). One look-up of `path` serves both.
    pub fn lookup(
        &self,
        path: &[u8],
        sha256: &[u8; 32],
        size: u64,
    ) -> Result<InBase, ArchiveError> {
        let at_path = self
            .manifest
            .files
            .find(path)?
            .map(|(_, r)| r)
            .filter(|r| r.kind == FileType::File);
        let at_path_sha = at_path.as_ref().and_then(record_sha256);
        if at_path_sha.as_ref() == Some(sha256) {
            return Ok(InBase::Same(path.to_vec()));
        }
        let at = self.by_content.partition_point(|(s, _)| s < sha256);
        if let Some((s, i)) = self.by_content.get(at) {
            if s == sha256 {
                return Ok(InBase::Same(self.manifest.files.get(*i)?.path_bytes()));
            }
        }
        let fits = |n: u64| (MIN_PATCHED..=MAX_PATCHED).contains(&n);
        let patchable = self.references.is_some()
            && fits(size)
            && at_path.as_ref().is_some_and(|r| fits(r.size));
        Ok(match at_path_sha {
            Some(base) if patchable => InBase::Patchable(base),
            _ => InBase::Absent,
        })
    }
}
