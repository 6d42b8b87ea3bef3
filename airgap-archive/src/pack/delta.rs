//! The base of a delta bundle as the writer sees it: which contents the base already holds,
//! and at which of its paths, so that the writer leaves those files out and lists them in
//! `.airgap/delta.toml` ([`crate::format::delta`]).

use crate::error::ArchiveError;
use crate::format::manifest::{FileType, StreamedManifest};

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
        })
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
