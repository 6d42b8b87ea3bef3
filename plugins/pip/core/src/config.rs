//! The `[sources.pip]` table. Every key is documented in `docs/sources/pip.md`.

use std::path::PathBuf;

use serde::Deserialize;

/// What the user asked for in `[sources.pip]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipConfig {
    /// Requirements files (`pip -r`), relative to the configuration file.
    pub requirements: Vec<PathBuf>,
    /// Constraints files (`pip -c`), relative to the configuration file.
    pub constraints: Vec<PathBuf>,
    /// Requirement strings (`numpy==1.26.4`).
    pub packages: Vec<String>,
    /// Also bring everything installed in the bundled environment (pip freeze).
    pub installed: bool,
    /// `--index-url`; absent: the user's pip configuration decides.
    pub index_url: Option<String>,
    /// `--extra-index-url`, in order.
    pub extra_index_urls: Vec<String>,
    /// `--find-links`, in order (directories or URLs).
    pub find_links: Vec<String>,
    /// Allow pre-releases (`--pre`).
    pub pre: bool,
    /// Folder of the wheelhouse inside the bundle.
    pub dest: String,
    /// Folder of the venv made on the target when no environment is bundled.
    pub venv: String,
    /// Build wheels on this machine for requirements that only exist as sdists.
    pub allow_build: bool,
    /// Packages that must never be built here (`:all:` = none).
    pub only_binary: Vec<String>,
    /// An interpreter of the target's Python X.Y on this machine to build sdists with.
    pub build_python: Option<PathBuf>,
    /// The interpreter whose pip resolves and downloads (pip >= 22.2).
    pub pip_python: Option<PathBuf>,
    /// The version of pip carried to the target (default: newest that runs there).
    pub pip_version: Option<String>,
    /// Add the install steps (false: only carry the wheelhouse).
    pub install: bool,
}

impl Default for PipConfig {
    fn default() -> Self {
        PipConfig {
            requirements: Vec::new(),
            constraints: Vec::new(),
            packages: Vec::new(),
            installed: false,
            index_url: None,
            extra_index_urls: Vec::new(),
            find_links: Vec::new(),
            pre: false,
            dest: "wheels".into(),
            venv: "venv".into(),
            allow_build: true,
            only_binary: Vec::new(),
            build_python: None,
            pip_python: None,
            pip_version: None,
            install: true,
        }
    }
}

impl PipConfig {
    /// May `name` be built from its sdist on this machine?
    pub fn may_build(&self, name: &str) -> bool {
        self.allow_build
            && !self.only_binary.iter().any(|n| {
                n == ":all:" || crate::wheel::normalize(n) == crate::wheel::normalize(name)
            })
    }

    /// `--index-url`, `--extra-index-url` and `--find-links` arguments.
    pub fn index_args(&self, resolve: impl Fn(&str) -> String) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(url) = &self.index_url {
            args.push("--index-url".into());
            args.push(url.clone());
        }
        for url in &self.extra_index_urls {
            args.push("--extra-index-url".into());
            args.push(url.clone());
        }
        for link in &self.find_links {
            args.push("--find-links".into());
            args.push(resolve(link));
        }
        args
    }
}

/// Check that `dest`-like keys are plain relative bundle paths.
pub fn check_bundle_path(key: &str, value: &str) -> Result<(), airgap_plugin_api::PluginError> {
    let bad = value.is_empty()
        || value.starts_with('/')
        || value
            .split('/')
            .any(|part| part == ".." || part == "." || part.is_empty());
    if bad {
        return Err(airgap_plugin_api::PluginError::new(format!(
            "[sources.pip] {key} = {value:?} is not a relative folder inside the bundle"
        ))
        .with_help(format!(
            "use a plain relative path such as {key} = \"wheels\""
        )));
    }
    Ok(())
}
