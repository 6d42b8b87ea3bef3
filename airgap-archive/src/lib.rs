//! The archive engine shared by every plugin: one builder that dereferences, deduplicates and
//! hashes what the plugins name, writes a deterministic tar (gzip or zstd) with a manifest, and
//! reads it back safely (verify, inspect, unpack into a staging directory, install steps).
//!
//! This crate never loads plugins and never prints, so that the static unpacker carried inside
//! every bundle can use it.
//!
//! Architecture invariant: `verify` and `unpack` share one checker ([`read`]) and one check of
//! the install steps ([`steps`]), so a bundle that verifies is exactly a bundle that unpacks.

pub(crate) mod dest;
pub mod error;
pub mod gzmember;
pub mod installed;
pub mod manifest;
pub mod plan;
pub mod progress;
pub mod read;
pub mod relocate;
pub mod selfx;
pub mod space;
mod spill;
pub mod stale;
pub mod steps;
pub mod tarfmt;
pub mod text;
pub mod unpack;
pub mod write;

pub use error::ArchiveError;
pub use manifest::{
    FileRecord, FileType, Manifest, ManifestInput, PackageRecord, PluginRecord, StepRecord,
    StreamedManifest, MANIFEST_PATH,
};
pub use plan::{Plan, PlanOptions};
pub use progress::{Level, NoProgress, Progress, Unit};
pub use read::{open_manifest, read_manifest, verify_bundle, Decryptor, VerifyReport};
pub use relocate::{relocate, RelocateReport};
pub use unpack::{unpack, unpack_dir, UnpackOptions, UnpackReport};
pub use write::{
    write_bundle, Compression, FilteredOutput, HashingWriter, OutputFilter, WriteOptions,
    WriteSummary,
};
