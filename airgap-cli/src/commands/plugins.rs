//! `airgap plugins list|check`: what the host finds on its search path, and why a file does or
//! does not load. Never fails because one plugin is broken.

use std::path::PathBuf;
use std::process::ExitCode;

use airgap_core::registry::{Registry, Status};
use airgap_core::Plugin;
use clap::{Args, Subcommand};

use crate::report::with_help;
use crate::ui::Ui;

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List every plugin on the search path with its version, ABI and status
    #[command(after_help = "Example:\n  airgap plugins list --json | jq '.plugins[].name'")]
    List(ListArgs),
    /// Load one plugin file and report whether this airgap can use it
    #[command(
        after_help = "Example:\n  airgap plugins check target/release/libairgap_plugin_acme_store.so"
    )]
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON (for scripts)
    #[arg(long)]
    pub json: bool,
    /// Also search the plugin-dirs of this configuration file
    #[arg(short, long, value_name = "airgap.toml")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The plugin library (`libairgap_plugin_NAME.so`)
    pub file: PathBuf,
    /// Print JSON (for scripts)
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: PluginsCommand, ui: &Ui) -> anyhow::Result<ExitCode> {
    match command {
        PluginsCommand::List(args) => list(args, ui),
        PluginsCommand::Check(args) => check(args),
    }
}

/// The registry for this invocation: `--plugin-dir`, then the config's `plugin-dirs`.
pub fn registry(ui: &Ui, config_dirs: &[PathBuf]) -> Registry {
    Registry::discover(Registry::search_path(&ui.plugin_dirs, config_dirs))
}

fn list(args: ListArgs, ui: &Ui) -> anyhow::Result<ExitCode> {
    let config_dirs = match &args.config {
        Some(path) => {
            airgap_core::Config::load(path)
                .map_err(crate::report::core)?
                .plugin_dirs
        }
        None => Vec::new(),
    };
    let registry = registry(ui, &config_dirs);
    if args.json {
        let value = serde_json::json!({
            "host_abi": airgap_core::plugin::host_abi(),
            "search_path": registry.search_path,
            "plugins": registry.found,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "plugin ABI of this airgap: {}",
        airgap_core::plugin::host_abi()
    );
    if registry.found.is_empty() {
        println!("no plugins found");
    } else {
        println!(
            "{:<14} {:<9} {:<5} {:<12} {:<9} PATH",
            "NAME", "VERSION", "ABI", "STAGE", "STATUS"
        );
    }
    for found in &registry.found {
        let status = match &found.status {
            Status::Ok => "ok".to_string(),
            Status::Shadowed { .. } => "shadowed".to_string(),
            Status::Broken { .. } => "broken".to_string(),
        };
        println!(
            "{:<14} {:<9} {:<5} {:<12} {:<9} {}",
            found.name,
            found.version.as_deref().unwrap_or("-"),
            found.abi.as_deref().unwrap_or("-"),
            found.stage.as_deref().unwrap_or("-"),
            status,
            found.path.display()
        );
        match &found.status {
            Status::Shadowed { by } => println!("{:16}shadowed by {}", "", by.display()),
            Status::Broken { reason } => println!("{:16}{reason}", ""),
            Status::Ok => {}
        }
    }
    println!("\nsearched (first match wins):");
    for dir in &registry.search_path {
        let origin = serde_json::to_value(dir.origin)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!("  {} ({origin})", dir.dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if !args.file.exists() {
        return Err(with_help(
            anyhow::anyhow!("{}: no such file", args.file.display()),
            "give the path of a built plugin library, e.g. target/release/libairgap_plugin_NAME.so",
        ));
    }
    let plugin: Plugin = Plugin::load(&args.file).map_err(crate::report::core)?;
    if args.json {
        let value = serde_json::json!({
            "name": plugin.name,
            "version": plugin.version,
            "abi": format!("{}.{}", plugin.abi.0, plugin.abi.1),
            "host_abi": airgap_core::plugin::host_abi(),
            "stage": plugin.stage.as_str(),
            "description": plugin.description,
            "path": plugin.path,
            "status": "ok",
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "ok: {} {} (plugin ABI {}.{}, stage {}) loads in this airgap (plugin ABI {})\n    {}",
            plugin.name,
            plugin.version,
            plugin.abi.0,
            plugin.abi.1,
            plugin.stage.as_str(),
            airgap_core::plugin::host_abi(),
            plugin.description
        );
    }
    Ok(ExitCode::SUCCESS)
}
