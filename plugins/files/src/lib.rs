//! The `files` source plugin: carries extra files and directories (data, configuration,
//! licences, models) into the bundle at a chosen place.
//!
//! ```toml
//! [sources.files]
//! paths = [ "data/", { source = "models/x.bin", dest = "share/models/x.bin" } ]
//! exclude = [ "*.tmp", "__pycache__" ]
//! ```
//!
//! A string goes to the same relative name under the bundle's top folder (an absolute path
//! goes under its last component); a table chooses `dest` and may add its own `exclude`.
//! Relative sources resolve against the configuration file's directory.

use airgap_plugin_api::{
    export_plugin, ContributeRequest, Contribution, Entry, EntryKind, Host, Package, PluginError,
    SourcePlugin, Stage,
};
use serde::Deserialize;

/// The `[sources.files]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// What to carry.
    #[serde(default)]
    pub paths: Vec<PathSpec>,
    /// Glob patterns left out of every directory (a pattern without `/` matches a name at
    /// any depth; with `/`, a path relative to the directory given).
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// One item of `paths`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PathSpec {
    /// A path, carried under the same relative name.
    Plain(String),
    /// A path and where it goes.
    Table {
        /// On the build machine.
        source: String,
        /// Inside the bundle (default: as for a plain path).
        #[serde(default)]
        dest: Option<String>,
        /// Extra exclusions for this path.
        #[serde(default)]
        exclude: Vec<String>,
    },
}

/// Where a plain path goes inside the bundle.
fn default_dest(source: &str) -> Result<String, PluginError> {
    let trimmed = source.trim_end_matches('/');
    let path = std::path::Path::new(trimmed);
    let dest = if path.is_absolute() {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        trimmed.trim_start_matches("./").to_string()
    };
    if dest.is_empty() || dest.split('/').any(|c| c == "..") {
        return Err(PluginError::new(format!(
            "[sources.files] path {source:?} has no name to use inside the bundle"
        ))
        .with_help("write it as a table with a `dest`: { source = \"...\", dest = \"data/x\" }"));
    }
    Ok(dest)
}

/// A `dest` the user wrote must be a path inside the bundle's top folder: said here, naming
/// the key, rather than by the host as a broken plugin contract.
fn check_dest(source: &str, dest: &str) -> Result<(), PluginError> {
    let why = if dest.is_empty() {
        "is empty"
    } else if dest.starts_with('/') {
        "is absolute"
    } else if dest.split('/').any(|c| c == "..") {
        "leaves the bundle (`..`)"
    } else {
        return Ok(());
    };
    Err(PluginError::new(format!(
        "[sources.files] paths: dest {dest:?} (for source {source:?}) {why}"
    ))
    .with_help(
        "a dest is a path inside the bundle's top folder, such as \"etc/app\" (NAME/etc/app on the target): drop any leading / and every ..",
    ))
}

/// What a path given in `paths` is, when it is none of what can be carried (a fifo, a
/// socket, a device): the walk leaves such things out inside a directory, but one named
/// on its own is a mistake to report, not an empty bundle.
fn special_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() || t.is_dir() || t.is_symlink() {
        None
    } else if t.is_fifo() {
        Some("a fifo")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    }
}

/// The plugin.
#[derive(Default)]
pub struct Files;

impl SourcePlugin for Files {
    fn contribute(
        &self,
        request: &ContributeRequest,
        host: &Host,
    ) -> Result<Contribution, PluginError> {
        let config: Config = request.config()?;
        if config.paths.is_empty() {
            host.warn("[sources.files] has no `paths`: nothing to add");
        }
        let mut entries = Vec::new();
        let mut packages = Vec::new();
        for spec in &config.paths {
            let (source, dest, extra) = match spec {
                PathSpec::Plain(s) => (s.as_str(), default_dest(s)?, &[][..]),
                PathSpec::Table {
                    source,
                    dest,
                    exclude,
                } => (
                    source.as_str(),
                    match dest {
                        Some(d) => {
                            check_dest(source, d)?;
                            d.clone()
                        }
                        None => default_dest(source)?,
                    },
                    exclude.as_slice(),
                ),
            };
            let resolved = request.resolve_path(source);
            // Followed: a link to a fifo is as much a mistake as the fifo.
            let meta = std::fs::symlink_metadata(&resolved).and_then(|m| match m.is_symlink() {
                true => std::fs::metadata(&resolved).or(Ok(m)),
                false => Ok(m),
            });
            let Ok(meta) = meta else {
                return Err(PluginError::new(format!(
                    "[sources.files] path {} does not exist",
                    resolved.display()
                ))
                .with_help(
                    "relative paths are relative to the directory of the configuration file",
                ));
            };
            if let Some(kind) = special_kind(&meta) {
                return Err(PluginError::new(format!(
                    "[sources.files] path {} is {kind}: only files, directories and links can be carried",
                    resolved.display()
                ))
                .with_help("remove it from `paths`, or name the file it stands for"));
            }
            host.debug(&format!("adding {} as {dest}", resolved.display()));
            // Each path is one package of the bill of materials: what it is, from where.
            let id = format!("files:{dest}");
            packages.push(
                Package::new(&id, &dest, "", "files").with_origin(resolved.display().to_string()),
            );
            let mut exclude = config.exclude.clone();
            exclude.extend(extra.iter().cloned());
            let kind = EntryKind::Path {
                source: resolved,
                exclude,
            };
            entries.push(Entry::new(dest, kind).with_package(id));
        }
        let mut contribution = Contribution::default();
        contribution.entries = entries;
        contribution.packages = packages;
        Ok(contribution)
    }
}

export_plugin!(
    Files,
    name = "files",
    version = env!("CARGO_PKG_VERSION"),
    stage = Stage::Packages,
    description = "extra files and directories (data, configuration, licences, models)"
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(config: serde_json::Value) -> ContributeRequest {
        let mut request = ContributeRequest::default();
        request.source = "files".into();
        request.config = config;
        request.config_dir = std::env::temp_dir();
        request
    }

    #[test]
    fn plain_and_table_paths() {
        let dir = std::env::temp_dir().join(format!("airgap-files-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("x.bin"), b"x").unwrap();
        let mut req = request(serde_json::json!({
            "paths": ["data/", {"source": "x.bin", "dest": "share/models/x.bin", "exclude": ["*.tmp"]}],
            "exclude": ["__pycache__"],
        }));
        req.config_dir = dir.clone();
        let c = Files.contribute(&req, &Host::detached()).unwrap();
        assert_eq!(c.entries[0].dest, "data");
        assert_eq!(c.entries[1].dest, "share/models/x.bin");
        match &c.entries[1].kind {
            EntryKind::Path { source, exclude } => {
                assert_eq!(source, &dir.join("x.bin"));
                assert_eq!(
                    exclude,
                    &vec!["__pycache__".to_string(), "*.tmp".to_string()]
                );
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_path_is_an_error() {
        let req = request(serde_json::json!({"paths": ["does-not-exist-airgap"]}));
        let err = Files.contribute(&req, &Host::detached()).unwrap_err();
        assert!(err.message.contains("does not exist"), "{}", err.message);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let req = request(serde_json::json!({"path": ["x"]}));
        assert!(Files.contribute(&req, &Host::detached()).is_err());
    }
}
