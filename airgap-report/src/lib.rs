//! The provenance report the approvers read before a bundle crosses the gap: what it is
//! (file, sha256, signer), the target it was checked for and the verdict, every package, the
//! system libraries grafted, the exact commands that will run on the target, and for a delta
//! what changed since its base.
//!
//! Pure: a [`ReportInput`] in, text out ([`html`], [`markdown`]); no I/O, no printing. Every
//! string from a bundle is untrusted and escaped by the renderer that writes it.

mod html;
mod markdown;
mod model;

pub use html::html;
pub use markdown::markdown;
pub use model::{
    Changed, DeltaInput, Identity, PackageChanges, ReportInput, Verdict, PACKAGE_COLUMNS,
};
