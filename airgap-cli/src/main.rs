//! `airgap`: pack a Python workload for an air-gapped machine, check it will run there, and
//! install it there offline.
//!
//! Only this crate prints. Libraries report through [`airgap_archive::progress::Progress`] and
//! return typed errors; this crate adds context and `help:` lines.

mod cli;
mod commands;
mod external;
mod report;
mod ui;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return external::handle_parse_error(e, &args),
    };
    let ui = ui::Ui::new(&cli.global);
    match commands::run(cli, &ui) {
        Ok(code) => code,
        Err(err) => {
            report::print_error(&err);
            ExitCode::from(report::exit_code(&err))
        }
    }
}
