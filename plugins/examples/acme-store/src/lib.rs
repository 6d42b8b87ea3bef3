//! Example in-house plugin: artifacts from the ACME artifact store.
//!
//! The (made-up) ACME store is a directory with an `index.toml` that lists artifacts, each a
//! file or directory beside the index, with a version, a licence and an optional sha256:
//!
//! ```toml
//! [[artifact]]
//! name = "acme-tools"
//! version = "2.3.1"
//! path = "artifacts/acme-tools-2.3.1"     # relative to the index
//! license = "Proprietary"
//! sha256 = "..."                          # of a single file; optional
//! ```
//!
//! Configuration in airgap.toml:
//!
//! ```toml
//! [sources.acme-store]
//! index = "/mnt/acme/index.toml"
//! packages = ["acme-tools", "acme-models==1.2.0"]   # default: every artifact
//! dest = "acme"                                       # folder in the bundle
//! ```
//!
//! It shows the whole contract: reading its table, resolving paths against the config file,
//! naming files (never sending contents), declaring packages for the manifest, warnings, and
//! clear errors with a `help` line.

use std::io::Read;
use std::path::{Path, PathBuf};

use airgap_plugin_api::{
    export_plugin, ContributeRequest, Contribution, Entry, Host, Package, PluginError,
    SourcePlugin, Stage,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `[sources.acme-store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    index: PathBuf,
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default = "default_dest")]
    dest: String,
}

fn default_dest() -> String {
    "acme".to_string()
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    artifact: Vec<Artifact>,
}

#[derive(Debug, Deserialize)]
struct Artifact {
    name: String,
    version: String,
    path: PathBuf,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
}

/// The plugin. Stateless: everything comes with the request.
#[derive(Default)]
pub struct AcmeStore;

impl SourcePlugin for AcmeStore {
    /// Read the index, check that every wanted package is in it, then bring each selected
    /// artifact (checked against the index) as a package of its own.
    fn contribute(
        &self,
        request: &ContributeRequest,
        host: &Host,
    ) -> Result<Contribution, PluginError> {
        let config: Config = request.config()?;
        let index_path = request.resolve_path(&config.index);
        let index = read_index(&index_path)?;
        let store = index_path.parent().unwrap_or(Path::new("/"));
        let wanted = wanted(&config.packages);
        check_wanted(&wanted, &index, &index_path)?;

        let mut contribution = Contribution::default();
        let total = index.artifact.len() as u64;
        for (done, artifact) in index.artifact.iter().enumerate() {
            if host.is_cancelled() {
                return Err(PluginError::cancelled());
            }
            if !is_selected(&wanted, artifact) {
                continue;
            }
            let source = store.join(&artifact.path);
            check_artifact(artifact, &source, &index_path)?;
            add_artifact(
                &mut contribution,
                artifact,
                &source,
                &config.dest,
                &index_path,
            );
            host.progress(done as u64 + 1, total, "acme artifacts");
        }
        host.info(&format!(
            "{} ACME artifacts from {}",
            contribution.packages.len(),
            index_path.display()
        ));
        Ok(contribution)
    }
}

/// The store's `index.toml`.
fn read_index(index_path: &Path) -> Result<Index, PluginError> {
    let text = std::fs::read_to_string(index_path).map_err(|e| {
        PluginError::new(format!(
            "cannot read the ACME index {}: {e}",
            index_path.display()
        ))
        .with_help("set `index` in [sources.acme-store] to the store's index.toml")
    })?;
    toml::from_str(&text)
        .map_err(|e| PluginError::new(format!("invalid ACME index {}: {e}", index_path.display())))
}

/// `packages` as (name, version if pinned with `==`).
fn wanted(packages: &[String]) -> Vec<(String, Option<String>)> {
    packages
        .iter()
        .map(|p| match p.split_once("==") {
            Some((n, v)) => (n.trim().to_string(), Some(v.trim().to_string())),
            None => (p.trim().to_string(), None),
        })
        .collect()
}

/// Refuse a wanted package the index does not have, listing what it has: a typo fails here,
/// not as a package missing on the target.
fn check_wanted(
    wanted: &[(String, Option<String>)],
    index: &Index,
    index_path: &Path,
) -> Result<(), PluginError> {
    for (name, version) in wanted {
        let known = index
            .artifact
            .iter()
            .any(|a| &a.name == name && version.as_ref().is_none_or(|v| &a.version == v));
        if !known {
            let spec = version
                .as_ref()
                .map(|v| format!("{name}=={v}"))
                .unwrap_or(name.clone());
            return Err(PluginError::new(format!(
                "{spec} is not in the ACME index {}",
                index_path.display()
            ))
            .with_help(format!(
                "the index has: {}",
                index
                    .artifact
                    .iter()
                    .map(|a| format!("{}=={}", a.name, a.version))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// Whether `packages` selects `artifact` (an empty list selects every artifact).
fn is_selected(wanted: &[(String, Option<String>)], artifact: &Artifact) -> bool {
    wanted.is_empty()
        || wanted
            .iter()
            .any(|(n, v)| n == &artifact.name && v.as_ref().is_none_or(|v| v == &artifact.version))
}

/// The artifact exists at `source` and matches the index's sha256, when it lists one: the
/// bundle never carries an artifact that changed after it was indexed.
fn check_artifact(
    artifact: &Artifact,
    source: &Path,
    index_path: &Path,
) -> Result<(), PluginError> {
    if !source.exists() {
        return Err(PluginError::new(format!(
            "artifact {}=={} is listed in {} but {} does not exist",
            artifact.name,
            artifact.version,
            index_path.display(),
            source.display()
        ))
        .with_help(
            "the ACME store is incomplete: sync it, or leave this package out of `packages`",
        ));
    }
    if let Some(expected) = &artifact.sha256 {
        let actual = sha256_of(source)
            .map_err(|e| PluginError::new(format!("cannot read {}: {e}", source.display())))?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(PluginError::new(format!(
                "{} does not match the sha256 in the ACME index (expected {expected}, found {actual})",
                source.display()
            ))
            .with_help("the artifact changed after it was indexed: re-index the store"));
        }
    }
    Ok(())
}

/// Name the artifact's file under `dest/NAME/` and declare it as a package (with a warning
/// when the index gives no licence: the people who approve the transfer look for one).
fn add_artifact(
    contribution: &mut Contribution,
    artifact: &Artifact,
    source: &Path,
    dest: &str,
    index_path: &Path,
) {
    let id = format!("acme:{}-{}", artifact.name, artifact.version);
    let file_name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| artifact.name.clone());
    contribution.entries.push(
        Entry::path(source, format!("{dest}/{}/{}", artifact.name, file_name)).with_package(&id),
    );
    if artifact.license.is_none() {
        contribution.warnings.push(format!(
            "{}=={} has no licence in the ACME index",
            artifact.name, artifact.version
        ));
    }
    let mut package = Package::new(id, &artifact.name, &artifact.version, "acme")
        .with_origin(index_path.display().to_string());
    package.sha256 = artifact.sha256.clone();
    package.license = artifact.license.clone();
    // The store has no type of its own in the purl spec: `generic`, with the store as the
    // namespace (ABI 1.2).
    package.purl = purl::GenericPurlBuilder::new("generic".to_string(), &artifact.name)
        .with_namespace("acme")
        .with_version(&artifact.version)
        .build()
        .ok()
        .map(|p| p.to_string());
    contribution.packages.push(package);
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

export_plugin!(
    AcmeStore,
    name = "acme-store",
    version = env!("CARGO_PKG_VERSION"),
    stage = Stage::Packages,
    description = "artifacts from the ACME artifact store (example in-house plugin)"
);
