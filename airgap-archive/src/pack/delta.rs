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
            let Some(sha) = r.sha256.as_deref().and_then(|h| hex::decode(h).ok()) else {
                continue;
            };
            let Ok(sha) = <[u8; 32]>::try_from(sha.as_slice()) else {
                continue;
            };
            by_content.push((sha, i as u64));
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

    /// Patch changed files against the base's contents from `references`.
    pub fn with_references(mut self, references: Arc<dyn References>) -> DeltaBase {
        self.references = Some(references);
        self
    }

    /// The base's sha256 of its file at `path`, when a patch of a changed file of
    /// `size` bytes against it may be made (both between [`MIN_PATCHED`] and
    /// [`MAX_PATCHED`]).
    pub fn patch_base(&self, path: &[u8], size: u64) -> Result<Option<[u8; 32]>, ArchiveError> {
        if self.references.is_none() || !(MIN_PATCHED..=MAX_PATCHED).contains(&size) {
            return Ok(None);
        }
        let Some((_, r)) = self.manifest.files.find(path)? else {
            return Ok(None);
        };
        if r.kind != FileType::File || !(MIN_PATCHED..=MAX_PATCHED).contains(&r.size) {
            return Ok(None);
        }
        let sha = r.sha256.as_deref().and_then(|h| hex::decode(h).ok());
        Ok(sha.and_then(|s| <[u8; 32]>::try_from(s.as_slice()).ok()))
    }

    /// The base's path that holds `sha256`: `path` itself when the base has this content
    /// there, else the first base path with it; `None` when the base lacks it.
    pub fn find(&self, path: &[u8], sha256: &[u8; 32]) -> Result<Option<Vec<u8>>, ArchiveError> {
        if let Some((_, r)) = self.manifest.files.find(path)? {
            let same = r.kind == FileType::File
                && r.sha256
                    .as_deref()
                    .is_some_and(|h| h == hex::encode(sha256));
            if same {
                return Ok(Some(path.to_vec()));
            }
        }
        let at = self.by_content.partition_point(|(s, _)| s < sha256);
        match self.by_content.get(at) {
            Some((s, i)) if s == sha256 => Ok(Some(self.manifest.files.get(*i)?.path_bytes())),
            _ => Ok(None),
        }
    }
}
