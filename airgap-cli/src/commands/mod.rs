//! One module per subcommand. Each owns its clap arguments and its output.

pub mod bundle;
pub mod check;
pub mod completions;
pub mod inspect;
pub mod keygen;
pub mod plugins;
pub mod probe;
pub mod provenance;
pub mod relocate;
pub mod seal;
pub mod self_test;
pub mod unpack;
pub mod verify;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::ui::Ui;

pub fn run(cli: Cli, ui: &Ui) -> anyhow::Result<ExitCode> {
    if cli.list {
        return crate::external::print_list();
    }
    let Some(command) = cli.command else {
        return crate::external::print_list();
    };
    match command {
        Command::Bundle(args) => bundle::run(args, ui),
        Command::Unpack(args) => unpack::run(args, ui),
        Command::Verify(args) => verify::run(args, ui),
        Command::Inspect(args) => inspect::run(args, ui),
        Command::Check(args) => check::run(args, ui),
        Command::Probe(args) => probe::run(args, ui),
        Command::Keygen(args) => keygen::run(args, ui),
        Command::Relocate(args) => relocate::run(args, ui),
        Command::SelfTest(args) => self_test::run(args, ui),
        Command::Plugins(command) => plugins::run(command, ui),
        Command::Completions(args) => completions::run(args),
        Command::External(args) => crate::external::run(args),
    }
}
