//! What the approvers of a transfer read about a bundle's contents: a software bill of
//! materials made from its manifest, CycloneDX 1.5 JSON (the bundle carries it as
//! `.airgap/sbom.cdx.json` and writes it beside as `NAME.cdx.json`) and SPDX 2.3 JSON on
//! request. One component per package any source brought, with what the source knew:
//! purl, the artifact's sha256, the licence its metadata declares. Nothing is guessed: a
//! package without a declared licence has none here, which both formats read as unknown.
//!
//! Pure: from the manifest's records to bytes. Deterministic: the same manifest gives the
//! same bytes (a timestamp only when one is given, as `SOURCE_DATE_EPOCH`).
#![deny(missing_docs)]

mod cyclonedx;
mod spdx_doc;

use airgap_archive::format::manifest::{PackageRecord, PluginRecord};
use airgap_archive::format::model::TargetProfile;

pub use cyclonedx::cyclonedx_json;
pub use spdx_doc::spdx_json;

/// Where the CycloneDX document goes inside a bundle, below its top folder.
pub const INSIDE_PATH: &str = ".airgap/sbom.cdx.json";

/// The SBOM's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CycloneDX 1.5 JSON.
    CycloneDx,
    /// SPDX 2.3 JSON.
    Spdx,
}

impl Format {
    /// The suffix of the file written beside a bundle, after its name.
    pub fn suffix(self) -> &'static str {
        match self {
            Format::CycloneDx => ".cdx.json",
            Format::Spdx => ".spdx.json",
        }
    }
}

/// What an SBOM is made from: the manifest's metadata.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The bundle's top folder: the document's subject.
    pub bundle_name: &'a str,
    /// The airgap that wrote the bundle.
    pub airgap_version: &'a str,
    /// The plugins that contributed, as tools.
    pub plugins: &'a [PluginRecord],
    /// The target the bundle is for.
    pub target: &'a TargetProfile,
    /// Every package.
    pub packages: &'a [PackageRecord],
    /// Seconds since 1970 to stamp the document with (CycloneDX leaves it out without one;
    /// SPDX, which requires one, is then stamped with the present time).
    pub created: Option<u64>,
}

/// Why an SBOM could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// The CycloneDX library refused the document.
    #[error("cannot write the CycloneDX document: {0}")]
    CycloneDx(String),
    /// A timestamp out of range.
    #[error("cannot write the time {0} as a date")]
    Time(u64),
    /// JSON serialisation.
    #[error("cannot write the SBOM as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A declared licence as the formats know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum License {
    /// One SPDX licence id (`MIT`).
    Id(String),
    /// A valid SPDX expression of several (`MIT OR Apache-2.0`).
    Expression(String),
    /// Anything else, kept as the metadata wrote it (`BSD License`).
    Named(String),
}

impl License {
    /// Classify a declared licence by the SPDX licence list, strictly: what is not a valid
    /// expression stays a name, never mapped to the id it might mean.
    pub fn of(declared: &str) -> License {
        let declared = declared.trim();
        if spdx::license_id(declared).is_some() {
            return License::Id(declared.to_string());
        }
        match spdx::Expression::parse(declared) {
            Ok(_) => License::Expression(declared.to_string()),
            Err(_) => License::Named(declared.to_string()),
        }
    }
}

/// `SOURCE_DATE_EPOCH`, the reproducible-builds convention for the time to stamp a
/// document with, when set to a number of seconds.
pub fn source_date_epoch() -> Option<u64> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

/// The component type of a package's kind.
fn is_application(kind: &str) -> bool {
    kind == "interpreter"
}

/// RFC 3339 of `seconds` since 1970, UTC.
fn rfc3339(seconds: u64) -> Result<String, SbomError> {
    let t = i64::try_from(seconds)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or(SbomError::Time(seconds))?;
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| SbomError::Time(seconds))
}

/// A digest of the packages, naming the document: the same contents, the same name.
fn contents_digest(input: &Input<'_>) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(input.bundle_name.as_bytes());
    for record in input.packages {
        let p = &record.package;
        for part in [&p.id, &p.name, &p.version, &p.kind, &p.origin] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.update(p.sha256.as_deref().unwrap_or("").as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licences_are_classified_strictly() {
        assert_eq!(License::of("MIT"), License::Id("MIT".into()));
        assert_eq!(
            License::of("Apache-2.0 OR BSD-3-Clause"),
            License::Expression("Apache-2.0 OR BSD-3-Clause".into())
        );
        assert_eq!(
            License::of("BSD License"),
            License::Named("BSD License".into())
        );
        assert_eq!(License::of("BSD"), License::Named("BSD".into()));
    }
}
