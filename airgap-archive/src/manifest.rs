//! The manifest: the first entry of every bundle, a versioned TOML file that lists every
//! file with its size, mode and sha256, where it came from, and what to do on the target.

use std::fs;
use std::io::Read;
use std::path::Path;

use airgap_plugin_api::{InstallStep, Package, PythonEnvironment, TargetProfile};
use serde::{Deserialize, Serialize};

use crate::error::ArchiveError;
use crate::read::open_archive;
use crate::tarfmt::TarReader;

/// Where the manifest sits inside the bundle's top folder. It is the first tar entry.
pub const MANIFEST_PATH: &str = ".airgap/manifest.toml";
/// Version of the manifest format this crate writes; readers refuse newer ones.
pub const FORMAT: u32 = 1;
/// Largest manifest we read (hostile bundles may declare anything).
pub const MAX_MANIFEST: u64 = 512 * 1024 * 1024;
/// The plugin name recorded for what airgap itself adds (the unpacker and its launcher).
pub const AIRGAP_PLUGIN: &str = "airgap";

/// What the host knows about the bundle besides its files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ManifestInput {
    /// The top folder inside the archive.
    pub bundle_name: String,
    /// Version of airgap that wrote the bundle.
    pub airgap_version: String,
    /// The plugins that contributed.
    pub plugins: Vec<PluginRecord>,
    /// The machine the bundle is for.
    pub target: TargetProfile,
    /// The Python environment, if one was brought.
    pub python: Option<PythonEnvironment>,
    /// Every package.
    pub packages: Vec<PackageRecord>,
    /// What to do on the target, in order.
    pub install_steps: Vec<StepRecord>,
    /// Warnings of the bundling.
    pub warnings: Vec<String>,
}

/// One plugin that contributed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// ABI version the plugin was built against.
    pub abi: String,
    /// The `[sources.X]` key that selected it.
    pub source: String,
}

/// A package and the plugin that brought it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// The plugin.
    pub plugin: String,
    /// The package.
    pub package: Package,
}

/// An install step and the plugin that asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The plugin.
    pub plugin: String,
    /// The step.
    pub step: InstallStep,
}

/// Kind of a file record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
}

/// One path of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the top folder (lossy when the name is not UTF-8; see `path_hex`).
    pub path: String,
    /// The exact bytes of the path, hex-encoded, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// What it is.
    pub kind: FileType,
    /// Size in bytes (files).
    #[serde(default)]
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// sha256 of the content (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Plugin that contributed it.
    pub plugin: String,
    /// Package it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Link target (symlinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The exact bytes of the link target, hex-encoded, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hex: Option<String>,
}

impl FileRecord {
    /// The exact path bytes.
    pub fn path_bytes(&self) -> Vec<u8> {
        decode(&self.path, &self.path_hex)
    }

    /// The exact link target bytes.
    pub fn target_bytes(&self) -> Option<Vec<u8>> {
        self.target.as_ref().map(|t| decode(t, &self.target_hex))
    }
}

fn decode(text: &str, hex_form: &Option<String>) -> Vec<u8> {
    match hex_form.as_deref().and_then(|h| hex::decode(h).ok()) {
        Some(bytes) => bytes,
        None => text.as_bytes().to_vec(),
    }
}

/// `(text, hex)` for a byte string: hex only when it is not UTF-8.
pub(crate) fn encode(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(hex::encode(bytes)),
        ),
    }
}

/// The manifest of a bundle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// The top folder inside the archive.
    pub bundle_name: String,
    /// Version of airgap that wrote it.
    pub airgap_version: String,
    /// The plugins that contributed.
    #[serde(default)]
    pub plugins: Vec<PluginRecord>,
    /// The machine the bundle is for.
    #[serde(default)]
    pub target: TargetProfile,
    /// The Python environment, if any.
    #[serde(default)]
    pub python: Option<PythonEnvironment>,
    /// Warnings of the bundling.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Every package.
    #[serde(default)]
    pub packages: Vec<PackageRecord>,
    /// Install steps, in order.
    #[serde(default)]
    pub install_steps: Vec<StepRecord>,
    /// Every path of the bundle except the manifest itself, sorted by path bytes.
    #[serde(default)]
    pub files: Vec<FileRecord>,
}

impl Manifest {
    /// Serialize to TOML.
    pub fn to_toml(&self) -> Result<String, String> {
        toml::to_string(self).map_err(|e| e.to_string())
    }

    /// Parse and check the format version.
    pub fn from_toml(text: &str) -> Result<Manifest, String> {
        let m: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        if m.format == 0 || m.format > FORMAT {
            return Err(format!(
                "format {} is not supported (this airgap reads format {FORMAT}); use a newer airgap",
                m.format
            ));
        }
        if m.bundle_name.is_empty()
            || m.bundle_name.contains('/')
            || m.bundle_name == "."
            || m.bundle_name == ".."
        {
            return Err(format!("invalid bundle name {:?}", m.bundle_name));
        }
        Ok(m)
    }

    /// Total size of the files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Read the manifest of a bundle archive (or of an unpacked bundle directory).
pub fn read_manifest(bundle: &Path) -> Result<Manifest, ArchiveError> {
    let manifest_err = |reason: String| ArchiveError::Manifest {
        bundle: bundle.into(),
        reason,
    };
    if bundle.is_dir() {
        let path = bundle.join(MANIFEST_PATH);
        let text = fs::read_to_string(&path).map_err(|e| ArchiveError::io("reading", &path, e))?;
        return Manifest::from_toml(&text).map_err(manifest_err);
    }
    let reader = open_archive(bundle)?;
    let mut tar = TarReader::new(reader);
    let (top, text) = read_first_entry(bundle, &mut tar)?;
    let m = Manifest::from_toml(&text).map_err(manifest_err)?;
    if m.bundle_name.as_bytes() != top.as_slice() {
        return Err(ArchiveError::Corrupt {
            bundle: bundle.into(),
            reason: format!(
                "the manifest names the bundle {:?} but the top folder is {:?}",
                m.bundle_name,
                String::from_utf8_lossy(&top)
            ),
        });
    }
    Ok(m)
}

/// Read the first entry, which must be the manifest; returns the top folder and the text.
pub(crate) fn read_first_entry<R: Read>(
    bundle: &Path,
    tar: &mut TarReader<R>,
) -> Result<(Vec<u8>, String), ArchiveError> {
    let corrupt = |reason: String| ArchiveError::Corrupt {
        bundle: bundle.into(),
        reason,
    };
    let entry = tar
        .next_entry()
        .map_err(|e| corrupt(format!("not a readable airgap bundle: {e}")))?
        .ok_or_else(|| corrupt("the archive is empty".into()))?;
    let suffix = format!("/{MANIFEST_PATH}");
    let top = match entry.path.strip_suffix(suffix.as_bytes()) {
        Some(top)
            if !top.is_empty()
                && !top.contains(&b'/')
                && entry.kind == crate::tarfmt::EntryType::File =>
        {
            top.to_vec()
        }
        _ => {
            return Err(corrupt(format!(
                "the first entry is {:?}, not the manifest (not an airgap bundle?)",
                String::from_utf8_lossy(&entry.path)
            )))
        }
    };
    let bytes = tar
        .read_all(MAX_MANIFEST)
        .map_err(|e| corrupt(format!("reading the manifest: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| corrupt("the manifest is not UTF-8".into()))?;
    Ok((top, text))
}
