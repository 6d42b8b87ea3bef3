//! `airgap.toml`: what to bundle, for which target, from which sources.
//!
//! ```toml
//! [bundle]
//! name = "nlp-env"              # top folder inside the archive
//! output = "nlp-env.tar.gz"     # `airgap bundle -o PATH` overrides
//! [target]                      # the air-gapped machine; default: the bundled interpreter's own
//! python = "3.11.7"
//! platform = "manylinux2014_x86_64"
//! glibc = "2.17"
//! [sources.conda]               # a conda env, a venv or a Python installation
//! prefix = "/opt/conda/envs/nlp"
//! [sources.acme-store]          # any other table goes to the plugin of that name
//! index = "/mnt/acme/index.toml"
//! ```
//!
//! Relative paths are relative to the directory of the configuration file.

use std::path::{Path, PathBuf};

use airgap_plugin_api::TargetProfile;
use serde::Deserialize;

use crate::Error;

/// The parsed configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[bundle]`.
    pub bundle: BundleSection,
    /// `[target]`.
    pub target: TargetSection,
    /// `[check]`.
    pub check: CheckSection,
    /// `[sources.*]`, in file order, without the tables that say `enabled = false`.
    pub sources: Vec<SourceTable>,
    /// Names of the `[sources.*]` tables that say `enabled = false`: a source the host would
    /// otherwise add (`syslibs` beside an environment source) stays off.
    pub disabled: Vec<String>,
    /// `plugin-dirs = [...]`: extra plugin directories, searched after `--plugin-dir`.
    pub plugin_dirs: Vec<PathBuf>,
    /// The file this came from (none for the built-in default).
    pub path: Option<PathBuf>,
    /// The directory relative paths resolve against.
    pub dir: PathBuf,
}

/// `[bundle]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BundleSection {
    /// Top folder inside the archive.
    pub name: Option<String>,
    /// Where to write the archive.
    pub output: Option<PathBuf>,
    /// `gzip` (default) or `zstd`.
    pub compression: Option<String>,
    /// Compression level.
    pub level: Option<i32>,
    /// Drop dangling symlinks with a warning instead of failing.
    #[serde(default)]
    pub drop_dangling_links: bool,
    /// Seconds one source plugin may run (0 = no limit; default
    /// [`crate::bundle::DEFAULT_PLUGIN_TIMEOUT`]).
    pub plugin_timeout: Option<u64>,
}

/// `[target]`: the air-gapped machine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TargetSection {
    /// Full Python version (`3.11.7`).
    pub python: Option<String>,
    /// Implementation tag (`cp`).
    pub implementation: Option<String>,
    /// ABI tag (`cp311`).
    pub abi: Option<String>,
    /// One platform tag or a list, most specific first.
    pub platform: Option<OneOrMany>,
    /// glibc version of the target (`2.17`).
    pub glibc: Option<String>,
    /// Where the bundle will be unpacked, when known.
    pub prefix: Option<String>,
    /// Machine architecture (`x86_64`).
    pub arch: Option<String>,
    /// A probed target: the file `airgap probe --out FILE` wrote there (relative to this
    /// file), or the code it printed. Its libraries replace a manylinux policy's.
    pub profile: Option<String>,
}

/// `[check]`: how strict the pre-transfer check is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckSection {
    /// Libraries loaded only on demand (nothing in the bundle needs them) that would not
    /// load on the target fail the check instead of warning.
    #[serde(default)]
    pub strict: bool,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The source that brings the system libraries an environment needs.
pub const SYSLIBS: &str = "syslibs";

/// One `[sources.NAME]` table.
#[derive(Debug, Clone)]
pub struct SourceTable {
    /// The table's key.
    pub name: String,
    /// The plugin that serves it: `plugin = "..."` in the table, else the key.
    pub plugin: String,
    /// The table, as JSON for the plugin (without the `plugin` key).
    pub config: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    #[serde(default)]
    bundle: BundleSection,
    #[serde(default)]
    target: TargetSection,
    #[serde(default)]
    check: CheckSection,
    #[serde(default)]
    sources: toml::Table,
    #[serde(default)]
    plugin_dirs: Vec<PathBuf>,
}

impl Config {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            cause: source,
        })?;
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Config::parse(&text, Some(path), &dir)
    }

    /// Parse configuration text; `dir` is where relative paths resolve.
    pub fn parse(text: &str, path: Option<&Path>, dir: &Path) -> Result<Config, Error> {
        let shown = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("<config>"));
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error::ConfigParse {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let mut sources = Vec::new();
        let mut disabled = Vec::new();
        for (name, value) in raw.sources {
            let toml::Value::Table(mut table) = value else {
                return Err(Error::ConfigParse {
                    path: shown,
                    message: format!("`sources.{name}` must be a table, like [sources.{name}]"),
                });
            };
            let plugin = match table.remove("plugin") {
                None => name.clone(),
                Some(toml::Value::String(p)) => p,
                Some(_) => {
                    return Err(Error::ConfigParse {
                        path: shown,
                        message: format!(
                            "`sources.{name}.plugin` must be a plugin name (a string)"
                        ),
                    })
                }
            };
            match table.remove("enabled") {
                None | Some(toml::Value::Boolean(true)) => {}
                Some(toml::Value::Boolean(false)) => {
                    disabled.push(name);
                    continue;
                }
                Some(_) => {
                    return Err(Error::ConfigParse {
                        path: shown,
                        message: format!("`sources.{name}.enabled` must be true or false"),
                    })
                }
            }
            let config = serde_json::to_value(&table).map_err(|e| Error::ConfigParse {
                path: shown.clone(),
                message: format!("`sources.{name}`: {e}"),
            })?;
            sources.push(SourceTable {
                name,
                plugin,
                config,
            });
        }
        let plugin_dirs = raw
            .plugin_dirs
            .into_iter()
            .map(|p| if p.is_absolute() { p } else { dir.join(p) })
            .collect();
        let mut bundle = raw.bundle;
        if let Some(output) = bundle.output.take() {
            bundle.output = Some(if output.is_absolute() {
                output
            } else {
                dir.join(output)
            });
        }
        Ok(Config {
            bundle,
            target: raw.target,
            check: raw.check,
            sources,
            disabled,
            plugin_dirs,
            path: path.map(Path::to_path_buf),
            dir: dir.to_path_buf(),
        })
    }

    /// The configuration used when none is given: the active Python environment
    /// (`CONDA_PREFIX`, else `VIRTUAL_ENV`); its system libraries come with it, as with any
    /// environment source ([`Config::implied_sources`]).
    pub fn active_environment(cwd: &Path) -> Result<Config, Error> {
        let prefix = std::env::var_os("CONDA_PREFIX")
            .filter(|p| !p.is_empty())
            .or_else(|| std::env::var_os("VIRTUAL_ENV").filter(|p| !p.is_empty()))
            .ok_or(Error::NoActiveEnvironment)?;
        let prefix = PathBuf::from(prefix);
        let name = prefix
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "env".to_string());
        let conda = serde_json::json!({ "prefix": prefix });
        Ok(Config {
            bundle: BundleSection {
                name: Some(name),
                ..BundleSection::default()
            },
            target: TargetSection::default(),
            check: CheckSection::default(),
            sources: vec![SourceTable {
                name: "conda".into(),
                plugin: "conda".into(),
                config: conda,
            }],
            disabled: Vec::new(),
            plugin_dirs: Vec::new(),
            path: None,
            dir: cwd.to_path_buf(),
        })
    }

    /// Sources the host adds because every environment needs them: `syslibs` (the shared
    /// libraries the environment's ELF files need and the target may lack) when a source
    /// brings an environment (`has_environment`), unless a table already uses that plugin
    /// or `[sources.syslibs] enabled = false` turns it off. An environment without them is
    /// refused by the check on almost every target, so the default is what users expect.
    pub fn implied_sources(&self, has_environment: bool) -> Vec<SourceTable> {
        let named = |n: &str| {
            self.sources.iter().any(|s| s.plugin == n || s.name == n)
                || self.disabled.iter().any(|d| d == n)
        };
        if has_environment && !named(SYSLIBS) {
            vec![SourceTable {
                name: SYSLIBS.into(),
                plugin: SYSLIBS.into(),
                config: serde_json::json!({}),
            }]
        } else {
            Vec::new()
        }
    }

    /// The target profile as declared; the host completes it from the bundled interpreter.
    pub fn target_profile(&self) -> TargetProfile {
        let t = &self.target;
        let platforms = t
            .platform
            .clone()
            .map(OneOrMany::into_vec)
            .unwrap_or_default();
        let glibc = t
            .glibc
            .clone()
            .or_else(|| platforms.iter().find_map(|p| glibc_of_platform_tag(p)));
        let mut profile = TargetProfile::default();
        profile.python = t.python.clone();
        profile.implementation = t.implementation.clone();
        profile.abi = t.abi.clone();
        profile.platforms = platforms;
        profile.glibc = glibc;
        profile.prefix = t.prefix.clone();
        profile.arch = t.arch.clone();
        profile
    }

    /// The bundle's top folder name.
    pub fn bundle_name(&self) -> String {
        if let Some(name) = &self.bundle.name {
            return name.clone();
        }
        if let Some(stem) = self
            .path
            .as_ref()
            .and_then(|p| std::path::absolute(p).ok())
            .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_owned()))
        {
            let stem = stem.to_string_lossy().into_owned();
            if !stem.is_empty() {
                return stem;
            }
        }
        "bundle".to_string()
    }
}

/// The glibc version a manylinux platform tag promises (`manylinux2014_x86_64` -> `2.17`,
/// `manylinux_2_28_x86_64` -> `2.28`).
pub fn glibc_of_platform_tag(tag: &str) -> Option<String> {
    let legacy = [
        ("manylinux1_", "2.5"),
        ("manylinux2010_", "2.12"),
        ("manylinux2014_", "2.17"),
    ];
    for (prefix, glibc) in legacy {
        if tag.starts_with(prefix) {
            return Some(glibc.to_string());
        }
    }
    let rest = tag.strip_prefix("manylinux_")?;
    let mut parts = rest.splitn(3, '_');
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(format!("{major}.{minor}"))
}

/// Check that a bundle name is a single safe path component.
pub fn validate_bundle_name(name: &str) -> Result<(), Error> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.starts_with('-');
    if bad {
        return Err(Error::BadBundleName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape_and_keeps_source_order() {
        let text = r#"
[bundle]
name = "nlp-env"
output = "nlp-env.tar.gz"
[target]
python = "3.11.7"
platform = "manylinux2014_x86_64"
[sources.conda]
prefix = "/opt/conda/envs/nlp"
[sources.pip]
requirements = ["requirements.txt"]
[sources.syslibs]
exclude = ["libcuda.so.*"]
[sources.acme-store]
index = "/mnt/acme/index.toml"
[sources.models]
plugin = "files"
paths = ["m"]
"#;
        let c = Config::parse(text, None, Path::new("/cfg")).expect("parses");
        let names: Vec<_> = c.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["conda", "pip", "syslibs", "acme-store", "models"]);
        assert_eq!(c.sources[4].plugin, "files");
        assert!(c.sources[4].config.get("plugin").is_none());
        assert_eq!(
            c.bundle.output.as_deref(),
            Some(Path::new("/cfg/nlp-env.tar.gz"))
        );
        let t = c.target_profile();
        assert_eq!(t.glibc.as_deref(), Some("2.17"));
        assert_eq!(t.platforms, ["manylinux2014_x86_64"]);
    }

    #[test]
    fn an_environment_brings_syslibs_unless_a_table_names_it_or_turns_it_off() {
        let dir = Path::new("/cfg");
        let alone = Config::parse("[sources.conda]\nprefix = \"e\"\n", None, dir).unwrap();
        let implied = alone.implied_sources(true);
        assert_eq!(implied.len(), 1);
        assert_eq!(implied[0].plugin, SYSLIBS);
        assert!(alone.implied_sources(false).is_empty());
        let off = Config::parse(
            "[sources.conda]\nprefix = \"e\"\n[sources.syslibs]\nenabled = false\n",
            None,
            dir,
        )
        .unwrap();
        assert!(off.sources.iter().all(|s| s.name != SYSLIBS));
        assert!(off.implied_sources(true).is_empty());
        let own = Config::parse(
            "[sources.conda]\nprefix = \"e\"\n[sources.libs]\nplugin = \"syslibs\"\n",
            None,
            dir,
        )
        .unwrap();
        assert!(own.implied_sources(true).is_empty());
        let bad = Config::parse("[sources.files]\nenabled = \"no\"\n", None, dir);
        assert!(bad.is_err_and(|e| e.to_string().contains("must be true or false")));
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let err = Config::parse("[bundle]\nnmae = \"x\"\n", None, Path::new("/"))
            .expect_err("unknown key");
        assert!(err.to_string().contains("nmae"), "{err}");
    }

    #[test]
    fn manylinux_tags_map_to_glibc() {
        assert_eq!(
            glibc_of_platform_tag("manylinux_2_28_x86_64").as_deref(),
            Some("2.28")
        );
        assert_eq!(
            glibc_of_platform_tag("manylinux2010_x86_64").as_deref(),
            Some("2.12")
        );
        assert_eq!(glibc_of_platform_tag("linux_x86_64"), None);
    }
}
