//! What a bundle is, byte for byte: the manifest and its own types, the tar headers, the
//! gzip members and the self-extracting header. Pure of the bundle's I/O: nothing here opens
//! a bundle or a tree; packing and installing do, through these types.
//!
//! Architecture invariant: the format owns its types. Nothing here names the plugin API, so
//! a new ABI minor cannot change FORMAT 1; `airgap-core` converts a contribution into these
//! types once, when it writes the manifest.

pub mod delta;
pub mod gzmember;
pub mod manifest;
pub mod model;
pub mod selftest;
pub mod selfx;
pub mod tarfmt;
pub mod volumes;
