//! The archive engine shared by every plugin: one builder that dereferences, deduplicates and
//! hashes what the plugins name, writes a deterministic tar (gzip or zstd) with a manifest, and
//! reads it back safely (verify, inspect, unpack into a staging directory, install steps).
//!
//! Three jobs, three modules: [`format`] (what a bundle is: the manifest and its types, tar
//! headers, gzip members; no bundle I/O), [`pack`] (plan and write) and [`install`] (read,
//! verify, unpack, relocate). Packing and installing meet only in the format and in the
//! common parts at the root (errors, progress, scratch runs, atomic output, sparse files).
//!
//! This crate never loads plugins, never names the plugin API and never prints, so that the
//! static unpacker carried inside every bundle can use it.

pub mod error;
pub mod format;
pub mod install;
pub mod output;
pub mod pack;
pub mod progress;
mod sparse;
mod spill;
pub mod text;

pub use error::ArchiveError;
pub use format::manifest::{
    FileRecord, FileType, Manifest, ManifestInput, PackageRecord, PluginRecord, StepRecord,
    StreamedManifest, MANIFEST_PATH,
};
pub use install::read::{open_manifest, read_manifest, verify_bundle, Decryptor, VerifyReport};
pub use install::relocate::{relocate, RelocateReport};
pub use install::unpack::{unpack, unpack_dir, UnpackOptions, UnpackReport};
pub use pack::entry::{Entry, EntryKind, PlannedFile, PlannedKind};
pub use pack::plan::{Plan, PlanOptions};
pub use pack::write::{
    write_bundle, Compression, FilteredOutput, HashingWriter, OutputFilter, WriteOptions,
    WriteSummary,
};
pub use progress::{Level, NoProgress, Progress, Unit};
