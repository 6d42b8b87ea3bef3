//! `conda-meta/*.json`: the packages installed in a conda environment, their files, and which
//! of those hold a prefix placeholder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use airgap_plugin_api::{PluginError, PrefixMode};
use serde::Deserialize;

/// The placeholder conda uses when `info/has_prefix` names a file without one.
pub const DEFAULT_PLACEHOLDER: &str = "/opt/anaconda1anaconda2anaconda3";

/// One installed conda package.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub version: String,
    pub build: String,
    pub channel: String,
    pub sha256: Option<String>,
    pub license: Option<String>,
    /// The platform directory of its channel (`linux-64`, `noarch`).
    pub subdir: Option<String>,
    /// The package file's name (`numpy-2.1.0-py311h.conda`), from its URL.
    pub file_name: Option<String>,
    /// Installed paths, relative to the prefix.
    pub files: Vec<String>,
    /// Installed paths that held a placeholder in the package, and how it was written.
    pub placeholders: BTreeMap<String, (String, PrefixMode)>,
    /// The `conda-meta` file this came from.
    pub meta_file: PathBuf,
}

impl Record {
    /// `conda:NAME-VERSION-BUILD`.
    pub fn id(&self) -> String {
        format!("conda:{}-{}-{}", self.name, self.version, self.build)
    }

    /// `NAME-VERSION-BUILD`.
    pub fn dist(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.build)
    }

    /// The package URL, as the purl spec writes a conda package:
    /// `pkg:conda/NAME@VERSION?build=..&channel=..&subdir=..&type=conda`.
    pub fn purl(&self) -> Option<String> {
        let kind = self.file_name.as_deref().and_then(|f| {
            [".conda", ".tar.bz2"]
                .into_iter()
                .find(|ext| f.ends_with(ext))
                .map(|ext| &ext[1..])
        });
        let mut builder = purl::GenericPurlBuilder::new("conda".to_string(), &self.name)
            .with_version(&self.version)
            .with_qualifier("build", &self.build)
            .ok()?;
        let channel = self.channel.trim_end_matches('/');
        let channel = match &self.subdir {
            Some(subdir) => channel
                .strip_suffix(&format!("/{subdir}"))
                .unwrap_or(channel),
            None => channel,
        };
        for (key, value) in [
            ("channel", Some(channel)),
            ("subdir", self.subdir.as_deref()),
            ("type", kind),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                builder = builder.with_qualifier(key, v).ok()?;
            }
        }
        builder.build().ok().map(|p| p.to_string())
    }
}

#[derive(Deserialize)]
struct RawRecord {
    name: String,
    version: String,
    build: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    subdir: Option<String>,
    #[serde(default, rename = "fn")]
    fn_: Option<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    paths_data: Option<RawPaths>,
    #[serde(default)]
    extracted_package_dir: Option<PathBuf>,
    #[serde(default)]
    noarch: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawPaths {
    #[serde(default)]
    paths: Vec<RawPath>,
}

#[derive(Deserialize)]
struct RawPath {
    #[serde(rename = "_path")]
    path: String,
    #[serde(default)]
    prefix_placeholder: Option<String>,
    #[serde(default)]
    file_mode: Option<String>,
}

fn mode_of(file_mode: Option<&str>) -> PrefixMode {
    match file_mode {
        Some("binary") => PrefixMode::Binary,
        _ => PrefixMode::Text,
    }
}

/// Read every `conda-meta/*.json` of `prefix`. `python_short` (`3.11`) maps noarch python
/// paths read from a package cache.
pub fn read_records(prefix: &Path, python_short: Option<&str>) -> Result<Vec<Record>, PluginError> {
    let meta = prefix.join("conda-meta");
    let dir = std::fs::read_dir(&meta).map_err(|e| {
        PluginError::new(format!("could not read {}: {e}", meta.display()))
            .with_help("check the permissions of the environment")
    })?;
    let mut files: Vec<PathBuf> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files.iter().map(|f| read_record(f, python_short)).collect()
}

/// The licence in the package's own `info/about.json`, for a record that has none: what
/// the package's recipe declared.
fn about_license(extracted: &Path) -> Option<String> {
    let text = std::fs::read(extracted.join("info/about.json")).ok()?;
    let about: serde_json::Value = serde_json::from_slice(&text).ok()?;
    about["license"]
        .as_str()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

fn read_record(file: &Path, python_short: Option<&str>) -> Result<Record, PluginError> {
    let text = std::fs::read(file).map_err(|e| {
        PluginError::new(format!("could not read {}: {e}", file.display()))
            .with_help("check the permissions of the environment")
    })?;
    let raw: RawRecord = serde_json::from_slice(&text).map_err(|e| {
        PluginError::new(format!("broken conda-meta file {}: {e}", file.display())).with_help(
            "the environment's package database is damaged; recreate the environment, or reinstall \
             the package with conda so that its record is written again",
        )
    })?;
    let mut placeholders = BTreeMap::new();
    match &raw.paths_data {
        Some(paths) if !paths.paths.is_empty() => {
            for p in &paths.paths {
                if let Some(ph) = &p.prefix_placeholder {
                    placeholders.insert(
                        p.path.clone(),
                        (ph.clone(), mode_of(p.file_mode.as_deref())),
                    );
                }
            }
        }
        _ => {
            if let Some(dir) = &raw.extracted_package_dir {
                let noarch_python = match &raw.noarch {
                    Some(serde_json::Value::String(s)) => s == "python",
                    Some(serde_json::Value::Object(o)) => {
                        o.get("type").and_then(|t| t.as_str()) == Some("python")
                    }
                    _ => false,
                };
                let map = |p: &str| -> String {
                    match (noarch_python, python_short) {
                        (true, Some(v)) => {
                            if let Some(rest) = p.strip_prefix("site-packages/") {
                                format!("lib/python{v}/site-packages/{rest}")
                            } else if let Some(rest) = p.strip_prefix("python-scripts/") {
                                format!("bin/{rest}")
                            } else {
                                p.to_string()
                            }
                        }
                        _ => p.to_string(),
                    }
                };
                read_cache_placeholders(dir, &map, &mut placeholders);
            }
        }
    }
    let channel = raw
        .channel
        .or_else(|| {
            raw.url
                .as_deref()
                .and_then(|u| u.rsplit_once('/').map(|(d, _)| d.to_string()))
        })
        .unwrap_or_default();
    let file_name = raw
        .url
        .as_deref()
        .and_then(|u| u.rsplit('/').next())
        .map(str::to_string)
        .or(raw.fn_);
    let license = raw
        .license
        .filter(|l| !l.trim().is_empty())
        .or_else(|| about_license(raw.extracted_package_dir.as_deref()?));
    Ok(Record {
        name: raw.name,
        version: raw.version,
        build: raw.build,
        channel,
        sha256: raw.sha256,
        license,
        subdir: raw.subdir,
        file_name,
        files: raw.files,
        placeholders,
        meta_file: file.to_path_buf(),
    })
}

/// Placeholders from a package cache entry: `info/paths.json`, else `info/has_prefix`.
fn read_cache_placeholders(
    dir: &Path,
    map: &dyn Fn(&str) -> String,
    out: &mut BTreeMap<String, (String, PrefixMode)>,
) {
    if let Ok(text) = std::fs::read(dir.join("info/paths.json")) {
        if let Ok(paths) = serde_json::from_slice::<RawPaths>(&text) {
            for p in paths.paths {
                if let Some(ph) = p.prefix_placeholder {
                    out.insert(map(&p.path), (ph, mode_of(p.file_mode.as_deref())));
                }
            }
            return;
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("info/has_prefix")) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let parts = split_has_prefix(line);
            match parts.as_slice() {
                [path] => {
                    out.insert(map(path), (DEFAULT_PLACEHOLDER.into(), PrefixMode::Text));
                }
                [placeholder, mode, path] => {
                    out.insert(map(path), (placeholder.clone(), mode_of(Some(mode))));
                }
                _ => {}
            }
        }
    }
}

/// Split a `has_prefix` line: `placeholder mode path`, with optional double quotes.
fn split_has_prefix(line: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            parts.push(r[..end].to_string());
            rest = r.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            parts.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_prefix_lines() {
        assert_eq!(split_has_prefix("bin/x"), vec!["bin/x"]);
        assert_eq!(
            split_has_prefix("/opt/ph binary \"lib/a b.so\""),
            vec!["/opt/ph", "binary", "lib/a b.so"]
        );
    }
}
