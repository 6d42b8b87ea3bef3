//! CycloneDX 1.5 JSON, through the `cyclonedx-bom` crate's model and writer.

use cyclonedx_bom::external_models::uri::Purl;
use cyclonedx_bom::models::bom::{Bom, SpecVersion, UrnUuid};
use cyclonedx_bom::models::component::{Classification, Component, Components};
use cyclonedx_bom::models::dependency::{Dependencies, Dependency};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{License as CdxLicense, LicenseChoice, Licenses};
use cyclonedx_bom::models::metadata::Metadata;
use cyclonedx_bom::models::property::{Properties, Property};
use cyclonedx_bom::models::tool::{Tool, Tools};

use crate::{contents_digest, is_application, rfc3339, Input, License, SbomError};

/// The bom-ref of the bundle itself, the document's subject.
const BUNDLE_REF: &str = "bundle";

/// The CycloneDX 1.5 document of a bundle, as pretty JSON.
pub fn cyclonedx_json(input: &Input<'_>) -> Result<Vec<u8>, SbomError> {
    let components: Vec<Component> = input.packages.iter().map(component).collect();
    let refs: Vec<String> = components
        .iter()
        .filter_map(|c| c.bom_ref.clone())
        .collect();
    let bom = Bom {
        serial_number: Some(serial_number(input)?),
        metadata: Some(metadata(input)?),
        components: Some(Components(components)),
        dependencies: Some(Dependencies(vec![Dependency {
            dependency_ref: BUNDLE_REF.into(),
            dependencies: refs,
        }])),
        spec_version: SpecVersion::V1_5,
        ..Bom::default()
    };
    let mut out = Vec::new();
    bom.output_as_json_v1_5(&mut out)
        .map_err(|e| SbomError::CycloneDx(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// A serial number that is the same for the same contents (a UUID of the version 8 form,
/// RFC 9562's for names made by the application), so that bundling twice gives one document.
fn serial_number(input: &Input<'_>) -> Result<UrnUuid, SbomError> {
    let digest = contents_digest(input);
    let mut hex: Vec<u8> = digest.as_bytes()[..32].to_vec();
    hex[12] = b'8';
    hex[16] = b"89ab"[usize::from(hex[16] % 4)];
    let hex = String::from_utf8_lossy(&hex).into_owned();
    let uuid = format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    UrnUuid::new(uuid).map_err(|e| SbomError::CycloneDx(format!("{e:?}")))
}

/// The bundle as the subject, airgap and its plugins as the tools, the target as properties.
fn metadata(input: &Input<'_>) -> Result<Metadata, SbomError> {
    let mut tools = vec![Tool::new("airgap", "airgap", input.airgap_version)];
    tools.extend(
        input
            .plugins
            .iter()
            .map(|p| Tool::new("airgap", &format!("airgap-plugin-{}", p.name), &p.version)),
    );
    let target = input.target;
    let mut properties = Vec::new();
    let mut add = |name: &str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            properties.push(Property::new(format!("airgap:target:{name}"), v));
        }
    };
    add("platforms", Some(&target.platforms.join(" ")));
    add("glibc", target.glibc.as_deref());
    add("python", target.python.as_deref());
    add("arch", target.arch.as_deref());
    let timestamp = match input.created {
        Some(t) => Some(
            rfc3339(t)?
                .try_into()
                .map_err(|e| SbomError::CycloneDx(format!("{e:?}")))?,
        ),
        None => None,
    };
    let mut subject = Component::new(
        Classification::Application,
        input.bundle_name,
        "",
        Some(BUNDLE_REF.into()),
    );
    subject.version = None;
    Ok(Metadata {
        timestamp,
        tools: Some(Tools::List(tools)),
        component: Some(subject),
        properties: (!properties.is_empty()).then_some(Properties(properties)),
        ..Metadata::default()
    })
}

/// One package as a component: its id as the bom-ref, what the source knew, and where it
/// came from as properties.
fn component(record: &airgap_archive::format::manifest::PackageRecord) -> Component {
    let p = &record.package;
    let class = if is_application(&p.kind) {
        Classification::Application
    } else if p.kind == "files" {
        Classification::File
    } else {
        Classification::Library
    };
    let mut c = Component::new(class, &p.name, &p.version, Some(p.id.clone()));
    if p.version.is_empty() {
        c.version = None;
    }
    c.purl = p.purl.as_deref().and_then(|s| s.parse::<Purl>().ok());
    c.hashes = p.sha256.as_ref().map(|h| {
        Hashes(vec![Hash {
            alg: HashAlgorithm::SHA_256,
            content: HashValue(h.clone()),
        }])
    });
    c.licenses = p.license.as_deref().map(|l| {
        Licenses(vec![match License::of(l) {
            License::Id(id) => LicenseChoice::License(CdxLicense::license_id(&id)),
            License::Expression(e) => LicenseChoice::expression(&e),
            License::Named(name) => LicenseChoice::license(&name),
        }])
    });
    let mut properties = vec![
        Property::new("airgap:kind", &p.kind),
        Property::new("airgap:plugin", &record.plugin),
    ];
    if !p.origin.is_empty() {
        properties.push(Property::new("airgap:origin", &p.origin));
    }
    c.properties = Some(Properties(properties));
    c
}
