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
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;

/// Set by the first Ctrl-C: long work stops at the next file and removes what it half wrote.
pub static CANCELLED: AtomicBool = AtomicBool::new(false);

fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if CANCELLED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping and cleaning up (Ctrl-C again quits at once)");
    });
}

fn main() -> ExitCode {
    install_interrupt_handler();
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
            if CANCELLED.load(Ordering::SeqCst) {
                return ExitCode::from(130);
            }
            ExitCode::from(report::exit_code(&err))
        }
    }
}
