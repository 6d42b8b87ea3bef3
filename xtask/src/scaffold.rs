//! `cargo xtask new-plugin NAME --path DIR`: a standalone plugin crate, outside this workspace,
//! that depends on the plugin API crate alone, builds with `cargo build`, and loads in airgap.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub fn new_plugin(args: &[String]) -> Result<()> {
    let mut name = None;
    let mut path = None;
    let mut api = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--path" => path = it.next().map(PathBuf::from),
            "--api-path" => api = it.next().map(PathBuf::from),
            other if !other.starts_with('-') && name.is_none() => name = Some(other.to_string()),
            other => bail!(
                "unexpected argument `{other}`\nusage: cargo xtask new-plugin NAME --path DIR"
            ),
        }
    }
    let Some(name) = name else {
        bail!("usage: cargo xtask new-plugin NAME --path DIR");
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.starts_with('-')
    {
        bail!(
            "plugin name `{name}` must be lower-case letters, digits and dashes, like `acme-store`"
        );
    }
    let dir = path.unwrap_or_else(|| PathBuf::from(format!("airgap-plugin-{name}")));
    if dir.join("Cargo.toml").exists() {
        bail!(
            "{} already holds a Cargo.toml: choose another --path",
            dir.display()
        );
    }
    let api = match api {
        Some(api) => api,
        None => crate::tasks::root().join("plugins/airgap-plugin-api"),
    };
    let api = api
        .canonicalize()
        .with_context(|| format!("the plugin API crate is not at {}", api.display()))?;
    write(&dir.join("Cargo.toml"), &cargo_toml(&name, &api))?;
    write(&dir.join("src/lib.rs"), &lib_rs(&name))?;
    write(&dir.join("README.md"), &readme(&name))?;
    write(&dir.join(".gitignore"), "/target\n")?;
    println!(
        "created plugin `{name}` in {}\n  build:  cargo build --release --manifest-path {}/Cargo.toml\n  check:  airgap plugins check {}/target/release/libairgap_plugin_{}.so",
        dir.display(),
        dir.display(),
        dir.display(),
        name.replace('-', "_")
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

fn cargo_toml(name: &str, api: &Path) -> String {
    format!(
        r#"[package]
name = "airgap-plugin-{name}"
version = "0.1.0"
edition = "2021"
publish = false
description = "airgap source plugin `{name}`"

# airgap loads `libairgap_plugin_{lib}.so` with dlopen.
[lib]
crate-type = ["cdylib"]

[dependencies]
# The only dependency on airgap: its stable plugin API (C ABI 1.x).
airgap-plugin-api = {{ path = "{api}" }}
serde = {{ version = "1", features = ["derive"] }}

# Not part of any enclosing workspace.
[workspace]
"#,
        lib = name.replace('-', "_"),
        api = api.display()
    )
}

fn lib_rs(name: &str) -> String {
    let template = r#"//! airgap source plugin `__NAME__`: carries a directory of the build machine into the
//! bundle, as one package.
//!
//! ```toml
//! [sources.__NAME__]
//! path = "some/dir"        # relative to airgap.toml
//! version = "1.0"
//! ```

use airgap_plugin_api::{
    export_plugin, ContributeRequest, Contribution, Entry, Host, Package, PluginError,
    SourcePlugin, Stage,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    path: std::path::PathBuf,
    #[serde(default = "default_version")]
    version: String,
}

fn default_version() -> String {
    "0".to_string()
}

#[derive(Default)]
struct Plugin;

impl SourcePlugin for Plugin {
    fn contribute(&self, request: &ContributeRequest, host: &Host) -> Result<Contribution, PluginError> {
        let config: Config = request.config()?;
        let source = request.resolve_path(&config.path);
        if !source.exists() {
            return Err(PluginError::new(format!("{} does not exist", source.display()))
                .with_help("set `path` in [sources.__NAME__] to an existing directory"));
        }
        host.info(&format!("__NAME__: {}", source.display()));
        let id = format!("__NAME__:{}", config.version);
        // The API's structs are `#[non_exhaustive]` (an ABI minor may add fields): start
        // from `default()` or a constructor and set fields, never a struct literal.
        let mut contribution = Contribution::default();
        contribution
            .entries
            .push(Entry::path(source.clone(), "__NAME__").with_package(&id));
        contribution.packages.push(
            Package::new(id, "__NAME__", config.version, "__NAME__")
                .with_origin(source.display().to_string()),
        );
        Ok(contribution)
    }
}

export_plugin!(
    Plugin,
    name = "__NAME__",
    version = env!("CARGO_PKG_VERSION"),
    stage = Stage::Packages,
    description = "__NAME__ (scaffolded by cargo xtask new-plugin)"
);
"#;
    template.replace("__NAME__", name)
}

fn readme(name: &str) -> String {
    format!(
        "# airgap-plugin-{name}\n\nAn airgap source plugin. Build it and put the library where airgap looks for plugins:\n\n```sh\ncargo build --release\nairgap plugins check target/release/libairgap_plugin_{lib}.so\nmkdir -p ~/.local/share/airgap/plugins\ncp target/release/libairgap_plugin_{lib}.so ~/.local/share/airgap/plugins/\n```\n\nThen use it from airgap.toml:\n\n```toml\n[sources.{name}]\npath = \"some/dir\"\n```\n\nSee airgap's docs/writing-a-plugin.md.\n",
        lib = name.replace('-', "_")
    )
}
