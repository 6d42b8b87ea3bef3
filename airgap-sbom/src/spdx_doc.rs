//! SPDX 2.3 JSON. Written from these few serde structs: no well-kept Rust crate writes
//! SPDX 2.3 (`spdx-rs` models 2.2 and is unmaintained), and a bundle needs only packages,
//! their checksums, purls and declared licences, and the relationships between them.

use serde::Serialize;

use crate::{contents_digest, rfc3339, Input, License, SbomError};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: &'a str,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<Package<'a>>,
    relationships: Vec<Relationship>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Package<'a> {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    version_info: &'a str,
    download_location: &'static str,
    files_analyzed: bool,
    license_concluded: &'static str,
    license_declared: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    license_comments: Option<String>,
    copyright_text: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    source_info: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_package_purpose: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum<'a> {
    algorithm: &'static str,
    checksum_value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef<'a> {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

/// What SPDX writes where nothing was declared.
const NOASSERTION: &str = "NOASSERTION";
/// The SPDX id of the bundle's own package.
const BUNDLE_ID: &str = "SPDXRef-Bundle";

/// The SPDX 2.3 document of a bundle, as pretty JSON.
pub fn spdx_json(input: &Input<'_>) -> Result<Vec<u8>, SbomError> {
    let created = match input.created {
        Some(t) => rfc3339(t)?,
        None => rfc3339(now())?,
    };
    let mut packages = vec![Package {
        spdx_id: BUNDLE_ID.into(),
        name: input.bundle_name,
        version_info: "",
        download_location: NOASSERTION,
        files_analyzed: false,
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION.into(),
        license_comments: None,
        copyright_text: NOASSERTION,
        checksums: Vec::new(),
        external_refs: Vec::new(),
        source_info: "",
        primary_package_purpose: Some("APPLICATION"),
    }];
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".into(),
        relationship_type: "DESCRIBES",
        related_spdx_element: BUNDLE_ID.into(),
    }];
    for (i, record) in input.packages.iter().enumerate() {
        let p = &record.package;
        // Ids must be `SPDXRef-[A-Za-z0-9.-]+`; a package's own id may hold anything.
        let id = format!("SPDXRef-Package-{}", i + 1);
        let (declared, comments) = match p.license.as_deref().map(License::of) {
            Some(License::Id(l) | License::Expression(l)) => (l, None),
            Some(License::Named(name)) => (
                NOASSERTION.to_string(),
                Some(format!(
                    "declared in the package's metadata as {name:?}, not an SPDX expression"
                )),
            ),
            None => (NOASSERTION.to_string(), None),
        };
        packages.push(Package {
            spdx_id: id.clone(),
            name: &p.name,
            version_info: &p.version,
            download_location: NOASSERTION,
            files_analyzed: false,
            license_concluded: NOASSERTION,
            license_declared: declared,
            license_comments: comments,
            copyright_text: NOASSERTION,
            checksums: p
                .sha256
                .as_deref()
                .map(|h| Checksum {
                    algorithm: "SHA256",
                    checksum_value: h,
                })
                .into_iter()
                .collect(),
            external_refs: p
                .purl
                .as_deref()
                .map(|purl| ExternalRef {
                    reference_category: "PACKAGE-MANAGER",
                    reference_type: "purl",
                    reference_locator: purl,
                })
                .into_iter()
                .collect(),
            source_info: &p.origin,
            primary_package_purpose: None,
        });
        relationships.push(Relationship {
            spdx_element_id: BUNDLE_ID.into(),
            relationship_type: "CONTAINS",
            related_spdx_element: id,
        });
    }
    let document = Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: input.bundle_name,
        document_namespace: format!(
            "https://airgap.invalid/spdx/{}-{}",
            namespace_safe(input.bundle_name),
            contents_digest(input)
        ),
        creation_info: CreationInfo {
            created,
            creators: vec![format!("Tool: airgap-{}", input.airgap_version)],
        },
        packages,
        relationships,
    };
    let mut out = serde_json::to_vec_pretty(&document)?;
    out.push(b'\n');
    Ok(out)
}

/// The present time, for a document that must carry one.
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A bundle name as a URI path segment: unreserved characters kept, the rest `_`.
fn namespace_safe(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '.' | '_' | '~' => c,
            _ => '_',
        })
        .collect()
}
