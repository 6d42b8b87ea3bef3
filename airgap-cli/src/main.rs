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

/// Set by the first Ctrl-C, SIGTERM or SIGHUP (the `ctrlc` crate's `termination` feature): long
/// work stops at the next file and removes what it half wrote.
pub static CANCELLED: AtomicBool = AtomicBool::new(false);

fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if CANCELLED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping and cleaning up (a second signal quits at once)");
    });
}

/// glibc's malloc raises its mmap threshold each time a large block is freed, after which the
/// 1 MiB compression blocks and 256 KiB read buffers of `airgap bundle` and `unpack` are carved
/// from the threads' heaps and stay resident after they are freed. A fixed threshold (the
/// default's starting value) keeps them mapped and unmapped on their own: measured on a
/// 94,000-file tree, 68 MiB peak instead of 85 MiB, at the same speed.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> ExitCode {
    fixed_mmap_threshold();
    install_interrupt_handler();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return external::handle_parse_error(e),
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
