//! Packing: the plan (what goes where, dereferenced and deduplicated) and the writer (one
//! read per file into a deterministic tar, gzip members or zstd frames, the manifest first).
//!
//! Architecture invariant: packing never reads a bundle; what it shares with installing is
//! the format ([`crate::format`]) and the crate's common parts (errors, scratch runs, atomic
//! output).

pub mod delta;
pub mod entry;
pub mod plan;
pub mod split;
pub mod write;
