//! The command line, as clap structs. Each subcommand's own arguments live beside its code in
//! `commands/`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands;

const AFTER_HELP: &str = "\
Examples:
  airgap bundle                          bundle the active Python environment
  airgap bundle -c airgap.toml -o nlp.tar.gz
  airgap check nlp.tar.gz --glibc 2.17   will it load on a glibc 2.17 machine?
  airgap verify nlp.tar.gz
  airgap unpack nlp.tar.gz /opt/nlp      on the air-gapped machine
  airgap keygen --out keys               age + minisign key pairs
  airgap bundle --encrypt-to age1... --sign keys/airgap.minisign.key
  airgap unpack nlp.tar.gz.age /opt/nlp -i my.age.key --trusted-key team.pub

Without airgap on the target:  tar xzf nlp.tar.gz && nlp/unpack /opt/nlp

External subcommands: `airgap foo` runs `airgap-foo` from PATH (see `airgap --list`).";

/// Pack a Python workload into one archive that installs and runs on an air-gapped machine.
#[derive(Debug, Parser)]
#[command(
    name = "airgap",
    version,
    about,
    after_help = AFTER_HELP,
    allow_external_subcommands = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    /// List all subcommands, built-in and external (`airgap-*` on PATH)
    #[arg(long)]
    pub list: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every subcommand takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// More detail (repeat for more)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Print only errors and data
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Never draw progress bars
    #[arg(long, global = true, env = "AIRGAP_NO_PROGRESS", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_progress: bool,

    /// Look for plugins in this directory first (repeatable)
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    pub plugin_dirs: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pack an environment and its packages into one archive for the target
    Bundle(commands::bundle::BundleArgs),
    /// Verify a bundle, extract it and run its install steps (all or nothing)
    Unpack(commands::unpack::UnpackArgs),
    /// Check every file of a bundle against its manifest
    Verify(commands::verify::VerifyArgs),
    /// Show what a bundle holds: sources, packages, sizes, install steps
    Inspect(commands::inspect::InspectArgs),
    /// Check before transfer that a bundle will load on the target machine
    Check(commands::check::CheckArgs),
    /// On the target: what it offers a bundle (glibc, libraries, Pythons, driver), as a profile and a code
    Probe(commands::probe::ProbeArgs),
    /// Make an age key pair (encryption) and a minisign key pair (signatures)
    Keygen(commands::keygen::KeygenArgs),
    /// Move an unpacked bundle to a new place and fix its prefixes
    Relocate(commands::relocate::RelocateArgs),
    /// Load every library and module of an installed bundle again, as its unpack did
    SelfTest(commands::self_test::SelfTestArgs),
    /// List and check plugins
    #[command(subcommand)]
    Plugins(commands::plugins::PluginsCommand),
    /// Print shell completions
    Completions(commands::completions::CompletionsArgs),
    #[command(external_subcommand)]
    External(Vec<OsString>),
}
