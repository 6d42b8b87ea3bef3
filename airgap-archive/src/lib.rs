//! The archive engine shared by every plugin: one builder that dereferences, deduplicates and
//! hashes what the plugins name, writes a deterministic tar (gzip or zstd) with a manifest, and
//! reads it back safely (verify, inspect, unpack into a staging directory, install steps).
//!
//! This crate never loads plugins and never prints, so that the static unpacker carried inside
//! every bundle can use it.

pub mod progress;
