//! `unpack --probe [DEST]`: the target's profile from the unpacker a bundle carries, for a
//! machine without airgap: the same facts as `airgap probe` (one implementation,
//! `airgap-probe`), printed the same way.

use std::path::PathBuf;
use std::process::ExitCode;

use airgap_archive::text::escape_lines;
use airgap_probe::{probe, summary, ProbeOptions};

/// Probe this machine: the profile (TOML) on stdout, the facts and the code on stderr.
pub fn run(dest: Option<PathBuf>) -> ExitCode {
    let profile = probe(&ProbeOptions { dest });
    match profile.to_toml() {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    eprintln!("{}", escape_lines(&summary(&profile)));
    ExitCode::SUCCESS
}
